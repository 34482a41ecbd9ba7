//! Durable storage: the latest value of every key the coordinator wrote,
//! the chain of state diffs (with the seed's retention), and the host's
//! own bookkeeping, behind [`Store`] so that a shared PostgreSQL backend
//! can follow. [`RedbStore`] is the embedded default: one file, ACID, no
//! server.
//!
//! One [`Store::commit`] is one transaction (group commit): everything the
//! coordinator decided in one batch of inputs becomes durable together,
//! before any of it is acknowledged.

use std::path::Path;

use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition};
use shoal_core::coordinator::ledger::{content_addressed, EntryValue, StateDiff, WriteType};
use shoal_core::coordinator::recovery::{ns, EndedTask, JobRecord, Snapshot, TaskTimes};
use shoal_core::coordinator::{DeadLetter, JobProgress, JobSpec, VerifiedResult};
use shoal_core::kernels::KernelSpec;
use shoal_core::{JobId, Millis};

use crate::access::TokenRecord;
use crate::blob_log::{BlobLog, BlobRef};

/// Latest value of every key: `namespace ‖ 0 ‖ key` → value.
const STATE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state");
/// State diffs by height (postcard).
const DIFFS: TableDefinition<u64, &[u8]> = TableDefinition::new("diffs");
/// The host's own records (clock, job names).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Per job: [`JobMeta`] (postcard), so status reads never decode inputs.
const JOB_META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("job_meta");
/// Latest values kept in the blob file: state key → [`BlobRef`] (postcard).
/// A key also in [`STATE`] has been overwritten by a small value there.
const BLOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state_blobs");
/// Per job: the id of the token that submitted it (absent: anonymous or
/// from before tokens had roles).
const JOB_OWNER: TableDefinition<&[u8], &str> = TableDefinition::new("job_owner");
/// API tokens: digest → [`TokenRecord`] (postcard). Never the token.
const API_TOKENS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("api_tokens");
/// Which stored jobs use an input stored apart: digest ‖ job id → ().
/// An input goes when the last job using it is deleted.
const INPUT_USERS: TableDefinition<&[u8], ()> = TableDefinition::new("input_users");
/// Finished jobs by when they finished: clock (u64 BE) ‖ job id → ():
/// what retention walks. A row whose job is gone is dropped by the walk.
const JOB_ENDED: TableDefinition<&[u8], ()> = TableDefinition::new("job_ended");

mod backup;
mod ended;
mod requests;
mod retention;
pub use self::backup::BackupStats;
pub use self::retention::ExpiredJob;

/// Values at least this long go to the blob file (job inputs, big outputs).
const BLOB_MIN: usize = 64 * 1024;

/// Storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("storage: {0}")]
    Db(String),
    /// A stored record does not decode.
    #[error("storage: corrupt record: {0}")]
    Corrupt(String),
    /// A stored diff names a value deleted since (its job was deleted):
    /// the history up to this height is no longer complete.
    #[error("the diff at height {0} wrote values deleted since (a deleted job); the history is complete after it")]
    Gone(u64),
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.to_string())
            }
        }
    )*};
}
db_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// What one batch makes durable.
#[derive(Debug, Default)]
pub struct Commit<'a> {
    /// The coordinator's diffs, in order.
    pub diffs: &'a [StateDiff],
    /// The host's clock at the end of the batch (restarts continue from it).
    pub clock: Millis,
    /// Jobs accepted in the batch.
    pub jobs: Vec<(JobId, JobMeta)>,
    /// Keep this many diffs (0: all); pruning runs at heights divisible by 1000.
    pub retain: u64,
    /// Jobs whose records the batch's diffs delete: the host's own rows
    /// of them go in the same transaction.
    pub deleted_jobs: Vec<DeletedJob>,
    /// Rows of [`JOB_ENDED`] to drop (retention walked past them).
    pub ended_rows: Vec<(Millis, JobId)>,
}

/// A job deleted in a batch, and what the host kept of it.
#[derive(Debug, Clone)]
pub struct DeletedJob {
    /// Which job.
    pub job: JobId,
    /// Its inputs stored apart (its rows of who uses them go).
    pub inputs: Vec<shoal_core::Digest>,
}

