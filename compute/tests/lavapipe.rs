//! Every kernel on a real Vulkan driver — Mesa's lavapipe on the CPU here
//! and in CI (`cargo xtask test` installs `mesa-vulkan-drivers`) — against
//! its CPU reference: property tests on random sizes and inputs, edge
//! cases, custom WGSL valid and invalid, the admission benchmark and the
//! allocation probe.

#![cfg(not(target_arch = "wasm32"))]

use std::sync::OnceLock;

use proptest::prelude::*;
use shoal_compute::{profile, ComputeError, Gpu, GpuOptions, ShaderError};
use shoal_core::kernels::KernelId;
use shoal_core::kernels::{
    Comparator, CustomBinding, CustomKernel, CustomRole, KernelSpec, MandelbrotParams, MatmulParams, Sha256Params,
};

fn vulkan(matmul: &'static str) -> Gpu {
    let vulkan = GpuOptions { backends: Some(wgpu::Backends::VULKAN), ..GpuOptions::default() };
    let gpu = pollster::block_on(Gpu::new(vulkan)).unwrap_or_else(|e| {
        panic!("no Vulkan adapter ({e}); install Mesa's lavapipe: `cargo xtask setup --gpu` (apt mesa-vulkan-drivers)")
    });
    assert_eq!(gpu.adapter_info().backend, wgpu::Backend::Vulkan, "these tests claim a Vulkan driver");
    gpu.choose(KernelId::MatmulF32, matmul);
    gpu.choose(KernelId::MatmulF16, matmul);
    gpu
}

/// The device with the portable programs (matmul: tiled).
fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| vulkan("tiled"))
}

/// The same driver running matmul's streamed program where it applies.
fn streamed() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| vulkan("streamed"))
}

fn check(kernel: &KernelSpec, inputs: &[Vec<u8>]) {
    check_on(gpu(), kernel, inputs);
}

fn check_on(gpu: &Gpu, kernel: &KernelSpec, inputs: &[Vec<u8>]) {
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let got = gpu.run_blocking(kernel, &refs).unwrap_or_else(|e| panic!("{kernel:?}: {e}"));
    let want = kernel.run_cpu(&refs).expect("reference runs");
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.len(), w.len(), "{kernel:?}: output length");
    }
    let g: Vec<&[u8]> = got.iter().map(Vec::as_slice).collect();
    let w: Vec<&[u8]> = want.iter().map(Vec::as_slice).collect();
    assert!(kernel.comparator().agree(&g, &w), "{kernel:?}: GPU and CPU disagree");
    if kernel.comparator() == Comparator::Exact {
        assert_eq!(got, want, "{kernel:?}: exact kernels are bit-exact");
    }
}

