import { constants as fsc } from 'node:fs';
import type { FsOps } from './fs-ops.js';

/**
 * The capture's own read-only descriptor on a database's `-wal` file: opened on first use (the WAL
 * may not exist yet), kept until close(). Capture reads committed frames back through it, the
 * checkpoint asks its size, and a commit's sync goes through it. SQLite's own descriptor on the same
 * file is separate and never touched here.
 */
export class WalFile {
  readonly #fs: FsOps;
  readonly #path: string;
  #fd: number | null = null;

  constructor(fs: FsOps, databasePath: string) {
    this.#fs = fs;
    this.#path = `${databasePath}-wal`;
  }

  /** Up to `length` bytes from `offset`: fewer at the end of the file, none when it does not exist. */
  read(offset: number, length: number): Uint8Array {
    const fd = this.#open();
    if (fd === null) return new Uint8Array(0);
    const buf = new Uint8Array(length);
    let got = 0;
    while (got < length) {
      const r = this.#fs.readSync(fd, buf, got, length - got, offset + got);
      if (r === 0) break;
      got += r;
    }
    return got === length ? buf : buf.subarray(0, got);
  }

  /** The file's size in bytes; 0 when it does not exist. */
  size(): number {
    const fd = this.#open();
    return fd === null ? 0 : this.#fs.fstatSync(fd).size;
  }

  /** fdatasync of the file, when it exists. */
  sync(): void {
    const fd = this.#open();
    if (fd !== null) this.#fs.fdatasyncSync(fd);
  }

  close(): void {
    if (this.#fd === null) return;
    try {
      this.#fs.closeSync(this.#fd);
    } catch {
      // Closing a read-only descriptor cannot lose data.
    }
    this.#fd = null;
  }

  #open(): number | null {
    if (this.#fd !== null) return this.#fd;
    try {
      this.#fd = this.#fs.openSync(this.#path, fsc.O_RDONLY);
      return this.#fd;
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT') return null;
      throw e;
    }
  }
}
