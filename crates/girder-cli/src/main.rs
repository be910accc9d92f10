//! `girder`: the command line of the girder actor runtime.
//!
//! ```text
//! girder drill [NAME...] [--json] [--list] [--duration-ms N]
//! girder serve [--config FILE] [--bind ADDR] [--port PORT] [--requirepass PW] [--max-connections N]
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
    }
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
    let passed = runtime.block_on(drill::run_all(&drills, attack, format));
    // Drills shut their nodes down; anything a failed drill left behind must not
    // hold the exit up.
    runtime.shutdown_timeout(Duration::from_secs(1));
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
