//! Shared pieces of the service tests: a coordinator on 127.0.0.1 with a
//! real storage file, native workers over real WebSockets, a gRPC client.

#![allow(dead_code, unreachable_pub)]

pub mod browser;

use std::path::Path;
use std::time::Duration;

use shoal_core::auth::derive_token;
use shoal_core::kernels::KernelSpec;
use shoal_core::WorkerId;
use shoal_native::grpc::pb::shoal_service_client::ShoalServiceClient;
use shoal_native::grpc::{kernel_to_pb, pb};
use shoal_native::worker::{self, Behaviour, WorkerOptions, WorkerReport};
use shoal_native::{Service, ShoalConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A configuration for tests: ephemeral ports, storage in `data`, fast
/// timeouts, a tiny admission benchmark (debug builds are slow), and no
/// distinct-origin rule (every worker is on 127.0.0.1).
pub fn test_config(data: &Path) -> ShoalConfig {
    let mut cfg = ShoalConfig::default();
    cfg.server.http = "127.0.0.1:0".parse().expect("addr");
    cfg.server.grpc = "127.0.0.1:0".parse().expect("addr");
    data.clone_into(&mut cfg.server.data);
    cfg.server.shutdown_timeout_ms = 2_000;
    let c = &mut cfg.coordinator;
    c.distinct_origins = false;
    c.profile.benchmark_size = 64;
    c.profile.benchmark_max_size = 64;
    c.profile.min_mflops = 1;
    c.ack_timeout = shoal_core::Millis(3_000);
    c.exec_timeout_floor = shoal_core::Millis(3_000);
    c.epoch.every = None;
    c.epoch.every_verified_tasks = Some(50);
    c.rewards.min_tasks = 1;
    c.max_workers = 2_000;
    cfg
}

/// A worker's name, stop switch and task.
pub type Running = (String, watch::Sender<bool>, JoinHandle<Result<WorkerReport, worker::WorkerError>>);

/// Running workers and the switch that stops them.
pub struct Workers {
    pub stop: watch::Sender<bool>,
    pub handles: Vec<Running>,
}

impl Workers {
    /// Starts `n` workers named `{prefix}{i}` with tokens from the service's secret.
    pub fn spawn(service: &Service, prefix: &str, n: usize, behaviour: Behaviour) -> Workers {
        let (stop, _) = watch::channel(false);
        let mut w = Workers { stop, handles: Vec::new() };
        w.add(service, prefix, n, behaviour);
        w
    }

    /// Adds `n` more.
    pub fn add(&mut self, service: &Service, prefix: &str, n: usize, behaviour: Behaviour) {
        self.add_on(service, prefix, n, behaviour, &shoal_native::worker::Executor::Cpu);
    }

    /// Adds `n` more running kernels on `executor`.
    pub fn add_on(
        &mut self,
        service: &Service,
        prefix: &str,
        n: usize,
        behaviour: Behaviour,
        executor: &shoal_native::worker::Executor,
    ) {
        for i in 0..n {
            let name = format!("{prefix}{i}");
            let id = WorkerId::new(name.clone()).expect("id");
            let opts = WorkerOptions {
                bind: None,
                url: service.worker_url(),
                ca: None,
                worker_id: id.clone(),
                token: Some(derive_token(&service.secret, &id)),
                identity: None,
                profile: None,
                max_concurrent: 2,
                cache_bytes: shoal_native::worker::DEFAULT_CACHE_BYTES,
                cache_dir: None,
                behaviour,
                reconnect: true,
                executor: executor.clone(),
                seed: i as u64 + 1,
            };
            let (own_stop, rx) = watch::channel(false);
            let handle = tokio::spawn(worker::run(opts, rx));
            self.handles.push((name, own_stop, handle));
        }
    }

    /// Stops one worker abruptly (its task is aborted: the socket just drops).
    pub fn kill(&mut self, name: &str) {
        if let Some(pos) = self.handles.iter().position(|(n, _, _)| n == name) {
            let (_, _, h) = self.handles.remove(pos);
            h.abort();
        }
    }

    /// Stops all and returns their reports.
    pub async fn stop_all(self) -> Vec<WorkerReport> {
        let mut out = Vec::new();
        for (_, stop, h) in self.handles {
            let _ = stop.send(true);
            if let Ok(Ok(Ok(r))) = tokio::time::timeout(Duration::from_secs(5), h).await {
                out.push(r);
            }
        }
        out
    }
}

/// A gRPC client of the service.
pub async fn client(service: &Service) -> ShoalServiceClient<tonic::transport::Channel> {
    ShoalServiceClient::connect(service.grpc_url()).await.expect("gRPC connects")
}

/// Submits a job of these tasks; returns its id.
pub async fn submit(
    client: &mut ShoalServiceClient<tonic::transport::Channel>,
    name: &str,
    redundancy: u32,
    tasks: &[(KernelSpec, Vec<Vec<u8>>)],
) -> String {
    submit_with(client, pb::JobHeader { redundancy, name: name.into(), ..Default::default() }, tasks).await
}

/// Submits a job with this header and these tasks; returns its id.
pub async fn submit_with(
    client: &mut ShoalServiceClient<tonic::transport::Channel>,
    header: pb::JobHeader,
    tasks: &[(KernelSpec, Vec<Vec<u8>>)],
) -> String {
    let mut msgs = vec![pb::SubmitJobRequest { part: Some(pb::submit_job_request::Part::Header(header)) }];
    for (k, inputs) in tasks {
        msgs.push(pb::SubmitJobRequest {
            part: Some(pb::submit_job_request::Part::Task(pb::Task {
                kernel: Some(kernel_to_pb(k)),
                inputs: inputs.iter().map(|i| bytes::Bytes::copy_from_slice(i)).collect(),
                parts: Vec::new(),
            })),
        });
    }
    client.submit_job(tokio_stream::iter(msgs)).await.expect("job accepted").into_inner().job_id
}

/// Waits until the job finished (or panics after `secs`).
pub async fn wait_finished(
    client: &mut ShoalServiceClient<tonic::transport::Channel>,
    job: &str,
    secs: u64,
) -> pb::Job {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let s = client
            .get_job(pb::GetJobRequest { job_id: job.into() })
            .await
            .expect("job known")
            .into_inner()
            .job
            .expect("a job");
        if s.finished {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "job {job} did not finish in {secs}s: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every outcome of a job.
pub async fn results(client: &mut ShoalServiceClient<tonic::transport::Channel>, job: &str) -> Vec<pb::TaskOutcome> {
    let mut s = client
        .stream_job_results(pb::StreamJobResultsRequest { job_id: job.into(), follow: false, omit_outputs: false })
        .await
        .expect("results")
        .into_inner();
    let mut out = Vec::new();
    while let Some(r) = s.message().await.expect("stream") {
        out.extend(r.outcome);
    }
    out
}

/// Every settled epoch, oldest first (walking `ListEpochs`' pages).
pub async fn all_epochs(client: &mut ShoalServiceClient<tonic::transport::Channel>) -> Vec<pb::Epoch> {
    let (mut all, mut page_token) = (Vec::new(), String::new());
    loop {
        let request = pb::ListEpochsRequest { page_size: 100, page_token };
        let r = client.list_epochs(request).await.expect("epochs").into_inner();
        all.extend(r.epochs);
        if r.next_page_token.is_empty() {
            all.reverse();
            return all;
        }
        page_token = r.next_page_token;
    }
}

/// Epochs without their settlement state (the settler's: it moves on its
/// own, and its files are beside the store), to compare what was paid.
pub fn without_settlement(epochs: &[pb::Epoch]) -> Vec<pb::Epoch> {
    epochs.iter().cloned().map(|e| pb::Epoch { settlement: String::new(), ..e }).collect()
}

/// Settles the open epoch, then every settled epoch, oldest first.
pub async fn close_epoch_all(client: &mut ShoalServiceClient<tonic::transport::Channel>) -> Vec<pb::Epoch> {
    client.close_epoch(pb::CloseEpochRequest {}).await.expect("epoch closed");
    all_epochs(client).await
}

/// The CPU reference of a task.
pub fn reference(kernel: &KernelSpec, inputs: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    kernel.run_cpu(&refs).expect("reference runs")
}

/// Whether outputs agree with the reference under the kernel's comparator.
pub fn agrees(kernel: &KernelSpec, got: &[impl AsRef<[u8]>], want: &[Vec<u8>]) -> bool {
    let g: Vec<&[u8]> = got.iter().map(AsRef::as_ref).collect();
    let w: Vec<&[u8]> = want.iter().map(Vec::as_slice).collect();
    kernel.comparator().agree(&g, &w)
}

/// Tasks of each kernel with seeded inputs.
pub fn mixed_tasks(seed: u64) -> Vec<(KernelSpec, Vec<Vec<u8>>)> {
    use shoal_core::kernels::{MandelbrotParams, MatmulParams, Sha256Params};
    let mut tasks = Vec::new();
    for i in 0..12u64 {
        let k = KernelSpec::Sha256(Sha256Params { count: 8, message_len: 64 });
        tasks.push((k.clone(), k.seeded_inputs(seed + i)));
    }
    for i in 0..4u64 {
        let k = KernelSpec::MatmulF32(MatmulParams { m: 24, n: 20, k: 16 });
        tasks.push((k.clone(), k.seeded_inputs(seed + 100 + i)));
    }
    for ty in 0..2 {
        for tx in 0..4 {
            let k = KernelSpec::Mandelbrot(MandelbrotParams::from_plane(
                16,
                16,
                -2.0 + f64::from(tx) * 0.75,
                -1.0 + f64::from(ty) * 1.0,
                0.75 / 16.0,
                64,
            ));
            tasks.push((k, vec![]));
        }
    }
    tasks
}

/// Waits until `n` workers are admitted.
pub async fn wait_admitted(client: &mut ShoalServiceClient<tonic::transport::Channel>, n: u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = client.get_swarm_status(pb::GetSwarmStatusRequest {}).await.expect("status").into_inner();
        if s.workers_admitted >= n {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {} of {n} workers admitted", s.workers_admitted);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A custom WGSL kernel that triples 64 u32 (exact comparator).
pub const TRIPLE: &str = r"
@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < arrayLength(&src)) { dst[id.x] = src[id.x] * 3u; }
}
";

/// A custom kernel of this WGSL over 256-byte input and output buffers.
pub fn triple(wgsl: &str) -> KernelSpec {
    use shoal_core::kernels::{Comparator, CustomBinding, CustomKernel, CustomRole};
    KernelSpec::Custom(CustomKernel {
        wgsl: wgsl.into(),
        entry_point: "main".into(),
        bindings: vec![
            CustomBinding { binding: 0, role: CustomRole::Input, len: 256 },
            CustomBinding { binding: 1, role: CustomRole::Output, len: 256 },
        ],
        workgroups: [1, 1, 1],
        comparator: Comparator::Exact,
        ops: 64,
    })
}

/// A data-plane WebSocket as a test client holds it.
pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A connection, with the challenge the coordinator opens it with.
pub async fn open_challenged(service: &Service) -> (Ws, [u8; 16]) {
    use futures_util::StreamExt;
    use shoal_core::wire::message::{MessageDecoder, WireLimits};
    use shoal_core::wire::{Envelope, Message};
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let mut ws = tokio_tungstenite::connect_async(service.worker_url()).await.expect("websocket connects").0;
    let mut dec = MessageDecoder::new(WireLimits::default()).expect("decoder");
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("challenged in time");
        if let Some(Ok(WsMessage::Binary(b))) = next {
            dec.push_bytes(b);
            if let Ok(Some(Envelope { message: Message::Challenge(c), .. })) = dec.next_envelope() {
                return (ws, c.nonce);
            }
        }
    }
}

pub async fn open(service: &Service) -> Ws {
    open_challenged(service).await.0
}

/// The value of one series in a Prometheus text rendering (0 if absent).
pub fn counter(metrics: &str, series: &str) -> f64 {
    metrics.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

/// A raw HTTP/1.1 GET of `path` with `extra` header lines (each ending in
/// CRLF): the whole response as text, the head in lower case first. Reads
/// until the server closes (10 s at most), or to the end of the head of a
/// `101 Switching Protocols` (the socket then stays open).
pub async fn http_get(addr: std::net::SocketAddr, path: &str, extra: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = vec![0u8; 16 * 1024];
        while let Ok(n @ 1..) = s.read(&mut chunk).await {
            buf.extend_from_slice(&chunk[..n]);
            if buf.starts_with(b"HTTP/1.1 101") && buf.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    match text.split_once("\r\n\r\n") {
        Some((head, body)) => format!("{}\r\n\r\n{body}", head.to_ascii_lowercase()),
        None => text.to_ascii_lowercase(),
    }
}

/// The status code of an [`http_get`] answer.
pub fn status_of(response: &str) -> u16 {
    response.get(9..12).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("not HTTP: {response}"))
}

/// The body of a plain HTTP/1.1 GET (200 expected), over a TCP socket.
pub async fn get_text(url: &str) -> String {
    // A plain HTTP/1.1 GET over a TCP socket: no client library needed.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut s = tokio::net::TcpStream::connect(host).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await.expect("in time").expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("http response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    }
}

/// A chunked HTTP body, joined.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// A JSON body of a plain HTTP/1.1 GET.
pub async fn get_json(url: &str) -> serde_json::Value {
    serde_json::from_str(&get_text(url).await).expect("json")
}

/// A matmul job over one shared 256×256 matrix: `n` tasks of an 8-row
/// slice each, the matrix sent once in the stream.
/// Tasks as the CPU reference runs them: a kernel and every input each.
pub type RefTasks = Vec<(KernelSpec, Vec<Vec<u8>>)>;

pub fn shared_matmul_job(n: usize) -> (Vec<pb::SubmitJobRequest>, RefTasks) {
    use pb::submit_job_request::Part;
    use pb::task_input::Source;
    let kernel = KernelSpec::MatmulF32(shoal_core::kernels::MatmulParams { m: 8, n: 256, k: 256 });
    let floats = |seed: u64, count: usize| -> Vec<u8> {
        let mut rng = shoal_core::rng::SplitMix64::new(seed);
        (0..count).flat_map(|_| ((rng.below(2000) as f32 - 1000.0) / 500.0).to_le_bytes()).collect()
    };
    let model = floats(7, 256 * 256);
    let header = pb::JobHeader { redundancy: 2, name: "shared model".into(), ..Default::default() };
    let mut msgs = vec![
        pb::SubmitJobRequest { part: Some(Part::Header(header)) },
        pb::SubmitJobRequest { part: Some(Part::Shared(pb::SharedInput { data: model.clone().into() })) },
    ];
    let mut tasks = Vec::new();
    for i in 0..n {
        let slice = floats(100 + i as u64, 8 * 256);
        let parts = vec![
            pb::TaskInput { source: Some(Source::Data(slice.clone().into())) },
            pb::TaskInput { source: Some(Source::Shared(0)) },
        ];
        let task = pb::Task { kernel: Some(shoal_native::grpc::kernel_to_pb(&kernel)), inputs: vec![], parts };
        msgs.push(pb::SubmitJobRequest { part: Some(Part::Task(task)) });
        tasks.push((kernel.clone(), vec![slice, model.clone()]));
    }
    (msgs, tasks)
}

/// Runs `shared_matmul_job(n)` at redundancy 1 to its end; returns the
/// swarm's counters after it.
pub async fn run_shared_job(
    c: &mut ShoalServiceClient<tonic::transport::Channel>,
    n: usize,
) -> pb::GetSwarmStatusResponse {
    let (mut msgs, _) = shared_matmul_job(n);
    if let Some(pb::submit_job_request::Part::Header(h)) = &mut msgs[0].part {
        h.redundancy = 1;
    }
    let job = c.submit_job(tokio_stream::iter(msgs)).await.expect("accepted").into_inner().job_id;
    assert_eq!(wait_finished(c, &job, 120).await.verified, n as u32);
    c.get_swarm_status(pb::GetSwarmStatusRequest {}).await.expect("status").into_inner()
}
