// The scenario harness: real servers behind fault proxies, writer child processes, the history of
// what each writer saw commit and become durable, and the invariant checks of DESIGN.md run on
// restores made through the public API:
//   P  a restore is exactly the state after some commit the writers saw return (the oracle replays
//      the same SQL into a separate SQLite and the rows must match one for one);
//   D  it holds at least every commit some flush() reported durable;
//   I  integrity_check is ok in walship's SQLite and in the native sqlite3 shell;
//   C  the checksum chain links: an independent decoder (test/util/replica.ts) rebuilds the same
//      bytes from the objects, and restore at sampled txids gives exactly the state of that commit;
//   F  after a takeover, no row of the fenced writer's later commits is visible.
// A broken invariant is recorded as a violation (with the seed), never thrown past the scenario.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Keyring, parseObjectKey } from '@walship/format';
import { restore } from '@walship/restore';
import { openDatabase } from '@walship/vfs';
import type { ObjectStorage } from '@walship/storage';
import type { DynamoServer, FaultProxy, S3Server } from '../servers/index.js';
import { openOracle } from '../util/oracle-sqlite.js';
import { rebuildFromReplica } from '../util/replica.js';
import { s3Location, storageFor } from '../util/s3.js';
import { commitStatements, SCHEMA, type ValueShape } from './workload.js';
import type { WriterConfig } from './writer.js';

const WRITER = fileURLToPath(new URL('./writer.js', import.meta.url));

function startWriterProcess(): ChildProcess {
  const child = spawn(process.execPath, [WRITER], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, NODE_NO_WARNINGS: '1', WALSHIP_SCENARIO_WRITER: 'stdin' },
  });
  child.stdin!.on('error', () => undefined); // a writer that died before reading its config
  return child;
}

// A writer process spends about a second loading the AWS SDK and SQLite's WASM before it reads its
// configuration. With the pool on, the next one loads while the current trial runs and its replica
// is checked, so a kill loop does not wait for it.
let pool: { spare: ChildProcess | null } | null = null;

/** Keeps one writer process loaded and waiting (scenario runs); `stopWriterPool` ends it. */
export function startWriterPool(): void {
  pool ??= { spare: null };
}

export function stopWriterPool(): void {
  pool?.spare?.kill('SIGKILL');
  pool = null;
}

function takeWriterProcess(): ChildProcess {
  if (!pool) return startWriterProcess();
  const spare = pool.spare;
  pool.spare = startWriterProcess();
  return spare && spare.exitCode === null && spare.signalCode === null ? spare : startWriterProcess();
}

export interface Servers {
  s3: S3Server;
  /** Fault proxy in front of s3: writers go through it, checks read the server directly. */
  s3proxy: FaultProxy;
  dynamo: DynamoServer;
  dynamoProxy: FaultProxy;
  leaseTable: string;
}

export interface Counters {
  trials: number;
  killPoints: number;
  faults: number;
  restores: number;
  /** Transactions whose presence and content a check compared with the oracle. */
  transactionsChecked: number;
  violations: string[];
  notes: string[];
}

export const newCounters = (): Counters => ({ trials: 0, killPoints: 0, faults: 0, restores: 0, transactionsChecked: 0, violations: [], notes: [] });

export interface ScenarioContext {
  servers: Servers;
  /** Scratch directory of this scenario run (removed afterwards). */
  dir: string;
  seed: number;
  trials: number;
  /** Random fault rate of the S3 proxy for the scenarios that use one (the fast set: 0.2). */
  faultRate: number;
  counters: Counters;
  random(n: number): number;
  log(line: string): void;
}

/** xorshift32: the scenario's own reproducible choices. */
export function seeded(seed: number): (n: number) => number {
  let s = seed | 0 || 0x2545f491;
  return (n: number): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % n;
  };
}

let unique = 0;
export const uniquePrefix = (name: string, seed: number): string => `scenario/${name}/${seed}-${process.pid}-${++unique}`;

/** What the writers committed, one lineage: row n belongs to the writer whose mark it carries. */
export class History {
  readonly owners = new Map<number, string>();
  readonly txidOf = new Map<number, number>();
  /** The highest commit a writer started (a kill may have landed after its commit point). */
  maxCommitted = 0;
  maxDurable = 0;
  shape: ValueShape;

