//! The worker agent inside the Web Worker: takes the page's controls,
//! finds the device, and keeps one protocol session with the coordinator
//! alive — the core's [`WorkerSession`] over a gloo-net WebSocket, with the
//! core's frames, exactly as the native worker does.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use futures_channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use futures_util::{FutureExt, SinkExt, StreamExt};
use gloo_net::websocket::futures::WebSocket;
use gloo_net::websocket::{Message as WsMessage, WebSocketError};
use gloo_timers::future::TimeoutFuture;
use shoal_core::kernels::KernelSpec;
use shoal_core::shared_inputs::InputCache;
use shoal_core::wire::message::{Hello, HelloAuth, MessageDecoder, WireLimits};
use shoal_core::wire::PROTOCOL_VERSION;
use shoal_core::worker::{Backoff, IdentityHello, IdentityKey, SessionState, WorkerInput, WorkerOutput, WorkerSession};
use shoal_core::{AssignmentId, Millis, WorkerId};

use crate::control::{Control, Phase, StartOptions, Status};
use crate::exec::Executor;
use crate::keystore::{self, TabIdentity, TabKey};
use crate::policy::GpuShare;

/// Least time between two status posts (changes of phase go at once).
const STATUS_EVERY_MS: f64 = 250.0;

/// The wall clock, in the core's unit.
fn now() -> Millis {
    Millis(js_sys::Date::now() as u64)
}

/// What the agent wants to be doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Idle,
    Paused,
    Work,
}

/// Why a session ended.
enum End {
    /// The user changed what the agent should do.
    User(Want),
    /// Rejoin at once (new options, or a share that needs a new benchmark).
    Rejoin,
    /// The connection ended or was refused: reconnect after a backoff.
    Dropped { reason: String, was_admitted: bool },
}

/// Something a session waits for.
enum Event {
    Ws(Option<Result<WsMessage, WebSocketError>>),
    Done {
        assignment: AssignmentId,
        outcome: Result<Vec<Bytes>, String>,
        run_ms: u64,
    },
    Tick,
    Control(Option<Control>),
    /// The identity's key signed the hello (or could not).
    Signed(Result<[u8; 64], String>),
}

/// One assignment waiting for the device.
/// How long past its budget a CPU run may go before the tab abandons it.
const ABANDON_GRACE_MS: f64 = 500.0;

struct Queued {
    assignment: AssignmentId,
    kernel: KernelSpec,
    inputs: Vec<Bytes>,
    /// When the coordinator stops waiting for it (`Date.now()` ms): a CPU
    /// run is abandoned then.
    deadline: f64,
}

/// The agent: options, device, status, and the rules of reconnection.
pub(crate) struct Agent<P: Fn(&Status)> {
    post: P,
    status: Status,
    posted: Option<Status>,
    last_post: f64,
    options: Option<StartOptions>,
    executor: Option<Executor>,
    share: GpuShare,
    backoff: Backoff,
    tab_id: String,
    /// This browser's contributor identity, once loaded.
    identity: Option<TabIdentity>,
    /// Shared inputs kept between tasks and across reconnects.
    cache: InputCache<Bytes>,
}

impl<P: Fn(&Status)> Agent<P> {
    /// An idle agent that reports through `post`.
    pub(crate) fn new(post: P) -> Self {
        let seed = (js_sys::Math::random() * 2f64.powi(53)) as u64;
        let tab_id = format!("tab-{:08x}", seed & 0xFFFF_FFFF);
        Agent {
            post,
            status: Status { gpu_share: 100, ..Status::default() },
            posted: None,
            last_post: 0.0,
            options: None,
            executor: None,
            share: GpuShare::new(100),
            backoff: Backoff::new(seed),
            tab_id,
            identity: None,
            cache: InputCache::logged(0),
        }
    }

    fn post_now(&mut self) {
        self.status.gpu_share = self.share.percent();
        if self.posted.as_ref() != Some(&self.status) {
            (self.post)(&self.status);
            self.posted = Some(self.status.clone());
            self.last_post = js_sys::Date::now();
        }
    }

    /// Posts a changed status, at most every [`STATUS_EVERY_MS`] (the
    /// agent wakes when one waits: [`Agent::status_due_in`]).
    /// Milliseconds until a changed status that waits may be posted; None
    /// when nothing waits.
    fn status_due_in(&self) -> Option<f64> {
        (self.posted.as_ref() != Some(&self.status))
            .then(|| (self.last_post + STATUS_EVERY_MS - js_sys::Date::now()).max(0.0))
    }

    fn post_soon(&mut self) {
        if js_sys::Date::now() - self.last_post >= STATUS_EVERY_MS {
            self.post_now();
        }
    }

    fn set_phase(&mut self, phase: Phase) {
        if self.status.phase != phase {
            self.status.phase = phase;
            self.post_now();
        }
    }

