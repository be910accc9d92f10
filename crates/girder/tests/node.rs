//! The node: builder validation, the process limit and its reserve, exact live
//! counting, shutdown, and stale pids.

mod probe;

use std::time::Duration;

use girder::node::MAX_PROCESSES_CEILING;
use girder::{BuildError, ExitReason, Mailbox, Node, SpawnError, SpawnOptions};
use probe::*;

fn build_err(b: girder::NodeBuilder) -> BuildError {
    b.build().expect_err("build must refuse an invalid setting")
}

#[tokio::test]
async fn builder_refuses_invalid_settings_and_names_them() {
    let cases: Vec<(girder::NodeBuilder, &str)> = vec![
        (Node::builder().max_processes(0), "max_processes"),
        (
            Node::builder().max_processes(10).reserved_processes(10),
            "reserved_processes",
        ),
        (
            Node::builder().max_processes(10).reserved_processes(11),
            "reserved_processes",
        ),
        (
            Node::builder().max_processes(MAX_PROCESSES_CEILING + 1),
            "max_processes",
        ),
        (Node::builder().mailbox_budget_bytes(0), "mailbox_budget_bytes"),
        (
            Node::builder().default_mailbox(Mailbox::bounded(0)),
            "default_mailbox.capacity",
        ),
        (
            Node::builder().default_mailbox(Mailbox::default().priority_capacity(0)),
            "default_mailbox.priority_capacity",
        ),
        (
            Node::builder().default_mailbox(Mailbox::default().max_bytes(0)),
            "default_mailbox.max_bytes",
        ),
        (Node::builder().max_names(0), "max_names"),
        (Node::builder().max_links_per_process(0), "max_links_per_process"),
        (
            Node::builder().max_monitors_per_process(0),
            "max_monitors_per_process",
        ),
        (
            Node::builder().max_timers_per_process(0),
            "max_timers_per_process",
        ),
        (
            Node::builder().shutdown_timeout(Duration::ZERO),
            "shutdown_timeout",
        ),
    ];
    for (builder, setting) in cases {
        let err = build_err(builder);
        assert!(
            err.to_string().contains(setting),
            "error {err:?} ({err}) does not name {setting}"
        );
    }
    assert!(matches!(
        build_err(Node::builder().max_processes(0)),
        BuildError::Zero {
            setting: "max_processes",
            ..
        }
    ));
    assert!(matches!(
        build_err(Node::builder().max_processes(MAX_PROCESSES_CEILING + 1)),
        BuildError::TooLarge {
            setting: "max_processes",
            ..
        }
    ));
    assert!(matches!(
        build_err(Node::builder().max_processes(4).reserved_processes(4)),
        BuildError::NotBelow {
            setting: "reserved_processes",
            ..
        }
    ));
    // The edges that are valid.
    assert!(Node::builder()
        .max_processes(MAX_PROCESSES_CEILING)
        .build()
        .is_ok());
    assert!(Node::builder()
        .max_processes(1)
        .reserved_processes(0)
        .build()
        .is_ok());
}

#[test]
fn build_outside_a_runtime_is_refused() {
    assert_eq!(Node::builder().build().unwrap_err(), BuildError::NoRuntime);
}

