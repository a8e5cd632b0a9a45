//! The manifest parser against arbitrary damage (proptest): list, verify and restore of a
//! mangled manifest return errors or reports, never panic, and a restore either fails with
//! nothing written or yields exactly the backed-up records.
//!
//! `STRONGBOX_PROPTEST_CASES` sets the number of cases (default 64).

use proptest::prelude::*;
use strongbox::backup::{BackupRef, Repository, RestoreOptions};
use strongbox::{Config, Store};

use super::damage::{manifest_path, read_manifest, write_manifest};
use super::{Contents, contents};

/// A mutation of a manifest's lines (header first), re-signed with a valid checksum or not.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flip one byte of the decoded text.
    Flip { line: usize, at: usize, bit: u8 },
    /// Replace a line with arbitrary text.
    Replace { line: usize, text: String },
    /// Drop a line.
    Drop { line: usize },
    /// Replace the whole file with arbitrary bytes.
    Raw(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0..8usize, 0..200usize, 0..8u8).prop_map(|(line, at, bit)| Mutation::Flip {
            line,
            at,
            bit
        }),
        (0..8usize, ".{0,120}").prop_map(|(line, text)| Mutation::Replace { line, text }),
        (0..8usize).prop_map(|line| Mutation::Drop { line }),
        proptest::collection::vec(any::<u8>(), 0..400).prop_map(Mutation::Raw),
    ]
}

fn cases() -> u32 {
    std::env::var("STRONGBOX_PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn a_mangled_manifest_never_panics_nor_restores_wrong_data(mutation in mutation(), resign in any::<bool>()) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(run(mutation, resign));
    }
}

async fn run(mutation: Mutation, resign: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Config::new(dir.path().join("live.db")))
        .await
        .unwrap();
    for i in 0..6 {
        store
            .store(
                "players",
                &format!("p{i}"),
                &serde_json::json!({"chips": i}),
            )
            .await
            .unwrap();
    }
    let original: Contents = contents(&store).await;
    let repository = Repository::open_or_create(dir.path().join("repo"))
        .await
        .unwrap();
    let summary = repository.backup(&store, |_| {}).await.unwrap();
    store.close().await.unwrap();

    let path = manifest_path(&repository, &summary.id);
    let mut lines = read_manifest(&path);
    let body_lines = lines.len() - 1; // the last line is the end line with the checksum
    match mutation {
        Mutation::Raw(bytes) => std::fs::write(&path, bytes).unwrap(),
        mutation => {
            match mutation {
                Mutation::Flip { line, at, bit } => {
                    let count = lines.len();
                    let line = &mut lines[line % count];
                    let mut bytes = line.clone().into_bytes();
                    if !bytes.is_empty() {
                        let at = at % bytes.len();
                        bytes[at] ^= 1 << bit;
                    }
                    *line = String::from_utf8_lossy(&bytes).into_owned();
                }
                Mutation::Replace { line, text } => {
                    let index = line % lines.len();
                    lines[index] = text;
                }
                Mutation::Drop { line } => {
                    lines.remove(line % lines.len());
                }
                Mutation::Raw(_) => {}
            }
            if resign && lines.len() >= 2 {
                // A valid checksum over the damaged body: the parser itself must catch it.
                write_manifest(&path, &lines[..lines.len().min(body_lines)]);
            } else {
                let mut text = lines.join("\n");
                text.push('\n');
                std::fs::write(&path, zstd::encode_all(text.as_bytes(), 3).unwrap()).unwrap();
            }
        }
    }

    let _ = repository.list().await.unwrap();
    let _ = repository.verify(Some(&summary.id), |_| {}).await;
    let target = dir.path().join("restored.db");
    let restored = repository
        .restore(
            &BackupRef::Id(summary.id.clone()),
            &Config::new(&target),
            &RestoreOptions::all(),
            |_| {},
        )
        .await;
    match restored {
        Err(_) => assert!(!target.exists(), "a failed restore leaves no file"),
        Ok(_) => {
            let copy = Store::open(Config::new(&target)).await.unwrap();
            let got = contents(&copy).await;
            assert!(copy.verify().await.unwrap().is_clean());
            copy.close().await.unwrap();
            if resign {
                // A re-signed manifest is a deliberate edit (the checksum catches damage, not
                // forgery): it may rename keys, but every value comes from a verified blob.
                let values: Vec<_> = original.values().map(|(value, _)| value).collect();
                assert!(got.len() <= original.len());
                assert!(
                    got.values().all(|(value, _)| values.contains(&value)),
                    "{got:?}"
                );
            } else {
                // Damage the checksum did not catch must have left the records intact (a bit
                // flipped where it does not matter, such as the source description).
                assert_eq!(got.len(), original.len());
                for (key, (value, _)) in &original {
                    assert_eq!(got.get(key).map(|(value, _)| value), Some(value), "{key:?}");
                }
            }
        }
    }
}
