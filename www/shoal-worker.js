// The browser worker's Web Worker: loads Shoal's wasm and starts the agent,
// which then takes its controls from the page (see shoal-web's ShoalWorker).
import init, { worker_entry } from './shoal_web.js';

await init();
worker_entry();
