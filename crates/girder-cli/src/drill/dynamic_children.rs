//! `dynamic-children`: an attacker asks a `DynamicSupervisor` for one child per
//! request, far past its `max_children`.
//!
//! The attacked supervisor keeps the default `max_children` ([`CAP`], 1,024: a user
//! who configures nothing is protected). [`ATTACKERS`] tasks call `start_child` as
//! fast as they can for the whole attack, and on until together they have asked for
//! at least [`ATTACK_FACTOR`] × [`CAP`] children; every child started is an idle
//! process that never exits, so it holds its slot. Meanwhile a legitimate session
//! client uses a second dynamic supervisor of its own: every [`SESSION_PACE`] it
//! starts a session child, calls it, and terminates it.
//!
//! Bounds:
//! - the attack asked for at least [`ATTACK_FACTOR`] × [`CAP`] children;
//! - exactly [`CAP`] were started; every other request was refused with
//!   `MaxChildren { limit: CAP }` and no other error, and the node's
//!   `max_children_refusals` counted exactly those refusals;
//! - the children never exceeded the cap: the live process count, sampled every
//!   [`SAMPLE_EVERY`] on a thread of its own, stayed within the baseline plus
//!   [`CAP`] plus one session, and `count_children`, asked every [`COUNT_EVERY`],
//!   never reported more than [`CAP`] running;
//! - the session client was served: no error, `start_child` + call + terminate p99
//!   within [`SESSION_P99_BOUND`];
//! - RSS grew by at most [`PER_CHILD_BYTES`] per child of the cap plus [`RSS_MARGIN`];
//! - the legitimate client kept working.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder::supervisor::{ChildSpec, DynamicSupervisor, SupervisorError, DEFAULT_MAX_CHILDREN};
use girder::Node;
use serde_json::{json, Map};

use super::measure::{
    self, call_error_kind, fmt_bytes, fmt_count, fmt_us, micros, Checks, Echo, Latencies, LegitClient, Ping,
};
use super::{Outcome, RssBound};

/// The attacked supervisor's `max_children`: the default.
pub const CAP: usize = DEFAULT_MAX_CHILDREN;
/// The attack asks for at least this many times [`CAP`] children.
pub const ATTACK_FACTOR: u64 = 10;
/// Concurrent attacker tasks.
pub const ATTACKERS: usize = 4;
/// How often the sampler thread reads the live process count.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// How often the drill asks the attacked supervisor for `count_children`.
pub const COUNT_EVERY: Duration = Duration::from_millis(50);
/// How long the session client waits between two sessions.
pub const SESSION_PACE: Duration = Duration::from_millis(2);
/// The session client's bound: `start_child` + one call + `terminate_child`, 99th
/// percentile, while the attacked supervisor is being hammered next door.
pub const SESSION_P99_BOUND: Duration = Duration::from_millis(50);
/// Timeout of every supervisor request and call the drill makes.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// RSS allowed per child of the cap (an idle process: task, state, table entry).
pub const PER_CHILD_BYTES: u64 = 4 << 10;
/// RSS allowance for the runtime and measurement buffers.
pub const RSS_MARGIN: u64 = 16 << 20;

/// What the attackers saw, together.
#[derive(Default)]
struct AttackShared {
    requests: AtomicU64,
    started: AtomicU64,
    refused: AtomicU64,
    other_errors: AtomicU64,
    /// Set when the attack duration is over; attackers stop once they have also
    /// made the minimum number of requests.
    time_up: AtomicBool,
}

