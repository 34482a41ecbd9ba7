//! The coordinator's public vocabulary: what a host feeds in ([`Input`]),
//! what comes out ([`Output`], [`Event`]), jobs as submitted ([`JobSpec`],
//! [`PreparedJob`]) and what queries return (progress, results, views,
//! counters). Plain data: no behaviour beyond small helpers.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::coordinator::profile::{Tier, WorkerClass};
use crate::coordinator::rewards::EpochSettlement;
use crate::digest::Digest;
pub use crate::ids::{ConnId, OriginKey};
use crate::ids::{JobId, TaskId, WorkerId};
use crate::kernels::{KernelError, KernelSpec};
use crate::time::Millis;
use crate::wire::Envelope;

use super::tasks::input_ids;
use crate::shared_inputs::{part_digest, SharedLayout};

/// Something that happened, fed to [`Coordinator::handle`](crate::coordinator::Coordinator::handle).
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // envelopes are moved, not stored
pub enum Input {
    /// A worker connection opened.
    Connected {
        /// Host's id of the connection.
        conn: ConnId,
        /// Its network origin.
        origin: OriginKey,
        /// The host (and port) it was made to, as its `Host` header named
        /// it: what an identity's hello must have signed (None: no
        /// identity can join on it).
        host: Option<String>,
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
        /// Why, as the host saw it (it becomes the worker-left event's
        /// reason: a stalled reader, a protocol error, a closed socket).
        reason: String,
    },
    /// A wake-up the coordinator asked for (or any time: spurious ticks are harmless).
    Tick,
    /// An operator's or a program's command; answered by an
    /// [`Output::Answer`] with the same ticket, after the round's
    /// [`Output::Persist`] (so an answer never reports something a crash
    /// could lose).
    Command {
        /// The caller's number for it, echoed in the answer.
        ticket: Ticket,
        /// What is asked.
        command: Command,
    },
}

/// A caller's number for a [`Command`]: the host picks it (unique among
/// its commands in flight) and finds the caller again by it when the
/// [`Output::Answer`] comes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// What people and programs ask of the coordinator, as opposed to what
/// workers send it. A command is an input like any other: it joins the
/// round (and the group commit) of the batch it arrives in.
#[derive(Clone, Debug)]
pub enum Command {
    /// Accept a job: validate every task, record it durably, queue it.
    SubmitJob(PreparedJob),
    /// Cancel a job: its pending tasks end as cancelled, their running
    /// replicas are withdrawn.
    CancelJob(JobId),
    /// Delete a finished job's records: the job, its task results and dead
    /// letters, and of its inputs stored apart those in `inputs` that no
    /// job in memory still needs (the host names the ones no other stored
    /// job uses). Settled epochs and the ledger's chain stay.
    DeleteJob {
        /// Which job.
        job: JobId,
        /// Digests of its inputs stored apart that no other stored job uses.
        inputs: Vec<crate::digest::Digest>,
    },
    /// Close the open epoch now and settle it (an operator's request, or
    /// a shutdown).
    CloseEpoch,
    /// Set a worker's stake, in base units.
    SetStake {
        /// Whose.
        worker: WorkerId,
        /// The new stake.
        stake: u128,
    },
    /// Approve a contributor identity (`coordinator.identities =
    /// "approval"`), or withdraw its approval (it is disconnected).
    ApproveIdentity {
        /// Which (`id-…`).
        worker: WorkerId,
        /// Approve (true) or withdraw.
        approve: bool,
    },
    /// Run dead-lettered tasks again, once the operator fixed what made
    /// them fail: `job` holds them (their kernels and inputs, as
    /// submitted), task `i` of it being dead letter `from[i]`; each dead
    /// letter records where it went, in the same round.
    RequeueDeadLetters {
        /// The dead letters, by job and index.
        from: Vec<(JobId, u32)>,
        /// The new job.
        job: PreparedJob,
    },
}

