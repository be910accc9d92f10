//! A subscription: the demand and in-flight events between one producer and one
//! consumer.
//!
//! Events do not travel through the consumer's mailbox: the producer hands batches to
//! the subscription, which holds at most the demand the consumer granted — at most
//! `max_demand` events, by construction. Each side is woken through its system lane
//! with at most one pending wake per subscription and direction, so neither side can
//! flood the other, and a flooded mailbox never delays the event flow.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::process::{ProcessHandle, Signal};
use crate::Pid;

static NEXT_SUBSCRIPTION: AtomicU64 = AtomicU64::new(1);

struct State<E> {
    chunks: VecDeque<Vec<E>>,
    queued: usize,
    /// Granted by the consumer and not yet filled.
    demand: usize,
    cancelled: bool,
    producer_woken: bool,
    consumer_woken: bool,
}

pub(crate) struct Subscription<E> {
    pub(crate) id: u64,
    pub(crate) partition: Option<usize>,
    producer: Arc<dyn ProcessHandle>,
    consumer: Arc<dyn ProcessHandle>,
    state: parking_lot::Mutex<State<E>>,
}

impl<E> Subscription<E> {
    pub(crate) fn new(
        producer: Arc<dyn ProcessHandle>,
        consumer: Arc<dyn ProcessHandle>,
        partition: Option<usize>,
    ) -> Self {
        Subscription {
            id: NEXT_SUBSCRIPTION.fetch_add(1, Ordering::Relaxed),
            partition,
            producer,
            consumer,
            state: parking_lot::Mutex::new(State {
                chunks: VecDeque::new(),
                queued: 0,
                demand: 0,
                cancelled: false,
                producer_woken: false,
                consumer_woken: false,
            }),
        }
    }

    pub(crate) fn producer_pid(&self) -> Pid {
        self.producer.core().pid
    }

    pub(crate) fn consumer_pid(&self) -> Pid {
        self.consumer.core().pid
    }

    /// Demand granted and not yet filled (0 once cancelled).
    pub(crate) fn demand(&self) -> usize {
        let st = self.state.lock();
        if st.cancelled {
            0
        } else {
            st.demand
        }
    }

    /// Producer side: hands over a batch of at most the granted demand. A cancelled
    /// subscription gives the batch back.
    pub(crate) fn deliver(&self, events: Vec<E>) -> Result<(), Vec<E>> {
        if events.is_empty() {
            return Ok(());
        }
        let wake = {
            let mut st = self.state.lock();
            if st.cancelled {
                return Err(events);
            }
            debug_assert!(events.len() <= st.demand, "delivered past the demand");
            st.demand -= events.len().min(st.demand);
            st.queued += events.len();
            st.chunks.push_back(events);
            !std::mem::replace(&mut st.consumer_woken, true)
        };
        if wake {
            self.consumer.push_signal(Signal::Wake(self.id), false);
        }
        Ok(())
    }

    /// Consumer side: moves everything handed over into `into` (both queues keep
    /// their storage: no allocation per event), and re-arms the consumer's wake.
    pub(crate) fn take_into(&self, into: &mut VecDeque<Vec<E>>) {
        let mut st = self.state.lock();
        st.consumer_woken = false;
        st.queued = 0;
        into.extend(st.chunks.drain(..));
    }

    /// Consumer side: grants `n` more events, waking the producer if it is not
    /// already woken.
    pub(crate) fn ask(&self, n: usize) {
        if n == 0 {
            return;
        }
        let wake = {
            let mut st = self.state.lock();
            if st.cancelled {
                return;
            }
            st.demand += n;
            !std::mem::replace(&mut st.producer_woken, true)
        };
        if wake {
            self.producer.push_signal(Signal::Wake(self.id), false);
        }
    }

    /// Producer side: re-arms the producer's wake before it reads the demand.
    pub(crate) fn rearm_producer(&self) {
        self.state.lock().producer_woken = false;
    }

    /// Ends the subscription; returns the events still queued (lost to the consumer).
    /// The producer is woken so it forgets the subscription.
    pub(crate) fn cancel(&self) -> usize {
        let (lost, wake) = {
            let mut st = self.state.lock();
            if st.cancelled {
                return 0;
            }
            st.cancelled = true;
            let lost = st.queued;
            st.queued = 0;
            st.chunks.clear();
            (lost, !std::mem::replace(&mut st.producer_woken, true))
        };
        if wake {
            self.producer.push_signal(Signal::Wake(self.id), false);
        }
        lost
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.state.lock().cancelled
    }
}
