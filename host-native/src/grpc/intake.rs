//! A job as it streams in over `SubmitJob`: the header's settings checked
//! before any task is read, then each task checked as it arrives (its
//! kernel, a custom shader once per distinct shader, the job's running
//! input bytes), so an oversized or malformed job is refused with a clear
//! error before it is all in memory. Pure: the service and the fuzzer
//! drive the same code.

use std::collections::HashSet;

use bytes::Bytes;
use shoal_core::coordinator::{JobSpec, PreparedJob, TaskSpec};
use shoal_core::kernels::KernelSpec;
use shoal_core::Digest;
use tonic::Status;

use super::convert::{kernel_from_pb, small, tier_from};
use super::errors::{bad_field, with_reason};
use super::pb;
use super::pb::submit_job_request::Part;

/// Most tasks one job may have.
pub const MAX_TASKS_PER_JOB: usize = 1_000_000;
/// Longest job name accepted, in bytes: names are listed with every job,
/// and a list call must never fail because one record is large.
pub const MAX_JOB_NAME_BYTES: usize = 256;

/// Most shared inputs one job may declare.
const MAX_SHARED_INPUTS: usize = 256;

/// Longest `request_id` accepted, in characters (a UUID is 36).
pub const MAX_REQUEST_ID_CHARS: usize = 128;

/// A job being received.
pub struct JobIntake {
    job: PreparedJob,
    name: String,
    request_id: String,
    /// Custom shaders already validated (by digest of source and entry).
    validated: HashSet<Digest>,
    /// The shared inputs declared so far, in order.
    shared: Vec<Bytes>,
    input_bytes: u64,
    max_input_bytes: u64,
}

impl JobIntake {
    /// Starts a job from the first message of the stream, which must be
    /// its header; `max_input_bytes` is `coordinator.max_job_input_bytes`.
    pub fn start(first: Option<pb::SubmitJobRequest>, max_input_bytes: u64) -> Result<JobIntake, Status> {
        let Some(pb::SubmitJobRequest { part: Some(Part::Header(header)) }) = first else {
            return Err(bad_field("header", "the first message of SubmitJob must be the job header"));
        };
        if header.name.len() > MAX_JOB_NAME_BYTES {
            let why = format!("a job's name is at most {MAX_JOB_NAME_BYTES} bytes, this one {}", header.name.len());
            return Err(bad_field("header.name", why));
        }
        let id = &header.request_id;
        if id.len() > MAX_REQUEST_ID_CHARS || !id.bytes().all(|b| b.is_ascii_graphic()) {
            let why = format!("at most {MAX_REQUEST_ID_CHARS} printable ASCII characters, without spaces");
            return Err(bad_field("header.request_id", why));
        }
        let field = |f: &'static str| move |s: Status| bad_field(format!("header.{f}"), s.message());
        let job = PreparedJob::new(JobSpec {
            tasks: Vec::new(),
            shared_inputs: Vec::new(),
            redundancy: small(header.redundancy, "redundancy").map_err(field("redundancy"))?,
            quorum: small(header.quorum, "quorum").map_err(field("quorum"))?,
            priority: small(header.priority, "priority").map_err(field("priority"))?.unwrap_or(0),
            min_tier: tier_from(header.min_tier).map_err(field("min_tier"))?,
            allow_adaptive: header.allow_adaptive,
        });
        let (name, request_id) = (header.name, header.request_id);
        Ok(JobIntake {
            job,
            name,
            request_id,
            validated: HashSet::new(),
            shared: Vec::new(),
            input_bytes: 0,
            max_input_bytes,
        })
    }

