/**
 * The retry layer: every HTTP request the storage makes goes through `runWithRetry`, which bounds
 * each attempt with a timeout (an AbortSignal that the HTTP handler turns into a socket destroy),
 * sleeps with full-jitter exponential backoff between attempts, reports every attempt, and turns the
 * final failure into a StorageError with a stable code. The SDK's own retries are off (maxAttempts 1)
 * so this is the only policy, and its attempts are the ones onRequest sees.
 */
import { StorageError, classify, type Classification, type StorageErrorCode, type StorageOperation } from './errors.js';
import type { RequestEvent } from './types.js';

export interface RetryOptions {
  /** Tries per request, the first included (default 5). 1 disables retries. */
  attempts?: number;
  /** Backoff cap before the first retry; doubles per retry (default 200 ms). */
  baseDelayMs?: number;
  /** Upper bound of any single backoff (default 5000 ms). */
  maxDelayMs?: number;
  /** Deadline of one HTTP attempt, from sending until the whole response body is read (default 30000 ms). */
  requestTimeoutMs?: number;
  /** TCP connect timeout of the client built by createS3Storage (default 5000 ms). */
  connectTimeoutMs?: number;
  /** Jitter source in [0, 1); tests pass a seeded one. */
  random?: () => number;
}

export type RetryPolicy = Required<RetryOptions>;

export const DEFAULT_RETRY: Readonly<RetryPolicy> = Object.freeze({
  attempts: 5,
  baseDelayMs: 200,
  maxDelayMs: 5000,
  requestTimeoutMs: 30_000,
  connectTimeoutMs: 5000,
  random: Math.random,
});

function positive(name: string, v: number | undefined, fallback: number, min: number): number {
  if (v === undefined) return fallback;
  if (!Number.isFinite(v) || v < min) throw new RangeError(`retry.${name} must be a finite number >= ${min}, got ${String(v)}`);
  return v;
}

export function resolveRetry(o: RetryOptions = {}): RetryPolicy {
  return {
    attempts: Math.floor(positive('attempts', o.attempts, DEFAULT_RETRY.attempts, 1)),
    baseDelayMs: positive('baseDelayMs', o.baseDelayMs, DEFAULT_RETRY.baseDelayMs, 0),
    maxDelayMs: positive('maxDelayMs', o.maxDelayMs, DEFAULT_RETRY.maxDelayMs, 0),
    requestTimeoutMs: positive('requestTimeoutMs', o.requestTimeoutMs, DEFAULT_RETRY.requestTimeoutMs, 1),
    connectTimeoutMs: positive('connectTimeoutMs', o.connectTimeoutMs, DEFAULT_RETRY.connectTimeoutMs, 1),
    random: o.random ?? DEFAULT_RETRY.random,
  };
}

/**
 * Full jitter: a uniform delay in [0, min(max, base * 2^(retry-1))]. Spreading retries over the
 * whole window (rather than around a fixed backoff) is what keeps many writers that were throttled
 * together (503 SlowDown) from coming back together.
 */
export function backoffDelay(retry: number, policy: Pick<RetryPolicy, 'baseDelayMs' | 'maxDelayMs' | 'random'>): number {
  const cap = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, retry - 1));
  return Math.floor(policy.random() * cap);
}

/** What one successful attempt reports besides its value. */
export interface AttemptResult<T> {
  value: T;
  status: number;
  bytes: number;
}

export type Attempt<T> = (signal: AbortSignal, n: number) => Promise<AttemptResult<T>>;

export interface RunContext {
  operation: StorageOperation;
  /** The RequestEvent operation (multipart parts report 'multipart'). */
  event: RequestEvent['operation'];
  key?: string;
  bucket: string;
  /** `s3://bucket/key` for messages. */
  target: string;
  endpoint: string;
  policy: RetryPolicy;
  signal?: AbortSignal | undefined;
  onRequest?: ((e: RequestEvent) => void) | undefined;
  /** Bytes sent by each attempt (put bodies), for events of failed attempts. */
  sendBytes?: number;
}

class AttemptTimeout extends Error {
  constructor(ms: number) {
    super(`no complete response within ${ms} ms`);
    this.name = 'AttemptTimeout';
  }
}

/** True when runWithRetry aborted this attempt's signal because it ran past requestTimeoutMs. */
export function attemptTimedOut(signal: AbortSignal): boolean {
  return signal.aborted && signal.reason instanceof AttemptTimeout;
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new Error('aborted');
}

