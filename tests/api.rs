//! The v1 API's promises to programs, through the real service: a
//! submission retried with its `request_id` answers the first job (also
//! when copies race, and after a restart), scoped to the token that made
//! it; list calls page through everything once, in order, and refuse a
//! token that is not theirs; errors carry `google.rpc` details.

mod common;

use common::*;
use shoal_native::grpc::pb;
use shoal_native::grpc::pb::shoal_service_client::ShoalServiceClient;
use shoal_native::grpc::WithToken;
use shoal_native::worker::Behaviour;
use shoal_native::Service;
use tonic::Code;
use tonic_types::StatusExt;

type Client = ShoalServiceClient<tonic::service::interceptor::InterceptedService<tonic::transport::Channel, WithToken>>;

const ADMIN: &str = "api-test-admin-token";

async fn client_with(service: &Service, token: &str) -> Client {
    let channel = shoal_native::grpc::channel(&service.grpc_url(), None).await.expect("gRPC connects");
    ShoalServiceClient::with_interceptor(channel, WithToken::new(token).expect("ascii token"))
}

fn job_messages(request_id: &str, seed: u64) -> Vec<pb::SubmitJobRequest> {
    use pb::submit_job_request::Part;
    let header = pb::JobHeader {
        redundancy: 2,
        name: format!("req {request_id}"),
        request_id: request_id.into(),
        ..Default::default()
    };
    let mut msgs = vec![pb::SubmitJobRequest { part: Some(Part::Header(header)) }];
    for (kernel, inputs) in mixed_tasks(seed).into_iter().take(3) {
        let task = pb::Task {
            kernel: Some(shoal_native::grpc::kernel_to_pb(&kernel)),
            inputs: inputs.into_iter().map(bytes::Bytes::from).collect(),
            parts: Vec::new(),
        };
        msgs.push(pb::SubmitJobRequest { part: Some(Part::Task(task)) });
    }
    msgs
}

async fn submit(c: &mut Client, request_id: &str, seed: u64) -> pb::SubmitJobResponse {
    c.submit_job(tokio_stream::iter(job_messages(request_id, seed))).await.expect("accepted").into_inner()
}

