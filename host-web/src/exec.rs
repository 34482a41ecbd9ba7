//! Where a tab's kernels run: WebGPU through `shoal-compute`, or, in a
//! browser without it, the core's CPU reference kernels compiled to wasm.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{select, Either};
use shoal_compute::{Gpu, GpuOptions};
use shoal_core::kernels::{KernelSpec, MandelbrotParams, MatmulParams, Sha256Params};
use shoal_core::wire::message::DeviceInfo;
use wasm_bindgen::JsCast;

use crate::control::DeviceSummary;
use crate::policy::GpuShare;

/// The longest one GPU dispatch may take before it counts as lost.
const DISPATCH_TIMEOUT: Duration = Duration::from_mins(1);

/// A tab's compute device.
#[derive(Clone, Debug)]
pub struct Executor {
    gpu: Option<Rc<Gpu>>,
    /// Why there is no GPU, when there is none.
    note: String,
}

/// A monotonic clock in seconds (`performance.now()` where the global has
/// it, else the wall clock), for timing the device's programs.
fn seconds() -> f64 {
    let performance = js_sys::Reflect::get(&js_sys::global(), &"performance".into()).ok();
    let now = performance
        .as_ref()
        .and_then(|p| js_sys::Reflect::get(p, &"now".into()).ok())
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .and_then(|f| f.call0(performance.as_ref()?).ok())
        .and_then(|v| v.as_f64());
    now.unwrap_or_else(js_sys::Date::now) / 1e3
}

impl Executor {
    /// WebGPU when `use_gpu` and the browser has an adapter; otherwise the
    /// CPU references (with the reason kept for the status).
    pub async fn detect(use_gpu: bool) -> Executor {
        if !use_gpu {
            return Executor { gpu: None, note: "WebGPU not requested".into() };
        }
        let gpu = match Gpu::new(GpuOptions { dispatch_timeout: DISPATCH_TIMEOUT, ..GpuOptions::default() }).await {
            Ok(gpu) => gpu,
            Err(e) => return Executor { gpu: None, note: format!("no WebGPU ({e}); computing on the CPU") },
        };
        let executor = Executor { gpu: Some(Rc::new(gpu)), note: String::new() };
        let timeout = Box::pin(gloo_timers::future::TimeoutFuture::new(DISPATCH_TIMEOUT.as_millis() as u32));
        let warm_up = match select(Box::pin(executor.warm_up()), timeout).await {
            Either::Left((outcome, _)) => outcome,
            Either::Right(((), _)) => Err(format!("still running after {} s", DISPATCH_TIMEOUT.as_secs())),
        };
        match warm_up {
            Ok(()) => executor,
            Err(e) => Executor { gpu: None, note: format!("WebGPU failed its first run ({e}); computing on the CPU") },
        }
    }

    /// Compiles the built-in kernels' pipelines and checks one answer, so
    /// that the coordinator's admission benchmark times the device's speed,
    /// not shader compilation, and a broken adapter is caught before joining.
    async fn warm_up(&self) -> Result<(), String> {
        let Some(gpu) = &self.gpu else { return Ok(()) };
        for kernel in [
            KernelSpec::MatmulF32(MatmulParams::square(16)),
            KernelSpec::Sha256(Sha256Params { count: 4, message_len: 64 }),
            KernelSpec::Mandelbrot(MandelbrotParams::from_plane(8, 8, -2.0, -1.2, 0.3, 50)),
        ] {
            let inputs = kernel.seeded_inputs(1);
            let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
            if !shoal_compute::profile::check(gpu, &kernel, &refs).await.map_err(|e| e.to_string())? {
                return Err(format!("{} disagrees with the CPU reference", kernel.id()));
            }
        }
        // Each kernel with several programs runs the one this device runs fastest.
        gpu.tune(&seconds).await.map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The CPU references only.
    pub fn cpu() -> Executor {
        Executor { gpu: None, note: String::new() }
    }

    /// Whether kernels run on WebGPU.
    pub fn has_gpu(&self) -> bool {
        self.gpu.is_some()
    }

    /// Why there is no GPU (empty when there is one or none was wanted).
    pub fn note(&self) -> &str {
        &self.note
    }

    /// What the hello declares: the adapter, or the CPU class.
    pub fn device_info(&self) -> DeviceInfo {
        match &self.gpu {
            Some(g) => g.device_info(),
            None => DeviceInfo::cpu_reference("wasm32", "shoal-core reference kernels (wasm)"),
        }
    }

    /// Runs worth having on the device at once: what the GPU's measured
    /// pipeline keeps busy at a full share; one on the CPU (a tab has one
    /// thread) or at a smaller share (each run is followed by its idle
    /// time).
    pub fn in_flight(&self, share: GpuShare) -> usize {
        match &self.gpu {
            Some(gpu) if share.percent() == 100 => usize::from(gpu.suggested_in_flight().max(1)),
            _ => 1,
        }
    }

    /// The device, for the page.
    pub fn summary(&self) -> DeviceSummary {
        let d = self.device_info();
        DeviceSummary {
            backend: format!("{:?}", d.backend),
            name: d.name,
            vendor: d.vendor,
            device_type: format!("{:?}", d.device_type),
        }
    }

    /// Runs one kernel. A dispatch that outlives [`DISPATCH_TIMEOUT`] is
    /// reported as failed (the browser gives no way to cancel it); a CPU
    /// run is abandoned at `deadline` (`Date.now()` ms), when the
    /// coordinator has stopped waiting for it.
    pub async fn run(&self, kernel: &KernelSpec, inputs: &[Bytes], deadline: f64) -> Result<Vec<Bytes>, String> {
        let refs: Vec<&[u8]> = inputs.iter().map(|b| &b[..]).collect();
        let out = match &self.gpu {
            None => {
                let mut past_deadline = || js_sys::Date::now() >= deadline;
                kernel.run_cpu_until(&refs, &mut past_deadline).map_err(|e| e.to_string())?
            }
            Some(gpu) => {
                let run = Box::pin(gpu.run(kernel, &refs));
                let timeout = Box::pin(gloo_timers::future::TimeoutFuture::new(DISPATCH_TIMEOUT.as_millis() as u32));
                match select(run, timeout).await {
                    Either::Left((out, _)) => out.map_err(|e| e.to_string())?,
                    Either::Right(((), _)) => {
                        return Err(format!("GPU dispatch still running after {} s", DISPATCH_TIMEOUT.as_secs()))
                    }
                }
            }
        };
        Ok(out.into_iter().map(Bytes::from).collect())
    }
}
