//! The messages between the page and its Web Worker, as JSON strings (the
//! page may be JavaScript, the dashboard, or a test driving the browser).

use serde::{Deserialize, Serialize};

use crate::policy::GpuShare;

/// What the page asks of the worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Control {
    /// Connect and take work (again, after a stop).
    Start(StartOptions),
    /// Leave the coordinator cleanly and stay idle.
    Stop,
    /// Leave the coordinator (its work goes to others) until resumed.
    Pause,
    /// Rejoin after a pause.
    Resume,
    /// Use at most this share of the GPU's time.
    SetGpuShare {
        /// Percent, 10–100 (clamped).
        percent: u8,
    },
}

/// How to start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartOptions {
    /// The coordinator's worker endpoint, `ws://host:port/ws` (or `wss://`).
    pub url: String,
    /// A worker token from `shoal keygen`; without one the tab joins as
    /// this browser's contributor identity (or as a guest: `guest`).
    #[serde(default)]
    pub token: Option<String>,
    /// Join as an anonymous guest (a new id each connection, nothing
    /// kept) instead of as this browser's identity.
    #[serde(default)]
    pub guest: bool,
    /// Where this identity's payouts go (a site embedding the worker sets
    /// its own: the site owner is credited). With `name` and `team`,
    /// declared under the identity's signature; when none is given the
    /// coordinator keeps what was declared before.
    #[serde(default)]
    pub payout: Option<String>,
    /// A display name for leaderboards.
    #[serde(default)]
    pub name: Option<String>,
    /// A team for leaderboards.
    #[serde(default)]
    pub team: Option<String>,
    /// Keep the key as a seed signed with in wasm even where the browser's
    /// WebCrypto has Ed25519 (tests the fallback other browsers take).
    #[serde(default)]
    pub wasm_key: bool,
    /// The worker id the token was made for (token mode only).
    #[serde(default)]
    pub worker_id: Option<String>,
    /// Percent of the GPU's time to use (default 100).
    #[serde(default = "full_share")]
    pub gpu_share: u8,
    /// Assignments accepted at once. Default, from the device: one more
    /// than the tasks its measured pipeline keeps in flight (one on the
    /// CPU, or at a GPU share under 100 %, where runs go one at a time).
    #[serde(default)]
    pub max_concurrent: Option<u16>,
    /// Use WebGPU when the browser has it (off: the CPU references in wasm).
    #[serde(default = "yes")]
    pub use_gpu: bool,
    /// MiB of shared inputs (a job's model, its tables) kept between tasks
    /// instead of downloaded again (default 64; 0: none).
    #[serde(default = "default_cache_mib")]
    pub cache_mib: u32,
}

fn default_cache_mib() -> u32 {
    64
}

fn full_share() -> u8 {
    100
}

fn yes() -> bool {
    true
}

impl StartOptions {
    /// Options for `url` with every default (this browser's identity, full
    /// share, GPU).
    pub fn new(url: &str) -> Self {
        StartOptions {
            url: url.to_owned(),
            token: None,
            guest: false,
            payout: None,
            name: None,
            team: None,
            wasm_key: false,
            worker_id: None,
            gpu_share: full_share(),
            max_concurrent: None,
            use_gpu: true,
            cache_mib: default_cache_mib(),
        }
    }

    /// Checks what a page may get wrong, with a message for its user.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.url.starts_with("ws://") || self.url.starts_with("wss://")) {
            return Err(format!("coordinator URL must start with ws:// or wss://, got {:?}", self.url));
        }
        if self.token.is_some() && self.worker_id.is_none() {
            return Err("a token is made for one worker id: give workerId with the token".into());
        }
        if let Some(id) = &self.worker_id {
            shoal_core::WorkerId::new(id.clone()).map_err(|e| format!("worker id {id:?}: {e}"))?;
        }
        if self.max_concurrent == Some(0) {
            return Err("maxConcurrent must be at least 1".into());
        }
        if self.token.is_some() && self.guest {
            return Err("a token and guest: choose one".into());
        }
        if let Some(p) = self.profile() {
            if self.token.is_some() || self.guest {
                return Err("payout, name and team belong to this browser's identity, not a token or a guest".into());
            }
            p.check().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Whether the tab joins as this browser's contributor identity.
    pub fn as_identity(&self) -> bool {
        self.token.is_none() && !self.guest
    }

    /// What the identity declares (None: nothing given).
    pub fn profile(&self) -> Option<shoal_core::identity::Profile> {
        if self.payout.is_none() && self.name.is_none() && self.team.is_none() {
            return None;
        }
        Some(shoal_core::identity::Profile {
            payout: self.payout.clone().unwrap_or_default(),
            name: self.name.clone().unwrap_or_default(),
            team: self.team.clone().unwrap_or_default(),
        })
    }

    /// The host (and port, unless the scheme's default) of the URL, as the
    /// browser's `Host` header names it: what the identity's hello signs.
    pub fn audience(&self) -> String {
        let (rest, default_port) = match self.url.split_once("://") {
            Some(("wss", rest)) => (rest, ":443"),
            Some((_, rest)) => (rest, ":80"),
            None => (self.url.as_str(), ":80"),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
        authority.strip_suffix(default_port).unwrap_or(authority).to_ascii_lowercase()
    }

    /// The share, clamped to what the worker supports.
    pub fn share(&self) -> GpuShare {
        GpuShare::new(self.gpu_share)
    }
}

/// Where the worker stands, for the page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not started (or stopped).
    #[default]
    Idle,
    /// Looking for the GPU.
    Detecting,
    /// Opening the connection.
    Connecting,
    /// Connected: being benchmarked, then taking work.
    Working,
    /// Waiting before the next connection attempt.
    Reconnecting,
    /// Paused by the user.
    Paused,
    /// Could not start (bad options); see `last_reason`.
    Failed,
}

