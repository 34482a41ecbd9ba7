//! A consistent copy of a running store: every table as one read
//! transaction sees it (redb's snapshot: commits go on meanwhile), and the
//! big values that snapshot refers to, read back (checksums checked) and
//! written compactly into a fresh blob file. While the copy runs no freed
//! value's space is released, so every value the snapshot names stays
//! readable.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{
    corrupt, RedbStore, StoreError, API_TOKENS, BLOBS, DIFFS, INPUT_USERS, JOB_ENDED, JOB_META, JOB_OWNER, META, STATE,
};
use crate::blob_log::{BlobLog, BlobRef};

/// What a backup holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackupStats {
    /// Records copied (every table).
    pub records: u64,
    /// Big values copied.
    pub blobs: u64,
    /// Their bytes.
    pub blob_bytes: u64,
}

/// Copies every entry of a table from the snapshot to the copy.
macro_rules! copy_table {
    ($from:expr, $to:expr, $def:expr, $stats:expr) => {{
        let source = $from.open_table($def)?;
        let mut target = $to.open_table($def)?;
        for item in source.iter()? {
            let (k, v) = item?;
            target.insert(k.value(), v.value())?;
            $stats.records += 1;
        }
    }};
}

impl RedbStore {
    /// Writes a consistent copy of this store into `dir` (its `shoal.redb`
    /// and `shoal.blobs`), made durable before it returns.
    pub(super) fn copy_to(&self, dir: &Path) -> Result<BackupStats, StoreError> {
        let _hold = self.blobs.hold_releases();
        let snapshot = self.db.begin_read()?;
        let path = dir.join(crate::service::STORE_FILE);
        let copy = Database::create(&path)?;
        let blobs = BlobLog::open(&path.with_extension("blobs"))?;
        let mut stats = BackupStats::default();
        let txn = copy.begin_write()?;
        {
            copy_table!(snapshot, txn, STATE, stats);
            copy_table!(snapshot, txn, DIFFS, stats);
            copy_table!(snapshot, txn, META, stats);
            copy_table!(snapshot, txn, JOB_META, stats);
            copy_table!(snapshot, txn, JOB_OWNER, stats);
            copy_table!(snapshot, txn, API_TOKENS, stats);
            copy_table!(snapshot, txn, INPUT_USERS, stats);
            copy_table!(snapshot, txn, JOB_ENDED, stats);
            copy_table!(snapshot, txn, super::requests::SUBMIT_REQUESTS, stats);
            copy_table!(snapshot, txn, super::requests::JOB_REQUEST, stats);
            copy_blobs(self, &snapshot, &txn, &blobs, BLOBS, &mut stats)?;
        }
        blobs.sync()?;
        txn.commit()?;
        Ok(stats)
    }
}

/// Copies the big values the snapshot refers to into `blobs`, each under a
/// fresh ref.
fn copy_blobs(
    store: &RedbStore,
    snapshot: &redb::ReadTransaction,
    txn: &redb::WriteTransaction,
    blobs: &BlobLog,
    def: TableDefinition<&[u8], &[u8]>,
    stats: &mut BackupStats,
) -> Result<(), StoreError> {
    let source = snapshot.open_table(def)?;
    let mut target = txn.open_table(def)?;
    for item in source.iter()? {
        let (k, r) = item?;
        let value = store.blob(r.value())?;
        stats.blob_bytes += value.len() as u64;
        let copied: BlobRef = blobs.append(&value.into())?;
        let bytes = postcard::to_allocvec(&copied).map_err(|e| corrupt("blob ref", e))?;
        target.insert(k.value(), bytes.as_slice())?;
        stats.records += 1;
        stats.blobs += 1;
    }
    Ok(())
}
