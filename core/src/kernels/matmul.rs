//! `matmul_f32`: C = A × B for row-major f32 matrices (A m×k, B k×n).
//! Floating point: replicas agree within a tolerance that grows with k.

use serde::{Deserialize, Serialize};

use super::{check_buffer, invalid, Checkpoint, Comparator, KernelError, KernelId, Program};

/// The tiled program: the shared body over f32 (`matmul_f16` uses it over f16).
pub(super) const WGSL: &str = concat!(
    "// Shoal kernel `matmul_f32`: f32 in, f32 sums.\nalias Elem = f32;\n\n",
    include_str!("wgsl/matmul_tiled.wgsl")
);
/// The streamed program (n and k multiples of 4; no workgroup memory).
const STREAMED_WGSL: &str = concat!(
    "// Shoal kernel `matmul_f32`: f32 in, f32 sums.\nalias Elem = f32;\n\n",
    include_str!("wgsl/matmul_streamed.wgsl")
);

/// Largest dimension accepted.
pub const MAX_DIM: u32 = 16_384;
/// Edge of the block of C one workgroup of the shader computes (16×16
/// invocations of 4×4 outputs each).
pub const GROUP_BLOCK: u32 = 64;

/// Rows of C one workgroup of the streamed program computes.
const STREAMED_ROWS: u32 = 16;
/// Columns of C one workgroup of the streamed program computes (16
/// invocations of four vec4s).
const STREAMED_COLS: u32 = 256;

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
        [self.n.div_ceil(GROUP_BLOCK), self.m.div_ceil(GROUP_BLOCK), 1]
    }

    /// The tiled program (every shape), then the streamed one where n and
    /// k are multiples of 4 (it reads vec4s along both).
    pub(super) fn programs(&self) -> Vec<Program<'static>> {
        self.programs_of(WGSL, STREAMED_WGSL)
    }

    /// `tiled` and, where it applies, `streamed`, from their sources (the
    /// f32 and f16 kernels share both layouts).
    pub(super) fn programs_of(&self, tiled: &'static str, streamed: &'static str) -> Vec<Program<'static>> {
        let tiled = Program { name: "tiled", wgsl: tiled, entry_point: "main", workgroups: self.dispatch() };
        if !self.n.is_multiple_of(4) || !self.k.is_multiple_of(4) {
            return vec![tiled];
        }
        let streamed = Program {
            name: "streamed",
            wgsl: streamed,
            entry_point: "main",
            workgroups: [self.n.div_ceil(STREAMED_COLS), self.m.div_ceil(STREAMED_ROWS), 1],
        };
        vec![tiled, streamed]
    }

    /// Relative 1e-4, absolute k·2⁻¹⁸: summation order and fused
    /// multiply-adds differ between devices, and the rounding error of a
    /// k-term dot product of values in [-1, 1) grows with k.
    pub(super) fn comparator(&self) -> Comparator {
        Comparator::Tolerance { rel: 1e-4, abs: self.k as f32 / 262_144.0 }
    }

    /// C on the CPU. Every element sums its k products in ascending k from
    /// 0.0, as the shader does, so the result does not depend on the path.
    pub(super) fn run_cpu(&self, a: &[u8], b: &[u8], cp: &mut Checkpoint<'_>) -> Result<Vec<u8>, KernelError> {
        let (m, n, k) = (self.m as usize, self.n as usize, self.k as usize);
        let b = f32s(b);
        let mut c = vec![0f32; m * n];
        if n < NARROW {
            narrow(a, &b, k, n, &mut c, cp)?;
        } else {
            let a = f32s(a);
            // i-k-j order: rows of b are read contiguously and the j loop
            // vectorises (its elements are independent).
            for i in 0..m {
                let row = &mut c[i * n..(i + 1) * n];
                for kk in 0..k {
                    let aik = a[i * k + kk];
                    let brow = &b[kk * n..(kk + 1) * n];
                    for (cj, bj) in row.iter_mut().zip(brow) {
                        *cj += aik * bj;
                    }
                }
                cp.work((k * n) as u64)?;
            }
        }
        Ok(c.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}

/// Below this many columns of B, [`narrow`] runs instead of the i-k-j
/// loop (whose inner loop would be a few elements long).
const NARROW: usize = 8;
/// Rows of A a [`narrow`] block works on together.
const BLOCK: usize = 8;

/// C = A × B for a narrow B (matrix-vector products and the like): A is
/// read straight from its bytes, [`BLOCK`] rows at a time, transposed so
/// that the rows' sums advance side by side (independent additions the
/// CPU overlaps or vectorises; each sum keeps its own ascending order).
fn narrow(a: &[u8], b: &[f32], k: usize, n: usize, c: &mut [f32], cp: &mut Checkpoint<'_>) -> Result<(), KernelError> {
    let mut t = vec![[0f32; BLOCK]; k];
    for (cblock, ablock) in c.chunks_mut(BLOCK * n).zip(a.chunks(4 * k * BLOCK)) {
        for (r, row) in ablock.chunks_exact(4 * k).enumerate() {
            for (tk, w) in t.iter_mut().zip(row.chunks_exact(4)) {
                tk[r] = f32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            }
        }
        let rows = cblock.len() / n;
        for j in 0..n {
            let mut acc = [0f32; BLOCK];
            for (tk, bk) in t.iter().zip(b.iter().skip(j).step_by(n)) {
                for (s, x) in acc.iter_mut().zip(tk) {
                    *s += x * bk;
                }
            }
            for (r, s) in acc.iter().take(rows).enumerate() {
                cblock[r * n + j] = *s;
            }
        }
        cp.work((BLOCK * k * n) as u64)?;
    }
    Ok(())
}

/// Little-endian f32s of `bytes` (length a multiple of 4).
pub(super) fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::KernelSpec;
    use crate::rng::SplitMix64;

    /// The definition, term by term.
    fn reference(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f32;
                for kk in 0..k {
                    s += a[i * k + kk] * b[kk * n + j];
                }
                c[i * n + j] = s;
            }
        }
        c
    }

    #[test]
    fn every_path_sums_in_the_shaders_order_bit_for_bit() {
        let mut rng = SplitMix64::new(3);
        for (m, n, k) in
            [(1, 1, 1), (7, 1, 5), (8, 1, 64), (33, 1, 17), (20, 3, 9), (9, 7, 31), (17, 8, 12), (5, 19, 4)]
        {
            let a: Vec<f32> = (0..m * k).map(|_| rng.unit_f32()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.unit_f32()).collect();
            let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
            let p = MatmulParams { m: m as u32, n: n as u32, k: k as u32 };
            let spec = KernelSpec::MatmulF32(p);
            let got = f32s(&spec.run_cpu(&[&bytes(&a), &bytes(&b)]).expect("runs")[0]);
            let want = reference(&a, &b, m, n, k);
            assert_eq!(
                got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "{m}×{n}×{k}"
            );
        }
    }
}
