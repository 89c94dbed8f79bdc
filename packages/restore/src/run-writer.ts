import { constants, fdatasync } from 'node:fs';
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

export interface RunWriterOptions {
  /**
   * The file's path, to write long runs through a descriptor of its own opened with O_DIRECT (see
   * @walship/vfs direct-io): a restore's scratch file, which nothing reads until it is finished.
   * Refused (the platform, the file system or the alignment): every run goes through `fd`.
   */
  directPath?: string;
  /** File operations (default node:fs): a seam for tests that refuse O_DIRECT. */
  fs?: FsOps;
}

/**
 * Contiguous pages gathered into one buffer and written with one pwrite per run (a snapshot arrives
 * as long runs: one syscall per 4 MiB, not per page). Only node:fs: the snapshot thread uses it too.
 */
export class RunWriter {
  readonly #fd: number;
  readonly #fs: FsOps;
  readonly #pageSize: number;
  readonly #run: Uint8Array;
  #direct: number | null;
  #runStart = 0;
  #runPages = 0;
  #written = 0;
  #directWritten = 0;
  #sinceSync = 0;
  #syncing: Promise<void> | null = null;
  #syncError: unknown = null;
  /** The O_DIRECT descriptor, closed by the background sync when it ends (it was in use when close() came). */
  #closeAfterSync: number | null = null;

  constructor(fd: number, pageSize: number, options: RunWriterOptions = {}) {
    this.#fd = fd;
    this.#fs = options.fs ?? nodeFs;
    this.#pageSize = pageSize;
    const bytes = Math.max(pageSize, RUN_BYTES - (RUN_BYTES % pageSize));
    this.#direct = options.directPath !== undefined ? openDirect(this.#fs, options.directPath, constants.O_WRONLY) : null;
    // O_DIRECT transfers need an aligned buffer; the run buffer is one.
    this.#run = this.#direct !== null ? alignedBuffer(bytes) : new Uint8Array(bytes);
  }

  /** Pages waiting to be written. */
  get pending(): number {
    return this.#runPages;
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

  /** Writes the pending run. */
  flush(): void {
    if (this.#runPages === 0) return;
    const length = this.#runPages * this.#pageSize;
    const offset = (this.#runStart - 1) * this.#pageSize;
    if (!(this.#direct !== null && length >= DIRECT_RUN_BYTES && this.#writeDirect(length, offset))) {
      let at = 0;
      while (at < length) at += this.#fs.writeSync(this.#fd, this.#run, at, length - at, offset + at);
    }
    this.#written += length;
    this.#runPages = 0;
  }

  /** The run through the O_DIRECT descriptor; false (and direct writes off) when the kernel refuses it. */
  #writeDirect(length: number, offset: number): boolean {
    let at = 0;
    try {
      while (at < length) at += this.#fs.writeSync(this.#direct as number, this.#run, at, length - at, offset + at);
    } catch (e) {
      if (!directRefused(e) || at > 0) throw e;
      this.#closeDirect();
      return false;
    }
    this.#directWritten += length;
    this.#sinceSync += length;
    if (this.#sinceSync >= SYNC_EVERY_BYTES && this.#syncing === null) this.#startSync(this.#direct as number);
    return true;
  }

  #startSync(fd: number): void {
    this.#sinceSync = 0;
    this.#syncing = new Promise<void>((resolve) =>
      fdatasync(fd, (e) => {
        if (e && this.#syncError === null) this.#syncError = e;
        this.#syncing = null;
        if (this.#closeAfterSync !== null) {
          const closing = this.#closeAfterSync;
          this.#closeAfterSync = null;
          try {
            this.#fs.closeSync(closing);
          } catch {
            // A descriptor written only with O_DIRECT and already synced: nothing is lost with it.
          }
        }
        resolve();
      }),
    );
  }

  /**
   * Waits for the background sync; throws its error. Linux reports a failed writeback to one
   * fsync only, so a later fsync through another descriptor may not see it: this is where it is seen.
   */
  async settle(): Promise<void> {
    if (this.#syncing !== null) await this.#syncing;
    if (this.#syncError !== null) throw this.#syncError;
  }

  /** Drops the pending run unwritten (a failed restore: the scratch file goes anyway). */
  discard(): void {
    this.#runPages = 0;
  }

  /** Closes the O_DIRECT descriptor (the caller's `fd` stays open). */
  close(): void {
    this.#closeDirect();
  }

  #closeDirect(): void {
    if (this.#direct === null) return;
    const fd = this.#direct;
    this.#direct = null;
    if (this.#syncing !== null) this.#closeAfterSync = fd;
    else this.#fs.closeSync(fd);
  }
}
