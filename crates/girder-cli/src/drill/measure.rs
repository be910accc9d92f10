//! Measurements shared by the drills: resident memory, latency percentiles, the
//! legitimate client, and the checks a verdict is computed from.
//!
//! - [`RssSampler`] reads `VmRSS` from `/proc/self/status` every
//!   [`RSS_SAMPLE_EVERY`] on a background thread and keeps the peak.
//! - [`Latencies`] is a fixed-size latency histogram that reports percentiles.
//! - [`LegitClient`] keeps calling a healthy actor on the drill's node while the
//!   attack runs: the traffic an attack must not take down. [`NetLegitClient`] is
//!   its network variant: `PING`s to the drill's RESP server over TCP.
//! - [`LiveSampler`] reads the node's live process count on a thread of its own
//!   and keeps the maximum.
//! - [`Checks`] collects the drill's bounds and measurements; the verdict and its
//!   reason are computed from them; [`shut_down`] ends every drill.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use girder::{Actor, Addr, CallError, Ctx, Flow, Node, Pid, ProcessState, Reply, SpawnError, Weight};
use serde::Serialize;
use serde_json::{Map, Value};

/// How often the RSS sampler reads `/proc/self/status`.
pub const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// The current resident set size of this process in bytes, if the platform reports
/// it (Linux: `VmRSS` in `/proc/self/status`).
pub fn read_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Samples RSS on a background thread from [`start`](RssSampler::start) until
/// [`finish`](RssSampler::finish).
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    baseline: Option<u64>,
    thread: JoinHandle<(u64, Duration)>,
}

/// What [`RssSampler`] saw.
#[derive(Clone, Copy, Debug)]
pub struct RssReport {
    /// RSS just before the drill started (`None` if unavailable).
    pub baseline: Option<u64>,
    /// Highest RSS sampled during the drill.
    pub peak: u64,
    /// Number of samples taken.
    pub samples: u64,
    /// The longest the sampler thread overslept its interval: how long the OS left
    /// this process's threads waiting for a CPU (other processes included).
    pub os_lag_max: Duration,
}

impl RssReport {
    /// Peak minus baseline (0 if RSS is unavailable).
    pub fn growth(&self) -> u64 {
        self.baseline.map_or(0, |b| self.peak.saturating_sub(b))
    }
}

impl RssSampler {
    /// Reads the baseline and starts sampling.
    pub fn start() -> Self {
        let baseline = read_rss();
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(baseline.unwrap_or(0)));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::Builder::new()
                .name("girder-rss".into())
                .spawn(move || {
                    let mut samples = 0;
                    let mut lag = Duration::ZERO;
                    while !stop.load(Ordering::Acquire) {
                        if let Some(rss) = read_rss() {
                            peak.fetch_max(rss, Ordering::Relaxed);
                            samples += 1;
                        }
                        let t = Instant::now();
                        std::thread::sleep(RSS_SAMPLE_EVERY);
                        lag = lag.max(t.elapsed().saturating_sub(RSS_SAMPLE_EVERY));
                    }
                    (samples, lag)
                })
                .expect("spawn the RSS sampler thread")
        };
        RssSampler {
            stop,
            peak,
            baseline,
            thread,
        }
    }

    /// Stops sampling (with one last sample) and reports.
    pub fn finish(self) -> RssReport {
        self.stop.store(true, Ordering::Release);
        let (samples, os_lag_max) = self.thread.join().unwrap_or_default();
        if let Some(rss) = read_rss() {
            self.peak.fetch_max(rss, Ordering::Relaxed);
        }
        RssReport {
            baseline: self.baseline,
            peak: self.peak.load(Ordering::Relaxed),
            samples,
            os_lag_max,
        }
    }
}

/// Samples the node's live process count every `every` on a thread of its own,
/// from [`start`](LiveSampler::start) until [`finish`](LiveSampler::finish), and
/// keeps the maximum.
pub struct LiveSampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicUsize>,
    thread: JoinHandle<u64>,
}

