//! The RESP pub/sub server `girder serve` runs, and its front door.
//!
//! Everything is a girder process under one supervision tree, so the node's process
//! limit, mailbox bounds and budgets cover the server too:
//!
//! ```text
//! girder.net.server (one-for-one, subtree budget)
//! ├── pubsub            the registry: subscriptions, fan-out, the dedup window
//! ├── keyspace-0..N     the key-value shards
//! ├── connections       dynamic supervisor, max_children = max_connections
//! │   └── one process per connection (+ its reader and writer tasks)
//! └── acceptor-0..M     accept, admit or refuse
//! ```
//!
//! ```no_run
//! use girder::Node;
//! use girder_net::server::{Server, ServerConfig};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::builder().build()?;
//! let server = Server::start(&node, ServerConfig { port: 0, ..Default::default() }).await?;
//! println!("listening on {}", server.local_addr());
//! // ... redis-cli -p <port> PING
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod acceptor;
mod commands;
mod config;
mod conn;
mod glob;
mod info;
mod keyspace;
mod kv;
mod output;
mod pubsub;
mod stats;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder::supervisor::{
    ChildSpec, DynamicSupervisor, Shutdown, Strategy, Supervisor, SupervisorRef, SupervisorSpec,
};
use girder::{Addr, ExitReason, Node};
use parking_lot::{Mutex, RwLock};
use tokio::net::TcpListener;

pub use config::{
    BreakerSettings, ConfigError, DedupSettings, KeyspaceConfig, OutputConfig, PubSubConfig, RateConfig,
    ServerConfig,
};
pub use stats::{CounterSnapshot, ServerStats};

use crate::guard::{BreakerConfig, CircuitBreaker, PeerGuard, RateLimits};
use conn::ConnState;
use keyspace::Keyspace;
use output::OutputBudget;
use pubsub::PubSub;
use stats::{Counters, Levels};

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A setting is out of range (named in the message).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source} (change --bind/--port)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The supervision tree could not start (e.g. the node's process limit).
    #[error("cannot start the server's processes: {0}")]
    Start(String),
}

/// Why a connection is refused at accept.
pub(crate) enum Refuse {
    MaxClients,
    PerPeer,
}

#[derive(Default)]
struct ConnTable {
    by_id: HashMap<u64, Arc<ConnState>>,
    per_peer: HashMap<IpAddr, usize>,
}

/// State shared by the server's processes.
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) node: Node,
    pub(crate) counters: Counters,
    pub(crate) levels: Levels,
    pub(crate) budget: Arc<OutputBudget>,
    conns: Mutex<ConnTable>,
    open: AtomicUsize,
    next_id: AtomicU64,
    pub(crate) keyspace: Vec<RwLock<Option<Addr<Keyspace>>>>,
    pub(crate) pubsub: RwLock<Option<Addr<PubSub>>>,
    pub(crate) guard: PeerGuard,
    pub(crate) breaker: CircuitBreaker,
    hasher: std::hash::RandomState,
    pub(crate) listener: TcpListener,
    pub(crate) local_addr: SocketAddr,
    pub(crate) conn_sup_name: String,
    started: Instant,
}

/// A connection's place in the table: released (and its per-peer count with it)
/// when dropped, however the connection ends.
pub(crate) struct Reservation {
    shared: Arc<Shared>,
    ip: IpAddr,
    pub(crate) id: u64,
}

impl Reservation {
    pub(crate) fn register(&self, state: Arc<ConnState>) {
        self.shared.conns.lock().by_id.insert(self.id, state);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut t = self.shared.conns.lock();
        t.by_id.remove(&self.id);
        if let Some(n) = t.per_peer.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                t.per_peer.remove(&self.ip);
            }
        }
        self.shared.open.fetch_sub(1, Relaxed);
    }
}

impl Shared {
    /// Takes a place for a connection from `ip`, within both caps.
    pub(crate) fn reserve(self: &Arc<Self>, ip: IpAddr) -> Result<Reservation, Refuse> {
        let mut t = self.conns.lock();
        if self.open.load(Relaxed) >= self.config.max_connections {
            return Err(Refuse::MaxClients);
        }
        let n = t.per_peer.entry(ip).or_insert(0);
        if *n >= self.config.max_connections_per_peer {
            return Err(Refuse::PerPeer);
        }
        *n += 1;
        self.open.fetch_add(1, Relaxed);
        let id = self.next_id.fetch_add(1, Relaxed) + 1;
        Ok(Reservation {
            shared: self.clone(),
            ip,
            id,
        })
    }

