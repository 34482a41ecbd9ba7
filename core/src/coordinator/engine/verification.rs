//! Verification: results grouped by the kernel's comparator, m-first
//! voting with escalation up to the replica cap, acceptance and credit,
//! shadow comparison with the CPU reference, the dead-letter queue, and
//! slashing of proven liars.

use std::borrow::Cow;
use std::cmp::Reverse;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::coordinator::profile::WorkerClass;
use crate::coordinator::recovery::{encode, ns, task_record_key, SlashRecord};
use crate::digest::Digest;
use crate::ids::WorkerId;
use crate::kernels::Comparator;
use crate::score::polo_score;
use crate::time::Millis;
use crate::wire::message::{ErrorCode, ErrorMessage, Goodbye, TaskResult};
use crate::wire::Message;

use super::dispatch::{Kind, Release};
use super::registry::{WorkerIdx, WorkerNum};
use super::tasks::{Task, TaskKey};
use super::types::{ConnId, DeadLetter, Event, Output, TaskPhase, VerifiedResult};
use super::{remove_item, Coordinator, IdMap};

#[derive(Debug)]
pub(super) struct ReplicaResult {
    pub(super) worker_id: WorkerId,
    /// The worker's stable number.
    pub(super) num: WorkerNum,
    pub(super) class: Option<WorkerClass>,
    pub(super) outputs: Vec<Bytes>,
    pub(super) digest: Digest,
    pub(super) reward: u64,
}

/// Removes `task` from the undecided list of worker number `num` (the
/// list itself stays, so the next result does not allocate a new one).
pub(super) fn forget_undecided(
    undecided: &mut IdMap<WorkerNum, SmallVec<[TaskKey; 4]>>,
    num: WorkerNum,
    task: TaskKey,
) {
    if let Some(list) = undecided.get_mut(&num) {
        remove_item(list, &task);
    }
}

