//! The client side of jobs over the gRPC API: connect, submit (with a
//! request id, so a retry is safe), follow with a progress bar, fetch and
//! write results; and `shoal submit` itself. The read-only commands are in
//! `inspect`.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use shoal_core::kernels::mandelbrot::Tiling;
use shoal_core::kernels::{KernelSpec, MandelbrotParams, MatmulParams, Sha256Params};

use crate::grpc::pb::shoal_service_client::ShoalServiceClient;
use crate::grpc::{kernel_to_pb, pb, WithToken};

use super::args::{ClientArgs, SubmitArgs};
use super::exit::NotAllVerified;
use super::output;

/// A gRPC client that sends the API token, if one is given.
pub(super) type Client =
    ShoalServiceClient<tonic::service::interceptor::InterceptedService<tonic::transport::Channel, WithToken>>;

pub(super) async fn connect(a: &ClientArgs) -> Result<Client> {
    let channel = crate::grpc::channel(&a.coordinator, a.ca.as_deref())
        .await
        .with_context(|| format!("cannot reach the coordinator at {}", a.coordinator))?;
    let token = WithToken::new(&a.api_token).context("--api-token")?;
    Ok(ShoalServiceClient::with_interceptor(channel, token)
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20))
}

/// The tasks of a Mandelbrot image cut by the core's tiling (the demo's
/// and `submit --kernel mandelbrot`'s).
pub(super) fn mandelbrot_tasks(tiling: &Tiling) -> Tasks {
    tiling.tiles().into_iter().map(|t| (KernelSpec::Mandelbrot(t), Vec::new())).collect()
}

#[derive(serde::Deserialize)]
pub(super) struct JobFile {
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    pub(super) redundancy: u32,
    /// Inputs the tasks share, sent once (tasks name them by position).
    #[serde(default)]
    pub(super) shared_base64: Vec<String>,
    pub(super) tasks: Vec<JobFileTask>,
}

/// One input of a job file's task: bytes, or a shared input by position.
#[derive(serde::Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub(super) enum JobFilePart {
    /// `{"base64": "…"}`
    Data {
        /// The bytes, base64.
        base64: String,
    },
    /// `{"shared": 0}`
    Shared {
        /// Position in `shared_base64`.
        shared: u32,
    },
}

/// A job's shared inputs and, per task, where they sit (None: the task's
/// own bytes); empty for jobs without any.
#[derive(Default)]
pub(super) struct SharedInputs {
    pub(super) data: Vec<Vec<u8>>,
    pub(super) layouts: Vec<Vec<Option<u32>>>,
}

#[derive(serde::Deserialize)]
pub(super) struct JobFileTask {
    pub(super) kernel: KernelSpec,
    #[serde(default)]
    pub(super) inputs_base64: Vec<String>,
    /// Instead of `inputs_base64`: each input, its bytes or a shared one.
    #[serde(default)]
    pub(super) parts: Vec<JobFilePart>,
}

/// Tasks of a job: a kernel and its inputs each.
pub(super) type Tasks = Vec<(KernelSpec, Vec<Vec<u8>>)>;

/// A job file's tasks (each with all its inputs) and its shared inputs.
fn file_tasks(f: JobFile) -> Result<(Tasks, SharedInputs)> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.decode(s);
    let data =
        (f.shared_base64.iter().map(|s| b64(s)).collect::<Result<Vec<_>, _>>()).context("shared_base64: not base64")?;
    let mut shared = SharedInputs { data, layouts: Vec::new() };
    let mut tasks = Vec::new();
    for (i, t) in f.tasks.into_iter().enumerate() {
        if t.parts.is_empty() {
            let inputs = (t.inputs_base64.iter().map(|s| b64(s)).collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("task {i}: inputs are not base64"))?;
            tasks.push((t.kernel, inputs));
            shared.layouts.push(Vec::new());
            continue;
        }
        let (mut inputs, mut layout) = (Vec::new(), Vec::new());
        for p in t.parts {
            match p {
                JobFilePart::Data { base64 } => {
                    inputs.push(b64(&base64).with_context(|| format!("task {i}: a part is not base64"))?);
                    layout.push(None);
                }
                JobFilePart::Shared { shared: s } => {
                    let bytes = shared.data.get(s as usize).with_context(|| {
                        format!("task {i}: shared input {s} is not in shared_base64 ({} there)", shared.data.len())
                    })?;
                    inputs.push(bytes.clone());
                    layout.push(Some(s));
                }
            }
        }
        tasks.push((t.kernel, inputs));
        shared.layouts.push(layout);
    }
    Ok((tasks, shared))
}

