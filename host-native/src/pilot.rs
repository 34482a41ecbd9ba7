//! Pilot's task-submission port (`server.pilot.listen`, off by default).
//!
//! A Pilot client opens a TCP connection and sends one frame,
//! `[u32 BE type][u32 BE length][JSON]`: a SUBMIT whose `task_description`
//! is a Shoal job in JSON ([`JobRequest`]). The coordinator answers on the
//! same connection, 200 "Task received with status NEW" or 400 with the
//! reason, and closes it, as Pilot's daemon does. From then on it calls
//! the submitter back at `from_addr` (which must be a `host:port` of the
//! connection's own IP: the coordinator never dials anyone else) with a
//! STATUS_UPDATE at each step (ACCEPTED, EXECUTING, EXPIRED, CANCELLED)
//! and, once the job has ended, SEND_RESULTS (a `results.txt` file, one
//! JSON line per task) followed by STATUS_UPDATE SUCCEEDED on one
//! connection. Delivery is best effort, as in Pilot; everything is also
//! kept on disk.
//!
//! The seed's polo gate and registry: a submitter (known by the IP of its
//! connection, not by what it declares) whose score is below the
//! coordinator's own (`receiver_id`) is refused with 400 "Polo score too
//! low: submitter=X, receiver=Y"; a completed task moves the score, the
//! submitter −1 and the coordinator +[`polo_score`] of the task's
//! durations; a task that expires in the queue costs the coordinator 1.
//! Scores live in `<data>/pilot/scores.json` (an operator edits them while
//! the coordinator is stopped); task records in `<data>/pilot/tasks/`.
//! The seed's timeouts apply: a task still NEW after 1 minute is
//! cancelled, one queued for an hour without a worker starting it expires
//! (and its job is cancelled).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use shoal_core::coordinator::recovery::EndedTask;
use shoal_core::coordinator::{JobProgress, JobSpec, TaskSpec, Tier};
use shoal_core::kernels::KernelSpec;
use shoal_core::score::polo_score;
use shoal_core::task::{limits, TaskLifecycle, TaskStatus, Timeouts};
use shoal_core::wire::frame::{Frame, FrameType};
use shoal_core::wire::pilot::{
    self, PilotInbound, ResultType, SubmitRequest, SubmitResponse, TaskResultMessage, TaskStatusUpdate,
};
use shoal_core::{JobId, Millis};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::engine::{wall_now, EngineHandle};

/// Largest frame payload read (Pilot's reader allows exactly 2²⁴).
pub const MAX_FRAME: u32 = 1 << 24;
/// Tasks not yet ended at once; a submission beyond is refused.
pub const MAX_OPEN_TASKS: usize = 10_000;
/// Tasks of one Pilot job.
pub const MAX_TASKS: usize = 10_000;
/// Largest results file sent (a base64 file inside a 16 MiB frame).
pub const MAX_RESULTS_FILE: usize = 12 << 20;
/// Connections served at once.
const MAX_CONNECTIONS: usize = 256;
/// A client has this long to send its frame; a callback this long to connect and take it.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often open tasks are looked at.
const MONITOR_EVERY: Duration = Duration::from_millis(250);

/// `server.pilot`: where the port listens and its timeouts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PilotSettings {
    /// `host:port` to listen on (Pilot's is port 1003); empty: off.
    pub listen: String,
    /// A task still NEW this long is cancelled, ms (seed: 1 minute).
    pub accept_timeout_ms: u64,
    /// A queued task no worker started this long expires, ms (seed: 1 hour).
    pub queue_timeout_ms: u64,
    /// The coordinator's own name in the polo registry.
    pub receiver_id: String,
}

impl Default for PilotSettings {
    fn default() -> Self {
        PilotSettings {
            listen: String::new(),
            accept_timeout_ms: 60_000,
            queue_timeout_ms: 3_600_000,
            receiver_id: "shoal".into(),
        }
    }
}

