//! Paging of list calls (AIP-158): a page size capped to the call's
//! maximum, and opaque page tokens that say which call and which request
//! they continue, and where. A token is base64url of a small postcard
//! record; one from another call, or for other request fields, or forged
//! into nonsense, is refused with a field violation on `page_token`.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tonic::Status;

use super::errors::bad_field;

/// Longest page token accepted (the ones handed out are far shorter).
const MAX_TOKEN_CHARS: usize = 256;

/// The list calls, as tokens name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum ListCall {
    /// `ListJobs`.
    Jobs,
    /// `ListJobKernels`.
    JobKernels,
    /// `ListWorkers`.
    Workers,
    /// `ListEpochs`.
    Epochs,
    /// `ListTokens`.
    Tokens,
    /// `ListContributors`.
    Contributors,
    /// `ListDeadLetters`.
    DeadLetters,
    /// `ListPendingTasks`.
    PendingTasks,
}

/// A call's paging limits.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    /// Items when the request says 0.
    pub(super) default: u32,
    /// Most items a page holds.
    pub(super) max: u32,
}

impl ListCall {
    /// The call's page limits (the proto documents the same numbers).
    pub(super) fn limits(self) -> Limits {
        match self {
            ListCall::Jobs | ListCall::Contributors => Limits { default: 50, max: 1000 },
            ListCall::JobKernels => Limits { default: 1000, max: 10_000 },
            ListCall::Workers | ListCall::Tokens | ListCall::DeadLetters | ListCall::PendingTasks => {
                Limits { default: 100, max: 1000 }
            }
            ListCall::Epochs => Limits { default: 20, max: 100 },
        }
    }

    /// The items a page holds for a request's `page_size`.
    pub(super) fn page_size(self, requested: u32) -> usize {
        let l = self.limits();
        (if requested == 0 { l.default } else { requested.min(l.max) }) as usize
    }
}

#[derive(Serialize, Deserialize)]
struct Token {
    call: ListCall,
    /// A fingerprint of the request's other fields.
    request: u64,
    /// Where the next page starts, as the call encodes it.
    after: Vec<u8>,
}

/// The page token that continues `call` after `after`.
pub(super) fn next_token(call: ListCall, request: u64, after: &[u8]) -> String {
    let t = Token { call, request, after: after.to_vec() };
    let bytes = postcard::to_allocvec(&t).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Where a request's page starts: None for the first page, else the
/// position its token carries.
pub(super) fn position(call: ListCall, request: u64, token: &str) -> Result<Option<Vec<u8>>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let refuse = |why: &str| bad_field("page_token", why);
    if token.len() > MAX_TOKEN_CHARS {
        return Err(refuse("not a page token this service handed out (too long)"));
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| refuse("not a page token this service handed out"))?;
    let t: Token = postcard::from_bytes(&bytes).map_err(|_| refuse("not a page token this service handed out"))?;
    if t.call != call {
        return Err(refuse("a page token of another list call"));
    }
    if t.request != request {
        return Err(refuse("a page token of a request with other fields (keep them as they were)"));
    }
    Ok(Some(t.after))
}

/// A position that is an offset into a sorted list.
pub(super) fn offset(after: Option<&[u8]>) -> Result<usize, Status> {
    match after {
        None => Ok(0),
        Some(b) => <[u8; 8]>::try_from(b)
            .map(|b| u64::from_be_bytes(b) as usize)
            .map_err(|_| bad_field("page_token", "not a page token this service handed out")),
    }
}

/// The token after a page of `len` items that started at offset `start`
/// of a list of `total` (empty: it was the last page).
pub(super) fn next_offset_token(call: ListCall, request: u64, start: usize, len: usize, total: usize) -> String {
    let end = start.saturating_add(len);
    if end < total {
        next_token(call, request, &(end as u64).to_be_bytes())
    } else {
        String::new()
    }
}

/// A fingerprint of request fields, for [`next_token`] and [`position`].
pub(super) fn fingerprint(parts: &[&[u8]]) -> u64 {
    let d = shoal_core::Digest::of_parts(parts.iter().copied());
    u64::from_be_bytes(d.as_bytes()[..8].try_into().unwrap_or_default())
}

/// One page of `items` from `start`, and the token for the next (empty at
/// the end).
pub(super) fn page_of<T>(
    call: ListCall,
    request: u64,
    mut items: Vec<T>,
    start: usize,
    size: usize,
) -> (Vec<T>, String) {
    let end = start.saturating_add(size).min(items.len());
    let next = if end < items.len() { next_token(call, request, &(end as u64).to_be_bytes()) } else { String::new() };
    let page = if start >= items.len() {
        Vec::new()
    } else {
        items.truncate(end);
        items.split_off(start)
    };
    (page, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_walk_a_list_once_and_tokens_only_continue_their_own_request() {
        let items: Vec<u32> = (0..25).collect();
        let (mut seen, mut token) = (Vec::new(), String::new());
        loop {
            let start = offset(position(ListCall::Workers, 9, &token).expect("valid").as_deref()).expect("offset");
            let (page, next) = page_of(ListCall::Workers, 9, items.clone(), start, 10);
            seen.extend(page);
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(seen, items);

        let token = next_token(ListCall::Workers, 9, &10u64.to_be_bytes());
        for (call, request, t) in [
            (ListCall::Jobs, 9, token.as_str()),
            (ListCall::Workers, 8, token.as_str()),
            (ListCall::Workers, 9, "not base64!"),
            (ListCall::Workers, 9, "AAAA"),
        ] {
            let e = position(call, request, t).expect_err("refused");
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{t}");
        }
        assert_eq!(ListCall::Jobs.page_size(0), 50);
        assert_eq!(ListCall::Jobs.page_size(5000), 1000);
    }
}
