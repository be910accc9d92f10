//! The pub/sub registry: one process that owns every subscription and fans published
//! messages out.
//!
//! A published message is encoded once ([`Frame::bulks`]) and the same buffer is
//! queued on every subscriber's [`Output`](super::output::Output): memory grows with
//! messages, not messages × subscribers. A subscriber whose output refuses a message
//! (its limits, or the node budget while it holds more than its fair share) is
//! disconnected at once and its subscriptions removed. Subscription confirmations are
//! queued by the registry itself, so a confirmation always precedes the messages of
//! its channel.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use girder::process::{Down, MonitorRef, Pid};
use girder::{Actor, Ctx, ExitReason, Flow, Reply, Weight};

use super::conn::ConnState;
use super::glob;
use super::output::Refusal;
use super::Shared;
use crate::guard::{Dedup, DedupConfig, Seen};
use crate::resp::{self, Frame};

/// Why a subscription was refused.
#[derive(Debug)]
pub(crate) enum SubError {
    TooManyForClient(usize),
    TooManyChannels(usize),
    TooManyPatterns(usize),
    NameTooLong(usize),
}

impl SubError {
    pub(crate) fn message(&self) -> String {
        match self {
            SubError::TooManyForClient(n) => {
                format!("ERR max subscriptions per client reached ({n}); unsubscribe first or raise pubsub.max_subscriptions_per_client")
            }
            SubError::TooManyChannels(n) => {
                format!("ERR max channels reached ({n}); raise pubsub.max_channels")
            }
            SubError::TooManyPatterns(n) => {
                format!("ERR max patterns reached ({n}); raise pubsub.max_patterns")
            }
            SubError::NameTooLong(n) => {
                format!("ERR channel name or pattern longer than {n} bytes; raise pubsub.max_name_len")
            }
        }
    }
}

pub(crate) enum PsMsg {
    Subscribe {
        conn: Arc<ConnState>,
        names: Vec<Bytes>,
        pattern: bool,
        reply: Reply<Result<(), SubError>>,
    },
    Unsubscribe {
        conn: Arc<ConnState>,
        names: Vec<Bytes>,
        pattern: bool,
        /// Queue the confirmations (`RESET` leaves pub/sub mode without them).
        notify: bool,
        reply: Reply<()>,
    },
    Publish {
        channel: Bytes,
        payload: Bytes,
        reply: Reply<usize>,
    },
    /// Publish unless `id` was seen within the dedup window: `None` for a duplicate.
    PublishOnce {
        channel: Bytes,
        id: Bytes,
        payload: Bytes,
        reply: Reply<Option<usize>>,
    },
}

impl Weight for PsMsg {
    fn weight(&self) -> usize {
        64 + match self {
            PsMsg::Subscribe { names, .. } | PsMsg::Unsubscribe { names, .. } => {
                names.iter().map(Bytes::len).sum()
            }
            PsMsg::Publish { channel, payload, .. } => channel.len() + payload.len(),
            PsMsg::PublishOnce {
                channel, id, payload, ..
            } => channel.len() + id.len() + payload.len(),
        }
    }
}

struct Subscriber {
    conn: Arc<ConnState>,
    channels: HashSet<Bytes>,
    patterns: HashSet<Bytes>,
    monitor: MonitorRef,
}

/// The registry process.
pub(crate) struct PubSub {
    shared: Arc<Shared>,
    channels: HashMap<Bytes, HashSet<Pid>>,
    patterns: HashMap<Bytes, HashSet<Pid>>,
    subs: HashMap<Pid, Subscriber>,
    /// Subscriptions of all connections (channels and patterns).
    total: usize,
    dedup: Dedup<Bytes>,
}

