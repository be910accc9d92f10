//! Rate limits per peer address and per connection, with bans for repeat offenders.
//!
//! The PlugAttack / fail2ban model:
//!
//! 1. **Throttle.** Every request spends a token from its connection's bucket
//!    ([`ConnLimiter`], `per_connection_rate`/s, burst `per_connection_burst`) and from
//!    its peer's bucket (`per_peer_rate`/s, burst `per_peer_burst`, shared by all the
//!    peer's connections). Both must allow it. The buckets are governor's GCRA
//!    limiters: over any stretch of `t` seconds a connection gets at most
//!    `burst + rate × t` requests through, and so does a peer.
//! 2. **Strike.** Each refused request is a strike against the peer.
//! 3. **Ban.** `strikes` strikes within `strike_window` ban the peer for
//!    `ban_duration`: its requests on open connections are refused
//!    ([`Decision::Banned`]) and its new connections are refused at accept
//!    ([`PeerGuard::admit_connection`]). One `warn` event is logged per ban.
//!
//! **Who is a peer.** An IPv4 address; an IPv4-mapped IPv6 address counts as its IPv4
//! address; an IPv6 address counts by its `ipv6_prefix_len` prefix (default /64, the
//! smallest block a site is usually given — an attacker holding a /64 has 2^64
//! addresses).
//!
//! **Bounded under a flood of source addresses.** The per-peer bucket table holds at
//! most `max_peers` peers, the strike table at most `max_peers`, the ban table at most
//! `max_bans`. Idle peers (whose bucket is full again) are dropped by housekeeping,
//! which runs from [`PeerGuard::check`] at most every [`HOUSEKEEPING_INTERVAL`] (or
//! whenever you call [`PeerGuard::housekeep`]) using governor's `retain_recent` and
//! `shrink_to_fit`. When a table is full anyway, an entry is evicted to make room and
//! counted in [`RateStats::evictions`]: the least recently active peer's bucket or
//! strike log, or the ban closest to its end. An evicted peer starts again with a
//! full bucket (or no strikes, or no ban). Size the tables above the number of peers
//! you expect to be active at once.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use parking_lot::Mutex;

use super::clock::{Clock, GovernorClock, MonotonicClock};

/// Default [`RateLimits::per_peer_rate`]: 2 000 requests/s.
pub const DEFAULT_PER_PEER_RATE: u32 = 2_000;
/// Default [`RateLimits::per_peer_burst`]: 4 000 requests.
pub const DEFAULT_PER_PEER_BURST: u32 = 4_000;
/// Default [`RateLimits::per_connection_rate`]: 1 000 requests/s.
pub const DEFAULT_PER_CONNECTION_RATE: u32 = 1_000;
/// Default [`RateLimits::per_connection_burst`]: 2 000 requests.
pub const DEFAULT_PER_CONNECTION_BURST: u32 = 2_000;
/// Default [`RateLimits::strikes`]: 50 refused requests.
pub const DEFAULT_STRIKES: u32 = 50;
/// Default [`RateLimits::strike_window`]: 10 s.
pub const DEFAULT_STRIKE_WINDOW: Duration = Duration::from_secs(10);
/// Default [`RateLimits::ban_duration`]: 60 s.
pub const DEFAULT_BAN_DURATION: Duration = Duration::from_secs(60);
/// Default [`RateLimits::max_peers`]: 65 536 peers.
pub const DEFAULT_MAX_PEERS: usize = 65_536;
/// Default [`RateLimits::max_bans`]: 16 384 bans.
pub const DEFAULT_MAX_BANS: usize = 16_384;
/// Default [`RateLimits::ipv6_prefix_len`]: /64.
pub const DEFAULT_IPV6_PREFIX_LEN: u8 = 64;
/// Largest accepted [`RateLimits::strikes`] (each peer's strike log holds that many
/// instants).
pub const MAX_STRIKES: u32 = 1_024;
/// How often [`PeerGuard::check`] runs housekeeping on its own.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(10);

/// Settings of a [`PeerGuard`]. Every field has a safe default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// Requests per second a peer (all its connections together) may sustain
    /// (default 2 000).
    pub per_peer_rate: u32,
    /// Requests a peer may send at once after being idle (default 4 000).
    pub per_peer_burst: u32,
    /// Requests per second one connection may sustain (default 1 000).
    pub per_connection_rate: u32,
    /// Requests one connection may send at once after being idle (default 2 000).
    pub per_connection_burst: u32,
    /// Refused requests within `strike_window` that get a peer banned (default 50, at
    /// most [`MAX_STRIKES`]).
    pub strikes: u32,
    /// The sliding window strikes are counted in (default 10 s).
    #[serde(with = "super::duration_serde")]
    pub strike_window: Duration,
    /// How long a ban lasts (default 60 s).
    #[serde(with = "super::duration_serde")]
    pub ban_duration: Duration,
    /// Most peers tracked in the per-peer bucket table and in the strike table
    /// (default 65 536); past it the least recently active peer is evicted.
    pub max_peers: usize,
    /// Most bans held at once (default 16 384); past it the ban closest to expiry is
    /// evicted.
    pub max_bans: usize,
    /// IPv6 peers are keyed by this many leading bits of their address (default 64,
    /// 1 to 128).
    pub ipv6_prefix_len: u8,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            per_peer_rate: DEFAULT_PER_PEER_RATE,
            per_peer_burst: DEFAULT_PER_PEER_BURST,
            per_connection_rate: DEFAULT_PER_CONNECTION_RATE,
            per_connection_burst: DEFAULT_PER_CONNECTION_BURST,
            strikes: DEFAULT_STRIKES,
            strike_window: DEFAULT_STRIKE_WINDOW,
            ban_duration: DEFAULT_BAN_DURATION,
            max_peers: DEFAULT_MAX_PEERS,
            max_bans: DEFAULT_MAX_BANS,
            ipv6_prefix_len: DEFAULT_IPV6_PREFIX_LEN,
        }
    }
}

