//! The `shoal` command: run a coordinator, a worker, or the whole swarm on
//! one machine; submit jobs and read results; inspect workers and epochs;
//! simulate and benchmark.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use clap::{Args, Parser, Subcommand};
use shoal_core::auth::derive_token;
use shoal_core::kernels::{KernelSpec, MandelbrotParams, MatmulParams, Sha256Params};
use shoal_core::WorkerId;
use shoal_native::grpc::pb::shoal_client::ShoalClient;
use shoal_native::grpc::{kernel_to_pb, pb, WithToken};
use shoal_native::worker::{self, Behaviour, Executor, WorkerOptions};
use shoal_native::{bench, Service, ShoalConfig};
use tokio::sync::watch;

#[derive(Parser)]
#[command(name = "shoal", version, about = "A verifiable compute swarm of browser tabs and spare GPUs")]
struct Cli {
    /// Configuration file (TOML; `shoal config print` shows every key).
    #[arg(long, global = true, env = "SHOAL_CONFIG")]
    config: Option<PathBuf>,
    /// Override a configuration key, e.g. `--set coordinator.default_redundancy=3` (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Logs as JSON lines.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Coordinator + embedded storage + dashboard + local workers, with a demo job.
    Up(UpArgs),
    /// The coordinator service alone.
    Coordinator(CoordinatorArgs),
    /// A native worker.
    Worker(WorkerArgs),
    /// Submit a job.
    Submit(SubmitArgs),
    /// A job's status, results, or cancellation.
    Job {
        #[command(subcommand)]
        action: JobAction,
    },
    /// Connected workers.
    Workers(ClientArgs),
    /// Settled epochs and their payouts.
    Epochs(ClientArgs),
    /// Derive a worker's token from the coordinator's secret.
    Keygen(KeygenArgs),
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
}

#[derive(Args)]
struct UpArgs {
    /// Local native workers to start (default: one per core, at least 2).
    #[arg(long)]
    workers: Option<usize>,
    /// Data folder.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Do not submit the demo job.
    #[arg(long)]
    no_demo: bool,
    /// Exit once the demo job is verified (for scripts and CI).
    #[arg(long)]
    exit_after_demo: bool,
}

#[derive(Args)]
struct CoordinatorArgs {
    /// Data folder (storage file and worker secret).
    #[arg(long)]
    data: Option<PathBuf>,
    /// gRPC / gRPC-web address.
    #[arg(long)]
    grpc: Option<std::net::SocketAddr>,
    /// HTTP address (workers' /ws, /metrics, /api/stats, dashboard).
    #[arg(long)]
    http: Option<std::net::SocketAddr>,
}

#[derive(Args)]
struct WorkerArgs {
    /// Coordinator's worker URL.
    #[arg(long, default_value = "ws://127.0.0.1:14690/ws")]
    coordinator: String,
    /// Token from `shoal keygen` (omit to join as a guest, if allowed).
    #[arg(long, env = "SHOAL_TOKEN")]
    token: Option<String>,
    /// Worker id (must match the token).
    #[arg(long, default_value = "worker-1")]
    id: String,
    /// Assignments at once.
    #[arg(long, default_value_t = 2)]
    concurrency: u16,
    /// Run kernels on the CPU reference implementations even if a GPU is present.
    #[arg(long, conflicts_with = "gpu")]
    cpu: bool,
    /// Run kernels on any GPU adapter, software ones (lavapipe) included.
    /// Default: a hardware GPU if one is present, else the CPU.
    #[arg(long)]
    gpu: bool,
}

#[derive(Args, Clone)]
struct ClientArgs {
    /// Coordinator's gRPC URL.
    #[arg(long, default_value = "http://127.0.0.1:14689")]
    coordinator: String,
    /// JSON output.
    #[arg(long)]
    json: bool,
    /// The coordinator's API token (server.api_token), if it requires one.
    #[arg(long, env = "SHOAL_API_TOKEN", default_value = "", hide_env_values = true)]
    api_token: String,
}

