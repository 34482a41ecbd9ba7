//! Big values (job inputs) kept outside the B-tree, in an append-only file.
//!
//! A value written into redb goes through a zeroed page buffer, a copy,
//! a checksum per page and the page cache; a job of 20 MiB of inputs took
//! 50–150 ms to commit that way on the build machine. Here a value is
//! appended from the caller's bytes (a task's inputs straight from the
//! buffers they arrived in), and the B-tree keeps a [`BlobRef`] (where, how
//! long, its XXH3-128 checksum: damage detection at memory speed; what a
//! value *is* is the ledger's digests' business).
//!
//! On Linux appends bypass the page cache (`O_DIRECT`): on the build
//! machine buffered writes cost 2.6 s of kernel CPU per GiB (page cache
//! allocation and copy), direct ones 0.5 s, at three times the speed. The
//! price is alignment: each value starts on a 4 KiB boundary and is padded
//! to one, staged through a reused aligned buffer. Where the file system
//! refuses direct I/O (tmpfs), appends are ordinary writes.
//!
//! The file is flushed to disk before the transaction that refers to it
//! commits, so a committed ref always names durable bytes; a crash in
//! between leaves unreferenced bytes at the end of the file, never a
//! dangling ref. Reads check the checksum.
//!
//! A value deleted for good (a deleted job's inputs) gives its space back
//! without moving any other: its whole blocks are punched out of the file
//! (`fallocate(PUNCH_HOLE)`), offsets stay valid, the file's length stays,
//! the disk blocks are freed. Where that is not supported the space stays
//! allocated.

use std::fs::{File, OpenOptions};
#[cfg(unix)]
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

/// Alignment of direct I/O: offsets, lengths and memory (a multiple of
/// every logical block size in use).
const ALIGN: usize = 4096;
/// Size of the aligned staging buffer of direct appends.
const STAGE: usize = 1 << 20;

/// The append-only file of big values.
pub(crate) struct BlobLog {
    /// Reads, syncs, and appends when direct I/O is not in use.
    file: File,
    appender: Mutex<Appender>,
    /// Releases put off while a reader of an older state (a backup) may
    /// still read the values they free: how many such readers, and what
    /// waits for them.
    held: Mutex<(u32, Vec<BlobRef>)>,
}

/// While alive, no value's space is released (a backup reads a snapshot
/// whose values must stay readable); what was released meanwhile is
/// freed when the last hold ends.
pub(crate) struct ReleaseHold<'a>(&'a BlobLog);

impl Drop for ReleaseHold<'_> {
    fn drop(&mut self) {
        let pending = {
            let mut held = self.0.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            held.0 -= 1;
            if held.0 > 0 {
                return;
            }
            std::mem::take(&mut held.1)
        };
        for r in pending {
            self.0.release(&r);
        }
    }
}

struct Appender {
    /// Where the next value goes.
    end: u64,
    /// A handle opened for direct I/O, while the file system accepts it.
    direct: Option<File>,
    /// `STAGE + ALIGN` bytes: the aligned `STAGE` inside it is the staging
    /// buffer (allocated on the first direct append).
    stage: Vec<u8>,
}

fn io(what: &str, e: &std::io::Error) -> StoreError {
    StoreError::Db(format!("blob file: {what}: {e}"))
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path).ok()
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_: &Path) -> Option<File> {
    None
}

