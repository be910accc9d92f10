//! Bounded mailboxes: each overflow policy at the bound, byte bounds, the node budget,
//! and the accounting of every message.

mod probe;

use std::mem::size_of;
use std::time::Duration;

use girder::{
    Actor, Addr, CallError, Ctx, ExitReason, Flow, Mailbox, MailboxStats, Node, Overflow, Reply, SendError,
    SpawnOptions, Weight,
};
use probe::{eventually, reason, within, Gate, HANG};
use tokio::sync::{mpsc, oneshot};

/// An actor that logs what it handles and can be held at a gate.
struct Sink {
    log: mpsc::UnboundedSender<u32>,
}

enum M {
    Hold(Gate, oneshot::Sender<()>),
    N(u32),
    Blob(Vec<u8>),
    Call(Reply<u32>),
    /// Sends to its own mailbox until refused; answers (sent, refused with Full).
    FloodSelf(Reply<(u32, bool)>),
}

impl Weight for M {
    fn weight(&self) -> usize {
        size_of::<Self>()
            + match self {
                M::Blob(b) => b.capacity(),
                _ => 0,
            }
    }
}

fn blob_weight(len: usize) -> usize {
    M::Blob(vec![0; len]).weight()
}

impl Actor for Sink {
    type Msg = M;

    async fn handle(&mut self, msg: M, ctx: &mut Ctx<Self>) -> Flow {
        match msg {
            M::Hold(gate, entered) => {
                let _ = entered.send(());
                gate.pass().await;
            }
            M::N(n) => {
                let _ = self.log.send(n);
            }
            M::Blob(b) => {
                let _ = self.log.send(b.len() as u32);
            }
            M::Call(r) => r.send(7),
            M::FloodSelf(r) => {
                let me = ctx.addr();
                let mut sent = 0;
                let mut full = false;
                for i in 0..10_000 {
                    match me.send(M::N(i)).await {
                        Ok(()) => sent += 1,
                        Err(SendError::Full(_)) => {
                            full = true;
                            break;
                        }
                        Err(_) => break,
                    }
                }
                r.send((sent, full));
            }
        }
        Flow::Continue
    }
}

fn sink(node: &Node, mailbox: Mailbox) -> (Addr<Sink>, mpsc::UnboundedReceiver<u32>) {
    let (log, rx) = mpsc::unbounded_channel();
    let addr = node
        .spawn_with(Sink { log }, SpawnOptions::new().mailbox(mailbox))
        .unwrap();
    (addr, rx)
}

/// Holds the sink at `gate` (its mailbox is empty once it is there).
async fn hold(addr: &Addr<Sink>, gate: &Gate) {
    let (tx, rx) = oneshot::channel();
    addr.try_send(M::Hold(gate.clone(), tx))
        .unwrap_or_else(|_| panic!("hold refused"));
    within("sink reaches the gate", rx).await.unwrap();
}

fn stats(node: &Node, addr: &Addr<Sink>) -> MailboxStats {
    node.process_info(addr.pid()).expect("process alive").mailbox
}

async fn expect_log(rx: &mut mpsc::UnboundedReceiver<u32>, want: &[u32]) {
    for &w in want {
        assert_eq!(within("handled message", rx.recv()).await, Some(w));
    }
}

fn n_of(e: SendError<M>) -> u32 {
    match e.into_inner() {
        M::N(n) => n,
        _ => panic!("a different message came back"),
    }
}

