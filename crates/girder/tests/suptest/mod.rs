//! Shared helpers for the supervision tests (issue 3): a scriptable worker that
//! records what happens to it, crash helpers for every way a child can end, and hang
//! guards. No helper asserts on wall-clock time: `HANG` only bounds how long a test
//! waits for something that must happen.

#![allow(dead_code)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use girder::supervisor::{ChildInfo, ChildSpec, SupervisorRef};
use girder::{Actor, Ctx, ExitReason, Flow, Node, Pid, Reply, SpawnError, Weight};

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

/// A shared, ordered record of events.
#[derive(Clone, Default, Debug)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&self, ev: impl Into<String>) {
        self.0.lock().unwrap().push(ev.into());
    }

    pub fn snapshot(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// The events that start with `prefix`, in order.
    pub fn with_prefix(&self, prefix: &str) -> Vec<String> {
        self.snapshot()
            .into_iter()
            .filter(|e| e.starts_with(prefix))
            .collect()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// How a test makes a child end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The handler returns `Flow::Stop(Normal)`.
    Normal,
    /// The handler returns `Flow::Stop(Shutdown)`.
    Shutdown,
    /// The handler panics.
    Panic,
    /// The handler returns `Flow::Stop(Custom("boom"))`.
    Custom,
    /// The test kills the process untrappably.
    Kill,
}

impl End {
    pub const ALL: [End; 5] = [End::Normal, End::Shutdown, End::Panic, End::Custom, End::Kill];

    /// The exit reason the child ends with.
    pub fn reason(&self) -> ExitReason {
        match self {
            End::Normal => ExitReason::Normal,
            End::Shutdown => ExitReason::Shutdown,
            End::Panic => ExitReason::Panic("worker panicked on request".into()),
            End::Custom => ExitReason::custom("boom"),
            End::Kill => ExitReason::Killed,
        }
    }
}

/// Messages of [`Worker`].
pub enum Msg {
    /// End the process this way (not `Kill`, which the test does from outside).
    End(End),
    /// Answers once the handler runs: the worker is up and serving.
    Ping(Reply<Pid>),
    /// Spawns an idle, unlinked child worker (a grandchild of the supervisor) through
    /// `ctx.spawn` and answers with the result.
    Spawn(Reply<Result<Pid, SpawnError>>),
}

impl Weight for Msg {}

/// A scriptable child: records `init:<id>`, `saw:<id>:<name>` for each name it found
/// registered during init, and `terminate:<id>:<reason>`.
#[derive(Clone)]
pub struct Worker {
    pub id: String,
    pub log: Log,
    pub trap: bool,
    pub hang_terminate: bool,
    /// Names that `init` looks up; each found is recorded as `saw`.
    pub look_for: Vec<String>,
    /// When set, `init` fails while this returns true (checked on every start).
    pub fail_init: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

impl Worker {
    pub fn new(id: &str, log: &Log) -> Self {
        Worker {
            id: id.to_string(),
            log: log.clone(),
            trap: false,
            hang_terminate: false,
            look_for: Vec::new(),
            fail_init: None,
        }
    }

    /// A worker that logs nothing anyone reads.
    pub fn idle() -> Self {
        Worker::new("idle", &Log::new())
    }

    pub fn trapping(mut self) -> Self {
        self.trap = true;
        self
    }

    pub fn hanging_terminate(mut self) -> Self {
        self.hang_terminate = true;
        self
    }

    pub fn looking_for(mut self, names: &[&str]) -> Self {
        self.look_for = names.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn failing_init(mut self, f: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.fail_init = Some(Arc::new(f));
        self
    }

    /// A child spec starting a fresh clone of this worker at every (re)start.
    pub fn spec(&self) -> ChildSpec {
        let w = self.clone();
        ChildSpec::worker(self.id.clone(), move || w.clone())
    }
}

impl Actor for Worker {
    type Msg = Msg;

    async fn init(&mut self, ctx: &mut Ctx<Self>) -> Result<(), ExitReason> {
        ctx.trap_exit(self.trap);
        if let Some(f) = &self.fail_init {
            if f() {
                self.log.push(format!("init-failed:{}", self.id));
                return Err(ExitReason::custom("init refused"));
            }
        }
        for name in &self.look_for {
            if ctx.node().whereis(name).is_some() {
                self.log.push(format!("saw:{}:{}", self.id, name));
            }
        }
        self.log.push(format!("init:{}", self.id));
        Ok(())
    }

    async fn handle(&mut self, msg: Msg, ctx: &mut Ctx<Self>) -> Flow {
        match msg {
            Msg::End(End::Panic) => panic!("worker panicked on request"),
            Msg::End(End::Kill) => {
                let me = ctx.pid();
                ctx.kill(me);
                Flow::Continue
            }
            Msg::End(end) => Flow::Stop(end.reason()),
            Msg::Ping(r) => {
                r.send(ctx.pid());
                Flow::Continue
            }
            Msg::Spawn(r) => {
                r.send(ctx.spawn(Worker::idle()).map(|a| a.pid()));
                Flow::Continue
            }
        }
    }

    async fn terminate(&mut self, reason: &ExitReason, _ctx: &mut Ctx<Self>) {
        self.log.push(format!("terminate:{}:{}", self.id, reason));
        if self.hang_terminate {
            std::future::pending::<()>().await;
        }
    }
}

/// A node with default limits.
pub fn node() -> Node {
    Node::builder().build().expect("default node builds")
}

/// Ends the worker `pid` as `end` says and waits for its exit; returns the reason.
pub async fn end_child(node: &Node, pid: Pid, end: &End) -> ExitReason {
    let watch = node.watch(pid);
    match end {
        End::Kill => node.kill(pid),
        other => {
            let addr = node
                .lookup::<Worker>(pid)
                .unwrap_or_else(|| panic!("{pid} is not a live worker"));
            if addr.try_send(Msg::End(other.clone())).is_err() {
                panic!("could not reach {pid}");
            }
        }
    }
    let reason = within("the child's exit", watch).await;
    gone(node, pid).await;
    reason
}

/// Waits until `pid` has left the process table (watchers are told of an exit a
/// moment before its slot and budget units are given back).
pub async fn gone(node: &Node, pid: Pid) {
    eventually("the process leaves the table", || {
        node.process_info(pid).is_none()
    })
    .await;
}

/// Asks the worker `pid` to spawn an idle grandchild.
pub async fn spawn_grandchild(node: &Node, pid: Pid) -> Result<Pid, SpawnError> {
    let addr = node.lookup::<Worker>(pid).expect("a live worker");
    within("spawn request", addr.call(Msg::Spawn, HANG))
        .await
        .expect("the worker answers")
}

/// The pid of the child `id` in `children` (panics if absent).
pub fn pid_of(children: &[ChildInfo], id: &str) -> Option<Pid> {
    children
        .iter()
        .find(|c| &*c.id == id)
        .unwrap_or_else(|| panic!("no child {id:?} in {children:?}"))
        .pid
}

/// Polls `which_children` until `pred` holds (and every pid it reports is alive),
/// failing the test after [`HANG`] with the last answer.
pub async fn settle(
    node: &Node,
    sup: &SupervisorRef,
    what: &str,
    mut pred: impl FnMut(&[ChildInfo]) -> bool,
) -> Vec<ChildInfo> {
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let children = sup.which_children().await.expect("supervisor answers");
        let alive = children.iter().all(|c| c.pid.is_none_or(|p| node.is_alive(p)));
        if alive && pred(&children) {
            return children;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "hang guard: {what} not reached within {HANG:?}; children: {children:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Waits until the node has no live process.
pub async fn all_gone(node: &Node) {
    eventually("every process exits", || node.stats().processes == 0).await;
}
