// S3Storage through the fault proxy in front of s3rver: resets before and after the store applied
// the request, 500s, 503 SlowDown, responses held past the timeout and truncated bodies, at a 20%
// rate, must all be absorbed by the retry layer; an outage must fail within the bounded attempts
// with ERR_STORAGE_UNAVAILABLE and recover when the endpoint is back.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createS3Storage, isStorageError, type RequestEvent, type RetryOptions, type S3Storage } from '@walship/storage';
import { FAULT_KINDS, startFaultProxy, startS3rver, type FaultProxy, type S3Server } from './servers/index.js';

const REQUEST_TIMEOUT_MS = 800;
/** Longer than the client's timeout: a held request must end in a retry, never a hang. */
const DELAY_MS = 2500;

describe('storage through the fault proxy (s3rver)', () => {
  let server: S3Server;
  let proxy: FaultProxy;
  const events: RequestEvent[] = [];
  const storages: S3Storage[] = [];
  const prefix = `faults-${randomBytes(6).toString('hex')}/`;

  const open = (retry: RetryOptions): S3Storage => {
    const s = createS3Storage({
      bucket: server.bucket,
      prefix,
      endpoint: proxy.endpoint,
      region: server.region,
      credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
      retry: { requestTimeoutMs: REQUEST_TIMEOUT_MS, connectTimeoutMs: 1000, ...retry },
      onRequest: (e) => events.push(e),
    });
    storages.push(s);
    return s;
  };

  before(async () => {
    server = await startS3rver({ bucket: 'walship-faults' });
    proxy = await startFaultProxy({ target: server.endpoint, seed: 20240917, delayMs: DELAY_MS });
  });

  after(async () => {
    for (const s of storages) s.destroy();
    await proxy?.stop();
    await server?.stop();
  });

  it('200 puts and gets at a 20% fault rate of every kind succeed byte-exact', async (t) => {
    // Eight attempts at 20% per request: a request fails for good with p = 0.2^8 (2.6e-6).
    const storage = open({ attempts: 8, baseDelayMs: 5, maxDelayMs: 100 });
    const objects = Array.from({ length: 200 }, (_, i) => {
      const size = i % 20 === 0 ? 256 * 1024 + i : (i * 977) % 9000;
      return { key: `${prefix}obj/${i.toString(16).padStart(8, '0')}`, body: randomBytes(size) };
    });
    proxy.setFaultRate(0.2, FAULT_KINDS);
    const from = events.length;
    const t0 = performance.now();
    // One at a time: the proxy's seeded draw then meets the requests in a fixed order, so every
    // run injects the same faults into the same requests.
    for (const o of objects) await storage.put(o.key, o.body);
    // Every other get reads into one reused buffer (GetOptions.into, as restore's snapshot pieces
    // are read): an attempt cut mid-body must leave nothing the next attempt does not overwrite.
    const into = new Uint8Array(300 * 1024);
    let intoUsed = 0;
    for (const [i, o] of objects.entries()) {
      // Even i: the 256 KiB objects (i % 20 === 0) are among them, bodies of several chunks.
      const got = await storage.get(o.key, i % 2 === 0 ? { into } : {});
      assert.ok(got && Buffer.from(got).equals(o.body), `${o.key} is byte-exact`);
      if (got.buffer === into.buffer) intoUsed++;
    }
    assert.equal(intoUsed, 100, 'the gets given a buffer read into it');
    const listed: string[] = [];
    for await (const o of storage.list({ prefix: `${prefix}obj/`, pageSize: 50 })) listed.push(o.key);
    assert.deepEqual(listed, objects.map((o) => o.key), 'list through faults sees every key once, in order');
    await storage.delete(objects.map((o) => o.key));
    proxy.setFaultRate(0);
    const left: string[] = [];
    for await (const o of storage.list({ prefix: `${prefix}obj/` })) left.push(o.key);
    assert.deepEqual(left, [], 'delete through faults removed everything');

    const counts = { ...proxy.counts };
    const seen = events.slice(from);
    const failed = seen.filter((e) => e.error !== undefined);
    const injected = FAULT_KINDS.reduce((n, k) => n + counts[k], 0);
    t.diagnostic(`faults: ${JSON.stringify(counts)}; ${seen.length} attempts, ${failed.length} failed, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const kinds = new Map<string, number>();
    for (const e of failed) {
      const kind = `${e.operation} ${e.status} ${(e.error ?? '').split(':')[0]}`;
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    }
    t.diagnostic(`failed attempts by operation, status, error: ${JSON.stringify(Object.fromEntries(kinds))}`);
    for (const k of FAULT_KINDS) assert.ok(counts[k] > 0, `faults of kind ${k} were injected`);
    assert.ok(failed.length >= injected, `every injected fault failed an attempt (${failed.length} failed, ${injected} injected)`);
    assert.equal(seen.filter((e) => e.status === 503).length, counts['error-503'], '503 SlowDown attempts were reported with their status');
    // >=: s3rver adds real 500s of its own (its DeleteObjects race, see the contract suite).
    assert.ok(seen.filter((e) => e.status === 500).length >= counts['error-500'], '500 attempts were reported with their status');
    assert.ok(seen.some((e) => e.attempt > 1 && e.error === undefined), 'retries succeeded');
    const timeouts = failed.filter((e) => e.status === 0 && e.durationMs >= REQUEST_TIMEOUT_MS * 0.9);
    assert.ok(timeouts.length >= counts.delay, 'held requests were cut at the timeout');
    assert.ok(timeouts.every((e) => e.durationMs < DELAY_MS), 'no attempt waited out the delay');
  });

  it('down: ERR_STORAGE_UNAVAILABLE within the bounded attempts, then success once back', async () => {
    const storage = open({ attempts: 4, baseDelayMs: 10, maxDelayMs: 50 });
    const key = `${prefix}down/a`;
    const body = randomBytes(1000);
    proxy.setFaultRate(0);
    proxy.setDown(true);
    const downBefore = proxy.counts.down;
    const from = events.length;
    const t0 = performance.now();
    await assert.rejects(storage.put(key, body), (e) => {
      assert.ok(isStorageError(e, 'ERR_STORAGE_UNAVAILABLE'), String(e));
      assert.equal(e.details.attempts, 4);
      assert.equal(e.details.operation, 'put');
      assert.equal(e.details.key, key);
      assert.match(e.message, /gave up after 4 attempt/);
      assert.ok(e.cause, 'the last cause is kept');
      return true;
    });
    assert.ok(performance.now() - t0 < 3000, 'fails within the bounded attempts');
    assert.equal(events.length - from, 4, 'four attempts reported');
    assert.ok(proxy.counts.down >= downBefore + 4, 'every attempt met the outage');
    await assert.rejects(storage.get(key), (e) => isStorageError(e, 'ERR_STORAGE_UNAVAILABLE'));

    proxy.setDown(false);
    await storage.put(key, body);
    const got = await storage.get(key);
    assert.ok(got && Buffer.from(got).equals(body));
    await storage.delete([key]);
  });

  it('a response held past the timeout gives a retry, not a hang; always held gives ERR_STORAGE_TIMEOUT', async () => {
    // A timeout long enough that an attempt meant to succeed does not time out on a loaded machine.
    const storage = open({ attempts: 3, baseDelayMs: 10, maxDelayMs: 50, requestTimeoutMs: 1000 });
    const key = `${prefix}delay/a`;
    const body = randomBytes(4096);
    proxy.setFaultRate(0);

    proxy.script('delay');
    let from = events.length;
    let t0 = performance.now();
    await storage.put(key, body);
    const elapsed = performance.now() - t0;
    // A put that waited out the delay would take at least DELAY_MS.
    assert.ok(elapsed < DELAY_MS, `put finished in ${elapsed.toFixed(0)} ms, before the ${DELAY_MS} ms delay`);
    const puts = events.slice(from);
    assert.deepEqual(
      puts.map((e) => [e.attempt, e.status, e.error === undefined]),
      [
        [1, 0, false],
        [2, 200, true],
      ],
    );
    assert.ok(puts[0]!.durationMs >= 990 && puts[0]!.durationMs < DELAY_MS, `the first attempt was cut at its 1000 ms timeout, not by the ${DELAY_MS} ms delay (${puts[0]!.durationMs.toFixed(0)} ms)`);

    proxy.script('delay', 'delay', 'delay');
    from = events.length;
    t0 = performance.now();
    await assert.rejects(storage.get(key), (e) => {
      assert.ok(isStorageError(e, 'ERR_STORAGE_TIMEOUT'), String(e));
      assert.equal(e.details.attempts, 3);
      assert.match(e.message, /requestTimeoutMs/);
      return true;
    });
    // Three attempts that waited out the delay would take 3 x DELAY_MS.
    assert.ok(performance.now() - t0 < 3 * DELAY_MS, 'three timeouts, no hang');
    assert.equal(events.length - from, 3);

    // A body cut short of its Content-Length is retried, not returned short.
    proxy.script('truncate');
    from = events.length;
    const got = await storage.get(key);
    assert.ok(got && Buffer.from(got).equals(body));
    assert.equal(events.slice(from).length, 2, 'one truncated attempt, one good');

    // A PUT applied by the store whose response was lost: the retry writes the same bytes again.
    proxy.script('reset-after');
    from = events.length;
    await storage.put(`${prefix}delay/b`, body);
    assert.deepEqual(
      events.slice(from).map((e) => [e.attempt, e.status]),
      [
        [1, 0],
        [2, 200],
      ],
    );
    await storage.delete([key, `${prefix}delay/b`]);
  });

  it('a DeleteObjects held past the timeout is retried with half its keys, and later deletes keep the smaller size', async () => {
    // A generous timeout: an attempt of 500 keys must not time out on a loaded machine (a second
    // halving would make four requests where the test expects three).
    const storage = open({ attempts: 3, baseDelayMs: 10, maxDelayMs: 50, requestTimeoutMs: 10_000 });
    const many = Array.from({ length: 1003 }, (_, i) => `${prefix}halve/${i.toString(16).padStart(16, '0')}`);
    proxy.setFaultRate(0);
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < many.length) await storage.put(many[next++]!, new Uint8Array([1]));
      }),
    );
    proxy.setDelayMs(15_000);
    try {
      proxy.script('delay');
      let from = events.length;
      await storage.delete(many);
      const deletes = events.slice(from).filter((e) => e.operation === 'delete');
      assert.deepEqual(
        deletes[0] && [deletes[0].key, deletes[0].attempt, deletes[0].status],
        [many[0], 1, 0],
        'the first DeleteObjects (1000 keys) timed out',
      );
      // s3rver may answer a batch with a transient per-key error (it races itself removing the
      // emptied directory): count the requests that succeeded, each the start of one chunk.
      const ok = deletes.filter((e) => e.status === 200 && e.error === undefined).map((e) => e.key);
      assert.deepEqual(ok, [many[0], many[500], many[1000]], 'then chunks of 500: keys 0-499, 500-999, 1000-1002');
      const left: string[] = [];
      for await (const o of storage.list({ prefix: `${prefix}halve/` })) left.push(o.key);
      assert.deepEqual(left, [], 'every key is gone');

      // Missing keys delete fine: 600 of them now go as two requests of at most 500.
      const missing = Array.from({ length: 600 }, (_, i) => `${prefix}halve-missing/${i.toString(16).padStart(16, '0')}`);
      from = events.length;
      await storage.delete(missing);
      const again = events.slice(from).filter((e) => e.operation === 'delete' && e.status === 200 && e.error === undefined).map((e) => e.key);
      assert.deepEqual(again, [missing[0], missing[500]]);
    } finally {
      proxy.clearScript();
      proxy.setDelayMs(DELAY_MS);
    }
  });
});
