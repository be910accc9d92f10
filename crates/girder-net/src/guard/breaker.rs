//! A circuit breaker: stop calling a downstream that keeps failing, probe it after a
//! pause, resume when it answers.
//!
//! The classic three states (Nygard, *Release It!*):
//!
//! - **Closed** — calls pass. Outcomes are recorded. The breaker opens when
//!   `failure_threshold` calls in a row fail, or when at least `min_calls` of the last
//!   `window` calls were recorded and the share of failures among them reaches
//!   `failure_rate`.
//! - **Open** — every call is refused at once with [`BreakerOpen`], without touching
//!   the downstream, until `reset_timeout` has passed since the breaker opened.
//! - **Half-open** — after the timeout, the next `half_open_probes` callers get
//!   through as probes; everyone else is still refused. The first probe to succeed
//!   closes the breaker (counters reset); a probe that fails opens it again with a
//!   fresh timeout.
//!
//! Permits are "take room first, then commit": [`CircuitBreaker::try_acquire`] hands
//! out a [`Permit`], and the caller reports the outcome with [`Permit::success`] or
//! [`Permit::failure`]. **A permit dropped without an outcome counts as a failure**
//! (a caller that panicked, or was cancelled by a timeout, did not get an answer).
//! Outcomes of permits issued before the last state change are counted in the stats
//! but do not move the state: a slow call from the closed period cannot close a
//! breaker that has since opened.
//!
//! State changes are logged at `info` through `tracing`.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::clock::{Clock, MonotonicClock};

/// Default [`BreakerConfig::failure_threshold`]: 5 consecutive failures.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 5;
/// Default [`BreakerConfig::failure_rate`]: half the recent calls failing.
pub const DEFAULT_FAILURE_RATE: f64 = 0.5;
/// Default [`BreakerConfig::window`]: the last 20 calls.
pub const DEFAULT_WINDOW: u32 = 20;
/// Default [`BreakerConfig::min_calls`]: 10 calls before the rate is judged.
pub const DEFAULT_MIN_CALLS: u32 = 10;
/// Default [`BreakerConfig::reset_timeout`]: 5 seconds.
pub const DEFAULT_RESET_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`BreakerConfig::half_open_probes`]: 1 probe.
pub const DEFAULT_HALF_OPEN_PROBES: u32 = 1;
/// Largest accepted [`BreakerConfig::window`] (the window costs one byte per call).
pub const MAX_WINDOW: u32 = 65_536;

/// Settings of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failures that open a closed breaker (default 5).
    pub failure_threshold: u32,
    /// Share of failures among the last `window` calls that opens a closed breaker,
    /// in `(0, 1]` (default 0.5). Judged only once `min_calls` calls are recorded.
    pub failure_rate: f64,
    /// How many recent calls the failure rate looks at (default 20, at most
    /// [`MAX_WINDOW`]).
    pub window: u32,
    /// Calls recorded before the failure rate is judged, in `1..=window` (default 10).
    pub min_calls: u32,
    /// How long an open breaker refuses calls before letting probes through
    /// (default 5 s).
    #[serde(with = "super::duration_serde")]
    pub reset_timeout: Duration,
    /// Probes let through while half-open (default 1).
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
            failure_rate: DEFAULT_FAILURE_RATE,
            window: DEFAULT_WINDOW,
            min_calls: DEFAULT_MIN_CALLS,
            reset_timeout: DEFAULT_RESET_TIMEOUT,
            half_open_probes: DEFAULT_HALF_OPEN_PROBES,
        }
    }
}

impl BreakerConfig {
    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`BreakerConfigError`] naming the first setting out of range.
    pub fn validate(&self) -> Result<(), BreakerConfigError> {
        use BreakerConfigError as E;
        if self.failure_threshold == 0 {
            return Err(E::ZeroFailureThreshold);
        }
        if !(self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            return Err(E::FailureRate(self.failure_rate));
        }
        if self.window == 0 || self.window > MAX_WINDOW {
            return Err(E::Window(self.window));
        }
        if self.min_calls == 0 || self.min_calls > self.window {
            return Err(E::MinCalls {
                min_calls: self.min_calls,
                window: self.window,
            });
        }
        if self.reset_timeout.is_zero() {
            return Err(E::ZeroResetTimeout);
        }
        if self.half_open_probes == 0 {
            return Err(E::ZeroHalfOpenProbes);
        }
        Ok(())
    }
}

