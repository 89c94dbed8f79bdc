import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FormatError, Keyring, decodeObject, encodeSegment, loadFormat } from './index.js';
import type { DecodeOptions } from './index.js';
import { CHUNK, HEADER, TRAILER_SIZE, viewOf } from './format.js';
import { concat, decodeCode, prng, reseal, segmentFixture, snapshotFixture, splitInto, walkChunks } from './test-util.js';

await loadFormat();

const keyring = new Keyring({ keys: [{ id: 'k1', key: new Uint8Array(32).fill(1) }, { id: 'k2', key: new Uint8Array(32).fill(2) }] });
const NAME = 'db/0000000100000002/l0/0000000000000001.00000003.seg';

interface Case {
  label: string;
  bytes: Uint8Array;
  options: DecodeOptions;
}

function cases(): Case[] {
  const segment = segmentFixture({ seed: 200, transactions: 4, pageSize: 512, maxPagesPerTransaction: 2 });
  const snapshot = snapshotFixture({ seed: 201, commitSize: 4, pageSize: 512 });
  return [
    { label: 'zstd segment', bytes: encodeSegment(segment.header, segment.transactions, { chunkSize: 1024 }), options: {} },
    { label: 'encrypted zstd segment', bytes: encodeSegment(segment.header, segment.transactions, { chunkSize: 1024, keyring }), options: { keyring } },
    { label: 'uncompressed snapshot', bytes: encodeSegment({ ...snapshot.header, compression: 'none' }, snapshot.transactions, { chunkSize: 1024 }), options: {} },
  ];
}

function flip(bytes: Uint8Array, position: number, mask: number): void {
  bytes[position] = (bytes[position] as number) ^ mask;
}

/** Which code a damaged byte must produce: the magic, the major version, or a checksum. */
function expectedForFlip(position: number): string {
  if (position < HEADER.major) return 'ERR_BAD_MAGIC';
  if (position < HEADER.minor) return 'ERR_UNSUPPORTED_VERSION';
  return 'ERR_CHECKSUM_MISMATCH';
}

test('a bit flip anywhere in an object is detected with the code of the part it hits', async () => {
  for (const { label, bytes, options } of cases()) {
    assert.equal(await decodeCode(bytes, options), 'ok', label);
    const everyBit = label === 'zstd segment';
    for (let position = 0; position < bytes.length; position++) {
      for (let bit = 0; bit < 8; bit++) {
        if (!everyBit && bit !== position % 8) continue;
        const damaged = bytes.slice();
        flip(damaged, position, 1 << bit);
        const code = await decodeCode(damaged, { ...options, name: NAME });
        assert.equal(code, expectedForFlip(position), `${label}: bit ${bit} of byte ${position} of ${bytes.length}`);
      }
    }
  }
});

test('truncation at every length is ERR_TRUNCATED, from a buffer and from a stream', async () => {
  for (const { label, bytes, options } of cases()) {
    const rand = prng(3);
    for (let length = 0; length < bytes.length; length++) {
      const cut = bytes.subarray(0, length);
      assert.equal(await decodeCode(cut, options), 'ERR_TRUNCATED', `${label}: ${length} of ${bytes.length} bytes`);
      if (length % 7 === 0) assert.equal(await decodeCode(splitInto(cut, rand, 50), options), 'ERR_TRUNCATED', `${label}: streamed ${length}`);
    }
  }
});

test('bytes after the trailer are ERR_CORRUPT_OBJECT', async () => {
  for (const { label, bytes, options } of cases()) {
    assert.equal(await decodeCode(concat(bytes, new Uint8Array(1)), options), 'ERR_CORRUPT_OBJECT', label);
    assert.equal(await decodeCode(concat(bytes, bytes), options), 'ERR_CORRUPT_OBJECT', label);
  }
});

