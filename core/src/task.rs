//! The lifecycle of one task assignment: its status, the legal transitions,
//! its time stamps, the durations derived from them, the three timeouts,
//! the size bounds of its fields and the result-file policy.
//!
//! Every stamp comes from the coordinator's clock (the `now` passed in):
//! unlike the reference, durations reported by a worker are never used.
//!
//! ```text
//!            accept            start             finish           verify
//!   NEW ────────────► ACCEPTED ──────► EXECUTING ──────► COMPLETED ──────► SUCCEEDED
//!    │ decline          │  │ finish (no start)  │              │
//!    ▼                  │  └───────────────────►│ COMPLETED    │ reject
//!  DECLINED             │ expire / cancel       │ expire/cancel▼
//!    NEW ─► CANCELLED   ▼                       ▼           CANCELLED
//!   (accept timeout)  EXPIRED / CANCELLED    EXPIRED / CANCELLED
//! ```

use core::fmt;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

use crate::time::Millis;

/// Size bounds of task fields (bytes).
pub mod limits {
    /// Task description.
    pub const MAX_DESCRIPTION: usize = 16 * 1024;
    /// Text result.
    pub const MAX_RESULT_TEXT: usize = 1024 * 1024;
    /// File result.
    pub const MAX_RESULT_FILE: usize = 15 * 1024 * 1024;
    /// Result file name.
    pub const MAX_FILENAME: usize = 256;
    /// Status justification.
    pub const MAX_JUSTIFICATION: usize = 4 * 1024;
}

/// A task still NEW this long after creation is cancelled.
pub const ACCEPT_TIMEOUT: Millis = Millis::from_mins(1);
/// An accepted task at the head of its queue this long expires.
pub const QUEUE_HEAD_TIMEOUT: Millis = Millis::from_mins(60);
/// An accepted task not staged nor started this long after acceptance expires.
pub const ACCEPTED_STALL_TIMEOUT: Millis = Millis::from_mins(1);

/// The three timeouts of a task's lifecycle: the seed's by default; a
/// host may shorten them (a test cannot wait an hour).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// NEW this long → CANCELLED.
    pub accept: Millis,
    /// Staged this long without starting → EXPIRED.
    pub queue_head: Millis,
    /// Accepted, neither staged nor started, this long → EXPIRED.
    pub accepted_stall: Millis,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { accept: ACCEPT_TIMEOUT, queue_head: QUEUE_HEAD_TIMEOUT, accepted_stall: ACCEPTED_STALL_TIMEOUT }
    }
}

/// The status of a task assignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// Offered, not yet answered.
    New,
    /// Taken by the worker.
    Accepted,
    /// Refused by the worker (terminal).
    Declined,
    /// Running on the worker.
    Executing,
    /// Results received, not yet verified.
    Completed,
    /// Results verified and credited (terminal).
    Succeeded,
    /// Withdrawn: no answer in time, no longer needed, or results rejected (terminal).
    Cancelled,
    /// Timed out after acceptance (terminal).
    Expired,
}

impl TaskStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [TaskStatus; 8] = [
        TaskStatus::New,
        TaskStatus::Accepted,
        TaskStatus::Declined,
        TaskStatus::Executing,
        TaskStatus::Completed,
        TaskStatus::Succeeded,
        TaskStatus::Cancelled,
        TaskStatus::Expired,
    ];

    /// The wire name (`NEW`, `ACCEPTED`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::New => "NEW",
            TaskStatus::Accepted => "ACCEPTED",
            TaskStatus::Declined => "DECLINED",
            TaskStatus::Executing => "EXECUTING",
            TaskStatus::Completed => "COMPLETED",
            TaskStatus::Succeeded => "SUCCEEDED",
            TaskStatus::Cancelled => "CANCELLED",
            TaskStatus::Expired => "EXPIRED",
        }
    }

    /// True when no transition leaves this status.
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskStatus::Declined | TaskStatus::Succeeded | TaskStatus::Cancelled | TaskStatus::Expired)
    }

    /// The transition table: whether `self → next` is legal.
    pub fn can_become(self, next: TaskStatus) -> bool {
        use TaskStatus as S;
        matches!(
            (self, next),
            (S::New, S::Accepted | S::Declined | S::Cancelled)
                | (S::Accepted, S::Executing | S::Completed | S::Cancelled | S::Expired)
                | (S::Executing, S::Completed | S::Cancelled | S::Expired)
                | (S::Completed, S::Succeeded | S::Cancelled)
        )
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An illegal lifecycle step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The table has no such transition.
    #[error("task is already {from}; it cannot become {to}")]
    Illegal {
        /// Current status.
        from: TaskStatus,
        /// Requested status.
        to: TaskStatus,
    },
    /// A NEW task older than [`ACCEPT_TIMEOUT`] cannot be accepted.
    #[error("task expired: not accepted within {ACCEPT_TIMEOUT}")]
    AcceptWindowClosed,
    /// Only an ACCEPTED task can reach the head of a queue.
    #[error("only an ACCEPTED task can be staged; this one is {0}")]
    NotStageable(TaskStatus),
    /// A justification is longer than [`limits::MAX_JUSTIFICATION`].
    #[error("justification is {0} bytes, the limit is {max}", max = limits::MAX_JUSTIFICATION)]
    JustificationTooLong(usize),
}

