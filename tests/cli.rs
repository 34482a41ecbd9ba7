//! The `shoal` command end to end: a coordinator process, then `sim` over
//! real sockets, `submit --wait`, `job status`, `workers`, `epochs`,
//! `keygen` and `config print` against it.

mod common;

use std::process::{Command, Output, Stdio};

use common::{free_port, ChildGuard};
use std::time::Duration;

const SETTINGS: [&str; 9] = [
    "coordinator.distinct_origins=false",
    "coordinator.profile.benchmark_size=64",
    "coordinator.profile.benchmark_max_size=64",
    "coordinator.profile.min_mflops=1",
    "coordinator.rewards.min_tasks=1",
    "coordinator.epoch.every=0",
    "coordinator.epoch.every_verified_tasks=100",
    "coordinator.ack_timeout=3000",
    "coordinator.exec_timeout_floor=3000",
];

fn shoal(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal-e2e"));
    cmd.args(args).env("RUST_LOG", "warn");
    for s in SETTINGS {
        cmd.args(["--set", s]);
    }
    cmd.output().expect("shoal runs")
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "shoal failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn the_command_drives_a_coordinator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path");
    let (http, grpc) = (free_port(), free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal-e2e"));
    cmd.args(["coordinator", "--data", data])
        .args(["--http", &format!("127.0.0.1:{http}"), "--grpc", &format!("127.0.0.1:{grpc}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    for s in SETTINGS {
        cmd.args(["--set", s]);
    }
    let _coordinator = ChildGuard(cmd.spawn().expect("coordinator starts"));
    let grpc_url = format!("http://127.0.0.1:{grpc}");
    let ws_url = format!("ws://127.0.0.1:{http}/ws");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", grpc)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // Byzantine workers over real sockets: nothing lost, nothing wrong accepted.
    let out = ok(&shoal(&[
        "sim",
        "--coordinator",
        &grpc_url,
        "--worker-url",
        &ws_url,
        "--data",
        data,
        "--workers",
        "5",
        "--liars",
        "2",
        "--tasks",
        "300",
        "--json",
    ]));
    let summary: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(summary["verified"], 300, "{summary}");
    assert_eq!(summary["wrong_accepted"], 0, "{summary}");
    assert_eq!(summary["lost"], 0, "{summary}");
    assert!(summary["slashed_total"].as_u64().expect("number") >= 1, "liars caught: {summary}");

    // Tokens: keygen derives what the coordinator checks.
    let token = ok(&shoal(&["keygen", "--worker", "cli-worker", "--data", data]));
    assert!(token.trim().starts_with("shoal_"), "{token}");

    // A native worker process, and a job submitted and awaited by the CLI.
    let mut worker = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_shoal-e2e"))
            .args(["worker", "--coordinator", &ws_url, "--id", "cli-worker", "--token", token.trim()])
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .expect("worker starts"),
    );
    let mut worker2 = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_shoal-e2e"))
            .args(["worker", "--coordinator", &ws_url, "--id", "cli-worker-2"])
            .args(["--token", ok(&shoal(&["keygen", "--worker", "cli-worker-2", "--data", data])).trim()])
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .expect("worker starts"),
    );
    let results = dir.path().join("results");
    let out = ok(&shoal(&[
        "submit",
        "--coordinator",
        &grpc_url,
        "--kernel",
        "mandelbrot",
        "--size",
        "64",
        "--tile",
        "32",
        "--wait",
        "--out",
        results.to_str().expect("utf-8"),
    ]));
    let job = out.lines().next().expect("job id").trim().to_owned();
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(results.join("summary.json")).expect("summary written")).expect("json");
    assert_eq!(summary.as_array().expect("array").len(), 4, "4 tiles of 32×32");
    assert!(summary.as_array().expect("array").iter().all(|t| t["kind"] == "verified"));
    assert!(results.join("task-000003.out0").is_file());

    job_file_round_trip(dir.path(), &grpc_url);

    operator_commands(&grpc_url, &job);

    failures_exit_with_their_codes(&grpc_url);
    let out = shoal(&["config", "print", "--set", "coordinator.max_workers=lots"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("coordinator.max_workers"));
    let printed = ok(&shoal(&["config", "print"]));
    assert!(printed.contains("[coordinator]") && printed.contains("default_redundancy = 2"), "{printed}");
    let _ = worker.0.kill();
    let _ = worker2.0.kill();
}

