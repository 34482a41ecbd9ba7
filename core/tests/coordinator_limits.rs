//! The coordinator under careless and hostile use: guests capped apart
//! from workers with a token, custom kernels bounded in cost, input bytes
//! bounded, decliners that cost honest tasks nothing.

#![cfg(not(target_arch = "wasm32"))]

use shoal_core::coordinator::{ConnId, Event, Input, JobSpec, TaskSpec};
use shoal_core::kernels::KernelSpec;
use shoal_core::wire::message::{Backend, ErrorCode, ErrorMessage, HelloAuth, TaskAck, TaskDecline};
use shoal_core::wire::Message;
use shoal_core::Millis;

mod support;
use support::{benchmark_offer, config, error_codes, events, offers, sha_job, Harness};

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
    assert!(benchmark_offer(&guest(&mut h, 1, 1), 1).is_some(), "a guest joins");
    assert_eq!(error_codes(&guest(&mut h, 2, 1), 2), vec![ErrorCode::Busy], "one guest per network here");
    assert!(benchmark_offer(&guest(&mut h, 3, 2), 3).is_some(), "a guest of another network joins");
    assert_eq!(error_codes(&guest(&mut h, 4, 3), 4), vec![ErrorCode::Busy], "guests at capacity");
    // Guests fill their caps; a worker with a token still has its room.
    let out = h.hello(5, 4, "operator", HelloAuth::Token(String::new()), Backend::Vulkan);
    assert!(benchmark_offer(&out, 5).is_some(), "a worker with a token joins whatever the guests");
    let out = h.hello(6, 5, "second", HelloAuth::Token(String::new()), Backend::Vulkan);
    assert_eq!(error_codes(&out, 6), vec![ErrorCode::Busy], "max_workers counts workers with a token");
    // A guest that leaves makes room for another from its network.
    h.input(Input::Disconnected { conn: ConnId(1), reason: "tab closed".into() });
    assert!(benchmark_offer(&guest(&mut h, 7, 1), 7).is_some(), "room again");
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
/// `max_misses_in_row` offers in a row.
#[test]
fn decliners_never_dead_letter_honest_tasks_and_are_evicted() {
    let mut cfg = config();
    // One delivery each: a decline that counted would dead-letter the task.
    cfg.max_delivery_attempts = 1;
    cfg.max_misses_in_row = 4;
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
        vec![("decliner".to_owned(), "4 offers in a row without a result (last declined)".to_owned())],
        "the decliner was evicted for it"
    );
}

/// Workers without a verified result that fail every offer or take it and
/// never answer cannot sink honest tasks: their misses spend no delivery
/// attempt and count toward no poison verdict, they get one task at a time
/// from their first miss, and they are evicted after `max_misses_in_row`.
/// (Before: three such failers dead-lettered 15 of 20 honest tasks as
/// poison.)
#[test]
fn failers_and_silent_acceptors_never_dead_letter_honest_tasks() {
    let mut cfg = config();
    cfg.max_misses_in_row = 5;
    cfg.credibility.ringer_pct = 0;
    cfg.stale_after = Millis::from_mins(600);
    let mut h = Harness::new(cfg, None);
    for (conn, id) in [(1, "failer-1"), (2, "failer-2"), (3, "failer-3"), (4, "silent-1"), (5, "silent-2")] {
        h.join(conn, conn, id, Backend::Vulkan);
    }
    h.join(6, 6, "honest-1", Backend::Vulkan);
    h.join(7, 7, "honest-2", Backend::Vulkan);
    let job = h.c.submit_job(h.now, sha_job(20, 2)).expect("accepted");
    let mut out = h.drain();
    let mut left = Vec::new();
    for _ in 0..2_000 {
        left.extend(events(&out).into_iter().filter_map(|e| match e {
            Event::WorkerLeft { worker, reason } => Some((worker.to_string(), reason)),
            _ => None,
        }));
        if h.c.job_progress(job).is_some_and(shoal_core::coordinator::JobProgress::finished) {
            break;
        }
        let mut next = Vec::new();
        for conn in 1..=7 {
            for (offer, inputs) in offers(&out, conn) {
                let assignment = offer.assignment;
                next.extend(match conn {
                    1..=3 => h.send(
                        conn,
                        Message::Error(ErrorMessage {
                            code: ErrorCode::ExecutionFailed,
                            assignment: Some(assignment),
                            message: "no".into(),
                        }),
                    ),
                    4 | 5 => h.send(conn, Message::TaskAck(TaskAck { assignment })),
                    _ => h.complete(conn, &offer, &inputs),
                });
            }
        }
        if next.is_empty() {
            h.advance(10_000);
            next = h.input(Input::Tick);
        }
        out = next;
    }
    let p = h.c.job_progress(job).expect("known");
    assert_eq!((p.verified, p.dead_lettered), (20, 0), "every honest task verified: {p:?}");
    let mut evicted: Vec<&str> = left.iter().map(|(w, _)| w.as_str()).collect();
    evicted.sort_unstable();
    assert_eq!(evicted, ["failer-1", "failer-2", "failer-3", "silent-1", "silent-2"], "{left:?}");
    assert!(left.iter().all(|(_, why)| why.contains("in a row without a result")), "{left:?}");
}

/// A job no admitted worker could run is accepted and says why it waits
/// (which need nobody meets); a job some worker can run does not.
#[test]
fn a_job_nobody_can_run_says_why_it_waits() {
    let mut h = Harness::new(config(), None);
    h.join(1, 1, "cpu", Backend::Cpu);
    let mut spec = sha_job(3, 1);
    spec.min_tier = shoal_core::coordinator::Tier::High;
    let job = h.c.submit_job(h.now, spec).expect("accepted");
    let why = h.c.job_waiting(job).expect("waiting");
    assert!(why.contains("sha256") && why.contains("tier 3"), "{why}");
    let runnable = h.c.submit_job(h.now, sha_job(3, 1)).expect("accepted");
    assert_eq!(h.c.job_waiting(runnable), None, "a job some worker can run is not waiting");
}

/// How admitted workers spread over origins: the count the host warns by
/// when a swarm sits behind one address.
#[test]
fn origin_concentration_counts_admitted_workers_by_origin() {
    let mut h = Harness::new(config(), None);
    assert_eq!(h.c.origin_concentration(), (0, 0));
    h.join(1, 7, "a", Backend::Vulkan);
    h.join(2, 7, "b", Backend::Vulkan);
    h.join(3, 8, "c", Backend::Vulkan);
    h.hello(4, 7, "profiling", HelloAuth::Token(String::new()), Backend::Vulkan);
    assert_eq!(h.c.origin_concentration(), (3, 2), "three admitted, two on origin 7; one still benchmarking");
    assert_eq!(h.c.origin_crowded(), None, "fewer than four admitted");
    h.join(5, 7, "d", Backend::Vulkan);
    assert_eq!(h.c.origin_crowded(), Some((4, 3)), "three of four on one origin");
}
