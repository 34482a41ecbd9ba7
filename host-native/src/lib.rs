//! Shoal's native host: the coordinator service and the native worker.
//!
//! The service drives `shoal_core`'s sans-I/O coordinator ([`engine`]) and
//! moves bytes for it: workers over WebSocket ([`ws`]), people and
//! programs over gRPC and gRPC-web ([`grpc`]), operators over HTTP
//! ([`http`]), durability in redb ([`store`]). [`worker`] is the native
//! worker; [`config`] the TOML configuration; [`cli`] the `shoal` command.

pub mod access;
pub mod acme;
pub mod backup;
pub mod bench;
pub mod bench_gpu;
mod blob_log;
pub mod cli;
pub mod config;
pub mod embed;
pub mod engine;
pub mod grpc;
pub mod http;
pub mod input_cache;
pub mod keyfile;
pub mod listener;
pub mod metrics;
pub mod pilot;
pub mod proxy;
pub mod service;
pub mod settlement;
pub mod settler;
pub mod site;
pub mod status;
pub mod store;
pub mod swarm_api;
pub mod tls;
pub mod worker;
pub mod ws;

pub use config::ShoalConfig;
pub use service::{Service, ServiceError};
