/**
 * Every error walship throws is a WalshipError (or a subclass) with a stable `code` that callers can
 * switch on, a message that names the operands an operator needs, and the underlying `cause`.
 * Misuse of the better-sqlite3-shaped API throws WalshipTypeError / WalshipRangeError instead: they
 * are a TypeError / RangeError where better-sqlite3 throws one (code that catches those keeps
 * working), carry the same `code` and `details`, and still pass `instanceof WalshipError`.
 */

const BRAND: unique symbol = Symbol.for('walship.error');

interface ErrorOptions {
  cause?: unknown;
  details?: Record<string, unknown>;
}

export class WalshipError extends Error {
  readonly code: string;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: string, message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'WalshipError';
    this.code = code;
    this.details = Object.freeze({ ...(options.details ?? {}) });
  }

  /** WalshipTypeError and WalshipRangeError cannot extend WalshipError (they extend the built-ins): they are branded instead. */
  static override [Symbol.hasInstance](v: unknown): boolean {
    if (Function.prototype[Symbol.hasInstance].call(this, v)) return true;
    return this === WalshipError && typeof v === 'object' && v !== null && (v as { [BRAND]?: boolean })[BRAND] === true;
  }
}

function brand(e: Error, code: string, options: ErrorOptions): void {
  Object.defineProperty(e, BRAND, { value: true });
  Object.defineProperty(e, 'code', { value: code, enumerable: true });
  Object.defineProperty(e, 'details', { value: Object.freeze({ ...(options.details ?? {}) }), enumerable: true });
}

/** An argument of the wrong type (better-sqlite3 throws a TypeError there), or use of a closed database. */
export class WalshipTypeError extends TypeError {
  declare readonly code: string;
  declare readonly details: Readonly<Record<string, unknown>>;

  constructor(code: string, message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    brand(this, code, options);
  }
}

/** An argument out of range, or a call that is not allowed in the current state (better-sqlite3's RangeError / TypeError split). */
export class WalshipRangeError extends RangeError {
  declare readonly code: string;
  declare readonly details: Readonly<Record<string, unknown>>;

  constructor(code: string, message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    brand(this, code, options);
  }
}

/**
 * An error reported by SQLite itself. `code` is SQLite's extended result code name
 * (for example `SQLITE_CONSTRAINT_UNIQUE`), `errno` its numeric value.
 */
export interface SqliteError extends WalshipError {
  readonly errno: number;
}

export interface SqliteErrorConstructor {
  /** walship's form: code name, numeric code, message. */
  new (code: string, errno: number, message: string, options?: ErrorOptions): SqliteError;
  /** better-sqlite3's form: message, code name (also callable without `new`). */
  new (message: string, code: string): SqliteError;
  (message: string, code: string): SqliteError;
  readonly prototype: SqliteError;
}

/**
 * A function constructor rather than a class: better-sqlite3's SqliteError may be called without
 * `new` and takes `(message, code)`; walship's own callers pass `(code, errno, message, options)`.
 */
export const SqliteError: SqliteErrorConstructor = function SqliteError(this: unknown, ...args: unknown[]): SqliteError {
  const target = (new.target ?? SqliteError) as unknown as new (...a: unknown[]) => SqliteError;
  let code: string;
  let errno: number | undefined;
  let message: string;
  let options: ErrorOptions = {};
  if (typeof args[1] === 'number' && args.length >= 3) {
    code = String(args[0]);
    errno = args[1];
    message = String(args[2]);
    options = (args[3] as ErrorOptions | undefined) ?? {};
  } else {
    if (typeof args[1] !== 'string') {
      throw new WalshipTypeError('ERR_INVALID_ARG', 'SqliteError(message, code) expects the code to be a string');
    }
    message = String(args[0]);
    code = args[1];
  }
  const e = Reflect.construct(WalshipError, [code, message, options], target) as SqliteError & { errno?: number; name: string };
  Object.defineProperty(e, 'name', { value: 'SqliteError', writable: true, configurable: true });
  if (errno !== undefined) e.errno = errno;
  return e;
} as unknown as SqliteErrorConstructor;
Object.setPrototypeOf(SqliteError.prototype, WalshipError.prototype);
Object.setPrototypeOf(SqliteError, WalshipError);
Object.defineProperty(SqliteError.prototype, 'name', { value: 'SqliteError', writable: true, configurable: true });
