"""FQCN through the installed collection vs the library/ path (make bench-collection).

One play against the emulator, both ways interleaved: the same no-change
route53_healthcheck task as `craftlb.aws.route53_healthcheck` (action plugin
picks the binary for the host's CPU) and as `route53_healthcheck` from
library/, with ansible.builtin.ping between. Prints the median and p90 wall
time per task of each (figures, never assertions).

  collection_bench.py --endpoint URL --collections DIR --work DIR [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECK = {"health_check_name": "bench", "use_unique_names": True, "type": "TCP",
         "ip_address": "198.51.100.1", "port": 443}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--collections", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    work = Path(args.work)
    body: list[dict] = [{"name": "make the check", "route53_healthcheck": CHECK}]
    for i in range(args.runs):
        # Alternate which goes first, so neither always follows the ping.
        pair = [("fqcn", "craftlb.aws.route53_healthcheck"), ("library", "route53_healthcheck")]
        for label, module in pair if i % 2 == 0 else reversed(pair):
            body.append({"name": f"{label} {i}", module: CHECK})
        body.append({"name": f"ping {i}", "ansible.builtin.ping": {}})
    defaults = {m: {"endpoint_url": args.endpoint, "region": "us-east-1"}
                for m in ("route53_healthcheck", "craftlb.aws.route53_healthcheck")}
    play = [{"name": "FQCN vs library", "hosts": "localhost", "gather_facts": False,
             "module_defaults": defaults, "tasks": body}]
    (work / "play.yml").write_text(json.dumps(play))
    env = dict(os.environ, CRAFTLB_TASK_TIMES=str(work / "times.json"),
               ANSIBLE_COLLECTIONS_PATH=args.collections, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
               ANSIBLE_CALLBACK_PLUGINS=str(ROOT / "tests/bench/callback_plugins"),
               ANSIBLE_CALLBACKS_ENABLED="task_times")
    out = subprocess.run([str(ROOT / ".venv/bin/ansible-playbook"), str(work / "play.yml")], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        print(out.stdout[-4000:], out.stderr[-2000:])
        return 1
    times = json.loads((work / "times.json").read_text())

    def stats(prefix: str) -> tuple[float, float]:
        xs = sorted(t["seconds"] for t in times if t["name"].startswith(prefix))
        return statistics.median(xs), xs[min(len(xs) - 1, round(0.9 * (len(xs) - 1)))]

    ping, _ = stats("ping ")
    lib, lib90 = stats("library ")
    fq, fq90 = stats("fqcn ")
    print(f"  library/route53_healthcheck       median {lib * 1000:4.0f} ms, p90 {lib90 * 1000:4.0f} ms")
    print(f"  craftlb.aws.route53_healthcheck   median {fq * 1000:4.0f} ms, p90 {fq90 * 1000:4.0f} ms "
          f"({fq / lib:.2f}x library)")
    print(f"  ansible.builtin.ping              median {ping * 1000:4.0f} ms ({args.runs} runs each, interleaved)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