/// A job file (any kernel as JSON, inputs in base64) submitted and awaited;
/// the digests are hashlib's; an unknown kernel is refused.
fn job_file_round_trip(dir: &std::path::Path, grpc_url: &str) {
    // A job file: any kernel as JSON, inputs in base64.
    let job_file = dir.join("job.json");
    std::fs::write(
        &job_file,
        r#"{"name": "from a file", "redundancy": 2, "tasks": [
            {"kernel": {"Sha256": {"count": 2, "message_len": 3}}, "inputs_base64": ["YWJjZGVm"]}
        ]}"#,
    )
    .expect("job file written");
    let file_results = dir.join("file-results");
    ok(&shoal(&[
        "submit",
        "--coordinator",
        grpc_url,
        "--file",
        job_file.to_str().expect("utf-8"),
        "--wait",
        "--out",
        file_results.to_str().expect("utf-8"),
    ]));
    let digests = std::fs::read(file_results.join("task-000000.out0")).expect("output written");
    // SHA-256("abc") then SHA-256("def").
    assert_eq!(&digests[..4], &[0xba, 0x78, 0x16, 0xbf]);
    assert_eq!(&digests[32..36], &[0xcb, 0x83, 0x79, 0xac]);
    let out = shoal(&["submit", "--coordinator", grpc_url, "--kernel", "fft"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("unknown kernel"));

    // Shared inputs: B = [[5, 6], [7, 8]] once, named by two tasks.
    let shared_file = dir.join("shared.json");
    std::fs::write(
        &shared_file,
        r#"{"name": "shared B", "redundancy": 2, "shared_base64": ["AACgQAAAwEAAAOBAAAAAQQ=="], "tasks": [
            {"kernel": {"MatmulF32": {"m": 2, "n": 2, "k": 2}}, "parts": [{"base64": "AACAPwAAAEAAAEBAAACAQA=="}, {"shared": 0}]},
            {"kernel": {"MatmulF32": {"m": 2, "n": 2, "k": 2}}, "parts": [{"base64": "AACAPwAAAAAAAAAAAACAPw=="}, {"shared": 0}]}
        ]}"#,
    )
    .expect("job file written");
    let shared_results = dir.join("shared-results");
    let file = shared_file.to_str().expect("utf-8");
    let out_dir = shared_results.to_str().expect("utf-8");
    ok(&shoal(&["submit", "--coordinator", grpc_url, "--file", file, "--wait", "--out", out_dir]));
    let floats = |i: usize| -> Vec<f32> {
        let b = std::fs::read(shared_results.join(format!("task-{i:06}.out0"))).expect("output written");
        b.chunks(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()
    };
    assert_eq!(floats(0), vec![19.0, 22.0, 43.0, 50.0], "[[1, 2], [3, 4]] · B");
    assert_eq!(floats(1), vec![5.0, 6.0, 7.0, 8.0], "I · B");
    let status = ok(&shoal(&["status", "--coordinator", grpc_url, "--json"]));
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    let named: u64 = status["shared_bytes_named"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
    assert!(named > 0, "the second task named B instead of carrying it: {status}");
    std::fs::write(&shared_file, r#"{"shared_base64": [], "tasks": [{"kernel": {"MatmulF32": {"m": 1, "n": 1, "k": 1}}, "parts": [{"shared": 3}]}]}"#)
        .expect("written");
    let out = shoal(&["submit", "--coordinator", grpc_url, "--file", file]);
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("shared input 3 is not in shared_base64")
    );
}

/// `shoal token`: an admin makes a submit token, the token submits, is
/// listed (never shown again), and once revoked submits nothing.
#[test]
fn tokens_are_made_listed_and_revoked_from_the_command_line() {
    const ADMIN: &str = "cli-admin-token-for-this-test";
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path");
    let (http, grpc) = (free_port(), free_port());
    let admin_setting = format!("server.api_token=\"{ADMIN}\"");
    let _coordinator = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_shoal-e2e"))
            .args(["coordinator", "--data", data, "--set", &admin_setting])
            .args(["--http", &format!("127.0.0.1:{http}"), "--grpc", &format!("127.0.0.1:{grpc}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("coordinator starts"),
    );
    let grpc_url = format!("http://127.0.0.1:{grpc}");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", grpc)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let client = ["--coordinator", grpc_url.as_str()];
    let as_admin = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&client);
        all.extend_from_slice(&["--api-token", ADMIN]);
        shoal(&all)
    };
    let token = ok(&as_admin(&["token", "create", "--role", "submit", "--name", "ci"])).trim().to_owned();
    assert!(token.starts_with("shoal_api_") && token.len() == 10 + 64, "{token}");
    let submit = |token: &str| {
        shoal(&["submit", "--kernel", "sha256", "--tasks", "2", client[0], client[1], "--api-token", token])
    };
    let job = ok(&submit(&token));
    let job = job.lines().next().expect("the job id").trim().to_owned();
    // Its own job: not deleted while open; cancelled, then deleted.
    let job_cmd = |action: &str| shoal(&["job", action, &job, client[0], client[1], "--api-token", &token]);
    // No worker here: both tasks wait, listed with how long.
    let pending = ok(&job_cmd("pending"));
    let waiting = pending.lines().filter(|l| l.starts_with("task ") && l.contains("0 replicas running")).count();
    assert_eq!(waiting, 2, "{pending}");
    let out = job_cmd("delete");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("cancel it first"), "{out:?}");
    ok(&job_cmd("cancel"));
    assert_eq!(ok(&job_cmd("delete")).trim(), "deleted");
    assert_eq!(job_cmd("status").status.code(), Some(3), "a deleted job is gone");
    let list: serde_json::Value = serde_json::from_str(&ok(&as_admin(&["token", "list", "--json"]))).expect("json");
    assert_eq!(list["tokens"][0]["name"], "ci");
    assert_eq!(list["tokens"][0]["role"], "ROLE_SUBMIT", "the API's enum names: {list}");
    assert!(!list.to_string().contains(&token), "the list never shows a token");
    // Without a token, with the wrong role, with a bad role: refused, saying why.
    let out = shoal(&["token", "list", client[0], client[1]]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs an API token"));
    let out = shoal(&["token", "list", client[0], client[1], "--api-token", &token]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("may not manage tokens"));
    let out = as_admin(&["token", "create", "--role", "root", "--name", "x"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("unknown role"));
    // Scripts need no flags: the address and the token from the environment.
    let out = Command::new(env!("CARGO_BIN_EXE_shoal-e2e"))
        .args(["workers", "--json"])
        .env("SHOAL_ADDR", &grpc_url)
        .env("SHOAL_API_TOKEN", ADMIN)
        .env("RUST_LOG", "warn")
        .output()
        .expect("shoal runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(listed["workers"].is_array(), "{listed}");
    let script = ok(&shoal(&["completions", "bash"]));
    assert!(
        script.contains("shoal") && script.contains("token") && script.contains("--coordinator"),
        "a bash completion script"
    );
    ok(&as_admin(&["token", "revoke", "ci"]));
    let out = submit(&token);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("revoked"), "{out:?}");
}

/// The operator's commands against a swarm that ran jobs: `--json` is the
/// API's own messages, lists page, `job watch` follows to the end, a
/// request id makes a retried submit answer the first job.
fn operator_commands(grpc_url: &str, job: &str) {
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--coordinator", grpc_url, "--json"]);
        serde_json::from_str(&ok(&shoal(&all))).expect("json")
    };
    let status = json(&["job", "status", job]);
    assert_eq!((status["job"]["verified"].as_u64(), status["job"]["finished"].as_bool()), (Some(4), Some(true)));
    let swarm = json(&["status"]);
    assert!(swarm["workers"].as_u64() >= Some(2), "{swarm}");
    assert!(swarm["tasks_verified"].as_str().is_some(), "64-bit counters are strings in proto3 JSON: {swarm}");
    let workers = json(&["workers", "--order", "agreed", "--desc"]);
    assert!(workers.to_string().contains("cli-worker"), "{workers}");
    let leaders = json(&["leaderboard", "--limit", "1"]);
    assert_eq!(leaders["contributors"].as_array().map(Vec::len), Some(1), "{leaders}");
    let most = |w: &serde_json::Value| w["agreed"].as_str().and_then(|a| a.parse::<u64>().ok()).unwrap_or(0);
    let top = workers["workers"].as_array().expect("workers").iter().map(most).max();
    assert!(
        Some(most(&leaders["contributors"][0])) >= top,
        "the all-time leaderboard leads with at least the most verified work of those connected"
    );
    let paid = json(&["leaderboard", "--earned", "--limit", "0"]);
    let earned = |w: &serde_json::Value| w["earned"].as_str().and_then(|a| a.parse::<u128>().ok()).unwrap_or(0);
    let paid = paid["contributors"].as_array().expect("contributors").iter().map(earned).collect::<Vec<_>>();
    assert!(paid.windows(2).all(|w| w[0] >= w[1]) && paid.len() >= 2, "most paid first: {paid:?}");
    let jobs = json(&["job", "list", "--limit", "2"]);
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(2), "two of the jobs: {jobs}");
    let all = json(&["job", "list", "--limit", "0"]);
    assert!(all["jobs"].as_array().map_or(0, Vec::len) >= 3, "every job, page after page: {all}");
    let epochs = json(&["epochs"]);
    assert!(!epochs["epochs"].as_array().expect("epochs").is_empty(), "300 verified tasks closed epochs");
    let closed = json(&["epoch", "close"]);
    assert!(closed["epoch"]["epoch"].is_string(), "{closed}");

    let watched = ok(&shoal(&["job", "watch", job, "--coordinator", grpc_url]));
    assert_eq!(watched.lines().filter(|l| l.contains("verified")).count(), 5, "4 tasks and the job: {watched}");

    let submit = |id: &str| {
        let out = ok(&shoal(&[
            "submit",
            "--coordinator",
            grpc_url,
            "--kernel",
            "sha256",
            "--tasks",
            "2",
            "--request-id",
            id,
            "--json",
        ]));
        serde_json::from_str::<serde_json::Value>(&out).expect("json")
    };
    let first = submit("retry-me");
    let again = submit("retry-me");
    assert_eq!(first["job_id"], again["job_id"], "a retried request answers the first job");
    assert_eq!(
        (first["replayed"].as_bool(), again["replayed"].as_bool()),
        (Some(false), Some(true)),
        "{first} {again}"
    );
    assert_ne!(submit("another")["job_id"], first["job_id"]);
}

