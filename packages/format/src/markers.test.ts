import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Keyring } from './crypto.js';
import { FormatError } from './errors.js';
import { sealMarker, verifyMarker } from './markers.js';

const k1 = new Keyring({ keys: [{ id: 'k1', key: new Uint8Array(32).fill(1) }] });
const k2 = new Keyring({ keys: [{ id: 'k2', key: new Uint8Array(32).fill(2) }, { id: 'k1', key: new Uint8Array(32).fill(1) }] });
const body = { format: 1, databaseId: 'ab'.repeat(16), pageSize: 4096, createdAt: '2026-12-03T00:00:00.000Z', encrypted: true };
const ctx = { prefix: 'apps/a', key: 'apps/a/database.json' };

function code(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (e) {
    assert.ok(e instanceof FormatError, String(e));
    return e.code;
  }
}

/** What a reader sees: the JSON text parsed back. */
function roundTrip<T>(v: T): Record<string, unknown> {
  return JSON.parse(JSON.stringify(v, null, 2)) as Record<string, unknown>;
}

test('a sealed marker verifies after a JSON round trip, under any keyring holding its key', () => {
  const sealed = roundTrip(sealMarker(body, { ...ctx, keyring: k1 }));
  assert.equal(verifyMarker(sealed, { ...ctx, keyring: k1 }), 'authenticated');
  assert.equal(verifyMarker(sealed, { ...ctx, keyring: k2 }), 'authenticated');
  assert.equal(verifyMarker(sealed, { ...ctx }), 'unchecked');
  assert.deepEqual((sealed['auth'] as { keyId: string }).keyId, 'k1');
});

test('a marker without a MAC is ERR_UNAUTHENTICATED when keys are given', () => {
  assert.equal(code(() => verifyMarker(roundTrip(body), { ...ctx, keyring: k1 })), 'ERR_UNAUTHENTICATED');
});

test('any change of a field, the prefix or the marker key fails authentication', () => {
  const sealed = roundTrip(sealMarker(body, { ...ctx, keyring: k1 }));
  assert.equal(code(() => verifyMarker({ ...sealed, pageSize: 8192 }, { ...ctx, keyring: k1 })), 'ERR_AUTHENTICATION_FAILED');
  assert.equal(code(() => verifyMarker({ ...sealed, encrypted: undefined }, { ...ctx, keyring: k1 })), 'ERR_AUTHENTICATION_FAILED');
  // The same database's manifest copied over another prefix (the swap attack).
  assert.equal(code(() => verifyMarker(sealed, { prefix: 'apps/b', key: 'apps/b/database.json', keyring: k1 })), 'ERR_AUTHENTICATION_FAILED');
  // ... unless the operator says where it was written.
  assert.equal(verifyMarker(sealed, { prefix: 'apps/b', key: 'apps/b/database.json', keyring: k1, originalPrefix: 'apps/a' }), 'authenticated');
  // An epoch marker moved to another epoch's key.
  const epoch = roundTrip(sealMarker({ format: 1, epoch: 3, startTxid: 10 }, { prefix: 'p', key: 'p/0000000100000000/epochs/00000003.json', keyring: k1 }));
  assert.equal(code(() => verifyMarker(epoch, { prefix: 'p', key: 'p/0000000100000000/epochs/00000004.json', keyring: k1 })), 'ERR_AUTHENTICATION_FAILED');
  const forged = { ...sealed, auth: { keyId: 'k1', mac: Buffer.alloc(32).toString('base64') } };
  assert.equal(code(() => verifyMarker(forged, { ...ctx, keyring: k1 })), 'ERR_AUTHENTICATION_FAILED');
  assert.equal(code(() => verifyMarker({ ...sealed, auth: 'x' }, { ...ctx, keyring: k1 })), 'ERR_UNAUTHENTICATED');
  assert.equal(code(() => verifyMarker({ ...sealed, auth: { keyId: 1 } }, { ...ctx, keyring: k1 })), 'ERR_AUTHENTICATION_FAILED');
});

test('a MAC under another key with the same id fails; an unknown key id is ERR_UNKNOWN_KEY', () => {
  const other = new Keyring({ keys: [{ id: 'k1', key: new Uint8Array(32).fill(7) }] });
  const sealed = roundTrip(sealMarker(body, { ...ctx, keyring: other }));
  assert.equal(code(() => verifyMarker(sealed, { ...ctx, keyring: k1 })), 'ERR_AUTHENTICATION_FAILED');
  const byK2 = roundTrip(sealMarker(body, { ...ctx, keyring: new Keyring({ keys: [{ id: 'k9', key: new Uint8Array(32).fill(9) }] }) }));
  assert.equal(code(() => verifyMarker(byK2, { ...ctx, keyring: k1 })), 'ERR_UNKNOWN_KEY');
});

test('messages name the marker and the key id, never key bytes', () => {
  const sealed = roundTrip(sealMarker(body, { ...ctx, keyring: k1 }));
  try {
    verifyMarker({ ...sealed, pageSize: 1 }, { ...ctx, keyring: k1 });
    assert.fail('expected an error');
  } catch (e) {
    const err = e as FormatError;
    assert.match(err.message, /apps\/a\/database\.json/);
    assert.match(err.message, /'k1'/);
    assert.doesNotMatch(JSON.stringify({ m: err.message, d: err.details }), /AQEBAQEB/);
  }
});
