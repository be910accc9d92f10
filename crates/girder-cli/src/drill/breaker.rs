//! `breaker`: the key-value store goes slow; the circuit breaker in front of it opens,
//! fails calls fast, and closes again once the store is back.
//!
//! The server runs with `enable_debug_command`, a keyspace timeout of
//! [`KEYSPACE_TIMEOUT`], and a breaker that opens after [`FAILURE_THRESHOLD`]
//! consecutive failures and probes again after [`RESET_TIMEOUT`]. [`CLIENTS`]
//! connections each do a `SET` or a `GET` every millisecond. After [`WARMUP`] the drill
//! sends `DEBUG SLEEP` (every keyspace shard sleeps for [`sleep_for`] of the attack:
//! 2 s at the default 5 s): the first calls time out, the breaker opens and the calls
//! after them are refused at once (`ERR keyspace unavailable: circuit breaker open`);
//! once the store wakes up, a probe gets through and the breaker closes. The clients
//! go on until the attack is over and the breaker is closed again. The legitimate
//! client pings (no keyspace) every millisecond throughout.
//!
//! Bounds:
//! - before the sleep, every call succeeded;
//! - the first calls timed out (at least [`FAILURE_THRESHOLD`]), and no more than the
//!   breaker lets through: at most ([`FAILURE_THRESHOLD`] + [`CLIENTS`]) per opening;
//! - the breaker opened, and its refusals were fast: p99 ≤ [`FAST_FAIL_P99_BOUND`]
//!   (half the keyspace timeout they spare the caller);
//! - the replies the clients read = the server's counters: timeouts (and other
//!   keyspace failures) = `keyspace_failures`, fast refusals = `breaker_rejections`;
//! - it closed again: state `closed` at the end and calls succeeding, the first
//!   within [`RECOVERY_BOUND`] of the store waking up;
//! - the legitimate client, which never touches the store, kept working;
//! - RSS grew by at most [`RSS_MARGIN`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder_net::server::{BreakerSettings, KeyspaceConfig, ServerConfig};
use parking_lot::Mutex;
use serde_json::{json, Map};

use super::measure::{self, fmt_bytes, fmt_count, fmt_us, micros, Checks, Latencies, NetLegitClient};
use super::net::{io_error_kind, NetTarget, Reply, RespConn};
use super::{Outcome, RssBound};

/// The keyspace call timeout.
pub const KEYSPACE_TIMEOUT: Duration = Duration::from_millis(100);
/// Consecutive failures that open the breaker.
pub const FAILURE_THRESHOLD: u32 = 5;
/// How long the breaker stays open before a probe.
pub const RESET_TIMEOUT: Duration = Duration::from_secs(1);
/// Client connections doing `SET`/`GET`.
pub const CLIENTS: usize = 4;
/// Calls before the store is put to sleep.
pub const WARMUP: Duration = Duration::from_millis(200);
/// Bound on the breaker's refusals, 99th percentile: half the timeout they spare.
pub const FAST_FAIL_P99_BOUND: Duration = Duration::from_millis(50);
/// From the store waking up to the first call succeeding again: the breaker may
/// have just reopened (a probe timing out at the end of the sleep), so one reset
/// timeout, one keyspace timeout, and slack.
pub const RECOVERY_BOUND: Duration = Duration::from_millis(2_100);
/// RSS allowance for the runtime, buffers and measurement.
pub const RSS_MARGIN: u64 = 32 << 20;

/// How long the store sleeps: 2 s at the default attack, less for short attacks
/// (at least 300 ms, enough for the breaker to open).
pub fn sleep_for(attack: Duration) -> Duration {
    (attack * 2 / 5).clamp(Duration::from_millis(300), Duration::from_secs(2))
}

const OPEN_PREFIX: &str = "ERR keyspace unavailable: circuit breaker open";
const FAIL_PREFIX: &str = "ERR keyspace unavailable";

#[derive(Default)]
struct Tally {
    ok_before: u64,
    errors_before: u64,
    ok_during: u64,
    ok_after_wake: u64,
    first_ok_after_wake: Option<Instant>,
    failures: u64,
    failures_by_reason: BTreeMap<String, u64>,
    fast_fails: u64,
    other: BTreeMap<String, u64>,
    ok_latency: Latencies,
    failure_latency: Latencies,
    fast_fail_latency: Latencies,
}

struct Phases {
    slept_at: Mutex<Option<Instant>>,
    wakes_at: Mutex<Option<Instant>>,
}