/// Bad input to the CLI: one clear line, and the exit code the help lists.
fn failures_exit_with_their_codes(grpc_url: &str) {
    let out = shoal(&["job", "status", "nonsense", "--coordinator", grpc_url]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "a refused request: {stderr}");
    assert!(stderr.contains("not a job id") && stderr.contains("INVALID_ARGUMENT: job_id"), "{stderr}");
    let out = shoal(&["job", "status", "abababab-abab-abab-abab-abababababab", "--coordinator", grpc_url]);
    assert_eq!(out.status.code(), Some(3), "not found: {}", String::from_utf8_lossy(&out.stderr));
    let out = shoal(&["status", "--coordinator", &format!("http://127.0.0.1:{}", common::free_port())]);
    assert_eq!(out.status.code(), Some(5), "unreachable: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(shoal(&["workers", "--order", "shoe-size"]).status.code(), Some(2), "usage");
    // The flag names the plane: --api for the control plane (--coordinator still works).
    let swarm: serde_json::Value =
        serde_json::from_str(&ok(&shoal(&["status", "--api", grpc_url, "--json"]))).expect("json");
    assert!(swarm["version"].is_string(), "{swarm}");
    // With --log-json, what goes to stderr is JSON lines, failures included.
    let out = shoal(&["--log-json", "status", "--coordinator", &format!("http://127.0.0.1:{}", common::free_port())]);
    assert_eq!(out.status.code(), Some(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.trim().is_empty(), "the failure is logged");
    for line in stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["fields"]["message"].is_string() || v["fields"].is_object(), "{line}");
    }
}

