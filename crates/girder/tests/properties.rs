//! Property tests for girder's two bounds: the process table and the mailbox.
//!
//! - `process_limit_is_never_exceeded`: concurrent spawners (and concurrent exits:
//!   normal stops, panics, kills, failed inits) on a multi-thread runtime never push the
//!   live count past the limit, every spawn either succeeds or is refused with
//!   `ProcessLimit`, the count tracks live processes exactly, and it returns to zero.
//! - `backpressure_loses_and_duplicates_nothing`: random senders, message counts,
//!   capacities and byte bounds under `Overflow::Backpressure` with `send().await`
//!   (some senders give up and retry on a timeout): every message arrives exactly
//!   once, each sender's messages in order.
//! - `drop_oldest_keeps_the_newest`: with the actor blocked, a flood leaves exactly the
//!   newest messages that fit the bounds, in order; the rest are counted as dropped.
//! - `counters_add_up_for_every_policy`: random operation sequences (try_send, send,
//!   priority sends, calls that expire, cancelled waiting senders, releasing a gated
//!   actor) against every policy, checked step by step against a reference model of
//!   the mailbox's specification: every outcome, every counter, the lengths, the
//!   bytes, the high-water marks and the order in which messages are handled.
//!
//! Case counts are modest so the file runs in seconds; nothing asserts on wall-clock
//! time (the only clocks are hang guards that turn a stuck test into a failure).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use girder::{
    Actor, Addr, CallError, Ctx, ExitReason, Flow, Mailbox, MailboxStats, Node, NodeStats, Overflow, Reply,
    SendError, SpawnError, SpawnOptions, Weight,
};
use proptest::prelude::*;
use tokio::sync::Semaphore;

// ----- helpers -----

const CRASH: &str = "girder-properties: deliberate crash";

/// Deliberate crashes would print a panic message each; keep the output readable
/// (every other panic still goes to the default hook).
fn quiet_deliberate_crashes() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("");
            if !msg.contains(CRASH) {
                previous(info);
            }
        }));
    });
}

/// `cases` cases; shrinking a failure stops after a minute (a case that hangs until
/// its guard fires is slow to shrink).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    }
}

fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Waits until `cond` holds. A hang guard, not a timing assertion: the bound is far
/// above anything a correct run needs.
async fn wait_until(cond: impl FnMut() -> bool, what: impl Fn() -> String) {
    wait_until_bounded(cond, what, 2_000, 10_000).await
}

/// Waits until `cond` holds, yielding `yields` times, then sleeping up to `sleeps` ms.
async fn wait_until_bounded(
    mut cond: impl FnMut() -> bool,
    what: impl Fn() -> String,
    yields: u32,
    sleeps: u32,
) {
    for i in 0..yields + sleeps {
        if cond() {
            return;
        }
        if i < yields {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    panic!("stuck waiting: {}", what());
}

fn mailbox_of<A: Actor>(node: &Node, addr: &Addr<A>) -> MailboxStats {
    node.process_info(addr.pid())
        .expect("the process is alive")
        .mailbox
}

// ===================================================================================
// 1. The process limit is never exceeded
// ===================================================================================

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Told to stop: exits `Normal`.
    Stop,
    /// Panics in its handler: exits `Panic`.
    Crash,
    /// Killed by the node right after the spawn (possibly before it first runs).
    Kill,
    /// `init` fails: exits with a custom reason.
    InitFails,
    /// Stays alive until the end of the run.
    Hold,
}

struct Worker {
    fail_init: bool,
}

enum WorkerMsg {
    Stop,
    Crash,
}

impl Weight for WorkerMsg {}

impl Actor for Worker {
    type Msg = WorkerMsg;

    async fn init(&mut self, _ctx: &mut Ctx<Self>) -> Result<(), ExitReason> {
        if self.fail_init {
            Err(ExitReason::custom("init refused"))
        } else {
            Ok(())
        }
    }

    async fn handle(&mut self, msg: WorkerMsg, _ctx: &mut Ctx<Self>) -> Flow {
        match msg {
            WorkerMsg::Stop => Flow::Stop(ExitReason::Normal),
            WorkerMsg::Crash => panic!("{CRASH}"),
        }
    }
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        3 => Just(Fate::Stop),
        2 => Just(Fate::Crash),
        2 => Just(Fate::Kill),
        1 => Just(Fate::InitFails),
        2 => Just(Fate::Hold),
    ]
}

#[derive(Default)]
struct SpawnerReport {
    spawned: u64,
    refused: u64,
    by_fate: HashMap<&'static str, u64>,
    held: Vec<Addr<Worker>>,
}

fn fate_name(f: Fate) -> &'static str {
    match f {
        Fate::Stop => "stop",
        Fate::Crash => "crash",
        Fate::Kill => "kill",
        Fate::InitFails => "init",
        Fate::Hold => "hold",
    }
}

