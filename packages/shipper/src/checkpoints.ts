import { setTimeout as delay } from 'node:timers/promises';
import { WalshipError, type CheckpointOptions, type CheckpointResult } from '@walship/vfs';
import type { ObjectHeaderInit } from '@walship/format';
import type { ResolvedOptions } from './options.js';
import type { Logger } from './log.js';
import type { ShipperMetrics } from './metrics.js';
import type { CommitLedger } from './ledger.js';
import type { ErrorInfo } from './upload.js';
import type { ObjectRange } from './jobs.js';
import { readFromWal } from './pending.js';
import { removeSpool, writeSpool } from './spool.js';

const DRAIN_ROUNDS = 1;
const SPOOL_MAX_BYTES = 8 * 1024 * 1024;

/** The last checkpoint. `snapshotBase`: its marker starts a segment, so a periodic snapshot may be taken at it. */
export interface CheckpointInfo {
  txid: number;
  checksum: bigint;
  commitSize: number;
  timestamp: number;
  snapshotBase: boolean;
}

/** What the gate reads from the coordinator: settings, the ledger, the database and the snapshot state. */
export interface CheckpointHost {
  path: string;
  options: ResolvedOptions;
  metrics: ShipperMetrics;
  log: Logger;
  ledger: CommitLedger;
  /** The database (set at start-up): its txid and whether a transaction is open. */
  database(): { readonly txid: number; readonly inTransaction: boolean };
  /** The database's own acknowledge and checkpoint, which the replicated handle hides. */
  raw(): { acknowledge(txid: number): void; checkpoint(options?: CheckpointOptions): CheckpointResult };
  closing(): boolean;
  snapshotting(): boolean;
  snapshotDue(): boolean;
  header(kind: 'segment', txns: ObjectRange): ObjectHeaderInit;
  noteError(error: ErrorInfo): void;
}

/**
 * Checkpoint gating: a checkpoint copies only what is durable (or spooled), and leaves the
 * continuity note in its marker. It owns the drain state, the spool's reach and the last checkpoint.
 */
export class CheckpointGate {
  /** Uploads go back to back (window 0) until a checkpoint finds nothing behind them. */
  draining = false;
  private drainRounds = 0;
  /** Max txid in the overflow spool file, while it holds transactions not yet durable. */
  spoolMax: number | null = null;
  lastCheckpoint: CheckpointInfo | null = null;

  constructor(private readonly host: CheckpointHost) {}

  /** Start-up found a spool that continues the replica: its transactions ship from it. */
  adoptSpool(maxTxid: number): void {
    this.spoolMax = maxTxid;
  }

  /** After an upload: the spool goes once everything in it is durable. */
  afterDurable(durableTxid: number): void {
    if (this.spoolMax !== null && durableTxid >= this.spoolMax) {
      removeSpool(this.host.path);
      this.spoolMax = null;
    }
  }

  /** After an upload and the snapshot check: a checkpoint if one is due; a failure is noted, not thrown. */
  tryCheckpoint(): void {
    try {
      this.maybeCheckpoint();
    } catch (e) {
      // A full disk or an I/O error while checkpointing: SQLite rolled the marker back and the WAL
      // keeps every frame; the next upload tries again. The application's own writes see the same
      // error where they hit it.
      const err = e as Error & { code?: string };
      this.host.noteError({ code: err.code ?? 'ERR_UNKNOWN', message: `checkpoint failed: ${err.message}`, at: new Date().toISOString() });
      this.draining = false;
      this.host.log.warn('checkpoint failed; the WAL keeps its frames and the next upload tries again', { code: err.code, error: err.message });
    }
  }

