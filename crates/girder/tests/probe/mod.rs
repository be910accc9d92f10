//! Shared helpers for the integration tests: a scriptable probe actor that reports
//! what happens to it, gates that block handlers deterministically, and hang guards.
//!
//! No test asserts on wall-clock time: `HANG` only bounds how long a test may wait for
//! something that should happen.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use girder::{Actor, Addr, CallError, Ctx, Down, ExitReason, ExitWatch, Flow, Node, Pid, Reply, Weight};
use tokio::sync::{mpsc, Semaphore};

/// How long a test waits for something that must happen before declaring a hang.
pub const HANG: Duration = Duration::from_secs(10);

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

/// A gate a handler waits at until the test opens it.
#[derive(Clone)]
pub struct Gate(Arc<Semaphore>);

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        Gate(Arc::new(Semaphore::new(0)))
    }

    /// Opens the gate for good: every waiter, present and future, passes.
    pub fn open(&self) {
        self.0.close();
    }

    /// Lets exactly one waiter pass.
    pub fn step(&self) {
        self.0.add_permits(1);
    }

    /// Waits until the gate lets this caller pass.
    pub async fn pass(&self) {
        if let Ok(permit) = self.0.acquire().await {
            permit.forget();
        }
    }
}

/// What a probe reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Init,
    Note(u32),
    /// The probe entered a `Block` handler and waits at its gate.
    Blocked,
    Exit(Pid, ExitReason),
    Down(Down),
    Timeout,
    Terminate(ExitReason),
}

pub type Tx = mpsc::UnboundedSender<(Pid, Ev)>;
pub type Rx = mpsc::UnboundedReceiver<(Pid, Ev)>;

pub fn events() -> (Tx, Rx) {
    mpsc::unbounded_channel()
}

/// The next event, or a hang-guard failure.
pub async fn next_ev(rx: &mut Rx) -> (Pid, Ev) {
    within("next probe event", rx.recv())
        .await
        .expect("every probe sender dropped")
}

/// Asserts the next event is `ev` from `pid`.
pub async fn expect_ev(rx: &mut Rx, pid: Pid, ev: Ev) {
    let got = next_ev(rx).await;
    assert_eq!(got, (pid, ev), "unexpected probe event");
}

/// Asserts no event is waiting.
pub fn expect_quiet(rx: &mut Rx) {
    if let Ok(ev) = rx.try_recv() {
        panic!("expected no probe event, got {ev:?}");
    }
}

/// A step run inside a probe's handler, with its context.
pub type Job = Box<dyn FnOnce(&mut Ctx<Probe>) -> Flow + Send>;

/// What a probe can be told to do.
pub enum Cmd {
    /// Report `Ev::Note(n)`.
    Note(u32),
    /// Run a job in the handler.
    Run(Job),
    /// Run `before`, report `Blocked`, wait at `gate`, then run `after`.
    Block {
        before: Option<Job>,
        gate: Gate,
        after: Option<Job>,
    },
    /// Panic with this message.
    Panic(String),
    /// A message that owns a token: the test can see when it is dropped.
    Token(Arc<()>),
    /// Answer a call.
    Ping(Reply<()>),
}

impl Weight for Cmd {}

/// A scriptable actor that reports its life through a channel.
pub struct Probe {
    tx: Tx,
    trap: bool,
    init_err: Option<ExitReason>,
    idle: Option<Duration>,
}

impl Probe {
    pub fn new(tx: &Tx) -> Self {
        Probe {
            tx: tx.clone(),
            trap: false,
            init_err: None,
            idle: None,
        }
    }

    /// Traps exits from `init` on.
    pub fn trapping(mut self) -> Self {
        self.trap = true;
        self
    }

    /// `init` fails with `reason`.
    pub fn failing_init(mut self, reason: ExitReason) -> Self {
        self.init_err = Some(reason);
        self
    }

    /// Sets an idle timeout in `init` (it fires once, then is turned off).
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle = Some(d);
        self
    }

    fn emit(&self, ctx: &Ctx<Self>, ev: Ev) {
        let _ = self.tx.send((ctx.pid(), ev));
    }
}

impl Actor for Probe {
    type Msg = Cmd;

