//! The `shoal` command (its `main` is [`main`]): run a coordinator, a worker, or the whole swarm on
//! one machine; submit jobs and read results; inspect workers and epochs;
//! simulate and benchmark.
//!
//! - `args`: the subcommands and their arguments;
//! - `serve`: the run modes (`up`, `coordinator`, `worker`, `keygen`);
//! - `client`: jobs over gRPC (connect, submit, follow, results), `submit`;
//! - `inspect`: `status`, `job …`, `workers`, `leaderboard`, `contributor show`, `epoch …`;
//! - `exit`: exit codes and the one line a failure prints;
//! - `output`: how their answers are printed (tables, JSON, progress,
//!   result files, the demo image);
//! - `sim`: `shoal sim`, in-process or over sockets;
//! - `admin`: `shoal token create|list|revoke`, `shoal backup`, `shoal restore`.

mod admin;
mod args;
mod client;
mod exit;
mod inspect;
mod output;
mod serve;
mod sim;

use self::args::Cli;
use self::args::{Command, ConfigAction};
use self::client::submit;
use self::inspect::{contributor, epoch, job, leaderboard, status, workers};
use self::serve::{coordinator, keygen, run_worker, up};
use self::sim::{sim, sim_over_sockets};
use crate::{bench, ShoalConfig};
use anyhow::{Context, Result};
use clap::Parser;

/// Whether logs are JSON lines (`--log-json`): a failure is then logged as
/// one more JSON line instead of printed as text.
static LOG_JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn init_logs(json: bool) {
    LOG_JSON.store(json, std::sync::atomic::Ordering::Relaxed);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,h2=warn,tower=warn,hyper=warn"));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

fn load_config(cli: &Cli) -> Result<ShoalConfig> {
    let mut cfg = ShoalConfig::load(cli.config.as_deref(), std::env::vars(), &cli.sets)?;
    cfg.server.log_json |= cli.log_json;
    Ok(cfg)
}

async fn run(cli: Cli) -> Result<()> {
    let cfg = load_config(&cli)?;
    if !matches!(cli.command, Command::Config { .. } | Command::Completions { .. }) {
        init_logs(cfg.server.log_json);
    }
    match cli.command {
        Command::Up(a) => up(cfg, a).await,
        Command::Coordinator(a) => coordinator(cfg, a).await,
        Command::Worker(a) => run_worker(cfg, a).await,
        Command::Submit(a) => submit(a).await,
        Command::Status(a) => status(a).await,
        Command::Job { action } => job(action).await,
        Command::Workers(a) => workers(a).await,
        Command::Leaderboard(a) => leaderboard(a).await,
        Command::Contributor { action } => contributor(action).await,
        Command::Epoch { action, list } => epoch(action, list).await,
        Command::Keygen(a) => keygen(cfg, a),
        Command::Token { action } => admin::token(action).await,
        Command::Backup(a) => admin::backup(a).await,
        Command::Restore(a) => admin::restore(&a),
        Command::Config { action: ConfigAction::Print } => {
            print!("{}", cfg.to_toml());
            Ok(())
        }
        Command::Sim(a) if a.coordinator.is_some() => sim_over_sockets(&a).await,
        Command::Sim(a) => sim(&a),
        Command::Bench(a) => bench::run(a).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "shoal", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// The whole `shoal` command: parses the arguments (exit code 2 on a
/// usage error), starts a runtime, runs the subcommand; a failure prints
/// one line and exits with its code (`shoal --help` lists them). The
/// `shoal` binary is this call; so is the end-to-end tests' copy of it
/// (`tests/`), built fresh by cargo for them.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let ran = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
        .and_then(|runtime| runtime.block_on(run(cli)));
    match ran {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => exit::fail(&e, LOG_JSON.load(std::sync::atomic::Ordering::Relaxed)),
    }
}
