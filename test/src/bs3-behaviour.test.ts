import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual, inspect } from 'node:util';
import { Database, openDatabase } from '@walship/vfs';
import { loadOracle } from './util/bs3-oracle.js';
import { probe } from './util/bs3-probes.js';

// Every behaviour issue 13 lists, probed on better-sqlite3 (the oracle) and on walship's Database.

const oracle = loadOracle();
await Database.ready();

function withDir<T>(fn: (dir: string) => Promise<T> | T): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'walship-bs3b-'));
  return Promise.resolve(fn(dir)).finally(() => rmSync(dir, { recursive: true, force: true }));
}

/** Where walship differs on purpose (packages/vfs/README.md says why). */
const DELIBERATE: Record<string, string> = {
  bindBool: 'walship binds true/false as 1/0; better-sqlite3 throws a TypeError',
};

const plain = (x: unknown): unknown =>
  JSON.parse(JSON.stringify(x, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v instanceof Uint8Array ? `${v.constructor.name}[${[...v]}]` : v === undefined ? '<undefined>' : v)));

test('every listed behaviour matches better-sqlite3', { skip: oracle.skip }, async () => {
  await withDir((dir) => {
    const expected = probe(oracle.Bs3, dir, 'bs3');
    const actual = probe(Database, dir, 'walship');
    assert.deepEqual(Object.keys(actual), Object.keys(expected));
    const differ = Object.keys(expected).filter((k) => !(k in DELIBERATE) && !isDeepStrictEqual(plain(actual[k]), plain(expected[k])));
    assert.deepEqual(
      differ.map((k) => `${k}: walship ${inspect(actual[k], { depth: 6 })} / better-sqlite3 ${inspect(expected[k], { depth: 6 })}`),
      [],
    );
    for (const k of Object.keys(DELIBERATE)) assert.notDeepEqual(plain(actual[k]), plain(expected[k]), `${k} is still a deliberate difference`);
  });
});

test('run().changes counts only the rows the statement itself changed', () => {
  const db = new Database(':memory:');
  try {
    assert.equal(db.prepare('CREATE TABLE t (x)').run().changes, 0);
    assert.equal(db.prepare('INSERT INTO t VALUES (1), (2), (3)').run().changes, 3);
    assert.equal(db.prepare('SELECT * FROM t').run().changes, 0);
    assert.equal(db.prepare('CREATE INDEX i ON t (x)').run().changes, 0);
    assert.equal(db.prepare('UPDATE t SET x = x WHERE 0').run().changes, 0);
    assert.equal(db.prepare('DELETE FROM t').run().changes, 3);
  } finally {
    db.close();
  }
});

test('close() during an unfinished iterate(): a plain database refuses (TypeError), a captured one closes and can be reopened', async () => {
  await withDir(async (dir) => {
    const db = new Database(join(dir, 'plain.db'));
    db.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)');
    const it = db.prepare('SELECT x FROM t').iterate();
    it.next();
    assert.throws(() => db.close(), (e: unknown) => e instanceof TypeError && (e as { code?: string }).code === 'ERR_DB_BUSY');
    assert.ok(db.open);
    assert.deepEqual(it.next().value, { x: 2 }, 'the iteration goes on');
    it.return!();
    db.close();

    const path = join(dir, 'captured.db');
    const live = await openDatabase(path, { onCommit: () => {} });
    live.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)');
    const open = live.prepare('SELECT x FROM t').iterate();
    open.next();
    live.close();
    assert.throws(() => open.next(), { code: 'ERR_DB_CLOSED' });
    const again = await openDatabase(path, { onCommit: () => {} });
    try {
      assert.equal(again.prepare('SELECT count(*) FROM t').pluck().get(), 2);
    } finally {
      again.close();
    }
  });
});

test('verbose cuts bound texts and blobs past 32 bytes as better-sqlite3 logs them (its output, recorded)', () => {
  const log: string[] = [];
  const db = new Database(':memory:', { verbose: (s: string) => void log.push(s) });
  try {
    const s = db.prepare("SELECT ?, :name, '?' AS q, x'00ff', -- ?\n @at /* :x */");
    s.get('short', { name: "it's a fairly long value with 'quotes' that goes on", at: Buffer.alloc(40, 0xab) });
    s.get('é'.repeat(20), { name: null, at: 1.5 });
    db.prepare('SELECT $a, ?').get('x'.repeat(32), { a: '0123456789'.repeat(4) });
  } finally {
    db.close();
  }
  assert.deepEqual(log, [
    "SELECT 'short', 'it''s a fairly long value with ''q'/*+19 bytes*/, '?' AS q, x'00ff', -- ?\n x'abababababababababababababababababababababababababababababababab'/*+8 bytes*/ /* :x */",
    "SELECT 'éééééééééééééééé'/*+8 bytes*/, NULL, '?' AS q, x'00ff', -- ?\n 1.5 /* :x */",
    "SELECT '01234567890123456789012345678901'/*+8 bytes*/, 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'",
  ]);
});
