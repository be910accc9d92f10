//! Helpers shared by the stage tests: a scriptable producer, a counting producer that
//! can hold back until started, a recording consumer, gates and hang guards.
//!
//! Nothing here asserts on wall-clock time: [`HANG`] only bounds how long a test waits
//! for something that must happen.

#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use girder::stage::{Consumer, ConsumerStage, Producer, ProducerStage, StageMsg, StageStats};
use girder::{Addr, Ctx, ExitReason, Flow, Node, Pid, Weight};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// How long a test waits for something that must happen before declaring a hang.
pub const HANG: Duration = Duration::from_secs(20);

pub fn node() -> Node {
    Node::builder().build().unwrap()
}

/// Awaits `f`, failing the test if it takes longer than [`HANG`].
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(HANG, f).await {
        Ok(v) => v,
        Err(_) => panic!("hang guard: {what} did not finish within {HANG:?}"),
    }
}

/// Polls `cond` until it holds, failing the test after [`HANG`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + HANG;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "hang guard: {what} did not become true within {HANG:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Lets the other processes run for a while (to give a misbehaving stage the chance to
/// misbehave before a "nothing more happened" check). Not a timing assertion.
pub async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
}

/// The stage counters of a live stage process.
pub fn stats(node: &Node, pid: Pid) -> StageStats {
    node.process_info(pid)
        .expect("the stage is alive")
        .stage
        .expect("a stage reports stage stats")
}

/// A gate a handler waits at until the test opens it.
#[derive(Clone)]
pub struct Gate(Arc<Semaphore>);

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl Gate {
    pub fn new() -> Self {
        Gate(Arc::new(Semaphore::new(0)))
    }

    /// Opens the gate for good.
    pub fn open(&self) {
        self.0.close();
    }

    /// Lets exactly one waiter pass.
    pub fn step(&self) {
        self.0.add_permits(1);
    }

    pub async fn pass(&self) {
        if let Ok(p) = self.0.acquire().await {
            p.forget();
        }
    }
}

// ----- a scriptable producer -----

/// What the test tells a [`Manual`] producer.
pub enum Cmd<E> {
    /// Emit these events from `handle_info` (demand or not).
    Emit(Vec<E>),
    /// Emit these events, then stop with the reason.
    EmitThenStop(Vec<E>, ExitReason),
    /// Answers once every earlier command is fully handled.
    Sync(oneshot::Sender<()>),
}

impl<E> Weight for Cmd<E> {}

/// A producer that emits only what the test tells it to, and reports every
/// `handle_demand` call.
pub struct Manual<E> {
    pub demands: mpsc::UnboundedSender<usize>,
    _e: std::marker::PhantomData<fn() -> E>,
}

pub type ManualAddr<E> = Addr<ProducerStage<Manual<E>>>;

impl<E> Manual<E> {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<usize>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Manual {
                demands: tx,
                _e: std::marker::PhantomData,
            },
            rx,
        )
    }
}

impl<E: Send + 'static> Producer for Manual<E> {
    type Event = E;
    type Info = Cmd<E>;

    async fn handle_demand(&mut self, demand: usize, _: &mut Ctx<ProducerStage<Self>>) -> Vec<E> {
        let _ = self.demands.send(demand);
        Vec::new()
    }

    async fn handle_info(&mut self, cmd: Cmd<E>, ctx: &mut Ctx<ProducerStage<Self>>) -> Vec<E> {
        match cmd {
            Cmd::Emit(events) => events,
            Cmd::EmitThenStop(events, reason) => {
                ctx.stop(reason);
                events
            }
            Cmd::Sync(tx) => {
                let _ = tx.send(());
                Vec::new()
            }
        }
    }
}

pub async fn command<E: Send + 'static>(p: &ManualAddr<E>, cmd: Cmd<E>) {
    if p.send(StageMsg::info(cmd)).await.is_err() {
        panic!("the producer is gone");
    }
}

pub async fn emit<E: Send + 'static>(p: &ManualAddr<E>, events: Vec<E>) {
    command(p, Cmd::Emit(events)).await;
}

/// Returns once the producer has handled everything sent to it before.
pub async fn sync<E: Send + 'static>(p: &ManualAddr<E>) {
    let (tx, rx) = oneshot::channel();
    command(p, Cmd::Sync(tx)).await;
    within("producer sync", rx).await.expect("the producer answers");
}

// ----- a counting producer -----