impl RateLimits {
    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`RateLimitsError`] naming the first setting out of range.
    pub fn validate(&self) -> Result<(), RateLimitsError> {
        use RateLimitsError as E;
        let positive = [
            (self.per_peer_rate, "rate.per_peer_rate"),
            (self.per_peer_burst, "rate.per_peer_burst"),
            (self.per_connection_rate, "rate.per_connection_rate"),
            (self.per_connection_burst, "rate.per_connection_burst"),
            (self.strikes, "rate.strikes"),
        ];
        for (value, setting) in positive {
            if value == 0 {
                return Err(E::Zero(setting));
            }
        }
        if self.strikes > MAX_STRIKES {
            return Err(E::TooManyStrikes(self.strikes));
        }
        if self.strike_window.is_zero() {
            return Err(E::Zero("rate.strike_window"));
        }
        if self.ban_duration.is_zero() {
            return Err(E::Zero("rate.ban_duration"));
        }
        if self.max_peers == 0 {
            return Err(E::Zero("rate.max_peers"));
        }
        if self.max_bans == 0 {
            return Err(E::Zero("rate.max_bans"));
        }
        if !(1..=128).contains(&self.ipv6_prefix_len) {
            return Err(E::Ipv6PrefixLen(self.ipv6_prefix_len));
        }
        Ok(())
    }

    fn peer_quota(&self) -> Quota {
        quota(self.per_peer_rate, self.per_peer_burst)
    }

    fn connection_quota(&self) -> Quota {
        quota(self.per_connection_rate, self.per_connection_burst)
    }
}

fn quota(rate: u32, burst: u32) -> Quota {
    // validate() has ruled out zeros; max(1) keeps this total anyway.
    let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

/// A [`RateLimits`] setting out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitsError {
    /// The named setting was 0.
    #[error("{0} must be > 0")]
    Zero(&'static str),
    /// `strikes` was above [`MAX_STRIKES`].
    #[error("rate.strikes must be at most {MAX_STRIKES} (got {0}); lengthen rate.strike_window instead")]
    TooManyStrikes(u32),
    /// `ipv6_prefix_len` was outside 1..=128.
    #[error("rate.ipv6_prefix_len must be between 1 and 128 (got {0})")]
    Ipv6PrefixLen(u8),
}

/// A connection refused at accept because its peer is banned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("peer is banned for repeated rate-limit violations; retry in {remaining:?}")]
pub struct Banned {
    /// Time left on the ban.
    pub remaining: Duration,
}

/// The answer of [`PeerGuard::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Serve the request.
    Allow,
    /// Refuse the request: its connection or its peer is over its rate. A strike was
    /// recorded against the peer.
    Limited {
        /// When the refusing bucket will have a token again.
        retry_after: Duration,
    },
    /// Refuse the request: the peer is banned (this request's strike banned it, or it
    /// already was). The server should close the connection.
    Banned {
        /// Time left on the ban.
        remaining: Duration,
    },
}

/// A snapshot of a [`PeerGuard`]'s counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct RateStats {
    /// Requests allowed.
    pub allowed: u64,
    /// Requests refused for rate (each one a strike).
    pub limited: u64,
    /// Bans imposed.
    pub bans: u64,
    /// Connections refused at accept because the peer was banned.
    pub banned_refusals: u64,
    /// Requests refused because the peer was banned.
    pub banned_requests: u64,
    /// Peers in the per-peer bucket table now.
    pub peers_tracked: usize,
    /// Bans held now (expired ones linger until housekeeping).
    pub bans_active: usize,
    /// Entries evicted from a full table (buckets, strike logs, bans).
    pub evictions: u64,
}

#[derive(Debug, Default)]
struct Counters {
    allowed: AtomicU64,
    limited: AtomicU64,
    bans: AtomicU64,
    banned_refusals: AtomicU64,
    banned_requests: AtomicU64,
    evictions: AtomicU64,
    bans_active: AtomicUsize,
}

type PeerLimiter = RateLimiter<IpAddr, PeerBuckets, GovernorClock, NoOpMiddleware<Instant>>;
type DirectLimiter = RateLimiter<NotKeyed, InMemoryState, GovernorClock, NoOpMiddleware<Instant>>;

