import { constants as fsc } from 'node:fs';
import { alignedBuffer, directRefused, openDirect } from './direct-io.js';
import type { FsOps } from './fs-ops.js';
import { ReadAhead } from './read-ahead.js';

/**
 * Reads of a main database file served from a few large windows, each read from the file with one
 * call (O_DIRECT when the file system takes it), for a check that reads a whole file nobody is
 * writing: a restore's PRAGMA integrity_check. SQLite reads such a file page by page, twice (the
 * tree walk, then a scan of every table), and on a 1 GiB file of 8 KiB pages those 262,000 preads
 * were most of the check's 1.4 s; windows of 1 MiB make them 2,000. A database opened this way
 * is read-only: the VFS refuses writes to it, so the windows cannot go stale.
 */
export interface ReadWindowOptions {
  /** Bytes per window, a multiple of 65536 (default 1 MiB). */
  windowBytes?: number;
  /** Windows kept, least recently used replaced first (default 8): the tree's interior pages live elsewhere in the file than the leaves a scan is on. */
  windows?: number;
  /** Every window as read from the file (`data` is a view valid during the call), before a page of it is served. */
  onRead?: (data: Uint8Array, offset: number) => void;
  /**
   * Windows a helper thread reads ahead of the last one missed (default 0: none; see read-ahead.ts),
   * for a reader that goes through the file in order. Without threads, the reads are the reader's.
   */
  readAhead?: number;
}

export const DEFAULT_WINDOW_BYTES = 1024 * 1024;
export const DEFAULT_WINDOWS = 8;

export function checkReadWindow(o: ReadWindowOptions): string | null {
  const bytes = o.windowBytes ?? DEFAULT_WINDOW_BYTES;
  const count = o.windows ?? DEFAULT_WINDOWS;
  if (!Number.isInteger(bytes) || bytes < 65536 || bytes % 65536 !== 0 || bytes > 64 * 1024 * 1024) return 'windowBytes must be a multiple of 65536 up to 64 MiB';
  if (!Number.isInteger(count) || count < 1 || count > 64) return 'windows must be an integer from 1 to 64';
  if (o.onRead !== undefined && typeof o.onRead !== 'function') return 'onRead must be a function';
  if (o.readAhead !== undefined && (!Number.isInteger(o.readAhead) || o.readAhead < 0 || o.readAhead > 16)) return 'readAhead must be an integer from 0 to 16';
  return null;
}

export class WindowReader {
  readonly #fs: FsOps;
  readonly #fd: number;
  #direct: number | null;
  readonly #bytes: number;
  readonly #buffer: Uint8Array;
  /** Per window slot: the file offset it holds (-1: empty), the bytes it holds, when it was last used. */
  readonly #start: Float64Array;
  readonly #length: Uint32Array;
  readonly #used: Float64Array;
  #clock = 0;
  readonly #onRead: ((data: Uint8Array, offset: number) => void) | undefined;
  readonly #ahead: ReadAhead | null;
  /** Windows read from the file (counted for tests and diagnostics). */
  windowsRead = 0;

  /** `fd`: the file's ordinary descriptor (the VFS's own); a second one with O_DIRECT is opened when the platform takes it. */
  constructor(fs: FsOps, path: string, fd: number, options: ReadWindowOptions) {
    this.#fs = fs;
    this.#fd = fd;
    this.#bytes = options.windowBytes ?? DEFAULT_WINDOW_BYTES;
    const count = options.windows ?? DEFAULT_WINDOWS;
    // Before the O_DIRECT descriptor is opened: nothing to close if it throws.
    const size = options.readAhead ? fs.fstatSync(fd).size : 0;
    this.#direct = openDirect(fs, path, fsc.O_RDONLY);
    this.#buffer = alignedBuffer(this.#bytes * count);
    this.#start = new Float64Array(count).fill(-1);
    this.#length = new Uint32Array(count);
    this.#used = new Float64Array(count);
    this.#onRead = options.onRead;
    this.#ahead = options.readAhead ? ReadAhead.start(path, size, this.#bytes, options.readAhead) : null;
  }

  /** Windows the read-ahead thread had read when they were wanted. */
  get windowsReadAhead(): number {
    return this.#ahead?.served ?? 0;
  }

  /** Whether a read-ahead thread is running and has opened the file (for tests and diagnostics). */
  get readAheadAlive(): boolean {
    return this.#ahead?.alive ?? false;
  }

  /**
   * Copies the file's bytes at `pos` into `target`; returns how many there were (fewer at the end
   * of the file), or -1 when the range spans two windows (the caller reads it itself).
   */
  read(target: Uint8Array, pos: number): number {
    const start = pos - (pos % this.#bytes);
    if (pos + target.length > start + this.#bytes) return -1;
    const slot = this.#slotFor(start);
    const from = slot * this.#bytes + (pos - start);
    const n = Math.max(0, Math.min(target.length, (this.#length[slot] as number) - (pos - start)));
    target.set(this.#buffer.subarray(from, from + n));
    return n;
  }

  #slotFor(start: number): number {
    let victim = 0;
    for (let s = 0; s < this.#start.length; s++) {
      if (this.#start[s] === start) {
        this.#used[s] = ++this.#clock;
        return s;
      }
      if ((this.#used[s] as number) < (this.#used[victim] as number)) victim = s;
    }
    const view = this.#buffer.subarray(victim * this.#bytes, (victim + 1) * this.#bytes);
    // Emptied first: a failed read must not leave the slot claiming the old window's bytes.
    this.#start[victim] = -1;
    const got = this.#fill(view, start);
    this.#start[victim] = start;
    this.#length[victim] = got;
    this.#used[victim] = ++this.#clock;
    this.windowsRead++;
    this.#onRead?.(view.subarray(0, got), start);
    return victim;
  }

  #fill(view: Uint8Array, start: number): number {
    if (this.#ahead !== null) {
      const n = this.#ahead.take(start / this.#bytes, view);
      if (n >= 0) return n;
    }
    if (this.#direct !== null) {
      let got = 0;
      try {
        // A direct read of a regular file is short only at its end (the next offset would not be aligned).
        for (;;) {
          const want = view.length - got;
          const r = this.#fs.readSync(this.#direct, view, got, want, start + got);
          got += r;
          if (r < want || got === view.length) return got;
        }
      } catch (e) {
        if (!directRefused(e) || got > 0) throw e;
        this.#closeDirect();
      }
    }
    let got = 0;
    while (got < view.length) {
      const r = this.#fs.readSync(this.#fd, view, got, view.length - got, start + got);
      if (r === 0) break;
      got += r;
    }
    return got;
  }

  /** Closes the O_DIRECT descriptor (the VFS closes its own) and ends the read-ahead thread. */
  close(): void {
    this.#ahead?.close();
    this.#closeDirect();
  }

  #closeDirect(): void {
    if (this.#direct === null) return;
    const fd = this.#direct;
    this.#direct = null;
    this.#fs.closeSync(fd);
  }
}
