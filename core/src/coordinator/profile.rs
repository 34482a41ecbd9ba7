//! Worker profiles: measured speed, tiers, classes and admission.
//!
//! A worker's speed is never taken from what it says. On join the
//! coordinator sends a benchmark task — a matmul whose inputs come from a
//! fresh seed and whose answer the coordinator computed — and times it on
//! its own clock. A wrong answer refuses the worker; a right one gives its
//! GFLOPS (cost model ÷ measured time). With the memory it can allocate,
//! that decides the tier and admission.

use serde::{Deserialize, Serialize};

use crate::kernels::{KernelSpec, MatmulParams};
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
    /// Matmul edge of the benchmark task (n×n×n).
    pub benchmark_size: u32,
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
            min_mflops: 50,
            min_alloc_bytes: 16 << 20,
            mid_mflops: 100_000,
            mid_alloc_bytes: 1 << 30,
            high_mflops: 1_000_000,
            high_alloc_bytes: 4 << 30,
        }
    }
}

/// The benchmark a joining worker must run.
pub fn benchmark_spec(policy: &ProfilePolicy) -> KernelSpec {
    KernelSpec::MatmulF32(MatmulParams::square(policy.benchmark_size.max(1)))
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

/// MFLOPS of `flops` done in `elapsed` (at least 1 ms is assumed).
pub fn mflops(flops: u64, elapsed: Millis) -> u64 {
    // flops / (ms · 1000) = MFLOPS
    flops / elapsed.0.max(1) / 1_000
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
        assert_eq!(mflops(2 * 128 * 128 * 128, Millis(2)), 2097);
        assert_eq!(mflops(1_000_000, Millis(0)), 1_000, "0 ms counts as 1 ms");
    }
}
