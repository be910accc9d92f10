//! Demand-driven stages: producers, producer-consumers and consumers with
//! back-pressure (the GenStage model).
//!
//! A consumer never receives more than it asked for. It subscribes to a producer with
//! `max_demand` (default 1,000) and `min_demand` (default `max_demand / 2`), asks for
//! `max_demand` events at first, and handles events in pieces of at most
//! `max_demand - min_demand`, asking for as many more after each piece. So at most
//! `max_demand` events per subscription are ever in flight to it, and a producer that
//! could emit forever is asked only for what is consumed.
//!
//! Worked numbers, with the defaults: the consumer asks for 1,000; the producer's
//! `handle_demand(1000)` emits 1,000; the consumer handles them as two pieces of 500,
//! asking for 500 more after each. The producer never has more than 1,000
//! unconsumed events outstanding to it.
//!
//! | kind | behaviour | process |
//! |---|---|---|
//! | producer | [`Producer`]: `handle_demand` | [`ProducerStage`] |
//! | producer-consumer | [`ProducerConsumer`]: `handle_events` → events | [`ProducerConsumerStage`] |
//! | consumer | [`Consumer`]: `handle_events` | [`ConsumerStage`] |
//!
//! Stages are ordinary girder processes: spawn them, supervise them
//! ([`ChildSpec::worker`](crate::supervisor::ChildSpec::worker)), link and monitor
//! them. Other messages reach their `handle_info` through
//! [`StageMsg::info`].
//!
//! **Dispatchers** ([`Dispatcher`]) share a producer's events among its consumers:
//! by largest demand, broadcast (at the pace of the slowest), or by partition.
//!
//! **The producer buffer** holds events emitted without demand, up to `buffer_size`
//! (default 10,000, for producer-consumers too), keeping the first or the last
//! ([`BufferKeep`]); every dropped event is counted in [`StageStats::dropped`] (and
//! logged rarely, never once per event).
//!
//! **Sources.** [`IterProducer`] drains any iterator only as fast as demand asks (an
//! infinite source is safe); [`PushProducer`] accepts pushes from outside through a
//! [`Pusher`] with back-pressure: the pusher awaits room, or gets an error, its choice.
//!
//! **Cancellation** ([`Cancel`], as GenStage): when a producer exits, a `Permanent`
//! subscriber exits with the same reason, a `Transient` one only if the reason is
//! abnormal, a `Temporary` one keeps running. Events the producer delivered before it
//! exited are handled first. A consumer's exit cancels its subscriptions.
//!
//! **How events travel.** Events do not pass through the consumer's mailbox: a
//! subscription holds the batches in flight (at most `max_demand` events, by
//! construction), and each side is woken through its system lane, with at most one
//! pending wake per subscription and direction. A flooded mailbox therefore never
//! stalls the event flow, and the flow never floods a mailbox.
//!
//! **Observation.** Each stage reports pending demand, buffered and dropped events, and
//! events in and out in [`ProcessInfo::stage`](crate::ProcessInfo::stage).

mod consumer;
mod dispatcher;
mod producer;
mod producer_consumer;
mod source;
mod stats;
mod subscription;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

pub use consumer::{Consumer, ConsumerStage};
pub use dispatcher::Dispatcher;
pub use producer::{BufferKeep, Producer, ProducerOptions, ProducerStage, DEFAULT_BUFFER_SIZE};
pub use producer_consumer::{ProducerConsumer, ProducerConsumerStage};
pub use source::{IterProducer, PushError, PushProducer, PushReady, Pusher, StreamProducer};
pub use stats::{StageCounters, StageStats};

use crate::process::ProcessHandle;
use crate::{Addr, CallError, Pid, Reply, Weight};
use subscription::Subscription;

/// Subscriptions a stage may have on each side.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 1024;
/// Default `max_demand`, as GenStage.
pub const DEFAULT_MAX_DEMAND: usize = 1000;
/// How long subscribing waits for the stages to answer.
pub const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What happens to a subscriber when its producer exits (GenStage's `cancel`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cancel {
    /// The subscriber exits with the producer's reason. The default.
    Permanent,
    /// The subscriber exits only if the reason is abnormal.
    Transient,
    /// The subscriber keeps running.
    Temporary,
}

