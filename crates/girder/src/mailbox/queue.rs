//! The mailbox queue: three lanes behind one short critical section.
//!
//! Admission (count bound of the lane, byte bound of the mailbox, node byte budget,
//! overflow policy) and the push happen under one lock, so a bound can never be
//! overshot by racing senders and every outcome is counted exactly once. The lock is
//! never held while user code runs: messages evicted or discarded are dropped after it
//! is released, and wakers are woken after it is released.
//!
//! Senders waiting for room (`Overflow::Backpressure`) queue in arrival order; a
//! `try_send` never overtakes a waiting sender, and room freed by the receiver is
//! handed to the first waiter, which wakes the next one if room remains.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::budget::Budget;
use super::{Mailbox, MailboxStats, Overflow};
use crate::process::Signal;
use crate::sync::{AtomicU64, Mutex, Ordering};

/// Which data lane a message travels in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lane {
    Normal,
    Priority,
}

/// A queued message with what the runtime needs to know about it.
pub(crate) struct Envelope<M> {
    pub(crate) msg: M,
    pub(crate) weight: usize,
    /// For calls: the caller stops waiting at this instant; past it the request is
    /// dropped unhandled and counted as expired.
    pub(crate) deadline: Option<tokio::time::Instant>,
    /// Set on a sample of messages to measure time in the mailbox.
    pub(crate) enqueued: Option<std::time::Instant>,
}

/// The outcome of offering a message to a mailbox.
pub(crate) enum Push<M> {
    /// The message is in the mailbox.
    Queued,
    /// The policy discarded the arriving message (counted as dropped).
    Dropped,
    /// Refused: the lane is full under `Reject` (or `try_send` under `Backpressure`).
    Full(M),
    /// Refused: the lane is full under `Kill`; the caller must kill the process.
    Kill(M),
    /// Refused: the process has exited.
    Closed(M),
    /// Refused: the message alone is heavier than the mailbox's byte bound.
    TooLarge(M),
    /// Refused: the node-wide mailbox budget is exhausted.
    Budget(M),
    /// No room yet; the sender is registered as a waiter and will be woken.
    Wait(Envelope<M>),
}

/// What the process loop takes out of its mailbox.
pub(crate) enum Item<M> {
    Signal(Signal),
    Msg(Envelope<M>),
}

/// How long a sample of messages waited between admission and being taken out.
const WAIT_SAMPLE_EVERY: u64 = 64;
/// Lanes whose storage grew beyond this are released when they drain.
const SHRINK_ABOVE: usize = 32;
/// Exit signals sent with an explicit `exit(pid, reason)` to a trapping process that
/// may wait in its system lane at once (link and monitor signals are bounded by the
/// links and monitors themselves).
pub(crate) const MAX_EXPLICIT_SIGNALS: usize = 64;

struct State<M> {
    normal: VecDeque<Envelope<M>>,
    priority: VecDeque<Envelope<M>>,
    /// `(explicit, signal)`: explicit exit signals are capped separately.
    signals: VecDeque<(bool, Signal)>,
    explicit_signals: usize,
    bytes: usize,
    closed: bool,
    rx_waker: Option<Waker>,
    /// Senders waiting for room, in arrival order: id, lane, and the waker — taken
    /// when the sender is woken, so freeing more room does not wake it again before
    /// it has run (one wake per wait, not one per message taken).
    waiters: VecDeque<(u64, Lane, Option<Waker>)>,
    next_waiter: u64,
    accepted: u64,
    rejected: u64,
    dropped: u64,
    signals_dropped: u64,
    len_hwm: usize,
    bytes_hwm: usize,
}

impl<M> State<M> {
    #[inline]
    fn lane(&self, lane: Lane) -> &VecDeque<Envelope<M>> {
        match lane {
            Lane::Normal => &self.normal,
            Lane::Priority => &self.priority,
        }
    }
}

pub(crate) struct Queue<M> {
    state: Mutex<State<M>>,
    config: Mailbox,
    budget: Arc<Budget>,
    handled: AtomicU64,
    expired: AtomicU64,
    wait_samples: AtomicU64,
    wait_total_ns: AtomicU64,
    wait_max_ns: AtomicU64,
}

