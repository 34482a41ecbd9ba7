//! A restarted coordinator, rebuilt from what its previous life stored
//! (a host's storage in miniature): verified work, credits and the ledger
//! chain survive; big inputs are stored once, apart, and come back.

#![cfg(not(target_arch = "wasm32"))]

use bytes::Bytes;
use shoal_core::coordinator::{Coordinator, JobSpec, Output, TaskSpec};
use shoal_core::kernels::{KernelSpec, Sha256Params};
use shoal_core::wire::message::Backend;
use shoal_core::wire::Message;
use shoal_core::WorkerId;

mod support;
use support::{config, offers, sha_job, Harness, Store};

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
    let mut h2 =
        Harness { c: Coordinator::recover(cfg, None, [9; 32], h.now, snapshot), now: h.now, sub_us: 0, cache_bytes: 0 };
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
    let mut h2 =
        Harness { c: Coordinator::recover(cfg, None, [9; 32], h.now, snapshot), now: h.now, sub_us: 0, cache_bytes: 0 };
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
fn a_deleted_job_leaves_no_record_and_keeps_the_inputs_an_open_job_needs() {
    use shoal_core::coordinator::recovery::ns;
    use shoal_core::coordinator::{Answer, Command, DeleteJobError, Input, Ticket};

    let cfg = config();
    let mut h = Harness::new(cfg.clone(), None);
    let mut store = Store::default();
    store.absorb(&h.join(1, 1, "a", Backend::Vulkan));
    store.absorb(&h.join(2, 2, "b", Backend::Vulkan));
    // Job A: a big input stored apart, and a small one; run to the end.
    let big = KernelSpec::Sha256(Sha256Params { count: 256, message_len: 256 });
    let big_inputs: Vec<Bytes> = big.seeded_inputs(3).into_iter().map(Bytes::from).collect();
    let digest = shoal_core::Digest::of_parts(big_inputs.iter().map(|b| &b[..]));
    let a_tasks = vec![TaskSpec { kernel: big.clone(), inputs: big_inputs.clone() }];
    let mut spec = sha_job(2, 2);
    spec.tasks.extend(a_tasks);
    let a = h.c.submit_job(h.now, spec).expect("accepted");
    let mut out = h.drain();
    store.absorb(&out);
    while !h.c.job_progress(a).expect("known").finished() {
        let Some((conn, (offer, inputs))) = (1..=2).find_map(|c| offers(&out, c).pop().map(|o| (c, o))) else {
            panic!("job A stalled")
        };
        let more = h.complete(conn, &offer, &inputs);
        store.absorb(&more);
        out.retain(|o| !matches!(o, Output::Send { envelope, .. } if matches!(&envelope.message, Message::TaskOffer(x) if x.assignment == offer.assignment)));
        out.extend(more);
    }
    // Job B shares A's big input and stays open (its offers are never answered).
    let b = h.c.submit_job(h.now, JobSpec::new(vec![TaskSpec { kernel: big, inputs: big_inputs }])).expect("accepted");
    store.absorb(&h.drain());
    let delete = |h: &mut Harness, store: &mut Store, job, n| {
        let command = Command::DeleteJob { job, inputs: vec![digest] };
        let out = h.input(Input::Command { ticket: Ticket(n), command });
        store.absorb(&out);
        out.iter()
            .find_map(|o| match o {
                Output::Answer { answer: Answer::JobDeleted(r), .. } => Some(r.clone()),
                _ => None,
            })
            .expect("answered")
    };
    assert_eq!(delete(&mut h, &mut store, b, 1), Err(DeleteJobError::Unfinished), "an open job is not deleted");
    let a_key = a.as_bytes().to_vec();
    assert!(store.kv.keys().any(|(n, k)| n == ns::TASK && k.starts_with(&a_key)));
    // A goes, every record of it; the input B still reads stays (even if
    // the host names it).
    assert_eq!(delete(&mut h, &mut store, a, 2), Ok(()));
    assert!(h.c.job_progress(a).is_none(), "forgotten");
    assert!(!store.kv.keys().any(|(_, k)| k.starts_with(&a_key)), "no record of A is left");
    assert!(store.kv.contains_key(&(ns::INPUT.to_owned(), digest.as_bytes().to_vec())), "B's input is kept");
    // Deleting again changes nothing and is not an error.
    assert_eq!(delete(&mut h, &mut store, a, 3), Ok(()));
    // A restart recovers B with its input, and knows nothing of A.
    let snapshot = store.snapshot();
    assert!(snapshot.needed_inputs().is_empty(), "every input an open job needs is there");
    let h2 =
        Harness { c: Coordinator::recover(cfg, None, [9; 32], h.now, snapshot), now: h.now, sub_us: 0, cache_bytes: 0 };
    assert_eq!(h2.c.pending_tasks(), 1);
    assert!(h2.c.job_progress(b).is_some() && h2.c.job_progress(a).is_none());
}

