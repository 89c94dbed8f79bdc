// The decoder's bounds against crafted objects (README "Limits"): each refuses what it must, and
// none refuses an object the encoder can write, the most compressible ones included.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FormatError, HEADER_SIZE, Keyring, decodeHeader, decodeObject, decodeTrailer, encodeSegment, indexTailSize, loadFormat, readIndex } from './index.js';
import type { Compression, ObjectHeaderInit, TransactionInput } from './index.js';
import { CHUNK, HEADER, MAX_ZSTD_EXPANSION, viewOf } from './format.js';
import { collect, prng, reseal, segmentFixture, snapshotFixture, splitInto, walkChunks } from './test-util.js';

await loadFormat();

const keyring = new Keyring({ keys: [{ id: 'k1', key: new Uint8Array(32).fill(1) }] });

function limitOf(e: unknown): unknown {
  return e instanceof FormatError && e.code === 'ERR_CORRUPT_OBJECT' ? e.details['limit'] : undefined;
}

/** One transaction rewriting `pages` zero pages, `count` times: as compressible as pages get. */
function zeroSegment(pageSize: number, pages: number, count: number, compression: Compression): { header: ObjectHeaderInit; transactions: TransactionInput[] } {
  const zero = new Uint8Array(pageSize);
  const list = Array.from({ length: pages }, (_, i) => ({ pgno: i + 1, data: zero }));
  const transactions = Array.from({ length: count }, (_, i) => ({ txid: i + 1, timestamp: 1000, commitSize: pages, postChecksum: 7n, pages: list }));
  return {
    header: {
      kind: 'segment',
      databaseId: '00112233445566778899aabbccddeeff',
      generation: '0000000100000002',
      epoch: 1,
      level: 0,
      minTxid: 1,
      maxTxid: count,
      pageSize,
      commitSize: pages,
      firstTimestamp: 1000,
      lastTimestamp: 1000,
      preChecksum: 0n,
      postChecksum: 7n,
      transactionCount: count,
      pageCount: pages * count,
      compression,
    },
    transactions,
  };
}

test('no bound refuses what the encoder writes, the most compressible objects included', async () => {
  const cases: { label: string; bytes: Uint8Array; keyring?: Keyring }[] = [];
  for (const compression of ['zstd', 'none'] as const) {
    for (const pageSize of [512, 4096, 65536]) {
      const z = zeroSegment(pageSize, pageSize === 65536 ? 64 : 256, 16, compression);
      cases.push({ label: `zero pages ${pageSize} ${compression}`, bytes: encodeSegment(z.header, z.transactions, { chunkSize: 1 << 24 }) });
    }
    const f = segmentFixture({ seed: 3, transactions: 40 });
    cases.push({ label: `fixture ${compression}`, bytes: encodeSegment({ ...f.header, compression }, f.transactions) });
    cases.push({ label: `fixture ${compression} encrypted`, bytes: encodeSegment({ ...f.header, compression }, f.transactions, { keyring }), keyring });
    const s = snapshotFixture({ seed: 4, commitSize: 300, noise: 0 });
    cases.push({ label: `snapshot ${compression}`, bytes: encodeSegment({ ...s.header, compression }, s.transactions) });
  }
  for (const c of cases) {
    const options = { objectSize: c.bytes.length, name: c.label, ...(c.keyring ? { keyring: c.keyring } : {}) };
    decodeHeader(c.bytes, options);
    const events = await collect(c.bytes, options);
    assert.equal(events.at(-1)?.type, 'end', c.label);
    const needed = indexTailSize(decodeTrailer(c.bytes));
    await readIndex(c.bytes.subarray(0, HEADER_SIZE), c.bytes.subarray(c.bytes.length - needed), options);
  }
  const z = cases[2] as { bytes: Uint8Array };
  assert.ok(z.bytes.length * 1000 < 64 * 16 * 65540, `zero 64 KiB pages compress over 1000:1 (${z.bytes.length} bytes) and still pass`);
});

test('a header whose counts cannot fit the object size is refused (limit expansion)', async () => {
  const f = segmentFixture({ seed: 5, transactions: 3 });
  const bytes = encodeSegment({ ...f.header, compression: 'none' }, f.transactions);
  // Uncompressed, the pages need their own size: one byte short is already too little.
  assert.throws(() => decodeHeader(bytes, { objectSize: HEADER_SIZE + 100 }), (e: unknown) => limitOf(e) === 'expansion');
  const lying = bytes.slice();
  viewOf(lying).setUint32(HEADER.pageCount, 0xffffffff);
  const sealed = await reseal(lying);
  await assert.rejects(collect(sealed, { objectSize: sealed.length }), (e: unknown) => limitOf(e) === 'expansion');
  // Without objectSize the decoder finds the lie from the data instead.
  await assert.rejects(collect(sealed), (e: unknown) => e instanceof FormatError && e.code === 'ERR_CORRUPT_OBJECT' && limitOf(e) === undefined);
});

test('a chunk claiming more raw bytes than zstd can make of its stored bytes is refused before decompressing (limit expansion)', async () => {
  const z = zeroSegment(1024, 8, 2, 'zstd');
  const bytes = encodeSegment(z.header, z.transactions);
  const first = walkChunks(bytes)[0] as { offset: number; length: number };
  const v = viewOf(bytes);
  const stored = v.getUint32(first.offset + CHUNK.storedLength);
  assert.ok(stored * MAX_ZSTD_EXPANSION < 16 * 1024 * 1024, `the chunk is small enough to claim too much (${stored} bytes)`);
  v.setUint32(first.offset + CHUNK.rawLength, stored * MAX_ZSTD_EXPANSION + 1);
  const sealed = await reseal(bytes);
  await assert.rejects(collect(sealed), (e: unknown) => limitOf(e) === 'expansion');
});

