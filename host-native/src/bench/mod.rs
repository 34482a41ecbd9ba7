//! `shoal bench`: the service measured over real sockets with durable
//! storage on, each figure from one run on this machine.
//!
//! - `throughput`: verified tasks/s of tiny tasks (SHA-256 of 64 bytes),
//!   redundancy 2, native workers over WebSocket on loopback.
//! - `payload`: 1 MiB task inputs through the coordinator to workers and
//!   back, MB/s of input delivered.
//! - `idle`: N idle, heartbeating WebSocket workers against a coordinator
//!   in a child process: its RSS, and whether any missed a heartbeat
//!   deadline (was evicted).
//! - `restart`: a data folder holding N stored tasks; time from process
//!   start to serving again.
//! - `shared`: matmul tasks over one 4 MiB matrix, declared as a shared
//!   input (sent to each worker once, then named) against the same tasks
//!   each carrying it: input bytes sent per worker and verified tasks/s.
//! - `latency`: submit-to-verified round trips of one tiny task, on an idle
//!   swarm and on a busy one (p50, p99).
//!
//! `--json` prints the figures as one JSON object instead of the table
//! (`cargo xtask bench --peers` reads it).

mod idle;
mod latency;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use shoal_core::auth::derive_token;
use shoal_core::kernels::{KernelSpec, MatmulParams, Sha256Params};
use shoal_core::WorkerId;
use tokio::sync::watch;

use crate::grpc::pb::shoal_service_client::ShoalServiceClient as ShoalClient;
use crate::grpc::{kernel_to_pb, pb};
use crate::tls::PrivatePki;
use crate::worker::{self, Behaviour, WorkerOptions};
use crate::{Service, ShoalConfig};

/// Which benchmark, and its sizes.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// throughput, payload, idle, restart, shared, latency, all (those six),
    /// or gpu (the device's limits and every kernel against them).
    #[arg(default_value = "all")]
    pub which: String,
    /// gpu: only an adapter whose name contains this (case-insensitive).
    #[arg(long)]
    pub adapter: Option<String>,
    /// gpu: only this kernel (matmul_f32, sha256, mandelbrot).
    #[arg(long)]
    pub kernel: Option<String>,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    /// gpu: seconds spent measuring each figure.
    #[arg(long, default_value_t = 2.0)]
    pub budget_secs: f64,
    /// gpu: a kernel's next size is skipped when one run of it would take
    /// longer than this (extrapolated), and its CPU reference likewise.
    #[arg(long, default_value_t = 8.0)]
    pub max_run_secs: f64,
    /// throughput: tasks.
    #[arg(long, default_value_t = 100_000)]
    pub tasks: usize,
    /// throughput/payload: workers.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// payload: tasks of 1 MiB (enough for several seconds of steady
    /// state; shorter runs mostly measure the start).
    #[arg(long, default_value_t = 600)]
    pub payload_tasks: usize,
    /// payload: jobs (of 20 tasks) submitted and unfinished at a time, as
    /// clients that submit the next job when one finishes.
    #[arg(long, default_value_t = 4)]
    pub payload_in_flight: usize,
    /// idle: connections.
    #[arg(long, default_value_t = 10_000)]
    pub idle_workers: usize,
    /// idle: seconds to hold them.
    #[arg(long, default_value_t = 75)]
    pub idle_secs: u64,
    /// restart: stored tasks.
    #[arg(long, default_value_t = 1_000_000)]
    pub stored_tasks: usize,
    /// shared: tasks (in jobs of 50), each over the same 4 MiB matrix.
    #[arg(long, default_value_t = 400)]
    pub shared_tasks: usize,
    /// latency: probes on the idle swarm, and as many on the busy one.
    #[arg(long, default_value_t = 200)]
    pub probes: usize,
    /// Where the data folders go (default: a temporary folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

