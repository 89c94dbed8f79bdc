import { invalidArgument } from './errors.js';

// Object keys under a database prefix P. Every number is fixed-width lowercase hex, so UTF-8 (S3
// LIST) order is numeric order, and a key walship did not write parses to null.
//
//   P/database.json
//   P/<generation>/generation.json
//   P/<generation>/epochs/<epoch>.json
//   P/<generation>/snapshots/<txid>.<epoch>.snap
//   P/<generation>/l0/<minTxid>.<epoch>.seg
//   P/<generation>/l<level>/<minTxid>-<maxTxid>.<epoch>.seg        level 1..255

export interface SnapshotKeyFields {
  generation: string;
  txid: number;
  epoch: number;
}

export interface SegmentKeyFields {
  generation: string;
  level: number;
  minTxid: number;
  /** Required for level >= 1; not part of a level-0 key (so the next one is predictable). */
  maxTxid?: number;
  epoch: number;
}

export type ObjectKey =
  | { kind: 'database' }
  | { kind: 'generation'; generation: string }
  | { kind: 'epoch'; generation: string; epoch: number }
  | ({ kind: 'snapshot' } & SnapshotKeyFields)
  | ({ kind: 'segment' } & SegmentKeyFields);

const GENERATION = /^[0-9a-f]{16}$/;

/** 16 hex digits of a txid (a safe integer >= 0). */
export function formatTxid(txid: number): string {
  if (!Number.isSafeInteger(txid) || txid < 0) throw invalidArgument(`txid ${txid} is not a safe integer >= 0`, { txid });
  return txid.toString(16).padStart(16, '0');
}

/** 8 hex digits of an epoch (u32). */
export function formatEpoch(epoch: number): string {
  if (!Number.isInteger(epoch) || epoch < 0 || epoch > 0xffffffff) throw invalidArgument(`epoch ${epoch} is not an integer in 0..4294967295`, { epoch });
  return epoch.toString(16).padStart(8, '0');
}

/** A generation id: the epoch that created it, then a sequence number, 8 hex digits each. */
export function formatGeneration(epoch: number, sequence: number): string {
  if (!Number.isInteger(sequence) || sequence < 0 || sequence > 0xffffffff) {
    throw invalidArgument(`generation sequence ${sequence} is not an integer in 0..4294967295`, { sequence });
  }
  return formatEpoch(epoch) + sequence.toString(16).padStart(8, '0');
}

export function parseGeneration(generation: string): { epoch: number; sequence: number } | null {
  if (!GENERATION.test(generation)) return null;
  return { epoch: Number.parseInt(generation.slice(0, 8), 16), sequence: Number.parseInt(generation.slice(8), 16) };
}

function checkPrefix(prefix: string): void {
  if (typeof prefix !== 'string' || prefix.endsWith('/') || prefix.startsWith('/')) {
    throw invalidArgument(`database prefix ${JSON.stringify(prefix)} must be a string without a leading or trailing slash ('' for the bucket root)`, { prefix });
  }
}

function checkGeneration(generation: string): void {
  if (typeof generation !== 'string' || !GENERATION.test(generation)) {
    throw invalidArgument(`generation ${JSON.stringify(generation)} is not 16 lowercase hex digits`, { generation });
  }
}

function checkLevel(level: number): void {
  if (!Number.isInteger(level) || level < 0 || level > 255) throw invalidArgument(`level ${level} is not an integer in 0..255`, { level });
}

function join(prefix: string, rest: string): string {
  checkPrefix(prefix);
  return prefix === '' ? rest : `${prefix}/${rest}`;
}

export function databaseKey(prefix: string): string {
  return join(prefix, 'database.json');
}

/** The folder of a generation, with a trailing slash: a LIST prefix. */
export function generationPrefix(prefix: string, generation: string): string {
  checkGeneration(generation);
  return join(prefix, `${generation}/`);
}

export function generationKey(prefix: string, generation: string): string {
  return `${generationPrefix(prefix, generation)}generation.json`;
}

export function epochKey(prefix: string, generation: string, epoch: number): string {
  return `${generationPrefix(prefix, generation)}epochs/${formatEpoch(epoch)}.json`;
}

export function snapshotsPrefix(prefix: string, generation: string): string {
  return `${generationPrefix(prefix, generation)}snapshots/`;
}

export function snapshotKey(prefix: string, fields: SnapshotKeyFields): string {
  return `${snapshotsPrefix(prefix, fields.generation)}${formatTxid(fields.txid)}.${formatEpoch(fields.epoch)}.snap`;
}

/** The folder of one level, with a trailing slash: a LIST prefix (use StartAfter to skip ahead). */
export function levelPrefix(prefix: string, generation: string, level: number): string {
  checkLevel(level);
  return `${generationPrefix(prefix, generation)}l${level}/`;
}

