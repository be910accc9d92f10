//! The registry: names → processes, bounded, cleaned up on exit.

mod probe;

use girder::{Actor, Ctx, ExitReason, Flow, Node, RegistryError, SpawnError, SpawnOptions};
use probe::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_then_whereis_finds_the_process() {
    let node = node();
    let (tx, mut rx) = events();
    let p = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    assert_eq!(node.whereis("db"), None);
    node.register("db", p.pid()).unwrap();
    assert_eq!(node.whereis("db"), Some(p.pid()));
    assert_eq!(node.process_info(p.pid()).unwrap().name.as_deref(), Some("db"));
    let s = node.stats();
    assert_eq!(s.names, 1);

    // The typed address reaches the same process.
    let addr = node.whereis_addr::<Probe>("db").expect("typed address");
    assert_eq!(addr.pid(), p.pid());
    ping(&addr).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whereis_addr_of_another_actor_type_is_none() {
    struct Other;
    impl Actor for Other {
        type Msg = u8;
        async fn handle(&mut self, _: u8, _: &mut Ctx<Self>) -> Flow {
            Flow::Continue
        }
    }
    let node = node();
    let (tx, mut rx) = events();
    let p = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    node.register("probe", p.pid()).unwrap();
    assert!(node.whereis_addr::<Other>("probe").is_none());
    assert!(node.whereis_addr::<Probe>("probe").is_some());
    assert!(node.whereis_addr::<Probe>("nobody").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_held_by_a_live_process_is_refused_with_name_taken() {
    let node = node();
    let (tx, mut rx) = events();
    let a = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let b = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    node.register("leader", a.pid()).unwrap();
    match node.register("leader", b.pid()) {
        Err(RegistryError::NameTaken { name, holder }) => {
            assert_eq!(&*name, "leader");
            assert_eq!(holder, a.pid());
        }
        other => panic!("expected NameTaken, got {other:?}"),
    }
    assert_eq!(node.whereis("leader"), Some(a.pid()));
    assert_eq!(node.process_info(b.pid()).unwrap().name, None);
    assert_eq!(
        node.stats().name_refusals,
        0,
        "only a full registry counts as a refusal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_process_cannot_take_a_second_name() {
    let node = node();
    let (tx, mut rx) = events();
    let a = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    node.register("first", a.pid()).unwrap();
    for attempt in ["second", "first"] {
        match node.register(attempt, a.pid()) {
            Err(RegistryError::AlreadyNamed { pid, name }) => {
                assert_eq!(pid, a.pid());
                assert_eq!(&*name, "first");
            }
            other => panic!("expected AlreadyNamed, got {other:?}"),
        }
    }
    assert_eq!(node.whereis("second"), None);
    assert_eq!(node.stats().names, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_is_bounded_by_max_names_and_refusals_are_counted() {
    let node = Node::builder().max_names(2).build().unwrap();
    let (tx, mut rx) = events();
    let mut procs = Vec::new();
    for _ in 0..4 {
        procs.push(spawn_probe(&node, Probe::new(&tx), &mut rx).await);
    }
    node.register("a", procs[0].pid()).unwrap();
    node.register("b", procs[1].pid()).unwrap();
    for (i, name) in [(2, "c"), (3, "d")] {
        match node.register(name, procs[i].pid()) {
            Err(RegistryError::Full { limit }) => assert_eq!(limit, 2),
            other => panic!("expected Full, got {other:?}"),
        }
    }
    // The same limit applies to names given at spawn.
    match node.spawn_with(Probe::new(&tx), SpawnOptions::new().name("e")) {
        Err(SpawnError::Name(RegistryError::Full { limit: 2 })) => {}
        other => panic!("expected SpawnError::Name(Full), got {other:?}"),
    }
    let s = node.stats();
    assert_eq!((s.names, s.name_limit, s.name_refusals), (2, 2, 3));
    assert_eq!(s.processes, 4, "the refused spawn left nothing behind");

    // A freed name makes room.
    assert!(node.unregister("a"));
    node.register("c", procs[2].pid()).unwrap();
    assert_eq!(node.stats().names, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_is_removed_automatically_when_its_process_exits() {
    let node = node();
    let (tx, mut rx) = events();
    let a = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    node.register("worker", a.pid()).unwrap();
    let w = node.watch(a.pid());
    a.try_send(Cmd::Panic("crash".into())).unwrap();
    assert_eq!(reason(w).await, ExitReason::Panic("crash".into()));
    expect_ev(&mut rx, a.pid(), Ev::Terminate(ExitReason::Panic("crash".into()))).await;
    assert_eq!(node.whereis("worker"), None);
    assert!(node.whereis_addr::<Probe>("worker").is_none());
    assert_eq!(node.stats().names, 0, "the registry does not keep dead names");

    // The name is free for the next process.
    let b = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    node.register("worker", b.pid()).unwrap();
    assert_eq!(node.whereis("worker"), Some(b.pid()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_of_killed_processes_are_removed_too() {
    let node = Node::builder().max_names(1).build().unwrap();
    let (tx, mut rx) = events();
    for round in 0..20 {
        let p = node
            .spawn_with(Probe::new(&tx), SpawnOptions::new().name("singleton"))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        expect_ev(&mut rx, p.pid(), Ev::Init).await;
        assert_eq!(node.whereis("singleton"), Some(p.pid()));
        let w = node.watch(p.pid());
        node.kill(p.pid());
        assert_eq!(reason(w).await, ExitReason::Killed);
    }
    assert_eq!(node.stats().name_refusals, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_options_name_registers_the_process() {
    let node = node();
    let (tx, mut rx) = events();
    let p = node
        .spawn_with(Probe::new(&tx), SpawnOptions::new().name("cache"))
        .unwrap();
    // Registered before spawn returns.
    assert_eq!(node.whereis("cache"), Some(p.pid()));
    expect_ev(&mut rx, p.pid(), Ev::Init).await;

    // A second process under the same name is refused, and nothing is left behind.
    let before = node.stats().processes;
    match node.spawn_with(Probe::new(&tx), SpawnOptions::new().name("cache")) {
        Err(SpawnError::Name(RegistryError::NameTaken { holder, .. })) => assert_eq!(holder, p.pid()),
        other => panic!("expected SpawnError::Name(NameTaken), got {other:?}"),
    }
    let after = node.stats();
    assert_eq!(after.processes, before);
    // The undone spawn counts as spawned and exited: the counters still add up.
    assert_eq!(after.spawned - after.exited, after.processes as u64);
    assert_eq!(node.whereis("cache"), Some(p.pid()));
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_of_a_dead_pid_is_refused_with_noproc() {
    let node = node();
    let (tx, mut rx) = events();
    let p = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let w = node.watch(p.pid());
    node.kill(p.pid());
    assert_eq!(reason(w).await, ExitReason::Killed);
    assert_eq!(
        node.register("ghost", p.pid()),
        Err(RegistryError::NoProc(p.pid()))
    );
    assert_eq!(node.whereis("ghost"), None);
    assert_eq!(node.stats().names, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregister_frees_the_name_and_the_process_lives_on() {
    let node = node();
    let (tx, mut rx) = events();
    let p = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    node.register("svc", p.pid()).unwrap();
    assert!(node.unregister("svc"));
    assert!(!node.unregister("svc"));
    assert_eq!(node.whereis("svc"), None);
    assert_eq!(node.process_info(p.pid()).unwrap().name, None);
    ping(&p).await.unwrap();
    // Unnamed again, it can take a name.
    node.register("svc2", p.pid()).unwrap();
    assert_eq!(node.whereis("svc2"), Some(p.pid()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_can_register_itself() {
    let node = node();
    let (tx, mut rx) = events();
    let p = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    with_ctx(&p, |ctx| ctx.register("me")).await.unwrap();
    assert_eq!(node.whereis("me"), Some(p.pid()));
}
