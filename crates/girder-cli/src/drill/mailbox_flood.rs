//! `mailbox-flood`: one flooder per overflow policy, each against its own slow actor.
//!
//! Each flooder sends 1 KiB messages as fast as `send().await` lets it to an actor
//! that takes 1 ms per message, for the attack duration. The actors' mailboxes hold
//! [`CAPACITY`] messages and [`MAX_BYTES`] bytes, so the byte bound is reached first.
//! Under `Kill` the actor dies with `MailboxOverflow` on overflow and a restart loop
//! (standing in for a supervisor) starts a fresh one at once.
//!
//! Bounds:
//! - every message is accounted for, exactly: per policy, the flooder's attempts =
//!   handled + rejected + dropped + expired + queued (+ sends refused because the
//!   process had exited, which its mailbox cannot count), and the flooder's errors =
//!   the mailbox's rejected count; for `Kill` the totals of every incarnation are read
//!   from the node's retired counters;
//! - the handlers ran for exactly the handled messages;
//! - each mailbox stayed within its bounds (high-water marks) and reached them;
//! - per policy: `Reject` refused, `Backpressure` refused nothing (senders waited),
//!   the drop policies dropped and refused nothing, `Kill` killed and restarted;
//! - RSS grew by at most the five mailboxes' byte bounds plus [`RSS_MARGIN`];
//! - the legitimate client kept working ([`measure::check_legit`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder::{Addr, Mailbox, Node, Overflow, SendError, SpawnOptions, Weight};
use serde_json::{json, Map, Value};
use tokio::sync::{watch, Notify};

use super::attack::{Blob, Counted, DrainSwitch, SendTally, Slow};
use super::measure::{self, fmt_bytes, fmt_si, Checks, LegitClient};
use super::{Outcome, RssBound};

/// Payload bytes per flood message.
pub const PAYLOAD: usize = 1024;
/// Normal-lane bound of each flooded mailbox, in messages.
pub const CAPACITY: usize = 1024;
/// Byte bound of each flooded mailbox.
pub const MAX_BYTES: usize = 512 * 1024;
/// Time the slow actors take per message.
pub const HANDLE_COST: Duration = Duration::from_millis(1);
/// RSS allowance beyond the mailboxes' byte bounds: the runtime's worker threads,
/// allocator arenas, restarted processes and measurement buffers.
pub const RSS_MARGIN: u64 = 32 << 20;
/// How long the drill waits for counters to settle after the attack.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

const POLICIES: [Overflow; 5] = [
    Overflow::Reject,
    Overflow::Backpressure,
    Overflow::DropNewest,
    Overflow::DropOldest,
    Overflow::Kill,
];

fn policy_name(p: Overflow) -> &'static str {
    match p {
        Overflow::Reject => "reject",
        Overflow::Backpressure => "backpressure",
        Overflow::DropNewest => "drop_newest",
        Overflow::DropOldest => "drop_oldest",
        Overflow::Kill => "kill",
        _ => "other",
    }
}

fn mailbox(policy: Overflow) -> SpawnOptions {
    SpawnOptions::new().mailbox(Mailbox::bounded(CAPACITY).max_bytes(MAX_BYTES).overflow(policy))
}

/// Sends blobs to the current incarnation until `stop`; after `Closed`, picks up the
/// restarted incarnation from `rx`.
async fn flood(mut rx: watch::Receiver<Addr<Slow>>, stop: Arc<AtomicBool>) -> SendTally {
    let mut tally = SendTally::default();
    let mut addr = rx.borrow_and_update().clone();
    while !stop.load(Ordering::Acquire) {
        let r = addr.send(Blob::new(PAYLOAD)).await;
        tally.note(&r);
        if matches!(r, Err(SendError::Closed(_))) {
            let _ = tokio::time::timeout(Duration::from_millis(5), rx.changed()).await;
            addr = rx.borrow_and_update().clone();
        }
    }
    tally
}

/// Restarts the `Kill` actor whenever it exits, until `stop` is notified. Returns the
/// last incarnation and the number of restarts.
async fn restart_loop(
    node: Node,
    mut current: Addr<Slow>,
    make: impl Fn() -> Slow,
    tx: watch::Sender<Addr<Slow>>,
    stop: Arc<Notify>,
) -> Result<(Addr<Slow>, u64), String> {
    let mut restarts = 0;
    loop {
        let exit = node.watch(current.pid());
        tokio::select! {
            biased;
            _ = stop.notified() => return Ok((current, restarts)),
            _ = exit => {
                current = node
                    .spawn_with(make(), mailbox(Overflow::Kill))
                    .map_err(|e| format!("restart failed: {e}"))?;
                restarts += 1;
                tx.send_replace(current.clone());
            }
        }
    }
}

