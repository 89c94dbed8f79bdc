import { closeSync, fstatSync, openSync, statSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { loadChecksum, loadFormat, lockPageNumber } from '@walship/format';
import { WindowReader, nodeFs, openDatabase, type ReadWindowOptions } from '@walship/vfs';
import { CHECK_PRAGMA, type IntegrityCheckMode, type SqliteCheckMode } from './check-modes.js';

export { INTEGRITY_CHECK_MODES, type IntegrityCheckMode } from './check-modes.js';

/** @internal What the integrity thread is started with. */
export interface IntegrityWorkerData {
  path: string;
  pageSize: number;
  cacheKiB: number;
  mode: SqliteCheckMode;
}

/** @internal The integrity thread's one answer. */
export type FromIntegrityThread = { type: 'done'; check: FileCheck } | { type: 'failed'; code: string; message: string };

/** Databases from this size are checked in a thread with a larger page cache. */
export const INTEGRITY_THREAD_FROM_BYTES = 32 * 1024 * 1024;
/** The most page cache the check's thread gets (transient: freed with the thread). */
export const INTEGRITY_CACHE_MAX_BYTES = 128 * 1024 * 1024;
/** Bytes per read of the file during the check (see @walship/vfs read-window.ts). */
export const CHECK_WINDOW_BYTES = 1024 * 1024;
/** Windows a helper thread reads ahead of the check (see @walship/vfs read-ahead.ts). */
export const CHECK_READ_AHEAD = 8;

export type IntegrityRun = 'thread' | 'inline' | 'inline-after-thread-failure' | 'read-back';

/** What one read of a file found: the check's rows (none for mode `none`), and the size and checksum of the bytes read. */
export interface FileCheck {
  rows: string[];
  /** The file's size in bytes. */
  size: number;
  /** XOR of the page hashes of every page read from the file (the lock page left out), as PageHashes computes it. */
  checksum: bigint;
  /** Windows read from the file, the hashing pass over the ones the check did not read included. */
  windowsRead: number;
}

/**
 * Hashes every page of a file once, from the windows the check reads (the first time each is
 * read), then reads the windows the check never touched (free pages, say).
 */
class WindowHasher {
  readonly #pageSize: number;
  readonly #lockPage: number;
  readonly #pageHash: (pgno: number, data: Uint8Array) => bigint;
  readonly #hashed = new Set<number>();
  checksum = 0n;
  windowsRead = 0;

  constructor(pageSize: number, pageHash: (pgno: number, data: Uint8Array) => bigint) {
    this.#pageSize = pageSize;
    this.#lockPage = lockPageNumber(pageSize);
    this.#pageHash = pageHash;
  }

  readonly onRead = (data: Uint8Array, offset: number): void => {
    this.windowsRead++;
    if (this.#hashed.has(offset)) return;
    this.#hashed.add(offset);
    const first = offset / this.#pageSize + 1;
    const pages = Math.floor(data.length / this.#pageSize);
    for (let i = 0; i < pages; i++) {
      const pgno = first + i;
      if (pgno !== this.#lockPage) this.checksum ^= this.#pageHash(pgno, data.subarray(i * this.#pageSize, (i + 1) * this.#pageSize));
    }
  };

  /** Reads and hashes the windows of the file not hashed yet; returns the file's size. */
  finish(path: string): number {
    const fd = openSync(path, 'r');
    try {
      const size = fstatSync(fd).size;
      const left: number[] = [];
      for (let at = 0; at < size; at += CHECK_WINDOW_BYTES) if (!this.#hashed.has(at)) left.push(at);
      // A thread reads ahead only when there is a run of windows to read (all of them, for a read-back alone).
      const readAhead = left.length > CHECK_READ_AHEAD ? CHECK_READ_AHEAD : 0;
      const reader = new WindowReader(nodeFs, path, fd, { windowBytes: CHECK_WINDOW_BYTES, windows: 1, readAhead, onRead: this.onRead });
      try {
        const one = new Uint8Array(1);
        for (const at of left) reader.read(one, at);
      } finally {
        reader.close();
      }
      return size;
    } finally {
      closeSync(fd);
    }
  }
}

/**
 * `PRAGMA integrity_check` (`quick_check` with mode `quick`) on a file nobody else is writing (a restore's scratch file), reading it
 * through the VFS's read windows (read-only, O_DIRECT where the file system takes it: what the
 * device holds, not a cached copy) and hashing each page once as it goes. One read of the file thus
 * proves both that it is a sound database and that the disk kept what was written; the VFS refuses
 * writes to a file opened this way, so the check cannot change what it checks. `cacheKiB`: the
 * check's page cache (SQLite's default when omitted).
 */
export async function checkFileHere(path: string, pageSize: number, cacheKiB?: number, mode: SqliteCheckMode = 'full'): Promise<FileCheck> {
  const sums = await loadChecksum();
  const hasher = new WindowHasher(pageSize, sums.pageHash);
  const readWindow: ReadWindowOptions = { windowBytes: CHECK_WINDOW_BYTES, readAhead: CHECK_READ_AHEAD, onRead: hasher.onRead };
  const db = await openDatabase(path, { capture: false, create: false, readWindow });
  let rows: string[];
  try {
    if (cacheKiB !== undefined) db.pragma(`cache_size = -${cacheKiB}`);
    rows = (db.pragma(CHECK_PRAGMA[mode]) as Record<string, unknown>[]).map((r) => String(Object.values(r)[0]));
  } finally {
    db.close();
  }
  const size = hasher.finish(path);
  return { rows, size, checksum: hasher.checksum, windowsRead: hasher.windowsRead };
}

/** The check from a worker thread with its own SQLite; rejects when the thread or the check fails. */
function inThread(path: string, pageSize: number, cacheKiB: number, mode: SqliteCheckMode): Promise<FileCheck> {
  return new Promise<FileCheck>((resolve, reject) => {
    const worker = new Worker(new URL('./integrity-worker.js', import.meta.url), { workerData: { path, pageSize, cacheKiB, mode } satisfies IntegrityWorkerData });
    let settled = false;
    const settle = (f: () => void): void => {
      if (settled) return;
      settled = true;
      f();
      void worker.terminate();
    };
    worker.on('message', (m: FromIntegrityThread) => settle(() => (m.type === 'done' ? resolve(m.check) : reject(Object.assign(new Error(m.message), { code: m.code })))));
    worker.on('error', (e) => settle(() => reject(e)));
    worker.on('exit', (code) => settle(() => reject(new Error(`the integrity check thread exited with code ${code}`))));
  });
}

/**
 * checkFileHere, in the right place. SQLite's default 2 MiB page cache makes the check of an index
 * read the file's pages many times over (every row is looked up in it): a file of 32 MiB or more
 * that has indexes is checked in a worker thread whose own SQLite gets a cache of up to
 * INTEGRITY_CACHE_MAX_BYTES, released when the thread ends (the process's SQLite heap never
 * shrinks, so it is not grown for this). A file without indexes is read about twice whatever the
 * cache, so it is checked here (a thread and a large cache only cost it time). When the thread
 * cannot run, the check runs here with the default cache: slower, the same answer.
 */
export async function checkFile(path: string, options: { pageSize: number; mode?: IntegrityCheckMode; onRun?: (how: IntegrityRun) => void }): Promise<FileCheck> {
  await loadFormat();
  const mode = options.mode ?? 'full';
  if (mode === 'none') {
    options.onRun?.('read-back');
    return readBack(path, options.pageSize);
  }
  const size = statSync(path).size;
  let how: IntegrityRun = 'inline';
  if (size >= INTEGRITY_THREAD_FROM_BYTES) {
    const db = await openDatabase(path, { capture: false, create: false, readWindow: { windowBytes: CHECK_WINDOW_BYTES, windows: 1 } });
    let indexes: number;
    try {
      indexes = db.prepare("SELECT count(*) FROM sqlite_schema WHERE type = 'index'").pluck().get() as number;
    } finally {
      db.close();
    }
    if (indexes > 0) {
      const check = await inThread(path, options.pageSize, Math.ceil(Math.min(size, INTEGRITY_CACHE_MAX_BYTES) / 1024), mode).catch(() => null);
      if (check !== null) {
        options.onRun?.('thread');
        return check;
      }
      how = 'inline-after-thread-failure';
    }
  }
  options.onRun?.(how);
  return checkFileHere(path, options.pageSize, undefined, mode);
}

/** The file read once from the device (windows, read ahead) and every page hashed; no SQLite. */
async function readBack(path: string, pageSize: number): Promise<FileCheck> {
  const sums = await loadChecksum();
  const hasher = new WindowHasher(pageSize, sums.pageHash);
  const size = hasher.finish(path);
  return { rows: [], size, checksum: hasher.checksum, windowsRead: hasher.windowsRead };
}
