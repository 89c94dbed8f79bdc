import { closeSync, openSync, readSync } from 'node:fs';
import type { CapturedPage, CommittedTransaction, WalLocation } from '@walship/vfs';
import { WalshipError } from '@walship/vfs';
import { CHUNK, Chunk, ChunkFile, U32_FIELDS } from './pending-chunks.js';

const FRAME_HEADER = 24;
const WAL_HEADER = 32;

/** Where a transaction's frames are in the `-wal` file (the part of the VFS's WalLocation the queue keeps). */
export type WalSpan = Pick<WalLocation, 'salt1' | 'salt2' | 'firstFrame' | 'lastFrame' | 'offset' | 'length'>;

/**
 * A committed transaction waiting to be durable, as the shipper sees it. The queue does not keep
 * these objects: it keeps a few numbers per transaction and builds one on request.
 */
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
  wal: WalSpan | null;
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

/** Chunks at the front of the queue that stay in memory (the next batches read them). */
const FRONT_CHUNKS = 2;

/** The queue's overflow file beside the database (unlinked once open). */
export const pendingOverflowPath = (dbPath: string): string => `${dbPath}-walship-pending`;

export interface PendingQueueOptions {
  /** A file beside the database for the chunks between the front and the tail (null: all in memory). */
  overflowPath?: string | null;
  /** Told once when the overflow file cannot be written (the chunks then stay in memory). */
  onOverflowFailure?: (error: Error) => void;
}

/**
 * The queue of transactions not yet durable, in txid order. The WAL is the spool: past the memory
 * budget the newest transactions drop their page images and are read back from the WAL when their
 * batch is encoded, which is safe because frames are only checkpointed once durable.
 *
 * While S3 is down the queue grows by one entry per commit for as long as the outage lasts, so an
 * entry is 48 bytes in typed-array columns (txids are consecutive, so the txid is the position),
 * not an object with its own WAL location and checksum: about 29 MB for 10 minutes at 1k
 * commits/s. With an overflow file, only the first FRONT_CHUNKS chunks and the tail stay in memory
 * (4,096 entries, 192 KiB, a chunk); the ones between wait in the file and come back as the front
 * reaches them. Page images, while within the budget, sit in a map beside it.
 */
export class PendingQueue {
  private readonly chunks: Chunk[] = [];
  /** Index of the first transaction inside chunks[0]. */
  private head = 0;
  private count = 0;
  /** txid of the first transaction (meaningful while count > 0). */
  private firstTxid = 0;
  private pageSize = 0;
  private readonly pages = new Map<number, CapturedPage[]>();
  private memoryBytes = 0;
  private walBytes = 0;
  private readonly overflow: ChunkFile | null;
  /** The last chunk read from the overflow file without taking it back (loops over the queue). */
  private peeked: { chunk: Chunk; copy: Chunk } | null = null;

  constructor(
    private readonly budgetBytes: number,
    options: PendingQueueOptions = {},
  ) {
    this.overflow = options.overflowPath ? new ChunkFile(options.overflowPath, options.onOverflowFailure) : null;
  }

  /** Chunks whose columns are in the overflow file now. */
  get spilledChunks(): number {
    return this.chunks.reduce((n, c) => n + (c.resident ? 0 : 1), 0);
  }

  /** Why the overflow file could not be written (the chunks then stay in memory), or null. */
  get overflowFailure(): Error | null {
    return this.overflow?.failure ?? null;
  }

  /** Closes the overflow file. */
  close(): void {
    this.overflow?.close();
  }

  get length(): number {
    return this.count;
  }

  get pendingWalBytes(): number {
    return this.walBytes;
  }

  get inMemoryBytes(): number {
    return this.memoryBytes;
  }

  /** performance.now() at the commit of the oldest waiting transaction. */
  get firstCommittedAt(): number | undefined {
    return this.count > 0 ? this.chunks[0]!.committedAt[this.head] : undefined;
  }