impl LiveSampler {
    /// Starts sampling `node`.
    pub fn start(node: &Node, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (node, stop, max) = (node.clone(), stop.clone(), max.clone());
            std::thread::spawn(move || {
                let mut samples = 0;
                while !stop.load(Ordering::Acquire) {
                    max.fetch_max(node.stats().processes, Ordering::Relaxed);
                    samples += 1;
                    std::thread::sleep(every);
                }
                samples
            })
        };
        LiveSampler { stop, max, thread }
    }

    /// Stops sampling; the highest live count sampled and the number of samples.
    pub fn finish(self) -> Result<(usize, u64), String> {
        self.stop.store(true, Ordering::Release);
        let samples = self.thread.join().map_err(|_| "sampler panicked")?;
        Ok((self.max.load(Ordering::Relaxed), samples))
    }
}

/// How late the runtime runs a task whose timer has fired: a task sleeping
/// [`LAG_PROBE_EVERY`] in a loop records how much longer each sleep took. Context for
/// latency figures: a call cannot return sooner than the runtime gets round to it.
pub struct LagProbe {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Duration>,
}

/// The lag probe's sleep.
pub const LAG_PROBE_EVERY: Duration = Duration::from_millis(1);

impl LagProbe {
    /// Starts probing on the current runtime.
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut lag = Duration::ZERO;
                while !stop.load(Ordering::Acquire) {
                    let t = Instant::now();
                    tokio::time::sleep(LAG_PROBE_EVERY).await;
                    lag = lag.max(t.elapsed().saturating_sub(LAG_PROBE_EVERY));
                }
                lag
            }
        });
        LagProbe { stop, task }
    }

    /// Stops probing; the longest lag seen (timer granularity, up to 1 ms, included).
    pub async fn finish(self) -> Duration {
        self.stop.store(true, Ordering::Release);
        self.task.await.unwrap_or_default()
    }
}

/// A latency histogram with log-linear buckets: exact below 64 ns, then 32 buckets
/// per power of two (at most 3.2 % wide), so memory stays fixed (15 KiB) however many
/// durations are recorded. Percentiles report their bucket's upper edge, which errs
/// on the side of a slower figure; the maximum is exact.
#[derive(Clone, Debug)]
pub struct Latencies {
    buckets: Vec<u64>,
    count: u64,
    max: u64,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            buckets: vec![0; Self::BUCKETS],
            count: 0,
            max: 0,
        }
    }
}

impl Latencies {
    const SUB_BITS: u32 = 5;
    const LINEAR: u64 = 64;
    const BUCKETS: usize = 64 + (64 - 6) * 32;

    fn bucket(ns: u64) -> usize {
        if ns < Self::LINEAR {
            return ns as usize;
        }
        let exp = 63 - ns.leading_zeros(); // >= 6
        let sub = (ns >> (exp - Self::SUB_BITS)) & ((1 << Self::SUB_BITS) - 1);
        Self::LINEAR as usize + (exp as usize - 6) * (1 << Self::SUB_BITS) + sub as usize
    }

    /// The largest value that falls in bucket `i`.
    fn upper_edge(i: usize) -> u64 {
        if (i as u64) < Self::LINEAR {
            return i as u64;
        }
        let j = i - Self::LINEAR as usize;
        let exp = (j >> Self::SUB_BITS) as u32 + 6;
        let sub = (j & ((1 << Self::SUB_BITS) - 1)) as u64;
        let low = (1u64 << exp) | (sub << (exp - Self::SUB_BITS));
        low.saturating_add((1u64 << (exp - Self::SUB_BITS)) - 1)
    }

    /// Records one duration.
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.count += 1;
        self.max = self.max.max(ns);
        self.buckets[Self::bucket(ns)] += 1;
    }

    /// Adds every duration of `other`.
    pub fn merge(&mut self, other: &Latencies) {
        self.count += other.count;
        self.max = self.max.max(other.max);
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
    }

    /// Number of durations recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The longest duration recorded.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max)
    }

    /// Percentiles (`p` in 0..=100, nearest rank), each the upper edge of its bucket
    /// (never above the maximum).
    pub fn percentiles(&self, ps: &[f64]) -> Vec<Duration> {
        ps.iter()
            .map(|p| {
                if self.count == 0 {
                    return Duration::ZERO;
                }
                let rank = (((p / 100.0) * self.count as f64).ceil() as u64).clamp(1, self.count);
                let mut seen = 0;
                for (i, n) in self.buckets.iter().enumerate() {
                    seen += n;
                    if seen >= rank {
                        return Duration::from_nanos(Self::upper_edge(i).min(self.max));
                    }
                }
                Duration::from_nanos(self.max)
            })
            .collect()
    }

    /// Count, p50, p99 and max, in microseconds.
    pub fn summary(&self) -> LatencySummary {
        let p = self.percentiles(&[50.0, 99.0]);
        LatencySummary {
            count: self.count,
            p50_us: micros(p[0]),
            p99_us: micros(p[1]),
            max_us: micros(self.max()),
        }
    }
}

