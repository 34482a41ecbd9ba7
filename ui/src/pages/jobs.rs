//! Jobs: progress of each, and for one job its tasks — who agreed, who was
//! outvoted, why a task was dead-lettered — with a Mandelbrot job's image
//! assembled tile by tile as the tiles are verified.

use leptos::html::Canvas;
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::{Clamped, JsCast};

use crate::api::{self, pb};
use crate::app::live;
use crate::refresh::job_kernels;
use shoal_core::kernels::mandelbrot::{ImageLayout, MandelbrotParams};

use crate::view_model::mandelbrot_rgba;

/// Task rows shown for one job (the rest are counted).
const ROWS: usize = 200;

/// Where the tiles of a Mandelbrot job go (the core's layout, shared with
/// the CLI's image).
#[derive(Clone, Debug, PartialEq)]
struct Layout {
    tiles: Vec<MandelbrotParams>,
    image: ImageLayout,
}

impl Layout {
    /// The layout when every task of the job is a Mandelbrot tile of one step.
    fn of(kernels: &[pb::Kernel]) -> Option<Layout> {
        let tiles: Vec<MandelbrotParams> = kernels
            .iter()
            .map(|k| match &k.kind {
                Some(pb::kernel::Kind::Mandelbrot(m)) => Some(api::mandelbrot_params(m)),
                _ => None,
            })
            .collect::<Option<_>>()?;
        let image = ImageLayout::of(&tiles, 8192)?;
        Some(Layout { tiles, image })
    }
}

fn draw_tile(canvas: &web_sys::HtmlCanvasElement, layout: &Layout, index: u32, iterations: &[u8]) -> bool {
    let Some(t) = layout.tiles.get(index as usize) else { return false };
    if iterations.len() != (t.width * t.height * 4) as usize {
        return false;
    }
    let Ok(Some(ctx)) = canvas.get_context("2d") else { return false };
    let Ok(ctx) = ctx.dyn_into::<web_sys::CanvasRenderingContext2d>() else { return false };
    let rgba = mandelbrot_rgba(iterations, t.max_iter);
    let Ok(img) = web_sys::ImageData::new_with_u8_clamped_array_and_sh(Clamped(&rgba), t.width, t.height) else {
        return false;
    };
    let (x, y) = layout.image.offset(t);
    ctx.put_image_data(&img, f64::from(x), f64::from(y)).is_ok()
}

/// What following one job's results updates.
struct Follow {
    generation: StoredValue<u64>,
    mine: u64,
    canvas: NodeRef<Canvas>,
    outcomes: RwSignal<Vec<pb::TaskOutcome>>,
    pending: RwSignal<Vec<pb::PendingTask>>,
    tiles_drawn: RwSignal<u32>,
    layout: RwSignal<Option<Layout>>,
}

/// Lists the job's pending tasks every second (how long each has been
/// queued, staged, running), until none is left or another job is picked.
async fn poll_pending(job: String, generation: StoredValue<u64>, mine: u64, pending: RwSignal<Vec<pb::PendingTask>>) {
    while generation.get_value() == mine {
        let request =
            pb::ListPendingTasksRequest { job_id: job.clone(), page_size: ROWS as u32, page_token: String::new() };
        let Ok(r) = api::client().list_pending_tasks(api::request(request)).await else { return };
        let tasks = r.into_inner().tasks;
        let done = tasks.is_empty();
        if generation.get_value() == mine {
            pending.set(tasks);
        }
        if done {
            return;
        }
        gloo_timers::future::TimeoutFuture::new(1_000).await;
    }
}

/// One row of the pending tasks' table.
fn pending_row(t: &pb::PendingTask) -> impl IntoView {
    let state = if t.replicas_running > 0 { format!("{} running", t.replicas_running) } else { "queued".to_owned() };
    view! {
        <tr data-pending=t.index>
            <td>{t.index}</td>
            <td>{state}</td>
            <td class="num">{t.queued_ms}</td>
            <td class="num">{t.staged_ms}</td>
            <td class="num">{t.running_ms}</td>
            <td class="num">{t.results}</td>
            <td class="num">{t.attempts}</td>
        </tr>
    }
}

