//! `slow-handler`: handlers that block for seconds, and the fix.
//!
//! Two processes do [`SLOW_FOR`] of work inside their handler: one sleeps
//! (`tokio::time::sleep` inside `handle`: its mailbox waits, the runtime does not),
//! one burns CPU in a busy loop (it also holds a runtime worker). A process inside a
//! handler handles nothing else — the BEAM's `long_schedule` problem. girder's
//! watchdog ([`girder_watch::Watchdog`], budget [`BUDGET`], scanning every [`SCAN`])
//! must report each slow handler once, naming the process, while a legitimate client
//! keeps calling another process. Then the same work runs offloaded — the sleep as a
//! [`TaskSupervisor`] task, the CPU burn as a supervised task awaiting
//! `spawn_blocking` — and the watchdog must report nothing, while the offloading
//! processes keep answering calls at once.
//!
//! Rounds: inline rounds for the first half of the attack (at least one), then
//! offloaded rounds for the rest (at least one); each round takes about
//! [`SLOW_FOR`].
//!
//! Bounds:
//! - every inline slow handler reported exactly once, naming its process and actor
//!   type, no sooner than [`BUDGET`] after its message was sent and no later than
//!   [`BUDGET`] + 2 × [`SCAN`] + [`REPORT_SLACK`] + the runtime lag
//!   ([`measure::LagProbe`]);
//! - no report for the offloading processes, and every offloaded piece of work done;
//! - calls to the offloading processes during their work answered within
//!   [`OFFLOADED_CALL_BOUND`] + the runtime lag;
//! - the legitimate client kept working (no errors, p99 within
//!   [`measure::LEGIT_P99_BOUND`]);
//! - RSS grew by at most [`RSS_MARGIN`] (nothing queues in this drill).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use girder::supervisor::TaskSupervisor;
use girder::{Actor, Addr, Ctx, Flow, Node, Reply, SpawnOptions, Weight};
use girder_watch::{SlowHandler, Watchdog, WatchdogConfig};
use serde_json::Map;

use super::measure::{self, fmt_us, micros, Checks, LagProbe, Latencies, LegitClient};
use super::{Outcome, RssBound};

/// The watchdog's budget: a handler running longer is reported.
pub const BUDGET: Duration = Duration::from_millis(250);
/// How often the watchdog looks.
pub const SCAN: Duration = Duration::from_millis(50);
/// The work each slow handler does.
pub const SLOW_FOR: Duration = Duration::from_millis(1000);
/// Allowance past budget + two scans for a report on a loaded machine (beyond the
/// runtime lag measured during the drill).
pub const REPORT_SLACK: Duration = Duration::from_millis(250);
/// How fast an offloading process must answer a call while its work runs.
pub const OFFLOADED_CALL_BOUND: Duration = Duration::from_millis(100);
/// RSS allowance: the runtime, a few tasks and the measurement buffers.
pub const RSS_MARGIN: u64 = 32 << 20;

/// What the drill's processes are asked to do.
pub enum Work {
    /// Sleep this long.
    Sleep(Duration),
    /// Burn CPU this long.
    Burn(Duration),
    /// Answer at once.
    Ping(Reply<()>),
}

impl Weight for Work {}

