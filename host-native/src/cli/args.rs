//! The command line: every subcommand and its arguments (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::bench;

/// What `shoal --help` says about exit codes (the codes are `super::exit`'s).
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  failure (anything below does not cover)
  2  usage: unknown command, bad flag or value
  3  not found (no such job, token…)
  4  permission denied or unauthenticated (a token is missing, wrong, revoked, or lacks the role)
  5  unavailable: the coordinator cannot be reached, or is not running
  6  refused: the coordinator rejected the request (invalid argument, limit, precondition)
  7  the job finished, but not every task was verified (submit --wait, job watch)

Environment: SHOAL_ADDR (client commands' gRPC URL), SHOAL_WORKER_ADDR (a worker's
coordinator URL), SHOAL_API_TOKEN, SHOAL_CONFIG.";

#[derive(Parser)]
#[command(
    name = "shoal",
    version,
    about = "A verifiable compute swarm of browser tabs and spare GPUs",
    after_help = EXIT_CODES
)]
pub(super) struct Cli {
    /// Configuration file (TOML; `shoal config print` shows every key).
    #[arg(long, global = true, env = "SHOAL_CONFIG")]
    pub(super) config: Option<PathBuf>,
    /// Override a configuration key, e.g. `--set coordinator.default_redundancy=3` (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub(super) sets: Vec<String>,
    /// Logs as JSON lines.
    #[arg(long, global = true)]
    pub(super) log_json: bool,
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Subcommand)]
pub(super) enum Command {
    /// Coordinator + embedded storage + dashboard + local workers, with a demo job.
    Up(UpArgs),
    /// The coordinator service alone.
    Coordinator(CoordinatorArgs),
    /// A native worker.
    Worker(WorkerArgs),
    /// Submit a job.
    Submit(SubmitArgs),
    /// The swarm's counters.
    Status(ClientArgs),
    /// Jobs: list, status, watch, results, cancel, delete.
    Job {
        #[command(subcommand)]
        action: JobAction,
    },
    /// Connected workers, sorted.
    Workers(WorkersArgs),
    /// Contributors of all time (connected or not) by verified work, or by
    /// pay; or the teams they declared.
    Leaderboard(LeaderboardArgs),
    /// A contributor's record, connected or not.
    Contributor {
        #[command(subcommand)]
        action: ContributorAction,
    },
    /// Settled epochs and their payouts (list), or settle the open one now (close).
    #[command(visible_alias = "epochs")]
    Epoch {
        #[command(subcommand)]
        action: Option<EpochAction>,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Derive a worker's token from the coordinator's secret.
    Keygen(KeygenArgs),
    /// A consistent copy of a running coordinator's data, as one archive (admin).
    Backup(BackupArgs),
    /// Unpacks a backup into a new data folder (`shoal coordinator --data` starts from it).
    Restore(RestoreArgs),
    /// API tokens with roles (admin, submit, read) on a running coordinator.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Simulate a Byzantine swarm: in-process and deterministic, or with
    /// `--coordinator` as real workers over sockets against a running coordinator.
    Sim(SimArgs),
    /// Benchmarks of the service over real sockets.
    Bench(bench::BenchArgs),
    /// A shell completion script on standard output (bash, zsh, fish, elvish, powershell).
    Completions {
        /// Which shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Args)]
pub(super) struct UpArgs {
    /// Local native workers to start (default: one per core, at least 2).
    #[arg(long)]
    pub(super) workers: Option<usize>,
    /// Data folder.
    #[arg(long)]
    pub(super) data: Option<PathBuf>,
    /// Do not submit the demo job.
    #[arg(long)]
    pub(super) no_demo: bool,
    /// Exit once the demo job is verified (for scripts and CI).
    #[arg(long)]
    pub(super) exit_after_demo: bool,
}

#[derive(Args)]
pub(super) struct CoordinatorArgs {
    /// Data folder (storage file and worker secret).
    #[arg(long)]
    pub(super) data: Option<PathBuf>,
    /// gRPC / gRPC-web address.
    #[arg(long)]
    pub(super) grpc: Option<std::net::SocketAddr>,
    /// HTTP address (workers' /ws, /metrics, /api/stats, dashboard).
    #[arg(long)]
    pub(super) http: Option<std::net::SocketAddr>,
    /// Serve the API beyond loopback with anonymous admin access anyway.
    #[arg(long)]
    pub(super) insecure: bool,
}

#[derive(Args)]
pub(super) struct WorkerArgs {
    /// The coordinator's worker plane: its WebSocket URL (`wss://` for TLS).
    #[arg(
        long = "worker-url",
        visible_alias = "coordinator",
        env = "SHOAL_WORKER_ADDR",
        default_value = "ws://127.0.0.1:14690/ws"
    )]
    pub(super) coordinator: String,
    /// The local address to connect from (a host with several addresses).
    #[arg(long, value_name = "IP")]
    pub(super) bind: Option<std::net::IpAddr>,
    /// A private CA (PEM) to trust for `wss://`, beside the system's roots.
    #[arg(long)]
    pub(super) ca: Option<std::path::PathBuf>,
    /// Token from `shoal keygen`, for a worker the operator manages
    /// (without one, the worker joins as its own contributor identity).
    #[arg(long, env = "SHOAL_TOKEN", conflicts_with = "guest")]
    pub(super) token: Option<String>,
    /// Worker id (must match the token).
    #[arg(long, default_value = "worker-1")]
    pub(super) id: String,
    /// The contributor identity's key file (made on first run, mode 0600;
    /// default: worker.key in the data folder, `server.data`). The same
    /// key is the same contributor: its record and earnings follow it.
    #[arg(long)]
    pub(super) identity: Option<PathBuf>,
    /// Join as an anonymous guest (a new id each connection) instead.
    #[arg(long)]
    pub(super) guest: bool,
    /// Where this identity's payouts go (checked against the
    /// coordinator's `coordinator.payout_pattern`). Declared, with
    /// `--name` and `--team`, under the identity's signature; when none of
    /// the three is given the coordinator keeps what was declared before.
    #[arg(long, conflicts_with_all = ["token", "guest"])]
    pub(super) payout: Option<String>,
    /// A display name for leaderboards.
    #[arg(long, conflicts_with_all = ["token", "guest"])]
    pub(super) name: Option<String>,
    /// A team for leaderboards.
    #[arg(long, conflicts_with_all = ["token", "guest"])]
    pub(super) team: Option<String>,
    /// Assignments at once. Default, from the device: on a GPU one more
    /// than the tasks its measured pipeline keeps in flight (so the next
    /// task's inputs arrive while those run); on the CPU, one per core.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub(super) concurrency: Option<u16>,
    /// MiB of shared inputs (a job's model, its tables) kept between tasks
    /// instead of downloaded again; 0 keeps none.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(0..=1 << 20))]
    pub(super) input_cache_mib: u64,
    /// Also keep the shared inputs in this folder (one file each, named by
    /// its digest), so a restarted worker holds them again.
    #[arg(long)]
    pub(super) input_cache_dir: Option<std::path::PathBuf>,
    /// Run kernels on the CPU reference implementations even if a GPU is present.
    #[arg(long, conflicts_with = "gpu")]
    pub(super) cpu: bool,
    /// Run kernels on any GPU adapter, software ones (lavapipe) included.
    /// Default: a hardware GPU if one is present, else the CPU.
    #[arg(long)]
    pub(super) gpu: bool,
}

#[derive(Args, Clone)]
pub(super) struct ClientArgs {
    /// The coordinator's control plane: its gRPC URL (`https://` for TLS).
    #[arg(long = "api", visible_alias = "coordinator", env = "SHOAL_ADDR", default_value = "http://127.0.0.1:14689")]
    pub(super) coordinator: String,
    /// A private CA (PEM) to trust for `https://`, beside the system's roots.
    #[arg(long)]
    pub(super) ca: Option<std::path::PathBuf>,
    /// JSON output.
    #[arg(long)]
    pub(super) json: bool,
    /// An API token (`shoal token create`, or server.api_token), if the call needs one.
    #[arg(long, env = "SHOAL_API_TOKEN", default_value = "", hide_env_values = true)]
    pub(super) api_token: String,
}

/// A list command's client and how much of the list to show.
#[derive(Args, Clone)]
pub(super) struct ListArgs {
    #[command(flatten)]
    pub(super) client: ClientArgs,
    /// Show at most this many (0: all, fetched page by page).
    #[arg(long, default_value_t = 100)]
    pub(super) limit: usize,
}

#[derive(Args, Clone)]
pub(super) struct LeaderboardArgs {
    #[command(flatten)]
    pub(super) list: ListArgs,
    /// Most paid in settled epochs first (default: most verified work).
    #[arg(long, conflicts_with = "teams")]
    pub(super) earned: bool,
    /// The teams contributors declared, with their members' totals.
    #[arg(long)]
    pub(super) teams: bool,
}

/// What `shoal workers` sorts by.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(super) enum WorkerOrderArg {
    /// Worker id.
    Id,
    /// Backend, then id.
    Backend,
    /// Tier.
    Tier,
    /// Measured speed.
    Mflops,
    /// Credibility.
    Credibility,
    /// Verified work, all time.
    Agreed,
    /// Agreement in the open epoch.
    Accuracy,
    /// Assignments in flight.
    InFlight,
    /// Last message.
    LastSeen,
}