/// A Shoal job as a Pilot `task_description` (JSON):
/// `{"kernel": {"Sha256": {"count": 2, "message_len": 8}}, "inputs":
/// [["<base64>"], …]}` (one list of base64 inputs per task) or
/// `"seeded": N` (N tasks whose inputs the coordinator generates from
/// seeds 0…N−1, as `shoal submit --seeded` does), with optional `name`,
/// `redundancy` and `min_tier` (1–3). The kernel is written as the
/// coordinator's `KernelSpec` is in JSON: `Sha256`, `MatmulF32` or
/// `MatmulF16` (`m`, `n`, `k`), `Mandelbrot` or `Custom`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// The job's name (default: `pilot <task id>`).
    #[serde(default)]
    pub name: String,
    /// What every task runs.
    pub kernel: KernelSpec,
    /// Each task's inputs, base64.
    #[serde(default)]
    pub inputs: Vec<Vec<String>>,
    /// Or this many tasks of generated inputs.
    #[serde(default)]
    pub seeded: u32,
    /// Replicas per task (default: the coordinator's).
    #[serde(default)]
    pub redundancy: Option<u8>,
    /// Lowest worker tier, 1–3.
    #[serde(default)]
    pub min_tier: Option<u8>,
}

impl JobRequest {
    /// Parses and checks a description; the error is the 400's message.
    pub fn parse(description: &str) -> Result<JobSpec, String> {
        let r: JobRequest =
            serde_json::from_str(description).map_err(|e| format!("task_description is not a Shoal job: {e}"))?;
        r.kernel.validate().map_err(|e| format!("kernel: {e}"))?;
        let tasks: Vec<Vec<Bytes>> = match (r.inputs.is_empty(), r.seeded) {
            (false, 0) => r
                .inputs
                .iter()
                .enumerate()
                .map(|(i, task)| {
                    task.iter()
                        .map(|b| base64::engine::general_purpose::STANDARD.decode(b).map(Bytes::from))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| format!("inputs[{i}] is not base64: {e}"))
                })
                .collect::<Result<_, _>>()?,
            (true, n) if n > 0 => {
                (0..u64::from(n)).map(|s| r.kernel.seeded_inputs(s).into_iter().map(Bytes::from).collect()).collect()
            }
            _ => return Err("a job has either `inputs` (one list per task) or `seeded` (a task count)".into()),
        };
        if tasks.len() > MAX_TASKS {
            return Err(format!("{} tasks; a Pilot job has at most {MAX_TASKS}", tasks.len()));
        }
        for (i, t) in tasks.iter().enumerate() {
            let refs: Vec<&[u8]> = t.iter().map(|b| &b[..]).collect();
            r.kernel.check_inputs(&refs).map_err(|e| format!("inputs[{i}]: {e}"))?;
        }
        let min_tier = match r.min_tier.unwrap_or(1) {
            1 => Tier::Low,
            2 => Tier::Mid,
            3 => Tier::High,
            n => return Err(format!("min_tier {n}: tiers are 1, 2 and 3")),
        };
        let mut spec =
            JobSpec::new(tasks.into_iter().map(|inputs| TaskSpec { kernel: r.kernel.clone(), inputs }).collect());
        spec.redundancy = r.redundancy;
        spec.min_tier = min_tier;
        Ok(spec)
    }
}

/// One received task, as kept on disk.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    request: SubmitRequest,
    /// The submitter's node id in the registry (its connection's IP).
    submitter: String,
    /// Where frames about it are delivered.
    callback: SocketAddr,
    job: Option<JobId>,
    lifecycle: TaskLifecycle,
}

/// The port's state: task records and the polo registry, mirrored on disk.
struct Desk {
    dir: PathBuf,
    settings: PilotSettings,
    tasks: BTreeMap<String, Record>,
    scores: BTreeMap<String, i64>,
}

impl Desk {
    fn load(data: &Path, settings: PilotSettings) -> std::io::Result<Desk> {
        let dir = data.join("pilot");
        std::fs::create_dir_all(dir.join("tasks"))?;
        let scores = match std::fs::read(dir.join("scores.json")) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| invalid(&dir.join("scores.json"), e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        let mut tasks = BTreeMap::new();
        for entry in std::fs::read_dir(dir.join("tasks"))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let r: Record = serde_json::from_slice(&std::fs::read(&path)?).map_err(|e| invalid(&path, e))?;
                tasks.insert(r.request.task_id.clone(), r);
            }
        }
        Ok(Desk { dir, settings, tasks, scores })
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts {
            accept: Millis(self.settings.accept_timeout_ms),
            queue_head: Millis(self.settings.queue_timeout_ms),
            accepted_stall: Millis(self.settings.accept_timeout_ms),
        }
    }

    fn score(&self, node: &str) -> i64 {
        self.scores.get(node).copied().unwrap_or(0)
    }

    fn adjust(&mut self, node: &str, delta: i64) {
        *self.scores.entry(node.to_owned()).or_insert(0) += delta;
        let json = serde_json::to_vec_pretty(&self.scores).unwrap_or_default();
        if let Err(e) = write_atomic(&self.dir.join("scores.json"), &json) {
            tracing::error!(error = %e, "cannot write the polo registry");
        }
    }

    fn save(&self, id: &str) {
        let Some(r) = self.tasks.get(id) else { return };
        let json = serde_json::to_vec_pretty(r).unwrap_or_default();
        if let Err(e) = write_atomic(&self.dir.join("tasks").join(format!("{id}.json")), &json) {
            tracing::error!(task = id, error = %e, "cannot write a Pilot task record");
        }
    }
}

