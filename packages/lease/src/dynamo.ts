/**
 * The DynamoDB seam: one request with a per-attempt timeout, our own retries with backoff, and the
 * final failure turned into a LeaseError. The SDK's retries are off on clients we build, so the time
 * budget (a lease deadline, an acquire wait) is ours to enforce.
 */

import { DescribeTableCommand, DynamoDBClient, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import { LeaseError, classify, tableMissing, type Classification } from './errors.js';
import type { DynamoConnection } from './options.js';

export const KEY_ATTRIBUTE = 'pk';

export function buildClient(c: DynamoConnection, requestTimeoutMs: number): { client: DynamoDBClient; owned: boolean } {
  if (c.client) return { client: c.client, owned: false };
  const config: DynamoDBClientConfig = {
    maxAttempts: 1,
    requestHandler: { connectionTimeout: requestTimeoutMs, requestTimeout: requestTimeoutMs },
  };
  if (c.endpoint !== undefined) config.endpoint = c.endpoint;
  if (c.region !== undefined) config.region = c.region;
  if (c.credentials !== undefined) config.credentials = c.credentials;
  return { client: new DynamoDBClient(config), owned: true };
}

/** setTimeout that does not keep the process alive when `ref` is false (the background heartbeat). */
export function sleep(ms: number, opts: { ref?: boolean; signal?: AbortSignal } = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(opts.signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(t);
      reject(opts.signal?.reason);
    };
    const t = setTimeout(() => {
      opts.signal?.removeEventListener('abort', onAbort);
      resolve();
    }, Math.max(0, ms));
    if (opts.ref === false) unref(t);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export function unref(t: unknown): void {
  (t as { unref?: () => void }).unref?.();
}

export interface RequestContext {
  client: DynamoDBClient;
  table: string;
  key?: string;
  clock: () => number;
  requestTimeoutMs: number;
  maxAttempts: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  log?: (level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

export interface RequestBudget {
  /** Retry transient failures while clock() < until (renew: the lease deadline), instead of counting attempts. */
  until?: number;
  /** Keep the process alive while waiting between attempts (false for the background heartbeat). */
  ref?: boolean;
  signal?: AbortSignal;
}

export type Outcome<T> =
  | { ok: true; value: T; attempts: number; firstStart: number }
  | { ok: false; conditionFailed: true; attempts: number; firstStart: number; ambiguous: boolean };

/**
 * Sends `send()` until it succeeds, fails its condition, fails for good, or the budget is spent.
 * `ambiguous` on a condition failure says an earlier attempt may have been applied without us seeing
 * the answer (a timeout, a reset, a 5xx), so the caller should check whether the write is its own.
 */
export async function request<T>(ctx: RequestContext, operation: string, send: (signal: AbortSignal) => Promise<T>, budget: RequestBudget = {}): Promise<Outcome<T>> {
  const firstStart = ctx.clock();
  let ambiguous = false;
  let last: { c: Extract<Classification, { kind: 'transient' }>; error: unknown } | undefined;
  for (let attempt = 1; ; attempt++) {
    if (budget.signal?.aborted) throw budget.signal.reason;
    let timeoutMs = ctx.requestTimeoutMs;
    if (budget.until !== undefined) timeoutMs = Math.min(timeoutMs, budget.until - ctx.clock());
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, Math.max(1, timeoutMs));
    const onOuterAbort = () => controller.abort();
    budget.signal?.addEventListener('abort', onOuterAbort, { once: true });
    try {
      const value = await send(controller.signal);
      return { ok: true, value, attempts: attempt, firstStart };
    } catch (e) {
      if (budget.signal?.aborted) throw budget.signal.reason;
      const c = classify(e, timedOut);
      if (c.kind === 'condition-failed') return { ok: false, conditionFailed: true, attempts: attempt, firstStart, ambiguous };
      if (c.kind === 'fatal') throw await fatalError(ctx, operation, c, e, attempt);
      ambiguous = true;
      last = { c, error: e };
      ctx.log?.('debug', 'dynamodb request failed, will retry', { operation, attempt, storeCode: c.storeCode, status: c.status, error: c.reason });
    } finally {
      clearTimeout(timer);
      budget.signal?.removeEventListener('abort', onOuterAbort);
    }
    const delay = backoff(ctx, attempt);
    const outOfTime = budget.until !== undefined ? ctx.clock() + delay >= budget.until : attempt >= ctx.maxAttempts;
    if (outOfTime) throw exhausted(ctx, operation, last.c, last.error, attempt, ctx.clock() - firstStart);
    await sleep(delay, { ref: budget.ref ?? true, ...(budget.signal ? { signal: budget.signal } : {}) });
  }
}

function backoff(ctx: RequestContext, attempt: number): number {
  const ceiling = Math.min(ctx.backoffMaxMs, ctx.backoffBaseMs * 2 ** (attempt - 1));
  // Half fixed, half jitter: contenders that failed together do not retry in lockstep.
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

function exhausted(
  ctx: RequestContext,
  operation: string,
  c: Extract<Classification, { kind: 'transient' }>,
  cause: unknown,
  attempts: number,
  elapsedMs: number,
): LeaseError {
  const details = { table: ctx.table, key: ctx.key, operation, attempts, elapsedMs: Math.round(elapsedMs), status: c.status, storeCode: c.storeCode };
  if (c.throttled) {
    return new LeaseError(
      'ERR_LEASE_THROTTLED',
      `dynamodb ${operation} on ${ctx.table} was throttled (${c.storeCode}) on all ${attempts} attempts; raise the table's capacity or use PAY_PER_REQUEST`,
      details,
      { cause },
    );
  }
  return new LeaseError(
    'ERR_LEASE_UNAVAILABLE',
    `dynamodb ${operation} on ${ctx.table} failed ${attempts} times in ${Math.round(elapsedMs)} ms (last: ${c.reason}); check the endpoint, region and network`,
    details,
    { cause },
  );
}

async function fatalError(
  ctx: RequestContext,
  operation: string,
  c: Extract<Classification, { kind: 'fatal' }>,
  cause: unknown,
  attempts: number,
): Promise<LeaseError> {
  if (c.storeCode === 'ResourceNotFoundException') return tableMissing(ctx.table, operation, cause);
  if (c.storeCode === 'CredentialsProviderError') {
    // Nothing was sent: no credentials anywhere in the SDK's chain, not a refusal by DynamoDB.
    return new LeaseError(
      'ERR_LEASE_NO_CREDENTIALS',
      `dynamodb ${operation} on ${ctx.table}: no AWS credentials found; the SDK looked for AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN), AWS_PROFILE in ~/.aws/credentials and ~/.aws/config, SSO, AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, the container endpoint and the instance metadata service; set one of them, or pass the lease's credentials`,
      { table: ctx.table, key: ctx.key, operation, attempts, retryable: false },
      { cause },
    );
  }
  if (c.storeCode === 'ValidationException' && operation !== 'DescribeTable') {
    // An item request fails validation when the table's key is not ours; DescribeTable says how.
    const schema = await describeKeySchema(ctx).catch(() => undefined);
    if (schema && !schemaMatches(schema)) return schemaError(ctx.table, schema, cause);
  }
  const denied = c.status === 403 || /AccessDenied|UnrecognizedClient|InvalidSignature|MissingAuthenticationToken|ExpiredToken|UnauthorizedOperation/.test(c.storeCode);
  const hint = denied
    ? `; the credentials need dynamodb:GetItem, PutItem and UpdateItem on table ${ctx.table} (DescribeTable for the check)`
    : '';
  return new LeaseError(
    'ERR_LEASE_UNAVAILABLE',
    `dynamodb ${operation} on ${ctx.table} was refused: ${c.reason}${hint}`,
    { table: ctx.table, key: ctx.key, operation, attempts, status: c.status, storeCode: c.storeCode, retryable: false },
    { cause },
  );
}

export interface KeySchemaEntry {
  name: string;
  keyType: string;
  /** S, N or B; `?` when the attribute definitions do not list it. */
  type: string;
}

export const EXPECTED_KEY_SCHEMA: readonly KeySchemaEntry[] = Object.freeze([{ name: KEY_ATTRIBUTE, keyType: 'HASH', type: 'S' }]);

export async function describeKeySchema(ctx: RequestContext): Promise<{ schema: KeySchemaEntry[]; status: string }> {
  const out = await request(ctx, 'DescribeTable', (abortSignal) => ctx.client.send(new DescribeTableCommand({ TableName: ctx.table }), { abortSignal }));
  if (!out.ok) throw new Error('DescribeTable has no condition');
  const t = out.value.Table;
  const types = new Map((t?.AttributeDefinitions ?? []).map((a) => [a.AttributeName ?? '', a.AttributeType ?? '?']));
  const schema = (t?.KeySchema ?? []).map((k) => ({ name: k.AttributeName ?? '', keyType: k.KeyType ?? '', type: types.get(k.AttributeName ?? '') ?? '?' }));
  return { schema, status: t?.TableStatus ?? 'UNKNOWN' };
}

export function schemaMatches(found: { schema: readonly KeySchemaEntry[] }): boolean {
  const [only, ...rest] = found.schema;
  const want = EXPECTED_KEY_SCHEMA[0]!;
  return rest.length === 0 && only !== undefined && only.name === want.name && only.keyType === want.keyType && only.type === want.type;
}

export function schemaError(table: string, found: { schema: readonly KeySchemaEntry[] }, cause?: unknown): LeaseError {
  const fmt = (s: readonly KeySchemaEntry[]) => s.map((k) => `${k.name} (${k.type}) ${k.keyType}`).join(', ') || '(none)';
  return new LeaseError(
    'ERR_LEASE_TABLE_SCHEMA',
    `lease table ${table} has key schema ${fmt(found.schema)}; walship needs ${fmt(EXPECTED_KEY_SCHEMA)}. Use another table name or recreate it`,
    { table, expected: EXPECTED_KEY_SCHEMA.map((k) => ({ ...k })), found: found.schema.map((k) => ({ ...k })) },
    cause === undefined ? {} : { cause },
  );
}
