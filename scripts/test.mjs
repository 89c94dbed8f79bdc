#!/usr/bin/env node
// Runs every compiled test file (`*.test.js` under packages/*/dist and test/dist) with node's test
// runner. Node 20's `--test` takes no globs, so the files are found here. Arguments filter by substring.
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

// Which runtime runs the suite (node --test spawns each file with this same binary). The
// cross-version runner (scripts/test-runtimes.mjs) sets WALSHIP_EXPECT_NODE_MAJOR to have it checked.
console.log(`# test.mjs: node ${process.version} (${process.platform}-${process.arch}) at ${process.execPath}`);
const expectMajor = process.env.WALSHIP_EXPECT_NODE_MAJOR;
if (expectMajor && process.versions.node.split('.')[0] !== expectMajor) {
  console.error(`test.mjs: expected node ${expectMajor}.x but this is node ${process.version} (${process.execPath})`);
  process.exit(1);
}
const filters = process.argv.slice(2).filter((a) => !a.startsWith('-'));
// WALSHIP_TEST_EXCLUDE=a,b leaves out the files whose path contains any of them (CI runs the
// scenario fast set once, on Node 20, and the rest of the suite on every Node).
const excludes = (process.env.WALSHIP_TEST_EXCLUDE ?? '').split(',').map((s) => s.trim()).filter(Boolean);
const passthrough = process.argv.slice(2).filter((a) => a.startsWith('-'));

function walk(dir, out) {
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const files = [];
for (const pkg of readdirSync(join(root, 'packages'))) walk(join(root, 'packages', pkg, 'dist'), files);
walk(join(root, 'test', 'dist'), files);
const chosen = files
  .map((f) => relative(root, f))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .filter((f) => !excludes.some((s) => f.includes(s)))
  .sort();
if (excludes.length > 0) console.log(`# test.mjs: leaving out files matching ${excludes.join(', ')} (WALSHIP_TEST_EXCLUDE)`);
if (chosen.length === 0) {
  console.error(`no test files matched ${filters.join(' ') || '(all)'}; run the build first (tsc -b)`);
  process.exit(1);
}
// Two files at a time. Most files wait on servers and timers, so one at a time left the cores
// idle: the Node 20 lane of CI took 1,795-1,844 s that way. Node's runner sorts the files by path
// whatever order they are given in, so with --test-concurrency=2 the scenario fast set
// (test/dist/scenarios.test.js, 8-15 minutes, busy on both cores) started two thirds of the way in
// and ran on alone at the end (1,665 s). So the fast set runs in a runner of its own from the start,
// beside a second runner that takes the other files one at a time: the second's output streams, the
// fast set's follows when both are done, then one summary of both ("# pass N" ...). Every file
// starts its own servers on random ports, so two at once share nothing. WALSHIP_TEST_SERIAL=1 runs
// one file at a time in one runner.
// A watchdog per file: node's runner cancels a file whose process has not exited this long after
// it started (and names it), then runs the rest. In one CI run on Node 20.20.2 a file's process
// finished every test and then never exited (a TCP handle that would not close); the lane waited
// until its own 45-minute bound, with nothing said about which file. The longest file, the scenario
// fast set, takes 8-15 minutes (longer beside CI's other lanes). The value is also the default
// timeout of a test that sets none. Node 20 and 22 cancel such a file (checked with a file that
// keeps a server open); Node 24.21's runner still waits for it.
const FILE_TIMEOUT_MS = 30 * 60 * 1000;
const timeout = passthrough.some((a) => a.startsWith('--test-timeout')) ? [] : [`--test-timeout=${FILE_TIMEOUT_MS}`];
const runnerArgs = (files, concurrency) => ['--test', `--test-concurrency=${concurrency}`, ...timeout, ...passthrough, ...files];
const serial = process.env.WALSHIP_TEST_SERIAL === '1';
const scenarios = chosen.filter((f) => f.endsWith('scenarios.test.js'));
const rest = chosen.filter((f) => !scenarios.includes(f));

if (serial || scenarios.length === 0 || rest.length === 0) {
  const concurrency = serial ? 1 : 2;
  if (concurrency > 1 && chosen.length > 1) console.log('# test.mjs: two files at a time (WALSHIP_TEST_SERIAL=1: one at a time)');
  const result = spawnSync(process.execPath, runnerArgs(chosen, concurrency), { cwd: root, stdio: 'inherit' });
  process.exit(result.status ?? 1);
}

console.log(`# test.mjs: ${scenarios.join(', ')} in a runner of its own beside the other ${rest.length} files (its output follows theirs; WALSHIP_TEST_SERIAL=1: one file at a time)`);
// Children write to pipes, where node's runner picks TAP; a terminal keeps its spec reporter.
const reporter = process.stdout.isTTY && !passthrough.some((a) => a.startsWith('--test-reporter')) ? ['--test-reporter=spec', '--test-reporter-destination=stdout'] : [];
const SUMMARY = /^(?:# |\u2139 )(tests|suites|pass|fail|cancelled|skipped|todo) (\d+)$/;

/** Runs one node --test; `echo` streams its output, otherwise it is kept. Resolves with its exit status, summary and kept output. */
function runner(files, concurrency, echo) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...reporter, ...runnerArgs(files, concurrency)], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    const kept = [];
    const summary = {};
    let partial = '';
    const scan = (text) => {
      const lines = (partial + text).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        const m = SUMMARY.exec(line.replace(/\x1b\[[0-9;]*m/g, '').trim());
        if (m) summary[m[1]] = Number(m[2]);
      }
    };
    child.stdout.on('data', (d) => {
      scan(d.toString());
      if (echo) process.stdout.write(d);
      else kept.push(d);
    });
    child.stderr.on('data', (d) => (echo ? process.stderr.write(d) : kept.push(d)));
    child.on('error', (e) => kept.push(Buffer.from(`test.mjs: could not start node --test: ${e.message}\n`)));
    child.on('close', (code, signal) => {
      scan('\n');
      resolve({ status: code ?? (signal ? 1 : 0), signal, summary, kept });
    });
  });
}

const [others, fast] = await Promise.all([runner(rest, 1, true), runner(scenarios, 1, false)]);
for (const chunk of fast.kept) process.stdout.write(chunk);
const keys = ['tests', 'pass', 'fail', 'cancelled', 'skipped', 'todo'];
console.log(`# test.mjs: both runners done (other files: exit ${others.status}; scenario fast set: exit ${fast.status}${fast.signal ? `, ${fast.signal}` : ''})`);
for (const k of keys) console.log(`# ${k} ${(others.summary[k] ?? 0) + (fast.summary[k] ?? 0)}`);
// A runner that failed without a summary line (it crashed) still fails the run.
process.exit(others.status !== 0 || fast.status !== 0 ? 1 : 0);