/// A staked liar slashed mid-epoch: its forfeit survives a restart before
/// the epoch closes, the closed epoch names it (and the stake behind an
/// honest payee's pay), and both come back with the settlement after
/// another restart, its digest unchanged.
#[test]
fn stakes_and_forfeits_of_an_epoch_survive_restarts() {
    use shoal_core::coordinator::{Command, Input, Ticket};
    use shoal_core::wire::message::TaskAck;
    let cfg = config();
    let mut h = Harness::new(cfg.clone(), None);
    let mut store = Store::default();
    store.absorb(&h.join(1, 1, "liar", Backend::Vulkan));
    store.absorb(&h.join(2, 2, "honest", Backend::Vulkan));
    store.absorb(&h.join(3, 3, "judge", Backend::Vulkan));
    let id = |s: &str| WorkerId::new(s).expect("id");
    for (w, stake) in [("liar", 5_000u128), ("honest", 7)] {
        let command = Command::SetStake { worker: id(w), stake };
        store.absorb(&h.input(Input::Command { ticket: Ticket(1), command }));
    }
    h.c.submit_job(h.now, sha_job(1, 2)).expect("accepted");
    let out = h.drain();
    store.absorb(&out);
    let (lo, li) = offers(&out, 1).remove(0);
    let (ho, hi) = offers(&out, 2).remove(0);
    store.absorb(&h.send(1, Message::TaskAck(TaskAck { assignment: lo.assignment })));
    let mut wrong = support::answer(&lo, &li);
    wrong[0] = Bytes::from(vec![0xEE; wrong[0].len()]);
    store.absorb(&h.input(Input::Received { conn: shoal_core::ConnId(1), envelope: support::result_env(&lo, wrong) }));
    let out = h.complete(2, &ho, &hi);
    store.absorb(&out);
    let (jo, ji) = offers(&out, 3).remove(0);
    store.absorb(&h.complete(3, &jo, &ji));
    assert!(h.c.stats().slashed == 1, "the liar is slashed");

    // Restart with the epoch open: the forfeit is remembered.
    let mut h2 = Harness {
        c: Coordinator::recover(cfg.clone(), None, [9; 32], h.now, store.snapshot()),
        now: h.now,
        sub_us: 0,
        cache_bytes: 0,
    };
    h2.c.close_epoch(h2.now);
    store.absorb(&h2.drain());
    let closed = h2.c.epochs().last().cloned().expect("an epoch");
    assert_eq!(closed.forfeited, 5_000);
    assert_eq!(closed.stakes.forfeits, vec![(id("liar"), 5_000)]);
    assert_eq!(closed.stakes.held_by(&id("honest")), 7, "{:?}", closed.stakes);
    assert_eq!(closed.total_in(), closed.total_out());

    // Restart after: the settlement comes back whole, digest and all.
    let h3 = Harness {
        c: Coordinator::recover(cfg, None, [9; 32], h2.now, store.snapshot()),
        now: h2.now,
        sub_us: 0,
        cache_bytes: 0,
    };
    assert_eq!(h3.c.epochs().last(), Some(&closed));
}
