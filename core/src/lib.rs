//! # shoal-core
//!
//! Everything in Shoal that is logic and no I/O: the wire protocol, the
//! kernel catalogue, the coordinator's brain (registry, admission,
//! dispatch, watchdog, verification by quorum, credibility, slashing,
//! epochs and exact rewards), the worker's side of the protocol, and the
//! consensus machine that agrees on payouts. This crate never touches a
//! socket, a file, a thread, a timer, a clock or an OS random source.
//! Time comes in as an argument ([`Millis`]), randomness as bytes the
//! host chose, and decisions go out as values. So the very same code runs
//! in the native coordinator, in a native worker and in a browser tab
//! (wasm32), and everything hard is tested as fast, deterministic
//! simulations.
//!
//! ## The loop
//!
//! Every machine here speaks one vocabulary, in the style of `str0m` and
//! `quinn-proto`: `handle(now, input)` feeds what happened,
//! `poll_output()` drains what to do, `poll_timeout()` says when to wake
//! up at the latest. The machines are [`coordinator::Coordinator`],
//! [`worker::WorkerSession`], [`consensus::ConsensusMachine`] and
//! [`consensus::solo::SoloSettlement`]. A host owns the sockets, the
//! storage and the clock and runs this loop:
//!
//! 1. feed inputs: frames from workers, connections opening and closing,
//!    operators' [`coordinator::Command`]s (a job, a cancel, an epoch to
//!    close), and [`coordinator::Input::Tick`] when the timeout is due;
//! 2. perform outputs in order: write each
//!    [`coordinator::Output::Persist`] durably before anything after it,
//!    then send frames, close connections, deliver
//!    [`coordinator::Output::Answer`]s to whoever holds the ticket;
//! 3. sleep until `poll_timeout()` or the next input.
//!
//! Here a coordinator and two workers are wired by hand, with a fake
//! clock, and one job is verified by both:
//!
//! ```
//! use bytes::Bytes;
//! use shoal_core::coordinator::{
//!     Answer, Command, Coordinator, CoordinatorConfig, Input, JobSpec, Output, TaskSpec, Ticket,
//! };
//! use shoal_core::kernels::{KernelId, KernelSpec, Sha256Params};
//! use shoal_core::wire::message::{Backend, DeviceInfo, DeviceType, Hello, HelloAuth};
//! use shoal_core::wire::PROTOCOL_VERSION;
//! use shoal_core::worker::{WorkerInput, WorkerOutput, WorkerSession};
//! use shoal_core::{ConnId, Millis, OriginKey, WorkerId};
//!
//! // The coordinator: settings, no worker secret (tokens unchecked) and
//! // 32 bytes of entropy from the host.
//! let mut cfg = CoordinatorConfig::default();
//! cfg.profile.benchmark_size = 16; // a tiny admission benchmark…
//! cfg.profile.benchmark_max_size = 16; // …that does not grow
//! cfg.profile.min_mflops = 1;
//! let mut coordinator = Coordinator::new(cfg, None, [7; 32]);
//!
//! // Two workers, as a native worker or a browser tab runs them.
//! let hello = |id: &str| Hello {
//!     protocol_version: PROTOCOL_VERSION,
//!     worker_id: WorkerId::new(id).unwrap(),
//!     auth: HelloAuth::Token(String::new()),
//!     device: DeviceInfo {
//!         backend: Backend::Cpu,
//!         device_type: DeviceType::Cpu,
//!         vendor: "example".into(),
//!         name: "example".into(),
//!         driver: "example".into(),
//!         max_buffer_bytes: 1 << 30,
//!         max_storage_binding_bytes: 1 << 27,
//!         max_workgroup_invocations: 256,
//!         kernels: KernelId::ALL.to_vec(),
//!     },
//!     software: "example".into(),
//!     max_concurrent: 2,
//!     cache_bytes: 0,
//!     held: Vec::new(),
//! };
//! let mut workers = [WorkerSession::new(hello("alice")), WorkerSession::new(hello("bob"))];
//! let mut now = Millis(1_000);
//! for i in 0..2 {
//!     // Distinct origins: replicas of a task never share one.
//!     coordinator.handle(now, Input::Connected { conn: ConnId(i), origin: OriginKey(i), host: None });
//! }
//!
//! // One SHA-256 task, run by two workers, submitted as a command.
//! let kernel = KernelSpec::Sha256(Sha256Params { count: 4, message_len: 32 });
//! let inputs = kernel.seeded_inputs(42).into_iter().map(Bytes::from).collect();
//! let mut job = JobSpec::new(vec![TaskSpec { kernel, inputs }]);
//! job.redundancy = Some(2);
//! let mut submit = Some(Input::Command { ticket: Ticket(1), command: Command::SubmitJob(job.into()) });
//! let mut job_id = None;
//!
//! for _ in 0..100 {
//!     // The workers' hosts: send what the sessions say, run kernels.
//!     let mut inputs: Vec<Input> = submit.take().into_iter().collect();
//!     for (i, worker) in workers.iter_mut().enumerate() {
//!         while let Some(output) = worker.poll_output() {
//!             match output {
//!                 WorkerOutput::Send(envelope) => {
//!                     inputs.push(Input::Received { conn: ConnId(i as u64), envelope });
//!                 }
//!                 WorkerOutput::Run { assignment, kernel, inputs, .. } => {
//!                     let refs: Vec<&[u8]> = inputs.iter().map(|b| &b[..]).collect();
//!                     let outcome = kernel.run_cpu(&refs).map_err(|e| e.to_string());
//!                     let outcome = outcome.map(|o| o.into_iter().map(Bytes::from).collect());
//!                     worker.handle(now, WorkerInput::Finished { assignment, outcome });
//!                 }
//!                 // Nothing to abort, sign, keep on disk or announce here.
//!                 _ => {}
//!             }
//!         }
//!     }
//!     // The coordinator's host: one round for everything that arrived.
//!     now = now + Millis(5);
//!     if coordinator.poll_timeout().is_some_and(|t| t <= now) {
//!         inputs.push(Input::Tick);
//!     }
//!     coordinator.handle_batch(now, inputs);
//!     while let Some(output) = coordinator.poll_output() {
//!         match output {
//!             Output::Persist(_diff) => {} // a real host makes it durable first
//!             Output::Send { conn, envelope } => {
//!                 workers[conn.0 as usize].handle(now, WorkerInput::Received(envelope));
//!             }
//!             Output::Answer { answer: Answer::JobSubmitted(accepted), .. } => job_id = Some(accepted.unwrap()),
//!             Output::Answer { .. } | Output::Close { .. } | Output::Event(_) => {}
//!         }
//!     }
//!     if job_id.and_then(|j| coordinator.job_progress(j)).is_some_and(|p| p.finished()) {
//!         break;
//!     }
//! }
//!
//! let job = job_id.expect("the job was accepted");
//! let task = coordinator.job_tasks(job).unwrap()[0];
//! let result = coordinator.task_result(task).expect("verified");
//! assert_eq!(result.agreed.len(), 2, "both workers returned the same bytes");
//! ```
//!
//! ## Modules
//!
//! - [`wire`]: the frame codec (`[u32 BE type][u32 BE length][payload]`,
//!   capped), the typed worker protocol, message batches, and the
//!   Pilot-compatible JSON frames.
//! - [`coordinator`]: the [`coordinator::Coordinator`] machine (its
//!   `engine` folder has one file per concern), worker profiles and
//!   tiers, exact epoch rewards, the chained ledger of state diffs, the
//!   stored records and the restart path, the configuration.
//! - [`worker`]: the worker's side of the protocol, shared by the native
//!   worker and the browser tab.
//! - [`kernels`]: the catalogue (SHA-256, matmul, Mandelbrot, custom
//!   WGSL): WGSL source, layout, cost, comparator and CPU reference.
//! - [`consensus`]: the generic BFT consensus machine, its table and
//!   diagrams, and the single-prover settlement ([`consensus::solo`]).
//! - [`task`]: the Pilot task lifecycle, its stamps, timeouts, size
//!   bounds and result-file policy.
//! - [`score`] (the polo score), [`amount`] (base-unit amounts),
//!   [`auth`] (HMAC worker tokens), [`ids`] and [`digest`] (identifiers,
//!   BLAKE3 digests), [`rng`] (a seeded generator), [`time`] (the
//!   millisecond type every time-dependent function takes).
//! - `sim`, with the `sim` feature: the deterministic swarm simulator
//!   (honest, slow, flaky, hanging, lying and colluding workers around
//!   the real coordinator); `consensus::sim` likewise for the consensus
//!   network. Off by default: the browser's wasm does not carry them.

pub mod amount;
pub mod auth;
pub mod benchmark;
pub mod consensus;
pub mod coordinator;
pub mod digest;
pub mod identity;
pub mod ids;
pub mod kernels;
pub mod rng;
pub mod score;
pub mod shared_inputs;
#[cfg(feature = "sim")]
pub mod sim;
pub mod task;
pub mod time;
pub mod wire;
pub mod worker;

pub use digest::{Digest, DigestHasher};
pub use ids::{AssignmentId, ConnId, JobId, OriginKey, TaskId, WorkerId};
pub use time::{Micros, Millis};