/// The coordinator's answer to a [`Command`].
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// The job's id, or why it was refused.
    JobSubmitted(Result<JobId, SubmitError>),
    /// Whether the job was known (false: unknown or already forgotten).
    JobCancelled(bool),
    /// The job's records are deleted (in this round's diff), or why not.
    JobDeleted(Result<(), DeleteJobError>),
    /// The epoch was closed; its settlement is in the same round's events.
    EpochClosed,
    /// The stake is recorded.
    StakeSet,
    /// Whether the approval changed (false: it already was so).
    IdentityApproval(bool),
    /// The new job of the re-queued dead letters, or why it was refused.
    Requeued(Result<JobId, SubmitError>),
}

/// Something the host must do or show.
#[derive(Clone, Debug)]
pub enum Output {
    /// Write this diff durably before performing any output after it.
    Persist(crate::coordinator::ledger::StateDiff),
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
    /// The answer to a [`Command`]: deliver it to whoever holds the ticket.
    Answer {
        /// The command's ticket.
        ticket: Ticket,
        /// The answer.
        answer: Answer,
    },
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
    /// Inputs its tasks share ([`crate::shared_inputs`]): a task input
    /// that is one of these (the same [`Bytes`], cloned: the same memory)
    /// is stored once and sent to each worker once, then named by its
    /// digest. Empty ones are ignored.
    #[serde(default)]
    pub shared_inputs: Vec<Bytes>,
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
        JobSpec {
            tasks,
            shared_inputs: Vec::new(),
            redundancy: None,
            quorum: None,
            priority: 0,
            min_tier: Tier::Low,
            allow_adaptive: true,
        }
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
/// (hashing everything at once). Shared inputs are hashed once each, when
/// they are declared, never again per task.
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedJob {
    pub(super) spec: JobSpec,
    pub(super) ids: Vec<(Digest, u128)>,
    /// Per task: where its shared inputs sit, and the digest of its own
    /// parts (None: it has no shared input).
    pub(super) layouts: Vec<Option<TaskLayout>>,
    /// The shared inputs by their memory (address, length): their digest.
    shared: std::collections::HashMap<(usize, usize), Digest>,
}

/// A task's shared layout and the digest of its own parts.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct TaskLayout {
    pub(super) layout: std::sync::Arc<SharedLayout>,
    pub(super) own: Digest,
}

fn memory_of(b: &Bytes) -> (usize, usize) {
    (b.as_ptr() as usize, b.len())
}

impl PreparedJob {
    /// A job with `settings`'s replication, priority, tier and shared
    /// inputs, and its tasks (hashed now); more may be pushed.
    pub fn new(mut settings: JobSpec) -> Self {
        let tasks = std::mem::take(&mut settings.tasks);
        let shared = std::mem::take(&mut settings.shared_inputs);
        let mut job = PreparedJob {
            spec: settings,
            ids: Vec::with_capacity(tasks.len()),
            layouts: Vec::with_capacity(tasks.len()),
            shared: std::collections::HashMap::new(),
        };
        for s in shared {
            job.share(s);
        }
        for t in tasks {
            job.push(t);
        }
        job
    }

    /// Declares a shared input (hashing it, once); tasks pushed after
    /// name it by using a clone of `input`. Returns its digest (None: it
    /// is empty, and ignored).
    pub fn share(&mut self, input: Bytes) -> Option<Digest> {
        if input.is_empty() {
            return None;
        }
        let digest = part_digest(&input);
        if self.shared.insert(memory_of(&input), digest).is_none() {
            self.spec.shared_inputs.push(input);
        }
        Some(digest)
    }