  constructor(shape: ValueShape = {}) {
    this.shape = shape;
  }

  /** Commit n started: from here a crash may or may not leave it committed (SQLite's commit point is inside). */
  attempt(mark: string, n: number): void {
    this.owners.set(n, mark);
    this.maxCommitted = Math.max(this.maxCommitted, n);
  }

  commit(mark: string, n: number, txid: number): void {
    this.attempt(mark, n);
    this.txidOf.set(n, txid);
  }

  durable(n: number): void {
    this.maxDurable = Math.max(this.maxDurable, n);
  }

  /**
   * A takeover from `base`: commits above it by earlier writers are not part of the lineage.
   * Returns the undo, for a takeover that did not happen (the new writer refused to open).
   */
  fence(base: number): () => void {
    const owners = [...this.owners].filter(([n]) => n > base);
    const txids = [...this.txidOf].filter(([n]) => n > base);
    const maxCommitted = this.maxCommitted;
    for (const [n] of owners) this.owners.delete(n);
    for (const [n] of txids) this.txidOf.delete(n);
    this.maxCommitted = base;
    return () => {
      for (const [n, mark] of owners) this.owners.set(n, mark);
      for (const [n, txid] of txids) this.txidOf.set(n, txid);
      this.maxCommitted = Math.max(this.maxCommitted, maxCommitted);
    };
  }

  /** The oracle: the rows the lineage holds after commit m, replayed into a separate SQLite. */
  oracleRows(m: number, dir: string): { n: number; v: string }[] {
    const path = join(dir, `oracle-${process.hrtime.bigint()}.db`);
    const db = openOracle(path);
    try {
      db.exec(SCHEMA);
      db.transaction(() => {
        for (let n = 1; n <= m; n++) {
          const mark = this.owners.get(n);
          if (mark === undefined) throw new Error(`the history has no commit ${n} (lineage up to ${this.maxCommitted})`);
          for (const [sql, params] of commitStatements(mark, n, this.shape)) db.prepare(sql).run(...params);
        }
      });
      return db.prepare('SELECT n, v FROM rows ORDER BY n').all() as { n: number; v: string }[];
    } finally {
      db.close();
      rmSync(path, { force: true });
    }
  }
}

export interface WriterExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A writer child process and what it printed. */
export class Writer {
  readonly child: ChildProcess;
  readonly config: WriterConfig;
  readonly exited: Promise<WriterExit>;
  readonly opened: Promise<{ txid: number; generation: string; epoch: number; how: string }>;
  committed = 0;
  durable = 0;
  rejected = 0;
  /** Rejected commits by error code (R lines). */
  readonly rejectedBy = new Map<string, number>();
  /** Rejected flushes (T lines). */
  readonly flushFailures: { n: number; code: string; durableTxid: number; committedTxid: number }[] = [];
  /** status() as the S lines reported it, oldest first. */
  readonly states: { state: string; epoch: number }[] = [];
  failedWith: string | null = null;
  killedAt: string | null = null;
  fsFaults = 0;
  finished: { n: number; txid: number } | null = null;
  /** Once fenced, this writer's lines no longer count for the history. */
  fenced = false;
  stderr = '';

