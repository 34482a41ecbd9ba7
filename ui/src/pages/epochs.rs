//! Epochs: what each paid, to whom, exactly (base units) and readably
//! (tokens), with the settlement digest a settler acts on.

use leptos::prelude::*;

use crate::app::live;
use crate::view_model::{parse_amount, ppm_percent, tokens};

fn amount(s: &str) -> String {
    parse_amount(s).map_or_else(|| format!("{s} (unreadable)"), tokens)
}

/// The epochs page.
#[component]
pub fn EpochsPage() -> impl IntoView {
    let live = live();
    view! {
        <section>
            <h2>"Epochs"</h2>
            <Show when=move || live.epochs.with(Vec::is_empty)>
                <p class="empty">"No epoch has been settled yet."</p>
            </Show>
            {move || {
                let mut epochs = live.epochs.get();
                epochs.sort_by_key(|e| std::cmp::Reverse(e.epoch));
                epochs
                    .into_iter()
                    .map(|e| {
                        view! {
                            <article class="epoch" data-epoch=e.epoch>
                                <h3>"Epoch " {e.epoch}</h3>
                                <table class="kv">
                                    <tr><th>"reward"</th><td>{amount(&e.reward)} " (" <span class="mono">{e.reward.clone()}</span> ")"</td></tr>
                                    <tr><th>"carried in"</th><td>{amount(&e.carried_in)}</td></tr>
                                    <tr><th>"forfeited by slashing"</th><td>{amount(&e.forfeited)}</td></tr>
                                    <tr><th>"operator cut"</th><td>{amount(&e.operator_cut)}</td></tr>
                                    <tr><th>"carried out"</th><td>{amount(&e.carried_out)}</td></tr>
                                    <tr><th>"settlement digest"</th><td class="mono">{e.digest.clone()}</td></tr>
                                    <tr><th>"settlement"</th><td data-col="settlement">{if e.settlement.is_empty() { "—".to_owned() } else { e.settlement.clone() }}</td></tr>
                                </table>
                                <div class="scroll">
                                    <table class="payouts">
                                        <thead><tr><th>"worker"</th><th>"paid to"</th><th>"amount (tokens)"</th><th>"base units"</th><th>"bounty"</th><th>"tasks"</th><th>"accuracy"</th><th>"bonus"</th></tr></thead>
                                        <tbody>
                                            {e.payouts
                                                .into_iter()
                                                .map(|p| view! {
                                                    <tr data-payout=p.worker.clone()>
                                                        <td class="mono">{p.worker.clone()}</td>
                                                        <td class="mono" data-col="address">{p.address.clone()}</td>
                                                        <td>{amount(&p.amount)}</td>
                                                        <td class="mono" data-col="base">{p.amount.clone()}</td>
                                                        <td>{amount(&p.bounty)}</td>
                                                        <td>{p.tasks}</td>
                                                        <td>{ppm_percent(p.accuracy_ppm)}</td>
                                                        <td>{if p.bonus { "yes" } else { "" }}</td>
                                                    </tr>
                                                })
                                                .collect_view()}
                                        </tbody>
                                    </table>
                                </div>
                            </article>
                        }
                    })
                    .collect_view()
            }}
        </section>
    }
}