/// `shoal bench gpu --json` on this machine's adapter (lavapipe here and
/// in CI): the device's limits, then each kernel's figures, its program,
/// and the CPU reference beside the smallest size.
#[test]
fn the_gpu_benchmark_reports_limits_and_kernels_as_json() {
    let out = Command::new(env!("CARGO_BIN_EXE_shoal-e2e"))
        .args(["bench", "gpu", "--json", "--kernel", "mandelbrot", "--budget-secs", "0.05", "--max-run-secs", "0.01"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("shoal runs");
    let stdout = ok(&out);
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("the output is JSON");
    assert!(!report["adapter"]["name"].as_str().unwrap_or_default().is_empty(), "{report}");
    for peak in ["f32_flops", "int_ops", "copy_bytes_per_s", "upload_bytes_per_s", "download_bytes_per_s"] {
        assert!(report["peaks"][peak].as_f64().is_some_and(|v| v > 0.0), "{peak}: {report}");
    }
    let kernels = report["kernels"].as_array().expect("kernels");
    assert!(!kernels.is_empty() && kernels.iter().all(|k| k["kernel"] == "mandelbrot"), "{report}");
    let first = &kernels[0];
    assert_eq!(first["size"], "256² × 256 it");
    assert!(first["cpu_secs"].as_f64().is_some_and(|s| s > 0.0), "the smallest size runs the CPU reference");
    let fraction = first["kernel_fraction_of_peak"].as_f64().expect("fraction");
    assert!(fraction > 0.0 && fraction.is_finite(), "{first}");
    // Bad input is refused with the reason.
    let bad = Command::new(env!("CARGO_BIN_EXE_shoal-e2e"))
        .args(["bench", "gpu", "--kernel", "custom"])
        .output()
        .expect("shoal runs");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a built-in kernel"), "{bad:?}");
}

/// `shoal bench latency --json` over real sockets: probes on an idle swarm
/// and on a busy one, each answered verified, as percentiles.
#[test]
fn the_latency_benchmark_reports_percentiles_as_json() {
    let out = Command::new(env!("CARGO_BIN_EXE_shoal-e2e"))
        .args(["bench", "latency", "--json", "--probes", "5", "--workers", "2"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("shoal runs");
    let stdout = ok(&out);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("the output is JSON");
    for swarm in ["idle", "loaded"] {
        let p = &report["latency"][swarm];
        assert_eq!(p["n"], 5, "{report}");
        let (p50, p99) = (p["p50_us"].as_f64().expect("p50"), p["p99_us"].as_f64().expect("p99"));
        assert!(p50 > 0.0 && p99 >= p50, "{report}");
    }
    // An unknown benchmark is refused with the list.
    let bad = Command::new(env!("CARGO_BIN_EXE_shoal-e2e")).args(["bench", "speed"]).output().expect("shoal runs");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("throughput, payload, idle"), "{bad:?}");
}

/// More idle connections than the file-descriptor limit allows are refused
/// before anything starts, saying what to raise (Linux caps every hard
/// limit at `fs.nr_open`, 1 048 576 at most by default).
#[cfg(target_os = "linux")]
#[test]
fn the_idle_benchmark_refuses_more_connections_than_descriptors() {
    let out = Command::new(env!("CARGO_BIN_EXE_shoal-e2e"))
        .args(["bench", "idle", "--idle-workers", "2000000", "--idle-secs", "1"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("shoal runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("do not fit") && err.contains("ulimit -n"), "{err}");
}
