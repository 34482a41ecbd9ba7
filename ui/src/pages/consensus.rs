//! The settlement consensus drawn on its diagram: every state of the
//! machine, its transitions, the current state lit, and what was agreed.

use leptos::prelude::*;

use crate::api::pb;
use crate::app::live;
use crate::view_model::{ago, edge, ring};

const W: f64 = 640.0;
const H: f64 = 320.0;
const NODE_W: f64 = 104.0;
const NODE_H: f64 = 26.0;

fn diagram(s: &pb::GetConsensusResponse) -> impl IntoView {
    let at = ring(s.states.len(), W, H, NODE_W / 2.0 + 4.0);
    let pos = |name: &str| s.states.iter().position(|x| x == name).map(|i| at[i]);
    let last = s.recent.last().map(|t| (t.from.clone(), t.to.clone()));
    let mut pairs: Vec<(String, String)> =
        s.table.iter().filter(|t| t.from != t.to).map(|t| (t.from.clone(), t.to.clone())).collect();
    pairs.sort();
    pairs.dedup();
    let edges = pairs
        .into_iter()
        .filter_map(|(from, to)| {
            let ((x1, y1), (x2, y2)) = edge(pos(&from)?, pos(&to)?, 20.0)?;
            let class = if last.as_ref() == Some(&(from.clone(), to.clone())) {
                "edge last"
            } else if from == s.state {
                "edge out"
            } else {
                "edge"
            };
            Some(view! { <line class=class x1=x1 y1=y1 x2=x2 y2=y2 marker-end="url(#arrow)" /> })
        })
        .collect_view();
    let nodes = s
        .states
        .iter()
        .zip(&at)
        .map(|(name, &(x, y))| {
            let current = *name == s.state;
            view! {
                <g class="node" class:current=current data-state=name.clone()>
                    <rect x=x - NODE_W / 2.0 y=y - NODE_H / 2.0 width=NODE_W height=NODE_H rx="6" />
                    <text x=x y=y + 4.0 text-anchor="middle">{name.replace('_', " ")}</text>
                </g>
            }
        })
        .collect_view();
    view! {
        <svg class="consensus" viewBox=format!("0 0 {W} {H}") role="img">
            <defs>
                <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse">
                    <path d="M 0 0 L 10 5 L 0 10 z" />
                </marker>
            </defs>
            {edges}
            {nodes}
        </svg>
    }
}

/// Where the machine spends its time: each state it entered, how often,
/// for how long in all and on average, and its share of the time.
fn time_per_state(s: &pb::GetConsensusResponse) -> impl IntoView {
    let total: u64 = s.time_per_state.iter().map(|t| t.total_ms).sum();
    let rows = s
        .time_per_state
        .iter()
        .filter(|t| t.entries > 0)
        .map(|t| {
            let share = (u128::from(t.total_ms) * 1000).checked_div(u128::from(total)).unwrap_or(0);
            let mean = t.total_ms.checked_div(t.entries).unwrap_or(0);
            view! {
                <tr data-state-time=t.state.clone()>
                    <td>{t.state.replace('_', " ")}</td>
                    <td class="num">{t.entries}</td>
                    <td class="num">{format!("{:.1} s", t.total_ms as f64 / 1000.0)}</td>
                    <td class="num">{format!("{mean} ms")}</td>
                    <td class="num">{format!("{}.{} %", share / 10, share % 10)}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="state-times">
            <thead><tr><th>"state"</th><th>"entries"</th><th>"time"</th><th>"mean stay"</th><th>"share"</th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

/// The settlement consensus section of the Swarm page.
#[component]
pub fn Consensus() -> impl IntoView {
    let live = live();
    view! {
        <h3>"Settlement consensus"</h3>
        {move || match live.consensus.get() {
            None => view! { <p class="empty">"Not reported yet."</p> }.into_any(),
            Some(s) => {
                let now = live.now_ms.get();
                let agreed = s.agreed.last().cloned();
                let agreed_epoch = agreed.as_ref().map(|a| a.epoch.to_string()).unwrap_or_default();
                view! {
                    <p>
                        "Each settled epoch's payout digest is agreed by the consensus machine before a settler acts on it. "
                        "State " <strong data-consensus-state=s.state.clone()>{s.state.replace('_', " ")}</strong>
                        " since " {ago(now, s.state_entered_ms)} " · " {s.transitions} " transitions · "
                        {s.rounds} " rounds agreed · " {s.waiting} " waiting"
                    </p>
                    <div class="scroll">{diagram(&s)}</div>
                    {time_per_state(&s)}
                    <p data-consensus-agreed=agreed_epoch>
                        {match agreed {
                            Some(a) => format!("Last agreed: epoch {} in round {}, digest {}…", a.epoch, a.round, a.digest.chars().take(16).collect::<String>()),
                            None => "No settlement agreed yet (none settled since the coordinator started).".to_owned(),
                        }}
                    </p>
                }
                .into_any()
            }
        }}
    }
}
