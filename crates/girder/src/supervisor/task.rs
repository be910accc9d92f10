//! Tasks under a supervisor (Elixir's `Task.Supervisor`), and `async_stream`: bounded
//! concurrency over any number of items.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, StreamExt};
use futures_util::FutureExt;
use tokio::sync::oneshot;

use super::{ChildSpec, DynamicSupervisor, Restart, Shutdown, SupervisorError, SupervisorSpec};
use crate::{Actor, Ctx, ExitReason, ExitWatch, Flow, Node, Pid, SpawnOptions};

/// Why a task gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task exited without a result (it panicked, or was killed).
    #[error("task exited: {0}")]
    Exit(ExitReason),
    /// No result within the timeout; the task was killed.
    #[error("task timed out")]
    Timeout,
    /// The task could not be started (`MaxChildren`, process limit, …).
    #[error("task not started: {0}")]
    Start(SupervisorError),
}

/// What `async_stream` does when an item's task runs past its timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OnTimeout {
    /// Kill the task, yield `Err(TaskError::Timeout)` and end the stream (its other
    /// tasks are killed). Elixir's default (`:exit`), without taking the caller down.
    Exit,
    /// Kill the task, yield `Err(TaskError::Timeout)` for that item, and go on.
    KillTask,
}

/// Options of [`TaskSupervisor::async_stream`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamOptions {
    /// Tasks running at once (default: the number of cores).
    pub max_concurrency: usize,
    /// Yield results in input order (default) or as they complete.
    pub ordered: bool,
    /// Time each item's task may take (default 5 s, as Elixir).
    pub timeout: Duration,
    /// What a timeout does (default [`OnTimeout::Exit`]).
    pub on_timeout: OnTimeout,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            max_concurrency: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ordered: true,
            timeout: Duration::from_secs(5),
            on_timeout: OnTimeout::Exit,
        }
    }
}

impl StreamOptions {
    /// Sets `max_concurrency` (at least 1).
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.max(1);
        self
    }

    /// Sets `ordered`.
    pub fn ordered(mut self, ordered: bool) -> Self {
        self.ordered = ordered;
        self
    }

    /// Sets the per-item timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets what a timeout does.
    pub fn on_timeout(mut self, on_timeout: OnTimeout) -> Self {
        self.on_timeout = on_timeout;
        self
    }
}

/// The process a task runs in: runs its future once, then exits `Normal`.
struct TaskProcess {
    fut: Option<BoxFuture<'static, ()>>,
    link_to: Option<Pid>,
}

impl Actor for TaskProcess {
    type Msg = ();

    async fn init(&mut self, ctx: &mut Ctx<Self>) -> Result<(), ExitReason> {
        if let Some(owner) = self.link_to {
            // Linked from inside the task: a dead owner ends the task with `NoProc`.
            ctx.link(owner).map_err(|e| ExitReason::custom(e.to_string()))?;
        }
        if let Some(fut) = self.fut.take() {
            fut.await;
        }
        ctx.stop(ExitReason::Normal);
        Ok(())
    }

    async fn handle(&mut self, _: (), _: &mut Ctx<Self>) -> Flow {
        Flow::Continue
    }
}

/// A running task's result, to await.
///
/// Dropping a `Task` whose result has not arrived kills the task: a task nobody waits
/// for does no work.
#[derive(Debug)]
pub struct Task<T> {
    pid: Pid,
    node: Node,
    /// The result, or the reason of a panic (caught in the task, so it is known even
    /// when the task ends before `watch` is set up).
    rx: Option<oneshot::Receiver<Result<T, ExitReason>>>,
    watch: Option<ExitWatch>,
}

