// `walship query` against s3rver: rows of the replica at a txid without a restore, as text and JSON,
// equal to the oracle replay; typed failures map to the CLI's exit codes; no key material printed.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadFormat } from '@walship/format';
import { openReplicated } from '@walship/shipper';
import { startS3rver, type S3Server } from './servers/index.js';
import { Workload, newPrefix, s3Options, sleep } from './util/restore-harness.js';

const CLI = fileURLToPath(new URL('../../packages/restore/dist/cli.js', import.meta.url));
const key = randomBytes(32).toString('base64');

let server: S3Server;
let dir: string;
let url: string;
let env: NodeJS.ProcessEnv;
let work: Workload;
const txids: number[] = [];

function walship(args: string[], extraEnv: NodeJS.ProcessEnv = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { env: { ...env, ...extraEnv }, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

before(async () => {
  await loadFormat();
  server = await startS3rver();
  dir = mkdtempSync(join(tmpdir(), 'walship-query-'));
  const prefix = newPrefix('query');
  url = `s3://${server.bucket}/${prefix}`;
  env = {
    PATH: process.env['PATH'],
    HOME: process.env['HOME'],
    AWS_ENDPOINT_URL_S3: server.endpoint,
    AWS_REGION: server.region,
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    WALSHIP_KEYS: `q1:${key}`,
  };
  work = new Workload(31);
  const db = await openReplicated(join(dir, 'origin.db'), s3Options(server, prefix, { encryption: { keys: [{ id: 'q1', key }] } }));
  work.setup(db);
  for (let i = 0; i < 60; i++) {
    txids.push(work.step(db));
    if (i % 10 === 0) await sleep(20);
  }
  await db.flush();
  await db.close();
});

after(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const SQL = 'SELECT k, hex(v) AS v, n FROM kv ORDER BY k';

test('walship query --txid N --json prints the rows at N (equal to the oracle replay), GETs on stderr', () => {
  for (const txid of [txids[40] as number, txids[txids.length - 1] as number]) {
    const r = walship(['query', url, SQL, '--txid', String(txid), '--json']);
    assert.equal(r.status, 0, r.stderr);
    const oracle = work.oracle(txid);
    try {
      // Plain objects: node:sqlite (the oracle on Node 22 and 24) returns rows with a null prototype.
      assert.deepEqual(JSON.parse(r.stdout), oracle.prepare(SQL).all().map((row) => ({ ...(row as object) })));
    } finally {
      oracle.close();
    }
    assert.match(r.stderr, new RegExp(`txid ${txid} of generation [0-9a-f]{16}.*\\d+ GETs`));
    assert.ok(!r.stderr.includes(key) && !r.stdout.includes(key), 'no key material');
    assert.doesNotMatch(r.stderr, /NodeVersionSupportWarning/, 'the fetch thread drops the SDK warning as the CLI does');
  }
});

test('walship query prints a header and tab-separated rows; failures keep the CLI exit codes', () => {
  const r = walship(['query', url, 'SELECT count(*) AS n, 1 AS one FROM kv']);
  assert.equal(r.status, 0, r.stderr);
  const [head, row] = r.stdout.trim().split('\n');
  assert.equal(head, 'n\tone');
  assert.match(row ?? '', /^\d+\t1$/);
  assert.equal(walship(['query', url]).status, 2, 'missing SQL is a usage error');
  assert.equal(walship(['query', url, 'SELECT 1', '--txid', '1', '--timestamp', '2026-01-01T00:00:00Z']).status, 2);
  const nokeys = walship(['query', url, 'SELECT 1'], { WALSHIP_KEYS: '' });
  assert.equal(nokeys.status, 2, nokeys.stderr);
  assert.match(nokeys.stderr, /ERR_KEY_REQUIRED/);
  const write = walship(['query', url, 'DELETE FROM kv']);
  assert.equal(write.status, 2, write.stderr);
  assert.match(walship(['query', '--help']).stdout, /walship query <s3-url>/);
});
