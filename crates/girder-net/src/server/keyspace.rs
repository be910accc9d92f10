//! The key-value store: `keyspace.shards` processes, keys spread by hash, each shard
//! bounded by its share of `max_keys` and `max_bytes`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use girder::{Actor, Ctx, ExitReason, Flow, Reply, Weight};

use super::Shared;

/// Bytes counted per key on top of its key and value (the map entry, the expiry).
const ENTRY_OVERHEAD: usize = 64;
/// How often a shard sweeps expired keys.
const SWEEP_EVERY: Duration = Duration::from_millis(100);
/// Expired keys removed per sweep at most (more wait for the next sweep or a read).
const SWEEP_MAX: usize = 1_000;

/// `SET`'s options.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SetOpts {
    pub(crate) nx: bool,
    pub(crate) xx: bool,
    pub(crate) get: bool,
    pub(crate) keep_ttl: bool,
    pub(crate) expire: Option<Duration>,
}

/// What `SET` did.
#[derive(Debug)]
pub(crate) enum SetOutcome {
    /// Stored; `old` is the previous value when `GET` was asked.
    Stored { old: Option<Bytes> },
    /// Not stored (`NX`/`XX` condition); `old` as above.
    NotStored { old: Option<Bytes> },
    /// Refused: the shard is at its key or byte limit.
    Oom,
}

/// `INCR`'s failures.
#[derive(Debug)]
pub(crate) enum IncrError {
    NotInteger,
    Overflow,
    Oom,
}

pub(crate) enum KsMsg {
    Get(Bytes, Reply<Option<Bytes>>),
    Set {
        key: Bytes,
        value: Bytes,
        opts: SetOpts,
        reply: Reply<SetOutcome>,
    },
    Del(Bytes, Reply<bool>),
    Exists(Bytes, Reply<bool>),
    Incr(Bytes, i64, Reply<Result<i64, IncrError>>),
    /// `DEBUG SLEEP`: the shard sleeps (a downstream gone slow, for drills).
    Sleep(Duration),
    Sweep,
}

impl Weight for KsMsg {
    fn weight(&self) -> usize {
        64 + match self {
            KsMsg::Get(k, _) | KsMsg::Del(k, _) | KsMsg::Exists(k, _) | KsMsg::Incr(k, _, _) => k.len(),
            KsMsg::Set { key, value, .. } => key.len() + value.len(),
            KsMsg::Sleep(_) | KsMsg::Sweep => 0,
        }
    }
}

struct Entry {
    value: Bytes,
    expires: Option<Instant>,
}

/// One shard.
pub(crate) struct Keyspace {
    shared: Arc<Shared>,
    index: usize,
    map: HashMap<Bytes, Entry>,
    expiries: BinaryHeap<Reverse<(Instant, Bytes)>>,
    bytes: usize,
    max_keys: usize,
    max_bytes: usize,
}

impl Keyspace {
    pub(crate) fn new(shared: Arc<Shared>, index: usize) -> Self {
        let cfg = shared.config.keyspace;
        Keyspace {
            shared,
            index,
            map: HashMap::new(),
            expiries: BinaryHeap::new(),
            bytes: 0,
            max_keys: cfg.max_keys / cfg.shards,
            max_bytes: cfg.max_bytes / cfg.shards,
        }
    }

    fn cost(key: &[u8], value: &[u8]) -> usize {
        key.len() + value.len() + ENTRY_OVERHEAD
    }

    fn live(&mut self, key: &Bytes) -> Option<&Entry> {
        let expired =
            matches!(self.map.get(key), Some(Entry { expires: Some(t), .. }) if *t <= Instant::now());
        if expired {
            self.remove(key);
        }
        self.map.get(key)
    }

    fn remove(&mut self, key: &[u8]) -> bool {
        match self.map.remove(key) {
            Some(e) => {
                self.bytes -= Self::cost(key, &e.value);
                self.shared.levels.keys.fetch_sub(1, Relaxed);
                self.shared
                    .levels
                    .keyspace_bytes
                    .fetch_sub(Self::cost(key, &e.value) as u64, Relaxed);
                true
            }
            None => false,
        }
    }

    /// Stores `value` at `key` (whose old entry, if any, has been looked at), if the
    /// limits allow.
    fn store(&mut self, key: Bytes, value: Bytes, expires: Option<Instant>) -> bool {
        let new_cost = Self::cost(&key, &value);
        let old_cost = self.map.get(&key).map(|e| Self::cost(&key, &e.value));
        let is_new = old_cost.is_none();
        if (is_new && self.map.len() >= self.max_keys)
            || self.bytes - old_cost.unwrap_or(0) + new_cost > self.max_bytes
        {
            return false;
        }
        // Copy: the value is a slice of the connection's read buffer, which it must
        // not keep alive.
        let key = Bytes::copy_from_slice(&key);
        let value = Bytes::copy_from_slice(&value);
        if let Some(t) = expires {
            self.expiries.push(Reverse((t, key.clone())));
        }
        self.bytes = self.bytes - old_cost.unwrap_or(0) + new_cost;
        let levels = &self.shared.levels;
        if is_new {
            levels.keys.fetch_add(1, Relaxed);
        }
        levels.keyspace_bytes.fetch_add(new_cost as u64, Relaxed);
        levels
            .keyspace_bytes
            .fetch_sub(old_cost.unwrap_or(0) as u64, Relaxed);
        self.map.insert(key, Entry { value, expires });
        true
    }

