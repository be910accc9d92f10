//! # girder-net
//!
//! girder's front door: where a girder node meets the network.
//!
//! - [`resp`]: a bounded, incremental RESP2 parser and encoder.
//! - [`guard`]: reusable overload guards — per-peer rate limits with bans, a circuit
//!   breaker, a dedup window.
//! - [`server`]: the acceptor pool and the RESP pub/sub server `girder serve` runs.

pub mod guard;
pub mod resp;
pub mod server;
