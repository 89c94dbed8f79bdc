/**
 * The writer heals after a lease loss nobody else caused: its own deadline passed while DynamoDB
 * did not answer (or this process was paused). It retries `lease.reacquire()` in the background;
 * that write succeeds only if the item is still this owner's at the lost epoch, which proves no
 * other writer held an epoch since, so the transactions waiting in the WAL may ship under the new
 * epoch (after its epoch-start marker). Anything else (a takeover, a force release) ends it for
 * good with ERR_LEASE_LOST. See README "When the lease is lost".
 */

import { LeaseLostError, type Lease, type LeaseGrant } from '@walship/lease';
import { WalshipError } from '@walship/vfs';
import type { Logger } from './log.js';

export interface HealHooks {
  /** The lease is held again under `grant.epoch`: mark that epoch before any segment and resume. */
  resumed(grant: LeaseGrant, lost: LeaseLostError): void;
  /** Another writer took over, or an operator released the lease: stop for good. */
  lostForGood(error: LeaseLostError): void;
  /** One attempt failed (DynamoDB still unreachable or throttling): the next one follows. */
  attemptFailed(error: Error): void;
}

/**
 * Losses that may heal: the deadline passed with no answer (`expired`), or a failed condition whose
 * item could not be read (`condition-failed`). The re-acquire's own condition decides; a loss that
 * named another holder or a release never heals.
 */
export function healable(e: LeaseLostError): boolean {
  return e.details.reason === 'expired' || e.details.reason === 'condition-failed';
}

const FIRST_RETRY_MS = 100;
const MAX_RETRY_MS = 1000;

export class LeaseHealer {
  private lostError: LeaseLostError | null = null;
  private since = 0;
  private attempts = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  /** Re-acquires so far, for status. */
  heals = 0;

  constructor(
    private readonly lease: Lease,
    private readonly log: Logger,
    private readonly hooks: HealHooks,
  ) {}

  /** The loss being healed, or null. */
  get lost(): LeaseLostError | null {
    return this.lostError;
  }

  start(e: LeaseLostError): void {
    if (this.stopped || this.lostError) return;
    this.lostError = e;
    this.since = Date.now();
    this.attempts = 0;
    this.log.warn('lease lost without a takeover: writes are refused while it is re-acquired', { epoch: e.details.epoch, reason: e.details.reason });
    this.schedule(0);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** What a write or a flush gets while the lease is not held: retryable, with the txids at stake. */
  notHeld(at: { path: string; committedTxid: number; durableTxid: number }): WalshipError {
    const e = this.lostError;
    const epoch = e?.details.epoch ?? null;
    return new WalshipError(
      'ERR_LEASE_NOT_HELD',
      `${at.path}: the writer lease (epoch ${epoch}) ran out without an answer from DynamoDB (reason ${e?.details.reason ?? 'unknown'}); writes are refused until it is re-acquired under a new epoch, which is retried in the background. Retry later: transactions up to ${at.committedTxid} are committed, ${at.durableTxid} durable, and the rest ship once the lease is back unless another writer took over meanwhile`,
      {
        details: { retryable: true, epoch, reason: e?.details.reason ?? null, lostAt: new Date(this.since).toISOString(), attempts: this.attempts, committedTxid: at.committedTxid, durableTxid: at.durableTxid },
        ...(e ? { cause: e } : {}),
      },
    );
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.attempt(), ms);
    this.timer.unref?.();
  }

  private async attempt(): Promise<void> {
    this.timer = undefined;
    const lost = this.lostError;
    if (this.stopped || lost === null) return;
    this.attempts++;
    let grant: LeaseGrant;
    try {
      grant = await this.lease.reacquire();
    } catch (e) {
      if (this.stopped) return;
      if (e instanceof LeaseLostError) {
        this.lostError = null;
        this.log.error('the lease was taken over (or released by an operator) while it was lost: stopping for good', { epoch: lost.details.epoch, reason: e.details.reason, holder: e.details.current?.owner, holderEpoch: e.details.current?.epoch });
        this.hooks.lostForGood(e);
        return;
      }
      this.hooks.attemptFailed(e as Error);
      const wait = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.min(this.attempts, 10));
      this.log.debug('lease re-acquire failed; retrying', { attempt: this.attempts, code: (e as { code?: string }).code, retryInMs: wait });
      this.schedule(wait * (0.5 + Math.random() / 2));
      return;
    }
    this.lostError = null;
    this.heals++;
    if (this.stopped) {
      // Closed meanwhile: give the fresh grant back rather than leave it to run out.
      await this.lease.release().catch(() => undefined);
      return;
    }
    this.log.info('lease re-acquired: shipping resumes under a new epoch', { epoch: grant.epoch, lostEpoch: lost.details.epoch, attempts: this.attempts, leaselessMs: Date.now() - this.since });
    this.hooks.resumed(grant, lost);
  }
}
