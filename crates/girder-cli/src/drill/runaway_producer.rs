//! `runaway-producer`: producers that could emit forever, against consumers that
//! handle 1 event per ms.
//!
//! Three lanes run side by side on one node for the attack duration, each a producer
//! stage and a consumer stage subscribed with the defaults (`max_demand`
//! [`MAX_DEMAND`], `min_demand` half of it). Every consumer takes [`HANDLE_COST`] per
//! event. Events carry [`EVENT_BYTES`] of payload, so a producer that ran away would
//! show in RSS at once (a million events a second is a GiB a second).
//!
//! - **endless**: a producer over an endless source whose `handle_demand` returns
//!   exactly what it is asked for — the library's demand accounting alone keeps it in
//!   check. It counts the demand handed to it.
//! - **flood**: an adversarial producer that ignores demand: a flooder nudges it every
//!   [`FLOOD_EVERY`] and its `handle_info` emits [`FLOOD_BURST`] events each time,
//!   about 100× what the consumer takes. Its buffer holds the default
//!   [`BUFFER_SIZE`] events (keeping the last); the rest must be dropped and counted.
//! - **push**: a [`PushProducer`] holding at most [`PUSH_CAPACITY`] events, flooded by
//!   [`WAITING_PUSHERS`] pushers that await room and [`TRYING_PUSHERS`] that get
//!   `Full` (and back off [`FULL_BACKOFF`]).
//!
//! A sampler thread reads every [`SAMPLE_EVERY`] each lane's events in flight to its
//! consumer (the producer's `events_out` minus the consumer's handled count, read
//! consistently), the flood buffer and the push queue. At the end the producers are
//! audited from inside (their own counters and `StageStats` at one instant).
//!
//! Bounds:
//! - the consumer's queue (events in flight to it) never exceeded [`MAX_DEMAND`], in
//!   every lane;
//! - the producer is asked only for what is consumed: the demand handed to
//!   `handle_demand`, at every call, was at most the consumer's handled count plus
//!   [`MAX_DEMAND`] (endless and flood lanes);
//! - endless: every event emitted was delivered (none buffered, none dropped) and the
//!   consumer handled them in order, none lost or repeated;
//! - flood: the buffer never held more than [`BUFFER_SIZE`] events; every event
//!   emitted is accounted for: emitted = delivered + dropped + buffered, with the drops
//!   counted in `StageStats::dropped` (and there were drops: the bound was reached);
//! - push: the queue never held more than [`PUSH_CAPACITY`] events; every accepted
//!   push is accounted for (accepted = delivered + queued, nothing dropped); pushes
//!   accepted ≤ handled + [`MAX_DEMAND`] + [`PUSH_CAPACITY`] (pushers held to the
//!   consumer's pace), and trying pushers got `Full`;
//! - every consumer kept its pace: handled at least [`MIN_PACE`] of one event per
//!   [`HANDLE_COST`] over the attack, and every stage was alive at the end;
//! - RSS grew by at most what the bounds allow to exist at once — [`MAX_DEMAND`] in
//!   flight per lane, [`BUFFER_SIZE`] + [`FLOOD_BURST`] at the flood producer,
//!   [`PUSH_CAPACITY`] + one per pusher at the push producer — at
//!   [`EVENT_FOOTPRINT`] each, plus [`RSS_MARGIN`];
//! - the legitimate client kept working ([`measure::check_legit`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder::stage::{
    self, Consumer, ConsumerStage, Producer, ProducerOptions, ProducerStage, PushError, PushProducer, Pusher,
    StageMsg, StageStats, SubscribeOptions,
};
use girder::{Addr, Ctx, ExitReason, Flow, Node, Pid, ProcessState, Reply, Weight};
use serde_json::{json, Map};

use super::attack::SendTally;
use super::measure::{self, fmt_bytes, fmt_count, read_rss, Checks, LegitClient};
use super::{Outcome, RssBound};

