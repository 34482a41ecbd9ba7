//! The job calls: submit (idempotent by `request_id`), read, list, cancel,
//! delete and the results stream, each checked against the caller's scope.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_core::coordinator::recovery::TaskTimes;
use shoal_core::coordinator::{Coordinator, Event, SubmitError};
use shoal_core::{JobId, Millis};
use tokio::sync::broadcast::error::RecvError;
use tonic::{Code, Status};

use crate::access::Scope;
use crate::engine::EngineHandle;
use crate::store::JobInfo;

use super::convert::{kernel_to_pb, outcome_to_pb, with_times};
use super::errors::{job_not_found, with_reason};
use super::intake::JobIntake;
use super::paging::{self, ListCall};
use super::pb;
use super::service::{gone, BoxStream};

/// A job's status from the coordinator's memory while it runs, else from
/// its stored record.
pub(super) fn status_of(c: &Coordinator, job: JobId, stored: Option<JobInfo>) -> Option<pb::Job> {
    let name = stored.as_ref().map(|s| s.name.clone()).unwrap_or_default();
    let submitted_ms = stored.as_ref().map_or(0, |s| s.submitted.0);
    let (p, finished) = match c.job_progress(job) {
        Some(p) => (p.clone(), p.finished()),
        None => {
            let s = stored?;
            let finished = s.finished.is_some();
            let p = s.finished.unwrap_or(shoal_core::coordinator::JobProgress {
                tasks: s.tasks,
                verified: 0,
                dead_lettered: 0,
                cancelled: 0,
            });
            (p, finished)
        }
    };
    Some(pb::Job {
        job_id: job.to_string(),
        name,
        tasks: p.tasks,
        verified: p.verified,
        dead_lettered: p.dead_lettered,
        cancelled: p.cancelled,
        finished,
        submitted_ms,
        waiting: c.job_waiting(job).unwrap_or_default(),
    })
}

/// Refuses a job outside the caller's scope (one another token submitted).
pub(super) fn in_scope(scope: &Scope, job: JobId, stored: Option<&JobInfo>) -> Result<(), Status> {
    match (scope, stored) {
        (Scope::All, _) => Ok(()),
        (Scope::Owned(_), Some(info)) if scope.reaches(&info.owner) => Ok(()),
        (Scope::Owned(_), Some(_)) => {
            Err(Status::permission_denied(format!("job {job} was submitted by another client")))
        }
        (Scope::Owned(_), None) => Err(job_not_found(job)),
    }
}

/// A job's status from the coordinator's memory, or from storage once
/// forgotten; refused outside `scope`.
pub(super) async fn job_status(engine: &EngineHandle, job: JobId, scope: Scope) -> Result<Option<pb::Job>, Status> {
    engine
        .query(move |c, store| {
            let stored = store.job(job).ok().flatten();
            in_scope(&scope, job, stored.as_ref())?;
            Ok(status_of(c, job, stored))
        })
        .await
        .map_err(gone)?
}

