//! `request-flood`: one peer address pipelines requests as fast as it can.
//!
//! The server's rate limits are small for the drill ([`PER_PEER_RATE`] requests/s,
//! burst [`BURST`], per peer and per connection; [`STRIKES`] refused requests within
//! 10 s ban the peer for [`BAN`]). The attacker connects from `127.0.0.2` and writes
//! pipelined `PING`s without waiting for replies, reading them on the side; whenever
//! its connection closes it opens another, every [`RECONNECT_PAUSE`], for the whole
//! attack (and at least once after it was banned). The legitimate client pings every
//! millisecond from `127.0.0.3`, under the limits.
//!
//! Bounds:
//! - the attacker was rate limited: it read `ERR rate limit exceeded` replies, as many
//!   as the server's `rate_limited` counter;
//! - it was banned: exactly one ban, still active; its open connection was closed with
//!   the ban error and its later connections were refused at accept with it — the ban
//!   lines it read = the server's `banned_closes` + `refused_banned`, both ≥ 1;
//! - the rate held: the attacker's requests served ≤ [`BURST`] + [`PER_PEER_RATE`] ×
//!   the attack's seconds, and = the server's commands minus the legitimate client's;
//! - the other peer was unaffected: no error, p99 within the usual bound;
//! - RSS grew by at most [`RSS_MARGIN`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder_net::server::{RateConfig, ServerConfig};
use serde_json::{json, Map};
use tokio::io::AsyncWriteExt;

use super::measure::{self, fmt_bytes, fmt_count, micros, Checks, NetLegitClient};
use super::net::{self, io_error_kind, NetTarget, Reply, RespConn, ATTACKER_IP, LEGIT_IP};
use super::{Outcome, RssBound};

/// Requests per second allowed per peer (and per connection).
pub const PER_PEER_RATE: u32 = 2_000;
/// Burst above the rate.
pub const BURST: u32 = 1_000;
/// Refused requests within the strike window that ban the peer.
pub const STRIKES: u32 = 500;
/// How long a ban lasts (longer than the drill).
pub const BAN: Duration = Duration::from_secs(120);
/// The attacker reconnects this long after its connection closed.
pub const RECONNECT_PAUSE: Duration = Duration::from_millis(20);
/// `PING`s per pipelined write.
pub const PIPELINE: usize = 64;
/// RSS allowance for the runtime, buffers and measurement.
pub const RSS_MARGIN: u64 = 32 << 20;

const BAN_PREFIX: &str = "ERR too many requests: this address is banned";
const LIMIT_PREFIX: &str = "ERR rate limit exceeded";

#[derive(Default, Debug)]
struct Tally {
    connections: u64,
    served: u64,
    limited: u64,
    /// Ban lines read as the first thing on a connection: refused at accept.
    banned_at_accept: u64,
    /// Ban lines read after other replies: an open connection closed by the ban.
    banned_open: u64,
    other: BTreeMap<String, u64>,
}

/// One attacker connection, pipelining until it closes (or `stop` once banned).
async fn one(to: SocketAddr, t: &mut Tally) {
    let conn = match RespConn::open(to, Some(ATTACKER_IP)).await {
        Ok(c) => c,
        Err(e) => {
            *t.other
                .entry(format!("connect_{}", io_error_kind(&e)))
                .or_insert(0) += 1;
            return;
        }
    };
    t.connections += 1;
    let (mut rd, mut wr) = conn.split();
    let writer = tokio::spawn(async move {
        let mut batch = Vec::new();
        for _ in 0..PIPELINE {
            net::encode(&mut batch, &[b"PING"]);
        }
        while wr.write_all(&batch).await.is_ok() {}
    });
    let mut replies = 0u64;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), rd.read()).await {
            Ok(Ok(Reply::Simple(s))) if s == "PONG" => t.served += 1,
            Ok(Ok(Reply::Error(e))) if e.starts_with(LIMIT_PREFIX) => t.limited += 1,
            Ok(Ok(Reply::Error(e))) if e.starts_with(BAN_PREFIX) => {
                if replies == 0 {
                    t.banned_at_accept += 1;
                } else {
                    t.banned_open += 1;
                }
            }
            Ok(Ok(r)) => *t.other.entry(format!("reply {r:?}")).or_insert(0) += 1,
            Ok(Err(e)) => {
                if e.kind() != std::io::ErrorKind::UnexpectedEof
                    && e.kind() != std::io::ErrorKind::ConnectionReset
                {
                    *t.other.entry(io_error_kind(&e).to_string()).or_insert(0) += 1;
                }
                break;
            }
            Err(_) => {
                *t.other.entry("timeout".into()).or_insert(0) += 1;
                break;
            }
        }
        replies += 1;
    }
    writer.abort();
    let _ = writer.await;
}