impl<T> Task<T> {
    /// The task's process.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Waits for the result at most `timeout`; past it the task is killed. Either way
    /// it returns once the task's process has exited, so the task no longer counts
    /// against its supervisor's `max_children`.
    ///
    /// # Errors
    ///
    /// [`TaskError::Timeout`], or [`TaskError::Exit`] if the task ended without a
    /// result (its exit reason: a panic, a kill).
    pub async fn await_timeout(mut self, timeout: Duration) -> Result<T, TaskError> {
        // Borrowed, not taken: if this future is dropped half-way, `self` still holds
        // the receiver and its drop kills the task.
        let rx = self.rx.as_mut().expect("result taken once");
        let outcome = tokio::time::timeout(timeout, rx).await;
        self.rx = None;
        match outcome {
            Ok(Ok(result)) => {
                // The task is ending: wait for its process to exit, so its slot
                // under the supervisor's `max_children` is free when this returns
                // (`async_stream` starts the next item right away).
                if let Some(w) = self.watch.take() {
                    w.await;
                }
                result.map_err(TaskError::Exit)
            }
            Ok(Err(_)) => {
                let reason = match self.watch.take() {
                    Some(w) => w.await,
                    None => ExitReason::NoProc,
                };
                Err(TaskError::Exit(reason))
            }
            Err(_) => {
                self.node.kill(self.pid);
                if let Some(w) = self.watch.take() {
                    w.await;
                }
                Err(TaskError::Timeout)
            }
        }
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        if self.rx.is_some() {
            self.node.kill(self.pid);
        }
    }
}

/// A supervisor for tasks (Elixir's `Task.Supervisor`): every task is a girder
/// process under it, so `max_children` and the node's limits bound them.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use futures_util::StreamExt;
/// use girder::supervisor::{StreamOptions, TaskSupervisor};
/// # use girder::Node;
///
/// # #[tokio::main] async fn main() {
/// let node = Node::builder().build().unwrap();
/// let tasks = TaskSupervisor::start(&node, TaskSupervisor::spec()).await.unwrap();
///
/// let t = tasks.async_nolink(async { 6 * 7 }).await.unwrap();
/// assert_eq!(t.await_timeout(Duration::from_secs(1)).await.unwrap(), 42);
///
/// // A million items would work the same: at most 4 tasks run at once.
/// let squares: Vec<u64> = tasks
///     .async_stream(1..=100u64, |n| async move { n * n }, StreamOptions::default().max_concurrency(4))
///     .map(|r| r.unwrap())
///     .collect()
///     .await;
/// assert_eq!(squares[9], 100);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct TaskSupervisor {
    sup: DynamicSupervisor,
    node: Node,
}

impl TaskSupervisor {
    /// The spec to start from: a dynamic supervisor (`max_children` 1,024).
    pub fn spec() -> SupervisorSpec {
        DynamicSupervisor::spec()
    }

    /// Starts a task supervisor on `node`.
    ///
    /// # Errors
    ///
    /// As [`DynamicSupervisor::start`].
    pub async fn start(node: &Node, spec: SupervisorSpec) -> Result<Self, SupervisorError> {
        Self::start_with(node, spec, SpawnOptions::new()).await
    }

    /// As [`start`](Self::start), with spawn options.
    ///
    /// # Errors
    ///
    /// As [`DynamicSupervisor::start`].
    pub async fn start_with(
        node: &Node,
        spec: SupervisorSpec,
        opts: SpawnOptions,
    ) -> Result<Self, SupervisorError> {
        Ok(TaskSupervisor {
            sup: DynamicSupervisor::start_with(node, spec, opts).await?,
            node: node.clone(),
        })
    }

    /// The supervisor's pid.
    pub fn pid(&self) -> Pid {
        self.sup.pid()
    }

    /// The underlying dynamic supervisor.
    pub fn as_dynamic(&self) -> &DynamicSupervisor {
        &self.sup
    }

    async fn spawn_task(
        &self,
        fut: BoxFuture<'static, ()>,
        link_to: Option<Pid>,
    ) -> Result<Pid, SupervisorError> {
        let slot = Arc::new(parking_lot::Mutex::new(Some(fut)));
        let spec = ChildSpec {
            id: "".into(),
            start: Arc::new(move |ctx, opts| {
                let task = TaskProcess {
                    fut: slot.lock().take(),
                    link_to,
                };
                // Tasks are spawned, not started: the supervisor does not wait for them.
                let started = ctx.spawn_with(task, opts).map(|a| a.pid());
                Box::pin(async move { started })
            }),
            restart: Restart::Temporary,
            shutdown: Shutdown::BrutalKill,
            kind: super::ChildKind::Worker,
            name: None,
            mailbox: None,
        };
        self.sup.start_child(spec).await
    }

