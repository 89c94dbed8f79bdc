#!/usr/bin/env node
// Runs the compiled test suite (scripts/test.mjs) under other Node versions, each fetched as the
// npm package `node` (`npx -y node@<spec>` ships the real binary; no nvm or system install).
//
//   node scripts/test-runtimes.mjs --node 22                 # whole suite on the latest 22.x
//   node scripts/test-runtimes.mjs --node 22 --node 24 wal/   # both, only files matching "wal/"
//   node scripts/test-runtimes.mjs                            # same as --node 22 --node 24
//
// Other arguments go to scripts/test.mjs unchanged (substring filters, `--flags` for node --test).
// Build first (`tsc -b`): this runs dist/, it does not compile. Each child is checked to really be
// the asked-for major (test.mjs prints its version and fails on a mismatch). Exit status is non-zero
// when any version's run fails.
//
// `npx -y node@<spec>` fetches the binary and reports its path; the suite then runs that binary
// with its directory first on PATH (as npx would). Its npx cache lives under $HOME, which for root
// is mode 700: tests that drop privileges (spawn process.execPath as uid 65534) could not execute
// it, unlike the system Node in /usr/bin. So a binary that other users cannot reach is run from a
// world-executable copy in a fresh temp dir, removed afterwards.
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { constants, tmpdir } from 'node:os';

const root = fileURLToPath(new URL('..', import.meta.url));
const npx = process.platform === 'win32' ? 'npx.cmd' : 'npx';

const specs = [];
const passthrough = [];
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--node') {
    const v = argv[++i];
    if (!v) usage('--node needs a version, e.g. --node 22');
    specs.push(v);
  } else if (a.startsWith('--node=')) specs.push(a.slice('--node='.length));
  else if (a === '-h' || a === '--help') usage();
  else passthrough.push(a);
}
if (specs.length === 0) specs.push('22', '24');

function usage(msg) {
  if (msg) console.error(`test-runtimes: ${msg}`);
  console.error('usage: node scripts/test-runtimes.mjs [--node <version>]... [test.mjs filters and flags]');
  process.exit(msg ? 2 : 0);
}

/** `npx -y node@spec` once, to fetch it and learn what it really is. */
function probe(spec) {
  const r = spawnSync(
    npx,
    ['-y', `node@${spec}`, '-p', 'JSON.stringify({ version: process.version, exe: process.execPath, modules: process.versions.modules })'],
    { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const last = (r.stdout ?? '').trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(last);
  } catch {
    throw new Error(`npx -y node@${spec} did not run (status ${r.status}${r.error ? `, ${r.error.message}` : ''}):\n${r.stderr}${r.stdout}`);
  }
}

/** Compiled files (tests and their helpers) that import `module`. */
function filesImporting(module) {
  const re = new RegExp(`(?:\\bfrom\\s*|\\brequire\\(\\s*|\\bimport\\(\\s*)['"]${module}['"]`);
  const out = [];
  const walk = (dir) => {
    let names;
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(dir, n);
      if (n === 'node_modules') continue;
      if (statSync(p).isDirectory()) walk(p);
      else if (n.endsWith('.js') && re.test(readFileSync(p, 'utf8'))) out.push(p.slice(root.length));
    }
  };
  for (const pkg of readdirSync(join(root, 'packages'))) walk(join(root, 'packages', pkg, 'dist'));
  walk(join(root, 'test', 'dist'));
  return out;
}

/**
 * Warns (does not fail) when better-sqlite3, a V8-ABI addon compiled by the install for the system
 * Node only, is imported by the tests but cannot open a database on this Node. (Headers for other
 * Node versions cannot be fetched here, so it cannot be rebuilt for them.)
 */
