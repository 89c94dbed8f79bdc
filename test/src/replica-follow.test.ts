// openReplica({ follow: true }) under a live writer (openReplicated on s3rver): the replica's state
// follows the writer's segments and snapshots, and at each state it reaches its rows equal the oracle
// replay and a full restore at the same txid; a read transaction keeps the state it started with
// while a newer one waits; a damaged new segment is a typed error in status() and the replica keeps
// showing its last good state until the object is whole again.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HEADER_SIZE, loadFormat, readIndex } from '@walship/format';
import { openReplicated } from '@walship/shipper';
import { openReplica, restore, type ReplicaDatabase } from '@walship/restore';
import { startS3rver, type S3Server } from './servers/index.js';
import { Workload, newPrefix, replicaTransactions, s3Options, sleep, source, storageFor } from './util/restore-harness.js';
import { openOracle } from './util/oracle-sqlite.js';

let server: S3Server;
let dir: string;
let n = 0;

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

function oracleRows(work: Workload, txid: number): Rows {
  const o = work.oracle(txid);
  try {
    return rows(o as unknown as Queryable);
  } finally {
    o.close();
  }
}

async function restoredRows(prefix: string, txid: number): Promise<Rows> {
  const path = join(dir, `restored-${n++}.db`);
  await restore({ ...source(server, prefix), txid, path });
  const db = openOracle(path, { readonly: true });
  try {
    return rows(db as unknown as Queryable);
  } finally {
    db.close();
  }
}

/** Waits (bounded by attempts, not by time) until the replica shows `txid`. */
async function reach(db: ReplicaDatabase, txid: number): Promise<void> {
  for (let i = 0; i < 2000 && db.txid < txid; i++) await sleep(20);
  assert.equal(db.txid, txid, `the replica reached txid ${txid}: ${JSON.stringify(db.status().follow)}`);
}

before(async () => {
  await loadFormat();
  server = await startS3rver();
  dir = mkdtempSync(join(tmpdir(), 'walship-replica-follow-'));
});

after(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('follows a live writer: at every state it reaches, the rows equal the oracle and a full restore at that txid', async () => {
  const prefix = newPrefix('replica-follow');
  const work = new Workload(1515);
  const writer = await openReplicated(join(dir, 'live.db'), s3Options(server, prefix, { checkpointBytes: 48 * 1024, snapshotIntervalMs: 400 }));
  let replica: ReplicaDatabase | null = null;
  try {
    work.setup(writer);
    for (let i = 0; i < 20; i++) work.step(writer);
    await writer.flush();
    replica = await openReplica({ ...source(server, prefix), follow: true, followIntervalMs: 20, followProbeEvery: 3 });
    assert.equal(replica.txid, writer.txid);
    const start = replica.txid;
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 25; i++) {
        work.step(writer);
        if (i % 8 === 0) await sleep(10);
      }
      await writer.flush();
      const txid = writer.txid;
      await reach(replica, txid);
      assert.equal(replica.pragma('integrity_check', { simple: true }), 'ok');
      const seen = rows(replica);
      assert.deepEqual(seen, oracleRows(work, txid), `round ${round}, txid ${txid}: the oracle`);
      assert.deepEqual(seen, await restoredRows(prefix, txid), `round ${round}, txid ${txid}: a full restore`);
    }
    const s = replica.status();
    assert.ok(s.follow !== null && s.follow.updates >= 5 && s.follow.txid === writer.txid && s.follow.lastError === null, JSON.stringify(s.follow));
    assert.ok(s.txid > start);
    assert.match(replica.verify().checksum, /^[0-9a-f]{16}$/, 'the followed state hashes to the chain checksum of its txid');
  } finally {
    replica?.close();
    await writer.close();
  }
});

