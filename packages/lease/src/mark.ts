/**
 * The durable high-water mark: the newest (generation, txid) the holder had in the object store,
 * kept on the lease item where someone with only bucket access cannot lower it. It rides on the
 * renewals and the release the holder sends anyway (no extra write on the commit path), so it may
 * lag the store by one heartbeat; it never claims more than the store held when it was written.
 */

import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { invalidOption } from './errors.js';

export interface DurableMark {
  /** 16 hex digits; generation ids sort by creation (epoch, then sequence). */
  generation: string;
  /** Highest txid of `generation` durable in the object store. */
  txid: number;
}

const GENERATION = /^[0-9a-f]{16}$/;

export function validateMark(mark: unknown): DurableMark {
  const m = mark as Partial<DurableMark> | null;
  if (typeof m !== 'object' || m === null) throw invalidOption('mark', 'must be { generation, txid }', mark);
  if (typeof m.generation !== 'string' || !GENERATION.test(m.generation)) throw invalidOption('mark.generation', 'must be 16 lowercase hex digits', m.generation);
  if (typeof m.txid !== 'number' || !Number.isSafeInteger(m.txid) || m.txid < 0) throw invalidOption('mark.txid', 'must be an integer >= 0', m.txid);
  return { generation: m.generation, txid: m.txid };
}

/** Negative when a is older than b: a later generation wins, then a higher txid. */
export function compareMarks(a: DurableMark, b: DurableMark): number {
  if (a.generation !== b.generation) return a.generation < b.generation ? -1 : 1;
  return a.txid - b.txid;
}

/** The mark as the item stores it (two attributes), or null when it has none or it is malformed. */
export function markFromAttributes(a: Record<string, AttributeValue>): DurableMark | null {
  const generation = a['durableGeneration']?.S;
  const txid = Number(a['durableTxid']?.N);
  if (generation === undefined || !GENERATION.test(generation) || !Number.isSafeInteger(txid) || txid < 0) return null;
  return { generation, txid };
}

/**
 * What a renewal or a release adds to its UpdateItem to record `mark`: a SET and a condition that
 * only lets the mark move forward (a later generation, or the same one at an equal or higher txid,
 * so a retried write of the same mark succeeds).
 */
export function markUpdate(mark: DurableMark): { set: string; condition: string; names: ('#durableGeneration' | '#durableTxid')[]; values: Record<string, AttributeValue> } {
  return {
    set: '#durableGeneration = :markGeneration, #durableTxid = :markTxid',
    condition: '(attribute_not_exists(#durableGeneration) OR #durableGeneration < :markGeneration OR (#durableGeneration = :markGeneration AND #durableTxid <= :markTxid))',
    names: ['#durableGeneration', '#durableTxid'],
    values: { ':markGeneration': { S: mark.generation }, ':markTxid': { N: String(mark.txid) } },
  };
}

/** The newest mark the holder reported, and the newest the item is known to hold. */
export class MarkKeeper {
  private pending: DurableMark | null = null;
  private known: DurableMark | null = null;

  record(mark: DurableMark): void {
    const m = validateMark(mark);
    if (this.pending === null || compareMarks(m, this.pending) > 0) this.pending = m;
  }

  /** The reported mark when it is ahead of what the item is known to hold, else null (nothing to write). */
  toWrite(): DurableMark | null {
    const p = this.pending;
    if (p === null || (this.known !== null && compareMarks(p, this.known) <= 0)) return null;
    return p;
  }

  written(mark: DurableMark): void {
    if (this.known === null || compareMarks(mark, this.known) > 0) this.known = mark;
  }

  /** A new grant: the item holds `mark`; nothing is reported yet. */
  reset(mark: DurableMark | null): void {
    this.known = mark;
    this.pending = null;
  }
}
