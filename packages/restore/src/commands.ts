import { isValidKeyId } from '@walship/format';
import { createLeaseTable, forceRelease, readLease } from '@walship/lease';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { STORAGE_UNREACHABLE_CODES } from './errors.js';
import { describeReplica, type GenerationDescription, type ObjectDescription, type ReplicaDescription } from './inspect.js';
import type { ReplicaSource } from './options.js';
import { restore, type RestoreProgress } from './restore.js';
import { verify } from './verify.js';

/** Exit codes (README "CLI"). */
export const EXIT = { ok: 0, failed: 1, usage: 2, storage: 3 } as const;

class UsageError extends Error {}

const USAGE: Record<string, string> = {
  main: `walship: restore, inspect and verify SQLite databases replicated by walship

Usage:
  walship restore <s3-url> <path> [--txid N | --timestamp ISO] [--overwrite] [--lease-table T] [--json]
  walship ls <s3-url> [--json]
  walship verify <s3-url> [--txid N | --timestamp ISO] [--lease-table T] [--json]
  walship status <s3-url> [--lease-table T] [--json]
  walship lease create-table|show|release ... --table T
  walship demo [--seconds N]
  walship <command> --help

<s3-url> is s3://bucket/prefix. The endpoint, region and credentials come from the standard AWS
environment (AWS_ENDPOINT_URL_S3, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...);
decryption keys from WALSHIP_KEYS=id:base64[,id:base64...]. --lease-table (or WALSHIP_LEASE_TABLE)
names the writer's DynamoDB lease table (endpoint from AWS_ENDPOINT_URL_DYNAMODB): restore, verify
and status then refuse a bucket behind the durable high-water mark its item records
(ERR_REPLICA_BEHIND: the newest objects were deleted). Without it such a rollback cannot be seen.
A replica copied to another prefix restores with keys when WALSHIP_ORIGINAL_PREFIX names the
prefix it was written under.

Exit codes: 0 ok, 1 verification failed or data error, 2 usage or configuration error,
3 storage or DynamoDB unreachable, or access denied.`,
  restore: `walship restore <s3-url> <path> [options]

Restores the database to <path>: the latest state, or the state after a txid, or the state after
the last transaction committed at or before a time. Every object is verified before it is applied;
the file is built beside <path> and renamed into place only after its checksum and
PRAGMA integrity_check pass.

Options:
  --txid N          restore the state right after transaction N
  --timestamp ISO   restore the state at this time (e.g. 2026-11-26T15:04:05Z, or ms since the epoch)
  --generation G    only consider generation G (16 hex digits)
  --overwrite       replace an existing file at <path> (and its -wal/-shm)
  --mode OCTAL      permission bits of the restored file (default 600: owner only; e.g. 640),
                    set whatever the umask
  --concurrency N   objects downloaded in parallel (default 8)
  --lease-table T   the writer's lease table (or WALSHIP_LEASE_TABLE): ERR_REPLICA_BEHIND when the
                    bucket does not reach the durable high-water mark its item records
  --json            print the result as JSON on stdout
  -h, --help        this help

Progress goes to stderr; the result to stdout.`,
  ls: `walship ls <s3-url> [--json]

Lists the replica: generations, their epochs (writer host and pid), snapshots and segments with
txid ranges, commit times and sizes, and the txid and time range each generation can restore.`,
  verify: `walship verify <s3-url> [--txid N | --timestamp ISO] [--lease-table T] [--json]

Restores into a temporary file and runs every check (chain, fencing, object checksums and
decryption, per-transaction checksums, final checksum, PRAGMA integrity_check), prints a summary
and removes the file. Exit code 0 when every check passes, 1 when one fails. With --lease-table
(or WALSHIP_LEASE_TABLE), also that the bucket reaches the durable high-water mark (ERR_REPLICA_BEHIND).`,
  status: `walship status <s3-url> [--lease-table T] [--json]

The replica's durable txid, newest object and its age, the time since the last durable commit
(a lag estimate while the writer is active), the writer's epoch and host from its epoch marker, and
the lease holder, epoch and last renewal when --lease-table (or WALSHIP_LEASE_TABLE) names the table,
and then the durable high-water mark: exit code 1 with problem ERR_REPLICA_BEHIND when the bucket's
latest state is behind it (the newest objects were deleted).`,
  demo: `walship demo [--seconds N] [--keep]

The quick-start job: starts a local S3 server (s3rver) and DynamoDB (dynalite) on loopback, writes
through the replicating VFS under a writer lease for N seconds (default 10) with live progress,
restores a fresh node from the bucket (latest and one point in time) and proves it equal to the
source. Needs the workspace's @walship/demo package (present in the walship repository).`,
  lease: `walship lease create-table --table T [--json]
walship lease show <s3-url> --table T [--json]
walship lease release <s3-url> --table T --force [--json]

create-table  creates the DynamoDB lease table (key schema: pk (S) HASH, on-demand). walship never
              creates it implicitly.
show          the lease item of the database: holder, host, pid, epoch, released.
release       marks the lease released so another writer can take it at once (epoch kept, the item
              is never deleted). Only for an operator who knows the holder is dead: a live holder
              loses the lease at its next renewal and stops writing.
DynamoDB endpoint and credentials come from the standard AWS environment (AWS_REGION,
AWS_ENDPOINT_URL_DYNAMODB, ...). The lease key of a database is its s3-url.`,
};

