//! The swarm calls: workers (sorted and paged off the engine thread),
//! counters, epochs, the live event feed and the state-diff stream.

use tokio::sync::broadcast::error::RecvError;
use tonic::Status;

use crate::engine::EngineHandle;
use crate::status::SwarmStatus;

use super::convert::{diff_to_pb, epoch_to_pb, event_to_pb, lagged_to_pb, worker_to_pb};
use super::paging::{self, ListCall};
use super::pb;
use super::service::{gone, BoxStream, CATCH_UP_STEP};

/// `ListWorkers`: the engine sorts small keys of every worker and builds
/// views only for the page's rows.
pub(super) async fn workers(
    engine: &EngineHandle,
    req: &pb::ListWorkersRequest,
) -> Result<pb::ListWorkersResponse, Status> {
    use shoal_core::coordinator::WorkerSort as S;
    let order = pb::WorkerOrder::try_from(req.order_by)
        .map_err(|_| super::errors::bad_field("order_by", format!("no worker order numbered {}", req.order_by)))?;
    let sort = match order {
        pb::WorkerOrder::Unspecified | pb::WorkerOrder::Id => S::Id,
        pb::WorkerOrder::Backend => S::Backend,
        pb::WorkerOrder::Tier => S::Tier,
        pb::WorkerOrder::Mflops => S::Mflops,
        pb::WorkerOrder::Credibility => S::Credibility,
        pb::WorkerOrder::Agreed => S::Agreed,
        pb::WorkerOrder::EpochAccuracy => S::EpochAccuracy,
        pb::WorkerOrder::InFlight => S::InFlight,
        pb::WorkerOrder::LastSeen => S::LastSeen,
    };
    let request = paging::fingerprint(&[&req.order_by.to_be_bytes(), &[u8::from(req.descending)]]);
    let start = paging::offset(paging::position(ListCall::Workers, request, &req.page_token)?.as_deref())?;
    let size = ListCall::Workers.page_size(req.page_size);
    let descending = req.descending;
    let (total, views) = engine.query(move |c, _| c.workers_page(sort, descending, start, size)).await.map_err(gone)?;
    let next_page_token = paging::next_offset_token(ListCall::Workers, request, start, views.len(), total);
    let workers = views.iter().map(worker_to_pb).collect();
    Ok(pb::ListWorkersResponse { workers, next_page_token, total_size: total as u32 })
}

/// `GetWorker`: one worker, found by id on the engine thread.
pub(super) async fn worker(engine: &EngineHandle, req: &pb::GetWorkerRequest) -> Result<pb::GetWorkerResponse, Status> {
    let id = shoal_core::WorkerId::new(req.worker_id.clone())
        .map_err(|e| super::errors::bad_field("worker_id", e.to_string()))?;
    let name = id.to_string();
    let view = engine.query(move |c, _| c.worker_view(&id)).await.map_err(gone)?;
    let view = view.ok_or_else(|| {
        super::errors::not_found("shoal.v1.Worker", name.clone(), format!("no worker {name} is connected"))
    })?;
    Ok(pb::GetWorkerResponse { worker: Some(worker_to_pb(&view)) })
}

/// A contributor named by worker id or by an identity's public key.
fn contributor_id(key: &str) -> Result<shoal_core::WorkerId, Status> {
    let key = key.trim();
    match parse_public_key(key) {
        Some(public) => Ok(shoal_core::identity::worker_id_of(&public)),
        None => shoal_core::WorkerId::new(key.to_owned())
            .map_err(|e| super::errors::bad_field("key", format!("neither a worker id nor a public key: {e}"))),
    }
}

/// `ApproveContributor`: approves an identity or withdraws its approval.
pub(super) async fn approve(
    engine: &EngineHandle,
    req: &pb::ApproveContributorRequest,
) -> Result<pb::ApproveContributorResponse, Status> {
    use shoal_core::coordinator::{Answer, Command};
    let id = contributor_id(&req.key)?;
    if !shoal_core::identity::is_identity_id(&id) {
        return Err(super::errors::bad_field("key", format!("{id} is not a contributor identity (`id-…`)")));
    }
    let command = Command::ApproveIdentity { worker: id.clone(), approve: req.approve };
    match engine.command(command).await.map_err(gone)? {
        Answer::IdentityApproval(changed) => Ok(pb::ApproveContributorResponse { worker_id: id.to_string(), changed }),
        other => Err(Status::internal(format!("the coordinator answered {other:?}"))),
    }
}

