// Smoke tests of the local server harness: each server is started, driven with real AWS SDK v3
// requests, stopped, and its ports must no longer answer. A lane whose system packages are
// missing is skipped with one line saying what to install.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import { Readable } from 'node:stream';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  NotFound,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import {
  ConditionalCheckFailedException,
  CreateTableCommand,
  DescribeTableCommand,
  DynamoDBClient,
  PutItemCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import {
  ServerUnavailableError,
  addContentMd5Middleware,
  dynamoDbLocalAvailable,
  listeningPorts,
  portAnswers,
  sleep,
  startDynalite,
  startDynamoDbLocal,
  startLinkProxy,
  startS3rver,
  startSwift,
  swiftAvailable,
  type DynamoServer,
  type S3Server,
} from './index.js';

const MiB = 1024 * 1024;

async function timed<T>(t: TestContext, what: string, f: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const v = await f();
  t.diagnostic(`${what}: ${(performance.now() - t0).toFixed(0)} ms`);
  return v;
}

async function assertPortsClosed(ports: readonly number[]): Promise<void> {
  assert.ok(ports.length > 0, 'server recorded its ports');
  for (const p of ports) assert.equal(await portAnswers(p), false, `port ${p} still answers after stop()`);
}

async function bytesOf(body: { transformToByteArray(): Promise<Uint8Array> } | undefined): Promise<Buffer> {
  assert.ok(body, 'response has a body');
  return Buffer.from(await body.transformToByteArray());
}

async function s3Smoke(t: TestContext, server: S3Server, opts: { multipart: boolean; batchDelete: boolean; byteOrder: boolean }) {
  const s3 = addContentMd5Middleware(new S3Client(server.s3ClientConfig()));
  const Bucket = server.bucket;
  try {
    // PutObject + GetObject byte-exact (1 MiB random) + HeadObject.
    const body = randomBytes(MiB);
    await s3.send(new PutObjectCommand({ Bucket, Key: 'blob/one', Body: body }));
    const got = await s3.send(new GetObjectCommand({ Bucket, Key: 'blob/one' }));
    assert.ok((await bytesOf(got.Body)).equals(body), 'GetObject returns the exact bytes');
    const head = await s3.send(new HeadObjectCommand({ Bucket, Key: 'blob/one' }));
    assert.equal(head.ContentLength, MiB);

    // ListObjectsV2: StartAfter, then MaxKeys 2 over 5 keys with continuation tokens.
    const keys = [0, 1, 2, 3, 4].map((i) => `seg/${i.toString(16).padStart(16, '0')}`);
    for (const Key of keys) await s3.send(new PutObjectCommand({ Bucket, Key, Body: Key }));
    const after = await s3.send(new ListObjectsV2Command({ Bucket, Prefix: 'seg/', StartAfter: keys[1] }));
    assert.deepEqual(after.Contents?.map((o) => o.Key), keys.slice(2));
    const pages: string[][] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket, Prefix: 'seg/', MaxKeys: 2, ContinuationToken: token }));
      pages.push((page.Contents ?? []).map((o) => o.Key!));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
      if (page.IsTruncated) assert.ok(token, 'a truncated page has a continuation token');
    } while (token && pages.length < 10);
    assert.deepEqual(pages, [keys.slice(0, 2), keys.slice(2, 4), keys.slice(4)]);

    // DeleteObject, then the key is gone.
    await s3.send(new DeleteObjectCommand({ Bucket, Key: 'blob/one' }));
    await assert.rejects(s3.send(new GetObjectCommand({ Bucket, Key: 'blob/one' })), (e) => e instanceof NoSuchKey);
    await assert.rejects(s3.send(new HeadObjectCommand({ Bucket, Key: 'blob/one' })), (e) => e instanceof NotFound);

    if (opts.byteOrder) {
      // True UTF-8 byte order, also where one key is a prefix of another ('/' < '0'); s3rver fails this.
      const ordered = ['order/a', 'order/a/b', 'order/a0', 'order/b'];
      for (const Key of [...ordered].reverse()) await s3.send(new PutObjectCommand({ Bucket, Key, Body: Key }));
      const seen: string[] = [];
      let tok: string | undefined;
      do {
        const page = await s3.send(new ListObjectsV2Command({ Bucket, Prefix: 'order/', MaxKeys: 1, ContinuationToken: tok }));
        seen.push(...(page.Contents ?? []).map((o) => o.Key!));
        tok = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (tok && seen.length < 10);
      assert.deepEqual(seen, ordered);
      for (const Key of ordered) await s3.send(new DeleteObjectCommand({ Bucket, Key }));
    }

    if (opts.multipart) {
      // Two parts: 5 MiB (the minimum for a non-last part) + 1 byte.
      const p1 = randomBytes(5 * MiB);
      const p2 = randomBytes(1);
      const Key = 'multi/part';
      const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key }));
      assert.ok(UploadId);
      const r1 = await s3.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 1, Body: p1 }));
      const r2 = await s3.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 2, Body: p2 }));
      await s3.send(
        new CompleteMultipartUploadCommand({
          Bucket,
          Key,
          UploadId,
          MultipartUpload: { Parts: [{ PartNumber: 1, ETag: r1.ETag! }, { PartNumber: 2, ETag: r2.ETag! }] },
        }),
      );
      const whole = await bytesOf((await s3.send(new GetObjectCommand({ Bucket, Key }))).Body);
      assert.equal(whole.length, 5 * MiB + 1);
      assert.ok(whole.equals(Buffer.concat([p1, p2])), 'multipart object is byte-exact');
      await s3.send(new DeleteObjectCommand({ Bucket, Key }));
    }

    if (opts.batchDelete) {
      const res = await s3.send(new DeleteObjectsCommand({ Bucket, Delete: { Objects: keys.map((Key) => ({ Key })) } }));
      assert.deepEqual(res.Errors ?? [], []);
      assert.equal(res.Deleted?.length, keys.length);
      const left = await s3.send(new ListObjectsV2Command({ Bucket, Prefix: 'seg/' }));
      assert.equal(left.KeyCount ?? 0, 0);
    }
  } finally {
    s3.destroy();
  }
  const ports = listeningPorts(server);
  await timed(t, `${server.kind} stop`, () => server.stop());
  await assertPortsClosed(ports);
}

