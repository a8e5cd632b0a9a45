//! `strongbox demo`: a simulated BitCraps game night, end to end, on a temporary database.
//!
//! 1. **Setup**: player profiles, chip balances, settings, avatars and achievements, written in
//!    transactions by concurrent tasks. Most players keep the identical default settings,
//!    avatar and achievements, so deduplication stores those once.
//! 2. **Game night**: one task per table, all concurrent. Each round, seated players place bets
//!    at once (a transaction moves the stake from the balance into the bet record, with
//!    `Expect::Version` on the balance and `Expect::Absent` on the bet), chat, the shooter rolls
//!    until the round is decided, and the table settles every bet in one transaction against
//!    its bank. Players also tip players at other tables, so updates of one balance race; a
//!    conflict is re-read and retried, never lost.
//! 3. **A deliberate conflict**: two transfers expecting the same version of one balance;
//!    exactly one commits, the other fails with `Error::Conflict`.
//! 4. **Read back** every record, compare each to what was last written, check that the total
//!    of chips never changed, show what compression and deduplication saved, and verify.
//!
//! Randomness comes from an inline SplitMix64 generator, so one seed gives one game (apart from
//! the order in which concurrent tables interleave).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use serde_json::{Value, json};
use strongbox::{Expect, ListOptions, Store, Version};

use crate::cli::{DemoArgs, GlobalOptions};
use crate::commands::{Failure, PAGE_KEYS, retrieve_values};
use crate::output::{self, Output};

/// Simulated clock start (milliseconds since the epoch): the game night is deterministic.
const BASE_MS: i64 = 1_760_000_000_000;

/// Conflicts tolerated on one update before giving up.
const MAX_RETRIES: u32 = 100;

/// Chips in each table's bank at the start.
const BANK_CHIPS: i64 = 500_000;

/// Players whose setup records one transaction writes.
const SETUP_CHUNK: usize = 50;

/// What players say at the table.
const PHRASES: [&str; 24] = [
    "no more sevens please",
    "let's go shooter!",
    "hot table tonight",
    "come on hard eight",
    "pressing my bets",
    "gg everyone",
    "who's rolling next?",
    "field bet looking good",
    "that was close",
    "yo eleven!",
    "dice are cold",
    "big red, stay away",
    "I'm on a heater",
    "one more round then bed",
    "nice roll!",
    "point is on",
    "don't pass gang",
    "lucky dice, lucky night",
    "thanks for the tip!",
    "the house always wins... not today",
    "snake eyes again?",
    "all in on pass",
    "brb",
    "new table, who dis",
];

const ADJECTIVES: [&str; 12] = [
    "royal", "lucky", "hot", "cold", "wild", "silent", "golden", "crazy", "mighty", "sly",
    "steady", "brave",
];

const NOUNS: [&str; 10] = [
    "shooter", "roller", "dealer", "gambler", "whale", "shark", "ace", "dice", "stickman", "boxman",
];

/// SplitMix64: a tiny, fast, deterministic generator (not for cryptography).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A number in `low..=high`.
    fn between(&mut self, low: i64, high: i64) -> i64 {
        let span = high.saturating_sub(low).max(0).unsigned_abs() + 1;
        low + i64::try_from(self.below(span)).unwrap_or(0)
    }

    /// True `percent` times out of 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// One die.
    fn die(&mut self) -> u8 {
        1 + self.below(6) as u8
    }

    /// An independent generator for a sub-task.
    fn fork(&mut self, stream: u64) -> Rng {
        Rng::new(self.next_u64() ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }
}

/// A player as every task knows it.
#[derive(Debug, Clone)]
struct Player {
    id: String,
    name: String,
}

/// What every task shares.
#[derive(Debug)]
struct Ctx {
    store: Store,
    players: Vec<Player>,
}

/// Counts of one task, added up at the end, and the values it wrote last per record.
#[derive(Debug, Default)]
struct Tally {
    /// Records written by committed stores and transactions.
    writes: u64,
    bets: u64,
    won: u64,
    lost: u64,
    pushed: u64,
    rolls: u64,
    chats: u64,
    tips: u64,
    /// Conflicts met by concurrent updates, each re-read and retried.
    retries: u64,
    /// (collection, key) -> the value last written (balances are checked by their total).
    expected: Vec<(String, String, Value)>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.writes += other.writes;
        self.bets += other.bets;
        self.won += other.won;
        self.lost += other.lost;
        self.pushed += other.pushed;
        self.rolls += other.rolls;
        self.chats += other.chats;
        self.tips += other.tips;
        self.retries += other.retries;
        self.expected.extend(other.expected);
    }

    fn wrote(&mut self, collection: &str, key: &str, value: Value) {
        self.expected
            .push((collection.to_owned(), key.to_owned(), value));
    }
}

/// Runs the demo and prints its report.
///
/// # Errors
/// [`Failure::Problems`] (exit code 4) when verify finds problems; an error when the total of
/// chips changed, a value read back differs, the `--db` file is not empty, or a store call fails.
pub async fn run(global: &GlobalOptions, args: DemoArgs) -> anyhow::Result<()> {
    let loaded = crate::config::load(global)?;
    let mut out = Output::stdout();
    out.line("Strongbox demo: a BitCraps game night")?;
    // Dropped (and removed) at the end of this function, after the store is closed.
    let temporary;
    let config = if global.db_on_command_line {
        out.line(format_args!("  database  {}", loaded.path.display()))?;
        loaded
    } else {
        temporary = tempfile::Builder::new()
            .prefix("strongbox-demo-")
            .tempdir()
            .context("create a temporary directory for the demo database")?;
        let path = temporary.path().join("bitcraps.db");
        out.line(format_args!(
            "  database  {} (temporary, removed at exit)",
            path.display()
        ))?;
        crate::config::with_path(loaded, path)
    };
    out.line(format_args!(
        "  {} players, {} tables, {} rounds per table, seed {}",
        args.players, args.tables, args.rounds, args.seed
    ))?;
    out.line("")?;
    out.flush()?;
    let store = crate::commands::open_config(config).await?;
    let result = play(&store, &args, &mut out).await;
    let result = crate::commands::close(store, result).await;
    out.finish()?;
    result
}

