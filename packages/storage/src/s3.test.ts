// S3Storage against a tiny in-process S3 stand-in, for the behaviours no local server has: a store
// that enforces If-None-Match, one without DeleteObjects, per-key DeleteObjects errors, a store that
// ignores Range. The real-server contract suite lives in test/src/storage-contract.test.ts.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, test } from 'node:test';
import { isStorageError } from './errors.js';
import { createS3Storage, type S3Storage, type S3StorageOptions } from './s3.js';
import type { RequestEvent } from './types.js';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** Path-style, no auth, just enough S3 for these cases. */
class FakeS3 {
  readonly objects = new Map<string, Buffer>();
  readonly seen: Seen[] = [];
  /** Store the next PUT, then cut the connection before answering. */
  losePutResponses = 0;
  /** Complete the next multipart uploads, then cut the connection before answering. */
  loseCompleteResponses = 0;
  readonly uploads = new Map<string, Buffer[]>();
  readonly etags = new Map<string, string>();
  /** After a lost PUT response, another writer stores these bytes. */
  replaceAfterLoss: Buffer | undefined;
  deleteObjects: 'ok' | 'not-implemented' | 'flaky-keys' | 'denied-keys' = 'ok';
  ignoreRange = false;
  private flaked = new Set<string>();
  private server = http.createServer((req, res) => this.handle(req, res));
  endpoint = '';

  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.endpoint = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }

  reset(): void {
    this.objects.clear();
    this.seen.length = 0;
    this.losePutResponses = 0;
    this.replaceAfterLoss = undefined;
    this.loseCompleteResponses = 0;
    this.uploads.clear();
    this.etags.clear();
    this.deleteObjects = 'ok';
    this.ignoreRange = false;
    this.flaked.clear();
  }

  private error(res: http.ServerResponse, status: number, code: string): void {
    const body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${code}</Message></Error>`;
    res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const url = new URL(req.url ?? '/', 'http://x');
      this.seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const [, bucket, ...rest] = url.pathname.split('/');
      const key = decodeURIComponent(rest.join('/'));
      if (bucket !== 'bkt') return this.error(res, 404, 'NoSuchBucket');
      if (req.method === 'POST' && url.searchParams.has('delete')) return this.batchDelete(body, res);
      if (url.searchParams.has('uploads') || url.searchParams.has('uploadId')) return this.multipart(req, res, url, key, body);
      if (req.method === 'PUT') {
        if (req.headers['if-none-match'] === '*' && this.objects.has(key)) return this.error(res, 412, 'PreconditionFailed');
        this.objects.set(key, body);
        this.etags.delete(key);
        if (this.losePutResponses > 0) {
          this.losePutResponses--;
          if (this.replaceAfterLoss) this.objects.set(key, this.replaceAfterLoss);
          req.socket.destroy();
          return;
        }
        res.writeHead(200, { etag: `"${createHash('md5').update(body).digest('hex')}"`, 'content-length': 0 });
        return res.end();
      }
      if (req.method === 'DELETE') {
        this.objects.delete(key);
        this.etags.delete(key);
        res.writeHead(204);
        return res.end();
      }
      const obj = this.objects.get(key);
      if (!obj) return req.method === 'HEAD' ? (res.writeHead(404), res.end()) : this.error(res, 404, 'NoSuchKey');
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      if (m && !this.ignoreRange) {
        const start = Number(m[1]);
        const end = Math.min(Number(m[2]), obj.length - 1);
        res.writeHead(206, { 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${obj.length}` });
        return res.end(obj.subarray(start, end + 1));
      }
      res.writeHead(200, { 'content-length': obj.length, etag: this.etags.get(key) ?? `"${createHash('md5').update(obj).digest('hex')}"` });
      res.end(req.method === 'HEAD' ? undefined : obj);
    });
  }

  private xml(res: http.ServerResponse, xml: string, headers: http.OutgoingHttpHeaders = {}): void {
    res.writeHead(200, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(xml), ...headers });
    res.end(xml);
  }

  private multipart(req: http.IncomingMessage, res: http.ServerResponse, url: URL, key: string, body: Buffer): void {
    const md5 = (b: Buffer) => createHash('md5').update(b).digest();
    if (req.method === 'POST' && url.searchParams.has('uploads')) {
      const id = `u${this.uploads.size + 1}`;
      this.uploads.set(id, []);
      return this.xml(res, `<InitiateMultipartUploadResult><Bucket>bkt</Bucket><Key>${key}</Key><UploadId>${id}</UploadId></InitiateMultipartUploadResult>`);
    }
    const id = url.searchParams.get('uploadId') ?? '';
    const parts = this.uploads.get(id);
    if (!parts) return this.error(res, 404, 'NoSuchUpload');
    if (req.method === 'PUT') {
      parts[Number(url.searchParams.get('partNumber')) - 1] = body;
      res.writeHead(200, { etag: `"${md5(body).toString('hex')}"`, 'content-length': 0 });
      res.end();
      return;
    }
    if (req.method === 'DELETE') {
      this.uploads.delete(id);
      res.writeHead(204);
      res.end();
      return;
    }
    if (req.headers['if-none-match'] === '*' && this.objects.has(key)) return this.error(res, 412, 'PreconditionFailed');
    this.uploads.delete(id);
    this.objects.set(key, Buffer.concat(parts));
    const etag = `"${createHash('md5').update(Buffer.concat(parts.map(md5))).digest('hex')}-${parts.length}"`;
    this.etags.set(key, etag);
    if (this.loseCompleteResponses > 0) {
      this.loseCompleteResponses--;
      req.socket.destroy();
      return;
    }
    this.xml(res, `<CompleteMultipartUploadResult><Bucket>bkt</Bucket><Key>${key}</Key><ETag>${etag}</ETag></CompleteMultipartUploadResult>`);
  }

  private batchDelete(body: Buffer, res: http.ServerResponse): void {
    if (this.deleteObjects === 'not-implemented') return this.error(res, 501, 'NotImplemented');
    const keys = [...body.toString('utf8').matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1]!);
    const errors: string[] = [];
    for (const key of keys) {
      if (this.deleteObjects === 'flaky-keys' && key.endsWith('flaky') && !this.flaked.has(key)) {
        this.flaked.add(key);
        errors.push(`<Error><Key>${key}</Key><Code>InternalError</Code><Message>try again</Message></Error>`);
      } else if (this.deleteObjects === 'denied-keys' && key.endsWith('locked')) {
        errors.push(`<Error><Key>${key}</Key><Code>AccessDenied</Code><Message>no</Message></Error>`);
      } else {
        this.objects.delete(key);
      }
    }
    const xml = `<?xml version="1.0" encoding="UTF-8"?><DeleteResult>${errors.join('')}</DeleteResult>`;
    res.writeHead(200, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(xml) });
    res.end(xml);
  }
}