async fn attacker(to: SocketAddr, stop: Arc<AtomicBool>) -> Tally {
    let mut t = Tally::default();
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        one(to, &mut t).await;
        // Go on until the attack ends, and at least until a connection was refused at
        // accept once banned (bounded, should the ban never come).
        let done = stop.load(Ordering::Acquire) && (t.banned_at_accept > 0 || Instant::now() > deadline);
        if done {
            return t;
        }
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

/// Runs the drill for `attack`.
pub async fn run(attack: Duration) -> Result<Outcome, String> {
    let config = ServerConfig {
        port: 0,
        rate: RateConfig {
            per_peer_per_second: PER_PEER_RATE,
            per_peer_burst: BURST,
            per_connection_per_second: PER_PEER_RATE,
            per_connection_burst: BURST,
            strikes: STRIKES,
            strike_window_ms: 10_000,
            ban_ms: micros(BAN) / 1000,
            ..RateConfig::default()
        },
        ..ServerConfig::default()
    };
    let target = NetTarget::start(config).await?;
    let to = target.addr();
    let legit = NetLegitClient::start(to, Some(LEGIT_IP)).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let task = tokio::spawn(attacker(to, stop.clone()));
    tokio::time::sleep(attack).await;
    stop.store(true, Ordering::Release);
    let t = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .map_err(|_| "the attacker did not finish (never banned?)".to_string())?
        .map_err(|e| e.to_string())?;
    let attack_time = started.elapsed();
    let legit = legit.finish().await;
    let after = target.stats();
    let c = &after.counters;

    let mut checks = Checks::default();
    let other: u64 = t.other.values().sum();
    checks.check(
        t.limited > 0 && t.limited == c.rate_limited,
        format!(
            "rate-limit errors read {} = server rate_limited {} > 0",
            fmt_count(t.limited),
            fmt_count(c.rate_limited)
        ),
    );
    checks.check(
        after.bans == 1 && after.bans_active == 1,
        format!(
            "bans {} = 1, active {} = 1 (the attacker only)",
            after.bans, after.bans_active
        ),
    );
    checks.check(
        t.banned_open >= 1
            && t.banned_at_accept >= 1
            && t.banned_open == c.banned_closes
            && t.banned_at_accept == c.refused_banned,
        format!(
            "ban lines: {} closing an open connection = server banned_closes {}, {} at accept = refused_banned {}",
            t.banned_open, c.banned_closes, t.banned_at_accept, c.refused_banned
        ),
    );
    let allowed = u64::from(BURST) + (f64::from(PER_PEER_RATE) * attack_time.as_secs_f64()) as u64;
    let legit_commands = legit.calls;
    checks.check(
        t.served <= allowed && t.served + legit_commands == c.commands,
        format!(
            "attacker served {} <= burst {BURST} + {PER_PEER_RATE}/s × {:.1} s = {}; + legit {} = server commands {}",
            fmt_count(t.served),
            attack_time.as_secs_f64(),
            fmt_count(allowed),
            fmt_count(legit_commands),
            fmt_count(c.commands)
        ),
    );
    checks.check(
        other == 0,
        format!("attacker's other outcomes {other} = 0 ({:?})", t.other),
    );
    measure::check_legit(&mut checks, &legit);

    let mut figures = Map::new();
    figures.insert(
        "rate".into(),
        json!({
            "per_peer_per_second": PER_PEER_RATE,
            "burst": BURST,
            "strikes": STRIKES,
            "ban_ms": micros(BAN) / 1000,
        }),
    );
    figures.insert(
        "attacker".into(),
        json!({
            "connections": t.connections,
            "served": t.served,
            "rate_limited": t.limited,
            "banned_open": t.banned_open,
            "banned_at_accept": t.banned_at_accept,
            "other": t.other,
        }),
    );
    figures.insert("attack_time_us".into(), micros(attack_time).into());
    target.shut_down(&legit, &mut figures, &mut checks).await;

    Ok(Outcome {
        attack: format!("pipelined PINGs from 1 peer: {} conns", fmt_count(t.connections)),
        limits: format!(
            "{} served, {} limited, banned; {} refused at accept",
            fmt_count(t.served),
            fmt_count(t.limited),
            fmt_count(t.banned_at_accept)
        ),
        legit,
        checks,
        rss_bound: RssBound {
            bytes: RSS_MARGIN,
            why: format!(
                "{} margin (one attacker connection at a time)",
                fmt_bytes(RSS_MARGIN)
            ),
        },
        figures,
    })
}
