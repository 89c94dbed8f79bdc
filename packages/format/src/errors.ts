/**
 * Every failure this package reports is a FormatError with a stable `code`. Callers branch on the
 * code (never on the message); `details` carries the operands an operator needs (object name,
 * offset, chunk index, key id, ...). Messages name the object and say what to do about it.
 */
export type FormatErrorCode =
  | 'ERR_BAD_MAGIC'
  | 'ERR_UNSUPPORTED_VERSION'
  | 'ERR_TRUNCATED'
  | 'ERR_CHECKSUM_MISMATCH'
  | 'ERR_CORRUPT_OBJECT'
  | 'ERR_KEY_REQUIRED'
  | 'ERR_UNKNOWN_KEY'
  | 'ERR_DECRYPT_FAILED'
  | 'ERR_NOT_ENCRYPTED'
  | 'ERR_UNAUTHENTICATED'
  | 'ERR_AUTHENTICATION_FAILED'
  | 'ERR_BAD_KEY'
  | 'ERR_INVALID_ARGUMENT'
  | 'ERR_NOT_INITIALIZED';

export class FormatError extends Error {
  override readonly name = 'FormatError';
  readonly code: FormatErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: FormatErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = details;
  }
}

export function isFormatError(value: unknown, code?: FormatErrorCode): value is FormatError {
  return value instanceof FormatError && (code === undefined || value.code === code);
}

/** Shorthand for the argument checks of the encoder, keys and keyring. */
export function invalidArgument(message: string, details: Record<string, unknown> = {}): FormatError {
  return new FormatError('ERR_INVALID_ARGUMENT', message, details);
}

// What an operator should do, per code, appended to every decoder message.
const HINTS: Partial<Record<FormatErrorCode, string>> = {
  ERR_BAD_MAGIC: 'It is not a walship object: check the key and prefix, and keep other files out of the replica prefix.',
  ERR_UNSUPPORTED_VERSION: 'It was written by a newer walship: upgrade walship where this object is read.',
  ERR_TRUNCATED:
    'The object is incomplete (an interrupted upload or a short read): download it again; if it stays short, treat it as lost and restore from an earlier snapshot.',
  ERR_CHECKSUM_MISMATCH:
    'Its bytes changed after they were written (storage or transfer corruption): download it again; if the mismatch persists, do not apply it and restore from another copy or an earlier snapshot.',
  ERR_CORRUPT_OBJECT:
    'Its checksums match but its content is inconsistent (a writer bug or a crafted object): do not apply it; keep it for diagnosis.',
  ERR_KEY_REQUIRED: 'Pass a keyring that holds this key id.',
  ERR_UNKNOWN_KEY: 'Add the key with this id to the keyring (keys rotate: old objects keep needing old keys).',
  ERR_DECRYPT_FAILED:
    'The key registered under this id is not the one that encrypted the object, or the object was modified by someone without the key: check the keyring; do not apply the object.',
  ERR_NOT_ENCRYPTED:
    'Encryption is required but this object is plaintext: it was written before encryption was enabled, or it was planted; check who wrote it before allowing plaintext objects.',
  ERR_UNAUTHENTICATED:
    'Keys were given but this marker carries no MAC: it was written by walship before authenticated markers (open the database once with the writer and its keys: it starts a new, authenticated generation), or it was planted by someone who can write to the bucket; do not restore from it with these keys.',
  ERR_AUTHENTICATION_FAILED:
    'Its MAC does not verify under the key it names: it was modified, planted, or copied from another database or prefix (a replica copied to a new prefix needs `originalPrefix`); do not restore from it.',
};

/** The label used for an object in messages: its name (usually the S3 key) when the caller gave one. */
export function objectLabel(name: string | undefined): string {
  return name ? `walship object ${name}` : 'walship object';
}

/** A decoder error: names the object, says what is wrong, appends what to do. */
export function objectError(
  code: FormatErrorCode,
  name: string | undefined,
  problem: string,
  details: Record<string, unknown> = {},
  cause?: unknown,
): FormatError {
  const hint = HINTS[code];
  const message = `${objectLabel(name)}: ${problem}.${hint ? ` ${hint}` : ''}`;
  return new FormatError(code, message, { name, ...details }, cause === undefined ? undefined : { cause });
}
