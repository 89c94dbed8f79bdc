// Attack suite, part 1: an attacker who can read and write the bucket but holds no key (issue 10,
// attacks 1 and 3). Each attack was reproduced on the code before authenticated markers: restore
// with the right key returned the attacker's rows. Each must now end in a typed error, with the
// restore target never created; where the planted objects are simply not trusted (fenced out),
// the restore returns exactly the writer's own state.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PageHashes, decodeSegment, encodeSegment, formatGeneration, formatKeys, loadFormat, parseObjectKey, type ObjectHeader } from '@walship/format';
import { openReplicated } from '@walship/shipper';
import { follow, plan, restore, verify } from '@walship/restore';
import type { ObjectStorage } from '@walship/storage';
import { startS3rver, type S3Server } from './servers/index.js';
import { Workload, assertMatchesOracle, newPrefix, s3Options, sleep, source, storageFor } from './util/restore-harness.js';

type Coded = Error & { code?: string; details?: Record<string, unknown> };

let server: S3Server;
let storage: ObjectStorage;
let dir: string;
const KEY = randomBytes(32).toString('base64');
const keys = [{ id: 'k1', key: KEY }];
const encryption = { encryption: { keys } };

/** A replica written by walship under `prefix`; returns the workload (the oracle). */
async function writeReplica(prefix: string, seed: number, extra: Record<string, unknown> = encryption): Promise<Workload> {
  const work = new Workload(seed);
  const db = await openReplicated(join(dir, `${prefix.replace(/\//g, '_')}.db`), s3Options(server, prefix, extra));
  // The generation's snapshot lands before any write, so replicas of one workload share txids
  // (the swap tests put B's objects exactly where A's epoch marker expects them).
  await db.flush();
  work.setup(db);
  for (let i = 0; i < 60; i++) {
    work.step(db);
    if (i % 10 === 0) await sleep(5);
  }
  await db.close();
  return work;
}

async function copyPrefix(from: string, to: string, filter: (key: string) => boolean = () => true): Promise<void> {
  for await (const o of storage.list({ prefix: `${from}/` })) {
    if (!filter(o.key)) continue;
    await storage.put(`${to}/${o.key.slice(from.length + 1)}`, (await storage.get(o.key))!);
  }
}

async function deletePrefix(prefix: string): Promise<void> {
  const all: string[] = [];
  for await (const o of storage.list({ prefix: `${prefix}/` })) all.push(o.key);
  if (all.length > 0) await storage.delete(all);
}

async function getJson(key: string): Promise<Record<string, unknown>> {
  return JSON.parse(new TextDecoder().decode((await storage.get(key))!)) as Record<string, unknown>;
}

async function putJson(key: string, value: unknown): Promise<void> {
  await storage.put(key, new TextEncoder().encode(JSON.stringify(value)));
}

/**
 * What the attacker does: take a plaintext replica of their own database, re-encode its snapshot
 * as a new generation of the victim (the victim's database id, page size and epochs are readable
 * in the bucket: headers are not secret), and write the JSON markers beside it.
 */
async function plantPlaintextGeneration(victim: string, attackerPrefix: string, options: { withMarkers: boolean }): Promise<{ generation: string; rows: number }> {
  const manifest = await getJson(`${victim}/database.json`);
  let maxEpoch = 0;
  for await (const o of storage.list({ prefix: `${victim}/` })) {
    const parsed = parseObjectKey(victim, o.key);
    if (parsed && 'epoch' in parsed) maxEpoch = Math.max(maxEpoch, parsed.epoch);
  }
  const epoch = maxEpoch + 1;
  const generation = formatGeneration(epoch, 0);
  const keysOf = formatKeys(victim);
  let snapshotKey: string | null = null;
  for await (const o of storage.list({ prefix: `${attackerPrefix}/` })) if (parseObjectKey(attackerPrefix, o.key)?.kind === 'snapshot') snapshotKey = o.key;
  assert.ok(snapshotKey, 'the attacker has a snapshot');
  const decoded = await decodeSegment((await storage.get(snapshotKey))!);
  const h: ObjectHeader = decoded.header;
  const txid = h.maxTxid;
  const bytes = encodeSegment(
    { ...h, databaseId: manifest['databaseId'] as string, generation, epoch, compression: h.compression },
    decoded.transactions.map((t) => ({ txid: t.txid, timestamp: t.timestamp, commitSize: t.commitSize, postChecksum: t.postChecksum, pages: t.pages })),
  );
  await storage.put(keysOf.snapshot({ generation, txid, epoch }), bytes);
  if (options.withMarkers) {
    const now = new Date().toISOString();
    await putJson(keysOf.generation(generation), { format: 1, generation, databaseId: manifest['databaseId'], epoch, reason: 'planted', parent: null, createdAt: now });
    await putJson(keysOf.epoch(generation, epoch), { format: 1, epoch, generation, startTxid: txid, createdAt: now, writer: { host: 'attacker', pid: 1 } });
  }
  return { generation, rows: decoded.transactions.length };
}

