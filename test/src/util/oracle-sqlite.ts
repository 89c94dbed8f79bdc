// The independent SQLite the suites compare against: better-sqlite3 (its own native SQLite build)
// where its addon loads, which is the Node the install compiled it for (20 here); on other Nodes
// (22, 24: the addon cannot be rebuilt for them without network access) Node's built-in node:sqlite,
// also a native SQLite independent of walship's WASM build. Only the calls the suites make.

import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';

const require = createRequire(import.meta.url);

export interface OracleStatement {
  run(...params: unknown[]): unknown;
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
  /** Only the first column of each row. */
  pluck(): { get(...params: unknown[]): unknown; all(...params: unknown[]): unknown[] };
  /** Rows as arrays. */
  raw(): { all(...params: unknown[]): unknown[][] };
}

export interface OracleDatabase {
  readonly backend: 'better-sqlite3' | 'node:sqlite';
  exec(sql: string): void;
  prepare(sql: string): OracleStatement;
  /** Runs `fn` inside BEGIN/COMMIT (ROLLBACK when it throws). */
  transaction(fn: () => void): void;
  /** The first column of the first row of `PRAGMA name`. */
  pragmaValue(name: string): unknown;
  close(): void;
}

type BetterCtor = new (path: string, options?: { readonly?: boolean; fileMustExist?: boolean }) => {
  exec(sql: string): void;
  prepare(sql: string): {
    run(...p: unknown[]): unknown;
    get(...p: unknown[]): unknown;
    all(...p: unknown[]): unknown[];
    pluck(): { get(...p: unknown[]): unknown; all(...p: unknown[]): unknown[] };
    raw(): { all(...p: unknown[]): unknown[][] };
  };
  pragma(sql: string, o: { simple: true }): unknown;
  close(): void;
};
type NodeSqliteCtor = new (path: string, options?: { readOnly?: boolean }) => {
  exec(sql: string): void;
  prepare(sql: string): { run(...p: unknown[]): unknown; get(...p: unknown[]): unknown; all(...p: unknown[]): unknown[] };
  close(): void;
};

let better: BetterCtor | null | undefined;

function betterSqlite(): BetterCtor | null {
  if (better !== undefined) return better;
  try {
    const ctor = require('better-sqlite3') as BetterCtor;
    new ctor(':memory:').close();
    better = ctor;
  } catch {
    better = null;
  }
  return better;
}

/** BEGIN, fn, COMMIT; ROLLBACK and rethrow when fn throws. */
function inTransaction(exec: (sql: string) => void, fn: () => void): void {
  exec('BEGIN');
  try {
    fn();
    exec('COMMIT');
  } catch (e) {
    exec('ROLLBACK');
    throw e;
  }
}

export function openOracle(path: string, options: { readonly?: boolean } = {}): OracleDatabase {
  if (path !== ':memory:' && options.readonly && !existsSync(path)) throw new Error(`oracle: ${path} does not exist`);
  const B = betterSqlite();
  if (B) {
    const db = new B(path, options.readonly ? { readonly: true, fileMustExist: true } : {});
    return {
      backend: 'better-sqlite3',
      exec: (sql) => db.exec(sql),
      prepare: (sql) => db.prepare(sql),
      transaction: (fn) => inTransaction((sql) => db.exec(sql), fn),
      pragmaValue: (name) => db.pragma(name, { simple: true }),
      close: () => db.close(),
    };
  }
  const { DatabaseSync } = require('node:sqlite') as { DatabaseSync: NodeSqliteCtor };
  const db = new DatabaseSync(path, options.readonly ? { readOnly: true } : {});
  const first = (row: unknown): unknown => (row === undefined ? undefined : Object.values(row as Record<string, unknown>)[0]);
  const prepare = (sql: string): OracleStatement => {
    const st = db.prepare(sql);
    return {
      run: (...p) => st.run(...p),
      get: (...p) => st.get(...p),
      all: (...p) => st.all(...p),
      pluck: () => ({ get: (...p) => first(st.get(...p)), all: (...p) => st.all(...p).map(first) }),
      raw: () => ({ all: (...p) => st.all(...p).map((r) => Object.values(r as Record<string, unknown>)) }),
    };
  };
  return {
    backend: 'node:sqlite',
    exec: (sql) => db.exec(sql),
    prepare,
    transaction: (fn) => inTransaction((sql) => db.exec(sql), fn),
    pragmaValue: (name) => first(db.prepare(`PRAGMA ${name}`).get()),
    close: () => db.close(),
  };
}
