import { constants, fdatasync, write } from 'node:fs';
import { alignedBuffer, directRefused, nodeFs, openDirect, type FsOps } from '@walship/vfs/direct-io';

/** Bytes of contiguous pages gathered before one write. */
export const RUN_BYTES = 4 * 1024 * 1024;

/** Runs from this size are written with O_DIRECT when the file takes it (shorter ones through the page cache). */
export const DIRECT_RUN_BYTES = 256 * 1024;

/**
 * With O_DIRECT writes, an fdatasync starts in the background after every this many bytes, so the
 * device writes the file back while the rest downloads and the final fsync finds little left.
 */
export const SYNC_EVERY_BYTES = 64 * 1024 * 1024;

/**
 * Run buffers kept for reuse once written (with `background`): an event of 256 pages of 64 KiB
 * fills four runs before its owner waits, and a buffer allocated afresh for each costs page faults.
 */
const POOL_MAX = 8;

export interface RunWriterOptions {
  /**
   * The file's path, to write long runs through a descriptor of its own opened with O_DIRECT (see
   * @walship/vfs direct-io): a restore's scratch file, which nothing reads until it is finished.
   * Refused (the platform, the file system or the alignment): every run goes through `fd`.
   */
  directPath?: string;
  /** File operations (default node:fs): a seam for tests that refuse O_DIRECT. */
  fs?: FsOps;
  /**
   * Runs that may wait to be written while the next one fills (default 0: flush() writes before it
   * returns). Above 0 the writes happen in the background, one at a time and in order, so a thread
   * that decodes pages is not held up by the device: its owner awaits room() between batches of
   * appends and settle() before anything else touches the file.
   */
  background?: number;
}

/** A run waiting to be written in the background: its own buffer (a run buffer, or a copy of a short run). */
interface Queued {
  bytes: Uint8Array;
  length: number;
  offset: number;
  /** A run buffer, returned to the pool once written (a short run's copy is dropped). */
  pooled: boolean;
}

/**
 * Contiguous pages gathered into one buffer and written with one pwrite per run (a snapshot arrives
 * as long runs: one syscall per 4 MiB, not per page). Only node:fs: the snapshot thread uses it too.
 */
export class RunWriter {
  readonly #fd: number;
  readonly #fs: FsOps;
  readonly #pageSize: number;
  #run: Uint8Array;
  readonly #runBytes: number;
  #direct: number | null;
  readonly #background: number;
  /** Run buffers not in use. */
  readonly #pool: Uint8Array[] = [];
  /** Runs handed to the background and not written yet, oldest first; the first is being written. */
  readonly #queue: Queued[] = [];
  #writing = false;
  #writeError: unknown = null;
  #waiters: (() => void)[] = [];
  #runStart = 0;
  #runPages = 0;
  #written = 0;
  #directWritten = 0;
  #sinceSync = 0;
  #syncing: Promise<void> | null = null;
  #syncError: unknown = null;
  /** The O_DIRECT descriptor after close(), closed once no background write or sync uses it (see #closeWhenIdle). */
  #closing: number | null = null;

  constructor(fd: number, pageSize: number, options: RunWriterOptions = {}) {
    this.#fd = fd;
    this.#fs = options.fs ?? nodeFs;
    this.#pageSize = pageSize;
    this.#runBytes = Math.max(pageSize, RUN_BYTES - (RUN_BYTES % pageSize));
    this.#background = options.background ?? 0;
    this.#direct = options.directPath !== undefined ? openDirect(this.#fs, options.directPath, constants.O_WRONLY) : null;
    this.#run = this.#newRun();
  }

