//! What the coordinator writes to durable storage, and how a restarted
//! coordinator is rebuilt from it.
//!
//! Every durable change leaves the engine as an entry of a
//! [`StateDiff`](super::ledger::StateDiff): `(namespace, key, value)`. A host
//! stores the latest value of each key (and the diffs themselves, for
//! subscribers). On restart it feeds the stored entries to a [`Snapshot`]
//! and builds the coordinator with [`Coordinator::recover`](super::Coordinator::recover):
//! unfinished jobs come back with their verified and dead-lettered tasks
//! as they were, everything else is queued again (in-flight assignments
//! died with the process), reputations, the open epoch's work and the
//! epoch history are restored, and the ledger chain continues where it
//! stopped. Nothing verified is lost and nothing is credited twice, because
//! a verification and its credit are written in the same diff.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::engine::{DeadLetter, JobProgress, JobSpec, Reputation, TaskSpec, VerifiedResult};
use super::ledger::EntryValue;
use super::profile::{Tier, WorkerClass};
use super::rewards::{EpochSettlement, EpochWork};
use crate::digest::Digest;
use crate::ids::{JobId, WorkerId};
use crate::kernels::KernelSpec;
use crate::time::Millis;

/// The namespaces of the entries the engine writes.
pub mod ns {
    /// Job id → [`JobRecord`](super::JobRecord).
    pub const JOB: &str = "job";
    /// A task's input digest → its inputs (content-addressed: the key is
    /// the digest of the value, see
    /// [`EntryValue::Parts`](crate::coordinator::ledger::EntryValue)); for
    /// tasks whose inputs are at least
    /// [`INPUTS_APART`](super::INPUTS_APART) bytes.
    pub const INPUT: &str = "input";
    /// Job id → [`JobProgress`](crate::coordinator::JobProgress) once every task ended.
    pub const JOB_FINISHED: &str = "job-finished";
    /// Job id → empty: the job was cancelled.
    pub const JOB_CANCELLED: &str = "job-cancelled";
    /// [`task_record_key`](super::task_record_key) → [`VerifiedResult`](crate::coordinator::VerifiedResult).
    pub const TASK: &str = "task";
    /// [`task_record_key`](super::task_record_key) → [`DeadLetter`](crate::coordinator::DeadLetter).
    pub const DEAD_LETTER: &str = "dead-letter";
    /// [`task_record_key`](super::task_record_key) of a dead letter → the
    /// job and index (`(JobId, u32)`) it was re-queued as.
    pub const REQUEUED: &str = "requeued";
    /// Worker id → [`AdmittedWorker`](super::AdmittedWorker), on admission.
    pub const WORKER: &str = "worker";
    /// Worker id → [`WorkerRecord`](super::WorkerRecord).
    pub const WORKER_STATE: &str = "worker-state";
    /// Worker id → [`SlashRecord`](super::SlashRecord).
    pub const SLASHED: &str = "slashed";
    /// Epoch number (u64 BE) → [`EpochSettlement`](crate::coordinator::rewards::EpochSettlement).
    pub const EPOCH: &str = "epoch";
    /// Empty key → [`OpenEpoch`](super::OpenEpoch).
    pub const EPOCH_OPEN: &str = "epoch-open";
    /// Epoch number (u64 BE) → its payees' addresses
    /// (`Vec<`[`PayoutAddress`](crate::coordinator::rewards::PayoutAddress)`>`).
    pub const EPOCH_ADDRESSES: &str = "epoch-addresses";
    /// Epoch number (u64 BE) → its
    /// [`EpochStakes`](crate::coordinator::rewards::EpochStakes).
    pub const EPOCH_STAKES: &str = "epoch-stakes";
    /// Worker id → the stake (u128) it forfeited in the open epoch.
    pub const FORFEIT_OPEN: &str = "forfeit-open";
    /// Worker id → the [`Profile`](crate::identity::Profile) its identity declared.
    pub const PROFILE: &str = "profile";
    /// Worker id → empty: an identity the operator approved.
    pub const APPROVED: &str = "approved";
}

