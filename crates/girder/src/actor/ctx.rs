use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use sync_wrapper::SyncWrapper;
use tokio::task::AbortHandle;

use super::shared::ProcessShared;
use super::{Actor, Addr};
use crate::mailbox::queue::{Hand, Item};
use crate::process::ProcessState;
use crate::{
    ExitReason, LinkError, MonitorRef, Node, Pid, RegistryError, SpawnError, SpawnOptions, TimerError,
};

/// A pending timer armed with [`Ctx::send_after`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerRef(u64);

/// The running process's view of itself and the node, passed to every handler.
///
/// Through it a handler links, monitors, spawns (children record this process as
/// their parent), traps exits, arms timers and stops.
pub struct Ctx<A: Actor> {
    pub(crate) shared: Arc<ProcessShared<A::Msg>>,
    pub(crate) node: Node,
    pub(crate) stop: Option<ExitReason>,
    /// Normal messages the process loop took out of the mailbox ahead of handling.
    /// (Only ever reached through `&mut`, so `Ctx` stays `Sync` for any message type.)
    pub(crate) hand: SyncWrapper<Hand<A::Msg>>,
    /// Timers and the idle timeout: allocated on first use, so that a process that
    /// never arms one does not carry their state (`Ctx` lives in every process's
    /// future, most of an idle process's memory).
    timers: Option<Box<Timers>>,
    _actor: PhantomData<fn() -> A>,
}

/// A process's timer state.
#[derive(Default)]
struct Timers {
    idle_timeout: Option<Duration>,
    /// The idle timeout's timer, re-armed for every wait.
    idle_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: HashMap<u64, AbortHandle>,
    next: u64,
}

impl Timers {
    /// The timer state in `slot`, allocated on first use. (A function of the field
    /// rather than of `Ctx`, so callers can borrow `Ctx`'s other fields alongside.)
    fn get(slot: &mut Option<Box<Timers>>) -> &mut Timers {
        slot.get_or_insert_with(Default::default)
    }
}

impl Drop for Timers {
    fn drop(&mut self) {
        // A process's timers die with it.
        for (_, t) in self.armed.drain() {
            t.abort();
        }
    }
}

impl<A: Actor> Ctx<A> {
    pub(crate) fn new(shared: Arc<ProcessShared<A::Msg>>, node: Node) -> Self {
        Ctx {
            shared,
            node,
            stop: None,
            hand: SyncWrapper::new(Hand::new()),
            timers: None,
            _actor: PhantomData,
        }
    }

    /// The idle timeout set with [`set_idle_timeout`](Ctx::set_idle_timeout).
    pub(crate) fn idle_timeout(&self) -> Option<Duration> {
        self.timers.as_ref().and_then(|t| t.idle_timeout)
    }

    /// Takes the next mailbox item, waiting for it at most `t` once the mailbox is
    /// found empty: `None` if the time ran out first (`Some(None)` once the mailbox is
    /// closed).
    ///
    /// One mailbox visit per item, as without an idle timeout: the visit that finds
    /// the mailbox empty also registers the wake-up, and only then is the timer armed,
    /// for `t` from that moment (and the process shown as waiting).
    pub(crate) async fn next_within(&mut self, t: Duration) -> Option<Option<Item<A::Msg>>> {
        let queue = &self.shared.mailbox;
        let core = &self.shared.core;
        let hand = self.hand.get_mut();
        let timers = Timers::get(&mut self.timers);
        let mut armed = false;
        let next = poll_fn(|cx| {
            if let Poll::Ready(item) = queue.poll_recv(cx, hand) {
                return Poll::Ready(Some(item));
            }
            if !armed {
                armed = true;
                core.set_status(ProcessState::Waiting);
                let deadline = tokio::time::Instant::now() + t;
                match &mut timers.idle_timer {
                    Some(timer) => timer.as_mut().reset(deadline),
                    empty => *empty = Some(Box::pin(tokio::time::sleep_until(deadline))),
                }
            }
            let timer = timers
                .idle_timer
                .as_mut()
                .expect("armed on the first empty visit");
            timer.as_mut().poll(cx).map(|()| None)
        })
        .await;
        if armed {
            core.set_status(ProcessState::Running);
        }
        next
    }

    /// This process's address.
    pub fn addr(&self) -> Addr<A> {
        Addr {
            shared: self.shared.clone(),
        }
    }

    /// This process's pid.
    pub fn pid(&self) -> Pid {
        self.shared.core.pid
    }

    /// The process that spawned this one, if any.
    pub fn parent(&self) -> Option<Pid> {
        self.shared.core.parent
    }

    /// The node this process runs on.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Spawns a child (recorded with this process as parent; not linked).
    ///
    /// # Errors
    ///
    /// As [`Node::spawn`].
    pub fn spawn<B: Actor>(&self, actor: B) -> Result<Addr<B>, SpawnError> {
        self.spawn_with(actor, SpawnOptions::new())
    }

    /// Spawns a child linked to this process, atomically (the child cannot exit
    /// unseen before the link exists).
    ///
    /// # Errors
    ///
    /// As [`Node::spawn`].
    pub fn spawn_link<B: Actor>(&self, actor: B) -> Result<Addr<B>, SpawnError> {
        self.spawn_with(actor, SpawnOptions::new().link())
    }

    /// Spawns a child with options.
    ///
    /// # Errors
    ///
    /// As [`Node::spawn`].
    pub fn spawn_with<B: Actor>(&self, actor: B, opts: SpawnOptions) -> Result<Addr<B>, SpawnError> {
        self.node
            .inner
            .spawn_actor(actor, opts, Some(&self.shared.core), None)
    }

