//! The coordinator state machine.
//!
//! Sans-I/O in the style of quinn-proto: the host feeds [`Input`]s with the
//! time they happened ([`Coordinator::handle`]), submits and cancels jobs
//! through methods, then drains [`Output`]s ([`Coordinator::poll_output`])
//! and sleeps until [`Coordinator::next_wakeup`]. Within one call, the
//! state diff of every durable change is emitted *before* any message that
//! acknowledges it, so a host that writes `Persist` before sending never
//! acknowledges something a crash could lose.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::config::CoordinatorConfig;
use super::ledger::Ledger;
use super::profile::{benchmark_spec, classify, mflops, Tier, WorkerClass};
use super::recovery::{
    ns, task_record_key, EndedTask, JobRecord, OpenEpoch, Snapshot, StoredInputs, TaskRecord, WorkerRecordRef,
    INPUTS_APART,
};
use super::rewards::{settle_epoch, EpochSettlement, EpochWork};
use super::slots::Slots;
use crate::auth::{verify_token, MasterSecret};
use crate::digest::Digest;
use crate::ids::{AssignmentId, JobId, TaskId, WorkerId};
use crate::kernels::{Comparator, KernelError, KernelSpec};
use crate::rng::SplitMix64;
use crate::score::polo_score;
use crate::task::TaskLifecycle;
use crate::time::Millis;
use crate::wire::message::{
    AttachmentMeta, Cancel, DeviceInfo, ErrorCode, ErrorMessage, Goodbye, Hello, HelloAuth, TaskOffer, TaskResult,
    Welcome,
};
use crate::wire::{Envelope, Message, PROTOCOL_VERSION};

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

/// A connection, numbered by the host.
pub type ConnId = u64;
/// A network origin (e.g. a hash of the IP /24), chosen by the host.
pub type OriginKey = u64;

/// Something that happened, fed to [`Coordinator::handle`].
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // envelopes are moved, not stored
pub enum Input {
    /// A worker connection opened.
    Connected {
        /// Host's id of the connection.
        conn: ConnId,
        /// Its network origin.
        origin: OriginKey,
    },
    /// A decoded envelope arrived on a connection.
    Received {
        /// Which connection.
        conn: ConnId,
        /// What arrived.
        envelope: Envelope,
    },
    /// The connection closed (or the host dropped it for a protocol error).
    Disconnected {
        /// Which connection.
        conn: ConnId,
    },
    /// A wake-up the coordinator asked for (or any time: spurious ticks are harmless).
    Tick,
}

/// Something the host must do or show.
#[derive(Clone, Debug)]
pub enum Output {
    /// Write this diff durably before performing any output after it.
    Persist(super::ledger::StateDiff),
    /// Send an envelope on a connection.
    Send {
        /// Which connection.
        conn: ConnId,
        /// What to send.
        envelope: Envelope,
    },
    /// Close a connection (after sending what was queued for it).
    Close {
        /// Which connection.
        conn: ConnId,
        /// Why, for logs.
        reason: String,
    },
    /// Something for dashboards and logs.
    Event(Event),
}

/// What happened, for dashboards, metrics and logs.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A worker passed its benchmark and was admitted.
    WorkerAdmitted {
        /// Who.
        worker: WorkerId,
        /// Its class.
        class: WorkerClass,
        /// Its measured speed.
        mflops: u64,
    },
    /// A worker was refused (auth, capacity, benchmark).
    WorkerRefused {
        /// Who, if known.
        worker: Option<WorkerId>,
        /// Why.
        reason: String,
    },
    /// A worker left or was evicted; its work was re-queued.
    WorkerLeft {
        /// Who.
        worker: WorkerId,
        /// Why.
        reason: String,
    },
    /// A job was accepted.
    JobAccepted {
        /// Which.
        job: JobId,
        /// Its task count.
        tasks: u32,
    },
    /// A task's result was accepted by quorum.
    TaskVerified {
        /// The job.
        job: JobId,
        /// The task.
        task: TaskId,
        /// Its position in the job.
        index: u32,
        /// Workers whose results agree with the accepted one.
        agreed: Vec<WorkerId>,
        /// Workers whose results were outvoted.
        outvoted: Vec<WorkerId>,
    },
    /// A task went to the dead-letter queue.
    TaskDeadLettered {
        /// The job.
        job: JobId,
        /// The task.
        task: TaskId,
        /// Its position in the job.
        index: u32,
        /// Why.
        reason: String,
    },
    /// Every task of a job ended.
    JobFinished {
        /// Which.
        job: JobId,
        /// Tasks verified.
        verified: u32,
        /// Tasks dead-lettered.
        dead_lettered: u32,
        /// Tasks cancelled.
        cancelled: u32,
    },
    /// A worker was proven to lie and was slashed.
    WorkerSlashed {
        /// Who.
        worker: WorkerId,
        /// Why.
        reason: String,
        /// Stake forfeited.
        forfeited: u128,
    },
    /// An epoch closed.
    EpochSettled(Box<EpochSettlement>),
}

/// One task of a job: a kernel with its parameters and inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// What to run.
    pub kernel: KernelSpec,
    /// The inputs, in the kernel's order.
    pub inputs: Vec<Bytes>,
}

/// A job as submitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The tasks.
    pub tasks: Vec<TaskSpec>,
    /// Replicas per task (default from the config; 1 for lite jobs).
    pub redundancy: Option<u8>,
    /// Agreeing results needed (default: the redundancy).
    pub quorum: Option<u8>,
    /// Higher runs first.
    pub priority: u8,
    /// Lowest tier allowed to run it.
    pub min_tier: Tier,
    /// May trusted workers run its tasks alone?
    pub allow_adaptive: bool,
}

impl JobSpec {
    /// A job of these tasks with the defaults.
    pub fn new(tasks: Vec<TaskSpec>) -> Self {
        JobSpec { tasks, redundancy: None, quorum: None, priority: 0, min_tier: Tier::Low, allow_adaptive: true }
    }
}

/// A job whose tasks' inputs are already hashed: their digest (the name
/// they are stored and committed under) and checksum (what a worker
/// checks).
///
/// Hashing is the coordinator's largest cost per input byte. A host builds
/// the job as its tasks arrive ([`PreparedJob::push`]) and hashes each
/// task's inputs then, while they are still in the cache from being
/// received, and on its own threads rather than the engine's. The hashes
/// are computed here, from the very inputs the job carries, so a host
/// cannot pair a task with another's names. A plain [`JobSpec`] converts
/// (hashing everything at once).
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedJob {
    spec: JobSpec,
    ids: Vec<(Digest, u128)>,
}

impl PreparedJob {
    /// A job with `settings`'s replication, priority and tier, and its
    /// tasks (hashed now); more may be pushed.
    pub fn new(settings: JobSpec) -> Self {
        let ids = settings.tasks.iter().map(|t| input_ids(&t.inputs)).collect();
        PreparedJob { spec: settings, ids }
    }

    /// Appends a task, hashing its inputs.
    pub fn push(&mut self, task: TaskSpec) {
        self.ids.push(input_ids(&task.inputs));
        self.spec.tasks.push(task);
    }

    /// The job.
    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }
}

impl From<JobSpec> for PreparedJob {
    fn from(spec: JobSpec) -> Self {
        PreparedJob::new(spec)
    }
}

/// Why a job was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// No tasks.
    #[error("a job needs at least one task")]
    Empty,
    /// The queue is full (back-pressure).
    #[error("{queued} tasks are queued; the limit is {limit}")]
    QueueFull {
        /// Tasks queued now.
        queued: usize,
        /// The limit.
        limit: usize,
    },
    /// A task's kernel or inputs are invalid.
    #[error("task {index}: {error}")]
    InvalidTask {
        /// Which task.
        index: usize,
        /// What is wrong.
        error: KernelError,
    },
    /// Redundancy or quorum out of range.
    #[error("redundancy {redundancy} and quorum {quorum} must satisfy 1 ≤ quorum ≤ redundancy ≤ {max}")]
    Replication {
        /// Requested redundancy.
        redundancy: u8,
        /// Requested quorum.
        quorum: u8,
        /// The configured cap.
        max: u8,
    },
}

/// Where a task stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskPhase {
    /// Waiting for replicas or results.
    Pending,
    /// Accepted by quorum.
    Verified,
    /// Given up on (see the dead-letter queue).
    DeadLettered,
    /// Withdrawn with its job.
    Cancelled,
}

/// A task in the dead-letter queue, with the reasons.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The job.
    pub job: JobId,
    /// The task.
    pub task: TaskId,
    /// Its position in the job.
    pub index: u32,
    /// The final reason.
    pub reason: String,
    /// Every failure on the way.
    pub failures: Vec<String>,
}

/// The accepted result of a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedResult {
    /// The outputs.
    pub outputs: Vec<Bytes>,
    /// Their digest.
    pub digest: Digest,
    /// Workers that agreed (inline for the usual quorum of two: one
    /// allocation fewer per verified task; encoded as a list, like a `Vec`).
    pub agreed: SmallVec<[WorkerId; 2]>,
    /// Workers that were outvoted.
    pub outvoted: Vec<WorkerId>,
}

/// Progress of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobProgress {
    /// Tasks in all.
    pub tasks: u32,
    /// Verified.
    pub verified: u32,
    /// Dead-lettered.
    pub dead_lettered: u32,
    /// Cancelled.
    pub cancelled: u32,
}

impl JobProgress {
    /// Whether every task ended.
    pub fn finished(&self) -> bool {
        self.verified + self.dead_lettered + self.cancelled == self.tasks
    }
}

/// Counters for metrics and the simulator.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorStats {
    /// Offers sent (task replicas, ringers and benchmarks).
    pub offers: u64,
    /// Results received.
    pub results: u64,
    /// Tasks verified.
    pub verified: u64,
    /// Tasks whose replicas disagreed at least once.
    pub mismatched_tasks: u64,
    /// Extra replicas requested by escalation.
    pub escalations: u64,
    /// Tasks dead-lettered.
    pub dead_lettered: u64,
    /// Assignments that timed out.
    pub timeouts: u64,
    /// Assignments re-queued after their worker left.
    pub requeued_on_leave: u64,
    /// Workers slashed.
    pub slashed: u64,
    /// Ringers sent.
    pub ringers: u64,
    /// Ringers answered wrongly.
    pub ringers_failed: u64,
    /// Tasks run by a single trusted worker (adaptive replication).
    pub solo_tasks: u64,
    /// Stale results refused (assignment no longer valid).
    pub stale_results: u64,
}

