//! The dashboard end to end, against the real `shoal up` (coordinator,
//! storage, local workers, the Mandelbrot demo) on 127.0.0.1 and headless
//! Chromium driven by Playwright: every page shows the numbers the gRPC API
//! gives, the live chart moves, the Mandelbrot image completes, the
//! Contribute button makes the tab a worker the Workers page then lists, the
//! layout holds on a phone-width screen, and a coordinator that goes away is
//! said so. Screenshots of every page are saved (`SHOAL_SCREENSHOTS`, else
//! the test's temporary folder).
//!
//! Needs the built site (`SHOAL_WEB_DIST`: trunk output + the worker's files)
//! and playwright-core (`SHOAL_NODE_PATH`); `cargo xtask test` provides both.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::browser::{site, Browser};
use common::{free_port, ChildGuard};
use serde_json::Value;
use shoal_core::kernels::{KernelSpec, Sha256Params};
use shoal_native::grpc::pb;
use shoal_native::grpc::pb::shoal_service_client::ShoalServiceClient;

type Client = ShoalServiceClient<tonic::transport::Channel>;

/// `shoal up` on free ports, serving the built site.
struct Up {
    child: Option<ChildGuard>,
    http: u16,
    grpc: u16,
    client: Client,
    data: tempfile::TempDir,
}

impl Up {
    async fn start() -> Up {
        Up::start_with(&["--workers", "2"]).await
    }

