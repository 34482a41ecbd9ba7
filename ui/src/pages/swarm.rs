//! The swarm at a glance: who is in it, how fast it verifies, where the
//! tasks stand, how verification compares with the truth, what just happened.

use leptos::prelude::*;

use crate::api::pb;
use crate::app::live;
use crate::view_model::{ago, group_thousands, polyline, HISTORY_SECS};

const CHART_W: f64 = 600.0;
const CHART_H: f64 = 120.0;

/// One number with its label.
#[component]
fn Stat(label: &'static str, #[prop(into)] value: Signal<String>, #[prop(optional)] id: &'static str) -> impl IntoView {
    view! {
        <div class="stat">
            <div class="value" data-stat=id>{value}</div>
            <div class="label">{label}</div>
        </div>
    }
}

/// An event's kind as the feed shows it (`task_verified`).
fn event_name(e: &pb::StreamEventsResponse) -> &'static str {
    use pb::stream_events_response::Event as E;
    match &e.event {
        Some(E::WorkerAdmitted(_)) => "worker_admitted",
        Some(E::WorkerRefused(_)) => "worker_refused",
        Some(E::WorkerLeft(_)) => "worker_left",
        Some(E::JobAccepted(_)) => "job_accepted",
        Some(E::TaskVerified(_)) => "task_verified",
        Some(E::TaskDeadLettered(_)) => "task_dead_lettered",
        Some(E::JobFinished(_)) => "job_finished",
        Some(E::WorkerSlashed(_)) => "worker_slashed",
        Some(E::EpochSettled(_)) => "epoch_settled",
        Some(E::Lagged(_)) => "lagged",
        None => "event",
    }
}

/// The latest events of the live stream.
#[component]
fn Feed() -> impl IntoView {
    let live = live();
    view! {
        <h3>"Live"</h3>
        <ul class="feed">
            {move || {
                let now = live.now_ms.get();
                live.feed
                    .get()
                    .into_iter()
                    .take(15)
                    .map(|e| {
                        let what = e.summary.clone();
                        view! {
                            <li><span class="kind">{event_name(&e)}</span> " " {what} " " <span class="ago">{ago(now, e.at_ms)}</span></li>
                        }
                    })
                    .collect_view()
            }}
        </ul>
    }
}

/// The swarm page.
#[component]
pub fn SwarmPage() -> impl IntoView {
    let live = live();
    let st = move || live.status.get().unwrap_or_default();
    let n = move |f: fn(&crate::api::pb::GetSwarmStatusResponse) -> u64| {
        Signal::derive(move || group_thousands(u128::from(f(&st()))))
    };
    let rate = Signal::derive(move || format!("{:.1}", live.throughput.with(|t| t.recent_rate(10))));
    let gops = Signal::derive(move || format!("{:.3}", live.throughput.with(|t| t.recent_gops(10))));
    let points = move || live.throughput.with(|t| polyline(t.tasks(), CHART_W, CHART_H));
    let peak = move || live.throughput.with(|t| t.tasks().iter().copied().max().unwrap_or(0));
    view! {
        <section>
            <h2>"Swarm"</h2>
            <Show when=move || live.status.get().is_some_and(|s| s.workers == 0)>
                <p class="empty">
                    "No workers yet. Start one with " <code>"shoal worker"</code> ", or lend this tab on "
                    <a href="#contribute">"Contribute"</a> "."
                </p>
            </Show>
            <div class="stats">
                <Stat label="workers connected" id="workers" value=n(|s| u64::from(s.workers)) />
                <Stat label="admitted" id="admitted" value=n(|s| u64::from(s.workers_admitted)) />
                <Stat label="jobs open" id="jobs_open" value=n(|s| s.jobs_open) />
                <Stat label="tasks/s verified (10 s)" id="rate" value=rate />
                <Stat label="GOPS verified (10 s)" id="gops" value=gops />
                <Stat label="epoch" id="epoch" value=n(|s| s.epoch) />
            </div>
            <h3>"Verified tasks per second, last " {HISTORY_SECS / 60} " minutes"</h3>
            <svg class="chart" viewBox=format!("0 0 {CHART_W} {CHART_H}") preserveAspectRatio="none" role="img">
                <polyline points=points fill="none" stroke="currentColor" stroke-width="2" />
            </svg>
            <div class="chart-scale">"peak " {peak} " tasks/s"</div>
            <div class="columns">
                <div>
                    <h3>"Tasks by state"</h3>
                    <table class="kv">
                        <tr><th>"queued or running"</th><td data-stat="tasks_pending">{n(|s| s.tasks_pending)}</td></tr>
                        <tr><th>"verified"</th><td data-stat="tasks_verified">{n(|s| s.tasks_verified)}</td></tr>
                        <tr><th>"mismatched (escalated)"</th><td data-stat="mismatched">{n(|s| s.mismatched_tasks)}</td></tr>
                        <tr><th>"dead-lettered"</th><td data-stat="tasks_dead_lettered">{n(|s| s.tasks_dead_lettered)}</td></tr>
                    </table>
                    <h3>"Workers by tier and class"</h3>
                    <table>
                        <thead><tr><th>"backend"</th><th>"tier"</th><th>"workers"</th></tr></thead>
                        <tbody>
                            {move || {
                                st().tiers
                                    .into_iter()
                                    .map(|t| view! { <tr><td>{t.backend}</td><td>{t.tier}</td><td>{t.workers}</td></tr> })
                                    .collect_view()
                            }}
                        </tbody>
                    </table>
                </div>
                <div>
                    <h3>"Verification"</h3>
                    <table class="kv">
                        <tr><th>"offers sent"</th><td>{n(|s| s.offers)}</td></tr>
                        <tr><th>"results received"</th><td>{n(|s| s.results)}</td></tr>
                        <tr><th>"timeouts"</th><td>{n(|s| s.timeouts)}</td></tr>
                        <tr><th>"stale results refused"</th><td>{n(|s| s.stale_results)}</td></tr>
                        <tr><th>"workers slashed"</th><td data-stat="slashed">{n(|s| s.slashed)}</td></tr>
                    </table>
                    <h3>"Shadow check (against ground truth)"</h3>
                    <table class="kv">
                        {move || {
                            let s = live.shadow.get().unwrap_or_default();
                            view! {
                                <tr><th>"compared"</th><td>{s.compared}</td></tr>
                                <tr><th>"matched"</th><td>{s.matched}</td></tr>
                                <tr><th>"mismatched"</th><td>{s.mismatched}</td></tr>
                                <tr><th>"false positives"</th><td>{s.false_positives}</td></tr>
                                <tr><th>"false negatives"</th><td>{s.false_negatives}</td></tr>
                            }
                        }}
                    </table>
                    <h3>"Ledger"</h3>
                    <table class="kv">
                        <tr><th>"height"</th><td data-stat="ledger_height">{n(|s| s.ledger_height)}</td></tr>
                        <tr><th>"digest"</th><td class="mono">{move || st().ledger_digest.chars().take(16).collect::<String>()}</td></tr>
                        <tr><th>"up"</th><td>{move || format!("{} s", st().uptime_ms / 1000)}</td></tr>
                    </table>
                </div>
            </div>
            <super::consensus::Consensus />
            <Feed />
        </section>
    }
}
