//! Who may call what on the control plane: API tokens with roles, the
//! anonymous caller's explicit allowance, and the table that decides every
//! call.
//!
//! A token is `shoal_api_` and 64 hex digits of randomness; the coordinator
//! keeps only its digest (in storage, and in memory for the check), so a
//! stolen data folder gives no token. Tokens are created, listed and
//! revoked through the API by an admin, and a revocation holds from the
//! next call on, without a restart. `server.api_token` is an admin token
//! from the configuration.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use shoal_core::Digest;

use crate::store::{Store, StoreError};

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: any job, epochs, tokens.
    Admin,
    /// Submit jobs; read and cancel its own; read the swarm.
    Submit,
    /// Read everything (dashboards, every job's status and results, the
    /// state diffs, metrics); change nothing.
    Read,
}

impl Role {
    /// Every role, for help texts and parsing.
    pub const ALL: [Role; 3] = [Role::Admin, Role::Submit, Role::Read];

    /// Its name in configuration, the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Submit => "submit",
            Role::Read => "read",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = AccessError;
    fn from_str(s: &str) -> Result<Role, AccessError> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| AccessError::UnknownRole(s.to_owned()))
    }
}

/// What a caller without a token may do (`server.anonymous`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Anonymous {
    /// `admin` when no `server.api_token` is set (a loopback playground:
    /// `shoal up`), else `none`.
    #[default]
    Auto,
    /// Nothing: every call needs a token.
    None,
    /// The public swarm page: counters, workers, leaderboard, epochs,
    /// consensus, verification stats, the event feed.
    Swarm,
    /// What the `read` role may do.
    Read,
    /// Everything (only sensible on loopback; beyond it the start refuses
    /// without `--insecure`).
    Admin,
}

impl Anonymous {
    /// Its name in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Anonymous::Auto => "auto",
            Anonymous::None => "none",
            Anonymous::Swarm => "swarm",
            Anonymous::Read => "read",
            Anonymous::Admin => "admin",
        }
    }

    /// The allowance in force: `Auto` resolved against whether an admin
    /// token is configured.
    pub fn resolve(self, api_token_set: bool) -> Anonymous {
        match self {
            Anonymous::Auto if api_token_set => Anonymous::None,
            Anonymous::Auto => Anonymous::Admin,
            other => other,
        }
    }
}

/// A kind of call, as the access table knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Swarm-wide reads: status, workers, leaderboard, epochs, consensus,
    /// shadow stats, the event feed, `/api/stats`.
    Swarm,
    /// A job's status, kernels and results, and the job list.
    ReadJobs,
    /// The state diffs (every job's inputs and results).
    StateDiffs,
    /// Prometheus `/metrics`.
    Metrics,
    /// Submitting a job.
    Submit,
    /// Cancelling a job.
    CancelJob,
    /// Deleting a finished job's records.
    DeleteJob,
    /// Settling the open epoch now.
    CloseEpoch,
    /// Creating, listing and revoking tokens.
    Tokens,
    /// Copying the whole store (every job, the worker secret).
    Backup,
    /// Approving contributor identities or withdrawing approvals, and
    /// setting stakes: who is trusted with what.
    Approve,
}

/// Which jobs a permitted call reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every job.
    All,
    /// Only the jobs this owner (a token id) submitted.
    Owned(String),
}

impl Scope {
    /// Whether a job with this owner (empty: none recorded) is in scope.
    pub fn reaches(&self, owner: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Owned(me) => me == owner,
        }
    }
}

/// Why a call is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No (valid) credentials, and the anonymous allowance does not cover it.
    Unauthenticated(String),
    /// The caller is known, its role does not cover it.
    PermissionDenied(String),
}

/// Who is calling: resolved once per call from its `authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No token; may do what the anonymous allowance covers.
    Anonymous(Anonymous),
    /// A token's holder.
    Token(Grant),
}

/// A token's identity and role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The token's id (12 hex digits of its digest): what owns its jobs.
    pub id: String,
    /// The name it was created with.
    pub name: String,
    /// What it may do.
    pub role: Role,
}

/// The owner recorded for the jobs `server.api_token` submits.
pub const CONFIG_ADMIN_ID: &str = "api_token";

