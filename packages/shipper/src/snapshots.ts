import { PageHashes, SegmentEncoder, type Keyring } from '@walship/format';
import type { CommittedTransaction } from '@walship/vfs';
import { WalshipError } from '@walship/vfs';
import type { ResolvedOptions } from './options.js';
import type { Logger } from './log.js';
import type { ShipperMetrics } from './metrics.js';
import type { CommitLedger } from './ledger.js';
import type { UploadPipeline } from './upload.js';
import type { LineageWriter } from './markers.js';
import type { CheckpointInfo } from './checkpoints.js';
import { snapshotBody, snapshotSize } from './jobs.js';
import { lockPageNumber } from '@walship/format';

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

export interface FirstImage {
  commitSize: number;
  postChecksum: bigint;
  timestamp: number;
  /** The pages of txid 1, in page order: every page of the database when `whole`. */
  pages: { pgno: number; data: Uint8Array }[];
  /**
   * False for a file written before walship opened it: txid 1 leaves most pages as they are, and
   * the snapshot is the main file (which no checkpoint has touched yet) with these pages over it.
   */
  whole: boolean;
}

/**
 * A new database's txid 1 (walship's own table, created at open) writes every page of the
 * database it leaves, so its pages are the whole database at txid 1: the generation's snapshot is
 * made of them at once, with no checkpoint, and every txid from 1 is restorable (a snapshot of the
 * file taken at the first checkpoint would fold every transaction committed before it). The file
 * is not read: SQLite wrote its header page outside the WAL when it switched to WAL. In a file
 * written before walship opened it, txid 1 rewrites only some pages (`whole` false): the snapshot
 * is then read from the main file, which holds the state before txid 1 until the first checkpoint
 * (none runs before the generation's snapshot is durable), with txid 1's pages over it; its
 * checksum is checked against capture's as it streams.
 */
export function firstImage(first: CommittedTransaction | undefined, markerTxid: number, lockPage: number, postChecksum: bigint | undefined): FirstImage | undefined {
  if (!first || first.txid !== 1 || markerTxid !== 0 || postChecksum === undefined) return undefined;
  const pgnos = new Set(first.pages.map((p) => p.pgno));
  if (pgnos.size !== first.pages.length || first.pages.some((p) => p.pgno > first.commitSize)) return undefined;
  const pages = first.pages.map((p) => ({ pgno: p.pgno, data: p.data.slice() })).sort((a, b) => a.pgno - b.pgno);
  return { commitSize: first.commitSize, postChecksum, timestamp: first.timestamp, pages, whole: coversAll(pgnos, first.commitSize, lockPage) };
}

function coversAll(pgnos: ReadonlySet<number>, commitSize: number, lockPage: number): boolean {
  for (let pgno = 1; pgno <= commitSize; pgno++) if (pgno !== lockPage && !pgnos.has(pgno)) return false;
  return true;
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

  /** The generation snapshot of a new database at txid 1, from the pages of txid 1 (see firstImage). */
  async snapshotImage(image: FirstImage): Promise<void> {
    const { markers } = this.host;
    const pageSize = this.host.ledger.hashes!.pageSize;
    const txid = 1;
    const key = this.host.keys.snapshot({ generation: markers.generation!, txid, epoch: markers.epoch });
    const at = image.timestamp;
    if (!image.whole) {
      const commitSize = image.commitSize;
      const pageCount = commitSize - (commitSize >= lockPageNumber(pageSize) ? 1 : 0);
      const header = markers.header('snapshot', pageSize, { minTxid: txid, maxTxid: txid, commitSize, first: at, last: at, pre: 0n, post: image.postChecksum, count: 1, pages: pageCount });
      const overlay = new Map(image.pages.map((p) => [p.pgno, p.data]));
      const body = snapshotBody({ key, header, path: this.host.path, pageSize, txid, checksum: image.postChecksum, committedAt: at, commitSize, pageCount, overlay }, this.host.keyring);
      // Checkpoints wait while the main file streams (it must stay the state before txid 1).
      this.snapshotting = true;
      try {
        await this.uploaded(key, txid, () => this.host.uploads.upload(key, body, 'snapshot'));
      } finally {
        this.snapshotting = false;
      }
      return;
    }
    const header = markers.header('snapshot', pageSize, { minTxid: txid, maxTxid: txid, commitSize: image.commitSize, first: at, last: at, pre: 0n, post: image.postChecksum, count: 1, pages: image.pages.length });
    const keyring = this.host.keyring;
    const path = this.host.path;
    const body = async function* (): AsyncGenerator<Uint8Array> {
      const enc = new SegmentEncoder(header, keyring ? { keyring } : {});
      const seen = new PageHashes(pageSize);
      enc.beginTransaction({ txid, timestamp: at, commitSize: image.commitSize, postChecksum: image.postChecksum, pageCount: image.pages.length });
      for (const p of image.pages) {
        seen.set(p.pgno, p.data);
        enc.writePage(p.pgno, p.data);
      }
      if (seen.value !== image.postChecksum) {
        throw new WalshipError('ERR_SNAPSHOT_MISMATCH', `${path}: the pages of txid 1 hash to ${seen.value.toString(16)}, capture expected ${image.postChecksum.toString(16)}; not uploading them`, { details: { path, txid } });
      }
      enc.endTransaction();
      enc.finish();
      yield* enc.take();
    };
    await this.uploaded(key, txid, () => this.host.uploads.upload(key, body, 'snapshot'));
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
      await this.uploaded(key, txid, () => this.host.uploads.upload(key, body, 'snapshot'));
    } finally {
      this.snapshotting = false;
    }
  }

  private async uploaded(key: string, txid: number, upload: () => Promise<number>): Promise<void> {
    const size = await upload();
    this.host.metrics.snapshots.inc();
    this.host.metrics.snapshotBytes.inc(size);
    this.lastSnapshotTxid = txid;
    this.lastSnapshotAt = Date.now();
    this.lastSnapshotInfo = { txid, at: new Date().toISOString() };
    this.host.log.info('snapshot uploaded', { key, txid, bytes: size });
  }
}
