//! Jobs and their tasks: the slab that stores tasks in submission order,
//! submission (validation, the durable job record), restart from stored
//! records, cancellation, forgetting finished jobs, and the end of a task.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::auth::MasterSecret;
use crate::coordinator::config::CoordinatorConfig;
use crate::coordinator::ledger::Ledger;
use crate::coordinator::profile::{Tier, WorkerClass};
use crate::coordinator::recovery::{
    encode, encode_into, ns, task_record_key, EndedTask, JobRecord, Snapshot, StoredInputs, StoredLayout, TaskRecord,
    TaskTimes, INPUTS_APART,
};
use crate::coordinator::rewards::EpochWork;
use crate::digest::Digest;
use crate::ids::{AssignmentId, JobId, TaskId};
use crate::kernels::KernelSpec;
use crate::shared_inputs::SharedLayout;
use crate::time::Millis;

use super::ready::Need;
use super::registry::WorkerNum;
use super::shared::{job_shared, own_bytes, used_shared};
use super::types::{
    DeadLetter, Event, JobProgress, JobSpec, OriginKey, PreparedJob, SubmitError, TaskLayout, TaskPhase, TaskSpec,
    VerifiedResult,
};
use super::verification::{forget_undecided, ReplicaResult};
use super::Coordinator;

/// A task's place in the [`TaskSlab`]: its submission sequence number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct TaskKey(pub(super) u64);

/// Tasks per slab chunk.
pub(super) const CHUNK: usize = 1024;

/// A block of consecutive tasks, freed as a whole once all are released.
#[derive(Debug)]
pub(super) struct Chunk {
    pub(super) slots: Vec<Option<Task>>,
    pub(super) live: usize,
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
pub(super) struct TaskSlab {
    pub(super) prefix: [u8; 8],
    /// Key of the first slot of `chunks[0]`.
    pub(super) base: TaskKey,
    pub(super) chunks: VecDeque<Option<Chunk>>,
    pub(super) next: TaskKey,
}

impl TaskSlab {
    pub(super) fn next_key(&self) -> TaskKey {
        self.next
    }

    pub(super) fn id_for(&self, key: TaskKey) -> TaskId {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.prefix);
        b[8..].copy_from_slice(&key.0.to_be_bytes());
        TaskId::from_bytes(b)
    }

