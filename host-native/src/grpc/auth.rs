//! Who may call the control plane: the server's bearer-token check and
//! the client's interceptor that sends the token.

use tonic::{Request, Status};

/// Checks the control plane's bearer token on every call (when one is configured).
#[derive(Clone)]
pub struct RequireToken {
    expected: Option<std::sync::Arc<str>>,
}

impl RequireToken {
    /// Requires `token` (an empty one requires nothing).
    pub fn new(token: &str) -> Self {
        RequireToken { expected: (!token.is_empty()).then(|| token.into()) }
    }
}

impl tonic::service::Interceptor for RequireToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else { return Ok(request) };
        let given = request.metadata().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let ok = given.strip_prefix("Bearer ").is_some_and(|t| {
            // Constant time in the token's length.
            t.len() == expected.len() && t.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        });
        if ok {
            Ok(request)
        } else {
            Err(Status::unauthenticated("this coordinator requires an API token (authorization: Bearer …)"))
        }
    }
}

/// Adds the bearer token to every call of a client.
#[derive(Clone)]
pub struct WithToken {
    header: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl WithToken {
    /// Sends `token` (an empty one sends nothing).
    pub fn new(token: &str) -> Result<Self, Status> {
        if token.is_empty() {
            return Ok(WithToken { header: None });
        }
        let header = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::invalid_argument("the API token must be printable ASCII"))?;
        Ok(WithToken { header: Some(header) })
    }
}

impl tonic::service::Interceptor for WithToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(h) = &self.header {
            request.metadata_mut().insert("authorization", h.clone());
        }
        Ok(request)
    }
}
