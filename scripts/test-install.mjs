#!/usr/bin/env node
// The user's path, end to end: build, `pnpm -r pack` every public package, publish the tarballs to
// a throwaway verdaccio (npm package verdaccio@6.8.0, the last that runs on Node 20) on a loopback
// port, `npm install @walship/shipper @walship/restore` by name into a fresh project outside the
// workspace, and run the examples there against an s3rver started by the test harness:
// examples/node-http on Node, the `walship` CLI restore, examples/container-entrypoint, and
// examples/deno-serve on Deno 2 (npm package deno@2); then Deno with npm: specifiers (no
// node_modules) and `pnpm add` in a second fresh project.
//
//   node scripts/test-install.mjs            # what CI's `packages` lane runs
//   node scripts/test-install.mjs --keep     # leave the temp dir (project, registry, logs) behind
//   WALSHIP_VERDACCIO_SPEC=verdaccio@x.y.z, WALSHIP_DENO_SPEC=2.x   # other versions
//
// Verdaccio serves @walship/* only from what this script publishes; every other package comes
// through its uplink, which is the registry npm is configured with on this machine
// (`npm config get registry`, read at run time). Prints "N passed, N failed" last; exits 1 on any
// failure.
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = realpathSync(fileURLToPath(new URL('..', import.meta.url)));
const keep = process.argv.includes('--keep');
const VERDACCIO = process.env.WALSHIP_VERDACCIO_SPEC || 'verdaccio@6.8.0';
const PNPM = 'pnpm@12.4.2';
const DENO = process.env.WALSHIP_DENO_SPEC || '2';
const npx = process.platform === 'win32' ? 'npx.cmd' : 'npx';
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const started = Date.now();

let passed = 0;
let failed = 0;
function check(ok, what, detail) {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? 'ok' : 'not ok'} - ${what}${!ok && detail ? `\n  ${String(detail).trimEnd().split('\n').join('\n  ')}` : ''}`);
  return ok;
}
function step(msg) {
  console.log(`# [${((Date.now() - started) / 1000).toFixed(1)} s] ${msg}`);
}
class Fatal extends Error {}
function fatal(msg) {
  throw new Fatal(msg);
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20, ...opts });
  if (r.error) fatal(`cannot run ${cmd}: ${r.error.message}`);
  return r;
}
function runAsync(cmd, args, opts) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('error', (e) => resolve({ status: null, output: `${output}cannot run ${cmd}: ${e.message}` }));
    child.on('close', (status) => resolve({ status, output }));
  });
}
function runOk(what, cmd, args, opts) {
  const r = run(cmd, args, opts);
  if (r.status !== 0) fatal(`${what} failed (exit ${r.status}): ${cmd} ${args.join(' ')}\n${r.stderr}${r.stdout}`);
  return r;
}

// Reads one note from a restored database with the installed @walship/vfs (a dependency of both).
const READ_NOTE = `import { openDatabase } from '@walship/vfs';
const [path, id] = process.argv.slice(2);
const db = await openDatabase(path);
try {
  const ok = db.pragma('integrity_check', { simple: true });
  if (ok !== 'ok') throw new Error('integrity_check: ' + ok);
  console.log(JSON.stringify(db.prepare('SELECT id, body FROM notes WHERE id = ?').get(Number(id)) ?? null));
} finally {
  db.close();
}
`;

// Deno with npm: specifiers, no package.json, no node_modules: writes one note and closes.
const DENO_NPM = `import { openReplicated } from 'npm:@walship/shipper@__VERSION__';
const url = new URL(Deno.env.get('WALSHIP_S3_URL')!);
const db = await openReplicated(Deno.env.get('DB_PATH')!, {
  s3: { bucket: url.hostname, prefix: url.pathname.slice(1), endpoint: Deno.env.get('AWS_ENDPOINT_URL_S3'), region: Deno.env.get('AWS_REGION') },
  lease: false,
  logLevel: 'warn',
});
db.exec('CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT NOT NULL, created_at TEXT NOT NULL)');
db.prepare('INSERT INTO notes(body, created_at) VALUES (?, ?)').run(Deno.args[0], new Date().toISOString());
await db.close();
`;

