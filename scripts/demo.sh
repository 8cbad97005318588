#!/usr/bin/env bash
# make demo: the real launch-lb.yml -e server_config=mylb on the embedded
# emulator (no AWS account), nodes booted from their user data with haproxy
# on loopback, real HTTP and TLS requests through them, scale out and in
# (with drain), teardown. See tests/demo/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/emulator-env.sh
work=$(mktemp -d)
trap 'kill $emu_pid 2>/dev/null; wait $emu_pid 2>/dev/null; rm -rf "$emu_dir" "$work"' EXIT
echo "demo: AWS emulator at $EMULATOR_URL (no AWS account used); nodes and backends on 127.0.100.x / 127.0.101.x"
# Only the stats password's hash reaches the nodes (see README, Secrets).
export CRAFTLB_STATS_PASSWORD="${CRAFTLB_STATS_PASSWORD:-demo-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')}"
.venv/bin/python tests/demo/demo.py --endpoint "$EMULATOR_URL" --work "$work" --config mylb
