//! The doors of both ports: every accepted socket is counted against a
//! limit from the moment it is accepted (not only once it became a worker),
//! a socket with no traffic either way for the idle timeout is closed, and
//! accept errors (out of file descriptors above all) are logged and shed
//! instead of stalling the accept loop. The HTTP port also bounds the time
//! to send a request's headers, which is also how long a kept-alive
//! connection may sit between requests.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Sleep;
use tower::ServiceExt;

/// How long to wait after an accept error other than a peer's reset (e.g.
/// out of file descriptors) before accepting again: short, so the port
/// recovers as soon as sockets close, long enough not to spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Sockets open on one port, against its limit.
#[derive(Clone, Debug)]
pub struct SocketCount {
    open: Arc<AtomicUsize>,
    max: usize,
}

impl SocketCount {
    /// A count for at most `max` sockets at once.
    pub fn new(max: usize) -> Self {
        SocketCount { open: Arc::new(AtomicUsize::new(0)), max }
    }

    /// Sockets open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn take(&self) -> Option<Permit> {
        let mut n = self.open.load(Ordering::Relaxed);
        loop {
            if n >= self.max {
                return None;
            }
            match self.open.compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(Permit(Arc::clone(&self.open))),
                Err(now) => n = now,
            }
        }
    }
}

/// One counted socket; dropping it frees its place.
#[derive(Debug)]
struct Permit(Arc<AtomicUsize>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A listening port with a socket limit and an idle timeout.
pub struct GuardedListener {
    inner: TcpListener,
    count: SocketCount,
    idle: Duration,
    /// The port's name in logs and metrics (`http`, `grpc`).
    name: &'static str,
    last_error_log: Option<Instant>,
}

impl GuardedListener {
    /// Guards `inner`.
    pub fn new(inner: TcpListener, count: SocketCount, idle: Duration, name: &'static str) -> Self {
        GuardedListener { inner, count, idle, name, last_error_log: None }
    }

    /// The next socket within the limit. Sockets beyond it are closed at
    /// once (the peer sees the connection end instead of waiting in the
    /// backlog); accept errors are counted, logged at most once a second,
    /// and followed by a short pause.
    pub async fn accept(&mut self) -> (Guarded, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => match self.count.take() {
                    Some(permit) => {
                        // Frames are gathered before each write already; Nagle's
                        // wait for an ACK (delayed 40 ms by the peer) only
                        // holds back the last small frame of a burst.
                        let _ = stream.set_nodelay(true);
                        return (Guarded::new(stream, permit, self.idle), peer);
                    }
                    None => {
                        metrics::counter!("shoal_sockets_shed_total", "port" => self.name).increment(1);
                        drop(stream);
                    }
                },
                Err(e) if is_peer_error(&e) => {}
                Err(e) => {
                    metrics::counter!("shoal_accept_errors_total", "port" => self.name).increment(1);
                    let now = Instant::now();
                    if self.last_error_log.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
                        self.last_error_log = Some(now);
                        tracing::error!(port = self.name, error = %e, open = self.count.open(), "accept failed; shedding load");
                    }
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            }
        }
    }
}

/// Connections the kernel may hold accepted but not yet taken by
/// `accept` (capped by `net.core.somaxconn`): after a coordinator restart
/// every worker dials again within seconds of its backoff, and a backlog
/// of tokio's default 1 024 refuses part of the crowd (each refused worker
/// then waits out another backoff).
pub const LISTEN_BACKLOG: u32 = 8_192;

/// A listening socket on `addr` with [`LISTEN_BACKLOG`] (the kernel's
/// `net.core.somaxconn` caps it; a lower cap is logged).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    if let Some(cap) = somaxconn().filter(|&c| c < LISTEN_BACKLOG) {
        tracing::info!(
            %addr,
            somaxconn = cap,
            wanted = LISTEN_BACKLOG,
            "net.core.somaxconn caps the listen backlog; raise it for many workers reconnecting at once"
        );
    }
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// `net.core.somaxconn` (Linux; None elsewhere or unreadable).
fn somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn").ok()?.trim().parse().ok()
}

fn is_peer_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// An accepted socket: counted while open, closed (reads and writes fail
/// with `TimedOut`) after `idle` without a byte either way.
pub struct Guarded {
    inner: TcpStream,
    _permit: Permit,
    idle: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
}

impl Guarded {
    fn new(inner: TcpStream, permit: Permit, idle: Duration) -> Self {
        let last = Instant::now();
        Guarded { inner, _permit: permit, idle, last, timer: Box::pin(tokio::time::sleep(idle)) }
    }

