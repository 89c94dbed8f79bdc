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

/** Files from this size are checked in a thread with a larger page cache. */
const THREAD_FROM_BYTES = 32 * 1024 * 1024;
/** The most page cache the check's thread gets (transient: freed with the thread). */
export const INTEGRITY_CACHE_MAX_BYTES = 128 * 1024 * 1024;

/**
 * `PRAGMA integrity_check` through walship's VFS with capture off, which reads the file without
 * writing it (the caller re-hashes the file afterwards to prove that). SQLite's default 2 MiB page
 * cache makes the check read each page of a large file several times (an index is checked by
 * looking up every row in it): a file of 32 MiB or more is checked in a worker thread whose own
 * SQLite gets a cache of up to INTEGRITY_CACHE_MAX_BYTES, released when the thread ends (the
 * process's SQLite heap never shrinks, so it is not grown for this). When the thread cannot run,
 * the check runs here with the default cache: slower, the same answer.
 */
export async function integrityCheck(path: string, options: { onRun?: (how: 'thread' | 'inline' | 'inline-after-thread-failure') => void } = {}): Promise<string[]> {
  await loadFormat();
  const size = statSync(path).size;
  let how: 'inline' | 'inline-after-thread-failure' = 'inline';
  if (size >= THREAD_FROM_BYTES) {
    const rows = await inThread(path, Math.ceil(Math.min(size, INTEGRITY_CACHE_MAX_BYTES) / 1024)).catch(() => null);
    if (rows !== null) {
      options.onRun?.('thread');
      return rows;
    }
    how = 'inline-after-thread-failure';
  }
  options.onRun?.(how);
  const db = await openDatabase(path, { capture: false, create: false });
  try {
    const rows = db.pragma('integrity_check') as Record<string, unknown>[];
    return rows.map((r) => String(Object.values(r)[0]));
  } finally {
    db.close();
  }
}

function inThread(path: string, cacheKiB: number): Promise<string[]> {
  return new Promise<string[]>((resolve, reject) => {
    const data: IntegrityWorkerData = { path, cacheKiB };
    const worker = new Worker(new URL('./integrity-worker.js', import.meta.url), { workerData: data });
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
