/** Connection state shared by a Database and its statements. */
import { SqliteError, WalshipTypeError } from './errors.js';
import { SQLITE_OK, type RawExports, type Runtime } from './runtime.js';

export class Connection {
  readonly rt: Runtime;
  readonly x: RawExports;
  readonly pDb: number;
  readonly name: string;
  open = true;
  /** Exception thrown by the user's authorizer during the current prepare, if any. */
  authorizerError: unknown = undefined;
  mapError: ((e: SqliteError) => Error) | undefined;
  /** The Database object (what `stmt.database` returns). */
  db: object | undefined;
  /** Statements prepared from now on read integers as bigint (Database#defaultSafeIntegers). */
  safeDefault = false;
  /** Database#unsafeMode: allows statements while an iterate() is open. */
  unsafe = false;
  /**
   * better-sqlite3 refuses exec()/run() while an iterate() is open. Only databases opened with
   * `new Database(filename)` follow that rule: a replicated database must accept the shipper's
   * checkpoints whatever iterators the application left open.
   */
  iteratorRule = false;
  /** better-sqlite3's `verbose` option: called with the SQL of each statement as it runs. */
  verbose: ((sql: string) => void) | undefined;
  /** Unfinished iterate() loops: exec(), run() and registrations wait for them (unless unsafe). */
  iterators = 0;
  /** User functions running inside a step: the connection refuses every statement meanwhile. */
  busy = 0;
  /**
   * The statements this API prepared and has not finalized. close() finalizes exactly these:
   * an extension (FTS5) owns prepared statements of its own and finalizes them itself, so
   * finalizing every statement of the connection would free them twice.
   */
  readonly statements = new Set<number>();
  /** A value a user function threw during the current step: rethrown as-is instead of SQLite's error. */
  jsError: { value: unknown } | undefined;

  constructor(rt: Runtime, pDb: number, name: string) {
    this.rt = rt;
    this.x = rt.x;
    this.pDb = pDb;
    this.name = name;
  }

  assertOpen(): void {
    if (!this.open) throw dbClosed(this.name);
  }

  /** Open, and not inside a user function that runs as part of a statement. */
  assertNotBusy(): void {
    if (!this.open) throw dbClosed(this.name);
    if (this.busy > 0) {
      throw new WalshipTypeError('ERR_DB_BUSY', 'This database connection is busy executing a query', { details: { filename: this.name } });
    }
  }

  /** Also no unfinished iterate() (unless unsafeMode): what exec(), run() and registrations need (better-sqlite3's rule). */
  assertIdle(): void {
    this.assertNotBusy();
    if (this.iterators > 0 && !this.unsafe && this.iteratorRule) {
      throw new WalshipTypeError('ERR_DB_BUSY', 'This database connection is busy executing a query: finish the iterate() first (or enable unsafeMode())', {
        details: { filename: this.name },
      });
    }
  }

  /** SqliteError for `rc`, with the connection's current error message. */
  error(rc: number, sql: string): Error {
    const js = this.jsError;
    if (js !== undefined) {
      this.jsError = undefined;
      // Thrown as-is (better-sqlite3 propagates the very value the function threw, even a non-Error).
      return js.value as Error;
    }
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

export function dbClosed(name: string): WalshipTypeError {
  return new WalshipTypeError('ERR_DB_CLOSED', `database ${name} is closed`, { details: { filename: name } });
}

/** True if bytes `[from, to)` hold only whitespace, `;`, and SQL comments. */
export function onlyTrivia(h: Uint8Array, from: number, to: number): boolean {
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
export const statementRegistry = new FinalizationRegistry<{ conn: Connection; p: number }>(({ conn, p }) => {
  if (conn.open && conn.statements.delete(p)) conn.x.sqlite3_finalize(p);
});
