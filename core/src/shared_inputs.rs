//! Inputs that many tasks of a job share (a model's weights, a lookup
//! table): each is named by its own digest, stored once, sent to a worker
//! once and then kept in the worker's cache, so a job of 1 000 tasks over
//! one 64 MiB model moves that model once per worker instead of once per
//! replica.
//!
//! A task with shared parts is named differently from a plain one: its
//! [`SharedLayout`] says which positions are shared (by their digest), and
//! its name commits to that layout, to the shared digests and to the
//! digest of its own parts ([`SharedLayout::ids`]). Hashing the name
//! therefore never reads a shared part again: a job hashes each shared
//! input once, however many tasks use it. What a worker checks
//! ([`SharedLayout::check`]) follows the same shape: its own parts by
//! checksum, each shared part by its BLAKE3 digest, once, when it arrives.
//!
//! [`InputCache`] is the bounded least-recently-used cache a worker keeps
//! its shared inputs in; the coordinator runs the same cache, without the
//! bytes, as its model of what each worker holds.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use crate::digest::{Digest, DigestHasher};

/// The name of one shared input: [`Digest::of_parts`] of it alone, which
/// is also the key it is stored apart under (a one-part value).
pub fn part_digest(bytes: &[u8]) -> Digest {
    Digest::of_parts(std::iter::once(bytes))
}

/// Where a task's shared parts sit among its inputs: for each input
/// position, the digest of the shared input there, or `None` for one of
/// the task's own parts. Tasks without shared parts have no layout.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SharedLayout {
    parts: Box<[Option<Digest>]>,
}

/// Domain tag of the names of tasks with shared parts: as the first eight
/// bytes of a plain [`Digest::of_parts`] stream it would be the length of
/// a first part of ~8 EB, so the two kinds of names cannot meet.
const NAME_DOMAIN: &[u8] = b"shoal shared-layout inputs v1";

impl SharedLayout {
    /// A layout from its positions; None when no position is shared (the
    /// task is named the plain way).
    pub fn new(parts: Vec<Option<Digest>>) -> Option<Arc<SharedLayout>> {
        parts.iter().any(Option::is_some).then(|| Arc::new(SharedLayout { parts: parts.into_boxed_slice() }))
    }

    /// Every position: `Some(digest)` where a shared input goes.
    pub fn parts(&self) -> &[Option<Digest>] {
        &self.parts
    }

    /// The shared digests, in position order (repeats included).
    pub fn shared(&self) -> impl Iterator<Item = Digest> + '_ {
        self.parts.iter().flatten().copied()
    }

    /// The task's own parts of `inputs` (the positions not shared).
    pub fn own<'a>(&'a self, inputs: &'a [Bytes]) -> impl Iterator<Item = &'a Bytes> + 'a {
        inputs.iter().zip(self.parts.iter()).filter(|(_, s)| s.is_none()).map(|(b, _)| b)
    }

    /// The task's name and checksum, from its full `inputs` (shared parts
    /// in place), and the digest of its own parts ([`Digest::of_parts`]:
    /// the key they are stored apart under). `own_digest` is that digest
    /// when already known (read back from storage), else computed here.
    pub fn ids(&self, inputs: &[Bytes], own_digest: Option<Digest>) -> (Digest, u128, Digest) {
        let own: Vec<&[u8]> = self.own(inputs).map(|b| &b[..]).collect();
        self.ids_of_own(&own, own_digest)
    }

    /// [`SharedLayout::ids`] from the task's own parts alone (a task whose
    /// shared inputs are not at hand: one that already ended).
    pub fn ids_of_own(&self, own: &[&[u8]], own_digest: Option<Digest>) -> (Digest, u128, Digest) {
        let own_digest = own_digest.unwrap_or_else(|| Digest::of_parts(own.iter().copied()));
        let own_check = Digest::check_of_parts(own.iter().copied());
        (self.name(own_digest), self.check(own_check), own_digest)
    }

    /// The full inputs of a task of this layout: its own parts in order,
    /// each shared one from `shared` (None: one is missing).
    pub fn assemble(&self, own: &[Bytes], shared: impl Fn(&Digest) -> Option<Bytes>) -> Option<Vec<Bytes>> {
        let mut own = own.iter();
        self.parts
            .iter()
            .map(|p| match p {
                None => own.next().cloned(),
                Some(d) => shared(d),
            })
            .collect()
    }

    /// The name of a task of this layout whose own parts have `own_digest`.
    pub fn name(&self, own_digest: Digest) -> Digest {
        let mut h = DigestHasher::default();
        h.update(NAME_DOMAIN);
        self.frame(|bytes| {
            h.update(bytes);
        });
        h.update(own_digest.as_bytes());
        h.finish()
    }

    /// What a worker checks: the layout, the shared digests and the
    /// checksum of the own parts ([`Digest::check_of_parts`]).
    pub fn check(&self, own_check: u128) -> u128 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(NAME_DOMAIN);
        self.frame(|bytes| h.update(bytes));
        h.update(&own_check.to_le_bytes());
        h.digest128()
    }

    /// The layout as bytes: the part count, then per position a tag (0
    /// own, 1 shared) and a shared part's digest.
    fn frame(&self, mut out: impl FnMut(&[u8])) {
        out(&(self.parts.len() as u64).to_le_bytes());
        for p in &self.parts {
            match p {
                None => out(&[0]),
                Some(d) => {
                    out(&[1]);
                    out(d.as_bytes());
                }
            }
        }
    }
}