test('follow polls every followActiveIntervalMs for 5 s after the open or a new state, then every followIntervalMs', async () => {
  const prefix = newPrefix('replica-follow-active');
  const work = new Workload(78);
  const writer = await openReplicated(join(dir, 'active.db'), s3Options(server, prefix, { batchWindowMs: 0 }));
  let replica: ReplicaDatabase | null = null;
  try {
    work.setup(writer);
    await writer.flush();
    // An hour between quiet polls: only the active pace can show anything within this test.
    replica = await openReplica({ ...source(server, prefix), follow: true, followIntervalMs: 3_600_000, followActiveIntervalMs: 20 });
    assert.equal(replica.status().follow?.pollIntervalMs, 20, 'active right after the open');
    for (let i = 0; i < 10; i++) work.step(writer);
    await writer.flush();
    await reach(replica, writer.txid);
    assert.deepEqual(rows(replica), oracleRows(work, writer.txid));
    assert.equal(replica.status().follow?.pollIntervalMs, 20, 'active after a new state');
    await sleep(5600);
    assert.equal(replica.status().follow?.pollIntervalMs, 3_600_000, 'quiet 5 s after the last new state');
    const polls = replica.status().follow?.polls;
    for (let i = 0; i < 10; i++) work.step(writer);
    await writer.flush();
    await sleep(1500);
    assert.ok(replica.txid < writer.txid, `quiet: the next segment waits for the hourly poll (replica at ${replica.txid}, writer at ${writer.txid})`);
    assert.equal(replica.status().follow?.polls, polls, 'no poll while quiet');
  } finally {
    replica?.close();
    await writer.close();
  }
});

test('follow reads the header of each object once: a later plan GETs only the new objects (header cache by key, size and ETag)', async () => {
  const prefix = newPrefix('replica-follow-headers');
  const work = new Workload(79);
  const writer = await openReplicated(join(dir, 'headers.db'), s3Options(server, prefix, { snapshotIntervalMs: 0, batchWindowMs: 0 }));
  const storage = storageFor(server, prefix);
  const gets: string[] = [];
  let replica: ReplicaDatabase | null = null;
  try {
    work.setup(writer);
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 5; i++) work.step(writer);
      await writer.flush();
    }
    replica = await openReplica({
      ...source(server, prefix),
      follow: true,
      followIntervalMs: 3_600_000,
      followActiveIntervalMs: 0,
      onRequest: (e) => {
        if (e.operation === 'get' && e.key) gets.push(e.key);
      },
    });
    const atOpen = new Set((await replicaTransactions(storage, prefix)).segments.map((x) => x.key));
    assert.ok(atOpen.size >= 2, `objects at the open: ${[...atOpen].join(', ')}`);
    gets.length = 0;
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 5; i++) work.step(writer);
      await writer.flush();
      await replica.poll();
      assert.equal(replica.status().follow?.lastError, null, JSON.stringify(replica.status().follow));
    }
    const again = gets.filter((k) => atOpen.has(k));
    assert.deepEqual(again, [], `no GET of an object planned before (its header is known); GETs: ${gets.join(', ')}`);
    assert.ok(gets.length > 0, 'the new objects were read');
    assert.equal(replica.txid, writer.txid);
    assert.deepEqual(rows(replica), oracleRows(work, writer.txid));
    // An object planned before, replaced (another segment's bytes under its key): its listing ETag
    // changed, so the next plan reads its header again and refuses it.
    const [victim, donor] = [...atOpen].sort();
    await storage.put(victim!, (await storage.get(donor!))!);
    await replica.poll();
    assert.equal(replica.status().follow?.lastError?.code, 'ERR_CORRUPT_OBJECT', JSON.stringify(replica.status().follow));
  } finally {
    replica?.close();
    await writer.close();
  }
});

