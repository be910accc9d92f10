//! `girder serve`'s configuration: every limit with a safe default, validated before
//! anything starts, loadable from TOML.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::resp::Limits;

/// Everything the server can be told. Every field has a default (`Default`), and a
/// TOML file only needs the settings it changes:
///
/// ```
/// use girder_net::server::ServerConfig;
///
/// let cfg = ServerConfig::from_toml_str(r#"
///     port = 7000
///     max_connections = 500
///     [output]
///     pubsub_hard_limit_bytes = 16777216
/// "#).unwrap();
/// assert_eq!(cfg.port, 7000);
/// assert_eq!(cfg.output.pubsub_hard_limit_bytes, 16 << 20);
/// assert_eq!(cfg.output.pubsub_soft_limit_bytes, 8 << 20); // default kept
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on (default `127.0.0.1`: nothing outside the machine can
    /// connect until you say so).
    pub bind: IpAddr,
    /// Port (default 6379, as Redis). 0 picks a free port.
    pub port: u16,
    /// When set, clients must `AUTH` with it before any other command.
    pub requirepass: Option<String>,
    /// Most connections at once (default 10,000, Redis's `maxclients`).
    pub max_connections: usize,
    /// Most connections at once from one peer address (default 1,000).
    pub max_connections_per_peer: usize,
    /// Acceptor processes sharing the listening socket (default 4).
    pub num_acceptors: usize,
    /// The kernel's queue of connections not yet accepted (default 1,024; Redis's
    /// `tcp-backlog`, capped by `net.core.somaxconn`). When connects outrun the
    /// acceptors past it, Linux drops them or falls back to SYN cookies.
    pub listen_backlog: u32,
    /// A new connection must send its first byte within this (default 10 s).
    pub handshake_timeout_ms: u64,
    /// A request, once its first byte arrived, must be complete within this
    /// (default 10 s): a client sending a byte at a time is cut off.
    pub request_timeout_ms: u64,
    /// A connection with no request for this long is closed (default 300 s).
    /// Subscribed connections are exempt, as in Redis.
    pub idle_timeout_ms: u64,
    /// Allow `DEBUG SLEEP` (default false; as Redis's `enable-debug-command`).
    pub enable_debug_command: bool,
    /// Request size limits.
    pub limits: Limits,
    /// Output buffer limits.
    pub output: OutputConfig,
    /// Pub/sub limits.
    pub pubsub: PubSubConfig,
    /// The key-value store's limits.
    pub keyspace: KeyspaceConfig,
    /// Rate limits and bans.
    pub rate: RateConfig,
    /// The circuit breaker in front of the key-value store.
    pub breaker: BreakerSettings,
    /// The dedup window of `GIRDER.PUBLISHONCE`.
    pub dedup: DedupSettings,
}

/// Output buffer limits: Redis's `client-output-buffer-limit`, plus a node-wide budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// A subscriber whose pending output reaches this is disconnected at once
    /// (default 32 MiB, as Redis's `pubsub` class).
    pub pubsub_hard_limit_bytes: usize,
    /// A subscriber whose pending output stays above this ...
    pub pubsub_soft_limit_bytes: usize,
    /// ... for longer than this is disconnected (default 8 MiB for 60 s).
    pub pubsub_soft_limit_ms: u64,
    /// A normal client's replies pile up to at most this before the server stops
    /// reading its requests until it reads its replies (default 64 KiB).
    pub normal_pause_bytes: usize,
    /// All connections' pending output together (default 256 MiB). A subscriber
    /// holding more than its fair share when the budget runs out is disconnected.
    pub budget_bytes: usize,
}

/// Pub/sub limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PubSubConfig {
    /// Distinct channels with subscribers, node-wide (default 100,000).
    pub max_channels: usize,
    /// Distinct patterns with subscribers, node-wide (default 1,000).
    pub max_patterns: usize,
    /// Channels plus patterns one connection may subscribe to (default 10,000).
    pub max_subscriptions_per_client: usize,
    /// Longest channel name or pattern (default 256 bytes).
    pub max_name_len: usize,
}

/// The key-value store's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyspaceConfig {
    /// Keyspace processes, keys spread by hash (default 4).
    pub shards: usize,
    /// Most keys in all (default 1,000,000); past it writes get `-OOM`.
    pub max_keys: usize,
    /// Most bytes of keys and values in all (default 256 MiB); past it `-OOM`.
    pub max_bytes: usize,
    /// How long a command waits for its shard (default 1 s); a timeout counts as a
    /// failure for the circuit breaker.
    pub timeout_ms: u64,
}

