//! Shoal's GPU executor: the one place that runs kernels on a GPU, for
//! both hosts — wgpu targets Vulkan/Metal/DX12 natively and WebGPU in the
//! browser with the same API.
//!
//! - [`Gpu`]: device acquisition (its adapter becomes part of the worker's
//!   class), a pipeline cache per kernel, upload, dispatch, readback, and
//!   typed errors for lost devices, out-of-memory and validation failures.
//! - [`validate_kernel`]: naga validation of a kernel's WGSL against its
//!   declared bindings, before any dispatch (and at job submission).
//! - [`bench`]: the device's measured limits and every kernel against
//!   them (`shoal bench gpu`, the browser harness).
//! - [`profile`]: the admission benchmark's known answer and the
//!   allocation probe.

pub mod bench;
mod gpu;
pub mod profile;
mod validate;

pub use gpu::{ComputeError, Gpu, GpuOptions, InFlight, Tuned, Tuning};
pub use validate::{validate_kernel, ShaderError};
/// The wgpu this executor is built on (its adapter types appear in the API).
pub use wgpu;
