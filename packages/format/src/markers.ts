import { Buffer } from 'node:buffer';
import { Keyring, markerMac, sameMac } from './crypto.js';
import { FormatError, invalidArgument } from './errors.js';

// The JSON markers beside the objects (database.json, generation.json, epochs/<e>.json) carry no
// secrets, but they decide what restore trusts: database.json pins the database id (objects of
// another database are refused), epoch markers fence writers. An attacker who can write to the
// bucket could otherwise copy another database's manifest over this one, or move epoch starts.
// With a keyring, the writer MACs each marker under a key derived from the primary key, binding
// the replica prefix and the marker's own key; readers given keys refuse markers without a MAC.

/** P/database.json */
export interface DatabaseManifest {
  format: 1;
  databaseId: string;
  pageSize: number;
  createdAt: string;
  /** Written by a writer with a keyring: every object of this replica is encrypted. */
  encrypted?: true;
  auth?: MarkerAuth;
}

/** P/<generation>/generation.json */
export interface GenerationMarker {
  format: 1;
  generation: string;
  databaseId: string;
  epoch: number;
  reason: string;
  parent: { generation: string; txid: number } | null;
  createdAt: string;
  auth?: MarkerAuth;
}

/** P/<generation>/epochs/<epoch>.json */
export interface EpochMarker {
  format: 1;
  epoch: number;
  generation: string;
  startTxid: number;
  createdAt: string;
  writer: { host: string; pid: number };
  auth?: MarkerAuth;
}

/** The MAC of a marker: HMAC-SHA256 under the marker key of `keyId`, base64. */
export interface MarkerAuth {
  keyId: string;
  mac: string;
}

export interface MarkerContext {
  /** The replica prefix the marker lives under ('' for the bucket root). */
  prefix: string;
  /** The marker's full object key (under `prefix`). */
  key: string;
}

export interface VerifyMarkerOptions extends MarkerContext {
  /** Without keys nothing can be checked: the result is 'unchecked'. */
  keyring?: Keyring | undefined;
  /** The prefix the replica was written under, when it was copied to `prefix` since. */
  originalPrefix?: string | undefined;
}

const encoder = new TextEncoder();

function macInput(prefix: string, key: string, body: object, macPrefix: string): Uint8Array {
  const root = prefix === '' ? '' : `${prefix}/`;
  if (!key.startsWith(root)) throw invalidArgument(`marker key ${JSON.stringify(key)} is not under prefix ${JSON.stringify(prefix)}`, { key, prefix });
  return encoder.encode(`walship marker v1\n${macPrefix}\n${key.slice(root.length)}\n${JSON.stringify(body)}`);
}

/** The marker with its `auth` field: a MAC under the keyring's primary key. */
export function sealMarker<T extends object>(body: T, ctx: MarkerContext & { keyring: Keyring }): T & { auth: MarkerAuth } {
  const { auth: _ignored, ...rest } = body as T & { auth?: unknown };
  const keyId = ctx.keyring.primary;
  const mac = markerMac(ctx.keyring, keyId, macInput(ctx.prefix, ctx.key, rest, ctx.prefix)) as Uint8Array;
  return { ...(rest as T), auth: { keyId, mac: Buffer.from(mac).toString('base64') } };
}

/**
 * Checks a parsed marker's MAC when keys are given. 'authenticated': the MAC verifies under a key of
 * the keyring; 'unchecked': no keyring was given. Throws FormatError ERR_UNAUTHENTICATED (no MAC),
 * ERR_UNKNOWN_KEY (a key id the keyring lacks) or ERR_AUTHENTICATION_FAILED (a MAC that does not
 * verify: modified, planted, or copied from another prefix).
 */
export function verifyMarker(raw: Record<string, unknown>, options: VerifyMarkerOptions): 'authenticated' | 'unchecked' {
  const { keyring, key } = options;
  if (!keyring) return 'unchecked';
  const { auth, ...body } = raw;
  const a = typeof auth === 'object' && auth !== null ? (auth as Record<string, unknown>) : null;
  if (!a) {
    throw new FormatError(
      'ERR_UNAUTHENTICATED',
      `walship marker ${key}: keys were given but the marker carries no MAC. It was written by walship before authenticated markers (open the database once with the writer and its keys: it starts a new, authenticated generation), or it was planted by someone who can write to the bucket; do not restore from it with these keys`,
      { name: key },
    );
  }
  const keyId = a['keyId'];
  const mac = a['mac'];
  if (typeof keyId !== 'string' || typeof mac !== 'string') {
    throw new FormatError('ERR_AUTHENTICATION_FAILED', `walship marker ${key}: its auth field is malformed; the marker was modified or planted. Do not restore from it`, { name: key });
  }
  if (!keyring.has(keyId)) {
    throw new FormatError('ERR_UNKNOWN_KEY', `walship marker ${key}: it is authenticated with key id '${keyId}', which is not among the keys given (${keyring.ids().join(', ')}). Add that key`, {
      name: key,
      keyId,
      known: keyring.ids(),
    });
  }
  const expected = markerMac(keyring, keyId, macInput(options.prefix, key, body, options.originalPrefix ?? options.prefix)) as Uint8Array;
  if (!sameMac(expected, new Uint8Array(Buffer.from(mac, 'base64')))) {
    throw new FormatError(
      'ERR_AUTHENTICATION_FAILED',
      `walship marker ${key}: its MAC does not verify under key '${keyId}' for prefix '${options.originalPrefix ?? options.prefix}'. Either the key given as '${keyId}' is not the one the writer used (check the keys), or the marker was modified, planted, or copied from another database or prefix (a replica copied to a new prefix needs \`originalPrefix\`); do not restore from it`,
      { name: key, keyId, prefix: options.originalPrefix ?? options.prefix },
    );
  }
  return 'authenticated';
}
