//! Synchronisation primitives used by the runtime's core, swappable for loom's
//! model-checked versions under `--cfg girder_loom`.
//!
//! Only the mailbox queue and the process table go through this module: they are the
//! concurrent core that the loom models in `tests`/unit tests exercise.

#[cfg(not(girder_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

#[cfg(girder_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// A mutex whose `lock` never reports poisoning (the runtime never panics while
/// holding one of its own locks; user code never runs under them).
#[derive(Debug, Default)]
pub(crate) struct Mutex<T> {
    #[cfg(not(girder_loom))]
    inner: parking_lot::Mutex<T>,
    #[cfg(girder_loom)]
    inner: loom::sync::Mutex<T>,
}

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            #[cfg(not(girder_loom))]
            inner: parking_lot::Mutex::new(value),
            #[cfg(girder_loom)]
            inner: loom::sync::Mutex::new(value),
        }
    }

    #[cfg(not(girder_loom))]
    pub(crate) fn lock(&self) -> parking_lot::MutexGuard<'_, T> {
        self.inner.lock()
    }

    #[cfg(girder_loom)]
    pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
        self.inner.lock().unwrap()
    }
}

/// A reader-writer lock with the same no-poisoning contract as [`Mutex`].
#[derive(Debug, Default)]
pub(crate) struct RwLock<T> {
    #[cfg(not(girder_loom))]
    inner: parking_lot::RwLock<T>,
    #[cfg(girder_loom)]
    inner: loom::sync::RwLock<T>,
}

impl<T> RwLock<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            #[cfg(not(girder_loom))]
            inner: parking_lot::RwLock::new(value),
            #[cfg(girder_loom)]
            inner: loom::sync::RwLock::new(value),
        }
    }

    #[cfg(not(girder_loom))]
    pub(crate) fn read(&self) -> parking_lot::RwLockReadGuard<'_, T> {
        self.inner.read()
    }

    #[cfg(girder_loom)]
    pub(crate) fn read(&self) -> loom::sync::RwLockReadGuard<'_, T> {
        self.inner.read().unwrap()
    }

    #[cfg(not(girder_loom))]
    pub(crate) fn write(&self) -> parking_lot::RwLockWriteGuard<'_, T> {
        self.inner.write()
    }

    #[cfg(girder_loom)]
    pub(crate) fn write(&self) -> loom::sync::RwLockWriteGuard<'_, T> {
        self.inner.write().unwrap()
    }
}
