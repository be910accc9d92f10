use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;

use super::call_timer::CallTimer;
use super::shared::ProcessShared;
use super::Actor;
use crate::mailbox::queue::{Envelope, Lane, Push};
use crate::{CallError, ExitReason, Pid, SendError, Weight};

tokio::task_local! {
    /// The pid of the process whose loop is running on this task.
    pub(crate) static CURRENT: Pid;
}

/// The typed address of an actor: send it messages, call it, learn its pid.
///
/// Cheap to clone (one reference count). Every send path goes through the same
/// admission (count, bytes, node budget, overflow policy); see the
/// [`mailbox`](crate::mailbox) module.
///
/// | method | when the lane is full |
/// |---|---|
/// | [`try_send`](Addr::try_send) | the policy: `Err(Full(msg))` for `Reject`/`Backpressure`, a counted drop for `DropNewest`/`DropOldest`, a kill for `Kill` |
/// | [`send`](Addr::send) | as `try_send`, except that under `Backpressure` it waits for room |
/// | [`try_send_priority`](Addr::try_send_priority), [`send_priority`](Addr::send_priority) | the same, in the priority lane (handled first) |
/// | [`call`](Addr::call) | as `send`, within the call's timeout |
///
/// # Examples
///
/// ```
/// use girder::{Actor, Ctx, Flow, Mailbox, Node, Overflow, SendError, SpawnOptions};
///
/// struct Sink;
/// impl Actor for Sink {
///     type Msg = u32;
///     async fn handle(&mut self, _: u32, _: &mut Ctx<Self>) -> Flow { Flow::Continue }
/// }
///
/// # #[tokio::main] async fn main() {
/// let node = Node::builder().build().unwrap();
/// let opts = SpawnOptions::new().mailbox(Mailbox::bounded(1).overflow(Overflow::Reject));
/// let sink = node.spawn_with(Sink, opts).unwrap();
/// // The mailbox holds one message; fill it faster than the actor can drain it.
/// let mut refused = 0;
/// for i in 0..100 {
///     if let Err(SendError::Full(msg)) = sink.try_send(i) {
///         assert_eq!(msg, i); // the message comes back
///         refused += 1;
///     }
/// }
/// assert!(refused > 0);
/// # }
/// ```
pub struct Addr<A: Actor> {
    pub(crate) shared: Arc<ProcessShared<A::Msg>>,
}

impl<A: Actor> Clone for Addr<A> {
    fn clone(&self) -> Self {
        Addr {
            shared: self.shared.clone(),
        }
    }
}

impl<A: Actor> fmt::Debug for Addr<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Addr({})", self.shared.core.pid)
    }
}

impl<A: Actor> PartialEq for Addr<A> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl<A: Actor> Eq for Addr<A> {}

impl<A: Actor> Addr<A> {
    /// The process's pid.
    pub fn pid(&self) -> Pid {
        self.shared.core.pid
    }

    /// `false` once the process has exited (its mailbox is closed).
    pub fn is_alive(&self) -> bool {
        !self.shared.mailbox.is_closed()
    }

    /// Sends without waiting.
    ///
    /// # Errors
    ///
    /// The message comes back in the error: `Full` when the normal lane is full under
    /// `Reject`, `Backpressure` or `Kill`; `TooLarge` when it alone outweighs the
    /// mailbox's `max_bytes`; `NodeBudget` when the node-wide budget is exhausted;
    /// `Closed` when the process has exited. Under `DropNewest`/`DropOldest` a full
    /// lane is not an error: the drop is counted.
    pub fn try_send(&self, msg: A::Msg) -> Result<(), SendError<A::Msg>> {
        self.try_push(msg, Lane::Normal)
    }

    /// As [`try_send`](Addr::try_send), in the priority lane.
    pub fn try_send_priority(&self, msg: A::Msg) -> Result<(), SendError<A::Msg>> {
        self.try_push(msg, Lane::Priority)
    }

    /// Sends, waiting for room under `Backpressure` (other policies answer at once,
    /// as `try_send`).
    ///
    /// A process sending to its own full mailbox gets `Full` at once: waiting would
    /// deadlock.
    ///
    /// # Errors
    ///
    /// As [`try_send`](Addr::try_send), except that `Full` under `Backpressure` only
    /// comes back for a send to oneself.
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped while waiting, the message is dropped with it and the
    /// sender leaves the line of waiting senders (any room it was woken for passes to
    /// the next sender).
    pub async fn send(&self, msg: A::Msg) -> Result<(), SendError<A::Msg>> {
        self.send_env(self.envelope(msg, None), Lane::Normal).await
    }