/// Messages of a [`Seq`] producer.
pub enum SeqMsg {
    /// Start emitting (a `Seq` built with `held()` emits nothing before).
    Start,
    /// Emit more of the pending demand (sent by the producer to itself).
    Tick,
}

impl Weight for SeqMsg {}

/// Checks run at each emission with the total emitted so far (this emission
/// included) and the producer's own `events_out` (events handed to subscriptions so
/// far: exact, as only the producer changes it and it is busy emitting).
pub type EmitCheck = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// A producer of `start..end` that emits only against demand — optionally in chunks
/// of at most `chunk` events (the rest follows from `handle_info`), optionally with
/// `burst` extra events per tick emitted without demand, and optionally held back
/// until it gets [`SeqMsg::Start`].
pub struct Seq {
    pub next: u64,
    pub end: u64,
    pub started: bool,
    /// Demand received through `handle_demand` and not yet filled.
    pub pending: usize,
    pub chunk: usize,
    pub burst: usize,
    tick_queued: bool,
    /// Events emitted so far (shared with the test).
    pub emitted: Arc<AtomicU64>,
    pub demands: Option<mpsc::UnboundedSender<usize>>,
    pub check: Option<EmitCheck>,
    /// The producer's own stage stats, read when it terminates.
    pub final_stats: Arc<Mutex<Option<StageStats>>>,
}

impl Seq {
    pub fn new(range: std::ops::Range<u64>) -> Self {
        Seq {
            next: range.start,
            end: range.end,
            started: true,
            pending: 0,
            chunk: usize::MAX,
            burst: 0,
            tick_queued: false,
            emitted: Arc::default(),
            demands: None,
            check: None,
            final_stats: Arc::default(),
        }
    }

    /// Emits nothing until [`SeqMsg::Start`].
    pub fn held(mut self) -> Self {
        self.started = false;
        self
    }

    pub fn chunk(mut self, chunk: usize) -> Self {
        self.chunk = chunk.max(1);
        self
    }

    pub fn burst(mut self, burst: usize) -> Self {
        self.burst = burst;
        self
    }

    pub fn reporting(mut self, demands: mpsc::UnboundedSender<usize>) -> Self {
        self.demands = Some(demands);
        self
    }

    pub fn check(mut self, check: EmitCheck) -> Self {
        self.check = Some(check);
        self
    }

    fn take(&mut self, extra: usize, ctx: &mut Ctx<ProducerStage<Self>>) -> Vec<u64> {
        if !self.started {
            return Vec::new();
        }
        let left = (self.end - self.next) as usize;
        let n = self.pending.min(self.chunk).min(left);
        self.pending -= n;
        let n = (n + extra).min(left);
        let events: Vec<u64> = (self.next..self.next + n as u64).collect();
        self.next += n as u64;
        let total = self.emitted.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
        if let Some(check) = &self.check {
            let delivered = ctx
                .node()
                .process_info(ctx.pid())
                .and_then(|i| i.stage)
                .map_or(0, |s| s.events_out);
            check(total, delivered);
        }
        let more = self.next < self.end && (self.pending > 0 || self.burst > 0 && extra > 0);
        if more && !self.tick_queued && ctx.addr().try_send(StageMsg::info(SeqMsg::Tick)).is_ok() {
            self.tick_queued = true;
        }
        events
    }
}

impl Producer for Seq {
    type Event = u64;
    type Info = SeqMsg;

    async fn handle_demand(&mut self, demand: usize, ctx: &mut Ctx<ProducerStage<Self>>) -> Vec<u64> {
        if let Some(d) = &self.demands {
            let _ = d.send(demand);
        }
        self.pending += demand;
        self.take(0, ctx)
    }

    async fn handle_info(&mut self, msg: SeqMsg, ctx: &mut Ctx<ProducerStage<Self>>) -> Vec<u64> {
        match msg {
            SeqMsg::Start => {
                self.started = true;
                self.take(self.burst, ctx)
            }
            SeqMsg::Tick => {
                self.tick_queued = false;
                self.take(self.burst, ctx)
            }
        }
    }

    fn is_finished(&self) -> bool {
        self.started && self.next == self.end
    }

    async fn terminate(&mut self, _: &ExitReason, ctx: &mut Ctx<ProducerStage<Self>>) {
        let stats = ctx.node().process_info(ctx.pid()).and_then(|i| i.stage);
        *self.final_stats.lock().unwrap() = stats;
    }
}

