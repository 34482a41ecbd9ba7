//! The polo score: how much reputation a worker earns for one completed
//! task, from how long it sat idle before being answered, how long it
//! waited at the head of the queue, and how long it ran.
//!
//! Exactly as the reference's *code* computes it (its doc comment gives a
//! different, wrong example):
//!
//! ```text
//! cpu_minutes = cpu_ms / 60000
//! cpu_bonus   = log2(1 + cpu_minutes)
//! idle        = min(idle_s / 60, 1) × 0.3
//! staged      = min(staged_s / 600, 1) × 0.3
//! efficiency  = max(1 − idle − staged, 0.4)
//! reward      = max(round_half_up((1 + cpu_bonus) × efficiency), 1)
//! ```
//!
//! The inputs are durations measured by the coordinator's clock
//! ([`crate::task::TaskLifecycle::durations`]), never worker-reported
//! times. `log2` comes from `libm` so the result is bit-identical on every
//! target (a browser worker and the coordinator agree).

use serde::{Deserialize, Serialize};

/// The score and every intermediate value, for display and audit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoloScore {
    /// The integer reward (≥ 1).
    pub reward: u64,
    /// Always 1.0: the base of every reward.
    pub base: f64,
    /// `cpu_ms / 60000`.
    pub cpu_minutes: f64,
    /// `log2(1 + cpu_minutes)`.
    pub cpu_bonus: f64,
    /// Idle penalty in `[0, 0.3]`.
    pub idle_factor: f64,
    /// Staged penalty in `[0, 0.3]`.
    pub staged_factor: f64,
    /// `1 − idle_factor − staged_factor`, at least 0.4.
    pub efficiency: f64,
    /// `(base + cpu_bonus) × efficiency` before rounding.
    pub raw: f64,
}

/// The minimum reward of a completed task.
pub const MIN_REWARD: u64 = 1;

/// Computes the polo score of a task from its three durations (ms).
pub fn polo_score(idle_ms: u64, staged_ms: u64, cpu_ms: u64) -> PoloScore {
    let base = 1.0;
    let cpu_minutes = cpu_ms as f64 / 60_000.0;
    let cpu_bonus = libm::log2(1.0 + cpu_minutes);
    let idle_factor = ((idle_ms as f64 / 1000.0) / 60.0 * 0.3).clamp(0.0, 0.3);
    let staged_factor = ((staged_ms as f64 / 1000.0) / 600.0 * 0.3).clamp(0.0, 0.3);
    let efficiency = (1.0 - idle_factor - staged_factor).max(0.4);
    let raw = (base + cpu_bonus) * efficiency;
    // Round half up, as the reference's `int(raw + 0.5)` truncation does
    // for positive values; `raw` is always ≥ 0.4 here.
    let rounded = libm::trunc(raw + 0.5);
    let reward = if rounded.is_finite() && rounded >= 1.0 {
        if rounded >= u64::MAX as f64 {
            u64::MAX
        } else {
            rounded as u64
        }
    } else {
        MIN_REWARD
    };
    PoloScore { reward, base, cpu_minutes, cpu_bonus, idle_factor, staged_factor, efficiency, raw }
}
