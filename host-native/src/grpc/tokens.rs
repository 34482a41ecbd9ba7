//! The token calls (`WhoAmI`, `CreateToken`, `ListTokens`, `RevokeToken`):
//! the messages to and from [`crate::access`], and the calls themselves
//! (storage writes off the async threads).

use std::sync::Arc;

use tonic::Status;

use crate::access::{Access, AccessError, Anonymous, Caller, Role, TokenInfo};

use super::pb;

fn role_to_pb(r: Role) -> pb::Role {
    match r {
        Role::Admin => pb::Role::Admin,
        Role::Submit => pb::Role::Submit,
        Role::Read => pb::Role::Read,
    }
}

/// A role from the API (unspecified or unknown: refused by name).
pub(super) fn role_from_pb(r: i32) -> Result<Role, Status> {
    match pb::Role::try_from(r) {
        Ok(pb::Role::Admin) => Ok(Role::Admin),
        Ok(pb::Role::Submit) => Ok(Role::Submit),
        Ok(pb::Role::Read) => Ok(Role::Read),
        _ => Err(super::errors::bad_field("role", "a token needs a role: admin, submit or read")),
    }
}

/// A role as the API names it, for people (`admin`, `submit`, `read`).
pub fn role_name(r: i32) -> &'static str {
    role_from_pb(r).map_or("?", Role::as_str)
}

/// A role by its name, for the CLI.
pub fn role_by_name(name: &str) -> Result<pb::Role, AccessError> {
    name.parse::<Role>().map(role_to_pb)
}

fn info_to_pb(t: &TokenInfo) -> pb::Token {
    pb::Token {
        id: t.id.clone(),
        name: t.record.name.clone(),
        role: role_to_pb(t.record.role).into(),
        created_ms: t.record.created_ms,
        revoked_ms: t.record.revoked_ms.unwrap_or(0),
    }
}

/// What `WhoAmI` answers for this caller.
pub(super) fn identity(caller: &Caller, access: &Access) -> pb::WhoAmIResponse {
    let anonymous = match access.anonymous() {
        // Resolved at load; never seen here.
        Anonymous::Auto => pb::AnonymousAccess::Unspecified,
        Anonymous::None => pb::AnonymousAccess::None,
        Anonymous::Swarm => pb::AnonymousAccess::Swarm,
        Anonymous::Read => pb::AnonymousAccess::Read,
        Anonymous::Admin => pb::AnonymousAccess::Admin,
    }
    .into();
    match caller {
        Caller::Token(g) => {
            pb::WhoAmIResponse { authenticated: true, name: g.name.clone(), role: role_to_pb(g.role).into(), anonymous }
        }
        Caller::Anonymous(_) => pb::WhoAmIResponse { authenticated: false, anonymous, ..Default::default() },
    }
}

fn status_of(e: &AccessError) -> Status {
    match e {
        AccessError::UnknownRole(_) => super::errors::bad_field("role", e.to_string()),
        AccessError::BadName(_) => super::errors::bad_field("name", e.to_string()),
        AccessError::NameTaken(_) => Status::already_exists(e.to_string()),
        AccessError::NoSuchToken(n) => super::errors::not_found("shoal.v1.Token", n.clone(), e.to_string()),
        AccessError::AlreadyRevoked(_) => Status::failed_precondition(e.to_string()),
        AccessError::Random(_) | AccessError::Store(_) => Status::internal(e.to_string()),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Creates a token; answers once it is durable.
pub(super) async fn create(
    access: Arc<Access>,
    req: pb::CreateTokenRequest,
) -> Result<pb::CreateTokenResponse, Status> {
    let role = role_from_pb(req.role)?;
    let (token, info) = tokio::task::spawn_blocking(move || access.create(&req.name, role, now_ms()))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| status_of(&e))?;
    tracing::info!(name = %info.record.name, id = %info.id, role = role.as_str(), "API token created");
    Ok(pb::CreateTokenResponse { token: Some(info_to_pb(&info)), secret: token })
}

/// Revokes a token; answers once it is durable.
pub(super) async fn revoke(
    access: Arc<Access>,
    req: pb::RevokeTokenRequest,
) -> Result<pb::RevokeTokenResponse, Status> {
    let info = tokio::task::spawn_blocking(move || access.revoke(&req.name_or_id, now_ms()))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| status_of(&e))?;
    tracing::info!(name = %info.record.name, id = %info.id, "API token revoked");
    Ok(pb::RevokeTokenResponse { token: Some(info_to_pb(&info)) })
}

/// Tokens, a page at a time, in the order storage keeps them.
pub(super) fn list(access: &Access, req: &pb::ListTokensRequest) -> Result<pb::ListTokensResponse, Status> {
    use super::paging::{offset, page_of, position, ListCall};
    let start = offset(position(ListCall::Tokens, 0, &req.page_token)?.as_deref())?;
    let all: Vec<pb::Token> = access.list().iter().map(info_to_pb).collect();
    let (tokens, next_page_token) = page_of(ListCall::Tokens, 0, all, start, ListCall::Tokens.page_size(req.page_size));
    Ok(pb::ListTokensResponse { tokens, next_page_token })
}