    /// Whether the idle timeout passed; re-arms the timer otherwise (it is
    /// reset lazily, not on every byte).
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let since = self.last.elapsed();
            if since >= self.idle {
                return true;
            }
            let at = tokio::time::Instant::now() + self.idle.saturating_sub(since);
            self.timer.as_mut().reset(at);
        }
    }

    /// A write's outcome: progress resets the idle clock; a write that
    /// waits past the idle timeout fails.
    fn after_write(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.last = Instant::now();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.idle_expired(cx) => Poll::Ready(Err(Self::timed_out())),
            other => other,
        }
    }

    fn timed_out() -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, "no traffic within the idle timeout")
    }
}

impl AsyncRead for Guarded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.last = Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.idle_expired(cx) => Poll::Ready(Err(Self::timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        self.after_write(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after_write(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Guarded {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// A connection of the gRPC port: plain, or TLS over it (both report the
/// peer's TCP address, for per-client limits).
pub enum MaybeTls {
    /// Plain TCP.
    Plain(Guarded),
    /// TLS, handshake done.
    Tls(Box<tokio_rustls::server::TlsStream<Guarded>>),
}

impl AsyncRead for MaybeTls {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, data),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl tonic::transport::server::Connected for MaybeTls {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        match self {
            MaybeTls::Plain(s) => s.connect_info(),
            MaybeTls::Tls(s) => s.get_ref().0.connect_info(),
        }
    }
}

/// How the HTTP port serves each connection.
#[derive(Clone)]
pub struct HttpOptions {
    /// Time to send a request's headers (and to finish a TLS handshake or
    /// a PROXY header).
    pub header_timeout: Duration,
    /// TLS, when configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Connections from these peers start with a PROXY protocol header
    /// naming the client, when `proxy_protocol` is on.
    pub proxies: crate::proxy::TrustedProxies,
    /// Expect the PROXY protocol (v1 or v2) from trusted proxies.
    pub proxy_protocol: bool,
}

/// Serves `router` over HTTP/1.1 (with upgrades, for `/ws`) on the guarded
/// port until `stop` turns true, then lets requests in flight finish. Each
/// request carries the client's address as [`ConnectInfo`] (from a trusted
/// proxy's PROXY header when configured). A connection's PROXY header and
/// TLS handshake have the header deadline, in its own task (a slow one
/// holds up nobody else).
pub async fn serve_http(
    mut listener: GuardedListener,
    router: Router,
    options: HttpOptions,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (mut io, mut peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => break,
        };
        let (router, ended, o) = (router.clone(), stop.clone(), options.clone());
        tokio::spawn(async move {
            if o.proxy_protocol && o.proxies.trusts(peer.ip()) {
                match tokio::time::timeout(o.header_timeout, crate::proxy::read_proxy_header(&mut io)).await {
                    Ok(Ok(Some(client))) => peer = client,
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "bad PROXY header"),
                    Err(_) => return tracing::debug!(%peer, "PROXY header not sent in time"),
                }
            }
            match o.tls {
                None => serve_connection(io, peer, router, o.header_timeout, ended).await,
                Some(acceptor) => match tokio::time::timeout(o.header_timeout, acceptor.accept(io)).await {
                    Ok(Ok(io)) => serve_connection(io, peer, router, o.header_timeout, ended).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake not finished in time"),
                },
            }
        });
    }
}

/// One HTTP/1.1 connection, until it ends or the service stops.
async fn serve_connection<IO>(
    io: IO,
    peer: SocketAddr,
    router: Router,
    header_timeout: Duration,
    mut ended: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        async move { Ok::<_, Infallible>(router.oneshot(request).await.unwrap_or_else(|e| match e {})) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let r = tokio::select! {
        r = conn.as_mut() => r,
        _ = async { ended.wait_for(|s| *s).await.map(|_| ()) } => {
            // Stopping: finish the request in flight, take no more.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = r {
        tracing::debug!(%peer, error = %e, "HTTP connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepted sockets send small frames at once: with Nagle on, a
    /// worker's result waited for the delayed ACK and a tiny task took
    /// ~48 ms from submission to verification instead of ~2 ms.
    #[tokio::test]
    async fn accepted_sockets_have_nagle_off() {
        let inner = bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
        let addr = inner.local_addr().expect("address");
        let mut listener = GuardedListener::new(inner, SocketCount::new(4), Duration::from_secs(5), "http");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (guarded, _) = listener.accept().await;
        assert!(guarded.inner.nodelay().expect("nodelay"));
    }
}
