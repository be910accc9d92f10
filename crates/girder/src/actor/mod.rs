//! Actors: the `GenServer` behaviour.
//!
//! An [`Actor`] owns its state and handles one message at a time from its bounded
//! mailbox. It is started with [`Node::spawn`](crate::Node::spawn) (returns at once)
//! or [`Node::start`](crate::Node::start) (waits for `init`, as `gen_server:start`),
//! and reached through its typed address [`Addr<A>`].
//!
//! # Lifecycle
//!
//! 1. `init` runs first; an error ends the process with that reason (and `start`
//!    reports it as [`SpawnError::InitFailed`](crate::SpawnError::InitFailed)).
//! 2. `handle` runs for each message, priority lane first; `handle_exit` for exit
//!    signals when trapping exits; `handle_down` for monitors; `handle_timeout` when
//!    the idle timeout set with [`Ctx::set_idle_timeout`] passes without a message.
//! 3. Returning [`Flow::Stop`] (or calling [`Ctx::stop`]), a panic in a handler, or an
//!    exit signal from the parent while trapping exits ends the loop; then
//!    `terminate` runs with the reason. Kills and untrapped exit signals end the
//!    process at its next await point without `terminate`, as on the BEAM.
//!
//! A panic ends only the panicking process, with [`ExitReason::Panic`];
//! its links and monitors are told.
//!
//! # Calls
//!
//! [`Addr::call`] sends a request carrying a [`Reply`] slot and a deadline. The reply
//! travels through that one-shot slot, never through the caller's mailbox, so replies
//! cannot pile up. A request whose deadline has passed when the actor reaches it is
//! dropped without being handled and counted as expired: a slow server does not do
//! work nobody waits for.

mod addr;
mod call_timer;
mod ctx;
pub(crate) mod runner;
pub(crate) mod shared;

use std::future::Future;

pub use addr::{Addr, Reply};
pub use ctx::{Ctx, TimerRef};
pub(crate) use runner::spawn_actor;

use crate::{Down, ExitReason, Pid, Weight};

/// What a handler tells the process loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// Stop with this reason (`terminate` runs next).
    Stop(ExitReason),
}

/// A process with typed messages: girder's `GenServer`.
///
/// Only [`Actor::handle`] is required. Handlers are `async`; they may await, but the
/// process handles nothing else meanwhile (offload long work to a task).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use girder::{Actor, Ctx, Flow, Node, Reply, Weight};
///
/// struct Counter(u64);
///
/// enum Msg {
///     Add(u64),
///     Get(Reply<u64>),
/// }
/// impl Weight for Msg {}
///
/// impl Actor for Counter {
///     type Msg = Msg;
///
///     async fn handle(&mut self, msg: Msg, _ctx: &mut Ctx<Self>) -> Flow {
///         match msg {
///             Msg::Add(n) => self.0 += n,
///             Msg::Get(reply) => reply.send(self.0),
///         }
///         Flow::Continue
///     }
/// }
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let node = Node::builder().build()?;
/// let counter = node.spawn(Counter(0))?;
/// counter.try_send(Msg::Add(2))?;
/// counter.send(Msg::Add(3)).await?;
/// let n = counter.call(Msg::Get, Duration::from_secs(1)).await?;
/// assert_eq!(n, 5);
/// # Ok(()) }
/// ```
pub trait Actor: Sized + Send + 'static {
    /// The messages this actor handles. Their [`Weight`] counts against the mailbox's
    /// byte bound.
    type Msg: Weight + Send + 'static;

    /// Runs once, before any message. An error ends the process with that reason.
    fn init(&mut self, ctx: &mut Ctx<Self>) -> impl Future<Output = Result<(), ExitReason>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Handles one message.
    fn handle(&mut self, msg: Self::Msg, ctx: &mut Ctx<Self>) -> impl Future<Output = Flow> + Send;

    /// Handles an exit signal from a linked process (or an explicit `exit`) while
    /// trapping exits. The default keeps going.
    fn handle_exit(
        &mut self,
        from: Pid,
        reason: ExitReason,
        ctx: &mut Ctx<Self>,
    ) -> impl Future<Output = Flow> + Send {
        let _ = (from, reason, ctx);
        async { Flow::Continue }
    }

    /// Handles a monitor's `Down`. The default keeps going.
    fn handle_down(&mut self, down: Down, ctx: &mut Ctx<Self>) -> impl Future<Output = Flow> + Send {
        let _ = (down, ctx);
        async { Flow::Continue }
    }

    /// Runs when the idle timeout passes without a message. The default keeps going.
    fn handle_timeout(&mut self, ctx: &mut Ctx<Self>) -> impl Future<Output = Flow> + Send {
        let _ = ctx;
        async { Flow::Continue }
    }

    /// Internal: a stage subscription woke this process. Used by the stage
    /// behaviours; other actors never receive it.
    #[doc(hidden)]
    fn handle_wake(&mut self, token: u64, ctx: &mut Ctx<Self>) -> impl Future<Output = Flow> + Send {
        let _ = (token, ctx);
        async { Flow::Continue }
    }

    /// Runs once when the process stops through its own loop (stop, panic, parent
    /// exit while trapping, node shutdown while trapping). Not run on kills.
    fn terminate(&mut self, reason: &ExitReason, ctx: &mut Ctx<Self>) -> impl Future<Output = ()> + Send {
        let _ = (reason, ctx);
        async {}
    }
}
