// Every txid of a new database's generation restores exactly, from txid 1 on: its snapshot is the
// image of txid 1 (walship's own table, written whole at open), taken before any checkpoint, so
// the first transactions are not folded into a later snapshot. A writer session without periodic
// snapshots, then a second session with them; every txid 1..tip (and sampled milliseconds) is
// restored and compared with a better-sqlite3 replay of the same operations.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadFormat } from '@walship/format';
import { openReplicated } from '@walship/shipper';
import { plan, restore } from '@walship/restore';
import { startS3rver, type S3Server } from './servers/index.js';
import { openOracle } from './util/oracle-sqlite.js';
import { Workload, assertMatchesOracle, dumpFile, newPrefix, replicaTransactions, s3Options, sleep, source, storageFor, type TxInfo } from './util/restore-harness.js';

let server: S3Server;
let dir: string;
let prefix: string;
let work: Workload;
let tip = 0;
let firstSessionTip = 0;
let txs: Map<number, TxInfo>;
let snapshots: { key: string; txid: number; timestamp: number }[];
let generations: Set<string>;
let n = 0;
const target = (): string => join(dir, `restored-${n++}.db`);

before(async () => {
  await loadFormat();
  server = await startS3rver();
  dir = mkdtempSync(join(tmpdir(), 'walship-every-txid-'));
  prefix = newPrefix('every-txid');
  work = new Workload(77);
  const path = join(dir, 'source.db');
  // Session 1: no periodic snapshot at all, so the generation has none when it closes.
  let db = await openReplicated(path, s3Options(server, prefix, { snapshotIntervalMs: 0, checkpointBytes: 32 * 1024 }));
  work.setup(db);
  for (let i = 0; i < 60; i++) {
    work.step(db);
    if (i % 7 === 0) await db.flush();
  }
  firstSessionTip = (await db.flush()).txid;
  await db.close();
  // Session 2 continues the same generation (a new epoch) and takes periodic snapshots.
  db = await openReplicated(path, s3Options(server, prefix, { snapshotIntervalMs: 150, checkpointBytes: 32 * 1024 }));
  for (let i = 0; i < 140 || (db.status().lastSnapshot === null && i < 2000); i++) {
    work.step(db);
    if (i % 10 === 0) await sleep(10);
  }
  tip = (await db.flush()).txid;
  await db.close();
  const found = await replicaTransactions(storageFor(server, prefix), prefix);
  txs = found.transactions;
  snapshots = found.snapshots;
  generations = new Set<string>();
  for await (const o of storageFor(server, prefix).list({ prefix: `${prefix}/` })) {
    const g = /\/([0-9a-f]{16})\//.exec(o.key)?.[1];
    if (g) generations.add(g);
  }
});

after(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('a new database: every txid from 1 restores', () => {
  test('the fixture is meaningful: one generation, its snapshot at txid 1, a periodic one later, every later txid in level-0 segments', () => {
    assert.equal(generations.size, 1, `generations: ${[...generations].join(', ')}`);
    assert.deepEqual(snapshots[0]?.txid, 1, 'the generation starts at txid 1');
    assert.ok(snapshots.some((s) => s.txid > firstSessionTip), `a periodic snapshot in the second session (${snapshots.map((s) => s.txid).join(', ')})`);
    for (let t = 2; t <= tip; t++) assert.ok(txs.has(t), `txid ${t} is in a level-0 segment`);
  });

  test('every txid 1..tip equals the oracle', async () => {
    for (let t = 1; t <= tip; t++) {
      const path = target();
      const r = await restore({ ...source(server, prefix), path, txid: t });
      assert.equal(r.txid, t);
      assertMatchesOracle(path, work, t);
      rmSync(path);
    }
    const early = await plan({ ...source(server, prefix), txid: 1 });
    assert.deepEqual([early.objects.length, early.objects[0]?.kind, early.objects[0]?.minTxid], [1, 'snapshot', 1]);
    const late = await plan({ ...source(server, prefix), txid: tip });
    assert.ok((late.objects[0]?.minTxid ?? 0) > firstSessionTip, 'a later txid starts from a later snapshot (fewer objects)');
  });

  test('sampled milliseconds restore the last txid committed by then; before txid 1 is ERR_TIMESTAMP_BEFORE_FIRST', async () => {
    const times = [...txs.values()].sort((a, b) => a.txid - b.txid);
    // Txid 1's commit time: the snapshot records it.
    times.unshift({ txid: 1, timestamp: (snapshots[0] as { timestamp: number }).timestamp, key: (snapshots[0] as { key: string }).key });
    const first = times[0] as TxInfo;
    const sampled = new Set<number>([first.timestamp]);
    for (let i = 0; i < times.length; i += Math.max(1, Math.floor(times.length / 25))) for (const d of [-1, 0, 1]) sampled.add((times[i] as TxInfo).timestamp + d);
    for (const ms of [...sampled].filter((x) => x >= first.timestamp).sort((a, b) => a - b)) {
      let want = 0;
      for (const t of times) if (t.timestamp <= ms) want = t.txid;
      const path = target();
      const r = await restore({ ...source(server, prefix), path, timestamp: ms });
      assert.equal(r.txid, want, `${new Date(ms).toISOString()}`);
      assertMatchesOracle(path, work, want);
      rmSync(path);
    }
    await assert.rejects(restore({ ...source(server, prefix), path: target(), timestamp: first.timestamp - 1 }), { code: 'ERR_TIMESTAMP_BEFORE_FIRST' });
  });

  test('a file written before walship opened it: its snapshot is the file with txid 1 applied (read before any checkpoint), and every txid from 1 restores', async () => {
    // Its first walship transaction is txid 1 too, but it leaves most pages as they are: the
    // snapshot is the main file (untouched until the first checkpoint) with txid 1's pages over it.
    const own = newPrefix('existing');
    const path = join(dir, 'existing.db');
    const native = openOracle(path);
    native.exec('CREATE TABLE kv(k INTEGER PRIMARY KEY, v BLOB, n INTEGER)');
    native.transaction(() => {
      for (let i = 0; i < 400; i++) native.prepare('INSERT INTO kv VALUES (?, ?, ?)').run(i, new Uint8Array(300).fill(i & 0xff), i);
    });
    native.close();
    const db = await openReplicated(path, s3Options(server, own, { snapshotIntervalMs: 0 }));
    const counts = new Map<number, number>();
    for (let i = 0; i < 6; i++) {
      db.prepare('INSERT INTO kv VALUES (?, ?, ?)').run(1000 + i, new Uint8Array(10), i);
      if (i % 2 === 1) await db.flush();
      counts.set(db.txid, 401 + i);
    }
    const last = (await db.flush()).txid;
    await db.close();
    const p = await plan({ ...source(server, own), txid: 1 });
    assert.equal(p.objects[0]?.kind, 'snapshot');
    assert.equal(p.objects[0]?.minTxid, 1, 'the generation snapshot is at txid 1');
    let previous = 400;
    for (let txid = 1; txid <= last; txid++) {
      const restored = target();
      await restore({ ...source(server, own), path: restored, txid });
      const db2 = openOracle(restored);
      const n = (db2.prepare('SELECT count(*) AS n FROM kv').get() as { n: number }).n;
      db2.close();
      assert.ok(n >= previous, `txid ${txid}: ${n} rows, after ${previous}`);
      if (counts.has(txid)) assert.equal(n, counts.get(txid), `txid ${txid}`);
      previous = n;
      if (txid === last) assert.deepEqual(dumpFile(restored), dumpFile(path));
      rmSync(restored);
    }
  });
});
