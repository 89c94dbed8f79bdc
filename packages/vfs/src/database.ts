/**
 * A synchronous, better-sqlite3-shaped database API bound directly to the raw exports of the
 * `@sqlite.org/sqlite-wasm` module. The oo1 layer is deliberately bypassed on the hot path: every
 * bind, step and column read below is a single call into `sqlite3.wasm.exports`, strings and blobs
 * are moved through one reusable scratch buffer, and rows are built by a per-column-list factory so
 * that V8 sees one hidden class per statement.
 */
import { SqliteError, WalshipError } from './errors.js';
import type { Sqlite3 } from './sqlite.js';

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/** An open `sqlite3*` connection owned by the caller until it is handed to a {@link Database}. */
export interface DatabaseHandle {
  sqlite3: Sqlite3;
  /** `sqlite3*` pointer in the wasm heap. */
  pDb: number;
  filename: string;
}

export interface RunResult {
  changes: number;
  lastInsertRowid: number | bigint;
}

/** Values that can be bound to a parameter. Booleans bind as the integers 0 and 1. */
export type BindValue = number | bigint | string | Uint8Array | null | boolean;

/**
 * Arguments to run/get/all/iterate: positional values (`?`, `?NNN`), an array of them, or a
 * plain object whose keys name `:name` / `@name` / `$name` parameters without the prefix (it may
 * follow the positional values when a statement mixes both kinds).
 */
export type BindParams =
  | BindValue[]
  | [Record<string, BindValue>]
  | [readonly BindValue[]]
  | [...BindValue[], Record<string, BindValue>];

export interface ColumnDefinition {
  name: string;
  /** Declared type of the table column, or null for expressions. */
  type: string | null;
}

/**
 * Authorizer callback (see https://sqlite.org/c3ref/set_authorizer.html), invoked while statements
 * are prepared. `action` is an `SQLITE_*` action code; return `SQLITE_OK` (0), `SQLITE_DENY` (1) or
 * `SQLITE_IGNORE` (2). An exception thrown here denies the statement and becomes the `cause` of
 * the error thrown by `prepare`/`exec`.
 */
export type Authorizer = (
  action: number,
  arg1: string | null,
  arg2: string | null,
  dbName: string | null,
  trigger: string | null,
) => number;

export interface DatabaseOptions {
  /** Called once by {@link Database.close} while the connection is still open. */
  onClose?: () => void;
  authorizer?: Authorizer;
  /** Replaces an SqliteError with a more specific error (its cause) before it is thrown. */
  mapError?: (e: SqliteError) => Error;
}

export type TransactionFunction<F extends (...a: any[]) => any> = F & {
  deferred: F;
  immediate: F;
  exclusive: F;
};

// ---------------------------------------------------------------------------------------------
// Raw wasm exports
// ---------------------------------------------------------------------------------------------

/** The subset of `sqlite3.wasm.exports` used here. Pointers are wasm32 numbers, 64-bit ints BigInt. */
interface RawExports {
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
  sqlite3_last_insert_rowid(db: number): bigint;
  sqlite3_errmsg(db: number): number;
  sqlite3_get_autocommit(db: number): number;
  sqlite3_extended_result_codes(db: number, on: number): number;
  sqlite3_next_stmt(db: number, p: number): number;
}

const SQLITE_OK = 0;
const SQLITE_ROW = 100;
const SQLITE_DONE = 101;
const SQLITE_INTEGER = 1;
const SQLITE_FLOAT = 2;
const SQLITE_TEXT = 3;
const SQLITE_BLOB = 4;
const SQLITE_TRANSIENT = -1;
const SQLITE_PREPARE_PERSISTENT = 0x01;
const SQLITE_STMTSTATUS_REPREPARE = 5;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** Strings/blobs up to this size go through the shared scratch buffer; larger ones get their own. */
const SCRATCH_MAX = 1 << 20;
/** Strings shorter than this are encoded/decoded by hand when they are ASCII (faster than TextEncoder/TextDecoder). */
const SHORT_STRING = 64;

/** The parts of WebAssembly.Memory used here (the WebAssembly lib types are not in this build's lib). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}

/**
 * Per-module state shared by every connection on the same sqlite3 instance: typed exports, cached
 * heap views (re-created when memory growth detaches them), the scratch buffer and out-pointers.
 */
class Runtime {
  readonly x: RawExports;
  readonly sqlite3: Sqlite3;
  private readonly memory: WasmMemory;
  private heap: Uint8Array;
  private heap32: Int32Array;
  /** Reusable buffer for bound strings/blobs (SQLite copies them: SQLITE_TRANSIENT). */
  scratch = 0;
  scratchSize = 0;
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
  }

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

