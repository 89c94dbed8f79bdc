import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StorageError, classify } from './errors.js';
import { backoffDelay, resolveRetry, runWithRetry, type RunContext } from './retry.js';
import type { RequestEvent } from './types.js';

function ctx(over: Partial<RunContext> = {}): RunContext & { events: RequestEvent[] } {
  const events: RequestEvent[] = [];
  return {
    operation: 'put',
    event: 'put',
    key: 'k',
    bucket: 'b',
    target: 's3://b/k',
    endpoint: 'http://store',
    policy: resolveRetry({ attempts: 4, baseDelayMs: 1, maxDelayMs: 2, requestTimeoutMs: 200 }),
    onRequest: (e) => events.push(e),
    events,
    ...over,
  };
}

const sdkError = (name: string, status: number) => Object.assign(new Error(`${name} happened`), { name, $metadata: { httpStatusCode: status } });
const netError = (code: string, name = 'Error') => Object.assign(new Error(`${code} happened`), { code, name });

test('backoff: full jitter within min(max, base * 2^(retry-1))', () => {
  const top = { baseDelayMs: 100, maxDelayMs: 1000, random: () => 0.999999 };
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, top)), [99, 199, 399, 799, 999, 999]);
  assert.equal(backoffDelay(3, { ...top, random: () => 0 }), 0);
});

test('retry options are validated', () => {
  assert.throws(() => resolveRetry({ attempts: 0 }), RangeError);
  assert.throws(() => resolveRetry({ requestTimeoutMs: Number.NaN }), RangeError);
  assert.equal(resolveRetry().attempts, 5);
});

test('classification of store and network errors', () => {
  const cases: [unknown, string][] = [
    [sdkError('SlowDown', 503), 'retry'],
    [sdkError('InternalError', 500), 'retry'],
    [sdkError('Unknown', 502), 'retry'],
    [sdkError('Unknown', 504), 'retry-timeout'],
    [sdkError('TooManyRequests', 429), 'retry'],
    [sdkError('ConditionalRequestConflict', 409), 'retry'],
    [sdkError('RequestTimeout', 400), 'retry'],
    [sdkError('NoSuchBucket', 404), 'ERR_STORAGE_NO_BUCKET'],
    [sdkError('AccessDenied', 403), 'ERR_STORAGE_ACCESS_DENIED'],
    [sdkError('Forbidden', 403), 'ERR_STORAGE_ACCESS_DENIED'],
    [sdkError('InvalidAccessKeyId', 403), 'ERR_STORAGE_ACCESS_DENIED'],
    [sdkError('SignatureDoesNotMatch', 403), 'ERR_STORAGE_ACCESS_DENIED'],
    [sdkError('PreconditionFailed', 412), 'ERR_STORAGE_PRECONDITION_FAILED'],
    [sdkError('NotImplemented', 501), 'ERR_STORAGE_UNSUPPORTED'],
    [sdkError('InvalidArgument', 400), 'ERR_STORAGE_INVALID_REQUEST'],
    [sdkError('InvalidRange', 416), 'ERR_STORAGE_INVALID_REQUEST'],
    [netError('ECONNREFUSED'), 'retry'],
    // smithy renames resets to TimeoutError; they stay resets.
    [netError('ECONNRESET', 'TimeoutError'), 'retry'],
    [Object.assign(new Error('connect timeout'), { name: 'TimeoutError' }), 'retry-timeout'],
    [Object.assign(new Error('fetch failed'), { cause: netError('ENOTFOUND') }), 'retry'],
    [Object.assign(new Error('Deserialization error: truncated xml'), { $response: {} }), 'retry'],
    [Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' }), 'ERR_STORAGE_NO_CREDENTIALS'],
    [new TypeError('Expected uri parameter to have length >= 1'), 'ERR_STORAGE_INVALID_REQUEST'],
  ];
  for (const [err, want] of cases) {
    const c = classify(err);
    const got = c.retryable ? (c.timeout ? 'retry-timeout' : 'retry') : c.code;
    assert.equal(got, want, `${(err as Error).name} ${(err as Error).message}`);
  }
  assert.equal(classify(new Error('x'), true).retryable, true, 'our own timer fired: a timeout');
});

test('retries transient failures, reports every attempt, returns the value', async () => {
  const c = ctx();
  let n = 0;
  const v = await runWithRetry(c, async () => {
    n++;
    if (n === 1) throw netError('ECONNRESET');
    if (n === 2) throw sdkError('SlowDown', 503);
    return { value: 'ok', status: 200, bytes: 7 };
  });
  assert.equal(v, 'ok');
  assert.deepEqual(
    c.events.map((e) => [e.attempt, e.status, e.bytes, e.error?.split(':')[0]]),
    [
      [1, 0, 0, 'ECONNRESET'],
      [2, 503, 0, 'SlowDown'],
      [3, 200, 7, undefined],
    ],
  );
});

test('a permanent error is not retried and names what to do', async () => {
  const c = ctx();
  await assert.rejects(
    runWithRetry(c, async () => {
      throw sdkError('NoSuchBucket', 404);
    }),
    (e) => {
      assert.ok(e instanceof StorageError);
      assert.equal(e.code, 'ERR_STORAGE_NO_BUCKET');
      assert.deepEqual({ ...e.details }, { operation: 'put', key: 'k', bucket: 'b', status: 404, attempts: 1, storeCode: 'NoSuchBucket' });
      assert.match(e.message, /^put s3:\/\/b\/k: bucket "b" does not exist at http:\/\/store; create the bucket or fix s3\.bucket/);
      assert.ok(e.cause);
      return true;
    },
  );
  assert.equal(c.events.length, 1);
});

test('attempts exhausted: ERR_STORAGE_UNAVAILABLE with the last cause', async () => {
  const c = ctx();
  const last = sdkError('InternalError', 500);
  await assert.rejects(
    runWithRetry(c, async (_s, n) => {
      throw n === 4 ? last : netError('ECONNREFUSED');
    }),
    (e) => {
      assert.ok(e instanceof StorageError && e.code === 'ERR_STORAGE_UNAVAILABLE' && e.details.attempts === 4 && e.details.status === 500);
      // The last SDK error, as a copy without its $response (which reaches the signed request).
      const cause = e.cause as { message?: string; $metadata?: { httpStatusCode?: number } };
      assert.equal(cause.message, last.message);
      assert.equal(cause.$metadata?.httpStatusCode, 500);
      return true;
    },
  );
  assert.equal(c.events.length, 4);
});

test('each attempt is cut at requestTimeoutMs; all timing out gives ERR_STORAGE_TIMEOUT', async () => {
  const c = ctx({ policy: resolveRetry({ attempts: 2, baseDelayMs: 1, requestTimeoutMs: 50 }) });
  const t0 = performance.now();
  await assert.rejects(
    runWithRetry(c, (signal) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(Object.assign(new Error('aborted'), { name: 'AbortError' }))))),
    (e) => e instanceof StorageError && e.code === 'ERR_STORAGE_TIMEOUT' && e.details.attempts === 2,
  );
  // Not hung (two 50 ms attempts; a liveness bound on a loaded machine).
  assert.ok(performance.now() - t0 < 5000);
  assert.ok(c.events.every((e) => e.durationMs >= 45));
});

