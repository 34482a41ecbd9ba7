//! A seeded swarm, end to end through shoal-core, on a fake clock.
//!
//! Workers authenticate with HMAC tokens; jobs of every built-in kernel are
//! split into tasks; every task goes to two distinct workers as real wire
//! frames (offer + input attachments, delivered in random chunk sizes),
//! each worker runs the kernel's CPU reference (some lie, one never
//! answers), results come back as frames, replicas are compared with the
//! kernel's comparator, a disagreement is escalated to a third worker and
//! decided by majority, and each accepted assignment earns a polo score
//! from durations measured on the coordinator's clock.
//!
//! This is the `cargo xtask up` of Shoal until the coordinator service
//! exists: `cargo run --release -p shoal-core --example swarm_demo -- --seed 7`

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};
use shoal_core::auth::{derive_token, verify_token, MasterSecret};
use shoal_core::kernels::{KernelSpec, MandelbrotParams, MatmulParams, Sha256Params};
use shoal_core::rng::SplitMix64;
use shoal_core::score::polo_score;
use shoal_core::task::TaskLifecycle;
use shoal_core::wire::message::{AttachmentMeta, Backend, TaskOffer, TaskResult};
use shoal_core::wire::{Envelope, Message, MessageDecoder, WireLimits};
use shoal_core::{AssignmentId, Digest, JobId, Millis, TaskId, WorkerId};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Honest,
    /// Flips one output byte in this many percent of its results.
    Corrupts(u64),
    /// Never answers an offer.
    Silent,
}

struct Worker {
    id: WorkerId,
    backend: Backend,
    behaviour: Behaviour,
    /// Operations per millisecond (the simulation's notion of speed).
    ops_per_ms: u64,
    accepted: u32,
    outvoted: u32,
    timeouts: u32,
    score: u64,
}

#[derive(Default)]
struct Stats {
    frames: u64,
    bytes: u64,
    timeouts: u64,
    mismatches: u64,
    escalations: u64,
    dead_letters: u64,
    verified: u64,
    truthful: u64,
}

/// One replica's answer, as the coordinator sees it.
struct Reply {
    worker: usize,
    outputs: Vec<Bytes>,
    life: TaskLifecycle,
}

const MAX_REPLICAS: usize = 4;

fn main() {
    let mut seed = 7u64;
    let mut n_workers = 10usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().and_then(|v| v.parse::<u64>().ok());
        match (a.as_str(), v) {
            ("--seed", Some(v)) => seed = v,
            ("--workers", Some(v)) if v >= 4 => n_workers = v as usize,
            _ => {
                eprintln!("usage: swarm_demo [--seed N] [--workers N>=4]");
                std::process::exit(2);
            }
        }
    }
    let mut rng = SplitMix64::new(seed);
    let secret = MasterSecret::new(format!("shoal-demo-secret-{seed:016x}")).expect("long enough");

    let mut workers = make_workers(n_workers, &mut rng);

    println!(
        "Shoal swarm demo (seed {seed}): {n_workers} workers, redundancy 2, escalation up to {MAX_REPLICAS} replicas"
    );
    // Admission by token: every worker presents its own; an impostor reuses one.
    for w in &workers {
        let token = derive_token(&secret, &w.id);
        verify_token(&secret, &w.id, &token).expect("own token verifies");
    }
    let impostor = WorkerId::new("impostor").expect("valid id");
    let stolen = derive_token(&secret, &workers[0].id);
    let refusal = verify_token(&secret, &impostor, &stolen).expect_err("stolen token must fail");
    println!(
        "auth:  {n_workers} workers admitted by HMAC token; impostor presenting worker-00's token refused: {refusal}"
    );

    let jobs = build_jobs();
    let limits = WireLimits::default();
    let mut stats = Stats::default();
    let mut now = Millis(1_763_770_000_000);
    let mut image: BTreeMap<(u32, u32), Vec<u8>> = BTreeMap::new();
    let mut per_kernel: BTreeMap<&'static str, usize> = BTreeMap::new();

    for (job_no, (kernel_name, tasks)) in jobs.iter().enumerate() {
        let job = JobId::from_bytes(rng.bytes16());
        *per_kernel.entry(kernel_name).or_default() += tasks.len();
        for (task_no, (spec, origin)) in tasks.iter().enumerate() {
            let task = TaskId::from_bytes(rng.bytes16());
            let inputs: Vec<Bytes> = spec
                .seeded_inputs(seed ^ ((job_no as u64) << 32 | task_no as u64))
                .into_iter()
                .map(Bytes::from)
                .collect();
            let mut replies: Vec<Reply> = Vec::new();
            let mut tried: Vec<usize> = Vec::new();
            let accepted_outputs = loop {
                // Decide whether the replicas so far settle the task.
                if let Some(outputs) = majority(spec, &replies) {
                    break Some(outputs);
                }
                if tried.len() >= n_workers || replies.len() >= MAX_REPLICAS {
                    break None;
                }
                if replies.len() >= 2 {
                    stats.escalations += 1;
                }
                let w = pick_distinct(&mut rng, n_workers, &tried);
                tried.push(w);
                now = now + Millis(5);
                if let Some(reply) =
                    run_assignment(&mut workers, w, spec, job, task, &inputs, &limits, &mut rng, &mut now, &mut stats)
                {
                    replies.push(reply);
                }
            };
            let Some(outputs) = accepted_outputs else {
                stats.dead_letters += 1;
                continue;
            };
            stats.verified += 1;
            credit(spec, &inputs, &outputs, replies, &mut workers, &mut stats, now);
            if let Some(o) = origin {
                image.insert(*o, outputs[0].to_vec());
            }
        }
    }

    report(&workers, &stats, &per_kernel, &image);
}

