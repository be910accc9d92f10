//! Core benchmarks: girder against its floor, a raw bounded tokio channel.
//!
//! ```text
//! cargo bench -p girder --bench core            # everything (~3 minutes)
//! cargo bench -p girder --bench core -- tell    # one group
//! ```
//!
//! Every benchmark runs on the same multi-thread tokio runtime with 2 workers, for
//! girder and for the floor alike. The timed part of each sample runs in tasks
//! spawned on that runtime (criterion's `block_on` thread only starts the clock and
//! waits), so both sides pay the same wake-ups.
//!
//! | group | girder | floor |
//! |---|---|---|
//! | `tell_1to1` | one task `send().await`s `u64`s to a counting actor (default mailbox: 1,024, `Backpressure`) | the same through `tokio::sync::mpsc::channel(1024)` |
//! | `tell_2to1` | two sender tasks, one actor | two senders, one channel |
//! | `call` | `Addr::call` round trips by 1 and 4 concurrent callers | `mpsc` + `oneshot` request-reply, bare and (`_timeout`) under `timeout_at` as `call` is |
//! | `ping_pong` | two actors bounce a message (time per round trip) | two tasks and two channels |
//! | `spawn_exit` | spawn actors that stop in `init`, until all have exited | `tokio::spawn` of empty tasks, until all have run |
//!
//! Throughput groups report elements (messages, calls, processes) per second: one
//! criterion iteration is one message, call or process, so `iters` of them are
//! timed per sample with `iter_custom`.
//!
//! Each group runs girder and its floor back to back on the same runtime, so the
//! ratio within one run is the figure to compare. `examples/hotpath.rs` runs the same
//! cases in one process and prints the ratios directly; it is also the binary to give
//! `valgrind --tool=callgrind` or `perf record`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use girder::{Actor, Addr, Ctx, ExitReason, Flow, Node, Reply, SpawnError, Weight};
use std::hint::black_box;
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot, Notify};

/// The floor's channel bound: girder's default mailbox capacity.
const CAP: usize = girder::Mailbox::DEFAULT_CAPACITY;
/// Concurrent callers in the multi-caller `call` benchmark.
const CALLERS: u64 = 4;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

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
        // Room for the spawn benchmark's backlog of exiting processes.
        .max_processes(1 << 20)
        .build()
        .expect("node")
}

/// Splits `total` into `parts` nearly equal shares.
fn shares(total: u64, parts: u64) -> impl Iterator<Item = u64> {
    (0..parts).map(move |i| total / parts + u64::from(i < total % parts))
}

// ----- tell -----

/// Counts `u64` messages; signals and stops after the expected number.
struct Counter {
    left: u64,
    done: Option<oneshot::Sender<()>>,
}

impl Actor for Counter {
    type Msg = u64;

    async fn handle(&mut self, msg: u64, _: &mut Ctx<Self>) -> Flow {
        black_box(msg);
        self.left -= 1;
        if self.left == 0 {
            if let Some(done) = self.done.take() {
                let _ = done.send(());
            }
            return Flow::Stop(ExitReason::Normal);
        }
        Flow::Continue
    }
}

async fn tell_girder(node: &Node, iters: u64, senders: u64) -> Duration {
    let (done_tx, done_rx) = oneshot::channel();
    let addr = node
        .spawn(Counter {
            left: iters,
            done: Some(done_tx),
        })
        .expect("spawn counter");
    let start = Instant::now();
    for n in shares(iters, senders) {
        let addr = addr.clone();
        tokio::spawn(async move {
            for i in 0..n {
                addr.send(i).await.expect("send");
            }
        });
    }
    done_rx.await.expect("counter done");
    start.elapsed()
}

async fn tell_floor(iters: u64, senders: u64) -> Duration {
    let (tx, mut rx) = mpsc::channel::<u64>(CAP);
    let (done_tx, done_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut left = iters;
        while let Some(v) = rx.recv().await {
            black_box(v);
            left -= 1;
            if left == 0 {
                break;
            }
        }
        let _ = done_tx.send(());
    });
    let start = Instant::now();
    for n in shares(iters, senders) {
        let tx = tx.clone();
        tokio::spawn(async move {
            for i in 0..n {
                tx.send(i).await.expect("send");
            }
        });
    }
    drop(tx);
    done_rx.await.expect("receiver done");
    start.elapsed()
}

fn tell(c: &mut Criterion) {
    let rt = runtime();
    let node = node(&rt);
    for (group_name, senders) in [("tell_1to1", 1), ("tell_2to1", 2)] {
        let mut g = c.benchmark_group(group_name);
        g.throughput(Throughput::Elements(1))
            .sample_size(30)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4));
        g.bench_function("girder", |b| {
            b.to_async(&rt)
                .iter_custom(|iters| tell_girder(&node, iters, senders))
        });
        g.bench_function("tokio_mpsc", |b| {
            b.to_async(&rt).iter_custom(|iters| tell_floor(iters, senders))
        });
        g.finish();
    }
}

