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
//!   the core's CPU references in wasm, declared as a CPU class), the
//!   core's jittered reconnects, a GPU-share duty cycle and a pause.
//!
//! The messages and the throttling rule ([`control`], [`policy`]) are
//! plain Rust, built and tested on every target. The
//! `agent` feature (on by default) builds the Web Worker's side; a page
//! that only drives a worker turns it off.

pub mod control;
pub mod policy;

#[cfg(all(target_arch = "wasm32", feature = "agent"))]
mod agent;
#[cfg(all(target_arch = "wasm32", feature = "agent"))]
mod exec;
#[cfg(all(target_arch = "wasm32", feature = "agent"))]
mod input_store;
#[cfg(all(target_arch = "wasm32", feature = "agent"))]
mod keystore;
#[cfg(target_arch = "wasm32")]
mod page;
#[cfg(all(target_arch = "wasm32", feature = "agent"))]
mod scope;

#[cfg(all(target_arch = "wasm32", feature = "agent"))]
pub use exec::Executor;
#[cfg(target_arch = "wasm32")]
pub use page::ShoalWorker;
#[cfg(all(target_arch = "wasm32", feature = "agent"))]
pub use scope::worker_entry;
