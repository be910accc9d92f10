use std::time::Duration;

use super::{ChildCounts, ChildSpec, Strategy, Supervisor, SupervisorError, SupervisorRef, SupervisorSpec};
use crate::{Node, Pid, SpawnOptions};

/// A supervisor whose children are started at run time (OTP's `DynamicSupervisor`):
/// one-for-one, children named by pid, always within `max_children` (default 1,024;
/// never unbounded).
///
/// # Examples
///
/// ```
/// use girder::supervisor::{ChildSpec, DynamicSupervisor, SupervisorError};
/// # use girder::{Actor, Ctx, Flow, Node};
/// # struct Session;
/// # impl Actor for Session { type Msg = (); async fn handle(&mut self, _: (), _: &mut Ctx<Self>) -> Flow { Flow::Continue } }
///
/// # #[tokio::main] async fn main() {
/// let node = Node::builder().build().unwrap();
/// let sessions = DynamicSupervisor::start(&node, DynamicSupervisor::spec().max_children(2)).await.unwrap();
/// sessions.start_child(ChildSpec::worker("session", || Session)).await.unwrap();
/// sessions.start_child(ChildSpec::worker("session", || Session)).await.unwrap();
/// let third = sessions.start_child(ChildSpec::worker("session", || Session)).await;
/// assert!(matches!(third, Err(SupervisorError::MaxChildren { limit: 2 })));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct DynamicSupervisor {
    sup: SupervisorRef,
}

impl DynamicSupervisor {
    /// The spec to start from: one-for-one, default intensity, `max_children` 1,024.
    pub fn spec() -> SupervisorSpec {
        SupervisorSpec::new(Strategy::OneForOne)
    }

    /// Starts a dynamic supervisor on `node`.
    ///
    /// # Errors
    ///
    /// `Invalid` if the spec has children or a strategy other than one-for-one;
    /// `Start` if it cannot be spawned.
    pub async fn start(node: &Node, spec: SupervisorSpec) -> Result<Self, SupervisorError> {
        Self::start_with(node, spec, SpawnOptions::new()).await
    }

    /// As [`start`](Self::start), with spawn options.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub async fn start_with(
        node: &Node,
        spec: SupervisorSpec,
        opts: SpawnOptions,
    ) -> Result<Self, SupervisorError> {
        if !spec.children.is_empty() {
            return Err(SupervisorError::Invalid(
                "a dynamic supervisor starts without children",
            ));
        }
        if spec.strategy != Strategy::OneForOne {
            return Err(SupervisorError::Invalid("a dynamic supervisor is one-for-one"));
        }
        Ok(DynamicSupervisor {
            sup: Supervisor::start_with(node, spec, opts).await?,
        })
    }

    /// The same handle, waiting at most `timeout` for each answer.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        DynamicSupervisor {
            sup: self.sup.with_timeout(timeout),
        }
    }

    /// The supervisor's pid.
    pub fn pid(&self) -> Pid {
        self.sup.pid()
    }

    /// The underlying supervisor handle.
    pub fn as_supervisor(&self) -> &SupervisorRef {
        &self.sup
    }

    /// Starts a child from `spec` (its id is replaced by a generated one).
    ///
    /// # Errors
    ///
    /// [`SupervisorError::MaxChildren`] at once at the limit (counted in the node's
    /// `max_children_refusals`); `Start` if the child fails to start.
    pub async fn start_child(&self, mut spec: ChildSpec) -> Result<Pid, SupervisorError> {
        spec.id = "".into();
        self.sup.start_child(spec).await
    }

    /// Stops a child and forgets it.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::NotAChild`].
    pub async fn terminate_child(&self, pid: Pid) -> Result<(), SupervisorError> {
        self.sup.terminate_pid(pid).await
    }

    /// The running children's pids, in start order.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::Call`] if the supervisor does not answer.
    pub async fn which_children(&self) -> Result<Vec<Pid>, SupervisorError> {
        Ok(self
            .sup
            .which_children()
            .await?
            .into_iter()
            .filter_map(|c| c.pid)
            .collect())
    }

    /// Counts of children.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::Call`] if the supervisor does not answer.
    pub async fn count_children(&self) -> Result<ChildCounts, SupervisorError> {
        self.sup.count_children().await
    }
}
