//! The supervisor process: starts children in order, restarts them by strategy and
//! restart type within the restart intensity, stops them in reverse order.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::intensity::RestartLog;
use super::spec::{ChildKind, ChildSpec, Shutdown};
use super::{Backoff, RestartIntensity, SupervisorError};
use crate::{Actor, Ctx, ExitReason, Flow, Pid, Reply, SpawnError, Weight};

/// How a supervisor reacts when a child must be restarted (OTP's strategies).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Restart only the child that exited.
    OneForOne,
    /// Stop every other child (in reverse start order), then restart them all (in
    /// start order).
    OneForAll,
    /// Stop the children started after the one that exited (in reverse order), then
    /// restart it and them (in start order).
    RestForOne,
}

/// Default bound on a supervisor's children (static and dynamic together).
pub const DEFAULT_MAX_CHILDREN: usize = 1024;

/// Everything a supervisor needs to start (and restart) itself: strategy, restart
/// intensity, optional backoff, limits and the child specs.
///
/// Cheap to clone: a nested supervisor is restarted from its spec.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use girder::supervisor::{ChildSpec, Strategy, Supervisor, SupervisorSpec};
/// # use girder::{Actor, Ctx, Flow, Node};
/// # struct Worker;
/// # impl Actor for Worker { type Msg = (); async fn handle(&mut self, _: (), _: &mut Ctx<Self>) -> Flow { Flow::Continue } }
///
/// # #[tokio::main] async fn main() {
/// let node = Node::builder().build().unwrap();
/// let spec = SupervisorSpec::new(Strategy::OneForOne)
///     .intensity(3, Duration::from_secs(5))
///     .child(ChildSpec::worker("a", || Worker))
///     .child(ChildSpec::worker("b", || Worker));
/// let sup = Supervisor::start(&node, spec).await.unwrap();
/// let counts = sup.count_children().await.unwrap();
/// assert_eq!(counts.active, 2);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct SupervisorSpec {
    pub(crate) strategy: Strategy,
    pub(crate) intensity: RestartIntensity,
    pub(crate) backoff: Option<Backoff>,
    pub(crate) max_children: usize,
    pub(crate) max_descendants: Option<usize>,
    pub(crate) children: Vec<ChildSpec>,
}

impl SupervisorSpec {
    /// A spec with `strategy`, the default intensity (3 restarts in 5 s), no backoff,
    /// `max_children` 1,024 and no children.
    pub fn new(strategy: Strategy) -> Self {
        SupervisorSpec {
            strategy,
            intensity: RestartIntensity::default(),
            backoff: None,
            max_children: DEFAULT_MAX_CHILDREN,
            max_descendants: None,
            children: Vec::new(),
        }
    }

    /// At most `max_restarts` restarts in `period` (past it the supervisor escalates).
    pub fn intensity(mut self, max_restarts: u32, period: Duration) -> Self {
        self.intensity = RestartIntensity { max_restarts, period };
        self
    }

    /// Delays restarts of a crashing child (see [`Backoff`]).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// Bounds the number of children (default 1,024; never unbounded).
    pub fn max_children(mut self, n: usize) -> Self {
        self.max_children = n;
        self
    }

    /// Gives the subtree a process budget: every process spawned anywhere below this
    /// supervisor counts against `n` (see
    /// [`SpawnOptions::max_descendants`](crate::SpawnOptions::max_descendants)).
    pub fn max_descendants(mut self, n: usize) -> Self {
        self.max_descendants = Some(n);
        self
    }

    /// Adds a child, started after those added before it.
    pub fn child(mut self, spec: ChildSpec) -> Self {
        self.children.push(spec);
        self
    }

    pub(crate) fn validate(&self) -> Result<(), SupervisorError> {
        if self.max_children == 0 {
            return Err(SupervisorError::Invalid("max_children must be greater than zero"));
        }
        if self.children.len() > self.max_children {
            return Err(SupervisorError::Invalid("more child specs than max_children"));
        }
        for (i, c) in self.children.iter().enumerate() {
            if self.children[..i].iter().any(|o| o.id == c.id) {
                return Err(SupervisorError::DuplicateId(c.id.clone()));
            }
        }
        Ok(())
    }
}

/// One child as reported by [`SupervisorRef::which_children`](super::SupervisorRef::which_children).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildInfo {
    /// The child's id.
    pub id: Arc<str>,
    /// Its current process, if running.
    pub pid: Option<Pid>,
    /// Worker or supervisor.
    pub kind: ChildKind,
    /// Its restart type.
    pub restart: super::Restart,
}

/// Child counts as reported by [`SupervisorRef::count_children`](super::SupervisorRef::count_children).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChildCounts {
    /// Child specs held.
    pub specs: usize,
    /// Children running.
    pub active: usize,
    /// Children that are supervisors.
    pub supervisors: usize,
    /// Children that are workers.
    pub workers: usize,
}

