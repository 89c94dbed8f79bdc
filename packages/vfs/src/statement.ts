/** Prepared statements: binding, stepping and row shapes. */
import { limitTrace } from './trace.js';
import { WalshipTypeError } from './errors.js';
import { SQLITE_DONE, SQLITE_ROW, SQLITE_STMTSTATUS_REPREPARE, type RawExports, type Runtime } from './runtime.js';
import { makeRowFactory, readColumn, type RowFactory } from './values.js';
import { bindParams, type ParameterLayout } from './bind.js';
import { dbClosed, statementRegistry, type Connection } from './connection.js';
import type { BindParams, ColumnDefinition, RunResult } from './types.js';

const MODE_OBJECT = 0;
const MODE_RAW = 1;
const MODE_PLUCK = 2;
const MODE_EXPAND = 3;

const TOKEN = Symbol('walship.statement');

export let createStatement: (conn: Connection, p: number, source: string, pragma: boolean) => Statement;
export let finalizeStatement: (stmt: Statement) => void;

function toggle(method: string, on: unknown): boolean {
  if (on === undefined) return true;
  if (typeof on !== 'boolean') throw new WalshipTypeError('ERR_INVALID_ARG', `Expected first argument of ${method}() to be a boolean`, { details: { method } });
  return on;
}

export class Statement {
  /** The SQL text this statement was prepared from. */
  readonly source!: string;
  /** True if the statement returns data (it has result columns). */
  readonly reader!: boolean;

  #conn: Connection;
  #rt: Runtime;
  #x: RawExports;
  #p: number;
  #pragma: boolean;
  #layout: ParameterLayout;
  #names: string[] = [];
  #factory: RowFactory | undefined;
  #reprepares = 0;
  #mode = MODE_OBJECT;
  #safe: boolean;
  /** Token of the iterator currently stepping this statement, if any. */
  #active: object | undefined;
  /** Set by bind(): parameters are bound for good and run/get/all/iterate take none. */
  #bound = false;
  /** Large bound values are released right after the run instead of living until the next bind. */
  #clearAfter = false;

  static {
    createStatement = (conn, p, source, pragma) => new Statement(TOKEN, conn, p, source, pragma);
    finalizeStatement = (stmt) => stmt.#finalize();
  }

  /** @internal Statements come from Database#prepare(). */
  constructor(token: symbol, conn: Connection, p: number, source: string, pragma: boolean) {
    if (token !== TOKEN) throw new WalshipTypeError('ERR_CONSTRUCTOR', 'Statements can only be constructed by Database#prepare()');
    this.#conn = conn;
    this.#rt = conn.rt;
    const x = (this.#x = conn.x);
    this.#p = p;
    this.#pragma = pragma;
    this.#safe = conn.safeDefault;
    const count = x.sqlite3_bind_parameter_count(p);
    const positional: number[] = [];
    const named: [number, string][] = [];
    for (let i = 1; i <= count; i++) {
      const name = this.#rt.cstr(x.sqlite3_bind_parameter_name(p, i));
      if (name === null || name.startsWith('?')) positional.push(i);
      else named.push([i, name.slice(1)]);
    }
    this.#layout = { positional, named, source };
    Object.defineProperty(this, 'source', { value: source, enumerable: true });
    Object.defineProperty(this, 'reader', { value: x.sqlite3_column_count(p) > 0, enumerable: true });
    this.#loadColumns();
    conn.statements.add(p);
    statementRegistry.register(this, { conn, p }, this);
  }

  /** The Database this statement belongs to. */
  get database(): object {
    return this.#conn.db!;
  }

  /** True if the statement never writes to the database. */
  get readonly(): boolean {
    return this.#p !== 0 && this.#x.sqlite3_stmt_readonly(this.#p) !== 0;
  }

  /** True while an iterate() over this statement is unfinished. */
  get busy(): boolean {
    return this.#active !== undefined;
  }

  #loadColumns(): void {
    const x = this.#x;
    const p = this.#p;
    const n = x.sqlite3_column_count(p);
    const names: string[] = new Array(n);
    for (let i = 0; i < n; i++) names[i] = this.#rt.cstr(x.sqlite3_column_name(p, i)) ?? '';
    this.#names = names;
    this.#factory = undefined;
    this.#reprepares = x.sqlite3_stmt_status(p, SQLITE_STMTSTATUS_REPREPARE, 0);
  }

