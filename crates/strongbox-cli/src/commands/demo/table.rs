//! The game night: one task per table, all concurrent. Each round, seated players place bets at
//! once (a `Store::transact` transaction moves the stake from the balance into the new bet
//! record), chat, the shooter rolls until the round is decided, and the table settles every
//! bet in one transaction against its bank. Players also tip players at other tables, so
//! updates of one balance race, and the transactions that lose run again. At the end of the
//! night, each player's history is written.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use rand::RngExt as _;
use rand::rngs::SmallRng;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::Ctx;
use super::chips::{Bet, BetSlip, Placed, place_bet, transfer};
use super::dice::{fork, pick, roll};
use super::fixtures::{BASE_MS, PHRASES, default_achievements, table_config};
use super::rules::{BetKind, RoundResult, Shooter};
use super::settle::{Round, settle};
use super::tally::Tally;

/// Plays `rounds` rounds at each of `tables` tables at once; returns what they did.
///
/// # Errors
/// The first table that failed, named.
pub async fn play_night(
    ctx: &Arc<Ctx>,
    tables: usize,
    rounds: u64,
    rng: &mut SmallRng,
) -> anyhow::Result<Tally> {
    let mut handles = Vec::with_capacity(tables);
    for table in 0..tables {
        let seated: Vec<usize> = (table..ctx.players.len()).step_by(tables).collect();
        let rng = fork(rng);
        let ctx = Arc::clone(ctx);
        handles.push(tokio::spawn(play_table(ctx, table, seated, rng, rounds)));
    }
    let mut night = Tally::default();
    for (table, handle) in handles.into_iter().enumerate() {
        let tally = handle
            .await
            .with_context(|| format!("join table t{table:02}"))?
            .with_context(|| format!("play at table t{table:02}"))?;
        night.add(tally);
    }
    Ok(night)
}

/// One table's evening: `rounds` rounds of bets, chat, rolls, settlement and tips.
async fn play_table(
    ctx: Arc<Ctx>,
    table: usize,
    seated: Vec<usize>,
    mut rng: SmallRng,
    rounds: u64,
) -> anyhow::Result<Tally> {
    if seated.is_empty() {
        return Ok(Tally::default());
    }
    let mut table = Table::open(ctx, table, seated);
    for round in 0..rounds {
        table.play_round(round, &mut rng).await?;
    }
    table.write_histories().await?;
    Ok(table.tally)
}

/// What a table remembers during the night.
#[derive(Debug, Default)]
pub struct TableState {
    /// Achievements changed tonight, by player index.
    achievements: BTreeMap<usize, Value>,
    /// Each player's settled bets, written as their history at the end of the night.
    pub history: BTreeMap<usize, Vec<Value>>,
}

impl TableState {
    /// Counts a high payout towards the player's high roller achievement (unlocking it the
    /// first time); returns the player's achievements.
    pub fn high_roller(&mut self, player: usize) -> Value {
        let entry = self
            .achievements
            .entry(player)
            .or_insert_with(default_achievements);
        entry["progress"]["high_roller"] =
            json!(entry["progress"]["high_roller"].as_i64().unwrap_or(0) + 1);
        if entry["unlocked"].as_array().is_some_and(Vec::is_empty) {
            entry["unlocked"] = json!(["high_roller"]);
        }
        entry.clone()
    }
}

/// One table: who sits there, what it knows, and what it did.
struct Table {
    ctx: Arc<Ctx>,
    /// The table's number in the night.
    number: usize,
    /// `tNN`: the session key and the prefix of the round tags.
    name: String,
    /// The bank's balance key: `bank-tNN`.
    bank: String,
    /// The seated players' indexes; never empty.
    seated: Vec<usize>,
    /// Their ids, as the session lists them.
    player_ids: Vec<String>,
    /// The table's rules, stored with its session.
    config: Value,
    state: TableState,
    tally: Tally,
}

/// One round at one table: its tag, its shooter and its simulated clock.
struct Turn {
    round: u64,
    /// `tNN-rNNNN`, the prefix of the round's keys.
    tag: String,
    /// The shooter's player index.
    shooter: usize,
    /// Simulated time of the round's start.
    start_ms: i64,
}

impl Turn {
    /// Simulated time of the round's step `step` (0: opened, 1: bets, 2: chat, 3: rolls,
    /// 4: settlement, 6: tips).
    fn at(&self, step: i64) -> i64 {
        self.start_ms + step * 500
    }
}

