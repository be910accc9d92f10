//! Consumers: the `Consumer` behaviour, its process, and the consumer side shared with
//! producer-consumers (upstream subscriptions, demand, cancel modes).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use super::stats::StageCounters;
use super::subscription::Subscription;
use super::{
    Cancel, SourceRef, StageError, StageMsg, StageOp, SubscribeOptions, SubscriptionId,
    DEFAULT_MAX_SUBSCRIPTIONS,
};
use crate::process::ProcessHandle;
use crate::{Actor, Ctx, Down, ExitReason, Flow, MonitorRef, Weight};

struct Upstream<In> {
    sub: Arc<Subscription<In>>,
    monitor: MonitorRef,
    cancel: Cancel,
    /// Events are handled (and demand given back) in pieces of at most this many:
    /// `max_demand - min_demand`, as GenStage.
    piece: usize,
    /// Events taken from the subscription and not yet handled.
    pending: VecDeque<Vec<In>>,
}

/// The upstream half of a stage.
pub(crate) struct ConsumerSide<In> {
    ups: Vec<Upstream<In>>,
    pub(crate) counters: Arc<StageCounters>,
    next: usize,
}

/// What to do after a producer went down.
pub(crate) enum AfterDown {
    NotOurs,
    Continue,
    Stop(ExitReason),
}

impl<In: Send + 'static> ConsumerSide<In> {
    pub(crate) fn new(counters: Arc<StageCounters>) -> Self {
        ConsumerSide {
            ups: Vec::new(),
            counters,
            next: 0,
        }
    }

    pub(crate) fn owns(&self, token: u64) -> bool {
        self.ups.iter().any(|u| u.sub.id == token)
    }

    pub(crate) fn subscriptions(&self) -> usize {
        self.ups.len()
    }

    /// Subscribes this stage (`me`) to `source`.
    pub(crate) async fn subscribe<A: Actor>(
        &mut self,
        me: Arc<dyn ProcessHandle>,
        source: SourceRef<In>,
        opts: SubscribeOptions,
        ctx: &Ctx<A>,
    ) -> Result<SubscriptionId, StageError> {
        let (max, min) = opts.validate()?;
        if self.ups.len() >= DEFAULT_MAX_SUBSCRIPTIONS {
            return Err(StageError::TooManySubscriptions {
                limit: DEFAULT_MAX_SUBSCRIPTIONS,
            });
        }
        let sub = Arc::new(Subscription::new(source.0.process(), me, opts.partition));
        source.0.subscribe(sub.clone()).await?;
        let monitor = match ctx.monitor(sub.producer_pid()) {
            Ok(m) => m,
            Err(_) => {
                sub.cancel();
                return Err(StageError::TooManySubscriptions {
                    limit: DEFAULT_MAX_SUBSCRIPTIONS,
                });
            }
        };
        let id = SubscriptionId(sub.id);
        sub.ask(max);
        self.ups.push(Upstream {
            sub,
            monitor,
            cancel: opts.cancel,
            piece: (max - min).max(1),
            pending: VecDeque::new(),
        });
        Ok(id)
    }

    /// Takes what the subscription `token` holds into the pending pieces.
    pub(crate) fn on_wake(&mut self, token: u64) {
        if let Some(u) = self.ups.iter_mut().find(|u| u.sub.id == token) {
            u.sub.take_into(&mut u.pending);
        }
    }

    /// The next piece to handle (round-robin over subscriptions), and its
    /// subscription's index.
    pub(crate) fn next_piece(&mut self) -> Option<(usize, Vec<In>)> {
        let n = self.ups.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            let u = &mut self.ups[i];
            if let Some(mut chunk) = u.pending.pop_front() {
                if chunk.len() > u.piece {
                    let rest = chunk.split_off(u.piece);
                    u.pending.push_front(rest);
                }
                self.next = (i + 1) % n;
                StageCounters::add(&self.counters.events_in, chunk.len());
                return Some((i, chunk));
            }
        }
        None
    }

    /// Gives back demand for `n` handled events of subscription `i`.
    pub(crate) fn handled(&self, i: usize, n: usize) {
        if let Some(u) = self.ups.get(i) {
            u.sub.ask(n);
        }
    }

    /// Cancels a subscription by id. Events not handled yet are dropped and counted.
    pub(crate) fn cancel<A: Actor>(&mut self, id: SubscriptionId, ctx: &Ctx<A>) -> bool {
        let Some(i) = self.ups.iter().position(|u| u.sub.id == id.0) else {
            return false;
        };
        let u = self.ups.remove(i);
        ctx.demonitor(u.monitor);
        let lost = u.sub.cancel() + u.pending.iter().map(Vec::len).sum::<usize>();
        StageCounters::add(&self.counters.dropped, lost);
        true
    }

    /// A producer went down. Events it delivered before exiting are moved to the
    /// pending pieces first (the caller handles them before acting on the result).
    pub(crate) fn on_down(&mut self, down: &Down) -> AfterDown {
        let Some(i) = self.ups.iter().position(|u| u.monitor == down.monitor) else {
            return AfterDown::NotOurs;
        };
        let u = &mut self.ups[i];
        u.sub.take_into(&mut u.pending);
        let cancel = self.ups[i].cancel;
        match cancel {
            Cancel::Permanent => AfterDown::Stop(down.reason.clone()),
            Cancel::Transient if !down.reason.is_clean() => AfterDown::Stop(down.reason.clone()),
            _ => AfterDown::Continue,
        }
    }

    /// Events taken and not yet handled.
    pub(crate) fn pending(&self) -> usize {
        self.ups.iter().flat_map(|u| u.pending.iter()).map(Vec::len).sum()
    }

    /// Forgets subscriptions whose producer is gone and whose events are handled.
    pub(crate) fn prune(&mut self) {
        self.ups
            .retain(|u| !(u.sub.is_cancelled() && u.pending.is_empty()));
    }

    /// Marks the subscription of a producer that went down as ended.
    pub(crate) fn end(&mut self, down: &Down) {
        if let Some(u) = self.ups.iter().find(|u| u.monitor == down.monitor) {
            u.sub.cancel();
        }
    }
}

