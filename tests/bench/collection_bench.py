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
import sys
from pathlib import Path

import timed_play

CHECK = {"health_check_name": "bench", "use_unique_names": True, "type": "TCP",
         "ip_address": "52.94.1.1", "port": 443}


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
    times = timed_play.run(play, work, ANSIBLE_COLLECTIONS_PATH=args.collections,
                           ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false")
    if times is None:
        return 1

    def stats(prefix: str) -> tuple[float, float]:
        return timed_play.stats(times, prefix)

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
