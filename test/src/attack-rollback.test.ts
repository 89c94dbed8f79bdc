// Attack: someone with write access to the bucket (no DynamoDB access) deletes the newest objects,
// so a restore would quietly return an older state. The lease item in DynamoDB records the durable
// high-water mark (generation, txid) on the renewals and the release the writer sends anyway;
// restore, verify and status given the lease table refuse a bucket behind it with
// ERR_REPLICA_BEHIND and create nothing. Also: a lease holder whose local file diverged from the
// replica must not bury what another writer flushed (ERR_DIVERGED unless allowRollback).
// Real servers only: s3rver, dynalite, and the fault proxy in front of s3rver.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { DynamoDBClient, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { loadFormat, parseObjectKey } from '@walship/format';
import { openReplicated, type ReplicatedDatabase, type ReplicatedOptions } from '@walship/shipper';
import { createDynamoLease, createLeaseTable, forceRelease, readLease, type DurableMark } from '@walship/lease';
import { describeReplica, restore, verify } from '@walship/restore';
import { openDatabase } from '@walship/vfs';
import { startDynalite, startFaultProxy, startS3rver, type DynamoServer, type FaultProxy, type S3Server } from './servers/index.js';
import { s3Location, storageFor } from './util/s3.js';

const CLI = fileURLToPath(new URL('../../packages/restore/dist/cli.js', import.meta.url));
const TABLE = 'walship-hwm';

let s3: S3Server;
let dynamo: DynamoServer;
let proxy: FaultProxy;
let dir: string;

before(async () => {
  await loadFormat();
  [s3, dynamo] = await Promise.all([startS3rver(), startDynalite()]);
  await createLeaseTable({ table: TABLE, ...connection() });
  proxy = await startFaultProxy({ target: s3.endpoint });
  dir = mkdtempSync(join(tmpdir(), 'walship-attack-rollback-'));
});

