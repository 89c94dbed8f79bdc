import { Keyring, isFormatError } from '@walship/format';
import { createS3Storage, type ObjectStorage, type RequestEvent, type RetryOptions, type S3StorageOptions } from '@walship/storage';
import { restoreError } from './errors.js';
import { validateLeaseOption, type ReplicaLease } from './mark.js';

/** Where the replica is: an S3 location (as openReplicated takes it) or any ObjectStorage plus the database prefix. */
export interface ReplicaSource {
  s3?: {
    bucket: string;
    /** Database prefix inside the bucket (no leading or trailing slash; '' for the bucket root). */
    prefix: string;
    client?: S3StorageOptions['client'];
    endpoint?: string;
    region?: string;
    forcePathStyle?: boolean;
    credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
    retry?: RetryOptions;
  };
  /** Any store behind the storage seam; `prefix` then names the database. */
  storage?: ObjectStorage;
  prefix?: string;
  /** Decryption keys (every key that encrypted an object still needed), or a ready Keyring. */
  keys?: { id: string; key: Uint8Array | string }[] | Keyring;
  /** Called for every storage request made for an `s3` source (not for a caller's `storage`). */
  onRequest?: (event: RequestEvent) => void;
  /**
   * The prefix the replica was written under, when it has been copied to another prefix since:
   * marker MACs bind the prefix (so a manifest copied from another database's prefix is refused).
   */
  originalPrefix?: string;
  /**
   * The writer's DynamoDB lease table: its item records the durable high-water mark, and a bucket
   * behind it (newest objects deleted) is ERR_REPLICA_BEHIND. Without it such a rollback cannot be seen.
   */
  lease?: ReplicaLease;
}

export interface ResolvedSource {
  storage: ObjectStorage;
  prefix: string;
  keyring: Keyring | undefined;
  originalPrefix: string | undefined;
  /** Closes a client this package created. */
  close(): void;
}

/**
 * What an error shows of a rejected value: a primitive as itself, an object or array only as its
 * shape. An option object may carry S3 credentials or keys, and messages end up in logs.
 */
export function shownValue(value: unknown): string {
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === 'object' && value !== null) return `an object with keys ${Object.keys(value).join(', ') || '(none)'}`;
  return String(value);
}

export function bad(option: string, why: string, value: unknown): never {
  throw restoreError('ERR_INVALID_OPTION', `option ${option} ${why} (got ${shownValue(value)})`, { option, value: typeof value === 'object' || typeof value === 'function' ? undefined : value });
}

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** Checks the replica options; builds nothing yet. */
export function validateSource(o: ReplicaSource): void {
  if (typeof o !== 'object' || o === null) bad('options', 'must be an object', o);
  if (o.s3 === undefined && o.storage === undefined) bad('s3', 'or storage is required: where is the replica?', undefined);
  if (o.s3 !== undefined && o.storage !== undefined) bad('storage', 'and s3 are exclusive: pass one', 'both');
  if (o.s3 !== undefined) {
    if (typeof o.s3 !== 'object' || o.s3 === null) bad('s3', 'must be an object with bucket and prefix', o.s3);
    if (typeof o.s3.bucket !== 'string' || !BUCKET.test(o.s3.bucket)) bad('s3.bucket', 'must be an S3 bucket name (3-63 characters: a-z, 0-9, dot, hyphen)', o.s3.bucket);
    checkPrefix('s3.prefix', o.s3.prefix);
  } else {
    const s = o.storage as unknown as Partial<ObjectStorage>;
    if (typeof s !== 'object' || s === null || typeof s.get !== 'function' || typeof s.list !== 'function') {
      bad('storage', 'must implement ObjectStorage (get, list, head, ...)', typeof s);
    }
    checkPrefix('prefix', o.prefix);
  }
  if (o.keys !== undefined && !(o.keys instanceof Keyring) && !Array.isArray(o.keys)) bad('keys', 'must be an array of { id, key } or a Keyring', typeof o.keys);
  if (o.onRequest !== undefined && typeof o.onRequest !== 'function') bad('onRequest', 'must be a function', typeof o.onRequest);
  if (o.originalPrefix !== undefined) checkPrefix('originalPrefix', o.originalPrefix);
  validateLeaseOption(o);
}

function checkPrefix(option: string, prefix: unknown): void {
  if (typeof prefix !== 'string' || prefix.startsWith('/') || prefix.endsWith('/') || prefix.includes('//')) {
    bad(option, "must be a key prefix without leading, trailing or doubled slashes ('' for the bucket root)", prefix);
  }
}

/** The keyring from `keys`: ERR_INVALID_OPTION for a malformed key, before anything is read. */
export function resolveKeyring(keys: ReplicaSource['keys']): Keyring | undefined {
  if (keys === undefined) return undefined;
  if (keys instanceof Keyring) return keys;
  if (keys.length === 0) return undefined;
  try {
    return new Keyring({ keys });
  } catch (e) {
    if (isFormatError(e)) bad('keys', e.message, undefined);
    throw e;
  }
}

export function resolveSource(o: ReplicaSource): ResolvedSource {
  const keyring = resolveKeyring(o.keys);
  const originalPrefix = o.originalPrefix;
  if (o.storage !== undefined) return { storage: o.storage, prefix: o.prefix as string, keyring, originalPrefix, close: () => undefined };
  const s3 = o.s3 as NonNullable<ReplicaSource['s3']>;
  const storage = createS3Storage({
    bucket: s3.bucket,
    prefix: s3.prefix,
    ...(s3.client ? { client: s3.client } : {}),
    ...(s3.endpoint !== undefined ? { endpoint: s3.endpoint } : {}),
    ...(s3.region !== undefined ? { region: s3.region } : {}),
    ...(s3.forcePathStyle !== undefined ? { forcePathStyle: s3.forcePathStyle } : {}),
    ...(s3.credentials ? { credentials: s3.credentials } : {}),
    ...(s3.retry ? { retry: s3.retry } : {}),
    ...(o.onRequest ? { onRequest: o.onRequest } : {}),
  });
  return { storage, prefix: s3.prefix, keyring, originalPrefix, close: () => storage.destroy() };
}

export function checkInteger(option: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) bad(option, `must be an integer from ${min} to ${max}`, value);
}
