//! The typed process: its core and its mailbox, shared by the process loop and every
//! address.

use std::any::Any;
use std::sync::Arc;

use crate::mailbox::queue::Queue;
use crate::mailbox::MailboxStats;
use crate::process::{ProcessCore, ProcessHandle, Signal};

pub(crate) struct ProcessShared<M> {
    pub(crate) core: ProcessCore,
    pub(crate) mailbox: Queue<M>,
}

impl<M: Send + 'static> ProcessHandle for ProcessShared<M> {
    fn core(&self) -> &ProcessCore {
        &self.core
    }

    fn push_signal(&self, sig: Signal, explicit: bool) -> bool {
        self.mailbox.push_signal(sig, explicit)
    }

    fn mailbox_stats(&self) -> MailboxStats {
        self.mailbox.stats()
    }

    fn close_mailbox(&self) {
        self.mailbox.close()
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}