fn invalid(path: &Path, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
}

/// Writes `bytes` to `path` whole or not at all (a temporary file, synced,
/// renamed over it).
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(tmp, path)
}

/// The running port.
#[derive(Clone)]
pub struct PilotPort {
    engine: EngineHandle,
    desk: Arc<Mutex<Desk>>,
}

/// Binds the port and starts serving it and watching its tasks, when
/// `settings.listen` names an address; returns the bound address.
pub async fn start(
    settings: &PilotSettings,
    data: &Path,
    engine: EngineHandle,
    stop: watch::Receiver<bool>,
) -> std::io::Result<Option<(SocketAddr, tokio::task::JoinHandle<()>)>> {
    if settings.listen.is_empty() {
        return Ok(None);
    }
    let settings = settings.clone();
    let listener = TcpListener::bind(&settings.listen).await?;
    let addr = listener.local_addr()?;
    let desk = Desk::load(data, settings)?;
    let port = PilotPort { engine, desk: Arc::new(Mutex::new(desk)) };
    tracing::info!(%addr, "Pilot submission port listening");
    let monitor = tokio::spawn(port.clone().monitor(stop.clone()));
    let task = tokio::spawn(async move {
        port.serve(listener, stop).await;
        monitor.abort();
    });
    Ok(Some((addr, task)))
}

