//! Demand-driven stages follow Elixir GenStage's documented semantics (except where
//! girder's docs say otherwise): the demand protocol, the three dispatchers, the
//! bounded producer buffer, cancel modes, ready-made sources, observation and
//! supervision.
//!
//! Tests synchronise through channels and gates; the only clocks are hang guards.

mod stagetest;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use girder::stage::{
    self, BufferKeep, Cancel, Consumer, ConsumerStage, Dispatcher, IterProducer, ProducerConsumer,
    ProducerConsumerStage, ProducerOptions, ProducerStage, PushError, PushProducer, StageError, StageMsg,
    StreamProducer, SubscribeOptions, DEFAULT_BUFFER_SIZE, DEFAULT_MAX_DEMAND,
};
use girder::supervisor::{ChildSpec, Strategy, Supervisor, SupervisorSpec};
use girder::{Ctx, ExitReason, ExitWatch, Flow, Node, Weight};
use stagetest::*;
use tokio::sync::mpsc;

fn opts(max: usize, min: usize) -> SubscribeOptions {
    SubscribeOptions::default().max_demand(max).min_demand(min)
}

fn range(a: u64, b: u64) -> Vec<u64> {
    (a..b).collect()
}

/// Spawns a recording consumer and subscribes it to `producer`.
async fn consumer_of<P>(
    node: &Node,
    producer: &P,
    rec: Rec<u64>,
    o: SubscribeOptions,
) -> (RecAddr<u64>, Arc<Mutex<Vec<u64>>>, ExitWatch)
where
    P: stage::Source<u64>,
{
    let log = rec.log();
    let c = node.start(ConsumerStage::new(rec)).await.unwrap();
    let exit = node.watch(c.pid());
    within("subscribe", stage::subscribe(&c, producer, o))
        .await
        .expect("subscribes");
    (c, log, exit)
}

// ----- basic flow -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_to_consumer_delivers_everything_in_order() {
    let node = node();
    let p = node
        .start(ProducerStage::new(
            IterProducer::new(0u64..10_000),
            ProducerOptions::default(),
        ))
        .await
        .unwrap();
    let p_exit = node.watch(p.pid());
    let (_c, log, c_exit) = consumer_of(&node, &p, Rec::new(), SubscribeOptions::default()).await;
    // The iterator runs dry: the producer stops Normal once everything is delivered,
    // and the (permanent) consumer follows with the same reason after handling it all.
    assert_eq!(within("producer exit", p_exit).await, ExitReason::Normal);
    assert_eq!(within("consumer exit", c_exit).await, ExitReason::Normal);
    assert_seq(&snapshot(&log), &range(0, 10_000), "consumer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_options_are_genstages() {
    let o = SubscribeOptions::default();
    assert_eq!(o.max_demand, DEFAULT_MAX_DEMAND);
    assert_eq!(DEFAULT_MAX_DEMAND, 1000);
    assert_eq!(o.min_demand, None, "min_demand defaults to max_demand / 2");
    assert_eq!(o.cancel, Cancel::Permanent);
    let p = ProducerOptions::<u64>::default();
    assert_eq!(p.buffer_size, DEFAULT_BUFFER_SIZE);
    assert_eq!(DEFAULT_BUFFER_SIZE, 10_000);
    assert_eq!(p.buffer_keep, BufferKeep::Last);
    assert!(matches!(p.dispatcher, Dispatcher::Demand));

    // The default min_demand is max_demand / 2: with max 1,000 the first demand is
    // 1,000 and it comes back in pieces of 500.
    let node = node();
    let (tx, mut demands) = mpsc::unbounded_channel();
    let p = node
        .start(ProducerStage::new(
            Seq::new(0..u64::MAX).reporting(tx),
            ProducerOptions::default(),
        ))
        .await
        .unwrap();
    let gate = Gate::new();
    let (rec, mut pieces) = Rec::new().gated(&gate).pieces();
    let (_c, _log, _) = consumer_of(&node, &p, rec, SubscribeOptions::default()).await;
    assert_eq!(within("first demand", demands.recv()).await, Some(1000));
    for k in 0..4u64 {
        let piece = within("piece", pieces.recv()).await.unwrap();
        assert_eq!(piece, range(500 * k, 500 * (k + 1)));
        gate.step();
        assert_eq!(within("demand back", demands.recv()).await, Some(500));
    }
}

// ----- the demand protocol -----