test('a dropped, duplicated or reordered chunk is detected', async () => {
  for (const { label, bytes, options } of cases()) {
    const chunks = walkChunks(bytes);
    const head = bytes.subarray(0, chunks[0]?.offset);
    const tail = bytes.subarray(bytes.length - TRAILER_SIZE);
    const body = chunks.map((c) => bytes.subarray(c.offset, c.offset + c.length));
    const data = body.slice(0, -1);
    const index = body.at(-1) as Uint8Array;
    assert.ok(data.length >= 3, `${label} has ${data.length} data chunks`);
    const build = (parts: Uint8Array[]) => concat(head, ...parts, tail);
    assert.equal(await decodeCode(build(body), options), 'ok');
    for (let i = 0; i < data.length; i++) {
      const dropped = data.filter((_, j) => j !== i);
      assert.equal(await decodeCode(build([...dropped, index]), options), 'ERR_CORRUPT_OBJECT', `${label}: chunk ${i} dropped`);
      const duplicated = [...data.slice(0, i + 1), data[i] as Uint8Array, ...data.slice(i + 1)];
      assert.equal(await decodeCode(build([...duplicated, index]), options), 'ERR_CORRUPT_OBJECT', `${label}: chunk ${i} duplicated`);
      if (i + 1 < data.length) {
        const swapped = [...data];
        [swapped[i], swapped[i + 1]] = [swapped[i + 1] as Uint8Array, swapped[i] as Uint8Array];
        assert.equal(await decodeCode(build([...swapped, index]), options), 'ERR_CORRUPT_OBJECT', `${label}: chunks ${i} and ${i + 1} swapped`);
      }
    }
    assert.equal(await decodeCode(build([index, ...data]), options), 'ERR_CORRUPT_OBJECT', `${label}: index block first`);
    // Without its index block the trailer is read as a chunk header, whose checksum cannot match.
    assert.equal(await decodeCode(build(data), options), 'ERR_CHECKSUM_MISMATCH', `${label}: index block dropped`);
  }
});

test('reordering chunks and forging every xxh64 does not get past GCM (or the content checks)', async () => {
  for (const { label, bytes, options } of cases()) {
    const chunks = walkChunks(bytes);
    const head = bytes.subarray(0, chunks[0]?.offset);
    const tail = bytes.subarray(bytes.length - TRAILER_SIZE);
    const body: Uint8Array[] = chunks.map((c) => bytes.slice(c.offset, c.offset + c.length));
    [body[0], body[1]] = [body[1] as Uint8Array, body[0] as Uint8Array];
    body.forEach((c, i) => viewOf(c).setUint32(CHUNK.index, i));
    const forged = await reseal(concat(head, ...body, tail));
    const expected = options.keyring ? 'ERR_DECRYPT_FAILED' : 'ERR_CORRUPT_OBJECT';
    assert.equal(await decodeCode(forged, options), expected, label);
  }
});

test('tampered content with forged xxh64s: GCM catches it, a snapshot checks its page hashes', async () => {
  const [plain, sealed, snapshot] = cases() as [Case, Case, Case];
  const firstData = (bytes: Uint8Array) => (walkChunks(bytes)[0]?.offset as number) + 40;
  for (const { bytes, options } of [sealed]) {
    const page = bytes.slice();
    flip(page, firstData(page), 0x10);
    assert.equal(await decodeCode(await reseal(page), options), 'ERR_DECRYPT_FAILED', 'ciphertext changed');
    const epoch = bytes.slice();
    viewOf(epoch).setUint32(HEADER.epoch, 99);
    assert.equal(await decodeCode(await reseal(epoch), options), 'ERR_DECRYPT_FAILED', 'header changed (it is the AAD)');
    const otherKey = bytes.slice();
    otherKey[HEADER.keyId + 1] = '2'.charCodeAt(0);
    assert.equal(await decodeCode(await reseal(otherKey), options), 'ERR_DECRYPT_FAILED', 'key id switched to another known key');
  }
  const image = snapshot.bytes.slice();
  flip(image, firstData(image) + 100, 0x10);
  assert.equal(await decodeCode(await reseal(image), snapshot.options), 'ERR_CHECKSUM_MISMATCH', 'snapshot page changed');
  const count = plain.bytes.slice();
  viewOf(count).setUint32(HEADER.pageCount, viewOf(count).getUint32(HEADER.pageCount) + 1);
  assert.equal(await decodeCode(await reseal(count), plain.options), 'ERR_CORRUPT_OBJECT', 'header page count changed');
});

test('versions: a newer major version is refused, a newer minor version is read', async () => {
  const { bytes, options } = cases()[0] as Case;
  const major = bytes.slice();
  viewOf(major).setUint16(HEADER.major, 2);
  assert.equal(await decodeCode(major, options), 'ERR_UNSUPPORTED_VERSION');
  assert.equal(await decodeCode(await reseal(major), options), 'ERR_UNSUPPORTED_VERSION');
  await assert.rejects(collect1(major), /format version 2\.0 is not readable by this walship.*upgrade walship/s);
  const minor = bytes.slice();
  viewOf(minor).setUint16(HEADER.minor, 7);
  assert.equal(await decodeCode(await reseal(minor), options), 'ok');
  const flags = bytes.slice();
  viewOf(flags).setUint16(HEADER.flags, 0x8000);
  assert.equal(await decodeCode(await reseal(flags), options), 'ERR_UNSUPPORTED_VERSION');
  const codec = bytes.slice();
  codec[HEADER.compression] = 2;
  assert.equal(await decodeCode(await reseal(codec), options), 'ERR_UNSUPPORTED_VERSION');
  const chunkFlags = bytes.slice();
  flip(chunkFlags, (walkChunks(chunkFlags)[0]?.offset as number) + CHUNK.flags, 0x80);
  assert.equal(await decodeCode(await reseal(chunkFlags), options), 'ERR_UNSUPPORTED_VERSION');
});

