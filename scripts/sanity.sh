#!/usr/bin/env bash
# The ecosystem's own checks on the collection as installed:
#   scripts/sanity.sh [tarball]   (default: a host-only build of this tree)
# `ansible-test sanity` on the installed craftlb.aws (ansible-test makes a
# venv per test with its own pinned requirements, from PyPI). Ignores, each
# with its reason, are in collection/tests/sanity/ignore-<ansible>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tarball=${1:-}
if [[ -z $tarball ]]; then
  scripts/collection.sh --host-only --output "$work/dist" >/dev/null
  tarball=$(ls "$work"/dist/craftlb-aws-*.tar.gz)
fi
.venv/bin/ansible-galaxy collection install --offline -p "$work" "$tarball" >/dev/null 2>&1
# ansible-test downloads its pip bootstrap from a host this machine cannot
# reach; tests/sanity/get_pip.py does the same from CPython's ensurepip.
pip_version=$(.venv/bin/python -c 'from ansible_test._internal.python_requirements import get_venv_packages as g; import types; print(g(types.SimpleNamespace(version="3.13"))["pip"])')
cache=~/.ansible/test/cache/get_pip_${pip_version//./_}.py
mkdir -p "$(dirname "$cache")"
[[ -f $cache ]] || cp tests/sanity/get_pip.py "$cache"
python=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
cd "$work/ansible_collections/craftlb/aws"
SECONDS=0
"$repo/.venv/bin/ansible-test" sanity --python "$python" --requirements --color no "${@:2}"
echo "sanity: ansible-test sanity passed on the installed collection in ${SECONDS} s"
