use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// The node-wide mailbox byte budget: the sum of the weights of every message queued
/// in any mailbox of the node never exceeds `limit`.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicUsize,
    limit: usize,
    /// Messages refused or dropped because the budget was exhausted.
    refusals: AtomicU64,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Self {
        Budget {
            used: AtomicUsize::new(0),
            limit,
            refusals: AtomicU64::new(0),
        }
    }

    /// Takes `bytes` from the budget, or refuses without taking anything.
    pub(crate) fn try_reserve(&self, bytes: usize) -> bool {
        if bytes == 0 {
            return true;
        }
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(bytes).filter(|&n| n <= self.limit)
            })
            .is_ok()
    }

    /// Counts one message refused or dropped because the budget was exhausted (once
    /// per message, however many reservations it tried).
    pub(crate) fn note_refusal(&self) {
        self.refusals.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn release(&self, bytes: usize) {
        if bytes != 0 {
            self.used.fetch_sub(bytes, Ordering::AcqRel);
        }
    }

    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    pub(crate) fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }
}
