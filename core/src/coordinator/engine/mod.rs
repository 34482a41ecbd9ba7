//! The coordinator state machine.
//!
//! Sans-I/O in the style of quinn-proto: the host feeds [`Input`]s with the
//! time they happened ([`Coordinator::handle`]): workers' frames and
//! operators' [`Command`]s alike, then drains [`Output`]s ([`Coordinator::poll_output`])
//! and sleeps until [`Coordinator::poll_timeout`]. Within one call, the
//! state diff of every durable change is emitted *before* any message that
//! acknowledges it, so a host that writes `Persist` before sending never
//! acknowledges something a crash could lose.
//!
//! This file holds the machine's state, the driving API (a round: inputs,
//! then dispatch, epoch and records, then the sealed diff before the
//! staged messages) and the queries. Each concern has a file of its own:
//!
//! - `types`: the public vocabulary (inputs, outputs, events, job specs,
//!   views, errors);
//! - `tasks`: the task slab, jobs, submission, restart, cancellation;
//! - `registry`: connections, hellos, admission, load, departures;
//! - `ready`: the two sides dispatch matches, ready tasks grouped by what
//!   they need and idle workers by what they offer;
//! - `dispatch`: matching ready tasks with idle workers, offers, deadlines
//!   and every way an assignment ends without a result (a miss counts
//!   against a task only from a proven worker, always against the worker);
//! - `verification`: voting, escalation, acceptance and credit, shadow
//!   checks, dead letters, slashing;
//! - `epochs`: the open epoch's work and records, stakes, settlement.

mod benchmarking;
mod contributors;
mod dispatch;
mod epochs;
mod ready;
mod registry;
mod ringers;
mod roster;
mod shared;
mod tasks;
mod types;
mod verification;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::BuildHasherDefault;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::auth::MasterSecret;
use crate::coordinator::config::CoordinatorConfig;
use crate::coordinator::ledger::Ledger;
use crate::coordinator::rewards::EpochSettlement;
use crate::coordinator::slots::Slots;
use crate::ids::{AssignmentId, JobId, TaskId, WorkerId};
use crate::rng::SplitMix64;
use crate::time::{Micros, Millis};
use crate::wire::message::Challenge;
use crate::wire::{Envelope, Message};

pub use self::contributors::{ContributorSort, TeamView};
use self::dispatch::Assignment;
pub use self::epochs::OpenEpochView;
use self::epochs::{DirtyWorkers, EpochState};
use self::ready::{IdlePool, ReadyQueue};
pub(crate) use self::registry::Reputation;
use self::registry::{Conn, GuestCount, NumRecord, Worker, WorkerIdx, WorkerNum, WorkerState};
pub use self::roster::{ContributorView, WorkerSort};
use self::tasks::{Job, TaskKey, TaskSlab};
pub use self::types::{
    Answer, Command, ConnId, CoordinatorStats, DeadLetter, DeleteJobError, Event, Input, JobProgress, JobSpec,
    OriginKey, Output, PendingTask, PreparedJob, ShadowStats, SubmitError, TaskPhase, TaskSpec, Ticket, VerifiedResult,
    WorkerView,
};

/// Hash maps with a fixed hasher: deterministic, no OS randomness (and
/// nothing depends on their iteration order: what is written or paid
/// from them is sorted first). foldhash rather than SipHash: worker ids
/// are hashed several times per replica. Neither is keyed by a secret,
/// so neither resists chosen collisions any better; ids of peers are
/// capped in length and number.
type Map<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// Maps keyed by ids this coordinator generated from its entropy: the key
/// bytes are already uniformly random and peers cannot choose them, so the
/// hash is a cheap fold of the bytes (lookups of peer-sent unknown ids
/// only miss).
type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Folds the bytes of a random id into 64 bits.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(23) ^ u64::from_le_bytes(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, _: usize) {}
}

/// Removes `item` from an unordered list: stops at the match and moves
/// one element, instead of scanning and shifting the whole list.
fn remove_item<A: smallvec::Array>(list: &mut SmallVec<A>, item: &A::Item)
where
    A::Item: PartialEq,
{
    if let Some(i) = list.iter().position(|x| x == item) {
        list.swap_remove(i);
    }
}

