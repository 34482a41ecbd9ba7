//! The swarm's public JSON on the HTTP port: what explorers, status pages
//! and scripts poll (the seed's SwarmAPI, with Shoal's words: workers for
//! agents, tiers for levels). Read-only, computed on the engine thread,
//! guarded like every swarm read (`server.anonymous = "swarm"` makes it
//! public) and served with CORS for `server.cors_origins`.
//!
//! - `/api/stats`: the dashboard's counters and the seed's fields
//!   (`Cache-Control: public, max-age=30`);
//! - `/swarm/status`, `/swarm/workers`, `/swarm/leaderboard` (the open
//!   epoch), `/swarm/epoch`, `/swarm/shadow`;
//! - `/api/rewards?worker=ID`: what settled epochs paid a contributor.
//!
//! Accuracies are given as the seed gives them (a percent in `/api/stats`,
//! a fraction elsewhere) and as integers in ppm beside them.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use shoal_core::coordinator::{Coordinator, WorkerSort};

use crate::status::SwarmStatus;
use crate::ws::DataPlane;

/// Most rows `/swarm/workers` and `/swarm/leaderboard` return.
const MAX_ROWS: usize = 1000;

fn ppm(part: u64, whole: u64) -> u64 {
    if whole == 0 {
        0
    } else {
        (u128::from(part) * 1_000_000 / u128::from(whole)) as u64
    }
}

/// A ppm value as a fraction with 4 decimals (display only).
fn fraction(ppm: u64) -> f64 {
    (ppm / 100) as f64 / 10_000.0
}

/// A ppm value as a percent with 2 decimals (display only).
fn percent(ppm: u64) -> f64 {
    (ppm / 100) as f64 / 100.0
}

async fn read(plane: &DataPlane, f: impl FnOnce(&Coordinator, u64) -> Value + Send + 'static) -> Response {
    let uptime = plane.started.elapsed().as_secs();
    match plane.engine.query(move |c, _| f(c, uptime)).await {
        Ok(v) => Json(v).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "coordinator stopped").into_response(),
    }
}

fn shadow_ppm(c: &Coordinator) -> u64 {
    let s = c.shadow();
    ppm(s.matched, s.compared)
}

/// `GET /api/stats`.
pub async fn api_stats(State(plane): State<DataPlane>) -> Response {
    let mut response = read(&plane, |c, uptime| {
        let status = SwarmStatus::of(c);
        let mut by_tier: BTreeMap<String, u32> = BTreeMap::new();
        for class in &status.classes {
            let key = if class.tier == 0 { "unknown".to_owned() } else { format!("L{}", class.tier) };
            *by_tier.entry(key).or_default() += class.workers;
        }
        let epoch = c.open_epoch(0);
        let epoch_ppm = ppm(epoch.agreed, epoch.agreed + epoch.outvoted);
        let mut v = serde_json::to_value(&status).unwrap_or_else(|_| json!({}));
        let seed = json!({
            "active_workers": status.workers_admitted,
            "workers_by_tier": by_tier,
            "tasks_dispatched": c.stats().offers,
            "tasks_received": c.stats().results,
            "shadow_accuracy": percent(shadow_ppm(c)),
            "shadow_accuracy_ppm": shadow_ppm(c),
            "shadow_compared": c.shadow().compared,
            "current_epoch": epoch.number,
            "epoch_tasks": epoch.verified,
            "epoch_accuracy": percent(epoch_ppm),
            "epoch_accuracy_ppm": epoch_ppm,
            "uptime": uptime,
            "updated_at": crate::engine::wall_now().0 / 1000,
        });
        if let (Some(v), Value::Object(seed)) = (v.as_object_mut(), seed) {
            v.extend(seed);
        }
        v
    })
    .await;
    if response.status().is_success() {
        response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("public, max-age=30"));
    }
    response
}

/// `GET /swarm/status`.
pub async fn status(State(plane): State<DataPlane>) -> Response {
    read(&plane, |c, uptime| {
        let status = SwarmStatus::of(c);
        json!({
            "uptime": uptime,
            "workers_total": c.remembered_workers(),
            "workers_live": status.workers,
            "workers_admitted": status.workers_admitted,
            "tasks_dispatched": c.stats().offers,
            "tasks_received": c.stats().results,
            "tasks_verified": c.stats().verified,
            "shadow_mode": c.config().shadow_cpu_reference,
            "shadow_accuracy": percent(shadow_ppm(c)),
            "shadow_accuracy_ppm": shadow_ppm(c),
            "classes": status.classes,
        })
    })
    .await
}

/// `?limit=N` (default 100, at most [`MAX_ROWS`]).
#[derive(Deserialize)]
pub struct Rows {
    limit: Option<String>,
}

/// `?worker=ID` (the seed's `agent=` too).
#[derive(Deserialize)]
pub struct Who {
    worker: Option<String>,
    agent: Option<String>,
}

/// The rows asked for, or why the number is refused.
fn limit(q: &Rows) -> Result<usize, String> {
    match &q.limit {
        None => Ok(100),
        Some(n) => n
            .parse::<usize>()
            .map(|n| n.clamp(1, MAX_ROWS))
            .map_err(|_| format!("limit={n} is not a number (1 to {MAX_ROWS})")),
    }
}

