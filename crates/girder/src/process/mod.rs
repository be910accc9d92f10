//! Processes: identities, the process table, exit reasons, links and monitors.
//!
//! A girder process is a tokio task with a [`Pid`], a bounded mailbox, a set of links,
//! the monitors it holds and the monitors held on it, a trap-exit flag and a parent.
//! The table admits a process only below the node's limit, checked before anything is
//! allocated (the private `table` module).
//!
//! # Exit signals (OTP's rules)
//!
//! When a process exits with reason `R`, every linked process `L` receives an exit
//! signal:
//!
//! - if `L` traps exits, the signal becomes a call to
//!   [`Actor::handle_exit`](crate::Actor::handle_exit) — except that an exit from `L`'s
//!   parent ends `L` with reason `R` after `terminate`, as a `gen_server` does;
//! - otherwise, if `R` is [`ExitReason::Normal`], the signal is ignored;
//! - otherwise `L` exits at once with the same reason `R` (without `terminate`).
//!
//! `kill` is untrappable: the target exits with [`ExitReason::Killed`], and its links
//! receive `Killed` as an ordinary (trappable) reason. Monitors are one-way: the
//! monitoring process receives a [`Down`] with the reason, and a monitor on a process
//! that is already gone fires at once with [`ExitReason::NoProc`].
//!
//! A signal stays pending in the system lane only while the link or monitor it
//! belongs to exists: `unlink` and `demonitor` withdraw any signal not yet handled, and
//! each process's links and monitors are bounded, so the system lane is bounded by
//! construction.

mod exit;
mod pid;
pub(crate) mod table;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

pub(crate) use exit::Signal;
pub use exit::{Down, ExitReason, MonitorRef};
pub use pid::{NodeId, Pid};

use crate::mailbox::MailboxStats;

/// What a process is doing, as reported in snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProcessState {
    /// Running `init`.
    Starting,
    /// Waiting for a message.
    Waiting,
    /// Running a handler.
    Running,
    /// Running `terminate` or being cleaned up.
    Exiting,
}

impl ProcessState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => ProcessState::Starting,
            1 => ProcessState::Waiting,
            2 => ProcessState::Running,
            _ => ProcessState::Exiting,
        }
    }

    pub(crate) fn as_u8(self) -> u8 {
        match self {
            ProcessState::Starting => 0,
            ProcessState::Waiting => 1,
            ProcessState::Running => 2,
            ProcessState::Exiting => 3,
        }
    }
}

/// Links and monitors of one process; allocated on first use.
#[derive(Default)]
pub(crate) struct Relations {
    pub(crate) links: HashSet<Pid>,
    /// Monitors this process holds: reference → monitored process.
    pub(crate) monitors: HashMap<MonitorRef, Pid>,
    /// Monitors held on this process: reference → who is told.
    pub(crate) monitored_by: HashMap<MonitorRef, Watcher>,
}

/// Who a monitor tells when the monitored process exits.
pub(crate) enum Watcher {
    /// A process, through its system lane.
    Process(Pid),
    /// Code outside any process, through [`Node::watch`](crate::Node::watch).
    External(tokio::sync::oneshot::Sender<ExitReason>),
}

/// The mutable, rarely touched part of a process: guarded by one lock that is never
/// held while user code runs or while another process's lock is taken.
#[derive(Default)]
pub(crate) struct CoreState {
    pub(crate) exiting: bool,
    pub(crate) name: Option<Arc<str>>,
    /// An untrappable end requested from outside (kill, non-trapped exit signal,
    /// overflow kill): the first one wins.
    pub(crate) kill: Option<ExitReason>,
    pub(crate) abort: Option<tokio::task::AbortHandle>,
    pub(crate) rel: Option<Box<Relations>>,
}

impl CoreState {
    pub(crate) fn rel(&mut self) -> &mut Relations {
        self.rel.get_or_insert_with(Default::default)
    }

    pub(crate) fn links_len(&self) -> usize {
        self.rel.as_ref().map_or(0, |r| r.links.len())
    }

    pub(crate) fn has_link(&self, pid: Pid) -> bool {
        self.rel.as_ref().is_some_and(|r| r.links.contains(&pid))
    }

    pub(crate) fn monitors_len(&self) -> usize {
        self.rel.as_ref().map_or(0, |r| r.monitors.len())
    }
}

/// A process budget for a subtree (girder goes beyond OTP here): every process spawned
/// anywhere below the owner counts against `limit`, and against every budget above.
#[derive(Debug)]
pub(crate) struct SubtreeBudget {
    pub(crate) label: Arc<str>,
    pub(crate) limit: usize,
    pub(crate) used: std::sync::atomic::AtomicUsize,
    pub(crate) parent: Option<Arc<SubtreeBudget>>,
}

