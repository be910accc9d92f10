//! Compile-time proofs that girder's public types can cross threads, in the style of
//! tokio's `tests/async_send_sync.rs`: if a type loses `Send` or `Sync` (or a future
//! returned by the API stops being `Send`), this file stops compiling.
//!
//! Most assertions are generic over the actor type, the message type or the reply
//! type, so they hold for every instantiation, not only for the sample actor below.

#![allow(dead_code, clippy::extra_unused_type_parameters)]

use std::error::Error;
use std::future::Future;
use std::time::Duration;

use girder::{
    Actor, Addr, BuildError, CallError, Ctx, Down, ExitReason, ExitWatch, Flow, LinkError, Mailbox,
    MailboxStats, MonitorRef, Node, NodeBuilder, NodeId, NodeStats, Overflow, Pid, ProcessInfo, ProcessState,
    RegistryError, Reply, SendError, ShutdownReport, SpawnError, SpawnOptions, TimerError, TimerRef, Weight,
};

fn send<T: Send>() {}
fn sync<T: Sync>() {}
fn send_sync_static<T: Send + Sync + 'static>() {}
fn error<T: Error + Send + Sync + 'static>() {}
fn send_future<F: Future + Send>(_: F) {}
fn send_output<F: Future + Send>(_: &F)
where
    F::Output: Send,
{
}

/// Plain data, handles and configuration: `Send + Sync + 'static`.
#[test]
fn plain_types_are_send_sync_static() {
    send_sync_static::<Node>();
    send_sync_static::<NodeBuilder>();
    send_sync_static::<SpawnOptions>();
    send_sync_static::<Mailbox>();
    send_sync_static::<Overflow>();
    send_sync_static::<MailboxStats>();
    send_sync_static::<NodeStats>();
    send_sync_static::<ProcessInfo>();
    send_sync_static::<ProcessState>();
    send_sync_static::<Pid>();
    send_sync_static::<NodeId>();
    send_sync_static::<ExitReason>();
    send_sync_static::<Down>();
    send_sync_static::<MonitorRef>();
    send_sync_static::<ExitWatch>();
    send_sync_static::<ShutdownReport>();
    send_sync_static::<TimerRef>();
    send_sync_static::<Flow>();
}

/// Error types can go into `Box<dyn Error + Send + Sync>` (and so into `anyhow`).
#[test]
fn errors_are_send_sync_static_errors() {
    error::<BuildError>();
    error::<SpawnError>();
    error::<CallError>();
    error::<RegistryError>();
    error::<TimerError>();
    error::<LinkError>();
    error::<SendError<u64>>();
    error::<SendError<String>>();
    let boxed: Box<dyn Error + Send + Sync> = Box::new(SendError::Full(1u32));
    assert_eq!(boxed.to_string(), "mailbox full");
}

/// `SendError<T>` carries the message back: it is `Send`/`Sync` exactly when the
/// message is.
fn send_error_follows_its_message<T: Send>() {
    send::<SendError<T>>();
}
fn send_error_sync_follows_its_message<T: Sync>() {
    sync::<SendError<T>>();
}

/// For every actor: addresses are shareable handles, and the context a handler gets
/// is `Send` (handler futures must be `Send`, and they hold `&mut Ctx`).
fn actor_handles<A: Actor>() {
    send_sync_static::<Addr<A>>();
    send::<Ctx<A>>();
    sync::<Ctx<A>>();
}

/// A reply slot crosses threads with its value.
fn reply_slot<R: Send + 'static>() {
    send_sync_static::<Reply<R>>();
}

/// The futures the API returns are `Send` (they can be `tokio::spawn`ed), for every
/// actor, message and reply type.
fn futures_are_send<A: Actor, R: Send + 'static>(
    node: &Node,
    addr: &Addr<A>,
    msg: A::Msg,
    request: impl FnOnce(Reply<R>) -> A::Msg + Send,
    actor: A,
) where
    A::Msg: Send,
{
    let f = addr.send(msg);
    send_output(&f);
    send_future(f);
    send_future(addr.call(request, Duration::from_millis(1)));
    let f = node.start(actor);
    send_output(&f);
    send_future(f);
    send_future(node.shutdown());
    send_future(node.shutdown_timeout(Duration::from_millis(1)));
    send_future(node.watch(addr.pid()));
}

