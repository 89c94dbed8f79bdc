import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FormatError, HEADER_SIZE, SegmentEncoder, decodeHeader, encodeSegment, loadFormat, lockPageNumber } from './index.js';
import type { ObjectHeaderInit, TransactionInput, TransactionStart } from './index.js';
import { concat, decodeCode, segmentFixture, snapshotFixture } from './test-util.js';

await loadFormat();

function isInvalid(e: unknown): boolean {
  return e instanceof FormatError && e.code === 'ERR_INVALID_ARGUMENT';
}

/** Runs `steps` on a fresh encoder and expects ERR_INVALID_ARGUMENT matching `pattern`. */
function rejects(header: ObjectHeaderInit, steps: (e: SegmentEncoder) => void, pattern: RegExp): void {
  assert.throws(() => steps(new SegmentEncoder(header)), (e: unknown) => {
    assert.ok(isInvalid(e), String(e));
    assert.match((e as Error).message, pattern);
    return true;
  });
}

function writeAll(encoder: SegmentEncoder, transactions: TransactionInput[], withCount = true): void {
  for (const t of transactions) {
    encoder.beginTransaction({ txid: t.txid, timestamp: t.timestamp, commitSize: t.commitSize, postChecksum: t.postChecksum, ...(withCount ? { pageCount: t.pages.length } : {}) });
    for (const p of t.pages) encoder.writePage(p.pgno, p.data);
    encoder.endTransaction();
  }
}

test('take() streams the object: concatenated pieces equal encodeSegment, the header comes first', async () => {
  const { header, transactions } = segmentFixture({ seed: 1, transactions: 30, pageSize: 4096 });
  const encoder = new SegmentEncoder(header, { chunkSize: 8192 });
  const pieces: Uint8Array[] = [...encoder.take()];
  assert.equal(pieces[0]?.length, HEADER_SIZE);
  assert.equal(decodeHeader(pieces[0] as Uint8Array).maxTxid, header.maxTxid);
  let takes = 0;
  for (const t of transactions) {
    encoder.beginTransaction({ ...t, pageCount: t.pages.length });
    for (const p of t.pages) encoder.writePage(p.pgno, p.data);
    encoder.endTransaction();
    const got = encoder.take();
    if (got.length > 0) takes++;
    pieces.push(...got);
  }
  encoder.finish();
  pieces.push(...encoder.take());
  assert.ok(takes > 5, `chunks completed while encoding (${takes} takes)`);
  assert.equal(encoder.state, 'finished');
  const whole = concat(...pieces);
  assert.equal(encoder.bytesWritten, whole.length);
  assert.deepEqual(whole, encodeSegment(header, transactions, { chunkSize: 8192 }));
  assert.equal(await decodeCode(whole), 'ok');
});

test('without pageCount the encoder holds each transaction and writes the same bytes', () => {
  const { header, transactions } = segmentFixture({ seed: 2, transactions: 12, pageSize: 1024, maxPagesPerTransaction: 9 });
  const counted = new SegmentEncoder(header, { chunkSize: 2048 });
  writeAll(counted, transactions, true);
  counted.finish();
  const held = new SegmentEncoder(header, { chunkSize: 2048 });
  writeAll(held, transactions, false);
  held.finish();
  assert.deepEqual(concat(...held.take()), concat(...counted.take()));
});

test('a snapshot streams its pages without a pageCount (it is known from the header)', async () => {
  const { header, transactions } = snapshotFixture({ seed: 3, commitSize: 50 });
  const t = transactions[0] as TransactionInput;
  const encoder = new SegmentEncoder(header, { chunkSize: 4096 });
  encoder.take();
  encoder.beginTransaction({ txid: t.txid, timestamp: t.timestamp, commitSize: t.commitSize, postChecksum: t.postChecksum });
  let streamed = 0;
  for (const p of t.pages) {
    encoder.writePage(p.pgno, p.data);
    streamed += encoder.take().length;
  }
  assert.ok(streamed > 0, 'chunks were released before endTransaction');
  encoder.endTransaction();
  encoder.finish();
});