/// Streams a job's results (following until it ends), drawing Mandelbrot
/// tiles as they arrive; stops when another job is selected.
async fn follow(job: String, f: Follow) {
    let kernels = job_kernels(&job).await.unwrap_or_default();
    let lay = Layout::of(&kernels);
    if let (Some(l), Some(c)) = (&lay, f.canvas.get_untracked()) {
        c.set_width(l.image.width);
        c.set_height(l.image.height);
    }
    f.layout.set(lay.clone());
    let request = pb::StreamJobResultsRequest { job_id: job, follow: true, omit_outputs: lay.is_none() };
    let Ok(stream) = api::client().stream_job_results(api::request(request)).await else { return };
    let mut stream = stream.into_inner();
    while let Ok(Some(m)) = stream.message().await {
        if f.generation.get_value() != f.mine {
            return;
        }
        let Some(mut o) = m.outcome else { continue };
        if let (Some(l), Some(c)) = (&lay, f.canvas.get_untracked()) {
            if o.state() == pb::TaskState::Verified
                && o.outputs.first().is_some_and(|out| draw_tile(&c, l, o.index, out))
            {
                f.tiles_drawn.update(|n| *n += 1);
            }
        }
        o.outputs.clear();
        // Ended: no longer pending, whatever the last listing said.
        f.pending.update(|v| v.retain(|t| t.index != o.index));
        f.outcomes.update(|v| v.push(o));
    }
}

/// A task's polo score with its breakdown, for the score's tooltip.
fn polo_breakdown(o: &pb::TaskOutcome) -> String {
    o.polo
        .as_ref()
        .map(|p| {
            format!(
                "(1 + cpu bonus {:.3} [{:.2} CPU min]) × efficiency {:.3} (idle −{:.3}, staged −{:.3}) = {:.3} → {}",
                p.cpu_bonus, p.cpu_minutes, p.efficiency, p.idle_factor, p.staged_factor, p.raw, p.reward
            )
        })
        .unwrap_or_default()
}

/// One row of the task table: its outcome, its lifecycle, its polo score.
fn task_row(o: &pb::TaskOutcome) -> impl IntoView {
    let kind = match o.state() {
        pb::TaskState::Verified => "verified",
        pb::TaskState::DeadLettered => "dead-lettered",
        pb::TaskState::Cancelled => "cancelled",
        pb::TaskState::Unspecified => "?",
    };
    view! {
        <tr>
            <td>{o.index}</td>
            <td>{kind}</td>
            <td class="mono">{o.digest.chars().take(12).collect::<String>()}</td>
            <td class="mono">{o.agreed.join(", ")}</td>
            <td class="mono">{o.outvoted.join(", ")}</td>
            <td class="num" data-queued=o.queued_ms>{o.queued_ms}</td>
            <td class="num">{o.staged_ms}</td>
            <td class="num">{o.running_ms}</td>
            <td class="num" title=polo_breakdown(o)>{o.polo.as_ref().map(|p| p.reward.to_string()).unwrap_or_default()}</td>
            <td>{o.reason.clone()}</td>
        </tr>
    }
}

