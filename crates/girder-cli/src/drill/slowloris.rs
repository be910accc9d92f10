//! `slowloris`: thousands of connections that send nothing, or an unfinished request
//! one byte at a time.
//!
//! The server runs with `handshake_timeout` [`HANDSHAKE_TIMEOUT`] and
//! `request_timeout` [`REQUEST_TIMEOUT`], and room for every attacker
//! (`max_connections` above [`ATTACKERS`]), so the timeouts alone must clear them.
//! Half the attackers (from `127.0.0.2`) connect and send nothing; the other half
//! send the head of a `SET` with a 100 kB value and then one byte every
//! [`DRIBBLE_EVERY`], never finishing. Each attacker waits for the server to close its
//! connection and opens another [`RECONNECT_PAUSE`] later (the first ones spread over
//! [`RAMP_UP`]), for the whole attack; when the attack ends
//! no new connection is opened, but the last ones run until the server closes them
//! too, so that every attacker connection ends by a timeout. Meanwhile a legitimate
//! client pings every millisecond on its own connection, and a second one opens a
//! fresh connection every [`PROBE_EVERY`] (connect, `PING`, `QUIT`): new clients must
//! still get in.
//!
//! Bounds:
//! - every attacker connection was closed by the server (no attacker gave up waiting,
//!   [`CLOSE_SLACK`] past its timeout): the silent ones = the server's
//!   `timeouts_handshake`, the dribbling ones = `timeouts_request`, exactly;
//! - each was closed neither early nor late: from connect (silent) or from the first
//!   byte (dribbling), between its timeout − [`EARLY_SLACK`] and the timeout +
//!   [`CLOSE_SLACK`];
//! - connections and processes stayed bounded by the attackers plus the legitimate
//!   ones (sampled every 5 ms), and dropped back to the legitimate client's one;
//! - fresh connections got in: no probe failed, probe p99 ≤ [`PROBE_P99_BOUND`];
//! - RSS grew by at most [`ATTACKERS`] × ([`PER_CONN_BYTES`] + [`PER_CLIENT_BYTES`]) +
//!   [`RSS_MARGIN`];
//! - the legitimate client kept working.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder_net::server::ServerConfig;
use parking_lot::Mutex;
use serde_json::{json, Map};
use tokio::io::AsyncWriteExt;

use super::measure::{self, fmt_bytes, fmt_count, fmt_us, micros, Checks, Latencies, NetLegitClient};
use super::net::{self, io_error_kind, NetTarget, Reply, RespConn, StatsSampler, ATTACKER_IP};
use super::{Outcome, RssBound};

/// The server's `handshake_timeout`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(500);
/// The server's `request_timeout`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// Attacker tasks (half silent, half dribbling), each with one connection at a time.
pub const ATTACKERS: usize = 2_000;
/// A dribbling attacker sends one byte this often.
pub const DRIBBLE_EVERY: Duration = Duration::from_millis(50);
/// An attacker opens its next connection this long after the last one closed
/// (thousands of connections opening at once queue behind the acceptors, which
/// share two cores with the attackers in this drill).
pub const RECONNECT_PAUSE: Duration = Duration::from_millis(500);
/// The attackers' first connections are spread over this.
pub const RAMP_UP: Duration = Duration::from_secs(1);
/// How much earlier than its timeout the attacker may see a connection closed: its
/// clock starts when its task resumes after `connect`, which can be after the server
/// accepted the connection and started its own.
pub const EARLY_SLACK: Duration = Duration::from_millis(100);
/// How late past its timeout a connection may be closed.
pub const CLOSE_SLACK: Duration = Duration::from_millis(1_500);
/// The probe opens a fresh connection this often.
pub const PROBE_EVERY: Duration = Duration::from_millis(100);
/// Bound on a probe's connect + `PING` + `QUIT`, 99th percentile.
pub const PROBE_P99_BOUND: Duration = Duration::from_millis(250);
/// RSS allowed per server connection.
pub const PER_CONN_BYTES: u64 = 64 << 10;
/// RSS allowed per attacker socket and task.
pub const PER_CLIENT_BYTES: u64 = 8 << 10;
/// RSS allowance for the runtime and measurement buffers.
pub const RSS_MARGIN: u64 = 32 << 20;