/// The whole game night on an open store.
async fn play(store: &Store, args: &DemoArgs, out: &mut Output) -> anyhow::Result<()> {
    let started = Instant::now();
    let existing = store
        .storage_stats()
        .await
        .context("read storage statistics")?;
    if existing.records > 0 {
        bail!(
            "the demo needs an empty database, and {} holds {} records; pass a new file to --db, \
             or omit --db to use a temporary one",
            store.config().path.display(),
            existing.records
        );
    }
    let mut rng = Rng::new(args.seed);
    let players: Vec<Player> = (0..args.players)
        .map(|index| Player {
            id: format!("p{index:05}"),
            name: format!(
                "{}_{}{}",
                rng.pick(&ADJECTIVES),
                rng.pick(&NOUNS),
                rng.below(1000)
            ),
        })
        .collect();
    let ctx = Arc::new(Ctx {
        store: store.clone(),
        players,
    });
    let tables = usize::try_from(args.tables).context("count tables")?;
    let mut total = Tally::default();

    // 1. Setup.
    let phase = Instant::now();
    let (setup, initial_chips) = setup(&ctx, tables, &mut rng).await?;
    out.line(format_args!(
        "setup       {} records (profiles, balances, settings, avatars, achievements) in {:.2} s",
        output::count(setup.writes),
        phase.elapsed().as_secs_f64()
    ))?;
    out.flush()?;
    total.add(setup);

    // 2. Game night: every table at once.
    let phase = Instant::now();
    let mut handles = Vec::with_capacity(tables);
    for table in 0..tables {
        let seated: Vec<usize> = (table..ctx.players.len()).step_by(tables).collect();
        let table_rng = rng.fork(table as u64);
        let ctx = Arc::clone(&ctx);
        let rounds = args.rounds;
        handles.push(tokio::spawn(async move {
            play_table(&ctx, table, &seated, table_rng, rounds).await
        }));
    }
    let mut night = Tally::default();
    for (table, handle) in handles.into_iter().enumerate() {
        let tally = handle
            .await
            .with_context(|| format!("join table t{table:02}"))?
            .with_context(|| format!("play at table t{table:02}"))?;
        night.add(tally);
    }
    out.line(format_args!(
        "game night  {tables} tables playing concurrently for {:.2} s: {} bets, {} dice rolls, \
         {} chat messages, {} tips",
        phase.elapsed().as_secs_f64(),
        output::count(night.bets),
        output::count(night.rolls),
        output::count(night.chats),
        output::count(night.tips),
    ))?;
    out.line(format_args!(
        "            bets: {} won, {} lost, {} pushed; {} concurrent updates met a conflict and \
         were re-read and retried",
        output::count(night.won),
        output::count(night.lost),
        output::count(night.pushed),
        output::count(night.retries),
    ))?;
    out.flush()?;
    total.add(night);

    // 3. The deliberate conflict.
    let (conflict, lines) = deliberate_conflict(&ctx).await?;
    for line in lines {
        out.line(line)?;
    }
    out.flush()?;
    total.add(conflict);

    // 4. Read everything back.
    let phase = Instant::now();
    let expected: BTreeMap<(String, String), Value> = std::mem::take(&mut total.expected)
        .into_iter()
        .map(|(collection, key, value)| ((collection, key), value))
        .collect();
    let read = read_back(store, &expected).await?;
    out.line(format_args!(
        "read back   {} records in {} collections in {:.2} s; {} of them checked equal to the \
         value last written (balances are checked by their total)",
        output::count(read.records),
        read.collections,
        phase.elapsed().as_secs_f64(),
        output::count(read.checked),
    ))?;
    if read.mismatched > 0 || read.checked != expected.len() as u64 {
        bail!(
            "read back {} values different from what was written, and missed {} records",
            read.mismatched,
            expected.len() as u64 - read.checked.min(expected.len() as u64)
        );
    }
    let holds = read.chips == initial_chips && read.open_bets == 0;
    out.line(format_args!(
        "chips       total {} at the start, {} now, {} bets left open: invariant {}",
        output::count(initial_chips.unsigned_abs()),
        output::count(read.chips.unsigned_abs()),
        read.open_bets,
        if holds { "holds" } else { "BROKEN" }
    ))?;

    // 5. Storage and verification.
    let stats = store
        .storage_stats()
        .await
        .context("read storage statistics")?;
    out.line(format_args!(
        "storage     {} of values written as {} ({} of logical); file {}",
        output::bytes(stats.logical_bytes),
        output::bytes(stats.stored_bytes),
        output::percent(stats.stored_bytes, stats.logical_bytes),
        output::bytes(stats.file_bytes),
    ))?;
    out.line(format_args!(
        "            saved by deduplication: {} ({} of logical; {} records share {} unique values)",
        output::bytes(stats.dedup_saved_bytes),
        output::percent(stats.dedup_saved_bytes, stats.logical_bytes),
        output::count(stats.records),
        output::count(stats.blobs),
    ))?;
    out.line(format_args!(
        "            saved by compression:   {} ({} of the unique values)",
        output::bytes(stats.compression_saved_bytes),
        output::percent(stats.compression_saved_bytes, stats.unique_bytes),
    ))?;
    out.flush()?;
    // The workload's time, without the maintenance and the verification below.
    let elapsed = started.elapsed().as_secs_f64();
    // 6. Maintenance: collections with enough values get a compression dictionary.
    let maintenance = store.maintenance().await.context("run maintenance")?;
    let after = store
        .storage_stats()
        .await
        .context("read storage statistics")?;
    out.line(format_args!(
        "maintenance {} dictionaries trained, {} values recompressed: values stored in {} ({} of \
         logical); file {} -> {}, in {} ms",
        maintenance.dictionaries_trained,
        output::count(maintenance.values_recompressed),
        output::bytes(after.stored_bytes),
        output::percent(after.stored_bytes, after.logical_bytes),
        output::bytes(maintenance.file_bytes_before),
        output::bytes(maintenance.file_bytes_after),
        maintenance.elapsed_ms
    ))?;
    for error in &maintenance.errors {
        out.line(format_args!("            maintenance step failed: {error}"))?;
    }
    out.flush()?;
    let report = store.verify().await.context("verify the database")?;
    for problem in &report.problems {
        out.line(format_args!(
            "            {}",
            crate::commands::verify::describe(problem)
        ))?;
    }
    out.line(format_args!(
        "{}",
        crate::commands::verify::summary(&report).replacen("verify: ", "verify      ", 1)
    ))?;
    out.line(format_args!(
        "total       {} records written, {} read, in {elapsed:.2} s ({} writes/s)",
        output::count(total.writes),
        output::count(read.records),
        output::count((total.writes as f64 / elapsed.max(1e-9)).round() as u64),
    ))?;
    out.flush()?;
    if !report.is_clean() {
        return Err(Failure::Problems {
            count: report.problems.len(),
        }
        .into());
    }
    if !holds {
        bail!(
            "the total of chips changed from {initial_chips} to {} ({} bets open)",
            read.chips,
            read.open_bets
        );
    }
    Ok(())
}

