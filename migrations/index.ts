import type { Database as NativeDatabase } from 'better-sqlite3';
import type { Migration } from 'kysely';
import { ledger } from './0001_ledger.js';
import { adoptPythonRows } from './0002_adopt_python_rows.js';
import { retries } from './0003_retries.js';
import { dueIndex } from './0004_due_index.js';
import { dispatchControl } from './0005_dispatch_control.js';
import { metricsCounts } from './0006_metrics_counts.js';

/**
 * Every migration, in order, registered statically: the CLI is bundled and never scans a folder.
 * A released migration is never edited; change the schema with a new one appended here.
 * Names sort in order (Kysely checks that executed migrations match this list).
 *
 * `native` is the better-sqlite3 handle under the migrations' Kysely connection: the adoption
 * steps its bulk insert on it directly.
 */
export function migrations(native: NativeDatabase): Readonly<Record<string, Migration>> {
  return {
    '0001_ledger': ledger,
    '0002_adopt_python_rows': adoptPythonRows(native),
    '0003_retries': retries,
    '0004_due_index': dueIndex,
    '0005_dispatch_control': dispatchControl,
    '0006_metrics_counts': metricsCounts,
  };
}

export { SCHEMA_VERSION } from './version.js';
