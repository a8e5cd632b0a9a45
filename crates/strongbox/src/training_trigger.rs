//! [`TrainingTrigger`]: the counts of values committed without a dictionary, per collection,
//! that decide when a collection is trained while it is written (`training::while_writing`).
//! **Invariant:** it only counts and decides; it knows nothing of the store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Values written without a dictionary, per collection, and when to train.
#[derive(Debug, Default)]
pub(crate) struct TrainingTrigger {
    /// Per collection: values counted, and the count at which training is next tried.
    counts: Mutex<HashMap<String, (u64, u64)>>,
    /// Whether a training task is running.
    running: AtomicBool,
}

impl TrainingTrigger {
    /// Counts one value of `collection` encoded without a dictionary; true when the collection
    /// is due for training (from `first_at` values) and no training is running: the caller then
    /// owns the running slot until [`TrainingTrigger::finished`].
    pub(crate) fn note(&self, collection: &str, first_at: u64) -> bool {
        // A poisoned lock only loses counts: training then waits for maintenance.
        let Ok(mut counts) = self.counts.lock() else {
            return false;
        };
        let entry = match counts.get_mut(collection) {
            Some(entry) => entry,
            None => counts.entry(collection.to_owned()).or_insert((0, first_at)),
        };
        entry.0 += 1;
        if entry.0 < entry.1 || self.running.swap(true, Ordering::AcqRel) {
            return false;
        }
        entry.1 = entry.0.saturating_mul(4);
        true
    }

    /// Frees the running slot.
    pub(crate) fn finished(&self) {
        self.running.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::TrainingTrigger;

    #[test]
    fn training_is_due_at_the_mark_then_at_four_times_as_many() {
        let trigger = TrainingTrigger::default();
        let mut marks = Vec::new();
        for n in 1..=20_000u64 {
            if trigger.note("c", 1_000) {
                marks.push(n);
                trigger.finished();
            }
        }
        assert_eq!(marks, vec![1_000, 4_000, 16_000]);
        // One training at a time: a collection due while one runs starts at its next value.
        assert!(trigger.note("d", 1));
        assert!(!trigger.note("e", 1));
        trigger.finished();
        assert!(trigger.note("e", 1));
    }
}
