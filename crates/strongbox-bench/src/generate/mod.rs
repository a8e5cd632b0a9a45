//! The benchmark's own data set: a BitCraps-like game world, generated from a fixed seed, so
//! that every run (and every machine) benchmarks the same records without a data file.
//!
//! Its shape follows the sample of a real BitCraps deployment (`bitcraps-sample.jsonl`): the
//! same collections in about the same proportions, the same key patterns (32 hex digits for
//! players, their settings and inventories and for game sessions; the 64-hex transaction id;
//! `00000042-1a2b3c4d` for chat), values of the same fields and sizes (players about 2.5 KB,
//! game sessions about 3 KB with a long tail, chat under 1 KB), and the same repetition that
//! deduplication finds (default settings, starter inventories, empty tables). Bets live where
//! the game keeps them: inside game sessions, and as `BetPlaced` transactions; `leaderboards`
//! adds the daily top players of each table type. The records come in a shuffled order of
//! collections, as an application writes them.
//!
//! **Invariant:** the output depends only on the record count: one seed, no clock, no
//! environment, and no iteration over hash maps.

mod people;
mod play;

use rand::rngs::SmallRng;
use rand::seq::{IndexedRandom as _, SliceRandom as _};
use rand::{RngExt as _, SeedableRng as _};
use serde_json::Value;

/// The seed of every generated data set.
const SEED: u64 = 0xB17C_4A55_2025_1009;

/// The time the game world is seen at: 2025-10-09, milliseconds since the Unix epoch.
pub const NOW_MS: i64 = 1_760_000_000_000;

/// The records a data set holds by default: as many as the sample.
pub const DEFAULT_RECORDS: usize = 20_000;

/// The collections and their shares of the records, in ten-thousandths (as in the sample,
/// with leaderboards added).
const MIX: [(Collection, u32); 7] = [
    (Collection::GameSessions, 3_230),
    (Collection::Transactions, 2_080),
    (Collection::Players, 1_680),
    (Collection::Chat, 1_270),
    (Collection::Settings, 990),
    (Collection::Inventories, 630),
    (Collection::Leaderboards, 120),
];

/// A collection of the generated world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collection {
    Players,
    Settings,
    Inventories,
    GameSessions,
    Transactions,
    Chat,
    Leaderboards,
}

impl Collection {
    /// Its place in [`MIX`].
    fn index(self) -> usize {
        MIX.iter().position(|(each, _)| *each == self).unwrap_or(0)
    }

    fn name(self) -> &'static str {
        match self {
            Collection::Players => "players",
            Collection::Settings => "settings",
            Collection::Inventories => "inventories",
            Collection::GameSessions => "game_sessions",
            Collection::Transactions => "transactions",
            Collection::Chat => "chat",
            Collection::Leaderboards => "leaderboards",
        }
    }
}

/// A player other records refer to.
#[derive(Debug, Clone)]
pub(crate) struct Player {
    pub id: String,
    pub name: String,
}

/// The generator's state: the random numbers, the players, and each collection's counter.
pub(crate) struct World {
    pub rng: SmallRng,
    pub players: Vec<Player>,
    /// Records made so far, per collection (indexed like [`MIX`]).
    made: [usize; MIX.len()],
}

impl World {
    /// `digits` random hex digits, lowercase.
    pub fn hex(&mut self, digits: usize) -> String {
        let mut text = String::with_capacity(digits + 32);
        while text.len() < digits {
            text.push_str(&format!("{:032x}", self.rng.random::<u128>()));
        }
        text.truncate(digits);
        text
    }

    /// A random player.
    pub fn player(&mut self) -> Player {
        self.players
            .choose(&mut self.rng)
            .cloned()
            .unwrap_or_else(|| Player {
                id: "0".repeat(32),
                name: "house".to_owned(),
            })
    }

    /// One of `choices`, uniformly.
    pub fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        one(&mut self.rng, choices)
    }

    /// A time within the last `span_ms` before [`NOW_MS`].
    pub fn recent_ms(&mut self, span_ms: i64) -> i64 {
        NOW_MS - self.rng.random_range(0..span_ms.max(1))
    }

    /// How many records of `collection` came before this one.
    fn made(&self, collection: Collection) -> usize {
        self.made[collection.index()]
    }
}

/// One of `choices` (never empty: they are constants), uniformly.
pub(crate) fn one<T: Copy>(rng: &mut impl rand::Rng, choices: &[T]) -> T {
    *choices.choose(rng).unwrap_or(&choices[0])
}

