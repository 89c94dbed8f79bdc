import { statSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { loadFormat } from '@walship/format';
import { openDatabase } from '@walship/vfs';

/** @internal What the integrity thread is started with. */
export interface IntegrityWorkerData {
  path: string;
  cacheKiB: number;
}

/** @internal The integrity thread's one answer. */
export type FromIntegrityThread = { type: 'done'; rows: string[] } | { type: 'failed'; code: string; message: string };

/** Databases from this size are checked in a thread with a larger page cache. */
export const INTEGRITY_THREAD_FROM_BYTES = 32 * 1024 * 1024;
/** The most page cache the check's thread gets (transient: freed with the thread). */
export const INTEGRITY_CACHE_MAX_BYTES = 128 * 1024 * 1024;

export type IntegrityRun = 'thread' | 'inline' | 'inline-after-thread-failure';

/** integrity_check's rows from a worker thread with its own SQLite; rejects when the thread or the check fails. */
function inThread(path: string, cacheKiB: number): Promise<string[]> {
  return new Promise<string[]>((resolve, reject) => {
    const worker = new Worker(new URL('./integrity-worker.js', import.meta.url), { workerData: { path, cacheKiB } satisfies IntegrityWorkerData });
    let settled = false;
    const settle = (f: () => void): void => {
      if (settled) return;
      settled = true;
      f();
      void worker.terminate();
    };
    worker.on('message', (m: FromIntegrityThread) => settle(() => (m.type === 'done' ? resolve(m.rows) : reject(Object.assign(new Error(m.message), { code: m.code })))));
    worker.on('error', (e) => settle(() => reject(e)));
    worker.on('exit', (code) => settle(() => reject(new Error(`the integrity check thread exited with code ${code}`))));
  });
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
      const rows = await inThread(path, Math.ceil(Math.min(size, INTEGRITY_CACHE_MAX_BYTES) / 1024)).catch(() => null);
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
