// The fast scenario set (test/src/scenarios): every named scenario with its fast trial count, S3
// faults at 20%, against s3rver and dynalite behind fault proxies. Each scenario must do what it
// claims (kill points, faults) and break no invariant. A failure prints the seed and the command
// that replays it. WALSHIP_SCENARIO_SEED picks another seed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { SCENARIOS } from './scenarios/cases.js';
import { runScenario, startServers, type RunningServers } from './scenarios/run.js';

const SEED = Number(process.env.WALSHIP_SCENARIO_SEED ?? 20261126);
let servers: RunningServers;
let killPoints = 0;

before(async () => {
  servers = await startServers();
});

after(async () => {
  await servers?.stop();
});

for (const scenario of SCENARIOS.filter((s) => s.fastTrials > 0)) {
  test(`scenario ${scenario.name}: ${scenario.summary}`, { timeout: 1_500_000 }, async (t) => {
    const seed = SEED + scenario.name.length * 101;
    const r = await runScenario(servers, scenario, { seed, trials: scenario.fastTrials, faultRate: 0.2, log: (l) => t.diagnostic(l) });
    killPoints += r.killPoints;
    t.diagnostic(`${r.trials} trials, ${r.killPoints} kill points, ${r.faults} faults, ${r.restores} restores, ${r.transactionsChecked} transactions checked, ${r.seconds} s${r.notes.length ? `; ${r.notes.join('; ')}` : ''}`);
    assert.deepEqual(r.violations, [], `invariants broken; replay: ${r.replay}${r.error ? `\n${r.error}` : ''}`);
    assert.ok(r.trials >= scenario.fastTrials, `ran ${r.trials} of ${scenario.fastTrials} trials`);
    assert.ok(r.transactionsChecked > 0, 'checked transactions against the oracle');
    if (scenario.expects?.killPoints) assert.ok(r.killPoints > 0, 'killed the writer');
    if (scenario.expects?.faults) assert.ok(r.faults > 0, 'injected faults');
  });
}

test('the fast set covers at least 200 kill points', () => {
  assert.ok(killPoints >= 200, `kill points: ${killPoints}`);
});
