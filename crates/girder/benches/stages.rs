//! Stage benchmarks: events per second through demand-driven stages, the workloads of
//! issue 4 (measured against Elixir's GenStage on the same machine).
//!
//! ```text
//! cargo bench -p girder --bench stages                  # everything (~1 minute)
//! cargo bench -p girder --bench stages -- pipeline      # one group
//! ```
//!
//! | group | stages | sizes |
//! |---|---|---|
//! | `producer_consumer` | counting producer → counting consumer | `max_demand` 1, 100, 1,000 |
//! | `pipeline` | counting producer → identity producer-consumer → counting consumer | `max_demand` 1, 100, 1,000 |
//! | `broadcast` | counting producer, broadcast dispatcher → 2 counting consumers | `max_demand` 1,000 |
//!
//! `min_demand` is `max_demand / 2` (0 for `max_demand` 1), on every subscription. As
//! in GenStage's benchmark, no work is done per event: the producer emits consecutive
//! `u64`s, as many as asked; the consumer counts them and signals once it has `N`.
//!
//! One criterion iteration is one event, so criterion scales `N` per size to fill the
//! measurement time (`iters` events are timed per sample with `iter_custom`), and
//! throughput is reported in events per second. For broadcast, an event is counted
//! once, though both consumers handle it.
//!
//! The clock runs from the subscription that starts the flow to the last event: for
//! `producer_consumer` the consumer's subscription; for `pipeline` the
//! producer-consumer's subscription to the producer (the consumer subscribed to it
//! first, while nothing flowed); for `broadcast`, both consumers subscribe to a held
//! producer, and the clock starts when it is released. Every stage is killed, and its
//! exit awaited, outside the clock.
//!
//! Stages run on a multi-thread tokio runtime with 2 workers (as the core bench);
//! criterion's `block_on` thread only subscribes, starts the clock and waits.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use girder::stage::{
    self, Consumer, ConsumerStage, Dispatcher, Producer, ProducerConsumer, ProducerConsumerStage,
    ProducerOptions, ProducerStage, StageMsg, SubscribeOptions,
};
use girder::{Addr, Ctx, ExitReason, Flow, Node, Pid, Weight};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

/// The `max_demand` sizes of the single-path workloads.
const SIZES: [usize; 3] = [1, 100, 1000];
/// The `max_demand` of the broadcast workload.
const BROADCAST_SIZE: usize = 1000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn node(rt: &Runtime) -> Node {
    Node::builder()
        .runtime(rt.handle().clone())
        .build()
        .expect("node")
}

/// `max_demand`, with `min_demand` half of it (0 for 1).
fn opts(max_demand: usize) -> SubscribeOptions {
    SubscribeOptions::default()
        .max_demand(max_demand)
        .min_demand(max_demand / 2)
}

// ----- stages -----

/// Releases a held [`Counting`] producer.
struct Release;
impl Weight for Release {}

/// Emits consecutive `u64`s, as many as asked. A held one only records the demand
/// until it is released.
struct Counting {
    next: u64,
    held: bool,
    owed: usize,
}

impl Counting {
    fn new(held: bool) -> Self {
        Counting {
            next: 0,
            held,
            owed: 0,
        }
    }

    fn emit(&mut self, n: usize) -> Vec<u64> {
        let start = self.next;
        self.next += n as u64;
        (start..self.next).collect()
    }
}

impl Producer for Counting {
    type Event = u64;
    type Info = Release;

    async fn handle_demand(&mut self, demand: usize, _: &mut Ctx<ProducerStage<Self>>) -> Vec<u64> {
        if self.held {
            self.owed += demand;
            return Vec::new();
        }
        self.emit(demand)
    }

    async fn handle_info(&mut self, _: Release, _: &mut Ctx<ProducerStage<Self>>) -> Vec<u64> {
        self.held = false;
        let owed = std::mem::take(&mut self.owed);
        self.emit(owed)
    }
}

/// Passes its events on unchanged.
struct Identity;

impl ProducerConsumer for Identity {
    type In = u64;
    type Out = u64;
    type Info = ();

    async fn handle_events(
        &mut self,
        events: Vec<u64>,
        _: &mut Ctx<ProducerConsumerStage<Self>>,
    ) -> Vec<u64> {
        events
    }
}

/// Counts events; signals and stops once it has `left` more.
struct Count {
    left: u64,
    done: Option<oneshot::Sender<()>>,
}

impl Consumer for Count {
    type Event = u64;
    type Info = ();

