//! The data plane: one WebSocket per worker carrying the core's frames.
//!
//! Each connection has a reader (bytes → the core's capped
//! [`MessageDecoder`] → envelopes to the engine) and a writer (envelopes
//! from a bounded queue, batched into one WebSocket message while more are
//! ready). A protocol error ends the connection with the reason sent,
//! logged and counted; a worker that cannot keep up with its queue is
//! disconnected by the engine; neither affects other workers.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use shoal_core::coordinator::OriginKey;
use shoal_core::wire::frame::FrameError;
use shoal_core::wire::message::{ErrorCode, ErrorMessage, Goodbye, MessageDecoder, WireError, WireLimits};
use shoal_core::wire::{Envelope, Message, MessageBatch};

use crate::engine::{Command, EngineHandle, Outbound};

/// Initial read and write buffer of a connection.
const IDLE_BUFFER: usize = 4096;

/// Bytes gathered into one outgoing WebSocket message at most.
const WRITE_BATCH: usize = 256 * 1024;

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
    /// Connection numbers.
    pub next_conn: Arc<AtomicU64>,
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
    u64::from_le_bytes(d.as_bytes()[..8].try_into().unwrap_or([0; 8]))
}

/// `GET /ws`: upgrades a worker.
pub async fn upgrade(
    State(plane): State<DataPlane>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    if plane.engine.gauges.connections.load(Ordering::Relaxed) >= plane.max_connections {
        metrics::counter!("shoal_ws_refused_total", "reason" => "capacity").increment(1);
        return (StatusCode::SERVICE_UNAVAILABLE, "the coordinator is at its connection limit").into_response();
    }
    let cap = plane.limits.max_frame_payload as usize + 64;
    // Small socket buffers (they grow with a message when needed): an idle
    // worker costs a few KiB, not the 256 KiB of the defaults.
    ws.read_buffer_size(IDLE_BUFFER)
        .write_buffer_size(IDLE_BUFFER)
        .max_message_size(cap.max(WRITE_BATCH))
        .max_frame_size(cap.max(WRITE_BATCH))
        .on_upgrade(move |socket| serve(plane, socket, peer))
}

async fn serve(plane: DataPlane, socket: WebSocket, peer: SocketAddr) {
    let conn = plane.next_conn.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Outbound>(plane.send_queue.max(1));
    plane.engine.gauges.connections.fetch_add(1, Ordering::Relaxed);
    let outcome = if plane.engine.send(Command::Connected { conn, origin: origin_key(peer.ip()), tx }).is_ok() {
        run_connection(&plane, conn, socket, &mut rx).await
    } else {
        "coordinator stopping".to_owned()
    };
    plane.engine.gauges.connections.fetch_sub(1, Ordering::Relaxed);
    let _ = plane.engine.send(Command::Disconnected { conn });
    tracing::debug!(conn, %peer, reason = %outcome, "worker connection ended");
}

/// Moves bytes both ways until either side ends; returns why it ended.
async fn run_connection(
    plane: &DataPlane,
    conn: u64,
    socket: WebSocket,
    rx: &mut tokio::sync::mpsc::Receiver<Outbound>,
) -> String {
    let (mut sink, mut stream) = socket.split();
    let mut decoder = match MessageDecoder::new(plane.limits) {
        Ok(d) => d,
        Err(e) => return e.to_string(),
    };
    loop {
        tokio::select! {
            msg = stream.next() => {
                let failure = match msg {
                    Some(Ok(WsMessage::Binary(b))) => {
                        decoder.push_bytes(b);
                        let mut failure = None;
                        loop {
                            match decoder.next_envelope() {
                                Ok(Some(envelope)) => {
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
                    Some(Ok(WsMessage::Text(_))) => {
                        Some((ErrorCode::Malformed, "text messages are not part of the protocol".to_owned()))
                    }
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => None,
                    Some(Ok(WsMessage::Close(_))) | None => return "closed by the worker".to_owned(),
                    Some(Err(e)) => return format!("websocket: {e}"),
                };
                if let Some((code, why)) = failure {
                    tracing::info!(conn, reason = %why, "worker disconnected for a protocol error");
                    metrics::counter!("shoal_ws_disconnects_total", "reason" => "protocol").increment(1);
                    let mut buf = BytesMut::new();
                    for e in protocol_error(code, why.clone()) {
                        let _ = e.encode_into(&plane.limits, &mut buf);
                    }
                    let _ = sink.send(WsMessage::Binary(buf.freeze())).await;
                    let _ = sink.send(WsMessage::Close(None)).await;
                    return why;
                }
            }
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
                                    tracing::error!(conn, error = %err, "cannot encode an envelope");
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
                    if sink.feed(WsMessage::Binary(m)).await.is_err() {
                        return "send failed".to_owned();
                    }
                }
                if sink.flush().await.is_err() {
                    return "send failed".to_owned();
                }
                if let Some(reason) = closing {
                    let _ = sink.send(WsMessage::Close(None)).await;
                    return reason;
                }
            }
        }
    }
}

/// The error and goodbye a worker gets before a protocol-error disconnect.
pub fn protocol_error(code: ErrorCode, message: String) -> [Envelope; 2] {
    [
        Envelope::bare(Message::Error(ErrorMessage { code, assignment: None, message: message.clone() })),
        Envelope::bare(Message::Goodbye(Goodbye { reason: message })),
    ]
}
