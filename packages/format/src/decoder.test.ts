import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  COMPRESSIONS,
  FormatError,
  HEADER_SIZE,
  Keyring,
  PageHashes,
  SegmentEncoder,
  TRAILER_SIZE,
  decodeHeader,
  decodeObject,
  decodeSegment,
  decodeTrailer,
  encodeSegment,
  indexTailSize,
  loadChecksum,
  loadFormat,
  lockPageNumber,
  pagesOf,
  readIndex,
  transactionAtOrBefore,
} from './index.js';
import type { DecodeEvent, EndEvent, ObjectHeaderInit, TransactionEvent } from './index.js';
import { CHUNK_FLAG_STORED } from './format.js';
import { collect, makePage, prng, segmentFixture, snapshotFixture, splitInto, walkChunks } from './test-util.js';
import type { Fixture } from './test-util.js';

await loadFormat();

const keyring = new Keyring({ keys: [{ id: 'primary-2026', key: new Uint8Array(32).fill(0x5a) }] });

function transactionsOf(events: DecodeEvent[]): TransactionEvent[] {
  return events.filter((e): e is TransactionEvent => e.type === 'transaction');
}

function assertMatches(events: DecodeEvent[], fixture: Fixture): void {
  const { header, transactions } = fixture;
  assert.equal(events[0]?.type, 'header');
  assert.equal(events.at(-1)?.type, 'end');
  assert.equal(events.filter((e) => e.type === 'header' || e.type === 'end').length, 2);
  const decoded = events[0]?.type === 'header' ? events[0].header : undefined;
  for (const [field, value] of Object.entries(header)) {
    if (field !== 'compression') assert.deepEqual(decoded?.[field as keyof typeof decoded], value, field);
  }
  const got = transactionsOf(events);
  assert.equal(got.length, transactions.length);
  got.forEach((t, i) => {
    const want = transactions[i] as Fixture['transactions'][number];
    assert.equal(t.txid, want.txid);
    assert.equal(t.timestamp, want.timestamp);
    assert.equal(t.commitSize, want.commitSize);
    assert.equal(t.postChecksum, want.postChecksum);
    assert.equal(t.pageCount, want.pages.length);
    assert.equal(t.more, false);
    assert.deepEqual(
      t.pages.map((p) => [p.pgno, Buffer.from(p.data).toString('hex')]),
      want.pages.map((p) => [p.pgno, Buffer.from(p.data).toString('hex')]),
    );
  });
  const end = events.at(-1) as EndEvent;
  assert.equal(end.trailer.transactionCount, transactions.length);
  assert.equal(end.trailer.pageCount, header.pageCount);
  assert.deepEqual(
    end.index.transactions.map((t) => [t.txid, t.timestamp, t.commitSize, t.postChecksum, t.pageCount]),
    transactions.map((t) => [t.txid, t.timestamp, t.commitSize, t.postChecksum, t.pages.length]),
  );
  assert.deepEqual([...end.index.pgnos], transactions.flatMap((t) => t.pages.map((p) => p.pgno)));
}

const fixtures: [string, () => Fixture][] = [
  ['segment', () => segmentFixture({ seed: 100, transactions: 25, pageSize: 1024, maxPagesPerTransaction: 6 })],
  ['snapshot', () => snapshotFixture({ seed: 101, commitSize: 40, pageSize: 1024 })],
  ['one-transaction segment', () => segmentFixture({ seed: 102, transactions: 1, pageSize: 65536, maxPagesPerTransaction: 3 })],
];

for (const [kind, make] of fixtures) {
  for (const compression of COMPRESSIONS) {
    for (const encrypted of [false, true]) {
      for (const chunkSize of [1024, 1 << 20]) {
        test(`round trip: ${kind}, ${compression}, ${encrypted ? 'encrypted' : 'plaintext'}, chunkSize ${chunkSize}`, async () => {
          const fixture = make();
          const header = { ...fixture.header, compression };
          const bytes = encodeSegment(header, fixture.transactions, { chunkSize, ...(encrypted ? { keyring } : {}) });
          const events = await collect(bytes, { name: 'db/x.seg', ...(encrypted ? { keyring } : {}) });
          assertMatches(events, { header, transactions: fixture.transactions });
          const first = events[0];
          assert.ok(first?.type === 'header');
          assert.equal(first.header.compression, compression);
          assert.equal(first.header.keyId, encrypted ? 'primary-2026' : null);
          const end = events.at(-1) as EndEvent;
          if (chunkSize === 1024) assert.ok(end.trailer.chunkCount > 1, 'multi-chunk');
        });
      }
    }
  }
}

