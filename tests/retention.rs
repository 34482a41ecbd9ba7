//! Bounded disk through the real service: a finished job deleted on
//! request or by retention leaves no record, gives the space of its inputs
//! back (the blob file's blocks are freed), and takes nothing else with
//! it: inputs another job shares, other jobs' results, settled epochs, a
//! restart's recovery.

mod common;

use std::time::Duration;

use common::*;
use shoal_core::kernels::{KernelSpec, Sha256Params};
use shoal_native::grpc::pb;
use shoal_native::worker::Behaviour;
use shoal_native::Service;
use tonic::Code;

type ShoalServiceClient = shoal_native::grpc::pb::shoal_service_client::ShoalServiceClient<tonic::transport::Channel>;

/// A task of 64 KiB of messages: its inputs are stored apart, in the blob file.
fn big_task(seed: u64) -> (KernelSpec, Vec<Vec<u8>>) {
    let k = KernelSpec::Sha256(Sha256Params { count: 256, message_len: 256 });
    let inputs = k.seeded_inputs(seed);
    (k, inputs)
}

async fn blob_bytes(service: &Service) -> u64 {
    service.engine.query(|_, store| store.blob_bytes()).await.expect("engine")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_job_gives_its_space_back_and_nothing_else_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = test_config(dir.path());
    let service = Service::start(cfg.clone()).await.expect("service starts");
    let mut c = client(&service).await;
    let workers = Workers::spawn(&service, "w", 2, Behaviour::Honest);
    // A: 8 big tasks of their own and one whose input B shares.
    let a_tasks: Vec<_> = (0..8).chain([100]).map(big_task).collect();
    let a = submit(&mut c, "to delete", 2, &a_tasks).await;
    wait_finished(&mut c, &a, 120).await;
    let b_tasks = vec![big_task(100)];
    let b = submit(&mut c, "shares an input", 2, &b_tasks).await;
    wait_finished(&mut c, &b, 120).await;
    let epochs = close_epoch_all(&mut c).await;
    // C waits forever: no worker meets its tier.
    let header = pb::JobHeader { name: "never runs".into(), min_tier: 3, redundancy: 2, ..Default::default() };
    let c_job = submit_with(&mut c, header, &[big_task(300)]).await;

    let del = |job: &str| pb::DeleteJobRequest { job_id: job.to_owned() };
    let get = |job: &str| pb::GetJobRequest { job_id: job.to_owned() };
    let open = c.delete_job(del(&c_job)).await.expect_err("an open job is not deleted");
    assert_eq!(open.code(), Code::FailedPrecondition, "{open}");
    assert!(open.message().contains("cancel it first"), "{open}");

    let before = blob_bytes(&service).await;
    assert!(c.delete_job(del(&a)).await.expect("deleted").into_inner().deleted);
    let after = blob_bytes(&service).await;
    // Each input takes 64 KiB and a few bytes; the blocks wholly inside it go back.
    assert!(after + 8 * 60 * 1024 <= before, "8 inputs' space is back: {before} then {after} bytes");
    assert_eq!(c.get_job(get(&a)).await.expect_err("gone").code(), Code::NotFound);
    let streamed = c.stream_job_results(pb::StreamJobResultsRequest { job_id: a.clone(), ..Default::default() }).await;
    assert_eq!(streamed.expect_err("gone").code(), Code::NotFound);
    let listed = c.list_jobs(pb::ListJobsRequest::default()).await.expect("list").into_inner().jobs;
    assert!(listed.iter().all(|j| j.job_id != a) && listed.iter().any(|j| j.job_id == b));
    assert!(!c.delete_job(del(&a)).await.expect("answered").into_inner().deleted, "twice: nothing to delete");

    // B's results, its shared input, the epochs: all there, before and after a restart.
    let check_b = async |c: &mut ShoalServiceClient| {
        for o in results(c, &b).await {
            assert_eq!(o.outputs, reference(&b_tasks[0].0, &b_tasks[0].1));
        }
    };
    check_b(&mut c).await;
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
    let service = Service::start(cfg).await.expect("restarts");
    let mut c = client(&service).await;
    check_b(&mut c).await;
    assert_eq!(c.get_job(get(&a)).await.expect_err("still gone").code(), Code::NotFound);
    let open = c.get_job(get(&c_job)).await.expect("C is back").into_inner().job.expect("a job");
    assert!(!open.finished && open.tasks == 1, "{open:?}");
    let kept = all_epochs(&mut c).await;
    assert_eq!(without_settlement(&kept), without_settlement(&epochs), "settled epochs are kept");
    // B's input is read again by a job that needs it after the restart.
    let workers = Workers::spawn(&service, "v", 2, Behaviour::Honest);
    let again = submit(&mut c, "the shared input again", 2, &b_tasks).await;
    assert_eq!(wait_finished(&mut c, &again, 120).await.verified, 1);
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_deletes_finished_jobs_once_their_time_is_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.retention.finished_jobs = "1s".into();
    cfg.retention.sweep_every_ms = 100;
    let service = Service::start(cfg).await.expect("service starts");
    let mut c = client(&service).await;
    let workers = Workers::spawn(&service, "w", 2, Behaviour::Honest);
    let done = submit(&mut c, "short-lived", 2, &[big_task(1), big_task(2)]).await;
    wait_finished(&mut c, &done, 120).await;
    let header = pb::JobHeader { name: "open".into(), min_tier: 3, redundancy: 2, ..Default::default() };
    let open = submit_with(&mut c, header, &[big_task(3)]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while c.get_job(pb::GetJobRequest { job_id: done.clone() }).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "retention did not delete the finished job");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deleted = counter(&shoal_native::metrics::render(None), r#"shoal_jobs_deleted_total{by="retention"}"#);
    assert!(deleted >= 1.0, "{deleted}");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(c.get_job(pb::GetJobRequest { job_id: open }).await.is_ok(), "an open job is never retention's");
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
}

#[test]
fn a_retention_that_is_not_a_duration_is_refused() {
    let mut r = shoal_native::config::RetentionConfig::default();
    assert_eq!(r.keep_finished(), Ok(Some(shoal_core::Millis(7 * 86_400_000))));
    r.finished_jobs = "forever".into();
    assert_eq!(r.keep_finished(), Ok(None));
    r.finished_jobs = "90m".into();
    assert_eq!(r.keep_finished(), Ok(Some(shoal_core::Millis(90 * 60_000))));
    for bad in ["", "7", "7 days", "d", "-1h", "99999999999999999999d"] {
        r.finished_jobs = bad.into();
        assert!(r.keep_finished().is_err(), "{bad:?}");
    }
}
