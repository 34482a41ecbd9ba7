//! Every number the coordinator decides with, with the seeds' defaults.

use serde::{Deserialize, Serialize};

use super::profile::ProfilePolicy;
use super::rewards::RewardConfig;
use crate::time::Millis;

/// When an epoch closes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochTrigger {
    /// Close after this many verified tasks (None: not by count).
    pub every_verified_tasks: Option<u64>,
    /// Close this long after the epoch opened (None: not by time). Seed:
    /// 360 blocks × 10 s = 1 hour, never less than 30 s.
    pub every: Option<Millis>,
}

/// Which contributor identities ([`crate::identity`]) may join.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityPolicy {
    /// None: only workers with an operator's token (and guests, if allowed).
    #[default]
    Closed,
    /// Any key; a new one starts untrusted (credibility and ringers check
    /// it more until it has a record).
    Open,
    /// Only these worker ids (`id-…`, as `shoal worker` prints its own).
    Allowlist(Vec<String>),
    /// Any key the operator approved (`shoal contributor approve`); a new
    /// one waits, listed as pending, and is refused until then.
    Approval,
}

/// The default `payout_pattern`: 1–128 printable ASCII characters, no spaces.
pub const DEFAULT_PAYOUT_PATTERN: &str = "[!-~]{1,128}";

/// The compiled form of a payout pattern: it must match a whole address.
pub fn compile_payout_pattern(pattern: &str) -> Result<regex_lite::Regex, String> {
    regex_lite::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("payout pattern {pattern:?}: {e}"))
}

/// Credibility, ringers and adaptive replication (Sarmenta; BOINC).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredibilityConfig {
    /// Assumed fraction of faulty workers f, ppm: credibility after k
    /// verified agreements is `1 − f/(k+1)`.
    pub assumed_fault_ppm: u32,
    /// Credibility from which a worker may get tasks without replicas.
    pub trust_threshold_ppm: u32,
    /// Let trusted workers run tasks alone (adaptive replication).
    pub adaptive_replication: bool,
    /// Percent of a trusted worker's solo tasks that are replicated anyway.
    pub spot_check_pct: u32,
    /// Percent of dispatches that are ringers (tasks with a known answer).
    pub ringer_pct: u32,
    /// Slash workers outvoted by a quorum (off: plain voting, nobody is punished).
    pub slash_outvoted: bool,
}

impl Default for CredibilityConfig {
    fn default() -> Self {
        CredibilityConfig {
            assumed_fault_ppm: 200_000,
            trust_threshold_ppm: 990_000,
            adaptive_replication: false,
            spot_check_pct: 10,
            ringer_pct: 0,
            slash_outvoted: true,
        }
    }
}

