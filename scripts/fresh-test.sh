#!/usr/bin/env bash
# `make test` as a fresh machine runs it, on this machine:
#   scripts/fresh-test.sh [--keep] [make target ...]   (default: CI's .ci/run)
# A fresh clone of HEAD (commit first: uncommitted work is not in it), an
# empty CARGO_HOME (the crates.io registry is downloaded again), an empty
# target directory, a new venv, and an empty HOME (no pip or ansible-test
# caches, no ~/.ansible). What stays is what a fresh machine has too: the
# rustup toolchains, pyenv's Pythons and Debian's packages (setup installs
# the ones it needs; this script cannot uninstall them). Prints the wall time.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
keep=0
if [[ ${1:-} == --keep ]]; then keep=1; shift; fi
base=$(mktemp -d /var/tmp/craftlb-fresh.XXXXXX)
cleanup() {
  if ((keep)); then echo "fresh-test: kept $base"; else rm -rf "$base"; fi
}
trap cleanup EXIT
mkdir -p "$base/home" "$base/cargo-home" "$base/target"
git clone -q --no-local "$repo" "$base/clone"
rev=$(git -C "$base/clone" rev-parse --short HEAD)
if [[ -n $(git -C "$repo" status --porcelain --untracked-files=no) ]]; then
  echo "fresh-test: WARNING: uncommitted changes in $repo are not in the clone (HEAD $rev)"
fi
# rustup's proxies (cargo, rustc) and pyenv stay where the machine has them.
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
pyenv_root=${PYENV_ROOT:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")}
path="$HOME/.cargo/bin:$pyenv_root/bin:$pyenv_root/shims:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
cmd=(.ci/run)
(($#)) && cmd=(make "$@")
echo "fresh-test: $rev in $base/clone: ${cmd[*]} (log: $base/log)"
start=$(date +%s)
set +e
env -i \
  HOME="$base/home" PATH="$path" LANG=C.UTF-8 TERM=dumb \
  RUSTUP_HOME="$rustup_home" PYENV_ROOT="$pyenv_root" \
  CARGO_HOME="$base/cargo-home" CARGO_TARGET_DIR="$base/target" \
  bash -c 'cd "$1" && shift && "$@"' _ "$base/clone" "${cmd[@]}" >"$base/log" 2>&1
rc=$?
set -e
secs=$(($(date +%s) - start))
tail -n 25 "$base/log"
cp "$base/log" "/var/tmp/craftlb-fresh-$rev.log"
echo "fresh-test: ${cmd[*]} on a fresh clone of $rev: exit $rc after $((secs / 60)) min $((secs % 60)) s (log kept at /var/tmp/craftlb-fresh-$rev.log)"
exit $rc