fn bench_config(data: &Path) -> ShoalConfig {
    let mut cfg = ShoalConfig::default();
    cfg.server.http = "127.0.0.1:0".parse().unwrap_or(cfg.server.http);
    cfg.server.grpc = "127.0.0.1:0".parse().unwrap_or(cfg.server.grpc);
    data.clone_into(&mut cfg.server.data);
    let c = &mut cfg.coordinator;
    c.distinct_origins = false;
    c.profile.benchmark_size = 32;
    c.profile.benchmark_max_size = 32;
    c.profile.min_mflops = 1;
    c.max_workers = 20_000;
    c.worker_queue = 64;
    c.max_queued_tasks = 5_000_000;
    c.epoch.every = None;
    c.epoch.every_verified_tasks = Some(100_000);
    cfg
}

/// The figures of one `shoal bench` run: the table's rows and the same
/// figures by name for `--json`.
struct Report {
    json: bool,
    rows: Vec<(&'static str, String, &'static str)>,
    figures: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    /// A progress line: on stdout, or on stderr when stdout carries JSON.
    fn say(&self, line: &str) {
        if self.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }

    fn row(&mut self, what: &'static str, got: String, target: &'static str) {
        self.rows.push((what, got, target));
    }

    fn figure(&mut self, name: &str, value: impl serde::Serialize) {
        self.figures.insert(name.to_owned(), serde_json::to_value(value).unwrap_or_default());
    }

    fn print(self) {
        if self.json {
            println!("{}", serde_json::Value::Object(self.figures));
            return;
        }
        println!("\n| benchmark | this machine | target |\n|---|---|---|");
        for (what, got, target) in self.rows {
            println!("| {what} | {got} | {target} |");
        }
    }
}

/// The service benchmarks, in the order `all` runs them.
const ALL: [&str; 6] = ["throughput", "payload", "idle", "restart", "shared", "latency"];

/// Runs the benchmarks asked for and prints their figures.
pub async fn run(a: BenchArgs) -> Result<()> {
    if a.which == "gpu" {
        return crate::bench_gpu::run(crate::bench_gpu::GpuBenchOptions::from_args(a)?).await;
    }
    if a.which != "all" && !ALL.contains(&a.which.as_str()) {
        bail!("unknown benchmark `{}`: {}, all or gpu", a.which, ALL.join(", "));
    }
    let tmp = tempdir_in(a.dir.as_deref())?;
    let mut report = Report { json: a.json, rows: Vec::new(), figures: serde_json::Map::new() };
    for which in ALL.into_iter().filter(|w| a.which == "all" || a.which == *w) {
        match which {
            "throughput" => run_throughput(&a, &tmp, &mut report).await?,
            "payload" => run_payload(&a, &tmp, &mut report).await?,
            "idle" => run_idle(&a, &tmp, &mut report).await?,
            "restart" => run_restart(&a, &tmp, &mut report).await?,
            "shared" => run_shared(&a, &tmp, &mut report).await?,
            _ => run_latency(&a, &tmp, &mut report).await?,
        }
    }
    report.print();
    if a.dir.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}

async fn run_throughput(a: &BenchArgs, tmp: &Path, report: &mut Report) -> Result<()> {
    let r = throughput(&tmp.join("throughput"), a.workers, a.tasks).await?;
    let per_commit = a.tasks as f64 / r.commits.max(1) as f64;
    report.say(&format!(
        "throughput: {:.0} verified tasks/s ({} tasks, redundancy 2, {} workers, storage on); {} commits \
         ({per_commit:.0} tasks each), {} engine batches",
        r.tasks_per_s, a.tasks, a.workers, r.commits, r.batches
    ));
    report.row("verified tiny tasks/s (redundancy 2, WebSocket, redb)", format!("{:.0}", r.tasks_per_s), "≥ 40,000");
    report.figure("throughput_tasks_per_s", r.tasks_per_s);
    report.figure("throughput_commits", r.commits);
    report.figure("throughput_engine_batches", r.batches);
    Ok(())
}

