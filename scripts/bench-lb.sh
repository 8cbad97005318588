#!/usr/bin/env bash
# make bench-lb: figures for a load balancer node, printed (never asserted).
#  1. tests/bench/lb_scale_bench.py: req/s and the proxy's CPU per request
#     with this machine's haproxy and with haproxy 3.0 (Debian trixie's, in
#     a root from scripts/node-root.sh; BENCH_HAPROXY_3=0 leaves it out)
#     through nodes mapping 1, 100 and 10,000 domains and through a bare
#     haproxy proxy, keep-alive and a new connection per request; the node
#     with per-request logs and stickiness off; haproxy -c and reload time at
#     10,000 domains; then the same proxies' instructions per request under
#     callgrind (deterministic, so 5 % differences show)
#  2. failed requests under load across 20 peer-change reloads
#  3. update_peers wall time (hyperfine) when nothing changed and when a
#     peer changed, against the emulator's group (IMDS included)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
source scripts/emulator-env.sh
pids=()
cleanup() {
  for p in "$work"/backends.pid "$work"/node/run/haproxy.pid; do
    [[ -s $p ]] && kill "$(head -n 1 "$p")" 2>/dev/null || true
  done
  kill $emu_pid 2>/dev/null; wait $emu_pid 2>/dev/null
  rm -rf "$emu_dir" "$work"
}
trap cleanup EXIT
S=(.venv/bin/python tests/emulator/scenario.py --endpoint "$EMULATOR_URL")
CONNS=${BENCH_CONNECTIONS:-32}

echo "== versions"
echo "  $(haproxy -v | head -n 1)"
echo "  $(wrk -v 2>&1 | head -n 1)"
echo "  $(nproc) CPUs"

# valgrind is a bench-only Debian package, here and in the root.
if ! command -v valgrind >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi
# haproxy 3.0 beside this machine's (Amazon Linux 2023 ships 2.8 and 3.0):
# Debian trixie's, in the node tests' root with valgrind added; every proxy
# of part 1 runs on both, in the same rounds.
root=
if [[ ${BENCH_HAPROXY_3:-1} == 1 ]]; then
  root_tar=$(scripts/node-root.sh valgrind)
  root=$work/root
  mkdir -p "$root"
  tar -C "$root" -xf "$root_tar"
  echo "  $(chroot "$root" /usr/sbin/haproxy -v | head -n 1) (in $root_tar)"
fi
.venv/bin/python tests/bench/lb_scale_bench.py ${root:+--root "$root"}
# The same proxies' instructions per request (callgrind: unaffected by the
# VM's CPU steal).
.venv/bin/python tests/bench/lb_scale_bench.py --callgrind "${BENCH_CALLGRIND_REQUESTS:-4000}" ${root:+--root "$root"}

# The node: instance 1 of a 3-instance group whose private IPs are loopback addresses.
"${S[@]}" world --no-hooks --group bench-asg --subnet-cidr 127.80.1.0/24 >/dev/null
"${S[@]}" scale --group bench-asg --desired 3 >/dev/null
"${S[@]}" wait --group bench-asg --in-service 3 > "$work/group.json"
read -r id ip < <(.venv/bin/python -c 'import json,sys; i=json.load(open(sys.argv[1]))["instances"][0]; print(i["id"], i["private_ip"])' "$work/group.json")
imds="$EMULATOR_URL/_craftlb/imds/$id"

backend=127.80.0.1
# start_haproxy NAME PROXY-SECTIONS: a minimal haproxy daemon for the bench.
start_haproxy() {
  printf 'global\n    maxconn 4000\ndefaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n%s\n' \
    "$2" > "$work/$1.cfg"
  haproxy -D -p "$work/$1.pid" -f "$work/$1.cfg"
}
start_haproxy backends "frontend backend
    bind $backend:8080
    http-request return status 200 content-type text/plain string backend"
mkdir -p "$work/node"
cat > "$work/node/vars.json" <<JSON
{"loadbalancer_service_manager": "process",
 "loadbalancer_config_dir": "$work/node/etc", "loadbalancer_run_dir": "$work/node/run",
 "loadbalancer_craftlb_dir": "$work/node/opt", "loadbalancer_chroot": "$work/node/chroot",
 "loadbalancer_update_peers_binary": "$PWD/library/update_peers",
 "loadbalancer_http_bind": "$ip:8080", "loadbalancer_https_bind": "$ip:8443",
 "loadbalancer_stats_bind": "$ip:9999", "loadbalancer_stats_password": "bench-only",
 "loadbalancer_peer_port": 17777, "loadbalancer_maxconn": 4000,
 "loadbalancer_endpoint_url": "$EMULATOR_URL",
 "lb_mappings": [{"name": "app", "domains": ["app.example.com"], "servers": ["$backend"],
                  "http_port": 8080, "https_port": null}]}
