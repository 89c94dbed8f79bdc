import type { Keyring } from '@walship/format';
import type { ResolvedOptions } from './options.js';
import type { Logger } from './log.js';
import type { ShipperMetrics } from './metrics.js';
import type { CommitLedger } from './ledger.js';
import type { UploadPipeline } from './upload.js';
import type { LineageWriter } from './markers.js';
import type { CheckpointInfo } from './checkpoints.js';
import { snapshotBody, snapshotSize } from './jobs.js';

export interface SnapshotHost {
  path: string;
  options: ResolvedOptions;
  metrics: ShipperMetrics;
  log: Logger;
  keyring: Keyring | undefined;
  keys: { snapshot(o: { generation: string; txid: number; epoch: number }): string };
  ledger: CommitLedger;
  uploads: UploadPipeline;
  markers: LineageWriter;
  closing(): boolean;
  stopped(): boolean;
}

/**
 * Snapshots: the one that starts each generation and the periodic ones taken at a checkpoint. It
 * owns whether one is streaming, the periodic one in flight, and when and where the last one was.
 */
export class Snapshotter {
  /** A snapshot is streaming the database file: checkpoints wait. */
  snapshotting = false;
  /** The periodic snapshot in flight. */
  periodic: Promise<void> | null = null;
  lastSnapshotInfo: { txid: number; at: string } | null = null;
  private lastSnapshotTxid = 0;
  private lastSnapshotAt = 0;

  constructor(private readonly host: SnapshotHost) {}

  /** Start-up continues a generation whose last snapshot is at `txid`. */
  continueFrom(txid: number): void {
    this.lastSnapshotTxid = txid;
  }

  /** A periodic snapshot is due: it is taken at the next checkpoint once that one's marker is durable. */
  due(): boolean {
    const interval = this.host.options.snapshotIntervalMs;
    // Not while closing: close would cut the upload short (the next open takes it).
    if (interval === 0 || this.host.closing() || this.host.stopped()) return false;
    return Date.now() - this.lastSnapshotAt >= interval;
  }

  maybeSnapshot(cp: CheckpointInfo | null): void {
    if (this.snapshotting || this.periodic || !this.due()) return;
    if (!cp || !cp.snapshotBase || cp.txid <= this.lastSnapshotTxid) return;
    // Not before the segments up to it are in the store: a checkpoint through the spool copies
    // transactions that are not uploaded yet, and a snapshot past them would make a restart take
    // the snapshot as the tip and never ship them (their txids would not be restorable).
    if (cp.txid > this.host.ledger.durableTxid) return;
    this.periodic = this.snapshot(cp.txid, cp.checksum, cp.timestamp)
      .catch((e: unknown) => {
        if (!this.host.stopped()) this.host.log.warn('periodic snapshot failed; the next checkpoint tries again', { error: (e as Error).message });
      })
      .finally(() => {
        this.periodic = null;
      });
  }

  /**
   * Streams the database file, which holds exactly the state after `txid` until the next
   * checkpoint (held off meanwhile), so writers go on into the WAL for the whole upload.
   */
  /** `committedAt` is the commit time of `txid`: restore by time reads it from the header. */
  async snapshot(txid: number, checksum: bigint, committedAt: number): Promise<void> {
    const { markers } = this.host;
    this.snapshotting = true;
    try {
      const path = this.host.path;
      const pageSize = this.host.ledger.hashes!.pageSize;
      const { commitSize, pageCount } = snapshotSize(path, pageSize);
      const key = this.host.keys.snapshot({ generation: markers.generation!, txid, epoch: markers.epoch });
      const now = committedAt;
      const header = markers.header('snapshot', pageSize, { minTxid: txid, maxTxid: txid, commitSize, first: now, last: now, pre: 0n, post: checksum, count: 1, pages: pageCount });
      const body = snapshotBody({ key, header, path, pageSize, txid, checksum, committedAt: now, commitSize, pageCount }, this.host.keyring);
      const size = await this.host.uploads.upload(key, body, 'snapshot');
      this.host.metrics.snapshots.inc();
      this.host.metrics.snapshotBytes.inc(size);
      this.lastSnapshotTxid = txid;
      this.lastSnapshotAt = Date.now();
      this.lastSnapshotInfo = { txid, at: new Date().toISOString() };
      this.host.log.info('snapshot uploaded', { key, txid, bytes: size });
    } finally {
      this.snapshotting = false;
    }
  }
}
