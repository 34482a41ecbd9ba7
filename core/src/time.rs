//! Time as a value. The core never reads a clock; every function that
//! depends on time takes `now: Millis` from its host.

use core::fmt;
use core::ops::{Add, Sub};
use serde::{Deserialize, Serialize};

/// A point in time or a duration in whole milliseconds.
///
/// Hosts pass milliseconds since the Unix epoch from their own clock; tests
/// pass whatever a fake clock says. Arithmetic saturates, so a clock that
/// steps backwards yields zero-length durations instead of panics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Millis(pub u64);

impl Millis {
    /// Zero milliseconds.
    pub const ZERO: Millis = Millis(0);

    /// `n` seconds.
    pub const fn from_secs(n: u64) -> Millis {
        Millis(n.saturating_mul(1_000))
    }

    /// `n` minutes.
    pub const fn from_mins(n: u64) -> Millis {
        Millis(n.saturating_mul(60_000))
    }

    /// The raw millisecond count.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub const fn since(self, earlier: Millis) -> Millis {
        Millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add for Millis {
    type Output = Millis;
    fn add(self, rhs: Millis) -> Millis {
        Millis(self.0.saturating_add(rhs.0))
    }
}

impl Sub for Millis {
    type Output = Millis;
    fn sub(self, rhs: Millis) -> Millis {
        self.since(rhs)
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// A point in time in whole microseconds, for the few measurements a
/// millisecond clock cannot resolve (the admission benchmark of a fast
/// GPU). Hosts pass microseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Micros(pub u64);

impl Micros {
    /// The same instant in whole milliseconds (rounded down).
    pub const fn millis(self) -> Millis {
        Millis(self.0 / 1_000)
    }

    /// The time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub const fn since(self, earlier: Micros) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl From<Millis> for Micros {
    fn from(m: Millis) -> Micros {
        Micros(m.0.saturating_mul(1_000))
    }
}