/// Payload bytes per event.
pub const EVENT_BYTES: usize = 1024;
/// RSS one event may take: its payload, its 32-byte struct (in a batch or buffer) and
/// the allocator's header, rounded up.
pub const EVENT_FOOTPRINT: u64 = EVENT_BYTES as u64 + 64;
/// Every subscription's `max_demand`: the default, as GenStage.
pub const MAX_DEMAND: usize = stage::DEFAULT_MAX_DEMAND;
/// Time a consumer takes per event.
pub const HANDLE_COST: Duration = Duration::from_millis(1);
/// The share of one event per [`HANDLE_COST`] each consumer must reach: the flow
/// must not stall under the attack.
pub const MIN_PACE: f64 = 0.5;
/// The flood producer's buffer: the default.
pub const BUFFER_SIZE: usize = stage::DEFAULT_BUFFER_SIZE;
/// How often the flooder nudges the flood producer.
pub const FLOOD_EVERY: Duration = Duration::from_millis(1);
/// Events the flood producer emits per nudge, whatever the demand.
pub const FLOOD_BURST: usize = 100;
/// Events the push producer holds waiting for demand.
pub const PUSH_CAPACITY: usize = 1000;
/// Pushers that await room (`Pusher::push`).
pub const WAITING_PUSHERS: usize = 2;
/// Pushers that get `Full` (`Pusher::try_push`).
pub const TRYING_PUSHERS: usize = 2;
/// How long a trying pusher backs off after `Full`.
pub const FULL_BACKOFF: Duration = Duration::from_millis(1);
/// How often the sampler thread reads the queues.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(1);
/// RSS allowance beyond the events the bounds allow: the runtime's worker threads,
/// allocator arenas and measurement buffers.
pub const RSS_MARGIN: u64 = 32 << 20;
/// How far behind its schedule a consumer may catch up (timer granularity).
const MAX_CATCH_UP: Duration = Duration::from_millis(10);
/// How long a waiting pusher waits before checking whether the attack is over.
const PUSH_POLL: Duration = Duration::from_millis(10);
/// Timeout of the drill's audit calls.
const AUDIT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the drill tries to read the push producer at rest.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// One event: a sequence number and a heap payload.
pub struct Event {
    seq: u64,
    payload: Vec<u8>,
}

impl Event {
    fn new(seq: u64) -> Self {
        Event {
            seq,
            payload: vec![seq as u8; EVENT_BYTES],
        }
    }
}

// ----- instrumentation -----

/// What a consumer handled, shared with the producer and the sampler.
#[derive(Default)]
struct ConsumerTally {
    handled: AtomicU64,
    /// Events whose sequence number was not above the previous one's.
    disorder: AtomicU64,
    /// Sequence numbers skipped.
    gaps: AtomicU64,
}

/// The demand handed to a producer's `handle_demand`.
#[derive(Default)]
struct DemandLog {
    asked: AtomicU64,
    calls: AtomicU64,
    /// The most the demand asked so far ran ahead of the consumer's handled count.
    max_ahead: AtomicU64,
}