/// The default settings most players never change.
fn default_settings() -> Value {
    json!({
        "sound": true,
        "music_volume": 0.6,
        "effects_volume": 0.8,
        "theme": "felt-green",
        "language": "en",
        "auto_roll": false,
        "show_odds": true,
        "confirm_bets_over": 500,
        "notifications": {"friend_online": true, "table_invite": true, "big_win": true, "tips": true},
        "privacy": {"show_balance": false, "show_history": true, "allow_tips": true},
        "hotkeys": {"roll": "space", "pass": "p", "dont_pass": "d", "field": "f", "chat": "enter"}
    })
}

/// An avatar: a 32x32 pixel-art die on felt with a few sparkles that depend on `seed`, about
/// 1.2 KB of JSON. Most players keep the default one (one seed), so it is stored once.
fn avatar(seed: u64) -> Value {
    const PIPS: [(i32, i32); 5] = [(9, 9), (9, 22), (15, 15), (22, 9), (22, 22)];
    let mut rng = Rng::new(seed);
    let palette = [
        "#0b3d20", "#f5f5f5", "#c62828", "#ffd54f", "#1e88e5", "#212121", "#8d6e63",
    ];
    let rows: Vec<String> = (0..32i32)
        .map(|y| {
            (0..32i32)
                .map(|x| {
                    if rng.chance(3) {
                        return *rng.pick(&['3', '4', '6']);
                    }
                    let inside = (4..28).contains(&x) && (4..28).contains(&y);
                    if !inside {
                        '0'
                    } else if x == 4 || x == 27 || y == 4 || y == 27 {
                        '5'
                    } else if PIPS
                        .iter()
                        .any(|&(px, py)| (x - px).abs() <= 1 && (y - py).abs() <= 1)
                    {
                        '2'
                    } else {
                        '1'
                    }
                })
                .collect()
        })
        .collect();
    json!({"style": "pixel-die", "size": 32, "palette": palette, "rows": rows})
}

/// The default achievements of a new player.
fn default_achievements() -> Value {
    json!({
        "unlocked": [],
        "progress": {"first_roll": 0, "high_roller": 0, "hot_streak": 0, "generous": 0}
    })
}

/// The rules of every table, stored with each table's session.
fn table_config() -> Value {
    json!({
        "table_type": "classic", "min_bet": 10, "max_bet": 5000, "max_players": 32,
        "house_edge_bps": 141, "roll_timeout_ms": 30000, "bet_timeout_ms": 15000,
        "payouts": {"Pass": [1, 1], "DontPass": [1, 1], "Field": [1, 1], "Field2": [2, 1],
                    "Field12": [3, 1]},
        "allowed_bets": ["Pass", "DontPass", "Field"],
        "consensus": {"quorum": 0.67, "timeout_ms": 5000, "commit_reveal": true}
    })
}

