//! The admission benchmark on the coordinator's side (the arithmetic is
//! [`crate::benchmark`]'s): runs offered, grown until long enough to time,
//! commitments timed in microseconds and challenged, reveals spot-checked;
//! and the drift watch that measures an admitted worker again when the
//! speed it delivers is far from the speed it was measured at.

use std::sync::Arc;

use bytes::Bytes;

use crate::benchmark as bm;
use crate::coordinator::profile::{mflops, next_benchmark_edge, Refusal};
use crate::digest::Digest;
use crate::ids::AssignmentId;
use crate::kernels::matmul::MAX_DIM;
use crate::time::Millis;
use crate::wire::message::{BenchmarkChallenge, BenchmarkCommit, BenchmarkOffer, ErrorCode};
use crate::wire::Message;

use super::dispatch::Kind;
use super::registry::{WorkerIdx, WorkerState};
use super::types::ConnId;
use super::{remove_item, Coordinator};

/// One benchmark run of one worker.
#[derive(Debug, Clone)]
pub(super) struct BenchmarkRun {
    /// Edge of the square matmul.
    pub(super) n: u32,
    /// Seed of its input.
    pub(super) seed: u64,
    /// Size of the committed chunks.
    pub(super) chunk_bytes: u32,
    /// Runs before this one in this measurement.
    pub(super) round: u8,
    /// The coordinator's clock at the offer, µs.
    pub(super) offered_us: u64,
    /// Once committed: the run's time, µs, and the chunks' digests.
    pub(super) commit: Option<(u64, Vec<Digest>)>,
    /// The chunks asked for.
    pub(super) challenge: Vec<u32>,
}

/// Where a worker stands with re-measurement.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Remeasure {
    /// Not due.
    #[default]
    Idle,
    /// Due: no new offers until its running work is done.
    Due,
    /// Its benchmark is running.
    Running,
}

/// A worker's delivered speed since its last check.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Drift {
    /// When its last result came (a task's time runs from its ack or the
    /// previous result, whichever is later: the time between completions
    /// is what the worker's throughput is, whatever its concurrency).
    pub(super) last_done: Millis,
    ops: u64,
    ms: u64,
    tasks: u32,
    /// No checks before this.
    pub(super) quiet_until: Millis,
    pub(super) remeasure: Remeasure,
}

impl Coordinator {
    /// Offers worker `w` a benchmark run of edge `n`.
    pub(super) fn start_benchmark(&mut self, now: Millis, w: WorkerIdx, n: u32, round: u8) {
        let run = BenchmarkRun {
            n,
            seed: self.rng.next_u64(),
            chunk_bytes: bm::chunk_bytes(bm::output_len(n)),
            round,
            offered_us: self.clock_us,
            commit: None,
            challenge: Vec::new(),
        };
        let deadline = now + self.cfg.ack_timeout + self.cfg.exec_timeout_floor.max(Millis::from_secs(60));
        let spec = Arc::new(bm::spec(n));
        let (seed, chunk_bytes) = (run.seed, run.chunk_bytes);
        let Some((aid, conn)) = self.open_assignment(now, w, None, &spec, Kind::Benchmark(Box::new(run)), deadline)
        else {
            return;
        };
        let deadline_ms = deadline.since(now).0;
        let offer = BenchmarkOffer { assignment: aid, kernel: spec, seed, chunk_bytes, deadline_ms };
        self.send(conn, Message::BenchmarkOffer(offer), vec![]);
    }

    /// The largest benchmark edge worker `w` is given: the policy's cap,
    /// what its buffers can hold, the kernel's limit.
    fn max_edge(&self, w: WorkerIdx) -> u32 {
        let p = &self.cfg.profile;
        let alloc = self.worker(w).map_or(0, |x| x.device.max_buffer_bytes.min(x.device.max_storage_binding_bytes));
        let by_memory = u32::try_from((alloc / 4).isqrt()).unwrap_or(u32::MAX);
        p.benchmark_max_size.min(by_memory).min(MAX_DIM).max(p.benchmark_size)
    }

    /// A worker committed to a run's output: the run's time stops here,
    /// and a few chunks are asked for.
    pub(super) fn on_benchmark_commit(&mut self, conn: ConnId, w: WorkerIdx, c: BenchmarkCommit) {
        let aid = c.assignment;
        let run = match self.assignments.get(&aid) {
            Some(a) if a.worker == w => match &a.kind {
                Kind::Benchmark(run) if run.commit.is_none() => (run.n, run.chunk_bytes),
                _ => return self.violation(conn, "a benchmark commit for something else"),
            },
            _ => return self.stale(conn, aid),
        };
        let count = bm::chunk_count(bm::output_len(run.0), run.1);
        if c.chunks.len() != count {
            let why = format!("benchmark commitment of {} chunks, {count} expected", c.chunks.len());
            return self.refuse_worker(conn, w, why);
        }
        let mut challenge: Vec<u32> = Vec::with_capacity(bm::CHALLENGED_CHUNKS);
        if count <= bm::CHALLENGED_CHUNKS {
            challenge.extend(0..count as u32);
        } else {
            while challenge.len() < bm::CHALLENGED_CHUNKS {
                let i = self.rng.below(count as u64) as u32;
                if !challenge.contains(&i) {
                    challenge.push(i);
                }
            }
        }
        let clock = self.clock_us;
        if let Some(Kind::Benchmark(run)) = self.assignments.get_mut(&aid).map(|a| &mut a.kind) {
            run.commit = Some((clock.saturating_sub(run.offered_us), c.chunks));
            run.challenge.clone_from(&challenge);
        }
        self.send(conn, Message::BenchmarkChallenge(BenchmarkChallenge { assignment: aid, chunks: challenge }), vec![]);
    }

