import type { ObjectStorage } from '@walship/storage';
import type { Lease } from '@walship/lease';
import type { Keyring } from '@walship/format';
import type { ResolvedOptions } from './options.js';
import type { Logger } from './log.js';
import type { RequestRates, ShipperMetrics } from './metrics.js';

// The shipper's public value types and what it is built from: plain data, no behaviour.

export type ShipperState = 'starting' | 'running' | 'closing' | 'closed' | 'failed';

/** What status() reports: `degraded` is `running` while uploads (or checkpoints) fail and are retried. */
export type ReplicationState = ShipperState | 'degraded';

export interface FlushOptions {
  /** Reject with ERR_FLUSH_TIMEOUT after this many ms (default: no deadline). */
  timeoutMs?: number;
  /** Reject with ERR_ABORTED when it aborts. */
  signal?: AbortSignal;
}

export interface ReplicationStatus {
  /** `s3://bucket/prefix` of the replica. */
  replica: string;
  path: string;
  state: ReplicationState;
  committedTxid: number;
  durableTxid: number;
  /** Age of the oldest transaction not yet durable (0 when none). */
  lagMs: number;
  pendingTransactions: number;
  pendingWalBytes: number;
  walBytes: number;
  generation: string | null;
  epoch: number;
  /** Writes refused because too much WAL is waiting for the object store. */
  walLimitReached: boolean;
  lastSnapshot: { txid: number; at: string } | null;
  lastUpload: { key: string; txid: number; at: string } | null;
  lastError: { code: string; message: string; at: string } | null;
  lease:
    | { mode: 'dynamodb'; state: string; epoch: number; owner: string; expiresInMs: number | null }
    | { mode: 'none'; warning: 'lease: false: one writer per database is assumed, not enforced' };
  requests: RequestRates;
}

export interface ShipperContext {
  path: string;
  /** null: lease: false. */
  lease: Lease | null;
  /** Per-request timeout of the store: uploads start only if one fits before the lease deadline. */
  requestTimeoutMs: number;
  options: ResolvedOptions;
  storage: ObjectStorage;
  keyring: Keyring | undefined;
  log: Logger;
  metrics: ShipperMetrics;
  /** Set when the store is behind the lease's high-water mark and allowRollback is on: never continue it. */
  forceGeneration?: string;
}
