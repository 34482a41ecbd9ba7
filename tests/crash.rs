//! `kill -9` the coordinator process at random points of its jobs, restart
//! it on the same data folder, repeat: every job completes, no verified
//! result is lost or changed, no reward is credited twice, the ledger
//! chains. Every kill is checked to have landed while work was unfinished
//! and after some of it was verified since the restart.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use shoal_core::auth::derive_token;
use shoal_core::kernels::{KernelSpec, Sha256Params};
use shoal_core::rng::SplitMix64;
use shoal_core::WorkerId;
use shoal_native::grpc::pb;
use shoal_native::grpc::pb::shoal_service_client::ShoalServiceClient;
use shoal_native::worker::{self, Behaviour, WorkerOptions};
use tokio::sync::watch;

type Client = ShoalServiceClient<tonic::transport::Channel>;
type Tasks = Vec<(KernelSpec, Vec<Vec<u8>>)>;

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
            "coordinator.profile.benchmark_max_size=64",
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

async fn connect(grpc: u16) -> Client {
    for _ in 0..300 {
        if let Ok(c) = ShoalServiceClient::connect(format!("http://127.0.0.1:{grpc}")).await {
            // A diff holds a whole job's inputs (8 MiB here).
            let mut c = c.max_decoding_message_size(64 << 20);
            if c.get_swarm_status(pb::GetSwarmStatusRequest {}).await.is_ok() {
                return c;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the coordinator did not come up");
}

/// A job of `n` SHA-256 tasks: odd ones carry 64 KiB of inputs (stored
/// apart, under their digest, and read back on restart), even ones 16 KiB
/// (inside the job's record).
fn tasks(n: u64, seed: u64) -> Tasks {
    (0..n)
        .map(|i| {
            let kernel =
                KernelSpec::Sha256(Sha256Params { count: if i % 2 == 1 { 256 } else { 64 }, message_len: 256 });
            let inputs = kernel.seeded_inputs(seed ^ i);
            (kernel, inputs)
        })
        .collect()
}

/// Verified tasks of each job, and whether all of them finished.
async fn progress(c: &mut Client, jobs: &[(String, Tasks)]) -> (Vec<u32>, bool) {
    let mut verified = Vec::with_capacity(jobs.len());
    let mut all_finished = true;
    for (job, _) in jobs {
        let s = c
            .get_job(pb::GetJobRequest { job_id: job.clone() })
            .await
            .expect("job known")
            .into_inner()
            .job
            .expect("a job");
        all_finished &= s.finished;
        verified.push(s.verified);
    }
    (verified, all_finished)
}

/// Lands `kills` kills, each after some task was verified since the last
/// restart (and a random moment more) while work is still unfinished:
/// `kill -9`, restart, check nothing verified went back. A job of
/// `job_tasks` tasks is submitted whenever every job has finished, so
/// there is always work to kill in the middle of. Then checks every
/// result, the credits and the ledger's chain; returns the epochs.
async fn kill_rounds(kills: usize, job_tasks: u64, seed: u64) -> usize {
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
            bind: None,
            url: format!("ws://127.0.0.1:{http}/ws"),
            ca: None,
            token: Some(derive_token(&secret, &id)),
            identity: None,
            profile: None,
            worker_id: id,
            max_concurrent: 2,
            cache_bytes: shoal_native::worker::DEFAULT_CACHE_BYTES,
            cache_dir: None,
            behaviour: Behaviour::Honest,
            reconnect: true,
            executor: shoal_native::worker::Executor::Cpu,
            seed: i,
        };
        handles.push(tokio::spawn(worker::run(opts, rx.clone())));
    }

    let mut rng = SplitMix64::new(seed);
    let mut jobs: Vec<(String, Tasks)> = Vec::new();
    let mut landed = 0;
    for attempt in 0..kills * 4 {
        if landed == kills {
            break;
        }
        let (mut before, finished) = progress(&mut c, &jobs).await;
        if finished {
            let t = tasks(job_tasks, rng.next_u64());
            let job = submit(&mut c, &format!("crash test {}", jobs.len()), 2, &t).await;
            jobs.push((job, t));
            before.push(0);
        }
        // Wait for progress since the restart, then a random moment more.
        let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
        loop {
            let (now, _) = progress(&mut c, &jobs).await;
            if now.iter().sum::<u32>() > before.iter().sum::<u32>() {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "attempt {attempt}: no progress in 60 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(60))).await;
        let (at_kill, finished) = progress(&mut c, &jobs).await;
        if finished {
            continue; // too late for this one: a new job comes first
        }
        // SIGKILL: no shutdown, no flush; work was verified since the last
        // restart and some is still unfinished.
        drop(coordinator);
        landed += 1;
        coordinator = start(dir.path(), http, grpc);
        c = connect(grpc).await;
        let (after, _) = progress(&mut c, &jobs).await;
        for (j, (a, b)) in after.iter().zip(&at_kill).enumerate() {
            assert!(a >= b, "kill {landed}, job {j}: verified went back from {b} to {a}");
        }
    }
    assert_eq!(landed, kills, "every kill landed in the middle of unfinished work");
    let mut agreements = 0;
    for (job, t) in &jobs {
        let status = wait_finished(&mut c, job, 120).await;
        assert_eq!(status.verified as usize, t.len(), "every task of {job} verified in the end");
        let outcomes = results(&mut c, job).await;
        assert_eq!(outcomes.len(), t.len());
        for o in &outcomes {
            let (k, inputs) = &t[o.index as usize];
            assert_eq!(o.outputs, reference(k, inputs), "job {job}, task {} correct", o.index);
        }
        agreements += 2 * t.len() as u64;
    }
    // Every epoch together, the open one settled now, pays exactly the
    // agreements of the tasks verified (two workers each).
    let epochs = close_epoch_all(&mut c).await;
    let credited: u64 = epochs.iter().flat_map(|e| e.payouts.iter()).map(|p| p.tasks).sum();
    assert_eq!(credited, agreements, "no agreement credited twice or lost ({} epochs)", epochs.len());
    // An epoch closes once 50 tasks are verified in it, the last one now.
    let verified_tasks = agreements / 2;
    assert!(epochs.len() as u64 <= verified_tasks / 50 + 1, "{} epochs for {verified_tasks} tasks", epochs.len());
    // The ledger chains from the first diff to the last, across every crash.
    let head = c.get_swarm_status(pb::GetSwarmStatusRequest {}).await.expect("status").into_inner().ledger_height;
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
    epochs.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_nine_at_random_points_loses_nothing_and_credits_nothing_twice() {
    // Jobs large enough that work is still unfinished a random moment after
    // progress: with results sent at once (no Nagle), 200 tiny tasks
    // finished within that moment and kills found nothing to interrupt.
    let epochs = kill_rounds(4, 1_000, 0x00C0_FFEE).await;
    // Epochs close after 50 verified tasks (at the end of the batch that
    // reaches 50), and the open one is settled at the end.
    assert!(epochs >= 2, "{epochs} epochs");
}

/// A hundred kills at random points of several jobs (a new one whenever
/// the last finished), inputs stored apart and inline.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_kills_over_several_jobs_lose_nothing_and_credit_nothing_twice() {
    kill_rounds(100, 1_500, 0x5EED_0100).await;
}
