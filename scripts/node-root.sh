#!/usr/bin/env bash
# The node's OS for the tests that boot one (modules/tests/suite/nodeos.rs):
# a Debian trixie root from Debian's packages, with haproxy 3.0 (what Amazon
# Linux 2023 ships since AL2023.8.20250908) and systemd 257, booted with
# systemd-nspawn. Built once per package list and kept outside the clone;
# prints the tarball's path. Arguments: more packages (make bench-lb adds
# valgrind, to count haproxy 3.0's instructions in the same root).
#
# Like Amazon Linux 2023's haproxy package, the root has no tmpfiles.d entry
# for /run/haproxy: Debian's (which made a unit without RuntimeDirectory look
# fine after a reboot) is deleted.
set -euo pipefail
cache=${CRAFTLB_NODE_ROOT_CACHE:-/var/tmp/craftlb-node-root}
suite=trixie
mirror=${CRAFTLB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# python3-apt: base_system's package task (apt) on this Debian root.
pkgs=(systemd systemd-sysv dbus haproxy python3 python3-apt iproute2 curl procps ca-certificates "$@")
key=$( { echo "$suite"; printf '%s\n' "${pkgs[@]}"; echo v1; } | sha256sum | cut -c1-12)
tar="$cache/$suite-$key.tar"
if [[ -s $tar ]]; then
  echo "$tar"
  exit 0
fi
command -v mmdebstrap >/dev/null || { echo "node-root: mmdebstrap is missing (make setup installs it)" >&2; exit 1; }
mkdir -p "$cache"
tmp=$(mktemp "$cache/.$suite-$key.XXXXXX")
trap 'rm -f "$tmp"' EXIT
mmdebstrap --quiet --variant=minbase --format=tar \
  --include="$(IFS=,; echo "${pkgs[*]}")" \
  --customize-hook='rm -f "$1/usr/lib/tmpfiles.d/haproxy.conf"' \
  "$suite" "$tmp" "$mirror" >&2
mv "$tmp" "$tar"
trap - EXIT
echo "$tar"
