//! ractor (default features): `cast` for tells (its mailbox is unbounded: there is no
//! other send), `call` with an `RpcReplyPort` for request-reply, `cast` for the flood.
//! Actors spawned with `Actor::spawn` (which waits for `pre_start`). Tokio
//! multi-thread runtime, 2 workers.
//!
//! `cast` never waits, so the sending loops yield to the scheduler every 256 sends
//! (as the flood loop does for every system), letting the receiver run beside them.

use std::hint::black_box;
use std::time::{Duration, Instant};

use girder_peers::*;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::oneshot;

const SYS: &str = "ractor";

struct Counter;
impl Actor for Counter {
    type Msg = Payload;
    type State = (u64, Option<oneshot::Sender<()>>);
    type Arguments = (u64, Option<oneshot::Sender<()>>);
    async fn pre_start(&self, _: ActorRef<Payload>, args: Self::Arguments) -> Result<Self::State, ActorProcessingErr> {
        Ok(args)
    }
    async fn handle(&self, _: ActorRef<Payload>, msg: Payload, st: &mut Self::State) -> Result<(), ActorProcessingErr> {
        black_box(msg);
        st.0 -= 1;
        if st.0 == 0 {
            if let Some(d) = st.1.take() {
                let _ = d.send(());
            }
        }
        Ok(())
    }
}

struct Server;
struct Req(Payload, RpcReplyPort<Payload>);
impl Actor for Server {
    type Msg = Req;
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<Req>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
    async fn handle(&self, _: ActorRef<Req>, Req(n, reply): Req, _: &mut ()) -> Result<(), ActorProcessingErr> {
        let _ = reply.send(n + 1);
        Ok(())
    }
}

struct Bouncer;
enum Bounce {
    Setup(ActorRef<Bounce>, Option<oneshot::Sender<()>>),
    Ball(Payload),
}
impl Actor for Bouncer {
    type Msg = Bounce;
    type State = (Option<ActorRef<Bounce>>, Option<oneshot::Sender<()>>);
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<Bounce>, _: ()) -> Result<Self::State, ActorProcessingErr> {
        Ok((None, None))
    }
    async fn handle(&self, _: ActorRef<Bounce>, msg: Bounce, st: &mut Self::State) -> Result<(), ActorProcessingErr> {
        match msg {
            Bounce::Setup(peer, done) => *st = (Some(peer), done),
            Bounce::Ball(0) => {
                if let Some(d) = st.1.take() {
                    let _ = d.send(());
                }
            }
            Bounce::Ball(n) => st.0.as_ref().expect("peer").cast(Bounce::Ball(n - 1)).expect("bounce"),
        }
        Ok(())
    }
}

struct Idle;
impl Actor for Idle {
    type Msg = ();
    type State = ();
    type Arguments = Countdown;
    async fn pre_start(&self, _: ActorRef<()>, started: Countdown) -> Result<(), ActorProcessingErr> {
        started.tick();
        Ok(())
    }
}

struct Slow;
impl Actor for Slow {
    type Msg = Payload;
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<Payload>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
    async fn handle(&self, _: ActorRef<Payload>, msg: Payload, _: &mut ()) -> Result<(), ActorProcessingErr> {
        black_box(msg);
        tokio::time::sleep(SLOW).await;
        Ok(())
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
                let (addr, _) = Actor::spawn(None, Counter, (n, Some(tx))).await.expect("spawn");
                let start = Instant::now();
                for k in shares(n, senders) {
                    let addr = addr.clone();
                    tokio::spawn(async move {
                        for i in 0..k {
                            addr.cast(i).expect("cast");
                            if i % 256 == 255 {
                                tokio::task::yield_now().await;
                            }
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
                let (s, _) = Actor::spawn(None, Server, ()).await.expect("spawn");
                let start = Instant::now();
                for i in 0..n {
                    let r = s.call(|reply| Req(i, reply), None).await.expect("call");
                    assert_eq!(r.success_or(()).expect("reply"), i + 1);
                }
                start.elapsed()
            });
            emit_rate(SYS, w, n, el);
        }
        Workload::PingPong => {
            let el = run_on(&rt, async move {
                let (a, _) = Actor::spawn(None, Bouncer, ()).await.expect("a");
                let (b, _) = Actor::spawn(None, Bouncer, ()).await.expect("b");
                let (tx, rx) = oneshot::channel();
                a.cast(Bounce::Setup(b.clone(), Some(tx))).expect("setup");
                b.cast(Bounce::Setup(a.clone(), None)).expect("setup");
                tokio::time::sleep(Duration::from_millis(10)).await;
                let start = Instant::now();
                a.cast(Bounce::Ball(2 * n)).expect("serve");
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
                    let (r, _) = Actor::spawn(None, Idle, started.clone()).await.expect("spawn");
                    refs.push(r);
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
                let (slow, _) = Actor::spawn(None, Slow, ()).await.expect("spawn");
                flood_loop(n, |i| slow.cast(i).is_ok()).await
            });
            emit_flood(SYS, &r);
        }
    }
    std::process::exit(0);
}
