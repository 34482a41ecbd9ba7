//! Contributor identities through the real service: native workers that
//! join under their own key (no operator token) do verified work, and the
//! record follows the key across reconnections and a coordinator restart;
//! `shoal worker` makes its key file once (mode 0600) and is the same
//! contributor on its next run.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use shoal_core::identity::{Identity, Profile};
use shoal_core::WorkerId;
use shoal_native::grpc::pb;
use shoal_native::worker::{self, Behaviour, Executor, WorkerOptions};
use shoal_native::Service;
use tokio::sync::watch;

fn contributor(service: &Service, seed: u8) -> WorkerOptions {
    WorkerOptions {
        bind: None,
        url: service.worker_url(),
        ca: None,
        worker_id: WorkerId::new("unused").expect("id"),
        token: None,
        identity: Some(Identity::from_seed(&[seed; 32])),
        profile: Some(Profile {
            payout: format!("addr-{seed}"),
            name: format!("contributor {seed}"),
            team: "blue".into(),
        }),
        max_concurrent: 2,
        cache_bytes: shoal_native::worker::DEFAULT_CACHE_BYTES,
        cache_dir: None,
        behaviour: Behaviour::Honest,
        reconnect: false,
        executor: Executor::Cpu,
        seed: u64::from(seed),
    }
}

async fn worker(c: &mut ShoalClient, id: &WorkerId) -> Option<pb::Worker> {
    let r = c.get_worker(pb::GetWorkerRequest { worker_id: id.to_string() }).await.ok()?;
    r.into_inner().worker
}

type ShoalClient = shoal_native::grpc::pb::shoal_service_client::ShoalServiceClient<tonic::transport::Channel>;

