//! The browser worker's pieces in headless Chromium, inside a dedicated Web
//! Worker as in production: the executor finds WebGPU (SwiftShader here),
//! warms up, and computes what the CPU references compute; without WebGPU
//! the CPU references in wasm do the work and declare the CPU class.
//! (`cargo xtask test` runs these with chromedriver; `webdriver.json` holds
//! Chromium's flags.)

#![cfg(all(target_arch = "wasm32", feature = "agent"))]

use bytes::Bytes;
use shoal_core::kernels::{KernelId, KernelSpec, MandelbrotParams, MatmulParams, Sha256Params};
use shoal_core::wire::message::{Backend, DeviceType};
use shoal_web::Executor;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

fn tasks() -> Vec<KernelSpec> {
    vec![
        KernelSpec::Sha256(Sha256Params { count: 70, message_len: 61 }),
        KernelSpec::MatmulF32(MatmulParams { m: 40, n: 24, k: 33 }),
        KernelSpec::Mandelbrot(MandelbrotParams::from_plane(30, 20, -2.0, -1.0, 0.08, 150)),
    ]
}

async fn check(executor: &Executor) {
    for (i, k) in tasks().into_iter().enumerate() {
        let inputs: Vec<Bytes> = k.seeded_inputs(i as u64).into_iter().map(Bytes::from).collect();
        let got = executor.run(&k, &inputs, f64::INFINITY).await.unwrap_or_else(|e| panic!("{k:?}: {e}"));
        let refs: Vec<&[u8]> = inputs.iter().map(|b| &b[..]).collect();
        let want = k.run_cpu(&refs).expect("reference");
        let g: Vec<&[u8]> = got.iter().map(|b| &b[..]).collect();
        let w: Vec<&[u8]> = want.iter().map(Vec::as_slice).collect();
        assert!(k.comparator().agree(&g, &w), "{k:?}");
    }
}

#[wasm_bindgen_test]
async fn the_executor_finds_webgpu_and_agrees_with_the_references() {
    let executor = Executor::detect(true).await;
    assert!(executor.has_gpu(), "WebGPU in Chromium with --enable-unsafe-webgpu: {}", executor.note());
    let device = executor.device_info();
    assert_eq!(device.backend, Backend::BrowserWebGpu);
    assert!(device.kernels.contains(&KernelId::Custom), "a GPU runs custom WGSL");
    assert_eq!(executor.summary().backend, "BrowserWebGpu");
    check(&executor).await;
}

#[wasm_bindgen_test]
async fn without_webgpu_the_cpu_references_run_in_wasm_as_a_cpu_class() {
    let executor = Executor::detect(false).await;
    assert!(!executor.has_gpu());
    let device = executor.device_info();
    assert_eq!((device.backend, device.device_type), (Backend::Cpu, DeviceType::Cpu));
    assert!(!device.kernels.contains(&KernelId::Custom), "no custom WGSL without a GPU");
    check(&executor).await;
    let err = Executor::cpu()
        .run(
            &KernelSpec::MatmulF32(MatmulParams { m: 2, n: 2, k: 2 }),
            &[Bytes::from_static(&[0; 3]), Bytes::from_static(&[0; 16])],
            f64::INFINITY,
        )
        .await
        .expect_err("wrong input sizes are an error, never a panic");
    assert!(!err.is_empty());
}

/// A CPU run past its deadline is abandoned, not run for minutes: a tile
/// inside the set at the iteration cap (2^36 iterations, hours in wasm)
/// given 300 ms.
#[wasm_bindgen_test]
async fn a_cpu_run_past_its_deadline_is_abandoned() {
    let huge = KernelSpec::Mandelbrot(MandelbrotParams::from_plane(256, 256, -0.1, -0.1, 0.0001, 1 << 20));
    let err = Executor::cpu().run(&huge, &[], js_sys::Date::now() + 300.0).await.expect_err("abandoned");
    assert!(err.contains("abandoned"), "given up at the deadline, not run to the end: {err}");
}
