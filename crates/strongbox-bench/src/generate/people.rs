//! The players' side of the world: profiles, settings, inventories and chat.

use rand::rngs::SmallRng;
use rand::{Rng, RngExt as _};
use serde_json::{Value, json};

use super::{NOW_MS, World, one};

const ADJECTIVES: [&str; 12] = [
    "neon", "royal", "lucky", "iron", "sly", "golden", "wild", "silent", "crimson", "midnight",
    "velvet", "cosmic",
];
const NOUNS: [&str; 12] = [
    "ghost", "shooter", "baron", "ace", "roller", "dealer", "whale", "shark", "viper", "fox",
    "gambler", "dice",
];
const SYLLABLES: [&str; 16] = [
    "ry", "ro", "zen", "ba", "lux", "ace", "el", "mi", "jax", "gru", "sol", "tar", "hex", "lo",
    "vi", "ka",
];
/// The bet types of the game (craps).
pub const BET_TYPES: [&str; 14] = [
    "Pass",
    "DontPass",
    "Come",
    "DontCome",
    "Field",
    "Place4",
    "Place5",
    "Place6",
    "Place8",
    "Place9",
    "Place10",
    "Hard8",
    "OddsPass",
    "OddsDontPass",
];
/// The table types, by how often a table is of each.
pub const TABLE_TYPES: [&str; 10] = [
    "classic",
    "classic",
    "classic",
    "classic",
    "classic",
    "classic",
    "micro",
    "micro",
    "tournament",
    "high_roller",
];
const PLATFORMS: [&str; 4] = ["ios", "android", "macos", "linux"];
const TRANSPORTS: [&str; 3] = ["bluetooth", "tcp", "wifi_direct"];
const ACHIEVEMENTS: [(&str, &str, &str); 8] = [
    (
        "peer_pioneer",
        "Peer Pioneer",
        "Host a game over a Bluetooth mesh of five peers",
    ),
    ("century", "Century", "Play one hundred games"),
    (
        "hot_hand",
        "Hot Hand",
        "Roll four points in a row without a seven",
    ),
    (
        "high_roller",
        "High Roller",
        "Win a bet of ten thousand chips",
    ),
    ("generous", "Generous", "Tip other players a thousand chips"),
    (
        "night_owl",
        "Night Owl",
        "Play a round between two and five in the morning",
    ),
    (
        "yo_eleven",
        "Yo Eleven",
        "Win a Yo bet on the come out roll",
    ),
    (
        "relay_hero",
        "Relay Hero",
        "Relay a megabyte of other players' moves",
    ),
];
const PHRASES: [&str; 16] = [
    "cashing out, gn all",
    "that was a brutal seven out",
    "gg",
    "I'm pressing my six and eight",
    "hard eight pays!",
    "come on seven",
    "boxcars!!",
    "don't pass player here, sorry not sorry",
    "thanks for the tip",
    "snake eyes again lol",
    "no more sevens please",
    "who's shooting next?",
    "point is nine, let's see it",
    "the mesh is slow tonight",
    "my connection dropped for a sec, did my bet go through?",
    "anyone up for a tournament table?",
];
const EMOJIS: [&str; 5] = ["🔥", "🎲", "😅", "💰", "🍀"];
const ITEMS: [&str; 5] = ["dice", "chips", "felt", "emote", "boost"];
const MATERIALS: [&str; 7] = [
    "wood",
    "crystal",
    "obsidian",
    "pixel",
    "holo",
    "ivory",
    "casino_red",
];
const BADGES: [&str; 6] = [
    "whale",
    "lucky_seven",
    "generous",
    "yo_eleven",
    "peer_pioneer",
    "og",
];

/// A player's handle: `neon_ghost840` or `ryzenba72`.
pub fn player_name(rng: &mut SmallRng) -> String {
    let number = rng.random_range(1..1000);
    if rng.random_bool(0.5) {
        let adjective = one(rng, &ADJECTIVES);
        let noun = one(rng, &NOUNS);
        format!("{adjective}_{noun}{number}")
    } else {
        let parts = rng.random_range(2..5);
        let mut name: String = (0..parts).map(|_| one(rng, &SYLLABLES)).collect();
        name.push_str(&(number % 100).to_string());
        name
    }
}

/// A number with two decimals in `0..=1`.
fn fraction(rng: &mut impl Rng) -> f64 {
    f64::from(rng.random_range(0..=100u32)) / 100.0
}

