/**
 * `PRAGMA user_version` of a database whose schema is current: the number of migrations in
 * `migrations()` (./index.ts), which `src/db/migrate.ts` checks. Its own module, so that opening a
 * current database does not load the migrations.
 */
export const SCHEMA_VERSION = 6;
