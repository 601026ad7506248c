"""Command lines as the Airflow provider (airflow-providers-orchesjob) sends them over SSH.

Its reserve operator builds an argv (the reserver's path, `reserve`, `--run-key`, then `--db`,
`--orchesjob-bin`, `--not-before`, `--expires-at`, `--metadata-json` (compact JSON when given a
dict), each start option as `--orchesjob-start-option OPT`, `--`, the command), quotes each word
with shlex.quote and joins them with spaces, after `NAME=value` words for its `env`; its sensor
sends `orchesjob status --run-key K` (or `--job-id ID`), after `ORCHESJOB_HOME=...` when set.
Reads one JSON request per line on stdin, prints one JSON string (the command line) per line.
"""
import json
import shlex
import sys


def reserve_line(r):
    argv = [r.get("bin", "orchesjob-reserver"), "reserve", "--run-key", r["run_key"]]
    for flag, name in (("--db", "db"), ("--orchesjob-bin", "orchesjob_bin"), ("--not-before", "not_before"), ("--expires-at", "expires_at")):
        if r.get(name):
            argv += [flag, r[name]]
    metadata = r.get("metadata_json")
    if metadata is None and r.get("metadata") is not None:
        metadata = json.dumps(r["metadata"], ensure_ascii=False, separators=(",", ":"))
    if metadata:
        argv += ["--metadata-json", metadata]
    for option in r.get("start_options", []):
        argv += ["--orchesjob-start-option", option]
    argv += ["--", *r["command"]]
    prefix = "".join(f"{shlex.quote(str(k))}={shlex.quote(str(v))} " for k, v in r.get("env", {}).items())
    return prefix + " ".join(shlex.quote(str(w)) for w in argv)


def sensor_line(r):
    parts = ["orchesjob", "status"] + (["--job-id", r["job_id"]] if "job_id" in r else ["--run-key", r["run_key"]])
    line = " ".join(shlex.quote(p) for p in parts)
    return f"ORCHESJOB_HOME={shlex.quote(r['orchesjob_home'])} {line}" if r.get("orchesjob_home") else line


for request in sys.stdin:
    r = json.loads(request)
    print(json.dumps(sensor_line(r) if r.get("sensor") else reserve_line(r)))
