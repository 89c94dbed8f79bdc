import { parentPort, workerData } from 'node:worker_threads';
import { Keyring, loadFormat, type KeyringInit } from '@walship/format';
import { segmentBody, type SegmentJob } from './jobs.js';
import { unpackJob } from './wire.js';
import type { FromWorker, ToWorker, WorkerInit } from './encoder.js';

// The encoder thread (see encoder.ts): takes segment jobs as plain data, reads their frames from the
// WAL, encodes them (object checksum chain, zstd, AES-GCM) and posts the object's bytes back in
// chunks. It holds no state between jobs but the keyring; the main thread owns every decision.

/** Bytes posted and not yet taken by the uploader before the worker waits (bounds memory when S3 is slow). */
const AHEAD_BYTES = 8 * 1024 * 1024;

const port = parentPort;
if (!port) throw new Error('encode-worker.js runs as a worker thread (new Worker), not as a main module');
const init = workerData as WorkerInit;
await loadFormat();
const keyring = init.encryption ? new Keyring(init.encryption as KeyringInit) : undefined;

interface Running {
  ahead: number;
  cancelled: boolean;
  wake: (() => void) | null;
}
const running = new Map<number, Running>();

function send(message: FromWorker, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(message, transfer);
}

function serialize(e: unknown): Extract<FromWorker, { type: 'error' }>['error'] {
  const err = e as { name?: unknown; code?: unknown; message?: unknown; details?: unknown };
  return {
    name: typeof err?.name === 'string' ? err.name : 'Error',
    code: typeof err?.code === 'string' ? err.code : 'ERR_UNKNOWN',
    message: typeof err?.message === 'string' ? err.message : String(e),
    details: typeof err?.details === 'object' && err.details !== null ? { ...(err.details as Record<string, unknown>) } : {},
  };
}

async function run(id: number, job: SegmentJob): Promise<void> {
  const state: Running = { ahead: 0, cancelled: false, wake: null };
  running.set(id, state);
  try {
    for await (const piece of segmentBody(job, keyring)()) {
      if (state.cancelled) return;
      // One fresh buffer per message, transferred (the encoder's own chunks may be views).
      const chunk = new Uint8Array(piece.byteLength);
      chunk.set(piece);
      state.ahead += chunk.byteLength;
      send({ type: 'chunk', id, chunk }, [chunk.buffer as ArrayBuffer]);
      while (state.ahead > AHEAD_BYTES && !state.cancelled) await new Promise<void>((r) => (state.wake = r));
    }
    if (!state.cancelled) send({ type: 'done', id });
  } catch (e) {
    if (!state.cancelled) send({ type: 'error', id, error: serialize(e) });
  } finally {
    running.delete(id);
  }
}

port.on('message', (m: ToWorker) => {
  if (m.type === 'segment') {
    void run(m.id, unpackJob(m.job));
    return;
  }
  const state = running.get(m.id);
  if (!state) return;
  if (m.type === 'taken') state.ahead -= m.bytes;
  else state.cancelled = true;
  const wake = state.wake;
  state.wake = null;
  wake?.();
});
send({ type: 'ready' });
