//! `shoal bench latency`: how long one tiny task takes from the client's
//! submission to its verified result in the client's hands, on an idle
//! swarm and on one kept busy, as percentiles over many probes.
//!
//! A probe is a job of one SHA-256 task (redundancy 2): `SubmitJob` (the
//! answer comes once the job is stored), then `StreamJobResults` with
//! `follow` until the task's outcome arrives (read from storage after the
//! verification was committed). Under load a second client keeps one job of
//! 1 000 tiny tasks submitted and unfinished at a time, as the peers'
//! loaders keep 1 000 tasks outstanding, so a probe queues behind them.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use shoal_core::kernels::{KernelSpec, Sha256Params};

use super::{submit_job, wait_jobs, LocalSwarm};
use crate::grpc::pb;

/// Percentiles of one set of probes, in microseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(super) struct Percentiles {
    /// The median round trip.
    pub(super) p50_us: f64,
    /// The 99th percentile round trip.
    pub(super) p99_us: f64,
    /// Probes measured.
    pub(super) n: usize,
}

impl Percentiles {
    /// Nearest-rank percentiles of `us` (sorted here).
    pub(super) fn of(mut us: Vec<f64>) -> Percentiles {
        us.sort_by(f64::total_cmp);
        let at = |p: f64| {
            if us.is_empty() {
                return 0.0;
            }
            let i = (p / 100.0 * (us.len() - 1) as f64).round() as usize;
            us[i.min(us.len() - 1)]
        };
        Percentiles { p50_us: at(50.0), p99_us: at(99.0), n: us.len() }
    }
}

/// The latency benchmark's figures.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(super) struct Latency {
    /// Probes on a swarm with nothing else to do.
    pub(super) idle: Percentiles,
    /// Probes while another client keeps 1 000 tasks outstanding.
    pub(super) loaded: Percentiles,
}

/// Tasks in each of the loader's jobs.
const LOAD_JOB: usize = 1_000;

/// Runs `probes` probes on an idle swarm of `workers`, then as many under load.
pub(super) async fn latency(data: &Path, workers: usize, probes: usize) -> Result<Latency> {
    let swarm = LocalSwarm::start(data, workers, 64, None).await?;
    let kernel = KernelSpec::Sha256(Sha256Params { count: 1, message_len: 64 });
    // A few probes first: connections and caches warm, not measured.
    probe_all(&mut swarm.client.clone(), &kernel, 1_000_000, 10).await?;
    let idle = probe_all(&mut swarm.client.clone(), &kernel, 0, probes).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut loader_client = swarm.client.clone();
    let load_kernel = kernel.clone();
    let loader = tokio::spawn(async move {
        let mut round = 0usize;
        let mut verified = 0u64;
        while !*stopped.borrow() {
            // Distinct inputs each round, as the peers' loaders have.
            let tasks = (0..LOAD_JOB)
                .map(|i| (load_kernel.clone(), load_kernel.seeded_inputs((2_000_000 + round * LOAD_JOB + i) as u64)))
                .collect();
            let id = submit_job(&mut loader_client, tasks, 2).await?;
            verified += wait_jobs(&mut loader_client, &[id]).await?;
            round += 1;
        }
        anyhow::Ok(verified)
    });
    // Let the load reach its steady state before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loaded = probe_all(&mut swarm.client.clone(), &kernel, 1_000, probes).await;
    let _ = stop.send(true);
    let load_verified = loader.await.context("the loader")??;
    swarm.stop().await?;
    let loaded = loaded?;
    if load_verified == 0 {
        bail!("the loader verified no task while the probes ran");
    }
    Ok(Latency { idle: Percentiles::of(idle), loaded: Percentiles::of(loaded) })
}

/// `n` probes one after the other (inputs seeded from `seed`); each round
/// trip in microseconds.
async fn probe_all(
    c: &mut super::ShoalClient<tonic::transport::Channel>,
    kernel: &KernelSpec,
    seed: u64,
    n: usize,
) -> Result<Vec<f64>> {
    let mut us = Vec::with_capacity(n);
    for i in 0..n {
        let task = (kernel.clone(), kernel.seeded_inputs(10_000_000 + seed + i as u64));
        let started = Instant::now();
        let id = submit_job(c, vec![task], 2).await?;
        let request = pb::StreamJobResultsRequest { job_id: id.clone(), follow: true, omit_outputs: true };
        let mut stream = c.stream_job_results(request).await?.into_inner();
        let outcome = stream
            .message()
            .await?
            .and_then(|m| m.outcome)
            .with_context(|| format!("job {id}'s results ended empty"))?;
        us.push(started.elapsed().as_secs_f64() * 1e6);
        if outcome.state != pb::TaskState::Verified as i32 {
            bail!("probe {id} ended {:?}, not verified", outcome.state());
        }
    }
    Ok(us)
}
