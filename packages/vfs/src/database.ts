/**
 * A synchronous, better-sqlite3-shaped database API bound directly to the raw exports of the
 * `@sqlite.org/sqlite-wasm` module. The oo1 layer is deliberately bypassed on the hot path: every
 * bind, step and column read below is a single call into `sqlite3.wasm.exports`, strings and blobs
 * are moved through one reusable scratch buffer, and rows are built by a per-column-list factory so
 * that V8 sees one hidden class per statement.
 */
import { SqliteError, WalshipError } from './errors.js';
import { SQLITE_DONE, SQLITE_OK, SQLITE_PREPARE_PERSISTENT, SQLITE_ROW, runtimeFor } from './runtime.js';
import { Connection, onlyTrivia } from './connection.js';
import { Statement, createStatement, finalizeStatement } from './statement.js';
import type { DatabaseHandle, DatabaseOptions, TransactionFunction } from './types.js';

export { Statement } from './statement.js';
export type {
  Authorizer,
  BindParams,
  BindValue,
  ColumnDefinition,
  DatabaseHandle,
  DatabaseOptions,
  RunResult,
  TransactionFunction,
} from './types.js';

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
