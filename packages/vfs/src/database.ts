/**
 * A synchronous, better-sqlite3-shaped database API bound directly to the raw exports of the
 * `@sqlite.org/sqlite-wasm` module. The oo1 layer is deliberately bypassed on the hot path: every
 * bind, step and column read is a single call into `sqlite3.wasm.exports`, strings and blobs
 * are moved through one reusable scratch buffer, and rows are built by a per-column-list factory so
 * that V8 sees one hidden class per statement. Each method beyond the core lives in its own module.
 */
import { SqliteError, WalshipError, WalshipRangeError, WalshipTypeError } from './errors.js';
import { SQLITE_DONE, SQLITE_OK, SQLITE_PREPARE_PERSISTENT, SQLITE_ROW, runtimeFor } from './runtime.js';
import { Connection, onlyTrivia } from './connection.js';
import { Statement, createStatement, finalizeStatement } from './statement.js';
import { makeTransaction, txSql, type TxStatements } from './transaction.js';
import { openFile } from './standalone.js';
import { defineAggregate, defineFunction, type AggregateOptions, type FunctionOptions } from './functions.js';
import { defineTable, type TableDefinition } from './vtab.js';
import { backupTo, serializeSchema, type BackupMetadata, type BackupOptions } from './backup.js';
import { loadSqlite } from './sqlite.js';
import type { DatabaseHandle, DatabaseOptions, FileOptions, TransactionFunction } from './types.js';

export { Statement } from './statement.js';
export type {
  Authorizer,
  BindParams,
  BindValue,
  ColumnDefinition,
  DatabaseHandle,
  DatabaseOptions,
  FileOptions,
  RunResult,
  TransactionFunction,
} from './types.js';
export type { AggregateOptions, FunctionOptions } from './functions.js';
export type { TableDefinition } from './vtab.js';
export type { BackupMetadata, BackupOptions } from './backup.js';

const SQLITE_DBCONFIG_DQS_DML = 1013;
const SQLITE_DBCONFIG_DQS_DDL = 1014;
const SQLITE_DBCONFIG_DEFENSIVE = 1010;

function isHandle(v: unknown): v is DatabaseHandle {
  return typeof v === 'object' && v !== null && !(v instanceof Uint8Array) && typeof (v as { pDb?: unknown }).pDb === 'number' && 'sqlite3' in v;
}

function toggle(method: string, on: unknown): boolean {
  if (on === undefined) return true;
  if (typeof on !== 'boolean') throw new WalshipTypeError('ERR_INVALID_ARG', `Expected first argument of ${method}() to be a boolean`);
  return on;
}

/**
 * A database walship replicates (it holds the `_walship` txid marker) opened read-write by the
 * plain constructor: its writes would reach the file outside capture, and the next openDatabase()
 * would never ship them. Refused; read-only opens are fine.
 */
function refuseReplicated(db: Database, filename: string): void {
  let replicated: boolean;
  try {
    replicated = db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = '_walship'").get() !== undefined;
  } catch (e) {
    db.close();
    throw e;
  }
  if (!replicated) return;
  db.close();
  throw new WalshipError(
    'ERR_REPLICATED_DATABASE',
    `${filename} is a walship-replicated database: writes through new Database() would bypass capture. Open it with openDatabase() / openReplicated(), or pass { readonly: true }`,
    { details: { filename } },
  );
}

export class Database {
  /** Also reachable as `Database.SqliteError`, where better-sqlite3 code looks for it. */
  static readonly SqliteError = SqliteError;

  /**
   * Loads the SQLite WASM module once per process. After it resolves, `new Database(filename)` is
   * synchronous, like better-sqlite3's constructor.
   */
  static async ready(): Promise<void> {
    await loadSqlite();
  }

  #conn: Connection;
  #onClose: (() => void) | undefined;
  #afterClose: (() => void) | undefined;
  #closing = false;
  #tx: TxStatements | undefined;
  #memory: boolean;
  #readonly: boolean;
  #name: string;

