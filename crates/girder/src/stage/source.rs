//! Ready-made producers: from an iterator or stream, and from pushes with
//! back-pressure.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::{FutureExt, Stream, StreamExt};
use tokio::sync::Semaphore;

use super::{Producer, ProducerOptions, ProducerStage, StageMsg};
use crate::{Addr, Ctx, Node, SpawnError, Weight};

/// A producer that drains an iterator only as fast as demand asks, so an infinite
/// iterator is safe. It stops (`Normal`) once the iterator is exhausted and its last
/// events are delivered.
///
/// # Examples
///
/// ```
/// use girder::stage::{IterProducer, ProducerOptions, ProducerStage};
/// # use girder::Node;
/// # #[tokio::main] async fn main() {
/// let node = Node::builder().build().unwrap();
/// // An endless source: only what consumers ask for is ever produced.
/// let naturals = node.spawn(ProducerStage::new(IterProducer::new(0u64..), ProducerOptions::default()));
/// assert!(naturals.is_ok());
/// # }
/// ```
pub struct IterProducer<I> {
    iter: I,
    finished: bool,
}

impl<I: Iterator> IterProducer<I> {
    /// A producer for `iter`.
    pub fn new(iter: impl IntoIterator<IntoIter = I>) -> Self {
        IterProducer {
            iter: iter.into_iter(),
            finished: false,
        }
    }
}

impl<I> Producer for IterProducer<I>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
{
    type Event = I::Item;
    type Info = ();

    async fn handle_demand(&mut self, demand: usize, _: &mut Ctx<ProducerStage<Self>>) -> Vec<I::Item> {
        let events: Vec<I::Item> = self.iter.by_ref().take(demand).collect();
        if events.len() < demand {
            self.finished = true;
        }
        events
    }

    fn is_finished(&self) -> bool {
        self.finished
    }
}

/// A producer that drains a [`Stream`] only as fast as demand asks. For each demand it
/// waits for the first item, then takes those already available. It stops (`Normal`)
/// when the stream ends.
pub struct StreamProducer<S> {
    stream: S,
    finished: bool,
}

impl<S: Stream + Unpin> StreamProducer<S> {
    /// A producer for `stream`.
    pub fn new(stream: S) -> Self {
        StreamProducer {
            stream,
            finished: false,
        }
    }
}

impl<S> Producer for StreamProducer<S>
where
    S: Stream + Unpin + Send + 'static,
    S::Item: Send + 'static,
{
    type Event = S::Item;
    type Info = ();

    async fn handle_demand(&mut self, demand: usize, _: &mut Ctx<ProducerStage<Self>>) -> Vec<S::Item> {
        let mut events = Vec::new();
        match self.stream.next().await {
            Some(e) => events.push(e),
            None => {
                self.finished = true;
                return events;
            }
        }
        while events.len() < demand {
            match self.stream.next().now_or_never() {
                Some(Some(e)) => events.push(e),
                Some(None) => {
                    self.finished = true;
                    break;
                }
                None => break,
            }
        }
        events
    }

    fn is_finished(&self) -> bool {
        self.finished
    }
}

/// Why a push failed. The event is handed back.
#[derive(PartialEq, Eq, Clone, Copy, thiserror::Error)]
pub enum PushError<E> {
    /// The push queue is full (`try_push` only; `push` waits).
    #[error("push queue full")]
    Full(E),
    /// The producer has exited.
    #[error("producer has exited")]
    Closed(E),
}

impl<E> std::fmt::Debug for PushError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::Full(_) => f.write_str("Full(..)"),
            PushError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<E> PushError<E> {
    /// The event that was not pushed.
    pub fn into_inner(self) -> E {
        match self {
            PushError::Full(e) | PushError::Closed(e) => e,
        }
    }
}

struct PushQueue<E> {
    events: parking_lot::Mutex<VecDeque<E>>,
    /// One permit per free place in `events`.
    room: Semaphore,
    /// A `Ready` message is on its way to the producer.
    notified: AtomicBool,
}

/// The message a [`Pusher`] sends when events are waiting.
pub struct PushReady(());

impl Weight for PushReady {}

