//! `girder serve`: the RESP pub/sub server on a girder node.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use girder::Node;
use girder_net::server::{ConfigError, Server, ServerConfig};
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

    /// Serve the live dashboard, /metrics (Prometheus) and the JSON API on ADDR
    /// [default: 127.0.0.1:7979; the `watch` table of --config may set it].
    #[arg(long, value_name = "ADDR", conflicts_with = "no_http")]
    pub http: Option<SocketAddr>,

    /// Bearer token the HTTP endpoint wants on every route (the page takes ?token=).
    #[arg(long, value_name = "TOKEN")]
    pub http_token: Option<String>,

    /// No HTTP endpoint.
    #[arg(long)]
    pub no_http: bool,
}

/// Every setting and its default, as TOML, for `--help`.
pub fn defaults_help() -> String {
    let server = toml::to_string_pretty(&ServerConfig::default()).unwrap_or_default();
    let watch = toml::to_string_pretty(&WatchConfig::default()).unwrap_or_default();
    format!(
        "Settings (a --config file may set any of them; shown with their defaults):\n\n{server}\n\
         [watch]   # the HTTP endpoint: dashboard, /metrics, /api/*, /alerts\n{watch}\n\
         Durations are in milliseconds (the *_ms settings), sizes in bytes."
    )
}

/// The server's and the watch's settings from one TOML file: the `[watch]` table is
/// the watch's, everything else the server's.
fn from_file(path: &std::path::Path) -> Result<(ServerConfig, Option<WatchConfig>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the configuration file {}: {e}", path.display()))?;
    let mut table: toml::Table = text
        .parse()
        .map_err(|e| format!("invalid configuration file: {e}"))?;
    let watch = match table.remove("watch") {
        Some(w) => Some(
            w.try_into::<WatchConfig>()
                .map_err(|e| format!("invalid configuration file: [watch]: {e}"))?,
        ),
        None => None,
    };
    let server = ServerConfig::from_toml_str(&toml::to_string(&table).map_err(|e| e.to_string())?)
        .map_err(|e: ConfigError| e.to_string())?;
    Ok((server, watch))
}

/// Builds the configuration from the file and the flags.
#[cfg(test)]
fn config(args: &ServeArgs) -> Result<ServerConfig, String> {
    Ok(configs(args)?.0)
}

/// The server's and (unless `--no-http`) the watch's configuration.
fn configs(args: &ServeArgs) -> Result<(ServerConfig, Option<WatchConfig>), String> {
    let (mut cfg, file_watch) = match &args.config {
        Some(path) => from_file(path)?,
        None => (ServerConfig::default(), None),
    };
    let watch = if args.no_http {
        None
    } else {
        let mut w = file_watch.unwrap_or_default();
        if let Some(a) = args.http {
            w.bind = a;
        }
        if args.http_token.is_some() {
            w.token = args.http_token.clone();
        }
        Some(w)
    };
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
    let (cfg, watch) = match configs(&args) {
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

async fn serve(cfg: ServerConfig, watch: Option<WatchConfig>, max_processes: Option<usize>) -> ExitCode {
    // Counters emitted before the watch starts must reach its recorder.
    if watch.is_some() {
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
        Ok(s) => s,
        Err(e) => {
            eprintln!("girder serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    let watch = match watch {
        Some(w) => {
            let source = server.stats_source();
            let started = Watch::builder(node.clone())
                .config(w)
                .extra(std::sync::Arc::new(move || {
                    serde_json::to_value(source.stats()).unwrap_or(serde_json::Value::Null)
                }))
                .start()
                .await;
            match started {
                Ok(h) => {
                    tracing::info!(
                        "girder serve: dashboard, /metrics and API on http://{}/",
                        h.local_addr()
                    );
                    Some(h)
                }
                Err(e) => {
                    eprintln!("girder serve: {e} (or pass --no-http)");
                    server.shutdown().await;
                    return ExitCode::FAILURE;
                }
            }
        }
        None => None,
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
    server.shutdown().await;
    let report = node.shutdown().await;
    tracing::info!(
        stopped = report.stopped,
        killed = report.killed,
        "girder serve stopped"
    );
    ExitCode::SUCCESS
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
    fn one_file_configures_the_server_and_the_watch() {
        let dir = std::env::temp_dir().join(format!("girder-serve-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("girder.toml");
        std::fs::write(
            &path,
            "port = 7001\n[rate]\nstrikes = 10\n[watch]\nbind = \"127.0.0.1:0\"\ntop_n = 3\n",
        )
        .unwrap();
        let (server, watch) = from_file(&path).unwrap();
        assert_eq!((server.port, server.rate.strikes), (7001, 10));
        assert_eq!(watch.unwrap().top_n, 3);
        std::fs::write(&path, "[watch]\ntop_nn = 3\n").unwrap();
        assert!(from_file(&path).unwrap_err().contains("top_nn"));
        std::fs::write(&path, "[keyspace]\nshards = 0\n").unwrap();
        assert!(from_file(&path).unwrap_err().contains("keyspace.shards"));
    }

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
            no_http: false,
        };
        let e = config(&args).unwrap_err();
        assert!(e.contains("max_connections"), "{e}");
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
        ] {
            assert!(h.contains(s), "{s} missing from:\n{h}");
        }
    }
}