/// `GET /swarm/workers?limit=N`: connected workers, most verified work first.
pub async fn workers(State(plane): State<DataPlane>, Query(q): Query<Rows>) -> Response {
    let n = match limit(&q) {
        Ok(n) => n,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    read(&plane, move |c, _| {
        let (total, page) = c.workers_page(WorkerSort::Agreed, true, 0, n);
        let rows: Vec<Value> = page
            .iter()
            .map(|w| {
                json!({
                    "id": w.id.as_str(),
                    "backend": w.class.map(|cl| format!("{:?}", cl.backend)),
                    "tier": w.class.map_or(0, |cl| cl.tier as u8),
                    "mflops": w.mflops,
                    "credibility_ppm": w.credibility_ppm,
                    "agreed": w.agreed,
                    "in_flight": w.in_flight,
                    "last_seen_ms": w.last_seen.0,
                    "slashed": w.slashed,
                })
            })
            .collect();
        json!({ "count": total, "workers": rows })
    })
    .await
}

/// `GET /swarm/leaderboard?limit=N`: the open epoch's workers, most
/// verified work first.
pub async fn leaderboard(State(plane): State<DataPlane>, Query(q): Query<Rows>) -> Response {
    let n = match limit(&q) {
        Ok(n) => n,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    read(&plane, move |c, _| {
        let epoch = c.open_epoch(n);
        let entries: Vec<Value> = epoch
            .leaders
            .iter()
            .enumerate()
            .map(|(i, (id, w))| {
                let accuracy = u64::from(w.accuracy_ppm());
                let mut e = json!({
                    "rank": i + 1,
                    "worker_id": id.as_str(),
                    "tasks": w.agreed,
                    "outvoted": w.outvoted,
                    "accuracy": fraction(accuracy),
                    "accuracy_ppm": accuracy,
                });
                if let (Some(p), Some(e)) = (c.profile(id), e.as_object_mut()) {
                    for (k, v) in [("address", &p.payout), ("name", &p.name), ("team", &p.team)] {
                        if !v.is_empty() {
                            e.insert(k.into(), json!(v));
                        }
                    }
                }
                e
            })
            .collect();
        json!({ "epoch": epoch.number, "workers": epoch.workers, "entries": entries })
    })
    .await
}

/// `GET /swarm/epoch`: the open epoch.
pub async fn epoch(State(plane): State<DataPlane>) -> Response {
    read(&plane, |c, _| {
        let e = c.open_epoch(0);
        let accuracy = ppm(e.agreed, e.agreed + e.outvoted);
        let now = crate::engine::wall_now();
        json!({
            "epoch": e.number,
            "workers": e.workers,
            "total_tasks": e.agreed + e.outvoted,
            "total_correct": e.agreed,
            "accuracy": fraction(accuracy),
            "accuracy_ppm": accuracy,
            "verified": e.verified,
            "elapsed": now.since(e.opened).0 / 1000,
        })
    })
    .await
}

/// `GET /swarm/shadow`.
pub async fn shadow(State(plane): State<DataPlane>) -> Response {
    read(&plane, |c, _| {
        let mut v = serde_json::to_value(c.shadow()).unwrap_or_else(|_| json!({}));
        if let Some(o) = v.as_object_mut() {
            o.insert("accuracy".into(), json!(fraction(shadow_ppm(c))));
            o.insert("accuracy_ppm".into(), json!(shadow_ppm(c)));
            o.insert("cpu_reference".into(), json!(c.config().shadow_cpu_reference));
        }
        v
    })
    .await
}

/// `GET /api/rewards?worker=ID`: a contributor's payouts, newest first.
pub async fn rewards(State(plane): State<DataPlane>, Query(q): Query<Who>) -> Response {
    let Some(raw) = q.worker.or(q.agent) else {
        return (StatusCode::BAD_REQUEST, "name the contributor: /api/rewards?worker=ID").into_response();
    };
    let id = match shoal_core::WorkerId::new(raw.clone()) {
        Ok(id) => id,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("worker={raw:?}: {e}")).into_response(),
    };
    let found = plane
        .engine
        .query(move |c, _| {
            let record = c.contributor(&id)?;
            let payouts: Vec<Value> = c
                .epochs()
                .iter()
                .rev()
                .filter_map(|s| {
                    let p = s.payouts.iter().find(|p| p.worker == id)?;
                    let address = s.addresses.iter().find(|a| a.worker == id).map(|a| a.address.clone());
                    Some(json!({
                        "epoch": s.epoch,
                        "amount": p.amount.to_string(),
                        "bounty": p.bounty.to_string(),
                        "tasks": p.tasks,
                        "weight": p.weight.to_string(),
                        "accuracy_ppm": p.accuracy_ppm,
                        "bonus": p.bonus,
                        "stake": s.stakes.held_by(&id).to_string(),
                        "address": address,
                    }))
                })
                .take(MAX_ROWS)
                .collect();
            Some(json!({
                "worker_id": id.as_str(),
                "earned": record.earned.to_string(),
                "epochs_paid": record.epochs_paid,
                "address": record.profile.payout,
                "payouts": payouts,
            }))
        })
        .await;
    match found {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, format!("no contributor {raw}")).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "coordinator stopped").into_response(),
    }
}
