//! A tab's input cache in the browser's Cache Storage: each shared input
//! the session keeps ([`shoal_core::shared_inputs`]) is also stored under
//! `/shoal-input/<digest>`, so the tab's next visit (a reload, a new tab of
//! the same site) holds it again and its hello lists it. Where Cache
//! Storage is missing (a page served over plain http beyond localhost)
//! the cache lives in memory only. Every stored input is hashed when
//! loaded; one that is not what its name says is deleted, never used.

use bytes::Bytes;
use js_sys::{Array, Promise, Uint8Array};
use shoal_core::shared_inputs::{part_digest, InputCache};
use shoal_core::Digest;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, Request, Response, WorkerGlobalScope};

/// The Cache Storage cache the inputs go in.
const CACHE_NAME: &str = "shoal-inputs-v1";
/// Where an input is stored: this path and its digest's hex.
const PREFIX: &str = "/shoal-input/";

async fn open() -> Option<Cache> {
    let scope = js_sys::global().dyn_into::<WorkerGlobalScope>().ok()?;
    let caches = scope.caches().ok()?;
    JsFuture::from(caches.open(CACHE_NAME)).await.ok()?.dyn_into::<Cache>().ok()
}

async fn settle(p: Promise) -> Option<wasm_bindgen::JsValue> {
    JsFuture::from(p).await.ok()
}

/// The inputs this site's tabs kept, loaded into a cache of `capacity`
/// bytes (oldest first, so the newest stay when it is smaller).
pub(crate) async fn load(capacity: u64) -> InputCache<Bytes> {
    let mut cache = InputCache::logged(capacity);
    let Some(store) = open().await else { return cache };
    let Some(keys) = settle(store.keys()).await else { return cache };
    for request in Array::from(&keys).iter().filter_map(|r| r.dyn_into::<Request>().ok()) {
        let url = request.url();
        let digest = url.rsplit_once(PREFIX).and_then(|(_, hex)| hex.parse::<Digest>().ok());
        let bytes = match settle(store.match_with_str(&url)).await.and_then(|r| r.dyn_into::<Response>().ok()) {
            Some(r) => match r.array_buffer() {
                Ok(p) => settle(p).await.map(|b| Uint8Array::new(&b).to_vec()),
                Err(_) => None,
            },
            None => None,
        };
        match (digest, bytes) {
            (Some(d), Some(b)) if part_digest(&b) == d => {
                let len = b.len() as u64;
                cache.insert(d, len, Bytes::from(b));
            }
            _ => {
                let _ = settle(store.delete_with_str(&url)).await;
            }
        }
    }
    for change in cache.drain_changes() {
        if let shoal_core::shared_inputs::CacheChange::Dropped(d) = change {
            let _ = settle(store.delete_with_str(&format!("{PREFIX}{}", d.to_hex()))).await;
        }
    }
    cache
}

/// Stores a kept input (in the background).
pub(crate) fn keep(digest: Digest, bytes: Bytes) {
    wasm_bindgen_futures::spawn_local(async move {
        let Some(store) = open().await else { return };
        let mut body = bytes.to_vec();
        if let Ok(response) = Response::new_with_opt_u8_array(Some(&mut body)) {
            let _ = settle(store.put_with_str(&format!("{PREFIX}{}", digest.to_hex()), &response)).await;
        }
    });
}

/// Deletes a dropped input (in the background).
pub(crate) fn drop_input(digest: Digest) {
    wasm_bindgen_futures::spawn_local(async move {
        if let Some(store) = open().await {
            let _ = settle(store.delete_with_str(&format!("{PREFIX}{}", digest.to_hex()))).await;
        }
    });
}
