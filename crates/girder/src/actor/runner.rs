//! The process loop: init, the receive loop, terminate, and the exit guard that
//! cleans up however the task ends (return, kill, abort, runtime shutdown).

use std::any::Any;
use std::future::{poll_fn, Future};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::FutureExt;
use tokio::sync::oneshot;

use super::addr::CURRENT;
use super::ctx::Ctx;
use super::shared::ProcessShared;
use super::{Actor, Addr, Flow};
use crate::mailbox::queue::{Envelope, Item, Queue};
use crate::node::NodeInner;
use crate::process::{ProcessCore, ProcessHandle, ProcessState, Signal, SubtreeBudget};
use crate::{Down, ExitReason, Node, Pid, SpawnError, SpawnOptions};

/// Reports the outcome of `init` to a waiting `start`.
pub(crate) type InitReply = oneshot::Sender<Result<(), ExitReason>>;

/// Spawns `actor` as a process of `node`. See [`Node::spawn_with`].
pub(crate) fn spawn_actor<A: Actor>(
    node: &Arc<NodeInner>,
    actor: A,
    opts: SpawnOptions,
    parent: Option<&ProcessCore>,
    init_reply: Option<InitReply>,
) -> Result<Addr<A>, SpawnError> {
    let mailbox = match opts.mailbox {
        Some(m) => {
            m.validate("SpawnOptions::mailbox")?;
            m
        }
        None => node.config.default_mailbox,
    };
    // Subtree budgets first (the parent's chain), then the node's table.
    let counted_in = parent.and_then(|p| p.children_budget.clone());
    let parent = parent.map(|p| p.pid);
    SubtreeBudget::reserve_chain(&counted_in).map_err(|(subtree, limit)| {
        node.counters
            .subtree_budget_refusals
            .fetch_add(1, Ordering::Relaxed);
        crate::limit_event!(warn, "spawn refused: subtree budget exhausted", subtree = %subtree, limit);
        SpawnError::BudgetExhausted { subtree, limit }
    })?;
    let reservation = match node.reserve_slot(opts.use_reserve) {
        Ok(r) => r,
        Err(e) => {
            SubtreeBudget::release_chain(&counted_in);
            return Err(e);
        }
    };
    let mut typed: Option<Arc<ProcessShared<A::Msg>>> = None;
    node.table.insert(reservation, |pid| {
        let children_budget = match opts.max_descendants {
            Some(limit) => Some(Arc::new(SubtreeBudget {
                label: opts
                    .label
                    .clone()
                    .or_else(|| opts.name.clone())
                    .unwrap_or_else(|| pid.to_string().into()),
                limit,
                used: AtomicUsize::new(0),
                parent: counted_in.clone(),
            })),
            None => counted_in.clone(),
        };
        let shared = Arc::new(ProcessShared {
            core: ProcessCore::new(
                pid,
                parent,
                std::any::type_name::<A>(),
                counted_in,
                children_budget,
            ),
            mailbox: Queue::new(mailbox, node.budget.clone()),
        });
        typed = Some(shared.clone());
        shared as Arc<dyn ProcessHandle>
    });
    let shared = typed.expect("insert calls make");
    let pid = shared.core.pid;
    // Counted as soon as it holds a slot: a spawn undone below (name taken, link
    // refused) exits through the guard, so `spawned - exited = live` always holds.
    node.note_spawned();

    // From here on the process exists: any failure goes through the exit guard, so
    // the slot, the name and the links are released in one place.
    let guard = ExitGuard {
        node: node.clone(),
        handle: shared.clone(),
        reason: None,
    };
    if let Some(name) = &opts.name {
        if let Err(e) = node.register(name, pid) {
            guard.finish(ExitReason::NoProc);
            return Err(e.into());
        }
    }
    if opts.link {
        if let Some(parent) = parent {
            if let Err(e) = node.link_new_child(parent, &*shared) {
                guard.finish(ExitReason::NoProc);
                return Err(e.into());
            }
        }
    }

    let ctx = Ctx::<A>::new(shared.clone(), Node { inner: node.clone() });
    let task = node
        .runtime
        .spawn(CURRENT.scope(pid, run(actor, ctx, init_reply, guard)));
    {
        let mut st = shared.core.state.lock();
        st.abort = Some(task.abort_handle());
        if st.kill.is_some() {
            task.abort();
        }
    }
    Ok(Addr { shared })
}

