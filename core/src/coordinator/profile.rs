//! Worker profiles: measured speed, tiers, classes and admission.
//!
//! A worker's speed is never taken from what it says. On join the
//! coordinator sends a benchmark ([`crate::benchmark`]): a square matmul
//! the worker generates from a fresh seed, timed in microseconds on the
//! coordinator's clock from the offer to the worker's commitment to the
//! output, then spot-checked. A run shorter than
//! [`ProfilePolicy::benchmark_target_ms`] is repeated larger (up to
//! [`ProfilePolicy::benchmark_max_size`] and what the worker can
//! allocate), so a fast GPU is timed on work long enough to time. A wrong
//! answer refuses the worker; a right one gives its MFLOPS (cost model ÷
//! measured time). With the memory it can allocate, that decides the tier
//! and admission. A worker whose delivered speed later drifts from it is
//! measured again.

use serde::{Deserialize, Serialize};

use crate::time::Millis;
use crate::wire::message::Backend;

/// Performance tier: 1 low-end, 2 mid-range, 3 high-end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tier {
    /// Integrated GPUs, software renderers, CPUs.
    Low = 1,
    /// Mid-range GPUs.
    Mid = 2,
    /// High-end GPUs.
    High = 3,
}

/// What replicas must share to be compared bit-for-bit under
/// homogeneous redundancy: the backend and the tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkerClass {
    /// Where kernels run.
    pub backend: Backend,
    /// Measured tier.
    pub tier: Tier,
}

/// Thresholds of tiers and admission, in MFLOPS and bytes (integers).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfilePolicy {
    /// Matmul edge of the first benchmark run (n×n×n).
    pub benchmark_size: u32,
    /// Largest edge a benchmark grows to (4096: 137 GFLOP, a 64 MiB
    /// matrix; the worker's allocation limit may stop it earlier).
    pub benchmark_max_size: u32,
    /// A benchmark run shorter than this is repeated larger, ms (long
    /// enough that the round trip and the clock's grain are noise).
    pub benchmark_target_ms: u64,
    /// Most benchmark runs per measurement.
    pub benchmark_rounds: u8,
    /// A worker whose delivered speed (inter-completion time of tasks of
    /// at least `drift_min_task_ms` at its measured speed, over
    /// `drift_window` of them) is off its measured speed by this factor
    /// either way is measured again.
    pub drift_factor: u64,
    /// Tasks shorter than this at the worker's measured speed say nothing
    /// about its compute speed and are not counted, ms.
    pub drift_min_task_ms: u64,
    /// Qualifying tasks per drift check.
    pub drift_window: u32,
    /// After a measurement, drift is not checked for this long (a worker
    /// whose tasks are slowed by something other than its speed, e.g. its
    /// network, is not measured again and again).
    pub drift_quiet: Millis,
    /// Below this a worker is refused.
    pub min_mflops: u64,
    /// Below this allocation a worker is refused.
    pub min_alloc_bytes: u64,
    /// From here a worker is tier 2…
    pub mid_mflops: u64,
    /// …if it can also allocate this much.
    pub mid_alloc_bytes: u64,
    /// From here a worker is tier 3…
    pub high_mflops: u64,
    /// …if it can also allocate this much.
    pub high_alloc_bytes: u64,
}

impl Default for ProfilePolicy {
    fn default() -> Self {
        ProfilePolicy {
            benchmark_size: 128,
            benchmark_max_size: 4096,
            benchmark_target_ms: 250,
            benchmark_rounds: 4,
            drift_factor: 2,
            drift_min_task_ms: 20,
            drift_window: 8,
            drift_quiet: Millis::from_mins(10),
            min_mflops: 50,
            min_alloc_bytes: 16 << 20,
            mid_mflops: 100_000,
            mid_alloc_bytes: 1 << 30,
            high_mflops: 1_000_000,
            high_alloc_bytes: 4 << 30,
        }
    }
}

/// The measured profile of a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Measured speed, MFLOPS (cost model ÷ coordinator-timed duration).
    pub mflops: u64,
    /// Memory the worker can allocate (bounded by its adapter limits).
    pub alloc_bytes: u64,
    /// Tier from the two.
    pub tier: Tier,
}

