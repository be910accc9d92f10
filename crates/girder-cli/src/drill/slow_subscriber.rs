//! `slow-subscriber`: subscribers that never read while a publisher floods 1 KiB
//! messages.
//!
//! The server's output limits are tuned for the drill: a subscriber is cut at
//! [`HARD_LIMIT`] pending, or after [`SOFT_FOR`] above [`SOFT_LIMIT`], and all
//! connections together may hold at most [`BUDGET`]. [`STALLED`] subscribers (with
//! small socket receive buffers, so the kernel holds little for them) `SUBSCRIBE`,
//! read the confirmation and never read again; [`HEALTHY`] subscribers read
//! everything. One publisher sends [`PAYLOAD`]-byte messages, each carrying its
//! sequence number, at [`PUBLISH_RATE`] per second (pipelined, up to [`WINDOW`] in
//! flight) for the attack and until every stalled subscriber was cut.
//!
//! With Redis 7.0's defaults (`client-output-buffer-limit pubsub 32mb 8mb 60`, no
//! node-wide cap) the same attack grows redis-server to about 1.9 GiB RSS with 50
//! stalled subscribers (the measurement); here the budget bounds it.
//!
//! Bounds:
//! - every stalled subscriber was disconnected, by the hard or soft limit or the
//!   budget: the server's three disconnect counters add up to [`STALLED`], and only
//!   the healthy subscriptions remain;
//! - pending output never exceeded the budget: sampled every 5 ms, and the server's
//!   own high-water mark;
//! - the healthy subscribers stayed connected and kept receiving, in order, every
//!   message but those the budget dropped for them: their gaps ≤ the server's
//!   `output_budget_drops` (0 when the budget never ran out);
//! - the publisher's replies add up to the server's `delivered`;
//! - RSS grew by at most the budget + [`RSS_MARGIN`];
//! - the legitimate client kept working.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder_net::server::{OutputConfig, ServerConfig};
use parking_lot::Mutex;
use serde_json::{json, Map};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, Semaphore};

use super::measure::{self, fmt_bytes, fmt_count, micros, Checks, NetLegitClient};
use super::net::{self, NetTarget, Reply, RespConn, StatsSampler};
use super::{Outcome, RssBound};

/// Subscribers that never read.
pub const STALLED: usize = 50;
/// Subscribers that read everything.
pub const HEALTHY: usize = 3;
/// Bytes per published message.
pub const PAYLOAD: usize = 1024;
/// Messages published per second.
pub const PUBLISH_RATE: u64 = 20_000;
/// Publishes in flight at most.
pub const WINDOW: usize = 512;
/// The pub/sub hard output limit.
pub const HARD_LIMIT: usize = 4 << 20;
/// The pub/sub soft output limit...
pub const SOFT_LIMIT: usize = 1 << 20;
/// ... and how long a subscriber may stay above it.
pub const SOFT_FOR: Duration = Duration::from_millis(500);
/// All connections' pending output together.
pub const BUDGET: usize = 64 << 20;
/// The stalled subscribers' socket receive buffer.
pub const STALLED_RCVBUF: u32 = 4096;
/// How long the publisher goes on past the attack for the stalled to be cut.
pub const CUT_TIMEOUT: Duration = Duration::from_secs(10);
/// RSS allowance beyond the budget: runtime, buffers, measurement.
pub const RSS_MARGIN: u64 = 48 << 20;

const CHANNEL: &[u8] = b"feed";

#[derive(Default, Debug, Clone, serde::Serialize)]
struct HealthyTally {
    received: u64,
    next: u64,
    gaps: u64,
    out_of_order: u64,
    unexpected: u64,
    disconnected: bool,
}

async fn healthy(mut conn: RespConn, t: Arc<Mutex<HealthyTally>>) {
    loop {
        let r = conn.read().await;
        let mut t = t.lock();
        match r {
            Ok(Reply::Array(Some(parts))) if parts.len() == 3 => {
                let seq = match &parts[2] {
                    Reply::Bulk(Some(p)) if p.len() >= 10 => std::str::from_utf8(&p[..10])
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok()),
                    _ => None,
                };
                match seq {
                    Some(s) if s >= t.next => {
                        t.gaps += s - t.next;
                        t.next = s + 1;
                        t.received += 1;
                    }
                    Some(_) => t.out_of_order += 1,
                    None => t.unexpected += 1,
                }
            }
            Ok(_) => t.unexpected += 1,
            Err(_) => {
                t.disconnected = true;
                return;
            }
        }
    }
}

