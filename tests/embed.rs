//! The embed kit end to end: a blog served from a second origin embeds the
//! coordinator's `embed.js` with its payout address; nothing runs until the
//! visitor clicks "Allow"; then the tab (headless Chromium, WebGPU on
//! SwiftShader) joins as this browser's identity and verifies tasks. The
//! tab is closed and the blog reopened in the same browser profile: the
//! consent is remembered, the identity is the same and its credit carried
//! over, and the epoch's payout names the blog's address. On the way the
//! worker leaves while the page is hidden or the battery low, and a second
//! tab of the same browser waits for the first. Sites the
//! operator did not list are refused the worker connection, and the kit's
//! files carry CORS only for listed sites.
//!
//! Needs what tests/browser.rs needs (`SHOAL_WEB_DIST`, `SHOAL_NODE_PATH`).

mod common;

use std::time::Duration;

use common::browser::{site, Browser};
use common::*;
use shoal_core::kernels::{KernelSpec, Sha256Params};
use shoal_native::grpc::pb;
use shoal_native::worker::Behaviour;
use shoal_native::Service;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PAYOUT: &str = "blog-owner-7";

/// A blog's page embedding the kit of `coordinator` (`host:port`), and
/// reporting the kit's status on the console as the tab driver expects.
fn blog_page(coordinator: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=utf-8><title>A blog</title></head><body>\
         <h1>A blog about boats</h1><p>Posts.</p>\
         <script>window.fakeBattery = Object.assign(new EventTarget(), {{ level: 0.9, charging: false }}); \
         navigator.getBattery = () => Promise.resolve(window.fakeBattery);</script>\
         <script src=\"http://{coordinator}/embed.js\" data-payout=\"{PAYOUT}\" data-gpu-share=\"100\" async></script>\
         <script>const t = setInterval(() => {{ if (!window.shoal) return; clearInterval(t); \
         shoal.addEventListener('status', e => console.log('shoal-status ' + JSON.stringify(e.detail))); }}, 20);\
         </script></body></html>"
    )
}

/// Serves `page` (set once the coordinator's port is known) on every path
/// of a port of its own: the second origin.
async fn serve_blog(page: std::sync::Arc<std::sync::OnceLock<String>>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let page = page.get().cloned().unwrap_or_default();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    page.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(page.as_bytes()).await;
            });
        }
    });
    addr
}

async fn contributor(c: &mut ShoalClient, id: &str) -> pb::Contributor {
    c.get_contributor(pb::GetContributorRequest { key: id.to_owned() })
        .await
        .expect("known")
        .into_inner()
        .contributor
        .expect("a record")
}