// @walship/vfs as @walship/restore resolves it (pnpm's strict node_modules has no top-level link).
const PNPM_VFS = `import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
const restore = createRequire(import.meta.url).resolve('@walship/restore');
const vfs = createRequire(restore).resolve('@walship/vfs');
export const { openDatabase } = await import(pathToFileURL(vfs).href);
`;

const tmp = realpathSync(mkdtempSync(join(tmpdir(), 'walship-install-')));
const children = new Set();
let s3 = null;

// A lane timeout (SIGTERM) or ^C must not leave verdaccio or an example running: they run in
// process groups of their own.
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    for (const c of children) stopGroup(c);
    console.error(`test-install: ${signal}: stopped ${children.size} child process group(s)`);
    Promise.resolve(s3?.stop())
      .catch(() => {})
      .finally(() => {
        if (!keep) rmSync(tmp, { recursive: true, force: true });
        process.exit(1);
      });
  });
}

try {
  await main();
} catch (e) {
  if (e instanceof Fatal) console.error(`test-install: ${e.message}`);
  else console.error(`test-install: ${e?.stack ?? e}`);
  failed++;
} finally {
  for (const c of children) stopGroup(c);
  if (s3) await s3.stop().catch(() => {});
  if (keep) console.log(`# kept ${tmp}`);
  else rmSync(tmp, { recursive: true, force: true });
}
console.log(`# ${((Date.now() - started) / 1000).toFixed(1)} s`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);