/// `records` generated records `(collection, key, value)`, always the same for one count.
pub fn generate(records: usize) -> Vec<(&'static str, String, Value)> {
    let mut world = World {
        rng: SmallRng::seed_from_u64(SEED),
        players: Vec::new(),
        made: [0; MIX.len()],
    };
    let counts = counts(records);
    world.players = (0..counts[Collection::Players.index()].max(1))
        .map(|_| Player {
            id: world.hex(32),
            name: people::player_name(&mut world.rng),
        })
        .collect();
    let mut order: Vec<usize> = counts
        .iter()
        .enumerate()
        .flat_map(|(at, count)| std::iter::repeat_n(at, *count))
        .collect();
    order.shuffle(&mut world.rng);
    order
        .into_iter()
        .map(|at| {
            let collection = MIX[at].0;
            let (key, value) = record(&mut world, collection);
            world.made[at] += 1;
            (collection.name(), key, value)
        })
        .collect()
}

/// The number of records of each collection of [`MIX`], adding up to `records`.
fn counts(records: usize) -> [usize; MIX.len()] {
    let total: u32 = MIX.iter().map(|(_, share)| share).sum();
    let mut counts = MIX.map(|(_, share)| records * share as usize / total as usize);
    let short = records - counts.iter().sum::<usize>();
    counts[0] += short;
    counts
}

/// The next record of `collection`.
fn record(world: &mut World, collection: Collection) -> (String, Value) {
    let made = world.made(collection);
    match collection {
        Collection::Players => {
            let player = world.players[made % world.players.len()].clone();
            let value = people::profile(world, &player);
            (player.id, value)
        }
        Collection::Settings => (owner_key(world, made), people::settings(world)),
        Collection::Inventories => (owner_key(world, made), people::inventory(world)),
        Collection::Chat => {
            let key = format!("{:08}-{}", made + 1, world.hex(8));
            (key, people::chat(world))
        }
        Collection::GameSessions => {
            let game_id = world.hex(32);
            let value = play::session(world, &game_id);
            (game_id, value)
        }
        Collection::Transactions => {
            let tx_id = world.hex(64);
            let value = play::transaction(world, &tx_id);
            (tx_id, value)
        }
        Collection::Leaderboards => play::leaderboard(world, made),
    }
}

/// The key of a player's own record (settings, inventory): most belong to a known player, in
/// order, the rest to players who have not been seen yet.
fn owner_key(world: &mut World, made: usize) -> String {
    match world.players.get(made) {
        Some(player) if world.rng.random_bool(0.85) => player.id.clone(),
        _ => world.hex(32),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    #[test]
    fn the_same_count_gives_the_same_records() {
        let first = generate(700);
        assert_eq!(first.len(), 700);
        assert_eq!(first, generate(700));
        let keys: BTreeSet<(&str, &str)> = first
            .iter()
            .map(|(collection, key, _)| (*collection, key.as_str()))
            .collect();
        assert_eq!(keys.len(), 700, "keys are unique within a collection");
    }

    #[test]
    fn collections_keys_and_sizes_look_like_the_sample() {
        let records = generate(4_000);
        let mut sizes: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (collection, key, value) in &records {
            sizes
                .entry(collection)
                .or_default()
                .push(value.to_string().len());
            let is_hex =
                |digits: usize| key.len() == digits && key.chars().all(|c| c.is_ascii_hexdigit());
            match *collection {
                "transactions" => assert!(is_hex(64), "{key}"),
                "chat" => assert_eq!(key.len(), 17, "{key}"),
                "leaderboards" => assert!(key.starts_with("daily:"), "{key}"),
                _ => assert!(is_hex(32), "{collection}: {key}"),
            }
        }
        let mean = |collection: &str| {
            let sizes = &sizes[collection];
            sizes.iter().sum::<usize>() / sizes.len()
        };
        // The sample's means: 2,531, 3,266, 813, 381, 681 and 552 bytes.
        for (collection, low, high) in [
            ("players", 1_800, 3_300),
            ("game_sessions", 2_300, 4_300),
            ("transactions", 600, 1_100),
            ("chat", 250, 550),
            ("settings", 550, 850),
            ("inventories", 350, 800),
            ("leaderboards", 1_000, 6_000),
        ] {
            let mean = mean(collection);
            assert!((low..high).contains(&mean), "{collection}: {mean}");
        }
        // Deduplication has something to find, as in the sample.
        let distinct: BTreeSet<String> = records
            .iter()
            .map(|(collection, _, value)| format!("{collection}{value}"))
            .collect();
        assert!(
            distinct.len() < records.len() * 9 / 10,
            "{}",
            distinct.len()
        );
    }
}
