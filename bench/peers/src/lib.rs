//! What every peer binary shares: the workload list and its sizes, the tokio runtime,
//! timing, RSS, the flood loop and the one-JSON-line-per-workload output.
//!
//! Each binary is run as `BIN WORKLOAD [N]`: exactly one workload per process, so RSS
//! figures start clean. `N` overrides the workload's default count (see [`Workload`]).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Payload of every message in every system: a `u64`.
pub type Payload = u64;

/// Capacity of bounded channels where a system lets us choose: girder's default
/// mailbox capacity (the tokio floor uses the same).
pub const CAP: usize = 1024;

/// How long the flood runs.
pub const FLOOD_SECS: u64 = 5;
/// The flood stops early once RSS has grown by this much (the machine is shared).
pub const FLOOD_CAP_BYTES: u64 = 3 << 30;
/// How long the slow actor takes per message in the flood: `tokio::time::sleep` in
/// the handler for the tokio-based systems (a worker is not blocked), `thread::sleep`
/// in actix's (in an arbiter of its own), `timer:sleep/1` on the BEAM.
pub const SLOW: Duration = Duration::from_millis(1);

/// The workloads, with their default counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// One sender, one receiver, `n` messages (default 10,000,000).
    Tell1to1,
    /// Two senders, one receiver, `n` messages in all (default 10,000,000).
    Tell2to1,
    /// One caller, `n` sequential request-replies (default 1,000,000).
    RequestReply,
    /// Two actors bounce one message `n` round trips (default 500,000).
    PingPong,
    /// Spawn `n` idle actors, until all have started (default 1,000,000).
    Spawn,
    /// RSS per idle actor, with `n` of them alive (default 100,000).
    IdleRss,
    /// Flood a slow actor with non-blocking sends for 5 s; RSS growth.
    Flood,
}

impl Workload {
    pub const ALL: [Workload; 7] = [
        Workload::Tell1to1,
        Workload::Tell2to1,
        Workload::RequestReply,
        Workload::PingPong,
        Workload::Spawn,
        Workload::IdleRss,
        Workload::Flood,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Tell1to1 => "tell_1to1",
            Workload::Tell2to1 => "tell_2to1",
            Workload::RequestReply => "request_reply",
            Workload::PingPong => "ping_pong",
            Workload::Spawn => "spawn",
            Workload::IdleRss => "idle_rss",
            Workload::Flood => "flood",
        }
    }

    pub fn default_n(self) -> u64 {
        match self {
            Workload::Tell1to1 | Workload::Tell2to1 => 10_000_000,
            Workload::RequestReply => 1_000_000,
            Workload::PingPong => 500_000,
            Workload::Spawn => 1_000_000,
            Workload::IdleRss => 100_000,
            Workload::Flood => FLOOD_SECS,
        }
    }
}

/// Parses `WORKLOAD [N]` from the command line; exits with usage on error.
pub fn args() -> (Workload, u64) {
    let mut a = std::env::args().skip(1);
    let usage = || -> ! {
        let names: Vec<_> = Workload::ALL.iter().map(|w| w.name()).collect();
        eprintln!("usage: BIN WORKLOAD [N]   (WORKLOAD: {})", names.join(" | "));
        std::process::exit(2)
    };
    let name = a.next().unwrap_or_else(|| usage());
    let w = Workload::ALL
        .into_iter()
        .find(|w| w.name() == name)
        .unwrap_or_else(|| usage());
    let n = match a.next() {
        Some(s) => s.replace('_', "").parse().unwrap_or_else(|_| usage()),
        None => w.default_n(),
    };
    (w, n)
}

