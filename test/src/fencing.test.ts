// Writer fencing end to end: a DynamoDB lease (dynalite) and S3 (s3rver), both real servers
// started here. A zombie writer paused with SIGSTOP past its lease, whose uploads land late through
// a proxy, must never change what restore produces; the writer that took over continues the
// lineage; the zombie's next write fails with ERR_LEASE_LOST.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { openReplicated, type ReplicatedOptions } from '@walship/shipper';
import { restore } from '@walship/restore';
import { openDatabase } from '@walship/vfs';
import { createLeaseTable } from '@walship/lease';
import { createS3Storage } from '@walship/storage';
import { loadFormat, parseObjectKey } from '@walship/format';
import { startS3rver, startDynalite, startFaultProxy, type S3Server, type DynamoServer, type FaultProxy } from './servers/index.js';

const TRIALS = Number(process.env.WALSHIP_ZOMBIE_TRIALS ?? 3);
// 2 s (was 1 s): the in-process writer B's renewals and its S3 requests (timeout leaseMs / 4) run
// beside CI's other lanes; at 1 s, B's lease once ran out before a renewal landed and its close
// failed with transactions not durable (and before that in a run with a stray busy process).
const LEASE_MS = 2000;
const TABLE = 'walship-leases';
const writer = fileURLToPath(new URL('./fixtures/ship-writer.js', import.meta.url));

let s3: S3Server;
let dynamo: DynamoServer;
let proxy: FaultProxy;
let dir: string;

before(async () => {
  await loadFormat();
  [s3, dynamo] = await Promise.all([startS3rver(), startDynalite()]);
  const c = dynamo.dynamoClientConfig();
  await createLeaseTable({ table: TABLE, endpoint: c.endpoint as string, region: c.region as string, credentials: c.credentials as { accessKeyId: string; secretAccessKey: string } });
  proxy = await startFaultProxy({ target: s3.endpoint, seed: 3, delayMs: 2500 });
  dir = mkdtempSync(join(tmpdir(), 'walship-fence-'));
});

after(async () => {
  await proxy?.stop();
  await Promise.all([s3?.stop(), dynamo?.stop()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function leaseOptions(extra: Record<string, unknown> = {}): { table: string; endpoint: string; region: string; credentials: unknown; leaseMs: number } & Record<string, unknown> {
  const c = dynamo.dynamoClientConfig();
  return { table: TABLE, endpoint: c.endpoint as string, region: c.region as string, credentials: c.credentials, leaseMs: LEASE_MS, ...extra };
}

function options(prefix: string, extra: Partial<ReplicatedOptions> = {}): ReplicatedOptions {
  return {
    lease: leaseOptions({ waitMs: 20_000 }) as ReplicatedOptions['lease'],
    s3: { bucket: s3.bucket, prefix, endpoint: s3.endpoint, region: s3.region, forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } },
    batchWindowMs: 20,
    logLevel: 'silent',
    ...extra,
  };
}

interface Writer {
  child: ChildProcess;
  committed: number;
  durable: number;
  failedWith: string | null;
  exited: Promise<number | null>;
  opened: Promise<{ epoch: number }>;
}

function spawnWriter(path: string, prefix: string, seed: number): Writer {
  const c = dynamo.dynamoClientConfig();
  const child = spawn(process.execPath, [writer, path, proxy.endpoint, s3.bucket, prefix, s3.region, s3.accessKeyId, s3.secretAccessKey, String(seed)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, WALSHIP_WRITER_MARK: 'A', WALSHIP_WRITER_LEASE: JSON.stringify({ table: TABLE, endpoint: c.endpoint, region: c.region, credentials: c.credentials, leaseMs: LEASE_MS }) },
  });
  const w: Writer = { child, committed: 0, durable: 0, failedWith: null, exited: new Promise((r) => child.on('exit', (code) => r(code))), opened: Promise.resolve({ epoch: 0 }) };
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  w.opened = new Promise((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const [kind, a, , c2] = buf.slice(0, i).split(' ');
        buf = buf.slice(i + 1);
        if (kind === 'O') resolve({ epoch: Number(c2) });
        else if (kind === 'C') w.committed = Number(a);
        else if (kind === 'D') w.durable = Math.max(w.durable, Number(a));
        else if (kind === 'X') w.failedWith = a!;
      }
    });
    child.on('exit', (code) => reject(new Error(`writer exited (${code}) before opening: ${stderr}`)));
  });
  return w;
}

