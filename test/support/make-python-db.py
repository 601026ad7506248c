#!/usr/bin/env python3
"""Write a database as the Python orchesjob-reserver 0.1.x leaves it: its exact schema (init_db)
and rows in every status, the JSON columns written as it writes them (json.dumps, sort_keys,
compact separators, ensure_ascii=False). Usage: make-python-db.py PATH [EXTRA_ROWS]

Prints the rows it wrote as JSON (one object per line) so that tests can compare."""
import json
import sqlite3
import sys
import uuid

SCHEMA = """
CREATE TABLE IF NOT EXISTS reservations (
  reservation_id TEXT PRIMARY KEY,
  run_key TEXT NOT NULL UNIQUE,
  command_json TEXT NOT NULL,
  reservation_status TEXT NOT NULL,
  job_id TEXT,
  not_before INTEGER,
  expires_at INTEGER,
  metadata_json TEXT,
  orchesjob_start_options_json TEXT NOT NULL DEFAULT '[]',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  dispatched_at INTEGER,
  last_error TEXT
);
CREATE INDEX IF NOT EXISTS idx_reservations_status_not_before ON reservations (reservation_status, not_before);
CREATE INDEX IF NOT EXISTS idx_reservations_job_id ON reservations (job_id);
CREATE INDEX IF NOT EXISTS idx_reservations_updated_at ON reservations (updated_at);
"""


def dumps(obj):
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def main():
    path = sys.argv[1]
    extra = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA)
    t = 1777830000
    rows = [
        # status, job_id, not_before, expires_at, metadata, options, updated_at, dispatched_at, last_error
        ("py-reserved", "RESERVED", None, t + 3600, None, {"dag_id": "d", "n": 1.5}, ["--strict"], t, None, None),
        ("py-recovered", "RESERVED", None, None, None, None, [], t + 5, None, "recovered from DISPATCHING"),
        ("py-dispatching", "DISPATCHING", None, None, None, None, [], t + 6, None, None),
        ("py-dispatched", "DISPATCHED", "job-1", t, None, {"東京": "ü"}, ["--strict"], t + 3, t + 3, None),
        ("py-failed", "DISPATCH_FAILED", None, None, None, None, [],
         t + 7, None, "orchesjob command failed: orchesjob start --run-key py-failed -- false\nexit_code=7\nstderr=boom"),
        ("py-expired", "EXPIRED", None, t + 100, t + 50, None, [], t + 50, None, "expired before dispatch"),
        ("py-cancelled", "CANCELLED", None, None, None, None, [], t + 9, None, None),
    ]
    for i in range(extra):
        rows.append((f"py-extra-{i}", "DISPATCHED", f"job-extra-{i}", None, None, None, [], t + 10 + i, t + 10 + i, None))
    for (key, status, job_id, not_before, expires_at, metadata, options, updated_at, dispatched_at, last_error) in rows:
        row = {
            "reservation_id": str(uuid.uuid4()),
            "run_key": key,
            "command_json": dumps(["/jobs/run.sh", "--key", key]),
            "reservation_status": status,
            "job_id": job_id,
            "not_before": not_before,
            "expires_at": expires_at,
            "metadata_json": None if metadata is None else dumps(metadata),
            "orchesjob_start_options_json": dumps(options),
            "created_at": t,
            "updated_at": updated_at,
            "dispatched_at": dispatched_at,
            "last_error": last_error,
        }
        conn.execute(
            "INSERT INTO reservations VALUES (:reservation_id, :run_key, :command_json, :reservation_status, :job_id,"
            " :not_before, :expires_at, :metadata_json, :orchesjob_start_options_json, :created_at, :updated_at,"
            " :dispatched_at, :last_error)",
            row,
        )
        if extra == 0:
            print(json.dumps(row, ensure_ascii=False))
    conn.close()


if __name__ == "__main__":
    main()
