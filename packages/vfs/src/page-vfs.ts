import { randomBytes } from 'node:crypto';
import { Database, type DatabaseHandle, type DatabaseOptions } from './database.js';
import { SqliteError } from './errors.js';
import { loadSqlite, type Sqlite3 } from './sqlite.js';

/**
 * Where a read-only database's pages come from (a replica in S3, read on demand). `readPage` is
 * synchronous because SQLite's xRead is: a source that reads over the network blocks inside it.
 */
export interface PageSource {
  readonly pageSize: number;
  /** Database size in pages. */
  readonly pageCount: number;
  /** Fills `out` (pageSize bytes) with page `pgno` (1-based). A throw fails the statement with that error. */
  readPage(pgno: number, out: Uint8Array): void;
  /**
   * True for a source whose pages change (a followed replica): the database is then opened without
   * `immutable=1`, and SQLite's read transactions bracket what it sees (beginRead/endRead).
   */
  readonly changes?: boolean;
  /**
   * For a source that changes: SQLite's read transactions bracket what it sees. `beginRead` is called when
   * a read transaction starts (SQLite takes its shared lock): the source may switch to a newer
   * state there, and must keep it until `endRead` (the lock is released), so a statement or an
   * explicit transaction never sees two states.
   */
  beginRead?(): void;
  endRead?(): void;
  /**
   * For a source that changes: a number that changes whenever the state does. It is served as the file change
   * counter (page 1, bytes 24..27), which SQLite compares at each read transaction to decide whether
   * its page cache still holds: a writer in WAL mode does not update that counter.
   */
  readonly version?: number;
}

export interface PageDatabaseOptions<T extends Database = Database> {
  /** Called once when the database is closed. */
  onClose?: () => void;
  /** SQLite's own page cache in KiB (PRAGMA cache_size=-N), on top of whatever the source caches. Default 2048. */
  pageCacheKiB?: number;
  /** Builds the database object (a subclass of Database with more methods); default `new Database(...)`. */
  construct?: (handle: DatabaseHandle, options: DatabaseOptions) => T;
}

const VFS_NAME = 'walship-pages';
/** SQLite's page cache of a page database: the source's cache is the one that is sized. */
export const DEFAULT_PAGE_CACHE_KIB = 2048;
const SQLITE_OK = 0;
const SQLITE_IOERR = 10;
const SQLITE_NOTFOUND = 12;
const SQLITE_CANTOPEN = 14;
const SQLITE_READONLY = 8;
const SQLITE_IOERR_READ = 266;
const SQLITE_IOERR_SHORT_READ = 522;
const SQLITE_IOERR_LOCK = 3850;
const SQLITE_OPEN_MAIN_DB = 0x100;
const SQLITE_IOCAP_IMMUTABLE = 0x2000;
const SQLITE_OPEN_READONLY = 0x1;
const SQLITE_OPEN_URI = 0x40;
const SQLITE_OPEN_EXRESCODE = 0x2000000;

interface PageFile {
  source: PageSource;
  page: Uint8Array;
  /** SQLite's lock level on the file (0 none, 1 shared); only tracked for a source that changes. */
  lock: number;
}

/** Database header fields a changing source's page 1 is served with (see PageSource.version). */
const HEADER_WRITE_VERSION = 18;
const HEADER_READ_VERSION = 19;
const HEADER_CHANGE_COUNTER = 24;
const HEADER_VERSION_VALID_FOR = 92;

/**
 * Page 1 of a changing source as SQLite must see it: rollback-journal mode (bytes 18-19 = 1: there
 * is no WAL to open beside a replica), the source's version as the change counter, and a
 * version-valid-for that differs from it, so the database size comes from xFileSize (the source's
 * page count) rather than from a header field.
 */
function patchHeader(target: Uint8Array, offset: number, version: number): void {
  const header = new Uint8Array(100);
  const view = new DataView(header.buffer);
  const from = Math.max(0, offset);
  const to = Math.min(100, offset + target.length);
  if (from >= to) return;
  header.set(target.subarray(from - offset, to - offset), from);
  header[HEADER_WRITE_VERSION] = 1;
  header[HEADER_READ_VERSION] = 1;
  view.setUint32(HEADER_CHANGE_COUNTER, version >>> 0);
  view.setUint32(HEADER_VERSION_VALID_FOR, (version + 1) >>> 0);
  target.set(header.subarray(from, to), from - offset);
}

