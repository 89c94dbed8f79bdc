import { resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Sqlite3 } from './sqlite.js';
import { NodeFiles, SQLITE_CANTOPEN, SQLITE_IOERR, SQLITE_OK, type DatabaseRegistration } from './node-files.js';

export type { DatabaseRegistration, WalObserver } from './node-files.js';

/**
 * A persistent SQLite VFS over synchronous node:fs calls, with a hook on the `-wal` file of every
 * registered database. This file is the only place that touches WASM pointers: every method decodes
 * its pointers here and hands plain values to the file logic (node-files.ts), which catches every
 * exception, records it for xGetLastError, and returns a specific SQLite code. Nothing ever throws
 * across the WASM boundary.
 */
export class NodeVfs {
  readonly name: string;
  private readonly sqlite3: Sqlite3;
  private readonly files = new NodeFiles();

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
    this.files.registerDatabase(path, registration);
  }

  unregisterDatabase(path: string): void {
    this.files.unregisterDatabase(path);
  }

  /** The message of the last failure, for errors raised after SQLite reports an I/O code. */
  takeLastError(): string | undefined {
    const e = this.files.lastError;
    this.files.lastError = undefined;
    return e?.message;
  }

  private register(): void {
    // sqlite-wasm's published types miss the struct-binder members ($iVersion, structInfo, ...).
    const capi = this.sqlite3.capi as unknown as LooseCapi;
    const wasm = this.sqlite3.wasm as unknown as LooseWasm;
    const ioMethods = new capi.sqlite3_io_methods();
    ioMethods.$iVersion = 1;
    const vfs = new capi.sqlite3_vfs();
    vfs.$iVersion = 2;
    vfs.$szOsFile = capi.sqlite3_file.structInfo.sizeof;
    vfs.$mxPathname = 1024;
    vfs.$zName = wasm.allocCString(this.name);
    this.sqlite3.vfs.installVfs({
      io: { struct: ioMethods as never, methods: this.guardAll(this.ioMethods(wasm)) as never },
      vfs: { struct: vfs as never, methods: this.guardAll(this.vfsMethods(wasm, capi, ioMethods.pointer)) as never },
    });
  }

  /** sqlite3_io_methods: pointers and 64-bit values decoded, the rest to the file logic. */
  private ioMethods(wasm: LooseWasm) {
    const files = this.files;
    const heap = (): Uint8Array => wasm.heap8u();
    return {
      xClose: (pFile: number): number => files.close(pFile),
      xRead: (pFile: number, pDest: number, n: number, offset: bigint): number => files.read(pFile, heap().subarray(pDest, pDest + n), offset),
      xWrite: (pFile: number, pSrc: number, n: number, offset: bigint): number => files.write(pFile, heap().subarray(pSrc, pSrc + n), offset),
      xTruncate: (pFile: number, size: bigint): number => files.truncate(pFile, size),
      xSync: (pFile: number, flags: number): number => files.sync(pFile, flags),
      xFileSize: (pFile: number, pSize: number): number => files.fileSize(pFile, (size) => wasm.poke64(pSize, BigInt(size))),
      xLock: (pFile: number, level: number): number => files.setLockLevel(pFile, level),
      xUnlock: (pFile: number, level: number): number => files.setLockLevel(pFile, level),
      xCheckReservedLock: (pFile: number, pOut: number): number => {
        wasm.poke32(pOut, files.hasReservedLock(pFile) ? 1 : 0);
        return SQLITE_OK;
      },
      xFileControl: (pFile: number, op: number, _pArg: number): number => files.fileControl(pFile, op),
      xSectorSize: (pFile: number): number => files.sectorSize(pFile),
      xDeviceCharacteristics: (pFile: number): number => files.deviceCharacteristics(pFile),
    };
  }

  /** sqlite3_vfs: names and out-pointers decoded here; files opened with `ioMethods` as their methods. */
  private vfsMethods(wasm: LooseWasm, capi: LooseCapi, ioMethods: number) {
    const files = this.files;
    const heap = (): Uint8Array => wasm.heap8u();
    return {
      xOpen: (_pVfs: number, zName: number, pFile: number, flags: number, pOutFlags: number): number => {
        let name: string | null = null;
        try {
          name = !zName || wasm.peek8(zName) === 0 ? null : wasm.cstrToJs(zName);
        } catch (e) {
          return files.fail(e, SQLITE_CANTOPEN, 'open (unnamed)');
        }
        return files.open(name, pFile, flags, () => {
          const file = new capi.sqlite3_file(pFile);
          file.$pMethods = ioMethods;
          file.dispose();
          if (pOutFlags) wasm.poke32(pOutFlags, flags);
        });
      },
      xDelete: (_pVfs: number, zName: number, syncDir: number): number => files.delete(wasm.cstrToJs(zName), syncDir !== 0),
      xAccess: (_pVfs: number, zName: number, flags: number, pOut: number): number => files.access(wasm.cstrToJs(zName), flags, (yes) => wasm.poke32(pOut, yes ? 1 : 0)),
      xFullPathname: (_pVfs: number, zName: number, nOut: number, pOut: number): number => {
        const full = resolve(wasm.cstrToJs(zName));
        const bytes = new TextEncoder().encode(full);
        if (bytes.length + 1 > nOut) return files.fail(new Error(`path longer than ${nOut - 1} bytes`), SQLITE_CANTOPEN, `resolve ${full}`);
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
        const e = files.lastError;
        if (!e || nOut <= 0) return SQLITE_OK;
        const bytes = new TextEncoder().encode(e.message).subarray(0, nOut - 1);
        const h = heap();
        h.set(bytes, pOut);
        h[pOut + bytes.length] = 0;
        return e.code;
      },
    };
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
          return this.files.fail(e, SQLITE_IOERR, `walship vfs ${name}`);
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
