/** Database#transaction(): BEGIN/COMMIT around a function, SAVEPOINTs when nested. */
import { WalshipTypeError } from './errors.js';
import type { Statement } from './statement.js';
import type { TransactionFunction } from './types.js';

export type TxMode = 'deferred' | 'immediate' | 'exclusive';

export interface TxStatements {
  deferred: Statement;
  immediate: Statement;
  exclusive: Statement;
  commit: Statement;
  rollback: Statement;
  savepoint: Statement;
  release: Statement;
  rollbackTo: Statement;
}

/** What a transaction function needs from its database. */
export interface TxHost {
  readonly inTransaction: boolean;
  assertOpen(): void;
  statements(): TxStatements;
}

const SAVEPOINT = '"walship.tx"';

export function txSql(): Record<keyof TxStatements, string> {
  return {
    deferred: 'BEGIN',
    immediate: 'BEGIN IMMEDIATE',
    exclusive: 'BEGIN EXCLUSIVE',
    commit: 'COMMIT',
    rollback: 'ROLLBACK',
    savepoint: `SAVEPOINT ${SAVEPOINT}`,
    release: `RELEASE ${SAVEPOINT}`,
    rollbackTo: `ROLLBACK TO ${SAVEPOINT}`,
  };
}

function isThenable(v: unknown): boolean {
  return (typeof v === 'object' || typeof v === 'function') && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

export function makeTransaction<F extends (...a: any[]) => any>(db: object, host: TxHost, fn: F): TransactionFunction<F> {
  if (typeof fn !== 'function') throw new WalshipTypeError('ERR_INVALID_ARG', 'Expected first argument to be a function');
  const make = (mode: TxMode): F =>
    function (this: unknown, ...args: unknown[]): unknown {
      return runTransaction(host, mode, fn, this, args);
    } as F;
  const deferred = make('deferred');
  const immediate = make('immediate');
  const exclusive = make('exclusive');
  const props: PropertyDescriptorMap = {
    default: { value: deferred },
    deferred: { value: deferred },
    immediate: { value: immediate },
    exclusive: { value: exclusive },
    database: { value: db },
  };
  for (const f of [deferred, immediate, exclusive]) Object.defineProperties(f, props);
  return deferred as TransactionFunction<F>;
}

function runTransaction(host: TxHost, mode: TxMode, fn: (...a: unknown[]) => unknown, thisArg: unknown, args: unknown[]): unknown {
  host.assertOpen();
  const s = host.statements();
  const nested = host.inTransaction;
  if (nested) s.savepoint.run();
  else s[mode].run();
  try {
    const result = fn.apply(thisArg, args);
    if (isThenable(result)) {
      throw new WalshipTypeError(
        'ERR_TRANSACTION_ASYNC',
        'Transaction function cannot return a promise: transaction functions must be synchronous (rolled back)',
      );
    }
    if (nested) s.release.run();
    else s.commit.run();
    return result;
  } catch (e) {
    // SQLite may already have rolled back (INSERT OR ROLLBACK, some I/O errors): then there is nothing to undo.
    if (host.inTransaction) {
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