impl PilotPort {
    fn desk(&self) -> std::sync::MutexGuard<'_, Desk> {
        self.desk.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn serve(self, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let (conn, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "Pilot port accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stop.changed() => return,
            };
            // Over the cap a connection is closed at once (no answer).
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else { continue };
            let port = self.clone();
            tokio::spawn(async move {
                if let Err(e) = tokio::time::timeout(IO_TIMEOUT, port.one_frame(conn, peer)).await {
                    tracing::debug!(%peer, error = %e, "Pilot client too slow");
                }
                drop(permit);
            });
        }
    }

    /// Reads one frame; answers a SUBMIT. Anything else, or a frame that
    /// does not decode, closes the connection without an answer (the seed's
    /// daemon does the same).
    async fn one_frame(self, mut conn: TcpStream, peer: SocketAddr) {
        let mut header = [0u8; 8];
        if conn.read_exact(&mut header).await.is_err() {
            return;
        }
        let frame_type = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_FRAME {
            tracing::debug!(%peer, len, "Pilot frame too large");
            return;
        }
        let mut payload = vec![0u8; len as usize];
        if conn.read_exact(&mut payload).await.is_err() {
            return;
        }
        let frame = Frame::new(FrameType(frame_type), payload);
        let request = match PilotInbound::decode(&frame) {
            Ok(PilotInbound::Submit(r)) => r,
            Ok(_) => return tracing::debug!(%peer, "Pilot frame other than SUBMIT ignored"),
            Err(e) => return tracing::debug!(%peer, error = %e, "undecodable Pilot frame"),
        };
        let task_id = request.task_id.clone();
        let (status, message) = match self.submit(request, peer).await {
            Ok(()) => (pilot::STATUS_ACCEPTED, "Task received with status NEW".to_owned()),
            Err(reason) => (pilot::STATUS_REJECTED, reason),
        };
        let mut out = BytesMut::new();
        let answer = SubmitResponse { task_id: task_id.clone(), status, message };
        if pilot::encode(&answer, &mut out).is_ok() {
            let _ = conn.write_all(&out).await;
            let _ = conn.shutdown().await;
        }
        if status == pilot::STATUS_ACCEPTED {
            self.accept(&task_id);
        }
    }

    /// Checks a submission and hands its job to the coordinator; the error
    /// is the reason a 400 carries.
    async fn submit(&self, request: SubmitRequest, peer: SocketAddr) -> Result<(), String> {
        let id = &request.task_id;
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err("task_id must be 1 to 64 letters, digits or dashes".into());
        }
        let callback = callback_of(&request.from_addr, peer.ip())?;
        let submitter = peer.ip().to_string();
        {
            let desk = self.desk();
            if desk.tasks.contains_key(id) {
                return Err(format!("task {id} was already submitted"));
            }
            if desk.tasks.values().filter(|r| !r.lifecycle.status().is_terminal()).count() >= MAX_OPEN_TASKS {
                return Err(format!("{MAX_OPEN_TASKS} Pilot tasks are open; try again later"));
            }
            let (mine, theirs) = (desk.score(&submitter), desk.score(&desk.settings.receiver_id));
            if mine < theirs {
                return Err(format!("Polo score too low: submitter={mine}, receiver={theirs}"));
            }
        }
        let spec = JobRequest::parse(&request.task_description)?;
        let name = format!("pilot {id}");
        let job = match self.engine.submit(spec, name, format!("pilot:{submitter}")).await {
            Ok(Ok(job)) => job,
            Ok(Err(e)) => return Err(format!("refused by the coordinator: {e}")),
            Err(e) => return Err(e.to_string()),
        };
        let record = Record {
            submitter,
            callback,
            job: Some(job),
            lifecycle: TaskLifecycle::new(wall_now()),
            request: request.clone(),
        };
        let mut desk = self.desk();
        desk.tasks.insert(id.clone(), record);
        desk.save(id);
        Ok(())
    }

    /// NEW → ACCEPTED and queued (the coordinator took its job).
    fn accept(&self, id: &str) {
        let now = wall_now();
        let mut desk = self.desk();
        let Some(r) = desk.tasks.get_mut(id) else { return };
        if r.lifecycle.accept(now).and_then(|()| r.lifecycle.stage(now)).is_err() {
            return;
        }
        let frames = status_frames(id, &r.lifecycle);
        let to = r.callback;
        desk.save(id);
        tokio::spawn(deliver(to, frames));
    }

    /// Moves every open task on: started, ended or timed out.
    async fn monitor(self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(MONITOR_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let open: Vec<(String, JobId)> = {
                let desk = self.desk();
                let open = desk.tasks.iter().filter(|(_, r)| !r.lifecycle.status().is_terminal());
                open.filter_map(|(id, r)| Some((id.clone(), r.job?))).collect()
            };
            if open.is_empty() {
                continue;
            }
            // One engine query for every open task.
            let jobs: Vec<JobId> = open.iter().map(|(_, j)| *j).collect();
            let Ok(states) = self
                .engine
                .query(move |c, _| {
                    let state = |j| (c.job_started(j), c.job_progress(j).is_none_or(JobProgress::finished));
                    jobs.into_iter().map(state).collect::<Vec<_>>()
                })
                .await
            else {
                continue;
            };
            for ((id, job), (started, finished)) in open.into_iter().zip(states) {
                self.step(&id, job, started, finished).await;
            }
        }
    }

    /// One look at one open task, given whether its job started (when)
    /// and whether it finished.
    async fn step(&self, id: &str, job: JobId, started: Option<shoal_core::Millis>, finished: bool) {
        let now = wall_now();
        if finished {
            return self.finish(id, job).await;
        }
        let mut desk = self.desk();
        let timeouts = desk.timeouts();
        let receiver = desk.settings.receiver_id.clone();
        let Some(r) = desk.tasks.get_mut(id) else { return };
        let before = r.lifecycle.status();
        if let Some(at) = started.filter(|_| before == TaskStatus::Accepted) {
            let _ = r.lifecycle.start(at.max(r.lifecycle.staged_at().unwrap_or(at)));
        } else if let Some(t) = r.lifecycle.expire_if_due_of(now, &timeouts) {
            tracing::info!(task = id, why = t.justification(), "Pilot task timed out");
            let engine = self.engine.clone();
            tokio::spawn(async move { engine.cancel(job).await });
        }
        let after = r.lifecycle.status();
        if after == before {
            return;
        }
        let frames = status_frames(id, &r.lifecycle);
        let to = r.callback;
        desk.save(id);
        if after == TaskStatus::Expired {
            desk.adjust(&receiver, -1);
        }
        tokio::spawn(deliver(to, frames));
    }

    /// The job ended: results to the submitter, scores moved.
    async fn finish(&self, id: &str, job: JobId) {
        let results = match self.results_file(job).await {
            Ok(r) => r,
            Err(e) => return tracing::warn!(task = id, error = %e, "cannot read a Pilot task's results"),
        };
        let now = wall_now();
        let mut desk = self.desk();
        let receiver = desk.settings.receiver_id.clone();
        let Some(r) = desk.tasks.get_mut(id) else { return };
        // Ended between two looks: the submitter still hears it started.
        let mut frames = Vec::new();
        if r.lifecycle.status() == TaskStatus::Accepted && r.lifecycle.start(now).is_ok() {
            frames = status_frames(id, &r.lifecycle);
        }
        if r.lifecycle.complete(now).and_then(|()| r.lifecycle.succeed(now)).is_err() {
            return;
        }
        let d = r.lifecycle.durations();
        let mut message = TaskResultMessage {
            task_id: id.to_owned(),
            result_type: ResultType::File,
            result_text: String::new(),
            filename: "results.txt".into(),
            file_data: Vec::new(),
            completed_at: rfc3339(now),
            time_idle_ms: d.idle_ms,
            time_staged_ms: d.staged_ms,
            time_cpu_ms: d.cpu_ms,
        };
        match results {
            Some(file) => message.file_data = file,
            None => {
                message.result_type = ResultType::Text;
                message.filename.clear();
                message.result_text = format!(
                    "the results are over the {MAX_RESULTS_FILE} bytes a Pilot frame carries: read them with `shoal results {job}`"
                );
            }
        }
        let mut out = BytesMut::new();
        let encoded = pilot::encode(&message, &mut out).is_ok();
        let status = TaskStatusUpdate {
            task_id: id.to_owned(),
            status: TaskStatus::Succeeded,
            justification: r.lifecycle.justification().to_owned(),
        };
        let encoded = encoded && pilot::encode(&status, &mut out).is_ok();
        let (to, submitter) = (r.callback, r.submitter.clone());
        desk.save(id);
        desk.adjust(&submitter, -1);
        let reward = polo_score(d.idle_ms, d.staged_ms, d.cpu_ms).reward;
        desk.adjust(&receiver, i64::try_from(reward).unwrap_or(i64::MAX));
        if encoded {
            frames.push(out.freeze());
            tokio::spawn(deliver(to, frames));
        }
    }

    /// `results.txt`: one JSON line per task in order (`verified` with
    /// base64 outputs, `dead_lettered` with the reason, `cancelled`), or
    /// None when it would not fit a frame.
    async fn results_file(&self, job: JobId) -> Result<Option<Vec<u8>>, String> {
        let mut file = Vec::new();
        let mut next = 0u32;
        let tasks =
            self.engine.query(move |c, _| c.job_progress(job).map(|p| p.tasks)).await.map_err(|e| e.to_string())?;
        let total = tasks.unwrap_or(0);
        loop {
            let from = next;
            let batch = self
                .engine
                .query(move |_, store| store.outcomes(job, from, 256))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            let Some(last) = batch.last().map(|(i, _)| *i) else { break };
            for (index, ended) in batch {
                for cancelled in next..index {
                    file.extend(result_line(cancelled, None));
                }
                file.extend(result_line(index, Some(ended)));
                next = index + 1;
            }
            if file.len() > MAX_RESULTS_FILE {
                return Ok(None);
            }
            next = next.max(last + 1);
        }
        for cancelled in next..total {
            file.extend(result_line(cancelled, None));
        }
        Ok((file.len() <= MAX_RESULTS_FILE.min(limits::MAX_RESULT_FILE)).then_some(file))
    }
}

