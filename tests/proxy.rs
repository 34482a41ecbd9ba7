//! Behind nginx, set up as the README's deployment section shows: TLS ends
//! at nginx, workers reach `/ws` over `wss://` (WebSocket upgrade passed
//! through), the API over `grpc_pass`, and the coordinator, trusting the
//! proxy (`server.trusted_proxies`), takes each client's address from the
//! `X-Forwarded-For` nginx sets, so clients of different networks are
//! different origins and a header a client sends is not believed.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use shoal_core::kernels::{KernelSpec, Sha256Params};
use shoal_core::WorkerId;
use shoal_native::grpc;
use shoal_native::grpc::pb::shoal_service_client::ShoalServiceClient;
use shoal_native::worker::{self, Behaviour, Executor, WorkerOptions};
use shoal_native::Service;

/// The README's nginx site, on test ports, plus a plain listener (test
/// only) so raw clients can connect from chosen source addresses.
fn nginx_conf(
    dir: &Path,
    ports: (u16, u16, u16),
    coordinator: (SocketAddr, SocketAddr),
    pki: (&Path, &Path),
) -> String {
    let d = dir.display();
    let (tls, api, plain) = ports;
    let (http, grpc) = coordinator;
    let (cert, key) = (pki.0.display(), pki.1.display());
    format!(
        r"worker_processes 1; daemon off; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 512; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  server {{
    listen 127.0.0.1:{tls} ssl;
    listen 127.0.0.1:{plain};
    ssl_certificate {cert}; ssl_certificate_key {key};
    location / {{
      proxy_pass http://{http};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_read_timeout 1h;
      proxy_buffering off;
    }}
  }}
  server {{
    listen 127.0.0.1:{api} ssl http2;
    ssl_certificate {cert}; ssl_certificate_key {key};
    location / {{
      grpc_pass grpc://{grpc};
      grpc_set_header X-Forwarded-For $remote_addr;
      grpc_read_timeout 1h;
    }}
  }}
}}
"
    )
}

/// A raw WebSocket to `/ws` through nginx's plain listener from `from`,
/// with an `X-Forwarded-For` of its own when given; held open when accepted.
async fn via(from: &str, nginx: u16, spoof: Option<&str>, open: &mut Vec<Ws>) -> bool {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from.parse::<IpAddr>().expect("address"), 0)).expect("a loopback source address");
    let stream = socket.connect(SocketAddr::from(([127, 0, 0, 1], nginx))).await.expect("nginx answers");
    let mut request = format!("ws://127.0.0.1:{nginx}/ws").into_client_request().expect("request");
    if let Some(s) = spoof {
        request.headers_mut().insert("x-forwarded-for", s.parse().expect("header"));
    }
    match tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream)).await {
        Ok((ws, _)) => {
            open.push(ws);
            true
        }
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn behind_nginx_workers_and_clients_work_and_keep_their_own_addresses() {
    assert!(
        Command::new("nginx").arg("-v").stderr(Stdio::null()).status().is_ok(),
        "nginx is missing: apt-get install nginx-light (cargo xtask test installs it)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = shoal_native::tls::private_pki(dir.path(), &["localhost"]).expect("a test CA");
    let mut cfg = test_config(&dir.path().join("data"));
    cfg.server.trusted_proxies = vec!["127.0.0.1/32".into()];
    cfg.server.max_connections_per_origin = 2;
    cfg.server.origin_limit_exempts_loopback = false;
    let service = Service::start(cfg).await.expect("service starts");
    let ports = (free_port(), free_port(), free_port());
    let conf = dir.path().join("nginx.conf");
    let site = nginx_conf(dir.path(), ports, (service.http_addr, service.grpc_addr), (&pki.cert, &pki.key));
    std::fs::write(&conf, site).expect("nginx.conf");
    let _nginx = ChildGuard(
        Command::new("nginx")
            .args(["-p", dir.path().to_str().expect("utf-8"), "-c", conf.to_str().expect("utf-8")])
            .args(["-e", dir.path().join("error.log").to_str().expect("utf-8")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts"),
    );
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", ports.2)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Origins are networks (/24): two clients of 127.0.1.0/24 fill theirs,
    // a third is refused, another network's client is not; a client naming
    // another address itself is not believed (nginx replaces the header).
    let mut open = Vec::new();
    let mut held = Vec::new();
    for (from, spoof) in [
        ("127.0.1.2", None),
        ("127.0.1.3", None),
        ("127.0.1.4", None),
        ("127.0.1.5", Some("198.51.100.7")),
        ("127.0.2.2", None),
    ] {
        held.push(via(from, ports.2, spoof, &mut open).await);
    }
    assert_eq!(held, [true, true, false, false, true], "origins as nginx names them");
    drop(open);

    // Workers over wss:// and a client over gRPC, both through nginx's TLS.
    let ca = &pki.ca;
    let (stop, rx) = tokio::sync::watch::channel(false);
    let mut handles = Vec::new();
    for i in 0..2u64 {
        let id = WorkerId::new(format!("proxied-{i}")).expect("id");
        let opts = WorkerOptions {
            bind: None,
            url: format!("wss://localhost:{}/ws", ports.0),
            ca: Some(ca.clone()),
            token: Some(shoal_core::auth::derive_token(&service.secret, &id)),
            identity: None,
            profile: None,
            worker_id: id,
            max_concurrent: 2,
            cache_bytes: shoal_native::worker::DEFAULT_CACHE_BYTES,
            cache_dir: None,
            behaviour: Behaviour::Honest,
            reconnect: true,
            executor: Executor::Cpu,
            seed: i,
        };
        handles.push(tokio::spawn(worker::run(opts, rx.clone())));
    }
    let channel = grpc::channel(&format!("https://localhost:{}", ports.1), Some(ca)).await.expect("gRPC via nginx");
    let mut c = ShoalServiceClient::new(channel);
    let kernel = KernelSpec::Sha256(Sha256Params { count: 4, message_len: 32 });
    let tasks: Vec<_> = (0..10u64).map(|i| (kernel.clone(), kernel.seeded_inputs(i))).collect();
    let job = submit(&mut c, "through nginx", 2, &tasks).await;
    assert_eq!(wait_finished(&mut c, &job, 120).await.verified, 10);
    for o in results(&mut c, &job).await {
        let (k, inputs) = &tasks[o.index as usize];
        assert_eq!(o.outputs, reference(k, inputs));
    }
    let _ = stop.send(true);
    for h in handles {
        let _ = h.await;
    }
    service.shutdown().await.expect("clean shutdown");
}
