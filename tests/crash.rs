//! `kill -9` the coordinator process at random points of a job, restart it
//! on the same data folder, repeat: every job completes, no verified result
//! is lost or changed, no reward is credited twice, the ledger chains.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use shoal_core::auth::derive_token;
use shoal_core::kernels::{KernelSpec, Sha256Params};
use shoal_core::rng::SplitMix64;
use shoal_core::WorkerId;
use shoal_native::grpc::pb;
use shoal_native::grpc::pb::shoal_client::ShoalClient;
use shoal_native::worker::{self, Behaviour, WorkerOptions};
use tokio::sync::watch;

fn start(data: &std::path::Path, http: u16, grpc: u16) -> ChildGuard {
    let child = Command::new(env!("CARGO_BIN_EXE_shoal-e2e"))
        .args(["coordinator", "--data"])
        .arg(data)
        .args(["--http", &format!("127.0.0.1:{http}"), "--grpc", &format!("127.0.0.1:{grpc}")])
        .args([
            "--set",
            "coordinator.distinct_origins=false",
            "--set",
            "coordinator.profile.benchmark_size=64",
            "--set",
            "coordinator.profile.min_mflops=1",
            "--set",
            "coordinator.epoch.every=0",
            "--set",
            "coordinator.epoch.every_verified_tasks=50",
            "--set",
            "coordinator.rewards.min_tasks=1",
            "--set",
            "coordinator.ack_timeout=3000",
            "--set",
            "coordinator.exec_timeout_floor=3000",
        ])
        .env("RUST_LOG", std::env::var("SHOAL_TEST_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::null())
        .spawn()
        .expect("coordinator starts");
    ChildGuard(child)
}

async fn connect(grpc: u16) -> ShoalClient<tonic::transport::Channel> {
    for _ in 0..300 {
        if let Ok(c) = ShoalClient::connect(format!("http://127.0.0.1:{grpc}")).await {
            // A diff holds a whole job's inputs (8 MiB here).
            let mut c = c.max_decoding_message_size(64 << 20);
            if c.swarm_status(pb::Empty {}).await.is_ok() {
                return c;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the coordinator did not come up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_nine_at_random_points_loses_nothing_and_credits_nothing_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (http, grpc) = (free_port(), free_port());
    let mut coordinator = start(dir.path(), http, grpc);
    let mut c = connect(grpc).await;
    let secret = shoal_native::service::load_or_create_secret(dir.path()).expect("secret");

    // Workers that reconnect by themselves whenever the coordinator is back.
    let (stop, rx) = watch::channel(false);
    let mut handles = Vec::new();
    for i in 0..4 {
        let id = WorkerId::new(format!("w{i}")).expect("id");
        let opts = WorkerOptions {
            url: format!("ws://127.0.0.1:{http}/ws"),
            token: Some(derive_token(&secret, &id)),
            worker_id: id,
            max_concurrent: 2,
            behaviour: Behaviour::Honest,
            reconnect: true,
            executor: shoal_native::worker::Executor::Cpu,
            seed: i,
        };
        handles.push(tokio::spawn(worker::run(opts, rx.clone())));
    }

    // Odd tasks carry 64 KiB of inputs (stored apart, under their digest,
    // and read back on restart); even ones 16 KiB (inside the job's record).
    let tasks: Vec<_> = (0..200u64)
        .map(|i| {
            let kernel =
                KernelSpec::Sha256(Sha256Params { count: if i % 2 == 1 { 256 } else { 64 }, message_len: 256 });
            let inputs = kernel.seeded_inputs(i);
            (kernel, inputs)
        })
        .collect();
    let job = submit(&mut c, "crash test", 2, &tasks).await;

    let mut rng = SplitMix64::new(0x00C0_FFEE);
    let mut verified_seen = Vec::new();
    for round in 0..4 {
        tokio::time::sleep(Duration::from_millis(150 + rng.below(500))).await;
        let s = c.get_job(pb::JobRef { job_id: job.clone() }).await.expect("job").into_inner();
        verified_seen.push(s.verified);
        // SIGKILL: no shutdown, no flush.
        drop(coordinator);
        coordinator = start(dir.path(), http, grpc);
        c = connect(grpc).await;
        let after = c.get_job(pb::JobRef { job_id: job.clone() }).await.expect("job survives").into_inner();
        assert!(
            after.verified >= s.verified,
            "round {round}: verified went back from {} to {}",
            s.verified,
            after.verified
        );
    }
    let status = wait_finished(&mut c, &job, 120).await;
    assert_eq!(status.verified, 200, "every task verified in the end ({verified_seen:?} along the way)");
    let outcomes = results(&mut c, &job).await;
    assert_eq!(outcomes.len(), 200);
    for o in &outcomes {
        let (k, inputs) = &tasks[o.index as usize];
        assert_eq!(o.outputs, reference(k, inputs), "task {} correct", o.index);
    }
    // Epochs close after 50 verified tasks (at the end of the batch that
    // reaches 50); settling the open one, every epoch together pays exactly
    // the 400 agreements of 200 tasks verified by two workers each.
    let epochs = c.close_epoch(pb::Empty {}).await.expect("epochs").into_inner().epochs;
    assert!((4..=5).contains(&epochs.len()), "{epochs:?}");
    let credited: u64 = epochs.iter().flat_map(|e| e.payouts.iter()).map(|p| p.tasks).sum();
    assert_eq!(credited, 400, "no agreement credited twice or lost");
    // The ledger chains from the first diff to the last, across four crashes.
    let head = c.swarm_status(pb::Empty {}).await.expect("status").into_inner().ledger_height;
    let mut diffs =
        c.stream_state_diffs(pb::StreamStateDiffsRequest { from_height: 1 }).await.expect("diffs").into_inner();
    let mut prev = "0".repeat(64);
    for h in 1..=head {
        let d = diffs.message().await.expect("stream").expect("diff");
        assert_eq!((d.height, &d.prev), (h, &prev), "diff {h} chains");
        prev = d.digest;
    }
    let _ = stop.send(true);
    for h in handles {
        let _ = tokio::time::timeout(Duration::from_secs(3), h).await;
    }
}
