//! The native worker: connects to a coordinator over WebSocket, runs the
//! core's [`WorkerSession`], executes kernels on blocking threads, and
//! reconnects with jittered backoff when the connection drops.
//!
//! Kernels run on the core's CPU reference implementations (declared as
//! the `Cpu` backend, so the scheduler groups float results correctly);
//! the GPU executor (`shoal-compute`) plugs in here when it lands.
//! [`Behaviour`] lets tests and `shoal sim` run dishonest workers over
//! real sockets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload};
use shoal_core::kernels::KernelError;
use shoal_core::rng::SplitMix64;
use shoal_core::shared_inputs::InputCache;
use shoal_core::wire::message::{DeviceInfo, Hello, HelloAuth, MessageDecoder, WireLimits};
use shoal_core::wire::{MessageBatch, PROTOCOL_VERSION};
use shoal_core::worker::{Backoff, IdentityHello, IdentityKey, WorkerInput, WorkerOutput, WorkerSession};
use shoal_core::{AssignmentId, JobId, WorkerId};
use tokio::sync::{mpsc, watch};

use crate::engine::wall_now;

/// How a worker behaves (everything but `Honest` is for tests and
/// simulations of Byzantine swarms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Runs kernels correctly.
    Honest,
    /// Returns random bytes instead of the right output, at this percent of tasks.
    Liar(u8),
    /// Flips the first byte of the right output (every colluder the same way), at this percent.
    Colluder(u8),
    /// Acknowledges and never answers, at this percent.
    Hanging(u8),
    /// Reports an execution failure instead of running, at this percent.
    Failer(u8),
}

/// Where kernels run.
#[derive(Clone, Debug)]
pub enum Executor {
    /// The core's CPU reference kernels (declared as the `Cpu` backend).
    Cpu,
    /// A GPU through `shoal-compute` (its adapter is the declared device).
    Gpu(std::sync::Arc<shoal_compute::Gpu>),
}

impl Executor {
    /// The device this worker declares in its hello.
    pub fn device_info(&self) -> DeviceInfo {
        match self {
            Executor::Cpu => cpu_device(),
            Executor::Gpu(g) => g.device_info(),
        }
    }
}

/// A native worker's input cache unless told otherwise: 512 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 512 << 20;

/// What a worker needs to know.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// `ws://host:port/ws`, or `wss://` for TLS.
    pub url: String,
    /// The local address to connect from (None: the system's choice). A
    /// load generator spreads many connections over several loopback
    /// addresses, as one source address has only ~28 000 ports to one
    /// coordinator.
    pub bind: Option<std::net::IpAddr>,
    /// A private CA (PEM) trusted for `wss://` beside the system's roots.
    pub ca: Option<std::path::PathBuf>,
    /// Its id.
    pub worker_id: WorkerId,
    /// Token from `shoal keygen` (None: guest, or the identity's).
    pub token: Option<String>,
    /// A contributor identity: the worker joins under its key's worker id
    /// (`worker_id` and `token` are then not used).
    pub identity: Option<shoal_core::identity::Identity>,
    /// What the identity declares in its hello (payout address, name,
    /// team); None keeps what the coordinator has.
    pub profile: Option<shoal_core::identity::Profile>,
    /// Assignments at once.
    pub max_concurrent: u16,
    /// Bytes of shared inputs kept between tasks (0: none; every offer
    /// then carries them).
    pub cache_bytes: u64,
    /// Where they are also kept on disk, to hold them again after a
    /// restart ([`crate::input_cache`]); None: in memory only (kept across
    /// reconnects, not restarts).
    pub cache_dir: Option<std::path::PathBuf>,
    /// How it behaves.
    pub behaviour: Behaviour,
    /// Reconnect after a drop (with jittered backoff) instead of returning.
    pub reconnect: bool,
    /// Seed of the behaviour's dice and of the backoff jitter.
    pub seed: u64,
    /// Where kernels run.
    pub executor: Executor,
}

