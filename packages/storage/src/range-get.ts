/**
 * Ranged GETs of S3 objects without the AWS SDK: SigV4 over node:http(s), through the same retry
 * layer and error classification as S3Storage, so a failure has the same code, details and hint.
 * It exists for threads that only read (a replica's page-fetch thread), where loading the SDK
 * would cost more than the reads it serves; it is exported on its own path
 * (`@walship/storage/range-get`) so that importing it loads no SDK module.
 *
 * It serves only what it can sign on its own: static credentials (given, or AWS_ACCESS_KEY_ID and
 * AWS_SECRET_ACCESS_KEY with AWS_SESSION_TOKEN, the first place the SDK's chain looks) and an
 * endpoint or region (given, or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL / AWS_REGION /
 * AWS_DEFAULT_REGION, as the SDK reads them). `rangeReaderSupports` says so; otherwise the caller
 * uses createS3Storage (profiles, SSO, instance metadata...).
 */
import { createHash, createHmac } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { TruncatedBodyError } from './body.js';
import { checkEtag, contentRangeStart, redactUrl } from './errors.js';
import { resolveRetry, runWithRetry, type RetryOptions, type RetryPolicy } from './retry.js';
import type { RequestEvent } from './types.js';

export interface RangeReaderOptions {
  bucket: string;
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  credentials?: unknown;
  retry?: RetryOptions;
  onRequest?: (e: RequestEvent) => void;
}

export interface StaticCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

function staticCredentials(c: unknown): StaticCredentials | null {
  if (typeof c !== 'object' || c === null) return null;
  const o = c as Record<string, unknown>;
  if (typeof o.accessKeyId !== 'string' || typeof o.secretAccessKey !== 'string' || o.accessKeyId === '' || o.secretAccessKey === '') return null;
  if (o.sessionToken !== undefined && typeof o.sessionToken !== 'string') return null;
  return { accessKeyId: o.accessKeyId, secretAccessKey: o.secretAccessKey, ...(typeof o.sessionToken === 'string' ? { sessionToken: o.sessionToken } : {}) };
}

function env(name: string): string | undefined {
  const v = process.env[name];
  return v === '' ? undefined : v;
}

/** The options with what the SDK would take from the environment filled in. */
function withEnvironment(o: RangeReaderOptions): RangeReaderOptions {
  const out = { ...o };
  if (out.credentials === undefined) {
    const accessKeyId = env('AWS_ACCESS_KEY_ID');
    const secretAccessKey = env('AWS_SECRET_ACCESS_KEY');
    const sessionToken = env('AWS_SESSION_TOKEN');
    if (accessKeyId !== undefined && secretAccessKey !== undefined) out.credentials = { accessKeyId, secretAccessKey, ...(sessionToken !== undefined ? { sessionToken } : {}) };
  }
  if (out.endpoint === undefined) {
    const endpoint = env('AWS_ENDPOINT_URL_S3') ?? env('AWS_ENDPOINT_URL');
    if (endpoint !== undefined) out.endpoint = endpoint;
  }
  if (out.region === undefined) {
    const region = env('AWS_REGION') ?? env('AWS_DEFAULT_REGION');
    if (region !== undefined) out.region = region;
  }
  return out;
}

/** Whether createRangeReader can serve these options (static credentials, an endpoint or a region). */
export function rangeReaderSupports(options: RangeReaderOptions): boolean {
  const o = withEnvironment(options);
  if (staticCredentials(o.credentials) === null) return false;
  if (o.endpoint !== undefined) {
    try {
      const u = new URL(o.endpoint);
      return (u.protocol === 'http:' || u.protocol === 'https:') && u.username === '' && u.password === '' && u.search === '';
    } catch {
      return false;
    }
  }
  return typeof o.region === 'string' && /^[a-z0-9-]+$/.test(o.region);
}

