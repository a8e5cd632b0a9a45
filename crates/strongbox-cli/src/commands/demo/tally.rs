//! What the tasks did: counts added up at the end, and the value each wrote last per record,
//! which the read-back compares with what the store returns.

use std::collections::BTreeMap;

use serde_json::Value;

/// Counts of one task, added up at the end, and the values it wrote last per record.
#[derive(Debug, Default)]
pub struct Tally {
    /// Records written by committed stores and transactions.
    pub writes: u64,
    /// Bets placed.
    pub bets: u64,
    /// Bets won.
    pub won: u64,
    /// Bets lost.
    pub lost: u64,
    /// Bets pushed (stake back).
    pub pushed: u64,
    /// Dice rolls.
    pub rolls: u64,
    /// Chat messages.
    pub chats: u64,
    /// Tips between players.
    pub tips: u64,
    /// Conflicts met by concurrent updates: the transactions that ran again, counted per run.
    pub retries: u64,
    /// (collection, key, the value last written); balances are checked by their total.
    expected: Vec<(String, String, Value)>,
}

impl Tally {
    /// Adds another task's counts and written values to these.
    pub fn add(&mut self, other: Tally) {
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

    /// Remembers that `value` was written last under `collection`/`key` (so far).
    pub fn wrote(&mut self, collection: &str, key: &str, value: Value) {
        self.expected
            .push((collection.to_owned(), key.to_owned(), value));
    }

    /// The value last written to each record, taken out of the tally; a later write to a
    /// record replaces an earlier one.
    pub fn take_expected(&mut self) -> BTreeMap<(String, String), Value> {
        std::mem::take(&mut self.expected)
            .into_iter()
            .map(|(collection, key, value)| ((collection, key), value))
            .collect()
    }
}