/// Per-peer rate limits with bans (see the [module docs](self)).
///
/// Cheap to clone: clones share the tables. `Send + Sync`.
///
/// # Examples
///
/// ```
/// use std::net::IpAddr;
/// use std::time::Duration;
/// use girder_net::guard::{Decision, ManualClock, PeerGuard, RateLimits};
///
/// let clock = ManualClock::new();
/// let limits = RateLimits {
///     per_connection_rate: 10,
///     per_connection_burst: 2,
///     strikes: 3,
///     ban_duration: Duration::from_secs(60),
///     ..RateLimits::default()
/// };
/// let guard = PeerGuard::with_clock(limits, clock.clone())?;
/// let peer: IpAddr = "192.0.2.7".parse()?;
///
/// guard.admit_connection(peer)?; // not banned: accept it
/// let conn = guard.conn_limiter();
/// assert_eq!(guard.check(peer, &conn), Decision::Allow);
/// assert_eq!(guard.check(peer, &conn), Decision::Allow);
/// // The burst is spent: refused, one strike.
/// assert!(matches!(guard.check(peer, &conn), Decision::Limited { .. }));
/// assert!(matches!(guard.check(peer, &conn), Decision::Limited { .. }));
/// // The third strike bans the peer; new connections are refused at accept.
/// assert!(matches!(guard.check(peer, &conn), Decision::Banned { .. }));
/// assert!(guard.admit_connection(peer).is_err());
///
/// // Bans run out.
/// clock.advance(Duration::from_secs(60));
/// assert!(guard.admit_connection(peer).is_ok());
/// assert_eq!(guard.stats().bans, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct PeerGuard {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    limits: RateLimits,
    clock: GovernorClock,
    created: Instant,
    peers: PeerLimiter,
    offenders: Mutex<Offenders>,
    counters: Arc<Counters>,
    /// Nanoseconds after `created` when housekeeping is next due.
    next_housekeeping_ns: AtomicU64,
}

/// One connection's rate limit: a governor direct limiter. Made by
/// [`PeerGuard::conn_limiter`], held by the connection, passed to
/// [`PeerGuard::check`].
#[derive(Debug)]
pub struct ConnLimiter {
    limiter: DirectLimiter,
}

impl PeerGuard {
    /// A guard on the real clock.
    ///
    /// # Errors
    ///
    /// [`RateLimitsError`] if a setting is out of range.
    pub fn new(limits: RateLimits) -> Result<Self, RateLimitsError> {
        Self::with_clock(limits, MonotonicClock)
    }

    /// A guard reading time from `clock` (a [`ManualClock`](super::ManualClock) in
    /// tests). Connection limiters it makes read the same clock.
    ///
    /// # Errors
    ///
    /// [`RateLimitsError`] if a setting is out of range.
    pub fn with_clock(limits: RateLimits, clock: impl Clock) -> Result<Self, RateLimitsError> {
        limits.validate()?;
        let clock = GovernorClock(Arc::new(clock));
        let counters = Arc::new(Counters::default());
        let buckets = PeerBuckets::new(limits.max_peers, Arc::clone(&counters));
        let peers = RateLimiter::new(limits.peer_quota(), buckets, clock.clone());
        let created = clock.0.now();
        let next_housekeeping_ns = AtomicU64::new(nanos(HOUSEKEEPING_INTERVAL));
        Ok(Self {
            shared: Arc::new(Shared {
                limits,
                clock,
                created,
                peers,
                offenders: Mutex::new(Offenders::default()),
                counters,
                next_housekeeping_ns,
            }),
        })
    }

    /// Whether to accept a new connection from `ip`: refused while the peer is banned.
    ///
    /// Spends no token: connection-rate limits belong to the acceptor.
    ///
    /// # Errors
    ///
    /// [`Banned`] with the time left on the ban (counted in
    /// [`RateStats::banned_refusals`]).
    pub fn admit_connection(&self, ip: IpAddr) -> Result<(), Banned> {
        let shared = &self.shared;
        let key = shared.key(ip);
        let now = shared.clock.0.now();
        match shared.ban_remaining(key, now) {
            Some(remaining) => {
                shared.counters.banned_refusals.fetch_add(1, Ordering::Relaxed);
                Err(Banned { remaining })
            }
            None => Ok(()),
        }
    }

    /// A rate limiter for one new connection (`per_connection_rate`/s, burst
    /// `per_connection_burst`).
    pub fn conn_limiter(&self) -> ConnLimiter {
        let shared = &self.shared;
        ConnLimiter {
            limiter: RateLimiter::direct_with_clock(shared.limits.connection_quota(), shared.clock.clone()),
        }
    }

    /// Decides one request from `ip` arriving on the connection limited by `conn`.
    ///
    /// Banned peers are refused outright. Otherwise the connection's bucket is asked
    /// first, then the peer's; the request is allowed only if both have a token (a
    /// request the peer's bucket refuses has still spent its connection's token). A
    /// refusal is a strike; the strike that reaches `strikes` within `strike_window`
    /// bans the peer and returns [`Decision::Banned`].
    pub fn check(&self, ip: IpAddr, conn: &ConnLimiter) -> Decision {
        let shared = &self.shared;
        let key = shared.key(ip);
        let now = shared.clock.0.now();
        shared.maybe_housekeep(now);
        if let Some(remaining) = shared.ban_remaining(key, now) {
            shared.counters.banned_requests.fetch_add(1, Ordering::Relaxed);
            return Decision::Banned { remaining };
        }
        let refused = match conn.limiter.check() {
            Err(not_until) => Some(not_until.wait_time_from(now)),
            Ok(()) => shared
                .peers
                .check_key(&key)
                .err()
                .map(|not_until| not_until.wait_time_from(now)),
        };
        match refused {
            None => {
                shared.counters.allowed.fetch_add(1, Ordering::Relaxed);
                Decision::Allow
            }
            Some(retry_after) => {
                shared.counters.limited.fetch_add(1, Ordering::Relaxed);
                shared.strike(key, now, retry_after)
            }
        }
    }

