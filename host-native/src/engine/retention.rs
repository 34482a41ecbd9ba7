//! Deleting finished jobs: on request (`DeleteJob`) and by retention (jobs
//! finished longer ago than `retention.finished_jobs`). The engine names
//! the job's inputs no other stored job uses, the core writes the deletes
//! into the round's diff, and the committer drops the host's own rows of
//! the job in the same transaction.

use shoal_core::coordinator::Command as CoreCommand;
use shoal_core::{JobId, Millis};
use tokio::sync::oneshot;

use super::{DeleteJobError, Engine, Reply, Waiting};
use crate::store::{DeletedJob, JobMeta, Store};

/// Jobs deleted by retention in one round at most (more wait for the next).
const SWEEP_BATCH: usize = 64;

/// What a batch adds to the host's own records.
#[derive(Default)]
pub(super) struct Batch {
    /// Jobs accepted.
    pub(super) jobs: Vec<(JobId, JobMeta)>,
    /// Jobs deleted.
    pub(super) deleted: Vec<DeletedJob>,
    /// Rows of finished jobs retention walked past.
    pub(super) ended_rows: Vec<(Millis, JobId)>,
}

impl Batch {
    /// Several batches' records as one commit's.
    pub(super) fn merge(batches: impl Iterator<Item = Batch>) -> Batch {
        let mut all = Batch::default();
        for b in batches {
            all.jobs.extend(b.jobs);
            all.deleted.extend(b.deleted);
            all.ended_rows.extend(b.ended_rows);
        }
        all
    }

    /// Nothing to write.
    pub(super) fn is_empty(&self) -> bool {
        self.jobs.is_empty() && self.deleted.is_empty() && self.ended_rows.is_empty()
    }
}

/// When finished jobs go.
pub(super) struct Retention {
    keep: Option<Millis>,
    every: Millis,
    next: Millis,
}

impl Retention {
    /// Deletes jobs `keep` after they finished (None: never), looking every `every`.
    pub(super) fn new(keep: Option<Millis>, every: Millis) -> Retention {
        Retention { keep, every: every.max(Millis(1)), next: Millis::ZERO }
    }

    /// The stored jobs due for deletion now (when it is time to look);
    /// rows of jobs deleted already go into `records`.
    pub(super) fn due(&mut self, now: Millis, store: &dyn Store, records: &mut Batch) -> Vec<(Millis, JobId)> {
        let Some(keep) = self.keep else { return Vec::new() };
        if now < self.next {
            return Vec::new();
        }
        let found = match store.expired_jobs(Millis(now.0.saturating_sub(keep.0)), SWEEP_BATCH) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "retention could not list finished jobs");
                Vec::new()
            }
        };
        // A full sweep may have more behind it: look again next round.
        self.next = if found.len() == SWEEP_BATCH { now } else { now + self.every };
        let mut due = Vec::new();
        for e in found {
            if e.stored {
                due.push((e.ended, e.job));
            } else {
                records.ended_rows.push((e.ended, e.job));
            }
        }
        due
    }
}

impl Engine {
    /// The core command that deletes `job`, and what waits for its answer;
    /// or the answer itself when the job is not stored (or storage fails).
    pub(super) fn deletion(
        &mut self,
        job: JobId,
        ended: Option<Millis>,
        reply: Option<oneshot::Sender<Result<bool, DeleteJobError>>>,
    ) -> Result<(Waiting, CoreCommand), Reply> {
        let inputs = match self.store.job_inputs(job) {
            Ok(Some(inputs)) => inputs,
            Ok(None) => {
                return Err(Box::new(move || {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(false));
                    }
                }))
            }
            Err(e) => {
                tracing::error!(%job, error = %e, "cannot read a job to delete");
                // Dropping the reply tells the caller it failed.
                return Err(Box::new(|| {}));
            }
        };
        let unshared = inputs.iter().filter(|(_, shared)| !shared).map(|(d, _)| *d).collect();
        let all = inputs.into_iter().map(|(d, _)| d).collect();
        Ok((Waiting::Delete { job, inputs: all, ended, reply }, CoreCommand::DeleteJob { job, inputs: unshared }))
    }
}
