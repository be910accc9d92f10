//! Drills: threat scenarios run against a live, in-process girder node.
//!
//! Each drill builds its own [`Node`](girder::Node) on the CLI's multi-thread tokio
//! runtime, starts a [`LegitClient`](measure::LegitClient) calling a healthy actor on
//! that node, runs its attack for the configured duration, then measures what the
//! limits did. The runner samples RSS throughout ([`measure::RssSampler`]).
//!
//! The network drills (`conn-flood` to `dedup`) also start a RESP server
//! ([`girder_net::server::Server`], on loopback, port 0, its limits tuned for the
//! drill and stated in it) on their node, attack it over TCP with the RESP client of
//! [`net`], and measure a [`NetLegitClient`](measure::NetLegitClient) that pings the
//! server on a connection of its own; their checks reconcile what the attackers saw
//! with the server's counters ([`girder_net::server::ServerStats`]).
//!
//! A drill yields one [`Report`]: the attack, what the limits did, peak RSS and its
//! growth over the pre-drill baseline, the legitimate client's latency and errors, the
//! drill's own figures, and a verdict computed from [`measure::Checks`] — each check a
//! measurement against a bound stated in the drill's code, and every check printed in
//! the reason.
//!
//! | drill | threat (DESIGN.md) | module |
//! |---|---|---|
//! | `mailbox-flood` | a mailbox flooded faster than it drains | [`mailbox_flood`] |
//! | `wide-flood` | a flood spread over many processes | [`wide_flood`] |
//! | `call-storm` | stale calls and replies piling up | [`call_storm`] |
//! | `spawn-bomb` | a process spawning in a loop | [`spawn_bomb`] |
//! | `priority-under-flood` | important messages stuck behind a flood | [`priority_under_flood`] |
//! | `runaway-producer` | uncontrolled message generation (a producer that could emit forever) | [`runaway_producer`] |
//! | `crash-loop` | crash loops: intensity, escalation, backoff | [`crash_loop`] |
//! | `dynamic-children` | a `DynamicSupervisor` asked for children without end | [`dynamic_children`] |
//! | `task-per-item` | one task per item of a huge list | [`task_per_item`] |
//! | `subtree-bomb` | one subsystem exhausting the process table | [`subtree_bomb`] |
//! | `chaos` | crashes under load | [`chaos`] |
//! | `slow-handler` | long-running work inside a handler: the watchdog reports it, offloading fixes it | [`slow_handler`] |
//! | `conn-flood` | connection flood | [`conn_flood`] |
//! | `slowloris` | slow clients (slowloris) | [`slowloris`] |
//! | `request-flood` | request flood from one source | [`request_flood`] |
//! | `slow-subscriber` | slow subscribers | [`slow_subscriber`] |
//! | `publish-flood` | many publishers flooding one channel | [`publish_flood`] |
//! | `breaker` | overloaded downstream | [`breaker`] |
//! | `dedup` | duplicate floods | [`dedup`] |

pub mod attack;
pub mod breaker;
pub mod call_storm;
pub mod chaos;
pub mod conn_flood;
pub mod crash_loop;
pub mod dedup;
pub mod dynamic_children;
pub mod mailbox_flood;
pub mod measure;
pub mod net;
pub mod priority_under_flood;
pub mod publish_flood;
pub mod request_flood;
pub mod runaway_producer;
pub mod slow_handler;
pub mod slow_subscriber;
pub mod slowloris;
pub mod spawn_bomb;
pub mod subtree_bomb;
pub mod task_per_item;
pub mod wide_flood;

use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};

use measure::{fmt_bytes, fmt_us, micros, Checks, LagProbe, LegitReport, RssSampler};

static WATCH: std::sync::Mutex<Option<girder_watch::WatchHandle>> = std::sync::Mutex::new(None);

/// Serves the dashboard, `/metrics` and the API (`girder drill --http ADDR`) while
/// the drills run: each drill's node is watched in turn (see [`observe`]).
pub fn set_watch(watch: girder_watch::WatchHandle) {
    *WATCH.lock().unwrap_or_else(|e| e.into_inner()) = Some(watch);
}

/// Stops the watch set with [`set_watch`], if any.
pub async fn stop_watch() {
    let w = WATCH.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(w) = w {
        w.shutdown().await;
    }
}

/// Points the watch (if `--http` asked for one) at a drill's node. Called by
/// [`LegitClient::start`](measure::LegitClient::start), which every drill calls once
/// its node is built.
pub fn observe(node: &girder::Node) {
    if let Some(w) = WATCH.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        w.observe(node.clone());
    }
}

