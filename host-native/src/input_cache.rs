//! A native worker's input cache on disk: each shared input the worker's
//! session keeps ([`shoal_core::shared_inputs`]) is also a file named by
//! its digest, so a restarted worker holds them again and its hello lists
//! them (offers name them instead of sending them).
//!
//! Files are written to a temporary name and renamed, so a crash leaves a
//! whole file or none; at load every file is hashed, and one whose bytes
//! are not its name (a torn or tampered file) is deleted, never used.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use shoal_core::shared_inputs::{part_digest, InputCache};
use shoal_core::Digest;

/// Why the cache folder could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DiskCacheError {
    /// The folder could not be created or read.
    #[error("input cache folder {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Loads the inputs kept in `dir` (creating it) into a cache of
/// `capacity` bytes, the most recently written last (kept first when the
/// capacity is smaller); files that do not fit, or are not what their name
/// says, are deleted.
pub fn load(dir: &Path, capacity: u64) -> Result<InputCache<Bytes>, DiskCacheError> {
    let folder = |source| DiskCacheError::Folder { path: dir.to_path_buf(), source };
    std::fs::create_dir_all(dir).map_err(folder)?;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(folder)? {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        let digest = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<Digest>().ok());
        let modified = entry.metadata().and_then(|m| m.modified()).ok();
        match (digest, modified) {
            (Some(d), Some(at)) => found.push((at, d, path)),
            // Temporary files of an interrupted write, and strangers.
            _ => remove(&path),
        }
    }
    found.sort();
    let mut cache = InputCache::logged(capacity);
    for (_, digest, path) in found {
        match std::fs::read(&path) {
            Ok(bytes) if part_digest(&bytes) == digest => {
                let len = bytes.len() as u64;
                cache.insert(digest, len, Bytes::from(bytes));
            }
            _ => {
                tracing::warn!(path = %path.display(), "dropping a cached input that is not what its name says");
                remove(&path);
            }
        }
    }
    // What did not fit leaves the disk too; what was loaded is there already.
    for change in cache.drain_changes() {
        if let shoal_core::shared_inputs::CacheChange::Dropped(d) = change {
            remove(&dir.join(d.to_hex()));
        }
    }
    Ok(cache)
}

/// Writes a kept input (to a temporary name, then renamed into place).
pub fn keep(dir: &Path, digest: Digest, bytes: &[u8]) {
    let path = dir.join(digest.to_hex());
    let tmp = dir.join(format!("{}.tmp", digest.to_hex()));
    if let Err(e) = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path)) {
        tracing::warn!(path = %path.display(), error = %e, "cannot keep a shared input on disk");
        remove(&tmp);
    }
}

/// Deletes a dropped input's file.
pub fn drop_input(dir: &Path, digest: Digest) {
    remove(&dir.join(digest.to_hex()));
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot delete a cached input");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_inputs_load_back_and_bad_or_excess_files_are_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (vec![1u8; 1000], vec![2u8; 1000]);
        keep(dir.path(), part_digest(&a), &a);
        std::thread::sleep(std::time::Duration::from_millis(20));
        keep(dir.path(), part_digest(&b), &b);
        // A torn write and a file whose bytes are not its name.
        std::fs::write(dir.path().join("x.tmp"), b"half").expect("write");
        let liar = part_digest(b"something else");
        std::fs::write(dir.path().join(liar.to_hex()), b"not that").expect("write");

        let cache = load(dir.path(), 10_000).expect("loads");
        assert!(cache.contains(&part_digest(&a)) && cache.contains(&part_digest(&b)));
        assert_eq!(cache.len(), 2);
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 2, "the torn and the lying file are gone");

        // Room for one: the most recently written stays, on disk too.
        let cache = load(dir.path(), 1500).expect("loads");
        assert!(cache.contains(&part_digest(&b)) && !cache.contains(&part_digest(&a)));
        assert!(!dir.path().join(part_digest(&a).to_hex()).exists());
        drop_input(dir.path(), part_digest(&b));
        assert!(load(dir.path(), 1500).expect("loads").is_empty());
    }
}
