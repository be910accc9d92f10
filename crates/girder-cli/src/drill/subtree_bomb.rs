//! `subtree-bomb`: one supervision subtree spawn-bombs; its sibling must not notice.
//!
//! A root supervisor holds two sibling subtrees, each a supervisor with a process
//! budget (`max_descendants`): `bombed` ([`BOMB_BUDGET`]) with the worker `bomber`,
//! and `sibling` ([`SIBLING_BUDGET`]) with the worker `server`. The node's limit
//! ([`NODE_MAX_PROCESSES`]) is far above both. Once started, the bomber spawns a
//! linked bomb, starts it bombing too and goes round again — `spawn_bomb`'s tree,
//! inside the subtree: every bomb keeps spawning until refused, then sits on its slot
//! (a leak holding the budget full), except the bomber, which keeps trying for the
//! whole attack. Meanwhile a client of the sibling subtree, every [`SIBLING_PACE`],
//! asks the server to spawn a helper process (counted in the sibling's budget) and
//! calls that helper, which answers once and exits.
//!
//! After the attack the drill terminates the bombed subtree at the root (the links
//! take the bombs down), restarts it, and asks the new bomber to spawn one process:
//! the budget is free again.
//!
//! Bounds:
//! - the bombs hit their budget within [`FILL_TIMEOUT`]: exactly
//!   `BOMB_BUDGET - 1` bombs were spawned (the bomber holds one unit), every
//!   refusal the bombs saw was `BudgetExhausted` naming `bombed` and its limit, and
//!   the node's `subtree_budget_refusals` counted exactly those refusals;
//! - the node-wide limit was never reached: no spawn refused at the process limit,
//!   and the high-water mark stayed below it (live count, sampled every
//!   [`SAMPLE_EVERY`] on a thread of its own, within the baseline plus both
//!   budgets' free units);
//! - the sibling was served: every spawn + call succeeded, p99 within
//!   [`SIBLING_P99_BOUND`];
//! - after the teardown the process count was back to its baseline within
//!   [`RECOVERY_TIMEOUT`] and the restarted bomber could spawn;
//! - RSS grew by at most [`PER_PROCESS_BYTES`] per unit of the bombed budget plus
//!   [`RSS_MARGIN`];
//! - the legitimate client kept working.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder::supervisor::{ChildSpec, Strategy, Supervisor, SupervisorSpec};
use girder::{Actor, Addr, Ctx, ExitReason, Flow, Node, NodeBuilder, Pid, Reply, SpawnError, Weight};
use serde_json::{json, Map};

use super::measure::{
    self, call_error_kind, fmt_bytes, fmt_count, fmt_us, micros, Checks, Latencies, LegitClient, Ping,
};
use super::{Outcome, RssBound};

/// The node's process limit: ten times the bombed subtree's budget.
pub const NODE_MAX_PROCESSES: usize = 100_000;
/// The bombed subtree's `max_descendants`.
pub const BOMB_BUDGET: usize = 10_000;
/// The sibling subtree's `max_descendants`.
pub const SIBLING_BUDGET: usize = 100;
/// How long the bombs may take to exhaust their budget.
pub const FILL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the sampler thread reads the live process count.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// How long the sibling client waits between two requests.
pub const SIBLING_PACE: Duration = Duration::from_millis(2);
/// The sibling client's bound: spawn a helper in the sibling subtree and call it,
/// 99th percentile, while the bomber spins next door.
pub const SIBLING_P99_BOUND: Duration = Duration::from_millis(50);
/// Timeout of the sibling client's and the drill's calls.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the teardown may take to get the node back to its baseline.
pub const RECOVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// RSS allowed per process slot of the bombed budget (task, state, links, table
/// entry): a bomb measured about 2.2 KiB in `spawn-bomb`.
pub const PER_PROCESS_BYTES: u64 = 3 << 10;
/// RSS allowance for the runtime and measurement buffers.
pub const RSS_MARGIN: u64 = 32 << 20;