/// Percentiles of a [`Latencies`], in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct LatencySummary {
    /// Durations recorded.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Maximum.
    pub max_us: u64,
}

/// A duration in whole microseconds.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

// ----- the legitimate client -----

/// How long the legitimate client waits between two calls.
pub const LEGIT_PACE: Duration = Duration::from_millis(1);
/// The legitimate client's call timeout: a call slower than this is an error.
pub const LEGIT_TIMEOUT: Duration = Duration::from_secs(1);

/// The healthy actor the legitimate client calls: answers at once.
pub struct Echo;

/// A request to [`Echo`].
pub struct Ping(pub Reply<()>);

impl Weight for Ping {}

impl Actor for Echo {
    type Msg = Ping;

    async fn handle(&mut self, Ping(reply): Ping, _ctx: &mut Ctx<Self>) -> Flow {
        reply.send(());
        Flow::Continue
    }
}

/// A task that calls an [`Echo`] on the drill's node every [`LEGIT_PACE`] until
/// stopped, recording each call's latency and each error by kind.
pub struct LegitClient {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Latencies, BTreeMap<&'static str, u64>)>,
}

/// What the legitimate client saw during the attack.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LegitReport {
    /// Calls made.
    pub calls: u64,
    /// Calls that failed (any error, timeouts included).
    pub errors: u64,
    /// Errors by kind (`timeout`, `full`, `node_budget`, ...).
    pub error_kinds: BTreeMap<&'static str, u64>,
    /// Latency of the calls that succeeded.
    pub latency: LatencySummary,
}

impl LegitClient {
    /// Spawns the healthy actor on `node` and starts calling it. Also points
    /// `--http`'s watch at `node` ([`super::observe`]).
    pub fn start(node: &Node) -> Result<Self, SpawnError> {
        super::observe(node);
        let echo = node.spawn(Echo)?;
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(legit_loop(echo, stop.clone()));
        Ok(LegitClient { stop, task })
    }

    /// Stops calling and reports. The healthy actor stays alive.
    pub async fn finish(self) -> LegitReport {
        self.stop.store(true, Ordering::Release);
        let (lat, error_kinds) = self.task.await.unwrap_or_default();
        let errors: u64 = error_kinds.values().sum();
        LegitReport {
            calls: lat.count() + errors,
            errors,
            error_kinds,
            latency: lat.summary(),
        }
    }
}

async fn legit_loop(echo: Addr<Echo>, stop: Arc<AtomicBool>) -> (Latencies, BTreeMap<&'static str, u64>) {
    let mut lat = Latencies::default();
    let mut errors = BTreeMap::new();
    let mut tick = tokio::time::interval(LEGIT_PACE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Acquire) {
        tick.tick().await;
        let t0 = Instant::now();
        match echo.call(Ping, LEGIT_TIMEOUT).await {
            Ok(()) => lat.record(t0.elapsed()),
            Err(e) => *errors.entry(call_error_kind(e)).or_insert(0) += 1,
        }
    }
    (lat, errors)
}

/// The network variant of [`LegitClient`]: a RESP client on its own TCP connection
/// that sends `PING` every [`LEGIT_PACE`] and waits for `+PONG` (up to
/// [`LEGIT_TIMEOUT`]), recording each round trip's latency and each failure by kind;
/// after a failure it reconnects (a failed connect is an error too).
pub struct NetLegitClient {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Latencies, BTreeMap<&'static str, u64>)>,
}

