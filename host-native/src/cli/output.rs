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

/// How a task ended, as `summary.json` and the JSON outputs name it.
fn outcome_kind(o: &pb::TaskOutcome) -> &'static str {
    match o.kind() {
        pb::task_outcome::Kind::Verified => "verified",
        pb::task_outcome::Kind::DeadLettered => "dead_lettered",
        pb::task_outcome::Kind::Cancelled => "cancelled",
    }
}

/// One task's line in `summary.json`.
pub(super) fn outcome_summary(o: &pb::TaskOutcome) -> serde_json::Value {
    serde_json::json!({
        "index": o.index,
        "kind": outcome_kind(o),
        "digest": o.digest,
        "agreed": o.agreed,
        "outvoted": o.outvoted,
        "reason": o.reason,
    })
}

/// `shoal job status`.
pub(super) fn print_job_status(s: &pb::JobStatus, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({"job_id": s.job_id, "name": s.name, "tasks": s.tasks, "verified": s.verified,
                "dead_lettered": s.dead_lettered, "cancelled": s.cancelled, "finished": s.finished})
        );
    } else {
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

/// `shoal workers`.
pub(super) fn print_workers(list: &[pb::Worker], json: bool) -> Result<()> {
    if json {
        let rows: Vec<_> = list
            .iter()
            .map(|w| {
                serde_json::json!({"id": w.id, "backend": w.backend, "tier": w.tier, "mflops": w.mflops,
                "credibility_ppm": w.credibility_ppm, "in_flight": w.in_flight, "agreed": w.agreed})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
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
    Ok(())
}

/// `shoal epochs`.
pub(super) fn print_epochs(list: &[pb::Epoch], json: bool) -> Result<()> {
    if json {
        let rows: Vec<_> = list
            .iter()
            .map(|e| {
                serde_json::json!({"epoch": e.epoch, "reward": e.reward, "operator_cut": e.operator_cut,
                "carried_out": e.carried_out, "digest": e.digest,
                "payouts": e.payouts.iter().map(|p| serde_json::json!({"worker": p.worker, "amount": p.amount,
                    "bounty": p.bounty, "tasks": p.tasks})).collect::<Vec<_>>()})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    for e in list {
        println!(
            "epoch {}  reward {}  operator {}  carried {}  digest {}",
            e.epoch, e.reward, e.operator_cut, e.carried_out, e.digest
        );
        for p in &e.payouts {
            println!("  {:<24} {:>28} (+{} bounty)  {} tasks", p.worker, p.amount, p.bounty, p.tasks);
        }
    }
    Ok(())
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