/// Counters shared by every bomb.
#[derive(Default)]
struct BombShared {
    spawned: AtomicU64,
    /// `BudgetExhausted` naming the bombed subtree and its limit.
    refused: AtomicU64,
    /// Refusals at the node's process limit.
    node_limit: AtomicU64,
    other_errors: AtomicU64,
    first_refusal: std::sync::OnceLock<Instant>,
    stop: AtomicBool,
}

/// A bomb: spawns a linked bomb per `Go` until refused.
struct Bomb {
    root: bool,
    shared: Arc<BombShared>,
}

enum BombMsg {
    /// Spawn once more.
    Go,
    /// Spawn one (unlinked) process and report its pid: the drill's probe.
    Probe(Reply<Result<Pid, SpawnError>>),
}

impl Weight for BombMsg {}

impl Actor for Bomb {
    type Msg = BombMsg;

    async fn handle(&mut self, msg: BombMsg, ctx: &mut Ctx<Self>) -> Flow {
        match msg {
            BombMsg::Probe(reply) => reply.send(ctx.spawn(OneShot).map(|a| a.pid())),
            BombMsg::Go if self.shared.stop.load(Ordering::Relaxed) => {}
            BombMsg::Go => {
                let child = Bomb {
                    root: false,
                    shared: self.shared.clone(),
                };
                match ctx.spawn_link(child) {
                    Ok(child) => {
                        self.shared.spawned.fetch_add(1, Ordering::Relaxed);
                        let _ = child.try_send(BombMsg::Go);
                        let _ = ctx.addr().try_send(BombMsg::Go);
                    }
                    Err(SpawnError::BudgetExhausted { subtree, limit })
                        if &*subtree == "bombed" && limit == BOMB_BUDGET =>
                    {
                        self.shared.refused.fetch_add(1, Ordering::Relaxed);
                        let _ = self.shared.first_refusal.set(Instant::now());
                        if self.root {
                            let _ = ctx.addr().try_send(BombMsg::Go);
                        }
                    }
                    Err(SpawnError::ProcessLimit { .. }) => {
                        self.shared.node_limit.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        self.shared.other_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        Flow::Continue
    }
}

/// A helper that answers one call, then exits.
struct OneShot;

impl Actor for OneShot {
    type Msg = Ping;

    async fn handle(&mut self, Ping(reply): Ping, _ctx: &mut Ctx<Self>) -> Flow {
        reply.send(());
        Flow::Stop(ExitReason::Normal)
    }
}

/// The sibling subtree's worker: spawns a helper per request.
struct Server;

struct SpawnHelper(Reply<Result<Addr<OneShot>, SpawnError>>);

impl Weight for SpawnHelper {}

impl Actor for Server {
    type Msg = SpawnHelper;

    async fn handle(&mut self, SpawnHelper(reply): SpawnHelper, ctx: &mut Ctx<Self>) -> Flow {
        reply.send(ctx.spawn(OneShot));
        Flow::Continue
    }
}

/// The sibling subtree's client: spawn a helper through the server, call it.
async fn sibling_client(node: Node, stop: Arc<AtomicBool>) -> (Latencies, BTreeMap<String, u64>) {
    let mut lat = Latencies::default();
    let mut errors = BTreeMap::new();
    let mut tick = tokio::time::interval(SIBLING_PACE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Acquire) {
        tick.tick().await;
        let t0 = Instant::now();
        let result = match node.whereis_addr::<Server>("server") {
            None => Err("server not registered".to_string()),
            Some(server) => match server.call(SpawnHelper, CALL_TIMEOUT).await {
                Err(e) => Err(format!("server {}", call_error_kind(e))),
                Ok(Err(SpawnError::BudgetExhausted { subtree, .. })) => Err(format!("budget {subtree}")),
                Ok(Err(e)) => Err(format!("spawn {e}")),
                Ok(Ok(helper)) => helper
                    .call(Ping, CALL_TIMEOUT)
                    .await
                    .map_err(|e| format!("helper {}", call_error_kind(e))),
            },
        };
        match result {
            Ok(()) => lat.record(t0.elapsed()),
            Err(kind) => *errors.entry(kind).or_insert(0) += 1,
        }
    }
    (lat, errors)
}

fn subtree(id: &str, budget: usize, worker: ChildSpec) -> ChildSpec {
    ChildSpec::supervisor(
        id,
        SupervisorSpec::new(Strategy::OneForOne)
            .max_descendants(budget)
            .child(worker),
    )
}

/// Waits until the node holds `n` processes; returns whether it got there.
async fn wait_processes(node: &Node, n: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while node.stats().processes != n {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// Runs the drill for `attack`.
pub async fn run(attack: Duration) -> Result<Outcome, String> {
    let node = Node::builder()
        .max_processes(NODE_MAX_PROCESSES)
        .build()
        .map_err(|e| e.to_string())?;
    let ordinary_limit = NODE_MAX_PROCESSES - NodeBuilder::DEFAULT_RESERVED_PROCESSES;
    let legit = LegitClient::start(&node).map_err(|e| e.to_string())?;
    let shared = Arc::new(BombShared::default());
    let bomber_spec = {
        let shared = shared.clone();
        ChildSpec::worker("bomber", move || Bomb {
            root: true,
            shared: shared.clone(),
        })
        .name("bomber")
    };
    let root = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne)
            .child(subtree("bombed", BOMB_BUDGET, bomber_spec))
            .child(subtree(
                "sibling",
                SIBLING_BUDGET,
                ChildSpec::worker("server", || Server).name("server"),
            )),
    )
    .await
    .map_err(|e| e.to_string())?;
    let baseline = node.stats();

    let sampler = measure::LiveSampler::start(&node, SAMPLE_EVERY);
    let stop_sibling = Arc::new(AtomicBool::new(false));
    let sibling = tokio::spawn(sibling_client(node.clone(), stop_sibling.clone()));

    let started = Instant::now();
    node.whereis_addr::<Bomb>("bomber")
        .ok_or("no bomber registered")?
        .try_send(BombMsg::Go)
        .map_err(|e| e.to_string())?;
    while shared.refused.load(Ordering::Relaxed) == 0 && started.elapsed() < FILL_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(attack.saturating_sub(started.elapsed())).await;
    stop_sibling.store(true, Ordering::Release);
    let (sibling_lat, sibling_errors) = sibling.await.map_err(|e| e.to_string())?;

    // Teardown: terminate the bombed subtree (the links take the bombs down), then
    // restart it with a fresh budget and probe it.
    shared.stop.store(true, Ordering::Release);
    let teardown = Instant::now();
    root.terminate_child("bombed").await.map_err(|e| e.to_string())?;
    let torn_down = wait_processes(&node, baseline.processes - 2, RECOVERY_TIMEOUT).await;
    root.restart_child("bombed").await.map_err(|e| e.to_string())?;
    let recovered = torn_down && wait_processes(&node, baseline.processes, RECOVERY_TIMEOUT).await;
    let recovery_time = teardown.elapsed();
    let probe = match node.whereis_addr::<Bomb>("bomber") {
        Some(bomber) => match bomber.call(BombMsg::Probe, CALL_TIMEOUT).await {
            Ok(Ok(pid)) => {
                node.kill(pid);
                let _ = node.watch(pid).await;
                Ok(())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        None => Err("no bomber after the restart".into()),
    };
    let legit = legit.finish().await;
    let (sampled, samples) = sampler.finish()?;
    let after = node.stats();

    let mut checks = Checks::default();
    let spawned = shared.spawned.load(Ordering::Relaxed);
    let refused = shared.refused.load(Ordering::Relaxed);
    let fill_time = shared.first_refusal.get().map(|t| t.duration_since(started));
    checks.check(
        spawned == BOMB_BUDGET as u64 - 1 && fill_time.is_some_and(|t| t <= FILL_TIMEOUT),
        format!(
            "bombs spawned {} = budget {} - the bomber, hit in {} <= {}",
            fmt_count(spawned),
            fmt_count(BOMB_BUDGET as u64),
            fill_time.map_or("never".into(), |t| fmt_us(micros(t))),
            fmt_us(micros(FILL_TIMEOUT))
        ),
    );
    // Read after the teardown: every bomb is gone, so the counters have settled.
    let node_refusals = after.subtree_budget_refusals - baseline.subtree_budget_refusals;
    let other = shared.other_errors.load(Ordering::Relaxed);
    checks.check(
        refused > 0 && node_refusals == refused && other == 0,
        format!(
            "BudgetExhausted(bombed) seen by the bombs {} = subtree_budget_refusals {} (other errors {other})",
            fmt_count(refused),
            fmt_count(node_refusals)
        ),
    );
    let node_limit = shared.node_limit.load(Ordering::Relaxed);
    let spawn_refusals = after.spawn_refusals - baseline.spawn_refusals;
    let live_bound = baseline.processes + (BOMB_BUDGET - 1) + (SIBLING_BUDGET - 1);
    checks.check(
        spawn_refusals == 0
            && node_limit == 0
            && after.processes_hwm < ordinary_limit
            && sampled <= live_bound,
        format!(
            "node limit never reached: {spawn_refusals} refusals, hwm {} < {} (live max sampled {} <= {} = \
             baseline + both budgets, {} samples)",
            fmt_count(after.processes_hwm as u64),
            fmt_count(ordinary_limit as u64),
            fmt_count(sampled as u64),
            fmt_count(live_bound as u64),
            fmt_count(samples)
        ),
    );
    let sibling_summary = sibling_lat.summary();
    let sibling_failed: u64 = sibling_errors.values().sum();
    checks.check(
        sibling_failed == 0 && sibling_summary.count > 0,
        format!(
            "sibling spawn+call errors {sibling_failed} of {} = 0",
            sibling_summary.count + sibling_failed
        ),
    );
    checks.check(
        sibling_summary.p99_us <= micros(SIBLING_P99_BOUND),
        format!(
            "sibling spawn+call p99 {} <= {}",
            fmt_us(sibling_summary.p99_us),
            fmt_us(micros(SIBLING_P99_BOUND))
        ),
    );
    checks.check(
        recovered && probe.is_ok(),
        format!(
            "subtree torn down and restarted, back to {} processes in {} <= {}; restarted bomber spawns: {}",
            baseline.processes,
            fmt_us(micros(recovery_time)),
            fmt_us(micros(RECOVERY_TIMEOUT)),
            probe.as_ref().map_or_else(|e| e.clone(), |()| "ok".into())
        ),
    );
    measure::check_legit(&mut checks, &legit);

    let mut figures = Map::new();
    figures.insert("node_max_processes".into(), NODE_MAX_PROCESSES.into());
    figures.insert("bomb_budget".into(), BOMB_BUDGET.into());
    figures.insert("sibling_budget".into(), SIBLING_BUDGET.into());
    figures.insert("bombs_spawned".into(), spawned.into());
    figures.insert("budget_refusals_seen".into(), refused.into());
    figures.insert("subtree_budget_refusals".into(), node_refusals.into());
    figures.insert("node_spawn_refusals".into(), spawn_refusals.into());
    figures.insert("fill_time_us".into(), fill_time.map(micros).into());
    figures.insert("sampled_max_live".into(), sampled.into());
    figures.insert("processes_hwm".into(), after.processes_hwm.into());
    figures.insert(
        "sibling".into(),
        json!({
            "ok": sibling_summary.count,
            "errors": sibling_errors,
            "latency": sibling_summary,
        }),
    );
    figures.insert("recovery_time_us".into(), micros(recovery_time).into());
    measure::shut_down(&node, &legit, &mut figures, &mut checks).await;

    Ok(Outcome {
        attack: format!("spawn loop tree in a subtree, {} bombs", fmt_count(spawned + 1)),
        limits: format!(
            "{} budget refusals at {}; sibling p99 {}",
            fmt_count(node_refusals),
            fmt_count(BOMB_BUDGET as u64),
            fmt_us(sibling_summary.p99_us)
        ),
        legit,
        checks,
        rss_bound: RssBound::plus_margin(
            BOMB_BUDGET as u64 * PER_PROCESS_BYTES,
            format!(
                "{} budget × {}",
                fmt_count(BOMB_BUDGET as u64),
                fmt_bytes(PER_PROCESS_BYTES)
            ),
            RSS_MARGIN,
        ),
        figures,
    })
}
