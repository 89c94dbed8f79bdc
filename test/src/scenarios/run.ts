// Runs scenarios against freshly started servers and reports per scenario: trials, kill points,
// faults injected, restores, transactions checked, violations, seconds, and how to replay.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLeaseTable } from '@walship/lease';
import { loadFormat } from '@walship/format';
import { startDynalite, startDynamoDbLocal, startFaultProxy, startS3rver, startSwift, type DynamoServer, type S3Server } from '../servers/index.js';
import { SCENARIOS, type Scenario } from './cases.js';
import { faultTotal, newCounters, seeded, startWriterPool, stopWriterPool, type Counters, type Servers } from './harness.js';

export interface ServerChoice {
  s3?: 's3rver' | 'swift';
  dynamo?: 'dynalite' | 'dynamodb-local';
}

export interface RunningServers extends Servers {
  stop(): Promise<void>;
  describe: string;
}

export async function startServers(choice: ServerChoice = {}): Promise<RunningServers> {
  await loadFormat();
  let s3: S3Server | undefined;
  let dynamo: DynamoServer | undefined;
  try {
    [s3, dynamo] = await Promise.all([choice.s3 === 'swift' ? startSwift() : startS3rver(), choice.dynamo === 'dynamodb-local' ? startDynamoDbLocal() : startDynalite()]);
    startWriterPool();
    const s3proxy = await startFaultProxy({ target: s3.endpoint, seed: 1 });
    const dynamoProxy = await startFaultProxy({ target: dynamo.endpoint, seed: 2 });
    const leaseTable = 'walship-scenarios';
    await createLeaseTable({ table: leaseTable, endpoint: dynamo.endpoint, region: dynamo.region, credentials: { accessKeyId: dynamo.accessKeyId, secretAccessKey: dynamo.secretAccessKey } });
    const [s, d] = [s3, dynamo];
    return {
      s3: s,
      dynamo: d,
      s3proxy,
      dynamoProxy,
      leaseTable,
      describe: `${s.kind} + ${d.kind}, each behind a fault proxy`,
      stop: async () => {
        stopWriterPool();
        await Promise.allSettled([s3proxy.stop(), dynamoProxy.stop()]);
        await Promise.allSettled([s.stop(), d.stop()]);
      },
    };
  } catch (e) {
    stopWriterPool();
    await Promise.allSettled([s3?.stop(), dynamo?.stop()]);
    throw e;
  }
}

export interface ScenarioReport extends Counters {
  name: string;
  summary: string;
  seed: number;
  seconds: number;
  /** The command that runs this scenario again with the same seed and trials. */
  replay: string;
  /** An error that stopped the scenario before its trials were done (counted as a violation). */
  error?: string;
}

export function scenarioNamed(name: string): Scenario {
  const s = SCENARIOS.find((x) => x.name === name);
  if (!s) throw new Error(`no scenario named ${JSON.stringify(name)}; the scenarios: ${SCENARIOS.map((x) => x.name).join(', ')}`);
  return s;
}

export interface RunOptions {
  seed: number;
  trials: number;
  faultRate?: number;
  log?: (line: string) => void;
}

export async function runScenario(servers: Servers, scenario: Scenario, o: RunOptions): Promise<ScenarioReport> {
  const counters = newCounters();
  const dir = mkdtempSync(join(tmpdir(), `walship-scenario-${scenario.name}-`));
  const random = seeded(o.seed);
  const log = o.log ?? (() => undefined);
  const faultsBefore = faultTotal({ servers } as never);
  servers.s3proxy.setFaultRate(0);
  servers.s3proxy.setDown(false);
  servers.dynamoProxy.setFaultRate(0);
  servers.dynamoProxy.setDown(false);
  const started = Date.now();
  const report: ScenarioReport = {
    name: scenario.name,
    summary: scenario.summary,
    seed: o.seed,
    trials: 0,
    killPoints: 0,
    faults: 0,
    restores: 0,
    transactionsChecked: 0,
    violations: counters.violations,
    notes: counters.notes,
    seconds: 0,
    replay: `npx -y pnpm@12.4.2 soak --scenario ${scenario.name} --seed ${o.seed} --trials ${o.trials}${o.faultRate !== undefined ? ` --fault-rate ${o.faultRate}` : ''}`,
  };
  try {
    await scenario.run({ servers, dir, seed: o.seed, trials: o.trials, faultRate: o.faultRate ?? 0.2, counters, random, log });
  } catch (e) {
    report.error = (e as Error).stack ?? String(e);
    counters.violations.push(`${scenario.name} seed ${o.seed} stopped: ${(e as Error).message}`);
  } finally {
    servers.s3proxy.setFaultRate(0);
    servers.s3proxy.clearScript();
    servers.s3proxy.setDown(false);
    servers.dynamoProxy.setFaultRate(0);
    servers.dynamoProxy.setDown(false);
    rmSync(dir, { recursive: true, force: true });
  }
  Object.assign(report, {
    trials: counters.trials,
    killPoints: counters.killPoints,
    faults: counters.faults + faultTotal({ servers } as never) - faultsBefore,
    restores: counters.restores,
    transactionsChecked: counters.transactionsChecked,
    seconds: Math.round((Date.now() - started) / 100) / 10,
  });
  return report;
}

export interface Totals {
  name: string;
  summary: string;
  runs: number;
  trials: number;
  killPoints: number;
  faults: number;
  restores: number;
  transactionsChecked: number;
  violations: number;
  seconds: number;
}

export function totals(reports: readonly ScenarioReport[]): Totals[] {
  const by = new Map<string, Totals>();
  for (const r of reports) {
    const t = by.get(r.name) ?? { name: r.name, summary: r.summary, runs: 0, trials: 0, killPoints: 0, faults: 0, restores: 0, transactionsChecked: 0, violations: 0, seconds: 0 };
    t.runs++;
    t.trials += r.trials;
    t.killPoints += r.killPoints;
    t.faults += r.faults;
    t.restores += r.restores;
    t.transactionsChecked += r.transactionsChecked;
    t.violations += r.violations.length;
    t.seconds += r.seconds;
    by.set(r.name, t);
  }
  return [...by.values()];
}

export function markdownTable(rows: readonly Totals[]): string {
  const lines = ['| scenario | runs | trials | kill points | faults injected | restores | transactions checked | violations |', '|---|---:|---:|---:|---:|---:|---:|---:|'];
  const sum = { runs: 0, trials: 0, killPoints: 0, faults: 0, restores: 0, transactionsChecked: 0, violations: 0 };
  for (const r of rows) {
    lines.push(`| ${r.name} | ${r.runs} | ${r.trials} | ${r.killPoints} | ${r.faults} | ${r.restores} | ${r.transactionsChecked} | ${r.violations} |`);
    for (const k of Object.keys(sum) as (keyof typeof sum)[]) sum[k] += r[k];
  }
  lines.push(`| **all** | ${sum.runs} | ${sum.trials} | ${sum.killPoints} | ${sum.faults} | ${sum.restores} | ${sum.transactionsChecked} | ${sum.violations} |`);
  return lines.join('\n');
}
