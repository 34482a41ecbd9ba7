//! Worker tokens: `"shoal_" + hex(HMAC-SHA256(master_secret, worker_id))`.
//!
//! An operator derives a worker's token from a master secret and the
//! worker's id and hands it to the worker; the coordinator recomputes it on
//! every hello and compares in constant time. No token table is stored, so
//! several coordinators sharing the secret accept the same workers.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::digest::{decode_hex_into, hex_lower};
use crate::ids::WorkerId;

type HmacSha256 = Hmac<Sha256>;

/// The prefix of every worker token.
pub const TOKEN_PREFIX: &str = "shoal_";
/// Length of a token: prefix + 64 hex characters.
pub const TOKEN_LEN: usize = TOKEN_PREFIX.len() + 64;
/// The shortest master secret accepted (the reference accepted an empty one).
pub const MIN_SECRET_LEN: usize = 16;

/// Why a secret or a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The master secret is too short to be a secret.
    #[error("master secret is {0} bytes; at least {MIN_SECRET_LEN} are required")]
    WeakSecret(usize),
    /// No token was presented.
    #[error("missing auth token")]
    MissingToken,
    /// The token does not have the token shape.
    #[error("malformed auth token (expected {TOKEN_PREFIX} followed by 64 hex characters)")]
    Malformed,
    /// The token is well-formed but not this worker's.
    #[error("invalid auth token")]
    Invalid,
}

/// The operator's master secret.
#[derive(Clone)]
pub struct MasterSecret(Vec<u8>);

impl MasterSecret {
    /// Wraps secret bytes, refusing fewer than [`MIN_SECRET_LEN`].
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, AuthError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_SECRET_LEN {
            return Err(AuthError::WeakSecret(bytes.len()));
        }
        Ok(MasterSecret(bytes))
    }

    /// A 32-byte key derived from the secret for one purpose (`context`),
    /// e.g. the coordinator's settlement signing key: the secret itself is
    /// never used twice.
    pub fn derive_seed(&self, context: &str) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(b"shoal derived key v1\0");
        mac.update(context.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn mac(&self, worker_id: &WorkerId) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(worker_id.as_str().as_bytes());
        mac
    }
}

impl core::fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "MasterSecret(<{} bytes redacted>)", self.0.len())
    }
}

/// The token of `worker_id` under `secret`.
pub fn derive_token(secret: &MasterSecret, worker_id: &WorkerId) -> String {
    let tag = secret.mac(worker_id).finalize().into_bytes();
    let mut s = String::with_capacity(TOKEN_LEN);
    s.push_str(TOKEN_PREFIX);
    s.push_str(&hex_lower(&tag));
    s
}

/// Checks `token` for `worker_id` in constant time (with respect to the
/// token's content; its shape is checked first).
pub fn verify_token(secret: &MasterSecret, worker_id: &WorkerId, token: &str) -> Result<(), AuthError> {
    if token.is_empty() {
        return Err(AuthError::MissingToken);
    }
    let hex = token.strip_prefix(TOKEN_PREFIX).ok_or(AuthError::Malformed)?;
    if hex.len() != 64 {
        return Err(AuthError::Malformed);
    }
    let mut tag = [0u8; 32];
    decode_hex_into(hex, &mut tag).map_err(|_| AuthError::Malformed)?;
    secret.mac(worker_id).verify_slice(&tag).map_err(|_| AuthError::Invalid)
}

/// Domain separation of hello proofs.
const PROOF_CONTEXT: &[u8] = b"shoal hello proof v1";

fn proof_mac(key: &[u8], nonce: &[u8; 16], worker_id: &WorkerId, max_concurrent: u16) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(PROOF_CONTEXT);
    mac.update(nonce);
    mac.update(&max_concurrent.to_le_bytes());
    mac.update(worker_id.as_str().as_bytes());
    mac
}

/// What a worker sends instead of its token: an HMAC keyed by the token
/// over the connection's challenge, its declared depth and its id. The
/// token never crosses the wire, and a proof is good for one connection
/// only (a recorded hello replayed elsewhere meets another challenge).
pub fn hello_proof(token: &str, nonce: &[u8; 16], worker_id: &WorkerId, max_concurrent: u16) -> [u8; 32] {
    proof_mac(token.as_bytes(), nonce, worker_id, max_concurrent).finalize().into_bytes().into()
}

/// Checks a hello proof against the token `secret` derives for `worker_id`,
/// in constant time.
pub fn verify_hello_proof(
    secret: &MasterSecret,
    worker_id: &WorkerId,
    nonce: &[u8; 16],
    max_concurrent: u16,
    proof: &[u8; 32],
) -> Result<(), AuthError> {
    let token = derive_token(secret, worker_id);
    proof_mac(token.as_bytes(), nonce, worker_id, max_concurrent).verify_slice(proof).map_err(|_| AuthError::Invalid)
}
