//! Certificates from an ACME CA (Let's Encrypt, or any RFC 8555 server):
//! obtained at start when none is cached, renewed before they expire, and
//! swapped into both listeners without a restart. The challenge is
//! TLS-ALPN-01 (RFC 8737), answered by the HTTPS listener itself, so the
//! coordinator's HTTP port must be the one the CA reaches (443). The
//! account, the certificate and its key are kept in `<data>/acme/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use tokio::sync::watch;

use crate::config::AcmeSettings;
use crate::tls::{certified_key, LiveCert};

/// Why a certificate could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The ACME exchange failed.
    #[error("ACME: {0}")]
    Protocol(String),
    /// A file of the cache could not be read or written.
    #[error("ACME cache {path}: {reason}")]
    Cache {
        /// Which file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn protocol(e: impl std::fmt::Display) -> AcmeError {
    AcmeError::Protocol(e.to_string())
}

/// Keeps the listeners' certificate issued and fresh.
pub struct Acme {
    settings: AcmeSettings,
    cache: PathBuf,
    live: Arc<LiveCert>,
    /// When the certificate being served expires (None: a placeholder).
    expires: Option<SystemTime>,
}

/// A certificate's end of validity, from its PEM chain (the leaf first).
pub fn not_after(chain_pem: &[u8]) -> Option<SystemTime> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain_pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    let secs = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// A self-signed certificate for `domains`, served until the first one is
/// issued (so the listeners can start, and answer the challenges).
fn placeholder(domains: &[String]) -> Result<Arc<tokio_rustls::rustls::sign::CertifiedKey>, AcmeError> {
    let key = rcgen::KeyPair::generate().map_err(protocol)?;
    let cert = rcgen::CertificateParams::new(domains.to_vec()).and_then(|p| p.self_signed(&key)).map_err(protocol)?;
    certified_key(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).map_err(protocol)
}

impl Acme {
    /// The certificate manager for `settings`, caching in `<data>/acme/`,
    /// and the live certificate the listeners serve: the cached one when
    /// there is one, else a placeholder until the first is issued.
    pub fn new(settings: AcmeSettings, data: &Path) -> Result<(Acme, Arc<LiveCert>), AcmeError> {
        let cache = data.join("acme");
        std::fs::create_dir_all(&cache).map_err(|e| AcmeError::Cache { path: cache.clone(), reason: e.to_string() })?;
        let cached = std::fs::read(cache.join("cert.pem")).ok().zip(std::fs::read(cache.join("key.pem")).ok());
        let (cert, expires) = match cached.and_then(|(c, k)| Some((certified_key(&c, &k).ok()?, not_after(&c)?))) {
            Some((cert, expires)) => (cert, Some(expires)),
            None => (placeholder(&settings.domains)?, None),
        };
        let live = Arc::new(LiveCert::new(cert));
        Ok((Acme { settings, cache, live: live.clone(), expires }, live))
    }

    /// Whether the certificate being served must be (re)issued now.
    fn due(&self, now: SystemTime) -> bool {
        let margin = Duration::from_secs(u64::from(self.settings.renew_before_days) * 86_400);
        self.expires.is_none_or(|e| e.duration_since(now).is_ok_and(|left| left <= margin) || e <= now)
    }

