//! Browser workers end to end: headless Chromium tabs (Playwright driving
//! `/usr/bin/chromium` with WebGPU on SwiftShader) open the worker page the
//! coordinator serves, join as guests over the real WebSocket, and run every
//! kernel on WebGPU; the coordinator verifies their results against each
//! other and against native workers, and re-queues the work of a closed tab.
//!
//! Needs the built page (`SHOAL_WEB_DIST`: wasm-bindgen output of
//! shoal-web plus the worker page of `www/`) and playwright-core (`SHOAL_NODE_PATH`, a
//! `node_modules` folder); `cargo xtask test` provides both.

mod common;

use std::time::Duration;

use common::browser::{site, Browser};
use common::*;
use shoal_core::kernels::{Comparator, KernelSpec, MandelbrotParams, MatmulParams, Sha256Params};
use shoal_native::grpc::pb;
use shoal_native::grpc::pb::shoal_service_client::ShoalServiceClient;
use shoal_native::worker::Behaviour;
use shoal_native::{Service, ShoalConfig};

fn browser_config(dir: &std::path::Path) -> ShoalConfig {
    let dist = site("shoal_web_bg.wasm");
    let mut cfg = test_config(dir);
    cfg.server.dist = dist;
    cfg.coordinator.allow_guests = true;
    cfg.coordinator.identities = shoal_core::coordinator::IdentityPolicy::Open;
    // Every tab shares the loopback address, as on `shoal up`.
    cfg.coordinator.max_guests_per_origin = cfg.coordinator.max_guests;
    cfg
}

/// A coordinator serving the worker page, its client, and a browser.
async fn browser_swarm(
    dir: &std::path::Path,
) -> (Service, ShoalServiceClient<tonic::transport::Channel>, Browser, String) {
    let service = Service::start(browser_config(dir)).await.expect("service starts");
    let c = client(&service).await;
    let url = page_url(&service);
    (service, c, Browser::launch(), url)
}

fn page_url(service: &Service) -> String {
    format!("http://{}/worker.html?autostart", service.http_addr)
}

/// Admitted workers the coordinator lists as browser workers.
async fn browser_workers(
    c: &mut shoal_native::grpc::pb::shoal_service_client::ShoalServiceClient<tonic::transport::Channel>,
) -> Vec<String> {
    let list = c.list_workers(pb::ListWorkersRequest::default()).await.expect("workers").into_inner();
    list.workers
        .into_iter()
        .filter(|w| w.connected && w.backend == "BrowserWebGpu" && w.tier > 0)
        .map(|w| w.id)
        .collect()
}

/// The right answer: the CPU reference, or for the custom kernel (which
/// has none) its input tripled.
fn expected(k: &KernelSpec, inputs: &[Vec<u8>]) -> Vec<Vec<u8>> {
    if let KernelSpec::Custom(_) = k {
        let tripled = inputs[0]
            .chunks_exact(4)
            .flat_map(|w| (u32::from_le_bytes([w[0], w[1], w[2], w[3]]) * 3).to_le_bytes())
            .collect();
        return vec![tripled];
    }
    reference(k, inputs)
}

/// Tasks of one job: each kernel with its inputs.
type Tasks = Vec<(KernelSpec, Vec<Vec<u8>>)>;

