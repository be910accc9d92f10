//! Pieces shared by the flooding drills: a heavy message, a slow actor, and the
//! flooder's own tally of what its sends returned.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use girder::{Actor, Ctx, Flow, SendError, Weight};
use serde_json::{json, Value};

/// A message carrying a heap payload, weighed in full (inline size + heap capacity),
/// so that floods of it meet the byte bounds.
pub struct Blob(pub Vec<u8>);

impl Blob {
    /// A blob with `len` payload bytes.
    pub fn new(len: usize) -> Self {
        Blob(vec![0xA5; len])
    }
}

impl Weight for Blob {
    fn weight(&self) -> usize {
        std::mem::size_of::<Self>() + self.0.capacity()
    }
}

/// Switch shared by a drill's slow actors: once set, they stop sleeping so their
/// mailboxes drain quickly and their counters settle for the accounting.
#[derive(Clone, Default)]
pub struct DrainSwitch(Arc<AtomicBool>);

impl DrainSwitch {
    /// Makes the slow actors fast.
    pub fn drain(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the actors should skip their cost.
    pub fn draining(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// An actor that takes `cost` (a timer sleep) per message until drained, and counts
/// what its handler saw.
pub struct Slow {
    /// Time spent per message.
    pub cost: Duration,
    /// The drill's drain switch.
    pub drain: DrainSwitch,
    /// Messages its handler ran for (across restarts if shared).
    pub handled: Arc<AtomicU64>,
}

impl Actor for Slow {
    type Msg = Blob;

    async fn handle(&mut self, msg: Blob, _ctx: &mut Ctx<Self>) -> Flow {
        std::hint::black_box(&msg.0);
        self.handled.fetch_add(1, Ordering::Relaxed);
        if !self.drain.draining() {
            tokio::time::sleep(self.cost).await;
        }
        Flow::Continue
    }
}

/// What a flooder's sends returned, counted by the flooder itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendTally {
    /// Sends attempted.
    pub attempts: u64,
    /// `Ok`: queued, or dropped under a drop policy.
    pub ok: u64,
    /// `Err(Full)`.
    pub full: u64,
    /// `Err(Closed)`: the process had exited (not counted by its mailbox).
    pub closed: u64,
    /// `Err(NodeBudget)`.
    pub node_budget: u64,
    /// `Err(TooLarge)`.
    pub too_large: u64,
}

impl SendTally {
    /// Counts one send's result.
    pub fn note<T>(&mut self, r: &Result<(), SendError<T>>) {
        self.attempts += 1;
        match r {
            Ok(()) => self.ok += 1,
            Err(SendError::Full(_)) => self.full += 1,
            Err(SendError::Closed(_)) => self.closed += 1,
            Err(SendError::NodeBudget(_)) => self.node_budget += 1,
            Err(SendError::TooLarge(_)) => self.too_large += 1,
        }
    }

    /// Adds another tally.
    pub fn add(&mut self, o: &SendTally) {
        self.attempts += o.attempts;
        self.ok += o.ok;
        self.full += o.full;
        self.closed += o.closed;
        self.node_budget += o.node_budget;
        self.too_large += o.too_large;
    }

    /// As JSON.
    pub fn to_json(self) -> Value {
        json!({
            "attempts": self.attempts,
            "ok": self.ok,
            "full": self.full,
            "closed": self.closed,
            "node_budget": self.node_budget,
            "too_large": self.too_large,
        })
    }
}

/// The mailbox counters an accounting check adds up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counted {
    /// Handed to the handler.
    pub handled: u64,
    /// Refused to the sender.
    pub rejected: u64,
    /// Dropped (on arrival, evicted, or left queued at exit).
    pub dropped: u64,
    /// Calls dropped past their deadline.
    pub expired: u64,
    /// Still queued.
    pub queued: u64,
}

impl Counted {
    /// From one mailbox snapshot.
    pub fn of(m: &girder::MailboxStats) -> Self {
        Counted {
            handled: m.handled,
            rejected: m.rejected,
            dropped: m.dropped,
            expired: m.expired,
            queued: (m.len + m.priority_len) as u64,
        }
    }

    /// Every message this mailbox accounts for.
    pub fn total(&self) -> u64 {
        self.handled + self.rejected + self.dropped + self.expired + self.queued
    }

    /// Adds another mailbox's counters.
    pub fn add(&mut self, o: &Counted) {
        self.handled += o.handled;
        self.rejected += o.rejected;
        self.dropped += o.dropped;
        self.expired += o.expired;
        self.queued += o.queued;
    }

    /// The counters as `handled+rejected+dropped+expired+queued`.
    pub fn sum_text(&self) -> String {
        format!(
            "{}h+{}r+{}d+{}e+{}q",
            self.handled, self.rejected, self.dropped, self.expired, self.queued
        )
    }

    /// As JSON.
    pub fn to_json(self) -> Value {
        json!({
            "handled": self.handled,
            "rejected": self.rejected,
            "dropped": self.dropped,
            "expired": self.expired,
            "queued": self.queued,
        })
    }
}
