//! One module per page.

pub mod consensus;
pub mod contribute;
pub mod epochs;
pub mod jobs;
pub mod swarm;
pub mod workers;
