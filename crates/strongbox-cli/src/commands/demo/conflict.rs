//! A deliberate conflict: two transfers from one player, both expecting the same version of the
//! balance, committed at once: exactly one commits, the other fails with `Error::Conflict`.
//! They are versioned conditional writes (`Expect::Version`) on purpose, and are not retried:
//! the rest of the night moves chips with `Store::transact`, which runs again on a conflict.

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use strongbox::{ErrorKind, Expect, Store, Transaction, Version};

use super::Ctx;
use super::fixtures::BASE_MS;
use super::tally::Tally;

/// A balance with the version it was read at.
type Balance = (i64, Version);

/// One of the two transfers, besides its transaction.
struct Planned {
    /// `payer -> payee (N chips)`, for the report.
    what: String,
    /// The ledger entry's key and value.
    key: String,
    entry: Value,
    /// Records the transaction writes.
    writes: u64,
}

/// Runs the two transfers at once. Returns the tally and the lines to print.
///
/// # Errors
/// When a store call fails, or not exactly one of the transfers conflicts.
pub async fn deliberate_conflict(ctx: &Ctx) -> anyhow::Result<(Tally, Vec<String>)> {
    let store = &ctx.store;
    let [payer, first, second] = [0, 1, ctx.players.len().saturating_sub(1).max(1)]
        .map(|index| ctx.players[index % ctx.players.len()].id.clone());
    let payer_balance = read_balance(store, &payer).await?;
    let (tx1, first) = plan(store, (&payer, payer_balance), &first, 25, 1).await?;
    let (tx2, second) = plan(store, (&payer, payer_balance), &second, 40, 2).await?;
    let mut lines = vec![format!(
        "conflict    two transfers at once, both expecting balances/{payer} at version {}:",
        payer_balance.1
    )];
    let (result1, result2) = tokio::join!(tx1.commit(), tx2.commit());
    let mut tally = Tally::default();
    let mut conflicts = 0;
    for (result, planned) in [(result1, first), (result2, second)] {
        let what = &planned.what;
        match result {
            Ok(versions) => {
                let version = versions.first().copied().flatten().map_or(0, Version::get);
                lines.push(format!(
                    "              {what}: committed, balances/{payer} now at version {version}"
                ));
                tally.writes += planned.writes;
                tally.wrote("ledger", &planned.key, planned.entry);
            }
            Err(error) if error.kind() == ErrorKind::Conflict => {
                conflicts += 1;
                lines.push(format!("              {what}: rejected: {error}"));
            }
            Err(error) => return Err(error).context("commit a transfer of the conflict demo"),
        }
    }
    if conflicts != 1 {
        bail!("expected exactly one of the two transfers to conflict, {conflicts} did");
    }
    Ok((tally, lines))
}

/// Reads a balance with its version.
///
/// # Errors
/// When the read fails or the balance is missing.
async fn read_balance(store: &Store, id: &str) -> anyhow::Result<Balance> {
    let record = store
        .retrieve_record::<i64>("balances", id)
        .await
        .with_context(|| format!("read balances/{id}"))?
        .with_context(|| format!("balances/{id} is missing"))?;
    Ok((record.value, record.meta.version))
}

/// Prepares transfer number `n` of up to `amount` chips from the payer to `to`, expecting the
/// versions read before.
async fn plan(
    store: &Store,
    (payer, (payer_chips, payer_version)): (&str, Balance),
    to: &str,
    amount: i64,
    n: u32,
) -> anyhow::Result<(Transaction, Planned)> {
    let amount = payer_chips.min(amount);
    let (to_chips, to_version) = read_balance(store, to).await?;
    let key = format!("conflict-demo-{n}");
    let entry =
        json!({"from": payer, "to": to, "amount": amount, "reason": "tip", "at_ms": BASE_MS});
    let mut tx = store.transaction();
    tx.store_if(
        "balances",
        payer,
        &(payer_chips - amount),
        Expect::Version(payer_version),
    )?;
    tx.store_if(
        "balances",
        to,
        &(to_chips + amount),
        Expect::Version(to_version),
    )?;
    tx.store("ledger", &key, &entry)?;
    let planned = Planned {
        what: format!("{payer} -> {to} ({amount} chips)"),
        key,
        entry,
        writes: tx.len() as u64,
    };
    Ok((tx, planned))
}
