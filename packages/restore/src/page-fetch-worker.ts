// The thread that performs a replica's ranged GETs while the database's thread waits for them (SQLite
// reads synchronously; S3 answers asynchronously). See page-fetch.ts for the protocol.
// It imports nothing that loads the AWS SDK unless it must: with static credentials and an endpoint
// or region it signs its own GETs (@walship/storage/range-get), which makes the thread ready in a
// fraction of the time the SDK takes to load.
import { parentPort, workerData } from 'node:worker_threads';
import { createRangeReader, rangeReaderSupports, type RangeReader, type RangeReaderOptions } from '@walship/storage/range-get';
import { PREFETCH_BYTES, type FetchRange, type FetchRequest, type FetchWorkerData } from './page-fetch-protocol.js';

const data = workerData as FetchWorkerData;
if (data.quietSdkWarning) {
  const emit = process.emitWarning;
  process.emitWarning = function (this: NodeJS.Process, warning: string | Error, ...rest: unknown[]): void {
    const text = typeof warning === 'string' ? warning : `${warning?.name}: ${warning?.message}`;
    if (/^\s*(?:\S+: )?NodeVersionSupportWarning\b/.test(text)) return;
    (emit as (...args: unknown[]) => void).call(this, warning, ...rest);
  } as typeof process.emitWarning;
}
const stats = new Float64Array(data.stats);
const readerOptions: RangeReaderOptions = {
  ...(data.s3 as RangeReaderOptions),
  onRequest: (e) => {
    if (e.operation !== 'get') return;
    stats[0] = (stats[0] ?? 0) + 1;
    stats[1] = (stats[1] ?? 0) + e.bytes;
  },
};
const light = rangeReaderSupports(readerOptions);
const reader: RangeReader = light ? createRangeReader(readerOptions) : await sdkReader(readerOptions);

/** The SDK's client (credentials from the environment or a profile, a default endpoint). */
async function sdkReader(o: RangeReaderOptions): Promise<RangeReader> {
  const { createS3Storage } = await import('@walship/storage');
  const storage = createS3Storage(o as Parameters<typeof createS3Storage>[0]);
  return { get: (key, range, o) => storage.get(key, { range, ...o }), destroy: () => storage.destroy() };
}

function fail(req: FetchRequest, error: { code: string; message: string; details: Record<string, unknown> }): void {
  const text = new TextEncoder().encode(JSON.stringify(error));
  const out = new Uint8Array(req.error);
  const n = Math.min(text.length, out.length);
  out.set(text.subarray(0, n));
  const ctrl = new Int32Array(req.control);
  ctrl[1] = n;
  Atomics.store(ctrl, 0, 2);
  Atomics.notify(ctrl, 0);
}

interface Prefetched {
  bytes: number;
  body: Promise<Uint8Array>;
}
// Prefetched ranges by key:start:end, oldest first; dropped when over PREFETCH_BYTES.
const prefetched = new Map<string, Prefetched>();
let prefetchedBytes = 0;

/**
 * Buffers of prefetched bodies given back once copied out, for the next prefetches (as many as are
 * started ahead): fresh memory costs a page fault per 4 KiB on first touch. Read-ahead batches
 * differ in size by a little, so a spare buffer serves any size up to its own and at most 1 MiB or
 * a quarter smaller.
 */
const SPARE_BUFFERS = 4;
const spare: ArrayBuffer[] = [];
/** The buffers made here (a body the reader could not read into one is its own, maybe a slice of Node's pool). */
const ours = new WeakSet<ArrayBuffer>();

function buffer(size: number): Uint8Array {
  let best = -1;
  for (let i = 0; i < spare.length; i++) {
    const n = (spare[i] as ArrayBuffer).byteLength;
    if (n >= size && n - size <= Math.max(1024 * 1024, size / 4) && (best < 0 || n < (spare[best] as ArrayBuffer).byteLength)) best = i;
  }
  if (best < 0) {
    const b = new ArrayBuffer(Math.ceil(size / 65536) * 65536);
    ours.add(b);
    return new Uint8Array(b, 0, size);
  }
  const [b] = spare.splice(best, 1);
  return new Uint8Array(b as ArrayBuffer, 0, size);
}

function giveBack(view: Uint8Array): void {
  const b = view.buffer;
  if (!(b instanceof ArrayBuffer) || !ours.has(b) || spare.length >= SPARE_BUFFERS) return;
  spare.push(b);
}

/** The range's bytes, read straight into `into` when given (exactly the range's length). */
async function get(r: FetchRange, into?: Uint8Array): Promise<Uint8Array> {
  const options = { ...(r.etag !== undefined ? { etag: r.etag } : {}), ...(into !== undefined ? { into } : {}) };
  const bytes = await reader.get(r.key, { start: r.start, end: r.end - 1 }, options);
  if (bytes === null) throw Object.assign(new Error(`${r.key} does not exist`), { code: 'ERR_OBJECT_MISSING', details: { key: r.key } });
  if (bytes.length !== r.end - r.start) {
    throw Object.assign(new Error(`${r.key}: asked for bytes ${r.start}..${r.end - 1}, got ${bytes.length} bytes`), { code: 'ERR_CORRUPT_OBJECT', details: { key: r.key, start: r.start, got: bytes.length } });
  }
  return bytes;
}

/** Puts the range's bytes into `out` at `r.at`: from a prefetch if one was started, else read straight into it. */
async function take(r: FetchRange, out: Uint8Array): Promise<void> {
  const id = `${r.key}:${r.start}:${r.end}`;
  const p = prefetched.get(id);
  const into = out.subarray(r.at, r.at + (r.end - r.start));
  if (p === undefined) {
    const bytes = await get(r, into);
    if (bytes !== into) into.set(bytes);
    return;
  }
  prefetched.delete(id);
  prefetchedBytes -= p.bytes;
  const body = await p.body;
  into.set(body);
  giveBack(body);
}

function startPrefetch(r: FetchRange): void {
  const id = `${r.key}:${r.start}:${r.end}`;
  const bytes = r.end - r.start;
  if (prefetched.has(id) || bytes > PREFETCH_BYTES) return;
  while (prefetchedBytes + bytes > PREFETCH_BYTES) {
    const oldest = prefetched.entries().next();
    if (oldest.done) break;
    prefetched.delete(oldest.value[0]);
    prefetchedBytes -= oldest.value[1].bytes;
  }
  const body = get(r, buffer(bytes));
  // A failed prefetch is reported to the request that takes it (which then fails as a plain GET would).
  body.catch(() => undefined);
  prefetched.set(id, { bytes, body });
  prefetchedBytes += bytes;
}

async function serve(req: FetchRequest): Promise<void> {
  const out = new Uint8Array(req.data);
  const bodies = req.ranges.map((r) => take(r, out));
  for (const r of req.prefetch) startPrefetch(r);
  try {
    await Promise.all(bodies);
    const ctrl = new Int32Array(req.control);
    Atomics.store(ctrl, 0, 1);
    Atomics.notify(ctrl, 0);
  } catch (e) {
    const err = e as { code?: unknown; message?: unknown; details?: unknown };
    fail(req, {
      code: typeof err.code === 'string' ? err.code : 'ERR_STORAGE',
      message: typeof err.message === 'string' ? err.message : String(e),
      details: typeof err.details === 'object' && err.details !== null ? (err.details as Record<string, unknown>) : {},
    });
  }
}

stats[3] = light ? 1 : 0;
stats[2] = performance.timeOrigin + performance.now();
parentPort?.on('message', (req: FetchRequest) => {
  void serve(req);
});
