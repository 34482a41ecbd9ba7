//! The gRPC API from a client that is not Rust and holds no copy of the
//! proto: Python's grpcio discovers `shoal.v1.ShoalService` by server
//! reflection, submits a job (retried with its request id: still one job),
//! pages through the jobs, reads the results and checks every SHA-256
//! digest with hashlib, and reads the field violation of a refused call.
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
