//! The kernels on the GPU (whatever adapter wgpu picks: lavapipe on the
//! build machine) against the core's CPU reference and a tuned CPU
//! library (`matrixmultiply`, through ndarray), in one run. Throughput is in elements:
//! floating-point operations for matmul (so Gelem/s reads as GFLOPS),
//! messages for sha256 (hashes/s). GPU times include upload and readback.

#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shoal_compute::{Gpu, GpuOptions};
use shoal_core::kernels::{KernelSpec, MatmulParams, Sha256Params};

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn matmul(c: &mut Criterion) {
    let gpu = pollster::block_on(Gpu::new(GpuOptions::default()))
        .expect("a wgpu adapter (lavapipe: cargo xtask setup --gpu)");
    eprintln!("adapter: {:?}", gpu.adapter_info());
    let mut g = c.benchmark_group("matmul_f32");
    g.sample_size(10);
    // 2048 takes over 30 s per run on lavapipe (the dispatch timeout); on real GPUs add it.
    for n in [256u32, 512, 1024] {
        let k = KernelSpec::MatmulF32(MatmulParams::square(n));
        let inputs = k.seeded_inputs(1);
        let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        g.throughput(Throughput::Elements(2 * u64::from(n).pow(3)));
        g.bench_with_input(BenchmarkId::new("gpu", n), &n, |b, _| {
            b.iter(|| gpu.run_blocking(&k, &refs).expect("runs"));
        });
        if n <= 512 {
            g.bench_with_input(BenchmarkId::new("cpu_reference", n), &n, |b, _| {
                b.iter(|| k.run_cpu(&refs).expect("runs"));
            });
        }
        let nn = n as usize;
        let a = ndarray::Array2::from_shape_vec((nn, nn), floats(&inputs[0])).expect("shape");
        let bm = ndarray::Array2::from_shape_vec((nn, nn), floats(&inputs[1])).expect("shape");
        g.bench_with_input(BenchmarkId::new("matrixmultiply", n), &n, |b, _| {
            b.iter(|| a.dot(&bm));
        });
    }
    g.finish();
}

fn sha256(c: &mut Criterion) {
    let gpu = pollster::block_on(Gpu::new(GpuOptions::default())).expect("a wgpu adapter");
    let mut g = c.benchmark_group("sha256_64B");
    g.sample_size(10);
    for count in [4_096u32, 65_536] {
        let k = KernelSpec::Sha256(Sha256Params { count, message_len: 64 });
        let inputs = k.seeded_inputs(2);
        let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        g.throughput(Throughput::Elements(u64::from(count)));
        g.bench_with_input(BenchmarkId::new("gpu", count), &count, |b, _| {
            b.iter(|| gpu.run_blocking(&k, &refs).expect("runs"));
        });
        g.bench_with_input(BenchmarkId::new("cpu_reference", count), &count, |b, _| {
            b.iter(|| k.run_cpu(&refs).expect("runs"));
        });
    }
    g.finish();
}

criterion_group!(benches, matmul, sha256);
criterion_main!(benches);