/** A fresh, empty directory and a target path inside it that must never be created. */
function target(name: string): { path: string; untouched: () => void } {
  const sub = mkdtempSync(join(dir, `${name}-`));
  const path = join(sub, 'restored.db');
  return {
    path,
    untouched: () => {
      assert.equal(existsSync(path), false, `${name}: the target was not created`);
      assert.deepEqual(readdirSync(sub), [], `${name}: nothing (no scratch) was left beside it`);
    },
  };
}

async function expectRefused(name: string, prefix: string, code: string, extra: Record<string, unknown> = { keys }): Promise<Coded> {
  const t = target(name);
  let caught: Coded | undefined;
  await assert.rejects(restore({ ...source(server, prefix), path: t.path, ...extra }), (e: Coded) => {
    caught = e;
    assert.equal(e.code, code, `${name}: ${e.message}`);
    assert.doesNotMatch(`${e.message}${JSON.stringify(e.details ?? {})}`, new RegExp(KEY.slice(0, 12).replace(/[+/]/g, '.')), 'no key material in the error');
    return true;
  });
  t.untouched();
  return caught as Coded;
}

before(async () => {
  await loadFormat();
  dir = mkdtempSync(join(tmpdir(), 'walship-attack-auth-'));
  server = await startS3rver();
  storage = storageFor(server, '');
});

