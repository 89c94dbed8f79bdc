import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { hostname } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { open, type FileHandle } from 'node:fs/promises';
import type { CommittedTransaction, CheckpointOptions, CheckpointResult, DatabaseStatus } from '@walship/vfs';
import { WalshipDatabase, WalshipError } from '@walship/vfs';
import type { ObjectStorage } from '@walship/storage';
import { LeaseLostError, type Lease } from '@walship/lease';
import { PageHashes, SegmentEncoder, formatKeys, lockPageNumber, sealMarker, type Keyring, type ObjectHeaderInit } from '@walship/format';
import type { Lineage, DatabaseManifest, EpochMarker, GenerationMarker } from './lineage.js';
import type { ResolvedOptions } from './options.js';
import type { Logger } from './log.js';
import type { ShipperMetrics, RequestRates } from './metrics.js';
import { hashPages } from './local.js';
import { readSpool, removeSpool, writeSpool } from './spool.js';
import { PendingQueue, pendingFrom, readFromWal, type PendingTxn } from './pending.js';
import { Maintenance } from './maintenance.js';
import { divergedError } from './continuity.js';

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

interface FlushWaiter {
  txid: number;
  resolve: (v: { txid: number }) => void;
  reject: (e: Error) => void;
}

interface NewGeneration {
  reason: string;
  parent: { generation: string; txid: number } | null;
  /** A new database: the generation's snapshot is this image of txid 1, with no checkpoint first. */
  image?: FirstImage;
}

interface FirstImage {
  commitSize: number;
  postChecksum: bigint;
  timestamp: number;
  /** Every page of the database at txid 1, in page order. */
  pages: { pgno: number; data: Uint8Array }[];
}

/**
 * A new database's txid 1 (walship's own table, created at open) writes every page of the
 * database it leaves, so its pages are the whole database at txid 1: the generation's snapshot is
 * made of them at once, with no checkpoint, and every txid from 1 is restorable (a snapshot of the
 * file taken at the first checkpoint would fold every transaction before it). The file is not
 * read: SQLite wrote its header page outside the WAL when it switched to WAL.
 */
function firstImage(first: CommittedTransaction | undefined, markerTxid: number, lockPage: number, postChecksum: bigint | undefined): FirstImage | undefined {
  if (!first || first.txid !== 1 || markerTxid !== 0 || postChecksum === undefined) return undefined;
  const pgnos = new Set(first.pages.map((p) => p.pgno));
  for (let pgno = 1; pgno <= first.commitSize; pgno++) if (pgno !== lockPage && !pgnos.has(pgno)) return undefined;
  if (pgnos.size !== first.pages.length || first.pages.some((p) => p.pgno > first.commitSize)) return undefined;
  const pages = first.pages.map((p) => ({ pgno: p.pgno, data: p.data.slice() })).sort((a, b) => a.pgno - b.pgno);
  return { commitSize: first.commitSize, postChecksum, timestamp: first.timestamp, pages };
}

const encoder = new TextEncoder();

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

/**
 * Turns the VFS's committed transactions into ordered objects: a snapshot starts each generation,
 * segments follow in txid order, one upload at a time, and a transaction is acknowledged to the VFS
 * (so its frames may be checkpointed) only once it and everything before it is durable.
 */
export class Shipper {
  db!: WalshipDatabase;
  /** The database's own methods: the replicated handle hides them from the application. */
  raw!: {
    acknowledge(txid: number): void;
    checkpoint(options?: CheckpointOptions): CheckpointResult;
    setWriteBarrier(error: Error | null): void;
    status(): DatabaseStatus;
  };
  state: ShipperState = 'starting';
  hashes: PageHashes | null = null;
  readonly queue: PendingQueue;
  durableTxid = 0;
  committedTxid = 0;
  generation: string | null = null;
  epoch = 0;
  private durableChecksum = 0n;
  private opening: CommittedTransaction[] | null = [];
  private waiters: FlushWaiter[] = [];
  private pump: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private needGeneration: NewGeneration | null = null;
  private snapshotting = false;
  private walSinceCheckpoint = 0;
  private draining = false;
  private drainRounds = 0;
  /** Max txid in the overflow spool file, while it holds transactions not yet durable. */
  private spoolMax: number | null = null;
  /** Checkpoint marker txids not yet durable that start a new segment (a snapshot may be taken there). */
  private readonly cutBefore = new Set<number>();
  /** `snapshotBase`: its marker starts a segment, so a periodic snapshot may be taken at it. */
  private lastCheckpoint: { txid: number; checksum: bigint; commitSize: number; timestamp: number; snapshotBase: boolean } | null = null;
  private lastCommitAt = Date.now();
  private lastSnapshotTxid = 0;
  private lastSnapshotAt = 0;
  private walLimitReached = false;
  private stopped = false;
  private abort = new AbortController();
  private fatal: Error | null = null;
  private lastError: ReplicationStatus['lastError'] = null;
  private lastUpload: ReplicationStatus['lastUpload'] = null;
  private lastSnapshotInfo: ReplicationStatus['lastSnapshot'] = null;
  private databaseId = '';
  private manifestWritten = false;
  private seq = 0;
  private epochMarked = false;
  private epochs = new Map<number, number>();
  private maintenance: Maintenance | null = null;
  private periodic: Promise<void> | null = null;
  private readonly keys;

  constructor(private readonly ctx: ShipperContext) {
    this.queue = new PendingQueue(ctx.options.maxPendingMemoryBytes);
    this.keys = formatKeys(ctx.options.prefix);
  }

  get location(): string {
    return this.ctx.storage.location;
  }

  /** The VFS sink: runs synchronously inside SQLite's commit, so it only records and schedules. */
  onCommit = (txn: CommittedTransaction): void => {
    if (this.opening) {
      this.opening.push(txn);
      return;
    }
    this.track(txn);
  };