struct Lane {
    policy: Overflow,
    addr: Addr<Slow>,
    handler_runs: Arc<AtomicU64>,
    flooder: tokio::task::JoinHandle<SendTally>,
}

/// Runs the drill for `attack`.
pub async fn run(attack: Duration) -> Result<Outcome, String> {
    let node = Node::builder().build().map_err(|e| e.to_string())?;
    let legit = LegitClient::start(&node).map_err(|e| e.to_string())?;
    let drain = DrainSwitch::default();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_restarts = Arc::new(Notify::new());
    let msg_weight = Blob::new(PAYLOAD).weight();

    let mut lanes = Vec::new();
    let mut restarter = None;
    for policy in POLICIES {
        let handler_runs = Arc::new(AtomicU64::new(0));
        let make = {
            let (drain, handler_runs) = (drain.clone(), handler_runs.clone());
            move || Slow {
                cost: HANDLE_COST,
                drain: drain.clone(),
                handled: handler_runs.clone(),
            }
        };
        let addr = node
            .spawn_with(make(), mailbox(policy))
            .map_err(|e| e.to_string())?;
        let (tx, rx) = watch::channel(addr.clone());
        let flooder = tokio::spawn(flood(rx, stop.clone()));
        if policy == Overflow::Kill {
            let task = restart_loop(node.clone(), addr.clone(), make, tx, stop_restarts.clone());
            restarter = Some(tokio::spawn(task));
        }
        lanes.push(Lane {
            policy,
            addr,
            handler_runs,
            flooder,
        });
    }

    let started = Instant::now();
    tokio::time::sleep(attack).await;
    let legit = legit.finish().await;
    let attack_secs = started.elapsed().as_secs_f64();

    // End the attack: drain the slow actors, stop the flooders, then the restarts.
    drain.drain();
    stop.store(true, Ordering::Release);
    let mut tallies = Vec::new();
    for lane in &mut lanes {
        tallies.push((&mut lane.flooder).await.map_err(|e| e.to_string())?);
    }
    stop_restarts.notify_one();
    let restarter = restarter.ok_or("no restart loop")?;
    let (last_kill, restarts) = restarter.await.map_err(|e| e.to_string())??;
    // The last incarnation goes too, so that every `Kill` incarnation's counters are
    // retired into the node's totals.
    node.kill(last_kill.pid());
    let _ = node.watch(last_kill.pid()).await;
    let incarnations = restarts + 1;

    let mut checks = Checks::default();
    let settled = settle(&node, &lanes, incarnations).await;
    measure::check_settled(&mut checks, settled, SETTLE_TIMEOUT);

    // Accounting. Every process but the `Kill` incarnations is alive and idle, so the
    // node's totals minus the live processes' counters are the incarnations' totals.
    let stats = node.stats();
    let mut live_sum = Counted::default();
    let mut live = std::collections::HashMap::new();
    for info in node.processes() {
        live_sum.add(&Counted::of(&info.mailbox));
        live.insert(info.pid, info.mailbox);
    }
    let kill_counted = Counted {
        handled: stats.handled - live_sum.handled,
        rejected: stats.rejected - live_sum.rejected,
        dropped: stats.dropped - live_sum.dropped,
        expired: stats.expired - live_sum.expired,
        queued: 0,
    };

    let mut figures = Map::new();
    let mut policies = Map::new();
    let (mut total_attempts, mut refused, mut dropped) = (0u64, 0u64, 0u64);
    for (lane, tally) in lanes.iter().zip(&tallies) {
        let name = policy_name(lane.policy);
        total_attempts += tally.attempts;
        let (counted, hwm) = if lane.policy == Overflow::Kill {
            (kill_counted, None)
        } else {
            let m = live
                .get(&lane.addr.pid())
                .ok_or_else(|| format!("{name} actor is gone"))?;
            (Counted::of(m), Some((m.len_hwm, m.bytes_hwm)))
        };
        refused += counted.rejected;
        dropped += counted.dropped;
        checks.check(
            tally.attempts == counted.total() + tally.closed,
            format!(
                "{name}: sent {} = {} + {} closed",
                tally.attempts,
                counted.sum_text(),
                tally.closed
            ),
        );
        let errors = tally.full + tally.node_budget + tally.too_large;
        checks.check(
            errors == counted.rejected,
            format!("{name}: sender errors {errors} = rejected {}", counted.rejected),
        );
        let runs = lane.handler_runs.load(Ordering::Relaxed);
        checks.check(
            runs == counted.handled,
            format!("{name}: handler runs {runs} = handled {}", counted.handled),
        );
        if let Some((len_hwm, bytes_hwm)) = hwm {
            checks.check(
                len_hwm <= CAPACITY && bytes_hwm <= MAX_BYTES,
                format!(
                    "{name}: hwm {len_hwm} msgs/{} <= {CAPACITY}/{}",
                    fmt_bytes(bytes_hwm as u64),
                    fmt_bytes(MAX_BYTES as u64)
                ),
            );
            checks.check(
                len_hwm == CAPACITY || bytes_hwm + msg_weight > MAX_BYTES,
                format!("{name}: bound reached (no room for one more message at the high-water mark)"),
            );
        }
        match lane.policy {
            Overflow::Reject => checks.check(
                counted.rejected > 0,
                format!("reject: refused {} > 0", counted.rejected),
            ),
            Overflow::Backpressure => checks.check(
                errors == 0 && counted.dropped == 0,
                format!(
                    "backpressure: refused {errors} + dropped {} = 0 (senders waited)",
                    counted.dropped
                ),
            ),
            Overflow::DropNewest | Overflow::DropOldest => checks.check(
                errors == 0 && counted.dropped > 0,
                format!("{name}: dropped {} > 0, refused {errors} = 0", counted.dropped),
            ),
            _ => {}
        }
        let mut p = Map::new();
        p.insert("sender".into(), tally.to_json());
        p.insert("mailbox".into(), counted.to_json());
        p.insert("handler_runs".into(), runs.into());
        if let Some((len_hwm, bytes_hwm)) = hwm {
            p.insert("len_hwm".into(), len_hwm.into());
            p.insert("bytes_hwm".into(), bytes_hwm.into());
        }
        policies.insert(name.into(), Value::Object(p));
    }

    // Kill: every incarnation ended by an overflow kill, except possibly the last
    // (killed by the drill); all but the last were restarted.
    let kills = stats.overflow_kills;
    checks.check(
        kills >= 1 && stats.exited == incarnations && kills + stats.exits_killed == incarnations,
        format!(
            "kill: {kills} overflow kills + {} drill kill = {incarnations} incarnations = {} exits",
            stats.exits_killed, stats.exited
        ),
    );
    checks.check(
        restarts + 1 == incarnations && restarts + 1 >= kills,
        format!("kill: {restarts} restarts for {kills} overflow kills"),
    );
    measure::check_legit(&mut checks, &legit);

    let offered = total_attempts * msg_weight as u64;
    figures.insert("policies".into(), Value::Object(policies));
    figures.insert("msg_weight_bytes".into(), msg_weight.into());
    figures.insert("mailbox_capacity".into(), CAPACITY.into());
    figures.insert("mailbox_max_bytes".into(), MAX_BYTES.into());
    figures.insert("handle_cost_us".into(), measure::micros(HANDLE_COST).into());
    figures.insert("sent".into(), total_attempts.into());
    figures.insert(
        "sent_per_sec".into(),
        json!((total_attempts as f64 / attack_secs) as u64),
    );
    figures.insert("offered_bytes".into(), offered.into());
    figures.insert("refused".into(), refused.into());
    figures.insert("dropped".into(), dropped.into());
    figures.insert("overflow_kills".into(), kills.into());
    figures.insert("restarts".into(), restarts.into());
    measure::shut_down(&node, &legit, &mut figures, &mut checks).await;

    Ok(Outcome {
        attack: format!(
            "5 flooders × 1 KiB: {} sent ({})",
            fmt_si(total_attempts),
            fmt_bytes(offered)
        ),
        limits: format!(
            "{} refused, {} dropped, {} kills",
            fmt_si(refused),
            fmt_si(dropped),
            fmt_si(kills)
        ),
        legit,
        checks,
        rss_bound: RssBound::plus_margin(
            5 * MAX_BYTES as u64,
            format!("5 mailboxes × {}", fmt_bytes(MAX_BYTES as u64)),
            RSS_MARGIN,
        ),
        figures,
    })
}

/// Waits until every `Kill` incarnation's exit is recorded and the other actors (and
/// the legitimate client's actor) are idle, so the counters no longer move.
async fn settle(node: &Node, lanes: &[Lane], incarnations: u64) -> bool {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while node.stats().exited < incarnations {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut pids: Vec<_> = node.processes().into_iter().map(|p| p.pid).collect();
    pids.extend(
        lanes
            .iter()
            .filter(|l| l.policy != Overflow::Kill)
            .map(|l| l.addr.pid()),
    );
    measure::wait_idle(node, &pids, deadline.saturating_duration_since(Instant::now())).await
}
