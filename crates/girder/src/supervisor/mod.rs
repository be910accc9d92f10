//! Supervision trees: supervisors, dynamic supervisors, restart intensity, backoff and
//! per-subtree process budgets.
//!
//! A [`Supervisor`] is a process that starts its children in order, traps their exits,
//! restarts them by its [`Strategy`] and each child's [`Restart`] type, and stops them
//! in reverse order — OTP's `supervisor` behaviour:
//!
//! | restart type | restarted after |
//! |---|---|
//! | `Permanent` | any exit |
//! | `Transient` | an abnormal exit (not `Normal` or `Shutdown`) |
//! | `Temporary` | never (and forgotten when it exits or is terminated) |
//!
//! | strategy | when a child must be restarted |
//! |---|---|
//! | `OneForOne` | only that child restarts |
//! | `OneForAll` | all others are stopped (reverse order), then all restart (start order) |
//! | `RestForOne` | the children started after it are stopped (reverse order), then it and they restart |
//!
//! **Restart intensity.** At most `max_restarts` restarts within `period` (default 3 in
//! 5 s, as Elixir). One more and the supervisor stops all its children and exits with
//! `Shutdown`, so its own supervisor sees the failure — escalation. A restart that
//! fails to start the child counts as another restart.
//!
//! **Backoff** (optional; girder goes beyond OTP here): restarts of a crash loop are
//! delayed exponentially up to a cap ([`Backoff`]), so a child that dies at once cannot
//! burn the CPU; the supervisor keeps serving requests during the delay.
//!
//! **Stopping a child** follows its [`Shutdown`]: unlink, exit signal `Shutdown`, wait
//! up to the timeout, then kill (`BrutalKill`: kill at once; `Infinity`: wait, the
//! default for supervisor children). A child actor that traps exits runs `terminate`.
//!
//! **Limits.** Every supervisor bounds its children (`max_children`, default 1,024;
//! past it `start_child` fails with [`SupervisorError::MaxChildren`] at once and the
//! refusal is counted). A supervisor given `max_descendants` owns a process budget:
//! every process spawned anywhere below it counts, and past it spawns in the subtree
//! fail with `SpawnError::BudgetExhausted` naming the subtree while the rest of the
//! node spawns on. Restarts may use the node's reserved headroom, so a runaway
//! spawner at the process limit cannot stop a supervisor from restoring service.
//!
//! A [`DynamicSupervisor`] starts children at run time (OTP's `DynamicSupervisor`:
//! one-for-one, children named by pid), always within `max_children`. A
//! [`TaskSupervisor`] runs futures as supervised processes (Elixir's
//! `Task.Supervisor`), and its [`async_stream`](TaskSupervisor::async_stream) is the
//! answer to "one task per item of a huge list": at most `max_concurrency` tasks at a
//! time, results in bounded memory.

mod dynamic;
mod intensity;
mod server;
mod spec;
mod task;

use std::sync::Arc;
use std::time::Duration;

pub use dynamic::DynamicSupervisor;
pub use intensity::{Backoff, RestartIntensity};
pub use server::{
    ChildCounts, ChildInfo, Strategy, Supervisor, SupervisorMsg, SupervisorSpec, DEFAULT_MAX_CHILDREN,
};
pub use spec::{ChildKind, ChildSpec, Restart, Shutdown, DEFAULT_WORKER_SHUTDOWN};
pub use task::{OnTimeout, StreamOptions, Task, TaskError, TaskSupervisor};

use crate::{Addr, CallError, Node, Pid, Reply, SpawnError, SpawnOptions};
use server::{Op, Target};

