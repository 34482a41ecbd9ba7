//! Fitting the executor to its device by measurement: which program of
//! each kernel runs fastest here, and how many tasks are worth keeping in
//! flight at once (the host's concurrency default comes from it).

use std::collections::VecDeque;

use shoal_core::kernels::{KernelId, KernelSpec, MatmulParams};

use super::{ComputeError, Gpu};

/// What [`Gpu::tune`] chose for a kernel, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Tuned {
    /// The kernel.
    pub kernel: KernelId,
    /// The square size it was timed at.
    pub size: u32,
    /// The program now used.
    pub chosen: &'static str,
    /// Seconds per dispatch of each program.
    pub times: Vec<(&'static str, f64)>,
}

/// What [`Gpu::tune`] measured and chose.
#[derive(Clone, Debug, PartialEq)]
pub struct Tuning {
    /// Each kernel with several programs: the one chosen.
    pub programs: Vec<Tuned>,
    /// Tasks kept in flight at once from now on.
    pub in_flight: u16,
    /// Seconds per task at each depth tried (1, 2, 3 in flight).
    pub depths: Vec<(u16, f64)>,
}

/// Deepest pipeline tried.
const MAX_IN_FLIGHT: u16 = 3;
/// A deeper pipeline is chosen only when it is this much faster per task.
const DEPTH_GAIN: f64 = 0.05;

impl Gpu {
    /// Measures every program of each built-in kernel that has several on
    /// this device and keeps the fastest for it (a tiled matmul wins on
    /// GPUs, a streamed one where invocations are CPU SIMD lanes). Sizes
    /// grow from 256³ until the slowest program takes 2 ms, so a software
    /// adapter tunes in a fraction of a second and a large GPU is timed on
    /// a problem big enough to fill it. Then times tasks of that size end
    /// to end with 1, 2 and 3 in flight and keeps the shallowest depth
    /// within 5 % of the best ([`Gpu::suggested_in_flight`]). `now` is a
    /// monotonic clock in seconds.
    pub async fn tune(&self, now: &dyn Fn() -> f64) -> Result<Tuning, ComputeError> {
        // The f32 multiply's size also times the pipeline below.
        let (f32_choice, size) = self.fastest_program(KernelSpec::MatmulF32, now).await?;
        let mut programs: Vec<Tuned> = f32_choice.into_iter().collect();
        if self.has_f16() {
            programs.extend(self.fastest_program(KernelSpec::MatmulF16, now).await?.0);
        }
        let kernel = KernelSpec::MatmulF32(MatmulParams::square(size));
        let inputs = kernel.seeded_inputs(4);
        let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        let mut depths = Vec::new();
        for depth in 1..=MAX_IN_FLIGHT {
            depths.push((depth, self.secs_in_flight(&kernel, &refs, 6, depth, now).await?));
        }
        let best = depths.iter().map(|d| d.1).fold(f64::MAX, f64::min);
        let in_flight = depths.iter().find(|d| d.1 <= best * (1.0 + DEPTH_GAIN)).map_or(1, |d| d.0);
        self.in_flight.store(in_flight, std::sync::atomic::Ordering::Relaxed);
        Ok(Tuning { programs, in_flight, depths })
    }

    /// Times every program of the square multiplies `make` builds, from
    /// 256³ up until the slowest takes 2 ms, and chooses the fastest at
    /// the last size. Returns the choice and that size.
    async fn fastest_program(
        &self,
        make: fn(MatmulParams) -> KernelSpec,
        now: &dyn Fn() -> f64,
    ) -> Result<(Option<Tuned>, u32), ComputeError> {
        let mut last = (None, 256);
        for n in [256u32, 1024, 2048] {
            let kernel = make(MatmulParams::square(n));
            let inputs = kernel.seeded_inputs(3);
            let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
            let mut times = Vec::new();
            for program in kernel.programs() {
                times.push((program.name, self.dispatch_secs(&kernel, &program, &refs, 3, now).await?));
            }
            let Some(&(chosen, _)) = times.iter().min_by(|a, b| a.1.total_cmp(&b.1)) else { break };
            let slowest = times.iter().map(|t| t.1).fold(0.0, f64::max);
            self.choose(kernel.id(), chosen);
            last = (Some(Tuned { kernel: kernel.id(), size: n, chosen, times }), n);
            if slowest >= 0.002 {
                break;
            }
        }
        Ok(last)
    }

    /// Tasks worth keeping in flight at once on this device, as measured by
    /// [`Gpu::tune`] (1 before): hosts accept one assignment more than this
    /// by default, so the next task's inputs arrive while these run.
    pub fn suggested_in_flight(&self) -> u16 {
        self.in_flight.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Seconds per task of `n` runs of `kernel` end to end with up to
    /// `depth` submitted and not yet read back.
    pub async fn secs_in_flight(
        &self,
        kernel: &KernelSpec,
        inputs: &[&[u8]],
        n: u32,
        depth: u16,
        now: &dyn Fn() -> f64,
    ) -> Result<f64, ComputeError> {
        let start = now();
        let mut queue: VecDeque<super::InFlight<'_>> = VecDeque::new();
        for _ in 0..n {
            if queue.len() >= usize::from(depth.max(1)) {
                if let Some(done) = queue.pop_front() {
                    done.outputs().await?;
                }
            }
            queue.push_back(self.submit(kernel, inputs).await?);
        }
        while let Some(done) = queue.pop_front() {
            done.outputs().await?;
        }
        Ok((now() - start) / f64::from(n.max(1)))
    }
}
