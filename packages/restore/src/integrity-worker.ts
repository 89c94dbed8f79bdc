// The thread that runs PRAGMA integrity_check (or quick_check) on a restored file (see integrity.ts). It has its own
// SQLite, so the page cache it is given is freed with the thread when the check ends.
import { parentPort, workerData } from 'node:worker_threads';
import { checkFileHere, type FromIntegrityThread, type IntegrityWorkerData } from './integrity.js';

const data = workerData as IntegrityWorkerData;
const port = parentPort as NonNullable<typeof parentPort>;
const post = (m: FromIntegrityThread): void => port.postMessage(m);

try {
  post({ type: 'done', check: await checkFileHere(data.path, data.pageSize, data.cacheKiB, data.mode) });
} catch (e) {
  post({ type: 'failed', code: String((e as { code?: unknown }).code ?? 'ERR_UNKNOWN'), message: e instanceof Error ? e.message : String(e) });
}
