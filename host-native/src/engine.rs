//! The coordinator loop, in two threads that form a pipeline:
//!
//! - the **engine** owns the sans-I/O [`Coordinator`]: it takes commands in
//!   batches, feeds them to the core with the time, answers queries, and
//!   hands everything the batch produced (diffs, frames, events, replies)
//!   to
//! - the **committer**, which makes the diffs of every batch waiting for it
//!   durable in one transaction (group commit), and only then performs what
//!   the core decided: frames to workers, replies to clients, events to
//!   dashboards.
//!
//! So nothing is acknowledged before it is durable, and the engine computes
//! batch N+1 while batch N is being written. The host adds no decision of
//! its own.
//!
//! Everything else (sockets, gRPC, HTTP) talks to it through an
//! [`EngineHandle`]: commands in over a channel, answers back on oneshots,
//! events and diffs out on broadcast channels.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use shoal_core::coordinator::ledger::StateDiff;
use shoal_core::coordinator::{
    Answer, Command as CoreCommand, ConnId, Coordinator, CoordinatorConfig, DeleteJobError, Event, Input, OriginKey,
    Output, PreparedJob, SubmitError, Ticket,
};
use shoal_core::wire::{Envelope, Message};
use shoal_core::{JobId, Millis};
use tokio::sync::{broadcast, oneshot};

use crate::store::{DeletedJob, JobMeta, Store, StoreError};

mod clock;
mod committer;
mod retention;

use self::retention::{Batch, Retention};
pub use clock::{wall_now, Clock};

/// Something a connection task must do.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // moved through a channel, never stored in bulk
pub enum Outbound {
    /// Send these envelopes, in order (everything one batch produced for
    /// the connection: one wake-up of its task, one WebSocket message).
    Envelopes(Vec<Envelope>),
    /// Close the connection, for this reason.
    Close(String),
}

/// A query: run on the engine thread with the current state; its answer
/// (the returned [`Reply`]) is delivered once the batch it ran in is
/// durable, so nothing a client learns can be lost by a crash.
pub type Query = Box<dyn FnOnce(&Coordinator, &dyn Store) -> Reply + Send>;

/// Delivers an answer.
pub type Reply = Box<dyn FnOnce() + Send>;

/// What the engine is asked to do.
pub enum Command {
    /// A worker connection opened; frames for it go to `tx`.
    Connected {
        /// Host's connection number.
        conn: ConnId,
        /// Its network origin.
        origin: OriginKey,
        /// The host it was made to (its `Host` header).
        host: Option<String>,
        /// Its outbound queue.
        tx: tokio::sync::mpsc::Sender<Outbound>,
    },
    /// An envelope arrived from a worker.
    Received {
        /// From which connection.
        conn: ConnId,
        /// What.
        envelope: Envelope,
    },
    /// A worker connection ended.
    Disconnected {
        /// Which.
        conn: ConnId,
        /// Why, as the data plane saw it.
        reason: String,
    },
    /// A client submits a job; answered once it is durable.
    Submit {
        /// The job, its inputs hashed (off the engine's thread).
        job: PreparedJob,
        /// The client's name for it.
        name: String,
        /// The id of the token that submits it (empty: none).
        owner: String,
        /// The client's id for the submission (empty: none).
        request_id: String,
        /// The dead letters the job re-queues, task by task (empty: a new job).
        requeue: Vec<(JobId, u32)>,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<JobId, SubmitError>>,
    },
    /// A client deletes a finished job's records; answered once durable
    /// (false: no such job is stored).
    Delete {
        /// Which.
        job: JobId,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<bool, DeleteJobError>>,
    },
    /// A client cancels a job (false: unknown or finished).
    Cancel {
        /// Which.
        job: JobId,
        /// Where the answer goes.
        reply: oneshot::Sender<bool>,
    },
    /// Read state.
    Query(Query),
    /// Close the open epoch now (operator request); answered once durable.
    CloseEpoch {
        /// Where the answer goes.
        reply: oneshot::Sender<()>,
    },
    /// Any other command of the core, answered with the core's own
    /// answer once its round is durable.
    Core {
        /// What to do.
        command: CoreCommand,
        /// Where the answer goes.
        reply: oneshot::Sender<Answer>,
    },
    /// Stop the loop after this batch.
    Stop,
}

