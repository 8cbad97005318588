"""make bench-lambda: figures for the lifecycle Lambda on the emulator.

  lambda_bench.py --endpoint URL --bootstrap PATH calls|burst

calls: a zone that also holds 10,000 unrelated records and 1,000 unrelated
  health checks; 10 launches and 10 terminations through the real lifecycle
  loop, one at a time. Prints AWS calls per event, handler latency p50/p99, cold init,
  peak RSS.
burst: 100 launches then 50 terminations, 20 % of notifications delivered
  twice, in shuffled order, with 30 % of the Lambda's AWS calls throttled.
  Prints the time to converge, throttled calls retried, and checks the final
  state (records = health checks = InService instances, every lifecycle
  action completed exactly once).
Figures are printed, never asserted; the state check exits 1 if wrong.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3

HERE = Path(__file__).resolve().parent
SCENARIO = HERE.parent / "emulator" / "scenario.py"
GROUP = "mylb-asg"


def ctl(endpoint: str, path: str, method: str = "GET", body: object | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{endpoint}{path}", method=method, data=data)
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def scenario(endpoint: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, str(SCENARIO), "--endpoint", endpoint, *args],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def client(endpoint: str, service: str):  # noqa: ANN201
    return boto3.client(service, region_name="us-east-1", endpoint_url=endpoint,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def settle(endpoint: str, timeout: float = 600) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        inv = ctl(endpoint, "/_craftlb/lambda/invocations")
        if all(i["status"] != "running" for i in inv) or time.monotonic() > deadline:
            return inv
        time.sleep(0.3)


def reports(invocations: list[dict]) -> list[dict]:
    out = []
    for inv in invocations:
        for line in inv.get("logs", []):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


def wait_in_service(endpoint: str, n: int, timeout: float) -> None:
    out = scenario(endpoint, "wait", "--in-service", str(n), "--timeout", str(timeout))
    if out.get("timeout"):
        raise SystemExit(f"group did not reach {n} InService in {timeout} s")


def calls(args: argparse.Namespace) -> None:
    ep = args.endpoint
    world = scenario(ep, "world", "--bootstrap", args.bootstrap)
    r53 = client(ep, "route53")
    zone = world["zone_id"]
    for batch in range(10):
        changes = [{"Action": "CREATE", "ResourceRecordSet": {
            "Name": f"host{batch * 1000 + i}.example.com.", "Type": "A", "TTL": 300,
            "ResourceRecords": [{"Value": f"198.51.{(batch * 1000 + i) // 250}.{(batch * 1000 + i) % 250 + 1}"}]}}
            for i in range(1000)]
        r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": changes})
    for i in range(1000):
        r53.create_health_check(CallerReference=f"unrelated-{i}", HealthCheckConfig={
            "Type": "TCP", "IPAddress": f"52.95.{i // 250}.{i % 250 + 1}", "Port": 1000 + i})
    print("  zone holds 10,000 unrelated records, the account 1,000 unrelated health checks")
    # One event at a time, so latency is the handler's against the
    # emulator, not 10 processes queueing on 2 cores.
    # Calls per event as the emulator saw them (the Lambda's Rust SDK only):
    # one event per step, the log cleared before each.
    seen: dict[str, list[int]] = {"launch": [], "terminate": []}
    for n in list(range(1, 11)) + list(range(9, -1, -1)):
        ctl(ep, "/_craftlb/requests", method="DELETE")
        before = n - 1 if n > 0 else 0
        scenario(ep, "scale", "--desired", str(n))
        wait_in_service(ep, n, 120)
        settle(ep)
        log = ctl(ep, "/_craftlb/requests")
        rust = [e for e in log if str(e.get("agent", "")).startswith("aws-sdk-rust")]
        seen["launch" if n > before else "terminate"].append(len(rust))
    inv = settle(ep)
    reps = [r for r in reports(inv) if "transition" in r]
    # A node enters service (its own launch completed): EC2_INSTANCE_LAUNCH.
    # A node leaves: the terminating hook's notification, then the group's
    # EC2_INSTANCE_TERMINATE once it is gone (that one finds nothing left).
    launch = [r for r in reps if r["transition"].endswith("EC2_INSTANCE_LAUNCH")]
    term = [r for r in reps if r["transition"].endswith("TERMINATING")]
    for label, rs in (("launch", launch), ("terminate", term)):
        c = [r["aws_calls"] for r in rs]
        log_c = seen[label]
        print(f"  AWS calls per {label} event (emulator request log): min {min(log_c)}, max {max(log_c)} "
              f"({len(log_c)} events; handler's own count min {min(c)}, max {max(c)}; target <= 6)")
    lat = [r["latency_ms"] for r in reps]
    print(f"  handler latency vs emulator: p50 {pct(lat, 0.5):.0f} ms, p99 {pct(lat, 0.99):.0f} ms (target p50 <= 40)")
    init = [i["init_ms"] for i in inv if i.get("init_ms") is not None]
    rss = [i["max_rss_kb"] for i in inv if i.get("max_rss_kb")]
    print(f"  cold init (process start to first /next): p50 {pct(init, 0.5):.1f} ms, max {max(init):.1f} ms (target <= 50)")
    print(f"  peak RSS: max {max(rss) / 1024:.1f} MiB, p50 {pct(rss, 0.5) / 1024:.1f} MiB (target <= 30)")
    failed = [r for r in reps if r.get("error")]
    print(f"  events with errors: {len(failed)}")
    # Where the handler's time goes: moto's own time per operation.
    log = ctl(ep, "/_craftlb/requests")
    used = ["DescribeAutoScalingInstances", "DescribeLifecycleHooks", "DescribeAutoScalingGroups",
            "ListHostedZonesByName", "DescribeInstances", "CreateHealthCheck",
            "ChangeTagsForResource", "ChangeResourceRecordSets", "ListResourceRecordSets", "DeleteHealthCheck",
            "CompleteLifecycleAction"]
    parts = []
    for op in used:
        ms = [e["ms"] for e in log if e["operation"] == op and e.get("ms") is not None]
        if ms:
            parts.append(f"{op} {statistics.median(ms):.0f}")
    print(f"  emulator time per call, median ms: {', '.join(parts)}")


def burst(args: argparse.Namespace) -> None:
    ep = args.endpoint
    rng = random.Random(7)
    scenario(ep, "world", "--bootstrap", args.bootstrap)
    # Only the Lambda (Rust SDK) is throttled; the driver's own calls are not.
    ctl(ep, "/_craftlb/faults", "PUT", {"seed": 11, "rules": [
        {"service": "*", "operation": "*", "throttle": 0.3, "agent": "aws-sdk-rust"}]})
    started = time.monotonic()

    def duplicate(transition: str, share: float) -> int:
        msgs = [i["payload"]["Records"][0]["Sns"]["Message"] for i in ctl(ep, "/_craftlb/lambda/invocations")
                if "Records" in i["payload"] and transition in i["payload"]["Records"][0]["Sns"]["Message"]]
        picked = rng.sample(msgs, int(len(msgs) * share))
        rng.shuffle(picked)
        sns = client(ep, "sns")
        topic = f"arn:aws:sns:us-east-1:123456789012:{GROUP}-lifecycle"
        for m in picked:
            sns.publish(TopicArn=topic, Message=m)
        return len(picked)

    scenario(ep, "scale", "--desired", "100")
    time.sleep(2)
    dup_launch = duplicate("EC2_INSTANCE_LAUNCH\"", 0.2)
    wait_in_service(ep, 100, 900)
    settle(ep, 900)
    scenario(ep, "scale", "--desired", "50")
    time.sleep(2)
    dup_term = duplicate("TERMINATING", 0.2)
    wait_in_service(ep, 50, 900)
    inv = settle(ep, 900)
    elapsed = time.monotonic() - started
    ctl(ep, "/_craftlb/faults", "DELETE")

    state = scenario(ep, "state")
    in_service = {i["id"] for i in state["instances"] if i["state"] == "InService"}
    records = {r["set_identifier"] for r in state["records"]}
    checks = {c["id"] for c in state["health_checks"]}
    record_checks = {r["health_check_id"] for r in state["records"]}
    actions = ctl(ep, "/_craftlb/autoscaling/actions")
    # Launches are completed by the (stand-in) nodes, terminations by the Lambda.
    completions = [a for a in actions if a["history"] and a["history"][0].split(":")[0] in ("complete", "stand-in")]
    timeouts = [a for a in actions if any(h.startswith("timeout") for h in a["history"])]
    abandoned = [a for a in actions if a["result"] == "ABANDON"]
    log = ctl(ep, "/_craftlb/requests")
    throttled = [e for e in log if e["fault"] == "throttle"]
    reps = [r for r in reports(inv) if "transition" in r]
    print(f"  deliveries: {len(inv)} Lambda runs ({dup_launch} duplicated launches, {dup_term} duplicated terminations)")
    print(f"  converged in {elapsed:.1f} s; throttled calls retried: {len(throttled)} of {len(log)} emulator calls")
    print(f"  lifecycle actions: {len(actions)}, completed once: {len(completions)}, by timeout: {len(timeouts)},"
          f" ABANDONed launches (retries exhausted, replaced): {len(abandoned)}")
    print(f"  final: {len(in_service)} InService, {len(records)} records, {len(checks)} health checks;"
          f" handler errors {sum(1 for r in reps if r.get('error'))}")
    completed_ok = sum(1 for e in log if e["operation"] == "CompleteLifecycleAction" and e["status"] == 200)
    terminating = [a for a in actions if a["transition"].endswith("TERMINATING")]
    print(f"  successful CompleteLifecycleAction calls (the Lambda's, terminations): {completed_ok} for "
          f"{len(terminating)} terminating actions")
    ok = (records == in_service and record_checks == checks and len(checks) == len(in_service)
          and len(completions) == len(actions) and completed_ok == len(terminating) and not timeouts)
    print(f"  exact final state and every action completed exactly once: {'yes' if ok else 'NO'}")
    if not ok:
        for r in reps:
            if r.get("error") and not r.get("retry"):
                print(f"  error: {json.dumps(r)}")
        extra = records - in_service
        print(f"  records without an InService instance: {sorted(extra)}")
        for r in reps:
            if r.get("instance_id") in extra:
                print(f"  event for it: {r['transition']} {r['action']} {r.get('completion')} {r.get('error')}")
        raise SystemExit(1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("what", choices=["calls", "burst"])
    args = ap.parse_args()
    {"calls": calls, "burst": burst}[args.what](args)


if __name__ == "__main__":
    main()