async fn wait_for(c: &mut ShoalClient, id: &WorkerId, admitted: bool) -> pb::Worker {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(w) = worker(c, id).await.filter(|w| !admitted || w.tier > 0) {
            return w;
        }
        assert!(tokio::time::Instant::now() < deadline, "{id} never joined");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_identity_keeps_its_record_across_reconnections_and_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.coordinator.identities = shoal_core::coordinator::IdentityPolicy::Open;
    let service = Service::start(cfg.clone()).await.expect("starts");
    let (stop, rx) = watch::channel(false);
    let mut handles: Vec<_> =
        (1..=3).map(|s| tokio::spawn(worker::run(contributor(&service, s), rx.clone()))).collect();
    let mut c = client(&service).await;
    let me = Identity::from_seed(&[1; 32]).worker_id();
    wait_for(&mut c, &me, true).await;
    let job = submit(&mut c, "by contributors", 2, &mixed_tasks(3)).await;
    assert_eq!(wait_finished(&mut c, &job, 120).await.verified as usize, mixed_tasks(3).len());
    let before = wait_for(&mut c, &me, true).await.agreed;
    assert!(before > 0, "the identity did verified work");

    // Paid: the settled epoch's payout is the identity's record too, to
    // the address it declared.
    c.close_epoch(pb::CloseEpochRequest {}).await.expect("settled");
    let epochs = c.list_epochs(pb::ListEpochsRequest::default()).await.expect("epochs").into_inner();
    let paid = epochs.epochs.iter().flat_map(|e| &e.payouts).find(|p| p.worker == me.as_str()).expect("paid");
    assert_eq!(paid.address, "addr-1", "{paid:?}");
    settlement_file_is_signed(dir.path(), &epochs.epochs[0], me.as_str()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed = c.list_epochs(pb::ListEpochsRequest::default()).await.expect("epochs").into_inner();
        if listed.epochs[0].settlement == "settled" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the epoch never shows settled: {:?}",
            listed.epochs[0].settlement
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Its connection ends; its record stays, found by its public key too.
    let _ = stop.send(true);
    for h in handles.drain(..) {
        let _ = h.await;
    }
    let public = shoal_core::Digest(Identity::from_seed(&[1; 32]).public_key()).to_hex();
    // The coordinator sees the goodbye a moment after the worker sent it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let record = loop {
        let r = c.get_contributor(pb::GetContributorRequest { key: public.clone() }).await.expect("known");
        let record = r.into_inner().contributor.expect("a record");
        if !record.connected || tokio::time::Instant::now() > deadline {
            break record;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((record.worker_id.as_str(), record.connected, record.agreed), (me.as_str(), false, before));
    assert_eq!(
        (record.payout_address.as_str(), record.display_name.as_str(), record.team.as_str()),
        ("addr-1", "contributor 1", "blue")
    );
    assert!(record.earned.parse::<u128>().expect("base units") > 0 && record.epochs_paid == 1, "{record:?}");
    let unknown = c.get_contributor(pb::GetContributorRequest { key: "id-0000".into() }).await;
    assert_eq!(unknown.expect_err("never seen").code(), tonic::Code::NotFound);
    // The same key comes back on a new connection.
    let (stop, rx) = watch::channel(false);
    handles.push(tokio::spawn(worker::run(contributor(&service, 1), rx.clone())));
    assert_eq!(wait_for(&mut c, &me, false).await.agreed, before, "the record is the key's");
    let _ = stop.send(true);
    for h in handles.drain(..) {
        let _ = h.await;
    }

    // And after the coordinator restarts on the same data.
    service.shutdown().await.expect("clean shutdown");
    let service = Service::start(cfg).await.expect("restarts");
    let (stop, rx) = watch::channel(false);
    let h = tokio::spawn(worker::run(contributor(&service, 1), rx));
    let mut c = client(&service).await;
    assert_eq!(wait_for(&mut c, &me, false).await.agreed, before, "kept across a restart");
    let _ = stop.send(true);
    let _ = h.await;
    service.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shoal_worker_makes_its_key_once_and_stays_the_same_contributor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.coordinator.identities = shoal_core::coordinator::IdentityPolicy::Open;
    let service = Service::start(cfg).await.expect("starts");
    let key = dir.path().join("me").join("worker.key");
    let run = || {
        ChildGuard(
            Command::new(env!("CARGO_BIN_EXE_shoal-e2e"))
                .args(["worker", "--coordinator", &service.worker_url(), "--cpu", "--identity"])
                .arg(&key)
                .args(["--payout", "site-owner-7", "--team", "blue"])
                .env("RUST_LOG", "warn")
                .stderr(Stdio::null())
                .spawn()
                .expect("shoal worker starts"),
        )
    };
    let first = run();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !key.is_file() {
        assert!(tokio::time::Instant::now() < deadline, "no key file made");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).expect("key").permissions().mode() & 0o777, 0o600);
    }
    let seed = shoal_native::keyfile::load_or_create(&key).expect("a key");
    let me = Identity::from_seed(&seed).worker_id();
    let mut c = client(&service).await;
    wait_for(&mut c, &me, false).await;
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while worker(&mut c, &me).await.is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the killed worker is still listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _second = run();
    wait_for(&mut c, &me, false).await;
    let shown = Command::new(env!("CARGO_BIN_EXE_shoal-e2e"))
        .args(["contributor", "show", me.as_str(), "--api", &service.grpc_url(), "--json"])
        .output()
        .expect("shoal runs");
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("json");
    assert_eq!(shown["contributor"]["worker_id"], me.as_str(), "{shown}");
    assert_eq!(
        (&shown["contributor"]["payout_address"], &shown["contributor"]["team"]),
        (&"site-owner-7".into(), &"blue".into())
    );
    assert_eq!(shoal_native::keyfile::load_or_create(&key).expect("a key"), seed, "the same key, not a new one");
    service.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_identity_joins_once_the_operator_approves_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.coordinator.identities = shoal_core::coordinator::IdentityPolicy::Approval;
    let service = Service::start(cfg).await.expect("starts");
    let (stop, rx) = watch::channel(false);
    let h = tokio::spawn(worker::run(WorkerOptions { reconnect: true, ..contributor(&service, 5) }, rx));
    let mut c = client(&service).await;
    let me = Identity::from_seed(&[5; 32]).worker_id();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let pending = c.list_pending_contributors(pb::ListPendingContributorsRequest {}).await.expect("pending");
        if pending.into_inner().worker_ids.contains(&me.to_string()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{me} never listed as waiting");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(worker(&mut c, &me).await.is_none(), "refused before approval");
    let cli = |action: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_shoal-e2e"))
            .args(["contributor", action, me.as_str(), "--api", &service.grpc_url(), "--json"])
            .output()
            .expect("shoal runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
    };
    assert_eq!(cli("approve")["changed"], true);
    wait_for(&mut c, &me, false).await;
    // Withdrawn: disconnected, and refused when it comes back.
    assert_eq!(cli("revoke")["changed"], true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while worker(&mut c, &me).await.is_some() {
        assert!(tokio::time::Instant::now() < deadline, "still connected after the approval was withdrawn");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Only identities are approved.
    let err = c.approve_contributor(pb::ApproveContributorRequest { key: "guest-1".into(), approve: true }).await;
    assert_eq!(err.expect_err("not an identity").code(), tonic::Code::InvalidArgument);
    let _ = stop.send(true);
    let _ = h.await;
    service.shutdown().await.expect("clean shutdown");
}

/// Once consensus agreed, the settled epoch is in a signed settlement file
/// with every payout and address.
async fn settlement_file_is_signed(data: &std::path::Path, epoch: &pb::Epoch, me: &str) {
    let path = shoal_native::settler::file_of(data, epoch.epoch);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !path.is_file() {
        assert!(tokio::time::Instant::now() < deadline, "no settlement file {}", path.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    assert_eq!(doc["digest"], epoch.digest.as_str(), "{doc}");
    let mine = doc["payouts"].as_array().expect("payouts").iter().find(|p| p["worker"] == me).expect("mine").clone();
    assert_eq!(mine["address"], "addr-1", "{doc}");
    let hex32 = |s: &str| -> [u8; 32] { s.parse::<shoal_core::Digest>().expect("hex").0 };
    let sig_hex = doc["signature"].as_str().expect("signature");
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(&hex32(&sig_hex[..64]));
    signature[32..].copy_from_slice(&hex32(&sig_hex[64..]));
    let public = hex32(doc["public_key"].as_str().expect("key"));
    let digest: shoal_core::Digest = epoch.digest.parse().expect("digest");
    let message = shoal_core::identity::settlement_message(epoch.epoch, &digest);
    assert_eq!(shoal_core::identity::verify_signature(&public, &message, &signature), Ok(()), "signed");
    assert!(
        shoal_core::identity::verify_signature(
            &public,
            &shoal_core::identity::settlement_message(epoch.epoch + 1, &digest),
            &signature
        )
        .is_err(),
        "for this epoch only"
    );
}