impl NetLegitClient {
    /// Connects to `server` (from `from` if given) and starts pinging. The connection
    /// is made before this returns, so a client started before an attack is one the
    /// server admitted before it.
    pub async fn start(server: std::net::SocketAddr, from: Option<std::net::IpAddr>) -> Result<Self, String> {
        let conn = tokio::time::timeout(LEGIT_TIMEOUT, super::net::RespConn::open(server, from))
            .await
            .map_err(|_| "legit client: connect timed out".to_string())?
            .map_err(|e| format!("legit client: connect: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(net_legit_loop(server, from, conn, stop.clone()));
        Ok(NetLegitClient { stop, task })
    }

    /// Stops pinging and reports; the connection closes.
    pub async fn finish(self) -> LegitReport {
        self.stop.store(true, Ordering::Release);
        let (lat, error_kinds) = self.task.await.unwrap_or_default();
        let errors: u64 = error_kinds.values().sum();
        LegitReport {
            calls: lat.count() + errors,
            errors,
            error_kinds,
            latency: lat.summary(),
        }
    }
}

async fn net_legit_loop(
    server: std::net::SocketAddr,
    from: Option<std::net::IpAddr>,
    conn: super::net::RespConn,
    stop: Arc<AtomicBool>,
) -> (Latencies, BTreeMap<&'static str, u64>) {
    use super::net::{io_error_kind, Reply, RespConn};
    let mut lat = Latencies::default();
    let mut errors = BTreeMap::new();
    let mut conn = Some(conn);
    let mut tick = tokio::time::interval(LEGIT_PACE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Acquire) {
        tick.tick().await;
        let t0 = Instant::now();
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match tokio::time::timeout(LEGIT_TIMEOUT, RespConn::open(server, from)).await {
                Ok(Ok(c)) => conn.insert(c),
                _ => {
                    *errors.entry("connect").or_insert(0) += 1;
                    continue;
                }
            },
        };
        let kind = match tokio::time::timeout(LEGIT_TIMEOUT, c.call(&[b"PING"])).await {
            Ok(Ok(Reply::Simple(s))) if s == "PONG" => {
                lat.record(t0.elapsed());
                continue;
            }
            Ok(Ok(Reply::Error(_))) => "error_reply",
            Ok(Ok(_)) => "unexpected_reply",
            Ok(Err(e)) => io_error_kind(&e),
            Err(_) => "timeout",
        };
        *errors.entry(kind).or_insert(0) += 1;
        conn = None;
    }
    (lat, errors)
}

/// A short stable name for a call error, for tallies.
pub fn call_error_kind(e: CallError) -> &'static str {
    match e {
        CallError::Timeout => "timeout",
        CallError::Full => "full",
        CallError::TooLarge => "too_large",
        CallError::NodeBudget => "node_budget",
        CallError::Down => "down",
        CallError::NoReply => "no_reply",
        _ => "other",
    }
}

/// The legitimate client's bounds, the same for every drill: generous, because the
/// attack shares the CPU with it; what they catch is a client starved or failing.
pub const LEGIT_P99_BOUND: Duration = Duration::from_millis(100);

/// Adds the legitimate client's checks: no errors, p99 within [`LEGIT_P99_BOUND`].
pub fn check_legit(checks: &mut Checks, legit: &LegitReport) {
    checks.check(
        legit.errors == 0,
        format!("legit errors {} of {} calls = 0", legit.errors, legit.calls),
    );
    checks.check(
        legit.calls > 0 && legit.latency.p99_us <= micros(LEGIT_P99_BOUND),
        format!(
            "legit p99 {} <= {}",
            fmt_us(legit.latency.p99_us),
            fmt_us(micros(LEGIT_P99_BOUND))
        ),
    );
}

/// The end of every drill: records the legitimate client's report as the `legit`
/// figure, shuts the node down and checks that no process was left.
pub async fn shut_down(
    node: &Node,
    legit: &LegitReport,
    figures: &mut Map<String, Value>,
    checks: &mut Checks,
) {
    figures.insert("legit".into(), serde_json::to_value(legit).unwrap_or_default());
    let report = node.shutdown().await;
    checks.check(
        report.remaining == 0,
        format!("node shut down ({} processes left)", report.remaining),
    );
}

// ----- waiting for quiet -----