async function dynamoSmoke(t: TestContext, server: DynamoServer) {
  const db = new DynamoDBClient(server.dynamoClientConfig());
  const TableName = 'leases';
  try {
    await db.send(
      new CreateTableCommand({
        TableName,
        AttributeDefinitions: [{ AttributeName: 'db', AttributeType: 'S' }],
        KeySchema: [{ AttributeName: 'db', KeyType: 'HASH' }],
        BillingMode: 'PAY_PER_REQUEST',
      }),
    );
    for (let i = 0; ; i++) {
      const d = await db.send(new DescribeTableCommand({ TableName }));
      if (d.Table?.TableStatus === 'ACTIVE') break;
      assert.ok(i < 100, 'table becomes ACTIVE');
      await sleep(50);
    }

    const put = () =>
      db.send(
        new PutItemCommand({
          TableName,
          Item: { db: { S: 'main' }, epoch: { N: '1' }, owner: { S: 'node-a' } },
          ConditionExpression: 'attribute_not_exists(db)',
        }),
      );
    await put();
    await assert.rejects(put(), (e) => e instanceof ConditionalCheckFailedException);

    const bump = (expected: number) =>
      db.send(
        new UpdateItemCommand({
          TableName,
          Key: { db: { S: 'main' } },
          UpdateExpression: 'SET epoch = epoch + :one, #o = :me',
          ConditionExpression: 'epoch = :expected',
          ExpressionAttributeNames: { '#o': 'owner' },
          ExpressionAttributeValues: { ':one': { N: '1' }, ':expected': { N: String(expected) }, ':me': { S: 'node-b' } },
          ReturnValues: 'ALL_NEW',
        }),
      );
    const updated = await bump(1);
    assert.equal(updated.Attributes?.['epoch']?.N, '2');
    assert.equal(updated.Attributes?.['owner']?.S, 'node-b');
    await assert.rejects(bump(1), (e) => e instanceof ConditionalCheckFailedException);
  } finally {
    db.destroy();
  }
  const ports = listeningPorts(server);
  await timed(t, `${server.kind} stop`, () => server.stop());
  await assertPortsClosed(ports);
}

test('s3rver: S3 API round trip, pagination, multipart, batch delete; stop closes the port', async (t) => {
  const server = await timed(t, 's3rver start', () => startS3rver({ bucket: 'smoke' }));
  try {
    assert.equal(server.kind, 's3rver');
    await s3Smoke(t, server, { multipart: true, batchDelete: true, byteOrder: false });
  } finally {
    await server.stop();
  }
});