  private track(txn: CommittedTransaction): void {
    const hashes = this.hashes!;
    for (const p of txn.pages) hashes.set(p.pgno, p.data);
    hashes.truncate(txn.commitSize);
    const pending = pendingFrom(txn, hashes.value);
    this.queue.push(pending);
    this.committedTxid = txn.txid;
    this.lastCommitAt = txn.timestamp;
    this.walSinceCheckpoint += pending.walBytes;
    this.ctx.metrics.committed.inc();
    if (this.queue.pendingWalBytes > this.ctx.options.walLimitBytes && !this.walLimitReached) {
      this.walLimitReached = true;
      this.raw.setWriteBarrier(
        new WalshipError(
          'ERR_WAL_LIMIT',
          `${this.ctx.path}: ${this.queue.pendingWalBytes} bytes of WAL are waiting for ${this.location} (walLimitBytes ${this.ctx.options.walLimitBytes}); writes are refused until the object store catches up. Last error: ${this.lastError?.message ?? 'none'}`,
          { details: { path: this.ctx.path, pendingWalBytes: this.queue.pendingWalBytes, walLimitBytes: this.ctx.options.walLimitBytes, durableTxid: this.durableTxid } },
        ),
      );
      this.ctx.log.error('WAL limit reached: refusing writes until the object store catches up', { txid: txn.txid, pendingWalBytes: this.queue.pendingWalBytes });
    }
    this.schedule(false);
  }

  /**
   * Start-up after the lineage is read and the database is open: hash the local database, prove
   * (or disprove) that it continues the replica, and queue what must ship.
   */
  async start(db: WalshipDatabase, lineage: Lineage, baseTxid: number | undefined, leaseEpoch?: number): Promise<void> {
    this.db = db;
    const proto = WalshipDatabase.prototype;
    this.raw = {
      acknowledge: (txid) => proto.acknowledge.call(db, txid),
      checkpoint: (options) => proto.checkpoint.call(db, options),
      setWriteBarrier: (error) => proto.setWriteBarrier.call(db, error),
      status: () => proto.status.call(db),
    };
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    const fd = openSync(this.ctx.path, 'r');
    try {
      this.hashes = hashPages(fd, pageSize);
    } finally {
      closeSync(fd);
    }
    const opening = this.opening ?? [];
    this.opening = null;
    const spool = await readSpool(this.ctx.path);
    this.databaseId = lineage.databaseId ?? randomBytes(16).toString('hex');
    // With keys, a manifest without a MAC is rewritten sealed (below, with the new generation).
    this.manifestWritten = lineage.databaseId !== null && (this.ctx.keyring === undefined || lineage.authenticated);
    this.epoch = leaseEpoch ?? lineage.maxEpoch + 1;
    this.durableTxid = 0;
    let continueAt: number | null = null;
    const tip = lineage.tip;
    // The file holds some state from the WAL's start up to the last checkpoint's marker K; replaying
    // every WAL transaction over it in order is exact from K on (earlier ones may mix states).
    const markerTxid = db.recovery.marker?.txid ?? 0;
    const at = new Map<number, bigint>();
    const after = new Map<number, bigint>();
    if (baseTxid !== undefined) at.set(baseTxid, this.hashes.value);
    for (const txn of opening) {
      for (const p of txn.pages) this.hashes.set(p.pgno, p.data);
      this.hashes.truncate(txn.commitSize);
      after.set(txn.txid, this.hashes.value);
      if (txn.txid >= markerTxid) at.set(txn.txid, this.hashes.value);
    }
    at.set(db.txid, this.hashes.value);
    this.committedTxid = db.txid;
    if (this.ctx.forceGeneration && tip && lineage.generation) {
      this.needGeneration = { reason: this.ctx.forceGeneration, parent: { generation: lineage.generation, txid: tip.txid } };
    } else if (tip && lineage.generation) {
      if (db.txid < tip.txid && !this.ctx.options.allowRollback) {
        throw new WalshipError(
          'ERR_DURABLE_AHEAD',
          `${this.location} holds transactions up to ${tip.txid} but ${this.ctx.path} ends at ${db.txid}: the local database is older than its replica. Restore the latest state first (walship restore), or, to continue from this older state on purpose (a point-in-time rollback), pass allowRollback: true to start a new generation from it`,
          { details: { path: this.ctx.path, replicaTxid: tip.txid, localTxid: db.txid, generation: lineage.generation } },
        );
      }
      if (db.txid < tip.txid) {
        this.needGeneration = { reason: `rolled back: the local database is at txid ${db.txid}, the replica at ${tip.txid} (allowRollback)`, parent: { generation: lineage.generation, txid: db.txid } };
      } else if (lineage.pageSize !== null && lineage.pageSize !== pageSize) {
        this.needGeneration = this.diverged(`page size changed from ${lineage.pageSize} to ${pageSize}`, { generation: lineage.generation, ...tip }, at.get(tip.txid));
      } else if (at.get(tip.txid) === tip.checksum) {
        continueAt = tip.txid;
      } else if (tip.txid === markerTxid - 1 && db.recovery.marker?.note === checkpointNote(tip.checksum)) {
        // The last checkpoint's marker never shipped; its note holds the checksum of the state before it.
        continueAt = tip.txid;
      } else if (spool && spoolContinues(spool, tip, markerTxid, db.recovery.marker?.note ?? null)) {
        // A checkpoint copied in-flight transactions into the file after spooling them: they ship from the spool.
        continueAt = tip.txid;
        for (const t of spool.transactions) {
          if (t.txid <= tip.txid) continue;
          const pages = t.pages.map((p) => ({ pgno: p.pgno, data: p.data.slice() }));
          this.queue.push({
            txid: t.txid,
            timestamp: t.timestamp,
            commitSize: t.commitSize,
            pageSize,
            pageCount: pages.length,
            postChecksum: t.postChecksum,
            walBytes: pages.length * pageSize,
            wal: null,
            pages,
            committedAt: performance.now(),
          });
        }
        this.spoolMax = spool.maxTxid;
      } else {
        const why = at.has(tip.txid) ? 'the local database differs from the replica at its last txid' : `the local database was checkpointed past the replica's last txid ${tip.txid}`;
        this.needGeneration = this.diverged(why, { generation: lineage.generation, ...tip }, at.get(tip.txid));
      }
    } else {
      this.needGeneration = { reason: lineage.databaseId ? 'no restorable generation in the replica' : 'new replica', parent: null };
    }
    if (continueAt !== null && this.ctx.keyring && !lineage.authenticated) {
      // Markers without MACs (written before authenticated markers): restore with keys refuses
      // them, so carry on in a new generation whose every marker is sealed.
      continueAt = null;
      this.needGeneration = { reason: 'the replica markers are not authenticated: a new generation with sealed markers', parent: { generation: lineage.generation as string, txid: (tip as { txid: number }).txid } };
    }
    const image = this.needGeneration ? firstImage(opening[0], markerTxid, this.hashes.lockPage, after.get(1)) : undefined;
    if (this.needGeneration && image) this.needGeneration.image = image;
    if (continueAt !== null) {
      this.generation = lineage.generation;
      this.epochs = new Map(lineage.epochs);
      this.seq = 0;
      this.durableTxid = continueAt;
      this.durableChecksum = tip!.checksum;
      this.lastSnapshotTxid = lineage.lastSnapshot?.txid ?? 0;
      this.raw.acknowledge(Math.max(continueAt, this.spoolMax ?? 0));
      this.ctx.lease?.recordDurable({ generation: this.generation!, txid: continueAt });
      this.ctx.log.info('continuing the replica', { generation: this.generation, txid: continueAt, epoch: this.epoch });
    } else {
      this.ctx.log.warn('starting a new generation', { reason: this.needGeneration!.reason, parent: this.needGeneration!.parent });
    }
    this.ctx.log.with({ generation: this.generation });
    if (markerTxid > this.durableTxid) this.cutBefore.add(markerTxid);
    const queued = this.queue.last()?.txid ?? this.durableTxid;
    for (const txn of opening) if (txn.txid > queued) this.queue.push(pendingFrom(txn, after.get(txn.txid)!));
    if (spool && this.spoolMax === null) removeSpool(this.ctx.path);
    this.walSinceCheckpoint = this.queue.pendingWalBytes;
    this.state = 'running';
    this.maintenance = new Maintenance({ ...this.ctx, shipper: this });
    this.schedule(true);
  }

