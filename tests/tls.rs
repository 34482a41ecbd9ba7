//! TLS on both ports, with a certificate from a CA made here: native
//! workers join over `wss://` and verify a job submitted over `https://`
//! gRPC, each trusting the CA by `--ca`; a client or worker given another
//! CA is refused with a clear error, never connected unverified.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use shoal_core::kernels::{KernelSpec, Sha256Params};
use shoal_core::WorkerId;
use shoal_native::grpc::pb::shoal_service_client::ShoalServiceClient;
use shoal_native::grpc::{self, pb};
use shoal_native::worker::{self, Behaviour, Executor, WorkerOptions};
use shoal_native::Service;

/// A CA, and a certificate it signed for `localhost` and 127.0.0.1; the
/// CA's, the leaf's and its key's PEM files in `dir`.
fn make_pki(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("params");
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    let paths =
        (dir.join(format!("{name}-ca.pem")), dir.join(format!("{name}-cert.pem")), dir.join(format!("{name}-key.pem")));
    std::fs::write(&paths.0, ca_cert.pem()).expect("written");
    std::fs::write(&paths.1, cert.pem()).expect("written");
    std::fs::write(&paths.2, key.serialize_pem()).expect("written");
    paths
}

/// An honest native CPU worker with its token, dialing the service's
/// `wss://` URL and trusting `ca`; it does not reconnect.
fn worker_over_tls(service: &Service, name: &str, ca: &Path, seed: u64) -> WorkerOptions {
    let id = WorkerId::new(name).expect("id");
    WorkerOptions {
        bind: None,
        url: service.worker_url(),
        ca: Some(ca.to_path_buf()),
        token: Some(shoal_core::auth::derive_token(&service.secret, &id)),
        identity: None,
        profile: None,
        worker_id: id,
        max_concurrent: 2,
        cache_bytes: shoal_native::worker::DEFAULT_CACHE_BYTES,
        cache_dir: None,
        behaviour: Behaviour::Honest,
        reconnect: false,
        executor: Executor::Cpu,
        seed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_and_clients_speak_tls_and_refuse_an_unknown_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = make_pki(dir.path(), "shoal");
    let (other_ca, _, _) = make_pki(dir.path(), "stranger");
    let mut cfg = test_config(&dir.path().join("data"));
    cfg.server.tls.cert = cert;
    cfg.server.tls.key = key;
    let service = Service::start(cfg).await.expect("starts with TLS");
    assert!(service.worker_url().starts_with("wss://") && service.grpc_url().starts_with("https://"));

    let channel = grpc::channel(&service.grpc_url(), Some(&ca)).await.expect("https with the CA");
    let mut c = ShoalServiceClient::new(channel);
    let (stop, rx) = tokio::sync::watch::channel(false);
    let mut handles = Vec::new();
    for i in 0..2 {
        let opts = worker_over_tls(&service, &format!("tls-{i}"), &ca, i);
        handles.push(tokio::spawn(worker::run(opts, rx.clone())));
    }
    let kernel = KernelSpec::Sha256(Sha256Params { count: 4, message_len: 32 });
    let tasks: Vec<_> = (0..12u64).map(|i| (kernel.clone(), kernel.seeded_inputs(i))).collect();
    let job = submit(&mut c, "over TLS", 2, &tasks).await;
    let done = wait_finished(&mut c, &job, 60).await;
    assert_eq!(done.verified, 12, "{done:?}");

    // Another CA: refused, and the error says it is the certificate.
    let err = grpc::channel(&service.grpc_url(), Some(&other_ca)).await.expect_err("an unknown CA is refused");
    assert!(err.0.to_lowercase().contains("certificate"), "{err}");
    let opts = worker_over_tls(&service, "doubter", &other_ca, 9);
    let refused = worker::run(opts, rx.clone()).await.expect_err("an unknown CA is refused");
    assert!(refused.to_string().to_lowercase().contains("certificate"), "{refused}");
    // Plain text to a TLS port goes nowhere.
    let plain = service.grpc_url().replace("https://", "http://");
    let mut plain = ShoalServiceClient::new(
        tonic::transport::Endpoint::from_shared(plain)
            .expect("url")
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy(),
    );
    assert!(
        plain.get_swarm_status(pb::GetSwarmStatusRequest {}).await.is_err(),
        "no plain-text answer from a TLS port"
    );

    let _ = stop.send(true);
    for h in handles {
        let report = h.await.expect("joins").expect("ran");
        assert!(report.completed > 0, "{report:?}");
    }
    service.shutdown().await.expect("stops");
}

/// Half a TLS configuration, or a file that holds no certificate, stops the
/// start with the reason (never a silent fall back to plain text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_tls_configuration_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, cert, key) = make_pki(dir.path(), "half");
    let mut cfg = test_config(&dir.path().join("data"));
    cfg.server.tls.cert = cert;
    let err = Service::start(cfg.clone()).await.err().expect("refused");
    assert!(err.to_string().contains("needs both cert and key"), "{err}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").expect("written");
    cfg.server.tls.cert = empty;
    cfg.server.tls.key = key;
    let err = Service::start(cfg).await.err().expect("refused");
    assert!(err.to_string().contains("empty.pem"), "{err}");
}
