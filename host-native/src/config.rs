//! The service's configuration: every default of the seeds, from a TOML
//! file, overridden by environment variables, overridden by flags.
//!
//! Overrides name any key by its dotted path: `--set
//! coordinator.default_redundancy=3` or
//! `SHOAL__COORDINATOR__DEFAULT_REDUNDANCY=3` (double underscores separate
//! the levels). Values are TOML (`3`, `true`, `"text"`); a value that does
//! not parse as TOML is taken as a string.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shoal_core::coordinator::CoordinatorConfig;

/// What `config print` shows in place of a secret.
pub const REDACTED: &str = "<set, not shown>";

/// TLS of both listeners: a certificate chain and its private key, PEM
/// files, or certificates from an ACME CA. All empty (the default): plain
/// HTTP and gRPC, for loopback.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The certificate chain (leaf first).
    #[serde(default)]
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key: PathBuf,
    /// Certificates obtained and renewed by ACME instead of files.
    #[serde(default)]
    pub acme: AcmeSettings,
}

/// ACME (RFC 8555): the coordinator obtains its certificate for `domains`
/// from `directory` and renews it, answering TLS-ALPN-01 challenges on
/// its HTTP port (which the CA must reach as port 443).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AcmeSettings {
    /// The names the certificate is for; empty: ACME is off.
    pub domains: Vec<String>,
    /// Contacts for the CA (`mailto:ops@example.com`).
    pub contact: Vec<String>,
    /// The CA's directory URL (Let's Encrypt's by default).
    pub directory: String,
    /// The CA certificate (PEM) of the directory's own HTTPS, for a private
    /// or test ACME server; empty: the system's roots.
    pub ca: PathBuf,
    /// Renew when the certificate has this many days left.
    pub renew_before_days: u32,
    /// How often the certificate's age is checked, ms.
    pub check_every_ms: u64,
}

impl Default for AcmeSettings {
    fn default() -> Self {
        AcmeSettings {
            domains: Vec::new(),
            contact: Vec::new(),
            directory: "https://acme-v02.api.letsencrypt.org/directory".into(),
            ca: PathBuf::new(),
            renew_before_days: 30,
            check_every_ms: 12 * 3_600_000,
        }
    }
}

impl TlsSettings {
    /// Whether TLS is configured (both files named, or ACME domains), or
    /// why the settings are incomplete.
    pub fn enabled(&self) -> Result<bool, String> {
        let files = match (self.cert.as_os_str().is_empty(), self.key.as_os_str().is_empty()) {
            (true, true) => false,
            (false, false) => true,
            _ => return Err("server.tls needs both cert and key (PEM files)".into()),
        };
        if files && !self.acme.domains.is_empty() {
            return Err("server.tls: certificate files or ACME domains, not both".into());
        }
        Ok(files || !self.acme.domains.is_empty())
    }
}

