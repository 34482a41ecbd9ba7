//! The coordinator service end to end over real sockets on 127.0.0.1 with
//! a real storage file: native workers, gRPC clients, HTTP endpoints.

mod common;

use std::time::Duration;

use common::*;
use shoal_native::grpc::pb;
use shoal_native::worker::Behaviour;
use shoal_native::Service;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_native_workers_verify_jobs_of_every_kernel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::start(test_config(dir.path())).await.expect("service starts");
    let workers = Workers::spawn(&service, "w", 8, Behaviour::Honest);
    let mut c = client(&service).await;
    wait_admitted(&mut c, 8).await;
    let tasks = mixed_tasks(7);
    let job = submit(&mut c, "mixed", 2, &tasks).await;
    let status = wait_finished(&mut c, &job, 60).await;
    assert_eq!(
        (status.verified, status.tasks, status.name.as_str()),
        (tasks.len() as u32, tasks.len() as u32, "mixed")
    );
    let outcomes = results(&mut c, &job).await;
    assert_eq!(outcomes.len(), tasks.len());
    for o in &outcomes {
        let (k, inputs) = &tasks[o.index as usize];
        assert_eq!(o.state(), pb::TaskState::Verified);
        assert!(agrees(k, &o.outputs, &reference(k, inputs)), "task {} agrees with the CPU reference", o.index);
        assert_eq!(o.agreed.len(), 2, "two distinct workers agreed");
        assert_ne!(o.agreed[0], o.agreed[1]);
    }
    // The swarm as operators see it.
    let st = c.get_swarm_status(pb::GetSwarmStatusRequest {}).await.expect("status").into_inner();
    assert_eq!(st.workers_admitted, 8);
    assert!(st.tasks_verified >= tasks.len() as u64);
    assert!(st.ledger_height > 0 && st.ledger_digest.len() == 64);
    let workers_list = c.list_workers(pb::ListWorkersRequest::default()).await.expect("workers").into_inner().workers;
    assert_eq!(workers_list.len(), 8);
    assert!(workers_list.iter().all(|w| w.backend == "Cpu" && w.tier >= 1 && w.mflops > 0));
    let http = format!("http://{}", service.http_addr);
    let stats: serde_json::Value = get_json(&format!("{http}/api/stats")).await;
    assert_eq!(stats["workers_admitted"], 8);
    let metrics = get_text(&format!("{http}/metrics")).await;
    assert!(metrics.contains("shoal_events_total"), "{metrics}");
    assert!(metrics.contains("shoal_dispatch_seconds"), "dispatch latency histogram: {metrics}");
    assert!(metrics.contains("shoal_workers{"), "workers by backend and tier: {metrics}");
    assert_eq!(get_text(&format!("{http}/healthz")).await, "ok (8 workers connected)");
    swarm_json_api(&service, &mut c).await;
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn liars_and_killed_workers_never_get_a_wrong_result_accepted_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::start(test_config(dir.path())).await.expect("service starts");
    let mut workers = Workers::spawn(&service, "honest", 6, Behaviour::Honest);
    workers.add(&service, "liar", 2, Behaviour::Liar(100));
    // One colluder: two of them could out-vote honest workers on a task
    // whose both replicas they got (the ε(f, m) of plain voting, measured
    // in shoal-core's simulator); alone it can never form a quorum.
    workers.add(&service, "colluder", 1, Behaviour::Colluder(100));
    let mut c = client(&service).await;
    // Only the exact kernels: a lie there is provable.
    let tasks: Vec<_> =
        mixed_tasks(11).into_iter().filter(|(k, _)| k.comparator() == shoal_core::kernels::Comparator::Exact).collect();
    let mut more = Vec::new();
    for i in 0..400u64 {
        let k =
            shoal_core::kernels::KernelSpec::Sha256(shoal_core::kernels::Sha256Params { count: 256, message_len: 64 });
        more.push((k.clone(), k.seeded_inputs(1000 + i)));
    }
    let tasks: Vec<_> = tasks.into_iter().chain(more).collect();
    let job = submit(&mut c, "under attack", 2, &tasks).await;
    // Kill two honest workers, each while it holds work (the coordinator
    // counts assignments in flight to it) and the job is unfinished.
    let mut to_kill = vec!["honest0", "honest1"];
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    while !to_kill.is_empty() {
        let listed = c.list_workers(pb::ListWorkersRequest::default()).await.expect("workers").into_inner().workers;
        let s =
            c.get_job(pb::GetJobRequest { job_id: job.clone() }).await.expect("job").into_inner().job.expect("a job");
        assert!(!s.finished, "the job finished before {to_kill:?} were seen holding work");
        for w in listed.iter().filter(|w| w.in_flight > 0) {
            if let Some(pos) = to_kill.iter().position(|n| *n == w.id) {
                workers.kill(to_kill.remove(pos));
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "{to_kill:?} never held work");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let status = wait_finished(&mut c, &job, 90).await;
    assert_eq!(status.verified, tasks.len() as u32, "nothing lost: {status:?}");
    for o in results(&mut c, &job).await {
        let (k, inputs) = &tasks[o.index as usize];
        assert_eq!(o.outputs, reference(k, inputs), "task {}: no wrong result accepted", o.index);
        assert!(o.agreed.iter().all(|w| w.starts_with("honest")), "only honest workers agree: {:?}", o.agreed);
    }
    let st = c.get_swarm_status(pb::GetSwarmStatusRequest {}).await.expect("status").into_inner();
    assert!(st.slashed >= 1, "liars were caught and slashed: {st:?}");
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_on_the_same_data_keeps_results_and_finishes_open_jobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tasks = mixed_tasks(21);
    let (done, open, height) = {
        let service = Service::start(test_config(dir.path())).await.expect("service starts");
        let workers = Workers::spawn(&service, "w", 4, Behaviour::Honest);
        let mut c = client(&service).await;
        let done = submit(&mut c, "done before", 2, &tasks).await;
        wait_finished(&mut c, &done, 60).await;
        workers.stop_all().await;
        // A job nobody runs before the restart.
        let open = submit(&mut c, "open at restart", 2, &tasks).await;
        let st = c.get_swarm_status(pb::GetSwarmStatusRequest {}).await.expect("status").into_inner();
        service.shutdown().await.expect("clean shutdown");
        (done, open, st.ledger_height)
    };
    let service = Service::start(test_config(dir.path())).await.expect("service restarts");
    let mut c = client(&service).await;
    let st = c.get_swarm_status(pb::GetSwarmStatusRequest {}).await.expect("status").into_inner();
    assert_eq!(st.ledger_height, height, "the ledger continues where it stopped");
    assert_eq!(st.tasks_pending, tasks.len() as u64, "the open job's tasks are queued again");
    let before = results(&mut c, &done).await;
    assert_eq!(before.len(), tasks.len(), "verified results survive");
    let workers = Workers::spawn(&service, "v", 4, Behaviour::Honest);
    let status = wait_finished(&mut c, &open, 60).await;
    assert_eq!(status.verified, tasks.len() as u32);
    let mut diffs =
        c.stream_state_diffs(pb::StreamStateDiffsRequest { from_height: 1 }).await.expect("diffs").into_inner();
    let mut prev = String::from("0000000000000000000000000000000000000000000000000000000000000000");
    let mut seen = 0;
    let head = c.get_swarm_status(pb::GetSwarmStatusRequest {}).await.expect("status").into_inner().ledger_height;
    while seen < head {
        let d = diffs.message().await.expect("stream").expect("diff");
        assert_eq!(d.height, seen + 1, "catch-up without gaps or duplicates");
        assert_eq!(d.prev, prev, "every diff chains to the previous one, across the restart");
        prev = d.digest;
        seen = d.height;
    }
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_says_goodbye_to_connected_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::start(test_config(dir.path())).await.expect("service starts");
    let (stop, rx) = tokio::sync::watch::channel(false);
    let id = shoal_core::WorkerId::new("stayer").expect("id");
    let opts = shoal_native::worker::WorkerOptions {
        bind: None,
        url: service.worker_url(),
        ca: None,
        token: Some(shoal_core::auth::derive_token(&service.secret, &id)),
        identity: None,
        profile: None,
        worker_id: id,
        max_concurrent: 1,
        cache_bytes: shoal_native::worker::DEFAULT_CACHE_BYTES,
        cache_dir: None,
        behaviour: Behaviour::Honest,
        reconnect: false,
        executor: shoal_native::worker::Executor::Cpu,
        seed: 1,
    };
    let worker = tokio::spawn(shoal_native::worker::run(opts, rx));
    let mut c = client(&service).await;
    wait_admitted(&mut c, 1).await;
    service.shutdown().await.expect("clean shutdown");
    let report = worker.await.expect("joined").expect("ran");
    assert!(report.last_reason.contains("coordinator shutting down"), "{report:?}");
    drop(stop);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_token_guards_the_control_plane() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.server.api_token = "s3cret-token".into();
    let service = Service::start(cfg).await.expect("service starts");
    let mut anonymous = client(&service).await;
    let err = anonymous.get_swarm_status(pb::GetSwarmStatusRequest {}).await.expect_err("refused without the token");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let channel =
        tonic::transport::Endpoint::from_shared(service.grpc_url()).expect("url").connect().await.expect("connects");
    let mut wrong = pb::shoal_service_client::ShoalServiceClient::with_interceptor(
        channel.clone(),
        shoal_native::grpc::WithToken::new("s3cret-tokeN").expect("ascii"),
    );
    assert_eq!(
        wrong.get_swarm_status(pb::GetSwarmStatusRequest {}).await.expect_err("wrong token").code(),
        tonic::Code::Unauthenticated
    );
    let mut right = pb::shoal_service_client::ShoalServiceClient::with_interceptor(
        channel,
        shoal_native::grpc::WithToken::new("s3cret-token").expect("ascii"),
    );
    assert!(right.get_swarm_status(pb::GetSwarmStatusRequest {}).await.is_ok());
    service.shutdown().await.expect("clean shutdown");
}

/// One HTTP/1.1 exchange over a plain socket; returns the head and the raw body.
async fn http1(addr: std::net::SocketAddr, request: Vec<u8>) -> (String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(&request).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await.expect("in time").expect("read");
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("http response");
    (String::from_utf8_lossy(&buf[..split]).into_owned(), buf[split + 4..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_web_and_cors_serve_browsers_on_the_grpc_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.server.cors_origins = vec!["http://dashboard.example".into()];
    let service = Service::start(cfg).await.expect("service starts");
    // An origin not on the list gets no CORS grant.
    let (head, _) = http1(
        service.grpc_addr,
        format!(
            "OPTIONS /shoal.v1.ShoalService/CancelJob HTTP/1.1\r\nHost: {}\r\nOrigin: http://evil.example\r\n\
             Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type,x-grpc-web\r\n\
             Connection: close\r\n\r\n",
            service.grpc_addr
        )
        .into_bytes(),
    )
    .await;
    assert!(!head.to_ascii_lowercase().contains("access-control-allow-origin"), "{head}");
    // CORS preflight, as a dashboard on another origin sends it.
    let (head, _) = http1(
        service.grpc_addr,
        format!(
            "OPTIONS /shoal.v1.ShoalService/GetSwarmStatus HTTP/1.1\r\nHost: {}\r\nOrigin: http://dashboard.example\r\n\
             Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type,x-grpc-web\r\n\
             Connection: close\r\n\r\n",
            service.grpc_addr
        )
        .into_bytes(),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("access-control-allow-origin: http://dashboard.example"), "{head}");
    // A gRPC-web call over HTTP/1.1: one data frame (flag 0, length 0: an empty Empty).
    let mut req = format!(
        "POST /shoal.v1.ShoalService/GetSwarmStatus HTTP/1.1\r\nHost: {}\r\nContent-Type: application/grpc-web+proto\r\n\
         X-Grpc-Web: 1\r\nOrigin: http://dashboard.example\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
        service.grpc_addr
    )
    .into_bytes();
    req.extend_from_slice(&[0, 0, 0, 0, 0]);
    let (head, body) = http1(service.grpc_addr, req).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("application/grpc-web"), "{head}");
    // The body is chunked; find the trailer frame (flag 0x80) saying grpc-status 0.
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("grpc-status:0") || text.contains("grpc-status: 0"), "{text:?}");
    // The same call on the HTTP port, as the dashboard it serves makes it (same origin).
    let mut req = format!(
        "POST /shoal.v1.ShoalService/ListJobs HTTP/1.1\r\nHost: {}\r\nContent-Type: application/grpc-web+proto\r\n\
         X-Grpc-Web: 1\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
        service.http_addr
    )
    .into_bytes();
    req.extend_from_slice(&[0, 0, 0, 0, 0]);
    let (head, body) = http1(service.http_addr, req).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("grpc-status:0") || text.contains("grpc-status: 0"), "{text:?}");
    service.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_settled_epoch_is_agreed_by_the_settlement_consensus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::start(test_config(dir.path())).await.expect("service starts");
    let workers = Workers::spawn(&service, "w", 2, Behaviour::Honest);
    let mut c = client(&service).await;
    wait_admitted(&mut c, 2).await;
    let start = c.get_consensus(pb::GetConsensusRequest {}).await.expect("consensus").into_inner();
    assert_eq!(start.states.len(), 11, "the machine's states");
    assert_eq!(start.table.len(), 37, "its transition table");
    assert!(start.agreed.is_empty());
    for round in 1..=2u64 {
        let job = submit(&mut c, "work", 2, &mixed_tasks(round * 1000)).await;
        wait_finished(&mut c, &job, 60).await;
        let closed = c.close_epoch(pb::CloseEpochRequest {}).await.expect("close").into_inner();
        let last = closed.epoch.expect("an epoch");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let s = c.get_consensus(pb::GetConsensusRequest {}).await.expect("consensus").into_inner();
            if let Some(a) = s.agreed.iter().find(|a| a.epoch == last.epoch) {
                assert_eq!(a.digest, last.digest, "the agreed digest is the settlement's");
                assert_eq!(a.round, round, "one round per settlement");
                assert!(s.transitions > 0 && !s.recent.is_empty());
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "epoch {} never agreed: {s:?}", last.epoch);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
}

/// A start that fails (its port already taken) leaves nothing behind: the
/// same data folder starts at once on a free port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_holds_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bound");
    let mut cfg = test_config(dir.path());
    cfg.server.grpc = taken.local_addr().expect("addr");
    let err = Service::start(cfg.clone()).await.err().expect("port taken");
    assert!(err.to_string().contains("binding"), "{err}");
    cfg.server.grpc = "127.0.0.1:0".parse().expect("addr");
    let service = Service::start(cfg).await.expect("the storage is free");
    service.shutdown().await.expect("stops");
}