    pub(crate) fn conn_states(&self) -> Vec<Arc<ConnState>> {
        let t = self.conns.lock();
        let mut v: Vec<_> = t.by_id.values().cloned().collect();
        v.sort_by_key(|c| c.id);
        v
    }

    pub(crate) fn shard_of(&self, key: &[u8]) -> usize {
        (self.hasher.hash_one(key) % self.keyspace.len() as u64) as usize
    }

    pub(crate) fn stats(&self) -> ServerStats {
        let (peers, connections) = {
            let t = self.conns.lock();
            (t.per_peer.len() as u64, self.open.load(Relaxed) as u64)
        };
        let rate = self.guard.stats();
        let breaker = self.breaker.stats();
        let l = &self.levels;
        let stats = ServerStats {
            counters: self.counters.snapshot(),
            connections,
            max_connections: self.config.max_connections as u64,
            peers,
            output_bytes: self.budget.used() as u64,
            output_bytes_peak: self.budget.peak() as u64,
            output_budget_bytes: self.budget.limit() as u64,
            channels: l.channels.load(Relaxed),
            patterns: l.patterns.load(Relaxed),
            subscriptions: l.subscriptions.load(Relaxed),
            keys: l.keys.load(Relaxed),
            keyspace_bytes: l.keyspace_bytes.load(Relaxed),
            breaker_state: self.breaker.state().to_string(),
            breaker_opened: breaker.opened,
            bans_active: rate.bans_active as u64,
            bans: rate.bans,
            dedup_ids: l.dedup_ids.load(Relaxed),
            uptime_s: self.started.elapsed().as_secs(),
        };
        publish_gauges(&stats, &breaker, &rate);
        stats
    }
}

/// A listening socket on `addr` with `backlog` (and `SO_REUSEADDR`, so a restarted
/// server can bind while old connections linger in TIME_WAIT).
fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Sets the server's gauges (and the totals kept by the guards) in the `metrics`
/// facade: called with every [`Server::stats`] snapshot, so a watch that reads the
/// stats once a second keeps them current without a metrics call per event.
fn publish_gauges(s: &ServerStats, breaker: &crate::guard::BreakerStats, rate: &crate::guard::RateStats) {
    use metrics::{counter, gauge};
    gauge!("girder_net_connections").set(s.connections as f64);
    gauge!("girder_net_max_connections").set(s.max_connections as f64);
    gauge!("girder_net_peers").set(s.peers as f64);
    gauge!("girder_net_output_bytes").set(s.output_bytes as f64);
    gauge!("girder_net_output_budget_bytes").set(s.output_budget_bytes as f64);
    gauge!("girder_net_channels").set(s.channels as f64);
    gauge!("girder_net_patterns").set(s.patterns as f64);
    gauge!("girder_net_subscriptions").set(s.subscriptions as f64);
    gauge!("girder_net_keys").set(s.keys as f64);
    gauge!("girder_net_keyspace_bytes").set(s.keyspace_bytes as f64);
    gauge!("girder_net_bans_active").set(s.bans_active as f64);
    gauge!("girder_net_dedup_ids").set(s.dedup_ids as f64);
    let state = match s.breaker_state.as_str() {
        "closed" => 0.0,
        "half-open" => 1.0,
        _ => 2.0,
    };
    gauge!("girder_net_breaker_state").set(state);
    counter!("girder_net_bans_total").absolute(rate.bans);
    counter!("girder_net_rate_limited_requests_total").absolute(rate.limited);
    counter!("girder_net_breaker_transitions_total", "to" => "open").absolute(breaker.opened);
    counter!("girder_net_breaker_transitions_total", "to" => "closed").absolute(breaker.closed);
    counter!("girder_net_breaker_transitions_total", "to" => "half_open").absolute(breaker.half_opened);
}

/// A cloneable reader of a server's stats (for a watch's `extra` figures).
#[derive(Clone)]
pub struct StatsSource(Arc<Shared>);

impl StatsSource {
    /// As [`Server::stats`].
    pub fn stats(&self) -> ServerStats {
        self.0.stats()
    }
}

impl std::fmt::Debug for StatsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsSource")
            .field("local_addr", &self.0.local_addr)
            .finish()
    }
}

/// A running server. Dropping it leaves the server running on its node (it stops
/// with the node); [`shutdown`](Server::shutdown) stops it alone.
pub struct Server {
    shared: Arc<Shared>,
    root: SupervisorRef,
}

/// Distinguishes the registered names of several servers on one node.
static NEXT_SERVER: AtomicU64 = AtomicU64::new(0);

