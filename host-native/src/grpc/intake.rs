//! A job as it streams in over `SubmitJob`: the header's settings checked
//! before any task is read, then each task checked as it arrives (its
//! kernel, a custom shader once per distinct shader, the job's running
//! input bytes), so an oversized or malformed job is refused with a clear
//! error before it is all in memory. Pure: the service and the fuzzer
//! drive the same code.

use std::collections::HashSet;

use shoal_core::coordinator::{JobSpec, PreparedJob, TaskSpec};
use shoal_core::kernels::KernelSpec;
use shoal_core::Digest;
use tonic::Status;

use super::convert::{kernel_from_pb, small, tier_from};
use super::pb;
use super::pb::submit_job_request::Part;

/// Most tasks one job may have.
pub const MAX_TASKS_PER_JOB: usize = 1_000_000;
/// Longest job name accepted, in bytes: names are listed with every job,
/// and a list call must never fail because one record is large.
pub const MAX_JOB_NAME_BYTES: usize = 256;

/// A job being received.
pub struct JobIntake {
    job: PreparedJob,
    name: String,
    /// Custom shaders already validated (by digest of source and entry).
    validated: HashSet<Digest>,
    input_bytes: u64,
    max_input_bytes: u64,
}

impl JobIntake {
    /// Starts a job from the first message of the stream, which must be
    /// its header; `max_input_bytes` is `coordinator.max_job_input_bytes`.
    pub fn start(first: Option<pb::SubmitJobRequest>, max_input_bytes: u64) -> Result<JobIntake, Status> {
        let Some(pb::SubmitJobRequest { part: Some(Part::Header(header)) }) = first else {
            return Err(Status::invalid_argument("the first message of SubmitJob must be the job header"));
        };
        if header.name.len() > MAX_JOB_NAME_BYTES {
            let why = format!("a job's name is at most {MAX_JOB_NAME_BYTES} bytes, this one {}", header.name.len());
            return Err(Status::invalid_argument(why));
        }
        let job = PreparedJob::new(JobSpec {
            tasks: Vec::new(),
            redundancy: small(header.redundancy, "redundancy")?,
            quorum: small(header.quorum, "quorum")?,
            priority: small(header.priority, "priority")?.unwrap_or(0),
            min_tier: tier_from(header.min_tier)?,
            allow_adaptive: header.allow_adaptive,
        });
        Ok(JobIntake { job, name: header.name, validated: HashSet::new(), input_bytes: 0, max_input_bytes })
    }

    /// Checks and adds the next message of the stream (a task); each
    /// task's inputs are hashed as it arrives, while still in cache.
    pub fn push(&mut self, m: pb::SubmitJobRequest) -> Result<(), Status> {
        let index = self.job.spec().tasks.len();
        let t = match m.part {
            Some(Part::Task(t)) => t,
            Some(Part::Header(_)) => return Err(Status::invalid_argument("a job has one header")),
            None => return Err(Status::invalid_argument("empty message")),
        };
        if index >= MAX_TASKS_PER_JOB {
            return Err(Status::resource_exhausted(format!("a job has at most {MAX_TASKS_PER_JOB} tasks")));
        }
        let kernel =
            kernel_from_pb(t.kernel).map_err(|s| Status::invalid_argument(format!("task {index}: {}", s.message())))?;
        // Custom shaders are validated at the door (once per distinct shader).
        if matches!(kernel, KernelSpec::Custom(_)) {
            let key = Digest::of_parts([kernel.wgsl().as_bytes(), kernel.entry_point().as_bytes()]);
            if !self.validated.contains(&key) {
                shoal_compute::validate_kernel(&kernel)
                    .map_err(|e| Status::invalid_argument(format!("task {index}: {e}")))?;
                self.validated.insert(key);
            }
        }
        self.input_bytes += t.inputs.iter().map(|b| b.len() as u64).sum::<u64>();
        if self.input_bytes > self.max_input_bytes {
            let limit = self.max_input_bytes;
            let why = format!(
                "the job's inputs take more than {limit} bytes by task {index}; coordinator.max_job_input_bytes is {limit}"
            );
            return Err(Status::resource_exhausted(why));
        }
        self.job.push(TaskSpec { kernel, inputs: t.inputs });
        Ok(())
    }

    /// Input bytes received so far.
    pub fn input_bytes(&self) -> u64 {
        self.input_bytes
    }

    /// Tasks received so far.
    pub fn tasks(&self) -> usize {
        self.job.spec().tasks.len()
    }

    /// The job and its name, ready for the engine.
    pub fn finish(self) -> (PreparedJob, String) {
        (self.job, self.name)
    }
}
