//! Overload guards: rate limits with bans, circuit breaker, dedup window.
