//! Dynamic supervisors follow Elixir's `DynamicSupervisor`: children started at run
//! time, one-for-one, named by pid, always within `max_children` — with a count that
//! stays exact across restarts and crashes (the Elixir bug DESIGN.md lists).

mod suptest;

use std::time::Duration;

use girder::supervisor::{Backoff, DynamicSupervisor, Restart, Strategy, SupervisorError, SupervisorSpec};
use girder::{ExitReason, Node, Pid};
use suptest::*;

/// Live processes whose parent is `sup`.
fn live_children(node: &Node, sup: Pid) -> usize {
    node.processes()
        .iter()
        .filter(|p| p.parent == Some(sup) && node.is_alive(p.pid))
        .count()
}

/// Polls until the dynamic supervisor's running children satisfy `pred`.
async fn settle_dyn(sup: &DynamicSupervisor, what: &str, mut pred: impl FnMut(&[Pid]) -> bool) -> Vec<Pid> {
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let kids = sup.which_children().await.unwrap();
        if pred(&kids) {
            return kids;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "hang guard: {what}; children {kids:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_child_up_to_max_children_then_refused_at_once_and_counted() {
    let node = node();
    let log = Log::new();
    let sup = DynamicSupervisor::start(&node, DynamicSupervisor::spec().max_children(3))
        .await
        .unwrap();
    let mut pids = Vec::new();
    for i in 0..3 {
        pids.push(
            sup.start_child(Worker::new(&format!("w{i}"), &log).spec())
                .await
                .unwrap(),
        );
    }
    for k in 1..=5u64 {
        let r = within("refusal", sup.start_child(Worker::new("x", &log).spec())).await;
        assert!(
            matches!(r, Err(SupervisorError::MaxChildren { limit: 3 })),
            "{r:?}"
        );
        assert_eq!(node.stats().max_children_refusals, k);
    }
    assert_eq!(log.with_prefix("init:x").len(), 0, "a refused child never starts");
    assert_eq!(sup.which_children().await.unwrap(), pids, "start order");
    let c = sup.count_children().await.unwrap();
    assert_eq!((c.specs, c.active, c.workers, c.supervisors), (3, 3, 3, 0));
    assert_eq!(live_children(&node, sup.pid()), 3);

    // Freeing a slot lets one more in, and only one.
    sup.terminate_child(pids[1]).await.unwrap();
    assert!(!node.is_alive(pids[1]));
    let p = sup.start_child(Worker::new("y", &log).spec()).await.unwrap();
    assert_eq!(sup.which_children().await.unwrap(), [pids[0], pids[2], p]);
    assert!(matches!(
        sup.start_child(Worker::new("x", &log).spec()).await,
        Err(SupervisorError::MaxChildren { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_max_children_is_bounded() {
    let node = node();
    let sup = DynamicSupervisor::start(&node, DynamicSupervisor::spec())
        .await
        .unwrap();
    let mut n = 0;
    let err = loop {
        match sup.start_child(Worker::idle().spec()).await {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
        assert!(n <= 100_000, "no limit in sight");
    };
    assert_eq!(n, girder::supervisor::DEFAULT_MAX_CHILDREN);
    assert!(matches!(err, SupervisorError::MaxChildren { limit } if limit == n));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_count_stays_exact_across_restarts_and_crashes() {
    let node = node();
    let log = Log::new();
    // Backoff keeps a restart pending for a while: the child is down but its slot is
    // still held, so nobody else may take it (the Elixir bug: two children running
    // under max_children 1 because restarts decremented the count).
    let sup = DynamicSupervisor::start(
        &node,
        DynamicSupervisor::spec()
            .max_children(1)
            .intensity(1_000, Duration::from_secs(60))
            .backoff(Backoff::exponential(
                Duration::from_millis(20),
                Duration::from_millis(20),
            )),
    )
    .await
    .unwrap();
    let mut pid = sup.start_child(Worker::new("w", &log).spec()).await.unwrap();
    let refusals0 = node.stats().max_children_refusals;
    let mut refused = 0;
    for (k, end) in [
        End::Panic,
        End::Kill,
        End::Normal,
        End::Custom,
        End::Shutdown,
        End::Panic,
    ]
    .iter()
    .cycle()
    .take(24)
    .enumerate()
    {
        end_child(&node, pid, end).await;
        // During the restart delay and after it, the slot stays taken.
        let r = sup.start_child(Worker::new("intruder", &log).spec()).await;
        assert!(
            matches!(r, Err(SupervisorError::MaxChildren { limit: 1 })),
            "step {k}: {r:?}"
        );
        refused += 1;
        let kids = settle_dyn(&sup, "restart", |k| k.len() == 1 && k[0] != pid).await;
        pid = kids[0];
        assert!(
            live_children(&node, sup.pid()) <= 1,
            "step {k}: two children alive"
        );
        let c = sup.count_children().await.unwrap();
        assert_eq!((c.specs, c.active), (1, 1), "step {k}");
        let r = sup.start_child(Worker::new("intruder", &log).spec()).await;
        assert!(
            matches!(r, Err(SupervisorError::MaxChildren { limit: 1 })),
            "step {k}: {r:?}"
        );
        refused += 1;
    }
    assert_eq!(node.stats().max_children_refusals - refusals0, refused);
    assert_eq!(node.stats().restarts, 24);
    assert!(log.with_prefix("init:intruder").is_empty());
    eventually("one child and the supervisor", || node.stats().processes == 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_children_crashing_at_once_never_overshoot_max_children() {
    let node = node();
    let sup = DynamicSupervisor::start(
        &node,
        DynamicSupervisor::spec()
            .max_children(8)
            .intensity(10_000, Duration::from_secs(60)),
    )
    .await
    .unwrap();
    for _ in 0..8 {
        sup.start_child(Worker::idle().spec()).await.unwrap();
    }
    let sup2 = sup.clone();
    // An intruder keeps asking for a slot while the children crash and restart.
    let intruder = tokio::spawn(async move {
        let mut got = 0;
        for _ in 0..2_000 {
            if sup2.start_child(Worker::idle().spec()).await.is_ok() {
                got += 1;
            }
            tokio::task::yield_now().await;
        }
        got
    });
    for _ in 0..20 {
        let kids = sup.which_children().await.unwrap();
        for p in kids {
            node.kill(p);
        }
        assert!(live_children(&node, sup.pid()) <= 8);
        tokio::task::yield_now().await;
    }
    assert_eq!(
        within("intruder", intruder).await.unwrap(),
        0,
        "no slot ever freed by a restart"
    );
    settle_dyn(&sup, "all restarted", |k| k.len() == 8).await;
    assert_eq!(sup.count_children().await.unwrap().specs, 8);
    eventually("exactly 8 children alive", || {
        live_children(&node, sup.pid()) == 8
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_types_follow_dynamic_supervisor_rules() {
    let node = node();
    let log = Log::new();
    let sup = DynamicSupervisor::start(
        &node,
        DynamicSupervisor::spec()
            .max_children(3)
            .intensity(100, Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let s0 = node.stats();
    for end in End::ALL {
        for restart in [Restart::Permanent, Restart::Transient, Restart::Temporary] {
            let case = format!("{restart:?} × {end:?}");
            let pid = sup
                .start_child(Worker::new("w", &log).spec().restart(restart))
                .await
                .unwrap();
            assert_eq!(end_child(&node, pid, &end).await, end.reason());
            let restarts = match restart {
                Restart::Permanent => true,
                Restart::Transient => !matches!(end, End::Normal | End::Shutdown),
                Restart::Temporary => false,
            };
            if restarts {
                let kids = settle_dyn(&sup, &case, |k| k.len() == 1 && k[0] != pid).await;
                sup.terminate_child(kids[0]).await.unwrap();
            } else {
                // Not restarted: as Elixir's DynamicSupervisor, the child is deleted
                // and its slot is free again.
                settle_dyn(&sup, &case, |k| k.is_empty()).await;
                let c = sup.count_children().await.unwrap();
                assert_eq!(
                    (c.specs, c.active),
                    (0, 0),
                    "{case}: the child's slot is given back"
                );
            }
        }
    }
    // Every non-restarted child's slot came back: the supervisor is still usable to
    // its limit.
    for _ in 0..3 {
        sup.start_child(Worker::idle().spec()).await.unwrap();
    }
    assert_eq!(node.stats().max_children_refusals, s0.max_children_refusals);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_child_by_pid() {
    let node = node();
    let log = Log::new();
    let sup = DynamicSupervisor::start(&node, DynamicSupervisor::spec())
        .await
        .unwrap();
    let a = sup
        .start_child(Worker::new("a", &log).trapping().spec())
        .await
        .unwrap();
    let b = sup
        .start_child(Worker::new("b", &log).spec().restart(Restart::Permanent))
        .await
        .unwrap();
    let wa = node.watch(a);
    sup.terminate_child(a).await.unwrap();
    assert_eq!(within("a exits", wa).await, ExitReason::Shutdown);
    assert_eq!(log.with_prefix("terminate:"), ["terminate:a:shutdown"]);
    assert_eq!(
        sup.which_children().await.unwrap(),
        [b],
        "a is forgotten, not restarted"
    );
    assert!(matches!(
        sup.terminate_child(a).await,
        Err(SupervisorError::NotAChild(p)) if p == a
    ));
    assert!(matches!(
        sup.terminate_child(sup.pid()).await,
        Err(SupervisorError::NotAChild(_))
    ));
    assert_eq!(node.stats().restarts, 0);
    let c = sup.count_children().await.unwrap();
    assert_eq!((c.specs, c.active), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamic_supervisor_is_one_for_one_without_static_children() {
    let node = node();
    let log = Log::new();
    assert!(matches!(
        DynamicSupervisor::start(&node, SupervisorSpec::new(Strategy::OneForAll)).await,
        Err(SupervisorError::Invalid(_))
    ));
    assert!(matches!(
        DynamicSupervisor::start(
            &node,
            DynamicSupervisor::spec().child(Worker::new("a", &log).spec())
        )
        .await,
        Err(SupervisorError::Invalid(_))
    ));
    // Crashing one child leaves the others alone.
    let sup = DynamicSupervisor::start(&node, DynamicSupervisor::spec())
        .await
        .unwrap();
    let kids: Vec<Pid> = {
        let mut v = Vec::new();
        for i in 0..4 {
            v.push(
                sup.start_child(Worker::new(&format!("w{i}"), &log).spec())
                    .await
                    .unwrap(),
            );
        }
        v
    };
    end_child(&node, kids[1], &End::Panic).await;
    let now = settle_dyn(&sup, "restart", |k| k.len() == 4 && !k.contains(&kids[1])).await;
    for p in [kids[0], kids[2], kids[3]] {
        assert!(now.contains(&p));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamic_supervisor_escalates_past_its_intensity() {
    let node = node();
    let log = Log::new();
    let sup = DynamicSupervisor::start(
        &node,
        DynamicSupervisor::spec().intensity(2, Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let other = sup
        .start_child(Worker::new("o", &log).trapping().spec())
        .await
        .unwrap();
    let mut pid = sup.start_child(Worker::new("w", &log).spec()).await.unwrap();
    let sw = node.watch(sup.pid());
    for _ in 0..2 {
        end_child(&node, pid, &End::Custom).await;
        pid = settle_dyn(&sup, "restart", |k| k.len() == 2 && !k.contains(&pid)).await[1];
    }
    end_child(&node, pid, &End::Custom).await;
    assert_eq!(within("escalation", sw).await, ExitReason::Shutdown);
    assert!(!node.is_alive(other));
    assert_eq!(log.with_prefix("terminate:o"), ["terminate:o:shutdown"]);
    assert_eq!(node.stats().escalations, 1);
    all_gone(&node).await;
}