function runtimeFor(sqlite3: Sqlite3): Runtime {
  let rt = runtimes.get(sqlite3);
  if (!rt) {
    rt = new Runtime(sqlite3);
    runtimes.set(sqlite3, rt);
  }
  return rt;
}

// ---------------------------------------------------------------------------------------------
// Binding and reading values
// ---------------------------------------------------------------------------------------------

function bindRangeError(v: bigint, index: number | string): WalshipError {
  return new WalshipError('ERR_BIND_RANGE', `bigint ${v} bound to parameter ${index} does not fit in a signed 64-bit integer`, {
    details: { parameter: index, value: v.toString() },
  });
}

/** Binds one value; returns SQLite's rc (the caller turns non-zero into a SqliteError). */
function bindValue(rt: Runtime, p: number, i: number, v: unknown, label: number | string): number {
  const x = rt.x;
  switch (typeof v) {
    case 'number':
      if ((v | 0) === v) return x.sqlite3_bind_int(p, i, v);
      if (Number.isSafeInteger(v)) return x.sqlite3_bind_int64(p, i, BigInt(v));
      return x.sqlite3_bind_double(p, i, v);
    case 'string':
      return bindText(rt, p, i, v);
    case 'bigint':
      if (v < INT64_MIN || v > INT64_MAX) throw bindRangeError(v, label);
      return x.sqlite3_bind_int64(p, i, v);
    case 'boolean':
      return x.sqlite3_bind_int(p, i, v ? 1 : 0);
    case 'object':
      if (v === null) return x.sqlite3_bind_null(p, i);
      if (v instanceof Uint8Array) return bindBlob(rt, p, i, v);
      break;
    default:
      break;
  }
  const what = v === undefined ? 'undefined' : typeof v === 'object' ? ((v as object).constructor?.name ?? 'object') : typeof v;
  throw new WalshipError(
    'ERR_BIND_TYPE',
    `cannot bind ${what} to parameter ${label}: expected number, bigint, string, Uint8Array, boolean or null` +
      (typeof v === 'object' ? ' (named parameters need :name, @name or $name placeholders)' : ''),
    { details: { parameter: label, type: what } },
  );
}

function bindText(rt: Runtime, p: number, i: number, s: string): number {
  const n = s.length;
  const max = n * 3;
  if (max > SCRATCH_MAX) {
    // Large value: encode into a buffer SQLite takes ownership of (no second copy).
    const bytes = rt.encoder.encode(s);
    const ptr = rt.alloc(bytes.length || 1);
    rt.h8().set(bytes, ptr);
    rt.ownedBound = true;
    return rt.x.sqlite3_bind_text(p, i, ptr, bytes.length, rt.deallocDtor);
  }
  if (max > rt.scratchSize) rt.growScratch(max);
  const ptr = rt.scratch;
  const h = rt.h8();
  let len: number;
  if (n < SHORT_STRING) {
    let j = 0;
    for (; j < n; j++) {
      const c = s.charCodeAt(j);
      if (c > 0x7f) break;
      h[ptr + j] = c;
    }
    len = j === n ? n : j + rt.encoder.encodeInto(j === 0 ? s : s.slice(j), h.subarray(ptr + j, ptr + rt.scratchSize)).written;
  } else {
    len = rt.encoder.encodeInto(s, h.subarray(ptr, ptr + rt.scratchSize)).written;
  }
  return rt.x.sqlite3_bind_text(p, i, ptr, len, SQLITE_TRANSIENT);
}

function bindBlob(rt: Runtime, p: number, i: number, v: Uint8Array): number {
  const n = v.byteLength;
  if (n > SCRATCH_MAX) {
    const ptr = rt.alloc(n);
    rt.h8().set(v, ptr);
    rt.ownedBound = true;
    return rt.x.sqlite3_bind_blob(p, i, ptr, n, rt.deallocDtor);
  }
  if (n > rt.scratchSize) rt.growScratch(n);
  // A non-null pointer with n == 0 binds a zero-length blob (a null pointer would bind NULL).
  rt.h8().set(v, rt.scratch);
  return rt.x.sqlite3_bind_blob(p, i, rt.scratch, n, SQLITE_TRANSIENT);
}

function integerOverflow(p: number, i: number, rt: Runtime): WalshipError {
  const v = rt.x.sqlite3_column_int64(p, i);
  return new WalshipError(
    'ERR_INTEGER_OVERFLOW',
    `integer ${v} in column ${i} is outside the safe integer range; use safeIntegers() to read it as a bigint`,
    { details: { column: i, value: v.toString() } },
  );
}

