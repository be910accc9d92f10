//! The hooks watchers use: running handlers for the watchdog, sampled timings, and
//! rate-limited limit events.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use girder::observe::{self, Observer};
use girder::{Actor, Ctx, Flow, Node, Reply, Weight};

struct Sleeper;
enum Msg {
    Sleep(Duration),
    Ping(Reply<()>),
}
impl Weight for Msg {}

impl Actor for Sleeper {
    type Msg = Msg;
    async fn handle(&mut self, msg: Msg, _ctx: &mut Ctx<Self>) -> Flow {
        match msg {
            Msg::Sleep(d) => tokio::time::sleep(d).await,
            Msg::Ping(r) => r.send(()),
        }
        Flow::Continue
    }
}

/// Waits (at most 5 s) until `cond` holds.
async fn until(cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[derive(Default)]
struct Counting {
    handlers: AtomicU64,
    calls: AtomicU64,
}

impl Observer for Counting {
    fn handler_finished(&self, _actor_type: &'static str, _took: Duration) {
        self.handlers.fetch_add(1, Ordering::Relaxed);
    }
    fn call_finished(&self, _took: Duration, _ok: bool) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_handler_keeps_its_run_number_until_it_returns() {
    let node = Node::builder().build().unwrap();
    let a = node.spawn(Sleeper).unwrap();
    a.try_send(Msg::Sleep(Duration::from_millis(1500))).unwrap();
    until(|| !node.running_handlers().is_empty()).await;
    let first = node.running_handlers();
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].pid, a.pid());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        node.running_handlers(),
        first,
        "same run while the handler sleeps"
    );
    a.call(Msg::Ping, Duration::from_secs(5)).await.unwrap();
    // The reply is sent from inside the handler, just before it returns: wait for
    // the return, boundedly.
    until(|| node.running_handlers().is_empty()).await;
    assert!(node.running_handlers().is_empty(), "idle once handlers return");
    node.shutdown().await;
}

struct Waiter;
impl Actor for Waiter {
    type Msg = Duration;
    async fn init(&mut self, ctx: &mut Ctx<Self>) -> Result<(), girder::ExitReason> {
        ctx.exempt_from_watchdog();
        Ok(())
    }
    async fn handle(&mut self, d: Duration, _ctx: &mut Ctx<Self>) -> Flow {
        tokio::time::sleep(d).await;
        Flow::Continue
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exempt_process_is_left_out_of_running_handlers() {
    let node = Node::builder().build().unwrap();
    let w = node.start(Waiter).await.unwrap();
    let s = node.spawn(Sleeper).unwrap();
    w.try_send(Duration::from_millis(1500)).unwrap();
    s.try_send(Msg::Sleep(Duration::from_millis(1500))).unwrap();
    until(|| !node.running_handlers().is_empty()).await;
    // Give the exempt waiter the same time to show up, were it counted.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let running: Vec<_> = node.running_handlers().iter().map(|h| h.pid).collect();
    assert_eq!(running, [s.pid()]);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installed_observer_gets_sampled_handler_and_call_timings() {
    let obs = Arc::new(Counting::default());
    assert!(observe::set_observer(obs.clone()));
    assert!(
        !observe::set_observer(Arc::new(Counting::default())),
        "only the first is kept"
    );
    let node = Node::builder().build().unwrap();
    let a = node.spawn(Sleeper).unwrap();
    let n = 20 * observe::hooks::CALL_SAMPLE_EVERY as u64;
    for _ in 0..n {
        a.call(Msg::Ping, Duration::from_secs(5)).await.unwrap();
    }
    let handlers = obs.handlers.load(Ordering::Relaxed);
    let calls = obs.calls.load(Ordering::Relaxed);
    // Sampled: about 1 in 64 of each, never all of them.
    assert!(
        handlers >= 1 && handlers <= n / 8,
        "handlers timed: {handlers} of {n}"
    );
    assert!(calls >= 1 && calls <= n / 8, "calls timed: {calls} of {n}");
    node.shutdown().await;
}