#[derive(Args)]
struct SubmitArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Built-in kernel: sha256, matmul or mandelbrot.
    #[arg(long, conflicts_with = "file")]
    kernel: Option<String>,
    /// Job file (JSON: {"name", "redundancy", "tasks": [{"kernel": …, "inputs_base64": […]}]}).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Tasks (sha256, matmul: seeded random inputs).
    #[arg(long, default_value_t = 16)]
    tasks: u32,
    /// sha256: messages per task; matmul: matrix edge; mandelbrot: image edge in pixels.
    #[arg(long, default_value_t = 256)]
    size: u32,
    /// mandelbrot: tile edge in pixels.
    #[arg(long, default_value_t = 64)]
    tile: u32,
    /// Replicas per task (0: the coordinator's default).
    #[arg(long, default_value_t = 0)]
    redundancy: u32,
    /// Name of the job.
    #[arg(long, default_value = "")]
    name: String,
    /// Wait for the job with a progress bar, then write its results.
    #[arg(long)]
    wait: bool,
    /// Where `--wait` writes results.
    #[arg(long, default_value = "shoal-results")]
    out: PathBuf,
}

#[derive(Subcommand)]
enum JobAction {
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
}

#[derive(Args)]
struct KeygenArgs {
    /// Worker id to make a token for.
    #[arg(long)]
    worker: String,
    /// Data folder holding the coordinator's secret.
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// The effective configuration (defaults, file, environment, flags).
    Print,
}

#[derive(Args)]
struct SimArgs {
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Honest workers.
    #[arg(long, default_value_t = 20)]
    workers: usize,
    /// Lying workers (random wrong answers).
    #[arg(long, default_value_t = 0)]
    liars: usize,
    /// Colluding workers (the same wrong answer).
    #[arg(long, default_value_t = 0)]
    colluders: usize,
    /// Percent of their tasks the dishonest workers lie on.
    #[arg(long, default_value_t = 100)]
    lie_pct: u32,
    /// Tasks.
    #[arg(long, default_value_t = 10_000)]
    tasks: usize,
    /// Replicas per task.
    #[arg(long, default_value_t = 2)]
    redundancy: u8,
    /// JSON summary.
    #[arg(long)]
    json: bool,
    /// Run the workers over real sockets against this coordinator's gRPC URL
    /// (e.g. http://127.0.0.1:14689) instead of in-process.
    #[arg(long)]
    coordinator: Option<String>,
    /// With --coordinator: its workers' WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:14690/ws")]
    worker_url: String,
    /// With --coordinator: its data folder (worker tokens are derived from its secret).
    #[arg(long, default_value = "shoal-data")]
    data: PathBuf,
}

/// mimalloc: the coordinator allocates and frees many small records per
/// task (offers, results, ledger entries); measured faster than the system
/// allocator on the replica cycle (`cargo bench -p shoal-core --bench
/// coordinator` uses it too).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    runtime.block_on(run(cli))
}