/// A stage that handles events from producers (GenStage's `:consumer`).
///
/// It subscribes with [`stage::subscribe`](super::subscribe); it asks each producer for
/// `max_demand` events at first and for more as it handles them, in pieces of at most
/// `max_demand - min_demand`, so at most `max_demand` events per subscription are ever
/// in flight to it.
pub trait Consumer: Sized + Send + 'static {
    /// The events it handles.
    type Event: Send + 'static;
    /// Other messages it handles (`()` if none).
    type Info: Weight + Send + 'static;

    /// Runs once, before any subscription.
    fn init(
        &mut self,
        ctx: &mut Ctx<ConsumerStage<Self>>,
    ) -> impl Future<Output = Result<(), ExitReason>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Handles a piece of events.
    fn handle_events(
        &mut self,
        events: Vec<Self::Event>,
        ctx: &mut Ctx<ConsumerStage<Self>>,
    ) -> impl Future<Output = Flow> + Send;

    /// Handles another message.
    fn handle_info(
        &mut self,
        msg: Self::Info,
        ctx: &mut Ctx<ConsumerStage<Self>>,
    ) -> impl Future<Output = Flow> + Send {
        let _ = (msg, ctx);
        async { Flow::Continue }
    }

    /// Runs once when the stage stops through its loop.
    fn terminate(
        &mut self,
        reason: &ExitReason,
        ctx: &mut Ctx<ConsumerStage<Self>>,
    ) -> impl Future<Output = ()> + Send {
        let _ = (reason, ctx);
        async {}
    }
}

/// The process running a [`Consumer`].
pub struct ConsumerStage<C: Consumer> {
    consumer: C,
    side: ConsumerSide<C::Event>,
}

impl<C: Consumer> ConsumerStage<C> {
    /// A consumer stage for `consumer`.
    pub fn new(consumer: C) -> Self {
        ConsumerStage {
            consumer,
            side: ConsumerSide::new(Arc::default()),
        }
    }

    async fn drain(&mut self, ctx: &mut Ctx<Self>) -> Flow {
        while let Some((i, piece)) = self.side.next_piece() {
            let n = piece.len();
            let flow = self.consumer.handle_events(piece, ctx).await;
            self.side.handled(i, n);
            if let Flow::Stop(r) = flow {
                return Flow::Stop(r);
            }
            if let Some(r) = ctx.stop.clone() {
                return Flow::Stop(r);
            }
        }
        self.side.prune();
        StageCounters::set(&self.side.counters.subscriptions, self.side.subscriptions());
        Flow::Continue
    }
}

impl<C: Consumer> Actor for ConsumerStage<C> {
    type Msg = StageMsg<C::Info, C::Event, Infallible>;

    async fn init(&mut self, ctx: &mut Ctx<Self>) -> Result<(), ExitReason> {
        let _ = ctx.shared.core.stage.set(self.side.counters.clone());
        self.consumer.init(ctx).await
    }

    async fn handle(&mut self, msg: Self::Msg, ctx: &mut Ctx<Self>) -> Flow {
        match msg.0 {
            StageOp::Info(m) => self.consumer.handle_info(m, ctx).await,
            StageOp::SubscribeTo(source, opts, reply) => {
                let me: Arc<dyn ProcessHandle> = ctx.shared.clone();
                let r = self.side.subscribe(me, source, opts, ctx).await;
                StageCounters::set(&self.side.counters.subscriptions, self.side.subscriptions());
                reply.send(r);
                Flow::Continue
            }
            StageOp::Cancel(id, reply) => {
                reply.send(self.side.cancel(id, ctx));
                StageCounters::set(&self.side.counters.subscriptions, self.side.subscriptions());
                Flow::Continue
            }
            StageOp::Subscribe(sub, reply) => {
                sub.cancel();
                reply.send(Err(StageError::Invalid("a consumer has no subscribers")));
                Flow::Continue
            }
        }
    }

    async fn handle_wake(&mut self, token: u64, ctx: &mut Ctx<Self>) -> Flow {
        self.side.on_wake(token);
        self.drain(ctx).await
    }

    async fn handle_down(&mut self, down: Down, ctx: &mut Ctx<Self>) -> Flow {
        let after = self.side.on_down(&down);
        // Events the producer delivered before it exited are handled first.
        if let Flow::Stop(r) = self.drain(ctx).await {
            return Flow::Stop(r);
        }
        self.side.end(&down);
        self.side.prune();
        StageCounters::set(&self.side.counters.subscriptions, self.side.subscriptions());
        match after {
            AfterDown::Stop(r) => Flow::Stop(r),
            AfterDown::NotOurs | AfterDown::Continue => Flow::Continue,
        }
    }

    async fn terminate(&mut self, reason: &ExitReason, ctx: &mut Ctx<Self>) {
        self.consumer.terminate(reason, ctx).await
    }
}
