//! Shoal's browser worker: a visitor's tab contributes WebGPU compute to a
//! coordinator, as a verified worker like any other.
//!
//! Two halves talk by `postMessage` (JSON of [`control::Control`] and
//! [`control::ToPage`]):
//! - the **page** ([`ShoalWorker`], wasm32 only) starts a dedicated Web
//!   Worker and offers `start / stop / pause / resume / setGpuShare` and a
//!   status callback — what a "contribute" page calls;
//! - the **Web Worker** ([`worker_entry`], wasm32 only) runs the agent: the
//!   core's [`shoal_core::worker::WorkerSession`] over a gloo-net WebSocket
//!   with the core's frames, kernels on WebGPU through `shoal-compute` (or
//!   the core's CPU references in wasm, declared as a CPU class), jittered
//!   reconnects, a GPU-share duty cycle and a pause.
//!
//! The messages and the throttling and backoff rules ([`control`],
//! [`policy`]) are plain Rust, built and tested on every target.

pub mod control;
pub mod policy;

#[cfg(target_arch = "wasm32")]
mod agent;
#[cfg(target_arch = "wasm32")]
mod exec;
#[cfg(target_arch = "wasm32")]
mod page;
#[cfg(target_arch = "wasm32")]
mod scope;

#[cfg(target_arch = "wasm32")]
pub use exec::Executor;
#[cfg(target_arch = "wasm32")]
pub use page::ShoalWorker;
#[cfg(target_arch = "wasm32")]
pub use scope::worker_entry;