// ----- policies at the bound -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_returns_full_with_the_message_at_the_bound() {
    let node = Node::builder().build().unwrap();
    let (s, mut log) = sink(&node, Mailbox::bounded(2).overflow(Overflow::Reject));
    let gate = Gate::new();
    hold(&s, &gate).await;
    s.try_send(M::N(1)).unwrap_or_else(|_| panic!());
    s.try_send(M::N(2)).unwrap_or_else(|_| panic!());
    match s.try_send(M::N(3)) {
        Err(e @ SendError::Full(_)) => assert_eq!(n_of(e), 3, "the refused message comes back"),
        other => panic!("expected Full, got {:?}", other.err()),
    }
    // send() does not wait under Reject.
    match within("send under Reject", s.send(M::N(4))).await {
        Err(e @ SendError::Full(_)) => assert_eq!(n_of(e), 4),
        other => panic!("expected Full, got {:?}", other.err()),
    }
    let m = stats(&node, &s);
    assert_eq!((m.len, m.accepted, m.rejected, m.dropped), (2, 3, 2, 0));
    assert_eq!(m.len_hwm, 2);
    gate.open();
    expect_log(&mut log, &[1, 2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_try_send_is_refused_and_send_waits_until_the_actor_drains() {
    let node = Node::builder().build().unwrap();
    let (s, mut log) = sink(&node, Mailbox::bounded(1).overflow(Overflow::Backpressure));
    let gate = Gate::new();
    hold(&s, &gate).await;
    s.try_send(M::N(1)).unwrap_or_else(|_| panic!());
    match s.try_send(M::N(2)) {
        Err(e @ SendError::Full(_)) => assert_eq!(n_of(e), 2),
        other => panic!("expected Full, got {:?}", other.err()),
    }
    let s2 = s.clone();
    let waiting = tokio::spawn(async move { s2.send(M::N(3)).await.map_err(n_of) });
    eventually("the sender waits for room", || {
        stats(&node, &s).waiting_senders == 1
    })
    .await;
    assert!(!waiting.is_finished());
    // A try_send does not overtake the waiting sender.
    assert!(matches!(s.try_send(M::N(4)), Err(SendError::Full(_))));

    gate.open();
    assert_eq!(within("waiting send", waiting).await.unwrap(), Ok(()));
    expect_log(&mut log, &[1, 3]).await;
    let m = stats(&node, &s);
    assert_eq!((m.accepted, m.rejected, m.waiting_senders), (3, 2, 0));
}

/// A lane of 16 is taken from in batches (the process takes one message ahead with
/// each it takes out), yet the slot freed by the message it takes out wakes a
/// waiting sender at once: a process that then blocks in its handler does not leave
/// the sender asleep beside free room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_sender_gets_the_slot_a_blocked_process_freed() {
    let node = Node::builder().build().unwrap();
    let (s, mut log) = sink(&node, Mailbox::bounded(16).overflow(Overflow::Backpressure));
    let (first, second) = (Gate::new(), Gate::new());
    hold(&s, &first).await;
    let (entered_tx, entered) = oneshot::channel();
    s.try_send(M::Hold(second.clone(), entered_tx))
        .unwrap_or_else(|_| panic!("room for the second hold"));
    for i in 1..=15 {
        s.try_send(M::N(i)).unwrap_or_else(|_| panic!("room for {i}"));
    }
    let s2 = s.clone();
    let waiting = tokio::spawn(async move { s2.send(M::N(100)).await.map_err(n_of) });
    eventually("the sender waits for room", || {
        stats(&node, &s).waiting_senders == 1
    })
    .await;

    // The process takes the second hold out (and message 1 ahead) and blocks in it.
    first.open();
    within("the process reaches the second gate", entered)
        .await
        .unwrap();
    assert_eq!(within("the waiting send", waiting).await.unwrap(), Ok(()));
    let m = stats(&node, &s);
    assert!(m.len_hwm <= 16, "{m:?}");

    second.open();
    let want: Vec<u32> = (1..=15).chain([100]).collect();
    expect_log(&mut log, &want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_timeout_hands_the_message_back_and_counts_the_refusal() {
    let node = Node::builder().build().unwrap();
    let (s, mut log) = sink(&node, Mailbox::bounded(1).overflow(Overflow::Backpressure));
    let gate = Gate::new();
    hold(&s, &gate).await;
    s.try_send(M::N(1)).unwrap_or_else(|_| panic!());
    match s.send_timeout(M::N(2), Duration::from_millis(20)).await {
        Err(e @ SendError::Full(_)) => assert_eq!(n_of(e), 2),
        other => panic!("expected Full with the message, got {:?}", other.err()),
    }
    let m = stats(&node, &s);
    assert_eq!((m.accepted, m.rejected, m.waiting_senders), (2, 1, 0));
    // An error other than a timeout is reported as itself, not as a timeout.
    gate.open();
    expect_log(&mut log, &[1]).await;
    // Watch first: a watch set after the exit reports `NoProc`, as a monitor does.
    let watch = node.watch(s.pid());
    node.kill(s.pid());
    assert_eq!(watch.await, ExitReason::Killed);
    assert!(matches!(
        s.send_timeout(M::N(3), Duration::from_millis(20)).await,
        Err(SendError::Closed(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_delivers_every_message_of_many_waiting_senders() {
    let node = Node::builder().build().unwrap();
    let (s, mut log) = sink(&node, Mailbox::bounded(2).overflow(Overflow::Backpressure));
    let mut senders = Vec::new();
    for t in 0..4u32 {
        let s = s.clone();
        senders.push(tokio::spawn(async move {
            for i in 0..250 {
                s.send(M::N(t * 1000 + i))
                    .await
                    .unwrap_or_else(|_| panic!("send failed"));
            }
        }));
    }
    for h in senders {
        within("sender", h).await.unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..1000 {
        got.push(within("handled", log.recv()).await.unwrap());
    }
    // Per sender, in order; nothing lost or duplicated.
    for t in 0..4u32 {
        let mine: Vec<_> = got.iter().copied().filter(|n| n / 1000 == t).collect();
        assert_eq!(mine, (0..250).map(|i| t * 1000 + i).collect::<Vec<_>>());
    }
    let m = stats(&node, &s);
    assert_eq!((m.accepted, m.rejected, m.dropped), (1000, 0, 0));
    assert!(m.len_hwm <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_sending_to_its_own_full_mailbox_gets_full_at_once() {
    let node = Node::builder().build().unwrap();
    let (s, _log) = sink(&node, Mailbox::bounded(4).overflow(Overflow::Backpressure));
    let (sent, full) = within("self flood", s.call(M::FloodSelf, HANG)).await.unwrap();
    assert_eq!(
        (sent, full),
        (4, true),
        "four fit, the fifth is refused instead of waiting"
    );
    // The process is not stuck: it handles its own messages and answers.
    assert_eq!(s.call(M::Call, HANG).await, Ok(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_newest_counts_drops_and_keeps_the_oldest() {
    let node = Node::builder().build().unwrap();
    let (s, mut log) = sink(&node, Mailbox::bounded(3).overflow(Overflow::DropNewest));
    let gate = Gate::new();
    hold(&s, &gate).await;
    for i in 1..=10 {
        // A drop is not an error for the sender: the receiver chose the policy.
        s.try_send(M::N(i))
            .unwrap_or_else(|_| panic!("DropNewest never refuses"));
    }
    let m = stats(&node, &s);
    assert_eq!((m.len, m.accepted, m.dropped, m.rejected), (3, 4, 7, 0));
    gate.open();
    expect_log(&mut log, &[1, 2, 3]).await;
    assert_eq!(s.call(M::Call, HANG).await, Ok(7));
    assert!(log.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_keeps_the_newest() {
    let node = Node::builder().build().unwrap();
    let (s, mut log) = sink(&node, Mailbox::bounded(3).overflow(Overflow::DropOldest));
    let gate = Gate::new();
    hold(&s, &gate).await;
    for i in 1..=10 {
        s.send(M::N(i))
            .await
            .unwrap_or_else(|_| panic!("DropOldest never refuses"));
    }
    let m = stats(&node, &s);
    assert_eq!((m.len, m.accepted, m.dropped, m.rejected), (3, 11, 7, 0));
    gate.open();
    expect_log(&mut log, &[8, 9, 10]).await;
    assert_eq!(s.call(M::Call, HANG).await, Ok(7));
    assert!(log.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_evicts_by_bytes_too() {
    let node = Node::builder().build().unwrap();
    // Three blobs of equal weight, told apart by their lengths.
    let blobs: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            let mut b = Vec::with_capacity(1000);
            b.resize(997 + i, 0);
            b
        })
        .collect();
    let weights: Vec<usize> = blobs.iter().map(|b| size_of::<M>() + b.capacity()).collect();
    assert!(weights.iter().all(|&w| w == weights[0]));
    let w = weights[0];
    let (s, mut log) = sink(
        &node,
        Mailbox::bounded(100)
            .max_bytes(2 * w)
            .overflow(Overflow::DropOldest),
    );
    let gate = Gate::new();
    hold(&s, &gate).await;
    for b in blobs {
        s.try_send(M::Blob(b)).unwrap_or_else(|_| panic!());
    }
    let m = stats(&node, &s);
    assert_eq!((m.len, m.dropped, m.bytes), (2, 1, 2 * w));
    gate.open();
    expect_log(&mut log, &[998, 999]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_policy_ends_the_process_with_mailbox_overflow() {
    let node = Node::builder().build().unwrap();
    let (s, _log) = sink(&node, Mailbox::bounded(2).overflow(Overflow::Kill));
    let gate = Gate::new();
    hold(&s, &gate).await;
    let w = node.watch(s.pid());
    s.try_send(M::N(1)).unwrap_or_else(|_| panic!());
    s.try_send(M::N(2)).unwrap_or_else(|_| panic!());
    match s.try_send(M::N(3)) {
        Err(e @ SendError::Full(_)) => assert_eq!(n_of(e), 3),
        other => panic!("expected Full, got {:?}", other.err()),
    }
    assert_eq!(reason(w).await, ExitReason::MailboxOverflow);
    assert!(!s.is_alive());
    assert!(matches!(s.try_send(M::N(4)), Err(SendError::Closed(_))));
    let st = node.stats();
    assert_eq!(st.overflow_kills, 1);
    assert_eq!((st.accepted, st.rejected, st.dropped), (3, 1, 2));
    assert_eq!(st.mailbox_bytes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_priority_lane_has_its_own_bound() {
    let node = Node::builder().build().unwrap();
    let (s, mut log) = sink(
        &node,
        Mailbox::bounded(8)
            .priority_capacity(2)
            .overflow(Overflow::Reject),
    );
    let gate = Gate::new();
    hold(&s, &gate).await;
    s.try_send_priority(M::N(1)).unwrap_or_else(|_| panic!());
    s.try_send_priority(M::N(2)).unwrap_or_else(|_| panic!());
    assert!(matches!(s.try_send_priority(M::N(3)), Err(SendError::Full(_))));
    assert!(matches!(
        within("send_priority", s.send_priority(M::N(4))).await,
        Err(SendError::Full(_))
    ));
    // The normal lane still has room.
    s.try_send(M::N(5)).unwrap_or_else(|_| panic!());
    let m = stats(&node, &s);
    assert_eq!((m.priority_len, m.len, m.rejected), (2, 1, 2));
    gate.open();
    expect_log(&mut log, &[1, 2, 5]).await;
}

// ----- bytes -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_heavier_than_max_bytes_is_refused_as_too_large() {
    let node = Node::builder().build().unwrap();
    let (s, _log) = sink(&node, Mailbox::bounded(10).max_bytes(1000));
    match s.try_send(M::Blob(vec![7; 2000])) {
        Err(SendError::TooLarge(M::Blob(b))) => assert_eq!(b.len(), 2000, "the message comes back"),
        other => panic!("expected TooLarge, got {:?}", other.err()),
    }
    // Whatever the policy and the send path: too large is never admitted.
    assert!(matches!(
        within("send", s.send(M::Blob(vec![0; 2000]))).await,
        Err(SendError::TooLarge(_))
    ));
    let m = stats(&node, &s);
    assert_eq!((m.accepted, m.rejected, m.len, m.bytes), (0, 2, 0, 0));
    assert_eq!(s.call(M::Call, HANG).await, Ok(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_bound_holds_with_heap_weighted_messages() {
    let node = Node::builder().build().unwrap();
    let w = blob_weight(3000);
    assert!(w > 3000, "a Vec<u8> message weighs its heap bytes");
    let max = 10_000;
    let (s, mut log) = sink(
        &node,
        Mailbox::bounded(1000).max_bytes(max).overflow(Overflow::Reject),
    );
    let gate = Gate::new();
    hold(&s, &gate).await;
    let fit = max / w;
    for _ in 0..fit {
        s.try_send(M::Blob(vec![0; 3000])).unwrap_or_else(|_| panic!());
    }
    match s.try_send(M::Blob(vec![1; 3000])) {
        Err(SendError::Full(M::Blob(b))) => assert_eq!(b, vec![1; 3000]),
        other => panic!("expected Full, got {:?}", other.err()),
    }
    let m = stats(&node, &s);
    assert_eq!(m.len, fit, "far below the count bound: the bytes refused");
    assert_eq!(m.bytes, fit * w);
    assert!(m.bytes <= max && m.bytes_hwm <= max);
    assert_eq!(node.stats().mailbox_bytes, fit * w);
    // A light message still fits in what is left.
    s.try_send(M::N(1))
        .unwrap_or_else(|_| panic!("a small message fits"));

    gate.open();
    for _ in 0..fit {
        assert_eq!(within("handled", log.recv()).await, Some(3000));
    }
    expect_log(&mut log, &[1]).await;
    eventually("bytes drained", || node.stats().mailbox_bytes == 0).await;
    assert_eq!(stats(&node, &s).bytes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_budget_holds_across_many_processes() {
    let budget = 20_000;
    let node = Node::builder().mailbox_budget_bytes(budget).build().unwrap();
    let gate = Gate::new();
    let mut sinks = Vec::new();
    for _ in 0..8 {
        let (s, log) = sink(&node, Mailbox::default());
        hold(&s, &gate).await;
        sinks.push((s, log));
    }
    let w = blob_weight(500);
    let mut accepted = 0usize;
    let mut refused = 0usize;
    'flood: for round in 0..1000 {
        for (s, _) in &sinks {
            match s.try_send(M::Blob(vec![0; 500])) {
                Ok(()) => accepted += 1,
                Err(SendError::NodeBudget(M::Blob(b))) => {
                    assert_eq!(b.len(), 500, "the message comes back");
                    refused += 1;
                    if refused > 20 {
                        break 'flood;
                    }
                }
                Err(e) => panic!("round {round}: unexpected {e:?}"),
            }
        }
    }
    assert_eq!(accepted, budget / w, "the budget admits exactly what fits");
    let st = node.stats();
    assert!(st.mailbox_bytes <= budget);
    assert_eq!(st.mailbox_bytes, accepted * w);
    assert_eq!(st.budget_refusals, refused as u64);
    assert_eq!(st.rejected, refused as u64);
    for (s, _) in &sinks {
        let m = stats(&node, s);
        assert!(
            m.bytes < m.max_bytes / 100,
            "each mailbox is far below its own bound"
        );
    }
    // Even a mailbox with room refuses what the node budget cannot hold.
    let big = vec![0u8; budget];
    assert!(matches!(
        sinks[0].0.try_send(M::Blob(big)),
        Err(SendError::NodeBudget(_))
    ));

    // Drained, the budget is whole again.
    gate.open();
    eventually("every mailbox drained", || node.stats().mailbox_bytes == 0).await;
    for (s, _) in &sinks {
        s.try_send(M::Blob(vec![0; 500]))
            .unwrap_or_else(|_| panic!("room again"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_budget_makes_drop_policies_drop_and_count() {
    let w = blob_weight(500);
    let node = Node::builder().mailbox_budget_bytes(w).build().unwrap();
    let gate = Gate::new();
    let (a, _la) = sink(&node, Mailbox::bounded(10).overflow(Overflow::Reject));
    let (b, _lb) = sink(&node, Mailbox::bounded(10).overflow(Overflow::DropNewest));
    hold(&a, &gate).await;
    hold(&b, &gate).await;
    a.try_send(M::Blob(vec![0; 500])).unwrap_or_else(|_| panic!());
    // b's own mailbox is empty; the node budget is not.
    b.try_send(M::Blob(vec![0; 500]))
        .unwrap_or_else(|_| panic!("a drop policy drops instead of refusing"));
    let m = stats(&node, &b);
    assert_eq!((m.accepted, m.dropped, m.len), (1, 1, 0));
    assert_eq!(node.stats().budget_refusals, 1);
    // Under Kill, an exhausted node budget refuses without killing: the flood is
    // elsewhere.
    let (k, _lk) = sink(&node, Mailbox::bounded(10).overflow(Overflow::Kill));
    assert!(matches!(
        k.try_send(M::Blob(vec![0; 500])),
        Err(SendError::NodeBudget(_))
    ));
    assert!(k.is_alive() && node.is_alive(k.pid()));
    gate.open();
    eventually("the budget is free again", || node.stats().mailbox_bytes == 0).await;
    assert_eq!(k.call(M::Call, HANG).await, Ok(7));
    assert_eq!(node.stats().overflow_kills, 0);
}

// ----- accounting -----

/// Floods a held sink with calls that expire and plain messages under `policy`, and
/// checks the mailbox's books while messages are queued and after it drained.
async fn accounting_under(policy: Overflow) {
    let node = Node::builder().build().unwrap();
    let (s, mut log) = sink(&node, Mailbox::bounded(4).overflow(policy));
    let gate = Gate::new();
    hold(&s, &gate).await;
    let mut attempts = 1u64; // the hold
    let mut refused = 0u64;

    // Two calls that time out while queued.
    for _ in 0..2 {
        attempts += 1;
        let r = s.call(M::Call, Duration::from_millis(20)).await;
        assert!(
            matches!(r, Err(CallError::Timeout)),
            "{policy:?}: a queued call times out, got {r:?}"
        );
    }
    for i in 0..20 {
        attempts += 1;
        if s.try_send(M::N(i)).is_err() {
            refused += 1;
        }
    }

    let check = |m: &MailboxStats| {
        let queued = (m.len + m.priority_len) as u64;
        match policy {
            // Nothing is ever dropped: every attempt is accepted or refused.
            Overflow::Reject | Overflow::Backpressure => {
                assert_eq!(m.dropped, 0);
                assert_eq!(m.rejected, refused);
                assert_eq!(attempts, m.accepted + m.rejected);
                assert_eq!(m.accepted, m.handled + m.expired + queued);
            }
            // Every drop happens on arrival.
            Overflow::DropNewest => {
                assert_eq!((refused, m.rejected), (0, 0));
                assert_eq!(attempts, m.accepted + m.dropped);
                assert_eq!(m.accepted, m.handled + m.expired + queued);
            }
            // Every drop is an eviction from the queue.
            Overflow::DropOldest => {
                assert_eq!((refused, m.rejected), (0, 0));
                assert_eq!(attempts, m.accepted);
                assert_eq!(m.accepted, m.handled + m.expired + m.dropped + queued);
            }
            _ => unreachable!(),
        }
    };
    let mid = stats(&node, &s);
    assert_eq!(mid.len, 4, "{policy:?}");
    check(&mid);

    gate.open();
    let evicted = |m: &MailboxStats| {
        if policy == Overflow::DropOldest {
            m.dropped
        } else {
            0
        }
    };
    eventually("the sink drained", || {
        let m = stats(&node, &s);
        m.len == 0 && m.accepted == m.handled + m.expired + evicted(&m)
    })
    .await;
    let end = stats(&node, &s);
    check(&end);
    match policy {
        Overflow::DropOldest => {
            assert_eq!(end.expired, 0, "the calls were the oldest: evicted");
            expect_log(&mut log, &[16, 17, 18, 19]).await;
        }
        _ => {
            assert_eq!(end.expired, 2, "{policy:?}: the timed-out calls were not handled");
            expect_log(&mut log, &[0, 1]).await;
        }
    }

    // Once the process is gone, the node's totals carry its books.
    let w = node.watch(s.pid());
    node.kill(s.pid());
    assert_eq!(reason(w).await, ExitReason::Killed);
    let n = node.stats();
    assert_eq!(
        (n.accepted, n.handled, n.rejected, n.dropped, n.expired),
        (end.accepted, end.handled, end.rejected, end.dropped, end.expired),
        "{policy:?}"
    );
    assert_eq!(n.mailbox_bytes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_add_up_under_reject() {
    accounting_under(Overflow::Reject).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_add_up_under_backpressure() {
    accounting_under(Overflow::Backpressure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_add_up_under_drop_newest() {
    accounting_under(Overflow::DropNewest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_add_up_under_drop_oldest() {
    accounting_under(Overflow::DropOldest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_bytes_return_to_zero_after_draining() {
    let node = Node::builder().build().unwrap();
    let (s, mut log) = sink(&node, Mailbox::bounded(64));
    let gate = Gate::new();
    hold(&s, &gate).await;
    for i in 0..50 {
        s.try_send(M::Blob(vec![0; 100 + i])).unwrap_or_else(|_| panic!());
    }
    let queued = node.stats().mailbox_bytes;
    assert_eq!(queued, (0..50).map(|i| blob_weight(100 + i)).sum::<usize>());
    assert_eq!(stats(&node, &s).bytes_hwm, queued);
    gate.open();
    for i in 0..50 {
        assert_eq!(within("handled", log.recv()).await, Some(100 + i));
    }
    eventually("bytes released", || node.stats().mailbox_bytes == 0).await;
    let m = stats(&node, &s);
    assert_eq!((m.bytes, m.len), (0, 0));
    assert_eq!(m.bytes_hwm, queued, "the high-water mark remembers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_messages_of_an_exiting_process_are_counted_as_dropped() {
    let node = Node::builder().build().unwrap();
    let (s, _log) = sink(&node, Mailbox::bounded(16));
    let gate = Gate::new();
    hold(&s, &gate).await;
    for i in 0..5 {
        s.try_send(M::N(i)).unwrap_or_else(|_| panic!());
    }
    s.try_send_priority(M::Blob(vec![0; 1000]))
        .unwrap_or_else(|_| panic!());
    assert!(node.stats().mailbox_bytes > 1000);
    let w = node.watch(s.pid());
    node.kill(s.pid());
    assert_eq!(reason(w).await, ExitReason::Killed);
    let st = node.stats();
    assert_eq!((st.accepted, st.handled, st.dropped), (7, 1, 6));
    assert_eq!(st.mailbox_bytes, 0, "their bytes go back to the node budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_sender_learns_when_the_process_exits() {
    let node = Node::builder().build().unwrap();
    let (s, _log) = sink(&node, Mailbox::bounded(1).overflow(Overflow::Backpressure));
    let gate = Gate::new();
    hold(&s, &gate).await;
    s.try_send(M::N(1)).unwrap_or_else(|_| panic!());
    let s2 = s.clone();
    let waiting = tokio::spawn(async move { s2.send(M::N(2)).await });
    eventually("the sender waits", || stats(&node, &s).waiting_senders == 1).await;
    node.kill(s.pid());
    match within("waiting send", waiting).await.unwrap() {
        Err(e @ SendError::Closed(_)) => assert_eq!(n_of(e), 2, "the message comes back"),
        other => panic!("expected Closed, got {:?}", other.err()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waiting_for_room_gives_up_at_its_timeout() {
    let node = Node::builder().build().unwrap();
    let (s, _log) = sink(&node, Mailbox::bounded(1).overflow(Overflow::Backpressure));
    let gate = Gate::new();
    hold(&s, &gate).await;
    s.try_send(M::N(1)).unwrap_or_else(|_| panic!());
    assert_eq!(
        s.call(M::Call, Duration::from_millis(20)).await,
        Err(CallError::Timeout)
    );
    let m = stats(&node, &s);
    assert_eq!(
        (m.waiting_senders, m.accepted, m.len),
        (0, 2, 1),
        "the request never got in"
    );
    // Under Reject, a full mailbox answers a call at once.
    let (r, _lr) = sink(&node, Mailbox::bounded(1).overflow(Overflow::Reject));
    hold(&r, &gate).await;
    r.try_send(M::N(1)).unwrap_or_else(|_| panic!());
    assert_eq!(within("call", r.call(M::Call, HANG)).await, Err(CallError::Full));
    gate.open();
}
