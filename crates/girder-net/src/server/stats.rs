//! The server's counters: every refusal, timeout, disconnect and limit hit, counted
//! here (read by `INFO`, [`Server::stats`](super::Server::stats) and the drills) and
//! emitted through the `metrics` facade as it happens.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

macro_rules! counters {
    ($( $(#[$doc:meta])* $field:ident => $metric:literal $(, $k:literal = $v:literal)? ;)*) => {
        /// Monotonic counters, bumped as things happen.
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $( pub(crate) $field: AtomicU64, )*
        }

        /// A snapshot of the server's counters.
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
        pub struct CounterSnapshot {
            $( $(#[$doc])* pub $field: u64, )*
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> CounterSnapshot {
                CounterSnapshot { $( $field: self.$field.load(Relaxed), )* }
            }
        }

        /// Names the `metrics` counter of each field.
        #[allow(dead_code)]
        pub(crate) mod metric {
            $( #[allow(non_upper_case_globals)] pub(crate) const $field: &str = $metric; )*
        }

        #[allow(dead_code)]
        impl Counters {
            $(
                #[inline]
                pub(crate) fn $field(&self, n: u64) {
                    self.$field.fetch_add(n, Relaxed);
                    metrics::counter!($metric $(, $k => $v)?).increment(n);
                }
            )*
        }
    };
}

counters! {
    /// Connections accepted and started.
    accepted => "girder_net_connections_accepted_total";
    /// Refused at accept: `max_connections` reached.
    refused_max_clients => "girder_net_connections_refused_total", "cause" = "max_clients";
    /// Refused at accept: the peer's `max_connections_per_peer` reached.
    refused_per_peer => "girder_net_connections_refused_total", "cause" = "per_peer";
    /// Refused at accept: the peer is banned.
    refused_banned => "girder_net_connections_refused_total", "cause" = "banned";
    /// Refused at accept: the connection process could not be spawned (process
    /// limit, subtree budget, `MaxChildren`).
    refused_spawn => "girder_net_connections_refused_total", "cause" = "spawn";
    /// `accept` itself failed (e.g. out of file descriptors).
    accept_errors => "girder_net_accept_errors_total";
    /// Closed: no first byte within `handshake_timeout_ms`.
    timeouts_handshake => "girder_net_timeouts_total", "kind" = "handshake";
    /// Closed: a request not finished within `request_timeout_ms`.
    timeouts_request => "girder_net_timeouts_total", "kind" = "request";
    /// Closed: idle past `idle_timeout_ms`.
    timeouts_idle => "girder_net_timeouts_total", "kind" = "idle";
    /// Closed after a protocol error or an input limit.
    protocol_errors => "girder_net_protocol_errors_total";
    /// Commands run.
    commands => "girder_net_commands_total";
    /// Requests refused by a rate limit (answered with an error).
    rate_limited => "girder_net_rate_limited_total";
    /// Connections closed because their peer got banned.
    banned_closes => "girder_net_banned_closes_total";
    /// Subscribers disconnected at the hard output limit.
    output_hard_disconnects => "girder_net_output_disconnects_total", "limit" = "hard";
    /// Subscribers disconnected after the soft output limit's grace period.
    output_soft_disconnects => "girder_net_output_disconnects_total", "limit" = "soft";
    /// Connections disconnected because the node-wide output budget ran out while
    /// they held more than their fair share.
    output_budget_disconnects => "girder_net_output_disconnects_total", "limit" = "budget";
    /// Messages not delivered to a subscriber holding less than its fair share when
    /// the budget ran out (pub/sub is at-most-once, as in Redis; counted).
    output_budget_drops => "girder_net_output_budget_drops_total";
    /// `PUBLISH`es.
    published => "girder_net_published_total";
    /// Deliveries of published messages to subscribers.
    delivered => "girder_net_delivered_total";
    /// `GIRDER.PUBLISHONCE` ids seen again within the window (not published).
    dedup_duplicates => "girder_net_dedup_duplicates_total";
    /// Failed `AUTH`s.
    auth_failures => "girder_net_auth_failures_total";
    /// Commands refused at once by the open circuit breaker.
    breaker_rejections => "girder_net_breaker_rejections_total";
    /// Keyspace calls that failed (timeout, full, down): the breaker's failures.
    keyspace_failures => "girder_net_keyspace_failures_total";
    /// Writes refused for the keyspace limits (`-OOM`).
    oom_refusals => "girder_net_oom_refusals_total";
    /// Subscriptions refused for a pub/sub limit.
    subscription_refusals => "girder_net_subscription_refusals_total";
}

/// A snapshot of the whole server: counters plus current levels.
#[derive(Clone, Debug, Serialize)]
pub struct ServerStats {
    /// Counters since start.
    #[serde(flatten)]
    pub counters: CounterSnapshot,
    /// Connections open now.
    pub connections: u64,
    /// `max_connections`.
    pub max_connections: u64,
    /// Distinct peer addresses with open connections.
    pub peers: u64,
    /// Bytes of output pending in all connections together.
    pub output_bytes: u64,
    /// Highest `output_bytes` seen.
    pub output_bytes_peak: u64,
    /// The node-wide output budget.
    pub output_budget_bytes: u64,
    /// Channels with subscribers.
    pub channels: u64,
    /// Patterns with subscribers.
    pub patterns: u64,
    /// Subscriptions (channels and patterns) of all connections.
    pub subscriptions: u64,
    /// Keys stored.
    pub keys: u64,
    /// Bytes of keys and values stored (with a fixed overhead per key).
    pub keyspace_bytes: u64,
    /// The breaker's state: `closed`, `open` or `half-open`.
    pub breaker_state: String,
    /// Times the breaker opened.
    pub breaker_opened: u64,
    /// Peers banned now.
    pub bans_active: u64,
    /// Bans since start.
    pub bans: u64,
    /// Ids held in the dedup window.
    pub dedup_ids: u64,
    /// Seconds since start.
    pub uptime_s: u64,
}

/// Current levels kept as atomics (gauges), updated by their owners.
#[derive(Debug, Default)]
pub(crate) struct Levels {
    pub(crate) channels: AtomicU64,
    pub(crate) patterns: AtomicU64,
    pub(crate) subscriptions: AtomicU64,
    pub(crate) keys: AtomicU64,
    pub(crate) keyspace_bytes: AtomicU64,
    pub(crate) dedup_ids: AtomicU64,
}
