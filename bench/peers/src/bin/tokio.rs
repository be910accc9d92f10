//! The floor: raw tokio tasks and bounded `tokio::sync::mpsc::channel(1024)` (girder's
//! default mailbox capacity), `send().await` for tells, mpsc + `oneshot` for
//! request-reply, `try_send` (ignoring `Full`) for the flood. An "actor" is a task
//! looping on its channel's `recv()`. Tokio multi-thread runtime, 2 workers.

use std::hint::black_box;
use std::time::{Duration, Instant};

use girder_peers::*;
use tokio::sync::{mpsc, oneshot};

const SYS: &str = "tokio";

fn main() {
    let (w, n) = args();
    let rt = runtime();
    match w {
        Workload::Tell1to1 | Workload::Tell2to1 => {
            let senders = if w == Workload::Tell1to1 { 1 } else { 2 };
            let el = run_on(&rt, async move {
                let (tx, mut rx) = mpsc::channel::<Payload>(CAP);
                let (done_tx, done_rx) = oneshot::channel();
                tokio::spawn(async move {
                    let mut left = n;
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
                for k in shares(n, senders) {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        for i in 0..k {
                            tx.send(i).await.expect("send");
                        }
                    });
                }
                drop(tx);
                done_rx.await.expect("done");
                start.elapsed()
            });
            emit_rate(SYS, w, n, el);
        }
        Workload::RequestReply => {
            let el = run_on(&rt, async move {
                let (tx, mut rx) = mpsc::channel::<(Payload, oneshot::Sender<Payload>)>(CAP);
                tokio::spawn(async move {
                    while let Some((v, reply)) = rx.recv().await {
                        let _ = reply.send(v + 1);
                    }
                });
                let start = Instant::now();
                for i in 0..n {
                    let (otx, orx) = oneshot::channel();
                    tx.send((i, otx)).await.expect("send");
                    assert_eq!(orx.await.expect("reply"), i + 1);
                }
                start.elapsed()
            });
            emit_rate(SYS, w, n, el);
        }
        Workload::PingPong => {
            let el = run_on(&rt, async move {
                let (to_b, mut b_rx) = mpsc::channel::<Payload>(CAP);
                let (to_a, mut a_rx) = mpsc::channel::<Payload>(CAP);
                let (done_tx, done_rx) = oneshot::channel();
                let b_to_a = to_a.clone();
                tokio::spawn(async move {
                    while let Some(v) = b_rx.recv().await {
                        if b_to_a.send(v - 1).await.is_err() {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    while let Some(v) = a_rx.recv().await {
                        if v == 0 {
                            let _ = done_tx.send(());
                            break;
                        }
                        to_b.send(v - 1).await.expect("bounce");
                    }
                });
                tokio::time::sleep(Duration::from_millis(10)).await;
                let start = Instant::now();
                to_a.send(2 * n).await.expect("serve");
                done_rx.await.expect("back");
                start.elapsed()
            });
            emit_ping_pong(SYS, n, el);
        }
        Workload::Spawn | Workload::IdleRss => {
            let (el, before, after) = run_on(&rt, async move {
                let started = Countdown::new(n);
                let mut txs = Vec::with_capacity(n as usize);
                let before = rss_bytes();
                let start = Instant::now();
                for _ in 0..n {
                    let (tx, mut rx) = mpsc::channel::<Payload>(CAP);
                    let started = started.clone();
                    tokio::spawn(async move {
                        started.tick();
                        drop(started);
                        while let Some(v) = rx.recv().await {
                            black_box(v);
                        }
                    });
                    txs.push(tx);
                }
                started.wait().await;
                let el = start.elapsed();
                tokio::time::sleep(Duration::from_millis(200)).await;
                let after = rss_bytes();
                drop(txs);
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
                let (tx, mut rx) = mpsc::channel::<Payload>(CAP);
                tokio::spawn(async move {
                    while let Some(v) = rx.recv().await {
                        black_box(v);
                        tokio::time::sleep(SLOW).await;
                    }
                });
                flood_loop(n, |i| tx.try_send(i).is_ok()).await
            });
            emit_flood(SYS, &r);
        }
    }
    std::process::exit(0);
}
