#!/usr/bin/env bash
# make bench-build: the release profile's levers, each measured on a cold
# target directory (figures, never assertions; ~8-15 min per lever on 2 cores):
#   wall time and peak memory of `cargo build --workspace --bins` (one build
#   of the SDK crates for the modules and the Lambda), the two binaries'
#   sizes, the module binary's start-to-exit (invalid args, no AWS call) and
#   a module's no-change call against the emulator (aws_caller_info: one
#   STS round trip), both with hyperfine.
#   BENCH_LEVERS="fat thin off ..." picks levers (default: all below).
# A lever is a set of CARGO_PROFILE_RELEASE_* overrides of Cargo.toml's one
# release profile; "fat" is Cargo.toml as it stands.
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A levers=(
  [fat]=""
  [thin]="CARGO_PROFILE_RELEASE_LTO=thin"
  [off]="CARGO_PROFILE_RELEASE_LTO=false"
  [thin-cgu16]="CARGO_PROFILE_RELEASE_LTO=thin CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16"
  [off-cgu16]="CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16"
)
order=(${BENCH_LEVERS:-fat thin off thin-cgu16 off-cgu16})
base=${BENCH_BUILD_DIR:-/var/tmp/craftlb-bench-build}
# GNU time is a bench-only Debian package.
[[ -x /usr/bin/time ]] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
work=$(mktemp -d)
source scripts/emulator-env.sh
trap 'kill $emu_pid 2>/dev/null; wait $emu_pid 2>/dev/null; rm -rf "$emu_dir" "$work"' EXIT
target=$(cat .stamps/target)
echo '{"type": "TCP", "ip_address": "192.0.2.1", "bogus": 1}' > "$work/bad.json"
echo "{\"region\": \"us-east-1\", \"endpoint_url\": \"$EMULATOR_URL\"}" > "$work/caller.json"
printf '%-11s %9s %9s %12s %12s %12s %12s\n' lever "build s" "peak GiB" "modules MB" "lambda MB" "start ms" "no-change ms"
for lever in "${order[@]}"; do
  [[ -v levers[$lever] ]] || { echo "bench-build: unknown lever $lever (${!levers[*]})" >&2; exit 2; }
  dir=$base/$lever
  rm -rf "$dir"
  start=$EPOCHREALTIME
  # Peak memory: GNU time's maximum resident set of cargo and every rustc
  # and linker it waited for (the largest one: a fat LTO link).
  if ! env ${levers[$lever]} CARGO_TARGET_DIR="$dir" /usr/bin/time -o "$work/time" -f '%M' \
      scripts/cargo.sh build --workspace --bins > "$work/build.log" 2>&1; then
    tail -n 30 "$work/build.log" >&2
    echo "bench-build: the $lever build failed" >&2
    exit 1
  fi
  took=$(.venv/bin/python -c "print($EPOCHREALTIME - $start)")
  out=$dir/$target/release
  mkdir -p "$work/lib"
  ln -sf "$out/craftlb-modules" "$work/lib/route53_healthcheck"
  ln -sf "$out/craftlb-modules" "$work/lib/aws_caller_info"
  hyperfine -N --warmup 20 --runs 200 -i --export-json "$work/start.json" \
    "$work/lib/route53_healthcheck $work/bad.json" >/dev/null 2>&1
  hyperfine -N --warmup 5 --runs 100 --export-json "$work/call.json" \
    "$work/lib/aws_caller_info $work/caller.json" >/dev/null 2>&1
  .venv/bin/python - "$lever" "$took" "$(cat "$work/time")" "$out" "$work" <<'PY'
import json, os, sys
lever, took, kib, out, work = sys.argv[1:]
med = lambda f: json.load(open(f"{work}/{f}"))["results"][0]["median"] * 1000
size = lambda f: os.stat(f"{out}/{f}").st_size / 1e6
print(f"{lever:11s} {float(took):9.0f} {int(kib) / 1048576:9.2f} {size('craftlb-modules'):12.2f} "
      f"{size('bootstrap'):12.2f} {med('start.json'):12.2f} {med('call.json'):12.2f}")
PY
  rm -rf "$dir"
done
