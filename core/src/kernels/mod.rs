//! The catalogue of compute kernels a task can name.
//!
//! Each kernel has its WGSL source (run by `shoal-compute` on a GPU, native
//! or browser), its buffer layout, its dispatch size, its cost model, the
//! comparator that decides whether two replicas agree, and — except for
//! user-supplied `custom` kernels — a pure-Rust CPU reference that is the
//! ground truth in tests and the engine of CPU-only workers.
//!
//! Binding convention for built-in kernels: binding 0 is a uniform buffer
//! with the kernel's parameters ([`KernelSpec::params_bytes`]), then the
//! inputs in order, then the outputs in order (see [`KernelSpec::layout`]).

pub mod custom;
pub mod mandelbrot;
pub mod matmul;
pub mod matmul_f16;
pub mod sha256;

pub use custom::{
    CustomBinding, CustomKernel, CustomRole, MAX_CUSTOM_BINDINGS, MAX_CUSTOM_OPS, MAX_CUSTOM_WORKGROUPS, MAX_WGSL_LEN,
    MIN_OPS_PER_WORKGROUP,
};
pub use mandelbrot::{fixed_from_f64, fixed_mul, MandelbrotParams, FRAC_BITS};
pub use matmul::MatmulParams;
pub use sha256::Sha256Params;

use core::fmt;
use serde::{Deserialize, Serialize};

use crate::rng::SplitMix64;

/// The largest buffer a built-in kernel may need: WebGPU's default
/// `maxStorageBufferBindingSize` (128 MiB), so every browser can run it.
pub const MAX_KERNEL_BUFFER: u64 = 128 * 1024 * 1024;
/// WebGPU's default limit on workgroups per dispatch dimension.
pub const MAX_WORKGROUPS_PER_DIM: u32 = 65_535;

/// The name of a kernel (what a worker lists as supported).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum KernelId {
    /// Batch SHA-256.
    Sha256,
    /// f32 matrix multiply.
    MatmulF32,
    /// Mandelbrot tile (fixed point).
    Mandelbrot,
    /// User WGSL.
    Custom,
    /// f16 matrix multiply (devices with `shader-f16`).
    MatmulF16,
}

impl KernelId {
    /// Every kernel.
    pub const ALL: [KernelId; 5] =
        [KernelId::Sha256, KernelId::MatmulF32, KernelId::Mandelbrot, KernelId::Custom, KernelId::MatmulF16];

    /// The catalogue name.
    pub fn as_str(self) -> &'static str {
        match self {
            KernelId::Sha256 => "sha256",
            KernelId::MatmulF32 => "matmul_f32",
            KernelId::Mandelbrot => "mandelbrot",
            KernelId::Custom => "custom",
            KernelId::MatmulF16 => "matmul_f16",
        }
    }
}

impl fmt::Display for KernelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Units of work (Mandelbrot iterations, SHA-256 bytes, matmul
/// multiply-adds) a CPU kernel does between two questions to its stop
/// condition: a few milliseconds, so a run is abandoned promptly at a
/// deadline or a cancel, and asking costs nothing measurable.
pub const CPU_CHECK_EVERY: u64 = 1 << 22;

/// Where a CPU kernel asks whether to give up: counts work and calls the
/// host's stop condition every [`CPU_CHECK_EVERY`] units.
pub(crate) struct Checkpoint<'a> {
    since: u64,
    stop: &'a mut dyn FnMut() -> bool,
}

impl Checkpoint<'_> {
    /// Records `units` of work done; `Err(Abandoned)` once the stop
    /// condition says so.
    pub(crate) fn work(&mut self, units: u64) -> Result<(), KernelError> {
        self.since += units;
        if self.since >= CPU_CHECK_EVERY {
            self.since = 0;
            if (self.stop)() {
                return Err(KernelError::Abandoned);
            }
        }
        Ok(())
    }
}