async fn spawner(node: Node, cap: usize, plan: Vec<Fate>) -> SpawnerReport {
    let mut r = SpawnerReport::default();
    for f in plan {
        match node.spawn(Worker {
            fail_init: f == Fate::InitFails,
        }) {
            Ok(addr) => {
                r.spawned += 1;
                *r.by_fate.entry(fate_name(f)).or_default() += 1;
                match f {
                    Fate::Stop => addr.try_send(WorkerMsg::Stop).unwrap(),
                    Fate::Crash => addr.try_send(WorkerMsg::Crash).unwrap(),
                    Fate::Kill => node.kill(addr.pid()),
                    Fate::InitFails => {}
                    Fate::Hold => r.held.push(addr),
                }
            }
            Err(SpawnError::ProcessLimit { limit }) => {
                assert_eq!(limit, cap, "the refusal names the limit that applied");
                r.refused += 1;
            }
            Err(e) => panic!("a spawn either succeeds or hits the process limit, got {e:?}"),
        }
        let live = node.stats().processes;
        assert!(live <= cap, "{live} live processes over the limit of {cap}");
        tokio::task::yield_now().await;
    }
    r
}

async fn wait_for_exits(node: &Node, exited: u64) -> NodeStats {
    wait_until(
        || node.stats().exited == exited,
        || format!("{exited} exits, stats: {:?}", node.stats()),
    )
    .await;
    node.stats()
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn process_limit_is_never_exceeded(
        limit in 1usize..=12,
        reserved_seed in 0usize..3,
        plans in prop::collection::vec(prop::collection::vec(fate(), 1..40), 2..8),
    ) {
        quiet_deliberate_crashes();
        let reserved = reserved_seed % limit;
        let cap = limit - reserved;
        multi_thread_runtime().block_on(async move {
            let node = Node::builder()
                .max_processes(limit)
                .reserved_processes(reserved)
                .build()
                .unwrap();

            // Sample the live count throughout, from its own task.
            let done = Arc::new(AtomicBool::new(false));
            let sampler = tokio::spawn({
                let (node, done) = (node.clone(), done.clone());
                async move {
                    let mut max_seen = 0;
                    let mut samples = 0u64;
                    while !done.load(Ordering::Acquire) {
                        let live = node.stats().processes;
                        assert!(live <= cap, "sampled {live} live processes over the limit of {cap}");
                        max_seen = max_seen.max(live);
                        samples += 1;
                        tokio::task::yield_now().await;
                    }
                    (max_seen, samples)
                }
            });

            let tasks: Vec<_> = plans
                .into_iter()
                .map(|plan| tokio::spawn(spawner(node.clone(), cap, plan)))
                .collect();
            let mut spawned = 0;
            let mut refused = 0;
            let mut by_fate: HashMap<&'static str, u64> = HashMap::new();
            let mut held = Vec::new();
            for t in tasks {
                let r = t.await.unwrap();
                spawned += r.spawned;
                refused += r.refused;
                for (k, v) in r.by_fate {
                    *by_fate.entry(k).or_default() += v;
                }
                held.extend(r.held);
            }
            let count = |name| by_fate.get(name).copied().unwrap_or(0);

            // Every process not held exits; then live = spawned - exited, exactly.
            let held_n = held.len() as u64;
            let s = wait_for_exits(&node, spawned - held_n).await;
            assert_eq!(s.spawned, spawned);
            assert_eq!(s.spawn_refusals, refused);
            assert_eq!(s.processes as u64, s.spawned - s.exited, "live = spawned - exited");
            assert_eq!(s.processes as u64, held_n);
            assert_eq!(s.exits_normal, count("stop"));
            assert_eq!(s.panics, count("crash"));
            assert_eq!(s.exits_killed, count("kill"));
            assert_eq!(s.exits_other, count("init"));
            assert!(s.processes_hwm <= cap, "high-water mark {} over {cap}", s.processes_hwm);

            // The survivors end too, half by a crash, half by a kill.
            for (i, a) in held.iter().enumerate() {
                if i % 2 == 0 {
                    a.try_send(WorkerMsg::Crash).unwrap();
                } else {
                    node.kill(a.pid());
                }
            }
            drop(held);
            let s = wait_for_exits(&node, spawned).await;
            assert_eq!(s.processes, 0, "back to the baseline: {s:?}");
            assert_eq!(s.mailbox_bytes, 0);
            assert_eq!(s.panics + s.exits_killed, count("crash") + count("kill") + held_n);

            done.store(true, Ordering::Release);
            let (max_seen, samples) = sampler.await.unwrap();
            assert!(max_seen <= cap && samples > 0);

            // The node is fully usable again: exactly `cap` ordinary spawns fit.
            let again: Vec<_> = (0..cap)
                .map(|_| node.spawn(Worker { fail_init: false }).expect("room after the storm"))
                .collect();
            assert!(matches!(
                node.spawn(Worker { fail_init: false }),
                Err(SpawnError::ProcessLimit { limit: l }) if l == cap
            ));
            if reserved > 0 {
                // The reserved headroom is still there for those who ask for it.
                let sup = node
                    .spawn_with(Worker { fail_init: false }, SpawnOptions::new().use_reserve())
                    .expect("reserved headroom");
                sup.try_send(WorkerMsg::Stop).unwrap();
            }
            for a in &again {
                a.try_send(WorkerMsg::Stop).unwrap();
            }
            let extra = u64::from(reserved > 0);
            let s = wait_for_exits(&node, spawned + cap as u64 + extra).await;
            assert_eq!(s.processes, 0);
            node.shutdown().await;
        });
    }
}

// ===================================================================================
// 2. Backpressure: nothing lost, nothing duplicated, per-sender order kept
// ===================================================================================

enum BpMsg {
    Data(u32, u32),
    Dump(Reply<Vec<(u32, u32)>>),
}

impl Weight for BpMsg {}

