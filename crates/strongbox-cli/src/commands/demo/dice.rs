//! Randomness: rand's `SmallRng`, seeded from `--seed`, and the few draws the game needs that
//! rand does not name. One seed gives one sequence of draws per generator.

use rand::rngs::SmallRng;
use rand::{Rng, RngExt as _, SeedableRng as _};

/// The generator of a whole game night.
pub fn seeded(seed: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed)
}

/// An independent generator for a sub-task (a table, a setup batch), drawn from `rng`: the
/// same parent draws give the same children, whatever order the tasks then run in.
pub fn fork(rng: &mut impl Rng) -> SmallRng {
    SmallRng::seed_from_u64(rng.random())
}

/// One of `items`, uniformly; `items` must not be empty.
pub fn pick<'a, T>(rng: &mut impl Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// A roll of two dice.
pub fn roll(rng: &mut impl Rng) -> [u8; 2] {
    [rng.random_range(1..=6), rng.random_range(1..=6)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_gives_one_sequence_of_rolls_and_picks() {
        let mut a = seeded(42);
        let mut b = seeded(42);
        let mut a_child = fork(&mut a);
        let mut b_child = fork(&mut b);
        for _ in 0..1000 {
            let dice = roll(&mut a);
            assert_eq!(dice, roll(&mut b));
            assert!(dice.iter().all(|die| (1..=6).contains(die)));
            let item = *pick(&mut a_child, &[5, 6, 7]);
            assert_eq!(item, *pick(&mut b_child, &[5, 6, 7]));
            assert!((5..=7).contains(&item));
        }
    }
}
