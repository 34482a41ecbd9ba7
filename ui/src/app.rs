//! The app's shell and its live state: one event stream and one refresher
//! feed every page; nothing polls while the swarm is quiet.

use std::cell::RefCell;
use std::collections::HashMap;

use futures_channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use futures_util::StreamExt;
use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, pb};
use crate::pages;
use crate::view_model::Throughput;

/// Events kept for the live feed.
const FEED_LEN: usize = 40;

/// Everything the pages show, kept fresh by the event stream.
#[derive(Clone, Copy)]
pub struct Live {
    /// Swarm counters.
    pub status: RwSignal<Option<pb::GetSwarmStatusResponse>>,
    /// Workers the coordinator knows.
    pub workers: RwSignal<Vec<pb::Worker>>,
    /// Workers by verified work, all time.
    pub leaderboard: RwSignal<Vec<pb::Worker>>,
    /// Recent jobs, newest first.
    pub jobs: RwSignal<Vec<pb::Job>>,
    /// Settled epochs.
    pub epochs: RwSignal<Vec<pb::Epoch>>,
    /// Verification against ground truth.
    pub shadow: RwSignal<Option<pb::GetShadowStatsResponse>>,
    /// The settlement consensus.
    pub consensus: RwSignal<Option<pb::GetConsensusResponse>>,
    /// Recent events, newest first.
    pub feed: RwSignal<Vec<pb::StreamEventsResponse>>,
    /// Verified tasks and operations per second.
    pub throughput: RwSignal<Throughput>,
    /// Why the coordinator cannot be read, if it cannot.
    pub error: RwSignal<Option<String>>,
    /// Why some view needs an API token (or another one), if one does.
    pub token_wanted: RwSignal<Option<String>>,
    /// Whether this tab holds a token (kept for its session).
    pub has_token: RwSignal<bool>,
    /// Whether the event stream is open.
    pub streaming: RwSignal<bool>,
    /// The page's clock, in ms (ticks every second).
    pub now_ms: RwSignal<u64>,
    /// Refreshes done (a test waits on it).
    pub refreshes: RwSignal<u64>,
}

thread_local! {
    /// Per job, the operations of each task (from its kernels).
    static OPS: RefCell<HashMap<String, Vec<u64>>> = RefCell::new(HashMap::new());
    /// Wakes the refresher.
    static KICK: RefCell<Option<UnboundedSender<()>>> = const { RefCell::new(None) };
}

/// Asks for a refresh of every list (coalesced).
pub fn kick() {
    KICK.with(|k| {
        if let Some(tx) = k.borrow().as_ref() {
            let _ = tx.unbounded_send(());
        }
    });
}

