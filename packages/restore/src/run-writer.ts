import { writeSync } from 'node:fs';

/** Bytes of contiguous pages gathered before one write. */
export const RUN_BYTES = 4 * 1024 * 1024;

/**
 * Contiguous pages gathered into one buffer and written with one pwrite per run (a snapshot arrives
 * as long runs: one syscall per 4 MiB, not per page). Only node:fs: the snapshot thread uses it too.
 */
export class RunWriter {
  readonly #fd: number;
  readonly #pageSize: number;
  readonly #run: Uint8Array;
  #runStart = 0;
  #runPages = 0;
  #written = 0;

  constructor(fd: number, pageSize: number) {
    this.#fd = fd;
    this.#pageSize = pageSize;
    this.#run = new Uint8Array(Math.max(pageSize, RUN_BYTES - (RUN_BYTES % pageSize)));
  }

  /** Pages waiting to be written. */
  get pending(): number {
    return this.#runPages;
  }

  /** Page bytes written so far. */
  get bytesWritten(): number {
    return this.#written;
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
    let at = 0;
    while (at < length) at += writeSync(this.#fd, this.#run, at, length - at, offset + at);
    this.#written += length;
    this.#runPages = 0;
  }

  /** Drops the pending run unwritten (a failed restore: the scratch file goes anyway). */
  discard(): void {
    this.#runPages = 0;
  }
}
