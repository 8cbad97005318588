"""launch-lb.yml on the emulator: wall time from nothing and of the no-change
rerun, each task of the rerun next to ansible.builtin.ping in the same run,
the slowest tasks, and the AWS calls the rerun makes. Figures, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PINGS = 10


def scenario(endpoint: str, *args: str) -> dict:
    out = subprocess.run([str(ROOT / ".venv/bin/python"), str(ROOT / "tests/emulator/scenario.py"),
                          "--endpoint", endpoint, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--bootstrap", required=True)
    args = ap.parse_args()
    zone = scenario(args.endpoint, "zone", "--name", "example.test")
    net = scenario(args.endpoint, "network")
    extra = {"subnets": net["subnets"], "hosted_zone_id": zone["hosted_zone_id"], "image_id": net["image_id"],
             "endpoint_url": args.endpoint, "update_route53_from_lambda_bootstrap": args.bootstrap,
             "autoscaling_bundle_dir": str(args.work / "bundle")}
    (args.work / "extra.json").write_text(json.dumps(extra))
    # The launch, then ping as the yardstick, in one ansible-playbook run.
    play = [{"ansible.builtin.import_playbook": str(ROOT / "playbooks/launch-lb.yml")},
            {"name": "Ping", "hosts": "localhost", "gather_facts": False,
             "tasks": [{"name": f"ping {i}", "ansible.builtin.ping": {}} for i in range(PINGS)]}]
    (args.work / "bench.yml").write_text(json.dumps(play))

    def run(label: str) -> list[dict]:
        times = args.work / f"{label}.json"
        env = dict(os.environ, CRAFTLB_TASK_TIMES=str(times),
                   ANSIBLE_CALLBACK_PLUGINS=str(ROOT / "tests/bench/callback_plugins"),
                   ANSIBLE_CALLBACKS_ENABLED="task_times")
        started = time.monotonic()
        out = subprocess.run([str(ROOT / ".venv/bin/ansible-playbook"), str(args.work / "bench.yml"),
                              "-e", f"server_config={ROOT / 'tests/e2e/e2e.yml'}",
                              "-e", f"@{args.work / 'extra.json'}"], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=False)
        wall = time.monotonic() - started
        if out.returncode != 0:
            print(out.stdout[-4000:], out.stderr[-2000:])
            raise SystemExit(f"{label} failed")
        recap = [line for line in out.stdout.splitlines() if line.startswith("localhost")][-1]
        print(f"  {label:<18} {wall:6.1f} s wall   {recap.split(':', 1)[1].split('unreachable')[0].strip()}")
        return json.loads(times.read_text())

    print("== launch-lb.yml on the emulator (tests/e2e/e2e.yml: 1 instance, registered by the Lambda)")
    run("from nothing")
    urllib.request.urlopen(urllib.request.Request(f"{args.endpoint}/_craftlb/requests", method="DELETE"))
    times = run("no-change rerun")
    log = json.loads(urllib.request.urlopen(f"{args.endpoint}/_craftlb/requests").read())
    ours = [c["operation"] for c in log if str(c.get("agent", "")).startswith("aws-sdk-rust")]
    pings = [t["seconds"] for t in times if t["name"].startswith("ping ")]
    tasks = [t for t in times if not t["name"].startswith("ping ")]
    modules = [t for t in tasks if not t["action"].startswith(("ansible.builtin.", "include", "import"))]
    ping = statistics.median(pings)
    print(f"  ansible.builtin.ping: median {ping * 1000:.0f} ms ({PINGS} in the same run)")
    print(f"  every task of the rerun ({len(tasks)}): median {statistics.median(t['seconds'] for t in tasks) * 1000:.0f} ms"
          f" ({statistics.median(t['seconds'] for t in tasks) / ping:.2f} x ping)")
    print(f"  craftlb module tasks ({len(modules)}): median {statistics.median(t['seconds'] for t in modules) * 1000:.0f} ms"
          f" ({statistics.median(t['seconds'] for t in modules) / ping:.2f} x ping)")
    print(f"  AWS calls in the rerun: {len(ours)}, writes: "
          f"{[o for o in ours if not o.startswith(('Describe', 'List', 'Get', 'Head'))]}")
    print("  slowest tasks of the rerun:")
    for t in sorted(tasks, key=lambda t: -t["seconds"])[:5]:
        print(f"    {t['seconds'] * 1000:6.0f} ms  {t['action']:<34} {t['name']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