/// Tasks whose inputs take at least this many bytes have them stored
/// apart, once, under their digest ([`ns::INPUT`]); smaller ones are
/// written inside the job's record (one entry for a job of tiny tasks).
pub const INPUTS_APART: usize = 64 * 1024;

/// A task's inputs as its job's record holds them.
///
/// The record types borrow what a submitted job already holds when the
/// coordinator writes them, and own what they decode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StoredInputs<'a> {
    /// The inputs themselves.
    Inline(Cow<'a, [Bytes]>),
    /// Stored apart under [`ns::INPUT`] with this key (their digest).
    Apart(Digest),
    /// Some inputs are the job's shared inputs
    /// ([`crate::shared_inputs`]), each stored apart once under
    /// [`ns::INPUT`] (a one-part value keyed by its digest).
    Shared {
        /// Every position: the digest of the shared input there, or None
        /// for the next of the task's own parts.
        layout: Cow<'a, [Option<Digest>]>,
        /// The task's own parts ([`StoredInputs::Inline`] or
        /// [`StoredInputs::Apart`]).
        own: Box<StoredInputs<'a>>,
    },
}

/// A task as its job's record holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord<'a> {
    /// What to run.
    pub kernel: Cow<'a, KernelSpec>,
    /// Its inputs.
    pub inputs: StoredInputs<'a>,
}

/// A job's durable record (value of [`ns::JOB`]): its settings, its tasks
/// (inputs inline or by digest) and when it was submitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord<'a> {
    /// The tasks, in order.
    pub tasks: Vec<TaskRecord<'a>>,
    /// As submitted.
    pub redundancy: Option<u8>,
    /// As submitted.
    pub quorum: Option<u8>,
    /// As submitted.
    pub priority: u8,
    /// As submitted.
    pub min_tier: Tier,
    /// As submitted.
    pub allow_adaptive: bool,
    /// When (coordinator clock).
    pub submitted: Millis,
}

impl JobRecord<'_> {
    /// Decodes a stored job record.
    pub fn decode(value: &[u8]) -> Result<JobRecord<'static>, postcard::Error> {
        postcard::from_bytes(value)
    }

    /// The tasks' kernels, in order.
    pub fn kernels(self) -> Vec<KernelSpec> {
        self.tasks.into_iter().map(|t| t.kernel.into_owned()).collect()
    }
}

/// The bytes of a record (or of anything hashed as canonical bytes): its
/// postcard encoding. The one way the core encodes what it stores or
/// hashes. Small records (most of them, one per verified task) are encoded
/// on the stack and copied once into a vector of their exact size.
///
/// # Panics
/// Never for the core's records: they are plain data (no maps with
/// non-string keys, no sequences of unknown length), which postcard
/// encodes into a vector without failing. A record type that could fail
/// is a bug, caught by the recovery tests, never written as empty bytes.
pub(crate) fn encode<T: Serialize + ?Sized>(record: &T) -> Vec<u8> {
    let mut buf = [0u8; 512];
    match postcard::to_slice(record, &mut buf) {
        Ok(bytes) => bytes.to_vec(),
        Err(_) => encode_into(record, Vec::new()),
    }
}

/// [`encode`] appended to `buf` (a caller that knows a record is big
/// reserves its size up front instead of growing a vector by doubling).
///
/// # Panics
/// As [`encode`]: never for the core's records.
pub(crate) fn encode_into<T: Serialize + ?Sized>(record: &T, buf: Vec<u8>) -> Vec<u8> {
    match postcard::to_extend(record, buf) {
        Ok(bytes) => bytes,
        Err(e) => panic!("a record is plain data and always encodes: {e}"),
    }
}