/// Rate limits per peer address and per connection, and bans (see
/// [`RateLimits`](crate::guard::RateLimits)).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateConfig {
    /// Requests per second one peer address may make (default 100,000).
    pub per_peer_per_second: u32,
    /// Burst above that rate (default 50,000).
    pub per_peer_burst: u32,
    /// Requests per second one connection may make (default 50,000).
    pub per_connection_per_second: u32,
    /// Burst above that rate (default 10,000).
    pub per_connection_burst: u32,
    /// Refused requests within `strike_window_ms` that get a peer banned (default 1,000).
    pub strikes: u32,
    /// The window strikes are counted in (default 10 s).
    pub strike_window_ms: u64,
    /// How long a ban lasts (default 60 s).
    pub ban_ms: u64,
    /// Most peer addresses tracked at once (default 100,000).
    pub max_peers: usize,
}

/// Circuit breaker settings (see [`BreakerConfig`](crate::guard::BreakerConfig)).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker (default 5).
    pub failure_threshold: u32,
    /// How long it stays open before a probe (default 5 s).
    pub reset_timeout_ms: u64,
    /// Probes let through while half-open (default 1).
    pub half_open_probes: u32,
}

/// The dedup window of `GIRDER.PUBLISHONCE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DedupSettings {
    /// Ids remembered at most (default 100,000).
    pub capacity: usize,
    /// How long an id is remembered (default 60 s).
    pub ttl_ms: u64,
    /// Longest id accepted (default 128 bytes).
    pub max_id_len: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 6379,
            requirepass: None,
            max_connections: 10_000,
            max_connections_per_peer: 1_000,
            num_acceptors: 4,
            listen_backlog: 1024,
            handshake_timeout_ms: 10_000,
            request_timeout_ms: 10_000,
            idle_timeout_ms: 300_000,
            enable_debug_command: false,
            limits: Limits::default(),
            output: OutputConfig::default(),
            pubsub: PubSubConfig::default(),
            keyspace: KeyspaceConfig::default(),
            rate: RateConfig::default(),
            breaker: BreakerSettings::default(),
            dedup: DedupSettings::default(),
        }
    }
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            pubsub_hard_limit_bytes: 32 << 20,
            pubsub_soft_limit_bytes: 8 << 20,
            pubsub_soft_limit_ms: 60_000,
            normal_pause_bytes: 64 << 10,
            budget_bytes: 256 << 20,
        }
    }
}

impl Default for PubSubConfig {
    fn default() -> Self {
        PubSubConfig {
            max_channels: 100_000,
            max_patterns: 1_000,
            max_subscriptions_per_client: 10_000,
            max_name_len: 256,
        }
    }
}

impl Default for KeyspaceConfig {
    fn default() -> Self {
        KeyspaceConfig {
            shards: 4,
            max_keys: 1_000_000,
            max_bytes: 256 << 20,
            timeout_ms: 1_000,
        }
    }
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            per_peer_per_second: 100_000,
            per_peer_burst: 50_000,
            per_connection_per_second: 50_000,
            per_connection_burst: 10_000,
            strikes: 1_000,
            strike_window_ms: 10_000,
            ban_ms: 60_000,
            max_peers: 100_000,
        }
    }
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failure_threshold: 5,
            reset_timeout_ms: 5_000,
            half_open_probes: 1,
        }
    }
}

impl Default for DedupSettings {
    fn default() -> Self {
        DedupSettings {
            capacity: 100_000,
            ttl_ms: 60_000,
            max_id_len: 128,
        }
    }
}

/// A configuration the server refuses; the message names the setting to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A setting out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The TOML file could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML did not parse or named an unknown setting.
    #[error("invalid configuration file: {0}")]
    Parse(String),
}

fn at_least(name: &str, v: u64, min: u64) -> Result<(), ConfigError> {
    if v < min {
        return Err(ConfigError::Invalid(format!(
            "{name} must be at least {min} (got {v})"
        )));
    }
    Ok(())
}