#[tokio::test]
async fn spawn_options_with_an_invalid_mailbox_are_refused_and_name_the_setting() {
    let node = node();
    let (tx, _rx) = events();
    let opts = SpawnOptions::new().mailbox(Mailbox::bounded(0));
    match node.spawn_with(Probe::new(&tx), opts) {
        Err(e @ SpawnError::Config(_)) => assert!(e.to_string().contains("SpawnOptions::mailbox")),
        other => panic!("expected SpawnError::Config, got {other:?}"),
    }
    assert_eq!(node.stats().processes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_past_the_limit_is_refused_at_once_and_counted() {
    let node = Node::builder()
        .max_processes(3)
        .reserved_processes(0)
        .build()
        .unwrap();
    let (tx, mut rx) = events();
    let mut live = Vec::new();
    for _ in 0..3 {
        live.push(spawn_probe(&node, Probe::new(&tx), &mut rx).await);
    }
    for _ in 0..5 {
        match node.spawn(Probe::new(&tx)) {
            Err(SpawnError::ProcessLimit { limit }) => assert_eq!(limit, 3),
            other => panic!("expected ProcessLimit, got {other:?}"),
        }
    }
    let s = node.stats();
    assert_eq!(s.processes, 3);
    assert_eq!(s.process_limit, 3);
    assert_eq!(s.spawn_refusals, 5);
    assert_eq!(s.spawned, 3);
    assert_eq!(s.processes_hwm, 3);
    // The node still serves its processes.
    for p in &live {
        ping(p).await.unwrap();
    }
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_slots_are_usable_only_with_use_reserve() {
    let node = Node::builder()
        .max_processes(4)
        .reserved_processes(2)
        .build()
        .unwrap();
    let (tx, mut rx) = events();
    let _a = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let _b = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    match node.spawn(Probe::new(&tx)) {
        Err(SpawnError::ProcessLimit { limit }) => {
            assert_eq!(limit, 2, "ordinary spawns stop below the reserve")
        }
        other => panic!("expected ProcessLimit, got {other:?}"),
    }
    let c = node
        .spawn_with(Probe::new(&tx), SpawnOptions::new().use_reserve())
        .expect("the reserve is open to spawns that ask for it");
    let d = node
        .spawn_with(Probe::new(&tx), SpawnOptions::new().use_reserve())
        .unwrap();
    match node.spawn_with(Probe::new(&tx), SpawnOptions::new().use_reserve()) {
        Err(SpawnError::ProcessLimit { limit }) => assert_eq!(limit, 4),
        other => panic!("expected ProcessLimit, got {other:?}"),
    }
    ping(&c).await.unwrap();
    ping(&d).await.unwrap();
    let s = node.stats();
    assert_eq!((s.processes, s.reserved_processes, s.spawn_refusals), (4, 2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_count_returns_exactly_to_baseline_after_exits() {
    const N: usize = 40;
    let node = Node::builder()
        .max_processes(N + 1)
        .reserved_processes(0)
        .build()
        .unwrap();
    let (tx, mut rx) = events();
    let keeper = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let baseline = node.stats().processes;
    assert_eq!(baseline, 1);

    // Every way of ending: normal stop, custom stop, panic, kill, a link cascade, an
    // exit signal, an init failure.
    let mut watches = Vec::new();
    let mut procs = Vec::new();
    for i in 0..N {
        let probe = if i % 8 == 6 {
            Probe::new(&tx).failing_init(ExitReason::custom("init"))
        } else {
            Probe::new(&tx)
        };
        let p = node.spawn(probe).unwrap();
        watches.push(node.watch(p.pid()));
        procs.push(p);
    }
    for (i, p) in procs.iter().enumerate() {
        match i % 8 {
            0 => stop(p, ExitReason::Normal),
            1 => stop(p, ExitReason::custom("done")),
            2 => p.try_send(Cmd::Panic("crash".into())).unwrap(),
            3 => node.kill(p.pid()),
            4 => {
                // Linked to the next one (a 5), which it takes down.
                let next = procs[i + 1].pid();
                with_ctx(p, move |ctx| ctx.link(next)).await.unwrap();
                node.kill(p.pid());
            }
            7 => node.exit(p.pid(), ExitReason::Shutdown),
            _ => {} // 5: taken down by 4; 6: init fails
        }
    }
    for w in watches {
        reason(w).await;
    }
    assert_eq!(
        node.stats().processes,
        baseline,
        "the count is exact once every exit is reported"
    );

    // All the freed slots can be used again, and the limit still holds.
    let mut again = Vec::new();
    for _ in 0..N {
        again.push(node.spawn(Probe::new(&tx)).expect("a freed slot"));
    }
    assert!(matches!(
        node.spawn(Probe::new(&tx)),
        Err(SpawnError::ProcessLimit { .. })
    ));
    for p in &again {
        ping(p).await.unwrap();
    }
    ping(&keeper).await.unwrap();
    let s = node.stats();
    assert_eq!(s.processes, N + 1);
    assert_eq!(s.exited as usize, N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_is_free_as_soon_as_the_exit_is_reported() {
    // At the limit, a process that learns of an exit (a watch here; a supervisor's
    // exit signal or Down alike) can spawn the replacement at once.
    let node = Node::builder()
        .max_processes(1)
        .reserved_processes(0)
        .build()
        .unwrap();
    let (tx, _rx) = events();
    for i in 0..200 {
        let p = node
            .spawn(Probe::new(&tx))
            .unwrap_or_else(|e| panic!("round {i}: {e}"));
        let w = node.watch(p.pid());
        stop(&p, ExitReason::Normal);
        assert_eq!(reason(w).await, ExitReason::Normal);
        assert_eq!(
            node.stats().processes,
            0,
            "round {i}: the exited process is still counted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_is_free_when_a_linked_trapping_process_handles_the_exit() {
    // The supervisor pattern: a trapping process replaces a linked child when it
    // learns of its exit, with the table at its limit.
    let node = Node::builder()
        .max_processes(2)
        .reserved_processes(0)
        .build()
        .unwrap();
    let (tx, mut rx) = events();
    let sup = spawn_probe(&node, Probe::new(&tx).trapping(), &mut rx).await;
    for i in 0..100 {
        let child_probe = Probe::new(&tx);
        let child = with_ctx(&sup, move |ctx| ctx.spawn_link(child_probe))
            .await
            .unwrap_or_else(|e| panic!("round {i}: {e}"));
        expect_ev(&mut rx, child.pid(), Ev::Init).await;
        node.kill(child.pid());
        expect_ev(&mut rx, sup.pid(), Ev::Exit(child.pid(), ExitReason::Killed)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_every_process_and_refuses_later_spawns() {
    let node = node();
    let (tx, mut rx) = events();
    let trapping = spawn_probe(&node, Probe::new(&tx).trapping(), &mut rx).await;
    let plain = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let busy_plain = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let gate = Gate::new();
    block(&busy_plain, &mut rx, &gate).await;
    let (wt, wp, wb) = (
        node.watch(trapping.pid()),
        node.watch(plain.pid()),
        node.watch(busy_plain.pid()),
    );

    let report = within("shutdown", node.shutdown()).await;
    assert_eq!((report.stopped, report.killed, report.remaining), (3, 0, 0));
    // The trapping process ran terminate(Shutdown); the others exited without it.
    assert_eq!(reason(wt).await, ExitReason::Shutdown);
    assert_eq!(reason(wp).await, ExitReason::Shutdown);
    assert_eq!(reason(wb).await, ExitReason::Shutdown);
    expect_ev(&mut rx, trapping.pid(), Ev::Terminate(ExitReason::Shutdown)).await;
    expect_quiet(&mut rx);

    let s = node.stats();
    assert_eq!(s.processes, 0);
    assert_eq!(s.exits_shutdown, 3);
    assert!(matches!(
        node.spawn(Probe::new(&tx)),
        Err(SpawnError::ShuttingDown)
    ));
    assert!(matches!(
        node.start(Probe::new(&tx)).await,
        Err(SpawnError::ShuttingDown)
    ));
    assert!(!trapping.is_alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_kills_processes_stuck_past_the_timeout() {
    let node = Node::builder()
        .shutdown_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let (tx, mut rx) = events();
    // A trapping process stuck in a handler never gets to its shutdown signal.
    let stuck = spawn_probe(&node, Probe::new(&tx).trapping(), &mut rx).await;
    let quick = spawn_probe(&node, Probe::new(&tx).trapping(), &mut rx).await;
    let gate = Gate::new();
    block(&stuck, &mut rx, &gate).await;
    let (ws, wq) = (node.watch(stuck.pid()), node.watch(quick.pid()));

    let report = within("shutdown", node.shutdown()).await;
    assert_eq!((report.stopped, report.killed, report.remaining), (1, 1, 0));
    assert_eq!(reason(ws).await, ExitReason::Killed);
    assert_eq!(reason(wq).await, ExitReason::Shutdown);
    expect_ev(&mut rx, quick.pid(), Ev::Terminate(ExitReason::Shutdown)).await;
    expect_quiet(&mut rx);
    assert_eq!(node.stats().processes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_of_an_idle_node_returns_at_once() {
    let node = node();
    let report = within("shutdown", node.shutdown()).await;
    assert_eq!((report.stopped, report.killed, report.remaining), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_pid_never_reaches_the_next_process_in_its_slot() {
    let node = Node::builder()
        .max_processes(1)
        .reserved_processes(0)
        .build()
        .unwrap();
    let (tx, mut rx) = events();
    let old = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let stale = old.pid();
    node.register("old", stale).unwrap();
    let w = node.watch(stale);
    stop(&old, ExitReason::Normal);
    assert_eq!(reason(w).await, ExitReason::Normal);
    expect_ev(&mut rx, stale, Ev::Terminate(ExitReason::Normal)).await;

    let new = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let fresh = new.pid();
    assert_eq!(fresh.index(), stale.index(), "the only slot is reused");
    assert_ne!(fresh, stale);
    assert_ne!(fresh.generation(), stale.generation());

    assert!(node.lookup::<Probe>(stale).is_none());
    assert!(node.lookup::<Probe>(fresh).is_some());
    assert!(!node.is_alive(stale));
    assert!(node.process_info(stale).is_none());
    assert_eq!(node.whereis("old"), None);
    assert!(matches!(
        node.register("new", stale),
        Err(girder::RegistryError::NoProc(p)) if p == stale
    ));
    assert_eq!(within("watch", node.watch(stale)).await, ExitReason::NoProc);

    // Kills and exit signals through the stale pid do nothing to the new tenant.
    node.kill(stale);
    node.exit(stale, ExitReason::custom("wrong process"));
    // (Links and monitors through a stale pid: see the next test.)
    assert!(!old.is_alive());
    assert!(matches!(
        old.try_send(Cmd::Note(1)),
        Err(girder::SendError::Closed(_))
    ));
    ping(&new).await.expect("the new tenant is untouched");
    assert!(node.is_alive(fresh));
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_and_monitors_through_a_stale_pid_see_noproc() {
    let node = Node::builder()
        .max_processes(2)
        .reserved_processes(0)
        .build()
        .unwrap();
    let (tx, mut rx) = events();
    let watcher = spawn_probe(&node, Probe::new(&tx).trapping(), &mut rx).await;
    let old = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let stale = old.pid();
    let w = node.watch(stale);
    node.kill(stale);
    assert_eq!(reason(w).await, ExitReason::Killed);
    let new = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    assert_eq!(new.pid().index(), stale.index());

    with_ctx(&watcher, move |ctx| ctx.link(stale)).await.unwrap();
    expect_ev(&mut rx, watcher.pid(), Ev::Exit(stale, ExitReason::NoProc)).await;
    let mref = with_ctx(&watcher, move |ctx| ctx.monitor(stale)).await.unwrap();
    let down = next_ev(&mut rx).await;
    match down {
        (p, Ev::Down(d)) => {
            assert_eq!(p, watcher.pid());
            assert_eq!((d.monitor, d.pid, d.reason), (mref, stale, ExitReason::NoProc));
        }
        other => panic!("expected a Down, got {other:?}"),
    }
    assert_eq!(node.process_info(new.pid()).unwrap().links, 0);
    // The new tenant outlives the watcher: nothing ties them.
    let ww = node.watch(watcher.pid());
    node.kill(watcher.pid());
    assert_eq!(reason(ww).await, ExitReason::Killed);
    ping(&new).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_snapshot_lists_every_live_process() {
    let node = node();
    let (tx, mut rx) = events();
    let a = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let b = node
        .spawn_with(Probe::new(&tx).trapping(), SpawnOptions::new().name("bee"))
        .unwrap();
    expect_ev(&mut rx, b.pid(), Ev::Init).await;
    let mut pids: Vec<_> = node.processes().iter().map(|p| p.pid).collect();
    pids.sort();
    let mut want = vec![a.pid(), b.pid()];
    want.sort();
    assert_eq!(pids, want);
    let info = node.process_info(b.pid()).unwrap();
    assert_eq!(info.name.as_deref(), Some("bee"));
    assert!(info.trap_exit);
    assert_eq!(info.parent, None);
    assert!(info.actor_type.ends_with("Probe"));
}
