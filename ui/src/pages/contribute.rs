//! Contribute: one button makes this tab a worker (shoal-web's Web Worker),
//! with its device, measured speed and tier, work done, a pause button and a
//! GPU-share slider.

use std::cell::RefCell;

use leptos::prelude::*;
use shoal_web::control::{Phase, StartOptions, Status};
use shoal_web::ShoalWorker;

use crate::api::{self, pb};
use crate::app::live;
use crate::refresh::{kick, Stale};
use crate::view_model::group_thousands;

thread_local! {
    /// This tab's worker, once started (it lives as long as the page).
    static WORKER: RefCell<Option<ShoalWorker>> = const { RefCell::new(None) };
}

/// The coordinator's worker endpoint, on this page's host.
fn worker_url() -> String {
    let loc = web_sys::window().map(|w| w.location());
    let host = loc.as_ref().and_then(|l| l.host().ok()).unwrap_or_default();
    let secure = loc.and_then(|l| l.protocol().ok()).is_some_and(|p| p == "https:");
    format!("{}://{host}/ws", if secure { "wss" } else { "ws" })
}

fn with_worker(f: impl FnOnce(&ShoalWorker)) {
    WORKER.with(|w| {
        if let Some(w) = w.borrow().as_ref() {
            f(w);
        }
    });
}