test('readIndex refuses an index block over its limit before decompressing it (limit index)', async () => {
  const f = segmentFixture({ seed: 6, transactions: 3 });
  const bytes = encodeSegment(f.header, f.transactions);
  const needed = indexTailSize(decodeTrailer(bytes));
  const head = bytes.subarray(0, HEADER_SIZE);
  const tail = bytes.subarray(bytes.length - needed);
  await readIndex(head, tail, { objectSize: bytes.length });
  // Counts that make a 12 MB index, claimed by the header and trailer of this small object: without
  // the object's size, the limit is max(8 MiB, 4 x the tail given).
  const pages = 3 * 1024 * 1024;
  const lying = bytes.slice();
  viewOf(lying).setUint32(HEADER.pageCount, pages);
  viewOf(lying).setUint32(lying.length - 48 + 8, pages);
  const sealed = await reseal(lying);
  await assert.rejects(readIndex(sealed.subarray(0, HEADER_SIZE), sealed.subarray(sealed.length - needed)), (e: unknown) => limitOf(e) === 'index');
});

test('reuseBuffers: the same pages, cut at chunk ends, when each event is copied at once', async () => {
  for (const compression of ['zstd', 'none'] as const) {
    const f = segmentFixture({ seed: 9, transactions: 30, maxPagesPerTransaction: 12, pageSize: 4096 });
    const bytes = encodeSegment({ ...f.header, compression }, f.transactions, { chunkSize: 8192 });
    const expected = f.transactions.map((t) => t.pages.map((p) => [p.pgno, Buffer.from(p.data).toString('hex')]));
    const got: (string | number)[][][] = [];
    let open = false;
    for await (const event of decodeObject(bytes, { reuseBuffers: true, maxPagesPerEvent: 5 })) {
      if (event.type !== 'transaction') continue;
      if (!open) got.push([]);
      (got.at(-1) as (string | number)[][]).push(...event.pages.map((p) => [p.pgno, Buffer.from(p.data).toString('hex')]));
      assert.ok(event.pages.length <= 5);
      open = event.more;
    }
    assert.deepEqual(got, expected, compression);
  }
});

test('onPieceDone: every piece passed once, in order, and only when nothing reads it any more', async () => {
  // Encrypted: every chunk is authenticated with the object's header bytes, read from the first piece.
  for (const [compression, encrypted] of [['zstd', false], ['none', false], ['zstd', true]] as const) {
    // 0: one piece per chunk, so each chunk's data is a view of its piece, read to its end.
    for (const maxPiece of [0, 700, 5000, 40_000]) {
      const f = segmentFixture({ seed: 11, transactions: 30, maxPagesPerTransaction: 12, pageSize: 4096 });
      const bytes = encodeSegment({ ...f.header, compression }, f.transactions, { chunkSize: 8192, ...(encrypted ? { keyring } : {}) });
      const chunkEnds = walkChunks(bytes).map((c) => c.offset + c.length);
      const expected = f.transactions.flatMap((t) => t.pages.map((p) => `${p.pgno}:${Buffer.from(p.data).toString('hex')}`));
      const yielded: Uint8Array[] = [];
      const done: Uint8Array[] = [];
      async function* source(): AsyncGenerator<Uint8Array> {
        if (maxPiece === 0) {
          let at = 0;
          for (const end of [...chunkEnds.slice(0, -1), bytes.length]) {
            const piece = bytes.slice(at, end);
            at = end;
            yielded.push(piece);
            yield piece;
          }
          return;
        }
        for await (const piece of splitInto(bytes, prng(maxPiece), maxPiece)) {
          yielded.push(piece);
          yield piece;
        }
      }
      const got: string[] = [];
      // A done piece is overwritten at once, as a recycled buffer would be: a decoder that still
      // read it, or an event that still referred to it, would see the garbage.
      const onPieceDone = (piece: Uint8Array): void => {
        done.push(piece);
        piece.fill(0xa5);
      };
      for await (const event of decodeObject(source(), { reuseBuffers: true, maxPagesPerEvent: 5, onPieceDone, ...(encrypted ? { keyring } : {}) })) {
        if (event.type === 'transaction') got.push(...event.pages.map((p) => `${p.pgno}:${Buffer.from(p.data).toString('hex')}`));
      }
      assert.deepEqual(got, expected, `${compression}, pieces up to ${maxPiece} bytes`);
      assert.ok(done.length > 0 && done.length <= yielded.length, `${compression}/${maxPiece}: ${done.length} of ${yielded.length} pieces done`);
      assert.ok(
        done.every((p, i) => p === yielded[i]),
        'pieces are passed in the order they came, each once',
      );
      // Given back while decoding: every piece that ends before the index block (the last chunk).
      const indexOffset = walkChunks(bytes).at(-1)!.offset;
      let end = 0;
      const before = yielded.filter((p) => (end += p.length) <= indexOffset).length;
      assert.equal(done.length, before, `${compression}/${maxPiece}: the pieces before the index block at ${indexOffset}`);
    }
  }
  await assert.rejects(collect(bytes1(), { onPieceDone: () => undefined }), (e: unknown) => e instanceof Error && /onPieceDone needs reuseBuffers/.test(e.message));
});

function bytes1(): Uint8Array {
  const f = segmentFixture({ seed: 12, transactions: 2 });
  return encodeSegment(f.header, f.transactions);
}
