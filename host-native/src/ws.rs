//! The data plane: one WebSocket per worker carrying the core's frames.
//!
//! Each connection has a reader (bytes → the core's capped
//! [`MessageDecoder`] → envelopes to the engine) and a writer (envelopes
//! from a bounded queue, batched into one WebSocket message while more are
//! ready). A protocol error ends the connection with the reason sent,
//! logged and counted; a worker that cannot keep up with its queue is
//! disconnected by the engine; neither affects other workers.
//!
//! The WebSocket layer is `fastwebsockets`: a big attachment goes out as
//! one vectored write of the frame header and the attachment's own buffer
//! (no copy into a socket buffer), and frames are read into spare capacity
//! (no zeroing). Its reads are not cancel-safe, so the reader and the
//! writer are two loops of the connection's task that never cancel each
//! other mid-frame; the reader reaches the socket's write side only through
//! the writer.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use fastwebsockets::{Frame, OpCode, Payload, WebSocketError};
use hyper_util::rt::TokioIo;
use shoal_core::coordinator::{ConnId, OriginKey};
use shoal_core::wire::frame::FrameError;
use shoal_core::wire::message::{ErrorCode, ErrorMessage, Goodbye, MessageDecoder, WireError, WireLimits};
use shoal_core::wire::{Envelope, Message, MessageBatch};
use tokio::sync::mpsc;

use crate::engine::{Command, EngineHandle, Outbound};

/// Bytes gathered into one outgoing WebSocket message at most.
const WRITE_BATCH: usize = 256 * 1024;

/// How a connection ends, once its reader knows.
enum Ending {
    /// Send this (an error and a goodbye), close, and end for this reason.
    Fail(Bytes, String),
    /// The worker closed: answer its close and end.
    Closed,
}

/// What a connection's reader asks of its writer: two slots and a wake-up
/// (a few dozen bytes per connection; a queue would cost kilobytes on
/// every idle worker).
#[derive(Default)]
struct Control {
    /// The latest ping's payload: only the latest need be answered (RFC
    /// 6455, 5.5.3).
    pong: std::sync::Mutex<Option<Bytes>>,
    /// How the connection ends.
    ending: std::sync::Mutex<Option<Ending>>,
    /// Wakes the writer.
    wake: tokio::sync::Notify,
}

impl Control {
    fn set<T>(&self, slot: &std::sync::Mutex<Option<T>>, value: T) {
        if let Ok(mut s) = slot.lock() {
            *s = Some(value);
        }
        self.wake.notify_one();
    }

    fn take<T>(slot: &std::sync::Mutex<Option<T>>) -> Option<T> {
        slot.lock().ok().and_then(|mut s| s.take())
    }
}

/// What the data plane shares.
#[derive(Clone)]
pub struct DataPlane {
    /// The engine.
    pub engine: EngineHandle,
    /// Caps on what workers send.
    pub limits: WireLimits,
    /// Most connections at once.
    pub max_connections: u64,
    /// Outbound queue per worker.
    pub send_queue: usize,
    /// How long one frame may take to leave before the worker counts as
    /// gone (it stopped reading).
    pub write_stall: std::time::Duration,
    /// Connection numbers.
    pub next_conn: Arc<AtomicU64>,
    /// Connections open per network origin, against their limit.
    pub per_origin: OriginLimit,
    /// Proxies whose forwarding headers name the real client.
    pub proxies: crate::proxy::TrustedProxies,
    /// The data folder (its size and free space are in `/metrics`).
    pub data: std::path::PathBuf,
    /// Sites whose pages may embed workers.
    pub embed: Arc<crate::embed::EmbedOrigins>,
    /// When the service started (uptime in the swarm's JSON).
    pub started: std::time::Instant,
}

