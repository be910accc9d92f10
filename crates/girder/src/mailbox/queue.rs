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
//!
//! # Taking messages ahead
//!
//! The receiver does not take the lock once per message: when it takes a message out
//! of a long normal lane, it also moves up to an eighth of the lane's capacity (at
//! most [`PREFETCH_MAX`]) into its [`Hand`], and hands those out on later receives
//! without the lock. Taken-ahead messages keep counting against the lane's count and
//! byte bounds and the node budget until the receiver next comes back to the lock (it
//! "settles": for the last message of the hand, or for a signal or priority message),
//! so no bound is ever overshot: a sender may only see the lane full up to that many
//! messages early, and room comes back in batches. Signals and priority messages
//! still overtake them: one flag, set under the lock when either lane is non-empty,
//! is checked before every message handed out of the hand.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::budget::Budget;
use super::{Mailbox, MailboxStats, Overflow};
use crate::process::Signal;
use crate::sync::{AtomicBool, AtomicU64, Mutex, Ordering};

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

/// The outcome of one receive.
enum Recv<M> {
    Item(Item<M>),
    Empty,
    Closed,
}

/// How long a sample of messages waited between admission and being taken out.
const WAIT_SAMPLE_EVERY: u64 = 64;
/// Lanes whose storage grew beyond this are released when they drain.
const SHRINK_ABOVE: usize = 32;
/// Exit signals sent with an explicit `exit(pid, reason)` to a trapping process that
/// may wait in its system lane at once (link and monitor signals are bounded by the
/// links and monitors themselves).
pub(crate) const MAX_EXPLICIT_SIGNALS: usize = 64;
/// At most this many normal messages are taken ahead into the receiver's [`Hand`] at
/// once (fewer for lanes under 256 slots: an eighth of the capacity, minus the message
/// taken; none under 16 slots).
pub(crate) const PREFETCH_MAX: usize = 31;

/// The receiver's private batch: normal messages taken ahead out of the lane, handed
/// out without the lock. Owned by the process loop; exactly one per queue.
pub(crate) struct Hand<M> {
    buf: VecDeque<Envelope<M>>,
    /// Bytes of messages handed out of `buf` since the receiver last settled.
    out_bytes: usize,
}

impl<M> Hand<M> {
    pub(crate) fn new() -> Self {
        Hand {
            buf: VecDeque::new(),
            out_bytes: 0,
        }
    }
}

struct State<M> {
    normal: VecDeque<Envelope<M>>,
    priority: VecDeque<Envelope<M>>,
    bytes: usize,
    closed: bool,
    rx_waker: Option<Waker>,
    /// The system lane and the line of waiting senders: allocated on the first
    /// signal or waiting sender, so a process that never sees either does not carry
    /// them (the mailbox is in every process, most of an idle process's memory).
    rare: Option<Box<Rare>>,
    accepted: u64,
    rejected: u64,
    dropped: u64,
    len_hwm: usize,
    bytes_hwm: usize,
    /// Normal messages taken ahead into the receiver's hand and not yet settled
    /// (still in the hand, or handed out since): they count against the lane's bound,
    /// and their bytes are still in `bytes` and the node budget.
    hand_len: usize,
}

/// The rarely used part of a mailbox's state.
#[derive(Default)]
struct Rare {
    /// `(explicit, signal)`: explicit exit signals are capped separately.
    signals: VecDeque<(bool, Signal)>,
    explicit_signals: usize,
    signals_dropped: u64,
    /// Senders waiting for room, in arrival order: id, lane, and the waker — taken
    /// when the sender is woken, so freeing more room does not wake it again before
    /// it has run (one wake per wait, not one per message taken).
    waiters: VecDeque<(u64, Lane, Option<Waker>)>,
    next_waiter: u64,
}