impl Caller {
    /// Whether this caller may make a call of kind `op`, and over which jobs.
    pub fn scope(&self, op: Op) -> Result<Scope, Refusal> {
        match self {
            Caller::Token(g) => match role_scope(g.role, op, &g.id) {
                Some(s) => Ok(s),
                None => Err(Refusal::PermissionDenied(format!(
                    "the token `{}` has the role {}, which may not {}",
                    g.name,
                    g.role.as_str(),
                    what(op)
                ))),
            },
            Caller::Anonymous(a) => {
                let allowed = match a {
                    Anonymous::Admin => true,
                    Anonymous::Read => role_scope(Role::Read, op, "").is_some(),
                    Anonymous::Swarm => op == Op::Swarm,
                    Anonymous::None | Anonymous::Auto => false,
                };
                if allowed {
                    Ok(Scope::All)
                } else {
                    Err(Refusal::Unauthenticated(format!(
                        "this coordinator needs an API token to {} (authorization: Bearer …)",
                        what(op)
                    )))
                }
            }
        }
    }

    /// The owner recorded on a job this caller submits (empty: none).
    pub fn owner(&self) -> String {
        match self {
            Caller::Token(g) => g.id.clone(),
            Caller::Anonymous(_) => String::new(),
        }
    }
}

/// The role table: `None` where the role may not; `owner` is the caller's id.
fn role_scope(role: Role, op: Op, owner: &str) -> Option<Scope> {
    use Op::{Approve, Backup, CancelJob, CloseEpoch, DeleteJob, Metrics, ReadJobs, StateDiffs, Submit, Swarm, Tokens};
    match (role, op) {
        (Role::Admin, _) | (Role::Read, Swarm | ReadJobs | StateDiffs | Metrics) | (Role::Submit, Swarm | Submit) => {
            Some(Scope::All)
        }
        (Role::Submit, ReadJobs | CancelJob | DeleteJob) => Some(Scope::Owned(owner.to_owned())),
        (Role::Read, Submit | CancelJob | DeleteJob | CloseEpoch | Tokens | Backup | Approve)
        | (Role::Submit, StateDiffs | Metrics | CloseEpoch | Tokens | Backup | Approve) => None,
    }
}

/// An operation in words, for refusals.
fn what(op: Op) -> &'static str {
    match op {
        Op::Swarm => "read the swarm",
        Op::ReadJobs => "read jobs",
        Op::StateDiffs => "read the state diffs",
        Op::Metrics => "read the metrics",
        Op::Submit => "submit jobs",
        Op::CancelJob => "cancel jobs",
        Op::DeleteJob => "delete jobs",
        Op::CloseEpoch => "close epochs",
        Op::Tokens => "manage tokens",
        Op::Backup => "back up the coordinator",
        Op::Approve => "approve contributors and set stakes",
    }
}

/// A token as storage keeps it (under its digest).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The name it was created with.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// When it was created (Unix ms).
    pub created_ms: u64,
    /// When it was revoked (Unix ms); a revoked token is kept for the list.
    pub revoked_ms: Option<u64>,
}

/// A token as `list` shows it (never the token itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// Its id (12 hex digits of its digest).
    pub id: String,
    /// Its record.
    pub record: TokenRecord,
}

