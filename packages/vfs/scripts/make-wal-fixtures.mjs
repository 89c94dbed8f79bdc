#!/usr/bin/env node
// Regenerates the golden WAL fixtures in packages/vfs/testdata/wal/ with the native sqlite3 shell.
//
//   node packages/vfs/scripts/make-wal-fixtures.mjs [path/to/sqlite3]
//
// Every run produces new random salts (so different bytes), but the same structure: frame numbers,
// commit boundaries, commit sizes and page sets depend only on the SQL below and the SQLite version.
// After writing the files it opens each case (db-base + the case's WAL) with the native shell in a
// scratch directory and records what SQLite itself recovers (page_count, rows) in README.md; the
// unit tests (src/wal/scanner.test.ts) hold the same numbers as constants.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SQLITE = process.argv[2] ?? '/usr/bin/sqlite3';
const OUT = fileURLToPath(new URL('../testdata/wal/', import.meta.url));
const PAGE_SIZE = 512;
const FRAME_SIZE = 24 + PAGE_SIZE;
const SECTOR_SIZE = 4096; // what the unix VFS reports; used for the padding case (psow=0)

const PRELUDE = `.bail on
PRAGMA page_size=${PAGE_SIZE};
PRAGMA journal_mode=WAL;
PRAGMA wal_autocheckpoint=0;
PRAGMA synchronous=FULL;
`;
const multiRow = (n, width, ch) =>
  `WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<${n}) ` +
  `INSERT INTO t(v) SELECT printf('%.*c', ${width}, '${ch}') FROM c;`;

