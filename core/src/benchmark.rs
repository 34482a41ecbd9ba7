//! The admission benchmark's arithmetic, shared by both ends.
//!
//! A worker's speed is measured with a square matmul `C = A·A` whose `A`
//! the worker generates itself from a seed the coordinator picked (so a
//! benchmark large enough to keep an H100 busy costs the network nothing),
//! timed by the coordinator from its offer to the worker's *commitment*:
//! the BLAKE3 digests of `C` cut into chunks. The coordinator then names a
//! few chunks at random; the worker reveals them, each must match its
//! digest, and a few elements of each, again chosen by the coordinator
//! after the reveal, must match the CPU's answer. A worker that computed
//! only a fraction `f` of `C` passes with probability at most
//! `f^CHALLENGED_CHUNKS`, and the coordinator spends microseconds per
//! admission, not the seconds a whole reference product would take.
//!
//! `A`'s element `p` (row-major) is the `p`-th draw of [`SplitMix64`] from
//! the seed, and SplitMix64 can jump to any draw, so the coordinator
//! generates only the row and the column an element needs.

use bytes::Bytes;

use crate::digest::Digest;
use crate::ids::AssignmentId;
use crate::kernels::{KernelSpec, MatmulParams};
use crate::rng::SplitMix64;
use crate::wire::message::{BenchmarkChallenge, BenchmarkCommit, BenchmarkOffer};
use crate::wire::{Envelope, Message};

/// Most chunks a commitment may list (128 KiB of digests).
pub const MAX_CHUNKS: usize = 4096;
/// Smallest chunk: revealing a few costs little, hashing them less.
pub const MIN_CHUNK_BYTES: u32 = 64 << 10;
/// Chunks the coordinator asks to see.
pub const CHALLENGED_CHUNKS: usize = 8;
/// Elements checked against the CPU in each revealed chunk.
pub const ELEMENTS_PER_CHUNK: usize = 4;

/// SplitMix64's increment: draw `p` of a generator seeded with `s` is the
/// first draw of one seeded with `s + p·GAMMA`.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The benchmark kernel of edge `n`.
pub fn spec(n: u32) -> KernelSpec {
    KernelSpec::MatmulF32(MatmulParams::square(n.max(1)))
}

/// The edge of a benchmark kernel, `None` for anything that is not a
/// square matmul (a worker refuses such an offer).
pub fn edge(kernel: &KernelSpec) -> Option<u32> {
    match kernel {
        KernelSpec::MatmulF32(p) if p.m == p.n && p.n == p.k => Some(p.n),
        _ => None,
    }
}

/// Bytes of the benchmark's output at edge `n`.
pub fn output_len(n: u32) -> u64 {
    u64::from(n) * u64::from(n) * 4
}

/// The chunk size for an output of `len` bytes: at least
/// [`MIN_CHUNK_BYTES`], large enough that there are at most
/// [`MAX_CHUNKS`], a whole number of `f32`s.
pub fn chunk_bytes(len: u64) -> u32 {
    let per = len.div_ceil(MAX_CHUNKS as u64).next_multiple_of(4);
    u32::try_from(per).unwrap_or(u32::MAX).max(MIN_CHUNK_BYTES)
}

/// How many chunks of `chunk` bytes an output of `len` bytes has.
pub fn chunk_count(len: u64, chunk: u32) -> usize {
    len.div_ceil(u64::from(chunk.max(1))) as usize
}

/// The byte range of chunk `index` in an output of `len` bytes.
pub fn chunk_range(len: u64, chunk: u32, index: usize) -> core::ops::Range<usize> {
    let start = (index as u64).saturating_mul(u64::from(chunk)).min(len);
    let end = start.saturating_add(u64::from(chunk)).min(len);
    start as usize..end as usize
}

/// The commitment: one digest per chunk of `output`.
pub fn chunk_digests(output: &[u8], chunk: u32) -> Vec<Digest> {
    output.chunks(chunk.max(1) as usize).map(Digest::of).collect()
}

/// `A` for edge `n` and `seed`, given twice (the kernel's `A` and `B`
/// share one buffer's bytes: generating it is the worker's cost, not
/// part of what the benchmark measures, so it is generated once).
pub fn inputs(n: u32, seed: u64) -> Vec<Bytes> {
    let mut rng = SplitMix64::new(seed);
    let count = (n as usize) * (n as usize);
    let mut a = Vec::with_capacity(count * 4);
    for _ in 0..count {
        a.extend_from_slice(&rng.unit_f32().to_le_bytes());
    }
    let a = Bytes::from(a);
    vec![a.clone(), a]
}

