import { resolve } from 'node:path';
import { openDatabase, processAlive, WalshipError, type WalshipDatabase } from '@walship/vfs';
import { S3Storage, createS3Storage, type ObjectStorage, type RequestEvent } from '@walship/storage';
import { Keyring, loadFormat, parseRestoredNote, restoredNotePath, type RestoredNote } from '@walship/format';
import { readFileSync, rmSync } from 'node:fs';
import { fileChecksumIfWalEmpty } from './local.js';
import { createDynamoLease, type Lease, type LeaseGrant } from '@walship/lease';
import { resolveOptions, type ReplicatedOptions } from './options.js';
import { readLineage } from './lineage.js';
import { behindMark, replicaBehindError } from './continuity.js';
import { Logger } from './log.js';
import { ShipperMetrics } from './metrics.js';
import { startMetricsEndpoint, type MetricsEndpoint } from './metrics-server.js';
import { Shipper } from './shipper.js';
import { startEncoder, type Encoder } from './encoder.js';
import type { FlushOptions, ReplicationStatus } from './types.js';

export interface CloseOptions {
  /** How long close() waits for the last transactions to become durable (ms, default 30000). */
  timeoutMs?: number;
}

/** The database of @walship/vfs, replicated: plus flush, replication status, metrics and an async close. */
export type ReplicatedDatabase = Omit<WalshipDatabase, 'close' | 'acknowledge' | 'status' | 'setWriteBarrier'> & {
  /**
   * Resolves with the durable txid once every transaction committed before the call is in the
   * object store. `timeoutMs` / `signal` give up waiting (ERR_FLUSH_TIMEOUT / ERR_ABORTED, with the
   * committed and durable txids); nothing is lost then: the transactions keep shipping.
   */
  flush(options?: FlushOptions): Promise<{ txid: number }>;
  status(): ReplicationStatus;
  /** Prometheus text exposition format. */
  metrics(): Promise<string>;
  /** Where the `metrics` option serves that text over HTTP (null without the option). */
  readonly metricsUrl: string | null;
  /** Flushes (up to timeoutMs), stops replication and closes the database. Rejects with ERR_CLOSED if something was left unshipped (it stays in the WAL). */
  close(options?: CloseOptions): Promise<void>;
};

/**
 * Opens `path` through walship's VFS and replicates it to `options.s3`. Everything is checked
 * before anything is written: options, keys, the bucket and credentials, the replica's lineage.
 */