/// What can be wrong with a kernel spec or its inputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// A parameter is out of range.
    #[error("{kernel}: {param} {reason}")]
    InvalidParam {
        /// Which kernel.
        kernel: KernelId,
        /// Which parameter.
        param: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A buffer would exceed [`MAX_KERNEL_BUFFER`].
    #[error("{kernel}: {buffer} needs {bytes} bytes, the limit is {MAX_KERNEL_BUFFER}")]
    BufferTooLarge {
        /// Which kernel.
        kernel: KernelId,
        /// Which buffer.
        buffer: &'static str,
        /// Its size.
        bytes: u64,
    },
    /// The number of inputs differs from the kernel's.
    #[error("{kernel}: expected {expected} inputs, got {got}")]
    InputCount {
        /// Which kernel.
        kernel: KernelId,
        /// Expected count.
        expected: usize,
        /// Received count.
        got: usize,
    },
    /// An input's length differs from what the parameters imply.
    #[error("{kernel}: input {index} is {got} bytes, expected {expected}")]
    InputLength {
        /// Which kernel.
        kernel: KernelId,
        /// Which input.
        index: usize,
        /// Expected length.
        expected: u64,
        /// Received length.
        got: u64,
    },
    /// User WGSL has no CPU reference.
    #[error("custom kernels have no CPU reference; they need a GPU worker")]
    NoCpuReference,
    /// A CPU run was given up at its host's request (a deadline or a cancel).
    #[error("abandoned before it finished (deadline or cancel)")]
    Abandoned,
}

/// Decides whether two replicas' outputs agree.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Comparator {
    /// Bit-exact: equal digests of the output bytes.
    Exact,
    /// Outputs are little-endian f32 arrays that agree element-wise when
    /// `|a − b| ≤ abs + rel · max(|a|, |b|)`; NaN agrees only with NaN and
    /// an infinity only with the same infinity.
    Tolerance {
        /// Relative tolerance.
        rel: f32,
        /// Absolute tolerance.
        abs: f32,
    },
}

impl Comparator {
    /// Whether outputs `a` and `b` (lists of output buffers) agree.
    pub fn agree(&self, a: &[&[u8]], b: &[&[u8]]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        match *self {
            Comparator::Exact => a.iter().zip(b).all(|(x, y)| x == y),
            Comparator::Tolerance { rel, abs } => a.iter().zip(b).all(|(x, y)| f32_close(x, y, rel, abs)),
        }
    }

    /// Checks the comparator's own values (tolerances finite, ≥ 0).
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            Comparator::Exact => Ok(()),
            Comparator::Tolerance { rel, abs } => {
                if rel.is_finite() && abs.is_finite() && rel >= 0.0 && abs >= 0.0 {
                    Ok(())
                } else {
                    Err(format!("tolerances must be finite and non-negative (rel {rel}, abs {abs})"))
                }
            }
        }
    }
}

fn f32_close(x: &[u8], y: &[u8], rel: f32, abs: f32) -> bool {
    if x.len() != y.len() || !x.len().is_multiple_of(4) {
        return false;
    }
    x.chunks_exact(4).zip(y.chunks_exact(4)).all(|(p, q)| {
        let a = f32::from_le_bytes([p[0], p[1], p[2], p[3]]);
        let b = f32::from_le_bytes([q[0], q[1], q[2], q[3]]);
        if a.is_nan() || b.is_nan() {
            return a.is_nan() && b.is_nan();
        }
        if a.is_infinite() || b.is_infinite() {
            #[allow(clippy::float_cmp)] // infinities agree only when identical
            return a == b;
        }
        (a - b).abs() <= abs + rel * a.abs().max(b.abs())
    })
}

/// What one run of a kernel costs, for scheduling, timeouts and GFLOPS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost {
    /// Arithmetic operations (floating-point for matmul; integer ops for
    /// the others, an upper bound for data-dependent kernels).
    pub ops: u64,
    /// Bytes uploaded (inputs + parameters).
    pub bytes_in: u64,
    /// Bytes read back (outputs).
    pub bytes_out: u64,
}

