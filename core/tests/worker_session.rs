//! Worker sessions (the code every real worker runs) against the real
//! coordinator, connected in memory: admission by benchmark, work, results
//! verified; cancellation drops results; bad inputs are caught.

#![cfg(not(target_arch = "wasm32"))]

mod support;

use support::sessions::{hello, pump};

use bytes::Bytes;
use shoal_core::coordinator::{ConnId, Coordinator, CoordinatorConfig, Input, JobSpec, OriginKey, TaskSpec};
use shoal_core::kernels::{KernelSpec, MandelbrotParams, Sha256Params};
use shoal_core::wire::message::{Challenge, HelloAuth, TaskOffer};
use shoal_core::wire::{Envelope, Message, PROTOCOL_VERSION};
use shoal_core::worker::{SessionState, WorkerInput, WorkerOutput, WorkerSession};
use shoal_core::{Digest, Millis, WorkerId};

/// The coordinator's welcome of worker `id`, heartbeats every `interval_ms`.
fn welcome(id: &str, interval_ms: u32) -> WorkerInput {
    let welcome = shoal_core::wire::message::Welcome {
        protocol_version: PROTOCOL_VERSION,
        worker_id: WorkerId::new(id).expect("id"),
        heartbeat_interval_ms: interval_ms,
        max_frame_payload: 1 << 20,
    };
    WorkerInput::Received(Envelope::bare(Message::Welcome(welcome)))
}

#[test]
fn sessions_join_work_and_get_their_results_verified() {
    let mut cfg = CoordinatorConfig::default();
    cfg.profile.benchmark_size = 16;
    cfg.profile.benchmark_max_size = 16;
    cfg.profile.min_mflops = 1;
    let mut c = Coordinator::new(cfg, None, [3; 32]);
    let mut now = Millis(10_000);
    let mut sessions: Vec<WorkerSession> = (0..3).map(|i| WorkerSession::new(hello(&format!("w{i}")))).collect();
    for i in 0..3 {
        c.handle(now, Input::Connected { conn: ConnId(i), origin: OriginKey(i), host: None });
    }
    pump(&mut c, &mut sessions, &mut now);
    assert!(sessions.iter().all(|s| matches!(s.state(), SessionState::Working { .. })));
    assert_eq!(c.workers().iter().filter(|w| w.mflops.is_some()).count(), 3, "all admitted by benchmark");

    let mut tasks = Vec::new();
    for i in 0..6u64 {
        let kernel = KernelSpec::Sha256(Sha256Params { count: 4, message_len: 64 });
        tasks.push(TaskSpec {
            kernel: kernel.clone(),
            inputs: kernel.seeded_inputs(i).into_iter().map(Bytes::from).collect(),
        });
    }
    let m = KernelSpec::Mandelbrot(MandelbrotParams::from_plane(16, 16, -2.0, -1.0, 0.1, 64));
    tasks.push(TaskSpec { kernel: m.clone(), inputs: vec![] });
    let job = c.submit_job(now, JobSpec::new(tasks.clone())).expect("accepted");
    pump(&mut c, &mut sessions, &mut now);
    assert!(c.job_progress(job).expect("known").finished());
    for (t, spec) in c.job_tasks(job).expect("known").iter().zip(&tasks) {
        let refs: Vec<&[u8]> = spec.inputs.iter().map(|b| &b[..]).collect();
        let want = spec.kernel.run_cpu(&refs).expect("runs");
        let got = c.task_result(*t).expect("verified");
        assert_eq!(got.outputs.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), want);
        assert_eq!(got.agreed.len(), 2);
    }
    assert!(sessions.iter().map(WorkerSession::completed).sum::<u64>() >= 14, "benchmarks are not results");
}

#[test]
fn corrupt_inputs_busy_and_cancelled_work_are_handled() {
    let mut token_hello = hello("w");
    token_hello.auth = HelloAuth::Token("shoal_secret-token".into());
    let mut s = WorkerSession::new(token_hello);
    assert!(s.poll_output().is_none(), "the hello waits for the coordinator's challenge");
    let nonce = [9u8; 16];
    s.handle(Millis(0), WorkerInput::Received(Envelope::bare(Message::Challenge(Challenge { nonce }))));
    let Some(WorkerOutput::Send(e)) = s.poll_output() else { panic!("the hello goes out") };
    let Message::Hello(sent) = e.message else { panic!("a hello") };
    let want = shoal_core::auth::hello_proof("shoal_secret-token", &nonce, &sent.worker_id, sent.max_concurrent);
    assert_eq!(sent.auth, HelloAuth::Proof(want), "the token is proven over the challenge, never sent");
    let kernel = KernelSpec::Sha256(Sha256Params { count: 1, message_len: 4 });
    let inputs = vec![Bytes::from_static(b"abcd")];
    let digest = Digest::of_parts(inputs.iter().map(|b| &b[..]));
    let offer = |n: u8, check: u128| TaskOffer {
        assignment: shoal_core::AssignmentId::from_bytes([n; 16]),
        task: shoal_core::TaskId::from_bytes([n; 16]),
        job: shoal_core::JobId::from_bytes([1; 16]),
        kernel: kernel.clone().into(),
        inputs: vec![],
        parts: Vec::new(),
        input_digest: digest,
        input_check: check,
        deadline_ms: 1000,
        exec_budget_ms: 60_000,
    };
    let good = Digest::check_of_parts(inputs.iter().map(|b| &b[..]));
    // Corrupted inputs (a flipped byte): refused with an error, never run.
    let flipped = vec![Bytes::from_static(b"abce")];
    s.handle(
        Millis(0),
        WorkerInput::Received(Envelope { message: Message::TaskOffer(offer(1, good)), attachments: flipped }),
    );
    assert!(matches!(s.poll_output(), Some(WorkerOutput::Send(e)) if matches!(e.message, Message::Error(_))));
    assert_eq!(s.poll_output(), None);
    // Two fit (max_concurrent 2), the third is declined.
    for n in 2..5 {
        s.handle(
            Millis(0),
            WorkerInput::Received(Envelope {
                message: Message::TaskOffer(offer(n, good)),
                attachments: inputs.clone(),
            }),
        );
    }
    let outs: Vec<_> = std::iter::from_fn(|| s.poll_output()).collect();
    assert_eq!(outs.iter().filter(|o| matches!(o, WorkerOutput::Run { .. })).count(), 2);
    assert!(outs.iter().any(|o| matches!(o, WorkerOutput::Send(e) if matches!(e.message, Message::TaskDecline(_)))));
    // A cancelled run's result is dropped.
    let a2 = shoal_core::AssignmentId::from_bytes([2; 16]);
    s.handle(
        Millis(0),
        WorkerInput::Received(Envelope::bare(Message::Cancel(shoal_core::wire::message::Cancel {
            assignment: a2,
            reason: "done".into(),
        }))),
    );
    assert_eq!(s.poll_output(), Some(WorkerOutput::Abort(a2)));
    s.handle(Millis(0), WorkerInput::Finished { assignment: a2, outcome: Ok(vec![Bytes::from_static(b"late")]) });
    assert_eq!(s.poll_output(), None);
    // The other is sent.
    s.handle(
        Millis(0),
        WorkerInput::Finished {
            assignment: shoal_core::AssignmentId::from_bytes([3; 16]),
            outcome: Ok(vec![Bytes::from_static(b"out")]),
        },
    );
    assert!(matches!(s.poll_output(), Some(WorkerOutput::Send(e)) if matches!(e.message, Message::TaskResult(_))));
    assert_eq!(s.running(), 0);
}

