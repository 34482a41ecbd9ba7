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
use serde::{Deserialize, Serialize};

use crate::ids::WorkerId;

/// Prefix of the worker ids identities own (a token's worker or a guest
/// can never take one: see [`is_identity_id`]).
pub const IDENTITY_ID_PREFIX: &str = "id-";
/// Longest audience accepted (a host name and a port).
pub const MAX_AUDIENCE_LEN: usize = 260;
/// What the signature is over, first: the message is Shoal's, this version's.
const DOMAIN: &[u8] = b"shoal/identity-hello/v1\0";

/// Longest payout address accepted, in bytes.
pub const MAX_PAYOUT_LEN: usize = 128;
/// Longest display name or team name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// What a contributor says about itself: where its earnings go, and how
/// leaderboards show it. It travels in the identity's hello, under the
/// identity's signature, so nobody but the key's holder can set or change
/// it; a site that embeds the worker sets the payout address for its
/// visitors (the site owner is credited).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Profile {
    /// Where payouts go (free-form: the operator's pattern decides what is
    /// valid, `coordinator.payout_pattern`); empty: none.
    pub payout: String,
    /// A display name; empty: none.
    pub name: String,
    /// A team; empty: none.
    pub team: String,
}

impl Profile {
    /// Checks lengths and characters (printable, no control characters;
    /// the address also without spaces), naming the field at fault.
    pub fn check(&self) -> Result<(), IdentityError> {
        let bad = |field: &'static str, reason: String| Err(IdentityError::BadProfile { field, reason });
        for (field, value, max) in [
            ("payout", &self.payout, MAX_PAYOUT_LEN),
            ("name", &self.name, MAX_NAME_LEN),
            ("team", &self.team, MAX_NAME_LEN),
        ] {
            if value.len() > max {
                return bad(field, format!("{} bytes, at most {max}", value.len()));
            }
            if value.chars().any(char::is_control) {
                return bad(field, "control characters".into());
            }
            if value.trim() != value {
                return bad(field, "leading or trailing spaces".into());
            }
        }
        if self.payout.chars().any(char::is_whitespace) {
            return bad("payout", "spaces".into());
        }
        Ok(())
    }

