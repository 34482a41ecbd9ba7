//! The app's shell and its live state: one event stream and one refresher
//! (`refresh`) feed every page; nothing polls while the swarm is quiet.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, pb};
use crate::pages;
use crate::refresh::{clock, follow_events, kick, now_ms, refresher, Stale};
use crate::view_model::Throughput;

/// Everything the pages show, kept fresh by the event stream.
#[derive(Clone, Copy)]
pub struct Live {
    /// Swarm counters.
    pub status: RwSignal<Option<pb::GetSwarmStatusResponse>>,
    /// Bumped each time the workers changed (a page that shows some
    /// fetches its own page of them again).
    pub workers_changed: RwSignal<u64>,
    /// The ten contributors of all time with the most verified work.
    pub leaderboard: RwSignal<Vec<pb::Contributor>>,
    /// The teams contributors declared, most paid first.
    pub teams: RwSignal<Vec<pb::Team>>,
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
        workers_changed: RwSignal::new(0),
        leaderboard: RwSignal::new(Vec::new()),
        teams: RwSignal::new(Vec::new()),
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
    spawn_local(refresher(live));
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
            kick(Stale::ALL);
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
    kick(Stale::ALL);
}

/// Mounts the app on the page's body.
pub fn start() {
    leptos::mount::mount_to_body(App);
}

/// The live state, from any component.
pub fn live() -> Live {
    expect_context::<Live>()
}
