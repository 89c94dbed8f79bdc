/** Public types of the better-sqlite3-shaped API. */
import type { SqliteError } from './errors.js';
import type { Sqlite3 } from './sqlite.js';


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
  /** The table column the result comes from, or null for expressions. */
  column: string | null;
  table: string | null;
  /** Schema name (`main`, `temp`, an attached name), or null for expressions. */
  database: string | null;
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

/** better-sqlite3's constructor options (`new Database(filename, options)`). */
export interface FileOptions {
  /** Open read-only; the file must exist (default false). */
  readonly?: boolean;
  /** Throw SQLITE_CANTOPEN instead of creating a missing file (default false). */
  fileMustExist?: boolean;
  /** Milliseconds to wait on a locked database before SQLITE_BUSY (default 5000). */
  timeout?: number;
  /** Called with the SQL of each statement as it runs. */
  verbose?: ((sql: string) => void) | null;
  /** Accepted for compatibility and ignored: walship has no native binding. */
  nativeBinding?: unknown;
}