fn init_logs(json: bool) {
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
    if !matches!(cli.command, Command::Config { .. }) {
        init_logs(cfg.server.log_json);
    }
    match cli.command {
        Command::Up(a) => up(cfg, a).await,
        Command::Coordinator(a) => coordinator(cfg, a).await,
        Command::Worker(a) => run_worker(a).await,
        Command::Submit(a) => submit(a).await,
        Command::Job { action } => job(action).await,
        Command::Workers(a) => workers(a).await,
        Command::Epochs(a) => epochs(a).await,
        Command::Keygen(a) => keygen(cfg, a),
        Command::Config { action: ConfigAction::Print } => {
            print!("{}", cfg.to_toml());
            Ok(())
        }
        Command::Sim(a) if a.coordinator.is_some() => sim_over_sockets(&a).await,
        Command::Sim(a) => sim(&a),
        Command::Bench(a) => bench::run(a).await,
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn coordinator(mut cfg: ShoalConfig, a: CoordinatorArgs) -> Result<()> {
    if let Some(d) = a.data {
        cfg.server.data = d;
    }
    if let Some(g) = a.grpc {
        cfg.server.grpc = g;
    }
    if let Some(h) = a.http {
        cfg.server.http = h;
    }
    let service = Service::start(cfg).await?;
    println!("workers:   {}", service.worker_url());
    println!("gRPC:      {}", service.grpc_url());
    println!("http:      http://{}/ (/healthz, /metrics, /api/stats; the dashboard when built)", service.http_addr);
    // Until asked to stop — or until the engine stops by itself (a storage
    // failure): then exit non-zero so a supervisor restarts it and the
    // restart recovers from what was durable.
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => break,
            () = tokio::time::sleep(Duration::from_millis(500)) => {
                if service.engine.is_stopped() {
                    let _ = service.shutdown().await;
                    bail!("the coordinator stopped on a storage error (see the log); restart it to recover");
                }
            }
        }
    }
    eprintln!("shutting down…");
    service.shutdown().await?;
    Ok(())
}

async fn up(mut cfg: ShoalConfig, a: UpArgs) -> Result<()> {
    if let Some(d) = a.data {
        cfg.server.data = d;
    }
    // Every local worker shares this machine's address.
    cfg.coordinator.distinct_origins = false;
    // Tabs opened on the contribute page join as guests.
    cfg.coordinator.allow_guests = true;
    let service = Service::start(cfg.clone()).await?;
    let n = a.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, std::num::NonZero::get).max(2));
    let (stop, stop_rx) = watch::channel(false);
    let mut handles = Vec::new();
    for i in 0..n {
        let id = WorkerId::new(format!("local-{i}"))?;
        let opts = WorkerOptions {
            url: service.worker_url(),
            token: Some(derive_token(&service.secret, &id)),
            worker_id: id,
            max_concurrent: 2,
            behaviour: Behaviour::Honest,
            reconnect: true,
            executor: shoal_native::worker::Executor::Cpu,
            seed: i as u64 + 1,
        };
        handles.push(tokio::spawn(worker::run(opts, stop_rx.clone())));
    }
    println!("Shoal is up.");
    if cfg.server.dist.join("index.html").is_file() {
        println!("  dashboard   http://{}/", service.http_addr);
    } else {
        println!("  dashboard   not built yet (files go in {})", cfg.server.dist.display());
    }
    if cfg.server.dist.join("worker.html").is_file() {
        println!("  contribute  http://{}/worker.html (this browser tab as a worker)", service.http_addr);
    }
    println!("  stats       http://{}/api/stats", service.http_addr);
    println!("  metrics     http://{}/metrics", service.http_addr);
    println!("  gRPC        {}", service.grpc_url());
    println!("  workers     {} ({n} local native workers on the CPU reference kernels)", service.worker_url());
    println!("  data        {}", cfg.server.data.display());
    if !a.no_demo {
        let edge = 512;
        let tasks = mandelbrot_tasks(edge, 64);
        let client =
            ClientArgs { coordinator: service.grpc_url(), json: false, api_token: cfg.server.api_token.clone() };
        let mut c = connect(&client).await?;
        let job = submit_tasks(&mut c, "demo: mandelbrot 512×512", 2, &tasks).await?;
        println!("  demo job    {job}: {} Mandelbrot tiles, each verified by 2 workers", tasks.len());
        let status = wait_with_progress(&mut c, &job).await?;
        let out = cfg.server.data.join("mandelbrot.pgm");
        let written = write_results(&mut c, &job, &tasks, &out.with_extension("")).await?;
        let image = assemble_mandelbrot(&mut c, &job, edge, 64).await?;
        std::fs::write(&out, image).with_context(|| format!("writing {}", out.display()))?;
        println!(
            "  demo done   {} of {} tiles verified; image {} ({written} result files)",
            status.verified,
            status.tasks,
            out.display()
        );
    }
    if !a.exit_after_demo {
        println!("Ctrl-C stops.");
        shutdown_signal().await;
    }
    let _ = stop.send(true);
    for h in handles {
        let _ = tokio::time::timeout(Duration::from_secs(3), h).await;
    }
    service.shutdown().await?;
    Ok(())
}

