//! HTTP: the workers' WebSocket (`/ws`), `/healthz`, Prometheus `/metrics`,
//! the swarm's public JSON (`/api/stats`, `/swarm/…`, `/api/rewards`; see
//! [`crate::swarm_api`]; CORS), and the site (dashboard, worker page) at
//! `/` (see [`crate::site`]).
//! `/metrics` and `/api/stats` answer whom the access table lets read them
//! (a bearer token, or the anonymous allowance).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::cors::CorsLayer;

use crate::access::{Access, Op, Refusal};
use crate::site::Site;
use crate::swarm_api;
use crate::ws::{self, DataPlane};

/// The HTTP router; `grpc_web` (the API as gRPC-web) is served beside the
/// pages, so the dashboard calls it on its own origin.
pub fn router(plane: DataPlane, site: Site, grpc_web: Router, cors: CorsLayer, access: &Arc<Access>) -> Router {
    let guarded = |op: Op| axum::middleware::from_fn_with_state((access.clone(), op), guard);
    // The swarm's public reads, guarded alike and with CORS.
    let swarm = Router::new()
        .route("/api/stats", get(swarm_api::api_stats))
        .route("/api/rewards", get(swarm_api::rewards))
        .route("/swarm/status", get(swarm_api::status))
        .route("/swarm/workers", get(swarm_api::workers))
        .route("/swarm/leaderboard", get(swarm_api::leaderboard))
        .route("/swarm/epoch", get(swarm_api::epoch))
        .route("/swarm/shadow", get(swarm_api::shadow))
        .route_layer(guarded(Op::Swarm))
        .layer(cors);
    let api = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics).route_layer(guarded(Op::Metrics)))
        .route("/ws", get(ws::upgrade))
        .merge(swarm)
        .with_state(plane.clone())
        .merge(grpc_web);
    site.serve(api).layer(axum::middleware::from_fn_with_state(plane.embed, crate::embed::kit_headers))
}

/// CORS for the listed browser origins only (`server.cors_origins`): any
/// method and header (gRPC-web sends its own), no credentials. An origin
/// that is not a valid header value is refused by name.
pub fn cors(origins: &[String]) -> Result<CorsLayer, String> {
    let list = origins
        .iter()
        .map(|o| {
            axum::http::HeaderValue::from_str(o.trim_end_matches('/'))
                .map_err(|_| format!("server.cors_origins: `{o}` is not an origin"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CorsLayer::new()
        .allow_origin(tower_http::cors::AllowOrigin::list(list))
        .allow_methods(tower_http::cors::Any)
        .allow_headers(tower_http::cors::Any)
        .expose_headers(tower_http::cors::Any))
}

/// Lets a request through when its caller may make a call of kind `op`.
async fn guard(State((access, op)): State<(Arc<Access>, Op)>, request: Request, next: Next) -> Response {
    let header = request.headers().get(header::AUTHORIZATION).map(axum::http::HeaderValue::as_bytes);
    match access.identify(header).and_then(|c| c.scope(op)) {
        Ok(_) => next.run(request).await,
        Err(Refusal::Unauthenticated(why)) => {
            (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], why).into_response()
        }
        Err(Refusal::PermissionDenied(why)) => (StatusCode::FORBIDDEN, why).into_response(),
    }
}

async fn healthz(State(plane): State<DataPlane>) -> Response {
    if plane.engine.is_stopped() {
        return (StatusCode::SERVICE_UNAVAILABLE, "coordinator stopped").into_response();
    }
    match plane.engine.query(|c, _| c.connected_workers()).await {
        Ok(n) => (StatusCode::OK, format!("ok ({n} workers connected)")).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "coordinator stopped").into_response(),
    }
}

async fn metrics(State(plane): State<DataPlane>) -> Response {
    // Gauges as of this scrape (the engine also refreshes them every second).
    let _ = plane.engine.query(|c, _| crate::metrics::record_gauges(c)).await;
    let data = plane.data.clone();
    let text = tokio::task::spawn_blocking(move || crate::metrics::render(Some(&data))).await.unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