  constructor(config: WriterConfig, history: History) {
    this.config = config;
    this.child = takeWriterProcess();
    this.child.stdin!.end(`${JSON.stringify(config)}\n`);
    this.exited = new Promise((r) => this.child.on('exit', (code, signal) => r({ code, signal })));
    // WALSHIP_SCENARIO_LOG=debug: every writer logs (JSON lines on stderr), kept whole in WALSHIP_SCENARIO_LOG_DIR.
    const logDir = process.env.WALSHIP_SCENARIO_LOG_DIR;
    const logFile = logDir ? join(logDir, `writer-${Date.now()}-${this.child.pid}.log`) : null;
    if (logDir) mkdirSync(logDir, { recursive: true });
    if (logFile) appendFileSync(logFile, `${JSON.stringify(config)}\n`);
    this.child.stderr!.on('data', (d: Buffer) => {
      if (logFile) appendFileSync(logFile, d);
      if (this.stderr.length < 20_000) this.stderr += d.toString();
    });
    this.opened = new Promise((resolve, reject) => {
      let buf = '';
      let isOpen = false;
      this.child.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          const [kind, a, b, c, d] = buf.slice(0, i).split(' ');
          buf = buf.slice(i + 1);
          if (kind === 'O') {
            isOpen = true;
            resolve({ txid: Number(a), generation: b!, epoch: Number(c), how: d ?? 'none' });
          } else if (kind === 'B') {
            if (!this.fenced) history.attempt(config.mark, Number(a));
          } else if (kind === 'C') {
            this.committed = Number(a);
            if (!this.fenced) history.commit(config.mark, Number(a), Number(b));
          } else if (kind === 'D') {
            this.durable = Math.max(this.durable, Number(a));
            if (!this.fenced) history.durable(Number(a));
          } else if (kind === 'R') {
            this.rejected++;
            this.rejectedBy.set(b!, (this.rejectedBy.get(b!) ?? 0) + 1);
          } else if (kind === 'T') this.flushFailures.push({ n: Number(a), code: b!, durableTxid: Number(c), committedTxid: Number(d) });
          else if (kind === 'S') this.states.push({ state: a!, epoch: Number(b) });
          else if (kind === 'X') this.failedWith = a!;
          else if (kind === 'K') this.killedAt = `${b} #${a} (${c})`;
          else if (kind === 'F') this.fsFaults++;
          else if (kind === 'Z') this.finished = { n: Number(a), txid: Number(b) };
        }
      });
      void this.exited.then((e) => {
        if (!isOpen) reject(new Error(`the writer exited (code ${e.code}, signal ${e.signal}) before it opened: ${this.stderr.trim() || '(no stderr)'}`));
      });
    });
    // Reported through `opened` or the scenario's own wait; never an unhandled rejection.
    this.opened.catch(() => undefined);
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<WriterExit> {
    if (this.running) this.child.kill(signal);
    return this.exited;
  }
}

/** Waits for a writer that should stop by itself (Z, X, or its own kill); kills it after `ms`. */
export async function settle(w: Writer, ms: number): Promise<'exited' | 'killed'> {
  // The timer is cleared when the writer exits first: a pending one kept the test process alive
  // for up to a minute after its last scenario.
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), ms)));
  const r = await Promise.race([w.exited.then(() => 'exited' as const), late]).finally(() => clearTimeout(timer));
  if (r === 'exited') return 'exited';
  await w.kill('SIGKILL');
  return 'killed';
}

/** A writer run to maxCommits; a run that does not finish within `ms` is a violation. */
export async function runToEnd(ctx: ScenarioContext, config: WriterConfig, history: History, label: string, ms = 60_000): Promise<Writer> {
  return finish(ctx, new Writer(config, history), label, ms);
}

export async function finish(ctx: ScenarioContext, w: Writer, label: string, ms: number): Promise<Writer> {
  const how = await settle(w, ms);
  if (how === 'killed') ctx.counters.violations.push(`${label}: the writer did not finish ${w.config.maxCommits} commits within ${ms} ms (committed ${w.committed}, durable ${w.durable}): ${w.stderr.trim().slice(-500)}`);
  else if (!w.finished) ctx.counters.violations.push(`${label}: the writer stopped before finishing (exit ${(await w.exited).code}, ${w.failedWith ?? 'no code'}): ${w.stderr.trim().slice(-500)}`);
  return w;
}