/// Where the service listens and keeps its data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// TLS for both listeners (`https://`, `wss://`); off by default.
    #[serde(default)]
    pub tls: TlsSettings,
    /// Pilot's task-submission port (plain TCP, one JSON frame per
    /// connection); off by default.
    #[serde(default)]
    pub pilot: crate::pilot::PilotSettings,
    /// gRPC and gRPC-web (seed: 14689).
    pub grpc: SocketAddr,
    /// HTTP: workers' WebSocket at `/ws`, `/healthz`, `/metrics`,
    /// `/api/stats`, the dashboard (seed: 14690).
    pub http: SocketAddr,
    /// Folder of the storage file (`shoal.redb`) and the worker secret.
    pub data: PathBuf,
    /// A built site (dashboard, worker page) to serve at `/` from disk;
    /// empty: the one embedded in the binary (if it was built with one).
    pub dist: PathBuf,
    /// Most worker connections at once (beyond: refused at the door).
    pub max_connections: usize,
    /// Most worker connections from one network (IPv4 /24, IPv6 /48) at
    /// once; 0: no limit.
    pub max_connections_per_origin: u32,
    /// Loopback connections (this machine's own workers) are not counted
    /// per origin.
    pub origin_limit_exempts_loopback: bool,
    /// Sockets open at once on each port, whatever state they are in
    /// (beyond: closed as soon as accepted). Lowered at start to fit the
    /// process's file-descriptor limit (four fifths of it for the HTTP
    /// port, where the workers are; a fifth for the gRPC port).
    pub max_sockets: usize,
    /// A client must send a request's headers within this long, ms (it is
    /// also how long a kept-alive HTTP connection may sit idle).
    pub header_timeout_ms: u64,
    /// A socket with no traffic either way for this long is closed, ms
    /// (workers heartbeat every few seconds; gRPC pings every 30 s).
    pub idle_timeout_ms: u64,
    /// Messages queued towards one worker before it counts as too slow and
    /// is disconnected (its work is re-queued).
    pub worker_send_queue: usize,
    /// A worker that takes none of what is being sent to it for this long
    /// is disconnected (its work is re-queued), ms: a peer that stops
    /// reading cannot hold its connection forever.
    pub write_stall_ms: u64,
    /// Diffs kept in storage (seed: 10 000; 0 keeps all), pruned every 1000.
    pub diff_retain: u64,
    /// Recent diffs kept in memory for live subscribers (seed: 100).
    pub diff_ring: usize,
    /// Grace period for in-flight work at shutdown, ms.
    pub shutdown_timeout_ms: u64,
    /// Logs as JSON lines instead of text.
    pub log_json: bool,
    /// Largest gRPC message, bytes (a task's inputs travel in one).
    pub max_grpc_message: usize,
    /// Input bytes all jobs being submitted may hold at once, before they
    /// are queued (then `coordinator.max_queued_input_bytes` applies).
    pub max_receiving_bytes: u64,
    /// `SubmitJob` streams one client address may have open at once.
    pub max_submits_per_client: u32,
    /// Serve the API beyond loopback with anonymous admin access anyway
    /// (the start refuses otherwise).
    pub insecure: bool,
    /// Reverse proxies (CIDRs or addresses) whose `Forwarded` /
    /// `X-Forwarded-For` headers name a worker's real address (its network
    /// origin); from anyone else those headers are ignored.
    pub trusted_proxies: Vec<String>,
    /// Connections from `trusted_proxies` to the HTTP port start with a
    /// PROXY protocol header (v1 or v2) naming the client (HAProxy,
    /// nginx `proxy_protocol`, a TCP load balancer).
    pub proxy_protocol: bool,
    /// Browser origins (`https://host[:port]`) allowed to call the API
    /// across origins (CORS, on the gRPC port and `/api/stats`); empty: none.
    /// The dashboard the HTTP port serves calls on its own origin and needs
    /// no entry.
    pub cors_origins: Vec<String>,
    /// Sites (`https://host[:port]`, or `"*"` for any) whose pages may run
    /// browser workers of this coordinator with the embed kit
    /// (`<script src="https://COORDINATOR/embed.js">`): their WebSocket is
    /// taken and the kit's files carry CORS for them. The coordinator's own
    /// pages need no entry; empty: only those.
    pub embed_origins: Vec<String>,
    /// A URL (`https://…`, or `http://` on a private network) each agreed
    /// epoch's signed settlement is POSTed to, retried until it answers
    /// 2xx (headers `Idempotency-Key`, `X-Shoal-Signature: ed25519=…`,
    /// `X-Shoal-Key`); empty: none (the settlement files are written
    /// either way).
    pub settlement_webhook: String,
    /// An admin API token (`authorization: Bearer <token>`; clients:
    /// `--api-token` or `SHOAL_API_TOKEN`). More tokens, with roles, are
    /// made with `shoal token create` and kept (hashed) in storage.
    pub api_token: String,
    /// What a caller without a token may do: `auto` (admin when no
    /// `api_token` is set, for a loopback playground; else none), `none`,
    /// `swarm` (the public swarm page), `read`, or `admin`.
    pub anonymous: crate::access::Anonymous,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            tls: TlsSettings::default(),
            pilot: crate::pilot::PilotSettings::default(),
            grpc: SocketAddr::from(([127, 0, 0, 1], 14689)),
            http: SocketAddr::from(([127, 0, 0, 1], 14690)),
            data: PathBuf::from("shoal-data"),
            dist: PathBuf::new(),
            max_connections: 20_000,
            max_connections_per_origin: 64,
            origin_limit_exempts_loopback: true,
            max_sockets: 24_000,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 120_000,
            worker_send_queue: 4096,
            write_stall_ms: 30_000,
            diff_retain: 10_000,
            diff_ring: 100,
            shutdown_timeout_ms: 10_000,
            log_json: false,
            max_grpc_message: 64 << 20,
            max_receiving_bytes: 2 << 30,
            max_submits_per_client: 4,
            api_token: String::new(),
            anonymous: crate::access::Anonymous::Auto,
            cors_origins: Vec::new(),
            embed_origins: Vec::new(),
            settlement_webhook: String::new(),
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
            insecure: false,
        }
    }
}