    /// Spawns a child and waits until its `init` has run, as
    /// [`Node::start_with`]: children that depend on each other start in order.
    ///
    /// # Errors
    ///
    /// As [`Node::start`].
    pub async fn start_with<B: Actor>(&self, actor: B, opts: SpawnOptions) -> Result<Addr<B>, SpawnError> {
        self.node
            .inner
            .start_actor(actor, opts, Some(&self.shared.core))
            .await
    }

    /// Links this process with `pid` (bidirectional). Linking to a process that is
    /// gone delivers an exit signal with reason [`ExitReason::NoProc`], as OTP does.
    ///
    /// # Errors
    ///
    /// [`LinkError::TooManyLinks`] when either process holds its maximum of links.
    pub fn link(&self, pid: Pid) -> Result<(), LinkError> {
        self.node.inner.link(&*self.shared, pid)
    }

    /// Removes the link with `pid`, if any; an exit signal from it not yet handled is
    /// withdrawn.
    pub fn unlink(&self, pid: Pid) {
        self.node.inner.unlink(&*self.shared, pid)
    }

    /// Monitors `pid`: when it exits, [`Actor::handle_down`] receives a
    /// [`Down`](crate::Down) with its reason (at once with `NoProc` if it is gone).
    ///
    /// # Errors
    ///
    /// [`LinkError::TooManyMonitors`] when this process holds its maximum.
    pub fn monitor(&self, pid: Pid) -> Result<MonitorRef, LinkError> {
        self.node.inner.monitor(&*self.shared, pid)
    }

    /// Removes a monitor; its `Down`, if not yet handled, is withdrawn. Returns
    /// `false` if the monitor was not active.
    pub fn demonitor(&self, monitor: MonitorRef) -> bool {
        self.node.inner.demonitor(&*self.shared, monitor)
    }

    /// Turns exit signals into [`Actor::handle_exit`] calls instead of exits.
    pub fn trap_exit(&self, trap: bool) {
        self.shared.core.trap_exit.store(trap, Ordering::Release);
    }

    /// Leaves this process out of slow-handler watchdogs (girder-watch): for a
    /// process whose handler waits by design — awaiting a connection or an external
    /// event — rather than one doing long work that belongs in a task. Permanent.
    pub fn exempt_from_watchdog(&self) {
        self.shared.core.watchdog_exempt.store(true, Ordering::Relaxed);
    }

    /// Sends an exit signal with `reason` to `pid` (OTP's `exit/2`): a trapping
    /// process handles it, a non-trapping one exits unless the reason is `Normal`.
    pub fn exit(&self, pid: Pid, reason: ExitReason) {
        self.node.inner.exit_signal(Some(self.pid()), pid, reason)
    }

    /// Kills `pid` untrappably (OTP's `exit(Pid, kill)`): it exits with
    /// [`ExitReason::Killed`] at its next await point.
    pub fn kill(&self, pid: Pid) {
        self.node.kill(pid)
    }

    /// Asks the loop to stop with `reason` once the current handler returns.
    pub fn stop(&mut self, reason: ExitReason) {
        self.stop = Some(reason);
    }

    /// Calls [`Actor::handle_timeout`] when no message arrives for `timeout`
    /// (`GenServer`'s timeout); `None` turns it off.
    pub fn set_idle_timeout(&mut self, timeout: Option<Duration>) {
        if timeout.is_some() || self.timers.is_some() {
            Timers::get(&mut self.timers).idle_timeout = timeout;
        }
    }

    /// Registers this process under `name`.
    ///
    /// # Errors
    ///
    /// As [`Node::register`].
    pub fn register(&self, name: &str) -> Result<(), RegistryError> {
        self.node.register(name, self.pid())
    }

    /// Sends `msg` to this process after `delay`. The message goes through the same
    /// admission as any other send when it fires. Pending timers are bounded per
    /// process and die with the process.
    ///
    /// # Errors
    ///
    /// [`TimerError::TooMany`] when the process already has
    /// [`max_timers_per_process`](crate::NodeBuilder::max_timers_per_process) pending.
    pub fn send_after(&mut self, delay: Duration, msg: A::Msg) -> Result<TimerRef, TimerError> {
        let limit = self.node.inner.config.max_timers_per_process;
        let pid = self.pid();
        let timers = Timers::get(&mut self.timers);
        if timers.armed.len() >= limit {
            timers.armed.retain(|_, t| !t.is_finished());
            if timers.armed.len() >= limit {
                self.node
                    .inner
                    .counters
                    .timer_refusals
                    .fetch_add(1, Ordering::Relaxed);
                crate::limit_event!(warn, "timer refused: too many pending", pid = %pid, limit);
                return Err(TimerError::TooMany { limit });
            }
        }
        let id = timers.next;
        timers.next += 1;
        let addr: Addr<A> = Addr {
            shared: self.shared.clone(),
        };
        let task = self.node.inner.runtime.spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = addr.send(msg).await;
        });
        timers.armed.insert(id, task.abort_handle());
        Ok(TimerRef(id))
    }

    /// Cancels a timer. Returns `true` if it had not fired yet.
    pub fn cancel_timer(&mut self, timer: TimerRef) -> bool {
        match self.timers.as_mut().and_then(|t| t.armed.remove(&timer.0)) {
            Some(t) => {
                let pending = !t.is_finished();
                t.abort();
                pending
            }
            None => false,
        }
    }

    /// Timers armed and not yet fired or cancelled.
    pub fn pending_timers(&mut self) -> usize {
        self.timers.as_mut().map_or(0, |t| {
            t.armed.retain(|_, t| !t.is_finished());
            t.armed.len()
        })
    }
}
