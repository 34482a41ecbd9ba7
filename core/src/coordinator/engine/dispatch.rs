//! Dispatch and the watchdog: which ready task goes to which idle worker
//! (least loaded, distinct workers and origins, tiers, ringers, adaptive
//! replication), the offer, acknowledgement and execution deadlines, and
//! every way an assignment ends without a result (decline, failure, timeout,
//! departure, withdrawal) with its poison-guard accounting.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::ids::{AssignmentId, JobId, TaskId};
use crate::kernels::KernelSpec;
use crate::time::Millis;
use crate::wire::message::{AttachmentMeta, Cancel, ErrorCode, ErrorMessage, TaskOffer};
use crate::wire::Message;

use super::ready::{Excl, Need};
use super::registry::{WorkerIdx, WorkerNum, WorkerState};
use super::shared::{OfferInputs, SharedOffer};
use super::tasks::{input_ids, TaskKey};
use super::types::{ConnId, TaskPhase};
use super::{remove_item, Coordinator};

#[derive(Debug, Clone)]
pub(super) enum Kind {
    Task,
    /// A replay of a verified task ([`super::ringers`]): its answer must
    /// have this digest.
    Ringer {
        expected: crate::digest::Digest,
    },
    /// A run of the admission benchmark.
    Benchmark(Box<super::benchmarking::BenchmarkRun>),
}

/// What a task offer is for: a task, or a replayed one (a ringer: it
/// carries the verified task's own ids).
#[derive(Clone, Copy, Debug)]
pub(super) enum Target {
    Task(TaskKey),
    Replay { job: JobId, task: TaskId },
}

#[derive(Debug)]
pub(super) struct Assignment {
    pub(super) task: Option<TaskKey>,
    pub(super) spec: Arc<KernelSpec>,
    pub(super) worker: WorkerIdx,
    /// When it was offered.
    pub(super) offered: Millis,
    /// When the worker acknowledged it and began executing (an
    /// assignment is open from its offer until it ends, when it leaves
    /// the slab: these two stamps are its whole lifecycle).
    pub(super) acked: Option<Millis>,
    pub(super) deadline: Millis,
    /// The deadline sits in the acknowledgement FIFO, not the ordered set.
    pub(super) in_fifo: bool,
    pub(super) kind: Kind,
    /// Its inputs, while its offer named a shared input without sending
    /// it (the worker may ask for it once).
    pub(super) shared: Option<Box<SharedOffer>>,
}

/// Why an assignment ended without a result.
pub(super) enum Release<'a> {
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
    pub(super) fn reason(&self) -> &str {
        match self {
            Release::Declined(w) | Release::Failed(w) | Release::Withdrawn(w) => w,
            Release::TimedOut { why, .. } | Release::Left { why, .. } => why,
        }
    }

    pub(super) fn harms(&self) -> bool {
        match self {
            Release::Failed(_) => true,
            Release::TimedOut { executing, .. } | Release::Left { executing, .. } => *executing,
            Release::Declined(_) | Release::Withdrawn(_) => false,
        }
    }

    pub(super) fn tells_worker(&self) -> bool {
        matches!(self, Release::TimedOut { .. } | Release::Withdrawn(_))
    }
}

impl Coordinator {
    /// Gives ready tasks to idle workers until no idle worker can take any
    /// ready task: the best group some idle worker serves first, its least
    /// loaded such worker, and the group's first task that worker may run.
    /// Groups found unservable are skipped for the rest of the round (the
    /// idle pool only shrinks within it), so each offer costs a walk over
    /// group heads, never over tasks that cannot run.
    pub(super) fn dispatch(&mut self, now: Millis) {
        let mut stuck: BTreeSet<Need> = BTreeSet::new();
        while !self.idle.is_empty() {
            let mut found = None;
            for need in self.ready.heads() {
                if stuck.contains(&need) {
                    continue;
                }
                match self.pick(need) {
                    Some(pair) => {
                        found = Some(pair);
                        break;
                    }
                    None => {
                        stuck.insert(need);
                    }
                }
            }
            let Some((w, tid)) = found else { break };
            if self.cfg.credibility.ringer_pct > 0
                && self.rng.below(100) < u64::from(self.cfg.credibility.ringer_pct)
                && self.send_ringer(now, w)
            {
                continue;
            }
            self.assign(now, tid, w);
            // A float task bound to a class by this offer moved to that
            // class's group, which may now have work for someone.
            if let Some(need) = self.tasks.get(tid).and_then(|t| t.queued) {
                stuck.remove(&need);
            }
        }
    }

