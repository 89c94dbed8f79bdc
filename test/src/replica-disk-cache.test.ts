// openReplica({ cacheDir }): chunks kept on disk across opens (files 0600 in a 0700 directory),
// bounded by cacheDirBytes, and verified when read back exactly as a GET's bytes are: a changed
// file is dropped and the chunk fetched again from S3, never a wrong row.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomFillSync } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadFormat } from '@walship/format';
import { openReplicated } from '@walship/shipper';
import { openReplica, restore } from '@walship/restore';
import { startS3rver, type S3Server } from './servers/index.js';
import { newPrefix, s3Options, source } from './util/restore-harness.js';
import { openOracle } from './util/oracle-sqlite.js';

let server: S3Server;
let dir: string;
let prefix: string;
let expected: unknown;
const SQL = 'SELECT count(*) AS n, sum(length(b)) AS bytes, sum(unicode(substr(b, 500, 1))) AS probe, sum(id * unicode(substr(b, 7, 1))) AS mix FROM t';
const MiB = 1024 * 1024;

before(async () => {
  await loadFormat();
  server = await startS3rver();
  dir = mkdtempSync(join(tmpdir(), 'walship-replica-disk-'));
  prefix = newPrefix('replica-disk');
  const db = await openReplicated(join(dir, 'w.db'), s3Options(server, prefix));
  db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)');
  const blob = new Uint8Array(1000);
  const insert = db.prepare('INSERT INTO t(b) VALUES (?)');
  // ~4 MiB of random rows: several 1 MiB chunks, more than the cacheDirBytes bound used below.
  for (let tx = 0; tx < 4; tx++) {
    db.transaction(() => {
      for (let i = 0; i < 1000; i++) insert.run(randomFillSync(blob));
    })();
  }
  await db.flush();
  await db.close();
  const path = join(dir, 'restored.db');
  await restore({ ...source(server, prefix), path });
  const o = openOracle(path, { readonly: true });
  try {
    expected = { ...(o.prepare(SQL).get() as object) };
  } finally {
    o.close();
  }
});

after(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function files(cache: string): { name: string; size: number; mode: number }[] {
  return readdirSync(cache)
    .filter((n) => n.endsWith('.chunk'))
    .map((name) => {
      const st = statSync(join(cache, name));
      return { name, size: st.size, mode: st.mode & 0o777 };
    });
}

test('a second open reads chunks from disk (fewer GETs, same rows); files are 0600 in a 0700 directory', async () => {
  const cache = join(dir, 'cache-a');
  const first = await openReplica({ ...source(server, prefix), cacheBytes: MiB, cacheDir: cache });
  let gets1: number;
  try {
    assert.deepEqual({ ...(first.prepare(SQL).get() as object) }, expected);
    const s = first.status();
    assert.ok(s.disk !== null && s.disk.writes > 0 && s.disk.hits === 0, JSON.stringify(s.disk));
    gets1 = s.gets;
  } finally {
    first.close();
  }
  assert.equal(statSync(cache).mode & 0o777, 0o700);
  const on = files(cache);
  assert.ok(on.length > 0);
  for (const f of on) assert.equal(f.mode, 0o600, f.name);
  const second = await openReplica({ ...source(server, prefix), cacheBytes: MiB, cacheDir: cache });
  try {
    assert.deepEqual({ ...(second.prepare(SQL).get() as object) }, expected);
    const s = second.status();
    assert.ok(s.disk !== null && s.disk.hits > 0 && s.disk.rejected === 0, JSON.stringify(s.disk));
    assert.ok(s.gets < gets1, `GETs: ${s.gets} with the disk cache, ${gets1} without`);
  } finally {
    second.close();
  }
});

test('a changed file is verified like a GET: rejected, fetched again, the rows are right', async () => {
  const cache = join(dir, 'cache-b');
  const first = await openReplica({ ...source(server, prefix), cacheBytes: MiB, cacheDir: cache });
  first.prepare(SQL).get();
  first.close();
  const on = files(cache);
  for (const f of on) {
    const bytes = readFileSync(join(cache, f.name));
    const at = Math.floor(bytes.length / 2);
    bytes[at] = (bytes[at] as number) ^ 0x01;
    writeFileSync(join(cache, f.name), bytes);
  }
  const second = await openReplica({ ...source(server, prefix), cacheBytes: MiB, cacheDir: cache });
  try {
    assert.deepEqual({ ...(second.prepare(SQL).get() as object) }, expected);
    const s = second.status();
    assert.ok(s.disk !== null && s.disk.rejected > 0 && s.disk.hits === 0, JSON.stringify(s.disk));
  } finally {
    second.close();
  }
});

test('the directory stays within cacheDirBytes', async () => {
  const cache = join(dir, 'cache-c');
  const bound = Math.floor(2.5 * MiB);
  const db = await openReplica({ ...source(server, prefix), cacheBytes: MiB, cacheDir: cache, cacheDirBytes: bound });
  try {
    assert.deepEqual({ ...(db.prepare(SQL).get() as object) }, expected);
    const s = db.status();
    assert.ok(s.disk !== null && s.disk.evictions > 0 && s.disk.bytes <= bound, JSON.stringify(s.disk));
  } finally {
    db.close();
  }
  const total = files(cache).reduce((a, f) => a + f.size, 0);
  assert.ok(total <= bound, `${total} bytes on disk, bound ${bound}`);
});

test('hydrate: every chunk is copied to disk in the background; a full scan then makes no page GET', async () => {
  await assert.rejects(openReplica({ ...source(server, prefix), hydrate: true }), { code: 'ERR_INVALID_OPTION' });
  const cache = join(dir, 'cache-d');
  const db = await openReplica({ ...source(server, prefix), cacheBytes: MiB, cacheDir: cache, hydrate: true });
  try {
    // Bounded by polls, not time: the copy runs while this thread waits.
    for (let i = 0; i < 3000 && db.status().hydration?.state === 'running'; i++) await new Promise((r) => setTimeout(r, 10));
    const h = db.status().hydration;
    assert.ok(h !== null && h.state === 'done' && h.chunksDone === h.chunksTotal && h.chunksTotal > 1, JSON.stringify(h));
    const before = db.status();
    assert.deepEqual({ ...(db.prepare(SQL).get() as object) }, expected);
    const s = db.status();
    assert.equal(s.gets, before.gets, 'every chunk came from disk');
    assert.ok(s.disk !== null && s.disk.hits > 0 && s.disk.rejected === 0, JSON.stringify(s.disk));
  } finally {
    db.close();
  }
});