/// What the host records of a job next to the core's record.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobMeta {
    /// The client's name for it.
    pub name: String,
    /// Tasks in the job.
    pub tasks: u32,
    /// When it was submitted.
    pub submitted: Millis,
    /// The id of the token that submitted it (empty: none). Kept in its
    /// own table, so records written before owners existed still read.
    #[serde(skip)]
    pub owner: String,
    /// Its inputs stored apart ([`PreparedJob::inputs_apart`](shoal_core::coordinator::PreparedJob::inputs_apart)),
    /// recorded as used by it.
    #[serde(skip)]
    pub inputs_apart: Vec<shoal_core::Digest>,
    /// The client's `request_id` for the submission (empty: none); kept
    /// in its own tables.
    #[serde(skip)]
    pub request_id: String,
}

/// A job as storage knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobInfo {
    /// Tasks in the job.
    pub tasks: u32,
    /// When it was submitted.
    pub submitted: Millis,
    /// Final counters once every task ended.
    pub finished: Option<JobProgress>,
    /// The client's name for it.
    pub name: String,
    /// The id of the token that submitted it (empty: none).
    pub owner: String,
}

/// A task by its job and index (where a dead letter was re-queued).
pub type TaskAt = (JobId, u32);

/// What the service needs from storage.
pub trait Store: Send + Sync {
    /// Makes a batch durable (one transaction).
    fn commit(&self, commit: &Commit<'_>) -> Result<(), StoreError>;
    /// Everything a restarted coordinator needs, and the last clock value.
    fn recover(&self) -> Result<(Snapshot, Millis), StoreError>;
    /// A job, if stored.
    fn job(&self, job: JobId) -> Result<Option<JobInfo>, StoreError>;
    /// Ended tasks of a job with index ≥ `from`, in index order, at most `limit`.
    fn outcomes(&self, job: JobId, from: u32, limit: usize) -> Result<Vec<(u32, EndedTask)>, StoreError>;
    /// Stored diffs with `from ≤ height ≤ to`, ascending, at most `limit`.
    fn diffs(&self, from: u64, to: u64, limit: usize) -> Result<Vec<StateDiff>, StoreError>;
    /// Lowest and highest stored diff heights (0, 0 when none).
    fn diff_heights(&self) -> Result<(u64, u64), StoreError>;
    /// Jobs newest first (by submission time, then id), at most `limit`;
    /// only `owner`'s when given; only those after `after` in that order
    /// (the last job of the previous page) when given.
    fn jobs(
        &self,
        limit: usize,
        owner: Option<&str>,
        after: Option<(Millis, JobId)>,
    ) -> Result<Vec<(JobId, JobInfo)>, StoreError>;
    /// The kernels of a job's tasks, in index order, if the job is stored.
    fn job_kernels(&self, job: JobId) -> Result<Option<Vec<KernelSpec>>, StoreError>;
    /// Lifecycle stamps of a job's ended tasks with `from ≤ index ≤ to`,
    /// in index order.
    fn task_times(&self, job: JobId, from: u32, to: u32) -> Result<Vec<(u32, TaskTimes)>, StoreError>;
    /// Dead letters in key order (by job id, then index), after `after`
    /// when given, only `job`'s when given, at most `limit`; each with the
    /// job and index it was re-queued as.
    fn dead_letters(
        &self,
        job: Option<JobId>,
        after: Option<(JobId, u32)>,
        limit: usize,
    ) -> Result<Vec<(DeadLetter, Option<TaskAt>)>, StoreError>;
    /// Tasks `indices` of a stored job as submitted (kernels and inputs),
    /// as a job with its settings; None if the job is not stored.
    fn job_tasks(&self, job: JobId, indices: &[u32]) -> Result<Option<JobSpec>, StoreError>;
    /// The job `owner`'s submission with `request_id` created, if stored.
    fn request_job(&self, owner: &str, request_id: &str) -> Result<Option<JobId>, StoreError>;
    /// Every API token record, by digest.
    fn api_tokens(&self) -> Result<Vec<(shoal_core::Digest, TokenRecord)>, StoreError>;
    /// Stores (or replaces) a token's record, durably.
    fn put_api_token(&self, digest: &shoal_core::Digest, record: &TokenRecord) -> Result<(), StoreError>;
    /// A stored job's inputs stored apart, each with whether another
    /// stored job uses it too; None if the job is not stored.
    fn job_inputs(&self, job: JobId) -> Result<Option<Vec<(shoal_core::Digest, bool)>>, StoreError>;
    /// Finished jobs that ended before `before`, oldest first, at most `limit`.
    fn expired_jobs(&self, before: Millis, limit: usize) -> Result<Vec<ExpiredJob>, StoreError>;
    /// Disk bytes the big values take (the blob file's allocated blocks).
    fn blob_bytes(&self) -> u64;
    /// Writes a consistent copy of the store into the folder `dir` while it
    /// keeps running (what `shoal backup` archives).
    fn backup(&self, dir: &Path) -> Result<BackupStats, StoreError>;
}

/// Values at least this long are kept once, in the state table; the diff
/// log refers to them (they are the write-once records: job inputs, task
/// outputs) and is re-hydrated on read.
const OUT_OF_LINE: usize = 4096;

/// A diff as the log stores it (written borrowed, read owned).
#[derive(serde::Serialize, serde::Deserialize)]
struct LoggedDiff<'a> {
    height: u64,
    prev: shoal_core::Digest,
    digest: shoal_core::Digest,
    #[serde(borrow)]
    entries: Vec<LoggedEntry<'a>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LoggedEntry<'a> {
    write: WriteType,
    namespace: &'a str,
    key: &'a [u8],
    /// None: the value is the state table's value of this key.
    #[serde(borrow)]
    value: Option<std::borrow::Cow<'a, [u8]>>,
}

fn state_key(namespace: &str, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(namespace.len() + 1 + key.len());
    k.extend_from_slice(namespace.as_bytes());
    k.push(0);
    k.extend_from_slice(key);
    k
}

/// The smallest key greater than every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xFF; prefix.len() + 1]
}

