// The scenario writer: a child process that opens a database through the public API
// (openReplicated) and commits the scenario workload until it is killed, runs out of commits, or a
// commit fails for good. Its configuration is the JSON in WALSHIP_SCENARIO_WRITER (WriterConfig), or,
// when that says `stdin`, the first line of stdin (read after the modules and SQLite's WASM are loaded,
// so the harness can start a writer ahead of time).
// Every line goes to stdout with a synchronous write, so a line the parent read was written before
// any kill:
//   O <txid> <generation> <epoch> <how>  opened (how: the lease grant's path, `none` without a lease)
//   B <n>                           commit n starts (a kill from here on may or may not leave it committed)
//   C <n> <txid>                    the commit that set meta.n = n returned (txid: the database's txid after it)
//   D <n> <txid>                    flush() resolved after commit n: n is durable
//   T <n> <code> <durable> <committed>  flush() after commit n rejected (flushTimeoutMs): its code and txids
//   S <state> <epoch>               status() every statusEveryMs
//   R <n> <code>                    commit n failed and was rolled back (disk full, EIO, WAL limit); the writer goes on
//   X <code> <n>                    a commit failed for good (lease lost); the writer exits 3 (4: open failed, n = 'open')
//   K <op> <name> <how>             the writer kills itself (SIGKILL) at file operation <op>
//   F <op> <name> <errno>           an injected file-operation error
//   Z <n> <txid>                    maxCommits reached and flushed; the writer exits 0
import { writeSync } from 'node:fs';
import { openReplicated, type ReplicatedOptions } from '@walship/shipper';
import { loadSqlite, nodeFs, type FsOps } from '@walship/vfs';
import { SCHEMA, commitStatements, type ValueShape } from './workload.js';

export interface WriterConfig {
  path: string;
  s3: { endpoint: string; bucket: string; prefix: string; region: string; accessKeyId: string; secretAccessKey: string };
  lease?: { table: string; endpoint: string; region: string; accessKeyId: string; secretAccessKey: string; leaseMs: number };
  seed: number;
  /** One character: whose rows these are. */
  mark: string;
  /** bursts: runs of 1..20 commits with short pauses; steady: commits back to back. */
  mode: 'bursts' | 'steady';
  /** SIGKILL at this mutating file operation of the VFS (1-based), before it, after it, or after half its bytes. */
  killAt?: { op: number; how: 'before' | 'after' | 'torn' };
  /** Mutating file operations number `fromOp`..`fromOp + count - 1` fail with this errno. */
  fsFault?: { fromOp: number; count: number; errno: 'ENOSPC' | 'EIO' };
  pageSize?: number;
  maxSegmentBytes?: number;
  checkpointBytes?: number;
  walLimitBytes?: number;
  batchWindowMs?: number;
  encryption?: { id: string; key: string };
  compression?: 'zstd' | 'none';
  shape?: ValueShape;
  /** Stop after this many commits of this run: flush, print Z, exit 0. */
  maxCommits?: number;
  /** Probability of a flush() after a burst (default 0.25). */
  flushRate?: number;
  /** The application asks for a checkpoint (db.checkpoint()) after every this many commits. */
  appCheckpointEvery?: number;
  /** Shift Date.now by a random ±2 h every 200 ms (the lease must not care; commit timestamps may jump). */
  clockJumps?: boolean;
  /** flush() after a burst gives up after this long (ERR_FLUSH_TIMEOUT): prints T instead of D. */
  flushTimeoutMs?: number;
  /** Prints an S line with status().state and epoch this often. */
  statusEveryMs?: number;
}

async function readConfig(): Promise<WriterConfig | null> {
  const env = process.env.WALSHIP_SCENARIO_WRITER;
  if (env !== 'stdin') return JSON.parse(env ?? 'null') as WriterConfig | null;
  await loadSqlite();
  let buf = '';
  for await (const chunk of process.stdin) {
    buf += String(chunk);
    const i = buf.indexOf('\n');
    if (i >= 0) return JSON.parse(buf.slice(0, i)) as WriterConfig;
  }
  return null; // the harness went away before sending one
}