    /// The time left on `ip`'s ban, if it is banned.
    pub fn ban_remaining(&self, ip: IpAddr) -> Option<Duration> {
        let shared = &self.shared;
        shared.ban_remaining(shared.key(ip), shared.clock.0.now())
    }

    /// Drops idle peers (governor's `retain_recent`, then `shrink_to_fit`), expired
    /// bans and stale strike logs. [`check`](Self::check) runs this on its own at most
    /// every [`HOUSEKEEPING_INTERVAL`]; a server may also call it from a timer.
    pub fn housekeep(&self) {
        self.shared.housekeep(self.shared.clock.0.now());
    }

    /// The settings.
    pub fn limits(&self) -> RateLimits {
        self.shared.limits
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> RateStats {
        let c = &self.shared.counters;
        RateStats {
            allowed: c.allowed.load(Ordering::Relaxed),
            limited: c.limited.load(Ordering::Relaxed),
            bans: c.bans.load(Ordering::Relaxed),
            banned_refusals: c.banned_refusals.load(Ordering::Relaxed),
            banned_requests: c.banned_requests.load(Ordering::Relaxed),
            peers_tracked: self.shared.peers.len(),
            bans_active: c.bans_active.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
        }
    }
}

impl Shared {
    fn key(&self, ip: IpAddr) -> IpAddr {
        peer_key(ip, self.limits.ipv6_prefix_len)
    }

    fn ban_remaining(&self, key: IpAddr, now: Instant) -> Option<Duration> {
        // Fast path: no bans, no lock.
        if self.counters.bans_active.load(Ordering::Acquire) == 0 {
            return None;
        }
        let offenders = self.offenders.lock();
        let until = *offenders.bans.get(&key)?;
        (now < until).then(|| until - now)
    }

    fn strike(&self, key: IpAddr, now: Instant, retry_after: Duration) -> Decision {
        let limits = &self.limits;
        let mut guard = self.offenders.lock();
        let offenders = &mut *guard;
        // Each strike makes the peer the most recently active.
        let seq = offenders.next_seq;
        offenders.next_seq += 1;
        offenders.strike_order.push_back((key, seq));
        let log = match offenders.strikes.entry(key) {
            Entry::Occupied(slot) => slot.into_mut(),
            Entry::Vacant(slot) => slot.insert(StrikeLog {
                times: VecDeque::new(),
                seq,
            }),
        };
        log.seq = seq;
        while log
            .times
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= limits.strike_window)
        {
            log.times.pop_front();
        }
        log.times.push_back(now);
        if log.times.len() < limits.strikes as usize {
            let evicted = offenders.cap_strikes(limits.max_peers, key);
            self.counters.evictions.fetch_add(evicted, Ordering::Relaxed);
            return Decision::Limited { retry_after };
        }
        offenders.strikes.remove(&key);
        offenders.expire_bans(now);
        let evicted = offenders.cap_bans(limits.max_bans - 1);
        let until = now + limits.ban_duration;
        offenders.bans.insert(key, until);
        offenders.ban_order.push_back((key, until));
        self.counters
            .bans_active
            .store(offenders.bans.len(), Ordering::Release);
        self.counters.evictions.fetch_add(evicted, Ordering::Relaxed);
        self.counters.bans.fetch_add(1, Ordering::Relaxed);
        drop(guard);
        tracing::warn!(
            peer = %key,
            strikes = limits.strikes,
            window = ?limits.strike_window,
            ban = ?limits.ban_duration,
            "peer banned for repeated rate-limit violations"
        );
        Decision::Banned {
            remaining: limits.ban_duration,
        }
    }

    fn maybe_housekeep(&self, now: Instant) {
        let now_ns = nanos(now.saturating_duration_since(self.created));
        let due = self.next_housekeeping_ns.load(Ordering::Relaxed);
        if now_ns < due {
            return;
        }
        let next = now_ns.saturating_add(nanos(HOUSEKEEPING_INTERVAL));
        // One caller wins the slot; the rest carry on.
        if self
            .next_housekeeping_ns
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.housekeep(now);
        }
    }

    fn housekeep(&self, now: Instant) {
        self.peers.retain_recent();
        self.peers.shrink_to_fit();
        let mut guard = self.offenders.lock();
        let offenders = &mut *guard;
        let window = self.limits.strike_window;
        offenders.strikes.retain(|_, log| {
            log.times
                .back()
                .is_some_and(|&t| now.saturating_duration_since(t) < window)
        });
        offenders.bans.retain(|_, until| now < *until);
        offenders.compact();
        self.counters
            .bans_active
            .store(offenders.bans.len(), Ordering::Release);
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The key a peer is tracked under: IPv4 as is, IPv4-mapped IPv6 as IPv4, other IPv6
/// masked to its first `prefix_len` bits.
fn peer_key(ip: IpAddr, prefix_len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let shift = 128 - u32::from(prefix_len.clamp(1, 128));
                let mask = u128::MAX << shift;
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        },
    }
}

#[derive(Debug, Default)]
struct Offenders {
    strikes: HashMap<IpAddr, StrikeLog>,
    /// Strike logs in order of their last strike, `(key, seq)`; entries whose seq no
    /// longer     /// matches the log are stale and skipped.
    strike_order: VecDeque<(IpAddr, u64)>,
    next_seq: u64,
    /// key → ban end.
    bans: HashMap<IpAddr, Instant>,
    /// Bans in creation order, which is expiry order (all bans last the same).
    ban_order: VecDeque<(IpAddr, Instant)>,
}

