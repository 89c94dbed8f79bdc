import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  FormatError,
  databaseKey,
  epochKey,
  formatGeneration,
  formatKeys,
  formatObjectKey,
  formatTxid,
  generationKey,
  levelPrefix,
  parseGeneration,
  parseObjectKey,
  segmentKey,
  snapshotKey,
} from './index.js';
import type { ObjectKey } from './index.js';
import { prng, randomInt } from './test-util.js';

const G = formatGeneration(7, 2);

test('the key layout, under a prefix and at the bucket root', () => {
  assert.equal(G, '0000000700000002');
  assert.equal(databaseKey('db/app'), 'db/app/database.json');
  assert.equal(databaseKey(''), 'database.json');
  assert.equal(generationKey('db/app', G), 'db/app/0000000700000002/generation.json');
  assert.equal(epochKey('db/app', G, 255), 'db/app/0000000700000002/epochs/000000ff.json');
  assert.equal(snapshotKey('db/app', { generation: G, txid: 4096, epoch: 9 }), 'db/app/0000000700000002/snapshots/0000000000001000.00000009.snap');
  assert.equal(segmentKey('db/app', { generation: G, level: 0, minTxid: 17, epoch: 9 }), 'db/app/0000000700000002/l0/0000000000000011.00000009.seg');
  assert.equal(
    segmentKey('', { generation: G, level: 2, minTxid: 1, maxTxid: 0x20, epoch: 1 }),
    '0000000700000002/l2/0000000000000001-0000000000000020.00000001.seg',
  );
  assert.equal(levelPrefix('db', G, 0), 'db/0000000700000002/l0/');
});

test('a level-0 key ignores maxTxid, so the next key follows from the last max txid and the epoch', () => {
  const withMax = segmentKey('p', { generation: G, level: 0, minTxid: 10, maxTxid: 19, epoch: 4 });
  const next = segmentKey('p', { generation: G, level: 0, minTxid: 20, epoch: 4 });
  assert.equal(withMax, 'p/0000000700000002/l0/000000000000000a.00000004.seg');
  assert.equal(next, 'p/0000000700000002/l0/0000000000000014.00000004.seg');
});

test('every key parses back to what formatted it (seeded sweep)', () => {
  const rand = prng(11);
  const prefixes = ['', 'a', 'db/app', 'tenant-1/x.y/z'];
  const big = () => (rand() < 0.2 ? Number.MAX_SAFE_INTEGER - randomInt(rand, 1000) : randomInt(rand, 2 ** 40));
  for (let i = 0; i < 500; i++) {
    const prefix = prefixes[i % prefixes.length] as string;
    const generation = formatGeneration(randomInt(rand, 2 ** 32), randomInt(rand, 2 ** 32));
    const epoch = randomInt(rand, 2 ** 32);
    const minTxid = big();
    const candidates: ObjectKey[] = [
      { kind: 'database' },
      { kind: 'generation', generation },
      { kind: 'epoch', generation, epoch },
      { kind: 'snapshot', generation, txid: big(), epoch },
      { kind: 'segment', generation, level: 0, minTxid, epoch },
      { kind: 'segment', generation, level: 1 + randomInt(rand, 255), minTxid, maxTxid: Math.min(minTxid + randomInt(rand, 1000), Number.MAX_SAFE_INTEGER), epoch },
    ];
    for (const key of candidates) {
      const text = formatObjectKey(prefix, key);
      assert.deepEqual(parseObjectKey(prefix, text), key, text);
      assert.deepEqual(formatKeys(prefix).parse(text), key);
    }
  }
});

