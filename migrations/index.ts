import type { Migration } from 'kysely';
import { ledger } from './0001_ledger.js';
import { adoptPythonRows } from './0002_adopt_python_rows.js';
import { retries } from './0003_retries.js';

/**
 * Every migration, in order, registered statically: the CLI is bundled and never scans a folder.
 * A released migration is never edited; change the schema with a new one appended here.
 * Names sort in order (Kysely checks that executed migrations match this list).
 */
export const MIGRATIONS: Readonly<Record<string, Migration>> = {
  '0001_ledger': ledger,
  '0002_adopt_python_rows': adoptPythonRows,
  '0003_retries': retries,
};

export { SCHEMA_VERSION } from './version.js';