/** Reads column `i` of the current row of `p`. */
function readColumn(rt: Runtime, p: number, i: number, safe: boolean): unknown {
  const x = rt.x;
  switch (x.sqlite3_column_type(p, i)) {
    case SQLITE_INTEGER: {
      if (safe) return x.sqlite3_column_int64(p, i);
      // (double)int64 is exact when |value| < 2^53, and avoids a BigInt allocation per value.
      const d = x.sqlite3_column_double(p, i);
      if (d <= MAX_SAFE && d >= -MAX_SAFE) return d;
      throw integerOverflow(p, i, rt);
    }
    case SQLITE_FLOAT:
      return x.sqlite3_column_double(p, i);
    case SQLITE_TEXT: {
      const ptr = x.sqlite3_column_text(p, i);
      return rt.str(ptr, x.sqlite3_column_bytes(p, i));
    }
    case SQLITE_BLOB: {
      const ptr = x.sqlite3_column_blob(p, i);
      const n = x.sqlite3_column_bytes(p, i);
      return n === 0 ? new Uint8Array(0) : rt.h8().slice(ptr, ptr + n);
    }
    default:
      return null;
  }
}

type ReadColumn = typeof readColumn;
type RowFactory = (rt: Runtime, p: number, safe: boolean) => Record<string, unknown>;

/**
 * Builds a function returning `{ name0: read(0), name1: read(1), ... }` as one object literal, so
 * every row of a statement shares a hidden class. Falls back to a loop where code generation is
 * unavailable (e.g. under a CSP without 'unsafe-eval').
 */
function makeRowFactory(rt: Runtime, names: readonly string[]): RowFactory {
  const key = JSON.stringify(names);
  const cached = rt.rowFactories.get(key);
  if (cached) return cached;
  let factory: RowFactory;
  try {
    const fields = names.map((name, i) => {
      const k = JSON.stringify(name);
      // A quoted `"__proto__":` in a literal would set the prototype; a computed key defines a property.
      return `${name === '__proto__' ? `[${k}]` : k}: read(rt, p, ${i}, safe)`;
    });
    factory = new Function('read', `return function row(rt, p, safe) { return { ${fields.join(', ')} }; };`)(
      readColumn,
    ) as RowFactory;
  } catch {
    factory = (frt, p, safe) => {
      const row: Record<string, unknown> = {};
      for (let i = 0; i < names.length; i++) {
        Object.defineProperty(row, names[i]!, {
          value: readColumn(frt, p, i, safe),
          writable: true,
          enumerable: true,
          configurable: true,
        });
      }
      return row;
    };
  }
  if (rt.rowFactories.size >= 1000) rt.rowFactories.clear();
  rt.rowFactories.set(key, factory);
  return factory;
}

// ---------------------------------------------------------------------------------------------
// Connection state shared by Database and its statements
// ---------------------------------------------------------------------------------------------

class Connection {
  readonly rt: Runtime;
  readonly x: RawExports;
  readonly pDb: number;
  readonly name: string;
  open = true;
  /** Exception thrown by the user's authorizer during the current prepare, if any. */
  authorizerError: unknown = undefined;
  mapError: ((e: SqliteError) => Error) | undefined;

  constructor(rt: Runtime, pDb: number, name: string) {
    this.rt = rt;
    this.x = rt.x;
    this.pDb = pDb;
    this.name = name;
  }

  assertOpen(): void {
    if (!this.open) throw dbClosed(this.name);
  }

  /** SqliteError for `rc`, with the connection's current error message. */
  error(rc: number, sql: string): Error {
    const code = this.rt.rcName(rc);
    const msg = this.rt.cstr(this.x.sqlite3_errmsg(this.pDb)) || code;
    const authErr = this.authorizerError;
    this.authorizerError = undefined;
    const err = new SqliteError(code, rc, msg, authErr === undefined ? { details: { sql } } : { details: { sql }, cause: authErr });
    return this.mapError ? this.mapError(err) : err;
  }

  /**
   * Prepares the first statement of `sql` (already copied to the heap at `[ptr, ptr+n)`).
   * Returns the statement pointer (0 for empty/comment-only input) and the tail pointer.
   */
  prepareAt(ptr: number, n: number, flags: number, sql: string): [number, number] {
    const rt = this.rt;
    const out = rt.out;
    this.authorizerError = undefined;
    const rc = this.x.sqlite3_prepare_v3(this.pDb, ptr, n, flags, out, out + 4);
    const h32 = rt.h32();
    const pStmt = h32[out >> 2]!;
    const tail = h32[(out >> 2) + 1]!;
    if (rc !== SQLITE_OK) {
      if (pStmt) this.x.sqlite3_finalize(pStmt);
      throw this.error(rc, sql);
    }
    this.authorizerError = undefined;
    return [pStmt, tail];
  }
}

