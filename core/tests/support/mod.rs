//! The coordinator driven by hand on a fake clock, shared by the
//! coordinator's test files: a harness that joins workers and answers
//! offers, helpers that read its outputs, and a host's storage in
//! miniature for restarts.

#![allow(dead_code)] // each test file uses its own share

pub(crate) mod sessions;

use bytes::Bytes;
use shoal_core::auth::MasterSecret;
use shoal_core::benchmark::CpuAnswer;
use shoal_core::coordinator::ledger::WriteType;
use shoal_core::coordinator::{
    ConnId, Coordinator, CoordinatorConfig, Event, Input, JobSpec, OriginKey, Output, TaskSpec,
};
use shoal_core::kernels::{KernelId, KernelSpec, Sha256Params};
use shoal_core::wire::message::{
    Backend, BenchmarkChallenge, BenchmarkOffer, DeviceInfo, DeviceType, ErrorCode, Hello, HelloAuth, TaskAck,
    TaskOffer,
};
use shoal_core::wire::{Envelope, Message, PROTOCOL_VERSION};
use shoal_core::{Micros, Millis, WorkerId};

pub(crate) struct Harness {
    pub(crate) c: Coordinator,
    pub(crate) now: Millis,
    /// Microseconds past `now` (the benchmark is timed in µs).
    pub(crate) sub_us: u64,
    /// The input cache the workers' hellos declare.
    pub(crate) cache_bytes: u64,
}

pub(crate) fn config() -> CoordinatorConfig {
    let mut cfg = CoordinatorConfig::default();
    cfg.profile.benchmark_size = 16;
    cfg.profile.benchmark_max_size = 16;
    cfg.profile.min_mflops = 1;
    cfg.epoch.every = None;
    cfg.rewards.min_tasks = 1;
    cfg
}

pub(crate) fn device(backend: Backend) -> DeviceInfo {
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

pub(crate) fn answer(offer: &TaskOffer, inputs: &[Bytes]) -> Vec<Bytes> {
    let refs: Vec<&[u8]> = inputs.iter().map(|b| &b[..]).collect();
    offer.kernel.run_cpu(&refs).expect("valid offer").into_iter().map(Bytes::from).collect()
}

pub(crate) fn result_env(offer: &TaskOffer, outputs: Vec<Bytes>) -> Envelope {
    Envelope::task_result(offer.assignment, outputs)
}

pub(crate) fn sha_job(n: usize, redundancy: u8) -> JobSpec {
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
    pub(crate) fn new(cfg: CoordinatorConfig, secret: Option<MasterSecret>) -> Self {
        Harness { c: Coordinator::new(cfg, secret, [7; 32]), now: Millis(1_000_000), sub_us: 0, cache_bytes: 0 }
    }

    pub(crate) fn advance(&mut self, ms: u64) {
        self.now = self.now + Millis(ms);
    }

    pub(crate) fn advance_us(&mut self, us: u64) {
        let total = self.sub_us + us;
        self.now = self.now + Millis(total / 1_000);
        self.sub_us = total % 1_000;
    }

    pub(crate) fn input(&mut self, i: Input) -> Vec<Output> {
        self.c.handle_batch_at(Micros(self.now.0 * 1_000 + self.sub_us), std::iter::once(i));
        self.drain()
    }

    pub(crate) fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.c.poll_output()).collect()
    }

    pub(crate) fn send(&mut self, conn: u64, message: Message) -> Vec<Output> {
        self.input(Input::Received { conn: ConnId(conn), envelope: Envelope::bare(message) })
    }

    /// Connects and says hello as a worker session would: a non-empty
    /// token is proven over the connection's challenge, not sent.
    pub(crate) fn hello(&mut self, conn: u64, origin: u64, id: &str, auth: HelloAuth, backend: Backend) -> Vec<Output> {
        let out = self.input(Input::Connected { conn: ConnId(conn), origin: OriginKey(origin), host: None });
        let worker_id = WorkerId::new(id).expect("valid id");
        let auth = match auth {
            HelloAuth::Token(t) if !t.is_empty() => {
                let nonce = challenge(&out, conn).expect("a challenge first");
                HelloAuth::Proof(shoal_core::auth::hello_proof(&t, &nonce, &worker_id, 4))
            }
            other => other,
        };
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            worker_id,
            auth,
            device: device(backend),
            software: "test".into(),
            max_concurrent: 4,
            cache_bytes: self.cache_bytes,
            held: Vec::new(),
        };
        self.send(conn, Message::Hello(Box::new(hello)))
    }

    /// Connects and passes the benchmark; returns the outputs after admission.
    pub(crate) fn join(&mut self, conn: u64, origin: u64, id: &str, backend: Backend) -> Vec<Output> {
        let out = self.hello(conn, origin, id, HelloAuth::Token(String::new()), backend);
        self.pass_benchmark(conn, out, 8)
    }

    /// Answers the benchmark runs offered in `out` (and any that follow)
    /// on the CPU, each committed after the time a worker of `mflops`
    /// takes; returns every output since.
    pub(crate) fn pass_benchmark(&mut self, conn: u64, mut out: Vec<Output>, mflops: u64) -> Vec<Output> {
        let mut all = Vec::new();
        while let Some(offer) = benchmark_offer(&out, conn) {
            all.append(&mut out);
            let answer = CpuAnswer::run(&offer).expect("a benchmark");
            all.extend(self.send(conn, Message::TaskAck(TaskAck { assignment: offer.assignment })));
            self.advance_us((offer.kernel.ops() / mflops.max(1)).max(1));
            let committed = self.input(Input::Received { conn: ConnId(conn), envelope: answer.commit() });
            let Some(challenge) = benchmark_challenge(&committed, conn) else { return [all, committed].concat() };
            all.extend(committed);
            out = self.input(Input::Received { conn: ConnId(conn), envelope: answer.reveal(&challenge) });
        }
        all.append(&mut out);
        all
    }

    /// Gives each of these workers a verified result to its name (a job of
    /// single-replica tasks, every offer answered correctly), so their
    /// failures count against tasks.
    pub(crate) fn prove(&mut self, conns: &[u64]) {
        let job = self.c.submit_job(self.now, sha_job(conns.len() * 2, 1)).expect("accepted");
        let mut out = self.drain();
        while self.c.job_progress(job).is_some_and(|p| !p.finished()) {
            let mut next = Vec::new();
            for &c in conns {
                for (offer, inputs) in offers(&out, c) {
                    next.extend(self.complete(c, &offer, &inputs));
                }
            }
            assert!(!next.is_empty(), "proving stalled");
            out = next;
        }
    }

    /// Acks and answers an offer correctly.
    pub(crate) fn complete(&mut self, conn: u64, offer: &TaskOffer, inputs: &[Bytes]) -> Vec<Output> {
        let mut out = self.send(conn, Message::TaskAck(TaskAck { assignment: offer.assignment }));
        self.advance(2);
        out.extend(
            self.input(Input::Received { conn: ConnId(conn), envelope: result_env(offer, answer(offer, inputs)) }),
        );
        out
    }
}

