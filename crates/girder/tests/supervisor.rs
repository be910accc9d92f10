//! Supervisors follow OTP's documented rules (Erlang's `supervisor`, Elixir's
//! `Supervisor`): start order, reverse stop order, strategy × restart type × how the
//! child ended, restart intensity and escalation, backoff, shutdown specs, and the
//! child-management calls.

mod suptest;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use girder::supervisor::{
    Backoff, ChildKind, ChildSpec, Restart, Shutdown, Strategy, Supervisor, SupervisorError, SupervisorRef,
    SupervisorSpec,
};
use girder::{ExitReason, Node, Pid, SpawnError, SpawnOptions};
use suptest::*;

/// A handle on the supervisor child `id` of `parent`.
async fn child_sup(node: &Node, parent: &SupervisorRef, id: &str) -> SupervisorRef {
    let children = parent.which_children().await.unwrap();
    let pid = pid_of(&children, id).expect("the child supervisor runs");
    SupervisorRef::new(node.lookup::<Supervisor>(pid).expect("a live supervisor"))
}

// ----- start and stop order -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_start_in_order_and_stop_in_reverse_order() {
    let node = node();
    let log = Log::new();
    let names = ["a", "b", "c"];
    let mut inner = SupervisorSpec::new(Strategy::OneForOne);
    for id in names {
        // Each child looks for every sibling by name: only the earlier ones run.
        let others: Vec<&str> = names.into_iter().filter(|&n| n != id).collect();
        let w = Worker::new(id, &log).trapping().looking_for(&others);
        inner = inner.child(w.spec().name(id));
    }
    let top = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne).child(ChildSpec::supervisor("inner", inner)),
    )
    .await
    .unwrap();
    assert_eq!(
        log.snapshot(),
        ["init:a", "saw:b:a", "init:b", "saw:c:a", "saw:c:b", "init:c"],
        "each child's init ran after the earlier siblings had started, and before the later ones"
    );
    let inner_ref = child_sup(&node, &top, "inner").await;
    let kids = inner_ref.which_children().await.unwrap();
    let ids: Vec<&str> = kids.iter().map(|c| &*c.id).collect();
    assert_eq!(ids, names, "which_children lists children in start order");

    // Stopping the subtree stops its children last-started first; they trap exits, so
    // each runs terminate(shutdown).
    log.clear();
    top.terminate_child("inner").await.unwrap();
    assert_eq!(
        log.snapshot(),
        [
            "terminate:c:shutdown",
            "terminate:b:shutdown",
            "terminate:a:shutdown"
        ]
    );
    for c in kids {
        assert!(!node.is_alive(c.pid.unwrap()));
    }
    // Everything but the top supervisor is gone.
    eventually("subtree gone", || node.stats().processes == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_whose_parent_dies_stops_its_children_in_reverse_order() {
    let node = node();
    let log = Log::new();
    let spec = SupervisorSpec::new(Strategy::OneForAll)
        .child(Worker::new("a", &log).trapping().spec())
        .child(Worker::new("b", &log).trapping().spec())
        .child(Worker::new("c", &log).spec());
    let top = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne).child(ChildSpec::supervisor("inner", spec)),
    )
    .await
    .unwrap();
    // The parent supervisor is killed: the inner supervisor receives the exit signal
    // from its parent and, as a gen_server, stops with that reason; its terminate
    // stops its children (exit signal `shutdown`) in reverse order.
    let inner = child_sup(&node, &top, "inner").await;
    let w = node.watch(inner.pid());
    log.clear();
    node.kill(top.pid());
    assert_eq!(within("inner exit", w).await, ExitReason::Killed);
    assert_eq!(
        log.snapshot(),
        ["terminate:b:shutdown", "terminate:a:shutdown"],
        "c does not trap exits (no terminate); b then a run terminate"
    );
    all_gone(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_shutdown_stops_a_top_level_supervisor_tree_in_reverse_order() {
    let node = node();
    let log = Log::new();
    let inner = SupervisorSpec::new(Strategy::OneForOne)
        .child(Worker::new("i1", &log).trapping().spec())
        .child(Worker::new("i2", &log).trapping().spec());
    Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne)
            .child(Worker::new("a", &log).trapping().spec())
            .child(ChildSpec::supervisor("inner", inner))
            .child(Worker::new("c", &log).trapping().spec()),
    )
    .await
    .unwrap();
    log.clear();
    let report = within("shutdown", node.shutdown()).await;
    assert_eq!((report.killed, report.remaining), (0, 0));
    assert_eq!(
        log.snapshot(),
        [
            "terminate:c:shutdown",
            "terminate:i2:shutdown",
            "terminate:i1:shutdown",
            "terminate:a:shutdown"
        ],
        "last started first, each subtree stopped by its own supervisor"
    );
    assert_eq!(node.stats().restarts, 0, "nothing restarted during shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_a_top_level_supervisor_which_ignores_exit_signals_from_strangers() {
    let node = node();
    let log = Log::new();
    let sup = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne)
            .child(Worker::new("a", &log).trapping().spec())
            .child(Worker::new("b", &log).trapping().spec()),
    )
    .await
    .unwrap();
    log.clear();
    // As in OTP, an exit signal from a process that is not its parent is ignored by
    // a supervisor (it traps exits): the tree keeps running.
    node.exit(sup.pid(), ExitReason::Shutdown);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        node.is_alive(sup.pid()),
        "exit/2 from a stranger does not stop a supervisor"
    );
    let watch = node.watch(sup.pid());
    node.stop(sup.pid(), ExitReason::Shutdown);
    let reason = within("stop", watch).await;
    assert_eq!(reason, ExitReason::Shutdown);
    assert_eq!(
        log.snapshot(),
        ["terminate:b:shutdown", "terminate:a:shutdown"],
        "gen_server:stop on a supervisor stops its children last started first"
    );
    all_gone(&node).await;
}

