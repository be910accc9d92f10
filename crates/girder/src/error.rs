//! Error types. Each says what went wrong and what to change.

use std::fmt;
use std::sync::Arc;

use crate::Pid;

/// An invalid node or mailbox setting, reported by [`NodeBuilder::build`](crate::NodeBuilder::build)
/// (or by a spawn given an invalid mailbox). The message names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A setting that must be positive is zero.
    #[error("{setting}{field} must be greater than zero")]
    Zero {
        /// The setting (builder method) at fault.
        setting: &'static str,
        /// The field of that setting, with a leading dot (`.capacity`), or empty.
        field: &'static str,
    },
    /// A setting is above what girder allows.
    #[error("{setting} is {value}, above the maximum of {max}; lower it")]
    TooLarge {
        /// The setting at fault.
        setting: &'static str,
        /// The value given.
        value: usize,
        /// The largest value allowed.
        max: usize,
    },
    /// Two settings contradict each other.
    #[error("{setting} ({value}) must be smaller than {other} ({other_value})")]
    NotBelow {
        /// The setting at fault.
        setting: &'static str,
        /// Its value.
        value: usize,
        /// The setting it must stay below.
        other: &'static str,
        /// That setting's value.
        other_value: usize,
    },
    /// `build()` was called outside a tokio runtime.
    #[error("no tokio runtime: build the node inside one (e.g. under #[tokio::main]) or pass NodeBuilder::runtime(handle)")]
    NoRuntime,
}

/// Why a process could not be spawned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The node's process limit (`max_processes`, less the reserved headroom for
    /// ordinary spawns) is reached. Nothing was allocated.
    #[error(
        "process limit reached ({limit} processes); raise NodeBuilder::max_processes or find the spawner"
    )]
    ProcessLimit {
        /// The limit that applied to this spawn.
        limit: usize,
    },
    /// A subtree's process budget (`max_descendants`) is exhausted. The node-wide
    /// limit may still have room: only this subtree is refused.
    #[error("process budget of subtree {subtree:?} exhausted ({limit} descendants); raise its max_descendants or find the spawner")]
    BudgetExhausted {
        /// The subtree (its owner's name, or pid) whose budget refused.
        subtree: Arc<str>,
        /// That budget's limit.
        limit: usize,
    },
    /// `Actor::init` failed (reported by `start`).
    #[error("init failed: {0}")]
    InitFailed(Arc<str>),
    /// The process's name could not be registered.
    #[error("could not register the process's name: {0}")]
    Name(#[from] RegistryError),
    /// The spawn options hold an invalid mailbox.
    #[error("invalid spawn options: {0}")]
    Config(#[from] BuildError),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The child could not be linked to its parent.
    #[error("could not link the child to its parent: {0}")]
    Link(#[from] LinkError),
}

/// Why a message was not delivered. The message is handed back.
#[derive(PartialEq, Eq, Clone, Copy, thiserror::Error)]
pub enum SendError<T> {
    /// The mailbox lane is full (policy `Reject`, `Kill`, or `try_send` under
    /// `Backpressure`).
    #[error("mailbox full")]
    Full(T),
    /// The process has exited.
    #[error("process has exited")]
    Closed(T),
    /// The message alone weighs more than the mailbox's `max_bytes`; raise it.
    #[error("message heavier than the mailbox's max_bytes")]
    TooLarge(T),
    /// The node-wide mailbox byte budget is exhausted.
    #[error("node mailbox budget exhausted")]
    NodeBudget(T),
}

impl<T> SendError<T> {
    /// The message that was not delivered.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Full(m) | SendError::Closed(m) | SendError::TooLarge(m) | SendError::NodeBudget(m) => {
                m
            }
        }
    }

    /// `true` if the process has exited (retrying is pointless).
    pub fn is_closed(&self) -> bool {
        matches!(self, SendError::Closed(_))
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            SendError::Full(_) => "Full",
            SendError::Closed(_) => "Closed",
            SendError::TooLarge(_) => "TooLarge",
            SendError::NodeBudget(_) => "NodeBudget",
        };
        write!(f, "{name}(..)")
    }
}

/// Why a `call` got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No reply within the timeout. The request, if still queued, will be dropped
    /// unhandled (counted as expired) when the process reaches it.
    #[error("call timed out")]
    Timeout,
    /// The mailbox is full (see [`SendError::Full`]).
    #[error("mailbox full")]
    Full,
    /// The request is heavier than the mailbox's `max_bytes`.
    #[error("request heavier than the mailbox's max_bytes")]
    TooLarge,
    /// The node-wide mailbox byte budget is exhausted.
    #[error("node mailbox budget exhausted")]
    NodeBudget,
    /// The process has exited (before the call or before replying).
    #[error("process is down")]
    Down,
    /// The request was discarded (drop policy) or the handler dropped the reply
    /// without answering. A handler that drops the reply and then exits (stops or
    /// panics) in the same turn may also be reported as `NoReply` rather than `Down`:
    /// the reply slot closes before the process has finished exiting.
    #[error("no reply: the request was dropped or the handler did not answer")]
    NoReply,
}

impl<T> From<SendError<T>> for CallError {
    fn from(e: SendError<T>) -> Self {
        match e {
            SendError::Full(_) => CallError::Full,
            SendError::Closed(_) => CallError::Down,
            SendError::TooLarge(_) => CallError::TooLarge,
            SendError::NodeBudget(_) => CallError::NodeBudget,
        }
    }
}

/// Registry failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The name is held by another live process.
    #[error("name {name:?} is already registered to {holder}")]
    NameTaken {
        /// The name asked for.
        name: Arc<str>,
        /// The process holding it.
        holder: Pid,
    },
    /// The registry holds its maximum number of names.
    #[error("registry full ({limit} names); raise NodeBuilder::max_names")]
    Full {
        /// The registry's limit.
        limit: usize,
    },
    /// The process does not exist (or has exited).
    #[error("no such process {0}")]
    NoProc(Pid),
    /// The process already has a name.
    #[error("{pid} is already registered as {name:?}")]
    AlreadyNamed {
        /// The process.
        pid: Pid,
        /// Its current name.
        name: Arc<str>,
    },
}

/// Timer failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimerError {
    /// The process already has its maximum number of pending timers.
    #[error("too many pending timers ({limit}); cancel some or raise NodeBuilder::max_timers_per_process")]
    TooMany {
        /// The per-process limit.
        limit: usize,
    },
}

/// Link and monitor failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// One of the two processes already has its maximum number of links.
    #[error("too many links ({limit}); raise NodeBuilder::max_links_per_process")]
    TooManyLinks {
        /// The per-process limit.
        limit: usize,
    },
    /// The process already holds its maximum number of monitors.
    #[error("too many monitors ({limit}); raise NodeBuilder::max_monitors_per_process")]
    TooManyMonitors {
        /// The per-process limit.
        limit: usize,
    },
}