/// Shadow-mode comparison with ground truth (ringers always; the CPU
/// reference of verified tasks when enabled). Never changes an outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowStats {
    /// Results compared with the truth.
    pub compared: u64,
    /// Results equal to the truth.
    pub matched: u64,
    /// Results different from the truth.
    pub mismatched: u64,
    /// Accepted results that are wrong (verification said yes, truth says no).
    pub false_positives: u64,
    /// Outvoted results that were right (verification said no, truth says yes).
    pub false_negatives: u64,
}

/// A worker as dashboards see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerView {
    /// Id.
    pub id: WorkerId,
    /// Class once admitted.
    pub class: Option<WorkerClass>,
    /// Measured MFLOPS once admitted.
    pub mflops: Option<u64>,
    /// Credibility, ppm.
    pub credibility_ppm: u32,
    /// Assignments in flight.
    pub in_flight: u32,
    /// Verified agreements (all time).
    pub agreed: u64,
    /// Last message time.
    pub last_seen: Millis,
    /// Proven to lie (it is refused from then on).
    pub slashed: bool,
    /// Share of its results in the open epoch that agreed with the accepted
    /// result, ppm (None before its first decided result this epoch).
    pub epoch_accuracy_ppm: Option<u32>,
}

/// Reputation that survives reconnects (and, persisted in
/// [`WorkerRecord`], restarts).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Reputation {
    /// Verified agreements and passed ringers since joining.
    pub(crate) agreed: u64,
    /// Caught lying.
    pub(crate) slashed: bool,
    /// Stake held.
    pub(crate) stake: u128,
}

type WorkerIdx = u32;

#[derive(Debug)]
enum WorkerState {
    /// Running the benchmark.
    Profiling,
    /// Admitted.
    Active { class: WorkerClass, mflops: u64 },
}

#[derive(Debug)]
struct Worker {
    id: WorkerId,
    /// Stable number of this worker id (never reused, survives reconnects).
    num: u32,
    conn: ConnId,
    origin: OriginKey,
    device: DeviceInfo,
    state: WorkerState,
    capacity: u32,
    in_flight: u32,
    last_seen: Millis,
    /// Assignments in flight (inline up to a typical worker depth: the
    /// list is read on every result, and a separate allocation would be
    /// one more cache miss).
    live: SmallVec<[AssignmentId; 16]>,
}

impl Worker {
    fn class(&self) -> Option<WorkerClass> {
        match self.state {
            WorkerState::Active { class, .. } => Some(class),
            WorkerState::Profiling => None,
        }
    }
}

#[derive(Debug)]
struct Conn {
    origin: OriginKey,
    worker: Option<WorkerIdx>,
    opened: Millis,
}

#[derive(Debug, Clone)]
enum Kind {
    Task,
    Ringer { expected: Arc<Vec<Vec<u8>>> },
    Benchmark { expected: Arc<Vec<Vec<u8>>>, flops: u64 },
}

#[derive(Debug)]
struct Assignment {
    task: Option<TaskKey>,
    spec: Arc<KernelSpec>,
    worker: WorkerIdx,
    life: TaskLifecycle,
    offered: Millis,
    deadline: Millis,
    /// The deadline sits in the acknowledgement FIFO, not the ordered set.
    in_fifo: bool,
    kind: Kind,
}

#[derive(Debug)]
struct ReplicaResult {
    worker_id: WorkerId,
    /// The worker's stable number.
    num: u32,
    class: Option<WorkerClass>,
    outputs: Vec<Bytes>,
    digest: Digest,
    reward: u64,
}

/// A task's place in the [`TaskSlab`]: its submission sequence number.
type TaskKey = u64;

/// Tasks per slab chunk.
const CHUNK: usize = 1024;

/// A block of consecutive tasks, freed as a whole once all are released.
#[derive(Debug)]
struct Chunk {
    slots: Vec<Option<Task>>,
    live: usize,
}

/// Tasks stored in submission order, in chunks of 1024. Dispatch walks tasks
/// in that order and jobs finish roughly in it, so memory is touched
/// sequentially (a hash map would scatter a million tasks over the heap and
/// miss the cache on every access); a chunk is freed as soon as all its
/// tasks are released, so a long-running job only pins its own chunks.
///
/// A task id is this coordinator's 8-byte random prefix followed by the
/// task's key, so ids stay globally unique while an id leads straight to
/// its slot, with no index to maintain.
#[derive(Debug, Default)]
struct TaskSlab {
    prefix: [u8; 8],
    /// Key of the first slot of `chunks[0]`.
    base: TaskKey,
    chunks: VecDeque<Option<Chunk>>,
    next: TaskKey,
}

impl TaskSlab {
    fn next_key(&self) -> TaskKey {
        self.next
    }

    fn id_for(&self, key: TaskKey) -> TaskId {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.prefix);
        b[8..].copy_from_slice(&key.to_be_bytes());
        TaskId::from_bytes(b)
    }

    fn insert(&mut self, task: Task) -> TaskKey {
        let key = self.next;
        self.next += 1;
        let full = self.chunks.back().is_none_or(|c| c.as_ref().is_none_or(|c| c.slots.len() == CHUNK));
        if full {
            self.chunks.push_back(Some(Chunk { slots: Vec::with_capacity(CHUNK), live: 0 }));
        }
        if let Some(Some(c)) = self.chunks.back_mut() {
            c.slots.push(Some(task));
            c.live += 1;
        }
        key
    }

    fn locate(&self, key: TaskKey) -> Option<(usize, usize)> {
        let off = usize::try_from(key.checked_sub(self.base)?).ok()?;
        Some((off / CHUNK, off % CHUNK))
    }

    fn get(&self, key: TaskKey) -> Option<&Task> {
        let (c, i) = self.locate(key)?;
        self.chunks.get(c)?.as_ref()?.slots.get(i)?.as_ref()
    }

    fn get_mut(&mut self, key: TaskKey) -> Option<&mut Task> {
        let (c, i) = self.locate(key)?;
        self.chunks.get_mut(c)?.as_mut()?.slots.get_mut(i)?.as_mut()
    }

    fn key_of(&self, id: TaskId) -> Option<TaskKey> {
        let b = id.as_bytes();
        if b[..8] != self.prefix {
            return None;
        }
        let mut k = [0u8; 8];
        k.copy_from_slice(&b[8..]);
        let key = u64::from_be_bytes(k);
        self.get(key).is_some_and(|t| t.id == id).then_some(key)
    }

    fn remove(&mut self, key: TaskKey) {
        let Some((c, i)) = self.locate(key) else { return };
        let Some(Some(chunk)) = self.chunks.get_mut(c) else { return };
        if chunk.slots.get_mut(i).and_then(Option::take).is_none() {
            return;
        }
        chunk.live -= 1;
        if chunk.live == 0 && chunk.slots.len() == CHUNK {
            self.chunks[c] = None;
        }
        while matches!(self.chunks.front(), Some(None)) {
            self.chunks.pop_front();
            self.base += CHUNK as u64;
        }
    }
}

#[derive(Debug, Default)]
struct Trouble {
    failures: Vec<String>,
    harmed: Vec<u32>,
}

#[derive(Debug)]
struct Task {
    id: TaskId,
    key: TaskKey,
    job: JobId,
    spec: Arc<KernelSpec>,
    /// Bytes a worker must hold (inputs + outputs).
    working_set: u64,
    inputs: Vec<Bytes>,
    input_digest: Digest,
    /// [`Digest::check_of_parts`] of the inputs (what workers check), as
    /// bytes: a `u128` field would align the whole task to 16 bytes.
    input_check: [u8; 16],
    quorum: u8,
    priority: u8,
    min_tier: Tier,
    phase: TaskPhase,
    /// Replicas still to hand out.
    open_slots: u8,
    /// Replicas in flight; inline for the usual redundancy (read on every
    /// result: kept in the task's own cache lines).
    live: SmallVec<[AssignmentId; 2]>,
    results: Vec<ReplicaResult>,
    /// Workers (and their origins) this task was ever given to (inline for
    /// the usual redundancy, as `live`).
    tried: SmallVec<[(u32, OriginKey); 2]>,
    class: Option<WorkerClass>,
    attempts: u32,
    /// Failures on the way and the workers they harmed (rare: boxed so a
    /// queued task stays small).
    trouble: Option<Box<Trouble>>,
    escalated: bool,
    adaptive: bool,
    verified: Option<Box<VerifiedResult>>,
}

impl Task {
    fn ready_key(&self) -> (Reverse<u8>, TaskKey) {
        (Reverse(self.priority), self.key)
    }
}

#[derive(Debug)]
struct Job {
    progress: JobProgress,
    tasks: Vec<TaskId>,
    /// The tasks' keys are `first .. first + tasks.len()`.
    first: TaskKey,
    expires: Millis,
}

impl Job {
    fn keys(&self) -> std::ops::Range<TaskKey> {
        self.first..self.first + self.tasks.len() as u64
    }
}

#[derive(Debug)]
struct Ringer {
    spec: Arc<KernelSpec>,
    inputs: Vec<Bytes>,
    expected: Arc<Vec<Vec<u8>>>,
}

#[derive(Debug)]
struct EpochState {
    number: u64,
    opened: Millis,
    verified: u64,
    work: Map<WorkerId, EpochWork>,
    carried: u128,
    forfeited: u128,
    history: Vec<EpochSettlement>,
}

/// A task's inputs' digest (their name) and checksum (what a worker checks).
fn input_ids(inputs: &[Bytes]) -> (Digest, u128) {
    let parts = || inputs.iter().map(|b| &b[..]);
    (Digest::of_parts(parts()), Digest::check_of_parts(parts()))
}

/// A ledger record's bytes: small records (most of them, written on every
/// verified task) are encoded on the stack and copied once into a vector
/// of their exact size, instead of growing a vector step by step.
fn encode_record<T: Serialize>(record: &T) -> Vec<u8> {
    let mut buf = [0u8; 512];
    match postcard::to_slice(record, &mut buf) {
        Ok(bytes) => bytes.to_vec(),
        Err(_) => postcard::to_allocvec(record).unwrap_or_default(),
    }
}

