// Scenarios of a writer that heals (issue 12 part 1): a DynamoDB blip longer than the lease with
// nobody contending, a restart after kill -9 that takes its dead predecessor's lease at once, and
// flush() deadlines during an S3 outage. Each is short enough for the fast set.
import { join } from 'node:path';
import { History, Writer, checkReplica, finish, guard, leaseConfig, sleep, uniquePrefix, until, writerConfig, type ScenarioContext } from './harness.js';
import type { Scenario } from './cases.js';

/** Runs `fn`; a thrown wait becomes a violation of `label` instead of ending the scenario. */
async function expect(ctx: ScenarioContext, label: string, fn: () => Promise<void>): Promise<boolean> {
  try {
    await fn();
    return true;
  } catch (e) {
    ctx.counters.violations.push(`${label}: ${(e as Error).message}`);
    return false;
  }
}

export const dynamoBlip: Scenario = {
  name: 'dynamo-blip-heal',
  summary: 'DynamoDB silent for 1.5-2x the lease while the application writes, nobody contending: writes fail with the retryable ERR_LEASE_NOT_HELD, status says leaseless; once DynamoDB answers the same open database re-acquires under a new epoch and everything committed ships',
  fastTrials: 1,
  soakTrials: 2,
  expects: { faults: true },
  async run(ctx) {
    const dproxy = ctx.servers.dynamoProxy;
    for (let trial = 0; trial < ctx.trials; trial++) {
      const label = `dynamo-blip-heal seed ${ctx.seed} trial ${trial}`;
      const prefix = uniquePrefix('blip', ctx.seed);
      const history = new History();
      ctx.counters.trials++;
      const a = new Writer(writerConfig(ctx, { path: join(ctx.dir, `blip-${trial}.db`), prefix, seed: ctx.seed + trial, mode: 'steady', lease: leaseConfig(ctx, 1000), statusEveryMs: 50, flushRate: 0.5 }), history);
      try {
        await a.opened;
        await until(() => a.durable > 3 && a.states.length > 0, 20_000, 'a first durable commit');
        // A cold open can outlast a 1 s lease and heal once already: the epoch just before the blip counts.
        const epochA = a.states.at(-1)!.epoch;
        const seen = a.states.length;
        dproxy.setDown(true);
        ctx.counters.faults++;
        await sleep(1500 + ctx.random(500));
        const healthy = await expect(ctx, label, async () => {
          await until(() => a.states.slice(seen).some((s) => s.state === 'leaseless'), 3000, 'status().state leaseless while the lease is not held');
          await until(() => (a.rejectedBy.get('ERR_LEASE_NOT_HELD') ?? 0) > 0, 3000, 'a write refused with ERR_LEASE_NOT_HELD');
        });
        if (!a.running) ctx.counters.violations.push(`${label}: the writer stopped during the blip (${a.failedWith ?? 'no code'})`);
        const others = [...a.rejectedBy.keys()].filter((c) => c !== 'ERR_LEASE_NOT_HELD');
        if (others.length > 0) ctx.counters.violations.push(`${label}: writes refused with ${others.join(', ')} during the blip`);
        const committedBefore = a.committed;
        dproxy.setDown(false);
        if (healthy) {
          await expect(ctx, label, async () => {
            const back = Date.now();
            await until(() => a.states.slice(seen).some((s) => s.state === 'running' && s.epoch > epochA), 8000, `the writer to run again under an epoch above ${epochA}`);
            ctx.log(`${label}: running under a new epoch ${Date.now() - back} ms after DynamoDB returned; ${a.rejectedBy.get('ERR_LEASE_NOT_HELD') ?? 0} writes refused meanwhile`);
            // A flush after a new commit resolved: everything committed before it is durable, the
            // transactions committed before the loss included.
            await until(() => a.durable > committedBefore, 8000, `a flush past commit ${committedBefore} to resolve`);
          });
        }
      } finally {
        dproxy.setDown(false);
        await a.kill('SIGKILL');
      }
      await guard(ctx, label, () => checkReplica(ctx, { prefix, history, label, samples: 1 }));
    }
  },
};