/// One job per kernel of the catalogue.
fn kernel_jobs() -> Vec<(&'static str, Tasks)> {
    let sha = (0..8u64)
        .map(|i| {
            let k = KernelSpec::Sha256(Sha256Params { count: 40, message_len: 64 });
            (k.clone(), k.seeded_inputs(i))
        })
        .collect();
    let matmul = (0..4u64)
        .map(|i| {
            let k = KernelSpec::MatmulF32(MatmulParams { m: 33, n: 17, k: 45 });
            (k.clone(), k.seeded_inputs(100 + i))
        })
        .collect();
    let mandel = (0..6)
        .map(|i| {
            let k = KernelSpec::Mandelbrot(MandelbrotParams::from_plane(
                24,
                24,
                -2.0 + f64::from(i) * 0.45,
                -1.0,
                0.05,
                200,
            ));
            (k, vec![])
        })
        .collect();
    let custom =
        (0..2u32).map(|j| (triple(TRIPLE), vec![(0..64u32).flat_map(|i| (i + j).to_le_bytes()).collect()])).collect();
    vec![("sha256", sha), ("matmul", matmul), ("mandelbrot", mandel), ("custom wgsl", custom)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_browser_tabs_verify_every_kernel_and_a_closed_tab_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (service, mut c, mut browser, url) = browser_swarm(dir.path()).await;
    let t0 = browser.open(&url);
    let t1 = browser.open(&url);
    let (id0, id1) = (browser.admitted_id(t0, &mut c).await, browser.admitted_id(t1, &mut c).await);
    let mut ids = vec![id0.clone(), id1.clone()];
    ids.sort();
    wait_admitted(&mut c, 2).await;
    let mut listed = browser_workers(&mut c).await;
    listed.sort();
    assert_eq!(listed, ids, "the coordinator lists both tabs as admitted WebGPU workers");

    // Every kernel, redundancy 2, no other worker: each task is verified by
    // the two tabs, and equals the CPU reference (within tolerance for floats).
    for (name, tasks) in kernel_jobs() {
        let job = submit(&mut c, name, 2, &tasks).await;
        let s = wait_finished(&mut c, &job, 120).await;
        assert_eq!(s.verified, tasks.len() as u32, "{name}: {s:?}");
        for o in results(&mut c, &job).await {
            let (k, inputs) = &tasks[o.index as usize];
            let want = expected(k, inputs);
            assert!(agrees(k, &o.outputs, &want), "{name} task {}: within the comparator of the reference", o.index);
            if k.comparator() == Comparator::Exact {
                assert_eq!(o.outputs, want, "{name} task {} is bit-exact on WebGPU", o.index);
            }
            let mut agreed = o.agreed.clone();
            agreed.sort();
            assert_eq!(agreed, ids, "{name} task {} verified by the two tabs", o.index);
        }
    }

    // A tab is closed while it holds work: its assignments are re-queued
    // and the job completes on the other tab.
    let heavy: Vec<_> = (0..24)
        .map(|i| {
            // n odd: the tiled program (the streamed one would finish the
            // job before the tab could be closed while it holds work).
            let k = KernelSpec::MatmulF32(MatmulParams { m: 96, n: 97, k: 96 });
            (k.clone(), k.seeded_inputs(500 + i))
        })
        .collect();
    let job = submit(&mut c, "survives a closed tab", 1, &heavy).await;
    browser.wait_tab(t0, "holds work", 60, |s| s["running"].as_u64() > Some(0)).await;
    let before =
        c.get_job(pb::GetJobRequest { job_id: job.clone() }).await.expect("job").into_inner().job.expect("a job");
    assert!(!before.finished, "the job is still running when the tab closes: {before:?}");
    browser.command(&format!("close {t0}"));
    let s = wait_finished(&mut c, &job, 180).await;
    assert_eq!(s.verified, heavy.len() as u32, "nothing lost: {s:?}");
    for o in results(&mut c, &job).await {
        let (k, inputs) = &heavy[o.index as usize];
        assert!(agrees(k, &o.outputs, &reference(k, inputs)), "task {}", o.index);
    }
    let workers = c.list_workers(pb::ListWorkersRequest::default()).await.expect("workers").into_inner().workers;
    let connected: Vec<&str> =
        workers.iter().filter(|w| w.connected && w.backend == "BrowserWebGpu").map(|w| w.id.as_str()).collect();
    assert_eq!(connected, vec![id1.as_str()], "only the open tab is still connected ({id0} was closed)");
    browser.command("quit");
    service.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_browser_and_a_native_worker_verify_exact_kernels_together_and_floats_within_a_class() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (service, mut c, mut browser, url) = browser_swarm(dir.path()).await;
    let t0 = browser.open(&url);
    let tab = browser.admitted_id(t0, &mut c).await;
    let mut workers = Workers::spawn(&service, "native", 1, Behaviour::Honest);
    wait_admitted(&mut c, 2).await;

    // Exact kernels: a tab on WebGPU and a native worker on the CPU reference agree bit for bit.
    let jobs = kernel_jobs();
    let exact: Vec<_> = jobs
        .iter()
        .filter(|(n, _)| matches!(*n, "sha256" | "mandelbrot"))
        .flat_map(|(_, t)| t.iter().cloned())
        .collect();
    let job = submit(&mut c, "exact across classes", 2, &exact).await;
    assert_eq!(wait_finished(&mut c, &job, 120).await.verified, exact.len() as u32);
    for o in results(&mut c, &job).await {
        let (k, inputs) = &exact[o.index as usize];
        assert_eq!(o.outputs, reference(k, inputs));
        let mut agreed = o.agreed.clone();
        agreed.sort();
        let mut pair = vec!["native0".to_owned(), tab.clone()];
        pair.sort();
        assert_eq!(agreed, pair, "a mixed pair verified task {}", o.index);
    }

    // Floats: replicas are compared only within one class, so the mixed
    // pair cannot verify them; with a second worker of each class, every
    // task is verified by two workers of one class.
    let floats = jobs.into_iter().find(|(n, _)| *n == "matmul").expect("matmul").1;
    let job = submit(&mut c, "floats within a class", 2, &floats).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let early =
        c.get_job(pb::GetJobRequest { job_id: job.clone() }).await.expect("job").into_inner().job.expect("a job");
    assert_eq!(early.verified, 0, "a browser and a native worker never verify floats together: {early:?}");
    let t1 = browser.open(&url);
    let tab_b = browser.admitted_id(t1, &mut c).await;
    workers.add(&service, "native-b", 1, Behaviour::Honest);
    let s = wait_finished(&mut c, &job, 120).await;
    assert_eq!(s.verified, floats.len() as u32, "{s:?}");
    for o in results(&mut c, &job).await {
        let (k, inputs) = &floats[o.index as usize];
        assert!(agrees(k, &o.outputs, &reference(k, inputs)));
        let browsers = o.agreed.iter().filter(|w| **w == tab || **w == tab_b).count();
        assert!(browsers == 0 || browsers == o.agreed.len(), "float replicas of one class: {:?}", o.agreed);
    }
    browser.command("quit");
    workers.stop_all().await;
    service.shutdown().await.expect("clean shutdown");
}

/// Chromium's flags that make `host` (a name that is not localhost) reach
/// 127.0.0.1, and trust the certificate of the key in `key_pem` (its
/// public key's SHA-256, as the `--ignore-certificate-errors-spki-list` pin
/// takes it): a private CA's certificate on a real-looking origin.
fn https_origin_flags(host: &str, key_pem: &std::path::Path) -> Vec<String> {
    use base64::Engine as _;
    use rcgen::PublicKeyData as _;
    use sha2::Digest as _;
    let key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(key_pem).expect("key")).expect("a PEM key");
    let pin = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(key.subject_public_key_info()));
    vec![format!("--host-resolver-rules=MAP {host} 127.0.0.1"), format!("--ignore-certificate-errors-spki-list={pin}")]
}

