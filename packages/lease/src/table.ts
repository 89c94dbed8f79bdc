/**
 * Operator helpers: create and check the lease table, and force a release. None of them runs
 * implicitly; acquire() reports a missing table instead of creating one.
 */

import { randomUUID } from 'node:crypto';
import { CreateTableCommand, GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { invalidOption, isLeaseError } from './errors.js';
import {
  EXPECTED_KEY_SCHEMA,
  buildClient,
  describeKeySchema,
  request,
  schemaError,
  schemaMatches,
  sleep,
  type KeySchemaEntry,
  type RequestContext,
} from './dynamo.js';
import { b, fromAttributes, keyOf, names, s, type LeaseItem } from './item.js';
import { validateConnection, validateKey, validateTable, type DynamoConnection } from './options.js';

export interface LeaseTableOptions extends DynamoConnection {
  table: string;
}

export interface LeaseTableInfo {
  table: string;
  /** ACTIVE, CREATING, ... as DynamoDB reports it. */
  status: string;
  keySchema: KeySchemaEntry[];
}

function context(o: LeaseTableOptions, key?: string): { ctx: RequestContext; close: () => void } {
  if (typeof o !== 'object' || o === null) throw invalidOption('options', 'must be an object', o);
  validateTable(o.table);
  validateConnection(o);
  const requestTimeoutMs = o.requestTimeoutMs ?? 2000;
  const { client, owned } = buildClient(o, requestTimeoutMs);
  const ctx: RequestContext = {
    client,
    table: o.table,
    clock: () => performance.now(),
    requestTimeoutMs,
    maxAttempts: 4,
    backoffBaseMs: 50,
    backoffMaxMs: 1000,
  };
  if (key !== undefined) ctx.key = key;
  return { ctx, close: () => owned && client.destroy() };
}

/**
 * DescribeTable and verify the key schema: ERR_LEASE_TABLE_MISSING (with the create command) or
 * ERR_LEASE_TABLE_SCHEMA (expected vs found). Needs dynamodb:DescribeTable.
 */
export async function checkLeaseTable(options: LeaseTableOptions): Promise<LeaseTableInfo> {
  const { ctx, close } = context(options);
  try {
    return await check(ctx);
  } finally {
    close();
  }
}

async function check(ctx: RequestContext): Promise<LeaseTableInfo> {
  const found = await describeKeySchema(ctx);
  if (!schemaMatches(found)) throw schemaError(ctx.table, found);
  return { table: ctx.table, status: found.status, keySchema: found.schema };
}

/**
 * CreateTable with key pk (S) HASH, on-demand billing; waits until ACTIVE. An existing table with
 * the right key schema is fine (created: false); one with another key is ERR_LEASE_TABLE_SCHEMA.
 * Needs dynamodb:CreateTable and DescribeTable.
 */
export async function createLeaseTable(options: LeaseTableOptions & { waitActiveMs?: number }): Promise<LeaseTableInfo & { created: boolean }> {
  const { ctx, close } = context(options);
  const waitActiveMs = options.waitActiveMs ?? 60_000;
  try {
    let created = false;
    try {
      await check(ctx);
    } catch (e) {
      if (!isLeaseError(e, 'ERR_LEASE_TABLE_MISSING')) throw e;
      created = await create(ctx);
    }
    const until = performance.now() + waitActiveMs;
    for (;;) {
      const info = await check(ctx);
      if (info.status === 'ACTIVE' || performance.now() >= until) return { ...info, created };
      await sleep(250);
    }
  } finally {
    close();
  }
}

async function create(ctx: RequestContext): Promise<boolean> {
  try {
    await request(ctx, 'CreateTable', (abortSignal) =>
      ctx.client.send(
        new CreateTableCommand({
          TableName: ctx.table,
          AttributeDefinitions: EXPECTED_KEY_SCHEMA.map((k) => ({ AttributeName: k.name, AttributeType: k.type as 'S' })),
          KeySchema: EXPECTED_KEY_SCHEMA.map((k) => ({ AttributeName: k.name, KeyType: k.keyType as 'HASH' })),
          BillingMode: 'PAY_PER_REQUEST',
        }),
        { abortSignal },
      ),
    );
    return true;
  } catch (e) {
    // Another operator created it between our check and our create; the re-check decides.
    if (isLeaseError(e) && e.details['storeCode'] === 'ResourceInUseException') return false;
    throw e;
  }
}

export interface ForceReleaseResult {
  /** The epoch stays: the next acquire takes epoch + 1. */
  epoch: number;
  /** The holder that was released (as its item described it). */
  owner: string;
  host: string;
  pid: number;
  /** It had been released already. */
  wasReleased: boolean;
}

/**
 * `walship lease release --force`: sets released=true whoever holds the lease, so the next
 * acquire() takes it at once. Never deletes the item, keeps the epoch; a holder that is still alive
 * fails its next renewal (LeaseLostError 'force-released') and is fenced by the new epoch.
 * Returns null when there is no item for the key.
 */
export async function forceRelease(options: LeaseTableOptions & { key: string }): Promise<ForceReleaseResult | null> {
  if (typeof options !== 'object' || options === null) throw invalidOption('options', 'must be an object', options);
  const key = validateKey(options.key);
  const { ctx, close } = context(options, key);
  try {
    const out = await request(ctx, 'UpdateItem(force release)', (abortSignal) =>
      ctx.client.send(
        new UpdateItemCommand({
          TableName: ctx.table,
          Key: keyOf(key),
          UpdateExpression: 'SET #released = :true, #rvn = :rvn, #updatedAt = :now',
          // Without it UpdateItem would create an item for a key that never had a lease.
          ConditionExpression: 'attribute_exists(#pk)',
          ExpressionAttributeNames: names('#released', '#rvn', '#updatedAt', '#pk'),
          ExpressionAttributeValues: { ':true': b(true), ':rvn': s(randomUUID()), ':now': s(new Date().toISOString()) },
          ReturnValues: 'ALL_OLD',
        }),
        { abortSignal },
      ),
    );
    if (!out.ok) return null;
    const before = fromAttributes(out.value.Attributes ?? {});
    return { epoch: before.epoch, owner: before.owner, host: before.host, pid: before.pid, wasReleased: before.released };
  } finally {
    close();
  }
}

/**
 * The lease item as it stands (consistent read), for `walship status`; null when the database
 * never had a lease. `updatedAt` is the holder's wall clock: shown to people, never used to decide.
 */
export async function readLease(options: LeaseTableOptions & { key: string }): Promise<LeaseItem | null> {
  if (typeof options !== 'object' || options === null) throw invalidOption('options', 'must be an object', options);
  const key = validateKey(options.key);
  const { ctx, close } = context(options, key);
  try {
    const out = await request(ctx, 'GetItem(status)', (abortSignal) =>
      ctx.client.send(new GetItemCommand({ TableName: ctx.table, Key: keyOf(key), ConsistentRead: true }), { abortSignal }),
    );
    if (!out.ok || !out.value.Item) return null;
    return fromAttributes(out.value.Item);
  } finally {
    close();
  }
}
