//! The executor in a real browser: headless Chromium with WebGPU
//! (SwiftShader), inside a dedicated Web Worker as the browser worker will
//! run it — the same known answers as natively (`cargo xtask test` runs
//! these with chromedriver; `webdriver.json` holds Chromium's flags).

#![cfg(target_arch = "wasm32")]

use js_sys::wasm_bindgen::JsCast;
use shoal_compute::{bench, ComputeError, Gpu, GpuOptions, ShaderError};
use shoal_core::kernels::{
    Comparator, CustomBinding, CustomKernel, CustomRole, KernelId, KernelSpec, MandelbrotParams, MatmulParams,
    Sha256Params,
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

/// A monotonic clock in seconds: `performance.now()` of the worker's global.
fn seconds() -> f64 {
    let global = js_sys::global();
    let performance = js_sys::Reflect::get(&global, &"performance".into()).expect("performance");
    let now: js_sys::Function =
        js_sys::Reflect::get(&performance, &"now".into()).expect("performance.now").dyn_into().expect("a function");
    now.call0(&performance).expect("performance.now()").as_f64().expect("a number") / 1e3
}

/// `shoal bench gpu` in the browser: the device's limits, the programs
/// tuning chose, and every kernel against the limits, printed in the same
/// table as natively so a tab and a native worker on one machine compare
/// kernel by kernel. Tests run it briefly; `cargo xtask bench --gpu` builds
/// it with `SHOAL_GPU_BENCH_BUDGET` (seconds per figure) for real figures.
/// Asserts that every figure is measured and every kernel agreed with the
/// CPU where the CPU ran.
#[wasm_bindgen_test]
async fn the_gpu_benchmark_runs_on_webgpu() {
    let gpu = Gpu::new(GpuOptions::default()).await.expect("WebGPU adapter");
    let budget: f64 = option_env!("SHOAL_GPU_BENCH_BUDGET").and_then(|b| b.parse().ok()).unwrap_or(0.03);
    let now = seconds;
    let info = gpu.adapter_info();
    let name = if info.name.is_empty() { "WebGPU (the browser does not name it)" } else { &info.name };
    wasm_bindgen_test::console_log!("browser adapter: {name}");
    let peaks = bench::measure_peaks(&gpu, budget, &now).await.expect("the probes run");
    wasm_bindgen_test::console_log!("browser {}", bench::peaks_line(&peaks));
    let tuning = gpu.tune(&now).await.expect("tunes");
    wasm_bindgen_test::console_log!("browser {}", bench::tuning_lines(&tuning));
    wasm_bindgen_test::console_log!("{}", bench::TABLE_HEADER);
    let plan = bench::Plan { budget, max_run: budget * 20.0, only: None };
    let mut rows = 0;
    let figures = bench::measure_kernels(&gpu, plan, &now, &mut |f| {
        rows += 1;
        wasm_bindgen_test::console_log!("{}", bench::table_row(f, &peaks));
    })
    .await
    .expect("every kernel measures");
    assert_eq!(rows, figures.len());
    for id in [KernelId::MatmulF32, KernelId::Sha256, KernelId::Mandelbrot] {
        assert!(figures.iter().any(|f| f.kernel == id), "{id} was measured");
    }
    assert!(figures.iter().all(|f| f.kernel_rate() > 0.0 && f.end_to_end_rate().is_finite()));
}

/// A tab runs tasks at once (as many as tuning found worth it): their
/// uploads, error scopes and readbacks interleave on one thread, and each
/// still gets its own outputs.
#[wasm_bindgen_test]
async fn tasks_run_at_once_in_one_tab_each_get_their_outputs() {
    let gpu = Gpu::new(GpuOptions::default()).await.expect("WebGPU adapter");
    let a = KernelSpec::MatmulF32(MatmulParams { m: 33, n: 40, k: 12 });
    let b = KernelSpec::Sha256(Sha256Params { count: 100, message_len: 37 });
    let c = KernelSpec::Mandelbrot(MandelbrotParams::from_plane(30, 20, -2.0, -1.2, 0.1, 100));
    let (ai, bi) = (a.seeded_inputs(1), b.seeded_inputs(2));
    let (ar, br): (Vec<&[u8]>, Vec<&[u8]>) =
        (ai.iter().map(Vec::as_slice).collect(), bi.iter().map(Vec::as_slice).collect());
    let (ga, gb, gc) = futures_util::join!(gpu.run(&a, &ar), gpu.run(&b, &br), gpu.run(&c, &[]));
    let want = a.run_cpu(&ar).expect("reference");
    assert!(a.comparator().agree(&[&ga.expect("a runs")[0]], &[&want[0]]));
    assert_eq!(gb.expect("b runs"), b.run_cpu(&br).expect("reference"));
    assert_eq!(gc.expect("c runs"), c.run_cpu(&[]).expect("reference"));
}

#[wasm_bindgen_test]
async fn both_matmul_programs_agree_with_the_cpu_reference_on_webgpu() {
    let gpu = Gpu::new(GpuOptions::default()).await.expect("WebGPU adapter");
    for program in ["tiled", "streamed"] {
        gpu.choose(KernelId::MatmulF32, program);
        for (m, n, kk) in [(1, 4, 4), (33, 260, 36), (17, 20, 45)] {
            let k = KernelSpec::MatmulF32(MatmulParams { m, n, k: kk });
            check(&gpu, &k, &k.seeded_inputs(9)).await;
        }
    }
}
