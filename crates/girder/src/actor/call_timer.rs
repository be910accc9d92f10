//! The deadline of a call, on a tokio timer kept for reuse.
//!
//! A call that has to wait arms a timer for its deadline. Creating a tokio timer and
//! dropping it again takes the time driver's lock twice (register, deregister): with
//! back-to-back calls answered in microseconds, more than half of a call's time (the
//! `bench/peers` request-reply workload went from 0.70 to 1.6 M calls/s without it).
//! So a call's timer is
//! not dropped when the call ends: it goes back to a small pool on the thread, still
//! registered, and the next call moves its deadline. Moving a registered deadline
//! later is one compare-and-swap in tokio (the driver re-files the entry when the old
//! instant comes); only an earlier deadline, or a timer that has fired, registers
//! again.
//!
//! Timers belong to the runtime that made them, so each thread's pool remembers which
//! runtime it holds timers of and is emptied when a call on another runtime asks.
//! A timer waiting in the pool keeps the waker of the last task that polled it (and so
//! that task's allocation, until the timer is next used: at most [`POOL_MAX`] per
//! thread), and may wake it once, spuriously (futures tolerate that), when its old
//! deadline passes.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::runtime::{Handle, Id};
use tokio::time::{Instant, Sleep};

/// Timers kept per thread, at most: the calls waiting at the same time on one thread
/// rarely exceed it, and each idle one costs its boxed `Sleep` (112 bytes).
const POOL_MAX: usize = 32;

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool {
            runtime: None,
            timers: Vec::new(),
        })
    };
}

struct Pool {
    /// The runtime whose timers `timers` holds.
    runtime: Option<Id>,
    timers: Vec<Pin<Box<Sleep>>>,
}

/// A call's timer: armed on first use, given back to the thread's pool when dropped.
pub(crate) struct CallTimer {
    deadline: Instant,
    armed: Option<(Pin<Box<Sleep>>, Id)>,
}

impl CallTimer {
    /// A timer for `deadline`, not armed yet: a call whose send finds room and whose
    /// answer is there at once never touches one.
    pub(crate) fn new(deadline: Instant) -> Self {
        CallTimer {
            deadline,
            armed: None,
        }
    }

    /// `Ready` once the deadline has passed; arms the timer on first use.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let (sleep, _) = self.armed.get_or_insert_with(|| arm(self.deadline));
        sleep.as_mut().poll(cx)
    }
}

impl Drop for CallTimer {
    fn drop(&mut self) {
        let Some((sleep, runtime)) = self.armed.take() else {
            return;
        };
        // `try_with`: the thread may be tearing its locals down.
        let _ = POOL.try_with(|pool| {
            if let Ok(mut pool) = pool.try_borrow_mut() {
                if pool.runtime == Some(runtime) && pool.timers.len() < POOL_MAX {
                    pool.timers.push(sleep);
                }
            }
        });
    }
}

/// A timer for `deadline` on the current runtime: one from the pool, moved to the new
/// deadline, or a new one.
fn arm(deadline: Instant) -> (Pin<Box<Sleep>>, Id) {
    let runtime = Handle::current().id();
    let reused = POOL
        .try_with(|pool| {
            let mut pool = pool.try_borrow_mut().ok()?;
            if pool.runtime != Some(runtime) {
                // Timers of another runtime (one that ran on this thread before):
                // never polled here again.
                pool.timers.clear();
                pool.runtime = Some(runtime);
            }
            pool.timers.pop()
        })
        .ok()
        .flatten();
    let sleep = match reused {
        Some(mut sleep) => {
            sleep.as_mut().reset(deadline);
            sleep
        }
        None => Box::pin(tokio::time::sleep_until(deadline)),
    };
    (sleep, runtime)
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::time::Duration;

    use super::*;

    fn pooled() -> usize {
        POOL.with(|p| p.borrow().timers.len())
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_goes_back_to_the_pool_and_serves_a_later_deadline() {
        let start = Instant::now();
        let mut first = CallTimer::new(start + Duration::from_secs(30));
        assert!(poll_fn(|cx| Poll::Ready(first.poll_expired(cx)))
            .await
            .is_pending());
        drop(first);
        assert_eq!(pooled(), 1);

        // Reused for a shorter deadline (registered again) and a later one (moved).
        for secs in [1, 60] {
            let mut t = CallTimer::new(Instant::now() + Duration::from_secs(secs));
            assert_eq!(pooled(), 1);
            poll_fn(|cx| t.poll_expired(cx)).await;
            assert_eq!(pooled(), 0, "the timer in use is out of the pool");
            assert!(Instant::now() >= start + Duration::from_secs(secs));
        }
        assert_eq!(pooled(), 1);
    }

    #[test]
    fn timers_of_a_runtime_that_is_gone_are_not_reused() {
        for _ in 0..2 {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            rt.block_on(async {
                // A timer left in the pool by the previous runtime would panic here
                // when polled ("runtime is shutting down").
                let mut t = CallTimer::new(Instant::now() + Duration::from_millis(5));
                poll_fn(|cx| t.poll_expired(cx)).await;
            });
            assert_eq!(pooled(), 1);
        }
    }
}
