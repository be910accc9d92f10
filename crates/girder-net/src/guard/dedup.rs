//! A bounded window of recently seen message ids.
//!
//! [`Dedup`] answers "have I seen this id recently?" with a hash map for lookup and a
//! FIFO queue of `(id, first seen)` in arrival order. An id is held from its first
//! sighting until either its `ttl` runs out or `capacity` newer ids push it out,
//! whichever comes first. Both removals happen at the front of the queue, so every
//! operation is O(1) amortized and memory never exceeds `capacity` entries.
//!
//! **What the window guarantees.** An id is reported [`Seen::First`] once, and
//! [`Seen::Duplicate`] on every later check *while the window still holds it*. Once it
//! expires or is evicted because the window was full, the next check reports it
//! `First` again and the caller may act on it a second time. Size `capacity` for the
//! peak id rate times `ttl` to make early eviction rare; the `evicted_full` counter in
//! [`DedupStats`] tells you when it happens. A duplicate does not extend the id's
//! lifetime: the window is measured from the first sighting.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::mem;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::clock::{Clock, MonotonicClock};

/// Default [`DedupConfig::capacity`]: 100 000 ids.
pub const DEFAULT_DEDUP_CAPACITY: usize = 100_000;
/// Default [`DedupConfig::ttl`]: 60 seconds.
pub const DEFAULT_DEDUP_TTL: Duration = Duration::from_secs(60);

/// Settings of a [`Dedup`] window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DedupConfig {
    /// Most ids held at once (default 100 000). When full, the oldest id is evicted to
    /// make room and counted in [`DedupStats::evicted_full`].
    pub capacity: usize,
    /// How long an id is remembered after its first sighting (default 60 s). Expired
    /// ids are counted in [`DedupStats::expired`].
    #[serde(with = "super::duration_serde")]
    pub ttl: Duration,
}

impl Default for DedupConfig {
    fn default() -> Self {
        Self {
            capacity: DEFAULT_DEDUP_CAPACITY,
            ttl: DEFAULT_DEDUP_TTL,
        }
    }
}

impl DedupConfig {
    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`DedupConfigError`] naming the first setting out of range.
    pub fn validate(&self) -> Result<(), DedupConfigError> {
        if self.capacity == 0 {
            return Err(DedupConfigError::ZeroCapacity);
        }
        if self.ttl.is_zero() {
            return Err(DedupConfigError::ZeroTtl);
        }
        Ok(())
    }
}

/// A [`DedupConfig`] setting out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DedupConfigError {
    /// `capacity` was 0.
    #[error("dedup.capacity must be > 0 (it is the most ids the window holds)")]
    ZeroCapacity,
    /// `ttl` was 0.
    #[error("dedup.ttl must be > 0 (it is how long an id is remembered)")]
    ZeroTtl,
}

/// The answer of [`Dedup::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not in the window: now recorded. Act on the message.
    First,
    /// Already in the window. Drop the message.
    Duplicate,
}

/// A snapshot of a window's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct DedupStats {
    /// Checks answered [`Seen::First`].
    pub first: u64,
    /// Checks answered [`Seen::Duplicate`].
    pub duplicates: u64,
    /// Ids evicted before their ttl because the window was full.
    pub evicted_full: u64,
    /// Ids dropped because their ttl ran out.
    pub expired: u64,
    /// Ids held now.
    pub len: usize,
    /// The most ids the window holds.
    pub capacity: usize,
}

/// A bounded window of recently seen ids (see the [module docs](self)).
///
/// Single-owner; wrap it in [`SharedDedup`] to share between tasks.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use girder_net::guard::{Dedup, DedupConfig, ManualClock, Seen};
///
/// let clock = ManualClock::new();
/// let config = DedupConfig { capacity: 2, ttl: Duration::from_secs(10) };
/// let mut dedup = Dedup::with_clock(config, clock.clone())?;
///
/// assert_eq!(dedup.check("a"), Seen::First);
/// assert_eq!(dedup.check("a"), Seen::Duplicate);
///
/// // Past the ttl the id is forgotten and counts as new again.
/// clock.advance(Duration::from_secs(10));
/// assert_eq!(dedup.check("a"), Seen::First);
///
/// // A full window evicts its oldest id to make room.
/// dedup.check("b");
/// dedup.check("c");
/// assert_eq!(dedup.len(), 2);
/// assert_eq!(dedup.stats().evicted_full, 1);
/// # Ok::<(), girder_net::guard::DedupConfigError>(())
/// ```
#[derive(Debug)]
pub struct Dedup<K> {
    config: DedupConfig,
    clock: Arc<dyn Clock>,
    /// id → first seen. Holds exactly the ids in `order`.
    seen: HashMap<K, Instant>,
    /// Ids in arrival order; the front is the oldest (and the first to expire, since
    /// the ttl is the same for all).
    order: VecDeque<(K, Instant)>,
    first: u64,
    duplicates: u64,
    evicted_full: u64,
    expired: u64,
}