after(async () => {
  await proxy?.stop();
  await Promise.all([s3?.stop(), dynamo?.stop()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function connection(): { endpoint: string; region: string; credentials: { accessKeyId: string; secretAccessKey: string } } {
  const c = dynamo.dynamoClientConfig();
  return { endpoint: c.endpoint as string, region: c.region as string, credentials: c.credentials as { accessKeyId: string; secretAccessKey: string } };
}

const newPrefix = (name: string): string => `attack-rollback/${name}-${randomBytes(4).toString('hex')}`;
const keyOf = (prefix: string): string => `s3://${s3.bucket}/${prefix}`;

function writerOptions(prefix: string, extra: Partial<ReplicatedOptions> = {}, endpoint = s3.endpoint): ReplicatedOptions {
  return {
    lease: { table: TABLE, ...connection(), leaseMs: 2000, waitMs: 20_000 },
    s3: { ...s3Location(s3, prefix, endpoint), retry: { attempts: 2, baseDelayMs: 10, maxDelayMs: 100, requestTimeoutMs: 400, connectTimeoutMs: 300 } },
    batchWindowMs: 0,
    logLevel: 'silent',
    retentionMs: 0,
    compaction: false,
    ...extra,
  };
}

/** What restore, verify and status take to reach the replica and its lease item. */
function source(prefix: string, withLease = true) {
  return {
    s3: { ...s3Location(s3, prefix), retry: { attempts: 2, baseDelayMs: 10, maxDelayMs: 100, requestTimeoutMs: 5000 } },
    ...(withLease ? { lease: { table: TABLE, ...connection() } } : {}),
  };
}

function insert(db: ReplicatedDatabase, who: string, n: number): void {
  const ins = db.prepare('INSERT INTO t(who) VALUES (?)');
  for (let i = 0; i < n; i++) ins.run(`${who}${i}`);
}

/** Rows of a restored file, read through walship's own VFS (the file is a scratch copy). */
async function rows(path: string): Promise<string[]> {
  const db = await openDatabase(path);
  try {
    return db.prepare('SELECT who FROM t ORDER BY id').pluck().all() as string[];
  } finally {
    db.close();
  }
}

/** Level-0 segment keys of the replica's newest generation, oldest first. */
async function segments(prefix: string): Promise<string[]> {
  const out: { key: string; minTxid: number; generation: string }[] = [];
  for await (const o of storageFor(s3, prefix).list({ prefix: `${prefix}/` })) {
    const p = parseObjectKey(prefix, o.key);
    if (p?.kind === 'segment' && p.level === 0) out.push({ key: o.key, minTxid: p.minTxid, generation: p.generation });
  }
  const newest = out.reduce((g, o) => (o.generation > g ? o.generation : g), '');
  return out.filter((o) => o.generation === newest).sort((a, b) => a.minTxid - b.minTxid).map((o) => o.key);
}

function cli(args: string[], extraEnv: NodeJS.ProcessEnv = {}): { status: number | null; stdout: string; stderr: string } {
  const c = connection();
  const env = {
    PATH: process.env['PATH'],
    HOME: process.env['HOME'],
    AWS_ENDPOINT_URL_S3: s3.endpoint,
    AWS_ENDPOINT_URL_DYNAMODB: c.endpoint,
    AWS_REGION: s3.region,
    AWS_ACCESS_KEY_ID: s3.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
    ...extraEnv,
  };
  const r = spawnSync(process.execPath, [CLI, ...args], { env, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function assertBehind(e: unknown, prefix: string, mark: DurableMark): true {
  const err = e as Error & { code?: string; details?: Record<string, unknown> };
  assert.equal(err.code, 'ERR_REPLICA_BEHIND', err.message);
  assert.equal(err.details?.['markGeneration'], mark.generation);
  assert.equal(err.details?.['markTxid'], mark.txid);
  assert.equal(err.details?.['table'], TABLE);
  assert.equal(err.details?.['key'], keyOf(prefix));
  assert.ok(typeof err.details?.['replicaTxid'] === 'number' && (err.details['replicaTxid'] as number) < mark.txid, `the bucket's txid is below the mark: ${err.message}`);
  assert.match(err.message, /deleted|rolled back/);
  return true;
}

/** Polls (bounded) until the lease item's mark reaches txid: the heartbeat carries it. */
async function markReaches(prefix: string, txid: number): Promise<DurableMark> {
  for (let i = 0; i < 300; i++) {
    const item = await readLease({ table: TABLE, key: keyOf(prefix), ...connection() });
    if (item?.durable && item.durable.txid >= txid) return item.durable;
    await sleep(50);
  }
  assert.fail(`the lease item's mark never reached txid ${txid}`);
}

describe('silent rollback: deleting the newest objects', () => {
  test('restore, verify and status with the lease table: ERR_REPLICA_BEHIND and no target; untouched bucket: success', async () => {
    const prefix = newPrefix('delete-newest');
    const db = await openReplicated(join(dir, 'origin.db'), writerOptions(prefix));
    db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT)');
    const early = (await db.flush()).txid;
    for (let i = 0; i < 5; i++) {
      insert(db, `w${i}-`, 3);
      await db.flush();
    }
    const flushed = db.txid;
    const generation = db.status().generation!;
    // Still open: only the heartbeat can have written the mark.
    const live = await markReaches(prefix, flushed);
    assert.equal(live.generation, generation);
    await db.close();
    const item = await readLease({ table: TABLE, key: keyOf(prefix), ...connection() });
    const mark = item!.durable!;
    assert.ok(mark.txid >= flushed, `release records the last durable txid (${mark.txid} >= ${flushed})`);

    // Untouched bucket: all three succeed, and an explicit older txid is fine (the bucket still reaches the mark).
    const ok = await restore({ ...source(prefix), path: join(dir, 'ok.db') });
    assert.equal(ok.txid, mark.txid);
    assert.equal((await rows(ok.path)).length, 15);
    const older = await restore({ ...source(prefix), path: join(dir, 'older.db'), txid: early + 3 });
    assert.equal(older.txid, early + 3);
    assert.equal((await verify(source(prefix))).ok, true);
    const described = await describeReplica(source(prefix));
    assert.deepEqual(described.highWaterMark, { generation: mark.generation, txid: mark.txid, table: TABLE, key: keyOf(prefix) });
    assert.equal(described.behind, null);
    const st = cli(['status', keyOf(prefix), '--lease-table', TABLE, '--json']);
    assert.equal(st.status, 0, st.stderr + st.stdout);

    // The attack: the newest two segments go.
    const keys = await segments(prefix);
    assert.ok(keys.length >= 3, `several segments (${keys.length})`);
    await storageFor(s3, prefix).delete(keys.slice(-2));

    const target = join(dir, 'behind', 'restored.db');
    await assert.rejects(restore({ ...source(prefix), path: target }), (e) => assertBehind(e, prefix, mark));
    assert.equal(existsSync(join(dir, 'behind')), false, 'nothing created: not the file, not its directory');
    await assert.rejects(restore({ ...source(prefix), path: target, txid: early + 3 }), (e) => assertBehind(e, prefix, mark));
    assert.equal(existsSync(join(dir, 'behind')), false);
    const v = await verify(source(prefix));
    assert.equal(v.ok, false);
    assert.equal(v.error?.code, 'ERR_REPLICA_BEHIND');
    const d = await describeReplica(source(prefix));
    assert.equal(d.behind?.code, 'ERR_REPLICA_BEHIND');
    assert.equal(d.behind?.details['markTxid'], mark.txid);

    const cliTarget = join(dir, 'cli-behind', 'restored.db');
    const r = cli(['restore', keyOf(prefix), cliTarget, '--lease-table', TABLE]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /ERR_REPLICA_BEHIND/);
    assert.equal(existsSync(join(dir, 'cli-behind')), false);
    const rv = cli(['verify', keyOf(prefix), '--json'], { WALSHIP_LEASE_TABLE: TABLE });
    assert.equal(rv.status, 1, rv.stderr);
    assert.equal((JSON.parse(rv.stdout) as { error: { code: string } }).error.code, 'ERR_REPLICA_BEHIND');
    const rs = cli(['status', keyOf(prefix), '--lease-table', TABLE, '--json']);
    assert.equal(rs.status, 1, rs.stderr);
    const report = JSON.parse(rs.stdout) as { problem: { code: string; details: Record<string, unknown> } };
    assert.equal(report.problem.code, 'ERR_REPLICA_BEHIND');
    assert.equal(report.problem.details['markTxid'], mark.txid);

    // A lease table that does not exist is a configuration error, also for verify (exit 2).
    const missing = cli(['verify', keyOf(prefix), '--lease-table', 'no-such-table', '--json']);
    assert.equal(missing.status, 2, missing.stderr);
    assert.equal((JSON.parse(missing.stdout) as { error: { code: string } }).error.code, 'ERR_LEASE_TABLE_MISSING');

    // Without the lease table the rollback cannot be seen (documented): the older state comes back.
    const blind = await restore({ ...source(prefix, false), path: join(dir, 'blind.db') });
    assert.ok(blind.txid < mark.txid);
  });

  test('deleting the whole newest generation is behind too; a writer opening on that bucket is refused unless allowRollback', async () => {
    const prefix = newPrefix('delete-generation');
    let db = await openReplicated(join(dir, 'gen-a.db'), writerOptions(prefix));
    db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT)');
    await db.flush();
    for (let i = 0; i < 5; i++) {
      insert(db, `a${i}-`, 1);
      await db.flush();
    }
    await db.close();
    // A second generation (allowRollback from an older restore), then the attacker deletes it.
    const first = (await readLease({ table: TABLE, key: keyOf(prefix), ...connection() }))!.durable!;
    const back = join(dir, 'gen-b.db');
    await restore({ ...source(prefix), path: back, txid: first.txid - 2 });
    db = await openReplicated(back, writerOptions(prefix, { allowRollback: true }));
    insert(db, 'b', 5);
    const second = db.status().generation!;
    await db.close();
    const mark = (await readLease({ table: TABLE, key: keyOf(prefix), ...connection() }))!.durable!;
    assert.equal(mark.generation, second, 'the mark moved to the new generation');
    const storage = storageFor(s3, prefix);
    const doomed: string[] = [];
    for await (const o of storage.list({ prefix: `${prefix}/${second}/` })) doomed.push(o.key);
    await storage.delete(doomed);
    await assert.rejects(restore({ ...source(prefix), path: join(dir, 'gone', 'x.db') }), (e) => assertBehind(e, prefix, mark));
    assert.equal(existsSync(join(dir, 'gone')), false);

    // The writer that still has the file: its bucket lost what the mark records.
    await assert.rejects(openReplicated(back, writerOptions(prefix)), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'ERR_REPLICA_BEHIND', e.message);
      return true;
    });
    db = await openReplicated(back, writerOptions(prefix, { allowRollback: true }));
    const third = db.status().generation!;
    assert.ok(third > second, 'a new generation, sorting after the lost one');
    await db.close();
    const moved = (await readLease({ table: TABLE, key: keyOf(prefix), ...connection() }))!.durable!;
    assert.equal(moved.generation, third);
    const latest = await restore({ ...source(prefix), path: join(dir, 'after-rollback.db') });
    assert.equal(latest.generation, third);
  });

  test('the commit path writes nothing to DynamoDB: the mark rides on the release (and the heartbeat)', async () => {
    const prefix = newPrefix('no-extra-writes');
    const client = new DynamoDBClient({ ...connection(), maxAttempts: 1 });
    const updates: string[] = [];
    client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'UpdateItemCommand' || context.commandName === 'PutItemCommand') updates.push(context.commandName);
        return next(args);
      },
      { step: 'initialize' },
    );
    // A heartbeat far longer than the test: any write seen before close came from the commit path.
    const db = await openReplicated(join(dir, 'quiet.db'), { ...writerOptions(prefix), lease: { table: TABLE, client, leaseMs: 600_000, waitMs: 1000 } });
    assert.deepEqual(updates, ['PutItemCommand'], 'the grant');
    db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT)');
    for (let i = 0; i < 10; i++) {
      insert(db, `q${i}`, 1);
      await db.flush();
    }
    const flushed = db.txid;
    assert.deepEqual(updates, ['PutItemCommand'], 'no DynamoDB write per commit or flush');
    await db.close();
    assert.deepEqual(updates, ['PutItemCommand', 'UpdateItemCommand'], 'one release');
    const item = await readLease({ table: TABLE, key: keyOf(prefix), ...connection() });
    assert.ok(item!.durable!.txid >= flushed);
    client.destroy();
  });

  test('the mark only moves forward: a zombie epoch cannot write it, a lower report does not lower it, a later generation moves it', async () => {
    const key = `s3://${s3.bucket}/${newPrefix('monotonic')}`;
    const lease = (owner: string) => createDynamoLease({ table: TABLE, key, owner, leaseMs: 60_000, waitMs: 0, ...connection(), logger: () => undefined });
    const mark = async () => (await readLease({ table: TABLE, key, ...connection() }))!.durable;
    const g1 = '0000000100000000';
    const g2 = '0000000300000000';

    const a = lease('a');
    await a.acquire();
    a.recordDurable({ generation: g1, txid: 10 });
    await a.renew();
    assert.deepEqual(await mark(), { generation: g1, txid: 10 });

    // a is fenced (force release, b takes epoch 2); b records more.
    await forceRelease({ table: TABLE, key, ...connection() });
    const b = lease('b');
    const grant = await b.acquire();
    assert.deepEqual(grant.durable, { generation: g1, txid: 10 }, 'the grant carries the mark it found');
    b.recordDurable({ generation: g1, txid: 20 });
    await b.renew();
    a.recordDurable({ generation: g1, txid: 5 });
    await assert.rejects(a.renew(), (e: Error & { code?: string }) => e.code === 'ERR_LEASE_LOST');
    assert.deepEqual(await mark(), { generation: g1, txid: 20 }, 'the zombie did not lower it');

    // A holder that reports less than the item holds keeps its lease; the mark stays. The item is
    // raised behind the holder's back, so its write carries a lower mark and DynamoDB's condition
    // (not only the holder's own bookkeeping) has to refuse it.
    await b.release();
    const c = lease('c');
    await c.acquire();
    c.recordDurable({ generation: g1, txid: 15 });
    await c.renew();
    assert.deepEqual(await mark(), { generation: g1, txid: 20 });
    const raw = new DynamoDBClient(connection());
    await raw.send(
      new UpdateItemCommand({ TableName: TABLE, Key: { pk: { S: key } }, UpdateExpression: 'SET durableTxid = :t', ExpressionAttributeValues: { ':t': { N: '50' } } }),
    );
    raw.destroy();
    c.recordDurable({ generation: g1, txid: 30 });
    await c.renew();
    assert.equal(c.state, 'held', 'a refused mark is not a lost lease');
    assert.deepEqual(await mark(), { generation: g1, txid: 50 });
    c.recordDurable({ generation: g2, txid: 3 });
    await c.release();
    assert.deepEqual(await mark(), { generation: g2, txid: 3 }, 'a later generation moves it forward');
    for (const l of [a, b, c]) l.close();
  });
});