after(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('attack 1: plaintext objects planted in an encrypted replica', () => {
  test('a new generation made of a plaintext snapshot and unauthenticated markers: ERR_UNAUTHENTICATED', async () => {
    const victim = newPrefix('plant-gen');
    const attacker = newPrefix('plant-src');
    await writeReplica(victim, 11);
    await writeReplica(attacker, 99, {});
    await plantPlaintextGeneration(victim, attacker, { withMarkers: true });
    const e = await expectRefused('plant-gen', victim, 'ERR_UNAUTHENTICATED');
    assert.match(e.message, /carry no MAC/);
    // verify and plan refuse it too (same planner).
    const v = await verify({ ...source(server, victim), keys });
    assert.equal(v.ok, false);
    assert.equal(v.error?.code, 'ERR_UNAUTHENTICATED');
    await assert.rejects(plan({ ...source(server, victim), keys }), (err: Coded) => err.code === 'ERR_UNAUTHENTICATED');
  });

  test('the markers of a plant copied from the real ones (MACs bound to their keys): ERR_AUTHENTICATION_FAILED', async () => {
    const victim = newPrefix('plant-copy');
    const attacker = newPrefix('plant-copy-src');
    await writeReplica(victim, 12);
    await writeReplica(attacker, 98, {});
    const { generation } = await plantPlaintextGeneration(victim, attacker, { withMarkers: false });
    // Take a real, sealed epoch marker and put it where the plant needs one.
    let real: string | null = null;
    for await (const o of storage.list({ prefix: `${victim}/` })) if (parseObjectKey(victim, o.key)?.kind === 'epoch') real = o.key;
    assert.ok(real);
    const epoch = Number.parseInt(generation.slice(0, 8), 16);
    const marker = await getJson(real);
    await putJson(formatKeys(victim).epoch(generation, epoch), { ...marker, epoch, generation });
    await expectRefused('plant-copy', victim, 'ERR_AUTHENTICATION_FAILED');
  });

  test('database.json replaced by a plaintext one: ERR_UNAUTHENTICATED; deleted: ERR_UNAUTHENTICATED', async () => {
    const victim = newPrefix('plant-manifest');
    const attacker = newPrefix('plant-manifest-src');
    await writeReplica(victim, 13);
    await writeReplica(attacker, 97, {});
    await plantPlaintextGeneration(victim, attacker, { withMarkers: true });
    const manifest = await getJson(`${victim}/database.json`);
    await putJson(`${victim}/database.json`, { format: 1, databaseId: manifest['databaseId'], pageSize: manifest['pageSize'], createdAt: manifest['createdAt'] });
    await expectRefused('plant-manifest', victim, 'ERR_UNAUTHENTICATED');
    await storage.delete([`${victim}/database.json`]);
    const e = await expectRefused('plant-manifest-gone', victim, 'ERR_UNAUTHENTICATED');
    assert.match(e.message, /database\.json is missing/);
  });

  test('a plaintext segment continuing the chain of the current generation: ERR_NOT_ENCRYPTED (restore and follow)', async () => {
    const victim = newPrefix('plant-seg');
    const work = await writeReplica(victim, 14);
    const p = await plan({ ...source(server, victim), keys });
    const last = p.objects[p.objects.length - 1]!;
    // The follower starts before the plant and must refuse it when it arrives.
    const followPath = join(mkdtempSync(join(dir, 'follow-')), 'replica.db');
    const errors: Coded[] = [];
    const follower = await follow({ ...source(server, victim), keys, path: followPath, intervalMs: 50, onError: (e: Error) => errors.push(e as Coded) });
    try {
      const txid = p.txid + 1;
      const now = Date.now();
      // A page appended past the end: its hash can be XORed into the (readable) pre-apply checksum
      // without knowing any page of the database, so the plant continues the chain (invariant C).
      const page = new Uint8Array(p.pageSize).fill(0x41);
      const pgno = p.commitSize + 1;
      const one = new PageHashes(p.pageSize);
      one.set(pgno, page);
      const post = p.checksum ^ one.value;
      const key = formatKeys(victim).segment({ generation: p.generation, level: 0, minTxid: txid, epoch: last.epoch });
      await storage.put(
        key,
        encodeSegment(
          {
            kind: 'segment',
            databaseId: (await getJson(`${victim}/database.json`))['databaseId'] as string,
            generation: p.generation,
            epoch: last.epoch,
            level: 0,
            minTxid: txid,
            maxTxid: txid,
            pageSize: p.pageSize,
            commitSize: pgno,
            firstTimestamp: now,
            lastTimestamp: now,
            preChecksum: p.checksum,
            postChecksum: post,
            transactionCount: 1,
            pageCount: 1,
          },
          [{ txid, timestamp: now, commitSize: pgno, postChecksum: post, pages: [{ pgno, data: page }] }],
        ),
      );
      const e = await expectRefused('plant-seg', victim, 'ERR_NOT_ENCRYPTED');
      assert.equal(e.details?.['key'], key);
      for (const t0 = Date.now(); errors.length === 0 && Date.now() - t0 < 30_000; ) await sleep(25);
      const status = follower.status();
      assert.ok(
        errors.some((x) => x.code === 'ERR_NOT_ENCRYPTED') || status.lastError?.code === 'ERR_NOT_ENCRYPTED',
        `the follower refuses the plant: ${JSON.stringify(errors.map((x) => x.code))} ${JSON.stringify(status.lastError)}`,
      );
      assert.ok(status.txid < txid, `the follower never applied txid ${txid}`);
    } finally {
      // Stopped whatever happens: a follower left polling would keep the test process alive.
      await follower.stop();
    }
    // The writer's own state restores exactly at the last real txid.
    const path = join(dir, 'plant-seg-real.db');
    const r = await restore({ ...source(server, victim), keys, path, txid: p.txid });
    assertMatchesOracle(path, work, r.txid);
  });

  test('without keys, a replica whose database.json says encrypted is refused: ERR_KEY_REQUIRED', async () => {
    const victim = newPrefix('plant-nokey');
    await writeReplica(victim, 15);
    await expectRefused('plant-nokey', victim, 'ERR_KEY_REQUIRED', {});
  });

  test('a writer without keys refuses to ship into an encrypted replica: ERR_KEY_REQUIRED', async () => {
    const victim = newPrefix('plant-writer');
    await writeReplica(victim, 16);
    await assert.rejects(openReplicated(join(dir, 'plain-writer.db'), s3Options(server, victim)), (e: Coded) => e.code === 'ERR_KEY_REQUIRED');
  });
});

describe('attack 3: objects swapped between databases that share a key', () => {
  test("B's objects and database.json copied over A's prefix: ERR_AUTHENTICATION_FAILED", async () => {
    const a = newPrefix('swap-a');
    const b = newPrefix('swap-b');
    await writeReplica(a, 21);
    const workB = await writeReplica(b, 22);
    await deletePrefix(a);
    await copyPrefix(b, a);
    const e = await expectRefused('swap-all', a, 'ERR_AUTHENTICATION_FAILED');
    assert.equal(e.details?.['key'], `${a}/database.json`);
    assert.match(e.message, /originalPrefix/);
    // An operator who copied a replica on purpose says where it was written.
    const path = join(dir, 'swap-moved.db');
    const r = await restore({ ...source(server, a), keys, path, originalPrefix: b });
    assertMatchesOracle(path, workB, r.txid);
  });

  test("B's objects copied beside A's (A's own database.json kept): ERR_FOREIGN_OBJECT", async () => {
    const a = newPrefix('swap-objs-a');
    const b = newPrefix('swap-objs-b');
    // The same workload on both: the same txids, so B's objects sit exactly where A's were.
    const workA = await writeReplica(a, 23);
    await writeReplica(b, 23);
    const [pa, pb] = [await plan({ ...source(server, a), keys }), await plan({ ...source(server, b), keys })];
    assert.equal(pb.objects[0]!.minTxid, pa.objects[0]!.minTxid, 'both snapshots at the same txid');
    const before = join(dir, 'swap-objs-before.db');
    const good = await restore({ ...source(server, a), keys, path: before });
    // A's objects go, A's sealed markers stay; B's objects take their place under the same keys.
    const objects = (key: string): boolean => key.endsWith('.snap') || key.endsWith('.seg');
    const mine: string[] = [];
    for await (const o of storage.list({ prefix: `${a}/` })) if (objects(o.key)) mine.push(o.key);
    await storage.delete(mine);
    await copyPrefix(b, a, objects);
    await expectRefused('swap-objs', a, 'ERR_FOREIGN_OBJECT');
    assertMatchesOracle(before, workA, good.txid);
  });

  test("A's database.json copied over B's (B's objects kept): ERR_AUTHENTICATION_FAILED", async () => {
    const a = newPrefix('swap-man-a');
    const b = newPrefix('swap-man-b');
    await writeReplica(a, 25);
    await writeReplica(b, 26);
    await storage.put(`${b}/database.json`, (await storage.get(`${a}/database.json`))!);
    await expectRefused('swap-manifest', b, 'ERR_AUTHENTICATION_FAILED');
  });
});

describe('replicas written before authenticated markers', () => {
  /** What an older walship wrote: the same objects, markers without MACs, no `encrypted` flag. */
  async function makeLegacy(prefix: string): Promise<void> {
    for await (const o of storage.list({ prefix: `${prefix}/` })) {
      if (!o.key.endsWith('.json')) continue;
      const { auth: _auth, encrypted: _encrypted, ...rest } = await getJson(o.key);
      await putJson(o.key, rest);
    }
  }

  test('restore with keys refuses them (ERR_UNAUTHENTICATED, naming the migration); the writer with keys seals them in a new generation', async () => {
    const prefix = newPrefix('legacy');
    const work = new Workload(31);
    const path = join(dir, 'legacy.db');
    let db = await openReplicated(path, s3Options(server, prefix, encryption));
    work.setup(db);
    for (let i = 0; i < 30; i++) work.step(db);
    await db.close();
    await makeLegacy(prefix);
    // Without keys nothing can be authenticated, and the objects still need their key.
    await expectRefused('legacy-nokey', prefix, 'ERR_KEY_REQUIRED', {});
    const e = await expectRefused('legacy', prefix, 'ERR_UNAUTHENTICATED');
    assert.match(e.message, /open the database once with the writer/);

    // The migration step: open the writer with its keys.
    db = await openReplicated(path, s3Options(server, prefix, encryption));
    for (let i = 0; i < 10; i++) work.step(db);
    await db.close();
    const manifest = await getJson(`${prefix}/database.json`);
    assert.equal(manifest['encrypted'], true);
    assert.ok(manifest['auth'], 'database.json is sealed');
    const after = await plan({ ...source(server, prefix), keys });
    const out = join(dir, 'legacy-restored.db');
    const r = await restore({ ...source(server, prefix), keys, path: out });
    assert.equal(r.txid, after.txid);
    assertMatchesOracle(out, work, r.txid);
    // History from before the upgrade is not restorable with keys: its markers cannot be trusted.
    const old = after.objects[0]!.minTxid - 1;
    await expectRefused('legacy-old', prefix, 'ERR_TXID_NOT_FOUND', { keys, txid: old });
  });
});
