#!/usr/bin/env bash
# tests/collection/run-arm64.sh <craftlb-aws-*.tar.gz>: installs the two-
# architecture collection in a temporary directory and runs fqcn.yml there
# with craftlb_module_arch=aarch64, so the action plugin sends every module
# its aarch64 binary; binfmt_misc hands those to qemu-aarch64-static. Passes
# when the play passes and every module task ran the aarch64 file. Needs
# root (binfmt_misc); registers qemu-aarch64 for the run only if it was not.
set -euo pipefail
cd "$(dirname "$0")/../.."
tarball=$(realpath "$1")
repo=$PWD
binfmt=/proc/sys/fs/binfmt_misc
work=$(mktemp -d)
registered=false
cleanup() {
  if $registered; then echo -1 > "$binfmt/qemu-aarch64"; fi
  rm -rf "$work"
}
trap cleanup EXIT
if [[ ! -e $binfmt/register ]]; then
  mkdir -p "$binfmt" && mount -t binfmt_misc binfmt_misc "$binfmt" \
    || { echo "run-arm64: cannot mount binfmt_misc (needs root)" >&2; exit 1; }
fi
if [[ ! -e $binfmt/qemu-aarch64 ]]; then
  cat /usr/lib/binfmt.d/qemu-aarch64.conf > "$binfmt/register"
  registered=true
fi

"$repo/.venv/bin/ansible-galaxy" collection install --offline -p "$work/collections" "$tarball" > "$work/install.log" 2>&1 \
  || { cat "$work/install.log"; exit 1; }
coll=$work/collections/ansible_collections/craftlb/aws
mkdir -p "$work/play/src"
cp tests/collection/*.yml "$work/play/"
echo hello > "$work/play/src/hello.txt"
(
  source scripts/emulator-env.sh
  unset ANSIBLE_CONFIG
  net=$(.venv/bin/python tests/emulator/scenario.py --endpoint "$EMULATOR_URL" network)
  subnets=$(.venv/bin/python -c 'import json,sys; print(json.dumps({"subnets": json.loads(sys.argv[1])["subnets"]}))' "$net")
  image=$(.venv/bin/python -c 'import json,sys; print(json.loads(sys.argv[1])["image_id"])' "$net")
  cd "$work/play"
  SECONDS=0
  ANSIBLE_COLLECTIONS_PATH=$work/collections ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false ANSIBLE_NOCOLOR=1 \
    "$repo/.venv/bin/ansible-playbook" -vvv fqcn.yml -e "emulator_url=$EMULATOR_URL" -e "$subnets" \
      -e "image_id=$image" -e "work=$work/play" -e craftlb_module_arch=aarch64 \
      -e lambda_architecture=arm64 -e "bootstrap=$coll/dist/lambda/arm64/bootstrap" > "$work/log" 2>&1 \
    || { tail -80 "$work/log"; echo "run-arm64: fqcn.yml failed with the aarch64 modules" >&2; exit 1; }
  arm=$(grep -c "Using module file .*/dist/modules/craftlb_modules_linux_aarch64" "$work/log" || true)
  x86=$(grep -c "Using module file .*/dist/modules/craftlb_modules_linux_x86_64" "$work/log" || true)
  recap=$(grep -E "^localhost +:" "$work/log")
  echo "run-arm64: $arm module runs as aarch64 under qemu, $x86 as x86_64, ${SECONDS} s: $recap"
  [[ $x86 -eq 0 && $arm -ge 50 ]] && grep -q "failed=0" <<<"$recap" \
    || { echo "run-arm64: expected only aarch64 module runs (at least 50)" >&2; exit 1; }
)