/// One attacker: `start_child` in a loop; returns the latency of its refusals.
async fn attacker(sup: DynamicSupervisor, shared: Arc<AttackShared>, min_requests: u64) -> Latencies {
    let mut refusals = Latencies::default();
    loop {
        let n = shared.requests.fetch_add(1, Ordering::Relaxed);
        if n >= min_requests && shared.time_up.load(Ordering::Acquire) {
            shared.requests.fetch_sub(1, Ordering::Relaxed);
            return refusals;
        }
        let t0 = Instant::now();
        match sup.start_child(ChildSpec::worker("child", || Echo)).await {
            Ok(_) => {
                shared.started.fetch_add(1, Ordering::Relaxed);
            }
            Err(SupervisorError::MaxChildren { limit }) if limit == CAP => {
                refusals.record(t0.elapsed());
                shared.refused.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                shared.other_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The session client: start a child on its own supervisor, call it, terminate it.
async fn session_client(
    node: Node,
    sessions: DynamicSupervisor,
    stop: Arc<AtomicBool>,
) -> (Latencies, BTreeMap<&'static str, u64>) {
    let mut lat = Latencies::default();
    let mut errors = BTreeMap::new();
    let mut tick = tokio::time::interval(SESSION_PACE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Acquire) {
        tick.tick().await;
        let t0 = Instant::now();
        let kind = match sessions.start_child(ChildSpec::worker("session", || Echo)).await {
            Err(SupervisorError::MaxChildren { .. }) => Some("max_children"),
            Err(_) => Some("start"),
            Ok(pid) => {
                let called = match node.lookup::<Echo>(pid) {
                    Some(session) => session.call(Ping, REQUEST_TIMEOUT).await.map_err(call_error_kind),
                    None => Err("gone"),
                };
                let terminated = sessions.terminate_child(pid).await;
                match (called, terminated) {
                    (Ok(()), Ok(())) => None,
                    (Err(kind), _) => Some(kind),
                    (_, Err(_)) => Some("terminate"),
                }
            }
        };
        match kind {
            None => lat.record(t0.elapsed()),
            Some(kind) => *errors.entry(kind).or_insert(0) += 1,
        }
    }
    (lat, errors)
}

/// Runs the drill for `attack`.
pub async fn run(attack: Duration) -> Result<Outcome, String> {
    let node = Node::builder().build().map_err(|e| e.to_string())?;
    let legit = LegitClient::start(&node).map_err(|e| e.to_string())?;
    let attacked = DynamicSupervisor::start(&node, DynamicSupervisor::spec().max_children(CAP))
        .await
        .map_err(|e| e.to_string())?
        .with_timeout(REQUEST_TIMEOUT);
    let sessions = DynamicSupervisor::start(&node, DynamicSupervisor::spec())
        .await
        .map_err(|e| e.to_string())?
        .with_timeout(REQUEST_TIMEOUT);
    let baseline = node.stats();

    let sampler = measure::LiveSampler::start(&node, SAMPLE_EVERY);
    let stop_sessions = Arc::new(AtomicBool::new(false));
    let session_task = tokio::spawn(session_client(
        node.clone(),
        sessions.clone(),
        stop_sessions.clone(),
    ));

    let min_requests = ATTACK_FACTOR * CAP as u64;
    let shared = Arc::new(AttackShared::default());
    let started = Instant::now();
    let attackers: Vec<_> = (0..ATTACKERS)
        .map(|_| tokio::spawn(attacker(attacked.clone(), shared.clone(), min_requests)))
        .collect();
    let mut max_active = 0;
    let mut counts_taken = 0u64;
    let mut count_errors = 0u64;
    let mut tick = tokio::time::interval(COUNT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while started.elapsed() < attack || attackers.iter().any(|a| !a.is_finished()) {
        if started.elapsed() >= attack {
            shared.time_up.store(true, Ordering::Release);
        }
        tick.tick().await;
        match attacked.count_children().await {
            Ok(c) => {
                max_active = max_active.max(c.active);
                counts_taken += 1;
            }
            Err(_) => count_errors += 1,
        }
    }
    let attack_time = started.elapsed();
    let mut refusal_lat = Latencies::default();
    for a in attackers {
        refusal_lat.merge(&a.await.map_err(|e| e.to_string())?);
    }
    stop_sessions.store(true, Ordering::Release);
    let (session_lat, session_errors) = session_task.await.map_err(|e| e.to_string())?;
    let legit = legit.finish().await;
    let (sampled, samples) = sampler.finish()?;
    let final_counts = attacked.count_children().await.map_err(|e| e.to_string())?;
    let after = node.stats();

    let requests = shared.requests.load(Ordering::Relaxed);
    let accepted = shared.started.load(Ordering::Relaxed);
    let refused = shared.refused.load(Ordering::Relaxed);
    let other = shared.other_errors.load(Ordering::Relaxed);
    let node_refusals = after.max_children_refusals - baseline.max_children_refusals;
    let cap = CAP as u64;

    let mut checks = Checks::default();
    checks.check(
        requests >= min_requests,
        format!(
            "children asked for {} >= {ATTACK_FACTOR} × cap {}",
            fmt_count(requests),
            fmt_count(cap)
        ),
    );
    checks.check(
        accepted == cap && refused + accepted == requests && other == 0,
        format!(
            "started {} = cap, refused MaxChildren {} + started = asked, other errors {other} = 0",
            fmt_count(accepted),
            fmt_count(refused)
        ),
    );
    checks.check(
        node_refusals == refused,
        format!(
            "max_children_refusals counted {} = refusals seen {}",
            fmt_count(node_refusals),
            fmt_count(refused)
        ),
    );
    let live_bound = baseline.processes + CAP + 1;
    checks.check(
        sampled <= live_bound,
        format!(
            "live max sampled {} <= baseline {} + cap {} + 1 session ({} samples)",
            fmt_count(sampled as u64),
            baseline.processes,
            fmt_count(cap),
            fmt_count(samples)
        ),
    );
    checks.check(
        max_active <= CAP && final_counts.active == CAP && count_errors == 0,
        format!(
            "count_children active max {} <= cap {} ({counts_taken} counts, {count_errors} failed; {} at the end)",
            fmt_count(max_active as u64),
            fmt_count(cap),
            fmt_count(final_counts.active as u64)
        ),
    );
    let session_summary = session_lat.summary();
    let session_failed: u64 = session_errors.values().sum();
    checks.check(
        session_failed == 0 && session_summary.count > 0,
        format!(
            "session errors {session_failed} of {} = 0",
            session_summary.count + session_failed
        ),
    );
    checks.check(
        session_summary.p99_us <= micros(SESSION_P99_BOUND),
        format!(
            "session start+call+terminate p99 {} <= {}",
            fmt_us(session_summary.p99_us),
            fmt_us(micros(SESSION_P99_BOUND))
        ),
    );
    measure::check_legit(&mut checks, &legit);

    let refusal_summary = refusal_lat.summary();
    let mut figures = Map::new();
    figures.insert("max_children".into(), CAP.into());
    figures.insert("attackers".into(), ATTACKERS.into());
    figures.insert("requests".into(), requests.into());
    figures.insert("started".into(), accepted.into());
    figures.insert("refused".into(), refused.into());
    figures.insert("other_errors".into(), other.into());
    figures.insert("max_children_refusals".into(), node_refusals.into());
    figures.insert(
        "requests_per_s".into(),
        json!(requests as f64 / attack_time.as_secs_f64().max(1e-3)),
    );
    figures.insert(
        "refusal_latency".into(),
        serde_json::to_value(refusal_summary).unwrap_or_default(),
    );
    figures.insert("sampled_max_live".into(), sampled.into());
    figures.insert("baseline_processes".into(), baseline.processes.into());
    figures.insert("max_active_children".into(), max_active.into());
    figures.insert(
        "sessions".into(),
        json!({
            "ok": session_summary.count,
            "errors": session_errors,
            "latency": session_summary,
        }),
    );
    figures.insert("attack_time_us".into(), micros(attack_time).into());
    measure::shut_down(&node, &legit, &mut figures, &mut checks).await;

    Ok(Outcome {
        attack: format!(
            "{} start_child requests, cap {}",
            fmt_count(requests),
            fmt_count(cap)
        ),
        limits: format!(
            "{} refused at {} children; sessions p99 {}",
            fmt_count(refused),
            fmt_count(max_active as u64),
            fmt_us(session_summary.p99_us)
        ),
        legit,
        checks,
        rss_bound: RssBound::plus_margin(
            cap * PER_CHILD_BYTES,
            format!("{} children × {}", fmt_count(cap), fmt_bytes(PER_CHILD_BYTES)),
            RSS_MARGIN,
        ),
        figures,
    })
}
