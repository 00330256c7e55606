#!/usr/bin/env bash
# One 1:1 call between two headless Chromium pages (fake camera, 640x480) through a release build
# of `sportello`, held for HOLD_S seconds after both sides decode, RUNS times (UDP):
#   - time from the kiosk's call.request to both sides decoding (first frame, and >10 frames);
#   - the video bitrate each side receives through the SFU;
#   - the server's CPU share and media packets forwarded per second during the hold.
# Prints one JSON line per run. Figures go in BENCHMARKS.md.
#
#   scripts/bench-browser-call.sh            # RUNS=3 HOLD_S=30
#   MEDIA_TRACE=1 RUST_LOG=info,rtc_ice=trace scripts/bench-browser-call.sh
#                                            # each page's timestamped log on stderr, to set
#                                            # beside the server's (same clock, kept in
#                                            # target/bench-browser-call-server.log)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-3}"
HOLD_S="${HOLD_S:-30}"

cargo build --release --locked -p signalling --bin sportello >&2
if [ ! -d console-web/tests/node_modules ]; then
  (cd console-web/tests && npm_config_cache="$PWD/../../target/npm-cache" npm ci --no-audit --no-fund >&2)
fi

data="$(mktemp -d)"
log="$data/server.log"
./target/release/sportello --data-dir "$data" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --media-udp 127.0.0.1:0 --media-tcp 127.0.0.1:0 >"$log" 2>&1 &
server=$!
# With MEDIA_TRACE the server's log is kept in target/bench-browser-call-server.log.
trap 'kill $server 2>/dev/null; [ -n "${MEDIA_TRACE:-}" ] && cp "$log" target/bench-browser-call-server.log; rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q "metrics " "$log" && break; sleep 0.1; done
base="$(grep -o 'listening on http://[^/]*' "$log" | sed 's/listening on //')"
metrics="$(grep -o 'metrics *http://[^ ]*' "$log" | awk '{print $2}')"
read -r password token < <(python3 - "$data/demo-credentials.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
op = next(o for o in d["operators"] if o["username"] == "maria.rossi")
k = next(k for k in d["kiosks"] if k["id"] == "municipio")
print(op["password"], k["token"])
PY
)
for _ in $(seq "$RUNS"); do
  node console-web/tests/media.mjs --base "$base" --kiosk-token "$token" --username maria.rossi \
    --password "$password" --mode udp --hold-s "$HOLD_S" --metrics "$metrics" --server-pid "$server"
  sleep 1
done
