//! The run modes: `shoal up` (coordinator, local workers and the demo
//! job), `shoal coordinator`, `shoal worker`, and `shoal keygen` beside them.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use shoal_core::auth::derive_token;
use shoal_core::kernels::mandelbrot::Tiling;
use shoal_core::WorkerId;
use tokio::sync::watch;

use crate::worker::{self, Behaviour, Executor, WorkerOptions};
use crate::{Service, ShoalConfig};

use super::args::{ClientArgs, CoordinatorArgs, KeygenArgs, UpArgs, WorkerArgs};
use super::client::{
    assemble_mandelbrot, connect, mandelbrot_tasks, submit_tasks, wait_with_progress, write_results, Submission,
};

pub(super) async fn shutdown_signal() {
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

pub(super) async fn coordinator(mut cfg: ShoalConfig, a: CoordinatorArgs) -> Result<()> {
    if let Some(d) = a.data {
        cfg.server.data = d;
    }
    if let Some(g) = a.grpc {
        cfg.server.grpc = g;
    }
    if let Some(h) = a.http {
        cfg.server.http = h;
    }
    cfg.server.insecure |= a.insecure;
    let anonymous = cfg.server.anonymous.resolve(!cfg.server.api_token.is_empty());
    let service = Service::start(cfg).await?;
    println!("workers:   {}", service.worker_url());
    println!("gRPC:      {}", service.grpc_url());
    let scheme = if service.tls { "https" } else { "http" };
    println!("http:      {scheme}://{}/ (/healthz, /metrics, /api/stats; the dashboard when built)", service.http_addr);
    println!("access:    without a token: {} (server.anonymous); tokens: shoal token create", anonymous.as_str());
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
                    let why = service.shutdown().await.err().map_or_else(|| "see the log".to_owned(), |e| e.to_string());
                    bail!(
                        "the coordinator stopped: {why}. Everything it acknowledged is stored; \
                         fix the cause (a full disk?) and restart it to recover"
                    );
                }
            }
        }
    }
    tracing::info!("shutting down");
    service.shutdown().await?;
    Ok(())
}

