// Deno 2 smoke test for the BUILT @walship/vfs package (packages/vfs/dist, made by `tsc -b`).
//
// Run it with `node scripts/test-deno.mjs` (or `pnpm test:deno`), which builds the minimal
// permission set and runs, from the repository root:
//
//   deno test --no-prompt --no-lock --node-modules-dir=manual \
//     --allow-env=WALSHIP_DENO_TMP \
//     --allow-read=<tmp dir>,<real path of @sqlite.org/sqlite-wasm/dist/sqlite3.wasm> \
//     --allow-write=<tmp dir> \
//     test/deno/smoke.ts
//
// Why each one: the env var names the temp dir that scripts/test-deno.mjs made (and removes);
// sqlite-wasm's Node build reads its .wasm with node:fs; the database, its -wal file and the
// `.walship-lock` file live in the temp dir. Modules themselves load without --allow-read.
// The bare `@sqlite.org/sqlite-wasm` import in dist/ resolves through the pnpm node_modules
// (--node-modules-dir=manual; Deno picks the package's "node" export condition).
//
// The dist .js files are imported directly, so their types are inferred from the JS: Deno does not
// map `./x.js` to the sibling `./x.d.ts` for local files. The shapes used here are declared below.
import { openDatabase } from '../../packages/vfs/dist/index.js';

interface Txn {
  txid: number;
  pageSize: number;
  commitSize: number;
  pages: { pgno: number; data: Uint8Array }[];
  timestamp: number;
  wal: unknown;
  recovered: boolean;
}

function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

function assertEquals(actual: unknown, expected: unknown, msg: string): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`assertion failed: ${msg}\n  actual:   ${a}\n  expected: ${e}`);
}

/** Checks one open's emitted transactions: contiguous txids, well-formed pages. */
function checkSession(txns: Txn[], label: string): void {
  for (let i = 0; i < txns.length; i++) {
    const t = txns[i]!;
    if (i > 0) assertEquals(t.txid, txns[i - 1]!.txid + 1, `${label}: txid after ${txns[i - 1]!.txid}`);
    assert(Number.isInteger(t.txid) && t.txid >= 1, `${label}: txid ${t.txid} is a positive integer`);
    assert(t.pageSize >= 512 && (t.pageSize & (t.pageSize - 1)) === 0, `${label}: txid ${t.txid} pageSize ${t.pageSize}`);
    assert(t.commitSize >= 1, `${label}: txid ${t.txid} commitSize ${t.commitSize}`);
    assert(t.pages.length >= 1, `${label}: txid ${t.txid} has pages`);
    let prev = 0;
    for (const p of t.pages) {
      assert(p.pgno > prev && p.pgno <= t.commitSize, `${label}: txid ${t.txid} page ${p.pgno} sorted and <= commitSize`);
      assert(p.data instanceof Uint8Array && p.data.length === t.pageSize, `${label}: txid ${t.txid} page ${p.pgno} is ${t.pageSize} bytes`);
      prev = p.pgno;
    }
    assert(typeof t.timestamp === 'number' && t.timestamp > 0, `${label}: txid ${t.txid} timestamp`);
  }
}

