//! Every worker the coordinator knows, a page at a time, sorted by the
//! coordinator (the table never holds the whole swarm: 10 000 workers are
//! 200 pages), and the leaderboard.

use leptos::prelude::*;

use crate::api::{self, pb};
use crate::app::live;
use crate::view_model::{ago, group_thousands, ppm_percent};

/// Rows on one page of the table.
const PAGE_SIZE: u32 = 50;

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
    fn order(self) -> pb::WorkerOrder {
        match self {
            Column::Id => pb::WorkerOrder::Id,
            Column::Backend => pb::WorkerOrder::Backend,
            Column::Tier => pb::WorkerOrder::Tier,
            Column::Speed => pb::WorkerOrder::Mflops,
            Column::Credibility => pb::WorkerOrder::Credibility,
            Column::Done => pb::WorkerOrder::Agreed,
            Column::Accuracy => pb::WorkerOrder::EpochAccuracy,
            Column::InFlight => pb::WorkerOrder::InFlight,
            Column::Seen => pb::WorkerOrder::LastSeen,
        }
    }
}

fn row(w: &pb::Worker, now: u64) -> impl IntoView {
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
}

/// The workers page.
#[component]
pub fn WorkersPage() -> impl IntoView {
    let live = live();
    let sort = RwSignal::new((Column::Done, true));
    // The tokens of the pages before this one (to go back), this page's,
    // and the next one's (empty: the last page).
    let before: RwSignal<Vec<String>> = RwSignal::new(Vec::new());
    let current = RwSignal::new(String::new());
    let next = RwSignal::new(String::new());
    let rows: RwSignal<Vec<pb::Worker>> = RwSignal::new(Vec::new());
    let total = RwSignal::new(0u32);
    let asked = StoredValue::new(0u64);
    // The page on screen, fetched again when the sort, the page or the
    // workers change; a late answer to an older question is dropped.
    Effect::new(move |_| {
        live.workers_changed.track();
        let (col, descending) = sort.get();
        let page_token = current.get();
        asked.update_value(|n| *n += 1);
        let mine = asked.get_value();
        leptos::task::spawn_local(async move {
            let request =
                pb::ListWorkersRequest { page_size: PAGE_SIZE, page_token, order_by: col.order().into(), descending };
            let Ok(r) = api::client().list_workers(api::request(request)).await else { return };
            if asked.get_value() != mine {
                return;
            }
            let r = r.into_inner();
            total.set(r.total_size);
            next.set(r.next_page_token);
            rows.set(r.workers);
        });
    });
    let header = move |label: &'static str, col: Column| {
        view! {
            <th class="sortable" on:click=move |_| {
                sort.update(|(c, desc)| if *c == col { *desc = !*desc } else { *c = col; *desc = true });
                before.set(Vec::new());
                current.set(String::new());
            }>
                {label}
                {move || match sort.get() {
                    (c, false) if c == col => " ▲",
                    (c, true) if c == col => " ▼",
                    _ => "",
                }}
            </th>
        }
    };
    let back = move |_| {
        let mut previous = String::new();
        before.update(|b| previous = b.pop().unwrap_or_default());
        current.set(previous);
    };
    let forward = move |_| {
        let following = next.get_untracked();
        if !following.is_empty() {
            before.update(|b| b.push(current.get_untracked()));
            current.set(following);
        }
    };
    let first_row = move || before.with(Vec::len) as u32 * PAGE_SIZE;
    view! {
        <section>
            <h2>"Workers"</h2>
            <Show when=move || total.get() == 0>
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
                    <tbody>{move || { let now = live.now_ms.get(); rows.with(|r| r.iter().map(|w| row(w, now)).collect_view()) }}</tbody>
                </table>
            </div>
            <p class="pager">
                <button id="workers-back" disabled=move || before.with(Vec::is_empty) on:click=back>"‹ previous"</button>
                " "
                <span id="workers-range">
                    {move || {
                        let (from, n) = (first_row(), rows.with(Vec::len) as u32);
                        if n == 0 { "0".to_owned() } else { format!("{}–{} of {}", from + 1, from + n, group_thousands(u128::from(total.get()))) }
                    }}
                </span>
                " "
                <button id="workers-next" disabled=move || next.with(String::is_empty) on:click=forward>"next ›"</button>
            </p>
            <Leaderboard />
        </section>
    }
}

/// The ten contributors of all time with the most verified work, and the
/// teams they declared.
#[component]
fn Leaderboard() -> impl IntoView {
    let live = live();
    view! {
        <h3>"Leaderboard (verified work, all time)"</h3>
        <ol class="leaderboard">
            {move || {
                live.leaderboard
                    .get()
                    .into_iter()
                    .map(|v| {
                        let earned = crate::view_model::parse_amount(&v.earned).map_or_else(String::new, crate::view_model::tokens);
                        view! {
                            <li data-contributor=v.worker_id.clone()>
                                {(!v.display_name.is_empty()).then(|| view! { <b>{v.display_name.clone()}</b> " " })}
                                <span class="mono">{v.worker_id.clone()}</span>
                                {(!v.team.is_empty()).then(|| view! { " [" {v.team.clone()} "]" })}
                                " — " {v.agreed} " verified, " {earned} " tokens earned"
                                {v.connected.then_some(" · online")}
                            </li>
                        }
                    })
                    .collect_view()
            }}
        </ol>
        <Show when=move || live.teams.with(|t| !t.is_empty())>
            <h3>"Teams"</h3>
            <table class="teams">
                <thead><tr><th>"team"</th><th>"members"</th><th>"verified"</th><th>"earned (tokens)"</th></tr></thead>
                <tbody>
                    {move || {
                        live.teams
                            .get()
                            .into_iter()
                            .map(|t| {
                                let earned = crate::view_model::parse_amount(&t.earned).map_or_else(String::new, crate::view_model::tokens);
                                view! { <tr><td>{t.name}</td><td>{t.members}</td><td>{t.agreed}</td><td>{earned}</td></tr> }
                            })
                            .collect_view()
                    }}
                </tbody>
            </table>
        </Show>
    }
}
