#!/usr/bin/env bash
# make bench: figures for the modules, printed (never asserted).
#  1. size of the module binary and of the Lambda
#  2. start-to-exit of the binary rejecting invalid args (no AWS call), hyperfine
#  3. per module: wall time of a no-change task (10 in a play, median, p90)
#     next to ansible.builtin.ping in the same play, and AWS calls per task
#     with 20 other resources of its kind in the account
#  4. launch-lb.yml: from nothing, the no-change rerun, per task vs ping
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
source scripts/emulator-env.sh
trap 'kill $emu_pid 2>/dev/null; wait $emu_pid 2>/dev/null; rm -rf "$emu_dir" "$work"' EXIT
target=$(cat .stamps/target)
out="${CARGO_TARGET_DIR:-target}/$target/release"

echo "== binary sizes"
for f in bin/craftlb-modules "$out/bootstrap" dist/lambda/bootstrap.zip; do
  size=$(stat -c %s "$f")
  awk -v n="$f" -v s="$size" 'BEGIN { printf "  %-60s %9d bytes (%.2f MiB)\n", n, s, s / 1048576 }'
done
echo "  library/: $(ls library | grep -vc '\.yml$') modules, $(du -shL library | cut -f1) with links followed, $(du -sh library | cut -f1) on disk"

echo "== invalid-args start-to-exit (no AWS call)"
echo '{"type": "TCP", "ip_address": "192.0.2.1", "bogus": 1}' > "$work/bad.json"
hyperfine -N --warmup 20 --runs 300 -i --export-json "$work/hf.json" \
  "library/route53_healthcheck $work/bad.json" >/dev/null 2>&1
.venv/bin/python - "$work/hf.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(f"  median {r['median']*1000:.2f} ms, mean {r['mean']*1000:.2f} ms ± {r['stddev']*1000:.2f}, min {r['min']*1000:.2f} ms ({len(r['times'])} runs)")
PY

echo "== no-change tasks against the emulator (10 per module, ping between)"
.venv/bin/python tests/emulator/scenario.py --endpoint "$EMULATOR_URL" world --no-hooks > /dev/null
net=$(.venv/bin/python tests/emulator/scenario.py --endpoint "$EMULATOR_URL" network)
subnet=$(.venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["subnets"][0])' <<<"$net")
image=$(.venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["image_id"])' <<<"$net")
.venv/bin/python tests/bench/modules_bench.py --endpoint "$EMULATOR_URL" --bootstrap "$out/bootstrap" \
  --work "$work" --subnet "$subnet" --image "$image"

echo "== launch-lb.yml"
.venv/bin/python tests/bench/launch_bench.py --endpoint "$EMULATOR_URL" --work "$work" --bootstrap "$out/bootstrap"
