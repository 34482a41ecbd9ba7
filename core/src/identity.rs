//! Contributor identities: an Ed25519 key pair a worker keeps (a tab in
//! its browser's storage, `shoal worker` in a file), so the same contributor
//! is the same worker tomorrow, on any connection, without an account. The
//! worker id is derived from the public key (`id-` and 32 hex digits), so
//! reputation, epoch work, earnings and slashing, all keyed by worker id,
//! belong to the key and outlive connections and restarts.
//!
//! The hello proves the key by signing, with a domain-separated message,
//! the connection's fresh challenge nonce and the *audience*: the host (and
//! port) the worker dialed. A coordinator accepts the signature only for
//! its own nonce and for the host the connection was made to, so a hello
//! relayed by a man in the middle to another coordinator, or replayed on
//! another connection, is refused.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::ids::WorkerId;

/// Prefix of the worker ids identities own (a token's worker or a guest
/// can never take one: see [`is_identity_id`]).
pub const IDENTITY_ID_PREFIX: &str = "id-";
/// Longest audience accepted (a host name and a port).
pub const MAX_AUDIENCE_LEN: usize = 260;
/// What the signature is over, first: the message is Shoal's, this version's.
const DOMAIN: &[u8] = b"shoal/identity-hello/v1\0";

/// Why an identity's hello is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The public key is not a valid Ed25519 point.
    #[error("the identity's public key is not a valid Ed25519 key")]
    BadKey,
    /// The signature does not verify over this connection's challenge.
    #[error("the identity's signature does not verify for this connection")]
    BadSignature,
    /// The hello claims a worker id that is not its key's.
    #[error("worker id {claimed} is not the identity's ({derived})")]
    WrongId {
        /// What the hello said.
        claimed: String,
        /// What the key gives.
        derived: String,
    },
    /// The hello was signed for another host than the one it reached.
    #[error("the hello was signed for `{signed}`, but reached `{reached}`")]
    WrongAudience {
        /// What the worker signed.
        signed: String,
        /// The host the connection was made to.
        reached: String,
    },
}

/// A contributor's key pair (the worker's side).
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl core::fmt::Debug for Identity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Identity({})", self.worker_id())
    }
}

impl Identity {
    /// The identity of a 32-byte secret seed (random, kept by the worker).
    pub fn from_seed(seed: &[u8; 32]) -> Identity {
        Identity { key: SigningKey::from_bytes(seed) }
    }

    /// The secret seed, to keep.
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The worker id this identity owns.
    pub fn worker_id(&self) -> WorkerId {
        worker_id_of(&self.public_key())
    }

    /// The hello's signature over this connection's challenge nonce and
    /// the host the worker dialed.
    pub fn sign_hello(&self, nonce: &[u8; 16], audience: &str) -> [u8; 64] {
        self.key.sign(&hello_message(nonce, &self.public_key(), audience)).to_bytes()
    }
}

/// The worker id of a public key: `id-` and the first 16 bytes of its
/// SHA-256, in hex.
pub fn worker_id_of(public_key: &[u8; 32]) -> WorkerId {
    let d = crate::Digest::of_parts([b"shoal/identity-id/v1\0".as_slice(), public_key.as_slice()]);
    let mut id = String::with_capacity(IDENTITY_ID_PREFIX.len() + 32);
    id.push_str(IDENTITY_ID_PREFIX);
    for b in &d.as_bytes()[..16] {
        id.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        id.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    WorkerId::new(id).unwrap_or_else(|_| unreachable!("35 characters of [a-z0-9-] make a worker id"))
}

/// Whether a worker id is one only an identity may take.
pub fn is_identity_id(id: &WorkerId) -> bool {
    id.as_str().starts_with(IDENTITY_ID_PREFIX)
}

/// The message a hello signs.
fn hello_message(nonce: &[u8; 16], public_key: &[u8; 32], audience: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 16 + 32 + 2 + audience.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(nonce);
    m.extend_from_slice(public_key);
    m.extend_from_slice(&(audience.len() as u16).to_be_bytes());
    m.extend_from_slice(audience.as_bytes());
    m
}

/// Checks an identity's hello: the signature over this connection's nonce
/// and the host it reached (`reached`, as the connection's `Host` header
/// named it; compared without letter case), and the worker id it claims.
pub fn verify_hello(
    public_key: &[u8; 32],
    signature: &[u8; 64],
    nonce: &[u8; 16],
    audience: &str,
    reached: &str,
    claimed: &WorkerId,
) -> Result<(), IdentityError> {
    if !audience.eq_ignore_ascii_case(reached) {
        return Err(IdentityError::WrongAudience { signed: audience.into(), reached: reached.into() });
    }
    let derived = worker_id_of(public_key);
    if &derived != claimed {
        return Err(IdentityError::WrongId { claimed: claimed.to_string(), derived: derived.to_string() });
    }
    let key = VerifyingKey::from_bytes(public_key).map_err(|_| IdentityError::BadKey)?;
    key.verify_strict(&hello_message(nonce, public_key, audience), &Signature::from_bytes(signature))
        .map_err(|_| IdentityError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hello_verifies_only_for_its_nonce_host_and_id() {
        let me = Identity::from_seed(&[7; 32]);
        let (nonce, host) = ([1; 16], "shoal.example:443");
        let sig = me.sign_hello(&nonce, host);
        let id = me.worker_id();
        assert!(is_identity_id(&id) && id.as_str().len() == 35, "{id}");
        assert_eq!(Identity::from_seed(&me.seed()).worker_id(), id, "the seed is the identity");
        assert_eq!(verify_hello(&me.public_key(), &sig, &nonce, host, "SHOAL.example:443", &id), Ok(()));
        // Another connection's nonce, another coordinator, another id, another key: refused.
        assert_eq!(verify_hello(&me.public_key(), &sig, &[2; 16], host, host, &id), Err(IdentityError::BadSignature));
        assert!(matches!(
            verify_hello(&me.public_key(), &sig, &nonce, host, "evil.example", &id),
            Err(IdentityError::WrongAudience { .. })
        ));
        let other = Identity::from_seed(&[8; 32]);
        assert!(matches!(
            verify_hello(&me.public_key(), &sig, &nonce, host, host, &other.worker_id()),
            Err(IdentityError::WrongId { .. })
        ));
        assert!(matches!(
            verify_hello(&other.public_key(), &sig, &nonce, host, host, &other.worker_id()),
            Err(IdentityError::BadSignature)
        ));
        // The signature is over the audience it claims: naming another host breaks it.
        assert_eq!(
            verify_hello(&me.public_key(), &sig, &nonce, "other:1", "other:1", &id),
            Err(IdentityError::BadSignature)
        );
    }
}