async fn run_worker(a: WorkerArgs) -> Result<()> {
    let executor = if a.cpu {
        Executor::Cpu
    } else {
        match shoal_compute::Gpu::new(shoal_compute::GpuOptions { allow_software: a.gpu, ..Default::default() }).await {
            Ok(gpu) => {
                let info = gpu.adapter_info();
                eprintln!("GPU: {} ({:?}, {:?})", info.name, info.backend, info.device_type);
                // What the device really holds (declared in the hello; tiers use it).
                let stable = gpu.max_stable_allocation(4 << 30, 16 << 20).await;
                eprintln!("GPU: largest stable allocation {} MiB", stable >> 20);
                Executor::Gpu(std::sync::Arc::new(gpu))
            }
            Err(e) if a.gpu => bail!("--gpu: {e}"),
            Err(e) => {
                eprintln!("no hardware GPU ({e}); running the CPU reference kernels");
                Executor::Cpu
            }
        }
    };
    let (stop, rx) = watch::channel(false);
    let opts = WorkerOptions {
        url: a.coordinator.clone(),
        worker_id: WorkerId::new(a.id.clone())?,
        token: a.token,
        max_concurrent: a.concurrency,
        behaviour: Behaviour::Honest,
        reconnect: true,
        executor,
        seed: std::process::id().into(),
    };
    let handle = tokio::spawn(worker::run(opts, rx));
    eprintln!("worker {} → {}", a.id, a.coordinator);
    shutdown_signal().await;
    let _ = stop.send(true);
    let report = handle.await??;
    eprintln!("worker {}: {} results sent over {} connections", a.id, report.completed, report.connections);
    Ok(())
}

/// A gRPC client that sends the API token, if one is given.
type Client = ShoalClient<tonic::service::interceptor::InterceptedService<tonic::transport::Channel, WithToken>>;

async fn connect(a: &ClientArgs) -> Result<Client> {
    let channel = tonic::transport::Endpoint::from_shared(a.coordinator.clone())
        .with_context(|| format!("`{}` is not a URL", a.coordinator))?
        .connect()
        .await
        .with_context(|| format!("cannot reach the coordinator at {}", a.coordinator))?;
    let token = WithToken::new(&a.api_token).map_err(|s| anyhow::anyhow!("{}", s.message()))?;
    Ok(ShoalClient::with_interceptor(channel, token)
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20))
}

fn mandelbrot_tasks(edge: u32, tile: u32) -> Vec<(KernelSpec, Vec<Vec<u8>>)> {
    let tile = tile.clamp(1, edge.max(1));
    let step = 3.0 / f64::from(edge);
    let mut tasks = Vec::new();
    for ty in (0..edge).step_by(tile as usize) {
        for tx in (0..edge).step_by(tile as usize) {
            let k = KernelSpec::Mandelbrot(MandelbrotParams::from_plane(
                tile.min(edge - tx),
                tile.min(edge - ty),
                -2.25 + f64::from(tx) * step,
                -1.5 + f64::from(ty) * step,
                step,
                256,
            ));
            tasks.push((k, Vec::new()));
        }
    }
    tasks
}

#[derive(serde::Deserialize)]
struct JobFile {
    #[serde(default)]
    name: String,
    #[serde(default)]
    redundancy: u32,
    tasks: Vec<JobFileTask>,
}

#[derive(serde::Deserialize)]
struct JobFileTask {
    kernel: KernelSpec,
    #[serde(default)]
    inputs_base64: Vec<String>,
}

