//! The Web Worker's entry point: wires `postMessage` to the agent.

use futures_channel::mpsc::unbounded;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use crate::agent::Agent;
use crate::control::{Control, Status, ToPage};

/// Posts one message to the page.
fn post(scope: &DedicatedWorkerGlobalScope, message: &ToPage) {
    if let Ok(json) = serde_json::to_string(message) {
        // Posting only fails for uncloneable values; a string always clones.
        let _ = scope.post_message(&JsValue::from_str(&json));
    }
}

/// Starts the worker agent in this dedicated Web Worker. The worker script
/// (`shoal-worker.js`) calls it once the wasm is loaded; the agent then
/// takes [`Control`]s from the page and posts [`ToPage`] messages back.
#[wasm_bindgen]
pub fn worker_entry() -> Result<(), JsValue> {
    let scope: DedicatedWorkerGlobalScope = js_sys::global()
        .dyn_into()
        .map_err(|_| JsValue::from_str("worker_entry must run in a dedicated Web Worker"))?;
    let (tx, rx) = unbounded::<Control>();
    let reply = scope.clone();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
        let Some(text) = e.data().as_string() else { return };
        match serde_json::from_str::<Control>(&text) {
            Ok(c) => {
                let _ = tx.unbounded_send(c);
            }
            Err(err) => {
                let status = Status { last_reason: format!("bad control message: {err}"), ..Status::default() };
                web_sys::console::warn_1(&JsValue::from_str(&status.last_reason));
                post(&reply, &ToPage::Status(status));
            }
        }
    });
    scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    on_message.forget();
    let to_page = scope.clone();
    let agent = Agent::new(move |s: &Status| post(&to_page, &ToPage::Status(s.clone())));
    wasm_bindgen_futures::spawn_local(agent.run(rx));
    post(&scope, &ToPage::Ready);
    Ok(())
}
