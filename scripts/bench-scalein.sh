#!/usr/bin/env bash
# make bench-scalein: scale-in 3 -> 1 under load, clients that cache DNS for
# the record's TTL (tests/bench/scalein_bench.py). Figures, not assertions.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/emulator-env.sh
target=$(cat .stamps/target)
out="${CARGO_TARGET_DIR:-target}/$target/release"
echo "== scale-in under load (haproxy $(haproxy -v | head -n 1 | awk '{print $3}'), $(nproc) CPUs)"
.venv/bin/python tests/bench/scalein_bench.py --endpoint "$EMULATOR_URL" \
  --bootstrap "$out/bootstrap" --update-peers "$PWD/library/update_peers" \
  --seconds "${BENCH_SECONDS:-8}"
