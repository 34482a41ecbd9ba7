//! A deterministic swarm simulator over the sans-I/O [`Coordinator`].
//!
//! Simulated workers (honest, slow, flaky, hanging, liars, colluders,
//! Sybils, throttled tabs) talk to a real `Coordinator` through real
//! envelopes on a simulated network with latency, on a fake clock, all
//! driven by one seed. The simulator knows the truth (it runs each kernel's
//! CPU reference), so it can count what the coordinator accepted wrongly —
//! something no coordinator can know by itself.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use bytes::Bytes;

use crate::coordinator::{
    ConnId, Coordinator, CoordinatorConfig, Event, Input, JobSpec, OriginKey, Output, TaskPhase, TaskSpec,
};
use crate::digest::Digest;
use crate::ids::{AssignmentId, JobId, WorkerId};
use crate::kernels::{KernelId, KernelSpec, Sha256Params};
use crate::rng::SplitMix64;
use crate::time::Millis;
use crate::wire::message::{
    Backend, DeviceInfo, DeviceType, ErrorCode, ErrorMessage, Heartbeat, Hello, HelloAuth, TaskAck, TaskDecline,
    TaskOffer,
};
use crate::wire::{Envelope, Message, PROTOCOL_VERSION};

/// How a simulated worker behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Behaviour {
    /// Does every task right.
    Honest,
    /// Right, but this many times slower than its measured speed suggests.
    Slow(u32),
    /// Disconnects on this percent of offers and comes back later.
    Flaky(u32),
    /// Acknowledges, then never answers this percent of offers (a silent
    /// acceptor).
    Hanging(u32),
    /// Declines this percent of offers.
    Decliner(u32),
    /// Reports an execution failure on this percent of offers.
    Failer(u32),
    /// Returns a random wrong answer on this percent of tasks.
    Liar(u32),
    /// Returns the wrong answer all colluders agree on, on this percent of tasks.
    Colluder(u32),
    /// Honest for its first `honest_tasks` tasks (building credibility),
    /// then a colluder on `lie_pct` percent of tasks.
    Sleeper {
        /// Tasks done right first.
        honest_tasks: u32,
        /// Then this percent wrong, the answer colluders agree on.
        lie_pct: u32,
    },
    /// A colluder on this percent of tasks that tries to recognise spot
    /// checks: it answers honestly on a task of a job it has not seen
    /// before (the tell of ringers with job ids of their own).
    Spotter(u32),
    /// A browser tab suspended for `pause` every `every` (no heartbeats, no work).
    Throttled {
        /// How often.
        every: Millis,
        /// For how long.
        pause: Millis,
    },
}

/// A group of identical workers.
#[derive(Clone, Debug)]
pub struct WorkerGroup {
    /// How many.
    pub count: usize,
    /// How they behave.
    pub behaviour: Behaviour,
    /// Their speed in MFLOPS.
    pub mflops: u64,
    /// All of them share one network origin (a Sybil farm).
    pub same_origin: bool,
    /// Once slashed, each comes back under a fresh id with a clean record
    /// (a guest rejoining, or an identity dropped for a new key): the
    /// "whitewashing" Sybil.
    pub whitewash: bool,
}

impl WorkerGroup {
    /// `count` workers of one behaviour at 10 000 MFLOPS, each on its own
    /// origin, keeping their ids.
    pub fn of(count: usize, behaviour: Behaviour) -> Self {
        WorkerGroup { count, behaviour, mflops: 10_000, same_origin: false, whitewash: false }
    }
}

/// One simulation.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Everything random follows from this.
    pub seed: u64,
    /// The coordinator under test.
    pub coordinator: CoordinatorConfig,
    /// The swarm.
    pub workers: Vec<WorkerGroup>,
    /// Tasks to submit (tiny sha256 tasks, bit-exact).
    pub tasks: usize,
    /// Tasks per job.
    pub tasks_per_job: usize,
    /// Replicas per task.
    pub redundancy: u8,
    /// One-way network latency range in ms.
    pub latency_ms: (u64, u64),
    /// At this time, this percent of workers vanish for good.
    pub churn: Option<(Millis, u32)>,
    /// Give up at this simulated time.
    pub max_time: Millis,
    /// Submit these jobs instead of `tasks` generated sha256 tasks (every
    /// kernel needs a CPU reference: the simulator checks the truth).
    pub jobs: Option<Vec<JobSpec>>,
}