impl<M> Queue<M> {
    pub(crate) fn new(config: Mailbox, budget: Arc<Budget>) -> Self {
        Queue {
            state: Mutex::new(State {
                normal: VecDeque::new(),
                priority: VecDeque::new(),
                signals: VecDeque::new(),
                explicit_signals: 0,
                bytes: 0,
                closed: false,
                rx_waker: None,
                waiters: VecDeque::new(),
                next_waiter: 0,
                accepted: 0,
                rejected: 0,
                dropped: 0,
                signals_dropped: 0,
                len_hwm: 0,
                bytes_hwm: 0,
            }),
            config,
            budget,
            handled: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            wait_samples: AtomicU64::new(0),
            wait_total_ns: AtomicU64::new(0),
            wait_max_ns: AtomicU64::new(0),
        }
    }

    /// Offers a message. `waiter` is `None` for a one-shot attempt, or the waiting
    /// sender's slot (its id, assigned on first registration) and waker.
    pub(crate) fn push(
        &self,
        env: Envelope<M>,
        lane: Lane,
        waiter: Option<(&mut Option<u64>, &Waker)>,
    ) -> Push<M> {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        // The common case in one pass: open, nobody waiting for room (so nobody to
        // queue behind or to hand room on to), room in the lane and the mailbox, and
        // the node budget grants the bytes. Anything else takes the general path.
        let w = env.weight;
        let cap = match lane {
            Lane::Normal => self.config.get_capacity(),
            Lane::Priority => self.config.get_priority_capacity(),
        };
        let fast = !st.closed
            && st.waiters.is_empty()
            && waiter.as_ref().is_none_or(|(slot, _)| slot.is_none())
            && st.lane(lane).len() < cap
            && st.bytes + w <= self.config.get_max_bytes();
        if fast && self.budget.try_reserve(w) {
            Self::enqueue(st, env, lane);
            let wake_rx = st.rx_waker.take();
            drop(guard);
            if let Some(w) = wake_rx {
                w.wake();
            }
            return Push::Queued;
        }
        let mut evicted: Vec<Envelope<M>> = Vec::new();
        let mut wake_rx = None;
        let mut wake_next = None;
        let outcome = self.push_slow(st, env, lane, waiter, &mut evicted, &mut wake_rx, &mut wake_next);
        drop(guard);
        // Evicted messages may own user resources: drop them outside the lock.
        drop(evicted);
        if let Some(w) = wake_rx {
            w.wake();
        }
        if let Some(w) = wake_next {
            w.wake();
        }
        outcome
    }

    /// Queues an admitted message: counts it, samples its arrival time, updates the
    /// high-water marks.
    #[inline]
    fn enqueue(st: &mut State<M>, mut env: Envelope<M>, lane: Lane) {
        if st.accepted % WAIT_SAMPLE_EVERY == 0 {
            env.enqueued = Some(std::time::Instant::now());
        }
        st.accepted += 1;
        st.bytes += env.weight;
        match lane {
            Lane::Normal => st.normal.push_back(env),
            Lane::Priority => st.priority.push_back(env),
        }
        let len = st.normal.len() + st.priority.len();
        st.len_hwm = st.len_hwm.max(len);
        st.bytes_hwm = st.bytes_hwm.max(st.bytes);
    }

