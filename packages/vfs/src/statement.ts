/** Prepared statements: binding, stepping and row shapes. */
import { WalshipError } from './errors.js';
import { SQLITE_DONE, SQLITE_OK, SQLITE_ROW, SQLITE_STMTSTATUS_REPREPARE, type RawExports, type Runtime } from './runtime.js';
import { bindValue, makeRowFactory, readColumn, type RowFactory } from './values.js';
import { dbClosed, statementRegistry, type Connection } from './connection.js';
import type { BindParams, ColumnDefinition, RunResult } from './types.js';

const MODE_OBJECT = 0;
const MODE_RAW = 1;
const MODE_PLUCK = 2;

export let createStatement: (conn: Connection, p: number, source: string, pragma: boolean) => Statement;
export let finalizeStatement: (stmt: Statement) => void;

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
