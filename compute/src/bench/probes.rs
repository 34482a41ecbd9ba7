//! Microbenchmarks of the device's practical limits: arithmetic
//! throughput (f32 and f16 fused multiply-add, 32-bit integer operations),
//! device memory bandwidth (a copy kernel) and host↔device transfers.
//! Each probe grows its work until one measurement takes a fair share of
//! the time budget, so a software rasteriser and an H200 are both timed
//! over a span long enough to trust.

use crate::gpu::{scope_error, ComputeError, Gpu};

const FMA_F32: &str = include_str!("fma_f32.wgsl");
const FMA_F16: &str = include_str!("fma_f16.wgsl");
const INT_OPS: &str = include_str!("int_ops.wgsl");
const COPY: &str = include_str!("copy.wgsl");

/// Workgroups of 256 invocations an arithmetic probe dispatches (a
/// million invocations: enough to fill the largest GPUs).
const ARITH_GROUPS: u32 = 4096;
/// Operations per loop step of one invocation: eight vec4 chains, two
/// flops per lane for a fused multiply-add, three integer operations.
const FMA_OPS_PER_STEP: u64 = 8 * 4 * 2;
const INT_OPS_PER_STEP: u64 = 8 * 4 * 3;
/// Largest buffer the bandwidth probes move (less in a tab, whose memory
/// is the page's).
#[cfg(not(target_arch = "wasm32"))]
const BANDWIDTH_BYTES: u64 = 256 << 20;
#[cfg(target_arch = "wasm32")]
const BANDWIDTH_BYTES: u64 = 64 << 20;

/// A probe's pipeline and its bind group layout.
struct Probe {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// Builds a probe's pipeline; a shader the device refuses is an error, not
/// a panic of the uncaptured-error handler.
async fn compile(gpu: &Gpu, wgsl: &str, label: &str) -> Result<Probe, ComputeError> {
    let (device, _, _) = gpu.parts();
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(wgsl.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: wgpu::PipelineCompilationOptions::default(),
        cache: None,
    });
    if let Some(e) = scope.pop().await {
        return Err(scope_error(e));
    }
    let layout = pipeline.get_bind_group_layout(0);
    Ok(Probe { pipeline, layout })
}

/// Buffers of the given sizes and usages; memory the device cannot give is
/// an error, not a panic.
async fn buffers<const N: usize>(
    gpu: &Gpu,
    wanted: [(u64, wgpu::BufferUsages); N],
) -> Result<[wgpu::Buffer; N], ComputeError> {
    let scope = gpu.parts().0.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let made = wanted.map(|(size, usage)| buffer(gpu, size, usage));
    match scope.pop().await {
        Some(e) => Err(scope_error(e)),
        None => Ok(made),
    }
}

fn buffer(gpu: &Gpu, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
    gpu.parts().0.create_buffer(&wgpu::BufferDescriptor {
        label: Some("probe"),
        size,
        usage,
        mapped_at_creation: false,
    })
}

/// A uniform buffer holding four u32 parameters.
fn params(gpu: &Gpu, words: [u32; 4]) -> wgpu::Buffer {
    let b = buffer(gpu, 16, wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST);
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    gpu.parts().1.write_buffer(&b, 0, &bytes);
    b
}

fn bind(gpu: &Gpu, probe: &Probe, buffers: &[&wgpu::Buffer]) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry<'_>> = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
        .collect();
    gpu.parts().0.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &probe.layout,
        entries: &entries,
    })
}

/// Seconds `reps` dispatches of `[x, y, 1]` groups take in one submission.
async fn time_dispatches(
    gpu: &Gpu,
    probe: &Probe,
    group: &wgpu::BindGroup,
    [x, y]: [u32; 2],
    reps: u32,
    now: &dyn Fn() -> f64,
) -> Result<f64, ComputeError> {
    let (device, queue, _) = gpu.parts();
    // Validation errors of the pass surface here; the scope is popped
    // before anything is awaited (error scopes are a stack per thread).
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
        pass.set_pipeline(&probe.pipeline);
        pass.set_bind_group(0, group, &[]);
        for _ in 0..reps {
            pass.dispatch_workgroups(x, y, 1);
        }
    }
    let start = now();
    let submission = queue.submit([encoder.finish()]);
    let errors = scope.pop();
    gpu.finish(submission).await?;
    let secs = now() - start;
    match errors.await {
        Some(e) => Err(scope_error(e)),
        None => Ok(secs),
    }
}

/// Operations per second of an arithmetic probe: the loop count doubles
/// (from a warm-up of one step) until a dispatch takes a quarter of
/// `budget` seconds.
async fn arithmetic(
    gpu: &Gpu,
    wgsl: &str,
    ops_per_step: u64,
    budget: f64,
    now: &dyn Fn() -> f64,
) -> Result<f64, ComputeError> {
    let probe = compile(gpu, wgsl, "arithmetic probe").await?;
    let invocations = u64::from(ARITH_GROUPS) * 256;
    let [out] = buffers(gpu, [(invocations * 16, wgpu::BufferUsages::STORAGE)]).await?;
    let mut iters = 1u32;
    let mut best = 0f64;
    loop {
        let p = params(gpu, [iters, 7, 0, 0]);
        let group = bind(gpu, &probe, &[&p, &out]);
        let secs = time_dispatches(gpu, &probe, &group, [ARITH_GROUPS, 1], 1, now).await?;
        // The first dispatch (one step) warms the pipeline up and is not counted.
        if iters > 1 {
            best = best.max(invocations as f64 * f64::from(iters) * ops_per_step as f64 / secs.max(1e-9));
            if secs >= budget / 4.0 || iters >= 1 << 24 {
                return Ok(best);
            }
        }
        iters *= 2;
    }
}