/// What a worker did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Results sent.
    pub completed: u64,
    /// CPU runs given up at their deadline or on the coordinator's cancel.
    pub abandoned: u64,
    /// Connections made.
    pub connections: u64,
    /// Why the last session ended.
    pub last_reason: String,
}

/// A worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The coordinator could not be reached (and reconnecting is off).
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// Where.
        url: String,
        /// Why.
        reason: String,
    },
    /// The input cache folder could not be used.
    #[error(transparent)]
    Cache(#[from] crate::input_cache::DiskCacheError),
}

/// The device this worker declares: the CPU reference kernels.
pub fn cpu_device() -> DeviceInfo {
    DeviceInfo::cpu_reference(std::env::consts::ARCH, "shoal-core reference kernels")
}

/// Runs a worker until `stop` turns true (or, without reconnect, until
/// its session ends).
pub async fn run(opts: WorkerOptions, mut stop: watch::Receiver<bool>) -> Result<WorkerReport, WorkerError> {
    let mut report = WorkerReport::default();
    let mut cache = match &opts.cache_dir {
        Some(dir) => crate::input_cache::load(dir, opts.cache_bytes)?,
        None => InputCache::logged(opts.cache_bytes),
    };
    let mut rng = SplitMix64::new(opts.seed);
    let mut backoff = Backoff::new(opts.seed.rotate_left(32));
    loop {
        if *stop.borrow() {
            return Ok(report);
        }
        match connect(&opts.url, opts.bind, opts.ca.as_deref()).await {
            Ok(ws) => {
                report.connections += 1;
                backoff.reset();
                let (completed, reason) =
                    session(&opts, ws, &mut rng, (&mut report.abandoned, &mut cache), &mut stop).await;
                report.completed += completed;
                tracing::debug!(worker = %opts.worker_id, %reason, "session ended");
                report.last_reason = reason;
            }
            Err(e) => {
                if !opts.reconnect {
                    return Err(WorkerError::Connect { url: opts.url.clone(), reason: e });
                }
                report.last_reason = format!("connect: {e}");
            }
        }
        if !opts.reconnect || *stop.borrow() {
            return Ok(report);
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(backoff.next_delay_ms())) => {}
            _ = stop.changed() => {}
        }
    }
}

/// The largest WebSocket frame a worker takes from its coordinator: a
/// batch of small envelopes, or one attachment (at most the core's frame
/// cap, which is smaller).
const MAX_MESSAGE: usize = 64 << 20;

type Ws = fastwebsockets::WebSocket<crate::ws::Upgraded>;

/// Opens the WebSocket to the coordinator (`ws://host:port/path`).
async fn connect(url: &str, bind: Option<std::net::IpAddr>, ca: Option<&std::path::Path>) -> Result<Ws, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        _ => return Err("the coordinator URL must start with ws:// or wss://".to_owned()),
    };
    let (Some(host), Some(authority)) = (uri.host(), uri.authority()) else {
        return Err("the URL names no host".to_owned());
    };
    let host = host.trim_matches(['[', ']']);
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let stream = dial(host, port, bind).await.map_err(|e| e.to_string())?;
    // The session gathers its frames before each write; Nagle would hold a
    // result back until the coordinator's delayed ACK (40 ms).
    let _ = stream.set_nodelay(true);
    let request = hyper::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(hyper::header::HOST, authority.as_str())
        .header(hyper::header::UPGRADE, "websocket")
        .header(hyper::header::CONNECTION, "upgrade")
        .header("Sec-WebSocket-Key", fastwebsockets::handshake::generate_key())
        .header("Sec-WebSocket-Version", "13")
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let executor = hyper_util::rt::TokioExecutor::new();
    if tls {
        let stream = crate::tls::connect(host, stream, ca).await?;
        let (ws, _) = fastwebsockets::handshake::client(&executor, request, stream).await.map_err(|e| e.to_string())?;
        return Ok(ws);
    }
    let (ws, _) = fastwebsockets::handshake::client(&executor, request, stream).await.map_err(|e| e.to_string())?;
    Ok(ws)
}