/// A [`BreakerConfig`] setting out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BreakerConfigError {
    /// `failure_threshold` was 0.
    #[error("breaker.failure_threshold must be > 0 (consecutive failures that open the breaker)")]
    ZeroFailureThreshold,
    /// `failure_rate` was outside `(0, 1]`.
    #[error("breaker.failure_rate must be > 0 and <= 1 (got {0})")]
    FailureRate(f64),
    /// `window` was 0 or above [`MAX_WINDOW`].
    #[error("breaker.window must be between 1 and {MAX_WINDOW} (got {0})")]
    Window(u32),
    /// `min_calls` was 0 or above `window`.
    #[error("breaker.min_calls must be between 1 and breaker.window = {window} (got {min_calls})")]
    MinCalls {
        /// The setting given.
        min_calls: u32,
        /// The window it must fit in.
        window: u32,
    },
    /// `reset_timeout` was 0.
    #[error("breaker.reset_timeout must be > 0 (how long an open breaker refuses calls)")]
    ZeroResetTimeout,
    /// `half_open_probes` was 0.
    #[error("breaker.half_open_probes must be > 0 (or the breaker could never close again)")]
    ZeroHalfOpenProbes,
}

/// The state of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    /// Calls pass; outcomes are recorded.
    Closed,
    /// Calls are refused until the reset timeout passes.
    Open,
    /// A limited number of probes pass; the rest are refused.
    HalfOpen,
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        })
    }
}

/// A call refused because the breaker is open, or half-open with all probes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker is open: downstream failing, retry in {retry_after:?}")]
pub struct BreakerOpen {
    /// When it is worth trying again: the rest of the reset timeout when open; the
    /// full reset timeout when half-open with every probe out (a failing probe
    /// reopens the breaker for that long).
    pub retry_after: Duration,
}

/// The error of [`CircuitBreaker::call`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BreakerError<E> {
    /// The breaker refused the call; the downstream was not called.
    #[error(transparent)]
    Open(#[from] BreakerOpen),
    /// The downstream was called and failed (recorded as a failure).
    #[error("{0}")]
    Inner(E),
}

/// A snapshot of a breaker's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BreakerStats {
    /// Permits granted (calls let through, probes included).
    pub calls: u64,
    /// Outcomes reported as success.
    pub successes: u64,
    /// Outcomes reported as failure (dropped permits included).
    pub failures: u64,
    /// Calls refused while open or half-open.
    pub rejected: u64,
    /// Transitions to open.
    pub opened: u64,
    /// Transitions from half-open to closed.
    pub closed: u64,
    /// Transitions from open to half-open.
    pub half_opened: u64,
    /// The state now.
    pub state: BreakerState,
}

/// A circuit breaker guarding one downstream (see the [module docs](self)).
///
/// Cheap to clone: clones share the state.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use girder_net::guard::{BreakerConfig, BreakerState, CircuitBreaker, ManualClock};
///
/// let clock = ManualClock::new();
/// let config = BreakerConfig {
///     failure_threshold: 2,
///     reset_timeout: Duration::from_secs(5),
///     ..BreakerConfig::default()
/// };
/// let breaker = CircuitBreaker::with_clock("db", config, clock.clone())?;
///
/// // Two failures in a row open it.
/// breaker.try_acquire().unwrap().failure();
/// breaker.try_acquire().unwrap().failure();
/// assert_eq!(breaker.state(), BreakerState::Open);
/// let refused = breaker.try_acquire().unwrap_err();
/// assert_eq!(refused.retry_after, Duration::from_secs(5));
///
/// // After the reset timeout one probe gets through; its success closes the breaker.
/// clock.advance(Duration::from_secs(5));
/// let probe = breaker.try_acquire().unwrap();
/// assert_eq!(breaker.state(), BreakerState::HalfOpen);
/// assert!(breaker.try_acquire().is_err()); // only one probe at a time
/// probe.success();
/// assert_eq!(breaker.state(), BreakerState::Closed);
///
/// // Or wrap a future: an `Err` is recorded as a failure.
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let answer = breaker.call(async { Ok::<_, std::io::Error>(42) }).await;
/// assert_eq!(answer.unwrap(), 42);
/// # });
/// # Ok::<(), girder_net::guard::BreakerConfigError>(())
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    shared: Arc<Shared>,
}

