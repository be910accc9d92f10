//! The process table: a bounded slab of process slots with generations.
//!
//! Admission to the table is a single compare-and-swap on the live count, done before
//! anything is allocated, so concurrent spawners can never push the count past the
//! limit. A slot freed by an exiting process gets its generation bumped before it goes
//! back on the free list, so a stale [`Pid`] never resolves to the slot's next tenant.
//!
//! The limit has two tiers: ordinary spawns may fill `limit - reserved` slots; the last
//! `reserved` slots are kept for spawns that ask for them (supervisors restarting
//! children, system processes), so that a runaway spawner at the limit cannot stop a
//! supervisor from restoring service — the failure DESIGN.md measured on the BEAM.

use super::{NodeId, Pid};
use crate::sync::{AtomicUsize, Ordering, RwLock};

/// Why the table refused a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableFull {
    pub(crate) limit: usize,
}

pub(crate) struct ProcessTable<T> {
    node: NodeId,
    live: AtomicUsize,
    limit: usize,
    reserved: usize,
    slots: RwLock<Slots<T>>,
}

struct Slots<T> {
    entries: Vec<Slot<T>>,
    free: Vec<u32>,
}

struct Slot<T> {
    generation: u32,
    entry: Option<T>,
}

/// A claim on one unit of the live count; given back on drop unless a slot was filled.
pub(crate) struct Reservation<'a, T> {
    table: &'a ProcessTable<T>,
    armed: bool,
}

