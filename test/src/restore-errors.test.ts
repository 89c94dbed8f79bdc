// Every way a replica can be damaged or misused ends in one typed error that names the object,
// and the target path is left exactly as it was (no half-written file, no scratch left behind).
// Objects written by a writer outside its epoch (fencing, invariant F) are ignored, not errors.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeSegment, formatKeys, loadFormat, parseObjectKey } from '@walship/format';
import { openReplicated } from '@walship/shipper';
import { plan, restore, type RestorePlan } from '@walship/restore';
import type { ObjectStorage } from '@walship/storage';
import { startS3rver, type S3Server } from './servers/index.js';
import { Workload, assertMatchesOracle, nativeIntegrity, newPrefix, s3Options, sleep, source, storageFor } from './util/restore-harness.js';

let server: S3Server;
let dir: string;
let base: string;
let baseWork: Workload;
let storage: ObjectStorage;
let latest: RestorePlan;

type Coded = Error & { code?: string; details?: Record<string, unknown> };

async function writeReplica(prefix: string, seed: number, sessions: number, extra = {}): Promise<Workload> {
  const work = new Workload(seed);
  const path = join(dir, `${prefix.replace(/\//g, '_')}.db`);
  for (let s = 0; s < sessions; s++) {
    const db = await openReplicated(path, s3Options(server, prefix, extra));
    if (s === 0) work.setup(db);
    for (let i = 0; i < 80; i++) {
      work.step(db);
      if (i % 8 === 0) await sleep(10);
    }
    await db.close();
  }
  return work;
}

/** A copy of the base replica under a new prefix, to damage. */
async function copyReplica(name: string): Promise<string> {
  const prefix = newPrefix(name);
  for await (const o of storage.list({ prefix: `${base}/` })) {
    const bytes = await storage.get(o.key);
    assert.ok(bytes);
    await storage.put(`${prefix}/${o.key.slice(base.length + 1)}`, bytes);
  }
  return prefix;
}

const rekey = (key: string, from: string, to: string): string => `${to}/${key.slice(from.length + 1)}`;

/** A target that exists with known content; after a failed restore it must be byte-identical. */
function precious(name: string): { path: string; check: () => void } {
  const sub = mkdtempSync(join(dir, `${name}-`));
  const path = join(sub, 'target.db');
  const content = randomBytes(4096);
  writeFileSync(path, content);
  return {
    path,
    check: () => {
      assert.ok(readFileSync(path).equals(content), 'the target is untouched');
      assert.deepEqual(readdirSync(sub), ['target.db'], 'no scratch file is left behind');
    },
  };
}

async function expectFailure(prefix: string, name: string, code: string, key: string | null, extra: Record<string, unknown> = {}): Promise<Coded> {
  const target = precious(name);
  let caught: Coded | undefined;
  await assert.rejects(restore({ ...source(server, prefix), path: target.path, overwrite: true, ...extra }), (e: Coded) => {
    caught = e;
    assert.equal(e.code, code, `${name}: ${e.message}`);
    if (key !== null) {
      assert.ok(e.message.includes(key), `${name}: the message names ${key}: ${e.message}`);
      assert.ok(Object.values(e.details ?? {}).includes(key), `${name}: details carry the key: ${JSON.stringify(e.details)}`);
    }
    return true;
  });
  target.check();
  return caught as Coded;
}

before(async () => {
  await loadFormat();
  server = await startS3rver();
  dir = mkdtempSync(join(tmpdir(), 'walship-restore-err-'));
  base = newPrefix('base');
  storage = storageFor(server, '');
  baseWork = await writeReplica(base, 42, 2);
  latest = await plan({ ...source(server, base) });
  assert.ok(latest.objects.length >= 5, `a chain of several objects (${latest.objects.length})`);
});

