//! The game night's cast and props: players, the simulated clock, the banks, what players say,
//! and the records every player starts with (settings, avatar, achievements) and every table
//! plays by.

use rand::{Rng, RngExt as _};
use serde_json::{Value, json};

use super::dice::pick;

/// Simulated clock start (milliseconds since the epoch): the game night is deterministic.
pub const BASE_MS: i64 = 1_760_000_000_000;

/// Chips in each table's bank at the start.
pub const BANK_CHIPS: i64 = 500_000;

/// What players say at the table.
pub const PHRASES: [&str; 24] = [
    "no more sevens please",
    "let's go shooter!",
    "hot table tonight",
    "come on hard eight",
    "pressing my bets",
    "gg everyone",
    "who's rolling next?",
    "field bet looking good",
    "that was close",
    "yo eleven!",
    "dice are cold",
    "big red, stay away",
    "I'm on a heater",
    "one more round then bed",
    "nice roll!",
    "point is on",
    "don't pass gang",
    "lucky dice, lucky night",
    "thanks for the tip!",
    "the house always wins... not today",
    "snake eyes again?",
    "all in on pass",
    "brb",
    "new table, who dis",
];

const ADJECTIVES: [&str; 12] = [
    "royal", "lucky", "hot", "cold", "wild", "silent", "golden", "crazy", "mighty", "sly",
    "steady", "brave",
];

const NOUNS: [&str; 10] = [
    "shooter", "roller", "dealer", "gambler", "whale", "shark", "ace", "dice", "stickman", "boxman",
];

/// A player as every task knows it.
#[derive(Debug, Clone)]
pub struct Player {
    /// The key of the player's records: `p00042`.
    pub id: String,
    /// A made-up screen name.
    pub name: String,
}

/// `count` players with made-up names.
pub fn players(count: u64, rng: &mut impl Rng) -> Vec<Player> {
    (0..count)
        .map(|index| Player {
            id: format!("p{index:05}"),
            name: format!(
                "{}_{}{}",
                pick(rng, &ADJECTIVES),
                pick(rng, &NOUNS),
                rng.random_range(0..1000)
            ),
        })
        .collect()
}

/// The default settings most players never change.
pub fn default_settings() -> Value {
    json!({
        "sound": true,
        "music_volume": 0.6,
        "effects_volume": 0.8,
        "theme": "felt-green",
        "language": "en",
        "auto_roll": false,
        "show_odds": true,
        "confirm_bets_over": 500,
        "notifications": {"friend_online": true, "table_invite": true, "big_win": true, "tips": true},
        "privacy": {"show_balance": false, "show_history": true, "allow_tips": true},
        "hotkeys": {"roll": "space", "pass": "p", "dont_pass": "d", "field": "f", "chat": "enter"}
    })
}

/// An avatar: a 32x32 pixel-art die on felt with a few sparkles that depend on `seed`, about
/// 1.2 KB of JSON. Most players keep the default one (one seed), so it is stored once.
pub fn avatar(seed: u64) -> Value {
    const PIPS: [(i32, i32); 5] = [(9, 9), (9, 22), (15, 15), (22, 9), (22, 22)];
    let mut rng = super::dice::seeded(seed);
    let palette = [
        "#0b3d20", "#f5f5f5", "#c62828", "#ffd54f", "#1e88e5", "#212121", "#8d6e63",
    ];
    let rows: Vec<String> = (0..32i32)
        .map(|y| {
            (0..32i32)
                .map(|x| {
                    if rng.random_ratio(3, 100) {
                        return *pick(&mut rng, &['3', '4', '6']);
                    }
                    let inside = (4..28).contains(&x) && (4..28).contains(&y);
                    if !inside {
                        '0'
                    } else if x == 4 || x == 27 || y == 4 || y == 27 {
                        '5'
                    } else if PIPS
                        .iter()
                        .any(|&(px, py)| (x - px).abs() <= 1 && (y - py).abs() <= 1)
                    {
                        '2'
                    } else {
                        '1'
                    }
                })
                .collect()
        })
        .collect();
    json!({"style": "pixel-die", "size": 32, "palette": palette, "rows": rows})
}

/// The default achievements of a new player.
pub fn default_achievements() -> Value {
    json!({
        "unlocked": [],
        "progress": {"first_roll": 0, "high_roller": 0, "hot_streak": 0, "generous": 0}
    })
}

/// The rules of every table, stored with each table's session.
pub fn table_config() -> Value {
    json!({
        "table_type": "classic", "min_bet": 10, "max_bet": 5000, "max_players": 32,
        "house_edge_bps": 141, "roll_timeout_ms": 30000, "bet_timeout_ms": 15000,
        "payouts": {"Pass": [1, 1], "DontPass": [1, 1], "Field": [1, 1], "Field2": [2, 1],
                    "Field12": [3, 1]},
        "allowed_bets": ["Pass", "DontPass", "Field"],
        "consensus": {"quorum": 0.67, "timeout_ms": 5000, "commit_reveal": true}
    })
}
