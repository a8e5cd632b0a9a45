//! Settling a decided round: every bet of the round, the bank and the players paid, the
//! ledger, new achievements and the session, in one transaction that expects the balances the
//! table knows; on a conflict, the balances are re-read and the transaction tried again.

use serde_json::{Value, json};
use strongbox::{Expect, Store};

use super::Ctx;
use super::chips::{Bet, MAX_RETRIES, is_conflict, read_balance, version_at};
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
/// When a store call fails, or conflicts outlast [`MAX_RETRIES`].
pub async fn settle(
    ctx: &Ctx,
    round: &Round<'_>,
    bets: &[Bet],
    state: &mut TableState,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let settlement = work_out(ctx, round, bets, state, tally);
    let (writes, retries) = commit(&ctx.store, round, bets, &settlement, state).await?;
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

/// Commits the settlement, expecting the balances `state` knows and re-reading those that
/// conflicted; updates `state` with the new balances. Returns the records written and the
/// conflicts met.
async fn commit(
    store: &Store,
    round: &Round<'_>,
    bets: &[Bet],
    settlement: &Settlement<'_>,
    state: &mut TableState,
) -> anyhow::Result<(u64, u64)> {
    let mut retries = 0;
    loop {
        let mut tx = store.transaction();
        let mut updated = Vec::with_capacity(settlement.changes.len());
        for &(id, change) in &settlement.changes {
            let (chips, version) = state.balance(id)?;
            tx.store_if("balances", id, &(chips + change), Expect::Version(version))?;
            updated.push((id, chips + change));
        }
        for (bet, record) in bets.iter().zip(&settlement.records) {
            tx.store_if("bets", &bet.key, record, Expect::Version(bet.version))?;
        }
        for (key, ledger) in &settlement.ledgers {
            tx.store("ledger", key, ledger)?;
        }
        for (id, value) in &settlement.achievements {
            tx.store("achievements", id, value)?;
        }
        tx.store("sessions", round.session.0, round.session.1)?;
        let writes = tx.len() as u64;
        match tx.commit().await {
            Ok(versions) => {
                for (index, (id, chips)) in updated.into_iter().enumerate() {
                    let balance = (chips, version_at(&versions, index)?);
                    state.balances.insert(id.to_owned(), balance);
                }
                return Ok((writes, retries));
            }
            Err(error) if is_conflict(&error) && retries < MAX_RETRIES => {
                retries += 1;
                for (id, _) in updated {
                    let balance = read_balance(store, id).await?;
                    state.balances.insert(id.to_owned(), balance);
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
}