struct Child {
    spec: ChildSpec,
    pid: Option<Pid>,
    /// Waiting for a (delayed) restart.
    pending: bool,
    /// Started with a generated id (a dynamic child, named by pid): forgotten when it
    /// exits and is not restarted, as in Elixir's `DynamicSupervisor`.
    dynamic: bool,
}

/// The requests a supervisor handles; use [`SupervisorRef`](super::SupervisorRef).
pub struct SupervisorMsg(pub(crate) Op);

impl Weight for SupervisorMsg {}

pub(crate) enum Op {
    Which(Reply<Vec<ChildInfo>>),
    Count(Reply<ChildCounts>),
    Start(ChildSpec, Reply<Result<Pid, SupervisorError>>),
    Terminate(Target, Reply<Result<(), SupervisorError>>),
    Restart(Arc<str>, Reply<Result<Pid, SupervisorError>>),
    Delete(Arc<str>, Reply<Result<(), SupervisorError>>),
    /// A backoff delay has passed: start the pending children.
    RestartPending,
}

/// A child named by id (static children) or by pid (dynamic children).
pub(crate) enum Target {
    Id(Arc<str>),
    Pid(Pid),
}

/// A supervisor: a process that starts, watches and restarts children. See the
/// [module documentation](super).
pub struct Supervisor {
    spec: SupervisorSpec,
    children: Vec<Child>,
    log: RestartLog,
    streak: u32,
    last_restart: Option<Instant>,
    next_dynamic_id: u64,
    /// Started by its own supervisor as a restart: its children start from the
    /// node's reserved headroom too, so a restarted subtree is restored whole.
    pub(crate) restarting: bool,
}

impl Supervisor {
    /// The supervisor process for `spec`, to spawn (usually through
    /// [`Supervisor::start`] or a [`ChildSpec::supervisor`]).
    pub fn new(spec: SupervisorSpec) -> Self {
        Supervisor {
            spec,
            children: Vec::new(),
            log: RestartLog::default(),
            streak: 0,
            last_restart: None,
            next_dynamic_id: 0,
            restarting: false,
        }
    }

    async fn start_child(
        &self,
        ctx: &Ctx<Self>,
        spec: &ChildSpec,
        restarting: bool,
    ) -> Result<Pid, SpawnError> {
        (spec.start)(ctx, spec.spawn_options(restarting)).await
    }

    /// Stops one child per its shutdown spec, as OTP: unlink, exit(shutdown) or
    /// kill, wait (up to the timeout, then kill).
    pub(crate) async fn stop_child(ctx: &Ctx<Self>, pid: Pid, shutdown: Shutdown) {
        ctx.unlink(pid);
        let mut watch = ctx.node().watch(pid);
        match shutdown {
            Shutdown::BrutalKill => {
                ctx.kill(pid);
                let _ = watch.await;
            }
            Shutdown::Infinity => {
                ctx.exit(pid, ExitReason::Shutdown);
                let _ = watch.await;
            }
            Shutdown::Timeout(t) => {
                ctx.exit(pid, ExitReason::Shutdown);
                if tokio::time::timeout(t, &mut watch).await.is_err() {
                    ctx.kill(pid);
                    let _ = watch.await;
                }
            }
        }
    }

    /// Stops the running children at `indices`, last first.
    async fn stop_indices(&mut self, ctx: &Ctx<Self>, indices: impl DoubleEndedIterator<Item = usize>) {
        for i in indices.rev() {
            if let Some(pid) = self.children[i].pid.take() {
                Self::stop_child(ctx, pid, self.children[i].spec.shutdown).await;
            }
        }
    }

    async fn stop_all(&mut self, ctx: &Ctx<Self>) {
        let n = self.children.len();
        self.stop_indices(ctx, 0..n).await;
    }

    /// Records one restart against the intensity. `false`: escalate.
    fn record_restart(&mut self, ctx: &Ctx<Self>) -> bool {
        let now = Instant::now();
        if let (Some(b), Some(last)) = (self.spec.backoff, self.last_restart) {
            if now.duration_since(last) > b.reset_after {
                self.streak = 0;
            }
        }
        self.last_restart = Some(now);
        let ok = self.log.record(self.spec.intensity, now);
        if ok {
            ctx.node().inner.counters.restarts.fetch_add(1, Ordering::Relaxed);
        } else {
            ctx.node()
                .inner
                .counters
                .escalations
                .fetch_add(1, Ordering::Relaxed);
            crate::limit_event!(warn, "restart intensity exceeded: shutting down", supervisor = %ctx.pid());
        }
        ok
    }

