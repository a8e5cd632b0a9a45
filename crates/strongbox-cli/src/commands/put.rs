//! `strongbox put COLLECTION KEY [JSON]`: store a value, optionally on a condition and with a
//! time to live.

use std::io::Read as _;

use anyhow::Context as _;
use serde_json::Value;
use strongbox::{Expect, PutOptions, Store, Version};

use crate::cli::GlobalOptions;
use crate::output::Output;

/// Options of `strongbox put COLLECTION KEY [JSON]`.
#[derive(Debug, clap::Args)]
pub struct PutArgs {
    /// Collection name.
    pub collection: String,
    /// Key.
    pub key: String,
    /// The value, as JSON; read from standard input when omitted. Refused when it would not be
    /// stored exactly as written: a number beyond 64-bit integers and doubles
    /// (123456789012345678901234567890, 1e-400; write such numbers as strings) or an object
    /// with a duplicate key.
    pub json: Option<String>,
    /// Store only if the record is currently at this version (else exit code 5).
    #[arg(long, value_name = "N", conflicts_with = "if_absent")]
    pub if_version: Option<u64>,
    /// Store only if the key does not exist yet (else exit code 5).
    #[arg(long)]
    pub if_absent: bool,
    /// Time to live: the record expires this long after the write (`30s`, `15m`, `2h 30m`,
    /// `7days`), and is then absent for every read. Without it the record never expires.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub ttl: Option<std::time::Duration>,
}

/// Stores the value and prints its new version.
///
/// # Errors
/// Invalid JSON, an invalid name, a value over the size limit, a failed condition
/// (`strongbox::Error::Conflict`, exit code 5), a busy database.
pub async fn run(global: &GlobalOptions, args: PutArgs) -> anyhow::Result<()> {
    let value = read_value(args.json.as_deref())?;
    let expect = match (args.if_version, args.if_absent) {
        (Some(version), _) => Expect::Version(Version::new(version)),
        (None, true) => Expect::Absent,
        (None, false) => Expect::Any,
    };
    let mut options = PutOptions::new().expect(expect);
    if let Some(ttl) = args.ttl {
        options = options.ttl(ttl);
    }
    let store = crate::commands::open(global).await?;
    let result = put(&store, &args, &value, options).await;
    crate::commands::close(store, result).await
}

async fn put(
    store: &Store,
    args: &PutArgs,
    value: &Value,
    options: PutOptions,
) -> anyhow::Result<()> {
    let version = store
        .store_with(&args.collection, &args.key, value, options)
        .await
        .with_context(|| format!("put {}/{}", args.collection, args.key))?;
    let mut out = Output::stdout();
    out.line(version)?;
    out.finish()
}

/// The value from the argument, else from standard input; refused when it would not be stored
/// exactly as written (see [`crate::json::check_exact`]).
fn read_value(json: Option<&str>) -> anyhow::Result<Value> {
    let (text, source) = match json {
        Some(text) => (text.to_owned(), "the JSON value argument"),
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("read the JSON value from standard input")?;
            (text, "the JSON value from standard input")
        }
    };
    let value = serde_json::from_str(&text).with_context(|| format!("parse {source}"))?;
    crate::json::check_exact(&text).with_context(|| format!("check {source}"))?;
    Ok(value)
}
