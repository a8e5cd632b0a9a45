//! Values are stored and printed exactly: numbers that would change and duplicate keys are
//! refused by `put` and `import`; `get` and `export` print the stored text as it is.

use serde_json::{Value, json};

use super::{assert_exit, assert_ok, line, run, run_with_stdin, stats, stderr, stdout, write_file};

/// Literals serde_json would store as another number, and what `get` would then print.
const CHANGED: [(&str, &str); 5] = [
    ("18446744073709551616", "1.8446744073709552e+19"),
    ("123456789012345678901234567890", "1.2345678901234568e+29"),
    ("-9223372036854775809", "-9.223372036854776e+18"),
    ("1e-400", "0.0"),
    ("3.14159265358979323846264", "3.141592653589793"),
];

#[test]
fn put_refuses_numbers_that_would_change_and_duplicate_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("exact-put.db");
    for (literal, stored_as) in CHANGED {
        let text = format!(r#"{{"players":[1,2,3,{{"chips":{literal}}}]}}"#);
        for output in [
            run(&db, &["put", "c", "k", "--", &text]),
            run_with_stdin(&db, &["put", "c", "k"], &text),
        ] {
            assert_exit(&output, 1);
            let message = stderr(&output);
            for expected in ["$.players[3].chips", literal, stored_as, "exactly"] {
                assert!(message.contains(expected), "{expected}: {message}");
            }
            assert!(!message.contains("panicked"), "{message}");
        }
    }
    let duplicate = run(&db, &["put", "c", "k", r#"{"a":{"b":1,"b":2}}"#]);
    assert_exit(&duplicate, 1);
    assert!(
        stderr(&duplicate).contains("$.a") && stderr(&duplicate).contains(r#""b""#),
        "{}",
        stderr(&duplicate)
    );
    assert_ok(&run(&db, &["put", "c", "other", "1"]));
    assert_exit(&run(&db, &["get", "c", "k"]), 3);

    // What survives is accepted: as a string, every digit stays.
    for text in [
        r#""18446744073709551616""#,
        "18446744073709551615",
        "-9223372036854775808",
        "1.10",
        "1e2",
        "0.1",
    ] {
        assert_ok(&run(&db, &["put", "c", "k", "--", text]));
    }
    let got = run(&db, &["get", "c", "k"]);
    assert_eq!(stdout(&got).trim(), "0.1");
}

#[test]
fn import_refuses_numbers_that_would_change_naming_line_and_path() {
    let dir = tempfile::tempdir().unwrap();
    for (n, (literal, stored_as)) in CHANGED.into_iter().enumerate() {
        let bad = format!(
            r#"{{"collection":"items","key":"three","value":{{"players":[{{}},{{}},{{}},{{"chips":{literal}}}]}}}}"#
        );
        let lines = [
            line("items", "one", json!(1)),
            line("items", "two", json!(2)),
            bad,
            line("items", "four", json!(4)),
        ];
        let file = write_file(dir.path(), &format!("exact{n}.jsonl"), &lines);
        let db = dir.path().join(format!("exact{n}.db"));
        let output = run(&db, &["import", file.to_str().unwrap()]);
        assert_exit(&output, 1);
        let message = stderr(&output);
        for expected in ["line 3", "$.players[3].chips", literal, stored_as] {
            assert!(message.contains(expected), "{expected}: {message}");
        }
        assert_eq!(stats(&db)["records"], json!(0), "nothing of the batch");

        let skipped = run(&db, &["import", "--skip-invalid", file.to_str().unwrap()]);
        assert_ok(&skipped);
        assert!(
            stdout(&skipped).contains("1 skipped"),
            "{}",
            stdout(&skipped)
        );
        assert_exit(&run(&db, &["get", "items", "three"]), 3);
    }
    let file = write_file(
        dir.path(),
        "duplicate.jsonl",
        &[r#"{"collection":"c","key":"k","value":{"a":1,"a":2}}"#.to_owned()],
    );
    let output = run(
        &dir.path().join("dup.db"),
        &["import", file.to_str().unwrap()],
    );
    assert_exit(&output, 1);
    assert!(stderr(&output).contains("line 1"), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("more than once"),
        "{}",
        stderr(&output)
    );
}

/// Stores values a Rust program can write but serde_json's `Value` cannot hold, and one
/// stored as indented text.
fn store_u128s(db: &std::path::Path) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = strongbox::Store::open(strongbox::Config::new(db))
            .await
            .unwrap();
        store.store("big", "max", &u128::MAX).await.unwrap();
        store
            .store("big", "nested", &(u128::MAX - 1, "x", i128::MIN))
            .await
            .unwrap();
        let indented =
            serde_json::value::RawValue::from_string("{\n  \"n\": 1\n}".to_owned()).unwrap();
        store.store("big", "indented", &indented).await.unwrap();
        store.close().await.unwrap();
    });
}

#[test]
fn get_and_export_print_values_exactly_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("u128.db");
    store_u128s(&db);
    let max = u128::MAX.to_string();
    let nested = format!(r#"[{},"x",{}]"#, u128::MAX - 1, i128::MIN);

    let got = run(&db, &["get", "big", "max"]);
    assert_ok(&got);
    assert_eq!(stdout(&got).trim(), max);
    let got = run(&db, &["get", "big", "nested"]);
    assert_eq!(stdout(&got).trim(), nested);
    let pretty = run(&db, &["get", "--pretty", "big", "nested"]);
    assert_eq!(
        stdout(&pretty).trim(),
        format!("[\n  {},\n  \"x\",\n  {}\n]", u128::MAX - 1, i128::MIN)
    );
    let meta = run(&db, &["get", "--meta", "--json", "big", "max"]);
    assert!(
        stdout(&meta).starts_with(&format!(r#"{{"value":{max},"version":1,"#)),
        "{}",
        stdout(&meta)
    );
    let meta_pretty = run(&db, &["get", "--meta", "--json", "--pretty", "big", "max"]);
    assert!(
        stdout(&meta_pretty).starts_with(&format!("{{\n  \"value\": {max},\n  \"version\": 1,")),
        "{}",
        stdout(&meta_pretty)
    );
    let human = stdout(&run(&db, &["get", "--meta", "big", "max"]));
    assert!(human.ends_with(&format!("value      {max}\n")), "{human}");

    // Scan and a get of several keys print them as stored too, one record a line.
    let scanned = run(&db, &["scan", "big", "--json"]);
    assert_ok(&scanned);
    assert_eq!(
        stdout(&scanned),
        format!(
            "{{\"key\":\"indented\",\"version\":1,\"value\":{{\"n\":1}}}}\n\
             {{\"key\":\"max\",\"version\":1,\"value\":{max}}}\n\
             {{\"key\":\"nested\",\"version\":1,\"value\":{nested}}}\n"
        )
    );
    let plain = stdout(&run(&db, &["scan", "big", "--from", "max"]));
    assert_eq!(plain, format!("max  v1  {max}\nnested  v1  {nested}\n"));
    let got = run(&db, &["get", "big", "max", "indented", "--json"]);
    assert_ok(&got);
    assert_eq!(
        stdout(&got),
        format!(
            "{{\"key\":\"max\",\"is_found\":true,\"value\":{max}}}\n\
             {{\"key\":\"indented\",\"is_found\":true,\"value\":{{\"n\":1}}}}\n"
        )
    );

    // Export keeps one record per line, whatever the stored layout.
    let exported = run(&db, &["export"]);
    assert_ok(&exported);
    assert_eq!(
        stdout(&exported),
        format!(
            "{{\"collection\":\"big\",\"key\":\"indented\",\"value\":{{\"n\":1}}}}\n\
             {{\"collection\":\"big\",\"key\":\"max\",\"value\":{max}}}\n\
             {{\"collection\":\"big\",\"key\":\"nested\",\"value\":{nested}}}\n"
        )
    );
}

#[test]
fn import_then_export_keeps_every_number_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("numbers.db");
    // Written as serde_json writes them, so that the exported text must be the same bytes.
    let values = [
        "18446744073709551615",
        "-9223372036854775808",
        "9223372036854775807",
        "0.1",
        "0.30000000000000004",
        "1.7976931348623157e+308",
        "5e-324",
        "-2.5e-7",
        r#"{"chips":18446744073709551615,"name":"123456789012345678901234567890","odds":[0.5,1.25e+30]}"#,
    ];
    let lines: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, value)| format!(r#"{{"collection":"n","key":"k{i}","value":{value}}}"#))
        .collect();
    let file = write_file(dir.path(), "numbers.jsonl", &lines);
    assert_ok(&run(&db, &["import", file.to_str().unwrap()]));
    let exported = run(&db, &["export"]);
    assert_ok(&exported);
    assert_eq!(stdout(&exported), lines.join("\n") + "\n");
    for (i, value) in values.iter().enumerate() {
        let got = run(&db, &["get", "n", &format!("k{i}")]);
        assert_eq!(stdout(&got).trim(), *value);
        let parsed: Value = serde_json::from_str(value).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&stdout(&got)).unwrap(),
            parsed
        );
    }
}