/// The device this tab computes on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSummary {
    /// `BrowserWebGpu`, or `Cpu` without WebGPU.
    pub backend: String,
    /// Adapter or CPU name.
    pub name: String,
    /// Vendor.
    pub vendor: String,
    /// Adapter type (`Cpu` for a software adapter such as SwiftShader).
    pub device_type: String,
}

/// A snapshot of the worker, posted to the page on every change (at most a
/// few times a second).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Where it stands.
    pub phase: Phase,
    /// The id the coordinator knows this tab by (an identity's is its
    /// key's; a guest's is assigned).
    pub worker_id: Option<String>,
    /// This browser's contributor identity (`id-…`), once loaded.
    pub identity: Option<String>,
    /// Where its key is kept: `webcrypto` (a non-extractable key),
    /// `indexeddb` (a seed), or `memory` (nothing kept).
    pub identity_kept: Option<String>,
    /// Its device, once detected.
    pub device: Option<DeviceSummary>,
    /// Percent of the GPU's time it may use.
    pub gpu_share: u8,
    /// Results sent over all connections.
    pub completed: u64,
    /// Assignments accepted and not yet finished.
    pub running: u32,
    /// Connections made.
    pub connections: u64,
    /// Milliseconds spent running kernels.
    pub busy_ms: u64,
    /// Why the last connection ended or the last attempt failed.
    pub last_reason: String,
    /// What the last settled epoch paid this tab, if one did while it was
    /// connected.
    pub last_payout: Option<PayoutSummary>,
}

/// A payout notice, for the page (amounts in base units, as decimal
/// strings: JavaScript numbers cannot hold them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutSummary {
    /// The epoch.
    pub epoch: u64,
    /// Its share of the worker pool.
    pub amount: String,
    /// Its share of the bounty.
    pub bounty: String,
    /// 1 for the largest payout of the epoch.
    pub rank: u32,
    /// Workers the epoch paid.
    pub payees: u32,
    /// Everything it was paid so far.
    pub total: String,
}

impl From<shoal_core::wire::message::PayoutNotice> for PayoutSummary {
    fn from(n: shoal_core::wire::message::PayoutNotice) -> Self {
        PayoutSummary {
            epoch: n.epoch,
            amount: n.amount.to_string(),
            bounty: n.bounty.to_string(),
            rank: n.rank,
            payees: n.payees,
            total: n.total.to_string(),
        }
    }
}

/// A message from the worker to the page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // made, serialised and dropped at once; never stored
pub enum ToPage {
    /// The worker's wasm is loaded: it takes controls from now on.
    Ready,
    /// A new status.
    Status(Status),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_round_trip_as_the_page_writes_them() {
        let c: Control = serde_json::from_str(r#"{"type":"start","url":"ws://127.0.0.1:1/ws","gpuShare":50}"#)
            .expect("a page's start");
        let Control::Start(o) = &c else { panic!("{c:?}") };
        assert_eq!((o.gpu_share, o.max_concurrent, o.use_gpu, o.token.as_deref()), (50, None, true, None));
        assert_eq!(o.validate(), Ok(()));
        let back: Control = serde_json::from_str(&serde_json::to_string(&c).expect("json")).expect("back");
        assert_eq!(back, c);
        let share: Control = serde_json::from_str(r#"{"type":"set_gpu_share","percent":30}"#).expect("share");
        assert_eq!(share, Control::SetGpuShare { percent: 30 });
        assert!(serde_json::from_str::<Control>(r#"{"type":"start","url":"ws://x","gpu":1}"#).is_err());
    }

    #[test]
    fn bad_start_options_are_explained() {
        let mut o = StartOptions::new("http://127.0.0.1/ws");
        assert!(o.validate().expect_err("http").contains("ws://"));
        o.url = "ws://127.0.0.1/ws".into();
        o.token = Some("shoal_00".into());
        assert!(o.validate().expect_err("token without id").contains("workerId"));
        o.worker_id = Some("tab one".into());
        assert!(o.validate().expect_err("bad id").contains("tab one"));
        o.worker_id = Some("tab-1".into());
        assert_eq!(o.validate(), Ok(()));
        o.payout = Some("0xabc".into());
        assert!(o.validate().expect_err("token and payout").contains("identity"));
        o.token = None;
        o.worker_id = None;
        assert_eq!(o.validate(), Ok(()));
        o.payout = Some("two words".into());
        assert!(o.validate().expect_err("bad address").contains("payout"));
    }

    #[test]
    fn the_audience_is_the_host_header_a_browser_sends() {
        let at = |url: &str| StartOptions::new(url).audience();
        assert_eq!(at("wss://Shoal.example/ws"), "shoal.example");
        assert_eq!(at("wss://shoal.example:443/ws"), "shoal.example");
        assert_eq!(at("wss://shoal.example:8443/ws?x=1"), "shoal.example:8443");
        assert_eq!(at("ws://127.0.0.1:14690/ws"), "127.0.0.1:14690");
        assert_eq!(at("ws://[::1]:80/ws"), "[::1]");
    }

    #[test]
    fn status_is_plain_json_for_the_page() {
        let s = Status { phase: Phase::Working, gpu_share: 100, completed: 3, ..Status::default() };
        let v: serde_json::Value = serde_json::to_value(ToPage::Status(s)).expect("json");
        assert_eq!(v["type"], "status");
        assert_eq!(v["phase"], "working");
        assert_eq!(v["completed"], 3);
    }
}
