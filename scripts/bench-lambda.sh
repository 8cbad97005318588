#!/usr/bin/env bash
# make bench-lambda: the lifecycle Lambda's figures on the emulator (see
# tests/bench/lambda_bench.py). Each part gets a fresh emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
target=$(cat .stamps/target)
bootstrap="${CARGO_TARGET_DIR:-target}/$target/release/bootstrap"
for part in ${1:-calls burst}; do
  echo "== lambda: $part"
  (
    source scripts/emulator-env.sh
    .venv/bin/python tests/bench/lambda_bench.py --endpoint "$EMULATOR_URL" --bootstrap "$bootstrap" "$part"
  )
done
