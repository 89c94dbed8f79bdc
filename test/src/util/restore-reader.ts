// A reader of a follow-mode replica file, run in a worker thread so its reads interleave with the
// follower's file swaps for real. Every read opens the file afresh (as a new reader would), reads
// both account tables in one transaction and checks what every writer transaction keeps: the
// balances sum to zero and both tables have the same ids. A partial transaction would break it.

import { parentPort, workerData } from 'node:worker_threads';
import { openOracle } from './oracle-sqlite.js';

const { path, stop } = workerData as { path: string; stop: SharedArrayBuffer };
const flag = new Int32Array(stop);
let reads = 0;
let checks = 0;
const violations: string[] = [];
const errors: string[] = [];

while (Atomics.load(flag, 0) === 0) {
  try {
    const db = openOracle(path, { readonly: true });
    try {
      const row = db
        .prepare(
          `SELECT (SELECT coalesce(sum(bal), 0) FROM acct_a) + (SELECT coalesce(sum(bal), 0) FROM acct_b) AS total,
                  (SELECT count(*) FROM acct_a) AS a, (SELECT count(*) FROM acct_b) AS b,
                  (SELECT count(*) FROM acct_a JOIN acct_b USING (id)) AS both`,
        )
        .get() as { total: number; a: number; b: number; both: number };
      reads++;
      if (row.total !== 0 || row.a !== row.b || row.both !== row.a) violations.push(JSON.stringify(row));
      if (reads % 10 === 0) {
        const ok = db.pragmaValue('quick_check');
        checks++;
        if (ok !== 'ok') violations.push(`quick_check: ${String(ok)}`);
      }
    } finally {
      db.close();
    }
  } catch (e) {
    errors.push((e as Error).message);
  }
}
parentPort?.postMessage({ reads, checks, violations: violations.slice(0, 20), errors: errors.slice(0, 20), errorCount: errors.length });
