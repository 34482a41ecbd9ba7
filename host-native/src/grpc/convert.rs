//! Proto ↔ core: kernels, events, epochs, outcomes, diffs and workers in
//! the service's messages, and the checks on what a client sends.

use shoal_core::coordinator::recovery::{EndedTask, TaskTimes};
use shoal_core::coordinator::rewards::EpochSettlement;
use shoal_core::coordinator::{Event, Tier};
use shoal_core::kernels::{
    Comparator, CustomBinding, CustomKernel, CustomRole, KernelSpec, MandelbrotParams, MatmulParams, Sha256Params,
};
use shoal_core::JobId;
use tonic::Status;

use crate::engine::TimedEvent;

use super::pb;

/// Parses a job id given by a client.
pub fn parse_job(s: &str) -> Result<JobId, Status> {
    s.trim().parse().map_err(|_| {
        let shown: String = s.chars().take(40).collect();
        super::errors::bad_field("job_id", format!("`{shown}` is not a job id (a dashed UUID)"))
    })
}

/// A protobuf kernel as the core's kernel spec.
pub fn kernel_from_pb(k: Option<pb::Kernel>) -> Result<KernelSpec, Status> {
    use pb::kernel::Kind;
    let kind = k.and_then(|k| k.kind).ok_or_else(|| Status::invalid_argument("task without a kernel"))?;
    Ok(match kind {
        Kind::Sha256(p) => KernelSpec::Sha256(Sha256Params { count: p.count, message_len: p.message_len }),
        Kind::MatmulF32(p) => KernelSpec::MatmulF32(MatmulParams { m: p.m, n: p.n, k: p.k }),
        Kind::MatmulF16(p) => KernelSpec::MatmulF16(MatmulParams { m: p.m, n: p.n, k: p.k }),
        Kind::Mandelbrot(p) => KernelSpec::Mandelbrot(MandelbrotParams {
            width: p.width,
            height: p.height,
            x0: p.x0,
            y0: p.y0,
            step: p.step,
            max_iter: p.max_iter,
        }),
        Kind::Custom(c) => {
            let workgroups: [u32; 3] = match c.workgroups.as_slice() {
                [x] => [*x, 1, 1],
                [x, y] => [*x, *y, 1],
                [x, y, z] => [*x, *y, *z],
                _ => return Err(Status::invalid_argument("custom kernel: workgroups needs 1 to 3 numbers")),
            };
            let comparator = match (c.tolerance_rel, c.tolerance_abs) {
                (None, None) => Comparator::Exact,
                (rel, abs) => Comparator::Tolerance { rel: rel.unwrap_or(0.0), abs: abs.unwrap_or(0.0) },
            };
            let bindings = (c.bindings.iter())
                .map(|b| {
                    let role = match pb::BindingRole::try_from(b.role) {
                        Ok(pb::BindingRole::Input) => CustomRole::Input,
                        Ok(pb::BindingRole::Output) => CustomRole::Output,
                        Ok(pb::BindingRole::Unspecified) => {
                            let why = format!("custom kernel: binding {} needs a role (input or output)", b.binding);
                            return Err(Status::invalid_argument(why));
                        }
                        Err(_) => {
                            let why = format!("custom kernel: binding {} has no role numbered {}", b.binding, b.role);
                            return Err(Status::invalid_argument(why));
                        }
                    };
                    Ok(CustomBinding { binding: b.binding, role, len: b.len })
                })
                .collect::<Result<_, Status>>()?;
            KernelSpec::Custom(CustomKernel {
                wgsl: c.wgsl,
                entry_point: c.entry_point,
                bindings,
                workgroups,
                comparator,
                ops: c.ops,
            })
        }
    })
}

