// Shared pieces of the restore suites: a writer that records every operation with the txid its
// commit got, an oracle in another SQLite build (better-sqlite3 or node:sqlite) that replays those operations up to any txid, table dumps
// for comparison, and the native sqlite3 shell's integrity check.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { openOracle, type OracleDatabase } from './oracle-sqlite.js';
import { decodeObject, parseObjectKey, type Keyring } from '@walship/format';
import type { ObjectStorage } from '@walship/storage';
import type { ReplicatedOptions } from '@walship/shipper';
import type { WalshipDatabase } from '@walship/vfs';
import type { S3Server } from '../servers/index.js';
import { which } from '../servers/index.js';
import { prng } from './prng.js';
import { s3Location, storageFor } from './s3.js';
export { prng };

export function s3Options(server: S3Server, prefix: string, extra: Partial<ReplicatedOptions> = {}): ReplicatedOptions {
  return {
    lease: false,
    s3: {
      ...s3Location(server, prefix),
      retry: { attempts: 3, baseDelayMs: 10, maxDelayMs: 200, requestTimeoutMs: 5000 },
    },
    batchWindowMs: 20,
    logLevel: 'silent',
    retentionMs: 0,
    ...extra,
  };
}

/** The `s3` option of restore/follow/plan for a test server. */
export function source(server: S3Server, prefix: string) {
  return {
    s3: {
      ...s3Location(server, prefix),
      retry: { attempts: 2, baseDelayMs: 10, maxDelayMs: 100, requestTimeoutMs: 5000 },
    },
  };
}

export { storageFor };

export const newPrefix = (name: string): string => `restore/${name}-${randomBytes(4).toString('hex')}`;

/** What the workload needs of a database: a plain walship one or a replicated one. */
export type Writable = Pick<WalshipDatabase, 'txid' | 'transaction' | 'prepare'>;

/** One committed operation: SQL statements (run in one transaction) and the txid it got. */
export interface Op {
  sql: { text: string; params: (number | string | Uint8Array | null)[] }[];
  txid: number;
}

export const SCHEMA = [
  'CREATE TABLE IF NOT EXISTS kv(k INTEGER PRIMARY KEY, v BLOB, n INTEGER)',
  'CREATE TABLE IF NOT EXISTS acct_a(id INTEGER PRIMARY KEY, bal INTEGER NOT NULL)',
  'CREATE TABLE IF NOT EXISTS acct_b(id INTEGER PRIMARY KEY, bal INTEGER NOT NULL)',
];

/** The operation log of one database, replayable into an oracle. */
export class Workload {
  readonly ops: Op[] = [];
  readonly rnd: () => number;

  constructor(seed: number) {
    this.rnd = prng(seed);
  }

  /** Runs statements in one transaction on the walship database and records the txid it committed as. */
  run(db: Writable, sql: Op['sql']): number {
    db.transaction(() => {
      for (const s of sql) db.prepare(s.text).run(...s.params);
    })();
    // A statement that changed nothing (a delete of a missing row) commits no transaction and
    // keeps the txid: it changes nothing in the oracle either.
    const txid = db.txid;
    this.ops.push({ sql, txid });
    return txid;
  }

  setup(db: Writable): void {
    this.run(
      db,
      SCHEMA.map((text) => ({ text, params: [] })),
    );
  }

  /** One random operation: small and large rows, deletes, batches, transfers between the two account tables, occasional shrink. */
  step(db: Writable): number {
    const r = this.rnd();
    const key = Math.floor(this.rnd() * 400);
    const bytes = (n: number): Uint8Array => {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = Math.floor(this.rnd() * 256);
      return out;
    };
    if (r < 0.45) {
      const size = this.rnd() < 0.06 ? 20000 + Math.floor(this.rnd() * 40000) : Math.floor(this.rnd() * 300);
      return this.run(db, [{ text: 'INSERT OR REPLACE INTO kv VALUES (?, ?, ?)', params: [key, bytes(size), this.ops.length] }]);
    }
    if (r < 0.6) return this.run(db, [{ text: 'DELETE FROM kv WHERE k = ?', params: [key] }]);
    if (r < 0.7) {
      const sql: Op['sql'] = [];
      for (let j = 0; j < 15; j++) sql.push({ text: 'INSERT OR REPLACE INTO kv VALUES (?, ?, ?)', params: [Math.floor(this.rnd() * 400), bytes(Math.floor(this.rnd() * 200)), j] });
      return this.run(db, sql);
    }
    if (r < 0.98) return this.transfer(db);
    return this.run(db, [{ text: 'DELETE FROM kv WHERE k % 3 = ?', params: [Math.floor(this.rnd() * 3)] }]);
  }

