//! Shoal's dashboard: operators watch their swarm live, visitors lend their
//! tab. A Leptos (client-side rendered) app built by Trunk from
//! `www/index.html`, served by the coordinator at `/`; it reads the
//! coordinator over gRPC-web on its own origin and follows the live event
//! stream instead of polling.

// A binary: `pub` marks what its modules share, there is no public API.
#![allow(unreachable_pub)]

// Natively only the tests use the view model.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod view_model;

#[cfg(target_arch = "wasm32")]
mod api;
#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod pages;
#[cfg(target_arch = "wasm32")]
mod refresh;

fn main() {
    #[cfg(target_arch = "wasm32")]
    app::start();
}