impl SimConfig {
    /// `workers` honest workers, `tasks` tasks, the defaults of the
    /// coordinator adapted to simulation (tiny benchmark, open admission).
    pub fn honest(seed: u64, workers: usize, tasks: usize) -> Self {
        let mut coordinator = CoordinatorConfig { max_workers: 10_000, ..CoordinatorConfig::default() };
        coordinator.profile.benchmark_size = 8;
        coordinator.profile.benchmark_max_size = 8;
        coordinator.profile.min_mflops = 0;
        coordinator.profile.min_alloc_bytes = 0;
        coordinator.epoch.every = None;
        coordinator.rewards.min_tasks = 1;
        SimConfig {
            seed,
            coordinator,
            workers: vec![WorkerGroup::of(workers, Behaviour::Honest)],
            tasks,
            tasks_per_job: 1_000,
            redundancy: 2,
            latency_ms: (5, 40),
            churn: None,
            max_time: Millis::from_mins(120),
            jobs: None,
        }
    }
}

/// What happened.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimReport {
    /// Tasks submitted.
    pub submitted: usize,
    /// Tasks verified.
    pub verified: usize,
    /// Verified tasks whose accepted result is wrong.
    pub wrong_accepted: usize,
    /// Tasks in the dead-letter queue.
    pub dead_lettered: usize,
    /// Tasks cancelled.
    pub cancelled: usize,
    /// Tasks that neither verified, nor dead-lettered, nor were cancelled.
    pub lost: usize,
    /// Results per verified task, on average (×1000).
    pub mean_replicas_milli: u64,
    /// Verified tasks whose agreeing workers were not distinct, or (with
    /// distinct origins required) shared an origin (must be 0).
    pub quorum_violations: usize,
    /// Workers slashed.
    pub slashed: u64,
    /// Slashed workers that were honest (false accusations).
    pub honest_slashed: u64,
    /// Epochs closed.
    pub epochs: usize,
    /// Epochs whose books did not balance exactly (must be 0).
    pub unbalanced_epochs: usize,
    /// Base units paid to workers.
    pub paid: u128,
    /// Base units kept by the operator.
    pub operator_cut: u128,
    /// Simulated time at the end.
    pub elapsed: Millis,
    /// Coordinator counters.
    pub stats: crate::coordinator::CoordinatorStats,
}

impl SimReport {
    /// Wrong acceptances per verified task.
    pub fn wrong_rate(&self) -> f64 {
        if self.verified == 0 {
            0.0
        } else {
            self.wrong_accepted as f64 / self.verified as f64
        }
    }
}

#[derive(Debug)]
enum Ev {
    /// Envelope arrives at the coordinator.
    ToCoordinator(ConnId, Envelope),
    /// Envelope arrives at a worker (by connection).
    ToWorker(ConnId, Envelope),
    /// A worker finished computing.
    Finished(usize, ConnId, AssignmentId, Vec<Bytes>),
    /// A worker (re)connects.
    Connect(usize),
    /// Heartbeat timer of a worker.
    Heartbeat(usize, ConnId),
    /// Coordinator wake-up.
    Tick,
    /// Churn strikes.
    Churn,
    /// Submit the jobs.
    Submit,
}

struct SimWorker {
    id: WorkerId,
    behaviour: Behaviour,
    mflops: u64,
    origin: OriginKey,
    conn: Option<ConnId>,
    gone: bool,
    whitewash: bool,
    /// Ids it took after slashes.
    rejoins: u32,
    /// Tasks it computed under its current id (a sleeper's clock).
    tasks_done: u32,
    /// Jobs it has had offers of (a spotter's memory).
    jobs_seen: std::collections::BTreeSet<JobId>,
    /// Its benchmark run, committed and awaiting the challenge.
    bench: Option<crate::benchmark::CpuAnswer>,
}

struct Sim {
    cfg: SimConfig,
    rng: SplitMix64,
    coord: Coordinator,
    now: Millis,
    queue: BinaryHeap<Reverse<(Millis, u64, usize)>>,
    events: Vec<Option<Ev>>,
    seq: u64,
    workers: Vec<SimWorker>,
    conn_owner: BTreeMap<ConnId, usize>,
    next_conn: ConnId,
    jobs: Vec<JobId>,
    truth: BTreeMap<crate::ids::TaskId, Digest>,
    slashed: Vec<WorkerId>,
    /// Every id a simulated worker ever used, with its origin and whether
    /// it was honest (ids change when a whitewasher rejoins).
    ids: BTreeMap<WorkerId, (OriginKey, bool)>,
    wake_scheduled: Option<Millis>,
    submitted: bool,
}

