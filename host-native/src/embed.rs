//! Workers embedded on other sites (`server.embed_origins`): which browser
//! origins may open worker connections, and the headers that let their
//! pages load the embed kit's files from this coordinator.
//!
//! A browser names the page's origin in the WebSocket upgrade (`Origin`).
//! Pages the coordinator serves itself (the dashboard, the worker page)
//! are always taken; a page of another site only when the operator lists
//! its origin, so nobody can put the operator's swarm on a site the
//! operator did not agree to (the visitors' credit, the site's payout
//! address). Native workers send no `Origin` and are not concerned.
//!
//! The kit's files ([`KIT_FILES`]) are served with
//! `Cross-Origin-Resource-Policy: cross-origin` and, for listed origins,
//! `Access-Control-Allow-Origin`: a module script and its wasm fetched
//! across origins need CORS, and a site isolated with COEP needs CORP.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// The files another site's page loads from the coordinator.
pub const KIT_FILES: [&str; 5] =
    ["embed.js", "shoal-embed.d.ts", "shoal-worker.js", "shoal_web.js", "shoal_web_bg.wasm"];

/// Which origins may embed workers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum EmbedOrigins {
    /// Only the coordinator's own pages.
    #[default]
    OwnOnly,
    /// These origins too (normalised: `scheme://host[:port]`, lower case,
    /// no default port).
    Listed(Vec<String>),
    /// Any site (`"*"`): for a public swarm that wants every embedder.
    Any,
}

/// `scheme://host[:port]` in lower case without the scheme's default port,
/// or None when `s` is not an http(s) origin (a path, a query or user info
/// make it not an origin).
pub fn normalise_origin(s: &str) -> Option<String> {
    let s = s.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, rest) = s.split_once("://")?;
    let default = match scheme {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    Some(format!("{scheme}://{}", rest.strip_suffix(default).unwrap_or(rest)))
}

/// The host of a `host[:port]` (an IPv6 literal keeps its brackets).
fn host_part(authority: &str) -> &str {
    match authority.rfind(']') {
        Some(end) => &authority[..=end],
        None => authority.split(':').next().unwrap_or(authority),
    }
}