  /**
   * SQLite checkpoints the whole WAL, so a checkpoint needs every transaction in it durable. Under
   * steady writes the shipper drains (window 0) until one upload finishes with nothing behind it.
   */
  private maybeCheckpoint(): void {
    const { ledger } = this.host;
    // While closing, stop() takes the last checkpoint itself and ships its marker.
    if (this.host.closing()) return;
    // A due snapshot waits for the marker of the checkpoint it will be taken at: a new checkpoint
    // first would replace it before it is durable, again after every upload under steady writes,
    // and periodic snapshots would never land (skipping a checkpoint only lets the WAL grow).
    const cp = this.lastCheckpoint;
    const awaitingBase = cp !== null && cp.snapshotBase && cp.txid > ledger.durableTxid && this.host.snapshotDue();
    if (ledger.walSinceCheckpoint < this.host.options.checkpointBytes || this.host.snapshotting() || awaitingBase) {
      this.draining = false;
      this.drainRounds = 0;
      return;
    }
    if (ledger.queue.length > 0) {
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
    const { ledger } = this.host;
    let bytes = 0;
    for (let i = 0; i < ledger.queue.length && bytes <= SPOOL_MAX_BYTES; i++) bytes += ledger.queue.at(i)!.pageCount * ledger.queue.at(i)!.pageSize;
    if (bytes > SPOOL_MAX_BYTES || this.host.database().inTransaction) return false;
    const walPath = `${this.host.path}-wal`;
    const txns = [];
    for (let i = 0; i < ledger.queue.length; i++) {
      const t = ledger.queue.at(i)!;
      if (t.pages === null) ledger.queue.pin(t, readFromWal(walPath, t));
      txns.push({ txid: t.txid, timestamp: t.timestamp, commitSize: t.commitSize, postChecksum: t.postChecksum, pages: t.pages! });
    }
    const first = txns[0]!;
    const last = txns.at(-1)!;
    writeSpool(
      this.host.path,
      this.host.header('segment', {
        minTxid: first.txid,
        maxTxid: last.txid,
        commitSize: last.commitSize,
        first: first.timestamp,
        last: last.timestamp,
        pre: ledger.durableChecksum,
        post: last.postChecksum,
        count: txns.length,
        pages: txns.reduce((n, t) => n + t.pages.length, 0),
      }),
      txns,
    );
    this.spoolMax = last.txid;
    // From here these transactions are acknowledged (acknowledge cannot be taken back), so any
    // later checkpoint, the application's too, may copy them into the file: when this one fails or
    // finds the WAL busy, the spool stays and keeps them until they are durable (afterDurable).
    this.host.raw().acknowledge(last.txid);
    const r = this.checkpointNow();
    if (!r.checkpointed) return false;
    this.host.metrics.spooled.inc(txns.length);
    this.host.log.debug('checkpointed through the spool', { spooled: txns.length, txid: r.lastTxid });
    return true;
  }

  /**
   * The checkpoint a generation snapshot is taken after: everything local acknowledged, then
   * checkpointed, retried while the disk fails (SQLite rolled the marker back) or a reader holds the
   * WAL (up to 100 busy rounds, then ERR_CHECKPOINT_BUSY).
   */
  async checkpointAll(stopped: () => boolean): Promise<void> {
    const { ledger } = this.host;
    let cp = { checkpointed: false, reason: 'not-durable' } as CheckpointResult;
    let busy = 0;
    let failures = 0;
    while (!cp.checkpointed && cp.reason !== 'empty' && busy < 100) {
      this.host.raw().acknowledge(this.host.database().txid);
      try {
        cp = this.host.raw().checkpoint({ note: checkpointNote(ledger.hashes!.value) });
      } catch (e) {
        // A full disk or an I/O error: SQLite rolled the marker back; wait for the disk and try again.
        if (!isLocalIoError(e) || stopped()) throw e;
        const err = e as Error & { code: string };
        this.host.noteError({ code: err.code, message: `checkpoint for the generation snapshot failed: ${err.message}`, at: new Date().toISOString() });
        if (failures++ === 0) this.host.log.warn('checkpoint for the generation snapshot failed; retrying', { code: err.code, error: err.message });
        await delay(Math.min(5000, 50 * 2 ** Math.min(failures, 7)));
        continue;
      }
      if (!cp.checkpointed && cp.reason === 'busy') {
        busy++;
        await delay(10);
      }
    }
    if (!cp.checkpointed && cp.reason !== 'empty') {
      throw new WalshipError('ERR_CHECKPOINT_BUSY', `${this.host.path}: could not checkpoint for the generation snapshot (${cp.reason}); an open transaction may be holding the database`, { details: { reason: cp.reason } });
    }
  }

  /** A checkpoint requested by the application: only what is durable, with the continuity note. */
  checkpointNow(): CheckpointResult {
    const { ledger } = this.host;
    if (this.host.snapshotting()) return { checkpointed: false, reason: 'busy', lastTxid: this.host.database().txid, durableTxid: ledger.durableTxid };
    const r = this.host.raw().checkpoint({ note: checkpointNote(ledger.hashes!.value) });
    if (r.checkpointed) this.checkpointed(r.lastTxid);
    return r;
  }

  /**
   * The last checkpoint of close(). A full disk or an I/O error fails only the tidy-up: the marker
   * was rolled back, the WAL keeps every frame and the next open recovers them; it is noted and
   * logged, and close() goes on to release the lease. Other errors are thrown.
   */
  closingCheckpoint(): boolean {
    try {
      return this.checkpointNow().checkpointed;
    } catch (e) {
      if (!isLocalIoError(e)) throw e;
      const err = e as Error & { code: string };
      this.host.noteError({ code: err.code, message: `the checkpoint at close failed: ${err.message}`, at: new Date().toISOString() });
      this.host.log.warn('the checkpoint at close failed; the WAL keeps its frames and the next open recovers them', { code: err.code, error: err.message });
      return false;
    }
  }

  private checkpointed(txid: number): void {
    const { ledger } = this.host;
    // Restore, retention and the lineage read expect a snapshot's txid to start a level-0 segment,
    // so the marker of a checkpoint a snapshot may be taken at starts one. Any other marker ships
    // inside the next window's segment: cutting at every marker split each window's batch in two
    // under steady writes (two PUTs a window, issue 11).
    const snapshotBase = this.host.snapshotDue() && txid > ledger.durableTxid;
    if (snapshotBase) ledger.cutBefore.add(txid);
    this.host.metrics.checkpoints.inc();
    ledger.walSinceCheckpoint = ledger.queue.pendingWalBytes;
    this.draining = false;
    this.lastCheckpoint = { txid, checksum: ledger.hashes!.value, commitSize: ledger.hashes!.pageCount, timestamp: ledger.lastCommitAt, snapshotBase };
    this.host.log.debug('checkpointed', { txid });
  }
}

/** SQLite's disk-full and I/O error codes: the local disk, not walship's state, is the problem. */
export function isLocalIoError(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' && (code.startsWith('SQLITE_FULL') || code.startsWith('SQLITE_IOERR'));
}

/** What a checkpoint leaves in the marker row: the checksum of the state the marker follows. */
export function checkpointNote(checksum: bigint): string {
  return `walship:pre-marker-checksum:${checksum.toString(16).padStart(16, '0')}`;
}

/**
 * A spool continues the replica when it holds the replica's tip (or starts right after it) with the
 * same checksum, and the database file's last checkpoint came right after the spool's last transaction.
 */
export function spoolContinues(
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
