//! A disk that fills during work: the coordinator runs on a tmpfs of
//! 8 MiB (mounted in a private user and mount namespace, `unshare`), guest
//! workers verify tasks while jobs of 1 MiB of inputs keep coming until
//! the disk is full. The coordinator must stop by itself, saying why and
//! exiting non-zero, and lose nothing it acknowledged: restarted on a copy
//! of its data, every accepted job is there with its inputs and finishes.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, ChildGuard};
use shoal_core::kernels::{KernelSpec, Sha256Params};
use shoal_native::grpc::pb::shoal_service_client::ShoalServiceClient;
use shoal_native::grpc::{kernel_to_pb, pb};
use shoal_native::worker::{self, Behaviour, Executor, WorkerOptions};

type Client = ShoalServiceClient<tonic::transport::Channel>;

const SETTINGS: [&str; 7] = [
    "coordinator.distinct_origins=false",
    "coordinator.profile.benchmark_size=64",
    "coordinator.profile.benchmark_max_size=64",
    "coordinator.profile.min_mflops=1",
    "coordinator.allow_guests=true",
    "coordinator.max_guests_per_origin=16",
    "coordinator.ack_timeout=3000",
];

fn settings() -> Vec<String> {
    SETTINGS.iter().flat_map(|s| ["--set".to_owned(), (*s).to_owned()]).collect()
}

async fn connect(grpc: u16) -> Client {
    for _ in 0..300 {
        if let Ok(c) = ShoalServiceClient::connect(format!("http://127.0.0.1:{grpc}")).await {
            return c.max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the coordinator does not answer on {grpc}");
}

/// A job of 16 tasks of 64 KiB each (1 MiB of inputs, stored apart).
fn job(seed: u64) -> Vec<pb::SubmitJobRequest> {
    use pb::submit_job_request::Part;
    let k = KernelSpec::Sha256(Sha256Params { count: 256, message_len: 256 });
    let header = pb::JobHeader { name: format!("job {seed}"), redundancy: 2, ..Default::default() };
    let mut msgs = vec![pb::SubmitJobRequest { part: Some(Part::Header(header)) }];
    for i in 0..16 {
        let inputs = k.seeded_inputs(seed * 100 + i).into_iter().map(bytes::Bytes::from).collect();
        msgs.push(pb::SubmitJobRequest {
            part: Some(Part::Task(pb::Task { kernel: Some(kernel_to_pb(&k)), inputs, parts: Vec::new() })),
        });
    }
    msgs
}

fn guests(http: u16, n: u64) -> (tokio::sync::watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>) {
    let (stop, rx) = tokio::sync::watch::channel(false);
    let handles = (0..n)
        .map(|i| {
            let opts = WorkerOptions {
                bind: None,
                url: format!("ws://127.0.0.1:{http}/ws"),
                ca: None,
                token: None,
                identity: None,
                profile: None,
                worker_id: shoal_core::WorkerId::new(format!("guest-{i}")).expect("id"),
                max_concurrent: 2,
                cache_bytes: shoal_native::worker::DEFAULT_CACHE_BYTES,
                cache_dir: None,
                behaviour: Behaviour::Honest,
                reconnect: true,
                executor: Executor::Cpu,
                seed: i,
            };
            let rx = rx.clone();
            tokio::spawn(async move {
                let _ = worker::run(opts, rx).await;
            })
        })
        .collect();
    (stop, handles)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_stops_the_coordinator_cleanly_and_loses_nothing_it_acknowledged() {
    let probe = Command::new("unshare").args(["--user", "--map-root-user", "--mount", "true"]).status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "this test mounts a small tmpfs in a private namespace: it needs `unshare` and unprivileged user namespaces"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (mnt, copy) = (dir.path().join("mnt"), dir.path().join("copy"));
    std::fs::create_dir(&mnt).expect("mount point");
    let (http, grpc) = (free_port(), free_port());
    let script = r#"mount -t tmpfs -o size=8m tmpfs "$MNT" || exit 90
"$SHOAL" coordinator --data "$MNT/data" --http "127.0.0.1:$HTTP" --grpc "127.0.0.1:$GRPC" "$@"
code=$?
cp -a "$MNT/data" "$COPY"
exit $code"#;
    let mut child = ChildGuard(
        Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "sh", "-c", script, "sh"])
            .args(settings())
            .env("MNT", &mnt)
            .env("COPY", &copy)
            .env("HTTP", http.to_string())
            .env("GRPC", grpc.to_string())
            .env("SHOAL", env!("CARGO_BIN_EXE_shoal-e2e"))
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the coordinator starts in its namespace"),
    );
    let mut c = connect(grpc).await;
    let (stop, handles) = guests(http, 2);
    // Jobs until one is refused: the disk is full.
    let mut accepted = Vec::new();
    for seed in 0..64 {
        match c.submit_job(tokio_stream::iter(job(seed))).await {
            Ok(r) => accepted.push(r.into_inner().job_id),
            Err(_) => break,
        }
    }
    assert!(accepted.len() >= 2 && accepted.len() < 64, "8 MiB hold a few jobs of 1 MiB, not 64: {}", accepted.len());
    // The coordinator stops by itself and says why.
    let ended = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut stderr = String::new();
        if let Some(mut e) = child.0.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        (child.0.wait().ok().and_then(|s| s.code()), stderr)
    });
    let (code, stderr) = tokio::time::timeout(Duration::from_mins(1), ended)
        .await
        .expect("the coordinator stops by itself once its disk is full")
        .expect("joined");
    println!("{} jobs accepted before the disk filled; exit {code:?}; {}", accepted.len(), stderr.trim());
    assert_ne!(code, Some(0), "a storage failure is an error exit");
    assert!(stderr.contains("No space left on device") && stderr.contains("restart"), "{stderr}");
    let _ = stop.send(true);
    for h in handles {
        let _ = h.await;
    }

    // Restarted on what was on that disk: every acknowledged job is there,
    // its inputs intact, and it finishes.
    let (http, grpc) = (free_port(), free_port());
    let _coordinator = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_shoal-e2e"))
            .args(["coordinator", "--data"])
            .arg(&copy)
            .args(["--http", &format!("127.0.0.1:{http}"), "--grpc", &format!("127.0.0.1:{grpc}")])
            .args(settings())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("restarts"),
    );
    let mut c = connect(grpc).await;
    let (stop, handles) = guests(http, 2);
    for job in &accepted {
        let deadline = tokio::time::Instant::now() + Duration::from_mins(2);
        loop {
            let s = c
                .get_job(pb::GetJobRequest { job_id: job.clone() })
                .await
                .expect("an acknowledged job is kept")
                .into_inner()
                .job
                .expect("a job");
            assert_eq!(s.tasks, 16);
            if s.finished {
                assert_eq!(s.verified, 16, "{s:?}");
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{job} did not finish after the restart: {s:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let _ = stop.send(true);
    for h in handles {
        let _ = h.await;
    }
}
