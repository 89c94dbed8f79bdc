#!/usr/bin/env node
// Mutation check of the scenario harness: does it notice when a safety mechanism is gone?
// For each sabotage it copies the built tree to a temp dir, breaks one mechanism there (exact text
// replacements in the TypeScript sources; a replacement that no longer matches stops the run, so
// this script cannot silently test nothing), rebuilds the copy, runs the scenarios that should
// notice (and/or the test files that should fail: `tests`, substrings of compiled test paths as
// scripts/test.mjs takes them), and reports whether they did. This tree is never changed.
//
//   node scripts/sabotage.mjs [name ...] [--seed N]   (names: the keys of SABOTAGES below; none = all)
//
// Exit 0 when every sabotage made the harness fail; 1 when one went unnoticed; 2 on a setup error.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

const SABOTAGES = {
  checksums: {
    what: 'no checksum is verified on read: object trailer, chunk header and data checksums, the rolling checksum after each transaction, of snapshots and of the restored file',
    edits: [
      ['packages/format/src/decoder.ts', 'if (storedSum !== actualSum) {', 'if (false && storedSum !== actualSum) {'],
      ['packages/format/src/chunk-opener.ts', 'if (stored !== actual) {', 'if (false && stored !== actual) {'],
      ['packages/format/src/chunk-opener.ts', 'if (actual !== frame.dataChecksum) {', 'if (false && actual !== frame.dataChecksum) {'],
      ['packages/restore/src/apply.ts', 'if (this.hashes.value !== t.postChecksum) {', 'if (false && this.hashes.value !== t.postChecksum) {'],
      ['packages/restore/src/apply.ts', 'if (file.hashes.value !== object.postChecksum) {', 'if (false && file.hashes.value !== object.postChecksum) {'],
      ['packages/restore/src/restore.ts', 'if (file.hashes.value !== plan.checksum) {', 'if (false && file.hashes.value !== plan.checksum) {'],
      ['packages/restore/src/restore.ts', 'size !== plan.commitSize * plan.pageSize || checksum !== plan.checksum', 'false'],
    ],
    scenarios: [['damaged-objects', 40]],
  },
  'checkpoint-gating': {
    what: 'frames not durable in S3 (nor spooled) are checkpointed: the VFS stops refusing, and the shipper checkpoints with uploads pending',
    edits: [
      ['packages/vfs/src/open.ts', "if (this.sink && this.durableTxid < capture.lastTxid) return result(false, 'not-durable');", ''],
      ['packages/shipper/src/checkpoints.ts', 'if (ledger.queue.length > 0) {', 'if (false && ledger.queue.length > 0) {'],
    ],
    scenarios: [
      ['s3-down-checkpoint', 4],
      ['kill-mid-upload', 30],
    ],
  },
  'vfs-checkpoint-gate': {
    what: 'the VFS alone stops refusing checkpoints of frames not durable yet (the shipper still waits; the application asks for checkpoints itself)',
    edits: [['packages/vfs/src/open.ts', "if (this.sink && this.durableTxid < capture.lastTxid) return result(false, 'not-durable');", '']],
    scenarios: [['s3-down-checkpoint', 4]],
  },
  'snapshot-at-cut': {
    what: 'a periodic snapshot may be taken at any checkpoint, also one whose marker ships inside a segment (restore, retention and the lineage read expect a snapshot to start one)',
    edits: [['packages/shipper/src/snapshots.ts', 'if (!cp || !cp.snapshotBase || cp.txid <= this.lastSnapshotTxid) return;', 'if (!cp || cp.txid <= this.lastSnapshotTxid) return;']],
    tests: ['shipper-puts'],
  },
  'epoch-rule': {
    what: 'acceptable() lets every epoch write every txid (restore and the shipper stop fencing)',
    edits: [['packages/format/src/fencing.ts', 'return maxTxid < next;', 'return next === next;']],
    tests: ['fencing.test'],
    scenarios: [['sigstop-takeover', 4]],
  },
  'marker-auth': {
    what: 'marker MACs are never checked: database.json, generation and epoch markers are trusted as read, with or without keys',
    edits: [['packages/format/src/markers.ts', "if (!keyring) return 'unchecked';", "if (!keyring || keyring.ids().length > 0) return 'unchecked';"]],
    tests: ['attack-auth'],
  },
  'require-encryption': {
    what: 'keys given no longer mean every object must be encrypted: the decoder and the planner accept plaintext objects',
    edits: [
      ['packages/format/src/chunk-opener.ts', 'options.requireEncryption ?? options.keyring !== undefined', 'options.requireEncryption ?? false'],
      ['packages/restore/src/plan.ts', 'if (id === null && keyring) {', 'if (id === null && keyring && false) {'],
    ],
    tests: ['attack-auth'],
  },
  'cli-key-echo': {
    what: 'the CLI quotes a WALSHIP_KEYS entry without id: in its usage error again (the first 40 characters, as before issue 10)',
    edits: [['packages/restore/src/cli-args.ts', "throw new UsageError(`${entry} is not id:base64 (no 'id:' before the key)", "throw new UsageError(`${entry} '${part.slice(0, 40)}' is not id:base64 (no 'id:' before the key)"]],
    tests: ['attack-secrets'],
  },
  'cli-if-db-not-exists': {
    what: 'restore --if-db-not-exists restores over an existing file instead of keeping it (a container reboot would replace its database)',
    edits: [['packages/restore/src/commands.ts', "if (values['if-db-not-exists'] && existsSync(path)) {", "if (values['if-db-not-exists'] && existsSync(path) && false) {"]],
    tests: ['cli-container'],
  },
  'cli-if-replica-exists': {
    what: 'restore --if-replica-exists also swallows ERR_NO_REPLICA for a generation named with --generation (a typo would exit 0 with no database)',
    edits: [['packages/restore/src/commands.ts', "f.code === 'ERR_NO_REPLICA' && f.details['generation'] === undefined", "f.code === 'ERR_NO_REPLICA'"]],
    tests: ['cli-container'],
  },
  'cli-no-credentials': {
    what: 'a credential chain that found nothing is reported as access denied again (ERR_STORAGE_ACCESS_DENIED, exit 3) instead of ERR_STORAGE_NO_CREDENTIALS naming where the SDK looked',
    edits: [['packages/storage/src/errors.ts', "name === 'CredentialsProviderError' ? 'ERR_STORAGE_NO_CREDENTIALS'", "name === 'CredentialsProviderError' ? 'ERR_STORAGE_ACCESS_DENIED'"]],
    tests: ['cli-container', 'storage/dist/retry'],
  },
  'cli-bucket-root': {
    what: 'the CLI no longer checks a bucket URL without a prefix for database.json (ls, status, verify, restore and follow would plan or list every object of the bucket)',
    edits: [['packages/restore/src/cli-bucket.ts', "if (source.s3 === undefined || source.s3.prefix !== '') return;", "if (source.s3 === undefined || source.s3.prefix !== '' || source.s3.prefix === '') return;"]],
    tests: ['cli-container'],
  },
  'sdk-error-causes': {
    what: 'storage errors keep the raw AWS SDK error as their cause (its $response reaches the signed Authorization header)',
    edits: [['packages/storage/src/errors.ts', '{ cause: safeCause(options.cause) }', '{ cause: options.cause }']],
    tests: ['attack-secrets'],
  },
  'endpoint-userinfo': {
    what: 'storage messages show the endpoint URL as given, user:password@ included',
    edits: [['packages/storage/src/s3.ts', 'endpoint !== undefined ? redactUrl(endpoint) :', 'endpoint !== undefined ? endpoint :']],
    tests: ['attack-secrets'],
  },
  'restore-file-mode': {
    what: 'restore, follow and verify create their files 0644 again (decrypted pages readable by other local users)',
    edits: [['packages/restore/src/scratch.ts', 'export const DEFAULT_FILE_MODE = 0o600;', 'export const DEFAULT_FILE_MODE = 0o644;']],
    tests: ['attack-secrets'],
  },
  'wal-file-mode': {
    what: "the VFS creates -wal and -journal files 0644 instead of with the database file's mode",
    edits: [['packages/vfs/src/node-files.ts', "if (typeof mode === 'number') return mode & 0o777;", "if (typeof mode === 'number') return 0o644;"]],
    tests: ['attack-secrets'],
  },
  'wal-header-flush': {
    what: 'the VFS no longer writes a held-back WAL frame header when a commit ends: the checksum SQLite rewrote last stays in memory, and a kill -9 would lose a commit it reported',
    edits: [['packages/vfs/src/node-files.ts', '          this.flushAllHeaders();\n', '']],
    tests: ['packages/vfs/dist/node-vfs.test'],
  },
  'checkpoint-marker-pages': {
    what: "a checkpoint's marker transaction is left to be read back from the WAL like any other, although the checkpoint restarts that WAL before the marker ships",
    edits: [['packages/shipper/src/ledger.ts', 'this.queue.push(pending, { keep: this.inCheckpoint });', 'this.queue.push(pending);']],
    tests: ['shipper-puts'],
  },
  'stale-scratch': {
    what: 'restore no longer removes the scratch files (decrypted pages) of a restore killed with -9',
    edits: [['packages/restore/src/restore.ts', '  removeStaleScratch(dirname(path), basename(path));\n', '']],
    tests: ['attack-secrets'],
  },
  'high-water-mark': {
    what: 'the durable high-water mark is never compared: restore, verify and status accept a bucket whose newest objects were deleted, and a writer continues it',
    edits: [
      ['packages/restore/src/mark.ts', 'return found === null || compareMarks(found, mark) < 0;', 'return false;'],
      ['packages/shipper/src/continuity.ts', 'return found === null || compareMarks(found, mark) < 0;', 'return false;'],
    ],
    tests: ['attack-rollback'],
  },
  'mark-monotonic': {
    what: "the lease item's durable mark may go down: the renewal's and release's condition lets any value through",
    edits: [['packages/lease/src/mark.ts', "condition: '(attribute_not_exists(#durableGeneration) OR", "condition: '(attribute_exists(#durableGeneration) OR attribute_not_exists(#durableGeneration) OR"]],
    tests: ['attack-rollback'],
  },
  'reacquire-condition': {
    what: "a writer that lost its lease re-acquires it unconditionally: the write no longer proves the item is still its own at the epoch it lost (a takeover in between is overwritten)",
    edits: [['packages/lease/src/item.ts', "expr: '#owner = :me AND #epoch = :seenEpoch AND #rvn = :seenRvn AND #released = :false',", "expr: 'attribute_exists(#owner) OR #owner = :me AND #epoch = :seenEpoch AND #rvn = :seenRvn AND #released = :false',"]],
    tests: ['lease-heal'],
  },
  'local-holder-alive': {
    what: 'the at-once takeover of a holder on this host does not check that its process is dead (a live or paused holder is taken over)',
    edits: [['packages/lease/src/local.ts', 'if (!processAlive(holder.pid)) return', 'if (true || !processAlive(holder.pid)) return']],
    tests: ['lease-heal'],
  },
  'local-holder-space': {
    what: "the at-once takeover judges a holder's pid in another pid space (another container or boot with the same host name)",
    edits: [['packages/lease/src/local.ts', "if (holder.space !== self.space) return { gone: false, why: 'other-space' };", '']],
    tests: ['lease-heal'],
  },
  'restart-fast-path': {
    what: 'openReplicated no longer gives the lease processAlive: a restart after a crash waits out its dead predecessor\u2019s whole lease',
    edits: [['packages/shipper/src/replicated.ts', '      processAlive,\n', '']],
    scenarios: [['restart-dead-holder', 1]],
  },
  'heal-epoch-marker': {
    what: 'a writer that re-acquired its lease ships under the new epoch without writing its epoch-start marker first (restore ignores the new epoch: transactions committed before the loss are lost)',
    edits: [['packages/shipper/src/markers.ts', '    this.epoch = epoch;\n    this.epochMarked = false;', '    this.epoch = epoch;']],
    tests: ['shipper-heal'],
  },
  'diverged-open': {
    what: 'a local file that does not continue the replica starts a new generation without allowRollback, burying the replica\u2019s flushed transactions',
    edits: [['packages/shipper/src/shipper.ts', 'if (!this.ctx.options.allowRollback) {', 'if (false) {']],
    tests: ['attack-rollback'],
  },
  'restore-streaming': {
    what: 'restore decodes a whole segment before applying it (pages held in memory, as before issue 10 item 4)',
    edits: [
      [
        'packages/restore/src/segments.ts',
        'for await (const event of events) {',
        "const held: import('@walship/format').DecodeEvent[] = [];\n    for await (const e of events) held.push(e);\n    for (const event of held) {",
      ],
      ['packages/restore/src/segments.ts', 'maxPagesPerEvent: PAGES_PER_EVENT, reuseBuffers: true, ', 'maxPagesPerEvent: PAGES_PER_EVENT, '],
    ],
    tests: ['attack-memory'],
  },
  'follow-hold': {
    what: 'follow keeps every decoded page of a batch in memory, however much an object decodes to',
    edits: [['packages/restore/src/follow.ts', 'const BATCH_HOLD_BYTES = 16 * 1024 * 1024;', 'const BATCH_HOLD_BYTES = Number.POSITIVE_INFINITY;']],
    tests: ['attack-memory'],
  },
  'decoder-limits': {
    what: 'no bound on what an object may decode to: header counts vs the object size, a chunk vs its compressed size, the index block vs the object size (issue 10 items 4, 5)',
    edits: [
      ['packages/format/src/format.ts', 'if (needed <= capacity) return null;', 'if (needed <= capacity || capacity >= 0) return null;'],
      ['packages/format/src/decoder.ts', 'if (expectedLength > limit) {', 'if (expectedLength > limit && limit < 0) {'],
      ['packages/format/src/chunk-opener.ts', 'if (rawOk && storedOk && !plain && rawLength >', 'if (rawOk && storedOk && plain && !plain && rawLength >'],
    ],
    tests: ['attack-memory', 'format/dist/limits.test'],
  },
  'close-own-statements': {
    what: 'Database#close finalizes every statement of the connection, including the ones an extension such as FTS5 owns (a double free)',
    edits: [
      [
        'packages/vfs/src/database.ts',
        'for (const p of conn.statements) x.sqlite3_finalize(p);',
        'for (let p = x.sqlite3_next_stmt(pDb, 0); p !== 0; p = x.sqlite3_next_stmt(pDb, 0)) x.sqlite3_finalize(p);',
      ],
    ],
    tests: ['vfs/dist/database.test'],
  },
  'replica-page-number': {
    what: 'a page read by its chunk is not checked to be the page asked for (the record\'s page number)',
    edits: [['packages/format/src/pages.ts', 'if (found !== pgno) {', 'if (false && found !== pgno) {']],
    tests: ['format/dist/pages.test'],
  },
  'replica-chunk-checksum': {
    what: 'a chunk read by openReplica is decrypted/decompressed without checking its data checksum (a flipped bit in a plain replica becomes a wrong row)',
    edits: [['packages/format/src/chunk-opener.ts', 'if (actual !== frame.dataChecksum) {', 'if (false && actual !== frame.dataChecksum) {']],
    tests: ['replica-faults'],
  },
  'replica-cache-bound': {
    what: 'openReplica\'s chunk cache never evicts (memory grows with the database, not cacheBytes)',
    edits: [['packages/restore/src/replica-pages.ts', 'while (this.#cached + raw.length > this.#cacheBytes) {', 'while (this.#cached + raw.length > Number.POSITIVE_INFINITY) {']],
    tests: ['replica-faults'],
  },
  'replica-typed-errors': {
    what: 'a failed page read surfaces as SQLite\'s generic I/O error, not the typed storage or object error behind it',
    edits: [['packages/vfs/src/page-vfs.ts', 'return cause instanceof Error ? cause : e;', 'return e;']],
    tests: ['replica-faults'],
  },
  'replica-follow-snapshot': {
    what: 'a followed replica switches to a newer state at once, also inside a read transaction (a statement or BEGIN..COMMIT could see two states)',
    edits: [['packages/restore/src/replica-pages.ts', 'if (!this.#reading) this.#switch();', 'this.#switch();']],
    tests: ['replica-follow'],
  },
  'replica-follow-verify': {
    what: 'a followed replica stages a state whose new segments were not read and verified first (a damaged segment replaces the last good state with one whose reads fail)',
    edits: [['packages/restore/src/replica-follow.ts', "if ((fresh[i] as RestorePlan['objects'][number]).kind === 'segment') await", "if (false) await"]],
    tests: ['replica-follow'],
  },
  'replica-follow-change-counter': {
    what: 'a followed replica serves page 1 with the writer\'s change counter, which a WAL writer does not bump: SQLite keeps stale pages in its cache across states',
    edits: [['packages/vfs/src/page-vfs.ts', '  view.setUint32(HEADER_CHANGE_COUNTER, version >>> 0);\n', '']],
    tests: ['replica-follow'],
  },
  'replica-disk-cache-verify': {
    what: 'a chunk read back from openReplica\'s disk cache is decoded without checking its data checksum (a changed cache file becomes a wrong row)',
    edits: [['packages/format/src/chunk-opener.ts', 'if (actual !== frame.dataChecksum) {', 'if (false && actual !== frame.dataChecksum) {']],
    tests: ['replica-disk-cache'],
  },
  'replica-disk-cache-mode': {
    what: 'openReplica\'s disk cache files are created readable by everyone (0644): chunks of a plain replica are the database\'s pages',
    edits: [
      ['packages/restore/src/replica-disk-cache.ts', "writeFileSync(tmp, bytes, { mode: 0o600, flag: 'wx' });", "writeFileSync(tmp, bytes, { mode: 0o644, flag: 'wx' });"],
      ['packages/restore/src/replica-disk-cache.ts', 'chmodSync(tmp, 0o600);', 'chmodSync(tmp, 0o644);'],
    ],
    tests: ['replica-disk-cache'],
  },
  'replica-disk-cache-bound': {
    what: 'openReplica\'s disk cache never evicts (the directory grows with the database, not cacheDirBytes)',
    edits: [['packages/restore/src/replica-disk-cache.ts', 'while (this.counters.bytes + incoming > this.maxBytes) {', 'while (this.counters.bytes + incoming > Number.POSITIVE_INFINITY) {']],
    tests: ['replica-disk-cache'],
  },
  'compaction-drop-jumps': {
    what: 'compaction deletes the level-0 inputs of any level-1 object, also a jump written before boundaries were kept (exact txids inside it are lost)',
    edits: [['packages/shipper/src/compaction.ts', "h.transactionCount !== h.maxTxid - h.minTxid + 1 || !acceptable(view.epochs, h.epoch, h.minTxid, h.maxTxid)", '!acceptable(view.epochs, h.epoch, h.minTxid, h.maxTxid)']],
    tests: ['shipper/dist/compaction.test'],
  },
  'restore-write-once': {
    what: 'restore writes every segment page as it is applied, also the ones later transactions rewrite (no staging)',
    edits: [
      ['packages/restore/src/apply.ts', 'if (this.#stagedBytes + this.pageSize + STAGE_OVERHEAD > STAGE_BYTES) this.#writeStaged();', 'this.#writeStaged();'],
      ['packages/restore/src/apply.ts', '    if (held) {\n      held.set(data);', '    if (held && held.length < 0) {\n      held.set(data);'],
    ],
    tests: ['restore/dist/apply.test'],
  },
  'first-image-coverage': {
    what: "the shipper takes any generation's txid 1 as the whole database (its snapshot), also in a file written before walship opened it (txid 1 leaves most pages as they are)",
    edits: [['packages/shipper/src/snapshots.ts', 'if (pgno !== lockPage && !pgnos.has(pgno)) return false;', 'if (pgno !== lockPage && pgnos.has(-1)) return false;']],
    tests: ['restore-every-txid'],
  },
  'planner-boundaries': {
    what: 'the restore planner treats every level-1 object as a jump to its max txid (no stop inside one): once level 0 is deleted, txids inside level-1 objects are not restorable',
    edits: [['packages/restore/src/chain.ts', 'return h.level === 0 || h.transactionCount === h.maxTxid - h.minTxid + 1;', 'return h.level === 0;']],
    tests: ['shipper-retention'],
  },
  'retention-delete-order': {
    what: 'retention deletes the segments below its base before the snapshots below it: a pass cut short leaves an old snapshot whose level-0 chain has a hole',
    edits: [
      [
        'packages/shipper/src/maintenance.ts',
        "const groups = [plan.doomed.filter((d) => d.key.endsWith('.snap')), plan.doomed.filter((d) => !d.key.endsWith('.snap')), ...older.groups];",
        "const groups = [plan.doomed.filter((d) => !d.key.endsWith('.snap')), plan.doomed.filter((d) => d.key.endsWith('.snap')), ...older.groups];",
      ],
    ],
    tests: ['shipper-retention'],
  },
  'follow-spare-version': {
    what: 'a follower that rebuilt its file keeps the spare copied from the file before: the next segments are applied to the old file',
    edits: [
      [
        'packages/restore/src/follow.ts',
        `      this.#fileVersion++;
      // At start, start() makes the first spare once the follower is running.
      if (!initial) this.#spare.prepare(this.#fileVersion);`,
        '',
      ],
    ],
    tests: ['restore-follow'],
  },
  'plain-open-replicated': {
    what: 'new Database(filename) opens a replicated database read-write: its writes reach the file outside capture',
    edits: [['packages/vfs/src/database.ts', 'if (standalone.wal && !this.#readonly) refuseReplicated(this, this.#name);', '']],
    tests: ['vfs/dist/standalone.test'],
  },
  'plain-open-wal-lock': {
    what: 'new Database(filename) on a WAL-mode file takes no process lock (it runs beside a walship writer, each with its own heap wal-index)',
    edits: [['packages/vfs/src/standalone.ts', 'return { release: acquireProcessLock(resolve(filename)) };', 'return { release: () => {} };']],
    tests: ['vfs/dist/standalone.test'],
  },
  'plain-open-wal-only': {
    what: 'new Database(filename) opens a pageless file whose -wal holds the commits (SQLite deletes that -wal)',
    edits: [['packages/vfs/src/standalone.ts', "refuseWalOnly(filename, size, 'filename');", '']],
    tests: ['vfs/dist/standalone.test'],
  },
  'existing-file-base': {
    what: "an existing file's generation snapshot at txid 1 is the main file without txid 1's pages over it, and the shipper's streaming checksum check is off: a txid-1 snapshot that is really the state before txid 1",
    edits: [
      ['packages/shipper/src/snapshots.ts', 'const overlay = new Map(image.pages.map((p) => [p.pgno, p.data]));', 'const overlay = new Map(image.pages.filter((p) => p.pgno < 0).map((p) => [p.pgno, p.data]));'],
      ['packages/shipper/src/jobs.ts', 'if (seen.value !== checksum) {', 'if (false && seen.value !== checksum) {'],
    ],
    tests: ['restore-every-txid'],
  },
  'snapshot-thread-errors': {
    what: "a large snapshot's decoding thread reports a damaged object as a finished one with no pages: restore no longer fails with the decoder's typed error naming the object",
    edits: [
      [
        'packages/restore/src/snapshot-worker.ts',
        'run().catch((e: unknown) => {',
        "run().catch((e: unknown) => {\n  if (e) {\n    post({ type: 'done', ended: true, count: 0, pgnos: new Uint32Array(0), hashes: new BigUint64Array(0) });\n    return;\n  }",
      ],
    ],
    tests: ['restore-large-snapshot'],
  },
  'replica-etag-pin': {
    what: "an instant replica's page reads are not pinned to the ETag its index was read with: an object replaced after the open is read as if it were the one indexed (another database's chunks at the same offsets decode)",
    edits: [['packages/restore/src/replica-pages.ts', 'const etag = object.etag !== undefined ? { etag: object.etag } : {};', 'const etag = {};']],
    tests: ['replica-faults'],
  },
  'storage-etag-check': {
    what: 'a get pinned to an ETag accepts an answer with another ETag',
    edits: [['packages/storage/src/errors.ts', 'if (expected === undefined || got === undefined || bareEtag(expected) === bareEtag(got)) return;', 'return;']],
    tests: ['storage-contract'],
  },
  'follow-active-pace': {
    what: 'follow polls at intervalMs only: a segment that lands right after another waits for the next quiet poll (seconds with the default, an hour in the test)',
    edits: [['packages/restore/src/follow.ts', 'return this.#activeInterval > 0 && performance.now() - this.#appliedAt < ACTIVE_FOR_MS ? this.#activeInterval : this.#interval;', 'return this.#interval;']],
    tests: ['restore-follow'],
  },
  'replica-disk-cache-etag': {
    what: "the replica's disk cache names a chunk by key and range only: a reopen after the object was rewritten under its key reads the old version's chunks from disk",
    edits: [['packages/restore/src/replica-disk-cache.ts', '\\n${object.etag ?? \'\'}\\n${start}-${end}', '\\n${start}-${end}']],
    tests: ['restore/dist/replica-disk-cache.test'],
  },
  'worker-stall-watchdog': {
    what: 'the shipper no longer notices an encoder worker that is stuck: a flush waits forever, writes go on, status() says running',
    edits: [['packages/shipper/src/encoder.ts', '      const timer = setTimeout(() => {\n        this.fail(', '      const timer = setTimeout(() => {\n        return;\n        this.fail(']],
    tests: ['shipper-worker'],
  },
  'worker-crash-typed': {
    what: 'an encoder worker that exits is not reported as crashed (jobs wait on a dead thread until the stall watchdog, which names the wrong cause)',
    edits: [['packages/shipper/src/encoder.ts', 'if (!encoder.closing) encoder.crashed(', 'if (false) encoder.crashed(']],
    tests: ['shipper-worker'],
  },
  'worker-failure-refuses-writes': {
    what: 'a dead or stuck encoder worker stops replication but writes go on being accepted (committed, never shipped, not refused)',
    edits: [['packages/shipper/src/shipper.ts', "    this.raw.setWriteBarrier(e);\n    this.fail(e);\n  }", "    this.fail(e);\n  }"]],
    tests: ['shipper-worker'],
  },
  'worker-start-check': {
    what: 'openReplicated does not wait for the encoder worker to come up: a worker that fails to load is found out only by the first upload',
    edits: [
      ['packages/shipper/src/encoder.ts', 'const onError = (e: Error): void => finish(startFailed(e.message, e));', 'const onError = (): void => finish(null);'],
      ['packages/shipper/src/encoder.ts', 'const onExit = (code: number): void => finish(startFailed(`it exited with code ${code}`));', 'const onExit = (): void => finish(null);'],
    ],
    tests: ['shipper-worker'],
  },
  'replica-follow-active-pace': {
    what: 'openReplica({ follow: true }) polls only every followIntervalMs: no active pace after the open or a new state',
    edits: [['packages/restore/src/replica-follow.ts', 'return activeIntervalMs > 0 && performance.now() - this.#activeSince < ACTIVE_FOR_MS ? Math.min(activeIntervalMs, intervalMs) : intervalMs;', 'return intervalMs;']],
    tests: ['replica-follow'],
  },
  'replica-header-cache-etag': {
    what: "a followed replica's header cache reuses a header by key alone: an object replaced under the same key keeps its old header in every later plan",
    edits: [['packages/restore/src/replica.ts', 'if (seen && seen.etag === entry.etag && seen.size === entry.size) {', 'if (seen) {']],
    tests: ['replica-follow'],
  },
  'read-window-writes': {
    what: "a database opened to be read through windows (restore's integrity check) lets SQLite write its main file, so the check could change what it checks and its windows go stale",
    edits: [['packages/vfs/src/node-files.ts', "    if (f.window) return this.fail(new Error('the database is open read-only (read through windows)'), SQLITE_IOERR_WRITE, `write ${n} bytes at ${pos} of ${f.path}`);\n", '']],
    tests: ['packages/vfs/dist/read-window.test'],
  },
  'direct-io-fallback': {
    what: 'a file system that refuses O_DIRECT (EINVAL at the first transfer) fails the restore instead of falling back to buffered reads and writes',
    edits: [
      ['packages/restore/src/run-writer.ts', 'if (!directRefused(e) || at > 0) throw e;\n      this.#closeDirect();', 'throw e;\n      this.#closeDirect();'],
      ['packages/restore/src/run-writer.ts', 'if (!directRefused(e) || at > 0) throw e;\n        if (this.#direct === direct)', 'throw e;\n        if (this.#direct === direct)'],
      ['packages/vfs/src/read-window.ts', 'if (!directRefused(e) || got > 0) throw e;', 'throw e;'],
    ],
    tests: ['packages/restore/dist/run-writer.test', 'packages/vfs/dist/read-window.test'],
  },
  'background-write-error': {
    what: "a restore's background write that fails is forgotten: the snapshot thread goes on and the restore reports success for a file missing a run of pages",
    edits: [['packages/restore/src/run-writer.ts', '        this.#writeError ??= e;\n', '']],
    tests: ['packages/restore/dist/run-writer.test'],
  },
  'read-ahead-unfinished': {
    what: "the check's read-ahead thread's slots are served whatever their state: a window the thread is still reading (or failed to read) is handed to SQLite with another window's bytes",
    edits: [
      ['packages/vfs/src/read-ahead.ts', 'if (found >= 0 && Atomics.load(c, slotState(found)) === READING) {', 'if (found < -1) {'],
      ['packages/vfs/src/read-ahead.ts', '=== READY && c[slotIndex(found)] === index) {', '!== FREE) {'],
    ],
    tests: ['packages/vfs/dist/read-window.test'],
  },
  'read-back-check': {
    what: "a restored file's size and checksum, read back from the device, are no longer compared with the replica's: a disk that lost a write passes (with --integrity-check none, nothing else would see it)",
    edits: [['packages/restore/src/restore.ts', 'if (differs(check.size, check.checksum)) throw mismatch(', 'if (differs(check.size, check.checksum) && Number.isNaN(0)) throw mismatch(']],
    tests: ['packages/restore/dist/verify-file.test'],
  },
  'piece-done-early': {
    what: "the decoder gives a source piece back as soon as it has read it, before the chunk it holds is opened and its events consumed: restore's snapshot thread would recycle a buffer its pages still come from",
    edits: [['packages/format/src/decoder.ts', '    const raw = chunks.open(frame, stored);', '    if (options.onPieceDone !== undefined) reader.release(options.onPieceDone);\n    const raw = chunks.open(frame, stored);']],
    tests: ['packages/format/dist/limits.test'],
  },
  'piece-header-view': {
    what: "the decoder keeps the object's header bytes as a view of the first piece, which onPieceDone gives back (encrypted chunks are authenticated with those bytes)",
    edits: [['packages/format/src/decoder.ts', 'const head = (await reader.readUpTo(HEADER_SIZE)).slice();', 'const head = await reader.readUpTo(HEADER_SIZE);']],
    tests: ['packages/format/dist/limits.test'],
  },
  'piece-pool-shared': {
    what: 'the piece pool hands out a free buffer without taking it off its free list: two ranged GETs of a snapshot read into the same memory',
    edits: [['packages/restore/src/apply.ts', 'const buffer = this.#free.pop() ?? new ArrayBuffer(this.size);', 'const buffer = this.#free.at(-1) ?? new ArrayBuffer(this.size);']],
    tests: ['restore-large-snapshot'],
  },
  'background-room': {
    what: "the background writer never makes its owner wait (room() returns at once): a snapshot decoded faster than the disk writes piles its runs up in memory without bound",
    edits: [['packages/restore/src/run-writer.ts', 'while (this.#queue.length >= Math.max(1, this.#background) && this.#writeError === null)', 'while (Number.isNaN(0) && this.#writeError === null)']],
    tests: ['packages/restore/dist/run-writer.test'],
  },
  'replica-spare-shared': {
    what: "an instant replica hands the same spare chunk buffer to two chunks it opens (the buffer is not taken off the spare list), so one chunk's pages are served from another's bytes",
    edits: [['packages/restore/src/replica-pages.ts', '(this.#spare.splice(at, 1)[0] as Uint8Array)', '(this.#spare[at] as Uint8Array)']],
    tests: ['replica-faults'],
  },
  'integrity-thread-answer': {
    what: "restore's integrity_check thread (files of 32 MiB and more) reports ok whatever SQLite found",
    edits: [['packages/restore/src/integrity-worker.ts', "check: await checkFileHere(data.path, data.pageSize, data.cacheKiB, data.mode) }", "check: { ...(await checkFileHere(data.path, data.pageSize, data.cacheKiB, data.mode)), rows: ['ok'] } }"]],
    tests: ['integrity.test'],
  },
  'open-wal-only': {
    what: 'openDatabase opens a database file without pages whose -wal holds the commits (SQLite then deletes that -wal)',
    edits: [['packages/vfs/src/open-checks.ts', "refuseWalOnly(abs, st.size, 'path');", '']],
    tests: ['vfs/dist/standalone.test'],
  },
  'close-checkpoint-marker': {
    what: "the VFS's own checkpoint at close writes a marker without the shipper's continuity note (after the shipper's last checkpoint failed on a full disk): the file gets a txid the replica never does",
    edits: [['packages/shipper/src/replicated.ts', 'onCommit: s.onCommit, markerOnClose: false,', 'onCommit: s.onCommit,']],
    tests: ['shipper-heal'],
  },
  'close-on-full-disk': {
    what: 'close() gives up when its last checkpoint fails on a full disk: it rejects before releasing the lease or closing the handle',
    edits: [['packages/shipper/src/checkpoints.ts', 'if (!isLocalIoError(e)) throw e;', 'if (e) throw e;']],
    tests: ['shipper-heal'],
  },
  's3rver-atomic-put': {
    what: "the test harness runs s3rver's own putObject, which overwrites an object's file in place and can answer before the bytes are written (a GET right after a PUT read a truncated database.json in CI)",
    edits: [['test/src/servers/s3rver.ts', 'FilesystemStore.prototype.putObject = async function putObject', 'FilesystemStore.prototype.unusedPutObject = async function putObject']],
    tests: ['servers.test'],
  },
  'pending-overflow-off': {
    what: "the pending queue keeps every chunk of its list of waiting transactions in memory (48 bytes a transaction for as long as S3 is down)",
    edits: [['packages/shipper/src/pending.ts', 'if (this.overflow && ci - 1 >= FRONT_CHUNKS) this.overflow.spill', 'if (this.overflow && ci < 0) this.overflow.spill']],
    tests: ['shipper/dist/pending.test'],
  },
  'pending-overflow-slot': {
    what: 'the overflow file writes every chunk at offset 0: chunks read back hold another chunk\'s transactions',
    edits: [['packages/shipper/src/pending-chunks.ts', 'bytes.byteLength - done, slot * CHUNK_BYTES + done);', 'bytes.byteLength - done, done);']],
    tests: ['shipper/dist/pending.test'],
  },
  'pending-overflow-off-e2e': {
    what: 'the same as pending-overflow-off, against the end-to-end test only (S3 down for 30,000 commits through the real shipper)',
    edits: [['packages/shipper/src/pending.ts', 'if (this.overflow && ci - 1 >= FRONT_CHUNKS) this.overflow.spill', 'if (this.overflow && ci < 0) this.overflow.spill']],
    tests: ['test/dist/shipper-e2e'],
  },
  'pending-overflow-slot-e2e': {
    what: 'the same as pending-overflow-slot, against the end-to-end test only: the replica must not silently hold wrong transactions',
    edits: [['packages/shipper/src/pending-chunks.ts', 'bytes.byteLength - done, slot * CHUNK_BYTES + done);', 'bytes.byteLength - done, done);']],
    tests: ['test/dist/shipper-e2e'],
  },
};