async fn run_payload(a: &BenchArgs, tmp: &Path, report: &mut Report) -> Result<()> {
    // Plain, then the same over TLS (both ports, rustls), in one run.
    let pki_dir = tmp.join("pki");
    std::fs::create_dir_all(&pki_dir)?;
    let pki = crate::tls::private_pki(&pki_dir, &["127.0.0.1", "localhost"])?;
    for (name, tls) in [("payload", None), ("payload over TLS", Some(&pki))] {
        let dir = tmp.join(name.replace(' ', "-"));
        let r = payload(&dir, a.workers, a.payload_tasks, a.payload_in_flight, tls).await?;
        report.say(&format!(
            "{name}: {:.0} MB/s of 1 MiB inputs delivered to workers (redundancy 2); {:.2} CPU-s per GB \
             delivered (client, coordinator and workers in this process)",
            r.mb_per_s, r.cpu_per_gb
        ));
        let (what, key) = if tls.is_some() {
            ("1 MiB inputs through the coordinator over TLS, MB/s", "payload_tls")
        } else {
            ("1 MiB inputs through the coordinator, MB/s", "payload")
        };
        report.row(what, format!("{:.0} ({:.2} CPU-s/GB)", r.mb_per_s, r.cpu_per_gb), "≥ 800");
        report.figure(&format!("{key}_mb_per_s"), r.mb_per_s);
        report.figure(&format!("{key}_cpu_s_per_gb"), r.cpu_per_gb);
    }
    Ok(())
}

async fn run_idle(a: &BenchArgs, tmp: &Path, report: &mut Report) -> Result<()> {
    let (rss, evicted, held) = idle::idle(&tmp.join("idle"), a.idle_workers, a.idle_secs).await?;
    let mib = rss as f64 / 1_048_576.0;
    let per_worker = rss as f64 / f64::from(held.max(1)) / 1024.0;
    report.say(&format!(
        "idle: {held} heartbeating workers held {}s; coordinator RSS {mib:.0} MiB ({per_worker:.1} KiB per worker); \
         {evicted} evicted",
        a.idle_secs
    ));
    report.row(
        "coordinator RSS with idle workers, MiB",
        format!("{mib:.0} ({held} workers, {per_worker:.1} KiB each)"),
        "≤ 2048 at 100 000",
    );
    report.row("missed heartbeat deadlines", evicted.to_string(), "0");
    report.figure("idle_workers", held);
    report.figure("idle_rss_bytes", rss);
    report.figure("idle_evicted", evicted);
    Ok(())
}

async fn run_restart(a: &BenchArgs, tmp: &Path, report: &mut Report) -> Result<()> {
    let ms = restart(&tmp.join("restart"), a.stored_tasks).await?;
    report.say(&format!("restart: serving again {ms} ms after start with {} stored tasks", a.stored_tasks));
    report.row("restart to serving, ms", format!("{ms} ({} stored tasks)", a.stored_tasks), "≤ 2000");
    report.figure("restart_ms", ms);
    report.figure("restart_stored_tasks", a.stored_tasks);
    Ok(())
}

async fn run_shared(a: &BenchArgs, tmp: &Path, report: &mut Report) -> Result<()> {
    let dir = tmp.join("shared");
    let plain = shared_inputs(&dir.join("plain"), a.workers, a.shared_tasks, false).await?;
    let shared = shared_inputs(&dir.join("shared"), a.workers, a.shared_tasks, true).await?;
    for (name, r) in [("every task carries the matrix", &plain), ("the matrix as a shared input", &shared)] {
        report.say(&format!(
            "shared: {name}: {:.1} MiB of inputs sent per worker, {:.0} verified tasks/s ({} tasks, {} workers)",
            r.mib_per_worker, r.tasks_per_s, a.shared_tasks, a.workers
        ));
    }
    report.row(
        "job over one 4 MiB matrix: MiB sent per worker, shared vs carried",
        format!("{:.1} vs {:.1}", shared.mib_per_worker, plain.mib_per_worker),
        "≈ 4 + own parts",
    );
    let ratio = shared.tasks_per_s / plain.tasks_per_s;
    report.row(
        "job over one 4 MiB matrix: verified tasks/s, shared vs carried",
        format!("{:.0} vs {:.0} ({ratio:.1}×)", shared.tasks_per_s, plain.tasks_per_s),
        "> carried",
    );
    report.figure("shared_mib_per_worker", shared.mib_per_worker);
    report.figure("carried_mib_per_worker", plain.mib_per_worker);
    Ok(())
}

