//! What storage keeps so that finished jobs can go: which stored jobs use
//! each input stored apart (an input goes with the last of them), and when
//! each job finished (what retention walks). Written in the transactions
//! that store and finish jobs; built once from the records of a store that
//! predates them.

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use shoal_core::coordinator::recovery::{ns, JobRecord, StoredInputs};
use shoal_core::{Digest, JobId, Millis};

use super::{corrupt, state_key, Commit, JobMeta, RedbStore, StoreError, INPUT_USERS, JOB_ENDED, JOB_META, META};

/// A finished job past its retention, as [`RedbStore::ended_before`] finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpiredJob {
    /// When it finished (coordinator clock).
    pub ended: Millis,
    /// Which job.
    pub job: JobId,
    /// Whether it is still stored (false: deleted already, only the row is left).
    pub stored: bool,
}

/// The key of "`job` uses the input `digest`".
pub(super) fn user_key(digest: &Digest, job: JobId) -> [u8; 48] {
    let mut k = [0u8; 48];
    k[..32].copy_from_slice(digest.as_bytes());
    k[32..].copy_from_slice(job.as_bytes());
    k
}

fn ended_key(at: Millis, job: JobId) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&at.0.to_be_bytes());
    k[8..].copy_from_slice(job.as_bytes());
    k
}

/// Records when the batch's `finished` jobs finished (its clock), and
/// drops the rows retention walked past.
pub(super) fn record_ends(txn: &WriteTransaction, c: &Commit<'_>, finished: &[JobId]) -> Result<(), StoreError> {
    let mut ended = txn.open_table(JOB_ENDED)?;
    for job in finished {
        ended.insert(ended_key(c.clock, *job).as_slice(), ())?;
    }
    for (at, job) in &c.ended_rows {
        ended.remove(ended_key(*at, *job).as_slice())?;
    }
    Ok(())
}

/// The digests a job record stores apart, each once.
fn apart(record: &JobRecord<'_>) -> Vec<Digest> {
    let mut out: Vec<Digest> = record
        .tasks
        .iter()
        .flat_map(|t| match &t.inputs {
            StoredInputs::Apart(d) => vec![*d],
            StoredInputs::Inline(_) => Vec::new(),
            StoredInputs::Shared { layout, own } => {
                let own = match **own {
                    StoredInputs::Apart(d) => Some(d),
                    _ => None,
                };
                layout.iter().flatten().copied().chain(own).collect()
            }
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

impl RedbStore {
    /// Builds the rows of input users and job ends from the stored records,
    /// once, for a store written before they existed.
    pub(super) fn index_older_jobs(&self) -> Result<(), StoreError> {
        const DONE: &str = "retention index v1";
        {
            let txn = self.db.begin_read()?;
            if txn.open_table(META)?.get(DONE)?.is_some() {
                return Ok(());
            }
        }
        let mut users = Vec::new();
        self.scan(ns::JOB, &[], |k, v| {
            let b = <[u8; 16]>::try_from(k).map_err(|_| corrupt("job", "a key is not a job id"))?;
            let record = JobRecord::decode(v).map_err(|e| corrupt("job", e))?;
            users.extend(apart(&record).into_iter().map(|d| user_key(&d, JobId::from_bytes(b))));
            Ok(true)
        })?;
        let mut finished = Vec::new();
        self.scan(ns::JOB_FINISHED, &[], |k, _| {
            finished.push(k.to_vec());
            Ok(true)
        })?;
        let txn = self.db.begin_write()?;
        {
            let metas = txn.open_table(JOB_META)?;
            let mut ended = txn.open_table(JOB_ENDED)?;
            for k in finished {
                let Ok(b) = <[u8; 16]>::try_from(k.as_slice()) else { continue };
                // When it finished was not kept: its submission stands in.
                let submitted = match metas.get(k.as_slice())? {
                    Some(v) => {
                        postcard::from_bytes::<JobMeta>(v.value()).map_err(|e| corrupt("job meta", e))?.submitted
                    }
                    None => Millis::ZERO,
                };
                ended.insert(ended_key(submitted, JobId::from_bytes(b)).as_slice(), ())?;
            }
            let mut table = txn.open_table(INPUT_USERS)?;
            for k in &users {
                table.insert(k.as_slice(), ())?;
            }
            txn.open_table(META)?.insert(DONE, [1u8].as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// A stored job's inputs stored apart, each with whether another
    /// stored job uses it too; None if the job is not stored.
    pub(super) fn inputs_of(&self, job: JobId) -> Result<Option<Vec<(Digest, bool)>>, StoreError> {
        let txn = self.db.begin_read()?;
        let state = txn.open_table(super::STATE)?;
        let refs = txn.open_table(super::BLOBS)?;
        let Some(v) = self.state_value(&state, &refs, &state_key(ns::JOB, job.as_bytes()))? else { return Ok(None) };
        let record = JobRecord::decode(v.bytes()).map_err(|e| corrupt("job", e))?;
        let users = txn.open_table(INPUT_USERS)?;
        let mut out = Vec::new();
        for d in apart(&record) {
            let mut shared = false;
            for item in users.range(user_key(&d, JobId::from_bytes([0; 16])).as_slice()..)? {
                let (k, _) = item?;
                let k = k.value();
                if k[..32] != d.as_bytes()[..] {
                    break;
                }
                if k[32..] != job.as_bytes()[..] {
                    shared = true;
                    break;
                }
            }
            out.push((d, shared));
        }
        Ok(Some(out))
    }

    /// Finished jobs that ended before `before`, oldest first, at most `limit`.
    pub(super) fn ended_before(&self, before: Millis, limit: usize) -> Result<Vec<ExpiredJob>, StoreError> {
        let txn = self.db.begin_read()?;
        let ended = txn.open_table(JOB_ENDED)?;
        let metas = txn.open_table(JOB_META)?;
        let mut out = Vec::new();
        for item in ended.range(..ended_key(before, JobId::from_bytes([0; 16])).as_slice())?.take(limit) {
            let (k, _) = item?;
            let k = k.value();
            let (Ok(at), Ok(job)) = (<[u8; 8]>::try_from(&k[..8]), <[u8; 16]>::try_from(&k[8..])) else {
                return Err(corrupt("job end", "a key of the wrong length"));
            };
            let job = JobId::from_bytes(job);
            let stored = metas.get(job.as_bytes().as_slice())?.is_some();
            out.push(ExpiredJob { ended: Millis(u64::from_be_bytes(at)), job, stored });
        }
        Ok(out)
    }
}
