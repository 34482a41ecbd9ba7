//! The `shoal.v1.ShoalService` service: every call, answered from the
//! engine (durable before acknowledged) or from storage. The calls live in
//! `jobs`, `swarm` and `tokens`; this is the table that routes them and
//! checks each caller's access first.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use shoal_core::coordinator::Coordinator;
use shoal_core::JobId;
use tonic::{Request, Response, Status, Streaming};

use crate::access::{Access, Op, Scope};
use crate::engine::{EngineGone, EngineHandle};
use crate::settlement::SharedConsensus;

use super::auth::{allowed, caller, end_on_revocation, refused};
use super::convert::parse_job;
use super::errors::{job_not_found, with_reason};
use super::intake::JobIntake;
use super::jobs::{self, in_scope, job_status, RequestLocks};
use super::limits::SubmitLimits;
use super::pb;
use super::swarm;

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
    /// Submissions with a request id in progress (one job per request).
    requests: Arc<RequestLocks>,
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
        let requests = Arc::default();
        ShoalService { engine, consensus, max_job_input_bytes, limits, access, requests, data }
    }

    /// The job a call names, once the caller may make a call of kind `op`
    /// on it (a submit token: only on a job it submitted).
    async fn job_in_reach<T>(&self, request: &Request<T>, job_id: &str, op: Op) -> Result<JobId, Status> {
        let scope = allowed(request, op)?;
        let job = parse_job(job_id)?;
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

pub(super) type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl pb::shoal_service_server::ShoalService for ShoalService {
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
        jobs::submit(&self.engine, &self.requests, intake, who.owner()).await.map(Response::new)
    }

    async fn get_job(&self, request: Request<pb::GetJobRequest>) -> Result<Response<pb::GetJobResponse>, Status> {
        let scope = allowed(&request, Op::ReadJobs)?;
        let job = parse_job(&request.get_ref().job_id)?;
        let found = job_status(&self.engine, job, scope).await?.ok_or_else(|| job_not_found(job))?;
        Ok(Response::new(pb::GetJobResponse { job: Some(found) }))
    }

    async fn list_jobs(&self, request: Request<pb::ListJobsRequest>) -> Result<Response<pb::ListJobsResponse>, Status> {
        let scope = allowed(&request, Op::ReadJobs)?;
        jobs::list(&self.engine, scope, request.into_inner()).await.map(Response::new)
    }

    async fn list_job_kernels(
        &self,
        request: Request<pb::ListJobKernelsRequest>,
    ) -> Result<Response<pb::ListJobKernelsResponse>, Status> {
        let scope = allowed(&request, Op::ReadJobs)?;
        let job = parse_job(&request.get_ref().job_id)?;
        jobs::kernels(&self.engine, scope, job, request.get_ref()).await.map(Response::new)
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::CancelJobResponse>, Status> {
        let job = self.job_in_reach(&request, &request.get_ref().job_id, Op::CancelJob).await?;
        let cancelled = self.engine.cancel(job).await.map_err(gone)?;
        Ok(Response::new(pb::CancelJobResponse { cancelled }))
    }

    async fn delete_job(
        &self,
        request: Request<pb::DeleteJobRequest>,
    ) -> Result<Response<pb::DeleteJobResponse>, Status> {
        let job = self.job_in_reach(&request, &request.get_ref().job_id, Op::DeleteJob).await?;
        match self.engine.delete(job).await.map_err(gone)? {
            Ok(deleted) => Ok(Response::new(pb::DeleteJobResponse { deleted })),
            Err(e) => Err(with_reason(tonic::Code::FailedPrecondition, "JOB_NOT_FINISHED", format!("job {job}: {e}"))),
        }
    }

    type StreamJobResultsStream = BoxStream<pb::StreamJobResultsResponse>;

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        let req = request.get_ref();
        let (scope, job) = if req.job_id.is_empty() {
            (allowed(&request, Op::ReadJobs)?, None)
        } else {
            (Scope::All, Some(self.job_in_reach(&request, &req.job_id, Op::ReadJobs).await?))
        };
        super::dead_letters::list(&self.engine, scope, job, req).await.map(Response::new)
    }

    async fn list_pending_tasks(
        &self,
        request: Request<pb::ListPendingTasksRequest>,
    ) -> Result<Response<pb::ListPendingTasksResponse>, Status> {
        let job = self.job_in_reach(&request, &request.get_ref().job_id, Op::ReadJobs).await?;
        super::pending::list(&self.engine, job, request.get_ref()).await.map(Response::new)
    }

    async fn requeue_dead_letters(
        &self,
        request: Request<pb::RequeueDeadLettersRequest>,
    ) -> Result<Response<pb::RequeueDeadLettersResponse>, Status> {
        // Submitting the new job, and reaching the old one as cancelling it would.
        allowed(&request, Op::Submit)?;
        let job = self.job_in_reach(&request, &request.get_ref().job_id, Op::CancelJob).await?;
        let owner = caller(&request).owner();
        super::dead_letters::requeue(&self.engine, job, &request.get_ref().indices, owner).await.map(Response::new)
    }

    async fn stream_job_results(
        &self,
        request: Request<pb::StreamJobResultsRequest>,
    ) -> Result<Response<Self::StreamJobResultsStream>, Status> {
        let scope = allowed(&request, Op::ReadJobs)?;
        let who = caller(&request);
        let req = request.into_inner();
        let job = parse_job(&req.job_id)?;
        let first = job_status(&self.engine, job, scope).await?.ok_or_else(|| job_not_found(job))?;
        let results = jobs::results(self.engine.clone(), job, first, &req);
        Ok(Response::new(end_on_revocation(results, &who, &self.access)))
    }

    async fn get_consensus(
        &self,
        request: Request<pb::GetConsensusRequest>,
    ) -> Result<Response<pb::GetConsensusResponse>, Status> {
        use shoal_core::consensus::{transitions, State};
        allowed(&request, Op::Swarm)?;
        let view = self.consensus.lock().map_err(|_| Status::internal("consensus view poisoned"))?.clone();
        let step = |from: State, event: shoal_core::consensus::Event, to: State, at: u64| pb::ConsensusTransition {
            from: from.as_str().into(),
            event: event.as_str().into(),
            to: to.as_str().into(),
            at_ms: at,
        };
        Ok(Response::new(pb::GetConsensusResponse {
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
            rounds: view.rounds,
            time_per_state: view
                .time_per_state
                .iter()
                .map(|(state, t)| {
                    // The current stay goes on after the view was taken.
                    let since = if *state == view.state { crate::engine::wall_now().since(view.as_of).0 } else { 0 };
                    pb::StateTime { state: state.as_str().into(), entries: t.entries, total_ms: t.total.0 + since }
                })
                .collect(),
        }))
    }

    async fn list_workers(
        &self,
        request: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        allowed(&request, Op::Swarm)?;
        swarm::workers(&self.engine, request.get_ref()).await.map(Response::new)
    }

    async fn get_worker(
        &self,
        request: Request<pb::GetWorkerRequest>,
    ) -> Result<Response<pb::GetWorkerResponse>, Status> {
        allowed(&request, Op::Swarm)?;
        swarm::worker(&self.engine, request.get_ref()).await.map(Response::new)
    }

    async fn get_contributor(
        &self,
        request: Request<pb::GetContributorRequest>,
    ) -> Result<Response<pb::GetContributorResponse>, Status> {
        allowed(&request, Op::Swarm)?;
        swarm::contributor(&self.engine, request.get_ref()).await.map(Response::new)
    }

    async fn list_contributors(
        &self,
        request: Request<pb::ListContributorsRequest>,
    ) -> Result<Response<pb::ListContributorsResponse>, Status> {
        allowed(&request, Op::Swarm)?;
        swarm::contributors(&self.engine, request.get_ref()).await.map(Response::new)
    }

    async fn list_teams(
        &self,
        request: Request<pb::ListTeamsRequest>,
    ) -> Result<Response<pb::ListTeamsResponse>, Status> {
        allowed(&request, Op::Swarm)?;
        swarm::teams(&self.engine, request.get_ref()).await.map(Response::new)
    }

    async fn approve_contributor(
        &self,
        request: Request<pb::ApproveContributorRequest>,
    ) -> Result<Response<pb::ApproveContributorResponse>, Status> {
        allowed(&request, Op::Approve)?;
        swarm::approve(&self.engine, request.get_ref()).await.map(Response::new)
    }

    async fn set_stake(&self, request: Request<pb::SetStakeRequest>) -> Result<Response<pb::SetStakeResponse>, Status> {
        allowed(&request, Op::Approve)?;
        swarm::set_stake(&self.engine, request.get_ref()).await.map(Response::new)
    }

    async fn list_pending_contributors(
        &self,
        request: Request<pb::ListPendingContributorsRequest>,
    ) -> Result<Response<pb::ListPendingContributorsResponse>, Status> {
        allowed(&request, Op::Swarm)?;
        swarm::pending(&self.engine).await.map(Response::new)
    }

    async fn get_swarm_status(
        &self,
        request: Request<pb::GetSwarmStatusRequest>,
    ) -> Result<Response<pb::GetSwarmStatusResponse>, Status> {
        allowed(&request, Op::Swarm)?;
        swarm::status(&self.engine).await.map(Response::new)
    }

    async fn list_epochs(
        &self,
        request: Request<pb::ListEpochsRequest>,
    ) -> Result<Response<pb::ListEpochsResponse>, Status> {
        allowed(&request, Op::Swarm)?;
        swarm::epochs(&self.engine, request.get_ref(), (&self.consensus, &self.data.1)).await.map(Response::new)
    }

    async fn close_epoch(
        &self,
        request: Request<pb::CloseEpochRequest>,
    ) -> Result<Response<pb::CloseEpochResponse>, Status> {
        allowed(&request, Op::CloseEpoch)?;
        swarm::close_epoch(&self.engine).await.map(Response::new)
    }

    async fn get_shadow_stats(
        &self,
        request: Request<pb::GetShadowStatsRequest>,
    ) -> Result<Response<pb::GetShadowStatsResponse>, Status> {
        allowed(&request, Op::Swarm)?;
        let s = self.engine.query(|c, _| c.shadow().clone()).await.map_err(gone)?;
        Ok(Response::new(pb::GetShadowStatsResponse {
            compared: s.compared,
            matched: s.matched,
            mismatched: s.mismatched,
            false_positives: s.false_positives,
            false_negatives: s.false_negatives,
        }))
    }

    type StreamEventsStream = BoxStream<pb::StreamEventsResponse>;

    async fn stream_events(
        &self,
        request: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        allowed(&request, Op::Swarm)?;
        Ok(Response::new(end_on_revocation(swarm::events(&self.engine), &caller(&request), &self.access)))
    }

    type StreamStateDiffsStream = BoxStream<pb::StreamStateDiffsResponse>;

    async fn stream_state_diffs(
        &self,
        request: Request<pb::StreamStateDiffsRequest>,
    ) -> Result<Response<Self::StreamStateDiffsStream>, Status> {
        allowed(&request, Op::StateDiffs)?;
        let diffs = swarm::state_diffs(&self.engine, request.get_ref().from_height.max(1));
        Ok(Response::new(end_on_revocation(diffs, &caller(&request), &self.access)))
    }

    async fn who_am_i(&self, request: Request<pb::WhoAmIRequest>) -> Result<Response<pb::WhoAmIResponse>, Status> {
        Ok(Response::new(super::tokens::identity(&caller(&request), &self.access)))
    }

    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        allowed(&request, Op::Tokens)?;
        super::tokens::create(self.access.clone(), request.into_inner()).await.map(Response::new)
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        allowed(&request, Op::Tokens)?;
        super::tokens::list(&self.access, request.get_ref()).map(Response::new)
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        allowed(&request, Op::Tokens)?;
        super::tokens::revoke(self.access.clone(), request.into_inner()).await.map(Response::new)
    }

    type BackupStream = BoxStream<pb::BackupResponse>;

    async fn backup(&self, request: Request<pb::BackupRequest>) -> Result<Response<Self::BackupStream>, Status> {
        allowed(&request, Op::Backup)?;
        let who = caller(&request);
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
                    let chunk = pb::BackupResponse { data: bytes::Bytes::copy_from_slice(&buf[..n]) };
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
        let chunks: BoxStream<pb::BackupResponse> = Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx));
        Ok(Response::new(end_on_revocation(chunks, &who, &self.access)))
    }
}
