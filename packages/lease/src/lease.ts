/**
 * The writer lease over one DynamoDB item. Every time decision is made on the injected monotonic
 * clock of this process; the item carries no expiry time, only a random rvn per write that a
 * contender watches for leaseMs on its own clock. See README.md for the protocol and its reasoning.
 */

import { randomUUID } from 'node:crypto';
import { GetItemCommand, PutItemCommand, UpdateItemCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { LeaseError, LeaseHeldError, LeaseLostError, invalidOption, type LeaseLostDetails, type LeaseLostReason } from './errors.js';
import { buildClient, request, sleep, unref, type RequestContext } from './dynamo.js';
import { fromAttributes, grantCondition, lostReason, grantUpdate, holderWrite, keyOf, names, toAttributes, type GrantPath, type LeaseItem } from './item.js';
import { localHolderGone } from './local.js';
import { resolveLeaseOptions, validateMargin, validateWaitMs, type DynamoLeaseOptions, type ResolvedLeaseOptions } from './options.js';
import { MarkKeeper, type DurableMark } from './mark.js';
import { UploadGuards } from './guards.js';

export type LeaseState = 'idle' | 'held' | 'lost' | 'released';

/** What this process holds. Times are on the lease's monotonic clock (never a wall clock). */
export interface LeaseGrant {
  /** The fencing token: put it in every object key and header written under this grant. */
  readonly epoch: number;
  readonly owner: string;
  /** Start of the request that won the grant. */
  readonly acquiredAt: number;
  /** Start of the last successful write (grant or renewal) + leaseMs: after it, the lease is not ours. */
  readonly deadline: number;
  /** The durable high-water mark the item held when this grant was made (null: none recorded yet). */
  readonly durable: DurableMark | null;
  /** Which path made the grant (see README "Protocol"). */
  readonly how: GrantPath;
}

export interface AcquireOptions {
  /** How long to wait for a held lease before LeaseHeldError (default: the lease's waitMs, 3 * leaseMs). */
  waitMs?: number;
  /** Cancels the wait; acquire() then rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface Lease {
  readonly table: string;
  readonly key: string;
  readonly owner: string;
  readonly state: LeaseState;
  /** Takes the lease: new item (epoch 1), after a release (epoch + 1), or after the holder went silent. */
  acquire(options?: AcquireOptions): Promise<LeaseGrant>;
  /**
   * After a loss (state `lost`): a new epoch at once, if the item is still this owner's at the epoch
   * it lost and not released, proved by the conditional write (`grant.how === 'reacquire'`). Else
   * LeaseLostError (taken over, force-released): for good. DynamoDB errors (ERR_LEASE_UNAVAILABLE,
   * ERR_LEASE_THROTTLED) leave it lost: try again later.
   */
  reacquire(options?: { signal?: AbortSignal }): Promise<LeaseGrant>;
  /** Extends the deadline; LeaseLostError when someone else holds the epoch or the deadline passed. */
  renew(): Promise<LeaseGrant>;
  /** Marks the item released (never deletes it: the epoch must keep growing). */
  release(): Promise<void>;
  /**
   * What the holder has durable in the object store. No request: the next renewal (heartbeat) or the
   * release records it on the item, and only forward (a later generation, or a higher txid).
   */
  recordDurable(mark: DurableMark): void;
  /** The grant while held, else null. */
  current(): LeaseGrant | null;
  /** Called once per lost grant with the LeaseLostError. Returns an unsubscribe function. */
  onLost(listener: (error: LeaseLostError) => void): () => void;
  /** Background heartbeat (unref'd timers): renews every renewEveryMs until stopped, lost or released. */
  startRenewing(): void;
  stopRenewing(): void;
  /** True only while now < deadline - (requestTimeoutMs + marginMs): an upload started now ends in time. */
  canStartUpload(requestTimeoutMs: number, marginMs?: number): boolean;
  /** Aborts at deadline - marginMs (moved by renewals), on loss, and on release. */
  abortSignalForUpload(marginMs?: number): AbortSignal;
  /** Stops the heartbeat and closes a client the lease created. Does not release; the grant runs out at its deadline. */
  close(): void;
}

export function createDynamoLease(options: DynamoLeaseOptions): Lease {
  const o = resolveLeaseOptions(options);
  const { client, owned } = buildClient(options, o.requestTimeoutMs);
  return new DynamoLease(o, client, owned);
}

interface Watch {
  rvn: string;
  epoch: number;
  /** Clock reading when the response that first showed this (rvn, epoch) arrived. */
  since: number;
}

type Attempt = { grant: LeaseGrant } | { raced: true };

class DynamoLease implements Lease {
  readonly table: string;
  readonly key: string;
  readonly owner: string;
  private readonly o: ResolvedLeaseOptions;
  private readonly client: DynamoDBClient;
  private readonly ownsClient: boolean;
  private readonly ctx: RequestContext;
  private readonly pollMs: number;
  private stateValue: LeaseState = 'idle';
  private grant: LeaseGrant | null = null;
  private lostError: LeaseLostError | undefined;
  private acquiring = false;
  private renewing: { grant: LeaseGrant; promise: Promise<LeaseGrant> } | undefined;
  private heartbeat = false;
  /** Bumped by every start and stop, so a beat still awaiting an old renewal cannot start a second loop. */
  private heartbeatGeneration = 0;
  private heartbeatTimer: ReturnType<typeof setTimeout> | undefined;
  private expiryTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly uploads: UploadGuards;
  private readonly listeners = new Set<(error: LeaseLostError) => void>();
  private readonly marks = new MarkKeeper();

  constructor(o: ResolvedLeaseOptions, client: DynamoDBClient, ownsClient: boolean) {
    this.o = o;
    this.table = o.table;
    this.key = o.key;
    this.owner = o.owner;
    this.client = client;
    this.ownsClient = ownsClient;
    this.ctx = {
      client,
      table: o.table,
      key: o.key,
      clock: o.clock,
      requestTimeoutMs: o.requestTimeoutMs,
      maxAttempts: o.maxAttempts,
      backoffBaseMs: o.backoffBaseMs,
      backoffMaxMs: o.backoffMaxMs,
      log: o.log,
    };
    // A renewing holder changes the rvn every renewEveryMs; reading about as often notices a live
    // holder (restart the wait) or a release (take it at once) without waiting out a whole lease.
    this.pollMs = Math.max(10, Math.floor(Math.min(o.renewEveryMs, o.leaseMs / 4)));
    this.uploads = new UploadGuards(
      o.clock,
      () => this.grant?.deadline ?? null,
      () => new LeaseLostError(this.lostDetails(this.grant!, 'expiring', undefined)),
    );
  }

  get state(): LeaseState {
    return this.stateValue;
  }

  /** Read through a call so TypeScript does not keep a narrowing across an await. */
  private stateNow(): LeaseState {
    return this.stateValue;
  }

  current(): LeaseGrant | null {
    return this.stateValue === 'held' ? this.grant : null;
  }

  onLost(listener: (error: LeaseLostError) => void): () => void {
    if (typeof listener !== 'function') throw invalidOption('onLost', 'listener must be a function', listener);
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  // ---- acquire ------------------------------------------------------------------------------

  async acquire(options: AcquireOptions = {}): Promise<LeaseGrant> {
    if (typeof options !== 'object' || options === null) throw invalidOption('acquire options', 'must be an object', options);
    const waitMs = options.waitMs === undefined ? this.o.waitMs : validateWaitMs(options.waitMs);
    const signal = options.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidOption('signal', 'must be an AbortSignal', signal);
    if (this.stateValue === 'held') throw this.stateError(`acquire() while already holding epoch ${this.grant?.epoch}`);
    if (this.acquiring) throw this.stateError('acquire() while another acquire() is in progress');
    this.acquiring = true;
    try {
      return await this.acquireLoop(waitMs, signal);
    } finally {
      this.acquiring = false;
    }
  }

  private async acquireLoop(waitMs: number, signal: AbortSignal | undefined): Promise<LeaseGrant> {
    const { clock, marginMs } = this.o;
    const start = clock();
    const giveUpAt = start + waitMs;
    let watch: Watch | undefined;
    for (;;) {
      if (signal?.aborted) throw signal.reason;
      const item = await this.read('GetItem(acquire)', signal);
      let attempt: Attempt | undefined;
      if (item === undefined) {
        attempt = await this.tryCreate(signal);
      } else if (item.released) {
        attempt = await this.tryGrant(item, 'released', signal);
      } else if (this.holderGone(item)) {
        attempt = await this.tryGrant(item, 'dead-local-holder', signal);
      } else {
        const now = clock();
        // The holder stops believing in its lease after its own leaseMs, which may differ from ours
        // (another version or configuration): waiting for the longer one never cuts a holder short.
        const silentFor = Math.max(item.leaseMs, this.o.leaseMs) + marginMs;
        if (watch === undefined || watch.rvn !== item.rvn || watch.epoch !== item.epoch) {
          if (watch !== undefined) this.o.log('debug', 'holder wrote again: wait restarts', { holder: item.owner, epoch: item.epoch });
          watch = { rvn: item.rvn, epoch: item.epoch, since: now };
        } else if (now - watch.since >= silentFor) {
          attempt = await this.tryGrant(item, 'takeover', signal);
        }
        if (attempt === undefined) {
          if (now >= giveUpAt) {
            throw new LeaseHeldError({
              table: this.table,
              key: this.key,
              owner: item.owner,
              host: item.host,
              pid: item.pid,
              epoch: item.epoch,
              leaseMs: item.leaseMs,
              observedUnchangedMs: now - watch.since,
              waitedMs: now - start,
            });
          }
          const wakeAt = Math.min(watch.since + silentFor, now + this.pollMs, giveUpAt);
          await sleep(wakeAt - now, signal ? { signal } : {});
          continue;
        }
      }
      if ('grant' in attempt) return attempt.grant;
      // Someone else wrote between our read and our write: read again and start over.
      watch = undefined;
    }
  }

  private async tryCreate(signal: AbortSignal | undefined): Promise<Attempt> {
    const rvn = randomUUID();
    const item: Omit<LeaseItem, 'durable'> = {
      pk: this.key,
      owner: this.owner,
      epoch: 1,
      rvn,
      leaseMs: this.o.leaseMs,
      released: false,
      host: this.o.host,
      pid: this.o.pid,
      space: this.o.space,
      started: this.o.started,
      updatedAt: new Date().toISOString(),
    };
    const out = await request(
      this.ctx,
      'PutItem(acquire new)',
      (abortSignal) =>
        this.client.send(
          new PutItemCommand({
            TableName: this.table,
            Item: toAttributes(item),
            ConditionExpression: 'attribute_not_exists(#pk)',
            ExpressionAttributeNames: names('#pk'),
          }),
          { abortSignal },
        ),
      signal ? { signal } : {},
    );
    return this.settle(out, rvn, 1, 'new', signal, null);
  }

  /** A holder on this host whose process is gone (only with the processAlive option; see local.ts). */
  private holderGone(item: LeaseItem): boolean {
    if (this.o.processAlive === undefined) return false;
    const verdict = localHolderGone(item, this.o, this.o.processAlive);
    if (verdict.gone) this.o.log('info', 'the holder ran on this host and is gone: taking over without waiting', { holder: item.owner, epoch: item.epoch, pid: item.pid, why: verdict.why });
    return verdict.gone;
  }

  async reacquire(options: { signal?: AbortSignal } = {}): Promise<LeaseGrant> {
    if (typeof options !== 'object' || options === null) throw invalidOption('reacquire options', 'must be an object', options);
    const signal = options.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidOption('signal', 'must be an AbortSignal', signal);
    const last = this.grant;
    if (this.stateValue !== 'lost' || last === null) throw this.stateError(`reacquire() while ${this.stateValue}`);
    if (this.acquiring) throw this.stateError('reacquire() while another acquire() is in progress');
    this.acquiring = true;
    try {
      // A write of our own answered after the loss (a renewal) changes the rvn between our read and
      // our write: read again. Anyone else's write changes the owner or the epoch: lost for good.
      for (let i = 0; ; i++) {
        if (signal?.aborted) throw signal.reason;
        const item = await this.read('GetItem(reacquire)', signal);
        if (item === undefined || item.owner !== this.owner || item.epoch !== last.epoch || item.released || i >= 3) {
          const error = new LeaseLostError(this.lostDetails(last, lostReason(last.epoch, this.owner, item ?? null), item ?? null));
          this.lostError = error;
          throw error;
        }
        const attempt = await this.tryGrant(item, 'reacquire', signal);
        if ('grant' in attempt) return attempt.grant;
      }
    } finally {
      this.acquiring = false;
    }
  }

  private async tryGrant(seen: LeaseItem, how: Exclude<GrantPath, 'new'>, signal: AbortSignal | undefined): Promise<Attempt> {
    const rvn = randomUUID();
    const next = seen.epoch + 1;
    const update = grantUpdate({ owner: this.owner, epoch: next, rvn, leaseMs: this.o.leaseMs, host: this.o.host, pid: this.o.pid, space: this.o.space, started: this.o.started });
    const condition = grantCondition(how, seen, this.owner);
    const out = await request(
      this.ctx,
      `UpdateItem(${how === 'released' ? 'acquire released' : how})`,
      (abortSignal) =>
        this.client.send(
          new UpdateItemCommand({
            TableName: this.table,
            Key: keyOf(this.key),
            UpdateExpression: update.UpdateExpression,
            ConditionExpression: condition.expr,
            ExpressionAttributeNames: names(...update.names),
            ExpressionAttributeValues: { ...update.values, ...condition.values },
          }),
          { abortSignal },
        ),
      signal ? { signal } : {},
    );
    const attempt = await this.settle(out, rvn, next, how, signal, seen.durable);
    if ('grant' in attempt && (how === 'takeover' || how === 'dead-local-holder')) {
      this.o.log('warn', how === 'takeover' ? 'lease taken over from a silent holder' : 'lease taken over from a dead holder on this host', {
        epoch: next,
        previousOwner: seen.owner,
        previousHost: seen.host,
        previousPid: seen.pid,
      });
    }
    return attempt;
  }

  /**
   * Turns a conditional write's outcome into a grant. When an earlier attempt timed out, the
   * condition failure may be our own write seen again: the rvn (ours alone) tells.
   */
  private async settle(
    out: Awaited<ReturnType<typeof request>>,
    rvn: string,
    epoch: number,
    how: GrantPath,
    signal: AbortSignal | undefined,
    durable: DurableMark | null,
  ): Promise<Attempt> {
    if (!out.ok) {
      if (!out.ambiguous) return { raced: true };
      const now = await this.read('GetItem(verify)', signal);
      if (now === undefined || now.rvn !== rvn || now.owner !== this.owner) return { raced: true };
    }
    // The conditional write saw the item unchanged since the read (same rvn, or released at the same
    // epoch, which no renewal can touch), so the mark read with it is the item's mark.
    const grant: LeaseGrant = Object.freeze({ epoch, owner: this.owner, acquiredAt: out.firstStart, deadline: out.firstStart + this.o.leaseMs, durable, how });
    this.grant = grant;
    this.marks.reset(durable);
    this.lostError = undefined;
    this.stateValue = 'held';
    this.armExpiry();
    this.o.log('info', 'lease acquired', { epoch, how, attempts: out.attempts });
    return { grant };
  }

  private async read(operation: string, signal: AbortSignal | undefined): Promise<LeaseItem | undefined> {
    const out = await request(
      this.ctx,
      operation,
      (abortSignal) => this.client.send(new GetItemCommand({ TableName: this.table, Key: keyOf(this.key), ConsistentRead: true }), { abortSignal }),
      signal ? { signal } : {},
    );
    if (!out.ok) throw new Error('GetItem has no condition');
    return out.value.Item ? fromAttributes(out.value.Item) : undefined;
  }

  // ---- renew --------------------------------------------------------------------------------

  renew(): Promise<LeaseGrant> {
    return this.renewShared(true);
  }

  /** One renewal at a time per grant: the heartbeat and a caller's renew() share it. */
  private renewShared(ref: boolean): Promise<LeaseGrant> {
    const g = this.grant;
    if (this.renewing && this.renewing.grant === g) return this.renewing.promise;
    const promise = this.renewOnce(ref);
    if (g === null) return promise;
    const entry = { grant: g, promise };
    this.renewing = entry;
    const clear = () => {
      if (this.renewing === entry) this.renewing = undefined;
    };
    promise.then(clear, clear);
    return promise;
  }

  private async renewOnce(ref: boolean): Promise<LeaseGrant> {
    const g = this.grant;
    if (this.stateValue === 'lost' && this.lostError) throw this.lostError;
    if (this.stateValue !== 'held' || g === null) throw this.stateError(`renew() while ${this.stateValue}`);
    if (this.o.clock() >= g.deadline) throw this.lose(g, 'expired');
    const rvn = randomUUID();
    const mark = this.marks.toWrite();
    let out;
    try {
      out = await request(
        this.ctx,
        'UpdateItem(renew)',
        (abortSignal) =>
          this.client.send(new UpdateItemCommand(holderWrite('renew', { table: this.table, key: this.key, owner: this.owner, epoch: g.epoch, rvn, mark })), { abortSignal }),
        // Transient failures are worth retrying only while the lease can still be saved.
        { until: g.deadline, ref },
      );
    } catch (e) {
      if (this.grant === g && this.o.clock() >= g.deadline) throw this.lose(g, 'expired', undefined, e);
      if (this.grant === g && this.stateNow() === 'lost' && this.lostError) throw this.lostError;
      throw e;
    }
    if (this.grant !== g || this.stateNow() !== 'held') {
      if (this.stateNow() === 'lost' && this.lostError) throw this.lostError;
      throw this.stateError(`the lease was ${this.stateValue} while renew() ran`);
    }
    if (!out.ok) {
      const current = await this.peek();
      if (mark && this.markRefused(g, mark, current, { released: false })) return this.renewOnce(ref);
      throw this.lose(g, lostReason(g.epoch, this.owner, current), current);
    }
    if (mark) this.marks.written(mark);
    // One rvn for all attempts, so the deadline counts from the first: a contender may have seen
    // that rvn from the first attempt's write and started its wait then.
    const deadline = out.firstStart + this.o.leaseMs;
    if (deadline > g.deadline) {
      this.grant = Object.freeze({ ...g, deadline });
      this.armExpiry();
      this.uploads.rearm();
    }
    this.o.log('debug', 'lease renewed', { epoch: g.epoch, attempts: out.attempts });
    return this.grant;
  }

  recordDurable(mark: DurableMark): void {
    this.marks.record(mark);
  }

  /**
   * A write carrying a mark failed its condition while the item is still this grant's: the item
   * holds a later mark than this holder reports (the store lost objects since that mark was
   * written, or the item was edited). The mark is never lowered; the write goes again without it.
   */
  private markRefused(g: LeaseGrant, mark: DurableMark, current: LeaseItem | null | undefined, want: { released?: boolean }): boolean {
    if (!current || current.owner !== this.owner || current.epoch !== g.epoch) return false;
    if (want.released !== undefined && current.released !== want.released) return false;
    this.marks.written(mark);
    this.o.log('error', 'the lease item records a later durable mark than this writer has; it is kept, not lowered', { epoch: g.epoch, itemMark: current.durable, reported: mark });
    return true;
  }

  /** The item after a failed condition, to say why the lease is gone; undefined when it cannot be read. */
  private async peek(): Promise<LeaseItem | null | undefined> {
    try {
      return (await this.read('GetItem(after condition failure)', undefined)) ?? null;
    } catch {
      return undefined;
    }
  }

  // ---- release ------------------------------------------------------------------------------

  async release(): Promise<void> {
    const g = this.grant;
    if (this.stateValue !== 'held' || g === null) return;
    this.stopRenewing();
    this.stateValue = 'released';
    this.clearExpiry();
    this.uploads.abortAll(new LeaseError('ERR_LEASE_STATE', `lease ${this.key} epoch ${g.epoch} was released`, { key: this.key, epoch: g.epoch, state: 'released' }));
    let out = await this.sendRelease(g, this.marks.toWrite());
    if (!out.ok && out.mark) {
      const current = await this.peek();
      if (this.markRefused(g, out.mark, current, {})) out = await this.sendRelease(g, null);
    }
    if (!out.ok && out.ambiguous) {
      // An earlier attempt may have released it and a contender taken it at once: not a loss we
      // can prove, and the epoch fences whatever this process wrote either way.
      this.o.log('warn', 'lease release: the answer was lost and the item has moved on', { epoch: g.epoch });
      return;
    }
    if (!out.ok) {
      const current = await this.peek();
      throw this.lose(g, lostReason(g.epoch, this.owner, current), current);
    }
    this.o.log('info', 'lease released', { epoch: g.epoch });
  }

  /** The release write; with a mark, the holder's last durable position goes with it. */
  private async sendRelease(g: LeaseGrant, mark: DurableMark | null): Promise<Awaited<ReturnType<typeof request>> & { mark: DurableMark | null }> {
    const input = holderWrite('release', { table: this.table, key: this.key, owner: this.owner, epoch: g.epoch, rvn: randomUUID(), mark });
    const out = await request(this.ctx, 'UpdateItem(release)', (abortSignal) => this.client.send(new UpdateItemCommand(input), { abortSignal }));
    if (out.ok && mark) this.marks.written(mark);
    return { ...out, mark };
  }

  // ---- loss and timers ----------------------------------------------------------------------

  /** Marks grant g lost (once), stops everything that depends on it and tells the listeners. */
  private lose(g: LeaseGrant, reason: LeaseLostReason, current?: LeaseItem | null, cause?: unknown): LeaseLostError {
    if (this.grant !== g || this.stateValue === 'lost') return this.lostError ?? new LeaseLostError(this.lostDetails(g, reason, current), { cause });
    const error = new LeaseLostError(this.lostDetails(g, reason, current), cause === undefined ? {} : { cause });
    this.stateValue = 'lost';
    this.lostError = error;
    this.stopRenewing();
    this.clearExpiry();
    this.uploads.abortAll(error);
    this.o.log('warn', 'lease lost', { epoch: g.epoch, reason, holder: current?.owner, holderEpoch: current?.epoch });
    for (const listener of [...this.listeners]) {
      try {
        listener(error);
      } catch (e) {
        this.o.log('error', 'onLost listener threw', { error: String(e) });
      }
    }
    return error;
  }

  private lostDetails(g: LeaseGrant, reason: LeaseLostReason, current: LeaseItem | null | undefined): LeaseLostDetails {
    const d: LeaseLostDetails = { table: this.table, key: this.key, epoch: g.epoch, deadline: g.deadline, reason };
    if (current) d.current = { owner: current.owner, epoch: current.epoch, released: current.released, host: current.host, pid: current.pid };
    return d;
  }

  /** Declares the loss at the deadline itself, whether or not a renewal is still waiting on the network. */
  private armExpiry(): void {
    this.clearExpiry();
    const g = this.grant;
    if (g === null || this.stateValue !== 'held') return;
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = undefined;
      if (this.grant !== g || this.stateValue !== 'held') return;
      // Timers run on real time, decisions on the injected clock: re-check and re-arm if early.
      if (this.o.clock() >= g.deadline) this.lose(g, 'expired');
      else this.armExpiry();
    }, Math.max(0, g.deadline - this.o.clock()));
    unref(this.expiryTimer);
  }

  private clearExpiry(): void {
    if (this.expiryTimer !== undefined) clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
  }

  startRenewing(): void {
    if (this.stateValue !== 'held') throw this.stateError(`startRenewing() while ${this.stateValue}`);
    if (this.heartbeat) return;
    this.heartbeat = true;
    this.heartbeatGeneration++;
    // Counted from the last write, not from this call: a holder that starts renewing late (a slow
    // open after the grant) renews at once rather than after its deadline.
    const lastWrite = this.grant!.deadline - this.o.leaseMs;
    this.scheduleBeat(lastWrite + this.o.renewEveryMs - this.o.clock());
  }

  stopRenewing(): void {
    this.heartbeat = false;
    this.heartbeatGeneration++;
    if (this.heartbeatTimer !== undefined) clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
  }

  private scheduleBeat(delayMs: number): void {
    this.heartbeatTimer = setTimeout(() => void this.beat(), Math.max(0, delayMs));
    unref(this.heartbeatTimer);
  }

  private async beat(): Promise<void> {
    this.heartbeatTimer = undefined;
    if (!this.heartbeat || this.stateValue !== 'held') return;
    const generation = this.heartbeatGeneration;
    const started = this.o.clock();
    try {
      await this.renewShared(false);
    } catch (e) {
      if (e instanceof LeaseLostError) return;
      // Not a loss (yet): the next beat tries again, and the expiry timer ends it at the deadline.
      this.o.log('warn', 'lease renewal failed', { epoch: this.grant?.epoch, error: e instanceof Error ? e.message : String(e) });
    }
    if (generation === this.heartbeatGeneration && this.heartbeat && this.stateNow() === 'held') {
      this.scheduleBeat(this.o.renewEveryMs - (this.o.clock() - started));
    }
  }

  // ---- upload guards ------------------------------------------------------------------------

  canStartUpload(requestTimeoutMs: number, marginMs: number = this.o.marginMs): boolean {
    validateMargin('requestTimeoutMs', requestTimeoutMs);
    validateMargin('marginMs', marginMs);
    const g = this.grant;
    return this.stateValue === 'held' && g !== null && this.o.clock() < g.deadline - (requestTimeoutMs + marginMs);
  }

  abortSignalForUpload(marginMs: number = this.o.marginMs): AbortSignal {
    validateMargin('marginMs', marginMs);
    if (this.stateValue !== 'held' || this.grant === null) {
      const controller = new AbortController();
      controller.abort(this.lostError ?? this.stateError(`the lease is ${this.stateValue}`));
      return controller.signal;
    }
    return this.uploads.add(marginMs);
  }

  close(): void {
    this.stopRenewing();
    if (this.ownsClient) this.client.destroy();
  }

  private stateError(message: string): LeaseError {
    return new LeaseError('ERR_LEASE_STATE', `lease ${this.key}: ${message}`, { key: this.key, state: this.stateValue, epoch: this.grant?.epoch });
  }
}