test('every call is checked against the header and the calls before it', () => {
  const { header, transactions } = segmentFixture({ seed: 4, transactions: 3, pageSize: 512 });
  const [t1, t2, t3] = transactions as [TransactionInput, TransactionInput, TransactionInput];
  const page = new Uint8Array(512);
  const begin = (e: SegmentEncoder, t: TransactionInput, extra: Partial<TransactionStart> = {}) =>
    e.beginTransaction({ txid: t.txid, timestamp: t.timestamp, commitSize: t.commitSize, postChecksum: t.postChecksum, pageCount: t.pages.length, ...extra });
  const full = (e: SegmentEncoder, t: TransactionInput) => {
    begin(e, t);
    for (const p of t.pages) e.writePage(p.pgno, p.data);
    e.endTransaction();
  };

  rejects(header, (e) => e.writePage(1, page), /writePage is not allowed between transactions/);
  rejects(header, (e) => e.endTransaction(), /endTransaction is not allowed/);
  rejects(header, (e) => e.finish(), /wrote 0 transactions/);
  rejects(header, (e) => begin(e, t2), /expected 1, got 2/);
  rejects(header, (e) => begin(e, t1, { txid: 0 }), /within the header's 1\.\.3/);
  rejects(header, (e) => begin(e, t1, { txid: 1.5 }), /not a safe integer/);
  rejects(header, (e) => (full(e, t1), begin(e, t1)), /does not follow txid 1/);
  rejects(header, (e) => begin(e, t1, { timestamp: t1.timestamp + 1 }), /first timestamp/);
  rejects(header, (e) => (full(e, t1), begin(e, t2, { timestamp: t1.timestamp - 1 })), /outside|must not decrease/);
  rejects(header, (e) => begin(e, t1, { commitSize: 0 }), /commit size 0/);
  rejects(header, (e) => begin(e, t1, { postChecksum: -1n }), /post-apply checksum/);
  rejects(header, (e) => begin(e, t1, { postChecksum: 1 as unknown as bigint }), /post-apply checksum/);
  rejects(header, (e) => begin(e, t1, { pageCount: header.pageCount + 1 }), /pageCount/);
  rejects(header, (e) => begin(e, t1, { pageCount: 0 }), /pageCount 0/);
  rejects(header, (e) => (begin(e, t1), e.writePage(1, new Uint8Array(511))), /511 bytes, the page size is 512/);
  rejects(header, (e) => (begin(e, t1), e.writePage(t1.commitSize + 1, page)), /outside the database/);
  rejects(header, (e) => (begin(e, t1), e.writePage(0, page)), /outside the database/);
  rejects(
    header,
    (e) => {
      begin(e, t1, { pageCount: 2 });
      e.writePage(1, page);
      e.writePage(1, page);
    },
    /appears twice/,
  );
  rejects(
    header,
    (e) => {
      begin(e, t1, { pageCount: 1 });
      e.writePage(1, page);
      e.writePage(2, page);
    },
    /announced 1 pages, this is one more/,
  );
  rejects(header, (e) => (begin(e, t1, { pageCount: 2 }), e.writePage(1, page), e.endTransaction()), /announced 2 pages but wrote 1/);
  rejects(header, (e) => (begin(e, t1), e.beginTransaction(t2)), /beginTransaction is not allowed inside a transaction/);
  rejects(header, (e) => (e.beginTransaction({ ...t1 }), e.endTransaction()), /wrote no page/);
  rejects(header, (e) => (full(e, t1), full(e, t2), e.finish()), /wrote 2 transactions/);
  rejects(header, (e) => (full(e, t1), full(e, t2), full(e, t3), e.finish(), e.finish()), /finish is not allowed after finish/);
  rejects({ ...header, postChecksum: header.postChecksum ^ 1n }, (e) => (full(e, t1), full(e, t2), full(e, t3), e.finish()), /does not match the header/);
  rejects({ ...header, commitSize: header.commitSize + 1 }, (e) => (full(e, t1), full(e, t2), full(e, t3), e.finish()), /does not match the header/);
  rejects({ ...header, lastTimestamp: t3.timestamp + 5 }, (e) => (full(e, t1), full(e, t2), full(e, t3), e.finish()), /does not match the header/);
  rejects({ ...header, transactionCount: 2, maxTxid: 2 }, (e) => (full(e, t1), full(e, t2), begin(e, t3)), /announces 2 transactions|outside the header/);
});

test('a failed encoder refuses every later call', () => {
  const { header, transactions } = segmentFixture({ seed: 5, transactions: 2 });
  const encoder = new SegmentEncoder(header);
  const t = transactions[0] as TransactionInput;
  assert.throws(() => encoder.beginTransaction({ ...t, txid: 99 }), isInvalid);
  assert.equal(encoder.state, 'failed');
  assert.throws(() => encoder.beginTransaction({ ...t, pageCount: t.pages.length }), /failed earlier/);
  assert.throws(() => encoder.finish(), /failed earlier/);
});

test('the lock page is never written', () => {
  const pageSize = 65536;
  const lock = lockPageNumber(pageSize);
  const header: ObjectHeaderInit = {
    kind: 'segment',
    databaseId: '00112233445566778899aabbccddeeff',
    generation: '0000000100000001',
    epoch: 1,
    level: 0,
    minTxid: 1,
    maxTxid: 1,
    pageSize,
    commitSize: lock + 1,
    firstTimestamp: 1,
    lastTimestamp: 1,
    preChecksum: 0n,
    postChecksum: 0n,
    transactionCount: 1,
    pageCount: 1,
  };
  rejects(header, (e) => (e.beginTransaction({ txid: 1, timestamp: 1, commitSize: lock + 1, postChecksum: 0n }), e.writePage(lock, new Uint8Array(pageSize))), /lock-byte page/);
});

test('header fields are validated up front', () => {
  const { header } = segmentFixture({ seed: 6, transactions: 3 });
  const bad: [Partial<ObjectHeaderInit>, RegExp][] = [
    [{ kind: 'other' as 'segment' }, /kind/],
    [{ databaseId: 'xyz' }, /databaseId/],
    [{ databaseId: '00112233445566778899AABBCCDDEEFF' }, /databaseId/],
    [{ generation: '1' }, /generation/],
    [{ epoch: -1 }, /epoch/],
    [{ level: 256 }, /level/],
    [{ pageSize: 1000 }, /page size/],
    [{ pageSize: 131072 }, /page size/],
    [{ minTxid: 0 }, /min txid/],
    [{ maxTxid: 2 ** 53 }, /max txid/],
    [{ commitSize: 0 }, /commit size/],
    [{ lastTimestamp: header.firstTimestamp - 1 }, /last timestamp/],
    [{ preChecksum: 2n ** 64n }, /pre-apply/],
    [{ transactionCount: 0 }, /transaction count/],
    [{ transactionCount: 2 }, /level-0 segment holds every transaction/],
    [{ pageCount: 1 }, /less than the transaction count/],
    [{ compression: 'brotli' as 'zstd' }, /compression/],
  ];
  for (const [change, pattern] of bad) {
    assert.throws(() => new SegmentEncoder({ ...header, ...change }), (e: unknown) => isInvalid(e) && pattern.test((e as Error).message), JSON.stringify(change, (_, v) => (typeof v === 'bigint' ? `${v}n` : v)));
  }
  assert.throws(() => new SegmentEncoder(header, { chunkSize: 100 }), isInvalid);
  assert.throws(() => new SegmentEncoder(header, { compressionLevel: 0 }), isInvalid);
  const snap = snapshotFixture({ seed: 7 }).header;
  assert.throws(() => new SegmentEncoder({ ...snap, preChecksum: 1n }), /pre-apply checksum is 1/);
  assert.throws(() => new SegmentEncoder({ ...snap, minTxid: snap.maxTxid - 1 }), /one txid/);
  assert.throws(() => new SegmentEncoder({ ...snap, pageCount: snap.pageCount - 1 }), /page records/);
});

test('a compacted segment (level > 0) may skip txids; a record stands for the transactions since the last', async () => {
  const { header, transactions } = segmentFixture({ seed: 8, transactions: 6 });
  const kept = transactions.filter((_, i) => i % 2 === 1);
  const compacted: ObjectHeaderInit = {
    ...header,
    level: 1,
    transactionCount: kept.length,
    pageCount: kept.reduce((n, t) => n + t.pages.length, 0),
    firstTimestamp: (kept[0] as TransactionInput).timestamp,
  };
  assert.equal(await decodeCode(encodeSegment(compacted, kept)), 'ok');
});

test('a snapshot checks its pages: in order, complete, hashing to the post-apply checksum', () => {
  const { header, transactions } = snapshotFixture({ seed: 9, commitSize: 5 });
  const t = transactions[0] as TransactionInput;
  const begin = (e: SegmentEncoder) => e.beginTransaction({ txid: t.txid, timestamp: t.timestamp, commitSize: t.commitSize, postChecksum: t.postChecksum });
  const [p1, p2] = t.pages as [{ pgno: number; data: Uint8Array }, { pgno: number; data: Uint8Array }];
  rejects(header, (e) => (begin(e), e.writePage(p2.pgno, p2.data)), /expected 1, got 2/);
  rejects(header, (e) => (begin(e), e.writePage(p1.pgno, p1.data), e.endTransaction()), /announced 5 pages but wrote 1/);
  const wrong = { ...header, postChecksum: header.postChecksum ^ 1n };
  rejects(
    wrong,
    (e) => {
      e.beginTransaction({ txid: t.txid, timestamp: t.timestamp, commitSize: t.commitSize, postChecksum: wrong.postChecksum });
      for (const p of t.pages) e.writePage(p.pgno, p.data);
      e.endTransaction();
    },
    /pages have checksum/,
  );
});