async function main() {
  // 1. Build and pack.
  step('build (tsc -b)');
  runOk('tsc -b', process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-b'], { cwd: root });
  const packs = join(tmp, 'tarballs');
  step(`pack (npx -y ${PNPM} -r pack)`);
  runOk('pnpm -r pack', npx, ['-y', PNPM, '-r', 'pack', '--pack-destination', packs], { cwd: root });
  const publicPackages = readdirSync(join(root, 'packages'))
    .map((d) => JSON.parse(readFileSync(join(root, 'packages', d, 'package.json'), 'utf8')))
    .filter((p) => !p.private);
  const tarballs = [];
  for (const p of publicPackages) {
    const file = join(packs, `${p.name.replace('@', '').replace('/', '-')}-${p.version}.tgz`);
    if (!check(existsSync(file), `${p.name}: pnpm -r pack wrote ${file.slice(packs.length + 1)}`)) continue;
    tarballs.push({ name: p.name, file });
    checkTarball(p, file);
  }
  if (tarballs.length !== publicPackages.length) fatal('a package was not packed');

  // 2. A throwaway registry.
  const registry = await startVerdaccio();
  step(`publish ${tarballs.length} tarballs to ${registry}`);
  const token = await addUser(registry);
  const npmrc = join(tmp, 'publish.npmrc');
  const hostPath = registry.replace(/^http:/, '');
  writeFileSync(npmrc, `registry=${registry}\n${hostPath}:_authToken=${token}\n`);
  const published = await Promise.all(
    tarballs.map((t) => runAsync(npm, ['publish', t.file, '--userconfig', npmrc, '--registry', registry, '--access', 'public', '--provenance=false'], { cwd: tmp, env: cleanEnv() })),
  );
  tarballs.forEach((t, i) => check(published[i].status === 0, `npm publish ${t.name}`, published[i].output));

  // 3. A fresh project outside the workspace, installed by name.
  const project = join(tmp, 'project');
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'walship-install-check', private: true, type: 'module' }, null, 2));
  writeFileSync(join(project, '.npmrc'), `registry=${registry}\n`);
  step('npm install @walship/shipper @walship/restore (fresh project)');
  const install = run(npm, ['install', '@walship/shipper', '@walship/restore', '--no-audit', '--no-fund', '--registry', registry], { cwd: project, env: cleanEnv() });
  if (!check(install.status === 0, 'npm install @walship/shipper @walship/restore in a fresh project', install.stderr + install.stdout)) fatal('install failed');
  for (const line of install.stderr.split('\n').filter((l) => /EBADENGINE|engine/i.test(l))) console.log(`# npm: ${line}`);
  for (const name of ['shipper', 'restore', 'vfs', 'format', 'storage', 'lease']) {
    const dir = join(project, 'node_modules', '@walship', name);
    check(existsSync(join(dir, 'dist', 'index.js')) && existsSync(join(dir, 'dist', 'index.d.ts')), `@walship/${name} installed with dist/index.js and index.d.ts`);
  }
  for (const [dir, file] of [['node-http', 'server.mjs'], ['container-entrypoint', 'entrypoint.mjs'], ['deno-serve', 'main.ts']]) {
    cpSync(join(root, 'examples', dir, file), join(project, file));
  }
  writeFileSync(join(project, 'read-note.mjs'), READ_NOTE);

  // 4. The examples against s3rver.
  const { startS3rver } = await import(pathToFileURL(join(root, 'test', 'dist', 'servers', 'index.js')).href);
  step('start s3rver');
  s3 = await startS3rver();
  const awsEnv = { AWS_ENDPOINT_URL_S3: s3.endpoint, AWS_REGION: s3.region, AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey };
  const env = (extra) => ({ ...cleanEnv(), ...awsEnv, ...extra });

  step('examples/node-http on Node');
  const nodeUrl = `s3://${s3.bucket}/examples/node-http`;
  const note = await serviceRoundTrip('node-http', process.execPath, ['server.mjs'], {
    cwd: project,
    env: env({ WALSHIP_S3_URL: nodeUrl, DB_PATH: join(project, 'data', 'node.db'), PORT: '0' }),
  });

  step('walship restore (the installed CLI)');
  const restored = join(project, 'restored', 'cli.db');
  const cli = run(join(project, 'node_modules', '.bin', 'walship'), ['restore', nodeUrl, restored], { cwd: project, env: env({}) });
  check(cli.status === 0, `npx walship restore ${nodeUrl} restored/cli.db exits 0`, cli.stderr + cli.stdout);
  check(!/NodeVersionSupportWarning|\(node:\d+\)/.test(cli.stderr), 'the CLI prints no process warning (the AWS SDK end-of-support warning is hidden)', cli.stderr);
  if (note) checkNote(project, restored, note, env({}));
  const bin = join(project, 'node_modules', '.bin', 'walship');
  const kept = run(bin, ['restore', nodeUrl, restored, '--if-db-not-exists', '--if-replica-exists'], { cwd: project, env: env({}) });
  check(kept.status === 0 && /nothing restored \(--if-db-not-exists\)/.test(kept.stderr), 'walship restore --if-db-not-exists keeps an existing file, exit 0', kept.stderr);
  const none = run(bin, ['restore', `s3://${s3.bucket}/examples/none`, join(project, 'restored', 'none.db'), '--if-replica-exists'], { cwd: project, env: env({}) });
  check(none.status === 0 && !existsSync(join(project, 'restored', 'none.db')), 'walship restore --if-replica-exists with no replica: exit 0, no file', none.stderr);

  step('examples/container-entrypoint: restore on boot, then the app');
  const bootDb = join(project, 'boot', 'notes.db');
  await serviceRoundTrip('container-entrypoint (restores)', process.execPath, ['entrypoint.mjs', './server.mjs'], {
    cwd: project,
    env: env({ WALSHIP_S3_URL: nodeUrl, DB_PATH: bootDb, PORT: '0' }),
    expectLog: 'restored',
    expectNote: note,
  });
  await serviceRoundTrip('container-entrypoint (no replica yet)', process.execPath, ['entrypoint.mjs', './server.mjs'], {
    cwd: project,
    env: env({ WALSHIP_S3_URL: `s3://${s3.bucket}/examples/first-boot`, DB_PATH: join(project, 'first', 'notes.db'), PORT: '0' }),
    expectLog: 'no replica yet: starting on a new database',
  });

  step(`examples/deno-serve on Deno (npx -y deno@${DENO})`);
  const deno = denoExe();
  const s3Port = new URL(s3.endpoint).port;
  const { freePort } = await import(pathToFileURL(join(root, 'test', 'dist', 'servers', 'index.js')).href);
  const appPort = await freePort();
  const denoDir = join(project, 'deno-data');
  mkdirSync(denoDir);
  const denoUrl = `s3://${s3.bucket}/examples/deno-serve`;
  const denoNote = await serviceRoundTrip(
    'deno-serve',
    deno,
    [
      'run',
      '--no-prompt',
      '--no-lock',
      '--node-modules-dir=manual',
      '--allow-env',
      '--allow-sys=hostname,osRelease',
      `--allow-net=127.0.0.1:${s3Port},127.0.0.1:${appPort}`,
      `--allow-read=${project}`,
      `--allow-write=${denoDir}`,
      'main.ts',
    ],
    { cwd: project, env: env({ WALSHIP_S3_URL: denoUrl, DB_PATH: join(denoDir, 'notes.db'), HOST: '127.0.0.1', PORT: String(appPort), NO_COLOR: '1' }) },
  );
  if (denoNote) {
    const denoRestored = join(project, 'restored', 'deno.db');
    const r = run(join(project, 'node_modules', '.bin', 'walship'), ['restore', denoUrl, denoRestored], { cwd: project, env: env({}) });
    check(r.status === 0, `walship restore ${denoUrl} (written from Deno) exits 0`, r.stderr + r.stdout);
    checkNote(project, denoRestored, denoNote, env({}));
  }

  step(`Deno with npm: specifiers (no node_modules; DENO_DIR and the npm registry are throwaway)`);
  const bare = join(tmp, 'deno-npm');
  mkdirSync(join(bare, 'data'), { recursive: true });
  writeFileSync(join(bare, 'write.ts'), DENO_NPM.replace('__VERSION__', publicPackages.find((p) => p.name === '@walship/shipper').version));
  const denoCache = join(tmp, 'deno-dir');
  const npmUrl = `s3://${s3.bucket}/examples/deno-npm`;
  const body = `hello from npm: specifiers ${Date.now()}`;
  const w = run(
    deno,
    [
      'run',
      '--no-prompt',
      '--no-lock',
      '--no-config',
      // Deno refuses npm versions published in the last 24 hours by default; these were just now.
      '--minimum-dependency-age=0',
      '--allow-env',
      '--allow-sys=hostname,osRelease',
      `--allow-net=127.0.0.1:${s3Port}`,
      `--allow-read=${bare},${denoCache}`,
      `--allow-write=${join(bare, 'data')}`,
      'write.ts',
      body,
    ],
    { cwd: bare, env: env({ WALSHIP_S3_URL: npmUrl, DB_PATH: join(bare, 'data', 'notes.db'), DENO_DIR: denoCache, NPM_CONFIG_REGISTRY: registry, NO_COLOR: '1' }) },
  );
  if (check(w.status === 0, 'deno run with npm:@walship/shipper@<version> writes a note and closes', w.stderr + w.stdout)) {
    const npmRestored = join(project, 'restored', 'deno-npm.db');
    const r = run(join(project, 'node_modules', '.bin', 'walship'), ['restore', npmUrl, npmRestored], { cwd: project, env: env({}) });
    check(r.status === 0, `walship restore ${npmUrl} exits 0`, r.stderr + r.stdout);
    checkNote(project, npmRestored, { id: 1, body }, env({}));
  }

  step(`pnpm add @walship/shipper @walship/restore (npx -y ${PNPM}, a second fresh project)`);
  const pnpmProject = join(tmp, 'pnpm-project');
  mkdirSync(pnpmProject);
  writeFileSync(join(pnpmProject, 'package.json'), JSON.stringify({ name: 'walship-pnpm-check', private: true, type: 'module' }, null, 2));
  const add = run(npx, ['-y', PNPM, 'add', '@walship/shipper', '@walship/restore', '--registry', registry], { cwd: pnpmProject, env: cleanEnv() });
  if (check(add.status === 0, 'pnpm add @walship/shipper @walship/restore in a fresh project', add.stderr + add.stdout)) {
    // pnpm links only direct dependencies at the top: read with @walship/restore's own vfs.
    writeFileSync(join(pnpmProject, 'read-note.mjs'), READ_NOTE.replace("from '@walship/vfs'", "from './vfs.mjs'"));
    writeFileSync(join(pnpmProject, 'vfs.mjs'), PNPM_VFS);
    const pnpmRestored = join(pnpmProject, 'restored.db');
    const r = run(join(pnpmProject, 'node_modules', '.bin', 'walship'), ['restore', nodeUrl, pnpmRestored], { cwd: pnpmProject, env: env({}) });
    check(r.status === 0, `walship restore (installed by pnpm) ${nodeUrl} exits 0`, r.stderr + r.stdout);
    if (note) checkNote(pnpmProject, pnpmRestored, note, env({}));
  }
}