/// The unfinished request: a `SET` whose 100 kB value comes a byte at a time.
const DRIBBLE_HEAD: &[u8] = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$100000\r\n";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Silent,
    Dribble,
}

#[derive(Default)]
struct Side {
    conns: u64,
    closed: u64,
    closed_by_reset: u64,
    other: BTreeMap<&'static str, u64>,
    lifetime: Latencies,
    min_lifetime: Option<Duration>,
}

impl Side {
    fn to_json(&self) -> serde_json::Value {
        json!({
            "connections": self.conns,
            "closed_by_server": self.closed,
            "closed_by_reset": self.closed_by_reset,
            "other": self.other,
            "lifetime": self.lifetime.summary(),
            "min_lifetime_us": self.min_lifetime.map_or(0, micros),
        })
    }
}

/// One attacker connection: returns how long it lived (from connect, or from the
/// first byte) and how it ended.
async fn one(to: SocketAddr, kind: Kind) -> Result<(Duration, bool), &'static str> {
    let stream =
        match tokio::time::timeout(Duration::from_secs(5), net::connect(to, Some(ATTACKER_IP), None)).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => return Err("connect_error"),
            Err(_) => return Err("connect_timeout"),
        };
    let t0 = Instant::now();
    let (timeout, first_byte) = match kind {
        Kind::Silent => (HANDSHAKE_TIMEOUT, t0),
        Kind::Dribble => (REQUEST_TIMEOUT, t0),
    };
    let give_up = timeout + CLOSE_SLACK + Duration::from_secs(2);
    let (rd, mut wr) = stream.into_split();
    let mut rd = net::RespReader::new(rd);
    let mut started = first_byte;
    let ended = async {
        match kind {
            Kind::Silent => rd.read().await,
            Kind::Dribble => {
                let mut i = 0usize;
                let mut tick = tokio::time::interval(DRIBBLE_EVERY);
                loop {
                    tokio::select! {
                        r = rd.read() => break r,
                        _ = tick.tick() => {
                            let b = DRIBBLE_HEAD.get(i).copied().unwrap_or(b'x');
                            if i == 0 {
                                started = Instant::now();
                            }
                            i += 1;
                            if let Err(e) = wr.write_all(&[b]).await {
                                break Err(e);
                            }
                        }
                    }
                }
            }
        }
    };
    let r = tokio::time::timeout(give_up, ended).await;
    let lived = started.elapsed();
    match r {
        Err(_) => Err("not_closed"),
        Ok(Ok(Reply::Error(_))) => Err("error_reply"),
        Ok(Ok(_)) => Err("unexpected_reply"),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok((lived, false)),
        Ok(Err(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ) =>
        {
            Ok((lived, true))
        }
        Ok(Err(e)) => Err(io_error_kind(&e)),
    }
}

async fn attacker(
    to: SocketAddr,
    kind: Kind,
    stop: Arc<AtomicBool>,
    side: Arc<Mutex<Side>>,
    start_in: Duration,
) {
    tokio::time::sleep(start_in).await;
    loop {
        let r = one(to, kind).await;
        let failed = {
            let mut s = side.lock();
            s.conns += 1;
            match r {
                Ok((lived, reset)) => {
                    s.closed += 1;
                    s.closed_by_reset += u64::from(reset);
                    s.lifetime.record(lived);
                    s.min_lifetime = Some(s.min_lifetime.map_or(lived, |m| m.min(lived)));
                    false
                }
                Err(kind) => {
                    *s.other.entry(kind).or_insert(0) += 1;
                    true
                }
            }
        };
        if stop.load(Ordering::Acquire) {
            return;
        }
        tokio::time::sleep(if failed {
            Duration::from_millis(10)
        } else {
            RECONNECT_PAUSE
        })
        .await;
    }
}

