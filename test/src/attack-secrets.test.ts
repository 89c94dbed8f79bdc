// Issue 10, item 2 and "file modes": what someone with a copy of the logs, or a local account on the
// restore host, gets. Nothing: no key material or credential in any error, log line, status, metric
// or --json output (checked over every 6-character substring of each secret), and the files restore,
// follow and verify write (decrypted pages) are 0600 whatever the umask, with the scratch file of a
// restore killed with -9 removed by the next run.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { Keyring, loadFormat, restoredNotePath } from '@walship/format';
import { createDynamoLease, createLeaseTable } from '@walship/lease';
import { follow, restore, verify } from '@walship/restore';
import { openReplicated, type LogEntry, type ReplicatedOptions } from '@walship/shipper';
import { createS3Storage, type RequestEvent } from '@walship/storage';
import { openDatabase } from '@walship/vfs';
import { startDynalite, startFaultProxy, startS3rver, type DynamoServer, type FaultProxy, type S3Server } from './servers/index.js';
import { Workload, assertMatchesOracle, newPrefix, s3Options, sleep, source } from './util/restore-harness.js';

const CLI = fileURLToPath(new URL('../../packages/restore/dist/cli.js', import.meta.url));

// Fixed, so a failure names the same substrings every run; 44 base64 characters (32 bytes).
const KEY = createHash('sha256').update('walship attack-secrets: the encryption key').digest('base64');
const KEY_HEX = Buffer.from(KEY, 'base64').toString('hex');
const LEASE_SECRET = createHash('sha256').update('walship attack-secrets: the DynamoDB secret').digest('hex').slice(0, 40);
const ENDPOINT_SECRET = createHash('sha256').update('walship attack-secrets: endpoint password').digest('hex').slice(0, 24);

/** Fails naming the first 6-character substring of a secret found in `text`. */
function assertNoSecret(text: string, secrets: readonly string[], what: string): void {
  for (const secret of secrets) {
    for (let i = 0; i + 6 <= secret.length; i++) {
      const piece = secret.slice(i, i + 6);
      if (text.includes(piece)) assert.fail(`${what} shows key material or a credential: '${piece}' (characters ${i}..${i + 5} of a ${secret.length}-character secret) in:\n${text.slice(0, 2000)}`);
    }
  }
}

/** Everything an error carries: message, stack, details and the whole cause chain. */
function everything(value: unknown): string {
  let json = '';
  try {
    json = JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) ?? '';
  } catch {
    json = '(circular)';
  }
  return `${inspect(value, { depth: Infinity, showHidden: true, maxArrayLength: Infinity, maxStringLength: Infinity })}\n${json}`;
}

const mode = (path: string): number => statSync(path).mode & 0o777;
const octal = (m: number): string => `0${m.toString(8)}`;

