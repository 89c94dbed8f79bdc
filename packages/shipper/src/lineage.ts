import { WalshipError } from '@walship/vfs';
import type { ObjectStorage } from '@walship/storage';
import {
  HEADER_SIZE,
  acceptable,
  decodeHeader,
  formatKeys,
  isFormatError,
  parseObjectKey,
  verifyMarker,
  type DatabaseManifest,
  type EpochMarker,
  type GenerationMarker,
  type Keyring,
  type ObjectHeader,
} from '@walship/format';

export { acceptable };

/** What a writer needs to know about the replica before it ships: found with LIST at start-up only. */
export interface Lineage {
  /** 32 hex digits, from database.json. */
  databaseId: string | null;
  pageSize: number | null;
  /** Latest generation that has a snapshot, or null. */
  generation: string | null;
  /** Highest epoch seen in any generation id or epoch marker (0 when the replica is empty). */
  maxEpoch: number;
  /** Epoch-start markers of `generation`: epoch -> first txid. */
  epochs: Map<number, number>;
  /** The last valid object of `generation`: where a continuing writer carries on. */
  tip: { txid: number; checksum: bigint; commitSize: number; key: string } | null;
  lastSnapshot: { txid: number; key: string } | null;
  /**
   * With a keyring: database.json and the epoch markers of `generation` carry MACs that verify.
   * False for a replica written before authenticated markers (or without keys): the writer then
   * rewrites database.json and starts a new generation, so everything restorable with keys is
   * authenticated. Without a keyring: false (nothing can be checked).
   */
  authenticated: boolean;
  /** database.json says every object is encrypted: a writer without keys must not ship here. */
  encrypted: boolean;
}

export type { DatabaseManifest, EpochMarker, GenerationMarker };

const decoder = new TextDecoder();

export async function getJson<T>(storage: ObjectStorage, key: string): Promise<T | null> {
  const bytes = await storage.get(key);
  if (bytes === null) return null;
  try {
    return JSON.parse(decoder.decode(bytes)) as T;
  } catch (e) {
    throw new WalshipError('ERR_CORRUPT_OBJECT', `${storage.location}: ${key} is not valid JSON; it was not written by walship or is damaged`, {
      cause: e,
      details: { key },
    });
  }
}

/**
 * Checks a marker's MAC when keys are given: true when it verifies, false when it has none (written
 * before authenticated markers). A MAC that does not verify is an attack or damage: the writer
 * refuses to go on (ERR_AUTHENTICATION_FAILED, ERR_UNKNOWN_KEY).
 */
function sealed(storage: ObjectStorage, prefix: string, key: string, marker: object | null, keyring: Keyring | undefined): boolean {
  if (!keyring || marker === null) return false;
  try {
    return verifyMarker(marker as Record<string, unknown>, { prefix, key, keyring }) === 'authenticated';
  } catch (e) {
    if (isFormatError(e, 'ERR_UNAUTHENTICATED')) return false;
    const code = isFormatError(e) ? e.code : 'ERR_AUTHENTICATION_FAILED';
    throw new WalshipError(code, `${storage.location}: ${(e as Error).message}. The writer will not ship over it: find out who wrote it`, { cause: e, details: { key } });
  }
}

