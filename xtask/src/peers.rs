//! `cargo xtask bench --peers`: Shoal beside Ray and Dask and beside this
//! machine's own limits, every figure from one run.
//!
//! One round measures, one after the other: the background CPU load (before
//! each run below), single-stream loopback TCP (`iperf3`), and then Shoal's
//! service benchmarks (`shoal bench throughput|payload|latency --json`) and
//! the peers' equivalents (`xtask/peers/peers.py` in a virtual environment
//! pinned by `xtask/peers/requirements.txt`), Shoal first in even rounds and
//! the peers first in odd ones. The core's replica cost comes from its
//! criterion benchmark, run once before the rounds. The table printed at the
//! end takes each figure's median over the rounds whose background load was
//! under `--max-background` (percent of the machine), and every figure of
//! every round is written to `<target>/peers-bench.json`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::bench::mean_ns;
use crate::{apt_install, cargo, have, output_of, root, step, target_dir, Result};

/// The peers' workloads, as `peers.py` names them.
const PEER_WORKLOADS: [&str; 4] = ["tiny", "verified", "payload", "latency"];
/// Shoal's benchmarks that stand beside them.
const SHOAL_BENCHES: [&str; 3] = ["throughput", "payload", "latency"];

/// Options of one `--peers` run.
struct Options {
    rounds: usize,
    /// Percent of the machine's CPU busy before a run above which the run
    /// is left out of the medians.
    max_background: f64,
    /// Seconds of the iperf3 stream.
    iperf_secs: u32,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options { rounds: 1, max_background: 15.0, iperf_secs: 5 };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
            match a.as_str() {
                "--peers" => {}
                "--rounds" => o.rounds = parse(value("--rounds")?)?,
                "--max-background" => o.max_background = parse(value("--max-background")?)?,
                "--iperf-secs" => o.iperf_secs = parse(value("--iperf-secs")?)?,
                other => return Err(format!("bench --peers: unknown option `{other}`")),
            }
        }
        if o.rounds == 0 {
            return Err("--rounds must be at least 1".into());
        }
        Ok(o)
    }
}

fn parse<T: std::str::FromStr>(s: &str) -> Result<T> {
    s.parse().map_err(|_| format!("`{s}` is not a valid number"))
}

/// Runs the comparison and prints its table.
pub(crate) fn bench_peers(args: &[String]) -> Result {
    let o = Options::parse(args)?;
    let python = ensure_peers_python()?;
    if !have("iperf3") {
        apt_install(&["iperf3"])?;
    }
    step("shoal (release)", cargo().args(["build", "--release", "--locked", "-p", "shoal-native", "--bin", "shoal"]))?;
    let shoal = target_dir().join("release").join("shoal");
    let replica_ns = core_replica_ns()?;
    let mut rounds = Vec::new();
    for r in 0..o.rounds {
        eprintln!("\n== round {} of {} ==", r + 1, o.rounds);
        let mut round = serde_json::Map::new();
        round.insert("tcp".into(), measured(|| iperf(o.iperf_secs))?);
        let shoal_runs = |round: &mut serde_json::Map<String, Value>| -> Result {
            for b in SHOAL_BENCHES {
                round.insert(
                    format!("shoal_{b}"),
                    measured(|| json_of(Command::new(&shoal).args(["bench", b, "--json"])))?,
                );
            }
            Ok(())
        };
        let peer_runs = |round: &mut serde_json::Map<String, Value>| -> Result {
            for system in ["ray", "dask"] {
                for w in PEER_WORKLOADS {
                    let script = root().join("xtask").join("peers").join("peers.py");
                    let run = measured(|| json_of(Command::new(&python).arg(&script).args([system, w])))?;
                    round.insert(format!("{system}_{w}"), run);
                }
            }
            Ok(())
        };
        if r % 2 == 0 {
            shoal_runs(&mut round)?;
            peer_runs(&mut round)?;
        } else {
            peer_runs(&mut round)?;
            shoal_runs(&mut round)?;
        }
        rounds.push(Value::Object(round));
    }
    let report = json!({
        "date": output_of("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default().trim(),
        "cores": std::thread::available_parallelism().map_or(0, usize::from),
        "core_replica_ns": replica_ns,
        "max_background_percent": o.max_background,
        "rounds": rounds,
    });
    let out = target_dir().join("peers-bench.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap_or_default())
        .map_err(|e| format!("writing {}: {e}", out.display()))?;
    crate::peers_table::print(&report);
    println!("\n(every figure: {})", out.display());
    Ok(())
}

/// A Python with Ray, Dask and NumPy at the versions of
/// `xtask/peers/requirements.txt`: a virtual environment next to the build
/// outputs, made again when the requirements change.
fn ensure_peers_python() -> Result<PathBuf> {
    let venv = target_dir().join("shoal-peers-venv");
    let python = venv.join("bin").join("python");
    let requirements = root().join("xtask").join("peers").join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).map_err(|e| format!("{}: {e}", requirements.display()))?;
    let stamp = venv.join("shoal-requirements.txt");
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(python);
    }
    step("python virtual environment (peers)", Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    step(
        "Ray, Dask and NumPy at the pinned versions (once)",
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements),
    )?;
    std::fs::write(&stamp, wanted).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(python)
}

