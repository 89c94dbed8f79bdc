/**
 * The lease's typed errors and the classification of whatever the SDK or the network threw. Codes
 * are stable: the shipper branches on them (stop shipping on ERR_LEASE_LOST, wait on
 * ERR_LEASE_HELD) and the tests assert them against real servers.
 */

export type LeaseErrorCode =
  | 'ERR_LEASE_HELD'
  | 'ERR_LEASE_LOST'
  | 'ERR_LEASE_TABLE_MISSING'
  | 'ERR_LEASE_TABLE_SCHEMA'
  | 'ERR_LEASE_THROTTLED'
  | 'ERR_LEASE_UNAVAILABLE'
  | 'ERR_LEASE_NO_CREDENTIALS'
  | 'ERR_LEASE_STATE'
  | 'ERR_INVALID_OPTION';

export class LeaseError extends Error {
  readonly code: LeaseErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: LeaseErrorCode, message: string, details: Record<string, unknown> = {}, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: safeCause(options.cause) });
    this.name = 'LeaseError';
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

export interface LeaseHeldDetails {
  table: string;
  key: string;
  /** The holder as its item describes it (owner id, host name and pid of the process that wrote it). */
  owner: string;
  host: string;
  pid: number;
  epoch: number;
  /** The lease length the holder announced. */
  leaseMs: number;
  /** How long this process saw the item unchanged (same rvn and epoch) on its own monotonic clock. */
  observedUnchangedMs: number;
  /** How long acquire() waited in all. */
  waitedMs: number;
}

/** Another writer holds the lease and kept it for as long as acquire() was allowed to wait. */
export class LeaseHeldError extends LeaseError {
  declare readonly details: Readonly<LeaseHeldDetails>;

  constructor(details: LeaseHeldDetails) {
    super(
      'ERR_LEASE_HELD',
      `lease ${details.key} is held by ${details.owner} (host ${details.host}, pid ${details.pid}) at epoch ${details.epoch}; ` +
        `seen unchanged for ${Math.round(details.observedUnchangedMs)} ms of its ${details.leaseMs} ms lease after waiting ${Math.round(details.waitedMs)} ms. ` +
        `If that process is gone for good, wait for the lease to expire or run \`walship lease release --force\``,
      { ...details },
    );
    this.name = 'LeaseHeldError';
  }
}

/**
 * Why a held lease ended without release():
 * - `taken-over`: another owner (or this owner at a newer epoch) wrote the item.
 * - `force-released`: an operator set released=true (`walship lease release --force`).
 * - `item-missing`: the item is gone (someone deleted it; walship never does).
 * - `condition-failed`: the conditional write failed and the item could not be read to say why.
 * - `expired`: the local deadline passed without a successful renewal (DynamoDB unreachable, slow,
 *   or the process was paused).
 * - `expiring`: only as the reason of an upload abort signal: the deadline is less than the margin
 *   away and no renewal moved it. The lease itself is still held until the deadline.
 */
export type LeaseLostReason = 'taken-over' | 'force-released' | 'item-missing' | 'condition-failed' | 'expired' | 'expiring';

export interface LeaseLostDetails {
  table: string;
  key: string;
  /** The epoch this process held. */
  epoch: number;
  /** That grant's last deadline on this process's monotonic clock: nothing after it was covered. */
  deadline: number;
  reason: LeaseLostReason;
  /** What the item said after the failed condition, when it could be read. */
  current?: { owner: string; epoch: number; released: boolean; host: string; pid: number };
}

/** This process no longer holds the lease: stop shipping, cancel uploads, refuse writes. */
export class LeaseLostError extends LeaseError {
  declare readonly details: Readonly<LeaseLostDetails>;

  constructor(details: LeaseLostDetails, options: { cause?: unknown } = {}) {
    super('ERR_LEASE_LOST', lostMessage(details), { ...details }, options);
    this.name = 'LeaseLostError';
  }
}

function lostMessage(d: LeaseLostDetails): string {
  const head = `lease ${d.key} epoch ${d.epoch}`;
  switch (d.reason) {
    case 'taken-over':
      return `${head} was taken over${d.current ? ` by ${d.current.owner} (epoch ${d.current.epoch})` : ''}`;
    case 'force-released':
      return `${head} was released by someone else (an operator's force release)`;
    case 'item-missing':
      return `${head} is lost: its item was deleted from table ${d.table}`;
    case 'condition-failed':
      return `${head} is lost: a conditional write failed and the item could not be read`;
    case 'expired':
      return `${head} expired on the local clock before a renewal succeeded`;
    case 'expiring':
      return `${head} is about to expire with no successful renewal; in-flight work must stop`;
  }
}

