// The storage contract: one suite, run against every real S3 server the harness can start
// (s3rver always; OpenStack Swift with s3api when its system packages are installed). Each run
// works under a random prefix and leaves nothing behind.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createS3Storage, isStorageError, type ObjectStorage, type RequestEvent, type S3Storage, type S3StorageOptions } from '@walship/storage';
import { createRangeReader, type RangeReader } from '@walship/storage/range-get';
import { freePort, startS3rver, startSwift, swiftAvailable, type S3Server } from './servers/index.js';

const MiB = 1024 * 1024;

/** How a store answers `If-None-Match: *` on a PUT of an existing key. */
type ConditionalPut = 'enforced' | 'ignored' | 'unsupported';

interface ContractTarget {
  storage: ObjectStorage;
  events: RequestEvent[];
  prefix: string;
  conditionalPut: ConditionalPut;
  /** The same for CompleteMultipartUpload (Swift: 501 on PUT, but enforced here). */
  conditionalMultipart: ConditionalPut;
  /** The store's multipart ETag is S3's `md5-of-part-md5s-N` (s3rver makes a plain md5). */
  multipartEtag: boolean;
  /** The store implements AbortMultipartUpload (s3rver answers 405). */
  abortMultipart: boolean;
  /** The store verifies SigV4 signatures (s3rver only checks that the access key exists). */
  checksSignatures: boolean;
  /** The access key id the store knows. */
  keyId: string;
  /** Another storage on the same store with some options changed (error cases). */
  open(overrides: Partial<S3StorageOptions>): S3Storage;
  /** The SigV4 ranged reader a replica's fetch thread uses, on the same store. */
  rangeReader(): RangeReader;
}

/** Small retry settings so the failure cases finish in well under a second. */
const FAST_RETRY = { attempts: 3, baseDelayMs: 10, maxDelayMs: 50, requestTimeoutMs: 5000, connectTimeoutMs: 1000 };

function hex16(n: number): string {
  return n.toString(16).padStart(16, '0');
}

async function collect(it: AsyncIterable<{ key: string }>): Promise<string[]> {
  const out: string[] = [];
  for await (const o of it) out.push(o.key);
  return out;
}

async function* chunked(data: Uint8Array, sizes: readonly number[]): AsyncIterable<Uint8Array> {
  let off = 0;
  for (let i = 0; off < data.byteLength; i++) {
    const n = sizes[i % sizes.length]!;
    yield data.subarray(off, off + n);
    off += n;
  }
}