/// Tasks of a job: a kernel and its inputs each.
type Tasks = Vec<(KernelSpec, Vec<Vec<u8>>)>;

fn tasks_from(a: &SubmitArgs) -> Result<(Tasks, String, u32)> {
    if let Some(path) = &a.file {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let f: JobFile =
            serde_json::from_str(&text).with_context(|| format!("{} is not a job file", path.display()))?;
        let mut tasks = Vec::new();
        for (i, t) in f.tasks.into_iter().enumerate() {
            let inputs = t
                .inputs_base64
                .iter()
                .map(|s| base64::engine::general_purpose::STANDARD.decode(s))
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("task {i}: inputs are not base64"))?;
            tasks.push((t.kernel, inputs));
        }
        let name = if a.name.is_empty() { f.name } else { a.name.clone() };
        return Ok((tasks, name, if a.redundancy > 0 { a.redundancy } else { f.redundancy }));
    }
    let kernel = a.kernel.as_deref().unwrap_or("mandelbrot");
    let seed = u64::from(std::process::id());
    let tasks = match kernel {
        "mandelbrot" => mandelbrot_tasks(a.size, a.tile),
        "sha256" => (0..a.tasks)
            .map(|i| {
                let k = KernelSpec::Sha256(Sha256Params { count: a.size.max(1), message_len: 64 });
                let inputs = k.seeded_inputs(seed ^ u64::from(i));
                (k, inputs)
            })
            .collect(),
        "matmul" => (0..a.tasks)
            .map(|i| {
                let k = KernelSpec::MatmulF32(MatmulParams::square(a.size.clamp(1, 2048)));
                let inputs = k.seeded_inputs(seed ^ u64::from(i));
                (k, inputs)
            })
            .collect(),
        other => bail!("unknown kernel `{other}`: sha256, matmul or mandelbrot (or --file for any kernel)"),
    };
    let name = if a.name.is_empty() { format!("{kernel} ×{}", tasks.len()) } else { a.name.clone() };
    Ok((tasks, name, a.redundancy))
}

async fn submit_tasks(
    c: &mut Client,
    name: &str,
    redundancy: u32,
    tasks: &[(KernelSpec, Vec<Vec<u8>>)],
) -> Result<String> {
    let header = pb::SubmitJobRequest {
        part: Some(pb::submit_job_request::Part::Header(pb::JobHeader {
            redundancy,
            name: name.to_owned(),
            ..Default::default()
        })),
    };
    let mut msgs = vec![header];
    for (k, inputs) in tasks {
        msgs.push(pb::SubmitJobRequest {
            part: Some(pb::submit_job_request::Part::Task(pb::Task {
                kernel: Some(kernel_to_pb(k)),
                inputs: inputs.iter().map(|i| bytes::Bytes::copy_from_slice(i)).collect(),
            })),
        });
    }
    let r =
        c.submit_job(tokio_stream::iter(msgs)).await.map_err(|s| anyhow::anyhow!("job refused: {}", s.message()))?;
    Ok(r.into_inner().job_id)
}

