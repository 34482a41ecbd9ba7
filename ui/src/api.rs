//! The coordinator's API over gRPC-web, on the dashboard's own origin, with
//! the tab's API token when it was given one.

use tonic::metadata::MetadataValue;
use tonic::Request;

/// The generated messages and client of `shoal/v1/shoal.proto`.
#[allow(clippy::pedantic, missing_docs, unreachable_pub)]
pub mod pb {
    tonic::include_proto!("shoal.v1");
}

/// A client of the coordinator.
pub type Client = pb::shoal_service_client::ShoalServiceClient<tonic_web_wasm_client::Client>;

/// A client for the coordinator that served this page.
pub fn client() -> Client {
    let origin = web_sys::window().and_then(|w| w.location().origin().ok()).unwrap_or_default();
    pb::shoal_service_client::ShoalServiceClient::new(tonic_web_wasm_client::Client::new(origin))
}

/// Where the tab keeps its API token: session storage, so it lives as long
/// as the tab and never travels in a URL (history, logs, referrers).
const TOKEN_KEY: &str = "shoal-api-token";

fn session() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok()?
}

/// The API token this tab was given, if any.
pub fn token() -> Option<String> {
    session()?.get_item(TOKEN_KEY).ok()?.filter(|t| !t.is_empty())
}

/// Keeps `token` for this tab's session (None forgets it).
pub fn set_token(token: Option<&str>) {
    if let Some(s) = session() {
        let _ = match token {
            Some(t) => s.set_item(TOKEN_KEY, t),
            None => s.remove_item(TOKEN_KEY),
        };
    }
}

/// A request carrying the token when there is one.
pub fn request<T>(message: T) -> Request<T> {
    let mut r = Request::new(message);
    if let Some(t) = token() {
        if let Ok(v) = MetadataValue::try_from(format!("Bearer {t}")) {
            r.metadata_mut().insert("authorization", v);
        }
    }
    r
}

/// Whether a failure is the coordinator asking for (another) token.
pub fn wants_token(status: &tonic::Status) -> bool {
    matches!(status.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied)
}

/// A gRPC failure as one line for people.
pub fn explain(status: &tonic::Status) -> String {
    match status.code() {
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => status.message().to_owned(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal => {
            format!("coordinator unreachable ({})", status.message())
        }
        _ => format!("{:?}: {}", status.code(), status.message()),
    }
}

/// A Mandelbrot tile's parameters as the core knows them.
pub fn mandelbrot_params(k: &pb::MandelbrotKernel) -> shoal_core::kernels::MandelbrotParams {
    shoal_core::kernels::MandelbrotParams {
        width: k.width,
        height: k.height,
        x0: k.x0,
        y0: k.y0,
        step: k.step,
        max_iter: k.max_iter,
    }
}

/// The operations of one task, from the kernels' cost model (what the
/// throughput chart sums as GOPS).
pub fn ops(kernel: &pb::Kernel) -> u64 {
    use shoal_core::kernels::{KernelSpec, MatmulParams, Sha256Params};
    let spec = match &kernel.kind {
        Some(pb::kernel::Kind::Sha256(k)) => {
            KernelSpec::Sha256(Sha256Params { count: k.count, message_len: k.message_len })
        }
        Some(pb::kernel::Kind::MatmulF32(k)) => KernelSpec::MatmulF32(MatmulParams { m: k.m, n: k.n, k: k.k }),
        Some(pb::kernel::Kind::MatmulF16(k)) => KernelSpec::MatmulF16(MatmulParams { m: k.m, n: k.n, k: k.k }),
        Some(pb::kernel::Kind::Mandelbrot(k)) => KernelSpec::Mandelbrot(mandelbrot_params(k)),
        Some(pb::kernel::Kind::Custom(k)) => return k.ops,
        None => return 0,
    };
    spec.cost().ops
}
