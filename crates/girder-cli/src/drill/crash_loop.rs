//! `crash-loop`: a child that panics as soon as it starts, under supervisors.
//!
//! Two scenarios, one after the other, while the legitimate client calls on:
//!
//! 1. **Escalation, no backoff.** A root supervisor holds a `looper` supervisor that
//!    holds the `crasher`; both supervisors keep the default restart intensity
//!    ([`MAX_RESTARTS`] in [`PERIOD`], Elixir's). Once armed, every incarnation of
//!    the crasher panics on its first message, which it sends itself in `init`. The
//!    looper restarts it [`MAX_RESTARTS`] times, then gives up and exits (an
//!    escalation); the root restarts the looper [`MAX_RESTARTS`] times, each crash
//!    looping again, then gives up too. The loop stops there: nothing restarts any
//!    more for the rest of the attack.
//! 2. **Backoff.** A second supervisor has a high intensity ([`BACKOFF_MAX_RESTARTS`]
//!    in [`PERIOD`], so it never escalates) and an exponential [`Backoff`] from
//!    [`BACKOFF_INITIAL`] doubling up to [`BACKOFF_MAX`]. Its crasher loops for the
//!    whole attack; the restarts must follow the backoff schedule.
//!
//! Every crasher incarnation records its supervisor and start time.
//!
//! Bounds:
//! - escalation: every looper incarnation restarted the crasher at most
//!   [`MAX_RESTARTS`] times and the root restarted the looper at most
//!   [`MAX_RESTARTS`] times; the node counted exactly the restarts and escalations
//!   the intensity rules predict (`(R+1)·R + R` restarts and `R+2` escalations for
//!   `R` = [`MAX_RESTARTS`]); the root exited with `Shutdown` within
//!   [`ESCALATION_TIMEOUT`] of the first crash; no crasher started after that; every
//!   incarnation's panic was counted;
//! - backoff: the restarts the node counted during the attack were at least 1 and at
//!   most what the schedule allows in that time (computed from [`Backoff::delay`]),
//!   every gap between two incarnations was at least its scheduled delay, and the
//!   supervisor never escalated;
//! - CPU: the whole process used at most [`CPU_SHARE_BOUND`] of one core over the
//!   attack (user + system time from `/proc/self/stat`);
//! - RSS grew by at most [`RSS_MARGIN`] (a few processes; nothing accumulates);
//! - the legitimate client kept working.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use girder::supervisor::{Backoff, ChildSpec, Strategy, Supervisor, SupervisorSpec};
use girder::{Actor, Ctx, ExitReason, Flow, Node, Pid, Weight};
use serde_json::{json, Map};

use super::measure::{self, fmt_bytes, fmt_us, micros, Checks, LegitClient};
use super::{Outcome, RssBound};

/// Restarts a supervisor allows within [`PERIOD`] in the escalation scenario: the
/// default intensity (Elixir's 3 in 5 s).
pub const MAX_RESTARTS: u32 = 3;
/// The intensity window of both scenarios (the default, 5 s).
pub const PERIOD: Duration = Duration::from_secs(5);
/// How long the escalation may take from the first crash to the root's exit (it
/// takes milliseconds: nothing delays the restarts).
pub const ESCALATION_TIMEOUT: Duration = Duration::from_secs(2);
/// The backoff scenario's intensity: high, so that only the backoff slows it.
pub const BACKOFF_MAX_RESTARTS: u32 = 1_000;
/// The delay before the first restart of a streak.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(10);
/// The longest delay between two restarts.
pub const BACKOFF_MAX: Duration = Duration::from_millis(200);
/// Quiet time that resets the streak: longer than [`BACKOFF_MAX`], so a child that
/// crashes at once never resets it.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(5);
/// CPU the whole process (drill, legitimate client, RSS sampler) may use over the
/// attack, in cores: a quarter of one. A crash loop restarting flat out would keep
/// a core busy.
pub const CPU_SHARE_BOUND: f64 = 0.25;
/// RSS allowance: the drill holds a handful of processes and a log of starts.
pub const RSS_MARGIN: u64 = 16 << 20;
/// Clock ticks per second of `/proc/self/stat`'s times (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// The panic message of every deliberate crash (the drills' panic hook keeps these
/// quiet; any other panic still prints).
pub const DELIBERATE_PANIC: &str = "girder drill: deliberate crash";