async fn make_token(admin: &mut Client, name: &str) -> String {
    let request = pb::CreateTokenRequest { name: name.into(), role: pb::Role::Submit.into() };
    admin.create_token(request).await.expect("created").into_inner().secret
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_submit_answers_the_first_job_even_when_copies_race() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.server.api_token = ADMIN.into();
    let service = Service::start(cfg.clone()).await.expect("starts");
    let mut admin = client_with(&service, ADMIN).await;
    let (alice, bob) = (make_token(&mut admin, "alice").await, make_token(&mut admin, "bob").await);

    // Copies of one request at once (as many as one client may have in
    // flight): one job, the others replay it.
    let copies = (0..4).map(|_| {
        let (url, token) = (service.grpc_url(), alice.clone());
        tokio::spawn(async move {
            let channel = shoal_native::grpc::channel(&url, None).await.expect("connects");
            let mut c = ShoalServiceClient::with_interceptor(channel, WithToken::new(&token).expect("ascii"));
            submit(&mut c, "nightly-2026-11-30", 1).await
        })
    });
    let answers: Vec<_> =
        futures_util::future::join_all(copies).await.into_iter().map(|a| a.expect("joined")).collect();
    let job = answers[0].job_id.clone();
    assert!(answers.iter().all(|a| a.job_id == job && a.tasks == 3), "{answers:?}");
    assert_eq!(answers.iter().filter(|a| !a.replayed).count(), 1, "one made it, three replayed: {answers:?}");
    let listed = admin.list_jobs(pb::ListJobsRequest::default()).await.expect("list").into_inner().jobs;
    assert_eq!(listed.len(), 1, "{listed:?}");

    // The same id from another token is another request.
    let mut b = client_with(&service, &bob).await;
    let bobs = submit(&mut b, "nightly-2026-11-30", 2).await;
    assert!(bobs.job_id != job && !bobs.replayed);

    // A request id a program could not mean is refused, naming the field.
    let e = b.submit_job(tokio_stream::iter(job_messages("two words", 3))).await.expect_err("refused");
    assert_eq!(e.code(), Code::InvalidArgument);
    let field = e.get_details_bad_request().map(|b| b.field_violations[0].field.clone());
    assert_eq!(field.as_deref(), Some("header.request_id"), "{e:?}");

    // Durable: after a restart a retry still finds its job; once the job
    // is deleted, the id is free again.
    service.shutdown().await.expect("clean shutdown");
    let service = Service::start(cfg).await.expect("restarts");
    let workers = Workers::spawn(&service, "w", 2, Behaviour::Honest);
    let mut a = client_with(&service, &alice).await;
    let again = submit(&mut a, "nightly-2026-11-30", 1).await;
    assert!(again.job_id == job && again.replayed, "{again:?}");
    let mut admin = client_with(&service, ADMIN).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_mins(1);
    while !admin
        .get_job(pb::GetJobRequest { job_id: job.clone() })
        .await
        .expect("job")
        .into_inner()
        .job
        .expect("job")
        .finished
    {
        assert!(tokio::time::Instant::now() < deadline, "the job never finished");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(a.delete_job(pb::DeleteJobRequest { job_id: job.clone() }).await.expect("deleted").into_inner().deleted);
    let fresh = submit(&mut a, "nightly-2026-11-30", 1).await;
    assert!(fresh.job_id != job && !fresh.replayed, "{fresh:?}");
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
}

/// Walks a list call page by page; each page at most `size` long.
async fn walk<T, F, Fut>(size: usize, mut page: F) -> Vec<T>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = (Vec<T>, String)>,
{
    let (mut all, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let (items, next) = page(token).await;
        assert!(items.len() <= size, "a page holds at most its size");
        all.extend(items);
        pages += 1;
        assert!(pages < 1000, "the pages end");
        if next.is_empty() {
            return all;
        }
        token = next;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lists_page_through_everything_once_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::start(test_config(dir.path())).await.expect("starts");
    let workers = Workers::spawn(&service, "w", 23, Behaviour::Honest);
    let mut c = client(&service).await;
    wait_admitted(&mut c, 23).await;

    for (order, descending) in
        [(pb::WorkerOrder::Id, false), (pb::WorkerOrder::Id, true), (pb::WorkerOrder::Mflops, true)]
    {
        let cc = c.clone();
        let listed = walk(5, |page_token| {
            let mut c = cc.clone();
            async move {
                let request = pb::ListWorkersRequest { page_size: 5, page_token, order_by: order.into(), descending };
                let r = c.list_workers(request).await.expect("page").into_inner();
                assert_eq!(r.total_size, 23);
                (r.workers, r.next_page_token)
            }
        })
        .await;
        let ids: Vec<&str> = listed.iter().map(|w| w.id.as_str()).collect();
        let unique: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!((ids.len(), unique.len()), (23, 23), "every worker once: {ids:?}");
        if order == pb::WorkerOrder::Id {
            let mut sorted = ids.clone();
            sorted.sort_unstable();
            if descending {
                sorted.reverse();
            }
            assert_eq!(ids, sorted);
        } else {
            assert!(listed.windows(2).all(|w| w[0].mflops >= w[1].mflops), "fastest first");
        }
    }
    // A token is for the request that made it.
    let first = pb::ListWorkersRequest { page_size: 5, ..Default::default() };
    let token = c.list_workers(first).await.expect("page").into_inner().next_page_token;
    let other = pb::ListWorkersRequest {
        page_size: 5,
        page_token: token,
        order_by: pb::WorkerOrder::Agreed.into(),
        descending: false,
    };
    let e = c.list_workers(other).await.expect_err("another request's token");
    assert_eq!(e.code(), Code::InvalidArgument);
    let forged = pb::ListJobsRequest { page_size: 5, page_token: "bm90IGEgdG9rZW4".into() };
    let e = c.list_jobs(forged).await.expect_err("a forged token");
    let field = e.get_details_bad_request().map(|b| b.field_violations[0].field.clone());
    assert_eq!(field.as_deref(), Some("page_token"), "{e:?}");

    // Jobs, newest first; a job's kernels from any index.
    let mut jobs = Vec::new();
    for i in 0..7 {
        jobs.push(submit_plain(&mut c, i).await);
    }
    let listed = walk(3, |page_token| {
        let mut c = c.clone();
        async move {
            let r = c.list_jobs(pb::ListJobsRequest { page_size: 3, page_token }).await.expect("page").into_inner();
            (r.jobs, r.next_page_token)
        }
    })
    .await;
    jobs.reverse();
    assert_eq!(listed.iter().map(|j| j.job_id.clone()).collect::<Vec<_>>(), jobs, "newest first, each once");
    let kernels = walk(5, |page_token| {
        let (mut c, job_id) = (c.clone(), jobs[0].clone());
        async move {
            let request = pb::ListJobKernelsRequest { job_id, page_size: 5, page_token };
            let r = c.list_job_kernels(request).await.expect("page").into_inner();
            assert_eq!(r.first_index % 5, 0);
            (r.kernels, r.next_page_token)
        }
    })
    .await;
    assert_eq!(kernels.len(), mixed_tasks(6).len(), "every task's kernel");
    let e =
        c.get_job(pb::GetJobRequest { job_id: "abababab-abab-abab-abab-abababababab".into() }).await.expect_err("none");
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(e.get_details_resource_info().map(|r| r.resource_type), Some("shoal.v1.Job".into()), "{e:?}");

    // Epochs, newest first, settled between pages included once.
    for _ in 0..3 {
        c.close_epoch(pb::CloseEpochRequest {}).await.expect("closed");
    }
    let first = c
        .list_epochs(pb::ListEpochsRequest { page_size: 2, page_token: String::new() })
        .await
        .expect("page")
        .into_inner();
    c.close_epoch(pb::CloseEpochRequest {}).await.expect("closed meanwhile");
    let rest =
        c.list_epochs(pb::ListEpochsRequest { page_size: 2, page_token: first.next_page_token }).await.expect("page");
    let numbers: Vec<u64> = first.epochs.iter().chain(&rest.into_inner().epochs).map(|e| e.epoch).collect();
    assert!(numbers.windows(2).all(|w| w[0] == w[1] + 1), "newest first, no gap, no repeat: {numbers:?}");
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
}

async fn submit_plain(c: &mut ShoalServiceClient<tonic::transport::Channel>, seed: u64) -> String {
    submit_with(
        c,
        pb::JobHeader { name: format!("job {seed}"), redundancy: 2, ..Default::default() },
        &mixed_tasks(seed),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_input_crosses_the_socket_once_per_worker_and_bad_references_are_refused() {
    use pb::submit_job_request::Part;
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::start(test_config(dir.path())).await.expect("service starts");
    let workers = Workers::spawn(&service, "w", 3, Behaviour::Honest);
    let mut c = common::client(&service).await;
    wait_admitted(&mut c, 3).await;
    let (msgs, tasks) = shared_matmul_job(20);
    let job = c.submit_job(tokio_stream::iter(msgs)).await.expect("accepted").into_inner().job_id;
    let status = wait_finished(&mut c, &job, 120).await;
    assert_eq!(status.verified, 20);
    for o in results(&mut c, &job).await {
        let (k, inputs) = &tasks[o.index as usize];
        assert!(agrees(k, &o.outputs, &reference(k, inputs)), "task {} agrees with the CPU reference", o.index);
    }
    let st = c.get_swarm_status(pb::GetSwarmStatusRequest {}).await.expect("status").into_inner();
    let (model, own) = (256 * 256 * 4u64, 8 * 256 * 4u64);
    assert!(
        st.input_bytes_sent <= st.offers * own + 3 * model,
        "the model crossed once per worker at most: {} bytes sent for {} offers",
        st.input_bytes_sent,
        st.offers
    );
    assert!(st.shared_bytes_named >= (40 - 3) * model, "every other replica named it: {}", st.shared_bytes_named);
    let metrics = get_text(&format!("http://{}/metrics", service.http_addr)).await;
    assert!(counter(&metrics, "shoal_shared_bytes_named_total") >= ((40 - 3) * model) as f64);

    // References to what the stream did not declare, tasks with both kinds
    // of inputs, and empty shared inputs are refused with the field named.
    let refused = |msgs: Vec<pb::SubmitJobRequest>| {
        let mut c = c.clone();
        async move { c.submit_job(tokio_stream::iter(msgs)).await.expect_err("refused") }
    };
    let (mut msgs, _) = shared_matmul_job(1);
    msgs.remove(1);
    let e = refused(msgs).await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("shared input 0 is not declared"), "{}", e.message());
    let (mut msgs, _) = shared_matmul_job(1);
    if let Some(Part::Task(t)) = &mut msgs[2].part {
        t.inputs.push(vec![1u8; 4].into());
    }
    assert!(refused(msgs).await.message().contains("inputs or parts, not both"));
    let (mut msgs, _) = shared_matmul_job(1);
    msgs[1] = pb::SubmitJobRequest { part: Some(Part::Shared(pb::SharedInput { data: bytes::Bytes::new() })) };
    assert_eq!(refused(msgs).await.code(), Code::InvalidArgument);
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
}

/// One native worker keeping its shared inputs in `dir`, until `stop`.
fn disk_worker(
    service: &Service,
    dir: &std::path::Path,
) -> (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let id = shoal_core::WorkerId::new("disk-0").expect("id");
    let opts = shoal_native::worker::WorkerOptions {
        bind: None,
        url: service.worker_url(),
        ca: None,
        token: Some(shoal_core::auth::derive_token(&service.secret, &id)),
        worker_id: id,
        identity: None,
        profile: None,
        max_concurrent: 2,
        cache_bytes: 16 << 20,
        cache_dir: Some(dir.to_path_buf()),
        behaviour: Behaviour::Honest,
        reconnect: true,
        executor: shoal_native::worker::Executor::Cpu,
        seed: 1,
    };
    let (stop, rx) = tokio::sync::watch::channel(false);
    (
        stop,
        tokio::spawn(async move {
            let _ = shoal_native::worker::run(opts, rx).await;
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_worker_holds_its_shared_inputs_from_disk_and_is_not_sent_them_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache_dir = dir.path().join("inputs");
    let service = Service::start(test_config(&dir.path().join("data"))).await.expect("service starts");
    let mut c = common::client(&service).await;
    let (model_len, own) = (256 * 256 * 4u64, 8 * 256 * 4u64);
    let (stop, worker) = disk_worker(&service, &cache_dir);
    wait_admitted(&mut c, 1).await;
    let first = run_shared_job(&mut c, 4).await;
    assert!(first.input_bytes_sent >= model_len, "the first life got the matrix");
    let files: Vec<_> = std::fs::read_dir(&cache_dir).expect("cache folder").flatten().map(|e| e.file_name()).collect();
    assert_eq!(files.len(), 1, "one shared input kept on disk: {files:?}");
    let _ = stop.send(true);
    worker.await.expect("worker stops");

    // A new worker process on the same folder: its hello lists the matrix.
    let (stop, worker) = disk_worker(&service, &cache_dir);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while c
        .list_workers(pb::ListWorkersRequest::default())
        .await
        .expect("workers")
        .into_inner()
        .workers
        .iter()
        .all(|w| w.mflops == 0)
    {
        assert!(tokio::time::Instant::now() < deadline, "the worker came back");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let second = run_shared_job(&mut c, 4).await;
    let sent = second.input_bytes_sent - first.input_bytes_sent;
    assert!(sent < model_len, "the matrix did not cross again ({sent} bytes sent)");
    assert!(sent >= 4 * own, "the tasks' own parts did ({sent} bytes)");
    assert!(second.shared_bytes_named - first.shared_bytes_named >= 4 * model_len);
    let _ = stop.send(true);
    worker.await.expect("worker stops");
    service.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pending_tasks_are_listed_with_their_lifecycle_so_far_page_by_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::start(test_config(dir.path())).await.expect("service starts");
    let mut c = common::client(&service).await;
    let tasks: Vec<_> = mixed_tasks(3).into_iter().filter(|(k, _)| k.id().as_str() == "sha256").take(5).collect();
    assert_eq!(tasks.len(), 5);
    let job = common::submit(&mut c, "pending", 2, &tasks).await;
    let page = |token: String| pb::ListPendingTasksRequest { job_id: job.clone(), page_size: 2, page_token: token };
    // Nobody to run them: all queued, none offered, in pages of two.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let r = c.list_pending_tasks(page(token)).await.expect("listed").into_inner();
        for t in &r.tasks {
            assert!(t.submitted_ms > 0 && t.offered_ms == 0 && t.acked_ms == 0 && t.replicas_running == 0, "{t:?}");
            seen.push(t.index);
        }
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    // A worker that takes work and never answers: offered, acknowledged, running.
    let workers = Workers::spawn(&service, "h", 1, Behaviour::Hanging(100));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let running = loop {
        let all = pb::ListPendingTasksRequest { job_id: job.clone(), ..Default::default() };
        let r = c.list_pending_tasks(all).await.expect("listed").into_inner();
        let running: Vec<_> = r.tasks.into_iter().filter(|t| t.acked_ms > 0).collect();
        if !running.is_empty() {
            break running;
        }
        assert!(tokio::time::Instant::now() < deadline, "no task began to run");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    for t in &running {
        assert!(t.offered_ms >= t.submitted_ms && t.acked_ms >= t.offered_ms, "{t:?}");
        assert_eq!((t.replicas_running, t.attempts, t.results), (1, 1, 0), "{t:?}");
        assert_eq!(t.queued_ms, t.offered_ms - t.submitted_ms);
    }
    let unknown =
        pb::ListPendingTasksRequest { job_id: "00000000-0000-0000-0000-000000000000".into(), ..Default::default() };
    assert_eq!(c.list_pending_tasks(unknown).await.expect_err("unknown").code(), Code::NotFound);
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
}
