//! # girder-watch
//!
//! Watching a girder node while it is under attack: Prometheus metrics, a JSON API,
//! a live dashboard page, a slow-handler watchdog and alert rules — on an HTTP
//! endpoint of its own (127.0.0.1 by default, optional bearer token).
//!
//! ```text
//! GET /                 the live dashboard (one HTML page, updated by server-sent events)
//! GET /metrics          Prometheus text format (see the `metrics` module table)
//! GET /api/stats        limits, counters, rates, the `extra` figures
//! GET /api/processes    ?sort=mailbox|bytes|hwm|handled|rejected|dropped|expired|drops|links|pid|name
//!                       &offset=0&limit=50 (at most 500)
//! GET /api/tree         the supervision tree from parent links (?max=N processes)
//! GET /api/frame        everything the page shows, as one JSON object
//! GET /api/events       the same frame, pushed once per collection (text/event-stream)
//! GET /api/slow         the watchdog's reports
//! GET /alerts           active and recently resolved alerts
//! ```
//!
//! What it runs:
//!
//! - a **collector** that reads [`Node::stats`] and [`Node::processes`] every
//!   `collect_every_ms` (and on each `/metrics` scrape) on tokio's blocking pool, exports it through the `metrics` facade,
//!   evaluates the [`AlertRules`], and pushes a frame to the live page;
//! - a **watchdog** that looks every `scan_every_ms` at which processes are inside a
//!   handler ([`Node::running_handlers`]) and reports a handler running past its
//!   budget once, naming the process ([`WatchdogConfig`]);
//! - the **HTTP server** (axum), with at most `max_connections` connections,
//!   `max_requests` requests and `max_streams` live streams at once.
//!
//! Counters are totals over every node the watch has observed: a program that runs
//! one node after another (`girder drill`) switches with [`WatchHandle::observe`].
//!
//! # Examples
//!
//! ```
//! use girder::Node;
//! use girder_watch::{Watch, WatchConfig};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::builder().build()?;
//! let watch = Watch::builder(node.clone())
//!     .bind("127.0.0.1:0".parse()?)       // port 0: any free port
//!     .token(Some("s3cret".into()))
//!     .extra(std::sync::Arc::new(|| serde_json::json!({ "connections": 0 })))
//!     .start()
//!     .await?;
//! let url = format!("http://{}/api/stats", watch.local_addr());
//! assert!(url.starts_with("http://127.0.0.1:"));
//! assert!(watch.render_metrics().contains("girder_processes"));
//! watch.shutdown().await;
//! # Ok(()) }
//! ```

mod alerts;
mod config;
mod listener;
pub mod metrics;
mod server;
mod state;
pub mod views;
pub mod watchdog;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use girder::Node;
use tokio::task::JoinHandle;

pub use alerts::{Alert, AlertsView};
pub use config::{AlertRules, Threshold, WatchConfig, WatchdogConfig};
pub use server::DASHBOARD_HTML;
pub use state::{Frame, History, StatsResponse, HISTORY_LEN};
pub use watchdog::{SlowHandler, Watchdog};

use state::Shared;

/// Extra figures for `/api/stats` and the page (`stats.extra`): the front door's
/// connections, caps, refusals... Called once per collection, on a blocking thread;
/// keep it quick.
pub type ExtraFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Why a watch could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The address could not be bound.
    #[error("cannot bind the watch endpoint to {addr}: {source} (choose another address: `bind` in the watch config, `--http ADDR`)")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// An option is out of range.
    #[error("invalid watch option `{option}`: {why}")]
    Config {
        /// The option, as named in [`WatchConfig`] (`rules.mailbox_fill.above`).
        option: String,
        /// What is wrong and what is allowed.
        why: String,
    },
}

impl WatchError {
    pub(crate) fn config(option: &str, why: &str) -> Self {
        WatchError::Config {
            option: option.into(),
            why: why.into(),
        }
    }
}

/// A refused request, logged rate-limited.
fn limit_event_watch(cause: &'static str) {
    girder::limit_event!(warn, "girder watch: request refused", cause);
}

/// Entry point: [`Watch::builder`].
#[derive(Debug)]
pub struct Watch;

impl Watch {
    /// A builder watching `node`, every option at its default ([`WatchConfig`]).
    pub fn builder(node: Node) -> WatchBuilder {
        WatchBuilder {
            node,
            cfg: WatchConfig::default(),
            extra: None,
        }
    }
}

/// Configures and starts a watch. See [`WatchConfig`] for the options and defaults.
#[must_use]
pub struct WatchBuilder {
    node: Node,
    cfg: WatchConfig,
    extra: Option<ExtraFn>,
}