impl Server {
    /// Validates `config`, binds the listening socket and starts the server's
    /// supervision tree on `node`. Returns once it accepts connections.
    ///
    /// # Errors
    ///
    /// [`ServerError::Config`] naming a bad setting, [`ServerError::Bind`], or
    /// [`ServerError::Start`] if the processes cannot be spawned.
    pub async fn start(node: &Node, config: ServerConfig) -> Result<Server, ServerError> {
        config.validate()?;
        let rate = RateLimits {
            per_peer_rate: config.rate.per_peer_per_second,
            per_peer_burst: config.rate.per_peer_burst,
            per_connection_rate: config.rate.per_connection_per_second,
            per_connection_burst: config.rate.per_connection_burst,
            strikes: config.rate.strikes,
            strike_window: Duration::from_millis(config.rate.strike_window_ms),
            ban_duration: Duration::from_millis(config.rate.ban_ms),
            max_peers: config.rate.max_peers,
            ..RateLimits::default()
        };
        let guard = PeerGuard::new(rate).map_err(|e| ConfigError::Invalid(format!("rate: {e}")))?;
        let breaker = CircuitBreaker::new(
            "keyspace",
            BreakerConfig {
                failure_threshold: config.breaker.failure_threshold,
                reset_timeout: Duration::from_millis(config.breaker.reset_timeout_ms),
                half_open_probes: config.breaker.half_open_probes,
                ..BreakerConfig::default()
            },
        )
        .map_err(|e| ConfigError::Invalid(format!("breaker: {e}")))?;
        let addr = SocketAddr::new(config.bind, config.port);
        let listener =
            listen(addr, config.listen_backlog).map_err(|source| ServerError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        let n = NEXT_SERVER.fetch_add(1, Relaxed);
        let shared = Arc::new(Shared {
            budget: Arc::new(OutputBudget::new(config.output.budget_bytes)),
            keyspace: (0..config.keyspace.shards).map(|_| RwLock::new(None)).collect(),
            pubsub: RwLock::new(None),
            counters: Counters::default(),
            levels: Levels::default(),
            conns: Mutex::new(ConnTable::default()),
            open: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            guard,
            breaker,
            hasher: std::hash::RandomState::new(),
            listener,
            local_addr,
            conn_sup_name: format!("girder.net.{n}.connections"),
            node: node.clone(),
            started: Instant::now(),
            config,
        });
        let cfg = &shared.config;
        let mut spec = SupervisorSpec::new(Strategy::OneForOne)
            .intensity(10, Duration::from_secs(10))
            // The server's whole subtree, connections included, is budgeted: it can
            // never take the node's last processes.
            .max_descendants(cfg.max_connections + cfg.keyspace.shards + cfg.num_acceptors + 8);
        let s = shared.clone();
        spec = spec.child(ChildSpec::worker("pubsub", move || PubSub::new(s.clone())));
        for i in 0..cfg.keyspace.shards {
            let s = shared.clone();
            spec = spec.child(ChildSpec::worker(format!("keyspace-{i}"), move || {
                Keyspace::new(s.clone(), i)
            }));
        }
        spec = spec.child(
            ChildSpec::supervisor(
                "connections",
                DynamicSupervisor::spec().max_children(cfg.max_connections),
            )
            .name(shared.conn_sup_name.clone()),
        );
        for i in 0..cfg.num_acceptors {
            let s = shared.clone();
            spec = spec.child(
                ChildSpec::worker(format!("acceptor-{i}"), move || {
                    acceptor::Acceptor::new(s.clone())
                })
                .mailbox(acceptor::mailbox())
                .shutdown(Shutdown::BrutalKill),
            );
        }
        let root = Supervisor::start_with(
            node,
            spec,
            girder::SpawnOptions::new().name(format!("girder.net.{n}.server")),
        )
        .await
        .map_err(|e| ServerError::Start(e.to_string()))?;
        Ok(Server { shared, root })
    }

    /// The address the server listens on (with the port chosen when `port` was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// Counters and current levels.
    pub fn stats(&self) -> ServerStats {
        self.shared.stats()
    }

    /// A cloneable reader of [`stats`](Server::stats).
    pub fn stats_source(&self) -> StatsSource {
        StatsSource(self.shared.clone())
    }

    /// The pid of the server's root supervisor.
    pub fn pid(&self) -> girder::process::Pid {
        self.root.pid()
    }

    /// Stops accepting, closes every connection and stops the server's processes
    /// (acceptors first, then connections, then the stores), as a supervisor does.
    pub async fn shutdown(self) {
        let watch = self.shared.node.watch(self.root.pid());
        self.shared.node.stop(self.root.pid(), ExitReason::Shutdown);
        let _ = tokio::time::timeout(Duration::from_secs(30), watch).await;
    }
}
