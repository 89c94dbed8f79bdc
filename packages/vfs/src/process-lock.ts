import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { WalshipError } from './errors.js';

const heldHere = new Set<string>();

/** The process exists (EPERM: it exists but belongs to another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === 'EPERM';
  }
}

/**
 * One process owns a database: SQLite runs it with locking_mode=EXCLUSIVE and a heap wal-index, so a
 * second process (or a second open in this one) would corrupt it. The owner is recorded in
 * `<db>.walship-lock` (its pid); a lock whose process is gone is taken over.
 */
export function acquireProcessLock(dbPath: string): () => void {
  const lockPath = `${dbPath}.walship-lock`;
  if (heldHere.has(dbPath)) {
    throw new WalshipError('ERR_DATABASE_LOCKED', `${dbPath} is already open in this process; close it first`, {
      details: { path: dbPath, pid: process.pid },
    });
  }
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockPath, 'wx', 0o644);
      try {
        writeSync(fd, `${process.pid}\n`);
      } finally {
        closeSync(fd);
      }
      heldHere.add(dbPath);
      return () => {
        heldHere.delete(dbPath);
        try {
          unlinkSync(lockPath);
        } catch {
          // Already gone: nothing to release.
        }
      };
    } catch (e) {
      if ((e as { code?: string }).code !== 'EEXIST') {
        throw new WalshipError('ERR_CANTOPEN', `cannot create the lock file ${lockPath}: ${(e as Error).message}`, {
          cause: e,
          details: { path: dbPath, lockPath },
        });
      }
      let holder = NaN;
      try {
        holder = Number.parseInt(readFileSync(lockPath, 'utf8'), 10);
      } catch {
        // Unreadable or vanished: treat as stale.
      }
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && processAlive(holder)) {
        throw new WalshipError('ERR_DATABASE_LOCKED', `${dbPath} is open in process ${holder}; one process owns a database`, {
          details: { path: dbPath, lockPath, holderPid: holder },
        });
      }
      try {
        unlinkSync(lockPath);
      } catch {
        // Raced with another remover; the next attempt decides.
      }
    }
  }
  throw new WalshipError('ERR_DATABASE_LOCKED', `could not take the lock file ${lockPath}`, { details: { path: dbPath, lockPath } });
}