/// A TCP connection to `host:port`, from `bind` when given.
async fn dial(host: &str, port: u16, bind: Option<std::net::IpAddr>) -> std::io::Result<tokio::net::TcpStream> {
    let Some(local) = bind else { return tokio::net::TcpStream::connect((host, port)).await };
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await?.filter(|a| a.is_ipv4() == local.is_ipv4()) {
        let socket = if local.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.bind(std::net::SocketAddr::new(local, 0))?;
        match socket.connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, format!("{host} has no address of {local}'s family"))
    }))
}

/// What the reading side of a session hands the session.
enum Incoming {
    /// A binary frame's payload (the core's frames, as a byte stream).
    Bytes(Bytes),
    /// A ping to answer.
    Ping(Bytes),
    /// The connection ended, for this reason.
    End(String),
}

/// Reads frames into `to` until the connection ends. Its own task:
/// reading a frame is not cancel-safe, so it is never raced against
/// anything else.
async fn read_frames(mut read: crate::ws::FrameReader, to: mpsc::Sender<Incoming>) {
    loop {
        let incoming = match crate::ws::next_frame(&mut read).await {
            Ok((opcode, bytes)) => match opcode {
                OpCode::Binary | OpCode::Continuation => Incoming::Bytes(bytes),
                OpCode::Ping => Incoming::Ping(bytes),
                OpCode::Close => Incoming::End("coordinator closed the connection".to_owned()),
                OpCode::Text | OpCode::Pong => continue,
            },
            Err(fastwebsockets::WebSocketError::UnexpectedEOF) => {
                Incoming::End("coordinator closed the connection".to_owned())
            }
            Err(e) => Incoming::End(format!("websocket: {e}")),
        };
        let end = matches!(incoming, Incoming::End(_));
        if to.send(incoming).await.is_err() || end {
            return;
        }
    }
}

/// How long past its budget a CPU run may go before the worker abandons it
/// (the coordinator's clock started at the acknowledgement, a little later
/// than this one's).
const ABANDON_GRACE: Duration = Duration::from_millis(500);

/// The host (and port, unless the scheme's default) of a worker URL, as
/// the WebSocket's `Host` header will name it: what an identity signs.
fn audience(url: &str) -> String {
    url.parse::<axum::http::Uri>().ok().and_then(|u| u.authority().map(|a| a.as_str().to_owned())).unwrap_or_default()
}

