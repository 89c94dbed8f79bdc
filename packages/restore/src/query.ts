import { parseArgs } from 'node:util';
import type { Writable } from 'node:stream';
import { parseS3Url } from './commands.js';
import { parseKeys } from './cli-args.js';
import { EXIT, exitCodeFor } from './cli-errors.js';
import { openReplica } from './open-replica.js';
export { hideSdkWarningInFetchThreads } from './page-fetch.js';

export const QUERY_USAGE = `walship query <s3-url> "<SQL>" [--txid N | --timestamp ISO] [--json]

Runs one read-only SQL statement against the replica at the latest state, after a txid, or at a
time, without restoring it: the pages the statement needs are read from S3 on demand (ranged GETs
of verified, decrypted chunks). Rows go to stdout (tab-separated with a header line, or --json: an
array of objects; blobs as hex, 64-bit integers as strings when beyond 2^53); the state queried,
the GETs and the bytes to stderr.

Options:
  --txid N          the state right after transaction N
  --timestamp ISO   the state at this time (e.g. 2026-11-26T15:04:05Z, or ms since the epoch)
  --generation G    only consider generation G (16 hex digits)
  --cache-mib N     memory for decoded chunks (default 64)
  --json            rows as JSON on stdout
  -h, --help        this help

Environment as for every command (walship --help): AWS_* for the store, WALSHIP_KEYS for keys.`;

interface QueryIo {
  stdout: Writable & { write(s: string): boolean };
  stderr: Writable & { write(s: string): boolean };
  env: NodeJS.ProcessEnv;
}

function usage(io: QueryIo, message: string): number {
  io.stderr.write(`walship: ${message}\nRun 'walship query --help' for usage.\n`);
  return EXIT.usage;
}

function shown(v: unknown): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex');
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  return v;
}

/** `walship query`: one statement on an instant replica (see QUERY_USAGE). Returns the exit code. */
export async function runQuery(args: string[], io: QueryIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        txid: { type: 'string' },
        timestamp: { type: 'string' },
        generation: { type: 'string' },
        'cache-mib': { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    return usage(io, (e as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.stdout.write(`${QUERY_USAGE}\n`);
    return EXIT.ok;
  }
  if (positionals.length !== 2) return usage(io, 'query takes <s3-url> "<SQL>"');
  if (values.txid !== undefined && values.timestamp !== undefined) return usage(io, '--txid and --timestamp are exclusive');
  if (values.txid !== undefined && !/^\d+$/.test(values.txid)) return usage(io, `--txid must be a positive integer, got '${values.txid}'`);
  if (values['cache-mib'] !== undefined && !/^\d+$/.test(values['cache-mib'])) return usage(io, `--cache-mib must be a positive integer, got '${values['cache-mib']}'`);
  let timestamp: number | undefined;
  if (values.timestamp !== undefined) {
    timestamp = /^\d+$/.test(values.timestamp) ? Number(values.timestamp) : Date.parse(values.timestamp);
    if (Number.isNaN(timestamp)) return usage(io, `--timestamp must be an ISO 8601 time or ms since the epoch, got '${values.timestamp}'`);
  }
  let location: { bucket: string; prefix: string };
  let keys: Awaited<ReturnType<typeof parseKeys>>;
  try {
    location = parseS3Url(positionals[0]);
    keys = await parseKeys(io.env['WALSHIP_KEYS']);
  } catch (e) {
    return usage(io, (e as Error).message);
  }
  const env = io.env;
  const endpoint = env['AWS_ENDPOINT_URL_S3'] || env['AWS_ENDPOINT_URL'] || undefined;
  const region = env['AWS_REGION'] || env['AWS_DEFAULT_REGION'] || undefined;
  const started = performance.now();
  try {
    const db = await openReplica({
      s3: {
        ...location,
        ...(endpoint ? { endpoint } : {}),
        ...(region ? { region } : {}),
        retry: { attempts: 3, baseDelayMs: 200, maxDelayMs: 2000 },
      },
      ...(keys ? { keys } : {}),
      ...(env['WALSHIP_ORIGINAL_PREFIX'] !== undefined ? { originalPrefix: env['WALSHIP_ORIGINAL_PREFIX'] } : {}),
      ...(values.txid !== undefined ? { txid: Number(values.txid) } : {}),
      ...(timestamp !== undefined ? { timestamp } : {}),
      ...(values.generation !== undefined ? { generation: values.generation } : {}),
      ...(values['cache-mib'] !== undefined ? { cacheBytes: Number(values['cache-mib']) * 1024 * 1024 } : {}),
    });
    try {
      const stmt = db.prepare(positionals[1] as string);
      if (!stmt.reader) return usage(io, 'query runs statements that return rows (SELECT, PRAGMA, ...): the replica is read-only');
      const rows = stmt.all() as Record<string, unknown>[];
      if (values.json) {
        io.stdout.write(`${JSON.stringify(rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, shown(v)]))), null, 2)}\n`);
      } else {
        io.stdout.write(`${stmt.columns().map((c) => c.name).join('\t')}\n`);
        for (const r of rows) io.stdout.write(`${Object.values(r).map((v) => (v === null ? 'NULL' : String(shown(v)))).join('\t')}\n`);
      }
      const s = db.status();
      io.stderr.write(
        `walship: txid ${s.txid} of generation ${s.generation} (${new Date(s.timestamp).toISOString()}): ${rows.length} row(s), ${s.gets} GETs, ${s.bytes} bytes, ${Math.round(performance.now() - started)} ms\n`,
      );
      return EXIT.ok;
    } finally {
      db.close();
    }
  } catch (e) {
    const err = e as Error & { code?: string };
    io.stderr.write(`walship: ${err.code ?? err.name}: ${err.message}\n`);
    if (err.code?.startsWith('SQLITE_ERROR')) return EXIT.usage;
    return exitCodeFor(err.code);
  }
}