function preflightAddons(spec, info) {
  // test/util/oracle-sqlite.js falls back to node:sqlite when the addon does not load.
  const users = filesImporting('better-sqlite3').filter((f) => !f.endsWith('oracle-sqlite.js'));
  if (users.length === 0) return;
  const r = spawnSync(npx, ['-y', `node@${spec}`, '-e', "new (require('better-sqlite3'))(':memory:').close()"], {
    cwd: join(root, 'test'),
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (r.status === 0) return;
  const lines = r.stderr.trim().split('\n');
  const at = lines.findIndex((l) => /^\w*Error\b/.test(l));
  const why = (at >= 0 ? lines.slice(at, at + 3) : lines.slice(-3)).join(' ').slice(0, 600);
  console.log(
    `# test-runtimes: WARNING better-sqlite3 does not load on node ${info.version} (ABI ${info.modules}); it was compiled for the ` +
      `install's Node (${process.version}, ABI ${process.versions.modules}). Files that load it will fail here: ${users.join(', ')}\n#   ${why}`,
  );
}

/** True when a user with no special rights can execute `file` (o+x on it and every directory above). */
function othersCanExecute(file) {
  let p = file;
  for (;;) {
    try {
      if ((statSync(p).mode & 0o001) === 0) return false;
    } catch {
      return false;
    }
    const up = dirname(p);
    if (up === p) return true;
    p = up;
  }
}

/** The binary to run: `exe` itself, or a world-executable copy (see the header). */
function runnableNode(exe, version) {
  if (othersCanExecute(exe)) return { bin: exe, cleanup: () => {} };
  const dir = mkdtempSync(join(tmpdir(), `walship-node-${version}-`));
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  try {
    chmodSync(dir, 0o755);
    mkdirSync(join(dir, 'bin'), { mode: 0o755 });
    const bin = join(dir, 'bin', 'node');
    copyFileSync(exe, bin);
    chmodSync(bin, 0o755);
    if (!othersCanExecute(bin)) {
      console.log(`# test-runtimes: note: ${tmpdir()} is not reachable by other users either; running ${exe} in place`);
      cleanup();
      return { bin: exe, cleanup: () => {} };
    }
    console.log(`# test-runtimes: ${exe} is not executable by other users; running a copy at ${bin}`);
    return { bin, cleanup };
  } catch (e) {
    cleanup();
    console.log(`# test-runtimes: note: could not stage a world-executable copy (${e.message}); running ${exe} in place`);
    return { bin: exe, cleanup: () => {} };
  }
}

function run(cmd, args, env) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], env });
    const forward = (sig) => child.kill(sig);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    child.on('error', (e) => {
      console.error(`test-runtimes: cannot start ${cmd}: ${e.message}`);
    });
    child.on('close', (code, signal) => {
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      resolve(signal ? 128 + (constants.signals[signal] ?? 0) : (code ?? 1));
    });
  });
}

const results = [];
for (const spec of specs) {
  const major = spec.match(/^v?(\d+)/)?.[1];
  const started = Date.now();
  let info;
  try {
    info = probe(spec);
  } catch (e) {
    console.error(`test-runtimes: ${e.message}`);
    results.push({ spec, version: '?', status: 1, seconds: (Date.now() - started) / 1000 });
    continue;
  }
  if (major && info.version.slice(1).split('.')[0] !== major) {
    console.error(`test-runtimes: asked for node@${spec} but npx ran ${info.version} (${info.exe})`);
    results.push({ spec, version: info.version, status: 1, seconds: (Date.now() - started) / 1000 });
    continue;
  }
  console.log(`# test-runtimes: node@${spec} is ${info.version} at ${info.exe}`);
  preflightAddons(spec, info);
  const node = runnableNode(info.exe, info.version);
  const env = {
    ...process.env,
    PATH: [dirname(node.bin), process.env.PATH].filter(Boolean).join(process.platform === 'win32' ? ';' : ':'),
    ...(major ? { WALSHIP_EXPECT_NODE_MAJOR: major } : {}),
  };
  let status;
  try {
    status = await run(node.bin, [join(root, 'scripts', 'test.mjs'), ...passthrough], env);
  } finally {
    node.cleanup();
  }
  const seconds = (Date.now() - started) / 1000;
  console.log(`# test-runtimes: node ${info.version}: ${status === 0 ? 'PASS' : `FAIL (exit ${status})`} in ${seconds.toFixed(1)} s`);
  results.push({ spec, version: info.version, status, seconds });
}

if (results.length > 1) {
  console.log('# test-runtimes summary:');
  for (const r of results) console.log(`#   node ${r.version} (asked ${r.spec}): ${r.status === 0 ? 'PASS' : `FAIL (exit ${r.status})`}, ${r.seconds.toFixed(1)} s`);
}
process.exit(results.every((r) => r.status === 0) ? 0 : 1);