/// The coordinator's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorConfig {
    /// Registry capacity for workers with a token (seed: 100). Guests have
    /// caps of their own, so they never crowd these out.
    pub max_workers: usize,
    /// Guests (tokenless workers: browser tabs) connected at once.
    pub max_guests: usize,
    /// Guests connected at once from one network origin.
    pub max_guests_per_origin: usize,
    /// Interval workers are told to heartbeat at (seed: 10 s).
    pub heartbeat_interval: Millis,
    /// A worker silent this long is evicted and its work re-queued (seed: 60 s).
    pub stale_after: Millis,
    /// An offer not acknowledged this long is given to someone else.
    pub ack_timeout: Millis,
    /// Shortest execution deadline.
    pub exec_timeout_floor: Millis,
    /// Execution deadline = expected time from cost and measured speed × this / 100.
    pub exec_slack_pct: u64,
    /// The longest an acknowledged assignment may run, whatever its cost
    /// and the worker's speed: a kernel's declared cost never buys a
    /// silent worker more time than this.
    pub exec_timeout_ceiling: Millis,
    /// Deliveries of one task before it goes to the dead-letter queue.
    pub max_delivery_attempts: u32,
    /// Distinct workers with a verified result to their name that a task
    /// may hang, crash or lose before it is quarantined (failures of
    /// workers without one never count against a task).
    pub poison_threshold: u32,
    /// A worker whose offers end this many times in a row without a result
    /// (declined, failed, timed out) is evicted; from its first miss it is
    /// given one task at a time until it returns a result.
    pub max_misses_in_row: u32,
    /// Replicas per task unless the job says otherwise (Shardy: 2).
    pub default_redundancy: u8,
    /// Most replicas a task may reach by escalation.
    pub max_replicas: u8,
    /// Assignments in flight per worker at most (seed: 16-deep queue).
    pub worker_queue: u16,
    /// Tasks waiting for dispatch at most; submissions beyond are refused.
    pub max_queued_tasks: usize,
    /// Most bytes of inputs one job may carry, all its tasks together.
    pub max_job_input_bytes: u64,
    /// Most bytes of inputs held for queued tasks, every job together
    /// (they are in memory until their task ends).
    pub max_queued_input_bytes: u64,
    /// The most bytes of a worker's input cache the coordinator counts on
    /// (its model of each worker's cache is the smaller of this and what
    /// the worker's hello declares).
    pub max_worker_cache_bytes: u64,
    /// A task not decided this long after its job was submitted goes to the
    /// dead-letter queue (e.g. the swarm never had enough distinct workers).
    pub task_ttl: Millis,
    /// Replicas of one task must come from distinct network origins.
    pub distinct_origins: bool,
    /// Workers without a token may join.
    pub allow_guests: bool,
    /// Contributor identities (their own key pair) may join.
    pub identities: IdentityPolicy,
    /// A regular expression a declared payout address must match whole
    /// (e.g. `0x[0-9a-fA-F]{40}`); a hello declaring another is refused.
    pub payout_pattern: String,
    /// Compare float replicas only within one worker class.
    pub homogeneous_floats: bool,
    /// Admission and tiers.
    pub profile: ProfilePolicy,
    /// Credibility, ringers, adaptive replication.
    pub credibility: CredibilityConfig,
    /// Epoch rewards.
    pub rewards: RewardConfig,
    /// When epochs close.
    pub epoch: EpochTrigger,
    /// Largest frame payload workers may send.
    pub max_frame_payload: u32,
    /// Shadow mode: also run the CPU reference of every verified task and
    /// count how verification compares with the truth (never changes an
    /// outcome; costs coordinator CPU).
    ///
    /// Off by default, unlike the seed: it runs on the coordinator's one
    /// engine thread, and a single 1 GFLOP matmul task costs it about a
    /// second of CPU, so a busy swarm would be paced by it. Ground truth
    /// comes cheaper from ringers: a sample of small verified tasks is
    /// checked against the CPU reference before being replayed as spot
    /// checks. Turn it on to measure verification itself (tests, audits).
    pub shadow_cpu_reference: bool,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            max_workers: 100,
            max_guests: 1_000,
            max_guests_per_origin: 8,
            heartbeat_interval: Millis::from_secs(10),
            stale_after: Millis::from_secs(60),
            ack_timeout: Millis::from_secs(10),
            exec_timeout_floor: Millis::from_secs(5),
            exec_slack_pct: 400,
            exec_timeout_ceiling: Millis::from_mins(10),
            max_delivery_attempts: 8,
            poison_threshold: 3,
            max_misses_in_row: 16,
            default_redundancy: 2,
            max_replicas: 5,
            worker_queue: 16,
            max_queued_tasks: 1_000_000,
            max_job_input_bytes: 1 << 30,
            max_queued_input_bytes: 4 << 30,
            max_worker_cache_bytes: 4 << 30,
            task_ttl: Millis::from_mins(24 * 60),
            distinct_origins: true,
            allow_guests: false,
            identities: IdentityPolicy::Closed,
            payout_pattern: DEFAULT_PAYOUT_PATTERN.to_owned(),
            homogeneous_floats: true,
            profile: ProfilePolicy::default(),
            credibility: CredibilityConfig::default(),
            rewards: RewardConfig::default(),
            epoch: EpochTrigger { every_verified_tasks: None, every: Some(Millis::from_mins(60)) },
            max_frame_payload: crate::wire::MAX_FRAME_PAYLOAD,
            shadow_cpu_reference: false,
        }
    }
}
