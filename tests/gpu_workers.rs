//! Native workers on a real Vulkan driver (Mesa's lavapipe here and in CI)
//! next to CPU-reference workers: exact kernels verify across the two
//! classes, float kernels only within one (homogeneous redundancy), custom
//! WGSL runs on the GPU workers, and invalid WGSL is refused at submission
//! with naga's message.

mod common;

use std::sync::Arc;

use common::*;
use shoal_core::kernels::{KernelSpec, MandelbrotParams, MatmulParams, Sha256Params};
use shoal_native::grpc::{kernel_to_pb, pb};
use shoal_native::worker::{Behaviour, Executor};
use shoal_native::Service;

fn lavapipe() -> Executor {
    let vulkan = shoal_compute::GpuOptions { backends: Some(wgpu::Backends::VULKAN), ..Default::default() };
    let gpu = pollster::block_on(shoal_compute::Gpu::new(vulkan))
        .unwrap_or_else(|e| panic!("no Vulkan adapter ({e}); `cargo xtask setup --gpu` installs lavapipe"));
    assert_eq!(gpu.adapter_info().backend, wgpu::Backend::Vulkan, "these tests claim a Vulkan driver");
    Executor::Gpu(Arc::new(gpu))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gpu_and_cpu_workers_verify_together_within_the_rules_of_each_kernel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::start(test_config(dir.path())).await.expect("service starts");
    let gpu = lavapipe();
    let mut workers = Workers::spawn(&service, "cpu", 1, Behaviour::Honest);
    workers.add_on(&service, "gpu", 1, Behaviour::Honest, &gpu);
    let mut c = client(&service).await;
    wait_admitted(&mut c, 2).await;

    // Exact kernels with one worker of each class: every task is verified by a mixed pair.
    let mut exact = Vec::new();
    for i in 0..6u64 {
        let k = KernelSpec::Sha256(Sha256Params { count: 33, message_len: 77 });
        exact.push((k.clone(), k.seeded_inputs(i)));
    }
    for i in 0..4 {
        exact.push((
            KernelSpec::Mandelbrot(MandelbrotParams::from_plane(24, 24, -2.0 + f64::from(i) * 0.6, -1.0, 0.05, 200)),
            vec![],
        ));
    }
    let job = submit(&mut c, "exact across classes", 2, &exact).await;
    assert_eq!(wait_finished(&mut c, &job, 60).await.verified, exact.len() as u32);
    for o in results(&mut c, &job).await {
        let (k, inputs) = &exact[o.index as usize];
        assert_eq!(o.outputs, reference(k, inputs), "bit-exact on lavapipe and on the CPU");
        let mut agreed = o.agreed.clone();
        agreed.sort();
        assert_eq!(agreed, vec!["cpu0".to_owned(), "gpu0".to_owned()]);
    }

    // Float kernels: replicas are compared only within a class, so with a
    // second worker of each class every pair is homogeneous.
    workers.add(&service, "cpu-b", 1, Behaviour::Honest);
    // The second GPU worker runs matmul's streamed program, the first the
    // tiled one: the same class, replicas of different programs, which
    // must agree within the kernel's tolerance.
    let streamed = lavapipe();
    if let Executor::Gpu(g) = &streamed {
        g.choose(shoal_core::kernels::KernelId::MatmulF32, "streamed");
        g.choose(shoal_core::kernels::KernelId::MatmulF16, "streamed");
    }
    workers.add_on(&service, "gpu-b", 1, Behaviour::Honest, &streamed);
    wait_admitted(&mut c, 4).await;
    let floats: Vec<_> = (0..8u64)
        .map(|i| {
            // Odd shapes (tiled everywhere) and vec4 shapes (streamed on gpu-b).
            let (n, k) = if i % 2 == 0 { (17, 45) } else { (20, 44) };
            let k = KernelSpec::MatmulF32(MatmulParams { m: 33, n, k });
            (k.clone(), k.seeded_inputs(100 + i))
        })
        .collect();
    let job = submit(&mut c, "floats within a class", 2, &floats).await;
    assert_eq!(wait_finished(&mut c, &job, 60).await.verified, floats.len() as u32);
    for o in results(&mut c, &job).await {
        let (k, inputs) = &floats[o.index as usize];
        assert!(agrees(k, &o.outputs, &reference(k, inputs)), "within tolerance of the CPU reference");
        let classes: Vec<bool> = o.agreed.iter().map(|w| w.starts_with("gpu")).collect();
        assert!(classes.iter().all(|&g| g == classes[0]), "float replicas of one class: {:?}", o.agreed);
    }

    // matmul_f16 goes only to workers whose device has shader-f16 (both
    // lavapipe workers; the CPU workers do not declare it), whose replicas,
    // one tiled and one streamed, agree within the f16 tolerance.
    let halves: Vec<_> = (0..4u64)
        .map(|i| {
            let k = KernelSpec::MatmulF16(MatmulParams { m: 20, n: 36, k: 48 });
            (k.clone(), k.seeded_inputs(200 + i))
        })
        .collect();
    let job = submit(&mut c, "f16", 2, &halves).await;
    assert_eq!(wait_finished(&mut c, &job, 60).await.verified, halves.len() as u32);
    for o in results(&mut c, &job).await {
        let (k, inputs) = &halves[o.index as usize];
        assert!(agrees(k, &o.outputs, &reference(k, inputs)), "within f16 tolerance of the CPU reference");
        let mut agreed = o.agreed.clone();
        agreed.sort();
        assert_eq!(agreed, ["gpu-b0", "gpu0"]);
    }

    // Custom WGSL: only GPU workers declare it; it runs there.
    let input: Vec<u8> = (0..64u32).flat_map(u32::to_le_bytes).collect();
    let job = submit(&mut c, "custom", 2, &[(triple(TRIPLE), vec![input])]).await;
    assert_eq!(wait_finished(&mut c, &job, 60).await.verified, 1);
    let out = results(&mut c, &job).await.remove(0);
    assert_eq!(out.outputs[0], (0..64u32).flat_map(|i| (i * 3).to_le_bytes()).collect::<Vec<u8>>());
    assert!(out.agreed.iter().all(|w| w.starts_with("gpu")), "{:?}", out.agreed);

    // Invalid WGSL is refused at the door with naga's message.
    let bad = triple(&TRIPLE.replace("* 3u;", "* ;"));
    let msgs = vec![
        pb::SubmitJobRequest {
            part: Some(pb::submit_job_request::Part::Header(pb::JobHeader { redundancy: 2, ..Default::default() })),
        },
        pb::SubmitJobRequest {
            part: Some(pb::submit_job_request::Part::Task(pb::Task {
                kernel: Some(kernel_to_pb(&bad)),
                inputs: vec![bytes::Bytes::from(vec![0; 256])],
                parts: Vec::new(),
            })),
        },
    ];
    let err = c.submit_job(tokio_stream::iter(msgs)).await.expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("WGSL does not parse"), "{}", err.message());
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
}