const COMMON = { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } as const;
const TARGET = { txid: { type: 'string' }, timestamp: { type: 'string' }, generation: { type: 'string' }, concurrency: { type: 'string' } } as const;
const LEASE = { 'lease-table': { type: 'string' } } as const;

/** The lease table to check the high-water mark against: --lease-table, else WALSHIP_LEASE_TABLE. */
function leaseFrom(values: { 'lease-table'?: string | undefined }, env: NodeJS.ProcessEnv, url: string | undefined): Pick<ReplicaSource, 'lease'> {
  const table = values['lease-table'] ?? env['WALSHIP_LEASE_TABLE'];
  return table ? { lease: { table, key: leaseKey(url) } } : {};
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
export function parseKeys(text: string | undefined): { id: string; key: string }[] | undefined {
  if (text === undefined || text.trim() === '') return undefined;
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

function sourceFrom(url: string | undefined, env: NodeJS.ProcessEnv): ReplicaSource {
  const { bucket, prefix } = parseS3Url(url);
  const keys = parseKeys(env['WALSHIP_KEYS']);
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

function integer(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError(`--${name} must be a non-negative integer, got '${value}'`);
  return Number(value);
}

function fileMode(value: string | undefined): number | undefined {
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

function target(values: { txid?: string | undefined; timestamp?: string | undefined; generation?: string | undefined; concurrency?: string | undefined }): {
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

const iso = (ms: number | null | undefined): string => (ms === null || ms === undefined ? '-' : new Date(ms).toISOString());

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

function formatAge(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 7_200_000) return `${(ms / 60_000).toFixed(1)} min`;
  if (ms < 172_800_000) return `${(ms / 3_600_000).toFixed(1)} h`;
  return `${(ms / 86_400_000).toFixed(1)} d`;
}

/** Progress on stderr: one rewritten line on a terminal, a plain line per step otherwise. */
class ProgressLine {
  readonly #tty: boolean;
  #lastPlain = 0;
  #lastPhase = '';
  #drawn = false;

  constructor(private readonly out: NodeJS.WriteStream) {
    this.#tty = out.isTTY === true;
  }

  update = (p: RestoreProgress): void => {
    const text = `${p.phase.padEnd(8)} ${p.objectsDone}/${p.objectsTotal} objects  ${formatBytes(p.bytesDone)}/${formatBytes(p.bytesTotal)}  txid ${p.txid}${p.targetTxid ? `/${p.targetTxid}` : ''}`;
    if (this.#tty) {
      const width = 24;
      const filled = p.objectsTotal > 0 ? Math.round((p.objectsDone / p.objectsTotal) * width) : 0;
      this.out.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${text}\x1b[K`);
      this.#drawn = true;
      return;
    }
    const now = Date.now();
    if (p.phase !== this.#lastPhase || now - this.#lastPlain >= 1000 || p.objectsDone === p.objectsTotal) {
      this.out.write(`walship: ${text}\n`);
      this.#lastPlain = now;
      this.#lastPhase = p.phase;
    }
  };

  end(): void {
    if (this.#drawn) this.out.write('\n');
    this.#drawn = false;
  }
}

export interface CliIo {
  stdout: NodeJS.WritableStream & { write(s: string): boolean };
  stderr: NodeJS.WriteStream;
  env: NodeJS.ProcessEnv;
}

function json(io: CliIo, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`);
}

async function cmdRestore(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, strict: true, options: { ...COMMON, ...TARGET, ...LEASE, overwrite: { type: 'boolean' }, mode: { type: 'string' } } });
  if (values.help) return help(io, 'restore');
  if (positionals.length !== 2) throw new UsageError('restore takes <s3-url> <path>');
  const mode = fileMode(values.mode);
  const progress = new ProgressLine(io.stderr);
  try {
    const result = await restore({
      ...sourceFrom(positionals[0], io.env),
      ...leaseFrom(values, io.env, positionals[0]),
      path: positionals[1] as string,
      ...target(values),
      overwrite: values.overwrite ?? false,
      ...(mode !== undefined ? { mode } : {}),
      onProgress: progress.update,
    });
    progress.end();
    if (values.json) json(io, result);
    else {
      io.stdout.write(
        `restored ${result.path}\n  txid        ${result.txid}\n  committed   ${iso(result.timestamp)}\n  generation  ${result.generation}\n  objects     ${result.objects} (${formatBytes(result.bytes)})\n  checksum    ${result.checksum}\n  took        ${result.durationMs} ms\n` +
          `Open it with openDatabase(path, { baseTxid: ${result.txid} }) or continue the replica with openReplicated.\n`,
      );
    }
    return EXIT.ok;
  } finally {
    progress.end();
  }
}

async function cmdVerify(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, strict: true, options: { ...COMMON, ...TARGET, ...LEASE } });
  if (values.help) return help(io, 'verify');
  if (positionals.length !== 1) throw new UsageError('verify takes <s3-url>');
  const progress = new ProgressLine(io.stderr);
  const r = await verify({ ...sourceFrom(positionals[0], io.env), ...leaseFrom(values, io.env, positionals[0]), ...target(values), onProgress: progress.update });
  progress.end();
  if (values.json) json(io, r);
  else if (r.ok && r.result) {
    io.stdout.write(`verify ok: txid ${r.result.txid} of generation ${r.result.generation}, ${r.result.objects} objects (${formatBytes(r.result.bytes)}), checksum ${r.result.checksum}\n`);
    for (const c of r.checks) io.stdout.write(`  ok  ${c}\n`);
  } else {
    io.stdout.write(`verify FAILED: ${r.error?.code}\n  ${r.error?.message}\n`);
  }
  if (r.ok) return EXIT.ok;
  // The lease table (--lease-table) is read by verify too: its failures keep the codes main() gives them.
  if (r.error?.code === 'ERR_LEASE_UNAVAILABLE' || r.error?.code === 'ERR_LEASE_THROTTLED') return EXIT.storage;
  if (r.error?.code === 'ERR_LEASE_TABLE_MISSING' || r.error?.code === 'ERR_LEASE_TABLE_SCHEMA') return EXIT.usage;
  return STORAGE_UNREACHABLE_CODES.has(r.error?.code ?? '') ? EXIT.storage : isConfigCode(r.error?.code) ? EXIT.usage : EXIT.failed;
}

function objectLine(o: ObjectDescription): string {
  const txids = o.kind === 'snapshot' ? `txid ${o.minTxid}` : `txids ${o.minTxid}..${o.maxTxid ?? '?'}`;
  const time = o.kind === 'snapshot' ? iso(o.lastTimestamp) : `${iso(o.firstTimestamp)} .. ${iso(o.lastTimestamp)}`;
  const flags = [o.fenced ? 'FENCED' : '', o.encrypted ? 'encrypted' : '', o.error ? `ERROR ${o.error.code}` : ''].filter(Boolean).join(' ');
  return `    ${txids.padEnd(24)} epoch ${String(o.epoch).padEnd(4)} ${o.kind === 'segment' ? `l${o.level} ${String(o.transactions ?? '?').padStart(5)} tx ` : ''}${formatBytes(o.size).padStart(10)}  ${time}${flags ? `  ${flags}` : ''}`;
}

function generationText(g: GenerationDescription): string {
  const lines = [`generation ${g.id}  ${g.snapshots.length} snapshots, ${g.segments.length} segments, ${formatBytes(g.bytes)}`];
  if (g.restorable) {
    lines.push(`  restorable  txids ${g.restorable.fromTxid}..${g.restorable.toTxid}  (${iso(g.restorable.fromTime)} .. ${iso(g.restorable.toTime)})`);
  } else {
    lines.push(`  restorable  no: ${g.problem?.code ?? 'no snapshot'}${g.problem ? ` ${g.problem.message}` : ''}`);
  }
  for (const e of g.epochs) {
    lines.push(`  epoch ${e.epoch} from txid ${e.startTxid}${e.writer?.host ? `, host ${e.writer.host}` : ''}${e.writer?.pid !== undefined ? ` pid ${e.writer.pid}` : ''}${e.createdAt ? `, since ${e.createdAt}` : ''}`);
  }
  if (g.snapshots.length > 0) lines.push('  snapshots', ...g.snapshots.map(objectLine));
  if (g.segments.length > 0) lines.push('  segments', ...g.segments.map(objectLine));
  return lines.join('\n');
}

async function cmdLs(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, strict: true, options: { ...COMMON } });
  if (values.help) return help(io, 'ls');
  if (positionals.length !== 1) throw new UsageError('ls takes <s3-url>');
  const d = await describeReplica(sourceFrom(positionals[0], io.env));
  if (values.json) {
    json(io, d);
    return EXIT.ok;
  }
  io.stdout.write(
    `${d.location}  database ${d.databaseId ?? '(no database.json)'}  page size ${d.pageSize ?? '?'}  ${d.generations.length} generations, ${d.objects} objects, ${formatBytes(d.bytes)}\n`,
  );
  for (const g of d.generations) io.stdout.write(`${generationText(g)}\n`);
  if (d.strangers.length > 0) io.stdout.write(`not walship objects (ignored): ${d.strangers.join(', ')}\n`);
  return EXIT.ok;
}

