import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bad } from './options.js';
import { restore, type RestoreOptions, type RestoreResult } from './restore.js';
import { verifyScratchDir } from './scratch.js';

export interface VerifyOptions extends Omit<RestoreOptions, 'path' | 'overwrite' | 'integrityCheck'> {
  /** Directory for the scratch restore (default: the OS temp directory). A private directory is made in it and removed afterwards. */
  dir?: string;
}

export interface VerifyResult {
  ok: boolean;
  /** The restore that was checked (null when it failed before finishing). */
  result: RestoreResult | null;
  /** The checks a successful restore has passed. */
  checks: string[];
  error: { code: string; message: string; details: Record<string, unknown> } | null;
}

/** What a completed restore has proven, in the order it proves it. */
export const VERIFY_CHECKS: readonly string[] = [
  'every epoch marker and header agrees with its key and the database manifest',
  'fencing: only objects inside their epoch\u2019s txid range are used',
  'contiguous txid chain; each object\u2019s pre-apply checksum equals the previous post-apply checksum',
  'every object decoded completely: chunk checksums, decryption, trailer, index',
  'the rolling checksum after every applied transaction equals the one recorded for it',
  'the file re-read from disk has the planned size and checksum',
  'PRAGMA integrity_check is ok, and the check left the file unchanged',
];

/**
 * Restores into a scratch directory, which runs every check restore has, and reports instead of
 * throwing for data problems. Option errors still throw (ERR_INVALID_OPTION).
 */
export async function verify(options: VerifyOptions): Promise<VerifyResult> {
  if (options.dir !== undefined && (typeof options.dir !== 'string' || options.dir === '')) bad('dir', 'must be a directory path', options.dir);
  // 0700, named with the pid: one left by a killed verify is removed by the next.
  const scratch = verifyScratchDir(options.dir ?? tmpdir());
  try {
    // A verify runs every check there is, whatever a caller passed.
    const result = await restore({ ...options, path: join(scratch, 'verify.db'), overwrite: false, integrityCheck: 'full' });
    return { ok: true, result, checks: [...VERIFY_CHECKS], error: null };
  } catch (e) {
    const err = e as { code?: unknown; message?: unknown; details?: unknown };
    if (err.code === 'ERR_INVALID_OPTION') throw e;
    return {
      ok: false,
      result: null,
      checks: [],
      error: {
        code: typeof err.code === 'string' ? err.code : 'ERR_UNKNOWN',
        message: typeof err.message === 'string' ? err.message : String(e),
        details: typeof err.details === 'object' && err.details !== null ? { ...(err.details as Record<string, unknown>) } : {},
      },
    };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
