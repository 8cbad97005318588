#!/usr/bin/env bash
# Installs everything craftlb's build, demo and tests need. Idempotent: a
# second run on a set-up machine only checks. Runs as root on a fresh Debian
# machine (CI); as another user it skips apt and says what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

STAMPS=.stamps
mkdir -p "$STAMPS"
log() { printf 'setup: %s\n' "$*"; }

# --- Debian packages -------------------------------------------------------
# musl-tools: static x86_64 binaries (aws-lc-sys compiles C through cc).
# haproxy: the load balancer the roles configure and the tests run.
# hyperfine: make bench. curl: the demo and tests talk to the emulator.
# zip: the Lambda's deployment package. wrk: load for the node tests and make bench-lb.
# openssl: test certificates for the TLS backends.
# nftables, conntrack: the UDP mappings' data path (udp_balancer); dnsmasq-base
# and bind9-dnsutils (dig): real DNS servers and queries through it (tests, demo).
# mmdebstrap, systemd-container: the node's OS booted for a test (a Debian
# trixie root with haproxy 3.0 and systemd, scripts/node-root.sh).
PKGS=(musl-tools haproxy hyperfine curl zip wrk openssl nftables conntrack dnsmasq-base bind9-dnsutils mmdebstrap systemd-container)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "WARNING: missing Debian packages (need root to install): ${missing[*]}"
  fi
fi

# --- Rust target -------------------------------------------------------------
# Static musl binaries. `rustup target add` downloads outside the package
# registries; when it cannot, fall back to glibc with crt-static, which is
# also static (and avoids Debian glibc symbols Amazon Linux 2023 lacks).
target=x86_64-unknown-linux-musl
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  if ! rustup target add "$target" >/dev/null 2>&1 || ! command -v musl-gcc >/dev/null; then
    log "WARNING: $target unavailable; building static glibc binaries instead"
    target=x86_64-unknown-linux-gnu
  fi
fi
echo "$target" > "$STAMPS/target"

# --- Python venv (tests and Ansible only) ----------------------------------
# Newest ansible-core needs Python >= 3.12: use pyenv's 3.13 when present.
py=""
if command -v pyenv >/dev/null 2>&1; then
  for v in "$(pyenv root)"/versions/3.13.*; do
    [[ -x "$v/bin/python3" ]] && py="$v/bin/python3"
  done
fi
lock=requirements.lock
if [[ -z $py ]]; then
  py=$(command -v python3)
  if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
    log "WARNING: no Python >= 3.12; using $("$py" -V) with ansible-core 2.18 (requirements-py311.txt)"
    lock=requirements-py311.txt
  fi
fi
want="$("$py" -V 2>&1) $(sha256sum "$lock" | cut -d' ' -f1)"
if [[ ! -x .venv/bin/python || "$(cat .venv/.craftlb-stamp 2>/dev/null)" != "$want" ]]; then
  log "creating .venv with $("$py" -V 2>&1) from $lock"
  rm -rf .venv
  "$py" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r "$lock"
  echo "$want" > .venv/.craftlb-stamp
fi
# --- The node's Ansible: ansible-core 2.15.3 on Python 3.9 (Amazon Linux 2023)
node_py=""
if command -v pyenv >/dev/null 2>&1; then
  for v in "$(pyenv root)"/versions/3.9.*; do
    [[ -x "$v/bin/python3" ]] && node_py="$v/bin/python3"
  done
fi
if [[ -z $node_py ]]; then
  log "WARNING: no Python 3.9 (pyenv): the node-OS test (nodeos::) cannot run"
else
  want="$("$node_py" -V 2>&1) $(sha256sum requirements-node.txt | cut -d' ' -f1)"
  if [[ ! -x .venv-node/bin/python || "$(cat .venv-node/.craftlb-stamp 2>/dev/null)" != "$want" ]]; then
    log "creating .venv-node with $("$node_py" -V 2>&1) from requirements-node.txt"
    rm -rf .venv-node
    "$node_py" -m venv .venv-node
    .venv-node/bin/pip install -q --disable-pip-version-check -r requirements-node.txt
    echo "$want" > .venv-node/.craftlb-stamp
  fi
fi
# (sed reads to the end: head would close the pipe under ansible's feet.)
log "ok: target $target, $(.venv/bin/python -V), $(.venv/bin/ansible --version | sed -n 1p)"