/// An event with the time it happened, for live feeds.
#[derive(Clone, Debug)]
pub struct TimedEvent {
    /// Coordinator clock.
    pub at: Millis,
    /// What happened.
    pub event: Event,
}

/// Counters a scrape or a status call reads without a round trip.
#[derive(Debug)]
pub struct Gauges {
    /// When the engine started (for uptime).
    pub started: std::time::Instant,
    /// Worker connections open.
    pub connections: AtomicU64,
    /// Batches processed.
    pub batches: AtomicU64,
    /// Commits made.
    pub commits: AtomicU64,
}

/// The way to the engine.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Command>,
    events: broadcast::Sender<TimedEvent>,
    settlements: broadcast::Sender<TimedEvent>,
    diffs: broadcast::Sender<Arc<StateDiff>>,
    /// Live counters.
    pub gauges: Arc<Gauges>,
    stopped: Arc<AtomicBool>,
}

/// The engine stopped (shutdown or a storage failure).
#[derive(Debug, thiserror::Error)]
#[error("the coordinator is not running")]
pub struct EngineGone;

impl EngineHandle {
    /// Sends a command.
    pub fn send(&self, c: Command) -> Result<(), EngineGone> {
        self.tx.send(c).map_err(|_| EngineGone)
    }

    /// Runs `f` on the engine thread and returns what it returns.
    pub async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Coordinator, &dyn Store) -> T + Send + 'static,
    ) -> Result<T, EngineGone> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Query(Box::new(move |c, s| {
            let answer = f(c, s);
            Box::new(move || {
                let _ = tx.send(answer);
            })
        })))?;
        rx.await.map_err(|_| EngineGone)
    }

    /// Submits a job for `owner` (a token id, or empty); returns once it
    /// is durable. A [`JobSpec`](shoal_core::coordinator::JobSpec) is
    /// hashed on the caller's thread; a [`PreparedJob`] was hashed as it was built.
    pub async fn submit(
        &self,
        job: impl Into<PreparedJob>,
        name: String,
        owner: String,
    ) -> Result<Result<JobId, SubmitError>, EngineGone> {
        self.submit_request(job, name, owner, String::new()).await
    }

    /// [`EngineHandle::submit`], recording the client's `request_id` with
    /// the job in the same commit (the caller makes sure it is new).
    pub async fn submit_request(
        &self,
        job: impl Into<PreparedJob>,
        name: String,
        owner: String,
        request_id: String,
    ) -> Result<Result<JobId, SubmitError>, EngineGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Submit { job: job.into(), name, owner, request_id, requeue: Vec::new(), reply })?;
        rx.await.map_err(|_| EngineGone)
    }

    /// Submits `job` as the re-run of dead letters `from` (task `i` of it
    /// is `from[i]`), each recording where it went; returns once durable.
    pub async fn requeue(
        &self,
        job: impl Into<PreparedJob>,
        name: String,
        owner: String,
        from: Vec<(JobId, u32)>,
    ) -> Result<Result<JobId, SubmitError>, EngineGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Submit { job: job.into(), name, owner, request_id: String::new(), requeue: from, reply })?;
        rx.await.map_err(|_| EngineGone)
    }

    /// Deletes a finished job's records (false: not stored); returns once
    /// the deletion is durable.
    pub async fn delete(&self, job: JobId) -> Result<Result<bool, DeleteJobError>, EngineGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Delete { job, reply })?;
        rx.await.map_err(|_| EngineGone)
    }

    /// Cancels a job.
    pub async fn cancel(&self, job: JobId) -> Result<bool, EngineGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Cancel { job, reply })?;
        rx.await.map_err(|_| EngineGone)
    }

    /// Settles the open epoch now.
    pub async fn close_epoch(&self) -> Result<(), EngineGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::CloseEpoch { reply })?;
        rx.await.map_err(|_| EngineGone)
    }

    /// Performs a command of the core (one without a call of its own here)
    /// and returns its answer once durable.
    pub async fn command(&self, command: CoreCommand) -> Result<Answer, EngineGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Core { command, reply })?;
        rx.await.map_err(|_| EngineGone)
    }

    /// Live events from now on.
    pub fn events(&self) -> broadcast::Receiver<TimedEvent> {
        self.events.subscribe()
    }

    /// Settled epochs from now on (their own channel: a listener to these
    /// rare events neither wakes on every task nor lags behind them).
    pub fn settlements(&self) -> broadcast::Receiver<TimedEvent> {
        self.settlements.subscribe()
    }

    /// Live diffs from now on.
    pub fn diffs(&self) -> broadcast::Receiver<Arc<StateDiff>> {
        self.diffs.subscribe()
    }

    /// Whether the engine has stopped.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }
}

