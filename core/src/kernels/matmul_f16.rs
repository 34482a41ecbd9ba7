//! `matmul_f16`: C = A × B with A and B in f16 and the arithmetic in f16
//! (each product added to its element's sum and rounded to f16, in
//! ascending k), C written as f32 (exactly its f16 values). For devices
//! with `shader-f16`, which run f16 arithmetic at up to twice the f32 rate
//! on half the bytes. Results depend on f16 rounding (a fused or a separate
//! multiply-add), so replicas agree within a tolerance that grows with k
//! and are compared within one device class, as `matmul_f32`'s are.

use half::f16;

use super::{check_buffer, invalid, Checkpoint, Comparator, KernelError, KernelId, MatmulParams, Program};

/// What both programs are preceded by: f16 in, f16 arithmetic (C is still
/// written as f32); needs `shader-f16`.
macro_rules! f16_header {
    () => {
        "// Shoal kernel `matmul_f16`: f16 in, f16 sums, C as f32.\nenable f16;\nalias Elem = f16;\n\n"
    };
}

/// The tiled program: `matmul_f32`'s body over f16.
pub(super) const WGSL: &str = concat!(f16_header!(), include_str!("wgsl/matmul_tiled.wgsl"));
/// The streamed program (n and k multiples of 4).
const STREAMED_WGSL: &str = concat!(f16_header!(), include_str!("wgsl/matmul_streamed.wgsl"));

impl MatmulParams {
    /// Bytes of A, B (f16) and C (f32) of an f16 multiply.
    pub(super) fn f16_lens(&self) -> [u64; 3] {
        let (m, n, k) = (u64::from(self.m), u64::from(self.n), u64::from(self.k));
        [m * k * 2, k * n * 2, m * n * 4]
    }

    pub(super) fn validate_f16(&self) -> Result<(), KernelError> {
        let id = KernelId::MatmulF16;
        for (name, v) in [("m", self.m), ("n", self.n), ("k", self.k)] {
            if v == 0 || v > super::matmul::MAX_DIM {
                return Err(invalid(id, name, format!("must be in 1..={}", super::matmul::MAX_DIM)));
            }
        }
        let [a, b, c] = self.f16_lens();
        check_buffer(id, "a", a)?;
        check_buffer(id, "b", b)?;
        check_buffer(id, "c", c)
    }

    /// The f16 programs: `matmul_f32`'s tiled and streamed layouts in f16.
    pub(super) fn f16_programs(&self) -> Vec<Program<'static>> {
        self.programs_of(WGSL, STREAMED_WGSL)
    }

    /// Relative 1e-2, absolute k·2⁻¹⁰: a k-term f16 sum of products in
    /// [-1, 1) rounds at every step (unit roundoff 2⁻¹¹), and devices may
    /// or may not fuse the multiply-add.
    pub(super) fn f16_comparator(&self) -> Comparator {
        Comparator::Tolerance { rel: 1e-2, abs: self.k as f32 / 1024.0 }
    }

    /// C on the CPU: every element's sum starts at 0 and takes each product
    /// in ascending k, rounded to f16 once per step (a fused multiply-add:
    /// the product of two f16 values is exact in f32).
    pub(super) fn run_cpu_f16(&self, a: &[u8], b: &[u8], cp: &mut Checkpoint<'_>) -> Result<Vec<u8>, KernelError> {
        let (m, n, k) = (self.m as usize, self.n as usize, self.k as usize);
        let a = halves(a);
        let b = halves(b);
        let mut c = Vec::with_capacity(m * n * 4);
        for i in 0..m {
            let row = &a[i * k..(i + 1) * k];
            for j in 0..n {
                let mut acc = f16::ZERO;
                for (kk, x) in row.iter().enumerate() {
                    acc = f16::from_f32(acc.to_f32() + x * b[kk * n + j]);
                }
                c.extend_from_slice(&acc.to_f32().to_le_bytes());
            }
            cp.work((k * n) as u64)?;
        }
        Ok(c)
    }
}

/// Little-endian f16s of `bytes`, widened to f32 (exactly).
fn halves(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
}

/// `v` as little-endian f16 bytes (round to nearest even).
pub fn f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| f16::from_f32(*x).to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::KernelSpec;

    fn run(m: u32, n: u32, k: u32, a: &[f32], b: &[f32]) -> Vec<f32> {
        let spec = KernelSpec::MatmulF16(MatmulParams { m, n, k });
        let out = spec.run_cpu(&[&f16_bytes(a), &f16_bytes(b)]).expect("runs");
        out[0].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    }

    #[test]
    fn sums_round_to_f16_at_every_step() {
        // [1 2] × [3 4]ᵀ = 11, exact in f16.
        assert_eq!(run(1, 1, 2, &[1.0, 2.0], &[3.0, 4.0]), [11.0]);
        // 2048 + 1 rounds back to 2048 in f16 (its ulp there is 2), twice:
        // an f32 sum would be 2050.
        assert_eq!(run(1, 1, 3, &[1.0, 1.0, 1.0], &[2048.0, 1.0, 1.0]), [2048.0]);
    }

    #[test]
    fn sizes_and_tolerance_follow_the_shape() {
        let p = MatmulParams { m: 3, n: 5, k: 7 };
        assert_eq!(p.f16_lens(), [3 * 7 * 2, 7 * 5 * 2, 3 * 5 * 4]);
        let spec = KernelSpec::MatmulF16(p);
        assert_eq!(spec.input_lens(), [42, 70]);
        assert_eq!(spec.output_lens(), [60]);
        assert_eq!(spec.comparator(), Comparator::Tolerance { rel: 1e-2, abs: 7.0 / 1024.0 });
        assert!(KernelSpec::MatmulF16(MatmulParams { m: 0, n: 1, k: 1 }).validate().is_err());
        let inputs = spec.seeded_inputs(1);
        assert_eq!(inputs.iter().map(Vec::len).collect::<Vec<_>>(), [42, 70]);
    }
}