    async fn init(&mut self, ctx: &mut Ctx<Self>) -> Result<(), ExitReason> {
        ctx.trap_exit(self.trap);
        ctx.set_idle_timeout(self.idle);
        self.emit(ctx, Ev::Init);
        match self.init_err.take() {
            Some(r) => Err(r),
            None => Ok(()),
        }
    }

    async fn handle(&mut self, msg: Cmd, ctx: &mut Ctx<Self>) -> Flow {
        match msg {
            Cmd::Note(n) => {
                self.emit(ctx, Ev::Note(n));
                Flow::Continue
            }
            Cmd::Run(job) => job(ctx),
            Cmd::Block { before, gate, after } => {
                if let Some(job) = before {
                    if let Flow::Stop(r) = job(ctx) {
                        return Flow::Stop(r);
                    }
                }
                self.emit(ctx, Ev::Blocked);
                gate.pass().await;
                match after {
                    Some(job) => job(ctx),
                    None => Flow::Continue,
                }
            }
            Cmd::Panic(m) => panic!("{m}"),
            Cmd::Token(_) => Flow::Continue,
            Cmd::Ping(r) => {
                r.send(());
                Flow::Continue
            }
        }
    }

    async fn handle_exit(&mut self, from: Pid, reason: ExitReason, ctx: &mut Ctx<Self>) -> Flow {
        self.emit(ctx, Ev::Exit(from, reason));
        Flow::Continue
    }

    async fn handle_down(&mut self, down: Down, ctx: &mut Ctx<Self>) -> Flow {
        self.emit(ctx, Ev::Down(down));
        Flow::Continue
    }

    async fn handle_timeout(&mut self, ctx: &mut Ctx<Self>) -> Flow {
        self.emit(ctx, Ev::Timeout);
        ctx.set_idle_timeout(None);
        Flow::Continue
    }

    async fn terminate(&mut self, reason: &ExitReason, ctx: &mut Ctx<Self>) {
        self.emit(ctx, Ev::Terminate(reason.clone()));
    }
}

/// A job from a closure.
pub fn job(f: impl FnOnce(&mut Ctx<Probe>) -> Flow + Send + 'static) -> Job {
    Box::new(f)
}

/// Runs `f` inside the probe's handler and returns its result (a call).
pub async fn with_ctx<R: Send + 'static>(
    addr: &Addr<Probe>,
    f: impl FnOnce(&mut Ctx<Probe>) -> R + Send + 'static,
) -> R {
    let call = addr.call(
        |reply| {
            Cmd::Run(Box::new(move |ctx| {
                reply.send(f(ctx));
                Flow::Continue
            }))
        },
        HANG,
    );
    within("with_ctx call", call).await.expect("with_ctx call failed")
}

/// A round trip through the probe's normal lane: every signal queued before it has
/// been handled when it returns.
pub async fn ping(addr: &Addr<Probe>) -> Result<(), CallError> {
    within("ping", addr.call(Cmd::Ping, HANG)).await
}

/// Makes the probe stop with `reason` (through `Flow::Stop`, so `terminate` runs).
pub fn stop(addr: &Addr<Probe>, reason: ExitReason) {
    addr.try_send(Cmd::Run(job(move |_| Flow::Stop(reason))))
        .expect("stop message refused");
}

/// Blocks the probe at `gate` and waits until it is there. Expects the `Blocked` event
/// next on `rx`.
pub async fn block(addr: &Addr<Probe>, rx: &mut Rx, gate: &Gate) {
    block_then(addr, rx, gate, None).await
}

/// As [`block`], running `after` once the gate opens.
pub async fn block_then(addr: &Addr<Probe>, rx: &mut Rx, gate: &Gate, after: Option<Job>) {
    addr.try_send(Cmd::Block {
        before: None,
        gate: gate.clone(),
        after,
    })
    .expect("block message refused");
    expect_ev(rx, addr.pid(), Ev::Blocked).await;
}

/// Waits for the exit reason a watch (set up before the exit) reports.
pub async fn reason(watch: ExitWatch) -> ExitReason {
    within("process exit", watch).await
}

/// Spawns a probe and waits for its `Init` event.
pub async fn spawn_probe(node: &Node, probe: Probe, rx: &mut Rx) -> Addr<Probe> {
    let addr = node.spawn(probe).expect("spawn probe");
    expect_ev(rx, addr.pid(), Ev::Init).await;
    addr
}

/// A node with default limits.
pub fn node() -> Node {
    Node::builder().build().expect("default node")
}
