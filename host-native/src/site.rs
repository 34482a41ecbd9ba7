//! The pages the HTTP port serves at `/`: the dashboard and the browser
//! worker (HTML, JS, wasm, CSS). They come from a folder when
//! `server.dist` names one (development: a fresh `trunk build`), else from
//! the files embedded in the binary when it was built (`SHOAL_EMBED_SITE`,
//! set by `cargo xtask build` and `cargo xtask up`), else a page says how
//! to build them. One `shoal` file therefore serves the whole site from any
//! working directory.

use std::path::{Path, PathBuf};

use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::Router;
use tower_http::services::{ServeDir, ServeFile};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/site.rs"));
}

/// Files by path relative to the site's root, sorted by path.
pub type Files = &'static [(&'static str, &'static [u8])];

/// The files embedded in this binary (empty when it was built without a site).
pub fn embedded_files() -> Files {
    embedded::FILES
}

/// Where the site comes from.
#[derive(Clone, Debug)]
pub enum Site {
    /// A folder on disk (`server.dist`).
    Folder(PathBuf),
    /// Files built into the binary.
    Embedded(Files),
    /// Nothing: a page says how to build it.
    Missing,
}

impl Site {
    /// The site for `dist` (`server.dist`): that folder when named (it must
    /// hold an `index.html`), else the embedded files, else none.
    pub fn choose(dist: &Path) -> Result<Site, String> {
        if !dist.as_os_str().is_empty() {
            if !dist.join("index.html").is_file() {
                return Err(format!("server.dist = {} holds no index.html (a built site)", dist.display()));
            }
            return Ok(Site::Folder(dist.to_owned()));
        }
        Ok(if embedded_files().is_empty() { Site::Missing } else { Site::Embedded(embedded_files()) })
    }

    /// Whether the site has this file (`index.html`, `worker.html`).
    pub fn has(&self, name: &str) -> bool {
        match self {
            Site::Folder(d) => d.join(name).is_file(),
            Site::Embedded(files) => find(files, name).is_some(),
            Site::Missing => false,
        }
    }

    /// `router` with the site as its fallback: every path the API does not
    /// take, gzip-compressed for browsers that accept it; a path that is
    /// not a file gets `index.html` (the dashboard routes by `#page`).
    pub fn serve(self, router: Router) -> Router {
        use tower_http::compression::Compression;
        match self {
            Site::Folder(dist) => router.fallback_service(Compression::new(
                ServeDir::new(&dist).fallback(ServeFile::new(dist.join("index.html"))),
            )),
            Site::Embedded(files) => {
                router.fallback_service(Compression::new(axum::routing::get(embedded_file).with_state(files)))
            }
            Site::Missing => router.fallback(missing),
        }
    }
}

fn find(files: Files, name: &str) -> Option<&'static [u8]> {
    files.binary_search_by(|(n, _)| (*n).cmp(name)).ok().map(|i| files[i].1)
}

/// The media type of a site file, by its extension.
fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" | "ts" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Trunk names built files `name-<16 hex digits>[_bg].ext`: they never change
/// under that name and may be kept; everything else is checked each time.
fn cache_control(name: &str) -> &'static str {
    let stem = name.rsplit('/').next().unwrap_or(name).split('.').next().unwrap_or_default().trim_end_matches("_bg");
    // Trunk writes its 64-bit hash in hex without leading zeros: 16 digits,
    // fewer one build in sixteen (a name with 15 was served uncached once).
    let hashed = stem
        .rsplit_once('-')
        .is_some_and(|(_, h)| (8..=16).contains(&h.len()) && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if hashed {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    }
}

async fn embedded_file(State(files): State<Files>, uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let name = if path.is_empty() { "index.html" } else { path };
    let (name, bytes) = match find(files, name) {
        Some(b) => (name, b),
        // Not a file: the dashboard (it routes by `#page`); a missing asset is a 404.
        None if !name.rsplit('/').next().unwrap_or_default().contains('.') => match find(files, "index.html") {
            Some(b) => ("index.html", b),
            None => return StatusCode::NOT_FOUND.into_response(),
        },
        None => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, content_type(name)), (header::CACHE_CONTROL, cache_control(name))], bytes).into_response()
}

async fn missing() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(
            "<!doctype html><meta charset=utf-8><title>Shoal</title><h1>Shoal</h1>\
             <p>This <code>shoal</code> binary was built without the dashboard and the worker page. \
             Build one that carries them with <code>cargo xtask build</code> (or run <code>cargo xtask up</code>), \
             or point <code>server.dist</code> at a built site.</p>\
             <p>The API is served: <a href=/api/stats>/api/stats</a>, <a href=/metrics>/metrics</a>, \
             <a href=/healthz>/healthz</a>, gRPC and gRPC-web.</p>",
        ),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names_are_kept_and_pages_checked() {
        assert_eq!(cache_control("shoal-ui-322eec7d72da42be_bg.wasm"), "public, max-age=31536000, immutable");
        assert_eq!(cache_control("shoal_web_bg.wasm"), "no-cache", "the worker's files are not hashed");
        assert_eq!(cache_control("shoal-ui-322eec7d72da42be.js"), "public, max-age=31536000, immutable");
        assert_eq!(
            cache_control("shoal-ui-a34e363bf4ea90d_bg.wasm"),
            "public, max-age=31536000, immutable",
            "15 digits"
        );
        assert_eq!(cache_control("style-320ac9f38cb697a7.css"), "public, max-age=31536000, immutable");
        assert_eq!(cache_control("index.html"), "no-cache");
        assert_eq!(content_type("a/b.wasm"), "application/wasm");
        let files: Files = &[("a.js", b"js"), ("index.html", b"<html>")];
        assert_eq!(find(files, "a.js"), Some(&b"js"[..]));
        assert_eq!(find(files, "b.js"), None);
    }

    async fn get(site: Site, path: &str) -> (StatusCode, String, Vec<u8>) {
        use tower::ServiceExt as _;
        let request = axum::http::Request::get(path).body(axum::body::Body::empty()).expect("request");
        let response = site.serve(Router::new()).oneshot(request).await.expect("answered");
        let status = response.status();
        let kind = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body").to_vec();
        (status, kind, body)
    }

    #[tokio::test]
    async fn embedded_files_are_served_and_a_missing_site_says_how_to_build_it() {
        let files: Files = &[("app-0123456789abcdef.js", b"js!"), ("index.html", b"<html>"), ("worker.html", b"w")];
        let site = Site::Embedded(files);
        assert!(site.has("worker.html") && !site.has("nope.html"));
        assert_eq!(
            get(site.clone(), "/").await,
            (StatusCode::OK, "text/html; charset=utf-8".into(), b"<html>".to_vec())
        );
        let js = get(site.clone(), "/app-0123456789abcdef.js").await;
        assert_eq!((js.0, js.1.as_str(), &js.2[..]), (StatusCode::OK, "text/javascript; charset=utf-8", &b"js!"[..]));
        assert_eq!(get(site.clone(), "/jobs").await.2, b"<html>", "a page route gets the dashboard");
        assert_eq!(get(site, "/gone.js").await.0, StatusCode::NOT_FOUND, "a missing asset is not the dashboard");
        let (status, _, body) = get(Site::Missing, "/").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(String::from_utf8_lossy(&body).contains("cargo xtask build"));
        assert!(Site::choose(Path::new("/no/such/folder")).is_err(), "a named folder must hold a site");
    }
}
