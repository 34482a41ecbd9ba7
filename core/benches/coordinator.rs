//! Coordinator throughput: CPU time per task replica through the whole
//! cycle (dispatch → ack → result → verify → credit), with 1 000 workers
//! and 1 000 000 queued tasks (the queue is topped up between measured
//! batches, so it stays a million deep); and memory per queued task.
//!
//! `cargo bench -p shoal-core --bench coordinator`

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shoal_core::benchmark::CpuAnswer;
use shoal_core::coordinator::{ConnId, Coordinator, CoordinatorConfig, Input, JobSpec, OriginKey, Output, TaskSpec};
use shoal_core::kernels::{KernelId, KernelSpec, Sha256Params};
use shoal_core::wire::message::{Backend, DeviceInfo, DeviceType, Hello, HelloAuth, TaskAck, TaskOffer};
use shoal_core::wire::{Envelope, Message, PROTOCOL_VERSION};
use shoal_core::{Millis, WorkerId};

/// The allocator the `shoal` binary runs the coordinator with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WORKERS: u64 = 1_000;
const TASKS: usize = 1_000_000;
const JOB: usize = 10_000;
const BATCH: usize = 512;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

/// A GPU worker's hello that runs every kernel.
fn hello(w: u64) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        worker_id: WorkerId::new(format!("w{w}")).expect("valid"),
        auth: HelloAuth::Token(String::new()),
        device: DeviceInfo {
            backend: Backend::Vulkan,
            device_type: DeviceType::DiscreteGpu,
            vendor: "bench".into(),
            name: "bench".into(),
            driver: "bench".into(),
            max_buffer_bytes: 1 << 30,
            max_storage_binding_bytes: 1 << 27,
            max_workgroup_invocations: 256,
            kernels: KernelId::ALL.to_vec(),
        },
        software: "bench".into(),
        max_concurrent: 16,
        cache_bytes: 0,
        held: Vec::new(),
    }
}

fn result_for(offer: &TaskOffer, inputs: &[Bytes]) -> Envelope {
    let refs: Vec<&[u8]> = inputs.iter().map(|b| &b[..]).collect();
    let outputs: Vec<Bytes> = offer.kernel.run_cpu(&refs).unwrap_or_default().into_iter().map(Bytes::from).collect();
    Envelope::task_result(offer.assignment, outputs)
}

struct Bench {
    c: Coordinator,
    now: Millis,
    offers: VecDeque<(ConnId, TaskOffer, Vec<Bytes>)>,
    jobs: VecDeque<shoal_core::JobId>,
    submitted: usize,
    /// Release finished jobs from memory, as a long-running host does.
    evict: bool,
}

impl Bench {
    fn collect(&mut self) {
        while let Some(o) = self.c.poll_output() {
            if let Output::Send { conn, envelope } = o {
                if let Message::TaskOffer(offer) = envelope.message {
                    self.offers.push_back((conn, offer, envelope.attachments));
                }
            }
        }
    }

    fn submit(&mut self, n: usize) {
        // Inputs are slices of one received buffer, as a host decoding a
        // submission hands them over (copying a slice is a reference count).
        let mut buf = BytesMut::with_capacity(n * 16);
        let tasks = (0..n)
            .map(|i| {
                let kernel = KernelSpec::Sha256(Sha256Params { count: 1, message_len: 16 });
                let inputs = kernel
                    .seeded_inputs((self.submitted + i) as u64)
                    .into_iter()
                    .map(|v| {
                        buf.extend_from_slice(&v);
                        buf.split().freeze()
                    })
                    .collect();
                TaskSpec { kernel, inputs }
            })
            .collect();
        self.submitted += n;
        let job = self.c.submit_job(self.now, JobSpec::new(tasks)).expect("accepted");
        self.jobs.push_back(job);
        self.collect();
    }

    /// The first message to `conn` that `pick` takes (other outputs dropped).
    fn sent_to<T>(&mut self, conn: ConnId, pick: impl Fn(Message) -> Option<T>) -> Option<T> {
        let mut found = None;
        while let Some(o) = self.c.poll_output() {
            if let Output::Send { conn: to, envelope } = o {
                if to == conn && found.is_none() {
                    found = pick(envelope.message);
                }
            }
        }
        found
    }

    /// Answers `conn`'s admission benchmark (offer → commitment →
    /// challenge → reveal), so the worker is admitted.
    fn admit(&mut self, conn: ConnId) {
        let offer = self
            .sent_to(conn, |m| if let Message::BenchmarkOffer(o) = m { Some(o) } else { None })
            .expect("a benchmark offered");
        let answer = CpuAnswer::run(&offer).expect("a benchmark the CPU runs");
        self.now = self.now + Millis(1);
        self.c.handle(self.now, Input::Received { conn, envelope: answer.commit() });
        let challenge = self
            .sent_to(conn, |m| if let Message::BenchmarkChallenge(c) = m { Some(c) } else { None })
            .expect("a challenge sent");
        self.c.handle(self.now, Input::Received { conn, envelope: answer.reveal(&challenge) });
        self.collect();
        assert!(self.offers.is_empty(), "no task is queued yet");
    }