#[derive(Args, Clone)]
pub(super) struct WorkersArgs {
    #[command(flatten)]
    pub(super) list: ListArgs,
    /// Sort by.
    #[arg(long, value_enum, default_value = "id")]
    pub(super) order: WorkerOrderArg,
    /// Largest first.
    #[arg(long)]
    pub(super) desc: bool,
}

#[derive(Subcommand)]
pub(super) enum ContributorAction {
    /// Credibility, verified work, slashing, and what settled epochs paid.
    Show {
        /// A worker id (`id-…` for an identity), or an identity's public key.
        key: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Approve an identity (`coordinator.identities = "approval"`; admin).
    Approve {
        /// Its worker id (`id-…`) or public key.
        key: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Withdraw an identity's approval: it is disconnected and refused (admin).
    Revoke {
        /// Its worker id (`id-…`) or public key.
        key: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Set a worker's stake in base units (admin; 0 takes it back): it
    /// weighs its pay and is forfeited if it is caught lying.
    Stake {
        /// Its worker id.
        worker: String,
        /// Base units (10^18 per token).
        amount: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Identities that proved their key and wait for approval, oldest first.
    Pending {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
pub(super) enum EpochAction {
    /// Settled epochs, newest first, with their payouts.
    List {
        #[command(flatten)]
        list: ListArgs,
    },
    /// Settle the open epoch now (admin) and show it.
    Close {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args)]
pub(super) struct SubmitArgs {
    #[command(flatten)]
    pub(super) client: ClientArgs,
    /// Built-in kernel: sha256, matmul or mandelbrot.
    #[arg(long, conflicts_with = "file")]
    pub(super) kernel: Option<String>,
    /// Job file (JSON: {"name", "redundancy", "shared_base64": […], "tasks": [{"kernel": …,
    /// "inputs_base64": […]} or {"kernel": …, "parts": [{"base64": …}, {"shared": 0}]}]}):
    /// shared inputs go to each worker once.
    #[arg(long)]
    pub(super) file: Option<PathBuf>,
    /// Tasks (sha256, matmul: seeded random inputs).
    #[arg(long, default_value_t = 16)]
    pub(super) tasks: u32,
    /// sha256: messages per task; matmul: matrix edge; mandelbrot: image edge in pixels.
    #[arg(long, default_value_t = 256)]
    pub(super) size: u32,
    /// mandelbrot: tile edge in pixels.
    #[arg(long, default_value_t = 64)]
    pub(super) tile: u32,
    /// Replicas per task (0: the coordinator's default).
    #[arg(long, default_value_t = 0)]
    pub(super) redundancy: u32,
    /// Name of the job.
    #[arg(long, default_value = "")]
    pub(super) name: String,
    /// An id for this submission (e.g. a UUID): submitting again with the
    /// same id answers the first job instead of making a second, so a
    /// script may retry safely.
    #[arg(long, default_value = "")]
    pub(super) request_id: String,
    /// Wait for the job with a progress bar, then write its results.
    #[arg(long)]
    pub(super) wait: bool,
    /// Where `--wait` writes results.
    #[arg(long, default_value = "shoal-results")]
    pub(super) out: PathBuf,
}

#[derive(Subcommand)]
pub(super) enum JobAction {
    /// Jobs, newest first (a submit token: its own).
    List {
        #[command(flatten)]
        list: ListArgs,
    },
    /// Follow a job: each task's outcome as it ends (a line each; with
    /// --json, one StreamJobResultsResponse per line), until every task ended.
    Watch {
        /// Job id.
        job: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Progress.
    Status {
        /// Job id.
        job: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Write the outputs of ended tasks to a folder.
    Results {
        /// Job id.
        job: String,
        #[command(flatten)]
        client: ClientArgs,
        /// Folder.
        #[arg(long, default_value = "shoal-results")]
        out: PathBuf,
    },
    /// Cancel pending tasks.
    Cancel {
        /// Job id.
        job: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a finished job's records, results and inputs now.
    Delete {
        /// Job id.
        job: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A job's tasks still pending: how long each has been queued, staged
    /// and running, and its replicas in flight.
    Pending {
        /// Job id.
        job: String,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Dead-lettered tasks of every job (or of one), with their reasons
    /// and where each was re-queued.
    DeadLetters {
        /// Only this job's.
        #[arg(long)]
        job: Option<String>,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Run a job's dead-lettered tasks again as a new job, once what made
    /// them fail is fixed.
    Requeue {
        /// Job id.
        job: String,
        /// Task indices (default: every dead letter not re-queued yet).
        indices: Vec<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args)]
pub(super) struct BackupArgs {
    #[command(flatten)]
    pub(super) client: ClientArgs,
    /// Where the archive goes (written whole or not at all).
    #[arg(long)]
    pub(super) out: PathBuf,
}

#[derive(Args)]
pub(super) struct RestoreArgs {
    /// An archive from `shoal backup`.
    #[arg(long)]
    pub(super) from: PathBuf,
    /// The data folder to create (must not exist, or be empty).
    #[arg(long)]
    pub(super) data: PathBuf,
}

#[derive(Subcommand)]
pub(super) enum TokenAction {
    /// Makes a token and prints it (once: the coordinator keeps its hash).
    Create {
        /// admin (everything), submit (submit; read and cancel its own jobs;
        /// read the swarm) or read (read everything, change nothing).
        #[arg(long)]
        role: String,
        /// A name for people and for revoking it.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Every token (live and revoked), without the tokens.
    List {
        #[command(flatten)]
        list: ListArgs,
    },
    /// Revokes a token at once, by name or id.
    Revoke {
        /// Its name or id.
        token: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args)]
pub(super) struct KeygenArgs {
    /// Worker id to make a token for.
    #[arg(long)]
    pub(super) worker: String,
    /// Data folder holding the coordinator's secret.
    #[arg(long)]
    pub(super) data: Option<PathBuf>,
}

#[derive(Subcommand)]
pub(super) enum ConfigAction {
    /// The effective configuration (defaults, file, environment, flags).
    Print,
}

#[derive(Args)]
pub(super) struct SimArgs {
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub(super) seed: u64,
    /// Honest workers.
    #[arg(long, default_value_t = 20)]
    pub(super) workers: usize,
    /// Lying workers (random wrong answers).
    #[arg(long, default_value_t = 0)]
    pub(super) liars: usize,
    /// Colluding workers (the same wrong answer).
    #[arg(long, default_value_t = 0)]
    pub(super) colluders: usize,
    /// Percent of their tasks the dishonest workers lie on.
    #[arg(long, default_value_t = 100)]
    pub(super) lie_pct: u32,
    /// Tasks.
    #[arg(long, default_value_t = 10_000)]
    pub(super) tasks: usize,
    /// Replicas per task.
    #[arg(long, default_value_t = 2)]
    pub(super) redundancy: u8,
    /// JSON summary.
    #[arg(long)]
    pub(super) json: bool,
    /// Run the workers over real sockets against this coordinator, whose
    /// control plane (gRPC URL, e.g. http://127.0.0.1:14689) is given here,
    /// instead of in-process.
    #[arg(long = "api", visible_alias = "coordinator")]
    pub(super) coordinator: Option<String>,
    /// With --coordinator: its workers' WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:14690/ws")]
    pub(super) worker_url: String,
    /// With --coordinator: its data folder (worker tokens are derived from its secret).
    #[arg(long, default_value = "shoal-data")]
    pub(super) data: PathBuf,
}
