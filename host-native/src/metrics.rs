//! Prometheus metrics: the recorder, and what the engine records.
//!
//! Counters of events (verified, dead-lettered, slashed, …), gauges of the
//! swarm (workers by backend and tier, tasks pending, the core's totals),
//! histograms of commit time and of submission-to-verification latency,
//! payouts per epoch.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use shoal_core::coordinator::{Coordinator, Event};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once; returns its handle (None if
/// another recorder was installed first).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().ok()).as_ref()
}

/// The text exposition of every metric.
pub fn render() -> String {
    install().map(PrometheusHandle::render).unwrap_or_default()
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
            metrics::gauge!("shoal_epoch_number").set(s.epoch as f64);
            "epoch_settled"
        }
    };
    metrics::counter!("shoal_events_total", "kind" => kind).increment(1);
}

/// Sets the swarm gauges from the coordinator.
pub fn record_gauges(c: &Coordinator) {
    for class in crate::status::SwarmStatus::of(c).classes {
        metrics::gauge!("shoal_workers", "backend" => class.backend, "tier" => class.tier.to_string())
            .set(f64::from(class.workers));
    }
    let s = c.stats();
    metrics::gauge!("shoal_tasks", "state" => "pending").set(c.pending_tasks() as f64);
    metrics::gauge!("shoal_tasks", "state" => "verified").set(s.verified as f64);
    metrics::gauge!("shoal_tasks", "state" => "dead_lettered").set(s.dead_lettered as f64);
    metrics::gauge!("shoal_tasks", "state" => "mismatched").set(s.mismatched_tasks as f64);
    metrics::gauge!("shoal_offers").set(s.offers as f64);
    metrics::gauge!("shoal_results").set(s.results as f64);
    metrics::gauge!("shoal_timeouts").set(s.timeouts as f64);
    metrics::gauge!("shoal_stale_results").set(s.stale_results as f64);
    metrics::gauge!("shoal_slashed_workers").set(s.slashed as f64);
}