export interface StatusReport {
  location: string;
  durableTxid: number | null;
  generation: string | null;
  lastCommit: string | null;
  /** ms since the newest durable commit: the replica's lag while the writer is committing. */
  lagEstimateMs: number | null;
  newestObject: { key: string; lastModified: string; ageMs: number } | null;
  writer: { epoch: number; startTxid: number; host: string | null; pid: number | null; since: string | null } | null;
  /** The durable high-water mark of the lease item (with a lease table), else null. */
  highWaterMark: { generation: string; txid: number } | null;
  problem: { code: string; message: string; details?: Record<string, unknown> } | null;
}

export function statusOf(d: ReplicaDescription): StatusReport {
  const g = d.latest ? d.generations.find((x) => x.id === d.latest?.generation) : d.generations[d.generations.length - 1];
  const e = g?.epochs[g.epochs.length - 1];
  return {
    location: d.location,
    durableTxid: d.latest?.txid ?? null,
    generation: d.latest?.generation ?? null,
    lastCommit: d.latest ? new Date(d.latest.timestamp).toISOString() : null,
    lagEstimateMs: d.latest ? Math.max(0, Date.now() - d.latest.timestamp) : null,
    newestObject: d.newest,
    writer: e ? { epoch: e.epoch, startTxid: e.startTxid, host: e.writer?.host ?? null, pid: e.writer?.pid ?? null, since: e.createdAt ?? null } : null,
    highWaterMark: d.highWaterMark ? { generation: d.highWaterMark.generation, txid: d.highWaterMark.txid } : null,
    problem: d.behind ?? d.generations.at(-1)?.problem ?? null,
  };
}