async fn wait_with_progress(c: &mut Client, job: &str) -> Result<pb::JobStatus> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "  {spinner} [{bar:40}] {pos}/{len} tasks ended ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    loop {
        let s = c.get_job(pb::JobRef { job_id: job.to_owned() }).await?.into_inner();
        bar.set_length(u64::from(s.tasks));
        bar.set_position(u64::from(s.verified + s.dead_lettered + s.cancelled));
        if s.finished {
            bar.finish_and_clear();
            return Ok(s);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn outcomes(c: &mut Client, job: &str) -> Result<Vec<pb::TaskOutcome>> {
    let mut s = c
        .stream_job_results(pb::StreamJobResultsRequest { job_id: job.to_owned(), follow: false, omit_outputs: false })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(o) = s.message().await? {
        out.push(o);
    }
    Ok(out)
}

/// Writes `task-NNNNNN.outK` files and a `summary.json`; returns how many files.
async fn write_results(c: &mut Client, job: &str, _tasks: &[(KernelSpec, Vec<Vec<u8>>)], dir: &Path) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let all = outcomes(c, job).await?;
    let mut files = 0;
    let mut summary = Vec::new();
    for o in &all {
        for (k, bytes) in o.outputs.iter().enumerate() {
            std::fs::write(dir.join(format!("task-{:06}.out{k}", o.index)), bytes)?;
            files += 1;
        }
        summary.push(serde_json::json!({
            "index": o.index,
            "kind": match o.kind { 0 => "verified", 1 => "dead_lettered", _ => "cancelled" },
            "digest": o.digest,
            "agreed": o.agreed,
            "outvoted": o.outvoted,
            "reason": o.reason,
        }));
    }
    std::fs::write(dir.join("summary.json"), serde_json::to_vec_pretty(&summary)?)?;
    Ok(files)
}

