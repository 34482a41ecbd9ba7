//! Which job each client request created (`SubmitJob`'s `request_id`,
//! AIP-155), so a retried submission answers the first job instead of
//! making a second. Written in the transaction that stores the job, so a
//! crash never leaves a job without its request or a request without its
//! job; gone with the job.

use redb::{ReadableDatabase, TableDefinition, WriteTransaction};
use shoal_core::JobId;

use super::{Commit, RedbStore, StoreError};

/// (owner ‖ 0 ‖ request id) → job id.
pub(super) const SUBMIT_REQUESTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("submit_requests");
/// Job id → (owner ‖ 0 ‖ request id): what goes with the job.
pub(super) const JOB_REQUEST: TableDefinition<&[u8], &[u8]> = TableDefinition::new("job_request");

/// Requests are scoped to the token that made them: another client's id
/// never names (or reveals) someone else's job.
fn request_key(owner: &str, request_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(owner.len() + 1 + request_id.len());
    k.extend_from_slice(owner.as_bytes());
    k.push(0);
    k.extend_from_slice(request_id.as_bytes());
    k
}

/// Records the batch's new jobs' requests and drops its deleted jobs'.
pub(super) fn record(txn: &WriteTransaction, c: &Commit<'_>) -> Result<(), StoreError> {
    let mut by_request = txn.open_table(SUBMIT_REQUESTS)?;
    let mut by_job = txn.open_table(JOB_REQUEST)?;
    for (job, meta) in c.jobs.iter().filter(|(_, m)| !m.request_id.is_empty()) {
        let key = request_key(&meta.owner, &meta.request_id);
        by_request.insert(key.as_slice(), job.as_bytes().as_slice())?;
        by_job.insert(job.as_bytes().as_slice(), key.as_slice())?;
    }
    for gone in &c.deleted_jobs {
        if let Some(key) = by_job.remove(gone.job.as_bytes().as_slice())? {
            by_request.remove(key.value())?;
        }
    }
    Ok(())
}

impl RedbStore {
    /// The job `owner`'s request `request_id` created, if it is stored.
    pub(super) fn find_request(&self, owner: &str, request_id: &str) -> Result<Option<JobId>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SUBMIT_REQUESTS)?;
        let Some(v) = table.get(request_key(owner, request_id).as_slice())? else { return Ok(None) };
        Ok(<[u8; 16]>::try_from(v.value()).ok().map(JobId::from_bytes))
    }
}
