//! `shoal sim`: the deterministic in-process simulator, or honest and
//! dishonest native workers over real sockets against a running coordinator.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use shoal_core::auth::derive_token;
use shoal_core::kernels::{KernelSpec, Sha256Params};
use shoal_core::WorkerId;
use tokio::sync::watch;

use crate::grpc::pb;
use crate::worker::{self, Behaviour, WorkerOptions};

use super::args::{ClientArgs, SimArgs};
use super::client::{connect, outcomes, submit_tasks, wait_with_progress, Submission, Tasks};

pub(super) fn sim(a: &SimArgs) -> Result<()> {
    use shoal_core::sim::{self, SimConfig, WorkerGroup};
    let mut cfg = SimConfig::honest(a.seed, a.workers, a.tasks);
    cfg.redundancy = a.redundancy;
    for (count, behaviour) in
        [(a.liars, sim::Behaviour::Liar(a.lie_pct)), (a.colluders, sim::Behaviour::Colluder(a.lie_pct))]
    {
        if count > 0 {
            cfg.workers.push(WorkerGroup::of(count, behaviour));
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
pub(super) async fn sim_over_sockets(a: &SimArgs) -> Result<()> {
    let grpc = a.coordinator.clone().unwrap_or_default();
    let secret = crate::service::load_or_create_secret(&a.data)
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
                bind: None,
                url: a.worker_url.clone(),
                ca: None,
                token: Some(derive_token(&secret, &id)),
                identity: None,
                profile: None,
                worker_id: id,
                max_concurrent: 8,
                cache_bytes: crate::worker::DEFAULT_CACHE_BYTES,
                cache_dir: None,
                behaviour,
                reconnect: true,
                executor: crate::worker::Executor::Cpu,
                seed: a.seed ^ (i as u64) << 8,
            };
            handles.push(tokio::spawn(worker::run(opts, rx.clone())));
        }
    }
    let client = ClientArgs {
        coordinator: grpc,
        ca: None,
        json: a.json,
        api_token: std::env::var("SHOAL_API_TOKEN").unwrap_or_default(),
    };
    let mut c = connect(&client).await?;
    let kernel = KernelSpec::Sha256(Sha256Params { count: 1, message_len: 64 });
    let tasks: Tasks = (0..a.tasks as u64).map(|i| (kernel.clone(), kernel.seeded_inputs(a.seed ^ i))).collect();
    let started = std::time::Instant::now();
    let none = super::client::SharedInputs::default();
    let redundancy = u32::from(a.redundancy);
    let sim = Submission { name: "shoal sim", redundancy, request_id: "", tasks: &tasks, shared: &none };
    let job = submit_tasks(&mut c, &sim).await?.job_id;
    let status = wait_with_progress(&mut c, &job).await?;
    let elapsed = started.elapsed();
    let mut wrong = 0usize;
    for o in outcomes(&mut c, &job).await? {
        let (k, inputs) = &tasks[o.index as usize];
        let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        if o.state() == pb::TaskState::Verified && o.outputs != k.run_cpu(&refs)? {
            wrong += 1;
        }
    }
    let st = c.get_swarm_status(pb::GetSwarmStatusRequest {}).await?.into_inner();
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
