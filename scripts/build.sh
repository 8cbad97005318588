#!/usr/bin/env bash
# Builds every module binary and lays out library/: binary + sidecar doc.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/cargo.sh build --workspace --bins
target=$(cat .stamps/target)
out="${CARGO_TARGET_DIR:-target}/$target/release"
mkdir -p library
for src in modules/src/bin/*.rs; do
  m=$(basename "$src" .rs)
  install -m 0755 "$out/$m" "library/$m.new" && mv -f "library/$m.new" "library/$m"
  install -m 0644 "modules/docs/$m.yml" "library/$m.yml"
done
echo "build: library/ has $(ls library | grep -vc '\.yml$') module(s) for $target"
