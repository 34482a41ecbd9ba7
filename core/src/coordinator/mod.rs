//! The coordinator's brain: who runs what, whether a result is true, and
//! who gets paid — with no I/O. A host moves bytes and time.
//!
//! - [`engine`]: the [`Coordinator`] state machine (registry, admission,
//!   scheduler, watchdog, verification, credibility, slashing, epochs).
//! - [`profile`]: measured speed, tiers, classes, admission.
//! - [`rewards`]: exact integer epoch settlement.
//! - [`ledger`]: chained state diffs.
//! - [`recovery`]: the stored records and the restart path.
//! - [`config`]: every number, with the seeds' defaults.
//! - `slots`: the assignments in flight, found by the slot their id names.

pub mod config;
pub mod engine;
pub mod ledger;
pub mod profile;
pub mod recovery;
pub mod rewards;
mod slots;

pub use config::{
    compile_payout_pattern, CoordinatorConfig, CredibilityConfig, EpochTrigger, IdentityPolicy, DEFAULT_PAYOUT_PATTERN,
};
pub use engine::{
    Answer, Command, ConnId, ContributorSort, ContributorView, Coordinator, CoordinatorStats, DeadLetter,
    DeleteJobError, Event, Input, JobProgress, JobSpec, OpenEpochView, OriginKey, Output, PendingTask, PreparedJob,
    ShadowStats, SubmitError, TaskPhase, TaskSpec, TeamView, Ticket, VerifiedResult, WorkerSort, WorkerView,
};
pub use profile::{ProfilePolicy, Tier, WorkerClass};
pub use recovery::{RecoveryError, Snapshot};
