// Shoal's embed kit: one script tag lets a site's visitors lend their
// device's spare GPU (WebGPU; the CPU without one) to a Shoal swarm, with
// credit to the site's payout address.
//
//   <script src="https://COORDINATOR/embed.js" data-payout="ADDRESS"
//           data-gpu-share="30" async></script>
//
// Nothing runs before the visitor says yes in the small consent control
// (the choice is remembered per site). The worker runs in a dedicated Web
// Worker started from this coordinator's files; it pauses while the page
// is hidden, while the battery is low and discharging, and when the
// visitor says so, and never uses more than the GPU share. The same
// browser is the same contributor on its next visit (its key stays in
// this site's storage).
//
// Attributes: data-payout, data-name, data-team (credit), data-gpu-share
// (10-100, default 30), data-coordinator (the worker WebSocket URL;
// default: this script's host), data-ui="none" (no control: the site asks
// consent itself and calls shoal.consent(true)).
//
// JavaScript: window.shoal (or ShoalEmbed.create(options)) has start(),
// stop(), pause(), resume(), setGpuShare(percent), consent(yes),
// status, and dispatches 'status', 'consent' and 'error' events. Types:
// shoal-embed.d.ts beside this file.
(() => {
  'use strict';
  const MIN_BATTERY = 0.2;

  function create(init = {}) {
    // The coordinator's files: beside this script, or at the coordinator named.
    const base = init.scriptUrl ? new URL('.', init.scriptUrl)
      : init.coordinator ? new URL('/', init.coordinator.replace(/^ws/, 'http'))
      : new URL('.', location.href);
    const url = init.coordinator ?? `${base.protocol === 'https:' ? 'wss' : 'ws'}://${base.host}/ws`;
    const consentKey = `shoal-consent:${url}`;
    const events = new EventTarget();
    const state = {
      consented: localStorage.getItem(consentKey) === 'yes',
      userPaused: false,
      hidden: document.visibilityState === 'hidden',
      batteryLow: false,
      share: clampShare(init.gpuShare ?? 30),
      worker: null,
      ready: false,
      queue: [],
      started: false,
      running: false,
      status: null,
    };
    const options = () => {
      const o = { url, gpuShare: state.share };
      for (const k of ['payout', 'name', 'team']) if (init[k]) o[k] = init[k];
      if (init.wasmKey) o.wasmKey = true;
      return o;
    };

    function post(control) {
      const text = JSON.stringify(control);
      if (state.ready) state.worker.postMessage(text);
      else state.queue.push(text);
    }

    function spawn() {
      if (state.worker) return;
      // A worker script must be of the page's origin: a blob module that
      // imports this coordinator's bindings (CORS) is.
      const bindings = new URL('shoal_web.js', base).href;
      const source = `import init, { worker_entry } from ${JSON.stringify(bindings)};\nawait init();\nworker_entry();\n`;
      const blob = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
      const worker = new Worker(blob, { type: 'module', name: 'shoal' });
      worker.onmessage = e => {
        let m;
        try { m = JSON.parse(e.data); } catch { return; }
        if (m.type === 'ready') {
          state.ready = true;
          for (const t of state.queue.splice(0)) worker.postMessage(t);
        } else if (m.type === 'status') {
          delete m.type;
          state.status = m;
          render();
          events.dispatchEvent(new CustomEvent('status', { detail: m }));
        }
      };
      worker.onerror = e => {
        events.dispatchEvent(new CustomEvent('error', { detail: String(e.message ?? e) }));
      };
      state.worker = worker;
      addEventListener('pagehide', () => post({ type: 'stop' }));
    }

    // Runs exactly when the visitor agreed, has not paused, the page is
    // visible and the battery is not low and discharging.
    function reconcile() {
      const want = state.consented && !state.userPaused && !state.hidden && !state.batteryLow;
      if (want && !state.started) {
        spawn();
        post({ type: 'start', ...options() });
        state.started = state.running = true;
      } else if (want && !state.running) {
        post({ type: 'resume' });
        state.running = true;
      } else if (!want && state.running) {
        post({ type: 'pause' });
        state.running = false;
      }
      render();
    }

    document.addEventListener('visibilitychange', () => {
      state.hidden = document.visibilityState === 'hidden';
      reconcile();
    });
    if (navigator.getBattery) {
      navigator.getBattery().then(b => {
        const check = () => {
          state.batteryLow = !b.charging && b.level < MIN_BATTERY;
          reconcile();
        };
        b.addEventListener('levelchange', check);
        b.addEventListener('chargingchange', check);
        check();
      }, () => {});
    }

    // The consent control: a small box in a shadow root (the site's
    // styles do not reach it, nor it theirs).
    let ui = null;
    function mount() {
      if (init.ui === 'none' || ui) return;
      const host = document.createElement('shoal-embed');
      const root = host.attachShadow({ mode: 'open' });
      root.innerHTML = `<style>
        :host { all: initial; }
        .box { position: fixed; right: 12px; bottom: 12px; z-index: 2147483647; max-width: 300px;
               font: 13px/1.4 system-ui, sans-serif; color: #112; background: #fff; border: 1px solid #ccd;
               border-radius: 8px; padding: 10px 12px; box-shadow: 0 2px 10px rgba(0,0,0,.15); }
        button { font: inherit; margin: 6px 6px 0 0; padding: 3px 10px; cursor: pointer; }
        .line { color: #445; }
      </style>
      <div class="box" role="dialog" aria-label="Shoal compute">
        <div class="ask">This site can lend your device's spare GPU to a verified compute swarm
          (<span class="host"></span>) while the page is open, to credit <b class="payee"></b>.
          <div><button class="yes">Allow</button><button class="no">No thanks</button></div></div>
        <div class="run" hidden><span class="line"></span>
          <div><button class="pause">Pause</button><button class="stop">Stop for good</button></div></div>
      </div>`;
      const $ = s => root.querySelector(s);
      $('.host').textContent = base.host;
      $('.payee').textContent = init.payout || 'this site';
      $('.yes').onclick = () => api.consent(true);
      $('.no').onclick = () => { api.consent(false); host.remove(); ui = null; };
      $('.pause').onclick = () => (state.userPaused ? api.resume() : api.pause());
      $('.stop').onclick = () => api.consent(false);
      document.body.appendChild(host);
      ui = { host, $ };
    }
    function render() {
      if (!ui) return;
      const { $ } = ui;
      $('.ask').hidden = state.consented;
      $('.run').hidden = !state.consented;
      const s = state.status;
      const why = state.userPaused ? 'paused' : state.hidden ? 'paused (page hidden)'
        : state.batteryLow ? 'paused (battery low)' : s?.phase ?? 'starting';
      $('.line').textContent = `Shoal: ${why}${s ? `, ${s.completed} tasks done` : ''}`;
      $('.pause').textContent = state.userPaused ? 'Resume' : 'Pause';
    }

    const api = Object.assign(events, {
      get status() { return state.status; },
      get consented() { return state.consented; },
      // The visitor's answer (remembered for this site).
      consent(yes) {
        state.consented = !!yes;
        localStorage.setItem(consentKey, yes ? 'yes' : 'no');
        events.dispatchEvent(new CustomEvent('consent', { detail: state.consented }));
        if (!yes && state.started) {
          post({ type: 'stop' });
          state.started = state.running = false;
        }
        reconcile();
      },
      start() { state.userPaused = false; reconcile(); },
      stop() {
        if (state.started) post({ type: 'stop' });
        state.started = state.running = false;
        state.userPaused = true;
        render();
      },
      pause() { state.userPaused = true; reconcile(); },
      resume() { state.userPaused = false; reconcile(); },
      setGpuShare(percent) {
        state.share = clampShare(percent);
        if (state.started) post({ type: 'set_gpu_share', percent: state.share });
      },
    });

    if (document.body) mount();
    else addEventListener('DOMContentLoaded', mount, { once: true });
    reconcile();
    return api;
  }

  function clampShare(p) {
    const n = Math.round(Number(p));
    return Number.isFinite(n) ? Math.min(100, Math.max(10, n)) : 30;
  }

  globalThis.ShoalEmbed = { create };
  const script = typeof document === 'undefined' ? null : document.currentScript;
  if (script?.src && !globalThis.shoal) {
    const d = script.dataset;
    globalThis.shoal = create({
      scriptUrl: script.src,
      coordinator: d.coordinator,
      payout: d.payout,
      name: d.name,
      team: d.team,
      gpuShare: d.gpuShare,
      ui: d.ui,
      wasmKey: d.wasmKey !== undefined,
    });
  }
})();