pub(super) fn tasks_from(a: &SubmitArgs) -> Result<(Tasks, String, u32, SharedInputs)> {
    if let Some(path) = &a.file {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let f: JobFile =
            serde_json::from_str(&text).with_context(|| format!("{} is not a job file", path.display()))?;
        let name = if a.name.is_empty() { f.name.clone() } else { a.name.clone() };
        let redundancy = if a.redundancy > 0 { a.redundancy } else { f.redundancy };
        let (tasks, shared) = file_tasks(f)?;
        return Ok((tasks, name, redundancy, shared));
    }
    let kernel = a.kernel.as_deref().unwrap_or("mandelbrot");
    let seed = u64::from(std::process::id());
    let tasks = match kernel {
        "mandelbrot" => mandelbrot_tasks(&Tiling::new(a.size, a.tile, 256)),
        "sha256" => (0..a.tasks)
            .map(|i| {
                let k = KernelSpec::Sha256(Sha256Params { count: a.size.max(1), message_len: 64 });
                let inputs = k.seeded_inputs(seed ^ u64::from(i));
                (k, inputs)
            })
            .collect(),
        "matmul" => (0..a.tasks)
            .map(|i| {
                let k = KernelSpec::MatmulF32(MatmulParams::square(a.size.clamp(1, 2048)));
                let inputs = k.seeded_inputs(seed ^ u64::from(i));
                (k, inputs)
            })
            .collect(),
        other => bail!("unknown kernel `{other}`: sha256, matmul or mandelbrot (or --file for any kernel)"),
    };
    let name = if a.name.is_empty() { format!("{kernel} ×{}", tasks.len()) } else { a.name.clone() };
    Ok((tasks, name, a.redundancy, SharedInputs::default()))
}

/// A job to submit: its settings and tasks.
pub(super) struct Submission<'a> {
    pub(super) name: &'a str,
    pub(super) redundancy: u32,
    /// Empty: none (a retry makes a second job).
    pub(super) request_id: &'a str,
    pub(super) tasks: &'a [(KernelSpec, Vec<Vec<u8>>)],
    /// Its shared inputs (sent once) and where its tasks name them.
    pub(super) shared: &'a SharedInputs,
}

/// Submits a job; the answer says its id (and whether it waits).
pub(super) async fn submit_tasks(c: &mut Client, job: &Submission<'_>) -> Result<pb::SubmitJobResponse> {
    use pb::submit_job_request::Part;
    use pb::task_input::Source;
    let header = pb::SubmitJobRequest {
        part: Some(Part::Header(pb::JobHeader {
            redundancy: job.redundancy,
            name: job.name.to_owned(),
            request_id: job.request_id.to_owned(),
            ..Default::default()
        })),
    };
    let mut msgs = vec![header];
    for d in &job.shared.data {
        msgs.push(pb::SubmitJobRequest {
            part: Some(Part::Shared(pb::SharedInput { data: bytes::Bytes::copy_from_slice(d) })),
        });
    }
    for (i, (k, inputs)) in job.tasks.iter().enumerate() {
        let layout = job.shared.layouts.get(i).filter(|l| l.iter().any(Option::is_some));
        let bytes = |b: &Vec<u8>| bytes::Bytes::copy_from_slice(b);
        let task = match layout {
            None => {
                pb::Task { kernel: Some(kernel_to_pb(k)), inputs: inputs.iter().map(bytes).collect(), parts: vec![] }
            }
            Some(l) => {
                let parts = (inputs.iter().zip(l))
                    .map(|(b, s)| pb::TaskInput {
                        source: Some(s.map_or_else(|| Source::Data(bytes(b)), Source::Shared)),
                    })
                    .collect();
                pb::Task { kernel: Some(kernel_to_pb(k)), inputs: vec![], parts }
            }
        };
        msgs.push(pb::SubmitJobRequest { part: Some(Part::Task(task)) });
    }
    let r = c.submit_job(tokio_stream::iter(msgs)).await.context("job refused")?.into_inner();
    if !r.waiting.is_empty() {
        tracing::warn!(job = %r.job_id, waiting = %r.waiting, "job accepted, but waits");
    }
    Ok(r)
}

