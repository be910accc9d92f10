use std::sync::Arc;
use std::time::Duration;

use super::{Node, NodeInner};
use crate::{BuildError, Mailbox};

/// The node's limits, as validated by [`NodeBuilder::build`].
#[derive(Clone, Debug)]
pub(crate) struct NodeConfig {
    pub(crate) max_processes: usize,
    pub(crate) reserved_processes: usize,
    pub(crate) mailbox_budget_bytes: usize,
    pub(crate) default_mailbox: Mailbox,
    pub(crate) max_names: usize,
    pub(crate) max_links_per_process: usize,
    pub(crate) max_monitors_per_process: usize,
    pub(crate) max_timers_per_process: usize,
    pub(crate) shutdown_timeout: Duration,
}

/// Largest process limit girder accepts (the BEAM's own maximum, 2^27).
pub const MAX_PROCESSES_CEILING: usize = 1 << 27;

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            max_processes: NodeBuilder::DEFAULT_MAX_PROCESSES,
            reserved_processes: NodeBuilder::DEFAULT_RESERVED_PROCESSES,
            mailbox_budget_bytes: NodeBuilder::DEFAULT_MAILBOX_BUDGET_BYTES,
            default_mailbox: Mailbox::default(),
            max_names: NodeBuilder::DEFAULT_MAX_NAMES,
            max_links_per_process: NodeBuilder::DEFAULT_MAX_LINKS,
            max_monitors_per_process: NodeBuilder::DEFAULT_MAX_MONITORS,
            max_timers_per_process: NodeBuilder::DEFAULT_MAX_TIMERS,
            shutdown_timeout: NodeBuilder::DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

/// Builds a [`Node`]. Every limit has a safe default; `build` checks them all and
/// names the setting at fault.
///
/// | setting | default | at the limit |
/// |---|---|---|
/// | [`max_processes`](Self::max_processes) | 262,144 (the BEAM's `+P`) | `SpawnError::ProcessLimit` |
/// | [`reserved_processes`](Self::reserved_processes) | 64 | slots of `max_processes` only spawns with [`SpawnOptions::use_reserve`](crate::SpawnOptions::use_reserve) (supervisors) may use |
/// | [`mailbox_budget_bytes`](Self::mailbox_budget_bytes) | 1 GiB | `SendError::NodeBudget`, or a counted drop under a drop policy |
/// | [`default_mailbox`](Self::default_mailbox) | [`Mailbox::default()`]: 1,024 messages, 64 priority, 4 MiB, `Backpressure` | the mailbox's [`Overflow`](crate::Overflow) policy |
/// | [`max_names`](Self::max_names) | 65,536 | `RegistryError::Full` |
/// | [`max_links_per_process`](Self::max_links_per_process) | 65,536 | `LinkError::TooManyLinks` |
/// | [`max_monitors_per_process`](Self::max_monitors_per_process) | 65,536 | `LinkError::TooManyMonitors` |
/// | [`max_timers_per_process`](Self::max_timers_per_process) | 1,024 | `TimerError::TooMany` |
/// | [`shutdown_timeout`](Self::shutdown_timeout) | 5 s | processes still running are killed |
///
/// # Examples
///
/// ```
/// use girder::{BuildError, Mailbox, Node, Overflow};
///
/// # #[tokio::main] async fn main() {
/// let node = Node::builder()
///     .max_processes(10_000)
///     .mailbox_budget_bytes(64 << 20)
///     .default_mailbox(Mailbox::bounded(256).overflow(Overflow::Reject))
///     .build()
///     .unwrap();
/// assert_eq!(node.stats().process_limit, 10_000);
///
/// let err = Node::builder().max_processes(0).build().unwrap_err();
/// assert!(err.to_string().contains("max_processes"));
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct NodeBuilder {
    config: NodeConfig,
    runtime: Option<tokio::runtime::Handle>,
}

