import type { ObjectHeader } from '@walship/format';
import { checkInteger, resolveSource, validateSource, bad, type ReplicaSource } from './options.js';
import { planFromCatalog, type RestorePlan } from './plan.js';
import { HeaderReader, acceptable, mapLimit, scanReplica, type EpochInfo, type GenerationEntry, type ObjectEntry, type ReplicaCatalog } from './replica.js';
import { isBehind, readMark, replicaBehind, type HighWaterMark } from './mark.js';

export interface DescribeOptions extends ReplicaSource {
  /** Parallel header reads (default 8). */
  concurrency?: number;
  signal?: AbortSignal;
}

export interface ObjectDescription {
  key: string;
  kind: 'snapshot' | 'segment';
  level: number;
  epoch: number;
  minTxid: number;
  /** null when the header could not be read (see `error`). */
  maxTxid: number | null;
  size: number;
  lastModified: string | null;
  firstTimestamp: number | null;
  lastTimestamp: number | null;
  transactions: number | null;
  encrypted: boolean | null;
  /** Left out by the fencing rule: written by a writer outside its epoch's txid range. */
  fenced: boolean;
  error: { code: string; message: string } | null;
}

export interface GenerationDescription {
  id: string;
  epochs: EpochInfo[];
  snapshots: ObjectDescription[];
  segments: ObjectDescription[];
  bytes: number;
  /** What a latest restore of this generation reaches, or why it cannot. */
  restorable: { fromTxid: number; toTxid: number; fromTime: number; toTime: number; checksum: string } | null;
  problem: { code: string; message: string } | null;
}

export interface ReplicaDescription {
  location: string;
  databaseId: string | null;
  pageSize: number | null;
  createdAt: string | null;
  /** Oldest first. */
  generations: GenerationDescription[];
  objects: number;
  bytes: number;
  /** Keys under the prefix walship did not write. */
  strangers: string[];
  newest: { key: string; lastModified: string; ageMs: number } | null;
  /** The latest restorable state: what `walship restore` without a target produces. */
  latest: { generation: string; txid: number; timestamp: number; checksum: string } | null;
  /** With the `lease` option: the durable high-water mark its item records (null without one). */
  highWaterMark: HighWaterMark | null;
  /** ERR_REPLICA_BEHIND when `latest` does not reach the mark (objects were deleted), else null. */
  behind: { code: 'ERR_REPLICA_BEHIND'; message: string; details: Record<string, unknown> } | null;
}

function errorInfo(e: unknown): { code: string; message: string } {
  const err = e as { code?: unknown; message?: unknown };
  return { code: typeof err.code === 'string' ? err.code : 'ERR_UNKNOWN', message: typeof err.message === 'string' ? err.message : String(e) };
}

/**
 * Everything `walship ls` and `walship status` show: one LIST, the markers, every object's header
 * (ranged GETs) and, per generation, the chain a latest restore would follow.
 */
