import { constants as fsc } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import type { Sqlite3 } from './sqlite.js';
import { nodeFs, type FsOps } from './fs-ops.js';
import { WindowReader, type ReadWindowOptions } from './read-window.js';

/** What the VFS tells the owner of a database about the files of that database. */
export interface WalObserver {
  /** Bytes written to the `-wal` file (after they were written to disk). `data` is a view valid only during the call. */
  walWrite(data: Uint8Array, offset: number): void;
  /** The disk write after `walWrite` failed: what was captured for it is not on disk. */
  walWriteFailed(): void;
  walTruncate(size: number): void;
  /** SQLite finished a write transaction on the main database (SQLITE_FCNTL_COMMIT_PHASETWO). */
  commitPhaseTwo(): void;
}

export interface DatabaseRegistration {
  observer?: WalObserver;
  /** While it returns an error, writes to the WAL fail with SQLITE_FULL and that error's message. */
  writeBarrier?: () => Error | null;
  /** Report SQLITE_IOCAP_POWERSAFE_OVERWRITE (default true, like SQLite's unix VFS); false makes SQLite pad synced WAL commits to the sector size. */
  powersafeOverwrite: boolean;
  sectorSize: number;
  fs: FsOps;
  /** Serve reads of the main file from large windows (see read-window.ts); the main file is then read-only. */
  readWindow?: ReadWindowOptions;
}

// SQLite constants used here; values are fixed by SQLite's ABI.
const SQLITE_OK = 0;
const SQLITE_IOERR = 10;
const SQLITE_NOTFOUND = 12;
const SQLITE_FULL = 13;
const SQLITE_CANTOPEN = 14;
const SQLITE_IOERR_READ = 266;
const SQLITE_IOERR_SHORT_READ = 522;
const SQLITE_IOERR_WRITE = 778;
const SQLITE_IOERR_FSYNC = 1034;
const SQLITE_IOERR_TRUNCATE = 1546;
const SQLITE_IOERR_FSTAT = 1802;
const SQLITE_IOERR_DELETE = 2570;
const SQLITE_IOERR_ACCESS = 3338;
const SQLITE_IOERR_CLOSE = 4106;
const SQLITE_IOERR_DELETE_NOENT = 5898;
const SQLITE_OPEN_READONLY = 0x1;
const SQLITE_OPEN_CREATE = 0x4;
const SQLITE_OPEN_DELETEONCLOSE = 0x8;
const SQLITE_OPEN_EXCLUSIVE = 0x10;
const SQLITE_OPEN_MAIN_DB = 0x100;
const SQLITE_OPEN_WAL = 0x80000;
const SQLITE_OPEN_MAIN_JOURNAL = 0x800;

/**
 * Permission bits for a file SQLite asks to create. Temp files hold pages of any database: 0600.
 * A WAL or rollback journal takes the main file's bits, as SQLite's own unix VFS does, so a
 * database kept private (a restore writes 0600) never gets a -wal other users can read. A new
 * main database: 0644 under the process umask, the application's choice.
 */
function createMode(path: string, flags: number, temp: boolean, fsOps: FsOps): number {
  if (temp) return 0o600;
  if (flags & (SQLITE_OPEN_WAL | SQLITE_OPEN_MAIN_JOURNAL)) {
    try {
      const mode = (fsOps.statSync(path.replace(/-(?:wal|journal)$/, '')) as { mode?: number }).mode;
      if (typeof mode === 'number') return mode & 0o777;
    } catch {
      // No main file to copy from: the default below.
    }
  }
  return 0o644;
}
const SQLITE_ACCESS_EXISTS = 0;
const SQLITE_SYNC_DATAONLY = 0x10;
const SQLITE_FCNTL_COMMIT_PHASETWO = 22;
const SQLITE_IOCAP_POWERSAFE_OVERWRITE = 0x1000;
const SQLITE_IOCAP_UNDELETABLE_WHEN_OPEN = 0x800;