JSON
AWS_EC2_METADATA_SERVICE_ENDPOINT="$imds" .venv/bin/ansible-playbook playbooks/deploy.yml \
  -e "server_config=$work/node/vars.json" > "$work/deploy.log" || { cat "$work/deploy.log"; exit 1; }

echo "== 20 peer-change reloads under load (update_peers, static peers toggled)"
# update_peers validates with the files haproxy loads besides the peers file:
# the list the role wrote for the unit, so a file the role adds is not missed.
validate=$(for f in $(sed -n 's/^CRAFTLB_HAPROXY_FILES=//p' "$work/node/opt/haproxy.env"); do
  [[ $f == -f || $f == */peers.cfg ]] || printf '"%s",' "$f"
done)
validate="[${validate%,}]"
[[ $validate != "[]" ]] || { echo "bench-lb: no haproxy files in $work/node/opt/haproxy.env" >&2; exit 1; }
args() { # with or without a second peer
  local peers="{\"name\": \"$id\", \"address\": \"$ip\"}"
  [[ $1 == 2 ]] && peers="$peers, {\"name\": \"i-bench\", \"address\": \"127.80.1.250\"}"
  echo "{\"peers_file\": \"$work/node/etc/peers.cfg\", \"validate_with\": $validate,
         \"master_pidfile\": \"$work/node/run/haproxy.pid\", \"local_peer\": \"$id\", \"peers\": [$peers]}"
}
args 1 > "$work/one.json"; args 2 > "$work/two.json"
wrk -t2 -c"$CONNS" -d15s -H 'Host: app.example.com' "http://$ip:8080/" > "$work/reload.txt" &
wrk_pid=$!
sleep 1
reloads=0
for i in $(seq 1 20); do
  f=$work/one.json; (( i % 2 )) && f=$work/two.json
  out=$(library/update_peers "$f" || true)
  if grep -q '"reloaded":true' <<<"$out"; then
    reloads=$((reloads + 1))
  else
    echo "  update_peers did not reload: $out" >&2
  fi
  sleep 0.5
done
wait $wrk_pid
echo "  reloads done: $reloads; requests: $(awk '/requests in/ {print $1}' "$work/reload.txt"); failed: $(grep -E 'Socket errors|Non-2xx' "$work/reload.txt" || echo none)"
# A run without its reloads measures nothing: fail rather than print it.
(( reloads == 20 )) || { echo "bench-lb: $reloads of 20 reloads happened" >&2; exit 1; }

echo "== update_peers wall time against the emulator (3-instance group, IMDSv2)"
cat > "$work/group-args.json" <<JSON
{"peers_file": "$work/node/etc/peers.cfg", "validate_with": $validate,
 "master_pidfile": "$work/node/run/haproxy.pid", "endpoint_url": "$EMULATOR_URL"}
JSON
export AWS_EC2_METADATA_SERVICE_ENDPOINT="$imds"
unset AWS_REGION
library/update_peers "$work/group-args.json" > /dev/null
hyperfine -N --warmup 3 --runs 30 --export-json "$work/nochange.json" \
  "library/update_peers $work/group-args.json" > /dev/null 2>&1
hyperfine --warmup 1 --runs 20 --export-json "$work/changed.json" \
  --prepare "sed -i '\$d' $work/node/etc/peers.cfg" \
  "library/update_peers $work/group-args.json" > /dev/null 2>&1
.venv/bin/python - "$work/nochange.json" "$work/changed.json" <<'PY'
import json, sys
for label, path in (("nothing changed", sys.argv[1]), ("a peer changed (write + haproxy -c + reload)", sys.argv[2])):
    r = json.load(open(path))["results"][0]
    t = sorted(r["times"])
    p90 = t[int(len(t) * 0.9) - 1]
    print(f"  {label:46s} median {r['median']*1000:6.1f} ms  p90 {p90*1000:6.1f} ms  ({len(t)} runs)")
PY