/// What a binding of the kernel's bind group holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BindingRole {
    /// Uniform buffer with [`KernelSpec::params_bytes`].
    Params,
    /// Read-only storage buffer with input `n`.
    Input(u8),
    /// Read-write storage buffer read back as output `n`.
    Output(u8),
}

/// One buffer of the kernel's bind group (group 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// `@binding(n)`.
    pub binding: u32,
    /// What it holds.
    pub role: BindingRole,
    /// Buffer size: the data length rounded up to 4, at least 4 (WebGPU
    /// refuses empty bindings); inputs are zero-padded to it.
    pub size: u64,
    /// Bytes of real data in it (an output is read back to this length).
    pub data_len: u64,
}

/// Buffer size for `len` bytes of data: multiple of 4, at least 4.
pub fn binding_size(len: u64) -> u64 {
    len.div_ceil(4).max(1) * 4
}

/// One way to run a kernel on a GPU: its WGSL, entry point and workgroups.
/// A built-in kernel may have several (matmul: a tiled program for GPUs, a
/// streamed one for devices that run invocations as CPU SIMD lanes); they
/// share the kernel's bindings and sum in the same order, so a worker runs
/// whichever its device runs fastest and replicas still agree within the
/// kernel's comparator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Program<'a> {
    /// A short name (`tiled`, `streamed`; `main` for single-program kernels).
    pub name: &'static str,
    /// The WGSL source.
    pub wgsl: &'a str,
    /// The `@compute` function.
    pub entry_point: &'a str,
    /// Workgroups to dispatch.
    pub workgroups: [u32; 3],
}

/// A kernel with its parameters: what a task runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum KernelSpec {
    /// See [`Sha256Params`].
    Sha256(Sha256Params),
    /// See [`MatmulParams`].
    MatmulF32(MatmulParams),
    /// See [`MandelbrotParams`].
    Mandelbrot(MandelbrotParams),
    /// See [`CustomKernel`].
    Custom(CustomKernel),
    /// See [`matmul_f16`]: the shape of [`MatmulParams`] in f16.
    MatmulF16(MatmulParams),
}

impl KernelSpec {
    /// Which kernel.
    pub fn id(&self) -> KernelId {
        match self {
            KernelSpec::Sha256(_) => KernelId::Sha256,
            KernelSpec::MatmulF32(_) => KernelId::MatmulF32,
            KernelSpec::MatmulF16(_) => KernelId::MatmulF16,
            KernelSpec::Mandelbrot(_) => KernelId::Mandelbrot,
            KernelSpec::Custom(_) => KernelId::Custom,
        }
    }

    /// Checks every parameter's range and buffer sizes.
    pub fn validate(&self) -> Result<(), KernelError> {
        match self {
            KernelSpec::Sha256(p) => p.validate(),
            KernelSpec::MatmulF32(p) => p.validate(),
            KernelSpec::MatmulF16(p) => p.validate_f16(),
            KernelSpec::Mandelbrot(p) => p.validate(),
            KernelSpec::Custom(c) => c.validate(),
        }
    }

    /// The WGSL source.
    pub fn wgsl(&self) -> &str {
        match self {
            KernelSpec::Sha256(_) => sha256::WGSL,
            KernelSpec::MatmulF32(_) => matmul::WGSL,
            KernelSpec::MatmulF16(_) => matmul_f16::WGSL,
            KernelSpec::Mandelbrot(_) => mandelbrot::WGSL,
            KernelSpec::Custom(c) => &c.wgsl,
        }
    }

