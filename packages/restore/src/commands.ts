import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { GenerationDescription, ObjectDescription, ReplicaDescription } from './inspect.js';
import { COMMON, LEASE, TARGET, fileMode, leaseFrom, leaseKey, sourceFrom, target } from './cli-args.js';
import { checkBucketRoot } from './cli-bucket.js';
import { CHECKED, INTEGRITY_CHECK_MODES, type IntegrityCheckMode } from './check-modes.js';
import { EXIT, UsageError, exitCodeFor, failureOf, reportFailure } from './cli-errors.js';
import { FOLLOW_USAGE } from './cli-follow.js';
import { ProgressLine, formatAge, formatBytes, iso, json, type CliIo } from './cli-output.js';

// The SDKs and the restore engine load on first use (await import): `walship --help` and usage
// errors must not pay for them.
export { EXIT } from './cli-errors.js';
export { parseS3Url } from './cli-args.js';
export { formatBytes, type CliIo } from './cli-output.js';

const USAGE: Record<string, string> = {
  main: `walship: restore, inspect and verify SQLite databases replicated by walship

Usage:
  walship restore <s3-url> <path> [--txid N | --timestamp ISO] [--overwrite] [--if-db-not-exists]
                 [--if-replica-exists] [--integrity-check full|quick|none] [--lease-table T] [--json]
  walship follow <s3-url> <path> [--interval MS] [--status-interval S] [--json]
  walship ls <s3-url> [--json]
  walship query <s3-url> "<SQL>" [--txid N | --timestamp ISO] [--json]   (no restore: pages on demand)
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

Exit codes: 0 ok, 1 verification failed or data error, 2 usage or configuration error (missing
credentials included), 3 storage or DynamoDB unreachable, or access denied, 4 no replica at the
s3-url (ERR_NO_REPLICA). With --json, an error is also one JSON object on stdout:
{"ok": false, "exitCode": N, "error": {"code": "ERR_...", "message": "...", "details": {...}}}.`,
  restore: `walship restore <s3-url> <path> [options]

Restores the database to <path>: the latest state, or the state after a txid, or the state after
the last transaction committed at or before a time. Every object is verified before it is applied;
the file is built beside <path>, read back from the disk, and renamed into place only after its
size and checksum are the replica's and PRAGMA integrity_check passes.

Options:
  --txid N          restore the state right after transaction N
  --timestamp ISO   restore the state at this time (e.g. 2026-11-26T15:04:05Z, or ms since the epoch)
  --generation G    only consider generation G (16 hex digits)
  --overwrite       replace an existing file at <path> (and its -wal/-shm)
  --if-db-not-exists
                    exit 0 without restoring when <path> exists (a container entrypoint
                    restores on first boot only)
  --if-replica-exists
                    exit 0 without restoring when there is no replica at <s3-url> yet (a first
                    deployment starts empty); with --lease-table, a bucket whose objects were
                    deleted behind the high-water mark is still an error
  --mode OCTAL      permission bits of the restored file (default 600: owner only; e.g. 640),
                    set whatever the umask
  --integrity-check full|quick|none
                    the SQLite check of the finished file: full (default) PRAGMA integrity_check,
                    quick PRAGMA quick_check (index entries not matched against their rows), none
                    (the read-back size and checksum only; every object and transaction is still
                    verified)
  --concurrency N   objects downloaded in parallel (default 8)
  --lease-table T   the writer's lease table (or WALSHIP_LEASE_TABLE): ERR_REPLICA_BEHIND when the
                    bucket does not reach the durable high-water mark its item records
  --json            print the result as JSON on stdout
  -h, --help        this help

Progress goes to stderr; the result to stdout. A skipped restore prints why on stderr (with --json,
{"ok": true, "skipped": "db-exists" | "no-replica", ...} on stdout).`,
  ls: `walship ls <s3-url> [--json]

Lists the replica: generations, their epochs (writer host and pid), snapshots and segments with
txid ranges, commit times and sizes, and the txid and time range each generation can restore.
A bucket URL without a prefix (s3://bucket) lists only a replica written at the bucket root;
otherwise it exits 4 (ERR_NO_REPLICA) naming the prefixes that hold one among the first 1000 keys.`,
  follow: FOLLOW_USAGE,
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
latest state is behind it (the newest objects were deleted). Exit code 4 with problem
ERR_NO_REPLICA when the prefix holds no generation.`,
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

const RESTORE_OPTIONS = {
  ...COMMON,
  ...TARGET,
  ...LEASE,
  overwrite: { type: 'boolean' },
  mode: { type: 'string' },
  'integrity-check': { type: 'string' },
  'if-db-not-exists': { type: 'boolean' },
  'if-replica-exists': { type: 'boolean' },
} as const;

/** A restore that --if-db-not-exists or --if-replica-exists turned into nothing to do: exit 0, say why. */
function skipped(io: CliIo, asJson: boolean | undefined, why: 'db-exists' | 'no-replica', text: string, fields: Record<string, unknown>): number {
  io.stderr.write(`walship: ${text}\n`);
  if (asJson) json(io, { ok: true, skipped: why, ...fields });
  return EXIT.ok;
}

async function cmdRestore(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, strict: true, options: RESTORE_OPTIONS });
  if (values.help) return help(io, 'restore');
  if (positionals.length !== 2) throw new UsageError('restore takes <s3-url> <path>');
  if (values.overwrite && values['if-db-not-exists']) throw new UsageError('--overwrite and --if-db-not-exists are exclusive (one replaces the file, the other keeps it)');
  const mode = fileMode(values.mode);
  const check = values['integrity-check'];
  if (check !== undefined && !(INTEGRITY_CHECK_MODES as readonly string[]).includes(check)) throw new UsageError(`--integrity-check must be one of ${INTEGRITY_CHECK_MODES.join(', ')}, not ${JSON.stringify(check)}`);
  const path = positionals[1] as string;
  const source = { ...(await sourceFrom(positionals[0], io.env)), ...leaseFrom(values, io.env, positionals[0]) };
  const options = { ...target(values), overwrite: values.overwrite ?? false, ...(mode !== undefined ? { mode } : {}), ...(check !== undefined ? { integrityCheck: check as IntegrityCheckMode } : {}) };
  if (values['if-db-not-exists'] && existsSync(path)) {
    return skipped(io, values.json, 'db-exists', `${path} exists; nothing restored (--if-db-not-exists)`, { path });
  }
  const progress = new ProgressLine(io.stderr, positionals[0] as string);
  try {
    await checkBucketRoot(source);
    const { restore } = await import('./restore.js');
    const result = await restore({ ...source, ...options, path, onProgress: progress.update });
    progress.end();
    if (values.json) json(io, result);
    else {
      io.stdout.write(
        `restored ${result.path}\n  txid        ${result.txid}\n  committed   ${iso(result.timestamp)}\n  generation  ${result.generation}\n  objects     ${result.objects} (${formatBytes(result.bytes)})\n  checksum    ${result.checksum}\n  checked     ${CHECKED[result.integrityCheck]}\n  took        ${result.durationMs} ms\n` +
          `Open it with openDatabase(path, { baseTxid: ${result.txid} }) or continue the replica with openReplicated.\n`,
      );
    }
    return EXIT.ok;
  } catch (e) {
    progress.end();
    // No replica at all, not a missing generation asked for by name: a first deployment starts empty.
    const f = failureOf(e);
    if (values['if-replica-exists'] && f.code === 'ERR_NO_REPLICA' && f.details['generation'] === undefined) {
      return skipped(io, values.json, 'no-replica', `no replica at ${positionals[0]}; nothing restored (--if-replica-exists)`, { location: positionals[0], path });
    }
    throw e;
  } finally {
    progress.end();
  }
}

async function cmdVerify(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, strict: true, options: { ...COMMON, ...TARGET, ...LEASE } });
  if (values.help) return help(io, 'verify');
  if (positionals.length !== 1) throw new UsageError('verify takes <s3-url>');
  const source = { ...(await sourceFrom(positionals[0], io.env)), ...leaseFrom(values, io.env, positionals[0]) };
  await checkBucketRoot(source);
  const { verify } = await import('./verify.js');
  // Its restore goes into a scratch file that is removed: no rename into place, no "done".
  const progress = new ProgressLine(io.stderr, positionals[0] as string, { phases: ['plan', 'download', 'verify'] });
  const r = await verify({ ...source, ...target(values), onProgress: progress.update });
  progress.end();
  if (values.json) json(io, r);
  else if (r.ok && r.result) {
    io.stdout.write(`verify ok: txid ${r.result.txid} of generation ${r.result.generation}, ${r.result.objects} objects (${formatBytes(r.result.bytes)}), checksum ${r.result.checksum}\n`);
    for (const c of r.checks) io.stdout.write(`  ok  ${c}\n`);
  } else {
    io.stdout.write(`verify FAILED: ${r.error?.code}\n  ${r.error?.message}\n`);
  }
  if (r.ok) return EXIT.ok;
  if (values.json) io.stderr.write(`walship: verify FAILED: ${r.error?.code}: ${r.error?.message}\n`);
  // The lease table (--lease-table) is read by verify too: its failures keep the codes main() gives them.
  return exitCodeFor(r.error?.code);
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
  const source = await sourceFrom(positionals[0], io.env);
  await checkBucketRoot(source);
  const { describeReplica } = await import('./inspect.js');
  const d = await describeReplica(source);
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
    problem: d.behind ?? d.generations.at(-1)?.problem ?? (d.generations.length === 0 ? noReplica(d) : null),
  };
}

/** The problem of a prefix holding no generation: the same code restore reports (exit 4). */
function noReplica(d: ReplicaDescription): StatusReport['problem'] {
  return { code: 'ERR_NO_REPLICA', message: `no walship replica at ${d.location}: ${d.objects === 0 ? 'nothing is stored under this prefix' : `${d.objects} keys, none of them a generation's object`}`, details: { location: d.location, keys: d.objects } };
}

async function cmdStatus(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, strict: true, options: { ...COMMON, ...LEASE } });
  if (values.help) return help(io, 'status');
  if (positionals.length !== 1) throw new UsageError('status takes <s3-url>');
  const source = { ...(await sourceFrom(positionals[0], io.env)), ...leaseFrom(values, io.env, positionals[0]) };
  await checkBucketRoot(source);
  const { describeReplica } = await import('./inspect.js');
  const { readLease } = await import('@walship/lease');
  const s = statusOf(await describeReplica(source));
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
  return s.problem ? (s.problem.code === 'ERR_NO_REPLICA' ? EXIT.noReplica : EXIT.failed) : EXIT.ok;
}

async function cmdLease(args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, strict: true, options: { ...COMMON, table: { type: 'string' }, force: { type: 'boolean' } } });
  if (values.help || sub === undefined || sub === '--help' || sub === '-h') return help(io, 'lease');
  const table = values.table ?? io.env.WALSHIP_LEASE_TABLE;
  if (!table) throw new UsageError('lease needs --table (or WALSHIP_LEASE_TABLE)');
  const { createLeaseTable, forceRelease, readLease } = await import('@walship/lease');
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
      case 'follow':
        return await (await import('./cli-follow.js')).cmdFollow(rest, io, () => help(io, 'follow'));
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
    return reportFailure(io, failureOf(e), { json: rest.includes('--json'), command: command && USAGE[command] ? command : undefined });
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