  #finalize(): void {
    if (this.#p) {
      statementRegistry.unregister(this);
      if (this.#conn.open && this.#conn.statements.delete(this.#p)) this.#x.sqlite3_finalize(this.#p);
      this.#p = 0;
    }
  }

  // ----- option toggles -----

  #assertSettable(): void {
    if (this.#conn.open) this.#conn.assertNotBusy();
    if (this.#active !== undefined) throw this.#busyError();
  }

  #setMode(method: string, mode: number, on: unknown): this {
    const yes = toggle(method, on);
    this.#assertSettable();
    this.#assertReader(method);
    if (yes) this.#mode = mode;
    else if (this.#mode === mode) this.#mode = MODE_OBJECT;
    return this;
  }

  /** Return only the first column of each row. Turns raw() and expand() off. */
  pluck(on?: boolean): this {
    return this.#setMode('pluck', MODE_PLUCK, on);
  }

  /** Return rows as arrays of column values. Turns pluck() and expand() off. */
  raw(on?: boolean): this {
    return this.#setMode('raw', MODE_RAW, on);
  }

  /** Return each row as `{ table: { column: value }, $: { expression: value } }`. */
  expand(on?: boolean): this {
    return this.#setMode('expand', MODE_EXPAND, on);
  }

  /** Read INTEGER columns (and lastInsertRowid) as bigint. */
  safeIntegers(on?: boolean): this {
    const yes = toggle('safeIntegers', on);
    this.#assertSettable();
    this.#safe = yes;
    return this;
  }

  /** Name, origin column, table, database and declared type of each result column. */
  columns(): ColumnDefinition[] {
    this.#assertUsable();
    this.#conn.assertNotBusy();
    this.#assertReader('columns');
    const x = this.#x;
    const rt = this.#rt;
    const p = this.#p;
    const n = x.sqlite3_column_count(p);
    const cols: ColumnDefinition[] = [];
    for (let i = 0; i < n; i++) {
      cols.push({
        name: rt.cstr(x.sqlite3_column_name(p, i)) ?? '',
        column: rt.cstr(x.sqlite3_column_origin_name(p, i)),
        table: rt.cstr(x.sqlite3_column_table_name(p, i)),
        database: rt.cstr(x.sqlite3_column_database_name(p, i)),
        type: rt.cstr(x.sqlite3_column_decltype(p, i)),
      });
    }
    return cols;
  }

  /** Binds `params` for good: later run/get/all/iterate calls take no arguments. */
  bind(...params: BindParams): this {
    this.#assertUsable();
    if (this.#bound) throw new WalshipTypeError('ERR_ALREADY_BOUND', 'The bind() method can only be invoked once per statement object', { details: { sql: this.source } });
    if (this.#active !== undefined) throw this.#busyError();
    this.#conn.assertNotBusy();
    this.#bindNow(params);
    this.#bound = true;
    return this;
  }

  // ----- execution -----

  run(...params: BindParams): RunResult {
    const conn = this.#conn;
    if (conn.iterators > 0 && conn.iteratorRule && conn.open) conn.assertIdle();
    const p = this.#start(params);
    const x = this.#x;
    const pDb = this.#conn.pDb;
    // The 32-bit total (no BigInt per run): equal totals mean no change unless one statement made
    // an exact multiple of 2^32 changes; a count that moved is read in 64 bits below.
    const totalBefore = x.sqlite3_total_changes(pDb);
    const rc = x.sqlite3_step(p);
    if (rc !== SQLITE_DONE && rc !== SQLITE_ROW) throw this.#stepError(rc);
    // Reset before reading the counters: an INSERT ... RETURNING only halts (and counts) on reset.
    this.#reset(p);
    // sqlite3_changes() keeps the count of the last INSERT/UPDATE/DELETE, so a statement that
    // changes nothing (CREATE TABLE, SELECT) would report it again: 0 unless the total moved.
    const changes = x.sqlite3_total_changes(pDb) === totalBefore ? 0 : Number(x.sqlite3_changes64(pDb));
    const rowid = x.sqlite3_last_insert_rowid(pDb);
    return { changes, lastInsertRowid: this.#safe ? rowid : Number(rowid) };
  }

  /** First row, or undefined. The type argument only narrows the static type (e.g. `pluck().get<number>()`). */
  get<R = Record<string, unknown>>(...params: BindParams): R | undefined {
    this.#assertReader('get');
    const p = this.#start(params);
    const rc = this.#x.sqlite3_step(p);
    if (rc === SQLITE_ROW) {
      let row: unknown;
      try {
        row = this.#row(p, true);
      } finally {
        this.#reset(p);
      }
      return row as R;
    }
    if (rc === SQLITE_DONE) {
      this.#reset(p);
      return undefined;
    }
    throw this.#stepError(rc);
  }

  all<R = Record<string, unknown>>(...params: BindParams): R[] {
    this.#assertReader('all');
    const p = this.#start(params);
    const x = this.#x;
    const rows: R[] = [];
    let rc = x.sqlite3_step(p);
    if (rc === SQLITE_ROW) {
      try {
        rows.push(this.#row(p, true) as R);
        while ((rc = x.sqlite3_step(p)) === SQLITE_ROW) rows.push(this.#row(p, false) as R);
      } catch (e) {
        this.#reset(p);
        throw e;
      }
    }
    if (rc !== SQLITE_DONE) throw this.#stepError(rc);
    this.#reset(p);
    return rows;
  }

  /** Steps lazily; breaking out of a for-of (return()) resets the statement. Until it ends the database is busy. */
  iterate<R = Record<string, unknown>>(...params: BindParams): IterableIterator<R> {
    this.#assertReader('iterate');
    // An iterator is logged when it first steps (better-sqlite3: one closed before that ran nothing).
    const p = this.#start(params, false);
    const conn = this.#conn;
    const token = {};
    this.#active = token;
    conn.iterators++;
    let first = true;
    const finish = (): void => {
      if (this.#active === token) {
        this.#active = undefined;
        if (conn.iterators > 0) conn.iterators--;
        if (conn.open && this.#p) this.#reset(p);
      }
    };
    const iterator = {
      next: (): IteratorResult<unknown> => {
        if (this.#active !== token) return { done: true, value: undefined };
        if (!conn.open) {
          finish();
          throw dbClosed(conn.name);
        }
        conn.assertNotBusy();
        if (first && conn.verbose) {
          try {
            this.#log(conn.verbose);
          } catch (e) {
            finish();
            throw e;
          }
        }
        const rc = this.#x.sqlite3_step(p);
        if (rc === SQLITE_ROW) {
          let row: unknown;
          try {
            row = this.#row(p, first);
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
        const err = conn.error(rc, this.source);
        finish();
        throw err;
      },
      return: (): IteratorResult<unknown> => {
        if (conn.open && this.#active === token) conn.assertNotBusy();
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

  #assertReader(method: string): void {
    if (!this.reader && !this.#pragma) {
      throw new WalshipTypeError('ERR_NOT_READER', `The ${method}() method is only for statements that return data; use run()`, {
        details: { sql: this.source },
      });
    }
  }

  #assertUsable(): void {
    if (!this.#conn.open) throw dbClosed(this.#conn.name);
    if (this.#p === 0) {
      throw new WalshipTypeError('ERR_STATEMENT_FINALIZED', 'statement has been finalized', { details: { sql: this.source } });
    }
  }

  #busyError(): WalshipTypeError {
    return new WalshipTypeError('ERR_STATEMENT_BUSY', 'This statement is busy executing a query: an iterate() over it has not finished', {
      details: { sql: this.source },
    });
  }

  #bindNow(params: unknown[]): void {
    const p = this.#p;
    try {
      bindParams(this.#conn, this.#rt, p, this.#layout, params);
    } catch (e) {
      this.#x.sqlite3_clear_bindings(p);
      this.#rt.ownedBound = false;
      throw e;
    }
  }

  /** Checks state and binds `params`; returns the statement pointer, ready to step. */
  #start(params: unknown[], log = true): number {
    const conn = this.#conn;
    if (!conn.open) throw dbClosed(conn.name);
    const p = this.#p;
    if (p === 0) this.#assertUsable();
    if (this.#active !== undefined) throw this.#busyError();
    if (conn.busy > 0) conn.assertNotBusy();
    if (conn.jsError !== undefined) conn.jsError = undefined;
    if (this.#bound) {
      if (params.length > 0) {
        throw new WalshipTypeError('ERR_ALREADY_BOUND', 'This statement already has bound parameters (bind() was called): pass none', { details: { sql: this.source } });
      }
      if (log && conn.verbose) this.#log(conn.verbose);
      return p;
    }
    const layout = this.#layout;
    if (params.length === 0 && layout.positional.length === 0 && layout.named.length === 0) {
      if (log && conn.verbose) this.#log(conn.verbose);
      return p;
    }
    this.#bindNow(params);
    if (log && conn.verbose) this.#log(conn.verbose);
    if (this.#rt.ownedBound) {
      this.#rt.ownedBound = false;
      this.#clearAfter = true;
    }
    return p;
  }

  /** better-sqlite3's verbose option: the SQL with its bound values, called as a plain function. */
  #log(verbose: (sql: string) => void): void {
    const capi = this.#rt.sqlite3.capi as unknown as { sqlite3_expanded_sql(p: number): string | null };
    const expanded = capi.sqlite3_expanded_sql(this.#p);
    const sql = this.#rt.cstr(this.#x.sqlite3_sql(this.#p));
    verbose(expanded === null ? this.source : sql === null ? expanded : limitTrace(sql, expanded));
  }

  /** Resets after a run; releases bound values that were large. */
  #reset(p: number): void {
    this.#x.sqlite3_reset(p);
    if (this.#clearAfter) {
      this.#clearAfter = false;
      if (!this.#bound) this.#x.sqlite3_clear_bindings(p);
    }
  }

  /** Error for a failed step: captures the message, then resets the statement. */
  #stepError(rc: number): Error {
    const err = this.#conn.error(rc, this.source);
    this.#reset(this.#p);
    return err;
  }

  /** Builds the current row in the statement's mode. `check` re-reads columns after a re-prepare. */
  #row(p: number, check: boolean): unknown {
    if (check && this.#x.sqlite3_stmt_status(p, SQLITE_STMTSTATUS_REPREPARE, 0) !== this.#reprepares) this.#loadColumns();
    const mode = this.#mode;
    const rt = this.#rt;
    const safe = this.#safe;
    if (mode === MODE_OBJECT) {
      const f = this.#factory ?? (this.#factory = makeRowFactory(rt, this.#names));
      return f(rt, p, safe);
    }
    if (mode === MODE_PLUCK) return readColumn(rt, p, 0, safe);
    const n = this.#names.length;
    if (mode === MODE_EXPAND) {
      // Expression columns go under '$', which exists (as in better-sqlite3) only when there is one.
      const out: Record<string, Record<string, unknown>> = {};
      for (let i = 0; i < n; i++) {
        const table = rt.cstr(this.#x.sqlite3_column_table_name(p, i)) ?? '$';
        (out[table] ??= {})[this.#names[i]!] = readColumn(rt, p, i, safe);
      }
      return out;
    }
    const out = new Array<unknown>(n);
    for (let i = 0; i < n; i++) out[i] = readColumn(rt, p, i, safe);
    return out;
  }
}

