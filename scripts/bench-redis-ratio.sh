#!/usr/bin/env bash
# The Redis store's routing rate as a ratio of what `redis-benchmark` gets from the same kind of
# Redis (BENCHMARKS.md, "Queue"), measured back to back in one run:
#
#   1. starts a private `redis-server` on a free loopback port, in a temporary directory, with the
#      flags testkit uses for the bench's own server (`--save '' --appendonly no`);
#   2. runs the project's routing bench, `cargo bench -p queue --bench routing -- routing/redis`
#      (criterion; it starts its own redis-server with those flags through `testkit`, since it
#      takes no URL), and reads the mean time per decision;
#   3. loads a one-line INCR script into the private server and runs
#      `redis-benchmark -n N -c 50 -q evalsha SHA 1 '{t}:q'` RUNS times (the median counts), then
#      once with `-c 1` (one client, sequential, like the bench);
#   4. prints the decisions per second, both redis-benchmark figures and the two ratios.
#
# Needs redis-server, redis-cli and redis-benchmark (apt-get install -y redis-server redis-tools).
# Environment: RUNS (default 3), N (requests per redis-benchmark run, default 200000).
#
#   scripts/bench-redis-ratio.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
N=${N:-200000}
for tool in redis-server redis-cli redis-benchmark; do
  command -v "$tool" >/dev/null || { echo "bench-redis-ratio.sh: $tool not found" >&2; exit 2; }
done

tmp=$(mktemp -d)
redis_pid=
cleanup() {
  if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# A free loopback port: try random ones until a redis-server stays up and answers PING.
port=
for _ in $(seq 1 20); do
  p=$((20000 + RANDOM % 40000))
  redis-server --port "$p" --bind 127.0.0.1 --dir "$tmp" --save '' --appendonly no \
    >"$tmp/redis.log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 1 50); do
    if [ "$(redis-cli -p "$p" ping 2>/dev/null)" = PONG ]; then port=$p; break; fi
    kill -0 "$redis_pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$port" ] && break
  kill "$redis_pid" 2>/dev/null || true
  wait "$redis_pid" 2>/dev/null || true
  redis_pid=
done
[ -n "$port" ] || { echo "bench-redis-ratio.sh: no redis-server could start" >&2; exit 1; }

echo "machine: $(nproc) cores; $(redis-server --version | cut -d' ' -f1-3)" >&2
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# Build first, so compilation is not part of the measurement window.
cargo bench -p queue --bench routing --no-run >&2

echo "[1/2] cargo bench -p queue --bench routing -- routing/redis" >&2
cargo bench -p queue --bench routing -- routing/redis 2>&1 | tee "$tmp/criterion.txt" >&2
# criterion prints `time:   [low mean high]`, the name on the same line or the one before.
us_per_decision=$(awk '
  /^routing\/redis\/call_to_offer/ { seen = 1 }
  seen && /time:/ {
    sub(/.*time: *\[/, ""); split($0, f, " ")
    v = f[3]; u = f[4]
    if (u == "ns") v /= 1000; else if (u == "ms") v *= 1000; else if (u == "s") v *= 1000000
    printf "%.2f", v; exit
  }' "$tmp/criterion.txt")
[ -n "$us_per_decision" ] || { echo "bench-redis-ratio.sh: no criterion figure found" >&2; exit 1; }

echo "[2/2] redis-benchmark EVALSHA on 127.0.0.1:$port" >&2
sha=$(redis-cli -p "$port" script load "return redis.call('INCR', KEYS[1])")
rps() { # clients → requests per second
  redis-benchmark -p "$port" -n "$N" -c "$1" -q evalsha "$sha" 1 '{t}:q' 2>/dev/null |
    tr '\r' '\n' | awk '/requests per second/ { for (i = 1; i <= NF; i++) if ($(i+1) == "requests") v = $i } END { print v }'
}
c50=()
for i in $(seq 1 "$RUNS"); do
  c50+=("$(rps 50)")
  echo "  -c 50 run $i: ${c50[-1]} req/s" >&2
done
c50_median=$(printf '%s\n' "${c50[@]}" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
c1=$(rps 1)
echo "  -c 1: $c1 req/s" >&2
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

awk -v us="$us_per_decision" -v c50="$c50_median" -v c50all="${c50[*]}" -v c1="$c1" -v n="$N" 'BEGIN {
  d = 1e6 / us
  printf "routing decisions, Redis store, one client: %.1f µs per decision = %.0f/s\n", us, d
  printf "redis-benchmark -n %d -c 50 EVALSHA (INCR script): %.0f req/s (median of %s)\n", n, c50, c50all
  printf "redis-benchmark -n %d -c 1  EVALSHA (INCR script): %.0f req/s\n", n, c1
  printf "ratio: %.3f of -c 50, %.3f of -c 1\n", d / c50, d / c1
}'