/// The core command of a submission: a new job, or the re-run of dead
/// letters `requeue`.
fn submission(job: PreparedJob, requeue: Vec<(JobId, u32)>) -> CoreCommand {
    if requeue.is_empty() {
        CoreCommand::SubmitJob(job)
    } else {
        CoreCommand::RequeueDeadLetters { from: requeue, job }
    }
}

/// The engine's settings from the service configuration.
#[derive(Clone, Copy, Debug)]
pub struct EngineSettings {
    /// Diffs kept in storage.
    pub diff_retain: u64,
    /// Diffs kept for live subscribers.
    pub diff_ring: usize,
    /// Finished jobs are deleted this long after they finished (None: kept).
    pub keep_finished: Option<Millis>,
    /// How often retention looks for jobs to delete.
    pub sweep_every: Millis,
}

/// Most commands taken into one batch.
const MAX_BATCH: usize = 8192;
/// Batches the engine may run ahead of the committer.
const PIPELINE_DEPTH: usize = 4;
/// Outstanding offers tracked for the latency histogram at most.
const MAX_TRACKED_OFFERS: usize = 200_000;

/// What one batch produced, for the committer.
struct Flush {
    /// Batch number.
    batch: u64,
    /// Host clock at the batch.
    clock: Millis,
    /// Diffs to make durable.
    diffs: Vec<StateDiff>,
    /// Jobs accepted and deleted in the batch, and retention's rows.
    records: Batch,
    /// Connections opened (`Some`) and closed (`None`), in order, before the actions.
    registrations: Vec<(ConnId, Option<tokio::sync::mpsc::Sender<Outbound>>)>,
    /// Frames, closes and events.
    actions: Vec<Output>,
    /// Answers to deliver.
    replies: Vec<Reply>,
    /// Last batch: say goodbye to every worker and stop.
    stop: bool,
}

struct Engine {
    coord: Coordinator,
    store: Arc<dyn Store>,
    clock: Clock,
    rx: mpsc::Receiver<Command>,
    committer: mpsc::SyncSender<Flush>,
    durable: Arc<AtomicU64>,
    batch: u64,
    /// Jobs finished in a batch: forgotten from memory once it is durable.
    finished: std::collections::VecDeque<(u64, JobId)>,
    gauges: Arc<Gauges>,
    next_gauges: Millis,
    /// The crowded-origin warning was given for the current episode.
    origin_warned: bool,
    /// When each outstanding offer was produced, for the dispatch-latency
    /// histogram (offer → acknowledgement, the commit included).
    offered: HashMap<shoal_core::AssignmentId, std::time::Instant>,
    /// When each open job was submitted (coordinator clock), for the
    /// submit-to-verified latency histogram; read from storage for jobs
    /// from before a restart, dropped when the job finishes.
    submitted_at: HashMap<JobId, Millis>,
    /// The last ticket given to a command.
    next_ticket: u64,
    /// When finished jobs are deleted.
    retention: Retention,
    /// The batch and the core's inputs, reused round after round (grown
    /// afresh each round they were a tenth of the engine thread's time).
    commands: Vec<Command>,
    inputs: Vec<Input>,
    histograms: Histograms,
}

