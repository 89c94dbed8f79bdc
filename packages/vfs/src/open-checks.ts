// What openDatabase (open.ts) checks before SQLite or the process lock touches anything: its
// options, the target file, and the WAL beside it.
import { constants as fsc, renameSync, rmSync, statSync } from 'node:fs';
import { nodeFs } from './fs-ops.js';
import { checkReadWindow } from './read-window.js';
import { WalshipError } from './errors.js';
import { refuseWalOnly } from './wal-only.js';
import { WAL_HEADER_SIZE, parseWalHeader } from './wal/format.js';
import type { DiscardedWal, OpenOptions } from './open-options.js';

export function validateOptions(o: OpenOptions): void {
  const bad = (name: string, why: string, value: unknown): never => {
    throw new WalshipError('ERR_INVALID_OPTION', `option ${name} ${why} (got ${JSON.stringify(value)})`, { details: { option: name, value } });
  };
  if (o.pageSize !== undefined && (!Number.isInteger(o.pageSize) || o.pageSize < 512 || o.pageSize > 65536 || (o.pageSize & (o.pageSize - 1)) !== 0)) {
    bad('pageSize', 'must be a power of two from 512 to 65536', o.pageSize);
  }
  if (o.synchronous !== undefined && !['OFF', 'NORMAL', 'FULL', 'EXTRA'].includes(o.synchronous)) bad('synchronous', 'must be OFF, NORMAL, FULL or EXTRA', o.synchronous);
  if (o.durableTxid !== undefined && (!Number.isInteger(o.durableTxid) || o.durableTxid < 0)) bad('durableTxid', 'must be a non-negative integer', o.durableTxid);
  if (o.baseTxid !== undefined && (!Number.isInteger(o.baseTxid) || o.baseTxid < 0)) bad('baseTxid', 'must be a non-negative integer', o.baseTxid);
  if (o.baseTxid !== undefined && o.capture === false) bad('baseTxid', 'needs capture on', 'capture: false');
  if (o.sectorSize !== undefined && (!Number.isInteger(o.sectorSize) || o.sectorSize < 512 || (o.sectorSize & (o.sectorSize - 1)) !== 0)) bad('sectorSize', 'must be a power of two >= 512', o.sectorSize);
  if (o.onCommit !== undefined && typeof o.onCommit !== 'function') bad('onCommit', 'must be a function', typeof o.onCommit);
  if (o.onCommit && o.capture === false) bad('onCommit', 'needs capture on', 'capture: false');
  if (o.markerOnClose !== undefined && typeof o.markerOnClose !== 'boolean') bad('markerOnClose', 'must be a boolean', o.markerOnClose);
  if (o.readWindow !== undefined) {
    if (typeof o.readWindow !== 'object' || o.readWindow === null) bad('readWindow', 'must be an object', o.readWindow);
    if (o.capture !== false) bad('readWindow', 'needs capture off', 'capture: true');
    const why = checkReadWindow(o.readWindow);
    if (why !== null) bad('readWindow', why, { windowBytes: o.readWindow.windowBytes, windows: o.readWindow.windows });
  }
}

const SQLITE_HEADER = 'SQLite format 3\0';

/** Refuses a directory or a file that is not SQLite before SQLite (or the lock) touches anything. */
export function checkTarget(abs: string, create: boolean): void {
  let st;
  try {
    st = statSync(abs);
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') {
      if (!create) throw new WalshipError('ERR_NOT_FOUND', `${abs} does not exist (create: false)`, { details: { path: abs } });
      return;
    }
    throw new WalshipError('ERR_CANTOPEN', `cannot stat ${abs}: ${(e as Error).message}`, { cause: e, details: { path: abs } });
  }
  if (st.isDirectory()) throw new WalshipError('ERR_CANTOPEN', `${abs} is a directory, not a database file`, { details: { path: abs } });
  if (!st.isFile()) throw new WalshipError('ERR_CANTOPEN', `${abs} is not a regular file`, { details: { path: abs } });
  refuseWalOnly(abs, st.size, 'path');
  if (st.size === 0) return;
  const head = new Uint8Array(16);
  let fd: number;
  try {
    fd = nodeFs.openSync(abs, fsc.O_RDONLY);
  } catch (e) {
    throw new WalshipError('ERR_CANTOPEN', `cannot read ${abs}: ${(e as Error).message}`, { cause: e, details: { path: abs } });
  }
  try {
    nodeFs.readSync(fd, head, 0, 16, 0);
  } finally {
    nodeFs.closeSync(fd);
  }
  if (new TextDecoder('latin1').decode(head) !== SQLITE_HEADER) {
    throw new WalshipError('ERR_NOT_A_DATABASE', `${abs} is not an SQLite database (its first 16 bytes are not "SQLite format 3"); nothing was written`, {
      details: { path: abs },
    });
  }
}

/**
 * SQLite treats a WAL whose header does not validate as empty and overwrites it with the next
 * commit. A WAL that is there but unreadable may hold committed transactions, so walship refuses to
 * open instead of letting them be discarded.
 *
 * A `-wal` whose header a crash tore: SQLite rewrites the header only when it starts the WAL over,
 * which it does only once every frame in it is copied into the database file (or for the very
 * first frame of a new WAL), so a header that is short or fails its checksum while its magic and
 * page size are intact holds nothing the database file lacks. It is moved aside (kept for
 * inspection) and the open goes on. Anything else that does not validate is refused.
 */
export function checkWal(abs: string): DiscardedWal | null {
  const walPath = `${abs}-wal`;
  let fd: number;
  try {
    fd = nodeFs.openSync(walPath, fsc.O_RDONLY);
  } catch {
    return null;
  }
  let torn: DiscardedWal | null = null;
  try {
    const size = nodeFs.fstatSync(fd).size;
    if (size === 0) return null;
    const head = new Uint8Array(WAL_HEADER_SIZE);
    const got = nodeFs.readSync(fd, head, 0, WAL_HEADER_SIZE, 0);
    const parsed = parseWalHeader(head.subarray(0, got));
    if ('problem' in parsed && (parsed.problem === 'short' || parsed.problem === 'bad-checksum')) {
      torn = { problem: parsed.problem, size, movedTo: `${walPath}.torn-${Date.now()}` };
    } else if ('problem' in parsed) {
      throw new WalshipError(
        'ERR_CORRUPT_WAL',
        `${walPath} is not a valid SQLite WAL (${parsed.problem}, ${size} bytes); SQLite would discard it. Nothing was written. If it holds nothing you need, move it aside and open again`,
        { details: { path: abs, walPath, problem: parsed.problem, size } },
      );
    }
  } finally {
    nodeFs.closeSync(fd);
  }
  if (torn) {
    renameSync(walPath, torn.movedTo);
    rmSync(`${abs}-shm`, { force: true });
  }
  return torn;
}