// ---------------------------------------------------------------------------------------------

function checkTarball(p, file) {
  const list = runOk('tar tzf', 'tar', ['tzf', file]).stdout.split('\n').filter(Boolean);
  const has = (f) => list.includes(`package/${f}`);
  check(has('dist/index.js') && has('dist/index.d.ts'), `${p.name}: tarball has dist/index.js and dist/index.d.ts (${list.length} files)`);
  check(has('LICENSE') && has('README.md') && has('package.json'), `${p.name}: tarball has LICENSE, README.md, package.json`);
  const unwanted = list.filter((f) => /\.test\.|test-util|tsbuildinfo|testdata|\/scripts\//.test(f));
  check(unwanted.length === 0, `${p.name}: no tests, test utilities, build info or test data in the tarball`, unwanted.join('\n'));
  const manifest = runOk('tar xzf', 'tar', ['xzfO', file, 'package/package.json']).stdout;
  const m = JSON.parse(manifest);
  check(!manifest.includes('workspace:'), `${p.name}: no workspace: ranges in the packed package.json`);
  check(m.license === 'MIT' && typeof m.description === 'string' && m.engines?.node, `${p.name}: license, description and engines set`);
}

function checkNote(project, dbPath, note, env) {
  const r = run(process.execPath, ['read-note.mjs', dbPath, String(note.id)], { cwd: project, env });
  let row = null;
  try {
    row = JSON.parse(r.stdout.trim().split('\n').at(-1));
  } catch {}
  check(r.status === 0 && row?.body === note.body, `the restored ${dbPath.slice(project.length + 1)} has note ${note.id} ("${note.body}")`, r.stderr + r.stdout);
}

// Starts a service, POSTs a note (or, with expectNote, GETs one), GETs it back, sends SIGTERM and
// expects a clean exit. Returns the note it wrote, or null when a step failed.
async function serviceRoundTrip(label, cmd, args, { cwd, env, expectLog, expectNote }) {
  const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  children.add(child);
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const tail = () => out.split('\n').slice(-30).join('\n');
  try {
    const listening = await Promise.race([
      waitFor(() => parseLogs(out).find((l) => l.msg === 'listening'), 60_000),
      exited.then((x) => fatalLocal(`exited (${x.code ?? x.signal}) before listening`)),
    ]);
    if (!check(listening, `${label}: starts and listens`, tail())) return null;
    if (expectLog) check(parseLogs(out).some((l) => l.msg === expectLog), `${label}: logs "${expectLog}"`, tail());
    const base = `http://127.0.0.1:${listening.port}`;
    let note = expectNote;
    if (!note) {
      const body = `hello from ${label} ${Date.now()}`;
      const res = await fetch(`${base}/notes`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ body }) });
      const created = await res.json();
      if (!check(res.status === 201 && created.body === body && created.txid >= 1, `${label}: POST /notes answers 201 once durable (txid ${created.txid})`, JSON.stringify(created))) return null;
      note = { id: created.id, body };
    }
    const got = await fetch(`${base}/notes/${note.id}`);
    const row = await got.json();
    check(got.status === 200 && row.body === note.body, `${label}: GET /notes/${note.id} returns the note`, JSON.stringify(row));
    const metrics = await fetch(`${base}/metrics`);
    const text = await metrics.text();
    check(metrics.status === 200 && /^walship_transactions_durable_total(\{[^}]*\})? \d+$/m.test(text), `${label}: GET /metrics serves Prometheus text (walship_transactions_durable_total)`, text.slice(0, 300));
    process.kill(child.pid, 'SIGTERM');
    const x = await Promise.race([exited, waitFor(() => false, 30_000).then(() => ({ code: 'timeout' }))]);
    check(x.code === 0, `${label}: SIGTERM closes the server and the database, exit 0 (got ${x.code ?? x.signal})`, tail());
    check(parseLogs(out).some((l) => l.msg === 'closed'), `${label}: logs "closed" after the flush`, tail());
    return note;
  } catch (e) {
    check(false, `${label}: ${e.message}`, tail());
    return null;
  } finally {
    stopGroup(child);
    children.delete(child);
  }
}

