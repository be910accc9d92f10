//! `publish-flood`: many publishers flood one channel that a few subscribers read.
//!
//! [`PUBLISHERS`] connections each pipeline `PUBLISH`es of [`PAYLOAD`] bytes (each
//! carrying its publisher and sequence number) as fast as the server answers, up to
//! [`PER_PUBLISHER_WINDOW`] in flight, for the attack; [`SUBSCRIBERS`] subscribers
//! read everything. The rate limits are raised out of the way: what holds the
//! publishers back is the pub/sub registry — one process with a bounded mailbox,
//! called by each connection one `PUBLISH` at a time — then each connection's bounded
//! mailbox, its reader that stops reading, and TCP. Output is bounded per subscriber
//! ([`HARD_LIMIT`]) and in all ([`BUDGET`]).
//!
//! Bounds:
//! - every `PUBLISH` was answered with the number of subscribers, no error: the
//!   replies = the server's `published`, and `delivered` = `published` × subscribers;
//! - each subscriber received every message, in each publisher's order, none missing:
//!   no subscriber was cut for falling behind (output disconnects = 0);
//! - memory stayed bounded: the registry's mailbox within its bounds (high-water
//!   marks), pending output ≤ the budget, RSS grew by at most [`SUBSCRIBERS`] ×
//!   [`HARD_LIMIT`] + [`PUBLISHERS`] × [`PER_PUBLISHER_BYTES`] + [`RSS_MARGIN`];
//! - the legitimate client kept working.

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

/// Publisher connections.
pub const PUBLISHERS: usize = 50;
/// Subscribers reading everything.
pub const SUBSCRIBERS: usize = 3;
/// Bytes per message.
pub const PAYLOAD: usize = 256;
/// `PUBLISH`es in flight per publisher at most.
pub const PER_PUBLISHER_WINDOW: usize = 64;
/// The pub/sub hard (and soft) output limit.
pub const HARD_LIMIT: usize = 16 << 20;
/// All connections' pending output together.
pub const BUDGET: usize = 64 << 20;
/// RSS allowed per publisher connection (input buffer, mailbox batches, tasks).
pub const PER_PUBLISHER_BYTES: u64 = 256 << 10;
/// RSS allowance for the runtime, buffers and measurement.
pub const RSS_MARGIN: u64 = 32 << 20;

const CHANNEL: &[u8] = b"flood";

#[derive(Default, Debug, Clone, Copy)]
struct PubTally {
    sent: u64,
    replies: u64,
    receivers: u64,
    wrong_count: u64,
    errors: u64,
}

async fn publisher(conn: RespConn, id: usize, stop: Arc<AtomicBool>) -> PubTally {
    let (mut rd, mut wr) = conn.split();
    let room = Arc::new(Semaphore::new(PER_PUBLISHER_WINDOW));
    // One entry per PUBLISH, queued after its permit is taken: at most
    // `PER_PUBLISHER_WINDOW` are ever queued, so `send` never waits.
    let (tx, mut rx) = mpsc::channel::<()>(PER_PUBLISHER_WINDOW);
    let writer = {
        let room = room.clone();
        tokio::spawn(async move {
            let mut sent = 0u64;
            let mut payload = vec![b'x'; PAYLOAD];
            let mut buf = Vec::new();
            while !stop.load(Ordering::Acquire) {
                let n = (PER_PUBLISHER_WINDOW / 4) as u32;
                match room.acquire_many(n).await {
                    Ok(p) => p.forget(),
                    Err(_) => break,
                }
                buf.clear();
                for _ in 0..n {
                    payload[..15].copy_from_slice(format!("{id:04}:{sent:010}").as_bytes());
                    net::encode(&mut buf, &[b"PUBLISH", CHANNEL, &payload]);
                    let _ = tx.send(()).await;
                    sent += 1;
                }
                if wr.write_all(&buf).await.is_err() {
                    break;
                }
            }
            (sent, wr)
        })
    };
    let mut t = PubTally::default();
    while rx.recv().await.is_some() {
        match tokio::time::timeout(Duration::from_secs(5), rd.read()).await {
            Ok(Ok(Reply::Int(n))) => {
                t.replies += 1;
                t.receivers += n as u64;
                t.wrong_count += u64::from(n as usize != SUBSCRIBERS);
            }
            _ => {
                t.errors += 1;
                break;
            }
        }
        room.add_permits(1);
    }
    room.close();
    if let Ok((sent, _wr)) = writer.await {
        t.sent = sent;
    }
    t
}

