//! Bounded output: each connection's pending replies and messages, and the node-wide
//! budget all of them draw from.
//!
//! A connection's output is a queue of encoded frames ([`Bytes`]; a published message
//! is one buffer shared by all its subscribers' queues). The queue is bounded the way
//! Redis bounds client output (`client-output-buffer-limit`): for subscribers a hard
//! limit that disconnects at once and a soft limit that disconnects when exceeded for
//! longer than a grace period; for normal clients, which only get replies to their own
//! requests, the server stops reading requests while replies above
//! `normal_pause_bytes` are unread. Every byte queued is also reserved from the
//! [`OutputBudget`] shared by all connections, so many stalled subscribers cannot
//! together hold more than one budget. Bytes are accounted per subscriber (a shared
//! buffer counts once per queue holding it), so the budget bounds real memory from
//! above.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// All connections' pending output, together.
#[derive(Debug)]
pub(crate) struct OutputBudget {
    limit: usize,
    used: AtomicUsize,
    peak: AtomicUsize,
    /// Connections holding output now (for the fair share).
    holders: AtomicUsize,
}

impl OutputBudget {
    pub(crate) fn new(limit: usize) -> Self {
        OutputBudget {
            limit,
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            holders: AtomicUsize::new(0),
        }
    }

    fn try_reserve(&self, n: usize) -> bool {
        let mut cur = self.used.load(Relaxed);
        loop {
            let next = cur + n;
            if next > self.limit {
                return false;
            }
            match self.used.compare_exchange_weak(cur, next, Relaxed, Relaxed) {
                Ok(_) => {
                    self.peak.fetch_max(next, Relaxed);
                    return true;
                }
                Err(c) => cur = c,
            }
        }
    }

    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Relaxed);
    }

    pub(crate) fn used(&self) -> usize {
        self.used.load(Relaxed)
    }

    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Relaxed)
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// The share of the budget one connection holding output may keep when the
    /// budget is exhausted.
    fn fair_share(&self) -> usize {
        self.limit / self.holders.load(Relaxed).max(1)
    }
}

/// The limits one connection's output is held to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OutputLimits {
    pub(crate) hard: usize,
    pub(crate) soft: usize,
    pub(crate) soft_for: Duration,
}

/// Why a frame was not queued (and what happens to the connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The hard limit: disconnect.
    Hard,
    /// Above the soft limit for longer than its grace period: disconnect.
    Soft,
    /// The node budget ran out and this connection holds more than its fair share:
    /// disconnect.
    BudgetHog,
    /// The node budget ran out; this connection holds little: the frame is dropped
    /// for it (counted), the connection stays.
    BudgetDrop,
    /// The connection is closing.
    Closed,
}

impl Refusal {
    /// The exit reason of a connection disconnected for this.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::Hard => "output buffer hard limit reached",
            Refusal::Soft => "output buffer above the soft limit for too long",
            Refusal::BudgetHog => "node output budget exhausted (connection over its fair share)",
            Refusal::BudgetDrop | Refusal::Closed => "closed",
        }
    }
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Bytes>,
    bytes: usize,
    over_soft_since: Option<Instant>,
    /// Set when the connection is closing: `true` to flush what is queued first.
    closing: Option<bool>,
}

/// One connection's pending output.
#[derive(Debug)]
pub(crate) struct Output {
    queue: Mutex<Queue>,
    /// Wakes the writer.
    ready: Notify,
    /// Wakes whoever waits for the queue to shrink.
    room: Notify,
    budget: std::sync::Arc<OutputBudget>,
    limits: OutputLimits,
    /// Bytes queued (mirror of `queue.bytes` for lock-free reads).
    bytes: AtomicUsize,
    /// Total bytes written to the socket.
    written: AtomicU64,
}

impl Output {
    pub(crate) fn new(budget: std::sync::Arc<OutputBudget>, limits: OutputLimits) -> Self {
        Output {
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            room: Notify::new(),
            budget,
            limits,
            bytes: AtomicUsize::new(0),
            written: AtomicU64::new(0),
        }
    }

