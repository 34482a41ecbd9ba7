//! `/metrics` as Prometheus reads it, after real work: parsed with a
//! Prometheus text-format parser, every running total is a counter named
//! `_total`, timings are histograms with buckets (no summaries), the build
//! and the process are described, every control-plane call is counted by
//! method and code; and every metric the sample alert rules and Grafana
//! dashboard in `docs/` query exists.

mod common;

use std::collections::{BTreeSet, HashMap};

use common::*;
use prometheus_parse::{Scrape, Value};
use shoal_native::grpc::pb;
use shoal_native::worker::Behaviour;
use shoal_native::Service;

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text format")
}

/// The metric names an expression (PromQL) reads, without histogram suffixes.
fn queried(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut word = String::new();
    for c in expr.chars().chain([' ']) {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if word.starts_with("shoal_") || word.starts_with("process_") {
            let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| word.strip_suffix(s)).unwrap_or(&word);
            names.insert(base.to_owned());
        }
        word.clear();
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_are_typed_as_prometheus_expects_and_the_docs_query_only_what_exists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::start(test_config(dir.path())).await.expect("starts");
    let workers = Workers::spawn(&service, "w", 3, Behaviour::Honest);
    let mut c = client(&service).await;
    let job = submit(&mut c, "metrics", 2, &mixed_tasks(7)).await;
    wait_finished(&mut c, &job, 120).await;
    let bad = c.get_job(pb::GetJobRequest { job_id: "nope".into() }).await.expect_err("refused");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    let text = get_text(&format!("http://{}/metrics", service.http_addr)).await;
    let scrape = parse(&text);
    let histograms: BTreeSet<&str> =
        scrape.samples.iter().filter(|s| matches!(s.value, Value::Histogram(_))).map(|s| s.metric.as_str()).collect();
    let mut kinds: HashMap<&str, &str> = HashMap::new();
    for s in &scrape.samples {
        // The parser reads a histogram's `_sum` and `_count` lines on their own.
        let part_of = ["_sum", "_count"].iter().find_map(|x| s.metric.strip_suffix(x));
        if part_of.is_some_and(|base| histograms.contains(base)) {
            continue;
        }
        let kind = match s.value {
            Value::Counter(_) => "counter",
            Value::Gauge(_) => "gauge",
            Value::Histogram(_) => "histogram",
            Value::Summary(_) => "summary",
            Value::Untyped(_) => "untyped",
        };
        kinds.insert(s.metric.as_str(), kind);
        assert!(
            s.metric.ends_with("_total") == (kind == "counter"),
            "{} is a {kind}: totals are counters named _total, and only they",
            s.metric
        );
        assert!(kind != "summary" && kind != "untyped", "{} is a {kind}", s.metric);
    }
    for h in ["shoal_task_latency_seconds", "shoal_commit_seconds", "shoal_dispatch_seconds"] {
        let buckets = scrape.samples.iter().find_map(|s| match &s.value {
            Value::Histogram(b) if s.metric == h => Some(b.len()),
            _ => None,
        });
        assert!(buckets.is_some_and(|n| n >= 10), "{h} is a histogram with its buckets: {buckets:?}");
    }
    let sample = |name: &str, labels: &[(&str, &str)]| {
        scrape.samples.iter().find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
    };
    let build = sample("shoal_build_info", &[("version", env!("CARGO_PKG_VERSION"))]).expect("build info");
    assert!(matches!(build.value, Value::Gauge(v) if (v - 1.0).abs() < f64::EPSILON));
    for p in ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"] {
        assert!(kinds.contains_key(p), "process metric {p}: {text}");
    }
    let verified = sample("shoal_tasks_verified_total", &[]).expect("verified total");
    assert!(matches!(verified.value, Value::Counter(v) if v >= mixed_tasks(7).len() as f64), "{verified:?}");
    let submitted =
        sample("shoal_grpc_requests_total", &[("method", "shoal.v1.ShoalService/SubmitJob"), ("code", "OK")]);
    assert!(submitted.is_some(), "calls are counted by method and code");
    let refused = sample(
        "shoal_grpc_requests_total",
        &[("method", "shoal.v1.ShoalService/GetJob"), ("code", "INVALID_ARGUMENT")],
    );
    assert!(matches!(refused.map(|s| &s.value), Some(Value::Counter(v)) if *v >= 1.0), "errors by code");
    assert!(
        sample("shoal_data_free_bytes", &[]).is_some() && sample("shoal_data_bytes", &[("file", "store")]).is_some()
    );

    // The operator's docs query only metrics that exist, of the right kind.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("docs");
    let rules = std::fs::read_to_string(root.join("prometheus/alerts.yml")).expect("alert rules");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("grafana/shoal.json")).expect("dashboard"))
            .expect("json");
    let mut exprs: Vec<String> =
        rules.lines().filter_map(|l| l.trim().strip_prefix("expr:")).map(str::to_owned).collect();
    // Multi-line expressions: the lines after `expr: |` up to the next key.
    let mut block = None::<String>;
    for line in rules.lines() {
        match (&mut block, line.trim()) {
            (None, "expr: |") => block = Some(String::new()),
            (Some(b), l) if !l.contains(':') || l.contains('[') => b.push_str(l),
            (Some(b), _) => {
                exprs.push(std::mem::take(b));
                block = None;
            }
            _ => {}
        }
    }
    for panel in dashboard["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().expect("targets") {
            exprs.push(t["expr"].as_str().expect("expr").to_owned());
        }
    }
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| queried(e)).collect();
    assert!(used.len() >= 15, "the docs watch the swarm: {used:?}");
    for name in &used {
        assert!(kinds.contains_key(name.as_str()), "docs query {name}, which /metrics does not have");
    }
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
}