    /// The programs that compute this kernel, the portable one (that of
    /// [`KernelSpec::wgsl`] and [`KernelSpec::dispatch`]) first.
    pub fn programs(&self) -> Vec<Program<'_>> {
        match self {
            KernelSpec::MatmulF32(p) => p.programs(),
            KernelSpec::MatmulF16(p) => p.f16_programs(),
            _ => vec![Program {
                name: "main",
                wgsl: self.wgsl(),
                entry_point: self.entry_point(),
                workgroups: self.dispatch(),
            }],
        }
    }

    /// The WGSL entry point.
    pub fn entry_point(&self) -> &str {
        match self {
            KernelSpec::Custom(c) => &c.entry_point,
            _ => "main",
        }
    }

    /// The uniform parameter block (binding 0) of built-in kernels; empty
    /// for custom kernels.
    pub fn params_bytes(&self) -> Vec<u8> {
        let words: Vec<u32> = match self {
            KernelSpec::Sha256(p) => vec![p.count, p.message_len, 0, 0],
            KernelSpec::MatmulF32(p) | KernelSpec::MatmulF16(p) => vec![p.m, p.n, p.k, 0],
            KernelSpec::Mandelbrot(p) => {
                vec![p.width, p.height, p.x0 as u32, p.y0 as u32, p.step as u32, p.max_iter, 0, 0]
            }
            KernelSpec::Custom(_) => Vec::new(),
        };
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// Lengths of the inputs the parameters imply.
    pub fn input_lens(&self) -> Vec<u64> {
        match self {
            KernelSpec::Sha256(p) => vec![p.input_len()],
            KernelSpec::MatmulF32(p) => vec![p.a_len(), p.b_len()],
            KernelSpec::MatmulF16(p) => p.f16_lens()[..2].to_vec(),
            KernelSpec::Mandelbrot(_) => Vec::new(),
            KernelSpec::Custom(c) => c.lens(|r| matches!(r, CustomRole::Input)),
        }
    }

    /// Lengths of the outputs the parameters imply.
    pub fn output_lens(&self) -> Vec<u64> {
        match self {
            KernelSpec::Sha256(p) => vec![u64::from(p.count) * 32],
            KernelSpec::MatmulF32(p) => vec![p.c_len()],
            KernelSpec::MatmulF16(p) => vec![p.f16_lens()[2]],
            KernelSpec::Mandelbrot(p) => vec![u64::from(p.width) * u64::from(p.height) * 4],
            KernelSpec::Custom(c) => c.lens(|r| matches!(r, CustomRole::Output)),
        }
    }

    /// The bind group layout: which binding holds what, and its size.
    pub fn layout(&self) -> Vec<Binding> {
        if let KernelSpec::Custom(c) = self {
            return c.layout();
        }
        let mut out = vec![Binding {
            binding: 0,
            role: BindingRole::Params,
            size: self.params_bytes().len() as u64,
            data_len: self.params_bytes().len() as u64,
        }];
        let mut next = 1u32;
        for (i, len) in self.input_lens().into_iter().enumerate() {
            out.push(Binding {
                binding: next,
                role: BindingRole::Input(i as u8),
                size: binding_size(len),
                data_len: len,
            });
            next += 1;
        }
        for (i, len) in self.output_lens().into_iter().enumerate() {
            out.push(Binding {
                binding: next,
                role: BindingRole::Output(i as u8),
                size: binding_size(len),
                data_len: len,
            });
            next += 1;
        }
        out
    }

    /// Workgroups to dispatch, `[x, y, z]`.
    pub fn dispatch(&self) -> [u32; 3] {
        match self {
            KernelSpec::Sha256(p) => p.dispatch(),
            KernelSpec::MatmulF32(p) | KernelSpec::MatmulF16(p) => p.dispatch(),
            KernelSpec::Mandelbrot(p) => p.dispatch(),
            KernelSpec::Custom(c) => c.workgroups,
        }
    }

    /// The cost model.
    pub fn cost(&self) -> Cost {
        let bytes_in = self.input_lens().iter().sum::<u64>() + self.params_bytes().len() as u64;
        let bytes_out = self.output_lens().iter().sum::<u64>();
        Cost { ops: self.ops(), bytes_in, bytes_out }
    }

    /// Operations of one run (the `ops` of [`Self::cost`], without
    /// allocating: the coordinator asks on every acknowledgement).
    pub fn ops(&self) -> u64 {
        match self {
            KernelSpec::Sha256(p) => p.ops(),
            KernelSpec::MatmulF32(p) | KernelSpec::MatmulF16(p) => p.flops(),
            KernelSpec::Mandelbrot(p) => p.ops(),
            KernelSpec::Custom(c) => c.bounded_ops(),
        }
    }

    /// Bytes a worker must hold to run this spec (inputs + outputs).
    pub fn working_set(&self) -> u64 {
        self.input_lens().iter().sum::<u64>() + self.output_lens().iter().sum::<u64>()
    }

    /// Whether `outputs` have exactly the count and lengths this spec
    /// produces (checked on every result, so it does not allocate).
    pub fn outputs_fit(&self, outputs: &[impl AsRef<[u8]>]) -> bool {
        let one = |len: u64| outputs.len() == 1 && outputs[0].as_ref().len() as u64 == len;
        match self {
            KernelSpec::Sha256(p) => one(u64::from(p.count) * 32),
            KernelSpec::MatmulF32(p) => one(p.c_len()),
            KernelSpec::MatmulF16(p) => one(p.f16_lens()[2]),
            KernelSpec::Mandelbrot(p) => one(u64::from(p.width) * u64::from(p.height) * 4),
            KernelSpec::Custom(c) => {
                let mut lens = c.bindings.iter().filter(|b| b.role == CustomRole::Output).map(|b| b.len);
                outputs.iter().all(|o| lens.next() == Some(o.as_ref().len() as u64)) && lens.next().is_none()
            }
        }
    }

    /// How replicas of this kernel's outputs are compared.
    pub fn comparator(&self) -> Comparator {
        match self {
            KernelSpec::Sha256(_) | KernelSpec::Mandelbrot(_) => Comparator::Exact,
            KernelSpec::MatmulF32(p) => p.comparator(),
            KernelSpec::MatmulF16(p) => p.f16_comparator(),
            KernelSpec::Custom(c) => c.comparator,
        }
    }

    /// Checks that `inputs` match the parameters in count and length.
    pub fn check_inputs(&self, inputs: &[&[u8]]) -> Result<(), KernelError> {
        let want = self.input_lens();
        if want.len() != inputs.len() {
            return Err(KernelError::InputCount { kernel: self.id(), expected: want.len(), got: inputs.len() });
        }
        for (index, (w, i)) in want.iter().zip(inputs).enumerate() {
            if *w != i.len() as u64 {
                return Err(KernelError::InputLength { kernel: self.id(), index, expected: *w, got: i.len() as u64 });
            }
        }
        Ok(())
    }

    /// Runs the CPU reference: the ground truth for this spec and inputs.
    pub fn run_cpu(&self, inputs: &[&[u8]]) -> Result<Vec<Vec<u8>>, KernelError> {
        self.run_cpu_until(inputs, &mut || false)
    }

    /// [`Self::run_cpu`] that asks `stop` every few milliseconds of work
    /// ([`CPU_CHECK_EVERY`]) whether to give up, and returns
    /// [`KernelError::Abandoned`] when it says so: how a worker abandons a
    /// run at its deadline or when the coordinator cancels it (the biggest
    /// Mandelbrot tile runs for minutes on a CPU).
    pub fn run_cpu_until(&self, inputs: &[&[u8]], stop: &mut dyn FnMut() -> bool) -> Result<Vec<Vec<u8>>, KernelError> {
        self.validate()?;
        self.check_inputs(inputs)?;
        let mut cp = Checkpoint { since: 0, stop };
        Ok(match self {
            KernelSpec::Sha256(p) => vec![p.run_cpu(inputs[0], &mut cp)?],
            KernelSpec::MatmulF32(p) => vec![p.run_cpu(inputs[0], inputs[1], &mut cp)?],
            KernelSpec::MatmulF16(p) => vec![p.run_cpu_f16(inputs[0], inputs[1], &mut cp)?],
            KernelSpec::Mandelbrot(p) => vec![p.run_cpu(&mut cp)?],
            KernelSpec::Custom(_) => return Err(KernelError::NoCpuReference),
        })
    }

    /// Pseudo-random valid inputs for this spec, fixed by `seed` and
    /// identical on every target (benchmarks with a known answer, tests,
    /// simulations). f32 and f16 inputs are uniform in `[-1, 1)`.
    pub fn seeded_inputs(&self, seed: u64) -> Vec<Vec<u8>> {
        let mut rng = SplitMix64::new(seed);
        match self {
            KernelSpec::MatmulF32(_) => self
                .input_lens()
                .into_iter()
                .map(|len| (0..len / 4).flat_map(|_| rng.unit_f32().to_le_bytes()).collect())
                .collect(),
            KernelSpec::MatmulF16(_) => self
                .input_lens()
                .into_iter()
                .map(|len| matmul_f16::f16_bytes(&(0..len / 2).map(|_| rng.unit_f32()).collect::<Vec<f32>>()))
                .collect(),
            _ => self
                .input_lens()
                .into_iter()
                .map(|len| {
                    let mut v = vec![0u8; len as usize];
                    rng.fill_bytes(&mut v);
                    v
                })
                .collect(),
        }
    }
}