/// A player's profile: identity, balance, statistics, settings, achievements, friends, devices.
pub fn profile(world: &mut World, player: &super::Player) -> Value {
    let rng = &mut world.rng;
    let games_played = rng.random_range(0..400u64);
    let games_won = rng.random_range(0..=games_played);
    let mut bets_by_type = serde_json::Map::new();
    for _ in 0..rng.random_range(1..7) {
        let bet = one(rng, &BET_TYPES);
        bets_by_type.insert(bet.to_owned(), json!(rng.random_range(1..40)));
    }
    let achievements: Vec<Value> = (0..rng.random_range(0..11))
        .map(|_| {
            let (id, name, description) = one(rng, &ACHIEVEMENTS);
            let unlocked = rng.random_bool(0.6);
            json!({
                "id": id, "name": name, "description": description,
                "tier": one(rng, &["bronze", "silver", "gold"]),
                "unlocked_at": unlocked.then(|| NOW_MS / 1000 - rng.random_range(0..9_000_000)),
                "progress": if unlocked { 1.0 } else { fraction(rng) },
            })
        })
        .collect();
    let created_at = NOW_MS / 1000 - rng.random_range(0..20_000_000);
    let balance = rng.random_range(0..2_000_000u64);
    let stats = json!({
        "games_played": games_played, "games_won": games_won,
        "win_rate": (games_won * 10_000).checked_div(games_played).unwrap_or(0) as f64 / 10_000.0,
        "total_wagered": rng.random_range(0..50_000), "total_won": rng.random_range(0..50_000),
        "biggest_win": rng.random_range(0..5_000), "longest_streak": rng.random_range(0..12),
        "current_streak": rng.random_range(-5..6),
        "favorite_bet": one(rng, &BET_TYPES), "bets_by_type": bets_by_type,
        "rolls_as_shooter": rng.random_range(0..300), "sevens_rolled": rng.random_range(0..60),
        "points_made": rng.random_range(0..40),
    });
    let settings = settings(world);
    let friends: Vec<String> = (0..world.rng.random_range(0..11))
        .map(|_| world.player().id)
        .collect();
    let rng = &mut world.rng;
    let devices: Vec<Value> = (0..rng.random_range(1..4))
        .map(|_| {
            json!({
                "device_id": format!("{:016x}", rng.random::<u64>()),
                "platform": one(rng, &PLATFORMS),
                "app_version": format!("1.{}.{}", rng.random_range(2..6), rng.random_range(0..4)),
                "last_seen": NOW_MS / 1000 - rng.random_range(0..1_000_000),
            })
        })
        .collect();
    let wallet = format!("{:032x}{:08x}", rng.random::<u128>(), rng.random::<u32>());
    json!({
        "id": player.id, "name": player.name,
        "display_name": display_name(&player.name),
        "created_at": created_at, "last_seen": NOW_MS / 1000 - rng.random_range(0..900_000),
        "level": rng.random_range(1..60), "xp": rng.random_range(0..60_000),
        "balance": balance, "locked_balance": if rng.random_bool(0.2) { rng.random_range(10..5_000) } else { 0 },
        "stats": stats, "settings": settings, "achievements": achievements, "friends": friends,
        "reputation": {
            "score": fraction(rng), "reports": rng.random_range(0..4),
            "games_completed": games_played, "games_abandoned": rng.random_range(0..5),
        },
        "devices": devices,
        "wallet": {"address": wallet, "nonce": rng.random_range(0..5_000), "pending_withdrawals": []},
    })
}