impl PubSub {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let d = shared.config.dedup;
        let dedup = Dedup::new(DedupConfig {
            capacity: d.capacity,
            ttl: std::time::Duration::from_millis(d.ttl_ms),
        })
        .expect("dedup settings are validated with the server configuration");
        PubSub {
            shared,
            channels: HashMap::new(),
            patterns: HashMap::new(),
            subs: HashMap::new(),
            total: 0,
            dedup,
        }
    }

    fn update_levels(&self) {
        let l = &self.shared.levels;
        l.channels.store(self.channels.len() as u64, Relaxed);
        l.patterns.store(self.patterns.len() as u64, Relaxed);
        l.subscriptions.store(self.total as u64, Relaxed);
        l.dedup_ids.store(self.dedup.len() as u64, Relaxed);
    }

    fn confirm(kind: &str, name: Option<&[u8]>, count: usize) -> Bytes {
        let mut out = BytesMut::with_capacity(32 + name.map_or(0, <[u8]>::len));
        resp::array_len(&mut out, 3);
        resp::bulk(&mut out, kind.as_bytes());
        match name {
            Some(n) => resp::bulk(&mut out, n),
            None => resp::null_bulk(&mut out),
        }
        resp::integer(&mut out, count as i64);
        out.freeze()
    }

    /// Queues `frame` on `pid`'s output; a refusal that disconnects is carried out.
    fn deliver(&mut self, ctx: &Ctx<Self>, pid: Pid, frame: &Bytes) -> bool {
        let Some(sub) = self.subs.get(&pid) else {
            return false;
        };
        match sub.conn.output.push_message(frame.clone()) {
            Ok(()) => true,
            Err(Refusal::BudgetDrop) => {
                self.shared.counters.output_budget_drops(1);
                false
            }
            Err(Refusal::Closed) => false,
            Err(r) => {
                match r {
                    Refusal::Hard => self.shared.counters.output_hard_disconnects(1),
                    Refusal::Soft => self.shared.counters.output_soft_disconnects(1),
                    _ => self.shared.counters.output_budget_disconnects(1),
                }
                tracing::info!(conn = sub.conn.id, peer = %sub.conn.peer, reason = r.reason(), "disconnecting a subscriber");
                sub.conn.output.close(false);
                ctx.exit(pid, ExitReason::custom(r.reason()));
                self.drop_subscriber(ctx, pid);
                false
            }
        }
    }

    fn drop_subscriber(&mut self, ctx: &Ctx<Self>, pid: Pid) {
        if let Some(sub) = self.subs.remove(&pid) {
            ctx.demonitor(sub.monitor);
            self.total -= sub.channels.len() + sub.patterns.len();
            for c in &sub.channels {
                remove_member(&mut self.channels, c, pid);
            }
            for p in &sub.patterns {
                remove_member(&mut self.patterns, p, pid);
            }
            sub.conn.subs.store(0, Relaxed);
        }
    }

    fn publish(&mut self, ctx: &Ctx<Self>, channel: &Bytes, payload: &Bytes) -> usize {
        self.shared.counters.published(1);
        let mut n = 0;
        if let Some(members) = self.channels.get(channel) {
            let frame = Frame::bulks(&[b"message", channel, payload]);
            let members: Vec<Pid> = members.iter().copied().collect();
            for pid in members {
                n += usize::from(self.deliver(ctx, pid, &frame));
            }
        }
        if !self.patterns.is_empty() {
            let hits: Vec<(Bytes, Vec<Pid>)> = self
                .patterns
                .iter()
                .filter(|(p, _)| glob::matches(p, channel))
                .map(|(p, m)| (p.clone(), m.iter().copied().collect()))
                .collect();
            for (pattern, members) in hits {
                let frame = Frame::bulks(&[b"pmessage", &pattern, channel, payload]);
                for pid in members {
                    n += usize::from(self.deliver(ctx, pid, &frame));
                }
            }
        }
        self.shared.counters.delivered(n as u64);
        self.update_levels();
        n
    }

    fn subscribe(
        &mut self,
        ctx: &Ctx<Self>,
        conn: Arc<ConnState>,
        names: Vec<Bytes>,
        pattern: bool,
    ) -> Result<(), SubError> {
        let Some(pid) = conn.pid.get().copied() else {
            return Ok(());
        };
        let cfg = self.shared.config.pubsub;
        if let std::collections::hash_map::Entry::Vacant(slot) = self.subs.entry(pid) {
            // A connection already gone cannot be monitored: nothing to subscribe.
            let Ok(monitor) = ctx.monitor(pid) else {
                return Ok(());
            };
            slot.insert(Subscriber {
                conn: conn.clone(),
                channels: HashSet::new(),
                patterns: HashSet::new(),
                monitor,
            });
        }
        let mut result = Ok(());
        for name in names {
            let sub = self.subs.get_mut(&pid).expect("inserted above");
            let count = sub.channels.len() + sub.patterns.len();
            let (mine, table, max) = if pattern {
                (&mut sub.patterns, &mut self.patterns, cfg.max_patterns)
            } else {
                (&mut sub.channels, &mut self.channels, cfg.max_channels)
            };
            if !mine.contains(&name) {
                let refusal = if name.len() > cfg.max_name_len {
                    Some(SubError::NameTooLong(cfg.max_name_len))
                } else if count >= cfg.max_subscriptions_per_client {
                    Some(SubError::TooManyForClient(cfg.max_subscriptions_per_client))
                } else if !table.contains_key(&name) && table.len() >= max {
                    Some(if pattern {
                        SubError::TooManyPatterns(max)
                    } else {
                        SubError::TooManyChannels(max)
                    })
                } else {
                    None
                };
                if let Some(e) = refusal {
                    self.shared.counters.subscription_refusals(1);
                    result = Err(e);
                    break;
                }
                let name = Bytes::copy_from_slice(&name);
                mine.insert(name.clone());
                table.entry(name).or_default().insert(pid);
                self.total += 1;
            }
            let count = sub.channels.len() + sub.patterns.len();
            conn.subs.store(count, Relaxed);
            let frame = Self::confirm(
                if pattern { "psubscribe" } else { "subscribe" },
                Some(&name),
                count,
            );
            if !self.deliver(ctx, pid, &frame) {
                break;
            }
        }
        if self
            .subs
            .get(&pid)
            .is_some_and(|s| s.channels.is_empty() && s.patterns.is_empty())
        {
            self.drop_subscriber(ctx, pid);
        }
        self.update_levels();
        result
    }

    fn unsubscribe(
        &mut self,
        ctx: &Ctx<Self>,
        conn: &ConnState,
        names: Vec<Bytes>,
        pattern: bool,
        notify: bool,
    ) {
        let Some(pid) = conn.pid.get().copied() else {
            return;
        };
        let kind = if pattern { "punsubscribe" } else { "unsubscribe" };
        let Some(sub) = self.subs.get_mut(&pid) else {
            // Not subscribed to anything: Redis still answers, once per name or once
            // with a nil name.
            let frames: Vec<Bytes> = if names.is_empty() {
                vec![Self::confirm(kind, None, 0)]
            } else {
                names.iter().map(|n| Self::confirm(kind, Some(n), 0)).collect()
            };
            if notify {
                for f in frames {
                    let _ = conn.output.push_reply(f);
                }
            }
            return;
        };
        let names: Vec<Bytes> = if names.is_empty() {
            let mut all: Vec<Bytes> = if pattern {
                sub.patterns.iter().cloned().collect()
            } else {
                sub.channels.iter().cloned().collect()
            };
            all.sort();
            all
        } else {
            names
        };
        let mut frames = Vec::with_capacity(names.len().max(1));
        for name in &names {
            let (mine, table) = if pattern {
                (&mut sub.patterns, &mut self.patterns)
            } else {
                (&mut sub.channels, &mut self.channels)
            };
            if mine.remove(name) {
                remove_member(table, name, pid);
                self.total -= 1;
            }
            frames.push(Self::confirm(
                kind,
                Some(name),
                sub.channels.len() + sub.patterns.len(),
            ));
        }
        if frames.is_empty() {
            frames.push(Self::confirm(kind, None, sub.channels.len() + sub.patterns.len()));
        }
        let left = sub.channels.len() + sub.patterns.len();
        conn.subs.store(left, Relaxed);
        if !notify {
            frames.clear();
        }
        for f in frames {
            if !self.deliver(ctx, pid, &f) {
                break;
            }
        }
        if left == 0 {
            self.drop_subscriber(ctx, pid);
        }
        self.update_levels();
    }
}