    /// Checks and adds the next message of the stream (a task); each
    /// task's inputs are hashed as it arrives, while still in cache.
    pub fn push(&mut self, m: pb::SubmitJobRequest) -> Result<(), Status> {
        let index = self.job.spec().tasks.len();
        let t = match m.part {
            Some(Part::Task(t)) => t,
            Some(Part::Shared(s)) => return self.share(s.data),
            Some(Part::Header(_)) => return Err(bad_field(format!("tasks[{index}]"), "a job has one header")),
            None => return Err(bad_field(format!("tasks[{index}]"), "empty message")),
        };
        if index >= MAX_TASKS_PER_JOB {
            let why = format!("a job has at most {MAX_TASKS_PER_JOB} tasks");
            return Err(with_reason(tonic::Code::ResourceExhausted, "TOO_MANY_TASKS", why));
        }
        let kernel = kernel_from_pb(t.kernel).map_err(|s| bad_field(format!("tasks[{index}].kernel"), s.message()))?;
        // Custom shaders are validated at the door (once per distinct shader).
        if matches!(kernel, KernelSpec::Custom(_)) {
            let key = Digest::of_parts([kernel.wgsl().as_bytes(), kernel.entry_point().as_bytes()]);
            if !self.validated.contains(&key) {
                shoal_compute::validate_kernel(&kernel)
                    .map_err(|e| bad_field(format!("tasks[{index}].kernel.custom"), e.to_string()))?;
                self.validated.insert(key);
            }
        }
        let inputs = self.task_inputs(index, t.inputs, t.parts)?;
        self.job.push(TaskSpec { kernel, inputs });
        Ok(())
    }

    /// A task's inputs: its bytes, or its parts with the shared inputs
    /// they name (the very shared `Bytes`: the job holds each once).
    fn task_inputs(
        &mut self,
        index: usize,
        inputs: Vec<Bytes>,
        parts: Vec<pb::TaskInput>,
    ) -> Result<Vec<Bytes>, Status> {
        use pb::task_input::Source;
        if parts.is_empty() {
            self.count_bytes(inputs.iter().map(|b| b.len() as u64).sum(), &format!("task {index}"))?;
            return Ok(inputs);
        }
        if !inputs.is_empty() {
            return Err(bad_field(format!("tasks[{index}].parts"), "a task has inputs or parts, not both"));
        }
        let mut out = Vec::with_capacity(parts.len());
        for (i, p) in parts.into_iter().enumerate() {
            match p.source {
                Some(Source::Data(b)) => out.push(b),
                Some(Source::Shared(s)) => match self.shared.get(s as usize) {
                    Some(b) => out.push(b.clone()),
                    None => {
                        let why = format!("shared input {s} is not declared ({} so far)", self.shared.len());
                        return Err(bad_field(format!("tasks[{index}].parts[{i}].shared"), why));
                    }
                },
                None => return Err(bad_field(format!("tasks[{index}].parts[{i}]"), "empty input")),
            }
        }
        let own: u64 = (out.iter())
            .filter(|b| !self.shared.iter().any(|s| s.as_ptr() == b.as_ptr() && s.len() == b.len()))
            .map(|b| b.len() as u64)
            .sum();
        self.count_bytes(own, &format!("task {index}"))?;
        Ok(out)
    }

    /// Declares a shared input (counted once toward the job's bytes).
    fn share(&mut self, data: Bytes) -> Result<(), Status> {
        let index = self.shared.len();
        let field = format!("shared[{index}]");
        if index >= MAX_SHARED_INPUTS {
            let why = format!("a job has at most {MAX_SHARED_INPUTS} shared inputs");
            return Err(with_reason(tonic::Code::ResourceExhausted, "TOO_MANY_SHARED_INPUTS", why));
        }
        if data.is_empty() {
            return Err(bad_field(field, "a shared input is not empty"));
        }
        self.count_bytes(data.len() as u64, &format!("shared input {index}"))?;
        self.job.share(data.clone());
        self.shared.push(data);
        Ok(())
    }

    /// Adds to the job's input bytes, refusing a job past the limit.
    fn count_bytes(&mut self, bytes: u64, at: &str) -> Result<(), Status> {
        self.input_bytes += bytes;
        if self.input_bytes > self.max_input_bytes {
            let limit = self.max_input_bytes;
            let why = format!(
                "the job's inputs take more than {limit} bytes by {at}; coordinator.max_job_input_bytes is {limit}"
            );
            return Err(with_reason(tonic::Code::ResourceExhausted, "JOB_INPUTS_TOO_LARGE", why));
        }
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

    /// The job, its name and the client's request id, ready for the engine.
    pub fn finish(self) -> (PreparedJob, String, String) {
        (self.job, self.name, self.request_id)
    }
}