#[test]
fn a_suspended_session_ends_instead_of_sending_stale_results() {
    let mut s = WorkerSession::new(hello("tab"));
    let _hello = s.poll_output();
    s.handle(Millis(0), welcome("tab", 1_000));
    let kernel = KernelSpec::Sha256(Sha256Params { count: 1, message_len: 4 });
    let inputs = vec![Bytes::from_static(b"abcd")];
    let a = shoal_core::AssignmentId::from_bytes([7; 16]);
    let offer = TaskOffer {
        assignment: a,
        task: shoal_core::TaskId::from_bytes([7; 16]),
        job: shoal_core::JobId::from_bytes([1; 16]),
        kernel: kernel.into(),
        inputs: vec![],
        parts: Vec::new(),
        input_digest: Digest::of_parts(inputs.iter().map(|b| &b[..])),
        input_check: Digest::check_of_parts(inputs.iter().map(|b| &b[..])),
        deadline_ms: 1000,
        exec_budget_ms: 60_000,
    };
    s.handle(Millis(0), WorkerInput::Received(Envelope { message: Message::TaskOffer(offer), attachments: inputs }));
    let _ack_and_run: Vec<_> = std::iter::from_fn(|| s.poll_output()).collect();
    // Regular ticks: heartbeats, no suspension (the limit is never below 15 s).
    assert_eq!(s.suspension_limit(), shoal_core::worker::MIN_SUSPENSION);
    for t in (500..=10_000).step_by(500) {
        s.handle(Millis(t), WorkerInput::Tick);
    }
    let beats: Vec<_> = std::iter::from_fn(|| s.poll_output()).collect();
    assert_eq!(beats.len(), 10, "one heartbeat a second: {beats:?}");
    assert!(matches!(s.state(), SessionState::Working { .. }));
    // The tab is frozen for 40 s: the session ends, the run is aborted.
    s.handle(Millis(50_000), WorkerInput::Tick);
    let outs: Vec<_> = std::iter::from_fn(|| s.poll_output()).collect();
    assert_eq!(outs.first(), Some(&WorkerOutput::Abort(a)), "{outs:?}");
    assert!(matches!(outs.last(), Some(WorkerOutput::Closed { reason }) if reason.contains("suspended for 40 s")));
    assert_eq!(s.state(), &SessionState::Closed);
    // The result that finishes after the thaw is never sent.
    s.handle(Millis(0), WorkerInput::Finished { assignment: a, outcome: Ok(vec![Bytes::from_static(b"stale")]) });
    assert_eq!(s.poll_output(), None);
}

/// A host that sleeps until `poll_timeout` and ticks then (as both worker
/// hosts do) heartbeats on time and is never taken for suspended.
#[test]
fn a_host_woken_only_at_poll_timeout_heartbeats_on_time() {
    let mut s = WorkerSession::new(hello("sleeper"));
    let _hello = s.poll_output();
    assert_eq!(s.poll_timeout(), None, "nothing to wake for before the welcome");
    s.handle(Millis(5_000), welcome("sleeper", 10_000));
    let mut beats = 0;
    for round in 1..=30u64 {
        let due = s.poll_timeout().expect("a heartbeat is due");
        assert_eq!(due, Millis(5_000 + round * 10_000), "wakes exactly at the next heartbeat");
        s.handle(due, WorkerInput::Tick);
        while let Some(o) = s.poll_output() {
            match o {
                WorkerOutput::Send(e) if matches!(e.message, Message::Heartbeat(_)) => beats += 1,
                other => panic!("only heartbeats: {other:?}"),
            }
        }
    }
    assert_eq!(beats, 30);
    assert!(matches!(s.state(), SessionState::Working { .. }), "ticks a heartbeat apart are no suspension");
}
