//! The coordinator state machine through its public API, driven by hand on
//! a fake clock: admission, auth, dispatch rules, watchdog, dead letters,
//! poison guard, stale results, homogeneous redundancy, cancellation,
//! epochs, adaptive replication and output ordering.

#![cfg(not(target_arch = "wasm32"))]

use bytes::Bytes;
use shoal_core::auth::{derive_token, MasterSecret};
use shoal_core::coordinator::{
    ConnId, Coordinator, CoordinatorConfig, Event, Input, JobSpec, OriginKey, Output, TaskPhase, TaskSpec, Tier,
};
use shoal_core::kernels::{KernelId, KernelSpec, MatmulParams, Sha256Params};
use shoal_core::wire::message::{
    Backend, DeviceInfo, DeviceType, ErrorCode, Hello, HelloAuth, TaskAck, TaskDecline, TaskOffer,
};
use shoal_core::wire::{Envelope, Message, PROTOCOL_VERSION};
use shoal_core::{Millis, WorkerId};

struct Harness {
    c: Coordinator,
    now: Millis,
}

fn config() -> CoordinatorConfig {
    let mut cfg = CoordinatorConfig::default();
    cfg.profile.benchmark_size = 16;
    cfg.profile.min_mflops = 1;
    cfg.epoch.every = None;
    cfg.rewards.min_tasks = 1;
    cfg
}

fn device(backend: Backend) -> DeviceInfo {
    DeviceInfo {
        backend,
        device_type: DeviceType::Cpu,
        vendor: "test".into(),
        name: "test".into(),
        driver: "test".into(),
        max_buffer_bytes: 1 << 30,
        max_storage_binding_bytes: 1 << 27,
        max_workgroup_invocations: 256,
        kernels: KernelId::ALL.to_vec(),
    }
}

fn answer(offer: &TaskOffer, inputs: &[Bytes]) -> Vec<Bytes> {
    let refs: Vec<&[u8]> = inputs.iter().map(|b| &b[..]).collect();
    offer.kernel.run_cpu(&refs).expect("valid offer").into_iter().map(Bytes::from).collect()
}

fn result_env(offer: &TaskOffer, outputs: Vec<Bytes>) -> Envelope {
    Envelope::task_result(offer.assignment, outputs)
}

fn sha_job(n: usize, redundancy: u8) -> JobSpec {
    let tasks = (0..n)
        .map(|i| {
            let kernel = KernelSpec::Sha256(Sha256Params { count: 2, message_len: 8 });
            let inputs = kernel.seeded_inputs(i as u64).into_iter().map(Bytes::from).collect();
            TaskSpec { kernel, inputs }
        })
        .collect();
    let mut spec = JobSpec::new(tasks);
    spec.redundancy = Some(redundancy);
    spec
}

impl Harness {
    fn new(cfg: CoordinatorConfig, secret: Option<MasterSecret>) -> Self {
        Harness { c: Coordinator::new(cfg, secret, [7; 32]), now: Millis(1_000_000) }
    }

    fn advance(&mut self, ms: u64) {
        self.now = self.now + Millis(ms);
    }

    fn input(&mut self, i: Input) -> Vec<Output> {
        self.c.handle(self.now, i);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.c.poll_output()).collect()
    }

    fn send(&mut self, conn: u64, message: Message) -> Vec<Output> {
        self.input(Input::Received { conn: ConnId(conn), envelope: Envelope::bare(message) })
    }

    fn hello(&mut self, conn: u64, origin: u64, id: &str, auth: HelloAuth, backend: Backend) -> Vec<Output> {
        self.input(Input::Connected { conn: ConnId(conn), origin: OriginKey(origin) });
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            worker_id: WorkerId::new(id).expect("valid id"),
            auth,
            device: device(backend),
            software: "test".into(),
            max_concurrent: 4,
        };
        self.send(conn, Message::Hello(Box::new(hello)))
    }

    /// Connects and passes the benchmark; returns the outputs after admission.
    fn join(&mut self, conn: u64, origin: u64, id: &str, backend: Backend) -> Vec<Output> {
        let out = self.hello(conn, origin, id, HelloAuth::Token(String::new()), backend);
        let (offer, inputs) = offers(&out, conn).remove(0);
        self.advance(1);
        let outputs = answer(&offer, &inputs);
        self.input(Input::Received { conn: ConnId(conn), envelope: result_env(&offer, outputs) })
    }

    /// Acks and answers an offer correctly.
    fn complete(&mut self, conn: u64, offer: &TaskOffer, inputs: &[Bytes]) -> Vec<Output> {
        let mut out = self.send(conn, Message::TaskAck(TaskAck { assignment: offer.assignment }));
        self.advance(2);
        out.extend(
            self.input(Input::Received { conn: ConnId(conn), envelope: result_env(offer, answer(offer, inputs)) }),
        );
        out
    }
}