export async function openReplicated(path: string, options: ReplicatedOptions): Promise<ReplicatedDatabase> {
  const o = resolveOptions(options);
  await loadFormat();
  let keyring: Keyring | undefined;
  if (options.encryption) {
    keyring = new Keyring(options.encryption);
  }
  const abs = resolve(path);
  const location = `s3://${o.bucket}/${o.prefix}`;
  const log = new Logger({ sink: options.logger, level: options.logLevel, base: { database: location } });
  let metrics: ShipperMetrics | null = null;
  const onRequest = (e: RequestEvent): void => {
    metrics?.request(e);
    options.onRequest?.(e);
  };
  const storage: ObjectStorage = options.storage ?? s3StorageFor(options, o, onRequest);
  if (storage instanceof S3Storage) await storage.check();
  // The encoder worker loads while the lease and the lineage are read; awaited before the shipper is built.
  let shipper: Shipper | null = null;
  const encoderStart = startEncoder(o.encoder, options.encryption && keyring ? { init: options.encryption, keyring } : undefined, (e) => shipper?.encoderFailed(e));
  encoderStart.catch(() => undefined);
  let encoder: Encoder;
  let lease: Lease | null = null;
  let grant: LeaseGrant | null = null;
  if (options.lease) {
    const { key, ...rest } = options.lease;
    lease = createDynamoLease({
      ...rest,
      key: key ?? location,
      // A holder on this host whose process is gone (a crash just before this restart) is taken over at once.
      processAlive,
      logger: (entry) => log.child({ component: 'lease' })[entry.level === 'debug' ? 'debug' : entry.level === 'info' ? 'info' : entry.level === 'warn' ? 'warn' : 'error'](entry.msg, { ...entry, msg: undefined }),
    });
    try {
      grant = await lease.acquire();
    } catch (e) {
      await encoderStart.then(
        (enc) => enc.close(),
        () => undefined,
      );
      throw e;
    }
    // Renewed from here: a slow open (a cold start, a big file to hash) must not outlast the grant.
    lease.startRenewing();
  }
  let endpoint: MetricsEndpoint | null = null;
  const releaseOnFailure = async (): Promise<void> => {
    await endpoint?.close();
    await encoderStart.then(
      (e) => e.close(),
      () => undefined,
    );
    if (!lease) return;
    await lease.release().catch(() => undefined);
    lease.close();
  };
  let lineage: Awaited<ReturnType<typeof readLineage>>;
  try {
    lineage = await readLineage(storage, o.prefix, { keyring });
  } catch (e) {
    await releaseOnFailure();
    throw e;
  }
  // The lease item's high-water mark says what was durable; a store that no longer reaches it lost
  // objects, and continuing it would reuse the txids of transactions that were acknowledged.
  const found = lineage.generation && lineage.tip ? { generation: lineage.generation, txid: lineage.tip.txid } : null;
  const behind = lease && grant && behindMark(grant.durable, found) ? replicaBehindError({ location, table: lease.table, key: lease.key }, grant.durable!, found) : null;
  const refusal = lineageRefusal(location, lineage, { keyring, grant }) ?? (behind && !o.allowRollback ? behind : null);
  if (refusal) {
    await releaseOnFailure();
    throw refusal;
  }
  try {
    encoder = await encoderStart;
  } catch (e) {
    await releaseOnFailure();
    throw e;
  }
  metrics = new ShipperMetrics(location, {
    committedTxid: () => shipper?.committedTxid ?? 0,
    durableTxid: () => shipper?.durableTxid ?? 0,
    pendingTransactions: () => shipper?.queue.length ?? 0,
    pendingWalBytes: () => shipper?.queue.pendingWalBytes ?? 0,
    walBytes: () => {
      try {
        return shipper?.raw.status().walBytes ?? 0;
      } catch {
        return 0;
      }
    },
    epoch: () => shipper?.epoch ?? 0,
  });
  if (o.metrics) {
    try {
      endpoint = await startMetricsEndpoint({ ...o.metrics, location, text: () => metrics!.text() });
    } catch (e) {
      await releaseOnFailure();
      throw e;
    }
  }
  shipper = new Shipper({
    path: abs,
    options: o,
    storage,
    keyring,
    encoder,
    log,
    metrics,
    lease,
    requestTimeoutMs: leaseAwareRetry(options).requestTimeoutMs ?? 30_000,
    ...(grant ? { grantHow: grant.how } : {}),
    ...(behind ? { forceGeneration: `the replica is behind the lease's high-water mark (txid ${grant!.durable!.txid} of generation ${grant!.durable!.generation}) (allowRollback)` } : {}),
  });
  const s = shipper;
  let db: WalshipDatabase;
  let baseTxid: number | undefined;
  try {
    baseTxid = await provenBase(abs, lineage, log);
    db = await openDatabase(abs, { ...(options.database ?? {}), onCommit: s.onCommit, markerOnClose: false, ...(baseTxid !== undefined ? { baseTxid, durableTxid: baseTxid } : {}) });
  } catch (e) {
    await releaseOnFailure();
    throw e;
  }
  const torn = db.recovery.discardedWal;
  if (torn) log.warn('the -wal had a torn header (a crash while SQLite started it over): moved aside; the database file holds everything it held', { problem: torn.problem, bytes: torn.size, movedTo: torn.movedTo });
  try {
    await s.start(db, lineage, baseTxid, grant?.epoch);
  } catch (e) {
    db.close();
    await releaseOnFailure();
    throw e;
  }
  // The marker transaction now records the restored txid; the note has done its job.
  if (baseTxid !== undefined) rmSync(restoredNotePath(abs), { force: true });
  if (!lease) {
    log.warn('lease: false. walship assumes this is the only writer of this replica; a second writer would corrupt its lineage', { txid: db.txid });
  }
  return withReplication(db, s, { abs, location, log, lease, metrics, endpoint });
}

/** The S3 storage of `options.s3`, its per-request timeout inside the lease period. */
function s3StorageFor(options: ReplicatedOptions, o: ReturnType<typeof resolveOptions>, onRequest: (e: RequestEvent) => void): ObjectStorage {
  return createS3Storage({
    bucket: o.bucket,
    prefix: o.prefix,
    ...(options.s3.client ? { client: options.s3.client } : {}),
    ...(options.s3.endpoint ? { endpoint: options.s3.endpoint } : {}),
    ...(options.s3.region ? { region: options.s3.region } : {}),
    ...(options.s3.forcePathStyle !== undefined ? { forcePathStyle: options.s3.forcePathStyle } : {}),
    ...(options.s3.credentials ? { credentials: options.s3.credentials } : {}),
    retry: leaseAwareRetry(options),
    conditionalWrites: options.s3.conditionalWrites ?? !options.s3.endpoint,
    onRequest,
  });
}