/// WebGPU is for secure contexts only: two tabs open the worker page of a
/// coordinator served over HTTPS on a name that is not localhost, find a
/// WebGPU adapter, join over `wss://` and verify tasks together.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tabs_on_an_https_origin_get_webgpu_and_verify_tasks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = shoal_native::tls::private_pki(dir.path(), &["shoal.test", "127.0.0.1"]).expect("a test CA");
    let mut cfg = browser_config(&dir.path().join("data"));
    cfg.server.tls.cert = pki.cert.clone();
    cfg.server.tls.key = pki.key.clone();
    let service = Service::start(cfg).await.expect("service starts with TLS");
    let channel = shoal_native::grpc::channel(&service.grpc_url(), Some(&pki.ca)).await.expect("https");
    let mut c = ShoalServiceClient::new(channel);
    let mut browser = Browser::launch_with(&https_origin_flags("shoal.test", &pki.key));
    let url = format!("https://shoal.test:{}/worker.html?autostart", service.http_addr.port());
    let (t0, t1) = (browser.open(&url), browser.open(&url));
    let secure = browser.eval(t0, "[location.origin, window.isSecureContext, 'gpu' in navigator]").await;
    assert_eq!(secure, serde_json::json!([format!("https://shoal.test:{}", service.http_addr.port()), true, true]));
    let ids = [browser.admitted_id(t0, &mut c).await, browser.admitted_id(t1, &mut c).await];
    let kernel = KernelSpec::Sha256(Sha256Params { count: 64, message_len: 64 });
    let tasks: Vec<_> = (0..8u64).map(|i| (kernel.clone(), kernel.seeded_inputs(i))).collect();
    let job = submit(&mut c, "verified by tabs over https", 2, &tasks).await;
    assert_eq!(wait_finished(&mut c, &job, 120).await.verified, 8);
    for o in results(&mut c, &job).await {
        let (k, inputs) = &tasks[o.index as usize];
        assert_eq!(o.outputs, reference(k, inputs));
        assert!(o.agreed.iter().all(|w| ids.contains(w)) && o.agreed.len() == 2, "{:?}", o.agreed);
    }
    browser.command("quit");
    service.shutdown().await.expect("clean shutdown");
}