fn now_ms() -> u64 {
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
fn answer<T>(live: Live, refused: &mut Option<String>, r: Result<tonic::Response<T>, tonic::Status>) -> Option<T> {
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

async fn refresh(live: Live) {
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
    let workers = pb::ListWorkersRequest { page_size: 1000, ..Default::default() };
    if let Some(w) = answer(live, &mut refused, c.list_workers(api::request(workers)).await) {
        live.workers.set(w.workers);
    }
    let leaders = pb::ListWorkersRequest {
        page_size: 10,
        order_by: pb::WorkerOrder::Agreed.into(),
        descending: true,
        ..Default::default()
    };
    if let Some(w) = answer(live, &mut refused, c.list_workers(api::request(leaders)).await) {
        live.leaderboard.set(w.workers);
    }
    let jobs = pb::ListJobsRequest { page_size: 100, ..Default::default() };
    if let Some(j) = answer(live, &mut refused, c.list_jobs(api::request(jobs)).await) {
        live.jobs.set(j.jobs);
    }
    let epochs = pb::ListEpochsRequest { page_size: 100, ..Default::default() };
    if let Some(e) = answer(live, &mut refused, c.list_epochs(api::request(epochs)).await) {
        live.epochs.set(e.epochs);
    }
    if let Some(s) = answer(live, &mut refused, c.get_shadow_stats(api::request(pb::GetShadowStatsRequest {})).await) {
        live.shadow.set(Some(s));
    }
    if let Some(s) = answer(live, &mut refused, c.get_consensus(api::request(pb::GetConsensusRequest {})).await) {
        live.consensus.set(Some(s));
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

/// Refreshes at start, then whenever kicked (at most every 300 ms).
async fn refresher(live: Live, mut kicks: UnboundedReceiver<()>) {
    refresh(live).await;
    while kicks.next().await.is_some() {
        TimeoutFuture::new(300).await;
        while kicks.try_recv().is_ok() {}
        refresh(live).await;
    }
}

/// Follows the coordinator's event stream, reconnecting when it drops.
async fn follow_events(live: Live) {
    loop {
        match api::client().stream_events(api::request(pb::StreamEventsRequest {})).await {
            Ok(stream) => {
                live.streaming.set(true);
                kick();
                let mut stream = stream.into_inner();
                while let Ok(Some(event)) = stream.message().await {
                    if let Some(pb::stream_events_response::Event::TaskVerified(v)) = &event.event {
                        let ops = ops_of(&v.job_id, v.task_index).await;
                        live.throughput.update(|t| t.record(now_ms() / 1000, ops));
                    }
                    live.feed.update(|f| {
                        f.insert(0, event);
                        f.truncate(FEED_LEN);
                    });
                    kick();
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
/// refreshes (heartbeats change no event).
async fn clock(live: Live) {
    let mut n = 0u64;
    loop {
        TimeoutFuture::new(1_000).await;
        let now = now_ms();
        live.now_ms.set(now);
        live.throughput.update(|t| t.advance(now / 1000));
        n += 1;
        if n.is_multiple_of(10) {
            kick();
        }
    }
}

/// The pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    /// The swarm at a glance.
    Swarm,
    /// Every worker.
    Workers,
    /// Jobs and their tasks.
    Jobs,
    /// Epochs and payouts.
    Epochs,
    /// This tab as a worker.
    Contribute,
}

impl Page {
    const ALL: [Page; 5] = [Page::Swarm, Page::Workers, Page::Jobs, Page::Epochs, Page::Contribute];

    fn slug(self) -> &'static str {
        match self {
            Page::Swarm => "swarm",
            Page::Workers => "workers",
            Page::Jobs => "jobs",
            Page::Epochs => "epochs",
            Page::Contribute => "contribute",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Page::Swarm => "Swarm",
            Page::Workers => "Workers",
            Page::Jobs => "Jobs",
            Page::Epochs => "Epochs",
            Page::Contribute => "Contribute",
        }
    }

    fn from_hash() -> Page {
        let hash = web_sys::window().and_then(|w| w.location().hash().ok()).unwrap_or_default();
        let slug = hash.trim_start_matches('#');
        Page::ALL.into_iter().find(|p| p.slug() == slug).unwrap_or(Page::Swarm)
    }
}

#[component]
fn App() -> impl IntoView {
    let live = Live {
        status: RwSignal::new(None),
        workers: RwSignal::new(Vec::new()),
        leaderboard: RwSignal::new(Vec::new()),
        jobs: RwSignal::new(Vec::new()),
        epochs: RwSignal::new(Vec::new()),
        shadow: RwSignal::new(None),
        consensus: RwSignal::new(None),
        feed: RwSignal::new(Vec::new()),
        throughput: RwSignal::new(Throughput::default()),
        error: RwSignal::new(None),
        token_wanted: RwSignal::new(None),
        has_token: RwSignal::new(api::token().is_some()),
        streaming: RwSignal::new(false),
        now_ms: RwSignal::new(now_ms()),
        refreshes: RwSignal::new(0),
    };
    provide_context(live);
    let (tx, rx) = unbounded();
    KICK.with(|k| *k.borrow_mut() = Some(tx));
    spawn_local(refresher(live, rx));
    spawn_local(follow_events(live));
    spawn_local(clock(live));

    let page = RwSignal::new(Page::from_hash());
    let _ = window_event_listener(leptos::ev::hashchange, move |_| page.set(Page::from_hash()));

    view! {
        <header>
            <a class="brand" href="#swarm">"Shoal"</a>
            <nav>
                {Page::ALL
                    .into_iter()
                    .map(|p| {
                        view! {
                            <a href=format!("#{}", p.slug()) class:active=move || page.get() == p>
                                {p.title()}
                            </a>
                        }
                    })
                    .collect_view()}
            </nav>
            <span class="live" class:on=move || live.streaming.get()>
                {move || if live.streaming.get() { "live" } else { "offline" }}
            </span>
            <Show when=move || live.has_token.get()>
                <button id="forget-token" class="link" on:click=move |_| forget_token(live)>"forget token"</button>
            </Show>
        </header>
        {move || {
            live.error.get().map(|e| view! { <div class="banner error" role="alert">{e}</div> })
        }}
        {move || live.token_wanted.get().map(|why| view! { <TokenPrompt why=why /> })}
        <main>
            {move || match page.get() {
                Page::Swarm => pages::swarm::SwarmPage().into_any(),
                Page::Workers => pages::workers::WorkersPage().into_any(),
                Page::Jobs => pages::jobs::JobsPage().into_any(),
                Page::Epochs => pages::epochs::EpochsPage().into_any(),
                Page::Contribute => pages::contribute::ContributePage().into_any(),
            }}
        </main>
    }
}

/// Asks for an API token when a view needs one; keeps it for the tab's
/// session (never in the URL) and refreshes with it.
#[component]
fn TokenPrompt(why: String) -> impl IntoView {
    let live = live();
    let input = NodeRef::<leptos::html::Input>::new();
    let use_token = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(el) = input.get() else { return };
        let token = el.value().trim().to_owned();
        if !token.is_empty() {
            api::set_token(Some(&token));
            el.set_value("");
            live.has_token.set(true);
            live.token_wanted.set(None);
            kick();
        }
    };
    view! {
        <form id="token-form" class="banner token" on:submit=use_token>
            <label for="api-token">{why}</label>
            <input id="api-token" type="password" autocomplete="off" placeholder="API token" node_ref=input />
            <button type="submit">"Use token"</button>
        </form>
    }
}

fn forget_token(live: Live) {
    api::set_token(None);
    live.has_token.set(false);
    kick();
}

/// Mounts the app on the page's body.
pub fn start() {
    leptos::mount::mount_to_body(App);
}

/// The live state, from any component.
pub fn live() -> Live {
    expect_context::<Live>()
}