/// The embedded store: one redb file, and next to it (same name, `.blobs`)
/// the file of big values.
pub struct RedbStore {
    db: Database,
    blobs: BlobLog,
}

/// A value read from [`STATE`] or from the blob file.
enum StateValue<'a> {
    Inline(redb::AccessGuard<'a, &'static [u8]>),
    Blob(Vec<u8>),
}

impl StateValue<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            StateValue::Inline(g) => g.value(),
            StateValue::Blob(v) => v,
        }
    }
}

impl RedbStore {
    /// Opens (or creates) `path`, and its blob file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(STATE)?;
            txn.open_table(DIFFS)?;
            txn.open_table(META)?;
            txn.open_table(JOB_META)?;
            txn.open_table(BLOBS)?;
            txn.open_table(JOB_OWNER)?;
            txn.open_table(API_TOKENS)?;
            txn.open_table(INPUT_USERS)?;
            txn.open_table(JOB_ENDED)?;
            txn.open_table(requests::SUBMIT_REQUESTS)?;
            txn.open_table(requests::JOB_REQUEST)?;
        }
        txn.commit()?;
        let blobs = BlobLog::open(&path.with_extension("blobs"))?;
        let store = RedbStore { db, blobs };
        store.index_older_jobs()?;
        Ok(store)
    }

    fn blob(&self, r: &[u8]) -> Result<Vec<u8>, StoreError> {
        let r: BlobRef = postcard::from_bytes(r).map_err(|e| corrupt("blob ref", e))?;
        self.blobs.read(&r)
    }

    /// The latest value of a state key, wherever it is kept.
    fn state_value<'a>(
        &self,
        state: &'a ReadOnlyTable<&'static [u8], &'static [u8]>,
        refs: &ReadOnlyTable<&'static [u8], &'static [u8]>,
        key: &[u8],
    ) -> Result<Option<StateValue<'a>>, StoreError> {
        if let Some(v) = state.get(key)? {
            return Ok(Some(StateValue::Inline(v)));
        }
        match refs.get(key)? {
            Some(r) => Ok(Some(StateValue::Blob(self.blob(r.value())?))),
            None => Ok(None),
        }
    }

    /// Calls `f(full key, value)` for the state keys in `start..end`, in
    /// key order, merging the two places values are kept; `f` returns
    /// whether to go on.
    fn range(
        &self,
        start: &[u8],
        end: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        let state = txn.open_table(STATE)?;
        // Values in the blob file are few (a job's inputs, big outputs):
        // listed first, then merged into the walk over the B-tree.
        let mut blobs = Vec::new();
        for item in txn.open_table(BLOBS)?.range(start..end)? {
            let (k, r) = item?;
            blobs.push((k.value().to_vec(), r.value().to_vec()));
        }
        let mut blobs = blobs.into_iter().peekable();
        for item in state.range(start..end)? {
            let (k, v) = item?;
            let key = k.value();
            while let Some((bk, r)) = blobs.next_if(|(bk, _)| bk.as_slice() <= key) {
                // A key in both was overwritten by the small value.
                if bk.as_slice() != key && !f(&bk, &self.blob(&r)?)? {
                    return Ok(());
                }
            }
            if !f(key, v.value())? {
                return Ok(());
            }
        }
        for (bk, r) in blobs {
            if !f(&bk, &self.blob(&r)?)? {
                return Ok(());
            }
        }
        Ok(())
    }

    fn scan(
        &self,
        namespace: &str,
        key_prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let start = state_key(namespace, key_prefix);
        let end = prefix_end(&start);
        let skip = namespace.len() + 1;
        self.range(&start, &end, |k, v| f(&k[skip..], v))
    }

    fn job_meta(&self, job: JobId) -> Result<Option<JobMeta>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(JOB_META)?;
        let Some(v) = t.get(job.as_bytes().as_slice())? else { return Ok(None) };
        let mut meta: JobMeta = postcard::from_bytes(v.value()).map_err(|e| corrupt("job meta", e))?;
        if let Some(owner) = txn.open_table(JOB_OWNER)?.get(job.as_bytes().as_slice())? {
            owner.value().clone_into(&mut meta.owner);
        }
        Ok(Some(meta))
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