/// Writes every player's records and the tables' banks; returns the tally and the total chips.
async fn setup(ctx: &Arc<Ctx>, tables: usize, rng: &mut Rng) -> anyhow::Result<(Tally, i64)> {
    let default_avatar = avatar(7);
    let mut handles = Vec::new();
    for (chunk_index, chunk) in ctx.players.chunks(SETUP_CHUNK).enumerate() {
        let ctx = Arc::clone(ctx);
        let chunk = chunk.to_vec();
        let first = chunk_index * SETUP_CHUNK;
        let mut rng = rng.fork(1_000 + chunk_index as u64);
        let default_avatar = default_avatar.clone();
        handles.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut chips = 0i64;
            let mut tx = ctx.store.transaction();
            for (offset, player) in chunk.iter().enumerate() {
                let index = first + offset;
                let balance = 50 * rng.between(10, 40);
                chips += balance;
                let profile = json!({
                    "id": player.id, "name": player.name,
                    "joined_at_ms": BASE_MS - 86_400_000 * rng.between(1, 900),
                    "level": rng.between(1, 60), "vip": rng.chance(10),
                    "table": format!("t{:02}", index % tables),
                });
                let mut settings = default_settings();
                if rng.chance(15) {
                    settings["theme"] = json!(*rng.pick(&["midnight", "vegas", "retro"]));
                    settings["music_volume"] = json!(rng.between(0, 10) as f64 / 10.0);
                }
                let avatar = if rng.chance(10) {
                    avatar(rng.next_u64())
                } else {
                    default_avatar.clone()
                };
                let records = [
                    ("players", profile),
                    ("balances", json!(balance)),
                    ("settings", settings),
                    ("avatars", avatar),
                    ("achievements", default_achievements()),
                ];
                for (collection, value) in records {
                    tx.store(collection, &player.id, &value).with_context(|| {
                        format!("add {collection}/{} to a transaction", player.id)
                    })?;
                    if collection != "balances" {
                        tally.wrote(collection, &player.id, value);
                    }
                }
            }
            tally.writes += tx.len() as u64;
            tx.commit().await.context("commit the players' records")?;
            anyhow::Ok((tally, chips))
        }));
    }
    let mut banks = ctx.store.transaction();
    for table in 0..tables {
        banks.store("balances", &format!("bank-t{table:02}"), &BANK_CHIPS)?;
    }
    let mut tally = Tally {
        writes: banks.len() as u64,
        ..Tally::default()
    };
    banks.commit().await.context("commit the tables' banks")?;
    let mut chips = BANK_CHIPS * tables as i64;
    for handle in handles {
        let (part, part_chips) = handle.await.context("join a setup task")??;
        tally.add(part);
        chips += part_chips;
    }
    Ok((tally, chips))
}

/// The bets a table takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BetKind {
    Pass,
    DontPass,
    Field,
}

impl BetKind {
    fn name(self) -> &'static str {
        match self {
            BetKind::Pass => "Pass",
            BetKind::DontPass => "DontPass",
            BetKind::Field => "Field",
        }
    }
}

/// How a round of craps went: the come-out roll (which is the point, when one was set), and
/// the point's fate. Field bets are decided by the come-out roll alone.
#[derive(Debug, Clone, Copy)]
struct RoundResult {
    come_out: u8,
    /// `Some(true)`: point made; `Some(false)`: seven out; `None`: decided on the come-out.
    point_made: Option<bool>,
}

/// What a bet pays: `None` = lost, `Some(0)` = push (stake back), `Some(m)` = stake back plus
/// `m` times the stake.
fn payout(kind: BetKind, round: RoundResult) -> Option<i64> {
    let come_out = round.come_out;
    match kind {
        BetKind::Field => match come_out {
            2 => Some(2),
            12 => Some(3),
            3 | 4 | 9 | 10 | 11 => Some(1),
            _ => None,
        },
        BetKind::Pass => match (come_out, round.point_made) {
            (7 | 11, _) | (_, Some(true)) => Some(1),
            _ => None,
        },
        BetKind::DontPass => match (come_out, round.point_made) {
            (12, None) => Some(0),
            (2 | 3, None) | (_, Some(false)) => Some(1),
            _ => None,
        },
    }
}

/// A bet placed and held in its record.
#[derive(Debug, Clone)]
struct Bet {
    player: usize,
    key: String,
    kind: BetKind,
    stake: i64,
    /// Version of the bet record, from the commit that created it.
    version: Version,
    record: Value,
}

/// A balance as a table last saw it: chips and the version they were read or written at.
type Balance = (i64, Version);

fn is_conflict(error: &strongbox::Error) -> bool {
    error.kind() == "conflict"
}

/// The version a committed transaction left for its `index`-th write.
fn version_at(versions: &[Option<Version>], index: usize) -> anyhow::Result<Version> {
    versions
        .get(index)
        .copied()
        .flatten()
        .with_context(|| format!("the commit returned no version for write {index}"))
}

/// Reads a balance with its version.
async fn read_balance(store: &Store, id: &str) -> anyhow::Result<Balance> {
    let record = store
        .retrieve_record::<i64>("balances", id)
        .await
        .with_context(|| format!("read balances/{id}"))?
        .with_context(|| format!("balances/{id} is missing"))?;
    Ok((record.value, record.meta.version))
}

/// What a table remembers during the night.
#[derive(Debug, Default)]
struct TableState {
    /// Its bank and seated players' balances, as last read or written: updates expect these
    /// versions and re-read only when a conflict says another table's tip changed one.
    balances: BTreeMap<String, Balance>,
    /// Achievements changed tonight, by player index.
    achievements: BTreeMap<usize, Value>,
    /// Each player's settled bets, written as their history at the end of the night.
    history: BTreeMap<usize, Vec<Value>>,
}

impl TableState {
    fn balance(&self, id: &str) -> anyhow::Result<Balance> {
        self.balances
            .get(id)
            .copied()
            .with_context(|| format!("table does not know balances/{id}"))
    }
}

