use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of one stage's flow counters, reported in
/// [`ProcessInfo::stage`](crate::ProcessInfo::stage).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StageStats {
    /// Demand the stage's consumers granted and it has not filled yet.
    pub pending_demand: u64,
    /// Events waiting in the producer buffer.
    pub buffered: u64,
    /// Events the buffer dropped (past `buffer_size`), or lost with a cancelled
    /// subscription.
    pub dropped: u64,
    /// Events received from producers (consumers and producer-consumers).
    pub events_in: u64,
    /// Events handed to consumers (producers and producer-consumers).
    pub events_out: u64,
    /// Live subscriptions (downstream and upstream).
    pub subscriptions: u64,
}

/// The live counters behind [`StageStats`].
#[derive(Debug, Default)]
pub struct StageCounters {
    pub(crate) pending_demand: AtomicU64,
    pub(crate) buffered: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) events_in: AtomicU64,
    pub(crate) events_out: AtomicU64,
    pub(crate) subscriptions: AtomicU64,
}

impl StageCounters {
    /// The current values.
    pub fn snapshot(&self) -> StageStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StageStats {
            pending_demand: l(&self.pending_demand),
            buffered: l(&self.buffered),
            dropped: l(&self.dropped),
            events_in: l(&self.events_in),
            events_out: l(&self.events_out),
            subscriptions: l(&self.subscriptions),
        }
    }

    pub(crate) fn set(a: &AtomicU64, v: usize) {
        a.store(v as u64, Ordering::Relaxed);
    }

    pub(crate) fn add(a: &AtomicU64, v: usize) {
        if v != 0 {
            a.fetch_add(v as u64, Ordering::Relaxed);
        }
    }
}
