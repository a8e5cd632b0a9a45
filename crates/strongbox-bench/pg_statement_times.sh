#!/usr/bin/env bash
# The PostgreSQL server's time per statement during the example `writes_at_scale` (64 tasks
# writing 8,000 records): logs every statement's duration for one run on a new database
# (`log_min_duration_statement = 0`, set on that database only), then sums the log's
# durations by statement, largest first. Needs a superuser on 127.0.0.1:5432 and read access
# to the server's log.
#
#   crates/strongbox-bench/pg_statement_times.sh [WRITES_AT_SCALE_BINARY] [SERVER_LOG]
#
# Build the binary first:
#   cargo build --release -p strongbox-store --features postgres --example writes_at_scale
set -euo pipefail
cd "$(dirname "$0")/../.."
BINARY="${1:-target/release/examples/writes_at_scale}"
LOG="${2:-$(ls /var/log/postgresql/postgresql-*-main.log | head -n 1)}"
DB=strongbox_statement_times
PSQL=(psql -h 127.0.0.1 -U postgres -q)
"${PSQL[@]}" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" \
  -c "ALTER DATABASE $DB SET log_min_duration_statement = 0"
FIRST_LINE=$(($(wc -l <"$LOG") + 1))
"$BINARY" 8000 "postgres://postgres@127.0.0.1:5432/$DB" | tail -n 1
"${PSQL[@]}" -c "DROP DATABASE $DB"
tail -n "+$FIRST_LINE" "$LOG" | python3 -c '
import collections, re, sys
lines = sys.stdin.read().split("\n")
total, count = collections.defaultdict(float), collections.Counter()
for i, line in enumerate(lines):
    m = re.search(r"duration: ([\d.]+) ms\s+(parse|bind|execute|statement)[^:]*:\s*(.*)", line)
    if not m:
        continue
    statement, j = m.group(3).strip(), i + 1
    while not statement and j < len(lines):  # a statement that starts with a line break
        statement, j = lines[j].strip(), j + 1
    key = (m.group(2), statement[:60])
    total[key] += float(m.group(1))
    count[key] += 1
print("  total ms   count  mean µs  step      statement")
for key, ms in sorted(total.items(), key=lambda item: -item[1])[:12]:
    print(f"{ms:10.0f} {count[key]:7d} {ms / count[key] * 1000:8.0f}  {key[0]:9s} {key[1]}")
'