/// Which timeout fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timeout {
    /// NEW for longer than [`ACCEPT_TIMEOUT`] → CANCELLED.
    Accept,
    /// At the head of the queue for longer than [`QUEUE_HEAD_TIMEOUT`] → EXPIRED.
    QueueHead,
    /// ACCEPTED, neither staged nor started, for longer than [`ACCEPTED_STALL_TIMEOUT`] → EXPIRED.
    AcceptedStall,
}

impl Timeout {
    /// The justification recorded when this timeout fires.
    pub fn justification(self) -> &'static str {
        match self {
            Timeout::Accept => "Task cancelled: no response within 1 minute",
            Timeout::QueueHead => "Task expired: at head of queue for over 1 hour",
            Timeout::AcceptedStall => "Task expired: accepted but not started within 1 minute",
        }
    }

    /// The status the task takes when this timeout fires.
    pub fn outcome(self) -> TaskStatus {
        match self {
            Timeout::Accept => TaskStatus::Cancelled,
            Timeout::QueueHead | Timeout::AcceptedStall => TaskStatus::Expired,
        }
    }
}

/// The durations of a task, all measured by the coordinator's clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durations {
    /// Created → answered (accepted, declined or cancelled).
    pub idle_ms: u64,
    /// Head of queue → execution started (or expired).
    pub staged_ms: u64,
    /// Execution started → completed.
    pub cpu_ms: u64,
}

/// A moment that may not have come yet, in 8 bytes (`Option<Millis>`
/// takes 16): a coordinator holds one lifecycle per assignment in flight
/// and reads them on every acknowledgement and result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Option<Millis>", into = "Option<Millis>")]
struct Stamp(u64);

impl Stamp {
    const NOT_YET: Stamp = Stamp(u64::MAX);

    fn get(self) -> Option<Millis> {
        (self != Self::NOT_YET).then_some(Millis(self.0))
    }

    fn set(&mut self, t: Millis) {
        // The last millisecond of the u64 range reads as "not yet"; a clock
        // never gets there.
        self.0 = t.0.min(u64::MAX - 1);
    }

    fn get_or_set(&mut self, t: Millis) {
        if *self == Self::NOT_YET {
            self.set(t);
        }
    }
}

impl From<Option<Millis>> for Stamp {
    fn from(t: Option<Millis>) -> Self {
        let mut s = Stamp::NOT_YET;
        if let Some(t) = t {
            s.set(t);
        }
        s
    }
}

impl From<Stamp> for Option<Millis> {
    fn from(s: Stamp) -> Self {
        s.get()
    }
}

/// One task assignment's lifecycle record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLifecycle {
    status: TaskStatus,
    justification: Cow<'static, str>,
    created_at: Millis,
    answered_at: Stamp,
    accepted_at: Stamp,
    staged_at: Stamp,
    execute_started_at: Stamp,
    completed_at: Stamp,
    ended_at: Stamp,
}

impl TaskLifecycle {
    /// A NEW task created at `now`.
    pub fn new(now: Millis) -> Self {
        TaskLifecycle {
            status: TaskStatus::New,
            justification: Cow::Borrowed("A new task was created"),
            created_at: now,
            answered_at: Stamp::NOT_YET,
            accepted_at: Stamp::NOT_YET,
            staged_at: Stamp::NOT_YET,
            execute_started_at: Stamp::NOT_YET,
            completed_at: Stamp::NOT_YET,
            ended_at: Stamp::NOT_YET,
        }
    }

    /// Current status.
    pub fn status(&self) -> TaskStatus {
        self.status
    }

    /// Why the task has its current status.
    pub fn justification(&self) -> &str {
        &self.justification
    }

    /// When the task was created.
    pub fn created_at(&self) -> Millis {
        self.created_at
    }

    /// When the worker accepted it.
    pub fn accepted_at(&self) -> Option<Millis> {
        self.accepted_at.get()
    }

    /// When it reached the head of the worker's queue.
    pub fn staged_at(&self) -> Option<Millis> {
        self.staged_at.get()
    }

