import { test } from 'node:test';
import assert from 'node:assert/strict';
import { packJob, unpackJob } from './wire.js';
import type { SegmentJob } from './jobs.js';
import type { PendingTxn } from './pending.js';

test('a segment job crosses to the worker and back unchanged: WAL spans, page images, txids and WAL sizes past 2^32, 64-bit checksums', () => {
  const page = new Uint8Array(4096).fill(7);
  const batch: PendingTxn[] = [
    { txid: 2 ** 33 + 5, timestamp: 1.7e12, commitSize: 12, pageSize: 4096, pageCount: 2, postChecksum: 2n ** 64n - 1n, walBytes: 2 ** 32 + 8240, wal: { salt1: 0xffffffff, salt2: 1, firstFrame: 3, lastFrame: 4, offset: 2 ** 35, length: 8240 }, pages: null, committedAt: 12.5 },
    { txid: 2 ** 33 + 6, timestamp: 1.7e12 + 1, commitSize: 13, pageSize: 4096, pageCount: 1, postChecksum: 0n, walBytes: 4096, wal: null, pages: [{ pgno: 13, data: page }], committedAt: 13.25 },
  ];
  const job: SegmentJob = { key: 'k', header: { kind: 'segment' } as SegmentJob['header'], walPath: '/x-wal', batch };
  const back = unpackJob(structuredClone(packJob(job)));
  assert.deepEqual(back, job);
});