function dbClosed(name: string): WalshipError {
  return new WalshipError('ERR_DB_CLOSED', `database ${name} is closed`, { details: { filename: name } });
}

/** True if bytes `[from, to)` hold only whitespace, `;`, and SQL comments. */
function onlyTrivia(h: Uint8Array, from: number, to: number): boolean {
  let i = from;
  while (i < to) {
    const c = h[i]!;
    if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x0c || c === 0x3b) {
      i++;
    } else if (c === 0x2d && h[i + 1] === 0x2d) {
      i += 2;
      while (i < to && h[i] !== 0x0a) i++;
    } else if (c === 0x2f && h[i + 1] === 0x2a) {
      i += 2;
      while (i < to && !(h[i] === 0x2a && h[i + 1] === 0x2f)) i++;
      i += 2;
    } else {
      return false;
    }
  }
  return true;
}

/** Finalizes statements that became unreachable while their connection is still open. */
const statementRegistry = new FinalizationRegistry<{ conn: Connection; p: number }>(({ conn, p }) => {
  if (conn.open) conn.x.sqlite3_finalize(p);
});

// ---------------------------------------------------------------------------------------------
// Statement
// ---------------------------------------------------------------------------------------------

const MODE_OBJECT = 0;
const MODE_RAW = 1;
const MODE_PLUCK = 2;

let createStatement: (conn: Connection, p: number, source: string, pragma: boolean) => Statement;
let finalizeStatement: (stmt: Statement) => void;

function isNamedObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || v instanceof Uint8Array || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

export class Statement {
  /** The SQL text this statement was prepared from. */
  readonly source: string;
  /** True if the statement returns data (it has result columns). */
  readonly reader: boolean;

  private readonly conn: Connection;
  private readonly rt: Runtime;
  private readonly x: RawExports;
  private p: number;
  private readonly pragmaMode: boolean;
  private readonly paramCount: number;
  /** Parameter indexes bound from positional arguments (`?`, `?NNN`), in order. */
  private readonly positional: number[];
  /** `[index, key]` of named parameters (key without its `:`/`@`/`$` prefix). */
  private readonly named: [number, string][];
  private names: string[] = [];
  private factory: RowFactory | undefined;
  private reprepares = 0;
  private mode = MODE_OBJECT;
  private safe = false;
  /** Token of the iterator currently stepping this statement, if any. */
  private active: object | undefined;
  /** Large bound values are released right after the run instead of living until the next bind. */
  private clearAfter = false;

  static {
    createStatement = (conn, p, source, pragma) => new Statement(conn, p, source, pragma);
    finalizeStatement = (stmt) => stmt.finalize();
  }

  private constructor(conn: Connection, p: number, source: string, pragma: boolean) {
    this.conn = conn;
    this.rt = conn.rt;
    this.x = conn.x;
    this.p = p;
    this.source = source;
    this.pragmaMode = pragma;
    const x = this.x;
    const count = x.sqlite3_bind_parameter_count(p);
    this.paramCount = count;
    this.positional = [];
    this.named = [];
    for (let i = 1; i <= count; i++) {
      const name = this.rt.cstr(x.sqlite3_bind_parameter_name(p, i));
      if (name === null || name.startsWith('?')) this.positional.push(i);
      else this.named.push([i, name.slice(1)]);
    }
    this.reader = x.sqlite3_column_count(p) > 0;
    this.loadColumns();
    statementRegistry.register(this, { conn, p }, this);
  }

  private loadColumns(): void {
    const x = this.x;
    const p = this.p;
    const n = x.sqlite3_column_count(p);
    const names: string[] = new Array(n);
    for (let i = 0; i < n; i++) names[i] = this.rt.cstr(x.sqlite3_column_name(p, i)) ?? '';
    this.names = names;
    this.factory = undefined;
    this.reprepares = x.sqlite3_stmt_status(p, SQLITE_STMTSTATUS_REPREPARE, 0);
  }

  private finalize(): void {
    if (this.p) {
      statementRegistry.unregister(this);
      if (this.conn.open) this.x.sqlite3_finalize(this.p);
      this.p = 0;
    }
  }

  // ----- option toggles -----