const config = await readConfig();
if (!config) {
  process.stderr.write('scenario writer: set WALSHIP_SCENARIO_WRITER to its JSON configuration (or to stdin and send it as one line)\n');
  process.exit(2);
}
// Lines go out synchronously (a kill -9 right after must not lose them). stdout is a pipe the
// harness reads; when it is full (the harness busy under load) a write answers EAGAIN: wait 1 ms
// and write the rest (seen in CI: the writer died on EAGAIN and counted as a crash).
const pause = new Int32Array(new SharedArrayBuffer(4));
const out = (line: string): void => {
  const bytes = Buffer.from(`${line}\n`);
  let done = 0;
  while (done < bytes.length) {
    try {
      done += writeSync(1, bytes, done, bytes.length - done);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      Atomics.wait(pause, 0, 0, 1);
    }
  }
};
let seed = config.seed | 0 || 1;
const rand = (n: number): number => {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) % n;
};

if (config.clockJumps) {
  const realNow = Date.now.bind(Date);
  let shift = 0;
  Date.now = () => realNow() + shift;
  setInterval(() => {
    shift = (rand(2) === 0 ? -1 : 1) * rand(2 * 3600_000);
  }, 200).unref();
}

// Mutating file operations of the VFS, counted; the kill and the errors land at exact ones.
let op = 0;
const fs: FsOps = { ...nodeFs };
const mutating = ['writeSync', 'fsyncSync', 'fdatasyncSync', 'ftruncateSync'] as const;
for (const name of mutating) {
  const real = nodeFs[name] as (...a: unknown[]) => unknown;
  (fs as unknown as Record<string, unknown>)[name] = (...args: unknown[]): unknown => {
    op++;
    const k = config.killAt;
    if (k && op === k.op) {
      out(`K ${op} ${name} ${k.how}`);
      if (k.how === 'torn' && name === 'writeSync') {
        const [fd, buffer, offset, length, position] = args as [number, Uint8Array, number, number, number];
        nodeFs.writeSync(fd, buffer, offset, Math.max(1, length >> 1), position);
      } else if (k.how === 'after') real(...args);
      process.kill(process.pid, 'SIGKILL');
    }
    const f = config.fsFault;
    if (f && op >= f.fromOp && op < f.fromOp + f.count) {
      out(`F ${op} ${name} ${f.errno}`);
      throw Object.assign(new Error(`${f.errno}: injected by the scenario writer, ${name}`), { code: f.errno, errno: f.errno === 'ENOSPC' ? -28 : -5, syscall: name.replace('Sync', '') });
    }
    return real(...args);
  };
}

