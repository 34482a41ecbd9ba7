//! Keeping the live state fresh without refetching everything: each event
//! of the coordinator's stream marks what it made stale (`Stale`), and the
//! refresher fetches only that, at most every 300 ms. The worker table is
//! never fetched whole: the leaderboard is ten rows, and the pages that
//! show workers fetch their own page when told the workers changed.

use std::cell::RefCell;
use std::collections::HashMap;

use futures_channel::mpsc::{unbounded, UnboundedSender};
use futures_util::StreamExt;
use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;

use crate::api::{self, pb};
use crate::app::Live;

/// Events kept for the live feed.
const FEED_LEN: usize = 40;

/// Parts of the live state an event made stale, as a set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stale(u8);

impl Stale {
    /// The swarm's counters.
    pub const STATUS: Stale = Stale(1);
    /// The job list.
    pub const JOBS: Stale = Stale(2);
    /// Workers: the leaderboard, and the pages that list workers.
    pub const WORKERS: Stale = Stale(4);
    /// Epochs and the settlement consensus.
    pub const EPOCHS: Stale = Stale(8);
    /// What changes without an event (verification stats).
    pub const SLOW: Stale = Stale(16);
    /// Everything.
    pub const ALL: Stale = Stale(31);

    fn has(self, part: Stale) -> bool {
        self.0 & part.0 != 0
    }

    fn with(self, part: Stale) -> Stale {
        Stale(self.0 | part.0)
    }

    /// What an event makes stale.
    fn of(event: &pb::StreamEventsResponse) -> Stale {
        use pb::stream_events_response::Event as E;
        match &event.event {
            Some(E::WorkerAdmitted(_) | E::WorkerRefused(_) | E::WorkerLeft(_) | E::WorkerSlashed(_)) => {
                Stale::STATUS.with(Stale::WORKERS)
            }
            Some(E::JobAccepted(_) | E::JobFinished(_) | E::TaskDeadLettered(_)) => Stale::STATUS.with(Stale::JOBS),
            // A verified task moves its job, and its workers' counts.
            Some(E::TaskVerified(_)) => Stale::STATUS.with(Stale::JOBS).with(Stale::WORKERS),
            Some(E::EpochSettled(_)) => Stale::STATUS.with(Stale::EPOCHS).with(Stale::WORKERS),
            Some(E::Lagged(_)) | None => Stale::ALL,
        }
    }
}

thread_local! {
    /// Per job, the operations of each task (from its kernels).
    static OPS: RefCell<HashMap<String, Vec<u64>>> = RefCell::new(HashMap::new());
    /// Wakes the refresher with what is stale.
    static KICK: RefCell<Option<UnboundedSender<Stale>>> = const { RefCell::new(None) };
}

/// Asks for a refresh of what is stale (coalesced with other asks).
pub fn kick(stale: Stale) {
    KICK.with(|k| {
        if let Some(tx) = k.borrow().as_ref() {
            let _ = tx.unbounded_send(stale);
        }
    });
}

/// The page's clock, in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// The kernels of a job, fetched once (page by page).
pub async fn job_kernels(job: &str) -> Option<Vec<pb::Kernel>> {
    let mut c = api::client();
    let (mut kernels, mut page_token) = (Vec::new(), String::new());
    loop {
        let request = pb::ListJobKernelsRequest { job_id: job.to_owned(), page_size: 10_000, page_token };
        let r = c.list_job_kernels(api::request(request)).await.ok()?.into_inner();
        kernels.extend(r.kernels);
        if r.next_page_token.is_empty() {
            return Some(kernels);
        }
        page_token = r.next_page_token;
    }
}

async fn ops_of(job: &str, index: u32) -> u64 {
    if let Some(v) = OPS.with(|o| o.borrow().get(job).map(|ops| ops.get(index as usize).copied().unwrap_or(0))) {
        return v;
    }
    let ops: Vec<u64> = job_kernels(job).await.unwrap_or_default().iter().map(api::ops).collect();
    let v = ops.get(index as usize).copied().unwrap_or(0);
    OPS.with(|o| o.borrow_mut().insert(job.to_owned(), ops));
    v
}

/// The answer of a call, or None after noting why not: a refusal asks for
/// a token, anything else is an error.
pub fn answer<T>(live: Live, refused: &mut Option<String>, r: Result<tonic::Response<T>, tonic::Status>) -> Option<T> {
    match r {
        Ok(r) => Some(r.into_inner()),
        Err(e) if api::wants_token(&e) => {
            refused.get_or_insert_with(|| api::explain(&e));
            None
        }
        Err(e) => {
            live.error.set(Some(api::explain(&e)));
            None
        }
    }
}

