//! The ledger: every durable change of the coordinator as an entry of a
//! per-round state diff, each diff chained to the previous one by digest.
//! Fanning diffs out to live subscribers is the host's job (the native
//! host keeps a ring of recent diffs in a broadcast channel).

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::recovery::ns;
use crate::digest::Digest;

/// Put or delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteType {
    /// Key now holds the value.
    Put,
    /// Key no longer exists.
    Delete,
    /// No key of the namespace that starts with this key exists any more
    /// (a deleted job's task records, however many).
    DeletePrefix,
}

/// One change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffEntry {
    /// Put or delete.
    pub write: WriteType,
    /// Which table (`job`, `task`, `worker`, `epoch`, …).
    pub namespace: Cow<'static, str>,
    /// Key within the table.
    pub key: Vec<u8>,
    /// New value (empty for deletes).
    pub value: EntryValue,
}

/// An entry's value: bytes, or a task's inputs held as they arrived.
///
/// Task inputs are megabytes; copying them into one buffer (and hashing
/// them again for the chain) cost more than everything else on the
/// payload path. As `Parts` they are shared with the task, and their
/// bytes are defined as each part prefixed by its length (u64 LE) — the
/// very bytes [`Digest::of_parts`] hashes, so the task's input digest is
/// the digest of the value.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(from = "Vec<u8>", into = "Vec<u8>")]
pub enum EntryValue {
    /// Plain bytes.
    Bytes(Vec<u8>),
    /// Length-prefixed parts, not copied.
    Parts(Vec<Bytes>),
}

impl EntryValue {
    /// Length of the value's bytes.
    pub fn len(&self) -> usize {
        match self {
            EntryValue::Bytes(v) => v.len(),
            EntryValue::Parts(p) => p.iter().map(|b| 8 + b.len()).sum(),
        }
    }

    /// Whether the value has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` on consecutive slices that together are the value's bytes
    /// (for writing them out without joining them first).
    pub fn for_each_segment(&self, mut f: impl FnMut(&[u8])) {
        match self {
            EntryValue::Bytes(v) => f(v),
            EntryValue::Parts(p) => {
                for b in p {
                    f(&(b.len() as u64).to_le_bytes());
                    f(b);
                }
            }
        }
    }

    /// The value's bytes, borrowed when they are already one slice.
    pub fn flat(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            EntryValue::Bytes(v) => std::borrow::Cow::Borrowed(v),
            EntryValue::Parts(_) => {
                let mut out = Vec::with_capacity(self.len());
                self.for_each_segment(|s| out.extend_from_slice(s));
                std::borrow::Cow::Owned(out)
            }
        }
    }

    /// [`Digest::of`] the value's bytes.
    pub fn digest(&self) -> Digest {
        match self {
            EntryValue::Bytes(v) => Digest::of(v),
            EntryValue::Parts(p) => Digest::of_parts(p.iter().map(|b| &b[..])),
        }
    }

    /// Splits bytes written from `Parts` back into the parts (`None` if
    /// they are not such bytes).
    pub fn split_parts(mut bytes: &[u8]) -> Option<Vec<Bytes>> {
        let mut parts = Vec::new();
        while !bytes.is_empty() {
            let (len, rest) = bytes.split_first_chunk::<8>()?;
            let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
            let part = rest.get(..len)?;
            parts.push(Bytes::copy_from_slice(part));
            bytes = &rest[len..];
        }
        Some(parts)
    }
}

impl From<Vec<u8>> for EntryValue {
    fn from(v: Vec<u8>) -> Self {
        EntryValue::Bytes(v)
    }
}

impl From<EntryValue> for Vec<u8> {
    fn from(v: EntryValue) -> Self {
        match v {
            EntryValue::Bytes(v) => v,
            parts @ EntryValue::Parts(_) => parts.flat().into_owned(),
        }
    }
}

impl PartialEq for EntryValue {
    /// Equal when their bytes are.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (EntryValue::Bytes(a), EntryValue::Bytes(b)) => a == b,
            (EntryValue::Parts(a), EntryValue::Parts(b)) => a == b,
            _ => self.len() == other.len() && self.flat() == other.flat(),
        }
    }
}

impl Eq for EntryValue {}

impl PartialEq<Vec<u8>> for EntryValue {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.len() == other.len() && self.flat().as_ref() == other.as_slice()
    }
}

/// Whether entries of `namespace` are content-addressed: the key is the
/// [`Digest`] of the value. The chain then commits to such a value through
/// its key (the coordinator hashed it once already), and
/// [`StateDiff::verify`] checks the key against the value.
pub fn content_addressed(namespace: &str) -> bool {
    namespace == ns::INPUT
}