/// The default attack duration of each drill.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(5);

/// Extra time a drill gets beyond its attack duration (setup, draining, recovery)
/// before the runner gives up on it and fails it.
pub const OVERRUN_ALLOWANCE: Duration = Duration::from_secs(60);

/// What a drill measured, before the runner adds RSS and timing.
pub struct Outcome {
    /// The attack, in a few words with its size.
    pub attack: String,
    /// What the limits did (refused, dropped, killed, expired...), in a few words.
    pub limits: String,
    /// The legitimate client's figures.
    pub legit: LegitReport,
    /// The drill's checks (the runner adds the RSS check).
    pub checks: Checks,
    /// How much RSS may grow over the baseline, and why that much.
    pub rss_bound: RssBound,
    /// The drill's own figures, for `--json`.
    pub figures: Map<String, Value>,
}

/// A drill's bound on RSS growth.
pub struct RssBound {
    /// Bytes RSS may grow over the pre-drill baseline.
    pub bytes: u64,
    /// How the bound is made up, e.g. `"5 × 512 KiB mailboxes + 32 MiB margin"`.
    pub why: String,
}

impl RssBound {
    /// `bytes` for what the drill holds plus `margin`, with `what` saying how `bytes`
    /// is made up: `why` reads `"{what} + {margin} margin"`.
    pub fn plus_margin(bytes: u64, what: impl std::fmt::Display, margin: u64) -> Self {
        RssBound {
            bytes: bytes + margin,
            why: format!("{what} + {} margin", fmt_bytes(margin)),
        }
    }
}

type DrillFuture = Pin<Box<dyn Future<Output = Result<Outcome, String>> + Send>>;

/// A drill the runner knows.
pub struct DrillSpec {
    /// The drill's name on the command line.
    pub name: &'static str,
    /// One line on what it attacks.
    pub about: &'static str,
    run: fn(Duration) -> DrillFuture,
}

/// Every drill, in the order `girder drill` runs them. `spawn-bomb` runs last: the
/// memory its 100,000 processes took stays with the allocator, and a drill after it
/// would measure its own RSS growth against that inflated baseline.
pub fn all() -> Vec<DrillSpec> {
    vec![
        DrillSpec {
            name: "mailbox-flood",
            about: "one flooder per overflow policy against a slow actor",
            run: |d| Box::pin(mailbox_flood::run(d)),
        },
        DrillSpec {
            name: "wide-flood",
            about: "thousands of actors flooded at once under a node byte budget",
            run: |d| Box::pin(wide_flood::run(d)),
        },
        DrillSpec {
            name: "call-storm",
            about: "many callers with short timeouts against a slow server",
            run: |d| Box::pin(call_storm::run(d)),
        },
        DrillSpec {
            name: "priority-under-flood",
            about: "priority messages while the normal lane is flooded full",
            run: |d| Box::pin(priority_under_flood::run(d)),
        },
        DrillSpec {
            name: "runaway-producer",
            about: "endless, flooding and pushed stage producers against 1 event/ms consumers",
            run: |d| Box::pin(runaway_producer::run(d)),
        },
        DrillSpec {
            name: "crash-loop",
            about: "a child that panics at once: intensity escalates, backoff paces restarts",
            run: |d| Box::pin(crash_loop::run(d)),
        },
        DrillSpec {
            name: "dynamic-children",
            about: "one child per request, 10x past a DynamicSupervisor's max_children",
            run: |d| Box::pin(dynamic_children::run(d)),
        },
        DrillSpec {
            name: "task-per-item",
            about: "1,000,000 items through async_stream with bounded concurrency",
            run: |d| Box::pin(task_per_item::run(d)),
        },
        DrillSpec {
            name: "subtree-bomb",
            about: "one subtree spawn-bombs to its budget while its sibling serves",
            run: |d| Box::pin(subtree_bomb::run(d)),
        },
        DrillSpec {
            name: "chaos",
            about: "random kills and panics in a supervised service under load",
            run: |d| Box::pin(chaos::run(d)),
        },
        DrillSpec {
            name: "slow-handler",
            about: "handlers blocking for seconds (sleep, CPU): the watchdog names them; offloading fixes it",
            run: |d| Box::pin(slow_handler::run(d)),
        },
        DrillSpec {
            name: "conn-flood",
            about: "2,000 connections at once against max_connections 200",
            run: |d| Box::pin(conn_flood::run(d)),
        },
        DrillSpec {
            name: "slowloris",
            about: "2,000 connections sending nothing or a byte at a time",
            run: |d| Box::pin(slowloris::run(d)),
        },
        DrillSpec {
            name: "request-flood",
            about: "one peer pipelining requests: rate limited, then banned",
            run: |d| Box::pin(request_flood::run(d)),
        },
        DrillSpec {
            name: "slow-subscriber",
            about: "50 subscribers that never read under a 1 KiB publish flood",
            run: |d| Box::pin(slow_subscriber::run(d)),
        },
        DrillSpec {
            name: "publish-flood",
            about: "50 publishers flooding one channel read by 3 subscribers",
            run: |d| Box::pin(publish_flood::run(d)),
        },
        DrillSpec {
            name: "breaker",
            about: "the key-value store sleeps: the circuit breaker opens and closes",
            run: |d| Box::pin(breaker::run(d)),
        },
        DrillSpec {
            name: "dedup",
            about: "PUBLISHONCE floods replaying ids against a 10,000-id window",
            run: |d| Box::pin(dedup::run(d)),
        },
        DrillSpec {
            name: "spawn-bomb",
            about: "processes spawning in a loop against the process limit",
            run: |d| Box::pin(spawn_bomb::run(d)),
        },
    ]
}