const args = process.argv.slice(2);
let seed = 4242;
const chosen = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--seed') seed = Number(args[++i]);
  else if (SABOTAGES[args[i]]) chosen.push(args[i]);
  else {
    console.error(`sabotage: unknown argument ${args[i]}; sabotages: ${Object.keys(SABOTAGES).join(', ')}`);
    process.exit(2);
  }
}
if (chosen.length === 0) chosen.push(...Object.keys(SABOTAGES));

const results = [];
for (const name of chosen) {
  const s = SABOTAGES[name];
  const copy = mkdtempSync(join(tmpdir(), `walship-sabotage-${name}-`));
  try {
    console.log(`\n== sabotage ${name}: ${s.what}`);
    cpSync(root, copy, { recursive: true, verbatimSymlinks: true, filter: (src) => !src.includes('/.git') });
    for (const [file, find, replace] of s.edits) {
      const path = join(copy, file);
      const text = readFileSync(path, 'utf8');
      const at = text.indexOf(find);
      if (at < 0 || text.indexOf(find, at + 1) >= 0) {
        console.error(`sabotage ${name}: ${file} does not contain ${JSON.stringify(find)} exactly once; update scripts/sabotage.mjs`);
        process.exit(2);
      }
      writeFileSync(path, text.replace(find, replace));
      console.log(`   ${file}: ${JSON.stringify(find)} -> ${JSON.stringify(replace)}`);
    }
    const build = spawnSync(process.execPath, [join(copy, 'node_modules/typescript/bin/tsc'), '-b'], { cwd: copy, encoding: 'utf8' });
    if (build.status !== 0) {
      console.error(`sabotage ${name}: the sabotaged tree did not build:\n${build.stdout}${build.stderr}`);
      process.exit(2);
    }
    let caught = false;
    for (const filter of s.tests ?? []) {
      const run = spawnSync(process.execPath, ['scripts/test.mjs', filter], { cwd: copy, encoding: 'utf8', env: { ...process.env, NODE_NO_WARNINGS: '1' }, maxBuffer: 64 << 20 });
      const out = `${run.stdout}`;
      // The run's own summary is its last fail line (a test's diagnostics may print earlier ones).
      const failedCount = Number([...out.matchAll(/^(?:# |ℹ )fail (\d+)$/gm)].at(-1)?.[1] ?? '0');
      const failing = out.split('\n').filter((l) => /^not ok \d+ - /.test(l.trim())).map((l) => l.trim());
      console.log(`   tests ${filter}: exit ${run.status}, ${failedCount} failed`);
      for (const f of failing.slice(0, 5)) console.log(`     ${f.slice(0, 300)}`);
      if (run.status !== 0 && failedCount > 0) caught = true;
    }
    for (const [scenario, trials] of s.scenarios ?? []) {
      const run = spawnSync(
        process.execPath,
        ['test/dist/scenarios/soak.js', '--scenario', scenario, '--seed', String(seed), '--trials', String(trials), '--report', join(copy, 'report.json'), '--markdown', join(copy, 'report.md')],
        { cwd: copy, encoding: 'utf8', env: { ...process.env, NODE_NO_WARNINGS: '1' }, maxBuffer: 64 << 20 },
      );
      const lines = `${run.stdout}`.split('\n');
      const verdict = lines.find((l) => /^(ok|FAIL) /.test(l)) ?? `(no verdict; exit ${run.status})`;
      const violations = lines.filter((l) => l.startsWith('     violation: ')).map((l) => l.slice(16));
      console.log(`   ${verdict}`);
      for (const v of violations.slice(0, 3)) console.log(`     violation: ${v.slice(0, 400)}`);
      if (violations.length > 3) console.log(`     ... ${violations.length - 3} more`);
      if (run.status === 1 && violations.length > 0) caught = true;
    }
    console.log(`   => ${caught ? 'CAUGHT: the harness failed' : 'NOT CAUGHT: the harness passed with this mechanism broken'}`);
    results.push({ name, caught });
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
}
console.log(`\n${results.map((r) => `${r.caught ? 'caught    ' : 'NOT CAUGHT'} ${r.name}`).join('\n')}`);
process.exit(results.every((r) => r.caught) ? 0 : 1);