/// The demo image as a binary PGM.
async fn assemble_mandelbrot(c: &mut Client, job: &str, edge: u32, tile: u32) -> Result<Vec<u8>> {
    let per_row = edge.div_ceil(tile);
    let mut img = vec![0u8; (edge * edge) as usize];
    for o in outcomes(c, job).await? {
        let Some(out) = o.outputs.first() else { continue };
        let (tx, ty) = ((o.index % per_row) * tile, (o.index / per_row) * tile);
        let (w, h) = (tile.min(edge - tx), tile.min(edge - ty));
        for y in 0..h {
            for x in 0..w {
                let i = ((y * w + x) * 4) as usize;
                let it = out.get(i..i + 4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                let v = if it >= 256 { 0 } else { (255.0 * (f64::from(it) / 256.0).sqrt()) as u8 };
                img[((ty + y) * edge + tx + x) as usize] = v;
            }
        }
    }
    let mut pgm = format!("P5\n{edge} {edge}\n255\n").into_bytes();
    pgm.extend_from_slice(&img);
    Ok(pgm)
}

async fn submit(a: SubmitArgs) -> Result<()> {
    let (tasks, name, redundancy) = tasks_from(&a)?;
    let mut c = connect(&a.client).await?;
    let job = submit_tasks(&mut c, &name, redundancy, &tasks).await?;
    if a.client.json {
        println!("{}", serde_json::json!({ "job_id": job, "tasks": tasks.len() }));
    } else {
        println!("{job}");
    }
    if a.wait {
        let s = wait_with_progress(&mut c, &job).await?;
        let n = write_results(&mut c, &job, &tasks, &a.out).await?;
        eprintln!(
            "{} verified, {} dead-lettered, {} cancelled; {n} output files in {}",
            s.verified,
            s.dead_lettered,
            s.cancelled,
            a.out.display()
        );
    }
    Ok(())
}

async fn job(action: JobAction) -> Result<()> {
    match action {
        JobAction::Status { job, client } => {
            let mut c = connect(&client).await?;
            let s = c.get_job(pb::JobRef { job_id: job }).await.map_err(|s| anyhow::anyhow!("{}", s.message()))?;
            let s = s.into_inner();
            if client.json {
                println!(
                    "{}",
                    serde_json::json!({"job_id": s.job_id, "name": s.name, "tasks": s.tasks, "verified": s.verified,
                        "dead_lettered": s.dead_lettered, "cancelled": s.cancelled, "finished": s.finished})
                );
            } else {
                println!(
                    "{} {:?}: {}/{} verified, {} dead-lettered, {} cancelled{}",
                    s.job_id,
                    s.name,
                    s.verified,
                    s.tasks,
                    s.dead_lettered,
                    s.cancelled,
                    if s.finished { " (finished)" } else { "" }
                );
            }
        }
        JobAction::Results { job, client, out } => {
            let mut c = connect(&client).await?;
            let n = write_results(&mut c, &job, &[], &out).await?;
            println!("{n} output files in {}", out.display());
        }
        JobAction::Cancel { job, client } => {
            let mut c = connect(&client).await?;
            let r = c.cancel_job(pb::JobRef { job_id: job.clone() }).await?.into_inner();
            println!("{}", if r.cancelled { "cancelled" } else { "unknown or already finished" });
        }
    }
    Ok(())
}

async fn workers(a: ClientArgs) -> Result<()> {
    let mut c = connect(&a).await?;
    let list = c.list_workers(pb::Empty {}).await?.into_inner().workers;
    if a.json {
        let rows: Vec<_> = list
            .iter()
            .map(|w| {
                serde_json::json!({"id": w.id, "backend": w.backend, "tier": w.tier, "mflops": w.mflops,
                "credibility_ppm": w.credibility_ppm, "in_flight": w.in_flight, "agreed": w.agreed})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<14} {:>4} {:>10} {:>11} {:>9} {:>8}",
        "id", "backend", "tier", "MFLOPS", "credibility", "in flight", "agreed"
    );
    for w in list {
        println!(
            "{:<24} {:<14} {:>4} {:>10} {:>10.4} {:>9} {:>8}",
            w.id,
            w.backend,
            w.tier,
            w.mflops,
            f64::from(w.credibility_ppm) / 1e6,
            w.in_flight,
            w.agreed
        );
    }
    Ok(())
}

async fn epochs(a: ClientArgs) -> Result<()> {
    let mut c = connect(&a).await?;
    let list = c.epochs(pb::Empty {}).await?.into_inner().epochs;
    if a.json {
        let rows: Vec<_> = list
            .iter()
            .map(|e| {
                serde_json::json!({"epoch": e.epoch, "reward": e.reward, "operator_cut": e.operator_cut,
                "carried_out": e.carried_out, "digest": e.digest,
                "payouts": e.payouts.iter().map(|p| serde_json::json!({"worker": p.worker, "amount": p.amount,
                    "bounty": p.bounty, "tasks": p.tasks})).collect::<Vec<_>>()})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    for e in list {
        println!(
            "epoch {}  reward {}  operator {}  carried {}  digest {}",
            e.epoch, e.reward, e.operator_cut, e.carried_out, e.digest
        );
        for p in e.payouts {
            println!("  {:<24} {:>28} (+{} bounty)  {} tasks", p.worker, p.amount, p.bounty, p.tasks);
        }
    }
    Ok(())
}

fn keygen(cfg: ShoalConfig, a: KeygenArgs) -> Result<()> {
    let data = a.data.unwrap_or(cfg.server.data);
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let secret = shoal_native::service::load_or_create_secret(&data)?;
    let id = WorkerId::new(a.worker)?;
    println!("{}", derive_token(&secret, &id));
    Ok(())
}

fn sim(a: &SimArgs) -> Result<()> {
    use shoal_core::sim::{self, SimConfig, WorkerGroup};
    let mut cfg = SimConfig::honest(a.seed, a.workers, a.tasks);
    cfg.redundancy = a.redundancy;
    for (count, behaviour) in
        [(a.liars, sim::Behaviour::Liar(a.lie_pct)), (a.colluders, sim::Behaviour::Colluder(a.lie_pct))]
    {
        if count > 0 {
            cfg.workers.push(WorkerGroup { count, behaviour, mflops: 10_000, same_origin: false });
        }
    }
    let started = std::time::Instant::now();
    let r = sim::run(cfg);
    let summary = serde_json::json!({
        "seed": a.seed,
        "submitted": r.submitted,
        "verified": r.verified,
        "wrong_accepted": r.wrong_accepted,
        "dead_lettered": r.dead_lettered,
        "lost": r.lost,
        "mean_replicas": r.mean_replicas_milli as f64 / 1000.0,
        "quorum_violations": r.quorum_violations,
        "slashed": r.slashed,
        "honest_slashed": r.honest_slashed,
        "epochs": r.epochs,
        "unbalanced_epochs": r.unbalanced_epochs,
        "paid": r.paid.to_string(),
        "operator_cut": r.operator_cut.to_string(),
        "simulated_ms": r.elapsed.0,
        "wall_ms": started.elapsed().as_millis() as u64,
    });
    if a.json {
        println!("{summary}");
    } else {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    if r.lost > 0 || r.quorum_violations > 0 || r.unbalanced_epochs > 0 {
        bail!(
            "invariant broken: {} lost, {} quorum violations, {} unbalanced epochs",
            r.lost,
            r.quorum_violations,
            r.unbalanced_epochs
        );
    }
    Ok(())
}

/// `shoal sim --coordinator`: honest, lying and colluding native workers
/// over real WebSockets, tiny SHA-256 tasks over gRPC, every accepted
/// result checked against the CPU reference.
async fn sim_over_sockets(a: &SimArgs) -> Result<()> {
    let grpc = a.coordinator.clone().unwrap_or_default();
    let secret = shoal_native::service::load_or_create_secret(&a.data)
        .with_context(|| format!("reading the coordinator's secret in {}", a.data.display()))?;
    let (stop, rx) = watch::channel(false);
    let mut handles = Vec::new();
    let groups = [
        ("sim-honest", a.workers, Behaviour::Honest),
        ("sim-liar", a.liars, Behaviour::Liar(a.lie_pct.min(100) as u8)),
        ("sim-colluder", a.colluders, Behaviour::Colluder(a.lie_pct.min(100) as u8)),
    ];
    for (prefix, count, behaviour) in groups {
        for i in 0..count {
            let id = WorkerId::new(format!("{prefix}-{i}"))?;
            let opts = WorkerOptions {
                url: a.worker_url.clone(),
                token: Some(derive_token(&secret, &id)),
                worker_id: id,
                max_concurrent: 8,
                behaviour,
                reconnect: true,
                executor: shoal_native::worker::Executor::Cpu,
                seed: a.seed ^ (i as u64) << 8,
            };
            handles.push(tokio::spawn(worker::run(opts, rx.clone())));
        }
    }
    let client =
        ClientArgs { coordinator: grpc, json: a.json, api_token: std::env::var("SHOAL_API_TOKEN").unwrap_or_default() };
    let mut c = connect(&client).await?;
    let kernel = KernelSpec::Sha256(Sha256Params { count: 1, message_len: 64 });
    let tasks: Tasks = (0..a.tasks as u64).map(|i| (kernel.clone(), kernel.seeded_inputs(a.seed ^ i))).collect();
    let started = std::time::Instant::now();
    let job = submit_tasks(&mut c, "shoal sim", u32::from(a.redundancy), &tasks).await?;
    let status = wait_with_progress(&mut c, &job).await?;
    let elapsed = started.elapsed();
    let mut wrong = 0usize;
    for o in outcomes(&mut c, &job).await? {
        let (k, inputs) = &tasks[o.index as usize];
        let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        if o.kind == 0 && o.outputs != k.run_cpu(&refs)? {
            wrong += 1;
        }
    }
    let st = c.swarm_status(pb::Empty {}).await?.into_inner();
    let _ = stop.send(true);
    for h in handles {
        let _ = tokio::time::timeout(Duration::from_secs(3), h).await;
    }
    let summary = serde_json::json!({
        "job": job,
        "submitted": tasks.len(),
        "verified": status.verified,
        "dead_lettered": status.dead_lettered,
        "wrong_accepted": wrong,
        "lost": status.tasks - status.verified - status.dead_lettered - status.cancelled,
        "slashed_total": st.slashed,
        "mismatched_total": st.mismatched_tasks,
        "wall_ms": elapsed.as_millis() as u64,
        "verified_per_s": f64::from(status.verified) / elapsed.as_secs_f64(),
    });
    if a.json {
        println!("{summary}");
    } else {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(())
}
