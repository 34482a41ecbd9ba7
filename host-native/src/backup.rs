//! `shoal backup` and `shoal restore`: a running coordinator's data as one
//! tar archive (the store's consistent copy, its blob file, the worker
//! secret), and that archive unpacked into a data folder a coordinator
//! starts from.

use std::path::{Path, PathBuf};

use crate::service::{SECRET_FILE, STORE_FILE};
use crate::store::{BackupStats, Store, StoreError};

/// What goes wrong backing up or restoring.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file could not be written or read.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The archive or the target folder is not what a restore needs.
    #[error("{0}")]
    Refused(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let what = what.into();
    move |source| BackupError::Io { what, source }
}

/// The files of a backup, in the archive and in a data folder.
fn blob_file() -> String {
    Path::new(STORE_FILE).with_extension("blobs").display().to_string()
}

/// Archives a consistent copy of `store`, the worker secret of `data` and
/// its signed settlement files into a new tar file in `data`; returns its path (the caller streams and
/// removes it) and what it holds.
pub fn archive(store: &dyn Store, data: &Path) -> Result<(PathBuf, BackupStats), BackupError> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let work = data.join(format!(".backup-{}-{stamp}", std::process::id()));
    std::fs::create_dir(&work).map_err(io(format!("creating {}", work.display())))?;
    let result = (|| {
        let stats = store.backup(&work)?;
        let tar_path = work.with_extension("tar");
        let file = std::fs::File::create(&tar_path).map_err(io(format!("creating {}", tar_path.display())))?;
        let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
        for name in [STORE_FILE.to_owned(), blob_file()] {
            tar.append_path_with_name(work.join(&name), &name).map_err(io(format!("archiving {name}")))?;
        }
        tar.append_path_with_name(data.join(SECRET_FILE), SECRET_FILE).map_err(io("archiving the worker secret"))?;
        // The signed settlement files written so far.
        let settlements = data.join(crate::settler::SETTLEMENTS_DIR);
        let mut files: Vec<String> = std::fs::read_dir(&settlements)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| format!("{}/{}", crate::settler::SETTLEMENTS_DIR, e.file_name().to_string_lossy()))
            .filter(|name| is_settlement_file(name))
            .collect();
        files.sort();
        for name in files {
            tar.append_path_with_name(data.join(&name), &name).map_err(io(format!("archiving {name}")))?;
        }
        let file = tar.into_inner().map_err(io("finishing the archive"))?;
        file.into_inner()
            .map_err(|e| io("finishing the archive")(e.into_error()))?
            .sync_all()
            .map_err(io("syncing the archive"))?;
        Ok((tar_path, stats))
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// Whether an archive path is a settlement file (`settlements/epoch-` and
/// ten digits `.json`): the only names besides the store and the secret a
/// backup holds, so a crafted archive cannot write anywhere else.
fn is_settlement_file(name: &str) -> bool {
    name.strip_prefix(crate::settler::SETTLEMENTS_DIR)
        .and_then(|n| n.strip_prefix("/epoch-"))
        .and_then(|n| n.strip_suffix(".json"))
        .is_some_and(|digits| digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes what backups interrupted by a crash left in `data`.
pub fn sweep_leftovers(data: &Path) {
    for entry in std::fs::read_dir(data).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(".backup-") {
            let path = entry.path();
            let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        }
    }
}

/// Unpacks an archive made by [`archive`] into `data`, which must not
/// exist or be empty; the folder appears whole or not at all.
pub fn restore(archive: &Path, data: &Path) -> Result<(), BackupError> {
    if data.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        return Err(BackupError::Refused(format!(
            "{} is not empty: restore into a new folder (nothing is overwritten)",
            data.display()
        )));
    }
    let parent = data.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    let staging = parent.join(format!(".restore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging).map_err(io(format!("creating {}", staging.display())))?;
    let result = (|| {
        let file = std::fs::File::open(archive).map_err(io(format!("opening {}", archive.display())))?;
        let mut tar = tar::Archive::new(std::io::BufReader::new(file));
        for entry in tar.entries().map_err(io("reading the archive"))? {
            let mut entry = entry.map_err(io("reading the archive"))?;
            let name = entry.path().map_err(io("reading the archive"))?.display().to_string();
            if is_settlement_file(&name) {
                let dir = staging.join(crate::settler::SETTLEMENTS_DIR);
                std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
            } else if ![STORE_FILE.to_owned(), blob_file(), SECRET_FILE.to_owned()].contains(&name) {
                return Err(BackupError::Refused(format!("{} holds `{name}`: not a shoal backup", archive.display())));
            }
            entry.unpack(staging.join(&name)).map_err(io(format!("unpacking {name}")))?;
        }
        if !staging.join(STORE_FILE).is_file() || !staging.join(SECRET_FILE).is_file() {
            return Err(BackupError::Refused(format!("{} is not a whole shoal backup", archive.display())));
        }
        let _ = std::fs::remove_dir(data);
        std::fs::rename(&staging, data).map_err(io(format!("moving the restored data to {}", data.display())))
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

#[cfg(test)]
mod tests {
    use super::is_settlement_file;

    #[test]
    fn only_settlement_files_by_their_exact_names_come_back() {
        assert!(is_settlement_file("settlements/epoch-0000000042.json"));
        for bad in [
            "settlements/epoch-42.json",
            "settlements/../worker.secret",
            "settlements/epoch-000000004a.json",
            "settlements/epoch-0000000042.json/x",
            "/settlements/epoch-0000000042.json",
            "other/epoch-0000000042.json",
        ] {
            assert!(!is_settlement_file(bad), "{bad}");
        }
    }
}
