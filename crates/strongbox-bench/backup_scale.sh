#!/usr/bin/env bash
# Continuous backup and restore as the store grows: a follow step after 100 changed records,
# a restore of the newest backup and a verify of it, on a store of N generated records (the
# bench's generator). With several CLIs (two builds to compare), they take turns, ROUNDS times.
#
#   cargo build --release -p strongbox-bench -p strongbox-cli
#   crates/strongbox-bench/backup_scale.sh 200000 3 target/release/strongbox [other/strongbox]
#
# Work files go to $WORK (default /tmp/strongbox-backup-scale/N). Prints each figure's runs
# (time and peak RSS of each).
set -euo pipefail
N=$1; ROUNDS=$2; shift 2
CLIS=()
for cli in "$@"; do CLIS+=("$(realpath "$cli")"); done
BENCH="$(realpath "$(dirname "$0")/../../target/release/strongbox-bench")"
WORK=${WORK:-/tmp/strongbox-backup-scale/$N}
mkdir -p "$WORK"; cd "$WORK"
first=${CLIS[0]}
if [ ! -f s.db ]; then
  "$BENCH" --records "$N" --write-dataset ds.jsonl >/dev/null
  /usr/bin/time -f "import: %e s" "$first" -q --db s.db import ds.jsonl >/dev/null
  python3 - <<'PY'
import json, random
random.seed(1)
lines = open('ds.jsonl').read().splitlines()
with open('c100.jsonl', 'w') as f:
    for line in random.sample(lines, 100):
        record = json.loads(line)
        record['value'] = {'changed': random.random(), 'was': record['value']}
        f.write(json.dumps(record) + '\n')
PY
  /usr/bin/time -f "first backup (full): %e s" "$first" -q --db s.db backup follow --once --repo R >/dev/null
fi
for _ in $(seq "$ROUNDS"); do
  for n in "${!CLIS[@]}"; do
    cli=${CLIS[$n]}
    "$cli" -q --db s.db import c100.jsonl >/dev/null
    /usr/bin/time -f "cli $n follow step (100 changed): %e s, peak RSS %M KB" "$cli" -q --db s.db backup follow --once --repo R >/dev/null
    rm -f r.db r.db-wal r.db-shm
    /usr/bin/time -f "cli $n restore: %e s, peak RSS %M KB" "$cli" -q backup restore --repo R --to r.db latest >/dev/null
    id=$("$cli" -q backup list --repo R --json | python3 -c 'import json, sys; print(json.load(sys.stdin)[-1]["id"])')
    /usr/bin/time -f "cli $n verify of it: %e s, peak RSS %M KB" "$cli" -q backup verify --repo R "$id" >/dev/null
  done
done 2>&1 | sort | awk -F': ' '{runs[$1] = runs[$1] " " $2} END {for (k in runs) print k ":" runs[k]}' | sort