    /// Bytes queued now.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Relaxed)
    }

    /// Frames queued now.
    pub(crate) fn frames(&self) -> usize {
        self.queue.lock().frames.len()
    }

    pub(crate) fn written(&self) -> u64 {
        self.written.load(Relaxed)
    }

    /// Queues a frame for a subscriber, under the pub/sub limits.
    pub(crate) fn push_message(&self, frame: Bytes) -> Result<(), Refusal> {
        self.push(frame, true)
    }

    /// Queues a reply to the client's own request. Replies are not held to the
    /// pub/sub limits (the connection stops reading requests instead), but they do
    /// draw from the node budget: `BudgetHog`/`BudgetDrop` tell the caller the budget
    /// is out.
    pub(crate) fn push_reply(&self, frame: Bytes) -> Result<(), Refusal> {
        self.push(frame, false)
    }

    fn push(&self, frame: Bytes, limited: bool) -> Result<(), Refusal> {
        let n = frame.len();
        if n == 0 {
            return Ok(());
        }
        let mut q = self.queue.lock();
        if q.closing.is_some() {
            return Err(Refusal::Closed);
        }
        let after = q.bytes + n;
        if limited {
            if after > self.limits.hard {
                return Err(Refusal::Hard);
            }
            if after > self.limits.soft {
                let now = Instant::now();
                let since = *q.over_soft_since.get_or_insert(now);
                if now.duration_since(since) > self.limits.soft_for {
                    return Err(Refusal::Soft);
                }
            }
        }
        if !self.budget.try_reserve(n) {
            return Err(if q.bytes >= self.budget.fair_share() {
                Refusal::BudgetHog
            } else {
                Refusal::BudgetDrop
            });
        }
        if q.bytes == 0 {
            self.budget.holders.fetch_add(1, Relaxed);
        }
        q.bytes = after;
        q.frames.push_back(frame);
        self.bytes.store(after, Relaxed);
        let first = q.frames.len() == 1;
        drop(q);
        if first {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Marks the connection closing: with `flush`, the writer sends what is queued
    /// and then closes; without, it closes at once.
    pub(crate) fn close(&self, flush: bool) {
        let mut q = self.queue.lock();
        if q.closing != Some(false) {
            q.closing = Some(flush);
        }
        drop(q);
        self.ready.notify_one();
        self.room.notify_waiters();
    }

    /// Waits until at most `limit` bytes are queued (or the connection is closing).
    pub(crate) async fn wait_below(&self, limit: usize) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.bytes() <= limit || self.queue.lock().closing.is_some() {
                return;
            }
            notified.await;
        }
    }

    /// The writer's side: takes queued frames (up to about `max` bytes), waiting for
    /// some. `None` when the connection is closing and there is nothing (more) to
    /// flush.
    pub(crate) async fn take(&self, out: &mut Vec<Bytes>, max: usize) -> Option<usize> {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut q = self.queue.lock();
                match q.closing {
                    Some(false) => return None,
                    Some(true) if q.frames.is_empty() => return None,
                    _ => {}
                }
                if !q.frames.is_empty() {
                    let mut taken = 0;
                    while let Some(f) = q.frames.pop_front() {
                        taken += f.len();
                        out.push(f);
                        if taken >= max {
                            break;
                        }
                    }
                    return Some(taken);
                }
            }
            notified.await;
        }
    }

    /// The writer wrote `n` bytes it took: releases them from the queue's count and
    /// the budget.
    pub(crate) fn written_done(&self, n: usize) {
        let mut q = self.queue.lock();
        q.bytes -= n;
        if q.bytes <= self.limits.soft {
            q.over_soft_since = None;
        }
        if q.bytes == 0 {
            self.budget.holders.fetch_sub(1, Relaxed);
        }
        self.bytes.store(q.bytes, Relaxed);
        drop(q);
        self.budget.release(n);
        self.written.fetch_add(n as u64, Relaxed);
        self.room.notify_waiters();
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        let q = self.queue.get_mut();
        if q.bytes > 0 {
            self.budget.release(q.bytes);
            self.budget.holders.fetch_sub(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn out(budget: usize, hard: usize, soft: usize, soft_for: Duration) -> (Arc<OutputBudget>, Output) {
        let b = Arc::new(OutputBudget::new(budget));
        let o = Output::new(b.clone(), OutputLimits { hard, soft, soft_for });
        (b, o)
    }

    #[test]
    fn hard_limit_refuses_and_budget_balances() {
        let (b, o) = out(1000, 100, 100, Duration::from_secs(60));
        o.push_message(Bytes::from(vec![0; 60])).unwrap();
        assert_eq!(o.push_message(Bytes::from(vec![0; 50])), Err(Refusal::Hard));
        assert_eq!(b.used(), 60);
        drop(o);
        assert_eq!(b.used(), 0, "a dropped connection returns its bytes");
    }

    #[test]
    fn soft_limit_after_grace() {
        let (_, o) = out(1000, 500, 10, Duration::ZERO);
        o.push_message(Bytes::from(vec![0; 20])).unwrap(); // first time over soft: grace starts
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(o.push_message(Bytes::from(vec![0; 1])), Err(Refusal::Soft));
    }

    #[test]
    fn budget_exhaustion_disconnects_hogs_and_drops_for_others() {
        let b = Arc::new(OutputBudget::new(100));
        let lim = OutputLimits {
            hard: 1000,
            soft: 1000,
            soft_for: Duration::from_secs(60),
        };
        let hog = Output::new(b.clone(), lim);
        let small = Output::new(b.clone(), lim);
        hog.push_message(Bytes::from(vec![0; 90])).unwrap();
        small.push_message(Bytes::from(vec![0; 5])).unwrap();
        assert_eq!(
            hog.push_message(Bytes::from(vec![0; 10])),
            Err(Refusal::BudgetHog)
        );
        assert_eq!(
            small.push_message(Bytes::from(vec![0; 10])),
            Err(Refusal::BudgetDrop)
        );
        assert!(b.used() <= 100);
    }

    #[tokio::test]
    async fn writer_takes_and_releases() {
        let (b, o) = out(1000, 1000, 1000, Duration::from_secs(1));
        o.push_reply(Bytes::from_static(b"+OK\r\n")).unwrap();
        o.push_reply(Bytes::from_static(b":1\r\n")).unwrap();
        let mut v = Vec::new();
        let n = o.take(&mut v, 1 << 20).await.unwrap();
        assert_eq!((n, v.len()), (9, 2));
        o.written_done(n);
        assert_eq!((o.bytes(), b.used()), (0, 0));
        o.wait_below(0).await;
        o.push_reply(Bytes::from_static(b"+x\r\n")).unwrap();
        o.close(true);
        v.clear();
        assert_eq!(o.take(&mut v, 1 << 20).await, Some(4), "flushes before closing");
        o.written_done(4);
        assert_eq!(o.take(&mut v, 1 << 20).await, None);
    }
}