  /** `keep`: copy the pages whatever the budget (their WAL frames may be overwritten before they are durable). */
  push(txn: PendingTxn, options: { keep?: boolean } = {}): void {
    if (this.count > 0 && txn.txid !== this.firstTxid + this.count) {
      throw new WalshipError('ERR_INTERNAL', `transaction ${txn.txid} queued after ${this.firstTxid + this.count - 1}: txids must follow each other`, { details: { txid: txn.txid, last: this.firstTxid + this.count - 1 } });
    }
    if (this.count > 0 && txn.pageSize !== this.pageSize) {
      throw new WalshipError('ERR_INTERNAL', `transaction ${txn.txid} has page size ${txn.pageSize}, the queue ${this.pageSize}`, { details: { txid: txn.txid, pageSize: txn.pageSize } });
    }
    const frameSize = FRAME_HEADER + txn.pageSize;
    // The queue keeps frame numbers only and derives offset and length from them.
    if (txn.wal !== null && (txn.wal.length !== (txn.wal.lastFrame - txn.wal.firstFrame + 1) * frameSize || txn.wal.offset !== WAL_HEADER + (txn.wal.firstFrame - 1) * frameSize)) {
      throw new WalshipError('ERR_INTERNAL', `transaction ${txn.txid}: WAL offset ${txn.wal.offset} and length ${txn.wal.length} do not match frames ${txn.wal.firstFrame}..${txn.wal.lastFrame}`, { details: { txid: txn.txid } });
    }
    if (this.count === 0) {
      this.firstTxid = txn.txid;
      this.pageSize = txn.pageSize;
    }
    const at = this.head + this.count;
    const ci = Math.floor(at / CHUNK);
    if (ci === this.chunks.length) {
      // The tail so far is full: past the front, it waits in the overflow file.
      if (this.overflow && ci - 1 >= FRONT_CHUNKS) this.overflow.spill(this.chunks[ci - 1]!);
      this.chunks.push(new Chunk());
    }
    const c = this.chunks[ci]!;
    const i = at % CHUNK;
    c.timestamp[i] = txn.timestamp;
    c.committedAt[i] = txn.committedAt;
    c.postChecksum[i] = txn.postChecksum;
    const u = i * U32_FIELDS;
    c.u32[u] = txn.commitSize;
    c.u32[u + 1] = txn.pageCount;
    c.u32[u + 2] = txn.wal?.firstFrame ?? 0;
    c.u32[u + 3] = txn.wal ? txn.wal.lastFrame - txn.wal.firstFrame + 1 : 0;
    c.u32[u + 4] = txn.wal?.salt1 ?? 0;
    c.u32[u + 5] = txn.wal?.salt2 ?? 0;
    this.count++;
    const bytes = txn.pageCount * txn.pageSize;
    // A transaction whose frames cannot be read back (rebuilt from the database file) stays in memory.
    if (txn.pages !== null && (txn.wal === null || options.keep === true || this.memoryBytes + bytes <= this.budgetBytes)) {
      // A live transaction's pages are views into the VFS's buffer, valid only during onCommit.
      this.pages.set(txn.txid, txn.wal === null ? txn.pages : txn.pages.map((p) => ({ pgno: p.pgno, data: p.data.slice() })));
      this.memoryBytes += bytes;
    }
    this.walBytes += txn.walBytes;
  }

  /** Keeps a spilled transaction's pages in memory from now on (its WAL frames are about to go). */
  pin(txn: PendingTxn, pages: CapturedPage[]): void {
    if (txn.pages !== null) return;
    txn.pages = pages;
    this.pages.set(txn.txid, pages);
    this.memoryBytes += txn.pageCount * txn.pageSize;
  }

  first(): PendingTxn | undefined {
    return this.at(0);
  }

  at(i: number): PendingTxn | undefined {
    if (i < 0 || i >= this.count) return undefined;
    const at = this.head + i;
    const c = this.columns(this.chunks[Math.floor(at / CHUNK)]!);
    const j = at % CHUNK;
    const u = j * U32_FIELDS;
    const txid = this.firstTxid + i;
    const pageSize = this.pageSize;
    const firstFrame = c.u32[u + 2]!;
    const frames = c.u32[u + 3]!;
    const frameSize = FRAME_HEADER + pageSize;
    const wal: WalSpan | null =
      firstFrame === 0
        ? null
        : { salt1: c.u32[u + 4]!, salt2: c.u32[u + 5]!, firstFrame, lastFrame: firstFrame + frames - 1, offset: WAL_HEADER + (firstFrame - 1) * frameSize, length: frames * frameSize };
    const pageCount = c.u32[u + 1]!;
    return {
      txid,
      timestamp: c.timestamp[j]!,
      commitSize: c.u32[u]!,
      pageSize,
      pageCount,
      postChecksum: c.postChecksum[j]!,
      walBytes: wal ? wal.length : pageCount * pageSize,
      wal,
      pages: this.pages.get(txid) ?? null,
      committedAt: c.committedAt[j]!,
    };
  }

  last(): PendingTxn | undefined {
    return this.at(this.count - 1);
  }