    fn sweep(&mut self) {
        let now = Instant::now();
        let mut n = 0;
        while let Some(Reverse((t, _))) = self.expiries.peek() {
            if *t > now || n >= SWEEP_MAX {
                break;
            }
            let Some(Reverse((t, key))) = self.expiries.pop() else {
                break;
            };
            n += 1;
            if matches!(self.map.get(&key), Some(Entry { expires: Some(e), .. }) if *e == t) {
                self.remove(&key);
            }
        }
        // Stale heap entries (keys overwritten or deleted) are dropped in bulk when
        // they outnumber the live keys.
        if self.expiries.len() > 1024 && self.expiries.len() > 2 * self.map.len() {
            let live: Vec<_> = self
                .map
                .iter()
                .filter_map(|(k, e)| e.expires.map(|t| Reverse((t, k.clone()))))
                .collect();
            self.expiries = live.into();
        }
    }
}

impl Actor for Keyspace {
    type Msg = KsMsg;

    async fn init(&mut self, ctx: &mut Ctx<Self>) -> Result<(), ExitReason> {
        self.shared.keyspace[self.index].write().replace(ctx.addr());
        ctx.send_after(SWEEP_EVERY, KsMsg::Sweep)
            .map_err(|e| ExitReason::custom(e.to_string()))?;
        Ok(())
    }

    async fn handle(&mut self, msg: KsMsg, ctx: &mut Ctx<Self>) -> Flow {
        match msg {
            KsMsg::Get(key, reply) => {
                let v = self.live(&key).map(|e| e.value.clone());
                reply.send(v);
            }
            KsMsg::Set {
                key,
                value,
                opts,
                reply,
            } => {
                let existing = self.live(&key).map(|e| (e.value.clone(), e.expires));
                let old = if opts.get {
                    existing.as_ref().map(|(v, _)| v.clone())
                } else {
                    None
                };
                if (opts.nx && existing.is_some()) || (opts.xx && existing.is_none()) {
                    reply.send(SetOutcome::NotStored { old });
                } else {
                    let expires = match (opts.expire, opts.keep_ttl) {
                        (Some(d), _) => Some(Instant::now() + d),
                        (None, true) => existing.and_then(|(_, t)| t),
                        (None, false) => None,
                    };
                    if self.store(key, value, expires) {
                        reply.send(SetOutcome::Stored { old });
                    } else {
                        reply.send(SetOutcome::Oom);
                    }
                }
            }
            KsMsg::Del(key, reply) => {
                let had = self.live(&key).is_some();
                if had {
                    self.remove(&key);
                }
                reply.send(had);
            }
            KsMsg::Exists(key, reply) => {
                let has = self.live(&key).is_some();
                reply.send(has);
            }
            KsMsg::Incr(key, by, reply) => {
                let cur = self.live(&key).map(|e| (e.value.clone(), e.expires));
                let n = match &cur {
                    None => Ok(0i64),
                    Some((v, _)) => std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .ok_or(IncrError::NotInteger),
                };
                let r = n
                    .and_then(|n| n.checked_add(by).ok_or(IncrError::Overflow))
                    .and_then(|n| {
                        let mut b = itoa::Buffer::new();
                        let v = Bytes::copy_from_slice(b.format(n).as_bytes());
                        if self.store(key, v, cur.and_then(|(_, t)| t)) {
                            Ok(n)
                        } else {
                            Err(IncrError::Oom)
                        }
                    });
                reply.send(r);
            }
            KsMsg::Sleep(d) => tokio::time::sleep(d).await,
            KsMsg::Sweep => {
                self.sweep();
                let _ = ctx.send_after(SWEEP_EVERY, KsMsg::Sweep);
            }
        }
        Flow::Continue
    }

    async fn terminate(&mut self, _reason: &ExitReason, _ctx: &mut Ctx<Self>) {
        let levels = &self.shared.levels;
        levels.keys.fetch_sub(self.map.len() as u64, Relaxed);
        levels.keyspace_bytes.fetch_sub(self.bytes as u64, Relaxed);
        self.map.clear();
        self.bytes = 0;
    }
}

impl Drop for Keyspace {
    fn drop(&mut self) {
        // Killed without `terminate`: the counts still go.
        if !self.map.is_empty() {
            let levels = &self.shared.levels;
            levels.keys.fetch_sub(self.map.len() as u64, Relaxed);
            levels.keyspace_bytes.fetch_sub(self.bytes as u64, Relaxed);
        }
    }
}
