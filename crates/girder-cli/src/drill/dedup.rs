//! `dedup`: a client floods `GIRDER.PUBLISHONCE` with message ids it replays.
//!
//! The server's dedup window holds at most [`CAPACITY`] ids (for 60 s, longer than the
//! drill). One client pipelines (up to [`WINDOW`] commands in flight), round after
//! round: round `r` publishes the new id `r`, then replays id `r − 1` and id
//! `r − CAPACITY / 2` — both still inside the window, so both must be refused as
//! duplicates (`nil`). It goes on for the attack and at least [`MIN_DISTINCT`] rounds
//! (3 × the window: the window must fill and evict). A subscriber on the channel
//! counts every id it receives.
//!
//! Bounds:
//! - each id was acted on once: every new id answered with 1 receiver, every replay
//!   with `nil`; the subscriber received each id exactly once (none missing, none
//!   twice) and `published` = the distinct ids;
//! - the duplicates the server counted (`dedup_duplicates`) = the replays sent;
//! - the window stayed bounded: `dedup_ids` (sampled every 5 ms, and at the end) ≤
//!   [`CAPACITY`], while ≥ 3 × [`CAPACITY`] distinct ids went through it;
//! - RSS grew by at most [`CAPACITY`] × [`PER_ID_BYTES`] + [`RSS_MARGIN`];
//! - the legitimate client kept working.

use std::sync::Arc;
use std::time::{Duration, Instant};

use girder_net::server::{DedupSettings, ServerConfig};
use serde_json::{json, Map};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, Semaphore};

use super::measure::{self, fmt_count, micros, Checks, NetLegitClient};
use super::net::{self, NetTarget, Reply, RespConn, StatsSampler};
use super::{Outcome, RssBound};

/// The dedup window's capacity.
pub const CAPACITY: usize = 10_000;
/// Distinct ids sent at least, however short the attack.
pub const MIN_DISTINCT: u64 = 3 * CAPACITY as u64;
/// Distinct ids sent at most, however long the attack.
pub const MAX_DISTINCT: u64 = 2_000_000;
/// Commands in flight at most.
pub const WINDOW: usize = 1_024;
/// Rounds per pipelined write.
const ROUNDS_PER_WRITE: u64 = 32;
/// RSS allowed per id in the window (the id twice, map and queue entries).
pub const PER_ID_BYTES: u64 = 256;
/// RSS allowance for the runtime, the subscriber's tally and measurement.
pub const RSS_MARGIN: u64 = 32 << 20;

const CHANNEL: &[u8] = b"dedup";

/// The ids of round `r` and whether each is a replay.
fn round(r: u64) -> impl Iterator<Item = (u64, bool)> {
    let half = CAPACITY as u64 / 2;
    std::iter::once((r, false))
        .chain((r >= 1).then(|| (r - 1, true)))
        .chain((r >= half).then(|| (r - half, true)))
}

fn id_bytes(id: u64) -> Vec<u8> {
    format!("id-{id}").into_bytes()
}

#[derive(Default, Debug)]
struct PubTally {
    rounds: u64,
    sent: u64,
    replays: u64,
    first_ok: u64,
    dup_nil: u64,
    mismatched: u64,
    errors: u64,
}

#[derive(Default, Debug)]
struct SubTally {
    received: u64,
    twice: u64,
    unexpected: u64,
    seen: Vec<u8>,
}

async fn subscriber(mut conn: RespConn) -> SubTally {
    let mut t = SubTally::default();
    loop {
        match conn.read().await {
            Ok(Reply::Array(Some(parts))) if parts.len() == 3 => {
                let id = match &parts[2] {
                    Reply::Bulk(Some(p)) => std::str::from_utf8(p)
                        .ok()
                        .and_then(|s| s.strip_prefix("id-"))
                        .and_then(|s| s.parse::<usize>().ok()),
                    _ => None,
                };
                match id {
                    Some(id) => {
                        if t.seen.len() <= id {
                            t.seen.resize(id + 1, 0);
                        }
                        t.seen[id] = t.seen[id].saturating_add(1);
                        t.received += 1;
                        t.twice += u64::from(t.seen[id] > 1);
                    }
                    None => t.unexpected += 1,
                }
            }
            Ok(_) => t.unexpected += 1,
            Err(_) => return t,
        }
    }
}

