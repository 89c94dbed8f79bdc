// The walship CLI as a user runs it: the compiled bin in a child process against s3rver, with the
// endpoint and credentials in the standard AWS environment. Exit codes: 0 ok, 1 data or
// verification error, 2 usage or configuration, 3 storage unreachable or access denied, 4 no replica.
// The container-facing flags, --json errors and follow: cli-container.test.ts.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadFormat } from '@walship/format';
import { openReplicated } from '@walship/shipper';
import { plan } from '@walship/restore';
import { startS3rver, type S3Server } from './servers/index.js';
import { Workload, assertMatchesOracle, newPrefix, s3Options, sleep, source, storageFor } from './util/restore-harness.js';

const CLI = fileURLToPath(new URL('../../packages/restore/dist/cli.js', import.meta.url));

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

function walship(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], { env: { ...env, ...extraEnv }, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function expectExit(r: Run, code: number, what: string): void {
  assert.equal(r.status, code, `${what}: exit ${r.status}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
}

before(async () => {
  await loadFormat();
  server = await startS3rver();
  dir = mkdtempSync(join(tmpdir(), 'walship-cli-'));
  prefix = newPrefix('cli');
  url = `s3://${server.bucket}/${prefix}`;
  env = {
    PATH: process.env['PATH'],
    HOME: process.env['HOME'],
    AWS_ENDPOINT_URL_S3: server.endpoint,
    AWS_REGION: server.region,
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
  };
  work = new Workload(9);
  const db = await openReplicated(join(dir, 'origin.db'), s3Options(server, prefix));
  work.setup(db);
  await db.flush();
  for (let i = 0; i < 80; i++) {
    work.step(db);
    if (i % 10 === 0) await sleep(25);
  }
  await db.close();
});

after(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('walship CLI', () => {
  test('--help for every command', () => {
    for (const args of [['--help'], [], ['restore', '--help'], ['follow', '--help'], ['ls', '--help'], ['verify', '--help'], ['status', '--help'], ['demo', '--help'], ['help', 'restore']]) {
      const r = walship(args);
      expectExit(r, 0, args.join(' '));
      assert.match(r.stdout, /walship/);
    }
    assert.match(walship(['--help']).stdout, /Exit codes: 0 ok, 1 .*2 usage.*\n?.*3 storage.*4 no replica/s);
  });

  test('ls --json: generations, epochs, snapshots, segments, ranges', async () => {
    const r = walship(['ls', url, '--json']);
    expectExit(r, 0, 'ls');
    const d = JSON.parse(r.stdout) as {
      generations: { id: string; restorable: { toTxid: number } | null; epochs: { epoch: number; writer?: { host?: string } }[]; snapshots: unknown[]; segments: { minTxid: number; maxTxid: number; size: number }[] }[];
    };
    const p = await plan({ ...source(server, prefix) });
    assert.equal(d.generations.length, 1);
    assert.equal(d.generations[0]!.restorable?.toTxid, p.txid);
    assert.ok(d.generations[0]!.segments.length >= 3);
    assert.ok(d.generations[0]!.segments.every((s) => s.maxTxid >= s.minTxid && s.size > 0));
    assert.equal(d.generations[0]!.epochs[0]!.writer?.host, hostname());
    const human = walship(['ls', url]);
    expectExit(human, 0, 'ls (text)');
    assert.match(human.stdout, /restorable {2}txids \d+\.\.\d+/);
  });

  test('status --json: durable txid, newest object, writer epoch and host; lease not checked without a table', async () => {
    const r = walship(['status', url, '--json']);
    expectExit(r, 0, 'status');
    const s = JSON.parse(r.stdout) as { durableTxid: number; lease: unknown; writer: { epoch: number; host: string }; newestObject: { key: string; ageMs: number }; lagEstimateMs: number };
    const p = await plan({ ...source(server, prefix) });
    assert.equal(s.durableTxid, p.txid);
    assert.equal(s.lease, null);
    assert.equal(s.writer.epoch, 1);
    assert.equal(s.writer.host, hostname());
    assert.ok(s.newestObject.key.startsWith(prefix));
    assert.ok(s.lagEstimateMs >= 0);
    expectExit(walship(['status', url]), 0, 'status (text)');
  });

  test('restore: latest, --txid, --timestamp, an existing target, --overwrite', async () => {
    const path = join(dir, 'r1.db');
    const r = walship(['restore', url, path, '--json']);
    expectExit(r, 0, 'restore');
    const result = JSON.parse(r.stdout) as { txid: number; path: string; checksum: string; timestamp: number };
    assert.equal(result.path, path);
    assertMatchesOracle(path, work, result.txid);
    assert.match(r.stderr, /done/, 'progress on stderr');

    expectExit(walship(['restore', url, path]), 2, 'existing target');
    const again = walship(['restore', url, path, '--overwrite']);
    expectExit(again, 0, '--overwrite');
    assert.match(again.stdout, /restored .*\n\s+txid\s+\d+/);

    const k = result.txid - 7;
    const at = walship(['restore', url, join(dir, 'r2.db'), '--txid', String(k), '--json']);
    expectExit(at, 0, '--txid');
    assert.equal((JSON.parse(at.stdout) as { txid: number }).txid, k);
    assertMatchesOracle(join(dir, 'r2.db'), work, k);

    const ts = walship(['restore', url, join(dir, 'r3.db'), '--timestamp', new Date(result.timestamp).toISOString(), '--json']);
    expectExit(ts, 0, '--timestamp');
    assert.equal((JSON.parse(ts.stdout) as { txid: number }).txid, result.txid);

    assert.equal((result as { integrityCheck?: string }).integrityCheck, 'full', 'the default check is integrity_check');
    assert.match(again.stdout, /checked\s+size, checksum \(read back\), PRAGMA integrity_check/);
    for (const mode of ['quick', 'none'] as const) {
      const m = walship(['restore', url, join(dir, `r-${mode}.db`), '--integrity-check', mode, '--json']);
      expectExit(m, 0, `--integrity-check ${mode}`);
      const got = JSON.parse(m.stdout) as { txid: number; checksum: string; integrityCheck: string };
      assert.deepEqual([got.integrityCheck, got.txid, got.checksum], [mode, result.txid, result.checksum]);
      assertMatchesOracle(join(dir, `r-${mode}.db`), work, result.txid);
    }
  });

  test('verify: 0 on a sound replica, 1 with the error on a damaged one', async () => {
    const ok = walship(['verify', url, '--json']);
    expectExit(ok, 0, 'verify');
    const v = JSON.parse(ok.stdout) as { ok: boolean; checks: string[]; result: { txid: number; integrityCheck: string } };
    assert.equal(v.ok, true);
    assert.equal(v.result.integrityCheck, 'full', 'verify runs every check');
    assert.ok(v.checks.length >= 5);
    expectExit(walship(['verify', url]), 0, 'verify (text)');

    const damaged = newPrefix('cli-damaged');
    const storage = storageFor(server, '');
    const p = await plan({ ...source(server, prefix) });
    for await (const o of storage.list({ prefix: `${prefix}/` })) {
      const bytes = (await storage.get(o.key))!;
      if (o.key === p.objects[1]!.key) bytes[bytes.length - 100]! ^= 0xff;
      await storage.put(`${damaged}/${o.key.slice(prefix.length + 1)}`, bytes);
    }
    const bad = walship(['verify', `s3://${server.bucket}/${damaged}`, '--json']);
    expectExit(bad, 1, 'verify damaged');
    const b = JSON.parse(bad.stdout) as { ok: boolean; error: { code: string; message: string } };
    assert.equal(b.ok, false);
    assert.equal(b.error.code, 'ERR_CORRUPT_OBJECT');
    assert.ok(b.error.message.includes(p.objects[1]!.key.slice(prefix.length + 1)));
    expectExit(walship(['restore', `s3://${server.bucket}/${damaged}`, join(dir, 'damaged.db')]), 1, 'restore damaged');
    assert.equal(existsSync(join(dir, 'damaged.db')), false);
  });

  test('usage errors exit 2', () => {
    const cases: string[][] = [
      ['restore', url],
      ['restore', url, join(dir, 'u.db'), '--txid', 'abc'],
      ['restore', url, join(dir, 'u.db'), '--txid', '5', '--timestamp', '2026-01-01T00:00:00Z'],
      ['restore', url, join(dir, 'u.db'), '--timestamp', 'yesterday'],
      ['restore', url, join(dir, 'u.db'), '--bogus'],
      ['restore', url, join(dir, 'u.db'), '--integrity-check', 'fast'],
      ['restore', 'http://bucket/prefix', join(dir, 'u.db')],
      ['ls'],
      ['frobnicate'],
      ['demo', '--seconds', 'soon'],
      ['lease', 'release', url],
      ['lease', 'release', url, '--table', 't'],
    ];
    for (const args of cases) {
      const r = walship(args);
      expectExit(r, 2, args.join(' '));
      assert.ok(r.stderr.length > 0, 'a message on stderr');
    }
    expectExit(walship(['ls', url], { WALSHIP_KEYS: 'nocolon' }), 2, 'malformed WALSHIP_KEYS');
    assert.equal(existsSync(join(dir, 'u.db')), false);
  });

  test('storage unreachable or access denied exit 3; an empty prefix exits 4', () => {
    expectExit(walship(['ls', url], { AWS_ACCESS_KEY_ID: 'WRONG', AWS_SECRET_ACCESS_KEY: 'wrong-secret' }), 3, 'wrong credentials');
    expectExit(walship(['status', url], { AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:9' }), 3, 'unreachable endpoint');
    expectExit(walship(['ls', `s3://no-such-bucket-walship/${prefix}`]), 3, 'missing bucket');
    const empty = walship(['restore', `s3://${server.bucket}/${newPrefix('nothing')}`, join(dir, 'nothing.db')]);
    expectExit(empty, 4, 'no replica');
    assert.match(empty.stderr, /ERR_NO_REPLICA/);
  });

  test('encrypted replica: WALSHIP_KEYS decrypts; without it the key is required (exit 2)', async () => {
    const encPrefix = newPrefix('cli-enc');
    const key = randomBytes(32).toString('base64');
    const encWork = new Workload(10);
    const db = await openReplicated(join(dir, 'enc-origin.db'), s3Options(server, encPrefix, { encryption: { keys: [{ id: 'main', key }] } }));
    encWork.setup(db);
    for (let i = 0; i < 20; i++) encWork.step(db);
    await db.close();
    const encUrl = `s3://${server.bucket}/${encPrefix}`;
    const missing = walship(['restore', encUrl, join(dir, 'enc1.db')]);
    expectExit(missing, 2, 'no keys');
    assert.match(missing.stderr, /ERR_KEY_REQUIRED/);
    const r = walship(['restore', encUrl, join(dir, 'enc2.db'), '--json'], { WALSHIP_KEYS: `other:${randomBytes(32).toString('base64')},main:${key}` });
    expectExit(r, 0, 'with keys');
    assertMatchesOracle(join(dir, 'enc2.db'), encWork, (JSON.parse(r.stdout) as { txid: number }).txid);
  });
});
