//! Task supervisors follow Elixir's `Task.Supervisor`: `async` (linked), `async_nolink`,
//! fire-and-forget `start_child`, all within `max_children`; and `async_stream` as
//! `Task.async_stream`: bounded concurrency, ordered or not, per-item timeouts.

mod suptest;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use girder::supervisor::{OnTimeout, StreamOptions, SupervisorError, Task, TaskError, TaskSupervisor};
use girder::{Actor, Ctx, ExitReason, Flow, Node, Pid, Reply, Weight};
use suptest::*;
use tokio::sync::{oneshot, Semaphore};

async fn tasks(node: &Node, max_children: usize) -> TaskSupervisor {
    TaskSupervisor::start(node, TaskSupervisor::spec().max_children(max_children))
        .await
        .unwrap()
}

/// Waits until only the task supervisor itself is left: every task process is gone.
async fn only_the_supervisor_left(node: &Node) {
    eventually("every task process exits", || node.stats().processes == 1).await;
}

fn panic_reason() -> ExitReason {
    ExitReason::Panic("task failed".into())
}

/// Counts tasks running at once and remembers the peak.
#[derive(Clone, Default)]
struct Concurrency {
    now: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Concurrency {
    fn enter(&self) -> ConcurrencyGuard {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
        ConcurrencyGuard(self.now.clone())
    }

    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// Leaves on drop, so a killed task leaves too.
struct ConcurrencyGuard(Arc<AtomicUsize>);

impl Drop for ConcurrencyGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

// ----- async_nolink, start_child, max_children -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nolink_returns_the_result() {
    let node = node();
    let sup = tasks(&node, 16).await;
    let t = sup.async_nolink(async { 6 * 7 }).await.unwrap();
    assert_eq!(within("await", t.await_timeout(HANG)).await, Ok(42));
    only_the_supervisor_left(&node).await;
    assert_eq!(node.stats().restarts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_nolink_task_comes_back_as_an_exit() {
    let node = node();
    let sup = tasks(&node, 16).await;
    let t: Task<u32> = sup.async_nolink(async { panic!("task failed") }).await.unwrap();
    let pid = t.pid();
    assert_eq!(
        within("await", t.await_timeout(HANG)).await,
        Err(TaskError::Exit(panic_reason()))
    );
    assert!(!node.is_alive(pid));
    // Tasks are temporary: never restarted.
    only_the_supervisor_left(&node).await;
    assert_eq!(node.stats().restarts, 0);
    assert!(node.is_alive(sup.pid()));
    let c = sup.as_dynamic().count_children().await.unwrap();
    assert_eq!((c.specs, c.active), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_child_runs_fire_and_forget() {
    let node = node();
    let sup = tasks(&node, 16).await;
    let (tx, rx) = oneshot::channel();
    let pid = sup
        .start_child(async move {
            let _ = tx.send("done");
        })
        .await
        .unwrap();
    assert_eq!(within("task", rx).await, Ok("done"));
    within("exit", node.watch(pid)).await;
    only_the_supervisor_left(&node).await;
    eventually_children(&sup, 0).await;
}

async fn eventually_children(sup: &TaskSupervisor, n: usize) {
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let c = sup.as_dynamic().count_children().await.unwrap();
        if c.specs == n {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "children stay at {c:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_children_bounds_tasks() {
    let node = node();
    let sup = tasks(&node, 3).await;
    let gate = Arc::new(Semaphore::new(0));
    let mut running = Vec::new();
    for i in 0..3u32 {
        let g = gate.clone();
        running.push(
            sup.async_nolink(async move {
                let _ = g.acquire().await;
                i
            })
            .await
            .unwrap(),
        );
    }
    let s0 = node.stats().max_children_refusals;
    assert!(matches!(
        sup.async_nolink(async { 0 }).await,
        Err(SupervisorError::MaxChildren { limit: 3 })
    ));
    assert!(matches!(
        sup.start_child(async {}).await,
        Err(SupervisorError::MaxChildren { limit: 3 })
    ));
    assert_eq!(node.stats().max_children_refusals - s0, 2);
    gate.close();
    for (i, t) in running.into_iter().enumerate() {
        assert_eq!(within("await", t.await_timeout(HANG)).await, Ok(i as u32));
    }
    // Finished tasks give their slots back.
    eventually_children(&sup, 0).await;
    let t = sup.async_nolink(async { 7 }).await.unwrap();
    assert_eq!(t.await_timeout(HANG).await, Ok(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn await_timeout_kills_the_task() {
    let node = node();
    let sup = tasks(&node, 16).await;
    let t: Task<()> = sup.async_nolink(std::future::pending()).await.unwrap();
    let w = node.watch(t.pid());
    assert_eq!(
        t.await_timeout(Duration::from_millis(50)).await,
        Err(TaskError::Timeout)
    );
    assert_eq!(within("task killed", w).await, ExitReason::Killed);
    only_the_supervisor_left(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_task_kills_its_process() {
    let node = node();
    let sup = tasks(&node, 16).await;
    let t: Task<()> = sup.async_nolink(std::future::pending()).await.unwrap();
    let w = node.watch(t.pid());
    drop(t);
    assert_eq!(within("task killed", w).await, ExitReason::Killed);

    // So does abandoning an await_timeout half-way (a select, an outer timeout).
    let t: Task<()> = sup.async_nolink(std::future::pending()).await.unwrap();
    let w = node.watch(t.pid());
    let outer = tokio::time::timeout(Duration::from_millis(50), t.await_timeout(HANG)).await;
    assert!(outer.is_err(), "the outer timeout fired first");
    assert_eq!(within("task killed", w).await, ExitReason::Killed);
    only_the_supervisor_left(&node).await;
}

// ----- async (linked) -----

/// A process that runs linked tasks.
struct Caller {
    tasks: TaskSupervisor,
    log: Log,
    trap: bool,
    keep: Vec<Task<()>>,
}

enum CallerMsg {
    /// Runs a linked task that returns the value, or panics for `None`, and answers
    /// with its result.
    Run(Option<u32>, Reply<Result<u32, TaskError>>),
    /// Starts a linked task that never ends; answers with its pid.
    Forever(Reply<Pid>),
}

impl Weight for CallerMsg {}

impl Actor for Caller {
    type Msg = CallerMsg;

    async fn init(&mut self, ctx: &mut Ctx<Self>) -> Result<(), ExitReason> {
        ctx.trap_exit(self.trap);
        Ok(())
    }

    async fn handle(&mut self, msg: CallerMsg, ctx: &mut Ctx<Self>) -> Flow {
        match msg {
            CallerMsg::Run(v, reply) => {
                let t = self
                    .tasks
                    .async_linked(ctx, async move {
                        match v {
                            Some(v) => v,
                            None => panic!("task failed"),
                        }
                    })
                    .await
                    .unwrap();
                reply.send(t.await_timeout(HANG).await);
            }
            CallerMsg::Forever(reply) => {
                let t = self
                    .tasks
                    .async_linked(ctx, std::future::pending())
                    .await
                    .unwrap();
                reply.send(t.pid());
                self.keep.push(t);
            }
        }
        Flow::Continue
    }

    async fn handle_exit(&mut self, from: Pid, reason: ExitReason, _ctx: &mut Ctx<Self>) -> Flow {
        self.log.push(format!("exit:{from}:{reason}"));
        Flow::Continue
    }
}

async fn caller(node: &Node, sup: &TaskSupervisor, log: &Log, trap: bool) -> girder::Addr<Caller> {
    node.start(Caller {
        tasks: sup.clone(),
        log: log.clone(),
        trap,
        keep: Vec::new(),
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_task_that_ends_normally_leaves_the_caller_alone() {
    let node = node();
    let sup = tasks(&node, 16).await;
    let log = Log::new();
    let c = caller(&node, &sup, &log, false).await;
    let r = c.call(|r| CallerMsg::Run(Some(5), r), HANG).await.unwrap();
    assert_eq!(r, Ok(5));
    let r = c.call(|r| CallerMsg::Run(Some(6), r), HANG).await.unwrap();
    assert_eq!(r, Ok(6));
    assert!(c.is_alive());
    eventually("tasks gone", || node.stats().processes == 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_linked_task_takes_the_caller_down() {
    let node = node();
    let sup = tasks(&node, 16).await;
    let log = Log::new();
    let c = caller(&node, &sup, &log, false).await;
    let w = node.watch(c.pid());
    let r = c.call(|r| CallerMsg::Run(None, r), HANG).await;
    // The caller may or may not see the task's result before the exit signal ends
    // it; either way it ends, with the task's reason.
    if let Ok(answer) = r {
        assert_eq!(answer, Err(TaskError::Exit(panic_reason())));
    }
    assert_eq!(within("caller exit", w).await, panic_reason());
    assert!(
        node.is_alive(sup.pid()),
        "the task supervisor is not linked to the crash"
    );
    only_the_supervisor_left(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_caller_gets_the_crash_as_handle_exit() {
    let node = node();
    let sup = tasks(&node, 16).await;
    let log = Log::new();
    let c = caller(&node, &sup, &log, true).await;
    let r = c.call(|r| CallerMsg::Run(None, r), HANG).await.unwrap();
    assert_eq!(r, Err(TaskError::Exit(panic_reason())));
    eventually("handle_exit ran", || !log.snapshot().is_empty()).await;
    let ev = log.snapshot();
    assert_eq!(ev.len(), 1);
    assert!(ev[0].ends_with(":panic: task failed"), "{ev:?}");
    assert!(c.is_alive());
    // A normal task's exit reaches a trapping caller as a normal exit.
    let r = c.call(|r| CallerMsg::Run(Some(1), r), HANG).await.unwrap();
    assert_eq!(r, Ok(1));
    eventually("second handle_exit", || log.snapshot().len() == 2).await;
    assert!(log.snapshot()[1].ends_with(":normal"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_task_dies_with_its_caller() {
    let node = node();
    let sup = tasks(&node, 16).await;
    let log = Log::new();
    let c = caller(&node, &sup, &log, false).await;
    let task = c.call(CallerMsg::Forever, HANG).await.unwrap();
    let w = node.watch(task);
    node.kill(c.pid());
    assert_eq!(within("task exit", w).await, ExitReason::Killed);
    only_the_supervisor_left(&node).await;
}

// ----- async_stream -----

fn opts(max_concurrency: usize) -> StreamOptions {
    StreamOptions::default()
        .max_concurrency(max_concurrency)
        .timeout(HANG)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_stream_ordered_yields_results_in_input_order() {
    let node = node();
    let sup = tasks(&node, 64).await;
    let out: Vec<u64> = sup
        .async_stream(
            0..200u64,
            |n| async move {
                // Later items often finish first.
                tokio::time::sleep(Duration::from_micros((200 - n) * 20)).await;
                n * 2
            },
            opts(8),
        )
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(out, (0..200u64).map(|n| n * 2).collect::<Vec<_>>());
    only_the_supervisor_left(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_stream_unordered_yields_every_result() {
    let node = node();
    let sup = tasks(&node, 64).await;
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    // Item 0 waits until item 1's result came out: only an unordered stream can do it.
    let mut s = sup.async_stream(
        0..50u64,
        move |n| {
            let g = g.clone();
            async move {
                if n == 0 {
                    let _ = g.acquire().await;
                }
                n
            }
        },
        opts(4).ordered(false),
    );
    let mut out = Vec::new();
    while let Some(r) = within("next", s.next()).await {
        let n = r.unwrap();
        if n == 1 {
            gate.close();
        }
        out.push(n);
    }
    assert_ne!(out[0], 0, "item 0 could not finish first");
    out.sort_unstable();
    assert_eq!(out, (0..50).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_stream_never_runs_more_than_max_concurrency_tasks() {
    let node = node();
    let sup = tasks(&node, 64).await;
    for (max, ordered) in [(1, true), (3, true), (4, false), (7, false)] {
        let c = Concurrency::default();
        let c2 = c.clone();
        let n = sup
            .async_stream(
                0..300u32,
                move |i| {
                    let c = c2.clone();
                    async move {
                        let _in = c.enter();
                        tokio::time::sleep(Duration::from_micros(200 + u64::from(i % 7) * 100)).await;
                        i
                    }
                },
                opts(max).ordered(ordered),
            )
            .filter(|r| std::future::ready(r.is_ok()))
            .count()
            .await;
        assert_eq!(n, 300);
        assert!(c.peak() <= max, "peak {} above max_concurrency {max}", c.peak());
        assert!(c.peak() >= 1);
    }
    only_the_supervisor_left(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_stream_works_with_max_concurrency_equal_to_max_children() {
    let node = node();
    let sup = tasks(&node, 4).await;
    let results: Vec<_> = sup
        .async_stream(0..2_000u32, |i| async move { i }, opts(4).ordered(false))
        .collect()
        .await;
    let errors: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert!(
        errors.is_empty(),
        "{} of 2000 failed, e.g. {:?}",
        errors.len(),
        errors[0]
    );
    assert!(node.stats().processes_hwm <= 1 + 2 * 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_stream_runs_a_large_input_with_bounded_concurrency() {
    const N: u64 = 100_000;
    const MAX: usize = 8;
    let node = node();
    let sup = tasks(&node, 64).await;
    let c = Concurrency::default();
    let c2 = c.clone();
    let mut s = sup.async_stream(
        0..N,
        move |i| {
            let c = c2.clone();
            async move {
                let _in = c.enter();
                tokio::task::yield_now().await;
                i
            }
        },
        opts(MAX),
    );
    let (mut count, mut sum, mut next) = (0u64, 0u64, 0u64);
    while let Some(r) = s.next().await {
        let i = r.expect("every item has a result");
        assert_eq!(i, next, "in input order");
        next += 1;
        count += 1;
        sum += i;
    }
    assert_eq!(count, N);
    assert_eq!(sum, N * (N - 1) / 2);
    assert!(c.peak() <= MAX, "peak {}", c.peak());
    // Bounded memory: a new task starts only once the previous one of its slot has
    // exited (its watchers told); that one may still be leaving the table.
    let hwm = node.stats().processes_hwm;
    assert!(
        hwm <= 1 + 2 * MAX,
        "live processes peaked at {hwm}: tasks beyond max_concurrency"
    );
    only_the_supervisor_left(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_stream_timeout_kill_task_yields_timeout_and_continues() {
    let node = node();
    let sup = tasks(&node, 64).await;
    let out: Vec<_> = sup
        .async_stream(
            0..10u32,
            |i| async move {
                if i == 3 || i == 7 {
                    std::future::pending::<()>().await;
                }
                i
            },
            opts(2)
                .timeout(Duration::from_millis(100))
                .on_timeout(OnTimeout::KillTask),
        )
        .collect()
        .await;
    let expected: Vec<_> = (0..10u32)
        .map(|i| {
            if i == 3 || i == 7 {
                Err(TaskError::Timeout)
            } else {
                Ok(i)
            }
        })
        .collect();
    assert_eq!(out, expected);
    only_the_supervisor_left(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_stream_timeout_exit_yields_timeout_and_ends() {
    let node = node();
    let sup = tasks(&node, 64).await;
    let started = Arc::new(AtomicUsize::new(0));
    let st = started.clone();
    let out: Vec<_> = sup
        .async_stream(
            0..1_000u32,
            move |i| {
                st.fetch_add(1, Ordering::SeqCst);
                async move {
                    if i == 3 {
                        std::future::pending::<()>().await;
                    }
                    if i > 3 {
                        // Running when the stream ends: must be killed with it.
                        std::future::pending::<()>().await;
                    }
                    i
                }
            },
            opts(3)
                .timeout(Duration::from_millis(100))
                .on_timeout(OnTimeout::Exit),
        )
        .collect()
        .await;
    assert_eq!(out, [Ok(0), Ok(1), Ok(2), Err(TaskError::Timeout)]);
    assert!(started.load(Ordering::SeqCst) <= 3 + 3, "items pulled lazily");
    only_the_supervisor_left(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_kills_its_running_tasks() {
    let node = node();
    let sup = tasks(&node, 64).await;
    let c = Concurrency::default();
    let c2 = c.clone();
    let mut s = sup.async_stream(
        0..100u32,
        move |_| {
            let c = c2.clone();
            async move {
                let _in = c.enter();
                std::future::pending::<u32>().await
            }
        },
        opts(4),
    );
    let deadline = tokio::time::Instant::now() + HANG;
    while c.now.load(Ordering::SeqCst) < 4 {
        assert!(tokio::time::Instant::now() < deadline, "tasks did not start");
        // Drives the stream without consuming it.
        let _ = tokio::time::timeout(Duration::from_millis(5), s.next()).await;
    }
    assert_eq!(node.stats().processes, 1 + 4);
    drop(s);
    only_the_supervisor_left(&node).await;
    eventually("task bodies dropped", || c.now.load(Ordering::SeqCst) == 0).await;
    assert_eq!(c.peak(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_item_yields_an_exit_and_the_stream_goes_on() {
    let node = node();
    let sup = tasks(&node, 64).await;
    let out: Vec<_> = sup
        .async_stream(
            0..6u32,
            |i| async move {
                if i == 2 {
                    panic!("task failed");
                }
                i
            },
            opts(2),
        )
        .collect()
        .await;
    assert_eq!(
        out,
        [
            Ok(0),
            Ok(1),
            Err(TaskError::Exit(panic_reason())),
            Ok(3),
            Ok(4),
            Ok(5)
        ]
    );
}
