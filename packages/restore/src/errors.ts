import { WalshipError } from '@walship/vfs';
import { isFormatError } from '@walship/format';
import { isStorageError } from '@walship/storage';

/**
 * The stable codes restore, follow and the CLI report. Callers branch on the code; `details`
 * carries the operands (keys, txids, generation) and `cause` the underlying error.
 */
export type RestoreErrorCode =
  | 'ERR_INVALID_OPTION'
  | 'ERR_NO_REPLICA'
  | 'ERR_TXID_NOT_FOUND'
  | 'ERR_TIMESTAMP_BEFORE_FIRST'
  | 'ERR_CHAIN_GAP'
  | 'ERR_CHAIN_MISMATCH'
  | 'ERR_FOREIGN_OBJECT'
  | 'ERR_CORRUPT_OBJECT'
  | 'ERR_OBJECT_MISSING'
  | 'ERR_KEY_REQUIRED'
  | 'ERR_UNKNOWN_KEY'
  | 'ERR_DECRYPT_FAILED'
  | 'ERR_NOT_ENCRYPTED'
  | 'ERR_UNAUTHENTICATED'
  | 'ERR_AUTHENTICATION_FAILED'
  | 'ERR_TARGET_EXISTS'
  | 'ERR_TARGET_LOCKED'
  | 'ERR_VERIFY_FAILED'
  | 'ERR_REPLICA_BEHIND'
  | 'ERR_ABORTED';

export function restoreError(code: RestoreErrorCode, message: string, details: Record<string, unknown> = {}, cause?: unknown): WalshipError {
  return new WalshipError(code, message, { details, ...(cause !== undefined ? { cause } : {}) });
}

// Key problems are the operator's to fix (pass the right keys), so they keep their own codes;
// every other format failure means the object's bytes cannot be trusted.
const KEY_CODES = new Set(['ERR_KEY_REQUIRED', 'ERR_UNKNOWN_KEY', 'ERR_DECRYPT_FAILED', 'ERR_NOT_ENCRYPTED']);

/**
 * Turns whatever reading `key` threw into a WalshipError that names the key: FormatErrors become
 * ERR_CORRUPT_OBJECT (the format code is kept in details.formatCode) or keep their key code;
 * StorageErrors keep their ERR_STORAGE_* code with what restore was doing in the message.
 */
export function objectFailure(e: unknown, key: string, doing: string): Error {
  if (e instanceof WalshipError) return e;
  // Not about the object: a caller's mistake or a module that did not load.
  if (isFormatError(e) && (e.code === 'ERR_NOT_INITIALIZED' || e.code === 'ERR_INVALID_ARGUMENT')) return e;
  if (isFormatError(e)) {
    const code = KEY_CODES.has(e.code) ? (e.code as RestoreErrorCode) : 'ERR_CORRUPT_OBJECT';
    const hint = code === 'ERR_CORRUPT_OBJECT' || code === 'ERR_NOT_ENCRYPTED' ? '' : ' Pass the keys with `keys` (CLI: WALSHIP_KEYS=id:base64,...).';
    return restoreError(code, `${e.message}${hint}`, { key, formatCode: e.code, ...e.details }, e);
  }
  return storageFailure(e, `${doing} ${key}`);
}

/** A StorageError as a WalshipError with the same code; anything else is returned unchanged. */
export function storageFailure(e: unknown, doing: string): Error {
  if (e instanceof WalshipError) return e;
  if (isStorageError(e)) {
    return new WalshipError(e.code, `${doing} failed: ${e.message}`, { cause: e, details: { ...e.details } });
  }
  if (e instanceof Error && e.name === 'AbortError') return restoreError('ERR_ABORTED', `restore: ${doing} was aborted`, {}, e);
  return e instanceof Error ? e : new Error(String(e));
}

export function abortedError(reason: unknown): WalshipError {
  return restoreError('ERR_ABORTED', 'restore was aborted by its signal; the target was not changed', {}, reason);
}