export function segmentKey(prefix: string, fields: SegmentKeyFields): string {
  const { generation, level, minTxid, maxTxid, epoch } = fields;
  const folder = levelPrefix(prefix, generation, level);
  // A level-0 key leaves maxTxid out (it is ignored here) so the next key is predictable.
  if (level === 0) return `${folder}${formatTxid(minTxid)}.${formatEpoch(epoch)}.seg`;
  const min = formatTxid(minTxid);
  if (maxTxid === undefined || maxTxid < minTxid) {
    throw invalidArgument(`a level-${level} segment key needs a max txid >= min txid ${minTxid}, got ${maxTxid}`, { minTxid, maxTxid });
  }
  return `${folder}${min}-${formatTxid(maxTxid)}.${formatEpoch(epoch)}.seg`;
}

const PATTERNS = {
  database: /^database\.json$/,
  generation: /^([0-9a-f]{16})\/generation\.json$/,
  epoch: /^([0-9a-f]{16})\/epochs\/([0-9a-f]{8})\.json$/,
  snapshot: /^([0-9a-f]{16})\/snapshots\/([0-9a-f]{16})\.([0-9a-f]{8})\.snap$/,
  l0: /^([0-9a-f]{16})\/l0\/([0-9a-f]{16})\.([0-9a-f]{8})\.seg$/,
  compacted: /^([0-9a-f]{16})\/l([1-9][0-9]{0,2})\/([0-9a-f]{16})-([0-9a-f]{16})\.([0-9a-f]{8})\.seg$/,
};

/** A hex txid as a number, or null beyond Number.MAX_SAFE_INTEGER (walship never writes those). */
function txidOf(hex: string): number | null {
  const value = BigInt(`0x${hex}`);
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : null;
}

/** What a key under `prefix` names, or null for keys walship does not write. */
export function parseObjectKey(prefix: string, key: string): ObjectKey | null {
  checkPrefix(prefix);
  if (typeof key !== 'string') return null;
  let rest: string;
  if (prefix === '') rest = key;
  else if (key.startsWith(`${prefix}/`)) rest = key.slice(prefix.length + 1);
  else return null;

  if (PATTERNS.database.test(rest)) return { kind: 'database' };
  let m = PATTERNS.generation.exec(rest);
  if (m) return { kind: 'generation', generation: m[1] as string };
  m = PATTERNS.epoch.exec(rest);
  if (m) return { kind: 'epoch', generation: m[1] as string, epoch: Number.parseInt(m[2] as string, 16) };
  m = PATTERNS.snapshot.exec(rest);
  if (m) {
    const txid = txidOf(m[2] as string);
    return txid === null ? null : { kind: 'snapshot', generation: m[1] as string, txid, epoch: Number.parseInt(m[3] as string, 16) };
  }
  m = PATTERNS.l0.exec(rest);
  if (m) {
    const minTxid = txidOf(m[2] as string);
    return minTxid === null ? null : { kind: 'segment', generation: m[1] as string, level: 0, minTxid, epoch: Number.parseInt(m[3] as string, 16) };
  }
  m = PATTERNS.compacted.exec(rest);
  if (m) {
    const level = Number(m[2]);
    const minTxid = txidOf(m[3] as string);
    const maxTxid = txidOf(m[4] as string);
    if (level > 255 || minTxid === null || maxTxid === null || maxTxid < minTxid) return null;
    return { kind: 'segment', generation: m[1] as string, level, minTxid, maxTxid, epoch: Number.parseInt(m[5] as string, 16) };
  }
  return null;
}

/** The key of any object: the inverse of parseObjectKey. */
export function formatObjectKey(prefix: string, key: ObjectKey): string {
  switch (key.kind) {
    case 'database':
      return databaseKey(prefix);
    case 'generation':
      return generationKey(prefix, key.generation);
    case 'epoch':
      return epochKey(prefix, key.generation, key.epoch);
    case 'snapshot':
      return snapshotKey(prefix, key);
    case 'segment':
      return segmentKey(prefix, key);
  }
}

/** The formatters bound to one database prefix (checked once, here). */
export interface KeyFormatter {
  readonly prefix: string;
  /** The prefix as a LIST prefix: '' or 'P/'. */
  root(): string;
  database(): string;
  generationDir(generation: string): string;
  generation(generation: string): string;
  epochDir(generation: string): string;
  epoch(generation: string, epoch: number): string;
  snapshotDir(generation: string): string;
  snapshot(fields: SnapshotKeyFields): string;
  levelDir(generation: string, level: number): string;
  segment(fields: SegmentKeyFields): string;
  parse(key: string): ObjectKey | null;
}

export function formatKeys(prefix: string): KeyFormatter {
  checkPrefix(prefix);
  return {
    prefix,
    root: () => (prefix === '' ? '' : `${prefix}/`),
    database: () => databaseKey(prefix),
    generationDir: (generation) => generationPrefix(prefix, generation),
    generation: (generation) => generationKey(prefix, generation),
    epochDir: (generation) => `${generationPrefix(prefix, generation)}epochs/`,
    epoch: (generation, epoch) => epochKey(prefix, generation, epoch),
    snapshotDir: (generation) => snapshotsPrefix(prefix, generation),
    snapshot: (fields) => snapshotKey(prefix, fields),
    levelDir: (generation, level) => levelPrefix(prefix, generation, level),
    segment: (fields) => segmentKey(prefix, fields),
    parse: (key) => parseObjectKey(prefix, key),
  };
}