/// One table's evening: `rounds` rounds of bets, chat, rolls, settlement and tips.
async fn play_table(
    ctx: &Arc<Ctx>,
    table: usize,
    seated: &[usize],
    mut rng: Rng,
    rounds: u64,
) -> anyhow::Result<Tally> {
    let store = &ctx.store;
    let name = format!("t{table:02}");
    let bank = format!("bank-{name}");
    let config = table_config();
    let mut tally = Tally::default();
    let mut state = TableState::default();
    if seated.is_empty() {
        return Ok(tally);
    }
    let players: Vec<&str> = seated.iter().map(|&p| ctx.players[p].id.as_str()).collect();
    for id in players.iter().copied().chain([bank.as_str()]) {
        state
            .balances
            .insert(id.to_owned(), read_balance(store, id).await?);
    }
    for round in 0..rounds {
        let at = |step: i64| BASE_MS + round as i64 * 60_000 + step * 500 + table as i64 * 7;
        let tag = format!("{name}-r{round:04}");
        let shooter = seated[(round as usize) % seated.len()];
        let mut session = json!({
            "table": name, "round": round, "phase": "ComeOut", "point": null,
            "shooter": ctx.players[shooter].id, "players": players, "rolls": [],
            "config": config, "updated_at_ms": at(0),
        });
        store
            .store("sessions", &name, &session)
            .await
            .context("open the round")?;
        tally.writes += 1;

        // Everyone bets and chats at once: one task each.
        let mut betting = Vec::new();
        for &player in seated {
            if !rng.chance(60) {
                continue;
            }
            let kind = *rng.pick(&[
                BetKind::Pass,
                BetKind::Pass,
                BetKind::DontPass,
                BetKind::Field,
            ]);
            let stake = 5 * rng.between(2, 20);
            let ctx = Arc::clone(ctx);
            let key = format!("{tag}-{}", ctx.players[player].id);
            let balance = state.balance(&ctx.players[player].id)?;
            let at_ms = at(1);
            betting.push(tokio::spawn(async move {
                place_bet(&ctx, player, key, kind, stake, at_ms, balance).await
            }));
        }
        let mut chatting = Vec::new();
        for message in 0..rng.below(3) {
            let from = *rng.pick(seated);
            let chat = json!({
                "table": name, "from": ctx.players[from].id, "name": ctx.players[from].name,
                "text": *rng.pick(&PHRASES), "sent_at_ms": at(2) + message as i64,
                "reply_to": null, "reactions": [],
            });
            let key = format!("{tag}-{message}");
            let ctx = Arc::clone(ctx);
            chatting.push(tokio::spawn(async move {
                ctx.store.store("chat", &key, &chat).await?;
                anyhow::Ok((key, chat))
            }));
        }
        let mut bets = Vec::with_capacity(betting.len());
        for handle in betting {
            let placed = handle.await.context("join a bet")??;
            tally.retries += placed.retries;
            tally.writes += placed.tally.writes;
            tally.expected.extend(placed.tally.expected);
            let id = &ctx.players[placed.player].id;
            state.balances.insert(id.clone(), placed.balance);
            bets.extend(placed.bet);
        }
        tally.bets += bets.len() as u64;
        for handle in chatting {
            let (key, chat) = handle
                .await
                .context("join a chat message")?
                .context("send a chat message")?;
            tally.writes += 1;
            tally.chats += 1;
            tally.wrote("chat", &key, chat);
        }

        // The shooter rolls until the round is decided; the dice log commits in one go.
        let mut point = None;
        let mut result = None;
        let mut dice_log = store.transaction();
        let mut rolls = Vec::new();
        while result.is_none() {
            let dice = [rng.die(), rng.die()];
            let sum = dice[0] + dice[1];
            let outcome = match point {
                None if matches!(sum, 4 | 5 | 6 | 8 | 9 | 10) => {
                    point = Some(sum);
                    "point set"
                }
                None => {
                    result = Some(RoundResult {
                        come_out: sum,
                        point_made: None,
                    });
                    if matches!(sum, 7 | 11) {
                        "natural"
                    } else {
                        "craps"
                    }
                }
                Some(target) if sum == target => {
                    result = Some(RoundResult {
                        come_out: target,
                        point_made: Some(true),
                    });
                    "point made"
                }
                Some(target) if sum == 7 => {
                    result = Some(RoundResult {
                        come_out: target,
                        point_made: Some(false),
                    });
                    "seven out"
                }
                Some(_) => "no decision",
            };
            let roll = json!({
                "table": name, "round": round, "roll": rolls.len(), "dice": dice, "total": sum,
                "shooter": ctx.players[shooter].id, "outcome": outcome,
                "rolled_at_ms": at(3) + rolls.len() as i64 * 100,
            });
            let key = format!("{tag}-{:03}", rolls.len());
            dice_log.store("rolls", &key, &roll)?;
            rolls.push((key, roll));
        }
        let Some(result) = result else {
            bail!("round {round} ended undecided");
        };
        session["phase"] = json!("Decided");
        session["point"] = json!(point);
        session["rolls"] = json!(
            rolls
                .iter()
                .map(|(_, roll)| &roll["dice"])
                .collect::<Vec<_>>()
        );
        session["updated_at_ms"] = json!(at(3));
        dice_log.store("sessions", &name, &session)?;
        tally.writes += dice_log.len() as u64;
        dice_log.commit().await.context("record the rolls")?;
        tally.rolls += rolls.len() as u64;
        for (key, roll) in rolls {
            tally.wrote("rolls", &key, roll);
        }

        session["phase"] = json!("Settled");
        session["updated_at_ms"] = json!(at(4));
        let decided = Round {
            bank: &bank,
            tag: &tag,
            result,
            at_ms: at(4),
            session: (&name, &session),
        };
        settle(ctx, &decided, &bets, &mut state, &mut tally)
            .await
            .with_context(|| format!("settle round {round}"))?;
        tally.wrote("sessions", &name, session);

        // A tip to anyone, often at another table: races with that table's updates.
        if rng.chance(40) {
            let from = *rng.pick(seated);
            let to = rng.below(ctx.players.len() as u64) as usize;
            if to != from {
                let (from_id, to_id) = (&ctx.players[from].id, &ctx.players[to].id);
                let amount = rng.between(5, 50);
                let key = format!("tip-{tag}");
                let entry = json!({
                    "from": from_id, "to": to_id, "amount": amount, "reason": "tip",
                    "at_ms": at(6),
                });
                let payer = state.balance(from_id)?;
                let payee = match state.balances.get(to_id) {
                    Some(known) => *known,
                    None => read_balance(store, to_id).await?,
                };
                let parties = [(from_id.as_str(), payer), (to_id.as_str(), payee)];
                let moved = transfer(store, parties, amount, &key, &entry).await?;
                tally.retries += moved.retries;
                if let Some([payer, payee]) = moved.balances {
                    state.balances.insert(from_id.clone(), payer);
                    if let Some(known) = state.balances.get_mut(to_id) {
                        *known = payee;
                    }
                    tally.writes += 3;
                    tally.tips += 1;
                    tally.wrote("ledger", &key, entry);
                }
            }
        }
    }

    // The end of the night: every player's history, in one transaction.
    let mut tx = store.transaction();
    let mut histories = Vec::new();
    for &player in seated {
        let bets = state.history.remove(&player).unwrap_or_default();
        let staked: i64 = bets.iter().filter_map(|bet| bet["stake"].as_i64()).sum();
        let paid: i64 = bets.iter().filter_map(|bet| bet["paid"].as_i64()).sum();
        let history = json!({
            "player": ctx.players[player].id, "table": name, "night_started_at_ms": BASE_MS,
            "bets_placed": bets.len(), "staked": staked, "paid": paid, "net": paid - staked,
            "bets": bets,
        });
        tx.store("history", &ctx.players[player].id, &history)?;
        histories.push((ctx.players[player].id.clone(), history));
    }
    tally.writes += tx.len() as u64;
    tx.commit().await.context("write the players' histories")?;
    for (id, history) in histories {
        tally.wrote("history", &id, history);
    }
    Ok(tally)
}