impl Store for RedbStore {
    fn commit(&self, c: &Commit<'_>) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        let mut wrote_blobs = false;
        // Big values whose last ref this batch drops: their space goes back
        // once the transaction is durable.
        let mut released = Vec::new();
        // Jobs whose end this batch writes (retention counts from it).
        let mut finished = Vec::new();
        {
            let mut state = txn.open_table(STATE)?;
            let mut refs = txn.open_table(BLOBS)?;
            let mut diffs = txn.open_table(DIFFS)?;
            for d in c.diffs {
                for e in &d.entries {
                    let k = state_key(&e.namespace, &e.key);
                    if e.write == WriteType::Put && e.namespace == ns::JOB_FINISHED {
                        finished.extend(<[u8; 16]>::try_from(e.key.as_slice()).ok().map(JobId::from_bytes));
                    }
                    match e.write {
                        // Same key, same bytes: already stored (an input
                        // shared by several tasks or jobs).
                        WriteType::Put if content_addressed(&e.namespace) && refs.get(k.as_slice())?.is_some() => {}
                        WriteType::Put if e.value.len() >= BLOB_MIN => {
                            let r = self.blobs.append(&e.value)?;
                            let r = postcard::to_allocvec(&r).map_err(|e| corrupt("blob ref", e))?;
                            refs.insert(k.as_slice(), r.as_slice())?;
                            state.remove(k.as_slice())?;
                            wrote_blobs = true;
                        }
                        WriteType::Put => {
                            state.insert(k.as_slice(), e.value.flat().as_ref())?;
                        }
                        WriteType::Delete => {
                            state.remove(k.as_slice())?;
                            if let Some(r) = refs.remove(k.as_slice())? {
                                released.push(r.value().to_vec());
                            }
                        }
                        WriteType::DeletePrefix => {
                            let end = prefix_end(&k);
                            state.retain_in(k.as_slice()..end.as_slice(), |_, _| false)?;
                            for r in refs.extract_from_if(k.as_slice()..end.as_slice(), |_, _| true)? {
                                released.push(r?.1.value().to_vec());
                            }
                        }
                    }
                }
                let logged = LoggedDiff {
                    height: d.height,
                    prev: d.prev,
                    digest: d.digest,
                    entries: d
                        .entries
                        .iter()
                        .map(|e| LoggedEntry {
                            write: e.write,
                            namespace: &e.namespace,
                            key: &e.key,
                            value: (e.write != WriteType::Put || e.value.len() < OUT_OF_LINE).then(|| e.value.flat()),
                        })
                        .collect(),
                };
                let bytes = postcard::to_allocvec(&logged).map_err(|e| corrupt("diff", e))?;
                diffs.insert(d.height, bytes.as_slice())?;
                if c.retain > 0 && d.height % 1000 == 0 && d.height > c.retain {
                    let keep_after = d.height - c.retain;
                    diffs.retain_in(..keep_after, |_, _| false)?;
                }
            }
            let mut meta = txn.open_table(META)?;
            meta.insert("clock", c.clock.0.to_be_bytes().as_slice())?;
            let mut metas = txn.open_table(JOB_META)?;
            let mut owners = txn.open_table(JOB_OWNER)?;
            let mut users = txn.open_table(INPUT_USERS)?;
            for (job, meta) in &c.jobs {
                let v = postcard::to_allocvec(meta).map_err(|e| corrupt("job meta", e))?;
                metas.insert(job.as_bytes().as_slice(), v.as_slice())?;
                if !meta.owner.is_empty() {
                    owners.insert(job.as_bytes().as_slice(), meta.owner.as_str())?;
                }
                for d in &meta.inputs_apart {
                    users.insert(retention::user_key(d, *job).as_slice(), ())?;
                }
            }
            retention::record_ends(&txn, c, &finished)?;
            requests::record(&txn, c)?;
            for gone in &c.deleted_jobs {
                metas.remove(gone.job.as_bytes().as_slice())?;
                owners.remove(gone.job.as_bytes().as_slice())?;
                for d in &gone.inputs {
                    users.remove(retention::user_key(d, gone.job).as_slice())?;
                }
            }
        }
        // The refs this transaction commits must name durable bytes.
        if wrote_blobs {
            self.blobs.sync()?;
        }
        txn.commit()?;
        for r in released {
            if let Ok(r) = postcard::from_bytes::<BlobRef>(&r) {
                self.blobs.release(&r);
            }
        }
        Ok(())
    }

