//! Hooks for watchers (`girder-watch`): which handlers are running right now (for the
//! watchdog), and sampled timings of handlers and calls (for histograms).
//!
//! Cheap by design, since they sit on the hot path:
//!
//! - **Handler activity.** Each process keeps a handler counter that its own loop
//!   bumps when a handler starts (odd: running) and when it returns (even: idle) —
//!   one relaxed load and store each, no clock read, no read-modify-write. A watchdog
//!   that sees the same odd value in two scans knows the same handler has been
//!   running all along ([`Node::running_handlers`](crate::Node::running_handlers)).
//! - **Timings.** Only once an [`Observer`] is installed ([`set_observer`]), and only
//!   for a sample: 1 handler run in [`HANDLER_SAMPLE_EVERY`] per process, 1 call in
//!   [`CALL_SAMPLE_EVERY`] per thread. Without an observer the cost is one atomic load
//!   on the sampled runs.

use std::cell::Cell;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::Pid;

/// One handler run in this many is timed (per process) when an [`Observer`] is set.
pub const HANDLER_SAMPLE_EVERY: u64 = 64;

/// One call in this many is timed (per thread) when an [`Observer`] is set.
pub const CALL_SAMPLE_EVERY: u32 = 64;

/// Receives sampled timings. Installed once per program with [`set_observer`].
///
/// Called on the process's (or caller's) task: keep it short and never block.
pub trait Observer: Send + Sync + 'static {
    /// A sampled handler run of an actor of type `actor_type` took `took`.
    fn handler_finished(&self, actor_type: &'static str, took: Duration);
    /// A sampled [`Addr::call`](crate::Addr::call) returned after `took`; `ok` if it
    /// got its answer.
    fn call_finished(&self, took: Duration, ok: bool);
}

static OBSERVER: OnceLock<Arc<dyn Observer>> = OnceLock::new();

/// Installs the program's observer. Returns `false` (and keeps the first) if one is
/// already installed.
pub fn set_observer(observer: Arc<dyn Observer>) -> bool {
    OBSERVER.set(observer).is_ok()
}

#[inline]
pub(crate) fn observer() -> Option<&'static Arc<dyn Observer>> {
    OBSERVER.get()
}

/// Whether handler run number `run` (odd, from the process's handler counter) is
/// timed.
#[inline]
pub(crate) fn sample_handler(run: u64) -> bool {
    (run >> 1) % HANDLER_SAMPLE_EVERY == 0
}

thread_local! {
    static CALLS: Cell<u32> = const { Cell::new(0) };
}

/// Whether this call is timed: 1 in [`CALL_SAMPLE_EVERY`] on each thread.
#[inline]
pub(crate) fn sample_call() -> bool {
    CALLS.with(|c| {
        let n = c.get().wrapping_add(1);
        c.set(n);
        n % CALL_SAMPLE_EVERY == 0
    })
}

/// A process that was running a handler when
/// [`Node::running_handlers`](crate::Node::running_handlers) looked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunningHandler {
    /// The process.
    pub pid: Pid,
    /// Which run of its handlers: the same value in a later look means the same
    /// handler run has not returned in between.
    pub run: u64,
}
