#!/bin/sh
# Minimal orchesjob stand-in for benchmarks only (POSIX sh, no node/python).
# `start --run-key K [--sync] [--strict] [--start-timeout S] -- CMD...` prints one JSON line
# (orchesjob 1.1 start shape, trimmed) and exits 0. Nothing is stored; every start is "new".
# Anything else exits 2. The full simulator is test/support/orchesjob-standin.mjs.

if [ "$1" != start ]; then
  echo "orchesjob: bench stand-in supports only 'start'" >&2
  exit 2
fi
shift
run_key=
have_key=
while [ $# -gt 0 ]; do
  case $1 in
    --run-key) [ $# -ge 2 ] || exit 2; run_key=$2; have_key=1; shift 2 ;;
    --run-key=*) run_key=${1#--run-key=}; have_key=1; shift ;;
    --start-timeout) [ $# -ge 2 ] || exit 2; shift 2 ;;
    --start-timeout=*|--sync|--strict) shift ;;
    --) shift; break ;;
    -*) echo "orchesjob: error: unrecognized arguments: $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ -z "$have_key" ]; then echo "orchesjob start: error: the following arguments are required: --run-key" >&2; exit 2; fi
if [ $# -eq 0 ]; then echo "orchesjob: command is required (provide it after --)" >&2; exit 2; fi

# JSON-escape " and \ (the sed only runs when one is present).
esc() {
  case $1 in
    *[\"\\]*) printf '%s' "$1" | sed 's/[\\"]/\\&/g' ;;
    *) printf '%s' "$1" ;;
  esac
}

now=$(date +%s%N)
# BENCH_START_SECONDS: how long the start takes after that (the real orchesjob is a Python program).
if [ -n "${BENCH_START_SECONDS:-}" ]; then sleep "$BENCH_START_SECONDS"; fi
cmd=
for a in "$@"; do
  cmd="$cmd${cmd:+,}\"$(esc "$a")\""
done
printf '{"accepted":true,"existing":false,"mode":"async","strict":false,"job_id":"bench-%s-%s","run_key":"%s","pid":%s,"command":[%s],"status":"RUNNING","exit_code":null,"started_at":%s,"finished_at":null}\n' \
  "$$" "$now" "$(esc "$run_key")" "$$" "$cmd" "${now%?????????}"
