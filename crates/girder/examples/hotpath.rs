//! The core benchmarks' hot paths as one small binary, for profilers
//! (`valgrind --tool=callgrind`, `perf`): each case runs girder and its raw tokio
//! floor in the same process and prints both rates and their ratio.
//!
//! ```text
//! cargo run --release -p girder --example hotpath -- [tell1|tell2|call|pingpong|spawn|all] [N]
//! cargo run --release -p girder --example hotpath -- tell1 200000 girder   # one side only
//! ```

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder::{Actor, Addr, Ctx, ExitReason, Flow, Node, Reply, SpawnError, Weight};
use tokio::sync::{mpsc, oneshot, Notify};

const CAP: usize = girder::Mailbox::DEFAULT_CAPACITY;
const TIMEOUT: Duration = Duration::from_secs(30);

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
            if let Some(d) = self.done.take() {
                let _ = d.send(());
            }
            return Flow::Stop(ExitReason::Normal);
        }
        Flow::Continue
    }
}

async fn tell_girder(node: &Node, n: u64, senders: u64) -> Duration {
    let (tx, rx) = oneshot::channel();
    let addr = node
        .spawn(Counter {
            left: n,
            done: Some(tx),
        })
        .unwrap();
    let start = Instant::now();
    for _ in 0..senders {
        let addr = addr.clone();
        tokio::spawn(async move {
            for i in 0..n / senders {
                addr.send(i).await.unwrap();
            }
        });
    }
    rx.await.unwrap();
    start.elapsed()
}

async fn tell_floor(n: u64, senders: u64) -> Duration {
    let (tx, mut rx) = mpsc::channel::<u64>(CAP);
    let (dtx, drx) = oneshot::channel();
    tokio::spawn(async move {
        let mut left = n;
        while let Some(v) = rx.recv().await {
            black_box(v);
            left -= 1;
            if left == 0 {
                break;
            }
        }
        let _ = dtx.send(());
    });
    let start = Instant::now();
    for _ in 0..senders {
        let tx = tx.clone();
        tokio::spawn(async move {
            for i in 0..n / senders {
                tx.send(i).await.unwrap();
            }
        });
    }
    drop(tx);
    drx.await.unwrap();
    start.elapsed()
}

struct Server;
struct Req(u64, Reply<u64>);
impl Weight for Req {}
impl Actor for Server {
    type Msg = Req;
    async fn handle(&mut self, Req(n, r): Req, _: &mut Ctx<Self>) -> Flow {
        r.send(n + 1);
        Flow::Continue
    }
}

async fn call_girder(node: &Node, n: u64) -> Duration {
    let addr = node.spawn(Server).unwrap();
    let start = Instant::now();
    tokio::spawn(async move {
        for i in 0..n {
            assert_eq!(addr.call(|r| Req(i, r), TIMEOUT).await.unwrap(), i + 1);
        }
    })
    .await
    .unwrap();
    start.elapsed()
}

async fn call_floor(n: u64) -> Duration {
    let (tx, mut rx) = mpsc::channel::<(u64, oneshot::Sender<u64>)>(CAP);
    tokio::spawn(async move {
        while let Some((n, r)) = rx.recv().await {
            let _ = r.send(n + 1);
        }
    });
    let start = Instant::now();
    tokio::spawn(async move {
        for i in 0..n {
            let (otx, orx) = oneshot::channel();
            tx.send((i, otx)).await.unwrap();
            assert_eq!(orx.await.unwrap(), i + 1);
        }
    })
    .await
    .unwrap();
    start.elapsed()
}

struct Bouncer {
    peer: Option<Addr<Bouncer>>,
    done: Option<oneshot::Sender<()>>,
}
enum Bounce {
    Setup(Addr<Bouncer>, Option<oneshot::Sender<()>>),
    Ball(u64),
}
impl Weight for Bounce {}
impl Actor for Bouncer {
    type Msg = Bounce;
    async fn handle(&mut self, msg: Bounce, _: &mut Ctx<Self>) -> Flow {
        match msg {
            Bounce::Setup(p, d) => {
                self.peer = Some(p);
                self.done = d;
            }
            Bounce::Ball(0) => {
                if let Some(d) = self.done.take() {
                    let _ = d.send(());
                }
                return Flow::Stop(ExitReason::Normal);
            }
            Bounce::Ball(n) => {
                let _ = self.peer.as_ref().unwrap().send(Bounce::Ball(n - 1)).await;
            }
        }
        Flow::Continue
    }
}

