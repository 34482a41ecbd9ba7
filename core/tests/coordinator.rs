//! The coordinator state machine through its public API, driven by hand on
//! a fake clock: admission, auth, dispatch rules, watchdog, dead letters,
//! poison guard, stale results, homogeneous redundancy, cancellation,
//! epochs, adaptive replication, prepared jobs and commands as inputs.

#![cfg(not(target_arch = "wasm32"))]

use bytes::Bytes;
use shoal_core::auth::{derive_token, MasterSecret};
use shoal_core::coordinator::{ConnId, Event, Input, JobSpec, OriginKey, Output, TaskPhase, TaskSpec};
use shoal_core::kernels::{KernelSpec, MatmulParams, Sha256Params};
use shoal_core::wire::message::{Backend, ErrorCode, Hello, HelloAuth, TaskAck, TaskDecline};
use shoal_core::wire::{Message, PROTOCOL_VERSION};
use shoal_core::{Millis, WorkerId};

mod support;
use support::{
    answer, benchmark_offer, challenge, closed, config, device, error_codes, events, offers, result_env, sha_job,
    Harness,
};

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
    let out = h.hello(3, 3, "w1", HelloAuth::Token(good.clone()), Backend::Vulkan);
    assert!(benchmark_offer(&out, 3).is_some(), "admitted to the benchmark");
    // The token in the clear is refused: whoever saw it could replay it.
    let out = h.input(Input::Connected { conn: ConnId(7), origin: OriginKey(7), host: None });
    let nonce = challenge(&out, 7).expect("challenged");
    let w1 = WorkerId::new("w1").expect("valid");
    let clear = Hello {
        protocol_version: PROTOCOL_VERSION,
        worker_id: w1.clone(),
        auth: HelloAuth::Token(good.clone()),
        device: device(Backend::Vulkan),
        software: String::new(),
        max_concurrent: 4,
        cache_bytes: 0,
        held: Vec::new(),
    };
    let out = h.send(7, Message::Hello(Box::new(clear.clone())));
    assert_eq!(error_codes(&out, 7), vec![ErrorCode::Unauthorized], "a token is never accepted in the clear");
    // A proof recorded on one connection is worthless on another.
    let mut replayed = clear.clone();
    replayed.auth = HelloAuth::Proof(shoal_core::auth::hello_proof(&good, &nonce, &w1, 4));
    let out = h.input(Input::Connected { conn: ConnId(8), origin: OriginKey(8), host: None });
    assert_ne!(challenge(&out, 8), Some(nonce), "every connection gets its own challenge");
    let out = h.send(8, Message::Hello(Box::new(replayed)));
    assert_eq!(error_codes(&out, 8), vec![ErrorCode::Unauthorized], "a replayed proof is refused");
    assert!(h.c.workers().iter().any(|w| w.id == w1), "and the worker it copied keeps its session");
    let other = derive_token(
        &MasterSecret::new(&b"0123456789abcdef-secret"[..]).expect("long enough"),
        &WorkerId::new("w4").expect("valid"),
    );
    let out = h.hello(4, 4, "w4", HelloAuth::Token(other), Backend::Vulkan);
    assert_eq!(error_codes(&out, 4), vec![ErrorCode::Busy], "at capacity");
    h.input(Input::Connected { conn: ConnId(5), origin: OriginKey(5), host: None });
    let mut hello = Hello {
        protocol_version: 99,
        worker_id: WorkerId::new("w5").expect("valid"),
        auth: HelloAuth::Guest,
        device: device(Backend::Cpu),
        software: String::new(),
        max_concurrent: 1,
        cache_bytes: 0,
        held: Vec::new(),
    };
    let out = h.send(5, Message::Hello(Box::new(hello.clone())));
    assert_eq!(error_codes(&out, 5), vec![ErrorCode::ProtocolVersion]);
    hello.protocol_version = PROTOCOL_VERSION;
    // A message before hello is a protocol violation.
    h.input(Input::Connected { conn: ConnId(6), origin: OriginKey(6), host: None });
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
    h.prove(&[1, 2, 3, 4]);
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
    h.prove(&[1, 2, 3, 4, 5]);
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
        h.pass_benchmark(conn, out, 8);
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
