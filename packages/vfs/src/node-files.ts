// The file logic of walship's VFS over synchronous node:fs calls. Every method takes plain values
// (a handle number, a path, a byte view, an offset), catches whatever it runs into, keeps the
// message for xGetLastError and returns a SQLite result code: node-vfs.ts decodes the WASM
// pointers and calls these, as wa-sqlite's FacadeVFS calls its file methods.

import { constants as fsc } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
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
export const SQLITE_OK = 0;
export const SQLITE_IOERR = 10;
const SQLITE_NOTFOUND = 12;
const SQLITE_FULL = 13;
export const SQLITE_CANTOPEN = 14;
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
const SQLITE_ACCESS_EXISTS = 0;
const SQLITE_SYNC_DATAONLY = 0x10;
const SQLITE_FCNTL_COMMIT_PHASETWO = 22;
const SQLITE_IOCAP_POWERSAFE_OVERWRITE = 0x1000;
const SQLITE_IOCAP_UNDELETABLE_WHEN_OPEN = 0x800;

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

/** The open files and registered databases of one VFS, and what it does with them. */
export class NodeFiles {
  private readonly files = new Map<number, OpenFile>();
  private readonly registrations = new Map<string, DatabaseRegistration>();
  /** WAL files holding a frame header that is not on disk yet (at most one in practice). */
  private readonly pendingHeaders = new Set<OpenFile>();
  lastError: { message: string; code: number } | undefined;

  registerDatabase(path: string, registration: DatabaseRegistration): void {
    this.registrations.set(resolve(path), registration);
  }

  unregisterDatabase(path: string): void {
    this.registrations.delete(resolve(path));
  }

  fail(e: unknown, code: number, what: string): number {
    const detail = e instanceof Error ? e.message : String(e);
    this.lastError = { message: `${what}: ${detail}`, code };
    return code;
  }

  /**
   * Opens `name` (null: a new file under the temp directory, deleted on close) as handle `handle`;
   * `opened` runs once it is registered (the facade points SQLite's file at its methods there).
   */
  open(name: string | null, handle: number, flags: number, opened: () => void): number {
    let path = '';
    try {
      const temp = name === null;
      path = temp ? join(tmpdir(), `walship-tmp-${process.pid}-${randomBytes(8).toString('hex')}`) : name;
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
      this.files.set(handle, {
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
      opened();
      return SQLITE_OK;
    } catch (e) {
      return this.fail(e, SQLITE_CANTOPEN, `open ${path || '(unnamed)'}`);
    }
  }

  close(handle: number): number {
    const f = this.files.get(handle);
    if (!f) return SQLITE_OK;
    this.files.delete(handle);
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
  }

  /** Fills `target` from byte `offset`; a short file zero-fills the rest and says so. */
  read(handle: number, target: Uint8Array, offset: bigint): number {
    const f = this.files.get(handle);
    if (!f) return SQLITE_IOERR_READ;
    const n = target.length;
    try {
      this.flushHeader(f);
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
  }

  write(handle: number, source: Uint8Array, offset: bigint): number {
    const f = this.files.get(handle);
    if (!f) return SQLITE_IOERR_WRITE;
    const n = source.length;
    const pos = Number(offset);
    if (f.window) return this.fail(new Error('the database is open read-only (read through windows)'), SQLITE_IOERR_WRITE, `write ${n} bytes at ${pos} of ${f.path}`);
    try {
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
  }

  truncate(handle: number, size: bigint): number {
    const f = this.files.get(handle);
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
  }

  sync(handle: number, flags: number): number {
    const f = this.files.get(handle);
    if (!f) return SQLITE_IOERR_FSYNC;
    try {
      this.flushHeader(f);
      if (flags & SQLITE_SYNC_DATAONLY) f.fs.fdatasyncSync(f.fd);
      else f.fs.fsyncSync(f.fd);
      return SQLITE_OK;
    } catch (e) {
      return this.fail(e, ioCode(e, SQLITE_IOERR_FSYNC), `fsync ${f.path}`);
    }
  }

  /** The file's size goes to `out` when the result is SQLITE_OK. */
  fileSize(handle: number, out: (size: number) => void): number {
    const f = this.files.get(handle);
    if (!f) return SQLITE_IOERR_FSTAT;
    try {
      this.flushHeader(f);
      out(f.fs.fstatSync(f.fd).size);
      return SQLITE_OK;
    } catch (e) {
      return this.fail(e, SQLITE_IOERR_FSTAT, `fstat ${f.path}`);
    }
  }

  // One process owns each database (locking_mode=EXCLUSIVE plus walship's lock file), so the
  // in-process lock level is all SQLite needs to see.
  setLockLevel(handle: number, level: number): number {
    const f = this.files.get(handle);
    if (f) f.lockLevel = level;
    return SQLITE_OK;
  }

  hasReservedLock(handle: number): boolean {
    const f = this.files.get(handle);
    return f !== undefined && f.lockLevel >= 2;
  }

  fileControl(handle: number, op: number): number {
    if (op === SQLITE_FCNTL_COMMIT_PHASETWO) {
      const f = this.files.get(handle);
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
  }

  sectorSize(handle: number): number {
    return this.files.get(handle)?.registration?.sectorSize ?? 4096;
  }

  deviceCharacteristics(handle: number): number {
    const reg = this.files.get(handle)?.registration;
    return (reg?.powersafeOverwrite ?? true) ? SQLITE_IOCAP_POWERSAFE_OVERWRITE | SQLITE_IOCAP_UNDELETABLE_WHEN_OPEN : SQLITE_IOCAP_UNDELETABLE_WHEN_OPEN;
  }

  delete(path: string, syncDir: boolean): number {
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
  }

  /** Whether `path` exists (in SQLITE_ACCESS_EXISTS's sense) goes to `out` when the result is SQLITE_OK. */
  access(path: string, flags: number, out: (yes: boolean) => void): number {
    try {
      let yes = false;
      try {
        const st = nodeFs.statSync(path);
        // Like SQLite's unix VFS: an empty regular file does not "exist" as a journal or WAL.
        yes = flags === SQLITE_ACCESS_EXISTS ? !st.isFile() || st.size > 0 : true;
      } catch (e) {
        if (errnoOf(e) !== 'ENOENT') throw e;
      }
      out(yes);
      return SQLITE_OK;
    } catch (e) {
      return this.fail(e, SQLITE_IOERR_ACCESS, `access ${path}`);
    }
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
}
