//! Observation: snapshots of the node and of every process, cheap enough to take while
//! under attack.
//!
//! [`Node::stats`](crate::Node::stats) reads a handful of atomics plus one pass over
//! the live processes' mailbox counters; [`Node::processes`](crate::Node::processes)
//! returns one [`ProcessInfo`] per live process. Neither blocks senders for longer
//! than one mailbox's critical section.
//!
//! For watchers (`girder-watch`): [`hooks`] reports running handlers and sampled
//! timings; [`limit_event!`](crate::limit_event) logs limit hits, rate-limited.

pub mod hooks;
mod limit_log;

use std::sync::Arc;

pub use hooks::{set_observer, Observer, RunningHandler};
#[doc(hidden)]
pub use limit_log::__tracing;
pub use limit_log::{fmt_count, LogLimiter, LOG_BURST, LOG_WINDOW};

use crate::{MailboxStats, Pid, ProcessState};

/// A snapshot of one process.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ProcessInfo {
    /// The process.
    pub pid: Pid,
    /// Its registered name.
    pub name: Option<Arc<str>>,
    /// The Rust type of its actor.
    pub actor_type: &'static str,
    /// The process that spawned it.
    pub parent: Option<Pid>,
    /// What it is doing.
    pub state: ProcessState,
    /// Whether it traps exits.
    pub trap_exit: bool,
    /// Number of links.
    pub links: usize,
    /// Number of monitors it holds.
    pub monitors: usize,
    /// Its mailbox.
    pub mailbox: MailboxStats,
    /// For stages: demand, buffer and event counters.
    pub stage: Option<crate::stage::StageStats>,
}

/// A snapshot of the node's limits and counters.
///
/// Message counters are node-wide totals: live processes' counters plus those of every
/// process that has exited.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// Live processes.
    pub processes: usize,
    /// `max_processes`.
    pub process_limit: usize,
    /// Slots of the limit reserved for supervisors and system processes.
    pub reserved_processes: usize,
    /// Highest number of live processes seen.
    pub processes_hwm: usize,
    /// Processes spawned since the node started.
    pub spawned: u64,
    /// Spawns refused at the process limit.
    pub spawn_refusals: u64,
    /// Processes that have exited.
    pub exited: u64,
    /// Exits with reason `Normal`.
    pub exits_normal: u64,
    /// Exits with reason `Shutdown`.
    pub exits_shutdown: u64,
    /// Exits with reason `Killed`.
    pub exits_killed: u64,
    /// Exits with reason `Panic`.
    pub panics: u64,
    /// Exits with reason `MailboxOverflow` (policy `Kill`).
    pub overflow_kills: u64,
    /// Exits with any other reason.
    pub exits_other: u64,
    /// Bytes queued in all mailboxes.
    pub mailbox_bytes: usize,
    /// The node-wide mailbox byte budget.
    pub mailbox_budget_bytes: usize,
    /// Messages refused or dropped because the node budget was exhausted.
    pub budget_refusals: u64,
    /// Messages admitted into mailboxes.
    pub accepted: u64,
    /// Messages handled.
    pub handled: u64,
    /// Messages refused to their senders.
    pub rejected: u64,
    /// Messages dropped (policies, exits).
    pub dropped: u64,
    /// Calls dropped unhandled past their deadline.
    pub expired: u64,
    /// Registered names.
    pub names: usize,
    /// `max_names`.
    pub name_limit: usize,
    /// Names refused because the registry was full.
    pub name_refusals: u64,
    /// Timers refused at the per-process limit.
    pub timer_refusals: u64,
    /// Links and monitors refused at the per-process limits.
    pub link_refusals: u64,
    /// Children restarted by supervisors.
    pub restarts: u64,
    /// Supervisors that exceeded their restart intensity and gave up (escalated).
    pub escalations: u64,
    /// Children refused at a supervisor's `max_children`.
    pub max_children_refusals: u64,
    /// Spawns refused because a subtree's `max_descendants` budget was exhausted.
    pub subtree_budget_refusals: u64,
}
