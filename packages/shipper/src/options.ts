import type { MetricsEndpointOptions } from './metrics-server.js';
import type { OpenOptions } from '@walship/vfs';
import { WalshipError } from '@walship/vfs';
import type { ObjectStorage, RequestEvent, RetryOptions, S3StorageOptions } from '@walship/storage';
import type { Compression } from '@walship/format';
import type { CompactionOptions } from './compaction.js';
import type { DynamoLeaseOptions } from '@walship/lease';

/** The DynamoDB writer lease (see @walship/lease); `key` defaults to `s3://bucket/prefix`. */
export type LeaseOptions = Omit<DynamoLeaseOptions, 'key' | 'logger'> & { key?: string };
import type { LogEntry, LogLevel } from './log.js';

export type { Compression };
export type WalLimitAction = 'fail-writes';

export interface EncryptionKey {
  /** 1..32 ASCII characters, stored in every object header. */
  id: string;
  /** 32 bytes, raw or base64. */
  key: Uint8Array | string;
}

export interface ReplicatedOptions {
  /**
   * One writer per database: a DynamoDB lease whose growing epoch fences every object this writer
   * ships. `false` runs without one (single-node setups; a warning in logs and status).
   */
  lease: LeaseOptions | false;
  s3: {
    bucket: string;
    /** Database prefix inside the bucket (no leading or trailing slash), e.g. `prod/orders`. */
    prefix: string;
    /** A configured client; without one, the standard AWS credential chain and environment are used. */
    client?: S3StorageOptions['client'];
    endpoint?: string;
    region?: string;
    forcePathStyle?: boolean;
    credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
    retry?: RetryOptions;
    /**
     * Send `If-None-Match: *` with every object PUT (create-only keys). Default: on for AWS (no
     * endpoint), off with a custom endpoint (Swift answers 501; s3rver ignores it).
     */
    conditionalWrites?: boolean;
  };
  /** Any other store behind the storage seam (tests, other clouds). Replaces `s3` for I/O; `s3.prefix` still names the database. */
  storage?: ObjectStorage;
  /** How long the first transaction of a batch waits for others before the batch ships (ms, default 1000; 0 ships at once). */
  batchWindowMs?: number;
  /** A batch closes once its page bytes reach this (default 16 MiB); a larger transaction ships alone. */
  maxSegmentBytes?: number;
  /** Default zstd (see bench/results/compression-*.txt). */
  compression?: Compression;
  /** AES-256-GCM. The first key (or `primary`) encrypts; every key listed can decrypt. */
  encryption?: { keys: EncryptionKey[]; primary?: string };
  /** A full snapshot of the last checkpointed state at most this often (ms, default 1 hour; 0 = only at generation start). */
  snapshotIntervalMs?: number;
  /** Keep every point of this window restorable; delete older objects (ms, default 7 days; 0 = keep everything). */
  retentionMs?: number;
  /** Merging of level-0 segments into level-1 objects (defaults in packages/shipper/README.md); false turns it off. */
  compaction?: CompactionOptions | false;
  /** How often retention and compaction run (ms, default 10 minutes). */
  maintenanceIntervalMs?: number;
  /** Checkpoint once this many WAL bytes are durable (default 4 MiB). */
  checkpointBytes?: number;
  /** WAL bytes not yet durable in S3 allowed on local disk before writes fail with ERR_WAL_LIMIT (default 1 GiB). */
  walLimitBytes?: number;
  /**
   * Page bytes of pending transactions copied into memory at commit; the rest are read back from the
   * WAL when encoded (default 0: the WAL is the spool, the commit path copies no page).
   */
  maxPendingMemoryBytes?: number;
  /** Backoff between failed uploads of one segment (ms; defaults 100 .. 30000). */
  uploadBackoff?: { baseMs?: number; maxMs?: number };
  /** Structured log sink; default: JSON lines on stderr at `logLevel` (default 'warn'). */
  logger?: (entry: LogEntry) => void;
  logLevel?: LogLevel;
  /** Called for every storage request (after the shipper's own accounting). */
  onRequest?: (event: RequestEvent) => void;
  /**
   * A local database behind the replica (e.g. restored to an earlier txid) fails with
   * ERR_DURABLE_AHEAD unless this is true; then it starts a new generation from the local state
   * (its parent names the replica's generation and the local txid). Default false.
   */
  allowRollback?: boolean;
  /**
   * Serve `metrics()` over HTTP for Prometheus to scrape: `{ port }` (0 picks a free port),
   * optional `host` (default '127.0.0.1') and `path` (default '/metrics'). The URL is `metricsUrl`.
   */
  metrics?: MetricsEndpointOptions;
  /**
   * Where segments are encoded (object checksums, zstd, AES-GCM) and read back from the WAL: a worker
   * thread by default, so the application's thread only keeps the books. A worker that dies or sends
   * nothing for `stallMs` (default 30000) while a segment waits on it stops replication with
   * ERR_SHIPPER_WORKER_CRASHED / ERR_SHIPPER_WORKER_STALLED (writes refused, nothing durable lost);
   * one that does not start fails the open with ERR_SHIPPER_WORKER_START_FAILED. `workerUrl`: the
   * worker's module, when a bundler moved `encode-worker.js` away from the shipper's files.
   */
  encoder?: { thread?: 'worker' | 'main'; stallMs?: number; workerUrl?: URL };
  /** Passed to the VFS (page size of a new database, synchronous, ...). onCommit and durableTxid are the shipper's. */
  database?: Omit<OpenOptions, 'onCommit' | 'durableTxid' | 'baseTxid' | 'capture' | 'markerOnClose'>;
}

