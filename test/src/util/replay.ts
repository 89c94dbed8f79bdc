import { closeSync, ftruncateSync, openSync, writeSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import type { CommittedTransaction } from '@walship/vfs';

/** Applies transactions in order to a plain database file (no WAL): the oracle for capture. */
export class Replay {
  readonly path: string;
  lastTxid = 0;
  constructor(path: string) {
    this.path = path;
    closeSync(openSync(path, 'w'));
  }

  apply(txn: CommittedTransaction): void {
    if (txn.txid !== this.lastTxid + 1) {
      throw new Error(`replay: expected txid ${this.lastTxid + 1}, got ${txn.txid}`);
    }
    const fd = openSync(this.path, 'r+');
    try {
      for (const page of txn.pages) writeSync(fd, page.data, 0, page.data.length, (page.pgno - 1) * txn.pageSize);
      ftruncateSync(fd, txn.commitSize * txn.pageSize);
    } finally {
      closeSync(fd);
    }
    this.lastTxid = txn.txid;
  }
}

/** A deep copy: the VFS hands out fresh arrays, but tests keep them across reopen. */
export function cloneTxn(txn: CommittedTransaction): CommittedTransaction {
  return { ...txn, pages: txn.pages.map((p) => ({ pgno: p.pgno, data: p.data.slice() })), wal: txn.wal ? { ...txn.wal } : null };
}

export function txnDigest(txn: CommittedTransaction): string {
  const h = createHash('sha256');
  h.update(`${txn.txid}:${txn.pageSize}:${txn.commitSize}`);
  for (const p of txn.pages) {
    h.update(`|${p.pgno}|`);
    h.update(p.data);
  }
  return h.digest('hex');
}

export function fileDigest(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Runs the native sqlite3 shell (an independent SQLite build) and returns its output. */
export function nativeSqlite(path: string, sql: string): string {
  const r = spawnSync('sqlite3', [path, sql], { encoding: 'utf8' });
  if (r.error) throw new Error(`native sqlite3 shell not runnable: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`sqlite3 ${path} "${sql}" failed: ${r.stderr}`);
  return r.stdout.trim();
}
