//! The game's side of the world: game sessions (players, bets, dice rolls, the table's
//! configuration and its consensus), chip transactions and leaderboards.

use std::time::{Duration, UNIX_EPOCH};

use rand::RngExt as _;
use rand::seq::IndexedRandom as _;
use serde_json::{Value, json};

use super::people::{BET_TYPES, TABLE_TYPES};
use super::{NOW_MS, World, one};

/// The payout table every table type shares: bet, then winnings per stake.
const PAYOUTS: [(&str, [u32; 2]); 30] = [
    ("Pass", [1, 1]),
    ("DontPass", [1, 1]),
    ("Come", [1, 1]),
    ("DontCome", [1, 1]),
    ("Field", [1, 1]),
    ("Field2", [2, 1]),
    ("Field12", [3, 1]),
    ("Any7", [4, 1]),
    ("AnyCraps", [7, 1]),
    ("Hard4", [7, 1]),
    ("Hard6", [9, 1]),
    ("Hard8", [9, 1]),
    ("Hard10", [7, 1]),
    ("Yo11", [15, 1]),
    ("Ace2", [30, 1]),
    ("Twelve", [30, 1]),
    ("Big6", [1, 1]),
    ("Big8", [1, 1]),
    ("Place4", [9, 5]),
    ("Place5", [7, 5]),
    ("Place6", [7, 6]),
    ("Place8", [7, 6]),
    ("Place9", [7, 5]),
    ("Place10", [9, 5]),
    ("OddsPass4", [2, 1]),
    ("OddsPass5", [3, 2]),
    ("OddsPass6", [6, 5]),
    ("Fire4", [24, 1]),
    ("Fire5", [249, 1]),
    ("Fire6", [999, 1]),
];
const ALLOWED_BETS: [&str; 24] = [
    "Pass",
    "DontPass",
    "Come",
    "DontCome",
    "Field",
    "Any7",
    "AnyCraps",
    "Hard4",
    "Hard6",
    "Hard8",
    "Hard10",
    "Yo11",
    "Place6",
    "Place8",
    "Place5",
    "Place9",
    "Place4",
    "Place10",
    "Big6",
    "Big8",
    "OddsPass",
    "OddsDontPass",
    "Fire",
    "Bonus",
];
/// Transaction kinds, by how often each occurs.
const KINDS: [&str; 20] = [
    "BetPlaced",
    "BetPlaced",
    "BetPlaced",
    "BetPlaced",
    "BetPlaced",
    "BetPlaced",
    "BetPlaced",
    "Payout",
    "Payout",
    "Payout",
    "Payout",
    "Payout",
    "Transfer",
    "Transfer",
    "Fee",
    "Fee",
    "Deposit",
    "Reward",
    "Withdrawal",
    "Tip",
];

/// A table type's configuration: limits, payouts and consensus rules.
fn table_config(table_type: &str) -> Value {
    let (min_bet, max_bet, max_players, max_odds) = match table_type {
        "micro" => (1, 500, 6, 2),
        "tournament" => (50, 50_000, 12, 5),
        "high_roller" => (500, 100_000, 8, 10),
        _ => (10, 5_000, 8, 3),
    };
    let payouts: serde_json::Map<String, Value> = PAYOUTS
        .iter()
        .map(|(bet, ratio)| ((*bet).to_owned(), json!(ratio)))
        .collect();
    json!({
        "table_type": table_type, "min_bet": min_bet, "max_bet": max_bet,
        "max_players": max_players, "max_odds_multiple": max_odds, "house_edge_bps": 141,
        "roll_timeout_ms": 30_000, "bet_timeout_ms": 15_000, "payouts": payouts,
        "allowed_bets": ALLOWED_BETS,
        "consensus": {"quorum": 0.67, "timeout_ms": 5000, "commit_reveal": true},
    })
}

