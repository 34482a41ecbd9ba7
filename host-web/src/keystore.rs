//! The tab's contributor identity: an Ed25519 key kept in the browser's
//! IndexedDB, so the same browser (on the same site) is the same
//! contributor tomorrow, with its record and earnings.
//!
//! Where the browser has Ed25519 in WebCrypto the private key is a
//! non-extractable `CryptoKey`: script on the page can use it to sign but
//! can never read it out. Elsewhere the seed is kept (as bytes, in the same
//! store) and signed with in wasm. Without IndexedDB (some private modes)
//! the key lives only as long as the Web Worker, and the status says so.
//!
//! A browser-wide Web Lock on the identity keeps two tabs of one browser
//! from joining as the same worker at once (the coordinator would let each
//! replace the other): the second tab waits until the first lets go.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use shoal_core::identity::Identity;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{CryptoKey, IdbDatabase, IdbOpenDbRequest, IdbRequest, IdbTransactionMode, WorkerGlobalScope};

const DB: &str = "shoal";
const STORE: &str = "identity";
const KEY: &str = "key";

/// Where the identity's secret is.
#[derive(Clone, Debug)]
pub(crate) enum TabKey {
    /// A non-extractable WebCrypto key (kept in IndexedDB).
    WebCrypto {
        /// The private key: it signs, it is never read.
        private: CryptoKey,
        /// The public key, raw.
        public: [u8; 32],
    },
    /// A seed signed with in wasm (kept in IndexedDB, or nowhere).
    Wasm(Identity),
}

/// The identity, and how long it lasts.
#[derive(Clone, Debug)]
pub(crate) struct TabIdentity {
    /// The key.
    pub(crate) key: TabKey,
    /// Where it is kept: `webcrypto`, `indexeddb` (a wasm seed) or
    /// `memory` (nothing kept: a new identity next time).
    pub(crate) kept: &'static str,
}

impl TabIdentity {
    /// The public key.
    pub(crate) fn public_key(&self) -> [u8; 32] {
        match &self.key {
            TabKey::WebCrypto { public, .. } => *public,
            TabKey::Wasm(i) => i.public_key(),
        }
    }

