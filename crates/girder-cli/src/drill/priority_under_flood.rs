//! `priority-under-flood`: priority messages to an actor whose normal lane is
//! flooded full.
//!
//! [`FLOODERS`] tasks keep the target's normal lane full with `send().await` under
//! the default policy, `Backpressure` (so they also stand in line waiting for room);
//! the target takes [`HANDLE_COST`] per normal message, so a normal message waits
//! about `CAPACITY × HANDLE_COST` in the queue. Every [`PRIORITY_EVERY`] a control
//! task sends a priority message, alternating `try_send_priority` and
//! `send_priority`, and the target records each one's send→handled latency.
//!
//! Bounds:
//! - the normal lane was full when at least [`MIN_FULL_SHARE`] of the priority
//!   messages were sent (the drill's premise). Full means flooders stand in line
//!   waiting for room, or the lane holds its capacity: the target takes messages
//!   ahead in batches (see `girder::mailbox`), which `len` stops counting once
//!   handed to the handler, so a full lane's `len` dips below the capacity;
//! - no priority message was refused, and every one was handled;
//! - priority p99 <= [`PRIORITY_P99_BOUND`], and below the normal lane's mean wait;
//! - every message is accounted for (sent = handled + rejected + dropped + expired +
//!   queued);
//! - RSS grew by at most the mailbox's bytes plus [`RSS_MARGIN`];
//! - the legitimate client kept working.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use girder::{Actor, Addr, Ctx, Flow, Mailbox, MailboxStats, Node, SpawnOptions, Weight};
use serde_json::Map;

use super::attack::{Counted, DrainSwitch, SendTally};
use super::measure::{self, fmt_bytes, fmt_si, fmt_us, micros, Checks, Latencies, LegitClient};
use super::{Outcome, RssBound};

/// Flooding tasks.
pub const FLOODERS: usize = 8;
/// Normal-lane bound of the target (policy: the default, `Backpressure`).
pub const CAPACITY: usize = 1024;
/// Time the target takes per normal message.
pub const HANDLE_COST: Duration = Duration::from_millis(1);
/// Interval between two priority messages.
pub const PRIORITY_EVERY: Duration = Duration::from_millis(5);
/// Bound on the priority messages' p99 send→handled latency: at most one normal
/// handler (1 ms, on a 1 ms timer wheel) ahead of it, plus scheduling on a shared
/// 2-core machine.
pub const PRIORITY_P99_BOUND: Duration = Duration::from_millis(25);
/// Share of priority sends that must find the normal lane full.
pub const MIN_FULL_SHARE: f64 = 0.9;
/// RSS allowance for the runtime and measurement buffers.
pub const RSS_MARGIN: u64 = 32 << 20;
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The target's messages.
pub enum Msg {
    /// Flood traffic.
    Normal,
    /// A control message, stamped when its send began.
    Priority(Instant),
}

impl Weight for Msg {}

struct Target {
    drain: DrainSwitch,
    normal_runs: Arc<AtomicU64>,
    priority: Arc<Mutex<Latencies>>,
}

impl Actor for Target {
    type Msg = Msg;

    async fn handle(&mut self, msg: Msg, _ctx: &mut Ctx<Self>) -> Flow {
        match msg {
            Msg::Priority(sent) => {
                let waited = sent.elapsed();
                self.priority
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .record(waited);
            }
            Msg::Normal => {
                self.normal_runs.fetch_add(1, Ordering::Relaxed);
                if !self.drain.draining() {
                    tokio::time::sleep(HANDLE_COST).await;
                }
            }
        }
        Flow::Continue
    }
}

async fn flood(addr: Addr<Target>, stop: Arc<AtomicBool>) -> SendTally {
    let mut tally = SendTally::default();
    while !stop.load(Ordering::Acquire) {
        tally.note(&addr.send(Msg::Normal).await);
    }
    tally
}

/// What the priority sender did.
#[derive(Default)]
struct PrioritySent {
    tally: SendTally,
    lane_full: u64,
}