struct Recorder {
    log: Vec<(u32, u32)>,
    yield_every: u32,
}

impl Actor for Recorder {
    type Msg = BpMsg;

    async fn handle(&mut self, msg: BpMsg, _ctx: &mut Ctx<Self>) -> Flow {
        match msg {
            BpMsg::Data(s, i) => {
                self.log.push((s, i));
                // A slower consumer than the senders: the mailbox fills and senders wait.
                if i % self.yield_every == 0 {
                    tokio::task::yield_now().await;
                }
            }
            BpMsg::Dump(r) => r.send(std::mem::take(&mut self.log)),
        }
        Flow::Continue
    }
}

#[derive(Clone, Debug)]
struct SenderPlan {
    messages: u32,
    /// Give up waiting after this many microseconds and send again (`None`: wait).
    retry_after_us: Option<u64>,
}

fn sender_plan() -> impl Strategy<Value = SenderPlan> {
    (1u32..60, prop::option::weighted(0.3, 1u64..200)).prop_map(|(messages, retry_after_us)| SenderPlan {
        messages,
        retry_after_us,
    })
}

async fn bp_sender(addr: Addr<Recorder>, id: u32, plan: SenderPlan) -> u64 {
    let mut retries = 0;
    for i in 0..plan.messages {
        match plan.retry_after_us {
            None => addr
                .send(BpMsg::Data(id, i))
                .await
                .unwrap_or_else(|e| panic!("send under backpressure failed: {e:?}")),
            // A send that times out was not delivered (the message went down with the
            // waiting future), so sending it again must not duplicate it.
            Some(us) => loop {
                let t = Duration::from_micros(us);
                match tokio::time::timeout(t, addr.send(BpMsg::Data(id, i))).await {
                    Ok(r) => break r.unwrap_or_else(|e| panic!("send failed: {e:?}")),
                    Err(_) => retries += 1,
                }
            },
        }
    }
    retries
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn backpressure_loses_and_duplicates_nothing(
        plans in prop::collection::vec(sender_plan(), 1..=6),
        // Lanes of 16 and more take messages ahead in batches (`mailbox` docs).
        capacity in prop_oneof![1usize..=8, 16usize..=64],
        byte_slots in prop::option::of(1usize..=8),
        yield_every in 1u32..=4,
    ) {
        let weight = std::mem::size_of::<BpMsg>();
        let max_bytes = byte_slots.map_or(Mailbox::DEFAULT_MAX_BYTES, |k| k * weight);
        multi_thread_runtime().block_on(async move {
            let node = Node::builder().build().unwrap();
            let mailbox = Mailbox::bounded(capacity).max_bytes(max_bytes).overflow(Overflow::Backpressure);
            let addr = node
                .spawn_with(Recorder { log: Vec::new(), yield_every }, SpawnOptions::new().mailbox(mailbox))
                .unwrap();

            let senders: Vec<_> = plans
                .iter()
                .enumerate()
                .map(|(id, p)| tokio::spawn(bp_sender(addr.clone(), id as u32, p.clone())))
                .collect();
            for s in senders {
                s.await.unwrap();
            }
            // Every send has completed, so a request queued now comes after all of them.
            let log = addr.call(BpMsg::Dump, Duration::from_secs(30)).await.unwrap();

            let total: usize = plans.iter().map(|p| p.messages as usize).sum();
            assert_eq!(log.len(), total, "lost or duplicated messages");
            let mut seen = log.clone();
            seen.sort_unstable();
            let mut expected: Vec<(u32, u32)> = plans
                .iter()
                .enumerate()
                .flat_map(|(id, p)| (0..p.messages).map(move |i| (id as u32, i)))
                .collect();
            expected.sort_unstable();
            assert_eq!(seen, expected, "the multiset received differs from the one sent");
            for (id, p) in plans.iter().enumerate() {
                let order: Vec<u32> = log.iter().filter(|(s, _)| *s == id as u32).map(|&(_, i)| i).collect();
                assert_eq!(order, (0..p.messages).collect::<Vec<_>>(), "sender {id}'s order");
            }

            let m = mailbox_of(&node, &addr);
            let total = total as u64;
            assert_eq!((m.rejected, m.dropped, m.expired), (0, 0, 0), "{m:?}");
            assert_eq!(m.accepted, total + 1);
            assert_eq!(m.handled, total + 1);
            assert_eq!((m.len, m.bytes, m.waiting_senders), (0, 0, 0), "{m:?}");
            assert!(m.len_hwm <= capacity, "{} queued over a capacity of {capacity}", m.len_hwm);
            assert!(m.bytes_hwm <= max_bytes, "{} bytes over {max_bytes}", m.bytes_hwm);
            assert_eq!(node.stats().mailbox_bytes, 0);
            node.shutdown().await;
        });
    }
}

// ===================================================================================
// 3. DropOldest keeps the newest
// ===================================================================================

enum DoMsg {
    /// Blocks the actor until the gate opens.
    Plug(Arc<Semaphore>),
    Item {
        seq: u32,
        w: usize,
    },
    Dump(Reply<Vec<u32>>),
}

impl Weight for DoMsg {
    fn weight(&self) -> usize {
        match self {
            DoMsg::Item { w, .. } => *w,
            _ => 0,
        }
    }
}

struct Keeper {
    log: Vec<u32>,
}

impl Actor for Keeper {
    type Msg = DoMsg;

