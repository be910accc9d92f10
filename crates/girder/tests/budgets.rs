//! Per-subtree process budgets (girder goes beyond OTP here): every process spawned
//! anywhere below a supervisor with `max_descendants` counts against it and against
//! every budget above; past it spawns fail with `BudgetExhausted` naming the subtree,
//! while siblings and the rest of the node spawn on. Supervisor restarts may use the
//! node's reserved headroom.

mod suptest;

use std::time::Duration;

use girder::supervisor::{Backoff, ChildSpec, Strategy, Supervisor, SupervisorRef, SupervisorSpec};
use girder::{Node, Pid, SpawnError, SpawnOptions};
use suptest::*;

fn exhausted(r: Result<Pid, SpawnError>, subtree: &str, limit: usize) {
    match r {
        Err(SpawnError::BudgetExhausted { subtree: s, limit: l }) => {
            assert_eq!(
                (&*s, l),
                (subtree, limit),
                "the refusal names the subtree and its limit"
            )
        }
        other => panic!("expected BudgetExhausted for {subtree:?}, got {other:?}"),
    }
}

async fn child_sup(node: &Node, parent: &SupervisorRef, id: &str) -> SupervisorRef {
    let children = parent.which_children().await.unwrap();
    let pid = pid_of(&children, id).expect("the child supervisor runs");
    SupervisorRef::new(node.lookup::<Supervisor>(pid).expect("a live supervisor"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawns_anywhere_below_count_against_the_budget() {
    let node = node();
    let log = Log::new();
    let sup = Supervisor::start_with(
        &node,
        SupervisorSpec::new(Strategy::OneForOne)
            .max_descendants(5)
            .child(Worker::new("w1", &log).spec())
            .child(Worker::new("w2", &log).spec()),
        SpawnOptions::new().name("left"),
    )
    .await
    .unwrap();
    let kids = sup.which_children().await.unwrap();
    let (w1, w2) = (pid_of(&kids, "w1").unwrap(), pid_of(&kids, "w2").unwrap());
    // Two children used two units; a grandchild and a great-grandchild two more.
    let gc = spawn_grandchild(&node, w1).await.unwrap();
    let ggc = spawn_grandchild(&node, gc).await.unwrap();
    let parent = |p: Pid| node.process_info(p).unwrap().parent;
    assert_eq!((parent(gc), parent(ggc)), (Some(w1), Some(gc)));
    spawn_grandchild(&node, w2).await.unwrap();
    // Five used: every spawn anywhere below is refused, naming the subtree.
    let r0 = node.stats().subtree_budget_refusals;
    exhausted(spawn_grandchild(&node, w2).await, "left", 5);
    exhausted(spawn_grandchild(&node, ggc).await, "left", 5);
    assert_eq!(
        sup.start_child(Worker::new("w3", &log).spec())
            .await
            .unwrap_err()
            .to_string(),
        format!(
            "child failed to start: {}",
            SpawnError::BudgetExhausted {
                subtree: "left".into(),
                limit: 5
            }
        )
    );
    assert_eq!(node.stats().subtree_budget_refusals - r0, 3);
    // The node itself still has room.
    node.spawn(Worker::idle()).unwrap();
    let s = node.stats();
    assert_eq!(s.processes, 1 + 5 + 1);
    assert_eq!(s.spawn_refusals, 0, "only the subtree refused, not the node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_subtree_does_not_starve_its_sibling() {
    let node = node();
    let log = Log::new();
    let left = SupervisorSpec::new(Strategy::OneForOne)
        .max_descendants(10)
        .child(Worker::new("bomber", &log).spec());
    let right = SupervisorSpec::new(Strategy::OneForOne)
        .max_descendants(10)
        .child(Worker::new("server", &log).spec());
    let top = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne)
            .child(ChildSpec::supervisor("left", left))
            .child(ChildSpec::supervisor("right", right)),
    )
    .await
    .unwrap();
    let l = child_sup(&node, &top, "left").await;
    let r = child_sup(&node, &top, "right").await;
    let bomber = pid_of(&l.which_children().await.unwrap(), "bomber").unwrap();
    let server = pid_of(&r.which_children().await.unwrap(), "server").unwrap();
    let mut spawned = 0;
    let err = loop {
        match spawn_grandchild(&node, bomber).await {
            Ok(_) => spawned += 1,
            Err(e) => break e,
        }
        assert!(spawned < 1_000, "no budget in sight");
    };
    assert_eq!(spawned, 9, "the bomber itself holds one unit of ten");
    exhausted(Err(err), "left", 10);
    // The sibling subtree spawns to its own budget.
    for _ in 0..9 {
        spawn_grandchild(&node, server).await.unwrap();
    }
    exhausted(spawn_grandchild(&node, server).await, "right", 10);
    assert_eq!(node.stats().subtree_budget_refusals, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_budgets_each_count_every_spawn_below() {
    let node = node();
    let log = Log::new();
    // The outer budget is the tighter one.
    let inner = SupervisorSpec::new(Strategy::OneForOne)
        .max_descendants(10)
        .child(Worker::new("w", &log).spec());
    let outer = Supervisor::start_with(
        &node,
        SupervisorSpec::new(Strategy::OneForOne)
            .max_descendants(4)
            .child(ChildSpec::supervisor("inner", inner)),
        SpawnOptions::new().name("outer"),
    )
    .await
    .unwrap();
    let i = child_sup(&node, &outer, "inner").await;
    let w = pid_of(&i.which_children().await.unwrap(), "w").unwrap();
    // outer: inner + w = 2 of 4; inner: w = 1 of 10.
    spawn_grandchild(&node, w).await.unwrap();
    spawn_grandchild(&node, w).await.unwrap();
    exhausted(spawn_grandchild(&node, w).await, "outer", 4);

    // The inner budget is the tighter one.
    let inner = SupervisorSpec::new(Strategy::OneForOne)
        .max_descendants(2)
        .child(Worker::new("w", &log).spec());
    let outer = Supervisor::start_with(
        &node,
        SupervisorSpec::new(Strategy::OneForOne)
            .max_descendants(100)
            .child(ChildSpec::supervisor("inner2", inner))
            .child(Worker::new("v", &log).spec()),
        SpawnOptions::new().name("outer2"),
    )
    .await
    .unwrap();
    let i = child_sup(&node, &outer, "inner2").await;
    let w = pid_of(&i.which_children().await.unwrap(), "w").unwrap();
    spawn_grandchild(&node, w).await.unwrap();
    exhausted(spawn_grandchild(&node, w).await, "inner2", 2);
    // A refusal by the inner budget takes nothing from the outer one: the outer
    // subtree still has 100 - 4 units.
    let v = pid_of(&outer.which_children().await.unwrap(), "v").unwrap();
    for _ in 0..96 {
        spawn_grandchild(&node, v).await.unwrap();
    }
    exhausted(spawn_grandchild(&node, v).await, "outer2", 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_is_given_back_when_processes_exit() {
    let node = node();
    let log = Log::new();
    let sup = Supervisor::start_with(
        &node,
        SupervisorSpec::new(Strategy::OneForOne)
            .max_descendants(4)
            .intensity(1_000, Duration::from_secs(60))
            .child(Worker::new("w", &log).spec()),
        SpawnOptions::new().name("sub"),
    )
    .await
    .unwrap();
    let w = pid_of(&sup.which_children().await.unwrap(), "w").unwrap();
    let mut gcs = Vec::new();
    for _ in 0..3 {
        gcs.push(spawn_grandchild(&node, w).await.unwrap());
    }
    exhausted(spawn_grandchild(&node, w).await, "sub", 4);
    // Each exit gives exactly one unit back, however the process ended.
    for (k, end) in [End::Kill, End::Panic, End::Normal].iter().enumerate() {
        end_child(&node, gcs[k], end).await;
        gcs[k] = spawn_grandchild(&node, w).await.unwrap();
        exhausted(spawn_grandchild(&node, w).await, "sub", 4);
    }
    assert_eq!(node.stats().subtree_budget_refusals, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_at_a_full_budget_are_never_refused_and_nothing_drifts() {
    for strategy in [Strategy::OneForOne, Strategy::OneForAll, Strategy::RestForOne] {
        restarts_at_a_full_budget(strategy).await;
    }
}

async fn restarts_at_a_full_budget(strategy: Strategy) {
    let node = node();
    let log = Log::new();
    // The budget is exactly the children: every restart needs the unit the crashed
    // child gave back.
    let sup = Supervisor::start_with(
        &node,
        SupervisorSpec::new(strategy)
            .max_descendants(3)
            .intensity(1_000, Duration::from_secs(60))
            .child(Worker::new("a", &log).spec())
            .child(Worker::new("b", &log).spec())
            .child(Worker::new("c", &log).spec()),
        SpawnOptions::new().name("full"),
    )
    .await
    .unwrap();
    let ends = [End::Panic, End::Kill, End::Normal, End::Custom, End::Shutdown];
    for k in 0..40 {
        let before = sup.which_children().await.unwrap();
        let victim = before[k % 3].pid.unwrap();
        end_child(&node, victim, &ends[k % ends.len()]).await;
        settle(&node, &sup, "restarted", |c| {
            c[k % 3].pid.is_some_and(|p| p != victim) && c.iter().all(|c| c.pid.is_some())
        })
        .await;
        let s = node.stats();
        assert_eq!(
            s.subtree_budget_refusals, 0,
            "{strategy:?}: restart {k} was refused by the budget: a unit was still held by the exited child"
        );
        assert_eq!(
            s.restarts,
            k as u64 + 1,
            "{strategy:?}: one restart per crash, no failed attempt"
        );
    }
    // Exactly full, no drift: one more spawn below is refused.
    let a = pid_of(&sup.which_children().await.unwrap(), "a").unwrap();
    exhausted(spawn_grandchild(&node, a).await, "full", 3);
    assert_eq!(node.stats().processes, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_subtree_starts_with_a_fresh_budget_and_gives_the_old_one_back() {
    let node = node();
    let log = Log::new();
    let inner = SupervisorSpec::new(Strategy::OneForOne)
        .max_descendants(3)
        .child(Worker::new("w", &log).spec());
    let top = Supervisor::start_with(
        &node,
        SupervisorSpec::new(Strategy::OneForOne)
            .max_descendants(10)
            .intensity(100, Duration::from_secs(60))
            .child(ChildSpec::supervisor("inner", inner)),
        SpawnOptions::new().name("top"),
    )
    .await
    .unwrap();
    for round in 0..5 {
        let i = child_sup(&node, &top, "inner").await;
        let w = pid_of(&i.which_children().await.unwrap(), "w").unwrap();
        spawn_grandchild(&node, w).await.unwrap();
        spawn_grandchild(&node, w).await.unwrap();
        exhausted(spawn_grandchild(&node, w).await, "inner", 3);
        // Killing the subtree's supervisor kills w (linked); the grandchildren are
        // not linked and live on as orphans, still counted by the top budget. So the
        // test ends them explicitly.
        let orphans: Vec<Pid> = node
            .processes()
            .iter()
            .filter(|p| p.parent == Some(w))
            .map(|p| p.pid)
            .collect();
        assert_eq!(orphans.len(), 2, "round {round}");
        let old = i.pid();
        node.kill(old);
        for o in orphans {
            node.kill(o);
        }
        settle(&node, &top, "inner restarted", |c| {
            pid_of(c, "inner").is_some_and(|p| p != old)
        })
        .await;
        eventually("orphans gone", || node.stats().processes == 3).await;
    }
    // top's budget: inner + w = 2 used of 10, after five rounds of 4 spawns each.
    let i = child_sup(&node, &top, "inner").await;
    let w = pid_of(&i.which_children().await.unwrap(), "w").unwrap();
    let wa = node.lookup::<Worker>(w).unwrap();
    drop(wa);
    let v = top.start_child(Worker::new("v", &log).spec()).await.unwrap();
    for _ in 0..7 {
        spawn_grandchild(&node, v).await.unwrap();
    }
    exhausted(spawn_grandchild(&node, v).await, "top", 10);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn restarts_use_the_reserved_headroom_at_the_process_limit() {
    let node = Node::builder()
        .max_processes(10)
        .reserved_processes(2)
        .build()
        .unwrap();
    let log = Log::new();
    // The backoff lets the test take the crashed child's slot before the restart.
    let sup = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne)
            .backoff(Backoff::exponential(
                Duration::from_secs(1),
                Duration::from_secs(1),
            ))
            .child(Worker::new("w", &log).spec()),
    )
    .await
    .unwrap();
    // A runaway spawner takes every ordinary slot.
    let mut hog = Vec::new();
    let limit = loop {
        match node.spawn(Worker::idle()) {
            Ok(a) => hog.push(a),
            Err(SpawnError::ProcessLimit { limit }) => break limit,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(limit, 8, "ordinary spawns stop short of the reserve");
    assert_eq!(hog.len(), 6);
    let w = pid_of(&sup.which_children().await.unwrap(), "w").unwrap();
    end_child(&node, w, &End::Panic).await;
    // The spawner grabs the freed slot at once.
    hog.push(node.spawn(Worker::idle()).unwrap());
    assert!(matches!(
        node.spawn(Worker::idle()),
        Err(SpawnError::ProcessLimit { .. })
    ));
    // The supervisor restores service from the reserve.
    let now = settle(&node, &sup, "restart from the reserve", |c| {
        pid_of(c, "w").is_some_and(|p| p != w)
    })
    .await;
    assert!(node.is_alive(pid_of(&now, "w").unwrap()));
    let s = node.stats();
    assert_eq!(s.processes, 9, "one slot of the reserve in use");
    assert_eq!(s.restarts, 1);
    assert_eq!(s.escalations, 0);
    // Ordinary spawns still cannot touch the reserve.
    assert!(matches!(
        node.spawn(Worker::idle()),
        Err(SpawnError::ProcessLimit { limit: 8 })
    ));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_restarted_subtree_starts_its_children_from_the_reserve_too() {
    let node = Node::builder()
        .max_processes(12)
        .reserved_processes(3)
        .build()
        .unwrap();
    let log = Log::new();
    let inner = SupervisorSpec::new(Strategy::OneForOne)
        .child(Worker::new("w1", &log).spec())
        .child(Worker::new("w2", &log).spec());
    let top = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne)
            .backoff(Backoff::exponential(
                Duration::from_secs(1),
                Duration::from_secs(1),
            ))
            .child(ChildSpec::supervisor("inner", inner)),
    )
    .await
    .unwrap();
    let mut hog = Vec::new();
    while let Ok(a) = node.spawn(Worker::idle()) {
        hog.push(a);
    }
    assert_eq!(node.stats().processes, 9, "every ordinary slot taken");
    let old = child_sup(&node, &top, "inner").await;
    let kids: Vec<Pid> = old
        .which_children()
        .await
        .unwrap()
        .iter()
        .filter_map(|c| c.pid)
        .collect();
    end_child(&node, old.pid(), &End::Kill).await;
    for k in kids {
        gone(&node, k).await;
    }
    // The spawner takes the three freed slots back before the restart.
    while let Ok(a) = node.spawn(Worker::idle()) {
        hog.push(a);
    }
    assert_eq!(node.stats().processes, 9);
    // The whole subtree is restored from the reserve: its supervisor and its children.
    settle(&node, &top, "subtree restarted", |c| {
        pid_of(c, "inner").is_some_and(|p| p != old.pid())
    })
    .await;
    let inner = child_sup(&node, &top, "inner").await;
    let kids = inner.which_children().await.unwrap();
    assert!(
        kids.iter().all(|c| c.pid.is_some_and(|p| node.is_alive(p))),
        "{kids:?}"
    );
    let s = node.stats();
    assert_eq!(s.processes, 12);
    assert_eq!((s.restarts, s.escalations), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_limit_still_applies_and_its_refusals_take_no_budget() {
    let node = Node::builder()
        .max_processes(6)
        .reserved_processes(0)
        .build()
        .unwrap();
    let log = Log::new();
    let sup = Supervisor::start_with(
        &node,
        SupervisorSpec::new(Strategy::OneForOne)
            .max_descendants(4)
            .child(Worker::new("w", &log).spec()),
        SpawnOptions::new().name("sub"),
    )
    .await
    .unwrap();
    let w = pid_of(&sup.which_children().await.unwrap(), "w").unwrap();
    let mut hog: Vec<_> = (0..4).map(|_| node.spawn(Worker::idle()).unwrap()).collect();
    // The node is full: the subtree has budget left, but the node refuses.
    for _ in 0..5 {
        assert!(matches!(
            spawn_grandchild(&node, w).await,
            Err(SpawnError::ProcessLimit { limit: 6 })
        ));
    }
    assert_eq!(node.stats().subtree_budget_refusals, 0);
    // None of those refusals kept a unit of the budget: w holds one, three are left.
    for h in hog.drain(..) {
        let p = h.pid();
        drop(h);
        node.kill(p);
        gone(&node, p).await;
    }
    for _ in 0..3 {
        spawn_grandchild(&node, w).await.unwrap();
    }
    exhausted(spawn_grandchild(&node, w).await, "sub", 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_process_may_own_a_budget_named_by_its_pid() {
    let node = node();
    let owner = node
        .spawn_with(Worker::idle(), SpawnOptions::new().max_descendants(2))
        .unwrap();
    let a = spawn_grandchild(&node, owner.pid()).await.unwrap();
    spawn_grandchild(&node, a).await.unwrap();
    let label = owner.pid().to_string();
    exhausted(spawn_grandchild(&node, owner.pid()).await, &label, 2);
    exhausted(spawn_grandchild(&node, a).await, &label, 2);
    // The owner itself is outside its budget: the rest of the node spawns on.
    node.spawn(Worker::idle()).unwrap();
}
