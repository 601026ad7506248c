#!/bin/sh
# Append this host's ledger events to a file of JSON Lines, for a log shipper to tail
# (deploy/rsyslog/edge.conf), and resume after the last event already in the file.
#
#   orchesjob-reserver-events.sh [--db PATH]
#
# Runs `orchesjob-reserver events --follow --since P` in the foreground (exec: a process manager's
# SIGTERM reaches it directly; it prints the events appended before the signal and exits 0), where P
# is the `position` of the last whole line of the file. So a restart, a crash or a reboot neither
# loses nor repeats an event: `--since` is exclusive, and positions only grow.
#
# Environment:
#   ORCHESJOB_EVENTS_FILE   the file (default /var/log/orchesjob-reserver/events.jsonl)
#   ORCHESJOB_RESERVER_BIN  the CLI (default orchesjob-reserver, from PATH)
#   ORCHESJOB_RESERVER_HOME and the rest: as for orchesjob-reserver itself
# Other arguments (--db PATH) are passed to `orchesjob-reserver events`.
set -eu

file=${ORCHESJOB_EVENTS_FILE:-/var/log/orchesjob-reserver/events.jsonl}
bin=${ORCHESJOB_RESERVER_BIN:-orchesjob-reserver}

# The last line of $1 that ends with a newline. A last line without one was cut short (the writer
# was killed mid-line, or the disk filled up): its event is printed again, whole, after it.
last_whole_line() {
  if [ -n "$(tail -c 1 "$1")" ]; then
    tail -n 2 "$1" | sed '$d'
  else
    tail -n 1 "$1"
  fi
}

# The ledger position of the last whole event line of $1; nothing when $1 has no line.
# An event line is compact JSON with sorted keys, so its own position is the last `"position":N`
# followed by `,"recorded_at"` (a `position` key inside `data` comes earlier on the line).
last_position() {
  line=$(last_whole_line "$1")
  [ -n "$line" ] || return 0
  position=$(printf '%s\n' "$line" | sed -n 's/.*"position":\([0-9][0-9]*\),"recorded_at".*/\1/p')
  if [ -z "$position" ]; then
    echo "orchesjob-reserver-events: the last line of $1 is not an event line; refusing to guess where to resume" >&2
    exit 1
  fi
  echo "$position"
}

mkdir -p "$(dirname "$file")"
since=
if [ -s "$file" ]; then
  since=$(last_position "$file")
fi
# Just rotated (logrotate with delaycompress leaves the previous file as FILE.1): resume from there.
if [ -z "$since" ] && [ -s "$file.1" ]; then
  since=$(last_position "$file.1")
fi
since=${since:-0}

# Terminate a cut-short last line, so that the next event starts a line of its own.
if [ -s "$file" ] && [ -n "$(tail -c 1 "$file")" ]; then
  echo >>"$file"
fi

exec "$bin" events --follow --since "$since" "$@" >>"$file"