/// A stopped service frees its storage at once, even while clients still
/// hold connections to it: the same data folder starts again right away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_service_frees_its_storage_and_ports_while_clients_linger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = shoal_native::tls::private_pki(dir.path(), &["127.0.0.1"]).expect("a test CA");
    let mut cfg = test_config(&dir.path().join("data"));
    cfg.server.tls.cert.clone_from(&pki.cert);
    cfg.server.tls.key.clone_from(&pki.key);
    let service = Service::start(cfg.clone()).await.expect("starts");
    let mut lingering = Vec::new();
    for _ in 0..3 {
        let channel = shoal_native::grpc::channel(&service.grpc_url(), Some(&pki.ca)).await.expect("https");
        let mut c = shoal_native::grpc::pb::shoal_service_client::ShoalServiceClient::new(channel);
        c.get_swarm_status(pb::GetSwarmStatusRequest {}).await.expect("answers");
        lingering.push(c);
    }
    let grpc = service.grpc_addr;
    service.shutdown().await.expect("stops");
    // The same ports and the same storage, while the old clients still hold
    // their connections.
    cfg.server.grpc = grpc;
    let again = Service::start(cfg).await.expect("the storage and the port are free while old clients linger");
    again.shutdown().await.expect("stops");
    drop(lingering);
}

