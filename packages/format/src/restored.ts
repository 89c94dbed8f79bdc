/**
 * The note restore leaves beside a database it wrote: `<db>.walship-restored.json`. It names the
 * txid and checksum the file holds, so a writer opening the file later can number its transactions
 * from there (and prove it by hashing the file) even when it is not the replica's latest state.
 */
export interface RestoredNote {
  format: 1;
  /** s3://bucket/prefix of the replica it came from. */
  replica: string;
  generation: string;
  txid: number;
  /** Rolling checksum of the restored file, 16 hex digits. */
  checksum: string;
  restoredAt: string;
}

export const restoredNotePath = (dbPath: string): string => `${dbPath}.walship-restored.json`;

export function parseRestoredNote(text: string): RestoredNote | null {
  try {
    const v = JSON.parse(text) as Partial<RestoredNote>;
    if (v.format !== 1 || !Number.isSafeInteger(v.txid) || typeof v.checksum !== 'string' || !/^[0-9a-f]{16}$/.test(v.checksum) || typeof v.generation !== 'string') return null;
    return v as RestoredNote;
  } catch {
    return null;
  }
}