async function cmdStatus(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, strict: true, options: { ...COMMON, ...LEASE } });
  if (values.help) return help(io, 'status');
  if (positionals.length !== 1) throw new UsageError('status takes <s3-url>');
  const s = statusOf(await describeReplica({ ...sourceFrom(positionals[0], io.env), ...leaseFrom(values, io.env, positionals[0]) }));
  const table = values['lease-table'] ?? io.env.WALSHIP_LEASE_TABLE;
  const lease = table ? await readLease({ table, key: leaseKey(positionals[0]!) }) : null;
  const leaseText = !table
    ? 'not checked (pass --lease-table or WALSHIP_LEASE_TABLE)'
    : lease === null
      ? `no lease item in ${table}`
      : `${lease.released ? 'released' : 'held'} by ${lease.owner} (host ${lease.host} pid ${lease.pid}), epoch ${lease.epoch}, lease ${lease.leaseMs} ms, last renewed ${lease.updatedAt} (holder's clock)`;
  if (values.json) json(io, { ...s, lease: table ? lease : null });
  else {
    io.stdout.write(
      [
        `replica        ${s.location}`,
        `durable txid   ${s.durableTxid ?? 'none (nothing restorable)'}${s.generation ? ` (generation ${s.generation})` : ''}`,
        `last commit    ${s.lastCommit ?? '-'}${s.lagEstimateMs !== null ? ` (${formatAge(s.lagEstimateMs)} ago: the lag while the writer is active)` : ''}`,
        `newest object  ${s.newestObject ? `${s.newestObject.key} (${formatAge(s.newestObject.ageMs)} ago)` : '-'}`,
        `writer         ${s.writer ? `epoch ${s.writer.epoch} from txid ${s.writer.startTxid}${s.writer.host ? `, host ${s.writer.host}` : ''}${s.writer.pid !== null ? ` pid ${s.writer.pid}` : ''}${s.writer.since ? `, since ${s.writer.since}` : ''}` : '-'}`,
        `lease          ${leaseText}`,
        ...(table ? [`high-water     ${s.highWaterMark ? `txid ${s.highWaterMark.txid} of generation ${s.highWaterMark.generation} (recorded by the writer on its lease item)` : 'none recorded'}`] : []),
        ...(s.problem ? [`problem        ${s.problem.code}: ${s.problem.message}`] : []),
      ].join('\n') + '\n',
    );
  }
  return s.problem ? EXIT.failed : EXIT.ok;
}