/// The changes of one round, chained to the previous round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDiff {
    /// Round number, from 1.
    pub height: u64,
    /// The changes, in order.
    pub entries: Vec<DiffEntry>,
    /// Digest of the previous diff (zero for the first).
    pub prev: Digest,
    /// Digest(prev ‖ height ‖ entries), a content-addressed entry's value
    /// counted by its key.
    pub digest: Digest,
}

impl StateDiff {
    /// The digest this diff must carry.
    pub fn compute_digest(prev: &Digest, height: u64, entries: &[DiffEntry]) -> Digest {
        let mut h = crate::digest::DigestHasher::default();
        h.update(prev.as_bytes());
        h.update(&height.to_be_bytes());
        for e in entries {
            h.update(&[match e.write {
                WriteType::Put => 0u8,
                WriteType::Delete => 1,
                WriteType::DeletePrefix => 2,
            }]);
            for part in [e.namespace.as_bytes(), &e.key] {
                h.update(&(part.len() as u64).to_be_bytes());
                h.update(part);
            }
            h.update(&(e.value.len() as u64).to_be_bytes());
            if !content_addressed(&e.namespace) {
                e.value.for_each_segment(|s| {
                    h.update(s);
                });
            }
        }
        h.finish()
    }

    /// Whether the digest is right and follows `prev`, and every
    /// content-addressed entry's key is its value's digest.
    pub fn verify(&self, prev: &Digest) -> bool {
        self.prev == *prev
            && self.digest == Self::compute_digest(prev, self.height, &self.entries)
            && self.entries.iter().all(|e| {
                !content_addressed(&e.namespace)
                    || e.write != WriteType::Put
                    || e.value.digest().as_bytes().as_slice() == e.key.as_slice()
            })
    }
}

/// Collects entries during a round and seals them into a chained diff.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    height: u64,
    last: Digest,
    pending: Vec<DiffEntry>,
}

impl Ledger {
    /// A ledger continuing after `height` whose last diff had `last`.
    pub fn resume(height: u64, last: Digest) -> Self {
        Ledger { height, last, pending: Vec::new() }
    }

    /// Height of the last sealed diff.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// Digest of the last sealed diff.
    pub fn last_digest(&self) -> Digest {
        self.last
    }

    /// Records a put.
    pub fn put(&mut self, namespace: &'static str, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.pending.push(DiffEntry {
            write: WriteType::Put,
            namespace: Cow::Borrowed(namespace),
            key: key.into(),
            value: EntryValue::Bytes(value.into()),
        });
    }

    /// Records a put of a task's inputs under their digest (content-
    /// addressed, see [`content_addressed`]); the parts are shared, not
    /// copied.
    pub fn put_inputs(&mut self, digest: Digest, parts: Vec<Bytes>) {
        self.pending.push(DiffEntry {
            write: WriteType::Put,
            namespace: Cow::Borrowed(ns::INPUT),
            key: digest.as_bytes().to_vec(),
            value: EntryValue::Parts(parts),
        });
    }

    /// Records a delete.
    pub fn delete(&mut self, namespace: &'static str, key: impl Into<Vec<u8>>) {
        self.pending.push(DiffEntry {
            write: WriteType::Delete,
            namespace: Cow::Borrowed(namespace),
            key: key.into(),
            value: EntryValue::Bytes(Vec::new()),
        });
    }

    /// Records the delete of every key of `namespace` starting with `prefix`.
    pub fn delete_prefix(&mut self, namespace: &'static str, prefix: impl Into<Vec<u8>>) {
        self.pending.push(DiffEntry {
            write: WriteType::DeletePrefix,
            namespace: Cow::Borrowed(namespace),
            key: prefix.into(),
            value: EntryValue::Bytes(Vec::new()),
        });
    }

    /// Seals the pending entries into the next diff (none if nothing changed).
    pub fn seal(&mut self) -> Option<StateDiff> {
        if self.pending.is_empty() {
            return None;
        }
        let entries = std::mem::take(&mut self.pending);
        let height = self.height + 1;
        let digest = StateDiff::compute_digest(&self.last, height, &entries);
        let diff = StateDiff { height, entries, prev: self.last, digest };
        self.height = height;
        self.last = digest;
        Some(diff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(ledger: &mut Ledger, n: u8) -> StateDiff {
        ledger.put("account", vec![n], vec![n, n]);
        ledger.seal().expect("entries pending")
    }

    #[test]
    fn diffs_chain_and_verify() {
        let mut l = Ledger::default();
        assert!(l.seal().is_none(), "no entries, no diff");
        let a = diff(&mut l, 1);
        let b = diff(&mut l, 2);
        assert_eq!((a.height, b.height), (1, 2));
        assert!(a.verify(&Digest::default()));
        assert!(b.verify(&a.digest));
        let mut forged = b.clone();
        forged.entries[0].value = vec![9].into();
        assert!(!forged.verify(&a.digest));
    }
}
