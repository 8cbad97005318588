"""Per-module no-change cost (make bench): figures, never assertions.

One play against the emulator. A prelude makes, per module, the resource
the bench task manages plus 20 others of its kind (so "constant calls
whatever the account holds" is visible); then, per module, 10 no-change
tasks interleaved with ansible.builtin.ping. Prints per module: median and
p90 wall time per task, the ratio to ping, and AWS calls per task (from the
emulator's request log, craftlb's calls only).

  modules_bench.py --endpoint URL --bootstrap PATH --work DIR --subnet ID --image AMI
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import timed_play

TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
# The iam_role bench makes this role before the lambda prelude needs it.
ROLE = "arn:aws:iam::123456789012:role/bench"
N_OTHERS = 20
RUNS = 10


RULES = [{"proto": "tcp", "ports": [80, 443], "cidr_ip": "0.0.0.0/0"},
         {"proto": "icmp", "icmp_type": -1, "cidr_ip": "0.0.0.0/0"},
         {"proto": "tcp", "ports": [7777], "group_name": "bench", "rule_desc": "peers"}]
HOOKS = [{"name": "bench-launching", "transition": "autoscaling:EC2_INSTANCE_LAUNCHING", "heartbeat_timeout": 300},
         {"name": "bench-terminating", "transition": "autoscaling:EC2_INSTANCE_TERMINATING",
          "heartbeat_timeout": 300, "notification_meta_data": {"drain_seconds": 60, "ttl": 30}}]
USER_DATA = "#!/bin/bash\nset -euo pipefail\necho craftlb > /etc/motd\n"


def tasks(bootstrap: str, subnet: str, image: str) -> dict[str, tuple[list[dict], dict, list[str]]]:
    """module -> (prelude tasks, the bench task's args, services it calls)."""
    return {
        "route53_healthcheck": (
            [{"route53_healthcheck": {"name": f"other-{i}", "use_unique_names": True, "type": "TCP",
                                      "ip_address": f"52.94.0.{i}", "port": 443}} for i in range(N_OTHERS)],
            {"name": "bench", "use_unique_names": True, "type": "TCP", "ip_address": "52.94.1.1",
             "port": 443, "tags": {"env": "bench"}},
            ["route53"]),
        "iam_role": (
            [{"iam_role": {"name": f"other-{i}", "assume_role_policy_document": TRUST}} for i in range(N_OTHERS)],
            {"name": "bench", "assume_role_policy_document": TRUST,
             "inline_policies": {"logs": {"Version": "2012-10-17", "Statement": [
                 {"Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": "*"}]}},
             "managed_policies": ["arn:aws:iam::aws:policy/ReadOnlyAccess"], "tags": {"env": "bench"}},
            ["iam"]),
        "lambda": (
            [{"lambda": {"name": f"other-{i}", "runtime": "provided.al2023", "handler": "bootstrap",
                         "role": ROLE, "bootstrap_path": bootstrap}} for i in range(N_OTHERS)],
            {"name": "bench", "runtime": "provided.al2023", "handler": "bootstrap", "role": ROLE,
             "bootstrap_path": bootstrap, "timeout": 30, "environment_variables": {"RUST_LOG": "info"},
             "permissions": [{"statement_id": "sns", "principal": "sns.amazonaws.com",
                              "source_arn": "arn:aws:sns:us-east-1:123456789012:bench"}],
             "tags": {"env": "bench"}},
            ["lambda", "sts"]),
        "sns_topic": (
            [{"sns_topic": {"name": f"other-{i}"}} for i in range(N_OTHERS)],
            {"name": "bench", "display_name": "bench",
             "subscriptions": [{"protocol": "lambda",
                                "endpoint": "arn:aws:lambda:us-east-1:123456789012:function:bench"}],
             "tags": {"env": "bench"}},
            ["sns", "sts"]),
        "asg_lifecycle_hook": (
            [{"asg_lifecycle_hook": {"autoscaling_group_name": "mylb-asg", "lifecycle_hook_name": f"other-{i}",
                                     "transition": "autoscaling:EC2_INSTANCE_LAUNCHING"}}
             for i in range(N_OTHERS)],
            {"autoscaling_group_name": "mylb-asg", "lifecycle_hook_name": "bench",
             "transition": "autoscaling:EC2_INSTANCE_TERMINATING", "heartbeat_timeout": 300,
             "notification_meta_data": {"drain_seconds": 60, "ttl": 30}},
            ["autoscaling"]),
        "ec2_security_group": (
            [{"ec2_security_group": {"name": f"other-{i}", "description": "other", "rules": RULES[:1]}}
             for i in range(N_OTHERS)],
            {"name": "bench", "description": "bench", "rules": RULES, "tags": {"env": "bench"}},
            ["ec2"]),
        "ec2_launch_template": (
            [{"ec2_launch_template": {"name": f"other-{i}", "image_id": image, "instance_type": "t3.nano"}}
             for i in range(N_OTHERS)],
            {"name": "bench", "image_id": image, "instance_type": "t3.nano", "user_data": USER_DATA,
             "associate_public_ip_address": True, "iam_instance_profile": "bench",
             "block_device_mappings": [{"device_name": "/dev/xvda", "ebs": {"volume_size": 8, "volume_type": "gp3"}}],
             "tags": {"env": "bench"}},
            ["ec2"]),
        "autoscaling_group": (
            [{"autoscaling_group": {"name": f"other-{i}", "launch_template": {"launch_template_name": "bench"},
                                    "min_size": 0, "max_size": 1, "vpc_zone_identifier": [subnet]}}
             for i in range(N_OTHERS)],
            {"name": "bench", "launch_template": {"launch_template_name": "bench", "version": "1"},
             "min_size": 0, "max_size": 2, "desired_capacity": 0, "vpc_zone_identifier": [subnet],
             "tags": [{"Name": "bench"}, {"domain": "lb.example.com"}], "lifecycle_hooks": HOOKS,
             "instance_refresh": {}},
            ["autoscaling"]),
        "ec2_eip_pool": (
            [{"ec2_eip_pool": {"name": f"other-{i}", "count": 1}} for i in range(N_OTHERS)],
            {"name": "bench", "count": 2, "tags": {"env": "bench"}},
            ["ec2"]),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--subnet", required=True)
    ap.add_argument("--image", required=True)
    args = ap.parse_args()
    work = Path(args.work)
    ep = args.endpoint
    plan = tasks(args.bootstrap, args.subnet, args.image)
    log_dir = work / "logs"
    log_dir.mkdir(exist_ok=True)
    body: list[dict] = [
        # Only the bench's own calls matter here: no AWS delays in the prelude.
        {"name": "no Lambda state delays", "ansible.builtin.uri": {
            "url": f"{ep}/_craftlb/settings", "method": "PUT", "body_format": "json",
            "body": {"lambda_state_seconds": 0}}},
    ]
    for module, (prelude, bench, _) in plan.items():
        body += [{"name": f"prelude {module}", **t} for t in prelude]
        body.append({"name": f"make {module}", module: bench})
    for module, (_, bench, _) in plan.items():
        body.append({"name": f"mark {module}", "ansible.builtin.uri": {
            "url": f"{ep}/_craftlb/requests", "method": "DELETE"}})
        for i in range(RUNS):
            body.append({"name": f"{module} {i}", module: bench})
            body.append({"name": f"ping {module} {i}", "ansible.builtin.ping": {}})
        body.append({"name": f"log {module}", "ansible.builtin.uri": {
            "url": f"{ep}/_craftlb/requests", "return_content": True}, "register": "bench_log"})
        body.append({"name": f"keep {module}", "ansible.builtin.copy": {
            "content": "{{ bench_log.json | to_json }}", "dest": str(log_dir / f"{module}.json"), "mode": "0644"}})
    defaults = {m: {"endpoint_url": ep, "region": "us-east-1"} for m in plan}
    play = [{"name": "Module bench", "hosts": "localhost", "gather_facts": False,
             "module_defaults": defaults, "tasks": body}]
    times = timed_play.run(play, work)
    if times is None:
        return 1

    def stats(prefix: str) -> tuple[float, float]:
        return timed_play.stats(times, prefix)

    ping_med, ping_p90 = stats("ping ")
    print(f"  ansible.builtin.ping:  median {ping_med * 1000:4.0f} ms, p90 {ping_p90 * 1000:4.0f} ms")
    for module, (_, _, services) in plan.items():
        med, p90 = stats(f"{module} ")
        log = json.loads((log_dir / f"{module}.json").read_text())
        ours = [c for c in log if str(c.get("agent", "")).startswith("aws-sdk-rust") and c["service"] in services]
        ops = sorted({c["operation"] for c in ours})
        print(f"  {module:<22} median {med * 1000:4.0f} ms, p90 {p90 * 1000:4.0f} ms, "
              f"{med / ping_med:.2f} x ping, {len(ours) / RUNS:.1f} AWS calls per no-change task "
              f"({N_OTHERS} others of its kind in the account; {', '.join(ops)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