interface OpenFile {
  path: string;
  fd: number;
  flags: number;
  deleteOnClose: boolean;
  fs: FsOps;
  registration: DatabaseRegistration | undefined;
  isWal: boolean;
  isMainDb: boolean;
  lockLevel: number;
  /**
   * WAL only: a 24-byte frame header SQLite wrote that is not on disk yet (-1: none). It waits in
   * `frame[0..24)` for the page SQLite writes right after it, so that a frame is one pwrite.
   */
  pendingAt: number;
  frame: Uint8Array;
  /** Main file of a registration with readWindow: its reads, and no writes. */
  window: WindowReader | null;
}

/** SQLite writes each WAL frame as this many header bytes, then the page (see wal/README.md). */
const WAL_FRAME_HEADER = 24;
const WAL_FILE_HEADER = 32;

function writeAll(f: OpenFile, data: Uint8Array, pos: number): void {
  let put = 0;
  while (put < data.length) put += f.fs.writeSync(f.fd, data, put, data.length - put, pos + put);
}

function errnoOf(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;
}

/** ENOSPC is SQLITE_FULL wherever it happens; everything else keeps the operation's own IOERR code. */
function ioCode(e: unknown, fallback: number): number {
  const errno = errnoOf(e);
  if (errno === 'ENOSPC' || errno === 'EDQUOT') return SQLITE_FULL;
  return fallback;
}

/**
 * A persistent SQLite VFS over synchronous node:fs calls, with a hook on the `-wal` file of every
 * registered database. This file is the only place that touches WASM pointers: every method decodes
 * its pointers and 64-bit offsets here, catches every exception, records it for xGetLastError, and
 * returns a specific SQLite code. Nothing ever throws across the WASM boundary.
 */
export class NodeVfs {
  readonly name: string;
  private readonly sqlite3: Sqlite3;
  private readonly files = new Map<number, OpenFile>();
  private readonly registrations = new Map<string, DatabaseRegistration>();
  /** WAL files holding a frame header that is not on disk yet (at most one in practice). */
  private readonly pendingHeaders = new Set<OpenFile>();
  private lastError: { message: string; code: number } | undefined;

  private constructor(sqlite3: Sqlite3, name: string) {
    this.sqlite3 = sqlite3;
    this.name = name;
  }

  /** Installs the VFS under `name` (once per module instance) and returns it. */
  static install(sqlite3: Sqlite3, name = 'walship'): NodeVfs {
    const existing = installed.get(sqlite3);
    if (existing) return existing;
    const vfs = new NodeVfs(sqlite3, name);
    vfs.register();
    installed.set(sqlite3, vfs);
    return vfs;
  }

  /** Databases opened at `path` (absolute) get this registration's observer and settings. */
  registerDatabase(path: string, registration: DatabaseRegistration): void {
    this.registrations.set(resolve(path), registration);
  }

  unregisterDatabase(path: string): void {
    this.registrations.delete(resolve(path));
  }

  /** The message of the last failure, for errors raised after SQLite reports an I/O code. */
  takeLastError(): string | undefined {
    const e = this.lastError;
    this.lastError = undefined;
    return e?.message;
  }

  private fail(e: unknown, code: number, what: string): number {
    const detail = e instanceof Error ? e.message : String(e);
    this.lastError = { message: `${what}: ${detail}`, code };
    return code;
  }

  /**
   * A WAL write. A frame header is held back until SQLite writes its page (the next call, at the
   * next byte), and both go to disk as one pwrite: half the syscalls of a commit. Anything else
   * that touches the file first, and the end of every commit (COMMIT_PHASETWO), writes a held-back
   * header on its own, so the file never misses what SQLite wrote once control leaves SQLite's commit.
   */
  private walWrite(f: OpenFile, data: Uint8Array, pos: number): void {
    if (f.pendingAt >= 0) {
      if (pos === f.pendingAt + WAL_FRAME_HEADER) {
        const total = WAL_FRAME_HEADER + data.length;
        if (f.frame.length < total) {
          const grown = new Uint8Array(total);
          grown.set(f.frame.subarray(0, WAL_FRAME_HEADER));
          f.frame = grown;
        }
        f.frame.set(data, WAL_FRAME_HEADER);
        const at = f.pendingAt;
        f.pendingAt = -1;
        this.pendingHeaders.delete(f);
        writeAll(f, f.frame.subarray(0, total), at);
        return;
      }
      this.flushHeader(f);
    }
    if (data.length === WAL_FRAME_HEADER && pos >= WAL_FILE_HEADER) {
      f.frame.set(data, 0);
      f.pendingAt = pos;
      this.pendingHeaders.add(f);
      return;
    }
    writeAll(f, data, pos);
  }