/// Generates 16-byte ids from host-provided entropy (two independent
/// 64-bit streams: ids stay unique across coordinators).
#[derive(Debug)]
struct IdGen(SplitMix64, SplitMix64);

impl IdGen {
    fn next(&mut self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.0.next_u64().to_le_bytes());
        b[8..].copy_from_slice(&self.1.next_u64().to_le_bytes());
        b
    }
}

/// How often housekeeping (eviction, hello deadlines, epoch by time) runs.
const HOUSEKEEPING: Millis = Millis(1_000);

/// The coordinator.
#[derive(Debug)]
pub struct Coordinator {
    cfg: CoordinatorConfig,
    /// The current round's time in microseconds (what the admission
    /// benchmark is timed with; the rest of the machine counts in ms).
    clock_us: u64,
    /// Workers due a re-measurement whose last assignment just ended.
    remeasure_ready: Vec<registry::WorkerIdx>,
    /// The current round's time (what stamps record).
    round_now: Millis,
    secret: Option<MasterSecret>,
    ids: IdGen,
    rng: SplitMix64,
    conns: IdMap<ConnId, Conn>,
    workers: Vec<Option<Worker>>,
    free_slots: Vec<WorkerIdx>,
    by_id: Map<WorkerId, WorkerIdx>,
    /// Guests connected (their caps are apart from `max_workers`).
    guests: GuestCount,
    reputation: Map<WorkerId, Reputation>,
    /// Contributors' declared profiles and the payout address rule.
    contributors: contributors::Contributors,
    /// Undecided tasks holding a result of each worker, connected or not
    /// (so a liar who left is still slashed and its votes withdrawn).
    undecided: IdMap<WorkerNum, SmallVec<[TaskKey; 4]>>,
    /// Stable numbers of worker ids (see `Worker::num`).
    worker_nums: Map<WorkerId, NumRecord>,
    /// The next number to give (numbers are never reused).
    next_worker_num: WorkerNum,
    /// Active workers with room, by capabilities and load.
    idle: IdlePool,
    /// Admitted workers by capabilities, busy or not (whether any could
    /// ever run a job's tasks).
    active_caps: std::collections::BTreeMap<ready::Caps, u32>,
    jobs: IdMap<JobId, Job>,
    tasks: TaskSlab,
    /// Tasks waiting for a worker, grouped by what they need.
    ready: ReadyQueue,
    queued_tasks: usize,
    /// Bytes of inputs held for queued tasks.
    queued_input_bytes: u64,
    /// Unfinished jobs by expiry.
    open_jobs: BTreeSet<(Millis, JobId)>,
    assignments: Slots<Assignment>,
    deadlines: BTreeSet<(Millis, AssignmentId)>,
    /// Acknowledgement deadlines of offers: all `now + ack_timeout`, so they
    /// arrive in order and a FIFO holds them; entries of assignments that
    /// were acknowledged or ended are skipped lazily.
    ack_fifo: VecDeque<(Millis, AssignmentId)>,
    /// Recently verified tasks, replayed as spot checks.
    ringers: ringers::RingerPool,
    dead_letters: Vec<DeadLetter>,
    ledger: Ledger,
    epoch: EpochState,
    /// Workers whose reputation or epoch work changed this round.
    dirty: DirtyWorkers,
    /// The open epoch's counters changed this round.
    epoch_dirty: bool,
    stats: CoordinatorStats,
    shadow: ShadowStats,
    next_housekeeping: Millis,
    staged: VecDeque<Output>,
    outputs: VecDeque<Output>,
    started: bool,
}

