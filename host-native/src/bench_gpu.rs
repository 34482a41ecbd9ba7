//! `shoal bench gpu`: the device's measured limits (f32/f16 FMA, integer
//! operations, memory and transfer bandwidth) and every built-in kernel
//! at growing sizes against them, kernel-only and end to end, beside the
//! core's CPU reference, in one run. `--json` prints the same figures for
//! scripts.

use std::time::Instant;

use anyhow::{Context, Result};
use shoal_compute::bench::{self, KernelFigure, Peaks, Plan};
use shoal_compute::{Gpu, GpuOptions};
use shoal_core::kernels::KernelId;

/// What the GPU benchmark measures with.
#[derive(Clone, Debug)]
pub struct GpuBenchOptions {
    /// Only an adapter whose name contains this.
    pub adapter: Option<String>,
    /// Print JSON instead of tables.
    pub json: bool,
    /// Seconds spent on each figure.
    pub budget: f64,
    /// Longest single run before a kernel's larger sizes are skipped.
    pub max_run: f64,
    /// Only this kernel (by name); None: every built-in kernel.
    pub kernel: Option<String>,
}

impl GpuBenchOptions {
    /// The `gpu` options of `shoal bench`, checked.
    pub fn from_args(a: crate::bench::BenchArgs) -> Result<Self> {
        if !(a.budget_secs > 0.0 && a.max_run_secs > 0.0) {
            anyhow::bail!("--budget-secs and --max-run-secs must be positive");
        }
        Ok(GpuBenchOptions {
            adapter: a.adapter,
            json: a.json,
            budget: a.budget_secs,
            max_run: a.max_run_secs,
            kernel: a.kernel,
        })
    }
}

/// Runs the GPU benchmark on a blocking thread (the executor waits on the
/// device) and prints its figures.
pub async fn run(o: GpuBenchOptions) -> Result<()> {
    tokio::task::spawn_blocking(move || pollster::block_on(measure(&o))).await.context("the GPU benchmark panicked")?
}

async fn measure(o: &GpuBenchOptions) -> Result<()> {
    let options = GpuOptions { adapter: o.adapter.clone(), ..GpuOptions::default() };
    let gpu = Gpu::new(options).await.context("opening the GPU")?;
    let info = gpu.adapter_info().clone();
    let t0 = Instant::now();
    let now = move || t0.elapsed().as_secs_f64();
    let say = |line: String| {
        if !o.json {
            println!("{line}");
        }
    };
    say(format!(
        "adapter: {} ({:?}, {:?}, driver {} {})",
        info.name, info.backend, info.device_type, info.driver, info.driver_info
    ));
    say("measuring the device's limits…".into());
    let peaks = bench::measure_peaks(&gpu, o.budget, &now).await.context("measuring the device's limits")?;
    say(bench::peaks_line(&peaks));
    let tuning = gpu.tune(&now).await.context("choosing each kernel's program")?;
    say(bench::tuning_lines(&tuning));
    let only = match &o.kernel {
        Some(name) => Some(
            KernelId::ALL
                .into_iter()
                .find(|k| k.as_str() == name && *k != KernelId::Custom)
                .with_context(|| format!("--kernel {name}: not a built-in kernel"))?,
        ),
        None => None,
    };
    let plan = Plan { budget: o.budget, max_run: o.max_run, only };
    let mut progress = |f: &KernelFigure| say(bench::table_row(f, &peaks));
    say(bench::TABLE_HEADER.into());
    let figures = bench::measure_kernels(&gpu, plan, &now, &mut progress).await.context("measuring the kernels")?;
    if o.json {
        println!("{}", serde_json::to_string_pretty(&json(&info, &peaks, &figures))?);
    }
    Ok(())
}

fn json(info: &shoal_compute::wgpu::AdapterInfo, p: &Peaks, figures: &[KernelFigure]) -> serde_json::Value {
    let kernels: Vec<serde_json::Value> = figures
        .iter()
        .map(|f| {
            serde_json::json!({
                "kernel": f.kernel.as_str(),
                "size": f.size,
                "program": f.program,
                "ops": f.ops,
                "bound": f.bound.unit(),
                "kernel_secs": f.kernel_secs,
                "end_to_end_secs": f.end_to_end_secs,
                "overlapped_secs": f.overlapped_secs,
                "cpu_secs": f.cpu_secs,
                "kernel_fraction_of_peak": f.kernel_fraction(p),
                "end_to_end_fraction_of_peak": f.end_to_end_fraction(p),
            })
        })
        .collect();
    serde_json::json!({
        "adapter": { "name": info.name, "backend": format!("{:?}", info.backend),
                     "device_type": format!("{:?}", info.device_type), "driver": info.driver,
                     "driver_info": info.driver_info },
        "peaks": { "f32_flops": p.f32_flops, "f16_flops": p.f16_flops, "int_ops": p.int_ops,
                   "copy_bytes_per_s": p.copy_bytes, "upload_bytes_per_s": p.upload_bytes,
                   "download_bytes_per_s": p.download_bytes },
        "kernels": kernels,
    })
}