impl<T> Drop for Reservation<'_, T> {
    fn drop(&mut self) {
        if self.armed {
            self.table.live.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl<T: Clone> ProcessTable<T> {
    pub(crate) fn new(node: NodeId, limit: usize, reserved: usize) -> Self {
        debug_assert!(reserved < limit);
        Self {
            node,
            live: AtomicUsize::new(0),
            limit,
            reserved,
            slots: RwLock::new(Slots {
                entries: Vec::new(),
                free: Vec::new(),
            }),
        }
    }

    /// Number of live processes (reserved or filled slots).
    pub(crate) fn len(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    pub(crate) fn reserved(&self) -> usize {
        self.reserved
    }

    /// Claims one unit of the live count, or refuses at the limit. `use_reserve` lets
    /// the claim dip into the reserved headroom.
    pub(crate) fn reserve(&self, use_reserve: bool) -> Result<Reservation<'_, T>, TableFull> {
        let cap = if use_reserve {
            self.limit
        } else {
            self.limit - self.reserved
        };
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .map_err(|_| TableFull { limit: cap })?;
        Ok(Reservation {
            table: self,
            armed: true,
        })
    }

    /// Fills a slot for a reservation with the entry `make` builds for its pid.
    pub(crate) fn insert(&self, mut reservation: Reservation<'_, T>, make: impl FnOnce(Pid) -> T) -> T {
        let mut slots = self.slots.write();
        let index = match slots.free.pop() {
            Some(i) => i,
            None => {
                slots.entries.push(Slot {
                    generation: 0,
                    entry: None,
                });
                (slots.entries.len() - 1) as u32
            }
        };
        let slot = &mut slots.entries[index as usize];
        let pid = Pid {
            node: self.node,
            index,
            generation: slot.generation,
        };
        let entry = make(pid);
        slot.entry = Some(entry.clone());
        reservation.armed = false;
        entry
    }

    /// The entry for `pid`, if that exact process is still in the table.
    pub(crate) fn get(&self, pid: Pid) -> Option<T> {
        if pid.node != self.node {
            return None;
        }
        let slots = self.slots.read();
        let slot = slots.entries.get(pid.index as usize)?;
        if slot.generation != pid.generation {
            return None;
        }
        slot.entry.clone()
    }

    /// Frees `pid`'s slot and gives back its unit of the live count. Returns `false` if
    /// the pid was stale (nothing freed).
    pub(crate) fn remove(&self, pid: Pid) -> bool {
        if pid.node != self.node {
            return false;
        }
        let removed = {
            let mut slots = self.slots.write();
            let Some(slot) = slots.entries.get_mut(pid.index as usize) else {
                return false;
            };
            if slot.generation != pid.generation || slot.entry.is_none() {
                return false;
            }
            let old = slot.entry.take();
            slot.generation = slot.generation.wrapping_add(1);
            slots.free.push(pid.index);
            old
        };
        self.live.fetch_sub(1, Ordering::AcqRel);
        // The entry is dropped here, outside the lock.
        drop(removed);
        true
    }

    /// Every live entry (a snapshot taken under the read lock).
    pub(crate) fn entries(&self) -> Vec<T> {
        let slots = self.slots.read();
        slots.entries.iter().filter_map(|s| s.entry.clone()).collect()
    }
}

#[cfg(all(test, not(girder_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn table(limit: usize, reserved: usize) -> ProcessTable<Arc<u32>> {
        ProcessTable::new(NodeId(1), limit, reserved)
    }

    #[test]
    fn refuses_past_the_limit_and_counts_live_exactly() {
        let t = table(3, 1);
        let a = t.insert(t.reserve(false).unwrap(), |p| Arc::new(p.index));
        let _b = t.insert(t.reserve(false).unwrap(), |p| Arc::new(p.index));
        assert_eq!(t.reserve(false).err(), Some(TableFull { limit: 2 }));
        // The reserved headroom is still there for those who ask for it.
        let c = t.reserve(true).unwrap();
        assert_eq!(t.len(), 3);
        assert!(t.reserve(true).is_err());
        drop(c);
        assert_eq!(t.len(), 2);
        let pid_a = Pid {
            node: NodeId(1),
            index: *a,
            generation: 0,
        };
        assert!(t.remove(pid_a));
        assert!(!t.remove(pid_a), "a second remove of the same pid frees nothing");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn stale_pid_never_reaches_the_next_tenant() {
        let t = table(4, 0);
        let mut first = None;
        t.insert(t.reserve(false).unwrap(), |p| {
            first = Some(p);
            Arc::new(1)
        });
        let first = first.unwrap();
        assert!(t.remove(first));
        let mut second = None;
        t.insert(t.reserve(false).unwrap(), |p| {
            second = Some(p);
            Arc::new(2)
        });
        let second = second.unwrap();
        assert_eq!(first.index, second.index, "the slot is reused");
        assert_ne!(first, second);
        assert!(t.get(first).is_none());
        assert_eq!(*t.get(second).unwrap(), 2);
    }

    #[test]
    fn foreign_node_pids_resolve_to_nothing() {
        let t = table(4, 0);
        t.insert(t.reserve(false).unwrap(), |_| Arc::new(1));
        assert!(t
            .get(Pid {
                node: NodeId(2),
                index: 0,
                generation: 0
            })
            .is_none());
    }
}

#[cfg(all(test, girder_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// Three spawners race for two slots: never more than two live, and the count
    /// returns to zero once every winner exits.
    #[test]
    fn concurrent_reserve_never_overshoots() {
        loom::model(|| {
            let t: Arc<ProcessTable<std::sync::Arc<u8>>> = Arc::new(ProcessTable::new(NodeId(0), 2, 0));
            let handles: Vec<_> = (0..3)
                .map(|_| {
                    let t = t.clone();
                    thread::spawn(move || {
                        let r = t.reserve(false);
                        assert!(t.len() <= 2);
                        r.ok().map(|r| {
                            let mut pid = None;
                            t.insert(r, |p| {
                                pid = Some(p);
                                std::sync::Arc::new(0)
                            });
                            pid.unwrap()
                        })
                    })
                })
                .collect();
            let pids: Vec<_> = handles.into_iter().filter_map(|h| h.join().unwrap()).collect();
            assert_eq!(pids.len(), 2);
            assert_eq!(t.len(), 2);
            for p in pids {
                assert!(t.remove(p));
            }
            assert_eq!(t.len(), 0);
        });
    }

    /// A remove racing with a lookup: the lookup sees the process or nothing, and a
    /// pid issued after the remove is never equal to the stale one.
    #[test]
    fn remove_and_reuse_race_with_lookup() {
        loom::model(|| {
            let t: Arc<ProcessTable<std::sync::Arc<u8>>> = Arc::new(ProcessTable::new(NodeId(0), 1, 0));
            let mut first = None;
            t.insert(t.reserve(false).unwrap(), |p| {
                first = Some(p);
                std::sync::Arc::new(1)
            });
            let first = first.unwrap();
            let t2 = t.clone();
            let reader = thread::spawn(move || t2.get(first).map(|v| *v));
            assert!(t.remove(first));
            let mut second = None;
            if let Ok(r) = t.reserve(false) {
                t.insert(r, |p| {
                    second = Some(p);
                    std::sync::Arc::new(2)
                });
            }
            let seen = reader.join().unwrap();
            assert!(
                seen.is_none() || seen == Some(1),
                "a stale pid never sees the new tenant"
            );
            if let Some(second) = second {
                assert_ne!(first, second);
            }
        });
    }
}
