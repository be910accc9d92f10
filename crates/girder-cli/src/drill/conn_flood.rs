//! `conn-flood`: far more connections than `max_connections`, opened at once and kept.
//!
//! The server runs with `max_connections` = [`MAX_CONNECTIONS`]. A legitimate client
//! connects first (from `127.0.0.1`) and pings every millisecond throughout. Then
//! [`ATTACKERS`] tasks (from `127.0.0.2`) each open a connection at the same moment: a
//! connection that gets nothing within [`ADMIT_WAIT`] was admitted — the attacker
//! confirms it with a `PING` and keeps it until the attack ends; a refused one reads
//! `-ERR max number of clients reached` and the closed socket, and its attacker tries
//! again after [`RETRY_PAUSE`] (plus up to 250 ms of jitter), for the whole attack.
//!
//! Bounds:
//! - the attack opened at least [`ATTACKERS`] (10 × `max_connections`) connections;
//! - the attacker got exactly the free slots (`max_connections` − 1, the legitimate
//!   client holding one) and the server never held more than `max_connections`
//!   (sampled every 5 ms);
//! - every attempt was either kept or refused with the refusal line: attempts = kept +
//!   refused, nothing else (no reset, no timeout, no failed connect);
//! - the refusals the attacker read = the server's `refused_max_clients` +
//!   `refused_spawn`; the server's `accepted` = kept + the legitimate client;
//! - refusals come promptly: p99 from connect to the refusal line ≤
//!   [`REFUSAL_P99_BOUND`] (the first wave queues 2,000 connections at once behind
//!   the acceptors, which share two cores with the attackers);
//! - after the attack, the connections drop back to the legitimate client's one
//!   within [`DRAIN_TIMEOUT`];
//! - RSS grew by at most `max_connections` server connections × [`PER_CONN_BYTES`] +
//!   the attacker's sockets × [`PER_CLIENT_BYTES`] + [`RSS_MARGIN`];
//! - the legitimate client kept its latency ([`measure::check_legit`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder_net::server::ServerConfig;
use parking_lot::Mutex;
use serde_json::{json, Map};

use super::measure::{self, fmt_bytes, fmt_count, fmt_us, micros, Checks, Latencies, NetLegitClient};
use super::net::{self, io_error_kind, NetTarget, Reply, RespConn, StatsSampler, ATTACKER_IP};
use super::{Outcome, RssBound};

/// The server's `max_connections`.
pub const MAX_CONNECTIONS: usize = 200;
/// Attacker tasks, each holding or retrying one connection.
pub const ATTACKERS: usize = 2_000;
/// A connection that gets no refusal within this was admitted.
pub const ADMIT_WAIT: Duration = Duration::from_millis(300);
/// A refused attacker tries again after this.
pub const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Timeout of an attacker's connect and `PING`.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(3);
/// The refusal line.
pub const REFUSAL: &str = "ERR max number of clients reached";
/// Bound on the 99th percentile from connect to the refusal line.
pub const REFUSAL_P99_BOUND: Duration = Duration::from_secs(1);
/// How long the connections get to drop back after the attack.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// RSS allowed per server connection (process, reader and writer tasks, buffers).
pub const PER_CONN_BYTES: u64 = 64 << 10;
/// RSS allowed per attacker socket and task.
pub const PER_CLIENT_BYTES: u64 = 8 << 10;
/// RSS allowance for the runtime and measurement buffers.
pub const RSS_MARGIN: u64 = 32 << 20;

#[derive(Default)]
struct Tally {
    attempts: u64,
    kept: u64,
    refused: u64,
    other: BTreeMap<&'static str, u64>,
    refused_then_reset: u64,
    refusal_latency: Latencies,
}