async fn client(
    to: SocketAddr,
    id: usize,
    stop: Arc<AtomicBool>,
    phases: Arc<Phases>,
    tally: Arc<Mutex<Tally>>,
) {
    let mut conn = match RespConn::open(to, None).await {
        Ok(c) => c,
        Err(e) => {
            *tally
                .lock()
                .other
                .entry(format!("connect_{}", io_error_kind(&e)))
                .or_insert(0) += 1;
            return;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        tick.tick().await;
        n += 1;
        let key = format!("key-{id}-{}", n % 64);
        let t0 = Instant::now();
        let r = if n % 2 == 0 {
            conn.call(&[b"SET", key.as_bytes(), b"value"]).await
        } else {
            conn.call(&[b"GET", key.as_bytes()]).await
        };
        let took = t0.elapsed();
        let slept = *phases.slept_at.lock();
        let wakes = *phases.wakes_at.lock();
        let mut t = tally.lock();
        match r {
            Ok(Reply::Simple(_)) | Ok(Reply::Bulk(_)) => {
                t.ok_latency.record(took);
                match (slept, wakes) {
                    (None, _) => t.ok_before += 1,
                    (Some(_), Some(w)) if t0 >= w => {
                        t.ok_after_wake += 1;
                        t.first_ok_after_wake.get_or_insert(t0 + took);
                    }
                    _ => t.ok_during += 1,
                }
            }
            Ok(Reply::Error(e)) if e.starts_with(OPEN_PREFIX) => {
                t.fast_fails += 1;
                t.fast_fail_latency.record(took);
                if slept.is_none() {
                    t.errors_before += 1;
                }
            }
            Ok(Reply::Error(e)) if e.starts_with(FAIL_PREFIX) => {
                t.failures += 1;
                t.failure_latency.record(took);
                *t.failures_by_reason.entry(e).or_insert(0) += 1;
                if slept.is_none() {
                    t.errors_before += 1;
                }
            }
            Ok(r) => *t.other.entry(format!("{r:?}")).or_insert(0) += 1,
            Err(e) => {
                *t.other.entry(io_error_kind(&e).to_string()).or_insert(0) += 1;
                return;
            }
        }
    }
}

/// Runs the drill for `attack`.
pub async fn run(attack: Duration) -> Result<Outcome, String> {
    let config = ServerConfig {
        port: 0,
        enable_debug_command: true,
        keyspace: KeyspaceConfig {
            timeout_ms: micros(KEYSPACE_TIMEOUT) / 1000,
            ..KeyspaceConfig::default()
        },
        breaker: BreakerSettings {
            failure_threshold: FAILURE_THRESHOLD,
            reset_timeout_ms: micros(RESET_TIMEOUT) / 1000,
            half_open_probes: 1,
        },
        ..ServerConfig::default()
    };
    let target = NetTarget::start(config).await?;
    let to = target.addr();
    let legit = NetLegitClient::start(to, None).await?;
    let mut admin = RespConn::open(to, None).await.map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let phases = Arc::new(Phases {
        slept_at: Mutex::new(None),
        wakes_at: Mutex::new(None),
    });
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| tokio::spawn(client(to, i, stop.clone(), phases.clone(), tally.clone())))
        .collect();
    tokio::time::sleep(WARMUP).await;

    let sleep = sleep_for(attack);
    let secs = format!("{:.3}", sleep.as_secs_f64());
    *phases.slept_at.lock() = Some(Instant::now());
    let r = admin
        .call(&[b"DEBUG", b"SLEEP", secs.as_bytes()])
        .await
        .map_err(|e| format!("DEBUG SLEEP: {e}"))?;
    if r != Reply::Simple("OK".into()) {
        return Err(format!("DEBUG SLEEP answered {r:?}"));
    }
    let wakes = Instant::now() + sleep;
    *phases.wakes_at.lock() = Some(wakes);

    // Until the attack is over and the breaker has closed again after the wake-up
    // (bounded).
    let attack_end = started + WARMUP + attack;
    let give_up = wakes + RECOVERY_BOUND + Duration::from_secs(2);
    let mut recovered_at = None;
    loop {
        let now = Instant::now();
        if recovered_at.is_none() && now > wakes {
            let closed = target.stats().breaker_state == "closed";
            if closed && tally.lock().ok_after_wake > 0 {
                recovered_at = Some(now);
            }
        }
        let settled = recovered_at.is_some_and(|r| now >= r + Duration::from_millis(200));
        if (now >= attack_end && settled) || now >= give_up.max(attack_end) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Release);
    for c in clients {
        c.await.map_err(|e| e.to_string())?;
    }
    let attack_time = started.elapsed();
    let legit = legit.finish().await;
    drop(admin);
    let after = target.stats();
    let c = &after.counters;
    let t = std::mem::take(&mut *tally.lock());

    let mut checks = Checks::default();
    checks.check(
        t.ok_before > 0 && t.errors_before == 0,
        format!(
            "before the sleep: {} ok, {} errors = 0",
            t.ok_before, t.errors_before
        ),
    );
    let slow_bound = after.breaker_opened * u64::from(FAILURE_THRESHOLD + CLIENTS as u32);
    checks.check(
        t.failures >= u64::from(FAILURE_THRESHOLD) && t.failures <= slow_bound,
        format!(
            "calls that failed slowly {} >= threshold {FAILURE_THRESHOLD} and <= {} openings × ({FAILURE_THRESHOLD} + {CLIENTS} clients) = {slow_bound}",
            t.failures, after.breaker_opened
        ),
    );
    let ff = t.fast_fail_latency.summary();
    checks.check(
        after.breaker_opened >= 1 && t.fast_fails > 0 && ff.p99_us <= micros(FAST_FAIL_P99_BOUND),
        format!(
            "breaker opened {} times; {} fast refusals, p99 {} <= {} (keyspace timeout {})",
            after.breaker_opened,
            fmt_count(t.fast_fails),
            fmt_us(ff.p99_us),
            fmt_us(micros(FAST_FAIL_P99_BOUND)),
            fmt_us(micros(KEYSPACE_TIMEOUT))
        ),
    );
    checks.check(
        t.failures == c.keyspace_failures && t.fast_fails == c.breaker_rejections,
        format!(
            "failures read {} = keyspace_failures {}; refusals read {} = breaker_rejections {}",
            t.failures, c.keyspace_failures, t.fast_fails, c.breaker_rejections
        ),
    );
    let recovery = t.first_ok_after_wake.map(|f| f.saturating_duration_since(wakes));
    checks.check(
        after.breaker_state == "closed" && recovery.is_some_and(|r| r <= RECOVERY_BOUND),
        format!(
            "closed again: state {}, first success {} after the wake-up <= {}",
            after.breaker_state,
            recovery.map_or("never".into(), |r| fmt_us(micros(r))),
            fmt_us(micros(RECOVERY_BOUND))
        ),
    );
    let other: u64 = t.other.values().sum();
    checks.check(other == 0, format!("other replies {other} = 0 ({:?})", t.other));
    measure::check_legit(&mut checks, &legit);

    let mut figures = Map::new();
    figures.insert(
        "config".into(),
        json!({
            "keyspace_timeout_ms": micros(KEYSPACE_TIMEOUT) / 1000,
            "failure_threshold": FAILURE_THRESHOLD,
            "reset_timeout_ms": micros(RESET_TIMEOUT) / 1000,
            "sleep_ms": micros(sleep) / 1000,
            "clients": CLIENTS,
        }),
    );
    figures.insert(
        "calls".into(),
        json!({
            "ok_before": t.ok_before,
            "ok_during": t.ok_during,
            "ok_after_wake": t.ok_after_wake,
            "failed_slowly": t.failures,
            "failures_by_reason": t.failures_by_reason,
            "fast_refusals": t.fast_fails,
            "other": t.other,
            "ok_latency": t.ok_latency.summary(),
            "failure_latency": t.failure_latency.summary(),
            "fast_fail_latency": ff,
        }),
    );
    figures.insert("recovery_us".into(), recovery.map_or(0, micros).into());
    figures.insert("attack_time_us".into(), micros(attack_time).into());
    target.shut_down(&legit, &mut figures, &mut checks).await;

    Ok(Outcome {
        attack: format!(
            "store asleep {} under {CLIENTS} GET/SET clients",
            fmt_us(micros(sleep))
        ),
        limits: format!(
            "opened {}x: {} slow fails, {} fast (p99 {})",
            after.breaker_opened,
            t.failures,
            fmt_count(t.fast_fails),
            fmt_us(ff.p99_us)
        ),
        legit,
        checks,
        rss_bound: RssBound {
            bytes: RSS_MARGIN,
            why: format!("{} margin (a few connections)", fmt_bytes(RSS_MARGIN)),
        },
        figures,
    })
}