/// A game session. A quarter are tables waiting for players, all alike; the others are in
/// play or resolved, with their players, bets, rolls and the peers' signatures.
pub fn session(world: &mut World, game_id: &str) -> Value {
    if world.rng.random_bool(0.24) {
        return json!({
            "phase": "WaitingForPlayers", "point": null, "round": 0, "shooter": null,
            "players": [], "bets": [], "rolls": [], "config": table_config("classic"),
            "consensus": {"round": 0, "state_hash": null, "signatures": []},
        });
    }
    let table_type = world.pick(&TABLE_TYPES);
    let created_at = world.recent_ms(30 * 86_400_000);
    let seated: Vec<super::Player> = (0..world.rng.random_range(2..8))
        .map(|_| world.player())
        .collect();
    let rng = &mut world.rng;
    let players: Vec<Value> = seated
        .iter()
        .enumerate()
        .map(|(seat, player)| {
            json!({"id": player.id, "name": player.name, "seat": seat,
                   "balance_start": rng.random_range(1_000..2_000_000),
                   "joined_at": created_at + rng.random_range(0..30_000)})
        })
        .collect();
    let mut rolls = Vec::new();
    let mut at = created_at + 60_000;
    while rolls.len() < 90 && rng.random_bool(0.85) {
        let (d1, d2) = (rng.random_range(1..7), rng.random_range(1..7));
        at += rng.random_range(5_000..45_000);
        let shooter = &seated[rolls.len() / 4 % seated.len()].id;
        let result = match d1 + d2 {
            7 if rng.random_bool(0.5) => "SevenOut",
            7 | 11 => "Natural",
            2 | 3 | 12 => "Craps",
            _ if rng.random_bool(0.3) => "PointSet",
            _ => "NoDecision",
        };
        rolls.push(
            json!({"n": rolls.len() + 1, "d1": d1, "d2": d2, "total": d1 + d2, "at": at,
                          "shooter": shooter, "result": result}),
        );
    }
    let bets: Vec<Value> = (0..rng.random_range(0..9))
        .map(|_| {
            let status = one(rng, &["Won", "Lost", "Lost", "Active", "Pushed"]);
            let amount = one(rng, &[5, 10, 20, 25, 50, 100, 200, 500]);
            let placed_at = created_at + rng.random_range(0..400_000);
            let mut bet = json!({
                "player": seated.choose(rng).map_or("", |player| player.id.as_str()),
                "type": one(rng, &BET_TYPES), "amount": amount,
                "odds": rng.random_range(0..4), "placed_at": placed_at, "status": status,
                "payout": if status == "Won" { amount * 2 } else { 0 },
            });
            if status != "Active" {
                bet["settled_at"] = json!(placed_at + rng.random_range(1_000..60_000));
            }
            bet
        })
        .collect();
    let phase = one(
        rng,
        &[
            "ComeOut", "Point", "Point", "Resolved", "Resolved", "Resolved",
        ],
    );
    let point = (phase != "ComeOut").then(|| one(rng, &[4, 5, 6, 8, 9, 10]));
    let round = rolls.len();
    let signatures: Vec<Value> = seated
        .iter()
        .map(|player| json!({"peer": player.id, "sig": world.hex(128)}))
        .collect();
    json!({
        "game_id": game_id, "table": format!("{table_type}-{}", world.rng.random_range(1..60)),
        "created_at": created_at, "updated_at": at, "phase": phase, "point": point,
        "round": round, "shooter": seated.first().map(|player| player.id.clone()),
        "players": players, "bets": bets, "rolls": rolls, "config": table_config(table_type),
        "consensus": {"round": round, "state_hash": world.hex(64), "signatures": signatures},
    })
}

/// A chip transaction: a bet, a payout, a transfer, a fee, a deposit, a reward, a
/// withdrawal or a tip, with its place in the chain and the peers that confirmed it.
pub fn transaction(world: &mut World, tx_id: &str) -> Value {
    let kind = world.pick(&KINDS);
    let from = world.player().id;
    let to = (kind != "BetPlaced").then(|| world.player().id);
    let in_game = matches!(kind, "BetPlaced" | "Payout" | "Fee" | "Tip");
    let game_id = (in_game && world.rng.random_bool(0.8)).then(|| world.hex(32));
    let timestamp = world.recent_ms(2 * 86_400_000);
    let (prev_hash, signature) = (world.hex(64), world.hex(128));
    let confirmations: Vec<Value> = (0..world.rng.random_range(1..5))
        .map(|_| {
            let peer = world.player().id;
            json!({"peer": peer, "at": timestamp + world.rng.random_range(100..5_000)})
        })
        .collect();
    let rng = &mut world.rng;
    let amount: i64 = rng.random_range(1..500);
    let fee = i64::from(kind != "Reward" && kind != "Deposit");
    let balance_before: i64 = rng.random_range(10_000..1_000_000);
    let credit = matches!(kind, "Payout" | "Deposit" | "Reward");
    let balance_after = if credit {
        balance_before + amount
    } else {
        balance_before - amount - fee
    };
    let mut value = json!({
        "tx_id": tx_id, "kind": kind, "from": from, "to": to, "amount": amount, "fee": fee,
        "currency": "CRAP", "game_id": game_id,
        "bet_type": matches!(kind, "BetPlaced" | "Payout").then(|| one(rng, &BET_TYPES)),
        "timestamp": timestamp, "block": (timestamp - NOW_MS + 2 * 86_400_000) / 10_000,
        "nonce": rng.random_range(0..100_000), "prev_hash": prev_hash, "signature": signature,
        "balance_before": balance_before,
        "status": one(rng, &["Confirmed", "Confirmed", "Confirmed", "Confirmed", "Pending", "Rejected"]),
        "confirmations": confirmations, "balance_after": balance_after,
    });
    if rng.random_bool(0.05) {
        value["memo"] = json!("refund after partition");
    }
    value
}

/// Leaderboard number `made`: the day's top players of one table type, keyed
/// `daily:2025-10-09:classic` (one day further back for every round of table types).
pub fn leaderboard(world: &mut World, made: usize) -> (String, Value) {
    const TYPES: [&str; 4] = ["classic", "micro", "tournament", "high_roller"];
    let table_type = TYPES[made % TYPES.len()];
    let day_ms = NOW_MS - (made / TYPES.len()) as i64 * 86_400_000;
    let date = date_of(day_ms);
    let mut score: i64 = world.rng.random_range(20_000..400_000);
    let entries: Vec<Value> = (1..=25)
        .map(|rank| {
            let player = world.player();
            score -= world.rng.random_range(0..score / 10 + 1);
            json!({"rank": rank, "player": player.id, "name": player.name, "score": score,
                   "games": world.rng.random_range(1..60)})
        })
        .collect();
    let key = format!("daily:{date}:{table_type}");
    let value = json!({"board": "daily", "table_type": table_type, "period": date,
                       "updated_at": day_ms, "entries": entries});
    (key, value)
}

/// The UTC date of a time (after the epoch), as `2025-10-09`.
fn date_of(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    let mut date = humantime::format_rfc3339_seconds(at).to_string();
    date.truncate("2025-10-09".len());
    date
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_days() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(NOW_MS), "2025-10-09");
        assert_eq!(date_of(951_782_400_000), "2000-02-29");
        assert_eq!(date_of(NOW_MS - 40 * 86_400_000), "2025-08-30");
    }
}
