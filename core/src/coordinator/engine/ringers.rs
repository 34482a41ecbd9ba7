//! Spot checks a worker cannot tell from work. A ringer is a task whose
//! answer the coordinator knows; if a cheat could recognise ringers it
//! would answer those honestly and lie elsewhere. So a ringer here is a
//! replay of a real task that was verified recently: the same job id, the
//! same task id, kernel and inputs, offered to a worker that never saw it.
//! To that worker it is exactly a replica of a task of a live job; its
//! answer must equal the verified one. Only bit-exact kernels are replayed
//! (their answer is one digest).
//!
//! A replayed answer must be the truth, not only what a quorum accepted
//! (colluders can agree on a lie, and a lone replica is no proof): before a
//! task joins the pool the coordinator runs its CPU reference and keeps it
//! only if the accepted answer is right. That costs coordinator CPU, so
//! only one verified task in [`SAMPLE_EVERY`] is a candidate, and only one
//! whose kernel costs at most [`MAX_OPS`]. The pool is the most recent such
//! tasks, bounded in count and in input bytes; until one is kept there are
//! no ringers (a synthetic one would be recognisable).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::digest::Digest;
use crate::ids::{JobId, TaskId, WorkerId};
use crate::kernels::KernelSpec;
use crate::rng::SplitMix64;

/// Tasks kept for replay at most.
const MAX_ENTRIES: usize = 64;
/// Input bytes kept for replay at most, all entries together.
const MAX_BYTES: usize = 32 << 20;
/// A task with more input bytes than this is not kept.
const MAX_TASK_BYTES: usize = 4 << 20;
/// One verified bit-exact task in this many is checked for the pool.
pub(super) const SAMPLE_EVERY: u64 = 8;
/// Kernels costing more than this (the cost model's operations) are not
/// checked on the coordinator's CPU, so never replayed.
pub(super) const MAX_OPS: u64 = 64_000_000;

/// A verified task, ready to be replayed.
#[derive(Debug)]
pub(super) struct Ringer {
    pub(super) job: JobId,
    pub(super) task: TaskId,
    pub(super) spec: Arc<KernelSpec>,
    pub(super) inputs: Vec<Bytes>,
    /// Where its shared inputs sit (a replay names them as its task did).
    pub(super) layout: Option<Arc<crate::shared_inputs::SharedLayout>>,
    /// The verified answer's digest.
    pub(super) expected: Digest,
    /// Workers that ran it (a ringer goes only to others).
    pub(super) seen_by: SmallVec<[WorkerId; 4]>,
}

impl Ringer {
    fn bytes(&self) -> usize {
        self.inputs.iter().map(Bytes::len).sum()
    }
}

/// The most recent verified tasks.
#[derive(Debug, Default)]
pub(super) struct RingerPool {
    entries: VecDeque<Ringer>,
    bytes: usize,
    /// Verified bit-exact tasks seen (the sampling clock).
    seen: u64,
}

impl RingerPool {
    /// The true answer's digest of a task just verified, when it is
    /// sampled to become a ringer (bit-exact, small enough to check here,
    /// one in [`SAMPLE_EVERY`]); None otherwise.
    pub(super) fn candidate(&mut self, spec: &KernelSpec, inputs: &[Bytes]) -> Option<Digest> {
        if !matches!(spec.comparator(), crate::kernels::Comparator::Exact) || spec.ops() > MAX_OPS {
            return None;
        }
        if inputs.iter().map(Bytes::len).sum::<usize>() > MAX_TASK_BYTES {
            return None;
        }
        self.seen += 1;
        if self.seen % SAMPLE_EVERY != 1 {
            return None;
        }
        let refs: Vec<&[u8]> = inputs.iter().map(|b| &b[..]).collect();
        let truth = spec.run_cpu(&refs).ok()?;
        Some(Digest::of_parts(truth.iter().map(Vec::as_slice)))
    }

    /// Keeps a verified task for replay (the oldest go first past the caps).
    pub(super) fn keep(&mut self, r: Ringer) {
        let size = r.bytes();
        if size > MAX_TASK_BYTES {
            return;
        }
        self.bytes += size;
        self.entries.push_back(r);
        while self.entries.len() > MAX_ENTRIES || self.bytes > MAX_BYTES {
            match self.entries.pop_front() {
                Some(old) => self.bytes -= old.bytes(),
                None => break,
            }
        }
    }

    /// A ringer `worker` never ran, chosen at random (None: no such task).
    pub(super) fn pick(&self, rng: &mut SplitMix64, worker: &WorkerId) -> Option<&Ringer> {
        let n = self.entries.len();
        if n == 0 {
            return None;
        }
        let start = rng.below(n as u64) as usize;
        (0..n).map(|i| &self.entries[(start + i) % n]).find(|r| !r.seen_by.contains(worker))
    }

    /// Tasks kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Sha256Params;

    fn ringer(n: u8, bytes: usize, seen: &str) -> Ringer {
        Ringer {
            job: JobId::from_bytes([n; 16]),
            task: TaskId::from_bytes([n; 16]),
            spec: Arc::new(KernelSpec::Sha256(Sha256Params { count: 1, message_len: 16 })),
            inputs: vec![Bytes::from(vec![n; bytes])],
            layout: None,
            expected: Digest::of(&[n]),
            seen_by: [WorkerId::new(seen).expect("id")].into_iter().collect(),
        }
    }

    #[test]
    fn the_pool_is_bounded_and_never_replays_to_a_worker_that_ran_the_task() {
        let mut pool = RingerPool::default();
        let mut rng = SplitMix64::new(1);
        let me = WorkerId::new("me").expect("id");
        assert!(pool.pick(&mut rng, &me).is_none(), "no verified task yet: no ringer");
        pool.keep(ringer(1, 16, "me"));
        assert!(pool.pick(&mut rng, &me).is_none(), "the only task is one it ran");
        pool.keep(ringer(2, 16, "other"));
        for _ in 0..20 {
            assert_eq!(pool.pick(&mut rng, &me).map(|r| r.job), Some(JobId::from_bytes([2; 16])));
        }
        for n in 0..100 {
            pool.keep(ringer(n, 16, "other"));
        }
        assert_eq!(pool.len(), MAX_ENTRIES);
        pool.keep(ringer(7, MAX_TASK_BYTES + 1, "other"));
        assert_eq!(pool.len(), MAX_ENTRIES, "too big to keep");
        for n in 0..10 {
            pool.keep(ringer(n, MAX_TASK_BYTES, "other"));
        }
        assert!(pool.bytes <= MAX_BYTES && pool.len() == MAX_BYTES / MAX_TASK_BYTES, "{}", pool.len());
    }
}