/// Submissions with a `request_id` in progress, so that two copies of one
/// request that arrive together make one job: the second waits for the
/// first and then finds its job.
#[derive(Default)]
pub(super) struct RequestLocks {
    held: Mutex<HashMap<RequestKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// A submission's owner and request id.
type RequestKey = (String, String);

impl RequestLocks {
    /// Runs `f` alone among submissions of the same owner and request id.
    async fn exclusive<T>(&self, key: RequestKey, f: impl std::future::Future<Output = T>) -> T {
        let lock = {
            let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            held.entry(key.clone()).or_default().clone()
        };
        let answer = {
            let _turn = lock.lock().await;
            f.await
        };
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Ours and the map's: nobody else waits for this key.
        if Arc::strong_count(&lock) == 2 {
            held.remove(&key);
        }
        answer
    }
}

/// Submits a received job: once, if it carries a request id.
pub(super) async fn submit(
    engine: &EngineHandle,
    locks: &RequestLocks,
    intake: JobIntake,
    owner: String,
) -> Result<pb::SubmitJobResponse, Status> {
    let tasks = intake.tasks() as u32;
    let (job, name, request_id) = intake.finish();
    if request_id.is_empty() {
        return submit_new(engine, job, name, owner, request_id, tasks).await;
    }
    let key = (owner.clone(), request_id.clone());
    locks
        .exclusive(key, async move {
            let (o, r) = (owner.clone(), request_id.clone());
            let earlier = engine
                .query(move |c, store| {
                    let job = store.request_job(&o, &r)?;
                    Ok::<_, crate::store::StoreError>(
                        job.and_then(|j| Some((j, store.job(j).ok()??, c.job_waiting(j)))),
                    )
                })
                .await
                .map_err(gone)?
                .map_err(|e| Status::internal(e.to_string()))?;
            match earlier {
                Some((job, info, waiting)) => Ok(pb::SubmitJobResponse {
                    job_id: job.to_string(),
                    tasks: info.tasks,
                    waiting: waiting.unwrap_or_default(),
                    replayed: true,
                }),
                None => submit_new(engine, job, name, owner, request_id, tasks).await,
            }
        })
        .await
}

async fn submit_new(
    engine: &EngineHandle,
    job: shoal_core::coordinator::PreparedJob,
    name: String,
    owner: String,
    request_id: String,
    tasks: u32,
) -> Result<pb::SubmitJobResponse, Status> {
    match engine.submit_request(job, name, owner, request_id).await.map_err(gone)? {
        Ok(job) => {
            let waiting = engine.query(move |c, _| c.job_waiting(job)).await.map_err(gone)?;
            if let Some(why) = &waiting {
                tracing::warn!(%job, %why, "job accepted, but waits");
            }
            let (job_id, waiting) = (job.to_string(), waiting.unwrap_or_default());
            Ok(pb::SubmitJobResponse { job_id, tasks, waiting, replayed: false })
        }
        Err(e @ SubmitError::QueueFull { .. }) => {
            Err(with_reason(Code::ResourceExhausted, "QUEUE_FULL", e.to_string()))
        }
        Err(e @ SubmitError::JobTooLarge { .. }) => {
            Err(with_reason(Code::ResourceExhausted, "JOB_TOO_LARGE", e.to_string()))
        }
        Err(e @ SubmitError::InputBudget { .. }) => {
            Err(with_reason(Code::ResourceExhausted, "INPUT_BUDGET", e.to_string()))
        }
        Err(e) => Err(super::errors::bad_field("header", e.to_string())),
    }
}

/// `ListJobs`: newest first, in pages; a submit token sees its own.
pub(super) async fn list(
    engine: &EngineHandle,
    scope: Scope,
    req: pb::ListJobsRequest,
) -> Result<pb::ListJobsResponse, Status> {
    let owner = match scope {
        Scope::All => None,
        Scope::Owned(me) => Some(me),
    };
    let after = match paging::position(ListCall::Jobs, 0, &req.page_token)? {
        None => None,
        Some(b) if b.len() == 24 => {
            let at = u64::from_be_bytes(b[..8].try_into().unwrap_or_default());
            let job = JobId::from_bytes(b[8..].try_into().unwrap_or_default());
            Some((Millis(at), job))
        }
        Some(_) => return Err(super::errors::bad_field("page_token", "not a page token this service handed out")),
    };
    let size = ListCall::Jobs.page_size(req.page_size);
    let (jobs, more) = engine
        .query(move |c, store| {
            // One more than the page tells whether another page follows.
            let stored = store.jobs(size + 1, owner.as_deref(), after).map_err(|e| Status::internal(e.to_string()))?;
            let more = stored.len() > size;
            let page: Vec<_> = stored.into_iter().take(size).collect();
            let last = page.last().map(|(job, info)| (info.submitted, *job));
            let jobs = page.into_iter().filter_map(|(job, info)| status_of(c, job, Some(info))).collect::<Vec<_>>();
            Ok::<_, Status>((jobs, more.then_some(last).flatten()))
        })
        .await
        .map_err(gone)??;
    let next_page_token = more.map_or_else(String::new, |(at, job)| {
        let mut b = at.0.to_be_bytes().to_vec();
        b.extend_from_slice(job.as_bytes());
        paging::next_token(ListCall::Jobs, 0, &b)
    });
    Ok(pb::ListJobsResponse { jobs, next_page_token })
}

/// `ListJobKernels`: a job's kernels from a task index, in pages.
pub(super) async fn kernels(
    engine: &EngineHandle,
    scope: Scope,
    job: JobId,
    req: &pb::ListJobKernelsRequest,
) -> Result<pb::ListJobKernelsResponse, Status> {
    let request = paging::fingerprint(&[job.as_bytes()]);
    let start = paging::offset(paging::position(ListCall::JobKernels, request, &req.page_token)?.as_deref())?;
    let size = ListCall::JobKernels.page_size(req.page_size);
    let kernels = engine
        .query(move |_, store| {
            in_scope(&scope, job, store.job(job).ok().flatten().as_ref())?;
            store.job_kernels(job).map_err(|e| Status::internal(e.to_string()))
        })
        .await
        .map_err(gone)??
        .ok_or_else(|| job_not_found(job))?;
    let (page, next_page_token) = paging::page_of(ListCall::JobKernels, request, kernels, start, size);
    Ok(pb::ListJobKernelsResponse {
        kernels: page.iter().map(kernel_to_pb).collect(),
        first_index: start as u32,
        next_page_token,
    })
}

/// `StreamJobResults`: ended tasks from storage in index order, then (with
/// `follow`) the rest as they end.
pub(super) fn results(
    engine: EngineHandle,
    job: JobId,
    first: pb::Job,
    req: &pb::StreamJobResultsRequest,
) -> BoxStream<pb::StreamJobResultsResponse> {
    let (follow, omit) = (req.follow, req.omit_outputs);
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let send = |o: pb::TaskOutcome| tx.send(Ok(pb::StreamJobResultsResponse { outcome: Some(o) }));
        let mut events = engine.events();
        let mut sent = std::collections::BTreeSet::new();
        let mut status = first;
        loop {
            // Ended tasks come from storage (durable), in index order.
            let mut from = 0u32;
            loop {
                let read = move |_: &Coordinator, store: &dyn crate::store::Store| {
                    let batch = store.outcomes(job, from, 256)?;
                    let to = batch.last().map_or(from, |(i, _)| *i);
                    let times = if batch.is_empty() { Vec::new() } else { store.task_times(job, from, to)? };
                    Ok::<_, crate::store::StoreError>((batch, times))
                };
                let (batch, times) = match engine.query(read).await {
                    Ok(Ok(b)) => b,
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(gone(e))).await;
                        return;
                    }
                };
                let Some(last) = batch.last().map(|(i, _)| *i) else { break };
                let times: std::collections::BTreeMap<u32, TaskTimes> = times.into_iter().collect();
                for (index, ended) in batch {
                    let mut outcome = outcome_to_pb(index, ended, omit);
                    if let Some(t) = times.get(&index) {
                        outcome = with_times(outcome, t);
                    }
                    if sent.insert(index) && send(outcome).await.is_err() {
                        return;
                    }
                }
                from = last + 1;
            }
            if status.finished {
                // Cancelled tasks have no record: they are the indices left.
                for index in (0..status.tasks).filter(|i| status.cancelled > 0 && !sent.contains(i)) {
                    let c = pb::TaskOutcome {
                        index,
                        state: pb::TaskState::Cancelled.into(),
                        reason: "job cancelled".into(),
                        ..Default::default()
                    };
                    if send(c).await.is_err() {
                        return;
                    }
                }
                return;
            }
            if !follow {
                return;
            }
            // Wait for news of this job (or a second, whichever first).
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                loop {
                    match events.recv().await {
                        Ok(e) => match &e.event {
                            Event::TaskVerified { job: j, .. }
                            | Event::TaskDeadLettered { job: j, .. }
                            | Event::JobFinished { job: j, .. }
                                if *j == job =>
                            {
                                return
                            }
                            _ => {}
                        },
                        Err(RecvError::Lagged(_) | RecvError::Closed) => return,
                    }
                }
            })
            .await;
            match job_status(&engine, job, Scope::All).await {
                Ok(Some(s)) => status = s,
                _ => return,
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