test('the caller aborting during an attempt or a backoff gives ERR_STORAGE_ABORTED at once', async () => {
  const ac = new AbortController();
  const c = ctx({ signal: ac.signal });
  setTimeout(() => ac.abort(), 20);
  await assert.rejects(
    runWithRetry(c, (signal) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted'))))),
    (e) => e instanceof StorageError && e.code === 'ERR_STORAGE_ABORTED' && e.details.attempts === 1,
  );

  const ac2 = new AbortController();
  const slow = ctx({ signal: ac2.signal, policy: resolveRetry({ attempts: 3, baseDelayMs: 10_000, maxDelayMs: 10_000, random: () => 0.99 }) });
  const t0 = performance.now();
  setTimeout(() => ac2.abort(), 20);
  await assert.rejects(
    runWithRetry(slow, async () => {
      throw sdkError('SlowDown', 503);
    }),
    (e) => e instanceof StorageError && e.code === 'ERR_STORAGE_ABORTED',
  );
  assert.ok(performance.now() - t0 < 5000, 'the 10 s backoff sleep was interrupted');

  const pre = new AbortController();
  pre.abort();
  await assert.rejects(
    runWithRetry(ctx({ signal: pre.signal }), async () => ({ value: 1, status: 200, bytes: 0 })),
    (e) => e instanceof StorageError && e.code === 'ERR_STORAGE_ABORTED' && e.details.attempts === 0,
  );
});

test('a throwing onRequest hook does not fail the request', async () => {
  const c = ctx({
    onRequest: () => {
      throw new Error('metrics broke');
    },
  });
  assert.equal(await runWithRetry(c, async () => ({ value: 3, status: 200, bytes: 0 })), 3);
});