    /// As [`send`](Addr::send), in the priority lane.
    pub async fn send_priority(&self, msg: A::Msg) -> Result<(), SendError<A::Msg>> {
        self.send_env(self.envelope(msg, None), Lane::Priority).await
    }

    /// As [`send`](Addr::send), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// As [`send`](Addr::send); if room did not come within `timeout`, `Full(msg)`:
    /// the message is handed back and the refusal counted as rejected.
    pub async fn send_timeout(&self, msg: A::Msg, timeout: Duration) -> Result<(), SendError<A::Msg>> {
        let mut fut = self.send_env(self.envelope(msg, None), Lane::Normal);
        match tokio::time::timeout(timeout, &mut fut).await {
            Ok(r) => r,
            Err(_) => {
                let env = fut.env.take().expect("a waiting send holds its message");
                self.shared.mailbox.refuse_wait(&mut fut.slot);
                Err(SendError::Full(env.msg))
            }
        }
    }

    /// Sends a request built around a [`Reply`] slot and waits for the answer, at
    /// most `timeout` in all (waiting for room included).
    ///
    /// # Errors
    ///
    /// [`CallError::Timeout`] if no answer came in time (the request, if still queued,
    /// is then dropped unhandled and counted as expired); `Full`, `TooLarge`,
    /// `NodeBudget` and `Down` as for [`send`](Addr::send); `NoReply` if the request
    /// was discarded by a drop policy or the handler dropped the reply.
    pub async fn call<R>(
        &self,
        request: impl FnOnce(Reply<R>) -> A::Msg,
        timeout: Duration,
    ) -> Result<R, CallError> {
        // Watch hook (girder-watch, `observe::hooks`): 1 call in 64 per thread is
        // timed when an observer is installed.
        if crate::observe::hooks::sample_call() {
            if let Some(o) = crate::observe::hooks::observer() {
                let started = std::time::Instant::now();
                let r = self.call_untimed(request, timeout).await;
                o.call_finished(started.elapsed(), r.is_ok());
                return r;
            }
        }
        self.call_untimed(request, timeout).await
    }

    async fn call_untimed<R>(
        &self,
        request: impl FnOnce(Reply<R>) -> A::Msg,
        timeout: Duration,
    ) -> Result<R, CallError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let (tx, mut rx) = oneshot::channel();
        let env = self.envelope(request(Reply { tx }), Some(deadline));
        // One timer for the whole call, armed only when something has to wait: a
        // send that finds room does not arm it, and the reply wait reuses it.
        let mut timer = CallTimer::new(deadline);
        let mut send = self.send_env(env, Lane::Normal);
        let sent = poll_fn(|cx| match Pin::new(&mut send).poll(cx) {
            Poll::Ready(r) => Poll::Ready(Some(r)),
            Poll::Pending => timer.poll_expired(cx).map(|()| None),
        })
        .await;
        drop(send);
        match sent {
            None => return Err(CallError::Timeout),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(())) => {}
        }
        // A slot already closed was discarded on arrival by a drop policy (or the
        // process went down): no answer will come, whatever the deadline.
        match rx.try_recv() {
            Ok(v) => return Ok(v),
            Err(oneshot::error::TryRecvError::Closed) if self.shared.mailbox.is_closed() => {
                return Err(CallError::Down)
            }
            Err(oneshot::error::TryRecvError::Closed) => return Err(CallError::NoReply),
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        let answer = poll_fn(|cx| match Pin::new(&mut rx).poll(cx) {
            Poll::Ready(r) => Poll::Ready(Some(r)),
            Poll::Pending => timer.poll_expired(cx).map(|()| None),
        })
        .await;
        match answer {
            None => Err(CallError::Timeout),
            Some(Ok(v)) => Ok(v),
            Some(Err(_)) if self.shared.mailbox.is_closed() => Err(CallError::Down),
            // Taken out at or past its deadline and dropped as expired, just before
            // this call's own timer fired: to the caller, that is a timeout.
            Some(Err(_)) if tokio::time::Instant::now() >= deadline => Err(CallError::Timeout),
            Some(Err(_)) => Err(CallError::NoReply),
        }
    }

    fn envelope(&self, msg: A::Msg, deadline: Option<tokio::time::Instant>) -> Envelope<A::Msg> {
        Envelope {
            weight: msg.weight(),
            msg,
            deadline,
            enqueued: None,
        }
    }

    fn try_push(&self, msg: A::Msg, lane: Lane) -> Result<(), SendError<A::Msg>> {
        let env = self.envelope(msg, None);
        let outcome = self.shared.mailbox.push(env, lane, None);
        self.settle(outcome)
    }

    fn settle(&self, outcome: Push<A::Msg>) -> Result<(), SendError<A::Msg>> {
        // Limit hits are logged rate-limited (`limit_event!`), in the cold branches only.
        match outcome {
            Push::Queued => Ok(()),
            Push::Dropped => {
                crate::limit_event!(debug, "mailbox full: message dropped by policy", pid = %self.pid());
                Ok(())
            }
            Push::Full(m) => {
                crate::limit_event!(debug, "mailbox full: message refused", pid = %self.pid());
                Err(SendError::Full(m))
            }
            Push::Kill(m) => {
                crate::limit_event!(warn, "mailbox full: process killed (overflow policy Kill)", pid = %self.pid());
                self.shared.core.kill(ExitReason::MailboxOverflow);
                Err(SendError::Full(m))
            }
            Push::Closed(m) => Err(SendError::Closed(m)),
            Push::TooLarge(m) => {
                crate::limit_event!(warn, "message refused: heavier than the mailbox's max_bytes", pid = %self.pid());
                Err(SendError::TooLarge(m))
            }
            Push::Budget(m) => {
                crate::limit_event!(warn, "message refused: node mailbox budget exhausted", pid = %self.pid());
                Err(SendError::NodeBudget(m))
            }
            Push::Wait(_) => unreachable!("a one-shot push never waits"),
        }
    }

    fn send_env(&self, env: Envelope<A::Msg>, lane: Lane) -> SendFut<'_, A> {
        SendFut {
            addr: self,
            env: Some(env),
            lane,
            slot: None,
        }
    }
}