impl<K: Hash + Eq + Clone> Dedup<K> {
    /// A window on the real clock.
    ///
    /// # Errors
    ///
    /// [`DedupConfigError`] if a setting is out of range.
    pub fn new(config: DedupConfig) -> Result<Self, DedupConfigError> {
        Self::with_clock(config, MonotonicClock)
    }

    /// A window reading time from `clock` (a [`ManualClock`](super::ManualClock) in
    /// tests).
    ///
    /// # Errors
    ///
    /// [`DedupConfigError`] if a setting is out of range.
    pub fn with_clock(config: DedupConfig, clock: impl Clock) -> Result<Self, DedupConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            clock: Arc::new(clock),
            seen: HashMap::new(),
            order: VecDeque::new(),
            first: 0,
            duplicates: 0,
            evicted_full: 0,
            expired: 0,
        })
    }

    /// Checks `id` against the window, recording it if it is new.
    ///
    /// Expired ids are dropped first; if the window is full, the oldest id is evicted
    /// to make room for a new one. O(1) amortized.
    pub fn check(&mut self, id: K) -> Seen {
        let now = self.clock.now();
        self.expire(now);
        if self.seen.contains_key(&id) {
            self.duplicates += 1;
            return Seen::Duplicate;
        }
        // Make room first, so the table never holds more than `capacity` ids.
        if self.order.len() >= self.config.capacity {
            self.pop_oldest();
            self.evicted_full += 1;
        }
        self.seen.insert(id.clone(), now);
        self.order.push_back((id, now));
        self.first += 1;
        Seen::First
    }

    /// Whether `id` is in the window now, without recording it or counting the check.
    pub fn contains(&self, id: &K) -> bool {
        self.seen
            .get(id)
            .is_some_and(|&at| self.clock.now().saturating_duration_since(at) < self.config.ttl)
    }

    /// Drops expired ids now (checks do this as they go) and returns how many.
    pub fn purge_expired(&mut self) -> usize {
        let before = self.order.len();
        self.expire(self.clock.now());
        before - self.order.len()
    }

    /// Ids held now (expired ids still count until the next check or purge).
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the window holds no ids.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The most ids the window holds.
    pub fn capacity(&self) -> usize {
        self.config.capacity
    }

    /// The settings.
    pub fn config(&self) -> DedupConfig {
        self.config
    }

    /// Approximate heap bytes used by the window's tables now.
    ///
    /// Counts the hash table's buckets (an `(id, Instant)` entry plus one control byte
    /// each) and the queue's slots (an `(id, Instant)` each), as allocated. It grows
    /// with use and stays below about `capacity × (7 × size_of::<(K, Instant)>() + 5)`:
    /// under churn the hash table keeps itself at most half full and rounds its bucket
    /// count up to a power of two (≤ 4.6 buckets per id), and the queue rounds up to a
    /// power of two (≤ 2 slots per id). For `u64` ids that is about 170 bytes per id
    /// of capacity. Heap memory owned by the ids themselves (a `String`'s bytes, say)
    /// is not included.
    pub fn approx_bytes(&self) -> usize {
        let map_slot = mem::size_of::<(K, Instant)>() + 1;
        let map_buckets = self.seen.capacity().saturating_mul(8) / 7;
        let queue = self.order.capacity() * mem::size_of::<(K, Instant)>();
        map_buckets.saturating_mul(map_slot).saturating_add(queue)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> DedupStats {
        DedupStats {
            first: self.first,
            duplicates: self.duplicates,
            evicted_full: self.evicted_full,
            expired: self.expired,
            len: self.order.len(),
            capacity: self.config.capacity,
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(_, at)) = self.order.front() {
            if now.saturating_duration_since(at) < self.config.ttl {
                break;
            }
            self.pop_oldest();
            self.expired += 1;
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((id, _)) = self.order.pop_front() {
            self.seen.remove(&id);
        }
    }
}

/// A [`Dedup`] window shared between tasks: a clone handle over a
/// `parking_lot::Mutex`. Each check holds the lock for one O(1) amortized step.
///
/// # Examples
///
/// ```
/// use girder_net::guard::{DedupConfig, Seen, SharedDedup};
///
/// let dedup = SharedDedup::new(DedupConfig::default())?;
/// let other = dedup.clone();
/// assert_eq!(dedup.check(7u64), Seen::First);
/// assert_eq!(other.check(7u64), Seen::Duplicate);
/// # Ok::<(), girder_net::guard::DedupConfigError>(())
/// ```
#[derive(Debug)]
pub struct SharedDedup<K> {
    inner: Arc<Mutex<Dedup<K>>>,
}

impl<K> Clone for SharedDedup<K> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: Hash + Eq + Clone> SharedDedup<K> {
    /// A shared window on the real clock.
    ///
    /// # Errors
    ///
    /// [`DedupConfigError`] if a setting is out of range.
    pub fn new(config: DedupConfig) -> Result<Self, DedupConfigError> {
        Ok(Dedup::new(config)?.into())
    }

    /// A shared window reading time from `clock`.
    ///
    /// # Errors
    ///
    /// [`DedupConfigError`] if a setting is out of range.
    pub fn with_clock(config: DedupConfig, clock: impl Clock) -> Result<Self, DedupConfigError> {
        Ok(Dedup::with_clock(config, clock)?.into())
    }

    /// See [`Dedup::check`].
    pub fn check(&self, id: K) -> Seen {
        self.inner.lock().check(id)
    }

    /// See [`Dedup::contains`].
    pub fn contains(&self, id: &K) -> bool {
        self.inner.lock().contains(id)
    }

    /// See [`Dedup::purge_expired`].
    pub fn purge_expired(&self) -> usize {
        self.inner.lock().purge_expired()
    }

    /// See [`Dedup::len`].
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    /// See [`Dedup::is_empty`].
    pub fn is_empty(&self) -> bool {
        self.inner.lock().is_empty()
    }

    /// See [`Dedup::approx_bytes`].
    pub fn approx_bytes(&self) -> usize {
        self.inner.lock().approx_bytes()
    }

    /// See [`Dedup::stats`].
    pub fn stats(&self) -> DedupStats {
        self.inner.lock().stats()
    }
}

impl<K> From<Dedup<K>> for SharedDedup<K> {
    fn from(dedup: Dedup<K>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(dedup)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::ManualClock;
    use proptest::prelude::*;

    fn window(capacity: usize, ttl_s: u64) -> (Dedup<u32>, ManualClock) {
        let clock = ManualClock::new();
        let config = DedupConfig {
            capacity,
            ttl: Duration::from_secs(ttl_s),
        };
        (Dedup::with_clock(config, clock.clone()).unwrap(), clock)
    }

    #[test]
    fn first_then_duplicate() {
        let (mut d, _) = window(4, 10);
        assert_eq!(d.check(1), Seen::First);
        assert_eq!(d.check(1), Seen::Duplicate);
        assert_eq!(d.check(2), Seen::First);
        let s = d.stats();
        assert_eq!((s.first, s.duplicates, s.len), (2, 1, 2));
    }

    #[test]
    fn ttl_expiry_forgets_the_id() {
        let (mut d, clock) = window(4, 10);
        d.check(1);
        clock.advance(Duration::from_millis(9_999));
        assert_eq!(d.check(1), Seen::Duplicate);
        clock.advance(Duration::from_millis(1));
        assert!(!d.contains(&1));
        assert_eq!(d.check(1), Seen::First);
        assert_eq!(d.stats().expired, 1);
    }

    #[test]
    fn duplicate_does_not_extend_the_window() {
        let (mut d, clock) = window(4, 10);
        d.check(1);
        clock.advance(Duration::from_secs(6));
        assert_eq!(d.check(1), Seen::Duplicate);
        clock.advance(Duration::from_secs(4));
        assert_eq!(d.check(1), Seen::First);
    }

    #[test]
    fn full_window_evicts_the_oldest() {
        let (mut d, _) = window(3, 60);
        for id in 0..3 {
            d.check(id);
        }
        assert_eq!(d.check(3), Seen::First);
        assert_eq!(d.len(), 3);
        assert_eq!(d.stats().evicted_full, 1);
        // 0 was the oldest: evicted early, so it is acted on again.
        assert!(!d.contains(&0));
        assert_eq!(d.check(0), Seen::First);
        assert_eq!(d.check(3), Seen::Duplicate);
    }

    #[test]
    fn purge_expired_counts_what_it_dropped() {
        let (mut d, clock) = window(8, 1);
        for id in 0..5 {
            d.check(id);
        }
        clock.advance(Duration::from_secs(1));
        assert_eq!(d.purge_expired(), 5);
        assert!(d.is_empty());
        assert_eq!(d.stats().expired, 5);
    }

    #[test]
    fn approx_bytes_is_bounded_by_capacity() {
        let (mut d, _) = window(1_000, 60);
        let empty = d.approx_bytes();
        for id in 0..100_000 {
            d.check(id);
        }
        let full = d.approx_bytes();
        assert!(full > empty);
        // The documented bound.
        let slot = mem::size_of::<(u32, Instant)>();
        assert!(full <= 1_000 * (7 * slot + 5), "{full}");
        assert_eq!(d.len(), 1_000);
    }

    #[test]
    fn config_errors_name_the_setting() {
        let zero_cap = DedupConfig {
            capacity: 0,
            ..DedupConfig::default()
        };
        assert!(zero_cap
            .validate()
            .unwrap_err()
            .to_string()
            .contains("dedup.capacity"));
        let zero_ttl = DedupConfig {
            ttl: Duration::ZERO,
            ..DedupConfig::default()
        };
        assert!(Dedup::<u8>::new(zero_ttl)
            .unwrap_err()
            .to_string()
            .contains("dedup.ttl"));
    }

    #[test]
    fn shared_dedup_shares_one_window() {
        let d = SharedDedup::<u8>::new(DedupConfig::default()).unwrap();
        let d2 = d.clone();
        std::thread::spawn(move || assert_eq!(d2.check(1), Seen::First))
            .join()
            .unwrap();
        assert_eq!(d.check(1), Seen::Duplicate);
        assert_eq!(d.len(), 1);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Check(u8),
        Advance(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..24).prop_map(Op::Check),
            1 => (0u16..3_000).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// Against a naive model (linear scan over (id, first seen) in arrival order),
        /// and len() never exceeds capacity.
        #[test]
        fn matches_model_and_never_exceeds_capacity(
            capacity in 1usize..16,
            ttl_ms in 1u64..5_000,
            ops in proptest::collection::vec(op(), 0..300),
        ) {
            let clock = ManualClock::new();
            let ttl = Duration::from_millis(ttl_ms);
            let mut d = Dedup::with_clock(DedupConfig { capacity, ttl }, clock.clone()).unwrap();
            let mut model: VecDeque<(u8, Duration)> = VecDeque::new();
            for op in ops {
                match op {
                    Op::Advance(ms) => clock.advance(Duration::from_millis(ms.into())),
                    Op::Check(id) => {
                        let now = clock.elapsed();
                        model.retain(|&(_, at)| now - at < ttl);
                        let expected = if model.iter().any(|&(m, _)| m == id) {
                            Seen::Duplicate
                        } else {
                            model.push_back((id, now));
                            if model.len() > capacity {
                                model.pop_front();
                            }
                            Seen::First
                        };
                        prop_assert_eq!(d.check(id), expected);
                    }
                }
                prop_assert!(d.len() <= capacity);
                prop_assert_eq!(d.seen.len(), d.order.len());
            }
        }

        /// With room for every id and a ttl longer than the run, each id is reported
        /// First exactly once.
        #[test]
        fn within_the_window_each_id_is_first_exactly_once(
            ids in proptest::collection::vec(0u16..500, 0..400),
            step_ms in 0u64..10,
        ) {
            let clock = ManualClock::new();
            let config = DedupConfig { capacity: 500, ttl: Duration::from_secs(3_600) };
            let mut d = Dedup::with_clock(config, clock.clone()).unwrap();
            let mut firsts = HashMap::new();
            for id in &ids {
                if d.check(*id) == Seen::First {
                    *firsts.entry(*id).or_insert(0u32) += 1;
                }
                clock.advance(Duration::from_millis(step_ms));
                prop_assert!(d.len() <= 500);
            }
            let distinct: std::collections::HashSet<_> = ids.iter().collect();
            prop_assert_eq!(firsts.len(), distinct.len());
            prop_assert!(firsts.values().all(|&n| n == 1));
        }
    }
}
