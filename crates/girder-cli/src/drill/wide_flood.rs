//! `wide-flood`: thousands of slow actors flooded at once, on a node whose mailbox
//! byte budget is far smaller than the sum of their mailboxes' byte bounds.
//!
//! [`ACTORS`] actors, each with a `Reject` mailbox of [`MAX_BYTES`], take
//! [`HANDLE_COST`] per message; [`FLOODERS`] tasks send 512-byte messages round-robin
//! over their share of the actors as fast as they can. Each mailbox alone would
//! admit the flood; together they would hold `ACTORS × MAX_BYTES` — the node budget
//! ([`BUDGET`]) is what must hold.
//!
//! Bounds:
//! - the budget exceeds no mailbox bound but is below their sum (the drill's premise);
//! - `node.stats().mailbox_bytes`, sampled every [`SAMPLE_EVERY`] on a thread of its
//!   own, never exceeds the budget, and reached it (no room for one more message);
//! - budget refusals were counted, exactly: the node's `budget_refusals` = the
//!   flooders' `NodeBudget` errors (+ the legitimate client's, if any);
//! - every message is accounted for: attempts = handled + rejected + dropped +
//!   expired + queued over the flooded actors;
//! - RSS grew by at most the budget, plus [`PER_ACTOR_BYTES`] per actor, plus
//!   [`RSS_MARGIN`];
//! - the legitimate client kept working.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder::{Addr, Mailbox, Node, Overflow, SpawnOptions, Weight};
use serde_json::{json, Map};

use super::attack::{Blob, Counted, DrainSwitch, SendTally, Slow};
use super::measure::{self, fmt_bytes, fmt_count, fmt_si, Checks, LegitClient};
use super::{Outcome, RssBound};

/// Flooded actors.
pub const ACTORS: usize = 2_000;
/// Flooding tasks (each takes `ACTORS / FLOODERS` actors round-robin).
pub const FLOODERS: usize = 4;
/// Payload bytes per flood message.
pub const PAYLOAD: usize = 512;
/// Normal-lane bound of each flooded mailbox.
pub const CAPACITY: usize = 256;
/// Byte bound of each flooded mailbox.
pub const MAX_BYTES: usize = 64 * 1024;
/// The node's mailbox byte budget: a sixteenth of the 2,000 mailboxes' 125 MiB.
pub const BUDGET: usize = 8 << 20;
/// Time the slow actors take per message (together they drain 20,000 messages/s).
pub const HANDLE_COST: Duration = Duration::from_millis(100);
/// How often the budget sampler reads `node.stats()`.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(1);
/// RSS allowed per idle actor (process, task, mailbox bookkeeping).
pub const PER_ACTOR_BYTES: u64 = 4 << 10;
/// RSS allowance for the runtime, allocator arenas and measurement buffers.
pub const RSS_MARGIN: u64 = 32 << 20;
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

async fn flood(addrs: Vec<Addr<Slow>>, stop: Arc<AtomicBool>) -> SendTally {
    let mut tally = SendTally::default();
    'outer: loop {
        for a in &addrs {
            if stop.load(Ordering::Acquire) {
                break 'outer;
            }
            tally.note(&a.send(Blob::new(PAYLOAD)).await);
        }
    }
    tally
}

/// What the budget sampler saw.
struct BudgetSamples {
    max_bytes: usize,
    samples: u64,
    over_budget: u64,
}

