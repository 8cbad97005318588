"""`make demo`: launch-lb.yml on the embedded emulator, nodes that really serve.

Runs the real `launch-lb.yml -e server_config=<config>` against the emulator
while playing EC2's part for each new instance: once it runs (held in
Pending:Wait by its launching hook), its launch template's user data runs as
is - it fetches the deploy bundle from the emulated S3 with the AWS CLI,
checks its SHA-256, runs deploy.yml, checks that haproxy answers its health
endpoint, and completes its own launch - with the node's haproxy on the
instance's own loopback address (127.0.100.N) instead of its public IP.
Only then does the group put it in service and the Lambda publish it.
Requests then go where Route 53 says: `loadbalancer.<domain>` is resolved
from the emulated zone, each record's instance is its node, and real HTTP
(Host) and TLS (SNI) requests go through it to demo backends. Scales out and
in (the nodes drain, as their drain timer would make them), then tears down.

`--host-only` plays only EC2's part (boot every new instance of --group on
<--net>.N, drain it when it is to be terminated, stop its haproxy once it is
gone) until SIGTERM: `make test`'s boot test drives launch-lb.yml itself and
runs this beside it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import struct
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import boto3
import yaml

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
# The backends the demo's mappings send to (mylb's own servers are 10.0.x.x
# addresses that do not exist here).
BACKENDS = {"webmail": "127.0.101.1", "www": "127.0.101.2", "apps": "127.0.101.3"}
# Two DNS servers (dnsmasq) for the UDP mapping: UDP and TCP (haproxy's
# checks) on 10053, each answering which.example.com with its own address.
DNS_BACKENDS = {"dns-a": "127.0.101.4", "dns-b": "127.0.101.5"}
DNS_PORT = 10053
DEMO_MAPPINGS = [
    {"name": "webmail", "domains": ["webmail.example.com"], "servers": [BACKENDS["webmail"]],
     "http_port": 8080, "https_port": 8443},
    {"name": "www", "domains": ["example.com", "www.example.com"], "servers": [BACKENDS["www"]],
     "http_port": 8080, "https_port": 8443},
    {"name": "apps", "domains": ["*.apps.example.com"], "servers": [BACKENDS["apps"]],
     "http_port": 8080, "https_port": 8443},
    {"name": "dns", "mode": "udp", "frontend_port": 53,
     "servers": [f"{a}:{DNS_PORT}" for a in DNS_BACKENDS.values()]},
]


class Demo:
    def __init__(self, endpoint: str, work: Path, config: str, group: str = "mylb-asg",
                 net: str = "127.0.100") -> None:
        self.endpoint, self.work, self.config, self.group, self.net = endpoint, work, config, group, net
        self.aws = {s: boto3.client(s, endpoint_url=endpoint, region_name=REGION)
                    for s in ("autoscaling", "ec2", "route53")}
        self.nodes: dict[str, int] = {}  # instance id -> N of <net>.N
        self.booted = 0  # N of the last node: addresses are never reused
        self.boots: list[subprocess.Popen] = []
        self.stop = threading.Event()

    # -- the emulated account --------------------------------------------------
    def setup(self) -> dict:
        zone = self.aws["route53"].create_hosted_zone(Name="example.com", CallerReference="demo-example.com")
        zone_id = zone["HostedZone"]["Id"].split("/")[-1]
        ec2 = self.aws["ec2"]
        vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        subnets = sorted(s["SubnetId"] for s in ec2.describe_subnets(
            Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"])[:2]
        return {
            "subnets": subnets, "hosted_zone_id": zone_id, "endpoint_url": self.endpoint,
            # An AMI the emulator knows (EC2 would resolve the default SSM parameter).
            "image_id": ec2.describe_images()["Images"][0]["ImageId"],
            "ttl": 5, "drain_seconds": 5,
            "autoscaling_bundle_dir": str(self.work / "bundle"),
            "autoscaling_node_vars": {"lb_mappings": DEMO_MAPPINGS, "loadbalancer_drain_dns_margin": 2},
        }

    def launch(self, extra: dict, title: str) -> None:
        path = self.work / "extra.json"
        path.write_text(json.dumps(extra))
        self.playbook("launch-lb.yml", title)

    def destroy(self) -> None:
        self.playbook("destroy-lb.yml", "teardown")

    def playbook(self, playbook: str, title: str) -> None:
        started = time.monotonic()
        out = subprocess.run([str(ROOT / ".venv/bin/ansible-playbook"), f"playbooks/{playbook}",
                              "-e", f"server_config={self.config}", "-e", f"@{self.work / 'extra.json'}"],
                             cwd=ROOT, capture_output=True, text=True, check=False)
        recap = [line for line in out.stdout.splitlines() if line.startswith("localhost")]
        print(f"\n== {title}: {playbook} -e server_config={self.config} "
              f"({time.monotonic() - started:.1f} s) {recap[-1].split(':', 1)[1].strip() if recap else ''}")
        if out.returncode != 0:
            print(out.stdout[-6000:], out.stderr[-3000:], sep="\n")
            raise SystemExit(f"{playbook} failed")

    # -- the nodes -------------------------------------------------------------
    def instances(self) -> list[dict]:
        groups = self.aws["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=[self.group])
        return [i for g in groups["AutoScalingGroups"] for i in g["Instances"]]

    def host(self) -> None:
        """EC2's part: every new instance boots its user data once it runs,
        side by side, while launch-lb.yml waits for the group; the haproxy of
        an instance that is gone stops, as the instance would."""
        while not self.stop.wait(0.5):
            try:
                self.stop_gone_nodes()
                held = [i for i in self.instances()
                        if i["LifecycleState"] == "Pending:Wait" and i["InstanceId"] not in self.nodes]
                if not held:
                    continue
                ids = [i["InstanceId"] for i in held]
                states = {x["InstanceId"]: x["State"]["Name"] for r in self.aws["ec2"].describe_instances(
                    InstanceIds=ids)["Reservations"] for x in r["Instances"]}
            except Exception as e:  # noqa: BLE001 - the emulator is going away at the end
                if not self.stop.is_set():
                    print(f"   (host: {e})")
                continue
            for inst in held:
                iid = inst["InstanceId"]
                if states.get(iid) != "running":
                    continue
                self.booted += 1
                n = self.nodes[iid] = self.booted
                threading.Thread(target=self.boot, args=(iid, n, inst["LaunchTemplate"]), daemon=True).start()

    def published(self, timeout: float = 60) -> None:
        """Waits until every node in service is in the record set (the Lambda
        publishes it once the group reports it in service)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            serving = {i["InstanceId"] for i in self.instances() if i["LifecycleState"] == "InService"}
            if {r["SetIdentifier"] for r in self.records()} == serving:
                return
            time.sleep(0.5)
        raise SystemExit("records do not match the instances in service")

    def boot(self, iid: str, n: int, template: dict) -> None:
        """The instance's user data, as cloud-init would run it, on <net>.N."""
        version = self.aws["ec2"].describe_launch_template_versions(
            LaunchTemplateId=template["LaunchTemplateId"], Versions=[template["Version"]])
        user_data = base64.b64decode(version["LaunchTemplateVersions"][0]["LaunchTemplateData"]["UserData"])
        node = self.work / "nodes" / iid
        node.mkdir(parents=True)
        (node / "user-data.sh").write_bytes(user_data)
        addr = f"{self.net}.{n}"
        (node / "address").write_text(addr)
        # Where this machine differs from an instance: paths, addresses, no systemd.
        local = {
            "loadbalancer_service_manager": "process",
            "loadbalancer_config_dir": f"{node}/etc", "loadbalancer_run_dir": f"{node}/run",
            "loadbalancer_craftlb_dir": f"{node}/opt", "loadbalancer_chroot": f"{node}/chroot",
            "loadbalancer_http_bind": f"{addr}:80", "loadbalancer_https_bind": f"{addr}:443",
            "loadbalancer_tcp_bind_address": addr, "loadbalancer_stats_bind": f"{addr}:9999",
            # UDP: only this node's address, in a table of its own; this
            # machine's forwarding is left alone (loopback needs none).
            "loadbalancer_udp_bind_address": addr, "loadbalancer_udp_table": f"craftlb_udp_{n}",
            "loadbalancer_sysctl_file": "",
            "loadbalancer_local_peer": iid, "loadbalancer_maxconn": 4000,
            # Peers are the instances' private IPs, which do not exist here.
            "loadbalancer_static_peers": [{"name": iid, "address": addr}], "loadbalancer_group_name": "",
        }
        (node / "local.json").write_text(json.dumps(local))
        env = dict(os.environ, PATH=f"{ROOT / '.venv/bin'}:{os.environ['PATH']}",
                   AWS_ENDPOINT_URL=self.endpoint, CRAFTLB_ROOT=str(node / "root"),
                   CRAFTLB_BOOT_LOG=str(node / "boot.log"), CRAFTLB_CONSOLE=str(node / "console.log"),
                   CRAFTLB_HEALTH_URL=f"http://{addr}:80/craftlb-health",
                   AWS_EC2_METADATA_SERVICE_ENDPOINT=f"{self.endpoint}/_craftlb/imds/{iid}/",
                   CRAFTLB_DEPLOY_ARGS=f"-e @{node / 'local.json'}")
        env.pop("ANSIBLE_CONFIG", None)
        started = time.monotonic()
        # Its own session: shutdown() stops a boot still running, Ansible and all.
        proc = subprocess.Popen(["bash", str(node / "user-data.sh")], env=env, start_new_session=True)
        self.boots.append(proc)
        returncode = proc.wait()
        # What EC2 would keep of the console, for GetConsoleOutput.
        console = node / "console.log"
        if console.exists():
            req = urllib.request.Request(f"{self.endpoint}/_craftlb/ec2/console/{iid}", method="PUT",
                                         data=console.read_bytes())
            urllib.request.urlopen(req, timeout=10).read()
        if returncode != 0:
            print(f"   {iid}: user data failed; the end of {node / 'boot.log'}:")
            print((node / "boot.log").read_text()[-6000:])
            return
        (node / "booted").touch()
        print(f"   booted {iid} on {addr}: ready (deploy.yml, health 200, launch completed) in "
              f"{time.monotonic() - started:.1f} s")
        threading.Thread(target=self.drain_watch, args=(iid,), daemon=True).start()

    @staticmethod
    def dns_margin(node: Path) -> int:
        """loadbalancer_drain_dns_margin as the node's deploy has it: the
        launch's node vars in the bundle, else the role's default."""
        bundle = node / "root/bundle"
        for source in (bundle / "deploy-vars.yml", bundle / "roles/loadbalancer/defaults/main.yml"):
            found = (yaml.safe_load(source.read_text()) or {}).get("loadbalancer_drain_dns_margin")
            if found is not None:
                return int(found)
        raise SystemExit(f"no loadbalancer_drain_dns_margin in {bundle}")

    def drain_watch(self, iid: str) -> None:
        """The node's drain timer: update_peers with drain_only (IMDS reads until
        the instance is to be terminated; then the drain, which completes the
        terminating lifecycle action itself)."""
        node = self.work / "nodes" / iid
        args = node / "drain_watch.json"
        args.write_text(json.dumps({
            "peers_file": f"{node}/etc/peers.cfg", "haproxy_bin": "/usr/sbin/haproxy",
            "drain": True, "drain_only": True, "reload": False, "local_peer": iid,
            "master_socket": f"{node}/run/master.sock",
            "drain_health_acl": f"{node}/etc/craftlb-drain-health.acl",
            "drain_closed_acl": f"{node}/etc/craftlb-drain-closed.acl",
            "drain_dns_margin": self.dns_margin(node), "endpoint_url": self.endpoint, "region": REGION}))
        env = dict(os.environ, AWS_EC2_METADATA_SERVICE_ENDPOINT=f"{self.endpoint}/_craftlb/imds/{iid}/")
        while not self.stop.wait(1):
            run = subprocess.run([str(node / "opt/bin/update_peers"), str(args)], env=env,
                                 capture_output=True, text=True, check=False)
            try:
                drain = json.loads(run.stdout).get("drain") or {}
            except ValueError:
                continue
            if drain.get("phase") == "completed":
                print(f"   {iid} drained: served {drain.get('accepting_ms')} ms after failing its health check, "
                      f"waited {drain.get('waited_ms')} ms for open connections, completed "
                      f"{', '.join(drain.get('completed_hooks', []))}")
                return

    def stop_node(self, iid: str) -> None:
        """What termination does to an instance: its haproxy, its UDP
        balancer and its kernel table go."""
        run = self.work / "nodes" / iid / "run"
        for pidfile in (run / "haproxy.pid", run / "craftlb-udp.pid"):
            if pidfile.exists() and pidfile.read_text().split():
                subprocess.run(["kill", pidfile.read_text().split()[0]], check=False)
        if iid in self.nodes:
            subprocess.run(["nft", "delete", "table", "ip", f"craftlb_udp_{self.nodes[iid]}"],
                           check=False, stderr=subprocess.DEVNULL)

    def stop_gone_nodes(self) -> None:
        live = {i["InstanceId"] for i in self.instances()}
        for iid in [i for i in self.nodes if i not in live]:
            self.stop_node(iid)
            self.nodes.pop(iid, None)

    def shutdown(self) -> None:
        self.stop.set()
        for proc in self.boots:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for iid in list(self.nodes):
            self.stop_node(iid)
        # Old workers of reloaded nodes too: every haproxy this run started.
        subprocess.run(["pkill", "-f", f"haproxy .*{self.work}/nodes/"], check=False)

    # -- what a client sees ----------------------------------------------------
    def records(self) -> list[dict]:
        zone = self.aws["route53"].list_hosted_zones()["HostedZones"][0]["Id"]
        rrs = self.aws["route53"].list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
        return [r for r in rrs if r["Type"] == "A" and r["Name"] == "loadbalancer.example.com."]

    def table(self) -> None:
        print("   instances:")
        for i in self.instances():
            where = f"node {self.net}.{self.nodes[i['InstanceId']]}" if i["InstanceId"] in self.nodes else "-"
            print(f"     {i['InstanceId']:<22} {i['LifecycleState']:<18} template v{i['LaunchTemplate']['Version']:<3} {where}")
        print("   loadbalancer.example.com (Route 53):")
        for r in self.records():
            print(f"     A {r['ResourceRecords'][0]['Value']:<15} weight {r.get('Weight')} ttl {r.get('TTL')} "
                  f"set {r.get('SetIdentifier'):<22} health check {r.get('HealthCheckId', '-')}")

    def requests(self) -> None:
        print("   requests, each to the node a record names:")
        for r in self.records():
            iid = r["SetIdentifier"]
            if iid not in self.nodes:
                print(f"     {r['ResourceRecords'][0]['Value']}: no node booted for {iid}")
                continue
            addr = f"{self.net}.{self.nodes[iid]}"
            for kind, host in (("HTTP Host", "www.example.com"), ("HTTP Host", "shop.apps.example.com"),
                               ("TLS SNI ", "webmail.example.com")):
                answer = self.get(addr, host, tls=kind.startswith("TLS"))
                print(f"     {r['ResourceRecords'][0]['Value']:<15} -> {addr:<13} {kind} {host:<22} {answer}")
            # Each query is a new flow: round robin over the two DNS servers.
            answers = [self.dns(addr, 53, "which.example.com") for _ in range(2)]
            print(f"     {r['ResourceRecords'][0]['Value']:<15} -> {addr:<13} UDP 53    which.example.com "
                  f"     {', '.join(answers)}")

    @staticmethod
    def dns(addr: str, port: int, name: str) -> str:
        """One DNS query (A, over UDP): the first address answered, which
        names the server that answered."""
        query = struct.pack(">HHHHHH", 0x4352, 0x0100, 1, 0, 0, 0)
        query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
        query += struct.pack(">HH", 1, 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            try:
                sock.sendto(query, (addr, port))
                data = sock.recv(512)
            except OSError as e:
                return f"failed: {e}"
        # The answer's last four bytes are the A record's address.
        if len(data) < len(query) + 16 or struct.unpack(">H", data[6:8])[0] == 0:
            return f"no answer ({len(data)} bytes)"
        address = ".".join(str(b) for b in data[-4:])
        return f"{address} ({ {v: k for k, v in DNS_BACKENDS.items()}.get(address, '?') })"

    @staticmethod
    def get(addr: str, host: str, tls: bool) -> str:
        try:
            sock = socket.create_connection((addr, 443 if tls else 80), timeout=5)
            if tls:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE  # the demo backends' certificates are self-signed
                sock = ctx.wrap_socket(sock, server_hostname=host)
            sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
            sock.close()
            return data.decode(errors="replace").split("\r\n\r\n", 1)[-1].strip() or data.decode()[:60]
        except OSError as e:
            return f"failed: {e}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--config", default="mylb")
    ap.add_argument("--host-only", action="store_true", help="only boot and drain the group's nodes, until SIGTERM")
    ap.add_argument("--group", default="mylb-asg")
    ap.add_argument("--net", default="127.0.100", help="node N listens on <net>.N")
    args = ap.parse_args()
    demo = Demo(args.endpoint, args.work, args.config, args.group, args.net)
    if args.host_only:
        return host_only(demo)
    backends = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/demo/backends.py")]
        + [f"{name}={addr}:{port}{':tls' if port == 8443 else ''}"
           for name, addr in BACKENDS.items() for port in (8080, 8443)],
        stdout=subprocess.PIPE, text=True)
    dns = [subprocess.Popen(["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces",
                             "--user=root", "--pid-file=", f"--port={DNS_PORT}", f"--listen-address={addr}",
                             f"--address=/which.example.com/{addr}"], stderr=subprocess.DEVNULL)
           for addr in DNS_BACKENDS.values()]
    try:
        if backends.stdout is None or backends.stdout.readline().strip() != "ready":
            raise SystemExit("demo backends did not start")
        extra = demo.setup()
        started = time.monotonic()
        threading.Thread(target=demo.host, daemon=True).start()
        demo.launch(extra, "launch from nothing")
        demo.published()
        demo.table()
        demo.requests()
        demo.launch(extra, "the same again (nothing to change)")
        demo.launch(dict(extra, desired_capacity=3), "scale out to 3")
        demo.published()
        demo.table()
        demo.requests()
        demo.launch(dict(extra, desired_capacity=1), "scale in to 1 (two nodes drain, then go)")
        demo.table()
        demo.requests()
        demo.destroy()
        print(f"\ndemo: done in {time.monotonic() - started:.1f} s; everything launch made is gone")
    finally:
        demo.shutdown()
        for proc in [backends, *dns]:
            proc.terminate()
            proc.wait()
    return 0


def host_only(demo: Demo) -> int:
    signal.signal(signal.SIGTERM, lambda *_: demo.stop.set())
    print("host: ready", flush=True)
    try:
        demo.host()
    finally:
        demo.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
