/**
 * Database#function() and Database#aggregate(): JavaScript functions callable from SQL. One set of
 * trampolines per wasm module dispatches on the registration id SQLite passes back as user data,
 * so registering functions never grows the wasm function table. A value the JavaScript throws is
 * kept on the connection and rethrown unchanged by the statement (as better-sqlite3 does).
 */
import { WalshipRangeError, WalshipTypeError } from './errors.js';
import { SCRATCH_MAX, SQLITE_BLOB, SQLITE_FLOAT, SQLITE_INTEGER, SQLITE_TEXT, SQLITE_TRANSIENT, type Runtime } from './runtime.js';
import type { Connection } from './connection.js';

const SQLITE_UTF8 = 1;
const SQLITE_DETERMINISTIC = 0x800;
const SQLITE_DIRECTONLY = 0x80000;
const MAX_ARGS = 100;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

export interface FunctionOptions {
  varargs?: boolean;
  deterministic?: boolean;
  directOnly?: boolean;
  safeIntegers?: boolean;
}

export interface AggregateOptions extends FunctionOptions {
  start?: unknown;
  step: (acc: any, ...args: any[]) => unknown;
  inverse?: (acc: any, ...args: any[]) => unknown;
  result?: (acc: any) => unknown;
}

interface Registration {
  conn: Connection;
  name: string;
  safe: boolean;
  fn?: (...args: unknown[]) => unknown;
  agg?: AggregateOptions;
}

interface Trampolines {
  xFunc: number;
  xStep: number;
  xFinal: number;
  xValue: number;
  xInverse: number;
  xDestroy: number;
  errMsg: number;
}

const registrations = new Map<number, Registration>();
let nextId = 1;
/** Accumulators of running aggregates, keyed by their sqlite3_aggregate_context() pointer. */
const accumulators = new Map<number, { acc: unknown; valued: boolean }>();
const trampolines = new WeakMap<Runtime, Trampolines>();

function bad(message: string): WalshipTypeError {
  return new WalshipTypeError('ERR_INVALID_ARG', message);
}

function checkBooleans(o: Record<string, unknown>): void {
  for (const key of ['varargs', 'deterministic', 'directOnly', 'safeIntegers']) {
    if (key in o && typeof o[key] !== 'boolean') throw bad(`Expected the "${key}" option to be a boolean`);
  }
}

function argCount(fn: (...a: unknown[]) => unknown, what: string, max: number): number {
  const n = fn.length as unknown;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) throw bad(`Expected ${what}.length to be a positive integer`);
  if (n > max) throw new WalshipRangeError('ERR_INVALID_ARG', `User-defined functions cannot have more than ${MAX_ARGS} arguments`);
  return n;
}