#[test]
fn the_adapter_describes_itself() {
    let info = gpu().device_info();
    assert!(info.max_buffer_bytes > 0 && info.max_workgroup_invocations >= 64, "{info:?}");
    assert!(!info.name.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn sha256_is_bit_exact(count in 1u32..300, len in 0u32..200, seed in any::<u64>()) {
        let k = KernelSpec::Sha256(Sha256Params { count, message_len: len });
        check(&k, &k.seeded_inputs(seed));
    }

    #[test]
    fn matmul_is_within_tolerance(m in 1u32..70, n in 1u32..70, kk in 1u32..70, seed in any::<u64>()) {
        let k = KernelSpec::MatmulF32(MatmulParams { m, n, k: kk });
        check(&k, &k.seeded_inputs(seed));
        // Where n or k is not a multiple of 4 the streamed device falls back to the tiled program.
        check_on(streamed(), &k, &k.seeded_inputs(seed));
    }

    #[test]
    fn matmul_f16_is_within_tolerance_where_the_device_has_f16(m in 1u32..70, n in 1u32..70, kk in 1u32..70, seed in any::<u64>()) {
        let k = KernelSpec::MatmulF16(MatmulParams { m, n, k: kk });
        prop_assume!(gpu().has_f16());
        check(&k, &k.seeded_inputs(seed));
        // Both programs where n and k are multiples of 4.
        let k = KernelSpec::MatmulF16(MatmulParams { m, n: 4 * n, k: 4 * kk });
        prop_assert_eq!(streamed().program(&k).name, "streamed");
        check_on(streamed(), &k, &k.seeded_inputs(seed));
        check(&k, &k.seeded_inputs(seed));
    }

    #[test]
    fn streamed_matmul_is_within_tolerance(m in 1u32..70, n4 in 1u32..80, k4 in 1u32..20, seed in any::<u64>()) {
        let k = KernelSpec::MatmulF32(MatmulParams { m, n: 4 * n4, k: 4 * k4 });
        prop_assert_eq!(streamed().program(&k).name, "streamed");
        check_on(streamed(), &k, &k.seeded_inputs(seed));
    }

    #[test]
    fn mandelbrot_is_bit_exact(w in 1u32..80, h in 1u32..80, x in -2.0f64..0.5, y in -1.2f64..1.0, iters in 1u32..300) {
        let k = KernelSpec::Mandelbrot(MandelbrotParams::from_plane(w, h, x, y, 2.5 / 80.0, iters));
        check(&k, &[]);
    }
}

#[test]
fn edge_sizes_run() {
    // Empty messages, one element, sizes that are not multiples of the workgroup.
    check(&KernelSpec::Sha256(Sha256Params { count: 1, message_len: 0 }), &[vec![]]);
    check(
        &KernelSpec::Sha256(Sha256Params { count: 65, message_len: 55 }),
        &KernelSpec::Sha256(Sha256Params { count: 65, message_len: 55 }).seeded_inputs(3),
    );
    check(
        &KernelSpec::Sha256(Sha256Params { count: 2, message_len: 64 }),
        &KernelSpec::Sha256(Sha256Params { count: 2, message_len: 64 }).seeded_inputs(4),
    );
    let one = KernelSpec::MatmulF32(MatmulParams { m: 1, n: 1, k: 1 });
    check(&one, &one.seeded_inputs(5));
    let big = KernelSpec::MatmulF32(MatmulParams { m: 129, n: 67, k: 257 });
    check(&big, &big.seeded_inputs(6));
    // Streamed: more columns than one workgroup covers (256), rows not a multiple of 16, the smallest shape.
    for (m, n, k) in [(17, 260, 36), (1, 4, 4), (33, 516, 4)] {
        let s = KernelSpec::MatmulF32(MatmulParams { m, n, k });
        check_on(streamed(), &s, &s.seeded_inputs(7));
    }
    let tall = KernelSpec::Mandelbrot(MandelbrotParams::from_plane(1, 257, -0.75, -1.0, 0.008, 500));
    check(&tall, &[]);
}

#[test]
fn a_large_sha256_batch_runs() {
    // 1 MiB of messages in one dispatch.
    let k = KernelSpec::Sha256(Sha256Params { count: 16_384, message_len: 64 });
    check(&k, &k.seeded_inputs(9));
}

fn custom(wgsl: &str, len: u64) -> KernelSpec {
    KernelSpec::Custom(CustomKernel {
        wgsl: wgsl.into(),
        entry_point: "main".into(),
        bindings: vec![
            CustomBinding { binding: 0, role: CustomRole::Input, len },
            CustomBinding { binding: 1, role: CustomRole::Output, len },
        ],
        workgroups: [(len / 4).div_ceil(64) as u32, 1, 1],
        comparator: Comparator::Exact,
        ops: len / 4,
    })
}

const DOUBLE: &str = r"
@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < arrayLength(&src)) { dst[id.x] = src[id.x] * 2u + 1u; }
}
";