/// Pass or fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every bound held.
    Pass,
    /// At least one bound did not hold (or the drill could not run).
    Fail,
}

/// One drill's row: the `--json` object and the table row.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The drill's name.
    pub drill: &'static str,
    /// The verdict.
    pub verdict: Verdict,
    /// Why: every check with its measurement and bound.
    pub reason: String,
    /// The attack and its size.
    pub attack: String,
    /// What the limits did.
    pub limits: String,
    /// Wall time of the whole drill (setup, attack, draining, checks).
    pub duration_ms: u64,
    /// The attack duration asked for.
    pub attack_ms: u64,
    /// Highest RSS sampled during the drill.
    pub peak_rss_bytes: u64,
    /// RSS just before the drill.
    pub baseline_rss_bytes: u64,
    /// Peak minus baseline.
    pub rss_growth_bytes: u64,
    /// RSS samples taken (one per ~10 ms).
    pub rss_samples: u64,
    /// Context for latencies: the longest a task whose 1 ms timer fired waited for
    /// the runtime to run it (see [`measure::LagProbe`]).
    pub runtime_lag_max_us: u64,
    /// Context for latencies: the longest the OS left the RSS sampler thread
    /// waiting past its 10 ms sleep (other processes share the CPUs).
    pub os_lag_max_us: u64,
    /// The bound on that growth.
    pub rss_growth_bound_bytes: u64,
    /// Legitimate calls made during the attack.
    pub legit_calls: u64,
    /// Legitimate calls that failed.
    pub legit_errors: u64,
    /// Legitimate call latency, median.
    pub legit_p50_us: u64,
    /// Legitimate call latency, 99th percentile.
    pub legit_p99_us: u64,
    /// Legitimate call latency, maximum.
    pub legit_max_us: u64,
    /// The drill's own figures.
    #[serde(flatten)]
    pub figures: Map<String, Value>,
}

/// Looks up drills by name, in the order given; all of them if `names` is empty.
///
/// # Errors
///
/// The first unknown name, with the list of known drills.
pub fn select(names: &[String]) -> Result<Vec<DrillSpec>, String> {
    let mut known = all();
    if names.is_empty() {
        return Ok(known);
    }
    let mut picked = Vec::new();
    for name in names {
        match known.iter().position(|d| d.name == name) {
            Some(i) => picked.push(known.remove(i)),
            None if picked.iter().any(|d: &DrillSpec| d.name == name) => {}
            None => {
                let list: Vec<&str> = all().iter().map(|d| d.name).collect();
                return Err(format!(
                    "unknown drill `{name}`; known drills: {}",
                    list.join(", ")
                ));
            }
        }
    }
    Ok(picked)
}