/// Steps a gated consumer piece by piece and checks every `handle_demand` call.
async fn demand_protocol(max: usize, min: usize, steps: u64) {
    let node = node();
    let (tx, mut demands) = mpsc::unbounded_channel();
    let p = node
        .start(ProducerStage::new(
            Seq::new(0..u64::MAX).reporting(tx),
            ProducerOptions::default(),
        ))
        .await
        .unwrap();
    let gate = Gate::new();
    let (rec, mut pieces) = Rec::new().gated(&gate).pieces();
    let (_c, log, _) = consumer_of(&node, &p, rec, opts(max, min)).await;
    let piece = (max - min) as u64;

    // The consumer asks for max_demand first, and nothing more until it handles events.
    assert_eq!(within("first demand", demands.recv()).await, Some(max));
    let mut granted = max as u64;
    let mut next = 0u64;
    for _ in 0..steps {
        // Events come in pieces of max_demand - min_demand.
        let got = within("piece", pieces.recv()).await.unwrap();
        assert_eq!(got, range(next, next + piece), "max {max} min {min}");
        next += piece;
        assert!(
            demands.try_recv().is_err(),
            "no demand before the piece is handled"
        );
        gate.step();
        // ... and once handled, exactly that much demand is given back.
        assert_eq!(within("demand back", demands.recv()).await, Some(piece as usize));
        granted += piece;
        // handle_demand was only ever asked for demand the consumer granted.
        assert_eq!(granted, next + max as u64);
    }
    eventually("all stepped pieces handled", || {
        log.lock().unwrap().len() as u64 == next
    })
    .await;
    settle().await;
    assert!(demands.try_recv().is_err(), "no demand beyond what was granted");
    let s = stats(&node, p.pid());
    assert_eq!(
        s.events_out, granted,
        "the producer emitted exactly the granted demand"
    );
    assert_eq!(s.pending_demand, 0);
    assert_eq!(s.buffered, 0);
    gate.open();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_asks_max_demand_then_gives_it_back_in_pieces() {
    demand_protocol(10, 5, 12).await;
    demand_protocol(10, 0, 6).await;
    demand_protocol(12, 8, 10).await;
    // max_demand 1: min_demand defaults to 0, pieces of one.
    demand_protocol(1, 0, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_producer_is_asked_only_for_what_is_consumed() {
    let node = node();
    let pulled = Arc::new(AtomicU64::new(0));
    let pulled2 = pulled.clone();
    let endless = (0u64..).inspect(move |_| {
        pulled2.fetch_add(1, Ordering::SeqCst);
    });
    let p = node
        .start(ProducerStage::new(
            IterProducer::new(endless),
            ProducerOptions::default(),
        ))
        .await
        .unwrap();
    // The consumer handles 1,000 events, then stops handling (the next piece waits at a
    // closed gate).
    let gate = Gate::new();
    let rec = Rec::new().gated_after(1000, &gate);
    let handled = rec.handled.clone();
    let (_c, log, _) = consumer_of(&node, &p, rec, opts(100, 50)).await;
    eventually("1,000 handled", || handled.load(Ordering::SeqCst) == 1000).await;
    // Demand granted: 100 at first, then 50 back per piece of 50 handled.
    eventually("the producer fills the granted demand", || {
        pulled.load(Ordering::SeqCst) == 1100
    })
    .await;
    settle().await;
    assert_eq!(
        pulled.load(Ordering::SeqCst),
        1100,
        "nothing pulled beyond the demand"
    );
    assert_eq!(handled.load(Ordering::SeqCst), 1000);
    let s = stats(&node, p.pid());
    assert_eq!(s.events_out, 1100);
    assert_eq!((s.pending_demand, s.buffered, s.dropped), (0, 0, 0));
    assert_eq!(snapshot(&log), range(0, 1000));
    gate.open();
    eventually("it goes on once the consumer does", || {
        handled.load(Ordering::SeqCst) > 2000
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_demand_gets_only_uncovered_demand() {
    // A producer that emits nothing from handle_demand keeps the demand pending: it is
    // not asked again for the same demand, and events it emits later from handle_info
    // go straight to the consumer.
    let node = node();
    let (m, mut demands) = Manual::<u64>::new();
    let p = node
        .start(ProducerStage::new(m, ProducerOptions::default()))
        .await
        .unwrap();
    let (rec, mut pieces) = Rec::new().pieces();
    let (_c, _log, _) = consumer_of(&node, &p, rec, opts(10, 0)).await;
    assert_eq!(within("first demand", demands.recv()).await, Some(10));
    emit(&p, range(0, 4)).await;
    assert_eq!(within("piece", pieces.recv()).await, Some(range(0, 4)));
    // 4 handled and given back: the producer still owes 6, so it is asked for 4 more.
    assert_eq!(within("demand back", demands.recv()).await, Some(4));
    sync(&p).await;
    assert!(demands.try_recv().is_err());
    let s = stats(&node, p.pid());
    assert_eq!(s.pending_demand, 10);
    assert_eq!(s.buffered, 0);
}

// ----- producer-consumer -----

struct Double;

impl ProducerConsumer for Double {
    type In = u64;
    type Out = u64;
    type Info = ();

    async fn handle_events(
        &mut self,
        events: Vec<u64>,
        _: &mut Ctx<ProducerConsumerStage<Self>>,
    ) -> Vec<u64> {
        events.into_iter().map(|e| e * 2).collect()
    }
}

/// Emits three events per event in.
struct Triple;

impl ProducerConsumer for Triple {
    type In = u64;
    type Out = u64;
    type Info = ();

    async fn handle_events(
        &mut self,
        events: Vec<u64>,
        _: &mut Ctx<ProducerConsumerStage<Self>>,
    ) -> Vec<u64> {
        events
            .into_iter()
            .flat_map(|e| [3 * e, 3 * e + 1, 3 * e + 2])
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_to_producer_consumer_to_consumer() {
    for (up, down) in [
        (opts(10, 5), opts(7, 3)),
        (opts(3, 0), opts(50, 25)),
        (opts(1, 0), opts(1, 0)),
    ] {
        let node = node();
        let p = node
            .start(ProducerStage::new(
                IterProducer::new(0u64..3000),
                ProducerOptions::default(),
            ))
            .await
            .unwrap();
        let pc = node
            .start(ProducerConsumerStage::new(Double, ProducerOptions::default()))
            .await
            .unwrap();
        let (_c, log, c_exit) = consumer_of(&node, &pc, Rec::new().yields(1), down).await;
        let pc_exit = node.watch(pc.pid());
        within("pc subscribes", stage::subscribe(&pc, &p, up))
            .await
            .unwrap();
        // The source runs dry and stops Normal; the producer-consumer and the consumer
        // (both permanent) follow, after handling everything.
        assert_eq!(within("pc exit", pc_exit).await, ExitReason::Normal);
        assert_eq!(within("consumer exit", c_exit).await, ExitReason::Normal);
        let want: Vec<u64> = (0..3000).map(|e| e * 2).collect();
        assert_seq(&snapshot(&log), &want, &format!("up {up:?} down {down:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_consumer_emitting_more_than_it_receives_loses_nothing() {
    let node = node();
    let p = node
        .start(ProducerStage::new(
            IterProducer::new(0u64..1000),
            ProducerOptions::default(),
        ))
        .await
        .unwrap();
    let pc = node
        .start(ProducerConsumerStage::new(Triple, ProducerOptions::default()))
        .await
        .unwrap();
    let (_c, log, c_exit) = consumer_of(&node, &pc, Rec::new().yields(1), opts(4, 1)).await;
    within("pc subscribes", stage::subscribe(&pc, &p, opts(10, 5)))
        .await
        .unwrap();
    assert_eq!(within("consumer exit", c_exit).await, ExitReason::Normal);
    assert_seq(&snapshot(&log), &range(0, 3000), "consumer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_consumer_asks_upstream_only_as_fast_as_downstream_consumes() {
    let node = node();
    let pulled = Arc::new(AtomicU64::new(0));
    let pulled2 = pulled.clone();
    let endless = (0u64..).inspect(move |_| {
        pulled2.fetch_add(1, Ordering::SeqCst);
    });
    let p = node
        .start(ProducerStage::new(
            IterProducer::new(endless),
            ProducerOptions::default(),
        ))
        .await
        .unwrap();
    let pc = node
        .start(ProducerConsumerStage::new(Double, ProducerOptions::default()))
        .await
        .unwrap();
    let gate = Gate::new();
    let rec = Rec::new().gated_after(100, &gate);
    let handled = rec.handled.clone();
    let (_c, _log, _) = consumer_of(&node, &pc, rec, opts(10, 5)).await;
    within("pc subscribes", stage::subscribe(&pc, &p, opts(20, 10)))
        .await
        .unwrap();
    eventually("100 handled", || handled.load(Ordering::SeqCst) == 100).await;
    settle().await;
    // Downstream took 110 (100 handled + 10 in flight); the producer-consumer holds at
    // most one piece's output in its buffer and up to max_demand events upstream.
    let n = pulled.load(Ordering::SeqCst);
    assert!(
        n <= 110 + 10 + 20,
        "pulled {n}: upstream is bounded by downstream's consumption"
    );
    let s = stats(&node, pc.pid());
    assert!(s.buffered <= 10, "{s:?}");
    assert_eq!(s.dropped, 0);
    gate.open();
}

// ----- dispatchers -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demand_dispatcher_sends_to_the_largest_pending_demand() {
    let node = node();
    let (m, mut demands) = Manual::<u64>::new();
    let p = node
        .start(ProducerStage::new(m, ProducerOptions::default()))
        .await
        .unwrap();
    let (ga, gb) = (Gate::new(), Gate::new());
    let (ra, mut pa) = Rec::new().gated(&ga).pieces();
    let (rb, mut pb) = Rec::new().gated(&gb).pieces();
    let (_a, la, _) = consumer_of(&node, &p, ra, opts(10, 0)).await;
    let (_b, lb, _) = consumer_of(&node, &p, rb, opts(3, 0)).await;
    let mut asked = 0;
    while asked < 13 {
        asked += within("demand", demands.recv()).await.unwrap();
    }
    // A has 10 pending, B 3: a batch of 8 goes to A.
    emit(&p, range(0, 8)).await;
    assert_eq!(within("A's piece", pa.recv()).await, Some(range(0, 8)));
    // Now A has 2, B 3: the next event goes to B.
    emit(&p, vec![8]).await;
    assert_eq!(within("B's piece", pb.recv()).await, Some(vec![8]));
    sync(&p).await;
    assert!(pa.try_recv().is_err());
    // Everything emitted from now on is delivered exactly once.
    ga.open();
    gb.open();
    emit(&p, range(9, 500)).await;
    eventually("all delivered", || {
        la.lock().unwrap().len() + lb.lock().unwrap().len() == 500
    })
    .await;
    let mut all = snapshot(&la);
    all.extend(snapshot(&lb));
    all.sort_unstable();
    assert_eq!(all, range(0, 500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demand_dispatcher_delivers_each_event_exactly_once() {
    let node = node();
    let p = node
        .start(ProducerStage::new(
            Seq::new(0..20_000).held(),
            ProducerOptions::default(),
        ))
        .await
        .unwrap();
    let mut exits = Vec::new();
    let mut logs = Vec::new();
    for (i, o) in [opts(10, 5), opts(100, 0), opts(1, 0)].into_iter().enumerate() {
        let (c, log, _) = consumer_of(&node, &p, Rec::new().yields(i), o).await;
        exits.push(node.watch(c.pid()));
        logs.push(log);
    }
    start_seq(&p).await;
    for e in exits {
        assert_eq!(within("consumer exit", e).await, ExitReason::Normal);
    }
    let mut all = Vec::new();
    for log in &logs {
        let l = snapshot(log);
        assert!(
            l.windows(2).all(|w| w[0] < w[1]),
            "each consumer gets its events in order"
        );
        assert!(!l.is_empty(), "each consumer got a share");
        all.extend(l);
    }
    all.sort_unstable();
    assert_seq(&all, &range(0, 20_000), "union of the consumers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_delivers_every_event_to_every_consumer_in_order() {
    let node = node();
    let p = node
        .start(ProducerStage::new(
            Seq::new(0..5000).held(),
            ProducerOptions::default().dispatcher(Dispatcher::broadcast()),
        ))
        .await
        .unwrap();
    let mut exits = Vec::new();
    let mut logs = Vec::new();
    for (i, o) in [opts(5, 2), opts(50, 25), opts(500, 0)].into_iter().enumerate() {
        let (c, log, _) = consumer_of(&node, &p, Rec::new().yields(2 - i), o).await;
        exits.push(node.watch(c.pid()));
        logs.push(log);
    }
    start_seq(&p).await;
    for e in exits {
        assert_eq!(within("consumer exit", e).await, ExitReason::Normal);
    }
    for log in &logs {
        assert_seq(&snapshot(log), &range(0, 5000), "broadcast consumer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_goes_at_the_pace_of_the_slowest_consumer() {
    let node = node();
    let pulled = Arc::new(AtomicU64::new(0));
    let pulled2 = pulled.clone();
    let endless = (0u64..).inspect(move |_| {
        pulled2.fetch_add(1, Ordering::SeqCst);
    });
    let p = node
        .start(ProducerStage::new(
            IterProducer::new(endless),
            ProducerOptions::default().dispatcher(Dispatcher::broadcast()),
        ))
        .await
        .unwrap();
    // The slow consumer takes its first 10 events and sits on them.
    let gate = Gate::new();
    let (slow_rec, mut slow_pieces) = Rec::new().gated(&gate).pieces();
    let slow_handled = slow_rec.handled.clone();
    let (_slow, slow_log, _) = consumer_of(&node, &p, slow_rec, opts(10, 5)).await;
    assert_eq!(within("slow piece", slow_pieces.recv()).await, Some(range(0, 5)));
    // The fast one subscribes: nothing flows while the slow one has no demand.
    let fast_rec = Rec::new();
    let fast_handled = fast_rec.handled.clone();
    let (_fast, fast_log, _) = consumer_of(&node, &p, fast_rec, opts(100, 50)).await;
    settle().await;
    assert_eq!(fast_handled.load(Ordering::SeqCst), 0);
    assert_eq!(pulled.load(Ordering::SeqCst), 10);
    // One piece handled by the slow consumer: 5 more for everyone.
    gate.step();
    eventually("5 more reach the fast consumer", || {
        fast_handled.load(Ordering::SeqCst) == 5
    })
    .await;
    settle().await;
    assert_eq!(fast_handled.load(Ordering::SeqCst), 5);
    assert_eq!(pulled.load(Ordering::SeqCst), 15);
    // Let the slow one go: both move on, the producer never more than the slow
    // consumer's max_demand ahead of it.
    gate.open();
    eventually("both move on", || fast_handled.load(Ordering::SeqCst) >= 2000).await;
    let n = pulled.load(Ordering::SeqCst);
    let slow_done = slow_handled.load(Ordering::SeqCst);
    assert!(
        n <= slow_done + 10,
        "pulled {n}, slow consumer handled {slow_done}"
    );
    let (slow, fast) = (snapshot(&slow_log), snapshot(&fast_log));
    assert_eq!(slow, range(0, slow.len() as u64));
    assert_eq!(
        fast,
        range(10, 10 + fast.len() as u64),
        "the late subscriber gets what follows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_dispatcher_routes_events_by_key() {
    let node = node();
    let p = node
        .start(ProducerStage::new(
            Seq::new(0..3000).held(),
            ProducerOptions::default().dispatcher(Dispatcher::partition(3, |e: &u64| *e as usize)),
        ))
        .await
        .unwrap();
    let mut exits = Vec::new();
    let mut logs = Vec::new();
    for (part, o) in [opts(10, 5), opts(4, 0), opts(100, 50)].into_iter().enumerate() {
        let (c, log, _) = consumer_of(&node, &p, Rec::new().yields(part), o.partition(part)).await;
        exits.push(node.watch(c.pid()));
        logs.push(log);
    }
    start_seq(&p).await;
    for e in exits {
        assert_eq!(within("consumer exit", e).await, ExitReason::Normal);
    }
    for (part, log) in logs.iter().enumerate() {
        let want: Vec<u64> = (0..3000).filter(|e| *e as usize % 3 == part).collect();
        assert_seq(&snapshot(log), &want, &format!("partition {part}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_consumers_of_one_partition_share_it_by_demand() {
    // GenStage: "when multiple consumers subscribe to one partition, the producer
    // behaves like a DemandDispatcher within that partition".
    let node = node();
    let p = node
        .start(ProducerStage::new(
            Seq::new(0..2000).held(),
            ProducerOptions::default().dispatcher(Dispatcher::partition(2, |e: &u64| *e as usize)),
        ))
        .await
        .unwrap();
    // Partition 0: one consumer stuck on its first piece, one free; partition 1: one.
    let gate = Gate::new();
    let (stuck, stuck_log, _) =
        consumer_of(&node, &p, Rec::new().gated(&gate), opts(10, 0).partition(0)).await;
    let (_free, free_log, free_exit) = consumer_of(&node, &p, Rec::new(), opts(10, 5).partition(0)).await;
    let (_odd, odd_log, odd_exit) = consumer_of(&node, &p, Rec::new(), opts(10, 5).partition(1)).await;
    start_seq(&p).await;
    // The stuck consumer holds at most its max_demand; the rest of partition 0 goes to
    // the other one.
    eventually("partition 0 served by the free consumer", || {
        free_log.lock().unwrap().len() >= 990
    })
    .await;
    gate.open();
    assert_eq!(within("odd consumer exit", odd_exit).await, ExitReason::Normal);
    assert_eq!(within("free consumer exit", free_exit).await, ExitReason::Normal);
    let stuck_exit = node.watch(stuck.pid());
    let _ = within("stuck consumer exit", stuck_exit).await;
    let want_odd: Vec<u64> = (0..2000).filter(|e| e % 2 == 1).collect();
    assert_seq(&snapshot(&odd_log), &want_odd, "partition 1");
    let (a, b) = (snapshot(&stuck_log), snapshot(&free_log));
    assert!(a.len() <= 20, "the stuck consumer got {} events", a.len());
    for l in [&a, &b] {
        assert!(l.windows(2).all(|w| w[0] < w[1]));
        assert!(l.iter().all(|e| e % 2 == 0));
    }
    let mut even = a;
    even.extend(b);
    even.sort_unstable();
    let want_even: Vec<u64> = (0..2000).filter(|e| e % 2 == 0).collect();
    assert_seq(&even, &want_even, "partition 0, both consumers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_subscriptions_need_a_partition_in_range() {
    let node = node();
    let p = node
        .start(ProducerStage::new(
            Seq::new(0..u64::MAX),
            ProducerOptions::default().dispatcher(Dispatcher::partition(3, |e: &u64| *e as usize)),
        ))
        .await
        .unwrap();
    let c = node.start(ConsumerStage::new(Rec::<u64>::new())).await.unwrap();
    let r = within("subscribe", stage::subscribe(&c, &p, SubscribeOptions::default())).await;
    assert!(matches!(r, Err(StageError::Invalid(_))), "{r:?}");
    let r = within(
        "subscribe",
        stage::subscribe(&c, &p, SubscribeOptions::default().partition(3)),
    )
    .await;
    assert!(matches!(r, Err(StageError::Invalid(_))), "{r:?}");
    assert_eq!(stats(&node, p.pid()).subscriptions, 0);
    assert_eq!(stats(&node, c.pid()).subscriptions, 0);
    within(
        "subscribe",
        stage::subscribe(&c, &p, SubscribeOptions::default().partition(2)),
    )
    .await
    .unwrap();
    assert_eq!(stats(&node, p.pid()).subscriptions, 1);
}

// ----- the producer buffer -----

async fn buffered_without_demand(keep: BufferKeep) -> (Vec<u64>, u64) {
    let node = node();
    let (m, _demands) = Manual::<u64>::new();
    let p = node
        .start(ProducerStage::new(
            m,
            ProducerOptions::default().buffer_size(4).buffer_keep(keep),
        ))
        .await
        .unwrap();
    // No consumer, no demand: 10 events, room for 4.
    emit(&p, range(0, 10)).await;
    sync(&p).await;
    let s = node.process_info(p.pid()).unwrap().stage.unwrap();
    assert_eq!((s.buffered, s.dropped, s.events_out), (4, 6, 0), "{keep:?}");
    let (c, log, _) = consumer_of(&node, &p, Rec::new(), opts(100, 50)).await;
    eventually("buffer delivered", || log.lock().unwrap().len() == 4).await;
    let s = stats(&node, p.pid());
    assert_eq!((s.buffered, s.dropped, s.events_out), (0, 6, 4));
    assert_eq!(stats(&node, c.pid()).events_in, 4);
    (snapshot(&log), s.dropped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffer_keep_first_keeps_the_oldest_and_counts_drops() {
    assert_eq!(buffered_without_demand(BufferKeep::First).await, (range(0, 4), 6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffer_keep_last_keeps_the_newest_and_counts_drops() {
    assert_eq!(buffered_without_demand(BufferKeep::Last).await, (range(6, 10), 6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_beyond_the_demand_are_buffered_and_delivered_in_order() {
    let node = node();
    let (m, _demands) = Manual::<u64>::new();
    let p = node
        .start(ProducerStage::new(m, ProducerOptions::default().buffer_size(4)))
        .await
        .unwrap();
    let gate = Gate::new();
    let rec = Rec::new().gated(&gate);
    let (_c, log, _) = consumer_of(&node, &p, rec, opts(3, 0)).await;
    // Demand 3: three go out, seven remain for a buffer of 4 (keep Last).
    emit(&p, range(0, 10)).await;
    sync(&p).await;
    let s = stats(&node, p.pid());
    assert_eq!(
        (s.events_out, s.buffered, s.dropped, s.pending_demand),
        (3, 4, 3, 0)
    );
    gate.open();
    eventually("delivered", || log.lock().unwrap().len() == 7).await;
    assert_eq!(snapshot(&log), vec![0, 1, 2, 6, 7, 8, 9]);
    let s = stats(&node, p.pid());
    assert_eq!((s.events_out, s.buffered, s.dropped), (7, 0, 3));
    // Events emitted while demand is pending pass straight through.
    emit(&p, range(10, 13)).await;
    eventually("delivered", || log.lock().unwrap().len() == 10).await;
    assert_eq!(stats(&node, p.pid()).dropped, 3);
}

/// A producer-consumer that emits what it is told from `handle_info`.
struct Relay;

struct Say(Vec<u64>);

impl Weight for Say {}

impl ProducerConsumer for Relay {
    type In = u64;
    type Out = u64;
    type Info = Say;

    async fn handle_events(
        &mut self,
        events: Vec<u64>,
        _: &mut Ctx<ProducerConsumerStage<Self>>,
    ) -> Vec<u64> {
        events
    }

    async fn handle_info(&mut self, Say(events): Say, _: &mut Ctx<ProducerConsumerStage<Self>>) -> Vec<u64> {
        events
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_consumers_buffer_is_bounded_too() {
    let node = node();
    let pc = node
        .start(ProducerConsumerStage::new(
            Relay,
            ProducerOptions::default().buffer_size(5),
        ))
        .await
        .unwrap();
    pc.send(StageMsg::info(Say(range(0, 20)))).await.unwrap();
    eventually("emitted", || stats(&node, pc.pid()).dropped == 15).await;
    assert_eq!(stats(&node, pc.pid()).buffered, 5);
    let (_c, log, _) = consumer_of(&node, &pc, Rec::new(), opts(10, 5)).await;
    eventually("buffer delivered", || log.lock().unwrap().len() == 5).await;
    assert_eq!(snapshot(&log), range(15, 20));
    let s = stats(&node, pc.pid());
    assert_eq!((s.buffered, s.dropped, s.events_out), (0, 15, 5));
}

// ----- cancel modes -----

/// The producer emits 1..=5 and stops with `reason` while the consumer (pieces of
/// one) is held at a gate on the first. Checks that the consumer handles all five,
/// then exits with `want`, or keeps running without the subscription (`None`).
async fn producer_exit(cancel: Cancel, reason: ExitReason, want: Option<ExitReason>) {
    let what = format!("{cancel:?} after the producer exited {reason:?}");
    let node = node();
    let (m, mut demands) = Manual::<u64>::new();
    let p = node
        .start(ProducerStage::new(m, ProducerOptions::default()))
        .await
        .unwrap();
    let gate = Gate::new();
    let (rec, mut pieces) = Rec::new().gated(&gate).yields(2).pieces();
    let (c, log, _) = consumer_of(&node, &p, rec, opts(10, 9).cancel(cancel)).await;
    assert_eq!(within("demand", demands.recv()).await, Some(10));
    let p_exit = node.watch(p.pid());
    let c_exit = node.watch(c.pid());
    command(&p, Cmd::EmitThenStop(range(1, 6), reason.clone())).await;
    assert_eq!(within("producer exit", p_exit).await, reason);
    // The consumer is still on its first event: the producer's exit is known, but the
    // events it delivered first are handled first.
    assert_eq!(within("first piece", pieces.recv()).await, Some(vec![1]));
    gate.open();
    match want {
        Some(want) => {
            assert_eq!(within("consumer exit", c_exit).await, want, "{what}");
        }
        None => {
            eventually("all handled", || log.lock().unwrap().len() == 5).await;
            eventually("subscription gone", || stats(&node, c.pid()).subscriptions == 0).await;
            settle().await;
            assert!(c.is_alive(), "{what}: the consumer keeps running");
        }
    }
    assert_eq!(
        snapshot(&log),
        range(1, 6),
        "{what}: delivered events are handled first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_modes_decide_what_the_producers_exit_does_to_the_consumer() {
    let boom = ExitReason::custom("boom");
    let cases = [
        (Cancel::Permanent, ExitReason::Normal, Some(ExitReason::Normal)),
        (Cancel::Permanent, boom.clone(), Some(boom.clone())),
        (
            Cancel::Permanent,
            ExitReason::Shutdown,
            Some(ExitReason::Shutdown),
        ),
        (Cancel::Transient, ExitReason::Normal, None),
        (Cancel::Transient, ExitReason::Shutdown, None),
        (Cancel::Transient, boom.clone(), Some(boom.clone())),
        (Cancel::Temporary, ExitReason::Normal, None),
        (Cancel::Temporary, boom.clone(), None),
    ];
    for (cancel, reason, want) in cases {
        producer_exit(cancel, reason, want).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_producer_takes_its_permanent_consumer_with_it() {
    let node = node();
    let p = node
        .start(ProducerStage::new(
            IterProducer::new(0u64..),
            ProducerOptions::default(),
        ))
        .await
        .unwrap();
    let rec = Rec::new();
    let handled = rec.handled.clone();
    let (c, _log, _) = consumer_of(&node, &p, rec, opts(10, 5)).await;
    eventually("flowing", || handled.load(Ordering::SeqCst) > 100).await;
    let c_exit = node.watch(c.pid());
    node.kill(p.pid());
    assert_eq!(within("consumer exit", c_exit).await, ExitReason::Killed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumers_exit_cancels_its_subscription_at_the_producer() {
    let node = node();
    let (m, _demands) = Manual::<u64>::new();
    let p = node
        .start(ProducerStage::new(m, ProducerOptions::default()))
        .await
        .unwrap();
    let (c1, _l1, _) = consumer_of(&node, &p, Rec::new(), opts(10, 5)).await;
    let (c2, l2, _) = consumer_of(&node, &p, Rec::new(), opts(10, 5)).await;
    assert_eq!(stats(&node, p.pid()).subscriptions, 2);
    let exit = node.watch(c1.pid());
    c1.send(StageMsg::info(RecCmd::Stop(ExitReason::custom("bye"))))
        .await
        .unwrap();
    assert_eq!(within("consumer exit", exit).await, ExitReason::custom("bye"));
    eventually("the producer forgets it", || {
        stats(&node, p.pid()).subscriptions == 1
    })
    .await;
    eventually("its demand is gone", || {
        stats(&node, p.pid()).pending_demand == 10
    })
    .await;
    // Events now go to the remaining consumer only.
    emit(&p, range(0, 10)).await;
    eventually("delivered", || l2.lock().unwrap().len() == 10).await;
    // A killed consumer is forgotten too; the producer keeps running, and buffers
    // what nobody asked for.
    node.kill(c2.pid());
    eventually("no subscriptions", || stats(&node, p.pid()).subscriptions == 0).await;
    emit(&p, range(10, 13)).await;
    sync(&p).await;
    let s = stats(&node, p.pid());
    assert_eq!((s.pending_demand, s.buffered, s.dropped), (0, 3, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_cancel_ends_one_subscription() {
    let node = node();
    let (m, _demands) = Manual::<u64>::new();
    let p = node
        .start(ProducerStage::new(m, ProducerOptions::default()))
        .await
        .unwrap();
    let (m2, _demands2) = Manual::<u64>::new();
    let p2 = node
        .start(ProducerStage::new(m2, ProducerOptions::default()))
        .await
        .unwrap();
    let c = node.start(ConsumerStage::new(Rec::<u64>::new())).await.unwrap();
    let id = within("subscribe", stage::subscribe(&c, &p, opts(10, 5)))
        .await
        .unwrap();
    let id2 = within("subscribe", stage::subscribe(&c, &p2, opts(10, 5)))
        .await
        .unwrap();
    assert_ne!(id, id2);
    assert_eq!(stats(&node, c.pid()).subscriptions, 2);
    assert_eq!(within("cancel", stage::cancel(&c, id)).await, Ok(true));
    assert_eq!(within("cancel again", stage::cancel(&c, id)).await, Ok(false));
    assert_eq!(stats(&node, c.pid()).subscriptions, 1);
    eventually("the producer forgets it", || {
        stats(&node, p.pid()).subscriptions == 0
    })
    .await;
    assert_eq!(stats(&node, p.pid()).pending_demand, 0);
    // The consumer keeps running with its other subscription; the cancelled producer's
    // events stay in its buffer.
    assert!(c.is_alive());
    emit(&p, range(0, 3)).await;
    sync(&p).await;
    assert_eq!(stats(&node, p.pid()).buffered, 3);
    assert_eq!(stats(&node, p2.pid()).subscriptions, 1);
    // Cancelling through a consumer that is gone is an error.
    node.kill(c.pid());
    eventually("consumer gone", || !c.is_alive()).await;
    assert!(matches!(stage::cancel(&c, id2).await, Err(StageError::Call(_))));
}

/// Stops (through the context) after its first event.
struct StopAfterFirst(Arc<Mutex<Vec<u64>>>);

impl Consumer for StopAfterFirst {
    type Event = u64;
    type Info = ();

    async fn handle_events(&mut self, events: Vec<u64>, ctx: &mut Ctx<ConsumerStage<Self>>) -> Flow {
        self.0.lock().unwrap().extend(events);
        ctx.stop(ExitReason::custom("enough"));
        Flow::Continue
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_stops_handles_nothing_more() {
    let node = node();
    let (m, _demands) = Manual::<u64>::new();
    let p = node
        .start(ProducerStage::new(m, ProducerOptions::default()))
        .await
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let c = node
        .start(ConsumerStage::new(StopAfterFirst(log.clone())))
        .await
        .unwrap();
    within("subscribe", stage::subscribe(&c, &p, opts(10, 9)))
        .await
        .unwrap();
    let exit = node.watch(c.pid());
    // Five events in one batch, handled in pieces of one.
    emit(&p, range(0, 5)).await;
    assert_eq!(within("consumer exit", exit).await, ExitReason::custom("enough"));
    assert_eq!(
        snapshot(&log),
        vec![0],
        "no piece is handled after the stage was asked to stop"
    );
}

// ----- sources -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iter_producer_stops_normal_after_delivering_everything() {
    // Lengths that are, and are not, multiples of the demand, and an empty one.
    for n in [0u64, 1, 10, 95, 100] {
        let node = node();
        let p = node
            .start(ProducerStage::new(
                IterProducer::new(0..n),
                ProducerOptions::default(),
            ))
            .await
            .unwrap();
        let p_exit = node.watch(p.pid());
        let (_c, log, c_exit) = consumer_of(&node, &p, Rec::new(), opts(10, 5)).await;
        assert_eq!(within("producer exit", p_exit).await, ExitReason::Normal, "n {n}");
        assert_eq!(within("consumer exit", c_exit).await, ExitReason::Normal, "n {n}");
        assert_eq!(snapshot(&log), range(0, n));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_producer_drains_a_stream_as_demand_asks() {
    let node = node();
    let p = node
        .start(ProducerStage::new(
            StreamProducer::new(futures_util::stream::iter(0u64..2000)),
            ProducerOptions::default(),
        ))
        .await
        .unwrap();
    let (_c, log, c_exit) = consumer_of(&node, &p, Rec::new(), opts(64, 16)).await;
    assert_eq!(within("consumer exit", c_exit).await, ExitReason::Normal);
    assert_seq(&snapshot(&log), &range(0, 2000), "consumer");

    // A stream fed from a channel: events flow as they come, and the end of the
    // stream stops the producer Normal.
    let node2 = node;
    let (tx, rx) = mpsc::channel::<u64>(4);
    let stream = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (e, rx))
    }));
    let p = node2
        .start(ProducerStage::new(
            StreamProducer::new(stream),
            ProducerOptions::default(),
        ))
        .await
        .unwrap();
    let p_exit = node2.watch(p.pid());
    let (_c, log, c_exit) = consumer_of(&node2, &p, Rec::new(), opts(10, 5)).await;
    for e in 0..50u64 {
        tx.send(e).await.unwrap();
        if e % 10 == 9 {
            eventually("received so far", || log.lock().unwrap().len() as u64 == e + 1).await;
        }
    }
    drop(tx);
    assert_eq!(within("producer exit", p_exit).await, ExitReason::Normal);
    assert_eq!(within("consumer exit", c_exit).await, ExitReason::Normal);
    assert_eq!(snapshot(&log), range(0, 50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_producer_applies_back_pressure_to_pushers() {
    let node = node();
    let (p, pusher) = PushProducer::<u64>::start(&node, 2, ProducerOptions::default()).unwrap();
    within("push", pusher.push(0)).await.unwrap();
    within("push", pusher.push(1)).await.unwrap();
    assert_eq!(pusher.len(), 2);
    // Full: try_push hands the event back, push waits for room.
    match pusher.try_push(2) {
        Err(PushError::Full(e)) => assert_eq!(e, 2),
        other => panic!("expected Full, got {other:?}"),
    }
    let waiting = {
        let pusher = pusher.clone();
        tokio::spawn(async move { pusher.push(2).await })
    };
    settle().await;
    assert!(!waiting.is_finished(), "push waits while the queue is full");
    assert_eq!(pusher.len(), 2);
    // Nothing was emitted without demand: the producer's own buffer stays empty.
    assert_eq!(stats(&node, p.pid()).buffered, 0);

    // A consumer makes room; everything pushed flows to it in order.
    let (_c, log, _) = consumer_of(&node, &p, Rec::new().yields(1), opts(4, 2)).await;
    within("the waiting push", waiting).await.unwrap().unwrap();
    let feeder = {
        let pusher = pusher.clone();
        tokio::spawn(async move {
            for e in 3..2000u64 {
                pusher.push(e).await.unwrap();
            }
        })
    };
    within("feeder", feeder).await.unwrap();
    eventually("all delivered", || log.lock().unwrap().len() == 2000).await;
    assert_seq(&snapshot(&log), &range(0, 2000), "consumer");
    let s = stats(&node, p.pid());
    assert_eq!((s.events_out, s.buffered, s.dropped), (2000, 0, 0));
    assert!(pusher.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushing_to_an_exited_producer_is_closed() {
    let node = node();
    let (p, pusher) = PushProducer::<u64>::start(&node, 1, ProducerOptions::default()).unwrap();
    within("push", pusher.push(0)).await.unwrap();
    let waiting = {
        let pusher = pusher.clone();
        tokio::spawn(async move { pusher.push(1).await })
    };
    let exit = node.watch(p.pid());
    node.kill(p.pid());
    assert_eq!(within("producer exit", exit).await, ExitReason::Killed);
    // The waiting pusher learns it, with its event back.
    match within("waiting push", waiting).await.unwrap() {
        Err(PushError::Closed(e)) => assert_eq!(e, 1),
        other => panic!("expected Closed, got {other:?}"),
    }
    match pusher.try_push(2) {
        Err(PushError::Closed(e)) => assert_eq!(e, 2),
        other => panic!("expected Closed, got {other:?}"),
    }
    match within("push", pusher.push(3)).await {
        Err(e @ PushError::Closed(_)) => assert_eq!(e.into_inner(), 3),
        other => panic!("expected Closed, got {other:?}"),
    }
}

// ----- observation -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_stats_are_visible_in_the_process_list() {
    let node = node();
    let (m, _demands) = Manual::<u64>::new();
    let p = node
        .start(ProducerStage::new(m, ProducerOptions::default()))
        .await
        .unwrap();
    let pc = node
        .start(ProducerConsumerStage::new(Double, ProducerOptions::default()))
        .await
        .unwrap();
    let (c, log, _) = consumer_of(&node, &pc, Rec::new(), opts(10, 0)).await;
    within("pc subscribes", stage::subscribe(&pc, &p, opts(20, 0)))
        .await
        .unwrap();
    emit(&p, range(0, 7)).await;
    eventually("delivered", || log.lock().unwrap().len() == 7).await;
    // Demand given back after the consumer handled its piece.
    eventually("demand restored", || {
        stats(&node, p.pid()).pending_demand == 20 && stats(&node, pc.pid()).pending_demand == 10
    })
    .await;
    let procs = node.processes();
    let find = |pid| {
        procs
            .iter()
            .find(|i| i.pid == pid)
            .and_then(|i| i.stage)
            .expect("a stage in the process list")
    };
    let (sp, spc, sc) = (find(p.pid()), find(pc.pid()), find(c.pid()));
    assert_eq!(
        (
            sp.pending_demand,
            sp.buffered,
            sp.dropped,
            sp.events_in,
            sp.events_out,
            sp.subscriptions
        ),
        (20, 0, 0, 0, 7, 1),
        "producer {sp:?}"
    );
    assert_eq!(
        (
            spc.pending_demand,
            spc.buffered,
            spc.dropped,
            spc.events_in,
            spc.events_out,
            spc.subscriptions
        ),
        (10, 0, 0, 7, 7, 2),
        "producer-consumer {spc:?}"
    );
    assert_eq!(
        (
            sc.buffered,
            sc.dropped,
            sc.events_in,
            sc.events_out,
            sc.subscriptions
        ),
        (0, 0, 7, 0, 1),
        "consumer {sc:?}"
    );
}

// ----- supervision -----

type Numbers = ProducerStage<IterProducer<std::ops::RangeFrom<u64>>>;

/// Subscribes itself (from a task, once started) to the producer registered as
/// "numbers", and forwards its first ten events.
struct Forward(mpsc::UnboundedSender<u64>);

impl Consumer for Forward {
    type Event = u64;
    type Info = ();

    async fn init(&mut self, ctx: &mut Ctx<ConsumerStage<Self>>) -> Result<(), ExitReason> {
        let (me, node) = (ctx.addr(), ctx.node().clone());
        tokio::spawn(async move {
            loop {
                if let Some(p) = node.whereis_addr::<Numbers>("numbers") {
                    if stage::subscribe(&me, &p, opts(5, 0)).await.is_ok() {
                        return;
                    }
                }
                if !me.is_alive() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        Ok(())
    }

    async fn handle_events(&mut self, events: Vec<u64>, _: &mut Ctx<ConsumerStage<Self>>) -> Flow {
        for e in events {
            if e < 10 {
                let _ = self.0.send(e);
            } else {
                // Enough: sit here until taken down.
                std::future::pending::<()>().await;
            }
        }
        Flow::Continue
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_restart_under_a_supervisor() {
    let node = node();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let spec = SupervisorSpec::new(Strategy::RestForOne)
        .child(
            ChildSpec::worker("numbers", || {
                ProducerStage::new(IterProducer::new(0u64..), ProducerOptions::default())
            })
            .name("numbers"),
        )
        .child(ChildSpec::worker("forward", move || {
            ConsumerStage::new(Forward(tx.clone()))
        }));
    let sup = within("supervisor", Supervisor::start(&node, spec))
        .await
        .unwrap();
    for e in 0..10 {
        assert_eq!(within("first incarnation", rx.recv()).await, Some(e));
    }
    let first = node.whereis("numbers").unwrap();
    node.kill(first);
    // The producer restarts, and so does the consumer after it; the new consumer
    // subscribes to the new producer, which starts over.
    for e in 0..10 {
        assert_eq!(within("second incarnation", rx.recv()).await, Some(e));
    }
    let second = node.whereis("numbers").unwrap();
    assert_ne!(first, second);
    assert!(stats(&node, second).subscriptions == 1);
    assert!(node.stats().restarts >= 1);
    let kids = sup.which_children().await.unwrap();
    assert_eq!(kids.len(), 2);
}

// ----- invalid subscriptions -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_subscription_options_are_refused() {
    let node = node();
    let (m, _demands) = Manual::<u64>::new();
    let p = node
        .start(ProducerStage::new(
            m,
            ProducerOptions::default().max_subscribers(1),
        ))
        .await
        .unwrap();
    let c = node.start(ConsumerStage::new(Rec::<u64>::new())).await.unwrap();
    for o in [
        SubscribeOptions::default().max_demand(0),
        opts(10, 10),
        opts(10, 11),
        opts(1, 1),
    ] {
        let r = within("subscribe", stage::subscribe(&c, &p, o)).await;
        assert!(matches!(r, Err(StageError::Invalid(_))), "{o:?}: {r:?}");
    }
    assert_eq!(stats(&node, c.pid()).subscriptions, 0);
    assert_eq!(stats(&node, p.pid()).subscriptions, 0);
    within("subscribe", stage::subscribe(&c, &p, opts(10, 9)))
        .await
        .unwrap();
    // Past the producer's max_subscribers.
    let c2 = node.start(ConsumerStage::new(Rec::<u64>::new())).await.unwrap();
    let r = within("subscribe", stage::subscribe(&c2, &p, opts(10, 5))).await;
    assert_eq!(r, Err(StageError::TooManySubscriptions { limit: 1 }));
    assert_eq!(stats(&node, c2.pid()).subscriptions, 0);
}
