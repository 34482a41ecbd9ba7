//! Prometheus metrics: the recorder, and what the engine records, named
//! and typed as Prometheus expects: every running total is a counter
//! ending in `_total` (so `rate()` works), every timing a histogram with
//! buckets fit to what it times (so it aggregates across coordinators),
//! plus `shoal_build_info`, the process's CPU, memory and file
//! descriptors, and the data folder's size and free space.
//!
//! - counters: events by kind, tasks verified / dead-lettered / mismatched,
//!   offers, results, timeouts, stale results, slashed workers, gRPC calls
//!   and errors by method and code;
//! - gauges: workers (connected, admitted, by backend and tier), tasks
//!   pending, jobs open, the last epoch;
//! - histograms: `shoal_dispatch_seconds`, `shoal_commit_seconds`,
//!   `shoal_task_latency_seconds` (submit to verified),
//!   `shoal_engine_query_seconds` (each read on the engine's thread).

use std::path::Path;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use shoal_core::coordinator::{Coordinator, Event};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();

/// Offer sent → acknowledged by the worker (the commit included): from a
/// fraction of a millisecond on loopback to seconds over the internet.
const DISPATCH_BUCKETS: &[f64] = &[0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
/// One storage commit: a group commit with fsync, typically 0.1–10 ms.
const COMMIT_BUCKETS: &[f64] =
    &[0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
/// A task from its job's submission to its verification: milliseconds for
/// a small job on an idle swarm, up to an hour for a big queue.
const LATENCY_BUCKETS: &[f64] =
    &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0];

/// One read on the engine's thread (a status, a page of workers): tens of
/// microseconds to milliseconds for a big swarm.
const QUERY_BUCKETS: &[f64] =
    &[0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1];

/// Installs the process-wide recorder once; returns its handle (None if
/// another recorder was installed first).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full("shoal_dispatch_seconds".into()), DISPATCH_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full("shoal_commit_seconds".into()), COMMIT_BUCKETS))
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full("shoal_task_latency_seconds".into()), LATENCY_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full("shoal_engine_query_seconds".into()), QUERY_BUCKETS)
                })
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

/// Help texts and units, and the build's identity.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_histogram!("shoal_dispatch_seconds", Unit::Seconds, "Offer sent to acknowledged by the worker.");
    describe_histogram!("shoal_commit_seconds", Unit::Seconds, "One storage commit (group commit with fsync).");
    describe_histogram!("shoal_task_latency_seconds", Unit::Seconds, "A task from its job's submission to verified.");
    describe_histogram!("shoal_engine_query_seconds", Unit::Seconds, "One read on the engine's thread.");
    describe_counter!("shoal_events_total", "Swarm events by kind.");
    describe_counter!("shoal_grpc_requests_total", "Control-plane calls by method and status code.");
    describe_gauge!("shoal_build_info", "The running build (always 1), by version.");
    metrics::gauge!("shoal_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    PROCESS.get_or_init(metrics_process::Collector::default).describe();
}

/// The text exposition of every metric, with the process's and the data
/// folder's figures as of now.
pub fn render(data: Option<&Path>) -> String {
    let Some(handle) = install() else { return String::new() };
    if let Some(p) = PROCESS.get() {
        p.collect();
    }
    if let Some(dir) = data {
        record_data_folder(dir);
    }
    handle.render()
}

/// The data folder's bytes (storage file and blob file) and the space left
/// on its file system: what the disk alert watches.
fn record_data_folder(dir: &Path) {
    let size = |name: &str| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
    let store = size(crate::service::STORE_FILE);
    let blobs = size(&Path::new(crate::service::STORE_FILE).with_extension("blobs").to_string_lossy());
    metrics::gauge!("shoal_data_bytes", "file" => "store").set(store as f64);
    metrics::gauge!("shoal_data_bytes", "file" => "blobs").set(blobs as f64);
    #[cfg(target_os = "linux")]
    if let Ok(fs) = rustix::fs::statvfs(dir) {
        metrics::gauge!("shoal_data_free_bytes").set((fs.f_bavail * fs.f_frsize) as f64);
        metrics::gauge!("shoal_data_size_bytes").set((fs.f_blocks * fs.f_frsize) as f64);
    }
}

/// Counts an event.
pub fn record_event(e: &Event) {
    let kind = match e {
        Event::WorkerAdmitted { .. } => "worker_admitted",
        Event::WorkerRefused { .. } => "worker_refused",
        Event::WorkerLeft { .. } => "worker_left",
        Event::JobAccepted { .. } => "job_accepted",
        Event::TaskVerified { .. } => "task_verified",
        Event::TaskDeadLettered { .. } => "task_dead_lettered",
        Event::JobFinished { .. } => "job_finished",
        Event::WorkerSlashed { .. } => "worker_slashed",
        Event::EpochSettled(s) => {
            let paid: u128 = s.payouts.iter().map(|p| p.amount + p.bounty).sum();
            // Gauges hold f64: payouts in whole tokens, for graphs; exact amounts are in the API.
            metrics::gauge!("shoal_epoch_payout_tokens").set(paid as f64 / 1e18);
            metrics::gauge!("shoal_epoch").set(s.epoch as f64);
            "epoch_settled"
        }
    };
    metrics::counter!("shoal_events_total", "kind" => kind).increment(1);
}

/// Sets the swarm's gauges and running totals from the coordinator (its
/// totals are the source of truth, so counters take their values).
pub fn record_gauges(c: &Coordinator) {
    let status = crate::status::SwarmStatus::of(c);
    metrics::gauge!("shoal_workers_connected").set(f64::from(status.workers));
    metrics::gauge!("shoal_workers_admitted").set(f64::from(status.workers_admitted));
    for class in status.classes {
        metrics::gauge!("shoal_workers", "backend" => class.backend, "tier" => class.tier.to_string())
            .set(f64::from(class.workers));
    }
    metrics::gauge!("shoal_tasks_pending").set(c.pending_tasks() as f64);
    metrics::gauge!("shoal_jobs_open").set(status.jobs_open as f64);
    let s = c.stats();
    metrics::counter!("shoal_tasks_verified_total").absolute(s.verified);
    metrics::counter!("shoal_tasks_dead_lettered_total").absolute(s.dead_lettered);
    metrics::counter!("shoal_tasks_mismatched_total").absolute(s.mismatched_tasks);
    metrics::counter!("shoal_offers_total").absolute(s.offers);
    metrics::counter!("shoal_results_total").absolute(s.results);
    metrics::counter!("shoal_timeouts_total").absolute(s.timeouts);
    metrics::counter!("shoal_stale_results_total").absolute(s.stale_results);
    metrics::counter!("shoal_workers_slashed_total").absolute(s.slashed);
    metrics::counter!("shoal_input_bytes_sent_total").absolute(s.input_bytes_sent);
    metrics::counter!("shoal_shared_bytes_named_total").absolute(s.shared_bytes_named);
    metrics::counter!("shoal_input_requests_total").absolute(s.input_requests);
}
