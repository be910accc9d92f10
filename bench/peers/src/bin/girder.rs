//! girder: default mailbox (1,024 messages, 4 MiB, `Backpressure`), `send().await`
//! for tells, `Addr::call` for request-reply, `try_send` (ignoring `Full`) for the
//! flood. Tokio multi-thread runtime, 2 workers.

use std::hint::black_box;
use std::time::{Duration, Instant};

use girder::{Actor, Addr, Ctx, ExitReason, Flow, Node, Reply, SendError, Weight};
use girder_peers::*;
use tokio::sync::oneshot;

const SYS: &str = "girder";
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Counts `u64`s; reports and stops after the expected number.
struct Counter {
    left: u64,
    done: Option<oneshot::Sender<()>>,
}

impl Actor for Counter {
    type Msg = Payload;
    async fn handle(&mut self, msg: Payload, _: &mut Ctx<Self>) -> Flow {
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

struct Server;
struct Req(Payload, Reply<Payload>);
impl Weight for Req {}

impl Actor for Server {
    type Msg = Req;
    async fn handle(&mut self, Req(n, reply): Req, _: &mut Ctx<Self>) -> Flow {
        reply.send(n + 1);
        Flow::Continue
    }
}

struct Bouncer {
    peer: Option<Addr<Bouncer>>,
    done: Option<oneshot::Sender<()>>,
}
enum Bounce {
    Setup(Addr<Bouncer>, Option<oneshot::Sender<()>>),
    Ball(Payload),
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
                if let Some(d) = self.done.take() {
                    let _ = d.send(());
                }
            }
            Bounce::Ball(n) => {
                let peer = self.peer.as_ref().expect("peer");
                peer.send(Bounce::Ball(n - 1)).await.expect("bounce");
            }
        }
        Flow::Continue
    }
}

/// Idle: counts itself in when started, then waits for messages forever.
struct Idle(Option<Countdown>);

impl Actor for Idle {
    type Msg = ();
    async fn init(&mut self, _: &mut Ctx<Self>) -> Result<(), ExitReason> {
        if let Some(c) = self.0.take() {
            c.tick();
        }
        Ok(())
    }
    async fn handle(&mut self, _: (), _: &mut Ctx<Self>) -> Flow {
        Flow::Continue
    }
}

struct Slow;
impl Actor for Slow {
    type Msg = Payload;
    async fn handle(&mut self, msg: Payload, _: &mut Ctx<Self>) -> Flow {
        black_box(msg);
        tokio::time::sleep(SLOW).await;
        Flow::Continue
    }
}

fn main() {
    let (w, n) = args();
    let rt = runtime();
    let node = Node::builder()
        .runtime(rt.handle().clone())
        // The one setting changed from the defaults: room for the spawn workload.
        .max_processes((n as usize + 1024).max(girder::NodeBuilder::DEFAULT_MAX_PROCESSES))
        .build()
        .expect("node");
    match w {
        Workload::Tell1to1 | Workload::Tell2to1 => {
            let senders = if w == Workload::Tell1to1 { 1 } else { 2 };
            let el = run_on(&rt, async move {
                let (tx, rx) = oneshot::channel();
                let addr = node.spawn(Counter { left: n, done: Some(tx) }).expect("spawn");
                let start = Instant::now();
                for k in shares(n, senders) {
                    let addr = addr.clone();
                    tokio::spawn(async move {
                        for i in 0..k {
                            addr.send(i).await.expect("send");
                        }
                    });
                }
                rx.await.expect("done");
                start.elapsed()
            });
            emit_rate(SYS, w, n, el);
        }
        Workload::RequestReply => {
            let el = run_on(&rt, async move {
                let s = node.spawn(Server).expect("spawn");
                let start = Instant::now();
                for i in 0..n {
                    let r = s.call(|reply| Req(i, reply), CALL_TIMEOUT).await.expect("call");
                    assert_eq!(r, i + 1);
                }
                start.elapsed()
            });
            emit_rate(SYS, w, n, el);
        }
        Workload::PingPong => {
            let el = run_on(&rt, async move {
                let mk = || Bouncer { peer: None, done: None };
                let a = node.spawn(mk()).expect("a");
                let b = node.spawn(mk()).expect("b");
                let (tx, rx) = oneshot::channel();
                a.send(Bounce::Setup(b.clone(), Some(tx))).await.expect("setup");
                b.send(Bounce::Setup(a.clone(), None)).await.expect("setup");
                tokio::time::sleep(Duration::from_millis(10)).await;
                let start = Instant::now();
                a.send(Bounce::Ball(2 * n)).await.expect("serve");
                rx.await.expect("back");
                start.elapsed()
            });
            emit_ping_pong(SYS, n, el);
        }
        Workload::Spawn => {
            let el = run_on(&rt, async move {
                let started = Countdown::new(n);
                let mut addrs = Vec::with_capacity(n as usize);
                let start = Instant::now();
                for _ in 0..n {
                    addrs.push(node.spawn(Idle(Some(started.clone()))).expect("spawn"));
                }
                started.wait().await;
                let el = start.elapsed();
                drop(addrs);
                el
            });
            emit_rate(SYS, w, n, el);
        }
        Workload::IdleRss => {
            let (before, after) = run_on(&rt, async move {
                let started = Countdown::new(n);
                let mut addrs = Vec::with_capacity(n as usize);
                let before = rss_bytes();
                for _ in 0..n {
                    addrs.push(node.spawn(Idle(Some(started.clone()))).expect("spawn"));
                }
                started.wait().await;
                tokio::time::sleep(Duration::from_millis(200)).await;
                let after = rss_bytes();
                drop(addrs);
                (before, after)
            });
            emit_idle_rss(SYS, n, before, after);
        }
        Workload::Flood => {
            let r = run_on(&rt, async move {
                let slow = node.spawn(Slow).expect("spawn");
                flood_loop(n, |i| match slow.try_send(i) {
                    Ok(()) => true,
                    Err(SendError::Full(_)) | Err(SendError::NodeBudget(_)) => false,
                    Err(e) => panic!("flood: {e}"),
                })
                .await
            });
            emit_flood(SYS, &r);
        }
    }
    // Exit without waiting for a million actors (or a flooded mailbox) to unwind.
    std::process::exit(0);
}