// ----- strategy × restart type × how the child ended -----

/// What OTP predicts for the children `a` (permanent), `b` (the subject), `c`
/// (transient), `d` (temporary) after `b` ends with `end`: per child id, `None` if
/// removed, `Some(Kept)`, `Some(Restarted)` or `Some(Stopped)` (spec kept, not running).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Kept,
    Restarted,
    Stopped,
}

fn predict(strategy: Strategy, restart: Restart, end: &End) -> [(&'static str, Option<Fate>); 4] {
    let abnormal = !matches!(end, End::Normal | End::Shutdown);
    let restarts = match restart {
        Restart::Permanent => true,
        Restart::Transient => abnormal,
        Restart::Temporary => false,
    };
    use Fate::*;
    if !restarts {
        let b = if restart == Restart::Temporary {
            None
        } else {
            Some(Stopped)
        };
        return [("a", Some(Kept)), ("b", b), ("c", Some(Kept)), ("d", Some(Kept))];
    }
    match strategy {
        Strategy::OneForOne => [
            ("a", Some(Kept)),
            ("b", Some(Restarted)),
            ("c", Some(Kept)),
            ("d", Some(Kept)),
        ],
        // Temporary children stopped for a sibling are not restarted, and forgotten.
        Strategy::OneForAll => [
            ("a", Some(Restarted)),
            ("b", Some(Restarted)),
            ("c", Some(Restarted)),
            ("d", None),
        ],
        Strategy::RestForOne => [
            ("a", Some(Kept)),
            ("b", Some(Restarted)),
            ("c", Some(Restarted)),
            ("d", None),
        ],
    }
}

async fn strategy_matrix(strategy: Strategy) {
    let node = node();
    let log = Log::new();
    for restart in [Restart::Permanent, Restart::Transient, Restart::Temporary] {
        for end in End::ALL {
            let case = format!("{strategy:?} × {restart:?} × {end:?}");
            let spec = SupervisorSpec::new(strategy)
                .intensity(100, Duration::from_secs(60))
                .child(Worker::new("a", &log).spec().restart(Restart::Permanent))
                .child(Worker::new("b", &log).spec().restart(restart))
                .child(Worker::new("c", &log).spec().restart(Restart::Transient))
                .child(Worker::new("d", &log).spec().restart(Restart::Temporary));
            let sup = Supervisor::start(&node, spec).await.unwrap();
            let before = sup.which_children().await.unwrap();
            let old = |id: &str| pid_of(&before, id).unwrap();
            let restarts_before = node.stats().restarts;

            let reason = end_child(&node, old("b"), &end).await;
            assert_eq!(reason, end.reason(), "{case}: exit reason");

            let expected = predict(strategy, restart, &end);
            let matches = |children: &[girder::supervisor::ChildInfo]| {
                let present: Vec<&str> = children.iter().map(|c| &*c.id).collect();
                let want: Vec<&str> = expected
                    .iter()
                    .filter(|(_, f)| f.is_some())
                    .map(|(id, _)| *id)
                    .collect();
                present == want
                    && expected.iter().all(|(id, fate)| {
                        let Some(fate) = fate else { return true };
                        let now = children.iter().find(|c| &*c.id == *id).unwrap().pid;
                        match fate {
                            Fate::Kept => now == Some(old(id)),
                            Fate::Restarted => now.is_some_and(|p| p != old(id)),
                            Fate::Stopped => now.is_none(),
                        }
                    })
            };
            settle(&node, &sup, &case, matches).await;
            let restarted = expected.iter().any(|(_, f)| *f == Some(Fate::Restarted));
            assert_eq!(
                node.stats().restarts - restarts_before,
                u64::from(restarted),
                "{case}: one restart counted per restart event"
            );
            // Children the supervisor stopped for a sibling are really gone.
            for (id, fate) in expected {
                if fate != Some(Fate::Kept) {
                    assert!(!node.is_alive(old(id)), "{case}: old {id} still alive");
                }
            }
            let w = node.watch(sup.pid());
            node.kill(sup.pid());
            within("supervisor exit", w).await;
        }
    }
    all_gone(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_for_one_by_restart_type_and_exit() {
    strategy_matrix(Strategy::OneForOne).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_for_all_by_restart_type_and_exit() {
    strategy_matrix(Strategy::OneForAll).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_for_one_by_restart_type_and_exit() {
    strategy_matrix(Strategy::RestForOne).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_for_all_stops_the_others_in_reverse_order_and_restarts_in_start_order() {
    let node = node();
    let log = Log::new();
    let spec = SupervisorSpec::new(Strategy::OneForAll)
        .child(Worker::new("a", &log).trapping().spec())
        .child(Worker::new("b", &log).trapping().spec())
        .child(Worker::new("c", &log).trapping().spec())
        .child(Worker::new("d", &log).trapping().spec());
    let sup = Supervisor::start(&node, spec).await.unwrap();
    let before = sup.which_children().await.unwrap();
    log.clear();
    end_child(&node, pid_of(&before, "b").unwrap(), &End::Custom).await;
    settle(&node, &sup, "all restarted", |c| {
        c.iter()
            .zip(&before)
            .all(|(n, o)| n.pid.is_some() && n.pid != o.pid)
    })
    .await;
    assert_eq!(
        log.snapshot(),
        [
            "terminate:b:boom",
            "terminate:d:shutdown",
            "terminate:c:shutdown",
            "terminate:a:shutdown",
            "init:a",
            "init:b",
            "init:c",
            "init:d"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_for_one_stops_the_later_children_in_reverse_order() {
    let node = node();
    let log = Log::new();
    let spec = SupervisorSpec::new(Strategy::RestForOne)
        .child(Worker::new("a", &log).trapping().spec())
        .child(Worker::new("b", &log).trapping().spec())
        .child(Worker::new("c", &log).trapping().spec())
        .child(Worker::new("d", &log).trapping().spec());
    let sup = Supervisor::start(&node, spec).await.unwrap();
    let before = sup.which_children().await.unwrap();
    log.clear();
    end_child(&node, pid_of(&before, "b").unwrap(), &End::Panic).await;
    settle(&node, &sup, "b, c, d restarted", |c| {
        c[0].pid == before[0].pid
            && c[1..]
                .iter()
                .zip(&before[1..])
                .all(|(n, o)| n.pid.is_some() && n.pid != o.pid)
    })
    .await;
    assert_eq!(
        log.snapshot(),
        [
            "terminate:b:panic: worker panicked on request",
            "terminate:d:shutdown",
            "terminate:c:shutdown",
            "init:b",
            "init:c",
            "init:d"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_child_is_registered_again_under_its_name() {
    let node = node();
    let log = Log::new();
    let sup = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne).child(Worker::new("a", &log).spec().name("the-a")),
    )
    .await
    .unwrap();
    let old = node.whereis("the-a").unwrap();
    end_child(&node, old, &End::Panic).await;
    let now = settle(&node, &sup, "restart", |c| c[0].pid.is_some_and(|p| p != old)).await;
    assert_eq!(node.whereis("the-a"), now[0].pid);
}

// ----- restart intensity -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceeding_intensity_escalates_to_the_parent_which_restarts_the_subtree() {
    let node = node();
    let log = Log::new();
    let inner = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(2, Duration::from_secs(60))
        .child(Worker::new("w", &log).spec())
        .child(Worker::new("x", &log).trapping().spec());
    let top = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne).child(ChildSpec::supervisor("inner", inner)),
    )
    .await
    .unwrap();
    let s0 = node.stats();
    let first = child_sup(&node, &top, "inner").await;
    let inner_pid = first.pid();
    let inner_watch = node.watch(inner_pid);
    let x0 = pid_of(&first.which_children().await.unwrap(), "x").unwrap();

    // Two crashes within the period: restarted.
    for k in 1..=2u64 {
        let w = pid_of(&first.which_children().await.unwrap(), "w").unwrap();
        end_child(&node, w, &End::Panic).await;
        settle(&node, &first, "w restarted", |c| {
            pid_of(c, "w").is_some_and(|p| p != w)
        })
        .await;
        assert_eq!(node.stats().restarts - s0.restarts, k);
        assert_eq!(node.stats().escalations, s0.escalations);
    }
    // The third is one too many: the inner supervisor stops its other children and
    // exits with Shutdown.
    log.clear();
    let w = pid_of(&first.which_children().await.unwrap(), "w").unwrap();
    end_child(&node, w, &End::Panic).await;
    assert_eq!(within("inner escalates", inner_watch).await, ExitReason::Shutdown);
    assert!(!node.is_alive(x0));
    assert_eq!(
        log.with_prefix("terminate:"),
        [
            "terminate:w:panic: worker panicked on request",
            "terminate:x:shutdown"
        ],
        "a panicking handler runs terminate; then x is stopped"
    );

    // The parent sees a permanent child exit and restarts the whole subtree.
    let now = settle(&node, &top, "inner restarted", |c| {
        pid_of(c, "inner").is_some_and(|p| p != inner_pid)
    })
    .await;
    let second = child_sup(&node, &top, "inner").await;
    let kids = second.which_children().await.unwrap();
    assert!(kids.iter().all(|c| c.pid.is_some_and(|p| node.is_alive(p))));
    assert_ne!(pid_of(&kids, "x"), Some(x0));
    let s = node.stats();
    assert_eq!(s.escalations - s0.escalations, 1);
    assert_eq!(
        s.restarts - s0.restarts,
        3,
        "two inner restarts, one restart of the subtree"
    );
    assert!(node.is_alive(top.pid()));
    assert_eq!(now.len(), 1);
    // The restarted subtree has a fresh restart history.
    let w = pid_of(&kids, "w").unwrap();
    end_child(&node, w, &End::Panic).await;
    settle(&node, &second, "w restarted in the new subtree", |c| {
        pid_of(c, "w").is_some_and(|p| p != w)
    })
    .await;
    assert_eq!(node.stats().escalations - s0.escalations, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_intensity_escalates_on_the_first_restart_and_transient_parent_does_not_restart() {
    let node = node();
    let log = Log::new();
    let inner = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(0, Duration::from_secs(60))
        .child(Worker::new("w", &log).spec());
    // A transient supervisor child that exits with Shutdown exited cleanly: as OTP,
    // its parent keeps the spec and does not restart it.
    let top = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne)
            .child(ChildSpec::supervisor("inner", inner).restart(Restart::Transient)),
    )
    .await
    .unwrap();
    let s0 = node.stats();
    let inner_ref = child_sup(&node, &top, "inner").await;
    let w = pid_of(&inner_ref.which_children().await.unwrap(), "w").unwrap();
    let iw = node.watch(inner_ref.pid());
    end_child(&node, w, &End::Custom).await;
    assert_eq!(within("inner escalates", iw).await, ExitReason::Shutdown);
    settle(&node, &top, "inner stopped, spec kept", |c| {
        c.len() == 1 && c[0].pid.is_none()
    })
    .await;
    let s = node.stats();
    assert_eq!(s.escalations - s0.escalations, 1);
    assert_eq!(s.restarts, s0.restarts);
    eventually("only the top supervisor is left", || node.stats().processes == 1).await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn restarts_outside_the_period_do_not_accumulate() {
    let node = node();
    let log = Log::new();
    let sup = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne)
            .intensity(1, Duration::from_secs(10))
            .child(Worker::new("w", &log).spec()),
    )
    .await
    .unwrap();
    let sup_watch = node.watch(sup.pid());
    // One restart every 11 s (virtual time): never two in a 10 s window.
    for _ in 0..5 {
        let w = pid_of(&sup.which_children().await.unwrap(), "w").unwrap();
        end_child(&node, w, &End::Panic).await;
        settle(&node, &sup, "restart", |c| pid_of(c, "w").is_some_and(|p| p != w)).await;
        tokio::time::sleep(Duration::from_secs(11)).await;
    }
    assert!(node.is_alive(sup.pid()));
    assert_eq!(node.stats().restarts, 5);
    assert_eq!(node.stats().escalations, 0);
    // Two within the window: escalation.
    let w = pid_of(&sup.which_children().await.unwrap(), "w").unwrap();
    end_child(&node, w, &End::Panic).await;
    let w = settle(&node, &sup, "restart", |c| pid_of(c, "w").is_some_and(|p| p != w)).await;
    tokio::time::sleep(Duration::from_secs(9)).await;
    end_child(&node, pid_of(&w, "w").unwrap(), &End::Panic).await;
    assert_eq!(within("escalation", sup_watch).await, ExitReason::Shutdown);
    assert_eq!(node.stats().escalations, 1);
    all_gone(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_that_fails_to_start_counts_against_intensity_until_escalation() {
    let node = node();
    let log = Log::new();
    let starts = Arc::new(AtomicUsize::new(0));
    let s2 = starts.clone();
    // Starts once, then every restart's init fails.
    let w = Worker::new("w", &log).failing_init(move || s2.fetch_add(1, Ordering::SeqCst) > 0);
    let sup = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne)
            .intensity(3, Duration::from_secs(60))
            .child(w.spec()),
    )
    .await
    .unwrap();
    let sw = node.watch(sup.pid());
    let w = pid_of(&sup.which_children().await.unwrap(), "w").unwrap();
    end_child(&node, w, &End::Panic).await;
    assert_eq!(within("escalation", sw).await, ExitReason::Shutdown);
    // The crash and two failed restarts were within intensity (3); the third failure
    // exceeded it.
    assert_eq!(log.with_prefix("init-failed:").len(), 3);
    assert_eq!(starts.load(Ordering::SeqCst), 4);
    assert_eq!(node.stats().escalations, 1);
    all_gone(&node).await;
}

// ----- backoff -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_delays_each_restart_of_a_crash_loop() {
    let node = node();
    let log = Log::new();
    let backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_millis(400));
    let sup = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne)
            .intensity(100, Duration::from_secs(60))
            .backoff(backoff)
            .child(Worker::new("w", &log).spec()),
    )
    .await
    .unwrap();
    for streak in 0..3u32 {
        let w = pid_of(&sup.which_children().await.unwrap(), "w").unwrap();
        let crashed = std::time::Instant::now();
        end_child(&node, w, &End::Panic).await;
        let delay = backoff.delay(streak);
        // While the restart waits, the supervisor still answers: the child is down.
        let seen = settle(&node, &sup, "exit handled", |c| pid_of(c, "w") != Some(w)).await;
        if crashed.elapsed() < delay {
            assert_eq!(pid_of(&seen, "w"), None, "restart {streak} came before its delay");
        }
        settle(&node, &sup, "delayed restart", |c| {
            pid_of(c, "w").is_some_and(|p| p != w)
        })
        .await;
        let waited = crashed.elapsed();
        assert!(
            waited >= delay,
            "restart {streak} came after {waited:?}, before its backoff of {delay:?}"
        );
    }
    assert_eq!(node.stats().restarts, 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn backoff_doubles_caps_and_resets_after_quiet_time() {
    let node = node();
    let log = Log::new();
    let backoff = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(4),
        reset_after: Duration::from_secs(30),
    };
    let sup = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne)
            .intensity(100, Duration::from_secs(600))
            .backoff(backoff)
            .child(Worker::new("w", &log).spec()),
    )
    .await
    .unwrap();
    let mut delays = Vec::new();
    let mut crash = async |quiet: Duration| {
        tokio::time::sleep(quiet).await;
        let w = pid_of(&sup.which_children().await.unwrap(), "w").unwrap();
        end_child(&node, w, &End::Panic).await;
        let t0 = tokio::time::Instant::now();
        settle(&node, &sup, "restart", |c| pid_of(c, "w").is_some_and(|p| p != w)).await;
        delays.push(t0.elapsed());
    };
    for _ in 0..4 {
        crash(Duration::ZERO).await;
    }
    // After a long quiet spell the streak starts again from `initial`.
    crash(Duration::from_secs(60)).await;
    let secs = |s: u64| Duration::from_secs(s);
    let expected = [secs(1), secs(2), secs(4), secs(4), secs(1)];
    for (got, want) in delays.iter().zip(expected) {
        // Paused time: the restart fires when its timer does (plus polling ticks).
        assert!(
            *got >= want && *got < want + Duration::from_millis(500),
            "delays {delays:?}, expected about {expected:?}"
        );
    }
}

// ----- shutdown specs -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_lets_a_trapping_child_terminate() {
    let node = node();
    let log = Log::new();
    let sup = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne).child(
            Worker::new("w", &log)
                .trapping()
                .spec()
                .shutdown(Shutdown::Timeout(Duration::from_secs(5))),
        ),
    )
    .await
    .unwrap();
    let w = pid_of(&sup.which_children().await.unwrap(), "w").unwrap();
    let watch = node.watch(w);
    sup.terminate_child("w").await.unwrap();
    assert_eq!(within("exit", watch).await, ExitReason::Shutdown);
    assert_eq!(log.with_prefix("terminate:"), ["terminate:w:shutdown"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_kills_a_child_whose_terminate_hangs() {
    let node = node();
    let log = Log::new();
    let sup = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne).child(
            Worker::new("w", &log)
                .trapping()
                .hanging_terminate()
                .spec()
                .shutdown(Shutdown::Timeout(Duration::from_millis(100))),
        ),
    )
    .await
    .unwrap();
    let w = pid_of(&sup.which_children().await.unwrap(), "w").unwrap();
    let watch = node.watch(w);
    let t0 = std::time::Instant::now();
    within("terminate_child", sup.terminate_child("w")).await.unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(100),
        "killed before the timeout"
    );
    assert_eq!(within("exit", watch).await, ExitReason::Killed);
    assert_eq!(
        log.with_prefix("terminate:"),
        ["terminate:w:shutdown"],
        "terminate started"
    );
    assert!(!node.is_alive(w));
    let c = sup.count_children().await.unwrap();
    assert_eq!((c.specs, c.active), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brutal_kill_skips_terminate() {
    let node = node();
    let log = Log::new();
    let sup = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne).child(
            Worker::new("w", &log)
                .trapping()
                .spec()
                .shutdown(Shutdown::BrutalKill),
        ),
    )
    .await
    .unwrap();
    let w = pid_of(&sup.which_children().await.unwrap(), "w").unwrap();
    let watch = node.watch(w);
    sup.terminate_child("w").await.unwrap();
    assert_eq!(within("exit", watch).await, ExitReason::Killed);
    assert!(log.with_prefix("terminate:").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_trapping_child_exits_at_once_with_shutdown() {
    let node = node();
    let log = Log::new();
    let sup = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne).child(Worker::new("w", &log).spec()),
    )
    .await
    .unwrap();
    let w = pid_of(&sup.which_children().await.unwrap(), "w").unwrap();
    let watch = node.watch(w);
    sup.terminate_child("w").await.unwrap();
    assert_eq!(within("exit", watch).await, ExitReason::Shutdown);
    assert!(log.with_prefix("terminate:").is_empty());
}

