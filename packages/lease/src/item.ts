/**
 * The lease item: one per database key. Attribute names are aliased in every expression (`owner`
 * is a DynamoDB reserved word, and aliasing all of them keeps the expressions uniform).
 */

import type { AttributeValue, UpdateItemCommandInput } from '@aws-sdk/client-dynamodb';
import { KEY_ATTRIBUTE } from './dynamo.js';
import { markFromAttributes, markUpdate, type DurableMark } from './mark.js';
import type { LeaseLostReason } from './errors.js';

export interface LeaseItem {
  pk: string;
  owner: string;
  /** The fencing token: grows by one with every grant, never reset, never reused. */
  epoch: number;
  /** Random UUID written by every write: proof of life that a contender watches. Not a fencing token. */
  rvn: string;
  leaseMs: number;
  released: boolean;
  host: string;
  pid: number;
  /** The holder's pid space and start time (see local.ts); empty when the holder could not tell, or wrote no such field. */
  space: string;
  started: string;
  /** Wall clock of the writer, for operators only; no decision reads it. */
  updatedAt: string;
  /** The durable high-water mark the holders recorded (attributes durableGeneration, durableTxid), or null. */
  durable: DurableMark | null;
}

export const NAMES = {
  '#pk': KEY_ATTRIBUTE,
  '#owner': 'owner',
  '#epoch': 'epoch',
  '#rvn': 'rvn',
  '#leaseMs': 'leaseMs',
  '#released': 'released',
  '#host': 'host',
  '#pid': 'pid',
  '#space': 'space',
  '#started': 'started',
  '#updatedAt': 'updatedAt',
  '#durableGeneration': 'durableGeneration',
  '#durableTxid': 'durableTxid',
} as const;

export type AttrName = keyof typeof NAMES;

/** Only the aliases an expression uses may be sent (DynamoDB rejects unused ones). */
export function names(...used: AttrName[]): Record<string, string> {
  return Object.fromEntries(used.map((n) => [n, NAMES[n]]));
}

export function keyOf(key: string): Record<string, AttributeValue> {
  return { [KEY_ATTRIBUTE]: { S: key } };
}

export function s(v: string): AttributeValue {
  return { S: v };
}

export function n(v: number): AttributeValue {
  return { N: String(v) };
}

export function b(v: boolean): AttributeValue {
  return { BOOL: v };
}

/** The attributes of a new item (the first grant has no mark yet). */
export function toAttributes(item: Omit<LeaseItem, 'durable'>): Record<string, AttributeValue> {
  return {
    [KEY_ATTRIBUTE]: s(item.pk),
    owner: s(item.owner),
    epoch: n(item.epoch),
    rvn: s(item.rvn),
    leaseMs: n(item.leaseMs),
    released: b(item.released),
    host: s(item.host),
    pid: n(item.pid),
    space: s(item.space),
    started: s(item.started),
    updatedAt: s(item.updatedAt),
  };
}

/** Parses what GetItem returned; a field of the wrong type reads as empty rather than throwing. */
export function fromAttributes(a: Record<string, AttributeValue>): LeaseItem {
  const str = (k: string) => a[k]?.S ?? '';
  const num = (k: string) => {
    const v = Number(a[k]?.N);
    return Number.isFinite(v) ? v : 0;
  };
  return {
    pk: str(KEY_ATTRIBUTE),
    owner: str('owner'),
    epoch: num('epoch'),
    rvn: str('rvn'),
    leaseMs: num('leaseMs'),
    released: a['released']?.BOOL === true,
    host: str('host'),
    pid: num('pid'),
    space: str('space'),
    started: str('started'),
    updatedAt: str('updatedAt'),
    durable: markFromAttributes(a),
  };
}

