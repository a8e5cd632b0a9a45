//! Chips on the move: a bet takes the stake from a balance, a tip moves chips between two.
//! Every change of a balance expects the version it was read at (`Expect::Version`), so
//! concurrent changes of one balance conflict; a conflict is re-read and retried, never lost.

use anyhow::Context as _;
use serde_json::{Value, json};
use strongbox::{Expect, Store, Version};

use super::Ctx;
use super::rules::BetKind;
use super::tally::Tally;

/// Conflicts tolerated on one update before giving up.
pub const MAX_RETRIES: u64 = 100;

/// A balance as a table last saw it: chips and the version they were read or written at.
pub type Balance = (i64, Version);

/// Whether a failed commit met another version than it expected.
pub fn is_conflict(error: &strongbox::Error) -> bool {
    error.kind() == strongbox::ErrorKind::Conflict
}

/// The version a committed transaction left for its `index`-th write.
///
/// # Errors
/// When the commit returned no version there.
pub fn version_at(versions: &[Option<Version>], index: usize) -> anyhow::Result<Version> {
    versions
        .get(index)
        .copied()
        .flatten()
        .with_context(|| format!("the commit returned no version for write {index}"))
}

/// Reads a balance with its version.
///
/// # Errors
/// When the read fails or the balance is missing.
pub async fn read_balance(store: &Store, id: &str) -> anyhow::Result<Balance> {
    let record = store
        .retrieve_record::<i64>("balances", id)
        .await
        .with_context(|| format!("read balances/{id}"))?
        .with_context(|| format!("balances/{id} is missing"))?;
    Ok((record.value, record.meta.version))
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
    /// Version of the bet record, from the commit that created it.
    pub version: Version,
    /// The bet record as written (status `open`).
    pub record: Value,
}

/// What placing a bet did.
#[derive(Debug)]
pub struct Placed {
    /// The player's index.
    pub player: usize,
    /// The bet, or `None` when the player could not afford it.
    pub bet: Option<Bet>,
    /// The player's balance afterwards, as last read or written.
    pub balance: Balance,
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

/// Moves a stake from the player's balance (expected at `balance`) into a new bet record; on
/// a conflict, re-reads the balance and tries again.
///
/// # Errors
/// When a store call fails, or conflicts outlast [`MAX_RETRIES`].
pub async fn place_bet(ctx: &Ctx, slip: BetSlip, balance: Balance) -> anyhow::Result<Placed> {
    let store = &ctx.store;
    let id = &ctx.players[slip.player].id;
    let (key, stake, at_ms) = (&slip.key, slip.stake, slip.at_ms);
    let record = json!({
        "player": id, "kind": slip.kind.name(), "stake": stake, "status": "open",
        "placed_at_ms": at_ms,
    });
    let ledger = json!({
        "from": id, "to": format!("bets/{key}"), "amount": stake, "reason": "bet", "at_ms": at_ms,
    });
    let ledger_key = format!("bet-{key}");
    let mut placed = Placed {
        player: slip.player,
        bet: None,
        balance,
        retries: 0,
        tally: Tally::default(),
    };
    loop {
        let (chips, version) = placed.balance;
        if chips < stake {
            return Ok(placed);
        }
        let mut tx = store.transaction();
        tx.store_if("balances", id, &(chips - stake), Expect::Version(version))?;
        tx.store_if("bets", key, &record, Expect::Absent)?;
        tx.store("ledger", &ledger_key, &ledger)?;
        match tx.commit().await {
            Ok(versions) => {
                placed.balance = (chips - stake, version_at(&versions, 0)?);
                placed.tally.writes = 3;
                placed.tally.wrote("bets", key, record.clone());
                placed.tally.wrote("ledger", &ledger_key, ledger);
                placed.bet = Some(Bet {
                    player: slip.player,
                    key: slip.key,
                    kind: slip.kind,
                    stake,
                    version: version_at(&versions, 1)?,
                    record,
                });
                return Ok(placed);
            }
            Err(error) if is_conflict(&error) && placed.retries < MAX_RETRIES => {
                placed.retries += 1;
                placed.balance = read_balance(store, id).await?;
            }
            Err(error) => return Err(error).with_context(|| format!("place bet {key}")),
        }
    }
}

/// What a transfer did.
#[derive(Debug)]
pub struct Moved {
    /// Payer's and payee's balances afterwards, or `None` when the payer could not afford it.
    pub balances: Option<[Balance; 2]>,
    /// Conflicts met on the way.
    pub retries: u64,
}

/// Moves chips between two balances, expected at the given versions, with a ledger entry; on
/// a conflict, re-reads both and tries again.
///
/// # Errors
/// When a store call fails, or conflicts outlast [`MAX_RETRIES`].
pub async fn transfer(
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
            Err(error) if is_conflict(&error) && retries < MAX_RETRIES => {
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
