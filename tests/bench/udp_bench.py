"""make bench-udp: small UDP requests (DNS queries) direct to a backend,
through a craftlb node (the udp_balancer module's nftables table) and
through nginx's stream module, each with 1 and 100 UDP mappings, from one
client, in one run. Figures are printed, never asserted.

Network namespaces made here: a client, the node, the backend, on one
bridge. The backend is dnsmasq; the load is dnsperf: throughput with 200
queries outstanding, and per-query round trips at a fixed rate (p50/p99
from dnsperf -v). Medians of --rounds rounds, the paths alternating within
each round (a 2-vCPU VM's steal comes and goes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PREFIX = f"cub{os.getpid()}"
CLIENT, NODE, BACKEND = "10.98.0.2", "10.98.0.10", "10.98.0.21"
BASE_PORT = 10000  # mapping i listens on BASE_PORT + i
NGINX_BASE = 20000


def sh(*args: str, ns: str | None = None, check: bool = True, **kw) -> subprocess.CompletedProcess:
    argv = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(argv, check=check, text=True, capture_output=True, **kw)


class Net:
    def __init__(self) -> None:
        self.made: list[str] = []
        self.procs: list[subprocess.Popen] = []
        sw = self.add("sw")
        sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", sw, "link", "set", "br0", "up")

    def add(self, host: str) -> str:
        ns = f"{PREFIX}-{host}"
        sh("ip", "netns", "add", ns)
        self.made.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def host(self, host: str, addr: str) -> str:
        ns = self.add(host)
        inner, outer = f"{PREFIX}{host}i", f"{PREFIX}{host}o"
        sh("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
        sh("ip", "link", "set", inner, "netns", ns)
        sh("ip", "link", "set", outer, "netns", f"{PREFIX}-sw")
        sh("ip", "-n", f"{PREFIX}-sw", "link", "set", outer, "master", "br0", "up")
        sh("ip", "-n", ns, "link", "set", inner, "name", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
        return ns

    def spawn(self, ns: str, *args: str) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", ns, *args],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        for ns in reversed(self.made):
            pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                subprocess.run(["kill", "-9", pid], check=False)
            sh("ip", "netns", "del", ns, check=False)


def udp_balancer(work: Path, ns: str, mappings: int) -> None:
    """The node's table, as the role's one-shot task applies it (no haproxy
    here: every server counts as up)."""
    args = {
        "mappings": [{"name": f"m{i}", "frontend_port": BASE_PORT + i, "port": 53,
                      "servers": [BACKEND]} for i in range(mappings)],
        "table": "craftlb_udp",
    }
    path = work / f"udp-{mappings}.json"
    path.write_text(json.dumps(args))
    out = sh(str(ROOT / "library/udp_balancer"), str(path), ns=ns, check=False)
    result = json.loads(out.stdout or "{}")
    if out.returncode != 0 or result.get("failed"):
        raise SystemExit(f"udp_balancer failed: {out.stdout} {out.stderr}")


def nginx(net: Net, work: Path, ns: str, mappings: int) -> subprocess.Popen:
    servers = "\n".join(
        f"    server {{ listen {NODE}:{NGINX_BASE + i} udp; proxy_pass {BACKEND}:53;"
        f" proxy_responses 1; proxy_timeout 2s; }}" for i in range(mappings))
    conf = work / f"nginx-{mappings}.conf"
    conf.write_text(f"""load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
