import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import process from 'node:process';
import type { DynamoDBClient, DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import { invalidOption } from './errors.js';
import { selfIdentity } from './local.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** One structured log line; the keys (table, key, epoch, owner) are fields, not prose. */
export interface LeaseLogEntry {
  time: string;
  level: LogLevel;
  component: 'lease';
  msg: string;
  [field: string]: unknown;
}

/** How to reach DynamoDB: either a client, or the parts to build one. */
export interface DynamoConnection {
  /** A client to use as is (its own retry settings apply under ours). Excludes endpoint/region/credentials. */
  client?: DynamoDBClient;
  endpoint?: string;
  region?: string;
  credentials?: DynamoDBClientConfig['credentials'];
  /** Bound on one DynamoDB request, connect included (default 2000 ms). */
  requestTimeoutMs?: number;
}

export interface DynamoLeaseOptions extends DynamoConnection {
  table: string;
  /** The database id, e.g. `s3://bucket/prefix`: the item's partition key. */
  key: string;
  /** Unique per process (default `${hostname}:${pid}:${random}`). Two live processes must never share one. */
  owner?: string;
  /** How long a grant lasts after the request that made it started (default 10000 ms). */
  leaseMs?: number;
  /** Heartbeat period of startRenewing() (default leaseMs / 3). */
  renewEveryMs?: number;
  /**
   * Safety margin (default leaseMs / 10): a takeover waits leaseMs + marginMs after it last saw the
   * item change; the upload abort signal fires marginMs before the deadline.
   */
  marginMs?: number;
  /** Default wait of acquire() for a held lease (default 3 * leaseMs). */
  waitMs?: number;
  /** Attempts per DynamoDB request on transient errors, outside renew() (default 4). */
  maxAttempts?: number;
  /** Backoff between attempts, doubling from baseMs up to maxMs, with jitter (defaults 50 and 1000 ms). */
  backoff?: { baseMs?: number; maxMs?: number };
  /** Monotonic milliseconds (default performance.now). Never a wall clock. */
  clock?: () => number;
  /** Structured log sink; default: warnings and errors as JSON lines on stderr. */
  logger?: (entry: LeaseLogEntry) => void;
  /**
   * Enables the at-once takeover of a holder recorded on this host, in this pid space, whose
   * process is gone (`grant.how === 'dead-local-holder'`); without it such a holder is waited out
   * like any silent one. The shipper passes @walship/vfs's processAlive.
   */
  processAlive?: (pid: number) => boolean;
}

export interface ResolvedLeaseOptions {
  table: string;
  key: string;
  owner: string;
  host: string;
  pid: number;
  /** See local.ts: this process's pid space and start time, recorded by every grant. */
  space: string;
  started: string;
  processAlive: ((pid: number) => boolean) | undefined;
  leaseMs: number;
  renewEveryMs: number;
  marginMs: number;
  waitMs: number;
  requestTimeoutMs: number;
  maxAttempts: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  clock: () => number;
  log: (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;
}

const TABLE_NAME = /^[a-zA-Z0-9_.-]{3,255}$/;
const MAX_KEY_BYTES = 2048;

function positive(name: string, v: unknown, opts: { integer?: boolean; allowZero?: boolean; allowInfinity?: boolean } = {}): number {
  if (typeof v !== 'number' || Number.isNaN(v)) throw invalidOption(name, 'must be a number', v);
  if (v === Infinity && opts.allowInfinity) return v;
  if (!Number.isFinite(v)) throw invalidOption(name, 'must be finite', v);
  if (v < 0 || (v === 0 && !opts.allowZero)) throw invalidOption(name, opts.allowZero ? 'must be >= 0' : 'must be > 0', v);
  if (opts.integer && !Number.isInteger(v)) throw invalidOption(name, 'must be an integer', v);
  return v;
}

export function validateTable(table: unknown): string {
  if (typeof table !== 'string' || !TABLE_NAME.test(table)) {
    throw invalidOption('table', 'must be a DynamoDB table name (3-255 characters of a-z A-Z 0-9 _ . -)', table);
  }
  return table;
}

export function validateKey(key: unknown): string {
  if (typeof key !== 'string' || key.length === 0) throw invalidOption('key', 'must be a non-empty string (the database id)', key);
  if (new TextEncoder().encode(key).length > MAX_KEY_BYTES) throw invalidOption('key', `must be at most ${MAX_KEY_BYTES} bytes (DynamoDB partition key limit)`, key);
  return key;
}

export function validateConnection(o: DynamoConnection): void {
  if (o.client !== undefined) {
    if (typeof o.client !== 'object' || o.client === null || typeof (o.client as { send?: unknown }).send !== 'function') {
      throw invalidOption('client', 'must be a DynamoDBClient', typeof o.client);
    }
    for (const k of ['endpoint', 'region', 'credentials'] as const) {
      if (o[k] !== undefined) throw invalidOption(k, 'cannot be combined with client (configure the client instead)');
    }
  }
  if (o.endpoint !== undefined) {
    // Not echoed: an endpoint URL may carry user:password@.
    if (typeof o.endpoint !== 'string' || !URL.canParse(o.endpoint)) throw invalidOption('endpoint', 'must be a URL', typeof o.endpoint);
  }
  if (o.region !== undefined && (typeof o.region !== 'string' || o.region === '')) throw invalidOption('region', 'must be a non-empty string', o.region);
  if (o.requestTimeoutMs !== undefined) positive('requestTimeoutMs', o.requestTimeoutMs);
}

export function defaultOwner(): string {
  return `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
}

function makeLog(sink: DynamoLeaseOptions['logger'], base: Record<string, unknown>): ResolvedLeaseOptions['log'] {
  const write =
    sink ??
    ((entry: LeaseLogEntry) => {
      if (entry.level === 'warn' || entry.level === 'error') process.stderr.write(`${JSON.stringify(entry)}\n`);
    });
  return (level, msg, fields = {}) => {
    try {
      write({ time: new Date().toISOString(), level, component: 'lease', ...base, ...fields, msg });
    } catch {
      // A broken log sink must not change lease decisions.
    }
  };
}

/** Validates everything up front, so a bad option fails at creation, never half-way through a takeover. */
export function resolveLeaseOptions(o: DynamoLeaseOptions): ResolvedLeaseOptions {
  if (typeof o !== 'object' || o === null) throw invalidOption('options', 'must be an object', o);
  const table = validateTable(o.table);
  const key = validateKey(o.key);
  validateConnection(o);
  if (o.owner !== undefined && (typeof o.owner !== 'string' || o.owner.length === 0 || o.owner.length > 1024)) {
    throw invalidOption('owner', 'must be a non-empty string of at most 1024 characters', o.owner);
  }
  const leaseMs = positive('leaseMs', o.leaseMs ?? 10_000, { integer: true });
  const renewEveryMs = positive('renewEveryMs', o.renewEveryMs ?? Math.max(1, Math.floor(leaseMs / 3)));
  if (renewEveryMs >= leaseMs) throw invalidOption('renewEveryMs', `must be below leaseMs (${leaseMs})`, renewEveryMs);
  const requestTimeoutMs = positive('requestTimeoutMs', o.requestTimeoutMs ?? Math.min(2000, Math.floor(leaseMs / 2)));
  if (requestTimeoutMs >= leaseMs) throw invalidOption('requestTimeoutMs', `must be below leaseMs (${leaseMs}): a renewal must fit in a lease`, requestTimeoutMs);
  const marginMs = positive('marginMs', o.marginMs ?? Math.max(1, Math.floor(leaseMs / 10)), { allowZero: true });
  if (marginMs >= leaseMs) throw invalidOption('marginMs', `must be below leaseMs (${leaseMs})`, marginMs);
  const waitMs = positive('waitMs', o.waitMs ?? 3 * leaseMs, { allowZero: true, allowInfinity: true });
  const maxAttempts = positive('maxAttempts', o.maxAttempts ?? 4, { integer: true });
  if (o.backoff !== undefined && (typeof o.backoff !== 'object' || o.backoff === null)) throw invalidOption('backoff', 'must be an object', o.backoff);
  const backoffBaseMs = positive('backoff.baseMs', o.backoff?.baseMs ?? 50, { allowZero: true });
  const backoffMaxMs = positive('backoff.maxMs', o.backoff?.maxMs ?? 1000, { allowZero: true });
  if (backoffMaxMs < backoffBaseMs) throw invalidOption('backoff.maxMs', 'must be >= backoff.baseMs', backoffMaxMs);
  if (o.clock !== undefined && typeof o.clock !== 'function') throw invalidOption('clock', 'must be a function returning monotonic milliseconds', o.clock);
  const clock = o.clock ?? (() => performance.now());
  const probe = clock();
  if (typeof probe !== 'number' || !Number.isFinite(probe)) throw invalidOption('clock', 'must return a finite number of milliseconds', probe);
  if (o.logger !== undefined && typeof o.logger !== 'function') throw invalidOption('logger', 'must be a function', o.logger);
  if (o.processAlive !== undefined && typeof o.processAlive !== 'function') throw invalidOption('processAlive', 'must be a function (pid) => boolean', typeof o.processAlive);
  const owner = o.owner ?? defaultOwner();
  const self = selfIdentity();
  return {
    table,
    key,
    owner,
    host: self.host,
    pid: self.pid,
    space: self.space,
    started: self.started,
    processAlive: o.processAlive,
    leaseMs,
    renewEveryMs,
    marginMs,
    waitMs,
    requestTimeoutMs,
    maxAttempts,
    backoffBaseMs,
    backoffMaxMs,
    clock,
    log: makeLog(o.logger, { table, key, owner }),
  };
}

export function validateWaitMs(v: unknown): number {
  return positive('waitMs', v, { allowZero: true, allowInfinity: true });
}

export function validateMargin(name: string, v: unknown): number {
  return positive(name, v, { allowZero: true });
}