    /// A worker revealed the challenged chunks: checked, then the worker
    /// is admitted (or re-classified), measured again larger, or refused.
    pub(super) fn on_benchmark_reveal(
        &mut self,
        now: Millis,
        conn: ConnId,
        w: WorkerIdx,
        aid: AssignmentId,
        chunks: &[Bytes],
    ) {
        let Some(a) = self.assignments.remove(&aid) else { return };
        if !a.in_fifo {
            self.deadlines.remove(&(a.deadline, aid));
        }
        let Some(worker) = self.worker_mut(w) else { return };
        remove_item(&mut worker.live, &aid);
        let load = worker.in_flight.saturating_sub(1);
        self.set_load(w, load);
        let Kind::Benchmark(run) = a.kind else { return };
        let Some(elapsed) = self.check_reveal(&run, chunks) else {
            return self.refuse_worker(conn, w, Refusal::WrongAnswer.to_string());
        };
        let measured = mflops(a.spec.ops(), elapsed);
        let p = &self.cfg.profile;
        let target_us = p.benchmark_target_ms.saturating_mul(1_000);
        let more_rounds = run.round.saturating_add(1) < p.benchmark_rounds;
        match next_benchmark_edge(run.n, elapsed, target_us, self.max_edge(w)) {
            Some(next) if more_rounds => self.start_benchmark(now, w, next, run.round + 1),
            _ => self.admit(now, conn, w, measured),
        }
    }

    /// The run's time if every revealed chunk is the committed one and
    /// agrees with the CPU at elements chosen now.
    fn check_reveal(&mut self, run: &BenchmarkRun, chunks: &[Bytes]) -> Option<u64> {
        let (elapsed, digests) = run.commit.as_ref()?;
        if chunks.len() != run.challenge.len() {
            return None;
        }
        let (n, len) = (run.n as usize, bm::output_len(run.n));
        for (chunk, &i) in chunks.iter().zip(&run.challenge) {
            let range = bm::chunk_range(len, run.chunk_bytes, i as usize);
            if chunk.len() != range.len() || digests.get(i as usize) != Some(&Digest::of(chunk)) {
                return None;
            }
            let elements = range.len() / 4;
            for _ in 0..bm::ELEMENTS_PER_CHUNK.min(elements) {
                let e = self.rng.below(elements as u64) as usize;
                let p = range.start / 4 + e;
                let got = f32::from_le_bytes([chunk[e * 4], chunk[e * 4 + 1], chunk[e * 4 + 2], chunk[e * 4 + 3]]);
                let want = bm::reference(run.n, run.seed, (p / n) as u32, (p % n) as u32);
                if !bm::element_agrees(run.n, got, want) {
                    return None;
                }
            }
        }
        Some(*elapsed)
    }

    fn refuse_worker(&mut self, conn: ConnId, w: WorkerIdx, why: String) {
        let id = self.worker(w).map(|x| x.id.clone());
        self.refuse(conn, id, ErrorCode::Refused, why);
    }

    /// Counts a task result of worker `w` (acknowledged at `acked`, `ops`
    /// of work) towards its drift check; marks it due for measurement when
    /// the speed it delivers is off its measured speed by the policy's
    /// factor.
    pub(super) fn note_delivery(&mut self, now: Millis, w: WorkerIdx, acked: Millis, ops: u64) {
        let p = &self.cfg.profile;
        let (factor, min_ms, window) = (p.drift_factor.max(2), p.drift_min_task_ms, p.drift_window.max(1));
        let Some(worker) = self.worker_mut(w) else { return };
        let WorkerState::Active { mflops, .. } = worker.state else { return };
        let d = &mut worker.drift;
        let start = acked.max(d.last_done);
        d.last_done = now;
        if now < d.quiet_until || d.remeasure != Remeasure::Idle || ops / (mflops.max(1) * 1_000) < min_ms {
            return;
        }
        d.ops = d.ops.saturating_add(ops);
        d.ms = d.ms.saturating_add(now.since(start).0);
        d.tasks += 1;
        if d.tasks < window {
            return;
        }
        let delivered = d.ops / d.ms.max(1) / 1_000;
        (d.ops, d.ms, d.tasks) = (0, 0, 0);
        if delivered.saturating_mul(factor) < mflops || delivered > mflops.saturating_mul(factor) {
            d.remeasure = Remeasure::Due;
            let load = worker.in_flight;
            self.stats.remeasured += 1;
            self.set_load(w, load);
        }
    }

    /// Starts the benchmarks of workers whose re-measurement came due and
    /// whose running work is done (collected by `set_load`).
    pub(super) fn start_remeasurements(&mut self, now: Millis) {
        for w in std::mem::take(&mut self.remeasure_ready) {
            if self.worker(w).is_some_and(|x| x.drift.remeasure == Remeasure::Running) {
                let n = self.cfg.profile.benchmark_size;
                self.start_benchmark(now, w, n, 0);
            }
        }
    }
}
