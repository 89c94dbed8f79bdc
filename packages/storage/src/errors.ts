/**
 * Typed storage errors and the classification of whatever the SDK or the network threw into
 * "retry it" or "give up with this code". The codes are stable: callers (the shipper's lease logic,
 * restore, the CLI) branch on them, and the contract suite asserts them against real servers.
 */

export type StorageErrorCode =
  | 'ERR_STORAGE_NO_BUCKET'
  | 'ERR_STORAGE_ACCESS_DENIED'
  | 'ERR_STORAGE_NO_CREDENTIALS'
  | 'ERR_STORAGE_PRECONDITION_FAILED'
  | 'ERR_STORAGE_OBJECT_CHANGED'
  | 'ERR_STORAGE_UNSUPPORTED'
  | 'ERR_STORAGE_INVALID_REQUEST'
  | 'ERR_STORAGE_UNAVAILABLE'
  | 'ERR_STORAGE_TIMEOUT'
  | 'ERR_STORAGE_ABORTED';

export type StorageOperation = 'put' | 'putStream' | 'get' | 'head' | 'list' | 'delete' | 'check';

export interface StorageErrorDetails {
  operation: StorageOperation;
  /** The object key (list: the prefix; delete: the first key of the failed batch). */
  key?: string;
  bucket: string;
  /** HTTP status of the last attempt, 0 when no response arrived. */
  status: number;
  /** HTTP attempts made for the failing request. */
  attempts: number;
  /** The store's own error code (`NoSuchBucket`, `SlowDown`, ...) or the socket error code. */
  storeCode?: string;
}

export class StorageError extends Error {
  readonly code: StorageErrorCode;
  readonly details: Readonly<StorageErrorDetails>;

  constructor(code: StorageErrorCode, message: string, details: StorageErrorDetails, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: safeCause(options.cause) });
    this.name = 'StorageError';
    this.code = code;
    this.details = Object.freeze({ ...details });
  }
}

/**
 * What an error keeps of an AWS SDK error as its cause: name, message, codes, HTTP status and
 * request id, and its own cause the same way. Not the SDK object itself: its `$response` reaches
 * the request with the signed Authorization header (Credential=<access key id>, Signature=...),
 * and an error body may carry AWSAccessKeyId or StringToSign; an application that logs an error
 * with its causes would ship those. The same for Node's invalid-URL error (its `input`). Other
 * causes are kept as they are.
 */
export function safeCause(e: unknown, depth = 0): unknown {
  if (typeof e !== 'object' || e === null || depth > 4) return e;
  const s = e as { name?: unknown; message?: unknown; code?: unknown; Code?: unknown; stack?: unknown; cause?: unknown; $metadata?: unknown; $response?: unknown; $fault?: unknown };
  // Node's invalid-URL error keeps the URL as given, user:password@ included, in `input`.
  const invalidUrl = s.code === 'ERR_INVALID_URL';
  if (s.$response === undefined && s.$metadata === undefined && s.$fault === undefined && !invalidUrl) return e;
  const copy = new Error(typeof s.message === 'string' ? s.message : '', s.cause === undefined ? undefined : { cause: safeCause(s.cause, depth + 1) });
  copy.name = typeof s.name === 'string' ? s.name : 'Error';
  if (typeof s.stack === 'string') copy.stack = s.stack;
  const meta = (typeof s.$metadata === 'object' && s.$metadata !== null ? s.$metadata : {}) as { httpStatusCode?: unknown; requestId?: unknown; attempts?: unknown };
  Object.assign(copy, {
    ...(typeof s.code === 'string' ? { code: s.code } : {}),
    ...(typeof s.Code === 'string' ? { Code: s.Code } : {}),
    ...(typeof s.$fault === 'string' ? { $fault: s.$fault } : {}),
    $metadata: { httpStatusCode: meta.httpStatusCode, requestId: meta.requestId, attempts: meta.attempts },
  });
  return copy;
}

export function isStorageError(e: unknown, code?: StorageErrorCode): e is StorageError {
  return e instanceof StorageError && (code === undefined || e.code === code);
}

/** What one failed attempt means. */
export type Classification =
  | { retryable: true; timeout: boolean; status: number; storeCode: string; reason: string }
  | { retryable: false; code: StorageErrorCode; status: number; storeCode: string; reason: string };

const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTCONN',
  'UND_ERR_SOCKET',
  'ERR_STREAM_PREMATURE_CLOSE',
  'ERR_STORAGE_TRUNCATED',
]);

/** Store error codes that are transient whatever their HTTP status says. */
const RETRYABLE_STORE_CODES = new Set([
  'InternalError',
  'ServiceUnavailable',
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'RequestLimitExceeded',
  'TooManyRequests',
  // S3 answers 400 RequestTimeout when it did not receive the body in time.
  'RequestTimeout',
  'IncompleteBody',
  // A body corrupted in transit; sending it again is the fix.
  'BadDigest',
  'ConditionalRequestConflict',
  'OperationAborted',
  // The SDK corrects its clock offset from this response, so the next attempt is signed right.
  'RequestTimeTooSkewed',
]);

const ACCESS_CODES = new Set([
  'AccessDenied',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
  'TokenRefreshRequired',
  'AllAccessDisabled',
  'AccountProblem',
  'InvalidClientTokenId',
  'UnrecognizedClientException',
  'CredentialsProviderError',
]);

interface ErrorShape {
  name?: unknown;
  code?: unknown;
  Code?: unknown;
  message?: unknown;
  cause?: unknown;
  $metadata?: { httpStatusCode?: number };
  $response?: unknown;
}