export interface ResolvedOptions {
  bucket: string;
  prefix: string;
  batchWindowMs: number;
  maxSegmentBytes: number;
  compression: Compression;
  snapshotIntervalMs: number;
  retentionMs: number;
  maintenanceIntervalMs: number;
  compaction: CompactionOptions | false;
  checkpointBytes: number;
  walLimitBytes: number;
  maxPendingMemoryBytes: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  allowRollback: boolean;
  metrics: MetricsEndpointOptions | null;
  encoder: { thread: 'worker' | 'main'; stallMs: number; workerUrl: URL | undefined };
}

const MiB = 1024 * 1024;

/** A primitive as itself, an object only as its keys: `lease` and `s3` objects carry credentials. */
function shown(value: unknown): string {
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === 'object' && value !== null) return `an object with keys ${Object.keys(value).join(', ') || '(none)'}`;
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

function bad(option: string, why: string, value: unknown): never {
  const primitive = value === null || (typeof value !== 'object' && typeof value !== 'function');
  throw new WalshipError('ERR_INVALID_OPTION', `option ${option} ${why} (got ${shown(value)})`, { details: { option, ...(primitive ? { value } : {}) } });
}

function nonNegative(name: string, value: number | undefined, fallback: number, min = 0): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) bad(name, `must be a number >= ${min}`, value);
  return value;
}