    /// Ed25519 over `message`.
    pub(crate) async fn sign(&self, message: &[u8]) -> Result<[u8; 64], String> {
        match &self.key {
            TabKey::Wasm(i) => Ok(i.sign(message)),
            TabKey::WebCrypto { private, .. } => {
                let promise = subtle()?.sign_with_str_and_u8_array("Ed25519", private, message).map_err(js_err)?;
                let sig = JsFuture::from(promise).await.map_err(js_err)?;
                Uint8Array::new(&sig).to_vec().try_into().map_err(|_| "WebCrypto made no 64-byte signature".into())
            }
        }
    }
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(js_err)`
fn js_err(e: JsValue) -> String {
    e.dyn_ref::<js_sys::Error>().map_or_else(|| format!("{e:?}"), |e| String::from(e.message()))
}

fn scope() -> Result<WorkerGlobalScope, String> {
    js_sys::global().dyn_into::<WorkerGlobalScope>().map_err(|_| "not in a Web Worker".to_owned())
}

fn subtle() -> Result<web_sys::SubtleCrypto, String> {
    Ok(scope()?.crypto().map_err(js_err)?.subtle())
}

/// A request's result, once it succeeds.
async fn done(request: &IdbRequest) -> Result<JsValue, String> {
    let promise = Promise::new(&mut |resolve, reject| {
        let req = request.clone();
        let ok = Closure::once_into_js(move || {
            let _ = resolve.call1(&JsValue::NULL, &req.result().unwrap_or(JsValue::UNDEFINED));
        });
        let req = request.clone();
        let failed = Closure::once_into_js(move || {
            let why = req.error().ok().flatten().map_or_else(|| "failed".to_owned(), |e| e.message());
            let _ = reject.call1(&JsValue::NULL, &JsValue::from_str(&why));
        });
        request.set_onsuccess(Some(ok.unchecked_ref()));
        request.set_onerror(Some(failed.unchecked_ref()));
    });
    JsFuture::from(promise).await.map_err(|e| e.as_string().unwrap_or_else(|| js_err(e)))
}

async fn open_db() -> Result<IdbDatabase, String> {
    let factory = scope()?.indexed_db().map_err(js_err)?.ok_or("this browser gives no IndexedDB here")?;
    let open: IdbOpenDbRequest = factory.open_with_u32(DB, 1).map_err(js_err)?;
    let upgrading = open.clone();
    let upgrade = Closure::once_into_js(move || {
        if let Ok(db) = upgrading.result().and_then(JsCast::dyn_into::<IdbDatabase>) {
            let _ = db.create_object_store(STORE);
        }
    });
    open.set_onupgradeneeded(Some(upgrade.unchecked_ref()));
    done(&open).await?.dyn_into::<IdbDatabase>().map_err(|_| "IndexedDB opened no database".into())
}

async fn read(db: &IdbDatabase) -> Result<JsValue, String> {
    let tx = db.transaction_with_str_and_mode(STORE, IdbTransactionMode::Readonly).map_err(js_err)?;
    let store = tx.object_store(STORE).map_err(js_err)?;
    done(&store.get(&JsValue::from_str(KEY)).map_err(js_err)?).await
}

/// Stores `record` unless another tab stored one first (then that one is read).
async fn add(db: &IdbDatabase, record: &Object) -> Result<JsValue, String> {
    let tx = db.transaction_with_str_and_mode(STORE, IdbTransactionMode::Readwrite).map_err(js_err)?;
    let store = tx.object_store(STORE).map_err(js_err)?;
    match done(&store.add_with_key(record, &JsValue::from_str(KEY)).map_err(js_err)?).await {
        Ok(_) => Ok(record.into()),
        Err(_) => read(db).await,
    }
}

fn identity_of(record: &JsValue) -> Option<TabIdentity> {
    let kind = Reflect::get(record, &"kind".into()).ok()?.as_string()?;
    let bytes = |field: &str| -> Option<[u8; 32]> {
        Uint8Array::new(&Reflect::get(record, &field.into()).ok()?).to_vec().try_into().ok()
    };
    match kind.as_str() {
        "webcrypto" => {
            let private = Reflect::get(record, &"privateKey".into()).ok()?.dyn_into::<CryptoKey>().ok()?;
            Some(TabIdentity { key: TabKey::WebCrypto { private, public: bytes("publicKey")? }, kept: "webcrypto" })
        }
        "seed" => Some(TabIdentity { key: TabKey::Wasm(Identity::from_seed(&bytes("seed")?)), kept: "indexeddb" }),
        _ => None,
    }
}

/// A new record: a WebCrypto key pair if the browser makes Ed25519 keys,
/// else a random seed.
async fn new_record(force_wasm: bool) -> Result<Object, String> {
    let record = Object::new();
    let set = |k: &str, v: &JsValue| Reflect::set(&record, &k.into(), v).map(|_| ()).map_err(js_err);
    if !force_wasm {
        let usages = js_sys::Array::of2(&"sign".into(), &"verify".into());
        if let Ok(pair) = async {
            let pair = JsFuture::from(subtle()?.generate_key_with_str("Ed25519", false, &usages).map_err(js_err)?)
                .await
                .map_err(js_err)?;
            let public: CryptoKey = Reflect::get(&pair, &"publicKey".into()).map_err(js_err)?.unchecked_into();
            let raw = JsFuture::from(subtle()?.export_key("raw", &public).map_err(js_err)?).await.map_err(js_err)?;
            Ok::<_, String>((Reflect::get(&pair, &"privateKey".into()).map_err(js_err)?, Uint8Array::new(&raw)))
        }
        .await
        {
            set("kind", &"webcrypto".into())?;
            set("privateKey", &pair.0)?;
            set("publicKey", &pair.1)?;
            return Ok(record);
        }
    }
    let mut seed = [0u8; 32];
    scope()?.crypto().map_err(js_err)?.get_random_values_with_u8_array(&mut seed).map_err(js_err)?;
    set("kind", &"seed".into())?;
    set("seed", &Uint8Array::from(&seed[..]))?;
    Ok(record)
}

/// This browser's identity: the stored one, or a new one stored now.
/// `force_wasm` skips WebCrypto (to test the fallback). Without IndexedDB
/// the identity is kept in memory only: `kept` says so, with a note for
/// the user. Fails only without any cryptographic randomness.
pub(crate) async fn load_or_create(force_wasm: bool) -> Result<(TabIdentity, Option<String>), String> {
    let stored = async {
        let db = open_db().await?;
        let existing = read(&db).await?;
        let record = match identity_of(&existing) {
            Some(found) => return Ok(found),
            None => add(&db, &new_record(force_wasm).await?).await?,
        };
        identity_of(&record).ok_or_else(|| "the stored identity is unreadable".to_owned())
    }
    .await;
    match stored {
        Ok(identity) => Ok((identity, None)),
        Err(why) => {
            let mut seed = [0u8; 32];
            scope()?.crypto().map_err(js_err)?.get_random_values_with_u8_array(&mut seed).map_err(js_err)?;
            let note = format!("this browser keeps no identity here ({why}): credit lasts this session only");
            Ok((TabIdentity { key: TabKey::Wasm(Identity::from_seed(&seed)), kept: "memory" }, Some(note)))
        }
    }
}

/// The browser-wide lock on an identity, held while this tab works as it.
pub(crate) struct IdentityLock {
    release: Option<Function>,
}

impl Drop for IdentityLock {
    fn drop(&mut self) {
        if let Some(f) = self.release.take() {
            let _ = f.call0(&JsValue::NULL);
        }
    }
}

/// Takes the lock named `name` if no other tab of this browser holds it
/// (None: one does). Without Web Locks there is no lock to take.
pub(crate) async fn try_lock(name: &str) -> Result<Option<IdentityLock>, String> {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).map_err(js_err)?;
    let locks = Reflect::get(&navigator, &"locks".into()).unwrap_or(JsValue::UNDEFINED);
    let Ok(request) = Reflect::get(&locks, &"request".into()).and_then(JsCast::dyn_into::<Function>) else {
        return Ok(Some(IdentityLock { release: None }));
    };
    let (tx, rx) = futures_channel::oneshot::channel::<Option<Function>>();
    let tx = Rc::new(RefCell::new(Some(tx)));
    let granted = Closure::once_into_js(move |lock: JsValue| -> JsValue {
        let send = |v| {
            if let Some(tx) = tx.borrow_mut().take() {
                let _ = tx.send(v);
            }
        };
        if lock.is_null() {
            send(None);
            return Promise::resolve(&JsValue::UNDEFINED).into();
        }
        // Held until this promise resolves: when the IdentityLock is dropped.
        let mut release = None;
        let held = Promise::new(&mut |resolve, _| release = Some(resolve));
        send(release);
        held.into()
    });
    let options = Object::new();
    Reflect::set(&options, &"ifAvailable".into(), &JsValue::TRUE).map_err(js_err)?;
    request.call3(&locks, &JsValue::from_str(name), &options, &granted).map_err(js_err)?;
    match rx.await {
        Ok(Some(release)) => Ok(Some(IdentityLock { release: Some(release) })),
        Ok(None) => Ok(None),
        Err(_) => Err("the browser's lock manager never answered".into()),
    }
}