    /// Restarts the pending children (in start order): now, or after the backoff
    /// delay.
    async fn restart_pending(&mut self, ctx: &mut Ctx<Self>) -> Flow {
        if let Some(b) = self.spec.backoff {
            let delay = b.delay(self.streak);
            self.streak = self.streak.saturating_add(1);
            if !delay.is_zero() {
                if ctx.send_after(delay, SupervisorMsg(Op::RestartPending)).is_ok() {
                    return Flow::Continue;
                }
                tokio::time::sleep(delay).await;
            }
        }
        self.start_pending(ctx).await
    }

    /// Starts every pending child, in start order. A child that fails to start
    /// counts as another restart (OTP retries until the intensity is exceeded).
    async fn start_pending(&mut self, ctx: &mut Ctx<Self>) -> Flow {
        let mut i = 0;
        while i < self.children.len() {
            if !self.children[i].pending {
                i += 1;
                continue;
            }
            let spec = self.children[i].spec.clone();
            match self.start_child(ctx, &spec, true).await {
                Ok(pid) => {
                    self.children[i].pid = Some(pid);
                    self.children[i].pending = false;
                    i += 1;
                }
                Err(SpawnError::ShuttingDown) => return Flow::Stop(ExitReason::Shutdown),
                Err(e) => {
                    tracing::debug!(supervisor = %ctx.pid(), child = %spec.id, error = %e, "restart failed");
                    if !self.record_restart(ctx) {
                        return self.escalate(ctx).await;
                    }
                    // Retry through the mailbox so requests are still served.
                    let delay = self
                        .spec
                        .backoff
                        .map(|b| b.delay(self.streak))
                        .unwrap_or(Duration::ZERO);
                    self.streak = self.streak.saturating_add(1);
                    if ctx.send_after(delay, SupervisorMsg(Op::RestartPending)).is_err() {
                        return self.escalate(ctx).await;
                    }
                    return Flow::Continue;
                }
            }
        }
        Flow::Continue
    }

    async fn escalate(&mut self, ctx: &Ctx<Self>) -> Flow {
        self.stop_all(ctx).await;
        Flow::Stop(ExitReason::Shutdown)
    }

    fn find(&self, target: &Target) -> Option<usize> {
        self.children.iter().position(|c| match target {
            Target::Id(id) => c.spec.id == *id,
            Target::Pid(pid) => c.pid == Some(*pid),
        })
    }

    async fn op_start(&mut self, ctx: &Ctx<Self>, mut spec: ChildSpec) -> Result<Pid, SupervisorError> {
        if self.children.len() >= self.spec.max_children && self.held_slots(ctx) >= self.spec.max_children {
            ctx.node()
                .inner
                .counters
                .max_children_refusals
                .fetch_add(1, Ordering::Relaxed);
            crate::limit_event!(warn, "child refused: max_children", supervisor = %ctx.pid(), limit = self.spec.max_children);
            return Err(SupervisorError::MaxChildren {
                limit: self.spec.max_children,
            });
        }
        let dynamic = spec.id.is_empty();
        if dynamic {
            self.next_dynamic_id += 1;
            spec.id = format!("#{}", self.next_dynamic_id).into();
        } else if self.children.iter().any(|c| c.spec.id == spec.id) {
            return Err(SupervisorError::DuplicateId(spec.id));
        }
        let pid = self.start_child(ctx, &spec, false).await?;
        self.children.push(Child {
            spec,
            pid: Some(pid),
            pending: false,
            dynamic,
        });
        Ok(pid)
    }

    /// Children holding a slot: all but temporary children that have already exited
    /// (their exit signal may still be on its way; it will only remove them). Count
    /// live things, not events.
    fn held_slots(&self, ctx: &Ctx<Self>) -> usize {
        let node = ctx.node();
        self.children
            .iter()
            .filter(|c| {
                !(c.spec.restart == super::Restart::Temporary && c.pid.is_some_and(|p| !node.is_alive(p)))
            })
            .count()
    }

    async fn op_terminate(&mut self, ctx: &Ctx<Self>, target: Target) -> Result<(), SupervisorError> {
        let i = self
            .find(&target)
            .ok_or_else(|| SupervisorError::not_found(&target))?;
        self.children[i].pending = false;
        if let Some(pid) = self.children[i].pid.take() {
            Self::stop_child(ctx, pid, self.children[i].spec.shutdown).await;
        }
        // As OTP: a terminated temporary child (and any dynamic child) is forgotten.
        if self.children[i].spec.restart == super::Restart::Temporary || matches!(target, Target::Pid(_)) {
            self.children.remove(i);
        }
        Ok(())
    }

