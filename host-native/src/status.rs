//! The swarm at a glance: what `/api/stats` returns as JSON and the gRPC
//! `SwarmStatus` returns as protobuf, computed on the engine thread.

use serde::Serialize;
use shoal_core::coordinator::Coordinator;

/// Workers of one class.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ClassCount {
    /// Backend (e.g. `Vulkan`, `BrowserWebGpu`, `Cpu`).
    pub backend: String,
    /// Tier 1–3 (0 while being profiled).
    pub tier: u8,
    /// Workers.
    pub workers: u32,
}

/// Counters of the whole swarm.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SwarmStatus {
    /// Connected workers (admitted or being profiled).
    pub workers: u32,
    /// Admitted workers.
    pub workers_admitted: u32,
    /// Workers by class.
    pub classes: Vec<ClassCount>,
    /// Jobs with tasks still pending.
    pub jobs_open: u64,
    /// Tasks waiting for replicas or results.
    pub tasks_pending: u64,
    /// Tasks verified since start.
    pub tasks_verified: u64,
    /// Tasks dead-lettered since start.
    pub tasks_dead_lettered: u64,
    /// Tasks whose replicas disagreed.
    pub mismatched_tasks: u64,
    /// Offers sent.
    pub offers: u64,
    /// Results received.
    pub results: u64,
    /// Assignments timed out.
    pub timeouts: u64,
    /// Workers slashed.
    pub slashed: u64,
    /// Stale results refused.
    pub stale_results: u64,
    /// Epochs settled.
    pub epochs_settled: u64,
    /// Shadow comparisons: matched.
    pub shadow_matched: u64,
    /// Shadow comparisons: mismatched.
    pub shadow_mismatched: u64,
    /// Spot checks sent (replays of verified tasks, see the core's ringers).
    pub ringers: u64,
    /// Spot checks answered wrong (each slashed its worker).
    pub ringers_failed: u64,
    /// Input bytes sent to workers.
    pub input_bytes_sent: u64,
    /// Shared-input bytes named instead of sent (the worker had them).
    pub shared_bytes_named: u64,
    /// Shared inputs workers asked for.
    pub input_requests: u64,
}

impl SwarmStatus {
    /// Reads the coordinator.
    pub fn of(c: &Coordinator) -> Self {
        let workers = c.workers();
        let mut classes: Vec<ClassCount> = Vec::new();
        for w in &workers {
            let (backend, tier) = match w.class {
                Some(cl) => (format!("{:?}", cl.backend), cl.tier as u8),
                None => ("Profiling".to_owned(), 0),
            };
            match classes.iter_mut().find(|c| c.backend == backend && c.tier == tier) {
                Some(c) => c.workers += 1,
                None => classes.push(ClassCount { backend, tier, workers: 1 }),
            }
        }
        classes.sort_by(|a, b| (&a.backend, a.tier).cmp(&(&b.backend, b.tier)));
        let s = c.stats();
        SwarmStatus {
            workers: workers.len() as u32,
            workers_admitted: workers.iter().filter(|w| w.class.is_some()).count() as u32,
            classes,
            jobs_open: c.open_job_count() as u64,
            tasks_pending: c.pending_tasks() as u64,
            tasks_verified: s.verified,
            tasks_dead_lettered: s.dead_lettered,
            mismatched_tasks: s.mismatched_tasks,
            offers: s.offers,
            results: s.results,
            timeouts: s.timeouts,
            slashed: s.slashed,
            stale_results: s.stale_results,
            epochs_settled: c.epochs().len() as u64,
            shadow_matched: c.shadow().matched,
            shadow_mismatched: c.shadow().mismatched,
            ringers: s.ringers,
            ringers_failed: s.ringers_failed,
            input_bytes_sent: s.input_bytes_sent,
            shared_bytes_named: s.shared_bytes_named,
            input_requests: s.input_requests,
        }
    }
}
