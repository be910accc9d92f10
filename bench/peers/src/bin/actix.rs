//! actix 0.13 on its own runtime: one `actix::System` (a single-threaded tokio
//! runtime on the main thread). Actors are started with actix's default,
//! `Actor::start()`, which places them on the current (System) arbiter, so actix runs
//! every workload on one thread, senders and receivers alike; the one exception is
//! the flood's slow actor, which gets an `Arbiter` (thread) of its own, since its 1 ms
//! `thread::sleep` (actix handlers are synchronous) would otherwise stall the sender.
//! `ACTIX_ARBITER=1` starts every receiver in an arbiter of its own instead (two
//! threads, as the 2 tokio workers the other systems get).
//!
//! - tell: `do_send` (actix's fire-and-forget send: it ignores the mailbox capacity,
//!   so it is unbounded), the senders yielding every 256 sends so two of them
//!   interleave.
//! - request-reply: `addr.send(..).await`, which respects the default mailbox
//!   capacity (16) and returns the handler's result.
//! - ping-pong: the bouncers `do_send` to each other.
//! - flood: `do_send`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use actix::prelude::*;
use girder_peers::*;
use tokio::sync::oneshot;

const SYS: &str = "actix";

struct M(Payload);
impl Message for M {
    type Result = ();
}

struct Counter {
    left: u64,
    done: Option<oneshot::Sender<()>>,
}
impl Actor for Counter {
    type Context = Context<Self>;
}
impl Handler<M> for Counter {
    type Result = ();
    fn handle(&mut self, M(v): M, _: &mut Context<Self>) {
        black_box(v);
        self.left -= 1;
        if self.left == 0 {
            if let Some(d) = self.done.take() {
                let _ = d.send(());
            }
        }
    }
}

struct Req(Payload);
impl Message for Req {
    type Result = Payload;
}
struct Server;
impl Actor for Server {
    type Context = Context<Self>;
}
impl Handler<Req> for Server {
    type Result = Payload;
    fn handle(&mut self, Req(n): Req, _: &mut Context<Self>) -> Payload {
        n + 1
    }
}

struct Bouncer {
    peer: Option<Addr<Bouncer>>,
    done: Option<oneshot::Sender<()>>,
}
struct Setup(Addr<Bouncer>, Option<oneshot::Sender<()>>);
impl Message for Setup {
    type Result = ();
}
struct Ball(Payload);
impl Message for Ball {
    type Result = ();
}
impl Actor for Bouncer {
    type Context = Context<Self>;
}
impl Handler<Setup> for Bouncer {
    type Result = ();
    fn handle(&mut self, Setup(peer, done): Setup, _: &mut Context<Self>) {
        self.peer = Some(peer);
        self.done = done;
    }
}
impl Handler<Ball> for Bouncer {
    type Result = ();
    fn handle(&mut self, Ball(n): Ball, _: &mut Context<Self>) {
        if n == 0 {
            if let Some(d) = self.done.take() {
                let _ = d.send(());
            }
        } else {
            self.peer.as_ref().expect("peer").do_send(Ball(n - 1));
        }
    }
}

struct Idle(Option<Countdown>);
impl Actor for Idle {
    type Context = Context<Self>;
    fn started(&mut self, _: &mut Context<Self>) {
        if let Some(c) = self.0.take() {
            c.tick();
        }
    }
}

struct Slow;
impl Actor for Slow {
    type Context = Context<Self>;
}
impl Handler<M> for Slow {
    type Result = ();
    fn handle(&mut self, M(v): M, _: &mut Context<Self>) {
        black_box(v);
        std::thread::sleep(SLOW);
    }
}

/// Starts an actor: on the System arbiter (actix's default, `Actor::start`), or in
/// an arbiter (thread) of its own with `ACTIX_ARBITER=1`.
fn start<A: Actor<Context = Context<A>> + Send>(make: impl FnOnce() -> A + Send + 'static) -> Addr<A> {
    if std::env::var_os("ACTIX_ARBITER").is_some_and(|v| v == "1") {
        let arb = Arbiter::new();
        let addr = A::start_in_arbiter(&arb.handle(), move |_| make());
        std::mem::forget(arb);
        addr
    } else {
        make().start()
    }
}

fn main() {
    let (w, n) = args();
    let sys = System::new();
    sys.block_on(async move {
        match w {
            Workload::Tell1to1 | Workload::Tell2to1 => {
                let senders = if w == Workload::Tell1to1 { 1 } else { 2 };
                let (tx, rx) = oneshot::channel();
                let addr = start(move || Counter { left: n, done: Some(tx) });
                let start = Instant::now();
                for k in shares(n, senders) {
                    let addr = addr.clone();
                    actix::spawn(async move {
                        for i in 0..k {
                            addr.do_send(M(i));
                            if i % 256 == 255 {
                                tokio::task::yield_now().await;
                            }
                        }
                    });
                }
                rx.await.expect("done");
                emit_rate(SYS, w, n, start.elapsed());
            }
            Workload::RequestReply => {
                let s = start(|| Server);
                let start = Instant::now();
                for i in 0..n {
                    let r = s.send(Req(i)).await.expect("send");
                    assert_eq!(r, i + 1);
                }
                emit_rate(SYS, w, n, start.elapsed());
            }
            Workload::PingPong => {
                let mk = || Bouncer { peer: None, done: None };
                let a = mk().start();
                let b = mk().start();
                let (tx, rx) = oneshot::channel();
                a.do_send(Setup(b.clone(), Some(tx)));
                b.do_send(Setup(a.clone(), None));
                tokio::time::sleep(Duration::from_millis(10)).await;
                let start = Instant::now();
                a.do_send(Ball(2 * n));
                rx.await.expect("back");
                emit_ping_pong(SYS, n, start.elapsed());
            }
            Workload::Spawn | Workload::IdleRss => {
                let started = Countdown::new(n);
                let mut addrs = Vec::with_capacity(n as usize);
                let before = rss_bytes();
                let start = Instant::now();
                for _ in 0..n {
                    addrs.push(Idle(Some(started.clone())).start());
                }
                started.wait().await;
                let el = start.elapsed();
                tokio::time::sleep(Duration::from_millis(200)).await;
                let after = rss_bytes();
                if w == Workload::Spawn {
                    emit_rate(SYS, w, n, el);
                } else {
                    emit_idle_rss(SYS, n, before, after);
                }
            }
            Workload::Flood => {
                let arb = Arbiter::new();
                let slow = Slow::start_in_arbiter(&arb.handle(), |_| Slow);
                tokio::time::sleep(Duration::from_millis(10)).await;
                let r = flood_loop(n, |i| {
                    slow.do_send(M(i));
                    true
                })
                .await;
                emit_flood(SYS, &r);
            }
        }
        std::process::exit(0);
    });
}
