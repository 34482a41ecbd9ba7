//! The executor in a real browser: headless Chromium with WebGPU
//! (SwiftShader), inside a dedicated Web Worker as the browser worker will
//! run it — the same known answers as natively (`cargo xtask test` runs
//! these with chromedriver; `webdriver.json` holds Chromium's flags).

#![cfg(target_arch = "wasm32")]

use shoal_compute::{ComputeError, Gpu, GpuOptions, ShaderError};
use shoal_core::kernels::{
    Comparator, CustomBinding, CustomKernel, CustomRole, KernelSpec, MandelbrotParams, MatmulParams, Sha256Params,
};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

async fn check(gpu: &Gpu, kernel: &KernelSpec, inputs: &[Vec<u8>]) {
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let got = gpu.run(kernel, &refs).await.unwrap_or_else(|e| panic!("{kernel:?}: {e}"));
    let want = kernel.run_cpu(&refs).expect("reference");
    let g: Vec<&[u8]> = got.iter().map(Vec::as_slice).collect();
    let w: Vec<&[u8]> = want.iter().map(Vec::as_slice).collect();
    assert!(kernel.comparator().agree(&g, &w), "{kernel:?}");
    if kernel.comparator() == Comparator::Exact {
        assert_eq!(got, want, "{kernel:?} is bit-exact in the browser");
    }
}

#[wasm_bindgen_test]
async fn kernels_agree_with_the_cpu_reference_on_webgpu() {
    let gpu = Gpu::new(GpuOptions::default()).await.expect("WebGPU adapter (Chromium with --enable-unsafe-webgpu)");
    let info = gpu.device_info();
    assert_eq!(info.backend, shoal_core::wire::message::Backend::BrowserWebGpu);
    for (count, len) in [(1, 0), (65, 55), (300, 64)] {
        let k = KernelSpec::Sha256(Sha256Params { count, message_len: len });
        check(&gpu, &k, &k.seeded_inputs(u64::from(count))).await;
    }
    for (m, n, kk) in [(1, 1, 1), (33, 17, 45), (64, 64, 64)] {
        let k = KernelSpec::MatmulF32(MatmulParams { m, n, k: kk });
        check(&gpu, &k, &k.seeded_inputs(7)).await;
    }
    let k = KernelSpec::Mandelbrot(MandelbrotParams::from_plane(37, 29, -2.0, -1.2, 0.07, 300));
    check(&gpu, &k, &[]).await;
}

#[wasm_bindgen_test]
async fn invalid_custom_wgsl_is_refused_before_dispatch() {
    let gpu = Gpu::new(GpuOptions::default()).await.expect("WebGPU adapter");
    let bad = KernelSpec::Custom(CustomKernel {
        wgsl: "@compute @workgroup_size(1) fn main( { }".into(),
        entry_point: "main".into(),
        bindings: vec![CustomBinding { binding: 0, role: CustomRole::Output, len: 4 }],
        workgroups: [1, 1, 1],
        comparator: Comparator::Exact,
        ops: 1,
    });
    assert!(matches!(gpu.run(&bad, &[]).await, Err(ComputeError::Shader(ShaderError::Parse(_)))));
}

/// Median of `runs` timings of a kernel, in ms (the page clock has ms resolution).
async fn median_ms(gpu: &Gpu, kernel: &KernelSpec, inputs: &[Vec<u8>], runs: usize) -> f64 {
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    gpu.run(kernel, &refs).await.expect("warm-up run");
    let mut t = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = js_sys::Date::now();
        gpu.run(kernel, &refs).await.expect("runs");
        t.push(js_sys::Date::now() - start);
    }
    t.sort_by(f64::total_cmp);
    t[runs / 2]
}

/// Timings in the browser, printed for the benchmark table (compare with
/// `cargo bench -p shoal-compute --bench kernels` natively). Asserts only
/// that every run succeeds.
#[wasm_bindgen_test]
async fn timings_on_webgpu() {
    let gpu = Gpu::new(GpuOptions::default()).await.expect("WebGPU adapter");
    for n in [256u32, 512] {
        let k = KernelSpec::MatmulF32(MatmulParams::square(n));
        let ms = median_ms(&gpu, &k, &k.seeded_inputs(1), 3).await;
        let gflops = 2.0 * f64::from(n).powi(3) / (ms * 1e6);
        wasm_bindgen_test::console_log!("browser matmul_f32 {n}³: {ms:.1} ms, {gflops:.2} GFLOPS");
    }
    for count in [4_096u32, 65_536] {
        let k = KernelSpec::Sha256(Sha256Params { count, message_len: 64 });
        let ms = median_ms(&gpu, &k, &k.seeded_inputs(2), 5).await;
        let rate = f64::from(count) / (ms * 1e3);
        wasm_bindgen_test::console_log!("browser sha256 {count} × 64 B: {ms:.1} ms, {rate:.2} M hashes/s");
    }
}