enum Attempt {
    Kept(RespConn),
    /// The refusal line was read, then the socket closed (by a reset if the
    /// attacker's `PING` was already on its way).
    Refused {
        latency: Duration,
        reset: bool,
    },
    Other(&'static str),
}

async fn attempt(to: SocketAddr) -> Attempt {
    let stream = match tokio::time::timeout(REPLY_TIMEOUT, net::connect(to, Some(ATTACKER_IP), None)).await {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => return Attempt::Other("connect_error"),
        Err(_) => return Attempt::Other("connect_timeout"),
    };
    let t0 = Instant::now();
    let mut conn = RespConn::new(stream);
    let first = match tokio::time::timeout(ADMIT_WAIT, conn.read()).await {
        Ok(r) => r,
        // Nothing said: admitted (or not accepted yet). Ask.
        Err(_) => match tokio::time::timeout(REPLY_TIMEOUT, conn.call(&[b"PING"])).await {
            Ok(r) => r,
            Err(_) => return Attempt::Other("ping_timeout"),
        },
    };
    match first {
        Ok(Reply::Simple(s)) if s == "PONG" => Attempt::Kept(conn),
        Ok(Reply::Error(e)) if e == REFUSAL => {
            let latency = t0.elapsed();
            // A clean refusal: the line, then the closed socket.
            match tokio::time::timeout(REPLY_TIMEOUT, conn.read()).await {
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Attempt::Refused {
                    latency,
                    reset: false,
                },
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    Attempt::Refused { latency, reset: true }
                }
                _ => Attempt::Other("refused_not_closed"),
            }
        }
        Ok(_) => Attempt::Other("unexpected_reply"),
        Err(e) => Attempt::Other(io_error_kind(&e)),
    }
}

