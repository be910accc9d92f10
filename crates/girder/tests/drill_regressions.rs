//! Regressions for library faults the `girder drill` runs found.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use girder::{Actor, CallError, Ctx, Flow, Mailbox, Node, Overflow, Reply, SpawnOptions, Weight};
use tokio::sync::Semaphore;

/// Records the order it handles messages in; each message waits for a permit first.
struct Gated {
    gate: Arc<Semaphore>,
    seen: Arc<Mutex<Vec<u32>>>,
}

impl Actor for Gated {
    type Msg = u32;

    async fn handle(&mut self, n: u32, _ctx: &mut Ctx<Self>) -> Flow {
        self.gate.acquire().await.expect("gate open").forget();
        self.seen.lock().unwrap().push(n);
        Flow::Continue
    }
}

/// `priority-under-flood`: under `Backpressure`, senders waiting for normal-lane room
/// used to hold priority messages back — `try_send_priority` got `Full` and
/// `send_priority` queued behind them although the priority lane had room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_sends_are_not_held_behind_senders_waiting_for_normal_room() {
    let node = Node::builder().build().unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let addr = node
        .spawn_with(
            Gated {
                gate: gate.clone(),
                seen: seen.clone(),
            },
            SpawnOptions::new().mailbox(Mailbox::bounded(1).overflow(Overflow::Backpressure)),
        )
        .unwrap();
    addr.try_send(0).unwrap(); // taken out, blocked at the gate
    let info = || node.process_info(addr.pid()).unwrap().mailbox;
    while info().handled == 0 {
        tokio::task::yield_now().await;
    }
    addr.try_send(1).unwrap(); // the normal lane is full
    let waiting = tokio::spawn({
        let addr = addr.clone();
        async move { addr.send(2).await.is_ok() }
    });
    while info().waiting_senders == 0 {
        tokio::task::yield_now().await;
    }

    assert!(addr.try_send_priority(100).is_ok(), "priority lane has room");
    let sent = tokio::time::timeout(Duration::from_millis(500), addr.send_priority(101)).await;
    assert!(
        matches!(sent, Ok(Ok(()))),
        "send_priority waited behind the normal line"
    );
    assert!(
        matches!(addr.try_send(3), Err(girder::SendError::Full(3))),
        "normal line still kept"
    );

    gate.add_permits(5);
    assert!(waiting.await.unwrap());
    while seen.lock().unwrap().len() < 5 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(*seen.lock().unwrap(), [0, 100, 101, 1, 2]);
}

struct Slow;

struct Work(Reply<()>);
impl Weight for Work {}

impl Actor for Slow {
    type Msg = Work;

    async fn handle(&mut self, Work(reply): Work, _ctx: &mut Ctx<Self>) -> Flow {
        tokio::time::sleep(Duration::from_millis(1)).await;
        reply.send(());
        Flow::Continue
    }
}

/// `call-storm`: a request dropped as expired (taken out at or past its deadline)
/// closes its reply slot; when that happened just before the caller's own timer fired,
/// the caller used to get `NoReply` instead of `Timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_request_expires_in_the_queue_is_a_timeout() {
    let node = Node::builder().build().unwrap();
    let server = node
        .spawn_with(
            Slow,
            SpawnOptions::new().mailbox(Mailbox::bounded(64).overflow(Overflow::Reject)),
        )
        .unwrap();
    let callers: Vec<_> = (0..50)
        .map(|_| {
            let server = server.clone();
            tokio::spawn(async move {
                let mut no_reply = 0;
                for _ in 0..40 {
                    match server.call(Work, Duration::from_millis(5)).await {
                        Err(CallError::NoReply) => no_reply += 1,
                        Err(CallError::Full) => tokio::time::sleep(Duration::from_millis(1)).await,
                        _ => {}
                    }
                }
                no_reply
            })
        })
        .collect();
    let mut no_reply = 0;
    for c in callers {
        no_reply += c.await.unwrap();
    }
    let expired = node.process_info(server.pid()).unwrap().mailbox.expired;
    assert!(expired > 0, "the storm should make requests expire");
    assert_eq!(
        no_reply, 0,
        "expired requests reported as NoReply ({expired} expired)"
    );
}