/** Why this writer must not continue the replica it found (keys it lacks, an epoch behind the replica's), or null. */
function lineageRefusal(location: string, lineage: Awaited<ReturnType<typeof readLineage>>, writer: { keyring: Keyring | undefined; grant: LeaseGrant | null }): WalshipError | null {
  const { keyring, grant } = writer;
  if (lineage.encrypted && !keyring) {
    return new WalshipError(
      'ERR_KEY_REQUIRED',
      `${location}: database.json says every object of this replica is encrypted, but no encryption keys were given; plaintext objects would be refused by every restore with keys. Pass the replica's keys as \`encryption\``,
      { details: { location } },
    );
  }
  if (grant && grant.epoch <= lineage.maxEpoch) {
    return new WalshipError(
      'ERR_EPOCH_BEHIND',
      `the lease for ${location} granted epoch ${grant.epoch}, but the replica already has objects of epoch ${lineage.maxEpoch}: was the lease table replaced, or did this replica run with lease: false? Restore into a new prefix, or bring the lease item's epoch above ${lineage.maxEpoch}`,
      { details: { leaseEpoch: grant.epoch, replicaEpoch: lineage.maxEpoch } },
    );
  }
  return null;
}

/**
 * The opened database with replication's methods: flush, status, metrics, checkpoint through the
 * shipper, and a close that stops the shipper and releases the lease; the capture controls the
 * shipper owns (acknowledge, setWriteBarrier) refuse to be called from outside.
 */
function withReplication(
  db: WalshipDatabase,
  s: Shipper,
  parts: { abs: string; location: string; log: Logger; lease: Lease | null; metrics: ShipperMetrics; endpoint: MetricsEndpoint | null },
): ReplicatedDatabase {
  const { abs, location, log, lease, metrics, endpoint } = parts;
  const rawClose = db.close.bind(db);
  const replicated = db as unknown as ReplicatedDatabase & { acknowledge?: unknown; setWriteBarrier?: unknown };
  Object.defineProperties(replicated, {
    flush: { value: (options?: FlushOptions) => s.flush(options) },
    status: { value: () => s.status() },
    metrics: { value: () => metrics.text() },
    metricsUrl: { value: endpoint?.url ?? null, enumerable: true },
    acknowledge: {
      value: () => {
        throw new WalshipError('ERR_OWNED_BY_SHIPPER', 'acknowledge() belongs to the shipper of a replicated database');
      },
    },
    setWriteBarrier: {
      value: () => {
        throw new WalshipError('ERR_OWNED_BY_SHIPPER', 'setWriteBarrier() belongs to the shipper of a replicated database');
      },
    },
    checkpoint: { value: () => s.checkpointNow() },
    close: {
      value: async (co: CloseOptions = {}) => {
        if (!db.open) return;
        const timeoutMs = co.timeoutMs ?? 30_000;
        const { flushed } = await s.stop(timeoutMs);
        await endpoint?.close();
        const status = s.status();
        try {
          rawClose();
        } finally {
          // The handle is closed even when closing it throws: the lease goes too.
          if (lease) {
            if (lease.state === 'held') await lease.release().catch((e: unknown) => log.warn('lease release failed; it runs out at its deadline', { error: (e as Error).message }));
            lease.close();
          }
        }
        if (!flushed) {
          throw new WalshipError(
            'ERR_CLOSED',
            `${abs} closed with transactions ${status.durableTxid + 1}..${status.committedTxid} not yet durable in ${location}${status.lastError ? ` (last error: ${status.lastError.message})` : ''}; they stay in the WAL and ship on the next open`,
            { details: { durableTxid: status.durableTxid, committedTxid: status.committedTxid } },
          );
        }
      },
    },
  });
  return replicated;
}

/**
 * With a lease, one request must fit well inside a lease period: uploads start only while
 * deadline - (request timeout + margin) is ahead, so the per-request timeout defaults to leaseMs/4.
 */
function leaseAwareRetry(options: ReplicatedOptions): NonNullable<ReplicatedOptions['s3']['retry']> {
  const retry = options.s3.retry ?? {};
  if (!options.lease) return retry;
  const leaseMs = options.lease.leaseMs ?? 10_000;
  return { ...retry, requestTimeoutMs: Math.min(retry.requestTimeoutMs ?? 30_000, Math.floor(leaseMs / 4)) };
}

/**
 * A database restored from this replica has an empty WAL and a file whose checksum equals the
 * replica's tip. Then the file is that txid, whatever its marker row says (it was written by the
 * original writer's last checkpoint before that txid).
 */
async function provenBase(path: string, lineage: Awaited<ReturnType<typeof readLineage>>, log: Logger): Promise<number | undefined> {
  const tip = lineage.tip;
  const note = readNote(path);
  if (!tip && !note) return undefined;
  const sum = fileChecksumIfWalEmpty(path);
  if (sum === null) return undefined;
  if (tip && sum.checksum === tip.checksum) {
    log.info('local database file matches the replica tip', { txid: tip.txid });
    return tip.txid;
  }
  // Restored to an earlier point: the note restore left says which txid the file is.
  if (note && note.checksum === sum.checksum.toString(16).padStart(16, '0')) {
    log.info('local database file is a restore of this replica', { txid: note.txid, restoredFrom: note.generation });
    return note.txid;
  }
  return undefined;
}

function readNote(path: string): RestoredNote | null {
  try {
    return parseRestoredNote(readFileSync(restoredNotePath(path), 'utf8'));
  } catch {
    return null;
  }
}