/// Attacks until `stop`; returns the connection it kept, if any, still open (so
/// that its slot stays taken until every other attacker has finished its attempt).
async fn attacker(
    to: SocketAddr,
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    seed: u64,
) -> Option<(RespConn, bool)> {
    let mut pause_jitter = seed;
    loop {
        let a = attempt(to).await;
        let kept = {
            let mut t = tally.lock();
            t.attempts += 1;
            match a {
                Attempt::Kept(conn) => {
                    t.kept += 1;
                    Some(conn)
                }
                Attempt::Refused { latency, reset } => {
                    t.refused += 1;
                    t.refused_then_reset += u64::from(reset);
                    t.refusal_latency.record(latency);
                    None
                }
                Attempt::Other(kind) => {
                    *t.other.entry(kind).or_insert(0) += 1;
                    None
                }
            }
        };
        if let Some(mut conn) = kept {
            // Hold it until the attack ends, watching for the server closing it.
            let stopped = async {
                while !stop.load(Ordering::Acquire) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            let open = tokio::select! {
                _ = stopped => true,
                _ = conn.read() => false,
            };
            return Some((conn, open));
        }
        if stop.load(Ordering::Acquire) {
            return None;
        }
        // Spread the retries so they do not come back in one wave.
        pause_jitter = pause_jitter
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let jitter = Duration::from_millis((pause_jitter >> 33) % 250);
        tokio::time::sleep(RETRY_PAUSE + jitter).await;
    }
}

/// Runs the drill for `attack`.
pub async fn run(attack: Duration) -> Result<Outcome, String> {
    let attackers = net::affordable_connections(ATTACKERS, 512);
    let config = ServerConfig {
        port: 0,
        max_connections: MAX_CONNECTIONS,
        // The attack holds its connections idle past any short timeout.
        idle_timeout_ms: 3_600_000,
        ..ServerConfig::default()
    };
    let target = NetTarget::start(config).await?;
    let to = target.addr();
    let legit = NetLegitClient::start(to, None).await?;
    let sampler = StatsSampler::start(&target);

    let overflows_before = net::listen_overflows();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..attackers)
        .map(|i| tokio::spawn(attacker(to, stop.clone(), tally.clone(), i as u64)))
        .collect();
    tokio::time::sleep(attack).await;
    stop.store(true, Ordering::Release);
    let mut kept = Vec::new();
    for t in tasks {
        kept.extend(t.await.map_err(|e| e.to_string())?);
    }
    let attack_time = started.elapsed();
    let listen_overflows = net::listen_overflows()
        .zip(overflows_before)
        .map(|(a, b)| a.saturating_sub(b));
    let at_stop = target.stats();
    // Every kept connection is still served, then all go.
    let mut served = 0u64;
    for (conn, open) in &mut kept {
        if *open {
            let r = tokio::time::timeout(REPLY_TIMEOUT, conn.call(&[b"PING"])).await;
            served += u64::from(matches!(r, Ok(Ok(Reply::Simple(_)))));
        }
    }
    drop(kept);
    let drained = net::wait_for(&target, DRAIN_TIMEOUT, |s| s.connections == 1).await;
    let legit = legit.finish().await;
    let peaks = sampler.finish();
    let after = target.stats();
    let t = std::mem::take(&mut *tally.lock());
    let c = &after.counters;
    let other: u64 = t.other.values().sum();
    let free = (MAX_CONNECTIONS - 1) as u64;

    let mut checks = Checks::default();
    checks.check(
        t.attempts >= attackers as u64,
        format!(
            "connections opened {} >= {} attackers ({}x max_connections)",
            fmt_count(t.attempts),
            fmt_count(attackers as u64),
            attackers / MAX_CONNECTIONS
        ),
    );
    checks.check(
        t.kept == free && peaks.connections <= MAX_CONNECTIONS as u64,
        format!(
            "attacker kept {} = the {free} free slots; server peak {} <= max_connections {MAX_CONNECTIONS}",
            t.kept, peaks.connections
        ),
    );
    checks.check(
        served == t.kept && at_stop.connections == MAX_CONNECTIONS as u64,
        format!(
            "kept connections still served at the end {served} = {}; server full at the end {} = {MAX_CONNECTIONS}",
            t.kept, at_stop.connections
        ),
    );
    checks.check(
        t.attempts == t.kept + t.refused && other == 0,
        format!(
            "attempts {} = kept {} + refused with the line {} ({} then reset; other outcomes {other} = 0: {:?})",
            t.attempts, t.kept, t.refused, t.refused_then_reset, t.other
        ),
    );
    let server_refused = c.refused_max_clients + c.refused_spawn;
    checks.check(
        server_refused == t.refused && c.refused_per_peer == 0 && c.refused_banned == 0,
        format!(
            "refusals read {} = server refused_max_clients {} + refused_spawn {}",
            t.refused, c.refused_max_clients, c.refused_spawn
        ),
    );
    checks.check(
        c.accepted == t.kept + 1,
        format!("server accepted {} = kept {} + 1 legit", c.accepted, t.kept),
    );
    let refusal = t.refusal_latency.summary();
    checks.check(
        refusal.count > 0 && refusal.p99_us <= micros(REFUSAL_P99_BOUND),
        format!(
            "refusal p99 {} <= {}",
            fmt_us(refusal.p99_us),
            fmt_us(micros(REFUSAL_P99_BOUND))
        ),
    );
    checks.check(
        drained,
        format!(
            "connections back to 1 (legit) within {} s (now {})",
            DRAIN_TIMEOUT.as_secs(),
            after.connections
        ),
    );
    measure::check_legit(&mut checks, &legit);

    let mut figures = Map::new();
    figures.insert("max_connections".into(), MAX_CONNECTIONS.into());
    figures.insert("attackers".into(), attackers.into());
    figures.insert(
        "attacker".into(),
        json!({
            "attempts": t.attempts,
            "kept": t.kept,
            "refused": t.refused,
            "refused_then_reset": t.refused_then_reset,
            "kept_served_at_end": served,
            "other": t.other,
            "refusal_latency": refusal,
        }),
    );
    figures.insert("peaks".into(), serde_json::to_value(peaks).unwrap_or_default());
    figures.insert("kernel_listen_overflows".into(), json!(listen_overflows));
    figures.insert("connections_at_stop".into(), at_stop.connections.into());
    figures.insert("attack_time_us".into(), micros(attack_time).into());
    target.shut_down(&legit, &mut figures, &mut checks).await;

    let client_bytes = attackers as u64 * PER_CLIENT_BYTES;
    Ok(Outcome {
        attack: format!(
            "{} attackers: {} connects vs max {MAX_CONNECTIONS}",
            fmt_count(attackers as u64),
            fmt_count(t.attempts)
        ),
        limits: format!(
            "{} kept, {} refused (p99 {})",
            t.kept,
            fmt_count(t.refused),
            fmt_us(refusal.p99_us)
        ),
        legit,
        checks,
        rss_bound: RssBound::plus_margin(
            MAX_CONNECTIONS as u64 * PER_CONN_BYTES + client_bytes,
            format!(
                "{MAX_CONNECTIONS} conns × {} + {} attacker sockets × {}",
                fmt_bytes(PER_CONN_BYTES),
                fmt_count(attackers as u64),
                fmt_bytes(PER_CLIENT_BYTES)
            ),
            RSS_MARGIN,
        ),
        figures,
    })
}
