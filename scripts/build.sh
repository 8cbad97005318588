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
  # The sidecar doc with its options generated from the module's spec.
  "library/$m" --ansible-doc > "library/$m.yml.new" && mv -f "library/$m.yml.new" "library/$m.yml"
done
# The Lambda: bootstrap zipped deterministically (fixed mtime, no extra
# attributes), so an unchanged binary gives an unchanged CodeSha256.
mkdir -p dist/lambda
stage=$(mktemp -d)
install -m 0755 "$out/bootstrap" "$stage/bootstrap"
touch -d '1980-01-01T00:00:00Z' "$stage/bootstrap"
rm -f dist/lambda/bootstrap.zip.new
(cd "$stage" && TZ=UTC zip -q -X -D "$OLDPWD/dist/lambda/bootstrap.zip.new" bootstrap)
mv -f dist/lambda/bootstrap.zip.new dist/lambda/bootstrap.zip
rm -rf "$stage"
echo "build: dist/lambda/bootstrap.zip ($(stat -c %s dist/lambda/bootstrap.zip) bytes, bootstrap $(stat -c %s "$out/bootstrap") bytes)"
echo "build: library/ has $(ls library | grep -vc '\.yml$') module(s) for $target"
