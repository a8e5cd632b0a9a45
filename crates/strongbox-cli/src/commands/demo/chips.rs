//! Chips on the move: a bet takes the stake from a balance, a tip moves chips between two.
//! Each is a `Store::transact` transaction: it reads the balances it changes and commits only
//! if none changed meanwhile, else runs again on what is there now, so concurrent changes of
//! one balance are never lost.
//!
//! A closure returns how many times it ran (its conflicts are the runs after the first) and
//! what it decided: `Err` for the game's own failures (a missing balance, a bet already
//! placed), found before the closure writes anything, so that nothing of it commits.

use anyhow::{Context as _, anyhow};
use serde_json::{Value, json};
use strongbox::Store;

use super::Ctx;
use super::rules::BetKind;
use super::tally::Tally;

/// The conflicts a transaction met: the runs of its closure after the first.
pub fn retries(runs: u64) -> u64 {
    runs.saturating_sub(1)
}

/// A bet placed and held in its record.
#[derive(Debug, Clone)]
pub struct Bet {
    /// The player's index.
    pub player: usize,
    /// The bet record's key: `tNN-rNNNN-pNNNNN`.
    pub key: String,
    /// What the bet is on.
    pub kind: BetKind,
    /// Chips staked.
    pub stake: i64,
    /// The bet record as written (status `open`).
    pub record: Value,
}

/// What placing a bet did.
#[derive(Debug)]
pub struct Placed {
    /// The bet, or `None` when the player could not afford it.
    pub bet: Option<Bet>,
    /// Conflicts met on the way.
    pub retries: u64,
    /// What the bet's transaction wrote.
    pub tally: Tally,
}

/// A bet to place: who, on what, how much, and when.
#[derive(Debug)]
pub struct BetSlip {
    /// The player's index.
    pub player: usize,
    /// The bet record's key.
    pub key: String,
    /// What the bet is on.
    pub kind: BetKind,
    /// Chips staked.
    pub stake: i64,
    /// Simulated time of the bet.
    pub at_ms: i64,
}

/// Moves a stake from the player's balance into a new bet record, in one transaction that
/// reads the balance and the bet's key (which must be free); it runs again if either changed
/// before the commit.
///
/// # Errors
/// When a store call fails, the balance is missing or the bet's key is taken.
pub async fn place_bet(ctx: &Ctx, slip: BetSlip) -> anyhow::Result<Placed> {
    let id = ctx.players[slip.player].id.as_str();
    let (key, stake, at_ms) = (slip.key.as_str(), slip.stake, slip.at_ms);
    let record = json!({
        "player": id, "kind": slip.kind.name(), "stake": stake, "status": "open",
        "placed_at_ms": at_ms,
    });
    let ledger = json!({
        "from": id, "to": format!("bets/{key}"), "amount": stake, "reason": "bet", "at_ms": at_ms,
    });
    let ledger_key = format!("bet-{key}");
    // A closure inside `tokio::spawn` owns what it uses (see `Store::transact`).
    let owned = (
        id.to_owned(),
        key.to_owned(),
        record.clone(),
        ledger_key.clone(),
        ledger.clone(),
    );
    let mut runs = 0u64;
    let (decided, runs) = ctx
        .store
        .transact(async move |tx| {
            runs += 1;
            let (id, key, record, ledger_key, ledger) = &owned;
            let Some(chips) = tx.get::<i64>("balances", id).await? else {
                return Ok((Err(anyhow!("balances/{id} is missing")), runs));
            };
            if chips < stake {
                return Ok((Ok(false), runs));
            }
            if tx.get::<Value>("bets", key).await?.is_some() {
                return Ok((Err(anyhow!("bets/{key} was placed already")), runs));
            }
            tx.put("balances", id, &(chips - stake))?;
            tx.put("bets", key, record)?;
            tx.put("ledger", ledger_key, ledger)?;
            Ok((Ok(true), runs))
        })
        .await
        .with_context(|| format!("place bet {key}"))?;
    let mut placed = Placed {
        bet: None,
        retries: retries(runs),
        tally: Tally::default(),
    };
    if decided.with_context(|| format!("place bet {key}"))? {
        placed.tally.writes = 3;
        placed.tally.wrote("bets", key, record.clone());
        placed.tally.wrote("ledger", &ledger_key, ledger);
        placed.bet = Some(Bet {
            player: slip.player,
            key: slip.key,
            kind: slip.kind,
            stake,
            record,
        });
    }
    Ok(placed)
}

/// What a transfer did.
#[derive(Debug)]
pub struct Moved {
    /// Whether the chips moved (not when the payer could not afford them).
    pub is_moved: bool,
    /// Conflicts met on the way.
    pub retries: u64,
}

/// Moves chips between two balances with a ledger entry, in one transaction that reads both
/// balances; it runs again if either changed before the commit.
///
/// # Errors
/// When a store call fails or a balance is missing.
pub async fn transfer(
    store: &Store,
    [from, to]: [&str; 2],
    amount: i64,
    ledger_key: &str,
    entry: &Value,
) -> anyhow::Result<Moved> {
    // A closure inside `tokio::spawn` owns what it uses (see `Store::transact`).
    let owned = (
        from.to_owned(),
        to.to_owned(),
        ledger_key.to_owned(),
        entry.clone(),
    );
    let mut runs = 0u64;
    let (decided, runs) = store
        .transact(async move |tx| {
            runs += 1;
            let (from, to, ledger_key, entry) = &owned;
            let payer = tx.get::<i64>("balances", from).await?;
            let payee = tx.get::<i64>("balances", to).await?;
            let (Some(payer), Some(payee)) = (payer, payee) else {
                let missing = anyhow!("balances/{from} or balances/{to} is missing");
                return Ok((Err(missing), runs));
            };
            if payer < amount {
                return Ok((Ok(false), runs));
            }
            tx.put("balances", from, &(payer - amount))?;
            tx.put("balances", to, &(payee + amount))?;
            tx.put("ledger", ledger_key, entry)?;
            Ok((Ok(true), runs))
        })
        .await
        .with_context(|| format!("transfer {amount} from {from} to {to}"))?;
    Ok(Moved {
        is_moved: decided.with_context(|| format!("transfer {amount} from {from} to {to}"))?,
        retries: retries(runs),
    })
}