/// One entry of an [`InputCache`].
#[derive(Debug)]
struct Entry<V> {
    value: V,
    len: u64,
    used: u64,
}

/// A bounded least-recently-used cache of inputs by digest: a worker keeps
/// the bytes (`V = Bytes`); the coordinator keeps `()`, as its model of a
/// worker's cache. Both apply the same operations in the same order (the
/// order of offers), so the model predicts what the worker holds; where
/// they differ the worker asks for what it lacks.
#[derive(Debug)]
pub struct InputCache<V> {
    capacity: u64,
    held: u64,
    clock: u64,
    entries: HashMap<Digest, Entry<V>>,
    /// Last use → digest: the least recently used first.
    order: BTreeMap<u64, Digest>,
    /// Entries kept and dropped since last drained, when logged
    /// ([`InputCache::logged`]: a host that persists the cache).
    log: Option<Vec<CacheChange>>,
}

/// A change to an [`InputCache`], for a host that keeps a copy of it (on
/// disk, in a browser's Cache Storage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheChange {
    /// This digest entered the cache.
    Kept(Digest),
    /// This digest left it.
    Dropped(Digest),
}

impl<V> InputCache<V> {
    /// An empty cache of at most `capacity` bytes (0: holds nothing).
    pub fn new(capacity: u64) -> Self {
        InputCache { capacity, held: 0, clock: 0, entries: HashMap::new(), order: BTreeMap::new(), log: None }
    }

    /// An empty cache that logs its changes ([`InputCache::drain_changes`]).
    pub fn logged(capacity: u64) -> Self {
        InputCache { log: Some(Vec::new()), ..InputCache::new(capacity) }
    }

    /// The changes since the last call (none unless [`InputCache::logged`]).
    pub fn drain_changes(&mut self) -> Vec<CacheChange> {
        self.log.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The entry of `digest`, without counting a use.
    pub fn peek(&self, digest: &Digest) -> Option<&V> {
        self.entries.get(digest).map(|e| &e.value)
    }

    /// Every entry's digest and length, least recently used first.
    pub fn lengths(&self) -> impl Iterator<Item = (Digest, u64)> + '_ {
        self.order.values().filter_map(|d| self.entries.get(d).map(|e| (*d, e.len)))
    }

