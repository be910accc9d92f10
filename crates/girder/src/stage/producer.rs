//! Producers: the `Producer` behaviour, its process, and the producer side shared with
//! producer-consumers (subscribers, dispatcher, bounded buffer).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use super::dispatcher::Dispatcher;
use super::stats::StageCounters;
use super::subscription::Subscription;
use super::{StageError, StageMsg, StageOp, DEFAULT_MAX_SUBSCRIPTIONS};
use crate::{Actor, Ctx, Down, ExitReason, Flow, MonitorRef, Weight};

/// Which events a full producer buffer keeps (GenStage's `buffer_keep`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BufferKeep {
    /// Keep the oldest events; newer ones are dropped.
    First,
    /// Keep the newest events; older ones are dropped. The default, as GenStage.
    Last,
}

/// Options of a producer (or of the producer side of a producer-consumer).
///
/// | option | default | at the limit |
/// |---|---|---|
/// | `dispatcher` | [`Dispatcher::Demand`] | |
/// | `buffer_size` | 10,000 events (producer-consumers too: never unbounded) | drops per `buffer_keep`, counted in [`StageStats::dropped`](super::StageStats::dropped) |
/// | `buffer_keep` | [`BufferKeep::Last`] | |
/// | `max_subscribers` | 1,024 | `StageError::TooManySubscriptions` |
#[derive(Clone, Debug)]
pub struct ProducerOptions<E> {
    /// How events are shared among subscribers.
    pub dispatcher: Dispatcher<E>,
    /// Events held without demand.
    pub buffer_size: usize,
    /// Which events a full buffer keeps.
    pub buffer_keep: BufferKeep,
    /// Subscribers at most.
    pub max_subscribers: usize,
}

/// Default producer buffer size, as GenStage.
pub const DEFAULT_BUFFER_SIZE: usize = 10_000;

impl<E> Default for ProducerOptions<E> {
    fn default() -> Self {
        ProducerOptions {
            dispatcher: Dispatcher::Demand,
            buffer_size: DEFAULT_BUFFER_SIZE,
            buffer_keep: BufferKeep::Last,
            max_subscribers: DEFAULT_MAX_SUBSCRIPTIONS,
        }
    }
}

impl<E> ProducerOptions<E> {
    /// Sets the dispatcher.
    pub fn dispatcher(mut self, dispatcher: Dispatcher<E>) -> Self {
        self.dispatcher = dispatcher;
        self
    }

    /// Sets the buffer size.
    pub fn buffer_size(mut self, n: usize) -> Self {
        self.buffer_size = n;
        self
    }

    /// Sets which events a full buffer keeps.
    pub fn buffer_keep(mut self, keep: BufferKeep) -> Self {
        self.buffer_keep = keep;
        self
    }

    /// Sets the subscriber limit.
    pub fn max_subscribers(mut self, n: usize) -> Self {
        self.max_subscribers = n;
        self
    }
}

/// The downstream half of a stage: subscribers, dispatcher, bounded buffer.
pub(crate) struct ProducerSide<E> {
    subs: Vec<Arc<Subscription<E>>>,
    monitors: Vec<MonitorRef>,
    opts: ProducerOptions<E>,
    pub(crate) buffer: VecDeque<E>,
    pub(crate) counters: Arc<StageCounters>,
}