/** A writer's configuration; it reaches S3 through the fault proxy unless `direct`. */
export function writerConfig(ctx: ScenarioContext, fields: Partial<WriterConfig> & { path: string; prefix: string; seed: number; direct?: boolean }): WriterConfig {
  const { s3proxy, s3 } = ctx.servers;
  const { prefix, direct, ...rest } = fields;
  return {
    mark: 'A',
    mode: 'bursts',
    ...rest,
    s3: { endpoint: direct ? s3.endpoint : s3proxy.endpoint, bucket: s3.bucket, prefix, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
  };
}

export function leaseConfig(ctx: ScenarioContext, leaseMs: number, direct = false): NonNullable<WriterConfig['lease']> {
  const d = ctx.servers.dynamo;
  return { table: ctx.servers.leaseTable, endpoint: direct ? d.endpoint : ctx.servers.dynamoProxy.endpoint, region: d.region, accessKeyId: d.accessKeyId, secretAccessKey: d.secretAccessKey, leaseMs };
}

/** The restore source of a prefix, read from the server directly (not through the fault proxy). */
export function sourceOf(ctx: ScenarioContext, prefix: string, keys?: { id: string; key: string }[]) {
  return { s3: s3Location(ctx.servers.s3, prefix), ...(keys ? { keys } : {}) };
}

export function storageOf(ctx: ScenarioContext): ObjectStorage {
  return storageFor(ctx.servers.s3, '');
}

export async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Runs a check; a thrown error becomes a violation that names the scenario's seed. */
export async function guard<T>(ctx: ScenarioContext, label: string, fn: () => Promise<T>): Promise<T | undefined> {
  try {
    return await fn();
  } catch (e) {
    ctx.counters.violations.push(`${label}: ${(e as Error).message}`);
    ctx.log(`VIOLATION ${label}: ${(e as Error).stack ?? String(e)}`);
    return undefined;
  }
}

function integrityNative(path: string): string {
  const r = spawnSync('sqlite3', ['-readonly', path, 'PRAGMA integrity_check;'], { encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw new Error(`the native sqlite3 shell could not run: ${r.error.message}`);
  return `${r.stdout}${r.stderr}`.trim();
}

/** I and the content check: returns m (meta.n) after comparing every row with the oracle. */
export async function checkFile(ctx: ScenarioContext, history: History, path: string, what: string): Promise<number> {
  const db = await openDatabase(path, { capture: false, create: false });
  let m: number;
  let rows: { n: number; v: string }[];
  try {
    const ic = db.pragma('integrity_check', { simple: true });
    if (ic !== 'ok') throw new Error(`${what}: integrity_check in walship: ${String(ic)}`);
    // No schema yet: the state after txid 1 of a new database (its generation's snapshot), commit 0.
    const schema = db.prepare("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN ('rows', 'meta')").pluck().get() as number;
    m = schema === 0 ? 0 : (db.prepare('SELECT n FROM meta').pluck().get() as number);
    rows = schema === 0 ? [] : (db.prepare('SELECT n, v FROM rows ORDER BY n').all() as { n: number; v: string }[]);
  } finally {
    db.close();
  }
  const native = integrityNative(path);
  if (native !== 'ok') throw new Error(`${what}: integrity_check in the sqlite3 shell: ${native}`);
  if (m > history.maxCommitted) throw new Error(`P: ${what} holds commit ${m}, beyond the ${history.maxCommitted} the writers saw commit`);
  const expected = history.oracleRows(m, ctx.dir);
  if (rows.length !== expected.length) throw new Error(`P: ${what}: meta.n = ${m} but ${rows.length} rows (the oracle has ${expected.length})`);
  for (let i = 0; i < rows.length; i++) {
    const got = rows[i]!;
    const want = expected[i]!;
    if (got.n !== want.n || got.v !== want.v) {
      const who = (v: string) => v.slice(`${want.n}:`.length, `${want.n}:`.length + 1);
      throw new Error(`P/F: ${what}: row ${want.n} differs from the oracle (writer ${who(got.v) || '?'} where the lineage has ${who(want.v) || '?'}; ${got.v.length} vs ${want.v.length} bytes)`);
    }
  }
  ctx.counters.transactionsChecked += m;
  return m;
}

export interface ReplicaCheck {
  prefix: string;
  history: History;
  label: string;
  keys?: { id: string; key: string }[];
  /** Point-in-time restores at txids of random earlier commits (default 2). */
  samples?: number;
  /** The durable bound to check (default history.maxDurable). */
  durable?: number;
}

/** P, D, I, C on the latest restore, and P, I, C at sampled txids. Returns m of the latest state (null: nothing restorable). */
export async function checkReplica(ctx: ScenarioContext, c: ReplicaCheck): Promise<number | null> {
  // A killed writer's requests already forwarded still land; the store is read once they have.
  await ctx.servers.s3proxy.idle(30_000);
  const dir = mkdtempSync(join(ctx.dir, 'check-'));
  try {
    const latest = join(dir, 'latest.db');
    let r;
    try {
      r = await restore({ ...sourceOf(ctx, c.prefix, c.keys), path: latest });
    } catch (e) {
      // Nothing durable yet (killed before the generation's first snapshot landed) is not a loss.
      if ((e as { code?: string }).code === 'ERR_NO_REPLICA' && (c.durable ?? c.history.maxDurable) === 0) return null;
      throw e;
    }
    ctx.counters.restores++;
    const m = await checkFile(ctx, c.history, latest, `${c.label}: latest restore (txid ${r.txid})`);
    const durable = c.durable ?? c.history.maxDurable;
    if (m < durable) throw new Error(`D: ${c.label}: the latest restore holds commit ${m}, flush() had reported ${durable} durable`);
    const keyring = c.keys ? new Keyring({ keys: c.keys.map((k) => ({ id: k.id, key: Buffer.from(k.key, 'base64') })) }) : undefined;
    const rebuilt = await rebuildFromReplica(storageOf(ctx), c.prefix, keyring ? { keyring } : {});
    if (rebuilt.txid !== r.txid) throw new Error(`C: ${c.label}: restore reached txid ${r.txid}, the independent decoder ${rebuilt.txid}; ${await describeReplica(ctx, c.prefix)}`);
    if (!Buffer.from(rebuilt.bytes).equals(readFileSync(latest))) throw new Error(`C: ${c.label}: restore and the independent decoder disagree on the bytes at txid ${r.txid}`);
    // Every txid from the replica's first snapshot (any generation) to its tip must be restorable
    // exactly: a lineage that had to start over after a crash leaves a hole, and that is a loss.
    let firstSnapshot = Infinity;
    for await (const o of storageOf(ctx).list({ prefix: `${c.prefix}/` })) {
      const k = parseObjectKey(c.prefix, o.key);
      if (k?.kind === 'snapshot') firstSnapshot = Math.min(firstSnapshot, k.txid);
    }
    const candidates = [...c.history.txidOf.entries()].filter(([n, t]) => n <= m && t <= r.txid);
    for (let s = 0; s < (c.samples ?? 2) && candidates.length > 0; s++) {
      const [n, txid] = candidates[ctx.random(candidates.length)]!;
      const at = join(dir, `at-${txid}-${s}.db`);
      try {
        await restore({ ...sourceOf(ctx, c.prefix, c.keys), path: at, txid });
      } catch (e) {
        // Before the first snapshot of the generation: not restorable by design. After it: a hole.
        if ((e as { code?: string }).code === 'ERR_TXID_NOT_FOUND' && txid < firstSnapshot) continue;
        throw new Error(`C: ${c.label}: restore at txid ${txid} (commit ${n}; the replica's first snapshot is at txid ${firstSnapshot}, its tip in generation ${r.generation}) failed: ${(e as Error).message}`);
      }
      ctx.counters.restores++;
      const got = await checkFile(ctx, c.history, at, `${c.label}: restore at txid ${txid}`);
      if (got !== n) throw new Error(`C: ${c.label}: restore at txid ${txid} holds commit ${got}, the writer saw commit ${n} return at that txid`);
      for (const f of [at, `${at}-wal`, `${at}-shm`]) rmSync(f, { force: true });
    }
    return m;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The replica's keys and epoch markers, for a violation message. */
async function describeReplica(ctx: ScenarioContext, prefix: string): Promise<string> {
  const storage = storageOf(ctx);
  const keys: string[] = [];
  const epochs: string[] = [];
  for await (const o of storage.list({ prefix: `${prefix}/` })) {
    const k = o.key.slice(prefix.length + 1);
    keys.push(k);
    if (k.includes('/epochs/')) {
      const m = JSON.parse(Buffer.from((await storage.get(o.key))!).toString()) as { epoch: number; startTxid: number };
      epochs.push(`${m.epoch}@${m.startTxid}`);
    }
  }
  return `epochs ${epochs.join(' ')}; objects: ${keys.filter((k) => !k.includes('/epochs/')).join(' ')}`;
}

/** Faults the proxies injected since `before` (a snapshot of their counts). */
export function faultTotal(ctx: ScenarioContext): number {
  const sum = (p: FaultProxy) => Object.values(p.counts).reduce((a, b) => a + b, 0);
  return sum(ctx.servers.s3proxy) + sum(ctx.servers.dynamoProxy);
}
