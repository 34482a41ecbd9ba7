//! Bad input over real sockets: garbage, oversize lengths, wrong tokens,
//! results for tasks never assigned, replayed results, a thousand
//! connections opened and dropped, a worker that stops reading. Each is
//! refused or dropped with a clear reason and the coordinator keeps serving
//! everyone else.

mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use futures_util::{SinkExt, StreamExt};
use shoal_core::auth::derive_token;
use shoal_core::benchmark::CpuAnswer;
use shoal_core::kernels::{KernelSpec, Sha256Params};
use shoal_core::wire::message::{ErrorCode, Hello, HelloAuth, MessageDecoder, WireLimits};
use shoal_core::wire::{Envelope, Message, PROTOCOL_VERSION};
use shoal_core::{AssignmentId, WorkerId};
use shoal_native::grpc::pb;
use shoal_native::worker::{cpu_device, Behaviour};
use shoal_native::Service;
use tokio_tungstenite::tungstenite::Message as WsMessage;

async fn send(ws: &mut Ws, envelopes: &[Envelope]) {
    let mut buf = BytesMut::new();
    for e in envelopes {
        e.encode_into(&WireLimits::default(), &mut buf).expect("encodes");
    }
    ws.send(WsMessage::Binary(buf.freeze())).await.expect("sent");
}

/// Everything the coordinator sends until it closes the connection or `secs` pass.
async fn receive(ws: &mut Ws, secs: u64) -> (Vec<Envelope>, bool) {
    let mut dec = MessageDecoder::new(WireLimits::default()).expect("decoder");
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(WsMessage::Binary(b)))) => {
                dec.push_bytes(b);
                while let Ok(Some(e)) = dec.next_envelope() {
                    out.push(e);
                }
            }
            Ok(Some(Ok(WsMessage::Close(_)) | Err(_)) | None) => return (out, true),
            Ok(Some(Ok(_))) => {}
            Err(_) => return (out, false),
        }
    }
}

fn error_codes(envs: &[Envelope]) -> Vec<ErrorCode> {
    envs.iter().filter_map(|e| if let Message::Error(m) = &e.message { Some(m.code) } else { None }).collect()
}

/// A hello proving `token` over the connection's challenge, as a worker
/// session sends it.
fn hello(id: &str, token: &str, nonce: &[u8; 16]) -> Envelope {
    let worker_id = WorkerId::new(id).expect("id");
    Envelope::bare(Message::Hello(Box::new(Hello {
        protocol_version: PROTOCOL_VERSION,
        auth: HelloAuth::Proof(shoal_core::auth::hello_proof(token, nonce, &worker_id, 4)),
        worker_id,
        device: cpu_device(),
        software: "test".into(),
        max_concurrent: 4,
        cache_bytes: 0,
        held: Vec::new(),
    })))
}

/// Answers `e`: an offer (runs its kernel, sends the ack and the result),
/// a benchmark run (the ack and the commitment; the answer is kept in
/// `bench`) or its challenge (the reveal). Returns what it sent last and
/// whether that ended a benchmark run.
async fn answer(ws: &mut Ws, e: &Envelope, bench: &mut Option<CpuAnswer>) -> Option<(Envelope, bool)> {
    let ack = |assignment| Envelope::bare(Message::TaskAck(shoal_core::wire::message::TaskAck { assignment }));
    match &e.message {
        Message::TaskOffer(o) => {
            let refs: Vec<&[u8]> = e.attachments.iter().map(|b| &b[..]).collect();
            let out: Vec<Bytes> = o.kernel.run_cpu(&refs).expect("runs").into_iter().map(Bytes::from).collect();
            let result = Envelope::task_result(o.assignment, out);
            send(ws, &[ack(o.assignment), result.clone()]).await;
            Some((result, false))
        }
        Message::BenchmarkOffer(b) => {
            let a = CpuAnswer::run(b).expect("a benchmark");
            send(ws, &[ack(b.assignment), a.commit()]).await;
            *bench = Some(a);
            None
        }
        Message::BenchmarkChallenge(c) => {
            let reveal = bench.take()?.reveal(c);
            send(ws, std::slice::from_ref(&reveal)).await;
            Some((reveal, true))
        }
        _ => None,
    }
}