fn sample_budget(node: Node, stop: Arc<AtomicBool>) -> BudgetSamples {
    let mut s = BudgetSamples {
        max_bytes: 0,
        samples: 0,
        over_budget: 0,
    };
    while !stop.load(Ordering::Acquire) {
        let st = node.stats();
        s.max_bytes = s.max_bytes.max(st.mailbox_bytes);
        s.samples += 1;
        if st.mailbox_bytes > st.mailbox_budget_bytes {
            s.over_budget += 1;
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
    s
}

/// Runs the drill for `attack`.
pub async fn run(attack: Duration) -> Result<Outcome, String> {
    let node = Node::builder()
        .mailbox_budget_bytes(BUDGET)
        .build()
        .map_err(|e| e.to_string())?;
    let legit = LegitClient::start(&node).map_err(|e| e.to_string())?;
    let drain = DrainSwitch::default();
    let handler_runs = Arc::new(AtomicU64::new(0));
    let opts = SpawnOptions::new().mailbox(
        Mailbox::bounded(CAPACITY)
            .max_bytes(MAX_BYTES)
            .overflow(Overflow::Reject),
    );
    let mut addrs = Vec::with_capacity(ACTORS);
    for _ in 0..ACTORS {
        let actor = Slow {
            cost: HANDLE_COST,
            drain: drain.clone(),
            handled: handler_runs.clone(),
        };
        addrs.push(node.spawn_with(actor, opts.clone()).map_err(|e| e.to_string())?);
    }
    let before = node.stats();

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (node, stop) = (node.clone(), stop.clone());
        std::thread::spawn(move || sample_budget(node, stop))
    };
    let started = Instant::now();
    let flooders: Vec<_> = addrs
        .chunks(ACTORS.div_ceil(FLOODERS))
        .map(|share| tokio::spawn(flood(share.to_vec(), stop.clone())))
        .collect();
    tokio::time::sleep(attack).await;
    let legit = legit.finish().await;
    let attack_secs = started.elapsed().as_secs_f64();

    drain.drain();
    stop.store(true, Ordering::Release);
    let mut tally = SendTally::default();
    for f in flooders {
        tally.add(&f.await.map_err(|e| e.to_string())?);
    }
    let samples = sampler.join().map_err(|_| "budget sampler panicked")?;

    let mut checks = Checks::default();
    let pids: Vec<_> = addrs.iter().map(Addr::pid).collect();
    let settled = measure::wait_idle(&node, &pids, SETTLE_TIMEOUT).await;
    measure::check_settled(&mut checks, settled, SETTLE_TIMEOUT);

    let sum_max_bytes = (ACTORS * MAX_BYTES) as u64;
    checks.check(
        MAX_BYTES < BUDGET && (BUDGET as u64) < sum_max_bytes,
        format!(
            "premise: one mailbox {} < budget {} < all mailboxes {}",
            fmt_bytes(MAX_BYTES as u64),
            fmt_bytes(BUDGET as u64),
            fmt_bytes(sum_max_bytes)
        ),
    );
    let msg_weight = Blob::new(PAYLOAD).weight();
    checks.check(
        samples.over_budget == 0 && samples.max_bytes <= BUDGET,
        format!(
            "sampled mailbox bytes max {} <= budget {} ({} samples, {} over)",
            fmt_bytes(samples.max_bytes as u64),
            fmt_bytes(BUDGET as u64),
            fmt_count(samples.samples),
            samples.over_budget
        ),
    );
    checks.check(
        samples.max_bytes + msg_weight > BUDGET,
        format!(
            "budget reached: max {} + one message > {}",
            fmt_bytes(samples.max_bytes as u64),
            fmt_bytes(BUDGET as u64)
        ),
    );

    let after = node.stats();
    let refusals = after.budget_refusals - before.budget_refusals;
    let legit_budget = legit.error_kinds.get("node_budget").copied().unwrap_or(0);
    checks.check(
        refusals > 0 && refusals == tally.node_budget + legit_budget,
        format!(
            "budget refusals {} = flooders' {} + legit's {legit_budget}",
            refusals, tally.node_budget
        ),
    );

    let mut counted = Counted::default();
    let mut len_hwm = 0;
    let mut bytes_hwm = 0;
    for &pid in &pids {
        let info = node.process_info(pid).ok_or("a flooded actor is gone")?;
        counted.add(&Counted::of(&info.mailbox));
        len_hwm = len_hwm.max(info.mailbox.len_hwm);
        bytes_hwm = bytes_hwm.max(info.mailbox.bytes_hwm);
    }
    checks.check(
        tally.attempts == counted.total() + tally.closed,
        format!(
            "sent {} = {} + {} closed",
            tally.attempts,
            counted.sum_text(),
            tally.closed
        ),
    );
    let runs = handler_runs.load(Ordering::Relaxed);
    checks.check(
        runs == counted.handled,
        format!("handler runs {runs} = handled {}", counted.handled),
    );
    measure::check_legit(&mut checks, &legit);

    let mut figures = Map::new();
    figures.insert("actors".into(), ACTORS.into());
    figures.insert("flooders".into(), FLOODERS.into());
    figures.insert("msg_weight_bytes".into(), msg_weight.into());
    figures.insert("mailbox_capacity".into(), CAPACITY.into());
    figures.insert("mailbox_max_bytes".into(), MAX_BYTES.into());
    figures.insert("sum_mailbox_max_bytes".into(), sum_max_bytes.into());
    figures.insert("mailbox_budget_bytes".into(), BUDGET.into());
    figures.insert("sampled_max_mailbox_bytes".into(), samples.max_bytes.into());
    figures.insert("budget_samples".into(), samples.samples.into());
    figures.insert("budget_refusals".into(), refusals.into());
    figures.insert("sent".into(), tally.attempts.into());
    figures.insert(
        "sent_per_sec".into(),
        json!((tally.attempts as f64 / attack_secs) as u64),
    );
    figures.insert("sender".into(), tally.to_json());
    figures.insert("mailbox".into(), counted.to_json());
    figures.insert("max_len_hwm".into(), len_hwm.into());
    figures.insert("max_bytes_hwm".into(), bytes_hwm.into());
    measure::shut_down(&node, &legit, &mut figures, &mut checks).await;

    Ok(Outcome {
        attack: format!(
            "{FLOODERS} flooders × {} actors: {} sent",
            fmt_count(ACTORS as u64),
            fmt_si(tally.attempts)
        ),
        limits: format!(
            "budget max {} of {}, {} refused",
            fmt_bytes(samples.max_bytes as u64),
            fmt_bytes(BUDGET as u64),
            fmt_si(refusals)
        ),
        legit,
        checks,
        rss_bound: RssBound::plus_margin(
            BUDGET as u64 + ACTORS as u64 * PER_ACTOR_BYTES,
            format!(
                "budget {} + {ACTORS} actors × {}",
                fmt_bytes(BUDGET as u64),
                fmt_bytes(PER_ACTOR_BYTES)
            ),
            RSS_MARGIN,
        ),
        figures,
    })
}