    async fn handle(&mut self, msg: DoMsg, _ctx: &mut Ctx<Self>) -> Flow {
        match msg {
            DoMsg::Plug(gate) => gate.acquire().await.unwrap().forget(),
            DoMsg::Item { seq, .. } => self.log.push(seq),
            DoMsg::Dump(r) => r.send(std::mem::take(&mut self.log)),
        }
        Flow::Continue
    }
}

/// The newest messages that fit the bounds together: what `DropOldest` must keep.
fn newest_that_fit(sent: &[(u32, usize)], capacity: usize, max_bytes: usize) -> Vec<(u32, usize)> {
    let mut kept = Vec::new();
    let mut bytes = 0;
    for &(seq, w) in sent.iter().rev() {
        if kept.len() == capacity || bytes + w > max_bytes {
            break;
        }
        bytes += w;
        kept.push((seq, w));
    }
    kept.reverse();
    kept
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn drop_oldest_keeps_the_newest(
        capacity in 1usize..=16,
        // None: bounded by count only; Some: also by bytes, with random weights.
        max_bytes in prop::option::of(8usize..=64),
        sends in prop::collection::vec((0usize..=24, any::<bool>()), 0..120),
    ) {
        current_thread_runtime().block_on(async move {
            let node = Node::builder().build().unwrap();
            let by_bytes = max_bytes.is_some();
            let max_bytes = max_bytes.unwrap_or(Mailbox::DEFAULT_MAX_BYTES);
            let mailbox = Mailbox::bounded(capacity).max_bytes(max_bytes).overflow(Overflow::DropOldest);
            let addr = node
                .spawn_with(Keeper { log: Vec::new() }, SpawnOptions::new().mailbox(mailbox))
                .unwrap();
            let gate = Arc::new(Semaphore::new(0));
            addr.try_send(DoMsg::Plug(gate.clone())).unwrap();
            wait_until(|| mailbox_of(&node, &addr).handled == 1, || "the plug".into()).await;

            let mut admitted = Vec::new();
            let mut too_large = 0;
            for (seq, &(w, use_send)) in sends.iter().enumerate() {
                let seq = seq as u32;
                let w = if by_bytes { w } else { 8 };
                let msg = DoMsg::Item { seq, w };
                let r = if use_send { addr.send(msg).await } else { addr.try_send(msg) };
                match r {
                    Ok(()) => admitted.push((seq, w)),
                    Err(SendError::TooLarge(_)) if w > max_bytes => too_large += 1,
                    Err(e) => panic!("DropOldest admits everything that fits alone, got {e:?}"),
                }
            }

            let kept = newest_that_fit(&admitted, capacity, max_bytes);
            let m = mailbox_of(&node, &addr);
            assert_eq!(m.len, kept.len(), "{m:?}");
            assert_eq!(m.bytes, kept.iter().map(|&(_, w)| w).sum::<usize>());
            assert_eq!(m.accepted, 1 + admitted.len() as u64);
            assert_eq!(m.dropped, (admitted.len() - kept.len()) as u64);
            assert_eq!(m.rejected, too_large);
            if !by_bytes {
                assert_eq!(kept.len(), admitted.len().min(capacity));
                assert_eq!(m.dropped, admitted.len().saturating_sub(capacity) as u64, "dropped = sent - capacity");
            }
            assert!(m.len_hwm <= capacity && m.bytes_hwm <= max_bytes, "{m:?}");

            gate.add_permits(1);
            // Let the actor take everything before asking: under DropOldest the request
            // itself would evict the oldest message still queued.
            let handled = 1 + kept.len() as u64;
            wait_until(|| mailbox_of(&node, &addr).handled == handled, || "the drain".into()).await;
            let log = addr.call(DoMsg::Dump, Duration::from_secs(30)).await.unwrap();
            let expected: Vec<u32> = kept.iter().map(|&(seq, _)| seq).collect();
            assert_eq!(log, expected, "the newest messages, in the order sent");
            assert_eq!(node.stats().mailbox_bytes, 0);
            node.shutdown().await;
        });
    }
}

// ===================================================================================
// 4. Counters add up: every policy against a reference model
// ===================================================================================

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    Normal,
    Priority,
}

#[derive(Clone, Debug)]
enum Op {
    TrySend(Lane, usize),
    Send(Lane, usize),
    /// A call whose deadline has passed by the time the actor reaches it.
    ExpiredCall(usize),
    /// Lets the gated actor finish this many messages, one at a time.
    Release(usize),
    /// Drops a waiting `send` future (the sender gives up).
    Cancel(usize),
}

enum GMsg {
    Data { id: u32, w: usize },
    Call { id: u32, w: usize, _reply: Reply<()> },
}

impl Weight for GMsg {
    fn weight(&self) -> usize {
        match self {
            GMsg::Data { w, .. } | GMsg::Call { w, .. } => *w,
        }
    }
}

/// Handles one message per permit of its gate, recording what it handles.
struct Gated {
    gate: Arc<Semaphore>,
    log: Arc<Mutex<Vec<u32>>>,
}

impl Actor for Gated {
    type Msg = GMsg;

    async fn handle(&mut self, msg: GMsg, _ctx: &mut Ctx<Self>) -> Flow {
        let id = match msg {
            GMsg::Data { id, .. } | GMsg::Call { id, .. } => id,
        };
        self.log.lock().unwrap().push(id);
        self.gate.acquire().await.unwrap().forget();
        Flow::Continue
    }
}

