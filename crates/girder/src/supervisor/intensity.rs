use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// At most `max_restarts` restarts within `period`; one more and the supervisor gives
/// up: it stops its children and exits with `Shutdown`, escalating to its own
/// supervisor (OTP's `intensity` and `period`).
///
/// The default is Elixir's: 3 restarts in 5 seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartIntensity {
    /// Restarts allowed within `period`.
    pub max_restarts: u32,
    /// The sliding window.
    pub period: Duration,
}

impl Default for RestartIntensity {
    fn default() -> Self {
        RestartIntensity {
            max_restarts: 3,
            period: Duration::from_secs(5),
        }
    }
}

/// Delays between restarts of a crashing child: `initial`, doubling at each
/// consecutive restart, capped at `max`; the streak resets once the child has run
/// for `reset_after` without exiting. Keeps a crash loop from burning the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first restart of a streak.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Quiet time after which the streak starts again from `initial`.
    pub reset_after: Duration,
}

impl Backoff {
    /// Exponential backoff from `initial` up to `max`, reset after `max * 2` of quiet.
    pub fn exponential(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            reset_after: max * 2,
        }
    }

    /// The delay before restart number `streak` (0-based) of a streak.
    pub fn delay(&self, streak: u32) -> Duration {
        let factor = 1u32.checked_shl(streak.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// The restart history of one supervisor, on the monotonic clock.
#[derive(Debug, Default)]
pub(crate) struct RestartLog {
    times: VecDeque<Instant>,
}

impl RestartLog {
    /// Records a restart at `now`; `false` if it exceeds the intensity (escalate).
    pub(crate) fn record(&mut self, intensity: RestartIntensity, now: Instant) -> bool {
        while self
            .times
            .front()
            .is_some_and(|&t| now.duration_since(t) > intensity.period)
        {
            self.times.pop_front();
        }
        self.times.push_back(now);
        self.times.len() <= intensity.max_restarts as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourth_restart_within_the_period_exceeds_three_in_five_seconds() {
        let mut log = RestartLog::default();
        let i = RestartIntensity::default();
        let t0 = Instant::now();
        assert!(log.record(i, t0));
        assert!(log.record(i, t0 + Duration::from_secs(1)));
        assert!(log.record(i, t0 + Duration::from_secs(2)));
        assert!(!log.record(i, t0 + Duration::from_secs(3)));
    }

    #[test]
    fn restarts_older_than_the_period_are_forgotten() {
        let mut log = RestartLog::default();
        let i = RestartIntensity::default();
        let t0 = Instant::now();
        for k in 0..10 {
            assert!(log.record(i, t0 + Duration::from_secs(2 * k)), "restart {k}");
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff::exponential(Duration::from_millis(10), Duration::from_millis(100));
        assert_eq!(b.delay(0), Duration::from_millis(10));
        assert_eq!(b.delay(1), Duration::from_millis(20));
        assert_eq!(b.delay(3), Duration::from_millis(80));
        assert_eq!(b.delay(4), Duration::from_millis(100));
        assert_eq!(b.delay(40), Duration::from_millis(100));
    }
}