    /// Admission in full: closed mailbox, waiting senders, the overflow policy, the
    /// node budget. Called with the lock held; wake-ups and evicted messages are
    /// handed back to be dealt with after it is released.
    #[allow(clippy::too_many_arguments)]
    fn push_slow(
        &self,
        st: &mut State<M>,
        env: Envelope<M>,
        lane: Lane,
        mut waiter: Option<(&mut Option<u64>, &Waker)>,
        evicted: &mut Vec<Envelope<M>>,
        wake_rx: &mut Option<Waker>,
        wake_next: &mut Option<Waker>,
    ) -> Push<M> {
        'admit: {
            if st.closed {
                if let Some((slot, _)) = waiter.as_mut() {
                    Self::forget_waiter(st, slot);
                }
                break 'admit Push::Closed(env.msg);
            }
            let w = env.weight;
            let max_bytes = self.config.get_max_bytes();
            if w > max_bytes {
                st.rejected += 1;
                break 'admit Push::TooLarge(env.msg);
            }
            let cap = match lane {
                Lane::Normal => self.config.get_capacity(),
                Lane::Priority => self.config.get_priority_capacity(),
            };
            let room = |st: &State<M>| {
                let len = match lane {
                    Lane::Normal => st.normal.len(),
                    Lane::Priority => st.priority.len(),
                };
                len < cap && st.bytes + w <= max_bytes
            };
            let overflow = self.config.get_overflow();
            let my_id = waiter.as_ref().and_then(|(slot, _)| **slot);
            // Priority messages are not held behind senders waiting for room: that
            // line is what the priority lane exists to bypass. (A priority sender
            // joins it only when the priority lane itself is full.)
            let behind_waiters = overflow == Overflow::Backpressure
                && lane == Lane::Normal
                && st.waiters.front().is_some_and(|(id, _, _)| Some(*id) != my_id);

            if !room(st) || behind_waiters {
                match overflow {
                    Overflow::Reject => {
                        st.rejected += 1;
                        break 'admit Push::Full(env.msg);
                    }
                    Overflow::Kill => {
                        st.rejected += 1;
                        break 'admit Push::Kill(env.msg);
                    }
                    Overflow::DropNewest => {
                        st.dropped += 1;
                        break 'admit Push::Dropped;
                    }
                    Overflow::Backpressure => match waiter.as_mut() {
                        None => {
                            st.rejected += 1;
                            break 'admit Push::Full(env.msg);
                        }
                        Some((slot, waker)) => {
                            Self::register_waiter(st, slot, waker, lane);
                            break 'admit Push::Wait(env);
                        }
                    },
                    Overflow::DropOldest => {
                        while !room(st) {
                            match Self::evict_oldest(st, lane) {
                                Some(old) => {
                                    self.budget.release(old.weight);
                                    evicted.push(old);
                                }
                                None => break,
                            }
                        }
                        if !room(st) {
                            st.dropped += 1;
                            break 'admit Push::Dropped;
                        }
                    }
                }
            }

            // There is room in the mailbox; now the node-wide budget.
            let mut reserved = self.budget.try_reserve(w);
            if overflow == Overflow::DropOldest {
                while !reserved {
                    match Self::evict_oldest(st, lane) {
                        Some(old) => {
                            self.budget.release(old.weight);
                            evicted.push(old);
                            reserved = self.budget.try_reserve(w);
                        }
                        None => break,
                    }
                }
            }
            if let Some((slot, _)) = waiter.as_mut() {
                Self::forget_waiter(st, slot);
            }
            if !reserved {
                self.budget.note_refusal();
                *wake_next = Self::next_if_room(st, &self.config);
                match overflow {
                    Overflow::DropNewest | Overflow::DropOldest => {
                        st.dropped += 1;
                        break 'admit Push::Dropped;
                    }
                    _ => {
                        st.rejected += 1;
                        break 'admit Push::Budget(env.msg);
                    }
                }
            }
            Self::enqueue(st, env, lane);
            *wake_rx = st.rx_waker.take();
            *wake_next = Self::next_if_room(st, &self.config);
            Push::Queued
        }
    }

    fn evict_oldest(st: &mut State<M>, lane: Lane) -> Option<Envelope<M>> {
        let old = match lane {
            Lane::Normal => st.normal.pop_front().or_else(|| st.priority.pop_front()),
            Lane::Priority => st.priority.pop_front().or_else(|| st.normal.pop_front()),
        }?;
        st.bytes -= old.weight;
        st.dropped += 1;
        Some(old)
    }

    fn register_waiter(st: &mut State<M>, slot: &mut Option<u64>, waker: &Waker, lane: Lane) {
        match *slot {
            Some(id) => {
                if let Some((_, _, w)) = st.waiters.iter_mut().find(|(i, _, _)| *i == id) {
                    match w {
                        Some(w) if w.will_wake(waker) => {}
                        _ => *w = Some(waker.clone()),
                    }
                    return;
                }
                st.waiters.push_back((id, lane, Some(waker.clone())));
            }
            None => {
                let id = st.next_waiter;
                st.next_waiter += 1;
                *slot = Some(id);
                st.waiters.push_back((id, lane, Some(waker.clone())));
            }
        }
    }

    fn forget_waiter(st: &mut State<M>, slot: &mut Option<u64>) {
        if let Some(id) = slot.take() {
            if let Some(pos) = st.waiters.iter().position(|(i, _, _)| *i == id) {
                st.waiters.remove(pos);
            }
        }
    }

    /// The waker of the waiting sender that room just freed can serve: the first in
    /// line if its lane has room; otherwise, if the priority lane has room, the first
    /// priority sender (priority senders do not wait behind normal ones).
    #[inline]
    fn next_if_room(st: &mut State<M>, config: &Mailbox) -> Option<Waker> {
        let (_, lane, _) = st.waiters.front()?;
        if st.bytes >= config.get_max_bytes() {
            return None;
        }
        let priority_room = st.priority.len() < config.get_priority_capacity();
        let front_room = match lane {
            Lane::Normal => st.normal.len() < config.get_capacity(),
            Lane::Priority => priority_room,
        };
        if front_room {
            // `None` if it was woken already and has not run yet.
            return st.waiters.front_mut().and_then(|(_, _, w)| w.take());
        }
        if !priority_room {
            return None;
        }
        st.waiters
            .iter_mut()
            .find(|(_, l, _)| *l == Lane::Priority)
            .and_then(|(_, _, w)| w.take())
    }

    /// A waiting sender is refused after all (`send_timeout` ran out, or it is the
    /// receiver itself): leave the line, count the refusal, pass on any room.
    pub(crate) fn refuse_wait(&self, slot: &mut Option<u64>) {
        let wake = {
            let mut st = self.state.lock();
            Self::forget_waiter(&mut st, slot);
            st.rejected += 1;
            Self::next_if_room(&mut st, &self.config)
        };
        if let Some(w) = wake {
            w.wake();
        }
    }

    /// A waiting sender gave up (its future was dropped): leave the line, and pass any
    /// room it was woken for to the next in line.
    pub(crate) fn cancel_wait(&self, slot: &mut Option<u64>) {
        if slot.is_none() {
            return;
        }
        let wake = {
            let mut st = self.state.lock();
            Self::forget_waiter(&mut st, slot);
            Self::next_if_room(&mut st, &self.config)
        };
        if let Some(w) = wake {
            w.wake();
        }
    }

    /// Puts a signal in the system lane. Returns `false` if the process has exited
    /// or (for explicit exit signals) the explicit-signal cap is reached; the latter
    /// is counted.
    pub(crate) fn push_signal(&self, sig: Signal, explicit: bool) -> bool {
        let wake = {
            let mut st = self.state.lock();
            if st.closed {
                return false;
            }
            if explicit {
                if st.explicit_signals >= MAX_EXPLICIT_SIGNALS {
                    st.signals_dropped += 1;
                    return false;
                }
                st.explicit_signals += 1;
            }
            st.signals.push_back((explicit, sig));
            st.rx_waker.take()
        };
        if let Some(w) = wake {
            w.wake();
        }
        true
    }

    /// Takes the next item: signals first, then the priority lane, then the normal
    /// lane. Registers the receiver's waker and returns `Pending` when empty, and
    /// `Ready(None)` once closed.
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<Item<M>>> {
        let (item, wake) = {
            let mut st = self.state.lock();
            match Self::take(&mut st, &self.config, &self.budget) {
                Some(found) => found,
                None => {
                    if st.closed {
                        return Poll::Ready(None);
                    }
                    match &st.rx_waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        _ => st.rx_waker = Some(cx.waker().clone()),
                    }
                    return Poll::Pending;
                }
            }
        };
        if let Some(w) = wake {
            w.wake();
        }
        Poll::Ready(Some(item))
    }

    /// Takes the next item without waiting.
    pub(crate) fn try_recv(&self) -> Option<Item<M>> {
        let (item, wake) = {
            let mut st = self.state.lock();
            Self::take(&mut st, &self.config, &self.budget)?
        };
        if let Some(w) = wake {
            w.wake();
        }
        Some(item)
    }

    fn take(st: &mut State<M>, config: &Mailbox, budget: &Budget) -> Option<(Item<M>, Option<Waker>)> {
        if let Some((explicit, sig)) = st.signals.pop_front() {
            if explicit {
                st.explicit_signals -= 1;
            }
            if st.signals.is_empty() && st.signals.capacity() > SHRINK_ABOVE {
                st.signals = VecDeque::new();
            }
            return Some((Item::Signal(sig), None));
        }
        let env = match st.priority.pop_front() {
            Some(e) => {
                if st.priority.is_empty() && st.priority.capacity() > SHRINK_ABOVE {
                    st.priority = VecDeque::new();
                }
                e
            }
            None => {
                let e = st.normal.pop_front()?;
                if st.normal.is_empty() && st.normal.capacity() > SHRINK_ABOVE {
                    st.normal = VecDeque::new();
                }
                e
            }
        };
        st.bytes -= env.weight;
        budget.release(env.weight);
        let wake = Self::next_if_room(st, config);
        Some((Item::Msg(env), wake))
    }

    /// Records that a message taken out was handled.
    ///
    /// This and the other `note_*` counters have one writer, the process loop (a
    /// task is polled by one thread at a time), so they are bumped with a plain load
    /// and store: no locked read-modify-write on the receive path. Readers (`stats`)
    /// see every update eventually, as with a relaxed `fetch_add`.
    pub(crate) fn note_handled(&self, enqueued: Option<std::time::Instant>) {
        bump(&self.handled, 1);
        if let Some(t) = enqueued {
            self.note_wait(t);
        }
    }

    /// Records that a call taken out had already expired and was dropped unhandled.
    pub(crate) fn note_expired(&self) {
        bump(&self.expired, 1);
    }

    fn note_wait(&self, t: std::time::Instant) {
        let ns = t.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        bump(&self.wait_samples, 1);
        bump(&self.wait_total_ns, ns);
        if ns > self.wait_max_ns.load(Ordering::Relaxed) {
            self.wait_max_ns.store(ns, Ordering::Relaxed);
        }
    }

    /// Closes the mailbox: later sends get `Closed`, waiting senders are woken to see
    /// it, and everything still queued is discarded and counted as dropped.
    pub(crate) fn close(&self) {
        let (normal, priority, signals, waiters, rx) = {
            let mut st = self.state.lock();
            if st.closed {
                return;
            }
            st.closed = true;
            let n = (st.normal.len() + st.priority.len()) as u64;
            st.dropped += n;
            self.budget.release(st.bytes);
            st.bytes = 0;
            st.explicit_signals = 0;
            (
                std::mem::take(&mut st.normal),
                std::mem::take(&mut st.priority),
                std::mem::take(&mut st.signals),
                std::mem::take(&mut st.waiters),
                st.rx_waker.take(),
            )
        };
        drop((normal, priority, signals, rx));
        for (_, _, w) in waiters {
            if let Some(w) = w {
                w.wake();
            }
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// A consistent snapshot of the counters.
    pub(crate) fn stats(&self) -> MailboxStats {
        let st = self.state.lock();
        let samples = self.wait_samples.load(Ordering::Relaxed);
        MailboxStats {
            len: st.normal.len(),
            priority_len: st.priority.len(),
            signals: st.signals.len(),
            bytes: st.bytes,
            len_hwm: st.len_hwm,
            bytes_hwm: st.bytes_hwm,
            waiting_senders: st.waiters.len(),
            accepted: st.accepted,
            handled: self.handled.load(Ordering::Relaxed),
            rejected: st.rejected,
            dropped: st.dropped,
            expired: self.expired.load(Ordering::Relaxed),
            signals_dropped: st.signals_dropped,
            wait_mean_ns: self
                .wait_total_ns
                .load(Ordering::Relaxed)
                .checked_div(samples)
                .unwrap_or(0),
            wait_max_ns: self.wait_max_ns.load(Ordering::Relaxed),
            capacity: self.config.get_capacity(),
            max_bytes: self.config.get_max_bytes(),
            overflow: self.config.get_overflow(),
        }
    }
}

/// Adds to a counter that only one thread writes at a time.
#[inline]
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Loom models of the queue's concurrency. Run with `scripts/loom.sh`.
///
/// Each model checks every interleaving (up to the preemption bound) of a few threads
/// against one queue: admission never overshoots a bound, every offer is counted as
/// exactly one outcome, no message is lost or duplicated, no wake-up is lost (a lost
/// one leaves a thread parked forever, which loom reports as a deadlock), and the
/// mailbox's bytes and the node budget return to zero once drained or closed.
#[cfg(all(test, girder_loom))]
mod loom_tests {
    use std::future::poll_fn;

    use loom::future::block_on;
    use loom::thread;

    use super::*;

    fn model(f: impl Fn() + Send + Sync + 'static) {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(3);
        }
        builder.check(f);
    }

    fn env(msg: u32, weight: usize) -> Envelope<u32> {
        Envelope {
            msg,
            weight,
            deadline: None,
            enqueued: None,
        }
    }

    fn queue(
        capacity: usize,
        max_bytes: usize,
        overflow: Overflow,
        budget: usize,
    ) -> (loom::sync::Arc<Queue<u32>>, Arc<Budget>) {
        let budget = Arc::new(Budget::new(budget));
        let config = Mailbox::bounded(capacity).max_bytes(max_bytes).overflow(overflow);
        (loom::sync::Arc::new(Queue::new(config, budget.clone())), budget)
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Out {
        Queued,
        Dropped,
        Full,
        Kill,
        Closed,
        TooLarge,
        Budget,
        Wait,
    }

    fn out<M>(p: &Push<M>) -> Out {
        match p {
            Push::Queued => Out::Queued,
            Push::Dropped => Out::Dropped,
            Push::Full(_) => Out::Full,
            Push::Kill(_) => Out::Kill,
            Push::Closed(_) => Out::Closed,
            Push::TooLarge(_) => Out::TooLarge,
            Push::Budget(_) => Out::Budget,
            Push::Wait(_) => Out::Wait,
        }
    }

    fn try_push(q: &Queue<u32>, msg: u32, weight: usize) -> Out {
        out(&q.push(env(msg, weight), Lane::Normal, None))
    }

    /// A `send().await` under `Backpressure`: registers as a waiter until admitted.
    fn send(q: &Queue<u32>, msg: u32, weight: usize) -> Out {
        send_in(q, Lane::Normal, msg, weight)
    }

    fn send_in(q: &Queue<u32>, lane: Lane, msg: u32, weight: usize) -> Out {
        let mut slot = None;
        let mut pending = Some(env(msg, weight));
        block_on(poll_fn(|cx| {
            let e = pending.take().expect("polled after completion");
            match q.push(e, lane, Some((&mut slot, cx.waker()))) {
                Push::Wait(e) => {
                    pending = Some(e);
                    Poll::Pending
                }
                other => Poll::Ready(out(&other)),
            }
        }))
    }

    /// Waits for the next message (`None` once closed).
    fn recv(q: &Queue<u32>) -> Option<u32> {
        block_on(poll_fn(|cx| q.poll_recv(cx))).map(|item| match item {
            Item::Msg(e) => e.msg,
            Item::Signal(_) => panic!("no signals in these models"),
        })
    }

    fn try_recv(q: &Queue<u32>) -> Option<u32> {
        q.try_recv().map(|item| match item {
            Item::Msg(e) => e.msg,
            Item::Signal(_) => panic!("no signals in these models"),
        })
    }

    fn drain(q: &Queue<u32>) -> Vec<u32> {
        std::iter::from_fn(|| try_recv(q)).collect()
    }

    /// Two senders race for the last slot of a lane (one message already queued,
    /// capacity two): the bound holds, and each policy's counters account for both.
    fn last_slot(overflow: Overflow) {
        model(move || {
            let (q, budget) = queue(2, 100, overflow, 1_000);
            assert_eq!(try_push(&q, 0, 10), Out::Queued);
            let senders: Vec<_> = (1..=2)
                .map(|i| {
                    let q = q.clone();
                    thread::spawn(move || {
                        let o = try_push(&q, i, 10);
                        assert!(q.stats().len <= 2, "count bound overshot");
                        o
                    })
                })
                .collect();
            let mut outs: Vec<Out> = senders.into_iter().map(|h| h.join().unwrap()).collect();
            outs.sort_by_key(|o| *o as u8);
            let s = q.stats();
            assert!(s.len_hwm <= 2 && s.bytes_hwm <= 100, "{s:?}");
            assert_eq!((s.len, s.bytes), (2, 20));
            assert_eq!(budget.used(), 20);
            let (expected, accepted, rejected, dropped) = match overflow {
                Overflow::Reject | Overflow::Backpressure => ([Out::Queued, Out::Full], 2, 1, 0),
                Overflow::Kill => ([Out::Queued, Out::Kill], 2, 1, 0),
                Overflow::DropNewest => ([Out::Queued, Out::Dropped], 2, 0, 1),
                Overflow::DropOldest => ([Out::Queued, Out::Queued], 3, 0, 1),
            };
            assert_eq!(outs, expected);
            assert_eq!((s.accepted, s.rejected, s.dropped), (accepted, rejected, dropped));
            let got = drain(&q);
            assert_eq!(got.len(), 2);
            if overflow == Overflow::DropOldest {
                // The oldest went; both newcomers stayed.
                assert!(!got.contains(&0));
            } else {
                assert_eq!(got[0], 0);
            }
            assert_eq!((q.stats().bytes, budget.used()), (0, 0));
        });
    }

    #[test]
    fn loom_last_slot_reject() {
        last_slot(Overflow::Reject);
    }

    #[test]
    fn loom_last_slot_backpressure_try_send() {
        last_slot(Overflow::Backpressure);
    }

    #[test]
    fn loom_last_slot_kill() {
        last_slot(Overflow::Kill);
    }

    #[test]
    fn loom_last_slot_drop_newest() {
        last_slot(Overflow::DropNewest);
    }

    #[test]
    fn loom_last_slot_drop_oldest() {
        last_slot(Overflow::DropOldest);
    }

    /// Two mailboxes race for the last bytes of the node budget: exactly one wins,
    /// and the budget is never overdrawn.
    #[test]
    fn loom_last_bytes_of_the_node_budget() {
        model(|| {
            let budget = Arc::new(Budget::new(25));
            let config = Mailbox::bounded(4).overflow(Overflow::Reject);
            let a = loom::sync::Arc::new(Queue::new(config, budget.clone()));
            let b = loom::sync::Arc::new(Queue::new(config, budget.clone()));
            assert_eq!(try_push(&a, 0, 10), Out::Queued);
            let t = {
                let b = b.clone();
                let budget = budget.clone();
                thread::spawn(move || {
                    let o = try_push(&b, 1, 10);
                    assert!(budget.used() <= 25);
                    o
                })
            };
            let mine = try_push(&a, 2, 10);
            let theirs = t.join().unwrap();
            let mut outs = [mine, theirs];
            outs.sort_by_key(|o| *o as u8);
            assert_eq!(outs, [Out::Queued, Out::Budget]);
            assert_eq!(budget.used(), 20);
            assert_eq!(budget.refusals(), 1);
            let (sa, sb) = (a.stats(), b.stats());
            assert_eq!(sa.accepted + sb.accepted, 2);
            assert_eq!(sa.rejected + sb.rejected, 1);
            drain(&a);
            drain(&b);
            assert_eq!(budget.used(), 0);
        });
    }

    /// A sender races the receiver's pop on a full one-slot lane: the message is
    /// either admitted (room freed in time) or refused and counted, never lost.
    #[test]
    fn loom_push_races_pop() {
        model(|| {
            let (q, budget) = queue(1, 100, Overflow::Reject, 1_000);
            assert_eq!(try_push(&q, 1, 7), Out::Queued);
            let t = {
                let q = q.clone();
                thread::spawn(move || try_push(&q, 2, 5))
            };
            assert_eq!(try_recv(&q), Some(1));
            let o = t.join().unwrap();
            let rest = drain(&q);
            let s = q.stats();
            match o {
                Out::Queued => {
                    assert_eq!(rest, [2]);
                    assert_eq!((s.accepted, s.rejected), (2, 0));
                }
                Out::Full => {
                    assert!(rest.is_empty());
                    assert_eq!((s.accepted, s.rejected), (1, 1));
                }
                other => panic!("unexpected {other:?}"),
            }
            assert_eq!((s.len, s.bytes, budget.used()), (0, 0, 0));
        });
    }

    /// The receiver waits while a sender pushes: no wake-up is lost, messages arrive
    /// in order, and the bytes come back.
    #[test]
    fn loom_receiver_wakeup_is_never_lost() {
        model(|| {
            let (q, budget) = queue(4, 100, Overflow::Reject, 1_000);
            let t = {
                let q = q.clone();
                thread::spawn(move || {
                    assert_eq!(try_push(&q, 1, 3), Out::Queued);
                    assert_eq!(try_push(&q, 2, 3), Out::Queued);
                })
            };
            assert_eq!(recv(&q), Some(1));
            assert_eq!(recv(&q), Some(2));
            t.join().unwrap();
            assert_eq!((q.stats().bytes, budget.used()), (0, 0));
        });
    }

    /// Backpressure hand-off: a sender waiting on a full lane is woken when the
    /// receiver frees room, and gets in.
    #[test]
    fn loom_backpressure_waiter_is_woken() {
        model(|| {
            let (q, budget) = queue(1, 100, Overflow::Backpressure, 1_000);
            assert_eq!(try_push(&q, 0, 4), Out::Queued);
            let t = {
                let q = q.clone();
                thread::spawn(move || send(&q, 1, 4))
            };
            assert_eq!(recv(&q), Some(0));
            assert_eq!(recv(&q), Some(1));
            assert_eq!(t.join().unwrap(), Out::Queued);
            let s = q.stats();
            assert_eq!(
                (s.accepted, s.rejected, s.waiting_senders, s.len_hwm),
                (2, 0, 0, 1)
            );
            assert_eq!((s.bytes, budget.used()), (0, 0));
        });
    }

    /// Two waiting senders and a receiver that frees two slots and then stops: room
    /// is handed from waiter to waiter (the receiver wakes the first, the first wakes
    /// the next when room remains), and each message arrives exactly once.
    #[test]
    fn loom_backpressure_hand_off_between_waiters() {
        model(|| {
            let (q, budget) = queue(2, 100, Overflow::Backpressure, 1_000);
            assert_eq!(try_push(&q, 0, 4), Out::Queued);
            assert_eq!(try_push(&q, 1, 4), Out::Queued);
            let senders: Vec<_> = (2..=3)
                .map(|i| {
                    let q = q.clone();
                    thread::spawn(move || send(&q, i, 4))
                })
                .collect();
            // Free both slots, then stop: both waiters must get in without any
            // further help from the receiver.
            assert_eq!(recv(&q), Some(0));
            assert_eq!(recv(&q), Some(1));
            for h in senders {
                assert_eq!(h.join().unwrap(), Out::Queued);
            }
            let mut got = drain(&q);
            got.sort_unstable();
            assert_eq!(got, [2, 3]);
            let s = q.stats();
            assert_eq!((s.accepted, s.rejected, s.waiting_senders), (4, 0, 0));
            assert!(s.len_hwm <= 2);
            assert_eq!((s.bytes, budget.used()), (0, 0));
        });
    }

    /// A priority sender waiting for room in its lane, in line with a normal sender
    /// waiting for the normal lane: when the receiver frees priority room, the
    /// priority sender gets in, whatever its place in the line.
    #[test]
    fn loom_priority_waiter_is_not_held_behind_normal_waiter() {
        model(|| {
            let config = Mailbox::bounded(1)
                .priority_capacity(1)
                .overflow(Overflow::Backpressure);
            let budget = Arc::new(Budget::new(1_000));
            let q = loom::sync::Arc::new(Queue::new(config, budget.clone()));
            assert_eq!(try_push(&q, 0, 4), Out::Queued);
            assert_eq!(out(&q.push(env(1, 4), Lane::Priority, None)), Out::Queued);
            let normal = {
                let q = q.clone();
                thread::spawn(move || send_in(&q, Lane::Normal, 2, 4))
            };
            let priority = {
                let q = q.clone();
                thread::spawn(move || send_in(&q, Lane::Priority, 3, 4))
            };
            // Frees priority room only; the normal lane stays full.
            assert_eq!(recv(&q), Some(1));
            assert_eq!(priority.join().unwrap(), Out::Queued);
            assert_eq!(recv(&q), Some(3));
            assert_eq!(recv(&q), Some(0));
            assert_eq!(normal.join().unwrap(), Out::Queued);
            assert_eq!(recv(&q), Some(2));
            let s = q.stats();
            assert_eq!((s.accepted, s.rejected, s.waiting_senders), (4, 0, 0));
            assert_eq!((s.bytes, budget.used()), (0, 0));
        });
    }

    /// A push racing the process's exit: the message is either queued and then
    /// counted as dropped by the close, or refused with `Closed`; never lost uncounted.
    #[test]
    fn loom_close_races_push() {
        model(|| {
            let (q, budget) = queue(2, 100, Overflow::Reject, 1_000);
            let t = {
                let q = q.clone();
                thread::spawn(move || try_push(&q, 1, 6))
            };
            q.close();
            let o = t.join().unwrap();
            let s = q.stats();
            match o {
                Out::Queued => assert_eq!((s.accepted, s.dropped), (1, 1)),
                Out::Closed => assert_eq!((s.accepted, s.dropped), (0, 0)),
                other => panic!("unexpected {other:?}"),
            }
            assert_eq!((s.len, s.bytes, budget.used()), (0, 0, 0));
            assert_eq!(recv(&q), None, "a closed mailbox ends the receive loop");
        });
    }

    /// A sender waiting for room when the process exits is woken and told `Closed`.
    #[test]
    fn loom_close_wakes_waiting_sender() {
        model(|| {
            let (q, budget) = queue(1, 100, Overflow::Backpressure, 1_000);
            assert_eq!(try_push(&q, 0, 4), Out::Queued);
            let t = {
                let q = q.clone();
                thread::spawn(move || send(&q, 1, 4))
            };
            q.close();
            assert_eq!(t.join().unwrap(), Out::Closed);
            let s = q.stats();
            assert_eq!((s.accepted, s.dropped, s.waiting_senders), (1, 1, 0));
            assert_eq!((s.bytes, budget.used()), (0, 0));
        });
    }
}
