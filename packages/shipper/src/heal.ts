/**
 * The writer heals after a lease loss nobody else caused: its own deadline passed while DynamoDB
 * did not answer (or this process was paused). It retries `lease.reacquire()` in the background;
 * that write succeeds only if the item is still this owner's at the lost epoch, which proves no
 * other writer held an epoch since, so the transactions waiting in the WAL may ship under the new
 * epoch (after its epoch-start marker). Anything else (a takeover, a force release) ends it for
 * good with ERR_LEASE_LOST. See README "When the lease is lost".
 */

import { LeaseLostError, type GrantPath, type Lease, type LeaseGrant } from '@walship/lease';
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

/** What the coordinator lends the lease responder. */
export interface LeaseLossHooks {
  path: string;
  log: Logger;
  /** `starting` and `running` matter: a loss while opening waits for start-up to finish. */
  state(): 'starting' | 'running' | 'closing' | 'closed' | 'failed';
  stopped(): boolean;
  fatal(): boolean;
  txids(): { committedTxid: number; durableTxid: number };
  /** The VFS write barrier (null: writes accepted again). */
  refuseWrites(error: Error | null): void;
  rejectFlushes(error: Error): void;
  uploads: { pauseForLease(e: LeaseLostError): void; resumeAfterLease(): void; noteError(e: { code: string; message: string; at: string }): void };
  /** Resolves once the run and the snapshot started under the lost grant have ended. */
  idle(): Promise<unknown>;
  /** Later objects carry `epoch`; its start marker ships first. */
  newEpoch(epoch: number): void;
  resumeShipping(): void;
  /** Taken over or released by an operator: no more uploads, no more writes, for good. */
  stopForGood(e: LeaseLostError): void;
  reacquired(): void;
}

/**
 * The coordinator's side of a lease loss: leaseless (refuse writes and flushes with the retryable
 * ERR_LEASE_NOT_HELD, pause uploads, heal) or gone for good; and the new epoch once healed.
 */
export class LeaseResponder {
  private leaselessError: LeaseLostError | null = null;
  private lostWhileStarting: LeaseLostError | null = null;
  private gone = false;
  private readonly healer: LeaseHealer;
  how: GrantPath | null;

  constructor(
    private readonly lease: Lease,
    private readonly hooks: LeaseLossHooks,
    grantHow: GrantPath | null,
  ) {
    this.how = grantHow;
    this.healer = new LeaseHealer(lease, hooks.log.child({ component: 'lease' }), {
      resumed: (grant) => void this.resume(grant),
      lostForGood: (e) => this.stopForGood(e),
      attemptFailed: (e) => {
        const err = e as Error & { code?: string };
        hooks.uploads.noteError({ code: err.code ?? 'ERR_UNKNOWN', message: `lease re-acquire failed: ${err.message}`, at: new Date().toISOString() });
      },
    });
    lease.onLost((e) => this.lost(e));
  }

  get leaseless(): boolean {
    return this.leaselessError !== null;
  }

  get reacquired(): number {
    return this.healer.heals;
  }

  /** The error a flush() gets while leaseless. */
  notHeld(): WalshipError {
    return this.healer.notHeld({ path: this.hooks.path, ...this.hooks.txids() });
  }

  /** Start-up finished (state running): a loss seen while opening is handled now, before anything ships. */
  started(): void {
    if (this.lostWhileStarting) this.lost(this.lostWhileStarting);
  }

  stop(): void {
    this.healer.stop();
  }

  /**
   * The lease ran out. With nobody else's write seen (our own deadline passed: DynamoDB silent, or
   * this process paused), writes are refused while the healer re-acquires it; otherwise (taken
   * over, force-released) the writer stops for good.
   */
  private lost(e: LeaseLostError): void {
    const h = this.hooks;
    if (this.gone || h.fatal()) return;
    if (h.state() === 'starting') {
      this.lostWhileStarting = e;
      return;
    }
    if (healable(e) && !h.stopped() && h.state() === 'running') {
      // Also when a grant re-acquired a moment ago ran out again before resume() finished.
      this.healer.start(e);
      if (this.leaselessError) return;
      this.leaselessError = e;
      h.uploads.pauseForLease(e);
      const refused = this.notHeld();
      h.refuseWrites(refused);
      h.uploads.noteError({ code: refused.code, message: refused.message, at: new Date().toISOString() });
      h.rejectFlushes(refused);
      return;
    }
    this.stopForGood(e);
  }

  /**
   * Back under a new epoch, proven unchanged since ours: what ran under the lost grant ends first,
   * then the new epoch's start marker ships before any segment (at durableTxid + 1) and the
   * transactions committed before the loss follow under it.
   */
  private async resume(grant: LeaseGrant): Promise<void> {
    const h = this.hooks;
    // Renewed from now on: waiting for the old run below must not let the new grant run out.
    this.lease.startRenewing();
    await h.idle();
    // Stopped, taken over, or lost again meanwhile (the healer then calls resume() again).
    if (h.stopped() || h.fatal() || this.gone || this.healer.lost || this.lease.current()?.epoch !== grant.epoch) return;
    h.newEpoch(grant.epoch);
    this.how = grant.how;
    this.leaselessError = null;
    h.uploads.resumeAfterLease();
    h.refuseWrites(null);
    h.reacquired();
    h.log.info('replication resumes under a new epoch', { epoch: grant.epoch, ...h.txids() });
    h.resumeShipping();
  }

  private stopForGood(e: LeaseLostError): void {
    if (this.gone) return;
    this.gone = true;
    this.leaselessError = null;
    this.hooks.stopForGood(e);
  }
}
