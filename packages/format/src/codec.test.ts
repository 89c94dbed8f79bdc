import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as zlib from 'node:zlib';
import zstd from '@bokuweb/zstd-wasm';
import { compress, decompress, decompressInto, loadCodecs, zstdDecoder } from './codec.js';

const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
const hasNative = typeof (zlib as { zstdDecompressSync?: unknown }).zstdDecompressSync === 'function';

test('zstd decompresses with node:zlib where Node has it (22.15+), else with the WASM binding', () => {
  assert.equal(zstdDecoder(), hasNative ? 'native' : 'wasm');
  if (major > 22 || (major === 22 && minor >= 15)) assert.equal(zstdDecoder(), 'native', `Node ${process.versions.node} has zstd in node:zlib`);
});

test('both decoders give the WASM encoder\u2019s bytes back, small and large chunks, into a buffer or not', async () => {
  await loadCodecs();
  for (const size of [1, 4096, 1 << 20, 3 * (1 << 20)]) {
    // Half random, half repeated: compressible and not.
    const raw = new Uint8Array(size);
    raw.set(randomBytes(Math.ceil(size / 2)));
    const stored = compress('zstd', raw);
    assert.deepEqual(Buffer.from(decompress('zstd', stored, size)), Buffer.from(raw), `decompress, ${size} bytes`);
    const out = new Uint8Array(size);
    decompressInto('zstd', stored, out);
    assert.deepEqual(Buffer.from(out), Buffer.from(raw), `decompressInto, ${size} bytes`);
    assert.deepEqual(Buffer.from(zstd.decompress(stored)), Buffer.from(raw), `the WASM binding, ${size} bytes`);
  }
});

test('a damaged or lying frame is an error from either decoder, never bytes of another length', async () => {
  await loadCodecs();
  const raw = new Uint8Array(1 << 16).fill(7);
  const stored = compress('zstd', raw);
  const cut = stored.subarray(0, stored.length - 3);
  assert.throws(() => decompress('zstd', cut, raw.length));
  assert.throws(() => decompressInto('zstd', cut, new Uint8Array(raw.length)));
  assert.throws(() => decompress('zstd', stored, raw.length - 1), /content size/);
});
