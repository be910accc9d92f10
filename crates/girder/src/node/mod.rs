//! The node: one runtime instance with its limits, process table, registry and
//! counters.
//!
//! A [`Node`] is a cheap handle (clone it freely). Processes run as tokio tasks on the
//! runtime the node was built in; girder owns processes, not threads.
//!
//! # Limits
//!
//! Every table and budget of the node is bounded with a safe default (see
//! [`NodeBuilder`]): the process table (`max_processes`, with headroom reserved for
//! supervisors), the node-wide mailbox byte budget, the registry, and per process the
//! links, monitors and pending timers. Each limit hit returns a typed error and is
//! counted in [`NodeStats`].
//!
//! # Shutdown
//!
//! [`Node::shutdown`] refuses new spawns and stops processes top down, as OTP stops
//! its applications: first the roots (processes without a live parent) get an exit
//! signal with reason `Shutdown`, so supervisors stop their subtrees in reverse start
//! order; then whatever is left gets the same signal. Past the shutdown timeout the
//! rest is killed. As in OTP, a process that traps exits runs `terminate(Shutdown)`;
//! one that does not exits at once.

mod builder;
mod inner;
mod spawn;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

pub use builder::{NodeBuilder, MAX_PROCESSES_CEILING};
pub(crate) use inner::NodeInner;
pub use spawn::SpawnOptions;

use crate::actor::shared::ProcessShared;
use crate::{
    Actor, Addr, ExitReason, LinkError, NodeId, NodeStats, Pid, ProcessInfo, RegistryError, SpawnError,
};

/// A girder node. See the [module documentation](self).
///
/// # Examples
///
/// ```
/// use girder::{Actor, Ctx, ExitReason, Flow, Node, SpawnError};
///
/// struct Worker;
/// impl Actor for Worker {
///     type Msg = ();
///     async fn handle(&mut self, _: (), _: &mut Ctx<Self>) -> Flow { Flow::Stop(ExitReason::Normal) }
/// }
///
/// # #[tokio::main] async fn main() {
/// let node = Node::builder().max_processes(2).reserved_processes(0).build().unwrap();
/// let a = node.spawn(Worker).unwrap();
/// let _b = node.spawn(Worker).unwrap();
/// // The table is full: the third spawn is refused at once, nothing allocated.
/// assert!(matches!(node.spawn(Worker), Err(SpawnError::ProcessLimit { limit: 2 })));
///
/// // When a process exits, its slot is free again.
/// let exit = node.watch(a.pid());
/// a.try_send(()).unwrap();
/// assert_eq!(exit.await, ExitReason::Normal);
/// assert!(node.spawn(Worker).is_ok());
/// assert_eq!(node.stats().spawn_refusals, 1);
/// # }
/// ```
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<NodeInner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.inner.id)
            .field("processes", &self.inner.table.len())
            .finish()
    }
}

impl Node {
    /// A builder with every limit at its safe default.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// This node's identity.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// Spawns `actor` with the default options. Returns at once; `init` runs in the
    /// new process (an `init` error ends it with that reason — use
    /// [`start`](Node::start) to wait for `init`).
    ///
    /// # Errors
    ///
    /// [`SpawnError::ProcessLimit`] at the process limit (checked before anything is
    /// allocated), [`SpawnError::ShuttingDown`] during shutdown.
    pub fn spawn<A: Actor>(&self, actor: A) -> Result<Addr<A>, SpawnError> {
        self.spawn_with(actor, SpawnOptions::new())
    }

    /// Spawns `actor` with options (name, mailbox, reserve).
    ///
    /// # Errors
    ///
    /// As [`spawn`](Node::spawn), plus `Name` if the name cannot be registered and
    /// `Config` if the mailbox is invalid.
    pub fn spawn_with<A: Actor>(&self, actor: A, opts: SpawnOptions) -> Result<Addr<A>, SpawnError> {
        self.inner.spawn_actor(actor, opts, None, None)
    }

    /// Spawns `actor` and waits until its `init` has run (`gen_server:start`).
    ///
    /// # Errors
    ///
    /// As [`spawn_with`](Node::spawn_with), plus [`SpawnError::InitFailed`] with the
    /// reason `init` returned (or its panic).
    pub async fn start<A: Actor>(&self, actor: A) -> Result<Addr<A>, SpawnError> {
        self.start_with(actor, SpawnOptions::new()).await
    }

    /// As [`start`](Node::start), with options.
    ///
    /// # Errors
    ///
    /// As [`start`](Node::start).
    pub async fn start_with<A: Actor>(&self, actor: A, opts: SpawnOptions) -> Result<Addr<A>, SpawnError> {
        self.inner.start_actor(actor, opts, None).await
    }

    /// Kills `pid` untrappably (OTP's `exit(Pid, kill)`): it exits with
    /// [`ExitReason::Killed`] at its next await point, without `terminate`.
    pub fn kill(&self, pid: Pid) {
        if let Some(p) = self.inner.table.get(pid) {
            p.core().kill(ExitReason::Killed);
        }
    }