  /**
   * The local file cannot be proven to continue the replica: a new generation from it would make it
   * the latest state and bury the replica's tip (another writer's flushed transactions), so only
   * with allowRollback.
   */
  private diverged(reason: string, tip: { generation: string; txid: number; checksum: bigint; key: string }, localAtTip: bigint | undefined): NewGeneration {
    if (!this.ctx.options.allowRollback) {
      throw divergedError({ location: this.location, path: this.ctx.path, reason, localTxid: this.db.txid, localChecksum: this.hashes!.value, localChecksumAtTip: localAtTip, tip });
    }
    return { reason: `${reason} (allowRollback)`, parent: { generation: tip.generation, txid: tip.txid } };
  }

  /** Resolves once every transaction committed before the call is durable, or rejects at the deadline or abort. */
  flush(options: FlushOptions = {}): Promise<{ txid: number }> {
    const { timeoutMs, signal } = options;
    if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 0)) {
      return Promise.reject(new WalshipError('ERR_INVALID_OPTION', `flush(): timeoutMs must be a number of ms >= 0, got ${String(timeoutMs)}`, { details: { option: 'timeoutMs' } }));
    }
    if (this.fatal) return Promise.reject(this.fatal);
    const txid = this.committedTxid;
    if (this.durableTxid >= txid && !this.needGeneration) return Promise.resolve({ txid: this.durableTxid });
    if (this.state === 'closed') return Promise.reject(new WalshipError('ERR_CLOSED', `${this.ctx.path} is closed; ${txid - this.durableTxid} transactions were not durable`, { details: { durableTxid: this.durableTxid, txid } }));
    return new Promise((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const settle = (): void => {
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.waiters = this.waiters.filter((w) => w !== waiter);
      };
      // Nothing is lost when a flush gives up: the transactions stay in the WAL and keep shipping.
      const giveUp = (code: 'ERR_FLUSH_TIMEOUT' | 'ERR_ABORTED', why: string, cause?: unknown): void => {
        settle();
        const last = this.lastError;
        reject(
          new WalshipError(
            code,
            `flush of ${this.ctx.path} ${why}: txid ${txid} is committed, ${this.durableTxid} is durable in ${this.location}${last ? ` (last error: ${last.code}: ${last.message})` : ''}. The transactions stay in the WAL and keep shipping`,
            { details: { txid, durableTxid: this.durableTxid, committedTxid: this.committedTxid, lastError: last?.code ?? null, ...(timeoutMs !== undefined ? { timeoutMs } : {}) }, ...(cause !== undefined ? { cause } : {}) },
          ),
        );
      };
      const onAbort = (): void => giveUp('ERR_ABORTED', 'was aborted by its signal', signal?.reason);
      const waiter: FlushWaiter = {
        txid,
        resolve: (v) => {
          settle();
          resolve(v);
        },
        reject: (e) => {
          settle();
          reject(e);
        },
      };
      if (signal?.aborted) {
        onAbort();
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      if (timeoutMs !== undefined) timer = setTimeout(() => giveUp('ERR_FLUSH_TIMEOUT', `timed out after ${timeoutMs} ms`), timeoutMs);
      this.waiters.push(waiter);
      this.schedule(true);
    });
  }

  private schedule(now: boolean): void {
    if ((this.state !== 'running' && this.state !== 'closing') || this.stopped) return;
    if (this.pump) return;
    const firstAt = this.queue.firstCommittedAt;
    const wantsWork = this.needGeneration !== null || firstAt !== undefined;
    if (!wantsWork) return;
    const window = this.ctx.options.batchWindowMs;
    const urgent = now || window === 0 || this.draining || this.waiters.length > 0 || this.needGeneration !== null;
    if (!urgent && firstAt !== undefined) {
      const wait = window - (performance.now() - firstAt);
      if (wait > 0) {
        if (!this.timer) {
          this.timer = setTimeout(() => {
            this.timer = null;
            this.schedule(true);
          }, wait);
          this.timer.unref?.();
        }
        return;
      }
    }
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.pump = this.run().finally(() => {
      this.pump = null;
      if (!this.stopped && this.fatal === null) this.schedule(false);
    });
  }

  private async run(): Promise<void> {
    try {
      if (this.needGeneration) await this.startGeneration(this.needGeneration);
      if (!this.epochMarked) await this.markEpoch(this.durableTxid + 1);
      const batch = this.takeBatch();
      if (batch.length > 0) await this.ship(batch);
    } catch (e) {
      if (this.stopped && isAbort(e)) return;
      this.fail(e as Error);
    }
  }

  private takeBatch(): PendingTxn[] {
    const batch: PendingTxn[] = [];
    let bytes = 0;
    for (let i = 0; i < this.queue.length; i++) {
      const t = this.queue.at(i)!;
      const size = t.pageCount * t.pageSize;
      if (batch.length > 0 && bytes + size > this.ctx.options.maxSegmentBytes) break;
      // A checkpoint's marker starts a segment: a snapshot at that txid then never falls inside one.
      if (batch.length > 0 && this.cutBefore.has(t.txid)) break;
      batch.push(t);
      bytes += size;
    }
    return batch;
  }

  private header(kind: 'segment' | 'snapshot', txns: { minTxid: number; maxTxid: number; commitSize: number; first: number; last: number; pre: bigint; post: bigint; count: number; pages: number }): ObjectHeaderInit {
    return {
      kind,
      databaseId: this.databaseId,
      generation: this.generation!,
      epoch: this.epoch,
      level: 0,
      minTxid: txns.minTxid,
      maxTxid: txns.maxTxid,
      pageSize: this.hashes!.pageSize,
      commitSize: txns.commitSize,
      firstTimestamp: txns.first,
      lastTimestamp: txns.last,
      preChecksum: txns.pre,
      postChecksum: txns.post,
      transactionCount: txns.count,
      pageCount: txns.pages,
      compression: this.ctx.options.compression,
    };
  }

  private async ship(batch: PendingTxn[]): Promise<void> {
    const first = batch[0]!;
    const last = batch.at(-1)!;
    const key = this.keys.segment({ generation: this.generation!, level: 0, minTxid: first.txid, epoch: this.epoch });
    const header = this.header('segment', {
      minTxid: first.txid,
      maxTxid: last.txid,
      commitSize: last.commitSize,
      first: first.timestamp,
      last: last.timestamp,
      pre: this.durableChecksum,
      post: last.postChecksum,
      count: batch.length,
      pages: batch.reduce((n, t) => n + t.pageCount, 0),
    });
    const walPath = `${this.ctx.path}-wal`;
    // Nothing is shipped that a local crash could take back. fdatasync on the thread pool, so
    // the application's event loop goes on meanwhile (an fsync of any descriptor flushes the file).
    await syncFile(walPath);
    const keyring = this.ctx.keyring;
    const body = async function* (): AsyncGenerator<Uint8Array> {
      const enc = new SegmentEncoder(header, keyring ? { keyring } : {});
      const spilled = batch.some((t) => t.pages === null);
      const fd = spilled ? openSync(walPath, 'r') : undefined;
      try {
        for (const t of batch) {
          const pages = t.pages ?? readFromWal(walPath, t, fd);
          enc.beginTransaction({ txid: t.txid, timestamp: t.timestamp, commitSize: t.commitSize, postChecksum: t.postChecksum, pageCount: t.pageCount });
          for (const p of pages) enc.writePage(p.pgno, p.data);
          enc.endTransaction();
          yield* enc.take();
        }
      } finally {
        if (fd !== undefined) closeSync(fd);
      }
      enc.finish();
      yield* enc.take();
    };
    const size = await this.upload(key, body, 'segment');
    this.ctx.metrics.segments.inc();
    this.ctx.metrics.segmentBytes.inc(size);
    this.ctx.metrics.walBytesShipped.inc(batch.reduce((n, t) => n + t.walBytes, 0));
    this.lastUpload = { key, txid: last.txid, at: new Date().toISOString() };
    this.markDurable(last.txid, last.postChecksum);
  }

  /** PUTs one object, retrying with exponential backoff and jitter until it lands or the shipper stops. */
  private async upload(key: string, body: () => AsyncIterable<Uint8Array>, what: string): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      if (this.stopped) throw new WalshipError('ERR_CLOSED', `shipper stopped before ${key} was uploaded`, { details: { key } });
      await this.leaseGate(key);
      try {
        const signal = this.ctx.lease ? AbortSignal.any([this.abort.signal, this.leaseSignal()]) : this.abort.signal;
        const res = await this.ctx.storage.putStream(key, body(), { signal });
        this.assertLease(key);
        if (this.lastError) this.ctx.log.info('object store reachable again', { key });
        this.lastError = null;
        return res.size;
      } catch (e) {
        if (this.stopped) throw e;
        if (isFormatBug(e)) throw e;
        // Create-only PUTs: someone else's object under this writer's key. Never overwrite it.
        if ((e as { code?: string }).code === 'ERR_STORAGE_PRECONDITION_FAILED') throw e;
        if (this.ctx.lease && this.ctx.lease.state !== 'held') throw this.leaseError ?? e;
        const err = e as Error & { code?: string };
        this.lastError = { code: err.code ?? 'ERR_UNKNOWN', message: err.message, at: new Date().toISOString() };
        this.ctx.metrics.uploadFailures.inc();
        const wait = Math.min(this.ctx.options.backoffMaxMs, this.ctx.options.backoffBaseMs * 2 ** Math.min(attempt, 20)) * Math.random();
        this.ctx.log.warn(`${what} upload failed; retrying`, { key, attempt: attempt + 1, code: err.code, error: err.message, retryInMs: Math.round(wait) });
        await delay(wait, undefined, { signal: this.abort.signal }).catch(() => undefined);
      }
    }
  }

  private leaseError: LeaseLostError | null = null;
  private uploadSignal: AbortSignal | null = null;

  /** One lease watch shared by uploads until it fires (each watch is a timer inside the lease). */
  private leaseSignal(): AbortSignal {
    if (!this.uploadSignal || this.uploadSignal.aborted) this.uploadSignal = this.ctx.lease!.abortSignalForUpload();
    return this.uploadSignal;
  }

  /** Waits until an upload can finish before the lease deadline (renewals move it), or throws on loss. */
  private async leaseGate(key: string): Promise<void> {
    const lease = this.ctx.lease;
    if (!lease) return;
    while (!lease.canStartUpload(this.ctx.requestTimeoutMs)) {
      this.assertLease(key);
      if (this.stopped) throw new WalshipError('ERR_CLOSED', `shipper stopped before ${key} was uploaded`, { details: { key } });
      await delay(10);
    }
  }

  private assertLease(key: string): void {
    const lease = this.ctx.lease;
    if (lease && lease.state !== 'held') {
      throw this.leaseError ?? new LeaseLostError({ epoch: this.epoch, reason: 'expired', key } as never);
    }
  }

  /** The lease is gone: no more uploads, no more writes, every flush() waiting fails. */
  leaseLost(e: LeaseLostError): void {
    if (this.leaseError) return;
    this.leaseError = e;
    this.raw.setWriteBarrier(e);
    this.abort.abort(e);
    this.ctx.metrics.leaseLost.inc();
    this.fail(e);
  }

  private leaseStatus(): ReplicationStatus['lease'] {
    const lease = this.ctx.lease;
    if (!lease) return { mode: 'none', warning: 'lease: false: one writer per database is assumed, not enforced' };
    const g = lease.current();
    return { mode: 'dynamodb', state: lease.state, epoch: this.epoch, owner: lease.owner, expiresInMs: g ? Math.round(g.deadline - performance.now()) : null };
  }

  private markDurable(txid: number, checksum: bigint): void {
    const now = performance.now();
    const done = this.queue.dropThrough(txid, (committedAt) => this.ctx.metrics.lag.observe((now - committedAt) / 1000));
    this.ctx.metrics.shipped.inc(done);
    this.durableTxid = Math.max(this.durableTxid, txid);
    this.durableChecksum = checksum;
    // Written by the next lease renewal or the release: no request on the commit path.
    this.ctx.lease?.recordDurable({ generation: this.generation!, txid: this.durableTxid });
    for (const k of this.cutBefore) if (k <= this.durableTxid) this.cutBefore.delete(k);
    this.raw.acknowledge(this.durableTxid);
    if (this.spoolMax !== null && this.durableTxid >= this.spoolMax) {
      removeSpool(this.ctx.path);
      this.spoolMax = null;
    }
    const still: FlushWaiter[] = [];
    for (const w of this.waiters) {
      if (w.txid <= this.durableTxid && !this.needGeneration) w.resolve({ txid: this.durableTxid });
      else still.push(w);
    }
    this.waiters = still;
    if (this.walLimitReached && this.queue.pendingWalBytes <= this.ctx.options.walLimitBytes) {
      this.walLimitReached = false;
      this.raw.setWriteBarrier(null);
      this.ctx.log.info('WAL back under its limit: writes accepted again', { txid: this.durableTxid });
    }
    // The snapshot first: it takes the last checkpoint once its marker is durable (it holds further
    // checkpoints while it streams); a checkpoint first would move the target on every upload.
    this.maybeSnapshot();
    try {
      this.maybeCheckpoint();
    } catch (e) {
      // A full disk or an I/O error while checkpointing: SQLite rolled the marker back and the WAL
      // keeps every frame; the next upload tries again. The application's own writes see the same
      // error where they hit it.
      const err = e as Error & { code?: string };
      this.lastError = { code: err.code ?? 'ERR_UNKNOWN', message: `checkpoint failed: ${err.message}`, at: new Date().toISOString() };
      this.draining = false;
      this.ctx.log.warn('checkpoint failed; the WAL keeps its frames and the next upload tries again', { code: err.code, error: err.message });
    }
    this.maintenance?.poke();
  }

  /**
   * SQLite checkpoints the whole WAL, so a checkpoint needs every transaction in it durable. Under
   * steady writes the shipper drains (window 0) until one upload finishes with nothing behind it.
   */
  private maybeCheckpoint(): void {
    // While closing, stop() takes the last checkpoint itself and ships its marker.
    if (this.state === 'closing') return;
    // A due snapshot waits for the marker of the checkpoint it will be taken at: a new checkpoint
    // first would replace it before it is durable, again after every upload under steady writes,
    // and periodic snapshots would never land (skipping a checkpoint only lets the WAL grow).
    const cp = this.lastCheckpoint;
    const awaitingBase = cp !== null && cp.snapshotBase && cp.txid > this.durableTxid && this.snapshotDue();
    if (this.walSinceCheckpoint < this.ctx.options.checkpointBytes || this.snapshotting || awaitingBase) {
      this.draining = false;
      this.drainRounds = 0;
      return;
    }
    if (this.queue.length > 0) {
      // Uploads back to back usually find a moment with nothing behind them within a few rounds;
      // writes without any pause never do, and then the few in flight go to the spool.
      this.draining = true;
      if (++this.drainRounds >= DRAIN_ROUNDS && this.spoolCheckpoint()) {
        this.drainRounds = 0;
        this.draining = false;
      }
      return;
    }
    const r = this.checkpointNow();
    if (r.checkpointed) {
      this.draining = false;
      this.drainRounds = 0;
    } else if (r.reason === 'busy') {
      this.draining = true;
    }
  }

  /** Spools every pending transaction (fsync), then checkpoints. False when it cannot (too much pending, busy). */
  private spoolCheckpoint(): boolean {
    let bytes = 0;
    for (let i = 0; i < this.queue.length && bytes <= SPOOL_MAX_BYTES; i++) bytes += this.queue.at(i)!.pageCount * this.queue.at(i)!.pageSize;
    if (bytes > SPOOL_MAX_BYTES || this.db.inTransaction) return false;
    const walPath = `${this.ctx.path}-wal`;
    const txns = [];
    for (let i = 0; i < this.queue.length; i++) {
      const t = this.queue.at(i)!;
      if (t.pages === null) this.queue.pin(t, readFromWal(walPath, t));
      txns.push({ txid: t.txid, timestamp: t.timestamp, commitSize: t.commitSize, postChecksum: t.postChecksum, pages: t.pages! });
    }
    const first = txns[0]!;
    const last = txns.at(-1)!;
    writeSpool(
      this.ctx.path,
      this.header('segment', {
        minTxid: first.txid,
        maxTxid: last.txid,
        commitSize: last.commitSize,
        first: first.timestamp,
        last: last.timestamp,
        pre: this.durableChecksum,
        post: last.postChecksum,
        count: txns.length,
        pages: txns.reduce((n, t) => n + t.pages.length, 0),
      }),
      txns,
    );
    this.spoolMax = last.txid;
    this.raw.acknowledge(last.txid);
    let r: CheckpointResult;
    try {
      r = this.checkpointNow();
    } catch (e) {
      removeSpool(this.ctx.path);
      this.spoolMax = null;
      throw e;
    }
    if (!r.checkpointed) {
      removeSpool(this.ctx.path);
      this.spoolMax = null;
      return false;
    }
    this.ctx.metrics.spooled.inc(txns.length);
    this.ctx.log.debug('checkpointed through the spool', { spooled: txns.length, txid: r.lastTxid });
    return true;
  }

  /** A periodic snapshot is due: it is taken at the next checkpoint once that one's marker is durable. */
  private snapshotDue(): boolean {
    const interval = this.ctx.options.snapshotIntervalMs;
    // Not while closing: close would cut the upload short (the next open takes it).
    if (interval === 0 || this.state === 'closing' || this.stopped) return false;
    return Date.now() - this.lastSnapshotAt >= interval;
  }

  private maybeSnapshot(): void {
    if (this.snapshotting || this.periodic || !this.snapshotDue()) return;
    const cp = this.lastCheckpoint;
    if (!cp || !cp.snapshotBase || cp.txid <= this.lastSnapshotTxid) return;
    // Not before the segments up to it are in the store: a checkpoint through the spool copies
    // transactions that are not uploaded yet, and a snapshot past them would make a restart take
    // the snapshot as the tip and never ship them (their txids would not be restorable).
    if (cp.txid > this.durableTxid) return;
    this.periodic = this.snapshot(cp.txid, cp.checksum, cp.timestamp)
      .catch((e: unknown) => {
        if (!this.stopped) this.ctx.log.warn('periodic snapshot failed; the next checkpoint tries again', { error: (e as Error).message });
      })
      .finally(() => {
        this.periodic = null;
      });
  }

  /** A new generation: acknowledge everything locally, checkpoint, and ship the file as its snapshot. */
  private async startGeneration(ng: NewGeneration): Promise<void> {
    const epochHex = this.epoch.toString(16).padStart(8, '0');
    this.generation = `${epochHex}${(this.seq++).toString(16).padStart(8, '0')}`;
    this.ctx.log.with({ generation: this.generation });
    if (!this.manifestWritten) {
      const manifest: DatabaseManifest = {
        format: 1,
        databaseId: this.databaseId,
        pageSize: this.hashes!.pageSize,
        createdAt: new Date().toISOString(),
        ...(this.ctx.keyring ? { encrypted: true as const } : {}),
      };
      await this.putJson(this.keys.database(), manifest);
      this.manifestWritten = true;
    }
    const marker: GenerationMarker = {
      format: 1,
      generation: this.generation,
      databaseId: this.databaseId,
      epoch: this.epoch,
      reason: ng.reason,
      parent: ng.parent,
      createdAt: new Date().toISOString(),
    };
    await this.putJson(this.keys.generation(this.generation), marker);
    if (ng.image) {
      const image = ng.image;
      this.epochs = new Map([[this.epoch, 1]]);
      this.epochMarked = false;
      await this.markEpoch(1);
      await this.uploadSnapshot(1, image.postChecksum, image.timestamp, image.commitSize, image.pages.length, async function* () {
        yield image.pages;
      });
      this.needGeneration = null;
      this.durableChecksum = image.postChecksum;
      this.markDurable(1, image.postChecksum);
      return;
    }
    // The snapshot covers everything committed so far, so the WAL may be copied into the file.
    let cp = { checkpointed: false, reason: 'not-durable' } as CheckpointResult;
    let busy = 0;
    let failures = 0;
    while (!cp.checkpointed && cp.reason !== 'empty' && busy < 100) {
      this.raw.acknowledge(this.db.txid);
      try {
        cp = this.raw.checkpoint({ note: checkpointNote(this.hashes!.value) });
      } catch (e) {
        // A full disk or an I/O error: SQLite rolled the marker back; wait for the disk and try again.
        if (!isLocalIoError(e) || this.stopped) throw e;
        const err = e as Error & { code: string };
        this.lastError = { code: err.code, message: `checkpoint for the generation snapshot failed: ${err.message}`, at: new Date().toISOString() };
        if (failures++ === 0) this.ctx.log.warn('checkpoint for the generation snapshot failed; retrying', { code: err.code, error: err.message });
        await delay(Math.min(5000, 50 * 2 ** Math.min(failures, 7)));
        continue;
      }
      if (!cp.checkpointed && cp.reason === 'busy') {
        busy++;
        await delay(10);
      }
    }
    if (!cp.checkpointed && cp.reason !== 'empty') {
      throw new WalshipError('ERR_CHECKPOINT_BUSY', `${this.ctx.path}: could not checkpoint for the generation snapshot (${cp.reason}); an open transaction may be holding the database`, { details: { reason: cp.reason } });
    }
    const txid = this.db.txid;
    const checksum = this.hashes!.value;
    this.epochs = new Map([[this.epoch, txid]]);
    this.epochMarked = false;
    await this.markEpoch(txid);
    await this.snapshot(txid, checksum, this.lastCommitAt);
    this.queue.dropThrough(txid);
    this.walSinceCheckpoint = this.queue.pendingWalBytes;
    this.needGeneration = null;
    this.durableChecksum = checksum;
    this.markDurable(txid, checksum);
  }

  private async markEpoch(startTxid: number): Promise<void> {
    const marker: EpochMarker = {
      format: 1,
      epoch: this.epoch,
      generation: this.generation!,
      startTxid,
      createdAt: new Date().toISOString(),
      writer: { host: hostname(), pid: process.pid },
    };
    await this.putJson(this.keys.epoch(this.generation!, this.epoch), marker);
    this.epochs.set(this.epoch, startTxid);
    this.epochMarked = true;
  }

  /** Markers are sealed with a MAC when the writer has keys (see @walship/format markers). */
  private async putJson(key: string, value: object): Promise<void> {
    const keyring = this.ctx.keyring;
    const marker = keyring ? sealMarker(value, { prefix: this.keys.prefix, key, keyring }) : value;
    const bytes = encoder.encode(`${JSON.stringify(marker, null, 2)}\n`);
    await this.upload(key, async function* () {
      yield bytes;
    }, 'marker');
  }

  /**
   * Streams the database file, which holds exactly the state after `txid` until the next
   * checkpoint (held off meanwhile), so writers go on into the WAL for the whole upload.
   */
  /** `committedAt` is the commit time of `txid`: restore by time reads it from the header. */
  private async snapshot(txid: number, checksum: bigint, committedAt: number): Promise<void> {
    const path = this.ctx.path;
    const pageSize = this.hashes!.pageSize;
    const fd = openSync(path, 'r');
    const commitSize = Math.floor(fstatSync(fd).size / pageSize);
    closeSync(fd);
    const lockPage = lockPageNumber(pageSize);
    const pageCount = commitSize - (commitSize >= lockPage ? 1 : 0);
    const pages = async function* (): AsyncGenerator<{ pgno: number; data: Uint8Array }[]> {
      const rfd = openSync(path, 'r');
      try {
        const buf = new Uint8Array(pageSize * 64);
        for (let start = 1; start <= commitSize; start += 64) {
          const n = Math.min(64, commitSize - start + 1);
          const got = readSync(rfd, buf, 0, n * pageSize, (start - 1) * pageSize);
          if (got !== n * pageSize) throw new WalshipError('ERR_SNAPSHOT_READ', `${path}: short read at page ${start} while taking a snapshot`, { details: { path, page: start } });
          const run: { pgno: number; data: Uint8Array }[] = [];
          for (let i = 0; i < n; i++) if (start + i !== lockPage) run.push({ pgno: start + i, data: buf.slice(i * pageSize, (i + 1) * pageSize) });
          yield run;
        }
      } finally {
        closeSync(rfd);
      }
    };
    await this.uploadSnapshot(txid, checksum, committedAt, commitSize, pageCount, pages);
  }

  /** Encodes and uploads a snapshot from its pages (in page order, in runs), checking their checksum before the object ends. */
  private async uploadSnapshot(txid: number, checksum: bigint, committedAt: number, commitSize: number, pageCount: number, pages: () => AsyncIterable<{ pgno: number; data: Uint8Array }[]>): Promise<void> {
    this.snapshotting = true;
    try {
      const path = this.ctx.path;
      const pageSize = this.hashes!.pageSize;
      const key = this.keys.snapshot({ generation: this.generation!, txid, epoch: this.epoch });
      const now = committedAt;
      const header = this.header('snapshot', { minTxid: txid, maxTxid: txid, commitSize, first: now, last: now, pre: 0n, post: checksum, count: 1, pages: pageCount });
      const keyring = this.ctx.keyring;
      const hashesOf = (): PageHashes => new PageHashes(pageSize);
      const body = async function* (): AsyncGenerator<Uint8Array> {
        const enc = new SegmentEncoder(header, keyring ? { keyring } : {});
        const seen = hashesOf();
        enc.beginTransaction({ txid, timestamp: now, commitSize, postChecksum: checksum, pageCount });
        for await (const run of pages()) {
          for (const p of run) {
            seen.set(p.pgno, p.data);
            enc.writePage(p.pgno, p.data);
          }
          yield* enc.take();
        }
        if (seen.value !== checksum) {
          throw new WalshipError('ERR_SNAPSHOT_MISMATCH', `${path}: the database at txid ${txid} has checksum ${seen.value.toString(16)}, capture expected ${checksum.toString(16)}; not uploading it`, {
            details: { path, txid },
          });
        }
        enc.endTransaction();
        enc.finish();
        yield* enc.take();
      };
      const size = await this.upload(key, body, 'snapshot');
      this.ctx.metrics.snapshots.inc();
      this.ctx.metrics.snapshotBytes.inc(size);
      this.lastSnapshotTxid = txid;
      this.lastSnapshotAt = Date.now();
      this.lastSnapshotInfo = { txid, at: new Date().toISOString() };
      this.ctx.log.info('snapshot uploaded', { key, txid, bytes: size });
    } finally {
      this.snapshotting = false;
    }
  }

  private fail(e: Error): void {
    this.fatal = e;
    this.state = 'failed';
    const err = e as Error & { code?: string };
    this.lastError = { code: err.code ?? 'ERR_UNKNOWN', message: err.message, at: new Date().toISOString() };
    this.ctx.log.error('replication stopped', { code: err.code, error: err.message });
    for (const w of this.waiters) w.reject(e);
    this.waiters = [];
  }

  status(): ReplicationStatus {
    const firstAt = this.queue.firstCommittedAt;
    let walBytes = 0;
    try {
      walBytes = this.raw.status().walBytes;
    } catch {
      walBytes = 0;
    }
    return {
      replica: this.location,
      path: this.ctx.path,
      state: this.state === 'running' && this.lastError !== null ? 'degraded' : this.state,
      committedTxid: this.committedTxid,
      durableTxid: this.durableTxid,
      lagMs: firstAt !== undefined ? Math.round(performance.now() - firstAt) : 0,
      pendingTransactions: this.queue.length,
      pendingWalBytes: this.queue.pendingWalBytes,
      walBytes,
      generation: this.generation,
      epoch: this.epoch,
      walLimitReached: this.walLimitReached,
      lastSnapshot: this.lastSnapshotInfo,
      lastUpload: this.lastUpload,
      lastError: this.lastError,
      lease: this.leaseStatus(),
      requests: this.ctx.metrics.requests.rates(),
    };
  }

  /** A checkpoint requested by the application: only what is durable, with the continuity note. */
  checkpointNow(): CheckpointResult {
    if (this.snapshotting) return { checkpointed: false, reason: 'busy', lastTxid: this.db.txid, durableTxid: this.durableTxid };
    const r = this.raw.checkpoint({ note: checkpointNote(this.hashes!.value) });
    if (r.checkpointed) this.checkpointed(r.lastTxid);
    return r;
  }

  private checkpointed(txid: number): void {
    // Restore, retention and the lineage read expect a snapshot's txid to start a level-0 segment,
    // so the marker of a checkpoint a snapshot may be taken at starts one. Any other marker ships
    // inside the next window's segment: cutting at every marker split each window's batch in two
    // under steady writes (two PUTs a window, issue 11).
    const snapshotBase = this.snapshotDue() && txid > this.durableTxid;
    if (snapshotBase) this.cutBefore.add(txid);
    this.ctx.metrics.checkpoints.inc();
    this.walSinceCheckpoint = this.queue.pendingWalBytes;
    this.draining = false;
    this.lastCheckpoint = { txid, checksum: this.hashes!.value, commitSize: this.hashes!.pageCount, timestamp: this.lastCommitAt, snapshotBase };
    this.ctx.log.debug('checkpointed', { txid });
  }

  private async flushWithin(deadline: number): Promise<boolean> {
    if (this.fatal !== null) return false;
    if (this.durableTxid >= this.committedTxid && !this.needGeneration) return true;
    const f = this.flush().then(() => true, () => false);
    let timer: NodeJS.Timeout | undefined;
    const t = new Promise<boolean>((r) => {
      timer = setTimeout(() => r(false), Math.max(0, deadline - Date.now()));
    });
    const ok = await Promise.race([f, t]);
    clearTimeout(timer);
    return ok;
  }

  /**
   * Flushes (bounded by timeoutMs); then checkpoints and ships that checkpoint's marker too, so the
   * database file left behind is exactly the replica's tip; then stops timers and uploads.
   */
  async stop(timeoutMs: number): Promise<{ flushed: boolean }> {
    this.state = this.state === 'failed' ? 'failed' : 'closing';
    const deadline = Date.now() + timeoutMs;
    let flushed = await this.flushWithin(deadline);
    if (flushed && this.fatal === null) {
      await Promise.allSettled([this.periodic]);
      const r = this.checkpointNow();
      // Its marker, or one an automatic checkpoint wrote during the flush above, ships too.
      if (r.checkpointed || this.durableTxid < this.committedTxid) flushed = await this.flushWithin(deadline);
    }
    this.stopped = true;
    this.abort.abort();
    if (this.timer) clearTimeout(this.timer);
    await Promise.allSettled([this.pump, this.periodic, this.maintenance?.stop()]);
    const err = new WalshipError('ERR_CLOSED', `${this.ctx.path} closed before transactions ${this.durableTxid + 1}..${this.committedTxid} were durable; they stay in the WAL and ship on the next open`, {
      details: { durableTxid: this.durableTxid, committedTxid: this.committedTxid },
    });
    for (const w of this.waiters) w.reject(err);
    this.waiters = [];
    if (this.state !== 'failed') this.state = 'closed';
    return { flushed };
  }
}