impl std::fmt::Debug for WatchBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchBuilder")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl WatchBuilder {
    /// Every option at once (for example from a TOML file).
    pub fn config(mut self, cfg: WatchConfig) -> Self {
        self.cfg = cfg;
        self
    }

    /// The address to serve on. Default `127.0.0.1:7979`; port 0 picks a free port
    /// ([`WatchHandle::local_addr`] tells which).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.cfg.bind = addr;
        self
    }

    /// The bearer token every route wants, or `None` (the default) for none.
    pub fn token(mut self, token: Option<String>) -> Self {
        self.cfg.token = token;
        self
    }

    /// The alert rules.
    pub fn rules(mut self, rules: AlertRules) -> Self {
        self.cfg.rules = rules;
        self
    }

    /// The watchdog's budget and period.
    pub fn watchdog(mut self, watchdog: WatchdogConfig) -> Self {
        self.cfg.watchdog = watchdog;
        self
    }

    /// Extra figures for `/api/stats` and the page.
    pub fn extra(mut self, extra: ExtraFn) -> Self {
        self.extra = Some(extra);
        self
    }

    /// Validates the options, installs the metrics recorder (once per program),
    /// binds the address, and starts the collector, the watchdog and the server on
    /// the current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`WatchError::Config`] naming an option out of range; [`WatchError::Bind`]
    /// if the address cannot be bound.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub async fn start(self) -> Result<WatchHandle, WatchError> {
        self.cfg.validate()?;
        let sink = metrics::Sink::get();
        sink.hook_core();
        let listener = tokio::net::TcpListener::bind(self.cfg.bind)
            .await
            .map_err(|source| WatchError::Bind {
                addr: self.cfg.bind,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| WatchError::Bind {
            addr: self.cfg.bind,
            source,
        })?;
        let shared = Arc::new(Shared::new(self.node, self.cfg, self.extra, sink));
        {
            let s = shared.clone();
            let _ = tokio::task::spawn_blocking(move || s.tick()).await;
        }
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn({
            let s = shared.clone();
            async move {
                let mut every = tokio::time::interval(s.cfg.collect_every());
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                every.tick().await;
                loop {
                    every.tick().await;
                    let s2 = s.clone();
                    let _ = tokio::task::spawn_blocking(move || s2.tick()).await;
                }
            }
        }));
        if shared.cfg.watchdog.enabled {
            tasks.push(tokio::spawn({
                let s = shared.clone();
                async move {
                    let mut every =
                        tokio::time::interval(Duration::from_millis(s.cfg.watchdog.scan_every_ms));
                    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        every.tick().await;
                        s.scan();
                    }
                }
            }));
        }
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let app = server::router(shared.clone());
        let listener = listener::Bounded::new(listener, shared.cfg.max_connections);
        tasks.push(tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "girder watch: the HTTP server stopped");
            }
        }));
        tracing::info!(addr = %local_addr, "girder watch: serving /, /metrics, /api/*, /alerts");
        Ok(WatchHandle {
            local_addr,
            shared,
            tasks,
            stop: Some(stop_tx),
        })
    }
}

/// A running watch. Dropping it stops the collector, the watchdog and the server.
pub struct WatchHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for WatchHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl WatchHandle {
    /// The address the endpoint listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Watches `node` from now on (a program that runs nodes one after another).
    /// Counters carry on from the totals seen so far, so they never go down.
    pub fn observe(&self, node: Node) {
        self.shared.observe(node);
    }

    /// The node being watched.
    pub fn node(&self) -> Node {
        self.shared.node()
    }

    /// Takes a reading now (readings are taken every `collect_every_ms` and on each
    /// scrape).
    pub fn collect(&self) {
        self.shared.tick_now();
    }

    /// The latest `/api/stats`.
    pub fn stats(&self) -> StatsResponse {
        self.shared.stats()
    }

    /// Active and up to `resolved` recently resolved alerts.
    pub fn alerts(&self, resolved: usize) -> AlertsView {
        self.shared.alerts(resolved)
    }

    /// The watchdog's reports, most recent first.
    pub fn slow_handlers(&self) -> Vec<SlowHandler> {
        self.shared.slow_handlers()
    }

    /// What `/metrics` serves, after a fresh reading.
    pub fn render_metrics(&self) -> String {
        self.shared.tick_now();
        self.shared.sink.render()
    }

    /// Stops the server (letting requests in flight finish), the collector and the
    /// watchdog.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let server = self.tasks.pop();
        for t in &self.tasks {
            t.abort();
        }
        if let Some(server) = server {
            let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
        }
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