struct SendFut<'a, A: Actor> {
    addr: &'a Addr<A>,
    env: Option<Envelope<A::Msg>>,
    lane: Lane,
    slot: Option<u64>,
}

impl<A: Actor> Unpin for SendFut<'_, A> {}

impl<A: Actor> Future for SendFut<'_, A> {
    type Output = Result<(), SendError<A::Msg>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Senders that never yield starve the receivers on their worker: every send
        // spends a unit of tokio's coop budget, and an exhausted budget makes the
        // sender yield before it offers (as tokio's own channels do).
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let this = &mut *self;
        let env = this.env.take().expect("SendFut polled after completion");
        match this
            .addr
            .shared
            .mailbox
            .push(env, this.lane, Some((&mut this.slot, cx.waker())))
        {
            Push::Wait(env) => {
                // A process waiting for room in its own mailbox would wait forever:
                // checked only here, so sends that find room pay nothing for it.
                let to_self = CURRENT
                    .try_with(|p| *p == this.addr.shared.core.pid)
                    .unwrap_or(false);
                if to_self {
                    this.addr.shared.mailbox.refuse_wait(&mut this.slot);
                    return Poll::Ready(Err(SendError::Full(env.msg)));
                }
                this.env = Some(env);
                Poll::Pending
            }
            other => {
                coop.made_progress();
                Poll::Ready(this.addr.settle(other))
            }
        }
    }
}

impl<A: Actor> Drop for SendFut<'_, A> {
    fn drop(&mut self) {
        // Only a sender that queued as a waiter has a line to leave.
        if self.slot.is_some() {
            self.addr.shared.mailbox.cancel_wait(&mut self.slot);
        }
    }
}

/// The slot a [`call`](Addr::call)'s answer goes through.
///
/// Put it in the request message; the handler answers with [`Reply::send`]. The
/// answer never enters the caller's mailbox. Dropping it without answering makes the
/// call fail with [`CallError::NoReply`].
pub struct Reply<R> {
    tx: oneshot::Sender<R>,
}

impl<R> Reply<R> {
    /// Answers the call. If the caller has already given up, the answer is dropped.
    pub fn send(self, value: R) {
        let _ = self.tx.send(value);
    }

    /// `true` if the caller has stopped waiting (timed out or gone).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl<R> fmt::Debug for Reply<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reply(..)")
    }
}

impl<R> Weight for Reply<R> {}
