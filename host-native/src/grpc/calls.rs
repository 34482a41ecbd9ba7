//! Per-call counters on the control plane: `shoal_grpc_requests_total`
//! by method and status code, for both ports (native gRPC and gRPC-web).
//! The status is the one the response's headers carry (a refusal, which
//! tonic sends trailers-only) or OK once the response started. Methods are
//! labelled only by the names the service's descriptor lists, so a client
//! inventing paths cannot grow the label set.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use prost::Message as _;
use tonic::codegen::http;

/// Every `/package.Service/Method` this server's descriptor sets declare.
fn known_paths() -> &'static HashSet<String> {
    static PATHS: OnceLock<HashSet<String>> = OnceLock::new();
    PATHS.get_or_init(|| {
        let mut paths = HashSet::new();
        for set in [super::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET] {
            let Ok(set) = prost_types::FileDescriptorSet::decode(set) else { continue };
            for file in set.file {
                for service in &file.service {
                    for method in &service.method {
                        paths.insert(format!("/{}.{}/{}", file.package(), service.name(), method.name()));
                    }
                }
            }
        }
        paths
    })
}

/// The method label of a request path: itself if the service declares
/// it, else `other`.
fn method_label(path: &str) -> String {
    if known_paths().contains(path) {
        path.trim_start_matches('/').to_owned()
    } else {
        "other".to_owned()
    }
}

/// Counts every call the wrapped service answers.
#[derive(Clone, Copy, Debug, Default)]
pub struct CountCalls;

impl<S> tower::Layer<S> for CountCalls {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted { inner }
    }
}

/// A service whose calls are counted.
#[derive(Clone, Debug)]
pub struct Counted<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for Counted<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = method_label(request.uri().path());
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await;
            let code = match &response {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from),
                Err(_) => tonic::Code::Internal,
            };
            let code = super::errors::code_name(code);
            metrics::counter!("shoal_grpc_requests_total", "method" => method, "code" => code).increment(1);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_declared_methods_become_labels() {
        assert_eq!(method_label("/shoal.v1.ShoalService/SubmitJob"), "shoal.v1.ShoalService/SubmitJob");
        assert_eq!(method_label("/grpc.health.v1.Health/Check"), "grpc.health.v1.Health/Check");
        assert_eq!(method_label("/shoal.v1.ShoalService/MadeUp123"), "other");
        assert!(known_paths().len() > 20, "{:?}", known_paths());
    }
}
