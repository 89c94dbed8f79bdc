// A restored database continues its replica (same generation, txids go on), and restore chooses
// across generations: the newest for the latest state, the one that holds a txid or a time for
// point-in-time targets.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadFormat } from '@walship/format';
import { openReplicated } from '@walship/shipper';
import { openDatabase } from '@walship/vfs';
import { describeReplica, plan, restore } from '@walship/restore';
import { startS3rver, type S3Server } from './servers/index.js';
import { Workload, assertMatchesOracle, nativeIntegrity, newPrefix, s3Options, sleep, source } from './util/restore-harness.js';

let server: S3Server;
let dir: string;

before(async () => {
  await loadFormat();
  server = await startS3rver();
  dir = mkdtempSync(join(tmpdir(), 'walship-restore-lineage-'));
});

after(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('a restored node continues the lineage with openReplicated; a diverged one starts a new generation, and restore picks the right one', async () => {
  const prefix = newPrefix('lineage');
  const work = new Workload(77);
  const options = s3Options(server, prefix);

  // Writer 1.
  let db = await openReplicated(join(dir, 'origin.db'), options);
  work.setup(db);
  for (let i = 0; i < 60; i++) work.step(db);
  const generation = db.status().generation;
  await db.close();

  // A new node restores the latest state and carries on writing to the same replica.
  const node = join(dir, 'node.db');
  const first = await restore({ ...source(server, prefix), path: node });
  assert.equal(first.generation, generation);
  db = await openReplicated(node, options);
  assert.equal(db.status().generation, generation, 'same generation: the shipper proved the file by its checksum');
  // The base is the restored txid; open records it with a marker transaction unless the file's
  // marker row already says so (the origin's closing checkpoint wrote exactly that).
  assert.ok(db.txid === first.txid || db.txid === first.txid + 1, `txids continue from ${first.txid} (now ${db.txid})`);
  for (let i = 0; i < 40; i++) work.step(db);
  const continued = (await db.flush()).txid;
  await db.close();
  const again = await restore({ ...source(server, prefix), path: join(dir, 'again.db') });
  assert.equal(again.generation, generation);
  assert.ok(again.txid >= continued);
  assertMatchesOracle(again.path, work, again.txid, 'after the restored node wrote');
  const gen1Tip = again.txid;
  const gen1TipTime = again.timestamp;

  // The node writes without replication, then replicates again: its file went past the replica, so
  // it cannot be proven to continue it (ERR_DIVERGED); on purpose, a new generation from a snapshot.
  const local = await openDatabase(node);
  for (let i = 0; i < 20; i++) work.step(local);
  const localTxid = local.txid;
  local.close();
  await sleep(20);
  await assert.rejects(openReplicated(node, options), (e: Error & { code?: string }) => e.code === 'ERR_DIVERGED');
  db = await openReplicated(node, { ...options, allowRollback: true });
  const generation2 = db.status().generation;
  assert.notEqual(generation2, generation, 'a new generation');
  for (let i = 0; i < 30; i++) work.step(db);
  await db.close();

  const latest = await restore({ ...source(server, prefix), path: join(dir, 'latest.db') });
  assert.equal(latest.generation, generation2, 'latest comes from the newest generation');
  assertMatchesOracle(latest.path, work, latest.txid, 'latest of generation 2');
  assert.equal(nativeIntegrity(latest.path), 'ok');

  const k = gen1Tip - 5;
  const old = await restore({ ...source(server, prefix), path: join(dir, 'old.db'), txid: k });
  assert.equal(old.generation, generation, 'a txid only generation 1 holds comes from generation 1');
  assertMatchesOracle(old.path, work, k);

  // Txids committed while the node was not replicating are in no generation.
  const gen2Start = (await plan({ ...source(server, prefix), generation: generation2 ?? undefined })).objects[0]!.minTxid;
  assert.ok(gen2Start >= localTxid, `generation 2 starts at ${gen2Start}, after the local writes (${localTxid})`);
  if (gen2Start > gen1Tip + 1) {
    await assert.rejects(restore({ ...source(server, prefix), path: join(dir, 'missing.db'), txid: gen1Tip + 1 }), (e: Error & { code?: string; details?: Record<string, unknown> }) => {
      assert.equal(e.code, 'ERR_TXID_NOT_FOUND', e.message);
      assert.equal((e.details?.['ranges'] as unknown[]).length, 2, 'both generations\u2019 ranges are listed');
      return true;
    });
  }

  // A time between generation 1's last commit and generation 2's start restores generation 1's tip.
  const between = await restore({ ...source(server, prefix), path: join(dir, 'between.db'), timestamp: gen1TipTime });
  assert.equal(between.generation, generation);
  assert.equal(between.txid, gen1Tip);

  const d = await describeReplica({ ...source(server, prefix) });
  assert.equal(d.generations.length, 2);
  assert.deepEqual(
    d.generations.map((g) => g.restorable?.toTxid),
    [gen1Tip, latest.txid],
  );
});