impl EmbedOrigins {
    /// From `server.embed_origins`: origins, or `"*"` alone.
    pub fn parse(list: &[String]) -> Result<EmbedOrigins, String> {
        if list.iter().any(|o| o.trim() == "*") {
            return if list.len() == 1 {
                Ok(EmbedOrigins::Any)
            } else {
                Err("server.embed_origins: `*` takes every origin, so it stands alone".into())
            };
        }
        if list.is_empty() {
            return Ok(EmbedOrigins::OwnOnly);
        }
        list.iter()
            .map(|o| {
                normalise_origin(o).ok_or_else(|| {
                    format!("server.embed_origins: `{o}` is not an origin (`https://host[:port]`, nothing after)")
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(EmbedOrigins::Listed)
    }

    /// Whether a page of `origin` may embed workers (the coordinator's own
    /// pages aside).
    pub fn lists(&self, origin: &str) -> bool {
        match self {
            EmbedOrigins::Any => true,
            EmbedOrigins::OwnOnly => false,
            EmbedOrigins::Listed(list) => normalise_origin(origin).is_some_and(|o| list.contains(&o)),
        }
    }

    /// Whether a WebSocket upgrade with these headers may become a worker
    /// connection: no `Origin` (not a browser), the coordinator's own
    /// origin (its host and port as `Host` names them; only the host when
    /// `Host` has no port, as behind a reverse proxy that drops it), or a
    /// listed origin.
    pub fn allows_upgrade(&self, headers: &HeaderMap) -> Result<(), String> {
        let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
        let origin = origin.to_str().unwrap_or_default();
        let own = headers.get(header::HOST).and_then(|h| h.to_str().ok()).zip(normalise_origin(origin)).is_some_and(
            |(host, o)| {
                let authority = o.split_once("://").map_or("", |(_, a)| a);
                if host_part(host).len() == host.len() {
                    host_part(authority).eq_ignore_ascii_case(host)
                } else {
                    authority.eq_ignore_ascii_case(host)
                }
            },
        );
        if own || self.lists(origin) {
            Ok(())
        } else {
            Err(format!(
                "this coordinator does not take workers embedded on `{origin}` (its operator lists the sites \
                 that may in server.embed_origins)"
            ))
        }
    }
}

/// Adds the cross-origin headers to the kit's files.
pub async fn kit_headers(State(origins): State<Arc<EmbedOrigins>>, request: Request, next: Next) -> Response {
    let name = request.uri().path().trim_start_matches('/');
    let kit = KIT_FILES.contains(&name);
    let origin = request.headers().get(header::ORIGIN).cloned();
    let mut response = next.run(request).await;
    if !kit {
        return response;
    }
    let h = response.headers_mut();
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("cross-origin"));
    match (&*origins, origin) {
        (EmbedOrigins::Any, _) => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        }
        (listed, Some(o)) if o.to_str().is_ok_and(|o| listed.lists(o)) => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
            h.append(header::VARY, HeaderValue::from_static("origin"));
        }
        _ => {}
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).expect("host"));
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).expect("origin"));
        }
        h
    }

    #[test]
    fn origins_parse_and_normalise() {
        assert_eq!(normalise_origin("HTTPS://Site.example:443/"), Some("https://site.example".into()));
        assert_eq!(normalise_origin("http://127.0.0.1:8080"), Some("http://127.0.0.1:8080".into()));
        for bad in ["site.example", "ftp://x", "https://x/path", "https://u@x", "https://"] {
            assert_eq!(normalise_origin(bad), None, "{bad}");
        }
        assert_eq!(EmbedOrigins::parse(&[]), Ok(EmbedOrigins::OwnOnly));
        assert_eq!(EmbedOrigins::parse(&["*".into()]), Ok(EmbedOrigins::Any));
        assert!(EmbedOrigins::parse(&["*".into(), "https://a".into()]).is_err());
        assert!(EmbedOrigins::parse(&["https://a/b".into()]).expect_err("a path").contains("https://a/b"));
    }

    #[test]
    fn upgrades_come_from_own_pages_listed_sites_or_no_browser() {
        let listed = EmbedOrigins::parse(&["https://blog.example".into()]).expect("valid");
        let host = "shoal.example";
        assert!(listed.allows_upgrade(&headers(None, host)).is_ok(), "a native worker");
        assert!(listed.allows_upgrade(&headers(Some("https://shoal.example"), host)).is_ok(), "own page");
        assert!(listed.allows_upgrade(&headers(Some("http://shoal.example:8080"), "shoal.example:8080")).is_ok());
        assert!(listed.allows_upgrade(&headers(Some("https://blog.example:443"), host)).is_ok(), "listed");
        let refused = listed.allows_upgrade(&headers(Some("https://evil.example"), host)).expect_err("unlisted");
        assert!(refused.contains("evil.example") && refused.contains("embed_origins"), "{refused}");
        assert!(listed.allows_upgrade(&headers(Some("null"), host)).is_err(), "a sandboxed page");
        assert!(EmbedOrigins::OwnOnly.allows_upgrade(&headers(Some("https://blog.example"), host)).is_err());
        assert!(EmbedOrigins::Any.allows_upgrade(&headers(Some("https://anyone.example"), host)).is_ok());
        assert!(EmbedOrigins::OwnOnly.allows_upgrade(&headers(Some("http://[::1]:9"), "[::1]:9")).is_ok());
        // Another port of the same host is another site; behind a proxy
        // that drops the port from Host, the host alone decides.
        assert!(listed.allows_upgrade(&headers(Some("http://shoal.example:8081"), "shoal.example:8080")).is_err());
        assert!(listed.allows_upgrade(&headers(Some("https://shoal.example:8443"), "shoal.example")).is_ok());
    }
}