    /// Sends an exit signal with `reason` to `pid` from the node (OTP's `exit/2`).
    pub fn exit(&self, pid: Pid, reason: ExitReason) {
        self.inner.exit_signal(None, pid, reason)
    }

    /// Stops `pid` with `reason`, as OTP's `gen_server:stop/2` (`proc_lib:stop`):
    /// a process trapping exits — a supervisor — stops after the message it is
    /// handling and runs `terminate` (a supervisor first stops its children, last
    /// started first); any other process is ended with `reason` at its next await
    /// point. Unlike [`exit`](Node::exit), this also stops a top-level supervisor,
    /// which (as in OTP) ignores exit signals from processes that are not its parent.
    pub fn stop(&self, pid: Pid, reason: ExitReason) {
        if let Some(p) = self.inner.table.get(pid) {
            NodeInner::stop_process(&*p, reason);
        }
    }

    /// `true` while `pid` is a live process of this node.
    pub fn is_alive(&self, pid: Pid) -> bool {
        self.inner
            .table
            .get(pid)
            .is_some_and(|p| !p.core().state.lock().exiting)
    }

    /// The typed address of `pid`, if it is alive and runs an `A`.
    pub fn lookup<A: Actor>(&self, pid: Pid) -> Option<Addr<A>> {
        let any = self.inner.table.get(pid)?.into_any();
        let shared = any.downcast::<ProcessShared<A::Msg>>().ok()?;
        (shared.core.actor_type == std::any::type_name::<A>()).then_some(Addr { shared })
    }

    /// Registers `pid` under `name`.
    ///
    /// # Errors
    ///
    /// `NameTaken` if a live process holds the name, `AlreadyNamed` if the process has
    /// a name, `NoProc` if it is gone, `Full` at [`max_names`](NodeBuilder::max_names).
    pub fn register(&self, name: &str, pid: Pid) -> Result<(), RegistryError> {
        self.inner.register(name, pid)
    }

    /// Removes `name` from the registry. Returns `false` if it was not registered.
    pub fn unregister(&self, name: &str) -> bool {
        self.inner.unregister(name)
    }

    /// The live process registered under `name`.
    pub fn whereis(&self, name: &str) -> Option<Pid> {
        self.inner.registry.get(name).filter(|&p| self.is_alive(p))
    }

    /// The typed address of the process registered under `name`.
    pub fn whereis_addr<A: Actor>(&self, name: &str) -> Option<Addr<A>> {
        self.lookup(self.whereis(name)?)
    }

    /// A future that resolves with `pid`'s exit reason (`NoProc` if it is already
    /// gone): a monitor for code outside any process. Watchers count against the
    /// process's [`max_monitors_per_process`](NodeBuilder::max_monitors_per_process);
    /// past it the watch resolves at once with the custom reason `"too many
    /// monitors"` and the refusal is counted in `link_refusals`.
    pub fn watch(&self, pid: Pid) -> ExitWatch {
        ExitWatch {
            rx: self.inner.watch(pid),
        }
    }

    /// Node-wide limits and counters. Walks the live processes once.
    pub fn stats(&self) -> NodeStats {
        self.inner.stats()
    }

    /// One snapshot per live process.
    pub fn processes(&self) -> Vec<ProcessInfo> {
        self.inner.processes()
    }

    /// The processes running a handler right now, each with its handler run number:
    /// the same pid and run in a later call means that handler has not returned in
    /// between. For watchdogs (girder-watch reports handlers past a time budget).
    /// Walks the live processes once; reads one atomic each.
    pub fn running_handlers(&self) -> Vec<crate::observe::RunningHandler> {
        self.inner.running_handlers()
    }

    /// The snapshot of one process.
    pub fn process_info(&self, pid: Pid) -> Option<ProcessInfo> {
        self.inner.table.get(pid).map(|p| inner::info(&*p))
    }

    /// Stops every process (see the [module documentation](self)) within the
    /// configured [`shutdown_timeout`](NodeBuilder::shutdown_timeout).
    pub async fn shutdown(&self) -> ShutdownReport {
        self.shutdown_timeout(self.inner.config.shutdown_timeout).await
    }

    /// As [`shutdown`](Node::shutdown) with an explicit timeout.
    pub async fn shutdown_timeout(&self, timeout: Duration) -> ShutdownReport {
        self.inner.shutdown(timeout).await
    }
}

/// Resolves with a process's exit reason. Returned by [`Node::watch`].
#[derive(Debug)]
pub struct ExitWatch {
    rx: Result<tokio::sync::oneshot::Receiver<ExitReason>, LinkError>,
}

impl Future for ExitWatch {
    type Output = ExitReason;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ExitReason> {
        match &mut self.rx {
            // Too many watchers on this process: report it as unobservable.
            Err(_) => Poll::Ready(ExitReason::custom("too many monitors")),
            Ok(rx) => Pin::new(rx).poll(cx).map(|r| r.unwrap_or(ExitReason::NoProc)),
        }
    }
}

/// What [`Node::shutdown`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Processes that stopped within the timeout.
    pub stopped: usize,
    /// Processes killed after the timeout.
    pub killed: usize,
    /// Processes still running after the kill (a handler that never yields).
    pub remaining: usize,
}