/// What the specification says one offer of a message does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Queued,
    Dropped,
    Full,
    Kill,
    Closed,
    TooLarge,
    Budget,
    Wait,
}

/// The mailbox's specification, for a single process on its node, with an actor that
/// handles one message per permit of its gate.
#[derive(Debug)]
struct Model {
    policy: Overflow,
    cap: usize,
    pcap: usize,
    max_bytes: usize,
    budget: usize,
    normal: VecDeque<(u32, usize, bool)>,
    priority: VecDeque<(u32, usize, bool)>,
    /// Waiting senders (Backpressure), in arrival order: `(id, lane, weight)`.
    waiters: VecDeque<(u32, Lane, usize)>,
    alive: bool,
    /// The actor holds a message and waits for a permit.
    blocked: bool,
    permits: usize,
    // Every attempt ends as exactly one of these ...
    accepted: u64,
    rejected: u64,
    dropped_on_arrival: u64,
    refused_closed: u64,
    cancelled: u64,
    // ... and every accepted message as exactly one of these (or still queued).
    handled: u64,
    expired: u64,
    evicted: u64,
    dropped_at_exit: u64,
    len_hwm: usize,
    bytes_hwm: usize,
    handled_log: Vec<u32>,
    /// Outcomes of waiting senders admitted or refused after they first waited.
    resolved: HashMap<u32, Outcome>,
}

impl Model {
    fn new(policy: Overflow, cap: usize, pcap: usize, max_bytes: usize, budget: usize) -> Self {
        Model {
            policy,
            cap,
            pcap,
            max_bytes,
            budget,
            normal: VecDeque::new(),
            priority: VecDeque::new(),
            waiters: VecDeque::new(),
            alive: true,
            blocked: false,
            permits: 0,
            accepted: 0,
            rejected: 0,
            dropped_on_arrival: 0,
            refused_closed: 0,
            cancelled: 0,
            handled: 0,
            expired: 0,
            evicted: 0,
            dropped_at_exit: 0,
            len_hwm: 0,
            bytes_hwm: 0,
            handled_log: Vec::new(),
            resolved: HashMap::new(),
        }
    }

    fn bytes(&self) -> usize {
        self.normal.iter().chain(&self.priority).map(|m| m.1).sum()
    }

    fn queued(&self) -> usize {
        self.normal.len() + self.priority.len()
    }

    fn room(&self, lane: Lane, w: usize) -> bool {
        let (len, cap) = match lane {
            Lane::Normal => (self.normal.len(), self.cap),
            Lane::Priority => (self.priority.len(), self.pcap),
        };
        len < cap && self.bytes() + w <= self.max_bytes
    }

    /// DropOldest: the oldest message of the lane, else of the other lane.
    fn evict_oldest(&mut self, lane: Lane) -> bool {
        let old = match lane {
            Lane::Normal => self.normal.pop_front().or_else(|| self.priority.pop_front()),
            Lane::Priority => self.priority.pop_front().or_else(|| self.normal.pop_front()),
        };
        self.evicted += u64::from(old.is_some());
        old.is_some()
    }

    /// Offers a message. `waiting`: a Backpressure `send` that may wait for room.
    fn offer(&mut self, id: u32, lane: Lane, w: usize, call: bool, waiting: bool) -> Outcome {
        let registered = self.waiters.iter().position(|x| x.0 == id);
        let outcome = self.admit(id, lane, w, call, waiting, registered);
        match (outcome, registered) {
            (Outcome::Wait, None) => self.waiters.push_back((id, lane, w)),
            (Outcome::Wait, Some(_)) => {}
            (_, Some(pos)) => {
                self.waiters.remove(pos);
            }
            (_, None) => {}
        }
        if outcome == Outcome::Kill {
            self.close();
        }
        outcome
    }

    fn admit(
        &mut self,
        id: u32,
        lane: Lane,
        w: usize,
        call: bool,
        waiting: bool,
        registered: Option<usize>,
    ) -> Outcome {
        if !self.alive {
            self.refused_closed += 1;
            return Outcome::Closed;
        }
        if w > self.max_bytes {
            self.rejected += 1;
            return Outcome::TooLarge;
        }
        // Waiting senders are served in arrival order; no normal send overtakes them
        // (priority sends are not held behind them).
        let behind = self.policy == Overflow::Backpressure
            && lane == Lane::Normal
            && !self.waiters.is_empty()
            && registered != Some(0);
        if !self.room(lane, w) || behind {
            match self.policy {
                Overflow::Reject => {
                    self.rejected += 1;
                    return Outcome::Full;
                }
                Overflow::Kill => {
                    self.rejected += 1;
                    return Outcome::Kill;
                }
                Overflow::DropNewest => {
                    self.dropped_on_arrival += 1;
                    return Outcome::Dropped;
                }
                Overflow::Backpressure if waiting => return Outcome::Wait,
                Overflow::Backpressure => {
                    self.rejected += 1;
                    return Outcome::Full;
                }
                Overflow::DropOldest => while !self.room(lane, w) && self.evict_oldest(lane) {},
                other => unreachable!("no model for {other:?}"),
            }
        }
        // Room in the mailbox; now the node budget (this is the node's only process).
        if self.policy == Overflow::DropOldest {
            while self.bytes() + w > self.budget && self.evict_oldest(lane) {}
        }
        if self.bytes() + w > self.budget {
            return if matches!(self.policy, Overflow::DropNewest | Overflow::DropOldest) {
                self.dropped_on_arrival += 1;
                Outcome::Dropped
            } else {
                self.rejected += 1;
                Outcome::Budget
            };
        }
        self.accepted += 1;
        let entry = (id, w, call);
        match lane {
            Lane::Normal => self.normal.push_back(entry),
            Lane::Priority => self.priority.push_back(entry),
        }
        self.len_hwm = self.len_hwm.max(self.queued());
        self.bytes_hwm = self.bytes_hwm.max(self.bytes());
        Outcome::Queued
    }

