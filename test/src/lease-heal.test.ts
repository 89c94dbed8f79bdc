// The lease heals: reacquire() after an outage longer than the lease (a new epoch at once, only if
// the item is still ours), and the at-once takeover of a dead holder on this host (pid gone, or pid
// reused by another process; never a live or paused one, never one of another pid space). Against
// dynalite; the outage and the race go through the fault proxy.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { DynamoDBClient, UpdateItemCommand, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import { LeaseHeldError, LeaseLostError, createDynamoLease, createLeaseTable, forceRelease, isLeaseError, type DynamoLeaseOptions, type Lease } from '@walship/lease';
import { processAlive } from '@walship/vfs';
import { startDynalite, startFaultProxy, type DynamoServer, type FaultProxy } from './servers/index.js';
import { readItem, sleep } from './fixtures/lease-util.js';

const TABLE = 'walship-leases';
const contenderScript = fileURLToPath(new URL('./fixtures/lease-contender.js', import.meta.url));

describe('lease healing on dynalite', () => {
  let server: DynamoServer;
  let config: DynamoDBClientConfig;
  const leases: Lease[] = [];
  const children: ChildProcess[] = [];
  const newKey = (label: string) => `s3://bucket/${label}-${randomUUID().slice(0, 8)}`;
  const connection = () => ({
    endpoint: server.endpoint,
    region: server.region,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  });
  const open = (key: string, o: Partial<DynamoLeaseOptions> = {}): Lease => {
    const lease = createDynamoLease({ ...connection(), table: TABLE, key, leaseMs: 600, requestTimeoutMs: 200, logger: () => undefined, ...o });
    leases.push(lease);
    return lease;
  };

  /** A lease whose DynamoDB goes through a fault proxy, lost by an outage longer than its lease. */
  const lostByOutage = async (key: string, o: Partial<DynamoLeaseOptions> = {}): Promise<{ lease: Lease; proxy: FaultProxy; lost: LeaseLostError }> => {
    const proxy = await startFaultProxy({ target: server.endpoint });
    const lease = open(key, { endpoint: proxy.endpoint, renewEveryMs: 150, requestTimeoutMs: 100, ...o });
    await lease.acquire();
    lease.startRenewing();
    const lost = new Promise<LeaseLostError>((resolve) => lease.onLost(resolve));
    proxy.setDown(true);
    const e = await lost;
    assert.equal(e.details.reason, 'expired');
    assert.equal(lease.state, 'lost');
    proxy.setDown(false);
    return { lease, proxy, lost: e };
  };

  /** A contender process on this host holding `key`; resolves once it holds the lease. */
  const holderProcess = async (key: string, mode: 'crash' | 'release', holdMs: number): Promise<{ child: ChildProcess; epoch: number; exited: Promise<void> }> => {
    const cfg = { ...connection(), accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey, table: TABLE, key, owner: `proc-${randomUUID().slice(0, 6)}`, leaseMs: 5000, renewEveryMs: 1000, requestTimeoutMs: 1000, holdMs, waitMs: 0, mode };
    const child = spawn(process.execPath, [contenderScript, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const lines = createInterface({ input: child.stdout! });
    const epoch = await new Promise<number>((resolve, reject) => {
      lines.on('line', (line) => {
        const ev = JSON.parse(line) as { ev: string; epoch?: number; message?: string };
        if (ev.ev === 'got') resolve(ev.epoch!);
        if (ev.ev === 'error') reject(new Error(ev.message));
      });
      child.once('exit', () => reject(new Error('the contender exited before it held the lease')));
    });
    return { child, epoch, exited };
  };

  const setAttrs = async (key: string, attrs: Record<string, { S: string } | { N: string }>): Promise<void> => {
    const db = new DynamoDBClient(config);
    try {
      const names = Object.keys(attrs);
      await db.send(
        new UpdateItemCommand({
          TableName: TABLE,
          Key: { pk: { S: key } },
          UpdateExpression: `SET ${names.map((_, i) => `#a${i} = :v${i}`).join(', ')}`,
          ExpressionAttributeNames: Object.fromEntries(names.map((n, i) => [`#a${i}`, n])),
          ExpressionAttributeValues: Object.fromEntries(names.map((n, i) => [`:v${i}`, attrs[n]!])),
        }),
      );
    } finally {
      db.destroy();
    }
  };

  before(async () => {
    server = await startDynalite();
    config = server.dynamoClientConfig();
    await createLeaseTable({ ...connection(), table: TABLE });
  });

  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const l of leases) l.close();
    await server?.stop();
  });

  test('after an outage longer than the lease, reacquire() takes the next epoch at once and keeps the durable mark', async () => {
    const key = newKey('heal');
    // The new grant must outlive the reads below on a loaded machine (in a CI run with two files at
    // a time, 150 ms beats with 100 ms timeouts let a 600 ms grant expire before one renewal landed).
    const { lease, proxy } = await lostByOutage(key, { leaseMs: 2000, requestTimeoutMs: 500, renewEveryMs: 300 });
    try {
      lease.recordDurable({ generation: '0000000000000001', txid: 7 });
      await assert.rejects(lease.renew(), (e) => e instanceof LeaseLostError && e.details.reason === 'expired');
      const before = await readItem(config, TABLE, key);
      assert.equal(before?.epoch, 1);
      const g = await lease.reacquire();
      // Checked before anything else awaits: the new grant is not renewed until startRenewing(), and
      // under load (CI runs three suites at once) its 600 ms could run out during the reads below,
      // after which a second reacquire() is rightly accepted.
      const state = lease.state;
      const again = lease.reacquire();
      lease.startRenewing();
      await assert.rejects(again, (e) => isLeaseError(e, 'ERR_LEASE_STATE'), 'only a lost lease is re-acquired');
      assert.equal(state, 'held');
      assert.equal(g.how, 'reacquire');
      assert.equal(g.epoch, 2, 'a new epoch: whatever the lost grant still had in flight is fenced');
      const item = await readItem(config, TABLE, key);
      assert.equal(item?.epoch, 2);
      assert.equal(item?.owner, lease.owner);
      await lease.renew();
      assert.equal(lease.current()?.epoch, 2);
      await lease.release();
      assert.equal((await readItem(config, TABLE, key))?.released, true);
    } finally {
      await proxy.stop();
    }
  });

  test('startRenewing() late (a slow open after the grant) renews at once, not renewEveryMs after the call', async () => {
    const key = newKey('late-start');
    // A first renewal due 2 s after the grant, a deadline 4 s after it: room for a loaded machine.
    const lease = open(key, { leaseMs: 4000, renewEveryMs: 2000, requestTimeoutMs: 1000 });
    const g = await lease.acquire();
    // Past the first renewal's due time, 1.5 s before the deadline.
    await sleep(g.deadline - 1500 - performance.now());
    lease.startRenewing();
    // The deadline of the grant passes; a first beat scheduled renewEveryMs after the call would
    // come 500 ms after it: only a beat at once is in time.
    await sleep(g.deadline - performance.now() + 150);
    assert.equal(lease.state, 'held', 'the first beat ran in time');
    assert.ok(lease.current()!.deadline > g.deadline);
    await lease.release();
  });

  test('reacquire() after another writer took over, or an operator force-released: lost for good', async () => {
    const key = newKey('taken');
    const { lease, proxy } = await lostByOutage(key);
    try {
      const other = open(key, { owner: 'other', leaseMs: 600, marginMs: 50 });
      assert.equal((await other.acquire({ waitMs: 3000 })).epoch, 2);
      const err = await lease.reacquire().then(
        () => assert.fail('re-acquired a lease another writer holds'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof LeaseLostError, String(err));
      assert.equal(err.details.reason, 'taken-over');
      assert.equal(err.details.current?.owner, 'other');
      assert.equal(lease.state, 'lost');
      assert.equal((await readItem(config, TABLE, key))?.owner, 'other');
    } finally {
      await proxy.stop();
    }

    const key2 = newKey('forced');
    const second = await lostByOutage(key2);
    try {
      await forceRelease({ ...connection(), table: TABLE, key: key2 });
      await assert.rejects(second.lease.reacquire(), (e) => e instanceof LeaseLostError && e.details.reason === 'force-released');
      const item = await readItem(config, TABLE, key2);
      assert.equal(item?.released, true, 'an operator released it: it stays released');
      assert.equal(item?.epoch, 1);
    } finally {
      await second.proxy.stop();
    }
  });

  test('reacquire() races a takeover between its read and its write: the condition refuses it', async () => {
    const key = newKey('race');
    const { lease, proxy } = await lostByOutage(key, { leaseMs: 1500, requestTimeoutMs: 1000, renewEveryMs: 300 });
    try {
      // The read passes; the write is held 400 ms, while an operator releases and another writer takes epoch 2.
      proxy.setDelayMs(400);
      proxy.script('pass', 'delay');
      const attempt = lease.reacquire().then(
        (g) => g,
        (e: unknown) => e,
      );
      await sleep(100);
      await forceRelease({ ...connection(), table: TABLE, key });
      const other = open(key, { owner: 'racer' });
      assert.equal((await other.acquire({ waitMs: 0 })).epoch, 2);
      const out = await attempt;
      assert.ok(out instanceof LeaseLostError, `the re-acquire must fail, got ${JSON.stringify(out)}`);
      assert.equal(out.details.reason, 'taken-over');
      const item = await readItem(config, TABLE, key);
      assert.equal(item?.owner, 'racer');
      assert.equal(item?.epoch, 2);
    } finally {
      await proxy.stop();
    }
  });

  test('a holder on this host whose process died is taken over at once; without processAlive it is waited out', async () => {
    const key = newKey('dead');
    const dead = await holderProcess(key, 'crash', 50);
    await dead.exited;
    const patient = open(key, { owner: 'patient', leaseMs: 5000 });
    await assert.rejects(patient.acquire({ waitMs: 0 }), (e) => e instanceof LeaseHeldError, 'without processAlive: no fast path');
    const b = open(key, { owner: 'restarted', leaseMs: 5000, processAlive });
    const g = await b.acquire({ waitMs: 0 });
    assert.equal(g.how, 'dead-local-holder');
    assert.equal(g.epoch, dead.epoch + 1);
    const item = await readItem(config, TABLE, key);
    assert.equal(item?.owner, 'restarted');
    await b.release();
  });

  test('a live or paused holder on this host is never taken over at once', async () => {
    const key = newKey('alive');
    const live = await holderProcess(key, 'release', 60_000);
    const b = open(key, { owner: 'eager', leaseMs: 5000, processAlive });
    await assert.rejects(b.acquire({ waitMs: 200 }), (e) => e instanceof LeaseHeldError && e.details.pid === live.child.pid);
    live.child.kill('SIGSTOP');
    try {
      await assert.rejects(b.acquire({ waitMs: 200 }), (e) => e instanceof LeaseHeldError, 'a paused process is alive: its lease runs out by time only');
    } finally {
      live.child.kill('SIGKILL');
    }
    await live.exited;
  });

  test('pid reuse and pid spaces: a reused pid is gone, a pid of another pid space is never judged', async () => {
    const key = newKey('reuse');
    const dead = await holderProcess(key, 'crash', 50);
    await dead.exited;
    // Another live process now has the recorded pid (we point the item at one), started at another time.
    const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    children.push(sleeper);
    try {
      await setAttrs(key, { pid: { N: String(sleeper.pid) } });
      const b = open(key, { owner: 'after-reuse', leaseMs: 5000, processAlive });
      const g = await b.acquire({ waitMs: 0 });
      assert.equal(g.how, 'dead-local-holder');
      await b.release();
    } finally {
      sleeper.kill('SIGKILL');
    }

    const key2 = newKey('space');
    const other = await holderProcess(key2, 'crash', 50);
    await other.exited;
    await setAttrs(key2, { space: { S: 'another-boot/pid:[1]' } });
    const c = open(key2, { owner: 'careful', leaseMs: 5000, processAlive });
    await assert.rejects(c.acquire({ waitMs: 0 }), (e) => e instanceof LeaseHeldError, 'a pid of another pid space says nothing here');
  });
});