/// `SetStake`: a worker's stake, base units.
pub(super) async fn set_stake(
    engine: &EngineHandle,
    req: &pb::SetStakeRequest,
) -> Result<pb::SetStakeResponse, Status> {
    use shoal_core::coordinator::{Answer, Command};
    let worker = shoal_core::WorkerId::new(req.worker_id.clone())
        .map_err(|e| super::errors::bad_field("worker_id", e.to_string()))?;
    let stake: u128 = req.stake.trim().parse().map_err(|_| {
        super::errors::bad_field("stake", format!("{:?} is not a whole number of base units", req.stake))
    })?;
    match engine.command(Command::SetStake { worker: worker.clone(), stake }).await.map_err(gone)? {
        Answer::StakeSet => Ok(pb::SetStakeResponse { worker_id: worker.to_string(), stake: stake.to_string() }),
        other => Err(Status::internal(format!("the coordinator answered {other:?}"))),
    }
}

/// `ListPendingContributors`: identities waiting for approval.
pub(super) async fn pending(engine: &EngineHandle) -> Result<pb::ListPendingContributorsResponse, Status> {
    let ids = engine.query(|c, _| c.pending_identities()).await.map_err(gone)?;
    Ok(pb::ListPendingContributorsResponse { worker_ids: ids.iter().map(ToString::to_string).collect() })
}

/// `GetContributor`: by worker id, or by an identity's public key.
pub(super) async fn contributor(
    engine: &EngineHandle,
    req: &pb::GetContributorRequest,
) -> Result<pb::GetContributorResponse, Status> {
    let id = contributor_id(&req.key)?;
    let name = id.to_string();
    let view = engine.query(move |c, _| c.contributor(&id)).await.map_err(gone)?;
    let v = view.ok_or_else(|| {
        super::errors::not_found("shoal.v1.Contributor", name.clone(), format!("no contributor {name}"))
    })?;
    Ok(pb::GetContributorResponse { contributor: Some(contributor_to_pb(v)) })
}

/// `ListContributors`: the engine ranks every contributor's key and builds
/// records only for the page's rows.
pub(super) async fn contributors(
    engine: &EngineHandle,
    req: &pb::ListContributorsRequest,
) -> Result<pb::ListContributorsResponse, Status> {
    use shoal_core::coordinator::ContributorSort as S;
    let order = pb::ContributorOrder::try_from(req.order_by)
        .map_err(|_| super::errors::bad_field("order_by", format!("no contributor order numbered {}", req.order_by)))?;
    let sort = match order {
        pb::ContributorOrder::Unspecified | pb::ContributorOrder::Agreed => S::Agreed,
        pb::ContributorOrder::Earned => S::Earned,
    };
    let request = paging::fingerprint(&[&req.order_by.to_be_bytes()]);
    let start = paging::offset(paging::position(ListCall::Contributors, request, &req.page_token)?.as_deref())?;
    let size = ListCall::Contributors.page_size(req.page_size);
    let (total, views) = engine.query(move |c, _| c.contributors_page(sort, start, size)).await.map_err(gone)?;
    let next_page_token = paging::next_offset_token(ListCall::Contributors, request, start, views.len(), total);
    let contributors = views.into_iter().map(contributor_to_pb).collect();
    Ok(pb::ListContributorsResponse { contributors, next_page_token, total_size: total as u32 })
}

/// `ListTeams`: the first teams, most paid first.
pub(super) async fn teams(engine: &EngineHandle, req: &pb::ListTeamsRequest) -> Result<pb::ListTeamsResponse, Status> {
    let size = if req.page_size == 0 { 20 } else { req.page_size.min(100) } as usize;
    let teams = engine.query(move |c, _| c.teams(size)).await.map_err(gone)?;
    let teams = teams
        .into_iter()
        .map(|t| pb::Team { name: t.name, members: t.members, agreed: t.agreed, earned: t.earned.to_string() })
        .collect();
    Ok(pb::ListTeamsResponse { teams })
}

fn contributor_to_pb(v: shoal_core::coordinator::ContributorView) -> pb::Contributor {
    pb::Contributor {
        worker_id: v.id.to_string(),
        connected: v.connected,
        credibility_ppm: v.credibility_ppm,
        agreed: v.agreed,
        slashed: v.slashed,
        epoch_agreed: v.epoch_agreed,
        earned: v.earned.to_string(),
        epochs_paid: v.epochs_paid,
        payout_address: v.profile.payout,
        display_name: v.profile.name,
        team: v.profile.team,
        stake: v.stake.to_string(),
    }
}