/**
 * A read-only SQLite VFS whose only file is a database served page by page from a PageSource. No
 * journal, no WAL, no temp files (temp_store=MEMORY): the database is opened with immutable=1, so
 * SQLite takes no locks and looks for no other file. Like NodeVfs, nothing throws across WASM: a
 * failure is kept (the source's own error, for the statement to rethrow) and becomes an IOERR code.
 */
class PageVfs {
  readonly #sqlite3: Sqlite3;
  readonly #sources = new Map<string, PageSource>();
  readonly #files = new Map<number, PageFile>();
  /** The error behind the last failed call, by database name. */
  readonly errors = new Map<string, unknown>();
  #lastError: { message: string; code: number } | undefined;

  constructor(sqlite3: Sqlite3) {
    this.#sqlite3 = sqlite3;
    this.#install();
  }

  add(name: string, source: PageSource): void {
    this.#sources.set(name, source);
  }

  remove(name: string): void {
    this.#sources.delete(name);
    this.errors.delete(name);
  }

  #fail(name: string, e: unknown, code: number): number {
    this.errors.set(name, e);
    this.#lastError = { message: e instanceof Error ? e.message : String(e), code };
    return code;
  }

  #read(name: string, f: PageFile, target: Uint8Array, offset: number): number {
    const { source, page } = f;
    const size = source.pageSize;
    const total = source.pageCount * size;
    let done = 0;
    while (done < target.length && offset + done < total) {
      const pos = offset + done;
      const pgno = Math.floor(pos / size) + 1;
      const inPage = pos % size;
      const n = Math.min(size - inPage, target.length - done);
      if (inPage === 0 && n === size) source.readPage(pgno, target.subarray(done, done + size));
      else {
        source.readPage(pgno, page);
        target.set(page.subarray(inPage, inPage + n), done);
      }
      done += n;
    }
    if (source.changes === true && offset < 100) patchHeader(target, offset, source.version ?? 0);
    if (done < target.length) {
      target.fill(0, done);
      return SQLITE_IOERR_SHORT_READ;
    }
    this.errors.delete(name);
    return SQLITE_OK;
  }

  #install(): void {
    const capi = this.#sqlite3.capi as unknown as LooseCapi;
    const wasm = this.#sqlite3.wasm as unknown as LooseWasm;
    const heap = (): Uint8Array => wasm.heap8u();
    const files = this.#files;
    const names = new Map<number, string>();
    const ioMethods = new capi.sqlite3_io_methods();
    ioMethods.$iVersion = 1;
    const vfs = new capi.sqlite3_vfs();
    vfs.$iVersion = 2;
    vfs.$szOsFile = capi.sqlite3_file.structInfo.sizeof;
    vfs.$mxPathname = 1024;
    vfs.$zName = wasm.allocCString(VFS_NAME);
    const readOnly = (): number => SQLITE_READONLY;
    const ok = (): number => SQLITE_OK;
    const io = {
      xClose: (pFile: number): number => {
        files.delete(pFile);
        names.delete(pFile);
        return SQLITE_OK;
      },
      xRead: (pFile: number, pDest: number, n: number, offset: bigint): number => {
        const f = files.get(pFile);
        const name = names.get(pFile) ?? '';
        if (!f) return SQLITE_IOERR_READ;
        const target = heap().subarray(pDest, pDest + n);
        try {
          return this.#read(name, f, target, Number(offset));
        } catch (e) {
          target.fill(0);
          return this.#fail(name, e, SQLITE_IOERR_READ);
        }
      },
      xWrite: readOnly,
      xTruncate: readOnly,
      xSync: ok,
      xFileSize: (pFile: number, pSize: number): number => {
        const f = files.get(pFile);
        if (!f) return SQLITE_IOERR;
        wasm.poke64(pSize, BigInt(f.source.pageCount * f.source.pageSize));
        return SQLITE_OK;
      },
      xLock: (pFile: number, level: number): number => {
        const f = files.get(pFile);
        if (!f) return SQLITE_IOERR;
        if (f.lock === 0 && level > 0) {
          try {
            f.source.beginRead?.();
          } catch (e) {
            return this.#fail(names.get(pFile) ?? '', e, SQLITE_IOERR_LOCK);
          }
        }
        f.lock = Math.max(f.lock, level);
        return SQLITE_OK;
      },
      xUnlock: (pFile: number, level: number): number => {
        const f = files.get(pFile);
        if (!f) return SQLITE_IOERR;
        if (f.lock > 0 && level === 0) f.source.endRead?.();
        f.lock = level;
        return SQLITE_OK;
      },
      xCheckReservedLock: (_pFile: number, pOut: number): number => {
        wasm.poke32(pOut, 0);
        return SQLITE_OK;
      },
      xFileControl: (): number => SQLITE_NOTFOUND,
      xSectorSize: (): number => 4096,
      xDeviceCharacteristics: (pFile: number): number => (files.get(pFile)?.source.changes === true ? 0 : SQLITE_IOCAP_IMMUTABLE),
    };
    const vfsMethods = {
      xOpen: (_pVfs: number, zName: number, pFile: number, flags: number, pOutFlags: number): number => {
        const name = zName ? wasm.cstrToJs(zName) : '';
        const source = this.#sources.get(name);
        if (!source || (flags & SQLITE_OPEN_MAIN_DB) === 0) {
          this.#lastError = { message: `walship replica ${name || '(temp file)'}: only its database file can be opened here`, code: SQLITE_CANTOPEN };
          return SQLITE_CANTOPEN;
        }
        files.set(pFile, { source, page: new Uint8Array(source.pageSize), lock: 0 });
        names.set(pFile, name);
        const file = new capi.sqlite3_file(pFile);
        file.$pMethods = ioMethods.pointer;
        file.dispose();
        if (pOutFlags) wasm.poke32(pOutFlags, SQLITE_OPEN_READONLY | SQLITE_OPEN_MAIN_DB);
        return SQLITE_OK;
      },
      xDelete: readOnly,
      xAccess: (_pVfs: number, _zName: number, _flags: number, pOut: number): number => {
        wasm.poke32(pOut, 0);
        return SQLITE_OK;
      },
      xFullPathname: (_pVfs: number, zName: number, nOut: number, pOut: number): number => {
        const bytes = new TextEncoder().encode(wasm.cstrToJs(zName));
        if (bytes.length + 1 > nOut) return SQLITE_CANTOPEN;
        const h = heap();
        h.set(bytes, pOut);
        h[pOut + bytes.length] = 0;
        return SQLITE_OK;
      },
      xRandomness: (_pVfs: number, nOut: number, pOut: number): number => {
        heap().set(randomBytes(nOut), pOut);
        return nOut;
      },
      xSleep: (): number => 0,
      xCurrentTime: (_pVfs: number, pOut: number): number => {
        wasm.poke(pOut, 2440587.5 + Date.now() / 864e5, 'double');
        return SQLITE_OK;
      },
      xCurrentTimeInt64: (_pVfs: number, pOut: number): number => {
        wasm.poke(pOut, 210866760000000n + BigInt(Date.now()), 'i64');
        return SQLITE_OK;
      },
      xGetLastError: (_pVfs: number, nOut: number, pOut: number): number => {
        const e = this.#lastError;
        if (!e || nOut <= 0) return SQLITE_OK;
        const bytes = new TextEncoder().encode(e.message).subarray(0, nOut - 1);
        const h = heap();
        h.set(bytes, pOut);
        h[pOut + bytes.length] = 0;
        return e.code;
      },
    };
    this.#sqlite3.vfs.installVfs({
      io: { struct: ioMethods as never, methods: guardAll(io, (e) => this.#fail('', e, SQLITE_IOERR)) as never },
      vfs: { struct: vfs as never, methods: guardAll(vfsMethods, (e) => this.#fail('', e, SQLITE_IOERR)) as never },
    });
  }
}