/// What gRPC tooling expects of the gRPC port, open to every caller even
/// when the API wants a token: `grpc.health.v1` (SERVING while the engine
/// runs, NOT_SERVING after the stop) and server reflection listing the
/// services (`grpcurl list`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer_on_the_grpc_port() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.server.api_token = "health-needs-no-token".into();
    let service = Service::start(cfg).await.expect("starts");
    let channel =
        tonic::transport::Channel::from_shared(service.grpc_url()).expect("url").connect().await.expect("connects");
    let mut health = HealthClient::new(channel.clone());
    for name in ["", "shoal.v1.ShoalService"] {
        let r = health.check(HealthCheckRequest { service: name.into() }).await.expect("health answers").into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{name:?}");
    }
    let unknown = health.check(HealthCheckRequest { service: "no.such.Service".into() }).await;
    assert_eq!(unknown.expect_err("unknown service").code(), tonic::Code::NotFound);
    let mut reflection = ServerReflectionClient::new(channel);
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers =
        reflection.server_reflection_info(tokio_stream::iter([ask])).await.expect("reflection").into_inner();
    let answer = answers.message().await.expect("an answer").expect("one message");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else { panic!("{answer:?}") };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in ["shoal.v1.ShoalService", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    let mut watch =
        health.watch(HealthCheckRequest { service: "shoal.v1.ShoalService".into() }).await.expect("watch").into_inner();
    assert_eq!(watch.message().await.expect("status").expect("one").status, ServingStatus::Serving as i32);
    service.shutdown().await.expect("stops");
    // The last word before the port closed: not serving (or the stream ended with it).
    if let Ok(Some(last)) = watch.message().await {
        assert_eq!(last.status, ServingStatus::NotServing as i32);
    }
}