async fn run_latency(a: &BenchArgs, tmp: &Path, report: &mut Report) -> Result<()> {
    let r = latency::latency(&tmp.join("latency"), a.workers, a.probes).await?;
    let ms = |us: f64| us / 1e3;
    for (name, p) in [("idle", r.idle), ("busy", r.loaded)] {
        report.say(&format!(
            "latency, {name} swarm: submit to verified p50 {:.2} ms, p99 {:.2} ms ({} probes, redundancy 2)",
            ms(p.p50_us),
            ms(p.p99_us),
            p.n
        ));
    }
    let cell = |p: latency::Percentiles| format!("{:.2} / {:.2}", ms(p.p50_us), ms(p.p99_us));
    report.row("submit to verified, idle swarm, p50 / p99 ms", cell(r.idle), "—");
    report.row("submit to verified, busy swarm, p50 / p99 ms", cell(r.loaded), "—");
    report.figure("latency", r);
    Ok(())
}

fn tempdir_in(dir: Option<&Path>) -> Result<PathBuf> {
    let base = dir.map_or_else(std::env::temp_dir, Path::to_path_buf);
    let p = base.join(format!("shoal-bench-{}", std::process::id()));
    std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
    Ok(p)
}

fn spawn_workers(
    service: &Service,
    n: usize,
    depth: u16,
    ca: Option<&Path>,
) -> (watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>) {
    let (stop, rx) = watch::channel(false);
    let mut hs = Vec::new();
    for i in 0..n {
        let Ok(id) = WorkerId::new(format!("bench-{i}")) else { continue };
        let token = derive_token(&service.secret, &id);
        let mut opts = honest_cpu_worker(service.worker_url(), id, token, depth, i as u64);
        opts.ca = ca.map(Path::to_path_buf);
        opts.reconnect = true;
        let rx = rx.clone();
        hs.push(tokio::spawn(async move {
            let _ = worker::run(opts, rx).await;
        }));
    }
    (stop, hs)
}

/// An honest worker on the CPU references with token `token`, `depth`
/// assignments at once, no CA, no bind address, not reconnecting: what
/// every benchmark's workers start from.
fn honest_cpu_worker(url: String, id: WorkerId, token: String, depth: u16, seed: u64) -> WorkerOptions {
    WorkerOptions {
        bind: None,
        url,
        ca: None,
        token: Some(token),
        identity: None,
        profile: None,
        worker_id: id,
        max_concurrent: depth,
        cache_bytes: crate::worker::DEFAULT_CACHE_BYTES,
        cache_dir: None,
        behaviour: Behaviour::Honest,
        reconnect: false,
        executor: crate::worker::Executor::Cpu,
        seed,
    }
}

async fn wait_admitted(c: &mut ShoalClient<tonic::transport::Channel>, n: u32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let s = c.get_swarm_status(pb::GetSwarmStatusRequest {}).await?.into_inner();
        if s.workers_admitted >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {} of {n} workers admitted", s.workers_admitted);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn submit_job(
    c: &mut ShoalClient<tonic::transport::Channel>,
    tasks: Vec<(KernelSpec, Vec<Vec<u8>>)>,
    redundancy: u32,
) -> Result<String> {
    let mut msgs = vec![pb::SubmitJobRequest {
        part: Some(pb::submit_job_request::Part::Header(pb::JobHeader { redundancy, ..Default::default() })),
    }];
    for (k, inputs) in tasks {
        msgs.push(pb::SubmitJobRequest {
            part: Some(pb::submit_job_request::Part::Task(pb::Task {
                kernel: Some(kernel_to_pb(&k)),
                inputs: inputs.into_iter().map(bytes::Bytes::from).collect(),
                parts: Vec::new(),
            })),
        });
    }
    Ok(c.submit_job(tokio_stream::iter(msgs)).await?.into_inner().job_id)
}

