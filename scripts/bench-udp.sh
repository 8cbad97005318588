#!/usr/bin/env bash
# make bench-udp: UDP (DNS queries) direct to a backend, through a craftlb
# node's kernel table (udp_balancer) and through nginx's stream module, with
# 1 and 100 UDP mappings, in network namespaces (tests/bench/udp_bench.py).
# Figures are printed, never asserted. Needs root (namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
# Bench-only Debian packages: the load generator and the proxy to compare with.
missing=()
command -v dnsperf >/dev/null || missing+=(dnsperf)
[[ -e /usr/lib/nginx/modules/ngx_stream_module.so ]] || missing+=(nginx-light libnginx-mod-stream)
if ((${#missing[@]})); then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
.venv/bin/python tests/bench/udp_bench.py "$@"
