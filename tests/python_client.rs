//! The gRPC API from a client that is not Rust: Python's grpcio, with stubs
//! generated from the same `shoal.proto`, submits a job, reads its results
//! and checks every SHA-256 digest with hashlib.
//!
//! Needs a Python with `grpcio` and `grpcio-tools`: `cargo xtask test` makes
//! a virtual environment and points `SHOAL_PYTHON` at it; otherwise
//! `python3` is used and must have both installed.

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
        .arg(format!("{root}/../host-native/proto"))
        .arg(service.grpc_addr.to_string())
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("cannot run {python}: {e} (run `cargo xtask test`, or pip install grpcio grpcio-tools)")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python client failed (needs grpcio and grpcio-tools: `cargo xtask test` installs them)\n{stdout}\n{stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(report["verified"], 10);
    assert_eq!(report["checked"], 10, "every digest checked by hashlib");
    assert_eq!(report["bad_request"], "INVALID_ARGUMENT");
    assert_eq!(report["workers"], 3);
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
}
