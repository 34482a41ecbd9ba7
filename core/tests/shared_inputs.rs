//! Shared inputs through the protocol: a job's shared input goes to each
//! worker once and is named afterwards; a worker without a cache gets it
//! every time; a worker that lacks a named input asks and gets it once;
//! a restarted coordinator has each shared input stored once and finishes
//! the job; the job's bytes count each shared input once.

#![cfg(not(target_arch = "wasm32"))]

use bytes::Bytes;
use shoal_core::coordinator::{recovery::ns, Coordinator, CoordinatorConfig, JobSpec, TaskSpec};
use shoal_core::kernels::{KernelSpec, MatmulParams};
use shoal_core::shared_inputs::part_digest;
use shoal_core::wire::message::{Backend, InputRequest, Message, OfferPart, TaskAck};
use shoal_core::worker::WorkerSession;
use shoal_core::{JobId, Millis};

mod support;
use support::sessions::{hello, pump, pump_signing, Signers};
use support::{answer, closed, config, offers, result_env, Harness, Store};

const K: u32 = 64;
const TASKS: usize = 12;

fn bytes_of(seed: u64, len: usize) -> Bytes {
    let mut rng = shoal_core::rng::SplitMix64::new(seed);
    Bytes::from(
        (0..len / 4).flat_map(|_| ((rng.below(2000) as f32 - 1000.0) / 250.0).to_le_bytes()).collect::<Vec<_>>(),
    )
}

/// `TASKS` matmuls of a 4×K slice by one shared K×K matrix (16 KiB), two
/// replicas each, no solo runs.
fn shared_job() -> (JobSpec, Bytes) {
    let model = bytes_of(99, (K * K * 4) as usize);
    let kernel = KernelSpec::MatmulF32(MatmulParams { m: 4, n: K, k: K });
    let tasks = (0..TASKS)
        .map(|i| TaskSpec {
            kernel: kernel.clone(),
            inputs: vec![bytes_of(i as u64, (4 * K * 4) as usize), model.clone()],
        })
        .collect();
    let mut spec = JobSpec::new(tasks);
    spec.shared_inputs = vec![model.clone()];
    spec.redundancy = Some(2);
    spec.allow_adaptive = false;
    (spec, model)
}

fn quiet_config() -> CoordinatorConfig {
    let mut cfg = config();
    cfg.credibility.ringer_pct = 0;
    cfg
}

/// Sessions of these ids, each with a cache of `cache_bytes`, connected
/// to `c` from distinct origins.
fn connect(c: &mut Coordinator, now: Millis, ids: &[&str], cache_bytes: u64) -> Vec<WorkerSession> {
    for i in 0..ids.len() as u64 {
        let (conn, origin) = (shoal_core::ConnId(i), shoal_core::OriginKey(i));
        c.handle(now, shoal_core::coordinator::Input::Connected { conn, origin, host: None });
    }
    ids.iter().map(|id| WorkerSession::new(shoal_core::wire::message::Hello { cache_bytes, ..hello(id) })).collect()
}

fn run(cache_bytes: u64) -> (Coordinator, JobId) {
    let mut c = Coordinator::new(quiet_config(), None, [3; 32]);
    let mut now = Millis(1_000);
    let mut sessions = connect(&mut c, now, &["a", "b", "c"], cache_bytes);
    pump(&mut c, &mut sessions, &mut now);
    let job = c.submit_job(now, shared_job().0).expect("accepted");
    let closed = pump(&mut c, &mut sessions, &mut now);
    assert!(closed.is_empty(), "{closed:?}");
    (c, job)
}

#[test]
fn a_shared_input_goes_to_each_worker_once_and_the_job_verifies() {
    let (model, own) = ((K * K * 4) as u64, (4 * K * 4) as u64);
    let replicas = 2 * TASKS as u64;

    let (c, job) = run(1 << 20);
    let p = c.job_progress(job).expect("known");
    assert_eq!((p.verified, p.tasks), (TASKS as u32, TASKS as u32), "every task verified");
    let s = c.stats();
    let shared_sent = s.input_bytes_sent - replicas * own;
    assert_eq!(shared_sent % model, 0);
    assert!(shared_sent <= 3 * model, "the model went to each of 3 workers at most once: {shared_sent}");
    assert_eq!(shared_sent + s.shared_bytes_named, replicas * model, "every other replica named it");
    assert_eq!(s.input_requests, 0, "caches as the coordinator predicted");

    let (c, job) = run(0);
    assert!(c.job_progress(job).is_some_and(|p| p.verified == TASKS as u32));
    let s = c.stats();
    assert_eq!(s.input_bytes_sent, replicas * (own + model), "no cache: the model with every offer");
    assert_eq!(s.shared_bytes_named, 0);
}

