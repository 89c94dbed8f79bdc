import { resolve } from 'node:path';
import { openDatabase, WalshipError, type WalshipDatabase } from '@walship/vfs';
import { S3Storage, createS3Storage, type ObjectStorage, type RequestEvent } from '@walship/storage';
import { Keyring, loadFormat } from '@walship/format';
import { resolveOptions, type ReplicatedOptions } from './options.js';
import { readLineage } from './lineage.js';
import { Logger } from './log.js';
import { ShipperMetrics } from './metrics.js';
import { Shipper, type ReplicationStatus } from './shipper.js';

export interface CloseOptions {
  /** How long close() waits for the last transactions to become durable (ms, default 30000). */
  timeoutMs?: number;
}

/** The database of @walship/vfs, replicated: plus flush, replication status, metrics and an async close. */
export type ReplicatedDatabase = Omit<WalshipDatabase, 'close' | 'acknowledge' | 'status' | 'setWriteBarrier'> & {
  /** Resolves with the durable txid once every transaction committed before the call is in the object store. */
  flush(): Promise<{ txid: number }>;
  status(): ReplicationStatus;
  /** Prometheus text exposition format. */
  metrics(): Promise<string>;
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
  const storage: ObjectStorage =
    options.storage ??
    createS3Storage({
      bucket: o.bucket,
      prefix: o.prefix,
      ...(options.s3.client ? { client: options.s3.client } : {}),
      ...(options.s3.endpoint ? { endpoint: options.s3.endpoint } : {}),
      ...(options.s3.region ? { region: options.s3.region } : {}),
      ...(options.s3.forcePathStyle !== undefined ? { forcePathStyle: options.s3.forcePathStyle } : {}),
      ...(options.s3.credentials ? { credentials: options.s3.credentials } : {}),
      ...(options.s3.retry ? { retry: options.s3.retry } : {}),
      onRequest,
    });
  if (storage instanceof S3Storage) await storage.check();
  const lineage = await readLineage(storage, o.prefix);
  let shipper: Shipper | null = null;
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
  shipper = new Shipper({ path: abs, options: o, storage, keyring, log, metrics });
  const s = shipper;
  const baseTxid = await provenBase(abs, lineage, log);
  const db = await openDatabase(abs, { ...(options.database ?? {}), onCommit: s.onCommit, ...(baseTxid !== undefined ? { baseTxid, durableTxid: baseTxid } : {}) });
  try {
    await s.start(db, lineage, baseTxid);
  } catch (e) {
    db.close();
    throw e;
  }
  log.warn('lease: none. walship assumes this is the only writer of this replica; a second writer would corrupt its lineage', { txid: db.txid });
  const rawClose = db.close.bind(db);
  const replicated = db as unknown as ReplicatedDatabase & { acknowledge?: unknown; setWriteBarrier?: unknown };
  Object.defineProperties(replicated, {
    flush: { value: () => s.flush() },
    status: { value: () => s.status() },
    metrics: { value: () => metrics!.text() },
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
        const status = s.status();
        rawClose();
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
 * A database restored from this replica has an empty WAL and a file whose checksum equals the
 * replica's tip. Then the file is that txid, whatever its marker row says (it was written by the
 * original writer's last checkpoint before that txid).
 */
async function provenBase(path: string, lineage: Awaited<ReturnType<typeof readLineage>>, log: Logger): Promise<number | undefined> {
  const tip = lineage.tip;
  if (!tip || lineage.pageSize === null) return undefined;
  const { fileChecksumIfWalEmpty } = await import('./local.js');
  const sum = fileChecksumIfWalEmpty(path, lineage.pageSize);
  if (sum === null || sum.checksum !== tip.checksum) return undefined;
  log.info('local database file matches the replica tip', { txid: tip.txid });
  return tip.txid;
}