/// The first message sent to connection `to` that `pick` takes.
fn first_sent<T>(out: &[Output], to: u64, pick: impl Fn(&Message) -> Option<T>) -> Option<T> {
    out.iter().find_map(|o| match o {
        Output::Send { conn, envelope } if *conn == ConnId(to) => pick(&envelope.message),
        _ => None,
    })
}

/// The benchmark run offered to connection `to`.
pub(crate) fn benchmark_offer(out: &[Output], to: u64) -> Option<BenchmarkOffer> {
    first_sent(out, to, |m| if let Message::BenchmarkOffer(b) = m { Some(b.clone()) } else { None })
}

/// The benchmark challenge sent to connection `to`.
pub(crate) fn benchmark_challenge(out: &[Output], to: u64) -> Option<BenchmarkChallenge> {
    first_sent(out, to, |m| if let Message::BenchmarkChallenge(c) = m { Some(c.clone()) } else { None })
}

pub(crate) fn offers(out: &[Output], to: u64) -> Vec<(TaskOffer, Vec<Bytes>)> {
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

/// The challenge sent to connection `to`.
pub(crate) fn challenge(out: &[Output], to: u64) -> Option<[u8; 16]> {
    first_sent(out, to, |m| if let Message::Challenge(c) = m { Some(c.nonce) } else { None })
}

pub(crate) fn events(out: &[Output]) -> Vec<Event> {
    out.iter().filter_map(|o| if let Output::Event(e) = o { Some(e.clone()) } else { None }).collect()
}

pub(crate) fn error_codes(out: &[Output], to: u64) -> Vec<ErrorCode> {
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

pub(crate) fn closed(out: &[Output], to: u64) -> bool {
    out.iter().any(|o| matches!(o, Output::Close { conn, .. } if *conn == ConnId(to)))
}

/// A host's storage in miniature: the latest value of every key, and the
/// chain head.
#[derive(Default)]
pub(crate) struct Store {
    pub(crate) kv: std::collections::BTreeMap<(String, Vec<u8>), Vec<u8>>,
    pub(crate) height: u64,
    pub(crate) digest: shoal_core::Digest,
}

impl Store {
    pub(crate) fn absorb(&mut self, out: &[Output]) {
        for o in out {
            if let Output::Persist(d) = o {
                assert!(d.verify(&self.digest), "diffs chain");
                assert_eq!(d.height, self.height + 1);
                self.height = d.height;
                self.digest = d.digest;
                for e in &d.entries {
                    let key = (e.namespace.to_string(), e.key.clone());
                    match e.write {
                        WriteType::Put => {
                            self.kv.insert(key, e.value.clone().into());
                        }
                        WriteType::Delete => {
                            self.kv.remove(&key);
                        }
                        WriteType::DeletePrefix => {
                            self.kv.retain(|(n, k), _| !(n == &key.0 && k.starts_with(&key.1)));
                        }
                    }
                }
            }
        }
    }

    pub(crate) fn snapshot(&self) -> shoal_core::coordinator::Snapshot {
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