impl DataPlane {
    /// The data plane of a service configured by `cfg`.
    pub fn new(
        cfg: &crate::config::ShoalConfig,
        engine: EngineHandle,
        data: std::path::PathBuf,
        proxies: crate::proxy::TrustedProxies,
    ) -> Result<DataPlane, String> {
        let limits = WireLimits { max_frame_payload: cfg.coordinator.max_frame_payload, ..WireLimits::default() };
        Ok(DataPlane {
            embed: Arc::new(crate::embed::EmbedOrigins::parse(&cfg.server.embed_origins)?),
            started: std::time::Instant::now(),
            data,
            engine,
            limits,
            max_connections: cfg.server.max_connections as u64,
            send_queue: cfg.server.worker_send_queue,
            write_stall: std::time::Duration::from_millis(cfg.server.write_stall_ms.max(1)),
            next_conn: Arc::new(AtomicU64::new(1)),
            proxies,
            per_origin: OriginLimit::new(
                cfg.server.max_connections_per_origin,
                cfg.server.origin_limit_exempts_loopback,
            ),
        })
    }
}

/// Worker connections open per network origin (IPv4 /24, IPv6 /48): one
/// network cannot hold every connection the coordinator allows. Loopback
/// (the operator's own machine: `shoal up`, local workers) is exempt
/// unless configured otherwise.
#[derive(Clone, Debug)]
pub struct OriginLimit {
    open: Arc<std::sync::Mutex<std::collections::HashMap<OriginKey, u32>>>,
    max: u32,
    exempt_loopback: bool,
}

impl OriginLimit {
    /// At most `max` connections per origin (0: no limit).
    pub fn new(max: u32, exempt_loopback: bool) -> Self {
        OriginLimit { open: Arc::default(), max, exempt_loopback }
    }

    /// A place for a connection from `ip`, held until dropped; None when
    /// its origin is at the limit.
    fn take(&self, ip: IpAddr) -> Option<OriginSlot> {
        if self.max == 0 || (self.exempt_loopback && ip.is_loopback()) {
            return Some(OriginSlot { limit: None, origin: OriginKey(0) });
        }
        let origin = origin_key(ip);
        let mut open = self.open.lock().ok()?;
        let n = open.entry(origin).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(OriginSlot { limit: Some(self.clone()), origin })
    }
}

/// One connection's place in its origin's count.
struct OriginSlot {
    limit: Option<OriginLimit>,
    origin: OriginKey,
}

impl Drop for OriginSlot {
    fn drop(&mut self) {
        let Some(limit) = &self.limit else { return };
        if let Ok(mut open) = limit.open.lock() {
            if let Some(n) = open.get_mut(&self.origin) {
                *n -= 1;
                if *n == 0 {
                    open.remove(&self.origin);
                }
            }
        }
    }
}

/// The network origin of an address: its IPv4 /24 or IPv6 /48, hashed, so
/// replicas of a task land on workers of distinct networks.
pub fn origin_key(ip: IpAddr) -> OriginKey {
    let bytes: Vec<u8> = match ip {
        IpAddr::V4(v4) => v4.octets()[..3].to_vec(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets()[..3].to_vec(),
            None => v6.octets()[..6].to_vec(),
        },
    };
    let d = shoal_core::Digest::of(&bytes);
    OriginKey(u64::from_le_bytes(d.as_bytes()[..8].try_into().unwrap_or([0; 8])))
}

