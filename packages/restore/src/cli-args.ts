/** The CLI's command-line and environment parsing, shared by every command. */
import type { ReplicaSource } from './options.js';
import { UsageError } from './cli-errors.js';

export const COMMON = { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } as const;
export const TARGET = { txid: { type: 'string' }, timestamp: { type: 'string' }, generation: { type: 'string' }, concurrency: { type: 'string' } } as const;
export const LEASE = { 'lease-table': { type: 'string' } } as const;

/** The lease table to check the high-water mark against: --lease-table, else WALSHIP_LEASE_TABLE. */
export function leaseFrom(values: { 'lease-table'?: string | undefined }, env: NodeJS.ProcessEnv, url: string | undefined): Pick<ReplicaSource, 'lease'> {
  const table = values['lease-table'] ?? env['WALSHIP_LEASE_TABLE'];
  return table ? { lease: { table, key: leaseKey(url) } } : {};
}

/** The lease key of a database: its canonical s3 URL, as openReplicated uses it. */
export function leaseKey(url: string | undefined): string {
  const { bucket, prefix } = parseS3Url(url);
  return `s3://${bucket}/${prefix}`;
}

/** `s3://bucket/prefix` as a replica source; the AWS SDK takes endpoint and credentials from the environment. */
export function parseS3Url(url: string | undefined): { bucket: string; prefix: string } {
  if (url === undefined) throw new UsageError('missing <s3-url> (s3://bucket/prefix)');
  const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(url);
  if (!m) throw new UsageError(`${url} is not an s3:// URL (s3://bucket/prefix)`);
  const prefix = (m[2] ?? '').replace(/^\/+|\/+$/g, '');
  if (prefix.includes('//')) throw new UsageError(`${url}: the prefix has an empty path segment`);
  return { bucket: m[1] as string, prefix };
}

const KEY_BASE64 = /^[A-Za-z0-9+/]{43}=$/;

/**
 * WALSHIP_KEYS=id:base64,id:base64. A malformed entry is named by its position and lengths only:
 * quoting any of it would print key material (an entry without `id:` is all key; a quoted 40 of 44
 * characters left 16 bits to brute-force).
 */
export async function parseKeys(text: string | undefined): Promise<{ id: string; key: string }[] | undefined> {
  if (text === undefined || text.trim() === '') return undefined;
  const { isValidKeyId } = await import('@walship/format');
  const parts = text.split(',');
  return parts.map((raw, i) => {
    const part = raw.trim();
    const entry = `WALSHIP_KEYS entry ${i + 1} of ${parts.length} (${part.length} characters)`;
    const colon = part.indexOf(':');
    if (colon <= 0) throw new UsageError(`${entry} is not id:base64 (no 'id:' before the key); write each entry as id:base64, e.g. k1:<44 base64 characters>`);
    const id = part.slice(0, colon).trim();
    const key = part.slice(colon + 1).trim();
    if (!isValidKeyId(id)) throw new UsageError(`${entry}: the id before ':' (${part.slice(0, colon).trim().length} characters) is not 1..32 printable ASCII characters without spaces`);
    if (!KEY_BASE64.test(key)) throw new UsageError(`${entry}: the key after the id (${key.length} characters) is not 32 bytes in standard base64 (44 characters ending in '=')`);
    return { id, key };
  });
}

export async function sourceFrom(url: string | undefined, env: NodeJS.ProcessEnv): Promise<ReplicaSource> {
  const { bucket, prefix } = parseS3Url(url);
  const keys = await parseKeys(env['WALSHIP_KEYS']);
  const endpoint = env['AWS_ENDPOINT_URL_S3'] || env['AWS_ENDPOINT_URL'] || undefined;
  return {
    s3: {
      bucket,
      prefix,
      ...(endpoint ? { endpoint } : {}),
      ...(env['AWS_REGION'] || env['AWS_DEFAULT_REGION'] ? { region: (env['AWS_REGION'] || env['AWS_DEFAULT_REGION']) as string } : {}),
      retry: { attempts: 3, baseDelayMs: 200, maxDelayMs: 2000 },
    },
    ...(keys ? { keys } : {}),
    ...(env['WALSHIP_ORIGINAL_PREFIX'] !== undefined ? { originalPrefix: env['WALSHIP_ORIGINAL_PREFIX'] } : {}),
  };
}

export function integer(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError(`--${name} must be a non-negative integer, got '${value}'`);
  return Number(value);
}

export function fileMode(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^0?[0-7]{3}$/.test(value)) throw new UsageError(`--mode must be octal permission bits such as 600 or 640, got '${value}'`);
  return Number.parseInt(value, 8);
}

function timestamp(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (/^\d+$/.test(value)) return Number(value);
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new UsageError(`--timestamp must be an ISO 8601 time (2026-11-26T15:04:05Z) or ms since the epoch, got '${value}'`);
  return ms;
}

export function target(values: { txid?: string | undefined; timestamp?: string | undefined; generation?: string | undefined; concurrency?: string | undefined }): {
  txid?: number;
  timestamp?: number;
  generation?: string;
  concurrency?: number;
} {
  if (values.txid !== undefined && values.timestamp !== undefined) throw new UsageError('--txid and --timestamp are exclusive');
  const txid = integer('txid', values.txid);
  const ts = timestamp(values.timestamp);
  const concurrency = integer('concurrency', values.concurrency);
  return {
    ...(txid !== undefined ? { txid } : {}),
    ...(ts !== undefined ? { timestamp: ts } : {}),
    ...(values.generation !== undefined ? { generation: values.generation } : {}),
    ...(concurrency !== undefined ? { concurrency } : {}),
  };
}
