//! Monitors: one-way `Down` notifications with the exit reason.

mod probe;

use girder::{Down, ExitReason, Flow, MonitorRef, Pid};
use probe::*;

async fn expect_down(rx: &mut Rx, watcher: Pid, monitor: MonitorRef, pid: Pid, reason: ExitReason) {
    expect_ev(rx, watcher, Ev::Down(Down { monitor, pid, reason })).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_carries_the_exit_reason() {
    let node = node();
    let (tx, mut rx) = events();
    let w = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let t = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let tp = t.pid();
    let mref = with_ctx(&w, move |ctx| ctx.monitor(tp)).await.unwrap();
    assert_eq!(node.process_info(w.pid()).unwrap().monitors, 1);

    stop(&t, ExitReason::custom("bye"));
    expect_ev(&mut rx, tp, Ev::Terminate(ExitReason::custom("bye"))).await;
    expect_down(&mut rx, w.pid(), mref, tp, ExitReason::custom("bye")).await;
    // A monitor is not a link: the (non-trapping) watcher lives on.
    ping(&w).await.unwrap();
    assert_eq!(
        node.process_info(w.pid()).unwrap().monitors,
        0,
        "a fired monitor is gone"
    );
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_fires_for_normal_exits_panics_and_kills() {
    let node = node();
    let (tx, mut rx) = events();
    let w = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    enum End {
        Stop,
        Panic,
        Kill,
    }
    let cases = [
        (End::Stop, ExitReason::Normal, true),
        (End::Panic, ExitReason::Panic("oops".into()), true),
        (End::Kill, ExitReason::Killed, false),
    ];
    for (end, want, terminates) in cases {
        let t = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
        let tp = t.pid();
        let mref = with_ctx(&w, move |ctx| ctx.monitor(tp)).await.unwrap();
        match end {
            End::Stop => stop(&t, ExitReason::Normal),
            End::Panic => t.try_send(Cmd::Panic("oops".into())).unwrap_or_else(|_| panic!()),
            End::Kill => node.kill(tp),
        }
        if terminates {
            expect_ev(&mut rx, tp, Ev::Terminate(want.clone())).await;
        }
        expect_down(&mut rx, w.pid(), mref, tp, want).await;
    }
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_of_a_dead_pid_fires_noproc_at_once() {
    let node = node();
    let (tx, mut rx) = events();
    let dead = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let dp = dead.pid();
    let wd = node.watch(dp);
    node.kill(dp);
    assert_eq!(reason(wd).await, ExitReason::Killed);

    let w = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let mref = with_ctx(&w, move |ctx| ctx.monitor(dp)).await.unwrap();
    expect_down(&mut rx, w.pid(), mref, dp, ExitReason::NoProc).await;
    ping(&w).await.unwrap();
    assert_eq!(node.process_info(w.pid()).unwrap().monitors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_monitor_fires_once_with_its_own_reference() {
    let node = node();
    let (tx, mut rx) = events();
    let w = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let t = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let tp = t.pid();
    let (m1, m2) = with_ctx(&w, move |ctx| {
        (ctx.monitor(tp).unwrap(), ctx.monitor(tp).unwrap())
    })
    .await;
    assert_ne!(m1, m2);
    node.kill(tp);
    let mut got = Vec::new();
    for _ in 0..2 {
        match next_ev(&mut rx).await {
            (p, Ev::Down(d)) => {
                assert_eq!((p, d.pid, d.reason), (w.pid(), tp, ExitReason::Killed));
                got.push(d.monitor);
            }
            other => panic!("expected Down, got {other:?}"),
        }
    }
    got.sort();
    let mut want = vec![m1, m2];
    want.sort();
    assert_eq!(got, want);
    ping(&w).await.unwrap();
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demonitor_before_the_exit_means_no_down() {
    let node = node();
    let (tx, mut rx) = events();
    let w = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let t = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let tp = t.pid();
    let mref = with_ctx(&w, move |ctx| ctx.monitor(tp)).await.unwrap();
    assert!(with_ctx(&w, move |ctx| ctx.demonitor(mref)).await);
    assert!(
        !with_ctx(&w, move |ctx| ctx.demonitor(mref)).await,
        "a second demonitor finds nothing"
    );
    let wt = node.watch(tp);
    node.kill(tp);
    assert_eq!(reason(wt).await, ExitReason::Killed);
    ping(&w).await.unwrap();
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demonitor_withdraws_a_pending_down() {
    let node = node();
    let (tx, mut rx) = events();
    let w = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let t = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let tp = t.pid();
    let mref = with_ctx(&w, move |ctx| ctx.monitor(tp)).await.unwrap();

    // The watcher is busy when the target dies; it demonitors before it gets to the
    // Down waiting in its system lane.
    let (dtx, drx) = tokio::sync::oneshot::channel();
    let gate = Gate::new();
    let demonitor = job(move |ctx| {
        let _ = dtx.send(ctx.demonitor(mref));
        Flow::Continue
    });
    block_then(&w, &mut rx, &gate, Some(demonitor)).await;
    let wt = node.watch(tp);
    node.kill(tp);
    assert_eq!(reason(wt).await, ExitReason::Killed);
    // (The watch and the Down are told in no particular order.)
    eventually("the Down is queued", || {
        node.process_info(w.pid()).unwrap().mailbox.signals == 1
    })
    .await;
    gate.open();
    assert!(
        within("demonitor", drx).await.unwrap(),
        "the monitor was still active: its Down had not been handled"
    );
    ping(&w).await.unwrap();
    expect_quiet(&mut rx);
    assert_eq!(node.process_info(w.pid()).unwrap().mailbox.signals, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demonitor_after_the_down_was_handled_returns_false() {
    let node = node();
    let (tx, mut rx) = events();
    let w = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let t = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let tp = t.pid();
    let mref = with_ctx(&w, move |ctx| ctx.monitor(tp)).await.unwrap();
    node.kill(tp);
    expect_down(&mut rx, w.pid(), mref, tp, ExitReason::Killed).await;
    assert!(!with_ctx(&w, move |ctx| ctx.demonitor(mref)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitors_are_one_way() {
    let node = node();
    let (tx, mut rx) = events();
    let w = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let t = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let tp = t.pid();
    with_ctx(&w, move |ctx| ctx.monitor(tp)).await.unwrap();
    assert_eq!(node.process_info(tp).unwrap().links, 0);

    // The watcher's death does nothing to the monitored process ...
    let ww = node.watch(w.pid());
    stop(&w, ExitReason::custom("watcher crashed"));
    assert_eq!(reason(ww).await, ExitReason::custom("watcher crashed"));
    expect_ev(
        &mut rx,
        w.pid(),
        Ev::Terminate(ExitReason::custom("watcher crashed")),
    )
    .await;
    ping(&t).await.expect("the monitored process is unaffected");

    // ... and the monitor it held is gone with it: a later exit tells no one.
    let wt = node.watch(tp);
    node.kill(tp);
    assert_eq!(reason(wt).await, ExitReason::Killed);
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitored_processs_abnormal_exit_does_not_kill_the_watcher() {
    let node = node();
    let (tx, mut rx) = events();
    let w = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let t = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let tp = t.pid();
    let mref = with_ctx(&w, move |ctx| ctx.monitor(tp)).await.unwrap();
    t.try_send(Cmd::Panic("boom".into())).unwrap();
    expect_ev(&mut rx, tp, Ev::Terminate(ExitReason::Panic("boom".into()))).await;
    expect_down(&mut rx, w.pid(), mref, tp, ExitReason::Panic("boom".into())).await;
    ping(&w).await.expect("a Down is a message, not an exit signal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_is_handled_before_queued_messages() {
    let node = node();
    let (tx, mut rx) = events();
    let w = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let t = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let tp = t.pid();
    let mref = with_ctx(&w, move |ctx| ctx.monitor(tp)).await.unwrap();
    let gate = Gate::new();
    block(&w, &mut rx, &gate).await;
    w.try_send(Cmd::Note(1)).unwrap();
    w.try_send_priority(Cmd::Note(2)).unwrap();
    node.kill(tp);
    eventually("the Down is queued", || {
        node.process_info(w.pid()).unwrap().mailbox.signals == 1
    })
    .await;
    gate.open();
    expect_down(&mut rx, w.pid(), mref, tp, ExitReason::Killed).await;
    expect_ev(&mut rx, w.pid(), Ev::Note(2)).await;
    expect_ev(&mut rx, w.pid(), Ev::Note(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_watch_resolves_with_the_exit_reason() {
    let node = node();
    let (tx, mut rx) = events();
    let t = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let (w1, w2) = (node.watch(t.pid()), node.watch(t.pid()));
    stop(&t, ExitReason::custom("finished"));
    assert_eq!(reason(w1).await, ExitReason::custom("finished"));
    assert_eq!(reason(w2).await, ExitReason::custom("finished"));
    // Too late to watch: NoProc at once.
    assert_eq!(within("watch", node.watch(t.pid())).await, ExitReason::NoProc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_node_watch_leaves_the_process_alone() {
    let node = node();
    let (tx, mut rx) = events();
    let t = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    drop(node.watch(t.pid()));
    ping(&t).await.unwrap();
    let w = node.watch(t.pid());
    node.kill(t.pid());
    assert_eq!(reason(w).await, ExitReason::Killed);
}
