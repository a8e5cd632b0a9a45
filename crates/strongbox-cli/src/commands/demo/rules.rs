//! The rules of craps as the demo's tables play them: what a roll means for the round, and what
//! each bet pays. Pure functions, no I/O.

/// The bets a table takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BetKind {
    /// Wins on a natural (7, 11) or when the point is made.
    Pass,
    /// Wins on 2 or 3 and on a seven out; 12 is a push.
    DontPass,
    /// A one-roll bet on the come-out: 2 pays double, 12 triple, 3, 4, 9, 10 and 11 even.
    Field,
}

impl BetKind {
    /// The name stored in bet records and ledger entries.
    pub fn name(self) -> &'static str {
        match self {
            BetKind::Pass => "Pass",
            BetKind::DontPass => "DontPass",
            BetKind::Field => "Field",
        }
    }
}

/// How a round of craps went: the come-out roll (which is the point, when one was set), and
/// the point's fate. Field bets are decided by the come-out roll alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundResult {
    /// The come-out roll's total.
    pub come_out: u8,
    /// `Some(true)`: point made; `Some(false)`: seven out; `None`: decided on the come-out.
    pub point_made: Option<bool>,
}

/// The shooter's progress through a round: the come-out roll, then rolls until the point
/// comes again or a seven does.
#[derive(Debug, Default)]
pub struct Shooter {
    point: Option<u8>,
}

impl Shooter {
    /// The point, once the come-out roll set one.
    pub fn point(&self) -> Option<u8> {
        self.point
    }

    /// Judges a roll of total `sum`: what it is called, and the round's result once decided.
    pub fn roll(&mut self, sum: u8) -> (&'static str, Option<RoundResult>) {
        let decided = |come_out, point_made| {
            Some(RoundResult {
                come_out,
                point_made,
            })
        };
        match self.point {
            None if matches!(sum, 4 | 5 | 6 | 8 | 9 | 10) => {
                self.point = Some(sum);
                ("point set", None)
            }
            None if matches!(sum, 7 | 11) => ("natural", decided(sum, None)),
            None => ("craps", decided(sum, None)),
            Some(point) if sum == point => ("point made", decided(point, Some(true))),
            Some(point) if sum == 7 => ("seven out", decided(point, Some(false))),
            Some(_) => ("no decision", None),
        }
    }
}

/// What a bet pays: `None` = lost, `Some(0)` = push (stake back), `Some(m)` = stake back plus
/// `m` times the stake.
pub fn payout(kind: BetKind, round: RoundResult) -> Option<i64> {
    let come_out = round.come_out;
    match kind {
        BetKind::Field => match come_out {
            2 => Some(2),
            12 => Some(3),
            3 | 4 | 9 | 10 | 11 => Some(1),
            _ => None,
        },
        BetKind::Pass => match (come_out, round.point_made) {
            (7 | 11, _) | (_, Some(true)) => Some(1),
            _ => None,
        },
        BetKind::DontPass => match (come_out, round.point_made) {
            (12, None) => Some(0),
            (2 | 3, None) | (_, Some(false)) => Some(1),
            _ => None,
        },
    }
}

/// How a bet ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The bank pays the player.
    Won,
    /// The bank keeps the stake.
    Lost,
    /// The stake goes back to the player.
    Push,
}

impl Status {
    /// The word stored in bet records and histories.
    pub fn name(self) -> &'static str {
        match self {
            Status::Won => "won",
            Status::Lost => "lost",
            Status::Push => "push",
        }
    }
}

/// A settled bet: how it ended, the chips the player gets (stake included), and what the bank
/// gains (negative when it pays).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// How the bet ended.
    pub status: Status,
    /// Chips credited to the player, the stake included.
    pub credit: i64,
    /// Chips the bank gains; negative when it pays out.
    pub bank_gain: i64,
}

/// Settles a bet of `stake` chips on a decided round.
pub fn outcome(kind: BetKind, stake: i64, round: RoundResult) -> Outcome {
    match payout(kind, round) {
        None => Outcome {
            status: Status::Lost,
            credit: 0,
            bank_gain: stake,
        },
        Some(0) => Outcome {
            status: Status::Push,
            credit: stake,
            bank_gain: 0,
        },
        Some(multiple) => Outcome {
            status: Status::Won,
            credit: stake * (multiple + 1),
            bank_gain: -stake * multiple,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn come_out(sum: u8) -> RoundResult {
        RoundResult {
            come_out: sum,
            point_made: None,
        }
    }

    fn point(sum: u8, made: bool) -> RoundResult {
        RoundResult {
            come_out: sum,
            point_made: Some(made),
        }
    }

    #[test]
    fn craps_payouts_follow_the_rules() {
        assert_eq!(payout(BetKind::Pass, come_out(7)), Some(1));
        assert_eq!(payout(BetKind::Pass, come_out(2)), None);
        assert_eq!(payout(BetKind::Pass, point(6, true)), Some(1));
        assert_eq!(payout(BetKind::Pass, point(6, false)), None);
        assert_eq!(payout(BetKind::DontPass, come_out(12)), Some(0));
        assert_eq!(payout(BetKind::DontPass, come_out(3)), Some(1));
        assert_eq!(payout(BetKind::DontPass, come_out(11)), None);
        assert_eq!(payout(BetKind::DontPass, point(8, false)), Some(1));
        assert_eq!(payout(BetKind::Field, come_out(12)), Some(3));
        assert_eq!(payout(BetKind::Field, come_out(2)), Some(2));
        assert_eq!(payout(BetKind::Field, come_out(7)), None);
    }

    #[test]
    fn a_settled_bet_moves_chips_between_player_and_bank() {
        let won = outcome(BetKind::Field, 10, come_out(12));
        assert_eq!(
            (won.status, won.credit, won.bank_gain),
            (Status::Won, 40, -30)
        );
        let lost = outcome(BetKind::Pass, 10, come_out(2));
        assert_eq!(
            (lost.status, lost.credit, lost.bank_gain),
            (Status::Lost, 0, 10)
        );
        let push = outcome(BetKind::DontPass, 10, come_out(12));
        assert_eq!(
            (push.status, push.credit, push.bank_gain),
            (Status::Push, 10, 0)
        );
    }

    #[test]
    fn the_shooter_rolls_until_the_point_or_a_seven() {
        assert_eq!(Shooter::default().roll(11), ("natural", Some(come_out(11))));
        assert_eq!(Shooter::default().roll(2), ("craps", Some(come_out(2))));
        let mut shooter = Shooter::default();
        assert_eq!(shooter.roll(6), ("point set", None));
        assert_eq!(shooter.point(), Some(6));
        assert_eq!(shooter.roll(11), ("no decision", None));
        assert_eq!(shooter.roll(6), ("point made", Some(point(6, true))));
        let mut unlucky = Shooter::default();
        unlucky.roll(4);
        assert_eq!(unlucky.roll(7), ("seven out", Some(point(4, false))));
    }
}
