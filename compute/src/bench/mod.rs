//! The measuring stick for the kernels: the device's own practical limits
//! ([`measure_peaks`]) and every built-in kernel at growing sizes
//! ([`measure_kernels`]), each timed kernel-only (inputs resident,
//! dispatches back to back) and end to end (upload, dispatch, readback:
//! what a task costs), beside the core's CPU reference where it finishes
//! in time, as a fraction of the limit that binds it. Platform-neutral:
//! the native `shoal bench gpu` and the browser test harness run the same
//! code, with their own clocks.

mod probes;

pub use probes::{measure as measure_peaks, Peaks};

use shoal_core::kernels::{mandelbrot, KernelId, KernelSpec, MandelbrotParams, MatmulParams, Sha256Params};

use crate::gpu::{ComputeError, Gpu, Tuning};

/// The limit a kernel runs into, against which its fraction is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// f32 arithmetic (matmul).
    F32Flops,
    /// f16 arithmetic (matmul_f16).
    F16Flops,
    /// 32-bit integer arithmetic (SHA-256, fixed-point Mandelbrot).
    IntOps,
}

impl Bound {
    /// The peak this bound is measured against.
    pub fn peak(self, peaks: &Peaks) -> f64 {
        match self {
            Bound::F32Flops => peaks.f32_flops,
            Bound::F16Flops => peaks.f16_flops.unwrap_or(0.0),
            Bound::IntOps => peaks.int_ops,
        }
    }

    /// Its unit, for tables.
    pub fn unit(self) -> &'static str {
        match self {
            Bound::F32Flops | Bound::F16Flops => "GFLOPS",
            Bound::IntOps => "Gops/s",
        }
    }
}

/// One kernel at one size, measured.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelFigure {
    /// Which kernel.
    pub kernel: KernelId,
    /// Its size, as a reader says it ("1024³", "65536 × 64 B").
    pub size: String,
    /// The program that ran (see [`Gpu::tune`]).
    pub program: &'static str,
    /// Operations of one run (Mandelbrot: the iterations it really ran).
    pub ops: u64,
    /// What binds it.
    pub bound: Bound,
    /// Seconds of one dispatch with inputs resident.
    pub kernel_secs: f64,
    /// Seconds of one run with upload and readback, one run at a time.
    pub end_to_end_secs: f64,
    /// Seconds per run with two in flight: the next run's upload and
    /// dispatch are submitted before the previous one's outputs are read
    /// (how a worker with queued tasks runs them).
    pub overlapped_secs: f64,
    /// Seconds of the CPU reference (None where it would take too long).
    pub cpu_secs: Option<f64>,
}

impl KernelFigure {
    /// Operations per second, kernel only.
    pub fn kernel_rate(&self) -> f64 {
        self.ops as f64 / self.kernel_secs.max(1e-12)
    }

    /// Operations per second, end to end.
    pub fn end_to_end_rate(&self) -> f64 {
        self.ops as f64 / self.end_to_end_secs.max(1e-12)
    }

    /// Operations per second of the CPU reference.
    pub fn cpu_rate(&self) -> Option<f64> {
        self.cpu_secs.map(|s| self.ops as f64 / s.max(1e-12))
    }

    /// Operations per second, end to end with two runs in flight.
    pub fn overlapped_rate(&self) -> f64 {
        self.ops as f64 / self.overlapped_secs.max(1e-12)
    }

    /// The kernel-only rate as a fraction of the measured peak.
    pub fn kernel_fraction(&self, peaks: &Peaks) -> f64 {
        self.kernel_rate() / self.bound.peak(peaks).max(1.0)
    }

    /// The end-to-end rate as a fraction of the measured peak.
    pub fn end_to_end_fraction(&self, peaks: &Peaks) -> f64 {
        self.end_to_end_rate() / self.bound.peak(peaks).max(1.0)
    }
}

/// How long the kernel benchmarks may take.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Seconds spent measuring each figure (repetitions fill it).
    pub budget: f64,
    /// Longest one run may take: a kernel's next size is skipped when its
    /// run would exceed it (extrapolated from the size before), and so is
    /// its CPU reference.
    pub max_run: f64,
    /// Only this kernel (None: all).
    pub only: Option<KernelId>,
}

impl Default for Plan {
    fn default() -> Self {
        Plan { budget: 2.0, max_run: 8.0, only: None }
    }
}

