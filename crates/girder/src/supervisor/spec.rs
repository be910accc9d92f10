use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::Supervisor;
use crate::{Actor, Ctx, Mailbox, Pid, SpawnError, SpawnOptions};

/// When a child is restarted after it exits (OTP's `restart` of a child spec).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Restart {
    /// Always restarted. The default.
    Permanent,
    /// Restarted only after an abnormal exit (not `Normal` or `Shutdown`).
    Transient,
    /// Never restarted; removed from the supervisor when it exits.
    Temporary,
}

impl Restart {
    /// Whether a child with this restart type is restarted after exiting with `reason`.
    pub fn restarts_after(self, reason: &crate::ExitReason) -> bool {
        match self {
            Restart::Permanent => true,
            Restart::Transient => !reason.is_clean(),
            Restart::Temporary => false,
        }
    }
}

/// How a supervisor stops a child (OTP's `shutdown` of a child spec).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shutdown {
    /// Send an exit signal with reason `Shutdown`, wait this long, then kill. The
    /// default for workers is 5 s, as in OTP.
    Timeout(Duration),
    /// Kill at once, untrappably.
    BrutalKill,
    /// Send `Shutdown` and wait as long as it takes. The default for supervisors, so a
    /// subtree gets the time it needs to stop its own children.
    Infinity,
}

/// Whether a child is a worker or a supervisor (reported by `count_children`, and
/// the default shutdown).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChildKind {
    /// An ordinary process.
    Worker,
    /// A supervisor: a subtree.
    Supervisor,
}

/// Starts one incarnation of a child, linked to the supervisor, and resolves once it
/// is ready (after its `init`, for actors).
pub(crate) type StartFn =
    dyn for<'a> Fn(&'a Ctx<Supervisor>, SpawnOptions) -> BoxFuture<'a, Result<Pid, SpawnError>> + Send + Sync;

/// How to start one child, and how to treat it (OTP's child spec).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use girder::supervisor::{ChildSpec, Restart, Shutdown};
/// # use girder::{Actor, Ctx, Flow};
/// # struct Worker;
/// # impl Actor for Worker { type Msg = (); async fn handle(&mut self, _: (), _: &mut Ctx<Self>) -> Flow { Flow::Continue } }
///
/// let spec = ChildSpec::worker("cache", || Worker)
///     .restart(Restart::Transient)
///     .shutdown(Shutdown::Timeout(Duration::from_secs(1)))
///     .name("cache");
/// assert_eq!(spec.id(), "cache");
/// ```
#[derive(Clone)]
pub struct ChildSpec {
    pub(crate) id: Arc<str>,
    pub(crate) start: Arc<StartFn>,
    pub(crate) restart: Restart,
    pub(crate) shutdown: Shutdown,
    pub(crate) kind: ChildKind,
    pub(crate) name: Option<Arc<str>>,
    pub(crate) mailbox: Option<Mailbox>,
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("restart", &self.restart)
            .field("shutdown", &self.shutdown)
            .field("kind", &self.kind)
            .field("name", &self.name)
            .finish()
    }
}

/// Default time a worker gets to stop before it is killed (OTP's 5000 ms).
pub const DEFAULT_WORKER_SHUTDOWN: Duration = Duration::from_secs(5);

impl ChildSpec {
    /// A worker child: `make` builds a fresh actor for every (re)start.
    pub fn worker<A, F>(id: impl Into<Arc<str>>, make: F) -> Self
    where
        A: Actor,
        F: Fn() -> A + Send + Sync + 'static,
    {
        ChildSpec {
            id: id.into(),
            start: Arc::new(move |ctx, opts| {
                let actor = make();
                Box::pin(async move { ctx.start_with(actor, opts).await.map(|a| a.pid()) })
            }),
            restart: Restart::Permanent,
            shutdown: Shutdown::Timeout(DEFAULT_WORKER_SHUTDOWN),
            kind: ChildKind::Worker,
            name: None,
            mailbox: None,
        }
    }

    /// A supervisor child: a nested subtree, started fresh from `spec` on every
    /// (re)start. Its default shutdown is [`Shutdown::Infinity`].
    pub fn supervisor(id: impl Into<Arc<str>>, spec: super::SupervisorSpec) -> Self {
        ChildSpec {
            id: id.into(),
            start: Arc::new(move |ctx, opts| {
                let opts = match spec.max_descendants {
                    Some(n) => opts.max_descendants(n),
                    None => opts,
                };
                let mut sup = Supervisor::new(spec.clone());
                sup.restarting = opts.use_reserve;
                Box::pin(async move { ctx.start_with(sup, opts).await.map(|a| a.pid()) })
            }),
            restart: Restart::Permanent,
            shutdown: Shutdown::Infinity,
            kind: ChildKind::Supervisor,
            name: None,
            mailbox: None,
        }
    }

    /// Sets the restart type (default [`Restart::Permanent`]).
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// Sets how the child is stopped.
    pub fn shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// Registers every incarnation of the child under `name`, so others can find the
    /// current one with [`Node::whereis`](crate::Node::whereis).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Gives the child its own mailbox.
    pub fn mailbox(mut self, mailbox: Mailbox) -> Self {
        self.mailbox = Some(mailbox);
        self
    }

    /// The child's id, unique within its supervisor.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The restart type.
    pub fn get_restart(&self) -> Restart {
        self.restart
    }

    /// The kind.
    pub fn kind(&self) -> ChildKind {
        self.kind
    }

    pub(crate) fn spawn_options(&self, restarting: bool) -> SpawnOptions {
        let mut opts = SpawnOptions::new().link();
        opts.label = Some(self.id.clone());
        if let Some(n) = &self.name {
            opts = opts.name(n.clone());
        }
        if let Some(m) = self.mailbox {
            opts = opts.mailbox(m);
        }
        // Restarts may use the node's reserved headroom: a runaway spawner at the
        // process limit must not stop a supervisor from restoring service.
        if restarting {
            opts = opts.use_reserve();
        }
        opts
    }
}