/** The object kind a held request's path names (`/bucket/key?query`), if it is one of walship's. */
function heldKind(prefix: string, path: string): string | undefined {
  const key = decodeURIComponent(path.split('?')[0]!.slice(`/${s3.bucket}/`.length));
  return parseObjectKey(prefix, key)?.kind;
}

const until = async (cond: () => boolean, ms: number, what: string): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

/** Rows 1..base are A's, rows base+1..m are B's, and meta.n = m: B's lineage at some point. */
async function checkState(path: string, base: number): Promise<number> {
  const db = await openDatabase(path, { capture: false, create: false });
  try {
    assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
    const m = db.prepare('SELECT n FROM meta').pluck().get() as number;
    const rows = db.prepare('SELECT n, v FROM rows ORDER BY n').all() as { n: number; v: string }[];
    assert.equal(rows.length, m);
    for (const r of rows) {
      const letter = r.v.slice(`${r.n}:`.length, `${r.n}:`.length + 1) || (r.n <= base ? 'A' : 'B');
      assert.equal(letter, r.n <= base ? 'A' : 'B', `row ${r.n} belongs to ${r.n <= base ? 'A (before the takeover)' : 'B (after it)'}, found ${letter}`);
    }
    return m;
  } finally {
    db.close();
  }
}

