import { closeSync, openSync, readSync } from 'node:fs';
import type { CapturedPage, CommittedTransaction, WalLocation } from '@walship/vfs';
import { WalshipError } from '@walship/vfs';

const FRAME_HEADER = 24;

/** A committed transaction waiting to be durable. Its pages may have been dropped from memory. */
export interface PendingTxn {
  txid: number;
  timestamp: number;
  commitSize: number;
  pageSize: number;
  pageCount: number;
  /** Rolling checksum of the database after this transaction. */
  postChecksum: bigint;
  /** Bytes of WAL this transaction occupies (its page bytes when it came from the database file). */
  walBytes: number;
  wal: WalLocation | null;
  /** null once spilled: the WAL still holds the frames until the transaction is durable. */
  pages: CapturedPage[] | null;
  /** performance.now() at commit, for the lag histogram. */
  committedAt: number;
}

export function pendingFrom(txn: CommittedTransaction, postChecksum: bigint): PendingTxn {
  return {
    txid: txn.txid,
    timestamp: txn.timestamp,
    commitSize: txn.commitSize,
    pageSize: txn.pageSize,
    pageCount: txn.pages.length,
    postChecksum,
    walBytes: txn.wal?.length ?? txn.pages.length * txn.pageSize,
    wal: txn.wal,
    pages: txn.pages,
    committedAt: performance.now(),
  };
}

/**
 * The queue of transactions not yet durable, in txid order. The WAL is the spool: past the memory
 * budget the newest transactions drop their page images and are read back from the WAL when their
 * batch is encoded, which is safe because frames are only checkpointed once durable.
 */
export class PendingQueue {
  private readonly items: PendingTxn[] = [];
  private head = 0;
  private memoryBytes = 0;
  private walBytes = 0;

  constructor(private readonly budgetBytes: number) {}

  get length(): number {
    return this.items.length - this.head;
  }

  get pendingWalBytes(): number {
    return this.walBytes;
  }

  get inMemoryBytes(): number {
    return this.memoryBytes;
  }

  push(txn: PendingTxn): void {
    const bytes = txn.pageCount * txn.pageSize;
    // A transaction whose frames cannot be read back (rebuilt from the database file) stays in memory.
    if (txn.wal !== null && this.memoryBytes + bytes > this.budgetBytes) txn.pages = null;
    else this.memoryBytes += bytes;
    this.items.push(txn);
    this.walBytes += txn.walBytes;
  }

  /** Keeps a spilled transaction's pages in memory from now on (its WAL frames are about to go). */
  pin(txn: PendingTxn, pages: CapturedPage[]): void {
    if (txn.pages !== null) return;
    txn.pages = pages;
    this.memoryBytes += txn.pageCount * txn.pageSize;
  }

  first(): PendingTxn | undefined {
    return this.items[this.head];
  }

  at(i: number): PendingTxn | undefined {
    return this.items[this.head + i];
  }

  last(): PendingTxn | undefined {
    return this.length > 0 ? this.items[this.items.length - 1] : undefined;
  }

  /** Removes every transaction with txid <= `txid` (they are durable or covered by a snapshot). */
  dropThrough(txid: number): PendingTxn[] {
    const dropped: PendingTxn[] = [];
    while (this.head < this.items.length && this.items[this.head]!.txid <= txid) {
      const t = this.items[this.head]!;
      this.items[this.head] = undefined as unknown as PendingTxn;
      this.head++;
      if (t.pages !== null) this.memoryBytes -= t.pageCount * t.pageSize;
      this.walBytes -= t.walBytes;
      dropped.push(t);
    }
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
    return dropped;
  }
}

/** Reads a spilled transaction's last page images back from its WAL frames, checking the salts. */
export function readFromWal(walPath: string, txn: PendingTxn, walFd?: number): CapturedPage[] {
  const wal = txn.wal;
  if (wal === null) throw new WalshipError('ERR_INTERNAL', `transaction ${txn.txid} has neither pages nor a WAL location`, { details: { txid: txn.txid } });
  const frameSize = FRAME_HEADER + txn.pageSize;
  const frames = wal.lastFrame - wal.firstFrame + 1;
  const buf = new Uint8Array(frames * frameSize);
  const fd = walFd ?? openSync(walPath, 'r');
  try {
    let done = 0;
    while (done < buf.length) {
      const n = readSync(fd, buf, done, buf.length - done, wal.offset + done);
      if (n === 0) break;
      done += n;
    }
    if (done !== buf.length) {
      throw new WalshipError('ERR_SPOOL_LOST', `${walPath} ends before the frames of transaction ${txn.txid} (needed ${buf.length} bytes at ${wal.offset}, read ${done})`, {
        details: { walPath, txid: txn.txid, offset: wal.offset },
      });
    }
  } finally {
    if (walFd === undefined) closeSync(fd);
  }
  const view = new DataView(buf.buffer);
  const latest = new Map<number, number>();
  for (let i = 0; i < frames; i++) {
    const at = i * frameSize;
    if (view.getUint32(at + 8) !== wal.salt1 || view.getUint32(at + 12) !== wal.salt2) {
      throw new WalshipError('ERR_SPOOL_LOST', `${walPath}: frame ${wal.firstFrame + i} of transaction ${txn.txid} was overwritten before it was durable`, {
        details: { walPath, txid: txn.txid, frame: wal.firstFrame + i },
      });
    }
    latest.set(view.getUint32(at), at + FRAME_HEADER);
  }
  const pages: CapturedPage[] = [];
  for (const pgno of [...latest.keys()].sort((a, b) => a - b)) {
    if (pgno > txn.commitSize) continue;
    const at = latest.get(pgno)!;
    pages.push({ pgno, data: buf.subarray(at, at + txn.pageSize) });
  }
  if (pages.length !== txn.pageCount) {
    throw new WalshipError('ERR_SPOOL_LOST', `${walPath}: transaction ${txn.txid} reads back ${pages.length} pages from the WAL, ${txn.pageCount} were captured`, {
      details: { walPath, txid: txn.txid },
    });
  }
  return pages;
}
