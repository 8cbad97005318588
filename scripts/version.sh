#!/usr/bin/env bash
# The release version: [workspace.package] version in Cargo.toml (the
# collection, its tarball name and the binaries share it).
set -euo pipefail
cd "$(dirname "$0")/.."
v=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
[[ -n $v ]] || { echo "no version in Cargo.toml [workspace.package]" >&2; exit 1; }
echo "$v"
