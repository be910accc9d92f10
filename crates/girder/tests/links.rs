//! Links: OTP's exit-propagation rules (see `girder::process`).

mod probe;

use girder::{ExitReason, Flow, SpawnOptions};
use probe::*;

fn boom() -> ExitReason {
    ExitReason::custom("boom")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_is_bidirectional() {
    let node = node();
    let (tx, mut rx) = events();

    // Linked from a's side; b's exit takes a down.
    let a = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let b = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let bp = b.pid();
    with_ctx(&a, move |ctx| ctx.link(bp)).await.unwrap();
    assert_eq!(node.process_info(a.pid()).unwrap().links, 1);
    assert_eq!(
        node.process_info(b.pid()).unwrap().links,
        1,
        "the link exists on both sides"
    );
    let wa = node.watch(a.pid());
    stop(&b, boom());
    assert_eq!(reason(wa).await, boom());
    expect_ev(&mut rx, bp, Ev::Terminate(boom())).await;

    // Linked from c's side; c's exit takes d down.
    let c = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let d = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let dp = d.pid();
    with_ctx(&c, move |ctx| ctx.link(dp)).await.unwrap();
    let wd = node.watch(dp);
    stop(&c, boom());
    assert_eq!(reason(wd).await, boom());
    expect_ev(&mut rx, c.pid(), Ev::Terminate(boom())).await;
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abnormal_exit_kills_non_trapping_linked_process_with_the_same_reason() {
    let node = node();
    let (tx, mut rx) = events();
    let a = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let b = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let c = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let (bp, cp) = (b.pid(), c.pid());
    with_ctx(&a, move |ctx| {
        ctx.link(bp).unwrap();
        ctx.link(cp).unwrap();
    })
    .await;

    let (wb, wc) = (node.watch(bp), node.watch(cp));
    stop(&a, ExitReason::custom("disk on fire"));
    assert_eq!(reason(wb).await, ExitReason::custom("disk on fire"));
    assert_eq!(reason(wc).await, ExitReason::custom("disk on fire"));
    // a stopped through its loop (terminate ran); b and c were killed by the signal,
    // which skips terminate.
    expect_ev(
        &mut rx,
        a.pid(),
        Ev::Terminate(ExitReason::custom("disk on fire")),
    )
    .await;
    expect_quiet(&mut rx);
    assert_eq!(node.stats().processes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_propagates_along_a_chain_of_links() {
    let node = node();
    let (tx, mut rx) = events();
    let procs: Vec<_> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(spawn_probe(&node, Probe::new(&tx), &mut rx).await);
        }
        v
    };
    for w in procs.windows(2) {
        let next = w[1].pid();
        with_ctx(&w[0], move |ctx| ctx.link(next)).await.unwrap();
    }
    let watches: Vec<_> = procs[1..].iter().map(|p| node.watch(p.pid())).collect();
    stop(&procs[0], boom());
    for w in watches {
        assert_eq!(reason(w).await, boom());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_exit_does_not_kill_non_trapping_linked_process() {
    let node = node();
    let (tx, mut rx) = events();
    let a = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let b = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let bp = b.pid();
    with_ctx(&a, move |ctx| ctx.link(bp)).await.unwrap();

    let wa = node.watch(a.pid());
    stop(&a, ExitReason::Normal);
    assert_eq!(reason(wa).await, ExitReason::Normal);
    expect_ev(&mut rx, a.pid(), Ev::Terminate(ExitReason::Normal)).await;

    ping(&b).await.expect("b survives a linked process's normal exit");
    assert!(node.is_alive(b.pid()));
    assert_eq!(
        node.process_info(b.pid()).unwrap().links,
        0,
        "the link is gone with a"
    );
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trapping_process_gets_handle_exit_with_the_reason() {
    let node = node();
    let (tx, mut rx) = events();
    let t = spawn_probe(&node, Probe::new(&tx).trapping(), &mut rx).await;
    let a = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let b = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let (ap, bp) = (a.pid(), b.pid());
    with_ctx(&t, move |ctx| {
        ctx.link(ap).unwrap();
        ctx.link(bp).unwrap();
    })
    .await;

    stop(&a, boom());
    expect_ev(&mut rx, ap, Ev::Terminate(boom())).await;
    expect_ev(&mut rx, t.pid(), Ev::Exit(ap, boom())).await;

    // A normal exit reaches a trapping process too.
    stop(&b, ExitReason::Normal);
    expect_ev(&mut rx, bp, Ev::Terminate(ExitReason::Normal)).await;
    expect_ev(&mut rx, t.pid(), Ev::Exit(bp, ExitReason::Normal)).await;

    ping(&t).await.expect("the trapping process keeps running");
    assert_eq!(node.process_info(t.pid()).unwrap().links, 0);
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlink_withdraws_the_link() {
    let node = node();
    let (tx, mut rx) = events();
    let a = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let b = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let bp = b.pid();
    with_ctx(&a, move |ctx| ctx.link(bp)).await.unwrap();
    with_ctx(&a, move |ctx| ctx.unlink(bp)).await;
    assert_eq!(node.process_info(a.pid()).unwrap().links, 0);
    assert_eq!(
        node.process_info(b.pid()).unwrap().links,
        0,
        "unlink removes both sides"
    );

    let wb = node.watch(bp);
    node.kill(bp);
    assert_eq!(reason(wb).await, ExitReason::Killed);
    ping(&a).await.expect("an unlinked process is not taken down");
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlink_withdraws_an_exit_signal_not_yet_handled() {
    let node = node();
    let (tx, mut rx) = events();
    let t = spawn_probe(&node, Probe::new(&tx).trapping(), &mut rx).await;
    let b = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let bp = b.pid();
    with_ctx(&t, move |ctx| ctx.link(bp)).await.unwrap();

    // t is busy when b dies: the exit signal waits in t's system lane, and t unlinks
    // before it gets to it.
    let gate = Gate::new();
    let unlink = job(move |ctx| {
        ctx.unlink(bp);
        Flow::Continue
    });
    block_then(&t, &mut rx, &gate, Some(unlink)).await;
    let wb = node.watch(bp);
    node.kill(bp);
    assert_eq!(reason(wb).await, ExitReason::Killed);
    eventually("the exit signal is queued", || {
        node.process_info(t.pid()).unwrap().mailbox.signals == 1
    })
    .await;
    gate.open();

    ping(&t).await.unwrap();
    expect_quiet(&mut rx);
    assert_eq!(node.process_info(t.pid()).unwrap().mailbox.signals, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linking_twice_makes_one_link() {
    let node = node();
    let (tx, mut rx) = events();
    let a = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let b = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let bp = b.pid();
    let ap = a.pid();
    with_ctx(&a, move |ctx| ctx.link(bp)).await.unwrap();
    with_ctx(&a, move |ctx| ctx.link(bp)).await.unwrap();
    with_ctx(&b, move |ctx| ctx.link(ap)).await.unwrap();
    assert_eq!(node.process_info(a.pid()).unwrap().links, 1);
    // One unlink removes it, however often it was made (links do not stack in OTP).
    with_ctx(&a, move |ctx| ctx.unlink(bp)).await;
    let wb = node.watch(bp);
    node.kill(bp);
    assert_eq!(reason(wb).await, ExitReason::Killed);
    ping(&a).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_to_a_dead_pid_gives_a_trapping_caller_handle_exit_noproc() {
    let node = node();
    let (tx, mut rx) = events();
    let dead = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let dp = dead.pid();
    let wd = node.watch(dp);
    stop(&dead, ExitReason::Normal);
    assert_eq!(reason(wd).await, ExitReason::Normal);
    expect_ev(&mut rx, dp, Ev::Terminate(ExitReason::Normal)).await;

    let t = spawn_probe(&node, Probe::new(&tx).trapping(), &mut rx).await;
    with_ctx(&t, move |ctx| ctx.link(dp)).await.unwrap();
    expect_ev(&mut rx, t.pid(), Ev::Exit(dp, ExitReason::NoProc)).await;
    ping(&t).await.unwrap();
    assert_eq!(
        node.process_info(t.pid()).unwrap().links,
        0,
        "no link to a dead pid remains"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_to_a_dead_pid_ends_a_non_trapping_caller_with_noproc() {
    let node = node();
    let (tx, mut rx) = events();
    let dead = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let dp = dead.pid();
    let wd = node.watch(dp);
    node.kill(dp);
    assert_eq!(reason(wd).await, ExitReason::Killed);

    let a = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let wa = node.watch(a.pid());
    let linked = with_ctx(&a, move |ctx| ctx.link(dp)).await;
    assert_eq!(linked, Ok(()));
    assert_eq!(reason(wa).await, ExitReason::NoProc);
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_propagates_through_links_as_a_trappable_reason() {
    let node = node();
    let (tx, mut rx) = events();
    let victim = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let t = spawn_probe(&node, Probe::new(&tx).trapping(), &mut rx).await;
    let n = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let vp = victim.pid();
    with_ctx(&t, move |ctx| ctx.link(vp)).await.unwrap();
    with_ctx(&n, move |ctx| ctx.link(vp)).await.unwrap();

    let (wv, wn) = (node.watch(vp), node.watch(n.pid()));
    node.kill(vp);
    assert_eq!(reason(wv).await, ExitReason::Killed);
    // The trapping process gets Killed as a message and lives on ...
    expect_ev(&mut rx, t.pid(), Ev::Exit(vp, ExitReason::Killed)).await;
    ping(&t).await.unwrap();
    // ... the non-trapping one dies with Killed.
    assert_eq!(reason(wn).await, ExitReason::Killed);
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trapping_child_whose_linked_parent_exits_terminates_with_the_parents_reason() {
    let node = node();
    let (tx, mut rx) = events();
    let parent = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let child_probe = Probe::new(&tx).trapping();
    let child = with_ctx(&parent, move |ctx| ctx.spawn_link(child_probe))
        .await
        .unwrap();
    expect_ev(&mut rx, child.pid(), Ev::Init).await;
    assert_eq!(node.process_info(child.pid()).unwrap().parent, Some(parent.pid()));

    let wc = node.watch(child.pid());
    stop(&parent, boom());
    assert_eq!(reason(wc).await, boom());
    // The child ran terminate with the parent's reason, and no handle_exit.
    let mut seen = vec![next_ev(&mut rx).await, next_ev(&mut rx).await];
    seen.sort_by_key(|(p, _)| *p);
    let mut want = vec![
        (parent.pid(), Ev::Terminate(boom())),
        (child.pid(), Ev::Terminate(boom())),
    ];
    want.sort_by_key(|(p, _)| *p);
    assert_eq!(seen, want);
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trapping_child_terminates_even_when_its_linked_parent_exits_normally() {
    let node = node();
    let (tx, mut rx) = events();
    let parent = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let child_probe = Probe::new(&tx).trapping();
    let child = with_ctx(&parent, move |ctx| ctx.spawn_link(child_probe))
        .await
        .unwrap();
    expect_ev(&mut rx, child.pid(), Ev::Init).await;

    let wc = node.watch(child.pid());
    stop(&parent, ExitReason::Normal);
    assert_eq!(reason(wc).await, ExitReason::Normal);
    let mut seen = vec![next_ev(&mut rx).await, next_ev(&mut rx).await];
    seen.sort_by_key(|(p, _)| *p);
    let mut want = vec![
        (parent.pid(), Ev::Terminate(ExitReason::Normal)),
        (child.pid(), Ev::Terminate(ExitReason::Normal)),
    ];
    want.sort_by_key(|(p, _)| *p);
    assert_eq!(seen, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trapping_process_handles_the_exit_of_a_linked_process_that_is_not_its_parent() {
    let node = node();
    let (tx, mut rx) = events();
    // The child traps and is linked to its parent; its own child (a grandchild) is
    // linked to it too. The grandchild's exit is a message, not a termination.
    let parent = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let child_probe = Probe::new(&tx).trapping();
    let child = with_ctx(&parent, move |ctx| ctx.spawn_link(child_probe))
        .await
        .unwrap();
    expect_ev(&mut rx, child.pid(), Ev::Init).await;
    let grandchild_probe = Probe::new(&tx);
    let grandchild = with_ctx(&child, move |ctx| ctx.spawn_link(grandchild_probe))
        .await
        .unwrap();
    expect_ev(&mut rx, grandchild.pid(), Ev::Init).await;

    stop(&grandchild, boom());
    expect_ev(&mut rx, grandchild.pid(), Ev::Terminate(boom())).await;
    expect_ev(&mut rx, child.pid(), Ev::Exit(grandchild.pid(), boom())).await;
    ping(&child).await.unwrap();
    ping(&parent).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_link_links_the_child_to_the_spawning_process() {
    let node = node();
    let (tx, mut rx) = events();
    let parent = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let child_probe = Probe::new(&tx);
    let child = with_ctx(&parent, move |ctx| ctx.spawn_link(child_probe))
        .await
        .unwrap();
    expect_ev(&mut rx, child.pid(), Ev::Init).await;
    assert_eq!(node.process_info(parent.pid()).unwrap().links, 1);
    assert_eq!(node.process_info(child.pid()).unwrap().links, 1);
    assert_eq!(node.process_info(child.pid()).unwrap().parent, Some(parent.pid()));

    // The child's crash takes the (non-trapping) parent down.
    let wp = node.watch(parent.pid());
    child.try_send(Cmd::Panic("child crashed".into())).unwrap();
    let crash = ExitReason::Panic("child crashed".into());
    assert_eq!(reason(wp).await, crash);
    expect_ev(&mut rx, child.pid(), Ev::Terminate(crash)).await;
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_link_child_dies_with_its_non_trapping_parent() {
    let node = node();
    let (tx, mut rx) = events();
    let parent = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let child_probe = Probe::new(&tx);
    let child = with_ctx(&parent, move |ctx| {
        ctx.spawn_with(child_probe, SpawnOptions::new().link())
    })
    .await
    .unwrap();
    expect_ev(&mut rx, child.pid(), Ev::Init).await;
    let wc = node.watch(child.pid());
    node.kill(parent.pid());
    assert_eq!(reason(wc).await, ExitReason::Killed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_spawn_from_a_process_does_not_link() {
    let node = node();
    let (tx, mut rx) = events();
    let parent = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let child_probe = Probe::new(&tx);
    let child = with_ctx(&parent, move |ctx| ctx.spawn(child_probe))
        .await
        .unwrap();
    expect_ev(&mut rx, child.pid(), Ev::Init).await;
    assert_eq!(node.process_info(child.pid()).unwrap().parent, Some(parent.pid()));
    assert_eq!(node.process_info(child.pid()).unwrap().links, 0);
    let wp = node.watch(parent.pid());
    node.kill(parent.pid());
    assert_eq!(reason(wp).await, ExitReason::Killed);
    ping(&child).await.expect("an unlinked child outlives its parent");
}