pub async fn start_seq(p: &Addr<ProducerStage<Seq>>) {
    if p.send(StageMsg::info(SeqMsg::Start)).await.is_err() {
        panic!("the producer is gone");
    }
}

// ----- a recording consumer -----

/// What the test tells a [`Rec`] consumer.
pub enum RecCmd {
    Stop(ExitReason),
}

impl Weight for RecCmd {}

/// A consumer that records what it handles.
pub struct Rec<E> {
    /// Every handled event, in order (appended after the piece is handled).
    pub log: Arc<Mutex<Vec<E>>>,
    /// Events handled (incremented before `handle_events` returns, so before the
    /// stage gives the demand back).
    pub handled: Arc<AtomicU64>,
    /// Each piece as it arrives, before it is handled.
    pub pieces: Option<mpsc::UnboundedSender<Vec<E>>>,
    /// Each piece waits here before it is handled.
    pub gate: Option<Gate>,
    /// Pieces arriving once this many events are handled wait at this gate.
    pub gate_after: Option<(u64, Gate)>,
    pub yields: usize,
    /// Stop (Normal) once this many events are handled.
    pub stop_after: Option<u64>,
    /// Called at the start of each piece with the number handled so far.
    pub on_piece: Option<Arc<dyn Fn(u64, usize) + Send + Sync>>,
}

pub type RecAddr<E> = Addr<ConsumerStage<Rec<E>>>;

impl<E> Default for Rec<E> {
    fn default() -> Self {
        Rec {
            log: Arc::default(),
            handled: Arc::default(),
            pieces: None,
            gate: None,
            gate_after: None,
            yields: 0,
            stop_after: None,
            on_piece: None,
        }
    }
}

impl<E> Rec<E> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn log(&self) -> Arc<Mutex<Vec<E>>> {
        self.log.clone()
    }

    pub fn pieces(mut self) -> (Self, mpsc::UnboundedReceiver<Vec<E>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.pieces = Some(tx);
        (self, rx)
    }

    pub fn gated(mut self, gate: &Gate) -> Self {
        self.gate = Some(gate.clone());
        self
    }

    pub fn gated_after(mut self, n: u64, gate: &Gate) -> Self {
        self.gate_after = Some((n, gate.clone()));
        self
    }

    pub fn yields(mut self, n: usize) -> Self {
        self.yields = n;
        self
    }

    pub fn stop_after(mut self, n: u64) -> Self {
        self.stop_after = Some(n);
        self
    }
}

impl<E: Clone + Send + 'static> Consumer for Rec<E> {
    type Event = E;
    type Info = RecCmd;

    async fn handle_events(&mut self, events: Vec<E>, _: &mut Ctx<ConsumerStage<Self>>) -> Flow {
        let before = self.handled.load(Ordering::SeqCst);
        if let Some(f) = &self.on_piece {
            f(before, events.len());
        }
        if let Some(tx) = &self.pieces {
            let _ = tx.send(events.clone());
        }
        if let Some(g) = &self.gate {
            g.pass().await;
        }
        if let Some((n, g)) = &self.gate_after {
            if before >= *n {
                g.pass().await;
            }
        }
        for _ in 0..self.yields {
            tokio::task::yield_now().await;
        }
        let n = events.len() as u64;
        self.log.lock().unwrap().extend(events);
        let total = self.handled.fetch_add(n, Ordering::SeqCst) + n;
        match self.stop_after {
            Some(k) if total >= k => Flow::Stop(ExitReason::Normal),
            _ => Flow::Continue,
        }
    }

    async fn handle_info(&mut self, cmd: RecCmd, _: &mut Ctx<ConsumerStage<Self>>) -> Flow {
        match cmd {
            RecCmd::Stop(r) => Flow::Stop(r),
        }
    }
}

/// Compares sequences, reporting lengths and the first difference rather than
/// printing thousands of events.
#[track_caller]
pub fn assert_seq<E: PartialEq + std::fmt::Debug>(got: &[E], want: &[E], what: &str) {
    if got != want {
        let at = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: got {} events, want {}; first difference at {at}: got {:?}, want {:?}",
            got.len(),
            want.len(),
            got.get(at..(at + 5).min(got.len())),
            want.get(at..(at + 5).min(want.len())),
        );
    }
}

pub fn snapshot<E: Clone>(log: &Arc<Mutex<Vec<E>>>) -> Vec<E> {
    log.lock().unwrap().clone()
}