impl Coordinator {
    /// A coordinator with this configuration, worker secret (None: tokens
    /// are not checked) and 32 bytes of host entropy (ids, benchmark inputs).
    pub fn new(cfg: CoordinatorConfig, secret: Option<MasterSecret>, entropy: [u8; 32]) -> Self {
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&entropy[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        let rng = SplitMix64::new(word(2) ^ word(3).rotate_left(17));
        Coordinator {
            secret,
            ids: IdGen(SplitMix64::new(word(0)), SplitMix64::new(word(1))),
            rng,
            conns: IdMap::default(),
            workers: Vec::new(),
            free_slots: Vec::new(),
            by_id: Map::default(),
            guests: GuestCount::default(),
            reputation: Map::default(),
            contributors: contributors::Contributors::new(&cfg.payout_pattern),
            undecided: IdMap::default(),
            worker_nums: Map::default(),
            next_worker_num: WorkerNum(0),
            idle: IdlePool::default(),
            active_caps: std::collections::BTreeMap::new(),
            jobs: IdMap::default(),
            tasks: TaskSlab {
                prefix: SplitMix64::new(word(1) ^ 0x5441_534B).next_u64().to_le_bytes(),
                ..TaskSlab::default()
            },
            ready: ReadyQueue::default(),
            queued_tasks: 0,
            queued_input_bytes: 0,
            open_jobs: BTreeSet::new(),
            assignments: Slots::default(),
            deadlines: BTreeSet::new(),
            ack_fifo: VecDeque::new(),
            ringers: ringers::RingerPool::default(),
            dead_letters: Vec::new(),
            ledger: Ledger::default(),
            epoch: EpochState {
                number: 0,
                opened: Millis::ZERO,
                verified: 0,
                work: Map::default(),
                carried: 0,
                forfeited: 0,
                forfeits: std::collections::BTreeMap::new(),
                history: Vec::new(),
            },
            dirty: DirtyWorkers::default(),
            epoch_dirty: false,
            stats: CoordinatorStats::default(),
            shadow: ShadowStats::default(),
            next_housekeeping: Millis::ZERO,
            staged: VecDeque::new(),
            outputs: VecDeque::new(),
            started: false,
            clock_us: 0,
            remeasure_ready: Vec::new(),
            round_now: Millis::ZERO,
            cfg,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.cfg
    }

    /// Feeds one input that happened at `now`.
    pub fn handle(&mut self, now: Millis, input: Input) {
        self.handle_batch(now, std::iter::once(input));
    }

    /// Feeds several inputs that happened at `now` as one round: one
    /// dispatch pass and one state diff for all of them (group commit),
    /// which is how a host that reads many frames at once should call it.
    pub fn handle_batch(&mut self, now: Millis, inputs: impl IntoIterator<Item = Input>) {
        self.handle_batch_at(Micros::from(now), inputs);
    }

    /// [`Coordinator::handle_batch`] with the time in microseconds: what a
    /// host with a fine clock should call, so the admission benchmark of a
    /// fast worker is timed to the microsecond.
    pub fn handle_batch_at(&mut self, now_us: Micros, inputs: impl IntoIterator<Item = Input>) {
        self.clock_us = now_us.0;
        let now = now_us.millis();
        self.start(now);
        for input in inputs {
            match input {
                Input::Connected { conn, origin, host } => {
                    let nonce = self.ids.next();
                    self.conns.insert(conn, Conn { origin, nonce, host, worker: None, opened: now });
                    self.send(conn, Message::Challenge(Challenge { nonce }), vec![]);
                }
                Input::Received { conn, envelope } => self.on_envelope(now, conn, envelope),
                Input::Disconnected { conn, reason } => self.on_disconnect(conn, &reason),
                Input::Tick => self.on_tick(now),
                Input::Command { ticket, command } => {
                    let answer = self.command(now, command);
                    self.staged.push_back(Output::Answer { ticket, answer });
                }
            }
        }
        self.finish_round(now);
    }

    /// Performs a command within the current round.
    fn command(&mut self, now: Millis, command: Command) -> Answer {
        match command {
            Command::SubmitJob(job) => Answer::JobSubmitted(self.submit(now, job)),
            Command::CancelJob(job) => Answer::JobCancelled(self.cancel(job)),
            Command::DeleteJob { job, inputs } => Answer::JobDeleted(self.delete(job, &inputs)),
            Command::CloseEpoch => {
                self.maybe_close_epoch(now, true);
                Answer::EpochClosed
            }
            Command::SetStake { worker, stake } => {
                self.stake(&worker, stake);
                Answer::StakeSet
            }
            Command::ApproveIdentity { worker, approve } => Answer::IdentityApproval(self.approve(&worker, approve)),
            Command::RequeueDeadLetters { from, job } => Answer::Requeued(self.requeue(now, &from, job)),
        }
    }

    /// Submits a job as a round of its own and returns the answer directly
    /// (for simulations and tests; a host batches [`Command::SubmitJob`]).
    pub fn submit_job(&mut self, now: Millis, job: impl Into<PreparedJob>) -> Result<JobId, SubmitError> {
        self.start(now);
        let answer = self.submit(now, job.into());
        self.finish_round(now);
        answer
    }

    /// Cancels a job as a round of its own ([`Command::CancelJob`]); false
    /// for an unknown job.
    pub fn cancel_job(&mut self, now: Millis, job: JobId) -> bool {
        self.start(now);
        let known = self.cancel(job);
        self.finish_round(now);
        known
    }

    /// Closes the open epoch as a round of its own ([`Command::CloseEpoch`]).
    pub fn close_epoch(&mut self, now: Millis) {
        self.start(now);
        self.maybe_close_epoch(now, true);
        self.seal_round();
    }

    /// The next output to perform, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When the host must call `handle(_, Input::Tick)` at the latest.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let mut t = self.next_housekeeping;
        if let Some((d, _)) = self.deadlines.first() {
            t = t.min(*d);
        }
        if let Some((d, _)) = self.ack_fifo.front() {
            t = t.min(*d);
        }
        Some(t)
    }

    fn start(&mut self, now: Millis) {
        self.round_now = now;
        if !self.started {
            self.started = true;
            self.epoch.opened = now;
            self.next_housekeeping = now + HOUSEKEEPING;
        }
    }

    fn finish_round(&mut self, now: Millis) {
        self.start_remeasurements(now);
        // Drop acknowledgement deadlines that no longer matter from the front.
        while let Some((_, aid)) = self.ack_fifo.front() {
            if self.assignments.get(aid).is_some_and(|a| a.in_fifo) {
                break;
            }
            self.ack_fifo.pop_front();
        }
        self.dispatch(now);
        self.maybe_close_epoch(now, false);
        self.seal_round();
    }

    /// Ends a round: the records it touched are written, its diff sealed
    /// and queued before everything it staged (messages, events, answers).
    fn seal_round(&mut self) {
        self.flush_worker_records();
        if let Some(diff) = self.ledger.seal() {
            self.staged.push_front(Output::Persist(diff));
        }
        if self.outputs.is_empty() {
            // The host took every output of the last round (it usually
            // does): this round's are handed over whole, not moved one by one.
            std::mem::swap(&mut self.outputs, &mut self.staged);
        } else {
            self.outputs.extend(self.staged.drain(..));
        }
    }

    fn send(&mut self, conn: ConnId, message: Message, attachments: Vec<Bytes>) {
        self.staged.push_back(Output::Send { conn, envelope: Envelope { message, attachments } });
    }

    fn event(&mut self, e: Event) {
        self.staged.push_back(Output::Event(e));
    }

    /// A job's progress.
    pub fn job_progress(&self, job: JobId) -> Option<&JobProgress> {
        self.jobs.get(&job).map(|j| &j.progress)
    }

    /// When a task of this job was first offered to a worker (since this
    /// process started): when the job began to execute.
    pub fn job_started(&self, job: JobId) -> Option<Millis> {
        self.jobs.get(&job).and_then(|j| j.first_offer)
    }

    /// The job's tasks still pending from position `from` on, at most
    /// `limit`: where each stands (None: an unknown job).
    pub fn pending_of_job(&self, job: JobId, from: u32, limit: usize) -> Option<Vec<PendingTask>> {
        let j = self.jobs.get(&job)?;
        let stamp = |m: Millis| (m != Millis::ZERO).then_some(m);
        let keys = j.keys().enumerate().skip(from as usize);
        let pending = keys.filter_map(|(index, k)| self.tasks.get(k).map(|t| (index, t)));
        let pending = pending.filter(|(_, t)| t.phase == TaskPhase::Pending).take(limit);
        Some(
            pending
                .map(|(index, t)| PendingTask {
                    index: index as u32,
                    submitted: j.submitted,
                    offered: stamp(t.first_offer),
                    acked: stamp(t.first_ack),
                    running: t.live.len() as u32,
                    results: t.results.len() as u32,
                    attempts: t.attempts,
                })
                .collect(),
        )
    }

    /// A job's task ids, in submission order.
    pub fn job_tasks(&self, job: JobId) -> Option<&[TaskId]> {
        self.jobs.get(&job).map(|j| j.tasks.as_slice())
    }

    /// A task's phase.
    pub fn task_phase(&self, task: TaskId) -> Option<TaskPhase> {
        self.tasks.key_of(task).and_then(|k| self.tasks.get(k)).map(|t| t.phase)
    }

    /// A task's accepted result.
    pub fn task_result(&self, task: TaskId) -> Option<&VerifiedResult> {
        self.tasks.key_of(task).and_then(|k| self.tasks.get(k)).and_then(|t| t.verified.as_deref())
    }

    /// The dead-letter queue.
    pub fn dead_letters(&self) -> &[DeadLetter] {
        &self.dead_letters
    }

    /// Counters.
    pub fn stats(&self) -> &CoordinatorStats {
        &self.stats
    }

    /// Shadow-mode statistics.
    pub fn shadow(&self) -> &ShadowStats {
        &self.shadow
    }

    /// Closed epochs.
    pub fn epochs(&self) -> &[EpochSettlement] {
        &self.epoch.history
    }

    /// Jobs with tasks still pending.
    pub fn open_job_count(&self) -> usize {
        self.open_jobs.len()
    }

    /// Tasks waiting for a replica or a result.
    pub fn pending_tasks(&self) -> usize {
        self.queued_tasks
    }

    /// Credibility of a worker, ppm: `1 − f/(k+1)` after k agreements; 0 once slashed.
    pub fn credibility(&self, worker: &WorkerId) -> u32 {
        let r = self.reputation.get(worker).cloned().unwrap_or_default();
        if r.slashed {
            return 0;
        }
        let f = u64::from(self.cfg.credibility.assumed_fault_ppm);
        (1_000_000 - (f / (r.agreed + 1)).min(1_000_000)) as u32
    }

    /// Task slots held in memory (released tasks free their slots a chunk
    /// of 1024 at a time).
    pub fn task_slots(&self) -> usize {
        self.tasks.chunks.iter().flatten().map(|c| c.slots.len()).sum()
    }

    /// A pending task and an idle worker that may run it, when dispatch
    /// left one unmatched (it never should once a round ends: the property
    /// tests call this after every round). Brute force over every task and
    /// worker, sharing nothing with the ready queue but the rules, and
    /// checking the queue holds exactly the tasks that want a worker.
    #[cfg(feature = "sim")]
    pub fn unmatched(&self) -> Option<String> {
        use crate::kernels::Comparator;
        let tasks = self.tasks.chunks.iter().flatten().flat_map(|c| c.slots.iter().flatten());
        let mut wanting = 0;
        for t in tasks {
            let wants = t.phase == TaskPhase::Pending && t.open_slots > 0;
            if wants != t.queued.is_some() {
                return Some(format!("task {:?} wants a worker: {wants}, queued: {:?}", t.key, t.queued));
            }
            if !wants {
                continue;
            }
            wanting += 1;
            let float = !matches!(t.spec.comparator(), Comparator::Exact);
            for w in self.workers.iter().flatten() {
                let WorkerState::Active { class, .. } = w.state else { continue };
                let fits = ready::log2_floor(w.device.max_buffer_bytes) >= ready::log2_ceil(t.working_set);
                let room = if w.misses_in_row > 0 { 1 } else { w.capacity };
                let may = w.in_flight < room
                    && class.tier >= t.min_tier
                    && w.device.kernels.contains(&t.spec.id())
                    && fits
                    && !t.tried.iter().any(|&(n, o)| n == w.num || (self.cfg.distinct_origins && o == w.origin))
                    && !(float && self.cfg.homogeneous_floats && t.class.is_some_and(|c| c != class));
                if may {
                    return Some(format!("task {:?} could run on idle worker {}", t.key, w.id));
                }
            }
        }
        (wanting != self.ready.len()).then(|| format!("{wanting} tasks want a worker, {} queued", self.ready.len()))
    }

    /// Why a job's queued tasks wait with no prospect of a worker: the
    /// first of their needs that no admitted worker, busy or idle, meets
    /// (kernel, tier, memory, float class). `None` while every queued
    /// task could run on some admitted worker, or the job has none queued.
    /// Looks at the job's first 4096 tasks (a status call must stay cheap
    /// on the engine thread; a job's tasks mostly share their needs).
    pub fn job_waiting(&self, job: JobId) -> Option<String> {
        let j = self.jobs.get(&job)?;
        let mut seen: Vec<ready::Need> = Vec::new();
        for key in j.keys().take(4096) {
            let Some(need) = self.tasks.get(key).and_then(|t| t.queued) else { continue };
            if seen.contains(&need) {
                continue;
            }
            if !self.active_caps.keys().any(|c| c.serves(&need)) {
                return Some(format!("no admitted worker can run its tasks: they need {}", need.describe()));
            }
            seen.push(need);
        }
        None
    }

    /// Admitted workers, and how many of them share the most common network
    /// origin. With distinct origins required, a swarm that sits on one
    /// origin (every worker behind one proxy or NAT) cannot find a task's
    /// second replica: the host warns about it.
    pub fn origin_concentration(&self) -> (usize, usize) {
        let mut by_origin: Map<OriginKey, usize> = Map::default();
        let mut admitted = 0;
        for w in self.workers.iter().flatten() {
            if matches!(w.state, WorkerState::Active { .. }) {
                admitted += 1;
                *by_origin.entry(w.origin).or_insert(0) += 1;
            }
        }
        (admitted, by_origin.values().copied().max().unwrap_or(0))
    }

    /// `(admitted, on the largest origin)` when the swarm is crowded on one
    /// origin while replicas must come from distinct origins (at least four
    /// admitted, more than half on one origin): tasks then wait for a
    /// second origin that never comes.
    pub fn origin_crowded(&self) -> Option<(usize, usize)> {
        let (admitted, largest) = self.origin_concentration();
        (self.cfg.distinct_origins && admitted >= 4 && largest * 2 > admitted).then_some((admitted, largest))
    }

    /// Workers connected now (admitted or being benchmarked).
    pub fn connected_workers(&self) -> usize {
        self.by_id.len()
    }

    /// Worker ids the coordinator keeps books for (connected or not).
    pub fn remembered_workers(&self) -> usize {
        self.reputation.len()
    }

    fn on_tick(&mut self, now: Millis) {
        while let Some(&(t, aid)) = self.ack_fifo.front() {
            if t > now {
                break;
            }
            self.ack_fifo.pop_front();
            if self.assignments.get(&aid).is_some_and(|a| a.in_fifo && a.deadline == t) {
                self.time_out(aid);
            }
        }
        while let Some(&(t, aid)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.remove(&(t, aid));
            self.time_out(aid);
        }
        if now >= self.next_housekeeping {
            self.next_housekeeping = now + HOUSEKEEPING;
            self.housekeeping(now);
        }
    }

    fn housekeeping(&mut self, now: Millis) {
        while let Some(&(expires, job)) = self.open_jobs.first() {
            if expires > now {
                break;
            }
            self.open_jobs.remove(&(expires, job));
            let pending: Vec<TaskKey> = self.jobs.get(&job).map_or_else(Vec::new, |j| {
                j.keys().filter(|k| self.tasks.get(*k).is_some_and(|t| t.phase == TaskPhase::Pending)).collect()
            });
            for tid in pending {
                self.withdraw_live(tid, "task expired");
                let reason = format!("not decided within {} s of submission", self.cfg.task_ttl.0 / 1000);
                self.dead_letter(tid, reason);
            }
        }
        let stale: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| match c.worker.and_then(|i| self.worker(i)) {
                Some(w) => now.since(w.last_seen) > self.cfg.stale_after,
                None => now.since(c.opened) > self.cfg.ack_timeout,
            })
            .map(|(id, _)| *id)
            .collect();
        for conn in stale {
            self.staged.push_back(Output::Close { conn, reason: "silent for too long".into() });
            self.on_disconnect(conn, "silent for too long");
        }
    }
}