/** The backstop that keeps any exception (a bug) from unwinding through WASM frames. */
function guardAll<T extends Record<string, (...args: never[]) => number>>(methods: T, fail: (e: unknown) => number): T {
  const out: Record<string, (...args: never[]) => number> = {};
  for (const [name, fn] of Object.entries(methods)) {
    out[name] = (...args: never[]): number => {
      try {
        return fn(...args);
      } catch (e) {
        return fail(e);
      }
    };
  }
  return out as T;
}

const installed = new WeakMap<Sqlite3, PageVfs>();

/**
 * Opens a read-only database whose pages come from `source`, with the same query API as a walship
 * database (prepare/get/all/iterate/pragma/close). An error the source throws while a statement
 * reads is what that statement throws (its class and code kept), not SQLite's generic I/O error.
 */
export async function openPageDatabase<T extends Database = Database>(source: PageSource, options: PageDatabaseOptions<T> = {}): Promise<T> {
  const sqlite3 = await loadSqlite();
  let vfs = installed.get(sqlite3);
  if (!vfs) {
    vfs = new PageVfs(sqlite3);
    installed.set(sqlite3, vfs);
  }
  const name = `/walship-replica-${randomBytes(8).toString('hex')}.db`;
  vfs.add(name, source);
  const { capi, wasm } = sqlite3;
  const stack = wasm.pstack.pointer;
  let pDb = 0;
  try {
    const ppDb = wasm.pstack.allocPtr() as number;
    // A source that changes is read under SQLite's locks (beginRead/endRead); one that cannot is immutable.
    const uri = source.changes === true ? `file:${name}` : `file:${name}?immutable=1`;
    const rc = capi.sqlite3_open_v2(uri, ppDb, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_EXRESCODE, VFS_NAME);
    pDb = wasm.peekPtr(ppDb) as number;
    if (rc !== SQLITE_OK) {
      // The source's own error (a typed storage or object error) says more than SQLite's code.
      const cause = vfs.errors.get(name);
      if (cause instanceof Error) throw cause;
      const reason = pDb ? capi.sqlite3_errmsg(pDb) : capi.sqlite3_errstr(rc);
      throw new SqliteError('SQLITE_CANTOPEN', rc, `cannot open the replica database: ${reason}`);
    }
  } catch (e) {
    if (pDb) capi.sqlite3_close_v2(pDb);
    vfs.remove(name);
    throw e;
  } finally {
    wasm.pstack.restore(stack);
  }
  const pages = vfs;
  const dbOptions: DatabaseOptions = {
    onClose: () => {
      pages.remove(name);
      options.onClose?.();
    },
    mapError: (e) => {
      const cause = pages.errors.get(name);
      pages.errors.delete(name);
      return cause instanceof Error ? cause : e;
    },
  };
  const handle = { sqlite3, pDb, filename: name };
  const db = options.construct ? options.construct(handle, dbOptions) : (new Database(handle, dbOptions) as T);
  try {
    db.exec(`PRAGMA temp_store=MEMORY; PRAGMA cache_size=-${Math.max(1, Math.floor(options.pageCacheKiB ?? DEFAULT_PAGE_CACHE_KIB))}`);
    db.prepare('SELECT count(*) FROM sqlite_schema').get();
  } catch (e) {
    db.close();
    throw e;
  }
  return db;
}

interface LooseStruct {
  pointer: number;
  [member: `$${string}`]: unknown;
  dispose(): void;
}
interface LooseCapi {
  sqlite3_io_methods: new () => LooseStruct;
  sqlite3_vfs: new () => LooseStruct;
  sqlite3_file: { new (pointer: number): LooseStruct; structInfo: { sizeof: number } };
}
interface LooseWasm {
  heap8u(): Uint8Array;
  allocCString(s: string): number;
  cstrToJs(p: number): string;
  poke32(p: number, v: number): void;
  poke64(p: number, v: bigint): void;
  poke(p: number, v: number | bigint, type: string): void;
}
