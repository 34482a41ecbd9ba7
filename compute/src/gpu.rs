//! The executor: one wgpu device, a pipeline cache per kernel, and `run`
//! (upload inputs, dispatch, read outputs back) with every failure mapped
//! to a [`ComputeError`] a worker can report — never a panic, and natively
//! never a hang (each dispatch waits at most its timeout).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_core::kernels::{KernelId, KernelSpec, Program};
use shoal_core::wire::message::{Backend, DeviceInfo, DeviceType};
use shoal_core::Digest;

use crate::validate::{validate_kernel, ShaderError};

mod task;
mod tune;
pub use task::InFlight;
pub use tune::{Tuned, Tuning};

/// Why a kernel could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComputeError {
    /// No adapter matched.
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    /// The adapter refused to open a device.
    #[error("cannot open the device: {0}")]
    Device(String),
    /// The kernel or its inputs are invalid.
    #[error("invalid task: {0}")]
    InvalidTask(String),
    /// The shader was refused before dispatch.
    #[error(transparent)]
    Shader(#[from] ShaderError),
    /// A buffer exceeds what the device allows.
    #[error("{what} needs {bytes} bytes; the device allows {limit}")]
    TooLarge {
        /// Which buffer.
        what: String,
        /// Its size.
        bytes: u64,
        /// The device's limit.
        limit: u64,
    },
    /// The device ran out of memory.
    #[error("out of device memory: {0}")]
    OutOfMemory(String),
    /// wgpu rejected a command (a bug or an unsupported device).
    #[error("validation error: {0}")]
    Validation(String),
    /// The device was lost (driver reset, GPU hang, tab throttled).
    #[error("device lost: {0}")]
    DeviceLost(String),
    /// The dispatch did not finish in time.
    #[error("dispatch did not finish within {0:?}")]
    Timeout(Duration),
    /// A dispatch that timed out still runs on the device: nothing else is
    /// started on it until it ends (a GPU cannot be preempted).
    #[error("the device is still running a dispatch that timed out")]
    Busy,
    /// Reading the outputs back failed.
    #[error("readback failed: {0}")]
    Readback(String),
}

/// How to pick and use the device.
#[derive(Clone, Debug)]
pub struct GpuOptions {
    /// Prefer a discrete GPU (else the lowest-power one).
    pub high_performance: bool,
    /// Accept a software adapter (lavapipe, SwiftShader).
    pub allow_software: bool,
    /// Longest a dispatch may take (native; on the web the host races a timer).
    pub dispatch_timeout: Duration,
    /// Only these backends (None: wgpu's defaults, or `WGPU_BACKEND`). A
    /// test that claims a Vulkan driver asks for Vulkan alone, so it never
    /// passes on another backend by accident.
    pub backends: Option<wgpu::Backends>,
    /// Only an adapter whose name contains this (case-insensitive), for a
    /// machine with several GPUs; None: the one wgpu prefers.
    pub adapter: Option<String>,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            high_performance: true,
            allow_software: true,
            dispatch_timeout: Duration::from_secs(30),
            backends: None,
            adapter: None,
        }
    }
}

/// Buffers kept for reuse between runs, by usage and size (tasks of one job
/// have the same layout, so after the first run they allocate nothing).
struct BufferPool {
    free: Mutex<HashMap<(u32, u64), Vec<wgpu::Buffer>>>,
    held: std::sync::atomic::AtomicU64,
    cap: u64,
}

impl BufferPool {
    fn new(cap: u64) -> Self {
        BufferPool { free: Mutex::new(HashMap::new()), held: std::sync::atomic::AtomicU64::new(0), cap }
    }

