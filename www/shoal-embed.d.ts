// Types of Shoal's embed kit (embed.js): `window.shoal` when loaded by a
// script tag, or `ShoalEmbed.create(options)` (the npm package's
// `createShoal`).

/** Where a browser worker stands. */
export type ShoalPhase = 'idle' | 'detecting' | 'connecting' | 'working' | 'reconnecting' | 'paused' | 'failed';

/** A snapshot of the worker, posted on every change. */
export interface ShoalStatus {
  phase: ShoalPhase;
  /** The id the coordinator knows this tab by (an identity's `id-…`). */
  worker_id: string | null;
  /** This browser's contributor identity, once loaded. */
  identity: string | null;
  /** Where its key is kept: `webcrypto`, `indexeddb` or `memory`. */
  identity_kept: string | null;
  device: { backend: string; name: string; vendor: string; device_type: string } | null;
  gpu_share: number;
  completed: number;
  running: number;
  connections: number;
  busy_ms: number;
  last_reason: string;
}

/** How to embed a worker. */
export interface ShoalOptions {
  /** The coordinator's worker WebSocket, `wss://host/ws`. */
  coordinator?: string;
  /** The URL embed.js was loaded from (its files are beside it). */
  scriptUrl?: string;
  /** Where the visitors' payouts go (the site owner's address). */
  payout?: string;
  /** A display name and team for leaderboards. */
  name?: string;
  team?: string;
  /** Percent of the GPU's time to use, 10–100 (default 30). */
  gpuShare?: number | string;
  /** `none`: no consent control; the site asks and calls consent(true). */
  ui?: 'none';
  /** Keep the key as a wasm seed even where WebCrypto has Ed25519. */
  wasmKey?: boolean;
}

/** The embedded worker. Events: `status` (detail: ShoalStatus), `consent` (detail: boolean), `error` (detail: string). */
export interface Shoal extends EventTarget {
  readonly status: ShoalStatus | null;
  readonly consented: boolean;
  /** Records the visitor's answer (remembered for this site); nothing runs without yes. */
  consent(yes: boolean): void;
  start(): void;
  stop(): void;
  pause(): void;
  resume(): void;
  setGpuShare(percent: number): void;
}

export declare function createShoal(options?: ShoalOptions): Shoal;
export default createShoal;

declare global {
  interface Window {
    shoal?: Shoal;
    ShoalEmbed?: { create(options?: ShoalOptions): Shoal };
  }
}