async fn pingpong_girder(node: &Node, n: u64) -> Duration {
    let mk = || Bouncer {
        peer: None,
        done: None,
    };
    let a = node.spawn(mk()).unwrap();
    let b = node.spawn(mk()).unwrap();
    let (dtx, drx) = oneshot::channel();
    a.send(Bounce::Setup(b.clone(), Some(dtx))).await.unwrap();
    b.send(Bounce::Setup(a.clone(), None)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    let start = Instant::now();
    a.send(Bounce::Ball(2 * n)).await.unwrap();
    drx.await.unwrap();
    let e = start.elapsed();
    node.kill(b.pid());
    e
}

async fn pingpong_floor(n: u64) -> Duration {
    let (to_b, mut b_rx) = mpsc::channel::<u64>(CAP);
    let (to_a, mut a_rx) = mpsc::channel::<u64>(CAP);
    let (dtx, drx) = oneshot::channel();
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
                let _ = dtx.send(());
                break;
            }
            to_b.send(n - 1).await.unwrap();
        }
    });
    let start = Instant::now();
    to_a.send(2 * n).await.unwrap();
    drx.await.unwrap();
    start.elapsed()
}

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

async fn spawn_girder(node: &Node, n: u64) -> Duration {
    let left = Arc::new((AtomicU64::new(n), Notify::new()));
    let start = Instant::now();
    let spawner = {
        let node = node.clone();
        let left = left.clone();
        tokio::spawn(async move {
            for _ in 0..n {
                loop {
                    match node.spawn(Ephemeral { left: left.clone() }) {
                        Ok(_) => break,
                        Err(SpawnError::ProcessLimit { .. }) => tokio::task::yield_now().await,
                        Err(e) => panic!("spawn: {e}"),
                    }
                }
            }
        })
    };
    spawner.await.unwrap();
    left.1.notified().await;
    while node.stats().processes > 0 {
        tokio::task::yield_now().await;
    }
    start.elapsed()
}

async fn spawn_floor(n: u64) -> Duration {
    let left = Arc::new((AtomicU64::new(n), Notify::new()));
    let start = Instant::now();
    let spawner = {
        let left = left.clone();
        tokio::spawn(async move {
            for _ in 0..n {
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
    spawner.await.unwrap();
    left.1.notified().await;
    start.elapsed()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let case = args.get(1).map(String::as_str).unwrap_or("all");
    let n: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let side = args.get(3).map(String::as_str).unwrap_or("both");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let node = Node::builder()
        .runtime(rt.handle().clone())
        // Room for the spawn case's backlog of exiting processes.
        .max_processes(1 << 20)
        .build()
        .unwrap();
    let cases: &[&str] = if case == "all" {
        &["tell1", "tell2", "call", "pingpong", "spawn"]
    } else {
        std::slice::from_ref(&case)
    };
    for &c in cases {
        let (g, f) = rt.block_on(async {
            let g = if side != "floor" {
                match c {
                    "tell1" => tell_girder(&node, n, 1).await,
                    "tell2" => tell_girder(&node, n, 2).await,
                    "call" => call_girder(&node, n).await,
                    "pingpong" => pingpong_girder(&node, n).await,
                    "spawn" => spawn_girder(&node, n).await,
                    _ => panic!("unknown case {c}"),
                }
            } else {
                Duration::ZERO
            };
            let f = if side != "girder" {
                match c {
                    "tell1" => tell_floor(n, 1).await,
                    "tell2" => tell_floor(n, 2).await,
                    "call" => call_floor(n).await,
                    "pingpong" => pingpong_floor(n).await,
                    "spawn" => spawn_floor(n).await,
                    _ => unreachable!(),
                }
            } else {
                Duration::ZERO
            };
            (g, f)
        });
        let rate = |d: Duration| {
            if d.is_zero() {
                0.0
            } else {
                n as f64 / d.as_secs_f64() / 1e6
            }
        };
        if c == "pingpong" {
            let ns = |d: Duration| d.as_nanos() as f64 / n as f64;
            println!(
                "{c:9} girder {:8.1} ns/rt  floor {:8.1} ns/rt  girder/floor time {:.2}",
                ns(g),
                ns(f),
                ns(g) / ns(f)
            );
        } else {
            println!(
                "{c:9} girder {:6.2} M/s  floor {:6.2} M/s  ratio {:.2}",
                rate(g),
                rate(f),
                rate(g) / rate(f)
            );
        }
    }
}
