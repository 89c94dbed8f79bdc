import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import type { CommittedTransaction, CheckpointOptions, CheckpointResult, DatabaseStatus } from '@walship/vfs';
import { WalshipDatabase, WalshipError } from '@walship/vfs';
import type { LeaseLostError } from '@walship/lease';
import { formatKeys, type ObjectHeaderInit } from '@walship/format';
import type { Lineage } from './lineage.js';
import type { FlushOptions, ReplicationStatus, ShipperContext, ShipperState } from './types.js';
import { hashPages } from './local.js';
import { readSpool, removeSpool } from './spool.js';
import { pendingFrom, pendingOverflowPath, type PendingQueue, type PendingTxn } from './pending.js';
import { CommitLedger } from './ledger.js';
import { Maintenance } from './maintenance.js';
import { UploadPipeline } from './upload.js';
import { LineageWriter, type NewGeneration } from './markers.js';
import { segmentRange, syncFile, type ObjectRange } from './jobs.js';
import { Snapshotter, firstImage } from './snapshots.js';
import { divergedError } from './continuity.js';
import { CheckpointGate, checkpointNote, spoolContinues } from './checkpoints.js';
import { LeaseResponder } from './heal.js';

interface FlushWaiter {
  txid: number;
  resolve: (v: { txid: number }) => void;
  reject: (e: Error) => void;
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
  private opening: CommittedTransaction[] | null = [];
  private waiters: FlushWaiter[] = [];
  private pump: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private needGeneration: NewGeneration | null = null;
  private walLimitReached = false;
  private fatal: Error | null = null;
  private lastUpload: ReplicationStatus['lastUpload'] = null;
  private maintenance: Maintenance | null = null;
  private readonly keys;

  private readonly ledger: CommitLedger;
  private readonly uploads: UploadPipeline;
  private readonly checkpoints: CheckpointGate;
  private readonly markers: LineageWriter;
  private readonly snapshots: Snapshotter;
  /** The response to a lease loss: heal (leaseless) or stop for good. null: lease: false. */
  private readonly leaseLoss: LeaseResponder | null;

  constructor(private readonly ctx: ShipperContext) {
    this.ledger = new CommitLedger(ctx.options, {
      overflowPath: pendingOverflowPath(ctx.path),
      onOverflowFailure: (error) => ctx.log.warn('the list of transactions waiting for the store cannot go to its file beside the database; it stays in memory (48 bytes a transaction) until the store answers', { error: error.message }),
    });
    this.keys = formatKeys(ctx.options.prefix);
    this.uploads = new UploadPipeline(ctx, () => this.epoch);
    this.checkpoints = new CheckpointGate({
      path: ctx.path,
      options: ctx.options,
      metrics: ctx.metrics,
      log: ctx.log,
      ledger: this.ledger,
      database: () => this.db,
      raw: () => this.raw,
      closing: () => this.state === 'closing',
      snapshotting: () => this.snapshots.snapshotting,
      snapshotDue: () => this.snapshots.due(),
      header: (kind, txns) => this.header(kind, txns),
      noteError: (error) => this.uploads.noteError(error),
    });
    this.markers = new LineageWriter({ keys: this.keys, keyring: ctx.keyring, log: ctx.log, compression: ctx.options.compression, uploads: this.uploads });
    this.snapshots = new Snapshotter({
      path: ctx.path,
      options: ctx.options,
      metrics: ctx.metrics,
      log: ctx.log,
      keyring: ctx.keyring,
      keys: this.keys,
      ledger: this.ledger,
      uploads: this.uploads,
      markers: this.markers,
      closing: () => this.state === 'closing',
      stopped: () => this.stopped,
    });
    this.leaseLoss = ctx.lease
      ? new LeaseResponder(
          ctx.lease,
          {
            path: ctx.path,
            log: ctx.log,
            state: () => this.state,
            stopped: () => this.stopped,
            fatal: () => this.fatal !== null,
            txids: () => ({ committedTxid: this.ledger.committedTxid, durableTxid: this.ledger.durableTxid }),
            refuseWrites: (error) => {
              // The WAL limit's barrier is replaced by the lease's; after it, the next commit checks the limit again.
              this.walLimitReached = false;
              this.raw.setWriteBarrier(error);
            },
            rejectFlushes: (error) => {
              for (const w of this.waiters) w.reject(error);
              this.waiters = [];
            },
            uploads: this.uploads,
            idle: () => Promise.allSettled([this.pump, this.snapshots.periodic]),
            newEpoch: (epoch) => this.markers.newEpoch(epoch),
            resumeShipping: () => this.schedule(true),
            stopForGood: (e) => this.leaseLost(e),
            reacquired: () => this.ctx.metrics.leaseReacquired.inc(),
          },
          ctx.grantHow ?? null,
        )
      : null;
  }