/// The workers whose records must be written at the end of the round, in
/// the order they were first touched (deterministic on every platform,
/// and no sort per round).
#[derive(Debug, Default)]
struct DirtyWorkers {
    order: Vec<WorkerId>,
    seen: std::collections::HashSet<WorkerId, foldhash::fast::FixedState>,
}

impl DirtyWorkers {
    fn insert(&mut self, id: WorkerId) {
        // One hash per call; the clone is a reference count.
        if self.seen.insert(id.clone()) {
            self.order.push(id);
        }
    }

    /// The workers touched since the last call, in first-touch order.
    fn take(&mut self) -> Vec<WorkerId> {
        self.seen.clear();
        std::mem::take(&mut self.order)
    }
}

/// Removes `task` from the undecided list of worker number `num` (the
/// list itself stays, so the next result does not allocate a new one).
fn forget_undecided(undecided: &mut IdMap<u32, SmallVec<[TaskKey; 4]>>, num: u32, task: TaskKey) {
    if let Some(list) = undecided.get_mut(&num) {
        remove_item(list, &task);
    }
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

/// Why an assignment ended without a result.
enum Release<'a> {
    /// The worker declined it.
    Declined(&'a str),
    /// The worker reported a failure (counts against the task).
    Failed(&'a str),
    /// Its deadline passed (counts against the task once executing).
    TimedOut { executing: bool, why: &'a str },
    /// Its worker left (counts against the task once executing).
    Left { executing: bool, why: &'a str },
    /// No longer needed (the task was decided or cancelled).
    Withdrawn(&'a str),
}

impl Release<'_> {
    fn reason(&self) -> &str {
        match self {
            Release::Declined(w) | Release::Failed(w) | Release::Withdrawn(w) => w,
            Release::TimedOut { why, .. } | Release::Left { why, .. } => why,
        }
    }

    fn harms(&self) -> bool {
        match self {
            Release::Failed(_) => true,
            Release::TimedOut { executing, .. } | Release::Left { executing, .. } => *executing,
            Release::Declined(_) | Release::Withdrawn(_) => false,
        }
    }

    fn tells_worker(&self) -> bool {
        matches!(self, Release::TimedOut { .. } | Release::Withdrawn(_))
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
/// Candidates examined per replica before a task is skipped this round.
const PICK_SCAN: usize = 64;
/// Tasks skipped per dispatch round before the round stops.
const READY_SCAN: usize = 256;
/// Size of the ringer pool.
const RINGERS: usize = 16;

/// The coordinator.
#[derive(Debug)]
pub struct Coordinator {
    cfg: CoordinatorConfig,
    secret: Option<MasterSecret>,
    ids: IdGen,
    rng: SplitMix64,
    conns: IdMap<ConnId, Conn>,
    workers: Vec<Option<Worker>>,
    free_slots: Vec<WorkerIdx>,
    by_id: Map<WorkerId, WorkerIdx>,
    reputation: Map<WorkerId, Reputation>,
    /// Undecided tasks holding a result of each worker, connected or not
    /// (so a liar who left is still slashed and its votes withdrawn).
    undecided: IdMap<u32, SmallVec<[TaskKey; 4]>>,
    /// Stable numbers of worker ids (see `Worker::num`).
    worker_nums: Map<WorkerId, u32>,
    /// The next number to give (numbers are never reused).
    next_worker_num: u32,
    /// Active workers with room, by load.
    idle: BTreeSet<(u32, WorkerIdx)>,
    jobs: IdMap<JobId, Job>,
    tasks: TaskSlab,
    ready: BTreeSet<(Reverse<u8>, TaskKey)>,
    queued_tasks: usize,
    /// Unfinished jobs by expiry.
    open_jobs: BTreeSet<(Millis, JobId)>,
    assignments: Slots<Assignment>,
    deadlines: BTreeSet<(Millis, AssignmentId)>,
    /// Acknowledgement deadlines of offers: all `now + ack_timeout`, so they
    /// arrive in order and a FIFO holds them; entries of assignments that
    /// were acknowledged or ended are skipped lazily.
    ack_fifo: VecDeque<(Millis, AssignmentId)>,
    ringers: Vec<Ringer>,
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
    staged: Vec<Output>,
    outputs: VecDeque<Output>,
    started: bool,
}

impl Coordinator {
    /// A coordinator with this configuration, worker secret (None: tokens
    /// are not checked) and 32 bytes of host entropy (ids, ringer inputs).
    pub fn new(cfg: CoordinatorConfig, secret: Option<MasterSecret>, entropy: [u8; 32]) -> Self {
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&entropy[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        let mut rng = SplitMix64::new(word(2) ^ word(3).rotate_left(17));
        let ringers = (0..RINGERS)
            .map(|i| {
                let spec = Arc::new(if i % 2 == 0 {
                    KernelSpec::Sha256(crate::kernels::Sha256Params { count: 4, message_len: 32 })
                } else {
                    KernelSpec::Mandelbrot(crate::kernels::MandelbrotParams::from_plane(
                        8,
                        8,
                        -2.0 + (i as f64) * 0.1,
                        -1.0,
                        0.05,
                        64,
                    ))
                });
                let inputs: Vec<Bytes> = spec.seeded_inputs(rng.next_u64()).into_iter().map(Bytes::from).collect();
                let refs: Vec<&[u8]> = inputs.iter().map(|b| &b[..]).collect();
                let expected = Arc::new(spec.run_cpu(&refs).unwrap_or_default());
                Ringer { spec, inputs, expected }
            })
            .collect();
        Coordinator {
            secret,
            ids: IdGen(SplitMix64::new(word(0)), SplitMix64::new(word(1))),
            rng,
            conns: IdMap::default(),
            workers: Vec::new(),
            free_slots: Vec::new(),
            by_id: Map::default(),
            reputation: Map::default(),
            undecided: IdMap::default(),
            worker_nums: Map::default(),
            next_worker_num: 0,
            idle: BTreeSet::new(),
            jobs: IdMap::default(),
            tasks: TaskSlab {
                prefix: SplitMix64::new(word(1) ^ 0x5441_534B).next_u64().to_le_bytes(),
                ..TaskSlab::default()
            },
            ready: BTreeSet::new(),
            queued_tasks: 0,
            open_jobs: BTreeSet::new(),
            assignments: Slots::default(),
            deadlines: BTreeSet::new(),
            ack_fifo: VecDeque::new(),
            ringers,
            dead_letters: Vec::new(),
            ledger: Ledger::default(),
            epoch: EpochState {
                number: 0,
                opened: Millis::ZERO,
                verified: 0,
                work: Map::default(),
                carried: 0,
                forfeited: 0,
                history: Vec::new(),
            },
            dirty: DirtyWorkers::default(),
            epoch_dirty: false,
            stats: CoordinatorStats::default(),
            shadow: ShadowStats::default(),
            next_housekeeping: Millis::ZERO,
            staged: Vec::new(),
            outputs: VecDeque::new(),
            started: false,
            cfg,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.cfg
    }

    // ------------------------------------------------------------ driving

    /// Feeds one input that happened at `now`.
    pub fn handle(&mut self, now: Millis, input: Input) {
        self.handle_batch(now, std::iter::once(input));
    }

    /// Feeds several inputs that happened at `now` as one round: one
    /// dispatch pass and one state diff for all of them (group commit),
    /// which is how a host that reads many frames at once should call it.
    pub fn handle_batch(&mut self, now: Millis, inputs: impl IntoIterator<Item = Input>) {
        self.start(now);
        for input in inputs {
            match input {
                Input::Connected { conn, origin } => {
                    self.conns.insert(conn, Conn { origin, worker: None, opened: now });
                }
                Input::Received { conn, envelope } => self.on_envelope(now, conn, envelope),
                Input::Disconnected { conn } => self.on_disconnect(now, conn, "connection closed"),
                Input::Tick => self.on_tick(now),
            }
        }
        self.finish_round(now);
    }

    /// The next output to perform, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When the host must call `handle(_, Input::Tick)` at the latest.
    pub fn next_wakeup(&self) -> Option<Millis> {
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
        if !self.started {
            self.started = true;
            self.epoch.opened = now;
            self.next_housekeeping = now + HOUSEKEEPING;
        }
    }

    fn finish_round(&mut self, now: Millis) {
        // Drop acknowledgement deadlines that no longer matter from the front.
        while let Some((_, aid)) = self.ack_fifo.front() {
            if self.assignments.get(aid).is_some_and(|a| a.in_fifo) {
                break;
            }
            self.ack_fifo.pop_front();
        }
        self.dispatch(now);
        self.maybe_close_epoch(now, false);
        self.flush_worker_records();
        if let Some(diff) = self.ledger.seal() {
            self.outputs.push_back(Output::Persist(diff));
        }
        self.outputs.extend(self.staged.drain(..));
    }

    /// Position of a task in its job.
    fn index_of(&self, job: JobId, tid: TaskKey) -> u32 {
        self.jobs.get(&job).map_or(0, |j| (tid - j.first) as u32)
    }

    /// Records the reputation and open-epoch work of every worker touched
    /// this round, and the open epoch's counters, so a restart resumes them.
    fn flush_worker_records(&mut self) {
        let (none, idle) = (Reputation::default(), EpochWork::default());
        for id in self.dirty.take() {
            let record = WorkerRecordRef {
                reputation: self.reputation.get(&id).unwrap_or(&none),
                epoch: self.epoch.number,
                work: self.epoch.work.get(&id).unwrap_or(&idle),
            };
            self.ledger.put(ns::WORKER_STATE, id.as_str().as_bytes().to_vec(), encode_record(&record));
        }
        if std::mem::take(&mut self.epoch_dirty) {
            let open = OpenEpoch {
                number: self.epoch.number,
                verified: self.epoch.verified,
                carried: self.epoch.carried,
                forfeited: self.epoch.forfeited,
            };
            self.ledger.put(ns::EPOCH_OPEN, Vec::new(), encode_record(&open));
        }
    }

    fn send(&mut self, conn: ConnId, message: Message, attachments: Vec<Bytes>) {
        self.staged.push(Output::Send { conn, envelope: Envelope { message, attachments } });
    }

    fn event(&mut self, e: Event) {
        self.staged.push(Output::Event(e));
    }

    fn refuse(&mut self, conn: ConnId, worker: Option<WorkerId>, code: ErrorCode, reason: String) {
        self.send(conn, Message::Error(ErrorMessage { code, assignment: None, message: reason.clone() }), vec![]);
        self.send(conn, Message::Goodbye(Goodbye { reason: reason.clone() }), vec![]);
        self.staged.push(Output::Close { conn, reason: reason.clone() });
        self.event(Event::WorkerRefused { worker, reason });
        if let Some(c) = self.conns.remove(&conn) {
            if let Some(w) = c.worker {
                self.remove_worker(w);
            }
        }
    }

    // ------------------------------------------------------------ jobs

    /// Accepts a job: validates every task, records it durably (the
    /// `Persist` output precedes anything else) and queues its tasks.
    pub fn submit_job(&mut self, now: Millis, job: impl Into<PreparedJob>) -> Result<JobId, SubmitError> {
        let PreparedJob { spec, ids: digests } = job.into();
        self.start(now);
        if spec.tasks.is_empty() {
            return Err(SubmitError::Empty);
        }
        if self.queued_tasks + spec.tasks.len() > self.cfg.max_queued_tasks {
            return Err(SubmitError::QueueFull { queued: self.queued_tasks, limit: self.cfg.max_queued_tasks });
        }
        let redundancy = spec.redundancy.unwrap_or(self.cfg.default_redundancy);
        let quorum = spec.quorum.unwrap_or(redundancy);
        if quorum == 0 || quorum > redundancy || redundancy > self.cfg.max_replicas {
            return Err(SubmitError::Replication { redundancy, quorum, max: self.cfg.max_replicas });
        }
        for (index, t) in spec.tasks.iter().enumerate() {
            let refs: Vec<&[u8]> = t.inputs.iter().map(|b| &b[..]).collect();
            t.kernel
                .validate()
                .and_then(|()| t.kernel.check_inputs(&refs))
                .map_err(|error| SubmitError::InvalidTask { index, error })?;
        }
        let job = JobId::from_bytes(self.ids.next());
        // Each task's inputs were hashed once (`PreparedJob`): the digest
        // that names them is also the key big inputs are stored under, and
        // the ledger's chain commits to them through it (no second pass, no
        // copy). Workers check the cheap checksum.
        let mut stored_apart = BTreeSet::new();
        let mut tasks = Vec::with_capacity(spec.tasks.len());
        for (t, (digest, _)) in spec.tasks.iter().zip(&digests) {
            let apart = t.inputs.iter().map(Bytes::len).sum::<usize>() >= INPUTS_APART;
            if apart && stored_apart.insert(*digest) {
                self.ledger.put_inputs(*digest, t.inputs.clone());
            }
            tasks.push(TaskRecord {
                kernel: Cow::Borrowed(&t.kernel),
                inputs: if apart {
                    StoredInputs::Apart(*digest)
                } else {
                    StoredInputs::Inline(Cow::Borrowed(&t.inputs))
                },
            });
        }
        let record = JobRecord {
            tasks,
            redundancy: spec.redundancy,
            quorum: spec.quorum,
            priority: spec.priority,
            min_tier: spec.min_tier,
            allow_adaptive: spec.allow_adaptive,
            submitted: now,
        };
        // Sized up front: the record holds the small inputs (a megabyte for a
        // job of 10 000 tiny tasks), and a vector grown by doubling would
        // copy them again and again.
        let inline: usize = (record.tasks.iter())
            .map(|t| match &t.inputs {
                StoredInputs::Inline(inputs) => inputs.iter().map(|b| b.len() + 10).sum(),
                StoredInputs::Apart(_) => 34,
            })
            .sum();
        let value = postcard::to_extend(&record, Vec::with_capacity(64 + inline + 64 * record.tasks.len()));
        self.ledger.put(ns::JOB, job.as_bytes().to_vec(), value.unwrap_or_default());
        let n = spec.tasks.len() as u32;
        self.insert_job(job, spec, digests, now + self.cfg.task_ttl, BTreeMap::new());
        self.event(Event::JobAccepted { job, tasks: n });
        self.finish_round(now);
        Ok(job)
    }

    /// Creates a job's tasks: the ones in `ended` as they ended, the others
    /// queued.
    /// `digests` are the tasks' input digests and checksums, in order.
    fn insert_job(
        &mut self,
        job: JobId,
        spec: JobSpec,
        digests: Vec<(Digest, u128)>,
        expires: Millis,
        mut ended: BTreeMap<u32, EndedTask>,
    ) {
        let redundancy = spec.redundancy.unwrap_or(self.cfg.default_redundancy);
        let quorum = spec.quorum.unwrap_or(redundancy);
        let mut ids = Vec::with_capacity(spec.tasks.len());
        let n = spec.tasks.len() as u32;
        let mut progress = JobProgress { tasks: n, verified: 0, dead_lettered: 0, cancelled: 0 };
        let mut first = None;
        // Tasks of a job often share one kernel spec: share one allocation.
        let mut last_spec: Option<Arc<KernelSpec>> = None;
        for ((index, t), (input_digest, input_check)) in spec.tasks.into_iter().enumerate().zip(digests) {
            let key = self.tasks.next_key();
            let id = self.tasks.id_for(key);
            first.get_or_insert(key);
            let mut task = Task {
                id,
                key,
                job,
                working_set: t.kernel.working_set(),
                spec: match &last_spec {
                    Some(prev) if **prev == t.kernel => Arc::clone(prev),
                    _ => {
                        let spec = Arc::new(t.kernel);
                        last_spec = Some(Arc::clone(&spec));
                        spec
                    }
                },
                inputs: t.inputs,
                input_digest,
                input_check: input_check.to_le_bytes(),
                quorum,
                priority: spec.priority,
                min_tier: spec.min_tier,
                phase: TaskPhase::Pending,
                open_slots: redundancy,
                live: SmallVec::new(),
                results: Vec::new(),
                tried: SmallVec::new(),
                class: None,
                attempts: 0,
                trouble: None,
                escalated: false,
                adaptive: spec.allow_adaptive,
                verified: None,
            };
            match ended.remove(&(index as u32)) {
                None => {
                    self.ready.insert(task.ready_key());
                    self.queued_tasks += 1;
                }
                Some(end) => {
                    task.inputs = Vec::new();
                    task.open_slots = 0;
                    match end {
                        EndedTask::Verified(v) => {
                            task.phase = TaskPhase::Verified;
                            task.verified = Some(Box::new(v));
                            progress.verified += 1;
                        }
                        EndedTask::DeadLettered(letter) => {
                            task.phase = TaskPhase::DeadLettered;
                            progress.dead_lettered += 1;
                            self.dead_letters.push(DeadLetter { task: id, ..letter });
                        }
                    }
                }
            }
            self.tasks.insert(task);
            ids.push(id);
        }
        self.open_jobs.insert((expires, job));
        self.jobs.insert(job, Job { progress, tasks: ids, first: first.unwrap_or(0), expires });
    }

    /// Rebuilds a coordinator after a restart from what it had stored (see
    /// [`super::recovery`]). `now` is the host's clock; unfinished jobs
    /// keep their deadline relative to when they were submitted, on the
    /// condition that the host's clock continues the stored one (a host
    /// keeps it monotonic across restarts by storing its last value).
    pub fn recover(
        cfg: CoordinatorConfig,
        secret: Option<MasterSecret>,
        entropy: [u8; 32],
        now: Millis,
        snapshot: Snapshot,
    ) -> Self {
        let mut c = Coordinator::new(cfg, secret, entropy);
        c.start(now);
        c.ledger = Ledger::resume(snapshot.ledger_height, snapshot.ledger_digest);
        let open = snapshot.open_epoch.unwrap_or_default();
        let next_after_history = snapshot.history.keys().next_back().map_or(0, |n| n + 1);
        c.epoch.number = open.number.max(next_after_history);
        if c.epoch.number == open.number {
            c.epoch.verified = open.verified;
            c.epoch.carried = open.carried;
            c.epoch.forfeited = open.forfeited;
        } else {
            c.epoch.carried = snapshot.history.values().next_back().map_or(0, |s| s.carried_out);
        }
        c.epoch.history = snapshot.history.into_values().collect();
        for (id, record) in snapshot.workers {
            if record.epoch == c.epoch.number && record.work != EpochWork::default() {
                c.epoch.work.insert(id.clone(), record.work);
            } else if record.reputation.stake > 0 {
                c.epoch.work.entry(id.clone()).or_default().stake = record.reputation.stake;
            }
            c.reputation.insert(id, record.reputation);
        }
        for (job, stored) in snapshot.jobs {
            if stored.finished.is_some() {
                continue;
            }
            let expires = stored.submitted + c.cfg.task_ttl;
            let mut spec = stored.spec;
            let mut digests = Vec::with_capacity(spec.tasks.len());
            for (index, t) in spec.tasks.iter_mut().enumerate() {
                match stored.apart.get(&(index as u32)) {
                    Some(digest) => {
                        // Inputs stored apart; a host provides the ones
                        // open tasks need (`Snapshot::needed_inputs`).
                        if !stored.ended.contains_key(&(index as u32)) {
                            t.inputs = snapshot.inputs.get(digest).cloned().unwrap_or_default();
                        }
                        digests.push((*digest, Digest::check_of_parts(t.inputs.iter().map(|b| &b[..]))));
                    }
                    None => digests.push(input_ids(&t.inputs)),
                }
            }
            c.insert_job(job, spec, digests, expires, stored.ended);
        }
        c
    }

    /// Cancels a job: pending tasks end as cancelled, their running
    /// replicas are withdrawn. False for an unknown job.
    pub fn cancel_job(&mut self, now: Millis, job: JobId) -> bool {
        let Some(j) = self.jobs.get(&job) else { return false };
        for tid in j.keys() {
            let pending = self.tasks.get(tid).is_some_and(|t| t.phase == TaskPhase::Pending);
            if pending {
                self.withdraw_live(now, tid, "job cancelled");
                self.end_task(tid, TaskPhase::Cancelled);
            }
        }
        self.ledger.put(ns::JOB_CANCELLED, job.as_bytes().to_vec(), Vec::new());
        self.finish_round(now);
        true
    }

    /// Drops a finished job and its tasks' results from memory (after the
    /// host has persisted or delivered them). False if unknown or unfinished.
    pub fn forget_job(&mut self, job: JobId) -> bool {
        if !self.jobs.get(&job).is_some_and(|j| j.progress.finished()) {
            return false;
        }
        if let Some(j) = self.jobs.remove(&job) {
            for key in j.keys() {
                self.tasks.remove(key);
            }
        }
        true
    }

    /// A job's progress.
    pub fn job_progress(&self, job: JobId) -> Option<&JobProgress> {
        self.jobs.get(&job).map(|j| &j.progress)
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

    /// Sets a worker's stake (base units).
    pub fn set_stake(&mut self, worker: &WorkerId, stake: u128) {
        self.reputation.entry(worker.clone()).or_default().stake = stake;
        self.epoch.work.entry(worker.clone()).or_default().stake = stake;
        self.dirty.insert(worker.clone());
    }

    /// Every connected worker.
    pub fn workers(&self) -> Vec<WorkerView> {
        self.workers
            .iter()
            .flatten()
            .map(|w| WorkerView {
                id: w.id.clone(),
                class: w.class(),
                mflops: match w.state {
                    WorkerState::Active { mflops, .. } => Some(mflops),
                    WorkerState::Profiling => None,
                },
                credibility_ppm: self.credibility(&w.id),
                in_flight: w.in_flight,
                agreed: self.reputation.get(&w.id).map_or(0, |r| r.agreed),
                last_seen: w.last_seen,
                slashed: self.reputation.get(&w.id).is_some_and(|r| r.slashed),
                epoch_accuracy_ppm: self
                    .epoch
                    .work
                    .get(&w.id)
                    .filter(|e| e.agreed + e.outvoted > 0)
                    .map(crate::coordinator::rewards::EpochWork::accuracy_ppm),
            })
            .collect()
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

    /// Closes the current epoch now (e.g. at shutdown or on operator request).
    pub fn close_epoch(&mut self, now: Millis) {
        self.maybe_close_epoch(now, true);
        self.flush_worker_records();
        if let Some(diff) = self.ledger.seal() {
            self.outputs.push_back(Output::Persist(diff));
        }
        self.outputs.extend(self.staged.drain(..));
    }

    // ------------------------------------------------------------ workers

    fn on_envelope(&mut self, now: Millis, conn: ConnId, env: Envelope) {
        let Some(c) = self.conns.get(&conn) else { return };
        let widx = c.worker;
        if let Some(w) = widx.and_then(|i| self.worker_mut(i)) {
            w.last_seen = now;
        }
        match (env.message, widx) {
            (Message::Hello(h), None) => self.on_hello(now, conn, *h),
            (Message::Hello(_), Some(_)) => self.violation(now, conn, "second hello"),
            (_, None) => self.violation(now, conn, "the first message must be a hello"),
            (Message::TaskAck(a), Some(w)) => self.on_ack(now, conn, w, a.assignment),
            (Message::TaskDecline(d), Some(w)) => self.on_decline(now, conn, w, d.assignment, &d.reason),
            (Message::TaskResult(r), Some(w)) => self.on_result(now, conn, w, &r, env.attachments),
            (Message::Error(e), Some(w)) => {
                if let Some(a) = e.assignment {
                    self.on_failure(now, conn, w, a, &format!("{:?}: {}", e.code, e.message));
                }
            }
            (Message::Progress(_) | Message::Heartbeat(_), Some(_)) => {}
            (Message::Goodbye(g), Some(_)) => self.on_disconnect(now, conn, &format!("goodbye: {}", g.reason)),
            (Message::Welcome(_) | Message::TaskOffer(_) | Message::Cancel(_), Some(_)) => {
                self.violation(now, conn, "workers do not send welcome, offers or cancels");
            }
        }
    }

    fn violation(&mut self, now: Millis, conn: ConnId, why: &str) {
        self.send(
            conn,
            Message::Error(ErrorMessage { code: ErrorCode::Malformed, assignment: None, message: why.into() }),
            vec![],
        );
        self.staged.push(Output::Close { conn, reason: why.into() });
        self.on_disconnect(now, conn, why);
    }

    fn on_hello(&mut self, now: Millis, conn: ConnId, h: Hello) {
        if h.protocol_version != PROTOCOL_VERSION {
            let why = format!("protocol version {} is not {PROTOCOL_VERSION}", h.protocol_version);
            return self.refuse(conn, Some(h.worker_id), ErrorCode::ProtocolVersion, why);
        }
        let id = match (&h.auth, &self.secret) {
            (HelloAuth::Guest, _) if self.cfg.allow_guests => WorkerId::guest(self.ids.next()),
            (HelloAuth::Guest, _) => {
                return self.refuse(conn, Some(h.worker_id), ErrorCode::Unauthorized, "guests are not allowed".into());
            }
            (HelloAuth::Token(t), Some(secret)) => {
                if let Err(e) = verify_token(secret, &h.worker_id, t) {
                    return self.refuse(conn, Some(h.worker_id), ErrorCode::Unauthorized, e.to_string());
                }
                h.worker_id.clone()
            }
            (HelloAuth::Token(_), None) => h.worker_id.clone(),
        };
        if self.reputation.get(&id).is_some_and(|r| r.slashed) {
            return self.refuse(conn, Some(id), ErrorCode::Refused, "slashed for returning wrong results".into());
        }
        if let Some(&old) = self.by_id.get(&id) {
            // A reconnect replaces the old connection.
            let old_conn = self.worker_mut(old).map(|w| w.conn);
            if let Some(oc) = old_conn {
                self.staged.push(Output::Close { conn: oc, reason: "replaced by a new connection".into() });
                self.on_disconnect(now, oc, "replaced by a new connection");
            }
        } else if self.by_id.len() >= self.cfg.max_workers {
            let why = format!("at capacity ({} workers)", self.cfg.max_workers);
            return self.refuse(conn, Some(id), ErrorCode::Busy, why);
        }
        let Some(origin) = self.conns.get(&conn).map(|c| c.origin) else { return };
        let next = self.next_worker_num;
        let num = *self.worker_nums.entry(id.clone()).or_insert_with(|| next);
        if num == next {
            self.next_worker_num += 1;
        }
        let worker = Worker {
            id: id.clone(),
            num,
            conn,
            origin,
            device: h.device,
            state: WorkerState::Profiling,
            capacity: u32::from(h.max_concurrent.clamp(1, self.cfg.worker_queue.max(1))),
            in_flight: 0,
            last_seen: now,
            live: SmallVec::new(),
        };
        let idx = match self.free_slots.pop() {
            Some(i) => {
                self.workers[i as usize] = Some(worker);
                i
            }
            None => {
                self.workers.push(Some(worker));
                (self.workers.len() - 1) as WorkerIdx
            }
        };
        self.by_id.insert(id.clone(), idx);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.worker = Some(idx);
        }
        self.reputation.entry(id.clone()).or_default();
        self.send(
            conn,
            Message::Welcome(Welcome {
                protocol_version: PROTOCOL_VERSION,
                worker_id: id,
                heartbeat_interval_ms: self.cfg.heartbeat_interval.0 as u32,
                max_frame_payload: self.cfg.max_frame_payload,
            }),
            vec![],
        );
        // The benchmark: fresh inputs, answer computed here, timed here.
        let spec = Arc::new(benchmark_spec(&self.cfg.profile));
        let inputs: Vec<Bytes> = spec.seeded_inputs(self.rng.next_u64()).into_iter().map(Bytes::from).collect();
        let refs: Vec<&[u8]> = inputs.iter().map(|b| &b[..]).collect();
        let expected = Arc::new(spec.run_cpu(&refs).unwrap_or_default());
        let flops = spec.ops();
        let deadline = now + self.cfg.ack_timeout + self.cfg.exec_timeout_floor.max(Millis::from_secs(60));
        self.offer(now, idx, None, spec, inputs, Kind::Benchmark { expected, flops }, deadline);
    }

    fn worker_mut(&mut self, idx: WorkerIdx) -> Option<&mut Worker> {
        self.workers.get_mut(idx as usize).and_then(Option::as_mut)
    }

    fn worker(&self, idx: WorkerIdx) -> Option<&Worker> {
        self.workers.get(idx as usize).and_then(Option::as_ref)
    }

    /// Re-indexes a worker in the idle set after its load changed.
    fn set_load(&mut self, idx: WorkerIdx, in_flight: u32) {
        let Some(w) = self.worker_mut(idx) else { return };
        let (old, cap, active) = (w.in_flight, w.capacity, matches!(w.state, WorkerState::Active { .. }));
        w.in_flight = in_flight;
        self.idle.remove(&(old, idx));
        if active && in_flight < cap {
            self.idle.insert((in_flight, idx));
        }
    }

    fn remove_worker(&mut self, idx: WorkerIdx) {
        let Some(w) = self.workers.get_mut(idx as usize).and_then(Option::take) else { return };
        self.idle.remove(&(w.in_flight, idx));
        self.by_id.remove(&w.id);
        self.free_slots.push(idx);
    }

    fn on_disconnect(&mut self, now: Millis, conn: ConnId, why: &str) {
        let Some(c) = self.conns.remove(&conn) else { return };
        let Some(idx) = c.worker else { return };
        let Some(w) = self.worker(idx) else { return };
        let (id, live, num) = (w.id.clone(), w.live.clone(), w.num);
        for aid in live {
            let executing = self.assignments.get(&aid).is_some_and(|a| a.life.execute_started_at().is_some());
            self.stats.requeued_on_leave += 1;
            let reason = format!("{id} left ({why})");
            self.release(now, aid, &Release::Left { executing, why: &reason });
        }
        self.remove_worker(idx);
        self.forget_guest(&id, num);
        self.event(Event::WorkerLeft { worker: id, reason: why.into() });
    }

    /// A guest never comes back under the same id, so once it left with no
    /// undecided result its bookkeeping goes (otherwise tabs connecting and
    /// leaving would grow the coordinator's memory without bound). Its
    /// epoch earnings stay until the epoch closes.
    fn forget_guest(&mut self, id: &WorkerId, num: u32) {
        if !id.as_str().starts_with("guest-") || self.undecided.get(&num).is_some_and(|l| !l.is_empty()) {
            return;
        }
        self.undecided.remove(&num);
        self.worker_nums.remove(id);
        if self.reputation.get(id).is_some_and(|r| !r.slashed) {
            self.reputation.remove(id);
        }
    }

    /// Task slots held in memory (released tasks free their slots a chunk
    /// of 1024 at a time).
    pub fn task_slots(&self) -> usize {
        self.tasks.chunks.iter().flatten().map(|c| c.slots.len()).sum()
    }

    /// Worker ids the coordinator keeps books for (connected or not).
    pub fn remembered_workers(&self) -> usize {
        self.reputation.len()
    }

    // ------------------------------------------------------------ dispatch

    fn dispatch(&mut self, now: Millis) {
        let mut cursor: Option<(Reverse<u8>, TaskKey)> = None;
        let mut skipped = 0;
        while !self.idle.is_empty() && skipped < READY_SCAN {
            let next = match &cursor {
                None => self.ready.first().copied(),
                Some(k) => self.ready.range((Bound::Excluded(*k), Bound::Unbounded)).next().copied(),
            };
            let Some(key) = next else { break };
            let tid = key.1;
            match self.pick_worker(tid) {
                Some(w) => {
                    if self.cfg.credibility.ringer_pct > 0
                        && self.rng.below(100) < u64::from(self.cfg.credibility.ringer_pct)
                    {
                        self.send_ringer(now, w);
                        continue;
                    }
                    self.assign(now, tid, w);
                    // Stay on this task while it needs replicas; move on otherwise.
                    if !self.ready.contains(&key) {
                        cursor = Some(key);
                    }
                }
                None => {
                    skipped += 1;
                    cursor = Some(key);
                }
            }
        }
    }

    fn pick_worker(&self, tid: TaskKey) -> Option<WorkerIdx> {
        let t = self.tasks.get(tid)?;
        let need = t.working_set;
        let float = !matches!(t.spec.comparator(), Comparator::Exact);
        self.idle.iter().take(PICK_SCAN).map(|(_, i)| *i).find(|&i| {
            let Some(w) = self.worker(i) else { return false };
            let WorkerState::Active { class, .. } = w.state else { return false };
            class.tier >= t.min_tier
                && w.device.kernels.contains(&t.spec.id())
                && w.device.max_buffer_bytes >= need
                && !t.tried.iter().any(|&(tw, to)| tw == w.num || (self.cfg.distinct_origins && to == w.origin))
                && !(float && self.cfg.homogeneous_floats && t.class.is_some_and(|c| c != class))
        })
    }

    fn assign(&mut self, now: Millis, tid: TaskKey, w: WorkerIdx) {
        let Some(t) = self.tasks.get(tid) else { return };
        if t.attempts >= self.cfg.max_delivery_attempts {
            let reason = format!("{} delivery attempts exhausted", t.attempts);
            self.dead_letter(tid, reason);
            return;
        }
        let (spec, inputs) = (t.spec.clone(), t.inputs.clone());
        let first = t.attempts == 0;
        let adaptive_ok = t.adaptive && self.cfg.credibility.adaptive_replication;
        let Some(worker) = self.worker(w) else { return };
        let (origin, class, wid, num) = (worker.origin, worker.class(), worker.id.clone(), worker.num);
        // Adaptive replication: a trusted worker may run a task alone, unless spot-checked.
        let solo = first
            && adaptive_ok
            && self.credibility(&wid) >= self.cfg.credibility.trust_threshold_ppm
            && self.rng.below(100) >= u64::from(self.cfg.credibility.spot_check_pct);
        let Some(t) = self.tasks.get_mut(tid) else { return };
        t.attempts += 1;
        t.open_slots = t.open_slots.saturating_sub(1);
        if solo {
            t.open_slots = 0;
            t.quorum = 1;
            self.stats.solo_tasks += 1;
        }
        t.tried.push((num, origin));
        if t.class.is_none() {
            t.class = class;
        }
        if t.open_slots == 0 {
            let key = t.ready_key();
            self.ready.remove(&key);
        }
        let deadline = now + self.cfg.ack_timeout;
        self.offer(now, w, Some(tid), spec, inputs, Kind::Task, deadline);
    }

    fn send_ringer(&mut self, now: Millis, w: WorkerIdx) {
        let r = &self.ringers[self.rng.below(self.ringers.len() as u64) as usize];
        let (spec, inputs, expected) = (r.spec.clone(), r.inputs.clone(), r.expected.clone());
        self.stats.ringers += 1;
        let deadline = now + self.cfg.ack_timeout;
        self.offer(now, w, None, spec, inputs, Kind::Ringer { expected }, deadline);
    }

    #[allow(clippy::too_many_arguments)]
    fn offer(
        &mut self,
        now: Millis,
        w: WorkerIdx,
        task: Option<TaskKey>,
        spec: Arc<KernelSpec>,
        inputs: Vec<Bytes>,
        kind: Kind,
        deadline: Millis,
    ) {
        let Some(worker) = self.worker_mut(w) else { return };
        let conn = worker.conn;
        let load = worker.in_flight + 1;
        // Task and ringer offers all wait `ack_timeout`: their deadlines come in order.
        let in_fifo = !matches!(kind, Kind::Benchmark { .. }) && deadline == now + self.cfg.ack_timeout;
        let assignment = Assignment {
            task,
            spec: Arc::clone(&spec),
            worker: w,
            life: TaskLifecycle::new(now),
            offered: now,
            deadline,
            in_fifo,
            kind,
        };
        let aid = self.assignments.insert(self.ids.next(), assignment);
        if let Some(worker) = self.worker_mut(w) {
            worker.live.push(aid);
        }
        self.set_load(w, load);
        let (job, task_id, (input_digest, input_check)) = match task.and_then(|t| self.tasks.get_mut(t)) {
            Some(t) => {
                t.live.push(aid);
                (t.job, t.id, (t.input_digest, u128::from_le_bytes(t.input_check)))
            }
            // Ringers and benchmarks get a fresh id so they look like any task.
            None => (JobId::from_bytes([0; 16]), TaskId::from_bytes(self.ids.next()), input_ids(&inputs)),
        };
        let offer = TaskOffer {
            assignment: aid,
            task: task_id,
            job,
            kernel: spec,
            inputs: inputs.iter().map(|b| AttachmentMeta { len: b.len() as u64 }).collect(),
            input_digest,
            input_check,
            deadline_ms: deadline.since(now).0,
        };
        if in_fifo {
            self.ack_fifo.push_back((deadline, aid));
        } else {
            self.deadlines.insert((deadline, aid));
        }
        self.stats.offers += 1;
        self.send(conn, Message::TaskOffer(offer), inputs);
    }

    /// Execution deadline from the kernel's cost and the worker's speed.
    fn exec_deadline(&self, now: Millis, a: &Assignment) -> Millis {
        let mflops = match self.worker(a.worker).map(|w| &w.state) {
            Some(WorkerState::Active { mflops, .. }) => *mflops,
            _ => self.cfg.profile.min_mflops,
        }
        .max(1);
        let expected_ms = a.spec.ops() / (mflops * 1_000);
        let budget = Millis(expected_ms.saturating_mul(self.cfg.exec_slack_pct) / 100);
        now + budget.max(self.cfg.exec_timeout_floor)
    }

    // ------------------------------------------------------------ replies

    /// Whether the assignment belongs to worker `w` and is still open.
    fn owns(&self, w: WorkerIdx, aid: AssignmentId) -> bool {
        self.assignments.get(&aid).is_some_and(|a| a.worker == w && !a.life.status().is_terminal())
    }

    fn stale(&mut self, conn: ConnId, aid: AssignmentId) {
        self.stats.stale_results += 1;
        let message = "unknown or expired assignment".to_owned();
        self.send(
            conn,
            Message::Error(ErrorMessage { code: ErrorCode::UnknownAssignment, assignment: Some(aid), message }),
            vec![],
        );
    }

    fn on_ack(&mut self, now: Millis, conn: ConnId, w: WorkerIdx, aid: AssignmentId) {
        let new_deadline = match self.assignments.get(&aid) {
            Some(a) if a.worker == w && !a.life.status().is_terminal() => self.exec_deadline(now, a),
            _ => return self.stale(conn, aid),
        };
        let Some(a) = self.assignments.get_mut(&aid) else { return };
        if a.life.accept(now).and_then(|()| a.life.start(now)).is_err() {
            return;
        }
        if !a.in_fifo {
            self.deadlines.remove(&(a.deadline, aid));
        }
        a.in_fifo = false;
        a.deadline = new_deadline;
        self.deadlines.insert((new_deadline, aid));
    }

    fn on_decline(&mut self, now: Millis, conn: ConnId, w: WorkerIdx, aid: AssignmentId, reason: &str) {
        if !self.owns(w, aid) {
            return self.stale(conn, aid);
        }
        if let Some(a) = self.assignments.get_mut(&aid) {
            let _ = a.life.decline(now, reason);
        }
        self.release(now, aid, &Release::Declined(reason));
    }

    fn on_failure(&mut self, now: Millis, conn: ConnId, w: WorkerIdx, aid: AssignmentId, why: &str) {
        if !self.owns(w, aid) {
            return self.stale(conn, aid);
        }
        let id = self.worker(w).map(|x| x.id.to_string()).unwrap_or_default();
        self.release(now, aid, &Release::Failed(&format!("{id}: {why}")));
    }

    /// Ends an open assignment without a result: frees the worker's slot,
    /// tells the worker when it should stop, records harm against the task
    /// (poison guard) and re-queues the replica, as `how` says.
    fn release(&mut self, now: Millis, aid: AssignmentId, how: &Release<'_>) {
        let Some(mut a) = self.assignments.remove(&aid) else { return };
        if !a.in_fifo {
            self.deadlines.remove(&(a.deadline, aid));
        }
        if !a.life.status().is_terminal() {
            let _ = a.life.cancel(now, how.reason());
        }
        if let Some(worker) = self.worker_mut(a.worker) {
            remove_item(&mut worker.live, &aid);
            let (conn, load) = (worker.conn, worker.in_flight.saturating_sub(1));
            self.set_load(a.worker, load);
            if how.tells_worker() {
                let reason = how.reason().to_owned();
                self.send(conn, Message::Cancel(Cancel { assignment: aid, reason }), vec![]);
            }
        }
        let Some(tid) = a.task else {
            // A benchmark that was not completed refuses the worker.
            if matches!(a.kind, Kind::Benchmark { .. }) && !matches!(how, Release::Left { .. }) {
                if let Some((conn, id)) = self.worker(a.worker).map(|w| (w.conn, w.id.clone())) {
                    self.refuse(
                        conn,
                        Some(id),
                        ErrorCode::Refused,
                        format!("benchmark not completed: {}", how.reason()),
                    );
                }
            }
            return;
        };
        let num = self.worker(a.worker).map_or(u32::MAX, |w| w.num);
        let Some(t) = self.tasks.get_mut(tid) else { return };
        remove_item(&mut t.live, &aid);
        if t.phase != TaskPhase::Pending || matches!(how, Release::Withdrawn(_)) {
            return;
        }
        t.open_slots += 1;
        if how.harms() {
            let trouble = t.trouble.get_or_insert_with(Box::default);
            trouble.failures.push(how.reason().to_owned());
            if !trouble.harmed.contains(&num) {
                trouble.harmed.push(num);
            }
        }
        let harmed = t.trouble.as_ref().map_or(0, |x| x.harmed.len());
        if harmed as u32 >= self.cfg.poison_threshold {
            let reason = format!("poison: hung, crashed or lost {harmed} workers");
            return self.dead_letter(tid, reason);
        }
        let key = t.ready_key();
        self.ready.insert(key);
    }

    fn on_result(&mut self, now: Millis, conn: ConnId, w: WorkerIdx, r: &TaskResult, outputs: Vec<Bytes>) {
        let aid = r.assignment;
        let a = match self.assignments.get(&aid) {
            Some(a) if a.worker == w && !a.life.status().is_terminal() => a,
            _ => return self.stale(conn, aid),
        };
        self.stats.results += 1;
        let well_formed =
            a.spec.outputs_fit(&outputs) && Digest::of_parts(outputs.iter().map(|b| &b[..])) == r.output_digest;
        if !well_formed {
            let id = self.worker(w).map(|x| x.id.to_string()).unwrap_or_default();
            self.send(
                conn,
                Message::Error(ErrorMessage {
                    code: ErrorCode::Malformed,
                    assignment: Some(aid),
                    message: "outputs do not match the kernel's lengths or the declared digest".into(),
                }),
                vec![],
            );
            return self.release(now, aid, &Release::Failed(&format!("{id}: malformed result")));
        }
        let Some(mut a) = self.assignments.remove(&aid) else { return };
        if !a.in_fifo {
            self.deadlines.remove(&(a.deadline, aid));
        }
        if a.life.status() == crate::task::TaskStatus::New {
            let _ = a.life.accept(now).and_then(|()| a.life.start(now));
        }
        let _ = a.life.complete(now);
        let d = a.life.durations();
        let reward = polo_score(d.idle_ms, d.staged_ms, d.cpu_ms).reward;
        let (wid, class, num) = match self.worker_mut(w) {
            Some(worker) => {
                remove_item(&mut worker.live, &aid);
                (worker.id.clone(), worker.class(), worker.num)
            }
            None => return,
        };
        let load = self.worker(w).map_or(0, |x| x.in_flight.saturating_sub(1));
        let agree = |expected: &[Vec<u8>]| {
            let got: Vec<&[u8]> = outputs.iter().map(|b| &b[..]).collect();
            let want: Vec<&[u8]> = expected.iter().map(Vec::as_slice).collect();
            a.spec.comparator().agree(&got, &want)
        };
        match &a.kind {
            Kind::Benchmark { expected, flops } => {
                let ok = agree(expected);
                let elapsed = now.since(a.offered);
                self.admit(now, conn, w, ok, mflops(*flops, elapsed));
                self.set_load(w, load);
            }
            Kind::Ringer { expected } => {
                self.set_load(w, load);
                let right = agree(expected);
                self.shadow.compared += 1;
                if right {
                    self.shadow.matched += 1;
                } else {
                    self.shadow.mismatched += 1;
                }
                if right {
                    self.reputation.entry(wid.clone()).or_default().agreed += 1;
                    self.dirty.insert(wid);
                } else {
                    self.stats.ringers_failed += 1;
                    let id = self.worker(w).map(|x| x.id.clone());
                    if let Some(id) = id {
                        self.slash(now, &id, "wrong answer to a task with a known answer");
                    }
                }
            }
            Kind::Task => {
                self.set_load(w, load);
                let Some(tid) = a.task else { return };
                let digest = r.output_digest;
                let Some(t) = self.tasks.get_mut(tid) else { return };
                remove_item(&mut t.live, &aid);
                if t.phase != TaskPhase::Pending {
                    return;
                }
                t.results.push(ReplicaResult { worker_id: wid, num, class, outputs, digest, reward });
                self.undecided.entry(num).or_default().push(tid);
                self.evaluate(now, tid);
            }
        }
    }

    fn admit(&mut self, now: Millis, conn: ConnId, w: WorkerIdx, correct: bool, measured: u64) {
        let Some(worker) = self.worker(w) else { return };
        let id = worker.id.clone();
        if !correct {
            return self.refuse(conn, Some(id), ErrorCode::Refused, super::profile::Refusal::WrongAnswer.to_string());
        }
        let alloc = worker.device.max_buffer_bytes;
        match classify(&self.cfg.profile, measured, alloc) {
            Ok(p) => {
                let class = WorkerClass { backend: worker.device.backend, tier: p.tier };
                if let Some(worker) = self.worker_mut(w) {
                    worker.state = WorkerState::Active { class, mflops: p.mflops };
                }
                let load = self.worker(w).map_or(0, |x| x.in_flight);
                self.set_load(w, load);
                let rec = postcard::to_allocvec(&(class, p.mflops, now)).unwrap_or_default();
                self.ledger.put(ns::WORKER, id.as_str().as_bytes().to_vec(), rec);
                self.event(Event::WorkerAdmitted { worker: id, class, mflops: p.mflops });
            }
            Err(refusal) => self.refuse(conn, Some(id), ErrorCode::Refused, refusal.to_string()),
        }
    }

    // ------------------------------------------------------------ verification

    /// Groups a task's results by agreement (within a class for float
    /// kernels under homogeneous redundancy); returns groups of indices.
    fn groups(&self, t: &Task) -> Vec<Vec<usize>> {
        let cmp = t.spec.comparator();
        let exact = matches!(cmp, Comparator::Exact);
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, r) in t.results.iter().enumerate() {
            let home = groups.iter_mut().find(|g| {
                let rep = &t.results[g[0]];
                if exact {
                    return rep.digest == r.digest;
                }
                if self.cfg.homogeneous_floats && rep.class != r.class {
                    return false;
                }
                let a: Vec<&[u8]> = rep.outputs.iter().map(|b| &b[..]).collect();
                let b: Vec<&[u8]> = r.outputs.iter().map(|b| &b[..]).collect();
                cmp.agree(&a, &b)
            });
            match home {
                Some(g) => g.push(i),
                None => groups.push(vec![i]),
            }
        }
        groups
    }

    /// m-first voting with escalation: accept when a group reaches the
    /// quorum; otherwise keep exactly enough replicas outstanding for the
    /// best group to reach it, up to the replica cap; at the cap, a strict
    /// majority of at least two decides, else the task is undecidable.
    fn evaluate(&mut self, now: Millis, tid: TaskKey) {
        let Some(t) = self.tasks.get(tid) else { return };
        // Fast path: bit-exact kernel, every result identical, quorum reached.
        if matches!(t.spec.comparator(), Comparator::Exact)
            && t.results.len() >= usize::from(t.quorum)
            && t.results.iter().all(|r| r.digest == t.results[0].digest)
        {
            let all: Vec<usize> = (0..t.results.len()).collect();
            return self.accept(now, tid, &all);
        }
        let groups = self.groups(t);
        let q = usize::from(t.quorum);
        if let Some(g) = groups.iter().find(|g| g.len() >= q) {
            let g = g.clone();
            return self.accept(now, tid, &g);
        }
        let best = groups.iter().map(Vec::len).max().unwrap_or(0);
        let outstanding = t.live.len() + usize::from(t.open_slots);
        let total = t.results.len() + outstanding;
        let needed = q - best;
        let mismatch = groups.len() > 1;
        let Some(t) = self.tasks.get_mut(tid) else { return };
        if mismatch && !t.escalated {
            t.escalated = true;
            self.stats.mismatched_tasks += 1;
        }
        if outstanding >= needed {
            return;
        }
        let room = usize::from(self.cfg.max_replicas).saturating_sub(total);
        let extra = (needed - outstanding).min(room);
        if extra > 0 {
            t.open_slots += extra as u8;
            self.stats.escalations += extra as u64;
            let key = t.ready_key();
            self.ready.insert(key);
            return;
        }
        if outstanding > 0 {
            return;
        }
        // At the cap with nothing outstanding: strict majority of ≥ 2, or undecidable.
        let mut sorted = groups.clone();
        sorted.sort_by_key(|g| Reverse(g.len()));
        match sorted.as_slice() {
            [first, rest @ ..] if first.len() >= 2 && rest.first().is_none_or(|r| r.len() < first.len()) => {
                let g = first.clone();
                self.accept(now, tid, &g);
            }
            _ => {
                let reason =
                    format!("undecidable: {} replicas in {} disagreeing groups", t.results.len(), groups.len());
                self.dead_letter(tid, reason);
            }
        }
    }

    fn accept(&mut self, now: Millis, tid: TaskKey, group: &[usize]) {
        self.withdraw_live(now, tid, "task verified");
        if self.cfg.shadow_cpu_reference {
            self.shadow_compare(tid, group);
        }
        let Some(t) = self.tasks.get_mut(tid) else { return };
        let mut results = std::mem::take(&mut t.results);
        // The representative's outputs become the canonical result (moved, not copied).
        let outputs = std::mem::take(&mut results[group[0]].outputs);
        let digest = results[group[0]].digest;
        let (job, task_id) = (t.job, t.id);
        let mut agreed: SmallVec<[(WorkerId, u64); 4]> = SmallVec::new();
        let mut outvoted = Vec::new();
        let mut liars = Vec::new();
        for (i, r) in results.iter().enumerate() {
            if group.contains(&i) {
                agreed.push((r.worker_id.clone(), r.reward));
            } else {
                outvoted.push(r.worker_id.clone());
                liars.push(r.worker_id.clone());
            }
        }
        let verified = VerifiedResult {
            outputs,
            digest,
            agreed: agreed.iter().map(|(w, _)| w.clone()).collect(),
            outvoted: outvoted.clone(),
        };
        let record = encode_record(&verified);
        t.verified = Some(Box::new(verified));
        for r in &results {
            forget_undecided(&mut self.undecided, r.num, tid);
        }
        let index = self.index_of(job, tid);
        self.ledger.put(ns::TASK, task_record_key(job, index), record);
        self.epoch_dirty = true;
        for (w, _) in &agreed {
            self.dirty.insert(w.clone());
        }
        for w in &outvoted {
            self.dirty.insert(w.clone());
        }
        for (w, reward) in &agreed {
            let work = match self.epoch.work.get_mut(w) {
                Some(work) => work,
                None => self.epoch.work.entry(w.clone()).or_default(),
            };
            work.score += reward;
            work.agreed += 1;
            if !liars.is_empty() {
                work.exposed += 1;
            }
            match self.reputation.get_mut(w) {
                Some(r) => r.agreed += 1,
                None => self.reputation.entry(w.clone()).or_default().agreed += 1,
            }
        }
        self.event(Event::TaskVerified {
            job,
            task: task_id,
            index,
            agreed: agreed.into_iter().map(|(w, _)| w).collect(),
            outvoted,
        });
        self.stats.verified += 1;
        self.epoch.verified += 1;
        self.end_task(tid, TaskPhase::Verified);
        if self.cfg.credibility.slash_outvoted {
            for w in &liars {
                self.slash(now, w, &format!("outvoted on task {task_id}"));
            }
        }
    }

    /// Compares every replica of a task being accepted with the CPU reference.
    fn shadow_compare(&mut self, tid: TaskKey, group: &[usize]) {
        let Some(t) = self.tasks.get(tid) else { return };
        let refs: Vec<&[u8]> = t.inputs.iter().map(|b| &b[..]).collect();
        let Ok(truth) = t.spec.run_cpu(&refs) else { return };
        let truth: Vec<&[u8]> = truth.iter().map(Vec::as_slice).collect();
        let cmp = t.spec.comparator();
        let verdicts: Vec<(bool, bool)> = t
            .results
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let got: Vec<&[u8]> = r.outputs.iter().map(|b| &b[..]).collect();
                (group.contains(&i), cmp.agree(&got, &truth))
            })
            .collect();
        for (accepted, right) in verdicts {
            self.shadow.compared += 1;
            if right {
                self.shadow.matched += 1;
            } else {
                self.shadow.mismatched += 1;
            }
            match (accepted, right) {
                (true, false) => self.shadow.false_positives += 1,
                (false, true) => self.shadow.false_negatives += 1,
                _ => {}
            }
        }
    }

    /// Withdraws a task's running replicas (their workers get a cancel).
    fn withdraw_live(&mut self, now: Millis, tid: TaskKey, why: &str) {
        let live = self.tasks.get_mut(tid).map(|t| std::mem::take(&mut t.live)).unwrap_or_default();
        for aid in live {
            self.release(now, aid, &Release::Withdrawn(why));
        }
    }

    fn dead_letter(&mut self, tid: TaskKey, reason: String) {
        let Some(t) = self.tasks.get(tid) else { return };
        let failures = t.trouble.as_ref().map(|x| x.failures.clone()).unwrap_or_default();
        let (task_id, job) = (t.id, t.job);
        let index = self.index_of(job, tid);
        let letter = DeadLetter { job, task: task_id, index, reason: reason.clone(), failures };
        self.ledger.put(
            ns::DEAD_LETTER,
            task_record_key(job, index),
            postcard::to_allocvec(&letter).unwrap_or_default(),
        );
        self.dead_letters.push(letter);
        self.stats.dead_lettered += 1;
        self.event(Event::TaskDeadLettered { job, task: task_id, index, reason });
        self.end_task(tid, TaskPhase::DeadLettered);
    }

    /// Moves a pending task to a final phase and updates its job.
    fn end_task(&mut self, tid: TaskKey, phase: TaskPhase) {
        let Some(t) = self.tasks.get_mut(tid) else { return };
        if t.phase != TaskPhase::Pending {
            return;
        }
        t.phase = phase;
        t.open_slots = 0;
        let key = t.ready_key();
        let job = t.job;
        for r in &t.results {
            forget_undecided(&mut self.undecided, r.num, tid);
        }
        // Inputs are no longer needed; undecided results are dropped.
        t.inputs = Vec::new();
        if phase != TaskPhase::Verified {
            t.results.clear();
        }
        self.ready.remove(&key);
        self.queued_tasks = self.queued_tasks.saturating_sub(1);
        let Some(j) = self.jobs.get_mut(&job) else { return };
        match phase {
            TaskPhase::Verified => j.progress.verified += 1,
            TaskPhase::DeadLettered => j.progress.dead_lettered += 1,
            TaskPhase::Cancelled => j.progress.cancelled += 1,
            TaskPhase::Pending => {}
        }
        if j.progress.finished() {
            let p = j.progress.clone();
            self.open_jobs.remove(&(j.expires, job));
            self.ledger.put(ns::JOB_FINISHED, job.as_bytes().to_vec(), encode_record(&p));
            self.event(Event::JobFinished {
                job,
                verified: p.verified,
                dead_lettered: p.dead_lettered,
                cancelled: p.cancelled,
            });
        }
    }

    /// A proven liar: credibility gone, banned, stake and epoch earnings
    /// forfeited, its undecided results discarded (their tasks re-queued),
    /// its running assignments withdrawn, its connection closed.
    fn slash(&mut self, now: Millis, id: &WorkerId, reason: &str) {
        let id = id.clone();
        let num = self.worker_nums.get(&id).copied();
        let pending = num.and_then(|n| self.undecided.remove(&n)).unwrap_or_default();
        let rep = self.reputation.entry(id.clone()).or_default();
        if rep.slashed {
            return;
        }
        rep.slashed = true;
        let forfeited = std::mem::take(&mut rep.stake);
        self.epoch.forfeited += forfeited;
        self.epoch_dirty = true;
        self.dirty.insert(id.clone());
        let work = self.epoch.work.entry(id.clone()).or_default();
        work.slashed = true;
        work.stake = 0;
        self.stats.slashed += 1;
        for tid in pending {
            let Some(t) = self.tasks.get_mut(tid) else { continue };
            if t.phase != TaskPhase::Pending {
                continue;
            }
            let before = t.results.len();
            t.results.retain(|r| r.worker_id != id);
            t.open_slots += (before - t.results.len()) as u8;
            let key = t.ready_key();
            self.ready.insert(key);
        }
        self.ledger.put(
            ns::SLASHED,
            id.as_str().as_bytes().to_vec(),
            postcard::to_allocvec(&(reason, forfeited)).unwrap_or_default(),
        );
        let conn = self.by_id.get(&id).and_then(|&w| self.worker(w)).map(|w| w.conn);
        self.event(Event::WorkerSlashed { worker: id, reason: reason.to_owned(), forfeited });
        if let Some(conn) = conn {
            self.send(conn, Message::Goodbye(Goodbye { reason: format!("slashed: {reason}") }), vec![]);
            self.staged.push(Output::Close { conn, reason: format!("slashed: {reason}") });
            self.on_disconnect(now, conn, "slashed");
        }
    }

    // ------------------------------------------------------------ time

    fn on_tick(&mut self, now: Millis) {
        while let Some(&(t, aid)) = self.ack_fifo.front() {
            if t > now {
                break;
            }
            self.ack_fifo.pop_front();
            if self.assignments.get(&aid).is_some_and(|a| a.in_fifo && a.deadline == t) {
                self.time_out(now, aid);
            }
        }
        while let Some(&(t, aid)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.remove(&(t, aid));
            self.time_out(now, aid);
        }
        if now >= self.next_housekeeping {
            self.next_housekeeping = now + HOUSEKEEPING;
            self.housekeeping(now);
        }
    }

    fn time_out(&mut self, now: Millis, aid: AssignmentId) {
        let Some(a) = self.assignments.get(&aid) else { return };
        self.stats.timeouts += 1;
        let executing = a.life.execute_started_at().is_some();
        let id = self.worker(a.worker).map(|w| w.id.to_string()).unwrap_or_default();
        let why = if executing { format!("{id}: execution timed out") } else { format!("{id}: no ack in time") };
        self.release(now, aid, &Release::TimedOut { executing, why: &why });
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
                self.withdraw_live(now, tid, "task expired");
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
            self.staged.push(Output::Close { conn, reason: "silent for too long".into() });
            self.on_disconnect(now, conn, "silent for too long");
        }
    }

    fn maybe_close_epoch(&mut self, now: Millis, force: bool) {
        let by_count = self.cfg.epoch.every_verified_tasks.is_some_and(|n| self.epoch.verified >= n.max(1));
        let by_time =
            self.cfg.epoch.every.is_some_and(|d| now.since(self.epoch.opened) >= d.max(Millis::from_secs(30)));
        if !(force || by_count || by_time) {
            return;
        }
        let s = settle_epoch(
            &self.cfg.rewards,
            self.epoch.number,
            self.epoch.carried,
            self.epoch.forfeited,
            &self.epoch.work.iter().map(|(w, e)| (w.clone(), e.clone())).collect(),
        );
        self.epoch_dirty = true;
        // In id order, so the closing round's records do not follow the
        // hash map's layout.
        let mut worked: Vec<WorkerId> = self.epoch.work.keys().cloned().collect();
        worked.sort_unstable();
        for w in worked {
            self.dirty.insert(w);
        }
        self.ledger.put(
            ns::EPOCH,
            self.epoch.number.to_be_bytes().to_vec(),
            postcard::to_allocvec(&s).unwrap_or_default(),
        );
        self.epoch.number += 1;
        self.epoch.opened = now;
        self.epoch.verified = 0;
        self.epoch.carried = s.carried_out;
        self.epoch.forfeited = 0;
        let mut stakes: Vec<(WorkerId, u128)> =
            self.reputation.iter().filter(|(_, r)| r.stake > 0).map(|(w, r)| (w.clone(), r.stake)).collect();
        stakes.sort();
        self.epoch.work.clear();
        for (w, stake) in stakes {
            self.epoch.work.entry(w).or_default().stake = stake;
        }
        self.event(Event::EpochSettled(Box::new(s.clone())));
        self.epoch.history.push(s);
    }
}
