//! A task on the device: its buffers uploaded, its dispatch and readback
//! copies submitted ([`Gpu::submit`]), then its outputs mapped and read
//! ([`InFlight::outputs`]). Between the two the device works while the
//! host does other things — uploads the next task's inputs, reads the
//! previous one's outputs — which is how a worker with a queue of tasks
//! keeps the device busy (double buffering).

use shoal_core::kernels::{BindingRole, KernelId, KernelSpec};

use super::{scope_error, ComputeError, Gpu, Pipeline};

/// An output buffer, its readback buffer, padded size and data length.
type Readback = (wgpu::Buffer, wgpu::Buffer, u64, u64);

/// A submitted task whose outputs are on their way back.
#[must_use = "a task in flight holds its buffers until its outputs are read"]
pub struct InFlight<'g> {
    gpu: &'g Gpu,
    buffers: Vec<(u32, wgpu::Buffer)>,
    outputs: Vec<Readback>,
    bind_group: wgpu::BindGroup,
    submission: wgpu::SubmissionIndex,
    receivers: Vec<futures_channel::oneshot::Receiver<Result<(), wgpu::BufferAsyncError>>>,
}

impl std::fmt::Debug for InFlight<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight").field("outputs", &self.outputs.len()).finish_non_exhaustive()
    }
}

impl Gpu {
    /// Runs a kernel on its inputs and returns its outputs (each exactly
    /// its declared length).
    pub async fn run(&self, kernel: &KernelSpec, inputs: &[&[u8]]) -> Result<Vec<Vec<u8>>, ComputeError> {
        self.submit(kernel, inputs).await?.outputs().await
    }