/// `ceil(total / per_group)` workgroups laid out as `[x, y, 1]` with
/// `x ≤ 65535`, for one-dimensional kernels with more groups than one
/// dimension allows; the shader linearises `gid.y * x * size + gid.x`.
pub(crate) fn dispatch_1d(total: u64, per_group: u64) -> [u32; 3] {
    let groups = total.div_ceil(per_group).max(1);
    let x = groups.min(u64::from(MAX_WORKGROUPS_PER_DIM));
    let y = groups.div_ceil(x);
    [x as u32, y as u32, 1]
}

pub(crate) fn invalid(kernel: KernelId, param: &'static str, reason: impl Into<String>) -> KernelError {
    KernelError::InvalidParam { kernel, param, reason: reason.into() }
}

pub(crate) fn check_buffer(kernel: KernelId, buffer: &'static str, bytes: u64) -> Result<(), KernelError> {
    if bytes > MAX_KERNEL_BUFFER {
        return Err(KernelError::BufferTooLarge { kernel, buffer, bytes });
    }
    Ok(())
}

#[cfg(test)]
mod abandon_tests {
    use super::*;

    /// Each CPU kernel asks its stop condition as it works, gives up with
    /// `Abandoned` when told to, and never asks during a run shorter than
    /// one check interval (its result is then exactly `run_cpu`'s).
    #[test]
    fn cpu_runs_are_abandoned_when_their_host_says_stop() {
        let long = [
            KernelSpec::Mandelbrot(MandelbrotParams::from_plane(64, 64, -0.1, -0.1, 0.0001, 1 << 20)),
            KernelSpec::MatmulF32(MatmulParams::square(512)),
            KernelSpec::MatmulF32(MatmulParams { m: 4096, n: 4, k: 4096 }),
            KernelSpec::Sha256(Sha256Params { count: 4096, message_len: 4096 }),
        ];
        for k in long {
            let inputs = k.seeded_inputs(1);
            let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
            let mut asked = 0;
            let got = k.run_cpu_until(&refs, &mut || {
                asked += 1;
                true
            });
            assert_eq!((got, asked), (Err(KernelError::Abandoned), 1), "{k:?}");
        }
        let short = KernelSpec::Mandelbrot(MandelbrotParams::from_plane(8, 8, -2.0, -1.0, 0.1, 64));
        let mut asked = 0;
        let got = short.run_cpu_until(&[], &mut || {
            asked += 1;
            true
        });
        assert_eq!((got, asked), (short.run_cpu(&[]), 0));
    }
}