    fn setup() -> Self {
        let mut cfg =
            CoordinatorConfig { max_workers: WORKERS as usize, max_queued_tasks: 4 * TASKS, ..Default::default() };
        cfg.profile.benchmark_size = 8;
        cfg.profile.benchmark_max_size = 8;
        cfg.profile.min_mflops = 0;
        cfg.epoch.every = None;
        cfg.stale_after = Millis::from_mins(1_000_000);
        cfg.ack_timeout = Millis::from_mins(1_000_000);
        let mut b = Bench {
            c: Coordinator::new(cfg, None, [3; 32]),
            now: Millis(1),
            offers: VecDeque::new(),
            jobs: VecDeque::new(),
            submitted: 0,
            evict: true,
        };
        for w in 0..WORKERS {
            b.c.handle(b.now, Input::Connected { conn: ConnId(w), origin: OriginKey(w), host: None });
            let envelope = Envelope::bare(Message::Hello(Box::new(hello(w))));
            b.c.handle(b.now, Input::Received { conn: ConnId(w), envelope });
            b.admit(ConnId(w));
        }
        b.offers.clear();
        b
    }

    /// Runs `n` replicas; returns the time spent inside the coordinator.
    fn run(&mut self, n: u64) -> Duration {
        let mut spent = Duration::ZERO;
        let mut left = n as usize;
        while left > 0 {
            // Not timed: keep a million tasks queued, so every task dispatched
            // was submitted long before and is cold in the caches, as in a
            // coordinator holding a deep backlog.
            while self.c.pending_tasks() + JOB <= TASKS || self.offers.is_empty() {
                self.submit(JOB);
            }
            let take = left.min(BATCH).min(self.offers.len());
            // Worker side, not timed: compute the answers.
            let batch: Vec<(ConnId, TaskOffer, Envelope)> = self
                .offers
                .drain(..take)
                .map(|(conn, offer, inputs)| {
                    let env = result_for(&offer, &inputs);
                    (conn, offer, env)
                })
                .collect();
            // Acks arrive in one read, results in the next (the worker computes in between).
            let (acks, results): (Vec<Input>, Vec<Input>) = batch
                .into_iter()
                .map(|(conn, offer, result)| {
                    let ack = Envelope::bare(Message::TaskAck(TaskAck { assignment: offer.assignment }));
                    (Input::Received { conn, envelope: ack }, Input::Received { conn, envelope: result })
                })
                .unzip();
            let start = Instant::now();
            for round in [acks, results] {
                self.now = self.now + Millis(1);
                self.c.handle_batch(self.now, round);
                while let Some(o) = self.c.poll_output() {
                    if let Output::Send { conn, envelope } = o {
                        if let Message::TaskOffer(offer) = envelope.message {
                            self.offers.push_back((conn, offer, envelope.attachments));
                        }
                    } else {
                        black_box(o);
                    }
                }
            }
            // The host forgets finished jobs once their results are delivered.
            while let Some(&job) = self.jobs.front() {
                if !self.evict || !self.c.forget_job(job) {
                    break;
                }
                self.jobs.pop_front();
            }
            spent += start.elapsed();
            left -= take;
        }
        spent
    }
}

fn coordinator(c: &mut Criterion) {
    let mut b = Bench::setup();
    let before = rss_bytes();
    let t = Instant::now();
    let mut left = TASKS;
    while left > 0 {
        let n = left.min(JOB);
        b.submit(n);
        left -= n;
    }
    let after = rss_bytes();
    println!(
        "submitted {TASKS} tasks to {WORKERS} workers in {:.2?}; memory per queued task ≈ {} bytes (RSS delta, inputs of 16 bytes included)",
        t.elapsed(),
        after.saturating_sub(before) / TASKS as u64
    );
    // `SHOAL_BENCH_CHUNKS=n`: also print the cost of n consecutive chunks of
    // 100 000 replicas, to see how it drifts as the queue drains.
    let chunks: u32 = std::env::var("SHOAL_BENCH_CHUNKS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    for i in 0..chunks {
        let spent = b.run(100_000);
        println!("chunk {i}: {:.2} µs per replica", spent.as_secs_f64() * 1e6 / 100_000.0);
    }
    let mut g = c.benchmark_group("coordinator");
    g.throughput(Throughput::Elements(1));
    g.bench_function("replica_cycle_1k_workers_1M_tasks", |bench| bench.iter_custom(|iters| b.run(iters)));
    b.evict = false;
    g.bench_function("replica_cycle_without_eviction", |bench| bench.iter_custom(|iters| b.run(iters)));
    g.finish();
    println!("pending tasks at the end: {}, verified: {}", b.c.pending_tasks(), b.c.stats().verified);
}

criterion_group!(benches, coordinator);
criterion_main!(benches);