/// The core's replica cycle (dispatch → ack → result → verify → credit,
/// finished jobs evicted), in nanoseconds, from its criterion benchmark.
fn core_replica_ns() -> Result<f64> {
    const BENCH: &str = "replica_cycle_1k_workers_1M_tasks";
    step(
        "the core's replica cycle (criterion)",
        cargo().args(["bench", "--locked", "-p", "shoal-core", "--bench", "coordinator", "--"]).args([
            // The settings of the README's core table (a longer warm-up
            // outgrows the benchmark's queue limit).
            "--warm-up-time",
            "1",
            "--measurement-time",
            "4",
            "--noplot",
            BENCH,
        ]),
    )?;
    mean_ns("coordinator", BENCH).ok_or_else(|| format!("no criterion estimate for coordinator/{BENCH}"))
}

/// Runs `f` after measuring the background CPU load, and returns its
/// figures with the load beside them (`background_percent`).
fn measured(f: impl FnOnce() -> Result<Value>) -> Result<Value> {
    let background = busy_percent(Duration::from_secs(1));
    let mut v = f()?;
    if let Value::Object(m) = &mut v {
        m.insert("background_percent".into(), json!(background));
    }
    eprintln!("  {v}");
    Ok(v)
}

/// Percent of all CPUs busy over `window` (Linux `/proc/stat`; 0 elsewhere),
/// while this program only sleeps.
fn busy_percent(window: Duration) -> f64 {
    let sample = || -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
        let idle = cpu.get(3)? + cpu.get(4).copied().unwrap_or(0);
        Some((cpu.iter().sum(), idle))
    };
    let Some((t0, i0)) = sample() else { return 0.0 };
    std::thread::sleep(window);
    let Some((t1, i1)) = sample() else { return 0.0 };
    let total = t1.saturating_sub(t0).max(1);
    100.0 * total.saturating_sub(i1.saturating_sub(i0)) as f64 / total as f64
}

/// Runs `cmd` (its progress on our stderr) and parses its standard output
/// as JSON: the whole of it, else its last line that opens an object.
fn json_of(cmd: &mut Command) -> Result<Value> {
    let out = cmd.stderr(Stdio::inherit()).output().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if let Ok(v) = serde_json::from_str(&text) {
        return Ok(v);
    }
    let last = text.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or("");
    serde_json::from_str(last).map_err(|e| format!("{cmd:?} printed no JSON figures ({e}): {text}"))
}

/// Single-stream loopback TCP bandwidth, bytes per second, from `iperf3`.
fn iperf(secs: u32) -> Result<Value> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("a free port for iperf3: {e}"))?
        .port()
        .to_string();
    let mut server = Command::new("iperf3")
        .args(["-s", "-1", "-B", "127.0.0.1", "-p", &port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting iperf3 -s: {e}"))?;
    let mut client = None;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let v = json_of(Command::new("iperf3").args(["-c", "127.0.0.1", "-p", &port, "-J", "-t", &secs.to_string()]));
        if v.is_ok() {
            client = Some(v);
            break;
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    let v = client.ok_or("iperf3 could not reach its server on loopback")??;
    let bps =
        v.pointer("/end/sum_received/bits_per_second").and_then(Value::as_f64).ok_or("iperf3: no sum_received")?;
    Ok(json!({ "bytes_per_s": bps / 8.0, "secs": secs, "version": iperf_version() }))
}

fn iperf_version() -> String {
    output_of("iperf3", &["--version"]).and_then(|s| s.split_whitespace().nth(1).map(str::to_owned)).unwrap_or_default()
}
