//! The tab's throttling rule, which is not I/O: how long to leave the GPU
//! idle for a given share (reconnection delays are the core's
//! [`shoal_core::worker::Backoff`], shared with the native worker).

/// The share of the GPU's time a tab may use, 10–100 percent.
///
/// It is a duty cycle: after a kernel that ran `d` ms the worker holds its
/// result, with the GPU idle, for `d × (100 − s) / s` ms. The admission
/// benchmark goes through the same hold, so the speed the coordinator
/// measures — and the execution deadlines it derives from it — are those
/// of the throttled tab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GpuShare(u8);

impl GpuShare {
    /// The smallest share: below it, deadlines would stretch beyond use.
    pub const MIN: u8 = 10;

    /// A share of `percent`, clamped to 10–100.
    pub fn new(percent: u8) -> Self {
        GpuShare(percent.clamp(Self::MIN, 100))
    }

    /// The percent.
    pub fn percent(self) -> u8 {
        self.0
    }

    /// Idle time after a run of `run_ms`.
    pub fn hold_ms(self, run_ms: u64) -> u64 {
        let s = u128::from(self.0);
        u64::try_from(u128::from(run_ms) * (100 - s) / s).unwrap_or(u64::MAX)
    }

    /// Whether moving from the share the coordinator measured (`profiled`)
    /// to this one slows the tab enough that the coordinator's deadlines no
    /// longer hold: more than halving it. The worker then rejoins and is
    /// benchmarked again.
    pub fn needs_new_profile(self, profiled: GpuShare) -> bool {
        u16::from(self.0) * 2 < u16::from(profiled.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_is_a_duty_cycle() {
        assert_eq!(GpuShare::new(100).hold_ms(80), 0);
        assert_eq!(GpuShare::new(50).hold_ms(80), 80);
        assert_eq!(GpuShare::new(25).hold_ms(80), 240);
        assert_eq!(GpuShare::new(0).percent(), 10, "clamped");
        assert_eq!(GpuShare::new(250).percent(), 100, "clamped");
        assert_eq!(GpuShare::new(10).hold_ms(u64::MAX), u64::MAX, "saturates, never overflows");
        assert_eq!(GpuShare::new(50).hold_ms(u64::MAX), u64::MAX, "exact in u128");
        // Busy fraction = run / (run + hold) = share, for any run length.
        for s in [10u8, 33, 50, 77, 100] {
            let share = GpuShare::new(s);
            let run = 10_000u64;
            let busy_pct = run * 100 / (run + share.hold_ms(run));
            assert!(busy_pct.abs_diff(u64::from(s)) <= 1, "{s}: {busy_pct}");
        }
    }

    #[test]
    fn a_big_cut_in_share_asks_for_a_new_profile() {
        let full = GpuShare::new(100);
        assert!(!GpuShare::new(60).needs_new_profile(full));
        assert!(!GpuShare::new(50).needs_new_profile(full));
        assert!(GpuShare::new(49).needs_new_profile(full));
        assert!(!full.needs_new_profile(GpuShare::new(10)), "speeding up keeps deadlines valid");
    }
}