/// Runs a simulation to the end and reports.
pub fn run(cfg: SimConfig) -> SimReport {
    run_keeping(cfg).0
}

/// Runs a simulation to the end; returns the report, the coordinator (to
/// read results from) and the submitted jobs.
pub fn run_keeping(cfg: SimConfig) -> (SimReport, Coordinator, Vec<JobId>) {
    let mut rng = SplitMix64::new(cfg.seed);
    let mut entropy = [0u8; 32];
    rng.fill_bytes(&mut entropy);
    let coord = Coordinator::new(cfg.coordinator.clone(), None, entropy);
    let mut workers = Vec::new();
    for (g, group) in cfg.workers.iter().enumerate() {
        for i in 0..group.count {
            let origin = OriginKey(if group.same_origin { 1_000_000 + g as u64 } else { workers.len() as u64 });
            workers.push(SimWorker {
                id: WorkerId::new(format!("w{g}-{i}")).unwrap_or_else(|_| WorkerId::guest([0; 16])),
                behaviour: group.behaviour,
                mflops: group.mflops.max(1),
                origin,
                conn: None,
                gone: false,
                whitewash: group.whitewash,
                rejoins: 0,
                tasks_done: 0,
                jobs_seen: std::collections::BTreeSet::new(),
                bench: None,
            });
        }
    }
    let sim = Sim {
        cfg,
        rng,
        coord,
        now: Millis(0),
        queue: BinaryHeap::new(),
        events: Vec::new(),
        seq: 0,
        workers,
        conn_owner: BTreeMap::new(),
        next_conn: ConnId(1),
        jobs: Vec::new(),
        truth: BTreeMap::new(),
        slashed: Vec::new(),
        ids: BTreeMap::new(),
        wake_scheduled: None,
        submitted: false,
    };
    sim.run()
}

impl Sim {
    fn at(&mut self, t: Millis, ev: Ev) {
        self.seq += 1;
        self.events.push(Some(ev));
        self.queue.push(Reverse((t, self.seq, self.events.len() - 1)));
    }

    fn latency(&mut self) -> Millis {
        let (lo, hi) = self.cfg.latency_ms;
        Millis(lo + self.rng.below(hi.saturating_sub(lo) + 1))
    }

    fn run(mut self) -> (SimReport, Coordinator, Vec<JobId>) {
        for w in 0..self.workers.len() {
            let t = Millis(self.rng.below(1_000));
            self.at(t, Ev::Connect(w));
        }
        self.at(Millis(2_000), Ev::Submit);
        if let Some((t, _)) = self.cfg.churn {
            self.at(t, Ev::Churn);
        }
        while let Some(Reverse((t, _, idx))) = self.queue.pop() {
            if t > self.cfg.max_time {
                break;
            }
            self.now = t;
            let Some(ev) = self.events[idx].take() else { continue };
            self.step(ev);
            self.drain();
            if self.all_done() {
                break;
            }
        }
        self.coord.close_epoch(self.now);
        self.drain();
        let report = self.report();
        (report, self.coord, self.jobs)
    }

    fn all_done(&self) -> bool {
        !self.jobs.is_empty()
            && self.jobs.len() * self.cfg.tasks_per_job >= self.cfg.tasks
            && self
                .jobs
                .iter()
                .all(|j| self.coord.job_progress(*j).is_some_and(crate::coordinator::JobProgress::finished))
    }