impl<E: Send + 'static> ProducerSide<E> {
    pub(crate) fn new(opts: ProducerOptions<E>, counters: Arc<StageCounters>) -> Self {
        ProducerSide {
            subs: Vec::new(),
            monitors: Vec::new(),
            opts,
            buffer: VecDeque::new(),
            counters,
        }
    }

    /// A consumer subscribes.
    pub(crate) fn add<A: Actor>(
        &mut self,
        sub: Arc<Subscription<E>>,
        ctx: &Ctx<A>,
    ) -> Result<(), StageError> {
        if self.subs.len() >= self.opts.max_subscribers {
            return Err(StageError::TooManySubscriptions {
                limit: self.opts.max_subscribers,
            });
        }
        if let (Dispatcher::Partition { partitions, .. }, p) = (&self.opts.dispatcher, sub.partition) {
            match p {
                Some(p) if p < *partitions => {}
                _ => {
                    return Err(StageError::Invalid(
                        "partition dispatcher: subscribe with partition in 0..partitions",
                    ))
                }
            }
        }
        let monitor = ctx
            .monitor(sub.consumer_pid())
            .map_err(|_| StageError::TooManySubscriptions {
                limit: self.opts.max_subscribers,
            })?;
        sub.rearm_producer();
        self.subs.push(sub);
        self.monitors.push(monitor);
        self.refresh();
        Ok(())
    }

    /// A wake for one of our subscriptions: re-arm it, forget cancelled ones.
    pub(crate) fn on_wake<A: Actor>(&mut self, token: u64, ctx: &Ctx<A>) {
        if let Some(s) = self.subs.iter().find(|s| s.id == token) {
            s.rearm_producer();
        }
        let mut i = 0;
        while i < self.subs.len() {
            if self.subs[i].is_cancelled() {
                self.subs.swap_remove(i);
                ctx.demonitor(self.monitors.swap_remove(i));
            } else {
                i += 1;
            }
        }
    }

    /// A consumer exited: forget its subscriptions (events it had not taken are lost
    /// with it, and counted).
    pub(crate) fn on_down(&mut self, down: &Down) -> bool {
        let Some(i) = self.monitors.iter().position(|m| *m == down.monitor) else {
            return false;
        };
        let sub = self.subs.swap_remove(i);
        self.monitors.swap_remove(i);
        StageCounters::add(&self.counters.dropped, sub.cancel());
        self.refresh();
        true
    }

    /// Demand the subscribers can take now.
    pub(crate) fn capacity(&self) -> usize {
        self.opts.dispatcher.capacity(&self.subs)
    }

    /// Dispatches the buffer as far as demand allows.
    pub(crate) fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        while !self.buffer.is_empty() {
            let cap = self.capacity();
            if cap == 0 {
                break;
            }
            let k = cap.min(self.buffer.len());
            let batch: Vec<E> = self.buffer.drain(..k).collect();
            let (delivered, rest) = self.opts.dispatcher.dispatch(&self.subs, batch);
            StageCounters::add(&self.counters.events_out, delivered);
            let stuck = !rest.is_empty();
            for e in rest.into_iter().rev() {
                self.buffer.push_front(e);
            }
            if delivered == 0 || stuck {
                break;
            }
        }
        StageCounters::set(&self.counters.buffered, self.buffer.len());
    }

    /// Emits events: after what is buffered, to the subscribers as far as demand
    /// allows, the rest into the bounded buffer.
    /// Returns how many were handed to subscribers at once.
    pub(crate) fn emit(&mut self, events: Vec<E>) -> usize {
        if events.is_empty() {
            return 0;
        }
        self.flush();
        let (delivered, rest) = if self.buffer.is_empty() {
            self.opts.dispatcher.dispatch(&self.subs, events)
        } else {
            (0, events)
        };
        StageCounters::add(&self.counters.events_out, delivered);
        if !rest.is_empty() {
            self.buffer_events(rest);
            StageCounters::set(&self.counters.buffered, self.buffer.len());
        }
        delivered
    }

    fn buffer_events(&mut self, events: Vec<E>) {
        let mut dropped = 0;
        for e in events {
            if self.buffer.len() < self.opts.buffer_size {
                self.buffer.push_back(e);
            } else {
                match self.opts.buffer_keep {
                    BufferKeep::First => dropped += 1,
                    BufferKeep::Last => {
                        if self.buffer.pop_front().is_some() {
                            self.buffer.push_back(e);
                        }
                        dropped += 1;
                    }
                }
            }
        }
        if dropped > 0 {
            StageCounters::add(&self.counters.dropped, dropped);
            // Count every drop, log rate-limited: a flood must not become a log flood.
            let total = self.counters.dropped.load(std::sync::atomic::Ordering::Relaxed);
            crate::limit_event!(
                warn,
                "stage buffer full: dropping events",
                total_dropped = total,
                buffer_size = self.opts.buffer_size
            );
        }
    }

    pub(crate) fn refresh(&self) {
        StageCounters::set(&self.counters.pending_demand, self.capacity());
        StageCounters::set(&self.counters.buffered, self.buffer.len());
    }

    pub(crate) fn subscribers(&self) -> usize {
        self.subs.len()
    }
}

/// A stage that emits events on demand (GenStage's `:producer`).
///
/// `handle_demand` is called with demand that consumers granted and that is not yet
/// covered by events emitted or buffered; it may return fewer events than asked (and
/// emit the rest later from `handle_info`) or more (the surplus is buffered, bounded).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use girder::{Actor, Ctx, Flow, Node};
/// use girder::stage::{self, Consumer, ConsumerStage, Producer, ProducerOptions, ProducerStage, SubscribeOptions};
///
/// /// Counts up forever, but only as fast as demand asks.
/// struct Naturals(u64);
/// impl Producer for Naturals {
///     type Event = u64;
///     type Info = ();
///     async fn handle_demand(&mut self, demand: usize, _: &mut Ctx<ProducerStage<Self>>) -> Vec<u64> {
///         (0..demand).map(|_| { self.0 += 1; self.0 }).collect()
///     }
/// }
///
/// struct Sum(tokio::sync::mpsc::Sender<u64>, u64);
/// impl Consumer for Sum {
///     type Event = u64;
///     type Info = ();
///     async fn handle_events(&mut self, events: Vec<u64>, _: &mut Ctx<ConsumerStage<Self>>) -> Flow {
///         for e in events {
///             self.1 += e;
///             if e == 1000 {
///                 let _ = self.0.send(self.1).await;
///             }
///         }
///         Flow::Continue
///     }
/// }
///
/// # #[tokio::main] async fn main() {
/// let node = Node::builder().build().unwrap();
/// let producer = node.spawn(ProducerStage::new(Naturals(0), ProducerOptions::default())).unwrap();
/// let (tx, mut rx) = tokio::sync::mpsc::channel(1);
/// let consumer = node.spawn(ConsumerStage::new(Sum(tx, 0))).unwrap();
/// stage::subscribe(&consumer, &producer, SubscribeOptions::default().max_demand(100)).await.unwrap();
/// assert_eq!(rx.recv().await, Some(500_500));
/// # }
/// ```
pub trait Producer: Sized + Send + 'static {
    /// The events this producer emits.
    type Event: Send + 'static;
    /// Other messages it handles (`()` if none).
    type Info: Weight + Send + 'static;

    /// Runs once, before any demand.
    fn init(
        &mut self,
        ctx: &mut Ctx<ProducerStage<Self>>,
    ) -> impl Future<Output = Result<(), ExitReason>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Emits up to `demand` events (fewer is fine; the rest of the demand stays
    /// pending).
    fn handle_demand(
        &mut self,
        demand: usize,
        ctx: &mut Ctx<ProducerStage<Self>>,
    ) -> impl Future<Output = Vec<Self::Event>> + Send;

    /// Handles another message; may emit events.
    fn handle_info(
        &mut self,
        msg: Self::Info,
        ctx: &mut Ctx<ProducerStage<Self>>,
    ) -> impl Future<Output = Vec<Self::Event>> + Send {
        let _ = (msg, ctx);
        async { Vec::new() }
    }

    /// `true` once the producer will emit nothing more: the stage stops (`Normal`)
    /// as soon as its buffer is delivered.
    fn is_finished(&self) -> bool {
        false
    }

    /// Runs once when the stage stops through its loop.
    fn terminate(
        &mut self,
        reason: &ExitReason,
        ctx: &mut Ctx<ProducerStage<Self>>,
    ) -> impl Future<Output = ()> + Send {
        let _ = (reason, ctx);
        async {}
    }
}

