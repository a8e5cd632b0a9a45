//! `strongbox backup ls|diff|dump|check`: reading a backup without restoring it, and checking
//! a repository like restic's `check`.

use anyhow::Context as _;
use futures_util::StreamExt as _;
use strongbox::Config;
use strongbox::backup::{
    Access, BackupId, BackupRecord, BackupRef, CheckReport, DiffKind, ReadData, Repository,
};

use crate::commands::Failure;
use crate::commands::backup::{RepoOption, print, show};
use crate::commands::backup_open::open_repository;
use crate::output::{self, Output};
use crate::progress;

/// Records (or differences) between two updates of a spinner's count.
const SPINNER_EVERY: u64 = 1024;

/// `backup ls` options.
#[derive(Debug, Clone, clap::Args)]
pub struct LsArgs {
    /// Repository and output options.
    #[command(flatten)]
    pub repo: RepoOption,
    /// The backup: an id from `backup list`, or `latest`.
    pub id: String,
    /// Only the records of this collection.
    #[arg(long, value_name = "COLLECTION")]
    pub collection: Option<String>,
}

/// `backup diff` options.
#[derive(Debug, Clone, clap::Args)]
pub struct DiffArgs {
    /// Repository and output options.
    #[command(flatten)]
    pub repo: RepoOption,
    /// The older backup: an id, or `latest`.
    pub from: String,
    /// The newer backup: an id, or `latest`.
    pub to: String,
}

/// `backup dump` options.
#[derive(Debug, Clone, clap::Args)]
pub struct DumpArgs {
    /// Repository options (the value is always printed as JSON).
    #[command(flatten)]
    pub repo: RepoOption,
    /// The backup: an id, or `latest`.
    pub id: String,
    /// The record's collection.
    pub collection: String,
    /// The record's key.
    pub key: String,
}

/// `backup check` options.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Repository and output options.
    #[command(flatten)]
    pub repo: RepoOption,
    /// The backup to check [default: all].
    pub id: Option<String>,
    /// Also read, decode and re-hash every value (what `backup verify` does).
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Also read the values of a random N% of the packs (1% to 100%).
    #[arg(long, value_name = "N%", value_parser = parse_percent)]
    pub read_data_subset: Option<u8>,
}

/// `N%` (or `N`): a whole percentage from 1 to 100 (a usage error otherwise, exit code 2).
fn parse_percent(text: &str) -> Result<u8, String> {
    let number = text.strip_suffix('%').unwrap_or(text);
    match number.parse::<u8>() {
        Ok(percent @ 1..=100) => Ok(percent),
        _ => Err(format!(
            "{text:?} is not a share of the packs from 1% to 100% (such as 10%)"
        )),
    }
}

/// `latest` or a backup id, as a usage-independent error naming the argument.
fn backup_ref(text: &str) -> anyhow::Result<BackupRef> {
    text.parse().with_context(|| {
        format!("parse the backup id {text:?} (an id from `backup list`, or latest)")
    })
}

/// `backup ls ID`: the backup's records, as they are read.
pub async fn ls(args: &LsArgs, config: &Config) -> anyhow::Result<()> {
    let mut opened = open_repository(&args.repo, config, Access::Read).await?;
    let result = ls_in(&opened.repository, args).await;
    opened.finish(result).await
}

/// [`ls`] once the repository is open.
async fn ls_in(repository: &Repository, args: &LsArgs) -> anyhow::Result<()> {
    let backup = backup_ref(&args.id)?;
    let mut records = repository.records(&backup, args.collection.as_deref());
    let mut out = Output::stdout();
    while let Some(record) = records.next().await {
        let record = record.with_context(|| format!("list the records of backup {backup}"))?;
        if args.repo.json {
            out.json(&record)?;
        } else {
            out.line(format_args!(
                "{}  {}  v{}  {}  {}",
                record.collection,
                record.key,
                record.version,
                output::bytes(record.size_bytes),
                output::time(record.updated_at_ms)
            ))?;
        }
    }
    out.finish()
}

/// `backup diff FROM TO`: the records that differ, as they are found.
pub async fn diff(args: &DiffArgs, config: &Config) -> anyhow::Result<()> {
    let mut opened = open_repository(&args.repo, config, Access::Read).await?;
    let result = diff_in(&opened.repository, args).await;
    opened.finish(result).await
}

