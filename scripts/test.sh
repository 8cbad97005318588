#!/usr/bin/env bash
# make test's parts, each run even when one before it failed, so a failing
# report lists every failure (a cargo test run stops at the first failing
# test binary without --no-fail-fast, and hid the rest that way once).
#   scripts/test.sh            lint, cargo test, molecule
#   scripts/test.sh lint|molecule
set -uo pipefail
cd "$(dirname "$0")/.."
failed=()
step() {
  local name=$1; shift
  local start=$SECONDS
  echo "test: --- $name"
  if "$@"; then
    echo "test: ok $name ($((SECONDS - start)) s)"
  else
    echo "test: FAILED $name ($((SECONDS - start)) s)"
    failed+=("$name")
  fi
}
molecule_in() { (cd "roles/$1" && PATH="$PWD/../../.venv/bin:$PATH" molecule test); }

parts=("${@:-all}")
for part in "${parts[@]}"; do
  case $part in
    lint|all)
      step "cargo fmt" cargo fmt --all -- --check
      step "clippy" scripts/cargo.sh clippy --all-targets -- -D warnings
      step "ansible-lint" .venv/bin/ansible-lint --profile production --offline -q playbooks roles tests/integration
      step "ansible-test sanity" scripts/sanity.sh
      ;;&
    all)
      step "cargo test" scripts/cargo.sh test --no-fail-fast
      ;;&
    molecule|all)
      for role in loadbalancer update_route53_from_lambda autoscaling; do
        step "molecule $role" molecule_in "$role"
      done
      ;;
    lint) ;;
    *) echo "test: unknown part '$part'" >&2; exit 2 ;;
  esac
done
if ((${#failed[@]})); then
  echo "test: FAILED (${#failed[@]}): ${failed[*]}"
  exit 1
fi
echo "test: all passed (${SECONDS} s)"
