//! The `Actor` behaviour (GenServer): init, calls, stopping, idle timeouts, lanes.

mod probe;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use girder::{Actor, CallError, Ctx, ExitReason, Flow, Reply, SpawnError, Weight};
use probe::*;

// ----- init -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_failure_makes_start_return_init_failed() {
    let node = node();
    let (tx, mut rx) = events();
    let err = within(
        "start",
        node.start(Probe::new(&tx).failing_init(ExitReason::custom("no database"))),
    )
    .await
    .expect_err("start reports the init failure");
    match err {
        SpawnError::InitFailed(msg) => assert_eq!(&*msg, "no database"),
        other => panic!("expected InitFailed, got {other:?}"),
    }
    let (_, ev) = next_ev(&mut rx).await;
    assert_eq!(ev, Ev::Init);
    eventually("the failed process is gone", || node.stats().processes == 0).await;
    expect_quiet(&mut rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_failure_ends_a_spawned_process_with_the_init_reason() {
    let node = node();
    let (tx, mut rx) = events();
    let gate = Gate::new();
    // Hold init back with a gate so the watch is in place before it fails.
    struct SlowFail(Gate);
    impl Actor for SlowFail {
        type Msg = u32;
        async fn init(&mut self, _: &mut Ctx<Self>) -> Result<(), ExitReason> {
            self.0.pass().await;
            Err(ExitReason::custom("bad config"))
        }
        async fn handle(&mut self, _: u32, _: &mut Ctx<Self>) -> Flow {
            panic!("no message is handled after a failed init");
        }
        async fn terminate(&mut self, _: &ExitReason, _: &mut Ctx<Self>) {
            panic!("terminate does not run after a failed init");
        }
    }
    let p = node.spawn(SlowFail(gate.clone())).unwrap();
    let w = node.watch(p.pid());
    // Messages sent before init fails are dropped (and counted), never handled.
    p.try_send(1).unwrap();
    p.try_send(2).unwrap();
    gate.open();
    assert_eq!(reason(w).await, ExitReason::custom("bad config"));
    let s = node.stats();
    assert_eq!((s.accepted, s.handled, s.dropped), (2, 0, 2));
    expect_quiet(&mut rx);
    drop(tx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_panic_is_reported_as_init_failed() {
    struct Boom;
    impl Actor for Boom {
        type Msg = ();
        async fn init(&mut self, _: &mut Ctx<Self>) -> Result<(), ExitReason> {
            panic!("init exploded")
        }
        async fn handle(&mut self, _: (), _: &mut Ctx<Self>) -> Flow {
            Flow::Continue
        }
    }
    let node = node();
    match within("start", node.start(Boom)).await {
        Err(SpawnError::InitFailed(msg)) => assert!(msg.contains("init exploded"), "{msg}"),
        other => panic!("expected InitFailed, got {other:?}"),
    }
    eventually("the failed process is gone", || node.stats().processes == 0).await;
    assert_eq!(node.stats().panics, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_returns_once_init_has_run() {
    let node = node();
    let (tx, mut rx) = events();
    let p = within("start", node.start(Probe::new(&tx))).await.unwrap();
    // The Init event was sent before start returned.
    assert_eq!(rx.try_recv().unwrap(), (p.pid(), Ev::Init));
    ping(&p).await.unwrap();
}

// ----- calls -----

/// A counter whose handler counts how often it ran (calls that expire must not run).
struct Server {
    value: u64,
    handled: Arc<AtomicUsize>,
}

enum Req {
    Add(u64),
    Get(Reply<u64>),
    /// Blocks the server at a gate, then tells the test it got past.
    Hold(Gate, tokio::sync::oneshot::Sender<()>),
    /// Drops the reply without answering.
    Ignore(Reply<u64>),
    /// Stops while holding the reply.
    StopWith(Reply<u64>),
    /// Panics while holding the reply.
    PanicWith(Reply<u64>),
}

impl Weight for Req {}

impl Actor for Server {
    type Msg = Req;

    async fn handle(&mut self, msg: Req, _ctx: &mut Ctx<Self>) -> Flow {
        self.handled.fetch_add(1, Ordering::SeqCst);
        match msg {
            Req::Add(n) => self.value += n,
            Req::Get(r) => r.send(self.value),
            Req::Hold(gate, entered) => {
                let _ = entered.send(());
                gate.pass().await;
            }
            Req::Ignore(r) => drop(r),
            Req::StopWith(_r) => return Flow::Stop(ExitReason::custom("stopped mid-call")),
            Req::PanicWith(_r) => panic!("crashed mid-call"),
        }
        Flow::Continue
    }
}

fn server(node: &girder::Node) -> (girder::Addr<Server>, Arc<AtomicUsize>) {
    let handled = Arc::new(AtomicUsize::new(0));
    let addr = node
        .spawn(Server {
            value: 0,
            handled: handled.clone(),
        })
        .unwrap();
    (addr, handled)
}

async fn hold(addr: &girder::Addr<Server>, gate: &Gate) {
    let (etx, erx) = tokio::sync::oneshot::channel();
    addr.try_send(Req::Hold(gate.clone(), etx)).unwrap();
    within("server reaches the gate", erx).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_round_trip_returns_the_reply() {
    let node = node();
    let (s, _) = server(&node);
    s.try_send(Req::Add(2)).unwrap();
    s.send(Req::Add(3)).await.unwrap();
    assert_eq!(s.call(Req::Get, HANG).await, Ok(5));
    for i in 0..100 {
        s.send(Req::Add(1)).await.unwrap();
        assert_eq!(s.call(Req::Get, HANG).await, Ok(6 + i));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_timeout_drops_the_request_unhandled_and_counts_it_expired() {
    let node = node();
    let (s, handled) = server(&node);
    let gate = Gate::new();
    hold(&s, &gate).await;
    assert_eq!(handled.load(Ordering::SeqCst), 1);

    // The server is busy: the call times out while its request waits in the mailbox.
    assert_eq!(
        s.call(Req::Get, Duration::from_millis(50)).await,
        Err(CallError::Timeout)
    );
    assert_eq!(node.process_info(s.pid()).unwrap().mailbox.len, 1);
    gate.open();
    // A later call is answered; the expired request before it was dropped unhandled.
    assert_eq!(s.call(Req::Get, HANG).await, Ok(0));
    assert_eq!(
        handled.load(Ordering::SeqCst),
        2,
        "only Hold and the second Get ran the handler"
    );
    let m = node.process_info(s.pid()).unwrap().mailbox;
    assert_eq!((m.accepted, m.handled, m.expired, m.len), (3, 2, 1, 0));
    assert_eq!(node.stats().expired, 1);
}

/// A call's deadline timer is kept per thread and reused by the next call: a shorter
/// deadline after a longer one still fires on time, and a timer that fired does not
/// make the next call time out early. (Paused clock: an armed deadline that was not
/// moved would show as a wait of a minute.)
#[tokio::test(start_paused = true)]
async fn call_deadlines_hold_when_their_timers_are_reused() {
    const LONG: Duration = Duration::from_secs(60);
    let node = node();
    let (s, _) = server(&node);
    for round in 0..3 {
        // Waits for the answer: arms a timer for a minute, kept for reuse after.
        assert_eq!(s.call(Req::Get, LONG).await, Ok(0));

        let gate = Gate::new();
        hold(&s, &gate).await;
        let t0 = tokio::time::Instant::now();
        assert_eq!(
            s.call(Req::Get, Duration::from_millis(50)).await,
            Err(CallError::Timeout)
        );
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(50) && waited < Duration::from_secs(1),
            "round {round}: a 50 ms call timed out after {waited:?}"
        );

        // The reused timer has fired; the next call still waits its full deadline.
        let opener = {
            let gate = gate.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                gate.open();
            })
        };
        let t0 = tokio::time::Instant::now();
        assert_eq!(s.call(Req::Get, LONG).await, Ok(0), "round {round}");
        assert!(t0.elapsed() >= Duration::from_secs(1));
        opener.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_to_a_dead_process_returns_down() {
    let node = node();
    let (s, _) = server(&node);
    let w = node.watch(s.pid());
    node.kill(s.pid());
    assert_eq!(reason(w).await, ExitReason::Killed);
    assert_eq!(s.call(Req::Get, HANG).await, Err(CallError::Down));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_to_a_process_killed_while_the_request_waits_returns_down() {
    let node = node();
    let (s, _) = server(&node);
    let gate = Gate::new();
    hold(&s, &gate).await;
    let s2 = s.clone();
    let call = tokio::spawn(async move { s2.call(Req::Get, HANG).await });
    eventually("the request is queued", || {
        node.process_info(s.pid()).is_some_and(|i| i.mailbox.len == 1)
    })
    .await;
    node.kill(s.pid());
    assert_eq!(within("call", call).await.unwrap(), Err(CallError::Down));
}

/// Known race (reported, not fixed here): the handler drops the reply as it stops or
/// panics, which wakes the caller before the exiting process closes its mailbox, so
/// the caller often sees `NoReply` instead of `Down`. Run with `--ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known race: a process that exits holding the reply may answer NoReply instead of Down"]
async fn call_to_a_process_that_exits_before_replying_returns_down() {
    let node = node();
    for round in 0..50 {
        let (s, _) = server(&node);
        assert_eq!(
            s.call(Req::StopWith, HANG).await,
            Err(CallError::Down),
            "round {round}: stop"
        );
        let (s, _) = server(&node);
        assert_eq!(
            s.call(Req::PanicWith, HANG).await,
            Err(CallError::Down),
            "round {round}: panic"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_reply_gives_no_reply() {
    let node = node();
    let (s, handled) = server(&node);
    assert_eq!(s.call(Req::Ignore, HANG).await, Err(CallError::NoReply));
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    assert_eq!(s.call(Req::Get, HANG).await, Ok(0), "the server lives on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_is_closed_once_the_caller_gave_up() {
    struct Check(tokio::sync::mpsc::UnboundedSender<bool>);
    enum M {
        Hold(Gate),
        Get(Reply<u64>),
    }
    impl Weight for M {}
    impl Actor for Check {
        type Msg = M;
        async fn handle(&mut self, msg: M, _: &mut Ctx<Self>) -> Flow {
            match msg {
                M::Hold(g) => g.pass().await,
                M::Get(r) => {
                    let _ = self.0.send(r.is_closed());
                    r.send(1);
                }
            }
            Flow::Continue
        }
    }
    let node = node();
    let (ctx_tx, mut closed) = tokio::sync::mpsc::unbounded_channel();
    let c = node.spawn(Check(ctx_tx)).unwrap();
    assert_eq!(c.call(M::Get, HANG).await, Ok(1));
    assert!(!within("reply state", closed.recv()).await.unwrap());
    // A caller whose future is dropped (not timed out) leaves a closed reply behind.
    let gate = Gate::new();
    c.try_send(M::Hold(gate.clone())).unwrap();
    let pending = c.call(M::Get, HANG);
    let _ = tokio::time::timeout(Duration::from_millis(20), pending).await;
    gate.open();
    assert!(within("reply state", closed.recv()).await.unwrap());
}

// ----- stopping -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_stop_runs_terminate_with_the_reason() {
    let node = node();
    let (tx, mut rx) = events();
    let p = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let w = node.watch(p.pid());
    stop(&p, ExitReason::custom("done"));
    expect_ev(&mut rx, p.pid(), Ev::Terminate(ExitReason::custom("done"))).await;
    assert_eq!(reason(w).await, ExitReason::custom("done"));
    assert!(!p.is_alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctx_stop_runs_terminate_after_the_handler_returns_and_handles_nothing_more() {
    let node = node();
    let (tx, mut rx) = events();
    let p = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let gate = Gate::new();
    block(&p, &mut rx, &gate).await;
    // Queued behind the block: a job that calls ctx.stop and carries on, then notes.
    p.try_send(Cmd::Run(job(|ctx| {
        ctx.stop(ExitReason::Normal);
        let _ = ctx.addr(); // the handler runs to its end
        Flow::Continue
    })))
    .unwrap();
    p.try_send(Cmd::Note(1)).unwrap();
    p.try_send(Cmd::Note(2)).unwrap();
    let w = node.watch(p.pid());
    gate.open();
    assert_eq!(reason(w).await, ExitReason::Normal);
    expect_ev(&mut rx, p.pid(), Ev::Terminate(ExitReason::Normal)).await;
    expect_quiet(&mut rx);
    let s = node.stats();
    assert_eq!(s.dropped, 2, "the notes still queued are counted as dropped");
}

// ----- idle timeout -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_calls_handle_timeout() {
    let node = node();
    let (tx, mut rx) = events();
    let p = spawn_probe(
        &node,
        Probe::new(&tx).idle_timeout(Duration::from_millis(20)),
        &mut rx,
    )
    .await;
    expect_ev(&mut rx, p.pid(), Ev::Timeout).await;
    ping(&p).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_is_reset_by_each_message() {
    let node = node();
    let (tx, mut rx) = events();
    let p = spawn_probe(
        &node,
        Probe::new(&tx).idle_timeout(Duration::from_millis(100)),
        &mut rx,
    )
    .await;
    // Virtual time: a message every 60 ms keeps the process from ever being idle
    // for 100 ms.
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        p.try_send(Cmd::Note(i)).unwrap();
        expect_ev(&mut rx, p.pid(), Ev::Note(i)).await;
    }
    expect_quiet(&mut rx);
    tokio::time::sleep(Duration::from_millis(150)).await;
    expect_ev(&mut rx, p.pid(), Ev::Timeout).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_timeout_can_stop_the_process() {
    struct Lazy;
    impl Actor for Lazy {
        type Msg = ();
        async fn handle(&mut self, _: (), ctx: &mut Ctx<Self>) -> Flow {
            ctx.set_idle_timeout(Some(Duration::from_millis(10)));
            Flow::Continue
        }
        async fn handle_timeout(&mut self, _: &mut Ctx<Self>) -> Flow {
            Flow::Stop(ExitReason::custom("idle"))
        }
    }
    let node = node();
    let p = node.spawn(Lazy).unwrap();
    let w = node.watch(p.pid());
    p.try_send(()).unwrap();
    assert_eq!(reason(w).await, ExitReason::custom("idle"));
}

// ----- lanes -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_messages_are_handled_before_queued_normal_ones() {
    let node = node();
    let (tx, mut rx) = events();
    let p = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let gate = Gate::new();
    block(&p, &mut rx, &gate).await;
    for i in 1..=3 {
        p.try_send(Cmd::Note(i)).unwrap();
    }
    p.try_send_priority(Cmd::Note(10)).unwrap();
    p.send_priority(Cmd::Note(11)).await.unwrap();
    p.try_send(Cmd::Note(4)).unwrap();
    gate.open();
    for n in [10, 11, 1, 2, 3, 4] {
        expect_ev(&mut rx, p.pid(), Ev::Note(n)).await;
    }
    let m = node.process_info(p.pid()).unwrap().mailbox;
    assert_eq!((m.len, m.priority_len), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_one_sender_are_handled_in_order() {
    let node = node();
    let (tx, mut rx) = events();
    let p = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    for i in 0..500 {
        p.send(Cmd::Note(i)).await.unwrap();
    }
    for i in 0..500 {
        expect_ev(&mut rx, p.pid(), Ev::Note(i)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctx_reports_pid_parent_and_address() {
    let node = node();
    let (tx, mut rx) = events();
    let parent = spawn_probe(&node, Probe::new(&tx), &mut rx).await;
    let pp = parent.pid();
    let (me, par, addr_pid, node_id) = with_ctx(&parent, |ctx| {
        (ctx.pid(), ctx.parent(), ctx.addr().pid(), ctx.node().id())
    })
    .await;
    assert_eq!((me, par, addr_pid, node_id), (pp, None, pp, node.id()));
    let child_probe = Probe::new(&tx);
    let child = with_ctx(&parent, move |ctx| ctx.spawn(child_probe))
        .await
        .unwrap();
    expect_ev(&mut rx, child.pid(), Ev::Init).await;
    let cpar = with_ctx(&child, |ctx| ctx.parent()).await;
    assert_eq!(cpar, Some(pp));
}
