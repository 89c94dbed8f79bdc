// The lease's error contract where no DynamoDB server is needed: option validation, an endpoint
// that refuses connections, one that never answers, and one that only throttles.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { test } from 'node:test';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  LeaseError,
  checkLeaseTable,
  createDynamoLease,
  createLeaseTable,
  forceRelease,
  isLeaseError,
  type DynamoLeaseOptions,
} from '@walship/lease';
import { freePort } from './servers/index.js';

const base: DynamoLeaseOptions = {
  endpoint: 'http://127.0.0.1:9',
  region: 'us-east-1',
  credentials: { accessKeyId: 'x', secretAccessKey: 'y' },
  table: 'walship-leases',
  key: 's3://bucket/db',
  logger: () => undefined,
};

test('bad options fail at creation with ERR_INVALID_OPTION naming the option', async () => {
  const cases: [string, Record<string, unknown>][] = [
    ['table', { table: '' }],
    ['table', { table: 'a' }],
    ['table', { table: 'has space' }],
    ['key', { key: '' }],
    ['key', { key: 'x'.repeat(2049) }],
    ['owner', { owner: '' }],
    ['leaseMs', { leaseMs: 0 }],
    ['leaseMs', { leaseMs: -5 }],
    ['leaseMs', { leaseMs: 10.5 }],
    ['leaseMs', { leaseMs: Number.NaN }],
    ['leaseMs', { leaseMs: '1000' }],
    ['renewEveryMs', { leaseMs: 1000, renewEveryMs: 1000 }],
    ['renewEveryMs', { renewEveryMs: 0 }],
    ['requestTimeoutMs', { leaseMs: 1000, requestTimeoutMs: 1000 }],
    ['requestTimeoutMs', { requestTimeoutMs: Infinity }],
    ['marginMs', { leaseMs: 1000, marginMs: 1000 }],
    ['waitMs', { waitMs: -1 }],
    ['maxAttempts', { maxAttempts: 0 }],
    ['backoff.maxMs', { backoff: { baseMs: 100, maxMs: 10 } }],
    ['clock', { clock: 5 }],
    ['clock', { clock: () => Number.NaN }],
    ['logger', { logger: 'stderr' }],
    ['endpoint', { endpoint: 'not a url' }],
    ['endpoint', { client: new DynamoDBClient({ region: 'us-east-1' }), endpoint: 'http://127.0.0.1:1' }],
    ['client', { client: {}, endpoint: undefined }],
  ];
  for (const [option, patch] of cases) {
    const label = `${option} with ${Object.entries(patch)
      .map(([k, v]) => `${k}=${typeof v === 'object' && v !== null ? v.constructor.name : String(v).slice(0, 20)}`)
      .join(' ')}`;
    assert.throws(
      () => createDynamoLease({ ...base, ...patch } as DynamoLeaseOptions),
      (e) => {
        assert.ok(isLeaseError(e, 'ERR_INVALID_OPTION'), `${label}: ${String(e)}`);
        assert.equal(e.details['option'], option, label);
        assert.ok(e instanceof LeaseError && e instanceof Error);
        return true;
      },
    );
  }
  assert.throws(() => createDynamoLease(undefined as unknown as DynamoLeaseOptions), (e) => isLeaseError(e, 'ERR_INVALID_OPTION'));

  const lease = createDynamoLease(base);
  await assert.rejects(lease.acquire({ waitMs: -1 }), (e) => isLeaseError(e, 'ERR_INVALID_OPTION'));
  await assert.rejects(lease.acquire({ signal: 'stop' as unknown as AbortSignal }), (e) => isLeaseError(e, 'ERR_INVALID_OPTION'));
  assert.throws(() => lease.canStartUpload(-1), (e) => isLeaseError(e, 'ERR_INVALID_OPTION'));
  assert.throws(() => lease.abortSignalForUpload(Number.NaN), (e) => isLeaseError(e, 'ERR_INVALID_OPTION'));
  assert.throws(() => lease.startRenewing(), (e) => isLeaseError(e, 'ERR_LEASE_STATE'));
  await assert.rejects(lease.renew(), (e) => isLeaseError(e, 'ERR_LEASE_STATE'));
  assert.equal(lease.canStartUpload(0, 0), false);
  assert.equal(lease.abortSignalForUpload().aborted, true, 'a lease not held hands out aborted signals');
  await lease.release();
  assert.equal(lease.state, 'idle', 'release() of a lease never held is a no-op');
  lease.close();

  await assert.rejects(checkLeaseTable({ ...base, table: '' }), (e) => isLeaseError(e, 'ERR_INVALID_OPTION'));
  await assert.rejects(createLeaseTable({ table: 'ok-table', region: '' }), (e) => isLeaseError(e, 'ERR_INVALID_OPTION'));
  await assert.rejects(forceRelease({ ...base, key: '' }), (e) => isLeaseError(e, 'ERR_INVALID_OPTION'));

  const defaults = createDynamoLease({ ...base, owner: undefined });
  assert.match(defaults.owner, /^.+:\d+:[0-9a-f]{8}$/, 'default owner is host:pid:random');
  defaults.close();
});

