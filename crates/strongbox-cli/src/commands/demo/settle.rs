//! Settling a decided round: every bet of the round, the bank and the players paid, the
//! ledger, new achievements and the session, in one `Store::transact` transaction that reads
//! the balances it changes and the bets it settles; it runs again if any changed meanwhile.

use std::collections::BTreeMap;

use anyhow::{Context as _, anyhow};
use serde_json::{Value, json};
use strongbox::Store;

use super::Ctx;
use super::chips::{Bet, retries};
use super::rules::{RoundResult, Status, outcome};
use super::table::TableState;
use super::tally::Tally;

/// Payouts from this many chips (stake included) count towards the high roller achievement.
const HIGH_ROLLER_CHIPS: i64 = 200;

/// A decided round, as settlement needs it.
#[derive(Debug)]
pub struct Round<'a> {
    /// The table's bank balance key.
    pub bank: &'a str,
    /// `tNN-rNNNN`, the prefix of the round's keys.
    pub tag: &'a str,
    /// How the round went.
    pub result: RoundResult,
    /// Simulated time of the settlement.
    pub at_ms: i64,
    /// The session key and its settled state, committed with the settlement.
    pub session: (&'a str, &'a Value),
}

/// What a settlement writes besides the balances, and the changes of balances it makes; none
/// of it depends on the balances' current values.
#[derive(Debug, Default)]
struct Settlement<'a> {
    /// Balance changes: the bank's first, then each paid player's.
    changes: Vec<(&'a str, i64)>,
    /// Each bet's record, settled, in the order of the bets.
    records: Vec<Value>,
    /// Ledger entries by key.
    ledgers: Vec<(String, Value)>,
    /// Achievements changed, by player id.
    achievements: Vec<(&'a str, Value)>,
}

/// Settles every bet of a round in one transaction against the table's bank.
///
/// # Errors
/// When a store call fails, a balance is missing or a bet changed since it was placed.
pub async fn settle(
    ctx: &Ctx,
    round: &Round<'_>,
    bets: &[Bet],
    state: &mut TableState,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let settlement = work_out(ctx, round, bets, state, tally);
    let (writes, retries) = commit(&ctx.store, round, bets, &settlement).await?;
    tally.writes += writes;
    tally.retries += retries;
    for (bet, record) in bets.iter().zip(settlement.records) {
        tally.wrote("bets", &bet.key, record);
    }
    for (key, ledger) in settlement.ledgers {
        tally.wrote("ledger", &key, ledger);
    }
    for (id, value) in settlement.achievements {
        tally.wrote("achievements", id, value);
    }
    Ok(())
}

/// Works out what each bet pays and the records that say so; counts the outcomes in `tally`
/// and adds each bet to its player's history.
fn work_out<'a>(
    ctx: &'a Ctx,
    round: &Round<'a>,
    bets: &[Bet],
    state: &mut TableState,
    tally: &mut Tally,
) -> Settlement<'a> {
    let Round {
        bank,
        tag,
        result,
        at_ms,
        ..
    } = *round;
    let mut settlement = Settlement::default();
    let mut bank_gain = 0i64;
    let mut credits = Vec::new();
    for (index, bet) in bets.iter().enumerate() {
        let ended = outcome(bet.kind, bet.stake, result);
        match ended.status {
            Status::Won => tally.won += 1,
            Status::Lost => tally.lost += 1,
            Status::Push => tally.pushed += 1,
        }
        bank_gain += ended.bank_gain;
        let (status, credit) = (ended.status.name(), ended.credit);
        state.history.entry(bet.player).or_default().push(json!({
            "round": tag, "kind": bet.kind.name(), "stake": bet.stake, "result": status,
            "paid": credit, "dice_total": result.come_out, "point_made": result.point_made,
        }));
        let mut record = bet.record.clone();
        record["status"] = json!(status);
        record["paid"] = json!(credit);
        record["settled_at_ms"] = json!(at_ms);
        settlement.records.push(record);
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
        settlement
            .ledgers
            .push((format!("settle-{tag}-{index:03}"), ledger));
        if credit >= HIGH_ROLLER_CHIPS {
            settlement
                .achievements
                .push((id, state.high_roller(bet.player)));
        }
    }
    settlement.changes.push((bank, bank_gain));
    settlement.changes.extend(credits);
    settlement
}

/// Commits the settlement in one transaction that reads every bet it settles (each still as
/// placed) and every balance it changes, then writes; the transaction runs again if any of
/// them changed before the commit. Returns the records written and the conflicts met.
async fn commit(
    store: &Store,
    round: &Round<'_>,
    bets: &[Bet],
    settlement: &Settlement<'_>,
) -> anyhow::Result<(u64, u64)> {
    // A closure inside `tokio::spawn` owns what it uses (see `Store::transact`).
    let mut changes: BTreeMap<String, i64> = BTreeMap::new();
    for &(id, change) in &settlement.changes {
        *changes.entry(id.to_owned()).or_default() += change;
    }
    let placed: Vec<(String, Value)> = bets
        .iter()
        .map(|bet| (bet.key.clone(), bet.record.clone()))
        .collect();
    let owned = |collection: &str, key: &str, value: &Value| {
        (collection.to_owned(), key.to_owned(), value.clone())
    };
    let bet_records = bets.iter().zip(&settlement.records);
    let ledgers = settlement.ledgers.iter();
    let achievements = settlement.achievements.iter();
    let puts: Vec<(String, String, Value)> = bet_records
        .map(|(bet, record)| owned("bets", &bet.key, record))
        .chain(ledgers.map(|(key, ledger)| owned("ledger", key, ledger)))
        .chain(achievements.map(|(id, value)| owned("achievements", id, value)))
        .chain([owned("sessions", round.session.0, round.session.1)])
        .collect();
    let writes = (changes.len() + puts.len()) as u64;
    let mut runs = 0u64;
    let (decided, runs) = store
        .transact(async move |tx| {
            runs += 1;
            // Every read and check first: a closure that returns writes what it staged.
            for (key, record) in &placed {
                if tx.get::<Value>("bets", key).await?.as_ref() != Some(record) {
                    let changed = anyhow!("bets/{key} changed since it was placed");
                    return Ok((Err(changed), runs));
                }
            }
            let mut balances = Vec::with_capacity(changes.len());
            for (id, change) in &changes {
                let Some(chips) = tx.get::<i64>("balances", id).await? else {
                    return Ok((Err(anyhow!("balances/{id} is missing")), runs));
                };
                balances.push((id, chips + change));
            }
            for (id, chips) in balances {
                tx.put("balances", id, &chips)?;
            }
            for (collection, key, value) in &puts {
                tx.put(collection, key, value)?;
            }
            Ok((Ok(()), runs))
        })
        .await
        .with_context(|| format!("commit the settlement of {}", round.tag))?;
    decided.with_context(|| format!("settle {}", round.tag))?;
    Ok((writes, retries(runs)))
}