/// One line of `results.txt`.
fn result_line(index: u32, ended: Option<EndedTask>) -> Vec<u8> {
    let b64 = |b: &Bytes| base64::engine::general_purpose::STANDARD.encode(b);
    let v = match ended {
        Some(EndedTask::Verified(v)) => serde_json::json!({
            "index": index,
            "state": "verified",
            "outputs": v.outputs.iter().map(b64).collect::<Vec<_>>(),
        }),
        Some(EndedTask::DeadLettered(d)) => {
            serde_json::json!({"index": index, "state": "dead_lettered", "reason": d.reason})
        }
        None => serde_json::json!({"index": index, "state": "cancelled"}),
    };
    let mut line = serde_json::to_vec(&v).unwrap_or_default();
    line.push(b'\n');
    line
}

/// The callback address a submission names: `host:port` with the IP of
/// the connection it came on.
fn callback_of(from_addr: &str, peer: IpAddr) -> Result<SocketAddr, String> {
    let why = || {
        format!(
            "from_addr must be host:port on this connection's own address ({peer}), where status updates and results are delivered"
        )
    };
    let addr: SocketAddr = from_addr.parse().map_err(|_| why())?;
    if addr.ip() != peer || addr.port() == 0 {
        return Err(why());
    }
    Ok(addr)
}