// ----- child management -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn which_and_count_children() {
    let node = node();
    let log = Log::new();
    let sup = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne)
            .child(Worker::new("a", &log).spec())
            .child(ChildSpec::supervisor(
                "s",
                SupervisorSpec::new(Strategy::OneForAll),
            ))
            .child(Worker::new("b", &log).spec().restart(Restart::Transient)),
    )
    .await
    .unwrap();
    let c = sup.which_children().await.unwrap();
    let shape: Vec<(&str, ChildKind, Restart)> = c.iter().map(|c| (&*c.id, c.kind, c.restart)).collect();
    assert_eq!(
        shape,
        [
            ("a", ChildKind::Worker, Restart::Permanent),
            ("s", ChildKind::Supervisor, Restart::Permanent),
            ("b", ChildKind::Worker, Restart::Transient)
        ]
    );
    assert!(c.iter().all(|c| c.pid.is_some()));
    let n = sup.count_children().await.unwrap();
    assert_eq!((n.specs, n.active, n.supervisors, n.workers), (3, 3, 1, 2));

    // A transient child that exits normally keeps its spec, not running.
    end_child(&node, pid_of(&c, "b").unwrap(), &End::Normal).await;
    settle(&node, &sup, "b stopped", |c| pid_of(c, "b").is_none()).await;
    let n = sup.count_children().await.unwrap();
    assert_eq!((n.specs, n.active, n.supervisors, n.workers), (3, 2, 1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_child_keeps_the_spec_unless_temporary() {
    let node = node();
    let log = Log::new();
    let sup = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForAll)
            .child(Worker::new("p", &log).spec())
            .child(Worker::new("t", &log).spec().restart(Restart::Temporary))
            .child(Worker::new("q", &log).spec()),
    )
    .await
    .unwrap();
    let before = sup.which_children().await.unwrap();
    let s0 = node.stats();
    sup.terminate_child("p").await.unwrap();
    sup.terminate_child("t").await.unwrap();
    let after = sup.which_children().await.unwrap();
    let ids: Vec<&str> = after.iter().map(|c| &*c.id).collect();
    assert_eq!(ids, ["p", "q"], "the temporary child is forgotten");
    assert_eq!(pid_of(&after, "p"), None);
    assert_eq!(
        pid_of(&after, "q"),
        pid_of(&before, "q"),
        "no sibling was touched"
    );
    assert!(!node.is_alive(pid_of(&before, "p").unwrap()));
    assert!(!node.is_alive(pid_of(&before, "t").unwrap()));
    assert_eq!(
        node.stats().restarts,
        s0.restarts,
        "terminate_child is not a restart"
    );
    assert!(matches!(
        sup.terminate_child("t").await,
        Err(SupervisorError::NotFound(id)) if &*id == "t"
    ));
    // Terminating a stopped child is fine (OTP returns ok).
    sup.terminate_child("p").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_child_and_delete_child() {
    let node = node();
    let log = Log::new();
    let sup = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne)
            .child(Worker::new("a", &log).spec())
            .child(Worker::new("b", &log).spec()),
    )
    .await
    .unwrap();
    let before = sup.which_children().await.unwrap();
    assert!(matches!(sup.restart_child("a").await, Err(SupervisorError::Running(id)) if &*id == "a"));
    assert!(matches!(sup.delete_child("a").await, Err(SupervisorError::Running(id)) if &*id == "a"));
    assert!(matches!(
        sup.restart_child("zz").await,
        Err(SupervisorError::NotFound(_))
    ));
    assert!(matches!(
        sup.delete_child("zz").await,
        Err(SupervisorError::NotFound(_))
    ));

    sup.terminate_child("a").await.unwrap();
    let pid = sup.restart_child("a").await.unwrap();
    assert_ne!(Some(pid), pid_of(&before, "a"));
    assert!(node.is_alive(pid));
    assert_eq!(pid_of(&sup.which_children().await.unwrap(), "a"), Some(pid));
    let n = sup.count_children().await.unwrap();
    assert_eq!((n.specs, n.active), (2, 2));

    sup.terminate_child("a").await.unwrap();
    sup.delete_child("a").await.unwrap();
    let ids: Vec<_> = sup
        .which_children()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, [Arc::<str>::from("b")]);
    assert!(matches!(
        sup.delete_child("a").await,
        Err(SupervisorError::NotFound(_))
    ));
    assert!(matches!(
        sup.restart_child("a").await,
        Err(SupervisorError::NotFound(_))
    ));
    // The id is free again.
    sup.start_child(Worker::new("a", &log).spec()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_child_on_a_static_supervisor_within_max_children() {
    let node = node();
    let log = Log::new();
    let sup = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne)
            .max_children(3)
            .child(Worker::new("a", &log).spec()),
    )
    .await
    .unwrap();
    let s0 = node.stats();
    assert!(matches!(
        sup.start_child(Worker::new("a", &log).spec()).await,
        Err(SupervisorError::DuplicateId(id)) if &*id == "a"
    ));
    let b = sup.start_child(Worker::new("b", &log).spec()).await.unwrap();
    let c = sup.start_child(Worker::new("c", &log).spec()).await.unwrap();
    assert!(node.is_alive(b) && node.is_alive(c));
    assert!(matches!(
        sup.start_child(Worker::new("d", &log).spec()).await,
        Err(SupervisorError::MaxChildren { limit: 3 })
    ));
    assert_eq!(node.stats().max_children_refusals - s0.max_children_refusals, 1);
    let ids: Vec<_> = sup
        .which_children()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id.to_string())
        .collect();
    assert_eq!(ids, ["a", "b", "c"], "added children come after the static ones");
    // A child added at run time is restarted like the others.
    end_child(&node, b, &End::Panic).await;
    settle(&node, &sup, "b restarted", |c| {
        pid_of(c, "b").is_some_and(|p| p != b)
    })
    .await;
    // A child whose init fails is not added.
    let bad = Worker::new("e", &log).failing_init(|| true);
    sup.delete_child("c").await.unwrap_err();
    sup.terminate_child("c").await.unwrap();
    sup.delete_child("c").await.unwrap();
    assert!(matches!(
        sup.start_child(bad.spec()).await,
        Err(SupervisorError::Start(SpawnError::InitFailed(_)))
    ));
    assert_eq!(sup.count_children().await.unwrap().specs, 2);

    // Specs are validated at start.
    let dup = SupervisorSpec::new(Strategy::OneForOne)
        .child(Worker::new("x", &log).spec())
        .child(Worker::new("x", &log).spec());
    assert!(matches!(
        Supervisor::start(&node, dup).await,
        Err(SupervisorError::DuplicateId(_))
    ));
    let over = SupervisorSpec::new(Strategy::OneForOne)
        .max_children(1)
        .child(Worker::new("x", &log).spec())
        .child(Worker::new("y", &log).spec());
    assert!(matches!(
        Supervisor::start(&node, over).await,
        Err(SupervisorError::Invalid(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_whose_init_fails_fails_the_start_and_stops_started_siblings() {
    let node = node();
    let log = Log::new();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .child(Worker::new("a", &log).trapping().spec().name("a"))
        .child(Worker::new("b", &log).failing_init(|| true).spec())
        .child(Worker::new("c", &log).spec());
    let err = within("start", Supervisor::start(&node, spec)).await.unwrap_err();
    match err {
        SupervisorError::Start(SpawnError::InitFailed(msg)) => {
            assert!(msg.contains("\"b\""), "the error names the child: {msg}")
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(
        log.snapshot(),
        ["init:a", "init-failed:b", "terminate:a:shutdown"],
        "a was started then stopped; c never started"
    );
    assert_eq!(node.whereis("a"), None);
    all_gone(&node).await;
    assert_eq!(node.stats().restarts, 0);
}

// ----- trees -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_supervisors_form_a_tree_visible_in_processes() {
    let node = node();
    let log = Log::new();
    let leaf = SupervisorSpec::new(Strategy::OneForOne)
        .child(Worker::new("l1", &log).spec())
        .child(Worker::new("l2", &log).spec());
    let mid = SupervisorSpec::new(Strategy::RestForOne)
        .child(Worker::new("m1", &log).spec())
        .child(ChildSpec::supervisor("leaf", leaf));
    let top = Supervisor::start_with(
        &node,
        SupervisorSpec::new(Strategy::OneForAll)
            .child(ChildSpec::supervisor("mid", mid))
            .child(Worker::new("t1", &log).spec()),
        SpawnOptions::new().name("top"),
    )
    .await
    .unwrap();
    assert_eq!(node.whereis("top"), Some(top.pid()));
    let mid_ref = child_sup(&node, &top, "mid").await;
    let leaf_ref = child_sup(&node, &mid_ref, "leaf").await;
    let top_kids = top.which_children().await.unwrap();
    let mid_kids = mid_ref.which_children().await.unwrap();
    let leaf_kids = leaf_ref.which_children().await.unwrap();

    let procs = node.processes();
    assert_eq!(procs.len(), 1 + 2 + 2 + 2);
    let parent = |pid: Pid| procs.iter().find(|p| p.pid == pid).expect("listed").parent;
    assert_eq!(parent(top.pid()), None);
    for (kids, sup) in [
        (&top_kids, top.pid()),
        (&mid_kids, mid_ref.pid()),
        (&leaf_kids, leaf_ref.pid()),
    ] {
        for c in kids {
            assert_eq!(parent(c.pid.unwrap()), Some(sup), "{}'s parent", c.id);
        }
    }
    let info = procs.iter().find(|p| p.pid == mid_ref.pid()).unwrap();
    assert!(info.trap_exit, "supervisors trap exits");
    assert_eq!(info.links, 3, "linked to its parent and its two children");

    // A crash deep in the tree is handled where it happens.
    let l1 = pid_of(&leaf_kids, "l1").unwrap();
    end_child(&node, l1, &End::Panic).await;
    settle(&node, &leaf_ref, "l1 restarted", |c| {
        pid_of(c, "l1").is_some_and(|p| p != l1)
    })
    .await;
    assert_eq!(top.which_children().await.unwrap(), top_kids);
    assert_eq!(mid_ref.which_children().await.unwrap(), mid_kids);
    assert_eq!(
        pid_of(&leaf_ref.which_children().await.unwrap(), "l2"),
        pid_of(&leaf_kids, "l2")
    );

    // Killing the middle supervisor: the top (one-for-all) restarts everything, and
    // the old subtree is entirely gone.
    let old: Vec<Pid> = node
        .processes()
        .iter()
        .map(|p| p.pid)
        .filter(|&p| p != top.pid())
        .collect();
    node.kill(mid_ref.pid());
    settle(&node, &top, "top restarted its children", |c| {
        c.iter().all(|c| c.pid.is_some_and(|p| !old.contains(&p)))
    })
    .await;
    eventually("old subtree gone", || old.iter().all(|&p| !node.is_alive(p))).await;
    eventually("tree rebuilt", || node.stats().processes == 7).await;
}