    /// Checks every `check_every_ms`, issuing when due; a failure is
    /// retried after a minute (at most the check interval).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let every = Duration::from_millis(self.settings.check_every_ms.max(1));
        loop {
            let mut wait = every;
            if self.due(SystemTime::now()) {
                match self.issue().await {
                    Ok(expires) => {
                        tracing::info!(domains = ?self.settings.domains, ?expires, "ACME certificate installed");
                        metrics::counter!("shoal_acme_certificates_total").increment(1);
                        self.expires = Some(expires);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "ACME issuance failed; retrying");
                        metrics::counter!("shoal_acme_failures_total").increment(1);
                        wait = every.min(Duration::from_mins(1));
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    async fn account(&self) -> Result<Account, AcmeError> {
        let builder = || {
            if self.settings.ca.as_os_str().is_empty() {
                Account::builder().map_err(protocol)
            } else {
                Account::builder_with_root(&self.settings.ca).map_err(protocol)
            }
        };
        let path = self.cache.join("account.json");
        if let Ok(json) = std::fs::read(&path) {
            if let Ok(credentials) = serde_json::from_slice::<AccountCredentials>(&json) {
                return builder()?.from_credentials(credentials).await.map_err(protocol);
            }
        }
        let contact: Vec<&str> = self.settings.contact.iter().map(String::as_str).collect();
        let new = NewAccount { contact: &contact, terms_of_service_agreed: true, only_return_existing: false };
        let (account, credentials) =
            builder()?.create(&new, self.settings.directory.clone(), None).await.map_err(protocol)?;
        let json = serde_json::to_vec(&credentials).map_err(protocol)?;
        write_private(&path, &json)?;
        Ok(account)
    }

    /// One order: every domain validated by TLS-ALPN-01, the certificate
    /// installed and cached; returns when it expires.
    async fn issue(&self) -> Result<SystemTime, AcmeError> {
        let account = self.account().await?;
        let ids: Vec<Identifier> = self.settings.domains.iter().map(|d| Identifier::Dns(d.clone())).collect();
        let mut order = account.new_order(&NewOrder::new(&ids)).await.map_err(protocol)?;
        let mut answered = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(protocol)?;
            if authz.status != AuthorizationStatus::Pending {
                continue;
            }
            let mut challenge = authz
                .challenge(ChallengeType::TlsAlpn01)
                .ok_or_else(|| AcmeError::Protocol("the CA offers no tls-alpn-01 challenge".into()))?;
            let Identifier::Dns(domain) = challenge.identifier().identifier.clone() else {
                return Err(AcmeError::Protocol("an identifier that is not a domain".into()));
            };
            let digest = challenge.key_authorization().digest();
            self.live.set_challenge(&domain, Some(challenge_cert(&domain, digest.as_ref())?));
            answered.push(domain);
            challenge.set_ready().await.map_err(protocol)?;
        }
        let patience = RetryPolicy::new().timeout(Duration::from_mins(2));
        let status = order.poll_ready(&patience).await;
        for d in &answered {
            self.live.set_challenge(d, None);
        }
        match status.map_err(protocol)? {
            OrderStatus::Ready => {}
            other => return Err(AcmeError::Protocol(format!("the order is {other:?}, not ready"))),
        }
        let key_pem = order.finalize().await.map_err(protocol)?;
        let chain_pem = order.poll_certificate(&patience).await.map_err(protocol)?;
        let cert = certified_key(chain_pem.as_bytes(), key_pem.as_bytes()).map_err(protocol)?;
        let expires = not_after(chain_pem.as_bytes())
            .ok_or_else(|| AcmeError::Protocol("the issued certificate does not parse".into()))?;
        write_private(&self.cache.join("key.pem"), key_pem.as_bytes())?;
        write_private(&self.cache.join("cert.pem"), chain_pem.as_bytes())?;
        self.live.replace(cert);
        Ok(expires)
    }
}

/// The certificate that answers a TLS-ALPN-01 challenge: self-signed for
/// `domain`, carrying the key authorization's digest (RFC 8737).
fn challenge_cert(domain: &str, digest: &[u8]) -> Result<Arc<tokio_rustls::rustls::sign::CertifiedKey>, AcmeError> {
    let key = rcgen::KeyPair::generate().map_err(protocol)?;
    let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()]).map_err(protocol)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(protocol)?;
    certified_key(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).map_err(protocol)
}

/// Writes a file only its owner reads, whole or not at all.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AcmeError> {
    let err = |e: std::io::Error| AcmeError::Cache { path: path.to_owned(), reason: e.to_string() };
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp).map_err(err)?;
        f.write_all(bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)
}