fn report(
    workers: &[Worker],
    stats: &Stats,
    per_kernel: &BTreeMap<&'static str, usize>,
    image: &BTreeMap<(u32, u32), Vec<u8>>,
) {
    let total: usize = per_kernel.values().sum();
    let kinds: Vec<String> = per_kernel.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("jobs:  {total} tasks ({})", kinds.join(", "));
    println!(
        "wire:  {} frames, {:.2} MB through the codec in random chunk sizes, 0 decode errors",
        stats.frames,
        stats.bytes as f64 / 1e6
    );
    println!(
        "verify: {}/{} tasks verified by quorum; {} mismatches caught, {} escalations, {} accept timeouts reassigned, {} dead-lettered",
        stats.verified, total, stats.mismatches, stats.escalations, stats.timeouts, stats.dead_letters
    );
    println!("truth: {}/{} accepted outputs equal the CPU reference", stats.truthful, stats.verified);
    println!("\n  worker     backend        behaviour      accepted  outvoted  timeouts  polo");
    for w in workers {
        let b = match w.behaviour {
            Behaviour::Honest => "honest".to_owned(),
            Behaviour::Corrupts(p) => format!("lies {p}%"),
            Behaviour::Silent => "silent".to_owned(),
        };
        println!(
            "  {:<10} {:<14} {:<14} {:>8}  {:>8}  {:>8}  {:>4}",
            w.id.as_str(),
            format!("{:?}", w.backend),
            b,
            w.accepted,
            w.outvoted,
            w.timeouts,
            w.score
        );
    }
    println!("\nmandelbrot, assembled from verified tiles:");
    print!("{}", render(image));
}

/// Checks accepted outputs against the CPU reference (the demo knows the
/// truth; the coordinator does not), credits agreeing replicas with their
/// polo score and marks the outvoted.
fn credit(
    spec: &KernelSpec,
    inputs: &[Bytes],
    outputs: &[Bytes],
    replies: Vec<Reply>,
    workers: &mut [Worker],
    stats: &mut Stats,
    now: Millis,
) {
    let input_refs: Vec<&[u8]> = inputs.iter().map(|b| &b[..]).collect();
    let truth = spec.run_cpu(&input_refs).expect("valid spec");
    let out_refs: Vec<&[u8]> = outputs.iter().map(|b| &b[..]).collect();
    let truth_refs: Vec<&[u8]> = truth.iter().map(Vec::as_slice).collect();
    if spec.comparator().agree(&out_refs, &truth_refs) {
        stats.truthful += 1;
    }
    // Credit agreeing replicas; mark the outvoted.
    for mut r in replies {
        let refs: Vec<&[u8]> = r.outputs.iter().map(|b| &b[..]).collect();
        if spec.comparator().agree(&refs, &out_refs) {
            r.life.succeed(now).expect("completed replica");
            let d = r.life.durations();
            workers[r.worker].score += polo_score(d.idle_ms, d.staged_ms, d.cpu_ms).reward;
            workers[r.worker].accepted += 1;
        } else {
            r.life.cancel(now, "outvoted by the other replicas").expect("completed replica");
            workers[r.worker].outvoted += 1;
            stats.mismatches += 1;
        }
    }
}