function fatalLocal(msg) {
  throw new Error(msg);
}

function parseLogs(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line));
    } catch {}
  }
  return out;
}

async function waitFor(fn, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const v = fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  return fn();
}

function stopGroup(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {}
}

// The variables of this process, less npm's (npm run sets npm_config_* that would point the
// project's npm at the workspace) and any AWS_* of the machine.
function cleanEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(npm_|AWS_)/i.test(k)) env[k] = v;
  return env;
}

async function startVerdaccio() {
  const upstream = run(npm, ['config', 'get', 'registry'], { cwd: tmp }).stdout.trim();
  if (!/^https?:\/\//.test(upstream)) fatal(`npm config get registry gave '${upstream}': the uplink for third-party packages needs a registry URL`);
  const { freePort } = await import(pathToFileURL(join(root, 'test', 'dist', 'servers', 'index.js')).href);
  const port = await freePort();
  const dir = join(tmp, 'verdaccio');
  mkdirSync(dir);
  const config = join(dir, 'config.yaml');
  writeFileSync(
    config,
    [
      `storage: ${JSON.stringify(join(dir, 'storage'))}`,
      'auth:',
      '  htpasswd:',
      `    file: ${JSON.stringify(join(dir, 'htpasswd'))}`,
      'uplinks:',
      '  upstream:',
      `    url: ${JSON.stringify(upstream)}`,
      '    timeout: 60s',
      'packages:',
      "  '@walship/*':",
      '    access: $all',
      '    publish: $authenticated',
      "  '**':",
      '    access: $all',
      '    publish: $authenticated',
      '    proxy: upstream',
      'server:',
      '  keepAliveTimeout: 60',
      'logs: { type: stdout, format: pretty, level: warn }',
      'publish:',
      '  allow_offline: true',
      '',
    ].join('\n'),
  );
  step(`start verdaccio (npx -y ${VERDACCIO}) on 127.0.0.1:${port}, uplink: the configured npm registry`);
  const child = spawn(npx, ['-y', VERDACCIO, '--config', config, '--listen', `127.0.0.1:${port}`], {
    cwd: dir,
    env: cleanEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  children.add(child);
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  let exit = null;
  child.on('exit', (code, signal) => (exit = { code, signal }));
  const registry = `http://127.0.0.1:${port}/`;
  const deadline = Date.now() + 180_000; // the first npx run downloads verdaccio
  while (Date.now() < deadline) {
    if (exit) fatal(`verdaccio (npx -y ${VERDACCIO}) exited (${exit.code ?? exit.signal}) before answering on ${registry}:\n${out.split('\n').slice(-30).join('\n')}`);
    try {
      const r = await fetch(`${registry}-/ping`);
      if (r.ok) {
        check(true, `verdaccio ${VERDACCIO.split('@')[1]} answers on ${registry}`);
        return registry;
      }
    } catch {}
    await new Promise((r) => setTimeout(r, 250));
  }
  fatal(`verdaccio (npx -y ${VERDACCIO}) did not answer on ${registry} within 180 s:\n${out.split('\n').slice(-30).join('\n')}`);
}

// A throwaway user on the throwaway registry (the CouchDB user route npm adduser uses).
async function addUser(registry) {
  const name = 'walship-ci';
  const res = await fetch(`${registry}-/user/org.couchdb.user:${name}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name, password: `pw-${process.pid}-${Date.now()}`, type: 'user', roles: [] }),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok || typeof body.token !== 'string') fatal(`cannot create a user on the local registry (HTTP ${res.status}): ${JSON.stringify(body)}`);
  return body.token;
}

function denoExe() {
  const probe = run(npx, ['-y', `deno@${DENO}`, 'eval', '--no-config', 'console.log(JSON.stringify({ exe: Deno.execPath(), version: Deno.version.deno }))'], {
    cwd: tmp,
    env: { ...cleanEnv(), NO_COLOR: '1' },
  });
  let info;
  try {
    info = JSON.parse(probe.stdout.trim().split('\n').at(-1));
  } catch {
    fatal(`npx -y deno@${DENO} did not run (status ${probe.status}):\n${probe.stderr}${probe.stdout}`);
  }
  console.log(`# deno ${info.version} at ${info.exe}`);
  return info.exe;
}