    fn close(&mut self) {
        self.alive = false;
        self.dropped_at_exit += self.queued() as u64;
        self.normal.clear();
        self.priority.clear();
    }

    /// The actor takes messages (priority lane first) while it is not blocked.
    fn run_actor(&mut self) {
        while self.alive && !self.blocked {
            let Some((id, _, call)) = self.priority.pop_front().or_else(|| self.normal.pop_front()) else {
                return;
            };
            if call {
                // Its caller has given up: dropped unhandled.
                self.expired += 1;
                continue;
            }
            self.handled += 1;
            self.handled_log.push(id);
            if self.permits > 0 {
                self.permits -= 1;
            } else {
                self.blocked = true;
            }
        }
    }

    /// Runs until nothing more happens, in the order the test's scheduling gives: the
    /// actor takes what it can until it blocks or idles; then waiting senders get in
    /// while the one that freed room can serve fits (each admitted sender wakes the
    /// next); then the actor again, and so on.
    fn settle(&mut self) {
        loop {
            self.run_actor();
            let mut admitted = false;
            while let Some(id) = self.next_waiter() {
                let (_, lane, w) = *self.waiters.iter().find(|x| x.0 == id).expect("a waiter");
                if !self.room(lane, w) {
                    break;
                }
                let outcome = self.offer(id, lane, w, false, true);
                self.resolved.insert(id, outcome);
                admitted = true;
            }
            if !admitted {
                return;
            }
        }
    }

    /// The waiting sender that freed room is for: the first in line if its lane has
    /// room; otherwise, if the priority lane has room, the first priority sender
    /// (priority senders do not wait behind normal ones).
    fn next_waiter(&self) -> Option<u32> {
        let &(front, lane, _) = self.waiters.front()?;
        if self.bytes() >= self.max_bytes {
            return None;
        }
        let priority_room = self.priority.len() < self.pcap;
        let front_room = match lane {
            Lane::Normal => self.normal.len() < self.cap,
            Lane::Priority => priority_room,
        };
        if front_room {
            return Some(front);
        }
        if !priority_room {
            return None;
        }
        self.waiters.iter().find(|x| x.1 == Lane::Priority).map(|x| x.0)
    }

    fn release_one(&mut self) {
        self.permits += 1;
        if self.blocked && self.alive {
            self.permits -= 1;
            self.blocked = false;
        }
        self.settle();
    }

    fn cancel(&mut self, id: u32) {
        let pos = self
            .waiters
            .iter()
            .position(|x| x.0 == id)
            .expect("a waiting sender");
        self.waiters.remove(pos);
        self.cancelled += 1;
        self.settle();
    }
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let lane = prop_oneof![3 => Just(Lane::Normal), 1 => Just(Lane::Priority)];
    // Weights from 1 (zero-weight messages never wait on bytes); a few exceed any
    // mailbox's byte bound.
    let w = prop_oneof![10 => 1usize..=12, 1 => 49usize..=60];
    let op = prop_oneof![
        3 => (lane.clone(), w.clone()).prop_map(|(l, w)| Op::TrySend(l, w)),
        3 => (lane, w.clone()).prop_map(|(l, w)| Op::Send(l, w)),
        1 => w.prop_map(Op::ExpiredCall),
        3 => (1usize..=3).prop_map(Op::Release),
        1 => any::<usize>().prop_map(Op::Cancel),
    ];
    prop::collection::vec(op, 1..64)
}

type SendFuture = Pin<Box<dyn Future<Output = Result<(), SendError<GMsg>>> + Send>>;

/// Records that a future was woken; the test polls it then, as an executor would.
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn poll_with<F: Future + ?Sized>(fut: Pin<&mut F>, flag: &Arc<Flag>) -> Poll<F::Output> {
    let waker = Waker::from(flag.clone());
    fut.poll(&mut Context::from_waker(&waker))
}

struct Waiting {
    id: u32,
    fut: SendFuture,
    flag: Arc<Flag>,
}

fn expect_send(outcome: Outcome, got: &Result<(), SendError<GMsg>>) {
    let ok = matches!(
        (outcome, got),
        (Outcome::Queued | Outcome::Dropped, Ok(()))
            | (Outcome::Full | Outcome::Kill, Err(SendError::Full(_)))
            | (Outcome::Closed, Err(SendError::Closed(_)))
            | (Outcome::TooLarge, Err(SendError::TooLarge(_)))
            | (Outcome::Budget, Err(SendError::NodeBudget(_)))
    );
    assert!(ok, "the model says {outcome:?}, the mailbox answered {got:?}");
}

struct Harness {
    node: Node,
    addr: Addr<Gated>,
    gate: Arc<Semaphore>,
    log: Arc<Mutex<Vec<u32>>>,
    model: Model,
    waiting: Vec<Waiting>,
    next_id: u32,
}