/// A job's progress.
pub(super) async fn get_job(c: &mut Client, job: &str) -> Result<pb::Job> {
    let r =
        c.get_job(pb::GetJobRequest { job_id: job.to_owned() }).await.with_context(|| format!("reading job {job}"))?;
    Ok(r.into_inner().job.unwrap_or_default())
}

/// Follows a job to its end with a progress bar.
pub(super) async fn wait_with_progress(c: &mut Client, job: &str) -> Result<pb::Job> {
    let bar = output::progress_bar();
    loop {
        let s = get_job(c, job).await?;
        bar.set_length(u64::from(s.tasks));
        bar.set_position(u64::from(s.verified + s.dead_lettered + s.cancelled));
        if s.finished {
            bar.finish_and_clear();
            return Ok(s);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Fails with exit code 7 unless every task of a finished job was verified.
pub(super) fn all_verified(s: &pb::Job) -> Result<()> {
    if s.verified == s.tasks {
        return Ok(());
    }
    Err(NotAllVerified {
        job: s.job_id.clone(),
        tasks: s.tasks,
        verified: s.verified,
        dead_lettered: s.dead_lettered,
        cancelled: s.cancelled,
    }
    .into())
}

/// Every ended task's outcome, in index order.
pub(super) async fn outcomes(c: &mut Client, job: &str) -> Result<Vec<pb::TaskOutcome>> {
    let request = pb::StreamJobResultsRequest { job_id: job.to_owned(), follow: false, omit_outputs: false };
    let mut s =
        c.stream_job_results(request).await.with_context(|| format!("reading job {job}'s results"))?.into_inner();
    let mut out = Vec::new();
    while let Some(o) = s.message().await? {
        out.extend(o.outcome);
    }
    Ok(out)
}

/// Writes `task-NNNNNN.outK` files and a `summary.json`; returns how many files.
pub(super) async fn write_results(
    c: &mut Client,
    job: &str,
    _tasks: &[(KernelSpec, Vec<Vec<u8>>)],
    dir: &Path,
) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let all = outcomes(c, job).await?;
    let mut files = 0;
    let mut summary = Vec::new();
    for o in &all {
        for (k, bytes) in o.outputs.iter().enumerate() {
            std::fs::write(dir.join(format!("task-{:06}.out{k}", o.index)), bytes)?;
            files += 1;
        }
        summary.push(output::outcome_summary(o));
    }
    std::fs::write(dir.join("summary.json"), serde_json::to_vec_pretty(&summary)?)?;
    Ok(files)
}

/// The image of a Mandelbrot job as a binary PGM: its tiles placed by
/// the core's layout.
pub(super) async fn assemble_mandelbrot(c: &mut Client, job: &str, tiles: &[MandelbrotParams]) -> Result<Vec<u8>> {
    let outcomes = outcomes(c, job).await?;
    output::mandelbrot_pgm(tiles, &outcomes).context("the tiles do not make one image")
}

pub(super) async fn submit(a: SubmitArgs) -> Result<()> {
    let (tasks, name, redundancy, shared) = tasks_from(&a)?;
    let mut c = connect(&a.client).await?;
    let job = Submission { name: &name, redundancy, request_id: &a.request_id, tasks: &tasks, shared: &shared };
    let r = submit_tasks(&mut c, &job).await?;
    if a.client.json {
        output::print_json(&r)?;
    } else {
        println!("{}", r.job_id);
        if r.replayed {
            eprintln!("(request {} was submitted before: this is its job)", a.request_id);
        }
    }
    if a.wait {
        let s = wait_with_progress(&mut c, &r.job_id).await?;
        let n = write_results(&mut c, &r.job_id, &tasks, &a.out).await?;
        eprintln!(
            "{} verified, {} dead-lettered, {} cancelled; {n} output files in {}",
            s.verified,
            s.dead_lettered,
            s.cancelled,
            a.out.display()
        );
        all_verified(&s)?;
    }
    Ok(())
}