    /// Its capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes held.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `digest` is held, without counting a use.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.entries.contains_key(digest)
    }

    /// The entry of `digest`, counted as its most recent use.
    pub fn get(&mut self, digest: &Digest) -> Option<&V> {
        self.clock += 1;
        let e = self.entries.get_mut(digest)?;
        self.order.remove(&e.used);
        e.used = self.clock;
        self.order.insert(self.clock, *digest);
        Some(&e.value)
    }

    /// Keeps `value` (`len` bytes) under `digest` as the most recent use,
    /// evicting the least recently used entries to make room; a value
    /// larger than the whole cache is not kept. True when kept.
    pub fn insert(&mut self, digest: Digest, len: u64, value: V) -> bool {
        self.remove(&digest);
        if len > self.capacity {
            return false;
        }
        while self.held + len > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            if let Some(e) = self.entries.remove(&oldest) {
                self.held -= e.len;
                self.note(CacheChange::Dropped(oldest));
            }
        }
        self.clock += 1;
        self.order.insert(self.clock, digest);
        self.entries.insert(digest, Entry { value, len, used: self.clock });
        self.held += len;
        self.note(CacheChange::Kept(digest));
        true
    }

    /// Drops `digest`; true when it was held.
    pub fn remove(&mut self, digest: &Digest) -> bool {
        let Some(e) = self.entries.remove(digest) else { return false };
        self.order.remove(&e.used);
        self.held -= e.len;
        self.note(CacheChange::Dropped(*digest));
        true
    }

    fn note(&mut self, change: CacheChange) {
        if let Some(log) = &mut self.log {
            // A re-insert drops then keeps the same digest: one change.
            if let (CacheChange::Kept(d), Some(CacheChange::Dropped(last))) = (change, log.last()) {
                if *last == d {
                    log.pop();
                    return;
                }
            }
            log.push(change);
        }
    }

    /// The digests held, least recently used first.
    pub fn digests(&self) -> impl Iterator<Item = &Digest> + '_ {
        self.order.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(i: u8) -> Digest {
        Digest([i; 32])
    }

    #[test]
    fn the_least_recently_used_goes_first_and_bytes_never_exceed_the_capacity() {
        let mut c = InputCache::new(100);
        assert!(c.insert(d(1), 40, ()));
        assert!(c.insert(d(2), 40, ()));
        assert!(c.get(&d(1)).is_some()); // 2 is now the oldest
        assert!(c.insert(d(3), 40, ()));
        assert!(c.contains(&d(1)) && c.contains(&d(3)) && !c.contains(&d(2)));
        assert_eq!(c.held(), 80);
        assert!(!c.insert(d(4), 101, ()), "larger than the cache");
        assert_eq!(c.held(), 80);
        assert!(c.insert(d(5), 100, ()));
        assert_eq!((c.len(), c.held()), (1, 100));
        assert!(c.insert(d(5), 10, ()), "re-inserting replaces");
        assert_eq!(c.held(), 10);
        assert!(c.remove(&d(5)) && c.is_empty() && c.held() == 0);
        let mut none: InputCache<()> = InputCache::new(0);
        assert!(!none.insert(d(1), 1, ()) && none.is_empty());
    }

    #[test]
    fn a_logged_cache_reports_what_entered_and_left() {
        let mut c = InputCache::logged(100);
        c.insert(d(1), 60, ());
        c.insert(d(1), 60, ());
        c.insert(d(2), 60, ());
        assert_eq!(
            c.drain_changes(),
            vec![CacheChange::Kept(d(1)), CacheChange::Dropped(d(1)), CacheChange::Kept(d(2))]
        );
        assert!(c.drain_changes().is_empty());
        assert_eq!(c.lengths().collect::<Vec<_>>(), vec![(d(2), 60)]);
        let mut quiet = InputCache::new(100);
        quiet.insert(d(1), 1, ());
        assert!(quiet.drain_changes().is_empty());
    }

    #[test]
    fn names_commit_to_the_layout_and_differ_from_plain_names() {
        let shared = Bytes::from(vec![7u8; 1000]);
        let own = Bytes::from_static(b"own");
        let s = part_digest(&shared);
        let a = SharedLayout::new(vec![None, Some(s)]).expect("shared");
        let b = SharedLayout::new(vec![Some(s), None]).expect("shared");
        let ia = a.ids(&[own.clone(), shared.clone()], None);
        let ib = b.ids(&[shared.clone(), own.clone()], None);
        assert_ne!(ia, ib, "the same parts in other positions are another task");
        let plain = Digest::of_parts([&own[..], &shared[..]]);
        assert_ne!(ia.0, plain);
        let own_digest = Digest::of_parts([&own[..]]);
        assert_eq!(ia.2, own_digest);
        assert_eq!(a.ids(&[own.clone(), shared.clone()], Some(own_digest)), ia, "a stored own digest is the same");
        let other = a.ids(&[Bytes::from_static(b"owm"), shared], None);
        assert!(other.0 != ia.0 && other.1 != ia.1);
        assert!(SharedLayout::new(vec![None, None]).is_none());
    }
}
