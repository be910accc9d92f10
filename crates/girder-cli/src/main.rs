//! `girder`: the command line of the girder actor runtime.
//!
//! ```text
//! girder drill [NAME...] [--json] [--list] [--duration-ms N] [--http ADDR [--http-token T]]
//! girder serve [--config FILE] [--bind ADDR] [--port PORT] [--requirepass PW] [--max-connections N] [--http ADDR]
//! girder top --addr HOST:PORT [--token T] [--sort KEY]
//! ```
//!
//! `serve` runs the RESP pub/sub server (see [`serve`]); `--help` lists every setting
//! with its default.
//!
//! `drill` runs the overload drills (see [`drill`]) against live in-process nodes and
//! prints one row per drill with a verdict computed from measurements. The exit status
//! is 0 only when every drill passed, 1 when one failed, 2 on a usage error.

mod drill;
mod serve;
mod top;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

/// girder: an Erlang/OTP-style actor runtime that cannot be taken down by overload.
#[derive(clap::Parser, Debug)]
#[command(name = "girder", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run threat drills against a live in-process node and report what the limits did.
    Drill(DrillArgs),
    /// Run the RESP pub/sub server (redis-cli and Redis clients work unchanged).
    Serve(serve::ServeArgs),
    /// A refreshing, sortable terminal view of a watched node (etop / observer_cli),
    /// from a watch's HTTP endpoint (girder serve, girder drill --http).
    Top(TopArgs),
}

#[derive(Args, Debug)]
struct TopArgs {
    /// The watch endpoint, HOST:PORT (or an http:// URL).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7979")]
    addr: String,

    /// Bearer token, if the endpoint wants one.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,

    /// Sort key: mailbox, bytes, hwm, handled, rejected, dropped, expired, drops,
    /// links, pid, name.
    #[arg(long, value_name = "KEY", default_value = "mailbox", value_parser = top::parse_sort)]
    sort: girder_watch::views::SortKey,

    /// Refresh period, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    interval_ms: u64,

    /// Quit by itself after N milliseconds (for scripts).
    #[arg(long, value_name = "N")]
    exit_after_ms: Option<u64>,
}

#[derive(Args, Debug)]
struct DrillArgs {
    /// Drills to run, in order (default: all). See --list.
    #[arg(value_name = "NAME")]
    names: Vec<String>,

    /// One JSON object per drill, one per line, instead of the table.
    #[arg(long)]
    json: bool,

    /// List the drills and exit.
    #[arg(long)]
    list: bool,

    /// Attack duration of each drill, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = drill::DEFAULT_DURATION.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    duration_ms: u64,

    /// Serve the live dashboard, /metrics and the JSON API on ADDR (e.g.
    /// 127.0.0.1:7979) while the drills run, watching each drill's node in turn.
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,

    /// Bearer token the --http endpoint wants.
    #[arg(long, value_name = "TOKEN", requires = "http")]
    http_token: Option<String>,
}

fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let help = serve::defaults_help();
    let matches = Cli::command()
        .mut_subcommand("serve", |c| c.after_long_help(help))
        .get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match cli.command {
        Command::Drill(args) => drill_command(args),
        Command::Serve(args) => serve::run(args),
        Command::Top(args) => top_command(args),
    }
}

fn top_command(args: TopArgs) -> ExitCode {
    let opts = top::TopOptions {
        addr: args.addr,
        token: args.token,
        sort: args.sort,
        interval: Duration::from_millis(args.interval_ms),
        exit_after: args.exit_after_ms.map(Duration::from_millis),
    };
    match top::run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("girder top: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The `--http` watch: starts on an empty node until the first drill builds its own.
async fn start_watch(
    addr: std::net::SocketAddr,
    token: Option<String>,
) -> Result<girder_watch::WatchHandle, String> {
    let placeholder = girder::Node::builder().build().map_err(|e| e.to_string())?;
    girder_watch::Watch::builder(placeholder)
        .bind(addr)
        .token(token)
        .start()
        .await
        .map_err(|e| e.to_string())
}

fn drill_command(args: DrillArgs) -> ExitCode {
    let drills = match drill::select(&args.names) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("girder drill: {e}");
            return ExitCode::from(2);
        }
    };
    if args.list {
        for d in &drills {
            println!("{:<22} {}", d.name, d.about);
        }
        return ExitCode::SUCCESS;
    }
    let format = if args.json {
        drill::Format::Json
    } else {
        drill::Format::Table
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("girder drill: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let attack = Duration::from_millis(args.duration_ms);
    let passed = runtime.block_on(async {
        if let Some(addr) = args.http {
            match start_watch(addr, args.http_token.clone()).await {
                Ok(w) => {
                    eprintln!("girder drill: watching on http://{}/", w.local_addr());
                    drill::set_watch(w);
                }
                Err(e) => {
                    eprintln!("girder drill: {e}");
                    return None;
                }
            }
        }
        let passed = drill::run_all(&drills, attack, format).await;
        drill::stop_watch().await;
        Some(passed)
    });
    let Some(passed) = passed else {
        return ExitCode::from(2);
    };
    // Drills shut their nodes down; anything a failed drill left behind must not
    // hold the exit up.
    runtime.shutdown_timeout(Duration::from_secs(1));
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
