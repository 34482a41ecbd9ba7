//! Reads of ended tasks across the store: lifecycle stamps (after each
//! task's end record), dead letters of every job with where each was
//! re-queued, and tasks read back as submitted (what a re-queue runs).

use redb::ReadableDatabase;
use shoal_core::coordinator::recovery::{ns, task_record_key, Snapshot, TaskTimes};
use shoal_core::coordinator::{DeadLetter, JobSpec, VerifiedResult};
use shoal_core::JobId;

use super::{corrupt, prefix_end, state_key, RedbStore, StoreError, TaskAt, BLOBS, STATE};

impl RedbStore {
    pub(super) fn read_task_times(&self, job: JobId, from: u32, to: u32) -> Result<Vec<(u32, TaskTimes)>, StoreError> {
        let mut out = Vec::new();
        for namespace in [ns::TASK, ns::DEAD_LETTER] {
            let prefix = state_key(namespace, job.as_bytes());
            let start = state_key(namespace, &task_record_key(job, from));
            let mut end = state_key(namespace, &task_record_key(job, to));
            end.push(0);
            self.range(&start, &end.min(prefix_end(&prefix)), |key, v| {
                let index = key
                    .get(prefix.len()..prefix.len() + 4)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_be_bytes)
                    .ok_or_else(|| corrupt(namespace, "short key"))?;
                // The stamps follow the record in the same value.
                let rest = if namespace == ns::TASK {
                    postcard::take_from_bytes::<VerifiedResult>(v).map(|(_, rest)| rest)
                } else {
                    postcard::take_from_bytes::<DeadLetter>(v).map(|(_, rest)| rest)
                }
                .map_err(|e| corrupt(namespace, e))?;
                if !rest.is_empty() {
                    out.push((index, postcard::from_bytes(rest).map_err(|e| corrupt(namespace, e))?));
                }
                Ok(true)
            })?;
        }
        out.sort_by_key(|(i, _)| *i);
        Ok(out)
    }

    pub(super) fn read_dead_letters(
        &self,
        job: Option<JobId>,
        after: Option<(JobId, u32)>,
        limit: usize,
    ) -> Result<Vec<(DeadLetter, Option<TaskAt>)>, StoreError> {
        let prefix = state_key(ns::DEAD_LETTER, job.as_ref().map_or(&[][..], |j| j.as_bytes().as_slice()));
        let mut start = match after {
            Some((j, i)) => state_key(ns::DEAD_LETTER, &task_record_key(j, i)),
            None => prefix.clone(),
        };
        if after.is_some() {
            start.push(0); // strictly after
        }
        let end = prefix_end(&prefix);
        let mut letters = Vec::new();
        self.range(&start.max(prefix.clone()), &end, |_, v| {
            letters.push(postcard::from_bytes::<DeadLetter>(v).map_err(|e| corrupt(ns::DEAD_LETTER, e))?);
            Ok(letters.len() < limit)
        })?;
        let txn = self.db.begin_read()?;
        let state = txn.open_table(STATE)?;
        let refs = txn.open_table(BLOBS)?;
        letters
            .into_iter()
            .map(|d| {
                let key = state_key(ns::REQUEUED, &task_record_key(d.job, d.index));
                let to = match self.state_value(&state, &refs, &key)? {
                    Some(v) => Some(postcard::from_bytes(v.bytes()).map_err(|e| corrupt(ns::REQUEUED, e))?),
                    None => None,
                };
                Ok((d, to))
            })
            .collect()
    }

    pub(super) fn read_job_tasks(&self, job: JobId, indices: &[u32]) -> Result<Option<JobSpec>, StoreError> {
        let txn = self.db.begin_read()?;
        let state = txn.open_table(STATE)?;
        let refs = txn.open_table(BLOBS)?;
        let Some(v) = self.state_value(&state, &refs, &state_key(ns::JOB, job.as_bytes()))? else { return Ok(None) };
        // The recovery path reads job records and inputs: the same here.
        let mut snapshot = Snapshot::default();
        snapshot.apply(ns::JOB, job.as_bytes(), v.bytes()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let Some(mut stored) = snapshot.jobs.remove(&job) else { return Ok(None) };
        let mut tasks = Vec::with_capacity(indices.len());
        for &i in indices {
            let Some(task) = stored.spec.tasks.get(i as usize) else {
                return Err(StoreError::Corrupt(format!("job {job} has no task {i}")));
            };
            let mut task = task.clone();
            if let Some(digest) = stored.apart.get(&i) {
                let key = state_key(ns::INPUT, digest.as_bytes());
                let v = self.state_value(&state, &refs, &key)?.ok_or_else(|| {
                    StoreError::Corrupt(format!("the stored inputs {digest} of job {job} task {i} are missing"))
                })?;
                snapshot
                    .apply(ns::INPUT, digest.as_bytes(), v.bytes())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                task.inputs = snapshot.inputs.get(digest).cloned().unwrap_or_default();
            }
            tasks.push(task);
        }
        stored.spec.tasks = tasks;
        Ok(Some(stored.spec))
    }
}