describe('WALSHIP_KEYS: a malformed entry is named by position and length, never quoted', () => {
  // Each case: the variable's value, and the secrets in it (the key as given, and the key itself).
  const garbage = KEY.replace(/[A-M]/g, '*').replace(/[0-4]/g, '#');
  const cases: { name: string; value: string; secrets: string[] }[] = [
    { name: 'no id', value: KEY, secrets: [KEY] },
    { name: "'=' instead of ':'", value: `k1=${KEY}`, secrets: [KEY] },
    { name: 'key and id swapped', value: `${KEY}:k1`, secrets: [KEY] },
    { name: 'key cut short (40 of 44)', value: `k1:${KEY.slice(0, 40)}`, secrets: [KEY.slice(0, 40)] },
    { name: 'key too long', value: `k1:${KEY}AAAA`, secrets: [KEY] },
    { name: 'garbage', value: `k1:${garbage}`, secrets: [garbage] },
    { name: 'second entry without id', value: `k0:${Buffer.alloc(32, 7).toString('base64')},${KEY}`, secrets: [KEY] },
    { name: 'spaces and a bad id', value: ` k 1 : ${KEY} `, secrets: [KEY] },
  ];
  const commands: string[][] = [
    ['ls', 's3://walship-test/p'],
    ['status', 's3://walship-test/p'],
    ['verify', 's3://walship-test/p'],
    ['follow', 's3://walship-test/p', join(tmpdir(), `walship-never-${randomBytes(4).toString('hex')}.db`)],
    ['restore', 's3://walship-test/p', join(tmpdir(), `walship-never-${randomBytes(4).toString('hex')}.db`)],
  ];
  // Every command parses WALSHIP_KEYS in the same place: each entry goes through restore, and the
  // first through every command (a CLI start is ~0.7 s; all 64 combinations took 49 s of CI).
  cases.forEach((c, i) => {
    test(c.name, () => {
      for (const args of i === 0 ? commands : commands.slice(-1)) {
        for (const json of [false, true]) {
          const argv = json ? [...args, '--json'] : args;
          const r = spawnSync(process.execPath, [CLI, ...argv], {
            env: { PATH: process.env['PATH'], AWS_REGION: 'us-east-1', AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:9', WALSHIP_KEYS: c.value },
            encoding: 'utf8',
            timeout: 60_000,
          });
          const what = `walship ${argv.join(' ')} with WALSHIP_KEYS ${c.name}`;
          assertNoSecret(r.stdout, c.secrets, `${what}: stdout`);
          assertNoSecret(r.stderr, c.secrets, `${what}: stderr`);
          assert.equal(r.status, 2, `${what}: usage error, exit 2 (got ${r.status}): ${r.stderr}`);
          assert.match(r.stderr, /WALSHIP_KEYS entry \d+ of \d+ \(\d+ characters\)/, `${what}: names the entry by position and length`);
        }
      }
    });
  });
});

describe('Keyring and option errors: no key or credential in messages, details, inspect or JSON', () => {
  test('a Keyring shows its ids only, inspected, stringified or cloned', () => {
    const keyring = new Keyring({ keys: [{ id: 'k1', key: KEY }, { id: 'k2', key: Buffer.from(KEY_HEX, 'hex').reverse() }] });
    const reversed = Buffer.from(KEY_HEX, 'hex').reverse().toString('base64');
    const bytes = Array.from(Buffer.from(KEY, 'base64')).join(', ');
    for (const [what, text] of [
      ['inspect', inspect(keyring, { depth: Infinity, showHidden: true })],
      ['JSON', JSON.stringify(keyring)],
      ['structuredClone', inspect(structuredClone(keyring), { depth: Infinity, showHidden: true })],
    ] as const) {
      assertNoSecret(text, [KEY, KEY_HEX, reversed, bytes], `Keyring ${what}`);
    }
  });

  test('Keyring construction errors name the position and length of what is wrong', () => {
    const attempts: [string, () => unknown][] = [
      ['key given as the id', () => new Keyring({ keys: [{ id: KEY, key: KEY }] })],
      ['key as the primary', () => new Keyring({ keys: [{ id: 'k1', key: KEY }], primary: KEY })],
      ['a short key', () => new Keyring({ keys: [{ id: 'k1', key: KEY.slice(0, 40) }] })],
      ['a key that is not base64', () => new Keyring({ keys: [{ id: 'k1', key: `${KEY.slice(0, 43)}!` }] })],
    ];
    for (const [what, attempt] of attempts) {
      assert.throws(attempt, (e: unknown) => {
        assert.equal((e as { code?: string }).code, 'ERR_BAD_KEY', what);
        assertNoSecret(everything(e), [KEY], `Keyring error (${what})`);
        return true;
      });
    }
  });

  test('restore, openReplicated and the lease refuse bad options without echoing credentials or keys', async () => {
    const credentials = { accessKeyId: 'AKIAWALSHIPTEST', secretAccessKey: LEASE_SECRET };
    const secrets = [LEASE_SECRET, KEY, ENDPOINT_SECRET];
    const failures: [string, () => Promise<unknown> | unknown][] = [
      ['restore: bad bucket, with credentials and keys', () => restore({ s3: { bucket: 'Not A Bucket', prefix: 'p', credentials }, keys: [{ id: 'k1', key: KEY }], path: join(tmpdir(), 'never.db') })],
      ['restore: a key given as the id', () => restore({ s3: { bucket: 'walship-test', prefix: 'p', credentials }, keys: [{ id: KEY, key: KEY }], path: join(tmpdir(), 'never.db') })],
      ['openReplicated: lease without a table', () => openReplicated(join(tmpdir(), 'never.db'), { lease: { credentials, endpoint: `http://u:${ENDPOINT_SECRET}@127.0.0.1:9` } as unknown as ReplicatedOptions['lease'], s3: { bucket: 'walship-test', prefix: 'p', credentials } })],
      ['openReplicated: s3 not an object', () => openReplicated(join(tmpdir(), 'never.db'), { lease: false, s3: [credentials] as unknown as ReplicatedOptions['s3'], encryption: { keys: [{ id: 'k1', key: KEY }] } })],
      ['openReplicated: encryption key as the id', () => openReplicated(join(tmpdir(), 'never.db'), { lease: false, s3: { bucket: 'walship-test', prefix: 'p', endpoint: 'http://127.0.0.1:9', credentials }, encryption: { keys: [{ id: KEY, key: KEY }] } })],
      ['lease: endpoint that is not a URL', () => createDynamoLease({ table: 'walship_leases', key: 'k', endpoint: `http://u:${ENDPOINT_SECRET}@[bad`, credentials })],
    ];
    for (const [what, run] of failures) {
      let caught: unknown = null;
      try {
        await run();
      } catch (e) {
        caught = e;
      }
      assert.ok(caught instanceof Error, `${what}: refused`);
      assertNoSecret(everything(caught), secrets, what);
    }
  });

  test('an S3 storage and a lease built with credentials show none, inspected; an endpoint password is never in a message', async () => {
    const credentials = { accessKeyId: 'AKIAWALSHIPTEST', secretAccessKey: LEASE_SECRET };
    const storage = createS3Storage({ bucket: 'walship-test', prefix: 'p', region: 'us-east-1', credentials, retry: { attempts: 2, baseDelayMs: 1, maxDelayMs: 2 } });
    assertNoSecret(inspect(storage, { depth: Infinity, showHidden: true }), [LEASE_SECRET], 'inspect(S3Storage)');
    storage.destroy();
    const lease = createDynamoLease({ table: 'walship_leases', key: 'k', endpoint: 'http://127.0.0.1:9', region: 'us-east-1', credentials });
    assertNoSecret(inspect(lease, { depth: Infinity, showHidden: true }), [LEASE_SECRET], 'inspect(lease)');
    lease.close();
    // Nothing listens on port 9: the error says where it tried, without the user info.
    const withPassword = createS3Storage({ bucket: 'walship-test', prefix: 'p', endpoint: `http://walship:${ENDPOINT_SECRET}@127.0.0.1:9`, region: 'us-east-1', credentials, retry: { attempts: 2, baseDelayMs: 1, maxDelayMs: 2 } });
    const e = await withPassword.check().then(
      () => null,
      (err: unknown) => err,
    );
    withPassword.destroy();
    assert.equal((e as { code?: string } | null)?.code, 'ERR_STORAGE_UNAVAILABLE');
    assert.match((e as Error).message, /127\.0\.0\.1:9/, 'the message still says which endpoint');
    assertNoSecret(`${(e as Error).message}\n${(e as Error).stack}\n${everything(e)}`, [ENDPOINT_SECRET], 'storage error');
    // An endpoint that does not parse: the SDK's TypeError keeps it (input) unless walship drops it.
    const unparsable = createS3Storage({ bucket: 'walship-test', prefix: 'p', endpoint: `http://walship:${ENDPOINT_SECRET}@[bad`, region: 'us-east-1', credentials, retry: { attempts: 1 } });
    const invalid = await unparsable.check().then(
      () => null,
      (err: unknown) => err,
    );
    unparsable.destroy();
    assert.equal((invalid as { code?: string } | null)?.code, 'ERR_STORAGE_INVALID_REQUEST');
    assertNoSecret(everything(invalid), [ENDPOINT_SECRET], 'storage error for an endpoint that does not parse');
  });
});

describe('with servers', () => {
  let s3: S3Server;
  let dynamo: DynamoServer;
  let proxy: FaultProxy;
  let dir: string;
  let prefix: string;
  let url: string;
  let work: Workload;
  let env: NodeJS.ProcessEnv;
  const TABLE = 'walship_attack_secrets';

  before(async () => {
    await loadFormat();
    [s3, dynamo] = await Promise.all([startS3rver(), startDynalite()]);
    proxy = await startFaultProxy({ target: s3.endpoint, seed: 7 });
    await createLeaseTable({ table: TABLE, endpoint: dynamo.endpoint, region: dynamo.region, credentials: { accessKeyId: 'AKIAWALSHIPTEST', secretAccessKey: LEASE_SECRET } });
    dir = mkdtempSync(join(tmpdir(), 'walship-attack-secrets-'));
    prefix = newPrefix('secrets');
    url = `s3://${s3.bucket}/${prefix}`;
    env = {
      PATH: process.env['PATH'],
      HOME: process.env['HOME'],
      AWS_ENDPOINT_URL_S3: s3.endpoint,
      AWS_REGION: s3.region,
      AWS_ACCESS_KEY_ID: s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
    };
    // A plaintext replica with enough segments that a restore of it is still downloading after
    // its scratch file appears (the kill -9 test below).
    work = new Workload(31);
    const db = await openReplicated(join(dir, 'origin.db'), s3Options(s3, prefix));
    work.setup(db);
    await db.flush();
    for (let i = 0; i < 60; i++) {
      work.step(db);
      if (i % 6 === 0) await db.flush();
    }
    await db.close();
  });

  after(async () => {
    await proxy?.stop();
    await Promise.all([s3?.stop(), dynamo?.stop()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a running shipper with keys, S3 and DynamoDB credentials and an endpoint password: logs, status, metrics, events and errors show none of them', async () => {
    const secretPrefix = newPrefix('shipper-secrets');
    const logs: LogEntry[] = [];
    const events: RequestEvent[] = [];
    const endpoint = proxy.endpoint.replace('http://', `http://walship:${ENDPOINT_SECRET}@`);
    const db = await openReplicated(join(dir, 'secret-writer.db'), {
      lease: { table: TABLE, endpoint: dynamo.endpoint, region: dynamo.region, credentials: { accessKeyId: 'AKIAWALSHIPTEST', secretAccessKey: LEASE_SECRET }, leaseMs: 4000 },
      s3: {
        bucket: s3.bucket,
        prefix: secretPrefix,
        endpoint,
        region: s3.region,
        forcePathStyle: true,
        credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
        retry: { attempts: 2, baseDelayMs: 10, maxDelayMs: 50, requestTimeoutMs: 900 },
      },
      encryption: { keys: [{ id: 'k1', key: KEY }] },
      batchWindowMs: 10,
      uploadBackoff: { baseMs: 20, maxMs: 100 },
      logger: (entry) => logs.push(entry),
      logLevel: 'debug',
      onRequest: (e) => events.push(e),
      retentionMs: 0,
    });
    const seen: string[] = [];
    const w = new Workload(5);
    w.setup(db);
    await db.flush();
    // The store goes away: uploads fail, the errors reach logs and status().lastError.
    proxy.setDown(true);
    w.step(db);
    while (db.status().lastError === null) await sleep(20);
    seen.push(JSON.stringify(db.status()), inspect(db.status(), { depth: Infinity }), await db.metrics());
    proxy.setDown(false);
    for (let i = 0; i < 5; i++) w.step(db);
    await db.flush();
    seen.push(JSON.stringify(db.status()), await db.metrics());
    await db.close();
    seen.push(JSON.stringify(logs), JSON.stringify(events));
    const text = seen.join('\n');
    assert.match(text, /upload failed/, 'the outage was logged (the scan below covers real error lines)');
    assertNoSecret(text, [KEY, KEY_HEX, LEASE_SECRET, ENDPOINT_SECRET, s3.secretAccessKey], 'shipper logs, status, metrics and request events');

    // The replica is encrypted: the CLI with the key restores it, and its output shows no key.
    const r = spawnSync(process.execPath, [CLI, 'restore', `s3://${s3.bucket}/${secretPrefix}`, join(dir, 'secret-restored.db'), '--json'], {
      env: { ...env, WALSHIP_KEYS: `k1:${KEY}` },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stderr);
    assertNoSecret(`${r.stdout}\n${r.stderr}`, [KEY, KEY_HEX], 'walship restore --json of an encrypted replica');
  });

  test('unknown S3 credentials: ERR_STORAGE_ACCESS_DENIED whose message, details and cause chain hold no secret, signature or signed header', async () => {
    // s3rver checks the access key id (not the signature): an unknown id gets 403 InvalidAccessKeyId.
    const wrong = { accessKeyId: 'AKIAWALSHIPUNKNOWN', secretAccessKey: `wrong${LEASE_SECRET}` };
    const e = await openReplicated(join(dir, 'denied.db'), {
      lease: false,
      s3: { bucket: s3.bucket, prefix: newPrefix('denied'), endpoint: s3.endpoint, region: s3.region, forcePathStyle: true, credentials: wrong, retry: { attempts: 1 } },
      logLevel: 'silent',
    }).then(
      async (db) => {
        await db.close();
        return null;
      },
      (err: unknown) => err,
    );
    assert.equal((e as { code?: string } | null)?.code, 'ERR_STORAGE_ACCESS_DENIED');
    const text = everything(e);
    assert.match(text, /InvalidAccessKeyId/, 'the store\u2019s code is kept');
    assertNoSecret(text, [wrong.secretAccessKey], 'access-denied error');
    assert.doesNotMatch(text, /Signature=|Credential=|SignatureProvided|StringToSign|CanonicalRequest|AWSAccessKeyId|AKIAWALSHIPUNKNOWN/, 'no signed header or signature material in the error or its causes');
  });

  test('restore under umask 000 writes the database and its note 0600; --mode 640 under umask 077 gives 0640', () => {
    const path = join(dir, 'umask', 'r.db');
    const r = spawnSync('/bin/sh', ['-c', `umask 000 && exec "${process.execPath}" "${CLI}" restore "${url}" "${path}" --json`], { env, encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(octal(mode(path)), '0600', 'restored database');
    assert.equal(octal(mode(restoredNotePath(path))), '0600', 'restore note');
    const txid = (JSON.parse(r.stdout) as { txid: number }).txid;
    assertMatchesOracle(path, work, txid);

    const shared = join(dir, 'umask', 'shared.db');
    const g = spawnSync('/bin/sh', ['-c', `umask 077 && exec "${process.execPath}" "${CLI}" restore "${url}" "${shared}" --mode 640`], { env, encoding: 'utf8', timeout: 60_000 });
    assert.equal(g.status, 0, g.stderr);
    assert.equal(octal(mode(shared)), '0640', '--mode is set exactly, whatever the umask');
    const bad = spawnSync(process.execPath, [CLI, 'restore', url, join(dir, 'umask', 'bad.db'), '--mode', '044'], { env, encoding: 'utf8', timeout: 60_000 });
    assert.equal(bad.status, 2, `--mode 044 leaves the owner without access: a usage error (${bad.stderr})`);
  });

  test('the -wal SQLite creates beside a 0600 database is 0600 too', async () => {
    const path = join(dir, 'wal-mode.db');
    await restore({ ...source(s3, prefix), path });
    assert.equal(octal(mode(path)), '0600');
    const db = await openDatabase(path, { capture: false });
    try {
      db.exec('CREATE TABLE IF NOT EXISTS t(x)');
      db.prepare('INSERT INTO t VALUES (?)').run(1);
      assert.ok(existsSync(`${path}-wal`), 'the database runs in WAL mode');
      assert.equal(octal(mode(`${path}-wal`)), '0600', '-wal');
    } finally {
      db.close();
    }
  });

  test('follow keeps its file 0600 through the first restore and applied segments', async () => {
    const followPrefix = newPrefix('follow-mode');
    const w = new Workload(11);
    const writer = await openReplicated(join(dir, 'follow-origin.db'), s3Options(s3, followPrefix));
    w.setup(writer);
    await writer.flush();
    const path = join(dir, 'follow', 'replica.db');
    let segments = 0;
    const handle = await follow({ ...source(s3, followPrefix), path, intervalMs: 20, onApply: (e) => void (e.kind === 'segments' && segments++) });
    try {
      assert.equal(octal(mode(path)), '0600', 'after the initial restore');
      for (let i = 0; i < 3; i++) w.step(writer);
      await writer.flush();
      while (segments === 0) await sleep(20);
      assert.equal(octal(mode(path)), '0600', 'after applying segments (a copy of the file renamed over it)');
    } finally {
      await handle.stop();
      await writer.close();
    }
  });

  test('kill -9 of a CLI restore mid-download leaves a 0600 scratch file; the next run removes it and restores right', async () => {
    const target = join(dir, 'killed', 'k.db');
    mkdirSync(join(dir, 'killed'), { recursive: true });
    // Every request through the proxy waits 300 ms, one object at a time: the restore is still
    // downloading segments for seconds after its scratch file appears.
    proxy.setDelayMs(300);
    proxy.setFaultRate(1, ['delay']);
    const child = spawn('/bin/sh', ['-c', `umask 000 && exec "${process.execPath}" "${CLI}" restore "${url}" "${target}" --concurrency 1`], {
      env: { ...env, AWS_ENDPOINT_URL_S3: proxy.endpoint },
      stdio: 'ignore',
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    let finished: number | null | undefined;
    void exited.then((code) => (finished = code));
    const scratch = (): string[] => readdirSync(join(dir, 'killed')).filter((n) => n.startsWith('k.db.walship-restore-'));
    try {
      while (scratch().length === 0 && finished === undefined) await sleep(5);
      assert.equal(finished, undefined, 'the restore was still running when its scratch file appeared');
      child.kill('SIGKILL');
      await exited;
    } finally {
      proxy.setFaultRate(0);
      await proxy.idle();
    }
    const left = scratch();
    assert.equal(left.length, 1, `kill -9 leaves the scratch file (${left.join(', ')})`);
    assert.equal(octal(mode(join(dir, 'killed', left[0]!))), '0600', 'the scratch file of a restore under umask 000');
    assert.ok(!existsSync(target), 'the target was never created');

    const again = spawnSync(process.execPath, [CLI, 'restore', url, target, '--json'], { env, encoding: 'utf8', timeout: 60_000 });
    assert.equal(again.status, 0, again.stderr);
    assert.deepEqual(scratch(), [], 'the next restore removed the stale scratch file');
    assertMatchesOracle(target, work, (JSON.parse(again.stdout) as { txid: number }).txid);
  });

  test('verify removes the private scratch directory a killed verify left', async () => {
    const parent = join(dir, 'verify-parent');
    mkdirSync(parent, { recursive: true });
    // A pid that is not running: what a verify killed with -9 leaves behind.
    let dead = 4_000_000;
    for (;;) {
      try {
        process.kill(dead, 0);
        dead++;
      } catch {
        break;
      }
    }
    const stale = join(parent, `walship-verify-${dead}-AbC123`);
    mkdirSync(stale, { mode: 0o700 });
    const r = await verify({ ...source(s3, prefix), dir: parent });
    assert.ok(r.ok, JSON.stringify(r.error));
    assert.deepEqual(readdirSync(parent), [], 'the stale directory and verify\u2019s own are gone');
  });
});
