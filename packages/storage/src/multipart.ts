// One multipart upload in progress for S3Storage.putStream: parts in order, then complete (with
// the lost-response check of the ETag the parts make), or abort on any failure.

import { AbortMultipartUploadCommand, CompleteMultipartUploadCommand, UploadPartCommand, type S3Client } from '@aws-sdk/client-s3';
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { StorageError, bareEtag, isStorageError, statusOf } from './errors.js';
import type { Attempt } from './retry.js';
import type { ObjectInfo, PutStreamOptions } from './types.js';

export const MAX_PARTS = 10_000;

function md5(data: Uint8Array): Buffer {
  return createHash('md5').update(data).digest();
}

/** One multipart upload in progress: parts in order, then complete, or abort on any failure. */
export interface UploadContext {
  client: S3Client;
  bucket: string;
  key: string;
  uploadId: string;
  options: PutStreamOptions;
  /** One request through the storage's retry layer, reported as 'multipart'. */
  run<T>(signal: AbortSignal | undefined, sendBytes: number, attempt: Attempt<T>): Promise<T>;
  head(signal: AbortSignal | undefined): Promise<ObjectInfo | null>;
}

export class MultipartUpload {
  private readonly parts: { PartNumber: number; ETag: string }[] = [];
  private readonly partMd5s: Buffer[] = [];
  private readonly key: string;
  private readonly uploadId: string;
  private readonly options: PutStreamOptions;

  constructor(private readonly u: UploadContext) {
    this.key = u.key;
    this.uploadId = u.uploadId;
    this.options = u.options;
  }

  async uploadPart(data: Uint8Array): Promise<void> {
    const partNumber = this.parts.length + 1;
    if (partNumber > MAX_PARTS) {
      throw new StorageError(
        'ERR_STORAGE_INVALID_REQUEST',
        `putStream s3://${this.u.bucket}/${this.key}: the body needs more than ${MAX_PARTS} parts of ${data.byteLength} bytes; raise partSize`,
        { operation: 'putStream', key: this.key, bucket: this.u.bucket, status: 0, attempts: 0 },
      );
    }
    const { bucket, client } = this.u;
    const etag = await this.u.run(this.options.signal, data.byteLength, async (signal) => {
      const out = await client.send(
        new UploadPartCommand({ Bucket: bucket, Key: this.key, UploadId: this.uploadId, PartNumber: partNumber, Body: data, ContentLength: data.byteLength }),
        { abortSignal: signal },
      );
      if (!out.ETag) throw Object.assign(new Error(`UploadPart ${partNumber} returned no ETag`), { $response: true });
      return { value: out.ETag, status: statusOf(out), bytes: data.byteLength };
    });
    this.parts.push({ PartNumber: partNumber, ETag: etag });
    this.partMd5s.push(md5(data));
  }

  /** S3's multipart ETag: md5 of the concatenated part md5s, then `-<parts>`. */
  private expectedEtag(): string {
    return `${createHash('md5').update(Buffer.concat(this.partMd5s)).digest('hex')}-${this.partMd5s.length}`;
  }

  async complete(): Promise<string | undefined> {
    const { bucket, client } = this.u;
    try {
      return await this.u.run(this.options.signal, 0, async (signal) => {
        const out = await client.send(
          new CompleteMultipartUploadCommand({
            Bucket: bucket,
            Key: this.key,
            UploadId: this.uploadId,
            MultipartUpload: { Parts: this.parts },
            ...(this.options.ifNoneMatch ? { IfNoneMatch: '*' } : {}),
          }),
          { abortSignal: signal },
        );
        return { value: out.ETag, status: statusOf(out), bytes: 0 };
      });
    } catch (e) {
      // An earlier attempt may have completed the upload and lost its response: the retry then
      // sees NoSuchUpload or 412. The object is ours if its ETag is the one our parts make.
      if (isStorageError(e) && e.details.attempts > 1 && (e.code === 'ERR_STORAGE_PRECONDITION_FAILED' || e.details.storeCode === 'NoSuchUpload')) {
        const info = await this.u.head(this.options.signal);
        if (info && bareEtag(info.etag) === this.expectedEtag()) return info.etag;
      }
      throw e;
    }
  }

  /** Best effort: an upload left behind only costs storage until a lifecycle rule removes it. */
  async abort(): Promise<void> {
    const { bucket, client } = this.u;
    try {
      // Not the caller's signal: when it aborted, the upload must still be cleaned up.
      await this.u.run(undefined, 0, async (signal) => {
        const out = await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: this.key, UploadId: this.uploadId }), { abortSignal: signal });
        return { value: undefined, status: statusOf(out), bytes: 0 };
      });
    } catch {
      // The original failure is what the caller needs; a failed abort changes nothing for it.
    }
  }
}