const DRAIN_ROUNDS = 1;

/** SQLite's disk-full and I/O error codes: the local disk, not walship's state, is the problem. */
function isLocalIoError(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' && (code.startsWith('SQLITE_FULL') || code.startsWith('SQLITE_IOERR'));
}
const SPOOL_MAX_BYTES = 8 * 1024 * 1024;

/**
 * A spool continues the replica when it holds the replica's tip (or starts right after it) with the
 * same checksum, and the database file's last checkpoint came right after the spool's last transaction.
 */
function spoolContinues(
  spool: { preChecksum: bigint; minTxid: number; maxTxid: number; transactions: { txid: number; postChecksum: bigint }[] },
  tip: { txid: number; checksum: bigint },
  markerTxid: number,
  note: string | null,
): boolean {
  if (tip.txid < spool.minTxid - 1 || tip.txid >= spool.maxTxid) return false;
  const atTip = tip.txid === spool.minTxid - 1 ? spool.preChecksum : spool.transactions.find((t) => t.txid === tip.txid)?.postChecksum;
  const last = spool.transactions.at(-1);
  return atTip === tip.checksum && last !== undefined && markerTxid === spool.maxTxid + 1 && note === checkpointNote(last.postChecksum);
}

async function syncFile(path: string): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r+');
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return;
    throw e;
  }
  try {
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

/** What a checkpoint leaves in the marker row: the checksum of the state the marker follows. */
export function checkpointNote(checksum: bigint): string {
  return `walship:pre-marker-checksum:${checksum.toString(16).padStart(16, '0')}`;
}

function isAbort(e: unknown): boolean {
  const code = (e as { code?: string; name?: string })?.code;
  return code === 'ERR_CLOSED' || code === 'ERR_STORAGE_ABORTED' || (e as Error)?.name === 'AbortError';
}

function isFormatBug(e: unknown): boolean {
  const code = (e as { code?: string })?.code ?? '';
  return e instanceof WalshipError ? ['ERR_SNAPSHOT_MISMATCH', 'ERR_SPOOL_LOST', 'ERR_INTERNAL', 'ERR_SNAPSHOT_READ'].includes(code) : (e as Error)?.name === 'FormatError';
}
