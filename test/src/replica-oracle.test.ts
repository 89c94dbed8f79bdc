// openReplica against s3rver: a replica written through openReplicated (several segments, periodic
// snapshots, a second epoch), opened at sampled txids and timestamps without downloading it, must
// show exactly the rows of a full restore at that point and of the oracle replay (invariant P),
// encrypted and not; verify() proves the rolling checksum; pages come by ranged GETs through the cache.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Keyring, loadFormat } from '@walship/format';
import { openReplicated } from '@walship/shipper';
import { openReplica, restore, type ReplicaDatabase } from '@walship/restore';
import { startS3rver, type S3Server } from './servers/index.js';
import { Workload, newPrefix, replicaTransactions, s3Options, sleep, source, storageFor, type TxInfo } from './util/restore-harness.js';
import { openOracle, type OracleDatabase } from './util/oracle-sqlite.js';

let server: S3Server;
let dir: string;
let n = 0;
const key = randomBytes(32);
const keys = [{ id: 'replica-k1', key }];

interface Fixture {
  prefix: string;
  work: Workload;
  txs: Map<number, TxInfo>;
  snapshots: { key: string; txid: number; timestamp: number }[];
  segments: { key: string; minTxid: number; maxTxid: number }[];
  extra: { keys?: typeof keys };
}
const fixtures: Record<'plain' | 'encrypted', Fixture> = {} as Record<'plain' | 'encrypted', Fixture>;

/** Rows of every user table in rowid order, blobs as hex, so two SQLite builds compare equal. */
type Rows = Record<string, unknown[][]>;
interface Queryable {
  prepare(sql: string): { pluck(): { all(): unknown[] }; raw(): { all(): unknown[][] } };
}
function rows(db: Queryable): Rows {
  const out: Rows = {};
  const tables = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> '_walship' ORDER BY name").pluck().all() as string[];
  for (const t of tables) {
    out[t] = db
      .prepare(`SELECT * FROM "${t}" ORDER BY rowid`)
      .raw()
      .all()
      .map((r) => r.map((v) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : typeof v === 'bigint' ? Number(v) : v)));
  }
  return out;
}

async function write(label: 'plain' | 'encrypted', seed: number): Promise<void> {
  const prefix = newPrefix(`replica-${label}`);
  const extra = label === 'encrypted' ? { keys } : {};
  const work = new Workload(seed);
  const path = join(dir, `${label}.db`);
  const options = s3Options(server, prefix, { checkpointBytes: 48 * 1024, snapshotIntervalMs: 300, ...(label === 'encrypted' ? { encryption: { keys } } : {}) });
  let db = await openReplicated(path, options);
  work.setup(db);
  // Periodic snapshots inside the history: keep writing (bounded) until two have landed, however
  // slow or fast the machine is.
  const seen = new Set<number>();
  for (let i = 0; i < 160 || (seen.size < 2 && i < 5000); i++) {
    work.step(db);
    if (i % 10 === 0) await sleep(15);
    const snap = db.status().lastSnapshot;
    if (snap) seen.add(snap.txid);
  }
  await db.flush();
  await db.close();
  db = await openReplicated(path, options);
  // A flush every 10 steps: at least 8 more segments, however the batch windows fall under load
  // (a loaded CI run once made 9 segments in all, below the fixture's 10).
  for (let i = 0; i < 80; i++) {
    work.step(db);
    if (i % 10 === 9) await db.flush();
  }
  await db.flush();
  await db.close();
  const r = await replicaTransactions(storageFor(server, prefix), prefix, label === 'encrypted' ? { keyring: new Keyring({ keys }) } : {});
  fixtures[label] = { prefix, work, txs: r.transactions, snapshots: r.snapshots, segments: r.segments, extra };
}

before(async () => {
  await loadFormat();
  server = await startS3rver();
  dir = mkdtempSync(join(tmpdir(), 'walship-replica-'));
  await write('plain', 4242);
  await write('encrypted', 777);
});

