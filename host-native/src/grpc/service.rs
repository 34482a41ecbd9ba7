//! The `shoal.v1.Shoal` service: every call, answered from the engine
//! (durable before acknowledged) or from storage.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use shoal_core::coordinator::{Coordinator, Event};
use shoal_core::JobId;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status, Streaming};

use crate::access::{Access, Op, Scope};
use crate::engine::{EngineGone, EngineHandle};
use crate::settlement::SharedConsensus;
use crate::status::SwarmStatus;
use crate::store::JobInfo;

use super::auth::{allowed, caller, refused};
use super::convert::{diff_to_pb, epoch_to_pb, event_to_pb, kernel_to_pb, outcome_to_pb, parse_job, workers_pb};
use super::intake::JobIntake;
use super::limits::SubmitLimits;
use super::pb;
use super::pb::shoal_server::Shoal;

/// Diffs read from storage per catch-up step.
pub(super) const CATCH_UP_STEP: usize = 256;

/// The service.
#[derive(Clone)]
pub struct ShoalService {
    engine: EngineHandle,
    consensus: SharedConsensus,
    /// `coordinator.max_job_input_bytes`: checked as the tasks stream in,
    /// so an oversized job is refused before it is all in memory.
    max_job_input_bytes: u64,
    /// What jobs being received may hold, in all and per client.
    limits: SubmitLimits,
    /// Tokens and what each caller may do.
    access: Arc<Access>,
    /// The store (weak: the engine owns it, and a stopped engine frees the
    /// file) and the data folder, for backups (read beside the engine).
    data: (std::sync::Weak<dyn crate::store::Store>, std::path::PathBuf),
}

impl ShoalService {
    /// A service over this engine and its settlement consensus.
    pub fn new(
        engine: EngineHandle,
        consensus: SharedConsensus,
        max_job_input_bytes: u64,
        limits: SubmitLimits,
        access: Arc<Access>,
        data: (std::sync::Weak<dyn crate::store::Store>, std::path::PathBuf),
    ) -> Self {
        ShoalService { engine, consensus, max_job_input_bytes, limits, access, data }
    }
}

impl ShoalService {
    /// The job a call names, once the caller may make a call of kind `op`
    /// on it (a submit token: only on a job it submitted).
    async fn job_in_reach(&self, request: &Request<pb::JobRef>, op: Op) -> Result<JobId, Status> {
        let scope = allowed(request, op)?;
        let job = parse_job(&request.get_ref().job_id)?;
        if scope != Scope::All {
            let stored = move |_: &Coordinator, store: &dyn crate::store::Store| {
                in_scope(&scope, job, store.job(job).ok().flatten().as_ref())
            };
            self.engine.query(stored).await.map_err(gone)??;
        }
        Ok(job)
    }
}

pub(super) fn gone(_: EngineGone) -> Status {
    Status::unavailable("the coordinator is not running")
}