/// What went wrong managing tokens.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Not one of the roles.
    #[error("unknown role `{0}` (admin, submit or read)")]
    UnknownRole(String),
    /// A name that is empty, too long or has odd characters.
    #[error("a token's name is 1 to 64 characters of letters, digits, `.`, `_` and `-`; `{0}` is not")]
    BadName(String),
    /// A live token already has the name.
    #[error("a token named `{0}` already exists (revoke it first)")]
    NameTaken(String),
    /// No token by that name or id.
    #[error("no token named or with the id `{0}`")]
    NoSuchToken(String),
    /// The token was already revoked.
    #[error("the token `{0}` is already revoked")]
    AlreadyRevoked(String),
    /// No randomness for a new token.
    #[error("no randomness for a new token: {0}")]
    Random(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Most tokens kept (live and revoked): the list is answered in one message.
pub const MAX_TOKENS: usize = 10_000;

/// The access control of a running coordinator.
pub struct Access {
    by_digest: RwLock<HashMap<Digest, TokenInfo>>,
    config_admin: Option<Digest>,
    anonymous: Anonymous,
    /// Weak: the engine owns the store; once it stops, the storage file
    /// is free even while connections that hold this still close.
    store: std::sync::Weak<dyn Store>,
    /// Counts revocations, so open streams notice theirs at once.
    revocations: tokio::sync::watch::Sender<u64>,
}

/// A token's digest: what is stored and looked up.
fn digest_of(token: &str) -> Digest {
    Digest::of_parts([b"shoal api token v1".as_slice(), token.as_bytes()])
}

fn id_of(d: &Digest) -> String {
    d.to_hex()[..12].to_owned()
}

impl Access {
    /// Loads the stored tokens; `api_token` (may be empty) is an admin
    /// token from the configuration, `anonymous` the allowance (`Auto`
    /// resolved here).
    pub fn load(store: &Arc<dyn Store>, api_token: &str, anonymous: Anonymous) -> Result<Access, StoreError> {
        let mut by_digest = HashMap::new();
        for (digest, record) in store.api_tokens()? {
            by_digest.insert(digest, TokenInfo { id: id_of(&digest), record });
        }
        Ok(Access {
            by_digest: RwLock::new(by_digest),
            config_admin: (!api_token.is_empty()).then(|| digest_of(api_token)),
            anonymous: anonymous.resolve(!api_token.is_empty()),
            store: Arc::downgrade(store),
            revocations: tokio::sync::watch::Sender::new(0),
        })
    }

    fn stored(&self) -> Result<Arc<dyn Store>, StoreError> {
        self.store.upgrade().ok_or_else(|| StoreError::Db("the coordinator has stopped".into()))
    }

    /// The anonymous allowance in force.
    pub fn anonymous(&self) -> Anonymous {
        self.anonymous
    }

    /// Who is calling, from the value of its `authorization` header: a
    /// header that is present names a live token or the call is refused
    /// (a wrong or revoked token is never taken for anonymous).
    pub fn identify(&self, authorization: Option<&[u8]>) -> Result<Caller, Refusal> {
        let Some(value) = authorization else { return Ok(Caller::Anonymous(self.anonymous)) };
        let token = std::str::from_utf8(value).ok().and_then(|v| v.strip_prefix("Bearer ")).unwrap_or_default();
        if token.is_empty() {
            return Err(Refusal::Unauthenticated("the authorization header is not `Bearer <token>`".into()));
        }
        let d = digest_of(token);
        if self.config_admin == Some(d) {
            let name = "server.api_token".to_owned();
            return Ok(Caller::Token(Grant { id: CONFIG_ADMIN_ID.into(), name, role: Role::Admin }));
        }
        let tokens = self.by_digest.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        match tokens.get(&d) {
            Some(t) if t.record.revoked_ms.is_none() => {
                Ok(Caller::Token(Grant { id: t.id.clone(), name: t.record.name.clone(), role: t.record.role }))
            }
            Some(t) => Err(Refusal::Unauthenticated(format!("the token `{}` was revoked", t.record.name))),
            None => Err(Refusal::Unauthenticated("unknown API token".into())),
        }
    }

    /// Creates a token (made durable before it is returned); the token
    /// itself is returned once and never kept. Blocks on storage.
    pub fn create(&self, name: &str, role: Role, now_ms: u64) -> Result<(String, TokenInfo), AccessError> {
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if name.is_empty() || name.len() > 64 || !name.chars().all(valid) {
            return Err(AccessError::BadName(name.chars().take(80).collect()));
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| AccessError::Random(e.to_string()))?;
        let token = format!("shoal_api_{}", Digest(secret).to_hex());
        let d = digest_of(&token);
        let record = TokenRecord { name: name.to_owned(), role, created_ms: now_ms, revoked_ms: None };
        let mut tokens = self.by_digest.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if tokens.values().any(|t| t.record.name == name && t.record.revoked_ms.is_none()) {
            return Err(AccessError::NameTaken(name.to_owned()));
        }
        if tokens.len() >= MAX_TOKENS {
            return Err(AccessError::Store(StoreError::Db(format!("at most {MAX_TOKENS} tokens are kept"))));
        }
        self.stored()?.put_api_token(&d, &record)?;
        let info = TokenInfo { id: id_of(&d), record };
        tokens.insert(d, info.clone());
        Ok((token, info))
    }

    /// Revokes the live token with this name or id (durable before it
    /// returns; from then on every call with it is refused). Blocks on
    /// storage.
    pub fn revoke(&self, name_or_id: &str, now_ms: u64) -> Result<TokenInfo, AccessError> {
        let mut tokens = self.by_digest.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut matches: Vec<_> =
            tokens.iter().filter(|(_, t)| t.id == name_or_id || t.record.name == name_or_id).collect();
        // A name may be reused after a revocation: the live one is meant.
        matches.sort_by_key(|(_, t)| t.record.revoked_ms.is_some());
        let Some((d, t)) = matches.first().map(|(d, t)| (**d, (*t).clone())) else {
            return Err(AccessError::NoSuchToken(name_or_id.chars().take(80).collect()));
        };
        if t.record.revoked_ms.is_some() {
            return Err(AccessError::AlreadyRevoked(t.record.name));
        }
        let mut revoked = t;
        revoked.record.revoked_ms = Some(now_ms);
        self.stored()?.put_api_token(&d, &revoked.record)?;
        tokens.insert(d, revoked.clone());
        self.revocations.send_modify(|n| *n += 1);
        Ok(revoked)
    }

    /// Changes on every revocation: what an open stream waits on.
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// Whether the token with this id may still be used (the
    /// configuration's admin token always may).
    pub fn is_live(&self, token_id: &str) -> bool {
        if token_id == CONFIG_ADMIN_ID {
            return true;
        }
        let tokens = self.by_digest.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens.values().any(|t| t.id == token_id && t.record.revoked_ms.is_none())
    }

    /// Every token (live and revoked), oldest first.
    pub fn list(&self) -> Vec<TokenInfo> {
        let tokens = self.by_digest.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut all: Vec<TokenInfo> = tokens.values().cloned().collect();
        all.sort_by(|a, b| a.record.created_ms.cmp(&b.record.created_ms).then_with(|| a.id.cmp(&b.id)));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_table_is_least_privilege() {
        let token = |role| Caller::Token(Grant { id: "me".into(), name: "t".into(), role });
        let all = [
            Op::Swarm,
            Op::ReadJobs,
            Op::StateDiffs,
            Op::Metrics,
            Op::Submit,
            Op::CancelJob,
            Op::DeleteJob,
            Op::CloseEpoch,
            Op::Tokens,
            Op::Backup,
            Op::Approve,
        ];
        for op in all {
            assert_eq!(token(Role::Admin).scope(op), Ok(Scope::All), "{op:?}");
        }
        let read = token(Role::Read);
        let submit = token(Role::Submit);
        for op in [Op::Swarm, Op::ReadJobs, Op::StateDiffs, Op::Metrics] {
            assert_eq!(read.scope(op), Ok(Scope::All), "{op:?}");
        }
        for op in [Op::Submit, Op::CancelJob, Op::DeleteJob, Op::CloseEpoch, Op::Tokens, Op::Backup, Op::Approve] {
            assert!(matches!(read.scope(op), Err(Refusal::PermissionDenied(_))), "{op:?}");
        }
        assert_eq!(submit.scope(Op::Submit), Ok(Scope::All));
        assert_eq!(submit.scope(Op::Swarm), Ok(Scope::All));
        assert_eq!(submit.scope(Op::ReadJobs), Ok(Scope::Owned("me".into())));
        assert_eq!(submit.scope(Op::CancelJob), Ok(Scope::Owned("me".into())));
        assert_eq!(submit.scope(Op::DeleteJob), Ok(Scope::Owned("me".into())));
        for op in [Op::StateDiffs, Op::Metrics, Op::CloseEpoch, Op::Tokens, Op::Backup, Op::Approve] {
            assert!(matches!(submit.scope(op), Err(Refusal::PermissionDenied(_))), "{op:?}");
        }
        let anon = |a| Caller::Anonymous(a);
        assert_eq!(anon(Anonymous::Swarm).scope(Op::Swarm), Ok(Scope::All));
        assert!(matches!(anon(Anonymous::Swarm).scope(Op::ReadJobs), Err(Refusal::Unauthenticated(_))));
        assert_eq!(anon(Anonymous::Read).scope(Op::StateDiffs), Ok(Scope::All));
        assert!(matches!(anon(Anonymous::Read).scope(Op::Submit), Err(Refusal::Unauthenticated(_))));
        for op in all {
            assert!(matches!(anon(Anonymous::None).scope(op), Err(Refusal::Unauthenticated(_))), "{op:?}");
            assert_eq!(anon(Anonymous::Admin).scope(op), Ok(Scope::All));
        }
        assert_eq!(Anonymous::Auto.resolve(false), Anonymous::Admin);
        assert_eq!(Anonymous::Auto.resolve(true), Anonymous::None);
        assert_eq!(Anonymous::Swarm.resolve(false), Anonymous::Swarm);
    }
}
