import { statSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { loadFormat } from '@walship/format';
import { openDatabase } from '@walship/vfs';

/** @internal Restore's thread to the integrity thread: the file to check, once it is finished. */
export interface ToIntegrityThread {
  path: string;
  cacheKiB: number;
}

/** @internal The integrity thread's answers: ready (SQLite loaded), then the check's rows or its failure. */
export type FromIntegrityThread = { type: 'ready' } | { type: 'done'; rows: string[] } | { type: 'failed'; code: string; message: string };

/** Databases from this size are checked in a thread with a larger page cache. */
export const INTEGRITY_THREAD_FROM_BYTES = 32 * 1024 * 1024;
/** The most page cache the check's thread gets (transient: freed with the thread). */
export const INTEGRITY_CACHE_MAX_BYTES = 128 * 1024 * 1024;

export type IntegrityRun = 'thread' | 'inline' | 'inline-after-thread-failure';

/**
 * A worker thread with its own SQLite that runs PRAGMA integrity_check on the file it is given.
 * Its page cache is freed with the thread. Any failure of the thread itself makes `check` resolve
 * null: the caller checks inline instead.
 */
export class IntegrityThread {
  readonly #worker: Worker;
  #answer: ((m: FromIntegrityThread | null) => void) | null = null;
  #ended = false;

  constructor() {
    this.#worker = new Worker(new URL('./integrity-worker.js', import.meta.url));
    const end = (): void => {
      this.#ended = true;
      this.#answer?.(null);
      this.#answer = null;
    };
    this.#worker.on('message', (m: FromIntegrityThread) => {
      if (m.type === 'ready') return;
      this.#answer?.(m);
      this.#answer = null;
    });
    this.#worker.on('error', end);
    this.#worker.on('exit', end);
  }

  /** The rows of integrity_check, an error the check itself threw, or null when the thread could not run it. */
  async check(path: string, cacheKiB: number): Promise<string[] | null> {
    if (this.#ended) return null;
    const m = await new Promise<FromIntegrityThread | null>((resolve) => {
      this.#answer = resolve;
      this.#worker.postMessage({ path, cacheKiB } satisfies ToIntegrityThread);
    });
    this.close();
    if (m === null || m.type === 'ready') return null;
    if (m.type === 'failed') throw Object.assign(new Error(m.message), { code: m.code });
    return m.rows;
  }

  close(): void {
    if (this.#ended) return;
    this.#ended = true;
    void this.#worker.terminate();
  }
}

/** A thread for a database of `bytes`, or null when it is checked inline (small). The caller closes it. */
export function integrityThreadFor(bytes: number): IntegrityThread | null {
  if (bytes < INTEGRITY_THREAD_FROM_BYTES) return null;
  try {
    return new IntegrityThread();
  } catch {
    return null;
  }
}

/**
 * `PRAGMA integrity_check` through walship's VFS with capture off, which reads the file without
 * writing it (the caller re-hashes the file afterwards to prove that). SQLite's default 2 MiB page
 * cache makes the check of an index read the file's pages many times over (every row is looked up
 * in it): a file of 32 MiB or more that has indexes is checked in a worker thread whose own SQLite
 * gets a cache of up to INTEGRITY_CACHE_MAX_BYTES, released when the thread ends (the process's
 * SQLite heap never shrinks, so it is not grown for this). A file without indexes is read about once
 * whatever the cache, so it is checked here (a thread and a large cache only cost it time). When
 * the thread cannot run, the check runs here with the default cache: slower, the same answer.
 */
export async function integrityCheck(path: string, options: { onRun?: (how: IntegrityRun) => void } = {}): Promise<string[]> {
  await loadFormat();
  const size = statSync(path).size;
  let how: IntegrityRun = 'inline';
  let db = await openDatabase(path, { capture: false, create: false });
  try {
    const indexes = size >= INTEGRITY_THREAD_FROM_BYTES ? (db.prepare("SELECT count(*) FROM sqlite_schema WHERE type = 'index'").pluck().get() as number) : 0;
    if (indexes > 0) {
      db.close();
      const thread = integrityThreadFor(size);
      const rows = thread ? await thread.check(path, Math.ceil(Math.min(size, INTEGRITY_CACHE_MAX_BYTES) / 1024)).catch(() => null) : null;
      thread?.close();
      if (rows !== null) {
        options.onRun?.('thread');
        return rows;
      }
      how = 'inline-after-thread-failure';
      db = await openDatabase(path, { capture: false, create: false });
    }
    options.onRun?.(how);
    const rows = db.pragma('integrity_check') as Record<string, unknown>[];
    return rows.map((r) => String(Object.values(r)[0]));
  } finally {
    if (db.open) db.close();
  }
}