struct Shared {
    name: Arc<str>,
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

struct Inner {
    state: State,
    /// Bumped on every state change; outcomes of older permits do not move the state.
    generation: u64,
    consecutive_failures: u32,
    /// Outcomes of the last `window` calls while closed, `true` = failure.
    recent: VecDeque<bool>,
    recent_failures: u32,
    calls: u64,
    successes: u64,
    failures: u64,
    rejected: u64,
    opened: u64,
    closed: u64,
    half_opened: u64,
}

#[derive(Clone, Copy)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { probes_out: u32 },
}

impl CircuitBreaker {
    /// A breaker on the real clock. `name` labels its log events.
    ///
    /// # Errors
    ///
    /// [`BreakerConfigError`] if a setting is out of range.
    pub fn new(name: impl Into<Arc<str>>, config: BreakerConfig) -> Result<Self, BreakerConfigError> {
        Self::with_clock(name, config, MonotonicClock)
    }

    /// A breaker reading time from `clock` (a [`ManualClock`](super::ManualClock) in
    /// tests).
    ///
    /// # Errors
    ///
    /// [`BreakerConfigError`] if a setting is out of range.
    pub fn with_clock(
        name: impl Into<Arc<str>>,
        config: BreakerConfig,
        clock: impl Clock,
    ) -> Result<Self, BreakerConfigError> {
        config.validate()?;
        Ok(Self {
            shared: Arc::new(Shared {
                name: name.into(),
                config,
                clock: Arc::new(clock),
                inner: Mutex::new(Inner {
                    state: State::Closed,
                    generation: 0,
                    consecutive_failures: 0,
                    recent: VecDeque::with_capacity(config.window as usize),
                    recent_failures: 0,
                    calls: 0,
                    successes: 0,
                    failures: 0,
                    rejected: 0,
                    opened: 0,
                    closed: 0,
                    half_opened: 0,
                }),
            }),
        })
    }

    /// Asks to make a call.
    ///
    /// Closed: always granted. Open: refused until the reset timeout has passed, then
    /// the breaker turns half-open. Half-open: granted as a probe while fewer than
    /// `half_open_probes` are out, refused otherwise.
    ///
    /// # Errors
    ///
    /// [`BreakerOpen`] with a `retry_after` hint when refused (counted in
    /// [`BreakerStats::rejected`]).
    pub fn try_acquire(&self) -> Result<Permit, BreakerOpen> {
        let shared = &self.shared;
        let now = shared.clock.now();
        let mut guard = shared.inner.lock();
        let inner = &mut *guard;
        if let State::Open { until } = inner.state {
            if now < until {
                inner.rejected += 1;
                return Err(BreakerOpen {
                    retry_after: until - now,
                });
            }
            inner.half_opened += 1;
            shared.transition(inner, State::HalfOpen { probes_out: 0 });
        }
        let probe = match &mut inner.state {
            State::Closed => false,
            State::HalfOpen { probes_out } if *probes_out < shared.config.half_open_probes => {
                *probes_out += 1;
                true
            }
            State::HalfOpen { .. } | State::Open { .. } => {
                inner.rejected += 1;
                return Err(BreakerOpen {
                    retry_after: shared.config.reset_timeout,
                });
            }
        };
        inner.calls += 1;
        Ok(Permit {
            breaker: Some(Arc::clone(shared)),
            generation: inner.generation,
            probe,
        })
    }

    /// Runs `fut` under the breaker: refused at once when open, otherwise awaited and
    /// its `Ok`/`Err` recorded as success/failure.
    ///
    /// # Errors
    ///
    /// [`BreakerError::Open`] when refused (`fut` is dropped unpolled);
    /// [`BreakerError::Inner`] with the downstream's error.
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future mid-call drops the permit, which counts as a
    /// failure (a timeout around `call` is a failure of the downstream).
    pub async fn call<F, T, E>(&self, fut: F) -> Result<T, BreakerError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let permit = self.try_acquire()?;
        match fut.await {
            Ok(value) => {
                permit.success();
                Ok(value)
            }
            Err(err) => {
                permit.failure();
                Err(BreakerError::Inner(err))
            }
        }
    }

    /// The state now. An open breaker whose reset timeout has passed reports
    /// [`BreakerState::Open`] until the next [`try_acquire`](Self::try_acquire) turns
    /// it half-open.
    pub fn state(&self) -> BreakerState {
        self.shared.inner.lock().state.public()
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The settings.
    pub fn config(&self) -> BreakerConfig {
        self.shared.config
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> BreakerStats {
        let inner = self.shared.inner.lock();
        BreakerStats {
            calls: inner.calls,
            successes: inner.successes,
            failures: inner.failures,
            rejected: inner.rejected,
            opened: inner.opened,
            closed: inner.closed,
            half_opened: inner.half_opened,
            state: inner.state.public(),
        }
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.shared.name)
            .field("config", &self.shared.config)
            .field("state", &self.state())
            .finish()
    }
}