/// The whole API is never served to the network by accident: bound beyond
/// loopback without `server.api_token`, the start refuses and says why,
/// unless told `server.insecure`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_api_beyond_loopback_needs_to_be_asked_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.server.http = "0.0.0.0:0".parse().expect("addr");
    let err = Service::start(cfg.clone()).await.err().expect("refused");
    assert!(err.to_string().contains("server.api_token") && err.to_string().contains("--insecure"), "{err}");
    cfg.server.insecure = true;
    Service::start(cfg.clone()).await.expect("asked for").shutdown().await.expect("stops");
    cfg.server.insecure = false;
    cfg.server.api_token = "a-token-for-this-test".into();
    Service::start(cfg).await.expect("with a token").shutdown().await.expect("stops");
}

/// The swarm's public JSON, as explorers and scripts poll it.
async fn swarm_json_api(
    service: &Service,
    c: &mut shoal_native::grpc::pb::shoal_service_client::ShoalServiceClient<tonic::transport::Channel>,
) {
    let http = format!("http://{}", service.http_addr);
    let raw = http_get(service.http_addr, "/api/stats", "").await;
    assert!(raw.contains("cache-control: public, max-age=30"), "{raw}");
    let stats = get_json(&format!("{http}/api/stats")).await;
    assert_eq!((stats["active_workers"].as_u64(), stats["workers_admitted"].as_u64()), (Some(8), Some(8)), "{stats}");
    let by_tier: u64 =
        stats["workers_by_tier"].as_object().expect("tiers").values().filter_map(serde_json::Value::as_u64).sum();
    assert_eq!(by_tier, 8, "{stats}");
    assert!(stats["tasks_dispatched"].as_u64() > Some(0) && stats["tasks_received"].as_u64() > Some(0), "{stats}");
    assert!(stats["epoch_tasks"].as_u64() > Some(0) && stats["updated_at"].as_u64() > Some(1_700_000_000), "{stats}");
    assert!(stats["epoch_accuracy"].as_f64().is_some() && stats["uptime"].as_u64().is_some(), "{stats}");
    let status = get_json(&format!("{http}/swarm/status")).await;
    assert_eq!((status["workers_live"].as_u64(), status["shadow_mode"].as_bool()), (Some(8), Some(false)), "{status}");
    let workers = get_json(&format!("{http}/swarm/workers?limit=3")).await;
    assert_eq!(
        (workers["count"].as_u64(), workers["workers"].as_array().map(Vec::len)),
        (Some(8), Some(3)),
        "{workers}"
    );
    let agreed: Vec<u64> =
        workers["workers"].as_array().expect("rows").iter().filter_map(|w| w["agreed"].as_u64()).collect();
    assert!(agreed.windows(2).all(|w| w[0] >= w[1]), "most verified first: {agreed:?}");
    assert_eq!(status_of(&http_get(service.http_addr, "/swarm/workers?limit=lots", "").await), 400);
    let board = get_json(&format!("{http}/swarm/leaderboard")).await;
    assert_eq!(board["entries"][0]["rank"], 1, "{board}");
    assert!(board["entries"][0]["accuracy"].as_f64() > Some(0.0), "{board}");
    let epoch = get_json(&format!("{http}/swarm/epoch")).await;
    assert!(epoch["total_correct"].as_u64() > Some(0) && epoch["accuracy_ppm"].as_u64() == Some(1_000_000), "{epoch}");
    let shadow = get_json(&format!("{http}/swarm/shadow")).await;
    assert!(shadow["compared"].as_u64().is_some(), "{shadow}");
    // What settled epochs paid a worker: nothing until one settles.
    let top = board["entries"][0]["worker_id"].as_str().expect("a worker").to_owned();
    let before = get_json(&format!("{http}/api/rewards?worker={top}")).await;
    assert_eq!(before["payouts"].as_array().map(Vec::len), Some(0), "{before}");
    c.close_epoch(pb::CloseEpochRequest {}).await.expect("settled");
    let after = get_json(&format!("{http}/api/rewards?worker={top}")).await;
    assert!(after["payouts"][0]["amount"].as_str().and_then(|a| a.parse::<u128>().ok()) > Some(0), "{after}");
    assert_eq!(after["earned"], after["payouts"][0]["amount"], "{after}");
    assert_eq!(status_of(&http_get(service.http_addr, "/api/rewards?worker=nobody", "").await), 404);
    assert_eq!(status_of(&http_get(service.http_addr, "/api/rewards", "").await), 400);
}