    fn step(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::ToCoordinator(conn, envelope) => self.coord.handle(now, Input::Received { conn, envelope }),
            Ev::ToWorker(conn, envelope) => self.worker_receives(conn, envelope),
            Ev::Finished(w, conn, assignment, outputs) => {
                if self.workers[w].conn != Some(conn) {
                    return;
                }
                let l = self.latency();
                let env = Envelope::task_result(assignment, outputs);
                self.at(now + l, Ev::ToCoordinator(conn, env));
            }
            Ev::Connect(w) => self.connect(w),
            Ev::Heartbeat(w, conn) => {
                if self.workers[w].conn != Some(conn) {
                    return;
                }
                if !self.suspended(w) {
                    let l = self.latency();
                    let env = Envelope::bare(Message::Heartbeat(Heartbeat { seq: now.0, running: 0 }));
                    self.at(now + l, Ev::ToCoordinator(conn, env));
                }
                self.at(now + Millis::from_secs(10), Ev::Heartbeat(w, conn));
            }
            Ev::Tick => {
                self.wake_scheduled = None;
                self.coord.handle(now, Input::Tick);
            }
            Ev::Churn => {
                let pct = self.cfg.churn.map_or(0, |c| c.1);
                for w in 0..self.workers.len() {
                    if self.rng.below(100) < u64::from(pct) {
                        self.workers[w].gone = true;
                        if let Some(conn) = self.workers[w].conn.take() {
                            self.coord.handle(now, Input::Disconnected { conn, reason: "connection closed".into() });
                        }
                    }
                }
            }
            Ev::Submit => {
                self.submit();
                self.submitted = true;
            }
        }
    }

    fn suspended(&self, w: usize) -> bool {
        match self.workers[w].behaviour {
            Behaviour::Throttled { every, pause } => {
                let period = every.0 + pause.0;
                period > 0 && self.now.0 % period >= every.0
            }
            _ => false,
        }
    }

    fn connect(&mut self, w: usize) {
        if self.workers[w].gone || self.workers[w].conn.is_some() {
            return;
        }
        let me = &mut self.workers[w];
        if me.whitewash && self.slashed.contains(&me.id) {
            // A fresh id, a clean record: the Sybil's way back.
            me.rejoins += 1;
            let base = me.id.as_str().split("-n").next().unwrap_or_default().to_owned();
            me.id = WorkerId::new(format!("{base}-n{}", me.rejoins)).unwrap_or_else(|_| me.id.clone());
            me.tasks_done = 0;
        }
        let honest = matches!(
            me.behaviour,
            Behaviour::Honest
                | Behaviour::Slow(_)
                | Behaviour::Flaky(_)
                | Behaviour::Hanging(_)
                | Behaviour::Decliner(_)
                | Behaviour::Failer(_)
                | Behaviour::Throttled { .. }
        );
        self.ids.insert(me.id.clone(), (me.origin, honest));
        let conn = self.next_conn;
        self.next_conn.0 += 1;
        self.conn_owner.insert(conn, w);
        self.workers[w].conn = Some(conn);
        let now = self.now;
        self.coord.handle(now, Input::Connected { conn, origin: self.workers[w].origin, host: None });
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            worker_id: self.workers[w].id.clone(),
            auth: HelloAuth::Token(String::new()),
            device: DeviceInfo {
                backend: Backend::Vulkan,
                device_type: DeviceType::DiscreteGpu,
                vendor: "sim".into(),
                name: "sim".into(),
                driver: "sim".into(),
                max_buffer_bytes: 1 << 30,
                max_storage_binding_bytes: 1 << 27,
                max_workgroup_invocations: 256,
                kernels: KernelId::ALL.to_vec(),
            },
            software: "shoal-sim".into(),
            max_concurrent: 2,
            cache_bytes: 0,
            held: Vec::new(),
        };
        let l = self.latency();
        self.at(now + l, Ev::ToCoordinator(conn, Envelope::bare(Message::Hello(Box::new(hello)))));
        self.at(now + Millis::from_secs(10), Ev::Heartbeat(w, conn));
    }

    /// The jobs to submit: the configured ones, or `tasks` tiny sha256
    /// tasks in jobs of `tasks_per_job`.
    fn jobs_to_submit(&mut self) -> Vec<JobSpec> {
        if let Some(jobs) = self.cfg.jobs.take() {
            return jobs;
        }
        let mut left = self.cfg.tasks;
        let mut n = 0u64;
        let mut jobs = Vec::new();
        while left > 0 {
            let count = left.min(self.cfg.tasks_per_job.max(1));
            left -= count;
            let tasks: Vec<TaskSpec> = (0..count)
                .map(|_| {
                    n += 1;
                    let kernel = KernelSpec::Sha256(Sha256Params { count: 1, message_len: 16 });
                    let inputs = kernel.seeded_inputs(self.cfg.seed ^ (n << 20)).into_iter().map(Bytes::from).collect();
                    TaskSpec { kernel, inputs }
                })
                .collect();
            let mut spec = JobSpec::new(tasks);
            spec.redundancy = Some(self.cfg.redundancy);
            jobs.push(spec);
        }
        jobs
    }

    fn submit(&mut self) {
        for spec in self.jobs_to_submit() {
            let truths: Vec<Digest> = spec
                .tasks
                .iter()
                .map(|t| {
                    let refs: Vec<&[u8]> = t.inputs.iter().map(|b| &b[..]).collect();
                    let out = t.kernel.run_cpu(&refs).unwrap_or_default();
                    Digest::of_parts(out.iter().map(Vec::as_slice))
                })
                .collect();
            match self.coord.submit_job(self.now, spec) {
                Ok(job) => {
                    if let Some(ids) = self.coord.job_tasks(job) {
                        for (id, d) in ids.iter().zip(truths) {
                            self.truth.insert(*id, d);
                        }
                    }
                    self.jobs.push(job);
                }
                Err(_) => break,
            }
        }
    }

    fn worker_receives(&mut self, conn: ConnId, env: Envelope) {
        let Some(&w) = self.conn_owner.get(&conn) else { return };
        if self.workers[w].conn != Some(conn) {
            return;
        }
        let offer = match env.message {
            Message::TaskOffer(offer) => offer,
            Message::BenchmarkOffer(offer) => return self.benchmark(w, conn, &offer),
            Message::BenchmarkChallenge(c) => {
                if let Some(answer) = self.workers[w].bench.take() {
                    let l = self.latency();
                    self.at(self.now + l, Ev::ToCoordinator(conn, answer.reveal(&c)));
                }
                return;
            }
            _ => return,
        };
        let now = self.now;
        let behaviour = self.workers[w].behaviour;
        let roll = self.rng.below(100);
        if let Behaviour::Flaky(p) = behaviour {
            if roll < u64::from(p) {
                self.workers[w].conn = None;
                self.coord.handle(now, Input::Disconnected { conn, reason: "connection closed".into() });
                let back = now + Millis::from_secs(5 + self.rng.below(20));
                self.at(back, Ev::Connect(w));
                return;
            }
        }
        let l = self.latency();
        let assignment = offer.assignment;
        if matches!(behaviour, Behaviour::Decliner(p) if roll < u64::from(p)) {
            let no = Message::TaskDecline(TaskDecline { assignment, reason: "declined".into() });
            self.at(now + l, Ev::ToCoordinator(conn, Envelope::bare(no)));
            return;
        }
        if matches!(behaviour, Behaviour::Failer(p) if roll < u64::from(p)) {
            let failed = Message::Error(ErrorMessage {
                code: ErrorCode::ExecutionFailed,
                assignment: Some(assignment),
                message: "failed".into(),
            });
            self.at(now + l, Ev::ToCoordinator(conn, Envelope::bare(failed)));
            return;
        }
        let ack = Envelope::bare(Message::TaskAck(TaskAck { assignment }));
        // A suspended tab answers only when it wakes.
        let mut start = now;
        if let Behaviour::Throttled { every, pause } = behaviour {
            let period = every.0 + pause.0;
            if period > 0 && now.0 % period >= every.0 {
                start = Millis(now.0 - now.0 % period + period);
            }
        }
        self.at(start + l, Ev::ToCoordinator(conn, ack));
        if matches!(behaviour, Behaviour::Hanging(p) if roll < u64::from(p)) {
            return;
        }
        let outputs = self.compute(w, &offer, &env.attachments, roll);
        let slow = if let Behaviour::Slow(f) = behaviour { u64::from(f.max(1)) } else { 1 };
        let exec = Millis(1 + offer.kernel.cost().ops / (self.workers[w].mflops * 1_000) * slow);
        self.at(start + l + exec, Ev::Finished(w, conn, offer.assignment, outputs));
    }

    /// Every simulated worker runs the benchmark honestly, in the time its
    /// speed says.
    fn benchmark(&mut self, w: usize, conn: ConnId, offer: &crate::wire::message::BenchmarkOffer) {
        let Some(answer) = crate::benchmark::CpuAnswer::run(offer) else { return };
        let l = self.latency();
        let ack = Envelope::bare(Message::TaskAck(TaskAck { assignment: offer.assignment }));
        self.at(self.now + l, Ev::ToCoordinator(conn, ack));
        let exec = Millis(1 + offer.kernel.cost().ops / (self.workers[w].mflops.max(1) * 1_000));
        self.at(self.now + l + exec, Ev::ToCoordinator(conn, answer.commit()));
        self.workers[w].bench = Some(answer);
    }

    fn compute(&mut self, w: usize, offer: &TaskOffer, inputs: &[Bytes], roll: u64) -> Vec<Bytes> {
        let refs: Vec<&[u8]> = inputs.iter().map(|b| &b[..]).collect();
        let mut out = offer.kernel.run_cpu(&refs).unwrap_or_default();
        if out.is_empty() || out[0].is_empty() {
            return out.into_iter().map(Bytes::from).collect();
        }
        let me = &mut self.workers[w];
        me.tasks_done = me.tasks_done.saturating_add(1);
        let known_job = !me.jobs_seen.insert(offer.job);
        match me.behaviour {
            Behaviour::Spotter(p) if known_job && roll < u64::from(p) => out[0][0] ^= 0xFF,
            Behaviour::Liar(p) if roll < u64::from(p) => self.rng.fill_bytes(&mut out[0]),
            Behaviour::Colluder(p) if roll < u64::from(p) => out[0][0] ^= 0xFF,
            Behaviour::Sleeper { honest_tasks, lie_pct }
                if me.tasks_done > honest_tasks && roll < u64::from(lie_pct) =>
            {
                out[0][0] ^= 0xFF;
            }
            _ => {}
        }
        out.into_iter().map(Bytes::from).collect()
    }

    fn drain(&mut self) {
        while let Some(o) = self.coord.poll_output() {
            match o {
                Output::Send { conn, envelope } => {
                    let l = self.latency();
                    self.at(self.now + l, Ev::ToWorker(conn, envelope));
                }
                Output::Close { conn, .. } => {
                    if let Some(&w) = self.conn_owner.get(&conn) {
                        if self.workers[w].conn == Some(conn) {
                            self.workers[w].conn = None;
                            // Evicted or refused workers come back later, unless slashed or
                            // gone; a whitewashing Sybil comes back at once under a fresh id.
                            let wait = if self.workers[w].whitewash { 1 } else { 30 };
                            let back = self.now + Millis::from_secs(wait);
                            self.at(back, Ev::Connect(w));
                        }
                    }
                }
                Output::Event(Event::WorkerSlashed { worker, .. }) => self.slashed.push(worker),
                Output::Event(_) | Output::Persist(_) | Output::Answer { .. } => {}
            }
        }
        if let Some(t) = self.coord.poll_timeout() {
            let t = t.max(self.now);
            if self.wake_scheduled.is_none_or(|s| t < s) {
                self.wake_scheduled = Some(t);
                self.at(t, Ev::Tick);
            }
        }
    }

    fn report(&self) -> SimReport {
        let mut r = SimReport { submitted: self.truth.len(), elapsed: self.now, ..SimReport::default() };
        let mut replicas = 0u64;
        for (tid, truth) in &self.truth {
            match self.coord.task_phase(*tid) {
                Some(TaskPhase::Verified) => {
                    r.verified += 1;
                    if let Some(v) = self.coord.task_result(*tid) {
                        if v.digest != *truth {
                            r.wrong_accepted += 1;
                        }
                        replicas += (v.agreed.len() + v.outvoted.len()) as u64;
                        let mut a = v.agreed.clone();
                        a.sort();
                        a.dedup();
                        let mut origins: Vec<OriginKey> =
                            a.iter().filter_map(|id| self.ids.get(id).map(|(origin, _)| *origin)).collect();
                        origins.sort_unstable();
                        origins.dedup();
                        let distinct_origins = !self.cfg.coordinator.distinct_origins || origins.len() == a.len();
                        if a.len() != v.agreed.len() || !distinct_origins {
                            r.quorum_violations += 1;
                        }
                    }
                }
                Some(TaskPhase::DeadLettered) => r.dead_lettered += 1,
                Some(TaskPhase::Cancelled) => r.cancelled += 1,
                Some(TaskPhase::Pending) | None => r.lost += 1,
            }
        }
        r.mean_replicas_milli = if r.verified == 0 { 0 } else { replicas * 1000 / r.verified as u64 };
        r.slashed = self.slashed.len() as u64;
        r.honest_slashed =
            self.slashed.iter().filter(|id| self.ids.get(*id).is_some_and(|(_, honest)| *honest)).count() as u64;
        for e in self.coord.epochs() {
            r.epochs += 1;
            if e.total_in() != e.total_out() {
                r.unbalanced_epochs += 1;
            }
            r.paid += e.payouts.iter().map(|p| p.amount + p.bounty).sum::<u128>();
            r.operator_cut += e.operator_cut;
        }
        r.stats = self.coord.stats().clone();
        r
    }
}