describe('fencing with a DynamoDB lease', () => {
  test(`zombie writer: SIGSTOP past the lease, takeover, SIGCONT with late uploads — ${TRIALS} trials, restore never sees the zombie`, { timeout: Math.max(600_000, TRIALS * 40_000) }, async (t) => {
    let zombieObjects = 0;
    let lateInjected = 0;
    for (let trial = 0; trial < TRIALS; trial++) {
      const prefix = `fence/${trial}-${randomBytes(3).toString('hex')}`;
      const pathA = join(dir, `a-${trial}.db`);
      const pathB = join(dir, `b-${trial}.db`);
      proxy.setFaultRate(0);
      const a = spawnWriter(pathA, prefix, trial + 1);
      const { epoch: epochA } = await a.opened;
      await until(() => a.durable > 5, 20_000, 'A to make something durable');
      // From here some of A's uploads are held by the network; they land after B's takeover and
      // first flush. A is paused once a segment upload of its is among them, so every trial has a
      // zombie object inside B's range for restore to ignore.
      proxy.holdLate(true);
      proxy.setFaultRate(0.5, ['late']);
      await new Promise((r) => setTimeout(r, 50 + ((trial * 37) % 200)));
      proxy.script('late', 'late');
      await until(() => proxy.held.some((h) => h.method === 'PUT' && heldKind(prefix, h.path) === 'segment'), 20_000, "one of A's segment uploads to be held");
      a.child.kill('SIGSTOP');
      proxy.setFaultRate(0);
      proxy.clearScript();
      const pausedAt = a.committed;
      try {
        // B: restore what is durable, then take the lease over (it waits out A's lease) and write.
        await restore({ s3: options(prefix).s3, path: pathB });
        const b = await openReplicated(pathB, options(prefix));
        const st = b.status();
        assert.ok(st.epoch > epochA, `B's epoch ${st.epoch} above A's ${epochA}`);
        const base = b.prepare('SELECT n FROM meta').pluck().get() as number;
        assert.ok(base >= a.durable, `B starts from everything A had made durable (${base} >= ${a.durable})`);
        const ins = b.prepare('INSERT INTO rows VALUES (?, ?)');
        const bump = b.prepare('UPDATE meta SET n = ?');
        let n = base;
        const commitB = b.transaction((k: number) => {
          ins.run(k, `${k}:`.padEnd(20 + (k % 50), 'B'));
          bump.run(k);
        });
        for (let i = 0; i < 30; i++) commitB(++n);
        await b.flush();
        // A wakes up: its lease ran out while it slept, its held uploads land late.
        a.child.kill('SIGCONT');
        const code = await Promise.race([a.exited, new Promise<string>((r) => setTimeout(() => r('still running'), 15_000))]);
        assert.equal(code, 3, `A stops at its next write (exit ${String(code)}, committed ${a.committed} after pausing at ${pausedAt})`);
        assert.equal(a.failedWith, 'ERR_LEASE_LOST');
        const landed = proxy.releaseLate();
        await proxy.idle(); // every late upload has landed
        lateInjected += landed;
        for (let i = 0; i < 30; i++) commitB(++n);
        await b.close();
        const storage = createS3Storage({ bucket: s3.bucket, endpoint: s3.endpoint, region: s3.region, forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } });
        const epochStart = new Map<number, number>();
        let firstSnapshot = Infinity;
        for await (const o of storage.list({ prefix })) {
          const k = parseObjectKey(prefix, o.key);
          if (k?.kind === 'epoch') epochStart.set(k.epoch, JSON.parse(Buffer.from((await storage.get(o.key))!).toString()).startTxid);
          if (k?.kind === 'snapshot') firstSnapshot = Math.min(firstSnapshot, k.txid);
        }
        let zombies = 0;
        for await (const o of storage.list({ prefix })) {
          const k = parseObjectKey(prefix, o.key);
          if (k?.kind === 'segment' && k.epoch < st.epoch && k.minTxid >= (epochStart.get(st.epoch) ?? Infinity)) zombies++;
        }
        assert.ok(zombies > 0, `trial ${trial + 1}: a late segment of A's (epoch ${epochA} or a later one of A's) landed inside B's range (epoch ${st.epoch} from txid ${epochStart.get(st.epoch)})`);
        zombieObjects += zombies;
        // Restore at every txid of B's lineage from just before the takeover to the end.
        const last = await restore({ s3: options(prefix).s3, path: join(dir, `r-${trial}-last.db`) });
        // Nothing before the generation's first snapshot is restorable.
        const from = Math.max(firstSnapshot, (epochStart.get(st.epoch) ?? 2) - 3);
        for (let txid = from; txid <= last.txid; txid++) {
          const p = join(dir, `r-${trial}-${txid}.db`);
          await restore({ s3: options(prefix).s3, path: p, txid });
          await checkState(p, base);
          rmSync(p, { force: true });
        }
        assert.equal(await checkState(last.path, base), n, 'the latest restore is B after its last commit');
        t.diagnostic(`trial ${trial + 1}/${TRIALS}: A epoch ${epochA} paused at commit ${pausedAt}, B epoch ${st.epoch} from ${base}; ${last.txid - from + 1} txids restored and checked`);
      } finally {
        proxy.setFaultRate(0);
        proxy.holdLate(false);
        proxy.releaseLate();
        if (a.child.exitCode === null && a.child.signalCode === null) {
          a.child.kill('SIGKILL');
          await a.exited;
        }
      }
    }
    t.diagnostic(`late uploads injected: ${lateInjected}; zombie segment objects found in S3 (ignored by restore): ${zombieObjects}`);
  });

  test('renewals failing while a batch uploads: the upload is cut before the lease runs out, flush() fails with the retryable ERR_LEASE_NOT_HELD, writes are refused', async () => {
    const prefix = `fence/renewfail-${randomBytes(3).toString('hex')}`;
    const c = dynamo.dynamoClientConfig();
    const dproxy = await startFaultProxy({ target: c.endpoint as string, seed: 9 });
    const sproxy = await startFaultProxy({ target: s3.endpoint, seed: 10, delayMs: 5000 });
    try {
      const db = await openReplicated(join(dir, 'renewfail.db'), {
        ...options(prefix),
        lease: leaseOptions({ endpoint: dproxy.endpoint }) as ReplicatedOptions['lease'],
        s3: { ...options(prefix).s3, endpoint: sproxy.endpoint },
      });
      db.exec('CREATE TABLE t(x)');
      await db.flush();
      const durable = db.status().durableTxid;
      // Every upload now hangs in the network, and DynamoDB is unreachable.
      sproxy.setFaultRate(1, ['delay']);
      dproxy.setDown(true);
      const started = performance.now();
      db.prepare('INSERT INTO t VALUES (1)').run();
      // DynamoDB is silent, nobody took over: the writer is leaseless (it re-acquires once DynamoDB answers).
      await assert.rejects(db.flush(), (e: Error & { code?: string; details?: { retryable?: boolean } }) => e.code === 'ERR_LEASE_NOT_HELD' && e.details?.retryable === true);
      const lostAfter = performance.now() - started;
      // At the lease's deadline by its timer (late on a loaded machine: the bound is only "not hung";
      // no upload may start past the deadline whatever the timer does, which the scenarios check).
      assert.ok(lostAfter <= 5 * LEASE_MS, `given up at the lease's end (${lostAfter.toFixed(0)} ms)`);
      assert.throws(() => db.prepare('INSERT INTO t VALUES (2)').run(), (e: Error & { code?: string }) => e.code === 'ERR_LEASE_NOT_HELD');
      const lease = db.status().lease;
      assert.equal(lease.mode === 'dynamodb' ? lease.state : lease.mode, 'lost');
      assert.equal(db.status().state, 'leaseless');
      await new Promise((r) => setTimeout(r, 5500)); // past the proxy's hold: a request still attached would land now
      const storage = createS3Storage({ bucket: s3.bucket, endpoint: s3.endpoint, region: s3.region, forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } });
      for await (const o of storage.list({ prefix })) {
        const k = parseObjectKey(prefix, o.key);
        if (k?.kind === 'segment') assert.ok(k.minTxid <= durable, `no segment after the lease was lost (${o.key})`);
      }
      await db.close().catch(() => undefined);
    } finally {
      await Promise.all([dproxy.stop(), sproxy.stop()]);
    }
  });

  test('release then re-acquire by another node continues the lineage with epoch + 1 and no key collisions', async () => {
    const prefix = `fence/handover-${randomBytes(3).toString('hex')}`;
    const path1 = join(dir, 'handover-1.db');
    let db = await openReplicated(path1, options(prefix));
    db.exec('CREATE TABLE t(x)');
    db.prepare('INSERT INTO t VALUES (1)').run();
    const e1 = db.status().epoch;
    await db.close();
    const path2 = join(dir, 'handover-2.db');
    await restore({ s3: options(prefix).s3, path: path2 });
    db = await openReplicated(path2, options(prefix));
    assert.equal(db.status().epoch, e1 + 1, 'released lease: the next node gets epoch + 1 at once');
    const generation = db.status().generation;
    db.prepare('INSERT INTO t VALUES (2)').run();
    await db.close();
    const storage = createS3Storage({ bucket: s3.bucket, endpoint: s3.endpoint, region: s3.region, forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } });
    const keys: string[] = [];
    for await (const o of storage.list({ prefix })) keys.push(o.key);
    assert.equal(new Set(keys).size, keys.length);
    assert.ok(keys.every((k) => !k.includes('/0000') || k.includes(`/${generation}/`) || k.endsWith('database.json')), 'one generation');
    const r = await restore({ s3: options(prefix).s3, path: join(dir, 'handover-r.db') });
    const check = await openDatabase(r.path, { capture: false, create: false });
    assert.deepEqual(check.prepare('SELECT x FROM t ORDER BY x').pluck().all(), [1, 2]);
    check.close();
  });

  test('a held lease refuses a second writer with ERR_LEASE_HELD; a missing table fails at open; nothing is written', async () => {
    const prefix = `fence/held-${randomBytes(3).toString('hex')}`;
    const db = await openReplicated(join(dir, 'held-1.db'), options(prefix));
    try {
      const second = join(dir, 'held-2.db');
      await assert.rejects(openReplicated(second, options(prefix, { lease: leaseOptions({ waitMs: 300 }) as ReplicatedOptions['lease'] })), (e: Error & { code?: string; details?: { owner?: string } }) => {
        assert.equal(e.code, 'ERR_LEASE_HELD');
        return true;
      });
      assert.equal(existsSync(second), false);
      const third = join(dir, 'held-3.db');
      await assert.rejects(openReplicated(third, options(`${prefix}-x`, { lease: leaseOptions({ table: 'no-such-table' }) as ReplicatedOptions['lease'] })), (e: Error & { code?: string }) => e.code === 'ERR_LEASE_TABLE_MISSING');
      assert.equal(existsSync(third), false);
    } finally {
      await db.close();
    }
  });
});
