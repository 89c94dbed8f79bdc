import { Buffer } from 'node:buffer';
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { FormatError } from './errors.js';
import { GCM_TAG_SIZE, NONCE_PREFIX_SIZE, SALT_SIZE, isValidKeyId } from './format.js';

export interface KeyringKey {
  /** 1..32 printable ASCII characters, no spaces; stored in every object header it encrypts. */
  id: string;
  /** 32 bytes, or their standard base64 (44 characters). */
  key: Uint8Array | string;
}

export interface KeyringInit {
  keys: KeyringKey[];
  /** Id of the key that encrypts new objects; the first key by default. */
  primary?: string;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * AES-256 keys by id. The primary key encrypts; every key decrypts, chosen by the key id in the
 * object header, so a key can be rotated by adding a new primary and keeping the old key for as long
 * as objects encrypted with it are retained.
 */
export class Keyring {
  readonly primary: string;
  readonly #keys = new Map<string, Uint8Array>();

  constructor(init: KeyringInit) {
    if (!init || !Array.isArray(init.keys) || init.keys.length === 0) {
      throw new FormatError('ERR_BAD_KEY', 'a keyring needs at least one key: { keys: [{ id, key }] }');
    }
    for (const [index, entry] of init.keys.entries()) {
      const id: unknown = entry?.id;
      if (!isValidKeyId(id)) {
        // Never quoted: an id that is not an id may be a key pasted into the wrong field.
        const length = typeof id === 'string' ? id.length : undefined;
        throw new FormatError(
          'ERR_BAD_KEY',
          `keys[${index}].id is not 1..32 printable ASCII characters without spaces (${length === undefined ? `a ${typeof id}` : `${length} characters`})`,
          { index, ...(length === undefined ? { type: typeof id } : { length }) },
        );
      }
      if (this.#keys.has(id)) throw new FormatError('ERR_BAD_KEY', `key id '${id}' appears twice in the keyring; give each key its own id`, { id });
      this.#keys.set(id, keyBytes(id, entry.key));
    }
    const primary = init.primary ?? (init.keys[0] as KeyringKey).id;
    if (!this.#keys.has(primary)) {
      // Quoted only when it could be an id; anything else may be key material in the wrong field.
      const given: unknown = primary;
      const shown = isValidKeyId(given) ? `'${given}'` : `(${typeof given === 'string' ? `${given.length} characters` : `a ${typeof given}`}, not a key id)`;
      throw new FormatError('ERR_BAD_KEY', `primary key id ${shown} is not in the keyring (ids: ${this.ids().join(', ')})`, isValidKeyId(primary) ? { id: primary } : {});
    }
    this.primary = primary;
    KEYS.set(this, this.#keys);
  }

  has(id: string): boolean {
    return this.#keys.has(id);
  }

  ids(): string[] {
    return [...this.#keys.keys()];
  }
}

// Key bytes live only here and in the private field, so they never show up in logs, inspection or
// JSON, and only this package (whose exports do not include this module) can use them.
const KEYS = new WeakMap<Keyring, Map<string, Uint8Array>>();

/** The key of one object sealed under key `id` of the keyring, or undefined if the id is unknown. */
export function deriveObjectKey(keyring: Keyring, id: string, salt: Uint8Array): Uint8Array | undefined {
  const key = KEYS.get(keyring)?.get(id);
  return key === undefined ? undefined : objectKey(key, salt);
}

function keyBytes(id: string, key: unknown): Uint8Array {
  let bytes: Uint8Array;
  if (key instanceof Uint8Array) {
    bytes = new Uint8Array(key);
  } else if (typeof key === 'string') {
    if (!BASE64.test(key) || key.length % 4 !== 0) {
      throw new FormatError('ERR_BAD_KEY', `key '${id}' is a string but not standard base64 (${key.length} characters); pass 32 bytes or their base64`, {
        id,
      });
    }
    bytes = new Uint8Array(Buffer.from(key, 'base64'));
  } else {
    throw new FormatError('ERR_BAD_KEY', `key '${id}' is a ${typeof key}; pass a Uint8Array of 32 bytes or their base64`, { id });
  }
  if (bytes.length !== 32) {
    throw new FormatError('ERR_BAD_KEY', `key '${id}' has ${bytes.length} bytes; AES-256 needs exactly 32`, { id, length: bytes.length });
  }
  return bytes;
}

const HKDF_INFO = new TextEncoder().encode('walship format v1 chunk key');
const MARKER_INFO = new TextEncoder().encode('walship marker mac v1');
const MAC_KEYS = new WeakMap<Uint8Array, Uint8Array>();

/**
 * HMAC-SHA256 of `data` under the marker key of key `id` (HKDF of the key with its own label, so
 * the MAC key never equals an object key), or undefined if the id is unknown.
 */
export function markerMac(keyring: Keyring, id: string, data: Uint8Array): Uint8Array | undefined {
  const key = KEYS.get(keyring)?.get(id);
  if (key === undefined) return undefined;
  let macKey = MAC_KEYS.get(key);
  if (macKey === undefined) {
    macKey = new Uint8Array(hkdfSync('sha256', key, new Uint8Array(0), MARKER_INFO, 32));
    MAC_KEYS.set(key, macKey);
  }
  return new Uint8Array(createHmac('sha256', macKey).update(data).digest());
}

/** Constant-time comparison of two MACs. */
export function sameMac(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Every object is sealed under its own key, HKDF-SHA256(key, salt = 16 random header bytes). GCM
 * fails catastrophically when a (key, nonce) pair repeats; a writer shipping one object a second
 * for years under one key would make random 8-byte nonce prefixes collide with non-negligible
 * probability, while 128-bit salts do not.
 */
export function objectKey(key: Uint8Array, salt: Uint8Array): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', key, salt, HKDF_INFO, 32));
}

export function randomSalt(): Uint8Array {
  return new Uint8Array(randomBytes(SALT_SIZE));
}

export function randomNoncePrefix(): Uint8Array {
  return new Uint8Array(randomBytes(NONCE_PREFIX_SIZE));
}

/** nonce = nonce prefix (8 bytes) || be32(chunk index): unique per chunk within an object. */
function chunkNonce(prefix: Uint8Array, index: number): Uint8Array {
  const nonce = new Uint8Array(NONCE_PREFIX_SIZE + 4);
  nonce.set(prefix);
  new DataView(nonce.buffer).setUint32(NONCE_PREFIX_SIZE, index);
  return nonce;
}

/** AES-256-GCM: returns ciphertext || 16-byte tag. */
export function seal(key: Uint8Array, noncePrefix: Uint8Array, index: number, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const cipher = createCipheriv('aes-256-gcm', key, chunkNonce(noncePrefix, index));
  cipher.setAAD(aad);
  const head = cipher.update(plaintext);
  const tail = cipher.final();
  const out = new Uint8Array(head.length + tail.length + GCM_TAG_SIZE);
  out.set(head);
  out.set(tail, head.length);
  out.set(cipher.getAuthTag(), head.length + tail.length);
  return out;
}

/** Opens what seal produced; throws node:crypto's error when authentication fails. */
export function open(key: Uint8Array, noncePrefix: Uint8Array, index: number, aad: Uint8Array, sealed: Uint8Array): Uint8Array {
  if (sealed.length < GCM_TAG_SIZE) throw new Error(`${sealed.length} bytes cannot hold a ${GCM_TAG_SIZE}-byte GCM tag`);
  const decipher = createDecipheriv('aes-256-gcm', key, chunkNonce(noncePrefix, index));
  decipher.setAAD(aad);
  decipher.setAuthTag(sealed.subarray(sealed.length - GCM_TAG_SIZE));
  const head = decipher.update(sealed.subarray(0, sealed.length - GCM_TAG_SIZE));
  const tail = decipher.final();
  if (tail.length === 0) return new Uint8Array(head.buffer, head.byteOffset, head.length);
  const out = new Uint8Array(head.length + tail.length);
  out.set(head);
  out.set(tail, head.length);
  return out;
}