#[derive(Debug)]
struct StrikeLog {
    /// Strike instants within the window, oldest first (at most `strikes`).
    times: VecDeque<Instant>,
    seq: u64,
}

impl Offenders {
    /// Evicts the least recently struck logs (never `keep`) until at most `max` remain.
    fn cap_strikes(&mut self, max: usize, keep: IpAddr) -> u64 {
        let mut evicted = 0;
        while self.strikes.len() > max {
            let Some((key, seq)) = self.strike_order.pop_front() else {
                break;
            };
            if key == keep {
                self.strike_order.push_back((key, seq));
                continue;
            }
            if self.strikes.get(&key).is_some_and(|log| log.seq == seq) {
                self.strikes.remove(&key);
                evicted += 1;
            }
        }
        self.compact_if_bloated();
        evicted
    }

    /// Drops expired bans (and stale order entries) from the front of the queue.
    fn expire_bans(&mut self, now: Instant) {
        while let Some(&(key, until)) = self.ban_order.front() {
            let current = self.bans.get(&key) == Some(&until);
            if current && now < until {
                break;
            }
            self.ban_order.pop_front();
            if current {
                self.bans.remove(&key);
            }
        }
    }

    /// Evicts the bans closest to expiry until at most `max` remain.
    fn cap_bans(&mut self, max: usize) -> u64 {
        let mut evicted = 0;
        while self.bans.len() > max {
            let Some((key, until)) = self.ban_order.pop_front() else {
                break;
            };
            if self.bans.get(&key) == Some(&until) {
                self.bans.remove(&key);
                evicted += 1;
            }
        }
        self.compact_if_bloated();
        evicted
    }

    fn compact_if_bloated(&mut self) {
        if self.strike_order.len() > 2 * self.strikes.len() + 64
            || self.ban_order.len() > 2 * self.bans.len() + 64
        {
            self.compact();
        }
    }

    /// Drops stale order entries and spare capacity.
    fn compact(&mut self) {
        let strikes = &self.strikes;
        self.strike_order
            .retain(|(key, seq)| strikes.get(key).is_some_and(|log| log.seq == *seq));
        let bans = &self.bans;
        self.ban_order.retain(|(key, until)| bans.get(key) == Some(until));
        self.strikes.shrink_to_fit();
        self.strike_order.shrink_to_fit();
        self.bans.shrink_to_fit();
        self.ban_order.shrink_to_fit();
    }
}

/// governor's keyed state store, bounded: governor's GCRA decides, this table only
/// holds each peer's state (its theoretical arrival time) and refuses to grow past
/// `max` peers, evicting the least recently active instead (an LRU with lazy
/// deletion: every access appends `(key, seq)` to a queue and stale entries are
/// skipped, or compacted away once they outnumber the live ones — O(1) amortized).
#[derive(Debug)]
struct PeerBuckets {
    max: usize,
    table: Mutex<BucketTable>,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct BucketTable {
    /// key → (governor state, seq of last access). State 0 means "never used".
    map: HashMap<IpAddr, (u64, u64)>,
    /// Accesses in order, `(key, seq)`; stale when the seq no longer matches.
    order: VecDeque<(IpAddr, u64)>,
    next_seq: u64,
}

impl PeerBuckets {
    fn new(max: usize, counters: Arc<Counters>) -> Self {
        Self {
            max,
            table: Mutex::new(BucketTable::default()),
            counters,
        }
    }
}

impl BucketTable {
    fn evict_least_recent(&mut self) -> bool {
        while let Some((key, seq)) = self.order.pop_front() {
            if self.map.get(&key).is_some_and(|&(_, s)| s == seq) {
                self.map.remove(&key);
                return true;
            }
        }
        false
    }

    fn compact(&mut self) {
        let map = &self.map;
        self.order
            .retain(|(key, seq)| map.get(key).is_some_and(|&(_, s)| s == *seq));
    }
}

impl StateStore for PeerBuckets {
    type Key = IpAddr;

    fn measure_and_replace<T, F, E>(&self, key: &IpAddr, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut guard = self.table.lock();
        let table = &mut *guard;
        let seq = table.next_seq;
        table.next_seq += 1;
        let result = if let Some((state, last)) = table.map.get_mut(key) {
            // Refused or not, the peer is active: it moves to the back.
            *last = seq;
            f(NonZeroU64::new(*state).map(|n| Nanos::from(n.get()))).map(|(result, next)| {
                *state = next.into();
                result
            })
        } else {
            let (result, next) = f(None)?;
            if table.map.len() >= self.max && table.evict_least_recent() {
                self.counters.evictions.fetch_add(1, Ordering::Relaxed);
            }
            table.map.insert(*key, (next.into(), seq));
            Ok(result)
        };
        table.order.push_back((*key, seq));
        if table.order.len() > 2 * table.map.len() + 64 {
            table.compact();
        }
        result
    }
}

impl ShrinkableKeyedStateStore<IpAddr> for PeerBuckets {
    fn retain_recent(&self, drop_below: Nanos) {
        let drop_below = u64::from(drop_below);
        let mut table = self.table.lock();
        table.map.retain(|_, &mut (state, _)| state > drop_below);
        table.compact();
    }

    fn shrink_to_fit(&self) {
        let mut table = self.table.lock();
        table.map.shrink_to_fit();
        table.order.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.table.lock().map.len()
    }