    /// Uploads a task's inputs and submits its dispatch and the copies of
    /// its outputs; the outputs are read with [`InFlight::outputs`].
    pub async fn submit(&self, kernel: &KernelSpec, inputs: &[&[u8]]) -> Result<InFlight<'_>, ComputeError> {
        self.check_lost()?;
        self.check_stuck()?;
        kernel
            .validate()
            .and_then(|()| kernel.check_inputs(inputs))
            .map_err(|e| ComputeError::InvalidTask(e.to_string()))?;
        if kernel.id() == KernelId::MatmulF16 && !self.has_f16() {
            return Err(ComputeError::InvalidTask("matmul_f16 needs shader-f16, which this device lacks".into()));
        }
        let layout = kernel.layout();
        for b in &layout {
            let limit = match b.role {
                BindingRole::Params => self.limits.max_uniform_buffer_binding_size,
                _ => self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size),
            };
            if b.size > limit {
                return Err(ComputeError::TooLarge { what: format!("binding {}", b.binding), bytes: b.size, limit });
            }
        }
        let program = self.program(kernel);
        let pipeline = self.pipeline(kernel, &program).await?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let invalid = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let (buffers, outputs) = self.buffers(kernel, &layout, inputs);
        let bind_group = self.bind(&pipeline, &buffers);
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("task") });
        // Reused output buffers start from zeros, as fresh ones do: no byte
        // of an earlier task can reach this one's result.
        for (out, _, _, _) in &outputs {
            encoder.clear_buffer(out, 0, None);
        }
        {
            let mut pass =
                encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
            pass.set_pipeline(&pipeline.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            let [x, y, z] = program.workgroups;
            pass.dispatch_workgroups(x, y, z);
        }
        for (out, staging, size, _) in &outputs {
            encoder.copy_buffer_to_buffer(out, 0, staging, 0, *size);
        }
        let submission = self.queue.submit([encoder.finish()]);
        // Both scopes are popped before either is awaited: error scopes are a
        // stack per thread, and in a tab another task may push its own while
        // this one waits.
        let (invalid, oom) = (invalid.pop(), oom.pop());
        if let Some(e) = invalid.await {
            return Err(scope_error(e));
        }
        if let Some(e) = oom.await {
            return Err(scope_error(e));
        }
        let mut receivers = Vec::with_capacity(outputs.len());
        for (_, staging, _, _) in &outputs {
            let (tx, rx) = futures_channel::oneshot::channel();
            staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
            receivers.push(rx);
        }
        Ok(InFlight { gpu: self, buffers, outputs, bind_group, submission, receivers })
    }

    /// The bind group of a task's buffers.
    pub(super) fn bind(&self, pipeline: &Pipeline, buffers: &[(u32, wgpu::Buffer)]) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry<'_>> = buffers
            .iter()
            .map(|(binding, buffer)| wgpu::BindGroupEntry { binding: *binding, resource: buffer.as_entire_binding() })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("task"),
            layout: &pipeline.layout,
            entries: &entries,
        })
    }

    /// The task's buffers, by binding, and its outputs with their readback
    /// buffers, padded sizes and data lengths.
    pub(super) fn buffers(
        &self,
        kernel: &KernelSpec,
        layout: &[shoal_core::kernels::Binding],
        inputs: &[&[u8]],
    ) -> (Vec<(u32, wgpu::Buffer)>, Vec<Readback>) {
        let params = kernel.params_bytes();
        let mut buffers = Vec::with_capacity(layout.len());
        let mut outputs = Vec::new();
        let write = |buffer: &wgpu::Buffer, data: &[u8], size: u64| {
            if data.len() as u64 == size {
                self.queue.write_buffer(buffer, 0, data);
            } else {
                self.queue.write_buffer(buffer, 0, &padded(data, size));
            }
        };
        for b in layout {
            let buffer = match b.role {
                BindingRole::Params => {
                    let buf = self.pool.take(
                        &self.device,
                        wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                        b.size,
                    );
                    write(&buf, &params, b.size);
                    buf
                }
                BindingRole::Input(i) => {
                    let data = inputs.get(usize::from(i)).copied().unwrap_or_default();
                    let buf = self.pool.take(
                        &self.device,
                        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                        b.size,
                    );
                    write(&buf, data, b.size);
                    buf
                }
                BindingRole::Output(_) => {
                    let usage =
                        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
                    let out = self.pool.take(&self.device, usage, b.size);
                    let staging = self.pool.take(
                        &self.device,
                        wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        b.size,
                    );
                    outputs.push((out.clone(), staging, b.size, b.data_len));
                    out
                }
            };
            buffers.push((b.binding, buffer));
        }
        (buffers, outputs)
    }
}

impl InFlight<'_> {
    /// Waits for the task and reads its outputs (each exactly its declared
    /// length); its buffers go back to the device's pool.
    pub async fn outputs(self) -> Result<Vec<Vec<u8>>, ComputeError> {
        let gpu = self.gpu;
        gpu.wait(self.submission)?;
        let mut result = Vec::with_capacity(self.outputs.len());
        for ((_, staging, _, data_len), rx) in self.outputs.iter().zip(self.receivers) {
            match rx.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(ComputeError::Readback(e.to_string())),
                Err(_) => {
                    return Err(gpu.check_lost().err().unwrap_or(ComputeError::Readback("mapping abandoned".into())))
                }
            }
            let view = staging.slice(..).get_mapped_range().map_err(|e| ComputeError::Readback(e.to_string()))?;
            let bytes = view[..*data_len as usize].to_vec();
            drop(view);
            staging.unmap();
            result.push(bytes);
        }
        gpu.check_lost()?;
        // Completed and unmapped: everything goes back to the pool.
        drop(self.bind_group);
        for (_, buffer) in self.buffers {
            gpu.pool.give(buffer);
        }
        for (out, staging, _, _) in self.outputs {
            drop(out); // the same buffer is also in `buffers`
            gpu.pool.give(staging);
        }
        Ok(result)
    }
}

/// `data` zero-padded to `size` bytes (bindings are multiples of 4 and never empty).
fn padded(data: &[u8], size: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(size as usize);
    v.extend_from_slice(data);
    v.resize(size as usize, 0);
    v
}
