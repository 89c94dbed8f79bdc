// The CLI as a container entrypoint or a supervisor runs it (issue 14): the compiled bin in a child
// process against s3rver. Restore's --if-db-not-exists and --if-replica-exists, exit 4 for "no
// replica", errors as one JSON object on stdout with --json, progress lines, `ls` of a bucket
// without a prefix, missing credentials, `follow` as a process, and --help without dependencies.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { loadFormat } from '@walship/format';
import { openReplicated } from '@walship/shipper';
import { startS3rver, type S3Server } from './servers/index.js';
import { Workload, assertMatchesOracle, newPrefix, s3Options, sleep } from './util/restore-harness.js';

const DIST = fileURLToPath(new URL('../../packages/restore/dist/', import.meta.url));
const CLI = join(DIST, 'cli.js');

let server: S3Server;
let dir: string;
let prefix: string;
let url: string;
let work: Workload;
let env: NodeJS.ProcessEnv;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function walship(args: string[], extraEnv: NodeJS.ProcessEnv = {}, cli = CLI): Run {
  const r = spawnSync(process.execPath, [cli, ...args], { env: { ...env, ...extraEnv }, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function expectExit(r: Run, code: number, what: string): void {
  assert.equal(r.status, code, `${what}: exit ${r.status}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
}

interface JsonError {
  ok: false;
  exitCode: number;
  error: { code: string; message: string; details: Record<string, unknown> };
}

/** stdout is exactly one JSON error object, its exit code the process's, and stderr has the human line. */
function jsonError(r: Run, code: string, exitCode: number): JsonError {
  expectExit(r, exitCode, code);
  const e = JSON.parse(r.stdout) as JsonError;
  assert.equal(e.ok, false);
  assert.equal(e.exitCode, exitCode);
  assert.equal(e.error.code, code);
  assert.ok(e.error.message.length > 0);
  assert.equal(typeof e.error.details, 'object');
  assert.match(r.stderr, code === 'ERR_USAGE' ? /^walship: .*\nRun 'walship/m : new RegExp(`^walship: ${code}: `, 'm'));
  return e;
}

before(async () => {
  await loadFormat();
  server = await startS3rver();
  dir = mkdtempSync(join(tmpdir(), 'walship-cli-container-'));
  prefix = newPrefix('cli-container');
  url = `s3://${server.bucket}/${prefix}`;
  env = {
    PATH: process.env['PATH'],
    HOME: dir,
    AWS_ENDPOINT_URL_S3: server.endpoint,
    AWS_REGION: server.region,
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    AWS_EC2_METADATA_DISABLED: 'true',
  };
  work = new Workload(14);
  const db = await openReplicated(join(dir, 'origin.db'), s3Options(server, prefix));
  work.setup(db);
  for (let i = 0; i < 30; i++) work.step(db);
  await db.close();
});

after(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('restore for a container entrypoint', () => {
  test('--if-db-not-exists: an existing file is kept byte for byte (exit 0); a missing one is restored', () => {
    const path = join(dir, 'kept.db');
    writeFileSync(path, 'not a database, and it must stay so');
    const r = walship(['restore', url, path, '--if-db-not-exists']);
    expectExit(r, 0, 'existing file');
    assert.equal(readFileSync(path, 'utf8'), 'not a database, and it must stay so');
    assert.match(r.stderr, /exists; nothing restored \(--if-db-not-exists\)/);
    const j = walship(['restore', url, path, '--if-db-not-exists', '--json']);
    expectExit(j, 0, 'existing file, --json');
    assert.deepEqual(JSON.parse(j.stdout), { ok: true, skipped: 'db-exists', path });

    const fresh = join(dir, 'fresh.db');
    const done = walship(['restore', url, fresh, '--if-db-not-exists', '--json']);
    expectExit(done, 0, 'missing file');
    const result = JSON.parse(done.stdout) as { txid: number };
    assertMatchesOracle(fresh, work, result.txid);
    expectExit(walship(['restore', url, path, '--if-db-not-exists', '--overwrite']), 2, '--overwrite with --if-db-not-exists');
  });

  test('no replica: exit 4 with ERR_NO_REPLICA; --if-replica-exists makes it exit 0 and creates nothing', () => {
    const empty = `s3://${server.bucket}/${newPrefix('nothing')}`;
    const path = join(dir, 'nothing.db');
    const e = jsonError(walship(['restore', empty, path, '--json']), 'ERR_NO_REPLICA', 4);
    assert.equal(e.error.details['location'], empty);
    const skip = walship(['restore', empty, path, '--if-replica-exists', '--json']);
    expectExit(skip, 0, '--if-replica-exists');
    assert.deepEqual(JSON.parse(skip.stdout), { ok: true, skipped: 'no-replica', location: empty, path });
    assert.match(skip.stderr, /no replica at .*; nothing restored \(--if-replica-exists\)/);
    assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith('nothing.db')), [], 'no file, scratch or note left');
    expectExit(walship(['verify', empty]), 4, 'verify of no replica');
    const st = walship(['status', empty, '--json']);
    expectExit(st, 4, 'status of no replica');
    assert.equal((JSON.parse(st.stdout) as { problem: { code: string } }).problem.code, 'ERR_NO_REPLICA');
    expectExit(walship(['status', url]), 0, 'status of the replica');

    const there = join(dir, 'there.db');
    const r = walship(['restore', url, there, '--if-replica-exists', '--json']);
    expectExit(r, 0, '--if-replica-exists with a replica');
    assertMatchesOracle(there, work, (JSON.parse(r.stdout) as { txid: number }).txid);
  });

  test('--if-replica-exists does not hide a generation that is not there', () => {
    const r = walship(['restore', url, join(dir, 'gen.db'), '--generation', 'ffffffffffffffff', '--if-replica-exists', '--json']);
    jsonError(r, 'ERR_NO_REPLICA', 4);
    assert.equal(existsSync(join(dir, 'gen.db')), false);
  });
});

describe('errors with --json', () => {
  test('usage, unreachable store and missing bucket are one JSON object on stdout too', () => {
    jsonError(walship(['restore', url, '--json']), 'ERR_USAGE', 2);
    jsonError(walship(['restore', url, join(dir, 'u.db'), '--txid', 'abc', '--json']), 'ERR_USAGE', 2);
    jsonError(walship(['ls', url, '--json'], { AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:9' }), 'ERR_STORAGE_UNAVAILABLE', 3);
    const nb = jsonError(walship(['status', `s3://no-such-bucket-walship/${prefix}`, '--json']), 'ERR_STORAGE_NO_BUCKET', 3);
    assert.equal(nb.error.details['bucket'], 'no-such-bucket-walship');
  });

  test('missing credentials: ERR_STORAGE_NO_CREDENTIALS naming where it looked (exit 2), not access denied', () => {
    const noCreds = { AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined, AWS_PROFILE: undefined };
    const e = jsonError(walship(['ls', url, '--json'], noCreds), 'ERR_STORAGE_NO_CREDENTIALS', 2);
    for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_PROFILE', 'AWS_WEB_IDENTITY_TOKEN_FILE']) assert.ok(e.error.message.includes(name), `names ${name}`);
    assert.doesNotMatch(e.error.message, /access denied/i);
    expectExit(walship(['restore', url, join(dir, 'nocreds.db')], noCreds), 2, 'restore without credentials');
    assert.equal(existsSync(join(dir, 'nocreds.db')), false);
    // The lease's DynamoDB client looks through the same chain: no request is sent, so no server is needed.
    const lease = jsonError(walship(['lease', 'show', url, '--table', 'walship-leases', '--json'], { ...noCreds, AWS_ENDPOINT_URL_DYNAMODB: 'http://127.0.0.1:9' }), 'ERR_LEASE_NO_CREDENTIALS', 2);
    assert.match(lease.error.message, /AWS_ACCESS_KEY_ID/);
    assert.doesNotMatch(lease.error.message, /refused|access denied/i);
  });
});

describe('output', () => {
  test('progress: the first line says what is planned, not a line of zeros; verify shows only the phases it runs', () => {
    const r = walship(['restore', url, join(dir, 'progress.db')]);
    expectExit(r, 0, 'restore');
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines[0], `walship: plan     listing ${url}`);
    assert.ok(!lines.some((l) => / 0\/0 objects/.test(l)), `no line of zeros:\n${r.stderr}`);
    assert.match(r.stderr, /walship: done /);

    const v = walship(['verify', url]);
    expectExit(v, 0, 'verify');
    const phases = v.stderr.trim().split('\n').map((l) => /^walship: (\w+)/.exec(l)?.[1]);
    assert.deepEqual([...new Set(phases)], ['plan', 'download', 'verify'], v.stderr);
  });

  test('ls of a bucket without a prefix names the prefix to use instead of listing foreign objects (exit 4)', () => {
    const human = walship(['ls', `s3://${server.bucket}`]);
    expectExit(human, 4, 'ls s3://bucket');
    assert.equal(human.stdout, '', 'nothing listed');
    assert.ok(human.stderr.includes(`${url}`), `names ${url}:\n${human.stderr}`);
    const e = jsonError(walship(['ls', `s3://${server.bucket}/`, '--json']), 'ERR_NO_REPLICA', 4);
    assert.ok((e.error.details['prefixes'] as string[]).includes(prefix));
  });

  test('--help and usage errors load no dependency (the SDKs load on first use)', () => {
    // The compiled CLI alone, where no package can be resolved: any static import of one fails.
    const alone = join(dir, 'alone', 'dist');
    mkdirSync(alone, { recursive: true });
    for (const name of readdirSync(DIST)) if (name.endsWith('.js')) copyFileSync(join(DIST, name), join(alone, name));
    writeFileSync(join(alone, '..', 'package.json'), JSON.stringify({ name: 'alone', version: '0.0.0', type: 'module' }));
    const cli = join(alone, 'cli.js');
    for (const args of [['--help'], ['restore', '--help'], ['follow', '--help'], ['help', 'ls']]) {
      const r = walship(args, {}, cli);
      expectExit(r, 0, args.join(' '));
      assert.match(r.stdout, /walship/);
    }
    jsonError(walship(['restore', url, '--json'], {}, cli), 'ERR_USAGE', 2);
  });
});

describe('walship follow', () => {
  test('keeps a read replica current, prints status on SIGUSR1, stops cleanly on SIGTERM', async () => {
    const fprefix = newPrefix('cli-follow');
    const fwork = new Workload(15);
    const db = await openReplicated(join(dir, 'follow-origin.db'), s3Options(server, fprefix));
    fwork.setup(db);
    for (let i = 0; i < 10; i++) fwork.step(db);
    await db.flush();
    const path = join(dir, 'follow-replica.db');
    const child = spawn(process.execPath, [CLI, 'follow', `s3://${server.bucket}/${fprefix}`, path, '--interval', '100', '--status-interval', '0', '--json'], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const events: { event: string; txid: number; state: string }[] = [];
    createInterface({ input: child.stdout }).on('line', (l) => events.push(JSON.parse(l) as (typeof events)[number]));
    const waitFor = async (what: string, ok: () => boolean): Promise<void> => {
      for (let i = 0; i < 600 && !ok(); i++) await sleep(100);
      assert.ok(ok(), `${what}\nevents: ${JSON.stringify(events)}\nstderr: ${stderr}`);
    };
    try {
      await waitFor('started', () => events.some((e) => e.event === 'started'));
      assert.equal(events[0]!.event, 'started');
      assertMatchesOracle(path, fwork, events[0]!.txid, 'the replica in place at start');
      for (let i = 0; i < 15; i++) fwork.step(db);
      const { txid } = await db.flush();
      await waitFor(`status reaches txid ${txid}`, () => {
        child.kill('SIGUSR1');
        return events.some((e) => e.event === 'status' && e.txid >= txid);
      });
      child.kill('SIGTERM');
      assert.equal(await exited, 0, stderr);
      const last = events[events.length - 1]!;
      assert.equal(last.event, 'stopped');
      assert.equal(last.state, 'stopped');
      assert.ok(last.txid >= txid);
      assertMatchesOracle(path, fwork, last.txid, 'the replica after SIGTERM');
    } finally {
      child.kill('SIGKILL');
      await db.close();
    }
  });

  test('follow of no replica exits 4; usage errors exit 2', () => {
    jsonError(walship(['follow', `s3://${server.bucket}/${newPrefix('none')}`, join(dir, 'none.db'), '--json']), 'ERR_NO_REPLICA', 4);
    jsonError(walship(['follow', url, '--json']), 'ERR_USAGE', 2);
    jsonError(walship(['follow', url, join(dir, 'x.db'), '--interval', 'soon', '--json']), 'ERR_USAGE', 2);
  });
});
