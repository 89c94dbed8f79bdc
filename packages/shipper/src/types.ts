import type { ObjectStorage } from '@walship/storage';
import type { GrantPath, Lease } from '@walship/lease';
import type { Keyring } from '@walship/format';
import type { ResolvedOptions } from './options.js';
import type { Logger } from './log.js';
import type { Encoder } from './encoder.js';
import type { RequestRates, ShipperMetrics } from './metrics.js';

// The shipper's public value types and what it is built from: plain data, no behaviour.

export type ShipperState = 'starting' | 'running' | 'closing' | 'closed' | 'failed';

/**
 * What status() reports: `degraded` is `running` while uploads (or checkpoints) fail and are
 * retried; `leaseless` is `running` while the lease ran out and is being re-acquired (writes and
 * flushes fail with the retryable ERR_LEASE_NOT_HELD).
 */
export type ReplicationState = ShipperState | 'degraded' | 'leaseless';

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
    | {
        mode: 'dynamodb';
        state: string;
        epoch: number;
        owner: string;
        expiresInMs: number | null;
        /** How the current (or last) grant was made: `dead-local-holder` after a fast restart, `reacquire` after healing. */
        how: GrantPath | null;
        /** Times the lease was re-acquired under a new epoch after running out. */
        reacquired: number;
      }
    | { mode: 'none'; warning: 'lease: false: one writer per database is assumed, not enforced' };
  requests: RequestRates;
  /** Where segments are encoded, and the failure that stopped the worker (ERR_SHIPPER_WORKER_CRASHED / _STALLED), if one did. */
  encoder: { thread: 'worker' | 'main'; failure: { code: string; message: string } | null };
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
  /** Encodes segments (a worker thread by default; see encoder.ts). */
  encoder: Encoder;
  log: Logger;
  metrics: ShipperMetrics;
  /** Set when the store is behind the lease's high-water mark and allowRollback is on: never continue it. */
  forceGeneration?: string;
  /** How the lease was granted at open (status().lease.how). */
  grantHow?: GrantPath;
}
