#!/usr/bin/env bash
# make dist: the arm64 (Graviton) builds next to the x86_64 ones - the module
# binary (bin/craftlb_modules_linux_aarch64) and the Lambda
# (dist/lambda/arm64/bootstrap, bootstrap-arm64.zip) - tested under qemu:
#   1. each binary's size and start-to-exit time, native x86_64 vs aarch64 under qemu;
#   2. the arm64 Lambda on the emulator's lifecycle loop;
#   3. the two-architecture collection installed in a temporary directory and
#      tests/collection/fqcn.yml run with craftlb_module_arch=aarch64: every
#      module runs as its aarch64 binary (binfmt_misc hands it to qemu).
# Kept out of `make test`: a clean aarch64 build takes ~15 min here.
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
start=$(date +%s)
cargo build --release --locked --target "$target" -p craftlb-modules --bin craftlb-modules -p craftlb-lambda --bin bootstrap
echo "dist: aarch64 build $(( $(date +%s) - start )) s"
out="${CARGO_TARGET_DIR:-target}/$target/release"
bin="$out/bootstrap"
install -m 0755 "$out/craftlb-modules" bin/craftlb_modules_linux_aarch64.new
mv -f bin/craftlb_modules_linux_aarch64.new bin/craftlb_modules_linux_aarch64
# Where the launch packs the nodes' binary from (the collection's layout
# and mode: see build.sh).
mkdir -p dist/modules
install -m 0644 bin/craftlb_modules_linux_aarch64 dist/modules/craftlb_modules_linux_aarch64
mkdir -p dist/lambda/arm64
install -m 0755 "$bin" dist/lambda/arm64/bootstrap
stage=$(mktemp -d)
install -m 0755 "$bin" "$stage/bootstrap"
touch -d '1980-01-01T00:00:00Z' "$stage/bootstrap"
rm -f dist/lambda/bootstrap-arm64.zip
(cd "$stage" && TZ=UTC zip -q -X -D "$OLDPWD/dist/lambda/bootstrap-arm64.zip" bootstrap)
rm -rf "$stage"
for f in bin/craftlb_modules_linux_x86_64 bin/craftlb_modules_linux_aarch64 dist/lambda/x86_64/bootstrap dist/lambda/arm64/bootstrap; do
  printf 'dist: %-40s %9d bytes  %s\n' "$f" "$(stat -c %s "$f")" "$(file -b "$f" | cut -d, -f1-2)"
done

echo "dist: start-to-exit, one module run (aws_caller_info, refused endpoint, no retries)"
args=$(mktemp)
trap 'rm -f "$args"' EXIT
echo '{"_ansible_module_name": "aws_caller_info", "region": "us-east-1", "endpoint_url": "http://127.0.0.1:9", "retries": 0, "access_key": "testing", "secret_key": "testing"}' > "$args"
hyperfine -N --warmup 3 --runs 30 --ignore-failure --export-json "$args.json" \
  -n "x86_64 native" "bin/craftlb_modules_linux_x86_64 $args" \
  -n "aarch64 under qemu" "qemu-aarch64-static bin/craftlb_modules_linux_aarch64 $args" >/dev/null 2>&1
.venv/bin/python - "$args.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print(f"  {r['command']:20s} median {r['median']*1000:6.1f} ms  (min {r['min']*1000:.1f}, max {r['max']*1000:.1f}, {len(r['times'])} runs)")
PY
rm -f "$args.json"
# The aarch64 binary must answer as the module did natively (same JSON keys).
# (The run fails - nothing listens on port 9 - and exits 1, as it must.)
keys() { .venv/bin/python -c 'import json,sys; d=json.load(sys.stdin); print(d["failed"], d["operation"], sorted(d))'; }
native=$({ bin/craftlb_modules_linux_x86_64 "$args" || true; } | keys)
emulated=$({ qemu-aarch64-static bin/craftlb_modules_linux_aarch64 "$args" || true; } | keys)
[[ $native == "$emulated" ]] || { echo "dist: aarch64 answer differs: $emulated vs $native" >&2; exit 1; }

echo "dist: smoke test of the arm64 bootstrap under qemu on the lifecycle loop"
(
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
)

echo "dist: the two-architecture collection, every module as aarch64 under qemu"
scripts/collection.sh --output dist
tests/collection/run-arm64.sh "dist/craftlb-aws-$(scripts/version.sh).tar.gz"
