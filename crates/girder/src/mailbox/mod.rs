//! Bounded mailboxes.
//!
//! Every girder process has a mailbox with three lanes:
//!
//! - **system**: exit signals from linked processes (when trapping exits) and monitor
//!   `Down` notifications. Bounded by construction: a process holds at most one signal
//!   per link or monitor, and links and monitors are themselves bounded per process.
//! - **priority**: messages sent with `try_send_priority` / `send_priority`, handled
//!   before the normal lane, so control messages are not stuck behind a flood.
//! - **normal**: everything else.
//!
//! # Admission
//!
//! A message is admitted only if its lane has room by count, the mailbox has room by
//! bytes (the message's [`Weight`]), and the node-wide mailbox byte budget has room.
//! All three are checked, and the message queued, in one critical section: racing
//! senders can never overshoot a bound, and each message is counted exactly once as
//! accepted, rejected or dropped. Every send path (`try_send`, `send`, `call`, timers,
//! priority sends) goes through the same admission — a bound one API bypasses is no
//! bound.
//!
//! # Taking messages out
//!
//! The process takes its next item in this order: signals, the priority lane, the
//! normal lane. From a normal lane of 16 slots or more it also takes messages ahead
//! in batches (an eighth of the capacity, at most 31), so it does not visit the
//! mailbox's lock once per message. Messages taken ahead keep counting against the
//! lane's count and byte bounds and the node budget until the process next visits
//! the lock (at the latest for the last message of the batch): no bound is ever
//! overshot, and a sender may find the lane full up to a batch early (the message the
//! process takes out frees its slot at once, so a sender waiting for room is woken
//! at every visit). Signals and priority messages still
//! overtake messages taken ahead, and `stats().len` counts them as queued until
//! they are handed to the handler.
//!
//! # When full
//!
//! The receiver's [`Overflow`] policy decides: `Reject` hands the message back to the
//! sender (`SendError::Full(msg)`), `Backpressure` makes `send().await` wait for room
//! (fairly, in arrival order), `DropNewest` and `DropOldest` discard and count, `Kill`
//! ends the process with `ExitReason::MailboxOverflow`. When the node budget is
//! exhausted, `Reject`, `Backpressure` and `Kill` return `SendError::NodeBudget(msg)`
//! (a flood elsewhere must not kill this process) and the drop policies count a drop.
//!
//! # Accounting
//!
//! For every mailbox, at any moment:
//! `accepted = handled + expired + dropped_from_queue + queued`, and every send attempt
//! is exactly one of accepted, rejected or dropped on arrival. [`MailboxStats`] reports
//! the sums, high-water marks, and the time a sample of messages waited in the mailbox.
//!
//! # Memory
//!
//! Lane storage is allocated when messages arrive and released when a lane that grew
//! drains, so an idle process carries no queue capacity and a once-flooded process
//! does not stay fat.

mod budget;
mod config;
pub(crate) mod queue;
mod weight;

pub(crate) use budget::Budget;
pub use config::{Mailbox, Overflow};
pub use weight::Weight;

/// A snapshot of one mailbox's state and counters.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MailboxStats {
    /// Messages queued in the normal lane, including those the process has taken
    /// ahead (see *Taking messages out*) and not yet handed to its handler.
    pub len: usize,
    /// Messages queued in the priority lane.
    pub priority_len: usize,
    /// Signals queued in the system lane.
    pub signals: usize,
    /// Bytes (weights) queued in both data lanes. Messages taken ahead count until
    /// the process next visits its mailbox, even once handed to the handler: this is
    /// what the byte bound and the node budget hold.
    pub bytes: usize,
    /// Highest number of queued messages (both data lanes) seen.
    pub len_hwm: usize,
    /// Highest number of queued bytes seen.
    pub bytes_hwm: usize,
    /// Senders currently waiting for room.
    pub waiting_senders: usize,
    /// Messages admitted into the mailbox.
    pub accepted: u64,
    /// Messages handed to the handler.
    pub handled: u64,
    /// Messages refused to their sender (full, too large, node budget, kill).
    pub rejected: u64,
    /// Messages discarded: dropped on arrival or evicted under a drop policy, and
    /// those still queued when the process exited.
    pub dropped: u64,
    /// Calls taken out after their caller's deadline and dropped unhandled.
    pub expired: u64,
    /// Explicit exit signals dropped because the system lane's cap for them was
    /// reached.
    pub signals_dropped: u64,
    /// Mean time a sampled message waited in the mailbox (1 in 64 is sampled).
    pub wait_mean_ns: u64,
    /// Longest time a sampled message waited in the mailbox.
    pub wait_max_ns: u64,
    /// The normal lane's bound.
    pub capacity: usize,
    /// The byte bound.
    pub max_bytes: usize,
    /// The overflow policy.
    pub overflow: Overflow,
}
