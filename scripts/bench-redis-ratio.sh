#!/usr/bin/env bash
# The Redis store's routing rate as a ratio of what `redis-benchmark` gets from the same kind of
# Redis (BENCHMARKS.md, "Queue"), measured in one run. The routing bench does all of it now
# (queue/benches/routing.rs): criterion's `routing/redis` case on the `redis-server` it starts through
# `testkit`, then, in the same process, `redis-benchmark -n N -c 50 -q evalsha SHA 1 '{t}:q'` of a
# one-line INCR script on another private `redis-server` (same flags) RUNS times (the median counts)
# and once with `-c 1`; it prints the figures, both ratios and, last, a JSON line. This script only
# runs it with the filter this script always used (`cargo xtask bench --only routing` runs the
# memory store's case too and records the figures in BENCHMARKS.md).
#
# Needs redis-server and redis-benchmark (apt-get install -y redis-server redis-tools).
# Environment: RUNS (default 3), N (requests per redis-benchmark run, default 200000).
#
#   scripts/bench-redis-ratio.sh [criterion options]
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in redis-server redis-benchmark; do
  command -v "$tool" >/dev/null || { echo "bench-redis-ratio.sh: $tool not found" >&2; exit 2; }
done
echo "machine: $(nproc) cores; $(redis-server --version | cut -d' ' -f1-3)" >&2
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
EVALSHA_RUNS=${RUNS:-3} EVALSHA_N=${N:-200000} \
  cargo bench -p queue --bench routing -- routing/redis "$@"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