/// The core's kernel spec as a protobuf kernel.
pub fn kernel_to_pb(k: &KernelSpec) -> pb::Kernel {
    use pb::kernel::Kind;
    let kind = match k {
        KernelSpec::Sha256(p) => Kind::Sha256(pb::Sha256Kernel { count: p.count, message_len: p.message_len }),
        KernelSpec::MatmulF32(p) => Kind::MatmulF32(pb::MatmulKernel { m: p.m, n: p.n, k: p.k }),
        KernelSpec::MatmulF16(p) => Kind::MatmulF16(pb::MatmulKernel { m: p.m, n: p.n, k: p.k }),
        KernelSpec::Mandelbrot(p) => Kind::Mandelbrot(pb::MandelbrotKernel {
            width: p.width,
            height: p.height,
            x0: p.x0,
            y0: p.y0,
            step: p.step,
            max_iter: p.max_iter,
        }),
        KernelSpec::Custom(c) => Kind::Custom(pb::CustomKernel {
            wgsl: c.wgsl.clone(),
            entry_point: c.entry_point.clone(),
            bindings: c
                .bindings
                .iter()
                .map(|b| pb::CustomBinding {
                    binding: b.binding,
                    role: match b.role {
                        CustomRole::Input => pb::BindingRole::Input.into(),
                        CustomRole::Output => pb::BindingRole::Output.into(),
                    },
                    len: b.len,
                })
                .collect(),
            workgroups: c.workgroups.to_vec(),
            tolerance_rel: match c.comparator {
                Comparator::Tolerance { rel, .. } => Some(rel),
                Comparator::Exact => None,
            },
            tolerance_abs: match c.comparator {
                Comparator::Tolerance { abs, .. } => Some(abs),
                Comparator::Exact => None,
            },
            ops: c.ops,
        }),
    };
    pb::Kernel { kind: Some(kind) }
}

pub(super) fn tier_from(n: u32) -> Result<Tier, Status> {
    match n {
        0 | 1 => Ok(Tier::Low),
        2 => Ok(Tier::Mid),
        3 => Ok(Tier::High),
        _ => Err(Status::invalid_argument(format!("min_tier {n}: tiers are 1, 2 and 3"))),
    }
}

pub(super) fn small(n: u32, what: &str) -> Result<Option<u8>, Status> {
    match n {
        0 => Ok(None),
        1..=255 => Ok(Some(n as u8)),
        _ => Err(Status::invalid_argument(format!("{what} {n} is out of range"))),
    }
}

pub(super) fn epoch_to_pb(s: &EpochSettlement) -> pb::Epoch {
    pb::Epoch {
        epoch: s.epoch,
        reward: s.reward.to_string(),
        carried_in: s.carried_in.to_string(),
        forfeited: s.forfeited.to_string(),
        operator_cut: s.operator_cut.to_string(),
        carried_out: s.carried_out.to_string(),
        digest: s.digest.to_hex(),
        payouts: s
            .payouts
            .iter()
            .map(|p| pb::Payout {
                worker: p.worker.to_string(),
                amount: p.amount.to_string(),
                bounty: p.bounty.to_string(),
                weight: p.weight.to_string(),
                tasks: p.tasks,
                accuracy_ppm: p.accuracy_ppm,
                bonus: p.bonus,
                address: s
                    .addresses
                    .iter()
                    .find(|a| a.worker == p.worker)
                    .map(|a| a.address.clone())
                    .unwrap_or_default(),
                stake: s.stakes.held_by(&p.worker).to_string(),
            })
            .collect(),
        settlement: String::new(),
        forfeits: s
            .stakes
            .forfeits
            .iter()
            .map(|(w, amount)| pb::Forfeit { worker: w.to_string(), amount: amount.to_string() })
            .collect(),
    }
}

