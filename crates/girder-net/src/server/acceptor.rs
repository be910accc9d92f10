//! Acceptors: `num_acceptors` processes sharing the listening socket (the ranch
//! model). Each admits or refuses every connection it accepts: banned peers, the
//! `max_connections` cap, the per-peer cap, and a connection process that cannot be
//! spawned (process limit, subtree budget, `MaxChildren`) all get a short refusal the
//! client understands, and are counted.

use std::sync::Arc;
use std::time::Duration;

use girder::supervisor::{ChildSpec, Restart, Shutdown, Supervisor, SupervisorRef};
use girder::{Actor, Ctx, ExitReason, Flow, Weight};
use tokio::net::TcpStream;

use super::conn::{self, Conn, ConnState};
use super::{Refuse, Shared};

pub(crate) struct Acceptor {
    shared: Arc<Shared>,
}

pub(crate) struct Accept;

impl Weight for Accept {}

impl Acceptor {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Acceptor { shared }
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
    type Msg = Accept;

    async fn init(&mut self, ctx: &mut Ctx<Self>) -> Result<(), ExitReason> {
        // Its handler waits in `accept` by design: not a slow handler (girder-watch).
        ctx.exempt_from_watchdog();
        ctx.addr()
            .try_send(Accept)
            .map_err(|_| ExitReason::custom("acceptor cannot start its loop"))
    }

    async fn handle(&mut self, _: Accept, ctx: &mut Ctx<Self>) -> Flow {
        match self.shared.listener.accept().await {
            Ok((stream, peer)) => self.admit(stream, peer).await,
            Err(e) => {
                self.shared.counters.accept_errors(1);
                tracing::warn!(error = %e, "accept failed");
                // Out of file descriptors and the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        match ctx.addr().try_send(Accept) {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop(ExitReason::custom("acceptor lost its loop")),
        }
    }
}