/// The contribute page.
#[component]
pub fn ContributePage() -> impl IntoView {
    let live = live();
    let status: RwSignal<Option<Status>> =
        RwSignal::new(WORKER.with(|w| w.borrow().as_ref().and_then(ShoalWorker::status)));
    let share = RwSignal::new(status.get_untracked().map_or(100, |s| s.gpu_share));
    let error: RwSignal<Option<String>> = RwSignal::new(None);
    // A page shown again re-attaches to the running worker.
    with_worker(|w| w.on_status_rust(move |s| status.set(Some(s.clone()))));

    let start = move |_| {
        let started = WORKER.with(|slot| {
            let mut slot = slot.borrow_mut();
            if slot.is_none() {
                let w =
                    ShoalWorker::new("./shoal-worker.js").map_err(|e| format!("cannot start a Web Worker: {e:?}"))?;
                w.on_status_rust(move |s| {
                    status.set(Some(s.clone()));
                    kick(Stale::WORKERS);
                });
                *slot = Some(w);
            }
            let options = StartOptions { gpu_share: share.get_untracked(), ..StartOptions::new(&worker_url()) };
            slot.as_ref().map_or(Ok(()), |w| w.start_with(options))
        });
        error.set(started.err());
    };
    let phase = move || status.get().map_or(Phase::Idle, |s| s.phase);
    let running = move || !matches!(phase(), Phase::Idle | Phase::Failed);
    // This tab's worker as the coordinator sees it, fetched alone
    // whenever the workers changed.
    let me_now: RwSignal<Option<pb::Worker>> = RwSignal::new(None);
    let my_id = Memo::new(move |_| status.with(|s| s.as_ref().and_then(|s| s.worker_id.clone())));
    Effect::new(move |_| {
        live.workers_changed.track();
        let Some(id) = my_id.get() else { return };
        leptos::task::spawn_local(async move {
            let r = api::client().get_worker(api::request(pb::GetWorkerRequest { worker_id: id })).await;
            me_now.set(r.ok().and_then(|r| r.into_inner().worker));
        });
    });
    let me = move || me_now.get();
    // "You": this browser's contributor record (connected or not), read
    // again whenever workers or epochs changed.
    let record: RwSignal<Option<pb::Contributor>> = RwSignal::new(None);
    let my_key =
        Memo::new(move |_| status.with(|s| s.as_ref().and_then(|s| s.identity.clone().or(s.worker_id.clone()))));
    Effect::new(move |_| {
        live.workers_changed.track();
        live.epochs.track();
        let Some(key) = my_key.get() else { return };
        leptos::task::spawn_local(async move {
            let r = api::client().get_contributor(api::request(pb::GetContributorRequest { key })).await;
            record.set(r.ok().and_then(|r| r.into_inner().contributor));
        });
    });
    let mine = move |f: fn(&pb::Contributor) -> String| record.with(|r| r.as_ref().map_or_else(|| "—".to_owned(), f));
    let identity = move || {
        status
            .get()
            .and_then(|s| s.identity.map(|i| format!("{i} (key kept: {})", s.identity_kept.unwrap_or_default())))
    };

    view! {
        <section class="contribute">
            <h2>"Lend this tab to the swarm"</h2>
            <p>
                "Your tab runs verified compute tasks on its GPU (WebGPU), or on the CPU without one, in a background "
                "worker: the page stays responsive. Every result is checked against other workers' before it counts."
            </p>
            <div class="controls">
                <button id="start" on:click=start disabled=running>"Start"</button>
                <button id="pause" disabled=move || !running()
                    on:click=move |_| with_worker(|w| if phase() == Phase::Paused { w.resume() } else { w.pause() })>
                    {move || if phase() == Phase::Paused { "Resume" } else { "Pause" }}
                </button>
                <button id="stop" disabled=move || !running() on:click=move |_| with_worker(ShoalWorker::stop)>"Stop"</button>
            </div>
            <label class="share">
                "GPU share " <input id="share" type="range" min="10" max="100" step="10" prop:value=move || share.get().to_string()
                    on:input=move |ev| {
                        let v: u8 = event_target_value(&ev).parse().unwrap_or(100);
                        share.set(v);
                        with_worker(|w| w.set_gpu_share(v));
                    } />
                " " {move || share.get()} " %"
            </label>
            {move || error.get().map(|e| view! { <div class="banner error">{e}</div> })}
            <table class="kv">
                <tr><th>"state"</th><td id="phase">{move || format!("{:?}", phase()).to_lowercase()}</td></tr>
                <tr><th>"worker"</th><td id="worker-id" class="mono">{move || status.get().and_then(|s| s.worker_id).unwrap_or_else(|| "—".into())}</td></tr>
                <tr><th>"device"</th><td id="device">{move || status.get().and_then(|s| s.device).map_or_else(|| "—".to_owned(), |d| format!("{} ({}, {})", if d.name.is_empty() { "unnamed adapter".to_owned() } else { d.name }, d.backend, d.device_type))}</td></tr>
                <tr><th>"measured speed"</th><td id="mflops">{move || me().map_or_else(|| "—".to_owned(), |w| format!("{} MFLOPS", group_thousands(u128::from(w.mflops))))}</td></tr>
                <tr><th>"tier"</th><td id="tier">{move || me().map_or_else(|| "—".to_owned(), |w| w.tier.to_string())}</td></tr>
                <tr><th>"tasks done"</th><td id="completed">{move || status.get().map_or(0, |s| s.completed)}</td></tr>
                <tr><th>"you"</th><td id="identity" class="mono">{move || identity().unwrap_or_else(|| "a guest (nothing kept)".into())}</td></tr>
                <tr><th>"credibility"</th><td id="credibility">{move || mine(|c| format!("{:.4}{}", f64::from(c.credibility_ppm) / 1e6, if c.slashed { " (slashed)" } else { "" }))}</td></tr>
                <tr><th>"verified this epoch"</th><td id="epoch-agreed">{move || mine(|c| c.epoch_agreed.to_string())}</td></tr>
                <tr><th>"verified, all time"</th><td id="agreed">{move || mine(|c| c.agreed.to_string())}</td></tr>
                <tr><th>"earned (settled epochs)"</th><td id="earned">{move || mine(|c| format!("{} tokens over {} epochs", crate::view_model::parse_amount(&c.earned).map_or_else(String::new, crate::view_model::tokens), c.epochs_paid))}</td></tr>
                <tr><th>"last payout"</th><td id="last-payout">{move || status.get().and_then(|s| s.last_payout).map_or_else(|| "—".to_owned(), |p| format!("epoch {}: {} tokens, rank {} of {}", p.epoch, crate::view_model::parse_amount(&p.amount).map_or_else(String::new, crate::view_model::tokens), p.rank, p.payees))}</td></tr>
                <tr><th>"payouts go to"</th><td id="payout" class="mono">{move || mine(|c| if c.payout_address.is_empty() { "no address declared".into() } else { c.payout_address.clone() })}</td></tr>
                <tr><th>"last event"</th><td>{move || status.get().map(|s| s.last_reason).filter(|r| !r.is_empty()).unwrap_or_else(|| "—".into())}</td></tr>
            </table>
        </section>
    }
}
