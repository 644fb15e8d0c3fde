#!/usr/bin/env bash
# Refresh rotations of two sidecar binaries in the same run: the Redis
# (benches/redis_replicas.rs, 2 replicas) and SQLite (benches/refresh_load.rs)
# rotation scenarios, rounds alternating before/after (ABBA order), then the
# median of rotations/s, p99 and sidecar CPU µs per rotation for each.
#   bench/rotations.sh BEFORE_BIN AFTER_BIN [ROUNDS]   (ROUNDS: 3)
# Knobs: BENCH_SECONDS (4 per scenario and round), BENCH_CLIENTS (32),
# BENCH_THREADS (proxy threads per sidecar, 1).
set -euo pipefail
cd "$(dirname "$0")/.."
before=$1 after=$2 rounds=${3:-3}
export BENCH_SECONDS=${BENCH_SECONDS:-4} BENCH_ROUNDS=0
cargo bench -q --no-run --bench redis_replicas --bench refresh_load
log=$(mktemp)
for r in $(seq "$rounds"); do
  order="before after"
  ((r % 2 == 0)) && order="after before"
  for which in $order; do
    bin=${!which}
    echo "round $r $which: load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$log"
    for bench in redis_replicas refresh_load; do
      BENCH_SIDECAR_BIN=$bin cargo bench -q --bench "$bench" | sed "s/^/$which /" | tee -a "$log"
    done
  done
done
python3 - "$log" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"(before|after) (redis refresh|refresh_load \(sqlite\)):.*= (\d+)/s.*p99 ([\d.]+) ms.*sidecar CPU ([\d.]+) µs", line)
    if m:
        rows.setdefault((m[2], m[1]), []).append(tuple(float(m[i]) for i in (3, 4, 5)))
print("\nmedians over rounds: rotations/s, p99 ms, sidecar CPU µs/rotation")
for (scenario, which), v in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1] != "before")):
    med = [statistics.median(x[i] for x in v) for i in range(3)]
    print(f"{scenario:24} {which:6} {med[0]:8.0f}/s  p99 {med[1]:5.2f} ms  {med[2]:6.1f} µs  ({len(v)} rounds)")
PY
rm -f "$log"