const options: ReplicatedOptions = {
  lease: config.lease
    ? {
        table: config.lease.table,
        endpoint: config.lease.endpoint,
        region: config.lease.region,
        credentials: { accessKeyId: config.lease.accessKeyId, secretAccessKey: config.lease.secretAccessKey },
        leaseMs: config.lease.leaseMs,
      }
    : false,
  s3: {
    bucket: config.s3.bucket,
    prefix: config.s3.prefix,
    endpoint: config.s3.endpoint,
    region: config.s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: config.s3.accessKeyId, secretAccessKey: config.s3.secretAccessKey },
    retry: { attempts: 8, baseDelayMs: 5, maxDelayMs: 50, requestTimeoutMs: 500, connectTimeoutMs: 300 },
  },
  batchWindowMs: config.batchWindowMs ?? (config.mode === 'steady' ? 0 : rand(2) === 0 ? 0 : 20),
  checkpointBytes: config.checkpointBytes ?? (config.mode === 'steady' ? 32 * 1024 : 64 * 1024),
  uploadBackoff: { baseMs: 5, maxMs: 50 },
  logLevel: (process.env.WALSHIP_SCENARIO_LOG as 'debug' | undefined) ?? 'silent',
  retentionMs: 0,
  database: { synchronous: 'FULL', fs, ...(config.pageSize ? { pageSize: config.pageSize } : {}) },
  ...(config.maxSegmentBytes ? { maxSegmentBytes: config.maxSegmentBytes } : {}),
  ...(config.walLimitBytes ? { walLimitBytes: config.walLimitBytes } : {}),
  ...(config.encryption ? { encryption: { keys: [config.encryption] } } : {}),
  ...(config.compression ? { compression: config.compression } : {}),
};
let db: Awaited<ReturnType<typeof openReplicated>>;
try {
  db = await openReplicated(config.path, options);
} catch (e) {
  out(`X ${(e as { code?: string }).code ?? 'ERR_UNKNOWN'} open`);
  process.stderr.write(`scenario writer: open failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(4);
}
const st = db.status();
out(`O ${db.txid} ${st.generation} ${st.epoch} ${st.lease.mode === 'dynamodb' ? st.lease.how : 'none'}`);
if (config.statusEveryMs) {
  setInterval(() => {
    const s = db.status();
    out(`S ${s.state} ${s.epoch}`);
  }, config.statusEveryMs).unref();
}
db.exec(SCHEMA);
let n = db.prepare('SELECT n FROM meta').pluck().get() as number;
const stmts = new Map<string, ReturnType<typeof db.prepare>>();
const prepared = (sql: string) => {
  let s = stmts.get(sql);
  if (!s) stmts.set(sql, (s = db.prepare(sql)));
  return s;
};
const tx = db.transaction((k: number) => {
  for (const [sql, params] of commitStatements(config.mark, k, config.shape)) prepared(sql).run(...(params as (string | number)[]));
});
const flushRate = config.flushRate ?? 0.25;
let commits = 0;
const flushAfter = (): void => {
  const at = n;
  const txid = db.txid;
  void db.flush(config.flushTimeoutMs !== undefined ? { timeoutMs: config.flushTimeoutMs } : {}).then(
    () => out(`D ${at} ${txid}`),
    (e: { code?: string; details?: { durableTxid?: number; committedTxid?: number } }) => {
      if (config.flushTimeoutMs !== undefined) out(`T ${at} ${e.code ?? 'ERR_UNKNOWN'} ${e.details?.durableTxid ?? -1} ${e.details?.committedTxid ?? -1}`);
    },
  );
};
/** One commit; false when it failed and was rolled back (the writer retries n later). */
const commit = (): boolean => {
  const k = n + 1;
  out(`B ${k}`);
  try {
    tx(k);
  } catch (e) {
    const code = (e as { code?: string }).code ?? 'ERR_UNKNOWN';
    if (code === 'ERR_LEASE_LOST' || code === 'ERR_CLOSED') {
      out(`X ${code} ${k}`);
      process.exit(3);
    }
    out(`R ${k} ${code}`);
    return false;
  }
  n = k;
  commits++;
  out(`C ${n} ${db.txid}`);
  if (config.appCheckpointEvery && commits % config.appCheckpointEvery === 0) {
    // Refused ('not-durable') while uploads are pending. A full disk or an I/O error fails it as it
    // fails a write (the checkpoint's marker transaction is rolled back): the application's error,
    // not a crash. Anything else is.
    try {
      db.checkpoint();
    } catch (e) {
      const code = (e as { code?: string }).code ?? '';
      if (!/^SQLITE_(FULL|IOERR)/.test(code)) throw e;
      process.stderr.write(`scenario writer: db.checkpoint() failed with ${code}\n`);
    }
  }
  return true;
};
for (;;) {
  if (config.maxCommits !== undefined && commits >= config.maxCommits) {
    try {
      await db.flush();
    } catch (e) {
      out(`X ${(e as { code?: string }).code ?? 'ERR_UNKNOWN'} flush`);
      process.stderr.write(`scenario writer: the final flush failed: ${(e as Error).stack ?? String(e)}\n`);
      process.exit(3);
    }
    out(`Z ${n} ${db.txid}`);
    // A full disk or an I/O error in close()'s last checkpoint leaves the WAL and closes all the
    // same: close() rejecting here is a crash of the writer (a violation).
    await db.close();
    process.exit(0);
  }
  if (config.mode === 'steady') {
    if (!commit()) await new Promise((r) => setTimeout(r, 20));
    if (rand(50) === 0) flushAfter();
    await new Promise((r) => setImmediate(r));
    continue;
  }
  const burst = 1 + rand(20);
  let failed = false;
  for (let i = 0; i < burst && !failed; i++) failed = !commit();
  if (rand(1000) < flushRate * 1000) flushAfter();
  await new Promise((r) => setTimeout(r, failed ? 20 : rand(15)));
}
