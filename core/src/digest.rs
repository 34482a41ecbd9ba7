//! BLAKE3 digests: the identity of task inputs and outputs, the "exact"
//! comparator of replicas, the content address of stored inputs and the
//! links of the ledger's chain.
//!
//! BLAKE3 rather than SHA-256: the same 32 bytes and 128-bit collision security, and
//! 3.6× the speed on a 1 MiB input on this project's x86 machines (6.5 GB/s
//! against 1.8 GB/s with the SHA extensions; faster on 64 bytes too, and in
//! a browser tab's WebAssembly, which has no SHA instructions). The
//! coordinator names every submitted input with one, so this is its
//! payload path's largest single cost. (The `sha256` *kernel* is a
//! workload and stays SHA-256, as do the HMAC-SHA256 worker tokens.)

use core::fmt;
use core::str::FromStr;
use serde::{Deserialize, Serialize};

/// A BLAKE3 digest (32 bytes). The default is all zeros (the "previous"
/// digest of the first link of a chain).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Digest(pub [u8; 32]);

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestParseError {
    /// A digest is written as exactly 64 hex characters.
    #[error("a digest is 64 hex characters, got {0}")]
    Length(usize),
    /// A character is not a hex digit.
    #[error("invalid hex character {0:?} in digest")]
    NotHex(char),
}

/// An incremental [`Digest`]: for values hashed piece by piece (a ledger
/// diff, framed parts) without gathering them into one buffer first.
///
/// Small pieces are gathered here before BLAKE3 sees them: it hashes
/// several 1 KiB chunks side by side (SIMD) only when one update spans
/// them, so a ledger diff fed field by field would otherwise be hashed a
/// block at a time, slower than SHA-256 with the SHA extensions.
#[derive(Clone, Default)]
pub struct DigestHasher {
    hasher: blake3::Hasher,
    pending: Vec<u8>,
}

impl DigestHasher {
    /// Pieces at least this long go to BLAKE3 directly.
    const DIRECT: usize = 1024;
    /// Gathered pieces go to BLAKE3 once they reach this length.
    const GATHER: usize = 16 * 1024;

    /// Appends `bytes`.
    pub fn update(&mut self, bytes: &[u8]) -> &mut Self {
        if bytes.len() >= Self::DIRECT {
            self.flush();
            self.hasher.update(bytes);
        } else {
            self.pending.extend_from_slice(bytes);
            if self.pending.len() >= Self::GATHER {
                self.flush();
            }
        }
        self
    }

    /// The digest of everything appended.
    pub fn finish(mut self) -> Digest {
        self.flush();
        Digest(*self.hasher.finalize().as_bytes())
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.hasher.update(&self.pending);
            self.pending.clear();
        }
    }
}

impl Digest {
    /// The digest of one byte string.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    /// The digest of several byte strings, each prefixed with its length
    /// (u64 LE) so that `["ab","c"]` and `["a","bc"]` differ. This is the
    /// digest of a multi-attachment task input or output.
    pub fn of_parts<'a, I>(parts: I) -> Digest
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        hash_framed(parts, Digest::of, |head, rest| {
            let mut h = DigestHasher::default();
            h.update(head);
            for p in rest {
                h.update(&(p.len() as u64).to_le_bytes()).update(p);
            }
            h.finish()
        })
    }

    /// XXH3-128 of several byte strings framed as in [`Digest::of_parts`]:
    /// not a name for the bytes (that is the BLAKE3 digest), a check at memory
    /// speed that they arrived as they were sent (a task offer carries both;
    /// a worker checks this one).
    pub fn check_of_parts<'a, I>(parts: I) -> u128
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        hash_framed(parts, xxhash_rust::xxh3::xxh3_128, |head, rest| {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            h.update(head);
            for p in rest {
                h.update(&(p.len() as u64).to_le_bytes());
                h.update(p);
            }
            h.digest128()
        })
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex_lower(&self.0)
    }
}

/// Hashes `parts`, each prefixed with its length (u64 LE): in one call
/// (`whole`) while the framed bytes fit a stack buffer, else by streaming
/// (`streamed` gets the framed bytes gathered so far, then the parts still
/// to frame).
fn hash_framed<'a, R>(
    parts: impl IntoIterator<Item = &'a [u8]>,
    whole: impl FnOnce(&[u8]) -> R,
    streamed: impl FnOnce(&[u8], &mut dyn Iterator<Item = &'a [u8]>) -> R,
) -> R {
    let mut small = SmallFrames::default();
    let mut parts = parts.into_iter();
    while let Some(p) = parts.next() {
        if !small.push(p) {
            return streamed(small.bytes(), &mut std::iter::once(p).chain(parts));
        }
    }
    whole(small.bytes())
}