Deno.test('walship vfs (built) on Deno: capture, txids, reopen, integrity', async () => {
  const dir = Deno.env.get('WALSHIP_DENO_TMP');
  assert(dir, 'WALSHIP_DENO_TMP names a temp dir (run via scripts/test-deno.mjs)');
  const path = `${dir}/smoke.db`;
  const all = new Map<number, Txn>();
  let lastTxid = 0;

  // Session 1: a new database. Every commit, including walship's own setup, gets the next txid.
  let session: Txn[] = [];
  let db = await openDatabase(path, { onCommit: (t: Txn) => void session.push(t) });
  db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)');
  const insert = db.prepare('INSERT INTO t(v) VALUES (?)');
  for (const v of ['a', 'b', 'c']) insert.run(v);
  db.exec("BEGIN; INSERT INTO t(v) VALUES ('d'); INSERT INTO t(v) VALUES ('e'); COMMIT");
  db.prepare('UPDATE t SET v = upper(v) WHERE id = ?').run(2);
  checkSession(session, 'session 1');
  assert(session.length >= 6, `session 1: at least 6 commits (got ${session.length})`);
  assertEquals(session.map((t) => t.txid), Array.from({ length: session.length }, (_, i) => i + 1), 'session 1: txids are 1..n');
  assert(session.every((t) => !t.recovered), 'session 1: all live');
  assertEquals(db.txid, session.length, 'session 1: db.txid is the last emitted txid');
  for (const t of session) all.set(t.txid, t);
  lastTxid = db.txid;
  assertEquals(db.prepare('SELECT id, v FROM t ORDER BY id').all(), [
    { id: 1, v: 'a' }, { id: 2, v: 'B' }, { id: 3, v: 'c' }, { id: 4, v: 'd' }, { id: 5, v: 'e' },
  ], 'session 1: rows');
  assertEquals(db.pragma('integrity_check', { simple: true }), 'ok', 'session 1: integrity_check');
  db.close(); // nothing acknowledged: the WAL is kept for the sink

  // Session 2: reopen without durableTxid. What is re-emitted must be earlier txids, flagged
  // recovered and byte-identical; new commits continue at lastTxid + 1.
  session = [];
  db = await openDatabase(path, { onCommit: (t: Txn) => void session.push(t) });
  const recovered2 = session.filter((t) => t.recovered);
  assertEquals(db.txid, lastTxid, 'session 2: db.txid after reopen');
  for (const t of recovered2) {
    const before = all.get(t.txid);
    assert(before, `session 2: recovered txid ${t.txid} was emitted before`);
    assertEquals(t.pages.map((p) => p.pgno), before.pages.map((p) => p.pgno), `session 2: txid ${t.txid} same pages`);
    for (let i = 0; i < t.pages.length; i++) {
      assert(t.pages[i]!.data.every((b, j) => b === before.pages[i]!.data[j]), `session 2: txid ${t.txid} page ${t.pages[i]!.pgno} same bytes`);
    }
  }
  db.prepare('INSERT INTO t(v) VALUES (?)').run('f');
  db.exec("BEGIN; DELETE FROM t WHERE id = 1; INSERT INTO t(v) VALUES ('g'); COMMIT");
  checkSession(session, 'session 2');
  const live2 = session.filter((t) => !t.recovered);
  assertEquals(live2.map((t) => t.txid), [lastTxid + 1, lastTxid + 2], 'session 2: new commits continue the txids');
  for (const t of live2) all.set(t.txid, t);
  lastTxid = db.txid;
  assertEquals(lastTxid, live2.at(-1)!.txid, 'session 2: db.txid is the last emitted txid');
  assertEquals(db.prepare('SELECT v FROM t ORDER BY id').pluck().all(), ['B', 'c', 'd', 'e', 'f', 'g'], 'session 2: rows');
  assertEquals(db.pragma('integrity_check', { simple: true }), 'ok', 'session 2: integrity_check');
  // Everything is durable downstream now: close may checkpoint the WAL into the database file.
  db.acknowledge(lastTxid);
  db.close();

  // Session 3: reopen with durableTxid. No gap; anything emitted continues the txids.
  session = [];
  db = await openDatabase(path, { durableTxid: lastTxid, onCommit: (t: Txn) => void session.push(t) });
  assertEquals(db.recovery.gap, null, 'session 3: no gap after the acknowledged close');
  db.prepare('INSERT INTO t(v) VALUES (?)').run('h');
  checkSession(session, 'session 3');
  assert(session.length >= 1, 'session 3: the insert was emitted');
  assertEquals(session[0]!.txid, lastTxid + 1, 'session 3: first emitted txid follows the acknowledged one');
  assert(!session.at(-1)!.recovered, 'session 3: the insert is live');
  assertEquals(db.txid, session.at(-1)!.txid, 'session 3: db.txid is the last emitted txid');
  for (const t of session) all.set(t.txid, t);
  assertEquals([...all.keys()].sort((a, b) => a - b), Array.from({ length: all.size }, (_, i) => i + 1), 'all sessions: txids 1..N with no gap');
  assertEquals(db.prepare('SELECT count(*) FROM t').pluck().get(), 7, 'session 3: row count');
  assertEquals(db.pragma('integrity_check', { simple: true }), 'ok', 'session 3: integrity_check');
  db.close();
  console.log(`deno smoke: ${all.size} transactions, txids 1..${all.size} contiguous over 3 opens; integrity ok`);
});
