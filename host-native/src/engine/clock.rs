//! The host's clocks: the engine's monotonic wall clock that resumes from
//! storage, and the plain wall clock for what may step back.

use std::time::{SystemTime, UNIX_EPOCH};

use shoal_core::{Micros, Millis};

/// The host clock: wall-clock microseconds, never behind the last value
/// stored (so deadlines survive a restart) and never going backwards.
#[derive(Debug)]
pub struct Clock {
    last: Micros,
}

impl Clock {
    /// A clock that continues from `stored`.
    pub fn resume(stored: Millis) -> Self {
        Clock { last: Micros::from(stored) }
    }

    /// Now, in the core's unit.
    pub fn now(&mut self) -> Millis {
        self.now_us().millis()
    }

    /// Now, to the microsecond (what the admission benchmark is timed with).
    pub fn now_us(&mut self) -> Micros {
        let wall = Micros(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64));
        self.last = self.last.max(wall);
        self.last
    }
}

/// The wall clock in the core's unit (ms since the Unix epoch); it may step
/// back: state machines read a [`Clock`].
pub fn wall_now() -> Millis {
    Millis(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
}