after(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function oracleRows(work: Workload, txid: number): Rows {
  const o: OracleDatabase = work.oracle(txid);
  try {
    return rows(o as unknown as Queryable);
  } finally {
    o.close();
  }
}

async function restoredRows(f: Fixture, point: { txid?: number; timestamp?: number }): Promise<{ rows: Rows; txid: number }> {
  const path = join(dir, `restored-${n++}.db`);
  const r = await restore({ ...source(server, f.prefix), ...f.extra, ...point, path });
  const db = openOracle(path, { readonly: true });
  try {
    return { rows: rows(db as unknown as Queryable), txid: r.txid };
  } finally {
    db.close();
  }
}

async function withReplica<T>(f: Fixture, point: { txid?: number; timestamp?: number; cacheBytes?: number }, fn: (db: ReplicaDatabase) => T): Promise<T> {
  const db = await openReplica({ ...source(server, f.prefix), ...f.extra, ...point });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

for (const label of ['plain', 'encrypted'] as const) {
  describe(`openReplica (${label})`, () => {
    test('the replica has several segments and snapshots (the fixture is meaningful)', () => {
      const f = fixtures[label];
      assert.ok(f.segments.length >= 10, `segments: ${f.segments.length}`);
      assert.ok(f.snapshots.length >= 2, `snapshots: ${f.snapshots.length}`);
    });

    test('at sampled txids the rows equal a full restore and the oracle', async () => {
      const f = fixtures[label];
      const all = [...f.txs.keys()].sort((a, b) => a - b);
      const picks = new Set<number>([all[0] as number, all[all.length - 1] as number, ...f.snapshots.map((s) => s.txid)]);
      for (let i = 1; i <= 6; i++) picks.add(all[Math.floor((i * all.length) / 7)] as number);
      for (const txid of [...picks].sort((a, b) => a - b)) {
        const restored = await restoredRows(f, { txid });
        const seen = await withReplica(f, { txid }, (db) => {
          assert.equal(db.txid, txid);
          assert.deepEqual(db.pragma('integrity_check', { simple: true }), 'ok');
          return rows(db);
        });
        assert.deepEqual(seen, restored.rows, `txid ${txid}: replica rows equal the restored file`);
        assert.deepEqual(seen, oracleRows(f.work, txid), `txid ${txid}: replica rows equal the oracle`);
      }
    });

    test('at sampled timestamps it shows the state a restore to that time shows', async () => {
      const f = fixtures[label];
      const txs = [...f.txs.values()].sort((a, b) => a.txid - b.txid);
      for (const i of [Math.floor(txs.length / 3), Math.floor((2 * txs.length) / 3), txs.length - 1]) {
        const timestamp = (txs[i] as TxInfo).timestamp;
        const restored = await restoredRows(f, { timestamp });
        const seen = await withReplica(f, { timestamp }, (db) => ({ rows: rows(db), txid: db.txid }));
        assert.equal(seen.txid, restored.txid, `timestamp ${new Date(timestamp).toISOString()}`);
        assert.deepEqual(seen.rows, restored.rows);
      }
    });

    test('verify() hydrates every page and proves the chain checksum; status counts GETs, bytes and cache hits', async () => {
      const f = fixtures[label];
      await withReplica(f, {}, (db) => {
        const before = db.status();
        assert.equal(before.chunksFetched, 1, 'opening reads the indexes and the chunk of page 1 (the schema), no other page');
        const v = db.verify();
        assert.match(v.checksum, /^[0-9a-f]{16}$/);
        assert.ok(v.pages >= 1);
        const s = db.status();
        // A tip that is one chunk (a snapshot of a small database, as writer timing sometimes leaves
        // it) was all fetched at open: verify then has nothing left to GET.
        const allAtOpen = before.chunksFetched === s.chunksTotal;
        assert.ok((allAtOpen || s.chunksFetched > before.chunksFetched) && s.chunksFetched <= s.chunksTotal, `chunks fetched ${s.chunksFetched} of ${s.chunksTotal} (${before.chunksFetched} at open)`);
        if (!allAtOpen) assert.ok(s.gets > before.gets && s.bytes > before.bytes, JSON.stringify(s));
        rows(db);
        assert.ok(db.status().cacheHits > s.cacheHits, 'a second pass over the pages is served from the cache');
        assert.equal(db.status().gets, s.gets, 'and makes no GET (the database fits in the default cache)');
      });
    });
  });
}

test('the encrypted replica needs its key: ERR_KEY_REQUIRED without keys, ERR_UNKNOWN_KEY with another', async () => {
  const f = fixtures.encrypted;
  await assert.rejects(openReplica({ ...source(server, f.prefix) }), { code: 'ERR_KEY_REQUIRED' });
  await assert.rejects(openReplica({ ...source(server, f.prefix), keys: [{ id: 'other', key: randomBytes(32) }] }), (e: Error & { code?: string }) => {
    assert.ok(['ERR_UNKNOWN_KEY', 'ERR_UNAUTHENTICATED'].includes(e.code ?? ''), String(e.code));
    assert.ok(!e.message.includes(key.toString('base64')));
    return true;
  });
});

test('options: storage, s3.client, an empty cacheDir, a tiny cacheDirBytes, and follow with a txid are refused with ERR_INVALID_OPTION', async () => {
  const f = fixtures.plain;
  await assert.rejects(openReplica({ storage: storageFor(server, f.prefix), prefix: f.prefix }), { code: 'ERR_INVALID_OPTION' });
  await assert.rejects(openReplica({ ...source(server, f.prefix), cacheDir: '' }), { code: 'ERR_INVALID_OPTION' });
  await assert.rejects(openReplica({ ...source(server, f.prefix), cacheDir: dir, cacheDirBytes: 1000 }), { code: 'ERR_INVALID_OPTION' });
  await assert.rejects(openReplica({ ...source(server, f.prefix), follow: true, txid: 1 }), { code: 'ERR_INVALID_OPTION' });
  await assert.rejects(openReplica({ ...source(server, f.prefix), cacheBytes: 1000 }), { code: 'ERR_INVALID_OPTION' });
});