type ShoalClient = pb::shoal_service_client::ShoalServiceClient<tonic::transport::Channel>;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blog_embeds_the_kit_and_its_visitor_keeps_identity_and_credit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.server.dist = site("embed.js");
    cfg.coordinator.identities = shoal_core::coordinator::IdentityPolicy::Open;
    // The blog listens first (the operator lists its origin); its page
    // names the coordinator once that listens.
    let page = std::sync::Arc::new(std::sync::OnceLock::new());
    let blog = serve_blog(page.clone()).await;
    let blog_origin = format!("http://{blog}");
    cfg.server.embed_origins = vec![blog_origin.clone()];
    let service = Service::start(cfg).await.expect("service starts");
    let http = service.http_addr;
    page.set(blog_page(&http.to_string())).expect("set once");
    let mut c = client(&service).await;

    // The kit's files carry CORS for the listed blog only; the worker
    // connection of an unlisted site is refused.
    let listed = http_get(http, "/embed.js", &format!("Origin: {blog_origin}\r\n")).await;
    assert!(listed.starts_with("http/1.1 200"), "{listed}");
    assert!(listed.contains(&format!("access-control-allow-origin: {blog_origin}")), "{listed}");
    assert!(listed.contains("cross-origin-resource-policy: cross-origin"), "{listed}");
    let other = http_get(http, "/shoal_web_bg.wasm", "Origin: http://evil.example\r\n").await;
    assert!(other.starts_with("http/1.1 200") && !other.contains("access-control-allow-origin"), "{other}");
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let refused = http_get(http, "/ws", &format!("{upgrade}Origin: http://evil.example\r\n")).await;
    assert!(refused.starts_with("http/1.1 403"), "an unlisted site's worker: {refused}");
    let taken = http_get(http, "/ws", &format!("{upgrade}Origin: {blog_origin}\r\n")).await;
    assert!(taken.starts_with("http/1.1 101"), "the listed blog's worker: {taken}");

    // A native worker to verify against (sha256 is bit-exact on WebGPU and the CPU).
    let _natives = Workers::spawn(&service, "native", 1, Behaviour::Honest);
    wait_admitted(&mut c, 1).await;

    let mut browser = Browser::launch();
    let page = format!("{blog_origin}/2026/11/boats.html");
    let tab = browser.open(&page);
    // Nothing runs before the visitor agrees.
    browser.wait_eval(tab, "the kit loads", "typeof window.shoal", |v| v == "object").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(browser.eval(tab, "window.shoal.status").await, serde_json::Value::Null, "no worker before consent");
    let workers = c.list_workers(pb::ListWorkersRequest::default()).await.expect("workers").into_inner().workers;
    assert_eq!(workers.len(), 1, "only the native worker: {workers:?}");

    browser.click(tab, "shoal-embed button.yes").await;
    let me = browser.admitted_id(tab, &mut c).await;
    let s = browser.status.get(&tab).cloned().expect("a status");
    assert!(me.starts_with("id-") && s["identity"] == me.as_str(), "the tab is this browser's identity: {s}");
    assert_eq!(s["identity_kept"], "webcrypto", "Chromium keeps a non-extractable Ed25519 key: {s}");

    // A good guest: it leaves while the page is hidden and comes back when
    // it is shown (the visitor switching tabs).
    let hide = "Object.defineProperty(document, 'visibilityState', { value: 'hidden', configurable: true }); \
                document.dispatchEvent(new Event('visibilitychange'))";
    browser.eval(tab, hide).await;
    browser.wait_tab(tab, "pauses while hidden", 30, |s| s["phase"] == "paused").await;
    let show = "Object.defineProperty(document, 'visibilityState', { value: 'visible', configurable: true }); \
                document.dispatchEvent(new Event('visibilitychange'))";
    browser.eval(tab, show).await;
    browser.wait_tab(tab, "works again when shown", 60, |s| s["phase"] == "working").await;
    assert_eq!(browser.admitted_id(tab, &mut c).await, me, "the same identity after the pause");
    // And while the battery is low and discharging (the page's battery is
    // a stand-in the test drives).
    browser.eval(tab, "fakeBattery.level = 0.1; fakeBattery.dispatchEvent(new Event('levelchange'))").await;
    browser.wait_tab(tab, "pauses on a low battery", 30, |s| s["phase"] == "paused").await;
    browser.eval(tab, "fakeBattery.charging = true; fakeBattery.dispatchEvent(new Event('chargingchange'))").await;
    browser.wait_tab(tab, "works again when charging", 60, |s| s["phase"] == "working").await;
    browser.admitted_id(tab, &mut c).await;

    let sha = KernelSpec::Sha256(Sha256Params { count: 40, message_len: 64 });
    let tasks: Vec<_> = (0..12u64).map(|i| (sha.clone(), sha.seeded_inputs(i))).collect();
    let job = submit(&mut c, "embedded", 2, &tasks).await;
    assert_eq!(wait_finished(&mut c, &job, 120).await.verified, tasks.len() as u32);
    let credit = contributor(&mut c, &me).await;
    assert!(credit.agreed > 0 && credit.connected, "the tab verified work: {credit:?}");
    assert_eq!(credit.payout_address, PAYOUT, "the blog's address, declared under the tab's key");

    // The visitor closes the tab and comes back in the same browser: no
    // question (the answer is remembered), the same identity, its credit.
    browser.command(&format!("closepage {tab}"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while contributor(&mut c, &me).await.connected {
        assert!(tokio::time::Instant::now() < deadline, "the closed tab is still connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = browser.open_in(tab, &page);
    assert_eq!(browser.admitted_id(again, &mut c).await, me, "the same browser is the same contributor");
    let back = contributor(&mut c, &me).await;
    assert!(back.agreed >= credit.agreed, "credit carried over: {back:?} after {credit:?}");

    // A second tab of the same browser waits (one identity, one
    // connection: they would replace each other), and takes over when the
    // first closes.
    let connections = browser.status[&again]["connections"].as_u64();
    let second = browser.open_in(again, &page);
    browser
        .wait_tab(second, "waits for the first tab", 60, |s| {
            s["last_reason"].as_str().is_some_and(|r| r.contains("another tab of this browser"))
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    browser.drain();
    assert_eq!(browser.status[&again]["phase"], "working", "the first tab keeps working");
    assert_eq!(browser.status[&again]["connections"].as_u64(), connections, "and is never replaced");
    browser.command(&format!("closepage {again}"));
    assert_eq!(browser.admitted_id(second, &mut c).await, me, "the waiting tab takes over as the same identity");

    // The epoch's payout names the blog's address.
    c.close_epoch(pb::CloseEpochRequest {}).await.expect("settled");
    let epochs = c.list_epochs(pb::ListEpochsRequest::default()).await.expect("epochs").into_inner();
    let paid = epochs.epochs.iter().flat_map(|e| &e.payouts).find(|p| p.worker == me).expect("the tab was paid");
    assert_eq!(paid.address, PAYOUT, "{paid:?}");
    assert!(paid.amount.parse::<u128>().expect("base units") > 0, "{paid:?}");
    // The tab is told: the epoch, its amount and its rank.
    let told = browser.wait_tab(second, "is told of its payout", 30, |s| s["last_payout"]["epoch"].is_u64()).await;
    assert_eq!(told["last_payout"]["amount"], paid.amount.as_str(), "{told}");

    browser.command("quit");
    service.shutdown().await.expect("clean shutdown");
}