/// The measured limits in one line.
pub fn peaks_line(p: &Peaks) -> String {
    let f16 = p.f16_flops.map_or_else(|| "no shader-f16".to_owned(), |f| format!("{:.1} GFLOPS", f / 1e9));
    format!(
        "limits: f32 mul-add {:.1} GFLOPS · f16 mul-add {f16} · int32 {:.1} Gops/s · memory copy {:.1} GB/s · upload {:.2} \
         GB/s · download {:.2} GB/s",
        p.f32_flops / 1e9,
        p.int_ops / 1e9,
        p.copy_bytes / 1e9,
        p.upload_bytes / 1e9,
        p.download_bytes / 1e9
    )
}

/// The head of the kernels' table (Markdown).
pub const TABLE_HEADER: &str =
    "\n| kernel | size | program | kernel only | of peak | end to end | of peak | 2 in flight | CPU reference | GPU ÷ CPU |\n\
                      |---|---|---|---|---|---|---|---|---|---|";

/// One kernel's row of the table.
pub fn table_row(f: &KernelFigure, peaks: &Peaks) -> String {
    let unit = f.bound.unit();
    let cpu = f.cpu_rate();
    format!(
        "| {} | {} | {} | {:.2} {unit} | {:.1} % | {:.2} {unit} | {:.1} % | {:.2} {unit} | {} | {} |",
        f.kernel,
        f.size,
        f.program,
        f.kernel_rate() / 1e9,
        100.0 * f.kernel_fraction(peaks),
        f.end_to_end_rate() / 1e9,
        100.0 * f.end_to_end_fraction(peaks),
        f.overlapped_rate() / 1e9,
        cpu.map_or_else(|| "–".to_owned(), |r| format!("{:.2} {unit}", r / 1e9)),
        cpu.map_or_else(|| "–".to_owned(), |r| format!("{:.2}×", f.end_to_end_rate() / r)),
    )
}

/// What [`Gpu::tune`] chose, in lines.
pub fn tuning_lines(t: &Tuning) -> String {
    let mut lines: Vec<String> = t
        .programs
        .iter()
        .map(|p| {
            let times: Vec<String> = p.times.iter().map(|(name, s)| format!("{name} {:.2} ms", s * 1e3)).collect();
            format!("{}: {} (at {}³: {})", p.kernel, p.chosen, p.size, times.join(", "))
        })
        .collect();
    let depths: Vec<String> = t.depths.iter().map(|(d, s)| format!("{d}: {:.2} ms", s * 1e3)).collect();
    lines.push(format!("tasks in flight: {} (per task with {})", t.in_flight, depths.join(", ")));
    lines.join("\n")
}

/// The sizes benchmarked, each kernel's smallest first (matmul_f16 only
/// where the device has `shader-f16`).
pub fn ladder() -> Vec<Vec<(String, KernelSpec)>> {
    let matmul = [256u32, 512, 1024, 2048, 4096, 8192]
        .map(|n| (format!("{n}³"), KernelSpec::MatmulF32(MatmulParams::square(n))));
    let half = [256u32, 512, 1024, 2048, 4096, 8192]
        .map(|n| (format!("{n}³"), KernelSpec::MatmulF16(MatmulParams::square(n))));
    let sha = [4_096u32, 65_536, 1 << 20, 1 << 21]
        .map(|count| (format!("{count} × 64 B"), KernelSpec::Sha256(Sha256Params { count, message_len: 64 })));
    let mandel = [256u32, 1024, 4096].map(|edge| {
        let step = 2.5 / f64::from(edge);
        let p = MandelbrotParams::from_plane(edge, edge, -2.0, -1.25, step, 256);
        (format!("{edge}² × 256 it"), KernelSpec::Mandelbrot(p))
    });
    vec![matmul.to_vec(), half.to_vec(), sha.to_vec(), mandel.to_vec()]
}

/// Operations one run of `spec` performed, from its outputs where the
/// work depends on the data (Mandelbrot's iteration counts).
fn ops_done(spec: &KernelSpec, outputs: &[Vec<u8>]) -> u64 {
    match spec {
        KernelSpec::Mandelbrot(_) => {
            let counts = outputs.first().map_or(&[][..], Vec::as_slice);
            let iterations: u64 =
                counts.chunks_exact(4).map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))).sum();
            iterations * mandelbrot::OPS_PER_ITERATION
        }
        other => other.ops(),
    }
}

fn bound_of(spec: &KernelSpec) -> Bound {
    match spec {
        KernelSpec::MatmulF32(_) => Bound::F32Flops,
        KernelSpec::MatmulF16(_) => Bound::F16Flops,
        _ => Bound::IntOps,
    }
}