    async fn spawn_with_result<T, F>(&self, fut: F, link_to: Option<Pid>) -> Result<Task<T>, SupervisorError>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let pid = self
            .spawn_task(
                async move {
                    match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
                        Ok(v) => {
                            let _ = tx.send(Ok(v));
                        }
                        Err(payload) => {
                            // Report the panic with the result, then end the process
                            // with it as usual.
                            let _ = tx.send(Err(crate::actor::runner::panic_reason(&*payload)));
                            std::panic::resume_unwind(payload);
                        }
                    }
                }
                .boxed(),
                link_to,
            )
            .await?;
        Ok(Task {
            pid,
            watch: Some(self.node.watch(pid)),
            node: self.node.clone(),
            rx: Some(rx),
        })
    }

    /// Runs `fut` as a task nobody awaits (fire and forget).
    ///
    /// # Errors
    ///
    /// `MaxChildren` at the limit, `Start` if it cannot be spawned.
    pub async fn start_child<F>(&self, fut: F) -> Result<Pid, SupervisorError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn_task(fut.boxed(), None).await
    }

    /// Runs `fut` as a task linked to the calling process (Elixir's `async`): if the
    /// task crashes, the caller receives the exit signal (and exits, unless it traps
    /// exits); if the caller exits, the task is taken down with it.
    ///
    /// # Errors
    ///
    /// As [`start_child`](Self::start_child).
    pub async fn async_linked<A, T, F>(&self, caller: &Ctx<A>, fut: F) -> Result<Task<T>, SupervisorError>
    where
        A: Actor,
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        self.spawn_with_result(fut, Some(caller.pid())).await
    }

    /// Runs `fut` as a task not linked to the caller (Elixir's `async_nolink`): a
    /// crash of the task comes back as [`TaskError::Exit`] from
    /// [`Task::await_timeout`].
    ///
    /// # Errors
    ///
    /// As [`start_child`](Self::start_child).
    pub async fn async_nolink<T, F>(&self, fut: F) -> Result<Task<T>, SupervisorError>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        self.spawn_with_result(fut, None).await
    }

    /// Runs `f(item)` as a task for every item, at most `max_concurrency` at a time,
    /// yielding each result (in input order when `ordered`). Memory stays bounded by
    /// `max_concurrency` whatever the number of items: items are pulled from the
    /// iterator only as tasks finish. Dropping the stream kills its running tasks.
    ///
    /// `max_concurrency` above the supervisor's `max_children` makes starts fail with
    /// [`TaskError::Start`].
    pub fn async_stream<I, F, Fut, T>(
        &self,
        items: I,
        f: F,
        opts: StreamOptions,
    ) -> BoxStream<'static, Result<T, TaskError>>
    where
        I: IntoIterator,
        I::IntoIter: Send + 'static,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let this = self.clone();
        let jobs = futures_util::stream::iter(items).map(move |item| {
            let this = this.clone();
            let fut = f(item);
            async move {
                match this.spawn_with_result(fut, None).await {
                    Ok(task) => task.await_timeout(opts.timeout).await,
                    Err(e) => Err(TaskError::Start(e)),
                }
            }
        });
        let results: BoxStream<'static, Result<T, TaskError>> = if opts.ordered {
            jobs.buffered(opts.max_concurrency).boxed()
        } else {
            jobs.buffer_unordered(opts.max_concurrency).boxed()
        };
        match opts.on_timeout {
            OnTimeout::KillTask => results,
            OnTimeout::Exit => StopAfterTimeout { inner: Some(results) }.boxed(),
        }
    }
}

/// Ends a stream right after it yields a timeout (dropping it kills the running tasks).
struct StopAfterTimeout<T> {
    inner: Option<BoxStream<'static, Result<T, TaskError>>>,
}

impl<T> futures_util::Stream for StopAfterTimeout<T> {
    type Item = Result<T, TaskError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Err(TaskError::Timeout))) => {
                self.inner = None;
                Poll::Ready(Some(Err(TaskError::Timeout)))
            }
            other => other,
        }
    }
}
