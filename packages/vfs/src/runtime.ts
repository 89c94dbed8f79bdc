/**
 * The raw exports of the `@sqlite.org/sqlite-wasm` module and the per-module state (heap views,
 * scratch buffer) every connection on one sqlite3 instance shares.
 */
import { WalshipError } from './errors.js';
import type { Sqlite3 } from './sqlite.js';
import type { RowFactory } from './values.js';


/** The subset of `sqlite3.wasm.exports` used here. Pointers are wasm32 numbers, 64-bit ints BigInt. */
export interface RawExports {
  sqlite3_prepare_v3(db: number, sql: number, nByte: number, flags: number, ppStmt: number, pzTail: number): number;
  sqlite3_step(p: number): number;
  sqlite3_reset(p: number): number;
  sqlite3_clear_bindings(p: number): number;
  sqlite3_finalize(p: number): number;
  sqlite3_bind_parameter_count(p: number): number;
  sqlite3_bind_parameter_name(p: number, i: number): number;
  sqlite3_bind_int(p: number, i: number, v: number): number;
  sqlite3_bind_int64(p: number, i: number, v: bigint): number;
  sqlite3_bind_double(p: number, i: number, v: number): number;
  sqlite3_bind_text(p: number, i: number, ptr: number, n: number, dtor: number): number;
  sqlite3_bind_blob(p: number, i: number, ptr: number, n: number, dtor: number): number;
  sqlite3_bind_null(p: number, i: number): number;
  sqlite3_column_count(p: number): number;
  sqlite3_column_name(p: number, i: number): number;
  sqlite3_column_decltype(p: number, i: number): number;
  sqlite3_column_type(p: number, i: number): number;
  sqlite3_column_int64(p: number, i: number): bigint;
  sqlite3_column_double(p: number, i: number): number;
  sqlite3_column_text(p: number, i: number): number;
  sqlite3_column_blob(p: number, i: number): number;
  sqlite3_column_bytes(p: number, i: number): number;
  sqlite3_stmt_status(p: number, op: number, resetFlag: number): number;
  sqlite3_changes64(db: number): bigint;
  sqlite3_total_changes64(db: number): bigint;
  sqlite3_total_changes(db: number): number;
  sqlite3_last_insert_rowid(db: number): bigint;
  sqlite3_errmsg(db: number): number;
  sqlite3_get_autocommit(db: number): number;
  sqlite3_extended_result_codes(db: number, on: number): number;
  sqlite3_next_stmt(db: number, p: number): number;
  sqlite3_column_table_name(p: number, i: number): number;
  sqlite3_column_origin_name(p: number, i: number): number;
  sqlite3_column_database_name(p: number, i: number): number;
  sqlite3_stmt_readonly(p: number): number;
  sqlite3_sql(p: number): number;
  sqlite3_busy_timeout(db: number, ms: number): number;
  sqlite3_value_type(v: number): number;
  sqlite3_value_int64(v: number): bigint;
  sqlite3_value_double(v: number): number;
  sqlite3_value_text(v: number): number;
  sqlite3_value_blob(v: number): number;
  sqlite3_value_bytes(v: number): number;
  sqlite3_result_int64(ctx: number, v: bigint): void;
  sqlite3_result_double(ctx: number, v: number): void;
  sqlite3_result_text(ctx: number, p: number, n: number, dtor: number): void;
  sqlite3_result_blob(ctx: number, p: number, n: number, dtor: number): void;
  sqlite3_result_null(ctx: number): void;
  sqlite3_result_error(ctx: number, p: number, n: number): void;
  sqlite3_aggregate_context(ctx: number, n: number): number;
  sqlite3_user_data(ctx: number): number;
  sqlite3_create_function_v2(db: number, name: number, nArg: number, flags: number, pApp: number, xFunc: number, xStep: number, xFinal: number, xDestroy: number): number;
  sqlite3_create_window_function(db: number, name: number, nArg: number, flags: number, pApp: number, xStep: number, xFinal: number, xValue: number, xInverse: number, xDestroy: number): number;
}

export const SQLITE_OK = 0;
export const SQLITE_ROW = 100;
export const SQLITE_DONE = 101;
export const SQLITE_INTEGER = 1;
export const SQLITE_FLOAT = 2;
export const SQLITE_TEXT = 3;
export const SQLITE_BLOB = 4;
export const SQLITE_TRANSIENT = -1;
export const SQLITE_PREPARE_PERSISTENT = 0x01;
export const SQLITE_STMTSTATUS_REPREPARE = 5;

export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;
export const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** Strings/blobs up to this size go through the shared scratch buffer; larger ones get their own. */
export const SCRATCH_MAX = 1 << 20;
/** Strings shorter than this are encoded/decoded by hand when they are ASCII (faster than TextEncoder/TextDecoder). */
export const SHORT_STRING = 64;

/** The parts of WebAssembly.Memory used here (the WebAssembly lib types are not in this build's lib). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}

/**
 * Per-module state shared by every connection on the same sqlite3 instance: typed exports, cached
 * heap views (re-created when memory growth detaches them), the scratch buffer and out-pointers.
 */