  get queue(): PendingQueue {
    return this.ledger.queue;
  }

  get committedTxid(): number {
    return this.ledger.committedTxid;
  }

  get durableTxid(): number {
    return this.ledger.durableTxid;
  }

  get generation(): string | null {
    return this.markers.generation;
  }

  get epoch(): number {
    return this.markers.epoch;
  }

  private get stopped(): boolean {
    return this.uploads.stopped;
  }

  get location(): string {
    return this.ctx.storage.location;
  }

  /** The VFS sink: runs synchronously inside SQLite's commit, so it only records and schedules. */
  onCommit = (txn: CommittedTransaction): void => {
    if (this.opening) {
      // The page bytes are views valid only during this call: keep a copy.
      this.opening.push({ ...txn, pages: txn.pages.map((p) => ({ pgno: p.pgno, data: p.data.slice() })) });
      return;
    }
    this.track(txn);
  };

  private track(txn: CommittedTransaction): void {
    this.ledger.record(txn);
    this.ctx.metrics.committed.inc();
    if (this.ledger.queue.pendingWalBytes > this.ctx.options.walLimitBytes && !this.walLimitReached) {
      this.walLimitReached = true;
      this.raw.setWriteBarrier(
        new WalshipError(
          'ERR_WAL_LIMIT',
          `${this.ctx.path}: ${this.ledger.queue.pendingWalBytes} bytes of WAL are waiting for ${this.location} (walLimitBytes ${this.ctx.options.walLimitBytes}); writes are refused until the object store catches up. Last error: ${this.uploads.lastError?.message ?? 'none'}`,
          { details: { path: this.ctx.path, pendingWalBytes: this.ledger.queue.pendingWalBytes, walLimitBytes: this.ctx.options.walLimitBytes, durableTxid: this.ledger.durableTxid } },
        ),
      );
      this.ctx.log.error('WAL limit reached: refusing writes until the object store catches up', { txid: txn.txid, pendingWalBytes: this.ledger.queue.pendingWalBytes });
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
      checkpoint: (options) => this.ledger.duringCheckpoint(() => proto.checkpoint.call(db, options)),
      setWriteBarrier: (error) => proto.setWriteBarrier.call(db, error),
      status: () => proto.status.call(db),
    };
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    const fd = openSync(this.ctx.path, 'r');
    try {
      this.ledger.hashes = hashPages(fd, pageSize);
    } finally {
      closeSync(fd);
    }
    const opening = this.opening ?? [];
    this.opening = null;
    const spool = await readSpool(this.ctx.path);
    this.markers.open({
      databaseId: lineage.databaseId ?? randomBytes(16).toString('hex'),
      // With keys, a manifest without a MAC is rewritten sealed (below, with the new generation).
      manifestWritten: lineage.databaseId !== null && (this.ctx.keyring === undefined || lineage.authenticated),
      epoch: leaseEpoch ?? lineage.maxEpoch + 1,
    });
    this.ledger.durableTxid = 0;
    let continueAt: number | null = null;
    const tip = lineage.tip;
    // The file holds some state from the WAL's start up to the last checkpoint's marker K; replaying
    // every WAL transaction over it in order is exact from K on (earlier ones may mix states).
    const markerTxid = db.recovery.marker?.txid ?? 0;
    const at = new Map<number, bigint>();
    const after = new Map<number, bigint>();
    if (baseTxid !== undefined) at.set(baseTxid, this.ledger.hashes.value);
    for (const txn of opening) {
      for (const p of txn.pages) this.ledger.hashes.set(p.pgno, p.data);
      this.ledger.hashes.truncate(txn.commitSize);
      after.set(txn.txid, this.ledger.hashes.value);
      if (txn.txid >= markerTxid) at.set(txn.txid, this.ledger.hashes.value);
    }
    at.set(db.txid, this.ledger.hashes.value);
    this.ledger.committedTxid = db.txid;
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
        // The parent is the state the file was restored to: open may have recorded a marker transaction on top of it.
        this.needGeneration = { reason: `rolled back: the local database is at txid ${db.txid}, the replica at ${tip.txid} (allowRollback)`, parent: { generation: lineage.generation, txid: baseTxid ?? db.txid } };
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
          this.ledger.queue.push({
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
        this.checkpoints.adoptSpool(spool.maxTxid);
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
    const image = this.needGeneration ? firstImage(opening[0], markerTxid, this.ledger.hashes.lockPage, after.get(1)) : undefined;
    if (this.needGeneration && image) this.needGeneration.image = image;
    if (continueAt !== null) {
      this.markers.continueGeneration(lineage);
      this.ledger.durableTxid = continueAt;
      this.ledger.durableChecksum = tip!.checksum;
      this.snapshots.continueFrom(lineage.lastSnapshot?.txid ?? 0);
      this.raw.acknowledge(Math.max(continueAt, this.checkpoints.spoolMax ?? 0));
      this.ctx.lease?.recordDurable({ generation: this.generation!, txid: continueAt });
      this.ctx.log.info('continuing the replica', { generation: this.generation, txid: continueAt, epoch: this.epoch });
    } else {
      this.ctx.log.warn('starting a new generation', { reason: this.needGeneration!.reason, parent: this.needGeneration!.parent });
    }
    this.ctx.log.with({ generation: this.generation });
    if (markerTxid > this.ledger.durableTxid) this.ledger.cutBefore.add(markerTxid);
    const queued = this.ledger.queue.last()?.txid ?? this.ledger.durableTxid;
    for (const txn of opening) if (txn.txid > queued) this.ledger.queue.push(pendingFrom(txn, after.get(txn.txid)!));
    if (spool && this.checkpoints.spoolMax === null) removeSpool(this.ctx.path);
    this.ledger.walSinceCheckpoint = this.ledger.queue.pendingWalBytes;
    this.state = 'running';
    // A worker that died while the database was opening (onFailure found no running shipper).
    if (this.ctx.encoder.failure) this.encoderFailed(this.ctx.encoder.failure);
    this.leaseLoss?.started();
    this.maintenance = new Maintenance({ ...this.ctx, generation: () => this.generation });
    this.schedule(true);
  }

  /**
   * The local file cannot be proven to continue the replica: a new generation from it would make it
   * the latest state and bury the replica's tip (another writer's flushed transactions), so only
   * with allowRollback.
   */
  private diverged(reason: string, tip: { generation: string; txid: number; checksum: bigint; key: string }, localAtTip: bigint | undefined): NewGeneration {
    if (!this.ctx.options.allowRollback) {
      throw divergedError({ location: this.location, path: this.ctx.path, reason, localTxid: this.db.txid, localChecksum: this.ledger.hashes!.value, localChecksumAtTip: localAtTip, tip });
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
    if (this.leaseLoss?.leaseless) return Promise.reject(this.leaseLoss.notHeld());
    const txid = this.ledger.committedTxid;
    if (this.ledger.durableTxid >= txid && !this.needGeneration) return Promise.resolve({ txid: this.ledger.durableTxid });
    if (this.state === 'closed') return Promise.reject(new WalshipError('ERR_CLOSED', `${this.ctx.path} is closed; ${txid - this.ledger.durableTxid} transactions were not durable`, { details: { durableTxid: this.ledger.durableTxid, txid } }));
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
        const last = this.uploads.lastError;
        reject(
          new WalshipError(
            code,
            `flush of ${this.ctx.path} ${why}: txid ${txid} is committed, ${this.ledger.durableTxid} is durable in ${this.location}${last ? ` (last error: ${last.code}: ${last.message})` : ''}. The transactions stay in the WAL and keep shipping`,
            { details: { txid, durableTxid: this.ledger.durableTxid, committedTxid: this.ledger.committedTxid, lastError: last?.code ?? null, ...(timeoutMs !== undefined ? { timeoutMs } : {}) }, ...(cause !== undefined ? { cause } : {}) },
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
    if ((this.state !== 'running' && this.state !== 'closing') || this.stopped || this.leaseLoss?.leaseless) return;
    if (this.pump) return;
    const firstAt = this.ledger.queue.firstCommittedAt;
    const wantsWork = this.needGeneration !== null || firstAt !== undefined;
    if (!wantsWork) return;
    const window = this.ctx.options.batchWindowMs;
    const urgent = now || window === 0 || this.checkpoints.draining || this.waiters.length > 0 || this.needGeneration !== null;
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
      if (!this.markers.epochMarked) await this.markers.markEpoch(this.ledger.durableTxid + 1);
      const batch = this.ledger.takeBatch();
      if (batch.length > 0) await this.ship(batch);
    } catch (e) {
      if (this.stopped && isAbort(e)) return;
      // The lease ran out under this run: it ends here; the next one starts under the new epoch.
      if (this.leaseLoss?.leaseless) return;
      this.fail(e as Error);
    }
  }

  private header(kind: 'segment' | 'snapshot', txns: ObjectRange): ObjectHeaderInit {
    return this.markers.header(kind, this.ledger.hashes!.pageSize, txns);
  }

  private async ship(batch: PendingTxn[]): Promise<void> {
    const first = batch[0]!;
    const last = batch.at(-1)!;
    const key = this.keys.segment({ generation: this.generation!, level: 0, minTxid: first.txid, epoch: this.epoch });
    const header = this.header('segment', segmentRange(batch, this.ledger.durableChecksum));
    const walPath = `${this.ctx.path}-wal`;
    // Nothing is shipped that a local crash could take back. fdatasync on the thread pool, so
    // the application's event loop goes on meanwhile (an fsync of any descriptor flushes the file).
    await syncFile(walPath);
    const body = this.ctx.encoder.segment({ key, header, walPath, batch });
    const size = await this.uploads.upload(key, body, 'segment');
    this.ctx.metrics.segments.inc();
    this.ctx.metrics.segmentBytes.inc(size);
    this.ctx.metrics.walBytesShipped.inc(batch.reduce((n, t) => n + t.walBytes, 0));
    this.lastUpload = { key, txid: last.txid, at: new Date().toISOString() };
    this.markDurable(last.txid, last.postChecksum);
  }

  /** The lease is gone for good (see heal.ts): no more uploads, no more writes, every flush() waiting fails. */
  private leaseLost(e: LeaseLostError): void {
    if (!this.uploads.recordLeaseLoss(e)) return;
    this.raw.setWriteBarrier(e);
    this.uploads.abortAll(e);
    this.ctx.metrics.leaseLost.inc();
    this.fail(e);
  }

  private leaseStatus(): ReplicationStatus['lease'] {
    const lease = this.ctx.lease;
    if (!lease) return { mode: 'none', warning: 'lease: false: one writer per database is assumed, not enforced' };
    const g = lease.current();
    const expiresInMs = g ? Math.round(g.deadline - performance.now()) : null;
    return { mode: 'dynamodb', state: lease.state, epoch: this.epoch, owner: lease.owner, expiresInMs, how: this.leaseLoss?.how ?? null, reacquired: this.leaseLoss?.reacquired ?? 0 };
  }

  private markDurable(txid: number, checksum: bigint): void {
    const now = performance.now();
    const done = this.ledger.settle(txid, checksum, (committedAt) => this.ctx.metrics.lag.observe((now - committedAt) / 1000));
    this.ctx.metrics.shipped.inc(done);
    // Written by the next lease renewal or the release: no request on the commit path.
    this.ctx.lease?.recordDurable({ generation: this.generation!, txid: this.ledger.durableTxid });
    this.raw.acknowledge(this.ledger.durableTxid);
    this.checkpoints.afterDurable(this.ledger.durableTxid);
    const still: FlushWaiter[] = [];
    for (const w of this.waiters) {
      if (w.txid <= this.ledger.durableTxid && !this.needGeneration) w.resolve({ txid: this.ledger.durableTxid });
      else still.push(w);
    }
    this.waiters = still;
    if (this.walLimitReached && this.ledger.queue.pendingWalBytes <= this.ctx.options.walLimitBytes) {
      this.walLimitReached = false;
      this.raw.setWriteBarrier(null);
      this.ctx.log.info('WAL back under its limit: writes accepted again', { txid: this.ledger.durableTxid });
    }
    // The snapshot first: it takes the last checkpoint once its marker is durable (it holds further
    // checkpoints while it streams); a checkpoint first would move the target on every upload.
    this.snapshots.maybeSnapshot(this.checkpoints.lastCheckpoint);
    this.checkpoints.tryCheckpoint();
    this.maintenance?.poke();
  }

  /** A new generation: acknowledge everything locally, checkpoint, and ship the file as its snapshot. */
  private async startGeneration(ng: NewGeneration): Promise<void> {
    await this.markers.beginGeneration(ng, this.ledger.hashes!.pageSize);
    if (ng.image) {
      // Txid 1 is the snapshot (its pages, or the file with them applied); everything after it ships as segments.
      const image = ng.image;
      this.markers.restartEpochs(1);
      await this.markers.markEpoch(1);
      await this.snapshots.snapshotImage(image);
      this.needGeneration = null;
      this.ledger.durableChecksum = image.postChecksum;
      this.markDurable(1, image.postChecksum);
      return;
    }
    // The snapshot covers everything committed so far, so the WAL may be copied into the file.
    await this.checkpoints.checkpointAll(() => this.stopped);
    const txid = this.db.txid;
    const checksum = this.ledger.hashes!.value;
    this.markers.restartEpochs(txid);
    await this.markers.markEpoch(txid);
    await this.snapshots.snapshot(txid, checksum, this.ledger.lastCommitAt);
    this.ledger.queue.dropThrough(txid);
    this.ledger.walSinceCheckpoint = this.ledger.queue.pendingWalBytes;
    this.needGeneration = null;
    this.ledger.durableChecksum = checksum;
    this.markDurable(txid, checksum);
  }

  /**
   * The encoder worker crashed or stalled: replication stops and writes are refused with its error
   * (flush() and status() report it). What is durable stays durable; the rest stays in the WAL and
   * ships on the next open.
   */
  encoderFailed(e: WalshipError): void {
    // While starting, start() applies it once the database is open (it reads encoder.failure):
    // failing here would let start() set 'running' after it, with no write barrier.
    if (this.fatal || this.state === 'starting') return;
    this.raw.setWriteBarrier(e);
    this.fail(e);
  }

  private fail(e: Error): void {
    this.fatal = e;
    this.state = 'failed';
    const err = e as Error & { code?: string };
    this.uploads.noteError({ code: err.code ?? 'ERR_UNKNOWN', message: err.message, at: new Date().toISOString() });
    this.ctx.log.error('replication stopped', { code: err.code, error: err.message });
    for (const w of this.waiters) w.reject(e);
    this.waiters = [];
  }

  status(): ReplicationStatus {
    const firstAt = this.ledger.queue.firstCommittedAt;
    let walBytes = 0;
    try {
      walBytes = this.raw.status().walBytes;
    } catch {
      walBytes = 0;
    }
    return {
      replica: this.location,
      path: this.ctx.path,
      state: this.state !== 'running' ? this.state : this.leaseLoss?.leaseless ? 'leaseless' : this.uploads.lastError !== null ? 'degraded' : this.state,
      committedTxid: this.ledger.committedTxid,
      durableTxid: this.ledger.durableTxid,
      lagMs: firstAt !== undefined ? Math.round(performance.now() - firstAt) : 0,
      pendingTransactions: this.ledger.queue.length,
      pendingWalBytes: this.ledger.queue.pendingWalBytes,
      walBytes,
      generation: this.generation,
      epoch: this.epoch,
      walLimitReached: this.walLimitReached,
      lastSnapshot: this.snapshots.lastSnapshotInfo,
      lastUpload: this.lastUpload,
      lastError: this.uploads.lastError,
      lease: this.leaseStatus(),
      requests: this.ctx.metrics.requests.rates(),
      encoder: { thread: this.ctx.encoder.mode, failure: this.ctx.encoder.failure ? { code: this.ctx.encoder.failure.code, message: this.ctx.encoder.failure.message } : null },
    };
  }

  /** A checkpoint requested by the application: only what is durable, with the continuity note. */
  checkpointNow(): CheckpointResult {
    return this.checkpoints.checkpointNow();
  }

  private async flushWithin(deadline: number): Promise<boolean> {
    if (this.fatal !== null) return false;
    if (this.ledger.durableTxid >= this.ledger.committedTxid && !this.needGeneration) return true;
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
      await Promise.allSettled([this.snapshots.periodic]);
      // Its marker, or one an automatic checkpoint wrote during the flush above, ships too. A
      // checkpoint that fails (a full disk) leaves the WAL as it is: every transaction is durable,
      // the next open finds them there, and the close goes on (lease released, handle closed).
      const checkpointed = this.checkpoints.closingCheckpoint();
      if (checkpointed || this.ledger.durableTxid < this.ledger.committedTxid) flushed = await this.flushWithin(deadline);
    }
    this.uploads.stop();
    this.leaseLoss?.stop();
    if (this.timer) clearTimeout(this.timer);
    await Promise.allSettled([this.pump, this.snapshots.periodic, this.maintenance?.stop()]);
    await this.ctx.encoder.close();
    this.ledger.queue.close();
    const err = new WalshipError('ERR_CLOSED', `${this.ctx.path} closed before transactions ${this.ledger.durableTxid + 1}..${this.ledger.committedTxid} were durable; they stay in the WAL and ship on the next open`, {
      details: { durableTxid: this.ledger.durableTxid, committedTxid: this.ledger.committedTxid },
    });
    for (const w of this.waiters) w.reject(err);
    this.waiters = [];
    if (this.state !== 'failed') this.state = 'closed';
    return { flushed };
  }
}

function isAbort(e: unknown): boolean {
  const code = (e as { code?: string; name?: string })?.code;
  return code === 'ERR_CLOSED' || code === 'ERR_STORAGE_ABORTED' || (e as Error)?.name === 'AbortError';
}
