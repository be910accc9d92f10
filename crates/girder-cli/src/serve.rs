//! `girder serve`: the RESP pub/sub server on a girder node.
//!
//! With `--http ADDR` (or a `[watch]` table in the `--config` file: see
//! [`girder_watch::WatchConfig`]) it also serves the watch endpoint: the live
//! dashboard, `/metrics` (the node's figures and the server's `girder_net_*`
//! counters), the JSON API and `/alerts`; the server's own figures (connections,
//! caps, refusals, bans, breaker, protocol errors) appear under `extra`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Weak};
use std::time::Duration;

use clap::Args;
use girder::Node;
use girder_net::server::{Server, ServerConfig};
use girder_watch::{Watch, WatchConfig};

/// Flags of `girder serve`. Every other limit is a setting of the `--config` TOML
/// file; all of them, with their defaults, are printed by `girder serve --help`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A TOML file of settings (any of those listed below); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1].
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<IpAddr>,

    /// Port to listen on [default: 6379].
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,

    /// Require clients to AUTH with this password.
    #[arg(long, value_name = "PASSWORD")]
    pub requirepass: Option<String>,

    /// Most connections at once [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// Most processes on the node (connections are processes) [default: 262144].
    #[arg(long, value_name = "N")]
    pub max_processes: Option<usize>,

    /// Serve the live dashboard, /metrics, the JSON API and /alerts on ADDR (e.g.
    /// 127.0.0.1:7979). Also turned on by a [watch] table in the config file.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,

    /// Bearer token the --http endpoint wants (or `token` in [watch]).
    #[arg(long, value_name = "TOKEN")]
    pub http_token: Option<String>,
}

/// Every setting and its default, as TOML, for `--help`.
pub fn defaults_help() -> String {
    let toml = toml::to_string_pretty(&ServerConfig::default()).unwrap_or_default();
    let watch = toml::to_string_pretty(&std::collections::BTreeMap::from([(
        "watch",
        WatchConfig::default(),
    )]))
    .unwrap_or_default();
    format!(
        "Settings (a --config file may set any of them; shown with their defaults):\n\n{toml}\n\
         Durations are in milliseconds (the *_ms settings), sizes in bytes.\n\n\
         The watch endpoint (dashboard, /metrics, API, alerts) is on when the file has a \
         [watch] table or --http is given; its settings and defaults:\n\n{watch}"
    )
}

/// Splits a config file into the server's settings and the optional `[watch]`
/// table.
fn split_watch(text: &str) -> Result<(String, Option<WatchConfig>), String> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let watch = match table.remove("watch") {
        None => None,
        Some(v) => Some(v.try_into::<WatchConfig>().map_err(|e| format!("[watch]: {e}"))?),
    };
    let rest = toml::to_string(&table).map_err(|e| e.to_string())?;
    Ok((rest, watch))
}