impl NodeBuilder {
    /// Default process limit: 262,144, as OTP's default `+P`.
    pub const DEFAULT_MAX_PROCESSES: usize = 262_144;
    /// Default headroom kept for supervisors and system processes.
    pub const DEFAULT_RESERVED_PROCESSES: usize = 64;
    /// Default node-wide mailbox byte budget: 1 GiB.
    pub const DEFAULT_MAILBOX_BUDGET_BYTES: usize = 1 << 30;
    /// Default registry size.
    pub const DEFAULT_MAX_NAMES: usize = 65_536;
    /// Default number of links one process may hold.
    pub const DEFAULT_MAX_LINKS: usize = 65_536;
    /// Default number of monitors one process may hold.
    pub const DEFAULT_MAX_MONITORS: usize = 65_536;
    /// Default number of pending timers per process.
    pub const DEFAULT_MAX_TIMERS: usize = 1_024;
    /// Default time processes get to stop at shutdown before they are killed.
    pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

    /// Maximum number of live processes (the BEAM's `+P`), reserved headroom
    /// included. At most 2^27.
    pub fn max_processes(mut self, n: usize) -> Self {
        self.config.max_processes = n;
        self
    }

    /// Slots of `max_processes` that ordinary spawns cannot take, kept for spawns that
    /// ask for them (supervisors restarting children), so a runaway spawner at the
    /// limit cannot stop a supervisor from restoring service. Must be below
    /// `max_processes`; may be zero.
    pub fn reserved_processes(mut self, n: usize) -> Self {
        self.config.reserved_processes = n;
        self
    }

    /// Bytes (message weights) that all mailboxes of the node may hold together.
    pub fn mailbox_budget_bytes(mut self, bytes: usize) -> Self {
        self.config.mailbox_budget_bytes = bytes;
        self
    }

    /// The mailbox of processes spawned without one of their own.
    pub fn default_mailbox(mut self, mailbox: Mailbox) -> Self {
        self.config.default_mailbox = mailbox;
        self
    }

    /// Maximum number of registered names.
    pub fn max_names(mut self, n: usize) -> Self {
        self.config.max_names = n;
        self
    }

    /// Maximum number of links per process.
    pub fn max_links_per_process(mut self, n: usize) -> Self {
        self.config.max_links_per_process = n;
        self
    }

    /// Maximum number of monitors a process may hold.
    pub fn max_monitors_per_process(mut self, n: usize) -> Self {
        self.config.max_monitors_per_process = n;
        self
    }

    /// Maximum number of pending timers per process.
    pub fn max_timers_per_process(mut self, n: usize) -> Self {
        self.config.max_timers_per_process = n;
        self
    }

    /// How long [`Node::shutdown`] waits for processes to stop before killing them.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// The tokio runtime processes run on (default: the current one).
    pub fn runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Checks every setting and builds the node.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the first invalid setting, or `NoRuntime` outside a
    /// tokio runtime.
    pub fn build(self) -> Result<Node, BuildError> {
        let c = &self.config;
        let positive = [
            ("max_processes", c.max_processes),
            ("mailbox_budget_bytes", c.mailbox_budget_bytes),
            ("max_names", c.max_names),
            ("max_links_per_process", c.max_links_per_process),
            ("max_monitors_per_process", c.max_monitors_per_process),
            ("max_timers_per_process", c.max_timers_per_process),
        ];
        for (setting, value) in positive {
            if value == 0 {
                return Err(BuildError::Zero { setting, field: "" });
            }
        }
        if c.max_processes > MAX_PROCESSES_CEILING {
            return Err(BuildError::TooLarge {
                setting: "max_processes",
                value: c.max_processes,
                max: MAX_PROCESSES_CEILING,
            });
        }
        if c.reserved_processes >= c.max_processes {
            return Err(BuildError::NotBelow {
                setting: "reserved_processes",
                value: c.reserved_processes,
                other: "max_processes",
                other_value: c.max_processes,
            });
        }
        if c.shutdown_timeout.is_zero() {
            return Err(BuildError::Zero {
                setting: "shutdown_timeout",
                field: "",
            });
        }
        c.default_mailbox.validate("default_mailbox")?;
        let runtime = match self.runtime {
            Some(h) => h,
            None => tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?,
        };
        Ok(Node {
            inner: Arc::new(NodeInner::new(self.config, runtime)),
        })
    }
}
