//! # shoal-core
//!
//! Everything in Shoal that is logic and no I/O. This crate never touches a
//! socket, a file, a thread, a timer, a clock or an OS random source: time
//! comes in as an argument ([`time::Millis`]), randomness comes in as bytes
//! chosen by the host, and decisions go out as values. That is what lets the
//! very same code run in the native coordinator, in a native worker and in a
//! browser tab (wasm32), and what makes the hard parts testable as fast,
//! deterministic simulations.
//!
//! Modules:
//! - [`wire`]: the frame codec (`[u32 BE type][u32 BE length][payload]`), the
//!   typed worker protocol and the Pilot-compatible JSON mode.
//! - [`task`]: the lifecycle of one task assignment, its stamps, durations,
//!   timeouts, size bounds and result-file policy.
//! - [`score`]: the polo score of a completed task.
//! - [`auth`]: HMAC worker tokens.
//! - [`kernels`]: the catalogue of compute kernels (WGSL + CPU reference).
//! - [`ids`] and [`digest`]: identifiers and BLAKE3 digests.
//! - [`time`]: the millisecond time type every time-dependent function takes.

pub mod amount;
pub mod auth;
pub mod consensus;
pub mod coordinator;
pub mod digest;
pub mod ids;
pub mod kernels;
pub mod rng;
pub mod score;
pub mod sim;
pub mod task;
pub mod time;
pub mod wire;
pub mod worker;

pub use digest::{Digest, DigestHasher};
pub use ids::{AssignmentId, ConnId, JobId, OriginKey, TaskId, WorkerId};
pub use time::Millis;