async fn wait_jobs(c: &mut ShoalClient<tonic::transport::Channel>, jobs: &[String]) -> Result<u64> {
    let mut verified = 0u64;
    for j in jobs {
        loop {
            let s = c.get_job(pb::GetJobRequest { job_id: j.clone() }).await?.into_inner().job.unwrap_or_default();
            if s.finished {
                verified += u64::from(s.verified);
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok(verified)
}

async fn client(service: &Service, ca: Option<&Path>) -> Result<ShoalClient<tonic::transport::Channel>> {
    Ok(ShoalClient::new(crate::grpc::channel(&service.grpc_url(), ca).await?)
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20))
}

/// Tasks of one job: a kernel and its inputs each.
type Tasks = Vec<(KernelSpec, Vec<Vec<u8>>)>;

/// An in-process coordinator with native workers over loopback WebSockets.
struct LocalSwarm {
    service: Service,
    stop: watch::Sender<bool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    client: ShoalClient<tonic::transport::Channel>,
}

impl LocalSwarm {
    /// A coordinator in this process with `workers` native workers, both
    /// ports over TLS when `tls` gives a certificate (workers and client
    /// trusting its CA).
    async fn start(data: &Path, workers: usize, depth: u16, tls: Option<&PrivatePki>) -> Result<LocalSwarm> {
        let mut cfg = bench_config(data);
        if let Some(pki) = tls {
            cfg.server.tls.cert.clone_from(&pki.cert);
            cfg.server.tls.key.clone_from(&pki.key);
        }
        let service = Service::start(cfg).await?;
        let ca = tls.map(|p| p.ca.as_path());
        let (stop, handles) = spawn_workers(&service, workers, depth, ca);
        let mut client = client(&service, ca).await?;
        wait_admitted(&mut client, workers as u32).await?;
        Ok(LocalSwarm { service, stop, workers: handles, client })
    }

    /// Submits the jobs, one after the other (`in_flight == 0`: tasks
    /// start while later jobs arrive), or as independent clients that keep
    /// `in_flight` jobs submitted and unfinished at a time; waits for all.
    /// Returns the verified tasks and the seconds it took.
    async fn run(&mut self, jobs: Vec<Tasks>, in_flight: usize) -> Result<(u64, f64)> {
        let started = Instant::now();
        if in_flight > 0 {
            let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(in_flight));
            let mut clients = Vec::new();
            for tasks in jobs {
                let mut c = self.client.clone();
                let permits = permits.clone();
                clients.push(tokio::spawn(async move {
                    let _permit = permits.acquire_owned().await?;
                    let id = submit_job(&mut c, tasks, 2).await?;
                    wait_jobs(&mut c, &[id]).await
                }));
            }
            let mut verified = 0;
            for c in clients {
                verified += c.await??;
            }
            return Ok((verified, started.elapsed().as_secs_f64()));
        }
        let mut ids = Vec::new();
        for tasks in jobs {
            ids.push(submit_job(&mut self.client, tasks, 2).await?);
        }
        let verified = wait_jobs(&mut self.client, &ids).await?;
        Ok((verified, started.elapsed().as_secs_f64()))
    }

    async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        for h in self.workers {
            let _ = tokio::time::timeout(Duration::from_secs(3), h).await;
        }
        self.service.shutdown().await?;
        Ok(())
    }
}

/// `n` tasks of `kernel` with seeded inputs, in jobs of `per_job`.
fn jobs_of(kernel: &KernelSpec, n: usize, per_job: usize) -> Vec<Tasks> {
    (0..n.div_ceil(per_job))
        .map(|j| {
            let m = per_job.min(n - j * per_job);
            (0..m).map(|i| (kernel.clone(), kernel.seeded_inputs((j * per_job + i) as u64))).collect()
        })
        .collect()
}

/// The throughput benchmark's figures.
#[derive(serde::Serialize)]
struct Throughput {
    /// Verified tasks per second, end to end.
    tasks_per_s: f64,
    /// Storage commits (each one fsync) during the run.
    commits: u64,
    /// Batches of inputs the engine took during the run.
    batches: u64,
}

/// Verified tasks per second, and how many commits and engine batches
/// they took.
async fn throughput(data: &Path, workers: usize, tasks: usize) -> Result<Throughput> {
    let mut swarm = LocalSwarm::start(data, workers, 64, None).await?;
    let jobs = jobs_of(&KernelSpec::Sha256(Sha256Params { count: 1, message_len: 64 }), tasks, 10_000);
    let gauges = swarm.service.engine.gauges.clone();
    let count = || (gauges.commits.load(Ordering::Relaxed), gauges.batches.load(Ordering::Relaxed));
    let before = count();
    // One client submitting job after job (tasks start while later jobs arrive).
    let (verified, secs) = swarm.run(jobs, 0).await?;
    let after = count();
    swarm.stop().await?;
    if verified < tasks as u64 {
        bail!("only {verified} of {tasks} verified");
    }
    Ok(Throughput { tasks_per_s: verified as f64 / secs, commits: after.0 - before.0, batches: after.1 - before.1 })
}