impl Harness {
    fn envelope(&mut self, w: usize) -> (u32, GMsg) {
        self.next_id += 1;
        (self.next_id, GMsg::Data { id: self.next_id, w })
    }

    fn offer_now(&mut self, lane: Lane, w: usize) {
        let (id, msg) = self.envelope(w);
        let got = match lane {
            Lane::Normal => self.addr.try_send(msg),
            Lane::Priority => self.addr.try_send_priority(msg),
        };
        let outcome = self.model.offer(id, lane, w, false, false);
        expect_send(outcome, &got);
    }

    fn send(&mut self, lane: Lane, w: usize) {
        let (id, msg) = self.envelope(w);
        let addr = self.addr.clone();
        let mut fut: SendFuture = Box::pin(tokio::task::unconstrained(async move {
            match lane {
                Lane::Normal => addr.send(msg).await,
                Lane::Priority => addr.send_priority(msg).await,
            }
        }));
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let polled = poll_with(fut.as_mut(), &flag);
        let waiting = self.model.policy == Overflow::Backpressure;
        let outcome = self.model.offer(id, lane, w, false, waiting);
        match polled {
            Poll::Ready(got) => expect_send(outcome, &got),
            Poll::Pending => {
                assert_eq!(outcome, Outcome::Wait, "a send waits only when the model says so");
                self.waiting.push(Waiting { id, fut, flag });
            }
        }
    }

    fn expired_call(&mut self, w: usize) {
        self.next_id += 1;
        let id = self.next_id;
        let addr = self.addr.clone();
        let mut fut = Box::pin(tokio::task::unconstrained(async move {
            addr.call(|r| GMsg::Call { id, w, _reply: r }, Duration::ZERO)
                .await
        }));
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        // One poll settles the admission; then the caller gives up (the future is
        // dropped), as a caller whose timeout has passed does.
        let polled = poll_with(fut.as_mut(), &flag);
        drop(fut);
        let waiting = self.model.policy == Overflow::Backpressure;
        let outcome = self.model.offer(id, Lane::Normal, w, true, waiting);
        if outcome == Outcome::Wait {
            self.model.cancel(id);
        }
        let ok = matches!(
            (outcome, &polled),
            (Outcome::Queued | Outcome::Wait, Poll::Pending)
                | (
                    Outcome::Queued | Outcome::Wait,
                    Poll::Ready(Err(CallError::Timeout | CallError::NoReply))
                )
                | (Outcome::Dropped, Poll::Ready(Err(CallError::NoReply)))
                | (Outcome::Full | Outcome::Kill, Poll::Ready(Err(CallError::Full)))
                | (Outcome::Closed, Poll::Ready(Err(CallError::Down)))
                | (Outcome::TooLarge, Poll::Ready(Err(CallError::TooLarge)))
                | (Outcome::Budget, Poll::Ready(Err(CallError::NodeBudget)))
        );
        assert!(ok, "the model says {outcome:?}, the call answered {polled:?}");
    }

    fn cancel(&mut self, pick: usize) {
        if self.waiting.is_empty() {
            return;
        }
        let w = self.waiting.remove(pick % self.waiting.len());
        drop(w.fut);
        self.model.cancel(w.id);
    }

    /// Lets the real actor and the woken senders catch up with the (settled) model.
    /// This is the scheduler the model assumes: every sender whose waker fired is
    /// polled, as an executor would, without yielding (so the actor does not run in
    /// between); then this task yields and the actor runs until it blocks or idles;
    /// and so on until the actor has done what the model says and no sender is left
    /// to poll.
    async fn settle(&mut self) {
        self.model.settle();
        for _ in 0..5_000 {
            while let Some(pos) = self
                .waiting
                .iter()
                .position(|w| w.flag.0.swap(false, Ordering::SeqCst))
            {
                let w = &mut self.waiting[pos];
                if let Poll::Ready(got) = poll_with(w.fut.as_mut(), &w.flag) {
                    let id = w.id;
                    self.waiting.remove(pos);
                    let outcome = self.model.resolved.get(&id).copied().unwrap_or_else(|| {
                        panic!(
                            "sender {id} finished ({got:?}); the model has it waiting: {:?}",
                            self.model
                        )
                    });
                    expect_send(outcome, &got);
                }
            }
            if self.caught_up() {
                return;
            }
            tokio::task::yield_now().await;
        }
        let real = self.node.process_info(self.addr.pid()).map(|p| p.mailbox);
        panic!(
            "stuck: the mailbox never reached the model's state: {real:?} vs {:?}",
            self.model
        );
    }

    fn caught_up(&self) -> bool {
        let m = &self.model;
        if !m.alive {
            return self.node.stats().exited == 1;
        }
        let real = mailbox_of(&self.node, &self.addr);
        real.handled == m.handled
            && real.expired == m.expired
            && self.gate.available_permits() == m.permits
            && self.waiting.len() == m.waiters.len()
    }

