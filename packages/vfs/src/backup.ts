/**
 * Database#backup() and Database#serialize(). A backup copies pages with SQLite's online backup API
 * a step per event-loop turn, so the source stays usable meanwhile; serialize() reads the whole
 * schema at once. Both only read the source: they never write through capture.
 */
import { existsSync, rmSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { SqliteError, WalshipTypeError } from './errors.js';
import { NodeVfs } from './node-vfs.js';
import { dbClosed, type Connection } from './connection.js';

export interface BackupMetadata {
  totalPages: number;
  remainingPages: number;
}

export interface BackupOptions {
  /** Schema to copy (default `main`); an ATTACHed name copies that database. */
  attached?: string;
  /** Called between steps; returns how many pages to copy in the next step (default 100). */
  progress?: (info: BackupMetadata) => number | void;
}

interface BackupApi {
  sqlite3_backup_init(dest: number, destName: string, src: number, srcName: string): number;
  sqlite3_backup_step(p: number, n: number): number;
  sqlite3_backup_remaining(p: number): number;
  sqlite3_backup_pagecount(p: number): number;
  sqlite3_backup_finish(p: number): number;
  sqlite3_open_v2(name: string, pp: number, flags: number, vfs: string): number;
  sqlite3_close_v2(db: number): number;
  sqlite3_errmsg(db: number): string;
  sqlite3_js_rc_str(rc: number): string;
  sqlite3_serialize(db: number, schema: string, pSize: number, flags: number): number;
  sqlite3_free(p: number): void;
}

const SQLITE_DONE = 101;
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;
const DEFAULT_STEP = 100;

function bad(message: string): WalshipTypeError {
  return new WalshipTypeError('ERR_INVALID_ARG', message);
}

export function backupTo(conn: Connection, destination: unknown, options: BackupOptions | undefined): Promise<BackupMetadata> {
  try {
    conn.assertOpen();
    if (typeof destination !== 'string') throw bad('Expected first argument to be a string');
    if (destination.trim() === '') throw bad('Backup filename cannot be an empty string');
    if (destination === ':memory:') throw bad('Invalid backup filename ":memory:"');
    if (options !== undefined && (typeof options !== 'object' || options === null)) throw bad('Expected second argument to be an options object');
    const attached = options?.attached ?? 'main';
    if (typeof attached !== 'string') throw bad('Expected the "attached" option to be a string');
    if (attached === '') throw bad('The "attached" option cannot be an empty string');
    const progress = options?.progress;
    if (progress != null && typeof progress !== 'function') throw bad('Expected the "progress" option to be a function');
    if (!existsSync(dirname(resolve(destination)))) throw bad('Cannot save backup because the directory does not exist');
    return run(conn, destination, attached, progress ?? undefined);
  } catch (e) {
    return Promise.reject(e);
  }
}

function run(conn: Connection, destination: string, attached: string, progress: BackupOptions['progress']): Promise<BackupMetadata> {
  const sqlite3 = conn.rt.sqlite3;
  const capi = sqlite3.capi as unknown as BackupApi;
  const wasm = sqlite3.wasm;
  const isNew = !existsSync(destination);
  let pDest = 0;
  let pBackup = 0;
  let rate = 0;
  let useDefault = true;
  const cleanup = (failed: boolean): void => {
    if (pBackup) capi.sqlite3_backup_finish(pBackup);
    if (pDest) capi.sqlite3_close_v2(pDest);
    pBackup = 0;
    pDest = 0;
    if (failed && isNew) rmSync(destination, { force: true });
  };
  const fail = (rc: number, db: number, what: string): SqliteError =>
    new SqliteError(capi.sqlite3_js_rc_str(rc), rc, `${what}: ${db ? capi.sqlite3_errmsg(db) : capi.sqlite3_js_rc_str(rc)}`, {
      details: { destination, attached },
    });
  const open = (): void => {
    const vfs = NodeVfs.install(sqlite3);
    const stack = wasm.pstack.pointer;
    try {
      const pp = wasm.pstack.allocPtr() as number;
      const flags = sqlite3.capi.SQLITE_OPEN_READWRITE | sqlite3.capi.SQLITE_OPEN_CREATE;
      const rc = capi.sqlite3_open_v2(destination, pp, flags, vfs.name);
      pDest = wasm.peekPtr(pp) as number;
      if (rc !== 0) throw fail(rc, pDest, `cannot open backup destination ${destination}`);
    } finally {
      wasm.pstack.restore(stack);
    }
    pBackup = capi.sqlite3_backup_init(pDest, 'main', conn.pDb, attached);
    if (!pBackup) throw fail(1, pDest, `cannot start a backup of ${attached}`);
  };
  return new Promise((resolvePromise, reject) => {
    const step = (): void => {
      try {
        if (!conn.open) throw dbClosed(conn.name);
        if (!pBackup) open();
        const rc = capi.sqlite3_backup_step(pBackup, rate);
        const info = { totalPages: capi.sqlite3_backup_pagecount(pBackup), remainingPages: capi.sqlite3_backup_remaining(pBackup) };
        if (rc === SQLITE_DONE) {
          const frc = capi.sqlite3_backup_finish(pBackup);
          pBackup = 0;
          if (frc !== 0) throw fail(frc, pDest, `backup to ${destination} failed`);
          cleanup(false);
          resolvePromise({ totalPages: info.totalPages, remainingPages: 0 });
          return;
        }
        if (rc !== 0 && rc !== SQLITE_BUSY && rc !== SQLITE_LOCKED) throw fail(rc, pDest, `backup to ${destination} failed`);
        if (useDefault) {
          useDefault = false;
          rate = DEFAULT_STEP;
        }
        if (progress) {
          const ret = progress(info);
          if (ret !== undefined) {
            if (typeof ret !== 'number' || Number.isNaN(ret)) throw bad('Expected progress callback to return a number or undefined');
            rate = Math.max(0, Math.min(0x7fffffff, Math.round(ret)));
          }
        }
        setImmediate(step);
      } catch (e) {
        cleanup(true);
        reject(e);
      }
    };
    setImmediate(step);
  });
}

/** The bytes of schema `attached` (default `main`) as a database file. */
export function serializeSchema(conn: Connection, options: { attached?: string } | undefined): Uint8Array {
  if (options !== undefined && (typeof options !== 'object' || options === null)) throw bad('Expected first argument to be an options object');
  const attached = options?.attached ?? 'main';
  if (typeof attached !== 'string') throw bad('Expected the "attached" option to be a string');
  if (attached === '') throw bad('The "attached" option cannot be an empty string');
  const sqlite3 = conn.rt.sqlite3;
  const capi = sqlite3.capi as unknown as BackupApi;
  const wasm = sqlite3.wasm;
  const stack = wasm.pstack.pointer;
  try {
    const pSize = wasm.pstack.alloc(8) as number;
    wasm.poke64(pSize, 0n);
    const p = capi.sqlite3_serialize(conn.pDb, attached, pSize, 0);
    const size = Number(wasm.peek64(pSize));
    if (!p) {
      if (size === 0) return conn.rt.blob(new Uint8Array(0));
      throw new SqliteError('SQLITE_NOMEM', 7, `cannot serialize ${attached}: out of memory`, { details: { attached } });
    }
    try {
      return conn.rt.blob(conn.rt.h8().subarray(p, p + size));
    } finally {
      capi.sqlite3_free(p);
    }
  } finally {
    wasm.pstack.restore(stack);
  }
}