    fn is_empty(&self) -> bool {
        self.table.lock().map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::ManualClock;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    fn guard(limits: RateLimits) -> (PeerGuard, ManualClock) {
        let clock = ManualClock::new();
        (PeerGuard::with_clock(limits, clock.clone()).unwrap(), clock)
    }

    /// Loose per-peer limits, so the connection limit is the one that bites.
    fn conn_only(rate: u32, burst: u32) -> RateLimits {
        RateLimits {
            per_connection_rate: rate,
            per_connection_burst: burst,
            per_peer_rate: 1_000_000,
            per_peer_burst: 1_000_000,
            strikes: MAX_STRIKES,
            ..RateLimits::default()
        }
    }

    fn allowed(g: &PeerGuard, ip: IpAddr, conn: &ConnLimiter, n: usize) -> usize {
        (0..n).filter(|_| g.check(ip, conn) == Decision::Allow).count()
    }

    #[test]
    fn connection_burst_then_rate() {
        let (g, clock) = guard(conn_only(10, 5));
        let conn = g.conn_limiter();
        assert_eq!(allowed(&g, PEER, &conn, 20), 5);
        clock.advance(Duration::from_millis(100));
        assert_eq!(allowed(&g, PEER, &conn, 20), 1);
        clock.advance(Duration::from_secs(1));
        assert_eq!(allowed(&g, PEER, &conn, 20), 5, "refills to the burst, no more");
    }

    #[test]
    fn limited_reports_retry_after() {
        let (g, _) = guard(conn_only(10, 1));
        let conn = g.conn_limiter();
        assert_eq!(g.check(PEER, &conn), Decision::Allow);
        assert_eq!(
            g.check(PEER, &conn),
            Decision::Limited {
                retry_after: Duration::from_millis(100)
            }
        );
    }

    #[test]
    fn peer_limit_is_shared_by_its_connections() {
        let (g, _) = guard(RateLimits {
            per_peer_rate: 1,
            per_peer_burst: 4,
            strikes: MAX_STRIKES,
            ..RateLimits::default()
        });
        let conns: Vec<_> = (0..4).map(|_| g.conn_limiter()).collect();
        let total: usize = conns.iter().map(|c| allowed(&g, PEER, c, 3)).sum();
        assert_eq!(total, 4);
        // Another peer has its own bucket.
        let other = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9));
        assert_eq!(allowed(&g, other, &g.conn_limiter(), 3), 3);
    }

    #[test]
    fn connection_limit_is_per_connection() {
        let (g, _) = guard(conn_only(1, 2));
        let a = g.conn_limiter();
        let b = g.conn_limiter();
        assert_eq!(allowed(&g, PEER, &a, 5), 2);
        assert_eq!(allowed(&g, PEER, &b, 5), 2);
    }

    #[test]
    fn strikes_within_window_ban_and_refuse_at_accept() {
        let (g, clock) = guard(RateLimits {
            strikes: 3,
            strike_window: Duration::from_secs(10),
            ban_duration: Duration::from_secs(30),
            ..conn_only(1, 1)
        });
        let conn = g.conn_limiter();
        assert_eq!(g.check(PEER, &conn), Decision::Allow);
        assert!(matches!(g.check(PEER, &conn), Decision::Limited { .. }));
        assert!(matches!(g.check(PEER, &conn), Decision::Limited { .. }));
        assert_eq!(
            g.check(PEER, &conn),
            Decision::Banned {
                remaining: Duration::from_secs(30)
            }
        );
        clock.advance(Duration::from_secs(10));
        assert_eq!(
            g.admit_connection(PEER),
            Err(Banned {
                remaining: Duration::from_secs(20)
            })
        );
        // Banned on every connection, even with tokens to spare.
        assert!(matches!(
            g.check(PEER, &g.conn_limiter()),
            Decision::Banned { .. }
        ));
        clock.advance(Duration::from_secs(20));
        assert_eq!(g.admit_connection(PEER), Ok(()));
        assert_eq!(g.check(PEER, &conn), Decision::Allow);
        let s = g.stats();
        assert_eq!(
            (s.limited, s.bans, s.banned_refusals, s.banned_requests),
            (3, 1, 1, 1)
        );
    }

    #[test]
    fn strikes_outside_the_window_do_not_ban() {
        let (g, clock) = guard(RateLimits {
            strikes: 3,
            strike_window: Duration::from_secs(10),
            ..conn_only(1_000, 1)
        });
        let conn = g.conn_limiter();
        for _ in 0..10 {
            g.check(PEER, &conn);
            assert!(matches!(g.check(PEER, &conn), Decision::Limited { .. }));
            clock.advance(Duration::from_secs(6));
        }
        assert_eq!(g.stats().bans, 0);
        assert_eq!(g.ban_remaining(PEER), None);
    }

    #[test]
    fn ipv6_peers_share_their_prefix_and_mapped_ipv4_is_ipv4() {
        let (g, _) = guard(RateLimits {
            per_peer_rate: 1,
            per_peer_burst: 1,
            strikes: MAX_STRIKES,
            ..RateLimits::default()
        });
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(g.check(a, &g.conn_limiter()), Decision::Allow);
        assert!(matches!(g.check(b, &g.conn_limiter()), Decision::Limited { .. }));
        assert_eq!(g.check(c, &g.conn_limiter()), Decision::Allow);
        let v4: IpAddr = "203.0.113.5".parse().unwrap();
        let mapped: IpAddr = "::ffff:203.0.113.5".parse().unwrap();
        assert_eq!(g.check(v4, &g.conn_limiter()), Decision::Allow);
        assert!(matches!(
            g.check(mapped, &g.conn_limiter()),
            Decision::Limited { .. }
        ));
        assert_eq!(peer_key(a, 128), a);
    }