worker_processes auto;
pid {work}/nginx-{mappings}.pid;
error_log {work}/nginx-{mappings}.log warn;
events {{ worker_connections 4096; }}
stream {{
{servers}
}}
""")
    proc = net.spawn(ns, "nginx", "-c", str(conf), "-p", str(work))
    time.sleep(1)
    return proc


def dnsperf(ns: str, addr: str, port: int, seconds: int, extra: list[str], queries: Path) -> str:
    out = sh("dnsperf", "-s", addr, "-p", str(port), "-d", str(queries), "-l", str(seconds), *extra,
             ns=ns, check=False)
    return out.stdout + out.stderr


def measure(ns: str, addr: str, port: int, seconds: int, rate: int, queries: Path) -> dict:
    text = dnsperf(ns, addr, port, seconds, ["-c", "4", "-q", "200"], queries)
    qps = next((float(l.split(":")[1]) for l in text.splitlines() if "Queries per second" in l), 0.0)
    lost = next((int(l.split(":")[1].split()[0]) for l in text.splitlines() if "Queries lost" in l), -1)
    text = dnsperf(ns, addr, port, seconds, ["-Q", str(rate), "-v"], queries)
    rtts = sorted(float(l.split()[-1]) for l in text.splitlines() if l.startswith("> NOERROR"))
    if not rtts:
        raise SystemExit(f"no answers from {addr}:{port}:\n{text[-2000:]}")
    q = statistics.quantiles(rtts, n=100)
    return {"qps": qps, "lost": lost, "p50_us": q[49] * 1e6, "p99_us": q[98] * 1e6, "answers": len(rtts)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", "5")))
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "3")))
    ap.add_argument("--rate", type=int, default=int(os.environ.get("BENCH_RATE", "2000")),
                    help="queries/s of the round-trip measurement")
    opts = ap.parse_args()
    net = Net()
    try:
        work = Path(tempfile.mkdtemp(prefix="craftlb-bench-udp-"))
        queries = work / "queries.txt"
        queries.write_text("which.test A\n")
        client = net.host("c", CLIENT)
        node = net.host("n", NODE)
        backend = net.host("b", BACKEND)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=node)
        net.spawn(backend, "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                  "--bind-interfaces", "--user=root", "--pid-file=", "--port=53", "--cache-size=0",
                  f"--listen-address={BACKEND}", "--address=/which.test/10.0.0.21")
        time.sleep(1)
        print(f"== UDP: dnsperf {opts.seconds} s per figure, medians of {opts.rounds} rounds, "
              f"{os.cpu_count()} CPUs; throughput with 200 outstanding, round trips at {opts.rate} q/s")
        print(f"   {sh('nft', '--version').stdout.strip()}; "
              f"{sh('nginx', '-v', check=False).stderr.strip()}; {sh('uname', '-r').stdout.strip()}")
        runs: dict[tuple[str, int], list[dict]] = {}
        for _ in range(opts.rounds):
            for mappings in (1, 100):
                runs.setdefault(("direct to the backend", mappings), []).append(
                    measure(client, BACKEND, 53, opts.seconds, opts.rate, queries))
                udp_balancer(work, node, mappings)
                runs.setdefault(("craftlb node (nftables)", mappings), []).append(
                    measure(client, NODE, BASE_PORT + mappings - 1, opts.seconds, opts.rate, queries))
                proc = nginx(net, work, node, mappings)
                runs.setdefault(("nginx stream (udp)", mappings), []).append(
                    measure(client, NODE, NGINX_BASE + mappings - 1, opts.seconds, opts.rate, queries))
                proc.terminate()
                proc.wait()
        rows = [(name, mappings, {k: statistics.median(r[k] for r in rs) for k in ("qps", "p50_us", "p99_us")}
                 | {"lost": max(r["lost"] for r in rs)})
                for (name, mappings), rs in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0]))]
        direct = {m: r for n, m, r in rows if n.startswith("direct")}
        print(f"   {'path':<26} {'mappings':>8} {'queries/s':>10} {'vs direct':>9} {'lost':>12} "
              f"{'p50 us':>8} {'p99 us':>8}")
        for name, mappings, r in rows:
            print(f"   {name:<26} {mappings:>8} {r['qps']:>10.0f} {r['qps'] / direct[mappings]['qps']:>8.2f}x "
                  f"{r['lost']:>12} {r['p50_us']:>8.0f} {r['p99_us']:>8.0f}")
        node_1 = next(r for n, m, r in rows if n.startswith("craftlb") and m == 1)
        node_100 = next(r for n, m, r in rows if n.startswith("craftlb") and m == 100)
        print(f"   craftlb node, 100 mappings vs 1: {node_100['qps'] / node_1['qps']:.2f}x queries/s")
    finally:
        net.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