/// Silences the panic messages of deliberate crashes ([`DELIBERATE_PANIC`]) for the
/// rest of the process; every other panic still reaches the previous hook.
pub fn quiet_deliberate_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("");
            if !msg.contains(DELIBERATE_PANIC) {
                previous(info);
            }
        }));
    });
}

/// CPU time (user + system) this process has used so far, from `/proc/self/stat`.
pub fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces): state is field 3,
    // utime field 14, stime field 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) as f64 / USER_HZ))
}

/// The number of restarts a crash loop under `backoff` can have had recorded within
/// `window` of its first crash: restart `k` (1-based) is recorded when incarnation
/// `k - 1` crashes, which is at least `delay(0) + … + delay(k - 2)` after the first.
pub fn allowed_restarts(backoff: &Backoff, window: Duration) -> u64 {
    let mut k = 1;
    let mut elapsed = Duration::ZERO;
    loop {
        elapsed += backoff.delay(k as u32 - 1);
        if elapsed > window {
            return k;
        }
        k += 1;
    }
}

/// One crasher incarnation: which supervisor started it, and when.
#[derive(Clone, Copy)]
struct Start {
    parent: Option<Pid>,
    at: Instant,
}

/// Shared by every crasher of one scenario.
#[derive(Default)]
struct CrashLog {
    armed: AtomicBool,
    starts: Mutex<Vec<Start>>,
}

impl CrashLog {
    fn starts(&self) -> Vec<Start> {
        self.starts.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// A child that panics on its first message; once armed, it sends itself that
/// message in `init`.
struct Crasher {
    log: Arc<CrashLog>,
}

/// The crasher's only message: crash.
struct Crash;

impl Weight for Crash {}

impl Actor for Crasher {
    type Msg = Crash;

    async fn init(&mut self, ctx: &mut Ctx<Self>) -> Result<(), ExitReason> {
        if let Ok(mut s) = self.log.starts.lock() {
            s.push(Start {
                parent: ctx.parent(),
                at: Instant::now(),
            });
        }
        if self.log.armed.load(Ordering::Acquire) {
            let _ = ctx.addr().try_send(Crash);
        }
        Ok(())
    }

    async fn handle(&mut self, _: Crash, _ctx: &mut Ctx<Self>) -> Flow {
        panic!("{DELIBERATE_PANIC}");
    }
}

fn crasher_spec(id: &str, log: &Arc<CrashLog>) -> ChildSpec {
    let log = log.clone();
    ChildSpec::worker(id, move || Crasher { log: log.clone() }).name(id)
}

/// Arms the scenario and crashes its current crasher.
fn trigger(node: &Node, name: &str, log: &CrashLog) -> Result<(), String> {
    log.armed.store(true, Ordering::Release);
    let crasher = node
        .whereis_addr::<Crasher>(name)
        .ok_or_else(|| format!("no `{name}` registered"))?;
    crasher.try_send(Crash).map_err(|e| e.to_string())
}

/// Runs the drill for `attack`.
pub async fn run(attack: Duration) -> Result<Outcome, String> {
    quiet_deliberate_panics();
    let node = Node::builder().build().map_err(|e| e.to_string())?;
    let legit = LegitClient::start(&node).map_err(|e| e.to_string())?;

    // Scenario 1: a crash loop two supervisors deep, default intensity, no backoff.
    let esc_log = Arc::new(CrashLog::default());
    let looper = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(MAX_RESTARTS, PERIOD)
        .child(crasher_spec("crasher", &esc_log));
    let root = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne)
            .intensity(MAX_RESTARTS, PERIOD)
            .child(ChildSpec::supervisor("looper", looper)),
    )
    .await
    .map_err(|e| e.to_string())?;
    let root_exit = node.watch(root.pid());
    let before = node.stats();
    let cpu_before = process_cpu_time().ok_or("no CPU times in /proc/self/stat")?;
    let started = Instant::now();
    trigger(&node, "crasher", &esc_log)?;
    let root_reason = tokio::time::timeout(ESCALATION_TIMEOUT, root_exit).await.ok();
    let escalation_time = started.elapsed();
    let esc_starts_at_exit = esc_log.starts().len();
    let after_escalation = node.stats();

