#!/usr/bin/env node
// walship soak: runs the scenarios round after round (fresh seeds each round) until the time is up,
// then writes a JSON report and a Markdown table and exits 1 if any invariant was violated.
//
//   npx -y pnpm@12.4.2 soak --minutes 60 [--scenario a,b] [--seed N] [--trials N] [--fast]
//        [--fault-rate 0.2] [--s3 s3rver|swift] [--dynamo dynalite|dynamodb-local]
//        [--report soak-report.json] [--markdown soak-report.md]
// Without --minutes it runs one round (a replay: --scenario X --seed N --trials N).
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { SCENARIOS } from './cases.js';
import { markdownTable, runScenario, scenarioNamed, startServers, totals, type ScenarioReport } from './run.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string' },
    scenario: { type: 'string' },
    seed: { type: 'string' },
    trials: { type: 'string' },
    fast: { type: 'boolean', default: false },
    'fault-rate': { type: 'string' },
    s3: { type: 'string', default: 's3rver' },
    dynamo: { type: 'string', default: 'dynalite' },
    report: { type: 'string', default: 'soak-report.json' },
    markdown: { type: 'string', default: 'soak-report.md' },
    help: { type: 'boolean', default: false },
  },
});

function fail(message: string): never {
  process.stderr.write(`soak: ${message}\n`);
  process.exit(2);
}

if (values.help) {
  process.stdout.write(`usage: soak [--minutes N] [--scenario a,b] [--seed N] [--trials N] [--fast] [--fault-rate R] [--s3 s3rver|swift] [--dynamo dynalite|dynamodb-local] [--report F] [--markdown F]\nscenarios: ${SCENARIOS.map((s) => s.name).join(', ')}\n`);
  process.exit(0);
}
const num = (name: string, v: string | undefined, min: number, max: number): number | undefined => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) fail(`--${name} must be a number in [${min}, ${max}], got ${JSON.stringify(v)}`);
  return n;
};
const minutes = num('minutes', values.minutes, 0.1, 24 * 60);
const seed0 = num('seed', values.seed, 1, 2 ** 31 - 1) ?? (Date.now() % 1_000_000) + 1;
const trials = num('trials', values.trials, 1, 100_000);
const faultRate = num('fault-rate', values['fault-rate'], 0, 1);
if (values.s3 !== 's3rver' && values.s3 !== 'swift') fail(`--s3 must be s3rver or swift, got ${values.s3}`);
if (values.dynamo !== 'dynalite' && values.dynamo !== 'dynamodb-local') fail(`--dynamo must be dynalite or dynamodb-local, got ${values.dynamo}`);
let chosen;
try {
  chosen = values.scenario ? values.scenario.split(',').map((n) => scenarioNamed(n.trim())) : SCENARIOS.filter((s) => (values.fast ? s.fastTrials > 0 : true));
} catch (e) {
  fail((e as Error).message);
}

const log = (line: string) => process.stdout.write(`${line}\n`);
const servers = await startServers({ s3: values.s3 as 's3rver' | 'swift', dynamo: values.dynamo as 'dynalite' | 'dynamodb-local' }).catch((e: Error) => fail(`could not start the servers: ${e.message}`));
log(`soak: ${servers.describe}; ${chosen.length} scenarios; ${minutes !== undefined ? `${minutes} min` : 'one round'}; first seed ${seed0}`);
const started = Date.now();
const deadline = minutes !== undefined ? started + minutes * 60_000 : 0;
const reports: ScenarioReport[] = [];
let round = 0;
let stopping = false;
process.on('SIGINT', () => {
  stopping = true;
  log('soak: SIGINT: finishing the running scenario, then reporting');
});
try {
  do {
    for (const s of chosen) {
      if (stopping || (deadline && Date.now() >= deadline && round > 0)) break;
      const seed = seed0 + round * 7919 + reports.length;
      const n = trials ?? (values.fast ? s.fastTrials : s.soakTrials) ?? 1;
      const r = await runScenario(servers, s, { seed, trials: Math.max(1, n), ...(faultRate !== undefined ? { faultRate } : {}), log: (l) => log(`  ${l}`) });
      reports.push(r);
      log(`${r.violations.length === 0 ? 'ok  ' : 'FAIL'} ${r.name} seed ${r.seed}: ${r.trials} trials, ${r.killPoints} kill points, ${r.faults} faults, ${r.restores} restores, ${r.transactionsChecked} transactions checked, ${r.violations.length} violations, ${r.seconds} s`);
      for (const v of r.violations) log(`     violation: ${v}`);
      if (r.violations.length > 0) log(`     replay: ${r.replay}`);
    }
    round++;
  } while (!stopping && deadline && Date.now() < deadline);
} finally {
  await servers.stop();
}

const rows = totals(reports);
const elapsedMin = Math.round((Date.now() - started) / 6000) / 10;
const failed = reports.filter((r) => r.violations.length > 0);
const report = {
  startedAt: new Date(started).toISOString(),
  minutes: elapsedMin,
  servers: servers.describe,
  node: process.version,
  firstSeed: seed0,
  rounds: round,
  totals: rows,
  runs: reports,
};
writeFileSync(values.report!, `${JSON.stringify(report, null, 2)}\n`);
const md = `Soak of ${elapsedMin} min from ${report.startedAt} on ${servers.describe}, node ${process.version}, first seed ${seed0}, ${round} rounds.\n\n${markdownTable(rows)}\n`;
writeFileSync(values.markdown!, md);
log(`\n${md}`);
log(`soak: report in ${values.report} and ${values.markdown}`);
if (failed.length > 0) {
  log(`soak: ${failed.length} scenario runs violated an invariant; replay each with:`);
  for (const r of failed) log(`  ${r.replay}`);
  process.exit(1);
}