/// `GET /ws`: upgrades a worker.
pub async fn upgrade(
    State(plane): State<DataPlane>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
) -> Response {
    if plane.engine.gauges.connections.load(Ordering::Relaxed) >= plane.max_connections {
        metrics::counter!("shoal_ws_refused_total", "reason" => "capacity").increment(1);
        return (StatusCode::SERVICE_UNAVAILABLE, "the coordinator is at its connection limit").into_response();
    }
    if !fastwebsockets::upgrade::is_upgrade_request(&request) {
        return (StatusCode::BAD_REQUEST, "/ws takes a WebSocket upgrade").into_response();
    }
    if let Err(why) = plane.embed.allows_upgrade(request.headers()) {
        metrics::counter!("shoal_ws_refused_total", "reason" => "embed_origin").increment(1);
        return (StatusCode::FORBIDDEN, why).into_response();
    }
    // The client behind a trusted proxy: its address is the worker's origin.
    let peer = SocketAddr::new(plane.proxies.client(peer.ip(), request.headers()), peer.port());
    let Some(slot) = plane.per_origin.take(peer.ip()) else {
        metrics::counter!("shoal_ws_refused_total", "reason" => "origin").increment(1);
        let why = "too many connections from this network (server.max_connections_per_origin)";
        return (StatusCode::SERVICE_UNAVAILABLE, why).into_response();
    };
    // The host the worker dialed: what a contributor identity's hello signs.
    let host = request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.len() <= shoal_core::identity::MAX_AUDIENCE_LEN)
        .map(str::to_owned);
    let (response, upgraded) = match fastwebsockets::upgrade::upgrade(&mut request) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("bad WebSocket upgrade: {e}")).into_response(),
    };
    tokio::spawn(async move {
        let _slot = slot;
        match upgraded.await {
            Ok(ws) => serve(plane, ws, peer, host).await,
            Err(e) => tracing::debug!(%peer, error = %e, "WebSocket upgrade failed"),
        }
    });
    response.map(axum::body::Body::new)
}

/// An upgraded HTTP connection: what both ends of the data plane speak over.
pub(crate) type Upgraded = TokioIo<hyper::upgrade::Upgraded>;
/// The reading half of a data-plane WebSocket.
pub(crate) type FrameReader = fastwebsockets::WebSocketRead<tokio::io::ReadHalf<Upgraded>>;
/// The writing half of a data-plane WebSocket.
pub(crate) type FrameWriter = fastwebsockets::WebSocketWrite<tokio::io::WriteHalf<Upgraded>>;

/// Splits a data-plane WebSocket (either end) into a reader and a writer.
/// Frames longer than `max_frame` end the connection before their payload
/// is read. Pings and closes are handed to the caller, who answers them
/// through its writer (the reader cannot write).
pub(crate) fn split_frames(
    mut ws: fastwebsockets::WebSocket<Upgraded>,
    max_frame: usize,
) -> (FrameReader, FrameWriter) {
    ws.set_max_message_size(max_frame + 1);
    ws.set_auto_pong(false);
    ws.set_auto_close(false);
    ws.split(tokio::io::split)
}

/// The next frame: its opcode and its payload as shared bytes (the read
/// buffer's own bytes, without a copy). Not cancel-safe.
pub(crate) async fn next_frame(read: &mut FrameReader) -> Result<(OpCode, Bytes), WebSocketError> {
    // Automatic answers are off (`split_frames`): nothing is ever obliged.
    let mut no_obligations = |_: Frame<'_>| async { Ok::<(), std::convert::Infallible>(()) };
    let frame = read.read_frame(&mut no_obligations).await?;
    let bytes = match frame.payload {
        Payload::Bytes(b) => b.freeze(),
        Payload::Owned(v) => Bytes::from(v),
        other => Bytes::copy_from_slice(&other),
    };
    Ok((frame.opcode, bytes))
}

/// The largest WebSocket frame a worker may send once it said hello: the
/// core's decoder caps messages, and a frame is at most a batch or one
/// attachment of the core's cap.
fn read_max_frame(plane: &DataPlane) -> usize {
    (plane.limits.max_frame_payload as usize + 64).max(WRITE_BATCH)
}

async fn serve(plane: DataPlane, ws: fastwebsockets::WebSocket<Upgraded>, peer: SocketAddr, host: Option<String>) {
    let conn = ConnId(plane.next_conn.fetch_add(1, Ordering::Relaxed));
    let (tx, mut rx) = mpsc::channel::<Outbound>(plane.send_queue.max(1));
    plane.engine.gauges.connections.fetch_add(1, Ordering::Relaxed);
    let outcome = if plane.engine.send(Command::Connected { conn, origin: origin_key(peer.ip()), host, tx }).is_ok() {
        let (read, write) = split_frames(ws, read_max_frame(&plane));
        let control = Control::default();
        tokio::select! {
            why = read_loop(&plane, conn, peer, read, &control) => why,
            why = write_loop(&plane, write, &mut rx, &control) => why,
        }
    } else {
        "coordinator stopping".to_owned()
    };
    plane.engine.gauges.connections.fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(%conn, %peer, reason = %outcome, "worker connection ended");
    let _ = plane.engine.send(Command::Disconnected { conn, reason: outcome });
}