impl SubtreeBudget {
    /// Takes one unit from every budget of the chain, or none: on refusal, the label
    /// and limit of the budget that refused.
    pub(crate) fn reserve_chain(chain: &Option<Arc<SubtreeBudget>>) -> Result<(), (Arc<str>, usize)> {
        let mut cur = chain.as_deref();
        while let Some(b) = cur {
            let ok = b
                .used
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                    (u < b.limit).then_some(u + 1)
                })
                .is_ok();
            if !ok {
                // Give back what was taken below the refusing budget.
                let mut undo = chain.as_deref();
                while let Some(u) = undo {
                    if std::ptr::eq(u, b) {
                        break;
                    }
                    u.used.fetch_sub(1, Ordering::AcqRel);
                    undo = u.parent.as_deref();
                }
                return Err((b.label.clone(), b.limit));
            }
            cur = b.parent.as_deref();
        }
        Ok(())
    }

    /// Gives one unit back to every budget of the chain.
    pub(crate) fn release_chain(chain: &Option<Arc<SubtreeBudget>>) {
        let mut cur = chain.as_deref();
        while let Some(b) = cur {
            b.used.fetch_sub(1, Ordering::AcqRel);
            cur = b.parent.as_deref();
        }
    }
}

/// The untyped part of every process.
pub(crate) struct ProcessCore {
    pub(crate) pid: Pid,
    pub(crate) parent: Option<Pid>,
    /// The subtree budgets this process counts against (nearest first).
    pub(crate) counted_in: Option<Arc<SubtreeBudget>>,
    /// The budgets this process's children count against: its own, if it owns one,
    /// chained to `counted_in`.
    pub(crate) children_budget: Option<Arc<SubtreeBudget>>,
    pub(crate) actor_type: &'static str,
    pub(crate) trap_exit: AtomicBool,
    status: AtomicU8,
    /// Watchdog hook (girder-watch): bumped by the process's own loop when a handler
    /// starts (odd: running) and returns (even). Single writer, so a relaxed load and
    /// store, no read-modify-write. See `observe::hooks`.
    handler_seq: AtomicU64,
    /// Watchdog hook: this process's handlers wait by design (an acceptor awaiting
    /// connections); `running_handlers` leaves it out.
    pub(crate) watchdog_exempt: AtomicBool,
    /// Set by stage behaviours: their demand and buffer counters.
    pub(crate) stage: std::sync::OnceLock<Arc<crate::stage::StageCounters>>,
    pub(crate) state: parking_lot::Mutex<CoreState>,
}

impl ProcessCore {
    pub(crate) fn new(
        pid: Pid,
        parent: Option<Pid>,
        actor_type: &'static str,
        counted_in: Option<Arc<SubtreeBudget>>,
        children_budget: Option<Arc<SubtreeBudget>>,
    ) -> Self {
        ProcessCore {
            pid,
            parent,
            counted_in,
            children_budget,
            actor_type,
            trap_exit: AtomicBool::new(false),
            stage: std::sync::OnceLock::new(),
            status: AtomicU8::new(ProcessState::Starting.as_u8()),
            handler_seq: AtomicU64::new(0),
            watchdog_exempt: AtomicBool::new(false),
            state: parking_lot::Mutex::new(CoreState::default()),
        }
    }

    pub(crate) fn status(&self) -> ProcessState {
        ProcessState::from_u8(self.status.load(Ordering::Relaxed))
    }

    pub(crate) fn set_status(&self, s: ProcessState) {
        self.status.store(s.as_u8(), Ordering::Relaxed);
    }

    /// Watchdog hook: a handler starts. Returns its run number (odd). Called only by
    /// the process's own loop.
    #[inline]
    pub(crate) fn handler_started(&self) -> u64 {
        let run = self.handler_seq.load(Ordering::Relaxed) + 1;
        self.handler_seq.store(run, Ordering::Relaxed);
        run
    }

    /// Watchdog hook: the handler started last has returned.
    #[inline]
    pub(crate) fn handler_finished(&self) {
        let run = self.handler_seq.load(Ordering::Relaxed) + 1;
        self.handler_seq.store(run, Ordering::Relaxed);
    }

    /// Watchdog hook: the current handler run, if a handler is running (and the
    /// process is not exempt).
    pub(crate) fn running_handler(&self) -> Option<u64> {
        if self.watchdog_exempt.load(Ordering::Relaxed) {
            return None;
        }
        let run = self.handler_seq.load(Ordering::Relaxed);
        (run % 2 == 1).then_some(run)
    }

    pub(crate) fn traps_exits(&self) -> bool {
        self.trap_exit.load(Ordering::Acquire)
    }

    /// Ends the process with `reason` at its next await point, skipping `terminate`
    /// (kills and untrapped exit signals). The first request wins.
    pub(crate) fn kill(&self, reason: ExitReason) {
        let abort = {
            let mut st = self.state.lock();
            if st.exiting || st.kill.is_some() {
                return;
            }
            st.kill = Some(reason);
            st.abort.clone()
        };
        // Not started yet: the spawner aborts once it stores the handle.
        if let Some(a) = abort {
            a.abort();
        }
    }
}

/// The type-erased view of a process that the table, links and monitors use.
pub(crate) trait ProcessHandle: Send + Sync + 'static {
    fn core(&self) -> &ProcessCore;
    fn push_signal(&self, sig: Signal, explicit: bool) -> bool;
    fn mailbox_stats(&self) -> MailboxStats;
    fn close_mailbox(&self);
    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync>;
}