/** The lease key of a database: its canonical s3 URL, as openReplicated uses it. */
function leaseKey(url: string | undefined): string {
  const { bucket, prefix } = parseS3Url(url);
  return `s3://${bucket}/${prefix}`;
}

async function cmdLease(args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, strict: true, options: { ...COMMON, table: { type: 'string' }, force: { type: 'boolean' } } });
  if (values.help || sub === undefined || sub === '--help' || sub === '-h') return help(io, 'lease');
  const table = values.table ?? io.env.WALSHIP_LEASE_TABLE;
  if (!table) throw new UsageError('lease needs --table (or WALSHIP_LEASE_TABLE)');
  switch (sub) {
    case 'create-table': {
      const info = await createLeaseTable({ table });
      if (values.json) json(io, info);
      else io.stdout.write(`${info.created ? 'created' : 'already there:'} ${info.table} (${info.status}), key ${info.keySchema.map((k) => `${k.name} (${k.type}) ${k.keyType}`).join(', ')}\n`);
      return EXIT.ok;
    }
    case 'show': {
      if (positionals.length !== 1) throw new UsageError('lease show takes <s3-url>');
      const item = await readLease({ table, key: leaseKey(positionals[0]!) });
      if (values.json) json(io, item);
      else io.stdout.write(item ? `${leaseKey(positionals[0]!)}: epoch ${item.epoch}, ${item.released ? 'released' : 'held'} by ${item.owner} (host ${item.host} pid ${item.pid}), lease ${item.leaseMs} ms, updated ${item.updatedAt} (holder's clock)\n` : `no lease item for ${leaseKey(positionals[0]!)} in ${table}\n`);
      return item ? EXIT.ok : EXIT.failed;
    }
    case 'release': {
      if (positionals.length !== 1) throw new UsageError('lease release takes <s3-url>');
      if (!values.force) throw new UsageError('lease release needs --force: it lets another writer take over at once; use it only when the holder is dead');
      const r = await forceRelease({ table, key: leaseKey(positionals[0]!) });
      if (values.json) json(io, r);
      else io.stdout.write(r ? `released epoch ${r.epoch}, held by ${r.owner} (host ${r.host} pid ${r.pid})${r.wasReleased ? ' (it was already released)' : ''}\n` : `no lease item for ${leaseKey(positionals[0]!)} in ${table}\n`);
      return r ? EXIT.ok : EXIT.failed;
    }
    default:
      throw new UsageError(`unknown lease command '${sub}' (create-table, show, release)`);
  }
}