/// Stake through the API: a staked liar is slashed, forfeits its stake to
/// the epoch, and the workers that exposed it share the bounty.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_staked_liar_forfeits_its_stake_and_its_catchers_get_the_bounty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.coordinator.rewards.min_tasks = 1;
    let service = Service::start(cfg).await.expect("service starts");
    let mut c = client(&service).await;
    let stake: u128 = 5_000_000_000_000_000_000;
    let set = c
        .set_stake(pb::SetStakeRequest { worker_id: "liar0".into(), stake: stake.to_string() })
        .await
        .expect("an admin sets a stake")
        .into_inner();
    assert_eq!(set.stake, stake.to_string());
    c.set_stake(pb::SetStakeRequest { worker_id: "honest0".into(), stake: "7".into() }).await.expect("staked");
    let bad = c.set_stake(pb::SetStakeRequest { worker_id: "liar0".into(), stake: "lots".into() }).await;
    assert_eq!(bad.expect_err("not a number").code(), tonic::Code::InvalidArgument);
    let mut workers = Workers::spawn(&service, "honest", 4, Behaviour::Honest);
    workers.add(&service, "liar", 1, Behaviour::Liar(100));
    wait_admitted(&mut c, 5).await;
    let listed = c.list_workers(pb::ListWorkersRequest::default()).await.expect("workers").into_inner().workers;
    assert_eq!(listed.iter().find(|w| w.id == "liar0").map(|w| w.stake.as_str()), Some(stake.to_string().as_str()));

    let sha = shoal_core::kernels::KernelSpec::Sha256(shoal_core::kernels::Sha256Params { count: 16, message_len: 64 });
    let tasks: Vec<_> = (0..60u64).map(|i| (sha.clone(), sha.seeded_inputs(i))).collect();
    let job = submit(&mut c, "staked", 2, &tasks).await;
    assert_eq!(wait_finished(&mut c, &job, 90).await.verified, tasks.len() as u32);
    let liar = c.get_contributor(pb::GetContributorRequest { key: "liar0".into() }).await.expect("known").into_inner();
    let liar = liar.contributor.expect("a record");
    assert!(liar.slashed && liar.stake == "0", "slashed, its stake taken: {liar:?}");
    // Epochs close every 50 verified tasks here: read them all.
    let epochs = close_epoch_all(&mut c).await;
    let forfeited: u128 = epochs.iter().filter_map(|e| e.forfeited.parse::<u128>().ok()).sum();
    assert_eq!(forfeited, stake, "the stake went to the epoch it was slashed in");
    let payouts: Vec<&pb::Payout> = epochs.iter().flat_map(|e| &e.payouts).collect();
    let bounties: u128 = payouts.iter().filter_map(|p| p.bounty.parse::<u128>().ok()).sum();
    assert!(bounties > 0 && bounties <= stake / 2, "half the stake (bounty_pct 50) goes to the catchers: {bounties}");
    assert!(payouts.iter().all(|p| p.worker != "liar0" || p.amount == "0"), "the liar is paid nothing");
    // Every payout says the stake behind it; each epoch who forfeited what.
    let forfeits: Vec<(&str, &str)> =
        epochs.iter().flat_map(|e| &e.forfeits).map(|f| (f.worker.as_str(), f.amount.as_str())).collect();
    assert_eq!(forfeits, vec![("liar0", stake.to_string().as_str())]);
    assert!(payouts.iter().filter(|p| p.worker == "honest0").all(|p| p.stake == "7"), "{payouts:?}");
    assert!(payouts.iter().filter(|p| p.worker != "honest0").all(|p| p.stake == "0"), "{payouts:?}");
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
}