  /** Return only the first column of each row. Turns raw() off. */
  pluck(on = true): this {
    this.assertReader('pluck');
    if (on) this.mode = MODE_PLUCK;
    else if (this.mode === MODE_PLUCK) this.mode = MODE_OBJECT;
    return this;
  }

  /** Return rows as arrays of column values. Turns pluck() off. */
  raw(on = true): this {
    this.assertReader('raw');
    if (on) this.mode = MODE_RAW;
    else if (this.mode === MODE_RAW) this.mode = MODE_OBJECT;
    return this;
  }

  /** Read INTEGER columns (and lastInsertRowid) as bigint. */
  safeIntegers(on = true): this {
    this.safe = on;
    return this;
  }

  columns(): ColumnDefinition[] {
    this.assertUsable();
    this.assertReader('columns');
    const x = this.x;
    const n = x.sqlite3_column_count(this.p);
    const cols: ColumnDefinition[] = [];
    for (let i = 0; i < n; i++) {
      cols.push({
        name: this.rt.cstr(x.sqlite3_column_name(this.p, i)) ?? '',
        type: this.rt.cstr(x.sqlite3_column_decltype(this.p, i)),
      });
    }
    return cols;
  }

  // ----- execution -----

  run(...params: BindParams): RunResult {
    const p = this.start(params);
    const x = this.x;
    const pDb = this.conn.pDb;
    const totalBefore = x.sqlite3_total_changes64(pDb);
    const rc = x.sqlite3_step(p);
    if (rc !== SQLITE_DONE && rc !== SQLITE_ROW) throw this.stepError(rc);
    // Reset before reading the counters: an INSERT ... RETURNING only halts (and counts) on reset.
    this.reset(p);
    // sqlite3_changes() keeps the count of the last INSERT/UPDATE/DELETE, so a statement that
    // changes nothing (CREATE TABLE, SELECT) would report it again: 0 unless the total moved.
    const changes = x.sqlite3_total_changes64(pDb) === totalBefore ? 0 : Number(x.sqlite3_changes64(pDb));
    const rowid = x.sqlite3_last_insert_rowid(pDb);
    return { changes, lastInsertRowid: this.safe ? rowid : Number(rowid) };
  }

  /** First row, or undefined. The type argument only narrows the static type (e.g. `pluck().get<number>()`). */
  get<R = Record<string, unknown>>(...params: BindParams): R | undefined {
    this.assertReader('get');
    const p = this.start(params);
    const x = this.x;
    const rc = x.sqlite3_step(p);
    if (rc === SQLITE_ROW) {
      let row: unknown;
      try {
        row = this.row(p, true);
      } finally {
        this.reset(p);
      }
      return row as R;
    }
    if (rc === SQLITE_DONE) {
      this.reset(p);
      return undefined;
    }
    throw this.stepError(rc);
  }

  all<R = Record<string, unknown>>(...params: BindParams): R[] {
    this.assertReader('all');
    const p = this.start(params);
    const x = this.x;
    const rows: R[] = [];
    let rc = x.sqlite3_step(p);
    if (rc === SQLITE_ROW) {
      try {
        rows.push(this.row(p, true) as R);
        while ((rc = x.sqlite3_step(p)) === SQLITE_ROW) rows.push(this.row(p, false) as R);
      } catch (e) {
        this.reset(p);
        throw e;
      }
    }
    if (rc !== SQLITE_DONE) throw this.stepError(rc);
    this.reset(p);
    return rows;
  }

  /** Steps lazily; breaking out of a for-of (return()) resets the statement. */
  iterate<R = Record<string, unknown>>(...params: BindParams): IterableIterator<R> {
    this.assertReader('iterate');
    const p = this.start(params);
    const token = {};
    this.active = token;
    let first = true;
    const finish = (): void => {
      if (this.active === token) {
        this.active = undefined;
        if (this.conn.open && this.p) this.reset(p);
      }
    };
    const iterator: IterableIterator<unknown> = {
      next: (): IteratorResult<unknown> => {
        if (this.active !== token) return { done: true, value: undefined };
        if (!this.conn.open) {
          this.active = undefined;
          throw dbClosed(this.conn.name);
        }
        const rc = this.x.sqlite3_step(p);
        if (rc === SQLITE_ROW) {
          let row: unknown;
          try {
            row = this.row(p, first);
          } catch (e) {
            finish();
            throw e;
          }
          first = false;
          return { done: false, value: row };
        }
        if (rc === SQLITE_DONE) {
          finish();
          return { done: true, value: undefined };
        }
        this.active = undefined;
        throw this.stepError(rc);
      },
      return: (): IteratorResult<unknown> => {
        finish();
        return { done: true, value: undefined };
      },
      [Symbol.iterator]() {
        return this;
      },
    };
    return iterator as IterableIterator<R>;
  }

