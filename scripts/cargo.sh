#!/usr/bin/env bash
# cargo with craftlb's one profile and target, so tests reuse every artifact
# the binaries were built with (see Cargo.toml [profile.release]).
set -euo pipefail
cd "$(dirname "$0")/.."
target=$(cat .stamps/target 2>/dev/null || echo x86_64-unknown-linux-musl)
if [[ $target == *-gnu ]]; then
  # Explicit --target keeps these flags off build scripts and proc macros.
  export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static"
fi
sub=$1; shift
exec cargo "$sub" --release --locked --target "$target" "$@"