#[test]
fn custom_wgsl_runs_and_bad_wgsl_is_refused_with_nagas_message() {
    let n = 1000u64;
    let k = custom(DOUBLE, n * 4);
    let input: Vec<u8> = (0..n as u32).flat_map(u32::to_le_bytes).collect();
    let out = gpu().run_blocking(&k, &[&input]).expect("custom kernel runs");
    let want: Vec<u8> = (0..n as u32).flat_map(|i| (i * 2 + 1).to_le_bytes()).collect();
    assert_eq!(out, vec![want]);

    // Does not parse: naga's message, with the line.
    let broken = custom("@compute @workgroup_size(64) fn main( { }", 16);
    match gpu().run_blocking(&broken, &[&[0u8; 16]]) {
        Err(ComputeError::Shader(ShaderError::Parse(m))) => assert!(m.contains("expected"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A type error (naga's WGSL front end reports it while lowering).
    let ill_typed = custom(&DOUBLE.replace("* 2u + 1u", "* 2.5"), 16);
    match gpu().run_blocking(&ill_typed, &[&[0u8; 16]]) {
        Err(ComputeError::Shader(ShaderError::Parse(m) | ShaderError::Validate(m))) => assert!(!m.is_empty()),
        other => panic!("{other:?}"),
    }
    // No such entry point.
    let renamed = custom(&DOUBLE.replace("fn main", "fn other"), 16);
    assert!(matches!(
        gpu().run_blocking(&renamed, &[&[0u8; 16]]),
        Err(ComputeError::Shader(ShaderError::EntryPoint(_)))
    ));
    // Bindings other than declared.
    let rebound = custom(&DOUBLE.replace("@binding(1)", "@binding(7)"), 16);
    assert!(matches!(
        gpu().run_blocking(&rebound, &[&[0u8; 16]]),
        Err(ComputeError::Shader(ShaderError::Bindings { .. }))
    ));
    // Wrong input length: refused before the GPU sees it.
    assert!(matches!(gpu().run_blocking(&k, &[&[0u8; 3]]), Err(ComputeError::InvalidTask(_))));
}

#[test]
fn the_admission_benchmark_passes_and_memory_is_probed() {
    assert!(pollster::block_on(profile::run_and_check(gpu(), 64, 42)).expect("benchmark runs"));
    let bytes = pollster::block_on(gpu().max_stable_allocation(256 << 20, 1 << 20));
    assert!(bytes >= 1 << 20, "at least a MiB allocates: {bytes}");
    assert_eq!(gpu().device_info().max_buffer_bytes, bytes, "the hello declares the probed size");
}

#[test]
fn reused_buffers_never_leak_an_earlier_tasks_bytes() {
    // Fill a 16-byte output, then run a kernel of the same layout that
    // writes only its first word: the rest must read as zeros.
    let full = custom(DOUBLE, 16);
    let input: Vec<u8> = [5u32, 6, 7, 8].iter().flat_map(|w| w.to_le_bytes()).collect();
    assert_eq!(
        gpu().run_blocking(&full, &[&input]).expect("runs")[0],
        [11u32, 13, 15, 17].iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>()
    );
    let partial = custom(
        &DOUBLE.replace(
            "if (id.x < arrayLength(&src)) { dst[id.x] = src[id.x] * 2u + 1u; }",
            "if (id.x == 0u) { dst[0] = src[0] + 2u; }",
        ),
        16,
    );
    let out = gpu().run_blocking(&partial, &[&input]).expect("runs");
    assert_eq!(out[0], [7u32, 0, 0, 0].iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>());
}

#[test]
fn a_buffer_beyond_the_device_limit_is_refused_before_allocation() {
    let limit = gpu().device_info().max_storage_binding_bytes;
    let len = limit + 4;
    let k = KernelSpec::Custom(CustomKernel {
        wgsl: DOUBLE.into(),
        entry_point: "main".into(),
        bindings: vec![CustomBinding { binding: 1, role: CustomRole::Output, len }],
        workgroups: [1, 1, 1],
        comparator: Comparator::Exact,
        ops: 1,
    });
    match gpu().run_blocking(&k, &[]) {
        Err(ComputeError::TooLarge { bytes, limit: l, .. }) => assert!(bytes > l, "{bytes} > {l}"),
        // The core's own cap on kernel buffers may be below the device's.
        Err(ComputeError::InvalidTask(m)) => assert!(m.contains("large") || m.contains("bytes"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// A dispatch that outlives its timeout keeps the device busy (a GPU cannot
/// be preempted): it is reported as a timeout, new work fails fast as
/// `Busy` instead of queueing behind it, and the device takes work again
/// once it finished. Its own device, so no other test waits behind it.
#[test]
fn a_dispatch_past_its_timeout_holds_the_device_until_it_ends() {
    const SPIN: &str = r"
@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    var x = src[id.x];
    for (var i = 0u; i < 256u; i = i + 1u) { x = (x ^ (x >> 13u)) * 1664525u + src[(x + i) & 63u]; }
    dst[id.x & 63u] = x;
}
";
    let options = GpuOptions {
        backends: Some(wgpu::Backends::VULKAN),
        dispatch_timeout: std::time::Duration::from_millis(50),
        ..GpuOptions::default()
    };
    let gpu = pollster::block_on(Gpu::new(options)).expect("a Vulkan adapter");
    // 2^17 workgroups of 64 (2^31 loop iterations): seconds on lavapipe.
    let KernelSpec::Custom(mut spin) = custom(SPIN, 256) else { unreachable!() };
    spin.workgroups = [512, 256, 1];
    spin.ops = 1 << 40;
    let spin = KernelSpec::Custom(spin);
    let inputs = spin.seeded_inputs(1);
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let first = gpu.run_blocking(&spin, &refs);
    assert!(matches!(first, Err(ComputeError::Timeout(_))), "the spin outlives 50 ms: {first:?}");
    let double = custom(DOUBLE, 256);
    let small = double.seeded_inputs(2);
    let small: Vec<&[u8]> = small.iter().map(Vec::as_slice).collect();
    assert!(matches!(gpu.run_blocking(&double, &small), Err(ComputeError::Busy)), "new work fails fast");
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(5);
    loop {
        match gpu.run_blocking(&double, &small) {
            Err(ComputeError::Busy) => {
                assert!(std::time::Instant::now() < deadline, "the spin never ended");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Ok(out) => {
                let doubled: Vec<u8> = small[0]
                    .chunks_exact(4)
                    .flat_map(|w| {
                        u32::from_le_bytes([w[0], w[1], w[2], w[3]]).wrapping_mul(2).wrapping_add(1).to_le_bytes()
                    })
                    .collect();
                assert_eq!(out, vec![doubled], "the device works again");
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn tuning_keeps_the_fastest_program_it_measured() {
    let gpu = vulkan("tiled");
    let start = std::time::Instant::now();
    let tuned = pollster::block_on(gpu.tune(&|| start.elapsed().as_secs_f64())).expect("tunes");
    let matmul =
        tuned.programs.iter().find(|t| t.kernel == KernelId::MatmulF32).expect("matmul has programs to choose from");
    let names: Vec<&str> = matmul.times.iter().map(|t| t.0).collect();
    assert_eq!(names, ["tiled", "streamed"]);
    let f16 = tuned.programs.iter().any(|t| t.kernel == KernelId::MatmulF16);
    assert_eq!(f16, gpu.has_f16(), "matmul_f16's programs are timed where the device runs it");
    let fastest = matmul.times.iter().min_by(|a, b| a.1.total_cmp(&b.1)).expect("timed");
    assert_eq!(matmul.chosen, fastest.0);
    let k = KernelSpec::MatmulF32(MatmulParams::square(64));
    assert_eq!(gpu.program(&k).name, matmul.chosen, "the choice is used from then on");
    // Depths 1..=3 were timed; the suggestion is the shallowest within 5 % of the best.
    let depths: Vec<u16> = tuned.depths.iter().map(|d| d.0).collect();
    assert_eq!(depths, [1, 2, 3]);
    let best = tuned.depths.iter().map(|d| d.1).fold(f64::MAX, f64::min);
    let shallowest = tuned.depths.iter().find(|d| d.1 <= best * 1.05).expect("one is the best");
    assert_eq!((tuned.in_flight, gpu.suggested_in_flight()), (shallowest.0, shallowest.0));
    check_on(&gpu, &k, &k.seeded_inputs(11));
}

#[test]
fn tasks_in_flight_together_give_each_its_own_outputs() {
    let gpu = gpu();
    let a = KernelSpec::MatmulF32(MatmulParams { m: 33, n: 40, k: 12 });
    let b = KernelSpec::Sha256(Sha256Params { count: 100, message_len: 37 });
    let (ai, bi) = (a.seeded_inputs(21), b.seeded_inputs(22));
    let (ar, br): (Vec<&[u8]>, Vec<&[u8]>) =
        (ai.iter().map(Vec::as_slice).collect(), bi.iter().map(Vec::as_slice).collect());
    // Both submitted before either is read, read in the other order.
    let first = pollster::block_on(gpu.submit(&a, &ar)).expect("submits");
    let second = pollster::block_on(gpu.submit(&b, &br)).expect("submits");
    let b_out = pollster::block_on(second.outputs()).expect("reads");
    let a_out = pollster::block_on(first.outputs()).expect("reads");
    assert_eq!(b_out, b.run_cpu(&br).expect("reference"));
    let want = a.run_cpu(&ar).expect("reference");
    assert!(a.comparator().agree(&[&a_out[0]], &[&want[0]]));
}

#[test]
fn the_benchmark_measures_limits_and_checks_kernels_against_the_cpu() {
    let gpu = gpu();
    let start = std::time::Instant::now();
    let now = || start.elapsed().as_secs_f64();
    let peaks = pollster::block_on(shoal_compute::bench::measure_peaks(gpu, 0.02, &now)).expect("probes run");
    for (what, v) in [
        ("f32", peaks.f32_flops),
        ("int", peaks.int_ops),
        ("copy", peaks.copy_bytes),
        ("upload", peaks.upload_bytes),
        ("download", peaks.download_bytes),
    ] {
        assert!(v.is_finite() && v > 0.0, "{what}: {v}");
    }
    assert_eq!(peaks.f16_flops.is_some(), gpu.has_f16());
    let plan = shoal_compute::bench::Plan { budget: 0.02, max_run: 1.0, only: None };
    let k = KernelSpec::MatmulF32(MatmulParams::square(64));
    let f = pollster::block_on(shoal_compute::bench::measure_kernel(gpu, "64³".into(), &k, plan, true, &now))
        .expect("measures");
    assert_eq!((f.ops, f.program), (2 * 64 * 64 * 64, "tiled"));
    assert!(f.kernel_secs > 0.0 && f.end_to_end_secs > 0.0 && f.overlapped_secs > 0.0 && f.cpu_secs.is_some());
    // Mandelbrot counts the iterations it ran, not its bound.
    let m = KernelSpec::Mandelbrot(MandelbrotParams::from_plane(16, 16, -2.0, -1.25, 2.5 / 16.0, 100));
    let f = pollster::block_on(shoal_compute::bench::measure_kernel(gpu, "16²".into(), &m, plan, false, &now))
        .expect("measures");
    let counts = m.run_cpu(&[]).expect("reference");
    let iterations: u64 =
        counts[0].chunks_exact(4).map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))).sum();
    assert_eq!(f.ops, iterations * shoal_core::kernels::mandelbrot::OPS_PER_ITERATION);
    assert!(f.ops < m.ops() && f.cpu_secs.is_none());
}

#[test]
fn matmul_f16_is_declared_and_run_only_with_shader_f16() {
    let gpu = gpu();
    let declared = gpu.device_info().kernels.contains(&KernelId::MatmulF16);
    assert_eq!(declared, gpu.has_f16());
    let k = KernelSpec::MatmulF16(MatmulParams { m: 65, n: 130, k: 300 });
    let inputs = k.seeded_inputs(13);
    if gpu.has_f16() {
        // Larger than a workgroup's 64×64 block in both directions, k past one tile step.
        check(&k, &inputs);
    } else {
        let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        assert!(matches!(gpu.run_blocking(&k, &refs), Err(ComputeError::InvalidTask(_))));
    }
}
