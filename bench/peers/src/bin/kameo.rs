//! kameo (default features): actors spawned with `Spawn::spawn` (default bounded
//! mailbox, 64 messages), `tell(..).await` (waits for room) for tells, `ask(..).await`
//! for request-reply, `tell(..).try_send()` (ignoring a full mailbox) for the flood.
//! Tokio multi-thread runtime, 2 workers.

use std::hint::black_box;
use std::time::{Duration, Instant};

use girder_peers::*;
use kameo::actor::{ActorRef, Spawn};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use kameo::Actor;
use tokio::sync::oneshot;

const SYS: &str = "kameo";

struct Counter {
    left: u64,
    done: Option<oneshot::Sender<()>>,
}
impl Actor for Counter {
    type Args = Self;
    type Error = Infallible;
    async fn on_start(s: Self, _: ActorRef<Self>) -> Result<Self, Infallible> {
        Ok(s)
    }
}
impl Message<Payload> for Counter {
    type Reply = ();
    async fn handle(&mut self, msg: Payload, _: &mut Context<Self, ()>) {
        black_box(msg);
        self.left -= 1;
        if self.left == 0 {
            if let Some(d) = self.done.take() {
                let _ = d.send(());
            }
        }
    }
}

struct Server;
impl Actor for Server {
    type Args = Self;
    type Error = Infallible;
    async fn on_start(s: Self, _: ActorRef<Self>) -> Result<Self, Infallible> {
        Ok(s)
    }
}
impl Message<Payload> for Server {
    type Reply = Payload;
    async fn handle(&mut self, n: Payload, _: &mut Context<Self, Payload>) -> Payload {
        n + 1
    }
}

struct Bouncer {
    peer: Option<ActorRef<Bouncer>>,
    done: Option<oneshot::Sender<()>>,
}
struct Setup(ActorRef<Bouncer>, Option<oneshot::Sender<()>>);
struct Ball(Payload);
impl Actor for Bouncer {
    type Args = Self;
    type Error = Infallible;
    async fn on_start(s: Self, _: ActorRef<Self>) -> Result<Self, Infallible> {
        Ok(s)
    }
}
impl Message<Setup> for Bouncer {
    type Reply = ();
    async fn handle(&mut self, Setup(peer, done): Setup, _: &mut Context<Self, ()>) {
        self.peer = Some(peer);
        self.done = done;
    }
}
impl Message<Ball> for Bouncer {
    type Reply = ();
    async fn handle(&mut self, Ball(n): Ball, _: &mut Context<Self, ()>) {
        if n == 0 {
            if let Some(d) = self.done.take() {
                let _ = d.send(());
            }
        } else {
            self.peer.as_ref().expect("peer").tell(Ball(n - 1)).await.expect("bounce");
        }
    }
}

struct Idle;
impl Actor for Idle {
    type Args = Countdown;
    type Error = Infallible;
    async fn on_start(started: Countdown, _: ActorRef<Self>) -> Result<Self, Infallible> {
        started.tick();
        Ok(Idle)
    }
}

struct Slow;
impl Actor for Slow {
    type Args = Self;
    type Error = Infallible;
    async fn on_start(s: Self, _: ActorRef<Self>) -> Result<Self, Infallible> {
        Ok(s)
    }
}
impl Message<Payload> for Slow {
    type Reply = ();
    async fn handle(&mut self, msg: Payload, _: &mut Context<Self, ()>) {
        black_box(msg);
        tokio::time::sleep(SLOW).await;
    }
}

fn main() {
    let (w, n) = args();
    let rt = runtime();
    match w {
        Workload::Tell1to1 | Workload::Tell2to1 => {
            let senders = if w == Workload::Tell1to1 { 1 } else { 2 };
            let el = run_on(&rt, async move {
                let (tx, rx) = oneshot::channel();
                let addr = Counter::spawn(Counter { left: n, done: Some(tx) });
                addr.wait_for_startup().await;
                let start = Instant::now();
                for k in shares(n, senders) {
                    let addr = addr.clone();
                    tokio::spawn(async move {
                        for i in 0..k {
                            addr.tell(i).await.expect("tell");
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
                let s = Server::spawn(Server);
                s.wait_for_startup().await;
                let start = Instant::now();
                for i in 0..n {
                    let r = s.ask(i).await.expect("ask");
                    assert_eq!(r, i + 1);
                }
                start.elapsed()
            });
            emit_rate(SYS, w, n, el);
        }
        Workload::PingPong => {
            let el = run_on(&rt, async move {
                let mk = || Bouncer { peer: None, done: None };
                let a = Bouncer::spawn(mk());
                let b = Bouncer::spawn(mk());
                let (tx, rx) = oneshot::channel();
                a.tell(Setup(b.clone(), Some(tx))).await.expect("setup");
                b.tell(Setup(a.clone(), None)).await.expect("setup");
                tokio::time::sleep(Duration::from_millis(10)).await;
                let start = Instant::now();
                a.tell(Ball(2 * n)).await.expect("serve");
                rx.await.expect("back");
                start.elapsed()
            });
            emit_ping_pong(SYS, n, el);
        }
        Workload::Spawn | Workload::IdleRss => {
            let (el, before, after) = run_on(&rt, async move {
                let started = Countdown::new(n);
                let mut refs = Vec::with_capacity(n as usize);
                let before = rss_bytes();
                let start = Instant::now();
                for _ in 0..n {
                    refs.push(Idle::spawn(started.clone()));
                }
                started.wait().await;
                let el = start.elapsed();
                tokio::time::sleep(Duration::from_millis(200)).await;
                let after = rss_bytes();
                (el, before, after)
            });
            if w == Workload::Spawn {
                emit_rate(SYS, w, n, el);
            } else {
                emit_idle_rss(SYS, n, before, after);
            }
        }
        Workload::Flood => {
            let r = run_on(&rt, async move {
                let slow = Slow::spawn(Slow);
                slow.wait_for_startup().await;
                flood_loop(n, |i| slow.tell(i).try_send().is_ok()).await
            });
            emit_flood(SYS, &r);
        }
    }
    std::process::exit(0);
}
