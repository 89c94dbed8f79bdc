import { statSync } from 'node:fs';
import { WalshipError } from './errors.js';

/**
 * Refuses a database file without pages (under 512 bytes) whose `-wal` holds data: SQLite deletes
 * the `-wal` of a database that has no pages, and that `-wal` may hold every commit.
 * `pathKey` names the path in the error's details (each API's own parameter name).
 */
export function refuseWalOnly(path: string, fileBytes: number, pathKey: 'filename' | 'path'): void {
  if (fileBytes >= 512) return;
  let walBytes = 0;
  try {
    walBytes = statSync(`${path}-wal`).size;
  } catch {
    return; // No -wal.
  }
  if (walBytes === 0) return;
  throw new WalshipError(
    'ERR_WAL_ONLY',
    `${path} has no pages (${fileBytes} bytes) but its -wal holds ${walBytes} bytes; SQLite would delete that -wal on open. Nothing was opened: copy the -wal aside and open the database with the tool that wrote it`,
    { details: { [pathKey]: path, fileBytes, walBytes } },
  );
}