export function isLeaseError(e: unknown, code?: LeaseErrorCode): e is LeaseError {
  return e instanceof LeaseError && (code === undefined || e.code === code);
}

export function invalidOption(name: string, problem: string, value?: unknown): LeaseError {
  return new LeaseError('ERR_INVALID_OPTION', `invalid lease option ${name}: ${problem}`, { option: name, value });
}

export function createTableCommand(table: string): string {
  return (
    `aws dynamodb create-table --table-name ${table} --attribute-definitions AttributeName=pk,AttributeType=S ` +
    `--key-schema AttributeName=pk,KeyType=HASH --billing-mode PAY_PER_REQUEST`
  );
}

export function tableMissing(table: string, operation: string, cause?: unknown): LeaseError {
  return new LeaseError(
    'ERR_LEASE_TABLE_MISSING',
    `lease table ${table} does not exist (${operation}). walship never creates it implicitly; create it once with ` +
      `createLeaseTable() or: ${createTableCommand(table)}`,
    { table, operation, command: createTableCommand(table) },
    { cause },
  );
}

/** What one failed request means. */
export type Classification =
  | { kind: 'condition-failed' }
  | { kind: 'transient'; throttled: boolean; status: number; storeCode: string; reason: string }
  | { kind: 'fatal'; status: number; storeCode: string; reason: string };

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
]);

const THROTTLE_CODES = new Set(['ProvisionedThroughputExceededException', 'ThrottlingException', 'RequestLimitExceeded', 'LimitExceededException']);

/** Transient on DynamoDB's side whatever the status says. */
const RETRYABLE_CODES = new Set(['InternalServerError', 'InternalFailure', 'ServiceUnavailable', 'TransactionConflictException', 'ReplicatedWriteConflictException']);

interface ErrorShape {
  name?: unknown;
  code?: unknown;
  message?: unknown;
  cause?: unknown;
  $metadata?: { httpStatusCode?: number };
}

function shape(e: unknown): ErrorShape {
  return typeof e === 'object' && e !== null ? (e as ErrorShape) : {};
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

function networkCode(e: unknown): string {
  let cur: unknown = e;
  for (let depth = 0; depth < 4 && cur; depth++) {
    const code = str(shape(cur).code);
    if (NETWORK_CODES.has(code)) return code;
    cur = shape(cur).cause;
  }
  return '';
}

function describeError(e: unknown): string {
  const s = shape(e);
  const parts = [str(s.name) || 'Error', str(s.code)].filter((p, i, a) => p && a.indexOf(p) === i);
  return `${parts.join(' ')}: ${str(s.message) || String(e)}`.slice(0, 500);
}

/** `timedOut`: our own per-attempt timer aborted the request (the SDK then throws a plain AbortError). */
export function classify(e: unknown, timedOut: boolean): Classification {
  const s = shape(e);
  const status = s.$metadata?.httpStatusCode ?? 0;
  const name = str(s.name);
  const reason = describeError(e);
  if (timedOut) return { kind: 'transient', throttled: false, status, storeCode: 'Timeout', reason };
  if (name === 'ConditionalCheckFailedException') return { kind: 'condition-failed' };
  const net = networkCode(e);
  if (net !== '' && status === 0) return { kind: 'transient', throttled: false, status, storeCode: net, reason };
  if (name === 'TimeoutError' && status === 0) return { kind: 'transient', throttled: false, status, storeCode: 'Timeout', reason };
  if (THROTTLE_CODES.has(name)) return { kind: 'transient', throttled: true, status, storeCode: name, reason };
  if (RETRYABLE_CODES.has(name) || status === 429 || status >= 500) {
    return { kind: 'transient', throttled: status === 429, status, storeCode: name || String(status), reason };
  }
  if (status === 0 && name.includes('Deserialization')) return { kind: 'transient', throttled: false, status, storeCode: name, reason };
  return { kind: 'fatal', status, storeCode: name, reason };
}
