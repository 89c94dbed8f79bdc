import { Worker } from 'node:worker_threads';
import { WalshipError } from '@walship/vfs';
import type { Keyring, KeyringInit } from '@walship/format';
import { segmentBody, type SegmentJob } from './jobs.js';
import { packJob, type WireJob } from './wire.js';

// Where segments are encoded: in a worker thread (the default) or on the main thread. The shipper
// hands either one a plain-data job and gets back a body for the upload pipeline; a failed worker
// reports itself once through `onFailure`, with a typed error.

/** Encodes a segment job into the object's bytes; each call of the returned function starts over (upload retries). */
export interface Encoder {
  readonly mode: 'worker' | 'main';
  segment(job: SegmentJob): () => AsyncGenerator<Uint8Array>;
  /** The failure that ended the worker (crashed, stalled), or null. */
  readonly failure: WalshipError | null;
  close(): Promise<void>;
}

/** A worker that has not said it is ready after this long did not start (ms; loading its modules takes 0.2-0.7 s on a loaded machine). */
const START_TIMEOUT_MS = 60_000;

export interface WorkerInit {
  encryption: KeyringInit | null;
}

export type ToWorker = { type: 'segment'; id: number; job: WireJob } | { type: 'taken'; id: number; bytes: number } | { type: 'cancel'; id: number };

export type FromWorker =
  | { type: 'ready' }
  | { type: 'chunk'; id: number; chunk: Uint8Array }
  | { type: 'done'; id: number }
  | { type: 'error'; id: number; error: { name: string; code: string; message: string; details: Record<string, unknown> } };

export interface EncoderOptions {
  /** Where to encode (default 'worker'). */
  thread: 'worker' | 'main';
  /** A worker that sends nothing for this long while a job waits on it is stalled (ms). */
  stallMs: number;
  /** The worker's module (default: encode-worker.js beside this file). */
  workerUrl: URL | undefined;
}

/** Starts the encoder; a worker that does not come up fails with ERR_SHIPPER_WORKER_START_FAILED. */
export async function startEncoder(o: EncoderOptions, encryption: { init: KeyringInit; keyring: Keyring } | undefined, onFailure: (e: WalshipError) => void): Promise<Encoder> {
  if (o.thread === 'main') return new MainThreadEncoder(encryption?.keyring);
  return WorkerEncoder.start(o, encryption?.init ?? null, onFailure);
}

class MainThreadEncoder implements Encoder {
  readonly mode = 'main';
  readonly failure = null;
  constructor(private readonly keyring: Keyring | undefined) {}
  segment(job: SegmentJob): () => AsyncGenerator<Uint8Array> {
    return segmentBody(job, this.keyring);
  }
  async close(): Promise<void> {}
}

interface Stream {
  chunks: Uint8Array[];
  done: boolean;
  error: Error | null;
  wake: (() => void) | null;
}

class WorkerEncoder implements Encoder {
  readonly mode = 'worker';
  private fault: WalshipError | null = null;
  private closing = false;
  private nextId = 1;
  private readonly streams = new Map<number, Stream>();

  private constructor(
    private readonly worker: Worker,
    private readonly o: EncoderOptions,
    private readonly onFailure: (e: WalshipError) => void,
  ) {}

