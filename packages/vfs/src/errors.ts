/**
 * Every error walship throws is a WalshipError (or a subclass) with a stable `code` that callers can
 * switch on, a message that names the operands an operator needs, and the underlying `cause`.
 */
export class WalshipError extends Error {
  readonly code: string;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: string, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'WalshipError';
    this.code = code;
    this.details = Object.freeze({ ...(options.details ?? {}) });
  }
}

/**
 * An error reported by SQLite itself. `code` is SQLite's extended result code name
 * (for example `SQLITE_CONSTRAINT_UNIQUE`), `errno` its numeric value.
 */
export class SqliteError extends WalshipError {
  readonly errno: number;

  constructor(code: string, errno: number, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(code, message, options);
    this.name = 'SqliteError';
    this.errno = errno;
  }
}
