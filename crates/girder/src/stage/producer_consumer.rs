//! Producer-consumers: handle events from upstream, emit events downstream.

use std::future::Future;
use std::sync::Arc;

use super::consumer::{AfterDown, ConsumerSide};
use super::producer::{ProducerOptions, ProducerSide};
use super::stats::StageCounters;
use super::{StageMsg, StageOp};
use crate::process::ProcessHandle;
use crate::{Actor, Ctx, Down, ExitReason, Flow, Weight};

/// A stage between producers and consumers (GenStage's `:producer_consumer`).
///
/// Back-pressure runs through it: it handles the next piece of upstream events only
/// once its output has been taken by its own consumers, so upstream is asked for
/// events only as fast as downstream consumes them, and its buffer stays bounded
/// (GenStage leaves a producer-consumer's buffer unbounded by default; girder does
/// not).
pub trait ProducerConsumer: Sized + Send + 'static {
    /// The events it receives.
    type In: Send + 'static;
    /// The events it emits.
    type Out: Send + 'static;
    /// Other messages it handles (`()` if none).
    type Info: Weight + Send + 'static;

    /// Runs once, before any subscription.
    fn init(
        &mut self,
        ctx: &mut Ctx<ProducerConsumerStage<Self>>,
    ) -> impl Future<Output = Result<(), ExitReason>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Handles a piece of events, returning the events to emit.
    fn handle_events(
        &mut self,
        events: Vec<Self::In>,
        ctx: &mut Ctx<ProducerConsumerStage<Self>>,
    ) -> impl Future<Output = Vec<Self::Out>> + Send;

    /// Handles another message; may emit events.
    fn handle_info(
        &mut self,
        msg: Self::Info,
        ctx: &mut Ctx<ProducerConsumerStage<Self>>,
    ) -> impl Future<Output = Vec<Self::Out>> + Send {
        let _ = (msg, ctx);
        async { Vec::new() }
    }

    /// Runs once when the stage stops through its loop.
    fn terminate(
        &mut self,
        reason: &ExitReason,
        ctx: &mut Ctx<ProducerConsumerStage<Self>>,
    ) -> impl Future<Output = ()> + Send {
        let _ = (reason, ctx);
        async {}
    }
}

/// The process running a [`ProducerConsumer`].
pub struct ProducerConsumerStage<P: ProducerConsumer> {
    stage: P,
    up: ConsumerSide<P::In>,
    down: ProducerSide<P::Out>,
    /// A permanent producer went down: stop once its last events are handled.
    exit_when_drained: Option<ExitReason>,
}

impl<P: ProducerConsumer> ProducerConsumerStage<P> {
    /// A producer-consumer stage for `stage`, emitting with `opts`.
    pub fn new(stage: P, opts: ProducerOptions<P::Out>) -> Self {
        let counters: Arc<StageCounters> = Arc::default();
        ProducerConsumerStage {
            stage,
            up: ConsumerSide::new(counters.clone()),
            down: ProducerSide::new(opts, counters),
            exit_when_drained: None,
        }
    }

    /// Handles upstream pieces while downstream takes the output.
    async fn pump(&mut self, ctx: &mut Ctx<Self>) -> Flow {
        self.down.flush();
        while self.down.buffer.is_empty() {
            let Some((i, piece)) = self.up.next_piece() else {
                break;
            };
            let n = piece.len();
            let out = self.stage.handle_events(piece, ctx).await;
            let _ = self.down.emit(out);
            self.up.handled(i, n);
            if let Some(r) = ctx.stop.clone() {
                return Flow::Stop(r);
            }
        }
        self.up.prune();
        self.refresh();
        // Stop once the last events are handled and their output taken downstream
        // (or nobody is left to take it: then it is lost, and counted).
        if self.up.pending() == 0 && (self.down.buffer.is_empty() || self.down.subscribers() == 0) {
            if let Some(r) = self.exit_when_drained.take() {
                StageCounters::add(&self.down.counters.dropped, self.down.buffer.len());
                return Flow::Stop(r);
            }
        }
        Flow::Continue
    }

    fn refresh(&self) {
        StageCounters::set(
            &self.down.counters.subscriptions,
            self.up.subscriptions() + self.down.subscribers(),
        );
        StageCounters::set(&self.down.counters.pending_demand, self.down.capacity());
    }
}

impl<P: ProducerConsumer> Actor for ProducerConsumerStage<P> {
    type Msg = StageMsg<P::Info, P::In, P::Out>;

    async fn init(&mut self, ctx: &mut Ctx<Self>) -> Result<(), ExitReason> {
        let _ = ctx.shared.core.stage.set(self.down.counters.clone());
        self.stage.init(ctx).await
    }

    async fn handle(&mut self, msg: Self::Msg, ctx: &mut Ctx<Self>) -> Flow {
        match msg.0 {
            StageOp::Info(m) => {
                let out = self.stage.handle_info(m, ctx).await;
                let _ = self.down.emit(out);
                self.pump(ctx).await
            }
            StageOp::Subscribe(sub, reply) => {
                let r = self.down.add(sub, ctx);
                self.refresh();
                reply.send(r);
                self.pump(ctx).await
            }
            StageOp::SubscribeTo(source, opts, reply) => {
                let me: Arc<dyn ProcessHandle> = ctx.shared.clone();
                let r = self.up.subscribe(me, source, opts, ctx).await;
                self.refresh();
                reply.send(r);
                Flow::Continue
            }
            StageOp::Cancel(id, reply) => {
                reply.send(self.up.cancel(id, ctx));
                self.refresh();
                Flow::Continue
            }
        }
    }

    async fn handle_wake(&mut self, token: u64, ctx: &mut Ctx<Self>) -> Flow {
        if self.up.owns(token) {
            self.up.on_wake(token);
        } else {
            self.down.on_wake(token, ctx);
        }
        self.pump(ctx).await
    }

    async fn handle_down(&mut self, down: Down, ctx: &mut Ctx<Self>) -> Flow {
        if self.down.on_down(&down) {
            return self.pump(ctx).await;
        }
        let after = self.up.on_down(&down);
        self.up.end(&down);
        if let AfterDown::Stop(r) = after {
            // Handle what the producer delivered before it exited first (as far as
            // downstream takes it; the rest is handled when demand comes).
            self.exit_when_drained = Some(r);
        }
        self.pump(ctx).await
    }

    async fn terminate(&mut self, reason: &ExitReason, ctx: &mut Ctx<Self>) {
        self.stage.terminate(reason, ctx).await
    }
}
