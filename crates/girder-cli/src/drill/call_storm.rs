//! `call-storm`: many callers with short timeouts against one slow server.
//!
//! [`CALLERS`] tasks call the server back to back with a [`CALL_TIMEOUT`] timeout
//! (pausing [`RETRY_PAUSE`] after a `Full`);
//! the server takes [`HANDLE_COST`] per request and its `Reject` mailbox holds
//! [`CAPACITY`] requests — far more than it can serve within a caller's timeout, so
//! most admitted requests go stale in the queue. girder must drop them unhandled
//! (counted as expired) rather than do work nobody waits for, and no caller may wait
//! past its timeout.
//!
//! Bounds:
//! - no call took longer than its timeout plus [`SLACK`] plus the runtime lag: the
//!   longest a probe task waited to run after its own timer fired
//!   ([`measure::LagProbe`]) — a timed-out call returns when its timer fires *and*
//!   the runtime runs it, and on a shared machine the OS can stall the whole process;
//!   a call that overstays its timeout on its own account still shows;
//! - no request reached the handler more than [`STALE_TOLERANCE`] past its deadline,
//!   and the handler ran for exactly the handled requests;
//! - accepted = handled + expired + dropped + queued, and the callers' attempts =
//!   accepted + rejected (every request admitted or refused at once);
//! - expired requests were seen (the storm made requests go stale);
//! - the server handled no more than it could: handled <= attack time / cost + 1;
//! - answers received <= requests handled, and every call that got no answer ended
//!   `Timeout` or `Full` (an expired request is a timeout to its caller, not
//!   `NoReply`);
//! - RSS grew by at most the mailbox's bytes plus [`RSS_MARGIN`];
//! - the legitimate client kept working.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder::{Actor, Addr, CallError, Ctx, Flow, Mailbox, Node, Overflow, Reply, SpawnOptions, Weight};
use serde_json::{json, Map};

use super::attack::Counted;
use super::measure::{self, fmt_bytes, fmt_si, fmt_us, micros, Checks, LagProbe, Latencies, LegitClient};
use super::{Outcome, RssBound};

/// Concurrent callers.
pub const CALLERS: usize = 200;
/// Each call's timeout.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(20);
/// Time the server takes per request.
pub const HANDLE_COST: Duration = Duration::from_millis(5);
/// The server's mailbox bound (policy `Reject`): 128 × 5 ms = 640 ms of work queued,
/// 32 times the callers' timeout.
pub const CAPACITY: usize = 128;
/// How long a caller refused with `Full` waits before calling again (a client told
/// "busy" retries at once, but not in a hot loop).
pub const RETRY_PAUSE: Duration = Duration::from_millis(1);
/// How far past its timeout a call may return (timer granularity and scheduling),
/// beyond the runtime lag measured during the drill (see [`run`]).
pub const SLACK: Duration = Duration::from_millis(50);
/// How far past its deadline a request may reach the handler (the gap between the
/// runtime's expiry check and the handler's own clock reading).
pub const STALE_TOLERANCE: Duration = Duration::from_millis(1);
/// RSS allowance for the runtime, the callers and measurement buffers.
pub const RSS_MARGIN: u64 = 32 << 20;
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A request: the caller's own deadline travels with it so the handler can tell
/// whether it was handed a stale request.
pub struct Work {
    deadline: tokio::time::Instant,
    reply: Reply<()>,
}

impl Weight for Work {}

/// What the server's handler saw.
#[derive(Default)]
struct ServerSeen {
    runs: AtomicU64,
    stale: AtomicU64,
    max_lateness_ns: AtomicU64,
}

struct Server {
    seen: Arc<ServerSeen>,
}

impl Actor for Server {
    type Msg = Work;

