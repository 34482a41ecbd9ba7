//! `ListPendingTasks`: a job's tasks still pending, with their lifecycle so
//! far (the ended ones, with their whole lifecycle, come from
//! `StreamJobResults`).

use shoal_core::coordinator::PendingTask;
use shoal_core::JobId;
use tonic::Status;

use super::errors::bad_field;
use super::paging::{fingerprint, next_token, position, ListCall};
use super::pb;
use super::service::gone;
use crate::engine::EngineHandle;

/// A pending task as the API shows it, its durations counted to `now`.
fn to_pb(t: &PendingTask, now: u64) -> pb::PendingTask {
    let (submitted, offered, acked) = (t.submitted.0, t.offered.map(|m| m.0), t.acked.map(|m| m.0));
    pb::PendingTask {
        index: t.index,
        submitted_ms: submitted,
        offered_ms: offered.unwrap_or(0),
        acked_ms: acked.unwrap_or(0),
        queued_ms: offered.unwrap_or(now).saturating_sub(submitted),
        staged_ms: offered.map_or(0, |o| acked.unwrap_or(now).saturating_sub(o)),
        running_ms: acked.map_or(0, |a| now.saturating_sub(a)),
        replicas_running: t.running,
        results: t.results,
        attempts: t.attempts,
    }
}

/// `ListPendingTasks` of a job the caller may read.
pub(super) async fn list(
    engine: &EngineHandle,
    job: JobId,
    req: &pb::ListPendingTasksRequest,
) -> Result<pb::ListPendingTasksResponse, Status> {
    let call = ListCall::PendingTasks;
    let size = call.page_size(req.page_size);
    let request = fingerprint(&[req.job_id.as_bytes()]);
    let from = match position(call, request, &req.page_token)? {
        None => 0,
        Some(b) => match <[u8; 4]>::try_from(b.as_slice()) {
            Ok(b) => u32::from_be_bytes(b),
            Err(_) => return Err(bad_field("page_token", "not a page token this service handed out")),
        },
    };
    let (rows, stored) = engine
        .query(move |c, store| (c.pending_of_job(job, from, size + 1), store.job(job).ok().flatten().is_some()))
        .await
        .map_err(gone)?;
    // A job the engine no longer holds (finished and forgotten) has none
    // pending; one nobody stored does not exist.
    let mut rows = match rows {
        Some(rows) => rows,
        None if stored => Vec::new(),
        None => return Err(Status::not_found(format!("no job {job}"))),
    };
    let next_page_token = if rows.len() > size {
        rows.truncate(size);
        let next = rows[size - 1].index + 1;
        next_token(call, request, &next.to_be_bytes())
    } else {
        String::new()
    };
    let now = crate::engine::wall_now().0;
    Ok(pb::ListPendingTasksResponse { tasks: rows.iter().map(|t| to_pb(t, now)).collect(), next_page_token })
}
