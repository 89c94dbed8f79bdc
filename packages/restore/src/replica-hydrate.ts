// openReplica({ cacheDir, hydrate: true }): copies every chunk of the replica's pages into the disk
// cache in the background (asynchronous ranged GETs on the opening thread's event loop, a few at a
// time), so that later reads are served from disk without waiting on S3. Chunks are written as
// fetched; they are verified when read back, as every disk-cached chunk is.
import type { ObjectStorage } from '@walship/storage';
import type { DiskCache } from './replica-disk-cache.js';
import type { PageView, ReplicaObject } from './replica-pages.js';

export interface HydrationStatus {
  /** running; done (every chunk is on disk); full (cacheDirBytes reached first); failed; stopped (closed). */
  state: 'running' | 'done' | 'full' | 'failed' | 'stopped';
  /** Chunks of the database's pages on disk, of all of them. */
  chunksDone: number;
  chunksTotal: number;
  /** Bytes this hydration fetched. */
  bytes: number;
  error: { code: string; message: string } | null;
}

export class Hydrator {
  readonly #disk: DiskCache;
  readonly #storage: ObjectStorage;
  readonly #abort = new AbortController();
  readonly #status: HydrationStatus;
  readonly #work: { object: ReplicaObject; chunk: number }[] = [];

  constructor(view: PageView, options: { disk: DiskCache; storage: ObjectStorage }) {
    this.#disk = options.disk;
    this.#storage = options.storage;
    const used = new Set<number>();
    for (let pgno = 1; pgno <= view.pageCount; pgno++) used.add(view.objectOf[pgno] as number);
    used.delete(0);
    for (const o of [...used].sort((a, b) => a - b)) {
      const object = view.objects[o - 1] as ReplicaObject;
      for (let c = 0; c < object.pages.chunkCount; c++) this.#work.push({ object, chunk: c });
    }
    this.#status = { state: 'running', chunksDone: 0, chunksTotal: this.#work.length, bytes: 0, error: null };
  }

  status(): HydrationStatus {
    return { ...this.#status };
  }

  /** Starts the copy with `concurrency` GETs in flight; resolves when it ends (never rejects). */
  run(concurrency: number): Promise<void> {
    let next = 0;
    let stop = false;
    const worker = async (): Promise<void> => {
      while (!stop && next < this.#work.length) {
        const { object, chunk } = this.#work[next++] as { object: ReplicaObject; chunk: number };
        const range = object.pages.chunkRange(chunk);
        const name = this.#disk.name(object, range.start, range.end);
        if (!this.#disk.has(name)) {
          if (!this.#disk.fits(range.end - range.start)) {
            stop = true;
            this.#status.state = 'full';
            return;
          }
          const bytes = await this.#storage.get(object.key, { range: { start: range.start, end: range.end - 1 }, signal: this.#abort.signal, ...(object.etag !== undefined ? { etag: object.etag } : {}) });
          if (bytes === null || bytes.length !== range.end - range.start) throw Object.assign(new Error(`${object.key}: bytes ${range.start}..${range.end - 1} could not be read whole`), { code: 'ERR_OBJECT_MISSING' });
          this.#status.bytes += bytes.length;
          this.#disk.write(name, bytes);
        }
        this.#status.chunksDone++;
      }
    };
    return Promise.all(Array.from({ length: concurrency }, worker)).then(
      () => {
        if (this.#status.state === 'running') this.#status.state = 'done';
      },
      (e: unknown) => {
        stop = true;
        if (this.#abort.signal.aborted) return;
        const err = e as { code?: unknown; message?: unknown };
        this.#status.state = 'failed';
        this.#status.error = { code: typeof err.code === 'string' ? err.code : 'ERR_STORAGE', message: typeof err.message === 'string' ? err.message : String(e) };
      },
    );
  }

  stop(): void {
    if (this.#status.state === 'running') this.#status.state = 'stopped';
    this.#abort.abort();
  }
}
