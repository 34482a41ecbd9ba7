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
                "address": address,
            })
        })
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
        "public_key": shoal_core::Digest(key.public_key()).to_hex(),
        "signature": hex(&signature),
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
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

/// Settles an agreed epoch: writes its file, retrying with backoff (1 s,
/// doubling, up to [`ATTEMPTS`]); the outcome is logged and counted, and
/// returned (true: written).
pub async fn settle(data: PathBuf, s: EpochSettlement, key: Identity) -> bool {
    let mut delay = Duration::from_secs(1);
    for attempt in 1..=ATTEMPTS {
        let (d, s2, k) = (data.clone(), s.clone(), key.clone());
        match tokio::task::spawn_blocking(move || write_once(&d, &s2, &k)).await {
            Ok(Ok(path)) => {
                metrics::counter!("shoal_settlements_total", "outcome" => "written").increment(1);
                tracing::info!(epoch = s.epoch, file = %path.display(), "settlement written");
                return true;
            }
            Ok(Err(e)) => tracing::warn!(epoch = s.epoch, attempt, error = %e, "settlement file not written; retrying"),
            Err(e) => tracing::warn!(epoch = s.epoch, attempt, error = %e, "settlement writer failed; retrying"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_mins(1));
    }
    metrics::counter!("shoal_settlements_total", "outcome" => "failed").increment(1);
    tracing::error!(epoch = s.epoch, "settlement file could not be written: the epoch stays unsettled on disk");
    false
}
