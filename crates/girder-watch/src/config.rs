//! What a watch is configured with: a serde struct, so a server can keep it in its
//! TOML file. Every option has a default; [`WatchConfig::validate`] names the option
//! that is wrong.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::WatchError;

/// Everything a [`Watch`](crate::Watch) is configured with.
///
/// | option | default | what it does |
/// |---|---|---|
/// | `bind` | `127.0.0.1:7979` | the HTTP endpoint's address (its own port; loopback by default) |
/// | `token` | none | if set, every route wants `Authorization: Bearer TOKEN` (or `?token=TOKEN`, for the page and its event stream) |
/// | `collect_every_ms` | 1,000 | how often the collector reads the node (each `/metrics` scrape also takes a reading) |
/// | `top_n` | 10 | processes exported as `girder_top_mailbox_len` and shown on the page |
/// | `max_named_series` | 256 | named processes exported per-process (the rest are counted in the node totals only) |
/// | `tree_max_nodes` | 2,000 | processes shown in `/api/tree` (the page shows 300) |
/// | `max_connections` | 128 | connections open at once; past it new ones wait in the kernel's backlog |
/// | `max_requests` | 64 | requests served at once; past it `503` |
/// | `max_streams` | 16 | live event streams (`/api/events`) at once; past it `503` |
/// | `rules` | see [`AlertRules`] | alert thresholds and durations |
/// | `watchdog` | see [`WatchdogConfig`] | slow-handler budget |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchConfig {
    /// The HTTP endpoint's address.
    pub bind: SocketAddr,
    /// Bearer token wanted on every route, if any.
    pub token: Option<String>,
    /// Collector period, in milliseconds.
    pub collect_every_ms: u64,
    /// Processes in the top-N views and metrics.
    pub top_n: usize,
    /// Named processes exported with per-process series.
    pub max_named_series: usize,
    /// Processes shown in `/api/tree`.
    pub tree_max_nodes: usize,
    /// Connections open at once.
    pub max_connections: usize,
    /// Requests served at once.
    pub max_requests: usize,
    /// Event streams served at once.
    pub max_streams: usize,
    /// Alert rules.
    pub rules: AlertRules,
    /// The slow-handler watchdog.
    pub watchdog: WatchdogConfig,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 7979)),
            token: None,
            collect_every_ms: 1000,
            top_n: 10,
            max_named_series: 256,
            tree_max_nodes: 2000,
            max_connections: 128,
            max_requests: 64,
            max_streams: 16,
            rules: AlertRules::default(),
            watchdog: WatchdogConfig::default(),
        }
    }
}

impl WatchConfig {
    /// Checks every option.
    ///
    /// # Errors
    ///
    /// [`WatchError::Config`] naming the first option out of range.
    pub fn validate(&self) -> Result<(), WatchError> {
        let positive = |option: &str, v: u64| {
            if v == 0 {
                Err(WatchError::config(option, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        positive("collect_every_ms", self.collect_every_ms)?;
        positive("top_n", self.top_n as u64)?;
        positive("tree_max_nodes", self.tree_max_nodes as u64)?;
        positive("max_connections", self.max_connections as u64)?;
        positive("max_requests", self.max_requests as u64)?;
        positive("max_streams", self.max_streams as u64)?;
        positive("watchdog.budget_ms", self.watchdog.budget_ms)?;
        positive("watchdog.scan_every_ms", self.watchdog.scan_every_ms)?;
        positive("watchdog.reports_kept", self.watchdog.reports_kept as u64)?;
        if let Some(t) = &self.token {
            if t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(WatchError::config(
                    "token",
                    "must be non-empty, without spaces or control characters (or unset for no token)",
                ));
            }
        }
        self.rules.validate()
    }

    pub(crate) fn collect_every(&self) -> Duration {
        Duration::from_millis(self.collect_every_ms)
    }
}

/// The slow-handler watchdog (the BEAM's `long_schedule` monitor): every
/// `scan_every_ms` it looks at which processes are inside a handler; a handler seen
/// running for `budget_ms` or more is reported once — a `tracing` warning naming the
/// process (pid, name, actor type), a `slow_handler` alert while it runs, and a count
/// in `girder_watchdog_reports_total`.
///
/// A report comes at most `budget_ms + 2 × scan_every_ms` after the handler started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchdogConfig {
    /// Whether the watchdog runs. Default `true`.
    pub enabled: bool,
    /// How long a handler may run before it is reported. Default 500 ms.
    pub budget_ms: u64,
    /// How often the watchdog looks. Default 100 ms.
    pub scan_every_ms: u64,
    /// Reports kept for `/alerts` and the page. Default 100.
    pub reports_kept: usize,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            enabled: true,
            budget_ms: 500,
            scan_every_ms: 100,
            reports_kept: 100,
        }
    }
}

/// A threshold that must hold for a duration before its alert fires.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// Whether the rule is checked. Default `true`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The value the measure must exceed (a fraction for usage rules, a count or a
    /// rate per second for the others).
    pub above: f64,
    /// How long, in seconds, it must stay above before the alert fires.
    pub for_secs: f64,
}

fn yes() -> bool {
    true
}

impl Threshold {
    /// An enabled threshold.
    pub const fn new(above: f64, for_secs: f64) -> Self {
        Threshold {
            enabled: true,
            above,
            for_secs,
        }
    }