/// A job's status from the coordinator's memory while it runs, else from
/// its stored record.
pub(super) fn status_of(c: &Coordinator, job: JobId, stored: Option<JobInfo>) -> Option<pb::JobStatus> {
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
    Some(pb::JobStatus {
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
fn in_scope(scope: &Scope, job: JobId, stored: Option<&JobInfo>) -> Result<(), Status> {
    match (scope, stored) {
        (Scope::All, _) => Ok(()),
        (Scope::Owned(_), Some(info)) if scope.reaches(&info.owner) => Ok(()),
        (Scope::Owned(_), Some(_)) => {
            Err(Status::permission_denied(format!("job {job} was submitted by another client")))
        }
        (Scope::Owned(_), None) => Err(Status::not_found(format!("no job {job}"))),
    }
}

/// A job's status from the coordinator's memory, or from storage once
/// forgotten; refused outside `scope`.
pub(super) async fn job_status(
    engine: &EngineHandle,
    job: JobId,
    scope: Scope,
) -> Result<Option<pb::JobStatus>, Status> {
    engine
        .query(move |c, store| {
            let stored = store.job(job).ok().flatten();
            in_scope(&scope, job, stored.as_ref())?;
            Ok(status_of(c, job, stored))
        })
        .await
        .map_err(gone)?
}

pub(super) type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Shoal for ShoalService {
    async fn submit_job(
        &self,
        request: Request<Streaming<pb::SubmitJobRequest>>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let who = caller(&request);
        who.scope(Op::Submit).map_err(refused)?;
        let mut receiving = self.limits.open(request.remote_addr().map(|a| a.ip()))?;
        let mut stream = request.into_inner();
        let mut intake = JobIntake::start(stream.message().await?, self.max_job_input_bytes)?;
        while let Some(m) = stream.message().await? {
            let before = intake.input_bytes();
            intake.push(m)?;
            receiving.hold(intake.input_bytes() - before)?;
        }
        let n = intake.tasks() as u32;
        let (job, name) = intake.finish();
        match self.engine.submit(job, name, who.owner()).await.map_err(gone)? {
            Ok(job) => {
                let waiting = self.engine.query(move |c, _| c.job_waiting(job)).await.map_err(gone)?;
                if let Some(why) = &waiting {
                    tracing::warn!(%job, %why, "job accepted, but waits");
                }
                let (job_id, waiting) = (job.to_string(), waiting.unwrap_or_default());
                Ok(Response::new(pb::SubmitJobResponse { job_id, tasks: n, waiting }))
            }
            Err(
                e @ (shoal_core::coordinator::SubmitError::QueueFull { .. }
                | shoal_core::coordinator::SubmitError::JobTooLarge { .. }
                | shoal_core::coordinator::SubmitError::InputBudget { .. }),
            ) => Err(Status::resource_exhausted(e.to_string())),
            Err(e) => Err(Status::invalid_argument(e.to_string())),
        }
    }

    async fn get_job(&self, request: Request<pb::JobRef>) -> Result<Response<pb::JobStatus>, Status> {
        let scope = allowed(&request, Op::ReadJobs)?;
        let job = parse_job(&request.get_ref().job_id)?;
        job_status(&self.engine, job, scope)
            .await?
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no job {job}")))
    }

    async fn list_jobs(&self, request: Request<pb::Empty>) -> Result<Response<pb::JobList>, Status> {
        let owner = match allowed(&request, Op::ReadJobs)? {
            Scope::All => None,
            Scope::Owned(me) => Some(me),
        };
        let jobs = self
            .engine
            .query(move |c, store| {
                let stored = store.jobs(100, owner.as_deref()).map_err(|e| Status::internal(e.to_string()))?;
                Ok::<_, Status>(stored.into_iter().filter_map(|(job, info)| status_of(c, job, Some(info))).collect())
            })
            .await
            .map_err(gone)??;
        Ok(Response::new(pb::JobList { jobs }))
    }

    async fn job_kernels(&self, request: Request<pb::JobRef>) -> Result<Response<pb::KernelList>, Status> {
        let scope = allowed(&request, Op::ReadJobs)?;
        let job = parse_job(&request.get_ref().job_id)?;
        let kernels = self
            .engine
            .query(move |_, store| {
                in_scope(&scope, job, store.job(job).ok().flatten().as_ref())?;
                store.job_kernels(job).map_err(|e| Status::internal(e.to_string()))
            })
            .await
            .map_err(gone)??
            .ok_or_else(|| Status::not_found(format!("no job {job}")))?;
        Ok(Response::new(pb::KernelList { kernels: kernels.iter().map(kernel_to_pb).collect() }))
    }

    async fn cancel_job(&self, request: Request<pb::JobRef>) -> Result<Response<pb::CancelJobResponse>, Status> {
        let job = self.job_in_reach(&request, Op::CancelJob).await?;
        let cancelled = self.engine.cancel(job).await.map_err(gone)?;
        Ok(Response::new(pb::CancelJobResponse { cancelled }))
    }

    async fn delete_job(&self, request: Request<pb::JobRef>) -> Result<Response<pb::DeleteJobResponse>, Status> {
        let job = self.job_in_reach(&request, Op::DeleteJob).await?;
        match self.engine.delete(job).await.map_err(gone)? {
            Ok(deleted) => Ok(Response::new(pb::DeleteJobResponse { deleted })),
            Err(e) => Err(Status::failed_precondition(format!("job {job}: {e}"))),
        }
    }

    type StreamJobResultsStream = BoxStream<pb::TaskOutcome>;

    async fn stream_job_results(
        &self,
        request: Request<pb::StreamJobResultsRequest>,
    ) -> Result<Response<Self::StreamJobResultsStream>, Status> {
        let scope = allowed(&request, Op::ReadJobs)?;
        let req = request.into_inner();
        let job = parse_job(&req.job_id)?;
        let engine = self.engine.clone();
        let Some(first) = job_status(&engine, job, scope).await? else {
            return Err(Status::not_found(format!("no job {job}")));
        };
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut events = engine.events();
            let mut sent = std::collections::BTreeSet::new();
            let mut status = first;
            loop {
                // Ended tasks come from storage (durable), in index order.
                let omit = req.omit_outputs;
                let mut from = 0u32;
                loop {
                    let batch = engine.query(move |_, store| store.outcomes(job, from, 256)).await;
                    let batch = match batch {
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
                    for (index, ended) in batch {
                        if sent.insert(index) && tx.send(Ok(outcome_to_pb(index, ended, omit))).await.is_err() {
                            return;
                        }
                    }
                    from = last + 1;
                }
                if status.finished {
                    // Cancelled tasks have no record: they are the indices left.
                    if status.cancelled > 0 {
                        for index in 0..status.tasks {
                            if !sent.contains(&index) {
                                let c = pb::TaskOutcome {
                                    index,
                                    kind: pb::task_outcome::Kind::Cancelled.into(),
                                    reason: "job cancelled".into(),
                                    ..Default::default()
                                };
                                if tx.send(Ok(c)).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    return;
                }
                if !req.follow {
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
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn consensus(&self, request: Request<pb::Empty>) -> Result<Response<pb::ConsensusStatus>, Status> {
        use shoal_core::consensus::{transitions, State};
        allowed(&request, Op::Swarm)?;
        let view = self.consensus.lock().map_err(|_| Status::internal("consensus view poisoned"))?.clone();
        let step = |from: State, event: shoal_core::consensus::Event, to: State, at: u64| pb::ConsensusTransition {
            from: from.as_str().into(),
            event: event.as_str().into(),
            to: to.as_str().into(),
            at_ms: at,
        };
        Ok(Response::new(pb::ConsensusStatus {
            state: view.state.as_str().into(),
            state_entered_ms: view.state_entered.0,
            transitions: view.transitions,
            waiting: view.waiting as u32,
            agreed: view
                .agreed
                .iter()
                .map(|a| pb::AgreedSettlement { round: a.round, epoch: a.epoch, digest: a.digest.clone() })
                .collect(),
            states: State::ALL.iter().map(|s| s.as_str().to_owned()).collect(),
            table: transitions().into_iter().map(|t| step(t.from, t.event, t.to, 0)).collect(),
            recent: view.recent.iter().map(|s| step(s.from, s.event, s.to, s.at.0)).collect(),
        }))
    }

    async fn list_workers(&self, request: Request<pb::Empty>) -> Result<Response<pb::WorkerList>, Status> {
        allowed(&request, Op::Swarm)?;
        let workers = self.engine.query(|c, _| workers_pb(c)).await.map_err(gone)?;
        Ok(Response::new(pb::WorkerList { workers }))
    }

    async fn swarm_status(&self, request: Request<pb::Empty>) -> Result<Response<pb::Status>, Status> {
        allowed(&request, Op::Swarm)?;
        let (s, height, digest, epoch) = self
            .engine
            .query(|c, store| {
                let (_, h) = store.diff_heights().unwrap_or((0, 0));
                let digest = store.diffs(h, h, 1).ok().and_then(|mut d| d.pop()).map(|d| d.digest.to_hex());
                (SwarmStatus::of(c), h, digest.unwrap_or_default(), c.epochs().len() as u64)
            })
            .await
            .map_err(gone)?;
        Ok(Response::new(pb::Status {
            workers: s.workers,
            workers_admitted: s.workers_admitted,
            tasks_pending: s.tasks_pending,
            tasks_verified: s.tasks_verified,
            tasks_dead_lettered: s.tasks_dead_lettered,
            mismatched_tasks: s.mismatched_tasks,
            offers: s.offers,
            results: s.results,
            timeouts: s.timeouts,
            slashed: s.slashed,
            stale_results: s.stale_results,
            ledger_height: height,
            ledger_digest: digest,
            epoch,
            jobs_open: s.jobs_open,
            uptime_ms: self.engine.gauges.started.elapsed().as_millis() as u64,
            tiers: s
                .classes
                .iter()
                .map(|c| pb::TierCount { backend: c.backend.clone(), tier: u32::from(c.tier), workers: c.workers })
                .collect(),
        }))
    }

    async fn leaderboard(&self, request: Request<pb::Empty>) -> Result<Response<pb::WorkerList>, Status> {
        allowed(&request, Op::Swarm)?;
        let mut workers = self.engine.query(|c, _| workers_pb(c)).await.map_err(gone)?;
        workers.sort_by(|a, b| b.agreed.cmp(&a.agreed).then_with(|| a.id.cmp(&b.id)));
        Ok(Response::new(pb::WorkerList { workers }))
    }

    async fn epochs(&self, request: Request<pb::Empty>) -> Result<Response<pb::EpochList>, Status> {
        allowed(&request, Op::Swarm)?;
        let epochs = self.engine.query(|c, _| c.epochs().iter().map(epoch_to_pb).collect()).await.map_err(gone)?;
        Ok(Response::new(pb::EpochList { epochs }))
    }

    async fn close_epoch(&self, request: Request<pb::Empty>) -> Result<Response<pb::EpochList>, Status> {
        allowed(&request, Op::CloseEpoch)?;
        self.engine.close_epoch().await.map_err(gone)?;
        let epochs = self.engine.query(|c, _| c.epochs().iter().map(epoch_to_pb).collect()).await.map_err(gone)?;
        Ok(Response::new(pb::EpochList { epochs }))
    }

    async fn shadow_stats(&self, request: Request<pb::Empty>) -> Result<Response<pb::Shadow>, Status> {
        allowed(&request, Op::Swarm)?;
        let s = self.engine.query(|c, _| c.shadow().clone()).await.map_err(gone)?;
        Ok(Response::new(pb::Shadow {
            compared: s.compared,
            matched: s.matched,
            mismatched: s.mismatched,
            false_positives: s.false_positives,
            false_negatives: s.false_negatives,
        }))
    }

    type StreamEventsStream = BoxStream<pb::SwarmEvent>;

    async fn stream_events(&self, request: Request<pb::Empty>) -> Result<Response<Self::StreamEventsStream>, Status> {
        allowed(&request, Op::Swarm)?;
        let mut events = self.engine.events();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let item = match events.recv().await {
                    Ok(e) => Ok(event_to_pb(&e)),
                    Err(RecvError::Lagged(n)) => Ok(pb::SwarmEvent {
                        kind: pb::swarm_event::Kind::Lagged.into(),
                        detail: format!("{n} events dropped for this slow subscriber"),
                        ..Default::default()
                    }),
                    Err(RecvError::Closed) => return,
                };
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    type StreamStateDiffsStream = BoxStream<pb::StateDiff>;

    async fn stream_state_diffs(
        &self,
        request: Request<pb::StreamStateDiffsRequest>,
    ) -> Result<Response<Self::StreamStateDiffsStream>, Status> {
        allowed(&request, Op::StateDiffs)?;
        let from = request.get_ref().from_height.max(1);
        // Subscribe first, so nothing published during the catch-up is lost.
        let mut live = self.engine.diffs();
        let engine = self.engine.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut next = from;
            loop {
                let batch = match engine.query(move |_, store| store.diffs(next, u64::MAX, CATCH_UP_STEP)).await {
                    Ok(Ok(batch)) => batch,
                    Ok(Err(e @ crate::store::StoreError::Gone(_))) => {
                        let _ = tx.send(Err(Status::data_loss(e.to_string()))).await;
                        return;
                    }
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(gone(e))).await;
                        return;
                    }
                };
                if batch.is_empty() {
                    break;
                }
                for d in &batch {
                    next = d.height + 1;
                    if tx.send(Ok(diff_to_pb(d))).await.is_err() {
                        return;
                    }
                }
            }
            loop {
                match live.recv().await {
                    Ok(d) if d.height >= next => {
                        next = d.height + 1;
                        if tx.send(Ok(diff_to_pb(&d))).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => {
                        metrics::counter!("shoal_diff_subscriber_drops_total").increment(n);
                        let _ = tx
                            .send(Err(Status::data_loss(format!(
                                "{n} diffs dropped for this slow subscriber; resubscribe from height {next}"
                            ))))
                            .await;
                        return;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn who_am_i(&self, request: Request<pb::Empty>) -> Result<Response<pb::Identity>, Status> {
        Ok(Response::new(super::tokens::identity(&caller(&request), &self.access)))
    }

    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreatedToken>, Status> {
        allowed(&request, Op::Tokens)?;
        super::tokens::create(self.access.clone(), request.into_inner()).await.map(Response::new)
    }

    async fn list_tokens(&self, request: Request<pb::Empty>) -> Result<Response<pb::TokenList>, Status> {
        allowed(&request, Op::Tokens)?;
        Ok(Response::new(super::tokens::list(&self.access)))
    }

    async fn revoke_token(&self, request: Request<pb::RevokeTokenRequest>) -> Result<Response<pb::TokenInfo>, Status> {
        allowed(&request, Op::Tokens)?;
        super::tokens::revoke(self.access.clone(), request.into_inner()).await.map(Response::new)
    }

    type BackupStream = BoxStream<pb::BackupChunk>;

    async fn backup(&self, request: Request<pb::Empty>) -> Result<Response<Self::BackupStream>, Status> {
        allowed(&request, Op::Backup)?;
        let (store, data) = self.data.clone();
        let store = store.upgrade().ok_or_else(|| Status::unavailable("the coordinator is not running"))?;
        let started = std::time::Instant::now();
        let (path, stats) = tokio::task::spawn_blocking(move || crate::backup::archive(store.as_ref(), &data))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("backup failed: {e}")))?;
        tracing::info!(
            records = stats.records,
            blobs = stats.blobs,
            blob_bytes = stats.blob_bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "backup made"
        );
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let sent = async {
                let mut file = tokio::fs::File::open(&path).await?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = file.read(&mut buf).await?;
                    if n == 0 {
                        return Ok::<_, std::io::Error>(());
                    }
                    let chunk = pb::BackupChunk { data: bytes::Bytes::copy_from_slice(&buf[..n]) };
                    if tx.send(Ok(chunk)).await.is_err() {
                        return Ok(());
                    }
                }
            };
            if let Err(e) = sent.await {
                let _ = tx.send(Err(Status::internal(format!("reading the backup: {e}")))).await;
            }
            let _ = tokio::fs::remove_file(&path).await;
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}