/// Cleans up a process when its task ends, whichever way it ends.
struct ExitGuard<M: Send + 'static> {
    node: Arc<NodeInner>,
    handle: Arc<ProcessShared<M>>,
    reason: Option<ExitReason>,
}

impl<M: Send + 'static> ExitGuard<M> {
    /// The process ended through its loop with `reason`: clean up now.
    fn finish(mut self, reason: ExitReason) {
        self.reason = Some(reason);
    }
}

impl<M: Send + 'static> Drop for ExitGuard<M> {
    fn drop(&mut self) {
        let reason = match self.reason.take() {
            Some(r) => r,
            // Aborted: killed, or the runtime is going away.
            None => self
                .handle
                .core
                .state
                .lock()
                .kill
                .clone()
                .unwrap_or(ExitReason::Killed),
        };
        let handle: Arc<dyn ProcessHandle> = self.handle.clone();
        self.node.process_exited(&handle, reason);
    }
}

pub(crate) fn panic_reason(payload: &(dyn Any + Send)) -> ExitReason {
    let msg: Arc<str> = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).into()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str().into()
    } else {
        "non-string panic payload".into()
    };
    ExitReason::Panic(msg)
}

/// Runs a handler future, turning a panic into `Stop(Panic)`.
///
/// Watch hooks (girder-watch, `observe::hooks`): marks the handler running for the
/// watchdog (a relaxed load and store before and after) and times 1 run in 64 when
/// an observer is installed.
async fn guarded(core: &ProcessCore, fut: impl Future<Output = Flow>) -> Flow {
    let run = core.handler_started();
    let timed = if crate::observe::hooks::sample_handler(run) {
        crate::observe::hooks::observer().map(|o| (o, std::time::Instant::now()))
    } else {
        None
    };
    let flow = match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(flow) => flow,
        Err(payload) => Flow::Stop(panic_reason(&*payload)),
    };
    core.handler_finished();
    if let Some((o, started)) = timed {
        o.handler_finished(core.actor_type, started.elapsed());
    }
    flow
}

/// The process task. A plain function returning an `async move` block (not an
/// `async fn`) so the actor, context and guard live once in the task, not once as
/// arguments and again as locals: the future is most of an idle process's memory.
///
/// For the same reason the phases are separate futures awaited one after the other
/// (`start`, `receive_loop`, `terminate`): the task's state is the largest of them,
/// not their sum. In the loop, messages go to `handle` inline; the rare exit and
/// down signals go through boxed futures.
#[allow(clippy::manual_async_fn)]
fn run<A: Actor>(
    mut actor: A,
    mut ctx: Ctx<A>,
    init_reply: Option<InitReply>,
    guard: ExitGuard<A::Msg>,
) -> impl Future<Output = ()> + Send {
    async move {
        let started = { start(&mut actor, &mut ctx, init_reply).await };
        let reason = match started {
            Err(reason) => reason,
            Ok(()) => {
                let reason = receive_loop(&mut actor, &mut ctx).await;
                ctx.shared.core.set_status(ProcessState::Exiting);
                let _ = AssertUnwindSafe(actor.terminate(&reason, &mut ctx))
                    .catch_unwind()
                    .await;
                reason
            }
        };
        guard.finish(reason);
    }
}

/// Runs `init` (a panic is an init failure) and reports its outcome to a waiting
/// `start`.
async fn start<A: Actor>(
    actor: &mut A,
    ctx: &mut Ctx<A>,
    init_reply: Option<InitReply>,
) -> Result<(), ExitReason> {
    let init = match AssertUnwindSafe(actor.init(ctx)).catch_unwind().await {
        Ok(r) => r,
        Err(payload) => Err(panic_reason(&*payload)),
    };
    if let Some(tx) = init_reply {
        let _ = tx.send(init.clone());
    }
    init
}

/// What the receive loop got from the mailbox.
enum Next<M> {
    Item(Item<M>),
    /// The idle timeout passed without an item.
    IdleTimeout,
    /// The mailbox was closed under the loop: the process is being torn down.
    Closed,
}