impl Table {
    /// Seats the players at table number `table`.
    fn open(ctx: Arc<Ctx>, table: usize, seated: Vec<usize>) -> Table {
        let name = format!("t{table:02}");
        let bank = format!("bank-{name}");
        let player_ids: Vec<String> = seated
            .iter()
            .map(|&player| ctx.players[player].id.clone())
            .collect();
        Table {
            ctx,
            number: table,
            name,
            bank,
            seated,
            player_ids,
            config: table_config(),
            state: TableState::default(),
            tally: Tally::default(),
        }
    }

    /// One round: open it, take bets and chat at once, roll until decided, settle, maybe tip.
    async fn play_round(&mut self, round: u64, rng: &mut SmallRng) -> anyhow::Result<()> {
        let turn = Turn {
            round,
            tag: format!("{}-r{round:04}", self.name),
            shooter: self.seated[(round as usize) % self.seated.len()],
            start_ms: BASE_MS + round as i64 * 60_000 + self.number as i64 * 7,
        };
        let mut session = json!({
            "table": self.name, "round": round, "phase": "ComeOut", "point": null,
            "shooter": self.ctx.players[turn.shooter].id, "players": self.player_ids,
            "rolls": [], "config": self.config, "updated_at_ms": turn.at(0),
        });
        self.ctx
            .store
            .store("sessions", &self.name, &session)
            .await
            .context("open the round")?;
        self.tally.writes += 1;

        // Everyone bets and chats at once: one task each.
        let betting = self.start_bets(&turn, rng);
        let chatting = self.start_chat(&turn, rng);
        let bets = self.collect_bets(betting).await?;
        self.collect_chat(chatting).await?;

        let result = self.shoot(&turn, &mut session, rng).await?;
        session["phase"] = json!("Settled");
        session["updated_at_ms"] = json!(turn.at(4));
        let decided = Round {
            bank: &self.bank,
            tag: &turn.tag,
            result,
            at_ms: turn.at(4),
            session: (&self.name, &session),
        };
        settle(&self.ctx, &decided, &bets, &mut self.state, &mut self.tally)
            .await
            .with_context(|| format!("settle round {round}"))?;
        self.tally.wrote("sessions", &self.name, session);

        // A tip to anyone, often at another table: races with that table's updates.
        if rng.random_ratio(40, 100) {
            self.tip(&turn, rng).await?;
        }
        Ok(())
    }

    /// Starts a task for each seated player who bets this round (six in ten do).
    fn start_bets(
        &self,
        turn: &Turn,
        rng: &mut SmallRng,
    ) -> Vec<JoinHandle<anyhow::Result<Placed>>> {
        let mut betting = Vec::new();
        for &player in &self.seated {
            if !rng.random_ratio(60, 100) {
                continue;
            }
            let kinds = [
                BetKind::Pass,
                BetKind::Pass,
                BetKind::DontPass,
                BetKind::Field,
            ];
            let slip = BetSlip {
                player,
                key: format!("{}-{}", turn.tag, self.ctx.players[player].id),
                kind: *pick(rng, &kinds),
                stake: 5 * rng.random_range(2..=20),
                at_ms: turn.at(1),
            };
            let ctx = Arc::clone(&self.ctx);
            betting.push(tokio::spawn(async move { place_bet(&ctx, slip).await }));
        }
        betting
    }

    /// Starts a task for each chat message of this round (up to two).
    fn start_chat(
        &self,
        turn: &Turn,
        rng: &mut SmallRng,
    ) -> Vec<JoinHandle<anyhow::Result<(String, Value)>>> {
        let mut chatting = Vec::new();
        for message in 0..rng.random_range(0..3) {
            let from = &self.ctx.players[*pick(rng, &self.seated)];
            let chat = json!({
                "table": self.name, "from": from.id, "name": from.name,
                "text": *pick(rng, &PHRASES), "sent_at_ms": turn.at(2) + message,
                "reply_to": null, "reactions": [],
            });
            let key = format!("{}-{message}", turn.tag);
            let ctx = Arc::clone(&self.ctx);
            chatting.push(tokio::spawn(async move {
                ctx.store.store("chat", &key, &chat).await?;
                anyhow::Ok((key, chat))
            }));
        }
        chatting
    }

    /// Waits for the bets; returns those placed.
    async fn collect_bets(
        &mut self,
        betting: Vec<JoinHandle<anyhow::Result<Placed>>>,
    ) -> anyhow::Result<Vec<Bet>> {
        let mut bets = Vec::with_capacity(betting.len());
        for handle in betting {
            let placed = handle.await.context("join a bet")??;
            self.tally.retries += placed.retries;
            self.tally.add(placed.tally);
            bets.extend(placed.bet);
        }
        self.tally.bets += bets.len() as u64;
        Ok(bets)
    }