function sqlite(cwd, dbArg, sql) {
  const r = spawnSync(SQLITE, [dbArg], { cwd, input: sql, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`sqlite3 failed (${r.status}): ${r.stderr}\n--- sql ---\n${sql}`);
  return r.stdout;
}

/** `.shell` line copying the live WAL (and the db file as it is at that moment) into `dir`. */
const snapshot = (dir, walName = 'wal', dbName = 'db-base') =>
  `.shell cp x.db-wal '${join(dir, walName)}' && cp x.db '${join(dir, dbName)}'\n`;

function freshDir(name) {
  const dir = join(OUT, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Runs `body` in a new scratch database (x.db) and returns nothing; the body snapshots files itself. */
function session(dbArg, body) {
  const tmp = mkdtempSync(join(tmpdir(), 'walfx-'));
  try {
    sqlite(tmp, dbArg, PRELUDE + body);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Commit frames of a WAL image by looking at commit-size fields only (no validation). */
function commitFrames(wal) {
  const n = Math.floor((wal.length - 32) / FRAME_SIZE);
  const out = [];
  for (let i = 1; i <= n; i++) if (wal.readUInt32BE(32 + (i - 1) * FRAME_SIZE + 4) !== 0) out.push(i);
  return out;
}
const frameOff = (i) => 32 + (i - 1) * FRAME_SIZE;

/** What the native shell recovers from db-base + wal, opened from a scratch copy. */
function nativeView(dbBase, wal) {
  const tmp = mkdtempSync(join(tmpdir(), 'walfx-verify-'));
  try {
    copyFileSync(dbBase, join(tmp, 'x.db'));
    copyFileSync(wal, join(tmp, 'x.db-wal'));
    const out = sqlite(
      tmp,
      'x.db',
      `.mode list
PRAGMA page_count;
SELECT count(*) || ' / ' || coalesce(group_concat(id, ','), '-') || ' / ' || coalesce((SELECT v FROM t WHERE id=2), 'NULL') FROM t;
`,
    ).trim().split('\n');
    return { pageCount: Number(out[0]), rows: out[1] };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

mkdirSync(OUT, { recursive: true });
const version = sqlite(tmpdir(), ':memory:', 'SELECT sqlite_version();').trim();

// --- ok: 4 commits (create, 2-row insert, multi-page insert, update) + 1 rollback that writes nothing.
const ok = freshDir('ok');
session(
  'x.db',
  `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
INSERT INTO t(v) VALUES ('a'),('b');
BEGIN; INSERT INTO t(v) VALUES ('rolled back'); ROLLBACK;
${multiRow(6, 300, 'x')}
UPDATE t SET v='B' WHERE id=2;
${snapshot(ok)}PRAGMA wal_checkpoint(TRUNCATE);
.shell cp x.db '${join(ok, 'db-checkpointed')}'
`,
);
const okWal = readFileSync(join(ok, 'wal'));
const okCommits = commitFrames(okWal);
if (okCommits.length !== 4) throw new Error(`ok: expected 4 commit frames, found ${okCommits}`);

/** Frame number each derived case modified. */
const derivedFrame = {};

// --- salt-mismatch: salt-1 of the middle frame of commit 3 (the multi-page one) changed.
{
  const dir = freshDir('salt-mismatch');
  const wal = Buffer.from(okWal);
  const first3 = okCommits[1] + 1;
  const frame = first3 + Math.floor((okCommits[2] - first3) / 2);
  wal[frameOff(frame) + 11] ^= 0x01;
  writeFileSync(join(dir, 'wal'), wal);
  derivedFrame['salt-mismatch'] = frame;
}
// --- checksum-mismatch: byte 200 of the page of the first frame of the last transaction flipped.
{
  const dir = freshDir('checksum-mismatch');
  const wal = Buffer.from(okWal);
  const frame = okCommits[2] + 1;
  wal[frameOff(frame) + 24 + 200] ^= 0xff;
  writeFileSync(join(dir, 'wal'), wal);
  derivedFrame['checksum-mismatch'] = frame;
}
// --- torn-last-frame: the file ends 100 bytes into the last frame's page.
{
  const dir = freshDir('torn-last-frame');
  const last = okCommits[3];
  writeFileSync(join(dir, 'wal'), okWal.subarray(0, frameOff(last) + 24 + 100));
  derivedFrame['torn-last-frame'] = last;
}

// --- padding: psow=0 makes SQLite pad every synced commit with copies of its commit frame up to
// the next 4096-byte boundary.
const padding = freshDir('padding');
session(
  'file:x.db?psow=0',
  `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
INSERT INTO t(v) VALUES ('a');
INSERT INTO t(v) VALUES ('b');
${snapshot(padding)}`,
);
// --- padding-torn: the padding WAL cut at the first sync point (4096), i.e. in the middle of the
// last padding frame of commit 1: what a reader sees when SQLite's mid-frame sync returns.
{
  const dir = freshDir('padding-torn');
  copyFileSync(join(padding, 'wal'), join(dir, 'wal'));
  truncateSync(join(dir, 'wal'), SECTOR_SIZE);
}

// --- rollback: a rolled-back transaction that spilled frames (tiny cache), left in the file
// (rollback-open), then overwritten from its start by a shorter commit (rollback-stale).
const rbOpen = freshDir('rollback-open');
const rbStale = freshDir('rollback-stale');
session(
  'x.db',
  `PRAGMA cache_size=10;
CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
INSERT INTO t(v) VALUES ('a'),('b');
BEGIN;
${multiRow(40, 300, 'r')}
ROLLBACK;
${snapshot(rbOpen)}INSERT INTO t(v) VALUES ('c');
${snapshot(rbStale)}`,
);

// --- restarted: 3 commits, a complete checkpoint, then one commit: SQLite rewrites the header
// (checkpoint seq + 1, salt-1 + 1, new salt-2) and frame 1; old frames stay after it.
const restarted = freshDir('restarted');
session(
  'x.db',
  `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
INSERT INTO t(v) VALUES ('a'),('b');
INSERT INTO t(v) VALUES ('c');
${snapshot(restarted, 'before.wal', 'db-before')}PRAGMA wal_checkpoint;
INSERT INTO t(v) VALUES ('d');
${snapshot(restarted)}`,
);

// --- native verification and README
const cases = [
  ['ok', 'ok/db-base', 'ok/wal'],
  ['salt-mismatch', 'ok/db-base', 'salt-mismatch/wal'],
  ['checksum-mismatch', 'ok/db-base', 'checksum-mismatch/wal'],
  ['torn-last-frame', 'ok/db-base', 'torn-last-frame/wal'],
  ['padding', 'padding/db-base', 'padding/wal'],
  ['padding-torn', 'padding/db-base', 'padding-torn/wal'],
  ['rollback-open', 'rollback-open/db-base', 'rollback-open/wal'],
  ['rollback-stale', 'rollback-stale/db-base', 'rollback-stale/wal'],
  ['restarted (before)', 'restarted/db-before', 'restarted/before.wal'],
  ['restarted', 'restarted/db-base', 'restarted/wal'],
];
const rows = cases.map(([name, db, wal]) => {
  const v = nativeView(join(OUT, db), join(OUT, wal));
  const size = readFileSync(join(OUT, wal)).length;
  return `| ${name} | \`${wal}\` | ${size} | ${v.pageCount} | \`${v.rows}\` |`;
});
const frameOf = (c) => derivedFrame[c];

writeFileSync(
  join(OUT, 'README.md'),
  `# Golden WAL fixtures

Generated by \`packages/vfs/scripts/make-wal-fixtures.mjs\` with the native sqlite3 shell
(SQLite ${version}). Do not edit by hand; rerun the script. Salts and checksums change on every run,
the structure below does not. All databases use \`page_size=512\` (frame = 536 bytes),
\`journal_mode=WAL\`, \`wal_autocheckpoint=0\`, \`synchronous=FULL\`, one table
\`t(id INTEGER PRIMARY KEY, v TEXT)\`. Every WAL was copied (\`.shell cp\`) while the writing
connection was still open; \`db-base\` is the database file copied at the same moment, so
\`db-base\` + \`wal\` is exactly what SQLite would recover from.

| case | what it is |
|---|---|
| \`ok/\` | CREATE TABLE; INSERT 2 rows; BEGIN/INSERT/ROLLBACK (nothing reaches the WAL); INSERT 6 rows of 300 bytes (multi-page); UPDATE id=2 to 'B'. 4 commits. \`db-checkpointed\` is the database after \`wal_checkpoint(TRUNCATE)\` (page images to cross-check). |
| \`salt-mismatch/\` | \`ok/wal\` with the low bit of salt-1 flipped in frame ${frameOf('salt-mismatch')} (inside commit 3). |
| \`checksum-mismatch/\` | \`ok/wal\` with byte 200 of the page of frame ${frameOf('checksum-mismatch')} (first frame of the last transaction) inverted. |
| \`torn-last-frame/\` | \`ok/wal\` truncated 124 bytes into frame ${frameOf('torn-last-frame')} (the last frame). |
| \`padding/\` | Opened as \`file:x.db?psow=0\` (no POWERSAFE_OVERWRITE; unix sector size ${SECTOR_SIZE}): CREATE TABLE; INSERT 'a'; INSERT 'b'. Each commit is followed by copies of its commit frame up to the next ${SECTOR_SIZE}-byte boundary. |
| \`padding-torn/\` | \`padding/wal\` truncated to ${SECTOR_SIZE} bytes: the middle of commit 1's last padding frame, where SQLite syncs. |
| \`rollback-open/\` | \`cache_size=10\`: CREATE; INSERT 2 rows; BEGIN; INSERT 40 rows of 300 bytes (spills frames to the WAL); ROLLBACK. The spilled, uncommitted frames stay in the file. |
| \`rollback-stale/\` | Same session, then INSERT 'c': SQLite rewrites from the frame after the last commit; the rest of the spilled frames remain, their checksums no longer chain. |
| \`restarted/\` | CREATE; INSERT 2 rows; INSERT 'c' (\`before.wal\`, \`db-before\`); \`wal_checkpoint\`; INSERT 'd' (\`wal\`, \`db-base\`): the WAL restarted with salt-1 + 1 and its old frames after frame 1. |

## What native SQLite recovers

Each WAL opened with its \`db-base\` by \`${SQLITE}\` in a scratch directory:
\`PRAGMA page_count\`, and \`count(*) / ids / v of id 2\` of table t. The scanner's last kept
commit must have commit size = page_count.

| case | WAL | bytes | page_count | rows |
|---|---|---|---|---|
${rows.join('\n')}

## What the scanner must report (asserted in \`src/wal/scanner.test.ts\`)

Commits as *commitFrame (firstFrame..; commit size; pgno→frame)*; padding counted only with
\`sectorSize: ${SECTOR_SIZE}\`.

| case | commits | stop @ stopFrame |
|---|---|---|
| ok | 1: f2 (1..; 2; 1→1 2→2), 2: f3 (3..; 2; 2→3), 3: f11 (4..; 8; pages 1..8 → frames 4..11), 4: f12 (12..; 8; 3→12) | end @ 13 |
| salt-mismatch | ok's 1–2 | salt-mismatch @ 7 |
| checksum-mismatch | ok's 1–3 | checksum-mismatch @ 12 |
| torn-last-frame | ok's 1–3 | torn-frame @ 12 |
| padding, sectorSize ${SECTOR_SIZE} | 1: f2 + 6 padding (3–8), 2: f10 (9..; 1→9 2→10) + 6 (11–16), 3: f18 (17..) + 5 (19–23); all commit size 2 | end @ 24 |
| padding, no sectorSize | 20 commits (each copy is one) | end @ 24 |
| padding-torn | 1: f2 + 5 padding (3–7); resuming on \`padding/wal\` consumes frame 8 silently, then commits 2 and 3 | torn-frame @ 8 |
| rollback-open | ok's 1–2 (frames 4.. are the spilled rollback) | open-transaction @ EOF frame |
| rollback-stale | ok's 1–2, 3: f4 (4..; 2; 2→4) | checksum-mismatch @ 5 |
| restarted/before.wal | like rollback-stale's 3 commits | end @ 5 |
| restarted/wal | 1: f1 (1..; 2; 2→1); header checkpoint seq +1, salt-1 +1 | salt-mismatch @ 2 |
`,
);
console.log(rows.join('\n'));