    /// A disabled threshold (never fires).
    pub const fn disabled() -> Self {
        Threshold {
            enabled: false,
            above: 0.0,
            for_secs: 0.0,
        }
    }

    pub(crate) fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.for_secs)
    }
}

/// Alert rules: thresholds with durations. An alert fires (a `tracing` warning, an
/// entry in `/alerts` and on the page) once its measure has stayed above its
/// threshold for its duration, and resolves (a `tracing` info) when it falls back.
///
/// | rule | measure | default |
/// |---|---|---|
/// | `process_usage` | live processes / `max_processes` | above 0.8 for 10 s |
/// | `mailbox_budget` | queued mailbox bytes / node budget | above 0.8 for 10 s |
/// | `mailbox_fill` | one mailbox: max(messages / capacity, bytes / max_bytes) | above 0.9 for 5 s |
/// | `mailbox_len` | one mailbox: messages queued | above 1,000 for 10 s |
/// | `spawn_refusal_rate` | spawns refused per second (process limit, subtree budgets, `max_children`) | above 10/s for 5 s |
/// | `message_loss_rate` | messages rejected, dropped or expired per second | above 1,000/s for 10 s |
///
/// The watchdog adds `slow_handler` alerts (see [`WatchdogConfig`]). Per-process
/// rules track at most `max_subjects_per_rule` processes each (the rest are counted
/// as `untracked`), and the last `resolved_kept` resolved alerts are kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertRules {
    /// Live processes as a fraction of the process limit.
    pub process_usage: Threshold,
    /// Queued mailbox bytes as a fraction of the node budget.
    pub mailbox_budget: Threshold,
    /// One mailbox's fill, as a fraction of its bound (count or bytes).
    pub mailbox_fill: Threshold,
    /// One mailbox's queued messages.
    pub mailbox_len: Threshold,
    /// Spawn refusals per second.
    pub spawn_refusal_rate: Threshold,
    /// Messages rejected, dropped or expired per second.
    pub message_loss_rate: Threshold,
    /// Resolved alerts kept for `/alerts`.
    pub resolved_kept: usize,
    /// Processes tracked per per-process rule.
    pub max_subjects_per_rule: usize,
}

impl Default for AlertRules {
    fn default() -> Self {
        AlertRules {
            process_usage: Threshold::new(0.8, 10.0),
            mailbox_budget: Threshold::new(0.8, 10.0),
            mailbox_fill: Threshold::new(0.9, 5.0),
            mailbox_len: Threshold::new(1000.0, 10.0),
            spawn_refusal_rate: Threshold::new(10.0, 5.0),
            message_loss_rate: Threshold::new(1000.0, 10.0),
            resolved_kept: 50,
            max_subjects_per_rule: 64,
        }
    }
}

impl AlertRules {
    /// Checks every rule.
    ///
    /// # Errors
    ///
    /// [`WatchError::Config`] naming the first rule out of range.
    pub fn validate(&self) -> Result<(), WatchError> {
        let rules = [
            ("rules.process_usage", self.process_usage, true),
            ("rules.mailbox_budget", self.mailbox_budget, true),
            ("rules.mailbox_fill", self.mailbox_fill, true),
            ("rules.mailbox_len", self.mailbox_len, false),
            ("rules.spawn_refusal_rate", self.spawn_refusal_rate, false),
            ("rules.message_loss_rate", self.message_loss_rate, false),
        ];
        for (name, t, fraction) in rules {
            if !(t.above.is_finite() && t.above >= 0.0) {
                return Err(WatchError::config(
                    &format!("{name}.above"),
                    "must be a finite number >= 0",
                ));
            }
            if fraction && t.above > 1.0 {
                return Err(WatchError::config(
                    &format!("{name}.above"),
                    "is a fraction: must be between 0 and 1 (0.8 = 80 %)",
                ));
            }
            if !(t.for_secs.is_finite() && (0.0..=86_400.0).contains(&t.for_secs)) {
                return Err(WatchError::config(
                    &format!("{name}.for_secs"),
                    "must be between 0 and 86400 seconds",
                ));
            }
        }
        if self.max_subjects_per_rule == 0 {
            return Err(WatchError::config(
                "rules.max_subjects_per_rule",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip_through_json() {
        let c = WatchConfig::default();
        c.validate().unwrap();
        let back: WatchConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn a_partial_config_keeps_the_other_defaults() {
        let c: WatchConfig =
            serde_json::from_str(r#"{"rules": {"mailbox_fill": {"above": 0.5, "for_secs": 1}}}"#).unwrap();
        assert_eq!(c.rules.mailbox_fill, Threshold::new(0.5, 1.0));
        assert_eq!(c.rules.process_usage, AlertRules::default().process_usage);
        assert_eq!(c.bind, WatchConfig::default().bind);
    }

    #[test]
    fn invalid_options_are_named() {
        let mut c = WatchConfig::default();
        c.rules.process_usage.above = 80.0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("rules.process_usage.above"), "{e}");
        let mut c = WatchConfig::default();
        c.watchdog.budget_ms = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("watchdog.budget_ms"));
        let c = WatchConfig {
            token: Some("a b".into()),
            ..WatchConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("token"));
    }
}