/// Spot checks and shadow comparison through the service: ringers are
/// replays of verified tasks, honest workers pass every one, and with the
/// CPU reference on every verified task is compared with the truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spot_checks_and_shadow_comparison_run_in_the_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.coordinator.credibility.ringer_pct = 25;
    cfg.coordinator.shadow_cpu_reference = true;
    let service = Service::start(cfg).await.expect("service starts");
    let workers = Workers::spawn(&service, "honest", 4, Behaviour::Honest);
    let mut c = client(&service).await;
    wait_admitted(&mut c, 4).await;
    let sha = shoal_core::kernels::KernelSpec::Sha256(shoal_core::kernels::Sha256Params { count: 8, message_len: 64 });
    let tasks: Vec<_> = (0..160u64).map(|i| (sha.clone(), sha.seeded_inputs(i))).collect();
    let job = submit(&mut c, "spot-checked", 2, &tasks).await;
    assert_eq!(wait_finished(&mut c, &job, 90).await.verified, tasks.len() as u32);
    let stats = get_json(&format!("http://{}/api/stats", service.http_addr)).await;
    assert!(stats["ringers"].as_u64() > Some(0), "replayed tasks were sent as spot checks: {stats}");
    assert_eq!((stats["ringers_failed"].as_u64(), stats["slashed"].as_u64()), (Some(0), Some(0)), "{stats}");
    let shadow = c.get_shadow_stats(pb::GetShadowStatsRequest {}).await.expect("shadow").into_inner();
    assert!(shadow.compared >= tasks.len() as u64, "every verified task compared with the truth: {shadow:?}");
    assert_eq!((shadow.mismatched, shadow.false_positives, shadow.false_negatives), (0, 0, 0), "{shadow:?}");
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
}

/// A webhook that fails once, then takes settlements: each request's head
/// (lower case) and body.
async fn flaky_webhook() -> (std::net::SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 64 * 1024];
            let (head, body) = loop {
                let Ok(n @ 1..) = s.read(&mut chunk).await else { return };
                buf.extend_from_slice(&chunk[..n]);
                let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                let head = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= at + 4 + len {
                    break (head, buf[at + 4..at + 4 + len].to_vec());
                }
            };
            let first = {
                let mut seen = log.lock().expect("log");
                seen.push((head, body));
                seen.len() == 1
            };
            let answer: &[u8] = if first {
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            };
            let _ = s.write_all(answer).await;
        }
    });
    (addr, seen)
}