/// One connection; returns results sent and why it ended (runs abandoned
/// are added to `abandoned`).
#[allow(clippy::too_many_lines)] // one select loop reads best in one piece
async fn session(
    opts: &WorkerOptions,
    ws: Ws,
    rng: &mut SplitMix64,
    (abandoned, cache): (&mut u64, &mut InputCache<Bytes>),
    stop: &mut watch::Receiver<bool>,
) -> (u64, String) {
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION,
        worker_id: opts.worker_id.clone(),
        auth: opts.token.clone().map_or(HelloAuth::Guest, HelloAuth::Token),
        device: opts.executor.device_info(),
        software: format!("shoal-native/{}", env!("CARGO_PKG_VERSION")),
        max_concurrent: opts.max_concurrent.max(1),
        cache_bytes: opts.cache_bytes,
        held: Vec::new(),
    };
    // The inputs held already go with the hello, and come back after.
    let mut s = WorkerSession::with_cache(hello, std::mem::replace(cache, InputCache::logged(0)));
    if let Some(identity) = &opts.identity {
        s = s.joining_as(IdentityHello {
            key: IdentityKey::Held(identity.clone()),
            audience: audience(&opts.url),
            profile: opts.profile.clone(),
        });
    }
    let limits = WireLimits::default();
    let Ok(mut decoder) = MessageDecoder::new(limits) else { return (0, "bad limits".into()) };
    let (read, mut sink) = crate::ws::split_frames(ws, MAX_MESSAGE.max(limits.max_frame_payload as usize + 64));
    let (incoming_tx, mut incoming) = mpsc::channel(16);
    let reader = tokio::spawn(read_frames(read, incoming_tx));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    // The stop switch of each CPU run in flight (set by the coordinator's
    // cancel; the run also stops itself at its budget).
    let mut cancels: HashMap<AssignmentId, Arc<AtomicBool>> = HashMap::new();
    let end = loop {
        // Perform what the session decided.
        let mut batch = MessageBatch::new();
        let mut closed = None;
        while let Some(o) = s.poll_output() {
            match o {
                WorkerOutput::Send(e) => {
                    if let Err(err) = batch.push(&e, &limits) {
                        tracing::warn!(error = %err, "cannot encode");
                    }
                }
                WorkerOutput::Run { assignment, job, kernel, inputs, budget } => {
                    let benchmark = job == JobId::BENCHMARK;
                    let roll = rng.below(100) as u8;
                    let noise = rng.next_u64();
                    let behaviour = if benchmark { Behaviour::Honest } else { opts.behaviour };
                    let kernel_is_tiny = kernel.cost().ops < 200_000 && matches!(opts.executor, Executor::Cpu);
                    let executor = opts.executor.clone();
                    if matches!(behaviour, Behaviour::Hanging(p) if roll < p) {
                        continue;
                    }
                    if matches!(behaviour, Behaviour::Failer(p) if roll < p) {
                        let outcome = Err("refusing to run it (a failer)".to_owned());
                        s.handle(wall_now(), WorkerInput::Finished { assignment, outcome });
                        continue;
                    }
                    let cancel = Arc::new(AtomicBool::new(false));
                    if !kernel_is_tiny {
                        // Tiny runs finish inline, before any cancel could arrive.
                        cancels.insert(assignment, Arc::clone(&cancel));
                    }
                    let stop_at = Instant::now() + Duration::from_millis(budget.0) + ABANDON_GRACE;
                    let work = move || {
                        let refs: Vec<&[u8]> = inputs.iter().map(|b| &b[..]).collect();
                        let mut stop = || cancel.load(Ordering::Relaxed) || Instant::now() >= stop_at;
                        let out = match &executor {
                            Executor::Cpu => kernel.run_cpu_until(&refs, &mut stop).map_err(|e| e.to_string()),
                            Executor::Gpu(gpu) => gpu.run_blocking(&kernel, &refs).map_err(|e| e.to_string()),
                        };
                        let out = out.map(|mut out| {
                            match behaviour {
                                Behaviour::Liar(p) if roll < p => {
                                    let mut r = SplitMix64::new(noise);
                                    for o in &mut out {
                                        r.fill_bytes(o);
                                    }
                                }
                                Behaviour::Colluder(p) if roll < p => {
                                    if let Some(b) = out.first_mut().and_then(|o| o.first_mut()) {
                                        *b ^= 0xFF;
                                    }
                                }
                                _ => {}
                            }
                            out.into_iter().map(Bytes::from).collect::<Vec<_>>()
                        });
                        (assignment, out)
                    };
                    // Tiny kernels run inline (their results join this
                    // batch's message); anything bigger on a blocking thread.
                    if kernel_is_tiny {
                        let (assignment, out) = work();
                        s.handle(wall_now(), WorkerInput::Finished { assignment, outcome: out });
                    } else {
                        let tx = done_tx.clone();
                        tokio::task::spawn_blocking(move || {
                            let _ = tx.send(work());
                        });
                    }
                }
                WorkerOutput::Abort(a) => {
                    if let Some(cancel) = cancels.remove(&a) {
                        cancel.store(true, Ordering::Relaxed);
                    }
                }
                WorkerOutput::Kept { digest, bytes } => {
                    if let Some(dir) = opts.cache_dir.clone() {
                        tokio::task::spawn_blocking(move || crate::input_cache::keep(&dir, digest, &bytes));
                    }
                }
                WorkerOutput::Dropped(digest) => {
                    if let Some(dir) = opts.cache_dir.clone() {
                        tokio::task::spawn_blocking(move || crate::input_cache::drop_input(&dir, digest));
                    }
                }
                WorkerOutput::Closed { reason } => closed = Some(reason),
                // The session holds its key and signs its hello itself.
                WorkerOutput::SignHello { .. } => {}
                WorkerOutput::Paid(n) => {
                    tracing::info!(
                        epoch = n.epoch,
                        amount = %n.amount,
                        bounty = %n.bounty,
                        rank = n.rank,
                        payees = n.payees,
                        total = %n.total,
                        "epoch settled: paid"
                    );
                }
            }
        }
        let mut failed = false;
        for m in batch.take() {
            failed = failed || sink.write_frame(Frame::binary(Payload::Owned(m.into()))).await.is_err();
        }
        // Over TLS a frame's tail waits in the TLS buffer until flushed.
        failed = failed || sink.flush().await.is_err();
        if failed {
            break "send failed".to_owned();
        }
        if let Some(reason) = closed {
            let _ = sink.write_frame(Frame::close(1000, b"")).await;
            let _ = sink.flush().await;
            break reason;
        }
        // Sleep until the session's next deadline (a heartbeat), or until
        // something else happens.
        let wake = s.poll_timeout().map(|t| Duration::from_millis(t.0.saturating_sub(wall_now().0)));
        let timer = async {
            match wake {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = incoming.recv() => match msg {
                Some(Incoming::Bytes(b)) => s.receive(wall_now(), &mut decoder, b),
                Some(Incoming::Ping(p)) => {
                    if sink.write_frame(Frame::pong(Payload::Owned(p.into()))).await.is_err() || sink.flush().await.is_err() {
                        break "send failed".to_owned();
                    }
                }
                Some(Incoming::End(why)) => break why,
                None => break "coordinator closed the connection".to_owned(),
            },
            Some(first) = done_rx.recv() => {
                for (assignment, outcome) in std::iter::once(first).chain(std::iter::from_fn(|| done_rx.try_recv().ok())) {
                    cancels.remove(&assignment);
                    if matches!(&outcome, Err(e) if *e == KernelError::Abandoned.to_string()) {
                        *abandoned += 1;
                        tracing::info!(worker = %opts.worker_id, %assignment, "run abandoned (cancelled or past its budget)");
                    }
                    s.handle(wall_now(), WorkerInput::Finished { assignment, outcome });
                }
            }
            () = timer => s.handle(wall_now(), WorkerInput::Tick),
            _ = stop.changed() => {
                if *stop.borrow() {
                    s.handle(wall_now(), WorkerInput::Leave { reason: "worker stopping".into() });
                }
            }
        }
    };
    reader.abort();
    *cache = s.take_cache();
    (s.completed(), end)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::dial;

    /// `--bind` (a load generator's spread over loopback addresses): the
    /// coordinator sees the connection come from the chosen address.
    #[tokio::test]
    async fn a_worker_dials_from_the_address_it_binds() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7));
        let (dialed, accepted) = tokio::join!(dial("127.0.0.1", port, Some(source)), listener.accept());
        let stream = dialed.expect("connects");
        assert_eq!(stream.local_addr().expect("local").ip(), source);
        assert_eq!(accepted.expect("accepted").1.ip(), source);
        // An IPv6 source for an IPv4-only host: a clear error, no attempt.
        let err = dial("127.0.0.1", port, Some(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]))).await.expect_err("no v6");
        assert!(err.to_string().contains("family"), "{err}");
    }
}
