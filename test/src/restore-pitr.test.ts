// Point-in-time restore against s3rver: random transactions go in through openReplicated, with
// periodic snapshots and a writer restart (a second epoch); restores at sampled txids and
// timestamps must equal a better-sqlite3 replay of the same operations (invariant P), pass
// integrity_check in walship and in the native shell (I), and reach every durable txid (D).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadFormat } from '@walship/format';
import { openReplicated } from '@walship/shipper';
import { plan, restore } from '@walship/restore';
import { startS3rver, type S3Server } from './servers/index.js';
import { Workload, assertMatchesOracle, nativeIntegrity, newPrefix, replicaTransactions, s3Options, sleep, source, storageFor, type TxInfo } from './util/restore-harness.js';

let server: S3Server;
let dir: string;
let prefix: string;
let work: Workload;
let durable = 0;
let txs: Map<number, TxInfo>;
let segments: { key: string; minTxid: number; maxTxid: number }[];
let snapshots: { key: string; txid: number; timestamp: number }[];
let n = 0;
const target = (): string => join(dir, `restored-${n++}.db`);

before(async () => {
  await loadFormat();
  server = await startS3rver();
  dir = mkdtempSync(join(tmpdir(), 'walship-restore-'));
  prefix = newPrefix('pitr');
  work = new Workload(1234);
  const path = join(dir, 'source.db');
  // Small checkpoints and a short snapshot interval make periodic snapshots inside the history.
  const options = s3Options(server, prefix, { checkpointBytes: 48 * 1024, snapshotIntervalMs: 300 });
  let db = await openReplicated(path, options);
  work.setup(db);
  // At least one periodic snapshot after the generation's first: a fast machine writes 220 steps
  // before the interval has passed twice, so keep writing (bounded) until one has landed.
  const seen = new Set<number>();
  for (let i = 0; i < 220 || (seen.size < 2 && i < 5000); i++) {
    work.step(db);
    if (i % 10 === 0) await sleep(15);
    const s = db.status().lastSnapshot;
    if (s) seen.add(s.txid);
  }
  durable = (await db.flush()).txid;
  await db.close();
  // A second writer session: a new epoch in the same generation.
  db = await openReplicated(path, options);
  for (let i = 0; i < 120; i++) {
    work.step(db);
    if (i % 10 === 0) await sleep(15);
    // A flush ends a segment: at least ten, however few batch windows a loaded machine fits in.
    if (i % 10 === 9) await db.flush();
  }
  durable = (await db.flush()).txid;
  await db.close();
  ({ transactions: txs, segments, snapshots } = await replicaTransactions(storageFor(server, prefix), prefix));
});

