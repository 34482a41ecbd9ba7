//! Dead letters across jobs (`ListDeadLetters`) and their re-queue
//! (`RequeueDeadLetters`): a job's dead-lettered tasks, read back from
//! storage as submitted, run again as the tasks of a new job with the same
//! settings, each dead letter recording where it went (in the same commit).

use shoal_core::coordinator::DeadLetter;
use shoal_core::JobId;
use tonic::Status;

use super::errors::bad_field;
use super::paging::{fingerprint, next_token, position, ListCall};
use super::pb;
use super::service::gone;
use crate::access::Scope;
use crate::engine::EngineHandle;

/// Most dead letters one re-queue takes (a job may have a million tasks:
/// re-queue those in several calls).
pub(super) const MAX_REQUEUE: usize = 100_000;

fn to_pb((d, to): (DeadLetter, Option<crate::store::TaskAt>)) -> pb::DeadLetter {
    pb::DeadLetter {
        job_id: d.job.to_string(),
        index: d.index,
        reason: d.reason,
        failures: d.failures,
        requeued_job_id: to.map(|(j, _)| j.to_string()).unwrap_or_default(),
        requeued_index: to.map_or(0, |(_, i)| i),
    }
}

/// `ListDeadLetters`: every job's for a caller that reads every job; one
/// job's (in its reach) for a token scoped to its own.
pub(super) async fn list(
    engine: &EngineHandle,
    scope: Scope,
    job: Option<JobId>,
    req: &pb::ListDeadLettersRequest,
) -> Result<pb::ListDeadLettersResponse, Status> {
    if job.is_none() && scope != Scope::All {
        return Err(Status::permission_denied("a token scoped to its own jobs lists the dead letters of one (job_id)"));
    }
    let call = ListCall::DeadLetters;
    let size = call.page_size(req.page_size);
    let request = fingerprint(&[req.job_id.as_bytes()]);
    let after = match position(call, request, &req.page_token)? {
        None => None,
        Some(b) if b.len() == 20 => {
            let job = JobId::from_bytes(b[..16].try_into().unwrap_or_default());
            Some((job, u32::from_be_bytes(b[16..].try_into().unwrap_or_default())))
        }
        Some(_) => return Err(bad_field("page_token", "not a page token this service handed out")),
    };
    let mut rows = engine
        .query(move |_, store| store.dead_letters(job, after, size + 1))
        .await
        .map_err(gone)?
        .map_err(|e| Status::internal(e.to_string()))?;
    let next_page_token = if rows.len() > size {
        rows.truncate(size);
        let last = &rows[size - 1].0;
        let mut at = last.job.as_bytes().to_vec();
        at.extend_from_slice(&last.index.to_be_bytes());
        next_token(call, request, &at)
    } else {
        String::new()
    };
    Ok(pb::ListDeadLettersResponse { dead_letters: rows.into_iter().map(to_pb).collect(), next_page_token })
}

/// `RequeueDeadLetters`: the job's dead letters named (or all not yet
/// re-queued) become the tasks of a new job owned by `owner`.
pub(super) async fn requeue(
    engine: &EngineHandle,
    job: JobId,
    indices: &[u32],
    owner: String,
) -> Result<pb::RequeueDeadLettersResponse, Status> {
    let letters = engine
        .query(move |_, store| store.dead_letters(Some(job), None, MAX_REQUEUE + 1))
        .await
        .map_err(gone)?
        .map_err(|e| Status::internal(e.to_string()))?;
    let picked: Vec<u32> = if indices.is_empty() {
        letters.iter().filter(|(_, to)| to.is_none()).map(|(d, _)| d.index).take(MAX_REQUEUE).collect()
    } else {
        if indices.len() > MAX_REQUEUE {
            return Err(bad_field("indices", format!("at most {MAX_REQUEUE} per call")));
        }
        for i in indices {
            match letters.iter().find(|(d, _)| d.index == *i) {
                None => return Err(bad_field("indices", format!("task {i} of job {job} is not dead-lettered"))),
                Some((_, Some((to, at)))) => {
                    return Err(Status::failed_precondition(format!(
                        "task {i} was already re-queued as {to} task {at}"
                    )))
                }
                Some(_) => {}
            }
        }
        let mut v = indices.to_vec();
        v.sort_unstable();
        v.dedup();
        v
    };
    if picked.is_empty() {
        return Ok(pb::RequeueDeadLettersResponse { job_id: String::new(), tasks: 0 });
    }
    let wanted = picked.clone();
    let (spec, info) = engine
        .query(move |_, store| Ok::<_, crate::store::StoreError>((store.job_tasks(job, &wanted)?, store.job(job)?)))
        .await
        .map_err(gone)?
        .map_err(|e| Status::internal(e.to_string()))?;
    let Some(spec) = spec else {
        return Err(Status::not_found(format!("job {job} is no longer stored (retention deleted it): resubmit it")));
    };
    let name = format!("requeue of {}", info.map(|i| i.name).filter(|n| !n.is_empty()).unwrap_or(job.to_string()));
    let name: String = name.chars().take(super::intake::MAX_JOB_NAME_BYTES / 4).collect();
    let tasks = picked.len() as u32;
    let from = picked.into_iter().map(|i| (job, i)).collect();
    match engine.requeue(spec, name, owner, from).await.map_err(gone)? {
        Ok(new) => Ok(pb::RequeueDeadLettersResponse { job_id: new.to_string(), tasks }),
        Err(e) => Err(Status::resource_exhausted(e.to_string())),
    }
}