    fn recover(&self) -> Result<(Snapshot, Millis), StoreError> {
        let mut s = Snapshot::default();
        let (_, latest) = self.diff_heights()?;
        if latest > 0 {
            if let Some(d) = self.diffs(latest, latest, 1)?.pop() {
                s.ledger_height = d.height;
                s.ledger_digest = d.digest;
            }
        }
        let clock = {
            let txn = self.db.begin_read()?;
            let meta = txn.open_table(META)?;
            meta.get("clock")?
                .and_then(|v| v.value().try_into().ok().map(u64::from_be_bytes))
                .map_or(Millis::ZERO, Millis)
        };
        let mut apply = |namespace: &str, k: &[u8], v: &[u8]| {
            s.apply(namespace, k, v).map_err(|e| StoreError::Corrupt(e.to_string()))
        };
        // Which jobs are finished, first: their tasks are not loaded.
        let mut finished = std::collections::HashSet::new();
        self.scan(ns::JOB_FINISHED, &[], |k, _| {
            finished.insert(k.to_vec());
            Ok(true)
        })?;
        let mut open = Vec::new();
        self.scan(ns::JOB, &[], |k, v| {
            if !finished.contains(k) {
                apply(ns::JOB, k, v)?;
                open.push(k.to_vec());
            }
            Ok(true)
        })?;
        for job in &open {
            for namespace in [ns::TASK, ns::DEAD_LETTER] {
                self.scan(namespace, job, |k, v| apply(namespace, k, v).map(|()| true))?;
            }
        }
        for namespace in [ns::WORKER_STATE, ns::EPOCH, ns::EPOCH_OPEN] {
            self.scan(namespace, &[], |k, v| apply(namespace, k, v).map(|()| true))?;
        }
        // The inputs stored apart that open tasks still need.
        let needed = s.needed_inputs();
        if !needed.is_empty() {
            let txn = self.db.begin_read()?;
            let state = txn.open_table(STATE)?;
            let refs = txn.open_table(BLOBS)?;
            for digest in needed {
                let key = state_key(ns::INPUT, digest.as_bytes());
                let v = self.state_value(&state, &refs, &key)?.ok_or_else(|| {
                    StoreError::Corrupt(format!("the stored inputs {digest} of an unfinished job are missing"))
                })?;
                s.apply(ns::INPUT, digest.as_bytes(), v.bytes()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            }
        }
        Ok((s, clock))
    }

    fn job(&self, job: JobId) -> Result<Option<JobInfo>, StoreError> {
        let Some(meta) = self.job_meta(job)? else { return Ok(None) };
        let txn = self.db.begin_read()?;
        let state = txn.open_table(STATE)?;
        let refs = txn.open_table(BLOBS)?;
        let finished = match self.state_value(&state, &refs, &state_key(ns::JOB_FINISHED, job.as_bytes()))? {
            Some(v) => Some(postcard::from_bytes(v.bytes()).map_err(|e| corrupt("job-finished", e))?),
            None => None,
        };
        Ok(Some(JobInfo { tasks: meta.tasks, submitted: meta.submitted, finished, name: meta.name, owner: meta.owner }))
    }

    fn outcomes(&self, job: JobId, from: u32, limit: usize) -> Result<Vec<(u32, EndedTask)>, StoreError> {
        let mut out = Vec::new();
        for namespace in [ns::TASK, ns::DEAD_LETTER] {
            let prefix = state_key(namespace, job.as_bytes());
            let mut start = prefix.clone();
            start.extend_from_slice(&from.to_be_bytes());
            let end = prefix_end(&prefix);
            let mut taken = 0;
            self.range(&start, &end, |key, v| {
                let index = key
                    .get(prefix.len()..prefix.len() + 4)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_be_bytes)
                    .ok_or_else(|| corrupt(namespace, "short key"))?;
                let ended = if namespace == ns::TASK {
                    EndedTask::Verified(postcard::from_bytes::<VerifiedResult>(v).map_err(|e| corrupt(namespace, e))?)
                } else {
                    EndedTask::DeadLettered(postcard::from_bytes::<DeadLetter>(v).map_err(|e| corrupt(namespace, e))?)
                };
                out.push((index, ended));
                taken += 1;
                Ok(taken < limit)
            })?;
        }
        out.sort_by_key(|(i, _)| *i);
        out.truncate(limit);
        Ok(out)
    }

