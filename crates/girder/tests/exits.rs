//! Exits: panics, kills, and explicit exit signals (`ctx.exit` / `node.exit`).

mod probe;

use girder::{Down, ExitReason, Flow};
use probe::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_in_a_handler_ends_only_that_process_with_reason_panic() {
    let node = node();
    let (tx, mut rx) = events();
    let bystander = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let linked = spawn_probe(&node, Probe::new(&tx).trapping(), &mut rx).await;
    let watcher = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let victim = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let vp = victim.pid();
    with_ctx(&linked, move |ctx| ctx.link(vp)).await.unwrap();
    let mref = with_ctx(&watcher, move |ctx| ctx.monitor(vp)).await.unwrap();
    let wv = node.watch(vp);

    victim.try_send(Cmd::Panic("index out of bounds".into())).unwrap();
    let crash = ExitReason::Panic("index out of bounds".into());
    assert_eq!(reason(wv).await, crash);

    // terminate ran with the panic reason; the link and the monitor were told.
    let mut evs = Vec::new();
    for _ in 0..3 {
        evs.push(next_ev(&mut rx).await);
    }
    assert!(evs.contains(&(vp, Ev::Terminate(crash.clone()))), "{evs:?}");
    assert!(
        evs.contains(&(linked.pid(), Ev::Exit(vp, crash.clone()))),
        "{evs:?}"
    );
    assert!(
        evs.contains(&(
            watcher.pid(),
            Ev::Down(Down {
                monitor: mref,
                pid: vp,
                reason: crash.clone()
            })
        )),
        "{evs:?}"
    );
    expect_quiet(&mut rx);

    // The node keeps serving.
    for p in [&bystander, &linked, &watcher] {
        ping(p).await.unwrap();
    }
    let fresh = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    ping(&fresh).await.unwrap();
    let s = node.stats();
    assert_eq!(s.panics, 1);
    assert_eq!(s.processes, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_with_a_formatted_message_keeps_the_message() {
    let node = node();
    let (tx, mut rx) = events();
    let p = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let w = node.watch(p.pid());
    p.try_send(Cmd::Run(job(|_| {
        let n = 42;
        panic!("bad value {n}")
    })))
    .unwrap();
    assert_eq!(reason(w).await, ExitReason::Panic("bad value 42".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_in_terminate_does_not_take_the_node_down() {
    struct BadTerminate;
    impl girder::Actor for BadTerminate {
        type Msg = ();
        async fn handle(&mut self, _: (), _: &mut girder::Ctx<Self>) -> Flow {
            Flow::Stop(ExitReason::custom("stop"))
        }
        async fn terminate(&mut self, _: &ExitReason, _: &mut girder::Ctx<Self>) {
            panic!("terminate failed");
        }
    }
    let node = node();
    let p = node.spawn(BadTerminate).unwrap();
    let w = node.watch(p.pid());
    p.try_send(()).unwrap();
    assert_eq!(reason(w).await, ExitReason::custom("stop"));
    assert_eq!(node.stats().processes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_skips_terminate() {
    let node = node();
    let (tx, mut rx) = events();
    let p = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let w = node.watch(p.pid());
    node.kill(p.pid());
    assert_eq!(reason(w).await, ExitReason::Killed);
    expect_quiet(&mut rx);
    assert_eq!(node.stats().exits_killed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_is_untrappable_even_when_trapping_exits() {
    let node = node();
    let (tx, mut rx) = events();
    let p = spawn_probe(&node, Probe::new(&tx).trapping(), &mut rx).await;
    assert!(node.process_info(p.pid()).unwrap().trap_exit);
    let w = node.watch(p.pid());
    node.kill(p.pid());
    assert_eq!(reason(w).await, ExitReason::Killed);
    // No handle_exit, no terminate.
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_reaches_a_process_blocked_in_a_handler() {
    let node = node();
    let (tx, mut rx) = events();
    let p = spawn_probe(&node, Probe::new(&tx).trapping(), &mut rx).await;
    let gate = Gate::new();
    block(&p, &mut rx, &gate).await;
    let w = node.watch(p.pid());
    node.kill(p.pid());
    assert_eq!(reason(w).await, ExitReason::Killed);
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctx_kill_from_another_process_is_untrappable() {
    let node = node();
    let (tx, mut rx) = events();
    let killer = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let target = spawn_probe(&node, Probe::new(&tx).trapping(), &mut rx).await;
    let tp = target.pid();
    let w = node.watch(tp);
    with_ctx(&killer, move |ctx| ctx.kill(tp)).await;
    assert_eq!(reason(w).await, ExitReason::Killed);
    ping(&killer).await.unwrap();
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_exit_to_a_trapping_process_calls_handle_exit() {
    let node = node();
    let (tx, mut rx) = events();
    let sender = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let t = spawn_probe(&node, Probe::new(&tx).trapping(), &mut rx).await;
    let (sp, tp) = (sender.pid(), t.pid());

    with_ctx(&sender, move |ctx| ctx.exit(tp, ExitReason::custom("please"))).await;
    expect_ev(&mut rx, tp, Ev::Exit(sp, ExitReason::custom("please"))).await;
    with_ctx(&sender, move |ctx| ctx.exit(tp, ExitReason::Normal)).await;
    expect_ev(&mut rx, tp, Ev::Exit(sp, ExitReason::Normal)).await;
    // Killed sent as an ordinary reason is trappable; only kill() is not.
    with_ctx(&sender, move |ctx| ctx.exit(tp, ExitReason::Killed)).await;
    expect_ev(&mut rx, tp, Ev::Exit(sp, ExitReason::Killed)).await;

    // From the node: the signal carries a pid that is no process.
    node.exit(tp, ExitReason::Shutdown);
    match next_ev(&mut rx).await {
        (p, Ev::Exit(from, ExitReason::Shutdown)) => {
            assert_eq!(p, tp);
            assert!(!node.is_alive(from));
            assert_ne!(from, sp);
        }
        other => panic!("expected handle_exit(Shutdown), got {other:?}"),
    }
    ping(&t).await.expect("a trapping process lives on");
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_normal_exit_to_a_non_trapping_process_is_ignored() {
    let node = node();
    let (tx, mut rx) = events();
    let sender = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let t = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let tp = t.pid();
    with_ctx(&sender, move |ctx| ctx.exit(tp, ExitReason::Normal)).await;
    node.exit(tp, ExitReason::Normal);
    ping(&t).await.expect("a normal exit signal is ignored");
    assert!(node.is_alive(tp));
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_abnormal_exit_ends_a_non_trapping_process_without_terminate() {
    let node = node();
    let (tx, mut rx) = events();
    let sender = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let a = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let b = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let (ap, bp) = (a.pid(), b.pid());
    let (wa, wb) = (node.watch(ap), node.watch(bp));

    with_ctx(&sender, move |ctx| ctx.exit(ap, ExitReason::custom("go away"))).await;
    assert_eq!(reason(wa).await, ExitReason::custom("go away"));
    node.exit(bp, ExitReason::Shutdown);
    assert_eq!(reason(wb).await, ExitReason::Shutdown);
    ping(&sender)
        .await
        .expect("sending an exit signal does not affect the sender");
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_exit_reaches_a_process_blocked_in_a_handler() {
    let node = node();
    let (tx, mut rx) = events();
    let p = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let gate = Gate::new();
    block(&p, &mut rx, &gate).await;
    let w = node.watch(p.pid());
    node.exit(p.pid(), ExitReason::custom("now"));
    assert_eq!(reason(w).await, ExitReason::custom("now"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_abnormal_exit_propagates_through_the_targets_links() {
    let node = node();
    let (tx, mut rx) = events();
    let a = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let b = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let bp = b.pid();
    with_ctx(&a, move |ctx| ctx.link(bp)).await.unwrap();
    let wb = node.watch(bp);
    node.exit(a.pid(), ExitReason::custom("cascade"));
    assert_eq!(reason(wb).await, ExitReason::custom("cascade"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_to_self_with_normal_ends_a_non_trapping_process() {
    // OTP: exit(self(), normal) terminates a process that does not trap exits.
    let node = node();
    let (tx, mut rx) = events();
    let p = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let w = node.watch(p.pid());
    p.try_send(Cmd::Run(job(|ctx| {
        ctx.exit(ctx.pid(), ExitReason::Normal);
        Flow::Continue
    })))
    .unwrap();
    assert_eq!(reason(w).await, ExitReason::Normal);
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_exit_from_the_parent_ends_a_trapping_child_after_terminate() {
    // gen_server: an exit signal from the parent ends a trapping process, whether it
    // came through the link or was sent explicitly (a supervisor's shutdown).
    let node = node();
    let (tx, mut rx) = events();
    let parent = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let child_probe = Probe::new(&tx).trapping();
    let child = with_ctx(&parent, move |ctx| ctx.spawn(child_probe))
        .await
        .unwrap();
    expect_ev(&mut rx, child.pid(), Ev::Init).await;
    let cp = child.pid();
    let w = node.watch(cp);
    with_ctx(&parent, move |ctx| ctx.exit(cp, ExitReason::Shutdown)).await;
    assert_eq!(reason(w).await, ExitReason::Shutdown);
    expect_ev(&mut rx, cp, Ev::Terminate(ExitReason::Shutdown)).await;
    ping(&parent).await.unwrap();
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_with_an_exit_reason_is_reported_to_links_and_monitors_alike() {
    let node = node();
    let (tx, mut rx) = events();
    let t = spawn_probe(&node, Probe::new(&tx).trapping(), &mut rx).await;
    let p = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let pp = p.pid();
    let mref = with_ctx(&t, move |ctx| {
        ctx.link(pp).unwrap();
        ctx.monitor(pp).unwrap()
    })
    .await;
    stop(&p, ExitReason::MailboxOverflow);
    let mut evs = Vec::new();
    for _ in 0..3 {
        evs.push(next_ev(&mut rx).await);
    }
    let r = ExitReason::MailboxOverflow;
    assert!(evs.contains(&(pp, Ev::Terminate(r.clone()))));
    assert!(evs.contains(&(t.pid(), Ev::Exit(pp, r.clone()))));
    assert!(evs.contains(&(
        t.pid(),
        Ev::Down(Down {
            monitor: mref,
            pid: pp,
            reason: r
        })
    )));
}
