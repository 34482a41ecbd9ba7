//! Certificates by ACME against Debian's `pebble` (a test ACME server) on
//! loopback, with `pebble-challtestsrv` as its DNS (every name is
//! 127.0.0.1): the coordinator starts on a placeholder, answers pebble's
//! TLS-ALPN-01 validation on its own HTTPS port, and serves the issued
//! certificate on both ports; restarted, it serves the cached one at once,
//! and when the renewal check finds it due, renews and swaps it live.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{free_port, test_config, ChildGuard};
use shoal_native::Service;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

const DOMAIN: &str = "shoal.test";

/// pebble and its DNS on free ports; validations go to `tls_port`.
struct Pebble {
    _dns: ChildGuard,
    _server: ChildGuard,
    directory: String,
    management: SocketAddr,
    /// The CA of pebble's own HTTPS.
    ca: PathBuf,
}

fn start_pebble(dir: &Path, tls_port: u16) -> Pebble {
    for tool in ["pebble", "pebble-challtestsrv"] {
        assert!(
            Command::new(tool).arg("-h").stderr(Stdio::null()).stdout(Stdio::null()).status().is_ok(),
            "{tool} is missing: apt-get install pebble (cargo xtask setup installs it)"
        );
    }
    let pki = shoal_native::tls::private_pki(dir, &["localhost", "127.0.0.1"]).expect("pebble's own certificate");
    let (api, management, dns_port) = (free_port(), free_port(), free_port());
    let config = serde_json::json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{api}"),
        "managementListenAddress": format!("127.0.0.1:{management}"),
        "certificate": pki.cert, "privateKey": pki.key,
        "httpPort": 5002, "tlsPort": tls_port,
        "ocspResponderURL": "", "externalAccountBindingRequired": false,
    }});
    let config_path = dir.join("pebble.json");
    std::fs::write(&config_path, config.to_string()).expect("pebble config");
    let dns = ChildGuard(
        Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{}", free_port())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv starts"),
    );
    let pebble = ChildGuard(
        Command::new("pebble")
            .args(["-config", config_path.to_str().expect("utf-8"), "-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble starts"),
    );
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", api)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Pebble {
        _dns: dns,
        _server: pebble,
        directory: format!("https://127.0.0.1:{api}/dir"),
        management: SocketAddr::from(([127, 0, 0, 1], management)),
        ca: pki.ca,
    }
}

/// A TLS client trusting only `root` (PEM), offering `alpn`.
fn client(root: &Path, alpn: &[u8]) -> tokio_rustls::TlsConnector {
    let mut cfg = (*shoal_native::tls::client_config(Some(root)).expect("client TLS")).clone();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// The certificate `addr` serves for `name`, if it verifies against `root`.
async fn served(addr: SocketAddr, name: &str, root: &Path, alpn: &[u8]) -> Option<Vec<u8>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let name = rustls::pki_types::ServerName::try_from(name.to_owned()).ok()?;
    let tls = client(root, alpn).connect(name, tcp).await.ok()?;
    tls.get_ref().1.peer_certificates()?.first().map(|c| c.as_ref().to_vec())
}

/// GET over HTTPS (pebble's management API).
async fn https_get(addr: SocketAddr, path: &str, root: &Path) -> String {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = client(root, b"http/1.1").connect(name, tcp).await.expect("pebble's HTTPS");
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut body = Vec::new();
    let _ = tls.read_to_end(&mut body).await;
    let text = String::from_utf8_lossy(&body).into_owned();
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or(text)
}

/// Waits until `addr` serves a certificate other than `not` that verifies
/// against `root`; returns it.
async fn wait_for_cert(addr: SocketAddr, root: &Path, not: Option<&[u8]>, what: &str) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    loop {
        if let Some(cert) = served(addr, DOMAIN, root, b"http/1.1").await {
            if not.is_none_or(|n| n != cert.as_slice()) {
                return cert;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificates_are_issued_by_acme_cached_and_renewed_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    let http = free_port();
    let pebble = start_pebble(dir.path(), http);
    let mut cfg = test_config(&dir.path().join("data"));
    cfg.server.http = SocketAddr::from(([127, 0, 0, 1], http));
    let acme = &mut cfg.server.tls.acme;
    acme.domains = vec![DOMAIN.into()];
    acme.contact = vec!["mailto:ops@shoal.test".into()];
    acme.directory.clone_from(&pebble.directory);
    acme.ca.clone_from(&pebble.ca);
    acme.renew_before_days = 0;
    acme.check_every_ms = 200;

    let service = Service::start(cfg.clone()).await.expect("starts on a placeholder");
    assert!(service.worker_url().starts_with("wss://"));
    // The roots pebble issues under are only known once it runs.
    let root = dir.path().join("pebble-root.pem");
    std::fs::write(&root, https_get(pebble.management, "/roots/0", &pebble.ca).await).expect("root");
    let first = wait_for_cert(service.http_addr, &root, None, "no certificate issued by ACME").await;
    assert!(served(service.grpc_addr, DOMAIN, &root, b"h2").await.as_deref() == Some(&first[..]), "the gRPC port too");
    // Not due: the checks every 200 ms keep it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(served(service.http_addr, DOMAIN, &root, b"http/1.1").await.as_deref(), Some(&first[..]));
    service.shutdown().await.expect("clean shutdown");
    assert!(dir.path().join("data/acme/cert.pem").is_file() && dir.path().join("data/acme/account.json").is_file());

    // Restarted: the cached certificate is served at once; with a renewal
    // margin longer than its life, the check renews it, swapped live.
    cfg.server.tls.acme.renew_before_days = 100 * 365;
    cfg.server.tls.acme.check_every_ms = 60_000;
    let service = Service::start(cfg).await.expect("restarts");
    let cached = served(service.http_addr, DOMAIN, &root, b"http/1.1").await;
    let renewed = wait_for_cert(service.http_addr, &root, Some(&first), "the due certificate was not renewed").await;
    assert!(
        cached.is_some_and(|c| c == first || c == renewed),
        "an issued certificate at once (the cached one, unless the renewal already landed), never a placeholder"
    );
    assert_ne!(renewed, first);
    service.shutdown().await.expect("clean shutdown");
}
