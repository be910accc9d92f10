//! `girder serve`: the RESP pub/sub server on a girder node.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use girder::Node;
use girder_net::server::{Server, ServerConfig};

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
}

/// Every setting and its default, as TOML, for `--help`.
pub fn defaults_help() -> String {
    let toml = toml::to_string_pretty(&ServerConfig::default()).unwrap_or_default();
    format!(
        "Settings (a --config file may set any of them; shown with their defaults):\n\n{toml}\n\
         Durations are in milliseconds (the *_ms settings), sizes in bytes."
    )
}

/// Builds the configuration from the file and the flags.
fn config(args: &ServeArgs) -> Result<ServerConfig, String> {
    let mut cfg = match &args.config {
        Some(path) => ServerConfig::from_toml_file(path).map_err(|e| e.to_string())?,
        None => ServerConfig::default(),
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
    Ok(cfg)
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
    let cfg = match config(&args) {
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
    let code = runtime.block_on(serve(cfg, args.max_processes));
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

async fn serve(cfg: ServerConfig, max_processes: Option<usize>) -> ExitCode {
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
    fn flags_override_the_file_and_bad_values_name_the_setting() {
        let args = ServeArgs {
            config: None,
            bind: None,
            port: Some(7001),
            requirepass: None,
            max_connections: Some(0),
            max_processes: None,
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