/// Element `p` (row-major) of `A`.
fn element_of_a(seed: u64, p: u64) -> f32 {
    SplitMix64::new(seed.wrapping_add(p.wrapping_mul(GAMMA))).unit_f32()
}

/// `C[i][j]` as the CPU reference computes it: the `n` products summed in
/// ascending order from 0.0 in `f32`, as the kernel does.
pub fn reference(n: u32, seed: u64, i: u32, j: u32) -> f32 {
    let n64 = u64::from(n);
    let mut sum = 0f32;
    for k in 0..n64 {
        sum += element_of_a(seed, u64::from(i) * n64 + k) * element_of_a(seed, k * n64 + u64::from(j));
    }
    sum
}

/// Whether the revealed element `got` is the reference's within the
/// matmul comparator's tolerance at edge `n`.
pub fn element_agrees(n: u32, got: f32, want: f32) -> bool {
    let crate::kernels::Comparator::Tolerance { rel, abs } = spec(n).comparator() else {
        return got.to_bits() == want.to_bits();
    };
    if got.is_nan() || want.is_nan() {
        return false;
    }
    (got - want).abs() <= abs + rel * got.abs().max(want.abs())
}

/// A benchmark answered on the CPU by a client that speaks the protocol
/// without a [`crate::worker::WorkerSession`] (simulations, test clients):
/// the output, the commitment to send, the reveal once challenged.
#[derive(Clone, Debug)]
pub struct CpuAnswer {
    assignment: AssignmentId,
    chunk_bytes: u32,
    output: Bytes,
}

impl CpuAnswer {
    /// Runs `offer` on the CPU; `None` when it is not a benchmark a worker
    /// would run.
    pub fn run(offer: &BenchmarkOffer) -> Option<CpuAnswer> {
        let n = edge(&offer.kernel)?;
        let a = inputs(n, offer.seed);
        let refs: Vec<&[u8]> = a.iter().map(|b| &b[..]).collect();
        let output = Bytes::from(offer.kernel.run_cpu(&refs).ok()?.into_iter().next()?);
        Some(CpuAnswer { assignment: offer.assignment, chunk_bytes: offer.chunk_bytes, output })
    }

    /// The output.
    pub fn output(&self) -> &Bytes {
        &self.output
    }

    /// Replaces the output (a test's or a simulation's liar).
    pub fn set_output(&mut self, output: Vec<u8>) {
        self.output = Bytes::from(output);
    }

    /// The commitment to the output.
    pub fn commit(&self) -> Envelope {
        let chunks = chunk_digests(&self.output, self.chunk_bytes);
        Envelope::bare(Message::BenchmarkCommit(BenchmarkCommit { assignment: self.assignment, chunks }))
    }

    /// The challenged chunks.
    pub fn reveal(&self, challenge: &BenchmarkChallenge) -> Envelope {
        let len = self.output.len() as u64;
        let chunks = challenge
            .chunks
            .iter()
            .map(|&i| self.output.slice(chunk_range(len, self.chunk_bytes, i as usize)))
            .collect();
        Envelope::task_result(self.assignment, chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_jump_to_the_draws_the_worker_generates() {
        let (n, seed) = (24u32, 99u64);
        let a = inputs(n, seed);
        let refs: Vec<&[u8]> = a.iter().map(|b| &b[..]).collect();
        let c = spec(n).run_cpu(&refs).expect("runs").remove(0);
        for (i, j) in [(0, 0), (3, 17), (23, 23), (11, 0)] {
            let at = ((i * n + j) * 4) as usize;
            let got = f32::from_le_bytes([c[at], c[at + 1], c[at + 2], c[at + 3]]);
            assert_eq!(got.to_bits(), reference(n, seed, i, j).to_bits(), "C[{i}][{j}]");
        }
    }

    #[test]
    fn chunks_cover_the_output_within_the_caps() {
        for n in [1u32, 16, 128, 1000, 4096, 16_384] {
            let len = output_len(n);
            let chunk = chunk_bytes(len);
            let count = chunk_count(len, chunk);
            assert!(count <= MAX_CHUNKS && chunk.is_multiple_of(4) && chunk >= MIN_CHUNK_BYTES, "n {n}");
            assert_eq!(chunk_range(len, chunk, count - 1).end as u64, len);
            assert!(chunk_range(len, chunk, count).is_empty());
        }
    }
}