/// Everything.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShoalConfig {
    /// The service.
    #[serde(default)]
    pub server: ServerConfig,
    /// The coordinator's rules (core).
    #[serde(default)]
    pub coordinator: CoordinatorConfig,
    /// What is kept, for how long.
    #[serde(default)]
    pub retention: RetentionConfig,
}

/// How long finished jobs are kept: their records, results and inputs
/// (settled epochs and the ledger's chain of digests are kept).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// A finished job is deleted this long after it finished: a number
    /// with a unit (`7d`, `12h`, `30m`, `45s`, `500ms`); `forever` keeps
    /// everything.
    pub finished_jobs: String,
    /// How often finished jobs are looked for, ms.
    pub sweep_every_ms: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { finished_jobs: "7d".into(), sweep_every_ms: 60_000 }
    }
}

impl RetentionConfig {
    /// How long finished jobs are kept (None: forever), or why the setting
    /// does not parse.
    pub fn keep_finished(&self) -> Result<Option<shoal_core::Millis>, String> {
        let v = self.finished_jobs.trim();
        if v == "forever" {
            return Ok(None);
        }
        let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
        let (n, unit) = v.split_at(split);
        let scale: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => 0,
        };
        match n.parse::<u64>().ok().and_then(|n| n.checked_mul(scale)) {
            Some(ms) if scale > 0 => Ok(Some(shoal_core::Millis(ms))),
            _ => Err(format!(
                "retention.finished_jobs = \"{v}\" is not a duration (a number and ms, s, m, h or d, e.g. \"7d\"; or \"forever\")"
            )),
        }
    }
}