/// Answers offers correctly until `want` non-benchmark offers were answered; returns those results.
async fn work(ws: &mut Ws, want: usize) -> Vec<Envelope> {
    let mut dec = MessageDecoder::new(WireLimits::default()).expect("decoder");
    let mut answered = Vec::new();
    let mut bench = None;
    while answered.len() < want {
        let Some(Ok(WsMessage::Binary(b))) =
            tokio::time::timeout(Duration::from_secs(20), ws.next()).await.expect("in time")
        else {
            continue;
        };
        dec.push_bytes(b);
        while let Ok(Some(e)) = dec.next_envelope() {
            if let Some((result, false)) = answer(ws, &e, &mut bench).await {
                answered.push(result);
            }
        }
    }
    answered
}

/// A thousand connections opened and dropped, some mid-frame: each is
/// counted while open and forgotten once gone.
async fn dropped_connections_are_forgotten(service: &Service) {
    // Every connection the caller opened is closed by now, though the
    // server may still be letting the last one go: the count is first
    // seen back at zero.
    let gauge = &service.engine.gauges.connections;
    let settled = |what: &'static str| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while gauge.load(std::sync::atomic::Ordering::Relaxed) != 0 {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    settled("the refused connections are still counted as open").await;
    for i in 0..1000 {
        let mut ws = open(service).await;
        if i % 3 == 0 {
            let _ = ws.send(WsMessage::Binary(Bytes::from_static(&[0, 0, 0, 16, 0, 0, 1]))).await;
        }
        drop(ws);
    }
    settled("dropped connections are still counted as open").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_peers_are_refused_with_reasons_and_the_rest_keep_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::start(test_config(dir.path())).await.expect("service starts");
    let mut c = client(&service).await;

    // Garbage: an unknown frame type.
    let mut ws = open(&service).await;
    ws.send(WsMessage::Binary(Bytes::from_static(&[0, 0, 0, 99, 0, 0, 0, 1, 7]))).await.expect("sent");
    let (got, closed) = receive(&mut ws, 5).await;
    assert_eq!(error_codes(&got), vec![ErrorCode::Malformed], "{got:?}");
    assert!(closed);

    // A declared length beyond the cap.
    let mut ws = open(&service).await;
    ws.send(WsMessage::Binary(Bytes::from_static(&[0, 0, 0, 16, 0xFF, 0xFF, 0xFF, 0xFF]))).await.expect("sent");
    let (got, closed) = receive(&mut ws, 5).await;
    assert_eq!(error_codes(&got), vec![ErrorCode::TooLarge], "{got:?}");
    assert!(closed);

    // Before its hello a stranger is held to 64 KiB: one bigger frame is
    // refused before it is read, and so are smaller ones adding up to more
    // (a frame header declaring big attachments, then their bytes).
    let mut ws = open(&service).await;
    ws.send(WsMessage::Binary(Bytes::from(vec![0u8; 100 * 1024]))).await.expect("sent");
    let (got, closed) = receive(&mut ws, 5).await;
    assert_eq!(error_codes(&got), vec![ErrorCode::TooLarge], "{got:?}");
    assert!(closed);
    let mut ws = open(&service).await;
    let mut declared = vec![0, 0, 0, 16, 0, 0x20, 0, 0]; // a frame of 2 MiB to come
    declared.resize(declared.len() + 40 * 1024, 0);
    ws.send(WsMessage::Binary(Bytes::from(declared))).await.expect("sent");
    let _ = ws.send(WsMessage::Binary(Bytes::from(vec![0u8; 40 * 1024]))).await;
    let (got, closed) = receive(&mut ws, 5).await;
    assert_eq!(error_codes(&got), vec![ErrorCode::TooLarge], "{got:?}");
    assert!(closed);

    // Text frames are not the protocol.
    let mut ws = open(&service).await;
    ws.send(WsMessage::Text("hello?".into())).await.expect("sent");
    let (got, closed) = receive(&mut ws, 5).await;
    assert_eq!(error_codes(&got), vec![ErrorCode::Malformed]);
    assert!(closed);

    // A ping is answered with its payload; the connection stays open.
    let mut ws = open(&service).await;
    ws.send(WsMessage::Ping(Bytes::from_static(b"still there?"))).await.expect("sent");
    let pong = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("answered in time");
    assert!(matches!(pong, Some(Ok(WsMessage::Pong(ref p))) if &p[..] == b"still there?"), "{pong:?}");
    let (got, closed) = receive(&mut ws, 1).await;
    assert!(got.is_empty() && !closed, "{got:?}");
    drop(ws);

    // A wrong token.
    let (mut ws, nonce) = open_challenged(&service).await;
    send(&mut ws, &[hello("mallory", "shoal_not-a-token", &nonce)]).await;
    let (got, closed) = receive(&mut ws, 5).await;
    assert_eq!(error_codes(&got), vec![ErrorCode::Unauthorized], "{got:?}");
    assert!(closed);

    // A well-formed message before the hello: refused, and counted like
    // any refusal (the wrong token above was one too).
    let refused = |m: &str| counter(m, r#"shoal_events_total{kind="worker_refused"}"#);
    let refused_before = refused(&shoal_native::metrics::render(None));
    let mut ws = open(&service).await;
    let ack = shoal_core::wire::message::TaskAck { assignment: AssignmentId::from_bytes([1; 16]) };
    send(&mut ws, &[Envelope::bare(Message::TaskAck(ack))]).await;
    let (got, closed) = receive(&mut ws, 5).await;
    assert_eq!(error_codes(&got), vec![ErrorCode::Malformed], "{got:?}");
    assert!(closed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while refused(&shoal_native::metrics::render(None)) < refused_before + 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "a violation before the hello is counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    dropped_connections_are_forgotten(&service).await;

    // A real worker, then results for assignments it never had, and a replay.
    let id = WorkerId::new("eve").expect("id");
    let (mut ws, nonce) = open_challenged(&service).await;
    send(&mut ws, &[hello("eve", &derive_token(&service.secret, &id), &nonce)]).await;
    let honest = Workers::spawn(&service, "h", 3, Behaviour::Honest);
    let kernel = KernelSpec::Sha256(Sha256Params { count: 2, message_len: 32 });
    let tasks: Vec<_> = (0..30u64).map(|i| (kernel.clone(), kernel.seeded_inputs(i))).collect();
    let job = submit(&mut c, "with a replayer", 2, &tasks).await;
    let answered = work(&mut ws, 1).await;
    let stale_before =
        c.get_swarm_status(pb::GetSwarmStatusRequest {}).await.expect("status").into_inner().stale_results;
    let forged = Envelope::task_result(AssignmentId::from_bytes([0xAB; 16]), vec![Bytes::from_static(b"forged")]);
    send(&mut ws, &[forged, answered[0].clone()]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let st = c.get_swarm_status(pb::GetSwarmStatusRequest {}).await.expect("status").into_inner();
        if st.stale_results >= stale_before + 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "forged and replayed results refused: {st:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Everyone else kept working: the job completes, correct.
    drop(ws);
    let status = wait_finished(&mut c, &job, 60).await;
    assert_eq!(status.verified, 30);
    for o in results(&mut c, &job).await {
        let (k, inputs) = &tasks[o.index as usize];
        assert_eq!(o.outputs, reference(k, inputs));
    }
    // The three protocol violations above (garbage, an oversized length,
    // text) are counted under their own reason.
    let protocol = counter(&shoal_native::metrics::render(None), r#"shoal_ws_disconnects_total{reason="protocol"}"#);
    assert!(protocol >= 3.0, "protocol errors are counted: {protocol}");
    honest.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_that_stops_reading_is_disconnected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.server.write_stall_ms = 500;
    let service = Service::start(cfg).await.expect("service starts");
    let mut events = service.engine.events();
    let mut c = client(&service).await;
    let id = WorkerId::new("sloth").expect("id");
    let (mut ws, nonce) = open_challenged(&service).await;
    send(&mut ws, &[hello("sloth", &derive_token(&service.secret, &id), &nonce)]).await;
    // It answers the benchmark (and is admitted), then reads nothing more.
    let mut dec = MessageDecoder::new(WireLimits::default()).expect("decoder");
    let (mut benchmarked, mut bench) = (false, None);
    while !benchmarked {
        let Some(Ok(WsMessage::Binary(b))) =
            tokio::time::timeout(Duration::from_secs(20), ws.next()).await.expect("in time")
        else {
            panic!("the connection ended before the benchmark");
        };
        dec.push_bytes(b);
        while let Ok(Some(e)) = dec.next_envelope() {
            benchmarked |= matches!(answer(&mut ws, &e, &mut bench).await, Some((_, true)));
        }
    }
    // Inputs of 8 MiB: the offers it is given (4 at a time) are more than
    // the sockets' buffers hold.
    let kernel = KernelSpec::Sha256(Sha256Params { count: 131_072, message_len: 64 });
    let tasks: Vec<_> = (0..12u64).map(|i| (kernel.clone(), kernel.seeded_inputs(i))).collect();
    submit(&mut c, "for a worker that stops reading", 1, &tasks).await;
    let gauge = &service.engine.gauges.connections;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while gauge.load(std::sync::atomic::Ordering::Relaxed) > 0 {
        assert!(tokio::time::Instant::now() < deadline, "a worker that reads nothing keeps its connection");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(shoal_native::metrics::render(None).contains(r#"reason="stalled""#), "counted as stalled");
    // And it left for that reason, not as a plain closed connection.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let reason = loop {
        let left =
            tokio::time::timeout_at(deadline, events.recv()).await.expect("the worker-left event").expect("event");
        if let shoal_core::coordinator::Event::WorkerLeft { worker, reason } = left.event {
            if worker == id {
                break reason;
            }
        }
    };
    assert!(reason.contains("took nothing"), "left because it stalled: {reason}");
    drop(ws);
    service.shutdown().await.expect("clean shutdown");
}

/// A job's name is capped (a 40 MB name once made every later `ListJobs`
/// fail): an oversized one is refused with the limit named, and listing
/// keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversized_job_name_is_refused_and_listing_keeps_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::start(test_config(dir.path())).await.expect("service starts");
    let mut c = client(&service).await;
    let kernel = KernelSpec::Sha256(Sha256Params { count: 1, message_len: 8 });
    let job = |name: String| {
        let header = pb::JobHeader { redundancy: 1, name, ..Default::default() };
        let task = pb::Task {
            kernel: Some(shoal_native::grpc::kernel_to_pb(&kernel)),
            inputs: kernel.seeded_inputs(1).into_iter().map(Bytes::from).collect(),
            parts: Vec::new(),
        };
        tokio_stream::iter([
            pb::SubmitJobRequest { part: Some(pb::submit_job_request::Part::Header(header)) },
            pb::SubmitJobRequest { part: Some(pb::submit_job_request::Part::Task(task)) },
        ])
    };
    let limit = shoal_native::grpc::MAX_JOB_NAME_BYTES;
    let err = c.submit_job(job("n".repeat(limit + 1))).await.expect_err("an oversized name is refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains(&format!("at most {limit} bytes")), "{}", err.message());
    c.submit_job(job("n".repeat(limit))).await.expect("a name at the limit is accepted");
    let jobs = c.list_jobs(pb::ListJobsRequest::default()).await.expect("listing works").into_inner().jobs;
    assert_eq!(jobs.len(), 1);
    service.shutdown().await.expect("clean shutdown");
}

/// Guests filling `max_workers` once refused a worker with a valid token
/// ("at capacity"); guests now have caps of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guests_never_take_the_room_of_workers_with_a_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.coordinator.allow_guests = true;
    cfg.coordinator.max_workers = 1;
    cfg.coordinator.max_guests = 3;
    cfg.coordinator.max_guests_per_origin = 3;
    let service = Service::start(cfg).await.expect("service starts");
    let guest = || {
        let Message::Hello(mut h) = hello("tab", "", &[0; 16]).message else { unreachable!() };
        h.auth = HelloAuth::Guest;
        Envelope::bare(Message::Hello(h))
    };
    let mut tabs = Vec::new();
    for _ in 0..3 {
        let mut ws = open(&service).await;
        send(&mut ws, &[guest()]).await;
        let (got, closed) = receive(&mut ws, 2).await;
        assert!(got.iter().any(|e| matches!(e.message, Message::Welcome(_))) && !closed, "a guest joins: {got:?}");
        tabs.push(ws);
    }
    let mut ws = open(&service).await;
    send(&mut ws, &[guest()]).await;
    let (got, closed) = receive(&mut ws, 5).await;
    assert_eq!(error_codes(&got), vec![ErrorCode::Busy], "a fourth guest is over the guests' cap: {got:?}");
    assert!(closed);
    // The worker with a token still joins, and works.
    let workers = Workers::spawn(&service, "operator", 1, Behaviour::Honest);
    let mut c = client(&service).await;
    let kernel = KernelSpec::Sha256(Sha256Params { count: 2, message_len: 16 });
    let tasks: Vec<_> = (0..4u64).map(|i| (kernel.clone(), kernel.seeded_inputs(i))).collect();
    let job = submit(&mut c, "for the operator", 1, &tasks).await;
    assert_eq!(wait_finished(&mut c, &job, 30).await.verified, 4);
    drop(tabs);
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
}

/// A job carrying more input bytes than `coordinator.max_job_input_bytes`
/// is refused as its tasks stream in, with the limit named; a job under it
/// is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_over_its_input_limit_is_refused_with_the_limit_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.coordinator.max_job_input_bytes = 1 << 20;
    let service = Service::start(cfg).await.expect("service starts");
    let mut c = client(&service).await;
    // 512 KiB of inputs a task.
    let kernel = KernelSpec::Sha256(Sha256Params { count: 8_192, message_len: 64 });
    let job = |n: u64| {
        let mut msgs = vec![pb::SubmitJobRequest {
            part: Some(pb::submit_job_request::Part::Header(pb::JobHeader { redundancy: 1, ..Default::default() })),
        }];
        for i in 0..n {
            msgs.push(pb::SubmitJobRequest {
                part: Some(pb::submit_job_request::Part::Task(pb::Task {
                    kernel: Some(shoal_native::grpc::kernel_to_pb(&kernel)),
                    inputs: kernel.seeded_inputs(i).into_iter().map(Bytes::from).collect(),
                    parts: Vec::new(),
                })),
            });
        }
        tokio_stream::iter(msgs)
    };
    let err = c.submit_job(job(3)).await.expect_err("1.5 MiB is over the limit");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(err.message().contains("max_job_input_bytes"), "{}", err.message());
    c.submit_job(job(2)).await.expect("1 MiB is at the limit");
    service.shutdown().await.expect("clean shutdown");
}

/// The hello proves the token without revealing it: a hello recorded on
/// one connection and replayed on another is refused, as is a token sent
/// in the clear, and the worker whose hello was copied keeps its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recorded_hello_replayed_elsewhere_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::start(test_config(dir.path())).await.expect("service starts");
    let id = WorkerId::new("alice").expect("id");
    let token = derive_token(&service.secret, &id);
    let (mut alice, nonce) = open_challenged(&service).await;
    let recorded = hello("alice", &token, &nonce);
    send(&mut alice, std::slice::from_ref(&recorded)).await;
    let (got, closed) = receive(&mut alice, 2).await;
    assert!(!closed && got.iter().any(|e| matches!(e.message, Message::Welcome(_))), "alice joins: {got:?}");

    let (mut mallory, other) = open_challenged(&service).await;
    assert_ne!(nonce, other, "each connection has its own challenge");
    send(&mut mallory, std::slice::from_ref(&recorded)).await;
    let (got, closed) = receive(&mut mallory, 5).await;
    assert_eq!(error_codes(&got), vec![ErrorCode::Unauthorized], "a replayed hello is refused: {got:?}");
    assert!(closed);

    let (mut clear, _) = open_challenged(&service).await;
    let Message::Hello(mut h) = recorded.message else { unreachable!() };
    h.auth = HelloAuth::Token(token);
    send(&mut clear, &[Envelope::bare(Message::Hello(h))]).await;
    let (got, closed) = receive(&mut clear, 5).await;
    assert_eq!(error_codes(&got), vec![ErrorCode::Unauthorized], "a token in the clear is refused: {got:?}");
    assert!(closed);

    let (_, closed) = receive(&mut alice, 1).await;
    assert!(!closed, "alice keeps her session");
    let workers =
        client(&service).await.list_workers(pb::ListWorkersRequest::default()).await.expect("listed").into_inner();
    assert!(workers.workers.iter().any(|w| w.id == "alice"), "{workers:?}");
    service.shutdown().await.expect("stops");
}

/// A CPU kernel that would run for hours is abandoned when the coordinator
/// stops waiting: the Mandelbrot tile at the iteration cap inside the set
/// (2^36 iterations) times out at its execution budget, the coordinator
/// cancels it, the native worker gives the run up, and the same worker
/// then verifies an ordinary job.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cpu_run_that_would_take_hours_is_abandoned_at_its_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.coordinator.exec_timeout_ceiling = shoal_core::Millis(3_000);
    let service = Service::start(cfg).await.expect("service starts");
    let mut c = client(&service).await;
    let workers = Workers::spawn(&service, "cpu", 1, Behaviour::Honest);
    wait_admitted(&mut c, 1).await;
    let huge = KernelSpec::Mandelbrot(shoal_core::kernels::MandelbrotParams::from_plane(
        256,
        256,
        -0.1,
        -0.1,
        0.0001,
        1 << 20,
    ));
    let hours = submit(&mut c, "hours of CPU", 1, &[(huge, vec![])]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = c.get_swarm_status(pb::GetSwarmStatusRequest {}).await.expect("status").into_inner();
        if status.timeouts > 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the run never timed out: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kernel = KernelSpec::Sha256(Sha256Params { count: 4, message_len: 32 });
    let tasks: Vec<_> = (0..4u64).map(|i| (kernel.clone(), kernel.seeded_inputs(i))).collect();
    let ordinary = submit(&mut c, "ordinary", 1, &tasks).await;
    let done = wait_finished(&mut c, &ordinary, 60).await;
    assert_eq!(done.verified, 4, "the worker is free again: {done:?}");
    c.cancel_job(pb::CancelJobRequest { job_id: hours }).await.expect("cancelled");
    let reports = workers.stop_all().await;
    assert_eq!(reports.iter().map(|r| r.abandoned).sum::<u64>(), 1, "the run was given up: {reports:?}");
    service.shutdown().await.expect("stops");
}

/// Tasks nobody can run do not stand in front of tasks somebody can
/// (before: a job of 257 or more such tasks stopped every later job of
/// equal priority), and the job says why it waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_nobody_can_run_blocks_no_later_job_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::start(test_config(dir.path())).await.expect("service starts");
    let mut c = client(&service).await;
    let workers = Workers::spawn(&service, "cpu", 2, Behaviour::Honest);
    wait_admitted(&mut c, 2).await;
    let kernel = KernelSpec::Sha256(Sha256Params { count: 2, message_len: 32 });
    let mut msgs = vec![pb::SubmitJobRequest {
        part: Some(pb::submit_job_request::Part::Header(pb::JobHeader {
            redundancy: 2,
            min_tier: 3,
            name: "for tier 3 only".into(),
            ..Default::default()
        })),
    }];
    for i in 0..400u64 {
        msgs.push(pb::SubmitJobRequest {
            part: Some(pb::submit_job_request::Part::Task(pb::Task {
                kernel: Some(shoal_native::grpc::kernel_to_pb(&kernel)),
                inputs: kernel.seeded_inputs(i).into_iter().map(Bytes::from).collect(),
                parts: Vec::new(),
            })),
        });
    }
    let blocked = c.submit_job(tokio_stream::iter(msgs)).await.expect("accepted").into_inner();
    assert!(blocked.waiting.contains("tier 3"), "accepted, and says why it waits: {blocked:?}");
    let tasks: Vec<_> = (0..10u64).map(|i| (kernel.clone(), kernel.seeded_inputs(1_000 + i))).collect();
    let open = submit(&mut c, "anyone can run it", 2, &tasks).await;
    let done = wait_finished(&mut c, &open, 60).await;
    assert_eq!(done.verified, 10, "{done:?}");
    let status = c
        .get_job(pb::GetJobRequest { job_id: blocked.job_id.clone() })
        .await
        .expect("known")
        .into_inner()
        .job
        .expect("a job");
    assert!(!status.finished && status.waiting.contains("tier 3"), "{status:?}");
    workers.stop_all().await;
    service.shutdown().await.expect("stops");
}

/// Workers that fail every task cannot sink honest jobs through the real
/// service (before: three such connections dead-lettered 15 of 20 honest
/// tasks as poison).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_that_fail_everything_dead_letter_no_honest_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::start(test_config(dir.path())).await.expect("service starts");
    let mut c = client(&service).await;
    let mut workers = Workers::spawn(&service, "failer", 3, Behaviour::Failer(100));
    wait_admitted(&mut c, 3).await;
    workers.add(&service, "honest", 2, Behaviour::Honest);
    wait_admitted(&mut c, 5).await;
    let kernel = KernelSpec::Sha256(Sha256Params { count: 2, message_len: 32 });
    let tasks: Vec<_> = (0..20u64).map(|i| (kernel.clone(), kernel.seeded_inputs(i))).collect();
    let job = submit(&mut c, "honest work", 2, &tasks).await;
    let done = wait_finished(&mut c, &job, 120).await;
    assert_eq!((done.verified, done.dead_lettered), (20, 0), "{done:?}");
    workers.stop_all().await;
    service.shutdown().await.expect("stops");
}
