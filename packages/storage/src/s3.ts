/**
 * ObjectStorage over the S3 API (AWS S3 and S3-compatible stores). Every request runs through the
 * retry layer; bodies are always sent as sized byte arrays, never as aws-chunked streams, because
 * most non-AWS stores corrupt or refuse those.
 */
import {
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  type DeleteObjectsCommandOutput,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { createHash } from 'node:crypto';
import { TruncatedBodyError, readBody } from './body.js';
import { StorageError, checkEtag, classify, contentRangeStart, isStorageError, redactUrl, statusOf, type StorageOperation } from './errors.js';
import { MultipartUpload } from './multipart.js';
import { abortedError, attemptTimedOut, resolveRetry, runWithRetry, type Attempt, type RetryOptions, type RetryPolicy, type RunContext } from './retry.js';
import type { GetOptions, ListOptions, ObjectInfo, ObjectStorage, PutOptions, PutStreamOptions, RequestEvent } from './types.js';

export interface S3StorageOptions {
  bucket: string;
  /** Only used for `location` and check(); keys passed to the methods are full keys. */
  prefix?: string;
  /** A ready client. Its checksum, path-style and retry settings are then the caller's. */
  client?: S3Client;
  /** S3-compatible endpoint; AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL are honoured by the SDK when unset. */
  endpoint?: string;
  /** Default: the SDK chain (AWS_REGION, profile); us-east-1 when an endpoint is given and nothing else says. */
  region?: string;
  /** Default: true when an endpoint is set (option or environment), else false. */
  forcePathStyle?: boolean;
  /** Default: the standard AWS credential chain. */
  credentials?: S3ClientConfig['credentials'];
  retry?: RetryOptions;
  /** Called once per HTTP attempt (failed ones too), for metrics and cost accounting. */
  onRequest?: (e: RequestEvent) => void;
  /**
   * Whether the store honours `If-None-Match: *` on PUT (default true). Set false for stores that
   * ignore it (s3rver; some gateways): ifNoneMatch then fails with ERR_STORAGE_UNSUPPORTED instead
   * of silently overwriting.
   */
  conditionalWrites?: boolean;
}

const MiB = 1024 * 1024;
export const MIN_PART_SIZE = 5 * MiB;
export const MAX_PART_SIZE = 5 * 1024 * MiB;
export const DEFAULT_PART_SIZE = 8 * MiB;
/** DeleteObjects takes at most 1000 keys per request. */
export const DELETE_BATCH = 1000;
/** Concurrency of the single-key delete fallback. */
const SINGLE_DELETE_CONCURRENCY = 8;

function env(name: string): string | undefined {
  try {
    const v = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.[name];
    return v === '' ? undefined : v;
  } catch {
    // Deno without --allow-env throws on access; the SDK then falls back the same way.
    return undefined;
  }
}

function buildClient(o: S3StorageOptions, policy: RetryPolicy): S3Client {
  const envEndpoint = env('AWS_ENDPOINT_URL_S3') ?? env('AWS_ENDPOINT_URL');
  const hasEndpoint = o.endpoint !== undefined || envEndpoint !== undefined;
  const config: S3ClientConfig = {
    // SDK >= 3.729 defaults to CRC32 trailers over aws-chunked bodies; S3-compatible stores store
    // those bytes corrupted or refuse them. Only send checksums the operation requires.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // Our retry layer is the only one, so onRequest sees every attempt and the budget is ours.
    maxAttempts: 1,
    forcePathStyle: o.forcePathStyle ?? hasEndpoint,
    requestHandler: new NodeHttpHandler({
      connectionTimeout: policy.connectTimeoutMs,
      // Time to response headers and socket inactivity; the retry layer's AbortSignal bounds the
      // whole attempt including the body.
      requestTimeout: policy.requestTimeoutMs,
      throwOnRequestTimeout: true,
      socketTimeout: policy.requestTimeoutMs,
    }),
  };
  if (o.endpoint !== undefined) config.endpoint = o.endpoint;
  if (o.credentials !== undefined) config.credentials = o.credentials;
  const region = o.region ?? (hasEndpoint && !env('AWS_REGION') && !env('AWS_DEFAULT_REGION') ? 'us-east-1' : undefined);
  if (region !== undefined) config.region = region;
  return new S3Client(config);
}

/**
 * Swift's s3api (and other stores) refuse DeleteObjects without Content-MD5, which SDK v3 >= 3.729
 * no longer sends (it sends x-amz-checksum-crc32). Added per command, so a caller's client is not
 * changed for its other uses.
 */
function withContentMd5(cmd: DeleteObjectsCommand): DeleteObjectsCommand {
  cmd.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { headers?: Record<string, string>; body?: unknown } | undefined;
      if (request?.headers && !Object.keys(request.headers).some((h) => h.toLowerCase() === 'content-md5')) {
        const body = request.body;
        const bytes = typeof body === 'string' ? new TextEncoder().encode(body) : body instanceof Uint8Array ? body : undefined;
        if (bytes) request.headers['content-md5'] = createHash('md5').update(bytes).digest('base64');
      }
      return next(args);
    },
    { step: 'build', name: 'walshipDeleteObjectsContentMd5', override: true },
  );
  return cmd;
}