/// Runs one drill with RSS sampling and a time limit, and computes its verdict.
pub async fn run_one(spec: &DrillSpec, attack: Duration) -> Report {
    let started = Instant::now();
    let sampler = RssSampler::start();
    let lag = LagProbe::start();
    let outcome = match tokio::time::timeout(attack + OVERRUN_ALLOWANCE, (spec.run)(attack)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "did not finish within {} ms (attack {} ms + {} s allowance)",
            (attack + OVERRUN_ALLOWANCE).as_millis(),
            attack.as_millis(),
            OVERRUN_ALLOWANCE.as_secs()
        )),
    };
    let runtime_lag = lag.finish().await;
    let rss = sampler.finish();
    let duration_ms = started.elapsed().as_millis() as u64;
    let mut report = Report {
        drill: spec.name,
        verdict: Verdict::Fail,
        reason: String::new(),
        attack: String::new(),
        limits: String::new(),
        duration_ms,
        attack_ms: attack.as_millis() as u64,
        peak_rss_bytes: rss.peak,
        baseline_rss_bytes: rss.baseline.unwrap_or(0),
        rss_growth_bytes: rss.growth(),
        rss_samples: rss.samples,
        runtime_lag_max_us: micros(runtime_lag),
        os_lag_max_us: micros(rss.os_lag_max),
        rss_growth_bound_bytes: 0,
        legit_calls: 0,
        legit_errors: 0,
        legit_p50_us: 0,
        legit_p99_us: 0,
        legit_max_us: 0,
        figures: Map::new(),
    };
    let mut outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            report.reason = format!("FAILED: drill could not run: {e}");
            return report;
        }
    };
    match rss.baseline {
        Some(_) => outcome.checks.check(
            rss.growth() <= outcome.rss_bound.bytes,
            format!(
                "RSS growth {} <= {} ({})",
                fmt_bytes(rss.growth()),
                fmt_bytes(outcome.rss_bound.bytes),
                outcome.rss_bound.why
            ),
        ),
        None => outcome
            .checks
            .check(false, "RSS unmeasurable (no VmRSS in /proc/self/status)"),
    }
    report.verdict = if outcome.checks.passed() {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    report.reason = outcome.checks.reason();
    report.attack = outcome.attack;
    report.limits = outcome.limits;
    report.rss_growth_bound_bytes = outcome.rss_bound.bytes;
    report.legit_calls = outcome.legit.calls;
    report.legit_errors = outcome.legit.errors;
    report.legit_p50_us = outcome.legit.latency.p50_us;
    report.legit_p99_us = outcome.legit.latency.p99_us;
    report.legit_max_us = outcome.legit.latency.max_us;
    report.figures = outcome.figures;
    report
}

/// How reports are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A table, one row per drill, each followed by its reason.
    Table,
    /// One JSON object per line.
    Json,
}

/// Runs the drills in order, printing each report as it completes. Returns `true` if
/// every drill passed.
pub async fn run_all(drills: &[DrillSpec], attack: Duration, format: Format) -> bool {
    let mut out = std::io::stdout().lock();
    if format == Format::Table {
        let _ = writeln!(out, "{}", table_header());
    }
    let mut all_passed = true;
    for spec in drills {
        let report = run_one(spec, attack).await;
        all_passed &= report.verdict == Verdict::Pass;
        let _ = match format {
            Format::Json => writeln!(
                out,
                "{}",
                serde_json::to_string(&report).expect("a report serializes")
            ),
            Format::Table => writeln!(out, "{}", table_row(&report)),
        };
        let _ = out.flush();
    }
    if format == Format::Table {
        let passed = if all_passed {
            "every drill passed"
        } else {
            "SOME DRILLS FAILED"
        };
        let _ = writeln!(out, "{passed}");
    }
    all_passed
}

const COLUMNS: [(&str, usize); 7] = [
    ("drill", 20),
    ("verdict", 7),
    ("attack", 38),
    ("limits", 40),
    ("peak RSS (growth)", 22),
    ("legit p50/p99 err", 24),
    ("time", 7),
];

fn table_header() -> String {
    let cells: Vec<String> = COLUMNS.iter().map(|(h, w)| format!("{h:<w$}")).collect();
    let rule: Vec<String> = COLUMNS.iter().map(|(_, w)| "-".repeat(*w)).collect();
    format!("{}\n{}", cells.join(" | "), rule.join("-+-"))
}

fn table_row(r: &Report) -> String {
    let verdict = match r.verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "FAIL",
    };
    let cells = [
        r.drill.to_string(),
        verdict.to_string(),
        r.attack.clone(),
        r.limits.clone(),
        format!(
            "{} (+{})",
            fmt_bytes(r.peak_rss_bytes),
            fmt_bytes(r.rss_growth_bytes)
        ),
        format!(
            "{}/{} {}",
            fmt_us(r.legit_p50_us),
            fmt_us(r.legit_p99_us),
            r.legit_errors
        ),
        format!("{:.1} s", r.duration_ms as f64 / 1e3),
    ];
    let cells: Vec<String> = cells
        .iter()
        .zip(COLUMNS)
        .map(|(c, (_, w))| format!("{c:<w$}"))
        .collect();
    format!("{}\n    reason: {}", cells.join(" | "), r.reason)
}
