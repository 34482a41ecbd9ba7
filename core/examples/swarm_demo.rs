//! A seeded swarm, end to end through the real sans-I/O `Coordinator`.
//!
//! Ten simulated workers (one lies, one hangs, one drops its connection)
//! join by passing a benchmark the coordinator times itself; three jobs —
//! SHA-256 batches, f32 matrix multiplies and the tiles of a Mandelbrot
//! image — are split into tasks, each sent as real frames to two distinct
//! workers; disagreements escalate, liars are slashed, timeouts reassign,
//! and the epoch is settled in exact integer base units. The simulator
//! knows the truth, so it also says whether anything wrong was accepted.
//!
//! This is the `cargo xtask up` of Shoal until the coordinator service
//! exists: `cargo run --release -p shoal-core --example swarm_demo -- --seed 7`

use std::fmt::Write as _;

use bytes::Bytes;
use shoal_core::coordinator::rewards::TOKEN;
use shoal_core::coordinator::{JobSpec, TaskSpec};
use shoal_core::kernels::{KernelSpec, MandelbrotParams, MatmulParams, Sha256Params};
use shoal_core::sim::{run_keeping, Behaviour, SimConfig, WorkerGroup};

const TILE: u32 = 16;
const STEP: f64 = 0.05;
const MAX_ITER: u32 = 200;

fn main() {
    let mut seed = 7u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next().and_then(|v| v.parse().ok())) {
            ("--seed", Some(v)) => seed = v,
            _ => {
                eprintln!("usage: swarm_demo [--seed N]");
                std::process::exit(2);
            }
        }
    }
    let mut cfg = SimConfig::honest(seed, 0, 0);
    let group = |count, behaviour| WorkerGroup { mflops: 20_000, ..WorkerGroup::of(count, behaviour) };
    cfg.workers = vec![
        group(7, Behaviour::Honest),
        group(1, Behaviour::Liar(60)),
        group(1, Behaviour::Hanging(100)),
        group(1, Behaviour::Flaky(20)),
    ];
    cfg.coordinator.credibility.ringer_pct = 5;
    cfg.jobs = Some(jobs(seed));
    let (report, coord, job_ids) = run_keeping(cfg);

    println!("Shoal swarm demo (seed {seed}): 10 workers (7 honest, 1 liar, 1 that hangs, 1 flaky), redundancy 2");
    println!(
        "jobs:   {} tasks (8 sha256, 8 matmul_f32 64³, 12 mandelbrot tiles) in {:.1} s of simulated time",
        report.submitted,
        report.elapsed.0 as f64 / 1000.0
    );
    let s = &report.stats;
    println!(
        "verify: {}/{} tasks verified by quorum, {} dead-lettered; {} tasks saw disagreeing replicas, {} extra replicas",
        report.verified, report.submitted, report.dead_lettered, s.mismatched_tasks, s.escalations
    );
    println!(
        "watch:  {} offers, {} timeouts, {} replicas re-queued after a worker left, {} ringers ({} failed), {} workers slashed",
        s.offers, s.timeouts, s.requeued_on_leave, s.ringers, s.ringers_failed, report.slashed
    );
    println!("truth:  {} accepted results are wrong (the simulator checks every one)", report.wrong_accepted);
    if let Some(epoch) = coord.epochs().last() {
        println!(
            "epoch {}: pool {} tokens, operator cut {}, carried {} base units; books balance: {}",
            epoch.epoch,
            epoch.total_in() / TOKEN,
            epoch.operator_cut / TOKEN,
            epoch.carried_out,
            epoch.total_in() == epoch.total_out()
        );
        println!("\n  worker   tasks  accuracy  bonus  payout (tokens)");
        for p in &epoch.payouts {
            println!(
                "  {:<8} {:>5}  {:>7.2}%  {:<5}  {:>10.4}",
                p.worker.as_str(),
                p.tasks,
                f64::from(p.accuracy_ppm) / 10_000.0,
                if p.bonus { "yes" } else { "no" },
                (p.amount + p.bounty) as f64 / TOKEN as f64
            );
        }
        println!("  settlement digest {}", epoch.digest);
    }
    println!("\nmandelbrot, assembled from verified tiles:");
    let tiles: Vec<Option<Vec<u8>>> = coord
        .job_tasks(job_ids[2])
        .unwrap_or_default()
        .iter()
        .map(|t| coord.task_result(*t).map(|r| r.outputs[0].to_vec()))
        .collect();
    print!("{}", render(&tiles));
}

fn jobs(seed: u64) -> Vec<JobSpec> {
    let task = |kernel: KernelSpec, i: u64| {
        let inputs = kernel.seeded_inputs(seed ^ i).into_iter().map(Bytes::from).collect();
        TaskSpec { kernel, inputs }
    };
    let sha = (0..8).map(|i| task(KernelSpec::Sha256(Sha256Params { count: 256, message_len: 64 }), i)).collect();
    let mm = (0..8).map(|i| task(KernelSpec::MatmulF32(MatmulParams::square(64)), 100 + i)).collect();
    let mut tiles = Vec::new();
    for ty in 0..3u32 {
        for tx in 0..4u32 {
            let p = MandelbrotParams::from_plane(
                TILE,
                TILE,
                -2.2 + f64::from(tx * TILE) * STEP,
                -1.2 + f64::from(ty * TILE) * STEP,
                STEP,
                MAX_ITER,
            );
            tiles.push(task(KernelSpec::Mandelbrot(p), 0));
        }
    }
    vec![JobSpec::new(sha), JobSpec::new(mm), JobSpec::new(tiles)]
}

/// The image as text, two pixel rows per line; `?` where a tile is missing.
fn render(tiles: &[Option<Vec<u8>>]) -> String {
    let (w, h) = (4 * TILE, 3 * TILE);
    let shades: &[u8] = b" .:-=+*#%@";
    let mut s = String::new();
    for y in (0..h).step_by(2) {
        s.push_str("  ");
        for x in 0..w {
            let Some(Some(tile)) = tiles.get(((y / TILE) * 4 + x / TILE) as usize) else {
                s.push('?');
                continue;
            };
            let i = (((y % TILE) * TILE + x % TILE) * 4) as usize;
            let n = u32::from_le_bytes([tile[i], tile[i + 1], tile[i + 2], tile[i + 3]]);
            let c = if n >= MAX_ITER { b'@' } else { shades[(n as usize / 4).min(shades.len() - 2)] };
            s.push(c as char);
        }
        let _ = writeln!(s);
    }
    s
}