impl DemandLog {
    fn note(&self, demand: usize, consumer: &ConsumerTally) {
        let asked = self.asked.fetch_add(demand as u64, Ordering::AcqRel) + demand as u64;
        // Demand is granted only after the events it replaces were handled, so the
        // handled count read now is at least the one the grant was based on.
        let handled = consumer.handled.load(Ordering::Acquire);
        self.max_ahead
            .fetch_max(asked.saturating_sub(handled), Ordering::AcqRel);
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

/// A producer's own counters and its `StageStats`, read inside its handler.
#[derive(Clone, Copy, Debug, Default)]
struct Audit {
    emitted: u64,
    stats: StageStats,
}

fn own_stats<P: Producer>(ctx: &Ctx<ProducerStage<P>>) -> StageStats {
    ctx.node()
        .process_info(ctx.pid())
        .and_then(|i| i.stage)
        .unwrap_or_default()
}

// ----- the stages -----

/// A consumer that takes [`HANDLE_COST`] per event (on a schedule, catching up at
/// most [`MAX_CATCH_UP`] after a late wake) and checks sequence order.
struct Paced {
    tally: Arc<ConsumerTally>,
    check_order: bool,
    last_seq: u64,
    next: Option<tokio::time::Instant>,
    stop: Arc<AtomicBool>,
}

impl Consumer for Paced {
    type Event = Event;
    type Info = ();

    async fn handle_events(&mut self, events: Vec<Event>, _: &mut Ctx<ConsumerStage<Self>>) -> Flow {
        for e in events {
            if self.stop.load(Ordering::Acquire) {
                return Flow::Stop(ExitReason::Normal);
            }
            let now = tokio::time::Instant::now();
            let mut at = self.next.map_or(now, |n| n + HANDLE_COST);
            if at + MAX_CATCH_UP < now {
                at = now;
            }
            tokio::time::sleep_until(at).await;
            self.next = Some(at);
            std::hint::black_box(&e.payload);
            if self.check_order {
                if e.seq <= self.last_seq {
                    self.tally.disorder.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.tally
                        .gaps
                        .fetch_add(e.seq - self.last_seq - 1, Ordering::Relaxed);
                }
                self.last_seq = e.seq;
            }
            self.tally.handled.fetch_add(1, Ordering::AcqRel);
        }
        Flow::Continue
    }
}

/// The endless producer: emits exactly what it is asked for, forever.
struct Endless {
    seq: u64,
    emitted: u64,
    demand: Arc<DemandLog>,
    consumer: Arc<ConsumerTally>,
}

/// Asks a producer for its [`Audit`].
struct AuditReq(Reply<Audit>);

impl Weight for AuditReq {}

impl Producer for Endless {
    type Event = Event;
    type Info = AuditReq;

    async fn handle_demand(&mut self, demand: usize, _: &mut Ctx<ProducerStage<Self>>) -> Vec<Event> {
        self.demand.note(demand, &self.consumer);
        self.emitted += demand as u64;
        (0..demand)
            .map(|_| {
                self.seq += 1;
                Event::new(self.seq)
            })
            .collect()
    }

    async fn handle_info(
        &mut self,
        AuditReq(reply): AuditReq,
        ctx: &mut Ctx<ProducerStage<Self>>,
    ) -> Vec<Event> {
        reply.send(Audit {
            emitted: self.emitted,
            stats: own_stats(ctx),
        });
        Vec::new()
    }
}

/// The flood producer's messages.
enum FloodMsg {
    /// Emit [`FLOOD_BURST`] events now.
    Burst,
    /// Report the [`Audit`].
    Audit(Reply<Audit>),
}

impl Weight for FloodMsg {}

/// The adversarial producer: emits nothing on demand and [`FLOOD_BURST`] events per
/// nudge, whatever the demand.
struct Flooding {
    seq: u64,
    emitted: u64,
    demand: Arc<DemandLog>,
    consumer: Arc<ConsumerTally>,
}

impl Producer for Flooding {
    type Event = Event;
    type Info = FloodMsg;

    async fn handle_demand(&mut self, demand: usize, _: &mut Ctx<ProducerStage<Self>>) -> Vec<Event> {
        self.demand.note(demand, &self.consumer);
        Vec::new()
    }

    async fn handle_info(&mut self, msg: FloodMsg, ctx: &mut Ctx<ProducerStage<Self>>) -> Vec<Event> {
        match msg {
            FloodMsg::Burst => {
                self.emitted += FLOOD_BURST as u64;
                (0..FLOOD_BURST)
                    .map(|_| {
                        self.seq += 1;
                        Event::new(self.seq)
                    })
                    .collect()
            }
            FloodMsg::Audit(reply) => {
                reply.send(Audit {
                    emitted: self.emitted,
                    stats: own_stats(ctx),
                });
                Vec::new()
            }
        }
    }
}

// ----- the attackers -----

/// Nudges the flood producer every [`FLOOD_EVERY`] until `stop`.
async fn flood(addr: Addr<ProducerStage<Flooding>>, stop: Arc<AtomicBool>) -> SendTally {
    let mut tally = SendTally::default();
    let mut tick = tokio::time::interval(FLOOD_EVERY);
    while !stop.load(Ordering::Acquire) {
        tick.tick().await;
        tally.note(&addr.try_send(StageMsg::info(FloodMsg::Burst)));
    }
    tally
}

/// What the pushers' calls returned.
#[derive(Default)]
struct PushTally {
    accepted: AtomicU64,
    full: AtomicU64,
    closed: AtomicU64,
    /// Waiting pushes still waiting after [`PUSH_POLL`].
    long_waits: AtomicU64,
}

/// Pushes with `push` (awaiting room) until `stop`.
async fn push_waiting(
    pusher: Pusher<Event>,
    seq: Arc<AtomicU64>,
    tally: Arc<PushTally>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Acquire) {
        let e = Event::new(seq.fetch_add(1, Ordering::Relaxed));
        match tokio::time::timeout(PUSH_POLL, pusher.push(e)).await {
            Ok(Ok(())) => tally.accepted.fetch_add(1, Ordering::AcqRel),
            Ok(Err(_)) => tally.closed.fetch_add(1, Ordering::Relaxed),
            // Still waiting for room: the event was not taken.
            Err(_) => tally.long_waits.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Pushes with `try_push` until `stop`, backing off after `Full`.
async fn push_trying(
    pusher: Pusher<Event>,
    seq: Arc<AtomicU64>,
    tally: Arc<PushTally>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Acquire) {
        match pusher.try_push(Event::new(seq.fetch_add(1, Ordering::Relaxed))) {
            Ok(()) => {
                tally.accepted.fetch_add(1, Ordering::AcqRel);
                tokio::task::consume_budget().await;
            }
            Err(PushError::Full(_)) => {
                tally.full.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(FULL_BACKOFF).await;
            }
            Err(PushError::Closed(_)) => {
                tally.closed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(FULL_BACKOFF).await;
            }
        }
    }
}

// ----- sampling -----

/// The largest values one lane's sampler saw.
#[derive(Default)]
struct Maxima {
    in_flight: AtomicU64,
    buffered: AtomicU64,
    queued: AtomicU64,
    /// Samples where the producer could not be read.
    missing: AtomicU64,
}

/// What the sampler reads for one lane.
struct Probe {
    producer: Pid,
    consumer: Arc<ConsumerTally>,
    pusher: Option<Pusher<Event>>,
    max: Arc<Maxima>,
}

/// The producer's `StageStats` and the consumer's handled count at one instant (the
/// handled count did not move while the stats were read), if it can be had.
fn read_lane(node: &Node, producer: Pid, consumer: &ConsumerTally) -> Option<(StageStats, u64)> {
    for _ in 0..16 {
        let before = consumer.handled.load(Ordering::Acquire);
        let stats = node.process_info(producer)?.stage?;
        if consumer.handled.load(Ordering::Acquire) == before {
            return Some((stats, before));
        }
    }
    None
}

fn sample(node: Node, probes: Vec<Probe>, stop: Arc<AtomicBool>) -> u64 {
    let mut samples = 0;
    while !stop.load(Ordering::Acquire) {
        for p in &probes {
            match read_lane(&node, p.producer, &p.consumer) {
                Some((stats, handled)) => {
                    let in_flight = stats.events_out.saturating_sub(handled);
                    p.max.in_flight.fetch_max(in_flight, Ordering::Relaxed);
                    p.max.buffered.fetch_max(stats.buffered, Ordering::Relaxed);
                }
                None => {
                    p.max.missing.fetch_add(1, Ordering::Relaxed);
                }
            }
            if let Some(pusher) = &p.pusher {
                p.max.queued.fetch_max(pusher.len() as u64, Ordering::Relaxed);
            }
        }
        samples += 1;
        std::thread::sleep(SAMPLE_EVERY);
    }
    samples
}

/// The push producer's stats and queue length at rest: it was waiting before and
/// after, and delivered nothing in between. `None` if it never was within `timeout`.
async fn push_at_rest(
    node: &Node,
    pid: Pid,
    pusher: &Pusher<Event>,
    timeout: Duration,
) -> Option<(StageStats, u64)> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let a = node.process_info(pid)?;
        let queued = pusher.len() as u64;
        let b = node.process_info(pid)?;
        let (sa, sb) = (a.stage?, b.stage?);
        if a.state == ProcessState::Waiting && b.state == ProcessState::Waiting && sa == sb {
            return Some((sb, queued));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

// ----- the drill -----

fn paced(tally: &Arc<ConsumerTally>, check_order: bool, stop: &Arc<AtomicBool>) -> ConsumerStage<Paced> {
    ConsumerStage::new(Paced {
        tally: tally.clone(),
        check_order,
        last_seq: 0,
        next: None,
        stop: stop.clone(),
    })
}

/// Runs the drill for `attack`.
pub async fn run(attack: Duration) -> Result<Outcome, String> {
    let node = Node::builder().build().map_err(|e| e.to_string())?;
    let legit = LegitClient::start(&node).map_err(|e| e.to_string())?;
    let stop_consumers = Arc::new(AtomicBool::new(false));

    // Endless lane.
    let endless_tally = Arc::new(ConsumerTally::default());
    let endless_demand = Arc::new(DemandLog::default());
    let endless = node
        .spawn(ProducerStage::new(
            Endless {
                seq: 0,
                emitted: 0,
                demand: endless_demand.clone(),
                consumer: endless_tally.clone(),
            },
            ProducerOptions::default(),
        ))
        .map_err(|e| e.to_string())?;
    let endless_consumer = node
        .spawn(paced(&endless_tally, true, &stop_consumers))
        .map_err(|e| e.to_string())?;

    // Flood lane.
    let flood_tally = Arc::new(ConsumerTally::default());
    let flood_demand = Arc::new(DemandLog::default());
    let flooding = node
        .spawn(ProducerStage::new(
            Flooding {
                seq: 0,
                emitted: 0,
                demand: flood_demand.clone(),
                consumer: flood_tally.clone(),
            },
            ProducerOptions::default().buffer_size(BUFFER_SIZE),
        ))
        .map_err(|e| e.to_string())?;
    let flood_consumer = node
        .spawn(paced(&flood_tally, true, &stop_consumers))
        .map_err(|e| e.to_string())?;

    // Push lane.
    let push_tally = Arc::new(ConsumerTally::default());
    let (pushed, pusher) = PushProducer::<Event>::start(&node, PUSH_CAPACITY, ProducerOptions::default())
        .map_err(|e| e.to_string())?;
    let push_consumer = node
        .spawn(paced(&push_tally, false, &stop_consumers))
        .map_err(|e| e.to_string())?;

    let opts = SubscribeOptions::default().max_demand(MAX_DEMAND);
    stage::subscribe(&endless_consumer, &endless, opts)
        .await
        .map_err(|e| e.to_string())?;
    stage::subscribe(&flood_consumer, &flooding, opts)
        .await
        .map_err(|e| e.to_string())?;
    stage::subscribe(&push_consumer, &pushed, opts)
        .await
        .map_err(|e| e.to_string())?;

    let maxima: [Arc<Maxima>; 3] = Default::default();
    let stop_sampler = Arc::new(AtomicBool::new(false));
    let sampler = {
        let probes = vec![
            Probe {
                producer: endless.pid(),
                consumer: endless_tally.clone(),
                pusher: None,
                max: maxima[0].clone(),
            },
            Probe {
                producer: flooding.pid(),
                consumer: flood_tally.clone(),
                pusher: None,
                max: maxima[1].clone(),
            },
            Probe {
                producer: pushed.pid(),
                consumer: push_tally.clone(),
                pusher: Some(pusher.clone()),
                max: maxima[2].clone(),
            },
        ];
        let (node, stop) = (node.clone(), stop_sampler.clone());
        std::thread::Builder::new()
            .name("girder-drill-stages".into())
            .spawn(move || sample(node, probes, stop))
            .map_err(|e| e.to_string())?
    };

    // The attack.
    let started = Instant::now();
    let stop_attack = Arc::new(AtomicBool::new(false));
    let flooder = tokio::spawn(flood(flooding.clone(), stop_attack.clone()));
    let pushes = Arc::new(PushTally::default());
    let push_seq = Arc::new(AtomicU64::new(1));
    let mut pushers = Vec::new();
    for i in 0..WAITING_PUSHERS + TRYING_PUSHERS {
        let (p, seq, tally, stop) = (
            pusher.clone(),
            push_seq.clone(),
            pushes.clone(),
            stop_attack.clone(),
        );
        pushers.push(if i < WAITING_PUSHERS {
            tokio::spawn(push_waiting(p, seq, tally, stop))
        } else {
            tokio::spawn(push_trying(p, seq, tally, stop))
        });
    }
    tokio::time::sleep(attack / 2).await;
    let rss_mid = read_rss().unwrap_or(0);
    tokio::time::sleep(attack.saturating_sub(started.elapsed())).await;
    let rss_end = read_rss().unwrap_or(0);

    // End the attack, then audit.
    stop_attack.store(true, Ordering::Release);
    let floods = flooder.await.map_err(|e| e.to_string())?;
    for p in pushers {
        p.await.map_err(|e| e.to_string())?;
    }
    let attack_time = started.elapsed();
    let alive = [
        endless.is_alive(),
        endless_consumer.is_alive(),
        flooding.is_alive(),
        flood_consumer.is_alive(),
        pushed.is_alive(),
        push_consumer.is_alive(),
    ];
    let endless_audit = endless
        .call(|r| StageMsg::info(AuditReq(r)), AUDIT_TIMEOUT)
        .await
        .map_err(|e| format!("endless audit: {e}"))?;
    let flood_audit = flooding
        .call(|r| StageMsg::info(FloodMsg::Audit(r)), AUDIT_TIMEOUT)
        .await
        .map_err(|e| format!("flood audit: {e}"))?;
    let push_rest = push_at_rest(&node, pushed.pid(), &pusher, SETTLE_TIMEOUT).await;
    let handled = [&endless_tally, &flood_tally, &push_tally].map(|t| t.handled.load(Ordering::Acquire));
    // The queues at the end, measured like the samples.
    for (max, (pid, tally)) in maxima.iter().zip([
        (endless.pid(), &endless_tally),
        (flooding.pid(), &flood_tally),
        (pushed.pid(), &push_tally),
    ]) {
        if let Some((stats, h)) = read_lane(&node, pid, tally) {
            max.in_flight
                .fetch_max(stats.events_out.saturating_sub(h), Ordering::Relaxed);
            max.buffered.fetch_max(stats.buffered, Ordering::Relaxed);
        }
    }
    stop_sampler.store(true, Ordering::Release);
    let samples = sampler.join().map_err(|_| "sampler panicked")?;
    let legit = legit.finish().await;

    let mut checks = Checks::default();
    let in_flight = maxima.each_ref().map(|m| m.in_flight.load(Ordering::Relaxed));
    let missing: u64 = maxima.iter().map(|m| m.missing.load(Ordering::Relaxed)).sum();
    checks.check(
        in_flight.iter().all(|&n| n <= MAX_DEMAND as u64) && missing == 0,
        format!(
            "consumer queue max (endless/flood/push) {}/{}/{} <= max_demand {MAX_DEMAND} ({} samples, {missing} unreadable)",
            in_flight[0],
            in_flight[1],
            in_flight[2],
            fmt_count(samples)
        ),
    );
    let ahead = [&endless_demand, &flood_demand].map(|d| d.max_ahead.load(Ordering::Relaxed));
    let asked = [&endless_demand, &flood_demand].map(|d| d.asked.load(Ordering::Relaxed));
    checks.check(
        ahead.iter().all(|&a| a <= MAX_DEMAND as u64),
        format!(
            "demand asked - handled, at every handle_demand (endless/flood) {}/{} <= max_demand {MAX_DEMAND} (asked {} for {} handled)",
            ahead[0],
            ahead[1],
            fmt_count(asked[0]),
            fmt_count(handled[0])
        ),
    );

    // Endless: nothing beyond demand.
    let es = endless_audit.stats;
    let disorder =
        endless_tally.disorder.load(Ordering::Relaxed) + flood_tally.disorder.load(Ordering::Relaxed);
    let endless_gaps = endless_tally.gaps.load(Ordering::Relaxed);
    checks.check(
        endless_audit.emitted == es.events_out && es.buffered == 0 && es.dropped == 0,
        format!(
            "endless: emitted {} = delivered {} (buffered {}, dropped {})",
            fmt_count(endless_audit.emitted),
            fmt_count(es.events_out),
            es.buffered,
            es.dropped
        ),
    );
    checks.check(
        disorder == 0 && endless_gaps == 0,
        format!("events out of order {disorder} = 0, endless events lost {endless_gaps} = 0"),
    );

    // Flood: bounded buffer, counted drops.
    let fs = flood_audit.stats;
    let max_buffered = maxima[1].buffered.load(Ordering::Relaxed);
    checks.check(
        max_buffered <= BUFFER_SIZE as u64,
        format!(
            "flood buffer max {} <= buffer_size {}",
            fmt_count(max_buffered),
            fmt_count(BUFFER_SIZE as u64)
        ),
    );
    checks.check(
        flood_audit.emitted == fs.events_out + fs.dropped + fs.buffered && fs.dropped > 0,
        format!(
            "flood: emitted {} = delivered {} + dropped {} + buffered {}, drops > 0",
            fmt_count(flood_audit.emitted),
            fmt_count(fs.events_out),
            fmt_count(fs.dropped),
            fmt_count(fs.buffered)
        ),
    );

    // Push: bounded queue, pushers held back.
    let accepted = pushes.accepted.load(Ordering::Acquire);
    let full = pushes.full.load(Ordering::Relaxed);
    let closed = pushes.closed.load(Ordering::Relaxed);
    let long_waits = pushes.long_waits.load(Ordering::Relaxed);
    let max_queued = maxima[2].queued.load(Ordering::Relaxed);
    checks.check(
        max_queued <= PUSH_CAPACITY as u64,
        format!(
            "push queue max {} <= capacity {}",
            fmt_count(max_queued),
            fmt_count(PUSH_CAPACITY as u64)
        ),
    );
    let (ps, push_queued) = push_rest.unwrap_or_default();
    checks.check(
        push_rest.is_some()
            && accepted == ps.events_out + push_queued
            && ps.dropped == 0
            && ps.buffered == 0
            && maxima[2].buffered.load(Ordering::Relaxed) == 0,
        format!(
            "push: accepted {} = delivered {} + queued {} (dropped {}, buffered {}; read at rest {})",
            fmt_count(accepted),
            fmt_count(ps.events_out),
            push_queued,
            ps.dropped,
            ps.buffered,
            push_rest.is_some()
        ),
    );
    let push_allowed = handled[2] + (MAX_DEMAND + PUSH_CAPACITY) as u64;
    checks.check(
        accepted <= push_allowed && full > 0 && closed == 0,
        format!(
            "pushes accepted {} <= handled {} + max_demand + capacity = {}; Full {} > 0, Closed {closed} = 0",
            fmt_count(accepted),
            fmt_count(handled[2]),
            fmt_count(push_allowed),
            fmt_count(full)
        ),
    );

    // The flow kept going.
    let min_handled = (attack.as_secs_f64() / HANDLE_COST.as_secs_f64() * MIN_PACE) as u64;
    checks.check(
        handled.iter().all(|&h| h >= min_handled) && alive.iter().all(|&a| a),
        format!(
            "handled (endless/flood/push) {}/{}/{} >= {} each, all 6 stages alive {}",
            fmt_count(handled[0]),
            fmt_count(handled[1]),
            fmt_count(handled[2]),
            fmt_count(min_handled),
            alive.iter().all(|&a| a)
        ),
    );
    measure::check_legit(&mut checks, &legit);

    let mut figures = Map::new();
    figures.insert("event_bytes".into(), EVENT_BYTES.into());
    figures.insert("max_demand".into(), MAX_DEMAND.into());
    figures.insert("attack_time_us".into(), measure::micros(attack_time).into());
    figures.insert("samples".into(), samples.into());
    figures.insert("rss_mid_attack_bytes".into(), rss_mid.into());
    figures.insert("rss_end_attack_bytes".into(), rss_end.into());
    figures.insert(
        "endless".into(),
        json!({
            "demand_asked": asked[0],
            "demand_calls": endless_demand.calls.load(Ordering::Relaxed),
            "max_demand_ahead_of_handled": ahead[0],
            "emitted": endless_audit.emitted,
            "events_out": es.events_out,
            "buffered": es.buffered,
            "dropped": es.dropped,
            "handled": handled[0],
            "max_in_flight": in_flight[0],
            "lost": endless_gaps,
        }),
    );
    figures.insert(
        "flood".into(),
        json!({
            "burst": FLOOD_BURST,
            "nudges": floods.to_json(),
            "demand_asked": asked[1],
            "max_demand_ahead_of_handled": ahead[1],
            "emitted": flood_audit.emitted,
            "events_out": fs.events_out,
            "dropped": fs.dropped,
            "buffered": fs.buffered,
            "buffer_size": BUFFER_SIZE,
            "max_buffered": max_buffered,
            "handled": handled[1],
            "max_in_flight": in_flight[1],
        }),
    );
    figures.insert(
        "push".into(),
        json!({
            "capacity": PUSH_CAPACITY,
            "waiting_pushers": WAITING_PUSHERS,
            "trying_pushers": TRYING_PUSHERS,
            "accepted": accepted,
            "full": full,
            "closed": closed,
            "waits_over_10ms": long_waits,
            "events_out": ps.events_out,
            "queued": push_queued,
            "max_queued": max_queued,
            "dropped": ps.dropped,
            "handled": handled[2],
            "max_in_flight": in_flight[2],
        }),
    );

    stop_consumers.store(true, Ordering::Release);
    measure::shut_down(&node, &legit, &mut figures, &mut checks).await;

    let push_attempts = accepted + full + closed + long_waits;
    let events =
        3 * MAX_DEMAND + BUFFER_SIZE + FLOOD_BURST + PUSH_CAPACITY + WAITING_PUSHERS + TRYING_PUSHERS;
    Ok(Outcome {
        attack: format!(
            "endless + flood {} + push {} events",
            fmt_count(flood_audit.emitted),
            fmt_count(push_attempts)
        ),
        limits: format!(
            "in flight <= {}; {} dropped, {} Full",
            in_flight.iter().max().copied().unwrap_or(0),
            fmt_count(fs.dropped),
            fmt_count(full)
        ),
        legit,
        checks,
        rss_bound: RssBound::plus_margin(
            events as u64 * EVENT_FOOTPRINT,
            format!(
                "{} events (3 × {MAX_DEMAND} in flight, {} + {FLOOD_BURST} flood buffer, {} + {} push queue) × {}",
                fmt_count(events as u64),
                fmt_count(BUFFER_SIZE as u64),
                fmt_count(PUSH_CAPACITY as u64),
                WAITING_PUSHERS + TRYING_PUSHERS,
                fmt_bytes(EVENT_FOOTPRINT)
            ),
            RSS_MARGIN,
        ),
        figures,
    })
}
