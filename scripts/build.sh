#!/usr/bin/env bash
# Builds the workspace and lays out library/: one multi-call binary
# (bin/craftlb-modules, every module in it) and, per module, library/<module>
# linking to it plus the module's generated sidecar doc.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/cargo.sh build --workspace --bins
target=$(cat .stamps/target)
out="${CARGO_TARGET_DIR:-target}/$target/release"
mkdir -p bin library
install -m 0755 "$out/craftlb-modules" bin/craftlb-modules.new && mv -f bin/craftlb-modules.new bin/craftlb-modules
# The same file under its platform name, as the collection and the node
# bundle pick binaries by CPU (make dist adds the aarch64 one).
ln -f bin/craftlb-modules "bin/craftlb_modules_linux_$(uname -m)"
# And where the launch packs the nodes' binary from: the collection's
# layout and mode (0644, as collections ship binaries), so role autoscaling
# packs the same bundle, byte for byte, from a checkout and from the
# installed collection (no roll when a teammate launches from the other).
mkdir -p dist/modules
install -m 0644 bin/craftlb-modules "dist/modules/craftlb_modules_linux_$(uname -m).new"
mv -f "dist/modules/craftlb_modules_linux_$(uname -m).new" "dist/modules/craftlb_modules_linux_$(uname -m)"
# The binary says which modules it holds (no second list to drift).
modules=$(bin/craftlb-modules --list-modules | sort)
[[ -n $modules ]] || { echo "build: bin/craftlb-modules lists no modules" >&2; exit 1; }
# Links from an earlier build whose module is gone go too.
for f in library/*; do
  [[ -L $f ]] && ! grep -qx "$(basename "$f")" <<<"$modules" && rm -f "$f" "$f.yml"
done
for m in $modules; do
  ln -sfn ../bin/craftlb-modules "library/$m"
  # The sidecar doc with its options generated from the module's spec.
  bin/craftlb-modules --ansible-doc "$m" > "library/$m.yml.new" && mv -f "library/$m.yml.new" "library/$m.yml"
done
# The Lambda: the bootstrap executable (the lambda module zips it itself,
# deterministically) and a zip of it for other tools, made deterministic
# too (fixed mtime, no extra attributes): same binary, same CodeSha256.
mkdir -p dist/lambda/x86_64
install -m 0755 "$out/bootstrap" dist/lambda/x86_64/bootstrap.new && mv -f dist/lambda/x86_64/bootstrap.new dist/lambda/x86_64/bootstrap
stage=$(mktemp -d)
install -m 0755 "$out/bootstrap" "$stage/bootstrap"
touch -d '1980-01-01T00:00:00Z' "$stage/bootstrap"
rm -f dist/lambda/bootstrap.zip.new
(cd "$stage" && TZ=UTC zip -q -X -D "$OLDPWD/dist/lambda/bootstrap.zip.new" bootstrap)
mv -f dist/lambda/bootstrap.zip.new dist/lambda/bootstrap.zip
rm -rf "$stage"
echo "build: dist/lambda/bootstrap.zip ($(stat -c %s dist/lambda/bootstrap.zip) bytes, bootstrap $(stat -c %s "$out/bootstrap") bytes)"
echo "build: bin/craftlb-modules ($(stat -c %s bin/craftlb-modules) bytes) holds $(wc -w <<<"$modules") module(s) for $target: $(echo $modules)"
