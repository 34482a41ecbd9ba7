//! What jobs being received may hold before the coordinator queues them:
//! their input bytes across every `SubmitJob` stream (one budget for all
//! clients, so concurrent uploads cannot exhaust memory before the core's
//! queued-input budget applies), and the streams one client address may
//! have open at once. Each is refused as resource exhausted naming its
//! setting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tonic::Status;

/// The limits and what is held against them now.
#[derive(Clone, Debug)]
pub struct SubmitLimits {
    receiving: Arc<AtomicU64>,
    max_receiving_bytes: u64,
    streams: Arc<Mutex<HashMap<Option<IpAddr>, u32>>>,
    max_streams_per_client: u32,
}

impl SubmitLimits {
    /// `server.max_receiving_bytes` and `server.max_submits_per_client`.
    pub fn new(max_receiving_bytes: u64, max_streams_per_client: u32) -> Self {
        SubmitLimits {
            receiving: Arc::new(AtomicU64::new(0)),
            max_receiving_bytes,
            streams: Arc::new(Mutex::new(HashMap::new())),
            max_streams_per_client: max_streams_per_client.max(1),
        }
    }

    /// Opens a stream for `client` (None: its address is unknown, as
    /// behind gRPC-web; those share one allowance).
    pub fn open(&self, client: Option<IpAddr>) -> Result<Receiving, Status> {
        let mut streams = self.streams.lock().map_err(|_| Status::internal("submit limits poisoned"))?;
        let n = streams.entry(client).or_insert(0);
        if *n >= self.max_streams_per_client {
            let why = format!(
                "{} jobs are already being submitted from this address; server.max_submits_per_client is {}",
                n, self.max_streams_per_client
            );
            return Err(super::errors::with_reason(tonic::Code::ResourceExhausted, "TOO_MANY_SUBMITS", why));
        }
        *n += 1;
        Ok(Receiving { limits: self.clone(), client, held: 0 })
    }

    /// Input bytes of jobs being received now.
    pub fn receiving(&self) -> u64 {
        self.receiving.load(Ordering::Relaxed)
    }
}

/// One stream being received: holds its bytes and its place until dropped.
#[derive(Debug)]
pub struct Receiving {
    limits: SubmitLimits,
    client: Option<IpAddr>,
    held: u64,
}

impl Receiving {
    /// Holds `bytes` more, or refuses if all streams together would pass
    /// `server.max_receiving_bytes`.
    pub fn hold(&mut self, bytes: u64) -> Result<(), Status> {
        let limit = self.limits.max_receiving_bytes;
        let total = &self.limits.receiving;
        let mut now = total.load(Ordering::Relaxed);
        loop {
            if now.saturating_add(bytes) > limit {
                let why = format!(
                    "jobs being received already hold {now} bytes of inputs; server.max_receiving_bytes is {limit}"
                );
                return Err(super::errors::with_reason(tonic::Code::ResourceExhausted, "RECEIVING_FULL", why));
            }
            match total.compare_exchange_weak(now, now + bytes, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(seen) => now = seen,
            }
        }
        self.held += bytes;
        Ok(())
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        self.limits.receiving.fetch_sub(self.held, Ordering::AcqRel);
        if let Ok(mut streams) = self.limits.streams.lock() {
            if let Some(n) = streams.get_mut(&self.client) {
                *n -= 1;
                if *n == 0 {
                    streams.remove(&self.client);
                }
            }
        }
    }
}
