//! Overload guards: rate limits with bans, a circuit breaker, a dedup window.
//!
//! Three reusable pieces a server puts between the network and its work. Each is
//! bounded, counts every refusal, validates its settings with an error naming the
//! setting, and reads time through an injectable [`Clock`] so tests never sleep.
//!
//! - [`PeerGuard`] (in [`rate`]) — the fail2ban model: per-connection and per-peer
//!   token buckets (governor's GCRA), a strike per refused request, a ban for
//!   `strikes` strikes within `strike_window`. Banned peers are refused at accept
//!   ([`PeerGuard::admit_connection`]) and on every request ([`Decision::Banned`]).
//!   Its tables are capped (`max_peers`, `max_bans`), so a flood of distinct source
//!   addresses costs bounded memory; evictions are counted.
//! - [`CircuitBreaker`] (in [`breaker`]) — closed → open after `failure_threshold`
//!   consecutive failures or a `failure_rate` over the last `window` calls; open
//!   refuses at once ([`BreakerOpen`]); half-open lets `half_open_probes` probes
//!   through after `reset_timeout`. Permits are taken before the call and committed
//!   after ([`Permit::success`] / [`Permit::failure`]; a dropped permit is a failure).
//! - [`Dedup`] / [`SharedDedup`] (in [`dedup`]) — a window of recently seen message
//!   ids, bounded by `capacity` and `ttl`: [`Seen::First`] once, [`Seen::Duplicate`]
//!   while the window holds the id.
//!
//! | guard | limit (default) | at the limit | reported by |
//! |---|---|---|---|
//! | `PeerGuard` | `per_connection_rate`/`_burst` (1 000/s, 2 000) | request refused, strike | [`Decision::Limited`], [`RateStats::limited`] |
//! | | `per_peer_rate`/`_burst` (2 000/s, 4 000) | request refused, strike | [`Decision::Limited`], [`RateStats::limited`] |
//! | | `strikes` in `strike_window` (50 in 10 s) | peer banned for `ban_duration` (60 s) | [`Decision::Banned`], [`Banned`], [`RateStats::bans`] |
//! | | `max_peers` (65 536), `max_bans` (16 384) | least recently active peer (or soonest-ending ban) evicted | [`RateStats::evictions`] |
//! | `CircuitBreaker` | `failure_threshold` (5), `failure_rate` (0.5 of last 20, after 10) | breaker opens for `reset_timeout` (5 s) | [`BreakerOpen`], [`BreakerStats::opened`] |
//! | | `half_open_probes` (1) | other callers refused | [`BreakerOpen`], [`BreakerStats::rejected`] |
//! | `Dedup` | `capacity` (100 000) | oldest id evicted | [`DedupStats::evicted_full`] |
//! | | `ttl` (60 s) | id forgotten | [`DedupStats::expired`] |
//!
//! # Configuration files
//!
//! [`RateLimits`], [`BreakerConfig`] and [`DedupConfig`] deserialize with serde: every
//! field is optional (missing ones take their default), unknown fields are errors,
//! and durations are written `"250ms"`, `"10s"`, `"5m"`, `"1h"` or as a number of
//! seconds. Validate after loading:
//!
//! ```
//! use girder_net::guard::{BreakerConfig, RateLimits};
//!
//! let rate: RateLimits = toml::from_str(r#"
//!     per_peer_rate = 500
//!     per_peer_burst = 1000
//!     ban_duration = "5m"
//! "#)?;
//! rate.validate()?;
//! assert_eq!(rate.ban_duration, std::time::Duration::from_secs(300));
//! assert_eq!(rate.strikes, RateLimits::default().strikes);
//!
//! let breaker: BreakerConfig = toml::from_str("reset_timeout = 2.5")?;
//! assert_eq!(breaker.reset_timeout, std::time::Duration::from_millis(2500));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod breaker;
pub mod clock;
pub mod dedup;
mod duration_serde;
pub mod rate;

pub use breaker::{
    BreakerConfig, BreakerConfigError, BreakerError, BreakerOpen, BreakerState, BreakerStats, CircuitBreaker,
    Permit,
};
pub use clock::{Clock, ManualClock, MonotonicClock};
pub use dedup::{Dedup, DedupConfig, DedupConfigError, DedupStats, Seen, SharedDedup};
pub use rate::{Banned, ConnLimiter, Decision, PeerGuard, RateLimits, RateLimitsError, RateStats};

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        send_sync::<PeerGuard>();
        send_sync::<ConnLimiter>();
        send_sync::<RateLimits>();
        send_sync::<RateLimitsError>();
        send_sync::<Banned>();
        send_sync::<Decision>();
        send_sync::<RateStats>();
        send_sync::<CircuitBreaker>();
        send_sync::<Permit>();
        send_sync::<BreakerConfig>();
        send_sync::<BreakerConfigError>();
        send_sync::<BreakerOpen>();
        send_sync::<BreakerError<std::io::Error>>();
        send_sync::<BreakerStats>();
        send_sync::<Dedup<String>>();
        send_sync::<SharedDedup<String>>();
        send_sync::<DedupConfig>();
        send_sync::<DedupConfigError>();
        send_sync::<DedupStats>();
        send_sync::<ManualClock>();
        send_sync::<MonotonicClock>();
    }
}