async fn receive_loop<A: Actor>(actor: &mut A, ctx: &mut Ctx<A>) -> ExitReason {
    let shared = ctx.shared.clone();
    let (queue, core) = (&shared.mailbox, &shared.core);
    loop {
        if let Some(r) = ctx.stop.take() {
            return r;
        }
        // In a block, so the awaited result's storage ends here and does not sit in
        // the task beside the handler's future.
        let item = {
            let next = match ctx.idle_timeout() {
                // One visit to the mailbox per item: a message that is there is
                // taken; if none is, the same visit registers the wake-up.
                None => {
                    let hand = ctx.hand.get_mut();
                    let mut waited = false;
                    let item = poll_fn(|cx| {
                        let r = queue.poll_recv(cx, hand);
                        if r.is_pending() && !waited {
                            waited = true;
                            core.set_status(ProcessState::Waiting);
                        }
                        r
                    })
                    .await;
                    if waited {
                        core.set_status(ProcessState::Running);
                    }
                    item.map_or(Next::Closed, Next::Item)
                }
                Some(t) => match ctx.next_within(t).await {
                    Some(Some(item)) => Next::Item(item),
                    Some(None) => Next::Closed,
                    None => Next::IdleTimeout,
                },
            };
            match next {
                Next::Item(item) => Some(item),
                Next::IdleTimeout => None,
                Next::Closed => return ExitReason::Killed,
            }
        };
        let flow = match item {
            // The hot path, inline: a message for `handle`.
            Some(Item::Msg(Envelope {
                msg,
                deadline,
                enqueued,
                ..
            })) => {
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    queue.note_expired();
                    drop(msg);
                    continue;
                }
                queue.note_handled(enqueued);
                guarded(core, actor.handle(msg, ctx)).await
            }
            Some(Item::Signal(Signal::Wake(token))) => guarded(core, actor.handle_wake(token, ctx)).await,
            Some(Item::Signal(Signal::Stop(r))) => return r,
            // Exit and down signals are rare (a linked or monitored process died):
            // their futures are boxed rather than sized into every process's task.
            Some(Item::Signal(Signal::Exit { from, reason, linked })) => {
                match Box::pin(exit_signal(actor, ctx, core, from, reason, linked)).await {
                    Some(flow) => flow,
                    None => continue,
                }
            }
            Some(Item::Signal(Signal::Down(down))) => {
                match Box::pin(down_signal(actor, ctx, core, down)).await {
                    Some(flow) => flow,
                    None => continue,
                }
            }
            None => guarded(core, actor.handle_timeout(ctx)).await,
        };
        if let Flow::Stop(r) = flow {
            return r;
        }
        // Stay preemptible under a flood: one unit of coop budget per message.
        tokio::task::consume_budget().await;
    }
}

/// Hands an exit signal to `handle_exit`. `None`: nothing ran (a link withdrawn
/// since), so the loop goes straight on to the next item.
async fn exit_signal<A: Actor>(
    actor: &mut A,
    ctx: &mut Ctx<A>,
    core: &ProcessCore,
    from: Pid,
    reason: ExitReason,
    linked: bool,
) -> Option<Flow> {
    if linked {
        // Withdrawn by an unlink, or consumed: nothing to do.
        let was_linked = core
            .state
            .lock()
            .rel
            .as_mut()
            .is_some_and(|r| r.links.remove(&from));
        if !was_linked {
            return None;
        }
    }
    if Some(from) == core.parent {
        // gen_server: an exit signal from the parent (through the link, or a
        // supervisor's explicit `exit(child, shutdown)`) ends the process, after
        // `terminate`.
        return Some(Flow::Stop(reason));
    }
    Some(guarded(core, actor.handle_exit(from, reason, ctx)).await)
}

/// Hands a monitor's `Down` to `handle_down`. `None`: nothing ran (the monitor was
/// withdrawn since), so the loop goes straight on to the next item.
async fn down_signal<A: Actor>(
    actor: &mut A,
    ctx: &mut Ctx<A>,
    core: &ProcessCore,
    down: Down,
) -> Option<Flow> {
    let active = core
        .state
        .lock()
        .rel
        .as_mut()
        .is_some_and(|r| r.monitors.remove(&down.monitor).is_some());
    if !active {
        return None;
    }
    Some(guarded(core, actor.handle_down(down, ctx)).await)
}
