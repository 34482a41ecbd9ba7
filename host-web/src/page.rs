//! The page side: starts the worker's Web Worker and drives it.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{MessageEvent, Worker, WorkerOptions, WorkerType};

use crate::control::{Control, StartOptions, Status, ToPage};

/// A status listener written in Rust (the dashboard's contribute page).
type RustListener = Box<dyn Fn(&Status)>;

#[derive(Default)]
struct Shared {
    ready: bool,
    pending: Vec<String>,
    listener: Option<js_sys::Function>,
    rust_listeners: Vec<RustListener>,
    last: Option<Status>,
}

/// This tab as a Shoal worker. The compute runs in a dedicated Web Worker
/// (so the page stays responsive); this handle sends it controls and
/// receives its status.
///
/// ```js
/// import init, { ShoalWorker } from './shoal_web.js';
/// await init();
/// const w = new ShoalWorker('./shoal-worker.js');
/// w.onStatus(s => console.log(s.phase, s.completed));
/// w.start({ url: 'ws://127.0.0.1:14690/ws', gpuShare: 50 });
/// ```
#[wasm_bindgen]
pub struct ShoalWorker {
    worker: Worker,
    shared: Rc<RefCell<Shared>>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    on_page_hide: Option<Closure<dyn FnMut()>>,
}

#[wasm_bindgen]
impl ShoalWorker {
    /// Starts the Web Worker from `script_url` (a module script that loads
    /// this crate's wasm and calls `worker_entry`). The worker stops cleanly
    /// — it says goodbye to the coordinator — when the page is hidden for
    /// good (`pagehide`).
    #[wasm_bindgen(constructor)]
    pub fn new(script_url: &str) -> Result<ShoalWorker, JsValue> {
        let options = WorkerOptions::new();
        options.set_type(WorkerType::Module);
        let worker = Worker::new_with_options(script_url, &options)?;
        let shared = Rc::new(RefCell::new(Shared::default()));
        let on_message = {
            let shared = Rc::clone(&shared);
            let worker = worker.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
                let Some(text) = e.data().as_string() else { return };
                match serde_json::from_str::<ToPage>(&text) {
                    Ok(ToPage::Ready) => {
                        let pending = {
                            let mut s = shared.borrow_mut();
                            s.ready = true;
                            std::mem::take(&mut s.pending)
                        };
                        for p in pending {
                            let _ = worker.post_message(&JsValue::from_str(&p));
                        }
                    }
                    Ok(ToPage::Status(status)) => deliver(&shared, &text, &status),
                    Err(err) => web_sys::console::warn_1(&JsValue::from_str(&format!("shoal worker: {err}"))),
                }
            })
        };
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let on_page_hide = web_sys::window().map(|window| {
            let worker = worker.clone();
            let close = Closure::<dyn FnMut()>::new(move || {
                if let Ok(json) = serde_json::to_string(&Control::Stop) {
                    let _ = worker.post_message(&JsValue::from_str(&json));
                }
            });
            let _ = window.add_event_listener_with_callback("pagehide", close.as_ref().unchecked_ref());
            close
        });
        Ok(ShoalWorker { worker, shared, _on_message: on_message, on_page_hide })
    }

    /// Connects to the coordinator and takes work. `options` is an object:
    /// `{url, token?, workerId?, gpuShare?, maxConcurrent?, useGpu?}`
    /// (without a token the tab joins as a guest).
    pub fn start(&self, options: &JsValue) -> Result<(), JsValue> {
        let json = js_sys::JSON::stringify(options)?.as_string().unwrap_or_default();
        let options: StartOptions =
            serde_json::from_str(&json).map_err(|e| JsValue::from_str(&format!("start options: {e}")))?;
        options.validate().map_err(|e| JsValue::from_str(&e))?;
        self.send(&Control::Start(options));
        Ok(())
    }

    /// Leaves the coordinator and stays idle.
    pub fn stop(&self) {
        self.send(&Control::Stop);
    }

    /// Leaves the coordinator (its work goes to other workers) until
    /// [`ShoalWorker::resume`].
    pub fn pause(&self) {
        self.send(&Control::Pause);
    }

    /// Rejoins after a pause.
    pub fn resume(&self) {
        self.send(&Control::Resume);
    }

    /// Uses at most `percent` (10–100) of the GPU's time.
    #[wasm_bindgen(js_name = setGpuShare)]
    pub fn set_gpu_share(&self, percent: u8) {
        self.send(&Control::SetGpuShare { percent });
    }

    /// Calls `listener` with every new status (a plain object: `phase`,
    /// `worker_id`, `device`, `gpu_share`, `completed`, `running`,
    /// `connections`, `busy_ms`, `last_reason`).
    #[wasm_bindgen(js_name = onStatus)]
    pub fn on_status(&self, listener: js_sys::Function) {
        self.shared.borrow_mut().listener = Some(listener);
    }

    /// The last status, as JSON (`null` before the first).
    #[wasm_bindgen(js_name = statusJson)]
    pub fn status_json(&self) -> String {
        serde_json::to_string(&self.shared.borrow().last).unwrap_or_default()
    }

    /// Ends the Web Worker at once (no goodbye: prefer `stop` first).
    pub fn terminate(&self) {
        self.worker.terminate();
    }
}

impl ShoalWorker {
    /// Starts with options built in Rust.
    pub fn start_with(&self, options: StartOptions) -> Result<(), String> {
        options.validate()?;
        self.send(&Control::Start(options));
        Ok(())
    }

    /// Adds a status listener written in Rust.
    pub fn on_status_rust(&self, listener: impl Fn(&Status) + 'static) {
        self.shared.borrow_mut().rust_listeners.push(Box::new(listener));
    }

    /// The last status.
    pub fn status(&self) -> Option<Status> {
        self.shared.borrow().last.clone()
    }

    fn send(&self, control: &Control) {
        let Ok(json) = serde_json::to_string(control) else { return };
        let mut s = self.shared.borrow_mut();
        if s.ready {
            let _ = self.worker.post_message(&JsValue::from_str(&json));
        } else {
            s.pending.push(json);
        }
    }
}

impl Drop for ShoalWorker {
    fn drop(&mut self) {
        // The page outlives this handle: its listener must not call a dropped closure.
        if let (Some(window), Some(close)) = (web_sys::window(), self.on_page_hide.as_ref()) {
            let _ = window.remove_event_listener_with_callback("pagehide", close.as_ref().unchecked_ref());
        }
        self.worker.terminate();
    }
}

fn deliver(shared: &Rc<RefCell<Shared>>, json: &str, status: &Status) {
    // Listeners run with nothing borrowed: they may call back into the handle.
    let (listener, rust_listeners) = {
        let mut s = shared.borrow_mut();
        s.last = Some(status.clone());
        (s.listener.clone(), std::mem::take(&mut s.rust_listeners))
    };
    for l in &rust_listeners {
        l(status);
    }
    {
        let mut s = shared.borrow_mut();
        let added = std::mem::replace(&mut s.rust_listeners, rust_listeners);
        s.rust_listeners.extend(added);
    }
    if let Some(f) = listener {
        if let Ok(obj) = js_sys::JSON::parse(json) {
            let _ = f.call1(&JsValue::NULL, &obj);
        }
    }
}