async fn subscribe(to: SocketAddr, rcvbuf: Option<u32>) -> Result<RespConn, String> {
    let s = net::connect(to, None, rcvbuf).await.map_err(|e| e.to_string())?;
    let mut c = RespConn::new(s);
    match c.call(&[b"SUBSCRIBE", CHANNEL]).await {
        Ok(Reply::Array(Some(_))) => Ok(c),
        other => Err(format!("SUBSCRIBE answered {other:?}")),
    }
}

#[derive(Default, Debug)]
struct PubTally {
    published: u64,
    receivers: u64,
    errors: u64,
}

/// Runs the drill for `attack`.
pub async fn run(attack: Duration) -> Result<Outcome, String> {
    let config = ServerConfig {
        port: 0,
        output: OutputConfig {
            pubsub_hard_limit_bytes: HARD_LIMIT,
            pubsub_soft_limit_bytes: SOFT_LIMIT,
            pubsub_soft_limit_ms: micros(SOFT_FOR) / 1000,
            budget_bytes: BUDGET,
            ..OutputConfig::default()
        },
        rate: net::rate_limits_out_of_the_way(),
        ..ServerConfig::default()
    };
    let target = NetTarget::start(config).await?;
    let to = target.addr();
    let legit = NetLegitClient::start(to, None).await?;
    let sampler = StatsSampler::start(&target);

    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        stalled.push(subscribe(to, Some(STALLED_RCVBUF)).await?);
    }
    let mut readers = Vec::new();
    let mut tallies = Vec::new();
    for _ in 0..HEALTHY {
        let c = subscribe(to, None).await?;
        let t = Arc::new(Mutex::new(HealthyTally::default()));
        readers.push(tokio::spawn(healthy(c, t.clone())));
        tallies.push(t);
    }

    let publisher = RespConn::open(to, None).await.map_err(|e| e.to_string())?;
    let (mut rd, mut wr) = publisher.split();
    let room = Arc::new(Semaphore::new(WINDOW));
    // One entry per PUBLISH, queued after its permit is taken: at most `WINDOW` are
    // ever queued, so `send` never waits.
    let (sent_tx, mut sent_rx) = mpsc::channel::<()>(WINDOW);
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let writer = {
        let (room, done) = (room.clone(), done.clone());
        tokio::spawn(async move {
            let mut sent = 0u64;
            let mut buf = Vec::new();
            let mut payload = vec![b'x'; PAYLOAD];
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !done.load(Ordering::Acquire) {
                tick.tick().await;
                let due = (started.elapsed().as_secs_f64() * PUBLISH_RATE as f64) as u64;
                let n = due.saturating_sub(sent).min(WINDOW as u64 / 2) as u32;
                if n == 0 {
                    continue;
                }
                match room.acquire_many(n).await {
                    Ok(p) => p.forget(),
                    Err(_) => break,
                }
                buf.clear();
                for _ in 0..n {
                    payload[..10].copy_from_slice(format!("{sent:010}").as_bytes());
                    net::encode(&mut buf, &[b"PUBLISH", CHANNEL, &payload]);
                    let _ = sent_tx.send(()).await;
                    sent += 1;
                }
                if wr.write_all(&buf).await.is_err() {
                    break;
                }
            }
            (sent, wr)
        })
    };
    let reader = {
        let room = room.clone();
        tokio::spawn(async move {
            let mut t = PubTally::default();
            while sent_rx.recv().await.is_some() {
                match tokio::time::timeout(Duration::from_secs(5), rd.read()).await {
                    Ok(Ok(Reply::Int(n))) => {
                        t.published += 1;
                        t.receivers += n as u64;
                    }
                    _ => {
                        t.errors += 1;
                        break;
                    }
                }
                room.add_permits(1);
            }
            room.close();
            t
        })
    };
    // The attack, and on until every stalled subscriber was cut (bounded).
    let all_cut = loop {
        let cut = target.stats().subscriptions == HEALTHY as u64;
        let elapsed = started.elapsed();
        if (elapsed >= attack && cut) || elapsed >= attack + CUT_TIMEOUT {
            break cut;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    done.store(true, Ordering::Release);
    let (sent, wr) = writer.await.map_err(|e| e.to_string())?;
    let p = reader.await.map_err(|e| e.to_string())?;
    let attack_time = started.elapsed();
    drop(wr);
    // The healthy subscribers catch up with the last message.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && tallies
            .iter()
            .any(|t| t.lock().next < sent && !t.lock().disconnected)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let legit = legit.finish().await;
    let peaks = sampler.finish();
    let after = target.stats();
    let c = &after.counters;
    let healthy_tallies: Vec<HealthyTally> = tallies.iter().map(|t| t.lock().clone()).collect();

    let mut checks = Checks::default();
    let cuts = c.output_hard_disconnects + c.output_soft_disconnects + c.output_budget_disconnects;
    checks.check(
        all_cut && cuts == STALLED as u64 && after.subscriptions == HEALTHY as u64,
        format!(
            "stalled cut: hard {} + soft {} + budget {} = {STALLED}; subscriptions left {} = {HEALTHY} healthy",
            c.output_hard_disconnects, c.output_soft_disconnects, c.output_budget_disconnects, after.subscriptions
        ),
    );
    checks.check(
        peaks.output_bytes <= BUDGET as u64 && after.output_bytes_peak <= BUDGET as u64,
        format!(
            "pending output peak {} (sampled {}) <= budget {}",
            fmt_bytes(after.output_bytes_peak),
            fmt_bytes(peaks.output_bytes),
            fmt_bytes(BUDGET as u64)
        ),
    );
    let gaps: u64 = healthy_tallies
        .iter()
        .map(|t| t.gaps + (sent - t.next.min(sent)))
        .sum();
    let healthy_ok = healthy_tallies
        .iter()
        .all(|t| !t.disconnected && t.received > 0 && t.out_of_order == 0 && t.unexpected == 0);
    let received: Vec<u64> = healthy_tallies.iter().map(|t| t.received).collect();
    checks.check(
        healthy_ok && gaps <= c.output_budget_drops,
        format!(
            "healthy stayed, in order, received {received:?} of {} each; missed {gaps} <= budget drops {}",
            fmt_count(sent),
            c.output_budget_drops
        ),
    );
    checks.check(
        p.errors == 0 && p.published == sent && p.receivers == c.delivered,
        format!(
            "publisher: {} replies = {} sent, {} errors = 0; receivers {} = server delivered {}",
            fmt_count(p.published),
            fmt_count(sent),
            p.errors,
            fmt_count(p.receivers),
            fmt_count(c.delivered)
        ),
    );
    measure::check_legit(&mut checks, &legit);

    let mut figures = Map::new();
    figures.insert(
        "config".into(),
        json!({
            "hard_bytes": HARD_LIMIT,
            "soft_bytes": SOFT_LIMIT,
            "soft_ms": micros(SOFT_FOR) / 1000,
            "budget_bytes": BUDGET,
            "stalled": STALLED,
            "healthy": HEALTHY,
            "payload": PAYLOAD,
            "publish_rate": PUBLISH_RATE,
        }),
    );
    figures.insert("published".into(), sent.into());
    figures.insert(
        "healthy".into(),
        serde_json::to_value(&healthy_tallies).unwrap_or_default(),
    );
    figures.insert("peaks".into(), serde_json::to_value(peaks).unwrap_or_default());
    figures.insert("redis_7_0_defaults_rss_50_stalled".into(), "~1.9 GiB".into());
    figures.insert("attack_time_us".into(), micros(attack_time).into());
    target.shut_down(&legit, &mut figures, &mut checks).await;
    for r in readers {
        let _ = r.await;
    }
    drop(stalled);

    Ok(Outcome {
        attack: format!("{STALLED} stalled subs, {} msgs × 1 KiB", fmt_count(sent)),
        limits: format!(
            "{cuts} cut (h{}/s{}/b{}), out peak {} (redis: 1.9 GiB RSS)",
            c.output_hard_disconnects,
            c.output_soft_disconnects,
            c.output_budget_disconnects,
            fmt_bytes(after.output_bytes_peak)
        ),
        legit,
        checks,
        rss_bound: RssBound::plus_margin(
            BUDGET as u64,
            format!("output budget {}", fmt_bytes(BUDGET as u64)),
            RSS_MARGIN,
        ),
        figures,
    })
}
