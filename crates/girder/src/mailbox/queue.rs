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
use std::task::{Context, Poll, Waker};

use super::budget::Budget;
use super::{Mailbox, MailboxStats, Overflow};
use crate::process::Signal;
use crate::sync::{Arc, AtomicU64, Mutex, Ordering};

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
    waiters: VecDeque<(u64, Waker)>,
    next_waiter: u64,
    accepted: u64,
    rejected: u64,
    dropped: u64,
    signals_dropped: u64,
    len_hwm: usize,
    bytes_hwm: usize,
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
        mut env: Envelope<M>,
        lane: Lane,
        mut waiter: Option<(&mut Option<u64>, &Waker)>,
    ) -> Push<M> {
        let mut evicted: Vec<Envelope<M>> = Vec::new();
        let mut wake_rx = None;
        let mut wake_next = None;
        let outcome = 'admit: {
            let mut guard = self.state.lock();
            let st = &mut *guard;
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
                && st.waiters.front().is_some_and(|(id, _)| Some(*id) != my_id);

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
                            Self::register_waiter(st, slot, waker);
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
                wake_next = Self::next_if_room(st, &self.config);
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
            if st.accepted % WAIT_SAMPLE_EVERY == 0 {
                env.enqueued = Some(std::time::Instant::now());
            }
            st.accepted += 1;
            st.bytes += w;
            match lane {
                Lane::Normal => st.normal.push_back(env),
                Lane::Priority => st.priority.push_back(env),
            }
            let len = st.normal.len() + st.priority.len();
            st.len_hwm = st.len_hwm.max(len);
            st.bytes_hwm = st.bytes_hwm.max(st.bytes);
            wake_rx = st.rx_waker.take();
            wake_next = Self::next_if_room(st, &self.config);
            Push::Queued
        };
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

    fn evict_oldest(st: &mut State<M>, lane: Lane) -> Option<Envelope<M>> {
        let old = match lane {
            Lane::Normal => st.normal.pop_front().or_else(|| st.priority.pop_front()),
            Lane::Priority => st.priority.pop_front().or_else(|| st.normal.pop_front()),
        }?;
        st.bytes -= old.weight;
        st.dropped += 1;
        Some(old)
    }

    fn register_waiter(st: &mut State<M>, slot: &mut Option<u64>, waker: &Waker) {
        match *slot {
            Some(id) => {
                if let Some((_, w)) = st.waiters.iter_mut().find(|(i, _)| *i == id) {
                    if !w.will_wake(waker) {
                        *w = waker.clone();
                    }
                    return;
                }
                st.waiters.push_back((id, waker.clone()));
            }
            None => {
                let id = st.next_waiter;
                st.next_waiter += 1;
                *slot = Some(id);
                st.waiters.push_back((id, waker.clone()));
            }
        }
    }

    fn forget_waiter(st: &mut State<M>, slot: &mut Option<u64>) {
        if let Some(id) = slot.take() {
            if let Some(pos) = st.waiters.iter().position(|(i, _)| *i == id) {
                st.waiters.remove(pos);
            }
        }
    }

    /// The first waiting sender's waker, if there is room it could use.
    fn next_if_room(st: &State<M>, config: &Mailbox) -> Option<Waker> {
        let (_, w) = st.waiters.front()?;
        let room =
            st.normal.len() < config.get_capacity() || st.priority.len() < config.get_priority_capacity();
        (room && st.bytes < config.get_max_bytes()).then(|| w.clone())
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
            Self::next_if_room(&st, &self.config)
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
    pub(crate) fn note_handled(&self, enqueued: Option<std::time::Instant>) {
        self.handled.fetch_add(1, Ordering::Relaxed);
        if let Some(t) = enqueued {
            self.note_wait(t);
        }
    }

    /// Records that a call taken out had already expired and was dropped unhandled.
    pub(crate) fn note_expired(&self) {
        self.expired.fetch_add(1, Ordering::Relaxed);
    }

    fn note_wait(&self, t: std::time::Instant) {
        let ns = t.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        self.wait_samples.fetch_add(1, Ordering::Relaxed);
        self.wait_total_ns.fetch_add(ns, Ordering::Relaxed);
        self.wait_max_ns.fetch_max(ns, Ordering::Relaxed);
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
        for (_, w) in waiters {
            w.wake();
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
