#!/usr/bin/env bash
# What the PostgreSQL server's backends wait on during the example `writes_at_scale` (64 tasks
# writing 8,000 records): samples `pg_stat_activity` of a new database every 20 ms, 300 times,
# while the example runs, and counts the samples by wait event and state (`cpu` when a backend
# waits on nothing). The sampling's own `psql` processes take CPU from the run, so its rate is
# lower than without them. Needs a superuser on 127.0.0.1:5432.
#
#   crates/strongbox-bench/pg_wait_events.sh [WRITES_AT_SCALE_BINARY]
#
# Build the binary first:
#   cargo build --release -p strongbox-store --features postgres --example writes_at_scale
set -euo pipefail
cd "$(dirname "$0")/../.."
BINARY="${1:-target/release/examples/writes_at_scale}"
DB=strongbox_wait_events
PSQL=(psql -h 127.0.0.1 -U postgres -q)
"${PSQL[@]}" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
SAMPLES="$(mktemp)"
trap 'rm -f "$SAMPLES"' EXIT
"$BINARY" 8000 "postgres://postgres@127.0.0.1:5432/$DB" | tail -n 1 &
RUN=$!
sleep 6 # the load, then the first of the three rounds under way
for _ in $(seq 300); do
  "${PSQL[@]}" -At -d postgres -c "SELECT coalesce(wait_event_type, 'cpu') || ':' ||
      coalesce(wait_event, '-') || ':' || state FROM pg_stat_activity
      WHERE datname = '$DB' AND pid <> pg_backend_pid()" >>"$SAMPLES"
  sleep 0.02
done
wait "$RUN"
"${PSQL[@]}" -c "DROP DATABASE $DB"
echo "samples  wait event type:event:state"
sort "$SAMPLES" | uniq -c | sort -rn
