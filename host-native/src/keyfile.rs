//! Secret 32-byte keys kept in files only their owner reads (the
//! coordinator's worker secret, a worker's contributor identity): made on
//! first use, read ever after. A new key appears whole or not at all
//! (written aside, synced, then linked into place), and two processes that
//! start together end up with the same key.

use std::path::{Path, PathBuf};

/// A key file could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file system refused.
    #[error("{path}: {reason}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file holds something else than 64 hex digits.
    #[error("{0} does not hold a key (64 hex digits)")]
    NotAKey(PathBuf),
    /// The system gave no randomness.
    #[error("no randomness for a new key: {0}")]
    Random(String),
}

/// The key in `path`, made (random, mode 0600) if the file does not exist.
pub fn load_or_create(path: &Path) -> Result<[u8; 32], KeyFileError> {
    let io = |e: std::io::Error| KeyFileError::Io { path: path.to_owned(), reason: e.to_string() };
    match std::fs::read_to_string(path) {
        Ok(text) => return parse(path, &text),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        Err(_) => {}
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| KeyFileError::Random(e.to_string()))?;
    let aside = path.with_extension(format!("new-{}", std::process::id()));
    write_private(&aside, shoal_core::Digest(key).to_hex().as_bytes()).map_err(io)?;
    let linked = std::fs::hard_link(&aside, path);
    let _ = std::fs::remove_file(&aside);
    match linked {
        Ok(()) => Ok(key),
        // Another process made it first: theirs is the key.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            parse(path, &std::fs::read_to_string(path).map_err(io)?)
        }
        Err(e) => Err(io(e)),
    }
}

fn parse(path: &Path, text: &str) -> Result<[u8; 32], KeyFileError> {
    text.trim().parse::<shoal_core::Digest>().map(|d| d.0).map_err(|_| KeyFileError::NotAKey(path.to_owned()))
}

/// Writes a new file only its owner may read, synced.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.write_all(b"\n")?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("worker.key");
        let made = load_or_create(&path).expect("made");
        assert_eq!(load_or_create(&path).expect("read"), made, "the same key ever after");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("file").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "only its owner reads it");
        }
        std::fs::write(&path, "not a key").expect("overwrite");
        assert!(matches!(load_or_create(&path), Err(KeyFileError::NotAKey(_))));
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1, "nothing left aside");
    }
}