    /// The least loaded idle worker that can take some task of the group,
    /// and the first such task.
    pub(super) fn pick(&self, need: Need) -> Option<(WorkerIdx, TaskKey)> {
        let mut best: Option<(u32, WorkerIdx)> = None;
        for set in self.idle.serving(need) {
            for &(load, w) in set {
                if best.is_some_and(|b| b <= (load, w)) {
                    break;
                }
                if self.may_take_some(need, w) {
                    best = Some((load, w));
                    break;
                }
            }
        }
        let (_, w) = best?;
        Some((w, self.first_for(need, w)?))
    }

    /// Whether worker `w` may take some task of the group, from the
    /// queue's counts (a walk of the group only for a worker that roamed).
    fn may_take_some(&self, need: Need, w: WorkerIdx) -> bool {
        let Some(worker) = self.worker(w) else { return false };
        let len = self.ready.group_len(need);
        if !self.cfg.distinct_origins {
            return self.ready.excluding(need, Excl::Worker(worker.num)) < len;
        }
        if !worker.roamed {
            return self.ready.excluding(need, Excl::Origin(worker.origin)) < len;
        }
        self.first_for(need, w).is_some()
    }

    /// The group's first task `w` may run (replicas of a task go to
    /// distinct workers and, when configured, distinct origins).
    fn first_for(&self, need: Need, w: WorkerIdx) -> Option<TaskKey> {
        let worker = self.worker(w)?;
        let (num, origin, origins) = (worker.num, worker.origin, self.cfg.distinct_origins);
        self.ready.group(need).find(|&k| {
            self.tasks.get(k).is_some_and(|t| !t.tried.iter().any(|&(tw, to)| tw == num || (origins && to == origin)))
        })
    }

    pub(super) fn assign(&mut self, now: Millis, tid: TaskKey, w: WorkerIdx) {
        let Some(t) = self.tasks.get(tid) else { return };
        if t.attempts >= self.cfg.max_delivery_attempts {
            let reason = format!("{} delivery attempts exhausted", t.attempts);
            self.dead_letter(tid, reason);
            return;
        }
        let (spec, inputs) = (
            t.spec.clone(),
            OfferInputs { bytes: t.inputs.clone(), layout: t.layout.as_ref().map(|l| Arc::clone(&l.layout)) },
        );
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
        if t.class.is_none() {
            t.class = class;
        }
        let origins = self.cfg.distinct_origins;
        match t.queued {
            // Still wanting replicas in the same group: one more exclusion.
            Some(need) if t.open_slots > 0 && Need::of(t, &self.cfg) == need => {
                self.ready.note_tried(need, &t.tried, (num, origin), origins);
                t.tried.push((num, origin));
            }
            _ => {
                self.ready.take(t, origins);
                t.tried.push((num, origin));
                if t.open_slots > 0 {
                    self.ready.push(t, &self.cfg);
                }
            }
        }
        let deadline = now + self.cfg.ack_timeout;
        self.offer(now, w, Target::Task(tid), spec, inputs, Kind::Task, deadline);
    }

    /// Offers `w` a replay of a verified task it never ran; false when
    /// there is none (then it gets real work).
    pub(super) fn send_ringer(&mut self, now: Millis, w: WorkerIdx) -> bool {
        let Some(id) = self.worker(w).map(|x| x.id.clone()) else { return false };
        let Some(r) = self.ringers.pick(&mut self.rng, &id) else { return false };
        let inputs = OfferInputs { bytes: r.inputs.clone(), layout: r.layout.clone() };
        let (spec, expected) = (r.spec.clone(), r.expected);
        let target = Target::Replay { job: r.job, task: r.task };
        self.stats.ringers += 1;
        let deadline = now + self.cfg.ack_timeout;
        self.offer(now, w, target, spec, inputs, Kind::Ringer { expected }, deadline);
        true
    }

