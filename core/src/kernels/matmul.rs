//! `matmul_f32`: C = A × B for row-major f32 matrices (A m×k, B k×n).
//! Floating point: replicas agree within a tolerance that grows with k.

use serde::{Deserialize, Serialize};

use super::{check_buffer, invalid, Comparator, KernelError, KernelId};

pub(super) const WGSL: &str = include_str!("wgsl/matmul_f32.wgsl");

/// Largest dimension accepted.
pub const MAX_DIM: u32 = 16_384;
/// Workgroup tile edge of the shader.
pub const TILE: u32 = 16;

/// Parameters of a `matmul_f32` task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatmulParams {
    /// Rows of A and C.
    pub m: u32,
    /// Columns of B and C.
    pub n: u32,
    /// Columns of A, rows of B.
    pub k: u32,
}

impl MatmulParams {
    /// A square n×n×n multiply.
    pub fn square(n: u32) -> Self {
        MatmulParams { m: n, n, k: n }
    }

    pub(super) fn a_len(&self) -> u64 {
        u64::from(self.m) * u64::from(self.k) * 4
    }

    pub(super) fn b_len(&self) -> u64 {
        u64::from(self.k) * u64::from(self.n) * 4
    }

    pub(super) fn c_len(&self) -> u64 {
        u64::from(self.m) * u64::from(self.n) * 4
    }

    pub(super) fn validate(&self) -> Result<(), KernelError> {
        for (name, v) in [("m", self.m), ("n", self.n), ("k", self.k)] {
            if v == 0 || v > MAX_DIM {
                return Err(invalid(KernelId::MatmulF32, name, format!("must be in 1..={MAX_DIM}")));
            }
        }
        check_buffer(KernelId::MatmulF32, "a", self.a_len())?;
        check_buffer(KernelId::MatmulF32, "b", self.b_len())?;
        check_buffer(KernelId::MatmulF32, "c", self.c_len())
    }

    /// 2·m·n·k floating-point operations.
    pub fn flops(&self) -> u64 {
        2 * u64::from(self.m) * u64::from(self.n) * u64::from(self.k)
    }

    pub(super) fn dispatch(&self) -> [u32; 3] {
        [self.n.div_ceil(TILE), self.m.div_ceil(TILE), 1]
    }

    /// Relative 1e-4, absolute k·2⁻¹⁸: summation order and fused
    /// multiply-adds differ between devices, and the rounding error of a
    /// k-term dot product of values in [-1, 1) grows with k.
    pub(super) fn comparator(&self) -> Comparator {
        Comparator::Tolerance { rel: 1e-4, abs: self.k as f32 / 262_144.0 }
    }

    pub(super) fn run_cpu(&self, a: &[u8], b: &[u8]) -> Vec<u8> {
        let (m, n, k) = (self.m as usize, self.n as usize, self.k as usize);
        let a = f32s(a);
        let b = f32s(b);
        let mut c = vec![0f32; m * n];
        // i-k-j order: each c element still sums its k terms in ascending
        // k, as the shader does, while rows of b are read contiguously.
        for i in 0..m {
            let row = &mut c[i * n..(i + 1) * n];
            for kk in 0..k {
                let aik = a[i * k + kk];
                let brow = &b[kk * n..(kk + 1) * n];
                for (cj, bj) in row.iter_mut().zip(brow) {
                    *cj += aik * bj;
                }
            }
        }
        c.iter().flat_map(|v| v.to_le_bytes()).collect()
    }
}

/// Little-endian f32s of `bytes` (length a multiple of 4).
pub(super) fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}
