//! Rate-limited `tracing` events for limit hits.
//!
//! Every limit hit is counted (in [`NodeStats`](crate::NodeStats) and
//! [`MailboxStats`](crate::MailboxStats)); it is also *logged*, but a flood of hits
//! must not become a flood of log lines. Each call site of [`limit_event!`] owns a
//! [`LogLimiter`]: at most [`LOG_BURST`] events per [`LOG_WINDOW`] are emitted, the
//! rest are counted, and the first event emitted after a window with suppressed ones
//! says how many: `"... (1,234 similar suppressed in the last 10 s)"`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The window of a [`LogLimiter`] made by [`limit_event!`](crate::limit_event).
pub const LOG_WINDOW: Duration = Duration::from_secs(10);

/// Events emitted per window and call site by [`limit_event!`](crate::limit_event).
pub const LOG_BURST: u64 = 5;

fn epoch_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Lets through at most `burst` events per `window` and counts the rest.
///
/// Lock-free; under races the burst may be exceeded by a few events, never by a
/// flood.
#[derive(Debug)]
pub struct LogLimiter {
    window_ms: u64,
    burst: u64,
    /// Start of the current window (ms since the first limiter use), plus one (0 =
    /// never used).
    window_start: AtomicU64,
    in_window: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimiter {
    /// A limiter letting `burst` events through per `window`.
    pub const fn new(window: Duration, burst: u64) -> Self {
        LogLimiter {
            window_ms: window.as_millis() as u64,
            burst,
            window_start: AtomicU64::new(0),
            in_window: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` if this event may be emitted, `n` being the events suppressed since
    /// the last one emitted; `None` if it is suppressed (and counted).
    pub fn admit(&self) -> Option<u64> {
        let now = epoch_ms() + 1;
        let start = self.window_start.load(Ordering::Relaxed);
        let expired = start == 0 || now.saturating_sub(start) >= self.window_ms;
        if expired
            && self
                .window_start
                .compare_exchange(start, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.in_window.store(0, Ordering::Relaxed);
        }
        if self.in_window.fetch_add(1, Ordering::Relaxed) < self.burst {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// The window, in whole seconds (for messages).
    pub fn window_secs(&self) -> u64 {
        self.window_ms / 1000
    }
}

/// Formats a count with thousands separators: `1,234`.
pub fn fmt_count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[doc(hidden)]
pub use tracing as __tracing;

/// Emits a `tracing` event for a limit hit, rate-limited per call site (at most
/// [`LOG_BURST`] per [`LOG_WINDOW`]); the first event after suppressed ones says how
/// many were suppressed. Fields go after the message:
///
/// ```
/// girder::limit_event!(warn, "spawn refused: process limit", limit = 10);
/// ```
///
/// Costs one cached check when no subscriber wants events of that level (the
/// limiter, with its clock read, runs only for enabled levels).
#[macro_export]
macro_rules! limit_event {
    ($level:ident, $msg:literal $(, $($fields:tt)+)?) => {{
        static LIMITER: $crate::observe::LogLimiter =
            $crate::observe::LogLimiter::new($crate::observe::LOG_WINDOW, $crate::observe::LOG_BURST);
        if !$crate::observe::__tracing::enabled!($crate::__limit_event_level!($level)) {
        } else if let Some(suppressed) = LIMITER.admit() {
            if suppressed == 0 {
                $crate::observe::__tracing::$level!($($($fields)+ ,)? $msg);
            } else {
                $crate::observe::__tracing::$level!(
                    $($($fields)+ ,)? suppressed,
                    "{} ({} similar suppressed in the last {} s)",
                    $msg,
                    $crate::observe::fmt_count(suppressed),
                    LIMITER.window_secs()
                );
            }
        }
    }};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __limit_event_level {
    (trace) => {
        $crate::observe::__tracing::Level::TRACE
    };
    (debug) => {
        $crate::observe::__tracing::Level::DEBUG
    };
    (info) => {
        $crate::observe::__tracing::Level::INFO
    };
    (warn) => {
        $crate::observe::__tracing::Level::WARN
    };
    (error) => {
        $crate::observe::__tracing::Level::ERROR
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_passes_then_suppressed_are_counted_and_reported() {
        let l = LogLimiter::new(Duration::from_millis(50), 3);
        assert_eq!(l.admit(), Some(0));
        assert_eq!(l.admit(), Some(0));
        assert_eq!(l.admit(), Some(0));
        for _ in 0..10 {
            assert_eq!(l.admit(), None);
        }
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            l.admit(),
            Some(10),
            "the next window's first event reports the suppressed"
        );
        assert_eq!(l.admit(), Some(0));
    }

    #[test]
    fn counts_print_with_thousands_separators() {
        assert_eq!(fmt_count(0), "0");
        assert_eq!(fmt_count(999), "999");
        assert_eq!(fmt_count(1234), "1,234");
        assert_eq!(fmt_count(1_234_567), "1,234,567");
    }
}
