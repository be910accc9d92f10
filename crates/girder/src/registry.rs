//! The name registry: names → processes, bounded.
//!
//! Names are released automatically when their process exits. The registry holds at
//! most [`max_names`](crate::NodeBuilder::max_names) names; past that, `register`
//! fails with [`RegistryError::Full`] (and the refusal is counted), so a process that
//! registers names in a loop cannot grow it without bound.

use std::collections::HashMap;
use std::sync::Arc;

use crate::{Pid, RegistryError};

pub(crate) struct Registry {
    names: parking_lot::Mutex<HashMap<Arc<str>, Pid>>,
    limit: usize,
}

impl Registry {
    pub(crate) fn new(limit: usize) -> Self {
        Registry {
            names: parking_lot::Mutex::new(HashMap::new()),
            limit,
        }
    }

    /// Inserts `name → pid`. `alive` tells whether a current holder still runs (a
    /// stale holder's name is taken over).
    pub(crate) fn insert(
        &self,
        name: Arc<str>,
        pid: Pid,
        alive: impl Fn(Pid) -> bool,
    ) -> Result<(), RegistryError> {
        let mut names = self.names.lock();
        if let Some(&holder) = names.get(&name) {
            if holder != pid && alive(holder) {
                return Err(RegistryError::NameTaken { name, holder });
            }
            names.insert(name, pid);
            return Ok(());
        }
        if names.len() >= self.limit {
            return Err(RegistryError::Full { limit: self.limit });
        }
        names.insert(name, pid);
        Ok(())
    }

    pub(crate) fn remove(&self, name: &str, pid: Pid) {
        let mut names = self.names.lock();
        if names.get(name) == Some(&pid) {
            names.remove(name);
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<Pid> {
        self.names.lock().get(name).copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.names.lock().len()
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }
}