    fn take(&self, device: &wgpu::Device, usage: wgpu::BufferUsages, size: u64) -> wgpu::Buffer {
        let reused = self.free.lock().ok().and_then(|mut f| f.get_mut(&(usage.bits(), size)).and_then(Vec::pop));
        match reused {
            Some(b) => {
                self.held.fetch_sub(size, std::sync::atomic::Ordering::Relaxed);
                b
            }
            None => device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("shoal task buffer"),
                size,
                usage,
                mapped_at_creation: false,
            }),
        }
    }

    fn give(&self, buffer: wgpu::Buffer) {
        let size = buffer.size();
        if self.held.load(std::sync::atomic::Ordering::Relaxed) + size > self.cap {
            return; // dropped: freed by wgpu
        }
        if let Ok(mut f) = self.free.lock() {
            f.entry((buffer.usage().bits(), size)).or_default().push(buffer);
            self.held.fetch_add(size, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Bytes of idle buffers the pool keeps at most.
const POOL_BYTES: u64 = 256 << 20;

/// A pipeline and the bind group layout it was built with.
struct Pipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// One GPU, ready to run kernels.
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    /// The dispatch timeout is enforced natively only.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    options: GpuOptions,
    pipelines: Mutex<HashMap<Digest, Arc<Pipeline>>>,
    /// The program each kernel runs, where it has several and one was
    /// chosen ([`Gpu::tune`], [`Gpu::choose`]); otherwise the portable one.
    choices: Mutex<HashMap<KernelId, &'static str>>,
    /// Tasks worth keeping in flight at once, as measured by [`Gpu::tune`]
    /// (1 until then).
    in_flight: std::sync::atomic::AtomicU16,
    lost: Arc<Mutex<Option<String>>>,
    /// The last allocation probe's result (0: not probed).
    stable_alloc: std::sync::atomic::AtomicU64,
    pool: BufferPool,
    /// A submission that outlived the dispatch timeout and may still run.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    stuck: Mutex<Option<wgpu::SubmissionIndex>>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.info.name)
            .field("backend", &self.info.backend)
            .finish_non_exhaustive()
    }
}

fn backend_of(b: wgpu::Backend) -> Backend {
    match b {
        wgpu::Backend::Vulkan => Backend::Vulkan,
        wgpu::Backend::Metal => Backend::Metal,
        wgpu::Backend::Dx12 => Backend::Dx12,
        wgpu::Backend::Gl => Backend::Gl,
        wgpu::Backend::BrowserWebGpu => Backend::BrowserWebGpu,
        wgpu::Backend::Noop => Backend::Cpu,
    }
}

fn device_type_of(t: wgpu::DeviceType) -> DeviceType {
    match t {
        wgpu::DeviceType::DiscreteGpu => DeviceType::DiscreteGpu,
        wgpu::DeviceType::IntegratedGpu => DeviceType::IntegratedGpu,
        wgpu::DeviceType::VirtualGpu => DeviceType::VirtualGpu,
        wgpu::DeviceType::Cpu => DeviceType::Cpu,
        wgpu::DeviceType::Other => DeviceType::Other,
    }
}

/// The first adapter whose name contains `name` (case-insensitive); the
/// error lists the adapters there are.
async fn named_adapter(
    instance: &wgpu::Instance,
    backends: wgpu::Backends,
    name: &str,
) -> Result<wgpu::Adapter, ComputeError> {
    let adapters = instance.enumerate_adapters(backends).await;
    let wanted = name.to_lowercase();
    let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
    adapters
        .into_iter()
        .find(|a| a.get_info().name.to_lowercase().contains(&wanted))
        .ok_or_else(|| ComputeError::NoAdapter(format!("none named like `{name}` among {names:?}")))
}

/// A key for the pipeline cache: the shader and its entry point.
fn pipeline_key(program: &Program<'_>) -> Digest {
    Digest::of_parts([program.wgsl.as_bytes(), b"\0", program.entry_point.as_bytes()])
}

pub(crate) fn scope_error(e: wgpu::Error) -> ComputeError {
    match e {
        wgpu::Error::OutOfMemory { .. } => ComputeError::OutOfMemory(e.to_string()),
        other => ComputeError::Validation(other.to_string()),
    }
}

impl Gpu {
    /// Opens the best adapter with its full limits.
    pub async fn new(options: GpuOptions) -> Result<Gpu, ComputeError> {
        let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        if let Some(backends) = options.backends {
            descriptor.backends = backends;
        }
        let backends = descriptor.backends;
        let instance = wgpu::Instance::new(descriptor);
        let adapter = match &options.adapter {
            Some(name) => named_adapter(&instance, backends, name).await?,
            None => instance
                .request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: if options.high_performance {
                        wgpu::PowerPreference::HighPerformance
                    } else {
                        wgpu::PowerPreference::LowPower
                    },
                    force_fallback_adapter: false,
                    compatible_surface: None,
                    ..Default::default()
                })
                .await
                .map_err(|e| ComputeError::NoAdapter(e.to_string()))?,
        };
        let info = adapter.get_info();
        if info.device_type == wgpu::DeviceType::Cpu && !options.allow_software {
            return Err(ComputeError::NoAdapter(format!("only a software adapter ({})", info.name)));
        }
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("shoal"),
                // f16 arithmetic where the device has it (the f16 probe of
                // `bench` and kernels that declare `enable f16`).
                required_features: adapter.features() & wgpu::Features::SHADER_F16,
                required_limits: limits.clone(),
                memory_hints: wgpu::MemoryHints::Performance,
                ..Default::default()
            })
            .await
            .map_err(|e| ComputeError::Device(e.to_string()))?;
        let lost = Arc::new(Mutex::new(None));
        let flag = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut l) = flag.lock() {
                *l = Some(format!("{reason:?}: {message}"));
            }
        });
        tracing::info!(adapter = %info.name, backend = ?info.backend, device_type = ?info.device_type, "GPU ready");
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            options,
            pipelines: Mutex::new(HashMap::new()),
            choices: Mutex::new(HashMap::new()),
            in_flight: std::sync::atomic::AtomicU16::new(1),
            lost,
            stable_alloc: std::sync::atomic::AtomicU64::new(0),
            pool: BufferPool::new(POOL_BYTES),
            stuck: Mutex::new(None),
        })
    }

    /// What this worker declares in its hello (self-reported; the
    /// coordinator measures speed itself).
    pub fn device_info(&self) -> DeviceInfo {
        DeviceInfo {
            backend: backend_of(self.info.backend),
            device_type: device_type_of(self.info.device_type),
            vendor: format!("{:#06x}", self.info.vendor),
            name: self.info.name.clone(),
            driver: format!("{} {}", self.info.driver, self.info.driver_info).trim().to_owned(),
            // The probed allocation once measured, else the adapter's limit.
            max_buffer_bytes: match self.stable_alloc.load(std::sync::atomic::Ordering::Relaxed) {
                0 => self.limits.max_buffer_size,
                probed => probed,
            },
            max_storage_binding_bytes: self.limits.max_storage_buffer_binding_size,
            max_workgroup_invocations: self.limits.max_compute_invocations_per_workgroup,
            // f16 kernels only where the device has f16 arithmetic.
            kernels: KernelId::ALL.into_iter().filter(|&k| k != KernelId::MatmulF16 || self.has_f16()).collect(),
        }
    }

    /// The adapter as wgpu reports it.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    fn check_lost(&self) -> Result<(), ComputeError> {
        match self.lost.lock().ok().and_then(|l| l.clone()) {
            Some(why) => Err(ComputeError::DeviceLost(why)),
            None => Ok(()),
        }
    }

    /// The program this device runs `kernel` with: the one chosen for it
    /// where the kernel has it, else the portable one.
    pub fn program<'k>(&self, kernel: &'k KernelSpec) -> Program<'k> {
        let mut programs = kernel.programs();
        let chosen = self.choices.lock().ok().and_then(|c| c.get(&kernel.id()).copied());
        let at = chosen.and_then(|name| programs.iter().position(|p| p.name == name)).unwrap_or(0);
        programs.swap_remove(at)
    }

    /// Runs `kernel` with the program named `program` from now on, where
    /// the kernel has one by that name (tests pin each program this way).
    pub fn choose(&self, kernel: KernelId, program: &'static str) {
        if let Ok(mut c) = self.choices.lock() {
            c.insert(kernel, program);
        }
    }

    /// The cached pipeline of a program, validating (custom kernels) and
    /// building it on first use.
    async fn pipeline(&self, kernel: &KernelSpec, program: &Program<'_>) -> Result<Arc<Pipeline>, ComputeError> {
        let key = pipeline_key(program);
        if let Some(p) = self.pipelines.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(p);
        }
        if matches!(kernel, KernelSpec::Custom(_)) {
            validate_kernel(kernel)?;
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(kernel.id().as_str()),
            source: wgpu::ShaderSource::Wgsl(program.wgsl.into()),
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.id().as_str()),
            layout: None,
            module: &module,
            entry_point: Some(program.entry_point),
            compilation_options: wgpu::PipelineCompilationOptions::default(),
            cache: None,
        });
        if let Some(e) = scope.pop().await {
            return Err(scope_error(e));
        }
        let layout = pipeline.get_bind_group_layout(0);
        let p = Arc::new(Pipeline { pipeline, layout });
        if let Ok(mut m) = self.pipelines.lock() {
            m.insert(key, p.clone());
        }
        Ok(p)
    }

    /// Waits for a submission natively (bounded by the dispatch timeout);
    /// on the web the browser completes it from its event loop. A
    /// submission that times out is remembered: the device runs it on.
    #[cfg(not(target_arch = "wasm32"))]
    fn wait(&self, submission: wgpu::SubmissionIndex) -> Result<(), ComputeError> {
        let timeout = self.options.dispatch_timeout;
        let wait = wgpu::PollType::Wait { submission_index: Some(submission.clone()), timeout: Some(timeout) };
        match self.device.poll(wait) {
            Ok(_) => Ok(()),
            Err(wgpu::PollError::Timeout) => {
                if let Ok(mut stuck) = self.stuck.lock() {
                    *stuck = Some(submission);
                }
                Err(ComputeError::Timeout(timeout))
            }
            Err(e) => Err(self.check_lost().err().unwrap_or(ComputeError::DeviceLost(e.to_string()))),
        }
    }

    #[cfg(target_arch = "wasm32")]
    #[allow(clippy::unnecessary_wraps, clippy::unused_self)]
    fn wait(&self, _submission: wgpu::SubmissionIndex) -> Result<(), ComputeError> {
        Ok(())
    }

    /// `Busy` while a dispatch that timed out still runs (checked without
    /// waiting), so new work fails fast instead of queueing behind it.
    #[cfg(not(target_arch = "wasm32"))]
    fn check_stuck(&self) -> Result<(), ComputeError> {
        let Ok(mut stuck) = self.stuck.lock() else { return Ok(()) };
        let Some(submission) = stuck.clone() else { return Ok(()) };
        let now = wgpu::PollType::Wait { submission_index: Some(submission), timeout: Some(Duration::ZERO) };
        match self.device.poll(now) {
            Ok(_) => {
                *stuck = None;
                Ok(())
            }
            Err(wgpu::PollError::Timeout) => Err(ComputeError::Busy),
            Err(e) => Err(self.check_lost().err().unwrap_or(ComputeError::DeviceLost(e.to_string()))),
        }
    }

    #[cfg(target_arch = "wasm32")]
    #[allow(clippy::unnecessary_wraps, clippy::unused_self)]
    fn check_stuck(&self) -> Result<(), ComputeError> {
        Ok(())
    }

    /// The device, its queue and limits, for the benchmark probes.
    pub(crate) fn parts(&self) -> (&wgpu::Device, &wgpu::Queue, &wgpu::Limits) {
        (&self.device, &self.queue, &self.limits)
    }

    /// Whether kernels may use f16 arithmetic (`enable f16;`).
    pub fn has_f16(&self) -> bool {
        self.device.features().contains(wgpu::Features::SHADER_F16)
    }

    /// Returns once everything submitted so far has run (natively bounded
    /// by the dispatch timeout, like a task).
    pub(crate) async fn finish(&self, submission: wgpu::SubmissionIndex) -> Result<(), ComputeError> {
        let (tx, rx) = futures_channel::oneshot::channel();
        self.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        self.wait(submission)?;
        rx.await.map_err(|_| self.check_lost().err().unwrap_or(ComputeError::DeviceLost("work abandoned".into())))?;
        self.check_lost()
    }

    /// Seconds one dispatch of `kernel` takes on inputs already on the
    /// device: the inputs are uploaded once, `reps` dispatches run in one
    /// submission, nothing is read back (the kernel's own cost, which
    /// `bench` sets beside the end-to-end [`Gpu::run`]). `now` is a
    /// monotonic clock in seconds.
    pub(crate) async fn dispatch_secs(
        &self,
        kernel: &KernelSpec,
        program: &Program<'_>,
        inputs: &[&[u8]],
        reps: u32,
        now: &dyn Fn() -> f64,
    ) -> Result<f64, ComputeError> {
        self.check_lost()?;
        kernel
            .validate()
            .and_then(|()| kernel.check_inputs(inputs))
            .map_err(|e| ComputeError::InvalidTask(e.to_string()))?;
        let pipeline = self.pipeline(kernel, program).await?;
        let invalid = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let (buffers, outputs) = self.buffers(kernel, &kernel.layout(), inputs);
        let bind_group = self.bind(&pipeline, &buffers);
        let submit = |reps: u32| {
            let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                pass.set_pipeline(&pipeline.pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                let [x, y, z] = program.workgroups;
                for _ in 0..reps {
                    pass.dispatch_workgroups(x, y, z);
                }
            }
            self.queue.submit([encoder.finish()])
        };
        // The upload and a first dispatch (warm caches, lazy pipeline work)
        // untimed; its scope is popped before anything is awaited (error
        // scopes are a stack per thread that other tasks in a tab share).
        let warm_up = submit(1);
        let invalid = invalid.pop();
        self.finish(warm_up).await?;
        if let Some(e) = invalid.await {
            return Err(scope_error(e));
        }
        let start = now();
        self.finish(submit(reps.max(1))).await?;
        let secs = (now() - start) / f64::from(reps.max(1));
        drop(bind_group);
        for (_, buffer) in buffers {
            self.pool.give(buffer);
        }
        for (out, staging, _, _) in outputs {
            drop(out); // the same buffer is also in `buffers`
            self.pool.give(staging);
        }
        Ok(secs)
    }

    /// Runs a kernel and blocks the calling thread until it is done (native
    /// hosts call this from a blocking thread).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_blocking(&self, kernel: &KernelSpec, inputs: &[&[u8]]) -> Result<Vec<Vec<u8>>, ComputeError> {
        pollster::block_on(self.run(kernel, inputs))
    }

    /// The largest single buffer this device allocates and uses without
    /// error, probed by halving from the adapter's limit down to `floor`
    /// (capped at `cap` so the probe stays quick and polite). Remembered:
    /// [`Gpu::device_info`] reports it from then on.
    pub async fn max_stable_allocation(&self, cap: u64, floor: u64) -> u64 {
        let mut size = self.limits.max_buffer_size.min(cap);
        while size >= floor.max(4) {
            let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
            let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("allocation probe"),
                size: size & !3,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            // Touch it, so a lazily-allocating driver really commits the memory.
            self.queue.write_buffer(&buffer, 0, &[0u8; 4]);
            let failed = scope.pop().await.is_some();
            buffer.destroy();
            if !failed {
                self.stable_alloc.store(size & !3, std::sync::atomic::Ordering::Relaxed);
                return size & !3;
            }
            size /= 2;
        }
        0
    }
}
