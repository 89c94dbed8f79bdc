import { Kysely, SqliteDialect, sql, type SqliteDatabase } from 'kysely';
import { Migrator, type Migration } from 'kysely/migration';

/** What a step observed: its result, or the error's name and code. */
export type Steps = Record<string, unknown>;

async function attempt(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    return { ok: await fn() };
  } catch (e) {
    const err = e as { name?: string; code?: string; constructor?: { name?: string } };
    return { error: { name: err.name, code: err.code, class: err.constructor?.name } };
  }
}

const migrations: Record<string, Migration> = {
  '001_init': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('author')
        .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('profile', 'text')
        .execute();
      await db.schema
        .createTable('post')
        .addColumn('id', 'integer', (c) => c.primaryKey())
        .addColumn('author_id', 'integer', (c) => c.notNull().references('author.id').onDelete('cascade'))
        .addColumn('title', 'text', (c) => c.notNull())
        .addColumn('body', 'blob')
        .addColumn('views', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema.createIndex('post_author').on('post').column('author_id').execute();
    },
  },
  '002_tags': {
    async up(db: Kysely<any>) {
      await db.schema.alterTable('post').addColumn('tags', 'text', (c) => c.notNull().defaultTo('[]')).execute();
      await db.schema.createView('author_stats').as(
        db.selectFrom('author').leftJoin('post', 'post.author_id', 'author.id').select(['author.name', (eb) => eb.fn.count('post.id').as('posts')]).groupBy('author.name'),
      ).execute();
    },
  },
};

/**
 * A small blog on Kysely's SqliteDialect over any better-sqlite3-shaped database: migrations,
 * foreign keys with cascade, RETURNING, transactions (one rolled back), JSON, BLOB, bigint
 * (safeIntegers), streaming (iterate) and introspection. Returns what each step observed.
 */
export async function kyselyApp(database: unknown): Promise<Steps> {
  const raw = database as { defaultSafeIntegers(on?: boolean): unknown };
  const db = new Kysely<any>({ dialect: new SqliteDialect({ database: database as SqliteDatabase }) });
  const out: Steps = {};
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } });
  const migrated = await migrator.migrateToLatest();
  out.migrate = { error: migrated.error ?? null, results: migrated.results?.map((r) => [r.migrationName, r.direction, r.status]) };
  out.migrateAgain = (await migrator.migrateToLatest()).results;
  out.migrationNames = await db.selectFrom('kysely_migration').select('name').orderBy('name').execute();

  out.authors = await db
    .insertInto('author')
    .values([
      { name: 'ada', profile: JSON.stringify({ city: 'London', langs: ['en', 'fr'] }) },
      { name: 'grace', profile: JSON.stringify({ city: 'Arlington', langs: ['en'] }) },
      { name: 'linus', profile: null },
    ])
    .returning(['id', 'name'])
    .execute();
  const one = await db.insertInto('post').values({ author_id: 1, title: 'notes', body: Buffer.from([0, 1, 2, 255]), views: 9007199254740993n }).executeTakeFirst();
  out.insertResult = { insertId: one.insertId, rows: one.numInsertedOrUpdatedRows };
  out.posts = await db
    .insertInto('post')
    .values([
      { author_id: 1, title: 'engines', body: Buffer.alloc(3000, 7), views: 0, tags: JSON.stringify(['math', 'history']) },
      { author_id: 2, title: 'cobol', body: null, views: 42, tags: JSON.stringify(['lang']) },
      { author_id: 3, title: 'kernel', body: Buffer.from('git'), views: -1, tags: '[]' },
    ])
    .returning(['id', 'title', 'views'])
    .execute();
  out.foreignKey = await attempt(() => db.insertInto('post').values({ author_id: 99, title: 'orphan' }).execute());
  out.unique = await attempt(() => db.insertInto('author').values({ name: 'ada' }).execute());

  out.committed = await db.transaction().execute(async (trx) => {
    const a = await trx.insertInto('author').values({ name: 'barbara', profile: '{"city":"Boston"}' }).returning('id').executeTakeFirstOrThrow();
    await trx.insertInto('post').values({ author_id: a.id, title: 'clu', views: 3 }).execute();
    return a;
  });
  out.rolledBack = await attempt(() =>
    db.transaction().execute(async (trx) => {
      await trx.insertInto('author').values({ name: 'ghost' }).execute();
      await trx.insertInto('post').values({ author_id: 12345, title: 'ghost post' }).execute();
    }),
  );
  out.ghost = await db.selectFrom('author').select('id').where('name', '=', 'ghost').execute();

  out.json = await db
    .selectFrom('author')
    .select(['name', sql<string>`json_extract(profile, '$.city')`.as('city'), sql<number>`json_array_length(profile, '$.langs')`.as('langs')])
    .orderBy('id')
    .execute();
  out.jsonTags = await db
    .selectFrom('post')
    .innerJoin(sql`json_each(post.tags)`.as('tag'), (j) => j.onTrue())
    .select(['post.title', sql<string>`tag.value`.as('tag')])
    .orderBy('post.id')
    .orderBy('tag')
    .execute();
  out.jsonObject = await db.selectFrom('author').select(sql<string>`json_group_array(json_object('id', id, 'name', name))`.as('all')).executeTakeFirst();
  out.blobs = await db.selectFrom('post').select(['id', 'body', sql<number>`length(body)`.as('len')]).orderBy('id').execute();
  out.bigLossy = await db.selectFrom('post').select('views').where('id', '=', 1).executeTakeFirst();
  raw.defaultSafeIntegers(true);
  try {
    out.bigSafe = await db.selectFrom('post').select(['id', 'views', sql<bigint>`views + 1`.as('next')]).orderBy('id').execute();
  } finally {
    raw.defaultSafeIntegers(false);
  }
  out.view = await db.selectFrom('author_stats').selectAll().orderBy('name').execute();
  const updated = await db.updateTable('post').set((eb) => ({ views: eb('views', '+', 1) })).where('views', '<', 100).returning(['id', 'views']).execute();
  out.updated = updated;
  const noop = await db.updateTable('post').set({ views: 0 }).where('id', '<', 0).executeTakeFirst();
  out.noopUpdate = noop.numUpdatedRows;
  const streamed: unknown[] = [];
  for await (const row of db.selectFrom('post').select(['id', 'title']).orderBy('id').stream()) streamed.push(row);
  out.streamed = streamed;
  const deleted = await db.deleteFrom('author').where('name', '=', 'ada').executeTakeFirst();
  out.deleted = deleted.numDeletedRows;
  out.afterCascade = await db.selectFrom('post').select(['id', 'author_id']).orderBy('id').execute();
  out.aggregate = await db
    .selectFrom('post')
    .select([(eb) => eb.fn.count<number>('id').as('n'), (eb) => eb.fn.sum<number>('views').as('views'), (eb) => eb.fn.max('title').as('last')])
    .executeTakeFirst();

  const tables = await db.introspection.getTables();
  out.introspection = tables.map((t) => ({
    name: t.name,
    isView: t.isView,
    columns: t.columns.map((c) => [c.name, c.dataType, c.isNullable, c.isAutoIncrementing, c.hasDefaultValue]),
  }));
  out.introspectionInternal = (await db.introspection.getTables({ withInternalKyselyTables: true })).map((t) => t.name);
  out.schemaNames = await sql<{ type: string; name: string }>`SELECT type, name FROM sqlite_master ORDER BY type, name`.execute(db).then((r) => r.rows);
  return out;
}
