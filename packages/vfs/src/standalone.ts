/**
 * better-sqlite3's constructor: `new Database(filename?, options?)`, synchronous once the WASM
 * module is loaded. These databases are plain SQLite files on walship's node:fs VFS (or in memory):
 * nothing is captured or replicated; openDatabase() / openReplicated() are for that.
 */
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { SqliteError, WalshipError, WalshipRangeError, WalshipTypeError } from './errors.js';
import { NodeVfs } from './node-vfs.js';
import { acquireProcessLock } from './process-lock.js';
import { refuseWalOnly } from './wal-only.js';
import { loadedSqlite, type Sqlite3 } from './sqlite.js';
import type { DatabaseHandle, FileOptions } from './types.js';

export interface Opened {
  handle: DatabaseHandle;
  memory: boolean;
  readonly: boolean;
  timeout: number;
  verbose: ((sql: string) => void) | undefined;
  /**
   * The file is in WAL mode (every database walship captured or restored is): SQLite reads it only
   * with `locking_mode = EXCLUSIVE` (walship's VFS has no shared-memory wal-index), under walship's
   * process lock, which `release` gives back after the handle is closed.
   */
  wal: { release: () => void } | undefined;
}

const DEFAULT_TIMEOUT = 5000;

function bad(message: string, details: Record<string, unknown> = {}): WalshipTypeError {
  return new WalshipTypeError('ERR_INVALID_ARG', message, { details });
}

export function requireSqlite(): Sqlite3 {
  const sqlite3 = loadedSqlite();
  if (!sqlite3) {
    throw new NotReadyError();
  }
  return sqlite3;
}

class NotReadyError extends WalshipTypeError {
  constructor() {
    super('ERR_NOT_READY', 'the SQLite WASM module is not loaded yet: `await Database.ready()` (or loadSqlite()) once before `new Database(filename)`');
  }
}

function validate(options: unknown): FileOptions {
  if (options === undefined) return {};
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw bad('Expected second argument to be an options object');
  const o = options as Record<string, unknown>;
  if ('readOnly' in o) throw bad('Misspelled option "readOnly" should be "readonly"');
  if ('memory' in o) throw bad('Option "memory" was removed: use ":memory:" as the filename');
  for (const key of ['readonly', 'fileMustExist'] as const) {
    if (key in o && typeof o[key] !== 'boolean') throw bad(`Expected the "${key}" option to be a boolean`, { option: key });
  }
  if ('timeout' in o) {
    const t = o.timeout;
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 0) throw bad('Expected the "timeout" option to be a non-negative integer', { option: 'timeout' });
    if (t > 0x7fffffff) throw new WalshipRangeError('ERR_INVALID_ARG', 'Option "timeout" cannot be greater than 2147483647', { details: { option: 'timeout' } });
  }
  if (o.verbose != null && typeof o.verbose !== 'function') throw bad('Expected the "verbose" option to be a function', { option: 'verbose' });
  return o as FileOptions;
}

/** Opens `filename` as better-sqlite3 would; a Uint8Array is a serialized database opened in memory. */
export function openFile(filename: unknown, rawOptions: unknown): Opened {
  if (filename == null) filename = '';
  const options = validate(rawOptions);
  const sqlite3 = requireSqlite();
  const readonly = options.readonly === true;
  const timeout = options.timeout ?? DEFAULT_TIMEOUT;
  const verbose = options.verbose ?? undefined;
  if (filename instanceof Uint8Array) {
    const handle = openHandle(sqlite3, ':memory:', false, false);
    deserializeInto(sqlite3, handle.pDb, filename, readonly);
    return { handle, memory: true, readonly, timeout, verbose, wal: undefined };
  }
  if (typeof filename !== 'string') throw bad('Expected first argument to be a string');
  const memory = filename === '' || filename === ':memory:';
  if (memory && readonly) throw bad('In-memory/temporary databases cannot be readonly');
  if (!memory && !filename.startsWith('file:') && !existsSync(dirname(resolve(filename)))) {
    throw bad('Cannot open database because the directory does not exist', { filename });
  }
  if (!memory && existsSync(filename) && statSync(filename).isDirectory()) throw bad('Cannot open a directory as a database', { filename });
  const wal = !memory && !filename.startsWith('file:') ? lockIfWal(filename) : undefined;
  try {
    const handle = openHandle(sqlite3, filename, readonly, options.fileMustExist === true);
    return { handle, memory, readonly, timeout, verbose, wal };
  } catch (e) {
    wal?.release();
    throw e;
  }
}