    pub(super) fn insert(&mut self, task: Task) -> TaskKey {
        let key = self.next;
        self.next.0 += 1;
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

    pub(super) fn locate(&self, key: TaskKey) -> Option<(usize, usize)> {
        let off = usize::try_from(key.0.checked_sub(self.base.0)?).ok()?;
        Some((off / CHUNK, off % CHUNK))
    }

    pub(super) fn get(&self, key: TaskKey) -> Option<&Task> {
        let (c, i) = self.locate(key)?;
        self.chunks.get(c)?.as_ref()?.slots.get(i)?.as_ref()
    }

    pub(super) fn get_mut(&mut self, key: TaskKey) -> Option<&mut Task> {
        let (c, i) = self.locate(key)?;
        self.chunks.get_mut(c)?.as_mut()?.slots.get_mut(i)?.as_mut()
    }

    pub(super) fn key_of(&self, id: TaskId) -> Option<TaskKey> {
        let b = id.as_bytes();
        if b[..8] != self.prefix {
            return None;
        }
        let mut k = [0u8; 8];
        k.copy_from_slice(&b[8..]);
        let key = TaskKey(u64::from_be_bytes(k));
        self.get(key).is_some_and(|t| t.id == id).then_some(key)
    }

    pub(super) fn remove(&mut self, key: TaskKey) {
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
            self.base.0 += CHUNK as u64;
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Trouble {
    pub(super) failures: Vec<String>,
    pub(super) harmed: Vec<WorkerNum>,
}

#[derive(Debug)]
pub(super) struct Task {
    pub(super) id: TaskId,
    pub(super) key: TaskKey,
    pub(super) job: JobId,
    pub(super) spec: Arc<KernelSpec>,
    /// Bytes a worker must hold (inputs + outputs).
    pub(super) working_set: u64,
    pub(super) inputs: Vec<Bytes>,
    /// Where its shared inputs sit (None: it has none).
    pub(super) layout: Option<Box<TaskLayout>>,
    pub(super) input_digest: Digest,
    /// [`Digest::check_of_parts`] of the inputs (what workers check), as
    /// bytes: a `u128` field would align the whole task to 16 bytes.
    pub(super) input_check: [u8; 16],
    pub(super) quorum: u8,
    pub(super) priority: u8,
    pub(super) min_tier: Tier,
    pub(super) phase: TaskPhase,
    /// Replicas still to hand out.
    pub(super) open_slots: u8,
    /// Replicas in flight; inline for the usual redundancy (read on every
    /// result: kept in the task's own cache lines).
    pub(super) live: SmallVec<[AssignmentId; 2]>,
    pub(super) results: Vec<ReplicaResult>,
    /// Workers (and their origins) this task was ever given to (inline for
    /// the usual redundancy, as `live`).
    pub(super) tried: SmallVec<[(WorkerNum, OriginKey); 2]>,
    pub(super) class: Option<WorkerClass>,
    pub(super) attempts: u32,
    /// Failures on the way and the workers they harmed (rare: boxed so a
    /// queued task stays small).
    pub(super) trouble: Option<Box<Trouble>>,
    pub(super) escalated: bool,
    pub(super) adaptive: bool,
    pub(super) verified: Option<Box<VerifiedResult>>,
    /// The ready-queue group it waits in (None: not waiting for a worker).
    pub(super) queued: Option<Need>,
    /// First offered to a worker, first acknowledged (0: not yet).
    pub(super) first_offer: Millis,
    pub(super) first_ack: Millis,
}

impl Task {
    pub(super) fn ready_key(&self) -> (Reverse<u8>, TaskKey) {
        (Reverse(self.priority), self.key)
    }
}

#[derive(Debug)]
pub(super) struct Job {
    pub(super) progress: JobProgress,
    pub(super) tasks: Vec<TaskId>,
    /// The tasks' keys are `first .. first + tasks.len()`.
    pub(super) first: TaskKey,
    pub(super) expires: Millis,
    /// When a task of it was first offered (since this process started).
    pub(super) first_offer: Option<Millis>,
    /// When it was submitted.
    pub(super) submitted: Millis,
    /// Bytes of the shared inputs its open tasks hold (counted once).
    pub(super) shared_bytes: u64,
}

impl Job {
    pub(super) fn keys(&self) -> impl Iterator<Item = TaskKey> + use<> {
        (self.first.0..self.first.0 + self.tasks.len() as u64).map(TaskKey)
    }
}

/// A task's inputs' digest (their name) and checksum (what a worker checks).
pub(super) fn input_ids(inputs: &[Bytes]) -> (Digest, u128) {
    let parts = || inputs.iter().map(|b| &b[..]);
    (Digest::of_parts(parts()), Digest::check_of_parts(parts()))
}

impl Coordinator {
    /// Position of a task in its job.
    pub(super) fn index_of(&self, job: JobId, tid: TaskKey) -> u32 {
        self.jobs.get(&job).map_or(0, |j| (tid.0 - j.first.0) as u32)
    }

    /// Accepts a job: validates every task, records it durably (in this
    /// round's diff) and queues its tasks.
    pub(super) fn submit(&mut self, now: Millis, job: PreparedJob) -> Result<JobId, SubmitError> {
        let PreparedJob { spec, ids: digests, layouts, .. } = job;
        if spec.tasks.is_empty() {
            return Err(SubmitError::Empty);
        }
        if self.queued_tasks + spec.tasks.len() > self.cfg.max_queued_tasks {
            return Err(SubmitError::QueueFull { queued: self.queued_tasks, limit: self.cfg.max_queued_tasks });
        }
        // Shared inputs count once, however many tasks use them.
        let shared = job_shared(&spec.tasks, &layouts);
        let own: u64 =
            (spec.tasks.iter().zip(&layouts)).map(|(t, l)| own_bytes(&t.inputs, l.as_ref().map(|l| &*l.layout))).sum();
        let bytes = own + shared.values().map(|b| b.len() as u64).sum::<u64>();
        if bytes > self.cfg.max_job_input_bytes {
            return Err(SubmitError::JobTooLarge { bytes, limit: self.cfg.max_job_input_bytes });
        }
        if self.queued_input_bytes + bytes > self.cfg.max_queued_input_bytes {
            let (queued, limit) = (self.queued_input_bytes, self.cfg.max_queued_input_bytes);
            return Err(SubmitError::InputBudget { queued, job: bytes, limit });
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
        // Shared inputs are stored once each, under their own digest.
        for (digest, b) in &shared {
            self.ledger.put_inputs(*digest, vec![b.clone()]);
        }
        let mut stored_apart = BTreeSet::new();
        let mut tasks = Vec::with_capacity(spec.tasks.len());
        for ((t, (digest, _)), l) in spec.tasks.iter().zip(&digests).zip(&layouts) {
            let inputs = match l {
                None => self.stored_inputs(&mut stored_apart, *digest, Cow::Borrowed(&t.inputs)),
                Some(l) => StoredInputs::Shared {
                    layout: Cow::Borrowed(l.layout.parts()),
                    own: Box::new(self.stored_inputs(
                        &mut stored_apart,
                        l.own,
                        Cow::Owned(l.layout.own(&t.inputs).cloned().collect()),
                    )),
                },
            };
            tasks.push(TaskRecord { kernel: Cow::Borrowed(&t.kernel), inputs });
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
        let inline: usize = (record.tasks.iter()).map(|t| stored_size(&t.inputs)).sum();
        let value = encode_into(&record, Vec::with_capacity(64 + inline + 64 * record.tasks.len()));
        self.ledger.put(ns::JOB, job.as_bytes().to_vec(), value);
        let n = spec.tasks.len() as u32;
        self.insert_job(job, spec, (digests, layouts), (now, now + self.cfg.task_ttl), BTreeMap::new());
        self.event(Event::JobAccepted { job, tasks: n });
        Ok(job)
    }

    /// Creates a job's tasks: the ones in `ended` as they ended, the others
    /// queued.
    /// `digests` are the tasks' input digests and checksums, in order.
    pub(super) fn insert_job(
        &mut self,
        job: JobId,
        spec: JobSpec,
        (digests, layouts): (Vec<(Digest, u128)>, Vec<Option<TaskLayout>>),
        (submitted, expires): (Millis, Millis),
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
        // Shared inputs are held once per job, while any of its tasks is open.
        let open_shared = used_shared(
            (spec.tasks.iter().zip(&layouts).enumerate())
                .filter(|(i, _)| !ended.contains_key(&(*i as u32)))
                .map(|(_, (t, l))| (&t.inputs[..], l.as_ref().map(|l| &*l.layout))),
        );
        let shared_bytes: u64 = open_shared.values().map(|b| b.len() as u64).sum();
        self.queued_input_bytes += shared_bytes;
        let tasks = spec.tasks.into_iter().zip(layouts);
        for ((index, (t, layout)), (input_digest, input_check)) in tasks.enumerate().zip(digests) {
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
                layout: layout.map(Box::new),
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
                queued: None,
                first_offer: Millis::ZERO,
                first_ack: Millis::ZERO,
            };
            match ended.remove(&(index as u32)) {
                None => {
                    self.ready.push(&mut task, &self.cfg);
                    self.queued_tasks += 1;
                    self.queued_input_bytes += own_bytes(&task.inputs, task.layout.as_ref().map(|l| &*l.layout));
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
        self.jobs.insert(
            job,
            Job {
                progress,
                tasks: ids,
                first: first.unwrap_or_default(),
                expires,
                first_offer: None,
                submitted,
                shared_bytes,
            },
        );
    }

    /// Rebuilds a coordinator after a restart from what it had stored (see
    /// [`crate::coordinator::recovery`]). `now` is the host's clock; unfinished jobs
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
            c.epoch.forfeits = snapshot.open_forfeits;
        } else {
            c.epoch.carried = snapshot.history.values().next_back().map_or(0, |s| s.carried_out);
        }
        let (mut addresses, mut stakes) = (snapshot.addresses, snapshot.stakes);
        c.epoch.history = snapshot
            .history
            .into_values()
            .map(|mut s| {
                s.addresses = addresses.remove(&s.epoch).unwrap_or_default();
                s.stakes = stakes.remove(&s.epoch).unwrap_or_default();
                s
            })
            .collect();
        c.contributors.profiles.extend(snapshot.profiles);
        c.contributors.approved.extend(snapshot.approved);
        for s in &c.epoch.history {
            c.contributors.credit(s);
        }
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
            let mut layouts = Vec::with_capacity(spec.tasks.len());
            for (index, t) in spec.tasks.iter_mut().enumerate() {
                if let Some(l) = stored.layouts.get(&(index as u32)) {
                    let open = !stored.ended.contains_key(&(index as u32));
                    let (ids, layout) = recover_layout(l, t, open, &snapshot.inputs);
                    digests.push(ids);
                    layouts.push(layout);
                    continue;
                }
                layouts.push(None);
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
            c.insert_job(job, spec, (digests, layouts), (stored.submitted, expires), stored.ended);
        }
        c
    }

    /// Cancels a job: pending tasks end as cancelled, their running
    /// replicas are withdrawn. False for an unknown job.
    pub(super) fn cancel(&mut self, job: JobId) -> bool {
        let Some(j) = self.jobs.get(&job) else { return false };
        for tid in j.keys() {
            let pending = self.tasks.get(tid).is_some_and(|t| t.phase == TaskPhase::Pending);
            if pending {
                self.withdraw_live(tid, "job cancelled");
                self.end_task(tid, TaskPhase::Cancelled);
            }
        }
        self.ledger.put(ns::JOB_CANCELLED, job.as_bytes().to_vec(), Vec::new());
        true
    }

    /// Re-queues dead letters as the tasks of a new job
    /// ([`Command::RequeueDeadLetters`](super::Command::RequeueDeadLetters)).
    pub(super) fn requeue(
        &mut self,
        now: Millis,
        from: &[(JobId, u32)],
        job: PreparedJob,
    ) -> Result<JobId, SubmitError> {
        if from.len() != job.spec.tasks.len() {
            return Err(SubmitError::RequeueMismatch { letters: from.len(), tasks: job.spec.tasks.len() });
        }
        let new = self.submit(now, job)?;
        for (i, (old, index)) in from.iter().enumerate() {
            self.ledger.put(ns::REQUEUED, task_record_key(*old, *index), encode(&(new, i as u32)));
        }
        Ok(new)
    }

    /// Deletes a finished job's records ([`Command::DeleteJob`](super::Command::DeleteJob)):
    /// its record, its end and cancellation marks, every task result and
    /// dead letter (one prefix delete each, however many tasks), and the
    /// inputs in `inputs` that no task in memory still reads (a job
    /// submitted in this very round may share them).
    pub(super) fn delete(&mut self, job: JobId, inputs: &[Digest]) -> Result<(), super::DeleteJobError> {
        if self.jobs.get(&job).is_some_and(|j| !j.progress.finished()) {
            return Err(super::DeleteJobError::Unfinished);
        }
        self.forget_job(job);
        for namespace in [ns::JOB, ns::JOB_FINISHED, ns::JOB_CANCELLED] {
            self.ledger.delete(namespace, job.as_bytes().to_vec());
        }
        for namespace in [ns::TASK, ns::DEAD_LETTER, ns::REQUEUED] {
            self.ledger.delete_prefix(namespace, job.as_bytes().to_vec());
        }
        if !inputs.is_empty() {
            let mut in_use = BTreeSet::new();
            for t in self.jobs.values().flat_map(Job::keys).filter_map(|k| self.tasks.get(k)) {
                in_use.insert(t.input_digest);
                if let Some(l) = &t.layout {
                    in_use.extend(l.layout.shared());
                    in_use.insert(l.own);
                }
            }
            for d in inputs.iter().filter(|d| !in_use.contains(d)) {
                self.ledger.delete(ns::INPUT, d.as_bytes().to_vec());
            }
        }
        Ok(())
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

    /// Moves a pending task to a final phase and updates its job.
    /// The task's end record (a [`super::VerifiedResult`] or a
    /// [`super::DeadLetter`], encoded) followed by its [`TaskTimes`] as of
    /// now: one value, so the stamps cost no entry of their own (a reader
    /// of the record alone ignores the tail).
    pub(super) fn end_record(&self, tid: TaskKey, record: Vec<u8>) -> Vec<u8> {
        let Some(t) = self.tasks.get(tid) else { return record };
        let Some(j) = self.jobs.get(&t.job) else { return record };
        let stamp = |m: Millis| (m != Millis::ZERO).then_some(m);
        let times = TaskTimes {
            submitted: j.submitted,
            offered: stamp(t.first_offer),
            acked: stamp(t.first_ack),
            ended: self.round_now,
        };
        encode_into(&times, record)
    }

    pub(super) fn end_task(&mut self, tid: TaskKey, phase: TaskPhase) {
        let Some(t) = self.tasks.get_mut(tid) else { return };
        if t.phase != TaskPhase::Pending {
            return;
        }
        t.phase = phase;
        t.open_slots = 0;
        self.ready.take(t, self.cfg.distinct_origins);
        let job = t.job;
        for r in &t.results {
            forget_undecided(&mut self.undecided, r.num, tid);
        }
        // Inputs are no longer needed; undecided results are dropped.
        let own = own_bytes(&t.inputs, t.layout.as_ref().map(|l| &*l.layout));
        self.queued_input_bytes = self.queued_input_bytes.saturating_sub(own);
        t.inputs = Vec::new();
        if phase != TaskPhase::Verified {
            t.results.clear();
        }
        self.queued_tasks = self.queued_tasks.saturating_sub(1);
        let Some(j) = self.jobs.get_mut(&job) else { return };
        match phase {
            TaskPhase::Verified => j.progress.verified += 1,
            TaskPhase::DeadLettered => j.progress.dead_lettered += 1,
            TaskPhase::Cancelled => j.progress.cancelled += 1,
            TaskPhase::Pending => {}
        }
        if j.progress.finished() {
            self.queued_input_bytes = self.queued_input_bytes.saturating_sub(std::mem::take(&mut j.shared_bytes));
            let p = j.progress.clone();
            self.open_jobs.remove(&(j.expires, job));
            self.ledger.put(ns::JOB_FINISHED, job.as_bytes().to_vec(), encode(&p));
            self.event(Event::JobFinished {
                job,
                verified: p.verified,
                dead_lettered: p.dead_lettered,
                cancelled: p.cancelled,
            });
        }
    }
}

/// Bytes a task's stored inputs add to its job's record (for sizing the
/// record's buffer up front).
fn stored_size(inputs: &StoredInputs<'_>) -> usize {
    match inputs {
        StoredInputs::Inline(inputs) => inputs.iter().map(|b| b.len() + 10).sum(),
        StoredInputs::Apart(_) => 34,
        StoredInputs::Shared { layout, own } => 33 * layout.len() + 4 + stored_size(own),
    }
}

impl Coordinator {
    /// A task's inputs (or own parts) as its job's record holds them:
    /// stored apart under `digest`, once per job, when they are big;
    /// inline otherwise.
    fn stored_inputs<'a>(
        &mut self,
        apart: &mut BTreeSet<Digest>,
        digest: Digest,
        inputs: Cow<'a, [Bytes]>,
    ) -> StoredInputs<'a> {
        if inputs.iter().map(Bytes::len).sum::<usize>() < INPUTS_APART {
            return StoredInputs::Inline(inputs);
        }
        if apart.insert(digest) {
            self.ledger.put_inputs(digest, inputs.into_owned());
        }
        StoredInputs::Apart(digest)
    }
}

/// A stored task with shared inputs, rebuilt: its name and checksum, its
/// layout, and (when it is still open) its full inputs from the stored
/// shared inputs and own parts.
fn recover_layout(
    l: &StoredLayout,
    t: &mut TaskSpec,
    open: bool,
    inputs: &BTreeMap<Digest, Vec<Bytes>>,
) -> ((Digest, u128), Option<TaskLayout>) {
    let own: Vec<Bytes> = match l.own_apart {
        Some(d) if open => inputs.get(&d).cloned().unwrap_or_default(),
        Some(_) => Vec::new(),
        None => std::mem::take(&mut t.inputs),
    };
    let Some(layout) = SharedLayout::new(l.layout.clone()) else {
        t.inputs = own;
        return (input_ids(&t.inputs), None);
    };
    let refs: Vec<&[u8]> = own.iter().map(|b| &b[..]).collect();
    let (name, check, own_digest) = layout.ids_of_own(&refs, l.own_apart);
    if open {
        t.inputs = layout.assemble(&own, |d| inputs.get(d).and_then(|v| v.first().cloned())).unwrap_or_default();
    }
    ((name, check), Some(TaskLayout { layout, own: own_digest }))
}
