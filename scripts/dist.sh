#!/usr/bin/env bash
# make dist: the Lambda for arm64 (Graviton) next to the x86_64 one, smoke-
# tested under qemu on the emulator's lifecycle loop. Kept out of `make
# test`: a clean aarch64 build of the Lambda takes ~10 min here.
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-musl
# Cross C compiler for aws-lc-sys, and qemu-user to run the result.
for p in gcc-aarch64-linux-gnu qemu-user-static; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    [[ $(id -u) -eq 0 ]] || { echo "dist: need Debian package $p (run as root to install)" >&2; exit 1; }
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null
  fi
done
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
cargo build --release --locked --target "$target" -p craftlb-lambda --bin bootstrap
bin="${CARGO_TARGET_DIR:-target}/$target/release/bootstrap"
mkdir -p dist/lambda/arm64
install -m 0755 "$bin" dist/lambda/arm64/bootstrap
stage=$(mktemp -d)
install -m 0755 "$bin" "$stage/bootstrap"
touch -d '1980-01-01T00:00:00Z' "$stage/bootstrap"
rm -f dist/lambda/bootstrap-arm64.zip
(cd "$stage" && TZ=UTC zip -q -X -D "$OLDPWD/dist/lambda/bootstrap-arm64.zip" bootstrap)
rm -rf "$stage"
echo "dist: dist/lambda/bootstrap-arm64.zip ($(stat -c %s dist/lambda/bootstrap-arm64.zip) bytes, bootstrap $(stat -c %s "$bin") bytes)"
file "$bin"

echo "dist: smoke test of the arm64 bootstrap under qemu on the lifecycle loop"
export CRAFTLB_LAMBDA_EXEC_PREFIX=qemu-aarch64-static
source scripts/emulator-env.sh
s() { .venv/bin/python tests/emulator/scenario.py --endpoint "$EMULATOR_URL" "$@"; }
s world --bootstrap "$bin" >/dev/null
s scale --desired 2 >/dev/null
s wait --in-service 2 --timeout 120 >/dev/null
sleep 1
state=$(s state)
.venv/bin/python - "$state" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
ids = {i["id"] for i in s["instances"] if i["state"] == "InService"}
recs = {r["set_identifier"] for r in s["records"]}
print(f"  arm64 bootstrap: {len(ids)} InService, {len(recs)} records, {len(s['health_checks'])} health checks")
sys.exit(0 if ids == recs and len(s["health_checks"]) == len(ids) == 2 else 1)
PY
