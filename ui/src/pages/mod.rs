//! One module per page.

pub mod contribute;
pub mod epochs;
pub mod jobs;
pub mod swarm;
pub mod workers;