    async fn handle_events(&mut self, events: Vec<u64>, _: &mut Ctx<ConsumerStage<Self>>) -> Flow {
        black_box(&events);
        self.left = self.left.saturating_sub(events.len() as u64);
        if self.left == 0 {
            if let Some(done) = self.done.take() {
                let _ = done.send(());
            }
            return Flow::Stop(ExitReason::Normal);
        }
        Flow::Continue
    }
}

async fn counter(node: &Node, events: u64) -> (Addr<ConsumerStage<Count>>, oneshot::Receiver<()>) {
    let (tx, rx) = oneshot::channel();
    let c = node
        .start(ConsumerStage::new(Count {
            left: events,
            done: Some(tx),
        }))
        .await
        .expect("start consumer");
    (c, rx)
}

async fn producer(node: &Node, held: bool, dispatcher: Dispatcher<u64>) -> Addr<ProducerStage<Counting>> {
    node.start(ProducerStage::new(
        Counting::new(held),
        ProducerOptions::default().dispatcher(dispatcher),
    ))
    .await
    .expect("start producer")
}

/// Kills the stages and waits until they are gone.
async fn teardown(node: &Node, pids: &[Pid]) {
    let watches: Vec<_> = pids.iter().map(|&p| node.watch(p)).collect();
    for &p in pids {
        node.kill(p);
    }
    for w in watches {
        w.await;
    }
}

// ----- workloads -----

async fn producer_consumer(node: &Node, events: u64, max_demand: usize) -> Duration {
    let p = producer(node, false, Dispatcher::demand()).await;
    let (c, done) = counter(node, events).await;
    let start = Instant::now();
    stage::subscribe(&c, &p, opts(max_demand))
        .await
        .expect("subscribe");
    done.await.expect("consumer done");
    let elapsed = start.elapsed();
    teardown(node, &[c.pid(), p.pid()]).await;
    elapsed
}

async fn pipeline(node: &Node, events: u64, max_demand: usize) -> Duration {
    let p = producer(node, false, Dispatcher::demand()).await;
    let pc = node
        .start(ProducerConsumerStage::new(Identity, ProducerOptions::default()))
        .await
        .expect("start producer-consumer");
    let (c, done) = counter(node, events).await;
    stage::subscribe(&c, &pc, opts(max_demand))
        .await
        .expect("subscribe consumer");
    let start = Instant::now();
    stage::subscribe(&pc, &p, opts(max_demand))
        .await
        .expect("subscribe producer-consumer");
    done.await.expect("consumer done");
    let elapsed = start.elapsed();
    teardown(node, &[c.pid(), pc.pid(), p.pid()]).await;
    elapsed
}

async fn broadcast(node: &Node, events: u64, max_demand: usize) -> Duration {
    let p = producer(node, true, Dispatcher::broadcast()).await;
    let (a, a_done) = counter(node, events).await;
    let (b, b_done) = counter(node, events).await;
    stage::subscribe(&a, &p, opts(max_demand))
        .await
        .expect("subscribe a");
    stage::subscribe(&b, &p, opts(max_demand))
        .await
        .expect("subscribe b");
    let start = Instant::now();
    p.send(StageMsg::info(Release)).await.expect("release");
    a_done.await.expect("consumer a done");
    b_done.await.expect("consumer b done");
    let elapsed = start.elapsed();
    teardown(node, &[a.pid(), b.pid(), p.pid()]).await;
    elapsed
}

// ----- groups -----

fn configure(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    g.throughput(Throughput::Elements(1))
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
}

fn single_path(c: &mut Criterion) {
    let rt = runtime();
    let node = node(&rt);
    for (name, pc) in [("producer_consumer", false), ("pipeline", true)] {
        let mut g = c.benchmark_group(name);
        configure(&mut g);
        for size in SIZES {
            g.bench_with_input(BenchmarkId::new("max_demand", size), &size, |b, &size| {
                b.to_async(&rt).iter_custom(|iters| {
                    let node = &node;
                    async move {
                        if pc {
                            pipeline(node, iters, size).await
                        } else {
                            producer_consumer(node, iters, size).await
                        }
                    }
                })
            });
        }
        g.finish();
    }
}

fn broadcast_2(c: &mut Criterion) {
    let rt = runtime();
    let node = node(&rt);
    let mut g = c.benchmark_group("broadcast");
    configure(&mut g);
    g.bench_with_input(
        BenchmarkId::new("2_consumers_max_demand", BROADCAST_SIZE),
        &BROADCAST_SIZE,
        |b, &size| b.to_async(&rt).iter_custom(|iters| broadcast(&node, iters, size)),
    );
    g.finish();
}

criterion_group!(benches, single_path, broadcast_2);
criterion_main!(benches);