async fn send_priority(node: Node, addr: Addr<Target>, stop: Arc<AtomicBool>) -> PrioritySent {
    let mut sent = PrioritySent::default();
    let mut tick = tokio::time::interval(PRIORITY_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    loop {
        tick.tick().await;
        if stop.load(Ordering::Acquire) {
            return sent;
        }
        if node
            .process_info(addr.pid())
            .is_some_and(|i| lane_full(&i.mailbox))
        {
            sent.lane_full += 1;
        }
        let r = if n % 2 == 0 {
            addr.try_send_priority(Msg::Priority(Instant::now()))
        } else {
            addr.send_priority(Msg::Priority(Instant::now())).await
        };
        sent.tally.note(&r);
        n += 1;
    }
}

/// The flood's premise: senders wait for room in the normal lane, or it is at
/// capacity.
fn lane_full(m: &MailboxStats) -> bool {
    m.waiting_senders > 0 || m.len >= CAPACITY
}

/// Runs the drill for `attack`.
pub async fn run(attack: Duration) -> Result<Outcome, String> {
    let node = Node::builder().build().map_err(|e| e.to_string())?;
    let legit = LegitClient::start(&node).map_err(|e| e.to_string())?;
    let drain = DrainSwitch::default();
    let normal_runs = Arc::new(AtomicU64::new(0));
    let priority = Arc::new(Mutex::new(Latencies::default()));
    let target = node
        .spawn_with(
            Target {
                drain: drain.clone(),
                normal_runs: normal_runs.clone(),
                priority: priority.clone(),
            },
            SpawnOptions::new().mailbox(Mailbox::bounded(CAPACITY)),
        )
        .map_err(|e| e.to_string())?;

    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<_> = (0..FLOODERS)
        .map(|_| tokio::spawn(flood(target.clone(), stop.clone())))
        .collect();
    // Let the flood fill the lane before the first priority message.
    let fill_deadline = Instant::now() + Duration::from_secs(1);
    while node
        .process_info(target.pid())
        .is_some_and(|i| !lane_full(&i.mailbox))
        && Instant::now() < fill_deadline
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let stop_priority = Arc::new(AtomicBool::new(false));
    let sender = tokio::spawn(send_priority(node.clone(), target.clone(), stop_priority.clone()));
    tokio::time::sleep(attack).await;
    let legit = legit.finish().await;
    stop_priority.store(true, Ordering::Release);
    let psent = sender.await.map_err(|e| e.to_string())?;

    drain.drain();
    stop.store(true, Ordering::Release);
    let mut tally = SendTally::default();
    for f in flooders {
        tally.add(&f.await.map_err(|e| e.to_string())?);
    }
    let mut checks = Checks::default();
    let settled = measure::wait_idle(&node, &[target.pid()], SETTLE_TIMEOUT).await;
    measure::check_settled(&mut checks, settled, SETTLE_TIMEOUT);
    let m = node
        .process_info(target.pid())
        .ok_or("the target is gone")?
        .mailbox;
    let lat = priority.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let p = lat.summary();

    let sends = psent.tally.attempts;
    let full_share = if sends == 0 {
        0.0
    } else {
        psent.lane_full as f64 / sends as f64
    };
    checks.check(
        sends > 0 && full_share >= MIN_FULL_SHARE,
        format!(
            "normal lane full at {}/{sends} priority sends ({:.0}% >= {:.0}%)",
            psent.lane_full,
            full_share * 100.0,
            MIN_FULL_SHARE * 100.0
        ),
    );
    let refused = sends - psent.tally.ok;
    checks.check(
        refused == 0 && lat.count() == sends,
        format!(
            "priority refused {refused} = 0, handled {} = sent {sends}",
            lat.count()
        ),
    );
    checks.check(
        micros(PRIORITY_P99_BOUND) >= p.p99_us,
        format!(
            "priority p99 {} <= {} (max {})",
            fmt_us(p.p99_us),
            fmt_us(micros(PRIORITY_P99_BOUND)),
            fmt_us(p.max_us)
        ),
    );
    let normal_wait_us = m.wait_mean_ns / 1_000;
    checks.check(
        p.p99_us < normal_wait_us,
        format!(
            "priority p99 {} < normal lane mean wait {}",
            fmt_us(p.p99_us),
            fmt_us(normal_wait_us)
        ),
    );
    let counted = Counted::of(&m);
    let attempts = tally.attempts + sends;
    checks.check(
        attempts == counted.total() + tally.closed + psent.tally.closed,
        format!("sent {attempts} = {}", counted.sum_text()),
    );
    let runs = normal_runs.load(Ordering::Relaxed) + lat.count();
    checks.check(
        runs == m.handled,
        format!("handler runs {runs} = handled {}", m.handled),
    );
    measure::check_legit(&mut checks, &legit);

    let mut figures = Map::new();
    figures.insert("flooders".into(), FLOODERS.into());
    figures.insert("mailbox_capacity".into(), CAPACITY.into());
    figures.insert("handle_cost_us".into(), micros(HANDLE_COST).into());
    figures.insert("normal_sent".into(), tally.attempts.into());
    figures.insert("normal_sender".into(), tally.to_json());
    figures.insert("priority_sent".into(), sends.into());
    figures.insert("priority_sender".into(), psent.tally.to_json());
    figures.insert("priority_lane_full_at_send".into(), psent.lane_full.into());
    figures.insert(
        "priority_latency".into(),
        serde_json::to_value(p).unwrap_or_default(),
    );
    figures.insert("normal_wait_mean_us".into(), normal_wait_us.into());
    figures.insert("normal_wait_max_us".into(), (m.wait_max_ns / 1_000).into());
    figures.insert("mailbox".into(), counted.to_json());
    figures.insert("len_hwm".into(), m.len_hwm.into());
    measure::shut_down(&node, &legit, &mut figures, &mut checks).await;

    let queue_bytes = ((CAPACITY + Mailbox::DEFAULT_PRIORITY_CAPACITY) * std::mem::size_of::<Msg>()) as u64;
    Ok(Outcome {
        attack: format!(
            "{FLOODERS} flooders: {} normal + {} priority",
            fmt_si(tally.attempts),
            fmt_si(sends)
        ),
        limits: format!(
            "priority p99 {} vs normal wait {}",
            fmt_us(p.p99_us),
            fmt_us(normal_wait_us)
        ),
        legit,
        checks,
        rss_bound: RssBound::plus_margin(
            queue_bytes,
            format!("mailbox {}", fmt_bytes(queue_bytes)),
            RSS_MARGIN,
        ),
        figures,
    })
}