  // ----- internals -----

  private assertReader(method: string): void {
    if (!this.reader && !this.pragmaMode) {
      throw new WalshipError('ERR_NOT_READER', `${method}() is only for statements that return data; use run()`, {
        details: { sql: this.source },
      });
    }
  }

  private assertUsable(): void {
    if (!this.conn.open) throw dbClosed(this.conn.name);
    if (this.p === 0) {
      throw new WalshipError('ERR_STATEMENT_FINALIZED', 'statement has been finalized', { details: { sql: this.source } });
    }
  }

  /** Checks state and binds `params`; returns the statement pointer, ready to step. */
  private start(params: unknown[]): number {
    if (!this.conn.open) throw dbClosed(this.conn.name);
    const p = this.p;
    if (p === 0) this.assertUsable();
    if (this.active !== undefined) {
      throw new WalshipError('ERR_STATEMENT_BUSY', 'statement is busy: an iterate() over it has not finished', {
        details: { sql: this.source },
      });
    }
    const count = this.paramCount;
    if (count === 0 && params.length === 0) return p;
    if (params.length === 1 && Array.isArray(params[0])) params = params[0];
    if (this.named.length === 0) {
      if (params.length !== count) throw this.countError(params.length);
      const rt = this.rt;
      for (let i = 0; i < count; i++) {
        const rc = bindValue(rt, p, i + 1, params[i], i + 1);
        if (rc !== SQLITE_OK) throw this.conn.error(rc, this.source);
      }
    } else {
      this.bindMixed(p, params);
    }
    if (this.rt.ownedBound) {
      this.rt.ownedBound = false;
      this.clearAfter = true;
    }
    return p;
  }

  private bindMixed(p: number, params: unknown[]): void {
    let obj: Record<string, unknown> | undefined;
    const values: unknown[] = [];
    for (const v of params) {
      if (isNamedObject(v)) {
        if (obj !== undefined) {
          throw new WalshipError('ERR_BIND_NAMED', 'only one object of named parameters may be given', {
            details: { sql: this.source },
          });
        }
        obj = v;
      } else {
        values.push(v);
      }
    }
    const positional = this.positional;
    if (values.length !== positional.length) throw this.countError(values.length);
    if (obj === undefined) {
      throw new WalshipError('ERR_BIND_NAMED', `statement has named parameters; pass an object with keys ${this.named.map((n) => n[1]).join(', ')}`, {
        details: { sql: this.source, expected: this.named.map((n) => n[1]) },
      });
    }
    const rt = this.rt;
    for (let i = 0; i < positional.length; i++) {
      const index = positional[i]!;
      const rc = bindValue(rt, p, index, values[i], index);
      if (rc !== SQLITE_OK) throw this.conn.error(rc, this.source);
    }
    for (const [index, key] of this.named) {
      const v = obj[key];
      if (v === undefined) {
        throw new WalshipError('ERR_BIND_NAMED', `missing named parameter "${key}"`, {
          details: { sql: this.source, parameter: key },
        });
      }
      const rc = bindValue(rt, p, index, v, key);
      if (rc !== SQLITE_OK) throw this.conn.error(rc, this.source);
    }
  }

  private countError(got: number): WalshipError {
    const expected = this.positional.length;
    return new WalshipError(
      'ERR_BIND_COUNT',
      `statement expects ${expected} positional parameter value${expected === 1 ? '' : 's'} but got ${got}`,
      { details: { sql: this.source, expected, got } },
    );
  }

  /** Resets after a run; releases bound values that were large. */
  private reset(p: number): void {
    this.x.sqlite3_reset(p);
    if (this.clearAfter) {
      this.clearAfter = false;
      this.x.sqlite3_clear_bindings(p);
    }
  }

  /** Error for a failed step: captures the message, then resets the statement. */
  private stepError(rc: number): Error {
    const err = this.conn.error(rc, this.source);
    this.reset(this.p);
    return err;
  }

