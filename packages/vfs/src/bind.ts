/**
 * Turns the arguments of run/get/all/iterate/bind into bound parameters, the way better-sqlite3
 * reads them: each argument is a value, an array of values (spread one level), or one plain object
 * of named parameters (`:name`, `@name`, `$name` without the prefix). Counting mistakes are a
 * RangeError, values of the wrong type a TypeError.
 */
import { WalshipRangeError, WalshipTypeError } from './errors.js';
import { SQLITE_OK, type Runtime } from './runtime.js';
import { bindValue } from './values.js';
import type { Connection } from './connection.js';

export interface ParameterLayout {
  /** Parameter indexes bound from positional arguments (`?`, `?NNN`), in order. */
  readonly positional: number[];
  /** `[index, key]` of named parameters (key without its `:`/`@`/`$` prefix). */
  readonly named: [number, string][];
  readonly source: string;
}

export function isNamedObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || v instanceof Uint8Array || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Binds `params` to statement `p`; a failing bind leaves earlier parameters bound (the caller clears them). */
export function bindParams(conn: Connection, rt: Runtime, p: number, layout: ParameterLayout, params: unknown[]): void {
  const positional = layout.positional;
  const named = layout.named;
  if (named.length === 0 && params.length === positional.length) {
    let plain = true;
    for (let i = 0; i < params.length; i++) {
      const v = params[i];
      if (typeof v === 'object' && v !== null && !(v instanceof Uint8Array)) {
        plain = false;
        break;
      }
    }
    if (plain) {
      for (let i = 0; i < params.length; i++) {
        const index = positional[i]!;
        const rc = bindValue(rt, p, index, params[i], index);
        if (rc !== SQLITE_OK) throw conn.error(rc, layout.source);
      }
      return;
    }
  }
  let bag: Record<string, unknown> | undefined;
  const values: unknown[] = [];
  for (const v of params) {
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) values.push(v[i]);
    } else if (ArrayBuffer.isView(v) && !(v instanceof Uint8Array)) {
      // Any other typed array or DataView binds its bytes as a blob, as in better-sqlite3.
      values.push(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
    } else if (isNamedObject(v)) {
      if (bag !== undefined) {
        throw new WalshipTypeError('ERR_BIND_NAMED', 'You cannot specify named parameters in two different objects', {
          details: { sql: layout.source },
        });
      }
      bag = v;
    } else {
      if ((typeof v === 'object' && v !== null && !(v instanceof Uint8Array)) || typeof v === 'function') {
        // A class instance or a boxed value is neither a value nor a bag of named parameters.
        const what = typeof v === 'function' ? 'function' : ((v as object).constructor?.name ?? 'object');
        throw new WalshipTypeError('ERR_BIND_TYPE', `cannot bind ${what}: expected number, bigint, string, Uint8Array, boolean, null, an array of them or a plain object of named parameters`, {
          details: { sql: layout.source, type: what },
        });
      }
      values.push(v);
    }
  }
  if (values.length !== positional.length) {
    const expected = positional.length;
    throw new WalshipRangeError(
      'ERR_BIND_COUNT',
      `${values.length < expected ? 'Too few' : 'Too many'} parameter values were provided: the statement expects ${expected} positional value${expected === 1 ? '' : 's'} but got ${values.length}`,
      { details: { sql: layout.source, expected, got: values.length } },
    );
  }
  for (let i = 0; i < positional.length; i++) {
    const index = positional[i]!;
    const rc = bindValue(rt, p, index, values[i], index);
    if (rc !== SQLITE_OK) throw conn.error(rc, layout.source);
  }
  if (named.length === 0) return;
  if (bag === undefined) {
    throw new WalshipTypeError('ERR_BIND_NAMED', `statement has named parameters; pass an object with keys ${named.map((n) => n[1]).join(', ')}`, {
      details: { sql: layout.source, expected: named.map((n) => n[1]) },
    });
  }
  for (const [index, key] of named) {
    const v = bag[key];
    if (v === undefined && !Object.prototype.hasOwnProperty.call(bag, key)) {
      throw new WalshipRangeError('ERR_BIND_NAMED', `Missing named parameter "${key}"`, { details: { sql: layout.source, parameter: key } });
    }
    const rc = bindValue(rt, p, index, v, key);
    if (rc !== SQLITE_OK) throw conn.error(rc, layout.source);
  }
}
