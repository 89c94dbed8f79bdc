/**
 * The lease item: one per database key. Attribute names are aliased in every expression (`owner`
 * is a DynamoDB reserved word, and aliasing all of them keeps the expressions uniform).
 */

import type { AttributeValue, UpdateItemCommandInput } from '@aws-sdk/client-dynamodb';
import { KEY_ATTRIBUTE } from './dynamo.js';
import { markFromAttributes, markUpdate, type DurableMark } from './mark.js';

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
    updatedAt: str('updatedAt'),
    durable: markFromAttributes(a),
  };
}

/** SET clause for a new grant (takeover or acquire after release); the condition lives with the caller. */
export function grantUpdate(g: { owner: string; epoch: number; rvn: string; leaseMs: number; host: string; pid: number }): {
  UpdateExpression: string;
  names: AttrName[];
  values: Record<string, AttributeValue>;
} {
  return {
    UpdateExpression:
      'SET #owner = :owner, #epoch = :next, #rvn = :rvn, #leaseMs = :leaseMs, #released = :false, #host = :host, #pid = :pid, #updatedAt = :now',
    names: ['#owner', '#epoch', '#rvn', '#leaseMs', '#released', '#host', '#pid', '#updatedAt'],
    values: {
      ':owner': s(g.owner),
      ':next': n(g.epoch),
      ':rvn': s(g.rvn),
      ':leaseMs': n(g.leaseMs),
      ':false': b(false),
      ':host': s(g.host),
      ':pid': n(g.pid),
      ':now': s(new Date().toISOString()),
    },
  };
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