  /**
   * Removes every transaction with txid <= `txid` (they are durable or covered by a snapshot);
   * `dropped` sees each one's commit time. Returns how many went.
   */
  dropThrough(txid: number, dropped?: (committedAt: number) => void): number {
    let n = 0;
    while (this.count > 0 && this.firstTxid <= txid) {
      const c = this.chunks[0]!;
      const u = this.head * U32_FIELDS;
      const pageCount = c.u32[u + 1]!;
      const frames = c.u32[u + 3]!;
      this.walBytes -= c.u32[u + 2] === 0 ? pageCount * this.pageSize : frames * (FRAME_HEADER + this.pageSize);
      const pages = this.pages.get(this.firstTxid);
      if (pages !== undefined) {
        this.pages.delete(this.firstTxid);
        this.memoryBytes -= pageCount * this.pageSize;
      }
      dropped?.(c.committedAt[this.head]!);
      this.firstTxid++;
      this.count--;
      n++;
      if (++this.head === CHUNK) {
        this.chunks.shift();
        this.head = 0;
        // The front moved on: its chunks come back from the overflow file.
        for (let k = 0; k < FRONT_CHUNKS && k < this.chunks.length; k++) if (!this.chunks[k]!.resident) this.overflow!.load(this.chunks[k]!);
        this.peeked = null;
      }
    }
    if (this.count === 0) {
      // Keep one chunk for the next commits; drop the rest.
      this.chunks.length = Math.min(this.chunks.length, 1);
      this.head = 0;
      this.overflow?.clear();
      this.peeked = null;
    }
    return n;
  }

  /** A chunk's columns: its own, or a copy read from the overflow file (kept for the next look). */
  private columns(chunk: Chunk): Chunk {
    if (chunk.resident) return chunk;
    if (this.peeked?.chunk !== chunk) this.peeked = { chunk, copy: this.overflow!.peek(chunk) };
    return this.peeked.copy;
  }
}

/** Reads a spilled transaction's last page images back from its WAL frames, checking the salts. */
export function readFromWal(walPath: string, txn: PendingTxn, walFd?: number): CapturedPage[] {
  const fd = walFd ?? openSync(walPath, 'r');
  try {
    const run = readWalRun(walPath, fd, [txn], 0, 0);
    return pagesInRun(walPath, run, txn);
  } finally {
    if (walFd === undefined) closeSync(fd);
  }
}

/** The frames of consecutive transactions, read from the WAL with one read. */
export interface WalRun {
  /** WAL offset of `bytes[0]`. */
  offset: number;
  bytes: Uint8Array;
  /** How many transactions from `from` it holds. */
  count: number;
}

/**
 * Reads the frames of `txns[from]` and of the transactions after it whose frames follow on in the
 * same WAL generation, up to `maxBytes` (always at least `txns[from]`), in one read: a batch of
 * small transactions is a few reads and allocations, not one per transaction.
 */
export function readWalRun(walPath: string, fd: number, txns: readonly PendingTxn[], from: number, maxBytes: number): WalRun {
  const first = txns[from]!;
  const wal = first.wal;
  if (wal === null) throw new WalshipError('ERR_INTERNAL', `transaction ${first.txid} has neither pages nor a WAL location`, { details: { txid: first.txid } });
  let length = wal.length;
  let count = 1;
  for (let i = from + 1; i < txns.length; i++) {
    const t = txns[i]!;
    if (t.pages !== null || t.wal === null || t.wal.offset !== wal.offset + length || t.wal.salt1 !== wal.salt1 || t.wal.salt2 !== wal.salt2) break;
    if (length + t.wal.length > maxBytes) break;
    length += t.wal.length;
    count++;
  }
  const bytes = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, bytes, done, length - done, wal.offset + done);
    if (n === 0) break;
    done += n;
  }
  if (done !== length) {
    throw new WalshipError('ERR_SPOOL_LOST', `${walPath} ends before the frames of transaction ${first.txid} (needed ${length} bytes at ${wal.offset}, read ${done})`, {
      details: { walPath, txid: first.txid, offset: wal.offset },
    });
  }
  return { offset: wal.offset, bytes, count };
}

/** A transaction's last page images inside a run (views into it), checking the salts of its frames. */
export function pagesInRun(walPath: string, run: WalRun, txn: PendingTxn): CapturedPage[] {
  const wal = txn.wal!;
  const frameSize = FRAME_HEADER + txn.pageSize;
  const frames = wal.lastFrame - wal.firstFrame + 1;
  const base = wal.offset - run.offset;
  const buf = run.bytes;
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const latest = new Map<number, number>();
  for (let i = 0; i < frames; i++) {
    const at = base + i * frameSize;
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