pub(super) async fn up(mut cfg: ShoalConfig, a: UpArgs) -> Result<()> {
    if let Some(d) = a.data {
        cfg.server.data = d;
    }
    // Every local worker shares this machine's address.
    cfg.coordinator.distinct_origins = false;
    // Tabs opened on the contribute page join as guests.
    cfg.coordinator.allow_guests = true;
    cfg.coordinator.identities = shoal_core::coordinator::IdentityPolicy::Open;
    // ... all from this machine's address too.
    cfg.coordinator.max_guests_per_origin = cfg.coordinator.max_guests;
    let service = Service::start(cfg.clone()).await?;
    let n = a.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, std::num::NonZero::get).max(2));
    let (stop, stop_rx) = watch::channel(false);
    let mut handles = Vec::new();
    for i in 0..n {
        let id = WorkerId::new(format!("local-{i}"))?;
        let opts = WorkerOptions {
            bind: None,
            url: service.worker_url(),
            ca: None,
            token: Some(derive_token(&service.secret, &id)),
            identity: None,
            profile: None,
            worker_id: id,
            max_concurrent: 2,
            cache_bytes: crate::worker::DEFAULT_CACHE_BYTES,
            cache_dir: None,
            behaviour: Behaviour::Honest,
            reconnect: true,
            executor: crate::worker::Executor::Cpu,
            seed: i as u64 + 1,
        };
        handles.push(tokio::spawn(worker::run(opts, stop_rx.clone())));
    }
    println!("Shoal is up.");
    if service.site.has("index.html") {
        println!("  dashboard   http://{}/", service.http_addr);
    } else {
        println!("  dashboard   not in this build (cargo xtask build makes a shoal that carries it)");
    }
    if service.site.has("worker.html") {
        println!("  contribute  http://{}/worker.html (this browser tab as a worker)", service.http_addr);
    }
    println!("  stats       http://{}/api/stats", service.http_addr);
    println!("  metrics     http://{}/metrics", service.http_addr);
    println!("  gRPC        {}", service.grpc_url());
    println!("  workers     {} ({n} local native workers on the CPU reference kernels)", service.worker_url());
    println!("  data        {}", cfg.server.data.display());
    if !a.no_demo {
        let tiling = Tiling::new(512, 64, 256);
        let tasks = mandelbrot_tasks(&tiling);
        let client = ClientArgs {
            coordinator: service.grpc_url(),
            ca: None,
            json: false,
            api_token: cfg.server.api_token.clone(),
        };
        let mut c = connect(&client).await?;
        let none = super::client::SharedInputs::default();
        let demo = Submission {
            name: "demo: mandelbrot 512×512",
            redundancy: 2,
            request_id: "",
            tasks: &tasks,
            shared: &none,
        };
        let job = submit_tasks(&mut c, &demo).await?.job_id;
        println!("  demo job    {job}: {} Mandelbrot tiles, each verified by 2 workers", tasks.len());
        let status = wait_with_progress(&mut c, &job).await?;
        let out = cfg.server.data.join("mandelbrot.pgm");
        let written = write_results(&mut c, &job, &tasks, &out.with_extension("")).await?;
        let image = assemble_mandelbrot(&mut c, &job, &tiling.tiles()).await?;
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

/// How `shoal worker` joins: a token's worker, a guest, or (by default)
/// the contributor identity of a key file.
fn worker_identity(cfg: &ShoalConfig, a: &WorkerArgs) -> Result<Option<shoal_core::identity::Identity>> {
    if a.token.is_some() || a.guest {
        return Ok(None);
    }
    let path = a.identity.clone().unwrap_or_else(|| cfg.server.data.join("worker.key"));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let seed = crate::keyfile::load_or_create(&path)?;
    let identity = shoal_core::identity::Identity::from_seed(&seed);
    tracing::info!(worker = %identity.worker_id(), key = %path.display(), "contributor identity");
    Ok(Some(identity))
}

/// What `--payout`, `--name` and `--team` declare (None: none given).
fn worker_profile(a: &WorkerArgs) -> Result<Option<shoal_core::identity::Profile>> {
    if a.payout.is_none() && a.name.is_none() && a.team.is_none() {
        return Ok(None);
    }
    let profile = shoal_core::identity::Profile {
        payout: a.payout.clone().unwrap_or_default(),
        name: a.name.clone().unwrap_or_default(),
        team: a.team.clone().unwrap_or_default(),
    };
    profile.check()?;
    Ok(Some(profile))
}

pub(super) async fn run_worker(cfg: ShoalConfig, a: WorkerArgs) -> Result<()> {
    let executor = if a.cpu {
        Executor::Cpu
    } else {
        match shoal_compute::Gpu::new(shoal_compute::GpuOptions { allow_software: a.gpu, ..Default::default() }).await {
            Ok(gpu) => {
                let info = gpu.adapter_info();
                tracing::info!(adapter = %info.name, backend = ?info.backend, device = ?info.device_type, "GPU");
                // What the device really holds (declared in the hello; tiers use it).
                let stable = gpu.max_stable_allocation(4 << 30, 16 << 20).await;
                tracing::info!(mib = stable >> 20, "GPU: largest stable allocation");
                // Each kernel with several programs runs the one this device runs fastest.
                let start = std::time::Instant::now();
                let tuning =
                    gpu.tune(&|| start.elapsed().as_secs_f64()).await.context("timing the kernels' programs")?;
                for t in &tuning.programs {
                    tracing::info!(kernel = %t.kernel, program = t.chosen, size = t.size, "GPU: program chosen");
                }
                tracing::info!(in_flight = tuning.in_flight, "GPU: tasks worth keeping in flight");
                Executor::Gpu(std::sync::Arc::new(gpu))
            }
            Err(e) if a.gpu => bail!("--gpu: {e}"),
            Err(e) => {
                tracing::warn!(error = %e, "no hardware GPU; running the CPU reference kernels");
                Executor::Cpu
            }
        }
    };
    let max_concurrent = a.concurrency.unwrap_or_else(|| match &executor {
        Executor::Gpu(gpu) => gpu.suggested_in_flight().saturating_add(1),
        Executor::Cpu => std::thread::available_parallelism().map_or(2, |n| u16::try_from(n.get()).unwrap_or(u16::MAX)),
    });
    tracing::info!(max_concurrent, "assignments at once");
    let (stop, rx) = watch::channel(false);
    let opts = WorkerOptions {
        bind: a.bind,
        url: a.coordinator.clone(),
        ca: a.ca.clone(),
        worker_id: WorkerId::new(a.id.clone())?,
        identity: worker_identity(&cfg, &a)?,
        profile: worker_profile(&a)?,
        token: a.token,
        max_concurrent,
        cache_bytes: a.input_cache_mib << 20,
        cache_dir: a.input_cache_dir.clone(),
        behaviour: Behaviour::Honest,
        reconnect: true,
        executor,
        seed: std::process::id().into(),
    };
    let handle = tokio::spawn(worker::run(opts, rx));
    tracing::info!(worker = %a.id, coordinator = %a.coordinator, "worker started");
    shutdown_signal().await;
    let _ = stop.send(true);
    let report = handle.await??;
    tracing::info!(worker = %a.id, results = report.completed, connections = report.connections, "worker stopped");
    Ok(())
}

pub(super) fn keygen(cfg: ShoalConfig, a: KeygenArgs) -> Result<()> {
    let data = a.data.unwrap_or(cfg.server.data);
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let secret = crate::service::load_or_create_secret(&data)?;
    let id = WorkerId::new(a.worker)?;
    println!("{}", derive_token(&secret, &id));
    Ok(())
}