    /// Waits for the chat messages.
    async fn collect_chat(
        &mut self,
        chatting: Vec<JoinHandle<anyhow::Result<(String, Value)>>>,
    ) -> anyhow::Result<()> {
        for handle in chatting {
            let (key, chat) = handle
                .await
                .context("join a chat message")?
                .context("send a chat message")?;
            self.tally.writes += 1;
            self.tally.chats += 1;
            self.tally.wrote("chat", &key, chat);
        }
        Ok(())
    }

    /// The shooter rolls until the round is decided; the rolls and the decided session commit
    /// in one transaction.
    async fn shoot(
        &mut self,
        turn: &Turn,
        session: &mut Value,
        rng: &mut SmallRng,
    ) -> anyhow::Result<RoundResult> {
        let mut shooter = Shooter::default();
        let mut dice_log = self.ctx.store.transaction();
        let mut rolls = Vec::new();
        let result = loop {
            let dice = roll(rng);
            let sum = dice[0] + dice[1];
            let (outcome, result) = shooter.roll(sum);
            let record = json!({
                "table": self.name, "round": turn.round, "roll": rolls.len(), "dice": dice,
                "total": sum, "shooter": self.ctx.players[turn.shooter].id, "outcome": outcome,
                "rolled_at_ms": turn.at(3) + rolls.len() as i64 * 100,
            });
            let key = format!("{}-{:03}", turn.tag, rolls.len());
            dice_log.store("rolls", &key, &record)?;
            rolls.push((key, record));
            if let Some(result) = result {
                break result;
            }
        };
        session["phase"] = json!("Decided");
        session["point"] = json!(shooter.point());
        session["rolls"] = json!(
            rolls
                .iter()
                .map(|(_, record)| &record["dice"])
                .collect::<Vec<_>>()
        );
        session["updated_at_ms"] = json!(turn.at(3));
        dice_log.store("sessions", &self.name, session)?;
        self.tally.writes += dice_log.len() as u64;
        dice_log.commit().await.context("record the rolls")?;
        self.tally.rolls += rolls.len() as u64;
        for (key, record) in rolls {
            self.tally.wrote("rolls", &key, record);
        }
        Ok(result)
    }

    /// A seated player tips anyone (often a player at another table) a few chips.
    async fn tip(&mut self, turn: &Turn, rng: &mut SmallRng) -> anyhow::Result<()> {
        let players = &self.ctx.players;
        let from = *pick(rng, &self.seated);
        let to = rng.random_range(0..players.len());
        if to == from {
            return Ok(());
        }
        let (from_id, to_id) = (&players[from].id, &players[to].id);
        let amount = rng.random_range(5..=50);
        let key = format!("tip-{}", turn.tag);
        let entry = json!({
            "from": from_id, "to": to_id, "amount": amount, "reason": "tip",
            "at_ms": turn.at(6),
        });
        let parties = [from_id.as_str(), to_id.as_str()];
        let moved = transfer(&self.ctx.store, parties, amount, &key, &entry).await?;
        self.tally.retries += moved.retries;
        if moved.is_moved {
            self.tally.writes += 3;
            self.tally.tips += 1;
            self.tally.wrote("ledger", &key, entry);
        }
        Ok(())
    }

    /// The end of the night: every player's history, in one transaction.
    async fn write_histories(&mut self) -> anyhow::Result<()> {
        let mut tx = self.ctx.store.transaction();
        let mut histories = Vec::new();
        for (&player, id) in self.seated.iter().zip(&self.player_ids) {
            let bets = self.state.history.remove(&player).unwrap_or_default();
            let staked: i64 = bets.iter().filter_map(|bet| bet["stake"].as_i64()).sum();
            let paid: i64 = bets.iter().filter_map(|bet| bet["paid"].as_i64()).sum();
            let history = json!({
                "player": id, "table": self.name, "night_started_at_ms": BASE_MS,
                "bets_placed": bets.len(), "staked": staked, "paid": paid, "net": paid - staked,
                "bets": bets,
            });
            tx.store("history", id, &history)?;
            histories.push((id.clone(), history));
        }
        self.tally.writes += tx.len() as u64;
        tx.commit().await.context("write the players' histories")?;
        for (id, history) in histories {
            self.tally.wrote("history", &id, history);
        }
        Ok(())
    }
}
