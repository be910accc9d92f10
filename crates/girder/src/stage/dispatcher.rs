//! How a producer shares its events among its consumers (GenStage's dispatchers).

use std::fmt;
use std::sync::Arc;

use super::subscription::Subscription;

type KeyFn<E> = Arc<dyn Fn(&E) -> usize + Send + Sync>;

/// How a producer's events are shared among its subscribers.
///
/// | dispatcher | each event goes to | the producer's demand is |
/// |---|---|---|
/// | [`demand`](Dispatcher::demand) (default) | one consumer: the one with the largest pending demand | the sum of the consumers' demands |
/// | [`broadcast`](Dispatcher::broadcast) | every consumer, in order | the smallest demand: the pace of the slowest |
/// | [`partition`](Dispatcher::partition) | a consumer subscribed to `key(event) % partitions` (the one with the largest pending demand, if several) | the sum of the partitions' demands |
///
/// Events a dispatcher cannot place yet wait in the producer's bounded buffer.
pub enum Dispatcher<E> {
    /// To the consumer with the largest pending demand.
    Demand,
    /// To every consumer (events are cloned).
    Broadcast(fn(&E) -> E),
    /// To the consumer of the event's partition.
    Partition {
        /// Number of partitions; consumers subscribe with `partition: 0..partitions`.
        partitions: usize,
        /// The event's partition (taken modulo `partitions`).
        key: KeyFn<E>,
    },
}

impl<E> Clone for Dispatcher<E> {
    fn clone(&self) -> Self {
        match self {
            Dispatcher::Demand => Dispatcher::Demand,
            Dispatcher::Broadcast(f) => Dispatcher::Broadcast(*f),
            Dispatcher::Partition { partitions, key } => Dispatcher::Partition {
                partitions: *partitions,
                key: key.clone(),
            },
        }
    }
}

impl<E> fmt::Debug for Dispatcher<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dispatcher::Demand => f.write_str("Demand"),
            Dispatcher::Broadcast(_) => f.write_str("Broadcast"),
            Dispatcher::Partition { partitions, .. } => write!(f, "Partition({partitions})"),
        }
    }
}

// A derive would demand `E: Default`.
#[allow(clippy::derivable_impls)]
impl<E> Default for Dispatcher<E> {
    fn default() -> Self {
        Dispatcher::Demand
    }
}

impl<E> Dispatcher<E> {
    /// Each event to the consumer with the largest pending demand.
    pub fn demand() -> Self {
        Dispatcher::Demand
    }

    /// Every event to every consumer, at the pace of the slowest.
    pub fn broadcast() -> Self
    where
        E: Clone,
    {
        Dispatcher::Broadcast(E::clone)
    }

    /// Events by `key(event) % partitions` to the consumer of that partition.
    ///
    /// # Panics
    ///
    /// If `partitions` is zero.
    pub fn partition(partitions: usize, key: impl Fn(&E) -> usize + Send + Sync + 'static) -> Self {
        assert!(
            partitions > 0,
            "Dispatcher::partition needs at least one partition"
        );
        Dispatcher::Partition {
            partitions,
            key: Arc::new(key),
        }
    }

    /// How many events the subscribers can take now.
    pub(crate) fn capacity(&self, subs: &[Arc<Subscription<E>>]) -> usize {
        match self {
            Dispatcher::Broadcast(_) => subs.iter().map(|s| s.demand()).min().unwrap_or(0),
            _ => subs.iter().map(|s| s.demand()).sum(),
        }
    }

    /// Hands over as many of `events` as the demand allows. Returns how many were
    /// delivered (each counted once, even when broadcast) and the rest, in order
    /// (per partition for the partition dispatcher).
    pub(crate) fn dispatch(&self, subs: &[Arc<Subscription<E>>], mut events: Vec<E>) -> (usize, Vec<E>) {
        if events.is_empty() || subs.is_empty() {
            return (0, events);
        }
        match self {
            Dispatcher::Demand => {
                let mut delivered = 0;
                while !events.is_empty() {
                    let Some((sub, d)) = subs.iter().map(|s| (s, s.demand())).max_by_key(|(_, d)| *d) else {
                        break;
                    };
                    if d == 0 {
                        break;
                    }
                    let rest = if d < events.len() {
                        events.split_off(d)
                    } else {
                        Vec::new()
                    };
                    let n = events.len();
                    match sub.deliver(events) {
                        Ok(()) => {
                            delivered += n;
                            events = rest;
                        }
                        Err(mut back) => {
                            // Cancelled meanwhile: its demand now reads zero.
                            back.extend(rest);
                            events = back;
                        }
                    }
                }
                (delivered, events)
            }
            Dispatcher::Broadcast(clone) => {
                let d = self.capacity(subs);
                if d == 0 {
                    return (0, events);
                }
                let rest = if d < events.len() {
                    events.split_off(d)
                } else {
                    Vec::new()
                };
                let n = events.len();
                let (last, others) = subs.split_last().expect("subs is not empty");
                for s in others {
                    let _ = s.deliver(events.iter().map(clone).collect());
                }
                let _ = last.deliver(events);
                (n, rest)
            }
            Dispatcher::Partition { partitions, key } => {
                let mut parts: Vec<Vec<E>> = (0..*partitions).map(|_| Vec::new()).collect();
                for e in events {
                    let p = key(&e) % partitions;
                    parts[p].push(e);
                }
                let mut delivered = 0;
                let mut rest = Vec::new();
                for (p, mut part) in parts.into_iter().enumerate() {
                    if part.is_empty() {
                        continue;
                    }
                    // Within a partition, as the demand dispatcher: to the subscriber
                    // with the largest pending demand (GenStage).
                    while !part.is_empty() {
                        let Some((sub, d)) = subs
                            .iter()
                            .filter(|s| s.partition == Some(p))
                            .map(|s| (s, s.demand()))
                            .max_by_key(|(_, d)| *d)
                        else {
                            break;
                        };
                        if d == 0 {
                            break;
                        }
                        let tail = if d < part.len() {
                            part.split_off(d)
                        } else {
                            Vec::new()
                        };
                        let n = part.len();
                        match sub.deliver(part) {
                            Ok(()) => {
                                delivered += n;
                                part = tail;
                            }
                            Err(mut back) => {
                                // Cancelled meanwhile: its demand now reads zero.
                                back.extend(tail);
                                part = back;
                            }
                        }
                    }
                    rest.extend(part);
                }
                (delivered, rest)
            }
        }
    }
}