/// The engine's histograms, looked up once: a registry lookup per record
/// cost the engine thread ~3 % at 65 000 tasks/s.
struct Histograms {
    dispatch: metrics::Histogram,
    query: metrics::Histogram,
    latency: metrics::Histogram,
}

struct Committer {
    store: Arc<dyn Store>,
    rx: mpsc::Receiver<Flush>,
    engine: mpsc::Sender<Command>,
    conns: HashMap<ConnId, tokio::sync::mpsc::Sender<Outbound>>,
    events: broadcast::Sender<TimedEvent>,
    settlements: broadcast::Sender<TimedEvent>,
    diffs: broadcast::Sender<Arc<StateDiff>>,
    durable: Arc<AtomicU64>,
    gauges: Arc<Gauges>,
    retain: u64,
}

/// Recovers the coordinator from `store` and starts the pipeline on its
/// own threads. The returned join handle yields its end: `Ok` after a
/// stop, the storage error that stopped it otherwise.
pub fn start(
    cfg: CoordinatorConfig,
    secret: Option<shoal_core::auth::MasterSecret>,
    store: Arc<dyn Store>,
    settings: EngineSettings,
) -> Result<(EngineHandle, std::thread::JoinHandle<Result<(), StoreError>>), StoreError> {
    let started = std::time::Instant::now();
    tracing::info!("recovering from storage (about a second per million stored tasks)");
    let (snapshot, stored_clock) = store.recover()?;
    let mut clock = Clock::resume(stored_clock);
    let now = clock.now();
    let open_jobs = snapshot.open_jobs().count();
    let height = snapshot.ledger_height;
    let mut entropy = [0u8; 32];
    getrandom::fill(&mut entropy).map_err(|e| StoreError::Db(format!("no entropy: {e}")))?;
    let coord = Coordinator::recover(cfg, secret, entropy, now, snapshot);
    tracing::info!(
        open_jobs,
        pending_tasks = coord.pending_tasks(),
        ledger_height = height,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "coordinator recovered from storage"
    );
    let (tx, rx) = mpsc::channel();
    let (events, _) = broadcast::channel(4096);
    let (settlements, _) = broadcast::channel(64);
    let (diffs, _) = broadcast::channel(settings.diff_ring.max(1));
    let gauges = Arc::new(Gauges {
        started: std::time::Instant::now(),
        connections: AtomicU64::new(0),
        batches: AtomicU64::new(0),
        commits: AtomicU64::new(0),
    });
    let stopped = Arc::new(AtomicBool::new(false));
    let durable = Arc::new(AtomicU64::new(0));
    let handle = EngineHandle {
        tx: tx.clone(),
        events: events.clone(),
        settlements: settlements.clone(),
        diffs: diffs.clone(),
        gauges: gauges.clone(),
        stopped: stopped.clone(),
    };
    let (to_committer, flushes) = mpsc::sync_channel(PIPELINE_DEPTH);
    let committer = Committer {
        store: store.clone(),
        rx: flushes,
        engine: tx,
        conns: HashMap::new(),
        events,
        settlements,
        diffs,
        durable: durable.clone(),
        gauges: gauges.clone(),
        retain: settings.diff_retain,
    };
    let committer = std::thread::Builder::new()
        .name("shoal-commit".into())
        .spawn(move || committer.run())
        .map_err(|e| StoreError::Db(format!("cannot start the committer thread: {e}")))?;
    let engine = Engine {
        coord,
        store,
        clock,
        rx,
        committer: to_committer,
        durable,
        batch: 0,
        finished: std::collections::VecDeque::new(),
        gauges,
        next_gauges: Millis::ZERO,
        origin_warned: false,
        offered: HashMap::new(),
        submitted_at: HashMap::new(),
        next_ticket: 0,
        retention: Retention::new(settings.keep_finished, settings.sweep_every),
        commands: Vec::new(),
        inputs: Vec::new(),
        histograms: Histograms {
            dispatch: metrics::histogram!("shoal_dispatch_seconds"),
            query: metrics::histogram!("shoal_engine_query_seconds"),
            latency: metrics::histogram!("shoal_task_latency_seconds"),
        },
    };
    let join = std::thread::Builder::new()
        .name("shoal-engine".into())
        .spawn(move || {
            engine.run();
            // The committer ends when the engine's sender is dropped (or on its own error).
            let r = committer.join().unwrap_or_else(|_| Err(StoreError::Db("committer panicked".into())));
            stopped.store(true, Ordering::SeqCst);
            if let Err(e) = &r {
                tracing::error!(error = %e, "coordinator loop stopped");
            }
            r
        })
        .map_err(|e| StoreError::Db(format!("cannot start the engine thread: {e}")))?;
    Ok((handle, join))
}