test('s3rver: a given dir keeps the bucket and its objects across a restart', async () => {
  const { mkdtemp, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const dir = await mkdtemp(`${tmpdir()}/walship-s3rver-keep-`);
  try {
    const a = await startS3rver({ dir, bucket: 'keep' });
    const s3a = new S3Client(a.s3ClientConfig());
    await s3a.send(new PutObjectCommand({ Bucket: 'keep', Key: 'k', Body: 'v1' }));
    s3a.destroy();
    await a.stop();
    const b = await startS3rver({ dir, bucket: 'keep' }); // bucket exists: start*() must not fail
    const s3b = new S3Client(b.s3ClientConfig());
    try {
      const got = await s3b.send(new GetObjectCommand({ Bucket: 'keep', Key: 'k' }));
      assert.equal(await got.Body?.transformToString(), 'v1');
    } finally {
      s3b.destroy();
      await b.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('s3rver: an overwrite is atomic: a GET during the PUT reads the old object, after it the new one', async () => {
  // s3rver 3.7.1 wrote over the object's file in place and could answer the PUT before the bytes were
  // written (CI read a just-written database.json back as invalid JSON). The launcher's putObject writes
  // a temporary file and renames it. Hold a PUT's body half sent: the old object must still read whole.
  const server = await startS3rver({ bucket: 'raw' });
  const s3 = new S3Client(server.s3ClientConfig());
  const read = async (): Promise<Buffer> => Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: 'raw', Key: 'k' }))).Body!.transformToByteArray());
  try {
    const v1 = Buffer.alloc(1 << 20, 1);
    const v2 = Buffer.alloc(2 << 20, 2);
    await s3.send(new PutObjectCommand({ Bucket: 'raw', Key: 'k', Body: v1 }));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const body = Readable.from(
      (async function* () {
        yield v2.subarray(0, 1 << 20);
        await released;
        yield v2.subarray(1 << 20);
      })(),
    );
    const put = s3.send(new PutObjectCommand({ Bucket: 'raw', Key: 'k', Body: body, ContentLength: v2.length }));
    await sleep(300); // the first half reaches the server (in place, it would be in the file by now)
    const during = await read();
    assert.ok(during.equals(v1), `during the PUT: the old object (got ${during.length} bytes, first byte ${during[0]})`);
    release();
    await put;
    const after = await read();
    assert.ok(after.equals(v2), `after the PUT: the new object (got ${after.length} bytes)`);
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: 'raw' }));
    assert.deepEqual((listed.Contents ?? []).map((o) => o.Key), ['k'], 'no temporary file is listed');
  } finally {
    s3.destroy();
    await server.stop();
  }
});

test('swift: S3 API round trip, pagination, multipart, batch delete; stop closes all ports', async (t) => {
  const av = swiftAvailable();
  if (!av.ok) {
    t.skip(av.reason);
    return;
  }
  const server = await timed(t, 'swift start', () => startSwift({ bucket: 'smoke' }));
  try {
    assert.equal(server.kind, 'swift');
    assert.equal(listeningPorts(server).length, 5);
    await s3Smoke(t, server, { multipart: true, batchDelete: true, byteOrder: true });
  } finally {
    await server.stop();
  }
});

test('dynalite: CreateTable, conditional PutItem, conditional UpdateItem; stop closes the port', async (t) => {
  const server = await timed(t, 'dynalite start', () => startDynalite());
  try {
    assert.equal(server.kind, 'dynalite');
    await dynamoSmoke(t, server);
  } finally {
    await server.stop();
  }
});

test('DynamoDB Local: CreateTable, conditional PutItem, conditional UpdateItem; stop closes the port', async (t) => {
  const av = dynamoDbLocalAvailable();
  if (!av.ok) {
    t.skip(av.reason);
    return;
  }
  const server = await timed(t, 'dynamodb-local start', () => startDynamoDbLocal());
  try {
    assert.equal(server.kind, 'dynamodb-local');
    await dynamoSmoke(t, server);
  } finally {
    await server.stop();
  }
});