fn more_futures_are_send<A: Actor>(node: &Node, addr: &Addr<A>, a: A::Msg, b: A::Msg, actor: A) {
    send_future(addr.send_priority(a));
    send_future(addr.send_timeout(b, Duration::from_millis(1)));
    send_future(node.start_with(actor, SpawnOptions::new()));
}

// ----- a concrete actor, to instantiate the generic assertions -----

struct Counter(u64);

enum Msg {
    Add(u64),
    Get(Reply<u64>),
}

impl Weight for Msg {}

impl Actor for Counter {
    type Msg = Msg;

    async fn handle(&mut self, msg: Msg, _ctx: &mut Ctx<Self>) -> Flow {
        match msg {
            Msg::Add(n) => self.0 += n,
            Msg::Get(r) => r.send(self.0),
        }
        Flow::Continue
    }
}

/// An actor whose messages are `Send` but not `Sync`.
struct CellActor;

/// `Send`, not `Sync`.
struct NotSync(std::cell::Cell<u8>);

impl Weight for NotSync {}

impl Actor for CellActor {
    type Msg = NotSync;

    async fn handle(&mut self, _: Self::Msg, _ctx: &mut Ctx<Self>) -> Flow {
        Flow::Continue
    }
}

#[test]
fn generic_assertions_instantiate() {
    actor_handles::<Counter>();
    // Even when the message type is not `Sync`, the address and context are: the
    // mailbox owns messages, it never shares them.
    actor_handles::<CellActor>();
    reply_slot::<u64>();
    reply_slot::<String>();
    reply_slot::<std::cell::Cell<u8>>();
    send_error_follows_its_message::<String>();
    send_error_follows_its_message::<std::cell::Cell<u8>>();
    send_error_sync_follows_its_message::<String>();
}

#[tokio::test]
async fn api_futures_are_send_and_spawnable() {
    let node = Node::builder().build().unwrap();
    let addr = node.spawn(Counter(0)).unwrap();
    futures_are_send(&node, &addr, Msg::Add(1), Msg::Get, Counter(0));
    more_futures_are_send(&node, &addr, Msg::Add(1), Msg::Add(1), Counter(0));

    // And they really run on another worker.
    let (n2, a2) = (node.clone(), addr.clone());
    let got = tokio::spawn(async move {
        a2.send(Msg::Add(2)).await.unwrap();
        let started = n2.start(Counter(5)).await.unwrap();
        let five = started.call(Msg::Get, Duration::from_secs(5)).await.unwrap();
        let two = a2.call(Msg::Get, Duration::from_secs(5)).await.unwrap();
        (five, two)
    })
    .await
    .unwrap();
    assert_eq!(got.0, 5);
    assert!(got.1 >= 2);
    node.shutdown().await;
}

// ----- supervision -----

mod supervision {
    use super::*;
    use girder::supervisor::{
        Backoff, ChildCounts, ChildInfo, ChildKind, ChildSpec, DynamicSupervisor, OnTimeout, Restart,
        RestartIntensity, Shutdown, Strategy, StreamOptions, Supervisor, SupervisorError, SupervisorMsg,
        SupervisorRef, SupervisorSpec, Task, TaskError, TaskSupervisor,
    };

    #[test]
    fn supervision_types_are_send_sync_static() {
        send_sync_static::<SupervisorSpec>();
        send_sync_static::<ChildSpec>();
        send_sync_static::<Strategy>();
        send_sync_static::<Restart>();
        send_sync_static::<Shutdown>();
        send_sync_static::<ChildKind>();
        send_sync_static::<RestartIntensity>();
        send_sync_static::<Backoff>();
        send_sync_static::<ChildInfo>();
        send_sync_static::<ChildCounts>();
        send_sync_static::<SupervisorRef>();
        send_sync_static::<DynamicSupervisor>();
        send_sync_static::<TaskSupervisor>();
        send_sync_static::<StreamOptions>();
        send_sync_static::<OnTimeout>();
        send_sync_static::<SupervisorMsg>();
        send_sync_static::<Addr<Supervisor>>();
        send::<Supervisor>();
        error::<SupervisorError>();
        error::<TaskError>();
        task_handle::<u64>();
        task_handle::<String>();
    }