after(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('damaged objects', () => {
  test('a bit flipped in a segment body: ERR_CORRUPT_OBJECT naming it', async () => {
    const prefix = await copyReplica('flip');
    const victim = rekey(latest.objects[Math.floor(latest.objects.length / 2)]!.key, base, prefix);
    const bytes = (await storage.get(victim))!;
    bytes[Math.floor(bytes.length / 2)]! ^= 0x10;
    await storage.put(victim, bytes);
    const e = await expectFailure(prefix, 'flip', 'ERR_CORRUPT_OBJECT', victim);
    assert.ok(['ERR_CHECKSUM_MISMATCH', 'ERR_DECRYPT_FAILED', 'ERR_CORRUPT_OBJECT'].includes(e.details?.['formatCode'] as string));
  });

  test('a truncated segment: ERR_CORRUPT_OBJECT naming it', async () => {
    const prefix = await copyReplica('trunc');
    const victim = rekey(latest.objects[latest.objects.length - 1]!.key, base, prefix);
    const bytes = (await storage.get(victim))!;
    await storage.put(victim, bytes.subarray(0, bytes.length - 10));
    await expectFailure(prefix, 'trunc', 'ERR_CORRUPT_OBJECT', victim);
  });

  test('a damaged header: ERR_CORRUPT_OBJECT before anything is downloaded', async () => {
    const prefix = await copyReplica('header');
    const victim = rekey(latest.objects[1]!.key, base, prefix);
    const bytes = (await storage.get(victim))!;
    bytes[60]! ^= 0x01;
    await storage.put(victim, bytes);
    await expectFailure(prefix, 'header', 'ERR_CORRUPT_OBJECT', victim);
  });

  test('a bit flipped in the snapshot: ERR_CORRUPT_OBJECT naming it', async () => {
    const prefix = await copyReplica('snapflip');
    const victim = rekey(latest.objects[0]!.key, base, prefix);
    const bytes = (await storage.get(victim))!;
    bytes[bytes.length - 200]! ^= 0x04;
    await storage.put(victim, bytes);
    await expectFailure(prefix, 'snapflip', 'ERR_CORRUPT_OBJECT', victim);
  });

  test('garbage stored under a segment key: ERR_CORRUPT_OBJECT', async () => {
    const prefix = await copyReplica('garbage');
    const victim = rekey(latest.objects[2]!.key, base, prefix);
    await storage.put(victim, randomBytes(5000));
    await expectFailure(prefix, 'garbage', 'ERR_CORRUPT_OBJECT', victim);
  });

  test('an empty object under a segment key: ERR_CORRUPT_OBJECT, not a storage error', async () => {
    // S3 answers a ranged GET of an empty object with 416, s3rver drops the connection.
    const prefix = await copyReplica('empty');
    const victim = rekey(latest.objects[2]!.key, base, prefix);
    await storage.put(victim, new Uint8Array(0));
    const e = await expectFailure(prefix, 'empty', 'ERR_CORRUPT_OBJECT', victim);
    assert.equal(e.details?.['formatCode'], 'ERR_TRUNCATED', JSON.stringify(e.details));
  });

  test('a segment missing mid-chain: ERR_CHAIN_GAP naming both sides; earlier txids still restore', async () => {
    const prefix = await copyReplica('gap');
    const i = Math.floor(latest.objects.length / 2);
    const before = latest.objects[i - 1]!;
    const after = latest.objects[i + 1]!;
    await storage.delete([rekey(latest.objects[i]!.key, base, prefix)]);
    const e = await expectFailure(prefix, 'gap', 'ERR_CHAIN_GAP', rekey(after.key, base, prefix));
    assert.ok(e.message.includes(rekey(before.key, base, prefix)), `names the last good object: ${e.message}`);
    assert.equal(e.details?.['lastTxid'], before.applyThrough);
    assert.equal(e.details?.['nextTxid'], after.minTxid);
    const path = join(dir, 'gap-before.db');
    const r = await restore({ ...source(server, prefix), path, txid: before.applyThrough });
    assert.equal(r.txid, before.applyThrough);
    assertMatchesOracle(path, baseWork, r.txid);
    // A target inside the missing range is a gap too, not an unknown txid: later objects exist.
    const missing = latest.objects[i]!;
    await expectFailure(prefix, 'gap-target', 'ERR_CHAIN_GAP', rekey(after.key, base, prefix), { txid: missing.applyThrough });
  });

  test('a segment whose pre-apply checksum does not continue the chain: ERR_CHAIN_MISMATCH', async () => {
    const prefix = await copyReplica('mismatch');
    const keys = formatKeys(prefix);
    const last = latest.objects[latest.objects.length - 1]!;
    const txid = latest.txid + 1;
    const key = keys.segment({ generation: latest.generation, level: 0, minTxid: txid, epoch: last.epoch });
    const page = new Uint8Array(latest.pageSize);
    const now = Date.now();
    await storage.put(
      key,
      encodeSegment(
        {
          kind: 'segment',
          databaseId: latest.databaseId,
          generation: latest.generation,
          epoch: last.epoch,
          level: 0,
          minTxid: txid,
          maxTxid: txid,
          pageSize: latest.pageSize,
          commitSize: latest.commitSize,
          firstTimestamp: now,
          lastTimestamp: now,
          preChecksum: latest.checksum ^ 1n,
          postChecksum: 7n,
          transactionCount: 1,
          pageCount: 1,
        },
        [{ txid, timestamp: now, commitSize: latest.commitSize, postChecksum: 7n, pages: [{ pgno: 2, data: page }] }],
      ),
    );
    await expectFailure(prefix, 'mismatch', 'ERR_CHAIN_MISMATCH', key);
  });

  test('an object of another database in the prefix: ERR_FOREIGN_OBJECT', async () => {
    const prefix = await copyReplica('foreign');
    const other = newPrefix('other');
    await writeReplica(other, 7, 1);
    let planted: string | null = null;
    // One the restore needs to look at: inside the first epoch's range, after the snapshot.
    const firstEpochEnd = latest.objects.find((o) => o.epoch !== latest.objects[0]!.epoch)!.minTxid;
    for await (const o of storage.list({ prefix: `${other}/` })) {
      const parsed = parseObjectKey(other, o.key);
      if (parsed?.kind !== 'segment' || parsed.epoch !== latest.objects[0]!.epoch) continue;
      if (parsed.minTxid <= latest.objects[0]!.minTxid || parsed.minTxid >= firstEpochEnd) continue;
      planted = rekey(o.key, other, prefix);
      await storage.put(planted, (await storage.get(o.key))!);
      break;
    }
    assert.ok(planted);
    await expectFailure(prefix, 'foreign', 'ERR_FOREIGN_OBJECT', planted);
  });

  test('objects of a writer that lost its epoch are left out (fencing), not errors', async () => {
    const prefix = await copyReplica('fenced');
    const keys = formatKeys(prefix);
    const epochs = [...new Set(latest.objects.map((o) => o.epoch))].sort();
    assert.ok(epochs.length >= 2, 'two writer sessions, two epochs');
    const second = latest.objects.find((o) => o.epoch === epochs[1])!;
    const planted: string[] = [];
    // The old writer (epoch 1) ships at the new epoch's first txid and past the tip.
    for (const txid of [second.minTxid, latest.txid + 1]) {
      const key = keys.segment({ generation: latest.generation, level: 0, minTxid: txid, epoch: epochs[0]! });
      planted.push(key);
      const now = Date.now();
      await storage.put(
        key,
        encodeSegment(
          {
            kind: 'segment',
            databaseId: latest.databaseId,
            generation: latest.generation,
            epoch: epochs[0]!,
            level: 0,
            minTxid: txid,
            maxTxid: txid,
            pageSize: latest.pageSize,
            commitSize: latest.commitSize,
            firstTimestamp: now,
            lastTimestamp: now,
            preChecksum: latest.checksum,
            postChecksum: 9n,
            transactionCount: 1,
            pageCount: 1,
          },
          [{ txid, timestamp: now, commitSize: latest.commitSize, postChecksum: 9n, pages: [{ pgno: 2, data: randomBytes(latest.pageSize) }] }],
        ),
      );
    }
    const p = await plan({ ...source(server, prefix) });
    assert.equal(p.txid, latest.txid);
    assert.equal(p.checksum, latest.checksum);
    for (const k of planted) assert.ok(p.fenced.includes(k), `${k} is reported as fenced`);
    const path = join(dir, 'fenced.db');
    const r = await restore({ ...source(server, prefix), path });
    assert.equal(r.txid, latest.txid);
    assertMatchesOracle(path, baseWork, r.txid);
  });
});

describe('keys', () => {
  test('encrypted replica: no key, an unknown id, a wrong key; the right key restores', async () => {
    const prefix = newPrefix('enc');
    const k1 = randomBytes(32).toString('base64');
    const work = await writeReplica(prefix, 5, 1, { encryption: { keys: [{ id: 'k1', key: k1 }] } });
    const p = await plan({ ...source(server, prefix), keys: [{ id: 'k1', key: k1 }] });
    assert.deepEqual(p.keyIds, ['k1']);
    assert.match(p.objects[0]!.key, /\.snap$/);
    // database.json says the replica is encrypted: refused before any object is read.
    const nokey = await expectFailure(prefix, 'nokey', 'ERR_KEY_REQUIRED', null);
    assert.match(nokey.message, /database\.json says every object of this replica is encrypted/);
    // database.json is sealed under k1: the first thing read that needs the key.
    const manifestKey = `${prefix}/database.json`;
    await expectFailure(prefix, 'otherid', 'ERR_UNKNOWN_KEY', manifestKey, { keys: [{ id: 'k2', key: randomBytes(32) }] });
    await expectFailure(prefix, 'wrongkey', 'ERR_AUTHENTICATION_FAILED', manifestKey, { keys: [{ id: 'k1', key: randomBytes(32) }] });
    const path = join(dir, 'enc.db');
    const r = await restore({ ...source(server, prefix), path, keys: [{ id: 'k1', key: k1 }] });
    assertMatchesOracle(path, work, r.txid);
    assert.equal(nativeIntegrity(path), 'ok');
  });
});

describe('options and targets', () => {
  test('an empty prefix: ERR_NO_REPLICA', async () => {
    await expectFailure(newPrefix('empty'), 'empty', 'ERR_NO_REPLICA', null);
  });

  test('bad options: ERR_INVALID_OPTION before anything is read', async () => {
    const cases: Record<string, unknown>[] = [
      { path: join(dir, 'x.db'), txid: 0 },
      { path: join(dir, 'x.db'), txid: 5, timestamp: 5 },
      { path: join(dir, 'x.db'), timestamp: 'yesterday' },
      { path: '' },
      { path: join(dir, 'x.db'), concurrency: 0 },
      { path: join(dir, 'x.db'), integrityCheck: 'fast' },
      { path: join(dir, 'x.db'), generation: 'nope' },
    ];
    for (const c of cases) {
      await assert.rejects(restore({ ...source(server, base), ...c } as Parameters<typeof restore>[0]), (e: Coded) => {
        assert.equal(e.code, 'ERR_INVALID_OPTION', `${JSON.stringify(c)}: ${e.message}`);
        return true;
      });
    }
    await assert.rejects(restore({ s3: { bucket: 'BAD_bucket', prefix: 'x' }, path: join(dir, 'y.db') }), (e: Coded) => e.code === 'ERR_INVALID_OPTION');
    await assert.rejects(restore({ s3: { bucket: server.bucket, prefix: '/x/' }, path: join(dir, 'y.db') }), (e: Coded) => e.code === 'ERR_INVALID_OPTION');
    assert.equal(existsSync(join(dir, 'x.db')), false);
  });

  test('an existing file or -wal is not replaced without overwrite; with it, the stale WAL goes too', async () => {
    const sub = mkdtempSync(join(dir, 'exists-'));
    const path = join(sub, 'db.sqlite');
    writeFileSync(path, 'old');
    await assert.rejects(restore({ ...source(server, base), path }), (e: Coded) => e.code === 'ERR_TARGET_EXISTS');
    assert.equal(readFileSync(path, 'utf8'), 'old');
    rmSync(path);
    writeFileSync(`${path}-wal`, 'stale wal');
    await assert.rejects(restore({ ...source(server, base), path }), (e: Coded) => e.code === 'ERR_TARGET_EXISTS');
    writeFileSync(path, 'old');
    const r = await restore({ ...source(server, base), path, overwrite: true });
    assert.equal(existsSync(`${path}-wal`), false, 'the old WAL cannot be replayed onto the new file');
    assertMatchesOracle(path, baseWork, r.txid);
  });

  test('an aborted signal: ERR_ABORTED and the target untouched; a directory as path: ERR_INVALID_OPTION', async () => {
    const target = precious('abort');
    const controller = new AbortController();
    const pending = restore({ ...source(server, base), path: target.path, overwrite: true, signal: controller.signal, concurrency: 1 });
    controller.abort(new Error('operator pressed ^C'));
    await assert.rejects(pending, (e: Coded) => e.code === 'ERR_ABORTED');
    target.check();
    await assert.rejects(restore({ ...source(server, base), path: dir, overwrite: true }), (e: Coded) => e.code === 'ERR_INVALID_OPTION');
  });

  test('a target open in a live walship process is refused: ERR_TARGET_LOCKED', async () => {
    const sub = mkdtempSync(join(dir, 'locked-'));
    const path = join(sub, 'db.sqlite');
    writeFileSync(`${path}.walship-lock`, `${process.pid}\n`);
    await assert.rejects(restore({ ...source(server, base), path, overwrite: true }), (e: Coded) => e.code === 'ERR_TARGET_LOCKED');
    assert.equal(existsSync(path), false);
  });

  test('progress reports every phase and ends at the target txid', async () => {
    const phases: string[] = [];
    let last = 0;
    const r = await restore({
      ...source(server, base),
      path: join(dir, 'progress.db'),
      concurrency: 2,
      onProgress: (p) => {
        if (phases.at(-1) !== p.phase) phases.push(p.phase);
        assert.ok(p.objectsDone >= last, 'objects done never goes back');
        last = p.objectsDone;
      },
    });
    assert.deepEqual(phases, ['plan', 'download', 'verify', 'rename', 'done']);
    assert.equal(last, r.objects);
  });
});