test('a read transaction keeps its state while a newer one is staged; the next one sees it', async () => {
  const prefix = newPrefix('replica-follow-tx');
  const work = new Workload(77);
  const writer = await openReplicated(join(dir, 'tx.db'), s3Options(server, prefix));
  let replica: ReplicaDatabase | null = null;
  try {
    work.setup(writer);
    for (let i = 0; i < 30; i++) work.step(writer);
    await writer.flush();
    const t0 = writer.txid;
    // Polls only when asked (poll()), so the test decides when a newer state lands.
    replica = await openReplica({ ...source(server, prefix), follow: true, followIntervalMs: 3_600_000, followActiveIntervalMs: 0 });
    const before = oracleRows(work, t0);
    replica.exec('BEGIN');
    assert.deepEqual(rows(replica), before);
    const it = replica.prepare('SELECT * FROM kv ORDER BY rowid').raw().iterate();
    const first = it.next();
    for (let i = 0; i < 30; i++) work.step(writer);
    await writer.flush();
    const t1 = writer.txid;
    assert.ok(t1 > t0);
    await replica.poll();
    const f = replica.status().follow;
    assert.equal(f?.stagedTxid, t1, JSON.stringify(f));
    assert.equal(replica.txid, t0, 'inside the transaction the state stays the one it started with');
    const rest = [first.value, ...it].map((r) => (r as unknown[]).map((v) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : typeof v === 'bigint' ? Number(v) : v)));
    assert.ok((before.kv ?? []).length > 0);
    assert.deepEqual(rest, before.kv, 'an iterator opened in the transaction reads the old state to its end');
    assert.deepEqual(rows(replica), before);
    replica.exec('COMMIT');
    assert.deepEqual(rows(replica), oracleRows(work, t1), 'the next read transaction sees the staged state');
    assert.equal(replica.txid, t1);
    assert.equal(replica.status().follow?.stagedTxid, null);
  } finally {
    replica?.close();
    await writer.close();
  }
});

test('a damaged new segment: ERR_CORRUPT_OBJECT in status().follow, the replica keeps its last good state, and moves on once the object is whole', async () => {
  const prefix = newPrefix('replica-follow-damaged');
  const work = new Workload(9);
  const writer = await openReplicated(join(dir, 'damaged.db'), s3Options(server, prefix, { snapshotIntervalMs: 0 }));
  const storage = storageFor(server, prefix);
  let replica: ReplicaDatabase | null = null;
  try {
    work.setup(writer);
    for (let i = 0; i < 20; i++) work.step(writer);
    await writer.flush();
    const t0 = writer.txid;
    replica = await openReplica({ ...source(server, prefix), follow: true, followIntervalMs: 3_600_000, followActiveIntervalMs: 0 });
    const known = new Set((await replicaTransactions(storage, prefix)).segments.map((s) => s.key));
    for (let i = 0; i < 20; i++) work.step(writer);
    await writer.flush();
    const t1 = writer.txid;
    const fresh = (await replicaTransactions(storage, prefix)).segments.filter((s) => !known.has(s.key));
    assert.ok(fresh.length >= 1, 'the writer shipped new segments');
    const key = (fresh[fresh.length - 1] as { key: string }).key;
    const bytes = (await storage.get(key)) as Uint8Array;
    const { index, trailer } = await readIndex(bytes.subarray(0, HEADER_SIZE), bytes, { name: key });
    const c = index.chunks[0] as { objectOffset: number };
    const end = index.chunks[1]?.objectOffset ?? trailer.indexOffset;
    // A copy (the body may be a Buffer, whose slice() is a view).
    const original = new Uint8Array(bytes);
    // A bit in the middle of the first data chunk: the index and the header still read well.
    const at = c.objectOffset + Math.floor((end - c.objectOffset) / 2);
    bytes[at] = (bytes[at] as number) ^ 0x10;
    await storage.put(key, bytes);
    await replica.poll();
    const f = replica.status().follow;
    assert.equal(f?.lastError?.code, 'ERR_CORRUPT_OBJECT', JSON.stringify(f));
    assert.match(f?.lastError?.message ?? '', new RegExp(key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    assert.equal(f?.stagedTxid, null, 'nothing is staged');
    assert.equal(replica.txid, t0, 'the replica keeps its last good state');
    assert.deepEqual(rows(replica), oracleRows(work, t0));
    await storage.put(key, original);
    await replica.poll();
    assert.equal(replica.status().follow?.lastError, null);
    assert.equal(replica.txid, t1);
    assert.deepEqual(rows(replica), oracleRows(work, t1));
  } finally {
    replica?.close();
    await writer.close();
  }
});