    async fn op_restart(&mut self, ctx: &Ctx<Self>, id: Arc<str>) -> Result<Pid, SupervisorError> {
        let target = Target::Id(id.clone());
        let i = self.find(&target).ok_or(SupervisorError::NotFound(id.clone()))?;
        if self.children[i].pid.is_some() {
            return Err(SupervisorError::Running(id));
        }
        let spec = self.children[i].spec.clone();
        let pid = self.start_child(ctx, &spec, false).await?;
        self.children[i].pid = Some(pid);
        self.children[i].pending = false;
        Ok(pid)
    }

    fn op_delete(&mut self, id: Arc<str>) -> Result<(), SupervisorError> {
        let i = self
            .find(&Target::Id(id.clone()))
            .ok_or(SupervisorError::NotFound(id.clone()))?;
        if self.children[i].pid.is_some() {
            return Err(SupervisorError::Running(id));
        }
        self.children.remove(i);
        Ok(())
    }

    fn which(&self) -> Vec<ChildInfo> {
        self.children
            .iter()
            .map(|c| ChildInfo {
                id: c.spec.id.clone(),
                pid: c.pid,
                kind: c.spec.kind,
                restart: c.spec.restart,
            })
            .collect()
    }

    fn count(&self) -> ChildCounts {
        let mut n = ChildCounts {
            specs: self.children.len(),
            ..ChildCounts::default()
        };
        for c in &self.children {
            n.active += usize::from(c.pid.is_some());
            match c.spec.kind {
                ChildKind::Supervisor => n.supervisors += 1,
                ChildKind::Worker => n.workers += 1,
            }
        }
        n
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;

    async fn init(&mut self, ctx: &mut Ctx<Self>) -> Result<(), ExitReason> {
        ctx.trap_exit(true);
        if let Err(e) = self.spec.validate() {
            return Err(ExitReason::custom(e.to_string()));
        }
        let specs = std::mem::take(&mut self.spec.children);
        for spec in &specs {
            match self.start_child(ctx, spec, self.restarting).await {
                Ok(pid) => self.children.push(Child {
                    spec: spec.clone(),
                    pid: Some(pid),
                    pending: false,
                    dynamic: false,
                }),
                Err(e) => {
                    // As OTP: a child that fails to start fails the supervisor's
                    // start, after the children already started are stopped.
                    self.stop_all(ctx).await;
                    return Err(ExitReason::custom(format!(
                        "child {:?} failed to start: {e}",
                        spec.id
                    )));
                }
            }
        }
        self.spec.children = specs;
        Ok(())
    }

    async fn handle(&mut self, msg: SupervisorMsg, ctx: &mut Ctx<Self>) -> Flow {
        match msg.0 {
            Op::Which(r) => r.send(self.which()),
            Op::Count(r) => r.send(self.count()),
            Op::Start(spec, r) => r.send(self.op_start(ctx, spec).await),
            Op::Terminate(t, r) => r.send(self.op_terminate(ctx, t).await),
            Op::Restart(id, r) => r.send(self.op_restart(ctx, id).await),
            Op::Delete(id, r) => r.send(self.op_delete(id)),
            Op::RestartPending => return self.start_pending(ctx).await,
        }
        Flow::Continue
    }

    async fn handle_exit(&mut self, from: Pid, reason: ExitReason, ctx: &mut Ctx<Self>) -> Flow {
        let Some(i) = self.children.iter().position(|c| c.pid == Some(from)) else {
            // Not (or no longer) a child: nothing to do, as OTP.
            return Flow::Continue;
        };
        self.children[i].pid = None;
        let restart = self.children[i].spec.restart;
        if !restart.restarts_after(&reason) {
            if restart == super::Restart::Temporary || self.children[i].dynamic {
                self.children.remove(i);
            }
            return Flow::Continue;
        }
        if !self.record_restart(ctx) {
            return self.escalate(ctx).await;
        }
        let n = self.children.len();
        let group: std::ops::Range<usize> = match self.spec.strategy {
            Strategy::OneForOne => i..i + 1,
            Strategy::OneForAll => {
                self.stop_indices(ctx, (0..n).filter(|&j| j != i).collect::<Vec<_>>().into_iter())
                    .await;
                0..n
            }
            Strategy::RestForOne => {
                self.stop_indices(ctx, i + 1..n).await;
                i..n
            }
        };
        // Temporary children stopped for a sibling are not restarted: forget them.
        // The others of the group restart, in start order.
        let mut index = 0;
        self.children.retain_mut(|c| {
            let in_group = group.contains(&index);
            index += 1;
            if in_group && c.spec.restart == super::Restart::Temporary {
                return false;
            }
            c.pending |= in_group;
            true
        });
        self.restart_pending(ctx).await
    }

    async fn terminate(&mut self, _reason: &ExitReason, ctx: &mut Ctx<Self>) {
        self.stop_all(ctx).await;
    }
}