/// Builds the configuration from the file and the flags.
fn config(args: &ServeArgs) -> Result<(ServerConfig, Option<WatchConfig>), String> {
    let (mut cfg, file_watch) = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let (rest, watch) = split_watch(&text)?;
            (
                ServerConfig::from_toml_str(&rest).map_err(|e| e.to_string())?,
                watch,
            )
        }
        None => (ServerConfig::default(), None),
    };
    let mut watch = file_watch;
    if args.http.is_some() || args.http_token.is_some() {
        let w = watch.get_or_insert_with(WatchConfig::default);
        if let Some(addr) = args.http {
            w.bind = addr;
        }
        if let Some(t) = &args.http_token {
            w.token = Some(t.clone());
        }
    }
    if let Some(w) = &watch {
        w.validate().map_err(|e| e.to_string())?;
    }
    if let Some(b) = args.bind {
        cfg.bind = b;
    }
    if let Some(p) = args.port {
        cfg.port = p;
    }
    if let Some(p) = &args.requirepass {
        cfg.requirepass = Some(p.clone());
    }
    if let Some(n) = args.max_connections {
        cfg.max_connections = n;
    }
    cfg.validate().map_err(|e| e.to_string())?;
    Ok((cfg, watch))
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let (cfg, watch) = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("girder serve: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("girder serve: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(serve(cfg, watch, args.max_processes));
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

async fn serve(cfg: ServerConfig, watch_cfg: Option<WatchConfig>, max_processes: Option<usize>) -> ExitCode {
    if watch_cfg.is_some() {
        // Before the server starts: its counters go through the metrics facade as
        // they happen, and what is emitted before a recorder is installed is lost.
        girder_watch::metrics::install_recorder();
    }
    let mut builder = Node::builder();
    if let Some(n) = max_processes {
        builder = builder.max_processes(n);
    }
    let node = match builder.build() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("girder serve: {e}");
            return ExitCode::from(2);
        }
    };
    let server = match Server::start(&node, cfg).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("girder serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    let watch = match watch_cfg {
        None => None,
        Some(wc) => {
            let weak = Arc::downgrade(&server);
            match Watch::builder(node.clone())
                .config(wc)
                .extra(Arc::new(move || front_door(&weak)))
                .start()
                .await
            {
                Ok(w) => {
                    tracing::info!("girder serve: watch endpoint on http://{}/", w.local_addr());
                    Some(w)
                }
                Err(e) => {
                    eprintln!("girder serve: {e}");
                    if let Ok(s) = Arc::try_unwrap(server) {
                        s.shutdown().await;
                    }
                    node.shutdown().await;
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let c = server.config();
    tracing::info!(
        "girder serve ready: accepting on {} (max_connections {}, auth {})",
        server.local_addr(),
        c.max_connections,
        if c.requirepass.is_some() {
            "required"
        } else {
            "off"
        },
    );
    let signal = wait_for_signal().await;
    tracing::info!("girder serve: {signal}, shutting down");
    if let Some(w) = watch {
        w.shutdown().await;
    }
    // The watch held the server only weakly: this is the last strong reference.
    match Arc::try_unwrap(server) {
        Ok(s) => s.shutdown().await,
        Err(_) => tracing::warn!("girder serve: the server is still referenced; stopping the node"),
    }
    let report = node.shutdown().await;
    tracing::info!(
        stopped = report.stopped,
        killed = report.killed,
        "girder serve stopped"
    );
    ExitCode::SUCCESS
}

/// The front door's figures for the watch (`extra` in `/api/stats` and the page),
/// and its levels as gauges (its counters are emitted as they happen).
fn front_door(server: &Weak<Server>) -> serde_json::Value {
    let Some(server) = server.upgrade() else {
        return serde_json::Value::Null;
    };
    let st = server.stats();
    metrics::gauge!("girder_net_connections").set(st.connections as f64);
    metrics::gauge!("girder_net_max_connections").set(st.max_connections as f64);
    metrics::gauge!("girder_net_peers").set(st.peers as f64);
    metrics::gauge!("girder_net_output_bytes").set(st.output_bytes as f64);
    serde_json::json!({ "front_door": st })
}

async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_bad_values_name_the_setting() {
        let args = ServeArgs {
            config: None,
            bind: None,
            port: Some(7001),
            requirepass: None,
            max_connections: Some(0),
            max_processes: None,
            http: None,
            http_token: None,
        };
        let e = config(&args).unwrap_err();
        assert!(e.contains("max_connections"), "{e}");
    }

    #[test]
    fn a_watch_table_turns_the_endpoint_on_and_flags_override_it() {
        let dir = std::env::temp_dir().join(format!("girder-serve-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("serve.toml");
        std::fs::write(
            &file,
            "port = 7002\n[watch]\nbind = \"127.0.0.1:7990\"\n[watch.rules]\nmailbox_fill = { above = 0.5, for_secs = 1 }\n",
        )
        .unwrap();
        let mut args = ServeArgs {
            config: Some(file.clone()),
            bind: None,
            port: None,
            requirepass: None,
            max_connections: None,
            max_processes: None,
            http: None,
            http_token: Some("t".into()),
        };
        let (cfg, watch) = config(&args).unwrap();
        assert_eq!(cfg.port, 7002);
        let w = watch.expect("[watch] turns it on");
        assert_eq!(w.bind.port(), 7990);
        assert_eq!(w.rules.mailbox_fill.above, 0.5);
        assert_eq!(w.token.as_deref(), Some("t"));
        std::fs::write(&file, "[watch]\nbogus = 1\n").unwrap();
        assert!(config(&args).unwrap_err().contains("bogus"));
        std::fs::write(&file, "port = 7003\n").unwrap();
        args.http_token = None;
        assert!(
            config(&args).unwrap().1.is_none(),
            "off without [watch] or --http"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn help_lists_every_section_with_defaults() {
        let h = defaults_help();
        for s in [
            "max_connections = 10000",
            "[output]",
            "[rate]",
            "[keyspace]",
            "[breaker]",
            "[dedup]",
            "[limits]",
            "[watch]",
        ] {
            assert!(h.contains(s), "{s} missing from:\n{h}");
        }
    }
}
