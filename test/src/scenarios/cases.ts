// The named scenarios. Each runs `ctx.trials` trials against the servers in ctx, records what it
// did in ctx.counters, and turns every broken invariant into a violation (see harness.ts).
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { restore } from '@walship/restore';
import { decodeHeader, decodeObject, encodeSegment, formatObjectKey, parseObjectKey, type ObjectHeader } from '@walship/format';
import { FAULT_KINDS, type FaultKind } from '../servers/index.js';
import { rebuildFromReplica } from '../util/replica.js';
import {
  History,
  Writer,
  checkFile,
  checkReplica,
  finish,
  guard,
  leaseConfig,
  runToEnd,
  settle,
  sleep,
  sourceOf,
  storageOf,
  uniquePrefix,
  until,
  writerConfig,
  type ScenarioContext,
} from './harness.js';
import type { WriterConfig } from './writer.js';
import { dynamoBlip, flushDeadline, restartDeadHolder } from './heal-cases.js';

export interface Scenario {
  name: string;
  /** One line for the report. */
  summary: string;
  /** Trials in the fast set (CI); 0 = soak only. */
  fastTrials: number;
  /** Trials per round of the soak. */
  soakTrials: number;
  /** What the fast set must see happen (so a scenario that silently did nothing fails). */
  expects?: { killPoints?: boolean; faults?: boolean };
  run(ctx: ScenarioContext): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Shared pieces

const FAST_FAULTS: readonly FaultKind[] = FAULT_KINDS;

/** A restart on the same file continues the generation the first writer shipped (if it shipped one). */
async function sameLineage(ctx: ScenarioContext, label: string, first: Writer, later: Writer): Promise<void> {
  const a = await first.opened.catch(() => null);
  const b = await later.opened.catch(() => null);
  if (a && b && first.durable > 0 && a.generation !== b.generation) ctx.counters.violations.push(`${label}: the restart started generation ${b.generation} instead of continuing ${a.generation} (its continuity could not be proven: transactions are not restorable one by one)`);
}

/** The S3 proxy at the context's fault rate, its `delay` past the writer's 500 ms request timeout. */
function s3Faults(ctx: ScenarioContext, kinds: readonly FaultKind[] = FAST_FAULTS, delayMs = 700): void {
  ctx.servers.s3proxy.setDelayMs(delayMs);
  ctx.servers.s3proxy.setFaultRate(ctx.faultRate, kinds);
}

/**
 * kill -9 loops, TRIALS_PER_FILE trials to a database file: each trial starts the writer again on
 * the same file, kills it (by its own hand at an exact file operation, or from outside at a random
 * moment), then checks the replica. Every restart must continue the same generation.
 */
interface KillLoopOptions {
  pageSize?: number;
  mode?: (trial: number) => 'bursts' | 'steady';
  inside: (trial: number) => boolean;
  outsideMs: [number, number];
}

/**
 * Restarts on one file per run of this many trials. Every check restores and replays the whole
 * history, so one file over 110 trials cost twice what runs of 30 do (kill-in-commit: 3.4 s a
 * trial against 1.9 s); 30 restarts of one lineage are still checked after each kill.
 */
const TRIALS_PER_FILE = 30;

async function killLoop(ctx: ScenarioContext, name: string, opts: KillLoopOptions): Promise<void> {
  for (let first = 0; first < ctx.trials; first += TRIALS_PER_FILE) {
    await killRun(ctx, name, opts, first, Math.min(ctx.trials, first + TRIALS_PER_FILE));
  }
}

async function killRun(ctx: ScenarioContext, name: string, opts: KillLoopOptions, firstTrial: number, endTrial: number): Promise<void> {
  const seed = ctx.seed;
  const prefix = uniquePrefix(name, seed);
  const path = join(ctx.dir, `${name}-${firstTrial}.db`);
  const history = new History();
  const generations = new Set<string>();
  s3Faults(ctx, ['reset-before', 'reset-after', 'error-500', 'error-503', 'delay'], 300);
  for (let trial = firstTrial; trial < endTrial; trial++) {
    const label = `${name} seed ${seed} trial ${trial}`;
    const inside = opts.inside(trial);
    const how = (['before', 'after', 'torn'] as const)[ctx.random(3)]!;
    const config = writerConfig(ctx, {
      path,
      prefix,
      seed: seed * 1000 + trial + 1,
      mode: opts.mode?.(trial) ?? 'bursts',
      ...(opts.pageSize ? { pageSize: opts.pageSize } : {}),
      ...(inside ? { killAt: { op: 20 + ctx.random(500), how } } : {}),
    });
    const w = new Writer(config, history);
    ctx.counters.trials++;
    const opened = await w.opened.then((o) => o, () => null);
    if (opened) generations.add(opened.generation);
    if (inside) {
      if ((await settle(w, 8000)) === 'killed') ctx.log(`${label}: op ${config.killAt!.op} not reached in 8 s; killed from outside`);
    } else {
      await sleep(opts.outsideMs[0] + ctx.random(opts.outsideMs[1] - opts.outsideMs[0]));
      await w.kill('SIGKILL');
    }
    const exit = await w.exited;
    if (exit.signal === 'SIGKILL') ctx.counters.killPoints++;
    // Under 20% faults an open can run out of retries reading the replica: a typed refusal to start,
    // documented, not a loss (the next trial opens again).
    else if (exit.code === 4 && w.failedWith?.startsWith('ERR_STORAGE_')) ctx.counters.notes.push(`${label}: open refused with ${w.failedWith} under faults`);
    else ctx.counters.violations.push(`${label}: the writer exited with code ${exit.code} instead of being killed: ${w.failedWith ?? ''} ${w.stderr.trim().slice(-400)}`);
    const m = await guard(ctx, label, () => checkReplica(ctx, { prefix, history, label, samples: 1 }));
    if (m === null) generations.clear(); // nothing was durable: the next writer starts the lineage
  }
  ctx.servers.s3proxy.setFaultRate(0);
  if (generations.size > 1) ctx.counters.violations.push(`${name} seed ${seed}: restarts started new generations (${[...generations].join(', ')}) instead of continuing one`);
  // A last clean run: everything the file holds reaches the replica.
  const last = await runToEnd(ctx, writerConfig(ctx, { path, prefix, seed: seed * 1000 + 999, maxCommits: 5, ...(opts.pageSize ? { pageSize: opts.pageSize } : {}) }), history, `${name} seed ${seed} trials ${firstTrial}-${endTrial - 1} final run`);
  if (last.finished) {
    await guard(ctx, `${name} seed ${seed} final`, async () => {
      const m = await checkReplica(ctx, { prefix, history, label: `${name} final`, samples: 2, durable: last.finished!.n });
      if (m !== last.finished!.n) throw new Error(`D: the final restore holds commit ${m}, the writer flushed ${last.finished!.n}`);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// The scenarios

const killInCommit: Scenario = {
  name: 'kill-in-commit',
  summary: 'kill -9 by the writer itself at an exact VFS file operation (before it, after it, or after half its bytes), S3 faults on',
  fastTrials: 110,
  soakTrials: 40,
  expects: { killPoints: true },
  run: (ctx) => killLoop(ctx, 'kill-in-commit', { inside: () => true, outsideMs: [0, 1] }),
};

const killMidUpload: Scenario = {
  name: 'kill-mid-upload',
  summary: 'kill -9 from outside at random moments while uploads are slowed and failing; bursts and back-to-back commits (spool)',
  fastTrials: 60,
  soakTrials: 30,
  expects: { killPoints: true, faults: true },
  run: (ctx) => killLoop(ctx, 'kill-mid-upload', { inside: () => false, mode: (t) => (t % 3 === 2 ? 'steady' : 'bursts'), outsideMs: [150, 900] }),
};

const pageSize512: Scenario = {
  name: 'page-size-512',
  summary: 'kill -9 inside commits and at random moments on a database of 512-byte pages',
  fastTrials: 16,
  soakTrials: 10,
  expects: { killPoints: true },
  run: (ctx) => killLoop(ctx, 'page-size-512', { pageSize: 512, inside: (t) => t % 2 === 0, outsideMs: [150, 700] }),
};

const pageSize65536: Scenario = {
  name: 'page-size-65536',
  summary: 'kill -9 inside commits and at random moments on a database of 65536-byte pages',
  fastTrials: 16,
  soakTrials: 10,
  expects: { killPoints: true },
  run: (ctx) => killLoop(ctx, 'page-size-65536', { pageSize: 65536, inside: (t) => t % 2 === 0, outsideMs: [150, 700] }),
};

const networkFaults: Scenario = {
  name: 'network-faults',
  summary: 'connection resets before and after the store, 500s, responses held past the 500 ms timeout, truncated bodies; every flush lands',
  fastTrials: 3,
  soakTrials: 3,
  expects: { faults: true },
  async run(ctx) {
    s3Faults(ctx, ['reset-before', 'reset-after', 'error-500', 'delay', 'truncate'], 700);
    for (let trial = 0; trial < ctx.trials; trial++) {
      const label = `network-faults seed ${ctx.seed} trial ${trial}`;
      const prefix = uniquePrefix('network-faults', ctx.seed);
      const history = new History();
      ctx.counters.trials++;
      const w = await runToEnd(ctx, writerConfig(ctx, { path: join(ctx.dir, `nf-${trial}.db`), prefix, seed: ctx.seed + trial, maxCommits: 250, flushRate: 0.5 }), history, label, 120_000);
      if (w.finished) await guard(ctx, label, () => checkReplica(ctx, { prefix, history, label, samples: 2, durable: w.finished!.n }));
    }
    ctx.servers.s3proxy.setFaultRate(0);
  },
};

const slowdownBursts: Scenario = {
  name: 'slowdown-bursts',
  summary: 'bursts of 15-40 consecutive 503 SlowDown and 500 answers; uploads back off and catch up',
  fastTrials: 2,
  soakTrials: 3,
  expects: { faults: true },
  async run(ctx) {
    const proxy = ctx.servers.s3proxy;
    for (let trial = 0; trial < ctx.trials; trial++) {
      const label = `slowdown-bursts seed ${ctx.seed} trial ${trial}`;
      const prefix = uniquePrefix('slowdown', ctx.seed);
      const history = new History();
      ctx.counters.trials++;
      let stop = false;
      const config = writerConfig(ctx, { path: join(ctx.dir, `sd-${trial}.db`), prefix, seed: ctx.seed + trial, maxCommits: 250, flushRate: 0.5 });
      const w = new Writer(config, history);
      // Bursts start once the writer is open (an open that meets 40 SlowDowns fails, as documented).
      const bursts = (async () => {
        await w.opened.catch(() => undefined);
        while (!stop) {
          await sleep(150 + ctx.random(400));
          if (proxy.scripted > 0) continue;
          const n = 15 + ctx.random(26);
          proxy.script(...Array.from({ length: n }, () => (ctx.random(4) === 0 ? ('error-500' as const) : ('error-503' as const))));
        }
      })();
      await finish(ctx, w, label, 120_000);
      stop = true;
      await bursts;
      proxy.clearScript();
      if (w.finished) await guard(ctx, label, () => checkReplica(ctx, { prefix, history, label, samples: 2, durable: w.finished!.n }));
    }
  },
};

const s3DownCheckpoint: Scenario = {
  name: 's3-down-checkpoint',
  summary: 'S3 unreachable while the WAL passes the checkpoint size and the application asks for checkpoints (half the trials also kill -9 during the outage); nothing lost once it returns',
  fastTrials: 4,
  soakTrials: 4,
  expects: { faults: true },
  async run(ctx) {
    const proxy = ctx.servers.s3proxy;
    for (let trial = 0; trial < ctx.trials; trial++) {
      const label = `s3-down-checkpoint seed ${ctx.seed} trial ${trial}`;
      const prefix = uniquePrefix('s3-down', ctx.seed);
      const path = join(ctx.dir, `down-${trial}.db`);
      const history = new History();
      ctx.counters.trials++;
      const w = new Writer(writerConfig(ctx, { path, prefix, seed: ctx.seed + trial, mode: trial % 2 === 0 ? 'bursts' : 'steady', checkpointBytes: 16 * 1024, flushRate: 0.3, appCheckpointEvery: 25 }), history);
      try {
        await w.opened;
        await until(() => w.durable > 0, 20_000, 'a first durable commit');
        proxy.setDown(true);
        const before = w.committed;
        await sleep(1200 + ctx.random(800));
        if (w.committed <= before) ctx.counters.violations.push(`${label}: writes stopped while S3 was down (committed ${w.committed})`);
        if (trial % 2 === 1) {
          await w.kill('SIGKILL');
          ctx.counters.killPoints++;
        }
      } finally {
        proxy.setDown(false);
        await w.kill('SIGTERM');
      }
      const end = await runToEnd(ctx, writerConfig(ctx, { path, prefix, seed: ctx.seed + 100 + trial, maxCommits: 20 }), history, `${label} after the outage`, 60_000);
      await sameLineage(ctx, label, w, end);
      if (end.finished) await guard(ctx, label, () => checkReplica(ctx, { prefix, history, label, samples: 4, durable: end.finished!.n }));
    }
  },
};

const dynamoDown: Scenario = {
  name: 'dynamo-down-lease-expiry',
  summary: 'DynamoDB unreachable for the writer until its lease runs out: it refuses writes (ERR_LEASE_NOT_HELD); a new node restores and takes over with a higher epoch; when DynamoDB answers again the old writer cannot re-acquire and stops with ERR_LEASE_LOST',
  fastTrials: 2,
  soakTrials: 2,
  expects: { faults: true },
  async run(ctx) {
    const dproxy = ctx.servers.dynamoProxy;
    for (let trial = 0; trial < ctx.trials; trial++) {
      const label = `dynamo-down seed ${ctx.seed} trial ${trial}`;
      const prefix = uniquePrefix('dynamo-down', ctx.seed);
      const history = new History();
      ctx.counters.trials++;
      const a = new Writer(writerConfig(ctx, { path: join(ctx.dir, `dd-a-${trial}.db`), prefix, seed: ctx.seed + trial, lease: leaseConfig(ctx, 1000), statusEveryMs: 50 }), history);
      let epochA = 0;
      try {
        epochA = (await a.opened).epoch;
        await until(() => a.durable > 3, 20_000, 'A to make something durable');
        // Only what A reports from here counts (a slow cold open may have lost and healed the lease already).
        const seen = a.states.length;
        const refusedBefore = a.rejectedBy.get('ERR_LEASE_NOT_HELD') ?? 0;
        dproxy.setDown(true);
        const leaseless = () => a.states.slice(seen).some((s) => s.state === 'leaseless') && (a.rejectedBy.get('ERR_LEASE_NOT_HELD') ?? 0) > refusedBefore;
        await until(() => leaseless() || !a.running, 20_000, 'A to refuse writes').catch(() => undefined);
        if (!leaseless()) ctx.counters.violations.push(`${label}: with DynamoDB down the writer ${a.running ? 'did not turn leaseless and refuse writes with ERR_LEASE_NOT_HELD within 20 s' : `exited with ${a.failedWith}`}`);
        a.fenced = true;
        // B (DynamoDB reachable) waits out A's lease and takes over; then A's DynamoDB answers again.
        await takeOver(ctx, label, prefix, history, epochA, `dd-b-${trial}.db`, async () => {
          dproxy.setDown(false);
          const r = await settle(a, 15_000);
          if (r === 'killed' || a.failedWith !== 'ERR_LEASE_LOST') ctx.counters.violations.push(`F: ${label}: after the takeover the old writer ${r === 'killed' ? 'kept running' : `exited with ${a.failedWith}`} instead of stopping with ERR_LEASE_LOST`);
        });
      } finally {
        dproxy.setDown(false);
        await a.kill();
      }
    }
  },
};

/**
 * B restores the replica, opens with the lease (waiting out A's), commits, and the replica is B's
 * lineage. Uploads A had in flight may land after B's restore: B's open then refuses its older file
 * (ERR_DURABLE_AHEAD, never a fork) and, as an operator would, B restores again and reopens.
 */
async function takeOver(ctx: ScenarioContext, label: string, prefix: string, history: History, epochA: number, file: string, wake?: () => Promise<void>): Promise<void> {
  const pathB = join(ctx.dir, file);
  let b: Writer | undefined;
  let opened: { epoch: number } | null = null;
  for (let attempt = 1; !opened; attempt++) {
    rmSync(pathB, { force: true });
    await restore({ ...sourceOf(ctx, prefix), path: pathB });
    const base = await checkFile(ctx, history, pathB, `${label}: B's restored start`);
    const unfence = history.fence(base);
    if (base < history.maxDurable) ctx.counters.violations.push(`D: ${label}: B starts from commit ${base}, below the ${history.maxDurable} A had made durable`);
    b = new Writer(writerConfig(ctx, { path: pathB, prefix, seed: ctx.seed + 77, mark: 'B', lease: leaseConfig(ctx, 1000, true), maxCommits: 60, direct: true }), history);
    let refusedAsOlder = false;
    opened = await b.opened.catch((e: Error) => {
      refusedAsOlder = / holds transactions up to \d+ but .* is older than its replica/.test(e.message);
      if (!refusedAsOlder || attempt === 3) ctx.counters.violations.push(`${label}: B could not open (attempt ${attempt}): ${e.message}`);
      return null;
    });
    if (opened) break;
    await b.kill();
    if (!refusedAsOlder || attempt === 3) return;
    unfence();
    ctx.counters.notes.push(`${label}: uploads A had in flight landed after B's restore; B's open refused the older file (ERR_DURABLE_AHEAD) and B restored again`);
    await sleep(3000);
  }
  if (!opened || !b) return;
  if (opened.epoch <= epochA) ctx.counters.violations.push(`F: ${label}: B's epoch ${opened.epoch} is not above A's ${epochA}`);
  await wake?.();
  const writerB = b;
  if ((await settle(writerB, 60_000)) === 'killed' || !writerB.finished) {
    ctx.counters.violations.push(`${label}: B did not finish (${writerB.failedWith ?? ''}): ${writerB.stderr.slice(-400)}`);
    return;
  }
  await guard(ctx, label, () => checkReplica(ctx, { prefix, history, label, samples: 3, durable: writerB.finished!.n }));
}

const sigstopTakeover: Scenario = {
  name: 'sigstop-takeover',
  summary: 'SIGSTOP past the lease while uploads are held in the network; a new node takes over; SIGCONT: late uploads land, the zombie stops, restore never shows it',
  fastTrials: 2,
  soakTrials: 3,
  expects: { faults: true },
  async run(ctx) {
    const proxy = ctx.servers.s3proxy;
    proxy.setDelayMs(2500);
    for (let trial = 0; trial < ctx.trials; trial++) {
      const label = `sigstop-takeover seed ${ctx.seed} trial ${trial}`;
      const prefix = uniquePrefix('sigstop', ctx.seed);
      const history = new History();
      ctx.counters.trials++;
      const a = new Writer(writerConfig(ctx, { path: join(ctx.dir, `ss-a-${trial}.db`), prefix, seed: ctx.seed + trial, lease: leaseConfig(ctx, 1000, true) }), history);
      let epochA = 0;
      try {
        epochA = (await a.opened).epoch;
        await until(() => a.durable > 5, 20_000, 'A to make something durable');
        // Stop A only once the network holds at least one of its uploads: a fixed pause before the
        // SIGSTOP sometimes saw no request from A at all, and the trial then tested no late upload.
        const lateBefore = proxy.counts.late;
        proxy.setFaultRate(0.5, ['late']);
        await until(() => proxy.counts.late > lateBefore, 20_000, 'an upload of A to be held in the network');
        await sleep(ctx.random(150));
        a.child.kill('SIGSTOP');
        await sleep(100); // lines A wrote before it stopped are read
        a.fenced = true;
        await takeOver(ctx, label, prefix, history, epochA, `ss-b-${trial}.db`, async () => {
          a.child.kill('SIGCONT');
          const r = await settle(a, 15_000);
          if (r === 'killed' || a.failedWith !== 'ERR_LEASE_LOST') ctx.counters.violations.push(`F: ${label}: the zombie ${r === 'killed' ? 'kept running' : `exited with ${a.failedWith}`} instead of stopping with ERR_LEASE_LOST`);
          await sleep(2700); // every held upload has landed
        });
      } finally {
        proxy.setFaultRate(0);
        a.child.kill('SIGCONT');
        await a.kill();
      }
    }
  },
};

const clockJumps: Scenario = {
  name: 'clock-jumps',
  summary: 'the writer\u2019s wall clock jumps by up to \u00b12 h every 200 ms under a DynamoDB lease; kill -9 and restart',
  fastTrials: 3,
  soakTrials: 3,
  expects: { killPoints: true },
  async run(ctx) {
    const prefix = uniquePrefix('clock', ctx.seed);
    const path = join(ctx.dir, 'clock.db');
    const history = new History();
    for (let trial = 0; trial < ctx.trials; trial++) {
      const label = `clock-jumps seed ${ctx.seed} trial ${trial}`;
      ctx.counters.trials++;
      const w = new Writer(writerConfig(ctx, { path, prefix, seed: ctx.seed + trial, clockJumps: true, lease: leaseConfig(ctx, 1500, true) }), history);
      await w.opened.catch(() => null);
      await sleep(1200 + ctx.random(800));
      if (w.failedWith) ctx.counters.violations.push(`${label}: the writer failed with ${w.failedWith} under clock jumps`);
      await w.kill('SIGKILL');
      ctx.counters.killPoints++;
      // The next open must wait out the killed writer's lease (it never released it).
      await guard(ctx, label, () => checkReplica(ctx, { prefix, history, label, samples: 2 }));
    }
  },
};

function fsFaultScenario(errno: 'ENOSPC' | 'EIO'): Scenario {
  const name = errno === 'ENOSPC' ? 'disk-full' : 'eio';
  return {
    name,
    summary: `${errno} from the VFS's file writes and syncs (1-6 consecutive operations): commits fail with a clear error and roll back; the replica never holds a failed commit`,
    fastTrials: 6,
    soakTrials: 6,
    async run(ctx) {
      let rejected = 0;
      for (let trial = 0; trial < ctx.trials; trial++) {
        const label = `${name} seed ${ctx.seed} trial ${trial}`;
        const prefix = uniquePrefix(name, ctx.seed);
        const path = join(ctx.dir, `${name}-${trial}.db`);
        const history = new History();
        ctx.counters.trials++;
        const w = new Writer(writerConfig(ctx, { path, prefix, seed: ctx.seed + trial, maxCommits: 120, fsFault: { fromOp: 40 + ctx.random(400), count: 1 + ctx.random(6), errno } }), history);
        const r = await settle(w, 60_000);
        const exit = await w.exited;
        ctx.counters.faults += w.fsFaults;
        rejected += w.rejected;
        if (r === 'killed') ctx.counters.violations.push(`${label}: the writer hung after the injected ${errno}`);
        // Exit 0: it finished; 4: the open failed with a typed error. Anything else (a crash, or
        // replication giving up for good on a transient disk error) is a violation.
        else if (exit.code !== 0 && exit.code !== 4) ctx.counters.violations.push(`${label}: the writer stopped (exit ${exit.code}, ${w.failedWith ?? 'no code'}) after the injected ${errno}: ${w.stderr.slice(0, 1500)}`);
        // Whatever happened, a writer without faults on the same file finishes the job and the
        // replica is exactly the file's lineage.
        const end = await runToEnd(ctx, writerConfig(ctx, { path, prefix, seed: ctx.seed + 500 + trial, maxCommits: 10 }), history, `${label} recovery run`);
        await sameLineage(ctx, label, w, end);
        if (end.finished) await guard(ctx, label, () => checkReplica(ctx, { prefix, history, label, samples: 2, durable: end.finished!.n }));
      }
      ctx.counters.notes.push(`${name}: ${rejected} commits failed and were rolled back`);
    },
  };
}

type Damage = 'bit-flip' | 'truncate' | 'duplicate' | 'missing' | 'page-rewrite';
const DAMAGES: readonly Damage[] = ['bit-flip', 'truncate', 'duplicate', 'missing', 'page-rewrite'];

/**
 * The object decoded, one bit of one page image flipped, and encoded again with the same header:
 * every object checksum is valid, only the rolling database checksum can tell (what a writer bug or
 * a memory error before encoding would produce).
 */
async function rewritePage(bytes: Uint8Array, random: (n: number) => number): Promise<Uint8Array> {
  let header: ObjectHeader | undefined;
  const txns = new Map<number, { txid: number; timestamp: number; commitSize: number; postChecksum: bigint; pages: { pgno: number; data: Uint8Array }[] }>();
  for await (const ev of decodeObject(bytes)) {
    if (ev.type === 'header') header = ev.header;
    else if (ev.type === 'transaction') {
      const t = txns.get(ev.txid) ?? { txid: ev.txid, timestamp: ev.timestamp, commitSize: ev.commitSize, postChecksum: ev.postChecksum, pages: [] };
      for (const p of ev.pages) t.pages.push({ pgno: p.pgno, data: Uint8Array.from(p.data) });
      txns.set(ev.txid, t);
    }
  }
  const list = [...txns.values()].filter((t) => t.pages.length > 0);
  const t = list[random(list.length)]!;
  const page = t.pages[random(t.pages.length)]!;
  page.data[random(page.data.length)]! ^= 1 << random(8);
  return encodeSegment({ ...header!, compression: header!.compression }, [...txns.values()]);
}
const DAMAGE_CODES = new Set(['ERR_CORRUPT_OBJECT', 'ERR_CHAIN_MISMATCH', 'ERR_CHAIN_GAP', 'ERR_OBJECT_MISSING', 'ERR_FOREIGN_OBJECT', 'ERR_NO_REPLICA']);

const damagedObjects: Scenario = {
  name: 'damaged-objects',
  summary: 'bit-flipped (zstd and uncompressed), truncated, duplicated (under a stale and an unknown epoch), missing, and re-encoded with one page bit flipped: restore gives the exact state or a typed error naming the key, never a wrong database',
  fastTrials: 15,
  soakTrials: 8,
  expects: { faults: true },
  async run(ctx) {
    const storage = storageOf(ctx);
    const base = uniquePrefix('damage-base', ctx.seed);
    const history = new History();
    const path = join(ctx.dir, 'damage.db');
    let tip = 0;
    // The middle session ships uncompressed: a flipped bit there leaves the structure intact.
    for (let s = 0; s < 3; s++) tip = (await runToEnd(ctx, writerConfig(ctx, { path, prefix: base, seed: ctx.seed + s, maxCommits: 60, flushRate: 0.6, compression: s === 1 ? 'none' : 'zstd' }), history, `damaged-objects base session ${s}`)).finished?.n ?? tip;
    const keys: string[] = [];
    for await (const o of storage.list({ prefix: `${base}/` })) keys.push(o.key);
    const objects = keys.filter((k) => k.endsWith('.seg') || k.endsWith('.snap'));
    let refused = 0;
    const lastSegment = keys.filter((k) => k.includes('/l0/')).sort().at(-1);
    for (let trial = 0; trial < ctx.trials; trial++) {
      const damage = DAMAGES[trial % DAMAGES.length]!;
      const pool = damage === 'page-rewrite' ? objects.filter((k) => k.endsWith('.seg')) : objects;
      const victim = pool[ctx.random(pool.length)]!;
      const prefix = uniquePrefix('damaged', ctx.seed);
      const label = `damaged-objects seed ${ctx.seed} trial ${trial} (${damage} ${victim.slice(base.length + 1)})`;
      ctx.counters.trials++;
      const moved = (k: string) => `${prefix}/${k.slice(base.length + 1)}`;
      for (const k of keys) {
        const bytes = (await storage.get(k))!;
        if (k !== victim) {
          await storage.put(moved(k), bytes);
          continue;
        }
        ctx.counters.faults++;
        if (damage === 'bit-flip') {
          const copy = Uint8Array.from(bytes);
          const at = ctx.random(copy.length);
          copy[at]! ^= 1 << ctx.random(8);
          await storage.put(moved(k), copy);
        } else if (damage === 'page-rewrite') {
          await storage.put(moved(k), await rewritePage(bytes, ctx.random));
        } else if (damage === 'truncate') {
          await storage.put(moved(k), bytes.subarray(0, ctx.random(bytes.length)));
        } else if (damage === 'duplicate') {
          await storage.put(moved(k), bytes);
          const parsed = parseObjectKey(base, k);
          if (parsed && parsed.kind !== 'database' && 'epoch' in parsed) {
            // The same bytes under an epoch nobody was granted, and under epoch 0 (older than every writer).
            for (const epoch of [parsed.epoch + 1000, 0]) await storage.put(moved(formatObjectKey(base, { ...parsed, epoch } as typeof parsed)), bytes);
          }
        }
        // 'missing': not copied.
      }
      // The latest state, and the txid the victim holds (its snapshot txid, or its segment's last
      // txid): the second restore needs the victim unless the planner can route around it.
      const header = decodeHeader((await storage.get(victim))!);
      const victimTxid = header.maxTxid;
      for (const txid of [undefined, victimTxid]) {
        const at = txid === undefined ? 'latest' : `txid ${txid}`;
        const target = join(ctx.dir, `damaged-${trial}-${txid ?? 'latest'}.db`);
        await guard(ctx, `${label} restoring ${at}`, async () => {
          let restoredTxid = 0;
          try {
            restoredTxid = (await restore({ ...sourceOf(ctx, prefix), path: target, ...(txid !== undefined ? { txid } : {}) })).txid;
          } catch (e) {
            const err = e as Error & { code?: string };
            if (damage === 'duplicate') throw new Error(`a duplicate must not stop a restore, got ${err.code}: ${err.message}`);
            // The newest object missing looks like one never written: its txids are simply not there.
            // So does a missing snapshot for the txids it was the base of.
            const tipGone = damage === 'missing' && (victim === lastSegment || victim.endsWith('.snap')) && err.code === 'ERR_TXID_NOT_FOUND';
            if (!tipGone && (!err.code || !DAMAGE_CODES.has(err.code))) throw new Error(`restore failed with ${err.code ?? 'no code'} (${err.message}), not one of ${[...DAMAGE_CODES].join(', ')}`);
            if (!err.message.includes(moved(victim)) && !err.message.includes(victim.slice(base.length + 1)) && err.code !== 'ERR_CHAIN_GAP' && err.code !== 'ERR_NO_REPLICA' && !tipGone) throw new Error(`the error does not name the damaged object: ${err.message}`);
            if (existsSync(target)) throw new Error('a failed restore left a file at the target');
            ctx.log(`${label} restoring ${at}: ${err.code}`);
            refused++;
            return;
          }
          ctx.counters.restores++;
          // Restored despite the damage: the state must be exactly the one asked for.
          const m = await checkFile(ctx, history, target, `${label} restoring ${at}`);
          const want = txid === undefined ? tip : Math.max(0, ...[...history.txidOf].filter(([, t]) => t <= txid).map(([n]) => n));
          if (m !== want) throw new Error(`restored ${at} to commit ${m} with ${damage} of an object; that point is commit ${want}`);
          // Byte for byte what an independent decoder (test/util/replica.ts) rebuilds from the
          // undamaged replica at the same txid: a restore that applied damage a checksum should have
          // caught differs here even when the flipped bit sits in a page's free space.
          const truth = await rebuildFromReplica(storage, base, { toTxid: restoredTxid });
          if (truth.txid !== restoredTxid || !Buffer.from(truth.bytes).equals(readFileSync(target))) throw new Error(`restore ${at} (txid ${restoredTxid}) differs from the undamaged replica rebuilt independently at txid ${truth.txid}`);
          ctx.log(`${label} restoring ${at}: exact without the damaged object`);
          rmSync(target, { force: true });
        });
      }
    }
    ctx.counters.notes.push(`damaged-objects: ${refused} restores refused with a typed error`);
    if (ctx.trials >= 4 && refused === 0) ctx.counters.violations.push(`damaged-objects seed ${ctx.seed}: no damage was ever detected (the restores never needed a damaged object?)`);
  },
};

const wrongKey: Scenario = {
  name: 'wrong-key',
  summary: 'an encrypted replica restored with no key, a wrong key under the right id (its sealed database.json fails), and an unknown id: typed errors and no file; the right key restores it exactly',
  fastTrials: 1,
  soakTrials: 1,
  async run(ctx) {
    for (let trial = 0; trial < ctx.trials; trial++) {
      const label = `wrong-key seed ${ctx.seed} trial ${trial}`;
      const prefix = uniquePrefix('wrong-key', ctx.seed);
      const key = { id: 'k1', key: randomBytes(32).toString('base64') };
      const history = new History();
      ctx.counters.trials++;
      const w = await runToEnd(ctx, writerConfig(ctx, { path: join(ctx.dir, `wk-${trial}.db`), prefix, seed: ctx.seed + trial, maxCommits: 80, encryption: key }), history, label);
      if (!w.finished) continue;
      const cases: [string, { id: string; key: string }[] | undefined, string][] = [
        ['no key', undefined, 'ERR_KEY_REQUIRED'],
        // database.json is sealed under k1: its MAC is the first thing a wrong key fails on.
        ['a wrong key under the right id', [{ id: 'k1', key: randomBytes(32).toString('base64') }], 'ERR_AUTHENTICATION_FAILED'],
        ['an unknown id', [{ id: 'k2', key: randomBytes(32).toString('base64') }], 'ERR_UNKNOWN_KEY'],
      ];
      for (const [what, keys, code] of cases) {
        const target = join(ctx.dir, `wk-${trial}-${code}.db`);
        await guard(ctx, `${label}: ${what}`, async () => {
          ctx.counters.faults++;
          let got: string | undefined = 'no error';
          await restore({ ...sourceOf(ctx, prefix, keys), path: target }).catch((e: { code?: string }) => (got = e.code));
          if (got !== code) throw new Error(`restore with ${what} gave ${got}, expected ${code}`);
          if (existsSync(target)) throw new Error(`restore with ${what} left a file`);
        });
      }
      await guard(ctx, label, () => checkReplica(ctx, { prefix, history, label, keys: [key], samples: 2, durable: w.finished!.n }));
    }
  },
};

const restartAfterRestore: Scenario = {
  name: 'restart-after-restore',
  summary: 'a node restores and writes on: the lineage continues; a node restored to an earlier txid is refused (ERR_DURABLE_AHEAD)',
  fastTrials: 2,
  soakTrials: 2,
  async run(ctx) {
    for (let trial = 0; trial < ctx.trials; trial++) {
      const label = `restart-after-restore seed ${ctx.seed} trial ${trial}`;
      const prefix = uniquePrefix('restart', ctx.seed);
      const history = new History();
      ctx.counters.trials++;
      const first = await runToEnd(ctx, writerConfig(ctx, { path: join(ctx.dir, `rr-a-${trial}.db`), prefix, seed: ctx.seed + trial, maxCommits: 100 }), history, label);
      if (!first.finished) continue;
      const generation = (await first.opened).generation;
      const restored = join(ctx.dir, `rr-b-${trial}.db`);
      await restore({ ...sourceOf(ctx, prefix), path: restored });
      const second = await runToEnd(ctx, writerConfig(ctx, { path: restored, prefix, seed: ctx.seed + 50 + trial, maxCommits: 100 }), history, `${label} on the restored node`);
      if (!second.finished) continue;
      const g2 = (await second.opened).generation;
      if (g2 !== generation) ctx.counters.violations.push(`${label}: the restored node started generation ${g2} instead of continuing ${generation}`);
      await guard(ctx, label, () => checkReplica(ctx, { prefix, history, label, samples: 3, durable: second.finished!.n }));
      // A node at an earlier txid must not write over the replica's later history.
      const early = join(ctx.dir, `rr-c-${trial}.db`);
      // A commit of the first run after the generation's first snapshot (earlier ones are not restorable).
      let firstSnapshot = Infinity;
      for await (const o of storageOf(ctx).list({ prefix: `${prefix}/` })) {
        const k = parseObjectKey(prefix, o.key);
        if (k?.kind === 'snapshot') firstSnapshot = Math.min(firstSnapshot, k.txid);
      }
      const firstEnd = first.finished.n;
      const afterSnapshot = [...history.txidOf].filter(([n, t]) => t > firstSnapshot && n <= firstEnd);
      if (afterSnapshot.length === 0) continue;
      const txid = afterSnapshot[Math.floor(afterSnapshot.length / 2)]![1];
      await restore({ ...sourceOf(ctx, prefix), path: early, txid });
      const third = new Writer(writerConfig(ctx, { path: early, prefix, seed: ctx.seed + 90, maxCommits: 5 }), history);
      await third.exited;
      if (third.failedWith !== 'ERR_DURABLE_AHEAD') ctx.counters.violations.push(`${label}: a node restored to txid ${txid} opened with ${third.failedWith ?? 'no error'} instead of ERR_DURABLE_AHEAD`);
    }
  },
};

const largeTransaction: Scenario = {
  name: 'large-transaction',
  summary: 'transactions of 300 KB to 1.2 MB against a 64 KiB segment limit, one kill -9 mid-run',
  fastTrials: 1,
  soakTrials: 2,
  expects: { killPoints: true },
  async run(ctx) {
    for (let trial = 0; trial < ctx.trials; trial++) {
      const label = `large-transaction seed ${ctx.seed} trial ${trial}`;
      const prefix = uniquePrefix('large-tx', ctx.seed);
      const path = join(ctx.dir, `lt-${trial}.db`);
      const shape = { bigEvery: 3, bigBytes: 300_000 + ctx.random(900_000) };
      const history = new History(shape);
      ctx.counters.trials++;
      const common = { path, prefix, maxSegmentBytes: 65536, shape, flushRate: 0.5 };
      const w = new Writer(writerConfig(ctx, { ...common, seed: ctx.seed + trial }), history);
      await w.opened.catch(() => null);
      await until(() => w.committed > 12 || !w.running, 30_000, 'a dozen commits').catch(() => undefined);
      await w.kill('SIGKILL');
      ctx.counters.killPoints++;
      const end = await runToEnd(ctx, writerConfig(ctx, { ...common, seed: ctx.seed + 10 + trial, maxCommits: 12 }), history, label);
      await sameLineage(ctx, label, w, end);
      if (end.finished) await guard(ctx, label, () => checkReplica(ctx, { prefix, history, label, samples: 3, durable: end.finished!.n }));
    }
  },
};

const overOneGib: Scenario = {
  name: 'over-1gib',
  summary: 'a database of 1.1 GiB (64 KiB pages, 1 MiB rows) crosses the lock page at 1 GiB; shipped, restored and checked',
  fastTrials: 0,
  soakTrials: 1,
  async run(ctx) {
    for (let trial = 0; trial < ctx.trials; trial++) {
      const label = `over-1gib seed ${ctx.seed} trial ${trial}`;
      const prefix = uniquePrefix('big', ctx.seed);
      const shape = { bigEvery: 1, bigBytes: 1 << 20 };
      const history = new History(shape);
      ctx.counters.trials++;
      const w = await runToEnd(ctx, writerConfig(ctx, { path: join(ctx.dir, `big-${trial}.db`), prefix, seed: ctx.seed, pageSize: 65536, shape, maxCommits: 1130, checkpointBytes: 64 << 20, flushRate: 0.05 }), history, label, 900_000);
      const size = statSync(join(ctx.dir, `big-${trial}.db`)).size;
      if (size <= 2 ** 30) ctx.counters.violations.push(`${label}: the database is ${size} bytes, not past the lock page at 1 GiB`);
      if (w.finished) await guard(ctx, label, () => checkReplica(ctx, { prefix, history, label, samples: 1, durable: w.finished!.n }));
      ctx.counters.notes.push(`over-1gib: a ${(size / 2 ** 30).toFixed(2)} GiB database`);
      rmSync(join(ctx.dir, `big-${trial}.db`), { force: true });
    }
  },
};

export const SCENARIOS: readonly Scenario[] = [
  killInCommit,
  killMidUpload,
  pageSize512,
  pageSize65536,
  networkFaults,
  slowdownBursts,
  s3DownCheckpoint,
  dynamoDown,
  dynamoBlip,
  restartDeadHolder,
  flushDeadline,
  sigstopTakeover,
  clockJumps,
  fsFaultScenario('ENOSPC'),
  fsFaultScenario('EIO'),
  damagedObjects,
  wrongKey,
  restartAfterRestore,
  largeTransaction,
  overOneGib,
];
