#!/usr/bin/env bash
# Printing exactly once under kiosk-agent kills (BENCHMARKS.md, "Printing exactly once under agent
# kills"): `loadtest print-chaos` starts a release `sportello` of its own (memory store, demo
# accounts, loopback ports), a PDF queue on a private CUPS and the release `sportello-kiosk-agent`,
# which is SIGKILLed and restarted at random (some restarts with
# SPORTELLO_AGENT_FAULT=exit_after_print) while an operator prints --jobs copies of one
# certificate. Counts the PDFs: a job printed twice or lost fails the run (exit 1). See
# loadtest/src/print_chaos/mod.rs (or `loadtest print-chaos --help`) for every option.
#
# Must run as root: the private cupsd (testkit::cups) runs its PDF backend as `lp`. Needs
#   apt-get install -y cups printer-driver-cups-pdf cups-client cups-ipp-utils
#
#   sudo scripts/print-chaos.sh                      # 1,000 jobs, default chaos
#   sudo scripts/print-chaos.sh --jobs 50 --seed 7   # a short run
#   sudo scripts/print-chaos.sh --calibrate 30       # the printer alone through lp
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "print-chaos.sh: run as root (the private cupsd runs its PDF backend as lp)" >&2
  exit 2
fi
cargo build --release --locked -p kiosk-client --bin sportello-kiosk-agent >&2
cargo build --release --locked -p signalling --bin sportello >&2
cargo build --release --locked -p loadtest --bin loadtest >&2
exec ./target/release/loadtest print-chaos --agent-bin ./target/release/sportello-kiosk-agent \
  --server-bin ./target/release/sportello "$@"
