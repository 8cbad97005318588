#!/usr/bin/env bash
# make bench: figures for the modules, printed (never asserted).
#  1. size of each binary in library/
#  2. start-to-exit of a binary rejecting invalid args (no AWS call), hyperfine
#  3. per-task wall time of route53_healthcheck in a 20-task no-change play
#     against the emulator (median, p90) next to ansible.builtin.ping in the
#     same play, and the AWS calls per task with 20 other checks in the account
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
source scripts/emulator-env.sh
trap 'kill $emu_pid 2>/dev/null; wait $emu_pid 2>/dev/null; rm -rf "$emu_dir" "$work"' EXIT

echo "== binary sizes (library/)"
for f in library/*; do
  [[ $f == *.yml ]] && continue
  size=$(stat -c %s "$f")
  awk -v n="$(basename "$f")" -v s="$size" 'BEGIN { printf "  %-28s %9d bytes (%.2f MiB)\n", n, s, s / 1048576 }'
done

echo "== invalid-args start-to-exit (no AWS call)"
echo '{"type": "TCP", "ip_address": "192.0.2.1", "bogus": 1}' > "$work/bad.json"
hyperfine -N --warmup 20 --runs 300 -i --export-json "$work/hf.json" \
  "library/route53_healthcheck $work/bad.json" >/dev/null 2>&1
.venv/bin/python - "$work/hf.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(f"  median {r['median']*1000:.2f} ms, mean {r['mean']*1000:.2f} ms ± {r['stddev']*1000:.2f}, min {r['min']*1000:.2f} ms ({len(r['times'])} runs)")
PY

echo "== 20-task no-change play against the emulator"
{
  echo "- name: Bench"
  echo "  hosts: localhost"
  echo "  gather_facts: false"
  echo "  module_defaults: {route53_healthcheck: {endpoint_url: '$EMULATOR_URL'}}"
  echo "  tasks:"
  for i in $(seq 1 20); do
    echo "    - {name: 'other $i', route53_healthcheck: {name: 'other-$i', use_unique_names: true, type: TCP, ip_address: '192.0.2.$i', port: 443}}"
  done
  echo "    - {name: 'create', route53_healthcheck: {name: bench, use_unique_names: true, type: TCP, ip_address: 198.51.100.1, port: 443, tags: {env: bench}}}"
  echo "    - {name: 'mark', ansible.builtin.uri: {url: '$EMULATOR_URL/_craftlb/requests', method: DELETE}}"
  for i in $(seq 1 20); do
    echo "    - {name: 'r53 $i', route53_healthcheck: {name: bench, use_unique_names: true, type: TCP, ip_address: 198.51.100.1, port: 443, tags: {env: bench}}}"
    echo "    - {name: 'ping $i', ansible.builtin.ping: {}}"
  done
} > "$work/play.yml"
CRAFTLB_TASK_TIMES="$work/times.json" ANSIBLE_CALLBACK_PLUGINS=tests/bench/callback_plugins \
  ANSIBLE_CALLBACKS_ENABLED=task_times .venv/bin/ansible-playbook "$work/play.yml" > "$work/play.log"
curl -sf "$EMULATOR_URL/_craftlb/requests" > "$work/calls.json"
.venv/bin/python - "$work/times.json" "$work/calls.json" <<'PY'
import json, statistics, sys
times = json.load(open(sys.argv[1]))
calls = json.load(open(sys.argv[2]))
def stats(prefix):
    xs = sorted(t["seconds"] for t in times if t["name"].startswith(prefix))
    p90 = xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]
    return statistics.median(xs), p90, len(xs)
r_med, r_p90, n = stats("r53 ")
p_med, p_p90, _ = stats("ping ")
print(f"  route53_healthcheck: median {r_med*1000:.0f} ms, p90 {r_p90*1000:.0f} ms ({n} tasks, no change)")
print(f"  ansible.builtin.ping: median {p_med*1000:.0f} ms, p90 {p_p90*1000:.0f} ms")
print(f"  ratio route53_healthcheck / ping (median): {r_med / p_med:.2f}")
r53 = [c for c in calls if c["service"] == "route53"]
print(f"  AWS calls per no-change task with 21 checks in the account: {len(r53) / n:.1f}"
      f" ({', '.join(sorted(set(c['operation'] for c in r53)))})")
PY
