//! `cargo xtask bench …`: the criterion benchmarks and the tables printed
//! from them, the GPU benchmark natively and in a tab, and the benchmarks
//! that drive Chromium.

use std::path::{Path, PathBuf};

use crate::{
    browser_tmp, build_site, cargo, ensure_browser, ensure_lavapipe, ensure_node, ensure_playwright,
    ensure_wasm_bindgen, ensure_wasm_target, step, target_dir, Result, WASM_TARGET,
};

/// Runs the benchmarks `args` ask for.
pub(crate) fn bench(args: &[String]) -> Result {
    if args.iter().any(|a| a == "--browser") {
        return bench_browser();
    }
    if args.iter().any(|a| a == "--dashboard") {
        return bench_dashboard();
    }
    if args.iter().any(|a| a == "--peers") {
        return crate::peers::bench_peers(args);
    }
    if args.iter().any(|a| a == "--gpu") {
        let rest: Vec<&String> = args.iter().filter(|a| *a != "--gpu").collect();
        return bench_gpu(&rest);
    }
    let mut c = cargo();
    c.args(["bench", "--locked", "-p", "shoal-core", "--benches", "--"]).args(args);
    step("criterion benchmarks", &mut c)?;
    print_wire_summary()?;
    for (name, bench) in [
        ("coordinator: one task replica, dispatch → ack → result → verify → credit, finished jobs evicted (1k workers, 1M tasks)", "replica_cycle_1k_workers_1M_tasks"),
        ("coordinator: the same, finished jobs kept in memory", "replica_cycle_without_eviction"),
    ] {
        let ns = mean_ns("coordinator", bench).ok_or_else(|| format!("no criterion estimate for coordinator/{bench}"))?;
        println!("| {name} | {:.2} µs | — |", ns / 1e3);
    }
    Ok(())
}

/// `shoal bench gpu` natively (ARGS go to it), then the same measurements
/// in headless Chromium on WebGPU, one after the other on this machine.
fn bench_gpu(args: &[&String]) -> Result {
    ensure_lavapipe()?;
    step(
        "shoal bench gpu (release, native)",
        cargo()
            .args(["run", "--release", "--locked", "-p", "shoal-native", "--bin", "shoal", "--", "bench", "gpu"])
            .args(args),
    )?;
    ensure_wasm_target()?;
    ensure_wasm_bindgen()?;
    ensure_browser()?;
    step(
        "the same in a browser tab (release, WebGPU in headless Chromium)",
        cargo()
            .args(["test", "--release", "--locked", "-p", "shoal-compute", "--target", WASM_TARGET, "--test", "web"])
            .args(["--", "--nocapture", "the_gpu_benchmark_runs_on_webgpu"])
            .env("SHOAL_GPU_BENCH_BUDGET", "1")
            .env("CHROMEDRIVER", "/usr/bin/chromedriver")
            .env("WASM_BINDGEN_TEST_TIMEOUT", "900")
            .env("TMPDIR", browser_tmp()),
    )
}

/// The browser worker's benchmark: a Chromium tab on WebGPU vs native
/// workers on lavapipe and on the CPU, the same jobs, one worker at a time.
fn bench_browser() -> Result {
    ensure_lavapipe()?;
    // The whole site: the coordinator refuses a dist folder without the dashboard.
    bench_in_chromium("browser worker benchmark", "browser", "browser_worker_benchmark", build_site, false)
}

/// The dashboard's budgets: first-load bytes, time to first render and
/// data, idle CPU over a minute, in headless Chromium against `shoal up`.
fn bench_dashboard() -> Result {
    bench_in_chromium("dashboard budgets", "dashboard", "dashboard_budgets", build_site, true)
}

/// Runs one ignored benchmark test (release) that drives Chromium, after
/// building what it serves with `build` into a fresh folder (`embed`: also
/// into the `shoal` the test runs).
fn bench_in_chromium(name: &str, test: &str, filter: &str, build: fn(&Path) -> Result, embed: bool) -> Result {
    ensure_wasm_target()?;
    ensure_wasm_bindgen()?;
    ensure_node()?;
    ensure_browser()?;
    let node_modules = ensure_playwright()?;
    let site = target_dir().join("shoal-bench-site");
    // Fresh each time: no file of an older build may be measured.
    let _ = std::fs::remove_dir_all(&site);
    build(&site)?;
    let mut c = cargo();
    if embed {
        c.env("SHOAL_EMBED_SITE", &site);
    }
    step(
        &format!("{name} (release)"),
        c.args(["test", "--release", "--locked", "-p", "shoal-tests", "--test", test, "--"])
            // One at a time: a benchmark measures CPU, and another beside it would share it.
            .args(["--ignored", "--nocapture", "--test-threads=1", filter])
            .env("SHOAL_WEB_DIST", &site)
            .env("SHOAL_NODE_PATH", &node_modules)
            .env("TMPDIR", browser_tmp()),
    )
}

/// Where criterion wrote its estimates.
fn criterion_dir() -> PathBuf {
    target_dir().join("criterion")
}

/// The mean time in nanoseconds of one benchmark of this run.
pub(crate) fn mean_ns(group: &str, bench: &str) -> Option<f64> {
    let path = criterion_dir().join(group).join(bench).join("new").join("estimates.json");
    let json = std::fs::read_to_string(path).ok()?;
    let at = json.find("\"mean\"")?;
    let rest = &json[at..];
    let pe = rest.find("\"point_estimate\":")? + "\"point_estimate\":".len();
    let num: String =
        rest[pe..].chars().take_while(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+')).collect();
    num.parse().ok()
}

/// The README's benchmark table, from this run's criterion estimates.
fn print_wire_summary() -> Result {
    const MIB: f64 = 1_048_576.0;
    const SMALL: f64 = 10_000.0;
    let get = |g: &str, b: &str| mean_ns(g, b).ok_or_else(|| format!("no criterion estimate for {g}/{b}"));
    let memcpy = get("attachment_1MiB", "memcpy")?;
    let memcpy_alloc = get("attachment_1MiB", "memcpy_fresh_alloc")?;
    println!("\n| benchmark | result | vs. memcpy of the same bytes |\n|---|---|---|");
    for (name, bench) in [
        ("decode 16-byte frames", "decode_16B"),
        ("encode 16-byte frames", "encode_16B"),
        ("decode typed heartbeat messages (postcard + validation)", "decode_heartbeat_messages"),
    ] {
        let ns = get("small_frames", bench)?;
        println!("| {name} | {:.1} M frames/s | — |", SMALL / ns * 1e3);
    }
    let gbps = |ns: f64| MIB / ns;
    println!("| memcpy 1 MiB into a reused buffer | {:.1} GB/s | 1.00 |", gbps(memcpy));
    println!(
        "| memcpy 1 MiB into a fresh allocation | {:.1} GB/s | {:.2} |",
        gbps(memcpy_alloc),
        memcpy / memcpy_alloc
    );
    for (name, bench) in [
        ("decode 1 MiB attachment, whole chunk (zero-copy)", "decode_whole_chunk"),
        ("decode 1 MiB attachment, 64 KiB chunks (one copy)", "decode_split/65536"),
        ("decode 1 MiB attachment, 16 KiB chunks (one copy)", "decode_split/16384"),
        ("encode 1 MiB attachment (one copy)", "encode"),
    ] {
        let ns = get("attachment_1MiB", bench)?;
        println!("| {name} | {:.1} GB/s | {:.2} |", gbps(ns), memcpy / ns);
    }
    Ok(())
}
