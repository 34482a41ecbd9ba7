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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shoal_core::coordinator::ledger::StateDiff;
use shoal_core::coordinator::{
    Answer, Command as CoreCommand, ConnId, Coordinator, CoordinatorConfig, Event, Input, OriginKey, Output,
    PreparedJob, SubmitError, Ticket,
};
use shoal_core::wire::message::Goodbye;
use shoal_core::wire::{Envelope, Message};
use shoal_core::{JobId, Millis};
use tokio::sync::{broadcast, oneshot};

use crate::store::{Commit, JobMeta, Store, StoreError};

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
        /// Where the answer goes.
        reply: oneshot::Sender<Result<JobId, SubmitError>>,
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
        let (reply, rx) = oneshot::channel();
        self.send(Command::Submit { job: job.into(), name, owner, reply })?;
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

/// The host clock: wall-clock milliseconds, never behind the last value
/// stored (so deadlines survive a restart) and never going backwards.
#[derive(Debug)]
pub struct Clock {
    last: Millis,
}

impl Clock {
    /// A clock that continues from `stored`.
    pub fn resume(stored: Millis) -> Self {
        Clock { last: stored }
    }

    /// Now.
    pub fn now(&mut self) -> Millis {
        self.last = self.last.max(wall_now());
        self.last
    }
}