  /** Writes a held-back frame header. On failure the capture is told, as for any failed WAL write. */
  private flushHeader(f: OpenFile): void {
    if (f.pendingAt < 0) return;
    const at = f.pendingAt;
    f.pendingAt = -1;
    this.pendingHeaders.delete(f);
    try {
      writeAll(f, f.frame.subarray(0, WAL_FRAME_HEADER), at);
    } catch (e) {
      f.registration?.observer?.walWriteFailed();
      throw e;
    }
  }

  private flushAllHeaders(): void {
    for (const f of [...this.pendingHeaders]) this.flushHeader(f);
  }

  private registrationFor(path: string, flags: number): DatabaseRegistration | undefined {
    if (flags & SQLITE_OPEN_MAIN_DB) return this.registrations.get(path);
    if (flags & SQLITE_OPEN_WAL && path.endsWith('-wal')) return this.registrations.get(path.slice(0, -4));
    for (const suffix of ['-journal']) {
      if (path.endsWith(suffix)) return this.registrations.get(path.slice(0, -suffix.length));
    }
    return undefined;
  }

  private register(): void {
    // sqlite-wasm's published types miss the struct-binder members ($iVersion, structInfo, ...).
    const capi = this.sqlite3.capi as unknown as LooseCapi;
    const wasm = this.sqlite3.wasm as unknown as LooseWasm;
    const heap = (): Uint8Array => wasm.heap8u();
    const ioMethods = new capi.sqlite3_io_methods();
    ioMethods.$iVersion = 1;
    const vfs = new capi.sqlite3_vfs();
    vfs.$iVersion = 2;
    vfs.$szOsFile = capi.sqlite3_file.structInfo.sizeof;
    vfs.$mxPathname = 1024;
    vfs.$zName = wasm.allocCString(this.name);
    const files = this.files;

    const io = {
      xClose: (pFile: number): number => {
        const f = files.get(pFile);
        if (!f) return SQLITE_OK;
        files.delete(pFile);
        try {
          try {
            this.flushHeader(f);
          } finally {
            try {
              f.window?.close();
            } finally {
              f.fs.closeSync(f.fd);
            }
          }
          if (f.deleteOnClose) f.fs.unlinkSync(f.path);
          return SQLITE_OK;
        } catch (e) {
          return this.fail(e, SQLITE_IOERR_CLOSE, `close ${f.path}`);
        }
      },
      xRead: (pFile: number, pDest: number, n: number, offset: bigint): number => {
        const f = files.get(pFile);
        if (!f) return SQLITE_IOERR_READ;
        try {
          this.flushHeader(f);
          const target = heap().subarray(pDest, pDest + n);
          const pos = Number(offset);
          let got = f.window ? f.window.read(target, pos) : -1;
          if (got >= 0 && got < n) {
            target.fill(0, got);
            return SQLITE_IOERR_SHORT_READ;
          }
          if (got === n) return SQLITE_OK;
          got = 0;
          while (got < n) {
            const r = f.fs.readSync(f.fd, target, got, n - got, pos + got);
            if (r === 0) break;
            got += r;
          }
          if (got < n) {
            target.fill(0, got);
            return SQLITE_IOERR_SHORT_READ;
          }
          return SQLITE_OK;
        } catch (e) {
          return this.fail(e, ioCode(e, SQLITE_IOERR_READ), `read ${n} bytes at ${offset} of ${f.path}`);
        }
      },
      xWrite: (pFile: number, pSrc: number, n: number, offset: bigint): number => {
        const f = files.get(pFile);
        if (!f) return SQLITE_IOERR_WRITE;
        const pos = Number(offset);
        if (f.window) return this.fail(new Error('the database is open read-only (read through windows)'), SQLITE_IOERR_WRITE, `write ${n} bytes at ${pos} of ${f.path}`);
        try {
          const source = heap().subarray(pSrc, pSrc + n);
          const observer = f.isWal ? f.registration?.observer : undefined;
          const barrier = f.isWal ? f.registration?.writeBarrier?.() : null;
          if (barrier) return this.fail(barrier, SQLITE_FULL, `write ${n} bytes at ${pos} of ${f.path}`);
          // Capture first: a capture that has failed refuses the write before it reaches disk.
          observer?.walWrite(source, pos);
          try {
            if (f.isWal) this.walWrite(f, source, pos);
            else writeAll(f, source, pos);
          } catch (e) {
            observer?.walWriteFailed();
            throw e;
          }
          return SQLITE_OK;
        } catch (e) {
          return this.fail(e, ioCode(e, SQLITE_IOERR_WRITE), `write ${n} bytes at ${pos} of ${f.path}`);
        }
      },
      xTruncate: (pFile: number, size: bigint): number => {
        const f = files.get(pFile);
        if (!f) return SQLITE_IOERR_TRUNCATE;
        if (f.window) return this.fail(new Error('the database is open read-only (read through windows)'), SQLITE_IOERR_TRUNCATE, `truncate ${f.path} to ${size}`);
        try {
          this.flushHeader(f);
          f.fs.ftruncateSync(f.fd, Number(size));
          if (f.isWal) f.registration?.observer?.walTruncate(Number(size));
          return SQLITE_OK;
        } catch (e) {
          return this.fail(e, ioCode(e, SQLITE_IOERR_TRUNCATE), `truncate ${f.path} to ${size}`);
        }
      },
      xSync: (pFile: number, flags: number): number => {
        const f = files.get(pFile);
        if (!f) return SQLITE_IOERR_FSYNC;
        try {
          this.flushHeader(f);
          if (flags & SQLITE_SYNC_DATAONLY) f.fs.fdatasyncSync(f.fd);
          else f.fs.fsyncSync(f.fd);
          return SQLITE_OK;
        } catch (e) {
          return this.fail(e, ioCode(e, SQLITE_IOERR_FSYNC), `fsync ${f.path}`);
        }
      },
      xFileSize: (pFile: number, pSize: number): number => {
        const f = files.get(pFile);
        if (!f) return SQLITE_IOERR_FSTAT;
        try {
          this.flushHeader(f);
          wasm.poke64(pSize, BigInt(f.fs.fstatSync(f.fd).size));
          return SQLITE_OK;
        } catch (e) {
          return this.fail(e, SQLITE_IOERR_FSTAT, `fstat ${f.path}`);
        }
      },
      // One process owns each database (locking_mode=EXCLUSIVE plus walship's lock file), so the
      // in-process lock level is all SQLite needs to see.
      xLock: (pFile: number, level: number): number => {
        const f = files.get(pFile);
        if (f) f.lockLevel = level;
        return SQLITE_OK;
      },
      xUnlock: (pFile: number, level: number): number => {
        const f = files.get(pFile);
        if (f) f.lockLevel = level;
        return SQLITE_OK;
      },
      xCheckReservedLock: (pFile: number, pOut: number): number => {
        const f = files.get(pFile);
        wasm.poke32(pOut, f && f.lockLevel >= 2 ? 1 : 0);
        return SQLITE_OK;
      },
      xFileControl: (pFile: number, op: number, _pArg: number): number => {
        if (op === SQLITE_FCNTL_COMMIT_PHASETWO) {
          const f = files.get(pFile);
          if (f?.isMainDb) {
            try {
              // The commit is over: its last frame header (a checksum rewrite) must be in the file
              // before the application hears of the commit or capture emits it.
              this.flushAllHeaders();
            } catch (e) {
              return this.fail(e, ioCode(e, SQLITE_IOERR_WRITE), `write a WAL frame header after the commit of ${f.path}`);
            }
            try {
              f.registration?.observer?.commitPhaseTwo();
            } catch (e) {
              return this.fail(e, SQLITE_IOERR, `capture after commit of ${f.path}`);
            }
          }
          return SQLITE_OK;
        }
        return SQLITE_NOTFOUND;
      },
      xSectorSize: (pFile: number): number => files.get(pFile)?.registration?.sectorSize ?? 4096,
      xDeviceCharacteristics: (pFile: number): number => {
        const reg = files.get(pFile)?.registration;
        return (reg?.powersafeOverwrite ?? true)
          ? SQLITE_IOCAP_POWERSAFE_OVERWRITE | SQLITE_IOCAP_UNDELETABLE_WHEN_OPEN
          : SQLITE_IOCAP_UNDELETABLE_WHEN_OPEN;
      },
    };

    const vfsMethods = {
      xOpen: (_pVfs: number, zName: number, pFile: number, flags: number, pOutFlags: number): number => {
        let path = '';
        try {
          const temp = !zName || wasm.peek8(zName) === 0;
          path = temp ? join(tmpdir(), `walship-tmp-${process.pid}-${randomBytes(8).toString('hex')}`) : wasm.cstrToJs(zName);
          const registration = this.registrationFor(path, flags);
          const fsOps = registration?.fs ?? nodeFs;
          const readOnly = (flags & SQLITE_OPEN_READONLY) !== 0;
          let oflags = readOnly ? fsc.O_RDONLY : fsc.O_RDWR;
          if (flags & SQLITE_OPEN_CREATE) oflags |= fsc.O_CREAT;
          if (flags & SQLITE_OPEN_EXCLUSIVE) oflags |= fsc.O_EXCL;
          const fd = fsOps.openSync(path, oflags, flags & SQLITE_OPEN_CREATE ? createMode(path, flags, temp, fsOps) : 0o644);
          if (flags & SQLITE_OPEN_MAIN_DB) {
            const st = fsOps.fstatSync(fd) as { size: number; isDirectory?: () => boolean };
            if (st.isDirectory?.()) {
              fsOps.closeSync(fd);
              throw new Error('is a directory');
            }
          }
          let window: WindowReader | null = null;
          if (flags & SQLITE_OPEN_MAIN_DB && registration?.readWindow) {
            try {
              window = new WindowReader(fsOps, path, fd, registration.readWindow);
            } catch (e) {
              fsOps.closeSync(fd);
              throw e;
            }
          }
          files.set(pFile, {
            path,
            fd,
            flags,
            deleteOnClose: temp || (flags & SQLITE_OPEN_DELETEONCLOSE) !== 0,
            fs: fsOps,
            registration,
            isWal: (flags & SQLITE_OPEN_WAL) !== 0,
            isMainDb: (flags & SQLITE_OPEN_MAIN_DB) !== 0,
            lockLevel: 0,
            pendingAt: -1,
            frame: (flags & SQLITE_OPEN_WAL) !== 0 ? new Uint8Array(WAL_FRAME_HEADER + 8192) : new Uint8Array(0),
            window,
          });
          const file = new capi.sqlite3_file(pFile);
          file.$pMethods = ioMethods.pointer;
          file.dispose();
          if (pOutFlags) wasm.poke32(pOutFlags, flags);
          return SQLITE_OK;
        } catch (e) {
          return this.fail(e, SQLITE_CANTOPEN, `open ${path || '(unnamed)'}`);
        }
      },
      xDelete: (_pVfs: number, zName: number, syncDir: number): number => {
        const path = wasm.cstrToJs(zName);
        const fsOps = this.registrationFor(path, 0)?.fs ?? nodeFs;
        try {
          fsOps.unlinkSync(path);
        } catch (e) {
          if (errnoOf(e) === 'ENOENT') return SQLITE_IOERR_DELETE_NOENT;
          return this.fail(e, SQLITE_IOERR_DELETE, `delete ${path}`);
        }
        if (syncDir) {
          try {
            const dfd = fsOps.openSync(dirname(path), fsc.O_RDONLY);
            try {
              fsOps.fsyncSync(dfd);
            } finally {
              fsOps.closeSync(dfd);
            }
          } catch (e) {
            return this.fail(e, SQLITE_IOERR_DELETE, `fsync directory of ${path}`);
          }
        }
        return SQLITE_OK;
      },
      xAccess: (_pVfs: number, zName: number, flags: number, pOut: number): number => {
        const path = wasm.cstrToJs(zName);
        try {
          let yes = false;
          try {
            const st = nodeFs.statSync(path);
            // Like SQLite's unix VFS: an empty regular file does not "exist" as a journal or WAL.
            yes = flags === SQLITE_ACCESS_EXISTS ? !st.isFile() || st.size > 0 : true;
          } catch (e) {
            if (errnoOf(e) !== 'ENOENT') throw e;
          }
          wasm.poke32(pOut, yes ? 1 : 0);
          return SQLITE_OK;
        } catch (e) {
          return this.fail(e, SQLITE_IOERR_ACCESS, `access ${path}`);
        }
      },
      xFullPathname: (_pVfs: number, zName: number, nOut: number, pOut: number): number => {
        const full = resolve(wasm.cstrToJs(zName));
        const bytes = new TextEncoder().encode(full);
        if (bytes.length + 1 > nOut) return this.fail(new Error(`path longer than ${nOut - 1} bytes`), SQLITE_CANTOPEN, `resolve ${full}`);
        const h = heap();
        h.set(bytes, pOut);
        h[pOut + bytes.length] = 0;
        return SQLITE_OK;
      },
      xRandomness: (_pVfs: number, nOut: number, pOut: number): number => {
        heap().set(randomBytes(nOut), pOut);
        return nOut;
      },
      xSleep: (_pVfs: number, _micros: number): number => 0,
      xCurrentTime: (_pVfs: number, pOut: number): number => {
        wasm.poke(pOut, 2440587.5 + Date.now() / 864e5, 'double');
        return SQLITE_OK;
      },
      xCurrentTimeInt64: (_pVfs: number, pOut: number): number => {
        wasm.poke(pOut, 210866760000000n + BigInt(Date.now()), 'i64');
        return SQLITE_OK;
      },
      xGetLastError: (_pVfs: number, nOut: number, pOut: number): number => {
        const e = this.lastError;
        if (!e || nOut <= 0) return SQLITE_OK;
        const bytes = new TextEncoder().encode(e.message).subarray(0, nOut - 1);
        const h = heap();
        h.set(bytes, pOut);
        h[pOut + bytes.length] = 0;
        return e.code;
      },
    };

    this.sqlite3.vfs.installVfs({
      io: { struct: ioMethods as never, methods: this.guardAll(io) as never },
      vfs: { struct: vfs as never, methods: this.guardAll(vfsMethods) as never },
    });
  }

  /**
   * The methods above catch what they expect; this wrapper is the backstop that guarantees no
   * exception (a bug, a throwing observer) ever unwinds through WASM frames.
   */
  private guardAll<T extends Record<string, (...args: never[]) => number>>(methods: T): T {
    const out: Record<string, (...args: never[]) => number> = {};
    for (const [name, fn] of Object.entries(methods)) {
      out[name] = (...args: never[]): number => {
        try {
          return fn(...args);
        } catch (e) {
          return this.fail(e, SQLITE_IOERR, `walship vfs ${name}`);
        }
      };
    }
    return out as T;
  }
}

const installed = new WeakMap<Sqlite3, NodeVfs>();

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
  peek8(p: number): number;
  poke32(p: number, v: number): void;
  poke64(p: number, v: bigint): void;
  poke(p: number, v: number | bigint, type: string): void;
}