fn remove_member(table: &mut HashMap<Bytes, HashSet<Pid>>, name: &[u8], pid: Pid) {
    if let Some(m) = table.get_mut(name) {
        m.remove(&pid);
        if m.is_empty() {
            table.remove(name);
        }
    }
}

impl Actor for PubSub {
    type Msg = PsMsg;

    async fn init(&mut self, ctx: &mut Ctx<Self>) -> Result<(), ExitReason> {
        self.shared.pubsub.write().replace(ctx.addr());
        Ok(())
    }

    async fn handle(&mut self, msg: PsMsg, ctx: &mut Ctx<Self>) -> Flow {
        match msg {
            PsMsg::Subscribe {
                conn,
                names,
                pattern,
                reply,
            } => {
                let r = self.subscribe(ctx, conn, names, pattern);
                reply.send(r);
            }
            PsMsg::Unsubscribe {
                conn,
                names,
                pattern,
                notify,
                reply,
            } => {
                self.unsubscribe(ctx, &conn, names, pattern, notify);
                reply.send(());
            }
            PsMsg::Publish {
                channel,
                payload,
                reply,
            } => {
                let n = self.publish(ctx, &channel, &payload);
                reply.send(n);
            }
            PsMsg::PublishOnce {
                channel,
                id,
                payload,
                reply,
            } => {
                if self.dedup.check(Bytes::copy_from_slice(&id)) == Seen::Duplicate {
                    self.shared.counters.dedup_duplicates(1);
                    self.update_levels();
                    reply.send(None);
                } else {
                    let n = self.publish(ctx, &channel, &payload);
                    reply.send(Some(n));
                }
            }
        }
        Flow::Continue
    }

    async fn handle_down(&mut self, down: Down, ctx: &mut Ctx<Self>) -> Flow {
        self.drop_subscriber(ctx, down.pid);
        self.update_levels();
        Flow::Continue
    }

    async fn terminate(&mut self, _reason: &ExitReason, _ctx: &mut Ctx<Self>) {
        let l = &self.shared.levels;
        l.channels.store(0, Relaxed);
        l.patterns.store(0, Relaxed);
        l.subscriptions.store(0, Relaxed);
    }
}