export class Runtime {
  readonly x: RawExports;
  readonly sqlite3: Sqlite3;
  private readonly memory: WasmMemory;
  private heap: Uint8Array;
  private heap32: Int32Array;
  /** Reusable buffer for bound strings/blobs (SQLite copies them: SQLITE_TRANSIENT). */
  scratch = 0;
  scratchSize = 0;
  private scratchBytes: Uint8Array | undefined;
  /** Set when a value was handed to SQLite in its own allocation (large values): clear it after the run. */
  ownedBound = false;
  /** Two pointer-sized out slots, e.g. for `ppStmt` and `pzTail`. */
  readonly out: number;
  readonly encoder = new TextEncoder();
  readonly decoder = new TextDecoder('utf-8');
  /** SQLITE_WASM_DEALLOC: destructor pointer that makes SQLite free() a value it now owns. */
  readonly deallocDtor: number;
  /** Row factories keyed by column-name list, shared so repeated prepares reuse warmed-up code. */
  readonly rowFactories = new Map<string, RowFactory>();
  private readonly rcNames = new Map<number, string>();

  constructor(sqlite3: Sqlite3) {
    const wasm = sqlite3.wasm as unknown as {
      exports: RawExports & { memory?: WasmMemory };
      memory?: WasmMemory;
      bigIntEnabled: boolean;
      alloc(n: number): number;
    };
    if (!wasm.bigIntEnabled) {
      throw new WalshipError('ERR_SQLITE_BUILD', 'the sqlite-wasm build must have BigInt (int64) support enabled');
    }
    this.sqlite3 = sqlite3;
    this.x = wasm.exports;
    const memory = wasm.memory ?? wasm.exports.memory;
    if (!memory) throw new WalshipError('ERR_SQLITE_BUILD', 'the sqlite-wasm module exposes no WasmMemory');
    this.memory = memory;
    this.heap = new Uint8Array(memory.buffer);
    this.heap32 = new Int32Array(memory.buffer);
    this.out = wasm.alloc(16);
    this.growScratch(4096);
    this.deallocDtor = Number((sqlite3.capi as unknown as { SQLITE_WASM_DEALLOC: number }).SQLITE_WASM_DEALLOC);
  }

  /** Current byte view of the wasm heap (old views are detached by memory growth). */
  h8(): Uint8Array {
    let h = this.heap;
    if (h.byteLength === 0) h = this.heap = new Uint8Array(this.memory.buffer);
    return h;
  }

  h32(): Int32Array {
    let h = this.heap32;
    if (h.byteLength === 0) h = this.heap32 = new Int32Array(this.memory.buffer);
    return h;
  }

  alloc(n: number): number {
    return (this.sqlite3.wasm as unknown as { alloc(n: number): number }).alloc(n);
  }

  dealloc(p: number): void {
    (this.sqlite3.wasm as unknown as { dealloc(p: number): void }).dealloc(p);
  }

  growScratch(n: number): void {
    let size = this.scratchSize || 4096;
    while (size < n) size *= 2;
    const p = this.alloc(size);
    if (this.scratch) this.dealloc(this.scratch);
    this.scratch = p;
    this.scratchSize = size;
    this.scratchBytes = undefined;
  }

  /** A byte view of the whole scratch buffer, kept between calls (one allocation less per bound string). */
  scratchView(): Uint8Array {
    let v = this.scratchBytes;
    if (v === undefined || v.byteLength === 0) v = this.scratchBytes = new Uint8Array(this.memory.buffer, this.scratch, this.scratchSize);
    return v;
  }

  /** A copy of heap bytes as a Buffer where the runtime has one (Node, Deno's node compat), else a Uint8Array. */
  readonly blob: (view: Uint8Array) => Uint8Array = typeof Buffer === 'function' ? (view) => Buffer.from(view) : (view) => view.slice();

  /** Decodes `n` UTF-8 bytes at `ptr` (a copy; never a view of the heap). */
  str(ptr: number, n: number): string {
    const h = this.h8();
    if (n < SHORT_STRING) {
      let s = '';
      for (let i = ptr, end = ptr + n; i < end; i++) {
        const c = h[i]!;
        if (c > 0x7f) return this.decoder.decode(h.subarray(ptr, ptr + n));
        s += String.fromCharCode(c);
      }
      return s;
    }
    return this.decoder.decode(h.subarray(ptr, ptr + n));
  }

  /** Decodes a NUL-terminated UTF-8 string, or returns null for a null pointer. */
  cstr(ptr: number): string | null {
    if (!ptr) return null;
    const h = this.h8();
    let end = ptr;
    while (h[end] !== 0) end++;
    return this.str(ptr, end - ptr);
  }

  /** Extended result code name, e.g. `SQLITE_CONSTRAINT_UNIQUE`. */
  rcName(rc: number): string {
    let name = this.rcNames.get(rc);
    if (name === undefined) {
      const fn = (this.sqlite3.capi as unknown as { sqlite3_js_rc_str?: (rc: number) => string | undefined }).sqlite3_js_rc_str;
      name = fn?.(rc) ?? `SQLITE_UNKNOWN_${rc}`;
      this.rcNames.set(rc, name);
    }
    return name;
  }

  /** Copies a JS string into a fresh NUL-terminated heap allocation; returns [ptr, byteLength]. */
  allocSql(sql: string): [number, number] {
    const bytes = this.encoder.encode(sql);
    const p = this.alloc(bytes.length + 1);
    const h = this.h8();
    h.set(bytes, p);
    h[p + bytes.length] = 0;
    return [p, bytes.length];
  }
}

const runtimes = new WeakMap<object, Runtime>();

export function runtimeFor(sqlite3: Sqlite3): Runtime {
  let rt = runtimes.get(sqlite3);
  if (!rt) {
    rt = new Runtime(sqlite3);
    runtimes.set(sqlite3, rt);
  }
  return rt;
}
