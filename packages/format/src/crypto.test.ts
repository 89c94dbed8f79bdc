import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { FormatError, Keyring, decodeSegment, encodeSegment, loadFormat } from './index.js';
import { decodeCode, segmentFixture } from './test-util.js';

await loadFormat();

const k1 = new Uint8Array(32).fill(1);
const k2 = new Uint8Array(32).fill(2);

function badKey(fn: () => unknown, expected: Record<string, unknown>): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof FormatError);
    assert.equal(e.code, 'ERR_BAD_KEY');
    for (const [k, v] of Object.entries(expected)) assert.equal(e.details[k], v, `${k} in ${JSON.stringify(e.details)}`);
    return true;
  });
}

test('Keyring: wrong key length names the id and the length found', () => {
  badKey(() => new Keyring({ keys: [{ id: 'short', key: new Uint8Array(16) }] }), { id: 'short', length: 16 });
  badKey(() => new Keyring({ keys: [{ id: 'b64', key: Buffer.alloc(31).toString('base64') }] }), { id: 'b64', length: 31 });
  assert.throws(() => new Keyring({ keys: [{ id: 'short', key: new Uint8Array(16) }] }), /'short' has 16 bytes/);
});

test('Keyring: ids must be 1..32 printable ASCII, unique; the primary must exist', () => {
  badKey(() => new Keyring({ keys: [{ id: '', key: k1 }] }), { index: 0, length: 0 });
  badKey(() => new Keyring({ keys: [{ id: 'x'.repeat(33), key: k1 }] }), {});
  badKey(() => new Keyring({ keys: [{ id: 'has space', key: k1 }] }), {});
  badKey(() => new Keyring({ keys: [{ id: 'é', key: k1 }] }), {});
  badKey(() => new Keyring({ keys: [{ id: 'a', key: k1 }, { id: 'a', key: k2 }] }), { id: 'a' });
  badKey(() => new Keyring({ keys: [{ id: 'a', key: k1 }], primary: 'b' }), { id: 'b' });
  badKey(() => new Keyring({ keys: [] }), {});
  badKey(() => new Keyring({ keys: [{ id: 'a', key: 'not base64!' }] }), { id: 'a' });
  assert.equal(new Keyring({ keys: [{ id: 'x'.repeat(32), key: k1 }] }).primary, 'x'.repeat(32));
});

test('Keyring: base64 and bytes are the same key; key bytes never show in inspection or JSON', async () => {
  const bytes = new Keyring({ keys: [{ id: 'k', key: k1 }] });
  const b64 = new Keyring({ keys: [{ id: 'k', key: Buffer.from(k1).toString('base64') }] });
  const { header, transactions } = segmentFixture({ seed: 1 });
  const sealed = encodeSegment(header, transactions, { keyring: bytes });
  assert.equal((await decodeSegment(sealed, { keyring: b64 })).transactions.length, transactions.length);
  const shown = inspect(bytes, { showHidden: true, depth: 10 }) + JSON.stringify(bytes);
  assert.ok(!shown.includes('1, 1, 1'), shown);
  assert.ok(!shown.includes(Buffer.from(k1).toString('base64')), shown);
});

test('Keyring: the caller mutating its key buffer afterwards changes nothing', async () => {
  const key = new Uint8Array(32).fill(5);
  const keyring = new Keyring({ keys: [{ id: 'k', key }] });
  key.fill(0);
  const { header, transactions } = segmentFixture({ seed: 2 });
  const sealed = encodeSegment(header, transactions, { keyring });
  assert.equal(await decodeCode(sealed, { keyring: new Keyring({ keys: [{ id: 'k', key: new Uint8Array(32).fill(5) }] }) }), 'ok');
});

test('key rotation: the primary encrypts, every key decrypts by the id in the header', async () => {
  const { header, transactions } = segmentFixture({ seed: 3 });
  const old = encodeSegment(header, transactions, { keyring: new Keyring({ keys: [{ id: 'k1', key: k1 }] }) });
  const rotated = new Keyring({ keys: [{ id: 'k1', key: k1 }, { id: 'k2', key: k2 }], primary: 'k2' });
  const fresh = encodeSegment(header, transactions, { keyring: rotated });
  assert.equal((await decodeSegment(old, { keyring: rotated })).header.keyId, 'k1');
  assert.equal((await decodeSegment(fresh, { keyring: rotated })).header.keyId, 'k2');
  assert.equal(await decodeCode(fresh, { keyring: new Keyring({ keys: [{ id: 'k1', key: k1 }] }) }), 'ERR_UNKNOWN_KEY');
});

test('two encryptions of the same data differ (per-object salt and nonce prefix)', () => {
  const { header, transactions } = segmentFixture({ seed: 4 });
  const keyring = new Keyring({ keys: [{ id: 'k1', key: k1 }] });
  const a = encodeSegment(header, transactions, { keyring });
  const b = encodeSegment(header, transactions, { keyring });
  assert.notDeepEqual(a, b);
  const plainA = encodeSegment(header, transactions);
  const plainB = encodeSegment(header, transactions);
  assert.deepEqual(plainA, plainB);
});