/// A worker's admission (value of [`ns::WORKER`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmittedWorker {
    /// Its class (backend and tier).
    pub class: WorkerClass,
    /// Its measured speed.
    pub mflops: u64,
    /// When (coordinator clock).
    pub admitted: Millis,
}

/// A task's lifecycle by the coordinator's clock: submitted, first offered
/// to a worker, first acknowledged, ended (verified or dead-lettered).
/// Stored when it ends, after its [`ns::TASK`] or [`ns::DEAD_LETTER`]
/// record in the same value (records written before have none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskTimes {
    /// Its job was submitted (or its dead letter re-queued).
    pub submitted: Millis,
    /// A worker was first offered it.
    pub offered: Option<Millis>,
    /// A worker first acknowledged it (began to execute).
    pub acked: Option<Millis>,
    /// It was decided.
    pub ended: Millis,
}

impl TaskTimes {
    /// Waiting in the queue: submitted → first offer (or its end).
    pub fn queued_ms(&self) -> u64 {
        self.offered.unwrap_or(self.ended).since(self.submitted).0
    }

    /// Staged at a worker: first offer → first acknowledgement.
    pub fn staged_ms(&self) -> u64 {
        match (self.offered, self.acked) {
            (Some(o), Some(a)) => a.since(o).0,
            (Some(o), None) => self.ended.since(o).0,
            _ => 0,
        }
    }

    /// Running: first acknowledgement → decided.
    pub fn running_ms(&self) -> u64 {
        self.acked.map_or(0, |a| self.ended.since(a).0)
    }

    /// The seed's polo score of these durations, with its breakdown.
    pub fn polo(&self) -> crate::score::PoloScore {
        crate::score::polo_score(self.queued_ms(), self.staged_ms(), self.running_ms())
    }
}

/// A slashing (value of [`ns::SLASHED`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlashRecord<'a> {
    /// Why the worker was slashed.
    pub reason: Cow<'a, str>,
    /// Stake forfeited, base units.
    pub forfeited: u128,
}

/// Key of a task's record: the job id then the task's index (u32 BE), so
/// a job's tasks are one contiguous key range.
pub fn task_record_key(job: JobId, index: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(20);
    k.extend_from_slice(job.as_bytes());
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// [`WorkerRecord`] borrowed from the coordinator's maps: encodes to the
/// same bytes without copying the counters first.
#[derive(Serialize)]
pub(crate) struct WorkerRecordRef<'a> {
    pub(crate) reputation: &'a Reputation,
    pub(crate) epoch: u64,
    pub(crate) work: &'a EpochWork,
}

/// A worker's reputation and its work in the open epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub(crate) reputation: Reputation,
    /// The epoch `work` belongs to.
    pub epoch: u64,
    /// Work in that epoch.
    pub work: EpochWork,
}

/// Counters of the open epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenEpoch {
    /// Its number.
    pub number: u64,
    /// Tasks verified in it so far.
    pub verified: u64,
    /// Carried in from the previous epoch.
    pub carried: u128,
    /// Stake forfeited in it so far.
    pub forfeited: u128,
}

/// How a task of a recovered job ended before the restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndedTask {
    /// Verified, with its result.
    Verified(VerifiedResult),
    /// Dead-lettered, with its reasons.
    DeadLettered(DeadLetter),
}

/// Where a stored task's shared inputs sit, and where its own parts are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLayout {
    /// Every position: the shared input's digest, or None for an own part.
    pub layout: Vec<Option<Digest>>,
    /// Its own parts are stored apart under this digest (None: inline).
    pub own_apart: Option<Digest>,
}

impl StoredLayout {
    /// The inputs under [`ns::INPUT`] the task needs: its shared inputs
    /// and its own parts when apart.
    pub fn digests(&self) -> impl Iterator<Item = Digest> + '_ {
        self.layout.iter().flatten().copied().chain(self.own_apart)
    }
}