/// One measured workload: `tasks` copies of one kernel, redundancy 1.
struct Workload {
    name: &'static str,
    tasks: Tasks,
}

fn workloads() -> Vec<Workload> {
    let many = |k: KernelSpec, n: u64| (0..n).map(|i| (k.clone(), k.seeded_inputs(i))).collect::<Tasks>();
    vec![
        Workload { name: "matmul 256³ f32", tasks: many(KernelSpec::MatmulF32(MatmulParams::square(256)), 16) },
        Workload {
            name: "sha256 4096 × 64 B",
            tasks: many(KernelSpec::Sha256(Sha256Params { count: 4096, message_len: 64 }), 16),
        },
        Workload {
            name: "mandelbrot 256² × 256 it",
            tasks: many(
                KernelSpec::Mandelbrot(MandelbrotParams::from_plane(256, 256, -2.0, -1.2, 2.4 / 256.0, 256)),
                16,
            ),
        },
        Workload {
            name: "tiny: sha256 1 × 16 B",
            tasks: many(KernelSpec::Sha256(Sha256Params { count: 1, message_len: 16 }), 1000),
        },
    ]
}

/// Waits until `id` is the only admitted, connected worker.
async fn wait_only(
    c: &mut shoal_native::grpc::pb::shoal_service_client::ShoalServiceClient<tonic::transport::Channel>,
    id: &str,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    loop {
        let list = c.list_workers(pb::ListWorkersRequest::default()).await.expect("workers").into_inner().workers;
        let live: Vec<&str> = list.iter().filter(|w| w.connected && w.tier > 0).map(|w| w.id.as_str()).collect();
        if live == [id] {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "waiting for {id} alone, have {live:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs every workload on whatever single worker is connected; returns
/// (tasks/s, GOPS) per workload.
async fn measure(
    c: &mut shoal_native::grpc::pb::shoal_service_client::ShoalServiceClient<tonic::transport::Channel>,
) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for w in workloads() {
        let t = std::time::Instant::now();
        let job = submit(c, w.name, 1, &w.tasks).await;
        let s = wait_finished(c, &job, 600).await;
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(s.verified, w.tasks.len() as u32, "{}", w.name);
        let ops: u64 = w.tasks.iter().map(|(k, _)| k.cost().ops).sum();
        out.push((w.tasks.len() as f64 / secs, ops as f64 / secs / 1e9));
    }
    out
}

/// The benchmark of the browser worker (not part of the suite: run it with
/// `cargo xtask bench --browser`). One worker at a time, redundancy 1, the
/// same jobs: a Chromium tab on WebGPU (SwiftShader), a native worker on
/// lavapipe, a native worker on the CPU references. Prints a table.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: cargo xtask bench --browser"]
async fn browser_worker_benchmark() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::start(browser_config(dir.path())).await.expect("service starts");
    let mut c = client(&service).await;

    let mut browser = Browser::launch();
    let tab = browser.open(&page_url(&service));
    browser.admitted_id(tab, &mut c).await;
    wait_admitted(&mut c, 1).await;
    let web = measure(&mut c).await;
    browser.command(&format!("close {tab}"));
    browser.command("quit");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !browser_workers(&mut c).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the tab never left");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let vulkan = shoal_compute::GpuOptions { backends: Some(wgpu::Backends::VULKAN), ..Default::default() };
    let gpu = shoal_compute::Gpu::new(vulkan).await.expect("lavapipe");
    assert_eq!(gpu.adapter_info().backend, wgpu::Backend::Vulkan, "the native column is Vulkan");
    // Tuned as `shoal worker` and the tab tune themselves.
    let start = std::time::Instant::now();
    gpu.tune(&|| start.elapsed().as_secs_f64()).await.expect("tunes");
    let mut workers = Workers { stop: tokio::sync::watch::channel(false).0, handles: Vec::new() };
    let lavapipe = shoal_native::worker::Executor::Gpu(std::sync::Arc::new(gpu));
    workers.add_on(&service, "lavapipe", 1, Behaviour::Honest, &lavapipe);
    wait_only(&mut c, "lavapipe0").await;
    let native_gpu = measure(&mut c).await;
    workers.stop_all().await;

    let workers = Workers::spawn(&service, "cpu", 1, Behaviour::Honest);
    wait_only(&mut c, "cpu0").await;
    let native_cpu = measure(&mut c).await;
    workers.stop_all().await;

    println!("\n| workload (16 tasks; tiny: 1000) | browser tab, WebGPU (SwiftShader) | native, Vulkan (lavapipe) | native, CPU reference | tab ÷ lavapipe |");
    println!("|---|---|---|---|---|");
    for (i, w) in workloads().iter().enumerate() {
        let cell = |(tps, gops): (f64, f64)| format!("{tps:.1} tasks/s, {gops:.3} GOPS");
        println!(
            "| {} | {} | {} | {} | {:.2} |",
            w.name,
            cell(web[i]),
            cell(native_gpu[i]),
            cell(native_cpu[i]),
            web[i].0 / native_gpu[i].0
        );
    }
    service.shutdown().await.expect("clean shutdown");
}

/// Waits until the coordinator lists `n` admitted browser workers.
async fn wait_browsers(
    c: &mut shoal_native::grpc::pb::shoal_service_client::ShoalServiceClient<tonic::transport::Channel>,
    n: usize,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    loop {
        let live = browser_workers(c).await;
        if live.len() == n {
            return live;
        }
        assert!(tokio::time::Instant::now() < deadline, "want {n} browser workers, have {live:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_user_pauses_throttles_and_stops_a_tab() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::start(browser_config(dir.path())).await.expect("service starts");
    let mut c = client(&service).await;
    let mut browser = Browser::launch();
    let tab = browser.open(&page_url(&service));
    let first = browser.admitted_id(tab, &mut c).await;
    assert_eq!(wait_browsers(&mut c, 1).await, vec![first.clone()]);

    // Pause: the tab leaves (its work would go to others) and stays out.
    browser.command(&format!("eval {tab} window.shoalWorker.pause()"));
    browser.wait_tab(tab, "pauses", 30, |s| s["phase"] == "paused").await;
    wait_browsers(&mut c, 0).await;
    // Resume: it joins again on a new connection, benchmarked afresh, as
    // the same identity (this browser's key).
    let connections = browser.status[&tab]["connections"].as_u64().expect("connections");
    browser.command(&format!("eval {tab} window.shoalWorker.resume()"));
    browser
        .wait_tab(tab, "resumes", 60, |s| s["phase"] == "working" && s["connections"].as_u64() > Some(connections))
        .await;
    let second = browser.admitted_id(tab, &mut c).await;
    assert_eq!(second, first, "the same contributor after a pause");
    assert_eq!(wait_browsers(&mut c, 1).await, vec![second.clone()]);

    // A GPU share below half of the measured one: the tab rejoins to be measured at its new speed.
    let connections = browser.status[&tab]["connections"].as_u64().expect("connections");
    browser.command(&format!("eval {tab} window.shoalWorker.setGpuShare(20)"));
    browser
        .wait_tab(tab, "rejoins throttled", 60, |s| {
            s["gpu_share"] == 20 && s["phase"] == "working" && s["connections"].as_u64() > Some(connections)
        })
        .await;
    let third = browser.admitted_id(tab, &mut c).await;
    assert_eq!(wait_browsers(&mut c, 1).await, vec![third]);
    // Still a working worker at 20 %: a job completes.
    let job = submit(
        &mut c,
        "throttled",
        1,
        &[(
            KernelSpec::Sha256(Sha256Params { count: 64, message_len: 64 }),
            KernelSpec::Sha256(Sha256Params { count: 64, message_len: 64 }).seeded_inputs(1),
        )],
    )
    .await;
    assert_eq!(wait_finished(&mut c, &job, 60).await.verified, 1);

    // Stop: a clean goodbye; the coordinator lists no browser worker.
    browser.command(&format!("eval {tab} window.shoalWorker.stop()"));
    let stopped = browser.wait_tab(tab, "stops", 30, |s| s["phase"] == "idle").await;
    assert_eq!(stopped["last_reason"], "stopped by the user");
    wait_browsers(&mut c, 0).await;
    browser.command("quit");
    service.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tab_keeps_a_wasm_key_where_webcrypto_has_none_and_a_guest_keeps_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::start(browser_config(dir.path())).await.expect("service starts");
    let mut c = client(&service).await;
    let mut browser = Browser::launch();
    // The fallback other browsers take: a seed in IndexedDB, signed with in wasm.
    let seeded = browser.open(&format!("{}&wasmkey&payout=tab-owner", page_url(&service)));
    let id = browser.admitted_id(seeded, &mut c).await;
    let s = browser.status[&seeded].clone();
    assert_eq!((s["identity"].as_str(), s["identity_kept"].as_str()), (Some(id.as_str()), Some("indexeddb")), "{s}");
    let record = c.get_contributor(pb::GetContributorRequest { key: id.clone() }).await.expect("known").into_inner();
    assert_eq!(record.contributor.expect("a record").payout_address, "tab-owner");
    // The same profile's next tab (after this one closed) is the same identity.
    browser.command(&format!("closepage {seeded}"));
    wait_browsers(&mut c, 0).await;
    let again = browser.open_in(seeded, &format!("{}&wasmkey", page_url(&service)));
    assert_eq!(browser.admitted_id(again, &mut c).await, id);
    // A guest tab is no identity: an id for this connection only.
    let guest = browser.open(&format!("{}&guest", page_url(&service)));
    let gid = browser.admitted_id(guest, &mut c).await;
    assert!(gid.starts_with("guest-") && browser.status[&guest]["identity"].is_null(), "{gid}");
    browser.command("quit");
    service.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_tab_holds_the_shared_inputs_an_earlier_tab_kept_in_cache_storage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (service, mut c, mut browser, url) = browser_swarm(dir.path()).await;
    let model = 256 * 256 * 4u64;
    let tab = browser.open(&url);
    browser.admitted_id(tab, &mut c).await;
    let first = run_shared_job(&mut c, 4).await;
    assert!(first.input_bytes_sent >= model, "the first tab got the matrix");
    let kept = "caches.open('shoal-inputs-v1').then(c => c.keys()).then(k => k.length)";
    browser.wait_eval(tab, "the matrix in Cache Storage", kept, |v| v == 1).await;
    browser.command(&format!("eval {tab} window.shoalWorker.stop()"));
    browser.wait_tab(tab, "stops", 30, |s| s["phase"] == "idle").await;
    wait_browsers(&mut c, 0).await;

    // Another tab of the site in the same browser profile: its hello lists
    // the matrix, which is not sent again.
    let second_tab = browser.open_in(tab, &url);
    browser.admitted_id(second_tab, &mut c).await;
    let second = run_shared_job(&mut c, 4).await;
    let sent = second.input_bytes_sent - first.input_bytes_sent;
    assert!(sent < model, "the matrix did not cross again ({sent} bytes sent)");
    assert!(second.shared_bytes_named - first.shared_bytes_named >= 4 * model);
    browser.command("quit");
    service.shutdown().await.expect("clean shutdown");
}