function flagsOf(o: FunctionOptions): number {
  return SQLITE_UTF8 | (o.deterministic ? SQLITE_DETERMINISTIC : 0) | (o.directOnly ? SQLITE_DIRECTONLY : 0);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function checkName(name: unknown): string {
  if (typeof name !== 'string') throw bad('Expected first argument to be a string');
  if (name === '') throw bad('User-defined function name cannot be an empty string');
  return name;
}

/** `db.function(name, [options], fn)`. */
export function defineFunction(conn: Connection, name: unknown, a: unknown, b: unknown): void {
  const fname = checkName(name);
  const options = b === undefined ? {} : (a ?? {});
  const fn = b === undefined ? a : b;
  if (!isPlainObject(options)) throw bad('Expected second argument to be an options object');
  if (typeof fn !== 'function') throw bad('Expected last argument to be a function');
  checkBooleans(options);
  const o = options as FunctionOptions;
  const nArg = o.varargs ? -1 : argCount(fn as (...a: unknown[]) => unknown, 'function', MAX_ARGS);
  const t = trampolinesFor(conn.rt);
  const id = register({ conn, name: fname, safe: o.safeIntegers ?? conn.safeDefault, fn: fn as (...a: unknown[]) => unknown });
  create(conn, fname, nArg, flagsOf(o), id, () =>
    conn.x.sqlite3_create_function_v2(conn.pDb, nameOnHeap(conn.rt, fname), nArg, flagsOf(o), id, t.xFunc, 0, 0, t.xDestroy),
  );
}

/** `db.aggregate(name, { start, step, inverse, result, ... })`; with `inverse` it is also a window function. */
export function defineAggregate(conn: Connection, name: unknown, options: unknown): void {
  const fname = checkName(name);
  if (!isPlainObject(options)) throw bad('Expected second argument to be an options object');
  checkBooleans(options);
  const o = options as unknown as AggregateOptions;
  if (typeof o.step !== 'function') throw bad('Expected the "step" option to be a function');
  if (o.inverse != null && typeof o.inverse !== 'function') throw bad('Expected the "inverse" option to be a function');
  if (o.result != null && typeof o.result !== 'function') throw bad('Expected the "result" option to be a function');
  let nArg = -1;
  if (!o.varargs) {
    const s = argCount(o.step as (...a: unknown[]) => unknown, 'step', MAX_ARGS + 1);
    const i = o.inverse ? argCount(o.inverse as (...a: unknown[]) => unknown, 'inverse', MAX_ARGS + 1) : 0;
    nArg = Math.max(s, i);
    if (nArg > 0) nArg -= 1;
  }
  const t = trampolinesFor(conn.rt);
  // Without a `start` option the accumulator starts as null (an explicit `start: undefined` stays undefined).
  const id = register({ conn, name: fname, safe: o.safeIntegers ?? conn.safeDefault, agg: { ...o, start: 'start' in o ? o.start : null } });
  const flags = flagsOf(o);
  create(conn, fname, nArg, flags, id, () =>
    o.inverse
      ? conn.x.sqlite3_create_window_function(conn.pDb, nameOnHeap(conn.rt, fname), nArg, flags, id, t.xStep, t.xFinal, t.xValue, t.xInverse, t.xDestroy)
      : conn.x.sqlite3_create_function_v2(conn.pDb, nameOnHeap(conn.rt, fname), nArg, flags, id, 0, t.xStep, t.xFinal, t.xDestroy),
  );
}

function register(r: Registration): number {
  const id = nextId++;
  registrations.set(id, r);
  return id;
}

let namePtr = 0;
function nameOnHeap(rt: Runtime, name: string): number {
  if (namePtr) rt.dealloc(namePtr);
  namePtr = rt.allocSql(name)[0];
  return namePtr;
}

function create(conn: Connection, name: string, _nArg: number, _flags: number, id: number, call: () => number): void {
  const rc = call();
  if (rc !== 0) {
    // SQLite calls xDestroy itself when registration fails: nothing is left to clean up here.
    registrations.delete(id);
    throw conn.error(rc, `function ${name}`);
  }
}

export function readArgs(rt: Runtime, argc: number, argv: number, safe: boolean, into: unknown[]): void {
  const x = rt.x;
  for (let i = 0; i < argc; i++) {
    const v = rt.h32()[(argv >> 2) + i]!;
    switch (x.sqlite3_value_type(v)) {
      case SQLITE_INTEGER:
        into.push(safe ? x.sqlite3_value_int64(v) : Number(x.sqlite3_value_int64(v)));
        break;
      case SQLITE_FLOAT:
        into.push(x.sqlite3_value_double(v));
        break;
      case SQLITE_TEXT: {
        const p = x.sqlite3_value_text(v);
        into.push(rt.str(p, x.sqlite3_value_bytes(v)));
        break;
      }
      case SQLITE_BLOB: {
        const p = x.sqlite3_value_blob(v);
        const n = x.sqlite3_value_bytes(v);
        into.push(rt.blob(n === 0 ? rt.h8().subarray(0, 0) : rt.h8().subarray(p, p + n)));
        break;
      }
      default:
        into.push(null);
    }
  }
}

/** Sets the SQL result from a JavaScript value; throws a TypeError for a value SQLite cannot hold. */
export function setResult(rt: Runtime, ctx: number, v: unknown, name: string): void {
  const x = rt.x;
  switch (typeof v) {
    case 'number':
      x.sqlite3_result_double(ctx, v);
      return;
    case 'bigint':
      if (v < INT64_MIN || v > INT64_MAX) throw new WalshipRangeError('ERR_INTEGER_RANGE', `function ${name}() returned a bigint outside the 64-bit range`);
      x.sqlite3_result_int64(ctx, v);
      return;
    case 'boolean':
      x.sqlite3_result_int64(ctx, v ? 1n : 0n);
      return;
    case 'string': {
      const bytes = rt.encoder.encode(v);
      writeResult(rt, ctx, bytes, true);
      return;
    }
    case 'undefined':
      x.sqlite3_result_null(ctx);
      return;
    case 'object':
      if (v === null) {
        x.sqlite3_result_null(ctx);
        return;
      }
      if (v instanceof Uint8Array) {
        writeResult(rt, ctx, v, false);
        return;
      }
      break;
    default:
      break;
  }
  throw new WalshipTypeError('ERR_INVALID_RESULT', `User-defined function ${name}() returned an invalid value`, { details: { function: name } });
}

function writeResult(rt: Runtime, ctx: number, bytes: Uint8Array, text: boolean): void {
  const n = bytes.byteLength;
  let p: number;
  let dtor: number;
  if (n > SCRATCH_MAX) {
    p = rt.alloc(n || 1);
    dtor = rt.deallocDtor;
  } else {
    if (n > rt.scratchSize) rt.growScratch(n);
    p = rt.scratch;
    dtor = SQLITE_TRANSIENT;
  }
  rt.h8().set(bytes, p);
  if (text) rt.x.sqlite3_result_text(ctx, p, n, dtor);
  else rt.x.sqlite3_result_blob(ctx, p, n, dtor);
}

function trampolinesFor(rt: Runtime): Trampolines {
  let t = trampolines.get(rt);
  if (t) return t;
  const wasm = rt.sqlite3.wasm as unknown as { installFunction(sig: string, fn: (...a: number[]) => unknown): number };
  const x = rt.x;
  const errMsg = rt.allocSql('a JavaScript function threw')[0];
  /** Runs `body` as a user callback: the connection is busy meanwhile, and a throw becomes an SQL error. */
  const guard = (ctx: number, body: (r: Registration) => void): void => {
    const r = registrations.get(x.sqlite3_user_data(ctx));
    if (!r) return;
    const conn = r.conn;
    conn.busy++;
    try {
      body(r);
    } catch (e) {
      if (conn.jsError === undefined) conn.jsError = { value: e };
      x.sqlite3_result_error(ctx, errMsg, -1);
    } finally {
      conn.busy--;
    }
  };
  const accFor = (ctx: number, r: Registration, create: boolean): { acc: unknown; valued: boolean } => {
    const p = x.sqlite3_aggregate_context(ctx, create ? 8 : 0);
    let state = p ? accumulators.get(p) : undefined;
    if (!state) {
      const start = r.agg!.start;
      state = { acc: typeof start === 'function' ? (start as () => unknown)() : start, valued: false };
      if (p) accumulators.set(p, state);
    }
    return state;
  };
  const stepWith = (ctx: number, argc: number, argv: number, which: 'step' | 'inverse'): void =>
    guard(ctx, (r) => {
      const state = accFor(ctx, r, true);
      const args: unknown[] = [state.acc];
      readArgs(rt, argc, argv, r.safe, args);
      const next = (r.agg![which] as (...a: unknown[]) => unknown)(...args);
      if (next !== undefined) state.acc = next;
    });
  const finish = (ctx: number, done: boolean): void => {
    const p = x.sqlite3_aggregate_context(ctx, 0);
    guard(ctx, (r) => {
      if (r.conn.jsError !== undefined) return;
      const state = accFor(ctx, r, false);
      // After xValue calls SQLite's final call only releases the window: its result is never read.
      if (done && state.valued) return;
      if (!done) state.valued = true;
      const out = r.agg!.result ? r.agg!.result(state.acc) : state.acc;
      setResult(rt, ctx, out, r.name);
    });
    if (done && p) accumulators.delete(p);
  };
  t = {
    errMsg,
    xFunc: wasm.installFunction('v(pip)', (ctx, argc, argv) =>
      guard(ctx, (r) => {
        const args: unknown[] = [];
        readArgs(rt, argc, argv, r.safe, args);
        setResult(rt, ctx, r.fn!(...args), r.name);
      }),
    ),
    xStep: wasm.installFunction('v(pip)', (ctx, argc, argv) => stepWith(ctx, argc, argv, 'step')),
    xInverse: wasm.installFunction('v(pip)', (ctx, argc, argv) => stepWith(ctx, argc, argv, 'inverse')),
    xFinal: wasm.installFunction('v(p)', (ctx) => finish(ctx, true)),
    xValue: wasm.installFunction('v(p)', (ctx) => finish(ctx, false)),
    xDestroy: wasm.installFunction('v(p)', (id) => {
      registrations.delete(id);
    }),
  };
  trampolines.set(rt, t);
  return t;
}
