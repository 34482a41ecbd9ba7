//! TLS through rustls (ring), for both listeners and for the clients: a
//! native worker dialing `wss://`, the command line dialing `https://`.
//! Certificates are verified against the system's roots, plus a private CA
//! when one is given; nothing here can turn verification off.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::sign::CertifiedKey;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// Which file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A PEM file held no certificate.
    #[error("{0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    /// rustls refused the certificate, key or roots.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The certificate chain of a PEM file.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |e: tokio_rustls::rustls::pki_types::pem::Error| TlsError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(path).map_err(read)?.collect::<Result<Vec<_>, _>>().map_err(read)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

/// A certificate chain and its key, ready to serve.
fn sign(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Arc<CertifiedKey>, TlsError> {
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider.key_provider.load_private_key(key).map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// A certificate chain and its key, from PEM bytes, ready to serve.
pub fn certified_key(chain_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Config(format!("certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(TlsError::Config("no PEM certificate in the chain".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Config(format!("private key: {e}")))?;
    sign(chain, key)
}

/// The certificate chain and key of two PEM files, each read once, errors
/// naming the file at fault.
pub fn certified_key_from_files(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| TlsError::Read { path: p.to_owned(), reason: e.to_string() });
    let (chain_pem, key_pem) = (read(cert)?, read(key)?);
    let chain = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Read { path: cert.to_owned(), reason: e.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_owned()));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| TlsError::Config(format!("private key in {}: {e}", key.display())))?;
    sign(chain, key)
}

/// A server's TLS whose certificate is `live`'s (replaced without a
/// restart), offering `alpn` and ACME's `acme-tls/1` (answered only while
/// a challenge is pending).
pub fn live_server_config(live: Arc<LiveCert>, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(live);
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    Ok(Arc::new(cfg))
}

/// The ALPN protocol of ACME's TLS-ALPN-01 challenge (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The certificate both listeners serve, replaceable while they run (an
/// ACME renewal), and the challenge certificates of pending TLS-ALPN-01
/// validations by domain.
#[derive(Debug)]
pub struct LiveCert {
    current: std::sync::RwLock<Arc<CertifiedKey>>,
    challenges: std::sync::RwLock<std::collections::HashMap<String, Arc<CertifiedKey>>>,
}

impl LiveCert {
    /// Serving `cert`.
    pub fn new(cert: Arc<CertifiedKey>) -> LiveCert {
        LiveCert { current: std::sync::RwLock::new(cert), challenges: std::sync::RwLock::default() }
    }

    /// Serves `cert` from the next handshake on.
    pub fn replace(&self, cert: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = cert;
    }

    /// Answers the TLS-ALPN-01 challenge for `domain` with `cert` (None: no longer).
    pub fn set_challenge(&self, domain: &str, cert: Option<Arc<CertifiedKey>>) {
        let mut c = self.challenges.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match cert {
            Some(cert) => c.insert(domain.to_owned(), cert),
            None => c.remove(domain),
        };
    }
}

impl rustls::server::ResolvesServerCert for LiveCert {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello.alpn().is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if acme {
            let name = hello.server_name()?;
            return self.challenges.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(name).cloned();
        }
        Some(self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
    }
}

/// A client's TLS: the system's roots, and `ca` (a PEM file) when given.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system root rustls cannot parse is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if let Some(ca) = ca {
        for cert in certificates(ca)? {
            roots.add(cert).map_err(|e| TlsError::Config(format!("{}: {e}", ca.display())))?;
        }
    }
    if roots.is_empty() {
        return Err(TlsError::Config("no root certificates: the system has none and no --ca was given".into()));
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// PEM files of a private CA and of a certificate it signed.
#[derive(Clone, Debug)]
pub struct PrivatePki {
    /// The CA's certificate (what clients trust with `--ca`).
    pub ca: PathBuf,
    /// The server's certificate.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

/// A fresh private CA and a certificate it signed for `names` (host names
/// or IP addresses), written as PEM files in `dir`: for the benchmarks on
/// loopback, or a closed network that trusts its own CA.
pub fn private_pki(dir: &Path, names: &[&str]) -> Result<PrivatePki, TlsError> {
    let err = |e: rcgen::Error| TlsError::Config(e.to_string());
    let ca_key = rcgen::KeyPair::generate().map_err(err)?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "Shoal private CA");
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let leaf = rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).map_err(err)?;
    let cert = leaf.signed_by(&key, &issuer).map_err(err)?;
    let pki = PrivatePki { ca: dir.join("ca.pem"), cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    let write = |path: &Path, pem: String| {
        std::fs::write(path, pem).map_err(|e| TlsError::Read { path: path.to_owned(), reason: e.to_string() })
    };
    write(&pki.ca, ca_cert.pem())?;
    write(&pki.cert, cert.pem())?;
    write(&pki.key, key.serialize_pem())?;
    Ok(pki)
}

/// TLS over `stream` to `host` (its certificate checked against the
/// system's roots and `ca`), for the clients Shoal makes: the worker's
/// WebSocket, the settlement webhook.
pub async fn connect(
    host: &str,
    stream: tokio::net::TcpStream,
    ca: Option<&Path>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let cfg = client_config(ca).map_err(|e| e.to_string())?;
    let name =
        tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| format!("{host}: {e}"))?;
    tokio_rustls::TlsConnector::from(cfg).connect(name, stream).await.map_err(|e| format!("TLS with {host}: {e}"))
}
