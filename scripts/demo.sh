#!/usr/bin/env bash
# make demo: health checks for three load balancer nodes on the embedded
# emulator - created, listed, re-run without change, updated, removed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/emulator-env.sh
echo "demo: AWS emulator at $EMULATOR_URL (no AWS account used)"
.venv/bin/ansible-playbook playbooks/demo-healthchecks.yml -e "emulator_url=$EMULATOR_URL"
