import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { WalshipError } from '@walship/vfs';
import { PageHashes, SegmentEncoder, lockPageNumber, type Compression, type Keyring, type ObjectHeaderInit } from '@walship/format';
import { pagesInRun, readWalRun, type PendingTxn } from './pending.js';

// Upload jobs as plain data (keys, headers, paths, txids): what an object holds is decided here,
// on the caller's side; encoding it into bytes is a function of the job alone, so a job could be
// posted to a worker thread as it is.

/** Encoding reads the WAL frames of consecutive transactions in reads of up to this many bytes. */
const WAL_RUN_BYTES = 4 * 1024 * 1024;

/** The lineage fields every object header of the current generation carries. */
export interface ObjectIdentity {
  databaseId: string;
  generation: string;
  epoch: number;
  pageSize: number;
  compression: Compression;
}

/** The transactions an object covers, as its header describes them. */
export interface ObjectRange {
  minTxid: number;
  maxTxid: number;
  commitSize: number;
  first: number;
  last: number;
  pre: bigint;
  post: bigint;
  count: number;
  pages: number;
}

export function objectHeader(kind: 'segment' | 'snapshot', id: ObjectIdentity, txns: ObjectRange): ObjectHeaderInit {
  return {
    kind,
    databaseId: id.databaseId,
    generation: id.generation,
    epoch: id.epoch,
    level: 0,
    minTxid: txns.minTxid,
    maxTxid: txns.maxTxid,
    pageSize: id.pageSize,
    commitSize: txns.commitSize,
    firstTimestamp: txns.first,
    lastTimestamp: txns.last,
    preChecksum: txns.pre,
    postChecksum: txns.post,
    transactionCount: txns.count,
    pageCount: txns.pages,
    compression: id.compression,
  };
}

/** A level-0 segment: the batch's transactions, their pages from memory or read back from the WAL. */
export interface SegmentJob {
  key: string;
  header: ObjectHeaderInit;
  walPath: string;
  batch: PendingTxn[];
}

export function segmentRange(batch: PendingTxn[], preChecksum: bigint): ObjectRange {
  const first = batch[0]!;
  const last = batch.at(-1)!;
  return {
    minTxid: first.txid,
    maxTxid: last.txid,
    commitSize: last.commitSize,
    first: first.timestamp,
    last: last.timestamp,
    pre: preChecksum,
    post: last.postChecksum,
    count: batch.length,
    pages: batch.reduce((n, t) => n + t.pageCount, 0),
  };
}

export function segmentBody(job: SegmentJob, keyring: Keyring | undefined): () => AsyncGenerator<Uint8Array> {
  const { header, walPath, batch } = job;
  return async function* (): AsyncGenerator<Uint8Array> {
    const enc = new SegmentEncoder(header, keyring ? { keyring } : {});
    const spilled = batch.some((t) => t.pages === null);
    const fd = spilled ? openSync(walPath, 'r') : undefined;
    try {
      for (let i = 0; i < batch.length; ) {
        // Transactions read back from the WAL come a run of consecutive frames per read.
        const run = batch[i]!.pages === null ? readWalRun(walPath, fd!, batch, i, WAL_RUN_BYTES) : null;
        for (const end = i + (run?.count ?? 1); i < end; i++) {
          const t = batch[i]!;
          const pages = run ? pagesInRun(walPath, run, t) : t.pages!;
          enc.beginTransaction({ txid: t.txid, timestamp: t.timestamp, commitSize: t.commitSize, postChecksum: t.postChecksum, pageCount: t.pageCount });
          // Chunks leave as they complete, inside a large transaction too: the worker keeps
          // answering (the stall watchdog) and holds about one chunk, not the transaction.
          for (let j = 0; j < pages.length; j++) {
            const p = pages[j]!;
            enc.writePage(p.pgno, p.data);
            if ((j & 255) === 255) yield* enc.take();
          }
          enc.endTransaction();
          yield* enc.take();
        }
      }
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
    enc.finish();
    yield* enc.take();
  };
}

/**
 * A snapshot: the database file, which holds exactly the state after `txid` until the next
 * checkpoint (held off meanwhile). `committedAt` is the commit time of `txid`: restore by time
 * reads it from the header.
 */
export interface SnapshotJob {
  key: string;
  header: ObjectHeaderInit;
  path: string;
  pageSize: number;
  txid: number;
  checksum: bigint;
  committedAt: number;
  commitSize: number;
  pageCount: number;
  /** Pages that replace the file's (and may lie past its end): an existing file's txid 1, applied to the file that has not been checkpointed since. */
  overlay?: ReadonlyMap<number, Uint8Array>;
}

/** Sizes the snapshot of the database file at `path` as it is now. */
export function snapshotSize(path: string, pageSize: number): { commitSize: number; pageCount: number } {
  const fd = openSync(path, 'r');
  const commitSize = Math.floor(fstatSync(fd).size / pageSize);
  closeSync(fd);
  const lockPage = lockPageNumber(pageSize);
  const pageCount = commitSize - (commitSize >= lockPage ? 1 : 0);
  return { commitSize, pageCount };
}

export function snapshotBody(job: SnapshotJob, keyring: Keyring | undefined): () => AsyncGenerator<Uint8Array> {
  const { header, path, pageSize, txid, checksum, commitSize, pageCount } = job;
  const now = job.committedAt;
  const lockPage = lockPageNumber(pageSize);
  const hashesOf = (): PageHashes => new PageHashes(pageSize);
  return async function* (): AsyncGenerator<Uint8Array> {
    const enc = new SegmentEncoder(header, keyring ? { keyring } : {});
    const seen = hashesOf();
    enc.beginTransaction({ txid, timestamp: now, commitSize, postChecksum: checksum, pageCount });
    const rfd = openSync(path, 'r');
    try {
      const buf = new Uint8Array(pageSize * 64);
      for (let start = 1; start <= commitSize; start += 64) {
        const n = Math.min(64, commitSize - start + 1);
        const got = readSync(rfd, buf, 0, n * pageSize, (start - 1) * pageSize);
        if (got !== n * pageSize && !job.overlay) throw new WalshipError('ERR_SNAPSHOT_READ', `${path}: short read at page ${start} while taking a snapshot`, { details: { path, page: start } });
        for (let i = 0; i < n; i++) {
          const pgno = start + i;
          if (pgno === lockPage) continue;
          const over = job.overlay?.get(pgno);
          if (over === undefined && (i + 1) * pageSize > got) throw new WalshipError('ERR_SNAPSHOT_READ', `${path}: short read at page ${pgno} while taking a snapshot`, { details: { path, page: pgno } });
          const data = over ?? buf.slice(i * pageSize, (i + 1) * pageSize);
          seen.set(pgno, data);
          enc.writePage(pgno, data);
        }
        yield* enc.take();
      }
    } finally {
      closeSync(rfd);
    }
    if (seen.value !== checksum) {
      throw new WalshipError('ERR_SNAPSHOT_MISMATCH', `${path}: the database file at txid ${txid} has checksum ${seen.value.toString(16)}, capture expected ${checksum.toString(16)}; not uploading it`, {
        details: { path, txid },
      });
    }
    enc.endTransaction();
    enc.finish();
    yield* enc.take();
  };
}

/** fdatasync of a file that may be gone (ENOENT: nothing to sync). */
export async function syncFile(path: string): Promise<void> {
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
