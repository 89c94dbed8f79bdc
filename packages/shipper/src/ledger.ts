import type { CommittedTransaction } from '@walship/vfs';
import type { PageHashes } from '@walship/format';
import { PendingQueue, pendingFrom, type PendingQueueOptions, type PendingTxn } from './pending.js';

/**
 * The commit-path ledger: synchronous bookkeeping of what is committed, what waits for the store
 * and what is durable (txids, checksums, sizes). No storage, no timers: the coordinator records
 * each commit here and settles each upload here.
 */
export class CommitLedger {
  /** The rolling checksum of the database as committed (set by start-up, which hashes the file). */
  hashes: PageHashes | null = null;
  /** Transactions committed and not yet durable, in txid order. */
  readonly queue: PendingQueue;
  committedTxid = 0;
  durableTxid = 0;
  /** The checksum of the state after durableTxid: the pre-checksum of the next segment. */
  durableChecksum = 0n;
  lastCommitAt = Date.now();
  /** WAL bytes committed since the last checkpoint. */
  walSinceCheckpoint = 0;
  /** Checkpoint marker txids not yet durable that start a new segment (a snapshot may be taken there). */
  readonly cutBefore = new Set<number>();

  private inCheckpoint = false;

  /** `overflow`: where the queue's list of waiting transactions goes past its first chunks (S3 down for long). */
  constructor(
    private readonly o: { maxPendingMemoryBytes: number; maxSegmentBytes: number },
    overflow: PendingQueueOptions = {},
  ) {
    this.queue = new PendingQueue(o.maxPendingMemoryBytes, overflow);
  }

  /** One committed transaction, from inside SQLite's commit. */
  record(txn: CommittedTransaction): PendingTxn {
    const hashes = this.hashes!;
    for (const p of txn.pages) hashes.set(p.pgno, p.data);
    hashes.truncate(txn.commitSize);
    const pending = pendingFrom(txn, hashes.value);
    this.queue.push(pending, { keep: this.inCheckpoint });
    this.committedTxid = txn.txid;
    this.lastCommitAt = txn.timestamp;
    this.walSinceCheckpoint += pending.walBytes;
    return pending;
  }

  /**
   * Runs a checkpoint. It commits its marker transaction into the WAL it then restarts, so the
   * marker's frames are overwritten before it ships: a transaction recorded meanwhile keeps a copy
   * of its pages in memory instead of being read back from the WAL.
   */
  duringCheckpoint<T>(checkpoint: () => T): T {
    this.inCheckpoint = true;
    try {
      return checkpoint();
    } finally {
      this.inCheckpoint = false;
    }
  }

  /** The next segment's transactions: up to maxSegmentBytes, and never across a cut. */
  takeBatch(): PendingTxn[] {
    const batch: PendingTxn[] = [];
    let bytes = 0;
    for (let i = 0; i < this.queue.length; i++) {
      const t = this.queue.at(i)!;
      const size = t.pageCount * t.pageSize;
      if (batch.length > 0 && bytes + size > this.o.maxSegmentBytes) break;
      // A checkpoint's marker starts a segment: a snapshot at that txid then never falls inside one.
      if (batch.length > 0 && this.cutBefore.has(t.txid)) break;
      batch.push(t);
      bytes += size;
    }
    return batch;
  }

  /**
   * Everything through `txid` is durable, `checksum` the state after it. Returns how many waiting
   * transactions that settled; `lag` sees each one's commit time.
   */
  settle(txid: number, checksum: bigint, lag: (committedAt: number) => void): number {
    const done = this.queue.dropThrough(txid, lag);
    this.durableTxid = Math.max(this.durableTxid, txid);
    this.durableChecksum = checksum;
    for (const k of this.cutBefore) if (k <= this.durableTxid) this.cutBefore.delete(k);
    return done;
  }
}