#[derive(Debug, Clone, Default, serde::Serialize)]
struct SubTally {
    received: u64,
    gaps: u64,
    out_of_order: u64,
    unexpected: u64,
    disconnected: bool,
    #[serde(skip)]
    next: Vec<u64>,
}

async fn subscriber(mut conn: RespConn, t: Arc<Mutex<SubTally>>) {
    loop {
        let r = conn.read().await;
        let mut t = t.lock();
        match r {
            Ok(Reply::Array(Some(parts))) if parts.len() == 3 => {
                let key = match &parts[2] {
                    Reply::Bulk(Some(p)) if p.len() >= 15 => {
                        std::str::from_utf8(&p[..15]).ok().and_then(|s| {
                            let (a, b) = s.split_once(':')?;
                            Some((a.parse::<usize>().ok()?, b.parse::<u64>().ok()?))
                        })
                    }
                    _ => None,
                };
                match key {
                    Some((p, seq)) if p < PUBLISHERS => {
                        let next = t.next[p];
                        if seq < next {
                            t.out_of_order += 1;
                        } else {
                            t.gaps += seq - next;
                            t.next[p] = seq + 1;
                            t.received += 1;
                        }
                    }
                    _ => t.unexpected += 1,
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

/// Runs the drill for `attack`.
pub async fn run(attack: Duration) -> Result<Outcome, String> {
    let config = ServerConfig {
        port: 0,
        output: OutputConfig {
            pubsub_hard_limit_bytes: HARD_LIMIT,
            pubsub_soft_limit_bytes: HARD_LIMIT,
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

    let mut subs = Vec::new();
    let mut sub_tallies = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut c = RespConn::open(to, None).await.map_err(|e| e.to_string())?;
        match c.call(&[b"SUBSCRIBE", CHANNEL]).await {
            Ok(Reply::Array(Some(_))) => {}
            other => return Err(format!("SUBSCRIBE answered {other:?}")),
        }
        let t = Arc::new(Mutex::new(SubTally {
            next: vec![0; PUBLISHERS],
            ..SubTally::default()
        }));
        subs.push(tokio::spawn(subscriber(c, t.clone())));
        sub_tallies.push(t);
    }
    let registry = target
        .node
        .processes()
        .into_iter()
        .find(|p| p.actor_type.ends_with("PubSub"))
        .map(|p| p.pid)
        .ok_or("no pub/sub registry process")?;

    let stop = Arc::new(AtomicBool::new(false));
    let mut conns = Vec::new();
    for _ in 0..PUBLISHERS {
        conns.push(RespConn::open(to, None).await.map_err(|e| e.to_string())?);
    }
    let started = Instant::now();
    let pubs: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, c)| tokio::spawn(publisher(c, i, stop.clone())))
        .collect();
    tokio::time::sleep(attack).await;
    stop.store(true, Ordering::Release);
    let mut total = PubTally::default();
    for p in pubs {
        let t = p.await.map_err(|e| e.to_string())?;
        total.sent += t.sent;
        total.replies += t.replies;
        total.receivers += t.receivers;
        total.wrong_count += t.wrong_count;
        total.errors += t.errors;
    }
    let attack_time = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && sub_tallies.iter().any(|t| {
            let t = t.lock();
            t.received + t.gaps < total.replies && !t.disconnected
        })
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let legit = legit.finish().await;
    let peaks = sampler.finish();
    let after = target.stats();
    let c = &after.counters;
    let mailbox = target
        .node
        .process_info(registry)
        .map(|i| i.mailbox)
        .ok_or("the pub/sub registry is gone")?;
    let subs_seen: Vec<SubTally> = sub_tallies.iter().map(|t| t.lock().clone()).collect();

    let mut checks = Checks::default();
    checks.check(
        total.replies > 0
            && total.errors == 0
            && total.wrong_count == 0
            && total.replies == total.sent
            && total.replies == c.published
            && c.delivered == c.published * SUBSCRIBERS as u64,
        format!(
            "{} PUBLISH answered = sent = server published {}, each to {SUBSCRIBERS} ({} not, {} errors = 0); delivered {} = published × {SUBSCRIBERS}",
            fmt_count(total.replies),
            fmt_count(c.published),
            total.wrong_count,
            total.errors,
            fmt_count(c.delivered)
        ),
    );
    let all_received = subs_seen.iter().all(|s| {
        !s.disconnected
            && s.received == total.replies
            && s.gaps == 0
            && s.out_of_order == 0
            && s.unexpected == 0
    });
    let cuts = c.output_hard_disconnects + c.output_soft_disconnects + c.output_budget_disconnects;
    checks.check(
        all_received && cuts == 0 && c.output_budget_drops == 0,
        format!(
            "subscribers received {:?} of {} each, in order, none missing; output cuts {cuts} + drops {} = 0",
            subs_seen.iter().map(|s| s.received).collect::<Vec<_>>(),
            fmt_count(total.replies),
            c.output_budget_drops
        ),
    );
    checks.check(
        mailbox.len_hwm <= mailbox.capacity && mailbox.bytes_hwm <= mailbox.max_bytes,
        format!(
            "registry mailbox peak {} msgs / {} <= {} / {}",
            mailbox.len_hwm,
            fmt_bytes(mailbox.bytes_hwm as u64),
            mailbox.capacity,
            fmt_bytes(mailbox.max_bytes as u64)
        ),
    );
    checks.check(
        after.output_bytes_peak <= BUDGET as u64,
        format!(
            "pending output peak {} <= budget {}",
            fmt_bytes(after.output_bytes_peak),
            fmt_bytes(BUDGET as u64)
        ),
    );
    measure::check_legit(&mut checks, &legit);

    let mut figures = Map::new();
    figures.insert("publishers".into(), PUBLISHERS.into());
    figures.insert("subscribers".into(), SUBSCRIBERS.into());
    figures.insert("published".into(), total.replies.into());
    figures.insert(
        "published_per_sec".into(),
        json!((total.replies as f64 / attack_time.as_secs_f64()) as u64),
    );
    figures.insert(
        "subscriber_tallies".into(),
        serde_json::to_value(&subs_seen).unwrap_or_default(),
    );
    figures.insert(
        "registry_mailbox".into(),
        json!({
            "len_hwm": mailbox.len_hwm,
            "capacity": mailbox.capacity,
            "bytes_hwm": mailbox.bytes_hwm,
            "max_bytes": mailbox.max_bytes,
            "waiting_senders": mailbox.waiting_senders,
        }),
    );
    figures.insert("peaks".into(), serde_json::to_value(peaks).unwrap_or_default());
    figures.insert("attack_time_us".into(), micros(attack_time).into());
    target.shut_down(&legit, &mut figures, &mut checks).await;
    for s in subs {
        let _ = s.await;
    }

    Ok(Outcome {
        attack: format!(
            "{PUBLISHERS} publishers: {} PUBLISH × {PAYLOAD} B",
            fmt_count(total.replies)
        ),
        limits: format!(
            "registry mailbox peak {}/{}; out peak {}",
            mailbox.len_hwm,
            mailbox.capacity,
            fmt_bytes(after.output_bytes_peak)
        ),
        legit,
        checks,
        rss_bound: RssBound::plus_margin(
            SUBSCRIBERS as u64 * HARD_LIMIT as u64 + PUBLISHERS as u64 * PER_PUBLISHER_BYTES,
            format!(
                "{SUBSCRIBERS} subs × {} + {PUBLISHERS} publishers × {}",
                fmt_bytes(HARD_LIMIT as u64),
                fmt_bytes(PER_PUBLISHER_BYTES)
            ),
            RSS_MARGIN,
        ),
        figures,
    })
}