/// Options of one subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Events in flight at most (default 1,000).
    pub max_demand: usize,
    /// Demand is given back once `max_demand - min_demand` events are handled
    /// (default `max_demand / 2`).
    pub min_demand: Option<usize>,
    /// What the producer's exit does to the subscriber.
    pub cancel: Cancel,
    /// The partition to subscribe to (partition dispatcher only).
    pub partition: Option<usize>,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            max_demand: DEFAULT_MAX_DEMAND,
            min_demand: None,
            cancel: Cancel::Permanent,
            partition: None,
        }
    }
}

impl SubscribeOptions {
    /// Sets `max_demand`.
    pub fn max_demand(mut self, n: usize) -> Self {
        self.max_demand = n;
        self
    }

    /// Sets `min_demand`.
    pub fn min_demand(mut self, n: usize) -> Self {
        self.min_demand = Some(n);
        self
    }

    /// Sets the cancel mode.
    pub fn cancel(mut self, cancel: Cancel) -> Self {
        self.cancel = cancel;
        self
    }

    /// Sets the partition.
    pub fn partition(mut self, p: usize) -> Self {
        self.partition = Some(p);
        self
    }

    /// `(max_demand, min_demand)`, checked.
    pub(crate) fn validate(&self) -> Result<(usize, usize), StageError> {
        if self.max_demand == 0 {
            return Err(StageError::Invalid("max_demand must be greater than zero"));
        }
        let min = self.min_demand.unwrap_or(self.max_demand / 2);
        if min >= self.max_demand {
            return Err(StageError::Invalid("min_demand must be smaller than max_demand"));
        }
        Ok((self.max_demand, min))
    }
}

/// Identifies a subscription (to cancel it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubscriptionId(pub(crate) u64);

/// Stage failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StageError {
    /// A stage already has its maximum of subscriptions.
    #[error("too many subscriptions ({limit}); raise ProducerOptions::max_subscribers")]
    TooManySubscriptions {
        /// The limit.
        limit: usize,
    },
    /// Invalid options.
    #[error("invalid subscription: {0}")]
    Invalid(&'static str),
    /// A stage did not answer.
    #[error("stage unreachable: {0}")]
    Call(#[from] CallError),
}

/// The messages of a stage process: build them with [`StageMsg::info`].
pub struct StageMsg<Info, In, Out>(pub(crate) StageOp<Info, In, Out>);

impl<Info, In, Out> StageMsg<Info, In, Out> {
    /// A message for the stage's `handle_info`.
    pub fn info(msg: Info) -> Self {
        StageMsg(StageOp::Info(msg))
    }
}

impl<Info: Weight, In, Out> Weight for StageMsg<Info, In, Out> {
    fn weight(&self) -> usize {
        match &self.0 {
            StageOp::Info(m) => m.weight(),
            _ => std::mem::size_of::<Self>(),
        }
    }
}

pub(crate) enum StageOp<Info, In, Out> {
    Info(Info),
    /// A consumer subscribes to this stage.
    Subscribe(Arc<Subscription<Out>>, Reply<Result<(), StageError>>),
    /// Subscribe this stage to a producer.
    SubscribeTo(
        SourceRef<In>,
        SubscribeOptions,
        Reply<Result<SubscriptionId, StageError>>,
    ),
    Cancel(SubscriptionId, Reply<bool>),
}

/// The producer end of a subscription, type-erased.
pub(crate) trait SourceHandle<E>: Send + Sync {
    fn process(&self) -> Arc<dyn ProcessHandle>;
    fn subscribe(&self, sub: Arc<Subscription<E>>) -> BoxFuture<'_, Result<(), StageError>>;
}

impl<P: Producer> SourceHandle<P::Event> for Addr<ProducerStage<P>> {
    fn process(&self) -> Arc<dyn ProcessHandle> {
        self.shared.clone()
    }

    fn subscribe(&self, sub: Arc<Subscription<P::Event>>) -> BoxFuture<'_, Result<(), StageError>> {
        Box::pin(async move {
            self.call(|r| StageMsg(StageOp::Subscribe(sub, r)), SUBSCRIBE_TIMEOUT)
                .await?
        })
    }
}

impl<P: ProducerConsumer> SourceHandle<P::Out> for Addr<ProducerConsumerStage<P>> {
    fn process(&self) -> Arc<dyn ProcessHandle> {
        self.shared.clone()
    }

