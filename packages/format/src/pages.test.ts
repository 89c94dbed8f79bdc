import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HEADER_SIZE, Keyring, ObjectPages, encodeSegment, loadFormat, readIndex } from './index.js';
import { segmentFixture, snapshotFixture } from './test-util.js';

await loadFormat();

const keyring = new Keyring({ keys: [{ id: 'pages-k1', key: new Uint8Array(32).fill(0x33) }] });

async function pagesOf(bytes: Uint8Array, options: { keyring?: Keyring } = {}): Promise<ObjectPages> {
  const parts = await readIndex(bytes.subarray(0, HEADER_SIZE), bytes, { name: 'obj', objectSize: bytes.length, ...options });
  return new ObjectPages(bytes.subarray(0, HEADER_SIZE), parts, { name: 'obj', ...options });
}

for (const encrypted of [false, true]) {
  const options = encrypted ? { keyring } : {};
  test(`ObjectPages (${encrypted ? 'encrypted' : 'plain'}): every page record of a snapshot and a segment reads back by its chunk alone`, async () => {
    for (const fixture of [snapshotFixture({ seed: 3, commitSize: 60, pageSize: 1024 }), segmentFixture({ seed: 4, transactions: 12, maxPagesPerTransaction: 6, pageSize: 1024 })]) {
      const bytes = encodeSegment(fixture.header, fixture.transactions, { chunkSize: 4096, ...options });
      const pages = await pagesOf(bytes, options);
      assert.ok(pages.chunkCount > 3, `chunks: ${pages.chunkCount}`);
      const want = fixture.transactions.flatMap((t) => t.pages);
      want.forEach((p, position) => {
        const at = pages.locate(position);
        const raw = pages.openChunk(at.chunk, bytes.subarray(at.start, at.end));
        assert.deepEqual(pages.page(raw, at, p.pgno), p.data, `page record ${position}`);
      });
    }
  });
}

test('ObjectPages: a record that is not the page asked for, another chunk\u2019s bytes, or a forged chunk is a typed error', async () => {
  const fixture = snapshotFixture({ seed: 5, commitSize: 40, pageSize: 1024 });
  const bytes = encodeSegment(fixture.header, fixture.transactions, { chunkSize: 4096, keyring });
  const pages = await pagesOf(bytes, { keyring });
  const at = pages.locate(10);
  const raw = pages.openChunk(at.chunk, bytes.subarray(at.start, at.end));
  assert.throws(() => pages.page(raw, at, 12), { code: 'ERR_CORRUPT_OBJECT' });
  const other = pages.chunkRange(at.chunk + 1);
  assert.throws(() => pages.openChunk(at.chunk, bytes.subarray(other.start, other.end)), { code: 'ERR_CORRUPT_OBJECT' });
  const forged = bytes.slice(at.start, at.end);
  forged[forged.length - 1] = (forged[forged.length - 1] as number) ^ 1;
  assert.throws(() => pages.openChunk(at.chunk, forged), { code: 'ERR_CHECKSUM_MISMATCH' });
  const otherObject = encodeSegment(fixture.header, fixture.transactions, { chunkSize: 4096, keyring });
  assert.throws(() => pages.openChunk(at.chunk, otherObject.subarray(at.start, at.end)), { code: 'ERR_DECRYPT_FAILED' }, 'the same chunk of another object (its own salt and nonces)');
});