    // Scenario 2: the same crasher under a backoff, for the rest of the attack.
    let backoff = Backoff {
        initial: BACKOFF_INITIAL,
        max: BACKOFF_MAX,
        reset_after: BACKOFF_RESET_AFTER,
    };
    let bo_log = Arc::new(CrashLog::default());
    let bo_sup = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne)
            .intensity(BACKOFF_MAX_RESTARTS, PERIOD)
            .backoff(backoff)
            .child(crasher_spec("crasher-backoff", &bo_log)),
    )
    .await
    .map_err(|e| e.to_string())?;
    let bo_before = node.stats();
    let bo_started = Instant::now();
    trigger(&node, "crasher-backoff", &bo_log)?;
    tokio::time::sleep(attack.saturating_sub(started.elapsed())).await;
    let bo_alive = node.is_alive(bo_sup.pid());
    node.kill(bo_sup.pid());
    let bo_window = bo_started.elapsed();
    let _ = node.watch(bo_sup.pid()).await;
    let bo_after = node.stats();
    let attack_time = started.elapsed();
    let cpu = process_cpu_time()
        .ok_or("no CPU times in /proc/self/stat")?
        .saturating_sub(cpu_before);
    let legit = legit.finish().await;

    let mut checks = Checks::default();
    let r = u64::from(MAX_RESTARTS);

    // Escalation.
    let esc_starts = esc_log.starts();
    let mut per_looper: BTreeMap<Option<Pid>, u64> = BTreeMap::new();
    for s in &esc_starts {
        *per_looper.entry(s.parent).or_insert(0) += 1;
    }
    let max_crasher_restarts = per_looper.values().map(|n| n - 1).max().unwrap_or(0);
    let looper_restarts = per_looper.len() as u64 - 1;
    checks.check(
        max_crasher_restarts <= r && looper_restarts <= r,
        format!(
            "restarts before escalating: crasher {max_crasher_restarts} per looper, looper \
             {looper_restarts} <= intensity {MAX_RESTARTS} in {} s",
            PERIOD.as_secs()
        ),
    );
    let esc_restarts = after_escalation.restarts - before.restarts;
    let escalations = after_escalation.escalations - before.escalations;
    let (want_restarts, want_escalations) = ((r + 1) * r + r, r + 2);
    checks.check(
        esc_restarts == want_restarts && escalations == want_escalations,
        format!(
            "counted {esc_restarts} restarts, {escalations} escalations = {want_restarts}, \
             {want_escalations} by the intensity rules"
        ),
    );
    let root_shutdown = root_reason == Some(ExitReason::Shutdown);
    checks.check(
        root_shutdown,
        format!(
            "root escalated (exit {}) in {} <= {}",
            root_reason.as_ref().map_or("none".to_string(), |r| r.to_string()),
            fmt_us(micros(escalation_time)),
            fmt_us(micros(ESCALATION_TIMEOUT))
        ),
    );
    checks.check(
        esc_starts.len() == esc_starts_at_exit,
        format!(
            "crasher starts after the escalation {} = 0",
            esc_starts.len() - esc_starts_at_exit
        ),
    );
    let esc_panics = after_escalation.panics - before.panics;
    checks.check(
        esc_panics == esc_starts.len() as u64,
        format!(
            "panics counted {esc_panics} = crasher incarnations {}",
            esc_starts.len()
        ),
    );

    // Backoff.
    let bo_starts = bo_log.starts();
    let bo_restarts = bo_after.restarts - bo_before.restarts;
    let allowed = allowed_restarts(&backoff, bo_window);
    checks.check(
        (1..=allowed).contains(&bo_restarts),
        format!(
            "backoff restarts 1 <= {bo_restarts} <= {allowed} the schedule allows in {}",
            fmt_us(micros(bo_window))
        ),
    );
    let mut short_gaps = 0;
    let mut max_overshoot = Duration::ZERO;
    for (k, w) in bo_starts.windows(2).enumerate() {
        let gap = w[1].at.duration_since(w[0].at);
        let delay = backoff.delay(k as u32);
        if gap < delay {
            short_gaps += 1;
        } else if k > 0 {
            max_overshoot = max_overshoot.max(gap - delay);
        }
    }
    checks.check(
        short_gaps == 0,
        format!(
            "restart gaps shorter than their backoff delay {short_gaps} of {} = 0",
            bo_starts.len().saturating_sub(1)
        ),
    );
    let bo_escalations = bo_after.escalations - bo_before.escalations;
    checks.check(
        bo_escalations == 0 && bo_alive,
        format!("backoff supervisor escalations {bo_escalations} = 0 (alive to the end: {bo_alive})"),
    );

    // CPU.
    let cpu_share = cpu.as_secs_f64() / attack_time.as_secs_f64().max(1e-3);
    checks.check(
        cpu_share <= CPU_SHARE_BOUND,
        format!(
            "CPU {} over {} = {:.3} cores <= {CPU_SHARE_BOUND}",
            fmt_us(micros(cpu)),
            fmt_us(micros(attack_time)),
            cpu_share
        ),
    );
    measure::check_legit(&mut checks, &legit);

    let per_s = |n: u64, d: Duration| n as f64 / d.as_secs_f64().max(1e-3);
    let mut figures = Map::new();
    figures.insert(
        "escalation".into(),
        json!({
            "max_restarts": MAX_RESTARTS,
            "period_ms": PERIOD.as_millis() as u64,
            "crasher_incarnations": esc_starts.len(),
            "looper_incarnations": per_looper.len(),
            "restarts": esc_restarts,
            "escalations": escalations,
            "panics": esc_panics,
            "root_exit": root_reason.map(|r| r.to_string()),
            "escalation_time_us": micros(escalation_time),
        }),
    );
    figures.insert(
        "backoff".into(),
        json!({
            "initial_ms": BACKOFF_INITIAL.as_millis() as u64,
            "max_ms": BACKOFF_MAX.as_millis() as u64,
            "max_restarts": BACKOFF_MAX_RESTARTS,
            "window_us": micros(bo_window),
            "restarts": bo_restarts,
            "allowed_by_schedule": allowed,
            "restarts_per_s": per_s(bo_restarts, bo_window),
            "incarnations": bo_starts.len(),
            "short_gaps": short_gaps,
            "max_gap_overshoot_us": micros(max_overshoot),
            "escalations": bo_escalations,
        }),
    );
    figures.insert("cpu_time_us".into(), micros(cpu).into());
    figures.insert("cpu_cores".into(), json!(cpu_share));
    figures.insert(
        "restarts_per_s".into(),
        json!(per_s(bo_after.restarts - before.restarts, attack_time)),
    );
    measure::shut_down(&node, &legit, &mut figures, &mut checks).await;

    Ok(Outcome {
        attack: format!(
            "crash loop: {} + {} panicking starts",
            esc_starts.len(),
            bo_starts.len()
        ),
        limits: format!(
            "escalated after {esc_restarts} restarts; backoff {bo_restarts} <= {allowed}; {:.2} cores",
            cpu_share
        ),
        legit,
        checks,
        rss_bound: RssBound {
            bytes: RSS_MARGIN,
            why: format!("{} margin (a few processes)", fmt_bytes(RSS_MARGIN)),
        },
        figures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_restarts_follows_the_schedule() {
        let b = Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(40),
            reset_after: Duration::from_secs(5),
        };
        // Restarts recorded at 0, 10, 30, 70, 110, 150 ms after the first crash.
        assert_eq!(allowed_restarts(&b, Duration::ZERO), 1);
        assert_eq!(allowed_restarts(&b, Duration::from_millis(9)), 1);
        assert_eq!(allowed_restarts(&b, Duration::from_millis(10)), 2);
        assert_eq!(allowed_restarts(&b, Duration::from_millis(69)), 3);
        assert_eq!(allowed_restarts(&b, Duration::from_millis(150)), 6);
    }
}
