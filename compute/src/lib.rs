//! Shoal's GPU executor: the one place that runs kernels on a GPU, for
//! both hosts — wgpu targets Vulkan/Metal/DX12 natively and WebGPU in the
//! browser with the same API.
//!
//! - [`Gpu`]: device acquisition (its adapter becomes part of the worker's
//!   class), a pipeline cache per kernel, upload, dispatch, readback, and
//!   typed errors for lost devices, out-of-memory and validation failures.
//! - [`validate_kernel`]: naga validation of a kernel's WGSL against its
//!   declared bindings, before any dispatch (and at job submission).
//! - [`profile`]: the admission benchmark's known answer and the
//!   allocation probe.

mod gpu;
pub mod profile;
mod validate;

pub use gpu::{ComputeError, Gpu, GpuOptions};
pub use validate::{validate_kernel, ShaderError};