    /// Appends a task, hashing its own inputs (its shared ones are known).
    pub fn push(&mut self, task: TaskSpec) {
        let positions: Vec<Option<Digest>> = (task.inputs.iter())
            .map(|b| if b.is_empty() { None } else { self.shared.get(&memory_of(b)).copied() })
            .collect();
        match SharedLayout::new(positions) {
            Some(layout) => {
                let (name, check, own) = layout.ids(&task.inputs, None);
                self.ids.push((name, check));
                self.layouts.push(Some(TaskLayout { layout, own }));
            }
            None => {
                self.ids.push(input_ids(&task.inputs));
                self.layouts.push(None);
            }
        }
        self.spec.tasks.push(task);
    }

    /// The digests of the inputs the job stores apart, each once: those of
    /// tasks with at least [`INPUTS_APART`](crate::coordinator::recovery::INPUTS_APART)
    /// bytes of their own inputs, and its shared inputs (what a host tracks
    /// to know when no job uses them).
    pub fn inputs_apart(&self) -> Vec<Digest> {
        use crate::coordinator::recovery::INPUTS_APART;
        let mut set = std::collections::BTreeSet::new();
        for ((t, (d, _)), l) in self.spec.tasks.iter().zip(&self.ids).zip(&self.layouts) {
            match l {
                None if t.inputs.iter().map(Bytes::len).sum::<usize>() >= INPUTS_APART => {
                    set.insert(*d);
                }
                None => {}
                Some(l) => {
                    if l.layout.own(&t.inputs).map(Bytes::len).sum::<usize>() >= INPUTS_APART {
                        set.insert(l.own);
                    }
                    set.extend(l.layout.shared());
                }
            }
        }
        set.into_iter().collect()
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

/// Why a job's records were not deleted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeleteJobError {
    /// Some of its tasks have not ended.
    #[error("the job has tasks that have not ended; cancel it first")]
    Unfinished,
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
    /// The job's inputs are over the per-job limit.
    #[error("the job's inputs take {bytes} bytes; coordinator.max_job_input_bytes is {limit}")]
    JobTooLarge {
        /// The job's input bytes.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// Queued inputs would exceed their budget (back-pressure).
    #[error(
        "{queued} bytes of inputs are queued and this job adds {job}; coordinator.max_queued_input_bytes is {limit}"
    )]
    InputBudget {
        /// Input bytes queued now.
        queued: u64,
        /// This job's input bytes.
        job: u64,
        /// The budget.
        limit: u64,
    },
    /// A task's kernel or inputs are invalid.
    #[error("task {index}: {error}")]
    InvalidTask {
        /// Which task.
        index: usize,
        /// What is wrong.
        error: KernelError,
    },
    /// A re-queue names as many dead letters as its job has tasks.
    #[error("{letters} dead letters for a job of {tasks} tasks")]
    RequeueMismatch {
        /// Dead letters named.
        letters: usize,
        /// Tasks of the new job.
        tasks: usize,
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
    /// Admitted workers measured again because their delivered speed
    /// drifted from their measured one.
    #[serde(default)]
    pub remeasured: u64,
    /// Input bytes sent with offers and input data (own parts and shared
    /// inputs a worker did not hold).
    pub input_bytes_sent: u64,
    /// Shared-input bytes offers named instead of sending (the worker
    /// held them).
    pub shared_bytes_named: u64,
    /// Shared inputs a worker asked for (its cache had dropped them).
    pub input_requests: u64,
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
    /// Stake it holds, base units.
    pub stake: u128,
}

/// A task still pending, as [`Coordinator::pending_tasks`](crate::coordinator::Coordinator::pending_tasks)
/// lists it: its lifecycle so far by the coordinator's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingTask {
    /// Its position in the job.
    pub index: u32,
    /// Its job was submitted (or its dead letter re-queued).
    pub submitted: Millis,
    /// A worker was first offered it (since this process started).
    pub offered: Option<Millis>,
    /// A worker first acknowledged it.
    pub acked: Option<Millis>,
    /// Replicas in flight now.
    pub running: u32,
    /// Results received, not yet decided.
    pub results: u32,
    /// Replicas handed out so far.
    pub attempts: u32,
}