/// A command of this batch waiting for the core's answer.
enum Waiting {
    Submit {
        name: String,
        owner: String,
        request_id: String,
        tasks: u32,
        inputs_apart: Vec<shoal_core::Digest>,
        reply: oneshot::Sender<Result<JobId, SubmitError>>,
    },
    /// A deletion: its inputs stored apart; the row retention walked
    /// (when it asked); who asked (none: retention).
    Delete {
        job: JobId,
        inputs: Vec<shoal_core::Digest>,
        ended: Option<Millis>,
        reply: Option<oneshot::Sender<Result<bool, DeleteJobError>>>,
    },
    Cancel(oneshot::Sender<bool>),
    CloseEpoch(oneshot::Sender<()>),
    Core(oneshot::Sender<Answer>),
}

impl Waiting {
    /// The reply to deliver once the batch is durable (an accepted job's
    /// metadata, a deleted job's rows join the same commit).
    fn answer(self, answer: Answer, now: Millis, records: &mut Batch) -> Reply {
        match (self, answer) {
            (
                Waiting::Submit { name, owner, request_id, tasks, inputs_apart, reply },
                Answer::JobSubmitted(r) | Answer::Requeued(r),
            ) => {
                if let Ok(job) = &r {
                    let meta = JobMeta { name, tasks, submitted: now, owner, inputs_apart, request_id };
                    records.jobs.push((*job, meta));
                }
                Box::new(move || {
                    let _ = reply.send(r);
                })
            }
            (Waiting::Delete { job, inputs, ended, reply }, Answer::JobDeleted(r)) => {
                if r.is_ok() {
                    records.deleted.push(DeletedJob { job, inputs });
                    records.ended_rows.extend(ended.map(|at| (at, job)));
                    metrics::counter!("shoal_jobs_deleted_total", "by" => if reply.is_some() { "request" } else { "retention" })
                        .increment(1);
                } else if reply.is_none() {
                    tracing::warn!(%job, "retention could not delete a job the store lists as finished");
                }
                Box::new(move || {
                    if let Some(reply) = reply {
                        let _ = reply.send(r.map(|()| true));
                    }
                })
            }
            (Waiting::Cancel(reply), Answer::JobCancelled(known)) => Box::new(move || {
                let _ = reply.send(known);
            }),
            (Waiting::CloseEpoch(reply), Answer::EpochClosed) => Box::new(move || {
                let _ = reply.send(());
            }),
            (Waiting::Core(reply), answer) => Box::new(move || {
                let _ = reply.send(answer);
            }),
            (_, answer) => {
                // Dropping the reply tells the caller the engine is gone;
                // the core answers each command with its own kind.
                tracing::error!(?answer, "an answer of another kind than its command");
                Box::new(|| {})
            }
        }
    }
}

impl Engine {
    fn run(mut self) {
        let mut stop = false;
        while !stop {
            let now = self.clock.now();
            let wait = self.coord.poll_timeout().map_or(1_000, |t| t.0.saturating_sub(now.0)).min(1_000);
            let mut batch = std::mem::take(&mut self.commands);
            match self.rx.recv_timeout(Duration::from_millis(wait)) {
                Ok(c) => batch.push(c),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stop = true,
            }
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            let flush = self.step(&mut batch, stop);
            batch.clear(); // drained by `step`; never a command twice
            self.commands = batch;
            stop |= flush.stop;
            if self.committer.send(flush).is_err() {
                // The committer stopped on a storage error; the join reports it.
                return;
            }
            self.forget_durable();
        }
    }