/// [`diff`] once the repository is open.
async fn diff_in(repository: &Repository, args: &DiffArgs) -> anyhow::Result<()> {
    let (from, to) = (backup_ref(&args.from)?, backup_ref(&args.to)?);
    let mut differences = repository.diff(&from, &to);
    let spinner = progress::spinner("comparing backups");
    let mut out = Output::stdout();
    let (mut added, mut removed, mut changed) = (0u64, 0u64, 0u64);
    let mut found = 0u64;
    let result = async {
        while let Some(difference) = differences.next().await {
            let difference =
                difference.with_context(|| format!("compare backups {from} and {to}"))?;
            found += 1;
            if found.is_multiple_of(SPINNER_EVERY) {
                spinner.set_message(format!("comparing backups: {found} differences"));
            }
            match difference.kind {
                DiffKind::Added => added += 1,
                DiffKind::Removed => removed += 1,
                _ => changed += 1,
            }
            let symbol = difference.kind.symbol();
            if args.repo.json {
                out.json(&difference)?;
            } else {
                let version = |record: &Option<BackupRecord>| {
                    record
                        .as_ref()
                        .map_or("-".to_owned(), |record| format!("v{}", record.version))
                };
                out.line(format_args!(
                    "{symbol}  {}  {}  {} -> {}",
                    difference.collection,
                    difference.key,
                    version(&difference.before),
                    version(&difference.after)
                ))?;
            }
        }
        if !args.repo.json {
            out.line(format_args!(
                "{added} added, {removed} removed, {changed} changed"
            ))?;
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    spinner.finish_and_clear();
    result?;
    out.finish()
}

/// `backup dump ID COLLECTION KEY`: the value as JSON; exit code 3 when it is absent.
pub async fn dump(args: &DumpArgs, config: &Config) -> anyhow::Result<()> {
    let mut opened = open_repository(&args.repo, config, Access::Read).await?;
    let result = dump_in(&opened.repository, args).await;
    opened.finish(result).await
}

/// [`dump`] once the repository is open.
async fn dump_in(repository: &Repository, args: &DumpArgs) -> anyhow::Result<()> {
    let backup = backup_ref(&args.id)?;
    let found = progress::while_running(
        "reading the backup",
        repository.value(&backup, &args.collection, &args.key),
    )
    .await
    .with_context(|| format!("read {}/{} in backup {backup}", args.collection, args.key))?;
    let Some(found) = found else {
        return Err(Failure::NotFound {
            collection: args.collection.clone(),
            keys: vec![args.key.clone()],
        }
        .into());
    };
    let mut out = Output::stdout();
    out.json(&found.value)?;
    out.finish()
}

/// `backup check [ID]`: the structure, and the data asked for; exit code 4 on damage.
pub async fn check(args: &CheckArgs, config: &Config) -> anyhow::Result<()> {
    let mut opened = open_repository(&args.repo, config, Access::Read).await?;
    let result = check_in(&opened.repository, args).await;
    opened.finish(result).await
}

/// [`check`] once the repository is open.
async fn check_in(repository: &Repository, args: &CheckArgs) -> anyhow::Result<()> {
    let id: Option<BackupId> = args
        .id
        .as_deref()
        .map(str::parse)
        .transpose()
        .context("parse the backup id")?;
    let read_data = match (args.read_data, args.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(percent)) => ReadData::Subset { percent },
        (false, None) => ReadData::None,
    };
    let bar = progress::counter("checking", 0);
    let progress = bar.clone();
    let report = repository
        .check(id.as_ref(), read_data, move |p| show(&progress, p))
        .await;
    bar.finish_and_clear();
    let report = report.context("check backups")?;
    print(&args.repo, &report, |out| show_check(out, &report))?;
    if report.is_clean() {
        Ok(())
    } else {
        Err(Failure::Problems {
            count: report.damage.len(),
        }
        .into())
    }
}

fn show_check(out: &mut Output, report: &CheckReport) -> anyhow::Result<()> {
    super::backup::show_damage(out, &report.damage)?;
    out.line(format_args!(
        "check: {} backups, {} values located in {} packs; {} values ({}) read from {} packs; \
         {} problems",
        report.backups_checked,
        output::count(report.blobs_located),
        output::count(report.packs_checked),
        output::count(report.blobs_read),
        output::bytes(report.bytes_read),
        output::count(report.packs_read),
        report.damage.len()
    ))
}
