//! The control plane: the `shoal.v1.ShoalService` gRPC service (also
//! served as gRPC-web), and the conversions between its messages and the
//! core's types.
//!
//! - `service`: the table of calls, each checked against the caller;
//! - `jobs`, `swarm`, `tokens`: the calls themselves;
//! - `errors`: statuses with `google.rpc` details, and one line for people;
//! - `paging`: page sizes and page tokens of the list calls;
//! - `calls`: the per-call counters of both ports;
//! - `intake`: a job as it streams in, checked message by message;
//! - `limits`: what jobs being received may hold, in all and per client;
//! - `convert`: the service's messages to and from the core's types;
//! - `auth`: the bearer-token check and the client side that sends it;
//! - `codec`: the prost codec that reserves each message's size.

mod auth;
mod calls;
pub(crate) mod codec;
mod convert;
mod dead_letters;
pub mod errors;
mod intake;
mod jobs;
mod limits;
mod paging;
mod pending;
mod service;
mod swarm;
mod tokens;

pub use self::auth::{Authorize, WithToken};
pub use self::calls::CountCalls;
pub use self::convert::{event_to_pb, kernel_from_pb, kernel_to_pb, parse_job};
pub use self::intake::{JobIntake, MAX_JOB_NAME_BYTES, MAX_REQUEST_ID_CHARS, MAX_TASKS_PER_JOB};
pub use self::limits::{Receiving, SubmitLimits};
pub use self::service::ShoalService;
pub use self::tokens::{role_by_name, role_name};

/// `shoal/v1/shoal.proto` as an encoded file descriptor set, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("shoal_descriptor");

/// The generated protobuf types and service stubs.
#[allow(missing_docs, unreachable_pub, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("shoal.v1");
    // The proto3 JSON mapping of every message (pbjson), for `--json`.
    include!(concat!(env!("OUT_DIR"), "/shoal.v1.serde.rs"));
}

/// A gRPC channel to `url`: `http://`, or `https://` verified against the
/// system's roots and `ca` (a PEM file) when given. Never unverified.
pub async fn channel(url: &str, ca: Option<&std::path::Path>) -> Result<tonic::transport::Channel, ChannelError> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| ChannelError(format!("`{url}` is not a URL: {e}")))?;
    if url.starts_with("https://") {
        let mut tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).map_err(|e| ChannelError(format!("cannot read {}: {e}", ca.display())))?;
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        endpoint = endpoint.tls_config(tls).map_err(|e| ChannelError(format!("TLS: {e}")))?;
    }
    endpoint.connect().await.map_err(|e| ChannelError(describe(&e)))
}

/// Why a gRPC channel could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ChannelError(pub String);

/// An error with its causes (tonic hides a TLS refusal two levels down).
fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}