fn offers(out: &[Output], to: u64) -> Vec<(TaskOffer, Vec<Bytes>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { conn, envelope } if *conn == ConnId(to) => match &envelope.message {
                Message::TaskOffer(offer) => Some((offer.clone(), envelope.attachments.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn events(out: &[Output]) -> Vec<Event> {
    out.iter().filter_map(|o| if let Output::Event(e) = o { Some(e.clone()) } else { None }).collect()
}

fn error_codes(out: &[Output], to: u64) -> Vec<ErrorCode> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { conn, envelope } if *conn == ConnId(to) => match &envelope.message {
                Message::Error(e) => Some(e.code),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn closed(out: &[Output], to: u64) -> bool {
    out.iter().any(|o| matches!(o, Output::Close { conn, .. } if *conn == ConnId(to)))
}

#[test]
fn a_correct_fast_benchmark_admits_and_a_wrong_one_refuses() {
    let mut h = Harness::new(config(), None);
    let out = h.join(1, 1, "good", Backend::Vulkan);
    assert!(
        matches!(events(&out)[..], [Event::WorkerAdmitted { ref worker, class, .. }] if worker.as_str() == "good" && class.tier == Tier::Low)
    );
    assert!(matches!(out[0], Output::Persist(_)), "the worker record is durable before anything else");

    let out = h.hello(2, 2, "liar", HelloAuth::Token(String::new()), Backend::Vulkan);
    let (offer, inputs) = offers(&out, 2).remove(0);
    let mut wrong = answer(&offer, &inputs);
    wrong[0] = Bytes::from(vec![0u8; wrong[0].len()]);
    let out = h.input(Input::Received { conn: ConnId(2), envelope: result_env(&offer, wrong) });
    assert_eq!(error_codes(&out, 2), vec![ErrorCode::Refused]);
    assert!(closed(&out, 2));
    assert_eq!(h.c.workers().len(), 1);
}

#[test]
fn speed_is_measured_by_the_coordinator_clock() {
    let mut cfg = config();
    cfg.profile.min_mflops = 50;
    let mut h = Harness::new(cfg, None);
    let out = h.hello(1, 1, "slowpoke", HelloAuth::Token(String::new()), Backend::Cpu);
    let (offer, inputs) = offers(&out, 1).remove(0);
    h.advance(5_000); // 2·16³ flops in 5 s ≈ 0 MFLOPS, whatever the worker claims
    let out = h.input(Input::Received { conn: ConnId(1), envelope: result_env(&offer, answer(&offer, &inputs)) });
    assert!(matches!(&events(&out)[..], [Event::WorkerRefused { reason, .. }] if reason.contains("MFLOPS")));
}

#[test]
fn tokens_guests_capacity_and_versions() {
    let secret = MasterSecret::new(&b"0123456789abcdef-secret"[..]).expect("long enough");
    let good = derive_token(&secret, &WorkerId::new("w1").expect("valid"));
    let mut cfg = config();
    cfg.max_workers = 1;
    let mut h = Harness::new(cfg, Some(secret));
    let out = h.hello(1, 1, "w1", HelloAuth::Token("shoal_00".into()), Backend::Vulkan);
    assert_eq!(error_codes(&out, 1), vec![ErrorCode::Unauthorized]);
    let out = h.hello(2, 2, "w2", HelloAuth::Guest, Backend::BrowserWebGpu);
    assert_eq!(error_codes(&out, 2), vec![ErrorCode::Unauthorized], "guests are off by default");
    let out = h.hello(3, 3, "w1", HelloAuth::Token(good), Backend::Vulkan);
    assert_eq!(offers(&out, 3).len(), 1, "admitted to the benchmark");
    let other = derive_token(
        &MasterSecret::new(&b"0123456789abcdef-secret"[..]).expect("long enough"),
        &WorkerId::new("w4").expect("valid"),
    );
    let out = h.hello(4, 4, "w4", HelloAuth::Token(other), Backend::Vulkan);
    assert_eq!(error_codes(&out, 4), vec![ErrorCode::Busy], "at capacity");
    h.input(Input::Connected { conn: ConnId(5), origin: OriginKey(5) });
    let mut hello = Hello {
        protocol_version: 99,
        worker_id: WorkerId::new("w5").expect("valid"),
        auth: HelloAuth::Guest,
        device: device(Backend::Cpu),
        software: String::new(),
        max_concurrent: 1,
    };
    let out = h.send(5, Message::Hello(Box::new(hello.clone())));
    assert_eq!(error_codes(&out, 5), vec![ErrorCode::ProtocolVersion]);
    hello.protocol_version = PROTOCOL_VERSION;
    // A message before hello is a protocol violation.
    h.input(Input::Connected { conn: ConnId(6), origin: OriginKey(6) });
    let out = h.send(6, Message::TaskAck(TaskAck { assignment: shoal_core::AssignmentId::from_bytes([1; 16]) }));
    assert!(closed(&out, 6));
    assert!(
        events(&out)
            .iter()
            .any(|e| matches!(e, Event::WorkerRefused { worker: None, reason } if reason.contains("hello"))),
        "a violation before the hello is a refusal the host logs and counts: {:?}",
        events(&out)
    );
}

#[test]
fn replicas_go_to_distinct_workers_and_origins() {
    let mut h = Harness::new(config(), None);
    h.join(1, 100, "a", Backend::Vulkan);
    h.join(2, 100, "b", Backend::Vulkan); // same origin as a (a Sybil)
    h.join(3, 200, "c", Backend::Vulkan);
    h.c.submit_job(h.now, sha_job(1, 2)).expect("accepted");
    let out = h.drain();
    let to = |c| offers(&out, c).len();
    assert_eq!(to(3), 1, "the only other origin gets one replica");
    assert_eq!(to(1) + to(2), 1, "one replica on the shared origin, not two");
}

#[test]
fn persist_precedes_the_acknowledgement_of_a_job() {
    let mut h = Harness::new(config(), None);
    let job = h.c.submit_job(h.now, sha_job(3, 2)).expect("accepted");
    let out = h.drain();
    assert!(matches!(out[0], Output::Persist(ref d) if d.entries.iter().any(|e| e.namespace == "job")));
    assert!(matches!(events(&out)[..], [Event::JobAccepted { job: j, tasks: 3 }] if j == job));
    assert!(matches!(h.c.submit_job(h.now, JobSpec::new(vec![])), Err(shoal_core::coordinator::SubmitError::Empty)));
    let mut bad = sha_job(1, 2);
    bad.tasks[0].inputs.clear();
    assert!(matches!(
        h.c.submit_job(h.now, bad),
        Err(shoal_core::coordinator::SubmitError::InvalidTask { index: 0, .. })
    ));
    let mut too_many = sha_job(1, 9);
    too_many.quorum = Some(9);
    assert!(h.c.submit_job(h.now, too_many).is_err());
}

#[test]
fn declined_and_unacknowledged_offers_move_on_never_back() {
    let mut h = Harness::new(config(), None);
    h.join(1, 1, "a", Backend::Vulkan);
    h.c.submit_job(h.now, sha_job(1, 1)).expect("accepted");
    let out = h.drain();
    let (offer, _) = offers(&out, 1).remove(0);
    let out = h.send(1, Message::TaskDecline(TaskDecline { assignment: offer.assignment, reason: "busy".into() }));
    assert!(offers(&out, 1).is_empty(), "never the same task twice to one worker");
    let out = h.join(2, 2, "b", Backend::Vulkan);
    let (offer_b, _) = offers(&out, 2).remove(0);
    assert_eq!(offer_b.task, offer.task);
    // b never acks: after the ack timeout the task moves to c.
    h.join(3, 3, "c", Backend::Vulkan);
    h.advance(h.c.config().ack_timeout.0 + 1);
    let out = h.input(Input::Tick);
    assert!(out.iter().any(
        |o| matches!(o, Output::Send { conn: ConnId(2), envelope } if matches!(envelope.message, Message::Cancel(_)))
    ));
    let (offer_c, _) = offers(&out, 3).remove(0);
    assert_eq!(offer_c.task, offer.task);
    // b's late result is refused cleanly.
    let late =
        h.input(Input::Received { conn: ConnId(2), envelope: result_env(&offer_b, vec![Bytes::from(vec![0u8; 64])]) });
    assert_eq!(error_codes(&late, 2), vec![ErrorCode::UnknownAssignment]);
    assert_eq!(h.c.stats().stale_results, 1);
}

#[test]
fn execution_deadline_follows_cost_and_measured_speed() {
    let mut cfg = config();
    cfg.stale_after = Millis::from_mins(600);
    let mut h = Harness::new(cfg, None);
    h.join(1, 1, "a", Backend::Vulkan);
    let kernel = KernelSpec::MatmulF32(MatmulParams::square(512));
    let inputs = kernel.seeded_inputs(1).into_iter().map(Bytes::from).collect();
    let mut spec = JobSpec::new(vec![TaskSpec { kernel, inputs }]);
    spec.redundancy = Some(1);
    h.c.submit_job(h.now, spec).expect("accepted");
    let out = h.drain();
    let (offer, _) = offers(&out, 1).remove(0);
    h.send(1, Message::TaskAck(TaskAck { assignment: offer.assignment }));
    let mflops = h.c.workers()[0].mflops.expect("admitted");
    // 2·512³ flops at the measured speed, ×4 slack, at least the 5 s floor.
    let expected = (2u64 * 512 * 512 * 512 / (mflops * 1_000) * 4).max(5_000);
    h.advance(expected - 1);
    h.input(Input::Tick);
    assert_eq!(h.c.stats().timeouts, 0, "not before {expected} ms");
    h.advance(2);
    let out = h.input(Input::Tick);
    assert!(out.iter().any(
        |o| matches!(o, Output::Send { conn: ConnId(1), envelope } if matches!(envelope.message, Message::Cancel(_)))
    ));
    assert_eq!(h.c.stats().timeouts, 1);
}

#[test]
fn a_task_that_hangs_three_workers_is_quarantined_and_attempts_are_capped() {
    let mut cfg = config();
    cfg.stale_after = Millis::from_mins(600);
    let mut h = Harness::new(cfg, None);
    for i in 1..=4 {
        h.join(i, i, &format!("w{i}"), Backend::Vulkan);
    }
    h.c.submit_job(h.now, sha_job(1, 1)).expect("accepted");
    let mut out = h.drain();
    for _ in 0..3 {
        let (conn, (offer, _)) = (1..=4).find_map(|c| offers(&out, c).pop().map(|o| (c, o))).expect("an offer");
        h.send(conn, Message::TaskAck(TaskAck { assignment: offer.assignment }));
        h.advance(60_000);
        out = h.input(Input::Tick);
    }
    let dl = h.c.dead_letters();
    assert_eq!(dl.len(), 1);
    assert!(dl[0].reason.starts_with("poison"), "{dl:?}");
    assert_eq!(dl[0].failures.len(), 3);

    // Delivery attempts: offers nobody acknowledges in time exhaust them;
    // declines spend none (a decline is no delivery).
    let mut cfg = config();
    cfg.max_delivery_attempts = 2;
    cfg.stale_after = Millis::from_mins(600);
    let mut h = Harness::new(cfg, None);
    // Five workers: two decline, two never answer, the fifth would be the
    // third delivery.
    for i in 1..=5 {
        h.join(i, i, &format!("w{i}"), Backend::Vulkan);
    }
    h.c.submit_job(h.now, sha_job(1, 1)).expect("accepted");
    let mut out = h.drain();
    for _ in 0..2 {
        let (conn, (offer, _)) = (1..=5).find_map(|c| offers(&out, c).pop().map(|o| (c, o))).expect("an offer");
        out = h.send(conn, Message::TaskDecline(TaskDecline { assignment: offer.assignment, reason: "no".into() }));
    }
    assert!(h.c.dead_letters().is_empty(), "declines spend no attempt: {:?}", h.c.dead_letters());
    for _ in 0..2 {
        assert!((1..=5).any(|c| !offers(&out, c).is_empty()), "offered again");
        h.advance(60_000);
        out = h.input(Input::Tick);
    }
    assert!(h.c.dead_letters()[0].reason.contains("delivery attempts"), "{:?}", h.c.dead_letters());
}

#[test]
fn float_replicas_stay_within_one_class() {
    let mut h = Harness::new(config(), None);
    h.join(1, 1, "vk", Backend::Vulkan);
    h.join(2, 2, "web", Backend::BrowserWebGpu);
    h.join(3, 3, "vk2", Backend::Vulkan);
    let kernel = KernelSpec::MatmulF32(MatmulParams::square(8));
    let inputs: Vec<Bytes> = kernel.seeded_inputs(3).into_iter().map(Bytes::from).collect();
    let mut spec = JobSpec::new(vec![TaskSpec { kernel, inputs }]);
    spec.redundancy = Some(2);
    h.c.submit_job(h.now, spec).expect("accepted");
    let out = h.drain();
    let classes: Vec<u64> = (1..=3).filter(|c| !offers(&out, *c).is_empty()).collect();
    assert!(classes == vec![1, 3], "both replicas on Vulkan workers, got {classes:?}");
}

#[test]
fn verification_credits_epochs_and_cancellation() {
    let mut cfg = config();
    cfg.epoch.every_verified_tasks = Some(2);
    let mut h = Harness::new(cfg, None);
    h.join(1, 1, "a", Backend::Vulkan);
    h.join(2, 2, "b", Backend::Vulkan);
    let job = h.c.submit_job(h.now, sha_job(2, 2)).expect("accepted");
    let mut out = h.drain();
    let mut settled = None;
    for _ in 0..4 {
        let Some((conn, (offer, inputs))) = (1..=2).find_map(|c| offers(&out, c).pop().map(|o| (c, o))) else { break };
        let more = h.complete(conn, &offer, &inputs);
        out.retain(|o| !matches!(o, Output::Send { envelope, .. } if matches!(&envelope.message, Message::TaskOffer(x) if x.assignment == offer.assignment)));
        for e in events(&more) {
            if let Event::EpochSettled(s) = e {
                settled = Some(s);
            }
        }
        out.extend(more);
    }
    let p = h.c.job_progress(job).expect("known job");
    assert_eq!((p.verified, p.tasks), (2, 2));
    let s = settled.expect("epoch closed after 2 verified tasks");
    assert_eq!(s.total_in(), s.total_out());
    assert_eq!(s.payouts.len(), 2);
    let tid = h.c.job_tasks(job).expect("known")[0];
    let v = h.c.task_result(tid).expect("verified");
    assert_eq!(v.agreed.len(), 2);

    // Cancellation withdraws running replicas.
    let job2 = h.c.submit_job(h.now, sha_job(1, 2)).expect("accepted");
    h.drain();
    assert!(h.c.cancel_job(h.now, job2));
    let out = h.drain();
    assert_eq!(
        out.iter()
            .filter(|o| matches!(o, Output::Send { envelope, .. } if matches!(envelope.message, Message::Cancel(_))))
            .count(),
        2
    );
    let t2 = h.c.job_tasks(job2).expect("known")[0];
    assert_eq!(h.c.task_phase(t2), Some(TaskPhase::Cancelled));
    assert!(events(&out).iter().any(|e| matches!(e, Event::JobFinished { cancelled: 1, .. })));
}

#[test]
fn trusted_workers_may_run_alone_with_adaptive_replication() {
    let mut cfg = config();
    cfg.credibility.adaptive_replication = true;
    cfg.credibility.spot_check_pct = 0;
    cfg.credibility.trust_threshold_ppm = 900_000; // f = 0.2 → k ≥ 1 agreement
    let mut h = Harness::new(cfg, None);
    h.join(1, 1, "a", Backend::Vulkan);
    h.join(2, 2, "b", Backend::Vulkan);
    assert!(h.c.credibility(&WorkerId::new("a").expect("valid")) < 900_000);
    h.c.submit_job(h.now, sha_job(1, 2)).expect("accepted");
    let out = h.drain();
    for c in 1..=2 {
        for (o, i) in offers(&out, c) {
            h.complete(c, &o, &i);
        }
    }
    assert_eq!(h.c.stats().verified, 1);
    assert!(h.c.credibility(&WorkerId::new("a").expect("valid")) >= 900_000);
    h.c.submit_job(h.now, sha_job(1, 2)).expect("accepted");
    let out = h.drain();
    let sent: usize = (1..=2).map(|c| offers(&out, c).len()).sum();
    assert_eq!(sent, 1, "a trusted worker runs it alone");
    assert_eq!(h.c.stats().solo_tasks, 1);
}

#[test]
fn a_liar_who_left_is_still_slashed_and_nobody_else_is() {
    let mut h = Harness::new(config(), None);
    h.join(1, 1, "liar", Backend::Vulkan);
    h.join(2, 2, "honest", Backend::Vulkan);
    h.c.submit_job(h.now, sha_job(1, 2)).expect("accepted");
    let out = h.drain();
    let (lo, li) = offers(&out, 1).remove(0);
    let (ho, hi) = offers(&out, 2).remove(0);
    // The liar answers wrongly, then leaves; a newcomer takes its place.
    h.send(1, Message::TaskAck(TaskAck { assignment: lo.assignment }));
    let mut wrong = answer(&lo, &li);
    wrong[0] = Bytes::from(vec![0xEE; wrong[0].len()]);
    h.input(Input::Received { conn: ConnId(1), envelope: result_env(&lo, wrong) });
    h.input(Input::Disconnected { conn: ConnId(1), reason: "connection closed".into() });
    h.join(3, 3, "newcomer", Backend::Vulkan);
    let out = h.complete(2, &ho, &hi);
    // The disagreement escalates to the newcomer, whose answer decides.
    let (no, ni) = offers(&out, 3).remove(0);
    assert_eq!(no.task, lo.task);
    let out = h.complete(3, &no, &ni);
    let slashed: Vec<String> = events(&out)
        .into_iter()
        .filter_map(|e| if let Event::WorkerSlashed { worker, .. } = e { Some(worker.to_string()) } else { None })
        .collect();
    assert_eq!(slashed, vec!["liar".to_owned()]);
    assert_eq!(h.c.credibility(&WorkerId::new("liar").expect("valid")), 0);
    assert!(h.c.credibility(&WorkerId::new("newcomer").expect("valid")) > 0);
    // And the liar cannot come back.
    let out = h.hello(4, 4, "liar", HelloAuth::Token(String::new()), Backend::Vulkan);
    assert_eq!(error_codes(&out, 4), vec![ErrorCode::Refused]);
}

#[test]
fn a_reconnecting_worker_never_gets_the_same_task_again() {
    let mut h = Harness::new(config(), None);
    h.join(1, 1, "a", Backend::Vulkan);
    h.c.submit_job(h.now, sha_job(1, 1)).expect("accepted");
    let out = h.drain();
    let (offer, _) = offers(&out, 1).remove(0);
    h.send(1, Message::TaskAck(TaskAck { assignment: offer.assignment }));
    h.input(Input::Disconnected { conn: ConnId(1), reason: "connection closed".into() });
    // c takes a's freed slot in the registry and gets the task; it declines.
    let out = h.join(2, 2, "c", Backend::Vulkan);
    let (to_c, _) = offers(&out, 2).remove(0);
    assert_eq!(to_c.task, offer.task);
    h.send(2, Message::TaskDecline(TaskDecline { assignment: to_c.assignment, reason: "no".into() }));
    // a comes back: never the same task twice to one worker.
    let out = h.join(5, 1, "a", Backend::Vulkan);
    assert!(offers(&out, 5).is_empty(), "the task a dropped goes to someone else");
    let out = h.join(6, 6, "b", Backend::Vulkan);
    assert_eq!(offers(&out, 6)[0].0.task, offer.task);
}

#[test]
fn guests_coming_and_going_leave_no_books_behind() {
    let mut cfg = config();
    cfg.allow_guests = true;
    let mut h = Harness::new(cfg, None);
    h.join(1, 1, "operator-box", Backend::Vulkan);
    for conn in 2..200 {
        let out = h.hello(conn, conn, "ignored", HelloAuth::Guest, Backend::BrowserWebGpu);
        let (offer, inputs) = offers(&out, conn).remove(0);
        h.input(Input::Received { conn: ConnId(conn), envelope: result_env(&offer, answer(&offer, &inputs)) });
        h.input(Input::Disconnected { conn: ConnId(conn), reason: "connection closed".into() });
    }
    assert_eq!(h.c.remembered_workers(), 1, "only the operator's worker is remembered");
}

#[test]
fn forgotten_jobs_free_memory_even_behind_a_long_running_job() {
    let mut h = Harness::new(config(), None);
    let slow = h.c.submit_job(h.now, sha_job(1, 2)).expect("accepted");
    let big = h.c.submit_job(h.now, sha_job(3_000, 2)).expect("accepted");
    assert_eq!(h.c.task_slots(), 3_001);
    assert!(!h.c.forget_job(big), "an unfinished job cannot be forgotten");
    h.c.cancel_job(h.now, big);
    assert!(h.c.forget_job(big));
    assert!(h.c.task_slots() <= 2 * 1024, "{} slots still held", h.c.task_slots());
    assert!(h.c.job_progress(slow).is_some_and(|p| !p.finished()), "the slow job is untouched");
}

/// A host's storage in miniature: the latest value of every key, and the
/// chain head.
#[derive(Default)]
struct Store {
    kv: std::collections::BTreeMap<(String, Vec<u8>), Vec<u8>>,
    height: u64,
    digest: shoal_core::Digest,
}

impl Store {
    fn absorb(&mut self, out: &[Output]) {
        for o in out {
            if let Output::Persist(d) = o {
                assert!(d.verify(&self.digest), "diffs chain");
                assert_eq!(d.height, self.height + 1);
                self.height = d.height;
                self.digest = d.digest;
                for e in &d.entries {
                    self.kv.insert((e.namespace.to_string(), e.key.clone()), e.value.clone().into());
                }
            }
        }
    }

    fn snapshot(&self) -> shoal_core::coordinator::Snapshot {
        let mut s = shoal_core::coordinator::Snapshot {
            ledger_height: self.height,
            ledger_digest: self.digest,
            ..Default::default()
        };
        // Jobs first, then everything else (as a host scanning namespaces in order would).
        for pass in 0..2 {
            for ((ns, k), v) in &self.kv {
                if (ns == "job") == (pass == 0) {
                    s.apply(ns, k, v).expect("stored entries decode");
                }
            }
        }
        s
    }
}

#[test]
fn a_restarted_coordinator_keeps_verified_work_and_credits_and_finishes_the_rest() {
    let mut cfg = config();
    cfg.epoch.every_verified_tasks = Some(3);
    let mut h = Harness::new(cfg.clone(), None);
    let mut store = Store::default();
    store.absorb(&h.join(1, 1, "a", Backend::Vulkan));
    store.absorb(&h.join(2, 2, "b", Backend::Vulkan));
    let job = h.c.submit_job(h.now, sha_job(5, 2)).expect("accepted");
    let mut out = h.drain();
    store.absorb(&out);
    // Complete replicas until 4 tasks are verified (one epoch settles at 3).
    while h.c.job_progress(job).expect("known").verified < 4 {
        let Some((conn, (offer, inputs))) = (1..=2).find_map(|c| offers(&out, c).pop().map(|o| (c, o))) else { break };
        let more = h.complete(conn, &offer, &inputs);
        store.absorb(&more);
        out.retain(|o| !matches!(o, Output::Send { envelope, .. } if matches!(&envelope.message, Message::TaskOffer(x) if x.assignment == offer.assignment)));
        out.extend(more);
    }
    let before: Vec<_> = h.c.job_tasks(job).expect("known").iter().map(|t| h.c.task_result(*t).cloned()).collect();
    assert_eq!(before.iter().filter(|r| r.is_some()).count(), 4);
    assert_eq!(h.c.epochs().len(), 1);
    let credibility_a = h.c.credibility(&WorkerId::new("a").expect("id"));

    // Crash: only the store survives.
    let snapshot = store.snapshot();
    assert_eq!(snapshot.open_jobs().collect::<Vec<_>>(), vec![job]);
    let mut h2 = Harness { c: Coordinator::recover(cfg, None, [9; 32], h.now, snapshot), now: h.now };
    assert_eq!(h2.c.job_progress(job).expect("recovered").verified, 4);
    assert_eq!(h2.c.pending_tasks(), 1);
    assert_eq!(h2.c.epochs(), h.c.epochs());
    assert_eq!(h2.c.credibility(&WorkerId::new("a").expect("id")), credibility_a);
    let after: Vec<_> = h2.c.job_tasks(job).expect("known").iter().map(|t| h2.c.task_result(*t).cloned()).collect();
    assert_eq!(&after[..4], &before[..4], "verified results survive");

    // The workers come back; the last task runs; the next epoch pays for
    // exactly what was verified after the first one closed (task 4 before
    // the crash, task 5 after).
    let mut out = h2.join(11, 1, "a", Backend::Vulkan);
    out.extend(h2.join(12, 2, "b", Backend::Vulkan));
    store.absorb(&out);
    for _ in 0..8 {
        let Some((conn, (offer, inputs))) = (11..=12).find_map(|c| offers(&out, c).pop().map(|o| (c, o))) else {
            break;
        };
        let more = h2.complete(conn, &offer, &inputs);
        store.absorb(&more);
        out.retain(|o| !matches!(o, Output::Send { envelope, .. } if matches!(&envelope.message, Message::TaskOffer(x) if x.assignment == offer.assignment)));
        out.extend(more);
    }
    assert!(h2.c.job_progress(job).expect("known").finished());
    h2.c.close_epoch(h2.now);
    store.absorb(&h2.drain());
    let epochs = h2.c.epochs();
    assert_eq!(epochs.len(), 2);
    let tasks: u64 = epochs[1].payouts.iter().map(|p| p.tasks).sum();
    assert_eq!(tasks, 4, "2 tasks × 2 agreeing workers in the second epoch, none credited twice");
    assert_eq!(epochs[1].total_in(), epochs[1].total_out());
}

#[test]
fn big_inputs_are_stored_once_apart_committed_by_digest_and_come_back_after_a_restart() {
    use shoal_core::coordinator::ledger::{content_addressed, EntryValue};
    use shoal_core::coordinator::recovery::{ns, JobRecord, StoredInputs, INPUTS_APART};

    let cfg = config();
    let mut h = Harness::new(cfg.clone(), None);
    let mut store = Store::default();
    // Tasks 0 and 1 share 64 KiB of inputs; task 2's are 16 bytes.
    let big = KernelSpec::Sha256(Sha256Params { count: 256, message_len: 256 });
    let small = KernelSpec::Sha256(Sha256Params { count: 2, message_len: 8 });
    let big_inputs: Vec<Bytes> = big.seeded_inputs(7).into_iter().map(Bytes::from).collect();
    assert!(big_inputs.iter().map(Bytes::len).sum::<usize>() >= INPUTS_APART);
    let tasks = vec![
        TaskSpec { kernel: big.clone(), inputs: big_inputs.clone() },
        TaskSpec { kernel: big.clone(), inputs: big_inputs.clone() },
        TaskSpec { kernel: small.clone(), inputs: small.seeded_inputs(1).into_iter().map(Bytes::from).collect() },
    ];
    let job = h.c.submit_job(h.now, JobSpec::new(tasks.clone())).expect("accepted");
    let out = h.drain();
    let diff = out
        .iter()
        .find_map(|o| match o {
            Output::Persist(d) if d.entries.iter().any(|e| e.namespace == ns::JOB) => Some(d.clone()),
            _ => None,
        })
        .expect("the job is persisted");
    let digest = shoal_core::Digest::of_parts(big_inputs.iter().map(|b| &b[..]));
    let stored: Vec<_> = diff.entries.iter().filter(|e| content_addressed(&e.namespace)).collect();
    assert_eq!(stored.len(), 1, "shared inputs are stored once");
    assert_eq!(stored[0].key, digest.as_bytes().to_vec());
    assert_eq!(stored[0].value.digest(), digest, "the value is the bytes the task's input digest hashes");
    let record = diff.entries.iter().find(|e| e.namespace == ns::JOB).expect("job record");
    let record = JobRecord::decode(&record.value.flat()).expect("decodes");
    assert_eq!(record.tasks[0].inputs, StoredInputs::Apart(digest));
    assert_eq!(record.tasks[1].inputs, StoredInputs::Apart(digest));
    assert!(matches!(record.tasks[2].inputs, StoredInputs::Inline(_)));
    // The chain commits to the inputs through their key: other bytes under
    // the same key do not verify.
    assert!(diff.verify(&shoal_core::Digest::default()));
    let mut forged = diff.clone();
    for e in forged.entries.iter_mut().filter(|e| content_addressed(&e.namespace)) {
        let mut bytes: Vec<u8> = e.value.clone().into();
        bytes[20] ^= 1;
        e.value = EntryValue::from(bytes);
    }
    assert!(!forged.verify(&shoal_core::Digest::default()));
    store.absorb(&out);

    // Crash before anything ran: the snapshot asks for the inputs, and a
    // restarted coordinator hands out the very bytes submitted.
    let mut partial = shoal_core::coordinator::Snapshot::default();
    for ((namespace, k), v) in store.kv.iter().filter(|((n, _), _)| n == ns::JOB) {
        partial.apply(namespace, k, v).expect("decodes");
    }
    assert_eq!(partial.needed_inputs().into_iter().collect::<Vec<_>>(), vec![digest]);
    let snapshot = store.snapshot();
    assert!(snapshot.needed_inputs().is_empty());
    let mut h2 = Harness { c: Coordinator::recover(cfg, None, [9; 32], h.now, snapshot), now: h.now };
    let mut out = h2.join(11, 1, "a", Backend::Vulkan);
    out.extend(h2.join(12, 2, "b", Backend::Vulkan));
    let mut seen = 0;
    for _ in 0..12 {
        let Some((conn, (offer, inputs))) = (11..=12).find_map(|c| offers(&out, c).pop().map(|o| (c, o))) else {
            break;
        };
        if offer.kernel.as_ref() == &big {
            assert_eq!(inputs, big_inputs, "recovered inputs are the submitted ones");
            seen += 1;
        }
        let more = h2.complete(conn, &offer, &inputs);
        out.retain(|o| !matches!(o, Output::Send { envelope, .. } if matches!(&envelope.message, Message::TaskOffer(x) if x.assignment == offer.assignment)));
        out.extend(more);
    }
    assert_eq!(seen, 4, "two big tasks, two replicas each");
    assert!(h2.c.job_progress(job).expect("known").finished());
    assert_eq!(h2.c.job_progress(job).expect("known").verified, 3);
}

#[test]
fn a_job_prepared_task_by_task_is_the_job_hashed_at_once() {
    use shoal_core::coordinator::PreparedJob;

    let big = KernelSpec::Sha256(Sha256Params { count: 256, message_len: 256 });
    let small = KernelSpec::Sha256(Sha256Params { count: 2, message_len: 8 });
    let tasks = vec![
        TaskSpec { kernel: big.clone(), inputs: big.seeded_inputs(3).into_iter().map(Bytes::from).collect() },
        TaskSpec { kernel: small.clone(), inputs: small.seeded_inputs(4).into_iter().map(Bytes::from).collect() },
    ];
    let mut prepared = PreparedJob::new(JobSpec { priority: 3, ..JobSpec::new(Vec::new()) });
    for t in &tasks {
        prepared.push(t.clone());
    }
    let at_once = JobSpec { priority: 3, ..JobSpec::new(tasks) };
    assert_eq!(prepared.spec(), &at_once);
    assert_eq!(prepared, PreparedJob::from(at_once.clone()));
    // Two identical coordinators persist the very same diff for either.
    let mut a = Harness::new(config(), None);
    let mut b = Harness::new(config(), None);
    let ja = a.c.submit_job(a.now, prepared).expect("accepted");
    let jb = b.c.submit_job(b.now, at_once).expect("accepted");
    assert_eq!(ja, jb);
    let persisted = |out: Vec<Output>| -> Vec<_> {
        out.into_iter().filter_map(|o| if let Output::Persist(d) = o { Some(d) } else { None }).collect()
    };
    let (da, db) = (persisted(a.drain()), persisted(b.drain()));
    assert!(!da.is_empty());
    assert_eq!(da, db);
}

#[test]
fn commands_are_inputs_answered_after_the_rounds_diff_with_their_tickets() {
    use shoal_core::coordinator::{Answer, Command, Ticket};
    let mut h = Harness::new(config(), None);
    h.join(1, 1, "w1", Backend::Cpu);
    let worker = WorkerId::new("w1").expect("valid id");
    let inputs = vec![
        Input::Command { ticket: Ticket(7), command: Command::SubmitJob(sha_job(2, 1).into()) },
        Input::Command { ticket: Ticket(8), command: Command::CancelJob(shoal_core::JobId::from_bytes([9; 16])) },
        Input::Command { ticket: Ticket(9), command: Command::SetStake { worker: worker.clone(), stake: 5_000 } },
        Input::Command { ticket: Ticket(10), command: Command::SubmitJob(JobSpec::new(vec![]).into()) },
        Input::Command { ticket: Ticket(11), command: Command::CloseEpoch },
    ];
    h.c.handle_batch(h.now, inputs);
    let out = h.drain();
    // One round: one diff, first, holding the job and the stake.
    let diffs: Vec<usize> = (0..out.len()).filter(|&i| matches!(out[i], Output::Persist(_))).collect();
    assert_eq!(diffs, vec![0], "one diff for the whole batch, before anything else");
    let Output::Persist(diff) = &out[0] else { unreachable!() };
    assert!(diff.entries.iter().any(|e| e.namespace == "job"));
    assert!(diff.entries.iter().any(|e| e.namespace == "worker-state" && e.key == b"w1"));
    let answers: Vec<(Ticket, &Answer)> = out
        .iter()
        .filter_map(|o| match o {
            Output::Answer { ticket, answer } => Some((*ticket, answer)),
            _ => None,
        })
        .collect();
    let tickets: Vec<u64> = answers.iter().map(|(t, _)| t.0).collect();
    assert_eq!(tickets, vec![7, 8, 9, 10, 11], "every command answered once, in order");
    let Answer::JobSubmitted(Ok(job)) = answers[0].1 else { panic!("job refused: {:?}", answers[0].1) };
    assert_eq!(answers[1].1, &Answer::JobCancelled(false));
    assert_eq!(answers[2].1, &Answer::StakeSet);
    assert!(matches!(answers[3].1, Answer::JobSubmitted(Err(shoal_core::coordinator::SubmitError::Empty))));
    assert_eq!(answers[4].1, &Answer::EpochClosed);
    assert!(events(&out).iter().any(|e| matches!(e, Event::EpochSettled(_))));
    // The job joined the round's dispatch: its tasks were offered in the same batch.
    assert!(!offers(&out, 1).is_empty());
    assert_eq!(h.c.job_progress(*job).map(|p| p.tasks), Some(2));
}

/// Guests have caps of their own, in all and per network: they never take
/// the room of workers with a token, and one network cannot fill them.
#[test]
fn guests_are_capped_apart_from_workers_with_a_token() {
    let mut cfg = config();
    cfg.allow_guests = true;
    cfg.max_workers = 1;
    cfg.max_guests = 2;
    cfg.max_guests_per_origin = 1;
    let mut h = Harness::new(cfg, None);
    let guest = |h: &mut Harness, conn: u64, origin: u64| h.hello(conn, origin, "tab", HelloAuth::Guest, Backend::Cpu);
    assert_eq!(offers(&guest(&mut h, 1, 1), 1).len(), 1, "a guest joins");
    assert_eq!(error_codes(&guest(&mut h, 2, 1), 2), vec![ErrorCode::Busy], "one guest per network here");
    assert_eq!(offers(&guest(&mut h, 3, 2), 3).len(), 1, "a guest of another network joins");
    assert_eq!(error_codes(&guest(&mut h, 4, 3), 4), vec![ErrorCode::Busy], "guests at capacity");
    // Guests fill their caps; a worker with a token still has its room.
    let out = h.hello(5, 4, "operator", HelloAuth::Token(String::new()), Backend::Vulkan);
    assert_eq!(offers(&out, 5).len(), 1, "a worker with a token joins whatever the guests");
    let out = h.hello(6, 5, "second", HelloAuth::Token(String::new()), Backend::Vulkan);
    assert_eq!(error_codes(&out, 6), vec![ErrorCode::Busy], "max_workers counts workers with a token");
    // A guest that leaves makes room for another from its network.
    h.input(Input::Disconnected { conn: ConnId(1), reason: "tab closed".into() });
    assert_eq!(offers(&guest(&mut h, 7, 1), 7).len(), 1, "room again");
}

/// A custom kernel's declared cost is bounded: absurd declarations are
/// refused at submission, the cost never falls below the workgroups it
/// dispatches, and no declaration buys a worker more than the execution
/// ceiling.
#[test]
fn custom_kernel_costs_are_bounded_and_deadlines_capped() {
    use shoal_core::kernels::{
        Comparator, CustomBinding, CustomKernel, CustomRole, MAX_CUSTOM_OPS, MIN_OPS_PER_WORKGROUP,
    };
    let custom = |workgroups: [u32; 3], ops: u64| {
        KernelSpec::Custom(CustomKernel {
            wgsl: "@compute @workgroup_size(1) fn main() {}".into(),
            entry_point: "main".into(),
            bindings: vec![CustomBinding { binding: 0, role: CustomRole::Output, len: 4 }],
            workgroups,
            comparator: Comparator::Exact,
            ops,
        })
    };
    let job = |kernel: KernelSpec| {
        let mut spec = JobSpec::new(vec![TaskSpec { kernel, inputs: vec![] }]);
        spec.redundancy = Some(1);
        spec
    };
    let mut cfg = config();
    cfg.stale_after = Millis::from_mins(600);
    let ceiling = cfg.exec_timeout_ceiling;
    let mut h = Harness::new(cfg, None);
    let refused = |h: &mut Harness, k: KernelSpec, param: &str| {
        let err = h.c.submit_job(h.now, job(k)).expect_err("refused");
        assert!(err.to_string().contains(param), "{err}");
    };
    refused(&mut h, custom([1, 1, 1], u64::MAX), "ops");
    refused(&mut h, custom([65_535, 65_535, 65_535], 1), "workgroups");
    assert_eq!(custom([1_000, 2, 1], 1).ops(), 2_000 * MIN_OPS_PER_WORKGROUP, "never below what it dispatches");
    assert_eq!(custom([1, 1, 1], MAX_CUSTOM_OPS).ops(), MAX_CUSTOM_OPS);
    // The most a task may declare, on the slowest admitted worker: the
    // deadline is the ceiling, not days.
    h.join(1, 1, "slow", Backend::Vulkan);
    h.c.submit_job(h.now, job(custom([1, 1, 1], MAX_CUSTOM_OPS))).expect("accepted");
    let out = h.drain();
    let (offer, _) = offers(&out, 1).remove(0);
    h.send(1, Message::TaskAck(TaskAck { assignment: offer.assignment }));
    h.advance(ceiling.0 - 1);
    h.input(Input::Tick);
    assert_eq!(h.c.stats().timeouts, 0, "not before the ceiling");
    h.advance(2);
    h.input(Input::Tick);
    assert_eq!(h.c.stats().timeouts, 1, "timed out at the ceiling");
}

/// Input bytes are bounded per job and, for queued tasks, in all; the
/// budget frees as tasks end.
#[test]
fn input_bytes_are_bounded_per_job_and_in_all() {
    use shoal_core::coordinator::SubmitError;
    let mut cfg = config();
    cfg.max_job_input_bytes = 4_096;
    cfg.max_queued_input_bytes = 6_000;
    let mut h = Harness::new(cfg, None);
    // sha_job's tasks carry 2 × 8 = 16 bytes each.
    let err = h.c.submit_job(h.now, sha_job(300, 1)).expect_err("4 800 bytes in one job");
    assert_eq!(err, SubmitError::JobTooLarge { bytes: 4_800, limit: 4_096 });
    assert!(err.to_string().contains("max_job_input_bytes"), "{err}");
    let first = h.c.submit_job(h.now, sha_job(200, 1)).expect("3 200 bytes");
    let err = h.c.submit_job(h.now, sha_job(200, 1)).expect_err("6 400 bytes queued in all");
    assert_eq!(err, SubmitError::InputBudget { queued: 3_200, job: 3_200, limit: 6_000 });
    assert!(h.c.cancel_job(h.now, first), "cancelling frees its budget");
    h.c.submit_job(h.now, sha_job(200, 1)).expect("room again");
}

/// A worker that declines everything costs honest tasks nothing (declines
/// spend no delivery attempt) and is evicted after declining
/// `max_declines_in_row` offers in a row.
#[test]
fn decliners_never_dead_letter_honest_tasks_and_are_evicted() {
    let mut cfg = config();
    // One delivery each: a decline that counted would dead-letter the task.
    cfg.max_delivery_attempts = 1;
    cfg.max_declines_in_row = 4;
    cfg.credibility.ringer_pct = 0;
    let mut h = Harness::new(cfg, None);
    h.join(1, 1, "decliner", Backend::Vulkan);
    h.join(2, 2, "honest", Backend::Vulkan);
    let job = h.c.submit_job(h.now, sha_job(12, 1)).expect("accepted");
    let mut out = h.drain();
    let mut left = Vec::new();
    for _ in 0..200 {
        left.extend(events(&out).into_iter().filter_map(|e| match e {
            Event::WorkerLeft { worker, reason } => Some((worker.to_string(), reason)),
            _ => None,
        }));
        let mut next = Vec::new();
        for (offer, _) in offers(&out, 1) {
            let decline = TaskDecline { assignment: offer.assignment, reason: "no".into() };
            next.extend(h.send(1, Message::TaskDecline(decline)));
        }
        for (offer, inputs) in offers(&out, 2) {
            next.extend(h.complete(2, &offer, &inputs));
        }
        if next.is_empty() {
            break;
        }
        out = next;
    }
    let p = h.c.job_progress(job).expect("known");
    assert_eq!((p.verified, p.dead_lettered), (12, 0), "every honest task verified: {p:?}");
    assert_eq!(
        left,
        vec![("decliner".to_owned(), "declined 4 offers in a row".to_owned())],
        "the decliner was evicted for it"
    );
}