/** S3's URI encoding of one path segment: everything but A-Z a-z 0-9 - . _ ~ as %XX of its UTF-8 bytes. */
function encodeSegment(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase()}`);
}

const hmac = (key: string | Buffer, data: string): Buffer => createHmac('sha256', key).update(data, 'utf8').digest();

class StoreResponseError extends Error {
  readonly Code: string;
  readonly $metadata: { httpStatusCode: number };
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = code || `Http${status}`;
    this.Code = code;
    this.$metadata = { httpStatusCode: status };
  }
}

/**
 * SigV4 for a GET with a Range header and no body (signed headers: host, range,
 * x-amz-content-sha256, x-amz-date, and x-amz-security-token with a session token). Keeps the
 * day's signing key.
 */
export class Signer {
  readonly #creds: StaticCredentials;
  readonly #region: string;
  #key: { date: string; key: Buffer } | null = null;

  constructor(credentials: StaticCredentials, region: string) {
    this.#creds = credentials;
    this.#region = region;
  }

  /** The request's headers, `authorization` included. `path` is already URI-encoded. */
  sign(r: { host: string; path: string; range: string; now: Date }): Record<string, string> {
    const stamp = r.now.toISOString().replace(/[-:]/g, '').replace(/\.\d+/, '');
    const date = stamp.slice(0, 8);
    const headers: Record<string, string> = { host: r.host, range: r.range, 'x-amz-content-sha256': EMPTY_SHA256, 'x-amz-date': stamp };
    if (this.#creds.sessionToken !== undefined) headers['x-amz-security-token'] = this.#creds.sessionToken;
    const names = Object.keys(headers).sort();
    const canonical = ['GET', r.path, '', ...names.map((n) => `${n}:${(headers[n] as string).trim()}`), '', names.join(';'), EMPTY_SHA256].join('\n');
    const scope = `${date}/${this.#region}/s3/aws4_request`;
    const toSign = ['AWS4-HMAC-SHA256', stamp, scope, createHash('sha256').update(canonical, 'utf8').digest('hex')].join('\n');
    if (this.#key?.date !== date) this.#key = { date, key: hmac(hmac(hmac(hmac(`AWS4${this.#creds.secretAccessKey}`, date), this.#region), 's3'), 'aws4_request') };
    const signature = createHmac('sha256', this.#key.key).update(toSign, 'utf8').digest('hex');
    headers.authorization = `AWS4-HMAC-SHA256 Credential=${this.#creds.accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`;
    return headers;
  }
}

export interface RangeReader {
  /** Bytes start..end (inclusive) of `key`, or null when the object does not exist. */
  /** `etag` and `onEtag` as in GetOptions: an answer of another version fails with ERR_STORAGE_OBJECT_CHANGED. */
  /**
   * `into`: where the bytes go (exactly the range's length): a store's answer of that range is read
   * straight into it and `into` is returned; any other answer is read as without it.
   */
  get(key: string, range: { start: number; end: number }, options?: { signal?: AbortSignal; etag?: string; onEtag?: (etag: string | undefined) => void; into?: Uint8Array }): Promise<Uint8Array | null>;
  destroy(): void;
}

/** A reader of byte ranges; throws when rangeReaderSupports(options) is false. */
export function createRangeReader(given: RangeReaderOptions): RangeReader {
  const options = withEnvironment(given);
  if (!rangeReaderSupports(options)) throw new TypeError('createRangeReader needs static credentials and an endpoint or a region; use createS3Storage');
  const creds = staticCredentials(options.credentials) as StaticCredentials;
  const region = options.region ?? 'us-east-1';
  const pathStyle = options.forcePathStyle ?? options.endpoint !== undefined;
  const base = new URL(options.endpoint ?? `https://s3.${region}.amazonaws.com`);
  const host = pathStyle || options.bucket.includes('.') ? base.host : `${options.bucket}.${base.host}`;
  const basePath = base.pathname.replace(/\/+$/, '');
  const secure = base.protocol === 'https:';
  const policy: RetryPolicy = resolveRetry(options.retry);
  const agent = secure ? new HttpsAgent({ keepAlive: true, maxSockets: 64 }) : new HttpAgent({ keepAlive: true, maxSockets: 64 });
  const endpointText = redactUrl(base.href);
  const signer = new Signer(creds, region);

  const attempt = (path: string, range: { start: number; end: number }, signal: AbortSignal, into: Uint8Array | undefined): Promise<{ value: { data: Uint8Array; etag: string | undefined } | null; status: number; bytes: number }> =>
    new Promise((resolve, reject) => {
      const headers = signer.sign({ host, path, range: `bytes=${range.start}-${range.end}`, now: new Date() });
      const req = (secure ? httpsRequest : httpRequest)({ protocol: base.protocol, hostname: base.hostname, port: base.port || undefined, method: 'GET', path, headers, agent, signal });
      req.on('error', reject);
      req.on('response', (res: IncomingMessage) => {
        const parts: Buffer[] = [];
        let got = 0;
        // Exactly the range asked for: no buffer of pieces, no concatenation (a fresh copy of every byte).
        const direct = into !== undefined && res.statusCode === 206 && Number(res.headers['content-length']) === into.length && contentRangeStart(rangeHeader(res)) === range.start;
        res.on('data', (b: Buffer) => {
          if (direct) {
            if (got + b.length <= into.length) into.set(b, got);
          } else {
            parts.push(b);
          }
          got += b.length;
        });
        res.on('error', reject);
        res.on('aborted', () => reject(Object.assign(new Error('response aborted'), { code: 'ECONNRESET' })));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          if (direct) {
            if (got !== into.length) return reject(new TruncatedBodyError(got, into.length));
            const etag = res.headers.etag;
            return resolve({ value: { data: into, etag: typeof etag === 'string' ? etag : undefined }, status, bytes: got });
          }
          const body = Buffer.concat(parts, got);
          if (status === 200 || status === 206) {
            const length = Number(res.headers['content-length']);
            if (Number.isFinite(length) && got !== length) return reject(new TruncatedBodyError(got, length));
            // Trust Content-Range over the request (a store that ignores Range answers 200 whole).
            const first = status === 206 ? (contentRangeStart(rangeHeader(res)) ?? range.start) : 0;
            let data: Uint8Array = new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
            if (first !== range.start || data.byteLength > range.end - range.start + 1) {
              data = data.subarray(range.start - first, Math.max(range.start - first, Math.min(range.end - first + 1, data.byteLength)));
            }
            const etag = res.headers.etag;
            return resolve({ value: { data, etag: typeof etag === 'string' ? etag : undefined }, status, bytes: data.byteLength });
          }
          const text = body.subarray(0, 4096).toString('utf8');
          const code = /<Code>([^<]{1,100})<\/Code>/.exec(text)?.[1] ?? '';
          const message = /<Message>([^<]{0,300})<\/Message>/.exec(text)?.[1] ?? `HTTP ${status}`;
          if (status === 404 && code !== 'NoSuchBucket') return resolve({ value: null, status, bytes: 0 });
          reject(new StoreResponseError(status, code, message));
        });
      });
      req.end();
    });

  return {
    get(key, range, opts = {}) {
      if (!(Number.isSafeInteger(range.start) && Number.isSafeInteger(range.end) && range.start >= 0 && range.end >= range.start)) {
        return Promise.reject(new RangeError(`range must be integers with 0 <= start <= end, got ${JSON.stringify(range)}`));
      }
      const segments = pathStyle || options.bucket.includes('.') ? [options.bucket, ...key.split('/')] : key.split('/');
      const path = `${basePath}/${segments.map(encodeSegment).join('/')}`;
      return runWithRetry(
        { operation: 'get', event: 'get', key, bucket: options.bucket, target: `s3://${options.bucket}/${key}`, endpoint: endpointText, policy, signal: opts.signal, onRequest: options.onRequest },
        (signal) => attempt(path, range, signal, opts.into !== undefined && opts.into.length === range.end - range.start + 1 ? opts.into : undefined),
      ).then((r) => {
        if (r === null) return null;
        checkEtag(opts.etag, r.etag, { key, bucket: options.bucket, status: 206 });
        opts.onEtag?.(r.etag);
        return r.data;
      });
    },
    destroy() {
      agent.destroy();
    },
  };
}

const rangeHeader = (res: IncomingMessage): string | undefined => {
  const h = res.headers['content-range'];
  return typeof h === 'string' ? h : undefined;
};
