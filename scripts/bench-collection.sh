#!/usr/bin/env bash
# make bench-collection: the installed collection's size, and a task by FQCN
# (action plugin + binary for the host's CPU) vs the same task from library/.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
source scripts/emulator-env.sh
trap 'kill $emu_pid 2>/dev/null; wait $emu_pid 2>/dev/null; rm -rf "$emu_dir" "$work"' EXIT
version=$(scripts/version.sh)
two=dist/craftlb-aws-$version.tar.gz
if [[ -f $two ]]; then tarball=$two; else
  scripts/collection.sh --host-only --output "$work/dist" >/dev/null
  tarball=$work/dist/craftlb-aws-$version.tar.gz
fi
.venv/bin/ansible-galaxy collection install --offline -p "$work/collections" "$tarball" >/dev/null 2>&1
echo "== the collection: $tarball"
echo "  tarball $(stat -c %s "$tarball") bytes; installed $(du -sb "$work/collections/ansible_collections/craftlb/aws" | cut -f1) bytes"
for f in "$work"/collections/ansible_collections/craftlb/aws/dist/modules/* "$work"/collections/ansible_collections/craftlb/aws/dist/lambda/*/bootstrap; do
  echo "  ${f#"$work"/collections/ansible_collections/craftlb/aws/}: $(stat -c %s "$f") bytes"
done
echo "== a no-change task by FQCN vs from library/ (one play, interleaved)"
mkdir -p "$work/run"
.venv/bin/python tests/bench/collection_bench.py --endpoint "$EMULATOR_URL" --collections "$work/collections" --work "$work/run"