/// `neon_ghost840` as `Neon Ghost840`.
fn display_name(name: &str) -> String {
    name.split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_uppercase().chain(chars).collect()
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A player's settings: half keep the defaults untouched (identical values, which
/// deduplication stores once).
pub fn settings(world: &mut World) -> Value {
    let rng = &mut world.rng;
    if rng.random_bool(0.5) {
        return json!({
            "sound": true, "music_volume": 0.6, "sfx_volume": 0.8, "haptics": true,
            "theme": "dark", "language": "en", "auto_roll": false, "confirm_bets_over": 1000,
            "show_odds": true, "animation_speed": "normal", "reduce_motion": false,
            "notifications": {"game_invites": true, "friend_online": true, "big_wins": true,
                              "tournament": false, "daily_bonus": true, "quiet_hours": [23, 7]},
            "privacy": {"show_balance": false, "show_online": true, "allow_spectators": true,
                        "share_stats": true},
            "table_preferences": {"default_bet": 10, "preferred_table": "classic",
                                  "auto_rebet": false, "quick_bets": ["Pass", "Field", "Place6", "Place8"]},
            "network": {"transport": "bluetooth", "max_peers": 8, "relay": true,
                        "relay_budget_kb": 2048, "discovery_interval_ms": 5000},
        });
    }
    let quick_bets: Vec<&str> = (0..rng.random_range(1..5))
        .map(|_| one(rng, &BET_TYPES))
        .collect();
    json!({
        "sound": rng.random_bool(0.8), "music_volume": fraction(rng), "sfx_volume": fraction(rng),
        "haptics": rng.random_bool(0.5),
        "theme": one(rng, &["dark", "light", "high_contrast", "felt_green"]),
        "language": one(rng, &["en", "en", "es", "de", "fr", "pt", "ja"]),
        "auto_roll": rng.random_bool(0.2),
        "confirm_bets_over": one(rng, &[500, 1000, 5000, 10000]),
        "show_odds": rng.random_bool(0.7),
        "animation_speed": one(rng, &["slow", "normal", "normal", "fast"]),
        "reduce_motion": rng.random_bool(0.1),
        "notifications": {"game_invites": rng.random_bool(0.9), "friend_online": rng.random_bool(0.7),
                          "big_wins": true, "tournament": rng.random_bool(0.3),
                          "daily_bonus": rng.random_bool(0.8), "quiet_hours": [23, 7]},
        "privacy": {"show_balance": rng.random_bool(0.3), "show_online": rng.random_bool(0.8),
                    "allow_spectators": rng.random_bool(0.8), "share_stats": rng.random_bool(0.7)},
        "table_preferences": {"default_bet": one(rng, &[5, 10, 25, 50, 100]),
                              "preferred_table": one(rng, &TABLE_TYPES),
                              "auto_rebet": rng.random_bool(0.3), "quick_bets": quick_bets},
        "network": {"transport": one(rng, &TRANSPORTS), "max_peers": 8,
                    "relay": rng.random_bool(0.8), "relay_budget_kb": 2048,
                    "discovery_interval_ms": 5000},
    })
}

/// A player's inventory: more than half still hold the starter kit and nothing else.
pub fn inventory(world: &mut World) -> Value {
    let rng = &mut world.rng;
    let mut items = vec![
        json!({"item": "dice_classic", "qty": 1, "tradeable": false}),
        json!({"item": "chips_default", "qty": 1, "tradeable": false}),
        json!({"item": "welcome_boost", "qty": 3, "tradeable": false}),
    ];
    if rng.random_bool(0.57) {
        return json!({
            "dice_skin": "classic", "chip_skin": "default", "table_felt": "green",
            "items": items, "boosts": [], "tickets": {"tournament": 1, "daily_spin": 1},
            "badges": [],
        });
    }
    for _ in 0..rng.random_range(0..13) {
        let item = format!("{}_{}", one(rng, &ITEMS), one(rng, &MATERIALS));
        items.push(json!({
            "item": item, "qty": rng.random_range(1..16), "tradeable": rng.random_bool(0.5),
            "acquired_at": NOW_MS / 1000 - rng.random_range(0..5_000_000),
        }));
    }
    let boosts: Vec<Value> = (0..rng.random_range(0..4))
        .map(|_| {
            json!({"kind": one(rng, &["xp_2x", "lucky_hour", "rakeback"]),
                   "expires_at": NOW_MS / 1000 + rng.random_range(0..3_000_000)})
        })
        .collect();
    let badges: Vec<&str> = (0..rng.random_range(0..6))
        .map(|_| one(rng, &BADGES))
        .collect();
    json!({
        "dice_skin": one(rng, &MATERIALS),
        "chip_skin": one(rng, &["default", "midnight", "gold"]),
        "table_felt": one(rng, &["green", "blue", "obsidian"]),
        "items": items, "boosts": boosts,
        "tickets": {"tournament": rng.random_range(0..4), "daily_spin": rng.random_range(0..2)},
        "badges": badges,
    })
}

/// A chat message in a game, the lobby, a tournament or a direct conversation.
pub fn chat(world: &mut World) -> Value {
    let sender = world.player();
    let channel = match world.rng.random_range(0..100) {
        0..61 => format!("game:{}", world.hex(32)),
        61..80 => "lobby:global".to_owned(),
        80..95 => format!("dm:{}:{}", sender.id, world.player().id),
        _ => format!("tournament:{}", world.rng.random_range(1..40)),
    };
    let reactions: Vec<Value> = (0..world.rng.random_range(0..3))
        .map(|_| {
            let by: Vec<String> = (0..world.rng.random_range(1..5))
                .map(|_| world.player().id)
                .collect();
            json!({"emoji": world.pick(&EMOJIS), "by": by})
        })
        .collect();
    let reply_to = world.rng.random_bool(0.15).then(|| world.hex(16));
    let rng = &mut world.rng;
    let mut text = (one(rng, &PHRASES)).to_owned();
    if rng.random_bool(0.1) {
        text.push(' ');
        text.push_str(one(rng, &PHRASES));
    }
    json!({
        "msg_id": format!("{:016x}", rng.random::<u64>()), "channel": channel,
        "sender": sender.id, "sender_name": sender.name,
        "sent_at": NOW_MS + rng.random_range(0..20_000_000), "text": text,
        "reply_to": reply_to, "edited": rng.random_bool(0.05), "reactions": reactions,
        "delivery": {"hops": rng.random_range(1..7), "via": one(rng, &TRANSPORTS), "ttl": 8},
    })
}