function expectCode(code: string) {
  return (e: unknown) => {
    assert.ok(isStorageError(e), `expected a StorageError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  };
}

async function runPool<T>(items: readonly T[], concurrency: number, f: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await f(items[next++]!);
    }),
  );
}

export function storageContract(t: () => ContractTarget): void {
  const k = (name: string) => `${t().prefix}${name}`;
  const eventsFor = (op: RequestEvent['operation'], from: number) => t().events.slice(from).filter((e) => e.operation === op);

  it('put/get round trip of empty, small and multi-MiB bodies is byte-exact', async () => {
    const { storage } = t();
    const bodies: [string, Uint8Array][] = [
      ['rt/empty', new Uint8Array(0)],
      ['rt/small', new TextEncoder().encode('hello, walship')],
      ['rt/large', randomBytes(3 * MiB + 17)],
    ];
    for (const [name, body] of bodies) {
      const r = await storage.put(k(name), body, { contentType: 'application/octet-stream' });
      assert.ok(r.etag, `${name}: put returns an etag`);
      const got = await storage.get(k(name));
      assert.ok(got, `${name}: get finds the object`);
      assert.ok(Buffer.from(got).equals(Buffer.from(body)), `${name}: bytes are identical`);
      const info = await storage.head(k(name));
      assert.equal(info?.size, body.byteLength);
      assert.equal(info?.key, k(name));
      assert.ok(info?.lastModified instanceof Date);
    }
  });

  it('get and head of a missing key return null', async () => {
    const { storage } = t();
    assert.equal(await storage.get(k('missing/nothing-here')), null);
    assert.equal(await storage.head(k('missing/nothing-here')), null);
    assert.equal(await storage.get(k('missing/nothing-here'), { range: { start: 0, end: 9 } }), null);
  });

  it('ranged get returns exactly the inclusive range', async () => {
    const { storage } = t();
    const body = randomBytes(1000);
    await storage.put(k('range/obj'), body);
    const cases: [number, number][] = [
      [0, 0],
      [100, 199],
      [990, 999],
      [0, 999],
    ];
    for (const [start, end] of cases) {
      const got = await storage.get(k('range/obj'), { range: { start, end } });
      assert.ok(got && Buffer.from(got).equals(body.subarray(start, end + 1)), `range ${start}-${end}`);
    }
    // An end past the object is clamped, as HTTP ranges are.
    const tail = await storage.get(k('range/obj'), { range: { start: 995, end: 5000 } });
    assert.ok(tail && Buffer.from(tail).equals(body.subarray(995)));
  });

  it('get reads a body into a given buffer when it fits, and into a new one when it does not', async () => {
    const { storage } = t();
    const key = k('get/into');
    const body = randomBytes(MiB + 5);
    await storage.put(key, body);
    const into = new Uint8Array(2 * MiB).fill(7);
    const whole = await storage.get(key, { into });
    assert.ok(whole && whole.buffer === into.buffer && whole.byteOffset === 0 && whole.length === body.length, 'a view of the buffer given, of the body’s length');
    assert.ok(Buffer.from(whole).equals(body));
    assert.equal(into[body.length], 7, 'nothing written past the body');
    const range = await storage.get(key, { range: { start: 100, end: 100 + 65535 }, into });
    assert.ok(range && range.buffer === into.buffer && Buffer.from(range).equals(body.subarray(100, 100 + 65536)), 'a ranged get, into the same buffer');
    const small = new Uint8Array(1000);
    const big = await storage.get(key, { into: small });
    assert.ok(big && big.buffer !== small.buffer && Buffer.from(big).equals(body), 'a body larger than the buffer is read as without it');
    assert.equal(await storage.get(k('get/into-missing'), { into }), null);
  });

  it('the ranged reader reads a range straight into a given buffer, and reads as before when the buffer does not fit the range', async () => {
    const { storage } = t();
    const key = k('range/into');
    const body = randomBytes(3 * MiB + 17);
    await storage.put(key, body);
    const reader = t().rangeReader();
    try {
      const into = new Uint8Array(2 * MiB);
      const got = await reader.get(key, { start: 1000, end: 1000 + into.length - 1 }, { into });
      assert.equal(got, into, 'the answer is the buffer given');
      assert.ok(Buffer.from(into).equals(body.subarray(1000, 1000 + into.length)), 'with the range’s bytes');
      // A range clamped by the object's end answers fewer bytes than the buffer holds: read as before.
      const tailInto = new Uint8Array(100);
      const tail = await reader.get(key, { start: body.length - 10, end: body.length + 89 }, { into: tailInto });
      assert.notEqual(tail, tailInto);
      assert.ok(tail && Buffer.from(tail).equals(body.subarray(body.length - 10)), 'the clamped tail');
      const wrongSize = new Uint8Array(10);
      const whole = await reader.get(key, { start: 0, end: 99 }, { into: wrongSize });
      assert.notEqual(whole, wrongSize, 'a buffer of another length is not used');
      assert.ok(whole && Buffer.from(whole).equals(body.subarray(0, 100)));
    } finally {
      reader.destroy();
    }
  });

  it('a get pinned to the ETag of an earlier read fails with ERR_STORAGE_OBJECT_CHANGED once the object is replaced (client and ranged reader)', async () => {
    const { storage } = t();
    const key = k('etag/pinned');
    await storage.put(key, randomBytes(4096));
    let etag: string | undefined;
    await storage.get(key, { range: { start: 0, end: 99 }, onEtag: (e) => (etag = e) });
    assert.ok(etag, 'the store answers a ranged GET with an ETag');
    const reader = t().rangeReader();
    try {
      let readerEtag: string | undefined;
      assert.equal((await reader.get(key, { start: 100, end: 199 }, { etag: etag!, onEtag: (e) => (readerEtag = e) }))?.length, 100, 'the same version reads');
      assert.equal(readerEtag, etag, 'both clients see the same ETag');
      await storage.put(key, randomBytes(4096));
      const changed = (e: Error & { code?: string; details?: { key?: string } }) => {
        assert.equal(e.code, 'ERR_STORAGE_OBJECT_CHANGED', e.message);
        assert.equal(e.details?.key, key);
        return true;
      };
      await assert.rejects(storage.get(key, { range: { start: 0, end: 99 }, etag: etag! }), changed);
      await assert.rejects(reader.get(key, { start: 0, end: 99 }, { etag: etag! }), changed);
      assert.equal((await storage.get(key, { range: { start: 0, end: 99 } }))?.length, 100, 'unpinned, the new version reads');
    } finally {
      reader.destroy();
    }
  });

  it('list: prefix, fixed-width hex keys in byte order, StartAfter, pagination', async () => {
    const { storage, events } = t();
    // Numbers whose hex digits cross 9/a and f/10 boundaries: byte order of the fixed-width hex
    // must equal numeric order ('9' 0x39 < 'a' 0x61).
    const nums = [0, 9, 10, 15, 16, 159, 160, 255, 256, 4095, 4096];
    const keys = nums.map((n) => k(`list/${hex16(n)}`));
    const shuffled = [...keys].sort(() => Math.random() - 0.5);
    for (const key of shuffled) await storage.put(key, new TextEncoder().encode(key));
    // Siblings that share the string prefix but not the listed "directory".
    await storage.put(k('listx'), new Uint8Array(1));
    await storage.put(k('lis'), new Uint8Array(1));

    assert.deepEqual(await collect(storage.list({ prefix: k('list/') })), keys);
    const listed = [];
    for await (const o of storage.list({ prefix: k('list/') })) listed.push(o);
    assert.equal(listed[0]?.size, keys[0]!.length, 'sizes are reported');

    const before = events.length;
    assert.deepEqual(await collect(storage.list({ prefix: k('list/'), pageSize: 2 })), keys);
    assert.equal(eventsFor('list', before).length, Math.ceil(keys.length / 2), 'one LIST per page of 2');

    assert.deepEqual(await collect(storage.list({ prefix: k('list/'), startAfter: keys[3] })), keys.slice(4));
    assert.deepEqual(await collect(storage.list({ prefix: k('list/'), startAfter: keys[3], pageSize: 2 })), keys.slice(4));
    // StartAfter need not be a key: every key strictly after the string, in byte order.
    assert.deepEqual(await collect(storage.list({ prefix: k('list/'), startAfter: k(`list/${hex16(0x9f).slice(0, 15)}`) })), keys.slice(5));
    assert.deepEqual(await collect(storage.list({ prefix: k('list/'), startAfter: keys[keys.length - 1] })), []);
    assert.deepEqual(await collect(storage.list({ prefix: k('nothing/') })), []);

    await storage.delete([...keys, k('listx'), k('lis')]);
    assert.deepEqual(await collect(storage.list({ prefix: k('lis') })), []);
  });

  it('delete: present and missing keys, and more than 1000 keys in batches', async () => {
    const { storage, events } = t();
    await storage.put(k('del/a'), new Uint8Array([1]));
    await storage.put(k('del/b'), new Uint8Array([2]));
    await storage.delete([k('del/a'), k('del/missing'), k('del/b')]);
    assert.equal(await storage.head(k('del/a')), null);
    assert.equal(await storage.head(k('del/b')), null);
    await storage.delete([k('del/never-existed')]);
    await storage.delete([]);

    const many = Array.from({ length: 1003 }, (_, i) => k(`bulk/${hex16(i)}`));
    await runPool(many, 16, (key) => storage.put(key, new Uint8Array([1])).then(() => undefined));
    const before = events.length;
    await storage.delete(many);
    const deletes = eventsFor('delete', before);
    // s3rver deletes a batch's keys concurrently and races itself removing the emptied directory
    // (ENOENT -> 500 InternalError); the retry finishes the batch. Count the batches, not attempts.
    const ok = deletes.filter((e) => e.status === 200 && e.error === undefined).map((e) => e.key);
    // Swift's s3api deletes key by key: on a loaded machine 1000 keys can outlast the 30 s request
    // timeout, and the retry then sends half as many keys (storage-faults tests that exactly).
    if (deletes.some((e) => e.error?.includes('Timeout'))) {
      assert.ok(ok.length > 2 && ok[0] === many[0], `a timed-out batch is retried in smaller chunks: ${JSON.stringify(deletes)}`);
    } else {
      assert.deepEqual(ok, [many[0], many[1000]], `two DeleteObjects batches (1000 + 3 keys): ${JSON.stringify(deletes)}`);
    }
    assert.deepEqual(await collect(storage.list({ prefix: k('bulk/') })), []);
  });

  it('putStream below one part is a single PUT; above, a byte-exact multipart upload', async () => {
    const { storage, events } = t();
    const small = randomBytes(MiB + 3);
    let before = events.length;
    const r1 = await storage.putStream(k('stream/small'), chunked(small, [65_536, 1, 12_345]), { partSize: 5 * MiB });
    assert.equal(r1.size, small.byteLength);
    assert.equal(eventsFor('put', before).length, 1);
    assert.equal(eventsFor('multipart', before).length, 0);
    assert.ok(Buffer.from((await storage.get(k('stream/small')))!).equals(small));

    // Exactly one part: still one PUT (the uploader only starts multipart once a second part has bytes).
    const exact = randomBytes(5 * MiB);
    before = events.length;
    await storage.putStream(k('stream/exact'), chunked(exact, [MiB]), { partSize: 5 * MiB });
    assert.equal(eventsFor('multipart', before).length, 0);
    assert.equal(eventsFor('put', before).length, 1);

    const big = randomBytes(12 * MiB);
    before = events.length;
    const r2 = await storage.putStream(k('stream/big'), chunked(big, [MiB + 1, 333_333, 7]), { partSize: 5 * MiB });
    assert.equal(r2.size, big.byteLength);
    const mp = eventsFor('multipart', before);
    assert.equal(mp.length, 5, 'create + 3 parts + complete');
    assert.deepEqual(
      mp.filter((e) => e.bytes > 0).map((e) => e.bytes),
      [5 * MiB, 5 * MiB, 2 * MiB],
    );
    if (t().multipartEtag) assert.match(r2.etag ?? '', /-3"?$/, 'a multipart ETag names its part count');
    else assert.ok(r2.etag, 'complete returns an etag');
    const got = await storage.get(k('stream/big'));
    assert.ok(got && Buffer.from(got).equals(big), 'multipart object is byte-exact');
    assert.equal((await storage.head(k('stream/big')))?.size, big.byteLength);
    await storage.delete([k('stream/small'), k('stream/exact'), k('stream/big')]);
  });

  it('putStream aborts the multipart upload when the body fails', async () => {
    const { storage, events, abortMultipart } = t();
    const before = events.length;
    async function* failing(): AsyncIterable<Uint8Array> {
      yield randomBytes(6 * MiB);
      throw new Error('source broke');
    }
    await assert.rejects(storage.putStream(k('stream/failed'), failing(), { partSize: 5 * MiB }), /source broke/);
    const mp = eventsFor('multipart', before);
    assert.equal(mp.length, 3, 'create + part 1 + abort');
    // Best effort: a store without AbortMultipartUpload keeps the parts; the error is the source's.
    assert.equal(mp[2]?.status, abortMultipart ? 204 : 405, 'AbortMultipartUpload was sent');
    assert.equal(await storage.head(k('stream/failed')), null);
  });

  it('ifNoneMatch on put and multipart: the store enforces it, ignores it, or says it cannot', async () => {
    const { storage, conditionalPut, conditionalMultipart, events } = t();
    const first = new TextEncoder().encode('first');
    const second = new TextEncoder().encode('second');
    if (conditionalPut === 'unsupported') {
      // Swift's s3api answers 501 NotImplemented to any conditional PUT, even of a new key.
      await assert.rejects(storage.put(k('cond/a'), first, { ifNoneMatch: true }), expectCode('ERR_STORAGE_UNSUPPORTED'));
      assert.equal(await storage.head(k('cond/a')), null, 'nothing was written');
    } else {
      await storage.put(k('cond/a'), first, { ifNoneMatch: true });
      if (conditionalPut === 'enforced') {
        await assert.rejects(storage.put(k('cond/a'), second, { ifNoneMatch: true }), expectCode('ERR_STORAGE_PRECONDITION_FAILED'));
        assert.ok(Buffer.from((await storage.get(k('cond/a')))!).equals(first));
      } else {
        // s3rver ignores If-None-Match: the second create-only PUT silently overwrites.
        await storage.put(k('cond/a'), second, { ifNoneMatch: true });
        assert.ok(Buffer.from((await storage.get(k('cond/a')))!).equals(second));
      }
    }
    // Multipart: If-None-Match travels on CompleteMultipartUpload, which Swift does enforce.
    const big = randomBytes(11 * MiB);
    await storage.put(k('cond/m'), first);
    const attempt = storage.putStream(k('cond/m'), chunked(big, [MiB]), { partSize: 5 * MiB, ifNoneMatch: true });
    if (conditionalMultipart === 'enforced') {
      await assert.rejects(attempt, expectCode('ERR_STORAGE_PRECONDITION_FAILED'));
      assert.equal((await storage.head(k('cond/m')))?.size, first.byteLength, 'the existing object is untouched');
      const created = await storage.putStream(k('cond/m2'), chunked(big, [MiB]), { partSize: 5 * MiB, ifNoneMatch: true });
      assert.equal(created.size, big.byteLength, 'a new key is created');
    } else if (conditionalMultipart === 'unsupported') {
      await assert.rejects(attempt, expectCode('ERR_STORAGE_UNSUPPORTED'));
    } else {
      await attempt;
      assert.equal((await storage.head(k('cond/m')))?.size, big.byteLength, 's3rver overwrote the object');
    }
    await storage.delete([k('cond/m'), k('cond/m2')]);

    // With conditionalWrites: false the storage refuses before sending anything.
    const strict = t().open({ conditionalWrites: false });
    try {
      const before = events.length;
      await assert.rejects(strict.put(k('cond/b'), first, { ifNoneMatch: true }), expectCode('ERR_STORAGE_UNSUPPORTED'));
      assert.equal(events.length, before, 'no request was made');
    } finally {
      strict.destroy();
    }
    await storage.delete([k('cond/a')]);
  });

  it('missing bucket: ERR_STORAGE_NO_BUCKET with what to do', async () => {
    const s = t().open({ bucket: `walship-missing-${randomBytes(4).toString('hex')}`, retry: FAST_RETRY });
    try {
      await assert.rejects(s.check(), (e) => {
        expectCode('ERR_STORAGE_NO_BUCKET')(e);
        assert.match((e as Error).message, /create the bucket or fix s3\.bucket/);
        assert.equal((e as { details: { attempts: number } }).details.attempts, 1, 'not retried');
        return true;
      });
      await assert.rejects(s.put(k('x'), new Uint8Array(1)), expectCode('ERR_STORAGE_NO_BUCKET'));
      await assert.rejects(s.get(k('x')), expectCode('ERR_STORAGE_NO_BUCKET'));
      await assert.rejects(collect(s.list({ prefix: t().prefix })), expectCode('ERR_STORAGE_NO_BUCKET'));
      // HEAD responses have no body, so a missing bucket looks like a missing key: check() at open.
      assert.equal(await s.head(k('x')), null);
    } finally {
      s.destroy();
    }
  });

  it('wrong credentials: ERR_STORAGE_ACCESS_DENIED', async () => {
    const s = t().open({ credentials: { accessKeyId: 'not-a-key', secretAccessKey: 'not-a-secret' }, retry: FAST_RETRY });
    try {
      await assert.rejects(s.check(), expectCode('ERR_STORAGE_ACCESS_DENIED'));
      await assert.rejects(s.put(k('x'), new Uint8Array(1)), expectCode('ERR_STORAGE_ACCESS_DENIED'));
      await assert.rejects(s.get(k('x')), expectCode('ERR_STORAGE_ACCESS_DENIED'));
    } finally {
      s.destroy();
    }
    // A known access key with the wrong secret: only a store that verifies SigV4 notices.
    const known = t().keyId;
    const wrongSecret = t().open({ credentials: { accessKeyId: known, secretAccessKey: 'not-the-secret' }, retry: FAST_RETRY });
    try {
      if (t().checksSignatures) {
        await assert.rejects(wrongSecret.check(), (e) => {
          expectCode('ERR_STORAGE_ACCESS_DENIED')(e);
          assert.equal((e as { details: { storeCode?: string } }).details.storeCode, 'SignatureDoesNotMatch');
          return true;
        });
      } else {
        // s3rver 3.7.1 looks the access key up but never computes SigV4 signatures.
        await wrongSecret.check();
      }
    } finally {
      wrongSecret.destroy();
    }
  });

  it('unreachable endpoint: ERR_STORAGE_UNAVAILABLE after the configured attempts, quickly', async () => {
    const events: RequestEvent[] = [];
    const port = await freePort(); // free a moment ago, nothing listens on it
    const s = t().open({ endpoint: `http://127.0.0.1:${port}`, retry: FAST_RETRY, onRequest: (e) => events.push(e) });
    try {
      const t0 = performance.now();
      await assert.rejects(s.check(), (e) => {
        expectCode('ERR_STORAGE_UNAVAILABLE')(e);
        assert.equal((e as { details: { attempts: number } }).details.attempts, 3);
        assert.match((e as Error).message, /ECONNREFUSED/);
        return true;
      });
      assert.ok(performance.now() - t0 < 2000, 'fails fast');
      assert.deepEqual(
        events.map((e) => [e.attempt, e.status]),
        [
          [1, 0],
          [2, 0],
          [3, 0],
        ],
      );
    } finally {
      s.destroy();
    }
  });
}

