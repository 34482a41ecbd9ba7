//! How the client commands print: tables for people, JSON for programs,
//! a progress bar, the summary of result files and the demo image.

use anyhow::Result;
use shoal_core::kernels::mandelbrot::{escape_shade, ImageLayout, MandelbrotParams};

use crate::grpc::pb;

/// The bar `--wait` and `shoal up` show while a job runs.
pub(super) fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "  {spinner} [{bar:40}] {pos}/{len} tasks ended ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// An API message as proto3 JSON (pbjson, generated from `shoal.proto`:
/// the same field names, enums by name, 64-bit numbers as strings).
pub(super) fn print_json<T: serde::Serialize>(message: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(message)?);
    Ok(())
}

/// How a task ended, as `summary.json` and the lines name it.
fn outcome_state(o: &pb::TaskOutcome) -> &'static str {
    match o.state() {
        pb::TaskState::Verified => "verified",
        pb::TaskState::DeadLettered => "dead_lettered",
        pb::TaskState::Cancelled => "cancelled",
        pb::TaskState::Unspecified => "unknown",
    }
}

/// One task's line in `summary.json`.
pub(super) fn outcome_summary(o: &pb::TaskOutcome) -> serde_json::Value {
    serde_json::json!({
        "index": o.index,
        "kind": outcome_state(o),
        "digest": o.digest,
        "agreed": o.agreed,
        "outvoted": o.outvoted,
        "reason": o.reason,
    })
}

/// One task's line as `shoal job watch` prints it.
pub(super) fn outcome_line(o: &pb::TaskOutcome) -> String {
    let times = match &o.polo {
        Some(p) => format!(
            "  queued {} ms, staged {} ms, running {} ms, polo {} (cpu bonus {:.2}, efficiency {:.2})",
            o.queued_ms, o.staged_ms, o.running_ms, p.reward, p.cpu_bonus, p.efficiency
        ),
        None => String::new(),
    };
    match o.state() {
        pb::TaskState::Verified => {
            format!("task {:>6} verified  {}  agreed {}{times}", o.index, o.digest, o.agreed.join(","))
        }
        _ => format!("task {:>6} {}  {}{times}", o.index, outcome_state(o), o.reason),
    }
}

/// `shoal status`.
pub(super) fn print_status(s: &pb::GetSwarmStatusResponse) {
    println!("coordinator  {} (up {} s)", s.version, s.uptime_ms / 1000);
    println!("workers      {} connected, {} admitted", s.workers, s.workers_admitted);
    for t in &s.tiers {
        println!("             {} tier {}: {}", t.backend, t.tier, t.workers);
    }
    println!("jobs         {} open", s.jobs_open);
    println!(
        "tasks        {} pending, {} verified, {} dead-lettered, {} with mismatches",
        s.tasks_pending, s.tasks_verified, s.tasks_dead_lettered, s.mismatched_tasks
    );
    println!("workers' lies  {} slashed; {} timeouts, {} stale results", s.slashed, s.timeouts, s.stale_results);
    println!("epoch        {} settled", s.epoch);
    println!("ledger       height {} digest {}", s.ledger_height, s.ledger_digest);
}

/// `shoal job list` and `shoal job status`.
pub(super) fn print_jobs(jobs: &[pb::Job]) {
    for s in jobs {
        println!(
            "{} {:?}: {}/{} verified, {} dead-lettered, {} cancelled{}",
            s.job_id,
            s.name,
            s.verified,
            s.tasks,
            s.dead_lettered,
            s.cancelled,
            if s.finished { " (finished)" } else { "" }
        );
    }
}

/// `shoal workers` and `shoal leaderboard`.
pub(super) fn print_workers(list: &[pb::Worker]) {
    println!(
        "{:<24} {:<14} {:>4} {:>10} {:>11} {:>9} {:>8}",
        "id", "backend", "tier", "MFLOPS", "credibility", "in flight", "agreed"
    );
    for w in list {
        println!(
            "{:<24} {:<14} {:>4} {:>10} {:>10.4} {:>9} {:>8}",
            w.id,
            w.backend,
            w.tier,
            w.mflops,
            f64::from(w.credibility_ppm) / 1e6,
            w.in_flight,
            w.agreed
        );
    }
}

/// `shoal epoch list` and `shoal epoch close`.
pub(super) fn print_epochs(list: &[pb::Epoch]) {
    for e in list {
        println!(
            "epoch {}  reward {}  operator {}  carried {}  digest {}",
            e.epoch, e.reward, e.operator_cut, e.carried_out, e.digest
        );
        for p in &e.payouts {
            println!("  {:<24} {:>28} (+{} bounty)  {} tasks", p.worker, p.amount, p.bounty, p.tasks);
        }
    }
}

/// A Mandelbrot job's image as a binary PGM (inside the set black, the
/// rest brighter the later it escaped); None when the tiles do not make
/// one image of at most 16 384 pixels a side.
pub(super) fn mandelbrot_pgm(tiles: &[MandelbrotParams], outcomes: &[pb::TaskOutcome]) -> Option<Vec<u8>> {
    let layout = ImageLayout::of(tiles, 16_384)?;
    let (width, height) = (layout.width as usize, layout.height as usize);
    let mut img = vec![0u8; width * height];
    for o in outcomes {
        let (Some(out), Some(t)) = (o.outputs.first(), tiles.get(o.index as usize)) else { continue };
        let (tx, ty) = layout.offset(t);
        for y in 0..t.height {
            for x in 0..t.width {
                let i = ((y * t.width + x) * 4) as usize;
                let count = out.get(i..i + 4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                let (px, py) = ((tx + x) as usize, (ty + y) as usize);
                if px < width && py < height {
                    img[py * width + px] = escape_shade(count, t.max_iter).map_or(0, |s| (255.0 * s) as u8);
                }
            }
        }
    }
    let mut pgm = format!("P5\n{width} {height}\n255\n").into_bytes();
    pgm.extend_from_slice(&img);
    Some(pgm)
}