    /// When execution started.
    pub fn execute_started_at(&self) -> Option<Millis> {
        self.execute_started_at.get()
    }

    /// When results arrived.
    pub fn completed_at(&self) -> Option<Millis> {
        self.completed_at.get()
    }

    fn go(&mut self, to: TaskStatus, justification: Cow<'static, str>) -> Result<(), TransitionError> {
        if !self.status.can_become(to) {
            return Err(TransitionError::Illegal { from: self.status, to });
        }
        if justification.len() > limits::MAX_JUSTIFICATION {
            return Err(TransitionError::JustificationTooLong(justification.len()));
        }
        self.status = to;
        self.justification = justification;
        Ok(())
    }

    /// NEW → ACCEPTED, if within [`ACCEPT_TIMEOUT`] of creation.
    pub fn accept(&mut self, now: Millis) -> Result<(), TransitionError> {
        if self.status == TaskStatus::New && now.since(self.created_at) > ACCEPT_TIMEOUT {
            return Err(TransitionError::AcceptWindowClosed);
        }
        self.go(TaskStatus::Accepted, Cow::Borrowed("Task accepted"))?;
        self.answered_at.set(now);
        self.accepted_at.set(now);
        Ok(())
    }

    /// NEW → DECLINED with the worker's reason.
    pub fn decline(&mut self, now: Millis, justification: &str) -> Result<(), TransitionError> {
        self.go(TaskStatus::Declined, Cow::Owned(justification.to_owned()))?;
        self.answered_at.set(now);
        self.ended_at.set(now);
        Ok(())
    }

    /// Marks the moment the task reached the head of the worker's queue.
    /// Only the first stamp counts; only an ACCEPTED task can be staged.
    pub fn stage(&mut self, now: Millis) -> Result<(), TransitionError> {
        if self.status != TaskStatus::Accepted {
            return Err(TransitionError::NotStageable(self.status));
        }
        self.staged_at.get_or_set(now);
        Ok(())
    }

    /// ACCEPTED → EXECUTING. A task never staged is staged now.
    pub fn start(&mut self, now: Millis) -> Result<(), TransitionError> {
        self.go(TaskStatus::Executing, Cow::Borrowed("Task execution started"))?;
        self.staged_at.get_or_set(now);
        self.execute_started_at.set(now);
        Ok(())
    }

    /// ACCEPTED or EXECUTING → COMPLETED: results arrived.
    pub fn complete(&mut self, now: Millis) -> Result<(), TransitionError> {
        self.go(TaskStatus::Completed, Cow::Borrowed("Task completed with results"))?;
        self.completed_at.set(now);
        Ok(())
    }

    /// COMPLETED → SUCCEEDED: results verified.
    pub fn succeed(&mut self, now: Millis) -> Result<(), TransitionError> {
        self.go(TaskStatus::Succeeded, Cow::Borrowed("Results verified"))?;
        self.ended_at.set(now);
        Ok(())
    }

    /// Any non-terminal status → CANCELLED with a reason.
    pub fn cancel(&mut self, now: Millis, justification: &str) -> Result<(), TransitionError> {
        self.go(TaskStatus::Cancelled, Cow::Owned(justification.to_owned()))?;
        self.answered_at.get_or_set(now);
        self.ended_at.set(now);
        Ok(())
    }

    /// The timeout that has fired at `now`, if any.
    pub fn due_timeout(&self, now: Millis) -> Option<Timeout> {
        self.due_timeout_of(now, &Timeouts::default())
    }

    /// [`TaskLifecycle::due_timeout`] under timeouts of the host's.
    pub fn due_timeout_of(&self, now: Millis, t: &Timeouts) -> Option<Timeout> {
        match self.status {
            TaskStatus::New if now.since(self.created_at) > t.accept => Some(Timeout::Accept),
            TaskStatus::Accepted => match (self.staged_at.get(), self.accepted_at.get()) {
                (Some(staged), _) if now.since(staged) > t.queue_head => Some(Timeout::QueueHead),
                (None, Some(accepted)) if now.since(accepted) > t.accepted_stall => Some(Timeout::AcceptedStall),
                _ => None,
            },
            _ => None,
        }
    }

    /// The instant at which the next timeout fires if nothing happens, so
    /// a host can schedule exactly one wake-up.
    pub fn next_deadline(&self) -> Option<Millis> {
        let after = |t: Millis, d: Millis| Millis(t.0.saturating_add(d.0).saturating_add(1));
        match self.status {
            TaskStatus::New => Some(after(self.created_at, ACCEPT_TIMEOUT)),
            TaskStatus::Accepted => match (self.staged_at.get(), self.accepted_at.get()) {
                (Some(staged), _) => Some(after(staged, QUEUE_HEAD_TIMEOUT)),
                (None, Some(accepted)) => Some(after(accepted, ACCEPTED_STALL_TIMEOUT)),
                (None, None) => None,
            },
            _ => None,
        }
    }