  /** Builds the current row in the statement's mode. `check` re-reads columns after a re-prepare. */
  private row(p: number, check: boolean): unknown {
    if (check && this.x.sqlite3_stmt_status(p, SQLITE_STMTSTATUS_REPREPARE, 0) !== this.reprepares) this.loadColumns();
    const mode = this.mode;
    if (mode === MODE_OBJECT) {
      const f = this.factory ?? (this.factory = makeRowFactory(this.rt, this.names));
      return f(this.rt, p, this.safe);
    }
    if (mode === MODE_PLUCK) return readColumn(this.rt, p, 0, this.safe);
    const n = this.names.length;
    const out = new Array<unknown>(n);
    for (let i = 0; i < n; i++) out[i] = readColumn(this.rt, p, i, this.safe);
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Database
// ---------------------------------------------------------------------------------------------

type TxMode = 'deferred' | 'immediate' | 'exclusive';

interface TxStatements {
  deferred: Statement;
  immediate: Statement;
  exclusive: Statement;
  commit: Statement;
  rollback: Statement;
  savepoint: Statement;
  release: Statement;
  rollbackTo: Statement;
}

const SAVEPOINT = '"walship.tx"';

function isThenable(v: unknown): boolean {
  return (typeof v === 'object' || typeof v === 'function') && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

export class Database {
  /** The filename the connection was opened with. */
  readonly name: string;
  private readonly conn: Connection;
  private readonly onClose: (() => void) | undefined;
  private closing = false;
  private tx: TxStatements | undefined;

  constructor(handle: DatabaseHandle, options: DatabaseOptions = {}) {
    const rt = runtimeFor(handle.sqlite3);
    if (!handle.pDb) throw new WalshipError('ERR_INVALID_HANDLE', 'database handle has a null sqlite3* pointer');
    this.name = handle.filename;
    this.conn = new Connection(rt, handle.pDb, handle.filename);
    this.onClose = options.onClose;
    this.conn.mapError = options.mapError;
    rt.x.sqlite3_extended_result_codes(handle.pDb, 1);
    const authorizer = options.authorizer;
    if (authorizer) {
      const conn = this.conn;
      const capi = handle.sqlite3.capi;
      const rc = capi.sqlite3_set_authorizer(
        handle.pDb,
        (_pV: unknown, action: number, a1: string | 0, a2: string | 0, a3: string | 0, a4: string | 0) => {
          try {
            return authorizer(action, a1 || null, a2 || null, a3 || null, a4 || null) | 0;
          } catch (e) {
            conn.authorizerError = e;
            return 1; // SQLITE_DENY
          }
        },
        0,
      );
      if (rc !== SQLITE_OK) throw conn.error(rc, '');
    }
  }

  get open(): boolean {
    return this.conn.open;
  }

  get inTransaction(): boolean {
    return this.conn.open && this.conn.x.sqlite3_get_autocommit(this.conn.pDb) === 0;
  }

  /** Runs every statement in `sql`, discarding any rows. */
  exec(sql: string): this {
    const conn = this.conn;
    conn.assertOpen();
    const rt = conn.rt;
    const x = conn.x;
    const [buf, n] = rt.allocSql(sql);
    try {
      const end = buf + n;
      let cur = buf;
      while (cur < end) {
        const [p, tail] = conn.prepareAt(cur, end - cur, 0, sql);
        if (tail <= cur) break;
        cur = tail;
        if (!p) continue;
        let rc: number;
        while ((rc = x.sqlite3_step(p)) === SQLITE_ROW);
        if (rc !== SQLITE_DONE) {
          const err = conn.error(rc, sql);
          x.sqlite3_finalize(p);
          throw err;
        }
        x.sqlite3_finalize(p);
      }
    } finally {
      rt.dealloc(buf);
    }
    return this;
  }

  /** Prepares exactly one statement; trailing text other than whitespace and comments is an error. */
  prepare(sql: string): Statement {
    return this.prepareInternal(sql, false, SQLITE_PREPARE_PERSISTENT);
  }

  private prepareInternal(sql: string, pragma: boolean, flags: number): Statement {
    const conn = this.conn;
    conn.assertOpen();
    if (typeof sql !== 'string') throw new WalshipError('ERR_INVALID_ARG', 'prepare() expects an SQL string');
    const rt = conn.rt;
    const [buf, n] = rt.allocSql(sql);
    try {
      // nByte includes the NUL terminator: SQLite then knows it need not copy the text.
      const [p, tail] = conn.prepareAt(buf, n + 1, flags, sql);
      if (!p) {
        throw new WalshipError('ERR_NO_STATEMENT', 'the SQL string contains no statement', { details: { sql } });
      }
      if (!onlyTrivia(rt.h8(), tail, buf + n)) {
        conn.x.sqlite3_finalize(p);
        throw new WalshipError(
          'ERR_MULTIPLE_STATEMENTS',
          'the SQL string contains more than one statement; use exec() for scripts',
          { details: { sql } },
        );
      }
      return createStatement(conn, p, sql, pragma);
    } finally {
      rt.dealloc(buf);
    }
  }

  /**
   * Runs `PRAGMA ${text}` and returns its rows, or with `simple` the first column of the first row
   * (undefined if there is none).
   */
  pragma(text: string, options: { simple?: boolean } = {}): unknown {
    const stmt = this.prepareInternal(`PRAGMA ${text}`, true, 0);
    try {
      if (!stmt.reader) {
        stmt.run();
        return options.simple ? undefined : [];
      }
      return options.simple ? stmt.pluck().get() : stmt.all();
    } finally {
      finalizeStatement(stmt);
    }
  }

  /**
   * Wraps `fn` so that each call runs inside a transaction: BEGIN before, COMMIT after, ROLLBACK
   * if it throws. Calls made while a transaction is already open use a SAVEPOINT instead.
   * `fn` must be synchronous.
   */
  transaction<F extends (...a: any[]) => any>(fn: F): TransactionFunction<F> {
    if (typeof fn !== 'function') throw new WalshipError('ERR_INVALID_ARG', 'transaction() expects a function');
    const db = this;
    const make = (mode: TxMode): F =>
      function (this: unknown, ...args: unknown[]): unknown {
        return db.runTransaction(mode, fn, this, args);
      } as F;
    const deferred = make('deferred');
    const immediate = make('immediate');
    const exclusive = make('exclusive');
    const props: PropertyDescriptorMap = {
      deferred: { value: deferred },
      immediate: { value: immediate },
      exclusive: { value: exclusive },
      database: { value: this },
    };
    for (const f of [deferred, immediate, exclusive]) Object.defineProperties(f, props);
    return deferred as TransactionFunction<F>;
  }

  private txStatements(): TxStatements {
    return (this.tx ??= {
      deferred: this.prepare('BEGIN'),
      immediate: this.prepare('BEGIN IMMEDIATE'),
      exclusive: this.prepare('BEGIN EXCLUSIVE'),
      commit: this.prepare('COMMIT'),
      rollback: this.prepare('ROLLBACK'),
      savepoint: this.prepare(`SAVEPOINT ${SAVEPOINT}`),
      release: this.prepare(`RELEASE ${SAVEPOINT}`),
      rollbackTo: this.prepare(`ROLLBACK TO ${SAVEPOINT}`),
    });
  }

  private runTransaction(mode: TxMode, fn: (...a: unknown[]) => unknown, thisArg: unknown, args: unknown[]): unknown {
    this.conn.assertOpen();
    const s = this.txStatements();
    const nested = this.inTransaction;
    if (nested) s.savepoint.run();
    else s[mode].run();
    try {
      const result = fn.apply(thisArg, args);
      if (isThenable(result)) {
        throw new WalshipError(
          'ERR_TRANSACTION_ASYNC',
          'transaction function returned a promise; transaction functions must be synchronous (rolled back)',
        );
      }
      if (nested) s.release.run();
      else s.commit.run();
      return result;
    } catch (e) {
      if (this.inTransaction) {
        try {
          if (nested) {
            s.rollbackTo.run();
            s.release.run();
          } else {
            s.rollback.run();
          }
        } catch {
          // Keep the original error: it explains why the transaction was abandoned.
        }
      }
      throw e;
    }
  }

  /**
   * Calls `onClose`, finalizes every statement of the connection, then closes it with
   * sqlite3_close_v2. Idempotent.
   */
  close(): void {
    const conn = this.conn;
    if (!conn.open || this.closing) return;
    this.closing = true;
    // An unfinished iterate() holds a read on the connection: end every statement first, so the
    // checkpoint onClose may run is not refused with SQLITE_LOCKED.
    for (let p = conn.x.sqlite3_next_stmt(conn.pDb, 0); p !== 0; p = conn.x.sqlite3_next_stmt(conn.pDb, p)) conn.x.sqlite3_reset(p);
    try {
      this.onClose?.();
    } finally {
      const x = conn.x;
      const pDb = conn.pDb;
      conn.open = false;
      this.tx = undefined;
      let p: number;
      while ((p = x.sqlite3_next_stmt(pDb, 0)) !== 0) x.sqlite3_finalize(p);
      // capi's close_v2 also releases the JS callbacks (authorizer) bound to this connection.
      const rc = conn.rt.sqlite3.capi.sqlite3_close_v2(pDb);
      if (rc !== SQLITE_OK) {
        throw new SqliteError(conn.rt.rcName(rc), rc, `closing ${this.name} failed`, { details: { filename: this.name } });
      }
    }
  }
}