/// What placing a bet did.
#[derive(Debug)]
struct Placed {
    player: usize,
    /// The bet, or `None` when the player could not afford it.
    bet: Option<Bet>,
    /// The player's balance afterwards, as last read or written.
    balance: Balance,
    retries: u64,
    tally: Tally,
}

/// Moves a stake from the player's balance (expected at `balance`) into a new bet record; on
/// a conflict, re-reads the balance and tries again.
async fn place_bet(
    ctx: &Ctx,
    player: usize,
    key: String,
    kind: BetKind,
    stake: i64,
    at_ms: i64,
    mut balance: Balance,
) -> anyhow::Result<Placed> {
    let store = &ctx.store;
    let id = &ctx.players[player].id;
    let record = json!({
        "player": id, "kind": kind.name(), "stake": stake, "status": "open", "placed_at_ms": at_ms,
    });
    let ledger = json!({
        "from": id, "to": format!("bets/{key}"), "amount": stake, "reason": "bet", "at_ms": at_ms,
    });
    let ledger_key = format!("bet-{key}");
    let mut retries = 0;
    loop {
        let (chips, version) = balance;
        if chips < stake {
            return Ok(Placed {
                player,
                bet: None,
                balance,
                retries,
                tally: Tally::default(),
            });
        }
        let mut tx = store.transaction();
        tx.store_if("balances", id, &(chips - stake), Expect::Version(version))?;
        tx.store_if("bets", &key, &record, Expect::Absent)?;
        tx.store("ledger", &ledger_key, &ledger)?;
        match tx.commit().await {
            Ok(versions) => {
                let balance = (chips - stake, version_at(&versions, 0)?);
                let version = version_at(&versions, 1)?;
                let mut tally = Tally {
                    writes: 3,
                    ..Tally::default()
                };
                tally.wrote("bets", &key, record.clone());
                tally.wrote("ledger", &ledger_key, ledger);
                let bet = Bet {
                    player,
                    key,
                    kind,
                    stake,
                    version,
                    record,
                };
                return Ok(Placed {
                    player,
                    bet: Some(bet),
                    balance,
                    retries,
                    tally,
                });
            }
            Err(error) if is_conflict(&error) && retries < u64::from(MAX_RETRIES) => {
                retries += 1;
                balance = read_balance(store, id).await?;
            }
            Err(error) => return Err(error).with_context(|| format!("place bet {key}")),
        }
    }
}

/// A decided round, as settlement needs it.
#[derive(Debug)]
struct Round<'a> {
    /// The table's bank balance key.
    bank: &'a str,
    /// `tNN-rNNNN`, the prefix of the round's keys.
    tag: &'a str,
    result: RoundResult,
    at_ms: i64,
    /// The session key and its settled state, committed with the settlement.
    session: (&'a str, &'a Value),
}