// ----- call -----

/// Answers every request with its argument plus one.
struct Server;

struct Req(u64, Reply<u64>);
impl Weight for Req {}

impl Actor for Server {
    type Msg = Req;

    async fn handle(&mut self, Req(n, reply): Req, _: &mut Ctx<Self>) -> Flow {
        reply.send(n + 1);
        Flow::Continue
    }
}

async fn call_girder(addr: &Addr<Server>, iters: u64, callers: u64) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = shares(iters, callers)
        .map(|n| {
            let addr = addr.clone();
            tokio::spawn(async move {
                for i in 0..n {
                    let r = addr.call(|reply| Req(i, reply), CALL_TIMEOUT).await;
                    assert_eq!(r.expect("call"), i + 1);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("caller");
    }
    start.elapsed()
}

type FloorReq = (u64, oneshot::Sender<u64>);

fn floor_server(rt: &Runtime) -> mpsc::Sender<FloorReq> {
    let (tx, mut rx) = mpsc::channel::<FloorReq>(CAP);
    rt.spawn(async move {
        while let Some((n, reply)) = rx.recv().await {
            let _ = reply.send(n + 1);
        }
    });
    tx
}

/// One floor request-reply. With `timeout`, both halves run under
/// `tokio::time::timeout_at`, as `Addr::call` does.
async fn floor_request(tx: &mpsc::Sender<FloorReq>, i: u64, timeout: bool) -> u64 {
    let (otx, orx) = oneshot::channel();
    if timeout {
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
        tokio::time::timeout_at(deadline, tx.send((i, otx)))
            .await
            .expect("in time")
            .expect("send");
        tokio::time::timeout_at(deadline, orx)
            .await
            .expect("in time")
            .expect("reply")
    } else {
        tx.send((i, otx)).await.expect("send");
        orx.await.expect("reply")
    }
}

async fn call_floor(tx: &mpsc::Sender<FloorReq>, iters: u64, callers: u64, timeout: bool) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = shares(iters, callers)
        .map(|n| {
            let tx = tx.clone();
            tokio::spawn(async move {
                for i in 0..n {
                    assert_eq!(floor_request(&tx, i, timeout).await, i + 1);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("caller");
    }
    start.elapsed()
}

fn call(c: &mut Criterion) {
    let rt = runtime();
    let node = node(&rt);
    let server = node.spawn(Server).expect("spawn server");
    let floor = floor_server(&rt);
    let mut g = c.benchmark_group("call");
    g.throughput(Throughput::Elements(1))
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for callers in [1, CALLERS] {
        g.bench_with_input(BenchmarkId::new("girder", callers), &callers, |b, &k| {
            b.to_async(&rt)
                .iter_custom(|iters| call_girder(&server, iters, k))
        });
        g.bench_with_input(
            BenchmarkId::new("tokio_mpsc_oneshot", callers),
            &callers,
            |b, &k| {
                b.to_async(&rt)
                    .iter_custom(|iters| call_floor(&floor, iters, k, false))
            },
        );
        g.bench_with_input(
            BenchmarkId::new("tokio_mpsc_oneshot_timeout", callers),
            &callers,
            |b, &k| {
                b.to_async(&rt)
                    .iter_custom(|iters| call_floor(&floor, iters, k, true))
            },
        );
    }
    g.finish();
}

// ----- ping-pong -----

/// Bounces a ball to its peer until the ball's count runs out.
struct Bouncer {
    peer: Option<Addr<Bouncer>>,
    done: Option<oneshot::Sender<()>>,
}

enum Bounce {
    /// The peer, and (for the side that finishes) where to report the end.
    Setup(Addr<Bouncer>, Option<oneshot::Sender<()>>),
    /// Hops left.
    Ball(u64),
}
impl Weight for Bounce {}

impl Actor for Bouncer {
    type Msg = Bounce;

    async fn handle(&mut self, msg: Bounce, _: &mut Ctx<Self>) -> Flow {
        match msg {
            Bounce::Setup(peer, done) => {
                self.peer = Some(peer);
                self.done = done;
            }
            Bounce::Ball(0) => {
                if let Some(done) = self.done.take() {
                    let _ = done.send(());
                }
            }
            Bounce::Ball(n) => {
                let peer = self.peer.as_ref().expect("peer set");
                peer.send(Bounce::Ball(n - 1)).await.expect("bounce");
            }
        }
        Flow::Continue
    }
}

/// Two bouncers; the ball ends (hop count 0) at the first one.
async fn ping_pong_girder(node: &Node, iters: u64) -> Duration {
    let bouncer = || Bouncer {
        peer: None,
        done: None,
    };
    let a = node.spawn(bouncer()).expect("spawn a");
    let b = node.spawn(bouncer()).expect("spawn b");
    let (done_tx, done_rx) = oneshot::channel();
    a.send(Bounce::Setup(b.clone(), Some(done_tx)))
        .await
        .expect("setup");
    b.send(Bounce::Setup(a.clone(), None)).await.expect("setup");
    // Let both take their setup before the clock starts.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let start = Instant::now();
    // A round trip is two hops: a → b → a.
    a.send(Bounce::Ball(2 * iters)).await.expect("serve");
    done_rx.await.expect("ball back");
    let elapsed = start.elapsed();
    node.kill(a.pid());
    node.kill(b.pid());
    elapsed
}

async fn ping_pong_floor(iters: u64) -> Duration {
    let (to_b, mut b_rx) = mpsc::channel::<u64>(CAP);
    let (to_a, mut a_rx) = mpsc::channel::<u64>(CAP);
    let (done_tx, done_rx) = oneshot::channel();
    let b_to_a = to_a.clone();
    tokio::spawn(async move {
        while let Some(n) = b_rx.recv().await {
            if b_to_a.send(n - 1).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(n) = a_rx.recv().await {
            if n == 0 {
                let _ = done_tx.send(());
                break;
            }
            to_b.send(n - 1).await.expect("bounce");
        }
    });
    let start = Instant::now();
    // As for girder: a round trip is two hops, a → b → a.
    to_a.send(2 * iters).await.expect("serve");
    done_rx.await.expect("ball back");
    start.elapsed()
}

fn ping_pong(c: &mut Criterion) {
    let rt = runtime();
    let node = node(&rt);
    let mut g = c.benchmark_group("ping_pong");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g.bench_function("girder", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| ping_pong_girder(&node, iters))
    });
    g.bench_function("tokio_mpsc", |b| b.to_async(&rt).iter_custom(ping_pong_floor));
    g.finish();
}

// ----- spawn + exit -----

/// Stops as soon as it starts; counts itself out on the way.
struct Ephemeral {
    left: Arc<(AtomicU64, Notify)>,
}

impl Actor for Ephemeral {
    type Msg = ();

    async fn init(&mut self, ctx: &mut Ctx<Self>) -> Result<(), ExitReason> {
        ctx.stop(ExitReason::Normal);
        Ok(())
    }

    async fn handle(&mut self, _: (), _: &mut Ctx<Self>) -> Flow {
        Flow::Continue
    }

    async fn terminate(&mut self, _: &ExitReason, _: &mut Ctx<Self>) {
        let (left, done) = &*self.left;
        if left.fetch_sub(1, Ordering::AcqRel) == 1 {
            done.notify_one();
        }
    }
}

async fn spawn_girder(node: &Node, iters: u64) -> Duration {
    let left = Arc::new((AtomicU64::new(iters), Notify::new()));
    let start = Instant::now();
    let spawner = {
        let node = node.clone();
        let left = left.clone();
        tokio::spawn(async move {
            for _ in 0..iters {
                loop {
                    match node.spawn(Ephemeral { left: left.clone() }) {
                        Ok(_) => break,
                        // The backlog of exiting processes is at the limit: let
                        // them drain.
                        Err(SpawnError::ProcessLimit { .. }) => tokio::task::yield_now().await,
                        Err(e) => panic!("spawn: {e}"),
                    }
                }
            }
        })
    };
    spawner.await.expect("spawner");
    left.1.notified().await;
    // `terminate` runs just before the slot is freed: wait for the last few.
    while node.stats().processes > 0 {
        tokio::task::yield_now().await;
    }
    start.elapsed()
}

async fn spawn_floor(iters: u64) -> Duration {
    let left = Arc::new((AtomicU64::new(iters), Notify::new()));
    let start = Instant::now();
    let spawner = {
        let left = left.clone();
        tokio::spawn(async move {
            for _ in 0..iters {
                let left = left.clone();
                tokio::spawn(async move {
                    let (left, done) = &*left;
                    if left.fetch_sub(1, Ordering::AcqRel) == 1 {
                        done.notify_one();
                    }
                });
            }
        })
    };
    spawner.await.expect("spawner");
    left.1.notified().await;
    start.elapsed()
}

fn spawn_exit(c: &mut Criterion) {
    let rt = runtime();
    let node = node(&rt);
    let mut g = c.benchmark_group("spawn_exit");
    g.throughput(Throughput::Elements(1))
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g.bench_function("girder", |b| {
        b.to_async(&rt).iter_custom(|iters| spawn_girder(&node, iters))
    });
    g.bench_function("tokio_spawn", |b| b.to_async(&rt).iter_custom(spawn_floor));
    g.finish();
}

criterion_group!(benches, tell, call, ping_pong, spawn_exit);
criterion_main!(benches);