/// The jobs page.
#[component]
pub fn JobsPage() -> impl IntoView {
    let live = live();
    let selected: RwSignal<Option<String>> = RwSignal::new(None);
    let outcomes: RwSignal<Vec<pb::TaskOutcome>> = RwSignal::new(Vec::new());
    let pending: RwSignal<Vec<pb::PendingTask>> = RwSignal::new(Vec::new());
    let tiles_drawn = RwSignal::new(0u32);
    let layout: RwSignal<Option<Layout>> = RwSignal::new(None);
    let generation = StoredValue::new(0u64);
    let canvas = NodeRef::<Canvas>::new();

    // The newest job is shown until the user picks one.
    Effect::new(move |_| {
        if selected.with(Option::is_none) {
            if let Some(j) = live.jobs.with(|j| j.first().map(|j| j.job_id.clone())) {
                selected.set(Some(j));
            }
        }
    });

    // Follow the selected job's results.
    Effect::new(move |_| {
        let Some(job) = selected.get() else { return };
        generation.update_value(|g| *g += 1);
        let mine = generation.get_value();
        outcomes.set(Vec::new());
        pending.set(Vec::new());
        tiles_drawn.set(0);
        layout.set(None);
        spawn_local(poll_pending(job.clone(), generation, mine, pending));
        spawn_local(follow(job, Follow { generation, mine, canvas, outcomes, pending, tiles_drawn, layout }));
    });

    let job_rows = move || {
        live.jobs
            .get()
            .into_iter()
            .map(|j| {
                let id = j.job_id.clone();
                let pick = id.clone();
                let done = j.verified + j.dead_lettered + j.cancelled;
                let pct = if j.tasks == 0 { 100.0 } else { f64::from(done) * 100.0 / f64::from(j.tasks) };
                let name = if j.name.is_empty() { id.chars().take(8).collect() } else { j.name.clone() };
                let waiting = (!j.waiting.is_empty()).then(|| view! { <div class="job-waiting">"waiting: " {j.waiting.clone()}</div> });
                view! {
                    <li class="job" data-job=id.clone() class:selected=move || selected.get().as_deref() == Some(id.as_str())
                        on:click=move |_| selected.set(Some(pick.clone()))>
                        <div class="job-name">{name}</div>
                        <div class="bar"><div class="fill" style:width=format!("{pct:.1}%")></div></div>
                        <div class="job-counts">
                            {j.verified} " verified · " {j.dead_lettered} " dead-lettered · " {j.cancelled} " cancelled · "
                            {j.tasks} " tasks" {if j.finished { " · finished" } else { "" }}
                        </div>
                        {waiting}
                    </li>
                }
            })
            .collect_view()
    };

    let task_rows = move || outcomes.with(|v| v.iter().take(ROWS).map(task_row).collect_view());
    let pending_rows = move || pending.with(|v| v.iter().map(pending_row).collect_view());

    view! {
        <section>
            <h2>"Jobs"</h2>
            <Show when=move || live.jobs.with(Vec::is_empty)>
                <p class="empty">"No job yet. Submit one with " <code>"shoal submit --kernel sha256 --tasks 100"</code> "."</p>
            </Show>
            <ul class="jobs">{job_rows}</ul>
            <Show when=move || selected.with(Option::is_some)>
                <h3>"Tasks of " <span class="mono">{move || selected.get().unwrap_or_default()}</span></h3>
                <div class="mandelbrot" class:hidden=move || layout.with(Option::is_none)>
                    <canvas node_ref=canvas data-tiles=move || tiles_drawn.get().to_string()
                        data-total=move || layout.with(|l| l.as_ref().map_or(0, |l| l.tiles.len()).to_string())></canvas>
                    <div>{move || format!("{} of {} tiles verified and drawn", tiles_drawn.get(), layout.with(|l| l.as_ref().map_or(0, |l| l.tiles.len())))}</div>
                </div>
                <div class="scroll">
                    <table class="tasks">
                        <thead><tr><th>"task"</th><th>"outcome"</th><th>"digest"</th><th>"agreed"</th><th>"outvoted"</th><th>"queued ms"</th><th>"staged ms"</th><th>"running ms"</th><th>"polo"</th><th>"reason"</th></tr></thead>
                        <tbody>{task_rows}</tbody>
                    </table>
                </div>
                <p>{move || { let n = outcomes.with(Vec::len); if n > ROWS { format!("… and {} more", n - ROWS) } else { String::new() } }}</p>
                <Show when=move || pending.with(|v| !v.is_empty())>
                    <h3>"Pending tasks"</h3>
                    <div class="scroll">
                        <table class="tasks pending">
                            <thead><tr><th>"task"</th><th>"state"</th><th>"queued ms"</th><th>"staged ms"</th><th>"running ms"</th><th>"results"</th><th>"handed out"</th></tr></thead>
                            <tbody>{pending_rows}</tbody>
                        </table>
                    </div>
                </Show>
            </Show>
        </section>
    }
}
