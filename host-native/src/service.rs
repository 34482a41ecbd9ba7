//! Starting and stopping the whole coordinator service.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use shoal_core::auth::MasterSecret;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::access::{Access, Anonymous};
use crate::config::ShoalConfig;
use crate::engine::{self, Command, EngineHandle, EngineSettings};
use crate::grpc::{pb, Authorize, ShoalService};
use crate::listener::{GuardedListener, SocketCount};
use crate::store::{RedbStore, StoreError};
use crate::ws::DataPlane;

/// The service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The worker secret is unusable.
    #[error("worker secret: {0}")]
    Secret(String),
    /// TLS is misconfigured.
    #[error("TLS: {0}")]
    Tls(String),
    /// A setting cannot be used.
    #[error("{0}")]
    Config(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServiceError {
    let what = what.into();
    move |source| ServiceError::Io { what, source }
}

/// Name of the worker secret file in the data folder.
pub const SECRET_FILE: &str = "worker.secret";
/// Name of the storage file in the data folder.
pub const STORE_FILE: &str = "shoal.redb";

/// Largest HTTP/2 frame a gRPC client may send (the protocol's default is
/// 16 KiB): a 1 MiB task input arrives in 4 frames instead of 64, each of
/// which costs a parse, a flow-control update and a wake-up. Not larger:
/// tonic moves what it already holds of the next message into a new buffer
/// when that message's header arrives, up to a frame's worth (1 MiB frames
/// measured worse than 256 KiB on the payload benchmark).
const GRPC_MAX_FRAME: u32 = 256 << 10;
/// HTTP/2 flow-control window of one gRPC stream (hyper's default is
/// 1 MiB): a client streaming a job's inputs does not wait for a window
/// update after each megabyte. What a stream may have buffered is bounded
/// by it (and by the connection window below).
const GRPC_STREAM_WINDOW: u32 = 8 << 20;
/// HTTP/2 flow-control window of one gRPC connection, all its streams
/// together: clients submitting several jobs at once over one connection.
const GRPC_CONNECTION_WINDOW: u32 = 16 << 20;

/// Loads the secret tokens are derived from, creating it on first start.
pub fn load_or_create_secret(data: &Path) -> Result<MasterSecret, ServiceError> {
    let key =
        crate::keyfile::load_or_create(&data.join(SECRET_FILE)).map_err(|e| ServiceError::Secret(e.to_string()))?;
    MasterSecret::new(key.to_vec()).map_err(|e| ServiceError::Secret(e.to_string()))
}

/// A running coordinator service.
pub struct Service {
    /// Where HTTP (and the workers' `/ws`) listens.
    pub http_addr: SocketAddr,
    /// Where gRPC and gRPC-web listen.
    pub grpc_addr: SocketAddr,
    /// Where the Pilot submission port listens, when it is on.
    pub pilot_addr: Option<SocketAddr>,
    /// The engine.
    pub engine: EngineHandle,
    /// The worker secret.
    pub secret: MasterSecret,
    /// What jobs being submitted hold now, against their limits.
    pub submit_limits: crate::grpc::SubmitLimits,
    /// Both listeners speak TLS.
    pub tls: bool,
    /// Where the dashboard and the worker page come from.
    pub site: crate::site::Site,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    engine_thread: Option<std::thread::JoinHandle<Result<(), StoreError>>>,
    shutdown_timeout: Duration,
}

impl Service {
    /// Opens storage, recovers, binds the ports and starts serving.
    pub async fn start(cfg: ShoalConfig) -> Result<Service, ServiceError> {
        crate::metrics::install();
        // TLS, CORS and proxies first: a broken configuration stops the start
        // before storage opens.
        let (http_tls, grpc_tls, acme) = match tls_setup(&cfg.server.tls, &cfg.server.data)? {
            Some((h, g, a)) => (Some(h), Some(g), a),
            None => (None, None, None),
        };
        let cors = crate::http::cors(&cfg.server.cors_origins).map_err(ServiceError::Config)?;
        let proxies = crate::proxy::TrustedProxies::parse(&cfg.server.trusted_proxies).map_err(ServiceError::Config)?;
        let tls = http_tls.is_some();
        let site = crate::site::Site::choose(&cfg.server.dist).map_err(ServiceError::Config)?;
        let keep_finished = cfg.retention.keep_finished().map_err(ServiceError::Config)?;
        open_api_check(&cfg.server)?;
        // The ports next: a port already taken stops the start before the
        // engine runs (nothing to undo).
        let http = crate::listener::bind(cfg.server.http).map_err(io(format!("binding {}", cfg.server.http)))?;
        let grpc = crate::listener::bind(cfg.server.grpc).map_err(io(format!("binding {}", cfg.server.grpc)))?;
        let data = &cfg.server.data;
        std::fs::create_dir_all(data).map_err(io(format!("creating {}", data.display())))?;
        let secret = load_or_create_secret(data)?;
        crate::backup::sweep_leftovers(data);
        let store_path = data.join(STORE_FILE);
        let store = tokio::task::spawn_blocking(move || RedbStore::open(&store_path))
            .await
            .map_err(|e| StoreError::Db(e.to_string()))??;
        let settings = EngineSettings {
            diff_retain: cfg.server.diff_retain,
            diff_ring: cfg.server.diff_ring,
            keep_finished,
            sweep_every: shoal_core::Millis(cfg.retention.sweep_every_ms),
        };
        let store: Arc<dyn crate::store::Store> = Arc::new(store);
        let access = Arc::new(Access::load(&store, &cfg.server.api_token, cfg.server.anonymous)?);
        let (engine, engine_thread) =
            engine::start(cfg.coordinator.clone(), Some(secret.clone()), store.clone(), settings)?;

        let http_addr = http.local_addr().map_err(io("local address"))?;
        let grpc_addr = grpc.local_addr().map_err(io("local address"))?;
        let (stop, stop_rx) = watch::channel(false);
        let (http_sockets, grpc_sockets) = socket_limits(cfg.server.max_sockets);
        let idle = Duration::from_millis(cfg.server.idle_timeout_ms.max(1));
        let http = GuardedListener::new(http, SocketCount::new(http_sockets), idle, "http");
        let grpc = GuardedListener::new(grpc, SocketCount::new(grpc_sockets), idle, "grpc");

        let plane =
            DataPlane::new(&cfg, engine.clone(), data.clone(), proxies.clone()).map_err(ServiceError::Config)?;
        let submit_limits =
            crate::grpc::SubmitLimits::new(cfg.server.max_receiving_bytes, cfg.server.max_submits_per_client);
        let webhook = Some(cfg.server.settlement_webhook.clone()).filter(|w| !w.is_empty());
        let settler =
            crate::settler::Settler { data: data.clone(), key: crate::settler::signing_key(&secret), webhook };
        let (consensus, consensus_task) =
            crate::settlement::spawn(engine.settlements(), stop_rx.clone(), Some(settler));
        let svc = pb::shoal_service_server::ShoalServiceServer::new(ShoalService::new(
            engine.clone(),
            consensus,
            cfg.coordinator.max_job_input_bytes,
            submit_limits.clone(),
            access.clone(),
            (Arc::downgrade(&store), data.clone()),
        ))
        .max_decoding_message_size(cfg.server.max_grpc_message)
        .max_encoding_message_size(cfg.server.max_grpc_message);
        let svc = tonic::service::interceptor::InterceptedService::new(svc, Authorize::new(access.clone()));
        // gRPC-web on the HTTP port too: the dashboard it serves calls the
        // API on its own origin (the gRPC port keeps native gRPC and CORS).
        let grpc_web = grpc_web_routes(svc.clone());
        let router = crate::http::router(plane, site.clone(), grpc_web, cors.clone(), &access);
        let http_options = crate::listener::HttpOptions {
            header_timeout: Duration::from_millis(cfg.server.header_timeout_ms.max(1)),
            tls: http_tls,
            proxies: proxies.clone(),
            proxy_protocol: cfg.server.proxy_protocol,
        };
        let http_task = tokio::spawn(crate::listener::serve_http(http, router, http_options, stop_rx.clone()));

        let header_timeout = Duration::from_millis(cfg.server.header_timeout_ms.max(1));
        let (health, health_task) = health_service(engine.clone(), stop_rx.clone());
        let grpc_task = spawn_grpc(grpc, grpc_tls, header_timeout, cors, svc, health, stop_rx.clone());
        let mut servers = vec![http_task, grpc_task, consensus_task, health_task];
        let pilot = crate::pilot::start(&cfg.server.pilot, data, engine.clone(), stop_rx.clone())
            .await
            .map_err(io("the Pilot port (server.pilot.listen)"))?;
        let pilot_addr = pilot.map(|(addr, task)| {
            servers.push(task);
            addr
        });
        servers.extend(acme.map(|a| tokio::spawn(a.run(stop_rx.clone()))));
        let scheme = if tls { "https" } else { "http" };
        tracing::info!(%http_addr, %grpc_addr, scheme, data = %data.display(), "coordinator serving");
        Ok(Service {
            http_addr,
            grpc_addr,
            pilot_addr,
            engine,
            secret,
            submit_limits,
            tls,
            site,
            stop,
            servers,
            engine_thread: Some(engine_thread),
            shutdown_timeout: Duration::from_millis(cfg.server.shutdown_timeout_ms),
        })
    }

    /// The URL workers connect to.
    pub fn worker_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/ws", self.http_addr)
    }

    /// The URL gRPC clients use.
    pub fn grpc_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.grpc_addr)
    }

    /// Stops accepting connections, tells every worker goodbye and closes
    /// it (their running work is re-queued at the next start: it was never
    /// acknowledged), makes the last batch durable, stops the engine, then
    /// waits for the servers to finish in-flight requests, bounded by the
    /// shutdown timeout.
    pub async fn shutdown(mut self) -> Result<(), ServiceError> {
        let _ = self.stop.send(true);
        let _ = self.engine.send(Command::Stop);
        let mut result: Result<(), ServiceError> = Ok(());
        if let Some(t) = self.engine_thread.take() {
            let r = tokio::task::spawn_blocking(move || t.join()).await;
            if let Ok(Ok(Err(e))) = r {
                result = Err(e.into());
            }
        }
        let servers = std::mem::take(&mut self.servers);
        if tokio::time::timeout(self.shutdown_timeout, async {
            for s in servers {
                let _ = s.await;
            }
        })
        .await
        .is_err()
        {
            tracing::warn!("servers still busy after the shutdown timeout; stopping anyway");
        }
        result?;
        tracing::info!("coordinator stopped");
        Ok(())
    }
}