/// A STATUS_UPDATE frame of a task's current status.
fn status_frames(id: &str, lifecycle: &TaskLifecycle) -> Vec<Bytes> {
    let update = TaskStatusUpdate {
        task_id: id.to_owned(),
        status: lifecycle.status(),
        justification: lifecycle.justification().to_owned(),
    };
    let mut out = BytesMut::new();
    match pilot::encode(&update, &mut out) {
        Ok(()) => vec![out.freeze()],
        Err(_) => Vec::new(),
    }
}

/// Sends `frames` to a submitter on one connection, best effort.
async fn deliver(to: SocketAddr, frames: Vec<Bytes>) {
    let send = async {
        let mut conn = TcpStream::connect(to).await?;
        for f in &frames {
            conn.write_all(f).await?;
        }
        conn.shutdown().await
    };
    match tokio::time::timeout(IO_TIMEOUT, send).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(%to, error = %e, "Pilot callback failed"),
        Err(_) => tracing::debug!(%to, "Pilot callback timed out"),
    }
}

/// `t` as RFC 3339 UTC with whole seconds.
fn rfc3339(t: Millis) -> String {
    let secs = i64::try_from(t.0 / 1_000).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_descriptions_parse_or_say_why() {
        let spec =
            JobRequest::parse(r#"{"kernel": {"Sha256": {"count": 2, "message_len": 8}}, "seeded": 3}"#).expect("a job");
        assert_eq!(spec.tasks.len(), 3);
        let inline =
            r#"{"kernel": {"Sha256": {"count": 1, "message_len": 4}}, "inputs": [["AAECAw=="]], "min_tier": 2}"#;
        let spec = JobRequest::parse(inline).expect("a job");
        assert_eq!((spec.tasks[0].inputs[0].as_ref(), spec.min_tier), (&[0u8, 1, 2, 3][..], Tier::Mid));
        for (bad, says) in [
            ("run my script", "not a Shoal job"),
            (r#"{"kernel": {"Sha256": {"count": 1, "message_len": 4}}}"#, "either `inputs`"),
            (r#"{"kernel": {"Sha256": {"count": 1, "message_len": 4}}, "inputs": [["!!"]]}"#, "not base64"),
            (r#"{"kernel": {"Sha256": {"count": 1, "message_len": 4}}, "inputs": [["AAE="]]}"#, "inputs[0]"),
            (r#"{"kernel": {"Sha256": {"count": 1, "message_len": 4}}, "seeded": 1, "min_tier": 4}"#, "min_tier"),
            (r#"{"kernel": {"Sha256": {"count": 1, "message_len": 4}}, "seeded": 20000}"#, "at most"),
        ] {
            let err = JobRequest::parse(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn callbacks_go_only_to_the_submitters_own_address() {
        let peer: IpAddr = "127.0.0.1".parse().expect("ip");
        assert_eq!(callback_of("127.0.0.1:4000", peer), Ok("127.0.0.1:4000".parse().expect("addr")));
        for bad in ["10.0.0.1:4000", "0:0000.0000.0001", "127.0.0.1:0", "localhost:4000"] {
            assert!(callback_of(bad, peer).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_stamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(Millis(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(Millis(1_798_675_200_999)), "2026-12-31T00:00:00Z");
        assert_eq!(rfc3339(Millis(951_782_400_000)), "2000-02-29T00:00:00Z");
    }
}