interface Lane {
  kind: S3Server['kind'];
  start(): Promise<S3Server>;
  conditionalPut: ConditionalPut;
  conditionalMultipart: ConditionalPut;
  multipartEtag: boolean;
  abortMultipart: boolean;
  checksSignatures: boolean;
  skip?: string;
}

function lanes(): Lane[] {
  const swift = swiftAvailable();
  return [
    {
      kind: 's3rver',
      start: () => startS3rver({ bucket: 'walship-contract' }),
      conditionalPut: 'ignored',
      conditionalMultipart: 'ignored',
      multipartEtag: false,
      abortMultipart: false,
      checksSignatures: false,
    },
    {
      kind: 'swift',
      start: () => startSwift({ bucket: 'walship-contract' }),
      conditionalPut: 'unsupported',
      conditionalMultipart: 'enforced',
      multipartEtag: true,
      abortMultipart: true,
      checksSignatures: true,
      ...(swift.ok ? {} : { skip: `Swift lane skipped: ${swift.reason}` }),
    },
  ];
}

for (const lane of lanes()) {
  describe(`storage contract: ${lane.kind}`, lane.skip !== undefined ? { skip: lane.skip } : {}, () => {
    let server: S3Server | undefined;
    let target: ContractTarget | undefined;
    let storage: S3Storage | undefined;
    const opened: S3Storage[] = [];

    before(async () => {
      server = await lane.start();
      const s = server;
      const events: RequestEvent[] = [];
      const base: S3StorageOptions = {
        bucket: s.bucket,
        endpoint: s.endpoint,
        region: s.region,
        credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey },
      };
      const prefix = `contract-${randomBytes(6).toString('hex')}/`;
      storage = createS3Storage({ ...base, prefix, onRequest: (e) => events.push(e) });
      await storage.check();
      target = {
        storage,
        events,
        prefix,
        conditionalPut: lane.conditionalPut,
        conditionalMultipart: lane.conditionalMultipart,
        multipartEtag: lane.multipartEtag,
        abortMultipart: lane.abortMultipart,
        checksSignatures: lane.checksSignatures,
        keyId: s.accessKeyId,
        rangeReader: () => createRangeReader({ ...base, credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey } }),
        open(overrides) {
          const o = createS3Storage({ ...base, prefix, onRequest: (e) => events.push(e), ...overrides });
          opened.push(o);
          return o;
        },
      };
    });

    after(async () => {
      try {
        if (storage && target) {
          const left = await collect(storage.list({ prefix: target.prefix }));
          await storage.delete(left);
          assert.deepEqual(await collect(storage.list({ prefix: target.prefix })), [], 'the prefix is empty after the suite');
        }
      } finally {
        storage?.destroy();
        for (const o of opened) o.destroy();
        await server?.stop();
      }
    });

    storageContract(() => {
      assert.ok(target, 'the server started');
      return target;
    });
  });
}
