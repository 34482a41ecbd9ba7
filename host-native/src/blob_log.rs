//! Big values (job inputs) kept outside the B-tree, in an append-only file.
//!
//! A value written into redb goes through a zeroed page buffer, a copy,
//! a checksum per page and the page cache; a job of 20 MiB of inputs took
//! 50–150 ms to commit that way on the build machine. Here a value is one
//! positioned write per segment from the caller's bytes (a task's inputs
//! are written from the buffers they arrived in), and the B-tree keeps a
//! [`BlobRef`] (where, how long, its XXH3-128 checksum: damage detection
//! at memory speed; what a value *is* is the ledger's SHA-256 business).
//! The file is flushed to disk
//! before the transaction that refers to it commits, so a committed ref
//! always names durable bytes; a crash in between leaves unreferenced bytes
//! at the end of the file, never a dangling ref. Reads check the checksum.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use shoal_core::coordinator::ledger::EntryValue;
use xxhash_rust::xxh3::{xxh3_128, Xxh3};

use crate::store::StoreError;

/// Where a value lies in the blob file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct BlobRef {
    /// Offset of its first byte.
    pub(crate) offset: u64,
    /// Its length.
    pub(crate) len: u64,
    /// XXH3-128 of the bytes, checked on every read.
    pub(crate) check: u128,
}

/// The append-only file of big values.
pub(crate) struct BlobLog {
    file: File,
    /// Where the next value goes (the file's length).
    end: Mutex<u64>,
}

fn io(what: &str, e: &std::io::Error) -> StoreError {
    StoreError::Db(format!("blob file: {what}: {e}"))
}

impl BlobLog {
    /// Opens (or creates) the file at `path`; values are appended after
    /// whatever it holds.
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io("open", &e))?;
        let end = file.metadata().map_err(|e| io("metadata", &e))?.len();
        Ok(BlobLog { file, end: Mutex::new(end) })
    }

    /// Appends a value's bytes; durable only after [`BlobLog::sync`].
    pub(crate) fn append(&self, value: &EntryValue) -> Result<BlobRef, StoreError> {
        let mut end = self.end.lock().map_err(|_| StoreError::Db("blob file lock poisoned".into()))?;
        let offset = *end;
        let mut at = offset;
        let mut check = Xxh3::new();
        let mut failed = None;
        value.for_each_segment(|s| {
            if failed.is_none() {
                check.update(s);
                match self.file.write_all_at(s, at) {
                    Ok(()) => at += s.len() as u64,
                    Err(e) => failed = Some(e),
                }
            }
        });
        if let Some(e) = failed {
            return Err(io("write", &e));
        }
        *end = at;
        Ok(BlobRef { offset, len: at - offset, check: check.digest128() })
    }

    /// Flushes every appended value to disk.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        self.file.sync_data().map_err(|e| io("sync", &e))
    }

    /// Reads the value `r` names, checking its length and checksum.
    pub(crate) fn read(&self, r: &BlobRef) -> Result<Vec<u8>, StoreError> {
        let len = usize::try_from(r.len).map_err(|_| StoreError::Corrupt(format!("blob of {} bytes", r.len)))?;
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, r.offset)
            .map_err(|e| StoreError::Corrupt(format!("blob at {} ({} bytes) cannot be read: {e}", r.offset, r.len)))?;
        if xxh3_128(&buf) != r.check {
            return Err(StoreError::Corrupt(format!(
                "blob at {} ({} bytes) does not match its checksum",
                r.offset, r.len
            )));
        }
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_after_reopen_and_damage_is_detected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blobs");
        let (a, b) = {
            let log = BlobLog::open(&path).expect("open");
            let a = log.append(&b"first value".to_vec().into()).expect("append");
            let b = log.append(&vec![7u8; 100_000].into()).expect("append");
            log.sync().expect("sync");
            (a, b)
        };
        let log = BlobLog::open(&path).expect("reopen");
        assert_eq!(log.read(&a).expect("a"), b"first value");
        assert_eq!(log.read(&b).expect("b"), vec![7u8; 100_000]);
        // Appends continue after what is there.
        let c = log.append(&b"third".to_vec().into()).expect("append");
        assert_eq!(c.offset, b.offset + b.len);
        // Parts are written as their length-prefixed bytes.
        let parts = EntryValue::Parts(vec![bytes::Bytes::from_static(b"ab"), bytes::Bytes::from(vec![1u8; 70_000])]);
        let p = log.append(&parts).expect("append parts");
        assert_eq!(p.offset, c.offset + c.len);
        assert_eq!(log.read(&p).expect("parts"), parts.flat().as_ref());
        // A flipped byte, a ref past the end: errors, not wrong data.
        log.file.write_all_at(b"F", a.offset).expect("damage");
        assert!(matches!(log.read(&a), Err(StoreError::Corrupt(_))));
        assert!(matches!(log.read(&BlobRef { offset: 1 << 40, len: 4, check: a.check }), Err(StoreError::Corrupt(_))));
    }
}