/// Refuses to serve the whole API to the network without a token: the
/// gRPC port, and the HTTP port (gRPC-web), bound beyond loopback with
/// anonymous admin access (`server.anonymous` = `admin`, or `auto` with no
/// `server.api_token`) would let anyone submit WGSL, cancel jobs and close
/// epochs. `server.insecure` (`--insecure`) accepts it knowingly.
fn open_api_check(server: &crate::config::ServerConfig) -> Result<(), ServiceError> {
    let exposed: Vec<String> = [("gRPC", server.grpc), ("HTTP (gRPC-web)", server.http)]
        .iter()
        .filter(|(_, a)| !a.ip().is_loopback())
        .map(|(what, a)| format!("{what} on {a}"))
        .collect();
    if server.anonymous.resolve(!server.api_token.is_empty()) != Anonymous::Admin || exposed.is_empty() {
        return Ok(());
    }
    let ports = exposed.join(" and ");
    if server.insecure {
        tracing::warn!(%ports, "the API is open to the network without a token (server.insecure)");
        return Ok(());
    }
    Err(ServiceError::Config(format!(
        "refusing to start: {ports} would serve the whole API (submit, cancel, close epochs) to anyone, \
         without a token (server.anonymous is admin); set server.api_token (then make tokens with roles: \
         shoal token create) or a narrower server.anonymous, or pass --insecure (server.insecure = true) to accept it"
    )))
}

