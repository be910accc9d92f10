//! # girder
//!
//! An Erlang/OTP-style actor runtime that cannot be taken down by overload.
//!
//! girder keeps the BEAM's model — lightweight processes with mailboxes, links,
//! monitors, exit signals and `GenServer`-style actors — and closes its two classic
//! denial-of-service holes by construction:
//!
//! - **Unbounded mailboxes.** Every [`Mailbox`] is bounded by message count and by
//!   bytes, and all mailboxes together by a node-wide byte budget. A full mailbox
//!   applies the receiver's [`Overflow`] policy: hand the message back, make the sender
//!   wait, drop (counted), or kill the process — checked at every admission.
//! - **Process exhaustion.** The process table has a limit (`max_processes`, the BEAM's
//!   `+P`), checked before anything is allocated: past it `spawn` returns
//!   [`SpawnError::ProcessLimit`] at once, with headroom reserved so supervisors can
//!   still restore service.
//!
//! Every refusal, drop, expiry and kill is counted per process and node-wide
//! ([`Node::stats`], [`Node::processes`]).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use girder::{Actor, Ctx, Flow, Mailbox, Node, Overflow, Reply, Weight};
//!
//! struct Counter(u64);
//! enum Msg { Add(u64), Get(Reply<u64>) }
//! impl Weight for Msg {}
//!
//! impl Actor for Counter {
//!     type Msg = Msg;
//!     async fn handle(&mut self, msg: Msg, _ctx: &mut Ctx<Self>) -> Flow {
//!         match msg {
//!             Msg::Add(n) => self.0 += n,
//!             Msg::Get(reply) => reply.send(self.0),
//!         }
//!         Flow::Continue
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::builder()
//!     .max_processes(100_000)
//!     .mailbox_budget_bytes(256 << 20)
//!     .default_mailbox(Mailbox::bounded(1024).overflow(Overflow::Backpressure))
//!     .build()?;
//! let counter = node.spawn(Counter(0))?;
//! counter.try_send(Msg::Add(1))?;          // Err(SendError::Full(msg)) when full
//! counter.send(Msg::Add(1)).await?;        // waits for room
//! let n = counter.call(Msg::Get, Duration::from_millis(500)).await?;
//! assert_eq!(n, 2);
//! # Ok(()) }
//! ```
//!
//! # Modules
//!
//! - [`mailbox`]: lanes, bounds, overflow policies, weights, accounting.
//! - [`process`]: pids, the process table, exit reasons, links and monitors.
//! - [`actor`]: the `Actor` behaviour, addresses, calls, the context.
//! - [`node`]: the node, its limits, spawning, registry, shutdown.
//! - [`stage`]: demand-driven producers, producer-consumers and consumers (GenStage).
//! - [`supervisor`]: supervisors, dynamic supervisors, restart intensity, subtree budgets.
//! - [`observe`]: snapshots of the node and its processes.

pub mod actor;
mod error;
pub mod mailbox;
pub mod node;
pub mod observe;
pub mod process;
mod registry;
pub mod stage;
pub mod supervisor;
pub(crate) mod sync;

pub use actor::{Actor, Addr, Ctx, Flow, Reply, TimerRef};
pub use error::{BuildError, CallError, LinkError, RegistryError, SendError, SpawnError, TimerError};
pub use mailbox::{Mailbox, MailboxStats, Overflow, Weight};
pub use node::{ExitWatch, Node, NodeBuilder, ShutdownReport, SpawnOptions};
pub use observe::{NodeStats, ProcessInfo};
pub use process::{Down, ExitReason, MonitorRef, NodeId, Pid, ProcessState};
