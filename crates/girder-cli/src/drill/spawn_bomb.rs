//! `spawn-bomb`: processes that spawn in a loop, against the process limit.
//!
//! The BEAM's `spawn_loop` example, as a tree: the root bomb spawns a linked child,
//! starts it bombing too, and goes round again; every bomb keeps spawning until the
//! node refuses, then sits on its slot (a leak holding the table full) — except the
//! root, which keeps trying for the whole attack. The node has
//! [`MAX_PROCESSES`] slots (scaled down for short attacks, see [`max_processes`]) of
//! which the default headroom ([`NodeBuilder::DEFAULT_RESERVED_PROCESSES`]) is
//! reserved for supervisors.
//!
//! Midway, with the table full, the drill checks that an ordinary spawn is refused
//! and a spawn that may use the reserve (a supervisor's) still starts and answers.
//! At the end it kills the root: the exit travels the links and takes the whole tree
//! down. Then the node must be back to its baseline and spawn and serve normally.
//!
//! Bounds:
//! - the live count, sampled every [`SAMPLE_EVERY`] on a thread of its own, and the
//!   node's own high-water mark never exceeded the ordinary limit (+1 for the
//!   drill's reserve spawn), and the bombs reached it within [`FILL_TIMEOUT`];
//! - every refusal was counted: the node's `spawn_refusals` = the refusals the bombs
//!   and the drill saw;
//! - at the limit an ordinary spawn was refused and a reserve spawn started and
//!   answered a call;
//! - after the root's death the process count was back to the baseline within
//!   [`RECOVERY_TIMEOUT`], `spawned - exited` = live, and a fresh spawn answered a call;
//! - RSS grew by at most [`PER_PROCESS_BYTES`] per slot plus [`RSS_MARGIN`];
//! - the legitimate client kept working through the bomb and the teardown.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder::{Actor, Ctx, Flow, Node, NodeBuilder, SpawnError, SpawnOptions, Weight};
use serde_json::{json, Map};

use super::measure::{self, fmt_bytes, fmt_count, fmt_si, fmt_us, micros, Checks, Echo, LegitClient, Ping};
use super::{Outcome, RssBound};

/// The node's process limit (the BEAM's `+P`) for the default 5 s attack. Shorter
/// attacks scale it down in proportion, to no less than [`MIN_MAX_PROCESSES`], so
/// that the tree still fills the table early in the attack.
pub const MAX_PROCESSES: usize = 100_000;
/// The smallest process limit a short attack scales down to.
pub const MIN_MAX_PROCESSES: usize = 10_000;
/// How long the bombs may take to fill the table.
pub const FILL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the sampler thread reads the live process count.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// How long the tree may take to die and the node to get back to its baseline.
pub const RECOVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// RSS allowed per process slot (task, process state, links, table entry): a bomb
/// measured about 2.2 KiB here.
pub const PER_PROCESS_BYTES: u64 = 3 << 10;
/// RSS allowance for the runtime and measurement buffers.
pub const RSS_MARGIN: u64 = 32 << 20;
/// Timeout of the drill's own calls (reserve spawn, fresh spawn).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Counters shared by every bomb.
#[derive(Default)]
struct BombShared {
    spawned: AtomicU64,
    refused: AtomicU64,
    other_errors: AtomicU64,
    stop: AtomicBool,
}

/// One bomb: spawns a linked bomb per message to itself until refused.
struct Bomb {
    root: bool,
    shared: Arc<BombShared>,
}

/// The bomb's only message: spawn once more.
struct Go;

impl Weight for Go {}

impl Actor for Bomb {
    type Msg = Go;

