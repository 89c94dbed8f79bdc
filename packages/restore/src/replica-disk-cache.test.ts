// The disk cache's file names: one chunk of one version of one object of one replica.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiskCache } from './replica-disk-cache.js';

test('a chunk of a rewritten object (another ETag) never has the old version\u2019s file name', () => {
  const dir = mkdtempSync(join(tmpdir(), 'walship-disk-cache-'));
  try {
    const cache = new DiskCache(join(dir, 'cache'), { maxBytes: 1 << 20, location: 's3://b/p' });
    const other = new DiskCache(join(dir, 'cache'), { maxBytes: 1 << 20, location: 's3://b/q' });
    const v1 = { key: 'p/0000000100000000/snapshots/1.snap', etag: '"aaaa"' };
    const v2 = { key: v1.key, etag: '"bbbb"' };
    assert.equal(cache.name(v1, 0, 100), cache.name({ ...v1 }, 0, 100), 'the same chunk of the same version: the same file');
    assert.notEqual(cache.name(v1, 0, 100), cache.name(v2, 0, 100), 'another version of the object');
    assert.notEqual(cache.name(v1, 0, 100), cache.name(v1, 100, 200), 'another range');
    assert.notEqual(cache.name(v1, 0, 100), other.name(v1, 0, 100), 'another replica location');
    assert.notEqual(cache.name(v1, 0, 100), cache.name({ key: v1.key, etag: undefined }, 0, 100), 'a store that sent no ETag');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