test('two servers of one kind run side by side on different ports', async () => {
  const [a, b] = await Promise.all([startDynalite(), startDynalite()]);
  try {
    assert.notEqual(a.endpoint, b.endpoint);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

test('ServerUnavailableError names the server, the reason and the fix', () => {
  const e = new ServerUnavailableError({
    server: 'swift (s3api)',
    reason: 'swift-proxy exited (exit code 1)',
    command: '/usr/bin/python3 -c <swift launcher>',
    output: 'Traceback ...\nOSError: [Errno 98] Address already in use',
    install: 'apt-get install -y python3-swift memcached',
  });
  assert.equal(e.code, 'ERR_SERVER_UNAVAILABLE');
  assert.ok(e instanceof Error);
  assert.match(e.message, /swift \(s3api\) is unavailable: swift-proxy exited/);
  assert.match(e.message, /command: \/usr\/bin\/python3/);
  assert.match(e.message, /Address already in use/);
  assert.match(e.message, /to fix: apt-get install/);
});

test('a server that exits or never answers fails fast with its output, and leaves no process', async () => {
  const { ManagedProcess, toUnavailable } = await import('./index.js');
  const crash = new ManagedProcess('crasher', process.execPath, ['-e', "console.error('boom: no such thing'); process.exit(3)"]);
  const err1 = await crash.waitForLine(/^never$/, Date.now() + 10_000, 'readiness').catch((e: unknown) => e);
  const u1 = toUnavailable('crasher', err1, [crash], 'nothing to install');
  assert.match(u1.message, /crasher exited \(exit code 3\)/);
  assert.match(u1.message, /boom: no such thing/);

  const hang = new ManagedProcess('hanger', process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
  const t0 = Date.now();
  const err2 = await hang.waitForLine(/^never$/, Date.now() + 300, 'readiness').catch((e: unknown) => e);
  assert.ok(Date.now() - t0 < 5000, 'the start timeout is honoured');
  assert.match(toUnavailable('hanger', err2, [hang], 'x').message, /no answer within the start timeout/);
  await hang.stop();
  assert.throws(() => process.kill(hang.pid, 0), /ESRCH/, 'stop() killed the process');
});

test('a port taken by another process is detected, fails fast, and counts as a port clash', async () => {
  const net = await import('node:net');
  const { ManagedProcess, listensOn, waitForPort, toUnavailable, isPortClash } = await import('./index.js');
  const squatter = net.createServer();
  await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', () => resolve()));
  const port = (squatter.address() as import('node:net').AddressInfo).port;
  try {
    assert.equal(listensOn(process.pid, port), true);
    assert.equal(listensOn(process.pid, port === 65535 ? 1 : port + 1), false);
    // Like DynamoDB Local: prints a bind failure and stays alive.
    const src = "console.log('Exception in thread \"main\" java.io.IOException: Failed to bind'); setInterval(() => {}, 1000)";
    const proc = new ManagedProcess('binder', process.execPath, ['-e', src], { fatalPattern: /Failed to bind/ });
    const t0 = Date.now();
    const err = await waitForPort(port, { procs: [proc], owner: proc, timeoutMs: 20_000 }).catch((e: unknown) => e);
    assert.ok(Date.now() - t0 < 10_000, 'fails fast, not at the start timeout');
    const u = toUnavailable('binder', err, [proc], 'x');
    assert.match(u.message, /binder failed while waiting for 127\.0\.0\.1:\d+ to accept connections from binder/);
    assert.ok(isPortClash(u));
    await proc.stop();
    assert.equal(proc.exitInfo?.signal, 'SIGTERM');
  } finally {
    squatter.close();
  }
});

test('link proxy: s3rver behind a bandwidth-limited link; bytes intact and in order, the rate a ceiling over all connections', async () => {
  const server = await startS3rver({ bucket: 'link' });
  const rate = 8 * 2 ** 20;
  const link = await startLinkProxy({ upstream: server.endpoint, bytesPerSecond: rate });
  const direct = new S3Client(server.s3ClientConfig());
  const linked = new S3Client({ ...server.s3ClientConfig(), endpoint: link.endpoint });
  try {
    const bodies = [randomBytes(3 * 2 ** 20), randomBytes(3 * 2 ** 20)];
    for (const [i, body] of bodies.entries()) await direct.send(new PutObjectCommand({ Bucket: 'link', Key: `o${i}`, Body: body }));
    const t0 = performance.now();
    const got = await Promise.all(bodies.map(async (_, i) => Buffer.from((await (await linked.send(new GetObjectCommand({ Bucket: 'link', Key: `o${i}` }))).Body!.transformToByteArray()))));
    const seconds = (performance.now() - t0) / 1000;
    for (const [i, body] of bodies.entries()) assert.ok(got[i]!.equals(body), `object o${i} came through the link changed`);
    // 6 MiB at 8 MiB/s cannot take less than 0.75 s: a lower bound, which a slow machine cannot break.
    const floor = (2 * 3 * 2 ** 20) / rate;
    assert.ok(seconds >= floor * 0.95, `6 MiB through an 8 MiB/s link took ${seconds.toFixed(3)} s, under the ${floor} s the rate allows`);
  } finally {
    direct.destroy();
    linked.destroy();
    await link.stop();
    await server.stop();
  }
  await assertPortsClosed([link.port]);
});

test('no server process is left running after the tests above', async () => {
  const { liveProcessCount } = await import('./index.js');
  assert.equal(liveProcessCount(), 0);
});