impl ServerConfig {
    /// Parses TOML (settings not given keep their defaults) and validates it.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Parse`] for bad TOML or an unknown setting (named);
    /// [`ConfigError::Invalid`] as [`validate`](Self::validate).
    pub fn from_toml_str(s: &str) -> Result<Self, ConfigError> {
        let cfg: ServerConfig = toml::from_str(s).map_err(|e| ConfigError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and parses a TOML file.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Read`], then as [`from_toml_str`](Self::from_toml_str).
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let s = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&s)
    }

    /// Checks every setting; the error names the first one out of range.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        at_least("max_connections", self.max_connections as u64, 1)?;
        at_least(
            "max_connections_per_peer",
            self.max_connections_per_peer as u64,
            1,
        )?;
        at_least("num_acceptors", self.num_acceptors as u64, 1)?;
        if self.num_acceptors > 1024 {
            return Err(ConfigError::Invalid(format!(
                "num_acceptors must be at most 1024 (got {})",
                self.num_acceptors
            )));
        }
        at_least("listen_backlog", self.listen_backlog.into(), 1)?;
        at_least("handshake_timeout_ms", self.handshake_timeout_ms, 1)?;
        at_least("request_timeout_ms", self.request_timeout_ms, 1)?;
        at_least("idle_timeout_ms", self.idle_timeout_ms, 1)?;
        if let Some(p) = &self.requirepass {
            if p.is_empty() {
                return Err(ConfigError::Invalid(
                    "requirepass must not be empty (leave it unset instead)".into(),
                ));
            }
        }
        self.limits.validate().map_err(ConfigError::Invalid)?;
        let o = &self.output;
        at_least(
            "output.pubsub_hard_limit_bytes",
            o.pubsub_hard_limit_bytes as u64,
            1,
        )?;
        at_least("output.normal_pause_bytes", o.normal_pause_bytes as u64, 1)?;
        at_least("output.pubsub_soft_limit_ms", o.pubsub_soft_limit_ms, 1)?;
        if o.pubsub_soft_limit_bytes > o.pubsub_hard_limit_bytes {
            return Err(ConfigError::Invalid(format!(
                "output.pubsub_soft_limit_bytes ({}) must not exceed output.pubsub_hard_limit_bytes ({})",
                o.pubsub_soft_limit_bytes, o.pubsub_hard_limit_bytes
            )));
        }
        if o.budget_bytes < o.pubsub_hard_limit_bytes.max(o.normal_pause_bytes) {
            return Err(ConfigError::Invalid(format!(
                "output.budget_bytes ({}) must be at least output.pubsub_hard_limit_bytes and output.normal_pause_bytes",
                o.budget_bytes
            )));
        }
        let p = &self.pubsub;
        at_least("pubsub.max_channels", p.max_channels as u64, 1)?;
        at_least("pubsub.max_patterns", p.max_patterns as u64, 1)?;
        at_least(
            "pubsub.max_subscriptions_per_client",
            p.max_subscriptions_per_client as u64,
            1,
        )?;
        at_least("pubsub.max_name_len", p.max_name_len as u64, 1)?;
        let k = &self.keyspace;
        at_least("keyspace.shards", k.shards as u64, 1)?;
        if k.shards > 256 {
            return Err(ConfigError::Invalid(format!(
                "keyspace.shards must be at most 256 (got {})",
                k.shards
            )));
        }
        at_least("keyspace.max_keys", k.max_keys as u64, k.shards as u64)?;
        at_least("keyspace.max_bytes", k.max_bytes as u64, 1024 * k.shards as u64)?;
        at_least("keyspace.timeout_ms", k.timeout_ms, 1)?;
        let r = &self.rate;
        at_least("rate.per_peer_per_second", r.per_peer_per_second.into(), 1)?;
        at_least("rate.per_peer_burst", r.per_peer_burst.into(), 1)?;
        at_least(
            "rate.per_connection_per_second",
            r.per_connection_per_second.into(),
            1,
        )?;
        at_least("rate.per_connection_burst", r.per_connection_burst.into(), 1)?;
        at_least("rate.strikes", r.strikes.into(), 1)?;
        at_least("rate.strike_window_ms", r.strike_window_ms, 1)?;
        at_least("rate.ban_ms", r.ban_ms, 1)?;
        at_least("rate.max_peers", r.max_peers as u64, 1)?;
        let b = &self.breaker;
        at_least("breaker.failure_threshold", b.failure_threshold.into(), 1)?;
        at_least("breaker.reset_timeout_ms", b.reset_timeout_ms, 1)?;
        at_least("breaker.half_open_probes", b.half_open_probes.into(), 1)?;
        let d = &self.dedup;
        at_least("dedup.capacity", d.capacity as u64, 1)?;
        at_least("dedup.ttl_ms", d.ttl_ms, 1)?;
        at_least("dedup.max_id_len", d.max_id_len as u64, 1)?;
        Ok(())
    }

    pub(crate) fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        ServerConfig::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_setting() {
        let e = ServerConfig {
            max_connections: 0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(
            e.to_string().contains("max_connections must be at least 1"),
            "{e}"
        );
        let mut c = ServerConfig::default();
        c.output.pubsub_soft_limit_bytes = c.output.pubsub_hard_limit_bytes + 1;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("output.pubsub_soft_limit_bytes"));
        let e = ServerConfig::from_toml_str("max_conections = 5").unwrap_err();
        assert!(e.to_string().contains("max_conections"), "{e}");
        let e = ServerConfig::from_toml_str("[keyspace]\nshards = 0").unwrap_err();
        assert!(e.to_string().contains("keyspace.shards"), "{e}");
    }
}
