use std::sync::Arc;

use crate::Mailbox;

/// Options for one spawn.
///
/// # Examples
///
/// ```
/// use girder::{Mailbox, Overflow, SpawnOptions};
///
/// let opts = SpawnOptions::new()
///     .name("cache")
///     .mailbox(Mailbox::bounded(10_000).overflow(Overflow::DropOldest));
/// # let _ = opts;
/// ```
#[derive(Clone, Debug, Default)]
pub struct SpawnOptions {
    pub(crate) name: Option<Arc<str>>,
    pub(crate) mailbox: Option<Mailbox>,
    pub(crate) link: bool,
    pub(crate) use_reserve: bool,
    pub(crate) max_descendants: Option<usize>,
    /// How a budget this process owns is named in errors (default: its name or pid).
    pub(crate) label: Option<Arc<str>>,
}

impl SpawnOptions {
    /// Default options: no name, the node's default mailbox, not linked.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the process under `name` as it starts.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Gives the process its own mailbox bounds and policy.
    pub fn mailbox(mut self, mailbox: Mailbox) -> Self {
        self.mailbox = Some(mailbox);
        self
    }

    /// Links the child to the spawning process (only from [`Ctx`](crate::Ctx)).
    pub fn link(mut self) -> Self {
        self.link = true;
        self
    }

    /// Gives the new process a budget of `limit` descendants (girder goes beyond OTP
    /// here): every process spawned anywhere below it counts against the budget, and
    /// past it spawns in the subtree fail with
    /// [`SpawnError::BudgetExhausted`](crate::SpawnError::BudgetExhausted) naming this
    /// process (its name, or its pid), while the rest of the node spawns on. Budgets
    /// nest: a spawn counts against every budget above it.
    pub fn max_descendants(mut self, limit: usize) -> Self {
        self.max_descendants = Some(limit);
        self
    }

    /// Lets this spawn use the node's reserved headroom
    /// ([`reserved_processes`](crate::NodeBuilder::reserved_processes)). For
    /// supervisors and system processes, so they can restore service when a runaway
    /// spawner holds every ordinary slot.
    pub fn use_reserve(mut self) -> Self {
        self.use_reserve = true;
        self
    }
}