    /// A task handle crosses threads with its result type.
    fn task_handle<T: Send + 'static>() {
        send_sync_static::<Task<T>>();
    }

    /// The supervision futures can be spawned.
    fn futures_are_send(
        node: &Node,
        sup: &SupervisorRef,
        dynamic: &DynamicSupervisor,
        tasks: &TaskSupervisor,
    ) {
        send_future(Supervisor::start(node, SupervisorSpec::new(Strategy::OneForOne)));
        send_future(sup.which_children());
        send_future(sup.count_children());
        send_future(sup.terminate_child("x"));
        send_future(sup.restart_child("x"));
        send_future(DynamicSupervisor::start(node, DynamicSupervisor::spec()));
        send_future(dynamic.which_children());
        send_future(TaskSupervisor::start(node, TaskSupervisor::spec()));
        send_future(tasks.start_child(async {}));
        send_future(tasks.async_nolink(async { 1u8 }));
    }

    fn task_futures_are_send<T: Send + 'static>(task: Task<T>) {
        send_future(task.await_timeout(Duration::from_millis(1)));
    }

    #[test]
    fn generic_assertions_instantiate() {
        let _ = futures_are_send;
        let _ = task_futures_are_send::<u64>;
    }
}

// ----- stages -----

mod stages {
    use super::*;
    use girder::stage::{
        self, BufferKeep, Cancel, Consumer, ConsumerStage, Dispatcher, IterProducer, Producer,
        ProducerConsumer, ProducerConsumerStage, ProducerOptions, ProducerStage, PushError, PushProducer,
        PushReady, Pusher, StageCounters, StageError, StageMsg, StageStats, SubscribeOptions, SubscriptionId,
    };

    #[test]
    fn stage_types_are_send_sync_static() {
        send_sync_static::<Cancel>();
        send_sync_static::<SubscribeOptions>();
        send_sync_static::<SubscriptionId>();
        send_sync_static::<BufferKeep>();
        send_sync_static::<StageStats>();
        send_sync_static::<StageCounters>();
        send_sync_static::<PushReady>();
        error::<StageError>();
        error::<PushError<u64>>();
        events::<u64>();
        events::<String>();
    }

    /// Per event type: options, dispatchers and push handles are shareable.
    fn events<E: Send + Sync + 'static>() {
        send_sync_static::<ProducerOptions<E>>();
        send_sync_static::<Dispatcher<E>>();
        send_sync_static::<Pusher<E>>();
        send::<PushProducer<E>>();
        send::<IterProducer<std::vec::IntoIter<E>>>();
    }

    /// Stage processes are actors: `Send`, with `Send + Sync` addresses.
    fn stage_processes<P: Producer, C: Consumer, X: ProducerConsumer>() {
        send::<ProducerStage<P>>();
        send::<ConsumerStage<C>>();
        send::<ProducerConsumerStage<X>>();
        send_sync_static::<Addr<ProducerStage<P>>>();
        send_sync_static::<Addr<ConsumerStage<C>>>();
        send_sync_static::<Addr<ProducerConsumerStage<X>>>();
        send::<StageMsg<P::Info, (), P::Event>>();
    }

    fn futures_are_send<P: Producer, C: Consumer<Event = P::Event>>(
        consumer: &Addr<ConsumerStage<C>>,
        producer: &Addr<ProducerStage<P>>,
        pusher: &Pusher<P::Event>,
        event: P::Event,
        id: SubscriptionId,
    ) where
        P::Event: Sync,
    {
        send_future(stage::subscribe(consumer, producer, SubscribeOptions::default()));
        send_future(stage::cancel(consumer, id));
        send_future(pusher.push(event));
    }

    #[test]
    fn generic_assertions_instantiate() {
        let _ = stage_processes::<IterProducer<std::vec::IntoIter<u8>>, Sum, IterDouble>;
        let _ = futures_are_send::<IterProducer<std::vec::IntoIter<u8>>, Sum>;
    }

    struct Sum(u64);

    impl Consumer for Sum {
        type Event = u8;
        type Info = ();

        async fn handle_events(&mut self, events: Vec<u8>, _ctx: &mut Ctx<ConsumerStage<Self>>) -> Flow {
            self.0 += events.iter().map(|&e| u64::from(e)).sum::<u64>();
            Flow::Continue
        }
    }

    struct IterDouble;

    impl ProducerConsumer for IterDouble {
        type In = u8;
        type Out = u16;
        type Info = ();

        async fn handle_events(
            &mut self,
            events: Vec<u8>,
            _ctx: &mut Ctx<ProducerConsumerStage<Self>>,
        ) -> Vec<u16> {
            events.into_iter().map(|e| u16::from(e) * 2).collect()
        }
    }
}
