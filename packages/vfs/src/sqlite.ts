import sqlite3InitModule, { type Sqlite3Static } from '@sqlite.org/sqlite-wasm';

export type Sqlite3 = Sqlite3Static;

let loading: Promise<Sqlite3> | undefined;
let loaded: Sqlite3 | undefined;

/** Loads and initialises the SQLite WASM module once per process; every database shares it. */
export function loadSqlite(): Promise<Sqlite3> {
  loading ??= sqlite3InitModule().then((s) => (loaded = s));
  return loading;
}

/** The module once loadSqlite() has resolved (what lets `new Database(filename)` be synchronous). */
export function loadedSqlite(): Sqlite3 | undefined {
  return loaded;
}
