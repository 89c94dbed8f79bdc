import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { drizzle } from 'drizzle-orm/better-sqlite3';
import { migrate } from 'drizzle-orm/better-sqlite3/migrator';
import { blob, integer, real, sqliteTable, text } from 'drizzle-orm/sqlite-core';
import { and, asc, count, desc, eq, gt, relations, sql } from 'drizzle-orm';
import type { Steps } from './orm-kysely.js';

const users = sqliteTable('users', {
  id: integer('id').primaryKey({ autoIncrement: true }),
  email: text('email').notNull().unique(),
  settings: text('settings', { mode: 'json' }).$type<{ theme: string; tags: string[] }>(),
  avatar: blob('avatar', { mode: 'buffer' }),
  credit: blob('credit', { mode: 'bigint' }),
  joined: integer('joined', { mode: 'timestamp' }),
  active: integer('active', { mode: 'boolean' }).notNull().default(true),
});
const orders = sqliteTable('orders', {
  id: integer('id').primaryKey(),
  userId: integer('user_id')
    .notNull()
    .references(() => users.id, { onDelete: 'cascade' }),
  total: real('total').notNull(),
  cents: integer('cents').notNull(),
  items: blob('items', { mode: 'json' }).$type<{ sku: string; qty: number }[]>(),
  note: text('note'),
});
const usersRelations = relations(users, ({ many }) => ({ orders: many(orders) }));
const ordersRelations = relations(orders, ({ one }) => ({ user: one(users, { fields: [orders.userId], references: [users.id] }) }));
const schema = { users, orders, usersRelations, ordersRelations };

/** The migration folder drizzle-kit would generate for the schema above (0001 adds `note`). */
export function writeDrizzleMigrations(dir: string): string {
  const folder = join(dir, 'drizzle');
  mkdirSync(join(folder, 'meta'), { recursive: true });
  const init = [
    'CREATE TABLE `users` (`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL, `email` text NOT NULL, `settings` text, `avatar` blob, `credit` blob, `joined` integer, `active` integer DEFAULT true NOT NULL);',
    'CREATE UNIQUE INDEX `users_email_unique` ON `users` (`email`);',
    'CREATE TABLE `orders` (`id` integer PRIMARY KEY NOT NULL, `user_id` integer NOT NULL, `total` real NOT NULL, `cents` integer NOT NULL, `items` blob, FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade);',
  ].join('\n--> statement-breakpoint\n');
  writeFileSync(join(folder, '0000_init.sql'), init);
  writeFileSync(join(folder, '0001_note.sql'), 'ALTER TABLE `orders` ADD `note` text;');
  const entries = [
    { idx: 0, version: '6', when: 1764806400000, tag: '0000_init', breakpoints: true },
    { idx: 1, version: '6', when: 1764892800000, tag: '0001_note', breakpoints: true },
  ];
  writeFileSync(join(folder, 'meta', '_journal.json'), JSON.stringify({ version: '7', dialect: 'sqlite', entries }));
  return folder;
}

function attempt(fn: () => unknown): unknown {
  try {
    return { ok: fn() };
  } catch (e) {
    const err = e as { name?: string; code?: string; cause?: { name?: string; code?: string } };
    // drizzle wraps driver errors in a DrizzleQueryError whose cause is the SqliteError.
    return { error: { name: err.name, code: err.code, cause: err.cause ? { name: err.cause.name, code: err.cause.code } : null } };
  }
}

/**
 * A small shop on drizzle-orm/better-sqlite3 over any better-sqlite3-shaped database: migrations
 * from a migration folder, foreign keys with cascade, RETURNING, synchronous transactions with a
 * nested savepoint rolled back, JSON (text and blob modes, relational queries), BLOB, bigint,
 * prepared statements with placeholders, upsert and the schema as drizzle-kit would read it.
 */