/// The payload benchmark's figures.
struct Payload {
    /// MB/s of inputs delivered to workers.
    mb_per_s: f64,
    /// CPU seconds of this process (client, coordinator and workers
    /// together) per GB delivered: steadier than wall time on a shared
    /// machine, and the budget that decides it.
    cpu_per_gb: f64,
}

/// MB/s of 1 MiB inputs delivered to workers (each task goes to 2).
async fn payload(
    data: &Path,
    workers: usize,
    tasks: usize,
    in_flight: usize,
    tls: Option<&PrivatePki>,
) -> Result<Payload> {
    let mut swarm = LocalSwarm::start(data, workers, 4, tls).await?;
    // A = 4096×64 f32 = 1 MiB, B = 64×1: little compute, a megabyte in.
    // Inputs are made before the clock starts.
    let jobs = jobs_of(&KernelSpec::MatmulF32(MatmulParams { m: 4096, n: 1, k: 64 }), tasks, 20);
    let sent: usize = jobs.iter().flatten().map(|(_, i)| i.iter().map(Vec::len).sum::<usize>()).sum();
    let cpu = process_cpu_secs();
    let (verified, secs) = swarm.run(jobs, in_flight.max(1)).await?;
    let cpu = process_cpu_secs() - cpu;
    swarm.stop().await?;
    if verified < tasks as u64 {
        bail!("only {verified} of {tasks} verified");
    }
    Ok(Payload { mb_per_s: (sent * 2) as f64 / 1e6 / secs, cpu_per_gb: cpu / ((sent * 2) as f64 / 1e9) })
}

fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        })
        .map_or(0, |kb| kb * 1024)
}