/// Waits until every process in `pids` is waiting for a message with an empty
/// mailbox and no sender waiting for room, so that its counters no longer move.
/// Gives up after `timeout`; returns whether it got there.
pub async fn wait_idle(node: &Node, pids: &[Pid], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let idle = pids.iter().all(|&pid| {
            node.process_info(pid).is_none_or(|i| {
                i.state == ProcessState::Waiting
                    && i.mailbox.len == 0
                    && i.mailbox.priority_len == 0
                    && i.mailbox.waiting_senders == 0
            })
        });
        if idle {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Adds the check that the counters settled (e.g. by [`wait_idle`]) within `within`.
pub fn check_settled(checks: &mut Checks, settled: bool, within: Duration) {
    checks.check(settled, format!("counters settled within {} s", within.as_secs()));
}

// ----- checks and the verdict -----

/// One bound of a drill and whether the measurement kept it.
#[derive(Clone, Debug)]
pub struct Check {
    /// Whether the bound held.
    pub ok: bool,
    /// The measurement against the bound, e.g. `"p99 3.1 ms <= 20 ms"`.
    pub text: String,
}

/// The checks of one drill, in the order they were made.
#[derive(Clone, Debug, Default)]
pub struct Checks(Vec<Check>);

impl Checks {
    /// Records one check. `text` states the measurement and the bound.
    pub fn check(&mut self, ok: bool, text: impl Into<String>) {
        self.0.push(Check {
            ok,
            text: text.into(),
        });
    }

    /// `true` if every check held (and there was at least one).
    pub fn passed(&self) -> bool {
        !self.0.is_empty() && self.0.iter().all(|c| c.ok)
    }

    /// The reason for the verdict: the failed checks first, then the ones that held.
    pub fn reason(&self) -> String {
        let failed: Vec<&str> = self.0.iter().filter(|c| !c.ok).map(|c| c.text.as_str()).collect();
        let held: Vec<&str> = self.0.iter().filter(|c| c.ok).map(|c| c.text.as_str()).collect();
        match (failed.is_empty(), held.is_empty()) {
            (true, true) => "no checks made".into(),
            (true, false) => format!("all {} bounds held: {}", held.len(), held.join("; ")),
            (false, true) => format!("FAILED: {}", failed.join("; ")),
            (false, false) => format!("FAILED: {} | held: {}", failed.join("; "), held.join("; ")),
        }
    }
}

// ----- formatting -----

/// Bytes in a human unit (B, KiB, MiB, GiB).
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Microseconds in a human unit (µs, ms, s).
pub fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

/// A count in a short form: `987`, `12.3k`, `4.5M`, `6.7G`.
pub fn fmt_si(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

/// A count with thousands separators.
pub fn fmt_count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank_within_bucket_width() {
        let mut l = Latencies::default();
        for ms in 1..=100 {
            l.record(Duration::from_millis(ms));
        }
        let p = l.percentiles(&[50.0, 99.0, 100.0]);
        for (got, want) in p.iter().zip([50, 99, 100].map(Duration::from_millis)) {
            assert!(
                *got >= want && got.as_secs_f64() <= want.as_secs_f64() * 1.032,
                "{got:?} vs {want:?}"
            );
        }
        assert_eq!(p[2], Duration::from_millis(100)); // capped at the exact maximum
        assert_eq!(l.max(), Duration::from_millis(100));
    }

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = 0;
        for ns in (0..10_000u64).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let b = Latencies::bucket(ns);
            assert!(b >= last && b < Latencies::BUCKETS);
            assert!(Latencies::upper_edge(b) >= ns);
            last = b;
        }
    }

    #[test]
    fn reason_lists_failures_first() {
        let mut c = Checks::default();
        c.check(true, "a <= 1");
        c.check(false, "b <= 2");
        assert!(!c.passed());
        assert_eq!(c.reason(), "FAILED: b <= 2 | held: a <= 1");
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_count(1_234_567), "1,234,567");
        assert_eq!(fmt_si(1_234_567), "1.2M");
        assert_eq!(fmt_si(9_999), "9999");
        assert_eq!(fmt_bytes(1536), "1.5 KiB");
        assert_eq!(fmt_us(2_500), "2.5 ms");
    }
}