#[test]
fn a_worker_that_lacks_a_named_input_asks_once_and_a_bad_request_ends_it() {
    let mut h = Harness::new(quiet_config(), None);
    h.cache_bytes = 1 << 20;
    let joined = [h.join(1, 1, "w1", Backend::Cpu), h.join(2, 2, "w2", Backend::Cpu)].concat();
    assert!(offers(&joined, 1).is_empty());
    let (spec, model) = shared_job();
    let d = part_digest(&model);
    h.c.submit_job(h.now, spec).expect("accepted");
    let out = h.drain();
    let first = offers(&out, 1);
    assert!(!first.is_empty());
    // The first offer to a worker sends the model and says so.
    let (o, att) = &first[0];
    assert_eq!(o.parts, vec![OfferPart::Attached, OfferPart::Shared { digest: d, attached: true }]);
    assert_eq!(att[1], model);
    // Later ones to the same worker only name it.
    let (later, later_att) = &first[1];
    assert_eq!(later.parts[1], OfferPart::Shared { digest: d, attached: false });
    assert_eq!(later_att.len(), 1, "only the task's own part travels");

    // This worker "lost" it: it asks, and gets exactly it, once.
    h.send(1, Message::TaskAck(TaskAck { assignment: later.assignment }));
    let got = h.send(1, Message::InputRequest(InputRequest { assignment: later.assignment, digests: vec![d] }));
    let data: Vec<_> = got
        .iter()
        .filter_map(|o| match o {
            shoal_core::coordinator::Output::Send { envelope, .. } => match &envelope.message {
                Message::InputData(x) => Some((x.clone(), envelope.attachments.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(data.len(), 1);
    assert_eq!((data[0].0.digests.clone(), data[0].1.clone()), (vec![d], vec![model.clone()]));
    assert_eq!(h.c.stats().input_requests, 1);
    // With the model it answers like any worker.
    let inputs = vec![later_att[0].clone(), model.clone()];
    h.input(shoal_core::coordinator::Input::Received {
        conn: shoal_core::ConnId(1),
        envelope: result_env(later, answer(later, &inputs)),
    });
    // Asking twice for one assignment, or for an input no offer named, ends the connection.
    let (third, _) = &first[2];
    h.send(1, Message::TaskAck(TaskAck { assignment: third.assignment }));
    let bogus = shoal_core::Digest::of(b"not offered");
    let out = h.send(1, Message::InputRequest(InputRequest { assignment: third.assignment, digests: vec![bogus] }));
    assert!(closed(&out, 1), "an input the offer did not name");
}

#[test]
fn a_restarted_coordinator_stores_the_shared_input_once_and_finishes_the_job() {
    let mut c = Coordinator::new(quiet_config(), None, [3; 32]);
    let mut now = Millis(1_000);
    let mut store = Store::default();
    let (spec, model) = shared_job();
    let job = c.submit_job(now, spec).expect("accepted");
    let mut outputs = Vec::new();
    while let Some(o) = c.poll_output() {
        outputs.push(o);
    }
    store.absorb(&outputs);
    let inputs: Vec<_> = store.kv.keys().filter(|(n, _)| n == ns::INPUT).collect();
    assert_eq!(inputs.len(), 1, "one shared input stored once; the own parts are small and inline");
    assert_eq!(inputs[0].1, part_digest(&model).as_bytes().to_vec());
    let before = store.kv.get(&("job".to_string(), job.as_bytes().to_vec())).expect("job record").len();
    assert!(before < (K * K * 4) as usize, "the job's record does not carry the model ({before} bytes)");

    let snapshot = store.snapshot();
    let mut c = Coordinator::recover(quiet_config(), None, [4; 32], now, snapshot);
    let mut sessions = connect(&mut c, now, &["a", "b"], 1 << 20);
    let closed = pump_signing(&mut c, &mut sessions, &Signers::new(), &mut now, Some(&mut store));
    assert!(closed.is_empty(), "{closed:?}");
    let p = c.job_progress(job).expect("recovered");
    assert_eq!(p.verified, TASKS as u32, "{p:?}");
    // The recovered tasks kept their names: what the first life stored is what the second verified.
    assert!(c.stats().shared_bytes_named > 0, "the recovered tasks still share the model");
}

#[test]
fn a_job_counts_each_shared_input_once() {
    let mut cfg = quiet_config();
    // Room for the model once and every own part, not for 12 models.
    cfg.max_job_input_bytes = (K * K * 4) as u64 + (TASKS as u64) * (4 * K * 4) as u64;
    let mut c = Coordinator::new(cfg.clone(), None, [3; 32]);
    assert!(c.submit_job(Millis(1), shared_job().0).is_ok());
    // The same tasks without the declaration are 12 models.
    let mut plain = shared_job().0;
    plain.shared_inputs.clear();
    let mut c = Coordinator::new(cfg, None, [3; 32]);
    assert!(c.submit_job(Millis(1), plain).is_err());
}

/// What a fresh session (cache of 1 MiB, welcomed) answers to `offer`.
fn session_outputs(
    s: &mut WorkerSession,
    message: Message,
    attachments: Vec<Bytes>,
) -> Vec<shoal_core::worker::WorkerOutput> {
    let env = shoal_core::wire::Envelope { message, attachments };
    s.handle(Millis(10), shoal_core::worker::WorkerInput::Received(env));
    std::iter::from_fn(|| s.poll_output()).collect()
}

#[test]
fn a_session_fetches_what_its_cache_lacks_checks_every_shared_input_and_keeps_it() {
    use shoal_core::wire::message::{InputData, TaskOffer, Welcome};
    use shoal_core::worker::WorkerOutput;
    let (spec, model) = shared_job();
    let d = part_digest(&model);
    let own = spec.tasks[0].inputs[0].clone();
    let layout = shoal_core::shared_inputs::SharedLayout::new(vec![None, Some(d)]).expect("shared");
    let (input_digest, input_check, _) = layout.ids(&spec.tasks[0].inputs, None);
    let mut s = WorkerSession::new(shoal_core::wire::message::Hello { cache_bytes: 1 << 20, ..hello("w") });
    let welcome = Welcome {
        protocol_version: shoal_core::wire::PROTOCOL_VERSION,
        worker_id: shoal_core::WorkerId::new("w").expect("id"),
        heartbeat_interval_ms: 10_000,
        max_frame_payload: 1 << 20,
    };
    session_outputs(&mut s, Message::Welcome(welcome), vec![]);
    let offer = |n: u8, attached: bool| TaskOffer {
        assignment: shoal_core::AssignmentId::from_bytes([n; 16]),
        task: shoal_core::TaskId::from_bytes([n; 16]),
        job: JobId::from_bytes([1; 16]),
        kernel: std::sync::Arc::new(spec.tasks[0].kernel.clone()),
        inputs: vec![],
        parts: vec![OfferPart::Attached, OfferPart::Shared { digest: d, attached }],
        input_digest,
        input_check,
        deadline_ms: 1000,
        exec_budget_ms: 1000,
    };
    let sent = |out: &[WorkerOutput]| -> Vec<Message> {
        out.iter().filter_map(|o| if let WorkerOutput::Send(e) = o { Some(e.message.clone()) } else { None }).collect()
    };
    let with_lens = |mut o: TaskOffer, att: &[Bytes]| {
        o.inputs = att.iter().map(|b| shoal_core::wire::message::AttachmentMeta { len: b.len() as u64 }).collect();
        Message::TaskOffer(o)
    };

    // Named but not held: taken, asked for at once, run once it arrives.
    let out = session_outputs(&mut s, with_lens(offer(1, false), std::slice::from_ref(&own)), vec![own.clone()]);
    let msgs = sent(&out);
    assert!(matches!(msgs[0], Message::TaskAck(_)));
    assert_eq!(
        msgs[1],
        Message::InputRequest(InputRequest { assignment: offer(1, false).assignment, digests: vec![d] })
    );
    assert!(!out.iter().any(|o| matches!(o, WorkerOutput::Run { .. })), "nothing to run yet");
    let data = |b: Bytes| InputData {
        assignment: offer(1, false).assignment,
        digests: vec![d],
        inputs: vec![shoal_core::wire::message::AttachmentMeta { len: b.len() as u64 }],
    };
    // Damaged on the way: refused, never cached.
    let mut bad = model.to_vec();
    bad[0] ^= 1;
    let out = session_outputs(&mut s, Message::InputData(data(model.clone())), vec![Bytes::from(bad)]);
    assert!(matches!(sent(&out)[..], [Message::Error(_)]), "{out:?}");
    // Asked again (a new assignment), it arrives whole and the task runs on it.
    session_outputs(&mut s, with_lens(offer(2, false), std::slice::from_ref(&own)), vec![own.clone()]);
    let mut d2 = data(model.clone());
    d2.assignment = offer(2, false).assignment;
    let out = session_outputs(&mut s, Message::InputData(d2), vec![model.clone()]);
    let run =
        out.iter().find_map(|o| if let WorkerOutput::Run { inputs, .. } = o { Some(inputs.clone()) } else { None });
    assert_eq!(run, Some(vec![own.clone(), model.clone()]));
    // Now held: the next offer that names it runs at once, no request.
    let out = session_outputs(&mut s, with_lens(offer(3, false), std::slice::from_ref(&own)), vec![own.clone()]);
    assert!(out.iter().any(|o| matches!(o, WorkerOutput::Run { .. })));
    assert!(!sent(&out).iter().any(|m| matches!(m, Message::InputRequest(_))));
    // An attached shared input that is not what its digest says is refused.
    let mut wrong = model.to_vec();
    wrong[5] ^= 0x40;
    let att = vec![own.clone(), Bytes::from(wrong)];
    let out = session_outputs(&mut s, with_lens(offer(4, true), &att), att);
    assert!(matches!(sent(&out)[..], [Message::Error(_)]), "{out:?}");
    // A tampered own part fails the checksum.
    let mut tampered = own.to_vec();
    tampered[0] ^= 1;
    let att = vec![Bytes::from(tampered)];
    let out = session_outputs(&mut s, with_lens(offer(5, false), &att), att);
    assert!(matches!(sent(&out)[..], [Message::Error(_)]), "{out:?}");
}

#[test]
fn a_hello_lists_at_most_the_most_recent_held_inputs_and_a_longer_list_is_refused() {
    use shoal_core::shared_inputs::InputCache;
    use shoal_core::wire::message::{HeldInput, MessageDecoder, WireLimits, MAX_HELD_INPUTS};
    let mut cache = InputCache::logged(1 << 20);
    for i in 0..(MAX_HELD_INPUTS as u64 + 44) {
        cache.insert(shoal_core::Digest::of(&i.to_le_bytes()), 1, Bytes::from_static(b"x"));
    }
    let mut s = WorkerSession::with_cache(hello("w"), cache);
    let challenge = shoal_core::wire::message::Challenge { nonce: [1; 16] };
    s.handle(
        Millis(1),
        shoal_core::worker::WorkerInput::Received(shoal_core::wire::Envelope::bare(Message::Challenge(challenge))),
    );
    let Some(shoal_core::worker::WorkerOutput::Send(e)) = s.poll_output() else { panic!("the hello") };
    let Message::Hello(h) = e.message else { panic!("a hello") };
    assert_eq!(h.held.len(), MAX_HELD_INPUTS);
    assert_eq!(
        h.held.last().map(|x| x.digest),
        Some(shoal_core::Digest::of(&(MAX_HELD_INPUTS as u64 + 43).to_le_bytes()))
    );

    let mut long = *h;
    long.held.push(HeldInput { digest: shoal_core::Digest::of(b"one more"), len: 1 });
    let mut bytes = bytes::BytesMut::new();
    shoal_core::wire::Envelope::bare(Message::Hello(Box::new(long)))
        .encode_into(&WireLimits::default(), &mut bytes)
        .expect("encodes");
    let mut d = MessageDecoder::new(WireLimits::default()).expect("limits");
    d.push_bytes(bytes.freeze());
    assert!(d.next_envelope().is_err(), "a hello listing more held inputs than the cap is refused");
}