/// The device's practical limits, each measured by a probe of its own.
#[derive(Clone, Debug, PartialEq)]
pub struct Peaks {
    /// f32 fused multiply-add throughput, flops/s.
    pub f32_flops: f64,
    /// f16 fused multiply-add throughput, flops/s (None: no `shader-f16`).
    pub f16_flops: Option<f64>,
    /// 32-bit integer operations/s (add, shift, xor).
    pub int_ops: f64,
    /// Device memory bandwidth, bytes read plus written per second.
    pub copy_bytes: f64,
    /// Host to device, bytes/s (`write_buffer` to done).
    pub upload_bytes: f64,
    /// Device to host, bytes/s (copy, map, read into host memory).
    pub download_bytes: f64,
}

/// Measures the device's limits, spending about `budget` seconds on each.
pub async fn measure(gpu: &Gpu, budget: f64, now: &dyn Fn() -> f64) -> Result<Peaks, ComputeError> {
    let f32_flops = arithmetic(gpu, FMA_F32, FMA_OPS_PER_STEP, budget, now).await?;
    let f16_flops =
        if gpu.has_f16() { Some(arithmetic(gpu, FMA_F16, FMA_OPS_PER_STEP, budget, now).await?) } else { None };
    let int_ops = arithmetic(gpu, INT_OPS, INT_OPS_PER_STEP, budget, now).await?;
    let copy_bytes = copy(gpu, budget, now).await?;
    let (upload_bytes, download_bytes) = transfers(gpu, now).await?;
    Ok(Peaks { f32_flops, f16_flops, int_ops, copy_bytes, upload_bytes, download_bytes })
}

/// The size the bandwidth probes move: 256 MiB or what the device binds.
fn bandwidth_bytes(gpu: &Gpu) -> u64 {
    let (_, _, limits) = gpu.parts();
    let most = BANDWIDTH_BYTES.min(limits.max_storage_buffer_binding_size).min(limits.max_buffer_size);
    most & !(16 * 256 - 1)
}

/// Device memory bandwidth: bytes read plus written per second by a copy
/// kernel, repeated until one submission takes a quarter of `budget`.
async fn copy(gpu: &Gpu, budget: f64, now: &dyn Fn() -> f64) -> Result<f64, ComputeError> {
    let probe = compile(gpu, COPY, "copy probe").await?;
    let size = bandwidth_bytes(gpu);
    let count = (size / 16) as u32;
    let [src, dst] = buffers(gpu, [(size, wgpu::BufferUsages::STORAGE), (size, wgpu::BufferUsages::STORAGE)]).await?;
    let p = params(gpu, [count, 0, 0, 0]);
    let group = bind(gpu, &probe, &[&p, &src, &dst]);
    let groups = u64::from(count).div_ceil(256);
    let x = groups.min(32_768) as u32;
    let y = groups.div_ceil(u64::from(x)) as u32;
    time_dispatches(gpu, &probe, &group, [x, y], 1, now).await?; // warm-up: first touch of the memory
    let mut reps = 1u32;
    loop {
        let secs = time_dispatches(gpu, &probe, &group, [x, y], reps, now).await?;
        if secs >= budget / 4.0 || reps >= 1 << 12 {
            return Ok(2.0 * size as f64 * f64::from(reps) / secs.max(1e-9));
        }
        reps *= 2;
    }
}

/// Host→device and device→host bytes/s, the best of three transfers of
/// the bandwidth size each.
async fn transfers(gpu: &Gpu, now: &dyn Fn() -> f64) -> Result<(f64, f64), ComputeError> {
    let (device, queue, _) = gpu.parts();
    let size = bandwidth_bytes(gpu);
    let host: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let [on_device, staging] = buffers(
        gpu,
        [
            (size, wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC),
            (size, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST),
        ],
    )
    .await?;
    let (mut up, mut down) = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        let start = now();
        queue.write_buffer(&on_device, 0, &host);
        gpu.finish(queue.submit([])).await?;
        up = up.min(now() - start);
        let start = now();
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        encoder.copy_buffer_to_buffer(&on_device, 0, &staging, 0, size);
        let submission = queue.submit([encoder.finish()]);
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        gpu.finish(submission).await?;
        match rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ComputeError::Readback(e.to_string())),
            Err(_) => return Err(ComputeError::Readback("mapping abandoned".into())),
        }
        let view = staging.slice(..).get_mapped_range().map_err(|e| ComputeError::Readback(e.to_string()))?;
        let back = view.to_vec();
        drop(view);
        staging.unmap();
        down = down.min(now() - start);
        if back != host {
            return Err(ComputeError::Readback("the bytes read back differ from those written".into()));
        }
    }
    Ok((size as f64 / up.max(1e-9), size as f64 / down.max(1e-9)))
}
