//! The table `cargo xtask bench --peers` prints: Shoal beside the best peer
//! and beside the machine's bound, each figure the median of the rounds
//! whose background load stayed under the limit.

use serde_json::Value;

/// A figure's median over the quiet rounds, and how many rounds gave it.
fn median(report: &Value, run: &str, pointer: &str) -> Option<(f64, usize)> {
    let limit = report["max_background_percent"].as_f64().unwrap_or(100.0);
    let mut xs: Vec<f64> = report["rounds"]
        .as_array()?
        .iter()
        .filter_map(|r| r.get(run))
        .filter(|r| r["background_percent"].as_f64().unwrap_or(0.0) <= limit)
        .filter_map(|r| r.pointer(pointer).and_then(Value::as_f64))
        .collect();
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let mid = xs.len() / 2;
    // An even count: the mean of the two middle figures.
    let m = if xs.len().is_multiple_of(2) { f64::midpoint(xs[mid - 1], xs[mid]) } else { xs[mid] };
    Some((m, xs.len()))
}

fn cell(x: Option<f64>, scale: f64, digits: usize) -> String {
    x.map_or_else(|| "—".to_owned(), |v| format!("{:.*}", digits, v * scale))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "—".to_owned(),
    }
}

/// The version a run reported (peers) or the tool's (iperf3).
fn version(report: &Value, run: &str) -> String {
    report["rounds"]
        .as_array()
        .and_then(|rs| rs.iter().find_map(|r| r.pointer(&format!("/{run}/version")).and_then(Value::as_str)))
        .unwrap_or("?")
        .to_owned()
}

/// One throughput row: Shoal's figure, the peers', Shoal ÷ the best peer,
/// the machine's bound and Shoal ÷ bound (higher is better).
struct Row<'a> {
    what: &'a str,
    shoal: Option<f64>,
    ray: Option<f64>,
    dask: Option<f64>,
    bound: Option<f64>,
    bound_name: &'a str,
    scale: f64,
}

impl Row<'_> {
    fn print(&self) {
        let best = match (self.ray, self.dask) {
            (Some(r), Some(d)) => Some(r.max(d)),
            (r, d) => r.or(d),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} {} | {} |",
            self.what,
            cell(self.shoal, self.scale, 0),
            cell(self.ray, self.scale, 0),
            cell(self.dask, self.scale, 0),
            ratio(self.shoal, best),
            cell(self.bound, self.scale, 0),
            self.bound_name,
            ratio(self.shoal, self.bound),
        );
    }
}

/// Prints the comparison.
pub(crate) fn print(report: &Value) {
    let m = |run: &str, p: &str| median(report, run, p).map(|(v, _)| v);
    let quiet = median(report, "shoal_throughput", "/throughput_tasks_per_s").map_or(0, |(_, n)| n);
    let rounds = report["rounds"].as_array().map_or(0, Vec::len);
    let replica_ns = report["core_replica_ns"].as_f64();
    let core_bound = replica_ns.map(|ns| 1e9 / (2.0 * ns));
    let tcp = m("tcp", "/bytes_per_s");
    println!(
        "\n{} · {} cores · {quiet} of {rounds} rounds under {}% background CPU · Ray {} · Dask {} · iperf3 {}\n",
        report["date"].as_str().unwrap_or(""),
        report["cores"],
        report["max_background_percent"],
        version(report, "ray_tiny"),
        version(report, "dask_tiny"),
        version(report, "tcp"),
    );
    println!("| workload | Shoal | Ray | Dask | Shoal ÷ best peer | the machine's bound | Shoal ÷ bound |");
    println!("|---|---|---|---|---|---|---|");
    let shoal_tasks = m("shoal_throughput", "/throughput_tasks_per_s");
    let rows = [
        Row {
            what: "tiny tasks/s (Shoal: every task verified by 2 workers; peers: run once)",
            shoal: shoal_tasks,
            ray: m("ray_tiny", "/tasks_per_s"),
            dask: m("dask_tiny", "/tasks_per_s"),
            bound: core_bound,
            bound_name: "(core: 1 ÷ 2 replicas)",
            scale: 1.0,
        },
        Row {
            what: "two-way verified tiny tasks/s (each on 2 workers, answers compared)",
            shoal: shoal_tasks,
            ray: m("ray_verified", "/tasks_per_s"),
            dask: m("dask_verified", "/tasks_per_s"),
            bound: core_bound,
            bound_name: "(core: 1 ÷ 2 replicas)",
            scale: 1.0,
        },
        Row {
            what: "1 MiB inputs delivered to workers (each to 2), MB/s",
            shoal: m("shoal_payload", "/payload_mb_per_s"),
            ray: m("ray_payload", "/mb_per_s"),
            dask: m("dask_payload", "/mb_per_s"),
            bound: tcp.map(|b| b / 1e6),
            bound_name: "(loopback TCP, one stream)",
            scale: 1.0,
        },
        Row {
            what: "the same, Shoal over TLS on both ports, MB/s",
            shoal: m("shoal_payload", "/payload_tls_mb_per_s"),
            ray: None,
            dask: None,
            bound: tcp.map(|b| b / 1e6),
            bound_name: "(loopback TCP, one stream)",
            scale: 1.0,
        },
    ];
    for r in &rows {
        r.print();
    }
    print_latency(report);
    if let Some(ns) = replica_ns {
        println!("\nThe core's replica cycle: {:.3} µs (criterion, this run).", ns / 1e3);
    }
}

