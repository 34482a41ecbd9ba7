//! Who may call the control plane: the server's interceptor that resolves
//! each call's caller from its bearer token (see [`crate::access`]), the
//! check each call makes against the access table, and the client's
//! interceptor that sends the token.

use std::sync::Arc;

use tonic::{Request, Status};

use crate::access::{Access, Anonymous, Caller, Op, Refusal, Scope};

/// Resolves the caller of every call from its `authorization` header and
/// hands it to the call (a wrong or revoked token is refused here).
#[derive(Clone)]
pub struct Authorize {
    access: Arc<Access>,
}

impl Authorize {
    /// Checks calls against `access`.
    pub fn new(access: Arc<Access>) -> Self {
        Authorize { access }
    }
}

impl tonic::service::Interceptor for Authorize {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = request.metadata().get("authorization").map(tonic::metadata::MetadataValue::as_bytes);
        let caller = self.access.identify(header).map_err(refused)?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// A refusal as the gRPC status clients expect.
pub(crate) fn refused(r: Refusal) -> Status {
    match r {
        Refusal::Unauthenticated(why) => Status::unauthenticated(why),
        Refusal::PermissionDenied(why) => Status::permission_denied(why),
    }
}

/// The caller of a call (anonymous with no allowance if none was
/// resolved: a call that bypassed [`Authorize`] gets nothing).
pub(crate) fn caller<T>(request: &Request<T>) -> Caller {
    request.extensions().get::<Caller>().cloned().unwrap_or(Caller::Anonymous(Anonymous::None))
}

/// Whether the caller may make a call of kind `op`, and over which jobs.
pub(crate) fn allowed<T>(request: &Request<T>, op: Op) -> Result<Scope, Status> {
    caller(request).scope(op).map_err(refused)
}

/// A stream that ends, with UNAUTHENTICATED, as soon as the token that
/// opened it is revoked (a revocation holds for calls already open, not
/// only for the next ones). Streams of anonymous callers and of the
/// configuration's token pass through.
pub(crate) fn end_on_revocation<T: Send + 'static>(
    mut inner: super::service::BoxStream<T>,
    caller: &Caller,
    access: &Arc<Access>,
) -> super::service::BoxStream<T> {
    use futures_util::StreamExt;
    let Caller::Token(grant) = caller else { return inner };
    let (id, access) = (grant.id.clone(), access.clone());
    let mut revocations = access.revocations();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                item = inner.next() => match item {
                    Some(item) => {
                        if tx.send(item).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                },
                // The sender lives as long as `access`, which this task holds.
                Ok(()) = revocations.changed() => {
                    if !access.is_live(&id) {
                        let why = format!("token {id} was revoked; this stream ends");
                        let _ = tx.send(Err(Status::unauthenticated(why))).await;
                        return;
                    }
                }
                else => return,
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
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