/// Runs the drill for `attack`.
pub async fn run(attack: Duration) -> Result<Outcome, String> {
    let config = ServerConfig {
        port: 0,
        dedup: DedupSettings {
            capacity: CAPACITY,
            ttl_ms: 60_000,
            ..DedupSettings::default()
        },
        // The flood is one well-behaved pipelining client: the rate limiter is not
        // what this drill is about.
        rate: net::rate_limits_out_of_the_way(),
        ..ServerConfig::default()
    };
    let target = NetTarget::start(config).await?;
    let to = target.addr();
    let legit = NetLegitClient::start(to, None).await?;
    let sampler = StatsSampler::start(&target);

    let mut sub = RespConn::open(to, None).await.map_err(|e| e.to_string())?;
    match sub.call(&[b"SUBSCRIBE", CHANNEL]).await {
        Ok(Reply::Array(Some(_))) => {}
        other => return Err(format!("SUBSCRIBE answered {other:?}")),
    }
    let sub_task = tokio::spawn(subscriber(sub));

    let publisher = RespConn::open(to, None).await.map_err(|e| e.to_string())?;
    let (mut rd, mut wr) = publisher.split();
    let room = Arc::new(Semaphore::new(WINDOW));
    // One entry per command, queued before the write's permits are taken: at most
    // `WINDOW` (the permits) + one write's commands (3 per round) are ever queued, so
    // `send` never waits (and cannot hold up the write its reader is waiting for).
    let (expect_tx, mut expect_rx) = mpsc::channel::<bool>(WINDOW + 3 * ROUNDS_PER_WRITE as usize);
    let started = Instant::now();
    let writer = {
        let room = room.clone();
        tokio::spawn(async move {
            let mut t = PubTally::default();
            let mut buf = Vec::new();
            while t.rounds < MAX_DISTINCT && (t.rounds < MIN_DISTINCT || started.elapsed() < attack) {
                buf.clear();
                let mut cmds = 0u32;
                for _ in 0..ROUNDS_PER_WRITE {
                    for (id, replay) in round(t.rounds) {
                        let idb = id_bytes(id);
                        net::encode(&mut buf, &[b"GIRDER.PUBLISHONCE", CHANNEL, &idb, &idb]);
                        let _ = expect_tx.send(replay).await;
                        cmds += 1;
                        t.replays += u64::from(replay);
                    }
                    t.rounds += 1;
                }
                t.sent += u64::from(cmds);
                match room.acquire_many(cmds).await {
                    Ok(p) => p.forget(),
                    Err(_) => break,
                }
                if wr.write_all(&buf).await.is_err() {
                    t.errors += 1;
                    break;
                }
            }
            (t, wr)
        })
    };
    let mut replies = PubTally::default();
    while let Some(replay) = expect_rx.recv().await {
        match tokio::time::timeout(Duration::from_secs(5), rd.read()).await {
            Ok(Ok(Reply::Int(1))) if !replay => replies.first_ok += 1,
            Ok(Ok(Reply::Bulk(None))) if replay => replies.dup_nil += 1,
            Ok(Ok(_)) => replies.mismatched += 1,
            Ok(Err(_)) | Err(_) => {
                replies.errors += 1;
                break;
            }
        }
        room.add_permits(1);
    }
    // Should the replies stop early, the writer must not wait for room for ever.
    room.close();
    let (sent, wr) = writer.await.map_err(|e| e.to_string())?;
    let attack_time = started.elapsed();
    drop(wr);
    let distinct = sent.rounds;
    // The subscriber gets the last messages a little after the last reply.
    let caught_up = net::wait_for(&target, Duration::from_secs(5), |s| {
        s.counters.delivered >= distinct
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let legit = legit.finish().await;
    let peaks = sampler.finish();
    let after = target.stats();
    let c = &after.counters;
    // The subscriber's connection closes with the server.
    let sub_figures_pending = sub_task;

    let mut checks = Checks::default();
    checks.check(
        distinct >= MIN_DISTINCT,
        format!(
            "distinct ids {} >= 3 × capacity {}",
            fmt_count(distinct),
            fmt_count(CAPACITY as u64)
        ),
    );
    checks.check(
        replies.first_ok == distinct
            && replies.dup_nil == sent.replays
            && replies.mismatched == 0
            && replies.errors + sent.errors == 0,
        format!(
            "replies: {} new ids published to 1 = {} sent, {} replays nil = {} sent, {} mismatched + {} errors = 0",
            fmt_count(replies.first_ok),
            fmt_count(distinct),
            fmt_count(replies.dup_nil),
            fmt_count(sent.replays),
            replies.mismatched,
            replies.errors + sent.errors
        ),
    );
    checks.check(
        c.dedup_duplicates == sent.replays && c.published == distinct,
        format!(
            "server dedup_duplicates {} = replays sent {}; published {} = distinct ids",
            fmt_count(c.dedup_duplicates),
            fmt_count(sent.replays),
            fmt_count(c.published)
        ),
    );
    checks.check(
        peaks.dedup_ids <= CAPACITY as u64 && after.dedup_ids <= CAPACITY as u64,
        format!(
            "window held at most {} ids (sampled, {} at the end) <= capacity {}",
            fmt_count(peaks.dedup_ids),
            fmt_count(after.dedup_ids),
            fmt_count(CAPACITY as u64)
        ),
    );

    let mut figures = Map::new();
    target.shut_down(&legit, &mut figures, &mut checks).await;
    let s = sub_figures_pending.await.map_err(|e| e.to_string())?;
    let missing = s.seen.iter().take(distinct as usize).filter(|n| **n == 0).count() as u64
        + distinct.saturating_sub(s.seen.len() as u64);
    checks.check(
        caught_up && s.received == distinct && s.twice == 0 && missing == 0 && s.unexpected == 0,
        format!(
            "subscriber got each id once: {} received = {} ids, {} twice + {} missing + {} unexpected = 0",
            fmt_count(s.received),
            fmt_count(distinct),
            s.twice,
            missing,
            s.unexpected
        ),
    );
    measure::check_legit(&mut checks, &legit);
    figures.insert("capacity".into(), CAPACITY.into());
    figures.insert(
        "client".into(),
        json!({
            "rounds": sent.rounds,
            "commands": sent.sent,
            "replays": sent.replays,
            "new_ids_published": replies.first_ok,
            "replays_refused": replies.dup_nil,
            "mismatched": replies.mismatched,
        }),
    );
    figures.insert(
        "subscriber".into(),
        json!({ "received": s.received, "twice": s.twice, "missing": missing }),
    );
    figures.insert("peaks".into(), serde_json::to_value(peaks).unwrap_or_default());
    figures.insert(
        "commands_per_sec".into(),
        json!((sent.sent as f64 / attack_time.as_secs_f64()) as u64),
    );
    figures.insert("attack_time_us".into(), micros(attack_time).into());

    Ok(Outcome {
        attack: format!(
            "{} PUBLISHONCE: {} ids + {} replays",
            fmt_count(sent.sent),
            fmt_count(distinct),
            fmt_count(sent.replays)
        ),
        limits: format!(
            "{} dups refused; window <= {} ids",
            fmt_count(c.dedup_duplicates),
            fmt_count(peaks.dedup_ids.max(after.dedup_ids))
        ),
        legit,
        checks,
        rss_bound: RssBound::plus_margin(
            CAPACITY as u64 * PER_ID_BYTES,
            format!("{} ids × {} B", fmt_count(CAPACITY as u64), PER_ID_BYTES),
            RSS_MARGIN + distinct,
        ),
        figures,
    })
}