    fn diffs(&self, from: u64, to: u64, limit: usize) -> Result<Vec<StateDiff>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DIFFS)?;
        let state = txn.open_table(STATE)?;
        let refs = txn.open_table(BLOBS)?;
        let mut out = Vec::new();
        for item in table.range(from..=to)?.take(limit) {
            let (_, v) = item?;
            let logged: LoggedDiff<'_> = postcard::from_bytes(v.value()).map_err(|e| corrupt("diff", e))?;
            let mut entries = Vec::with_capacity(logged.entries.len());
            for e in logged.entries {
                let value = match e.value {
                    Some(v) => v.into_owned(),
                    None => self
                        .state_value(&state, &refs, &state_key(e.namespace, e.key))?
                        .map(|v| v.bytes().to_vec())
                        .ok_or(StoreError::Gone(logged.height))?,
                };
                entries.push(shoal_core::coordinator::ledger::DiffEntry {
                    write: e.write,
                    namespace: std::borrow::Cow::Owned(e.namespace.to_owned()),
                    key: e.key.to_vec(),
                    value: EntryValue::Bytes(value),
                });
            }
            out.push(StateDiff { height: logged.height, prev: logged.prev, digest: logged.digest, entries });
        }
        Ok(out)
    }

    fn diff_heights(&self) -> Result<(u64, u64), StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DIFFS)?;
        let first = table.first()?.map_or(0, |(k, _)| k.value());
        let last = table.last()?.map_or(0, |(k, _)| k.value());
        Ok((first, last))
    }

    fn jobs(
        &self,
        limit: usize,
        owner: Option<&str>,
        after: Option<(Millis, JobId)>,
    ) -> Result<Vec<(JobId, JobInfo)>, StoreError> {
        let mut all = Vec::new();
        {
            let txn = self.db.begin_read()?;
            let t = txn.open_table(JOB_META)?;
            let owners = txn.open_table(JOB_OWNER)?;
            for item in t.iter()? {
                let (k, v) = item?;
                if let Some(want) = owner {
                    if owners.get(k.value())?.is_none_or(|o| o.value() != want) {
                        continue;
                    }
                }
                if let Ok(b) = <[u8; 16]>::try_from(k.value()) {
                    let meta: JobMeta = postcard::from_bytes(v.value()).map_err(|e| corrupt("job meta", e))?;
                    let job = JobId::from_bytes(b);
                    if after.is_none_or(|cursor| (meta.submitted, job) < cursor) {
                        all.push((job, meta.submitted));
                    }
                }
            }
        }
        all.sort_by(|(a, at_a), (b, at_b)| at_b.cmp(at_a).then_with(|| b.cmp(a)));
        all.truncate(limit);
        let mut out = Vec::with_capacity(all.len());
        for (job, _) in all {
            if let Some(info) = self.job(job)? {
                out.push((job, info));
            }
        }
        Ok(out)
    }

    fn job_kernels(&self, job: JobId) -> Result<Option<Vec<KernelSpec>>, StoreError> {
        let txn = self.db.begin_read()?;
        let state = txn.open_table(STATE)?;
        let refs = txn.open_table(BLOBS)?;
        let Some(v) = self.state_value(&state, &refs, &state_key(ns::JOB, job.as_bytes()))? else { return Ok(None) };
        let record = JobRecord::decode(v.bytes()).map_err(|e| corrupt("job", e))?;
        Ok(Some(record.kernels()))
    }

    fn request_job(&self, owner: &str, request_id: &str) -> Result<Option<JobId>, StoreError> {
        self.find_request(owner, request_id)
    }

    fn task_times(&self, job: JobId, from: u32, to: u32) -> Result<Vec<(u32, TaskTimes)>, StoreError> {
        self.read_task_times(job, from, to)
    }

    fn dead_letters(
        &self,
        job: Option<JobId>,
        after: Option<(JobId, u32)>,
        limit: usize,
    ) -> Result<Vec<(DeadLetter, Option<TaskAt>)>, StoreError> {
        self.read_dead_letters(job, after, limit)
    }

    fn job_tasks(&self, job: JobId, indices: &[u32]) -> Result<Option<JobSpec>, StoreError> {
        self.read_job_tasks(job, indices)
    }

    fn api_tokens(&self) -> Result<Vec<(shoal_core::Digest, TokenRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(API_TOKENS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            let d = <[u8; 32]>::try_from(k.value()).map_err(|_| corrupt("api token", "a key is not a digest"))?;
            let record: TokenRecord = postcard::from_bytes(v.value()).map_err(|e| corrupt("api token", e))?;
            out.push((shoal_core::Digest(d), record));
        }
        Ok(out)
    }

    fn job_inputs(&self, job: JobId) -> Result<Option<Vec<(shoal_core::Digest, bool)>>, StoreError> {
        self.inputs_of(job)
    }

    fn expired_jobs(&self, before: Millis, limit: usize) -> Result<Vec<ExpiredJob>, StoreError> {
        self.ended_before(before, limit)
    }

    fn blob_bytes(&self) -> u64 {
        self.blobs.allocated()
    }

    fn backup(&self, dir: &Path) -> Result<BackupStats, StoreError> {
        self.copy_to(dir)
    }

    fn put_api_token(&self, digest: &shoal_core::Digest, record: &TokenRecord) -> Result<(), StoreError> {
        let v = postcard::to_allocvec(record).map_err(|e| corrupt("api token", e))?;
        let txn = self.db.begin_write()?;
        txn.open_table(API_TOKENS)?.insert(digest.0.as_slice(), v.as_slice())?;
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