    /// A fresh ticket for a command.
    fn ticket(&mut self) -> Ticket {
        self.next_ticket += 1;
        Ticket(self.next_ticket)
    }

    /// Forgets jobs whose end is durable (their results are read from storage from now on).
    fn forget_durable(&mut self) {
        let durable = self.durable.load(Ordering::Acquire);
        while self.finished.front().is_some_and(|(b, _)| *b <= durable) {
            if let Some((_, job)) = self.finished.pop_front() {
                self.coord.forget_job(job);
            }
        }
    }

    /// Processes one batch into what the committer must do: every command
    /// of the batch is one input of one round of the core (one diff, one
    /// commit); queries read the state that round left.
    fn step(&mut self, batch: &mut Vec<Command>, mut stop: bool) -> Flush {
        self.batch += 1;
        let now_us = self.clock.now_us();
        let now = now_us.millis();
        let mut inputs = std::mem::take(&mut self.inputs);
        let mut queries: Vec<Query> = Vec::new();
        let mut waiting: HashMap<Ticket, Waiting> = HashMap::new();
        let mut registrations = Vec::new();
        // Answers known before the round (a job to delete that is not stored).
        let mut early: Vec<Reply> = Vec::new();
        let mut records = Batch::default();
        for (ended, job) in self.retention.due(now, self.store.as_ref(), &mut records) {
            if let Ok((waits, input)) = self.deletion(job, Some(ended), None) {
                let ticket = self.ticket();
                waiting.insert(ticket, waits);
                inputs.push(Input::Command { ticket, command: input });
            }
        }
        for cmd in batch.drain(..) {
            match cmd {
                Command::Connected { conn, origin, host, tx } => {
                    registrations.push((conn, Some(tx)));
                    inputs.push(Input::Connected { conn, origin, host });
                }
                Command::Received { conn, envelope } => {
                    if let Message::TaskAck(a) = &envelope.message {
                        if let Some(sent) = self.offered.remove(&a.assignment) {
                            self.histograms.dispatch.record(sent.elapsed().as_secs_f64());
                        }
                    }
                    inputs.push(Input::Received { conn, envelope });
                }
                Command::Disconnected { conn, reason } => {
                    registrations.push((conn, None));
                    inputs.push(Input::Disconnected { conn, reason });
                }
                Command::Submit { job, name, owner, request_id, requeue, reply } => {
                    let tasks = job.spec().tasks.len() as u32;
                    let inputs_apart = job.inputs_apart();
                    let ticket = self.ticket();
                    waiting.insert(ticket, Waiting::Submit { name, owner, request_id, tasks, inputs_apart, reply });
                    inputs.push(Input::Command { ticket, command: submission(job, requeue) });
                }
                Command::Delete { job, reply } => match self.deletion(job, None, Some(reply)) {
                    Ok((waits, input)) => {
                        let ticket = self.ticket();
                        waiting.insert(ticket, waits);
                        inputs.push(Input::Command { ticket, command: input });
                    }
                    Err(answer) => early.push(answer),
                },
                Command::Cancel { job, reply } => {
                    let ticket = self.ticket();
                    waiting.insert(ticket, Waiting::Cancel(reply));
                    inputs.push(Input::Command { ticket, command: CoreCommand::CancelJob(job) });
                }
                Command::Query(q) => queries.push(q),
                Command::CloseEpoch { reply } => {
                    let ticket = self.ticket();
                    waiting.insert(ticket, Waiting::CloseEpoch(reply));
                    inputs.push(Input::Command { ticket, command: CoreCommand::CloseEpoch });
                }
                Command::Core { command, reply } => {
                    let ticket = self.ticket();
                    waiting.insert(ticket, Waiting::Core(reply));
                    inputs.push(Input::Command { ticket, command });
                }
                Command::Stop => stop = true,
            }
        }
        if self.coord.poll_timeout().is_some_and(|t| t <= now) {
            inputs.push(Input::Tick);
        }
        self.coord.handle_batch_at(now_us, inputs.drain(..));
        self.inputs = inputs;
        let mut replies = self.answer_queries(queries);
        replies.extend(early);
        self.gauges.batches.fetch_add(1, Ordering::Relaxed);
        let mut diffs = Vec::new();
        let mut actions = Vec::new();
        while let Some(o) = self.coord.poll_output() {
            match o {
                Output::Persist(d) => diffs.push(d),
                Output::Answer { ticket, answer } => match waiting.remove(&ticket) {
                    Some(w) => replies.push(w.answer(answer, now, &mut records)),
                    None => tracing::error!(ticket = ticket.0, "an answer nobody waits for"),
                },
                other => {
                    self.note(&other, now);
                    actions.push(other);
                }
            }
        }
        for (job, meta) in &records.jobs {
            self.submitted_at.insert(*job, meta.submitted);
        }
        if now >= self.next_gauges {
            self.next_gauges = now + Millis(1_000);
            crate::metrics::record_gauges(&self.coord);
            self.watch_origins();
        }
        Flush { batch: self.batch, clock: now, diffs, records, registrations, actions, replies, stop }
    }
}

