use std::fmt;
use std::sync::Arc;

/// Why a process ended, as carried by exit signals and `Down` notifications.
///
/// The variants follow OTP's exit reasons:
///
/// | girder | OTP | trappable when it arrives through a link |
/// |---|---|---|
/// | `Normal` | `normal` | a non-trapping process ignores it |
/// | `Shutdown` | `shutdown` | yes |
/// | `Killed` | `killed` (after `exit(Pid, kill)`) | yes (only the kill itself is untrappable) |
/// | `Panic(msg)` | a crash (`{badarg, …}`) | yes |
/// | `MailboxOverflow` | `killed` by `max_heap_size` | yes |
/// | `NoProc` | `noproc` | yes |
/// | `Custom(msg)` | any other term | yes |
///
/// Only [`ExitReason::Normal`] is a *normal* exit: a linked process that does not trap
/// exits ignores it, every other reason takes linked processes down with the same
/// reason.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum ExitReason {
    /// The process finished its work.
    Normal,
    /// The process was asked to stop (by its node or a supervisor).
    Shutdown,
    /// The process was killed with an untrappable kill (`ctx.kill`, `node.kill`,
    /// a shutdown timeout).
    Killed,
    /// A handler panicked; the payload's message.
    Panic(Arc<str>),
    /// The process's mailbox overflowed under [`Overflow::Kill`](crate::Overflow::Kill).
    MailboxOverflow,
    /// The process did not exist (a link or monitor to an exited pid).
    NoProc,
    /// A reason chosen by the program.
    Custom(Arc<str>),
}

impl ExitReason {
    /// A user-chosen reason.
    pub fn custom(reason: impl Into<Arc<str>>) -> Self {
        ExitReason::Custom(reason.into())
    }

    /// `true` for [`ExitReason::Normal`], the only reason that does not take
    /// non-trapping linked processes down.
    pub fn is_normal(&self) -> bool {
        matches!(self, ExitReason::Normal)
    }

    /// `true` for `Normal` and `Shutdown`: the reasons a supervisor treats as a
    /// clean stop of a transient child, as OTP does.
    pub fn is_clean(&self) -> bool {
        matches!(self, ExitReason::Normal | ExitReason::Shutdown)
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Normal => f.write_str("normal"),
            ExitReason::Shutdown => f.write_str("shutdown"),
            ExitReason::Killed => f.write_str("killed"),
            ExitReason::Panic(m) => write!(f, "panic: {m}"),
            ExitReason::MailboxOverflow => f.write_str("mailbox overflow"),
            ExitReason::NoProc => f.write_str("noproc"),
            ExitReason::Custom(m) => f.write_str(m),
        }
    }
}

/// A handle on one monitor, returned by `monitor` and accepted by `demonitor`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct MonitorRef(pub(crate) u64);

/// The notification a monitoring process receives when the monitored process exits
/// (OTP's `{'DOWN', Ref, process, Pid, Reason}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Down {
    /// The monitor that fired.
    pub monitor: MonitorRef,
    /// The process that exited.
    pub pid: Pid,
    /// Why it exited (`NoProc` if it was already gone when the monitor was set).
    pub reason: ExitReason,
}

use super::Pid;

/// A signal in a process's system lane: exits of linked processes (when trapping
/// exits) and monitor notifications.
#[derive(Clone, Debug)]
pub(crate) enum Signal {
    /// An exit signal for a trapping process. `linked`: it came through a link
    /// (withdrawn if the link is gone by the time it is handled).
    Exit {
        from: Pid,
        reason: ExitReason,
        linked: bool,
    },
    /// Stop through the loop (with `terminate`): node shutdown of a trapping process.
    Stop(ExitReason),
    /// A stage subscription has news (demand or events). At most one pending per
    /// subscription and direction, so bounded by the subscriptions themselves.
    Wake(u64),
    /// A monitor fired.
    Down(Down),
}