impl<M> State<M> {
    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Default::default)
    }

    /// Nobody waits for room.
    #[inline]
    fn no_waiters(&self) -> bool {
        self.rare.as_ref().is_none_or(|r| r.waiters.is_empty())
    }

    /// How many messages count against `lane`'s bound.
    #[inline]
    fn lane_len(&self, lane: Lane) -> usize {
        match lane {
            Lane::Normal => self.normal.len() + self.hand_len,
            Lane::Priority => self.priority.len(),
        }
    }
}

pub(crate) struct Queue<M> {
    state: Mutex<State<M>>,
    config: Mailbox,
    budget: Arc<Budget>,
    /// Signals or priority messages are waiting: the receiver must take the lock
    /// rather than hand out a taken-ahead message. Written under the lock.
    urgent: AtomicBool,
    /// Messages handed out of the hand since the receiver last settled. One writer,
    /// the receiver; read by `close` and `stats`.
    hand_out: AtomicU64,
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
                bytes: 0,
                closed: false,
                rx_waker: None,
                rare: None,
                accepted: 0,
                rejected: 0,
                dropped: 0,
                len_hwm: 0,
                bytes_hwm: 0,
                hand_len: 0,
            }),
            config,
            budget,
            urgent: AtomicBool::new(false),
            hand_out: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            wait_samples: AtomicU64::new(0),
            wait_total_ns: AtomicU64::new(0),
            wait_max_ns: AtomicU64::new(0),
        }
    }

    /// How many messages to take ahead with each message taken from the normal lane.
    #[inline]
    fn prefetch(&self) -> usize {
        (self.config.get_capacity() / 8)
            .min(PREFETCH_MAX + 1)
            .saturating_sub(1)
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
            && st.no_waiters()
            && waiter.as_ref().is_none_or(|(slot, _)| slot.is_none())
            && st.lane_len(lane) < cap
            && st.bytes + w <= self.config.get_max_bytes();
        if fast && self.budget.try_reserve(w) {
            self.enqueue(st, env, lane);
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
    fn enqueue(&self, st: &mut State<M>, mut env: Envelope<M>, lane: Lane) {
        if st.accepted % WAIT_SAMPLE_EVERY == 0 {
            env.enqueued = Some(std::time::Instant::now());
        }
        st.accepted += 1;
        st.bytes += env.weight;
        match lane {
            Lane::Normal => st.normal.push_back(env),
            Lane::Priority => {
                st.priority.push_back(env);
                self.urgent.store(true, Ordering::Release);
            }
        }
        let len = st.normal.len() + st.hand_len + st.priority.len();
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
            let room = |st: &State<M>| st.lane_len(lane) < cap && st.bytes + w <= max_bytes;
            let overflow = self.config.get_overflow();
            let my_id = waiter.as_ref().and_then(|(slot, _)| **slot);
            // Priority messages are not held behind senders waiting for room: that
            // line is what the priority lane exists to bypass. (A priority sender
            // joins it only when the priority lane itself is full.)
            let behind_waiters = overflow == Overflow::Backpressure
                && lane == Lane::Normal
                && st
                    .rare
                    .as_ref()
                    .and_then(|r| r.waiters.front())
                    .is_some_and(|(id, _, _)| Some(*id) != my_id);

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
                            match self.evict_oldest(st, lane) {
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
                    match self.evict_oldest(st, lane) {
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
            self.enqueue(st, env, lane);
            *wake_rx = st.rx_waker.take();
            *wake_next = Self::next_if_room(st, &self.config);
            Push::Queued
        }
    }

    fn evict_oldest(&self, st: &mut State<M>, lane: Lane) -> Option<Envelope<M>> {
        let old = match lane {
            Lane::Normal => st.normal.pop_front().or_else(|| {
                let old = st.priority.pop_front();
                self.update_urgent(st);
                old
            }),
            Lane::Priority => {
                let old = st.priority.pop_front().or_else(|| st.normal.pop_front());
                self.update_urgent(st);
                old
            }
        }?;
        st.bytes -= old.weight;
        st.dropped += 1;
        Some(old)
    }

    fn register_waiter(st: &mut State<M>, slot: &mut Option<u64>, waker: &Waker, lane: Lane) {
        let r = st.rare();
        match *slot {
            Some(id) => {
                if let Some((_, _, w)) = r.waiters.iter_mut().find(|(i, _, _)| *i == id) {
                    match w {
                        Some(w) if w.will_wake(waker) => {}
                        _ => *w = Some(waker.clone()),
                    }
                    return;
                }
                r.waiters.push_back((id, lane, Some(waker.clone())));
            }
            None => {
                let id = r.next_waiter;
                r.next_waiter += 1;
                *slot = Some(id);
                r.waiters.push_back((id, lane, Some(waker.clone())));
            }
        }
    }

    fn forget_waiter(st: &mut State<M>, slot: &mut Option<u64>) {
        if let (Some(id), Some(r)) = (slot.take(), st.rare.as_mut()) {
            if let Some(pos) = r.waiters.iter().position(|(i, _, _)| *i == id) {
                r.waiters.remove(pos);
            }
        }
    }

    /// The waker of the waiting sender that room just freed can serve: the first in
    /// line if its lane has room; otherwise, if the priority lane has room, the first
    /// priority sender (priority senders do not wait behind normal ones).
    ///
    /// A single free slot wakes the first waiter. (Waking it only once a batch of
    /// room is free saves wake-ups, but a receiver that takes one message and then
    /// blocks waiting on that sender would leave it asleep beside free room.)
    #[inline]
    fn next_if_room(st: &mut State<M>, config: &Mailbox) -> Option<Waker> {
        let lane = st.rare.as_ref()?.waiters.front()?.1;
        if st.bytes >= config.get_max_bytes() {
            return None;
        }
        let priority_room = st.priority.len() < config.get_priority_capacity();
        let front_room = match lane {
            Lane::Normal => st.lane_len(Lane::Normal) < config.get_capacity(),
            Lane::Priority => priority_room,
        };
        let waiters = &mut st.rare.as_mut()?.waiters;
        if front_room {
            // `None` if it was woken already and has not run yet.
            return waiters.front_mut().and_then(|(_, _, w)| w.take());
        }
        if !priority_room {
            return None;
        }
        waiters
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
            let r = st.rare();
            if explicit {
                if r.explicit_signals >= MAX_EXPLICIT_SIGNALS {
                    r.signals_dropped += 1;
                    return false;
                }
                r.explicit_signals += 1;
            }
            r.signals.push_back((explicit, sig));
            self.urgent.store(true, Ordering::Release);
            st.rx_waker.take()
        };
        if let Some(w) = wake {
            w.wake();
        }
        true
    }

    /// Takes the next item: signals first, then the priority lane, then messages
    /// taken ahead, then the normal lane. Registers the receiver's waker and returns
    /// `Pending` when empty, and `Ready(None)` once closed.
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>, hand: &mut Hand<M>) -> Poll<Option<Item<M>>> {
        match self.recv(hand, Some(cx.waker())) {
            Recv::Item(item) => Poll::Ready(Some(item)),
            Recv::Closed => Poll::Ready(None),
            Recv::Empty => Poll::Pending,
        }
    }

    /// Takes the next item without waiting (for tests: the process loop always
    /// receives with its waker, so that an empty mailbox registers the wake-up in the
    /// same visit).
    #[cfg(test)]
    pub(crate) fn try_recv(&self, hand: &mut Hand<M>) -> Option<Item<M>> {
        match self.recv(hand, None) {
            Recv::Item(item) => Some(item),
            Recv::Closed | Recv::Empty => None,
        }
    }

    /// One receive: from the hand without the lock if it can, else one locked visit
    /// that settles the hand, takes the next item, hands freed room to a waiting
    /// sender and, if nothing was there and `waker` is given, registers it.
    #[inline]
    fn recv(&self, hand: &mut Hand<M>, waker: Option<&Waker>) -> Recv<M> {
        if let Some(item) = self.take_from_hand(hand) {
            return Recv::Item(item);
        }
        let mut st = self.state.lock();
        if st.closed {
            drop(st);
            // `close` counted and released everything the hand holds or handed
            // out; its messages are dropped outside the lock.
            hand.out_bytes = 0;
            drop(std::mem::take(&mut hand.buf));
            return Recv::Closed;
        }
        self.settle(&mut st, hand);
        let item = self.take(&mut st, hand);
        let wake = Self::next_if_room(&mut st, &self.config);
        if item.is_none() {
            if let Some(waker) = waker {
                match &st.rx_waker {
                    Some(w) if w.will_wake(waker) => {}
                    _ => st.rx_waker = Some(waker.clone()),
                }
            }
            // Going idle: a hand that grew under a burst gives its storage back.
            if hand.buf.capacity() != 0 {
                hand.buf = VecDeque::new();
            }
        }
        drop(st);
        if let Some(w) = wake {
            w.wake();
        }
        item.map_or(Recv::Empty, Recv::Item)
    }

    /// The lock-free path: the next taken-ahead message, unless signals or priority
    /// messages are waiting (then the lock decides the order).
    ///
    /// The last message of the hand is taken under the lock instead, which settles
    /// the batch and tops the hand up: a process handling the last message it has
    /// shows exact counts (`len`, `bytes`, the node budget) to `stats`.
    #[inline]
    fn take_from_hand(&self, hand: &mut Hand<M>) -> Option<Item<M>> {
        if hand.buf.len() < 2 || self.urgent.load(Ordering::Acquire) {
            return None;
        }
        let env = hand.buf.pop_front()?;
        hand.out_bytes += env.weight;
        bump(&self.hand_out, 1);
        Some(Item::Msg(env))
    }

    /// Under the lock: the room of messages handed out of the hand since the last
    /// visit goes back to the lane, the mailbox's bytes and the node budget.
    #[inline]
    fn settle(&self, st: &mut State<M>, hand: &mut Hand<M>) {
        let out = self.hand_out.load(Ordering::Relaxed) as usize;
        if out != 0 {
            st.hand_len -= out;
            self.hand_out.store(0, Ordering::Relaxed);
        }
        if hand.out_bytes != 0 {
            st.bytes -= hand.out_bytes;
            self.budget.release(hand.out_bytes);
            hand.out_bytes = 0;
        }
    }

    fn take(&self, st: &mut State<M>, hand: &mut Hand<M>) -> Option<Item<M>> {
        if let Some(r) = st.rare.as_mut() {
            if let Some((explicit, sig)) = r.signals.pop_front() {
                if explicit {
                    r.explicit_signals -= 1;
                }
                if r.signals.is_empty() && r.signals.capacity() > SHRINK_ABOVE {
                    r.signals = VecDeque::new();
                }
                self.update_urgent(st);
                return Some(Item::Signal(sig));
            }
        }
        let env = match st.priority.pop_front() {
            Some(e) => {
                if st.priority.is_empty() && st.priority.capacity() > SHRINK_ABOVE {
                    st.priority = VecDeque::new();
                }
                self.update_urgent(st);
                e
            }
            None => {
                let e = match hand.buf.pop_front() {
                    // Taken ahead earlier: older than anything in the lane.
                    Some(e) => {
                        st.hand_len -= 1;
                        e
                    }
                    None => st.normal.pop_front()?,
                };
                // Top the hand up from the lane, oldest first.
                let ahead = (self.prefetch() - hand.buf.len()).min(st.normal.len());
                if ahead != 0 {
                    hand.buf.extend(st.normal.drain(..ahead));
                    st.hand_len += ahead;
                }
                if st.normal.is_empty() && st.normal.capacity() > SHRINK_ABOVE {
                    st.normal = VecDeque::new();
                }
                e
            }
        };
        st.bytes -= env.weight;
        self.budget.release(env.weight);
        Some(Item::Msg(env))
    }

    /// Clears the urgent flag once the signal and priority lanes are both empty.
    #[inline]
    fn update_urgent(&self, st: &State<M>) {
        if st.priority.is_empty() && st.rare.as_ref().is_none_or(|r| r.signals.is_empty()) {
            self.urgent.store(false, Ordering::Release);
        }
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
            // Taken ahead and never handed out: dropped with the rest. (The receiver
            // never runs concurrently with `close`: it is called as its task ends.)
            let in_hand = st.hand_len - self.hand_out.load(Ordering::Relaxed) as usize;
            st.hand_len = 0;
            self.hand_out.store(0, Ordering::Relaxed);
            // Makes the receiver take the lock, where it sees `closed`.
            self.urgent.store(true, Ordering::Release);
            let n = (st.normal.len() + st.priority.len() + in_hand) as u64;
            st.dropped += n;
            self.budget.release(st.bytes);
            st.bytes = 0;
            let (signals, waiters) = match st.rare.as_mut() {
                Some(r) => {
                    r.explicit_signals = 0;
                    (std::mem::take(&mut r.signals), std::mem::take(&mut r.waiters))
                }
                None => Default::default(),
            };
            (
                std::mem::take(&mut st.normal),
                std::mem::take(&mut st.priority),
                signals,
                waiters,
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
        let in_hand = st
            .hand_len
            .saturating_sub(self.hand_out.load(Ordering::Relaxed) as usize);
        MailboxStats {
            len: st.normal.len() + in_hand,
            priority_len: st.priority.len(),
            signals: st.rare.as_ref().map_or(0, |r| r.signals.len()),
            bytes: st.bytes,
            len_hwm: st.len_hwm,
            bytes_hwm: st.bytes_hwm,
            waiting_senders: st.rare.as_ref().map_or(0, |r| r.waiters.len()),
            accepted: st.accepted,
            handled: self.handled.load(Ordering::Relaxed),
            rejected: st.rejected,
            dropped: st.dropped,
            expired: self.expired.load(Ordering::Relaxed),
            signals_dropped: st.rare.as_ref().map_or(0, |r| r.signals_dropped),
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

/// A message for the tests: no deadline, no arrival-time sample.
#[cfg(test)]
fn test_envelope(msg: u32, weight: usize) -> Envelope<u32> {
    Envelope {
        msg,
        weight,
        deadline: None,
        enqueued: None,
    }
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

    use super::test_envelope as env;
    use super::*;

    fn model(f: impl Fn() + Send + Sync + 'static) {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(3);
        }
        builder.check(f);
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

    /// A queue (byte bound and node budget 1,000) holding messages `0..n` of weight 1.
    fn filled(capacity: usize, overflow: Overflow, n: u32) -> (loom::sync::Arc<Queue<u32>>, Arc<Budget>) {
        let (q, budget) = queue(capacity, 1_000, overflow, 1_000);
        for i in 0..n {
            assert_eq!(try_push(&q, i, 1), Out::Queued);
        }
        (q, budget)
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

    /// Waits for the next message (`None` once closed). For lanes too short to take
    /// messages ahead (under 16 slots), so a fresh hand per call loses nothing.
    fn recv(q: &Queue<u32>) -> Option<u32> {
        assert_eq!(
            q.prefetch(),
            0,
            "use recv_with for lanes that take messages ahead"
        );
        recv_with(q, &mut Hand::new())
    }

    fn recv_with(q: &Queue<u32>, hand: &mut Hand<u32>) -> Option<u32> {
        block_on(poll_fn(|cx| q.poll_recv(cx, hand))).map(|item| match item {
            Item::Msg(e) => e.msg,
            Item::Signal(_) => panic!("no signals in these models"),
        })
    }

    fn try_recv(q: &Queue<u32>) -> Option<u32> {
        assert_eq!(
            q.prefetch(),
            0,
            "use try_recv_with for lanes that take messages ahead"
        );
        try_recv_with(q, &mut Hand::new())
    }

    fn try_recv_with(q: &Queue<u32>, hand: &mut Hand<u32>) -> Option<u32> {
        q.try_recv(hand).map(|item| match item {
            Item::Msg(e) => e.msg,
            Item::Signal(_) => panic!("no signals in these models"),
        })
    }

    fn drain(q: &Queue<u32>) -> Vec<u32> {
        drain_with(q, &mut Hand::new())
    }

    fn drain_with(q: &Queue<u32>, hand: &mut Hand<u32>) -> Vec<u32> {
        std::iter::from_fn(|| try_recv_with(q, hand)).collect()
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

    /// Messages taken ahead keep their room until the receiver settles: a full lane
    /// of 24 (two taken ahead per visit) admits exactly as much as it has settled,
    /// never more, while the receiver hands messages out without the lock; every
    /// message arrives once, in order, and the bytes come back.
    #[test]
    fn loom_taken_ahead_messages_keep_their_room() {
        model(|| {
            let (q, budget) = filled(24, Overflow::Reject, 24);
            assert_eq!(q.prefetch(), 2);
            let mut hand = Hand::new();
            // Under the lock: 0 out, 1 and 2 taken ahead; one slot free.
            assert_eq!(try_recv_with(&q, &mut hand), Some(0));
            let t = {
                let q = q.clone();
                thread::spawn(move || {
                    let a = try_push(&q, 100, 1);
                    assert!(q.stats().len <= 24, "count bound overshot");
                    let b = try_push(&q, 101, 1);
                    (a, b)
                })
            };
            // Without the lock (1 keeps its slot), then under it (settles 1 and 2,
            // takes 3 and 4 ahead).
            assert_eq!(try_recv_with(&q, &mut hand), Some(1));
            assert_eq!(try_recv_with(&q, &mut hand), Some(2));
            let (a, b) = t.join().unwrap();
            assert_eq!(a, Out::Queued, "the slot freed before the sender started");
            assert!(matches!(b, Out::Queued | Out::Full), "{b:?}");
            let queued = 1 + u64::from(b == Out::Queued);
            let mut got = vec![0, 1, 2];
            got.extend(drain_with(&q, &mut hand));
            let mut expected: Vec<u32> = (0..24).collect();
            expected.extend([100, 101].into_iter().take(queued as usize));
            assert_eq!(got, expected);
            let s = q.stats();
            assert!(s.len_hwm <= 24, "{s:?}");
            assert_eq!((s.accepted, s.rejected), (24 + queued, 2 - queued));
            assert_eq!((s.len, s.bytes, budget.used()), (0, 0, 0));
        });
    }

    /// A signal or priority message sent while the receiver holds taken-ahead
    /// messages is delivered exactly once, and the normal messages keep their order.
    #[test]
    fn loom_urgent_items_reach_a_receiver_with_a_full_hand() {
        model(|| {
            let (q, budget) = filled(24, Overflow::Reject, 5);
            let mut hand = Hand::new();
            assert_eq!(try_recv_with(&q, &mut hand), Some(0));
            let t = {
                let q = q.clone();
                thread::spawn(move || {
                    assert!(q.push_signal(Signal::Wake(7), false));
                    assert_eq!(out(&q.push(env(50, 1), Lane::Priority, None)), Out::Queued);
                })
            };
            let (mut normal, mut signals, mut priority) = (vec![0], 0, 0);
            while normal.len() < 5 || signals + priority < 2 {
                match block_on(poll_fn(|cx| q.poll_recv(cx, &mut hand))).expect("open") {
                    Item::Msg(e) if e.msg == 50 => priority += 1,
                    Item::Msg(e) => normal.push(e.msg),
                    Item::Signal(Signal::Wake(7)) => signals += 1,
                    Item::Signal(_) => panic!("unexpected signal"),
                }
            }
            t.join().unwrap();
            assert_eq!(normal, [0, 1, 2, 3, 4]);
            assert_eq!((signals, priority), (1, 1));
            assert_eq!(try_recv_with(&q, &mut hand), None);
            assert_eq!((q.stats().bytes, budget.used()), (0, 0));
        });
    }

    /// A sender waiting on a full lane is woken by the one slot the receiver frees
    /// when it takes a message out, although the message it takes ahead with it
    /// keeps its slot: a receiver that then blocks on that sender does not leave it
    /// asleep beside free room.
    #[test]
    fn loom_waiting_sender_is_woken_by_one_free_slot() {
        model(|| {
            let (q, budget) = filled(16, Overflow::Backpressure, 16);
            assert_eq!(q.prefetch(), 1);
            let t = {
                let q = q.clone();
                thread::spawn(move || send(&q, 100, 1))
            };
            let mut hand = Hand::new();
            // 0 out (its slot free), 1 taken ahead (its slot kept).
            let mut got = vec![recv_with(&q, &mut hand).unwrap()];
            assert_eq!(t.join().unwrap(), Out::Queued);
            got.extend(drain_with(&q, &mut hand));
            let mut expected: Vec<u32> = (0..16).collect();
            expected.push(100);
            assert_eq!(got, expected);
            let s = q.stats();
            assert_eq!((s.accepted, s.rejected, s.waiting_senders), (17, 0, 0));
            assert!(s.len_hwm <= 16);
            assert_eq!((s.bytes, budget.used()), (0, 0));
        });
    }
}

#[cfg(all(test, not(girder_loom)))]
mod tests {
    use super::test_envelope as env;
    use super::*;

    fn full_queue(capacity: usize, n: u32) -> (Queue<u32>, Arc<Budget>) {
        let budget = Arc::new(Budget::new(1 << 20));
        let q = Queue::new(Mailbox::bounded(capacity), budget.clone());
        for i in 0..n {
            assert!(matches!(q.push(env(i, 10), Lane::Normal, None), Push::Queued));
        }
        (q, budget)
    }

    fn msg(item: Option<Item<u32>>) -> Option<u32> {
        item.map(|i| match i {
            Item::Msg(e) => e.msg,
            Item::Signal(_) => u32::MAX,
        })
    }

    #[test]
    fn lanes_take_an_eighth_of_their_capacity_ahead_at_most_thirty_one() {
        let budget = Arc::new(Budget::new(1 << 20));
        let prefetch = |cap| Queue::<u32>::new(Mailbox::bounded(cap), budget.clone()).prefetch();
        assert_eq!(
            [prefetch(1), prefetch(15), prefetch(16), prefetch(64)],
            [0, 0, 1, 7]
        );
        assert_eq!([prefetch(256), prefetch(1024), prefetch(1 << 20)], [31, 31, 31]);
    }

    #[test]
    fn taken_ahead_messages_count_as_queued_until_handed_out() {
        let (q, budget) = full_queue(1024, 100);
        let mut hand = Hand::new();
        assert_eq!(msg(q.try_recv(&mut hand)), Some(0));
        assert_eq!(hand.buf.len(), 31);
        let s = q.stats();
        assert_eq!((s.len, s.bytes), (99, 990));
        assert_eq!(msg(q.try_recv(&mut hand)), Some(1));
        // Handed out without the lock: no longer queued, its bytes not yet settled.
        let s = q.stats();
        assert_eq!((s.len, s.bytes, budget.used()), (98, 990, 990));
        for i in 2..100 {
            assert_eq!(msg(q.try_recv(&mut hand)), Some(i));
        }
        assert_eq!(msg(q.try_recv(&mut hand)), None);
        let s = q.stats();
        assert_eq!((s.len, s.bytes, budget.used(), s.accepted), (0, 0, 0, 100));
    }

    #[test]
    fn the_last_message_in_hand_settles_the_batch() {
        let (q, budget) = full_queue(1024, 32);
        let mut hand = Hand::new();
        for i in 0..32 {
            assert_eq!(msg(q.try_recv(&mut hand)), Some(i));
        }
        // Handling the last message it has, the process shows exact counts.
        let s = q.stats();
        assert_eq!((s.len, s.bytes, budget.used()), (0, 0, 0));
    }

    #[test]
    fn a_signal_overtakes_messages_taken_ahead() {
        let (q, _budget) = full_queue(1024, 10);
        let mut hand = Hand::new();
        assert_eq!(msg(q.try_recv(&mut hand)), Some(0));
        assert!(q.push_signal(Signal::Wake(1), false));
        assert!(matches!(
            q.try_recv(&mut hand),
            Some(Item::Signal(Signal::Wake(1)))
        ));
        assert!(matches!(q.push(env(99, 1), Lane::Priority, None), Push::Queued));
        assert_eq!(msg(q.try_recv(&mut hand)), Some(99));
        for i in 1..10 {
            assert_eq!(msg(q.try_recv(&mut hand)), Some(i));
        }
    }

    #[test]
    fn close_counts_messages_taken_ahead_as_dropped() {
        let (q, budget) = full_queue(1024, 10);
        let mut hand = Hand::new();
        assert_eq!(msg(q.try_recv(&mut hand)), Some(0));
        assert_eq!(msg(q.try_recv(&mut hand)), Some(1));
        q.close();
        let s = q.stats();
        assert_eq!((s.accepted, s.dropped, s.len, s.bytes), (10, 8, 0, 0));
        assert_eq!(budget.used(), 0);
        // The hand is emptied, not handed out, once the mailbox is closed.
        assert_eq!(msg(q.try_recv(&mut hand)), None);
        assert!(hand.buf.is_empty());
    }

    #[test]
    fn drop_oldest_evicts_from_the_lane_not_from_the_hand() {
        let budget = Arc::new(Budget::new(1 << 20));
        let q = Queue::new(
            Mailbox::bounded(16).overflow(Overflow::DropOldest),
            budget.clone(),
        );
        for i in 0..16 {
            assert!(matches!(q.push(env(i, 10), Lane::Normal, None), Push::Queued));
        }
        let mut hand = Hand::new();
        // 0 out, 1 taken ahead: 15 count against the bound.
        assert_eq!(msg(q.try_recv(&mut hand)), Some(0));
        for i in 16..18 {
            assert!(matches!(q.push(env(i, 10), Lane::Normal, None), Push::Queued));
        }
        let s = q.stats();
        assert_eq!((s.len, s.dropped, s.len_hwm), (16, 1, 16));
        // 2, the oldest in the lane, went; 1, taken ahead, stayed.
        let rest: Vec<u32> = std::iter::from_fn(|| msg(q.try_recv(&mut hand))).collect();
        assert_eq!(rest, [1].into_iter().chain(3..18).collect::<Vec<_>>());
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_priority_message_evicted_by_drop_oldest_leaves_no_urgent_flag_behind() {
        let budget = Arc::new(Budget::new(1 << 20));
        let config = Mailbox::bounded(16).max_bytes(10).overflow(Overflow::DropOldest);
        let q = Queue::new(config, budget);
        assert!(matches!(q.push(env(99, 8), Lane::Priority, None), Push::Queued));
        // No byte room for a normal message: with the normal lane empty, the
        // priority message is the oldest there is, and goes.
        assert!(matches!(q.push(env(0, 5), Lane::Normal, None), Push::Queued));
        assert_eq!((q.stats().priority_len, q.stats().dropped), (0, 1));
        let mut hand = Hand::new();
        assert_eq!(msg(q.try_recv(&mut hand)), Some(0));
        assert!(!q.urgent.load(Ordering::Relaxed), "nothing urgent is queued");
    }

    #[test]
    fn a_going_idle_receiver_gives_its_hand_storage_back() {
        let (q, _budget) = full_queue(1024, 40);
        let mut hand = Hand::new();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..40 {
            assert!(q.poll_recv(&mut cx, &mut hand).is_ready());
        }
        assert!(q.poll_recv(&mut cx, &mut hand).is_pending());
        assert_eq!(hand.buf.capacity(), 0);
    }
}