/** Sleeps ms, rejecting early when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortReason(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function report(ctx: RunContext, e: RequestEvent): void {
  if (!ctx.onRequest) return;
  try {
    ctx.onRequest(e);
  } catch {
    // A metrics hook must never turn a stored object into a failed write.
  }
}

const HINTS: Partial<Record<StorageErrorCode, (ctx: RunContext) => string>> = {
  ERR_STORAGE_NO_BUCKET: (c) => `bucket "${c.bucket}" does not exist at ${c.endpoint}; create the bucket or fix s3.bucket`,
  ERR_STORAGE_ACCESS_DENIED: () =>
    'access denied; check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE), the clock, and that the policy allows this operation on the bucket and prefix',
  ERR_STORAGE_NO_CREDENTIALS: () =>
    'no AWS credentials found; the SDK looked for AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN), AWS_PROFILE in ~/.aws/credentials and ~/.aws/config (AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE), SSO, AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, the container endpoint (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI) and the instance metadata service; set one of them, or pass credentials',
  ERR_STORAGE_PRECONDITION_FAILED: () => 'the object already exists (If-None-Match: * refused the write)',
  ERR_STORAGE_UNSUPPORTED: () => 'the store does not implement this request (HTTP 501); turn the feature off for this store (e.g. conditionalWrites: false)',
  ERR_STORAGE_INVALID_REQUEST: () => 'the store or the SDK refused the request as invalid; check the key, the options and the client configuration (region, endpoint)',
};

function permanentError(ctx: RunContext, c: Extract<Classification, { retryable: false }>, attempts: number, cause: unknown): StorageError {
  const hint = HINTS[c.code]?.(ctx) ?? '';
  const status = c.status > 0 ? `HTTP ${c.status}` : 'no response';
  return new StorageError(
    c.code,
    `${ctx.operation} ${ctx.target}: ${hint} (${[c.storeCode, status].filter(Boolean).join(', ')}: ${c.reason})`,
    { operation: ctx.operation, ...(ctx.key !== undefined ? { key: ctx.key } : {}), bucket: ctx.bucket, status: c.status, attempts, storeCode: c.storeCode },
    { cause },
  );
}

export function abortedError(ctx: Pick<RunContext, 'operation' | 'target' | 'key' | 'bucket'>, attempts: number, cause: unknown): StorageError {
  return new StorageError(
    'ERR_STORAGE_ABORTED',
    `${ctx.operation} ${ctx.target}: aborted by the caller after ${attempts} attempt(s); the request may or may not have been applied`,
    { operation: ctx.operation, ...(ctx.key !== undefined ? { key: ctx.key } : {}), bucket: ctx.bucket, status: 0, attempts },
    { cause },
  );
}

/**
 * Runs `attempt` up to policy.attempts times. Each call gets a signal that aborts when the caller's
 * signal does or when the attempt exceeds requestTimeoutMs; the attempt must pass it to the SDK and
 * read the whole body under it, so a stalled response is cut off rather than awaited.
 */
export async function runWithRetry<T>(ctx: RunContext, attempt: Attempt<T>): Promise<T> {
  const { policy, signal: callerSignal } = ctx;
  const started = performance.now();
  let last: { c: Extract<Classification, { retryable: true }>; error: unknown } | undefined;
  for (let n = 1; n <= policy.attempts; n++) {
    if (callerSignal?.aborted) throw abortedError(ctx, n - 1, abortReason(callerSignal));
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort(new AttemptTimeout(policy.requestTimeoutMs));
    }, policy.requestTimeoutMs);
    const onCallerAbort = () => controller.abort(abortReason(callerSignal!));
    callerSignal?.addEventListener('abort', onCallerAbort, { once: true });
    const t0 = performance.now();
    try {
      const r = await attempt(controller.signal, n);
      report(ctx, { operation: ctx.event, ...(ctx.key !== undefined ? { key: ctx.key } : {}), bytes: r.bytes, status: r.status, durationMs: performance.now() - t0, attempt: n });
      return r.value;
    } catch (e) {
      const callerAborted = callerSignal?.aborted === true && !timedOut;
      const c = callerAborted ? undefined : classify(e, timedOut);
      report(ctx, {
        operation: ctx.event,
        ...(ctx.key !== undefined ? { key: ctx.key } : {}),
        bytes: ctx.sendBytes ?? 0,
        status: c?.status ?? 0,
        durationMs: performance.now() - t0,
        attempt: n,
        error: callerAborted ? 'aborted by caller' : (c?.storeCode ? `${c.storeCode}: ` : '') + (c?.reason ?? ''),
      });
      if (callerAborted || !c) throw abortedError(ctx, n, e);
      if (!c.retryable) throw permanentError(ctx, c, n, e);
      last = { c, error: e };
    } finally {
      clearTimeout(timer);
      callerSignal?.removeEventListener('abort', onCallerAbort);
    }
    if (n < policy.attempts) {
      try {
        await sleep(backoffDelay(n, policy), callerSignal);
      } catch (e) {
        throw abortedError(ctx, n, e);
      }
    }
  }
  const l = last!;
  const secs = ((performance.now() - started) / 1000).toFixed(1);
  const code: StorageErrorCode = l.c.timeout ? 'ERR_STORAGE_TIMEOUT' : 'ERR_STORAGE_UNAVAILABLE';
  const what = l.c.timeout
    ? `timed out (last attempt: ${l.c.reason}); check the network to ${ctx.endpoint} or raise retry.requestTimeoutMs`
    : `store unavailable (last attempt: ${[l.c.storeCode, l.c.status ? `HTTP ${l.c.status}` : ''].filter(Boolean).join(', ')}: ${l.c.reason}); check that ${ctx.endpoint} is reachable and healthy, or raise retry.attempts`;
  throw new StorageError(
    code,
    `${ctx.operation} ${ctx.target}: ${what}; gave up after ${policy.attempts} attempt(s) in ${secs} s`,
    {
      operation: ctx.operation,
      ...(ctx.key !== undefined ? { key: ctx.key } : {}),
      bucket: ctx.bucket,
      status: l.c.status,
      attempts: policy.attempts,
      storeCode: l.c.storeCode,
    },
    { cause: l.error },
  );
}