/// Supervisor failures. Each names the child or the limit involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SupervisorError {
    /// No child with this id.
    #[error("no child with id {0:?}")]
    NotFound(Arc<str>),
    /// No child with this pid.
    #[error("no child with pid {0}")]
    NotAChild(Pid),
    /// The child is running (`restart_child`/`delete_child` need it stopped).
    #[error("child {0:?} is running; terminate it first")]
    Running(Arc<str>),
    /// A child with this id exists already.
    #[error("a child with id {0:?} exists already")]
    DuplicateId(Arc<str>),
    /// The supervisor holds `max_children` children.
    #[error("supervisor is at max_children ({limit}); raise SupervisorSpec::max_children")]
    MaxChildren {
        /// The supervisor's limit.
        limit: usize,
    },
    /// The child could not be started.
    #[error("child failed to start: {0}")]
    Start(#[from] SpawnError),
    /// The supervisor did not answer.
    #[error("supervisor unreachable: {0}")]
    Call(#[from] CallError),
    /// The spec is invalid.
    #[error("invalid supervisor spec: {0}")]
    Invalid(&'static str),
}

impl SupervisorError {
    pub(crate) fn not_found(target: &Target) -> Self {
        match target {
            Target::Id(id) => SupervisorError::NotFound(id.clone()),
            Target::Pid(pid) => SupervisorError::NotAChild(*pid),
        }
    }
}

/// Default time a [`SupervisorRef`] waits for its supervisor to answer.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A handle on a running supervisor: query and manage its children.
#[derive(Clone, Debug)]
pub struct SupervisorRef {
    addr: Addr<Supervisor>,
    timeout: Duration,
}

impl Supervisor {
    /// Starts a top-level supervisor for `spec` on `node` and waits until every child
    /// has started.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::Invalid`]/`DuplicateId` for a bad spec; `Start` if the
    /// supervisor or one of its children failed to start (the children already
    /// started are stopped again).
    pub async fn start(node: &Node, spec: SupervisorSpec) -> Result<SupervisorRef, SupervisorError> {
        Self::start_with(node, spec, SpawnOptions::new()).await
    }

    /// As [`start`](Supervisor::start), with spawn options (a name, say).
    ///
    /// # Errors
    ///
    /// As [`start`](Supervisor::start).
    pub async fn start_with(
        node: &Node,
        spec: SupervisorSpec,
        mut opts: SpawnOptions,
    ) -> Result<SupervisorRef, SupervisorError> {
        spec.validate()?;
        if let Some(n) = spec.max_descendants {
            opts = opts.max_descendants(n);
        }
        let addr = node.start_with(Supervisor::new(spec), opts).await?;
        Ok(SupervisorRef::new(addr))
    }
}

impl SupervisorRef {
    /// A handle on the supervisor at `addr`.
    pub fn new(addr: Addr<Supervisor>) -> Self {
        SupervisorRef {
            addr,
            timeout: DEFAULT_CALL_TIMEOUT,
        }
    }

    /// The same handle, waiting at most `timeout` for each answer.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The supervisor's pid.
    pub fn pid(&self) -> Pid {
        self.addr.pid()
    }

    /// The supervisor's address.
    pub fn addr(&self) -> &Addr<Supervisor> {
        &self.addr
    }

    async fn ask<R>(&self, op: impl FnOnce(Reply<R>) -> Op) -> Result<R, SupervisorError> {
        Ok(self.addr.call(|r| SupervisorMsg(op(r)), self.timeout).await?)
    }

    /// The children, in start order.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::Call`] if the supervisor does not answer.
    pub async fn which_children(&self) -> Result<Vec<ChildInfo>, SupervisorError> {
        self.ask(Op::Which).await
    }

    /// Counts of specs, running children, supervisors and workers.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::Call`] if the supervisor does not answer.
    pub async fn count_children(&self) -> Result<ChildCounts, SupervisorError> {
        self.ask(Op::Count).await
    }

    /// Adds and starts a child (after the existing ones).
    ///
    /// # Errors
    ///
    /// `MaxChildren` at the limit (counted), `DuplicateId`, `Start`.
    pub async fn start_child(&self, spec: ChildSpec) -> Result<Pid, SupervisorError> {
        self.ask(|r| Op::Start(spec, r)).await?
    }

    /// Stops a child by id; its spec is kept (unless it is temporary), to be restarted
    /// with [`restart_child`](Self::restart_child) or removed with
    /// [`delete_child`](Self::delete_child).
    ///
    /// # Errors
    ///
    /// `NotFound`.
    pub async fn terminate_child(&self, id: &str) -> Result<(), SupervisorError> {
        let id: Arc<str> = id.into();
        self.ask(|r| Op::Terminate(Target::Id(id), r)).await?
    }

    /// Starts a stopped child again.
    ///
    /// # Errors
    ///
    /// `NotFound`, `Running`, `Start`.
    pub async fn restart_child(&self, id: &str) -> Result<Pid, SupervisorError> {
        let id: Arc<str> = id.into();
        self.ask(|r| Op::Restart(id, r)).await?
    }

    /// Removes a stopped child's spec.
    ///
    /// # Errors
    ///
    /// `NotFound`, `Running`.
    pub async fn delete_child(&self, id: &str) -> Result<(), SupervisorError> {
        let id: Arc<str> = id.into();
        self.ask(|r| Op::Delete(id, r)).await?
    }

    pub(crate) async fn terminate_pid(&self, pid: Pid) -> Result<(), SupervisorError> {
        self.ask(|r| Op::Terminate(Target::Pid(pid), r)).await?
    }
}
