import type { CapturedPage } from '@walship/vfs';
import type { PendingTxn } from './pending.js';
import type { SegmentJob } from './jobs.js';

// A segment job as it crosses to the encoder worker: the batch's numbers in typed-array columns
// (one structured clone of a few arrays, not of a thousand small objects per window), page images
// only for the few transactions that hold them (a checkpoint's marker).

/** Per transaction: commitSize, pageSize, pageCount, salt1, salt2, firstFrame, lastFrame. */
const U32 = 7;
/** Per transaction: txid, walBytes, timestamp, committedAt, WAL offset, WAL length (-1: no WAL location). */
const F64 = 6;

export interface WireJob {
  key: string;
  header: SegmentJob['header'];
  walPath: string;
  u32: Uint32Array;
  f64: Float64Array;
  postChecksum: BigUint64Array;
  /** Index in the batch -> page images, for transactions that hold them. */
  pages: [number, CapturedPage[]][];
}

export function packJob(job: SegmentJob): WireJob {
  const n = job.batch.length;
  const u32 = new Uint32Array(n * U32);
  const f64 = new Float64Array(n * F64);
  const postChecksum = new BigUint64Array(n);
  const pages: [number, CapturedPage[]][] = [];
  job.batch.forEach((t, i) => {
    const w = t.wal;
    const u = i * U32;
    u32[u] = t.commitSize;
    u32[u + 1] = t.pageSize;
    u32[u + 2] = t.pageCount;
    u32[u + 3] = w?.salt1 ?? 0;
    u32[u + 4] = w?.salt2 ?? 0;
    u32[u + 5] = w?.firstFrame ?? 0;
    u32[u + 6] = w?.lastFrame ?? 0;
    const f = i * F64;
    f64[f] = t.txid;
    f64[f + 1] = t.walBytes;
    f64[f + 2] = t.timestamp;
    f64[f + 3] = t.committedAt;
    f64[f + 4] = w?.offset ?? -1;
    f64[f + 5] = w?.length ?? -1;
    postChecksum[i] = t.postChecksum;
    if (t.pages !== null) pages.push([i, t.pages]);
  });
  return { key: job.key, header: job.header, walPath: job.walPath, u32, f64, postChecksum, pages };
}

export function unpackJob(wire: WireJob): SegmentJob {
  const { u32, f64 } = wire;
  const held = new Map(wire.pages);
  const batch: PendingTxn[] = [];
  for (let i = 0; i < wire.postChecksum.length; i++) {
    const u = i * U32;
    const f = i * F64;
    const offset = f64[f + 4]!;
    batch.push({
      txid: f64[f]!,
      commitSize: u32[u]!,
      pageSize: u32[u + 1]!,
      pageCount: u32[u + 2]!,
      walBytes: f64[f + 1]!,
      timestamp: f64[f + 2]!,
      committedAt: f64[f + 3]!,
      postChecksum: wire.postChecksum[i]!,
      wal: offset < 0 ? null : { salt1: u32[u + 3]!, salt2: u32[u + 4]!, firstFrame: u32[u + 5]!, lastFrame: u32[u + 6]!, offset, length: f64[f + 5]! },
      pages: held.get(i) ?? null,
    });
  }
  return { key: wire.key, header: wire.header, walPath: wire.walPath, batch };
}