/// 64 hex digits as a 32-byte public key.
fn parse_public_key(s: &str) -> Option<[u8; 32]> {
    s.parse::<shoal_core::Digest>().ok().map(|d| d.0)
}

/// `GetSwarmStatus`.
pub(super) async fn status(engine: &EngineHandle) -> Result<pb::GetSwarmStatusResponse, Status> {
    let (s, height, digest, epoch) = engine
        .query(|c, store| {
            let (_, h) = store.diff_heights().unwrap_or((0, 0));
            let digest = store.diffs(h, h, 1).ok().and_then(|mut d| d.pop()).map(|d| d.digest.to_hex());
            (SwarmStatus::of(c), h, digest.unwrap_or_default(), c.epochs().len() as u64)
        })
        .await
        .map_err(gone)?;
    Ok(pb::GetSwarmStatusResponse {
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
        uptime_ms: engine.gauges.started.elapsed().as_millis() as u64,
        tiers: s
            .classes
            .iter()
            .map(|c| pb::TierCount { backend: c.backend.clone(), tier: u32::from(c.tier), workers: c.workers })
            .collect(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        input_bytes_sent: s.input_bytes_sent,
        shared_bytes_named: s.shared_bytes_named,
        input_requests: s.input_requests,
    })
}

/// `ListEpochs`: newest first; a page token holds the epoch number the
/// next page goes below, so epochs settled meanwhile never shift pages.
pub(super) async fn epochs(
    engine: &EngineHandle,
    req: &pb::ListEpochsRequest,
    settlements: (&crate::settlement::SharedConsensus, &std::path::Path),
) -> Result<pb::ListEpochsResponse, Status> {
    let below = match paging::position(ListCall::Epochs, 0, &req.page_token)? {
        None => u64::MAX,
        Some(b) => u64::from_be_bytes(
            b.as_slice()
                .try_into()
                .map_err(|_| super::errors::bad_field("page_token", "not a page token this service handed out"))?,
        ),
    };
    let size = ListCall::Epochs.page_size(req.page_size);
    let (epochs, more) = engine
        .query(move |c, _| {
            let mut newest_first = c.epochs().iter().rev().filter(|s| s.epoch < below);
            let page: Vec<pb::Epoch> = newest_first.by_ref().take(size).map(epoch_to_pb).collect();
            (page, newest_first.next().is_some())
        })
        .await
        .map_err(gone)?;
    let next_page_token = match (more, epochs.last()) {
        (true, Some(last)) => paging::next_token(ListCall::Epochs, 0, &last.epoch.to_be_bytes()),
        _ => String::new(),
    };
    let (view, data) = settlements;
    let known = view.lock().map(|v| v.settlements.clone()).unwrap_or_default();
    let epochs = epochs
        .into_iter()
        .map(|mut e| {
            e.settlement = match known.get(&e.epoch) {
                Some(state) => state.as_str().to_owned(),
                None if crate::settler::file_of(data, e.epoch).is_file() => "settled".to_owned(),
                None => "unsettled".to_owned(),
            };
            e
        })
        .collect();
    Ok(pb::ListEpochsResponse { epochs, next_page_token })
}

/// `CloseEpoch`: settles the open epoch and answers it.
pub(super) async fn close_epoch(engine: &EngineHandle) -> Result<pb::CloseEpochResponse, Status> {
    engine.close_epoch().await.map_err(gone)?;
    let epoch = engine.query(|c, _| c.epochs().last().map(epoch_to_pb)).await.map_err(gone)?;
    Ok(pb::CloseEpochResponse { epoch })
}

/// `StreamEvents`: the live feed; a subscriber that falls behind is told
/// how much it missed.
pub(super) fn events(engine: &EngineHandle) -> BoxStream<pb::StreamEventsResponse> {
    let mut events = engine.events();
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            let item = match events.recv().await {
                Ok(e) => event_to_pb(&e),
                Err(RecvError::Lagged(n)) => lagged_to_pb(n),
                Err(RecvError::Closed) => return,
            };
            if tx.send(Ok(item)).await.is_err() {
                return;
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// `StreamStateDiffs`: stored diffs from `from`, then live ones.
pub(super) fn state_diffs(engine: &EngineHandle, from: u64) -> BoxStream<pb::StreamStateDiffsResponse> {
    // Subscribe first, so nothing published during the catch-up is lost.
    let mut live = engine.diffs();
    let engine = engine.clone();
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
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