/// Fetches what is stale; the counters always come first (a refusal there
/// asks for a token before anything else is tried).
async fn refresh(live: Live, stale: Stale) {
    let mut c = api::client();
    let mut refused = None;
    let status = answer(live, &mut refused, c.get_swarm_status(api::request(pb::GetSwarmStatusRequest {})).await);
    let Some(status) = status else {
        if refused.is_some() {
            live.error.set(None);
            live.token_wanted.set(refused);
        }
        return;
    };
    live.status.set(Some(status));
    if stale.has(Stale::WORKERS) {
        let leaders = pb::ListContributorsRequest {
            page_size: 10,
            order_by: pb::ContributorOrder::Agreed.into(),
            ..Default::default()
        };
        if let Some(l) = answer(live, &mut refused, c.list_contributors(api::request(leaders)).await) {
            live.leaderboard.set(l.contributors);
        }
        live.workers_changed.update(|n| *n += 1);
    }
    if stale.has(Stale::JOBS) {
        let jobs = pb::ListJobsRequest { page_size: 50, ..Default::default() };
        if let Some(j) = answer(live, &mut refused, c.list_jobs(api::request(jobs)).await) {
            live.jobs.set(j.jobs);
        }
    }
    if stale.has(Stale::EPOCHS) {
        if let Some(t) =
            answer(live, &mut refused, c.list_teams(api::request(pb::ListTeamsRequest { page_size: 10 })).await)
        {
            live.teams.set(t.teams);
        }
        let epochs = pb::ListEpochsRequest { page_size: 100, ..Default::default() };
        if let Some(e) = answer(live, &mut refused, c.list_epochs(api::request(epochs)).await) {
            live.epochs.set(e.epochs);
        }
    }
    if stale.has(Stale::EPOCHS) || stale.has(Stale::SLOW) {
        if let Some(s) = answer(live, &mut refused, c.get_consensus(api::request(pb::GetConsensusRequest {})).await) {
            live.consensus.set(Some(s));
        }
    }
    if stale.has(Stale::SLOW) {
        let shadow = c.get_shadow_stats(api::request(pb::GetShadowStatsRequest {})).await;
        if let Some(s) = answer(live, &mut refused, shadow) {
            live.shadow.set(Some(s));
        }
    }
    live.error.set(None);
    live.token_wanted.set(refused);
    if live.refreshes.get_untracked() == 0 {
        // The first data on screen, for the load-time budget.
        if let Some(p) = web_sys::window().and_then(|w| w.performance()) {
            let _ = p.mark("shoal-first-data");
        }
    }
    live.refreshes.update(|n| *n += 1);
}

/// Refreshes everything at start, then what is stale whenever kicked (at
/// most every 300 ms, the asks of that time together).
pub async fn refresher(live: Live) {
    let (tx, mut kicks) = unbounded();
    KICK.with(|k| *k.borrow_mut() = Some(tx));
    refresh(live, Stale::ALL).await;
    while let Some(first) = kicks.next().await {
        TimeoutFuture::new(300).await;
        let mut stale = first;
        while let Ok(more) = kicks.try_recv() {
            stale = stale.with(more);
        }
        refresh(live, stale).await;
    }
}

/// Follows the coordinator's event stream, reconnecting when it drops.
pub async fn follow_events(live: Live) {
    loop {
        match api::client().stream_events(api::request(pb::StreamEventsRequest {})).await {
            Ok(stream) => {
                live.streaming.set(true);
                kick(Stale::ALL);
                let mut stream = stream.into_inner();
                while let Ok(Some(event)) = stream.message().await {
                    if let Some(pb::stream_events_response::Event::TaskVerified(v)) = &event.event {
                        let ops = ops_of(&v.job_id, v.task_index).await;
                        live.throughput.update(|t| t.record(now_ms() / 1000, ops));
                    }
                    kick(Stale::of(&event));
                    live.feed.update(|f| {
                        f.insert(0, event);
                        f.truncate(FEED_LEN);
                    });
                }
                live.streaming.set(false);
            }
            Err(e) if api::wants_token(&e) => live.token_wanted.set(Some(api::explain(&e))),
            Err(e) => live.error.set(Some(api::explain(&e))),
        }
        TimeoutFuture::new(2_000).await;
    }
}

/// The page's clock: moves the chart and the "ago" columns; every 10 s also
/// refreshes everything (heartbeats and verification stats change without
/// an event).
pub async fn clock(live: Live) {
    let mut n = 0u64;
    loop {
        TimeoutFuture::new(1_000).await;
        let now = now_ms();
        live.now_ms.set(now);
        live.throughput.update(|t| t.advance(now / 1000));
        n += 1;
        if n.is_multiple_of(10) {
            kick(Stale::ALL);
        }
    }
}