test('an endpoint that refuses connections: ERR_LEASE_UNAVAILABLE quickly, after the retries', async () => {
  const port = await freePort();
  const lease = createDynamoLease({ ...base, endpoint: `http://127.0.0.1:${port}`, requestTimeoutMs: 200, maxAttempts: 3 });
  const t0 = performance.now();
  await assert.rejects(lease.acquire(), (e) => {
    assert.ok(isLeaseError(e, 'ERR_LEASE_UNAVAILABLE'), String(e));
    assert.equal(e.details['attempts'], 3);
    assert.equal(e.details['operation'], 'GetItem(acquire)');
    assert.equal(e.details['storeCode'], 'ECONNREFUSED');
    assert.ok(e.cause, 'the last SDK error is the cause');
    return true;
  });
  assert.ok(performance.now() - t0 < 15_000, `failed after its retries, without hanging (${(performance.now() - t0).toFixed(0)} ms)`);
  assert.equal(lease.state, 'idle');
  lease.close();
  await assert.rejects(checkLeaseTable({ ...base, endpoint: `http://127.0.0.1:${port}`, requestTimeoutMs: 200 }), (e) => isLeaseError(e, 'ERR_LEASE_UNAVAILABLE'));
});

test('an endpoint that accepts but never answers: each attempt times out, then ERR_LEASE_UNAVAILABLE', async () => {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  try {
    const lease = createDynamoLease({ ...base, endpoint: `http://127.0.0.1:${port}`, requestTimeoutMs: 150, maxAttempts: 2, backoff: { baseMs: 10, maxMs: 10 } });
    const t0 = performance.now();
    await assert.rejects(lease.acquire(), (e) => {
      assert.ok(isLeaseError(e, 'ERR_LEASE_UNAVAILABLE'), String(e));
      assert.equal(e.details['storeCode'], 'Timeout');
      return true;
    });
    const took = performance.now() - t0;
    // At least the two attempt timeouts; the upper bound only says it did not hang on the silent server.
    assert.ok(took >= 300 && took < 15_000, `two 150 ms attempts took ${took.toFixed(0)} ms`);
    lease.close();
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  }
});

test('an endpoint that only throttles: ERR_LEASE_THROTTLED after the retries', async () => {
  let requests = 0;
  const server = http.createServer((req, res) => {
    requests++;
    req.resume();
    req.on('end', () => {
      const body = JSON.stringify({
        __type: 'com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException',
        message: 'The level of configured provisioned throughput for the table was exceeded.',
      });
      res.writeHead(400, { 'content-type': 'application/x-amz-json-1.0', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  try {
    const lease = createDynamoLease({ ...base, endpoint: `http://127.0.0.1:${port}`, maxAttempts: 3, backoff: { baseMs: 5, maxMs: 20 } });
    await assert.rejects(lease.acquire(), (e) => {
      assert.ok(isLeaseError(e, 'ERR_LEASE_THROTTLED'), String(e));
      assert.equal(e.details['storeCode'], 'ProvisionedThroughputExceededException');
      assert.equal(e.details['attempts'], 3);
      return true;
    });
    assert.equal(requests, 3, 'our retries only (the SDK retries are off)');
    lease.close();
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});