interface SdkErrorShape {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

function isNotFound(e: unknown): boolean {
  const s = (typeof e === 'object' && e !== null ? e : {}) as SdkErrorShape;
  const code = s.Code ?? s.name;
  return code === 'NoSuchKey' || code === 'NotFound' || (s.$metadata?.httpStatusCode === 404 && code !== 'NoSuchBucket' && code !== 'NoSuchUpload');
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class S3Storage implements ObjectStorage {
  readonly location: string;
  readonly bucket: string;
  readonly prefix: string;
  readonly client: S3Client;
  readonly retry: Readonly<RetryPolicy>;
  private readonly ownsClient: boolean;
  private readonly endpointText: string;
  private readonly onRequest: ((e: RequestEvent) => void) | undefined;
  private readonly conditionalWrites: boolean;
  /** Cleared when the store answers DeleteObjects with 501; single deletes from then on. */
  private batchDelete = true;
  /** Keys per DeleteObjects: DELETE_BATCH until an attempt times out (deleteBatch). */
  private deleteChunk = DELETE_BATCH;

  constructor(options: S3StorageOptions) {
    if (typeof options.bucket !== 'string' || options.bucket === '') {
      throw new StorageError('ERR_STORAGE_INVALID_REQUEST', 'createS3Storage: bucket is required (s3.bucket)', {
        operation: 'check',
        bucket: String(options.bucket),
        status: 0,
        attempts: 0,
      });
    }
    this.bucket = options.bucket;
    this.prefix = options.prefix ?? '';
    this.location = `s3://${this.bucket}/${this.prefix}`;
    this.retry = resolveRetry(options.retry);
    this.ownsClient = options.client === undefined;
    this.client = options.client ?? buildClient(options, this.retry);
    const endpoint = options.endpoint ?? env('AWS_ENDPOINT_URL_S3') ?? env('AWS_ENDPOINT_URL');
    this.endpointText = endpoint !== undefined ? redactUrl(endpoint) : options.client ? 'the client\u2019s endpoint' : 'the AWS S3 endpoint';
    this.onRequest = options.onRequest;
    this.conditionalWrites = options.conditionalWrites ?? true;
  }

  /** Closes the sockets of a client this storage built (a caller's client is left alone). */
  destroy(): void {
    if (this.ownsClient) this.client.destroy();
  }

  private ctx(operation: StorageOperation, event: RequestEvent['operation'], key: string | undefined, signal: AbortSignal | undefined, sendBytes?: number): RunContext {
    return {
      operation,
      event,
      ...(key !== undefined ? { key } : {}),
      bucket: this.bucket,
      target: `s3://${this.bucket}/${key ?? ''}`,
      endpoint: this.endpointText,
      policy: this.retry,
      signal,
      onRequest: this.onRequest,
      ...(sendBytes !== undefined ? { sendBytes } : {}),
    };
  }

  private invalid(operation: StorageOperation, key: string | undefined, message: string): StorageError {
    return new StorageError('ERR_STORAGE_INVALID_REQUEST', `${operation} s3://${this.bucket}/${key ?? ''}: ${message}`, {
      operation,
      ...(key !== undefined ? { key } : {}),
      bucket: this.bucket,
      status: 0,
      attempts: 0,
    });
  }

  private unsupportedConditional(operation: StorageOperation, key: string): StorageError {
    return new StorageError(
      'ERR_STORAGE_UNSUPPORTED',
      `${operation} s3://${this.bucket}/${key}: ifNoneMatch requested but this storage is configured with conditionalWrites: false (the store does not honour If-None-Match)`,
      { operation, key, bucket: this.bucket, status: 0, attempts: 0 },
    );
  }

  /**
   * A cheap LIST (MaxKeys 1 under the prefix) that fails fast with a clear StorageError for a
   * missing bucket, wrong credentials or an unreachable endpoint. Call it at open.
   */
  async check(options: { signal?: AbortSignal } = {}): Promise<void> {
    const ctx = this.ctx('check', 'list', this.prefix, options.signal);
    await runWithRetry(ctx, async (signal) => {
      const out = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix, MaxKeys: 1 }), { abortSignal: signal });
      return { value: undefined, status: statusOf(out), bytes: 0 };
    });
  }

  async put(key: string, body: Uint8Array, options: PutOptions = {}): Promise<{ etag?: string }> {
    if (options.ifNoneMatch && !this.conditionalWrites) throw this.unsupportedConditional('put', key);
    return this.putObject('put', key, body, options);
  }

  private async putObject(operation: StorageOperation, key: string, body: Uint8Array, options: PutOptions): Promise<{ etag?: string }> {
    const ctx = this.ctx(operation, 'put', key, options.signal, body.byteLength);
    try {
      return await runWithRetry(ctx, async (signal) => {
        const out = await this.client.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: key,
            Body: body,
            ContentLength: body.byteLength,
            ...(options.contentType !== undefined ? { ContentType: options.contentType } : {}),
            ...(options.ifNoneMatch ? { IfNoneMatch: '*' } : {}),
          }),
          { abortSignal: signal },
        );
        return { value: out.ETag !== undefined ? { etag: out.ETag } : {}, status: statusOf(out), bytes: body.byteLength };
      });
    } catch (e) {
      // A create-only PUT whose earlier attempt landed but lost its response sees 412 on retry.
      // That is success only if the stored object is provably this one (DESIGN: conditional writes).
      if (isStorageError(e, 'ERR_STORAGE_PRECONDITION_FAILED') && e.details.attempts > 1) {
        const stored = await this.getObject('get', key, undefined, options.signal);
        if (stored && bytesEqual(stored.data, body)) return stored.etag !== undefined ? { etag: stored.etag } : {};
      }
      throw e;
    }
  }

  async putStream(key: string, body: AsyncIterable<Uint8Array>, options: PutStreamOptions = {}): Promise<{ etag?: string; size: number }> {
    const partSize = options.partSize ?? DEFAULT_PART_SIZE;
    if (!Number.isInteger(partSize) || partSize < MIN_PART_SIZE || partSize > MAX_PART_SIZE) {
      throw this.invalid('putStream', key, `partSize must be an integer from ${MIN_PART_SIZE} (5 MiB) to ${MAX_PART_SIZE} (5 GiB), got ${partSize}`);
    }
    if (options.ifNoneMatch && !this.conditionalWrites) throw this.unsupportedConditional('putStream', key);

    const buf = new Uint8Array(partSize);
    let fill = 0;
    let size = 0;
    let upload: MultipartUpload | undefined;
    try {
      for await (const chunk of body) {
        let off = 0;
        while (off < chunk.byteLength) {
          // Upload a full part only once more bytes arrive, so a body of exactly one part stays a
          // single PUT and the last part is never empty.
          if (fill === partSize) {
            upload ??= await this.createMultipart(key, options);
            await upload.uploadPart(buf);
            fill = 0;
          }
          const n = Math.min(partSize - fill, chunk.byteLength - off);
          buf.set(chunk.subarray(off, off + n), fill);
          fill += n;
          off += n;
        }
        size += chunk.byteLength;
        if (options.signal?.aborted) throw abortedError(this.ctx('putStream', 'multipart', key, undefined), 0, options.signal.reason);
      }
      if (!upload) {
        const r = await this.putObject('putStream', key, buf.subarray(0, fill), options);
        return { ...r, size };
      }
      await upload.uploadPart(buf.subarray(0, fill));
      const etag = await upload.complete();
      return { ...(etag !== undefined ? { etag } : {}), size };
    } catch (e) {
      if (upload) await upload.abort();
      throw e;
    }
  }

  private async createMultipart(key: string, options: PutStreamOptions): Promise<MultipartUpload> {
    const ctx = this.ctx('putStream', 'multipart', key, options.signal);
    const uploadId = await runWithRetry(ctx, async (signal) => {
      const out = await this.client.send(
        new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, ...(options.contentType !== undefined ? { ContentType: options.contentType } : {}) }),
        { abortSignal: signal },
      );
      if (!out.UploadId) throw Object.assign(new Error('CreateMultipartUpload returned no UploadId'), { $response: true });
      return { value: out.UploadId, status: statusOf(out), bytes: 0 };
    });
    return new MultipartUpload({
      client: this.client,
      bucket: this.bucket,
      key,
      uploadId,
      options,
      run: (signal, sendBytes, attempt) => runWithRetry(this.ctx('putStream', 'multipart', key, signal, sendBytes), attempt),
      head: (signal) => this.head(key, signal ? { signal } : {}),
    });
  }

  async get(key: string, options: GetOptions = {}): Promise<Uint8Array | null> {
    const r = await this.getObject('get', key, options.range, options.signal, options.into);
    if (r === null) return null;
    checkEtag(options.etag, r.etag, { key, bucket: this.bucket, status: options.range ? 206 : 200 });
    options.onEtag?.(r.etag);
    return r.data;
  }

  private async getObject(
    operation: StorageOperation,
    key: string,
    range: GetOptions['range'],
    callerSignal: AbortSignal | undefined,
    into?: Uint8Array,
  ): Promise<{ data: Uint8Array; etag?: string } | null> {
    if (range && !(Number.isSafeInteger(range.start) && Number.isSafeInteger(range.end) && range.start >= 0 && range.end >= range.start)) {
      throw this.invalid(operation, key, `range must be integers with 0 <= start <= end, got ${JSON.stringify(range)}`);
    }
    return runWithRetry(this.ctx(operation, 'get', key, callerSignal), async (signal) => {
      let out;
      try {
        out = await this.client.send(
          new GetObjectCommand({ Bucket: this.bucket, Key: key, ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}) }),
          { abortSignal: signal },
        );
      } catch (e) {
        if (isNotFound(e)) return { value: null, status: 404, bytes: 0 };
        throw e;
      }
      let data = await readBody(out.Body, signal, into, out.ContentLength);
      if (out.ContentLength !== undefined && data.byteLength !== out.ContentLength) throw new TruncatedBodyError(data.byteLength, out.ContentLength);
      const status = statusOf(out);
      if (range) {
        // Trust Content-Range over the request: a store that ignores Range answers 200 with the
        // whole object, and s3rver answers `bytes=0-0` with a 206 of the whole object.
        const first = status === 206 ? contentRangeStart(out.ContentRange) ?? range.start : 0;
        if (first !== range.start || data.byteLength > range.end - range.start + 1) {
          data = data.subarray(range.start - first, Math.max(range.start - first, Math.min(range.end - first + 1, data.byteLength)));
        }
      }
      return { value: { data, ...(out.ETag !== undefined ? { etag: out.ETag } : {}) }, status, bytes: data.byteLength };
    });
  }

  async head(key: string, options: { signal?: AbortSignal } = {}): Promise<ObjectInfo | null> {
    return runWithRetry(this.ctx('head', 'head', key, options.signal), async (signal) => {
      let out;
      try {
        out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal });
      } catch (e) {
        // HEAD has no error body: a missing bucket is a 404 like a missing key. check() at open
        // tells them apart.
        if (isNotFound(e)) return { value: null, status: 404, bytes: 0 };
        throw e;
      }
      const info: ObjectInfo = { key, size: out.ContentLength ?? 0 };
      if (out.ETag !== undefined) info.etag = out.ETag;
      if (out.LastModified !== undefined) info.lastModified = out.LastModified;
      return { value: info, status: statusOf(out), bytes: 0 };
    });
  }

  async *list(options: ListOptions): AsyncIterable<ObjectInfo> {
    const pageSize = options.pageSize ?? 1000;
    if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 1000) {
      throw this.invalid('list', options.prefix, `pageSize must be an integer from 1 to 1000, got ${pageSize}`);
    }
    let token: string | undefined;
    let startAfter = options.startAfter;
    for (;;) {
      const page = await runWithRetry(this.ctx('list', 'list', options.prefix, options.signal), async (signal) => {
        const out = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: options.prefix,
            MaxKeys: pageSize,
            ...(token !== undefined ? { ContinuationToken: token } : startAfter !== undefined ? { StartAfter: startAfter } : {}),
          }),
          { abortSignal: signal },
        );
        return { value: out, status: statusOf(out), bytes: 0 };
      });
      let lastKey: string | undefined;
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined) continue;
        const info: ObjectInfo = { key: o.Key, size: o.Size ?? 0 };
        if (o.ETag !== undefined) info.etag = o.ETag;
        if (o.LastModified !== undefined) info.lastModified = o.LastModified;
        lastKey = o.Key;
        yield info;
      }
      if (!page.IsTruncated) return;
      if (page.NextContinuationToken) {
        token = page.NextContinuationToken;
      } else if (lastKey !== undefined) {
        // A store that truncates without a token: StartAfter the last key has the same meaning.
        token = undefined;
        startAfter = lastKey;
      } else {
        throw new StorageError(
          'ERR_STORAGE_UNAVAILABLE',
          `list s3://${this.bucket}/${options.prefix}: the store said the listing is truncated but returned neither keys nor a continuation token`,
          { operation: 'list', key: options.prefix, bucket: this.bucket, status: statusOf(page), attempts: 1 },
        );
      }
    }
  }

  async delete(keys: readonly string[], options: { signal?: AbortSignal } = {}): Promise<void> {
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const batch = keys.slice(i, i + DELETE_BATCH);
      if (this.batchDelete) {
        try {
          await this.deleteBatch(batch, options.signal);
          continue;
        } catch (e) {
          if (!isStorageError(e, 'ERR_STORAGE_UNSUPPORTED')) throw e;
          this.batchDelete = false;
        }
      }
      await this.deleteSingles(batch, options.signal);
    }
  }

  /**
   * One DeleteObjects per chunk of at most `deleteChunk` keys. An attempt that times out is retried
   * with half as many keys, down to one: a store that deletes key by key (Swift's s3api) and is
   * slow under load then makes progress instead of timing out on the same 1000 keys at every
   * attempt. The smaller size stays for the life of this storage object.
   */
  private async deleteBatch(batch: readonly string[], callerSignal: AbortSignal | undefined): Promise<void> {
    let remaining = [...batch];
    while (remaining.length > 0) {
      await runWithRetry(this.ctx('delete', 'delete', remaining[0], callerSignal), async (signal) => {
        const chunk = remaining.slice(0, this.deleteChunk);
        let out: DeleteObjectsCommandOutput;
        try {
          out = await this.client.send(
            withContentMd5(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: chunk.map((Key) => ({ Key })), Quiet: true } })),
            { abortSignal: signal },
          );
        } catch (e) {
          if (attemptTimedOut(signal) && chunk.length > 1) this.deleteChunk = Math.ceil(chunk.length / 2);
          throw e;
        }
        const failed = (out.Errors ?? []).filter((x) => x.Code !== 'NoSuchKey');
        if (failed.length > 0) {
          // Per-key failures arrive in a 200 response. Retry only the failed keys when every failure
          // is transient; otherwise surface the first one with its own code.
          const first = failed[0]!;
          const transient = failed.every((x) => classify({ Code: x.Code, $metadata: { httpStatusCode: 500 } }).retryable);
          if (transient) {
            const again = new Set(failed.map((x) => x.Key));
            remaining = [...chunk.filter((k) => again.has(k)), ...remaining.slice(chunk.length)];
          }
          throw Object.assign(new Error(`DeleteObjects: ${failed.length} of ${chunk.length} keys failed, first ${first.Key}: ${first.Code} ${first.Message ?? ''}`), {
            name: first.Code ?? 'DeleteObjectsError',
            Code: first.Code,
            $metadata: { httpStatusCode: transient ? 500 : first.Code === 'AccessDenied' ? 403 : 400 },
          });
        }
        remaining = remaining.slice(chunk.length);
        return { value: undefined, status: statusOf(out), bytes: 0 };
      });
    }
  }

  private async deleteSingles(batch: readonly string[], callerSignal: AbortSignal | undefined): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < batch.length) {
        const key = batch[next++]!;
        await runWithRetry(this.ctx('delete', 'delete', key, callerSignal), async (signal) => {
          try {
            const out = await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal });
            return { value: undefined, status: statusOf(out), bytes: 0 };
          } catch (e) {
            if (isNotFound(e)) return { value: undefined, status: 404, bytes: 0 };
            throw e;
          }
        });
      }
    };
    await Promise.all(Array.from({ length: Math.min(SINGLE_DELETE_CONCURRENCY, batch.length) }, worker));
  }
}

/** Creates an S3Storage; see S3StorageOptions for the defaults. */
export function createS3Storage(options: S3StorageOptions): S3Storage {
  return new S3Storage(options);
}