    /// Compares every counter and gauge with the model.
    fn check(&self) {
        let m = &self.model;
        let s = self.node.stats();
        // This is the node's only process: the node totals are its counters.
        assert_eq!(s.accepted, m.accepted, "accepted; {s:?} vs {m:?}");
        assert_eq!(s.rejected, m.rejected, "rejected; {s:?} vs {m:?}");
        assert_eq!(s.handled, m.handled, "handled; {s:?} vs {m:?}");
        assert_eq!(s.expired, m.expired, "expired; {s:?} vs {m:?}");
        assert_eq!(
            s.dropped,
            m.dropped_on_arrival + m.evicted + m.dropped_at_exit,
            "dropped; {s:?} vs {m:?}"
        );
        assert_eq!(s.mailbox_bytes, m.bytes(), "node mailbox bytes");
        assert!(s.mailbox_bytes <= m.budget);
        if m.alive {
            let mb = mailbox_of(&self.node, &self.addr);
            assert_eq!(
                (mb.len, mb.priority_len, mb.bytes, mb.waiting_senders),
                (m.normal.len(), m.priority.len(), m.bytes(), m.waiters.len()),
                "(len, priority_len, bytes, waiting_senders); {mb:?} vs {m:?}"
            );
            assert_eq!(
                (mb.len_hwm, mb.bytes_hwm),
                (m.len_hwm, m.bytes_hwm),
                "high-water marks; {mb:?} vs {m:?}"
            );
            assert!(mb.len_hwm <= m.cap + m.pcap, "count bound overshot: {mb:?}");
            assert!(mb.bytes_hwm <= m.max_bytes, "byte bound overshot: {mb:?}");
        } else {
            assert!(self.node.process_info(self.addr.pid()).is_none());
            assert_eq!(s.overflow_kills, 1);
        }
        assert_eq!(self.waiting.len(), m.waiters.len(), "waiting senders");
        assert_eq!(
            *self.log.lock().unwrap(),
            m.handled_log,
            "messages handled, in order"
        );
    }
}

/// One run of an operation sequence against one policy, checked step by step.
fn run_against_model(
    policy: Overflow,
    cap: usize,
    pcap: usize,
    max_bytes: usize,
    budget: Option<usize>,
    ops: &[Op],
) {
    current_thread_runtime().block_on(async move {
        let budget = budget.unwrap_or(1 << 20);
        let node = Node::builder()
            .max_processes(4)
            .reserved_processes(0)
            .mailbox_budget_bytes(budget)
            .build()
            .unwrap();
        let mailbox = Mailbox::bounded(cap)
            .priority_capacity(pcap)
            .max_bytes(max_bytes)
            .overflow(policy);
        let gate = Arc::new(Semaphore::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let actor = Gated {
            gate: gate.clone(),
            log: log.clone(),
        };
        let addr = node
            .spawn_with(actor, SpawnOptions::new().mailbox(mailbox))
            .unwrap();
        let mut h = Harness {
            node,
            addr,
            gate,
            log,
            model: Model::new(policy, cap, pcap, max_bytes, budget),
            waiting: Vec::new(),
            next_id: 0,
        };
        let mut attempts = 0u64;

        for op in ops.iter().cloned() {
            match op {
                Op::TrySend(lane, w) => {
                    attempts += 1;
                    h.offer_now(lane, w);
                }
                Op::Send(lane, w) => {
                    attempts += 1;
                    h.send(lane, w);
                }
                Op::ExpiredCall(w) => {
                    attempts += 1;
                    h.expired_call(w);
                }
                Op::Release(k) => {
                    for _ in 0..k {
                        h.gate.add_permits(1);
                        h.model.release_one();
                        h.settle().await;
                    }
                }
                Op::Cancel(pick) => h.cancel(pick),
            }
            h.settle().await;
            h.check();
        }

        // Drain: release the actor until it is idle and nobody waits.
        while h.model.alive && (h.model.blocked || !h.model.waiters.is_empty() || h.model.queued() > 0) {
            h.gate.add_permits(1);
            h.model.release_one();
            h.settle().await;
            h.check();
        }
        let m = &h.model;
        assert!(h.waiting.is_empty());
        assert_eq!(m.queued(), 0);
        assert_eq!(
            h.node.stats().mailbox_bytes,
            0,
            "drained: nothing left in the node budget"
        );
        // Every attempt is exactly one of: accepted, rejected, dropped on arrival
        // (or refused because the process had exited, or given up by its sender).
        assert_eq!(
            attempts,
            m.accepted + m.rejected + m.dropped_on_arrival + m.refused_closed + m.cancelled
        );
        // Every accepted message was handled, expired, evicted, or dropped when the
        // process exited (nothing is queued any more).
        assert_eq!(m.accepted, m.handled + m.expired + m.evicted + m.dropped_at_exit);
        let s = h.node.stats();
        assert_eq!(s.accepted, s.handled + s.expired + m.evicted + m.dropped_at_exit);

        h.node.shutdown().await;
        let s = h.node.stats();
        assert_eq!((s.processes, s.mailbox_bytes), (0, 0));
    });
}

proptest! {
    #![proptest_config(config(96))]

    /// Each case runs the same operations against every policy.
    #[test]
    fn counters_add_up_for_every_policy(
        cap in 1usize..=5,
        pcap in 1usize..=3,
        max_bytes in 6usize..=48,
        budget in prop::option::weighted(0.4, 4usize..=48),
        ops in ops(),
    ) {
        for policy in [
            Overflow::Reject,
            Overflow::Backpressure,
            Overflow::DropNewest,
            Overflow::DropOldest,
            Overflow::Kill,
        ] {
            run_against_model(policy, cap, pcap, max_bytes, budget, &ops);
        }
    }
}