/// Bytes a connection may send before its hello: a hello is a few hundred
/// bytes, and nothing a stranger sends before it is held beyond this (a
/// frame over it is refused before it is read; the core closes a
/// connection that has not said hello within its ack timeout).
pub const MAX_BEFORE_HELLO: usize = 64 * 1024;

/// Reads frames until the worker leaves or breaks the protocol; the
/// writer is told what to send on the way out (it ends the connection).
async fn read_loop(
    plane: &DataPlane,
    conn: ConnId,
    peer: SocketAddr,
    mut read: FrameReader,
    control: &Control,
) -> String {
    let mut decoder = match MessageDecoder::new(plane.limits) {
        Ok(d) => d,
        Err(e) => return e.to_string(),
    };
    // Until the first message (the hello), frames are capped small and so
    // are the bytes they add up to.
    let max_frame = read_max_frame(plane);
    read.set_max_message_size(MAX_BEFORE_HELLO + 1);
    let mut before_hello = Some(0usize);
    let ended = loop {
        let (opcode, payload) = match next_frame(&mut read).await {
            Ok(frame) => frame,
            Err(WebSocketError::FrameTooLarge) => {
                let why = if before_hello.is_some() {
                    format!("more than {MAX_BEFORE_HELLO} bytes before the hello")
                } else {
                    "WebSocket frame over the cap".to_owned()
                };
                break Ending::Fail(protocol_error_frames(plane, ErrorCode::TooLarge, &why), why);
            }
            Err(WebSocketError::UnexpectedEOF) => return "closed by the worker".to_owned(),
            Err(e) => return format!("websocket: {e}"),
        };
        let failure = match opcode {
            OpCode::Binary | OpCode::Continuation => {
                if let Some(sent) = &mut before_hello {
                    *sent += payload.len();
                    if *sent > MAX_BEFORE_HELLO {
                        let why = format!("more than {MAX_BEFORE_HELLO} bytes before the hello");
                        break Ending::Fail(protocol_error_frames(plane, ErrorCode::TooLarge, &why), why);
                    }
                }
                decoder.push_bytes(payload);
                let mut failure = None;
                loop {
                    match decoder.next_envelope() {
                        Ok(Some(envelope)) => {
                            if before_hello.take().is_some() {
                                // The first message is in (the core refuses
                                // it unless it is a hello): full frames now.
                                read.set_max_message_size(max_frame + 1);
                            }
                            if plane.engine.send(Command::Received { conn, envelope }).is_err() {
                                return "coordinator stopping".to_owned();
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            let code = if matches!(e, WireError::Frame(FrameError::TooLarge { .. })) {
                                ErrorCode::TooLarge
                            } else {
                                ErrorCode::Malformed
                            };
                            failure = Some((code, e.to_string()));
                            break;
                        }
                    }
                }
                failure
            }
            OpCode::Text => Some((ErrorCode::Malformed, "text messages are not part of the protocol".to_owned())),
            OpCode::Ping => {
                control.set(&control.pong, payload);
                None
            }
            OpCode::Pong => None,
            OpCode::Close => break Ending::Closed,
        };
        if let Some((code, why)) = failure {
            break Ending::Fail(protocol_error_frames(plane, code, &why), why);
        }
    };
    if let Ending::Fail(_, why) = &ended {
        tracing::info!(%conn, %peer, reason = %why, "worker disconnected for a protocol error");
        metrics::counter!("shoal_ws_disconnects_total", "reason" => "protocol").increment(1);
    }
    control.set(&control.ending, ended);
    // The writer sends the last words and ends the connection.
    std::future::pending().await
}

/// Sends what the engine queues (small envelopes batched, attachments as
/// their own messages) and what the reader asks; returns why it ended.
async fn write_loop(
    plane: &DataPlane,
    mut write: FrameWriter,
    rx: &mut mpsc::Receiver<Outbound>,
    control: &Control,
) -> String {
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(first) = out else { return "coordinator dropped the connection".to_owned() };
                // Small frames share a message; big attachments go as
                // their own messages, never copied into the batch.
                let mut batch = MessageBatch::new();
                let mut closing = None;
                let mut next = Some(first);
                while let Some(o) = next.take() {
                    match o {
                        Outbound::Envelopes(es) => {
                            for e in es {
                                if let Err(err) = batch.push(&e, &plane.limits) {
                                    tracing::error!(error = %err, "cannot encode an envelope");
                                }
                            }
                        }
                        Outbound::Close(reason) => {
                            closing = Some(reason);
                            break;
                        }
                    }
                    if batch.len() < WRITE_BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                for m in batch.take() {
                    if let Err(why) = send(plane, &mut write, Frame::binary(Payload::Borrowed(&m))).await {
                        return why;
                    }
                }
                if let Err(why) = flush(plane, &mut write).await {
                    return why;
                }
                if let Some(reason) = closing {
                    let _ = send(plane, &mut write, Frame::close(1000, b"")).await;
                    let _ = flush(plane, &mut write).await;
                    return reason;
                }
            }
            () = control.wake.notified() => {
                if let Some(payload) = Control::take(&control.pong) {
                    if let Err(why) = send(plane, &mut write, Frame::pong(Payload::Borrowed(&payload))).await {
                        return why;
                    }
                    if let Err(why) = flush(plane, &mut write).await {
                        return why;
                    }
                }
                match Control::take(&control.ending) {
                    Some(Ending::Fail(last_words, why)) => {
                        let _ = send(plane, &mut write, Frame::binary(Payload::Borrowed(&last_words))).await;
                        let _ = send(plane, &mut write, Frame::close(1002, b"")).await;
                        let _ = flush(plane, &mut write).await;
                        return why;
                    }
                    Some(Ending::Closed) => {
                        let _ = send(plane, &mut write, Frame::close(1000, b"")).await;
                        let _ = flush(plane, &mut write).await;
                        return "closed by the worker".to_owned();
                    }
                    None => {}
                }
            }
        }
    }
}

