//! Setup: every player's records (profile, balance, settings, avatar, achievements) written in
//! transactions by concurrent tasks, and the tables' banks. Most players keep the identical
//! default settings, avatar and achievements, so deduplication stores those once.

use std::sync::Arc;

use anyhow::Context as _;
use rand::rngs::SmallRng;
use rand::{Rng, RngExt as _};
use serde_json::{Value, json};

use super::Ctx;
use super::dice::{fork, pick};
use super::fixtures::{
    BANK_CHIPS, BASE_MS, Player, avatar, default_achievements, default_settings,
};
use super::tally::Tally;

/// Players whose setup records one transaction writes.
const SETUP_CHUNK: usize = 50;

/// Writes every player's records and the tables' banks; returns the tally and the total chips.
///
/// # Errors
/// When a transaction fails.
pub async fn setup(
    ctx: &Arc<Ctx>,
    tables: usize,
    rng: &mut SmallRng,
) -> anyhow::Result<(Tally, i64)> {
    let default_avatar = avatar(7);
    let mut handles = Vec::new();
    for (chunk_index, chunk) in ctx.players.chunks(SETUP_CHUNK).enumerate() {
        let ctx = Arc::clone(ctx);
        let chunk = chunk.to_vec();
        let first = chunk_index * SETUP_CHUNK;
        let rng = fork(rng);
        let default_avatar = default_avatar.clone();
        handles.push(tokio::spawn(async move {
            write_players(&ctx, &chunk, first, tables, rng, &default_avatar).await
        }));
    }
    let mut banks = ctx.store.transaction();
    for table in 0..tables {
        banks.store("balances", &format!("bank-t{table:02}"), &BANK_CHIPS)?;
    }
    let mut tally = Tally::default();
    tally.writes = banks.len() as u64;
    banks.commit().await.context("commit the tables' banks")?;
    let mut chips = BANK_CHIPS * tables as i64;
    for handle in handles {
        let (part, part_chips) = handle.await.context("join a setup task")??;
        tally.add(part);
        chips += part_chips;
    }
    Ok((tally, chips))
}

/// Writes the records of `players` (the first being player number `first`) in one
/// transaction; returns the tally and the chips they hold.
async fn write_players(
    ctx: &Ctx,
    players: &[Player],
    first: usize,
    tables: usize,
    mut rng: SmallRng,
    default_avatar: &Value,
) -> anyhow::Result<(Tally, i64)> {
    let mut tally = Tally::default();
    let mut chips = 0i64;
    let mut tx = ctx.store.transaction();
    for (offset, player) in players.iter().enumerate() {
        let table = (first + offset) % tables;
        let (records, balance) = player_records(player, table, &mut rng, default_avatar);
        chips += balance;
        for (collection, value) in records {
            tx.store(collection, &player.id, &value)
                .with_context(|| format!("add {collection}/{} to a transaction", player.id))?;
            if collection != "balances" {
                tally.wrote(collection, &player.id, value);
            }
        }
    }
    tally.writes += tx.len() as u64;
    tx.commit().await.context("commit the players' records")?;
    Ok((tally, chips))
}

/// A new player's records, by collection, and the chips of the balance among them.
fn player_records(
    player: &Player,
    table: usize,
    rng: &mut impl Rng,
    default_avatar: &Value,
) -> ([(&'static str, Value); 5], i64) {
    let balance = 50 * rng.random_range(10..=40);
    let profile = json!({
        "id": player.id, "name": player.name,
        "joined_at_ms": BASE_MS - 86_400_000 * rng.random_range(1..=900),
        "level": rng.random_range(1..=60), "vip": rng.random_ratio(10, 100),
        "table": format!("t{table:02}"),
    });
    let mut settings = default_settings();
    if rng.random_ratio(15, 100) {
        settings["theme"] = json!(*pick(rng, &["midnight", "vegas", "retro"]));
        settings["music_volume"] = json!(f64::from(rng.random_range(0u8..=10)) / 10.0);
    }
    let avatar = if rng.random_ratio(10, 100) {
        avatar(rng.random())
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
    (records, balance)
}