/// Serves the API (gRPC, and gRPC-web with CORS) on the guarded port until
/// `stop` turns true; with TLS, each connection's handshake runs in its own
/// task (a slow one holds up no other), bounded by `handshake`.
fn spawn_grpc(
    mut grpc: GuardedListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handshake: Duration,
    cors: tower_http::cors::CorsLayer,
    svc: tonic::service::interceptor::InterceptedService<
        pb::shoal_service_server::ShoalServiceServer<ShoalService>,
        Authorize,
    >,
    health: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let mut accepting = stop.clone();
    tokio::spawn(async move {
        loop {
            // Until the stop: then the port closes and the stream of
            // connections ends.
            let (io, _) = tokio::select! {
                accepted = grpc.accept() => accepted,
                _ = accepting.wait_for(|s| *s) => return,
            };
            let tx = tx.clone();
            match &tls {
                None => {
                    if tx.send(Ok::<_, std::io::Error>(crate::listener::MaybeTls::Plain(io))).await.is_err() {
                        return;
                    }
                }
                Some(tls) => {
                    let accept = tls.accept(io);
                    tokio::spawn(async move {
                        if let Ok(Ok(stream)) = tokio::time::timeout(handshake, accept).await {
                            let _ = tx.send(Ok(crate::listener::MaybeTls::Tls(Box::new(stream)))).await;
                        }
                    });
                }
            }
        }
    });
    let incoming = tokio_stream::wrappers::ReceiverStream::new(rx);
    tokio::spawn(async move {
        // Reflection v1 (grpcurl, current clients) and v1alpha (what
        // grpcio-reflection and older tools still speak).
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(crate::grpc::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let (reflection, reflection_alpha) = match (reflection().build_v1(), reflection().build_v1alpha()) {
            (Ok(v1), Ok(alpha)) => (v1, alpha),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "gRPC reflection could not be built");
                return;
            }
        };
        let r = tonic::transport::Server::builder()
            .accept_http1(true)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .max_frame_size(GRPC_MAX_FRAME)
            .initial_stream_window_size(GRPC_STREAM_WINDOW)
            .initial_connection_window_size(GRPC_CONNECTION_WINDOW)
            .layer(crate::grpc::CountCalls)
            .layer(cors)
            .layer(tonic_web::GrpcWebLayer::new())
            .add_service(svc)
            .add_service(health)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "gRPC server failed");
        }
    })
}