/// An event as the protobuf feed shows it: typed, with a line for people.
pub fn event_to_pb(e: &TimedEvent) -> pb::StreamEventsResponse {
    use pb::stream_events_response::Event as E;
    let (summary, event) = match &e.event {
        Event::WorkerAdmitted { worker, class, mflops } => (
            format!("worker {worker} admitted: {:?} tier {} at {mflops} MFLOPS", class.backend, class.tier as u8),
            E::WorkerAdmitted(pb::WorkerAdmitted {
                worker: worker.to_string(),
                backend: format!("{:?}", class.backend),
                tier: class.tier as u32,
                mflops: *mflops,
            }),
        ),
        Event::WorkerRefused { worker, reason } => {
            let worker = worker.as_ref().map(ToString::to_string).unwrap_or_default();
            (
                format!("worker {worker} refused: {reason}"),
                E::WorkerRefused(pb::WorkerRefused { worker, reason: reason.clone() }),
            )
        }
        Event::WorkerLeft { worker, reason } => (
            format!("worker {worker} left: {reason}"),
            E::WorkerLeft(pb::WorkerLeft { worker: worker.to_string(), reason: reason.clone() }),
        ),
        Event::JobAccepted { job, tasks } => (
            format!("job {job} accepted: {tasks} tasks"),
            E::JobAccepted(pb::JobAccepted { job_id: job.to_string(), tasks: *tasks }),
        ),
        Event::TaskVerified { job, index, agreed, outvoted, .. } => (
            format!("task {index} of job {job} verified: {} agreed, {} outvoted", agreed.len(), outvoted.len()),
            E::TaskVerified(pb::TaskVerified {
                job_id: job.to_string(),
                task_index: *index,
                agreed: agreed.iter().map(ToString::to_string).collect(),
                outvoted: outvoted.iter().map(ToString::to_string).collect(),
            }),
        ),
        Event::TaskDeadLettered { job, index, reason, .. } => (
            format!("task {index} of job {job} dead-lettered: {reason}"),
            E::TaskDeadLettered(pb::TaskDeadLettered {
                job_id: job.to_string(),
                task_index: *index,
                reason: reason.clone(),
            }),
        ),
        Event::JobFinished { job, verified, dead_lettered, cancelled } => (
            format!("job {job} finished: {verified} verified, {dead_lettered} dead-lettered, {cancelled} cancelled"),
            E::JobFinished(pb::JobFinished {
                job_id: job.to_string(),
                verified: *verified,
                dead_lettered: *dead_lettered,
                cancelled: *cancelled,
            }),
        ),
        Event::WorkerSlashed { worker, reason, forfeited } => (
            format!("worker {worker} slashed: {reason}; forfeited {forfeited}"),
            E::WorkerSlashed(pb::WorkerSlashed {
                worker: worker.to_string(),
                reason: reason.clone(),
                forfeited: forfeited.to_string(),
            }),
        ),
        Event::EpochSettled(s) => (
            format!("epoch {} settled, digest {}", s.epoch, s.digest),
            E::EpochSettled(pb::EpochSettled { epoch: s.epoch, digest: s.digest.to_hex() }),
        ),
    };
    pb::StreamEventsResponse { at_ms: e.at.0, summary, event: Some(event) }
}

/// What a subscriber that fell behind is told instead of what it missed.
pub(super) fn lagged_to_pb(dropped: u64) -> pb::StreamEventsResponse {
    pb::StreamEventsResponse {
        at_ms: 0,
        summary: format!("{dropped} events dropped for this slow subscriber"),
        event: Some(pb::stream_events_response::Event::Lagged(pb::EventsLagged { dropped })),
    }
}

pub(super) fn outcome_to_pb(index: u32, ended: EndedTask, omit_outputs: bool) -> pb::TaskOutcome {
    match ended {
        EndedTask::Verified(v) => pb::TaskOutcome {
            index,
            state: pb::TaskState::Verified.into(),
            outputs: if omit_outputs { Vec::new() } else { v.outputs.clone() },
            digest: v.digest.to_hex(),
            agreed: v.agreed.iter().map(ToString::to_string).collect(),
            outvoted: v.outvoted.iter().map(ToString::to_string).collect(),
            ..Default::default()
        },
        EndedTask::DeadLettered(d) => {
            pb::TaskOutcome { index, state: pb::TaskState::DeadLettered.into(), reason: d.reason, ..Default::default() }
        }
    }
}