/// Opens a fresh connection every [`PROBE_EVERY`]: connect, `PING`, `QUIT`.
async fn prober(to: SocketAddr, stop: Arc<AtomicBool>) -> (Latencies, BTreeMap<&'static str, u64>) {
    let mut lat = Latencies::default();
    let mut errors = BTreeMap::new();
    let mut tick = tokio::time::interval(PROBE_EVERY);
    while !stop.load(Ordering::Acquire) {
        tick.tick().await;
        let t0 = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(2), async {
            let mut c = RespConn::open(to, None).await.map_err(|e| io_error_kind(&e))?;
            match c.call(&[b"PING"]).await {
                Ok(Reply::Simple(s)) if s == "PONG" => {}
                Ok(_) => return Err("unexpected_reply"),
                Err(e) => return Err(io_error_kind(&e)),
            }
            let elapsed = t0.elapsed();
            let _ = c.call(&[b"QUIT"]).await;
            Ok(elapsed)
        })
        .await;
        match r {
            Ok(Ok(d)) => lat.record(d),
            Ok(Err(kind)) => *errors.entry(kind).or_insert(0) += 1,
            Err(_) => *errors.entry("timeout").or_insert(0) += 1,
        }
    }
    (lat, errors)
}

fn check_side(
    checks: &mut Checks,
    name: &str,
    side: &Side,
    server_count: u64,
    counter: &str,
    timeout: Duration,
) {
    let other: u64 = side.other.values().sum();
    checks.check(
        side.conns > 0 && side.closed == side.conns && other == 0,
        format!(
            "{name}: {} connections all closed by the server ({} by reset; other outcomes {other} = 0: {:?})",
            fmt_count(side.conns),
            side.closed_by_reset,
            side.other
        ),
    );
    checks.check(
        server_count == side.closed,
        format!(
            "{name}: closed {} = server {counter} {}",
            side.closed, server_count
        ),
    );
    let min = side.min_lifetime.unwrap_or_default();
    let max = side.lifetime.max();
    checks.check(
        min + EARLY_SLACK >= timeout && max <= timeout + CLOSE_SLACK,
        format!(
            "{name}: closed after {}..{} (timeout {} - {} <= t <= timeout + {})",
            fmt_us(micros(min)),
            fmt_us(micros(max)),
            fmt_us(micros(timeout)),
            fmt_us(micros(EARLY_SLACK)),
            fmt_us(micros(CLOSE_SLACK))
        ),
    );
}

