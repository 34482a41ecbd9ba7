//! The gRPC API from a client that is not Rust and holds no copy of the
//! proto: Python's grpcio discovers `shoal.v1.ShoalService` by server
//! reflection, submits a job (retried with its request id: still one job),
//! pages through the jobs, reads the results and checks every SHA-256
//! digest with hashlib, and reads the field violation of a refused call.
//!
//! And Pilot's task-submission port from a client written from the seed's
//! framing with Python's standard library alone.
//!
//! Needs a Python with `grpcio`, `grpcio-reflection` and `grpcio-status`:
//! `cargo xtask test` makes a virtual environment and points
//! `SHOAL_PYTHON` at it; otherwise `python3` is used and must have them.

mod common;

use common::*;
use shoal_native::worker::Behaviour;
use shoal_native::Service;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_grpcio_submits_and_reads_results() {
    let python = std::env::var("SHOAL_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::start(test_config(dir.path())).await.expect("service starts");
    let workers = Workers::spawn(&service, "w", 3, Behaviour::Honest);
    let root = env!("CARGO_MANIFEST_DIR");
    let out = tokio::process::Command::new(&python)
        .arg(format!("{root}/python/grpc_client.py"))
        .arg(service.grpc_addr.to_string())
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("cannot run {python}: {e} (run `cargo xtask test`, or pip install grpcio grpcio-reflection grpcio-status)")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python client failed (needs grpcio, grpcio-reflection, grpcio-status: `cargo xtask test` installs them)\n{stdout}\n{stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(report["verified"], 10);
    assert_eq!(report["checked"], 10, "every digest checked by hashlib");
    assert_eq!(report["bad_request"], "INVALID_ARGUMENT");
    assert_eq!(report["violations"], serde_json::json!(["job_id"]), "google.rpc.BadRequest names the field");
    assert_eq!(report["listed"], serde_json::json!([report["job"]]), "one job, retried: listed once, a page each");
    assert_eq!(report["workers"], 3);
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
}

/// The Pilot port driven by `python/pilot_client.py`: a job no worker may
/// run expires in the queue (2 s here instead of an hour), refusals carry
/// their reasons, a frame other than SUBMIT gets no answer, a SHA-256 job's
/// results come back to the submitter's own port and are checked with
/// hashlib, and the polo registry moved so that the gate refuses the next
/// submission.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pilot_client_submits_jobs_and_gets_results_back() {
    let python = std::env::var("SHOAL_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.server.pilot.listen = "127.0.0.1:0".into();
    cfg.server.pilot.queue_timeout_ms = 2_000;
    let service = Service::start(cfg).await.expect("service starts");
    let workers = Workers::spawn(&service, "w", 3, Behaviour::Honest);
    let pilot = service.pilot_addr.expect("the Pilot port is on");
    let root = env!("CARGO_MANIFEST_DIR");
    let out = tokio::process::Command::new(&python)
        .arg(format!("{root}/python/pilot_client.py"))
        .arg(pilot.to_string())
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the Pilot client failed\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(report["expired_statuses"], serde_json::json!(["ACCEPTED", "EXPIRED"]));
    assert_eq!(report["bad_description"][0], 400);
    assert!(report["bad_description"][1].as_str().is_some_and(|m| m.contains("not a Shoal job")), "{report}");
    assert_eq!(report["bad_from_addr"][0], 400);
    assert!(report["bad_from_addr"][1].as_str().is_some_and(|m| m.contains("from_addr")), "{report}");
    assert_eq!(report["bad_task_id"], 400, "a task id is a file name: letters, digits and dashes only");
    assert_eq!(report["duplicate"][0], 400);
    assert!(report["duplicate"][1].as_str().is_some_and(|m| m.contains("already")), "{report}");
    assert_eq!((&report["status_frame_answered"], &report["huge_frame_answered"]), (&false.into(), &false.into()));
    let statuses = report["statuses"].as_array().expect("statuses");
    for s in ["ACCEPTED", "EXECUTING", "SUCCEEDED"] {
        assert!(statuses.contains(&serde_json::json!(s)), "{s} in {statuses:?}");
    }
    assert_eq!(report["result"], serde_json::json!({"result_type": "file", "filename": "results.txt"}));
    assert_eq!((report["checked"].as_u64(), report["has_times"].as_bool()), (Some(3), Some(true)));
    // Expiry cost the coordinator 1; the completion moved 1 from the
    // submitter and gave the coordinator its reward (at least 1).
    let scores: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("pilot/scores.json")).expect("the registry"))
            .expect("JSON");
    assert_eq!(scores["127.0.0.1"], -1);
    let receiver = scores["shoal"].as_i64().expect("the coordinator's score");
    assert!(receiver >= 0, "{scores}");
    let refused = format!("Polo score too low: submitter=-1, receiver={receiver}");
    assert_eq!(report["after_completion"], serde_json::json!([400, refused]));
    // Every task is on disk with its end.
    let records = std::fs::read_dir(dir.path().join("pilot/tasks")).expect("records").count();
    assert_eq!(records, 2, "the expired and the succeeded task (refusals leave nothing)");
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
}
