//! The doors of the service under attack: sockets that never finish a
//! request, uploads held open or too big, one network taking every
//! connection, forwarding headers and PROXY headers from peers trusted or
//! not. Each is bounded, refused with its setting named, or ignored, and
//! the service serves again.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use shoal_core::kernels::{KernelSpec, Sha256Params};
use shoal_native::grpc::pb;
use shoal_native::Service;

/// Whether the server closed `s` within `secs` (EOF or reset; a
/// timeout means it is still open).
async fn closed_within(s: &mut tokio::net::TcpStream, secs: u64) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// Plain TCP connections that never finish a request, on both ports:
/// every socket counts against `server.max_sockets` from the moment it is
/// accepted (beyond it, a new one is closed at once), a client that
/// trickles its headers is closed at the header deadline, a silent one at
/// the idle timeout (gRPC port), and once they are gone the ports serve
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sockets_that_never_finish_a_request_are_counted_and_closed() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.server.max_sockets = 6;
    cfg.server.header_timeout_ms = 1_500;
    cfg.server.idle_timeout_ms = 2_500;
    let service = Service::start(cfg).await.expect("starts");
    let (http, grpc) = (service.http_addr, service.grpc_addr);

    // Six silent sockets fill the HTTP port: a seventh is closed at once,
    // and so is a real request (/healthz) while they stay.
    let mut silent = Vec::new();
    for _ in 0..6 {
        silent.push(TcpStream::connect(http).await.expect("connects"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(http).await.expect("the kernel accepts");
    assert!(closed_within(&mut extra, 1).await, "a socket beyond the limit is closed at once");

    // The header deadline closes them all, a trickler too.
    let mut trickler = silent.pop().expect("one");
    let trickle = tokio::spawn(async move {
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\n".iter().cycle().take(200) {
            if trickler.write_all(&[*b]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    for s in &mut silent {
        assert!(closed_within(s, 4).await, "a socket that sends no request is closed at the header deadline");
    }
    assert!(trickle.await.expect("joins"), "a client trickling its headers is cut off");

    // The port serves again.
    let health = http_get(http, "/healthz", "").await;
    assert_eq!(status_of(&health), 200, "{health}");

    // The gRPC port: a silent socket is closed at the idle timeout, and
    // the limit holds there too.
    let mut quiet = Vec::new();
    for _ in 0..6 {
        quiet.push(TcpStream::connect(grpc).await.expect("connects"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(grpc).await.expect("the kernel accepts");
    assert!(closed_within(&mut extra, 1).await, "a socket beyond the gRPC limit is closed at once");
    for s in &mut quiet {
        assert!(closed_within(s, 6).await, "a silent gRPC socket is closed at the idle timeout");
    }
    let mut c = client(&service).await;
    c.get_swarm_status(pb::GetSwarmStatusRequest {}).await.expect("the API answers once the silent sockets are gone");
    let metrics = http_get(http, "/metrics", "").await;
    assert!(counter(&metrics, "shoal_sockets_shed_total{port=\"http\"}") >= 1.0, "shed sockets are counted");
    service.shutdown().await.expect("stops");
}

/// Jobs being received are bounded before they are queued: a client may
/// have `server.max_submits_per_client` uploads open at once, and all
/// uploads together hold at most `server.max_receiving_bytes` of inputs;
/// each refusal names its setting, and what a stream held is released
/// when it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_in_progress_are_bounded_per_client_and_in_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.server.max_submits_per_client = 1;
    cfg.server.max_receiving_bytes = 64 << 10;
    let service = Service::start(cfg).await.expect("service starts");
    let mut c = client(&service).await;
    let kernel = KernelSpec::Sha256(Sha256Params { count: 256, message_len: 128 }); // 32 KiB of inputs
    let task = |i: u64| pb::SubmitJobRequest {
        part: Some(pb::submit_job_request::Part::Task(pb::Task {
            kernel: Some(shoal_native::grpc::kernel_to_pb(&kernel)),
            inputs: kernel.seeded_inputs(i).into_iter().map(Bytes::from).collect(),
            parts: Vec::new(),
        })),
    };
    let header = || pb::SubmitJobRequest {
        part: Some(pb::submit_job_request::Part::Header(pb::JobHeader { redundancy: 1, ..Default::default() })),
    };

    // An upload left open holds its client's place and its bytes.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(header()).await.expect("queued");
    tx.send(task(0)).await.expect("queued");
    let mut slow = c.clone();
    let open = tokio::spawn(async move { slow.submit_job(tokio_stream::wrappers::ReceiverStream::new(rx)).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while service.submit_limits.receiving() < 32 << 10 {
        assert!(tokio::time::Instant::now() < deadline, "the open upload's first task was never held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = c.submit_job(tokio_stream::iter(vec![header(), task(1)])).await.expect_err("one at a time");
    assert_eq!(second.code(), tonic::Code::ResourceExhausted);
    assert!(second.message().contains("server.max_submits_per_client"), "{second:?}");
    // Its second and third tasks pass the bytes all uploads may hold.
    tx.send(task(2)).await.expect("queued");
    tx.send(task(3)).await.expect("queued");
    drop(tx);
    let err = open.await.expect("joins").expect_err("over the bytes being received");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(err.message().contains("server.max_receiving_bytes"), "{err:?}");
    assert_eq!(service.submit_limits.receiving(), 0, "released when the stream ended");
    // The next upload is accepted.
    let ok = c.submit_job(tokio_stream::iter(vec![header(), task(4)])).await.expect("accepted again");
    assert_eq!(ok.into_inner().tasks, 1);
    service.shutdown().await.expect("stops");
}

/// One network cannot take every connection: beyond
/// `server.max_connections_per_origin` a WebSocket upgrade is refused with
/// the setting named, and a closed connection frees its place (loopback is
/// counted here; by default it is exempt).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_per_network_are_capped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.server.max_connections_per_origin = 3;
    cfg.server.origin_limit_exempts_loopback = false;
    let service = Service::start(cfg).await.expect("service starts");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(open(&service).await);
    }
    match tokio_tungstenite::connect_async(service.worker_url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), 503);
            let body = String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("server.max_connections_per_origin"), "{body}");
        }
        other => panic!("a fourth connection from one network is refused: {:?}", other.map(|_| ())),
    }
    let mut first = held.remove(0);
    first.close(None).await.expect("closed");
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio_tungstenite::connect_async(service.worker_url()).await {
            Ok(_) => break,
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "its place was never freed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    service.shutdown().await.expect("stops");
}

/// Behind a trusted proxy, a worker's origin is the client the proxy names
/// (`X-Forwarded-For`); from an untrusted peer the header changes nothing.
/// Seen through the per-network limit (one connection per origin here).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_a_trusted_proxy_names_the_client_address() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    async fn via(service: &Service, client: &str, open: &mut Vec<Ws>) -> bool {
        let mut request = service.worker_url().into_client_request().expect("request");
        request.headers_mut().insert("x-forwarded-for", format!("{client}, 127.0.0.1").parse().expect("header"));
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => {
                open.push(ws); // held open: its place stays taken
                true
            }
            Err(_) => false,
        }
    }
    for trusted in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = test_config(dir.path());
        cfg.server.max_connections_per_origin = 1;
        cfg.server.origin_limit_exempts_loopback = false;
        if trusted {
            cfg.server.trusted_proxies = vec!["127.0.0.1/32".into()];
        }
        let service = Service::start(cfg).await.expect("service starts");
        let mut open = Vec::new();
        let mut held = Vec::new();
        for client in ["198.51.100.7", "203.0.113.9", "198.51.100.20"] {
            held.push(via(&service, client, &mut open).await);
        }
        if trusted {
            assert_eq!(held, [true, true, false], "two networks behind the proxy, the third client shares the first's");
        } else {
            assert_eq!(held, [true, false, false], "an untrusted peer's header is ignored: all are 127.0.0.1");
        }
        service.shutdown().await.expect("stops");
    }
}

/// The PROXY protocol from a trusted proxy names the client (v1 and v2), as
/// a TCP load balancer in front sends it; a trusted peer that must send one
/// and does not is dropped. Seen through the per-network limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_proxy_protocol_names_the_client() {
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.server.max_connections_per_origin = 1;
    cfg.server.origin_limit_exempts_loopback = false;
    cfg.server.trusted_proxies = vec!["127.0.0.1".into()];
    cfg.server.proxy_protocol = true;
    let service = Service::start(cfg).await.expect("service starts");
    let mut open = Vec::new();
    let try_with = |header: Vec<u8>| {
        let url = service.worker_url();
        let addr = service.http_addr;
        async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connects");
            s.write_all(&header).await.expect("header sent");
            let request = url.into_client_request().expect("request");
            tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::client_async(request, s))
                .await
                .ok()
                .and_then(Result::ok)
                .map(|(ws, _)| ws)
        }
    };
    let v1 = |ip: &str| format!("PROXY TCP4 {ip} 127.0.0.1 40000 14690\r\n").into_bytes();
    let mut v2 = vec![0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];
    v2.extend_from_slice(&[0x21, 0x11, 0, 12, 203, 0, 113, 9, 127, 0, 0, 1, 0x9C, 0x40, 0x39, 0x22]);
    let mut got = Vec::new();
    for header in [v1("198.51.100.7"), v1("198.51.100.20"), v2, Vec::new()] {
        let ws = try_with(header).await;
        got.push(ws.is_some());
        open.extend(ws);
    }
    assert_eq!(
        got,
        [true, false, true, false],
        "two networks; the third client shares the first's; no header, no entry"
    );
    service.shutdown().await.expect("stops");
}
