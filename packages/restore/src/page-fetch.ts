import { Worker } from 'node:worker_threads';
import { WalshipError } from '@walship/vfs';
import type { ReplicaSource } from './options.js';
import type { FetchRange, FetchRequest, FetchWorkerData } from './page-fetch-protocol.js';

export { PREFETCH_BYTES, type FetchRange } from './page-fetch-protocol.js';

let quietSdkWarning = false;

/**
 * The walship CLI drops the AWS SDK's Node 20 end-of-support warning in its own process (cli.ts);
 * fetch threads started after this call drop it too. The library never calls it.
 */
export function hideSdkWarningInFetchThreads(): void {
  quietSdkWarning = true;
}

const ERROR_BYTES = 16 * 1024;

/**
 * Synchronous ranged GETs for SQLite's xRead: a worker thread owns an S3 client and performs the
 * requests (in parallel within one call, with the store's own retries and timeouts), while the
 * calling thread waits on a shared buffer. Nothing but bytes and an error's code, message and
 * details cross between the threads.
 */
export class SyncFetcher {
  readonly #worker: Worker;
  readonly #stats: Float64Array;
  readonly #location: string;
  readonly #timeoutMs: number;
  #closed = false;
  #waitedMs = 0;
  /** The data buffer of the last request that succeeded, for the next one. */
  #spare: SharedArrayBuffer | null = null;

  constructor(s3: NonNullable<ReplicaSource['s3']>, options: { location: string }) {
    const { client: _client, ...plain } = s3;
    const stats = new SharedArrayBuffer(32);
    this.#stats = new Float64Array(stats);
    this.#location = options.location;
    const retry = s3.retry ?? {};
    // The store's retries end every request; this only catches a fetch thread that stopped answering.
    this.#timeoutMs = ((retry.requestTimeoutMs ?? 30_000) + (retry.maxDelayMs ?? 5_000)) * (retry.attempts ?? 5) + 10_000;
    const data: FetchWorkerData = { s3: plain, stats, quietSdkWarning };
    this.#worker = new Worker(new URL('./page-fetch-worker.js', import.meta.url), { workerData: data });
    this.#worker.unref();
  }

  get gets(): number {
    return this.#stats[0] ?? 0;
  }

  get bytes(): number {
    return this.#stats[1] ?? 0;
  }

  /** When the fetch thread had loaded its modules and built its client (ms since the epoch), 0 before. */
  get readyAt(): number {
    return this.#stats[2] ?? 0;
  }

  /** Whether the fetch thread reads with its own SigV4 GETs (true) or loaded the AWS SDK (false); null before it is ready. */
  get lightClient(): boolean | null {
    return this.readyAt > 0 ? this.#stats[3] === 1 : null;
  }

  /** Milliseconds the calling thread spent waiting for GETs (SQLite's reads blocked on the store). */
  get waitedMs(): number {
    return this.#waitedMs;
  }

  /**
   * Performs the GETs and returns their bytes, laid out by each range's `at`, valid until the next
   * call (its buffer is reused); throws a typed error.
   * `prefetch` ranges are started in the background for a later call (read-ahead).
   */
  fetch(ranges: FetchRange[], size: number, prefetch: FetchRange[] = []): Uint8Array {
    if (this.#closed) throw new WalshipError('ERR_CLOSED', `${this.#location}: the replica is closed; open it again to query it`);
    const control = new SharedArrayBuffer(8);
    // The last request's buffer again when it is large enough (its pages are touched already); a
    // request that failed or timed out may still be written by the fetch thread, so its buffer is not kept.
    const data = this.#spare !== null && this.#spare.byteLength >= size ? this.#spare : new SharedArrayBuffer(size);
    this.#spare = null;
    const error = new SharedArrayBuffer(ERROR_BYTES);
    const ctrl = new Int32Array(control);
    this.#worker.postMessage({ ranges, prefetch, control, data, error } satisfies FetchRequest);
    const t0 = performance.now();
    const deadline = Date.now() + this.#timeoutMs;
    while (Atomics.load(ctrl, 0) === 0) {
      const left = deadline - Date.now();
      if (left <= 0 || Atomics.wait(ctrl, 0, 0, left) === 'timed-out') {
        if (Atomics.load(ctrl, 0) !== 0) break;
        throw new WalshipError('ERR_STORAGE_TIMEOUT', `${this.#location}: reading ${ranges[0]?.key ?? 'pages'} got no answer within ${this.#timeoutMs} ms; check that the store is reachable`, {
          details: { key: ranges[0]?.key, timeoutMs: this.#timeoutMs },
        });
      }
    }
    this.#waitedMs += performance.now() - t0;
    if (Atomics.load(ctrl, 0) === 1) {
      this.#spare = data;
      return new Uint8Array(data, 0, size);
    }
    const text = new TextDecoder().decode(new Uint8Array(error, 0, ctrl[1]));
    const e = JSON.parse(text) as { code: string; message: string; details: Record<string, unknown> };
    const key = ranges[0]?.key;
    const hint =
      e.code === 'ERR_OBJECT_MISSING'
        ? '; it was deleted after the replica was opened (retention, compaction): open it again'
        : e.code === 'ERR_STORAGE_OBJECT_CHANGED'
          ? '; the object was written again under its key after the replica read its index (a writer retrying an upload whose answer was lost, or another writer under this prefix): none of the new version\u2019s pages are used. Open the replica again'
          : '';
    throw new WalshipError(e.code, `${this.#location}: reading pages of ${key} failed: ${e.message}${hint}`, { details: { ...e.details, key } });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    void this.#worker.terminate();
  }
}