function shape(e: unknown): ErrorShape {
  return typeof e === 'object' && e !== null ? (e as ErrorShape) : {};
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

/** The socket-level error code, looking through `cause` chains (undici and smithy wrap them). */
function networkCode(e: unknown): string {
  let cur: unknown = e;
  for (let depth = 0; depth < 4 && cur; depth++) {
    const code = str(shape(cur).code);
    if (NETWORK_CODES.has(code)) return code;
    cur = shape(cur).cause;
  }
  return '';
}

/**
 * An endpoint URL as messages may show it: scheme, host, port and path. User info (`user:pass@`),
 * query and fragment go: they can carry credentials, and messages end up in logs and status.
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
  } catch {
    return `an endpoint URL that does not parse (${url.length} characters)`;
  }
}

/** One line describing an error for events and messages. */
export function describeError(e: unknown): string {
  const s = shape(e);
  const parts = [str(s.name) || 'Error', str(s.code) || str(s.Code)].filter((p, i, a) => p && a.indexOf(p) === i);
  const msg = str(s.message) || String(e);
  return `${parts.join(' ')}: ${msg}`.slice(0, 500);
}

/**
 * Classifies a failed attempt. `timedOut` is true when our own per-attempt timer fired (the SDK then
 * reports a plain AbortError, which would otherwise look like a caller abort).
 */
export function classify(e: unknown, timedOut = false): Classification {
  const s = shape(e);
  const status = s.$metadata?.httpStatusCode ?? 0;
  const name = str(s.name);
  const storeCode = str(s.Code) || (status > 0 ? name : '') || str(s.code) || networkCode(e);
  const reason = describeError(e);

  if (timedOut) return { retryable: true, timeout: true, status, storeCode: storeCode || 'Timeout', reason };

  const net = networkCode(e);
  if (net !== '' && status === 0) {
    // smithy renames ECONNRESET/EPIPE errors to TimeoutError; they are resets, not timeouts.
    return { retryable: true, timeout: net === 'ETIMEDOUT', status, storeCode: net, reason };
  }
  if (name === 'TimeoutError' && status === 0) return { retryable: true, timeout: true, status, storeCode: 'Timeout', reason };

  if (status === 0) {
    // A response that arrived but could not be parsed (a truncated XML body, an HTML page from a
    // proxy) carries $response; retrying reads it again. Anything else never reached the wire:
    // a bad input or a missing region/credential, which no retry fixes.
    if (s.$response !== undefined || name.includes('Deserialization')) return { retryable: true, timeout: false, status, storeCode: name, reason };
    // No credentials anywhere in the chain is not a refusal by the store: nothing was sent.
    const code: StorageErrorCode = name === 'CredentialsProviderError' ? 'ERR_STORAGE_NO_CREDENTIALS' : 'ERR_STORAGE_INVALID_REQUEST';
    return { retryable: false, code, status, storeCode: name, reason };
  }

  if (storeCode === 'NoSuchBucket') return { retryable: false, code: 'ERR_STORAGE_NO_BUCKET', status, storeCode, reason };
  if (RETRYABLE_STORE_CODES.has(storeCode)) return { retryable: true, timeout: false, status, storeCode, reason };
  if (status === 403 || ACCESS_CODES.has(storeCode)) return { retryable: false, code: 'ERR_STORAGE_ACCESS_DENIED', status, storeCode, reason };
  if (status === 412 || storeCode === 'PreconditionFailed') {
    return { retryable: false, code: 'ERR_STORAGE_PRECONDITION_FAILED', status, storeCode, reason };
  }
  if (status === 501 || storeCode === 'NotImplemented') return { retryable: false, code: 'ERR_STORAGE_UNSUPPORTED', status, storeCode, reason };
  if (status === 408 || status === 429 || status >= 500) return { retryable: true, timeout: status === 408 || status === 504, status, storeCode, reason };
  return { retryable: false, code: 'ERR_STORAGE_INVALID_REQUEST', status, storeCode, reason };
}

/** The HTTP status of an SDK command's output (200 when the SDK did not record one). */
export function statusOf(output: { $metadata?: { httpStatusCode?: number } }): number {
  return output.$metadata?.httpStatusCode ?? 200;
}

/** Strips the quotes S3 puts around an ETag. */
export function bareEtag(etag: string | undefined): string | undefined {
  return etag?.replace(/^(?:W\/)?"|"$/g, '');
}

/** The first byte offset of a `Content-Range: bytes a-b/total` header (the SDK client and the ranged reader read answers with it). */
export function contentRangeStart(header: string | undefined): number | undefined {
  const m = header === undefined ? null : /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(header.trim());
  return m ? Number(m[1]) : undefined;
}

/**
 * The check behind GetOptions.etag: an answer whose ETag is not the expected one is of another
 * version of the object (replaced after the caller learned its ETag).
 */
export function checkEtag(expected: string | undefined, got: string | undefined, details: { key: string; bucket: string; status: number; attempts?: number }): void {
  if (expected === undefined || got === undefined || bareEtag(expected) === bareEtag(got)) return;
  throw new StorageError(
    'ERR_STORAGE_OBJECT_CHANGED',
    `s3://${details.bucket}/${details.key} was replaced after it was first read (ETag ${bareEtag(got)}, expected ${bareEtag(expected)}); what was read of it before no longer belongs with this answer`,
    { operation: 'get', key: details.key, bucket: details.bucket, status: details.status, attempts: details.attempts ?? 1 },
  );
}