test('key order is numeric order (fixed-width lowercase hex)', () => {
  const rand = prng(12);
  const txids = Array.from({ length: 300 }, () => randomInt(rand, 2 ** 52));
  txids.push(0, 9, 10, 15, 16, 255, 256, Number.MAX_SAFE_INTEGER);
  const keys = txids.map((t) => segmentKey('p', { generation: G, level: 0, minTxid: t, epoch: 1 }));
  const byKey = [...keys].sort();
  const byTxid = [...txids].sort((a, b) => a - b).map((t) => segmentKey('p', { generation: G, level: 0, minTxid: t, epoch: 1 }));
  assert.deepEqual(byKey, byTxid);
  const generations = [formatGeneration(1, 0), formatGeneration(1, 1), formatGeneration(1, 0xffffffff), formatGeneration(2, 0), formatGeneration(0xa, 0)];
  assert.deepEqual([...generations].sort(), generations);
  assert.deepEqual(parseGeneration(formatGeneration(0xdeadbeef, 12)), { epoch: 0xdeadbeef, sequence: 12 });
});

test('keys walship did not write parse to null', () => {
  const foreign = [
    'other/database.json',
    'db/database.json.bak',
    'db/0000000700000002/generation.json.tmp',
    'db/0000000700000002/l0/0000000000000011.00000009.seg.part',
    'db/0000000700000002/l0/11.00000009.seg',
    'db/0000000700000002/l0/000000000000001A.00000009.seg',
    'db/0000000700000002/l1/0000000000000011.00000009.seg',
    'db/0000000700000002/l0/0000000000000001-0000000000000002.00000009.seg',
    'db/0000000700000002/l256/0000000000000001-0000000000000002.00000009.seg',
    'db/0000000700000002/l01/0000000000000001-0000000000000002.00000009.seg',
    'db/0000000700000002/l1/0000000000000003-0000000000000002.00000009.seg',
    'db/0000000700000002/snapshots/ffffffffffffffff.00000009.snap',
    'db/000000070000000/generation.json',
    'db/0000000700000002/epochs/1.json',
    'db/',
    'db',
    'db//database.json',
  ];
  for (const key of foreign) assert.equal(parseObjectKey('db', key), null, key);
  assert.equal(parseObjectKey('', 'db/database.json'), null);
});

test('bad arguments are ERR_INVALID_ARGUMENT', () => {
  const invalid = (e: unknown) => e instanceof FormatError && e.code === 'ERR_INVALID_ARGUMENT';
  assert.throws(() => databaseKey('db/'), invalid);
  assert.throws(() => databaseKey('/db'), invalid);
  assert.throws(() => generationKey('db', 'ABCDEF0123456789'), invalid);
  assert.throws(() => formatTxid(-1), invalid);
  assert.throws(() => formatTxid(2 ** 53), invalid);
  assert.throws(() => epochKey('db', G, 2 ** 32), invalid);
  assert.throws(() => segmentKey('db', { generation: G, level: 1, minTxid: 5, epoch: 1 }), invalid);
  assert.throws(() => segmentKey('db', { generation: G, level: 1, minTxid: 5, maxTxid: 4, epoch: 1 }), invalid);
  assert.throws(() => segmentKey('db', { generation: G, level: 1, minTxid: 5, maxTxid: 2 ** 53, epoch: 1 }), /not a safe integer/);
  assert.throws(() => segmentKey('db', { generation: G, level: 256, minTxid: 5, maxTxid: 6, epoch: 1 }), invalid);
  assert.throws(() => formatGeneration(1, -1), invalid);
});

test('formatKeys binds the prefix', () => {
  const keys = formatKeys('db');
  assert.equal(keys.root(), 'db/');
  assert.equal(formatKeys('').root(), '');
  assert.equal(keys.epochDir(G), 'db/0000000700000002/epochs/');
  assert.equal(keys.snapshotDir(G), 'db/0000000700000002/snapshots/');
  assert.equal(keys.generationDir(G), 'db/0000000700000002/');
  assert.equal(keys.segment({ generation: G, level: 0, minTxid: 1, epoch: 1 }), 'db/0000000700000002/l0/0000000000000001.00000001.seg');
});
