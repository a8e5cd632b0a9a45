//! Quick start: the storage of a small dice-game server.
//!
//! Players and their chip balances, the tables they sit at, and a ledger of chip transfers, in a
//! SQLite file. It shows typed values, conditional writes, a transaction that moves chips
//! between two players only if nobody else touched them meanwhile (retried on conflict),
//! listing by prefix, and the store's statistics.
//!
//!     cargo run -p strongbox-store --example quick_start [DATABASE]
//!
//! Without an argument it uses a file in a temporary directory.

use serde::{Deserialize, Serialize};
use strongbox::{Config, Error, Expect, ListOptions, Store};

/// A player as the game keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Player {
    name: String,
    chips: u64,
    games_played: u32,
}

/// A game table: who sits there and the minimum bet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Table {
    seats: Vec<String>,
    min_bet: u64,
}

/// One entry of the ledger: chips moved from one player to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Transfer {
    from: String,
    to: String,
    chips: u64,
}

#[tokio::main]
async fn main() -> strongbox::Result<()> {
    let scratch = tempfile::tempdir().map_err(|source| Error::Io {
        action: "create a temporary directory".into(),
        source,
    })?;
    let path = std::env::args_os()
        .nth(1)
        .map_or_else(|| scratch.path().join("game.db"), Into::into);
    let store = Store::open(Config::new(&path)).await?;

    // Typed values in named collections, by key.
    for name in ["alice", "bob", "carol"] {
        let player = Player {
            name: name.to_owned(),
            chips: 1_000,
            games_played: 0,
        };
        // `Expect::Absent`: create, but never overwrite a player who already exists.
        match store
            .store_if("players", name, &player, Expect::Absent)
            .await
        {
            Ok(_) | Err(Error::Conflict { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    let table = Table {
        seats: vec!["alice".into(), "bob".into()],
        min_bet: 10,
    };
    store.store("tables", "table-1", &table).await?;

    // A transfer: read both balances, write both only if neither changed since (checked at
    // commit, in the database), and retry when another server or task got there first.
    let moved = transfer(&store, "alice", "bob", 250).await?;
    println!("moved 250 chips from alice to bob: {moved}");

    let alice: Option<Player> = store.retrieve("players", "alice").await?;
    let bob: Option<Player> = store.retrieve("players", "bob").await?;
    println!("alice: {alice:?}\nbob:   {bob:?}");

    // Keys in byte order, by prefix.
    let ledger = store
        .list("ledger", ListOptions::all().prefix("alice->"))
        .await?;
    println!("ledger entries from alice: {ledger:?}");

    let stats = store.stats().await?;
    println!(
        "{} records in {} collections, {} bytes of values stored as {} bytes",
        stats.storage.records,
        stats.storage.collections,
        stats.storage.logical_bytes,
        stats.storage.stored_bytes
    );
    store.close().await
}

/// Moves `chips` from one player to another, with a ledger entry, all or nothing; `false`
/// when the payer has too few chips.
async fn transfer(store: &Store, from: &str, to: &str, chips: u64) -> strongbox::Result<bool> {
    loop {
        let (Some(payer), Some(payee)) = (
            store.retrieve_record::<Player>("players", from).await?,
            store.retrieve_record::<Player>("players", to).await?,
        ) else {
            return Ok(false);
        };
        if payer.value.chips < chips {
            return Ok(false);
        }
        let mut paid = payer.value.clone();
        paid.chips -= chips;
        let mut received = payee.value.clone();
        received.chips += chips;
        let entry = Transfer {
            from: from.to_owned(),
            to: to.to_owned(),
            chips,
        };
        let mut tx = store.transaction();
        tx.store_if("players", from, &paid, Expect::Version(payer.meta.version))?;
        tx.store_if(
            "players",
            to,
            &received,
            Expect::Version(payee.meta.version),
        )?;
        let ledger_key = format!("{from}->{to}:{}", payer.meta.version);
        tx.store_if("ledger", &ledger_key, &entry, Expect::Absent)?;
        match tx.commit().await {
            Ok(_) => return Ok(true),
            // Someone changed a balance since we read it: read again and retry.
            Err(Error::Conflict { .. }) => continue,
            Err(error) => return Err(error),
        }
    }
}