const WAL_VERSION = 2;

/**
 * A file whose header says WAL (bytes 18-19 are 2) or that has a non-empty `-wal` takes walship's
 * process lock: a second connection with its own heap wal-index (or a walship writer beside it)
 * would corrupt it. A database file without its first page but with a `-wal` is refused: SQLite
 * deletes the `-wal` of a database that has no pages, and that `-wal` may hold every commit.
 */
function lockIfWal(filename: string): { release: () => void } | undefined {
  const header = new Uint8Array(20);
  let size = 0;
  let got = 0;
  try {
    const fd = openSync(filename, 'r');
    try {
      size = statSync(filename).size;
      got = readSync(fd, header, 0, header.length, 0);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Missing or unreadable: SQLite reports it as it opens.
  }
  let walBytes = 0;
  try {
    walBytes = statSync(`${filename}-wal`).size;
  } catch {
    // No -wal.
  }
  const walHeader = got === header.length && (header[18] === WAL_VERSION || header[19] === WAL_VERSION);
  if (!walHeader && walBytes === 0) return undefined;
  refuseWalOnly(filename, size, 'filename');
  return { release: acquireProcessLock(resolve(filename)) };
}

function openHandle(sqlite3: Sqlite3, filename: string, readonly: boolean, mustExist: boolean): DatabaseHandle {
  const { capi, wasm } = sqlite3;
  const vfs = NodeVfs.install(sqlite3);
  const flags = (readonly ? capi.SQLITE_OPEN_READONLY : capi.SQLITE_OPEN_READWRITE | (mustExist ? 0 : capi.SQLITE_OPEN_CREATE)) | capi.SQLITE_OPEN_EXRESCODE;
  const stack = wasm.pstack.pointer;
  try {
    const ppDb = wasm.pstack.allocPtr() as number;
    const rc = capi.sqlite3_open_v2(filename, ppDb, flags, vfs.name);
    const pDb = wasm.peekPtr(ppDb) as number;
    if (rc !== 0) {
      const reason = vfs.takeLastError() ?? (pDb ? capi.sqlite3_errmsg(pDb) : capi.sqlite3_errstr(rc));
      if (pDb) capi.sqlite3_close_v2(pDb);
      const name = (capi as unknown as { sqlite3_js_rc_str(rc: number): string }).sqlite3_js_rc_str(rc & 0xff);
      throw new SqliteError(name, rc & 0xff, `unable to open database file ${filename}: ${reason}`, { details: { filename } });
    }
    return { sqlite3, pDb, filename };
  } finally {
    wasm.pstack.restore(stack);
  }
}

const SQLITE_DESERIALIZE_FREEONCLOSE = 1;
const SQLITE_DESERIALIZE_RESIZEABLE = 2;
const SQLITE_DESERIALIZE_READONLY = 4;

/** Replaces the `main` schema of `pDb` with a copy of `bytes` (SQLite owns and frees the copy). */
export function deserializeInto(sqlite3: Sqlite3, pDb: number, bytes: Uint8Array, readonly: boolean): void {
  const { capi, wasm } = sqlite3;
  const n = bytes.byteLength;
  const p = (capi as unknown as { sqlite3_malloc64(n: number | bigint): number }).sqlite3_malloc64(Math.max(n, 1));
  if (!p) throw new WalshipRangeError('ERR_OUT_OF_MEMORY', `cannot allocate ${n} bytes for a serialized database`, { details: { bytes: n } });
  wasm.heap8u().set(bytes, p);
  const flags = SQLITE_DESERIALIZE_FREEONCLOSE | (readonly ? SQLITE_DESERIALIZE_READONLY : SQLITE_DESERIALIZE_RESIZEABLE);
  const rc = (capi as unknown as { sqlite3_deserialize(db: number, schema: string, p: number, n: number, cap: number, flags: number): number }).sqlite3_deserialize(
    pDb,
    'main',
    p,
    n,
    n,
    flags,
  );
  if (rc !== 0) {
    capi.sqlite3_close_v2(pDb);
    throw new SqliteError('SQLITE_ERROR', rc, `cannot open the serialized database (${n} bytes): ${capi.sqlite3_errstr(rc)}`, { details: { bytes: n } });
  }
}