    async fn handle(&mut self, _: Go, ctx: &mut Ctx<Self>) -> Flow {
        if self.shared.stop.load(Ordering::Relaxed) {
            return Flow::Continue;
        }
        let child = Bomb {
            root: false,
            shared: self.shared.clone(),
        };
        match ctx.spawn_link(child) {
            Ok(child) => {
                self.shared.spawned.fetch_add(1, Ordering::Relaxed);
                let _ = child.try_send(Go);
                let _ = ctx.addr().try_send(Go);
            }
            Err(SpawnError::ProcessLimit { .. }) => {
                self.shared.refused.fetch_add(1, Ordering::Relaxed);
                if self.root {
                    let _ = ctx.addr().try_send(Go);
                }
            }
            Err(_) => {
                self.shared.other_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        Flow::Continue
    }
}

/// What the drill's probes at the limit saw.
struct AtLimit {
    reached: bool,
    ordinary_refused: bool,
    reserve_served: bool,
}

/// Waits for the bombs to fill the table, then probes it from outside.
async fn probe_at_limit(node: &Node, shared: &BombShared, deadline: Instant) -> AtLimit {
    while shared.refused.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let reached = shared.refused.load(Ordering::Relaxed) > 0;
    let ordinary_refused = matches!(node.spawn(Echo), Err(SpawnError::ProcessLimit { .. }));
    let reserve_served = match node.spawn_with(Echo, SpawnOptions::new().use_reserve()) {
        Ok(echo) => {
            let ok = echo.call(Ping, PROBE_TIMEOUT).await.is_ok();
            node.kill(echo.pid());
            let _ = node.watch(echo.pid()).await;
            ok
        }
        Err(_) => false,
    };
    AtLimit {
        reached,
        ordinary_refused,
        reserve_served,
    }
}

/// The process limit for an attack of `attack`.
pub fn max_processes(attack: Duration) -> usize {
    let scaled = MAX_PROCESSES as u128 * attack.as_millis() / super::DEFAULT_DURATION.as_millis();
    (scaled as usize).clamp(MIN_MAX_PROCESSES, MAX_PROCESSES)
}

/// Runs the drill for `attack`.
pub async fn run(attack: Duration) -> Result<Outcome, String> {
    let max_processes = max_processes(attack);
    let node = Node::builder()
        .max_processes(max_processes)
        .build()
        .map_err(|e| e.to_string())?;
    let reserved = NodeBuilder::DEFAULT_RESERVED_PROCESSES;
    let ordinary_limit = max_processes - reserved;
    let legit = LegitClient::start(&node).map_err(|e| e.to_string())?;
    let baseline = node.stats();

    let sampler = measure::LiveSampler::start(&node, SAMPLE_EVERY);

    let shared = Arc::new(BombShared::default());
    let started = Instant::now();
    let root = node
        .spawn(Bomb {
            root: true,
            shared: shared.clone(),
        })
        .map_err(|e| e.to_string())?;
    root.try_send(Go).map_err(|e| e.to_string())?;
    let at_limit = probe_at_limit(&node, &shared, started + FILL_TIMEOUT).await;
    let fill_time = started.elapsed();
    tokio::time::sleep(attack.saturating_sub(started.elapsed())).await;

    // Defuse: stop the bombs, kill the root; the links take the tree down.
    shared.stop.store(true, Ordering::Release);
    let teardown = Instant::now();
    node.kill(root.pid());
    let mut recovered = false;
    while teardown.elapsed() < RECOVERY_TIMEOUT {
        if node.stats().processes == baseline.processes {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let recovery_time = teardown.elapsed();
    let legit = legit.finish().await;
    let (sampled, samples) = sampler.finish()?;

    let fresh_ok = match node.spawn(Echo) {
        Ok(echo) => echo.call(Ping, PROBE_TIMEOUT).await.is_ok(),
        Err(_) => false,
    };
    let after = node.stats();

    let mut checks = Checks::default();
    let allowed = ordinary_limit + 1;
    checks.check(
        sampled <= allowed && after.processes_hwm <= allowed,
        format!(
            "live max sampled {} / hwm {} <= ordinary limit {} + 1 reserve probe ({} samples)",
            fmt_count(sampled as u64),
            fmt_count(after.processes_hwm as u64),
            fmt_count(ordinary_limit as u64),
            fmt_count(samples)
        ),
    );
    checks.check(
        at_limit.reached && after.processes_hwm >= ordinary_limit,
        format!(
            "limit reached in {} <= {} (hwm {} >= {})",
            fmt_us(micros(fill_time)),
            fmt_us(micros(FILL_TIMEOUT)),
            fmt_count(after.processes_hwm as u64),
            fmt_count(ordinary_limit as u64)
        ),
    );
    let refused = shared.refused.load(Ordering::Relaxed);
    let node_refusals = after.spawn_refusals - baseline.spawn_refusals;
    let probe_refusals = u64::from(at_limit.ordinary_refused);
    checks.check(
        node_refusals == refused + probe_refusals,
        format!(
            "spawn refusals counted {} = bombs' {} + drill's {probe_refusals}",
            fmt_count(node_refusals),
            fmt_count(refused)
        ),
    );
    let other = shared.other_errors.load(Ordering::Relaxed);
    checks.check(other == 0, format!("other spawn errors {other} = 0"));
    checks.check(
        at_limit.ordinary_refused && at_limit.reserve_served,
        format!(
            "at the limit: ordinary spawn refused {}, reserve spawn served {}",
            at_limit.ordinary_refused, at_limit.reserve_served
        ),
    );
    checks.check(
        recovered,
        format!(
            "back to {} processes in {} <= {}",
            baseline.processes,
            fmt_us(micros(recovery_time)),
            fmt_us(micros(RECOVERY_TIMEOUT))
        ),
    );
    checks.check(
        after.spawned - after.exited == after.processes as u64,
        format!(
            "spawned {} - exited {} = live {}",
            after.spawned, after.exited, after.processes
        ),
    );
    checks.check(fresh_ok, format!("fresh spawn + call after the bomb: {fresh_ok}"));
    measure::check_legit(&mut checks, &legit);

    let bombs = shared.spawned.load(Ordering::Relaxed) + 1;
    let mut figures = Map::new();
    figures.insert("max_processes".into(), max_processes.into());
    figures.insert("reserved_processes".into(), reserved.into());
    figures.insert("bombs_spawned".into(), bombs.into());
    figures.insert("spawn_refusals".into(), node_refusals.into());
    figures.insert("sampled_max_live".into(), sampled.into());
    figures.insert("processes_hwm".into(), after.processes_hwm.into());
    figures.insert("fill_time_us".into(), micros(fill_time).into());
    figures.insert("recovery_time_us".into(), micros(recovery_time).into());
    figures.insert(
        "at_limit".into(),
        json!({
            "ordinary_spawn_refused": at_limit.ordinary_refused,
            "reserve_spawn_served": at_limit.reserve_served,
        }),
    );
    figures.insert("exits_killed".into(), after.exits_killed.into());
    figures.insert("fresh_spawn_served".into(), fresh_ok.into());
    measure::shut_down(&node, &legit, &mut figures, &mut checks).await;

    Ok(Outcome {
        attack: format!("spawn-loop tree: {} spawned", fmt_count(bombs)),
        limits: format!(
            "{} refused at {} live; back in {}",
            fmt_si(node_refusals),
            fmt_count(after.processes_hwm as u64),
            fmt_us(micros(recovery_time))
        ),
        legit,
        checks,
        rss_bound: RssBound::plus_margin(
            max_processes as u64 * PER_PROCESS_BYTES,
            format!(
                "{} slots × {}",
                fmt_count(max_processes as u64),
                fmt_bytes(PER_PROCESS_BYTES)
            ),
            RSS_MARGIN,
        ),
        figures,
    })
}