  static async start(o: EncoderOptions, encryption: KeyringInit | null, onFailure: (e: WalshipError) => void): Promise<WorkerEncoder> {
    const url = o.workerUrl ?? new URL('./encode-worker.js', import.meta.url);
    const startFailed = (why: string, cause?: unknown): WalshipError =>
      new WalshipError('ERR_SHIPPER_WORKER_START_FAILED', `the shipper's encoder worker (${url.href}) did not start: ${why}. Nothing was written; check that the module exists and the runtime allows worker threads, or pass encoder: { thread: 'main' }`, {
        details: { workerUrl: url.href },
        ...(cause !== undefined ? { cause } : {}),
      });
    let worker: Worker;
    try {
      worker = new Worker(url, { workerData: { encryption } satisfies WorkerInit });
    } catch (e) {
      throw startFailed((e as Error).message, e);
    }
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => finish(startFailed(`no ready message within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      const finish = (e: Error | null): void => {
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
        if (e) {
          void worker.terminate();
          reject(e);
        } else {
          resolve();
        }
      };
      const onMessage = (m: FromWorker): void => {
        if (m.type === 'ready') finish(null);
      };
      const onError = (e: Error): void => finish(startFailed(e.message, e));
      const onExit = (code: number): void => finish(startFailed(`it exited with code ${code}`));
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
    });
    const encoder = new WorkerEncoder(worker, o, onFailure);
    worker.on('message', (m: FromWorker) => encoder.receive(m));
    worker.on('error', (e) => encoder.crashed(`it threw ${e.name}: ${e.message}`, e));
    worker.on('messageerror', (e) => encoder.crashed(`a message could not be read (${e.message})`, e));
    worker.on('exit', (code) => {
      if (!encoder.closing) encoder.crashed(`it exited with code ${code}`);
    });
    // An idle worker does not keep the process alive; a job waiting on it does (its stall timer).
    worker.unref();
    return encoder;
  }

  get failure(): WalshipError | null {
    return this.fault;
  }

  segment(job: SegmentJob): () => AsyncGenerator<Uint8Array> {
    const self = this;
    return async function* (): AsyncGenerator<Uint8Array> {
      if (self.fault) throw self.fault;
      const id = self.nextId++;
      const stream: Stream = { chunks: [], done: false, error: null, wake: null };
      self.streams.set(id, stream);
      let finished = false;
      try {
        self.post({ type: 'segment', id, job: packJob(job) });
        for (;;) {
          const chunk = stream.chunks.shift();
          if (chunk) {
            self.post({ type: 'taken', id, bytes: chunk.byteLength });
            yield chunk;
            continue;
          }
          if (stream.error) throw stream.error;
          if (stream.done) break;
          await self.next(stream, job.key);
        }
        finished = true;
      } finally {
        self.streams.delete(id);
        // An upload that gave up (abort, retry) stops the worker's job too.
        if (!finished && !self.fault) self.post({ type: 'cancel', id });
      }
    };
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.worker.terminate();
  }

  /** Waits for the worker's next message about `stream`; nothing for stallMs: the worker is stalled. */
  private next(stream: Stream, key: string): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.fail(
          new WalshipError(
            'ERR_SHIPPER_WORKER_STALLED',
            `the shipper's encoder worker sent nothing for ${this.o.stallMs} ms while encoding ${key}: it is stuck, so it was stopped. Replication stopped; writes are refused. Committed transactions stay in the WAL and ship when the database is opened again`,
            { details: { key, stallMs: this.o.stallMs, threadId: this.worker.threadId } },
          ),
        );
        void this.worker.terminate();
      }, this.o.stallMs);
      stream.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private post(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  private receive(m: FromWorker): void {
    if (m.type === 'ready') return;
    const stream = this.streams.get(m.id);
    if (!stream) return;
    if (m.type === 'chunk') stream.chunks.push(m.chunk);
    else if (m.type === 'done') stream.done = true;
    else stream.error = rebuild(m.error);
    this.wakeUp(stream);
  }

  private crashed(why: string, cause?: unknown): void {
    this.fail(
      new WalshipError(
        'ERR_SHIPPER_WORKER_CRASHED',
        `the shipper's encoder worker died: ${why}. Replication stopped; writes are refused. Committed transactions stay in the WAL and ship when the database is opened again`,
        { details: { threadId: this.worker.threadId, jobsInFlight: this.streams.size }, ...(cause !== undefined ? { cause } : {}) },
      ),
    );
  }

  /** The first failure wins: every job waiting fails with it, and the shipper hears of it once. */
  private fail(e: WalshipError): void {
    if (this.fault || this.closing) return;
    this.fault = e;
    for (const stream of this.streams.values()) {
      stream.error = e;
      this.wakeUp(stream);
    }
    this.onFailure(e);
  }

  private wakeUp(stream: Stream): void {
    const wake = stream.wake;
    stream.wake = null;
    wake?.();
  }
}

/** A job's error as the worker threw it: same code, details and message; WalshipError stays one. */
function rebuild(e: { name: string; code: string; message: string; details: Record<string, unknown> }): Error {
  if (e.name === 'WalshipError') return new WalshipError(e.code, e.message, { details: e.details });
  return Object.assign(new Error(e.message), { name: e.name, code: e.code, details: e.details });
}