/** SET clause for a new grant (takeover or acquire after release); the condition lives with the caller. */
export function grantUpdate(g: { owner: string; epoch: number; rvn: string; leaseMs: number; host: string; pid: number; space: string; started: string }): {
  UpdateExpression: string;
  names: AttrName[];
  values: Record<string, AttributeValue>;
} {
  return {
    UpdateExpression:
      'SET #owner = :owner, #epoch = :next, #rvn = :rvn, #leaseMs = :leaseMs, #released = :false, #host = :host, #pid = :pid, #space = :space, #started = :started, #updatedAt = :now',
    names: ['#owner', '#epoch', '#rvn', '#leaseMs', '#released', '#host', '#pid', '#space', '#started', '#updatedAt'],
    values: {
      ':owner': s(g.owner),
      ':next': n(g.epoch),
      ':rvn': s(g.rvn),
      ':leaseMs': n(g.leaseMs),
      ':false': b(false),
      ':host': s(g.host),
      ':pid': n(g.pid),
      ':space': s(g.space),
      ':started': s(g.started),
      ':now': s(new Date().toISOString()),
    },
  };
}

/** How a grant was made; `takeover`, `dead-local-holder` and `reacquire` take an item that is not released. */
export type GrantPath = 'new' | 'released' | 'takeover' | 'dead-local-holder' | 'reacquire';

/**
 * The condition of a grant over an existing item: each proves the item is still what the decision
 * was made on, so a write between the read and this one makes it fail.
 * - released: still released at the epoch read (no renewal can touch a released item).
 * - takeover, dead-local-holder: unchanged since it was read (rvn and epoch).
 * - reacquire: still this owner's at the epoch it lost, not force-released, and unchanged since
 *   read: nobody granted an epoch in between, so nothing of ours was fenced and no one else shipped.
 */
export function grantCondition(how: Exclude<GrantPath, 'new'>, seen: LeaseItem, owner: string): { expr: string; values: Record<string, AttributeValue> } {
  switch (how) {
    case 'released':
      return { expr: '#released = :true AND #epoch = :seenEpoch', values: { ':true': b(true), ':seenEpoch': n(seen.epoch) } };
    case 'takeover':
    case 'dead-local-holder':
      return { expr: '#rvn = :seenRvn AND #epoch = :seenEpoch', values: { ':seenRvn': s(seen.rvn), ':seenEpoch': n(seen.epoch) } };
    case 'reacquire':
      return {
        expr: '#owner = :me AND #epoch = :seenEpoch AND #rvn = :seenRvn AND #released = :false',
        values: { ':me': s(owner), ':seenEpoch': n(seen.epoch), ':seenRvn': s(seen.rvn), ':false': b(false) },
      };
  }
}

/**
 * The holder's own writes. Renew: new rvn, condition owner, epoch and not released. Release:
 * released = true, condition owner and epoch. Either may carry the durable mark (see mark.ts), whose
 * condition only lets it move forward.
 */
export function holderWrite(
  kind: 'renew' | 'release',
  w: { table: string; key: string; owner: string; epoch: number; rvn: string; mark: DurableMark | null },
): UpdateItemCommandInput {
  const m = w.mark ? markUpdate(w.mark) : null;
  const set = kind === 'renew' ? 'SET #rvn = :rvn, #updatedAt = :now' : 'SET #released = :released, #rvn = :rvn, #updatedAt = :now';
  const condition = kind === 'renew' ? '#owner = :me AND #epoch = :epoch AND #released = :released' : '#owner = :me AND #epoch = :epoch';
  return {
    TableName: w.table,
    Key: keyOf(w.key),
    UpdateExpression: m ? `${set}, ${m.set}` : set,
    ConditionExpression: m ? `${condition} AND ${m.condition}` : condition,
    ExpressionAttributeNames: names('#rvn', '#updatedAt', '#owner', '#epoch', '#released', ...(m?.names ?? [])),
    ExpressionAttributeValues: {
      ':released': b(kind === 'release'),
      ':rvn': s(w.rvn),
      ':now': s(new Date().toISOString()),
      ':me': s(w.owner),
      ':epoch': n(w.epoch),
      ...m?.values,
    },
  };
}

/** Why a conditional holder write failed, from the item read after it (undefined: unreadable). */
export function lostReason(epoch: number, owner: string, current: LeaseItem | null | undefined): LeaseLostReason {
  if (current === undefined) return 'condition-failed';
  if (current === null) return 'item-missing';
  if (current.epoch !== epoch || current.owner !== owner) return 'taken-over';
  if (current.released) return 'force-released';
  return 'condition-failed';
}