/// Latency rows: p50 / p99 in ms, Shoal's p50 ÷ the best peer's (lower is better).
fn print_latency(report: &Value) {
    let m = |run: &str, p: &str| median(report, run, p).map(|(v, _)| v);
    println!("\n| submit to result, p50 / p99 ms | Shoal (verified by 2) | Ray (one task) | Ray (2 actors, compared) | Dask (one task) | Dask (2 workers, compared) | Shoal p50 ÷ best peer p50 |");
    println!("|---|---|---|---|---|---|---|");
    for (what, shoal, peer) in [("idle", "idle", "idle"), ("busy (1 000 tasks outstanding)", "loaded", "loaded")] {
        let pair = |run: &str, key: &str| {
            let p50 = m(run, &format!("/{key}/p50_us"));
            let p99 = m(run, &format!("/{key}/p99_us"));
            (p50, format!("{} / {}", cell(p50, 1e-3, 2), cell(p99, 1e-3, 2)))
        };
        let (s50, s) = pair("shoal_latency", &format!("latency/{shoal}"));
        let (r50, r) = pair("ray_latency", peer);
        let (rv50, rv) = pair("ray_latency", &format!("{peer}_verified"));
        let (d50, d) = pair("dask_latency", peer);
        let (dv50, dv) = pair("dask_latency", &format!("{peer}_verified"));
        let best = [r50, rv50, d50, dv50].into_iter().flatten().reduce(f64::min);
        println!("| {what} | {s} | {r} | {rv} | {d} | {dv} | {} |", ratio(s50, best));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::median;

    /// Runs that started on a busy machine are left out of the medians.
    #[test]
    fn noisy_rounds_are_left_out() {
        let report = json!({
            "max_background_percent": 15.0,
            "rounds": [
                {"ray_tiny": {"tasks_per_s": 100.0, "background_percent": 2.0}},
                {"ray_tiny": {"tasks_per_s": 900.0, "background_percent": 60.0}},
                {"ray_tiny": {"tasks_per_s": 300.0, "background_percent": 1.0}},
                {"ray_tiny": {"tasks_per_s": 200.0, "background_percent": 0.0}},
            ],
        });
        assert_eq!(median(&report, "ray_tiny", "/tasks_per_s"), Some((200.0, 3)));
        assert_eq!(median(&report, "dask_tiny", "/tasks_per_s"), None);
        let two = json!({
            "max_background_percent": 15.0,
            "rounds": [{"tcp": {"bytes_per_s": 2.0}}, {"tcp": {"bytes_per_s": 4.0}}],
        });
        assert_eq!(median(&two, "tcp", "/bytes_per_s"), Some((3.0, 2)));
    }
}
