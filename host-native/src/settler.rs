//! What happens to a settled epoch once the settlement consensus agreed on
//! its digest: the built-in settler writes a signed settlement file, one
//! per epoch, to `settlements/` in the data folder, for whoever pays
//! (an exchange's script, an accountant, an on-chain relayer) to read.
//!
//! The file is JSON with every payout (worker, amount, bounty, weight,
//! tasks, accuracy, bonus, payout address), the settlement's digest, an
//! idempotency key and the coordinator's Ed25519 signature over
//! [`shoal_core::identity::settlement_message`] (epoch and digest; the
//! digest covers every payout and address). The signing key is derived
//! from the worker secret, so it is the same across restarts; its public
//! half is in every file. Writing is atomic (a temporary file renamed) and
//! idempotent (an existing file for the same digest is left as it is); a
//! failed write is retried with backoff.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use shoal_core::coordinator::rewards::EpochSettlement;
use shoal_core::identity::{settlement_message, Identity};

/// The folder of settlement files, in the data folder.
pub const SETTLEMENTS_DIR: &str = "settlements";
/// Attempts at writing one file before it is reported failed.
const ATTEMPTS: u32 = 8;

/// The coordinator's settlement signing key, derived from its worker secret.
pub fn signing_key(secret: &shoal_core::auth::MasterSecret) -> Identity {
    Identity::from_seed(&secret.derive_seed("settlement-key/v1"))
}

/// The file of an epoch.
pub fn file_of(data: &Path, epoch: u64) -> PathBuf {
    data.join(SETTLEMENTS_DIR).join(format!("epoch-{epoch:010}.json"))
}

/// The signed settlement document of an epoch.
pub fn document(s: &EpochSettlement, key: &Identity) -> serde_json::Value {
    let signature = key.sign(&settlement_message(s.epoch, &s.digest));
    let payouts: Vec<serde_json::Value> = s
        .payouts
        .iter()
        .map(|p| {
            let address = s.addresses.iter().find(|a| a.worker == p.worker).map(|a| a.address.as_str());
            json!({
                "worker": p.worker.as_str(),
                "amount": p.amount.to_string(),
                "bounty": p.bounty.to_string(),
                "weight": p.weight.to_string(),
                "tasks": p.tasks,
                "accuracy_ppm": p.accuracy_ppm,
                "bonus": p.bonus,
                "stake": s.stakes.held_by(&p.worker).to_string(),
                "address": address,
            })
        })
        .collect();
    let forfeits: Vec<serde_json::Value> = s
        .stakes
        .forfeits
        .iter()
        .map(|(w, amount)| json!({"worker": w.as_str(), "amount": amount.to_string()}))
        .collect();
    json!({
        "epoch": s.epoch,
        "digest": s.digest.to_hex(),
        "idempotency_key": format!("shoal-epoch-{}-{}", s.epoch, s.digest.to_hex()),
        "reward": s.reward.to_string(),
        "carried_in": s.carried_in.to_string(),
        "forfeited": s.forfeited.to_string(),
        "operator_cut": s.operator_cut.to_string(),
        "carried_out": s.carried_out.to_string(),
        "payouts": payouts,
        "forfeits": forfeits,
        "public_key": shoal_core::Digest(key.public_key()).to_hex(),
        "signature": shoal_core::digest::hex_lower(&signature),
    })
}

/// Writes an epoch's file once (atomically); an existing file for the same
/// digest is kept.
fn write_once(data: &Path, s: &EpochSettlement, key: &Identity) -> std::io::Result<PathBuf> {
    let path = file_of(data, s.epoch);
    if let Ok(existing) = std::fs::read(&path) {
        let same = serde_json::from_slice::<serde_json::Value>(&existing)
            .is_ok_and(|v| v["digest"] == serde_json::Value::String(s.digest.to_hex()));
        if same {
            return Ok(path);
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_vec_pretty(&document(s, key)).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Where agreed settlements go.
#[derive(Clone, Debug)]
pub struct Settler {
    /// The data folder (files go to its `settlements/`).
    pub data: PathBuf,
    /// The coordinator's settlement signing key.
    pub key: Identity,
    /// `server.settlement_webhook` (None: no webhook).
    pub webhook: Option<String>,
}

/// Settles an agreed epoch: writes its file, then posts it to the webhook
/// if there is one, each retried with backoff (1 s, doubling to a minute,
/// [`ATTEMPTS`] tries); the outcome is logged and counted, and returned
/// (true: settled).
pub async fn settle(settler: Settler, s: EpochSettlement) -> bool {
    let epoch = s.epoch;
    let file = retry("settlement file", epoch, || {
        let (d, s2, k) = (settler.data.clone(), s.clone(), settler.key.clone());
        async move {
            match tokio::task::spawn_blocking(move || write_once(&d, &s2, &k)).await {
                Ok(Ok(path)) => {
                    tracing::info!(epoch, file = %path.display(), "settlement written");
                    Ok(())
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await;
    let hook = match &settler.webhook {
        None => true,
        Some(url) => retry("settlement webhook", epoch, || post_webhook(url, &s, &settler.key)).await,
    };
    let outcome = if file && hook { "settled" } else { "failed" };
    metrics::counter!("shoal_settlements_total", "outcome" => outcome).increment(1);
    if !(file && hook) {
        tracing::error!(epoch, file, webhook = hook, "the epoch could not be settled after every retry");
    }
    file && hook
}

/// Runs `attempt` until it succeeds, at most [`ATTEMPTS`] times with
/// backoff; false if it never did.
async fn retry<F, Fut>(what: &str, epoch: u64, mut attempt: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut delay = Duration::from_secs(1);
    for n in 1..=ATTEMPTS {
        match attempt().await {
            Ok(()) => return true,
            Err(e) => tracing::warn!(epoch, attempt = n, error = %e, "{what} failed; retrying"),
        }
        if n < ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_mins(1));
        }
    }
    false
}

/// Posts an epoch's signed document to the operator's webhook
/// (`server.settlement_webhook`, `http://` or `https://`): the body is the
/// document, `Idempotency-Key` its key, and `X-Shoal-Signature` an Ed25519
/// signature over the body by the coordinator's settlement key (its public
/// half in `X-Shoal-Key` and in the body). A 2xx answer settles it.
pub async fn post_webhook(url: &str, s: &EpochSettlement, key: &Identity) -> Result<(), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("settlement webhook {url:?}: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("settlement webhook {url:?}: http:// or https://")),
    };
    let (Some(host), Some(authority)) = (uri.host(), uri.authority()) else {
        return Err(format!("settlement webhook {url:?} names no host"));
    };
    let host = host.trim_matches(['[', ']']).to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let doc = document(s, key);
    let body = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;
    let request = hyper::Request::post(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(hyper::header::HOST, authority.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", doc["idempotency_key"].as_str().unwrap_or_default())
        .header("x-shoal-key", shoal_core::Digest(key.public_key()).to_hex())
        .header("x-shoal-signature", format!("ed25519={}", shoal_core::digest::hex_lower(&key.sign(&body))))
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
        if tls {
            send(crate::tls::connect(&host, stream, None).await?, request).await
        } else {
            send(stream, request).await
        }
    };
    let status = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| "the webhook did not answer within 30 s".to_owned())??;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the webhook answered {status}"))
    }
}

async fn send<S>(
    stream: S,
    request: hyper::Request<http_body_util::Full<bytes::Bytes>>,
) -> Result<hyper::StatusCode, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    Ok(response.status())
}