    /// `shoal up` with these arguments too. It serves the site built into
    /// it (`SHOAL_EMBED_SITE`, as `cargo xtask test` builds it), from a
    /// working directory that holds no site.
    async fn start_with(args: &[&str]) -> Up {
        assert!(
            !shoal_native::site::embedded_files().is_empty(),
            "this build carries no site: build with SHOAL_EMBED_SITE={} (cargo xtask test does)",
            site("").display()
        );
        let data = tempfile::tempdir().expect("tempdir");
        let (http, grpc) = (free_port(), free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal-e2e"));
        cmd.arg("up")
            .arg("--data")
            .arg(data.path())
            .args(["--set", &format!("server.http=127.0.0.1:{http}")])
            .args(["--set", &format!("server.grpc=127.0.0.1:{grpc}")])
            // A debug build's CPU workers and SwiftShader are slow; admit them.
            .args(["--set", "coordinator.profile.min_mflops=1", "--set", "coordinator.profile.benchmark_size=64"])
            .args(["--set", "coordinator.profile.benchmark_max_size=64"])
            .args(["--set", "coordinator.rewards.min_tasks=1"])
            // Last, so they override the settings above.
            .args(args)
            .env("RUST_LOG", "warn")
            .current_dir(data.path())
            .stdout(Stdio::null());
        let child = ChildGuard(cmd.spawn().expect("shoal up starts"));
        let url = format!("http://127.0.0.1:{grpc}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let client = loop {
            if let Ok(c) = ShoalServiceClient::connect(url.clone()).await {
                break c;
            }
            assert!(tokio::time::Instant::now() < deadline, "shoal up does not answer on {url}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        Up { child: Some(child), http, grpc, client, data }
    }

    fn url(&self, page: &str) -> String {
        format!("http://127.0.0.1:{}/#{page}", self.http)
    }

    /// Waits for the demo job to finish; returns it.
    async fn demo(&mut self) -> pb::Job {
        let deadline = tokio::time::Instant::now() + Duration::from_mins(2);
        loop {
            let jobs = self.client.list_jobs(pb::ListJobsRequest::default()).await.expect("jobs").into_inner().jobs;
            if let Some(j) = jobs.into_iter().find(|j| j.name.contains("mandelbrot") && j.finished) {
                return j;
            }
            assert!(tokio::time::Instant::now() < deadline, "the demo job did not finish");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn screenshots() -> PathBuf {
    let dir = std::env::var("SHOAL_SCREENSHOTS")
        .map_or_else(|_| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots"), PathBuf::from);
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

/// The text of the first element matching `selector`, spaces removed (numbers are grouped with spaces).
fn text_of(selector: &str) -> String {
    format!("document.querySelector('{selector}')?.textContent.replace(/\\s/g, '') ?? null")
}

async fn go(b: &mut Browser, tab: u64, page: &str) {
    b.eval(tab, &format!("location.hash = '#{page}'")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[allow(clippy::too_many_lines)] // one walk through every page reads best in one piece
async fn the_dashboard_shows_the_running_swarm_on_every_page() {
    let shots = screenshots();
    let mut up = Up::start().await;
    let demo = up.demo().await;
    let mut b = Browser::launch();
    let tab = b.open(&up.url("swarm"));

    // Swarm: the numbers of SwarmStatus, and the live stream is open.
    let st = up.client.get_swarm_status(pb::GetSwarmStatusRequest {}).await.expect("status").into_inner();
    let want = Value::String(st.tasks_verified.to_string());
    b.wait_eval(tab, "verified tasks", &text_of("[data-stat=tasks_verified]"), |v| *v == want).await;
    for (stat, value) in [("workers", u64::from(st.workers)), ("admitted", u64::from(st.workers_admitted))] {
        let want = Value::String(value.to_string());
        b.wait_eval(tab, stat, &text_of(&format!("[data-stat={stat}]")), |v| *v == want).await;
    }
    b.wait_eval(tab, "live stream", "document.querySelector('.live.on') !== null", |v| *v == true).await;
    b.screenshot(tab, &shots.join("swarm.png")).await;

    // The live chart moves as tasks are verified.
    let k = KernelSpec::Sha256(Sha256Params { count: 1, message_len: 64 });
    let tasks: Vec<_> = (0..400).map(|i| (k.clone(), k.seeded_inputs(i))).collect();
    let mut c = up.client.clone();
    let job = common::submit(&mut c, "sha256 for the chart", 2, &tasks).await;
    common::wait_finished(&mut c, &job, 120).await;
    let peak = b
        .wait_eval(
            tab,
            "chart peak",
            "Number(document.querySelector('.chart-scale').textContent.match(/peak (\\d+)/)[1])",
            |v| v.as_u64() > Some(0),
        )
        .await;
    let points: String =
        serde_json::from_value(b.eval(tab, "document.querySelector('.chart polyline').getAttribute('points')").await)
            .expect("points");
    assert!(points.split(' ').any(|p| !p.ends_with(",120.0")), "the line leaves the baseline (peak {peak}): {points}");
    b.wait_eval(tab, "feed", "document.querySelector('.feed').textContent.includes('task_verified')", |v| *v == true)
        .await;
    b.screenshot(tab, &shots.join("swarm-live.png")).await;

    // Workers: one row per worker, tasks done as ListWorkers says.
    go(&mut b, tab, "workers").await;
    let workers =
        up.client.list_workers(pb::ListWorkersRequest::default()).await.expect("workers").into_inner().workers;
    let want: serde_json::Map<String, Value> =
        workers.iter().map(|w| (w.id.clone(), Value::String(w.agreed.to_string()))).collect();
    let rows = "Object.fromEntries([...document.querySelectorAll('tr[data-worker]')].map(r => [r.dataset.worker, r.querySelector('[data-col=done]').textContent]))";
    b.wait_eval(tab, "worker rows", rows, |v| v.as_object() == Some(&want)).await;
    // Accuracy of the open epoch: every local worker agreed on every demo tile.
    let accuracy = "Object.fromEntries([...document.querySelectorAll('tr[data-worker]')].map(r => [r.dataset.worker, r.querySelector('[data-col=accuracy]').textContent]))";
    let shown = b.eval(tab, accuracy).await;
    for w in &workers {
        assert_eq!(w.epoch_accuracy_ppm, Some(1_000_000), "{w:?}");
        assert_eq!(shown[&w.id], "100.0 %", "{shown}");
    }
    b.screenshot(tab, &shots.join("workers.png")).await;

    // Jobs: the demo's image is assembled from its 64 verified tiles.
    go(&mut b, tab, "jobs").await;
    b.wait_eval(tab, "job list", &format!("document.querySelector('[data-job=\"{}\"]') !== null", demo.job_id), |v| {
        *v == true
    })
    .await;
    b.eval(tab, &format!("document.querySelector('[data-job=\"{}\"]').click()", demo.job_id)).await;
    let total = Value::String(demo.tasks.to_string());
    b.wait_eval(tab, "tiles drawn", "document.querySelector('.mandelbrot canvas').dataset.tiles", |v| *v == total)
        .await;
    b.screenshot(tab, &shots.join("jobs.png")).await;
    // A job nobody here may run (tier 3): its tasks are listed as pending.
    let waits = {
        use pb::submit_job_request::Part;
        let k = KernelSpec::Sha256(Sha256Params { count: 1, message_len: 8 });
        let header = pb::JobHeader { name: "waits".into(), min_tier: 3, ..Default::default() };
        let mut msgs = vec![pb::SubmitJobRequest { part: Some(Part::Header(header)) }];
        for i in 0..3 {
            let inputs = k.seeded_inputs(i).into_iter().map(bytes::Bytes::from).collect();
            let task = pb::Task { kernel: Some(shoal_native::grpc::kernel_to_pb(&k)), inputs, parts: vec![] };
            msgs.push(pb::SubmitJobRequest { part: Some(Part::Task(task)) });
        }
        up.client.submit_job(tokio_stream::iter(msgs)).await.expect("accepted").into_inner().job_id
    };
    let listed = format!("document.querySelector('[data-job=\"{waits}\"]') !== null");
    b.wait_eval(tab, "waiting job listed", &listed, |v| *v == true).await;
    b.eval(tab, &format!("document.querySelector('[data-job=\"{waits}\"]').click()")).await;
    let pending = "document.querySelectorAll('table.pending tr[data-pending]').length";
    b.wait_eval(tab, "pending tasks shown", pending, |v| *v == 3).await;
    up.client.cancel_job(pb::CancelJobRequest { job_id: waits }).await.expect("cancelled");

    // Epochs: settle one, and the payout table shows the exact base units.
    let closed = up.client.close_epoch(pb::CloseEpochRequest {}).await.expect("close epoch").into_inner();
    let last = closed.epoch.expect("an epoch");
    assert!(!last.payouts.is_empty(), "the demo's workers are paid");
    go(&mut b, tab, "epochs").await;
    let want: serde_json::Map<String, Value> =
        last.payouts.iter().map(|p| (p.worker.clone(), Value::String(p.amount.clone()))).collect();
    let payouts = format!(
        "Object.fromEntries([...document.querySelectorAll('[data-epoch=\"{}\"] tr[data-payout]')].map(r => [r.dataset.payout, r.querySelector('[data-col=base]').textContent]))",
        last.epoch
    );
    b.wait_eval(tab, "payouts", &payouts, |v| v.as_object() == Some(&want)).await;
    b.screenshot(tab, &shots.join("epochs.png")).await;

    // The settlement consensus agreed that epoch's digest; the Swarm page draws the machine's state on its diagram.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let state = loop {
        let s = up.client.get_consensus(pb::GetConsensusRequest {}).await.expect("consensus").into_inner();
        if let Some(a) = s.agreed.iter().find(|a| a.epoch == last.epoch) {
            assert_eq!(a.digest, last.digest);
            break s.state;
        }
        assert!(tokio::time::Instant::now() < deadline, "epoch {} not agreed: {s:?}", last.epoch);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    go(&mut b, tab, "swarm").await;
    let want = Value::String(last.epoch.to_string());
    b.wait_eval(
        tab,
        "agreed epoch shown",
        "document.querySelector('[data-consensus-agreed]')?.dataset.consensusAgreed ?? null",
        |v| *v == want,
    )
    .await;
    let drawn = b.eval(tab, "[document.querySelectorAll('svg.consensus g.node').length, document.querySelectorAll('svg.consensus line').length, document.querySelector('svg.consensus g.node.current')?.dataset.state ?? null]").await;
    assert_eq!(drawn[0], 11, "every state drawn: {drawn}");
    assert!(drawn[1].as_u64() > Some(10), "its transitions drawn: {drawn}");
    assert!(drawn[2].is_string(), "the current state is lit ({state} a moment ago): {drawn}");
    // Its statistics: rounds agreed, and time per state (the API's and the page's).
    let s = up.client.get_consensus(pb::GetConsensusRequest {}).await.expect("consensus").into_inner();
    assert!(s.rounds >= 1 && s.time_per_state.len() == 11, "{s:?}");
    let entered: u64 = s.time_per_state.iter().map(|t| t.entries).sum();
    assert!(entered > s.transitions, "the start entered one state, each transition another: {s:?}");
    let rows = b.eval(tab, "document.querySelectorAll('table.state-times tr[data-state-time]').length").await;
    assert!(rows.as_u64() > Some(3), "the states it entered are listed: {rows}");
    b.screenshot(tab, &shots.join("swarm-consensus.png")).await;

    // Contribute: one button makes this tab a worker; the Workers page lists
    // it. The wait is for admission: tier 0 is a worker still being
    // benchmarked (waiting for '—' alone raced the benchmark under load).
    go(&mut b, tab, "contribute").await;
    b.eval(tab, "document.querySelector('#start').click()").await;
    let id = b
        .wait_eval(tab, "the tab joins", "document.querySelector('#phase').textContent === 'working' && !['—', '0'].includes(document.querySelector('#tier').textContent) ? document.querySelector('#worker-id').textContent : null", Value::is_string)
        .await;
    let id = id.as_str().expect("id").to_owned();
    let listed = up.client.list_workers(pb::ListWorkersRequest::default()).await.expect("workers").into_inner().workers;
    let me = listed.iter().find(|w| w.id == id).unwrap_or_else(|| panic!("{id} not in {listed:?}"));
    assert_eq!(me.backend, "BrowserWebGpu");
    assert!(me.tier > 0 && me.connected, "{me:?}");
    let want = Value::String(me.tier.to_string());
    b.wait_eval(tab, "tier shown", &text_of("#tier"), |v| *v == want).await;
    b.screenshot(tab, &shots.join("contribute.png")).await;
    go(&mut b, tab, "workers").await;
    b.wait_eval(
        tab,
        "the tab in the table",
        &format!("document.querySelector('tr[data-worker=\"{id}\"]') !== null"),
        |v| *v == true,
    )
    .await;

    // A phone-width screen: nothing wider than the screen.
    b.viewport(tab, 390, 844).await;
    go(&mut b, tab, "swarm").await;
    b.wait_eval(tab, "fits a phone", "document.documentElement.scrollWidth <= window.innerWidth + 1", |v| *v == true)
        .await;
    b.screenshot(tab, &shots.join("swarm-phone.png")).await;

    // The coordinator goes away: the page says so.
    drop(up.child.take());
    b.wait_eval(tab, "unreachable shown", "document.querySelector('.live').textContent === 'offline' && (document.querySelector('[role=alert]')?.textContent ?? '').includes('unreachable')", |v| *v == true).await;
    b.screenshot(tab, &shots.join("unreachable.png")).await;
    b.command("quit");
    println!("screenshots in {}", shots.display());
}

/// A coordinator that wants a token: the dashboard asks for one, keeps it
/// for the tab's session only (never in the URL), reads with it, asks again
/// once it is revoked, and forgets it when told.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_asks_for_a_token_and_keeps_it_for_the_tab() {
    const ADMIN: &str = "dashboard-admin-token-for-this-test";
    let up = Up::start_with(&["--workers", "1", "--no-demo", "--set", &format!("server.api_token=\"{ADMIN}\"")]).await;
    let channel = shoal_native::grpc::channel(&format!("http://127.0.0.1:{}", up.grpc), None).await.expect("channel");
    let mut admin =
        ShoalServiceClient::with_interceptor(channel, shoal_native::grpc::WithToken::new(ADMIN).expect("ascii"));
    let created = admin
        .create_token(pb::CreateTokenRequest { name: "viewer".into(), role: pb::Role::Read.into() })
        .await
        .expect("token made")
        .into_inner();
    served_from_the_binary(up.http).await;
    let mut b = Browser::launch();
    let tab = b.open(&up.url("swarm"));
    let prompt = "document.querySelector('#token-form label')?.textContent ?? null";
    let why = b.wait_eval(tab, "the token prompt", prompt, Value::is_string).await;
    assert!(why.as_str().is_some_and(|w| w.contains("needs an API token")), "{why}");
    b.screenshot(tab, &screenshots().join("token-prompt.png")).await;

    // A wrong token: asked again, saying why.
    let type_token = |t: &str| {
        format!("(() => {{ document.querySelector('#api-token').value = '{t}'; document.querySelector('#token-form').requestSubmit(); return true; }})()")
    };
    b.eval(tab, &type_token("shoal_api_wrong")).await;
    b.wait_eval(tab, "a wrong token refused", prompt, |v| v.as_str().is_some_and(|w| w.contains("unknown API token")))
        .await;

    // The read token: the swarm's numbers, the live stream, no prompt.
    b.eval(tab, &type_token(&created.secret)).await;
    b.wait_eval(tab, "workers shown", &text_of("[data-stat=workers]"), |v| *v == "1").await;
    b.wait_eval(
        tab,
        "live stream",
        "document.querySelector('.live.on') !== null && document.querySelector('#token-form') === null",
        |v| *v == true,
    )
    .await;
    let kept = b.eval(tab, "[location.href, sessionStorage.getItem('shoal-api-token'), localStorage.length]").await;
    assert!(!kept[0].as_str().expect("url").contains(&created.secret), "the token is never in the URL: {kept}");
    assert_eq!(kept[1], Value::String(created.secret.clone()), "kept for the tab's session: {kept}");
    assert_eq!(kept[2], 0, "nothing outlives the session: {kept}");

    // Revoked: the next refresh asks again.
    admin.revoke_token(pb::RevokeTokenRequest { name_or_id: "viewer".into() }).await.expect("revoked");
    b.wait_eval(tab, "a revoked token refused", prompt, |v| v.as_str().is_some_and(|w| w.contains("revoked"))).await;
    b.eval(tab, "document.querySelector('#forget-token').click()").await;
    b.wait_eval(tab, "forgotten", "sessionStorage.getItem('shoal-api-token')", Value::is_null).await;
    b.command("quit");
}

/// The site as the binary serves it: the page, its wasm as
/// `application/wasm` kept for a year under its hashed name, gzip when
/// asked; a missing asset is a 404, not the page.
async fn served_from_the_binary(http: u16) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn head(http: u16, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", http)).await.expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.expect("read");
        let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(got.len());
        String::from_utf8_lossy(&got[..end]).to_ascii_lowercase()
    }
    let page = head(http, "/").await;
    assert!(page.starts_with("http/1.1 200") && page.contains("content-type: text/html"), "{page}");
    let wasm = shoal_native::site::embedded_files()
        .iter()
        .map(|(name, _)| *name)
        .find(|n| n.starts_with("shoal-ui-") && std::path::Path::new(n).extension().is_some_and(|e| e == "wasm"))
        .expect("the dashboard's wasm is embedded");
    let got = head(http, &format!("/{wasm}")).await;
    assert!(got.contains("content-type: application/wasm") && got.contains("immutable"), "{got}");
    assert!(got.contains("content-encoding: gzip"), "{got}");
    assert!(head(http, "/worker.html").await.starts_with("http/1.1 200"), "the worker page too");
    assert!(head(http, "/no-such-file.js").await.starts_with("http/1.1 404"));
}

/// The dashboard's budgets (not part of the suite: `cargo xtask bench
/// --dashboard`): bytes transferred for the first load (compressed, as
/// served), time to first render and to the first data, and the CPU an
/// idle open dashboard uses over a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: cargo xtask bench --dashboard"]
async fn dashboard_budgets() {
    let mut up = Up::start().await;
    up.demo().await;
    let mut b = Browser::launch();
    let tab = b.open(&up.url("swarm"));
    b.wait_eval(tab, "first data", "performance.getEntriesByName('shoal-first-data').length", |v| {
        v.as_u64() == Some(1)
    })
    .await;
    let load = b
        .eval(
            tab,
            "(() => { const n = performance.getEntriesByType('navigation')[0]; const r = performance.getEntriesByType('resource'); return { transferred: n.transferSize + r.reduce((s, e) => s + e.transferSize, 0), decoded: n.decodedBodySize + r.reduce((s, e) => s + e.decodedBodySize, 0), files: r.map(e => [e.name.split('/').pop(), e.transferSize, e.decodedBodySize]), fcp: performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null, data: performance.getEntriesByName('shoal-first-data')[0].startTime }; })()",
        )
        .await;
    // Idle: the demo is done, nothing happens; one minute of CPU time.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = b.metrics(tab).await;
    tokio::time::sleep(Duration::from_mins(1)).await;
    let after = b.metrics(tab).await;
    let cpu = |k: &str| after[k].as_f64().unwrap_or(0.0) - before[k].as_f64().unwrap_or(0.0);
    let kib = |v: &Value| v.as_f64().unwrap_or(0.0) / 1024.0;
    println!("\n| budget | measured | target |\n|---|---|---|");
    println!(
        "| first load transferred (HTML + JS + wasm + CSS, gzip as served) | {:.0} KiB ({:.0} KiB decoded) | ≤ 1 MB |",
        kib(&load["transferred"]),
        kib(&load["decoded"])
    );
    println!(
        "| first contentful paint, headless Chromium, loopback | {:.0} ms | — |",
        load["fcp"].as_f64().unwrap_or(f64::NAN)
    );
    println!(
        "| first data on screen (wasm loaded, 6 gRPC-web calls answered) | {:.0} ms | — |",
        load["data"].as_f64().unwrap_or(f64::NAN)
    );
    println!(
        "| idle open dashboard, CPU over 60 s (renderer main thread) | {:.2} % ({:.0} ms task time, {:.0} ms script) | — |",
        cpu("TaskDuration") / 60.0 * 100.0,
        cpu("TaskDuration") * 1000.0,
        cpu("ScriptDuration") * 1000.0
    );
    println!("files: {}", load["files"]);
    b.command("quit");
}

/// One figure of `/metrics`: the sum of a metric's samples whose line
/// starts with `name` (labels included in `name` when given).
fn scraped(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn scrape(http: u16) -> String {
    common::get_text(&format!("http://127.0.0.1:{http}/metrics")).await
}

/// A worker task of this process.
type WorkerTask =
    tokio::task::JoinHandle<Result<shoal_native::worker::WorkerReport, shoal_native::worker::WorkerError>>;

/// `n` idle workers of this process connected to `up`, once all are
/// admitted; the sender stops them.
async fn idle_workers(up: &Up, n: usize) -> (tokio::sync::watch::Sender<bool>, Vec<WorkerTask>) {
    let secret = shoal_native::service::load_or_create_secret(up.data.path()).expect("the coordinator's secret");
    let (stop, rx) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    for i in 0..n {
        let id = shoal_core::WorkerId::new(format!("w{i:05}")).expect("id");
        let opts = shoal_native::worker::WorkerOptions {
            bind: None,
            url: format!("ws://127.0.0.1:{}/ws", up.http),
            ca: None,
            token: Some(shoal_core::auth::derive_token(&secret, &id)),
            identity: None,
            profile: None,
            worker_id: id,
            max_concurrent: 1,
            cache_bytes: shoal_native::worker::DEFAULT_CACHE_BYTES,
            cache_dir: None,
            behaviour: shoal_native::worker::Behaviour::Honest,
            reconnect: false,
            executor: shoal_native::worker::Executor::Cpu,
            seed: i as u64,
        };
        workers.push(tokio::spawn(shoal_native::worker::run(opts, rx.clone())));
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut c = up.client.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_mins(3);
    loop {
        let s = c.get_swarm_status(pb::GetSwarmStatusRequest {}).await.expect("status").into_inner();
        if s.workers_admitted as usize >= n {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {} of {n} workers admitted", s.workers_admitted);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    (stop, workers)
}

/// The dashboard with 10 000 connected workers (not part of the suite:
/// `cargo xtask bench --dashboard`): an open dashboard's renderer CPU on
/// the Workers and Swarm pages, and the coordinator's engine-thread time
/// spent on the queries it makes, over a minute each; and one page of
/// `ListWorkers` at that size.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: cargo xtask bench --dashboard"]
async fn dashboard_budgets_at_10000_workers() {
    const N: usize = 10_000;
    let up = Up::start_with(&[
        "--workers",
        "0",
        "--no-demo",
        "--set",
        "coordinator.max_workers=20000",
        "--set",
        "server.max_connections=20000",
        "--set",
        "server.max_connections_per_origin=20000",
        "--set",
        "coordinator.distinct_origins=false",
        "--set",
        "coordinator.profile.benchmark_size=4",
        "--set",
        "coordinator.profile.benchmark_max_size=4",
        "--set",
        "coordinator.profile.min_mflops=0",
    ])
    .await;
    let (stop, workers) = idle_workers(&up, N).await;
    let mut c = up.client.clone();
    // A scrape refreshes the gauges with a query of its own (timed too):
    // two scrapes in a row measure it, to take it out of the figures below.
    let first = scrape(up.http).await;
    let second = scrape(up.http).await;
    let query_ms = |a: &str, b: &str| {
        (scraped(a, "shoal_engine_query_seconds_sum") - scraped(b, "shoal_engine_query_seconds_sum")) * 1000.0
    };
    let queries = |a: &str, b: &str| {
        scraped(a, "shoal_engine_query_seconds_count") - scraped(b, "shoal_engine_query_seconds_count")
    };
    let scrape_ms = query_ms(&second, &first);
    // One page of workers, by verified work: its engine-thread time.
    let before = scrape(up.http).await;
    for _ in 0..20 {
        let request = pb::ListWorkersRequest {
            page_size: 50,
            order_by: pb::WorkerOrder::Agreed.into(),
            descending: true,
            ..Default::default()
        };
        let page = c.list_workers(request).await.expect("a page").into_inner();
        assert_eq!((page.workers.len(), page.total_size), (50, N as u32));
    }
    let after = scrape(up.http).await;
    let per_page = (query_ms(&after, &before) - scrape_ms) / (queries(&after, &before) - 1.0);

    let mut b = Browser::launch();
    let mut rows = Vec::new();
    for page in ["workers", "swarm"] {
        let tab = b.open(&up.url(page));
        b.wait_eval(tab, "first data", "performance.getEntriesByName('shoal-first-data').length", |v| {
            v.as_u64() == Some(1)
        })
        .await;
        if page == "workers" {
            b.wait_eval(tab, "a page of rows", "document.querySelectorAll('tr[data-worker]').length", |v| {
                v.as_u64() == Some(50)
            })
            .await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (cpu_before, metrics_before) = (b.metrics(tab).await, scrape(up.http).await);
        tokio::time::sleep(Duration::from_mins(1)).await;
        let (cpu_after, metrics_after) = (b.metrics(tab).await, scrape(up.http).await);
        let task =
            cpu_after["TaskDuration"].as_f64().unwrap_or(0.0) - cpu_before["TaskDuration"].as_f64().unwrap_or(0.0);
        rows.push(format!(
            "| {page} page open, {N} workers connected: renderer CPU over 60 s / engine-thread time on queries | {:.2} % ({:.0} ms of tasks) / {:.1} ms in {:.0} queries | — |",
            task / 60.0 * 100.0,
            task * 1000.0,
            query_ms(&metrics_after, &metrics_before) - scrape_ms,
            queries(&metrics_after, &metrics_before) - 1.0,
        ));
        b.command(&format!("close {tab}"));
    }
    println!("\n| budget | measured | target |\n|---|---|---|");
    println!("| one ListWorkers page (50 of {N}, by verified work), engine-thread time | {per_page:.2} ms | — |");
    println!("| one /metrics scrape's gauge refresh, {N} workers, engine-thread time | {scrape_ms:.2} ms | — |");
    for r in rows {
        println!("{r}");
    }
    b.command("quit");
    let _ = stop.send(true);
    for w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(1), w).await;
    }
}
