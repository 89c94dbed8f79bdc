#!/usr/bin/env node
// Runs the Deno 2 smoke test (test/deno/*.ts) against the built package, with the deno binary from
// the npm package `deno` (fetched by `npx -y deno@<spec>`; no separate install needed).
//
//   node scripts/test-deno.mjs            # deno@2
//   node scripts/test-deno.mjs --deno 2.9  # another npm spec
//
// Permissions are the minimum the test needs (see the header of test/deno/smoke.ts): read+write on a
// fresh temp dir, read on sqlite-wasm's sqlite3.wasm, and the one env var naming the temp dir.
// Exits with deno's status (non-zero when a test fails).
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
let spec = process.env.WALSHIP_DENO_SPEC || '2';
const extra = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--deno') spec = args[++i] ?? spec;
  else if (a.startsWith('--deno=')) spec = a.slice('--deno='.length);
  else extra.push(a);
}

const npx = process.platform === 'win32' ? 'npx.cmd' : 'npx';

function fail(msg) {
  console.error(`test-deno: ${msg}`);
  process.exit(1);
}

const entry = join(root, 'packages', 'vfs', 'dist', 'index.js');
if (!existsSync(entry)) fail(`${relative(root, entry)} is missing: build first (npx -y pnpm@12.4.2 install, or tsc -b)`);

// The wasm file sqlite-wasm reads at startup, as Deno will see it (pnpm links resolve to .pnpm/).
let wasm;
try {
  const req = createRequire(join(root, 'packages', 'vfs', 'package.json'));
  wasm = realpathSync(req.resolve('@sqlite.org/sqlite-wasm/sqlite3.wasm'));
} catch (e) {
  fail(`cannot find @sqlite.org/sqlite-wasm from packages/vfs (install first): ${e.message}`);
}

// One npx call fetches (or reuses) deno@spec and reports its binary and version; later calls run
// the binary directly.
const probe = spawnSync(
  npx,
  ['-y', `deno@${spec}`, 'eval', '--no-config', 'console.log(JSON.stringify({ exe: Deno.execPath(), version: Deno.version.deno, v8: Deno.version.v8 }))'],
  { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } },
);
let info;
try {
  info = JSON.parse(probe.stdout.trim().split('\n').at(-1));
} catch {
  fail(`npx -y deno@${spec} did not run (status ${probe.status}):\n${probe.stderr}${probe.stdout}`);
}
const wantMajor = spec.match(/^\d+/)?.[0];
if (wantMajor && info.version.split('.')[0] !== wantMajor) fail(`asked for deno@${spec} but got deno ${info.version}`);
console.log(`# test-deno: deno ${info.version} (v8 ${info.v8}) at ${info.exe}`);

const tmp = realpathSync(mkdtempSync(join(tmpdir(), 'walship-deno-')));

function runDeno(label, flags, env) {
  console.log(`# ${label}: deno ${flags.join(' ')}`);
  const r = spawnSync(info.exe, flags, { cwd: root, stdio: 'inherit', env: { ...process.env, WALSHIP_DENO_TMP: tmp, NO_COLOR: '1', ...env } });
  if (r.error) console.error(`test-deno: cannot run ${info.exe}: ${r.error.message}`);
  if (r.signal) console.error(`test-deno: deno was killed by ${r.signal}`);
  return r.status ?? 1;
}

let status = 1;
try {
  // 1. The VFS smoke test with the minimum: read+write on the temp dir, read on sqlite3.wasm.
  status = runDeno('smoke', [
    'test',
    '--no-prompt',
    '--no-lock',
    '--node-modules-dir=manual',
    '--allow-env=WALSHIP_DENO_TMP',
    `--allow-read=${tmp},${wasm}`,
    `--allow-write=${tmp}`,
    ...extra,
    'test/deno/smoke.ts',
  ]);
  // 2. Replication to an s3rver started here, then checked from Node: the bucket rebuilds the file.
  if (status === 0) status = await replicationLane();
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(status);

async function replicationLane() {
  const servers = join(root, 'test', 'dist', 'servers', 'index.js');
  const replicaUtil = join(root, 'test', 'dist', 'util', 'replica.js');
  if (!existsSync(servers) || !existsSync(replicaUtil)) fail('test/dist is missing: build first (tsc -b)');
  let zstdWasm;
  try {
    const req = createRequire(join(root, 'packages', 'format', 'package.json'));
    // The binding reads zstd.wasm next to whichever build (esm or common) the runtime picked.
    zstdWasm = realpathSync(join(req.resolve('@bokuweb/zstd-wasm'), '..', '..'));
  } catch (e) {
    fail(`cannot find @bokuweb/zstd-wasm's zstd.wasm from packages/format: ${e.message}`);
  }
  const { startS3rver } = await import(pathToFileURL(servers).href);
  const { rebuildFromReplica } = await import(pathToFileURL(replicaUtil).href);
  const { createS3Storage } = await import(pathToFileURL(join(root, 'packages', 'storage', 'dist', 'index.js')).href);
  const { loadFormat } = await import(pathToFileURL(join(root, 'packages', 'format', 'dist', 'index.js')).href);
  const server = await startS3rver();
  try {
    const port = new URL(server.endpoint).port;
    const s3 = { endpoint: server.endpoint, bucket: server.bucket, region: server.region, accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey, prefix: 'deno/smoke' };
    const code = runDeno(
      'replicate',
      [
        'test',
        // tsc checked these packages; Deno would re-check the linked workspace packages' .d.ts
        // files as local modules and resolve their './x.js' imports to JavaScript.
        '--no-check',
        '--no-prompt',
        '--no-lock',
        '--node-modules-dir=manual',
        '--allow-env',
        '--allow-sys=hostname,osRelease',
        `--allow-net=127.0.0.1:${port}`,
        // The shipper's encoder worker: Deno checks read access for every module a Worker loads
        // (its own file and the packages it imports), unlike the main module's static imports.
        `--allow-read=${tmp},${wasm},${zstdWasm},${join(root, 'packages')},${join(root, 'node_modules')}`,
        `--allow-write=${tmp}`,
        ...extra,
        'test/deno/replicate.ts',
      ],
      { WALSHIP_DENO_S3: JSON.stringify(s3) },
    );
    if (code !== 0) return code;
    const path = readFileSync(join(tmp, 'replicated.done'), 'utf8');
    await loadFormat();
    const storage = createS3Storage({ bucket: server.bucket, endpoint: server.endpoint, region: server.region, forcePathStyle: true, credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey } });
    const rebuilt = await rebuildFromReplica(storage, 'deno/smoke');
    const same = Buffer.from(rebuilt.bytes).equals(readFileSync(path));
    console.log(`${same ? 'ok' : 'not ok'} - the bucket written from Deno rebuilds the database byte for byte in Node (txid ${rebuilt.txid}, ${rebuilt.objects.length} objects)`);
    return same ? 0 : 1;
  } finally {
    await server.stop();
  }
}