/// The runtime every tokio-based system runs on: multi-thread, 2 workers
/// (`PEERS_WORKERS=N` for another count).
pub fn runtime() -> tokio::runtime::Runtime {
    let workers = std::env::var("PEERS_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `fut` on `rt` in a spawned task (so the workers, not the main thread, do the
/// work, as for every system) and waits for it.
pub fn run_on<F>(rt: &tokio::runtime::Runtime, fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.block_on(async move { tokio::spawn(fut).await.expect("workload task") })
}

/// Resident set size in bytes, from `/proc/self/statm`.
pub fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// Splits `total` into `parts` nearly equal shares.
pub fn shares(total: u64, parts: u64) -> impl Iterator<Item = u64> {
    (0..parts).map(move |i| total / parts + u64::from(i < total % parts))
}

/// A countdown that wakes a waiter at zero (cheap enough to share by a million
/// actors' start hooks).
#[derive(Clone)]
pub struct Countdown(Arc<(AtomicU64, tokio::sync::Notify)>);

impl Countdown {
    pub fn new(n: u64) -> Self {
        Countdown(Arc::new((AtomicU64::new(n), tokio::sync::Notify::new())))
    }
    pub fn tick(&self) {
        if self.0 .0.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0 .1.notify_one();
        }
    }
    pub async fn wait(&self) {
        if self.0 .0.load(Ordering::Acquire) == 0 {
            return;
        }
        self.0 .1.notified().await;
    }
}

/// Prints one result line: `{"system":..,"workload":..,"value":..,"unit":..,"n":..}`
/// plus any extra numeric fields.
pub fn emit(system: &str, w: Workload, value: f64, unit: &str, n: u64, extra: &[(&str, f64)]) {
    let mut line = format!(
        r#"{{"system":"{system}","workload":"{}","value":{value:.4},"unit":"{unit}","n":{n}"#,
        w.name()
    );
    for (k, v) in extra {
        line.push_str(&format!(r#","{k}":{v}"#));
    }
    line.push('}');
    println!("{line}");
}

/// Emits a throughput result: `n` operations in `elapsed`, in millions per second.
pub fn emit_rate(system: &str, w: Workload, n: u64, elapsed: Duration) {
    let unit = match w {
        Workload::RequestReply => "M calls/s",
        Workload::Spawn => "M actors/s",
        _ => "M msg/s",
    };
    emit(system, w, n as f64 / elapsed.as_secs_f64() / 1e6, unit, n, &[("secs", elapsed.as_secs_f64())]);
}

/// Emits a ping-pong result: nanoseconds per round trip.
pub fn emit_ping_pong(system: &str, n: u64, elapsed: Duration) {
    emit(system, Workload::PingPong, elapsed.as_nanos() as f64 / n as f64, "ns/round trip", n, &[]);
}

/// Emits an idle-RSS result from the RSS before and with `n` idle actors alive.
pub fn emit_idle_rss(system: &str, n: u64, before: u64, after: u64) {
    let per = after.saturating_sub(before) as f64 / n as f64;
    emit(system, Workload::IdleRss, per, "B/actor", n, &[("rss_mib", after as f64 / 1048576.0)]);
}

/// What a flood run saw.
pub struct FloodReport {
    pub accepted: u64,
    pub refused: u64,
    pub growth: u64,
    pub secs: f64,
    pub capped: bool,
}

/// Floods for `secs` seconds: calls `send(i)` (non-blocking; `true` = accepted) as
/// fast as it can, yielding to the scheduler every 256 sends, sampling RSS every
/// 4,096, and stopping early once RSS has grown by [`FLOOD_CAP_BYTES`].
pub async fn flood_loop(secs: u64, mut send: impl FnMut(u64) -> bool) -> FloodReport {
    let base = rss_bytes();
    let mut peak = base;
    let start = Instant::now();
    let until = start + Duration::from_secs(secs);
    let (mut accepted, mut refused, mut capped) = (0u64, 0u64, false);
    let mut i = 0u64;
    loop {
        if send(i) {
            accepted += 1;
        } else {
            refused += 1;
        }
        i += 1;
        if i % 256 == 0 {
            tokio::task::yield_now().await;
        }
        if i % 4096 == 0 {
            peak = peak.max(rss_bytes());
            if peak - base >= FLOOD_CAP_BYTES {
                capped = true;
                break;
            }
            if Instant::now() >= until {
                break;
            }
        }
    }
    peak = peak.max(rss_bytes());
    FloodReport {
        accepted,
        refused,
        growth: peak - base,
        secs: start.elapsed().as_secs_f64(),
        capped,
    }
}

/// Emits a flood result: RSS growth in MiB.
pub fn emit_flood(system: &str, r: &FloodReport) {
    emit(
        system,
        Workload::Flood,
        r.growth as f64 / 1048576.0,
        "MiB RSS growth",
        r.accepted,
        &[
            ("accepted", r.accepted as f64),
            ("refused", r.refused as f64),
            ("secs", r.secs),
            ("capped", if r.capped { 1.0 } else { 0.0 }),
        ],
    );
}