/// The process running a [`Producer`]. Spawn it like any actor.
pub struct ProducerStage<P: Producer> {
    producer: P,
    side: ProducerSide<P::Event>,
    /// Demand handed to `handle_demand` and not yet covered by emitted events.
    requested: usize,
}

impl<P: Producer> ProducerStage<P> {
    /// A producer stage for `producer`.
    pub fn new(producer: P, opts: ProducerOptions<P::Event>) -> Self {
        ProducerStage {
            producer,
            side: ProducerSide::new(opts, Arc::default()),
            requested: 0,
        }
    }

    fn emit(&mut self, events: Vec<P::Event>) -> usize {
        self.requested -= events.len().min(self.requested);
        self.side.emit(events)
    }

    /// Asks the producer for what the subscribers can take beyond what is already
    /// requested or buffered, then stops if the producer is finished and drained.
    async fn pump(&mut self, ctx: &mut Ctx<Self>) -> Flow {
        self.side.flush();
        // One pass over the subscriptions per pump: it is on every event's path.
        let mut pending = self.side.capacity();
        let want = pending.saturating_sub(self.requested + self.side.buffer.len());
        if want > 0 && !self.producer.is_finished() {
            self.requested += want;
            let events = self.producer.handle_demand(want, ctx).await;
            pending -= self.emit(events).min(pending);
        }
        StageCounters::set(&self.side.counters.pending_demand, pending);
        if self.producer.is_finished() && self.side.buffer.is_empty() {
            return Flow::Stop(ExitReason::Normal);
        }
        Flow::Continue
    }
}

impl<P: Producer> Actor for ProducerStage<P> {
    type Msg = StageMsg<P::Info, Infallible, P::Event>;

    async fn init(&mut self, ctx: &mut Ctx<Self>) -> Result<(), ExitReason> {
        let _ = ctx.shared.core.stage.set(self.side.counters.clone());
        self.producer.init(ctx).await
    }

    async fn handle(&mut self, msg: Self::Msg, ctx: &mut Ctx<Self>) -> Flow {
        match msg.0 {
            StageOp::Info(m) => {
                let events = self.producer.handle_info(m, ctx).await;
                let _ = self.emit(events);
                self.pump(ctx).await
            }
            StageOp::Subscribe(sub, reply) => {
                let r = self.side.add(sub, ctx);
                StageCounters::set(&self.side.counters.subscriptions, self.side.subscribers());
                reply.send(r);
                self.pump(ctx).await
            }
            StageOp::SubscribeTo(_, _, reply) => {
                reply.send(Err(StageError::Invalid(
                    "a producer does not subscribe to producers",
                )));
                Flow::Continue
            }
            StageOp::Cancel(_, reply) => {
                reply.send(false);
                Flow::Continue
            }
        }
    }

    async fn handle_wake(&mut self, token: u64, ctx: &mut Ctx<Self>) -> Flow {
        self.side.on_wake(token, ctx);
        StageCounters::set(&self.side.counters.subscriptions, self.side.subscribers());
        self.pump(ctx).await
    }

    async fn handle_down(&mut self, down: Down, ctx: &mut Ctx<Self>) -> Flow {
        self.side.on_down(&down);
        StageCounters::set(&self.side.counters.subscriptions, self.side.subscribers());
        self.pump(ctx).await
    }

    async fn terminate(&mut self, reason: &ExitReason, ctx: &mut Ctx<Self>) {
        self.producer.terminate(reason, ctx).await
    }
}