/// The control plane as gRPC-web routes for the HTTP port, counted.
fn grpc_web_routes(
    svc: tonic::service::interceptor::InterceptedService<
        pb::shoal_service_server::ShoalServiceServer<ShoalService>,
        Authorize,
    >,
) -> axum::Router {
    tonic::service::Routes::new(svc)
        .prepare()
        .into_axum_router()
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(crate::grpc::CountCalls)
}

/// `grpc.health.v1` for the whole server ("") and for `shoal.v1.ShoalService`:
/// SERVING while the engine runs, NOT_SERVING once it stopped (a storage
/// failure) or the service stops. Open to every caller, like the probes
/// that use it.
fn health_service(
    engine: EngineHandle,
    mut stop: watch::Receiver<bool>,
) -> (tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>, JoinHandle<()>) {
    let (reporter, server) = tonic_health::server::health_reporter();
    let task = tokio::spawn(async move {
        use tonic_health::ServingStatus;
        let set = |status: ServingStatus| {
            let reporter = reporter.clone();
            async move {
                reporter.set_service_status("", status).await;
                reporter.set_service_status("shoal.v1.ShoalService", status).await;
            }
        };
        set(ServingStatus::Serving).await;
        loop {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(500)) => {
                    if engine.is_stopped() {
                        break;
                    }
                }
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        set(ServingStatus::NotServing).await;
    });
    (server, task)
}