test('streaming decode from arbitrary splits gives the same events', async () => {
  const fixture = segmentFixture({ seed: 103, transactions: 10, pageSize: 512 });
  for (const encrypted of [false, true]) {
    const options = encrypted ? { keyring } : {};
    const bytes = encodeSegment(fixture.header, fixture.transactions, { chunkSize: 1024, ...options });
    const rand = prng(7);
    for (const maxPiece of [1, 3, 17, 200, 5000]) {
      assertMatches(await collect(splitInto(bytes, rand, maxPiece), options), fixture);
    }
    const pieces: Uint8Array[] = [];
    for await (const p of splitInto(bytes, rand, 64)) pieces.push(p);
    assertMatches(await collect(pieces, options), fixture);
    assertMatches(await collect([new Uint8Array(0), bytes, new Uint8Array(0)], options), fixture);
  }
});

test('incompressible chunks are stored raw and still decode', async () => {
  const fixture = segmentFixture({ seed: 104, transactions: 6, pageSize: 1024, noise: 1 });
  const bytes = encodeSegment(fixture.header, fixture.transactions, { chunkSize: 2048 });
  const flags = walkChunks(bytes).map((c) => c.flags);
  assert.ok(flags.some((f) => f & CHUNK_FLAG_STORED), 'some chunk is stored raw');
  assertMatches(await collect(bytes), fixture);
});

test('maxPagesPerEvent splits a big transaction; more marks all parts but the last', async () => {
  const fixture = snapshotFixture({ seed: 105, commitSize: 50, pageSize: 512 });
  const bytes = encodeSegment(fixture.header, fixture.transactions, { chunkSize: 1024 });
  const events = await collect(bytes, { maxPagesPerEvent: 7 });
  const parts = transactionsOf(events);
  assert.equal(parts.length, Math.ceil(50 / 7));
  assert.deepEqual(
    parts.map((p) => p.more),
    parts.map((_, i) => i < parts.length - 1),
  );
  assert.ok(parts.every((p) => p.pages.length <= 7 && p.pageCount === 50 && p.txid === 42));
  assert.deepEqual(
    parts.flatMap((p) => p.pages.map((x) => x.pgno)),
    Array.from({ length: 50 }, (_, i) => i + 1),
  );
  await assert.rejects(collect(bytes, { maxPagesPerEvent: 0 }), (e: unknown) => e instanceof FormatError && e.code === 'ERR_INVALID_ARGUMENT');
});

test('applying the decoded transactions reproduces every post-apply checksum (chain of two segments)', async () => {
  const first = segmentFixture({ seed: 106, transactions: 8, databasePages: 10, pageSize: 512 });
  const sums = await loadChecksum();
  const db = new Map<number, Uint8Array>();
  const rand = prng(106);
  const seed = new PageHashes(512);
  for (let p = 1; p <= 10; p++) {
    const page = makePage(rand, 512);
    db.set(p, page);
    seed.set(p, page);
  }
  assert.equal(seed.value, first.header.preChecksum, 'fixture pre-apply checksum');
  const decoded = await decodeSegment(encodeSegment(first.header, first.transactions));
  for (const t of decoded.transactions) {
    for (const p of t.pages) db.set(p.pgno, p.data);
    for (const pgno of [...db.keys()]) if (pgno > t.commitSize) db.delete(pgno);
    assert.equal(sums.databaseChecksum([...db].map(([pgno, data]) => ({ pgno, data }))), t.postChecksum, `txid ${t.txid}`);
  }
  assert.equal(decoded.header.postChecksum, decoded.transactions.at(-1)?.postChecksum);
});

test('readIndex plans from a ranged GET of the head and the tail', async () => {
  const fixture = segmentFixture({ seed: 107, transactions: 40, pageSize: 1024 });
  for (const encrypted of [false, true]) {
    const options = encrypted ? { keyring } : {};
    const bytes = encodeSegment(fixture.header, fixture.transactions, { chunkSize: 4096, ...options });
    const head = bytes.subarray(0, HEADER_SIZE);
    const trailer = decodeTrailer(bytes.subarray(bytes.length - TRAILER_SIZE));
    const needed = indexTailSize(trailer);
    await assert.rejects(readIndex(head, bytes.subarray(bytes.length - needed + 1), options), (e: unknown) => {
      assert.ok(e instanceof FormatError && e.code === 'ERR_INVALID_ARGUMENT');
      assert.equal(e.details.needed, needed);
      return true;
    });
    const { header, index } = await readIndex(head, bytes.subarray(bytes.length - needed), { ...options, objectSize: bytes.length, name: 'k' });
    assert.equal(header.maxTxid, fixture.header.maxTxid);
    assert.equal(index.transactions.length, 40);
    assert.equal(index.chunks.length, trailer.chunkCount);
    assert.equal(index.chunks[0]?.objectOffset, HEADER_SIZE);
    const full = await decodeSegment(bytes, options);
    assert.deepEqual(index, full.index);
    const t10 = fixture.transactions[10] as Fixture['transactions'][number];
    const at = transactionAtOrBefore(index, t10.timestamp);
    assert.ok(at && at.timestamp <= t10.timestamp && at.txid >= t10.txid);
    assert.equal(transactionAtOrBefore(index, fixture.header.firstTimestamp - 1), undefined);
    assert.equal(transactionAtOrBefore(index, Number.MAX_SAFE_INTEGER)?.txid, fixture.header.maxTxid);
    assert.deepEqual([...pagesOf(index, index.transactions[10] as (typeof index.transactions)[number])], t10.pages.map((p) => p.pgno));
    await assert.rejects(readIndex(head, bytes.subarray(bytes.length - needed), { ...options, objectSize: bytes.length + 1 }), (e: unknown) => e instanceof FormatError && e.code === 'ERR_CORRUPT_OBJECT');
  }
});

