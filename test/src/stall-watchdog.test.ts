// The stall watchdog that scripts/test.mjs loads into every test file's process: a file whose main
// thread spins gets its stack printed and ends with SIGKILL, instead of running on silently
// until the runner's 30-minute timeout.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { pathToFileURL } from 'node:url';

const dir = mkdtempSync(join(tmpdir(), 'walship-stall-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function run(file: string, env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  const watchdog = new URL('./util/stall-watchdog.js', import.meta.url).href;
  // Without NODE_TEST_CONTEXT, which would make the child's runner refuse to run files.
  const { NODE_TEST_CONTEXT: _, ...inherited } = process.env;
  // Its own process group: the bound below must end the runner and the file's process under it.
  const child = spawn(process.execPath, ['--import', watchdog, '--test', '--test-reporter=tap', file], { env: { ...inherited, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  // Without a working watchdog the spinning child would run forever: bounded here.
  const bound = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 60_000);
  return new Promise((resolve) =>
    child.on('close', (code) => {
      clearTimeout(bound);
      resolve({ code, out });
    }),
  );
}

test('a test file that spins after its tests: the watchdog prints the spinning frame and ends the file with SIGKILL', async () => {
  const file = join(dir, 'spin.test.mjs');
  writeFileSync(file, ["import { test } from 'node:test';", "test('passes', () => {});", 'setTimeout(function spinForever() { for (;;) {} }, 2500);', ''].join('\n'));
  // It spins once the worker is up (it starts after WALSHIP_STALL_MS of the process's life).
  const { code, out } = await run(file, { WALSHIP_STALL_MS: '1500' });
  assert.notEqual(code, 0, out);
  assert.match(out, /stall-watchdog: .*spin\.test\.mjs: the main thread has not run its event loop for \d+ s \(WALSHIP_STALL_MS=1500\)/);
  assert.ok(out.includes(`at spinForever (${pathToFileURL(file).href}:3:`), `the stack names the spinning function and its line:\n${out}`);
  assert.match(out, /stack printed; killing process \d+ \(SIGKILL\)/);
  assert.match(out, /signal: 'SIGKILL'/);
});

test('WALSHIP_STALL_MS=0 turns it off, and a file that only waits on timers is left alone, with its clocks and setInterval stubbed', async () => {
  const file = join(dir, 'idle.test.mjs');
  // 7 s: the worker starts after WALSHIP_STALL_MS (3 s) and checks a healthy heartbeat (1 s) for 4 s.
  // Once the worker is up, the file turns Date.now and performance.now back 10 minutes and replaces
  // setInterval, as tests do (lease-dynamo's clock jump once made a heartbeat written in wall-clock
  // time look 600 s stale, and the watchdog killed a healthy file).
  writeFileSync(
    file,
    [
      "import { test } from 'node:test';",
      'const realNow = Date.now;',
      'const realPerf = performance.now.bind(performance);',
      'setTimeout(() => {',
      '  Date.now = () => realNow() - 600_000;',
      '  performance.now = () => realPerf() - 600_000;',
      '  globalThis.setInterval = () => ({ unref() {}, ref() {} });',
      '}, 3500);',
      "test('waits 7 s on a timer', () => new Promise((r) => setTimeout(r, 7000)));",
      '',
    ].join('\n'),
  );
  const watched = await run(file, { WALSHIP_STALL_MS: '3000' });
  assert.equal(watched.code, 0, watched.out);
  assert.match(watched.out, /# pass 1/);
  assert.doesNotMatch(watched.out, /stall-watchdog/);
  const spin = join(dir, 'spin-briefly.test.mjs');
  writeFileSync(spin, ["import { test } from 'node:test';", "test('blocks 2.5 s', () => { const end = Date.now() + 2500; while (Date.now() < end); });", ''].join('\n'));
  const off = await run(spin, { WALSHIP_STALL_MS: '0' });
  assert.equal(off.code, 0, off.out);
  assert.match(off.out, /# pass 1/);
  assert.doesNotMatch(off.out, /stall-watchdog/);
});