/// Adds a task's lifecycle stamps, durations and polo score to its outcome.
pub(super) fn with_times(mut o: pb::TaskOutcome, t: &TaskTimes) -> pb::TaskOutcome {
    let p = t.polo();
    o.submitted_ms = t.submitted.0;
    o.offered_ms = t.offered.map_or(0, |m| m.0);
    o.acked_ms = t.acked.map_or(0, |m| m.0);
    o.ended_ms = t.ended.0;
    o.queued_ms = t.queued_ms();
    o.staged_ms = t.staged_ms();
    o.running_ms = t.running_ms();
    o.polo = Some(pb::PoloScore {
        reward: p.reward,
        cpu_minutes: p.cpu_minutes,
        cpu_bonus: p.cpu_bonus,
        idle_factor: p.idle_factor,
        staged_factor: p.staged_factor,
        efficiency: p.efficiency,
        raw: p.raw,
    });
    o
}

pub(super) fn diff_to_pb(d: &shoal_core::coordinator::ledger::StateDiff) -> pb::StreamStateDiffsResponse {
    pb::StreamStateDiffsResponse {
        height: d.height,
        prev: d.prev.to_hex(),
        digest: d.digest.to_hex(),
        entries: d
            .entries
            .iter()
            .map(|e| pb::DiffEntry {
                delete: e.write != shoal_core::coordinator::ledger::WriteType::Put,
                prefix: e.write == shoal_core::coordinator::ledger::WriteType::DeletePrefix,
                namespace: e.namespace.to_string(),
                key: bytes::Bytes::from(e.key.clone()),
                value: bytes::Bytes::from(Vec::<u8>::from(e.value.clone())),
            })
            .collect(),
    }
}

/// A worker as the API shows it.
pub(super) fn worker_to_pb(w: &shoal_core::coordinator::WorkerView) -> pb::Worker {
    pb::Worker {
        id: w.id.to_string(),
        backend: w.class.map(|cl| format!("{:?}", cl.backend)).unwrap_or_default(),
        tier: w.class.map_or(0, |cl| cl.tier as u32),
        mflops: w.mflops.unwrap_or(0),
        credibility_ppm: w.credibility_ppm,
        in_flight: w.in_flight,
        agreed: w.agreed,
        last_seen_ms: w.last_seen.0,
        connected: true,
        slashed: w.slashed,
        epoch_accuracy_ppm: w.epoch_accuracy_ppm,
        stake: w.stake.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binding role is matched by the generated enum: an unknown number
    /// is refused, never read as an input.
    #[test]
    fn a_custom_binding_of_an_unknown_role_is_refused() {
        let binding = |role| pb::CustomBinding { binding: 0, role, len: 256 };
        let kernel = |role| pb::Kernel {
            kind: Some(pb::kernel::Kind::Custom(pb::CustomKernel {
                wgsl: "@compute @workgroup_size(1) fn main() {}".into(),
                entry_point: "main".into(),
                bindings: vec![binding(role)],
                workgroups: vec![1],
                ops: 1,
                ..Default::default()
            })),
        };
        let err = kernel_from_pb(Some(kernel(7))).expect_err("role 7 does not exist");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("no role numbered 7"), "{}", err.message());
        let err = kernel_from_pb(Some(kernel(0))).expect_err("a binding says what it is");
        assert!(err.message().contains("needs a role"), "{}", err.message());
        let Ok(KernelSpec::Custom(k)) = kernel_from_pb(Some(kernel(pb::BindingRole::Output.into()))) else {
            panic!("a known role is accepted")
        };
        assert_eq!(k.bindings[0].role, CustomRole::Output);
        assert_eq!(
            kernel_to_pb(&KernelSpec::Custom(k)).kind.map(|k| matches!(k, pb::kernel::Kind::Custom(_))),
            Some(true)
        );
    }
}