/// The wall clock in the core's unit (ms since the Unix epoch); it may step
/// back: state machines read a [`Clock`].
pub fn wall_now() -> Millis {
    Millis(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
}

/// The engine's settings from the service configuration.
#[derive(Clone, Copy, Debug)]
pub struct EngineSettings {
    /// Diffs kept in storage.
    pub diff_retain: u64,
    /// Diffs kept for live subscribers.
    pub diff_ring: usize,
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
    /// Jobs accepted in the batch.
    jobs: Vec<(JobId, JobMeta)>,
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
    /// The last ticket given to a command.
    next_ticket: u64,
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
        next_ticket: 0,
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
    Submit { name: String, owner: String, tasks: u32, reply: oneshot::Sender<Result<JobId, SubmitError>> },
    Cancel(oneshot::Sender<bool>),
    CloseEpoch(oneshot::Sender<()>),
}

impl Waiting {
    /// The reply to deliver once the batch is durable (an accepted job's
    /// metadata joins the same commit).
    fn answer(self, answer: Answer, now: Millis, jobs: &mut Vec<(JobId, JobMeta)>) -> Reply {
        match (self, answer) {
            (Waiting::Submit { name, owner, tasks, reply }, Answer::JobSubmitted(r)) => {
                if let Ok(job) = &r {
                    jobs.push((*job, JobMeta { name, tasks, submitted: now, owner }));
                }
                Box::new(move || {
                    let _ = reply.send(r);
                })
            }
            (Waiting::Cancel(reply), Answer::JobCancelled(known)) => Box::new(move || {
                let _ = reply.send(known);
            }),
            (Waiting::CloseEpoch(reply), Answer::EpochClosed) => Box::new(move || {
                let _ = reply.send(());
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

/// Envelopes of one batch, grouped by connection in first-seen order.
#[derive(Default)]
struct Outbox {
    order: Vec<ConnId>,
    by_conn: HashMap<ConnId, Vec<Envelope>>,
}

impl Outbox {
    fn push(&mut self, conn: ConnId, envelope: Envelope) {
        self.by_conn
            .entry(conn)
            .or_insert_with(|| {
                self.order.push(conn);
                Vec::new()
            })
            .push(envelope);
    }

    fn take(&mut self, conn: ConnId) -> Option<Vec<Envelope>> {
        self.by_conn.remove(&conn)
    }

    fn drain(&mut self) -> impl Iterator<Item = (ConnId, Vec<Envelope>)> + '_ {
        let by_conn = &mut self.by_conn;
        self.order.drain(..).filter_map(move |c| by_conn.remove(&c).map(|e| (c, e)))
    }
}

impl Engine {
    fn run(mut self) {
        let mut stop = false;
        while !stop {
            let now = self.clock.now();
            let wait = self.coord.poll_timeout().map_or(1_000, |t| t.0.saturating_sub(now.0)).min(1_000);
            let mut batch = Vec::new();
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
            let flush = self.step(batch, stop);
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
    fn step(&mut self, batch: Vec<Command>, mut stop: bool) -> Flush {
        self.batch += 1;
        let now = self.clock.now();
        let mut inputs = Vec::with_capacity(batch.len() + 1);
        let mut queries: Vec<Query> = Vec::new();
        let mut waiting: HashMap<Ticket, Waiting> = HashMap::new();
        let mut registrations = Vec::new();
        for cmd in batch {
            match cmd {
                Command::Connected { conn, origin, tx } => {
                    registrations.push((conn, Some(tx)));
                    inputs.push(Input::Connected { conn, origin });
                }
                Command::Received { conn, envelope } => {
                    if let Message::TaskAck(a) = &envelope.message {
                        if let Some(sent) = self.offered.remove(&a.assignment) {
                            metrics::histogram!("shoal_dispatch_seconds").record(sent.elapsed().as_secs_f64());
                        }
                    }
                    inputs.push(Input::Received { conn, envelope });
                }
                Command::Disconnected { conn, reason } => {
                    registrations.push((conn, None));
                    inputs.push(Input::Disconnected { conn, reason });
                }
                Command::Submit { job, name, owner, reply } => {
                    let tasks = job.spec().tasks.len() as u32;
                    let ticket = self.ticket();
                    waiting.insert(ticket, Waiting::Submit { name, owner, tasks, reply });
                    inputs.push(Input::Command { ticket, command: CoreCommand::SubmitJob(job) });
                }
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
                Command::Stop => stop = true,
            }
        }
        if self.coord.poll_timeout().is_some_and(|t| t <= now) {
            inputs.push(Input::Tick);
        }
        self.coord.handle_batch(now, inputs);
        let mut replies: Vec<Reply> = queries.into_iter().map(|q| q(&self.coord, self.store.as_ref())).collect();
        let mut jobs = Vec::new();
        self.gauges.batches.fetch_add(1, Ordering::Relaxed);
        let mut diffs = Vec::new();
        let mut actions = Vec::new();
        while let Some(o) = self.coord.poll_output() {
            match o {
                Output::Persist(d) => diffs.push(d),
                Output::Answer { ticket, answer } => match waiting.remove(&ticket) {
                    Some(w) => replies.push(w.answer(answer, now, &mut jobs)),
                    None => tracing::error!(ticket = ticket.0, "an answer nobody waits for"),
                },
                other => {
                    match &other {
                        Output::Send { envelope: Envelope { message: Message::TaskOffer(o), .. }, .. } => {
                            if self.offered.len() >= MAX_TRACKED_OFFERS {
                                // Offers never acknowledged (their workers left): forget them all.
                                self.offered.clear();
                            }
                            self.offered.insert(o.assignment, std::time::Instant::now());
                        }
                        Output::Event(Event::JobFinished { job, .. }) => self.finished.push_back((self.batch, *job)),
                        _ => {}
                    }
                    actions.push(other);
                }
            }
        }
        if now >= self.next_gauges {
            self.next_gauges = now + Millis(1_000);
            crate::metrics::record_gauges(&self.coord);
            self.watch_origins();
        }
        Flush { batch: self.batch, clock: now, diffs, jobs, registrations, actions, replies, stop }
    }
}

impl Engine {
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

impl Committer {
    fn run(mut self) -> Result<(), StoreError> {
        while let Ok(first) = self.rx.recv() {
            let mut group = vec![first];
            while let Ok(more) = self.rx.try_recv() {
                group.push(more);
            }
            let diffs: Vec<StateDiff> = group.iter_mut().flat_map(|f| std::mem::take(&mut f.diffs)).collect();
            let jobs: Vec<(JobId, JobMeta)> = group.iter_mut().flat_map(|f| std::mem::take(&mut f.jobs)).collect();
            let clock = group.iter().map(|f| f.clock).max().unwrap_or_default();
            if !diffs.is_empty() || !jobs.is_empty() {
                let started = std::time::Instant::now();
                self.store.commit(&Commit { diffs: &diffs, clock, jobs, retain: self.retain })?;
                metrics::histogram!("shoal_commit_seconds").record(started.elapsed().as_secs_f64());
                self.gauges.commits.fetch_add(1, Ordering::Relaxed);
            }
            // Durable: now act, batch by batch, in order.
            for d in diffs {
                let _ = self.diffs.send(Arc::new(d));
            }
            let mut stop = false;
            for f in group {
                self.perform(f.registrations, f.actions, f.clock);
                for r in f.replies {
                    r();
                }
                self.durable.store(f.batch, Ordering::Release);
                stop |= f.stop;
            }
            if stop {
                self.goodbye_all();
                return Ok(());
            }
        }
        Ok(())
    }

    fn perform(
        &mut self,
        registrations: Vec<(ConnId, Option<tokio::sync::mpsc::Sender<Outbound>>)>,
        actions: Vec<Output>,
        now: Millis,
    ) {
        for (conn, tx) in registrations {
            match tx {
                Some(tx) => {
                    self.conns.insert(conn, tx);
                }
                None => {
                    self.conns.remove(&conn);
                }
            }
        }
        let mut outbox = Outbox::default();
        for a in actions {
            match a {
                Output::Send { conn, envelope } => outbox.push(conn, envelope),
                Output::Close { conn, reason } => {
                    if let Some(envelopes) = outbox.take(conn) {
                        self.deliver(conn, envelopes);
                    }
                    if let Some(tx) = self.conns.remove(&conn) {
                        let _ = tx.try_send(Outbound::Close(reason));
                    }
                }
                Output::Event(event) => {
                    crate::metrics::record_event(&event);
                    log_event(&event);
                    if matches!(event, Event::EpochSettled(_)) {
                        let _ = self.settlements.send(TimedEvent { at: now, event: event.clone() });
                    }
                    let _ = self.events.send(TimedEvent { at: now, event });
                }
                Output::Persist(_) | Output::Answer { .. } => {}
            }
        }
        for (conn, envelopes) in outbox.drain() {
            self.deliver(conn, envelopes);
        }
    }

    /// Hands a connection what a batch produced for it.
    fn deliver(&mut self, conn: ConnId, envelopes: Vec<Envelope>) {
        let Some(tx) = self.conns.get(&conn) else { return };
        if let Err(e) = tx.try_send(Outbound::Envelopes(envelopes)) {
            // Full: the worker does not keep up; closed: it is gone.
            // Either way the core hears it left, and re-queues its work.
            if matches!(e, tokio::sync::mpsc::error::TrySendError::Full(_)) {
                tracing::warn!(%conn, "worker too slow to read its queue; disconnecting");
                metrics::counter!("shoal_ws_disconnects_total", "reason" => "slow").increment(1);
            }
            self.conns.remove(&conn);
            let reason = if matches!(e, tokio::sync::mpsc::error::TrySendError::Full(_)) {
                "too slow to read its queue"
            } else {
                "connection gone"
            };
            let _ = self.engine.send(Command::Disconnected { conn, reason: reason.into() });
        }
    }

    /// Last words to every worker at shutdown; their connections close.
    fn goodbye_all(&mut self) {
        for (conn, tx) in self.conns.drain() {
            let bye = Envelope::bare(Message::Goodbye(Goodbye { reason: "coordinator shutting down".into() }));
            let _ = tx.try_send(Outbound::Envelopes(vec![bye]));
            let _ = tx.try_send(Outbound::Close("coordinator shutting down".into()));
            tracing::debug!(%conn, "closed at shutdown");
        }
    }
}

/// Operators see joins, refusals, departures, slashes and epochs in the log.
fn log_event(event: &Event) {
    match event {
        Event::WorkerAdmitted { worker, class, mflops } => {
            tracing::info!(%worker, backend = ?class.backend, tier = class.tier as u8, mflops, "worker admitted");
        }
        Event::WorkerRefused { worker, reason } => {
            tracing::info!(worker = ?worker.as_ref().map(ToString::to_string), %reason, "worker refused");
        }
        Event::WorkerLeft { worker, reason } => tracing::info!(%worker, %reason, "worker left"),
        Event::WorkerSlashed { worker, reason, .. } => tracing::warn!(%worker, %reason, "worker slashed"),
        Event::EpochSettled(s) => tracing::info!(epoch = s.epoch, digest = %s.digest, "epoch settled"),
        _ => {}
    }
}