    /// Whether it says nothing.
    pub fn is_empty(&self) -> bool {
        self.payout.is_empty() && self.name.is_empty() && self.team.is_empty()
    }
}

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
    /// The profile has a field that is too long or not text.
    #[error("the identity's {field} is refused: {reason}")]
    BadProfile {
        /// Which field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
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

    /// The hello's signature over this connection's challenge nonce, the
    /// host the worker dialed and the profile it declares.
    pub fn sign_hello(&self, nonce: &[u8; 16], audience: &str, profile: Option<&Profile>) -> [u8; 64] {
        self.sign(&hello_message(nonce, &self.public_key(), audience, profile))
    }

    /// A signature over `message` (what [`hello_message`] built).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
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

/// The message a hello signs: the domain, the nonce, the key, then the
/// audience and (if declared) the profile's fields, each length-prefixed.
/// Public so a worker whose key lives elsewhere (a browser's non-extractable
/// WebCrypto key) signs exactly these bytes.
pub fn hello_message(nonce: &[u8; 16], public_key: &[u8; 32], audience: &str, profile: Option<&Profile>) -> Vec<u8> {
    fn field(m: &mut Vec<u8>, s: &str) {
        m.extend_from_slice(&(s.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
        m.extend_from_slice(s.as_bytes());
    }
    let mut m = Vec::with_capacity(DOMAIN.len() + 16 + 32 + 2 + audience.len() + 1);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(nonce);
    m.extend_from_slice(public_key);
    field(&mut m, audience);
    match profile {
        None => m.push(0),
        Some(p) => {
            m.push(1);
            field(&mut m, &p.payout);
            field(&mut m, &p.name);
            field(&mut m, &p.team);
        }
    }
    m
}

/// What a coordinator signs for a settled epoch: its number and the
/// settlement's digest (which covers every payout and address).
pub fn settlement_message(epoch: u64, digest: &crate::Digest) -> Vec<u8> {
    let mut m = Vec::with_capacity(32 + 8 + 32);
    m.extend_from_slice(b"shoal/settlement/v1\0");
    m.extend_from_slice(&epoch.to_be_bytes());
    m.extend_from_slice(digest.as_bytes());
    m
}

/// Checks an Ed25519 signature over `message` (a settlement's, as
/// [`settlement_message`] builds it).
pub fn verify_signature(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> Result<(), IdentityError> {
    let key = VerifyingKey::from_bytes(public_key).map_err(|_| IdentityError::BadKey)?;
    key.verify_strict(message, &Signature::from_bytes(signature)).map_err(|_| IdentityError::BadSignature)
}

/// Checks an identity's hello: the signature over this connection's nonce
/// and the host it reached (`reached`, as the connection's `Host` header
/// named it; compared without letter case), the profile it declares, and
/// the worker id it claims.
pub fn verify_hello(
    public_key: &[u8; 32],
    signature: &[u8; 64],
    nonce: &[u8; 16],
    (audience, reached): (&str, &str),
    profile: Option<&Profile>,
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
    if let Some(p) = profile {
        p.check()?;
    }
    key.verify_strict(&hello_message(nonce, public_key, audience, profile), &Signature::from_bytes(signature))
        .map_err(|_| IdentityError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hello_verifies_only_for_its_nonce_host_and_id() {
        let me = Identity::from_seed(&[7; 32]);
        let (nonce, host) = ([1; 16], "shoal.example:443");
        let sig = me.sign_hello(&nonce, host, None);
        let id = me.worker_id();
        assert!(is_identity_id(&id) && id.as_str().len() == 35, "{id}");
        assert_eq!(Identity::from_seed(&me.seed()).worker_id(), id, "the seed is the identity");
        assert_eq!(verify_hello(&me.public_key(), &sig, &nonce, (host, "SHOAL.example:443"), None, &id), Ok(()));
        // Another connection's nonce, another coordinator, another id, another key: refused.
        assert_eq!(
            verify_hello(&me.public_key(), &sig, &[2; 16], (host, host), None, &id),
            Err(IdentityError::BadSignature)
        );
        assert!(matches!(
            verify_hello(&me.public_key(), &sig, &nonce, (host, "evil.example"), None, &id),
            Err(IdentityError::WrongAudience { .. })
        ));
        let other = Identity::from_seed(&[8; 32]);
        assert!(matches!(
            verify_hello(&me.public_key(), &sig, &nonce, (host, host), None, &other.worker_id()),
            Err(IdentityError::WrongId { .. })
        ));
        assert!(matches!(
            verify_hello(&other.public_key(), &sig, &nonce, (host, host), None, &other.worker_id()),
            Err(IdentityError::BadSignature)
        ));
        // The signature is over the audience it claims: naming another host breaks it.
        assert_eq!(
            verify_hello(&me.public_key(), &sig, &nonce, ("other:1", "other:1"), None, &id),
            Err(IdentityError::BadSignature)
        );
    }

    #[test]
    fn the_profile_is_signed_and_checked() {
        let me = Identity::from_seed(&[9; 32]);
        let (nonce, host, id) = ([3; 16], "shoal.example", me.worker_id());
        let p = Profile { payout: "0xabc".into(), name: "Ada".into(), team: "Analytical".into() };
        let sig = me.sign_hello(&nonce, host, Some(&p));
        assert_eq!(verify_hello(&me.public_key(), &sig, &nonce, (host, host), Some(&p), &id), Ok(()));
        // Another address under the same signature, or none: refused.
        let stolen = Profile { payout: "0xevil".into(), ..p.clone() };
        assert_eq!(
            verify_hello(&me.public_key(), &sig, &nonce, (host, host), Some(&stolen), &id),
            Err(IdentityError::BadSignature)
        );
        assert_eq!(
            verify_hello(&me.public_key(), &sig, &nonce, (host, host), None, &id),
            Err(IdentityError::BadSignature)
        );
        // Fields are moved between, not merged: "ab"+"c" is not "a"+"bc".
        let a = Profile { name: "ab".into(), team: "c".into(), ..Profile::default() };
        let b = Profile { name: "a".into(), team: "bc".into(), ..Profile::default() };
        assert_ne!(
            hello_message(&nonce, &me.public_key(), host, Some(&a)),
            hello_message(&nonce, &me.public_key(), host, Some(&b))
        );
        for bad in [
            Profile { payout: "x".repeat(MAX_PAYOUT_LEN + 1), ..Profile::default() },
            Profile { payout: "two words".into(), ..Profile::default() },
            Profile { name: "bell\u{7}".into(), ..Profile::default() },
            Profile { team: " padded".into(), ..Profile::default() },
        ] {
            let sig = me.sign_hello(&nonce, host, Some(&bad));
            assert!(
                matches!(
                    verify_hello(&me.public_key(), &sig, &nonce, (host, host), Some(&bad), &id),
                    Err(IdentityError::BadProfile { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
