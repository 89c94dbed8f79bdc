import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { bad } from './options.js';
import { processAlive } from '@walship/vfs';

/**
 * Restore, follow and verify write decrypted pages: the database, its scratch copy, and whatever
 * SQLite opens beside them. They get this mode (owner read and write) unless the caller asks for
 * another, set with fchmod so the umask cannot widen it.
 */
export const DEFAULT_FILE_MODE = 0o600;

/** `mode` must be permission bits (0 to 0o777) that leave the owner able to read and write. */
export function checkMode(option: string, mode: unknown): void {
  if (mode === undefined) return;
  if (typeof mode !== 'number' || !Number.isInteger(mode) || mode < 0 || mode > 0o777 || (mode & 0o600) !== 0o600) {
    bad(option, 'must be permission bits from 0o600 to 0o777 that include owner read and write (e.g. 0o600, 0o640)', typeof mode === 'number' ? `0o${mode.toString(8)}` : mode);
  }
}

/**
 * Scratch files carry the pid of the process that made them, so a later run can tell a file left
 * by a killed process (remove it) from one a live restore is writing (leave it).
 */
export function scratchName(base: string, label: string): string {
  return `${base}.walship-${label}-${process.pid}-${randomBytes(6).toString('hex')}`;
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function alive(pid: number): boolean {
  return pid === process.pid || processAlive(pid);
}

/**
 * Removes the scratch files (and their -wal, -shm, -journal, lock) that a killed restore or
 * follower of `base` left in `dir`: a kill -9 runs no cleanup, and the file holds decrypted pages.
 * Returns the names removed. A pid that was reused by an unrelated live process keeps its files
 * until a later run; files of another host sharing the directory are not told apart.
 */
export function removeStaleScratch(dir: string, base: string): string[] {
  const pattern = new RegExp(`^${escape(base)}\\.walship-(?:restore|follow)-(\\d+)-[0-9a-f]{12}(?:-wal|-shm|-journal|\\.walship-lock)?$`);
  return removeDead(dir, pattern, false);
}

function removeDead(dir: string, pattern: RegExp, recursive: boolean): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    // No directory yet (restore creates it), or not a directory (the restore reports that itself).
    if (['ENOENT', 'ENOTDIR'].includes((e as { code?: string }).code ?? '')) return [];
    throw e;
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = pattern.exec(name);
    if (!m || alive(Number(m[1]))) continue;
    try {
      rmSync(join(dir, name), { force: true, recursive });
      removed.push(name);
    } catch (e) {
      // Another user's leftovers in a shared directory (the temp dir's sticky bit): not ours to remove.
      if (!['EACCES', 'EPERM'].includes((e as { code?: string }).code ?? '')) throw e;
    }
  }
  return removed;
}

const VERIFY_PREFIX = 'walship-verify-';

/** A private (0700) directory for verify's scratch restore, after removing those of dead verifies. */
export function verifyScratchDir(parent: string): string {
  removeDead(parent, new RegExp(`^${VERIFY_PREFIX}(\\d+)-[A-Za-z0-9]{6}$`), true);
  return mkdtempSync(join(parent, `${VERIFY_PREFIX}${process.pid}-`));
}
