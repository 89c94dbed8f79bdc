/** Binding JavaScript values to parameters and reading column values into rows. */
import { WalshipRangeError, WalshipTypeError } from './errors.js';
import {
  INT64_MAX,
  INT64_MIN,
  SCRATCH_MAX,
  SHORT_STRING,
  SQLITE_BLOB,
  SQLITE_FLOAT,
  SQLITE_INTEGER,
  SQLITE_TEXT,
  SQLITE_TRANSIENT,
  type Runtime,
} from './runtime.js';

function bindRangeError(v: bigint, index: number | string): WalshipRangeError {
  return new WalshipRangeError('ERR_BIND_RANGE', `bigint ${v} bound to parameter ${index} does not fit in a signed 64-bit integer`, {
    details: { parameter: index, value: v.toString() },
  });
}

/** Binds one value; returns SQLite's rc (the caller turns non-zero into a SqliteError). */
export function bindValue(rt: Runtime, p: number, i: number, v: unknown, label: number | string): number {
  const x = rt.x;
  switch (typeof v) {
    case 'number':
      // Every JavaScript number binds as a REAL, as in better-sqlite3 (columns with INTEGER
      // affinity still store whole values as integers); a bigint binds as an INTEGER.
      return x.sqlite3_bind_double(p, i, v);
    case 'string':
      return bindText(rt, p, i, v);
    case 'bigint':
      if (v < INT64_MIN || v > INT64_MAX) throw bindRangeError(v, label);
      return x.sqlite3_bind_int64(p, i, v);
    case 'boolean':
      return x.sqlite3_bind_int(p, i, v ? 1 : 0);
    case 'undefined':
      return x.sqlite3_bind_null(p, i);
    case 'object':
      if (v === null) return x.sqlite3_bind_null(p, i);
      if (v instanceof Uint8Array) return bindBlob(rt, p, i, v);
      break;
    default:
      break;
  }
  const what = v === undefined ? 'undefined' : typeof v === 'object' ? ((v as object).constructor?.name ?? 'object') : typeof v;
  throw new WalshipTypeError(
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
    len = rt.encoder.encodeInto(s, rt.scratchView()).written;
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

/** Reads column `i` of the current row of `p`. */
export function readColumn(rt: Runtime, p: number, i: number, safe: boolean): unknown {
  const x = rt.x;
  switch (x.sqlite3_column_type(p, i)) {
    case SQLITE_INTEGER: {
      if (safe) return x.sqlite3_column_int64(p, i);
      // (double)int64 is exact when |value| < 2^53, and avoids a BigInt allocation per value.
      // Beyond that it is the nearest double, which is what better-sqlite3 returns by default too.
      return x.sqlite3_column_double(p, i);
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
      return rt.blob(n === 0 ? rt.h8().subarray(0, 0) : rt.h8().subarray(ptr, ptr + n));
    }
    default:
      return null;
  }
}

export type ReadColumn = typeof readColumn;
export type RowFactory = (rt: Runtime, p: number, safe: boolean) => Record<string, unknown>;

/**
 * Builds a function returning `{ name0: read(0), name1: read(1), ... }` as one object literal, so
 * every row of a statement shares a hidden class. Falls back to a loop where code generation is
 * unavailable (e.g. under a CSP without 'unsafe-eval').
 */
export function makeRowFactory(rt: Runtime, names: readonly string[]): RowFactory {
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