    fn subscribe(&self, sub: Arc<Subscription<P::Out>>) -> BoxFuture<'_, Result<(), StageError>> {
        Box::pin(async move {
            self.call(|r| StageMsg(StageOp::Subscribe(sub, r)), SUBSCRIBE_TIMEOUT)
                .await?
        })
    }
}

/// A type-erased producer end, as passed between stages.
#[doc(hidden)]
pub struct SourceRef<E>(pub(crate) Arc<dyn SourceHandle<E>>);

mod sealed {
    pub trait Sealed {}
    impl<A: crate::Actor> Sealed for crate::Addr<A> {}
}

/// A stage that emits events of type `E`: the address of a [`ProducerStage`] or a
/// [`ProducerConsumerStage`].
pub trait Source<E>: sealed::Sealed {
    #[doc(hidden)]
    fn source_handle(&self) -> SourceRef<E>;
}

impl<P: Producer> Source<P::Event> for Addr<ProducerStage<P>> {
    fn source_handle(&self) -> SourceRef<P::Event> {
        SourceRef(Arc::new(self.clone()))
    }
}

impl<P: ProducerConsumer> Source<P::Out> for Addr<ProducerConsumerStage<P>> {
    fn source_handle(&self) -> SourceRef<P::Out> {
        SourceRef(Arc::new(self.clone()))
    }
}

/// A stage that takes events of type `E`: the address of a [`ConsumerStage`] or a
/// [`ProducerConsumerStage`].
pub trait Sink<E>: sealed::Sealed {
    #[doc(hidden)]
    fn subscribe_to(
        &self,
        source: SourceRef<E>,
        opts: SubscribeOptions,
    ) -> BoxFuture<'_, Result<SubscriptionId, StageError>>;
    #[doc(hidden)]
    fn cancel_subscription(&self, id: SubscriptionId) -> BoxFuture<'_, Result<bool, StageError>>;
    /// The stage's pid.
    fn sink_pid(&self) -> Pid;
}

macro_rules! sink_impl {
    ($stage:ident, $bound:ident, $event:ident, $info:ident, $out:ty) => {
        impl<C: $bound> Sink<C::$event> for Addr<$stage<C>> {
            fn subscribe_to(
                &self,
                source: SourceRef<C::$event>,
                opts: SubscribeOptions,
            ) -> BoxFuture<'_, Result<SubscriptionId, StageError>> {
                Box::pin(async move {
                    self.call(
                        |r| StageMsg::<C::$info, C::$event, $out>(StageOp::SubscribeTo(source, opts, r)),
                        SUBSCRIBE_TIMEOUT * 2,
                    )
                    .await?
                })
            }

            fn cancel_subscription(&self, id: SubscriptionId) -> BoxFuture<'_, Result<bool, StageError>> {
                Box::pin(async move {
                    Ok(self
                        .call(
                            |r| StageMsg::<C::$info, C::$event, $out>(StageOp::Cancel(id, r)),
                            SUBSCRIBE_TIMEOUT,
                        )
                        .await?)
                })
            }

            fn sink_pid(&self) -> Pid {
                self.pid()
            }
        }
    };
}
sink_impl!(ConsumerStage, Consumer, Event, Info, Infallible);
sink_impl!(ProducerConsumerStage, ProducerConsumer, In, Info, C::Out);

/// Subscribes `consumer` to `producer` (GenStage's `sync_subscribe`): returns once the
/// subscription is in place and the first demand has been sent.
///
/// # Errors
///
/// [`StageError::Invalid`] for bad options (`max_demand` 0, `min_demand` ≥
/// `max_demand`, a missing or out-of-range partition); `TooManySubscriptions`;
/// `Call` if a stage is down or does not answer.
pub async fn subscribe<E>(
    consumer: &impl Sink<E>,
    producer: &impl Source<E>,
    opts: SubscribeOptions,
) -> Result<SubscriptionId, StageError> {
    opts.validate()?;
    consumer.subscribe_to(producer.source_handle(), opts).await
}

/// Cancels a subscription from the consumer's side. Returns `false` if it was not
/// active. Events in flight on it are dropped (and counted).
///
/// # Errors
///
/// `Call` if the consumer is down or does not answer.
pub async fn cancel<E>(consumer: &impl Sink<E>, id: SubscriptionId) -> Result<bool, StageError> {
    consumer.cancel_subscription(id).await
}
