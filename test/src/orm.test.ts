import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Database, openDatabase, type CommittedTransaction } from '@walship/vfs';
import { Replay, fileDigest } from './util/replay.js';
import { loadOracle } from './util/bs3-oracle.js';
import { kyselyApp, type Steps } from './util/orm-kysely.js';
import { drizzleApp, writeDrizzleMigrations } from './util/orm-drizzle.js';

// Kysely (SqliteDialect) and drizzle-orm (drizzle-orm/better-sqlite3) take a better-sqlite3
// database. Each runs the same app on better-sqlite3 (the oracle) and on walship's Database, and
// every step must observe the same thing. On a captured database (openDatabase with a sink) the
// only difference is walship's `_walship` table, which is listed exactly; and replaying the
// captured transactions rebuilds the database byte for byte.

const oracle = loadOracle();
await Database.ready();

type App = (db: unknown, dir: string) => Promise<Steps>;
const apps: Record<string, App> = {
  kysely: (db) => kyselyApp(db),
  drizzle: async (db, dir) => drizzleApp(db, writeDrizzleMigrations(dir)),
};

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'walship-orm-'));
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Every row of every table, by rowid: what a restored copy must hold. */
function dump(db: any): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {};
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all() as string[];
  for (const t of tables) out[t] = db.prepare(`SELECT * FROM "${t}" ORDER BY rowid`).raw().all();
  return out;
}

/** Runs `app` on a captured database and replays every transaction it emits into a plain file. */
async function captured(app: App, dir: string): Promise<{ steps: Steps; live: Record<string, unknown[]>; replayed: Record<string, unknown[]>; same: boolean; txids: number[] }> {
  const src = join(dir, 'captured.db');
  const replay = new Replay(join(dir, 'replay.db'));
  const txids: number[] = [];
  const db = await openDatabase(src, {
    onCommit: (txn: CommittedTransaction) => {
      txids.push(txn.txid);
      replay.apply(txn);
    },
  });
  let steps: Steps;
  let live: Record<string, unknown[]>;
  try {
    steps = await app(db, dir);
    db.acknowledge(db.txid);
    assert.ok(db.checkpoint().checkpointed, 'every transaction acknowledged: the checkpoint runs');
    assert.equal(replay.lastTxid, db.txid, 'the replay received every transaction');
    live = dump(db);
  } finally {
    db.close();
  }
  const same = fileDigest(replay.path) === fileDigest(src);
  const copy = new Database(replay.path, { readonly: true, fileMustExist: true });
  try {
    assert.equal(copy.pragma('integrity_check', { simple: true }), 'ok');
    return { steps, live, replayed: dump(copy), same, txids };
  } finally {
    copy.close();
  }
}

// The exact difference a captured database shows: walship's one-row txid marker table.
const WALSHIP_TABLE: Record<string, (steps: Steps) => { steps: Steps; removed: unknown }> = {
  kysely: (s) => {
    const introspection = s.introspection as { name: string }[];
    const names = s.introspectionInternal as string[];
    const schemaNames = s.schemaNames as { name: string }[];
    return {
      steps: {
        ...s,
        introspection: introspection.filter((t) => t.name !== '_walship'),
        introspectionInternal: names.filter((n) => n !== '_walship'),
        schemaNames: schemaNames.filter((r) => r.name !== '_walship'),
      },
      removed: {
        introspection: introspection.filter((t) => t.name === '_walship'),
        introspectionInternal: names.filter((n) => n === '_walship'),
        schemaNames: schemaNames.filter((r) => r.name === '_walship'),
      },
    };
  },
  drizzle: (s) => {
    const introspection = s.introspection as { name: string }[];
    return {
      steps: { ...s, introspection: introspection.filter((t) => t.name !== '_walship') },
      removed: { introspection: introspection.filter((t) => t.name === '_walship') },
    };
  },
};
const EXPECTED_DIFFERENCE: Record<string, unknown> = {
  kysely: {
    introspection: [
      {
        name: '_walship',
        isView: false,
        columns: [
          ['id', 'INTEGER', true, true, false],
          ['txid', 'INTEGER', false, false, false],
          ['salt1', 'INTEGER', false, false, false],
          ['salt2', 'INTEGER', false, false, false],
          ['commits', 'INTEGER', false, false, false],
          ['note', 'TEXT', true, false, false],
        ],
      },
    ],
    introspectionInternal: ['_walship'],
    schemaNames: [{ type: 'table', name: '_walship' }],
  },
  drizzle: {
    introspection: [
      {
        name: '_walship',
        columns: [
          { name: 'id', type: 'INTEGER', notnull: 0, dflt_value: null, pk: 1 },
          { name: 'txid', type: 'INTEGER', notnull: 1, dflt_value: null, pk: 0 },
          { name: 'salt1', type: 'INTEGER', notnull: 1, dflt_value: null, pk: 0 },
          { name: 'salt2', type: 'INTEGER', notnull: 1, dflt_value: null, pk: 0 },
          { name: 'commits', type: 'INTEGER', notnull: 1, dflt_value: null, pk: 0 },
          { name: 'note', type: 'TEXT', notnull: 0, dflt_value: null, pk: 0 },
        ],
      },
    ],
  },
};

for (const [name, app] of Object.entries(apps)) {
  test(`${name}: the app observes on walship exactly what it observes on better-sqlite3`, { skip: oracle.skip }, async () => {
    await withDir(async (dir) => {
      const expected = await app(new oracle.Bs3!(join(dir, 'oracle.db')), join(dir, 'o'));
      assert.deepEqual(await app(new Database(join(dir, 'walship.db')), join(dir, 'w')), expected, 'a plain file');
      const memoryExpected = await app(new oracle.Bs3!(':memory:'), join(dir, 'om'));
      assert.deepEqual(await app(new Database(':memory:'), join(dir, 'wm')), memoryExpected, ':memory:');
      const { steps, removed } = WALSHIP_TABLE[name]!((await captured(app, dir)).steps);
      assert.deepEqual(steps, expected, 'a captured database, but for _walship');
      assert.deepEqual(removed, EXPECTED_DIFFERENCE[name]);
    });
  });

  test(`${name}: on a captured database the replayed transactions are the database, and only _walship is added`, async () => {
    await withDir(async (dir) => {
      const plain = await app(new Database(join(dir, 'plain.db')), join(dir, 'p'));
      const run = await captured(app, dir);
      assert.ok(run.same, 'the file rebuilt from the captured transactions is byte-identical to the database');
      assert.deepEqual(run.replayed, run.live, 'the rebuilt file holds every row the app wrote');
      assert.deepEqual(run.txids, Array.from({ length: run.txids.length }, (_, i) => i + 1), 'txids 1..n, no gap');
      assert.deepEqual(Object.keys(run.live).filter((t) => t === '_walship'), ['_walship']);
      assert.deepEqual(run.live._walship!.length, 1, 'one marker row');
      const { steps, removed } = WALSHIP_TABLE[name]!(run.steps);
      assert.deepEqual(steps, plain, 'the captured run observes what a plain walship file observes, but for _walship');
      assert.deepEqual(removed, EXPECTED_DIFFERENCE[name]);
    });
  });
}