impl Engine {
    /// Runs this batch's reads, each timed: what readers (dashboards, the
    /// CLI) cost the engine's thread.
    fn answer_queries(&self, queries: Vec<Query>) -> Vec<Reply> {
        queries
            .into_iter()
            .map(|q| {
                let started = std::time::Instant::now();
                let reply = q(&self.coord, self.store.as_ref());
                self.histograms.query.record(started.elapsed().as_secs_f64());
                reply
            })
            .collect()
    }

    /// What the engine keeps of an output besides passing it on: offers
    /// (for the dispatch histogram), finished jobs (to forget once
    /// durable), verified tasks (for the latency histogram).
    fn note(&mut self, output: &Output, now: Millis) {
        match output {
            Output::Send { envelope: Envelope { message: Message::TaskOffer(o), .. }, .. } => {
                if self.offered.len() >= MAX_TRACKED_OFFERS {
                    // Offers never acknowledged (their workers left): forget them all.
                    self.offered.clear();
                }
                self.offered.insert(o.assignment, std::time::Instant::now());
            }
            Output::Event(Event::JobFinished { job, .. }) => {
                self.finished.push_back((self.batch, *job));
                self.submitted_at.remove(job);
            }
            Output::Event(Event::TaskVerified { job, .. }) => self.record_latency(*job, now),
            _ => {}
        }
    }

    /// Records a verified task's submit-to-verified latency (the promise
    /// the latency histogram keeps) from its job's submission time.
    fn record_latency(&mut self, job: JobId, now: Millis) {
        let submitted = match self.submitted_at.get(&job) {
            Some(at) => *at,
            None => match self.store.job(job) {
                Ok(Some(info)) => *self.submitted_at.entry(job).or_insert(info.submitted),
                _ => return,
            },
        };
        let seconds = now.0.saturating_sub(submitted.0) as f64 / 1000.0;
        self.histograms.latency.record(seconds);
    }

    /// Warns (once per episode) and flags in a metric when most admitted
    /// workers share one network origin while replicas must come from
    /// distinct origins: tasks then wait for a second origin that never
    /// comes, typically because a proxy hides the workers' addresses.
    fn watch_origins(&mut self) {
        let crowded = self.coord.origin_crowded();
        metrics::gauge!("shoal_origin_crowded").set(if crowded.is_some() { 1.0 } else { 0.0 });
        if let (Some((admitted, largest)), false) = (crowded, self.origin_warned) {
            tracing::warn!(
                admitted,
                on_one_origin = largest,
                "most admitted workers share one network origin while coordinator.distinct_origins is on: \
                 a task's replicas must come from distinct origins, so tasks wait (behind a proxy every worker \
                 shows the proxy's address)"
            );
        }
        self.origin_warned = crowded.is_some();
    }
}