after(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('restore to a txid', () => {
  test('the replica has several segments and periodic snapshots (the fixture is meaningful)', () => {
    assert.ok(segments.length >= 10, `segments: ${segments.length}`);
    assert.ok(snapshots.length >= 2, `snapshots: ${snapshots.map((s) => s.txid).join(', ')}`);
  });

  test('latest restore reaches the last durable txid and equals the oracle', async () => {
    const path = target();
    const r = await restore({ ...source(server, prefix), path });
    assert.ok(r.txid >= durable, `restored txid ${r.txid} >= durable ${durable}`);
    assert.equal(r.path, path);
    assert.match(r.checksum, /^[0-9a-f]{16}$/);
    assert.ok(r.objects >= 1 && r.bytes > 0 && r.durationMs >= 0);
    assertMatchesOracle(path, work, r.txid);
    assert.equal(nativeIntegrity(path), 'ok');
  });

  test('sampled txids: first, last, snapshot boundaries, segment edges and insides', async () => {
    const first = snapshots[0]!.txid;
    const last = Math.max(...[...txs.keys()]);
    const sample = new Set<number>([first, first + 1, last, last - 1]);
    for (const s of snapshots) for (const d of [-1, 0, 1]) sample.add(s.txid + d);
    for (const seg of segments.filter((_, i) => i % 3 === 0)) {
      sample.add(seg.minTxid);
      sample.add(seg.maxTxid);
      sample.add(Math.floor((seg.minTxid + seg.maxTxid) / 2));
    }
    const ks = [...sample].filter((k) => k >= first && k <= last).sort((a, b) => a - b);
    assert.ok(ks.length >= 15);
    for (const k of ks) {
      const path = target();
      const r = await restore({ ...source(server, prefix), path, txid: k });
      assert.equal(r.txid, k);
      assertMatchesOracle(path, work, k);
      assert.equal(nativeIntegrity(path), 'ok', `native integrity at txid ${k}`);
      rmSync(path);
    }
  });

  test('a replica whose tip is the segment starting at its last snapshot (a checkpoint\'s marker) restores every txid in it', async () => {
    // A checkpoint commits a marker transaction K and the segment holding it starts at K; a periodic
    // snapshot at K shares that txid. Until a later segment lands, the segment K..K+n is the tip.
    const own = newPrefix('pitr-marker');
    const w = new Workload(99);
    const db = await openReplicated(join(dir, 'marker.db'), s3Options(server, own, { snapshotIntervalMs: 1, checkpointBytes: 64 << 20 }));
    try {
      w.setup(db);
      for (let i = 0; i < 20; i++) w.step(db);
      await db.flush(); // the generation's first snapshot checkpoints everything so far
      for (let i = 0; i < 10; i++) w.step(db);
      await db.flush();
      const cp = db.checkpoint();
      assert.ok(cp.checkpointed, JSON.stringify(cp));
      const k = cp.lastTxid;
      for (let i = 0; i < 6; i++) w.step(db);
      const last = (await db.flush()).txid;
      assert.ok(last > k + 1);
      for (const t0 = Date.now(); db.status().lastSnapshot?.txid !== k && Date.now() - t0 < 30_000; ) await sleep(25);
      assert.equal(db.status().lastSnapshot?.txid, k, 'the periodic snapshot landed at the checkpoint');
      const { segments: segs } = await replicaTransactions(storageFor(server, own), own);
      assert.deepEqual(
        segs.filter((g) => g.maxTxid >= k).map((g) => [g.minTxid, g.maxTxid]),
        [[k, last]],
        'the tip is one segment starting at the snapshot',
      );
      for (const t of [k + 1, last]) {
        const path = target();
        const r = await restore({ ...source(server, own), path, txid: t });
        assert.equal(r.txid, t);
        assertMatchesOracle(path, w, t);
        rmSync(path);
      }
    } finally {
      await db.close();
    }
  });

  test('plan() is a dry run: it names the objects and touches no file', async () => {
    const k = segments[Math.floor(segments.length / 2)]!.minTxid + 1;
    const p = await plan({ ...source(server, prefix), txid: k });
    assert.equal(p.txid, k);
    assert.equal(p.objects[0]!.kind, 'snapshot');
    assert.ok(p.objects[0]!.minTxid <= k);
    for (let i = 1; i < p.objects.length; i++) {
      assert.equal(p.objects[i]!.applyFrom, p.objects[i - 1]!.applyThrough + 1, 'contiguous');
      assert.equal(p.objects[i]!.preChecksum, p.objects[i - 1]!.postChecksum, 'checksums chain');
    }
    assert.equal(p.objects.at(-1)!.applyThrough, k);
  });

  test('a txid outside the replica is ERR_TXID_NOT_FOUND with the restorable range; txid 1 of a new database is inside it', async () => {
    const path = target();
    const last = Math.max(...[...txs.keys()]);
    const early = target();
    const first = await restore({ ...source(server, prefix), path: early, txid: 1 });
    assert.equal(first.txid, 1);
    assertMatchesOracle(early, work, 1);
    for (const k of [last + 1000]) {
      await assert.rejects(restore({ ...source(server, prefix), path, txid: k }), (e: Error & { code?: string; details?: Record<string, unknown> }) => {
        assert.equal(e.code, 'ERR_TXID_NOT_FOUND', e.message);
        assert.match(e.message, /restorable/);
        assert.ok(Array.isArray(e.details?.['ranges']));
        return true;
      });
    }
    assert.equal(existsSync(path), false);
  });
});

describe('restore to a timestamp', () => {
  test('equal, just before, just after a commit; before the first; after the last', async () => {
    const list = [...txs.values()].sort((a, b) => a.txid - b.txid);
    // The expected txid for time t: the longest prefix of transactions committed at or before t.
    const expect = (t: number): number => {
      let k = snapshots[0]!.txid;
      for (const x of list) {
        if (x.txid <= k) continue;
        if (x.timestamp > t) break;
        k = x.txid;
      }
      return k;
    };
    const picks = [list[Math.floor(list.length / 3)]!, list[Math.floor((2 * list.length) / 3)]!];
    for (const x of picks) {
      for (const t of [x.timestamp, x.timestamp - 1, x.timestamp + 1]) {
        const want = expect(t);
        if (t < snapshots[snapshots.length - 1]!.timestamp && want < snapshots[0]!.txid) continue;
        const path = target();
        const r = await restore({ ...source(server, prefix), path, timestamp: t });
        assert.ok(r.timestamp <= t, `restored commit time ${r.timestamp} <= ${t}`);
        assertMatchesOracle(path, work, r.txid, `timestamp ${t}`);
        assert.equal(nativeIntegrity(path), 'ok');
        // Transactions after the restored one were all committed after t.
        const next = list.find((y) => y.txid === r.txid + 1);
        if (next) assert.ok(next.timestamp > t, `txid ${next.txid} (committed ${next.timestamp}) is after ${t}`);
        rmSync(path);
      }
    }
    const lastTx = list[list.length - 1]!;
    const r = await restore({ ...source(server, prefix), path: target(), timestamp: new Date(lastTx.timestamp + 60_000) });
    assert.equal(r.txid, lastTx.txid, 'after the last commit: the latest state');
    await assert.rejects(restore({ ...source(server, prefix), path: target(), timestamp: snapshots[0]!.timestamp - 10_000 }), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'ERR_TIMESTAMP_BEFORE_FIRST', e.message);
      return true;
    });
  });
});
