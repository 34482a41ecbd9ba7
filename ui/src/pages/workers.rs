//! Every worker the coordinator knows, sortable, and the leaderboard.

use std::cmp::Ordering;

use leptos::prelude::*;

use crate::api::pb;
use crate::app::live;
use crate::view_model::{ago, group_thousands, ppm_percent};

/// What the table is sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    Id,
    Backend,
    Tier,
    Speed,
    Credibility,
    Done,
    Accuracy,
    InFlight,
    Seen,
}

impl Column {
    fn compare(self, a: &pb::Worker, b: &pb::Worker) -> Ordering {
        match self {
            Column::Id => a.id.cmp(&b.id),
            Column::Backend => a.backend.cmp(&b.backend),
            Column::Tier => a.tier.cmp(&b.tier),
            Column::Speed => a.mflops.cmp(&b.mflops),
            Column::Credibility => a.credibility_ppm.cmp(&b.credibility_ppm),
            Column::Done => a.agreed.cmp(&b.agreed),
            Column::Accuracy => a.epoch_accuracy_ppm.cmp(&b.epoch_accuracy_ppm),
            Column::InFlight => a.in_flight.cmp(&b.in_flight),
            Column::Seen => a.last_seen_ms.cmp(&b.last_seen_ms),
        }
    }
}

/// The workers page.
#[component]
pub fn WorkersPage() -> impl IntoView {
    let live = live();
    let sort = RwSignal::new((Column::Done, false));
    let header = move |label: &'static str, col: Column| {
        view! {
            <th class="sortable" on:click=move |_| sort.update(|(c, asc)| {
                if *c == col { *asc = !*asc } else { *c = col; *asc = false }
            })>
                {label}
                {move || match sort.get() {
                    (c, true) if c == col => " ▲",
                    (c, false) if c == col => " ▼",
                    _ => "",
                }}
            </th>
        }
    };
    let rows = move || {
        let (col, asc) = sort.get();
        let mut w = live.workers.get();
        w.sort_by(|a, b| if asc { col.compare(a, b) } else { col.compare(b, a) }.then_with(|| a.id.cmp(&b.id)));
        let now = live.now_ms.get();
        w.into_iter()
            .map(|w| {
                view! {
                    <tr data-worker=w.id.clone() class:offline=!w.connected class:slashed=w.slashed>
                        <td class="mono">{w.id.clone()}</td>
                        <td>{w.backend.clone()}</td>
                        <td>{if w.tier == 0 { "—".to_owned() } else { w.tier.to_string() }}</td>
                        <td>{group_thousands(u128::from(w.mflops))}</td>
                        <td>{ppm_percent(w.credibility_ppm)}</td>
                        <td data-col="done">{w.agreed}</td>
                        <td data-col="accuracy">{w.epoch_accuracy_ppm.map_or_else(|| "—".to_owned(), ppm_percent)}</td>
                        <td>{w.in_flight}</td>
                        <td>{ago(now, w.last_seen_ms)}</td>
                        <td>{if w.connected { "yes" } else { "no" }}</td>
                        <td>{if w.slashed { "SLASHED" } else { "" }}</td>
                    </tr>
                }
            })
            .collect_view()
    };
    view! {
        <section>
            <h2>"Workers"</h2>
            <Show when=move || live.workers.with(Vec::is_empty)>
                <p class="empty">"No worker has joined yet."</p>
            </Show>
            <div class="scroll">
                <table class="workers">
                    <thead>
                        <tr>
                            {header("worker", Column::Id)}
                            {header("class", Column::Backend)}
                            {header("tier", Column::Tier)}
                            {header("MFLOPS", Column::Speed)}
                            {header("credibility", Column::Credibility)}
                            {header("tasks done", Column::Done)}
                            {header("accuracy (epoch)", Column::Accuracy)}
                            {header("in flight", Column::InFlight)}
                            {header("last heartbeat", Column::Seen)}
                            <th>"connected"</th>
                            <th>"slashed"</th>
                        </tr>
                    </thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
            <h3>"Leaderboard (verified work, all time)"</h3>
            <ol class="leaderboard">
                {move || {
                    live.leaderboard
                        .get()
                        .into_iter()
                        .take(10)
                        .map(|w| view! { <li><span class="mono">{w.id}</span> " — " {w.agreed} " verified"</li> })
                        .collect_view()
                }}
            </ol>
        </section>
    }
}