/// An agreed epoch is posted to the settlement webhook, retried after a
/// failure, signed over its body.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_settled_epoch_is_posted_to_the_webhook_until_it_is_taken() {
    let (hook, seen) = flaky_webhook().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.server.settlement_webhook = format!("http://{hook}/settlements");
    let service = Service::start(cfg).await.expect("service starts");
    let workers = Workers::spawn(&service, "honest", 2, Behaviour::Honest);
    let mut c = client(&service).await;
    wait_admitted(&mut c, 2).await;
    let job = submit(&mut c, "paid", 2, &mixed_tasks(3)).await;
    wait_finished(&mut c, &job, 60).await;
    let epochs = close_epoch_all(&mut c).await;
    let last = epochs.last().expect("an epoch").clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (head, body) = loop {
        let found = seen
            .lock()
            .expect("log")
            .iter()
            .skip(1)
            .find(|(_, b)| serde_json::from_slice::<serde_json::Value>(b).is_ok_and(|v| v["epoch"] == last.epoch))
            .cloned();
        if let Some(found) = found {
            break found;
        }
        assert!(tokio::time::Instant::now() < deadline, "epoch {} never posted again after the failure", last.epoch);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(head.starts_with("post /settlements http/1.1"), "{head}");
    let header = |name: &str| {
        head.lines().find_map(|l| l.strip_prefix(&format!("{name}:"))).map(str::trim).unwrap_or_default().to_owned()
    };
    assert_eq!(header("idempotency-key"), format!("shoal-epoch-{}-{}", last.epoch, last.digest));
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    };
    let key: [u8; 32] = hex(&header("x-shoal-key")).try_into().expect("a key");
    let signature: [u8; 64] =
        hex(header("x-shoal-signature").trim_start_matches("ed25519=")).try_into().expect("a signature");
    assert_eq!(shoal_core::identity::verify_signature(&key, &body, &signature), Ok(()), "signed over the body");
    let doc: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(doc["digest"], last.digest.as_str());
    // The epoch shows settled once file and webhook are done.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed = c.list_epochs(pb::ListEpochsRequest::default()).await.expect("epochs").into_inner();
        let state = listed.epochs.iter().find(|e| e.epoch == last.epoch).map(|e| e.settlement.clone());
        if state.as_deref() == Some("settled") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "epoch {} is {state:?}", last.epoch);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
}

/// Tiers through the service: a native worker's benchmark is grown and
/// timed by the coordinator (here every measured speed is Mid: the Mid
/// threshold is 1 MFLOPS and High is out of reach), its tier is what the
/// API shows, and a job's `min_tier` decides who may run it: a High job
/// waits, saying why, while a Mid job is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn measured_tiers_decide_who_runs_a_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    let p = &mut cfg.coordinator.profile;
    (p.benchmark_size, p.benchmark_max_size, p.benchmark_target_ms) = (16, 256, 50);
    (p.mid_mflops, p.mid_alloc_bytes, p.high_mflops) = (1, 1 << 20, u64::MAX);
    let service = Service::start(cfg).await.expect("service starts");
    let workers = Workers::spawn(&service, "t", 2, Behaviour::Honest);
    let mut c = client(&service).await;
    wait_admitted(&mut c, 2).await;
    let listed = c.list_workers(pb::ListWorkersRequest::default()).await.expect("workers").into_inner().workers;
    assert_eq!(listed.iter().map(|w| w.tier).collect::<Vec<_>>(), vec![2, 2], "{listed:#?}");
    assert!(listed.iter().all(|w| w.mflops > 0), "{listed:#?}");

    let tasks = mixed_tasks(3);
    let header =
        |name: &str, min_tier| pb::JobHeader { redundancy: 2, name: name.into(), min_tier, ..Default::default() };
    let high = submit_with(&mut c, header("needs high", 3), &tasks).await;
    let mid = submit_with(&mut c, header("needs mid", 2), &tasks).await;
    let done = wait_finished(&mut c, &mid, 60).await;
    assert_eq!(done.verified, tasks.len() as u32);
    let waiting = c.get_job(pb::GetJobRequest { job_id: high }).await.expect("job").into_inner().job.expect("a job");
    assert_eq!(waiting.verified, 0, "no worker of tier 3: nothing of the High job ran");
    assert!(waiting.waiting.contains("tier"), "it says why: {:?}", waiting.waiting);
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
}