/// Writes one frame, within the data plane's stall limit; the error is why
/// the connection ends.
async fn send(plane: &DataPlane, write: &mut FrameWriter, frame: Frame<'_>) -> Result<(), String> {
    match tokio::time::timeout(plane.write_stall, write.write_frame(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("send failed: {e}")),
        Err(_) => {
            metrics::counter!("shoal_ws_disconnects_total", "reason" => "stalled").increment(1);
            Err(format!("the worker took nothing for {} ms", plane.write_stall.as_millis()))
        }
    }
}

/// Pushes what was written down to the socket: over TLS the tail of a
/// frame otherwise waits in the TLS layer's buffer for the next write.
async fn flush(plane: &DataPlane, write: &mut FrameWriter) -> Result<(), String> {
    match tokio::time::timeout(plane.write_stall, write.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("send failed: {e}")),
        Err(_) => {
            metrics::counter!("shoal_ws_disconnects_total", "reason" => "stalled").increment(1);
            Err(format!("the worker took nothing for {} ms", plane.write_stall.as_millis()))
        }
    }
}

/// The encoded error and goodbye of a protocol-error disconnect.
fn protocol_error_frames(plane: &DataPlane, code: ErrorCode, why: &str) -> Bytes {
    let mut buf = BytesMut::new();
    for e in protocol_error(code, why.to_owned()) {
        let _ = e.encode_into(&plane.limits, &mut buf);
    }
    buf.freeze()
}

/// The error and goodbye a worker gets before a protocol-error disconnect.
pub fn protocol_error(code: ErrorCode, message: String) -> [Envelope; 2] {
    [
        Envelope::bare(Message::Error(ErrorMessage { code, assignment: None, message: message.clone() })),
        Envelope::bare(Message::Goodbye(Goodbye { reason: message })),
    ]
}