describe('S3Storage against a stand-in store', () => {
  const fake = new FakeS3();
  const events: RequestEvent[] = [];
  const storages: S3Storage[] = [];
  const open = (over: Partial<S3StorageOptions> = {}): S3Storage => {
    const s = createS3Storage({
      bucket: 'bkt',
      endpoint: fake.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
      retry: { attempts: 3, baseDelayMs: 1, maxDelayMs: 5, requestTimeoutMs: 2000 },
      onRequest: (e) => events.push(e),
      ...over,
    });
    storages.push(s);
    return s;
  };
  const enc = (s: string) => new TextEncoder().encode(s);

  before(() => fake.start());
  beforeEach(() => {
    fake.reset();
    events.length = 0;
  });
  after(async () => {
    for (const s of storages) s.destroy();
    await fake.stop();
  });

  test('bodies go out as sized bytes on a path-style URL, with no aws-chunked or checksum trailer', async () => {
    const s = open();
    await s.put('seg/0001', enc('abc'));
    const put = fake.seen[0]!;
    assert.equal(put.url.split('?')[0], '/bkt/seg/0001');
    assert.equal(put.headers['content-length'], '3');
    assert.equal(put.headers['content-encoding'], undefined);
    assert.equal(put.headers['x-amz-trailer'], undefined);
    assert.equal(Object.keys(put.headers).filter((h) => h.startsWith('x-amz-checksum')).length, 0);
    assert.equal(put.body.toString(), 'abc');
    assert.equal(s.location, 's3://bkt/');
  });

  test('ifNoneMatch on an enforcing store: the second put fails with ERR_STORAGE_PRECONDITION_FAILED', async () => {
    const s = open();
    await s.put('k', enc('one'), { ifNoneMatch: true });
    assert.equal(fake.seen[0]!.headers['if-none-match'], '*');
    await assert.rejects(s.put('k', enc('two'), { ifNoneMatch: true }), (e) => isStorageError(e, 'ERR_STORAGE_PRECONDITION_FAILED') && e.details.attempts === 1);
    assert.equal(fake.objects.get('k')?.toString(), 'one');
  });

  test('ifNoneMatch after a lost response: the retry sees 412, the stored bytes are ours, success', async () => {
    const s = open();
    fake.losePutResponses = 1;
    const r = await s.put('k', enc('mine'), { ifNoneMatch: true });
    assert.ok(r.etag);
    assert.deepEqual(
      events.map((e) => [e.operation, e.attempt, e.status]),
      [
        ['put', 1, 0],
        ['put', 2, 412],
        ['get', 1, 200],
      ],
    );
  });

  test('ifNoneMatch after a lost response where another writer replaced the key: ERR_STORAGE_PRECONDITION_FAILED', async () => {
    const s = open();
    fake.losePutResponses = 1;
    fake.replaceAfterLoss = Buffer.from('theirs');
    await assert.rejects(s.put('k', enc('mine'), { ifNoneMatch: true }), (e) => isStorageError(e, 'ERR_STORAGE_PRECONDITION_FAILED') && e.details.attempts === 2);
    assert.equal(events.filter((e) => e.operation === 'get').length, 1, 'the stored object was compared');

    events.length = 0;
    await assert.rejects(s.put('k', enc('again'), { ifNoneMatch: true }), (e) => isStorageError(e, 'ERR_STORAGE_PRECONDITION_FAILED'));
    assert.equal(events.filter((e) => e.operation === 'get').length, 0, 'a first-attempt 412 needs no verification');
  });

  test('multipart ifNoneMatch after a lost complete response: the retry sees 412, the ETag of our parts proves it ours', async () => {
    const s = open();
    const MiB = 1024 * 1024;
    const body = Buffer.alloc(11 * MiB, 7);
    const chunks = async function* () {
      yield body;
    };
    fake.loseCompleteResponses = 1;
    const r = await s.putStream('mp', chunks(), { partSize: 5 * MiB, ifNoneMatch: true });
    assert.equal(r.size, body.length);
    assert.match(r.etag ?? '', /-3"$/);
    assert.deepEqual(
      events.map((e) => [e.operation, e.status]),
      [
        ['multipart', 200],
        ['multipart', 200],
        ['multipart', 200],
        ['multipart', 200],
        ['multipart', 0],
        ['multipart', 404],
        ['head', 200],
      ],
      'create, 3 parts, complete lost, complete again (NoSuchUpload), HEAD',
    );

    // The same upload when another writer's object is there: 412 on the first complete, aborted.
    events.length = 0;
    await assert.rejects(s.putStream('mp', chunks(), { partSize: 5 * MiB, ifNoneMatch: true }), (e) => isStorageError(e, 'ERR_STORAGE_PRECONDITION_FAILED'));
    assert.deepEqual(events.slice(-2).map((e) => [e.operation, e.status]), [
      ['multipart', 412],
      ['multipart', 204],
    ]);
    assert.equal(fake.uploads.size, 0, 'the upload was aborted');
  });

  test('DeleteObjects carries a correct Content-MD5 and takes at most 1000 keys', async () => {
    const s = open();
    const keys = Array.from({ length: 2001 }, (_, i) => `k${i}`);
    for (const k of keys) fake.objects.set(k, Buffer.from('x'));
    await s.delete(keys);
    const posts = fake.seen.filter((r) => r.method === 'POST');
    assert.equal(posts.length, 3);
    for (const p of posts) assert.equal(p.headers['content-md5'], createHash('md5').update(p.body).digest('base64'));
    assert.equal(fake.objects.size, 0);
  });

  test('DeleteObjects not implemented (501): single deletes, and the store is remembered', async () => {
    const s = open();
    fake.deleteObjects = 'not-implemented';
    for (const k of ['a', 'b', 'c']) fake.objects.set(k, Buffer.from('x'));
    await s.delete(['a', 'b', 'c', 'missing']);
    assert.equal(fake.objects.size, 0);
    assert.equal(fake.seen.filter((r) => r.method === 'POST').length, 1);
    assert.equal(fake.seen.filter((r) => r.method === 'DELETE').length, 4);
    fake.objects.set('d', Buffer.from('x'));
    await s.delete(['d']);
    assert.equal(fake.seen.filter((r) => r.method === 'POST').length, 1, 'no second DeleteObjects attempt');
  });

  test('DeleteObjects per-key errors: transient ones retried for those keys only; AccessDenied surfaces', async () => {
    const s = open();
    fake.deleteObjects = 'flaky-keys';
    for (const k of ['a', 'b-flaky', 'c']) fake.objects.set(k, Buffer.from('x'));
    await s.delete(['a', 'b-flaky', 'c']);
    assert.equal(fake.objects.size, 0);
    const posts = fake.seen.filter((r) => r.method === 'POST');
    assert.equal(posts.length, 2);
    assert.ok(!posts[1]!.body.toString().includes('<Key>a</Key>') && posts[1]!.body.toString().includes('<Key>b-flaky</Key>'));

    fake.deleteObjects = 'denied-keys';
    await assert.rejects(s.delete(['x', 'y-locked']), (e) => isStorageError(e, 'ERR_STORAGE_ACCESS_DENIED') && e.details.attempts === 1);
  });

  test('a store that ignores Range: the slice is served from the whole body', async () => {
    const s = open();
    fake.objects.set('r', Buffer.from('0123456789'));
    fake.ignoreRange = true;
    assert.equal(Buffer.from((await s.get('r', { range: { start: 2, end: 4 } }))!).toString(), '234');
    fake.ignoreRange = false;
    assert.equal(Buffer.from((await s.get('r', { range: { start: 7, end: 100 } }))!).toString(), '789');
  });

  test('invalid inputs fail before any request with ERR_STORAGE_INVALID_REQUEST', async () => {
    const s = open();
    await assert.rejects(s.get('r', { range: { start: 5, end: 2 } }), (e) => isStorageError(e, 'ERR_STORAGE_INVALID_REQUEST'));
    await assert.rejects(s.putStream('r', (async function* () {})(), { partSize: 1024 }), (e) => isStorageError(e, 'ERR_STORAGE_INVALID_REQUEST'));
    await assert.rejects(async () => {
      for await (const _ of s.list({ prefix: '', pageSize: 5000 })) assert.fail('no page');
    }, (e) => isStorageError(e, 'ERR_STORAGE_INVALID_REQUEST'));
    assert.throws(() => createS3Storage({ bucket: '' }), (e) => isStorageError(e, 'ERR_STORAGE_INVALID_REQUEST'));
    assert.equal(fake.seen.length, 0);
  });

  test('AWS_ENDPOINT_URL_S3 is honoured, and path style follows it', async () => {
    const saved = process.env['AWS_ENDPOINT_URL_S3'];
    process.env['AWS_ENDPOINT_URL_S3'] = fake.endpoint;
    try {
      const s = createS3Storage({ bucket: 'bkt', region: 'us-east-1', credentials: { accessKeyId: 'a', secretAccessKey: 'b' } });
      storages.push(s);
      await s.put('from-env', enc('x'));
      assert.equal(fake.seen[0]?.url.split('?')[0], '/bkt/from-env');
    } finally {
      if (saved === undefined) delete process.env['AWS_ENDPOINT_URL_S3'];
      else process.env['AWS_ENDPOINT_URL_S3'] = saved;
    }
  });
});