/// Dead letters across jobs, re-queued after a fix: a job submitted while
/// no worker is connected outlives its time to live and dead-letters;
/// once workers are there, an admin re-runs some of its tasks as a new
/// job (the listing says where each went), then the rest; a re-queued
/// dead letter is not re-queued twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_are_listed_across_jobs_and_requeued_after_a_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.coordinator.task_ttl = shoal_core::Millis(1_500);
    let service = Service::start(cfg).await.expect("service starts");
    let mut c = client(&service).await;
    let sha = shoal_core::kernels::KernelSpec::Sha256(shoal_core::kernels::Sha256Params { count: 4, message_len: 32 });
    let tasks: Vec<_> = (0..3u64).map(|i| (sha.clone(), sha.seeded_inputs(i))).collect();
    let job = submit(&mut c, "before the workers", 2, &tasks).await;
    let status = wait_finished(&mut c, &job, 30).await;
    assert_eq!(status.dead_lettered, 3, "no worker within the time to live");
    let list = |job: &str| pb::ListDeadLettersRequest { job_id: job.into(), ..Default::default() };
    let all = c.list_dead_letters(list("")).await.expect("listed").into_inner().dead_letters;
    assert_eq!(
        all.iter().map(|d| (d.job_id.as_str(), d.index)).collect::<Vec<_>>(),
        vec![(job.as_str(), 0), (job.as_str(), 1), (job.as_str(), 2)]
    );
    assert!(all.iter().all(|d| !d.reason.is_empty() && d.requeued_job_id.is_empty()), "{all:?}");
    let paged =
        c.list_dead_letters(pb::ListDeadLettersRequest { page_size: 2, ..list("") }).await.expect("page").into_inner();
    assert_eq!(paged.dead_letters.len(), 2);
    let rest = pb::ListDeadLettersRequest { page_token: paged.next_page_token, page_size: 2, ..list("") };
    let rest = c.list_dead_letters(rest).await.expect("page").into_inner();
    assert_eq!((rest.dead_letters.len(), rest.dead_letters[0].index, rest.next_page_token.as_str()), (1, 2, ""));

    // The fix: workers. Tasks 0 and 2 first.
    let workers = Workers::spawn(&service, "w", 2, Behaviour::Honest);
    wait_admitted(&mut c, 2).await;
    let requeue = |indices: Vec<u32>| pb::RequeueDeadLettersRequest { job_id: job.clone(), indices };
    let first = c.requeue_dead_letters(requeue(vec![2, 0])).await.expect("re-queued").into_inner();
    assert_eq!(first.tasks, 2);
    let done = wait_finished(&mut c, &first.job_id, 60).await;
    assert_eq!((done.verified, done.name.as_str()), (2, "requeue of before the workers"));
    let outcomes = results(&mut c, &first.job_id).await;
    for (o, original) in outcomes.iter().zip([0usize, 2]) {
        let (k, inputs) = &tasks[original];
        assert!(agrees(k, &o.outputs, &reference(k, inputs)), "re-run task {} is task {original}", o.index);
        // Its lifecycle: queued, offered, acknowledged, ended, in order,
        // the durations between them, and the polo score of those.
        let stamps = [o.submitted_ms, o.offered_ms, o.acked_ms, o.ended_ms];
        assert!(stamps[0] > 0 && stamps.windows(2).all(|w| w[0] <= w[1]), "{o:?}");
        assert_eq!(
            (o.queued_ms, o.staged_ms, o.running_ms),
            (stamps[1] - stamps[0], stamps[2] - stamps[1], stamps[3] - stamps[2])
        );
        let polo = o.polo.as_ref().expect("a polo score");
        assert!(polo.reward >= 1 && polo.efficiency >= 0.4 && polo.efficiency <= 1.0, "{polo:?}");
    }
    // A dead letter never offered: queued from submission to its end, nothing staged or run.
    let never = results(&mut c, &job).await;
    assert!(never.iter().all(|o| o.offered_ms == 0 && o.running_ms == 0 && o.queued_ms >= 1_500), "{never:?}");
    let again = c.requeue_dead_letters(requeue(vec![0])).await.expect_err("already re-queued");
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
    let listed = c.list_dead_letters(list(&job)).await.expect("listed").into_inner().dead_letters;
    let went: Vec<(u32, &str, u32)> =
        listed.iter().map(|d| (d.index, d.requeued_job_id.as_str(), d.requeued_index)).collect();
    assert_eq!(went, vec![(0, first.job_id.as_str(), 0), (1, "", 0), (2, first.job_id.as_str(), 1)]);
    // The rest, then nothing is left.
    let second = c.requeue_dead_letters(requeue(vec![])).await.expect("re-queued").into_inner();
    assert_eq!(second.tasks, 1);
    assert_eq!(wait_finished(&mut c, &second.job_id, 60).await.verified, 1);
    let none = c.requeue_dead_letters(requeue(vec![])).await.expect("nothing").into_inner();
    assert_eq!((none.tasks, none.job_id.as_str()), (0, ""));
    let bad = c.requeue_dead_letters(requeue(vec![7])).await.expect_err("not a dead letter");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
}
