//! `shoal bench idle`: N idle, heartbeating WebSocket workers held by a
//! coordinator in a child process; its resident memory, and whether any
//! worker missed a heartbeat deadline (was evicted).
//!
//! Each connection costs a file descriptor on both ends: this process and
//! the coordinator raise their soft limit to the hard one, and a run that
//! cannot fit says so and what to raise, instead of measuring a refusal.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use shoal_core::auth::derive_token;
use shoal_core::WorkerId;
use tokio::sync::watch;

use super::{rss_of, spawn_coordinator, wait_healthy, ShoalClient};
use crate::grpc::pb;
use crate::worker;

/// Connections per loopback source address (of ~28 000 ephemeral ports).
const PER_SOURCE_ADDRESS: usize = 20_000;

/// Fails, saying what to raise, when `n` connections do not fit this
/// process's or the coordinator's file-descriptor limit (both raised to
/// the hard limit first).
fn check_fd_room(n: usize) -> Result<()> {
    let Some(fds) = crate::service::raise_fd_limit() else { return Ok(()) };
    let fds = usize::try_from(fds).unwrap_or(usize::MAX);
    let coordinator = crate::service::worker_socket_room(fds);
    if n + 256 > fds || n > coordinator {
        bail!(
            "{n} idle connections do not fit: the file-descriptor limit is {fds} (`ulimit -Hn`), so the coordinator \
             takes at most {coordinator} worker sockets and this process {} connections; raise the hard limit to at \
             least {} (as root `ulimit -n {}`, or LimitNOFILE= in a systemd unit) or ask for fewer (--idle-workers)",
            fds.saturating_sub(256),
            n * 5 / 4 + 512,
            n * 5 / 4 + 512
        );
    }
    Ok(())
}

/// Coordinator RSS with `n` idle workers held `secs`; evictions; workers held at the end.
pub(super) async fn idle(data: &Path, n: usize, secs: u64) -> Result<(u64, u64, u32)> {
    std::fs::create_dir_all(data)?;
    check_fd_room(n)?;
    let sets = vec![
        format!("coordinator.max_workers={}", n + 100),
        "coordinator.profile.benchmark_size=4".to_owned(),
        "coordinator.profile.benchmark_max_size=4".to_owned(),
        "coordinator.profile.min_mflops=0".to_owned(),
        "coordinator.distinct_origins=false".to_owned(),
        format!("server.max_connections={}", n + 100),
        format!("server.max_sockets={}", n + 200),
    ];
    // One source address has ~28 000 ephemeral ports towards one
    // coordinator port: spread the connections over 127.0.0.1, .2, …
    let sources = n.div_ceil(PER_SOURCE_ADDRESS).max(1);
    let child = spawn_coordinator(data, &sets)?;
    wait_healthy(&child.http, Duration::from_secs(30)).await?;
    let secret = crate::service::load_or_create_secret(data)?;
    let (stop, rx) = watch::channel(false);
    let mut hs = Vec::new();
    for i in 0..n {
        let Ok(id) = WorkerId::new(format!("idle-{i}")) else { continue };
        let source = u8::try_from(1 + i % sources).unwrap_or(1);
        let token = derive_token(&secret, &id);
        let mut opts = super::honest_cpu_worker(format!("ws://{}/ws", child.http), id, token, 1, i as u64);
        opts.bind = (sources > 1).then_some(std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, source)));
        let rx = rx.clone();
        hs.push(tokio::spawn(async move { worker::run(opts, rx).await }));
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut c = ShoalClient::connect(child.grpc.clone()).await?;
    let deadline = Instant::now() + Duration::from_mins(2) + Duration::from_millis(n as u64);
    loop {
        let s = c.get_swarm_status(pb::GetSwarmStatusRequest {}).await?.into_inner();
        if s.workers_admitted as usize >= n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut events = c.stream_events(pb::StreamEventsRequest {}).await?.into_inner();
    let evicted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = evicted.clone();
    let watcher = tokio::spawn(async move {
        while let Ok(Some(e)) = events.message().await {
            if matches!(e.event, Some(pb::stream_events_response::Event::WorkerLeft(_))) {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let rss = rss_of(child.process.id());
    let held = c.get_swarm_status(pb::GetSwarmStatusRequest {}).await?.into_inner().workers_admitted;
    watcher.abort();
    let _ = stop.send(true);
    for h in hs {
        let _ = tokio::time::timeout(Duration::from_secs(1), h).await;
    }
    Ok((rss, evicted.load(std::sync::atomic::Ordering::Relaxed), held))
}