export function drizzleApp(client: unknown, migrationsFolder: string): Steps {
  const db = drizzle(client as never, { schema });
  const out: Steps = {};
  migrate(db, { migrationsFolder });
  migrate(db, { migrationsFolder });
  out.migrations = db.all(sql`SELECT id, hash, created_at FROM __drizzle_migrations ORDER BY id`);

  out.inserted = db
    .insert(users)
    .values([
      { email: 'ada@example.com', settings: { theme: 'dark', tags: ['math'] }, avatar: Buffer.from([1, 2, 3]), credit: 2n ** 63n - 1n, joined: new Date('2026-01-02T03:04:05Z') },
      { email: 'grace@example.com', settings: { theme: 'light', tags: [] }, credit: -(2n ** 60n), joined: new Date('2025-06-07T08:09:10Z'), active: false },
      { email: 'linus@example.com' },
    ])
    .returning()
    .all();
  out.order = db
    .insert(orders)
    .values({ userId: 1, total: 12.5, cents: 1250, items: [{ sku: 'a-1', qty: 2 }] })
    .returning({ id: orders.id, total: orders.total })
    .get();
  out.runResult = db.insert(orders).values({ userId: 2, total: 0.1 + 0.2, cents: 30, note: 'float' }).run();
  out.foreignKey = attempt(() => db.insert(orders).values({ userId: 77, total: 1, cents: 100 }).run());
  out.unique = attempt(() => db.insert(users).values({ email: 'ada@example.com' }).run());

  out.transaction = db.transaction((tx) => {
    const u = tx.insert(users).values({ email: 'barbara@example.com', settings: { theme: 'dark', tags: ['clu'] } }).returning({ id: users.id }).get();
    tx.insert(orders).values({ userId: u.id, total: 99.99, cents: 9999 }).run();
    const nested = attempt(() =>
      tx.transaction((inner) => {
        inner.insert(orders).values({ userId: u.id, total: 5, cents: 500, note: 'dropped' }).run();
        inner.rollback();
      }),
    );
    return { id: u.id, nested };
  });
  out.rolledBack = attempt(() =>
    db.transaction((tx) => {
      tx.insert(users).values({ email: 'ghost@example.com' }).run();
      tx.insert(orders).values({ userId: 4242, total: 1, cents: 1 }).run();
    }),
  );
  out.ghosts = db.select({ id: users.id }).from(users).where(eq(users.email, 'ghost@example.com')).all();
  out.notes = db.select({ note: orders.note }).from(orders).orderBy(asc(orders.id)).all();

  out.upsert = db
    .insert(users)
    .values({ email: 'linus@example.com', settings: { theme: 'mono', tags: ['kernel'] } })
    .onConflictDoUpdate({ target: users.email, set: { settings: sql`excluded.settings` } })
    .returning({ id: users.id, settings: users.settings })
    .all();
  out.users = db.select().from(users).orderBy(asc(users.id)).all();
  out.json = db
    .select({ email: users.email, theme: sql<string>`json_extract(${users.settings}, '$.theme')`, tags: sql<number>`json_array_length(${users.settings}, '$.tags')` })
    .from(users)
    .where(sql`json_extract(${users.settings}, '$.theme') IS NOT NULL`)
    .orderBy(desc(users.email))
    .all();
  out.relational = db.query.users.findMany({ with: { orders: { columns: { total: true, note: true }, orderBy: [asc(orders.id)] } }, orderBy: [asc(users.id)] }).sync();
  out.relationalOne = db.query.orders.findFirst({ where: eq(orders.cents, 1250), with: { user: { columns: { email: true, joined: true } } } }).sync();
  out.join = db
    .select({ email: users.email, n: sql<number>`count(${orders.id})`, sum: sql<number>`total(${orders.cents})` })
    .from(users)
    .leftJoin(orders, eq(orders.userId, users.id))
    .groupBy(users.id)
    .orderBy(asc(users.id))
    .all();
  const byId = db.select().from(orders).where(and(eq(orders.userId, sql.placeholder('uid')), gt(orders.cents, sql.placeholder('min')))).prepare();
  out.prepared = [byId.all({ uid: 1, min: 0 }), byId.get({ uid: 2, min: 10 }), byId.values({ uid: 4, min: 0 })];
  out.big = db.get(sql`SELECT 9007199254740993 AS big, -9007199254740993 AS neg, 2147483648 * 4 AS mid`);
  out.count = db.select({ n: count() }).from(users).get();
  out.updated = db.update(orders).set({ cents: sql`${orders.cents} * 2` }).where(gt(orders.total, 10)).returning({ id: orders.id, cents: orders.cents }).all();
  out.noop = db.update(orders).set({ note: 'none' }).where(eq(orders.id, -1)).run();
  out.deleted = db.delete(users).where(eq(users.email, 'ada@example.com')).run();
  out.afterCascade = db.select({ id: orders.id, userId: orders.userId }).from(orders).orderBy(asc(orders.id)).all();

  // What drizzle-kit's `pull` reads: the tables and their columns.
  const tables = db.all<{ name: string; type: string }>(sql`SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name`);
  out.introspection = tables.map((t) => ({
    name: t.name,
    columns: db.all(sql`SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_info(${t.name}) ORDER BY cid`),
  }));
  out.foreignKeys = db.all(sql`SELECT "table", "from", "to", on_delete FROM pragma_foreign_key_list('orders')`);
  return out;
}
