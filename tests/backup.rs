//! `shoal backup` of a coordinator under load and `shoal restore` of it:
//! a coordinator started on the restored folder has every result verified
//! and every payout settled before the backup, the same worker secret,
//! and finishes the job that was running with its inputs intact.

mod common;

use std::process::Command;

use common::*;
use shoal_core::kernels::{KernelSpec, Sha256Params};
use shoal_native::grpc::pb;
use shoal_native::worker::Behaviour;
use shoal_native::Service;
use std::time::Duration;

fn shoal(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shoal-e2e")).args(args).env("RUST_LOG", "warn").output().expect("shoal runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_load_restores_every_verified_result_and_payout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::start(test_config(&dir.path().join("data"))).await.expect("service starts");
    let mut c = client(&service).await;
    let workers = Workers::spawn(&service, "w", 3, Behaviour::Honest);
    // A: done and paid before the backup (big inputs too, in the blob file).
    let big = KernelSpec::Sha256(Sha256Params { count: 256, message_len: 256 });
    let mut a_tasks = mixed_tasks(5);
    a_tasks.extend((0..4).map(|i| (big.clone(), big.seeded_inputs(i))));
    let a = submit(&mut c, "before the backup", 2, &a_tasks).await;
    wait_finished(&mut c, &a, 120).await;
    let epochs = close_epoch_all(&mut c).await;
    assert!(epochs.last().is_some_and(|e| !e.payouts.is_empty()), "paid: {epochs:?}");
    let a_results = results(&mut c, &a).await;
    // The last settlement's signed file is written before the backup.
    let last = epochs.last().expect("an epoch").epoch;
    let settled = shoal_native::settler::file_of(&dir.path().join("data"), last);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !settled.is_file() {
        assert!(tokio::time::Instant::now() < deadline, "no settlement file {}", settled.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // B: running while the backup is made.
    let small = KernelSpec::Sha256(Sha256Params { count: 4, message_len: 64 });
    let b_tasks: Vec<_> = (0..300).map(|i| (small.clone(), small.seeded_inputs(i))).collect();
    let b = submit(&mut c, "during the backup", 2, &b_tasks).await;

    let archive = dir.path().join("shoal.backup.tar");
    let (url, out) = (service.grpc_url(), archive.clone());
    let made = tokio::task::spawn_blocking(move || {
        shoal(&["backup", "--coordinator", &url, "--out", out.to_str().expect("utf-8")])
    })
    .await
    .expect("joined");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let during = c.get_job(pb::GetJobRequest { job_id: b.clone() }).await.expect("B").into_inner().job.expect("a job");
    println!("{} while B had {} of 300 verified", String::from_utf8_lossy(&made.stdout).trim(), during.verified);
    assert!(!archive.with_extension("partial").exists(), "no partial file is left");

    // Restored into a new folder; never over an existing one.
    let restored = dir.path().join("restored");
    let out =
        shoal(&["restore", "--from", archive.to_str().expect("utf-8"), "--data", restored.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again =
        shoal(&["restore", "--from", archive.to_str().expect("utf-8"), "--data", restored.to_str().expect("utf-8")]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("not empty"));
    let secret = service.secret.clone();
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");

    // The restored coordinator: A's results and the payouts as they were,
    // the same worker secret, B finished from what the backup held.
    let service = Service::start(test_config(&restored)).await.expect("starts on the restored data");
    let id = shoal_core::WorkerId::new("w0").expect("id");
    assert_eq!(
        shoal_core::auth::derive_token(&service.secret, &id),
        shoal_core::auth::derive_token(&secret, &id),
        "the worker secret comes back: workers keep their tokens"
    );
    let mut c = client(&service).await;
    assert_eq!(results(&mut c, &a).await, a_results, "every verified result");
    let kept = all_epochs(&mut c).await;
    assert_eq!(without_settlement(&kept[..epochs.len()]), without_settlement(&epochs), "every settled payout");
    assert_eq!(
        std::fs::read(shoal_native::settler::file_of(&restored, last)).ok(),
        std::fs::read(&settled).ok(),
        "the signed settlement file comes back"
    );
    assert_eq!(kept.iter().find(|e| e.epoch == last).map(|e| e.settlement.as_str()), Some("settled"));
    let workers = Workers::spawn(&service, "w", 3, Behaviour::Honest);
    let done = wait_finished(&mut c, &b, 120).await;
    assert_eq!(done.verified, 300, "{done:?}");
    for o in results(&mut c, &b).await {
        let (k, inputs) = &b_tasks[o.index as usize];
        assert_eq!(o.outputs, reference(k, inputs));
    }
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
}