async function cmdDemo(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, strict: true, options: { help: { type: 'boolean', short: 'h' }, seconds: { type: 'string' }, keep: { type: 'boolean' } } });
  if (values.help) return help(io, 'demo');
  if (positionals.length > 0) throw new UsageError('demo takes no arguments');
  const seconds = values.seconds === undefined ? 10 : Number(values.seconds);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new UsageError(`--seconds must be a positive number (got ${values.seconds})`);
  const spec = '@walship/demo';
  let mod: { runDemo(o: { seconds: number; keep: boolean }): Promise<{ ok: boolean }> };
  try {
    mod = (await import(spec)) as typeof mod;
  } catch (e) {
    io.stderr.write(`walship demo needs the @walship/demo package of the walship repository (${(e as Error).message}); run it from a checkout: npx -y pnpm@12.4.2 demo\n`);
    return EXIT.usage;
  }
  const r = await mod.runDemo({ seconds, keep: values.keep ?? false });
  return r.ok ? EXIT.ok : EXIT.failed;
}

function help(io: CliIo, command: string): number {
  io.stdout.write(`${USAGE[command] ?? USAGE['main']}\n`);
  return EXIT.ok;
}

function isConfigCode(code: string | undefined): boolean {
  // ERR_STORAGE_INVALID_REQUEST from the CLI is nearly always the environment: no region, a bad endpoint URL.
  return code === 'ERR_INVALID_OPTION' || code === 'ERR_STORAGE_INVALID_REQUEST' || code === 'ERR_TARGET_EXISTS' || code === 'ERR_TARGET_LOCKED' || code === 'ERR_KEY_REQUIRED' || code === 'ERR_UNKNOWN_KEY' || code === 'ERR_BAD_KEY';
}

/** Runs one command line; returns the exit code. Errors are printed on stderr. */
export async function main(argv: string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        return help(io, rest[0] ?? 'main');
      case '--version':
      case '-v':
        io.stdout.write(`${version()}\n`);
        return EXIT.ok;
      case 'restore':
        return await cmdRestore(rest, io);
      case 'ls':
        return await cmdLs(rest, io);
      case 'verify':
        return await cmdVerify(rest, io);
      case 'status':
        return await cmdStatus(rest, io);
      case 'demo':
        return await cmdDemo(rest, io);
      case 'lease':
        return await cmdLease(rest, io);
      default:
        throw new UsageError(`unknown command '${command}'`);
    }
  } catch (e) {
    const err = e as Error & { code?: string };
    if (e instanceof UsageError || err.code?.startsWith('ERR_PARSE_ARGS')) {
      io.stderr.write(`walship: ${err.message}\nRun 'walship ${command && USAGE[command] ? `${command} ` : ''}--help' for usage.\n`);
      return EXIT.usage;
    }
    io.stderr.write(`walship: ${err.code ?? err.name}: ${err.message}\n`);
    if (err.code && (STORAGE_UNREACHABLE_CODES.has(err.code) || err.code === 'ERR_LEASE_UNAVAILABLE' || err.code === 'ERR_LEASE_THROTTLED')) return EXIT.storage;
    if (err.code === 'ERR_LEASE_TABLE_MISSING' || err.code === 'ERR_LEASE_TABLE_SCHEMA') return EXIT.usage;
    if (isConfigCode(err.code)) return EXIT.usage;
    return EXIT.failed;
  }
}

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string };
    return `walship ${pkg.version ?? 'unknown'}`;
  } catch {
    return 'walship';
  }
}