/// Settles every bet of a round in one transaction against the table's bank, expecting the
/// balances the table knows; on a conflict, re-reads them and tries again.
async fn settle(
    ctx: &Ctx,
    round: &Round<'_>,
    bets: &[Bet],
    state: &mut TableState,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let store = &ctx.store;
    let Round {
        bank,
        tag,
        result,
        at_ms,
        session,
    } = *round;
    // What each bet pays, and the records that say so; these do not depend on balances.
    let mut credits: Vec<(&str, i64)> = Vec::new();
    let mut bank_delta = 0i64;
    let mut records = Vec::with_capacity(bets.len());
    let mut ledgers = Vec::with_capacity(bets.len());
    let mut new_achievements = Vec::new();
    for (index, bet) in bets.iter().enumerate() {
        let (status, credit) = match payout(bet.kind, result) {
            None => {
                tally.lost += 1;
                bank_delta += bet.stake;
                ("lost", 0)
            }
            Some(0) => {
                tally.pushed += 1;
                ("push", bet.stake)
            }
            Some(multiple) => {
                tally.won += 1;
                bank_delta -= bet.stake * multiple;
                ("won", bet.stake * (multiple + 1))
            }
        };
        state.history.entry(bet.player).or_default().push(json!({
            "round": tag, "kind": bet.kind.name(), "stake": bet.stake, "result": status,
            "paid": credit, "dice_total": result.come_out, "point_made": result.point_made,
        }));
        let mut record = bet.record.clone();
        record["status"] = json!(status);
        record["paid"] = json!(credit);
        record["settled_at_ms"] = json!(at_ms);
        records.push(record);
        let id = ctx.players[bet.player].id.as_str();
        let ledger = if credit > 0 {
            credits.push((id, credit));
            json!({
                "from": bank, "to": id, "amount": credit,
                "reason": format!("{status} {}", bet.kind.name()), "at_ms": at_ms,
            })
        } else {
            json!({
                "from": format!("bets/{}", bet.key), "to": bank, "amount": bet.stake,
                "reason": "lost", "at_ms": at_ms,
            })
        };
        ledgers.push((format!("settle-{tag}-{index:03}"), ledger));
        if credit >= 200 {
            let entry = state
                .achievements
                .entry(bet.player)
                .or_insert_with(default_achievements);
            entry["progress"]["high_roller"] =
                json!(entry["progress"]["high_roller"].as_i64().unwrap_or(0) + 1);
            if entry["unlocked"].as_array().is_some_and(Vec::is_empty) {
                entry["unlocked"] = json!(["high_roller"]);
            }
            new_achievements.push((id, entry.clone()));
        }
    }
    let mut retries = 0;
    loop {
        let mut tx = store.transaction();
        let mut updated = Vec::with_capacity(credits.len() + 1);
        for (id, change) in std::iter::once((bank, bank_delta)).chain(credits.iter().copied()) {
            let (chips, version) = state.balance(id)?;
            tx.store_if("balances", id, &(chips + change), Expect::Version(version))?;
            updated.push((id, chips + change));
        }
        for (bet, record) in bets.iter().zip(&records) {
            tx.store_if("bets", &bet.key, record, Expect::Version(bet.version))?;
        }
        for (key, ledger) in &ledgers {
            tx.store("ledger", key, ledger)?;
        }
        for (id, value) in &new_achievements {
            tx.store("achievements", id, value)?;
        }
        tx.store("sessions", session.0, session.1)?;
        let writes = tx.len() as u64;
        match tx.commit().await {
            Ok(versions) => {
                for (index, (id, chips)) in updated.into_iter().enumerate() {
                    state
                        .balances
                        .insert(id.to_owned(), (chips, version_at(&versions, index)?));
                }
                tally.writes += writes;
                tally.retries += retries;
                break;
            }
            Err(error) if is_conflict(&error) && retries < u64::from(MAX_RETRIES) => {
                retries += 1;
                for (id, _) in updated {
                    state
                        .balances
                        .insert(id.to_owned(), read_balance(store, id).await?);
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
    for (bet, record) in bets.iter().zip(records) {
        tally.wrote("bets", &bet.key, record);
    }
    for (key, ledger) in ledgers {
        tally.wrote("ledger", &key, ledger);
    }
    for (id, value) in new_achievements {
        tally.wrote("achievements", id, value);
    }
    Ok(())
}

/// What a transfer did.
#[derive(Debug)]
struct Moved {
    /// Payer's and payee's balances afterwards, or `None` when the payer could not afford it.
    balances: Option<[Balance; 2]>,
    retries: u64,
}

/// Moves chips between two balances, expected at the given versions, with a ledger entry; on
/// a conflict, re-reads both and tries again.
async fn transfer(
    store: &Store,
    [(from, mut payer), (to, mut payee)]: [(&str, Balance); 2],
    amount: i64,
    ledger_key: &str,
    entry: &Value,
) -> anyhow::Result<Moved> {
    let mut retries = 0;
    loop {
        if payer.0 < amount {
            return Ok(Moved {
                balances: None,
                retries,
            });
        }
        let mut tx = store.transaction();
        tx.store_if(
            "balances",
            from,
            &(payer.0 - amount),
            Expect::Version(payer.1),
        )?;
        tx.store_if(
            "balances",
            to,
            &(payee.0 + amount),
            Expect::Version(payee.1),
        )?;
        tx.store("ledger", ledger_key, entry)?;
        match tx.commit().await {
            Ok(versions) => {
                let balances = [
                    (payer.0 - amount, version_at(&versions, 0)?),
                    (payee.0 + amount, version_at(&versions, 1)?),
                ];
                return Ok(Moved {
                    balances: Some(balances),
                    retries,
                });
            }
            Err(error) if is_conflict(&error) && retries < u64::from(MAX_RETRIES) => {
                retries += 1;
                payer = read_balance(store, from).await?;
                payee = read_balance(store, to).await?;
            }
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("transfer {amount} from {from} to {to}"));
            }
        }
    }
}

/// Two transfers from one player, both expecting the same version of the balance, at once:
/// one commits, the other must fail with `Error::Conflict`. Returns the lines to print.
async fn deliberate_conflict(ctx: &Ctx) -> anyhow::Result<(Tally, Vec<String>)> {
    let store = &ctx.store;
    let [payer, first, second] = [0, 1, ctx.players.len().saturating_sub(1).max(1)]
        .map(|index| ctx.players[index % ctx.players.len()].id.clone());
    let read = |id: String| async move {
        store
            .retrieve_record::<i64>("balances", &id)
            .await?
            .with_context(|| format!("balance of {id} is missing"))
    };
    let payer_record = read(payer.clone()).await?;
    let expected = payer_record.meta.version;
    let mut plans = Vec::new();
    for (to, amount, n) in [(&first, 25, 1), (&second, 40, 2)] {
        let amount = payer_record.value.min(amount);
        let to_record = read(to.clone()).await?;
        let key = format!("conflict-demo-{n}");
        let entry =
            json!({"from": payer, "to": to, "amount": amount, "reason": "tip", "at_ms": BASE_MS});
        let mut tx = store.transaction();
        tx.store_if(
            "balances",
            &payer,
            &(payer_record.value - amount),
            Expect::Version(expected),
        )?;
        tx.store_if(
            "balances",
            to,
            &(to_record.value + amount),
            Expect::Version(to_record.meta.version),
        )?;
        tx.store("ledger", &key, &entry)?;
        plans.push((tx, format!("{payer} -> {to} ({amount} chips)"), key, entry));
    }
    let mut lines = vec![format!(
        "conflict    two transfers at once, both expecting balances/{payer} at version {expected}:"
    )];
    let [(tx1, what1, key1, entry1), (tx2, what2, key2, entry2)]: [_; 2] = plans
        .try_into()
        .map_err(|_| anyhow!("prepare the two transfers"))?;
    let writes = (tx1.len() as u64, tx2.len() as u64);
    let (result1, result2) = tokio::join!(tx1.commit(), tx2.commit());
    let mut tally = Tally::default();
    let mut conflicts = 0;
    for (result, what, key, entry, count) in [
        (result1, what1, key1, entry1, writes.0),
        (result2, what2, key2, entry2, writes.1),
    ] {
        match result {
            Ok(versions) => {
                let version = versions.first().copied().flatten().map_or(0, Version::get);
                lines.push(format!(
                    "              {what}: committed, balances/{payer} now at version {version}"
                ));
                tally.writes += count;
                tally.wrote("ledger", &key, entry);
            }
            Err(error) if is_conflict(&error) => {
                conflicts += 1;
                lines.push(format!(
                    "              {what}: rejected with Error::Conflict: {error}"
                ));
            }
            Err(error) => return Err(error).context("commit a transfer of the conflict demo"),
        }
    }
    if conflicts != 1 {
        bail!("expected exactly one of the two transfers to conflict, {conflicts} did");
    }
    Ok((tally, lines))
}

/// What reading every record back found.
#[derive(Debug, Default)]
struct ReadBack {
    records: u64,
    collections: usize,
    /// Values compared with what was last written.
    checked: u64,
    mismatched: u64,
    /// Total of all balances.
    chips: i64,
    open_bets: u64,
}

/// Reads every record of every collection, page by page, comparing with `expected`.
async fn read_back(
    store: &Store,
    expected: &BTreeMap<(String, String), Value>,
) -> anyhow::Result<ReadBack> {
    let collections = store.collections().await.context("list collections")?;
    let mut read = ReadBack {
        collections: collections.len(),
        ..ReadBack::default()
    };
    for collection in &collections {
        let mut after: Option<String> = None;
        loop {
            let mut options = ListOptions::all().limit(PAGE_KEYS);
            options.start_after = after.take();
            let keys = store
                .list(collection, options)
                .await
                .with_context(|| format!("list collection {collection}"))?;
            for (key, value) in retrieve_values(store, collection, &keys).await? {
                read.records += 1;
                match collection.as_str() {
                    "balances" => {
                        read.chips += value
                            .as_i64()
                            .with_context(|| format!("balances/{key} is not a number"))?;
                    }
                    "bets" if value["status"] == "open" => read.open_bets += 1,
                    _ => {}
                }
                if let Some(written) = expected.get(&(collection.clone(), key)) {
                    read.checked += 1;
                    if *written != value {
                        read.mismatched += 1;
                    }
                }
            }
            if keys.len() < PAGE_KEYS {
                break;
            }
            after = keys.last().cloned();
        }
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_deterministic_and_in_range() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        for _ in 0..1000 {
            let die = a.die();
            assert_eq!(die, b.die());
            assert!((1..=6).contains(&die));
            let n = a.between(5, 50);
            assert_eq!(n, b.between(5, 50));
            assert!((5..=50).contains(&n));
        }
    }

    #[test]
    fn craps_payouts_follow_the_rules() {
        let come_out = |sum| RoundResult {
            come_out: sum,
            point_made: None,
        };
        let point = |sum, made| RoundResult {
            come_out: sum,
            point_made: Some(made),
        };
        assert_eq!(payout(BetKind::Pass, come_out(7)), Some(1));
        assert_eq!(payout(BetKind::Pass, come_out(2)), None);
        assert_eq!(payout(BetKind::Pass, point(6, true)), Some(1));
        assert_eq!(payout(BetKind::Pass, point(6, false)), None);
        assert_eq!(payout(BetKind::DontPass, come_out(12)), Some(0));
        assert_eq!(payout(BetKind::DontPass, come_out(3)), Some(1));
        assert_eq!(payout(BetKind::DontPass, come_out(11)), None);
        assert_eq!(payout(BetKind::DontPass, point(8, false)), Some(1));
        assert_eq!(payout(BetKind::Field, come_out(12)), Some(3));
        assert_eq!(payout(BetKind::Field, come_out(2)), Some(2));
        assert_eq!(payout(BetKind::Field, come_out(7)), None);
    }
}
