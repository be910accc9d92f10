//! Acceptors: `num_acceptors` processes sharing the listening socket (the ranch
//! model). Each admits or refuses every connection it accepts: banned peers, the
//! `max_connections` cap, the per-peer cap, and a connection process that cannot be
//! spawned (process limit, subtree budget, `MaxChildren`) all get a short refusal the
//! client understands, and are counted.
//!
//! An acceptor's `accept` loop is a task it owns, handing each socket to the process
//! with an awaiting send into a small mailbox: the process never blocks in a handler
//! (the watchdog stays quiet, signals are handled at once), and when admission falls
//! behind, the loop stops accepting and the kernel's backlog holds the rest.

use std::sync::Arc;
use std::time::Duration;

use girder::supervisor::{ChildSpec, Restart, Shutdown, Supervisor, SupervisorRef};
use girder::{Actor, Ctx, ExitReason, Flow, Weight};
use tokio::net::TcpStream;

use super::conn::{self, Conn, ConnState};
use super::{Refuse, Shared};

pub(crate) struct Acceptor {
    shared: Arc<Shared>,
    accept_loop: Option<tokio::task::JoinHandle<()>>,
}

/// An accepted socket.
pub(crate) struct Accepted(TcpStream, std::net::SocketAddr);

impl Weight for Accepted {}

/// The acceptor's mailbox: a few sockets waiting for admission.
pub(crate) fn mailbox() -> girder::Mailbox {
    girder::Mailbox::bounded(8).overflow(girder::Overflow::Backpressure)
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        if let Some(t) = self.accept_loop.take() {
            t.abort();
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, addr: girder::Addr<Acceptor>) {
    loop {
        match shared.listener.accept().await {
            Ok((stream, peer)) => {
                if addr.send(Accepted(stream, peer)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                shared.counters.accept_errors(1);
                tracing::warn!(error = %e, "accept failed");
                // Out of file descriptors and the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

impl Acceptor {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Acceptor {
            shared,
            accept_loop: None,
        }
    }

    async fn admit(&self, stream: TcpStream, peer: std::net::SocketAddr) {
        let shared = &self.shared;
        if let Err(banned) = shared.guard.admit_connection(peer.ip()) {
            shared.counters.refused_banned(1);
            refuse(
                &stream,
                &format!(
                    "-ERR too many requests: this address is banned for repeated rate-limit violations; retry in {} s\r\n",
                    banned.remaining.as_secs().max(1)
                ),
            );
            return;
        }
        let reservation = match shared.reserve(peer.ip()) {
            Ok(r) => r,
            Err(Refuse::MaxClients) => {
                shared.counters.refused_max_clients(1);
                refuse(&stream, "-ERR max number of clients reached\r\n");
                return;
            }
            Err(Refuse::PerPeer) => {
                shared.counters.refused_per_peer(1);
                refuse(&stream, "-ERR max number of clients reached for this address\r\n");
                return;
            }
        };
        let local = stream.local_addr().unwrap_or(peer);
        let state = Arc::new(ConnState::new(reservation.id, peer, local, shared));
        reservation.register(state.clone());
        // The stream moves into the process on its (only) start.
        let slot = Arc::new(parking_lot::Mutex::new(Some((stream, reservation))));
        let (shared2, slot2, state2) = (shared.clone(), slot.clone(), state.clone());
        let spec = ChildSpec::worker("", move || {
            let (stream, reservation) = slot2.lock().take().expect("a connection process starts once");
            Conn::new(shared2.clone(), stream, reservation, state2.clone())
        })
        .restart(Restart::Temporary)
        .shutdown(Shutdown::Timeout(Duration::from_secs(2)))
        .mailbox(conn::mailbox(shared));
        let sup = shared
            .node
            .whereis_addr::<Supervisor>(&shared.conn_sup_name)
            .map(SupervisorRef::new);
        let started = match sup {
            Some(sup) => sup.start_child(spec).await.map_err(|e| e.to_string()),
            None => Err("the connection supervisor is restarting".to_string()),
        };
        if let Err(e) = started {
            shared.counters.refused_spawn(1);
            tracing::debug!(%peer, error = %e, "connection refused: cannot start its process");
            // Not started: the stream (and the reservation) are still in the slot.
            if let Some((stream, _reservation)) = slot.lock().take() {
                refuse(&stream, "-ERR max number of clients reached\r\n");
            }
            return;
        }
        shared.counters.accepted(1);
    }
}

/// Writes a refusal without waiting (a fresh socket has room for a line) and drops
/// the socket.
fn refuse(stream: &TcpStream, line: &str) {
    let _ = stream.try_write(line.as_bytes());
}

impl Actor for Acceptor {
    type Msg = Accepted;

    async fn init(&mut self, ctx: &mut Ctx<Self>) -> Result<(), ExitReason> {
        self.accept_loop = Some(tokio::spawn(accept_loop(self.shared.clone(), ctx.addr())));
        Ok(())
    }

    async fn handle(&mut self, Accepted(stream, peer): Accepted, _ctx: &mut Ctx<Self>) -> Flow {
        self.admit(stream, peer).await;
        Flow::Continue
    }
}