async function collect1(bytes: Uint8Array, options: DecodeOptions = {}): Promise<void> {
  for await (const _ of decodeObject(bytes, { ...options, name: NAME }));
}

test('not a walship object: ERR_BAD_MAGIC', async () => {
  const text = new TextEncoder().encode('{"databaseId":"0011"}'.padEnd(400, ' '));
  assert.equal(await decodeCode(text), 'ERR_BAD_MAGIC');
  assert.equal(await decodeCode(Uint8Array.of(0x1f, 0x8b, 8, 0)), 'ERR_BAD_MAGIC');
  const { bytes } = cases()[0] as Case;
  assert.equal(await decodeCode(bytes.subarray(0, 5)), 'ERR_TRUNCATED');
  await assert.rejects(collect1(text), (e: unknown) => {
    assert.ok(e instanceof FormatError);
    assert.match(e.message, new RegExp(`^walship object ${NAME}: the first bytes are not the walship magic`));
    assert.match(e.message, /not a walship object/);
    assert.equal(e.details.name, NAME);
    return true;
  });
});

test('keys: missing, unknown, wrong, and plaintext when encryption is required', async () => {
  const { bytes } = cases()[1] as Case;
  await assert.rejects(collect1(bytes), (e: unknown) => {
    assert.ok(e instanceof FormatError && e.code === 'ERR_KEY_REQUIRED');
    assert.equal(e.details.keyId, 'k1');
    assert.match(e.message, /key id 'k1'/);
    assert.match(e.message, new RegExp(NAME));
    return true;
  });
  const others = new Keyring({ keys: [{ id: 'k2', key: new Uint8Array(32).fill(2) }, { id: 'k3', key: new Uint8Array(32).fill(3) }] });
  await assert.rejects(collect1(bytes, { keyring: others }), (e: unknown) => {
    assert.ok(e instanceof FormatError && e.code === 'ERR_UNKNOWN_KEY');
    assert.equal(e.details.keyId, 'k1');
    assert.deepEqual(e.details.known, ['k2', 'k3']);
    assert.match(e.message, /'k1'.*ids: k2, k3/);
    return true;
  });
  const wrong = new Keyring({ keys: [{ id: 'k1', key: new Uint8Array(32).fill(9) }] });
  await assert.rejects(collect1(bytes, { keyring: wrong }), (e: unknown) => {
    assert.ok(e instanceof FormatError && e.code === 'ERR_DECRYPT_FAILED');
    assert.equal(e.details.chunk, 0);
    assert.ok(e.cause instanceof Error);
    return true;
  });
  assert.equal(await decodeCode(bytes, { keyring, requireEncryption: true }), 'ok');
  const plain = (cases()[0] as Case).bytes;
  assert.equal(await decodeCode(plain, { keyring, requireEncryption: true }), 'ERR_NOT_ENCRYPTED');
  // Whoever holds keys expects ciphertext: a plaintext object is refused by default (a plant).
  assert.equal(await decodeCode(plain, { keyring }), 'ERR_NOT_ENCRYPTED');
  assert.equal(await decodeCode(plain, { keyring, requireEncryption: false }), 'ok');
  assert.equal(await decodeCode(plain, {}), 'ok');
});

test('data is trusted only after end: a damaged trailer fails after transactions were yielded', async () => {
  const { bytes } = cases()[0] as Case;
  const damaged = bytes.slice();
  flip(damaged, damaged.length - 20, 1);
  const seen: string[] = [];
  await assert.rejects(
    (async () => {
      for await (const event of decodeObject(damaged, { name: NAME })) seen.push(event.type);
    })(),
    (e: unknown) => {
      assert.ok(e instanceof FormatError && e.code === 'ERR_CHECKSUM_MISMATCH');
      assert.equal(e.details.part, 'object');
      assert.equal(typeof e.details.offset, 'number');
      return true;
    },
  );
  assert.ok(seen.includes('transaction'));
  assert.ok(!seen.includes('end'));
});