test('decodeHeader reads a ranged GET of the first HEADER_SIZE bytes', () => {
  const { header, transactions } = snapshotFixture({ seed: 108 });
  const bytes = encodeSegment(header, transactions, { keyring });
  const decoded = decodeHeader(bytes.subarray(0, HEADER_SIZE), { name: 'k' });
  assert.equal(decoded.kind, 'snapshot');
  assert.equal(decoded.formatVersion, 1);
  assert.equal(decoded.keyId, 'primary-2026');
  assert.equal(decoded.generation, header.generation);
  assert.equal(decoded.postChecksum, header.postChecksum);
});

test('a source of the wrong type is ERR_INVALID_ARGUMENT', async () => {
  await assert.rejects(collect(42 as unknown as Uint8Array), (e: unknown) => e instanceof FormatError && e.code === 'ERR_INVALID_ARGUMENT');
  await assert.rejects(collect(['text'] as unknown as Uint8Array[]), (e: unknown) => e instanceof FormatError && e.code === 'ERR_INVALID_ARGUMENT');
});

test('a snapshot of a database over 1 GiB skips the lock page and streams in bounded memory', async () => {
  const pageSize = 65536;
  const lock = lockPageNumber(pageSize);
  const commitSize = lock + 2;
  const sums = await loadChecksum();
  const page = new Uint8Array(pageSize);
  const fill = (pgno: number): Uint8Array => {
    new DataView(page.buffer).setUint32(0, pgno);
    page[pageSize - 1] = pgno & 0xff;
    return page;
  };
  let checksum = 0n;
  for (let pgno = 1; pgno <= commitSize; pgno++) if (pgno !== lock) checksum ^= sums.pageHash(pgno, fill(pgno));
  const header: ObjectHeaderInit = {
    kind: 'snapshot',
    databaseId: '00112233445566778899aabbccddeeff',
    generation: '0000000100000001',
    epoch: 1,
    level: 0,
    minTxid: 9,
    maxTxid: 9,
    pageSize,
    commitSize,
    firstTimestamp: 5,
    lastTimestamp: 5,
    preChecksum: 0n,
    postChecksum: checksum,
    transactionCount: 1,
    pageCount: commitSize - 1,
  };
  const encoder = new SegmentEncoder(header);
  async function* body(): AsyncGenerator<Uint8Array> {
    yield* encoder.take();
    encoder.beginTransaction({ txid: 9, timestamp: 5, commitSize, postChecksum: checksum });
    for (let pgno = 1; pgno <= commitSize; pgno++) {
      if (pgno === lock) continue;
      encoder.writePage(pgno, fill(pgno));
      yield* encoder.take();
    }
    encoder.endTransaction();
    encoder.finish();
    yield* encoder.take();
  }
  let pages = 0;
  let previous = 0;
  let end: EndEvent | undefined;
  for await (const event of decodeObject(body(), { maxPagesPerEvent: 512 })) {
    if (event.type === 'transaction') {
      for (const p of event.pages) {
        assert.equal(p.pgno, previous + 1 === lock ? previous + 2 : previous + 1);
        previous = p.pgno;
        pages++;
      }
    } else if (event.type === 'end') end = event;
  }
  assert.equal(pages, commitSize - 1);
  assert.equal(previous, commitSize);
  assert.ok(end);
  assert.ok(!end.index.pgnos.includes(lock));
});

test('stopping early, or rejecting the object, ends the source stream', async () => {
  const fixture = segmentFixture({ seed: 109, transactions: 10, pageSize: 512 });
  const bytes = encodeSegment(fixture.header, fixture.transactions, { chunkSize: 1024 });
  let closed = 0;
  async function* source(data: Uint8Array): AsyncGenerator<Uint8Array> {
    try {
      for (let at = 0; at < data.length; at += 100) yield data.subarray(at, at + 100);
    } finally {
      closed++;
    }
  }
  for await (const event of decodeObject(source(bytes))) if (event.type === 'transaction') break;
  assert.equal(closed, 1);
  const damaged = bytes.slice();
  damaged[300] = (damaged[300] as number) ^ 1;
  await assert.rejects(collect(source(damaged)), (e: unknown) => e instanceof FormatError && e.code === 'ERR_CHECKSUM_MISMATCH');
  assert.equal(closed, 2);
});