/// Why a configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file or an override is not valid TOML of the right shape.
    #[error("{origin}: {message}")]
    Invalid {
        /// File, variable or flag.
        origin: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(origin: impl Into<String>, message: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid { origin: origin.into(), message: message.to_string() }
}

/// Sets `path` (dotted) to `value` in a TOML table, creating levels.
fn set_path(root: &mut toml::Table, path: &[&str], value: toml::Value, origin: &str) -> Result<(), ConfigError> {
    let (last, parents) = path.split_last().ok_or_else(|| invalid(origin, "empty key"))?;
    let mut table = root;
    for p in parents {
        let entry = table.entry((*p).to_owned()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry.as_table_mut().ok_or_else(|| invalid(origin, format!("`{p}` is not a table")))?;
    }
    table.insert((*last).to_owned(), value);
    Ok(())
}

/// Parses an override value: TOML if it parses, else a string.
fn parse_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

/// Merges `over` into `base`, table by table.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

impl ShoalConfig {
    /// Defaults, then `file` (if any), then `SHOAL__A__B` variables from
    /// `env`, then `key=value` overrides.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        sets: &[String],
    ) -> Result<Self, ConfigError> {
        let mut tree = toml::Table::try_from(ShoalConfig::default()).map_err(|e| invalid("defaults", e))?;
        if let Some(path) = file {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
            let t: toml::Table = text.parse().map_err(|e| invalid(path.display().to_string(), e))?;
            merge(&mut tree, t);
        }
        let mut vars: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with("SHOAL__")).collect();
        vars.sort();
        for (k, v) in vars {
            let path: Vec<String> = k["SHOAL__".len()..].split("__").map(str::to_lowercase).collect();
            let refs: Vec<&str> = path.iter().map(String::as_str).collect();
            set_path(&mut tree, &refs, parse_value(&v), &k)?;
        }
        for s in sets {
            let (k, v) = s.split_once('=').ok_or_else(|| invalid(format!("--set {s}"), "expected key=value"))?;
            let refs: Vec<&str> = k.trim().split('.').collect();
            set_path(&mut tree, &refs, parse_value(v.trim()), &format!("--set {s}"))?;
        }
        let cfg: ShoalConfig = serde_path_to_error::deserialize(toml::Value::Table(tree)).map_err(|e| {
            let path = e.path().to_string();
            invalid(format!("configuration key `{path}`"), e.into_inner().message())
        })?;
        shoal_core::coordinator::compile_payout_pattern(&cfg.coordinator.payout_pattern)
            .map_err(|e| invalid("configuration key `coordinator.payout_pattern`", e))?;
        crate::embed::EmbedOrigins::parse(&cfg.server.embed_origins)
            .map_err(|e| invalid("configuration key `server.embed_origins`", e))?;
        let hook = &cfg.server.settlement_webhook;
        if !hook.is_empty()
            && !hook.parse::<axum::http::Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty())
            })
        {
            return Err(invalid(
                "configuration key `server.settlement_webhook`",
                format!("{hook:?} is not an http(s) URL"),
            ));
        }
        Ok(cfg)
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        if !shown.server.api_token.is_empty() {
            // A secret is never printed: only whether one is set.
            REDACTED.clone_into(&mut shown.server.api_token);
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_and_overrides_apply_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("shoal.toml");
        std::fs::write(&file, "[coordinator]\ndefault_redundancy = 3\nmax_workers = 7\n").expect("write");
        let env = vec![("SHOAL__COORDINATOR__MAX_WORKERS".to_owned(), "9".to_owned())];
        let cfg = ShoalConfig::load(Some(&file), env, &["server.log_json=true".into()]).expect("valid");
        assert_eq!(cfg.coordinator.default_redundancy, 3);
        assert_eq!(cfg.coordinator.max_workers, 9, "env beats the file");
        assert!(cfg.server.log_json);
        let again: ShoalConfig = toml::from_str(&cfg.to_toml()).expect("printed config parses");
        assert_eq!(again, cfg);
        assert_eq!(ShoalConfig::load(None, vec![], &[]).expect("defaults"), ShoalConfig::default());
    }

    #[test]
    fn a_printed_configuration_shows_no_secret() {
        let cfg = ShoalConfig::load(None, vec![], &["server.api_token=\"hunter2-hunter2\"".into()]).expect("valid");
        let printed = cfg.to_toml();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains(REDACTED), "that one is set is shown: {printed}");
        assert!(!ShoalConfig::default().to_toml().contains(REDACTED), "an unset one is shown empty");
    }

    #[test]
    fn bad_input_is_named() {
        let err = ShoalConfig::load(None, vec![], &["coordinator.max_workers=lots".into()]).expect_err("refused");
        assert!(err.to_string().contains("max_workers"), "{err}");
        let err = ShoalConfig::load(None, vec![], &["nonsense".into()]).expect_err("refused");
        assert!(err.to_string().contains("key=value"), "{err}");
        let err = ShoalConfig::load(None, vec![], &["server.typo=1".into()]).expect_err("refused");
        assert!(err.to_string().contains("typo"), "{err}");
        let err = ShoalConfig::load(None, vec![], &["coordinator.payout_pattern=\"0x[0-9\"".into()])
            .expect_err("a regex that does not compile");
        assert!(err.to_string().contains("payout_pattern"), "{err}");
        let err = ShoalConfig::load(None, vec![], &["server.embed_origins=[\"https://blog.example/posts\"]".into()])
            .expect_err("a path is not an origin");
        assert!(err.to_string().contains("embed_origins") && err.to_string().contains("/posts"), "{err}");
        let err =
            ShoalConfig::load(None, vec![], &["server.settlement_webhook=ftp://x/y".into()]).expect_err("not http");
        assert!(err.to_string().contains("settlement_webhook"), "{err}");
        let ok = ShoalConfig::load(None, vec![], &["server.embed_origins=[\"*\"]".into()]).expect("any site");
        assert_eq!(ok.server.embed_origins, vec!["*".to_owned()]);
    }
}