/// A job as it was stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredJob {
    /// What was submitted (the inputs of the tasks in `apart` are empty:
    /// they are in [`Snapshot::inputs`]).
    pub spec: JobSpec,
    /// Tasks whose inputs are stored apart, by index: their digest.
    pub apart: BTreeMap<u32, Digest>,
    /// Tasks with shared inputs, by index (their inputs in `spec` are
    /// their own parts when inline, else empty).
    pub layouts: BTreeMap<u32, StoredLayout>,
    /// When (coordinator clock).
    pub submitted: Millis,
    /// Final counters, if every task ended.
    pub finished: Option<JobProgress>,
    /// Tasks that ended, by index.
    pub ended: BTreeMap<u32, EndedTask>,
}

/// A stored entry could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryError {
    /// The value does not decode as its namespace's record.
    #[error("stored {namespace} record {key} is corrupt: {error}")]
    Corrupt {
        /// Namespace.
        namespace: String,
        /// Key, hex.
        key: String,
        /// Decoder message.
        error: String,
    },
    /// A task record names a job that is not stored.
    #[error("stored {namespace} record {key} belongs to no stored job")]
    Orphan {
        /// Namespace.
        namespace: String,
        /// Key, hex.
        key: String,
    },
}

/// Everything a restarted coordinator needs, assembled from stored entries.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Height of the last stored diff.
    pub ledger_height: u64,
    /// Digest of the last stored diff.
    pub ledger_digest: Digest,
    /// Jobs, by id.
    pub jobs: BTreeMap<JobId, StoredJob>,
    /// Worker records, by id.
    pub workers: BTreeMap<WorkerId, WorkerRecord>,
    /// The open epoch's counters.
    pub open_epoch: Option<OpenEpoch>,
    /// Settled epochs, by number.
    pub history: BTreeMap<u64, EpochSettlement>,
    /// Payees' addresses of settled epochs, by number (joined to
    /// `history` when the coordinator is rebuilt).
    pub addresses: BTreeMap<u64, Vec<crate::coordinator::rewards::PayoutAddress>>,
    /// Stakes of settled epochs, by number (joined like `addresses`).
    pub stakes: BTreeMap<u64, crate::coordinator::rewards::EpochStakes>,
    /// Stakes forfeited in the open epoch, by worker id.
    pub open_forfeits: BTreeMap<WorkerId, u128>,
    /// Contributors' declared profiles, by worker id.
    pub profiles: BTreeMap<WorkerId, crate::identity::Profile>,
    /// Identities the operator approved.
    pub approved: BTreeSet<WorkerId>,
    /// Inputs stored apart, by digest (only those an open task needs:
    /// see [`Snapshot::needed_inputs`]).
    pub inputs: BTreeMap<Digest, Vec<Bytes>>,
}

fn corrupt(namespace: &str, key: &[u8], error: impl std::fmt::Display) -> RecoveryError {
    RecoveryError::Corrupt { namespace: namespace.to_owned(), key: hex(key), error: error.to_string() }
}

fn hex(b: &[u8]) -> String {
    crate::digest::hex_lower(b)
}

fn worker_key(namespace: &str, key: &[u8]) -> Result<WorkerId, RecoveryError> {
    std::str::from_utf8(key)
        .ok()
        .and_then(|s| WorkerId::new(s).ok())
        .ok_or_else(|| corrupt(namespace, key, "bad worker id"))
}

fn job_key(namespace: &str, key: &[u8]) -> Result<JobId, RecoveryError> {
    let b: [u8; 16] =
        key.get(..16).and_then(|k| k.try_into().ok()).ok_or_else(|| corrupt(namespace, key, "short key"))?;
    Ok(JobId::from_bytes(b))
}

