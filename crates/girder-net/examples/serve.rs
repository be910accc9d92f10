//! A minimal RESP server: starts a [`Server`] and runs until ctrl-c (or SIGTERM).
//!
//! ```text
//! cargo run --release -p girder-net --example serve -- --port 7000 [--bind ADDR]
//!     [--requirepass PASS] [--max-connections N] [--config FILE.toml]
//! redis-cli -p 7000 ping
//! ```
//!
//! `girder serve` (the CLI) is the supported way to run the server; this example has
//! no dependency beyond girder-net and is what `bench/resp.sh` falls back to.

use std::process::ExitCode;

use girder::Node;
use girder_net::server::{Server, ServerConfig};

fn usage() -> ExitCode {
    eprintln!(
        "usage: serve [--port PORT] [--bind ADDR] [--requirepass PASS] [--max-connections N] [--config FILE]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut cfg = ServerConfig::default();
    let (mut port, mut bind, mut pass, mut maxc) = (None, None, None, None);
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else {
            return usage();
        };
        match flag.as_str() {
            "--port" => port = value.parse().ok(),
            "--bind" => bind = value.parse().ok(),
            "--requirepass" => pass = Some(value),
            "--max-connections" => maxc = value.parse().ok(),
            "--config" => match ServerConfig::from_toml_file(value.as_ref()) {
                Ok(c) => cfg = c,
                Err(e) => {
                    eprintln!("serve: {e}");
                    return ExitCode::FAILURE;
                }
            },
            _ => return usage(),
        }
    }
    // Flags override the file, whatever their order.
    if let Some(p) = port {
        cfg.port = p;
    }
    if let Some(b) = bind {
        cfg.bind = b;
    }
    if pass.is_some() {
        cfg.requirepass = pass;
    }
    if let Some(n) = maxc {
        cfg.max_connections = n;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("serve: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let node = match Node::builder().build() {
            Ok(n) => n,
            Err(e) => {
                eprintln!("serve: cannot start the node: {e}");
                return ExitCode::FAILURE;
            }
        };
        let server = match Server::start(&node, cfg).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("serve: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("girder-net serve: listening on {}", server.local_addr());
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).ok();
            let term = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("girder-net serve: shutting down");
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}