/// Why a worker was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The benchmark's answer was wrong.
    #[error("benchmark answer is wrong")]
    WrongAnswer,
    /// Too slow.
    #[error("measured {mflops} MFLOPS, the minimum is {min}")]
    TooSlow {
        /// Measured.
        mflops: u64,
        /// Required.
        min: u64,
    },
    /// Too little memory.
    #[error("can allocate {bytes} bytes, the minimum is {min}")]
    TooLittleMemory {
        /// Reported.
        bytes: u64,
        /// Required.
        min: u64,
    },
}

/// MFLOPS of `flops` done in `elapsed_us` microseconds (at least 1 µs is
/// assumed): flops per µs are MFLOPS.
pub fn mflops(flops: u64, elapsed_us: u64) -> u64 {
    flops / elapsed_us.max(1)
}

/// The edge of the next benchmark run after one of edge `n` took
/// `elapsed_us`: the smallest multiple of 64 above `n` predicted (cubic
/// cost) to take `target_us` and a fifth more, at most `max_n`; `None`
/// when the run was long enough or cannot grow.
pub fn next_benchmark_edge(n: u32, elapsed_us: u64, target_us: u64, max_n: u32) -> Option<u32> {
    if elapsed_us >= target_us || n >= max_n {
        return None;
    }
    // Want n'³ · elapsed ≥ n³ · target · 6/5.
    let want = u128::from(n).pow(3) * u128::from(target_us) * 6 / 5;
    let mut next = (n / 64 + 1) * 64;
    while next < max_n && u128::from(next).pow(3) * u128::from(elapsed_us.max(1)) < want {
        next += 64;
    }
    Some(next.min(max_n))
}

/// Tier and admission from a measured speed and an allocation size.
pub fn classify(policy: &ProfilePolicy, mflops: u64, alloc_bytes: u64) -> Result<Profile, Refusal> {
    if mflops < policy.min_mflops {
        return Err(Refusal::TooSlow { mflops, min: policy.min_mflops });
    }
    if alloc_bytes < policy.min_alloc_bytes {
        return Err(Refusal::TooLittleMemory { bytes: alloc_bytes, min: policy.min_alloc_bytes });
    }
    let tier = if mflops >= policy.high_mflops && alloc_bytes >= policy.high_alloc_bytes {
        Tier::High
    } else if mflops >= policy.mid_mflops && alloc_bytes >= policy.mid_alloc_bytes {
        Tier::Mid
    } else {
        Tier::Low
    };
    Ok(Profile { mflops, alloc_bytes, tier })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_and_refusals() {
        let p = ProfilePolicy::default();
        assert_eq!(classify(&p, 10, 1 << 30), Err(Refusal::TooSlow { mflops: 10, min: 50 }));
        assert!(matches!(classify(&p, 500, 1 << 20), Err(Refusal::TooLittleMemory { .. })));
        assert_eq!(classify(&p, 500, 1 << 30).map(|x| x.tier), Ok(Tier::Low));
        assert_eq!(classify(&p, 200_000, 2 << 30).map(|x| x.tier), Ok(Tier::Mid));
        assert_eq!(classify(&p, 200_000, 512 << 20).map(|x| x.tier), Ok(Tier::Low), "fast but small");
        assert_eq!(classify(&p, 5_000_000, 8 << 30).map(|x| x.tier), Ok(Tier::High));
    }

    #[test]
    fn mflops_from_the_coordinator_clock() {
        // 2·128³ = 4 194 304 flops in 2 ms → 2097 MFLOPS.
        assert_eq!(mflops(2 * 128 * 128 * 128, 2_000), 2097);
        assert_eq!(mflops(1_000_000, 0), 1_000_000, "0 µs counts as 1 µs");
    }

    #[test]
    fn benchmarks_grow_to_the_target_within_the_cap() {
        // 128³ in 1 ms; 250 ms wants 128·∛300 ≈ 855 → 896.
        assert_eq!(next_benchmark_edge(128, 1_000, 250_000, 4096), Some(896));
        assert_eq!(next_benchmark_edge(128, 1, 250_000, 4096), Some(4096), "capped");
        assert_eq!(next_benchmark_edge(128, 300_000, 250_000, 4096), None, "long enough");
        assert_eq!(next_benchmark_edge(4096, 1_000, 250_000, 4096), None, "at the cap");
        assert_eq!(next_benchmark_edge(100, 249_000, 250_000, 4096), Some(128), "always grows");
    }
}