impl State {
    fn public(self) -> BreakerState {
        match self {
            Self::Closed => BreakerState::Closed,
            Self::Open { .. } => BreakerState::Open,
            Self::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

impl Shared {
    fn transition(&self, inner: &mut Inner, to: State) {
        let from = inner.state.public();
        inner.state = to;
        inner.generation += 1;
        inner.consecutive_failures = 0;
        inner.recent.clear();
        inner.recent_failures = 0;
        tracing::info!(
            breaker = %self.name,
            from = %from,
            to = %to.public(),
            "circuit breaker state change"
        );
    }

    fn open(&self, inner: &mut Inner, now: Instant) {
        inner.opened += 1;
        let until = now + self.config.reset_timeout;
        self.transition(inner, State::Open { until });
    }

    fn record(&self, generation: u64, probe: bool, failed: bool) {
        let now = self.clock.now();
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        if failed {
            inner.failures += 1;
        } else {
            inner.successes += 1;
        }
        if generation != inner.generation {
            return;
        }
        match inner.state {
            State::Closed => {
                if failed {
                    inner.consecutive_failures += 1;
                } else {
                    inner.consecutive_failures = 0;
                }
                inner.recent.push_back(failed);
                inner.recent_failures += u32::from(failed);
                if inner.recent.len() > self.config.window as usize {
                    let oldest = inner.recent.pop_front().unwrap_or(false);
                    inner.recent_failures -= u32::from(oldest);
                }
                let recorded = inner.recent.len() as u32;
                let rate_tripped = recorded >= self.config.min_calls
                    && f64::from(inner.recent_failures) >= self.config.failure_rate * f64::from(recorded);
                if failed && (inner.consecutive_failures >= self.config.failure_threshold || rate_tripped) {
                    self.open(inner, now);
                }
            }
            State::HalfOpen { .. } if probe => {
                if failed {
                    self.open(inner, now);
                } else {
                    inner.closed += 1;
                    self.transition(inner, State::Closed);
                }
            }
            // Open with a current-generation permit cannot happen (opening bumps the
            // generation); a non-probe permit in half-open neither.
            State::HalfOpen { .. } | State::Open { .. } => {}
        }
    }
}

/// Leave to make one call through a [`CircuitBreaker`]. Report how it went with
/// [`success`](Self::success) or [`failure`](Self::failure); **dropping a permit
/// without reporting counts as a failure.**
#[must_use = "report the outcome with success() or failure(); dropping counts as a failure"]
pub struct Permit {
    breaker: Option<Arc<Shared>>,
    generation: u64,
    probe: bool,
}

impl Permit {
    /// The call succeeded.
    pub fn success(mut self) {
        self.report(false);
    }

    /// The call failed.
    pub fn failure(mut self) {
        self.report(true);
    }

    /// Whether this permit is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    fn report(&mut self, failed: bool) {
        if let Some(shared) = self.breaker.take() {
            shared.record(self.generation, self.probe, failed);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.report(true);
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("generation", &self.generation)
            .field("probe", &self.probe)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::ManualClock;
    use proptest::prelude::*;

    fn breaker(config: BreakerConfig) -> (CircuitBreaker, ManualClock) {
        let clock = ManualClock::new();
        (
            CircuitBreaker::with_clock("test", config, clock.clone()).unwrap(),
            clock,
        )
    }

    fn threshold(n: u32) -> BreakerConfig {
        BreakerConfig {
            failure_threshold: n,
            // Keep the rate rule out of the way.
            failure_rate: 1.0,
            window: 100,
            min_calls: 100,
            ..BreakerConfig::default()
        }
    }

    fn fail(b: &CircuitBreaker) {
        b.try_acquire().unwrap().failure();
    }

    fn succeed(b: &CircuitBreaker) {
        b.try_acquire().unwrap().success();
    }

    #[test]
    fn closed_opens_after_consecutive_failures() {
        let (b, _) = breaker(threshold(3));
        fail(&b);
        fail(&b);
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.stats().opened, 1);
    }

    #[test]
    fn success_resets_the_consecutive_count() {
        let (b, _) = breaker(threshold(3));
        fail(&b);
        fail(&b);
        succeed(&b);
        fail(&b);
        fail(&b);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn closed_opens_on_failure_rate_after_min_calls() {
        let config = BreakerConfig {
            failure_threshold: 100,
            failure_rate: 0.5,
            window: 10,
            min_calls: 4,
            ..BreakerConfig::default()
        };
        let (b, _) = breaker(config);
        // Alternate: never two failures in a row, but half of them fail.
        fail(&b);
        succeed(&b);
        fail(&b);
        assert_eq!(b.state(), BreakerState::Closed, "below min_calls");
        succeed(&b);
        assert_eq!(b.state(), BreakerState::Closed, "a success does not trip");
        fail(&b);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn failure_rate_only_sees_the_window() {
        let config = BreakerConfig {
            failure_threshold: 100,
            failure_rate: 0.5,
            window: 4,
            min_calls: 4,
            ..BreakerConfig::default()
        };
        let (b, _) = breaker(config);
        fail(&b);
        for _ in 0..4 {
            succeed(&b);
        }
        // Window now holds 4 successes; one failure is 1/4 < 0.5.
        fail(&b);
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn open_rejects_until_reset_timeout() {
        let (b, clock) = breaker(threshold(1));
        fail(&b);
        clock.advance(Duration::from_millis(4_000));
        let err = b.try_acquire().unwrap_err();
        assert_eq!(err.retry_after, Duration::from_millis(1_000));
        assert!(err.to_string().contains("retry in"));
        assert_eq!(b.stats().rejected, 1);
        clock.advance(Duration::from_millis(1_000));
        let probe = b.try_acquire().unwrap();
        assert!(probe.is_probe());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        probe.success();
    }

    #[test]
    fn half_open_probe_success_closes() {
        let (b, clock) = breaker(threshold(1));
        fail(&b);
        clock.advance(DEFAULT_RESET_TIMEOUT);
        succeed(&b);
        assert_eq!(b.state(), BreakerState::Closed);
        let s = b.stats();
        assert_eq!((s.opened, s.half_opened, s.closed), (1, 1, 1));
    }

    #[test]
    fn half_open_probe_failure_reopens_with_fresh_timeout() {
        let (b, clock) = breaker(threshold(1));
        fail(&b);
        clock.advance(Duration::from_secs(7));
        fail(&b);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.try_acquire().unwrap_err().retry_after, DEFAULT_RESET_TIMEOUT);
        assert_eq!(b.stats().opened, 2);
    }

    #[test]
    fn half_open_lets_only_the_configured_probes_through() {
        let (b, clock) = breaker(BreakerConfig {
            half_open_probes: 2,
            ..threshold(1)
        });
        fail(&b);
        clock.advance(DEFAULT_RESET_TIMEOUT);
        let p1 = b.try_acquire().unwrap();
        let p2 = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_err());
        p2.success();
        assert_eq!(b.state(), BreakerState::Closed);
        // p1's outcome belongs to the half-open period: it no longer moves the state.
        p1.failure();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.stats().failures, 2);
    }

    #[test]
    fn dropped_permit_counts_as_failure() {
        let (b, _) = breaker(threshold(2));
        drop(b.try_acquire().unwrap());
        drop(b.try_acquire().unwrap());
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.stats().failures, 2);
    }

    #[test]
    fn stale_outcome_from_closed_period_does_not_move_state() {
        let (b, clock) = breaker(threshold(1));
        let slow = b.try_acquire().unwrap();
        fail(&b);
        assert_eq!(b.state(), BreakerState::Open);
        clock.advance(DEFAULT_RESET_TIMEOUT);
        let probe = b.try_acquire().unwrap();
        // The slow call from before the breaker opened succeeds: not a probe result.
        slow.success();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        probe.failure();
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test]
    async fn call_records_outcomes_and_refuses_when_open() {
        let (b, _) = breaker(threshold(1));
        assert_eq!(b.call(async { Ok::<_, &str>(1) }).await, Ok(1));
        assert_eq!(
            b.call(async { Err::<u8, _>("down") }).await,
            Err(BreakerError::Inner("down"))
        );
        let refused = b.call(async { Ok::<u8, &str>(2) }).await.unwrap_err();
        assert!(matches!(refused, BreakerError::Open(_)));
        assert!(refused.to_string().contains("circuit breaker is open"));
        let s = b.stats();
        assert_eq!((s.calls, s.successes, s.failures, s.rejected), (2, 1, 1, 1));
    }

    #[test]
    fn config_errors_name_the_setting() {
        let cases: [(BreakerConfig, &str); 6] = [
            (
                BreakerConfig {
                    failure_threshold: 0,
                    ..Default::default()
                },
                "breaker.failure_threshold",
            ),
            (
                BreakerConfig {
                    failure_rate: 1.5,
                    ..Default::default()
                },
                "breaker.failure_rate",
            ),
            (
                BreakerConfig {
                    window: 0,
                    ..Default::default()
                },
                "breaker.window",
            ),
            (
                BreakerConfig {
                    min_calls: 21,
                    ..Default::default()
                },
                "breaker.min_calls",
            ),
            (
                BreakerConfig {
                    reset_timeout: Duration::ZERO,
                    ..Default::default()
                },
                "breaker.reset_timeout",
            ),
            (
                BreakerConfig {
                    half_open_probes: 0,
                    ..Default::default()
                },
                "breaker.half_open_probes",
            ),
        ];
        for (config, name) in cases {
            let err = CircuitBreaker::new("x", config).unwrap_err().to_string();
            assert!(err.contains(name), "{err} should name {name}");
        }
        assert!(BreakerConfig {
            failure_rate: f64::NAN,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(BreakerConfig::default().validate().is_ok());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Acquire,
        Succeed(usize),
        Fail(usize),
        Drop(usize),
        Advance(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::Acquire),
            2 => any::<usize>().prop_map(Op::Succeed),
            2 => any::<usize>().prop_map(Op::Fail),
            1 => any::<usize>().prop_map(Op::Drop),
            2 => (0u16..3_000).prop_map(Op::Advance),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// While half-open, no more than `half_open_probes` are let through; while open
        /// and before the reset timeout, everything is refused.
        #[test]
        fn half_open_probe_bound_and_open_rejects_before_timeout(
            threshold in 1u32..4,
            probes in 1u32..4,
            reset_ms in 1u64..5_000,
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            let reset = Duration::from_millis(reset_ms);
            let config = BreakerConfig {
                failure_threshold: threshold,
                failure_rate: 0.6,
                window: 8,
                min_calls: 4,
                reset_timeout: reset,
                half_open_probes: probes,
            };
            let (b, clock) = breaker(config);
            let mut permits: Vec<Permit> = Vec::new();
            let mut opened_at: Option<Duration> = None;
            let mut last_opened = 0;
            let mut last_half_opened = 0;
            let mut probes_granted = 0u32;
            for op in ops {
                match op {
                    Op::Acquire => {
                        let now = clock.elapsed();
                        let result = b.try_acquire();
                        if let Some(at) = opened_at {
                            if now < at + reset {
                                prop_assert!(result.is_err(), "granted while open before timeout");
                            }
                        }
                        let half_opened = b.stats().half_opened;
                        if half_opened != last_half_opened {
                            last_half_opened = half_opened;
                            probes_granted = 0;
                        }
                        if let Ok(permit) = result {
                            if b.state() == BreakerState::HalfOpen {
                                prop_assert!(permit.is_probe());
                                probes_granted += 1;
                                prop_assert!(probes_granted <= probes);
                            }
                            permits.push(permit);
                        }
                    }
                    Op::Succeed(i) | Op::Fail(i) | Op::Drop(i) if !permits.is_empty() => {
                        let permit = permits.swap_remove(i % permits.len());
                        match op {
                            Op::Succeed(_) => permit.success(),
                            Op::Fail(_) => permit.failure(),
                            _ => drop(permit),
                        }
                    }
                    Op::Advance(ms) => clock.advance(Duration::from_millis(ms.into())),
                    _ => {}
                }
                let opened = b.stats().opened;
                if opened != last_opened {
                    last_opened = opened;
                    opened_at = Some(clock.elapsed());
                }
            }
        }
    }
}
