// The scenario workload: every commit inserts row n and sets meta.n = n in one transaction. Row n's
// value is a pure function of (mark, n), where the mark names the writer, so the state after any
// commit is known without the writer's help: the oracle replays the same SQL into a separate SQLite
// (better-sqlite3 on Node 20, node:sqlite on 22+) and the restored file must hold exactly that.

export const SCHEMA =
  'CREATE TABLE IF NOT EXISTS rows(n INTEGER PRIMARY KEY, v TEXT NOT NULL); ' +
  'CREATE TABLE IF NOT EXISTS meta(id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL); ' +
  'INSERT OR IGNORE INTO meta VALUES (1, 0)';
export const INSERT_ROW = 'INSERT INTO rows VALUES (?, ?)';
export const SET_META = 'UPDATE meta SET n = ?';

/** 32-bit mix of n (murmur3 finaliser): sizes spread without a PRNG state to carry around. */
export function mix32(n: number): number {
  let h = (n ^ 0x9e3779b9) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

export interface ValueShape {
  /** Every this many rows one is big (default 37). */
  bigEvery?: number;
  /** Size of a big row in bytes (default 4000..24000 by n). */
  bigBytes?: number;
}

/** The value of row n written by the writer with this mark (one character). */
export function rowValue(mark: string, n: number, shape: ValueShape = {}): string {
  const h = mix32(n);
  const bigEvery = shape.bigEvery ?? 37;
  const size = n % bigEvery === 0 ? (shape.bigBytes ?? 4000 + (h % 20000)) : 10 + (h % 300);
  const head = `${n}:`;
  // Mostly the mark repeated (compressible), with a few bytes from n so pages differ.
  return head + mark.repeat(Math.max(0, size - head.length - 8)) + h.toString(16).padStart(8, '0');
}

/** The SQL of commit n, as [statement, params] pairs, for the writer and the oracle alike. */
export function commitStatements(mark: string, n: number, shape: ValueShape = {}): [string, unknown[]][] {
  return [
    [INSERT_ROW, [n, rowValue(mark, n, shape)]],
    [SET_META, [n]],
  ];
}