export const restartDeadHolder: Scenario = {
  name: 'restart-dead-holder',
  summary: 'kill -9 of a writer holding a 10 s lease, then a restart on the same host and file: the lease is taken at once from the dead holder (dead-local-holder, a new epoch) and the replica continues',
  fastTrials: 1,
  soakTrials: 3,
  expects: { killPoints: true },
  async run(ctx) {
    for (let trial = 0; trial < ctx.trials; trial++) {
      const label = `restart-dead-holder seed ${ctx.seed} trial ${trial}`;
      const prefix = uniquePrefix('restart-dead', ctx.seed);
      const path = join(ctx.dir, `restart-dead-${trial}.db`);
      const history = new History();
      ctx.counters.trials++;
      const a = new Writer(writerConfig(ctx, { path, prefix, seed: ctx.seed + trial, lease: leaseConfig(ctx, 10_000, true) }), history);
      let epochA = 0;
      try {
        epochA = (await a.opened).epoch;
        await until(() => a.durable > 3, 20_000, 'a first durable commit');
      } finally {
        await a.kill('SIGKILL');
      }
      ctx.counters.killPoints++;
      const b = new Writer(writerConfig(ctx, { path, prefix, seed: ctx.seed + trial + 50, lease: leaseConfig(ctx, 10_000, true), maxCommits: 20 }), history);
      const opened = await b.opened.catch((e: Error) => {
        ctx.counters.violations.push(`${label}: the restart could not open: ${e.message}`);
        return null;
      });
      if (opened && opened.how !== 'dead-local-holder') ctx.counters.violations.push(`${label}: the restart got the lease by '${opened.how}', not from its dead predecessor at once ('dead-local-holder')`);
      if (opened && opened.epoch <= epochA) ctx.counters.violations.push(`F: ${label}: the restart's epoch ${opened.epoch} is not above ${epochA}`);
      await finish(ctx, b, label, 30_000);
      if (b.finished) await guard(ctx, label, () => checkReplica(ctx, { prefix, history, label, samples: 1, durable: b.finished!.n }));
    }
  },
};

export const flushDeadline: Scenario = {
  name: 'flush-deadline',
  summary: 'S3 unreachable: flush({ timeoutMs }) rejects with ERR_FLUSH_TIMEOUT naming the durable and committed txids, status says degraded, writes go on; once S3 answers everything ships',
  fastTrials: 1,
  soakTrials: 2,
  expects: { faults: true },
  async run(ctx) {
    const proxy = ctx.servers.s3proxy;
    for (let trial = 0; trial < ctx.trials; trial++) {
      const label = `flush-deadline seed ${ctx.seed} trial ${trial}`;
      const prefix = uniquePrefix('flush-deadline', ctx.seed);
      const history = new History();
      ctx.counters.trials++;
      const a = new Writer(writerConfig(ctx, { path: join(ctx.dir, `flush-deadline-${trial}.db`), prefix, seed: ctx.seed + trial, flushTimeoutMs: 300, flushRate: 0.5, statusEveryMs: 50 }), history);
      try {
        await a.opened;
        await until(() => a.durable > 0, 20_000, 'a first durable commit');
        proxy.setDown(true);
        ctx.counters.faults++;
        const committedBefore = a.committed;
        const ok = await expect(ctx, label, () => until(() => a.flushFailures.length > 0, 5000, 'a flush to give up at its deadline'));
        // An upload counts as failed once the store's own retries gave up (under a second here).
        await expect(ctx, label, () => until(() => a.states.some((s) => s.state === 'degraded'), 5000, `status().state degraded while uploads fail (saw ${[...new Set(a.states.map((s) => s.state))].join(', ')})`));
        if (ok) {
          for (const f of a.flushFailures) {
            if (f.code !== 'ERR_FLUSH_TIMEOUT') ctx.counters.violations.push(`${label}: flush after commit ${f.n} rejected with ${f.code}, not ERR_FLUSH_TIMEOUT`);
            else if (!(f.durableTxid >= 0 && f.committedTxid > f.durableTxid)) ctx.counters.violations.push(`${label}: ERR_FLUSH_TIMEOUT names durable ${f.durableTxid} and committed ${f.committedTxid}`);
          }
        }
        if (a.committed <= committedBefore) ctx.counters.violations.push(`${label}: writes stopped while S3 was down (committed ${a.committed})`);
        proxy.setDown(false);
        const target = a.committed;
        const back = Date.now();
        await expect(ctx, label, () => until(() => a.durable > target, 15_000, `everything committed during the outage (${target}) to become durable`));
        ctx.log(`${label}: ${a.flushFailures.length} flushes gave up during the outage; commit ${target} durable ${Date.now() - back} ms after S3 returned`);
      } finally {
        proxy.setDown(false);
        await a.kill('SIGKILL');
      }
      await guard(ctx, label, () => checkReplica(ctx, { prefix, history, label, samples: 1 }));
    }
  },
};