describe('a lease holder whose local file diverged from the replica', () => {
  test('writer 2 with an older copy plus its own unshipped writes: ERR_DIVERGED, writer 1\u2019s flushed rows stay the latest state', async () => {
    const prefix = newPrefix('diverged');
    const machineA = join(dir, 'machine-a');
    const machineB = join(dir, 'machine-b');
    mkdirSync(machineA);
    mkdirSync(machineB);
    const fileA = join(machineA, 'app.db');
    const fileB = join(machineB, 'app.db');

    // Writer 1 starts the replica.
    let w1 = await openReplicated(fileA, writerOptions(prefix));
    w1.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT)');
    insert(w1, 'a', 3);
    await w1.close();

    // Machine B takes a copy (a restore) and writes through a network that drops every S3 request:
    // its transactions commit locally, stay in its WAL, and never reach the bucket.
    await restore({ ...source(prefix), path: fileB });
    let w2 = await openReplicated(fileB, writerOptions(prefix, {}, proxy.endpoint));
    proxy.setDown(true);
    insert(w2, 'b', 20);
    await assert.rejects(w2.close({ timeoutMs: 300 }), (e: Error & { code?: string }) => e.code === 'ERR_CLOSED');
    proxy.setDown(false);

    // Writer 1 takes the lease again and flushes more: acknowledged as durable.
    w1 = await openReplicated(fileA, writerOptions(prefix));
    insert(w1, 'a-more', 4);
    const acknowledged = (await w1.flush()).txid;
    await w1.close();
    const before = await restore({ ...source(prefix), path: join(dir, 'diverged-before.db') });
    assert.ok(before.txid >= acknowledged);

    // Writer 2 comes back with its file: it must not replace writer 1's transactions.
    await assert.rejects(openReplicated(fileB, writerOptions(prefix)), (e: Error & { code?: string; details?: Record<string, unknown> }) => {
      assert.equal(e.code, 'ERR_DIVERGED', e.message);
      assert.equal(e.details?.['replicaTxid'], before.txid);
      assert.ok((e.details?.['localTxid'] as number) > before.txid);
      assert.match(String(e.details?.['localChecksum']), /^[0-9a-f]{16}$/);
      assert.match(e.message, /allowRollback/);
      return true;
    });
    const latest = await restore({ ...source(prefix), path: join(dir, 'diverged-after.db') });
    assert.equal(latest.txid, before.txid);
    assert.equal(latest.generation, before.generation);
    const got = await rows(latest.path);
    assert.deepEqual(got.filter((w) => w.startsWith('a-more')), ['a-more0', 'a-more1', 'a-more2', 'a-more3'], 'writer 1\u2019s flushed rows are the latest state');

    // On purpose, allowRollback keeps writer 2's file: a new generation, writer 1's still restorable by generation.
    w2 = await openReplicated(fileB, writerOptions(prefix, { allowRollback: true }));
    assert.notEqual(w2.status().generation, before.generation);
    await w2.close();
    const buried = await restore({ ...source(prefix), path: join(dir, 'diverged-buried.db') });
    assert.equal((await rows(buried.path)).some((w) => w.startsWith('a-more')), false, 'what opening did silently before: the latest state lost writer 1\u2019s flushed rows');
    const old = await restore({ ...source(prefix), path: join(dir, 'diverged-old.db'), generation: before.generation });
    assert.equal(old.txid, before.txid);
  });

  test('writer 2 with an older copy and no writes of its own: refused (ERR_DURABLE_AHEAD), as before', async () => {
    const prefix = newPrefix('older-copy');
    const fileA = join(dir, 'older-a.db');
    const fileB = join(dir, 'older-b.db');
    let w1 = await openReplicated(fileA, writerOptions(prefix));
    w1.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT)');
    insert(w1, 'a', 3);
    await w1.close();
    await restore({ ...source(prefix), path: fileB });
    w1 = await openReplicated(fileA, writerOptions(prefix));
    insert(w1, 'a-more', 3);
    await w1.close();
    await assert.rejects(openReplicated(fileB, writerOptions(prefix)), (e: Error & { code?: string }) => e.code === 'ERR_DURABLE_AHEAD');
  });
});
