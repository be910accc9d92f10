use crate::error::BuildError;

/// What a mailbox does when a message arrives and its lane is full (by count or by
/// bytes), chosen per process by the receiver.
///
/// Whatever the policy, every refusal and drop is counted in the process's
/// [`MailboxStats`](crate::MailboxStats) and in the node's totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Overflow {
    /// The sender gets the message back: `Err(SendError::Full(msg))`.
    Reject,
    /// `send().await` waits for room (senders are served in arrival order, and a
    /// waiting sender is never overtaken by `try_send`); `try_send` still returns
    /// `Full`. A process sending to its own full mailbox gets `Full` at once instead
    /// of deadlocking. The default.
    Backpressure,
    /// The arriving message is discarded and counted as dropped; the send succeeds.
    DropNewest,
    /// The oldest queued messages of the lane are discarded (and counted) to make
    /// room, so the mailbox keeps the newest. Messages the process has already taken
    /// ahead of handling (lanes of 16 slots or more hand them out in batches of at
    /// most an eighth of the capacity, see the [`mailbox`](crate::mailbox) docs) are
    /// no longer evictable.
    DropOldest,
    /// The sender gets `Full` and the process is killed with exit reason
    /// [`ExitReason::MailboxOverflow`](crate::ExitReason::MailboxOverflow), as the
    /// BEAM's `max_heap_size` kill — but checked at every admission, not at garbage
    /// collection. Its supervisor (or a linked process) sees the reason.
    Kill,
}

/// The bounds and overflow policy of one process's mailbox.
///
/// A mailbox has three lanes: *system* (exit and down signals; bounded by
/// construction, at most one signal per link or monitor), *priority* and *normal*.
/// The priority and normal lanes each have a message-count bound and share one byte
/// bound; each message's bytes are its [`Weight`](crate::Weight). Storage is allocated
/// only when messages arrive and released when the mailbox drains, so an idle process
/// costs no queue memory.
///
/// | setting | default | at the limit |
/// |---|---|---|
/// | `capacity` (normal lane, messages) | 1,024 | the [`Overflow`] policy |
/// | `priority_capacity` (messages) | 64 | the [`Overflow`] policy |
/// | `max_bytes` (both lanes) | 4 MiB | the [`Overflow`] policy; a single message heavier than this is refused with `TooLarge` |
/// | `overflow` | [`Overflow::Backpressure`] | |
///
/// Every mailbox also draws on the node-wide mailbox byte budget
/// ([`NodeBuilder::mailbox_budget_bytes`](crate::NodeBuilder::mailbox_budget_bytes)).
///
/// # Examples
///
/// ```
/// use girder::{Mailbox, Overflow};
///
/// let mb = Mailbox::bounded(256).max_bytes(64 * 1024).overflow(Overflow::DropOldest);
/// assert_eq!(mb.get_capacity(), 256);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mailbox {
    capacity: usize,
    priority_capacity: usize,
    max_bytes: usize,
    overflow: Overflow,
}

impl Default for Mailbox {
    fn default() -> Self {
        Mailbox {
            capacity: Self::DEFAULT_CAPACITY,
            priority_capacity: Self::DEFAULT_PRIORITY_CAPACITY,
            max_bytes: Self::DEFAULT_MAX_BYTES,
            overflow: Overflow::Backpressure,
        }
    }
}

impl Mailbox {
    /// Default bound of the normal lane, in messages.
    pub const DEFAULT_CAPACITY: usize = 1024;
    /// Default bound of the priority lane, in messages.
    pub const DEFAULT_PRIORITY_CAPACITY: usize = 64;
    /// Default byte bound of a mailbox.
    pub const DEFAULT_MAX_BYTES: usize = 4 << 20;

    /// The default mailbox with the normal lane bounded at `capacity` messages.
    pub fn bounded(capacity: usize) -> Self {
        Mailbox {
            capacity,
            ..Mailbox::default()
        }
    }

    /// A mailbox without per-process count or byte bounds. This must be spelled out,
    /// and even then the node-wide mailbox budget holds.
    pub fn unbounded() -> Self {
        Mailbox {
            capacity: usize::MAX,
            priority_capacity: usize::MAX,
            max_bytes: usize::MAX,
            overflow: Overflow::Backpressure,
        }
    }

    /// Sets the normal lane's bound in messages.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets the priority lane's bound in messages.
    pub fn priority_capacity(mut self, capacity: usize) -> Self {
        self.priority_capacity = capacity;
        self
    }

    /// Sets the byte bound shared by both lanes.
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Sets the overflow policy.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// The normal lane's bound in messages.
    pub fn get_capacity(&self) -> usize {
        self.capacity
    }

    /// The priority lane's bound in messages.
    pub fn get_priority_capacity(&self) -> usize {
        self.priority_capacity
    }

    /// The byte bound.
    pub fn get_max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The overflow policy.
    pub fn get_overflow(&self) -> Overflow {
        self.overflow
    }

    /// Checks the settings; `setting` names where they came from in error messages.
    pub(crate) fn validate(&self, setting: &'static str) -> Result<(), BuildError> {
        if self.capacity == 0 {
            return Err(BuildError::Zero {
                setting,
                field: ".capacity",
            });
        }
        if self.priority_capacity == 0 {
            return Err(BuildError::Zero {
                setting,
                field: ".priority_capacity",
            });
        }
        if self.max_bytes == 0 {
            return Err(BuildError::Zero {
                setting,
                field: ".max_bytes",
            });
        }
        Ok(())
    }
}