  /** O_DIRECT transfers need an aligned buffer; a run buffer is one. */
  #newRun(): Uint8Array {
    return this.#direct !== null ? alignedBuffer(this.#runBytes) : new Uint8Array(this.#runBytes);
  }

  /** Pages waiting to be written. */
  get pending(): number {
    return this.#runPages;
  }

  /** With `background`: runs handed to the background and not written yet. */
  get waiting(): number {
    return this.#queue.length;
  }

  /** Page bytes written so far. */
  get bytesWritten(): number {
    return this.#written;
  }

  /** Of bytesWritten, the bytes written with O_DIRECT. */
  get directBytesWritten(): number {
    return this.#directWritten;
  }

  /** Adds a page (copied: the caller's buffer may be reused once this returns); a page that does not continue the run writes it first. */
  append(pgno: number, data: Uint8Array): void {
    const capacity = this.#run.length / this.#pageSize;
    if (this.#runPages > 0 && (pgno !== this.#runStart + this.#runPages || this.#runPages === capacity)) this.flush();
    if (this.#runPages === 0) this.#runStart = pgno;
    this.#run.set(data, this.#runPages * this.#pageSize);
    this.#runPages++;
  }

  /** Writes the pending run, or with `background` hands it to the background writer. */
  flush(): void {
    if (this.#runPages === 0) return;
    const length = this.#runPages * this.#pageSize;
    const offset = (this.#runStart - 1) * this.#pageSize;
    this.#runPages = 0;
    if (this.#background === 0) {
      if (!(this.#direct !== null && length >= DIRECT_RUN_BYTES && this.#writeDirect(this.#run, length, offset))) {
        let at = 0;
        while (at < length) at += this.#fs.writeSync(this.#fd, this.#run, at, length - at, offset + at);
      }
      this.#written += length;
      return;
    }
    if (this.#writeError !== null) throw this.#writeError;
    if (length >= DIRECT_RUN_BYTES) {
      this.#queue.push({ bytes: this.#run, length, offset, pooled: true });
      this.#run = this.#pool.pop() ?? this.#newRun();
    } else {
      // A short run is copied: a run buffer per scattered page would hold megabytes for kilobytes.
      this.#queue.push({ bytes: this.#run.slice(0, length), length, offset, pooled: false });
    }
    this.#pump();
  }

  /** The run through the O_DIRECT descriptor; false (and direct writes off) when the kernel refuses it. */
  #writeDirect(bytes: Uint8Array, length: number, offset: number): boolean {
    let at = 0;
    try {
      while (at < length) at += this.#fs.writeSync(this.#direct as number, bytes, at, length - at, offset + at);
    } catch (e) {
      if (!directRefused(e) || at > 0) throw e;
      this.#closeDirect();
      return false;
    }
    this.#wroteDirect(length, this.#direct as number);
    return true;
  }

  /** Counts a direct write through `fd` and starts a background sync every SYNC_EVERY_BYTES (`fd` stays open until it ends). */
  #wroteDirect(length: number, fd: number): void {
    this.#directWritten += length;
    this.#sinceSync += length;
    if (this.#sinceSync >= SYNC_EVERY_BYTES && this.#syncing === null) this.#startSync(fd);
  }

  /** Starts writing the oldest queued run unless one is being written; each completion starts the next. */
  #pump(): void {
    if (this.#writing || this.#queue.length === 0) return;
    this.#writing = true;
    const run = this.#queue[0] as Queued;
    this.#writeQueued(run).then(
      () => {
        this.#queue.shift();
        this.#written += run.length;
        if (run.pooled && this.#pool.length < POOL_MAX) this.#pool.push(run.bytes);
        this.#writing = false;
        this.#wake();
        this.#pump();
      },
      (e: unknown) => {
        // Nothing more is written after a failed write: the owner sees the error and gives the file up.
        this.#writeError ??= e;
        this.#queue.length = 0;
        this.#writing = false;
        this.#wake();
      },
    );
  }

  async #writeQueued(run: Queued): Promise<void> {
    // The descriptor is taken once: close() may come while the run is written (it closes the
    // descriptor only when the write has ended, see #closeWhenIdle).
    const direct = this.#direct;
    if (direct !== null && run.length >= DIRECT_RUN_BYTES) {
      let at = 0;
      try {
        while (at < run.length) at += await this.#writeAsync(direct, run.bytes, at, run.length - at, run.offset + at);
        this.#wroteDirect(run.length, direct);
        return;
      } catch (e) {
        if (!directRefused(e) || at > 0) throw e;
        if (this.#direct === direct) this.#closeDirect();
      }
    }
    let at = 0;
    while (at < run.length) at += await this.#writeAsync(this.#fd, run.bytes, at, run.length - at, run.offset + at);
  }

  /** One write off this thread (libuv's pool); through an injected `fs`, its synchronous write on a later tick. */
  #writeAsync(fd: number, bytes: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    if (this.#fs !== nodeFs) return new Promise((resolve) => setImmediate(resolve)).then(() => this.#fs.writeSync(fd, bytes, offset, length, position));
    return new Promise((resolve, reject) => write(fd, bytes, offset, length, position, (e, n) => (e ? reject(e) : resolve(n))));
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
    this.#closeWhenIdle();
  }

  /** With `background`: resolves once fewer than `background` runs wait to be written; throws a failed write's error. */
  async room(): Promise<void> {
    while (this.#queue.length >= Math.max(1, this.#background) && this.#writeError === null) await new Promise<void>((resolve) => this.#waiters.push(resolve));
    if (this.#writeError !== null) throw this.#writeError;
  }

  /** Resolves once no run waits to be written (failed or not): the descriptors may be closed then. */
  async idle(): Promise<void> {
    while (this.#writing || this.#queue.length > 0) await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }

  #startSync(fd: number): void {
    this.#sinceSync = 0;
    this.#syncing = new Promise<void>((resolve) =>
      fdatasync(fd, (e) => {
        if (e && this.#syncError === null) this.#syncError = e;
        this.#syncing = null;
        this.#closeWhenIdle();
        resolve();
      }),
    );
  }

  /**
   * Waits for the background sync; throws its error. Linux reports a failed writeback to one
   * fsync only, so a later fsync through another descriptor may not see it: this is where it is seen.
   */
  async settle(): Promise<void> {
    await this.idle();
    if (this.#writeError !== null) throw this.#writeError;
    if (this.#syncing !== null) await this.#syncing;
    if (this.#syncError !== null) throw this.#syncError;
  }

  /** Drops the pending run unwritten (a failed restore: the scratch file goes anyway). */
  discard(): void {
    this.#runPages = 0;
  }

  /**
   * Closes the O_DIRECT descriptor (the caller's `fd` stays open); one still in use by a background
   * write or sync is closed when that ends. The caller closes `fd` only after idle() or settle().
   */
  close(): void {
    this.#closeDirect();
  }

  #closeDirect(): void {
    if (this.#direct === null) return;
    const fd = this.#direct;
    this.#direct = null;
    this.#closing = fd;
    this.#closeWhenIdle();
  }

  #closeWhenIdle(): void {
    if (this.#closing === null || this.#syncing !== null || this.#writing) return;
    const fd = this.#closing;
    this.#closing = null;
    try {
      this.#fs.closeSync(fd);
    } catch {
      // A descriptor written only with O_DIRECT, its writes finished and synced: nothing is lost with it.
    }
  }
}
