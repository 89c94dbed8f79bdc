#!/usr/bin/env node
// Runs every compiled test file (`*.test.js` under packages/*/dist and test/dist) with node's test
// runner. Node 20's `--test` takes no globs, so the files are found here. Arguments filter by substring.
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';

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
// Two files at a time (--test-concurrency=2). Node's runner sorts the files by path whatever order
// they are given in (so the scenario fast set, test/dist/scenarios.test.js, 8-15 minutes, runs
// between restore-* and servers/). Most files wait on servers and timers, so one at a time left the
// cores idle: CI took 1,795-1,844 s that way, 1,691 s with two at once. Running the fast set in a
// runner of its own from the start, beside the other files, measured no better (1,718 s): with three
// Node lanes at once CI keeps both cores busy (vmstat: 0-4% idle), so only less work makes it
// faster. Every file starts its own servers on random ports, so two at once share nothing.
// WALSHIP_TEST_SERIAL=1 runs one file at a time.
const serial = process.env.WALSHIP_TEST_SERIAL === '1';
if (!serial && chosen.length > 1) console.log('# test.mjs: two files at a time (WALSHIP_TEST_SERIAL=1: one at a time)');
// A watchdog per file: node's runner cancels a file whose process has not exited this long after
// it started (and names it), then runs the rest. In one CI run on Node 20.20.2 a file's process
// finished every test and then never exited (a TCP handle that would not close); the lane waited
// until its own 45-minute bound, with nothing said about which file. The longest file, the scenario
// fast set, takes 8-15 minutes (longer beside CI's other lanes). The value is also the default
// timeout of a test that sets none. Node 20 and 22 cancel such a file (checked with a file that
// keeps a server open); Node 24.21's runner still waits for it.
const FILE_TIMEOUT_MS = 30 * 60 * 1000;
const timeout = passthrough.some((a) => a.startsWith('--test-timeout')) ? [] : [`--test-timeout=${FILE_TIMEOUT_MS}`];
// Every file's process loads the stall watchdog (test/src/util/stall-watchdog.ts): a main thread
// that stops turning its event loop for 5 minutes gets its stack printed and the file is killed,
// instead of spinning silently until the timeout above.
const watchdog = ['--import', pathToFileURL(join(root, 'test', 'dist', 'util', 'stall-watchdog.js')).href];
const result = spawnSync(process.execPath, ['--test', `--test-concurrency=${serial ? 1 : 2}`, ...timeout, ...watchdog, ...passthrough, ...chosen], {
  cwd: root,
  stdio: 'inherit',
});
process.exit(result.status ?? 1);