    /// Takes a new start; a bad one leaves the agent failed with the reason.
    fn accept_start(&mut self, options: StartOptions) -> Want {
        if let Err(e) = options.validate() {
            self.status.last_reason = e;
            self.status.phase = Phase::Failed;
            self.post_now();
            return Want::Idle;
        }
        if self.options.as_ref().is_some_and(|o| o.use_gpu != options.use_gpu) {
            self.executor = None;
        }
        self.share = options.share();
        self.options = Some(options);
        self.backoff.reset();
        Want::Work
    }

    /// A control received while not connected.
    fn control_when_idle(&mut self, control: Control, want: Want) -> Want {
        match control {
            Control::Start(o) => self.accept_start(o),
            Control::Stop => Want::Idle,
            Control::Pause if want == Want::Work => Want::Paused,
            Control::Resume if want == Want::Paused && self.options.is_some() => Want::Work,
            Control::SetGpuShare { percent } => {
                self.share = GpuShare::new(percent);
                self.post_now();
                want
            }
            Control::Pause | Control::Resume => want,
        }
    }

    /// Runs until the page goes away (its control channel closes).
    pub(crate) async fn run(mut self, mut controls: UnboundedReceiver<Control>) {
        let mut want = Want::Idle;
        self.post_now();
        loop {
            if want != Want::Work {
                if self.status.phase != Phase::Failed || want == Want::Paused {
                    self.set_phase(if want == Want::Paused { Phase::Paused } else { Phase::Idle });
                }
                let Some(c) = controls.next().await else { return };
                want = self.control_when_idle(c, want);
                continue;
            }
            let Some(options) = self.options.clone() else {
                want = Want::Idle;
                continue;
            };
            let executor = match &self.executor {
                Some(e) => e.clone(),
                None => {
                    self.set_phase(Phase::Detecting);
                    let e = Executor::detect(options.use_gpu).await;
                    self.status.device = Some(e.summary());
                    if !e.note().is_empty() {
                        self.status.last_reason = e.note().to_owned();
                    }
                    self.executor = Some(e.clone());
                    e
                }
            };
            let identity = match self.identity_for(&options).await {
                Ok(i) => i,
                Err(e) => {
                    self.status.last_reason = e;
                    self.status.phase = Phase::Failed;
                    self.post_now();
                    want = Want::Idle;
                    continue;
                }
            };
            // One tab of this browser works as its identity at a time.
            let lock = match &identity {
                Some(i) => keystore::try_lock(&format!("shoal-identity-{}", i.worker_id)).await.map_err(Some),
                None => Ok(None),
            };
            self.set_phase(Phase::Connecting);
            let reason = match (lock, WebSocket::open(&options.url)) {
                (Ok(None), _) if identity.is_some() => {
                    "another tab of this browser is contributing as this identity: waiting for it to stop".to_owned()
                }
                (Err(e), _) => format!("cannot take this identity's lock: {}", e.unwrap_or_default()),
                (Ok(_lock), Ok(ws)) => match self.session(ws, &options, &executor, identity, &mut controls).await {
                    End::User(w) => {
                        want = w;
                        continue;
                    }
                    End::Rejoin => continue,
                    End::Dropped { reason, was_admitted } => {
                        if was_admitted {
                            self.backoff.reset();
                        }
                        reason
                    }
                },
                (Ok(_), Err(e)) => format!("cannot open {}: {e}", options.url),
            };
            self.status.last_reason = reason;
            self.status.running = 0;
            self.set_phase(Phase::Reconnecting);
            let delay = self.backoff.next_delay_ms() as u32;
            let mut sleep = TimeoutFuture::new(delay).fuse();
            loop {
                futures_util::select! {
                    () = sleep => break,
                    c = controls.next() => {
                        let Some(c) = c else { return };
                        want = self.control_when_idle(c, want);
                        if want != Want::Work {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// This browser's identity (loaded once), when the options join as
    /// one; None for a token or a guest.
    async fn identity_for(&mut self, options: &StartOptions) -> Result<Option<IdentityRef>, String> {
        if !options.as_identity() {
            return Ok(None);
        }
        if self.identity.is_none() {
            let (identity, note) = keystore::load_or_create(options.wasm_key).await?;
            if let Some(note) = note {
                self.status.last_reason = note;
            }
            self.status.identity = Some(shoal_core::identity::worker_id_of(&identity.public_key()).to_string());
            self.status.identity_kept = Some(identity.kept.to_owned());
            self.post_now();
            self.identity = Some(identity);
        }
        Ok(self.identity.as_ref().map(|i| IdentityRef {
            worker_id: shoal_core::identity::worker_id_of(&i.public_key()).to_string(),
            identity: i.clone(),
        }))
    }

    /// One connection, from hello to close; the shared inputs the tab
    /// holds go with its hello and come back after.
    async fn session(
        &mut self,
        ws: WebSocket,
        options: &StartOptions,
        executor: &Executor,
        identity: Option<IdentityRef>,
        controls: &mut UnboundedReceiver<Control>,
    ) -> End {
        let worker_id = options.worker_id.clone().unwrap_or_else(|| self.tab_id.clone());
        let Ok(worker_id) = WorkerId::new(worker_id) else {
            return End::User(Want::Idle);
        };
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            worker_id,
            auth: options.token.clone().map_or(HelloAuth::Guest, HelloAuth::Token),
            device: executor.device_info(),
            software: format!("shoal-web/{}", env!("CARGO_PKG_VERSION")),
            // One more than runs at once: the next one's inputs arrive while those run.
            max_concurrent: options
                .max_concurrent
                .unwrap_or_else(|| u16::try_from(executor.in_flight(self.share) + 1).unwrap_or(2))
                .max(1),
            cache_bytes: u64::from(options.cache_mib) << 20,
            held: Vec::new(),
        };
        let signer = identity.as_ref().map(|i| i.identity.clone());
        let mut cache = std::mem::replace(&mut self.cache, InputCache::logged(0));
        if cache.capacity() != hello.cache_bytes {
            // The first session (or a new size): what this site's tabs kept.
            cache = crate::input_store::load(hello.cache_bytes).await;
        }
        let mut session = WorkerSession::with_cache(hello, cache);
        if let Some(i) = &identity {
            let key = match &i.identity.key {
                TabKey::Wasm(held) => IdentityKey::Held(held.clone()),
                TabKey::WebCrypto { public, .. } => IdentityKey::External { public_key: *public },
            };
            let profile = options.profile();
            session = session.joining_as(IdentityHello { key, audience: options.audience(), profile });
        }
        let end = self.session_loop(ws, executor, &mut session, signer, controls).await;
        self.cache = session.take_cache();
        end
    }

    /// The event loop of one connection.
    #[allow(clippy::too_many_lines)] // one event loop reads best in one piece
    async fn session_loop(
        &mut self,
        mut ws: WebSocket,
        executor: &Executor,
        session: &mut WorkerSession,
        signer: Option<TabIdentity>,
        controls: &mut UnboundedReceiver<Control>,
    ) -> End {
        let limits = WireLimits::default();
        let Ok(mut decoder) = MessageDecoder::new(limits) else {
            return End::Dropped { reason: "bad wire limits".into(), was_admitted: false };
        };
        let (tx, mut events) = unbounded::<Event>();
        let profiled_share = self.share;
        let mut queue: VecDeque<Queued> = VecDeque::new();
        // Runs on the device now, at most `executor.in_flight(share)`.
        let mut running = 0usize;
        let mut admitted = false;
        let mut after_close: Option<End> = None;
        self.status.connections += 1;
        loop {
            // Perform what the session decided.
            let mut out = BytesMut::new();
            let mut closed = None;
            while let Some(o) = session.poll_output() {
                match o {
                    WorkerOutput::Send(e) => {
                        if let Err(err) = e.encode_into(&limits, &mut out) {
                            self.status.last_reason = format!("cannot encode a message: {err}");
                        }
                    }
                    WorkerOutput::Run { assignment, kernel, inputs, budget, .. } => {
                        let deadline = js_sys::Date::now() + budget.0 as f64 + ABANDON_GRACE_MS;
                        queue.push_back(Queued { assignment, kernel, inputs, deadline });
                    }
                    WorkerOutput::Abort(a) => queue.retain(|q| q.assignment != a),
                    WorkerOutput::Kept { digest, bytes } => crate::input_store::keep(digest, bytes),
                    WorkerOutput::Dropped(digest) => crate::input_store::drop_input(digest),
                    WorkerOutput::Closed { reason } => closed = Some(reason),
                    WorkerOutput::Paid(n) => self.status.last_payout = Some(n.into()),
                    WorkerOutput::SignHello { message } => {
                        let (signer, tx) = (signer.clone(), tx.clone());
                        wasm_bindgen_futures::spawn_local(async move {
                            let signed = match signer {
                                Some(s) => s.sign(&message).await,
                                None => Err("no identity to sign with".into()),
                            };
                            let _ = tx.unbounded_send(Event::Signed(signed));
                        });
                    }
                }
            }
            while running < executor.in_flight(self.share) {
                let Some(next) = queue.pop_front() else { break };
                running += 1;
                wasm_bindgen_futures::spawn_local(run_one(executor.clone(), next, self.share, tx.clone()));
            }
            if !out.is_empty() && ws.send(WsMessage::Bytes(out.to_vec())).await.is_err() {
                return End::Dropped { reason: "the connection failed while sending".into(), was_admitted: admitted };
            }
            if let SessionState::Working { worker_id } = session.state() {
                if !admitted {
                    admitted = true;
                    self.status.worker_id = Some(worker_id.to_string());
                    self.set_phase(Phase::Working);
                }
            }
            self.status.running = session.running() as u32;
            if let Some(reason) = closed {
                // Dropping the socket closes it after what was sent.
                drop(ws);
                self.status.last_reason.clone_from(&reason);
                self.status.running = 0;
                self.post_now();
                return after_close.unwrap_or(End::Dropped { reason, was_admitted: admitted });
            }
            self.post_soon();
            // Sleep until the session's next deadline (a heartbeat) or a
            // waiting status post, or until something else happens.
            let session_due = session.poll_timeout().map(|t| (t.0 as f64 - js_sys::Date::now()).max(0.0));
            let wait = match (session_due, self.status_due_in()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let timer = async move {
                match wait {
                    Some(ms) => TimeoutFuture::new(ms.min(f64::from(u32::MAX)) as u32).await,
                    None => futures_util::future::pending::<()>().await,
                }
            }
            .fuse();
            futures_util::pin_mut!(timer);
            let event = futures_util::select! {
                () = timer => Event::Tick,
                m = ws.next().fuse() => Event::Ws(m),
                e = events.next() => match e {
                    Some(e) => e,
                    None => Event::Tick,
                },
                c = controls.next() => Event::Control(c),
            };
            match event {
                Event::Ws(Some(Ok(WsMessage::Bytes(b)))) => session.receive(now(), &mut decoder, Bytes::from(b)),
                Event::Ws(Some(Ok(WsMessage::Text(_)))) => {
                    session.handle(
                        now(),
                        WorkerInput::Leave { reason: "the coordinator sent text; the protocol is binary".into() },
                    );
                }
                Event::Ws(Some(Err(e))) => {
                    return End::Dropped { reason: format!("connection: {e}"), was_admitted: admitted };
                }
                Event::Ws(None) => {
                    return End::Dropped {
                        reason: "the coordinator closed the connection".into(),
                        was_admitted: admitted,
                    };
                }
                Event::Done { assignment, outcome, run_ms } => {
                    running = running.saturating_sub(1);
                    self.status.busy_ms += run_ms;
                    let before = session.completed();
                    session.handle(now(), WorkerInput::Finished { assignment, outcome });
                    self.status.completed += session.completed() - before;
                }
                Event::Tick => session.handle(now(), WorkerInput::Tick),
                Event::Signed(Ok(signature)) => session.handle(now(), WorkerInput::HelloSigned { signature }),
                Event::Signed(Err(e)) => {
                    session.handle(now(), WorkerInput::Leave { reason: format!("cannot sign the hello: {e}") });
                }
                Event::Control(None) => {
                    session.handle(now(), WorkerInput::Leave { reason: "the page closed".into() });
                    after_close = Some(End::User(Want::Idle));
                }
                Event::Control(Some(control)) => match control {
                    Control::Stop => {
                        session.handle(now(), WorkerInput::Leave { reason: "stopped by the user".into() });
                        after_close = Some(End::User(Want::Idle));
                    }
                    Control::Pause => {
                        session.handle(now(), WorkerInput::Leave { reason: "paused by the user".into() });
                        after_close = Some(End::User(Want::Paused));
                    }
                    Control::SetGpuShare { percent } => {
                        self.share = GpuShare::new(percent);
                        self.post_now();
                        if self.share.needs_new_profile(profiled_share) {
                            session.handle(
                                now(),
                                WorkerInput::Leave {
                                    reason: "GPU share lowered: rejoining to be benchmarked again".into(),
                                },
                            );
                            after_close = Some(End::Rejoin);
                        }
                    }
                    Control::Start(o) => {
                        let next = self.accept_start(o);
                        session.handle(now(), WorkerInput::Leave { reason: "restarting with new options".into() });
                        after_close = Some(if next == Want::Work { End::Rejoin } else { End::User(next) });
                    }
                    Control::Resume => {}
                },
            }
        }
    }
}

/// The identity a session joins as.
struct IdentityRef {
    worker_id: String,
    identity: TabIdentity,
}

/// Runs one assignment, then holds its result for the share's idle time.
async fn run_one(executor: Executor, q: Queued, share: GpuShare, tx: UnboundedSender<Event>) {
    let start = js_sys::Date::now();
    let outcome = executor.run(&q.kernel, &q.inputs, q.deadline).await;
    let run_ms = (js_sys::Date::now() - start).max(0.0) as u64;
    let hold = share.hold_ms(run_ms);
    if hold > 0 {
        TimeoutFuture::new(hold.min(u64::from(u32::MAX)) as u32).await;
    }
    let _ = tx.unbounded_send(Event::Done { assignment: q.assignment, outcome, run_ms });
}