export async function describeReplica(options: DescribeOptions): Promise<ReplicaDescription> {
  validateSource(options);
  checkInteger('concurrency', options.concurrency, 1, 256);
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) bad('signal', 'must be an AbortSignal', typeof options.signal);
  const source = resolveSource(options);
  const concurrency = options.concurrency ?? 8;
  const signal = options.signal;
  try {
    const mark = await readMark(options);
    const catalog = await scanReplica(source.storage, source.prefix, { signal, concurrency, keyring: source.keyring, originalPrefix: source.originalPrefix });
    const headers = new HeaderReader(source.storage, catalog.manifest, signal);
    const all = catalog.generations.flatMap((g) => [...g.snapshots, ...g.segments]);
    const read = await mapLimit(
      all,
      concurrency,
      async (entry) => {
        try {
          return { header: await headers.header(entry), error: null };
        } catch (e) {
          return { header: null, error: errorInfo(e) };
        }
      },
      signal,
    );
    const byKey = new Map(all.map((e, i) => [e.key, read[i] as { header: ObjectHeader | null; error: { code: string; message: string } | null }]));
    const generations: GenerationDescription[] = [];
    let latest: ReplicaDescription['latest'] = null;
    for (const g of catalog.generations) {
      const describe = (entry: ObjectEntry): ObjectDescription => describeObject(g, entry, byKey.get(entry.key) ?? { header: null, error: null });
      let restorable: GenerationDescription['restorable'] = null;
      let problem: GenerationDescription['problem'] = null;
      try {
        const p: RestorePlan = await planFromCatalog(catalog, {
          storage: source.storage,
          keyring: source.keyring,
          stop: { kind: 'latest' },
          generation: g.id,
          concurrency,
          signal,
          headers,
        });
        const first = p.objects[0] as RestorePlan['objects'][number];
        const earliest = g.snapshots.find((s) => acceptable(g.epochs, s.epoch, s.minTxid, s.minTxid));
        const earliestHeader = earliest ? byKey.get(earliest.key)?.header : undefined;
        restorable = {
          fromTxid: earliest?.minTxid ?? first.minTxid,
          toTxid: p.txid,
          fromTime: earliestHeader?.lastTimestamp ?? first.header.lastTimestamp,
          toTime: p.timestamp,
          checksum: p.checksum.toString(16).padStart(16, '0'),
        };
        latest = { generation: g.id, txid: p.txid, timestamp: p.timestamp, checksum: restorable.checksum };
      } catch (e) {
        problem = errorInfo(e);
      }
      const snapshots = g.snapshots.map(describe);
      const segments = g.segments.map(describe);
      generations.push({
        id: g.id,
        epochs: [...g.epochs.values()].sort((a, b) => a.epoch - b.epoch),
        snapshots,
        segments,
        bytes: [...snapshots, ...segments].reduce((n, o) => n + o.size, 0),
        restorable,
        problem,
      });
    }
    const found = latest ? { generation: latest.generation, txid: latest.txid } : null;
    const behind = mark && isBehind(mark, found) ? replicaBehind(catalog.location, mark, found) : null;
    return {
      ...summarize(catalog, generations, latest, all),
      highWaterMark: mark,
      behind: behind ? { code: 'ERR_REPLICA_BEHIND', message: behind.message, details: { ...behind.details } } : null,
    };
  } finally {
    source.close();
  }
}

function describeObject(g: GenerationEntry, entry: ObjectEntry, read: { header: ObjectHeader | null; error: { code: string; message: string } | null }): ObjectDescription {
  const h = read.header;
  const maxTxid = h?.maxTxid ?? entry.keyMaxTxid ?? null;
  return {
    key: entry.key,
    kind: entry.kind,
    level: entry.level,
    epoch: entry.epoch,
    minTxid: entry.minTxid,
    maxTxid,
    size: entry.size,
    lastModified: entry.lastModified ? entry.lastModified.toISOString() : null,
    firstTimestamp: h?.firstTimestamp ?? null,
    lastTimestamp: h?.lastTimestamp ?? null,
    transactions: h?.transactionCount ?? null,
    encrypted: h ? h.keyId !== null : null,
    fenced: maxTxid === null ? false : !acceptable(g.epochs, entry.epoch, entry.minTxid, maxTxid),
    error: read.error,
  };
}

function summarize(
  catalog: ReplicaCatalog,
  generations: GenerationDescription[],
  latest: ReplicaDescription['latest'],
  all: ObjectEntry[],
): Omit<ReplicaDescription, 'highWaterMark' | 'behind'> {
  let newest: ObjectEntry | undefined;
  for (const e of all) if (e.lastModified && (!newest?.lastModified || e.lastModified > newest.lastModified)) newest = e;
  return {
    location: catalog.location,
    databaseId: catalog.manifest?.databaseId ?? null,
    pageSize: catalog.manifest?.pageSize ?? null,
    createdAt: catalog.manifest?.createdAt ?? null,
    generations,
    objects: all.length,
    bytes: all.reduce((n, e) => n + e.size, 0),
    strangers: catalog.strangers,
    newest: newest?.lastModified ? { key: newest.key, lastModified: newest.lastModified.toISOString(), ageMs: Math.max(0, Date.now() - newest.lastModified.getTime()) } : null,
    latest,
  };
}