    /// Opens an assignment of worker `w`: in the slab, in the worker's
    /// load and under its deadline. Returns its id and the worker's
    /// connection (None: no such worker).
    pub(super) fn open_assignment(
        &mut self,
        now: Millis,
        w: WorkerIdx,
        task: Option<TaskKey>,
        spec: &Arc<KernelSpec>,
        kind: Kind,
        deadline: Millis,
    ) -> Option<(AssignmentId, ConnId)> {
        let worker = self.worker_mut(w)?;
        let (conn, load) = (worker.conn, worker.in_flight + 1);
        // Task and ringer offers all wait `ack_timeout`: their deadlines come in order.
        let in_fifo = !matches!(kind, Kind::Benchmark(_)) && deadline == now + self.cfg.ack_timeout;
        let assignment = Assignment {
            task,
            spec: Arc::clone(spec),
            worker: w,
            offered: now,
            acked: None,
            deadline,
            in_fifo,
            kind,
            shared: None,
        };
        let aid = self.assignments.insert(self.ids.next(), assignment);
        if let Some(worker) = self.worker_mut(w) {
            worker.live.push(aid);
        }
        self.set_load(w, load);
        if in_fifo {
            self.ack_fifo.push_back((deadline, aid));
        } else {
            self.deadlines.insert((deadline, aid));
        }
        self.stats.offers += 1;
        Some((aid, conn))
    }