  /** Moves an amount from acct_a to acct_b in one transaction: sum(a) + sum(b) stays 0. */
  transfer(db: Writable): number {
    const id = Math.floor(this.rnd() * 50);
    const amount = 1 + Math.floor(this.rnd() * 100);
    return this.run(db, [
      { text: 'INSERT INTO acct_a(id, bal) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET bal = bal - ?', params: [id, -amount, amount] },
      { text: 'INSERT INTO acct_b(id, bal) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET bal = bal + ?', params: [id, amount, amount] },
    ]);
  }

  /** The oracle: a native SQLite database with every operation committed at or before `txid`. */
  oracle(txid: number): OracleDatabase {
    const db = openOracle(':memory:');
    for (const op of this.ops) {
      if (op.txid > txid) break;
      db.transaction(() => {
        for (const s of op.sql) db.prepare(s.text).run(...s.params);
      });
    }
    return db;
  }
}

export type Dump = Record<string, unknown[]>;

/** Every user table's rows in primary-key order (walship's own table left out). */
export function dump(db: OracleDatabase): Dump {
  const out: Dump = {};
  const tables = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> '_walship' ORDER BY name").pluck().all() as string[];
  for (const t of tables) out[t] = db.prepare(`SELECT * FROM "${t}" ORDER BY rowid`).raw().all();
  return out;
}

export function dumpFile(path: string): Dump {
  const db = openOracle(path, { readonly: true });
  try {
    return dump(db);
  } finally {
    db.close();
  }
}

/** Compares a restored file with the oracle state after `txid`. */
export function assertMatchesOracle(path: string, work: Workload, txid: number, label = `txid ${txid}`): void {
  const oracle = work.oracle(txid);
  try {
    assert.deepEqual(dumpFile(path), dump(oracle), `${label}: restored tables equal the oracle replay`);
  } finally {
    oracle.close();
  }
}

const SQLITE3 = which('sqlite3');

/** PRAGMA integrity_check in the native sqlite3 shell ('skipped' when the shell is missing). */
export function nativeIntegrity(path: string): string {
  if (!SQLITE3) return 'skipped';
  const r = spawnSync(SQLITE3, ['-readonly', path, 'PRAGMA integrity_check;'], { encoding: 'utf8' });
  assert.equal(r.status, 0, `sqlite3 shell failed: ${r.stderr}`);
  return r.stdout.trim();
}

export interface TxInfo {
  txid: number;
  timestamp: number;
  key: string;
}

/** Every transaction in the replica's segments (decoded independently of @walship/restore). */
export async function replicaTransactions(storage: ObjectStorage, prefix: string, options: { keyring?: Keyring } = {}): Promise<{ transactions: Map<number, TxInfo>; segments: { key: string; minTxid: number; maxTxid: number }[]; snapshots: { key: string; txid: number; timestamp: number }[] }> {
  const transactions = new Map<number, TxInfo>();
  const segments: { key: string; minTxid: number; maxTxid: number }[] = [];
  const snapshots: { key: string; txid: number; timestamp: number }[] = [];
  for await (const o of storage.list({ prefix: `${prefix}/` })) {
    const parsed = parseObjectKey(prefix, o.key);
    if (!parsed || (parsed.kind !== 'segment' && parsed.kind !== 'snapshot')) continue;
    const bytes = await storage.get(o.key);
    assert.ok(bytes);
    for await (const ev of decodeObject(bytes, { name: o.key, maxPagesPerEvent: 1_000_000, ...options })) {
      if (ev.type === 'header') {
        if (ev.header.kind === 'segment') segments.push({ key: o.key, minTxid: ev.header.minTxid, maxTxid: ev.header.maxTxid });
        else snapshots.push({ key: o.key, txid: ev.header.maxTxid, timestamp: ev.header.lastTimestamp });
      } else if (ev.type === 'transaction' && parsed.kind === 'segment') {
        transactions.set(ev.txid, { txid: ev.txid, timestamp: ev.timestamp, key: o.key });
      }
    }
  }
  segments.sort((a, b) => a.minTxid - b.minTxid);
  snapshots.sort((a, b) => a.txid - b.txid);
  return { transactions, segments, snapshots };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
