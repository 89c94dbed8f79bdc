// The DynamoDB lease against real servers: dynalite always, DynamoDB Local when Java and the jar
// are installed. Every test uses its own key in one table per server, short leases (300-1500 ms),
// and checks the item with a client of its own.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import {
  LeaseHeldError,
  LeaseLostError,
  checkLeaseTable,
  createDynamoLease,
  createLeaseTable,
  forceRelease,
  isLeaseError,
  type DynamoLeaseOptions,
  type Lease,
} from '@walship/lease';
import { dynamoDbLocalAvailable, startDynalite, startDynamoDbLocal, startFaultProxy, type DynamoServer } from './servers/index.js';
import { createTableWithKey, readItem, sleep, stubWallClock, waitUntil } from './fixtures/lease-util.js';

const TABLE = 'walship-leases';
const contenderScript = fileURLToPath(new URL('./fixtures/lease-contender.js', import.meta.url));

interface Lane {
  name: 'dynalite' | 'dynamodb-local';
  start: () => Promise<DynamoServer>;
  skip: string | false;
}

const localAv = dynamoDbLocalAvailable();
const lanes: Lane[] = [
  { name: 'dynalite', start: startDynalite, skip: false },
  { name: 'dynamodb-local', start: startDynamoDbLocal, skip: localAv.ok ? false : `DynamoDB Local lane skipped: ${localAv.reason}` },
];

function connection(server: DynamoServer): Pick<DynamoLeaseOptions, 'endpoint' | 'region' | 'credentials'> {
  return {
    endpoint: server.endpoint,
    region: server.region,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  };
}

