//! The control plane: the `shoal.v1.Shoal` gRPC service (also served as
//! gRPC-web), and the conversions between its messages and the core's types.
//!
//! - `service`: the calls themselves;
//! - `intake`: a job as it streams in, checked message by message;
//! - `limits`: what jobs being received may hold, in all and per client;
//! - `convert`: the service's messages to and from the core's types;
//! - `auth`: the bearer-token check and the client side that sends it;
//! - `codec`: the prost codec that reserves each message's size.

mod auth;
pub(crate) mod codec;
mod convert;
mod intake;
mod limits;
mod service;

pub use self::auth::{RequireToken, WithToken};
pub use self::convert::{event_to_pb, kernel_from_pb, kernel_to_pb, parse_job};
pub use self::intake::{JobIntake, MAX_JOB_NAME_BYTES, MAX_TASKS_PER_JOB};
pub use self::limits::{Receiving, SubmitLimits};
pub use self::service::ShoalService;

/// The generated protobuf types and service stubs.
#[allow(missing_docs, unreachable_pub, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("shoal.v1");
}