    async fn handle(&mut self, w: Work, _ctx: &mut Ctx<Self>) -> Flow {
        let now = tokio::time::Instant::now();
        self.seen.runs.fetch_add(1, Ordering::Relaxed);
        if let Some(late) = now.checked_duration_since(w.deadline) {
            let ns = u64::try_from(late.as_nanos()).unwrap_or(u64::MAX);
            self.seen.max_lateness_ns.fetch_max(ns, Ordering::Relaxed);
            if late > STALE_TOLERANCE {
                self.seen.stale.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(HANDLE_COST).await;
        w.reply.send(());
        Flow::Continue
    }
}

/// One caller's results.
#[derive(Default)]
struct CallerTally {
    attempts: u64,
    ok: u64,
    timeout: u64,
    full: u64,
    no_reply: u64,
    other: u64,
    elapsed: Latencies,
}

async fn caller(server: Addr<Server>, stop: Arc<AtomicBool>) -> CallerTally {
    let mut t = CallerTally::default();
    while !stop.load(Ordering::Acquire) {
        let t0 = Instant::now();
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
        let r = server.call(|reply| Work { deadline, reply }, CALL_TIMEOUT).await;
        t.elapsed.record(t0.elapsed());
        t.attempts += 1;
        match r {
            Ok(()) => t.ok += 1,
            Err(CallError::Timeout) => t.timeout += 1,
            Err(CallError::Full) => {
                t.full += 1;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(CallError::NoReply) => t.no_reply += 1,
            Err(_) => t.other += 1,
        }
    }
    t
}

/// Runs the drill for `attack`.
pub async fn run(attack: Duration) -> Result<Outcome, String> {
    let node = Node::builder().build().map_err(|e| e.to_string())?;
    let legit = LegitClient::start(&node).map_err(|e| e.to_string())?;
    let seen = Arc::new(ServerSeen::default());
    let server = node
        .spawn_with(
            Server { seen: seen.clone() },
            SpawnOptions::new().mailbox(Mailbox::bounded(CAPACITY).overflow(Overflow::Reject)),
        )
        .map_err(|e| e.to_string())?;

    let stop = Arc::new(AtomicBool::new(false));
    let lag = LagProbe::start();
    let started = Instant::now();
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| tokio::spawn(caller(server.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(attack).await;
    let legit = legit.finish().await;
    stop.store(true, Ordering::Release);
    let mut total = CallerTally::default();
    for c in callers {
        let t = c.await.map_err(|e| e.to_string())?;
        total.attempts += t.attempts;
        total.ok += t.ok;
        total.timeout += t.timeout;
        total.full += t.full;
        total.other += t.other;
        total.elapsed.merge(&t.elapsed);
        total.no_reply += t.no_reply;
    }
    let runtime_lag = lag.finish().await;
    // What is left in the queue expires or is handled within one timeout.
    let mut checks = Checks::default();
    let settled = measure::wait_idle(&node, &[server.pid()], SETTLE_TIMEOUT).await;
    let server_time = started.elapsed();
    measure::check_settled(&mut checks, settled, SETTLE_TIMEOUT);

    let m = node
        .process_info(server.pid())
        .ok_or("the server is gone")?
        .mailbox;
    let counted = Counted::of(&m);
    let max_call = total.elapsed.max();
    checks.check(
        max_call <= CALL_TIMEOUT + SLACK + runtime_lag,
        format!(
            "longest call {} <= timeout {} + slack {} + runtime lag {}",
            fmt_us(micros(max_call)),
            fmt_us(micros(CALL_TIMEOUT)),
            fmt_us(micros(SLACK)),
            fmt_us(micros(runtime_lag))
        ),
    );
    let stale = seen.stale.load(Ordering::Relaxed);
    let runs = seen.runs.load(Ordering::Relaxed);
    checks.check(
        stale == 0,
        format!(
            "stale requests handled {stale} = 0 (max lateness {} <= {})",
            fmt_us(seen.max_lateness_ns.load(Ordering::Relaxed) / 1_000),
            fmt_us(micros(STALE_TOLERANCE))
        ),
    );
    checks.check(
        runs == m.handled,
        format!("handler runs {runs} = handled {}", m.handled),
    );
    checks.check(
        m.accepted == m.handled + m.expired + m.dropped + counted.queued,
        format!(
            "accepted {} = {}h+{}e+{}d+{}q",
            m.accepted, m.handled, m.expired, m.dropped, counted.queued
        ),
    );
    checks.check(
        total.attempts == m.accepted + m.rejected && total.full == m.rejected,
        format!(
            "calls {} = accepted {} + rejected {} (callers saw {} full)",
            total.attempts, m.accepted, m.rejected, total.full
        ),
    );
    checks.check(m.expired > 0, format!("expired {} > 0", m.expired));
    let capacity_limit = (server_time.as_nanos() / HANDLE_COST.as_nanos()) as u64 + 1;
    checks.check(
        m.handled <= capacity_limit,
        format!(
            "handled {} <= {} ms / {} ms + 1 = {capacity_limit}",
            m.handled,
            server_time.as_millis(),
            HANDLE_COST.as_millis()
        ),
    );
    checks.check(
        total.ok <= m.handled,
        format!("answers {} <= handled {}", total.ok, m.handled),
    );
    checks.check(
        total.no_reply + total.other == 0,
        format!(
            "calls ended NoReply {} + other {} = 0 (an expired request is a timeout to its caller)",
            total.no_reply, total.other
        ),
    );
    measure::check_legit(&mut checks, &legit);

    let call_p = total.elapsed.summary();
    let mut figures = Map::new();
    figures.insert("callers".into(), CALLERS.into());
    figures.insert("call_timeout_us".into(), micros(CALL_TIMEOUT).into());
    figures.insert("handle_cost_us".into(), micros(HANDLE_COST).into());
    figures.insert("mailbox_capacity".into(), CAPACITY.into());
    figures.insert("calls".into(), total.attempts.into());
    figures.insert(
        "call_results".into(),
        json!({
            "ok": total.ok,
            "timeout": total.timeout,
            "full": total.full,
            "no_reply": total.no_reply,
            "other": total.other,
        }),
    );
    figures.insert(
        "call_elapsed".into(),
        serde_json::to_value(call_p).unwrap_or_default(),
    );
    figures.insert("call_runtime_lag_max_us".into(), micros(runtime_lag).into());
    figures.insert("accepted".into(), m.accepted.into());
    figures.insert("rejected".into(), m.rejected.into());
    figures.insert("handled".into(), m.handled.into());
    figures.insert("expired".into(), m.expired.into());
    figures.insert("handled_limit".into(), capacity_limit.into());
    figures.insert("stale_handled".into(), stale.into());
    figures.insert("mailbox_wait_max_us".into(), (m.wait_max_ns / 1_000).into());
    measure::shut_down(&node, &legit, &mut figures, &mut checks).await;

    let queue_bytes = (CAPACITY * std::mem::size_of::<Work>()) as u64;
    Ok(Outcome {
        attack: format!(
            "{CALLERS} callers, {} ms timeout: {} calls",
            CALL_TIMEOUT.as_millis(),
            fmt_si(total.attempts)
        ),
        limits: format!(
            "{} expired, {} refused, {} handled",
            fmt_si(m.expired),
            fmt_si(m.rejected),
            fmt_si(m.handled)
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