    /// Offers a task (or a ringer: a replay of a verified one, under its
    /// ids) to worker `w`, its shared inputs named where the worker holds them.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn offer(
        &mut self,
        now: Millis,
        w: WorkerIdx,
        target: Target,
        spec: Arc<KernelSpec>,
        inputs: OfferInputs,
        kind: Kind,
        deadline: Millis,
    ) {
        let (task, job, task_id, (input_digest, input_check)) = match target {
            Target::Task(k) => {
                let Some(t) = self.tasks.get(k) else { return };
                (Some(k), t.job, t.id, (t.input_digest, u128::from_le_bytes(t.input_check)))
            }
            Target::Replay { job, task } => {
                let ids = match &inputs.layout {
                    Some(l) => {
                        let (name, check, _) = l.ids(&inputs.bytes, None);
                        (name, check)
                    }
                    None => input_ids(&inputs.bytes),
                };
                (None, job, task, ids)
            }
        };
        let Some((aid, conn)) = self.open_assignment(now, w, task, &spec, kind, deadline) else { return };
        if let Some(t) = task.and_then(|k| self.tasks.get_mut(k)) {
            t.live.push(aid);
            if t.first_offer == Millis::ZERO {
                t.first_offer = now;
            }
            if let Some(j) = self.jobs.get_mut(&job) {
                j.first_offer.get_or_insert(now);
            }
        }
        let exec_budget_ms = self.exec_budget(w, &spec).0;
        let (parts, attached, kept) = self.offer_parts(w, inputs);
        if let (Some(a), Some(kept)) = (self.assignments.get_mut(&aid), kept) {
            a.shared = Some(kept);
        }
        let offer = TaskOffer {
            exec_budget_ms,
            assignment: aid,
            task: task_id,
            job,
            kernel: spec,
            inputs: attached.iter().map(|b| AttachmentMeta { len: b.len() as u64 }).collect(),
            parts,
            input_digest,
            input_check,
            deadline_ms: deadline.since(now).0,
        };
        self.send(conn, Message::TaskOffer(offer), attached);
    }

    /// Time a worker may execute `spec` once it acknowledged it: the
    /// kernel's cost at the worker's measured speed, with slack, between the
    /// floor and the ceiling. The offer tells the worker (it abandons the
    /// run then); the acknowledgement starts the clock.
    pub(super) fn exec_budget(&self, w: WorkerIdx, spec: &KernelSpec) -> Millis {
        let mflops = match self.worker(w).map(|w| &w.state) {
            Some(WorkerState::Active { mflops, .. }) => *mflops,
            _ => self.cfg.profile.min_mflops,
        }
        .max(1);
        let expected_ms = spec.ops() / (mflops * 1_000);
        let budget = Millis(expected_ms.saturating_mul(self.cfg.exec_slack_pct) / 100);
        let floor = self.cfg.exec_timeout_floor;
        budget.clamp(floor, self.cfg.exec_timeout_ceiling.max(floor))
    }

    /// Execution deadline of an assignment acknowledged at `now`.
    pub(super) fn exec_deadline(&self, now: Millis, a: &Assignment) -> Millis {
        now + self.exec_budget(a.worker, &a.spec)
    }

    /// Whether the assignment belongs to worker `w` and is still open.
    pub(super) fn owns(&self, w: WorkerIdx, aid: AssignmentId) -> bool {
        self.assignments.get(&aid).is_some_and(|a| a.worker == w)
    }

    pub(super) fn stale(&mut self, conn: ConnId, aid: AssignmentId) {
        self.stats.stale_results += 1;
        let message = "unknown or expired assignment".to_owned();
        self.send(
            conn,
            Message::Error(ErrorMessage { code: ErrorCode::UnknownAssignment, assignment: Some(aid), message }),
            vec![],
        );
    }

    pub(super) fn on_ack(&mut self, now: Millis, conn: ConnId, w: WorkerIdx, aid: AssignmentId) {
        let new_deadline = match self.assignments.get(&aid) {
            Some(a) if a.worker == w => self.exec_deadline(now, a),
            _ => return self.stale(conn, aid),
        };
        let Some(a) = self.assignments.get_mut(&aid) else { return };
        if a.acked.is_some() {
            return; // a repeated ack changes nothing
        }
        a.acked = Some(now);
        if let Some(t) = a.task.and_then(|k| self.tasks.get_mut(k)) {
            if t.first_ack == Millis::ZERO {
                t.first_ack = now;
            }
        }
        let Some(a) = self.assignments.get_mut(&aid) else { return };
        if !a.in_fifo {
            self.deadlines.remove(&(a.deadline, aid));
        }
        a.in_fifo = false;
        a.deadline = new_deadline;
        self.deadlines.insert((new_deadline, aid));
    }

    pub(super) fn on_decline(&mut self, conn: ConnId, w: WorkerIdx, aid: AssignmentId, reason: &str) {
        if !self.owns(w, aid) {
            return self.stale(conn, aid);
        }
        self.release(aid, &Release::Declined(reason));
        self.missed(w, "declined");
    }

    /// Counts an offer of worker `w` that ended without a result: from the
    /// first it is given one task at a time, at `max_misses_in_row` it is
    /// evicted. A result clears the count.
    pub(super) fn missed(&mut self, w: WorkerIdx, how: &str) {
        let limit = self.cfg.max_misses_in_row;
        let Some(worker) = self.worker_mut(w) else { return };
        worker.misses_in_row += 1;
        let (n, conn, load) = (worker.misses_in_row, worker.conn, worker.in_flight);
        if n >= limit {
            let why = format!("{n} offers in a row without a result (last {how})");
            return self.evict(conn, &why);
        }
        self.set_load(w, load);
    }

    pub(super) fn on_failure(&mut self, conn: ConnId, w: WorkerIdx, aid: AssignmentId, why: &str) {
        if !self.owns(w, aid) {
            return self.stale(conn, aid);
        }
        let id = self.worker(w).map(|x| x.id.to_string()).unwrap_or_default();
        self.release(aid, &Release::Failed(&format!("{id}: {why}")));
        self.missed(w, "failed");
    }

    /// Ends an open assignment without a result: frees the worker's slot,
    /// tells the worker when it should stop, records harm against the task
    /// (poison guard) and re-queues the replica, as `how` says.
    pub(super) fn release(&mut self, aid: AssignmentId, how: &Release<'_>) {
        let Some(a) = self.assignments.remove(&aid) else { return };
        if !a.in_fifo {
            self.deadlines.remove(&(a.deadline, aid));
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
        let num = self.worker(a.worker).map_or(WorkerNum::NONE, |w| w.num);
        // Harm counts against a task only from a worker with a verified
        // result to its name: strangers that fail everything cannot sink
        // honest tasks (their misses count against themselves instead).
        let proven = self.worker(a.worker).is_some_and(|w| self.reputation.get(&w.id).is_some_and(|r| r.agreed > 0));
        let Some(t) = self.tasks.get_mut(tid) else { return };
        remove_item(&mut t.live, &aid);
        if t.phase != TaskPhase::Pending || matches!(how, Release::Withdrawn(_)) {
            return;
        }
        t.open_slots += 1;
        let delivered = !matches!(how, Release::Declined(_) | Release::Left { executing: false, .. });
        if !(delivered && proven) {
            // Declined, left before taking it, or missed by an unproven
            // worker: the delivery is not spent. A task's attempts are for
            // proven workers that took it (this one is in `tried` and is
            // not offered it again).
            t.attempts = t.attempts.saturating_sub(1);
        }
        if how.harms() && proven {
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
        self.ready.push(t, &self.cfg);
    }

    pub(super) fn time_out(&mut self, aid: AssignmentId) {
        let Some(a) = self.assignments.get(&aid) else { return };
        self.stats.timeouts += 1;
        let executing = a.acked.is_some();
        let id = self.worker(a.worker).map(|w| w.id.to_string()).unwrap_or_default();
        let why = if executing { format!("{id}: execution timed out") } else { format!("{id}: no ack in time") };
        let w = a.worker;
        self.release(aid, &Release::TimedOut { executing, why: &why });
        self.missed(w, if executing { "timed out" } else { "never acknowledged" });
    }
}