/// Repetitions that fill `share` seconds at `each` seconds apiece (1..=cap).
fn reps(share: f64, each: f64, cap: u32) -> u32 {
    ((share / each.max(1e-9)) as u32).clamp(1, cap)
}

/// Measures one kernel at one size: a first end-to-end run (untimed
/// pipeline build included), repeated runs, repeated resident dispatches,
/// and, when `cpu` is set, the CPU reference, whose result must agree
/// with the GPU's (a fast wrong kernel is no benchmark).
pub async fn measure_kernel(
    gpu: &Gpu,
    size: String,
    spec: &KernelSpec,
    plan: Plan,
    cpu: bool,
    now: &dyn Fn() -> f64,
) -> Result<KernelFigure, ComputeError> {
    let inputs = spec.seeded_inputs(1);
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let start = now();
    let outputs = gpu.run(spec, &refs).await?;
    let first = now() - start;
    let n = reps(plan.budget / 2.0, first, 50);
    let start = now();
    for _ in 0..n {
        gpu.run(spec, &refs).await?;
    }
    let end_to_end_secs = (now() - start) / f64::from(n);
    let overlapped_secs = gpu.secs_in_flight(spec, &refs, n.max(2), 2, now).await?;
    // One submission, so it must end well within the dispatch timeout.
    let k = reps((plan.budget / 2.0).min(10.0), end_to_end_secs, 500);
    let program = gpu.program(spec);
    let kernel_secs = gpu.dispatch_secs(spec, &program, &refs, k, now).await?;
    let cpu_secs = if cpu {
        let start = now();
        let want = spec.run_cpu(&refs).map_err(|e| ComputeError::InvalidTask(e.to_string()))?;
        let first = now() - start;
        let (g, w): (Vec<&[u8]>, Vec<&[u8]>) =
            (outputs.iter().map(Vec::as_slice).collect(), want.iter().map(Vec::as_slice).collect());
        if !spec.comparator().agree(&g, &w) {
            return Err(ComputeError::InvalidTask(format!("{} {size}: the GPU and the CPU disagree", spec.id())));
        }
        // Repeated like the GPU's runs (a first run pays for cold caches).
        let n = reps(plan.budget / 2.0, first, 20);
        let start = now();
        for _ in 0..n {
            spec.run_cpu(&refs).map_err(|e| ComputeError::InvalidTask(e.to_string()))?;
        }
        Some((now() - start) / f64::from(n))
    } else {
        None
    };
    let ops = ops_done(spec, &outputs);
    Ok(KernelFigure {
        kernel: spec.id(),
        size,
        program: program.name,
        ops,
        bound: bound_of(spec),
        kernel_secs,
        end_to_end_secs,
        overlapped_secs,
        cpu_secs,
    })
}

/// Every kernel of the [`ladder`], each up to the size whose run would
/// exceed `plan.max_run` or whose buffers the device cannot bind;
/// `progress` hears of each figure as it is measured.
pub async fn measure_kernels(
    gpu: &Gpu,
    plan: Plan,
    now: &dyn Fn() -> f64,
    progress: &mut dyn FnMut(&KernelFigure),
) -> Result<Vec<KernelFigure>, ComputeError> {
    let mut figures = Vec::new();
    let kernels = gpu.device_info().kernels;
    for family in ladder() {
        let Some(id) = family.first().map(|(_, spec)| spec.id()) else { continue };
        // Kernels the device does not run (matmul_f16 without shader-f16), or not asked for.
        if !kernels.contains(&id) || plan.only.is_some_and(|only| only != id) {
            continue;
        }
        let mut last: Option<KernelFigure> = None;
        let mut last_ops = 1u64;
        for (size, spec) in family {
            // Nominal operations (Mandelbrot's bound, not its count) scale alike.
            let growth = spec.ops() as f64 / last_ops.max(1) as f64;
            let gpu_next = last.as_ref().map_or(0.0, |l| l.end_to_end_secs * growth);
            if gpu_next > plan.max_run {
                break;
            }
            let cpu = last.as_ref().is_none_or(|l| l.cpu_secs.is_some_and(|s| s * growth <= plan.max_run));
            let figure = match measure_kernel(gpu, size, &spec, plan, cpu, now).await {
                Ok(f) => f,
                // Larger than this device binds: the family ends here.
                Err(ComputeError::TooLarge { .. } | ComputeError::OutOfMemory(_)) => break,
                Err(e) => return Err(e),
            };
            progress(&figure);
            figures.push(figure.clone());
            last = Some(figure);
            last_ops = spec.ops();
        }
    }
    Ok(figures)
}