/// A producer fed from outside through [`Pusher`]s, with back-pressure: at most
/// `capacity` pushed events wait for demand; past that a pusher awaits room
/// ([`Pusher::push`]) or gets [`PushError::Full`] ([`Pusher::try_push`]), its choice.
/// Events are emitted only against demand, so the producer's own buffer never
/// fills — unlike GenStage, where casting events into a producer grows its mailbox
/// without bound.
///
/// # Examples
///
/// ```
/// use girder::stage::{ProducerOptions, PushError, PushProducer};
/// # use girder::Node;
/// # #[tokio::main] async fn main() {
/// let node = Node::builder().build().unwrap();
/// let (_producer, pusher) = PushProducer::<u32>::start(&node, 2, ProducerOptions::default()).unwrap();
/// pusher.push(1).await.unwrap();
/// pusher.push(2).await.unwrap();
/// // Nobody consumes: the third event is refused (or `push` would wait).
/// assert!(matches!(pusher.try_push(3), Err(PushError::Full(3))));
/// # }
/// ```
pub struct PushProducer<E> {
    queue: Arc<PushQueue<E>>,
    /// Demand handed to `handle_demand` and not yet filled.
    demand: usize,
}

/// Pushes events into a [`PushProducer`]. Cheap to clone.
pub struct Pusher<E: Send + 'static> {
    queue: Arc<PushQueue<E>>,
    producer: Addr<ProducerStage<PushProducer<E>>>,
}

impl<E: Send + 'static> Clone for Pusher<E> {
    fn clone(&self) -> Self {
        Pusher {
            queue: self.queue.clone(),
            producer: self.producer.clone(),
        }
    }
}

impl<E: Send + 'static> PushProducer<E> {
    /// Spawns a push producer holding at most `capacity` waiting events, and returns
    /// its address and a pusher.
    ///
    /// # Errors
    ///
    /// As [`Node::spawn`].
    pub fn start(
        node: &Node,
        capacity: usize,
        opts: ProducerOptions<E>,
    ) -> Result<(Addr<ProducerStage<Self>>, Pusher<E>), SpawnError> {
        let queue = Arc::new(PushQueue {
            events: parking_lot::Mutex::new(VecDeque::new()),
            room: Semaphore::new(capacity.min(Semaphore::MAX_PERMITS)),
            notified: AtomicBool::new(false),
        });
        let producer = node.spawn(ProducerStage::new(
            PushProducer {
                queue: queue.clone(),
                demand: 0,
            },
            opts,
        ))?;
        Ok((producer.clone(), Pusher { queue, producer }))
    }

    fn take(&mut self) -> Vec<E> {
        let events: Vec<E> = {
            let mut q = self.queue.events.lock();
            let n = self.demand.min(q.len());
            q.drain(..n).collect()
        };
        self.demand -= events.len();
        self.queue.room.add_permits(events.len());
        events
    }
}

impl<E> Drop for PushProducer<E> {
    fn drop(&mut self) {
        self.queue.room.close();
    }
}

impl<E: Send + 'static> Producer for PushProducer<E> {
    type Event = E;
    type Info = PushReady;

    async fn handle_demand(&mut self, demand: usize, _: &mut Ctx<ProducerStage<Self>>) -> Vec<E> {
        self.demand += demand;
        self.take()
    }

    async fn handle_info(&mut self, _: PushReady, _: &mut Ctx<ProducerStage<Self>>) -> Vec<E> {
        self.queue.notified.store(false, Ordering::Release);
        self.take()
    }
}

impl<E: Send + 'static> Pusher<E> {
    /// Pushes an event, waiting for room.
    ///
    /// # Errors
    ///
    /// [`PushError::Closed`] if the producer has exited.
    pub async fn push(&self, event: E) -> Result<(), PushError<E>> {
        match self.queue.room.acquire().await {
            Ok(permit) => {
                permit.forget();
                self.enqueue(event);
                Ok(())
            }
            Err(_) => Err(PushError::Closed(event)),
        }
    }

    /// Pushes an event if there is room.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] with the event when the queue is full,
    /// [`PushError::Closed`] if the producer has exited.
    pub fn try_push(&self, event: E) -> Result<(), PushError<E>> {
        match self.queue.room.try_acquire() {
            Ok(permit) => {
                permit.forget();
                self.enqueue(event);
                Ok(())
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => Err(PushError::Full(event)),
            Err(tokio::sync::TryAcquireError::Closed) => Err(PushError::Closed(event)),
        }
    }

    /// Events pushed and not yet emitted.
    pub fn len(&self) -> usize {
        self.queue.events.lock().len()
    }

    /// `true` if no pushed event waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn enqueue(&self, event: E) {
        self.queue.events.lock().push_back(event);
        if !self.queue.notified.swap(true, Ordering::AcqRel)
            && self
                .producer
                .try_send_priority(StageMsg::info(PushReady(())))
                .is_err()
        {
            // The producer's mailbox is full (or it exited): the next push retries.
            self.queue.notified.store(false, Ordering::Release);
        }
    }
}