#[cfg(target_os = "linux")]
fn punch_hole(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    use rustix::fs::FallocateFlags;
    rustix::fs::fallocate(file, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, offset, len)
        .map_err(std::io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn punch_hole(_: &File, _: u64, _: u64) -> std::io::Result<()> {
    Err(std::io::Error::other("hole punching is implemented on Linux only"))
}

/// Positional reads and writes where the standard library has no
/// `FileExt::read_exact_at` / `write_all_at` (Windows): loops of
/// `seek_read` / `seek_write` (the file's cursor is never relied on).
#[cfg(windows)]
trait FileExt {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()>;
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
}

#[cfg(windows)]
impl FileExt for File {
    fn write_all_at(&self, mut buf: &[u8], mut offset: u64) -> std::io::Result<()> {
        use std::os::windows::fs::FileExt as _;
        while !buf.is_empty() {
            let n = self.seek_write(buf, offset)?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            (buf, offset) = (&buf[n..], offset + n as u64);
        }
        Ok(())
    }

    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
        use std::os::windows::fs::FileExt as _;
        while !buf.is_empty() {
            let n = self.seek_read(buf, offset)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            (buf, offset) = (&mut std::mem::take(&mut buf)[n..], offset + n as u64);
        }
        Ok(())
    }
}

fn round_up(n: u64) -> u64 {
    n.div_ceil(ALIGN as u64) * ALIGN as u64
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
        let direct = open_direct(path);
        if direct.is_none() {
            tracing::debug!(path = %path.display(), "blob file without direct I/O");
        }
        let appender = Mutex::new(Appender { end, direct, stage: Vec::new() });
        Ok(BlobLog { file, appender, held: Mutex::new((0, Vec::new())) })
    }

    /// Bytes of file a value of `len` bytes takes (tests).
    #[cfg(test)]
    pub(crate) fn footprint(&self, len: u64) -> u64 {
        if self.appender.lock().is_ok_and(|a| a.direct.is_some()) {
            round_up(len)
        } else {
            len
        }
    }

    /// Appends a value's bytes; durable only after [`BlobLog::sync`].
    pub(crate) fn append(&self, value: &EntryValue) -> Result<BlobRef, StoreError> {
        let mut a = self.appender.lock().map_err(|_| StoreError::Db("blob file lock poisoned".into()))?;
        if a.direct.is_some() {
            match a.append_direct(value) {
                Ok(r) => return Ok(r),
                Err(e) => {
                    // Refused by the file system after all: ordinary writes
                    // from now on (the bytes already written are unreferenced).
                    tracing::warn!(error = %e, "direct I/O failed on the blob file; using buffered writes");
                    a.direct = None;
                }
            }
        }
        let offset = a.end;
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
        a.end = at;
        Ok(BlobRef { offset, len: at - offset, check: check.digest128() })
    }

    /// Flushes every appended value to disk.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        self.file.sync_data().map_err(|e| io("sync", &e))
    }

    /// Frees the disk blocks that lie wholly inside the value `r` names
    /// (after the transaction that dropped its last ref committed). Best
    /// effort: a file system that cannot punch holes keeps the space.
    pub(crate) fn release(&self, r: &BlobRef) {
        {
            let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if held.0 > 0 {
                held.1.push(*r);
                return;
            }
        }
        let start = round_up(r.offset);
        let end = (r.offset + r.len) / ALIGN as u64 * ALIGN as u64;
        if end > start {
            if let Err(e) = punch_hole(&self.file, start, end - start) {
                tracing::debug!(error = %e, "the blob file keeps a deleted value's space");
            }
        }
    }

    /// Puts off every release until the returned hold is dropped.
    pub(crate) fn hold_releases(&self) -> ReleaseHold<'_> {
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).0 += 1;
        ReleaseHold(self)
    }

    /// Disk bytes the file occupies (its allocated blocks).
    #[cfg(unix)]
    pub(crate) fn allocated(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        self.file.metadata().map_or(0, |m| m.blocks() * 512)
    }

    /// Disk bytes the file occupies (its length: no holes are punched here).
    #[cfg(not(unix))]
    pub(crate) fn allocated(&self) -> u64 {
        self.file.metadata().map_or(0, |m| m.len())
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

impl Appender {
    /// Appends through the aligned staging buffer at the next aligned
    /// offset, the last block padded with zeros.
    fn append_direct(&mut self, value: &EntryValue) -> std::io::Result<BlobRef> {
        if self.stage.is_empty() {
            self.stage = vec![0u8; STAGE + ALIGN];
        }
        let skip = self.stage.as_ptr().align_offset(ALIGN);
        let (Some(file), Some(stage)) = (self.direct.as_ref(), self.stage.get_mut(skip..skip + STAGE)) else {
            return Err(std::io::Error::other("no aligned staging buffer"));
        };
        let offset = round_up(self.end);
        let (mut at, mut fill, mut len) = (offset, 0usize, 0u64);
        let mut check = Xxh3::new();
        let mut failed = None;
        value.for_each_segment(|mut s| {
            check.update(s);
            len += s.len() as u64;
            while !s.is_empty() && failed.is_none() {
                let n = s.len().min(STAGE - fill);
                stage[fill..fill + n].copy_from_slice(&s[..n]);
                (fill, s) = (fill + n, &s[n..]);
                if fill == STAGE {
                    match file.write_all_at(stage, at) {
                        Ok(()) => (at, fill) = (at + STAGE as u64, 0),
                        Err(e) => failed = Some(e),
                    }
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        if fill > 0 {
            let padded = round_up(fill as u64) as usize;
            stage[fill..padded].fill(0);
            file.write_all_at(&stage[..padded], at)?;
            at += padded as u64;
        }
        self.end = at;
        Ok(BlobRef { offset, len, check: check.digest128() })
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
        assert!(c.offset >= b.offset + b.len);
        // Parts are written as their length-prefixed bytes.
        let parts = EntryValue::Parts(vec![bytes::Bytes::from_static(b"ab"), bytes::Bytes::from(vec![1u8; 70_000])]);
        let p = log.append(&parts).expect("append parts");
        assert!(p.offset >= c.offset + c.len);
        assert_eq!(log.read(&p).expect("parts"), parts.flat().as_ref());
        // Longer than the staging buffer: written in several pieces.
        let long: Vec<u8> = (0..2 * STAGE + 12_345).map(|i| (i % 251) as u8).collect();
        let l = log.append(&EntryValue::Parts(vec![bytes::Bytes::from(long.clone())])).expect("long");
        let want = EntryValue::Parts(vec![bytes::Bytes::from(long)]).flat().into_owned();
        assert_eq!(log.read(&l).expect("long"), want);
        assert_eq!(log.footprint(l.len), std::fs::metadata(&path).expect("len").len() - l.offset);
        // A released value's blocks go back to the file system; the others stay readable.
        let before = log.allocated();
        log.release(&l);
        assert!(log.allocated() + 2 * STAGE as u64 <= before, "{} then {}", before, log.allocated());
        assert_eq!(log.read(&p).expect("parts"), parts.flat().as_ref());
        // A flipped byte, a ref past the end: errors, not wrong data.
        log.file.write_all_at(b"F", a.offset).expect("damage");
        assert!(matches!(log.read(&a), Err(StoreError::Corrupt(_))));
        assert!(matches!(log.read(&BlobRef { offset: 1 << 40, len: 4, check: a.check }), Err(StoreError::Corrupt(_))));
    }
}