/// The TLS of both listeners when configured (rustls, one live
/// certificate: from the PEM files, or from ACME with its manager to run),
/// HTTP offering `http/1.1`, gRPC `h2` and `http/1.1` (gRPC-web).
fn tls_setup(
    settings: &crate::config::TlsSettings,
    data: &Path,
) -> Result<Option<(tokio_rustls::TlsAcceptor, tokio_rustls::TlsAcceptor, Option<crate::acme::Acme>)>, ServiceError> {
    if !settings.enabled().map_err(ServiceError::Tls)? {
        return Ok(None);
    }
    let tls = |e: crate::tls::TlsError| ServiceError::Tls(e.to_string());
    let (live, acme) = if settings.acme.domains.is_empty() {
        let cert = crate::tls::certified_key_from_files(&settings.cert, &settings.key).map_err(tls)?;
        cert.keys_match()
            .map_err(|e| ServiceError::Tls(format!("server.tls.key does not match server.tls.cert: {e}")))?;
        (Arc::new(crate::tls::LiveCert::new(cert)), None)
    } else {
        let (acme, live) =
            crate::acme::Acme::new(settings.acme.clone(), data).map_err(|e| ServiceError::Tls(e.to_string()))?;
        (live, Some(acme))
    };
    let http = crate::tls::live_server_config(live.clone(), &[b"http/1.1"]).map_err(tls)?;
    let grpc = crate::tls::live_server_config(live, &[b"h2", b"http/1.1"]).map_err(tls)?;
    Ok(Some((tokio_rustls::TlsAcceptor::from(http), tokio_rustls::TlsAcceptor::from(grpc), acme)))
}

/// File descriptors kept free of sockets (storage, logs, the engine).
const SPARE_FDS: u64 = 256;

/// The sockets each port may hold (HTTP, gRPC): `wanted`, lowered so both
/// ports together stay within the process's file-descriptor limit (raised
/// first to its hard ceiling), so the limit sheds connections before
/// `accept` runs out of descriptors. The HTTP port, where the workers are,
/// gets four fifths of what there is; clients of the gRPC port are few.
fn socket_limits(wanted: usize) -> (usize, usize) {
    let Some(fds) = raise_fd_limit() else { return (wanted, wanted) };
    let fds = usize::try_from(fds).unwrap_or(usize::MAX);
    let (http, grpc) = (worker_socket_room(fds), (fds.saturating_sub(SPARE_FDS as usize) / 5).max(1));
    if http < wanted || grpc < wanted {
        tracing::warn!(
            wanted,
            http = http.min(wanted),
            grpc = grpc.min(wanted),
            fds,
            "server.max_sockets lowered to fit the file-descriptor limit"
        );
    }
    (http.min(wanted), grpc.min(wanted))
}

/// The sockets the HTTP port (the workers') may hold under a limit of
/// `fds` file descriptors: four fifths of those not kept spare.
pub(crate) fn worker_socket_room(fds: usize) -> usize {
    (fds.saturating_sub(SPARE_FDS as usize) / 5 * 4).max(1)
}

/// Raises this process's soft file-descriptor limit to its hard one;
/// the limit now in force (None where unknown).
#[cfg(target_os = "linux")]
pub(crate) fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let mut current = lim.current?;
    if let Some(max) = lim.maximum {
        if current < max && setrlimit(Resource::Nofile, Rlimit { current: Some(max), maximum: Some(max) }).is_ok() {
            current = max;
        }
    }
    Some(current)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn raise_fd_limit() -> Option<u64> {
    None
}
