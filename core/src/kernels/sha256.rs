//! `sha256`: a batch of equal-length messages → their SHA-256 digests.
//! Bit-exact: the GPU output equals the `sha2` crate's digests.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{check_buffer, dispatch_1d, invalid, Checkpoint, KernelError, KernelId};

pub(super) const WGSL: &str = include_str!("wgsl/sha256.wgsl");

/// Integer operations of one SHA-256 compression (64 rounds of ~22 ops
/// plus 48 schedule steps of ~15 ops, rounded).
pub const OPS_PER_BLOCK: u64 = 2_200;
/// The longest message a `sha256` task may hash (the shader's bit length
/// uses 32 bits).
pub const MAX_MESSAGE_LEN: u32 = 1 << 24;

/// Parameters of a `sha256` task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sha256Params {
    /// Number of messages.
    pub count: u32,
    /// Length of every message in bytes.
    pub message_len: u32,
}

impl Sha256Params {
    pub(super) fn input_len(&self) -> u64 {
        u64::from(self.count) * u64::from(self.message_len)
    }

    pub(super) fn validate(&self) -> Result<(), KernelError> {
        if self.count == 0 {
            return Err(invalid(KernelId::Sha256, "count", "must be at least 1"));
        }
        if self.message_len > MAX_MESSAGE_LEN {
            return Err(invalid(KernelId::Sha256, "message_len", format!("must be at most {MAX_MESSAGE_LEN}")));
        }
        check_buffer(KernelId::Sha256, "messages", self.input_len())?;
        check_buffer(KernelId::Sha256, "digests", u64::from(self.count) * 32)
    }

    pub(super) fn blocks_per_message(&self) -> u64 {
        (u64::from(self.message_len) + 9).div_ceil(64)
    }

    pub(super) fn ops(&self) -> u64 {
        u64::from(self.count) * self.blocks_per_message() * OPS_PER_BLOCK
    }

    pub(super) fn dispatch(&self) -> [u32; 3] {
        dispatch_1d(u64::from(self.count), 64)
    }

    pub(super) fn run_cpu(&self, messages: &[u8], cp: &mut Checkpoint<'_>) -> Result<Vec<u8>, KernelError> {
        let len = self.message_len as usize;
        let mut out = Vec::with_capacity(self.count as usize * 32);
        for i in 0..self.count as usize {
            out.extend_from_slice(&Sha256::digest(&messages[i * len..(i + 1) * len]));
            cp.work(len as u64 + 64)?;
        }
        Ok(out)
    }
}