impl Snapshot {
    /// Applies one stored entry (the latest value of its key). Jobs must
    /// be applied before their tasks; entries of namespaces that recovery
    /// does not need are ignored.
    pub fn apply(&mut self, namespace: &str, key: &[u8], value: &[u8]) -> Result<(), RecoveryError> {
        match namespace {
            ns::JOB => {
                let record = JobRecord::decode(value).map_err(|e| corrupt(namespace, key, e))?;
                let job = job_key(namespace, key)?;
                let submitted = record.submitted;
                let (mut apart, mut layouts) = (BTreeMap::new(), BTreeMap::new());
                let mut tasks = Vec::with_capacity(record.tasks.len());
                for (i, t) in record.tasks.into_iter().enumerate() {
                    let inputs = match t.inputs {
                        StoredInputs::Inline(inputs) => inputs.into_owned(),
                        StoredInputs::Apart(digest) => {
                            apart.insert(i as u32, digest);
                            Vec::new()
                        }
                        StoredInputs::Shared { layout, own } => {
                            let (own_apart, inputs) = match *own {
                                StoredInputs::Inline(inputs) => (None, inputs.into_owned()),
                                StoredInputs::Apart(digest) => (Some(digest), Vec::new()),
                                StoredInputs::Shared { .. } => {
                                    return Err(corrupt(namespace, key, "a task's own inputs have shared inputs"))
                                }
                            };
                            layouts.insert(i as u32, StoredLayout { layout: layout.into_owned(), own_apart });
                            inputs
                        }
                    };
                    tasks.push(TaskSpec { kernel: t.kernel.into_owned(), inputs });
                }
                let spec = JobSpec {
                    tasks,
                    shared_inputs: Vec::new(),
                    redundancy: record.redundancy,
                    quorum: record.quorum,
                    priority: record.priority,
                    min_tier: record.min_tier,
                    allow_adaptive: record.allow_adaptive,
                };
                let entry = self.jobs.entry(job).or_insert(StoredJob {
                    spec,
                    apart,
                    layouts,
                    submitted,
                    finished: None,
                    ended: BTreeMap::new(),
                });
                entry.submitted = submitted;
            }
            ns::INPUT => {
                let digest = key.try_into().map(Digest).map_err(|_| corrupt(namespace, key, "a key of 32 bytes"))?;
                let parts = EntryValue::split_parts(value)
                    .filter(|p| Digest::of_parts(p.iter().map(|b| &b[..])) == digest)
                    .ok_or_else(|| corrupt(namespace, key, "the value is not the inputs its key names"))?;
                self.inputs.insert(digest, parts);
            }
            ns::JOB_FINISHED => {
                let p: JobProgress = postcard::from_bytes(value).map_err(|e| corrupt(namespace, key, e))?;
                if let Some(j) = self.jobs.get_mut(&job_key(namespace, key)?) {
                    j.finished = Some(p);
                }
            }
            ns::TASK | ns::DEAD_LETTER => {
                let job = job_key(namespace, key)?;
                let index = key
                    .get(16..20)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_be_bytes)
                    .ok_or_else(|| corrupt(namespace, key, "short key"))?;
                let ended = if namespace == ns::TASK {
                    EndedTask::Verified(postcard::from_bytes(value).map_err(|e| corrupt(namespace, key, e))?)
                } else {
                    EndedTask::DeadLettered(postcard::from_bytes(value).map_err(|e| corrupt(namespace, key, e))?)
                };
                let j = self
                    .jobs
                    .get_mut(&job)
                    .ok_or_else(|| RecoveryError::Orphan { namespace: namespace.to_owned(), key: hex(key) })?;
                j.ended.insert(index, ended);
            }
            ns::WORKER_STATE => {
                let r: WorkerRecord = postcard::from_bytes(value).map_err(|e| corrupt(namespace, key, e))?;
                let id = worker_key(namespace, key)?;
                self.workers.insert(id, r);
            }
            ns::EPOCH | ns::EPOCH_OPEN | ns::EPOCH_ADDRESSES | ns::EPOCH_STAKES | ns::FORFEIT_OPEN => {
                self.apply_epoch(namespace, key, value)?;
            }
            ns::PROFILE => {
                let id = worker_key(namespace, key)?;
                self.profiles.insert(id, postcard::from_bytes(value).map_err(|e| corrupt(namespace, key, e))?);
            }
            ns::APPROVED => {
                let id = worker_key(namespace, key)?;
                self.approved.insert(id);
            }
            _ => {}
        }
        Ok(())
    }

    /// The epoch records of [`Snapshot::apply`].
    fn apply_epoch(&mut self, namespace: &str, key: &[u8], value: &[u8]) -> Result<(), RecoveryError> {
        let epoch_key =
            || key.try_into().map(u64::from_be_bytes).map_err(|_| corrupt(namespace, key, "a key of 8 bytes"));
        match namespace {
            ns::EPOCH => {
                let s: EpochSettlement = postcard::from_bytes(value).map_err(|e| corrupt(namespace, key, e))?;
                self.history.insert(s.epoch, s);
            }
            ns::EPOCH_OPEN => {
                self.open_epoch = Some(postcard::from_bytes(value).map_err(|e| corrupt(namespace, key, e))?);
            }
            ns::EPOCH_ADDRESSES => {
                self.addresses
                    .insert(epoch_key()?, postcard::from_bytes(value).map_err(|e| corrupt(namespace, key, e))?);
            }
            ns::EPOCH_STAKES => {
                self.stakes.insert(epoch_key()?, postcard::from_bytes(value).map_err(|e| corrupt(namespace, key, e))?);
            }
            ns::FORFEIT_OPEN => {
                let id = worker_key(namespace, key)?;
                self.open_forfeits.insert(id, postcard::from_bytes(value).map_err(|e| corrupt(namespace, key, e))?);
            }
            _ => {}
        }
        Ok(())
    }

    /// Digests of the inputs stored apart that unfinished jobs still need
    /// (their task has not ended) and that have not been applied yet: a
    /// host reads these [`ns::INPUT`] entries after the jobs and tasks.
    pub fn needed_inputs(&self) -> BTreeSet<Digest> {
        let mut out = BTreeSet::new();
        for j in self.jobs.values().filter(|j| j.finished.is_none()) {
            for (index, digest) in &j.apart {
                if !j.ended.contains_key(index) && !self.inputs.contains_key(digest) {
                    out.insert(*digest);
                }
            }
            for (index, l) in &j.layouts {
                if !j.ended.contains_key(index) {
                    out.extend(l.digests().filter(|d| !self.inputs.contains_key(d)));
                }
            }
        }
        out
    }

    /// Unfinished jobs: the ones a restarted coordinator runs on.
    pub fn open_jobs(&self) -> impl Iterator<Item = JobId> + '_ {
        self.jobs.iter().filter(|(_, j)| j.finished.is_none()).map(|(id, _)| *id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::message::Backend;

    /// The named records encode to the bytes of the tuples written before
    /// they had names, so stores written then still decode.
    #[test]
    fn named_records_keep_the_bytes_of_the_tuples_they_replaced() {
        let class = WorkerClass { backend: Backend::Vulkan, tier: Tier::High };
        let admitted = AdmittedWorker { class, mflops: 1234, admitted: Millis(99) };
        let tuple = postcard::to_allocvec(&(class, 1234u64, Millis(99))).expect("encodes");
        assert_eq!(encode(&admitted), tuple);
        assert_eq!(postcard::from_bytes::<AdmittedWorker>(&tuple).expect("decodes"), admitted);
        let slash = SlashRecord { reason: Cow::Borrowed("outvoted"), forfeited: 5 };
        let tuple = postcard::to_allocvec(&("outvoted", 5u128)).expect("encodes");
        assert_eq!(encode(&slash), tuple);
        // A record bigger than the stack buffer takes the vector path, same bytes.
        let big = vec![7u8; 4096];
        assert_eq!(encode(&big), postcard::to_allocvec(&big).expect("encodes"));
    }
}