/// Busy-loops for `d` (a CPU-bound computation that never yields).
fn burn(d: Duration) -> u64 {
    let t0 = Instant::now();
    let mut x = 0u64;
    while t0.elapsed() < d {
        for _ in 0..1000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    x
}

/// Does the work inside its handler: the mistake.
pub struct Inline;

impl Actor for Inline {
    type Msg = Work;
    async fn handle(&mut self, w: Work, _ctx: &mut Ctx<Self>) -> Flow {
        match w {
            Work::Sleep(d) => tokio::time::sleep(d).await,
            Work::Burn(d) => {
                burn(d);
            }
            Work::Ping(r) => r.send(()),
        }
        Flow::Continue
    }
}

/// Offloads the work and returns at once: the fix.
pub struct Offloaded {
    tasks: TaskSupervisor,
    done: Arc<AtomicU64>,
}

impl Actor for Offloaded {
    type Msg = Work;
    async fn handle(&mut self, w: Work, _ctx: &mut Ctx<Self>) -> Flow {
        let done = self.done.clone();
        let started = match w {
            Work::Sleep(d) => self
                .tasks
                .start_child(async move {
                    tokio::time::sleep(d).await;
                    done.fetch_add(1, Ordering::Relaxed);
                })
                .await
                .is_ok(),
            Work::Burn(d) => self
                .tasks
                .start_child(async move {
                    // CPU-bound work belongs on the blocking pool, not on a worker.
                    if tokio::task::spawn_blocking(move || burn(d)).await.is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .await
                .is_ok(),
            Work::Ping(r) => {
                r.send(());
                true
            }
        };
        if !started {
            tracing::warn!("slow-handler drill: could not start an offloaded task");
        }
        Flow::Continue
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Sends one round of work to `sleeper` and `burner`; the send time (Unix ms).
fn send_round<A: Actor<Msg = Work>>(sleeper: &Addr<A>, burner: &Addr<A>) -> Result<u64, String> {
    let at = unix_ms();
    sleeper
        .try_send(Work::Sleep(SLOW_FOR))
        .map_err(|e| e.to_string())?;
    burner.try_send(Work::Burn(SLOW_FOR)).map_err(|e| e.to_string())?;
    Ok(at)
}

/// Calls `who` every 20 ms until `until` is true; latencies and errors.
async fn ping_while(who: &[Addr<Offloaded>], until: impl Fn() -> bool, limit: Duration) -> (Latencies, u64) {
    let mut lat = Latencies::default();
    let mut errors = 0;
    let t0 = Instant::now();
    while !until() && t0.elapsed() < limit {
        for a in who {
            let t = Instant::now();
            match a.call(Work::Ping, Duration::from_secs(1)).await {
                Ok(()) => lat.record(t.elapsed()),
                Err(_) => errors += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (lat, errors)
}

/// Runs the drill for `attack`.
pub async fn run(attack: Duration) -> Result<Outcome, String> {
    let node = Node::builder().build().map_err(|e| e.to_string())?;
    let legit = LegitClient::start(&node).map_err(|e| e.to_string())?;
    let watchdog = Arc::new(Watchdog::new(WatchdogConfig {
        enabled: true,
        budget_ms: micros(BUDGET) / 1000,
        scan_every_ms: micros(SCAN) / 1000,
        reports_kept: 1000,
    }));
    let scanner = watchdog.spawn(node.clone());
    let lag = LagProbe::start();
    let spawn = |name: &str| SpawnOptions::new().name(name.to_owned());
    let sleeper = node
        .spawn_with(Inline, spawn("sleeper-inline"))
        .map_err(|e| e.to_string())?;
    let burner = node
        .spawn_with(Inline, spawn("burner-inline"))
        .map_err(|e| e.to_string())?;
    let tasks = TaskSupervisor::start(&node, TaskSupervisor::spec())
        .await
        .map_err(|e| e.to_string())?;
    let done = Arc::new(AtomicU64::new(0));
    let offloaded = |name: &str| {
        node.spawn_with(
            Offloaded {
                tasks: tasks.clone(),
                done: done.clone(),
            },
            spawn(name),
        )
        .map_err(|e| e.to_string())
    };
    let off_sleeper = offloaded("sleeper-offloaded")?;
    let off_burner = offloaded("burner-offloaded")?;

    let started = Instant::now();
    let round_wait = SLOW_FOR * 3;
    // Inline rounds: the first half of the attack, at least one.
    let mut inline_sent = Vec::new();
    loop {
        inline_sent.push(send_round(&sleeper, &burner)?);
        if !measure::wait_idle(&node, &[sleeper.pid(), burner.pid()], round_wait).await {
            return Err("an inline slow handler did not finish".into());
        }
        // One more scan, so the watchdog sees the handlers return.
        tokio::time::sleep(SCAN * 2).await;
        if started.elapsed() >= attack / 2 {
            break;
        }
    }
    // Offloaded rounds: the rest of the attack, at least one.
    let mut off_rounds = 0u64;
    let mut off_ping = Latencies::default();
    let mut off_ping_errors = 0;
    loop {
        send_round(&off_sleeper, &off_burner)?;
        off_rounds += 1;
        let expect = 2 * off_rounds;
        let d = done.clone();
        let (lat, errors) = ping_while(
            &[off_sleeper.clone(), off_burner.clone()],
            move || d.load(Ordering::Relaxed) >= expect,
            round_wait,
        )
        .await;
        off_ping.merge(&lat);
        off_ping_errors += errors;
        if started.elapsed() >= attack {
            break;
        }
    }
    tokio::time::sleep(SCAN * 2).await;
    let legit = legit.finish().await;
    let runtime_lag = lag.finish().await;
    scanner.abort();

    let reports = watchdog.reports();
    let of = |name: &str| -> Vec<&SlowHandler> {
        reports
            .iter()
            .filter(|r| r.name.as_deref() == Some(name))
            .collect()
    };
    let inline_rounds = inline_sent.len() as u64;
    let mut checks = Checks::default();
    let (sl, bu) = (of("sleeper-inline"), of("burner-inline"));
    checks.check(
        sl.len() as u64 == inline_rounds && bu.len() as u64 == inline_rounds,
        format!(
            "slow handlers reported once each: sleeping {} and burning {} of {inline_rounds} rounds",
            sl.len(),
            bu.len()
        ),
    );
    let typed = sl.iter().chain(&bu).all(|r| r.actor_type.ends_with("Inline"));
    checks.check(
        typed,
        "each report names its process (pid, name, actor type Inline)",
    );
    // Delay from the round's send to its report: the k-th report of a process
    // belongs to the k-th round (reports are most recent first).
    let mut delays = Vec::new();
    for list in [&sl, &bu] {
        for (k, r) in list.iter().rev().enumerate() {
            if let Some(&sent) = inline_sent.get(k) {
                delays.push(r.reported_at_ms.saturating_sub(sent));
            }
        }
    }
    let max_delay = Duration::from_millis(delays.iter().copied().max().unwrap_or(u64::MAX));
    let min_running = sl.iter().chain(&bu).map(|r| r.running_ms).min().unwrap_or(0);
    let report_bound = BUDGET + SCAN * 2 + REPORT_SLACK + runtime_lag;
    checks.check(
        !delays.is_empty() && max_delay <= report_bound,
        format!(
            "latest report {} ms after the work started <= budget {} + 2 x scan {} + slack {} + runtime lag {} ms",
            max_delay.as_millis(),
            BUDGET.as_millis(),
            SCAN.as_millis(),
            REPORT_SLACK.as_millis(),
            runtime_lag.as_millis()
        ),
    );
    checks.check(
        min_running >= micros(BUDGET) / 1000,
        format!(
            "no report before the budget: shortest running {min_running} ms >= {} ms",
            BUDGET.as_millis()
        ),
    );
    let off_reports = of("sleeper-offloaded").len() + of("burner-offloaded").len();
    let done_n = done.load(Ordering::Relaxed);
    checks.check(
        off_reports == 0 && done_n == 2 * off_rounds,
        format!("offloaded: {off_reports} reports = 0, work done {done_n} = 2 x {off_rounds} rounds"),
    );
    let off_max = off_ping.max();
    checks.check(
        off_ping.count() > 0 && off_ping_errors == 0 && off_max <= OFFLOADED_CALL_BOUND + runtime_lag,
        format!(
            "offloading processes answered {} calls during their work, {off_ping_errors} errors, longest {} <= {} + runtime lag {}",
            off_ping.count(),
            fmt_us(micros(off_max)),
            fmt_us(micros(OFFLOADED_CALL_BOUND)),
            fmt_us(micros(runtime_lag))
        ),
    );
    measure::check_legit(&mut checks, &legit);

    let mut figures = Map::new();
    figures.insert("budget_ms".into(), (BUDGET.as_millis() as u64).into());
    figures.insert("scan_ms".into(), (SCAN.as_millis() as u64).into());
    figures.insert("slow_for_ms".into(), (SLOW_FOR.as_millis() as u64).into());
    figures.insert("inline_rounds".into(), inline_rounds.into());
    figures.insert("offloaded_rounds".into(), off_rounds.into());
    figures.insert("watchdog_reports".into(), (reports.len() as u64).into());
    figures.insert(
        "report_delay_max_ms".into(),
        (max_delay.as_millis() as u64).into(),
    );
    figures.insert("offloaded_reports".into(), (off_reports as u64).into());
    figures.insert("offloaded_call_max_us".into(), micros(off_max).into());
    figures.insert(
        "reports".into(),
        serde_json::to_value(reports.iter().take(4).collect::<Vec<_>>()).unwrap_or_default(),
    );
    measure::shut_down(&node, &legit, &mut figures, &mut checks).await;
    Ok(Outcome {
        attack: format!(
            "sleep+CPU handlers {} s x{inline_rounds}, offloaded x{off_rounds}",
            SLOW_FOR.as_secs_f64()
        ),
        limits: format!(
            "{}/{} reported <= {} ms; offloaded {off_reports}",
            sl.len() + bu.len(),
            2 * inline_rounds,
            max_delay.as_millis()
        ),
        legit,
        checks,
        rss_bound: RssBound::plus_margin(0, "nothing queued", RSS_MARGIN),
        figures,
    })
}