impl Coordinator {
    pub(super) fn on_result(&mut self, now: Millis, conn: ConnId, w: WorkerIdx, r: &TaskResult, outputs: Vec<Bytes>) {
        let aid = r.assignment;
        let a = match self.assignments.get(&aid) {
            Some(a) if a.worker == w => a,
            _ => return self.stale(conn, aid),
        };
        self.stats.results += 1;
        if matches!(a.kind, Kind::Benchmark(_)) {
            return self.on_benchmark_reveal(now, conn, w, aid, &outputs);
        }
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
            return self.release(aid, &Release::Failed(&format!("{id}: malformed result")));
        }
        let Some(a) = self.assignments.remove(&aid) else { return };
        if !a.in_fifo {
            self.deadlines.remove(&(a.deadline, aid));
        }
        // A result without an ack counts as acknowledged and executed now.
        let acked = a.acked.unwrap_or(now);
        let reward = polo_score(acked.since(a.offered).0, 0, now.since(acked).0).reward;
        let (wid, class, num) = match self.worker_mut(w) {
            Some(worker) => {
                remove_item(&mut worker.live, &aid);
                worker.misses_in_row = 0;
                (worker.id.clone(), worker.class(), worker.num)
            }
            None => return,
        };
        let load = self.worker(w).map_or(0, |x| x.in_flight.saturating_sub(1));
        match &a.kind {
            // Answered above (`on_benchmark_reveal`).
            Kind::Benchmark(_) => {}
            Kind::Ringer { expected } => {
                self.set_load(w, load);
                let right = r.output_digest == *expected;
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
                        self.slash(&id, "wrong answer to a task with a known answer");
                    }
                }
            }
            Kind::Task => {
                self.set_load(w, load);
                self.note_delivery(now, w, acked, a.spec.ops());
                let Some(tid) = a.task else { return };
                let digest = r.output_digest;
                let Some(t) = self.tasks.get_mut(tid) else { return };
                remove_item(&mut t.live, &aid);
                if t.phase != TaskPhase::Pending {
                    return;
                }
                t.results.push(ReplicaResult { worker_id: wid, num, class, outputs, digest, reward });
                self.undecided.entry(num).or_default().push(tid);
                self.evaluate(tid);
            }
        }
    }

    /// Groups a task's results by agreement (within a class for float
    /// kernels under homogeneous redundancy); returns groups of indices.
    pub(super) fn groups(&self, t: &Task) -> Vec<Vec<usize>> {
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
    pub(super) fn evaluate(&mut self, tid: TaskKey) {
        let Some(t) = self.tasks.get(tid) else { return };
        // Fast path: bit-exact kernel, every result identical, quorum reached.
        if matches!(t.spec.comparator(), Comparator::Exact)
            && t.results.len() >= usize::from(t.quorum)
            && t.results.iter().all(|r| r.digest == t.results[0].digest)
        {
            let all: smallvec::SmallVec<[usize; 8]> = (0..t.results.len()).collect();
            return self.accept(tid, &all);
        }
        let groups = self.groups(t);
        let q = usize::from(t.quorum);
        if let Some(g) = groups.iter().find(|g| g.len() >= q) {
            let g = g.clone();
            return self.accept(tid, &g);
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
            self.ready.push(t, &self.cfg);
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
                self.accept(tid, &g);
            }
            _ => {
                let reason =
                    format!("undecidable: {} replicas in {} disagreeing groups", t.results.len(), groups.len());
                self.dead_letter(tid, reason);
            }
        }
    }

    pub(super) fn accept(&mut self, tid: TaskKey, group: &[usize]) {
        self.withdraw_live(tid, "task verified");
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
        let record = encode(&verified);
        if let Some(truth) = self.ringers.candidate(&t.spec, &t.inputs) {
            let mut seen_by: SmallVec<[WorkerId; 4]> = verified.agreed.iter().cloned().collect();
            seen_by.extend(verified.outvoted.iter().cloned());
            if truth == digest {
                self.ringers.keep(super::ringers::Ringer {
                    job,
                    task: task_id,
                    spec: std::sync::Arc::clone(&t.spec),
                    inputs: t.inputs.clone(),
                    layout: t.layout.as_ref().map(|l| std::sync::Arc::clone(&l.layout)),
                    expected: truth,
                    seen_by,
                });
            } else {
                // The accepted answer is wrong: never a ringer (an honest
                // worker would be slashed for the truth); counted, as shadow
                // mode counts, without changing the outcome.
                self.shadow.false_positives += 1;
            }
        }
        let Some(t) = self.tasks.get_mut(tid) else { return };
        t.verified = Some(Box::new(verified));
        for r in &results {
            forget_undecided(&mut self.undecided, r.num, tid);
        }
        let index = self.index_of(job, tid);
        let record = self.end_record(tid, record);
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
                self.slash(w, &format!("outvoted on task {task_id}"));
            }
        }
    }

    /// Compares every replica of a task being accepted with the CPU reference.
    pub(super) fn shadow_compare(&mut self, tid: TaskKey, group: &[usize]) {
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
    pub(super) fn withdraw_live(&mut self, tid: TaskKey, why: &str) {
        let live = self.tasks.get_mut(tid).map(|t| std::mem::take(&mut t.live)).unwrap_or_default();
        for aid in live {
            self.release(aid, &Release::Withdrawn(why));
        }
    }

    pub(super) fn dead_letter(&mut self, tid: TaskKey, reason: String) {
        let Some(t) = self.tasks.get(tid) else { return };
        let failures = t.trouble.as_ref().map(|x| x.failures.clone()).unwrap_or_default();
        let (task_id, job) = (t.id, t.job);
        let index = self.index_of(job, tid);
        let letter = DeadLetter { job, task: task_id, index, reason: reason.clone(), failures };
        let record = self.end_record(tid, encode(&letter));
        self.ledger.put(ns::DEAD_LETTER, task_record_key(job, index), record);
        self.dead_letters.push(letter);
        self.stats.dead_lettered += 1;
        self.event(Event::TaskDeadLettered { job, task: task_id, index, reason });
        self.end_task(tid, TaskPhase::DeadLettered);
    }

    /// A proven liar: credibility gone, banned, stake and epoch earnings
    /// forfeited, its undecided results discarded (their tasks re-queued),
    /// its running assignments withdrawn, its connection closed.
    pub(super) fn slash(&mut self, id: &WorkerId, reason: &str) {
        let id = id.clone();
        let num = self.worker_nums.get(&id).map(|r| r.num);
        let pending = num.and_then(|n| self.undecided.remove(&n)).unwrap_or_default();
        let rep = self.reputation.entry(id.clone()).or_default();
        if rep.slashed {
            return;
        }
        rep.slashed = true;
        let forfeited = std::mem::take(&mut rep.stake);
        self.epoch.forfeited += forfeited;
        if forfeited > 0 {
            self.epoch.forfeits.insert(id.clone(), forfeited);
            self.ledger.put(ns::FORFEIT_OPEN, id.as_str().as_bytes().to_vec(), encode(&forfeited));
        }
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
            self.ready.push(t, &self.cfg);
        }
        self.ledger.put(
            ns::SLASHED,
            id.as_str().as_bytes().to_vec(),
            encode(&SlashRecord { reason: Cow::Borrowed(reason), forfeited }),
        );
        let conn = self.by_id.get(&id).and_then(|&w| self.worker(w)).map(|w| w.conn);
        self.event(Event::WorkerSlashed { worker: id, reason: reason.to_owned(), forfeited });
        if let Some(conn) = conn {
            self.send(conn, Message::Goodbye(Goodbye { reason: format!("slashed: {reason}") }), vec![]);
            self.staged.push_back(Output::Close { conn, reason: format!("slashed: {reason}") });
            self.on_disconnect(conn, "slashed");
        }
    }
}