    #[test]
    fn flood_of_distinct_addresses_stays_bounded() {
        let (g, _) = guard(RateLimits {
            max_peers: 100,
            max_bans: 10,
            strikes: 1,
            ..RateLimits::default()
        });
        for i in 0..5_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            g.check(ip, &g.conn_limiter());
        }
        let s = g.stats();
        assert_eq!(s.peers_tracked, 100);
        assert_eq!(s.evictions, 4_900);
        assert_eq!(s.allowed, 5_000);
    }

    #[test]
    fn active_peer_survives_a_flood_of_new_addresses() {
        let (g, _) = guard(RateLimits {
            per_peer_rate: 1,
            per_peer_burst: 2,
            max_peers: 10,
            strikes: MAX_STRIKES,
            ..RateLimits::default()
        });
        let conn = g.conn_limiter();
        assert_eq!(allowed(&g, PEER, &conn, 3), 2);
        for i in 0..100u32 {
            g.check(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), &g.conn_limiter());
            if i % 5 == 0 {
                // Still limited: its spent bucket was not evicted and refilled.
                assert!(matches!(g.check(PEER, &conn), Decision::Limited { .. }));
            }
        }
        assert!(g.stats().evictions >= 90);
    }

    #[test]
    fn ban_table_is_bounded_and_evicts_the_oldest_ban() {
        let (g, _) = guard(RateLimits {
            max_bans: 3,
            strikes: 1,
            ..conn_only(1, 1)
        });
        let ips: Vec<IpAddr> = (1..=5u8)
            .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)))
            .collect();
        for ip in &ips {
            let conn = g.conn_limiter();
            g.check(*ip, &conn);
            assert!(matches!(g.check(*ip, &conn), Decision::Banned { .. }));
        }
        let s = g.stats();
        assert_eq!((s.bans, s.bans_active, s.evictions), (5, 3, 2));
        assert!(g.admit_connection(ips[0]).is_ok(), "oldest ban evicted");
        assert!(g.admit_connection(ips[4]).is_err());
    }

    #[test]
    fn housekeeping_drops_idle_peers_and_expired_bans() {
        let (g, clock) = guard(RateLimits {
            strikes: 1,
            ban_duration: Duration::from_secs(5),
            ..conn_only(10, 1)
        });
        let conn = g.conn_limiter();
        for i in 0..50u8 {
            g.check(IpAddr::V4(Ipv4Addr::new(10, 1, 0, i)), &g.conn_limiter());
        }
        g.check(PEER, &conn);
        g.check(PEER, &conn);
        assert_eq!(g.stats().bans_active, 1);
        assert_eq!(g.stats().peers_tracked, 51);
        clock.advance(Duration::from_secs(6));
        g.housekeep();
        let s = g.stats();
        assert_eq!((s.peers_tracked, s.bans_active), (0, 0));
    }

    #[test]
    fn check_runs_housekeeping_on_its_own() {
        let (g, clock) = guard(RateLimits::default());
        for i in 0..20u8 {
            g.check(IpAddr::V4(Ipv4Addr::new(10, 2, 0, i)), &g.conn_limiter());
        }
        assert_eq!(g.stats().peers_tracked, 20);
        clock.advance(HOUSEKEEPING_INTERVAL);
        g.check(PEER, &g.conn_limiter());
        assert_eq!(g.stats().peers_tracked, 1);
    }

    #[test]
    fn limits_errors_name_the_setting() {
        let cases: [(RateLimits, &str); 8] = [
            (
                RateLimits {
                    per_peer_rate: 0,
                    ..Default::default()
                },
                "rate.per_peer_rate",
            ),
            (
                RateLimits {
                    per_peer_burst: 0,
                    ..Default::default()
                },
                "rate.per_peer_burst must be > 0",
            ),
            (
                RateLimits {
                    per_connection_burst: 0,
                    ..Default::default()
                },
                "rate.per_connection_burst",
            ),
            (
                RateLimits {
                    strikes: MAX_STRIKES + 1,
                    ..Default::default()
                },
                "rate.strikes",
            ),
            (
                RateLimits {
                    strike_window: Duration::ZERO,
                    ..Default::default()
                },
                "rate.strike_window",
            ),
            (
                RateLimits {
                    ban_duration: Duration::ZERO,
                    ..Default::default()
                },
                "rate.ban_duration",
            ),
            (
                RateLimits {
                    max_peers: 0,
                    ..Default::default()
                },
                "rate.max_peers",
            ),
            (
                RateLimits {
                    ipv6_prefix_len: 0,
                    ..Default::default()
                },
                "rate.ipv6_prefix_len",
            ),
        ];
        for (limits, name) in cases {
            let err = PeerGuard::new(limits).unwrap_err().to_string();
            assert!(err.contains(name), "{err} should name {name}");
        }
        assert!(RateLimits::default().validate().is_ok());
    }

    #[test]
    fn limits_load_from_toml_with_defaults_and_reject_unknown_fields() {
        let limits: RateLimits = toml::from_str(
            r#"
            per_connection_rate = 50
            strike_window = "30s"
            ban_duration = 600
            "#,
        )
        .unwrap();
        assert_eq!(limits.per_connection_rate, 50);
        assert_eq!(limits.strike_window, Duration::from_secs(30));
        assert_eq!(limits.ban_duration, Duration::from_secs(600));
        assert_eq!(limits.max_peers, DEFAULT_MAX_PEERS);
        let err = toml::from_str::<RateLimits>("per_peer_rte = 5").unwrap_err();
        assert!(err.to_string().contains("per_peer_rte"), "{err}");
        let round_trip: RateLimits =
            toml::from_str(&toml::to_string(&RateLimits::default()).unwrap()).unwrap();
        assert_eq!(round_trip, RateLimits::default());
    }

    #[test]
    fn concurrent_checks_account_for_every_request() {
        let (g, clock) = guard(RateLimits {
            max_peers: 16,
            max_bans: 4,
            strikes: 5,
            ..conn_only(100, 10)
        });
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let g = g.clone();
                let clock = clock.clone();
                std::thread::spawn(move || {
                    let conn = g.conn_limiter();
                    for i in 0..2_000u32 {
                        let ip = IpAddr::V4(Ipv4Addr::new(10, t, 0, (i % 40) as u8));
                        g.check(ip, &conn);
                        if i % 100 == 0 {
                            clock.advance(Duration::from_secs(1));
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = g.stats();
        assert_eq!(s.allowed + s.limited + s.banned_requests, 8_000);
        assert!(s.peers_tracked <= 16 && s.bans_active <= 4, "{s:?}");
    }

    #[test]
    fn guard_and_limiter_are_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<PeerGuard>();
        assert_send_sync::<ConnLimiter>();
    }

    #[test]
    fn bucket_table_evicts_least_recent_and_keeps_its_order_queue_bounded() {
        let buckets = PeerBuckets::new(8, Arc::new(Counters::default()));
        let touch = |i: u32| {
            let ip = IpAddr::V4(Ipv4Addr::from(i));
            buckets
                .measure_and_replace(&ip, |_| Ok::<_, ()>(((), Nanos::from(1_000))))
                .unwrap();
        };
        for round in 0..50 {
            for i in 0..20 {
                touch(i);
            }
            if round % 3 == 0 {
                buckets.retain_recent(Nanos::from(5_000));
            }
        }
        let table = buckets.table.lock();
        assert_eq!(table.map.len(), 8);
        assert!(table.order.len() <= 2 * 8 + 64, "{}", table.order.len());
        // The newest keys survived.
        assert!((12..20).all(|i| table.map.contains_key(&IpAddr::V4(Ipv4Addr::from(i)))));
        assert!(buckets.counters.evictions.load(Ordering::Relaxed) > 0);
    }

    /// Rates that divide a second into whole nanoseconds, so governor's replenish
    /// interval is exact and the bound below is exact too.
    const EXACT_RATES: [u32; 10] = [1, 2, 4, 5, 8, 10, 20, 25, 50, 100];

    proptest! {
        /// Over any schedule on a manual clock, a connection's admitted requests never
        /// exceed `burst + rate × elapsed`.
        #[test]
        fn admitted_requests_never_exceed_burst_plus_rate_times_elapsed(
            rate_ix in 0usize..EXACT_RATES.len(),
            burst in 1u32..20,
            strikes in 1u32..50,
            steps in proptest::collection::vec((0u64..400, 0usize..30), 1..60),
        ) {
            let rate = EXACT_RATES[rate_ix];
            let (g, clock) = guard(RateLimits {
                per_connection_rate: rate,
                per_connection_burst: burst,
                strikes,
                ban_duration: Duration::from_millis(700),
                ..RateLimits::default()
            });
            let conn = g.conn_limiter();
            let mut admitted = 0u64;
            for (advance_ms, requests) in steps {
                clock.advance(Duration::from_millis(advance_ms));
                admitted += allowed(&g, PEER, &conn, requests) as u64;
                let elapsed_ms = clock.elapsed().as_millis() as u64;
                let bound = u64::from(burst) + u64::from(rate) * elapsed_ms / 1_000;
                prop_assert!(admitted <= bound, "{admitted} > {bound} after {elapsed_ms} ms");
            }
        }

        /// The same bound holds for a peer across all its connections.
        #[test]
        fn peer_admitted_requests_never_exceed_burst_plus_rate_times_elapsed(
            rate_ix in 0usize..EXACT_RATES.len(),
            burst in 1u32..20,
            connections in 1usize..5,
            steps in proptest::collection::vec((0u64..400, 0usize..5, 0usize..10), 1..60),
        ) {
            let rate = EXACT_RATES[rate_ix];
            let (g, clock) = guard(RateLimits {
                per_peer_rate: rate,
                per_peer_burst: burst,
                strikes: MAX_STRIKES,
                ..RateLimits::default()
            });
            let conns: Vec<_> = (0..connections).map(|_| g.conn_limiter()).collect();
            let mut admitted = 0u64;
            for (advance_ms, conn, requests) in steps {
                clock.advance(Duration::from_millis(advance_ms));
                admitted += allowed(&g, PEER, &conns[conn % connections], requests) as u64;
                let elapsed_ms = clock.elapsed().as_millis() as u64;
                let bound = u64::from(burst) + u64::from(rate) * elapsed_ms / 1_000;
                prop_assert!(admitted <= bound, "{admitted} > {bound} after {elapsed_ms} ms");
            }
        }
    }
}
