//! Tabs of one headless Chromium, driven by `tests/browser/tabs.mjs` through
//! Playwright: the browser tests' hands and eyes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use super::ChildGuard;

/// The built site the browser tests serve (`SHOAL_WEB_DIST`: trunk output
/// plus the worker's files), checked to hold `file`.
pub fn site(file: &str) -> PathBuf {
    let dist = PathBuf::from(std::env::var("SHOAL_WEB_DIST").unwrap_or_else(|_| {
        panic!("SHOAL_WEB_DIST is not set: it must name the built site (`cargo xtask test` builds it)")
    }));
    assert!(dist.join(file).is_file(), "{} holds no {file} (see `cargo xtask test`)", dist.display());
    dist
}

/// Tabs of one headless Chromium, driven by `tests/browser/tabs.mjs`.
pub struct Browser {
    _child: ChildGuard,
    stdin: ChildStdin,
    lines: mpsc::Receiver<Value>,
    /// The last status each tab posted.
    pub status: HashMap<u64, Value>,
    /// Everything else the driver said (errors, console), for failure messages.
    pub log: Vec<String>,
    /// Answers to commands (eval, screenshot, metrics…), in order.
    answers: std::collections::VecDeque<Value>,
    /// Tabs opened so far (the driver numbers them from 0).
    opened: u64,
}

impl Browser {
    pub fn launch() -> Browser {
        Browser::launch_with(&[])
    }

    /// Chromium with these flags too.
    pub fn launch_with(flags: &[String]) -> Browser {
        let node_path = std::env::var("SHOAL_NODE_PATH").unwrap_or_else(|_| {
            panic!("SHOAL_NODE_PATH is not set: it must name a node_modules folder with playwright-core (`cargo xtask test` installs it)")
        });
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser/tabs.mjs");
        let mut child = Command::new(std::env::var("SHOAL_NODE").unwrap_or_else(|_| "node".into()))
            .arg(script)
            .env("NODE_PATH", node_path)
            .env("SHOAL_CHROMIUM_ARGS", serde_json::to_string(flags).expect("flags as JSON"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs the browser driver");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Browser {
            _child: ChildGuard(child),
            stdin,
            lines,
            status: HashMap::new(),
            log: Vec::new(),
            answers: std::collections::VecDeque::new(),
            opened: 0,
        }
    }

    pub fn command(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("the browser driver takes commands");
    }

    /// Reads what the driver said so far.
    pub fn drain(&mut self) {
        while let Ok(v) = self.lines.try_recv() {
            match (v["tab"].as_u64(), v.get("status")) {
                (Some(tab), Some(s)) => {
                    self.status.insert(tab, s.clone());
                }
                _ if ["eval", "screenshot", "viewport", "metrics", "clicked"].iter().any(|k| v.get(k).is_some()) => {
                    self.answers.push_back(v);
                }
                _ if v.get("error").is_some() && v.get("tab").is_none() => {
                    self.log.push(v.to_string());
                    self.answers.push_back(v);
                }
                _ => self.log.push(v.to_string()),
            }
        }
    }

    /// Waits until tab `tab`'s status satisfies `pred`; returns it.
    pub async fn wait_tab(&mut self, tab: u64, what: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            self.drain();
            if let Some(s) = self.status.get(&tab).filter(|s| pred(s)) {
                return s.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "tab {tab}: {what} not within {secs} s; last status {:?}; driver said {:?}",
                self.status.get(&tab),
                self.log
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Opens a worker tab on `url`; returns its number.
    pub fn open(&mut self, url: &str) -> u64 {
        self.command(&format!("open {url}"));
        self.opened += 1;
        self.opened - 1
    }

    /// Opens a tab in tab `of`'s browser context (the same profile: its
    /// storage); returns its number.
    pub fn open_in(&mut self, of: u64, url: &str) -> u64 {
        self.command(&format!("openin {of} {url}"));
        self.opened += 1;
        self.opened - 1
    }

    /// Clicks the element `selector` in a tab (as a user would).
    pub async fn click(&mut self, tab: u64, selector: &str) {
        self.ask(&format!("click {tab} {selector}")).await;
    }

    /// Waits until the coordinator has admitted the tab (benchmarked and
    /// tiered, not only greeted: a refused tab rejoins under a new guest
    /// id); returns its worker id.
    pub async fn admitted_id(
        &mut self,
        tab: u64,
        c: &mut shoal_native::grpc::pb::shoal_service_client::ShoalServiceClient<tonic::transport::Channel>,
    ) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_mins(2);
        loop {
            let s = self.wait_tab(tab, "joins", 90, |s| s["phase"] == "working" && s["worker_id"].is_string()).await;
            assert_eq!(s["device"]["backend"], "BrowserWebGpu", "the tab computes on WebGPU: {s}");
            let id = s["worker_id"].as_str().expect("id").to_owned();
            let workers = c
                .list_workers(shoal_native::grpc::pb::ListWorkersRequest::default())
                .await
                .expect("workers")
                .into_inner()
                .workers;
            if workers.iter().any(|w| w.id == id && w.connected && w.tier > 0) {
                return id;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "tab {tab} ({id}) never admitted; last status {s}; workers {workers:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Browser {
    /// Sends a command that answers, and waits for its answer.
    pub async fn ask(&mut self, line: &str) -> Value {
        self.command(line);
        let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
        loop {
            self.drain();
            if let Some(v) = self.answers.pop_front() {
                assert!(v.get("error").is_none(), "{line}: {v}");
                return v;
            }
            assert!(tokio::time::Instant::now() < deadline, "no answer to {line}; driver said {:?}", self.log);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Evaluates a JavaScript expression in a tab.
    pub async fn eval(&mut self, tab: u64, js: &str) -> Value {
        assert!(!js.contains('\n'), "one line of JavaScript");
        self.ask(&format!("eval {tab} {js}")).await["eval"].clone()
    }

    /// Waits until `js` evaluates to something `pred` accepts; returns it.
    pub async fn wait_eval(&mut self, tab: u64, what: &str, js: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            let v = self.eval(tab, js).await;
            if pred(&v) {
                return v;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what}: `{js}` is still {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a screenshot of a tab's whole page.
    pub async fn screenshot(&mut self, tab: u64, path: &std::path::Path) {
        self.ask(&format!("screenshot {tab} {}", path.display())).await;
    }

    /// Resizes a tab's viewport.
    pub async fn viewport(&mut self, tab: u64, width: u32, height: u32) {
        self.ask(&format!("viewport {tab} {width} {height}")).await;
    }

    /// Chromium's performance counters of a tab.
    pub async fn metrics(&mut self, tab: u64) -> Value {
        self.ask(&format!("metrics {tab}")).await["metrics"].clone()
    }
}