/// Runs the drill for `attack`.
pub async fn run(attack: Duration) -> Result<Outcome, String> {
    let attackers = net::affordable_connections(ATTACKERS, 512);
    let config = ServerConfig {
        port: 0,
        max_connections: attackers + 64,
        max_connections_per_peer: attackers + 64,
        handshake_timeout_ms: micros(HANDSHAKE_TIMEOUT) / 1000,
        request_timeout_ms: micros(REQUEST_TIMEOUT) / 1000,
        ..ServerConfig::default()
    };
    let target = NetTarget::start(config).await?;
    let to = target.addr();
    let legit = NetLegitClient::start(to, None).await?;
    let baseline_processes = target.node.stats().processes as u64;
    let sampler = StatsSampler::start(&target);
    let stop = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn(prober(to, stop.clone()));
    let overflows_before = net::listen_overflows();

    let silent = Arc::new(Mutex::new(Side::default()));
    let dribble = Arc::new(Mutex::new(Side::default()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..attackers)
        .map(|i| {
            let (kind, side) = if i % 2 == 0 {
                (Kind::Silent, silent.clone())
            } else {
                (Kind::Dribble, dribble.clone())
            };
            // The first connections are spread over one pause, as are the later ones.
            let start_in = RAMP_UP * i as u32 / attackers as u32;
            tokio::spawn(attacker(to, kind, stop.clone(), side, start_in))
        })
        .collect();
    tokio::time::sleep(attack).await;
    stop.store(true, Ordering::Release);
    for t in tasks {
        t.await.map_err(|e| e.to_string())?;
    }
    let attack_time = started.elapsed();
    let (probe_lat, probe_errors) = probe.await.map_err(|e| e.to_string())?;
    let listen_overflows = net::listen_overflows()
        .zip(overflows_before)
        .map(|(a, b)| a.saturating_sub(b));
    let drained = net::wait_for(&target, Duration::from_secs(5), |s| s.connections == 1).await;
    let legit = legit.finish().await;
    let peaks = sampler.finish();
    let after = target.stats();
    let c = &after.counters;
    let silent = std::mem::take(&mut *silent.lock());
    let dribble = std::mem::take(&mut *dribble.lock());

    let mut checks = Checks::default();
    check_side(
        &mut checks,
        "silent",
        &silent,
        c.timeouts_handshake,
        "timeouts_handshake",
        HANDSHAKE_TIMEOUT,
    );
    check_side(
        &mut checks,
        "dribbling",
        &dribble,
        c.timeouts_request,
        "timeouts_request",
        REQUEST_TIMEOUT,
    );
    let conn_bound = attackers as u64 + 2;
    let proc_bound = baseline_processes + attackers as u64 + 1;
    checks.check(
        peaks.connections <= conn_bound && peaks.processes <= proc_bound,
        format!(
            "peak connections {} <= {} attackers + 2 legit; peak processes {} <= baseline {} + {} + 1",
            fmt_count(peaks.connections),
            fmt_count(attackers as u64),
            fmt_count(peaks.processes),
            baseline_processes,
            fmt_count(attackers as u64)
        ),
    );
    checks.check(
        drained && c.timeouts_idle == 0 && c.protocol_errors == 0,
        format!(
            "connections back to 1 (legit): {drained}; idle timeouts {} + protocol errors {} = 0",
            c.timeouts_idle, c.protocol_errors
        ),
    );
    let probe_summary = probe_lat.summary();
    let probe_failed: u64 = probe_errors.values().sum();
    checks.check(
        probe_failed == 0 && probe_summary.count > 0 && probe_summary.p99_us <= micros(PROBE_P99_BOUND),
        format!(
            "fresh connections: {} ok, {probe_failed} failed = 0, p99 {} <= {}",
            probe_summary.count,
            fmt_us(probe_summary.p99_us),
            fmt_us(micros(PROBE_P99_BOUND))
        ),
    );
    measure::check_legit(&mut checks, &legit);

    let mut figures = Map::new();
    figures.insert("attackers".into(), attackers.into());
    figures.insert(
        "handshake_timeout_ms".into(),
        (micros(HANDSHAKE_TIMEOUT) / 1000).into(),
    );
    figures.insert(
        "request_timeout_ms".into(),
        (micros(REQUEST_TIMEOUT) / 1000).into(),
    );
    figures.insert("silent".into(), silent.to_json());
    figures.insert("dribbling".into(), dribble.to_json());
    figures.insert(
        "probe".into(),
        json!({ "latency": probe_summary, "errors": probe_errors }),
    );
    figures.insert("peaks".into(), serde_json::to_value(peaks).unwrap_or_default());
    figures.insert("baseline_processes".into(), baseline_processes.into());
    figures.insert("kernel_listen_overflows".into(), json!(listen_overflows));
    figures.insert("attack_time_us".into(), micros(attack_time).into());
    target.shut_down(&legit, &mut figures, &mut checks).await;

    Ok(Outcome {
        attack: format!(
            "{} slow conns ({} silent, {} dribbling)",
            fmt_count(attackers as u64),
            fmt_count(silent.conns),
            fmt_count(dribble.conns)
        ),
        limits: format!(
            "{} handshake + {} request timeouts; peak {} conns",
            fmt_count(c.timeouts_handshake),
            fmt_count(c.timeouts_request),
            fmt_count(peaks.connections)
        ),
        legit,
        checks,
        rss_bound: RssBound::plus_margin(
            attackers as u64 * (PER_CONN_BYTES + PER_CLIENT_BYTES),
            format!(
                "{} conns × ({} server + {} client)",
                fmt_count(attackers as u64),
                fmt_bytes(PER_CONN_BYTES),
                fmt_bytes(PER_CLIENT_BYTES)
            ),
            RSS_MARGIN,
        ),
        figures,
    })
}
