// The thread that runs PRAGMA integrity_check on a restored file (see integrity.ts). It has its own
// SQLite, so the page cache it is given is freed with the thread when the check ends.
import { parentPort, workerData } from 'node:worker_threads';
import { openDatabase } from '@walship/vfs';
import type { FromIntegrityThread, IntegrityWorkerData } from './integrity.js';

const data = workerData as IntegrityWorkerData;
const port = parentPort as NonNullable<typeof parentPort>;
const post = (m: FromIntegrityThread): void => port.postMessage(m);

try {
  const db = await openDatabase(data.path, { capture: false, create: false });
  try {
    db.pragma(`cache_size = -${data.cacheKiB}`);
    const rows = db.pragma('integrity_check') as Record<string, unknown>[];
    post({ type: 'done', rows: rows.map((r) => String(Object.values(r)[0])) });
  } finally {
    db.close();
  }
} catch (e) {
  post({ type: 'failed', code: String((e as { code?: unknown }).code ?? 'ERR_UNKNOWN'), message: e instanceof Error ? e.message : String(e) });
}