/** Checks every option before anything is opened or written. */
export function resolveOptions(o: ReplicatedOptions): ResolvedOptions {
  if (typeof o !== 'object' || o === null) bad('options', 'must be an object', o);
  if (typeof o.s3 !== 'object' || o.s3 === null) bad('s3', 'must be an object with bucket and prefix', o.s3);
  const { bucket, prefix } = o.s3;
  if (o.storage === undefined && (typeof bucket !== 'string' || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket))) {
    bad('s3.bucket', 'must be an S3 bucket name (3-63 characters: a-z, 0-9, dot, hyphen)', bucket);
  }
  if (typeof prefix !== 'string' || prefix.startsWith('/') || prefix.endsWith('/') || prefix.includes('//')) {
    bad('s3.prefix', 'must be a key prefix without leading, trailing or doubled slashes', prefix);
  }
  if (o.lease !== false && (typeof o.lease !== 'object' || o.lease === null || typeof o.lease.table !== 'string' || o.lease.table === '')) {
    bad('lease', "must be { table, ... } (a DynamoDB lease table; create it with `walship lease create-table`) or false to run without a writer lease", o.lease === undefined ? 'undefined' : o.lease);
  }
  const compression = o.compression ?? 'zstd';
  if (!['zstd', 'none'].includes(compression)) bad('compression', "must be 'zstd' or 'none'", compression);
  const maxSegmentBytes = nonNegative('maxSegmentBytes', o.maxSegmentBytes, 16 * MiB, 65536);
  const walLimitBytes = nonNegative('walLimitBytes', o.walLimitBytes, 1024 * MiB, MiB);
  const checkpointBytes = nonNegative('checkpointBytes', o.checkpointBytes, 4 * MiB);
  if (checkpointBytes >= walLimitBytes) bad('checkpointBytes', `must be below walLimitBytes (${walLimitBytes})`, checkpointBytes);
  return {
    bucket: bucket ?? '',
    prefix,
    batchWindowMs: nonNegative('batchWindowMs', o.batchWindowMs, 1000),
    maxSegmentBytes,
    compression,
    snapshotIntervalMs: nonNegative('snapshotIntervalMs', o.snapshotIntervalMs, 3600_000),
    retentionMs: nonNegative('retentionMs', o.retentionMs, 7 * 86400_000),
    maintenanceIntervalMs: nonNegative('maintenanceIntervalMs', o.maintenanceIntervalMs, 600_000, 1000),
    compaction: o.compaction === false ? false : (o.compaction ?? {}),
    checkpointBytes,
    walLimitBytes,
    maxPendingMemoryBytes: nonNegative('maxPendingMemoryBytes', o.maxPendingMemoryBytes, 0),
    backoffBaseMs: nonNegative('uploadBackoff.baseMs', o.uploadBackoff?.baseMs, 100, 1),
    backoffMaxMs: nonNegative('uploadBackoff.maxMs', o.uploadBackoff?.maxMs, 30_000, 1),
    allowRollback: o.allowRollback === true,
    metrics: metricsEndpoint(o.metrics),
    encoder: resolveEncoder(o.encoder),
  };
}

function metricsEndpoint(m: MetricsEndpointOptions | undefined): MetricsEndpointOptions | null {
  if (m === undefined) return null;
  if (typeof m !== 'object' || m === null) bad('metrics', 'must be { port, host?, path? }', m);
  if (!Number.isInteger(m.port) || m.port < 0 || m.port > 65535) bad('metrics.port', 'must be an integer port 0..65535 (0: any free port)', m.port);
  if (m.host !== undefined && (typeof m.host !== 'string' || m.host === '')) bad('metrics.host', 'must be a host name or address', m.host);
  if (m.path !== undefined && (typeof m.path !== 'string' || !m.path.startsWith('/'))) bad('metrics.path', "must be a path starting with '/'", m.path);
  return { port: m.port, ...(m.host !== undefined ? { host: m.host } : {}), ...(m.path !== undefined ? { path: m.path } : {}) };
}

function resolveEncoder(e: ReplicatedOptions['encoder']): ResolvedOptions['encoder'] {
  if (e !== undefined && (typeof e !== 'object' || e === null)) bad('encoder', "must be an object { thread?: 'worker' | 'main', stallMs?, workerUrl? }", e);
  const thread = e?.thread ?? 'worker';
  if (thread !== 'worker' && thread !== 'main') bad('encoder.thread', "must be 'worker' or 'main'", thread);
  if (e?.workerUrl !== undefined && !(e.workerUrl instanceof URL)) bad('encoder.workerUrl', 'must be a URL (new URL(...))', e.workerUrl);
  return { thread, stallMs: nonNegative('encoder.stallMs', e?.stallMs, 30_000, 1), workerUrl: e?.workerUrl };
}
