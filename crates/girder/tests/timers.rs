//! Timers: `send_after`, `cancel_timer`, bounded pending timers, timers dying with
//! their process, fired timers going through admission.

mod probe;

use std::sync::Arc;
use std::time::Duration;

use girder::{ExitReason, Flow, Mailbox, Node, Overflow, SpawnOptions, TimerError};
use probe::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_after_delivers_the_message() {
    let node = node();
    let (tx, mut rx) = events();
    let p = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    with_ctx(&p, |ctx| ctx.send_after(Duration::from_millis(10), Cmd::Note(7)))
        .await
        .unwrap();
    expect_ev(&mut rx, p.pid(), Ev::Note(7)).await;
    // The timer's task finishes just after it delivers.
    within("the fired timer is no longer pending", async {
        while with_ctx(&p, |ctx| ctx.pending_timers()).await != 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn timers_fire_in_deadline_order() {
    let node = node();
    let (tx, mut rx) = events();
    let p = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    with_ctx(&p, |ctx| {
        ctx.send_after(Duration::from_millis(300), Cmd::Note(3)).unwrap();
        ctx.send_after(Duration::from_millis(100), Cmd::Note(1)).unwrap();
        ctx.send_after(Duration::from_millis(200), Cmd::Note(2)).unwrap();
        assert_eq!(ctx.pending_timers(), 3);
    })
    .await;
    for n in 1..=3 {
        expect_ev(&mut rx, p.pid(), Ev::Note(n)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn cancel_timer_prevents_delivery_and_returns_true() {
    let node = node();
    let (tx, mut rx) = events();
    let p = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let (cancelled, again) = with_ctx(&p, |ctx| {
        let t = ctx.send_after(Duration::from_millis(100), Cmd::Note(1)).unwrap();
        let first = ctx.cancel_timer(t);
        (first, ctx.cancel_timer(t))
    })
    .await;
    assert!(cancelled, "a pending timer is cancelled");
    assert!(!again, "a cancelled timer cannot be cancelled twice");
    // Well past the deadline (virtual time): nothing arrives.
    tokio::time::sleep(Duration::from_secs(1)).await;
    ping(&p).await.unwrap();
    expect_quiet(&mut rx);
    assert_eq!(with_ctx(&p, |ctx| ctx.pending_timers()).await, 0);
}

#[tokio::test(start_paused = true)]
async fn cancel_timer_after_it_fired_returns_false() {
    let node = node();
    let (tx, mut rx) = events();
    let p = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let t = with_ctx(&p, |ctx| ctx.send_after(Duration::from_millis(10), Cmd::Note(1)))
        .await
        .unwrap();
    expect_ev(&mut rx, p.pid(), Ev::Note(1)).await;
    assert!(!with_ctx(&p, move |ctx| ctx.cancel_timer(t)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_timers_are_bounded_per_process() {
    let node = Node::builder().max_timers_per_process(3).build().unwrap();
    let (tx, mut rx) = events();
    let p = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let hour = Duration::from_secs(3600);
    let (armed, refused) = with_ctx(&p, move |ctx| {
        let armed: Vec<_> = (0..3)
            .map(|i| ctx.send_after(hour, Cmd::Note(i)).unwrap())
            .collect();
        let refused = ctx.send_after(hour, Cmd::Note(99));
        (armed, refused)
    })
    .await;
    assert_eq!(refused.unwrap_err(), TimerError::TooMany { limit: 3 });
    assert_eq!(node.stats().timer_refusals, 1);

    // Cancelling one makes room for one.
    let first = armed[0];
    let (rearmed, refused_again) = with_ctx(&p, move |ctx| {
        assert!(ctx.cancel_timer(first));
        let ok = ctx.send_after(hour, Cmd::Note(3)).is_ok();
        (ok, ctx.send_after(hour, Cmd::Note(4)).is_err())
    })
    .await;
    assert!(rearmed && refused_again);
    assert_eq!(node.stats().timer_refusals, 2);

    // The bound is per process: another process has its own.
    let q = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    assert!(with_ctx(&q, move |ctx| ctx.send_after(hour, Cmd::Note(0)))
        .await
        .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fired_timers_free_their_place_in_the_bound() {
    let node = Node::builder().max_timers_per_process(2).build().unwrap();
    let (tx, mut rx) = events();
    let p = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    for round in 0..5 {
        with_ctx(&p, move |ctx| {
            ctx.send_after(Duration::from_millis(1), Cmd::Note(round))
                .unwrap();
            ctx.send_after(Duration::from_millis(1), Cmd::Note(round))
                .unwrap();
        })
        .await;
        expect_ev(&mut rx, p.pid(), Ev::Note(round)).await;
        expect_ev(&mut rx, p.pid(), Ev::Note(round)).await;
    }
    assert_eq!(node.stats().timer_refusals, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_die_with_their_process() {
    let node = node();
    let (tx, mut rx) = events();
    let p = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    // The pending message holds a token: once the timer is gone, so is the token.
    let token = Arc::new(());
    let t2 = token.clone();
    with_ctx(&p, move |ctx| {
        ctx.send_after(Duration::from_secs(3600), Cmd::Token(t2))
    })
    .await
    .unwrap();
    assert_eq!(Arc::strong_count(&token), 2);
    let w = node.watch(p.pid());
    stop(&p, ExitReason::Normal);
    assert_eq!(reason(w).await, ExitReason::Normal);
    // An hour-long timer would hold the token for an hour: it was cancelled instead.
    eventually("the dead process's timer is dropped", || {
        Arc::strong_count(&token) == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_of_a_killed_process_die_too() {
    let node = node();
    let (tx, mut rx) = events();
    let p = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let token = Arc::new(());
    let t2 = token.clone();
    with_ctx(&p, move |ctx| {
        ctx.send_after(Duration::from_secs(3600), Cmd::Token(t2))
    })
    .await
    .unwrap();
    let w = node.watch(p.pid());
    node.kill(p.pid());
    assert_eq!(reason(w).await, ExitReason::Killed);
    eventually("the killed process's timer is dropped", || {
        Arc::strong_count(&token) == 1
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_timer_due_after_its_process_exited_delivers_nothing() {
    let node = node();
    let (tx, mut rx) = events();
    let p = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let before = node.stats();
    let w = node.watch(p.pid());
    p.try_send(Cmd::Run(job(|ctx| {
        ctx.send_after(Duration::from_millis(50), Cmd::Note(1)).unwrap();
        Flow::Stop(ExitReason::Normal)
    })))
    .unwrap();
    assert_eq!(reason(w).await, ExitReason::Normal);
    expect_ev(&mut rx, p.pid(), Ev::Terminate(ExitReason::Normal)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    expect_quiet(&mut rx);
    let after = node.stats();
    assert_eq!(
        after.accepted,
        before.accepted + 1,
        "only the stop job was ever admitted"
    );
    assert_eq!(after.rejected, 0);
    assert_eq!(after.processes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fired_timers_message_goes_through_admission() {
    // Mailbox of one under Reject: two timers fire while the process is busy; one
    // message is admitted, the other is refused and counted like any refused send.
    let node = node();
    let (tx, mut rx) = events();
    let opts = SpawnOptions::new().mailbox(Mailbox::bounded(1).overflow(Overflow::Reject));
    let p = node.spawn_with(Probe::new(&tx), opts).unwrap();
    expect_ev(&mut rx, p.pid(), Ev::Init).await;
    let gate = Gate::new();
    p.try_send(Cmd::Block {
        before: Some(job(|ctx| {
            ctx.send_after(Duration::from_millis(1), Cmd::Note(1)).unwrap();
            ctx.send_after(Duration::from_millis(1), Cmd::Note(2)).unwrap();
            Flow::Continue
        })),
        gate: gate.clone(),
        after: None,
    })
    .unwrap();
    expect_ev(&mut rx, p.pid(), Ev::Blocked).await;
    eventually("both timers fired", || {
        let m = node.process_info(p.pid()).unwrap().mailbox;
        m.accepted + m.rejected == 3
    })
    .await;
    let m = node.process_info(p.pid()).unwrap().mailbox;
    assert_eq!((m.accepted, m.rejected, m.len), (2, 1, 1));
    gate.open();
    match next_ev(&mut rx).await {
        (pid, Ev::Note(n)) => assert!(pid == p.pid() && (n == 1 || n == 2)),
        other => panic!("expected one timer's note, got {other:?}"),
    }
    ping(&p).await.unwrap();
    expect_quiet(&mut rx);
    assert_eq!(node.stats().rejected, 1);
}
