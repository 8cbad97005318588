"""Scale-in under load with clients that cache DNS (make bench-scalein).

On the emulator's lifecycle loop with the real Lambda: a group of 3 load
balancer nodes (the loadbalancer role, haproxy on the instances' loopback
private IPs), published by the Lambda as a weighted record with a short TTL.
Clients resolve the record through the emulated Route 53 (honouring the TTL,
picking by weight), and keep sending HTTP requests (keep-alive) and TLS
requests (SNI passthrough, a new connection each). Then the group scales in
3 -> 1; each leaving node drains (its drain watch runs as the timer would).

Prints requests sent, failed requests (target 0) with their errors, and how
long each leaving node held its instance, from Terminating:Wait to the
completion of its lifecycle action. Figures, not assertions.

  scalein_bench.py --endpoint URL --bootstrap PATH --update-peers PATH [--seconds N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "tests/emulator/scenario.py"
GROUP = "scalein-asg"
RECORD = "lb.example.com."
HOST = "app.example.com"
TTL = 5
DNS_MARGIN = 2
POLL = 1.0


def scenario(ep: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, str(SCENARIO), "--endpoint", ep, *args],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def ctl(ep: str, path: str) -> object:
    with urllib.request.urlopen(f"{ep}{path}", timeout=60) as resp:
        return json.loads(resp.read())


class Resolver:
    """A client's DNS cache: the record's answers, kept for their TTL."""

    def __init__(self, ep: str, zone: str) -> None:
        self.r53 = boto3.client("route53", region_name="us-east-1", endpoint_url=ep,
                                aws_access_key_id="testing", aws_secret_access_key="testing")
        self.zone = zone
        self.cached: list[tuple[str, int]] = []
        self.expires = 0.0
        self.lock = threading.Lock()

    def pick(self) -> str | None:
        with self.lock:
            if time.monotonic() >= self.expires:
                rrs = self.r53.list_resource_record_sets(
                    HostedZoneId=self.zone, StartRecordName=RECORD, StartRecordType="A")["ResourceRecordSets"]
                rrs = [r for r in rrs if r["Name"] == RECORD and r["Type"] == "A"]
                self.cached = [(r["ResourceRecords"][0]["Value"], int(r.get("Weight", 1))) for r in rrs]
                ttl = min([int(r.get("TTL", TTL)) for r in rrs] or [TTL])
                self.expires = time.monotonic() + ttl
            if not self.cached:
                return None
            total = sum(w for _, w in self.cached) or len(self.cached)
            n = random.uniform(0, total)
            for ip, w in self.cached:
                n -= w or 1
                if n <= 0:
                    return ip
            return self.cached[-1][0]


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent = {"http": 0, "tls": 0}
        self.failed: dict[str, int] = {}
        self.by_ip: dict[str, int] = {}

    def ok(self, kind: str, ip: str) -> None:
        with self.lock:
            self.sent[kind] += 1
            self.by_ip[ip] = self.by_ip.get(ip, 0) + 1

    def fail(self, kind: str, why: str) -> None:
        with self.lock:
            self.sent[kind] += 1
            key = f"{kind}: {why}"
            self.failed[key] = self.failed.get(key, 0) + 1


def http_client(res: Resolver, stats: Stats, stop: threading.Event) -> None:
    conn: http.client.HTTPConnection | None = None
    conn_ip = None
    while not stop.is_set():
        ip = res.pick()
        if ip is None:
            stats.fail("http", "no address")
            time.sleep(0.05)
            continue
        if conn is None or conn_ip != ip:
            if conn:
                conn.close()
            conn, conn_ip = http.client.HTTPConnection(ip, 8080, timeout=10), ip
        try:
            conn.request("GET", "/", headers={"Host": HOST})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200 or not body.startswith(b"app"):
                stats.fail("http", f"status {resp.status}")
            else:
                stats.ok("http", ip)
            if resp.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            stats.fail("http", type(e).__name__)
            conn = None


def tls_client(res: Resolver, stats: Stats, stop: threading.Event) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    while not stop.is_set():
        ip = res.pick()
        if ip is None:
            stats.fail("tls", "no address")
            time.sleep(0.05)
            continue
        try:
            with socket.create_connection((ip, 8443), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname=HOST) as s:
                    s.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
                    data = b""
                    while chunk := s.recv(4096):
                        data += chunk
            if b" 200 " in data.split(b"\r\n", 1)[0] and data.endswith(b"app-tls"):
                stats.ok("tls", ip)
            else:
                stats.fail("tls", "bad answer")
        except (OSError, ssl.SSLError) as e:
            stats.fail("tls", type(e).__name__)


def deploy(node: dict, work: Path, ep: str, update_peers: str, lib: Path) -> None:
    d = work / node["id"]
    d.mkdir()
    node["dir"] = d
    vars_ = {
        "loadbalancer_service_manager": "process",
        "loadbalancer_config_dir": str(d / "etc"), "loadbalancer_run_dir": str(d / "run"),
        "loadbalancer_craftlb_dir": str(d / "opt"), "loadbalancer_chroot": str(d / "chroot"),
        "loadbalancer_update_peers_binary": update_peers,
        "loadbalancer_http_bind": f"{node['ip']}:8080", "loadbalancer_https_bind": f"{node['ip']}:8443",
        "loadbalancer_stats_bind": f"{node['ip']}:9999", "loadbalancer_stats_password": "bench-only",
        "loadbalancer_peer_port": 17777, "loadbalancer_maxconn": 4000, "loadbalancer_endpoint_url": ep,
        "lb_mappings": [{"name": "app", "domains": [HOST], "servers": ["127.81.0.1"],
                         "http_port": 8080, "https_port": 8443}],
    }
    (d / "vars.json").write_text(json.dumps(vars_))
    env = dict(os.environ, AWS_EC2_METADATA_SERVICE_ENDPOINT=f"{ep}/_craftlb/imds/{node['id']}",
               ANSIBLE_LIBRARY=str(lib))
    subprocess.run([str(ROOT / ".venv/bin/ansible-playbook"), "playbooks/deploy.yml",
                    "-e", f"server_config={d / 'vars.json'}"], cwd=ROOT, env=env, check=True,
                   capture_output=True)


def drain_watch(node: dict, ep: str, update_peers: str, stop: threading.Event) -> None:
    """What craftlb-drain-watch.timer does, every POLL seconds."""
    d = node["dir"]
    args = {"peers_file": str(d / "etc/peers.cfg"), "drain": True, "drain_only": True,
            "master_socket": str(d / "run/master.sock"),
            "drain_health_acl": str(d / "etc/craftlb-drain-health.acl"),
            "drain_closed_acl": str(d / "etc/craftlb-drain-closed.acl"),
            "drain_dns_margin": DNS_MARGIN, "endpoint_url": ep}
    (d / "drain_watch.json").write_text(json.dumps(args))
    env = dict(os.environ, AWS_EC2_METADATA_SERVICE_ENDPOINT=f"{ep}/_craftlb/imds/{node['id']}")
    env.pop("AWS_REGION", None)
    while not stop.is_set():
        out = subprocess.run([update_peers, str(d / "drain_watch.json")], env=env, capture_output=True, text=True)
        try:
            res = json.loads(out.stdout)
        except json.JSONDecodeError:
            res = {"failed": True, "msg": out.stdout + out.stderr}
        if res.get("drain"):
            node["drain"] = res["drain"]
            return
        if res.get("failed"):
            node["error"] = res.get("msg")
        stop.wait(POLL)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--update-peers", required=True)
    ap.add_argument("--seconds", type=float, default=8, help="load before the scale-in")
    ap.add_argument("--clients", type=int, default=6)
    args = ap.parse_args()
    ep = args.endpoint
    work = Path(tempfile.mkdtemp(prefix="craftlb-scalein-"))
    lib = work / "library"
    lib.mkdir()
    os.symlink(args.update_peers, lib / "update_peers")
    procs: list[str] = []
    try:
        # Backends: one haproxy answering HTTP ("app") and TLS ("app-tls", its own certificate).
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                        f"/CN={HOST}", "-keyout", str(work / "b.key"), "-out", str(work / "b.crt")],
                       check=True, capture_output=True)
        (work / "b.pem").write_bytes((work / "b.crt").read_bytes() + (work / "b.key").read_bytes())
        (work / "backend.cfg").write_text(
            "global\n    maxconn 4000\ndefaults\n    mode http\n    timeout connect 5s\n"
            "    timeout client 30s\n    timeout server 30s\n"
            "frontend app\n    bind 127.81.0.1:8080\n"
            "    http-request return status 200 content-type text/plain string app\n"
            f"frontend app_tls\n    bind 127.81.0.1:8443 ssl crt {work / 'b.pem'}\n"
            "    http-request return status 200 content-type text/plain string app-tls\n")
        subprocess.run(["haproxy", "-D", "-p", str(work / "backend.pid"), "-f", str(work / "backend.cfg")], check=True)
        procs.append(str(work / "backend.pid"))

        meta = json.dumps({"ip_type": "private", "ttl": TTL, "drain_seconds": 30,
                           "health_check": {"type": "HTTP", "port": 8080, "path": "/craftlb-health"}})
        world = scenario(ep, "world", "--bootstrap", args.bootstrap, "--group", GROUP,
                         "--subnet-cidr", "127.77.9.0/24", "--metadata", meta, "--heartbeat", "30")
        scenario(ep, "scale", "--group", GROUP, "--desired", "3")
        got = scenario(ep, "wait", "--group", GROUP, "--in-service", "3", "--timeout", "120")
        nodes = [{"id": i["id"], "ip": i["private_ip"]} for i in got["instances"]]
        for n in nodes:
            deploy(n, work, ep, args.update_peers, lib)
            procs.append(str(n["dir"] / "run/haproxy.pid"))
        print(f"  3 nodes on {', '.join(n['ip'] for n in nodes)}; record {RECORD} TTL {TTL} s; "
              f"drain margin {DNS_MARGIN} s; drain watch every {POLL:.0f} s")

        stop_watch = threading.Event()
        watchers = [threading.Thread(target=drain_watch, args=(n, ep, args.update_peers, stop_watch), daemon=True)
                    for n in nodes]
        for t in watchers:
            t.start()
        stats = Stats()
        stop = threading.Event()
        clients = []
        for i in range(args.clients):
            res = Resolver(ep, world["zone_id"])
            target = http_client if i % 2 == 0 else tls_client
            clients.append(threading.Thread(target=target, args=(res, stats, stop), daemon=True))
        for t in clients:
            t.start()
        time.sleep(args.seconds)
        sent_before = dict(stats.sent)
        t_scale = time.time()
        scenario(ep, "scale", "--group", GROUP, "--desired", "1")
        deadline = time.time() + 180
        while time.time() < deadline:
            acts = [a for a in ctl(ep, "/_craftlb/autoscaling/actions")
                    if a["transition"].endswith("TERMINATING")]
            if len(acts) == 2 and all(a["done"] for a in acts):
                break
            time.sleep(0.5)
        time.sleep(TTL + 1)
        stop.set()
        stop_watch.set()
        for t in clients:
            t.join(15)
        acts = [a for a in ctl(ep, "/_craftlb/autoscaling/actions") if a["transition"].endswith("TERMINATING")]
        total = sum(stats.sent.values())
        failed = sum(stats.failed.values())
        print(f"  requests: {total} ({stats.sent['http']} HTTP keep-alive, {stats.sent['tls']} TLS new connections; "
              f"{sum(sent_before.values())} before the scale-in); failed: {failed} (target 0)")
        for why, n in sorted(stats.failed.items()):
            print(f"    {n} x {why}")
        for a in acts:
            node = next((n for n in nodes if n["id"] == a["instance_id"]), {})
            held = (a["ended"] - a["started"]) if a.get("ended") else None
            d = node.get("drain", {})
            print(f"  {a['instance_id']} ({node.get('ip')}): Terminating:Wait -> {a['history']} after "
                  f"{held:.1f} s" if held is not None else f"  {a['instance_id']}: not completed ({a['history']})")
            if d:
                print(f"    accepting after the health check failed {d.get('accepting_ms', 0) / 1000:.1f} s, "
                      f"waited for connections {d.get('waited_ms', 0) / 1000:.1f} s, "
                      f"left {d.get('open_connections_left')}, heartbeats {d.get('heartbeats')}")
            if node.get("error"):
                print(f"    drain watch error: {node['error']}")
        print(f"  requests per node: {dict(sorted(stats.by_ip.items()))}; scale-in issued "
              f"{time.time() - t_scale:.1f} s before the end")
    finally:
        for pidfile in procs:
            try:
                pid = int(Path(pidfile).read_text().split()[0])
                os.kill(pid, 15)
            except (OSError, ValueError, IndexError):
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