for (const lane of lanes) {
  describe(`lease on ${lane.name}`, { skip: lane.skip }, () => {
    let server: DynamoServer;
    let config: DynamoDBClientConfig;
    const leases: Lease[] = [];

    const newKey = (label: string) => `s3://bucket/${label}-${randomUUID().slice(0, 8)}`;
    const open = (key: string, o: Partial<DynamoLeaseOptions> = {}): Lease => {
      const lease = createDynamoLease({
        ...connection(server),
        table: TABLE,
        key,
        leaseMs: 400,
        requestTimeoutMs: 150,
        logger: () => undefined,
        ...o,
      });
      leases.push(lease);
      return lease;
    };

    before(async () => {
      server = await lane.start();
      config = server.dynamoClientConfig();
      const made = await createLeaseTable({ ...connection(server), table: TABLE });
      assert.equal(made.created, true);
      assert.equal(made.status, 'ACTIVE');
      // Warm the server (JIT, first connections) so the first timing test does not pay for it.
      const warm = open(`s3://warm-up/${lane.name}`, { leaseMs: 5000, requestTimeoutMs: 2000 });
      for (let i = 0; i < 3; i++) {
        await warm.acquire();
        await warm.renew();
        await warm.release();
      }
    });

    after(async () => {
      for (const l of leases) l.close();
      await server?.stop();
    });

    test('acquire, renew, release, re-acquire: epoch 1, then 2 for the next owner; never reset; item kept', async () => {
      const key = newKey('basic');
      // Long enough that a slow first request on a cold server cannot expire it mid-test.
      const a = open(key, { owner: 'node-a', leaseMs: 3000 });
      const b = open(key, { owner: 'node-b', leaseMs: 3000 });
      assert.equal(a.state, 'idle');
      assert.equal(a.current(), null);

      const g1 = await a.acquire();
      assert.equal(g1.epoch, 1);
      assert.equal(g1.owner, 'node-a');
      assert.ok(Math.abs(g1.deadline - g1.acquiredAt - 3000) < 1e-6);
      assert.equal(a.state, 'held');
      assert.deepEqual(a.current(), g1);
      const item1 = await readItem(config, TABLE, key);
      assert.equal(item1?.epoch, 1);
      assert.equal(item1?.released, false);
      assert.equal(item1?.leaseMs, 3000);
      await assert.rejects(a.acquire(), (e) => isLeaseError(e, 'ERR_LEASE_STATE'));

      await sleep(20);
      const r = await a.renew();
      assert.equal(r.epoch, 1);
      assert.ok(r.deadline > g1.deadline, 'renewal moves the deadline');
      assert.equal(r.acquiredAt, g1.acquiredAt);
      const item2 = await readItem(config, TABLE, key);
      assert.notEqual(item2?.rvn, item1?.rvn, 'every write has a new rvn');
      assert.equal(item2?.epoch, 1);

      await a.release();
      assert.equal(a.state, 'released');
      assert.equal(a.current(), null);
      await assert.rejects(a.renew(), (e) => isLeaseError(e, 'ERR_LEASE_STATE'));
      const item3 = await readItem(config, TABLE, key);
      assert.equal(item3?.released, true, 'release marks the item, never deletes it');
      assert.equal(item3?.epoch, 1);

      const t0 = performance.now();
      const g2 = await b.acquire({ waitMs: 0 });
      assert.ok(performance.now() - t0 < 3000, 'a released lease is taken at once, not after leaseMs (3000 ms)');
      assert.equal(g2.epoch, 2);
      assert.equal((await readItem(config, TABLE, key))?.owner, 'node-b');
      await b.release();

      const g3 = await a.acquire({ waitMs: 0 });
      assert.equal(g3.epoch, 3, 'the epoch only grows, also for an owner that held it before');
      await a.release();
      const last = await readItem(config, TABLE, key);
      assert.equal(last?.epoch, 3);
      assert.equal(last?.released, true);
    });

    test('8 contender processes at once: one holder per epoch, epochs 1..8 in order, no overlap', async (t) => {
      const key = newKey('contenders');
      const n = 8;
      // Timeouts sized for a loaded CI machine (three runtimes' suites at once on two cores):
      // with 200 ms requests and 4 attempts, DynamoDB Local's GetItem once failed all 4 in 1.3 s.
      const leaseMs = 1500;
      const procs = Array.from({ length: n }, (_, i) => {
        const cfg = {
          endpoint: server.endpoint,
          region: server.region,
          accessKeyId: server.accessKeyId,
          secretAccessKey: server.secretAccessKey,
          table: TABLE,
          key,
          owner: `contender-${i}`,
          leaseMs,
          renewEveryMs: 300,
          requestTimeoutMs: 600,
          maxAttempts: 8,
          holdMs: 250,
          waitMs: 70_000,
          // Half crash while holding (forced takeover after expiry), half release (immediate handover).
          mode: i % 2 === 0 ? 'crash' : 'release',
        };
        const child = spawn(process.execPath, [contenderScript, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
        const lines: Record<string, unknown>[] = [];
        let buf = '';
        let stderr = '';
        child.stdout.setEncoding('utf8').on('data', (c: string) => {
          buf += c;
          let at: number;
          while ((at = buf.indexOf('\n')) >= 0) {
            lines.push(JSON.parse(buf.slice(0, at)) as Record<string, unknown>);
            buf = buf.slice(at + 1);
          }
        });
        child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
        const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
        return { i, mode: cfg.mode, child, lines, exited, stderr: () => stderr };
      });
      const guard = setTimeout(() => procs.forEach((p) => p.child.kill('SIGKILL')), 80_000);
      const exits = await Promise.all(procs.map((p) => p.exited));
      clearTimeout(guard);

      interface Held {
        i: number;
        mode: string;
        epoch: number;
        got: number;
        /** Wall time after which this process no longer believed it held the lease. */
        end: number;
      }
      const held: Held[] = [];
      let losses = 0;
      for (const p of procs) {
        const exit = exits[p.i]!;
        const errors = p.lines.filter((l) => l['ev'] === 'error');
        assert.deepEqual(errors, [], `contender ${p.i} reported no error (stderr: ${p.stderr()})`);
        if (p.mode === 'crash') assert.equal(exit.signal, 'SIGKILL', `contender ${p.i} crashed on purpose`);
        else assert.equal(exit.code, 0, `contender ${p.i} exited cleanly (stderr: ${p.stderr()})`);
        const got = p.lines.filter((l) => l['ev'] === 'got');
        assert.equal(got.length, 1, `contender ${p.i} got the lease exactly once`);
        const bye = p.lines.find((l) => l['ev'] === 'bye');
        assert.ok(bye, `contender ${p.i} finished holding`);
        const lost = p.lines.find((l) => l['ev'] === 'lost');
        if (lost) losses++;
        // A crashed holder would have believed in its lease until its deadline had it only been
        // paused; a releasing one stops believing when it is done (or at its deadline if lost first).
        const deadline = (lost?.['deadline'] ?? bye['deadline']) as number;
        const end = p.mode === 'crash' ? deadline : lost ? Math.min(deadline, bye['t'] as number) : (bye['t'] as number);
        held.push({ i: p.i, mode: p.mode, epoch: got[0]!['epoch'] as number, got: got[0]!['t'] as number, end });
      }
      if (losses > 0) t.diagnostic(`${losses} holder(s) lost a lease by missed renewals (machine overloaded); safety is checked below`);
      held.sort((x, y) => x.epoch - y.epoch);
      assert.deepEqual(
        held.map((h) => h.epoch),
        Array.from({ length: n }, (_, k) => k + 1),
        'epochs 1..n, each held by exactly one process',
      );
      for (let k = 1; k < held.length; k++) {
        const prev = held[k - 1]!;
        const cur = held[k]!;
        assert.ok(cur.got >= prev.got, `epoch ${cur.epoch} was granted after epoch ${prev.epoch}`);
        // The safety property: no two processes ever believed they held the lease at once (1 ms of
        // slack for converting each process's monotonic deadline to wall time).
        assert.ok(cur.got >= prev.end - 1, `epoch ${cur.epoch} granted ${prev.end - cur.got} ms before the ${prev.mode} holder of epoch ${prev.epoch} stopped believing`);
      }
      const item = await readItem(config, TABLE, key);
      assert.equal(item?.epoch, n);
    });

    test('takeover of a silent holder waits at least leaseMs on the local clock', async (t) => {
      const key = newKey('takeover');
      const a = open(key, { owner: 'silent', leaseMs: 500 });
      const b = open(key, { owner: 'taker', leaseMs: 500, marginMs: 50 });
      const g1 = await a.acquire();
      const t0 = performance.now();
      const g2 = await b.acquire({ waitMs: 3000 });
      const waited = performance.now() - t0;
      assert.equal(g2.epoch, g1.epoch + 1);
      assert.ok(waited >= 500 + 50, `waited ${waited.toFixed(0)} ms >= leaseMs + margin`);
      // How much longer than leaseMs + margin it waited is a timer's lateness on a loaded machine, not checked.
      t.diagnostic(`waited ${waited.toFixed(0)} ms for leaseMs + margin 550 ms`);
      assert.equal(a.state, 'lost', 'the silent holder declared its own loss at its deadline');
      await assert.rejects(a.renew(), (e) => e instanceof LeaseLostError && e.details.reason === 'expired');
      const item = await readItem(config, TABLE, key);
      assert.equal(item?.owner, 'taker');
      assert.equal(item?.epoch, 2);
    });

    test('a live holder that keeps renewing is never taken over', async () => {
      const key = newKey('live');
      // Renewing every 200 ms with a lease ten times that: a late heartbeat on a loaded machine is not a lapse.
      const a = open(key, { owner: 'alive', leaseMs: 2000, renewEveryMs: 200, requestTimeoutMs: 1000 });
      const b = open(key, { owner: 'hopeful', leaseMs: 2000, requestTimeoutMs: 1000 });
      await a.acquire();
      a.startRenewing();
      const t0 = performance.now();
      const err = await b.acquire({ waitMs: 1500 }).then(
        () => assert.fail('acquired a lease that a live holder renews'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof LeaseHeldError, String(err));
      assert.equal(err.code, 'ERR_LEASE_HELD');
      assert.equal(err.details.owner, 'alive');
      assert.equal(err.details.epoch, 1);
      assert.equal(err.details.leaseMs, 2000);
      assert.equal(err.details.pid, process.pid);
      assert.ok(err.details.observedUnchangedMs < 2000, `the holder was seen writing (${err.details.observedUnchangedMs} ms unchanged)`);
      assert.ok(performance.now() - t0 >= 1500);
      assert.equal(a.state, 'held');
      assert.equal(a.current()?.epoch, 1);
      a.stopRenewing();
      await a.release();
    });

    test('a renewal that fails its condition gives LeaseLostError and fires onLost (manual and heartbeat)', async () => {
      // Manual renew after an operator's force release and a new holder.
      const key = newKey('lost');
      // Not renewed: a lease long enough to outlast the force release and the takeover on a loaded machine.
      const a = open(key, { owner: 'old', leaseMs: 5000, requestTimeoutMs: 1000 });
      const b = open(key, { owner: 'new', leaseMs: 5000, requestTimeoutMs: 1000 });
      const seen: LeaseLostError[] = [];
      a.onLost((e) => seen.push(e));
      await a.acquire();
      const signal = a.abortSignalForUpload();
      const forced = await forceRelease({ ...connection(server), table: TABLE, key });
      assert.deepEqual(forced && { epoch: forced.epoch, owner: forced.owner, wasReleased: forced.wasReleased }, { epoch: 1, owner: 'old', wasReleased: false });
      assert.equal((await readItem(config, TABLE, key))?.epoch, 1, 'force release keeps the epoch');
      assert.equal((await b.acquire({ waitMs: 0 })).epoch, 2);
      const err = await a.renew().then(
        () => assert.fail('renewed a lease taken over'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof LeaseLostError);
      assert.equal(err.code, 'ERR_LEASE_LOST');
      assert.equal(err.details.reason, 'taken-over');
      assert.equal(err.details.epoch, 1);
      assert.equal(err.details.current?.owner, 'new');
      assert.equal(err.details.current?.epoch, 2);
      assert.equal(a.state, 'lost');
      assert.equal(a.current(), null);
      assert.deepEqual(seen, [err], 'onLost fired once with the same error');
      assert.ok(signal.aborted && signal.reason === err, 'in-flight uploads are aborted with it');
      assert.equal(a.canStartUpload(0, 0), false);
      await assert.rejects(a.renew(), (e) => e === err);

      // Heartbeat: a force release alone (nobody took it yet) ends the holder within a beat.
      const key2 = newKey('lost-beat');
      // A long grant and a fast beat: only the heartbeat can end it before the deadline.
      const c = open(key2, { owner: 'beating', leaseMs: 3000, renewEveryMs: 100 });
      await c.acquire();
      c.startRenewing();
      const lost = new Promise<LeaseLostError>((resolve) => c.onLost(resolve));
      await forceRelease({ ...connection(server), table: TABLE, key: key2 });
      const t0 = performance.now();
      const e2 = await Promise.race([lost, sleep(2000).then(() => undefined)]);
      assert.ok(e2, 'the heartbeat reported the loss');
      assert.equal(e2.details.reason, 'force-released');
      assert.ok(performance.now() - t0 < 3000, 'before the deadline');
      assert.equal(c.state, 'lost');
      assert.equal(await forceRelease({ ...connection(server), table: TABLE, key: newKey('never') }), null, 'no item: nothing to release, nothing created');
    });

    test('DynamoDB unreachable: the upload abort signal fires before the deadline, loss at the deadline', async (t) => {
      const proxy = await startFaultProxy({ target: server.endpoint });
      try {
        const key = newKey('outage');
        const leaseMs = 600;
        const marginMs = 100;
        const a = createDynamoLease({
          ...connection(server),
          endpoint: proxy.endpoint,
          table: TABLE,
          key,
          leaseMs,
          marginMs,
          renewEveryMs: 150,
          requestTimeoutMs: 100,
          logger: () => undefined,
        });
        leases.push(a);
        await a.acquire();
        a.startRenewing();
        await sleep(200);
        assert.equal(a.state, 'held');
        const signal = a.abortSignalForUpload();
        let abortedAt = 0;
        signal.addEventListener('abort', () => (abortedAt = performance.now()));
        let lostAt = 0;
        const lost = new Promise<LeaseLostError>((resolve) =>
          a.onLost((e) => {
            lostAt = performance.now();
            resolve(e);
          }),
        );
        proxy.setDown(true);
        const downAt = performance.now();
        const deadline = a.current()!.deadline;
        assert.equal(a.canStartUpload(100, 50), true);
        const e = await Promise.race([lost, sleep(3000).then(() => undefined)]);
        assert.ok(e, 'the loss was declared without DynamoDB');
        assert.equal(e.details.reason, 'expired');
        assert.ok(abortedAt > 0, 'the abort signal fired');
        // Timers fire late on a loaded machine, never early: the lower bounds and the order are
        // exact; how soon after its time each fired is not checked (the race above bounds it).
        assert.ok(abortedAt < lostAt, `abort (${(abortedAt - downAt).toFixed(0)} ms) before loss (${(lostAt - downAt).toFixed(0)} ms)`);
        assert.ok(abortedAt >= deadline - marginMs - 2, `the abort fired at deadline - marginMs or later (${(deadline - abortedAt).toFixed(0)} ms before the deadline)`);
        assert.ok(lostAt >= deadline, 'not before the deadline');
        t.diagnostic(`abort ${(abortedAt - downAt).toFixed(0)} ms and loss ${(lostAt - downAt).toFixed(0)} ms after the outage began (lease ${leaseMs} ms, margin ${marginMs} ms)`);
        assert.ok(signal.reason instanceof LeaseLostError && signal.reason.details.reason === 'expiring');
        assert.equal(a.canStartUpload(0, 0), false);
        assert.ok(a.abortSignalForUpload().aborted, 'a lost lease hands out aborted signals');

        proxy.setDown(false);
        const b = open(key, { owner: 'after-outage', leaseMs: 300 });
        assert.equal((await b.acquire({ waitMs: 3000 })).epoch, 2);
        await b.release();
      } finally {
        await proxy.stop();
      }
    });

    test('transient faults are retried; a write applied but unanswered is recognised as ours by its rvn', async () => {
      const proxy = await startFaultProxy({ target: server.endpoint });
      try {
        const key = newKey('faults');
        const a = createDynamoLease({
          ...connection(server),
          endpoint: proxy.endpoint,
          table: TABLE,
          key,
          leaseMs: 2000,
          requestTimeoutMs: 500,
          logger: () => undefined,
        });
        leases.push(a);
        // GetItem passes; the PutItem reaches the server but its answer is lost; the retry then
        // fails its condition (the item exists), and the verifying read finds our own rvn.
        proxy.script('pass', 'reset-after');
        const g = await a.acquire();
        assert.equal(g.epoch, 1);
        assert.equal(proxy.counts['reset-after'], 1);
        const item = await readItem(config, TABLE, key);
        assert.equal(item?.owner, a.owner);

        proxy.script('error-503', 'reset-before', 'error-500');
        const r = await a.renew();
        assert.equal(r.epoch, 1);
        assert.deepEqual([proxy.counts['error-503'], proxy.counts['reset-before'], proxy.counts['error-500']], [1, 1, 1]);
        assert.notEqual((await readItem(config, TABLE, key))?.rvn, item?.rvn);

        // The same for a takeover after a release: the answer to the winning UpdateItem is lost.
        await a.release();
        const b = createDynamoLease({ ...connection(server), endpoint: proxy.endpoint, table: TABLE, key, leaseMs: 2000, requestTimeoutMs: 500, logger: () => undefined });
        leases.push(b);
        proxy.script('pass', 'reset-after');
        assert.equal((await b.acquire({ waitMs: 0 })).epoch, 2);
        assert.equal(b.state, 'held');
        await b.release();
      } finally {
        await proxy.stop();
      }
    });

    test('renewals move the upload guards; canStartUpload stops at deadline - (request timeout + margin)', async () => {
      let now = 1_000_000;
      const key = newKey('guards');
      const a = open(key, { leaseMs: 800, marginMs: 100, clock: () => now });
      const g = await a.acquire();
      assert.equal(g.deadline, 1_000_800);
      const signal = a.abortSignalForUpload();
      now = 1_000_800 - 300 - 100 - 1;
      assert.equal(a.canStartUpload(300), true);
      now += 1;
      assert.equal(a.canStartUpload(300), false, 'at deadline - (300 + margin) no upload may start');
      assert.equal(a.canStartUpload(300, 50), true, 'a smaller margin given by the caller');
      now = 1_000_650;
      const r = await a.renew();
      assert.equal(r.deadline, 1_001_450, 'the deadline counts from the renewal request start');
      assert.equal(a.canStartUpload(300), true);
      now = 1_001_349;
      await sleep(30);
      assert.equal(signal.aborted, false, 'the signal was re-armed for the new deadline');
      now = 1_001_350;
      await waitUntil('abort at deadline - margin', () => (signal.aborted ? true : undefined), 1000);
      assert.equal(a.state, 'held', 'the abort is a warning; the lease is still held until the deadline');
      now = 1_001_450;
      await waitUntil('loss at the deadline', () => (a.state === 'lost' ? true : undefined), 2000);
    });

    test('clock jumps: the wall clock changes nothing; only the injected monotonic clock decides', async () => {
      const wall = stubWallClock();
      try {
        // A silent holder and a contender while the wall clock jumps 10 minutes forward, then back.
        const key = newKey('wall');
        const a = open(key, { owner: 'h', leaseMs: 400 });
        const b = open(key, { owner: 'c', leaseMs: 400, marginMs: 40 });
        const seen: number[] = [];
        a.onLost(() => seen.push(performance.now()));
        const g = await a.acquire();
        wall.set(10 * 60_000);
        const t0 = performance.now();
        const pending = b.acquire({ waitMs: 3000 });
        await sleep(150);
        wall.set(-10 * 60_000);
        const g2 = await pending;
        const waited = performance.now() - t0;
        assert.equal(g2.epoch, 2);
        assert.ok(waited >= 440, `the takeover still waited leaseMs + margin (${waited.toFixed(0)} ms)`);
        assert.equal(seen.length, 1);
        // Never before the deadline; a timer that followed the wall clock would be 10 minutes off either way
        // (the upper bound only has to tell late from 10 minutes late).
        assert.ok(seen[0]! >= g.deadline && seen[0]! < g.deadline + 5_000, `the holder expired at its monotonic deadline (${(seen[0]! - g.deadline).toFixed(0)} ms after it)`);
        const item = await readItem(config, TABLE, key);
        const realNow = performance.timeOrigin + performance.now();
        assert.ok(realNow - Date.parse(item!.updatedAt) > 9 * 60_000, 'the informational updatedAt did follow the stubbed wall clock');

        // A renewing holder keeps its lease across jumps both ways.
        const key2 = newKey('wall-live');
        // A lease long enough that a late heartbeat on a loaded machine does not lose it.
        const h = open(key2, { owner: 'h2', leaseMs: 3000, renewEveryMs: 200, requestTimeoutMs: 1000 });
        await h.acquire();
        h.startRenewing();
        for (const offset of [15 * 60_000, -15 * 60_000, 60 * 60_000, 0]) {
          wall.set(offset);
          await sleep(250);
          assert.equal(h.state, 'held', `held with the wall clock at ${offset / 60_000} min`);
        }
        await assert.rejects(open(key2, { owner: 'c2', leaseMs: 400 }).acquire({ waitMs: 800 }), (e) => e instanceof LeaseHeldError);
        h.stopRenewing();
        await h.release();
      } finally {
        wall.restore();
      }

      // The injected clock is the only time source: a contender whose clock is pushed ahead by
      // 10 leases completes its wait at once in real time (which is why it must be monotonic).
      const key3 = newKey('injected');
      let boost = 0;
      const silent = open(key3, { owner: 's', leaseMs: 800 });
      // The contender reads through a proxy so the test sees its requests: its clock is pushed only
      // after its first read of the holder's item has come back (its second request is sent after
      // that). A fixed pause was not enough under load: when the first read came back after the
      // push, the wait started then and was already past its deadline (ERR_LEASE_HELD).
      const proxy = await startFaultProxy({ target: server.endpoint });
      try {
        const eager = open(key3, { owner: 'e', leaseMs: 800, endpoint: proxy.endpoint, requestTimeoutMs: 700, clock: () => performance.now() + boost });
        await silent.acquire();
        const pending = eager.acquire({ waitMs: 5000 });
        await waitUntil('the contender to read the holder\u2019s item and read again', () => (proxy.stats.received >= 2 ? true : undefined), 10_000);
        const pushed = performance.now();
        boost = 10 * 800;
        const g3 = await pending;
        assert.equal(g3.epoch, 2);
        assert.ok(performance.now() - pushed < 800, 'took over before 800 ms of real time after its clock moved on');
        await assert.rejects(silent.renew(), (e) => e instanceof LeaseLostError && e.details.reason === 'taken-over');
      } finally {
        await proxy.stop();
      }
    });

    test('table checks: missing table, wrong key schema; never created implicitly', async () => {
      const conn = connection(server);
      await assert.rejects(checkLeaseTable({ ...conn, table: 'no-such-table' }), (e) => {
        assert.ok(isLeaseError(e, 'ERR_LEASE_TABLE_MISSING'), String(e));
        assert.match(String(e.details['command']), /aws dynamodb create-table --table-name no-such-table .*AttributeName=pk,KeyType=HASH/);
        assert.match(e.message, /never creates it implicitly/);
        return true;
      });
      const missing = open(newKey('missing'), { table: 'no-such-table' });
      await assert.rejects(missing.acquire(), (e) => isLeaseError(e, 'ERR_LEASE_TABLE_MISSING'));
      await assert.rejects(checkLeaseTable({ ...conn, table: 'no-such-table' }), (e) => isLeaseError(e, 'ERR_LEASE_TABLE_MISSING'));

      await createTableWithKey(config, 'leases-wrong-key', 'id', 'S');
      await createTableWithKey(config, 'leases-wrong-type', 'pk', 'N');
      for (const [table, found] of [
        ['leases-wrong-key', [{ name: 'id', keyType: 'HASH', type: 'S' }]],
        ['leases-wrong-type', [{ name: 'pk', keyType: 'HASH', type: 'N' }]],
      ] as const) {
        await assert.rejects(checkLeaseTable({ ...conn, table }), (e) => {
          assert.ok(isLeaseError(e, 'ERR_LEASE_TABLE_SCHEMA'), String(e));
          assert.deepEqual(e.details['expected'], [{ name: 'pk', keyType: 'HASH', type: 'S' }]);
          assert.deepEqual(e.details['found'], found);
          return true;
        });
        await assert.rejects(open(newKey('schema'), { table }).acquire(), (e) => isLeaseError(e, 'ERR_LEASE_TABLE_SCHEMA'), `acquire on ${table}`);
        await assert.rejects(createLeaseTable({ ...conn, table }), (e) => isLeaseError(e, 'ERR_LEASE_TABLE_SCHEMA'));
      }
      const ok = await checkLeaseTable({ ...conn, table: TABLE });
      assert.deepEqual(ok.keySchema, [{ name: 'pk', keyType: 'HASH', type: 'S' }]);
      assert.equal((await createLeaseTable({ ...conn, table: TABLE })).created, false, 'an existing good table is kept');
    });
  });
}
