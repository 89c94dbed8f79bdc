// The thread that runs PRAGMA integrity_check on a restored file (see integrity.ts). It loads its
// own SQLite at once (while the restore downloads), then checks the one file it is given; the page
// cache it is given is freed with the thread.
import { parentPort } from 'node:worker_threads';
import { loadSqlite, openDatabase } from '@walship/vfs';
import type { FromIntegrityThread, ToIntegrityThread } from './integrity.js';

const port = parentPort as NonNullable<typeof parentPort>;
const post = (m: FromIntegrityThread): void => port.postMessage(m);

port.once('message', (m: ToIntegrityThread) => {
  void check(m);
});
await loadSqlite();
post({ type: 'ready' });

async function check(m: ToIntegrityThread): Promise<void> {
  try {
    const db = await openDatabase(m.path, { capture: false, create: false });
    try {
      db.pragma(`cache_size = -${m.cacheKiB}`);
      const rows = db.pragma('integrity_check') as Record<string, unknown>[];
      post({ type: 'done', rows: rows.map((r) => String(Object.values(r)[0])) });
    } finally {
      db.close();
    }
  } catch (e) {
    post({ type: 'failed', code: String((e as { code?: unknown }).code ?? 'ERR_UNKNOWN'), message: e instanceof Error ? e.message : String(e) });
  }
}