  /**
   * `new Database(filename?, options?)` as in better-sqlite3: a file ('' for an anonymous temporary
   * database, ':memory:'), or a Buffer holding a serialized database. Not replicated.
   * `new Database(handle, options)` wraps an already-open `sqlite3*` (what openDatabase() and the
   * replica readers use).
   */
  constructor(filename?: string | Uint8Array | null, options?: FileOptions);
  constructor(handle: DatabaseHandle, options?: DatabaseOptions);
  constructor(target?: string | Uint8Array | DatabaseHandle | null, options?: FileOptions | DatabaseOptions) {
    let handle: DatabaseHandle;
    let dbOptions: DatabaseOptions = {};
    let standalone: ReturnType<typeof openFile> | undefined;
    if (isHandle(target)) {
      handle = target;
      dbOptions = (options as DatabaseOptions | undefined) ?? {};
      if (!handle.pDb) throw new WalshipError('ERR_INVALID_HANDLE', 'database handle has a null sqlite3* pointer');
    } else {
      standalone = openFile(target, options);
      handle = standalone.handle;
    }
    const rt = runtimeFor(handle.sqlite3);
    const conn = (this.#conn = new Connection(rt, handle.pDb, handle.filename));
    conn.db = this;
    this.#name = standalone && target instanceof Uint8Array ? ':memory:' : handle.filename;
    this.#memory = standalone ? standalone.memory : handle.filename === '' || handle.filename === ':memory:';
    this.#readonly = standalone ? standalone.readonly : rt.sqlite3.capi.sqlite3_db_readonly(handle.pDb, 'main') === 1;
    this.#onClose = dbOptions.onClose;
    conn.mapError = dbOptions.mapError;
    rt.x.sqlite3_extended_result_codes(handle.pDb, 1);
    if (standalone) {
      conn.iteratorRule = true;
      this.#afterClose = standalone.wal?.release;
      this.#configure(standalone.timeout, standalone.wal !== undefined);
      if (standalone.wal && !this.#readonly) refuseReplicated(this, this.#name);
      conn.verbose = standalone.verbose;
    }
    const authorizer = dbOptions.authorizer;
    if (authorizer) {
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

  /** better-sqlite3's build settings, for the databases this constructor opens itself. */
  #configure(timeout: number, exclusive: boolean): void {
    const conn = this.#conn;
    const capi = conn.rt.sqlite3.capi as unknown as { sqlite3_db_config(db: number, op: number, v: number, out: number): number };
    capi.sqlite3_db_config(conn.pDb, SQLITE_DBCONFIG_DQS_DML, 0, 0);
    capi.sqlite3_db_config(conn.pDb, SQLITE_DBCONFIG_DQS_DDL, 0, 0);
    capi.sqlite3_db_config(conn.pDb, SQLITE_DBCONFIG_DEFENSIVE, 1, 0);
    conn.x.sqlite3_busy_timeout(conn.pDb, timeout);
    try {
      // A WAL-mode file is readable without a shared-memory wal-index only in exclusive locking mode.
      this.exec(`${exclusive ? 'PRAGMA locking_mode = EXCLUSIVE; ' : ''}PRAGMA page_size = 4096; PRAGMA foreign_keys = ON; PRAGMA cache_size = -16000`);
    } catch (e) {
      this.close();
      throw e;
    }
  }

  get name(): string {
    return this.#name;
  }

  get open(): boolean {
    return this.#conn.open;
  }

  /** True for ':memory:', anonymous ('') and deserialized databases. */
  get memory(): boolean {
    return this.#memory;
  }

  get readonly(): boolean {
    return this.#readonly;
  }

  get inTransaction(): boolean {
    return this.#conn.open && this.#conn.x.sqlite3_get_autocommit(this.#conn.pDb) === 0;
  }

  /** Runs every statement in `sql`, discarding any rows. */
  exec(sql: string): this {
    const conn = this.#conn;
    conn.assertIdle();
    if (typeof sql !== 'string') throw new WalshipTypeError('ERR_INVALID_ARG', 'Expected first argument to be a string');
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
        const verbose = conn.verbose;
        if (verbose) verbose((rt.cstr(x.sqlite3_sql(p)) ?? sql).trimStart());
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
    return this.#prepare(sql, false, SQLITE_PREPARE_PERSISTENT);
  }

  #prepare(sql: string, pragma: boolean, flags: number): Statement {
    const conn = this.#conn;
    if (pragma) conn.assertIdle();
    else conn.assertNotBusy();
    if (typeof sql !== 'string') throw new WalshipTypeError('ERR_INVALID_ARG', 'Expected first argument to be a string');
    const rt = conn.rt;
    const [buf, n] = rt.allocSql(sql);
    try {
      // nByte includes the NUL terminator: SQLite then knows it need not copy the text.
      const [p, tail] = conn.prepareAt(buf, n + 1, flags, sql);
      if (!p) {
        throw new WalshipRangeError('ERR_NO_STATEMENT', 'The supplied SQL string contains no statements', { details: { sql } });
      }
      if (!onlyTrivia(rt.h8(), tail, buf + n)) {
        conn.x.sqlite3_finalize(p);
        throw new WalshipRangeError('ERR_MULTIPLE_STATEMENTS', 'The supplied SQL string contains more than one statement; use exec() for scripts', {
          details: { sql },
        });
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
  pragma(text: string, options?: { simple?: boolean }): unknown {
    if (typeof text !== 'string') throw new WalshipTypeError('ERR_INVALID_ARG', 'Expected first argument to be a string');
    if (options !== undefined && (typeof options !== 'object' || options === null)) throw new WalshipTypeError('ERR_INVALID_ARG', 'Expected second argument to be an options object');
    const simple = options !== undefined && 'simple' in options ? options.simple : false;
    if (typeof simple !== 'boolean') throw new WalshipTypeError('ERR_INVALID_ARG', 'Expected the "simple" option to be a boolean');
    const stmt = this.#prepare(`PRAGMA ${text}`, true, 0);
    try {
      if (!stmt.reader) {
        stmt.run();
        return simple ? undefined : [];
      }
      return simple ? stmt.pluck().get() : stmt.all();
    } finally {
      finalizeStatement(stmt);
    }
  }

  /**
   * Wraps `fn` so that each call runs inside a transaction: BEGIN before, COMMIT after, ROLLBACK
   * if it throws. Calls made while a transaction is already open use a SAVEPOINT instead.
   * `fn` must be synchronous. `.deferred`, `.immediate` and `.exclusive` pick the BEGIN mode.
   */
  transaction<F extends (...a: any[]) => any>(fn: F): TransactionFunction<F> {
    this.#conn.assertIdle();
    const conn = this.#conn;
    return makeTransaction(this, {
      get inTransaction() {
        return conn.open && conn.x.sqlite3_get_autocommit(conn.pDb) === 0;
      },
      assertOpen: () => conn.assertOpen(),
      statements: () => (this.#tx ??= this.#txStatements()),
    }, fn);
  }

  #txStatements(): TxStatements {
    const sql = txSql();
    const out = {} as TxStatements;
    for (const key of Object.keys(sql) as (keyof TxStatements)[]) out[key] = this.#prepare(sql[key], false, SQLITE_PREPARE_PERSISTENT);
    return out;
  }

  /** Registers a JavaScript function callable from SQL: `function(name, [options], fn)`. */
  function(name: string, options: FunctionOptions | ((...args: any[]) => unknown), fn?: (...args: any[]) => unknown): this {
    this.#conn.assertIdle();
    defineFunction(this.#conn, name, options, fn);
    return this;
  }

  /** Registers an aggregate (with `inverse`, also a window function). */
  aggregate(name: string, options: AggregateOptions): this {
    this.#conn.assertIdle();
    defineAggregate(this.#conn, name, options);
    return this;
  }

  /** Registers a virtual table backed by a generator (better-sqlite3's table-valued functions). */
  table(name: string, definition: TableDefinition | ((...args: string[]) => TableDefinition)): this {
    this.#conn.assertIdle();
    defineTable(this.#conn, name, definition);
    return this;
  }

  /** Copies the database (or an attached one) to a new file, a few pages per event-loop turn. */
  backup(destination: string, options?: BackupOptions): Promise<BackupMetadata> {
    return backupTo(this.#conn, destination, options);
  }

  /** The database (or an attached one) as the bytes of a database file. */
  serialize(options?: { attached?: string }): Uint8Array {
    this.#conn.assertNotBusy();
    return serializeSchema(this.#conn, options);
  }

  /** Native extensions cannot be loaded into the WASM build. */
  loadExtension(path?: string, _entryPoint?: string): this {
    this.#conn.assertIdle();
    throw new WalshipError('ERR_UNSUPPORTED', 'loadExtension() is not supported: the SQLite WASM build cannot load native libraries', {
      details: { path: typeof path === 'string' ? path : null },
    });
  }

  /** Read integers as bigint in every statement prepared from now on (and in new functions). */
  defaultSafeIntegers(on?: boolean): this {
    this.#conn.safeDefault = toggle('defaultSafeIntegers', on);
    return this;
  }

  /** Allows statements while an iterate() is open, and writes to the schema (SQLite's defensive mode off). */
  unsafeMode(on?: boolean): this {
    const conn = this.#conn;
    conn.assertIdle();
    const yes = toggle('unsafeMode', on);
    conn.unsafe = yes;
    const capi = conn.rt.sqlite3.capi as unknown as { sqlite3_db_config(db: number, op: number, v: number, out: number): number };
    capi.sqlite3_db_config(conn.pDb, SQLITE_DBCONFIG_DEFENSIVE, yes ? 0 : 1, 0);
    return this;
  }

  /**
   * Calls `onClose`, finalizes every statement of the connection, then closes it with
   * sqlite3_close_v2. Idempotent; returns the database.
   */
  close(): this {
    const conn = this.#conn;
    if (!conn.open || this.#closing) return this;
    conn.assertNotBusy();
    // better-sqlite3 refuses to close under an unfinished iterate() (unsafeMode or not); so do
    // databases from this constructor. openDatabase() ones close and end the iterators (below).
    if (conn.iteratorRule && conn.iterators > 0) {
      throw new WalshipTypeError('ERR_DB_BUSY', 'This database connection is busy executing a query: finish the iterate() before close()', {
        details: { filename: this.#name },
      });
    }
    this.#closing = true;
    // An unfinished iterate() holds a read on the connection: end every statement first, so the
    // checkpoint onClose may run is not refused with SQLITE_LOCKED.
    for (const p of conn.statements) conn.x.sqlite3_reset(p);
    try {
      this.#onClose?.();
    } finally {
      const x = conn.x;
      const pDb = conn.pDb;
      conn.open = false;
      conn.iterators = 0;
      this.#tx = undefined;
      for (const p of conn.statements) x.sqlite3_finalize(p);
      conn.statements.clear();
      // capi's close_v2 also releases the JS callbacks (authorizer) bound to this connection.
      const rc = conn.rt.sqlite3.capi.sqlite3_close_v2(pDb);
      this.#afterClose?.();
      if (rc !== SQLITE_OK) {
        throw new SqliteError(conn.rt.rcName(rc), rc, `closing ${this.#name} failed`, { details: { filename: this.#name } });
      }
    }
    return this;
  }
}