/// A coordinator in a child process of this executable.
struct Child {
    process: std::process::Child,
    http: String,
    grpc: String,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn spawn_coordinator(data: &Path, sets: &[String]) -> Result<Child> {
    let (h, g) = (free_port()?, free_port()?);
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("coordinator")
        .arg("--data")
        .arg(data)
        .arg("--http")
        .arg(format!("127.0.0.1:{h}"))
        .arg("--grpc")
        .arg(format!("127.0.0.1:{g}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    let child = cmd.spawn().context("starting the coordinator process")?;
    Ok(Child { process: child, http: format!("127.0.0.1:{h}"), grpc: format!("http://127.0.0.1:{g}") })
}

async fn wait_healthy(http: &str, limit: Duration) -> Result<Duration> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    loop {
        if let Ok(mut s) = tokio::net::TcpStream::connect(http).await {
            let _ = s
                .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n").as_bytes())
                .await;
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf).await;
            if buf.starts_with(b"HTTP/1.1 200") {
                return Ok(started.elapsed());
            }
        }
        if started.elapsed() > limit {
            bail!("the coordinator did not become healthy in {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Milliseconds from process start to healthy, with `n` tasks stored (pending).
async fn restart(data: &Path, n: usize) -> Result<u128> {
    std::fs::create_dir_all(data)?;
    let sets = vec![format!("coordinator.max_queued_tasks={}", n.max(5_000_000) + 50_000)];
    {
        let child = spawn_coordinator(data, &sets)?;
        wait_healthy(&child.http, Duration::from_secs(30)).await?;
        let mut c = ShoalClient::connect(child.grpc.clone())
            .await?
            .max_encoding_message_size(256 << 20)
            .max_decoding_message_size(256 << 20);
        let kernel = KernelSpec::Sha256(Sha256Params { count: 1, message_len: 64 });
        let per_job = 50_000;
        for j in 0..n.div_ceil(per_job) {
            let m = per_job.min(n - j * per_job);
            let tasks = (0..m).map(|i| (kernel.clone(), kernel.seeded_inputs((j * per_job + i) as u64))).collect();
            submit_job(&mut c, tasks, 2).await?;
        }
        // Dropping the child kills it (SIGKILL): the restart is a crash recovery.
    }
    let started = Instant::now();
    let child = spawn_coordinator(data, &sets)?;
    wait_healthy(&child.http, Duration::from_mins(2)).await?;
    let ms = started.elapsed().as_millis();
    let mut c = ShoalClient::connect(child.grpc.clone()).await?;
    let s = c.get_swarm_status(pb::GetSwarmStatusRequest {}).await?.into_inner();
    if s.tasks_pending < n as u64 {
        bail!("only {} of {n} tasks recovered", s.tasks_pending);
    }
    Ok(ms)
}

/// User + system CPU seconds of this process so far (Linux; 0 elsewhere).
fn process_cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name: state is the first, utime the 12th
    // and stime the 13th, in clock ticks of 1/100 s (USER_HZ).
    let f: Vec<&str> = s.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The shared-input benchmark's figures for one way of sending the matrix.
struct SharedRun {
    mib_per_worker: f64,
    tasks_per_s: f64,
}

/// Rows of A per task, and the edge of the shared matrix B (4 MiB of f32).
const SHARED_ROWS: u32 = 4;
const SHARED_EDGE: u32 = 1024;

/// `tasks` matmuls of a 4×1024 slice by one 1024×1024 matrix, in jobs of
/// 50, redundancy 2: the matrix declared once per job as a shared input
/// (`shared`), or carried by every task. Returns the input bytes the
/// coordinator sent per worker and the verified tasks per second.
async fn shared_inputs(data: &Path, workers: usize, tasks: usize, shared: bool) -> Result<SharedRun> {
    use pb::submit_job_request::Part;
    use pb::task_input::Source;
    let mut swarm = LocalSwarm::start(data, workers, 4, None).await?;
    let kernel = KernelSpec::MatmulF32(MatmulParams { m: SHARED_ROWS, n: SHARED_EDGE, k: SHARED_EDGE });
    let inputs = kernel.seeded_inputs(1);
    let model = bytes::Bytes::from(inputs[1].clone());
    // Every message is made before the clock starts.
    let jobs: Vec<Vec<pb::SubmitJobRequest>> = (0..tasks.div_ceil(50))
        .map(|j| {
            let header = pb::JobHeader { redundancy: 2, ..Default::default() };
            let mut msgs = vec![pb::SubmitJobRequest { part: Some(Part::Header(header)) }];
            if shared {
                msgs.push(pb::SubmitJobRequest { part: Some(Part::Shared(pb::SharedInput { data: model.clone() })) });
            }
            for i in j * 50..tasks.min(j * 50 + 50) {
                let slice = bytes::Bytes::from(kernel.seeded_inputs(i as u64 + 2).swap_remove(0));
                let task = if shared {
                    let parts = vec![
                        pb::TaskInput { source: Some(Source::Data(slice)) },
                        pb::TaskInput { source: Some(Source::Shared(0)) },
                    ];
                    pb::Task { kernel: Some(kernel_to_pb(&kernel)), inputs: vec![], parts }
                } else {
                    pb::Task { kernel: Some(kernel_to_pb(&kernel)), inputs: vec![slice, model.clone()], parts: vec![] }
                };
                msgs.push(pb::SubmitJobRequest { part: Some(Part::Task(task)) });
            }
            msgs
        })
        .collect();
    let started = Instant::now();
    let mut ids = Vec::new();
    for msgs in jobs {
        ids.push(swarm.client.submit_job(tokio_stream::iter(msgs)).await?.into_inner().job_id);
    }
    let verified = wait_jobs(&mut swarm.client, &ids).await?;
    let secs = started.elapsed().as_secs_f64();
    let sent = swarm.client.get_swarm_status(pb::GetSwarmStatusRequest {}).await?.into_inner().input_bytes_sent;
    swarm.stop().await?;
    if verified < tasks as u64 {
        bail!("only {verified} of {tasks} verified");
    }
    Ok(SharedRun { mib_per_worker: sent as f64 / workers as f64 / 1_048_576.0, tasks_per_s: verified as f64 / secs })
}
