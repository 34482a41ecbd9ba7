//! The profile benchmark a joining worker runs: the coordinator's
//! matmul of a known size on inputs derived from a seed it chose, so it
//! can time the run itself *and* check the answer — a worker cannot claim
//! speed without producing the right output. The coordinator builds and
//! checks it (`shoal_core::coordinator::profile`); this module is the
//! worker's side: run it on the GPU and report how much memory the device
//! holds.

use shoal_core::kernels::{KernelSpec, MatmulParams};

use crate::{ComputeError, Gpu};

/// The benchmark task for an edge of `n` and a seed.
pub fn benchmark(n: u32, seed: u64) -> (KernelSpec, Vec<Vec<u8>>) {
    let kernel = KernelSpec::MatmulF32(MatmulParams::square(n.max(1)));
    let inputs = kernel.seeded_inputs(seed);
    (kernel, inputs)
}

/// Runs the benchmark on the GPU and checks it against the CPU reference
/// with the kernel's comparator: whether they agree.
pub async fn run_and_check(gpu: &Gpu, n: u32, seed: u64) -> Result<bool, ComputeError> {
    let (kernel, inputs) = benchmark(n, seed);
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    check(gpu, &kernel, &refs).await
}

/// Runs any built-in kernel on the GPU and checks it against its CPU
/// reference with the kernel's comparator: whether they agree (a device's
/// self-test before it offers its work, e.g. a browser tab warming up).
pub async fn check(gpu: &Gpu, kernel: &KernelSpec, inputs: &[&[u8]]) -> Result<bool, ComputeError> {
    let got = gpu.run(kernel, inputs).await?;
    let want = kernel.run_cpu(inputs).map_err(|e| ComputeError::InvalidTask(e.to_string()))?;
    let g: Vec<&[u8]> = got.iter().map(Vec::as_slice).collect();
    let w: Vec<&[u8]> = want.iter().map(Vec::as_slice).collect();
    Ok(kernel.comparator().agree(&g, &w))
}