/** Lists the replica once: generations (skip-scan, one LIST each), then the newest one's epochs, snapshots and tail. */
export async function readLineage(storage: ObjectStorage, prefix: string, options: { keyring?: Keyring | undefined } = {}): Promise<Lineage> {
  const keys = formatKeys(prefix);
  const keyring = options.keyring;
  const manifest = await getJson<DatabaseManifest>(storage, keys.database());
  const manifestSealed = sealed(storage, prefix, keys.database(), manifest, keyring);
  const lineage: Lineage = {
    databaseId: manifest?.databaseId ?? null,
    pageSize: manifest?.pageSize ?? null,
    generation: null,
    maxEpoch: 0,
    epochs: new Map(),
    tip: null,
    lastSnapshot: null,
    authenticated: false,
    encrypted: manifest?.encrypted === true,
  };
  const generations: string[] = [];
  let startAfter: string | undefined;
  for (;;) {
    let next: string | undefined;
    for await (const obj of storage.list({ prefix: keys.root(), pageSize: 1, ...(startAfter !== undefined ? { startAfter } : {}) })) {
      next = obj.key;
      break;
    }
    if (next === undefined) break;
    const parsed = parseObjectKey(prefix, next);
    if (parsed && 'generation' in parsed && parsed.generation) {
      generations.push(parsed.generation);
      // '0' sorts after '/', so this skips every key of the generation in one step.
      startAfter = `${keys.root()}${parsed.generation}0`;
      lineage.maxEpoch = Math.max(lineage.maxEpoch, parseInt(parsed.generation.slice(0, 8), 16));
    } else {
      startAfter = next;
    }
  }
  for (let i = generations.length - 1; i >= 0; i--) {
    const generation = generations[i]!;
    const epochs = new Map<number, number>();
    let epochsSealed = true;
    for await (const obj of storage.list({ prefix: keys.epochDir(generation) })) {
      const parsed = parseObjectKey(prefix, obj.key);
      if (parsed?.kind !== 'epoch') continue;
      const marker = await getJson<EpochMarker>(storage, obj.key);
      if (keyring && !sealed(storage, prefix, obj.key, marker, keyring)) epochsSealed = false;
      if (marker && Number.isSafeInteger(marker.startTxid)) epochs.set(parsed.epoch, marker.startTxid);
      lineage.maxEpoch = Math.max(lineage.maxEpoch, parsed.epoch);
    }
    let snapshot: { txid: number; epoch: number; key: string } | null = null;
    for await (const obj of storage.list({ prefix: keys.snapshotDir(generation) })) {
      const parsed = parseObjectKey(prefix, obj.key);
      if (parsed?.kind === 'snapshot' && acceptable(epochs, parsed.epoch, parsed.txid, parsed.txid)) snapshot = { txid: parsed.txid, epoch: parsed.epoch, key: obj.key };
    }
    if (!snapshot) continue; // a generation whose snapshot never landed: not restorable, skip it
    lineage.generation = generation;
    lineage.epochs = epochs;
    lineage.authenticated = manifestSealed && epochsSealed;
    lineage.lastSnapshot = { txid: snapshot.txid, key: snapshot.key };
    const snapHeader = await readHeader(storage, snapshot.key);
    checkDatabase(storage, lineage, snapHeader, snapshot.key);
    lineage.tip = { txid: snapHeader.maxTxid, checksum: snapHeader.postChecksum, commitSize: snapHeader.commitSize, key: snapshot.key };
    // database.json keeps the first page size; a later generation may have another.
    lineage.pageSize = snapHeader.pageSize;
    // A snapshot's txid always starts a segment, so the first one after the snapshot starts at its txid or later.
    const tail: { key: string; minTxid: number; epoch: number }[] = [];
    // '/' sorts after '.', so this starts right after every key of minTxid snapshot.txid - 1.
    const from = `${keys.levelDir(generation, 0)}${(snapshot.txid - 1).toString(16).padStart(16, '0')}/`;
    for await (const obj of storage.list({ prefix: keys.levelDir(generation, 0), ...(snapshot.txid > 0 ? { startAfter: from } : {}) })) {
      const parsed = parseObjectKey(prefix, obj.key);
      if (parsed?.kind === 'segment' && parsed.level === 0 && parsed.minTxid >= snapshot.txid) tail.push({ key: obj.key, minTxid: parsed.minTxid, epoch: parsed.epoch });
    }
    for (let j = tail.length - 1; j >= 0; j--) {
      const seg = tail[j]!;
      const header = await readHeader(storage, seg.key);
      if (!acceptable(epochs, header.epoch, header.minTxid, header.maxTxid)) continue;
      checkDatabase(storage, lineage, header, seg.key);
      if (header.maxTxid > lineage.tip.txid) lineage.tip = { txid: header.maxTxid, checksum: header.postChecksum, commitSize: header.commitSize, key: seg.key };
      break;
    }
    break;
  }
  return lineage;
}

async function readHeader(storage: ObjectStorage, key: string): Promise<ObjectHeader> {
  const bytes = await storage.get(key, { range: { start: 0, end: HEADER_SIZE - 1 } });
  if (bytes === null) {
    throw new WalshipError('ERR_OBJECT_MISSING', `${storage.location}: ${key} was listed but is gone; another process may be deleting objects under this prefix`, { details: { key } });
  }
  return decodeHeader(bytes, { name: key });
}

function checkDatabase(storage: ObjectStorage, lineage: Lineage, header: ObjectHeader, key: string): void {
  if (lineage.databaseId && header.databaseId !== lineage.databaseId) {
    throw new WalshipError(
      'ERR_FOREIGN_OBJECT',
      `${storage.location}: ${key} belongs to database ${header.databaseId}, not ${lineage.databaseId}; two databases share this prefix. Give each database its own s3.prefix`,
      { details: { key, found: header.databaseId, expected: lineage.databaseId } },
    );
  }
}