    /// Applies the timeout due at `now`, if any; returns which fired.
    pub fn expire_if_due(&mut self, now: Millis) -> Option<Timeout> {
        self.expire_if_due_of(now, &Timeouts::default())
    }

    /// [`TaskLifecycle::expire_if_due`] under timeouts of the host's.
    pub fn expire_if_due_of(&mut self, now: Millis, timeouts: &Timeouts) -> Option<Timeout> {
        let t = self.due_timeout_of(now, timeouts)?;
        // The transition is legal by construction of `due_timeout`.
        self.go(t.outcome(), Cow::Borrowed(t.justification())).ok()?;
        self.answered_at.get_or_set(now);
        self.ended_at.set(now);
        Some(t)
    }

    /// The durations so far, from the coordinator's stamps:
    /// idle = created → answered, staged = staged → started (or ended),
    /// cpu = started → completed.
    pub fn durations(&self) -> Durations {
        let idle_ms = self.answered_at.get().map_or(0, |a| a.since(self.created_at).0);
        let staged_ms = match (self.staged_at.get(), self.execute_started_at.get().or(self.ended_at.get())) {
            (Some(s), Some(e)) => e.since(s).0,
            _ => 0,
        };
        let cpu_ms = match (self.execute_started_at.get(), self.completed_at.get()) {
            (Some(s), Some(c)) => c.since(s).0,
            _ => 0,
        };
        Durations { idle_ms, staged_ms, cpu_ms }
    }
}

/// Result-file extensions accepted (compared lower-cased).
pub const ALLOWED_RESULT_EXTENSIONS: &[&str] = &[
    "md",
    "txt",
    "rtf",
    "docx",
    "pdf",
    "pptx",
    "pth",
    "pt",
    "onnx",
    "h5",
    "pb",
    "ckpt",
    "safetensors",
    "bin",
    "csv",
    "parquet",
    "xlsx",
    "xls",
    "jpg",
    "jpeg",
    "png",
    "svg",
    "gif",
    "webp",
];

/// Source-code extensions refused (compared lower-cased).
pub const FORBIDDEN_RESULT_EXTENSIONS: &[&str] = &[
    "go", "py", "js", "ts", "java", "c", "cpp", "h", "hpp", "rs", "rb", "php", "swift", "kt", "scala", "sh", "bash",
    "zsh", "ps1", "bat", "cmd", "sql", "r", "lua", "pl", "pm", "ex", "exs", "clj", "hs", "ml", "fs", "cs", "vb",
    "dart",
];

/// Why a result file name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResultFileError {
    /// Empty name.
    #[error("result file name is empty")]
    Empty,
    /// Longer than [`limits::MAX_FILENAME`].
    #[error("result file name is {0} bytes, the limit is {max}", max = limits::MAX_FILENAME)]
    TooLong(usize),
    /// Contains a path separator, `..`, a NUL or a control character.
    #[error("result file name {0:?} is not a plain file name")]
    NotPlain(String),
    /// Source code is never accepted as a result.
    #[error("source-code files (.{0}) are not accepted as results")]
    SourceCode(String),
    /// The extension is not on the allow-list.
    #[error("file extension .{0} is not allowed for results")]
    ExtensionNotAllowed(String),
    /// No extension.
    #[error("result file name {0:?} has no extension")]
    NoExtension(String),
}

/// Checks a result file name: a plain name (no path, no traversal, no
/// control characters), at most 256 bytes, with an allowed extension.
pub fn check_result_filename(name: &str) -> Result<(), ResultFileError> {
    if name.is_empty() {
        return Err(ResultFileError::Empty);
    }
    if name.len() > limits::MAX_FILENAME {
        return Err(ResultFileError::TooLong(name.len()));
    }
    if name.contains(['/', '\\'])
        || name == "."
        || name == ".."
        || name.starts_with("..")
        || name.chars().any(char::is_control)
    {
        return Err(ResultFileError::NotPlain(name.to_owned()));
    }
    let Some((_, ext)) = name.rsplit_once('.') else {
        return Err(ResultFileError::NoExtension(name.to_owned()));
    };
    let ext = ext.to_ascii_lowercase();
    if ALLOWED_RESULT_EXTENSIONS.contains(&ext.as_str()) {
        return Ok(());
    }
    if FORBIDDEN_RESULT_EXTENSIONS.contains(&ext.as_str()) {
        return Err(ResultFileError::SourceCode(ext));
    }
    Err(ResultFileError::ExtensionNotAllowed(ext))
}