/// Framed parts gathered on the stack while they are small (most task
/// inputs and results of tiny tasks): hashed in one call instead of
/// through a streaming hasher, whose state alone is larger than they are
/// (a coordinator restarting with a million tasks names each one).
struct SmallFrames {
    buf: [u8; SmallFrames::CAP],
    len: usize,
}

impl SmallFrames {
    const CAP: usize = 512;

    /// Appends `part` framed; false (and nothing appended) when it does
    /// not fit.
    fn push(&mut self, part: &[u8]) -> bool {
        let end = self.len + 8 + part.len();
        if end > Self::CAP {
            return false;
        }
        self.buf[self.len..self.len + 8].copy_from_slice(&(part.len() as u64).to_le_bytes());
        self.buf[self.len + 8..end].copy_from_slice(part);
        self.len = end;
        true
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Default for SmallFrames {
    fn default() -> Self {
        SmallFrames { buf: [0; Self::CAP], len: 0 }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl FromStr for Digest {
    type Err = DigestParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 {
            return Err(DigestParseError::Length(s.len()));
        }
        let mut out = [0u8; 32];
        decode_hex_into(s, &mut out).map_err(DigestParseError::NotHex)?;
        Ok(Digest(out))
    }
}

/// Lowercase hex of `bytes` (ids, keys, signatures in text).
pub fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 0xf) as usize] as char);
    }
    s
}

/// Decodes `s` (exactly `2 * out.len()` hex characters, either case) into
/// `out`; returns the first offending character.
pub(crate) fn decode_hex_into(s: &str, out: &mut [u8]) -> Result<(), char> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    debug_assert_eq!(bytes.len(), out.len() * 2);
    for (i, o) in out.iter_mut().enumerate() {
        let hi = bytes[2 * i];
        let lo = bytes[2 * i + 1];
        let h = nibble(hi).ok_or(hi as char)?;
        let l = nibble(lo).ok_or(lo as char)?;
        *o = (h << 4) | l;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hasher_fed_in_pieces_equals_the_one_shot_digest() {
        // (The BLAKE3 known answers are in tests/vectors.rs, run natively and on wasm32.)
        let mut h = DigestHasher::default();
        h.update(b"a").update(b"bc");
        assert_eq!(h.finish(), Digest::of(b"abc"));
        // Gathered and direct pieces, in any mix, hash as the whole.
        let whole: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut h = DigestHasher::default();
        let mut at = 0;
        for (i, len) in [3usize, 1500, 10, 20_000, 1, 1023, 1024, 999].iter().cycle().enumerate() {
            if at >= whole.len() || i > 1000 {
                break;
            }
            let end = (at + len).min(whole.len());
            h.update(&whole[at..end]);
            at = end;
        }
        h.update(&whole[at..]);
        assert_eq!(h.finish(), Digest::of(&whole));
    }

    #[test]
    fn small_and_large_parts_hash_their_framing() {
        for lens in [&[0usize, 3][..], &[100, 300], &[300, 400], &[10, 600, 5], &[5000]] {
            let parts: Vec<Vec<u8>> = lens.iter().map(|&n| (0..n).map(|i| (i * 13 % 256) as u8).collect()).collect();
            let framed: Vec<u8> = parts
                .iter()
                .flat_map(|p| (p.len() as u64).to_le_bytes().into_iter().chain(p.iter().copied()))
                .collect();
            assert_eq!(Digest::of_parts(parts.iter().map(Vec::as_slice)), Digest::of(&framed), "{lens:?}");
            assert_eq!(
                Digest::check_of_parts(parts.iter().map(Vec::as_slice)),
                xxhash_rust::xxh3::xxh3_128(&framed),
                "{lens:?}"
            );
        }
    }

    #[test]
    fn parts_are_length_delimited() {
        assert_ne!(Digest::of_parts([&b"ab"[..], b"c"]), Digest::of_parts([&b"a"[..], b"bc"]));
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let d = Digest::of(b"abc");
        assert_eq!(d.to_hex().parse::<Digest>(), Ok(d));
        assert_eq!("ab".parse::<Digest>(), Err(DigestParseError::Length(2)));
        let bad = "z".repeat(64);
        assert_eq!(bad.parse::<Digest>(), Err(DigestParseError::NotHex('z')));
    }
}