/// Most workers are honest; two lie, one never answers.
fn make_workers(n_workers: usize, rng: &mut SplitMix64) -> Vec<Worker> {
    let backends = [Backend::Vulkan, Backend::BrowserWebGpu, Backend::Metal, Backend::Cpu];
    (0..n_workers)
        .map(|i| {
            let behaviour = match i {
                1 => Behaviour::Corrupts(60),
                4 => Behaviour::Corrupts(25),
                7 => Behaviour::Silent,
                _ => Behaviour::Honest,
            };
            Worker {
                id: WorkerId::new(format!("worker-{i:02}")).expect("valid id"),
                backend: backends[i % backends.len()],
                behaviour,
                ops_per_ms: 200_000 + rng.below(2_000_000),
                accepted: 0,
                outvoted: 0,
                timeouts: 0,
                score: 0,
            }
        })
        .collect()
}

/// The jobs of the demo: (kernel name, tasks with an optional image tile origin).
type Job = (&'static str, Vec<(KernelSpec, Option<(u32, u32)>)>);

fn build_jobs() -> Vec<Job> {
    let sha = (0..8).map(|_| (KernelSpec::Sha256(Sha256Params { count: 256, message_len: 64 }), None)).collect();
    let mm = (0..8).map(|_| (KernelSpec::MatmulF32(MatmulParams::square(64)), None)).collect();
    let mut tiles = Vec::new();
    for ty in 0..3u32 {
        for tx in 0..4u32 {
            let p = MandelbrotParams::from_plane(
                TILE,
                TILE,
                -2.2 + f64::from(tx * TILE) * STEP,
                -1.2 + f64::from(ty * TILE) * STEP,
                STEP,
                200,
            );
            tiles.push((KernelSpec::Mandelbrot(p), Some((tx, ty))));
        }
    }
    vec![("sha256", sha), ("matmul_f32", mm), ("mandelbrot", tiles)]
}

const TILE: u32 = 16;
const STEP: f64 = 0.05;

/// A worker not tried yet for this task.
fn pick_distinct(rng: &mut SplitMix64, n: usize, tried: &[usize]) -> usize {
    loop {
        let w = rng.below(n as u64) as usize;
        if !tried.contains(&w) {
            return w;
        }
    }
}

/// The outputs that at least two replicas agree on, if any.
fn majority(spec: &KernelSpec, replies: &[Reply]) -> Option<Vec<Bytes>> {
    let cmp = spec.comparator();
    for (i, a) in replies.iter().enumerate() {
        let ra: Vec<&[u8]> = a.outputs.iter().map(|b| &b[..]).collect();
        let votes = replies
            .iter()
            .enumerate()
            .filter(|(j, b)| {
                let rb: Vec<&[u8]> = b.outputs.iter().map(|x| &x[..]).collect();
                *j == i || cmp.agree(&ra, &rb)
            })
            .count();
        if votes >= 2 && votes * 2 > replies.len() {
            return Some(a.outputs.clone());
        }
    }
    None
}

/// Encodes `env`, delivers it in random chunk sizes through a decoder, and
/// returns what the other side decoded.
fn deliver(env: &Envelope, limits: &WireLimits, rng: &mut SplitMix64, stats: &mut Stats) -> Envelope {
    let mut wire = BytesMut::new();
    env.encode_into(limits, &mut wire).expect("encodes");
    stats.frames += 1 + env.attachments.len() as u64;
    stats.bytes += wire.len() as u64;
    let wire = wire.freeze();
    let mut dec = MessageDecoder::new(*limits).expect("valid limits");
    let mut at = 0;
    let mut got = None;
    while at < wire.len() {
        let end = (at + 1 + rng.below(64 * 1024) as usize).min(wire.len());
        dec.push_bytes(wire.slice(at..end));
        at = end;
        if let Some(e) = dec.next_envelope().expect("valid stream") {
            got = Some(e);
        }
    }
    got.expect("a whole envelope arrived")
}

/// One replica of one task on worker `w`: offer over the wire, the worker's
/// run, the result over the wire. `None` if the worker never answered.
#[allow(clippy::too_many_arguments)]
fn run_assignment(
    workers: &mut [Worker],
    w: usize,
    spec: &KernelSpec,
    job: JobId,
    task: TaskId,
    inputs: &[Bytes],
    limits: &WireLimits,
    rng: &mut SplitMix64,
    now: &mut Millis,
    stats: &mut Stats,
) -> Option<Reply> {
    let assignment = AssignmentId::from_bytes(rng.bytes16());
    let offer = Envelope {
        message: Message::TaskOffer(TaskOffer {
            assignment,
            task,
            job,
            kernel: spec.clone(),
            inputs: inputs.iter().map(|b| AttachmentMeta { len: b.len() as u64 }).collect(),
            input_digest: Digest::of_parts(inputs.iter().map(|b| &b[..])),
            deadline_ms: 60_000,
        }),
        attachments: inputs.to_vec(),
    };
    let mut life = TaskLifecycle::new(*now);
    let received = deliver(&offer, limits, rng, stats);
    let worker = &mut workers[w];
    if worker.behaviour == Behaviour::Silent {
        // Nobody answers: the accept timeout fires on the coordinator's clock.
        let wake = life.next_deadline().expect("a NEW task has a deadline");
        *now = wake;
        life.expire_if_due(*now).expect("accept timeout due");
        worker.timeouts += 1;
        stats.timeouts += 1;
        return None;
    }
    // The worker checks the inputs it received and runs the kernel.
    let Message::TaskOffer(o) = &received.message else { unreachable!("sent an offer") };
    assert_eq!(Digest::of_parts(received.attachments.iter().map(|b| &b[..])), o.input_digest);
    *now = *now + Millis(2 + rng.below(40));
    life.accept(*now).expect("answered in time");
    *now = *now + Millis(rng.below(20));
    life.start(*now).expect("accepted");
    let refs: Vec<&[u8]> = received.attachments.iter().map(|b| &b[..]).collect();
    let mut outputs = o.kernel.run_cpu(&refs).expect("valid offer");
    if let Behaviour::Corrupts(p) = worker.behaviour {
        if rng.below(100) < p {
            let out = &mut outputs[0];
            let at = rng.below(out.len() as u64) as usize;
            out[at] ^= 0x5a;
        }
    }
    *now = *now + Millis(1 + o.kernel.cost().ops / worker.ops_per_ms);
    let outputs: Vec<Bytes> = outputs.into_iter().map(Bytes::from).collect();
    let result = Envelope {
        message: Message::TaskResult(TaskResult {
            assignment,
            outputs: outputs.iter().map(|b| AttachmentMeta { len: b.len() as u64 }).collect(),
            output_digest: Digest::of_parts(outputs.iter().map(|b| &b[..])),
        }),
        attachments: outputs,
    };
    let back = deliver(&result, limits, rng, stats);
    let Message::TaskResult(r) = &back.message else { unreachable!("sent a result") };
    // The coordinator recomputes the digest rather than trusting it.
    assert_eq!(Digest::of_parts(back.attachments.iter().map(|b| &b[..])), r.output_digest);
    life.complete(*now).expect("executing");
    Some(Reply { worker: w, outputs: back.attachments, life })
}

/// The assembled image as text, two pixel rows per line.
fn render(tiles: &BTreeMap<(u32, u32), Vec<u8>>) -> String {
    let (w, h) = (4 * TILE, 3 * TILE);
    let shades: &[u8] = b" .:-=+*#%@";
    let mut s = String::new();
    for y in (0..h).step_by(2) {
        s.push_str("  ");
        for x in 0..w {
            let Some(tile) = tiles.get(&(x / TILE, y / TILE)) else {
                s.push('?');
                continue;
            };
            let i = (((y % TILE) * TILE + x % TILE) * 4) as usize;
            let n = u32::from_le_bytes([tile[i], tile[i + 1], tile[i + 2], tile[i + 3]]);
            let c = if n >= 200 { b'@' } else { shades[(n as usize / 4).min(shades.len() - 2)] };
            s.push(c as char);
        }
        let _ = writeln!(s);
    }
    s
}
