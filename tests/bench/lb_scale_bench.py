"""Routing cost against the number of mapped domains, and the node against a
bare haproxy (make bench-lb, part 1).

Three load balancer nodes, each rendered and started by the real loadbalancer
role (playbooks/deploy.yml, process mode, a static self-peer), mapping 1, 100
and 10,000 domains; a bare two-line haproxy proxy; one backend (haproxy
answering a fixed string). All run at once on their own loopback addresses,
and the wrk runs alternate between them, so each figure is taken under the
same conditions as the others.

The proxies under test (nodes and bare) are pinned to the last CPU, where
haproxy then runs one thread; wrk and the backend run on the other CPUs. So
the proxy is the bottleneck and its figures are its own, not the share of
two CPUs it won from wrk and the backend. Besides req/s, the proxy's own CPU
time per request (from /proc schedstat) is printed: on a VM with CPU steal it
is the steadier measure of what each request costs.

Domains: half exact names (eN.example.com), half wildcards, of two depths
(*.wN.example.com and *.wN.net), spread over 10 mappings; the 1-domain node
maps e0.example.com alone. Requests go to names near the end of the list:
the last exact names and names under the last wildcards of both depths, one
per wrk process.

Also: the deploy (Ansible) time per node, `haproxy -c` time and reload time
(SIGUSR2 to the new worker listed by the master) at 10,000 domains.
Figures, not assertions.

With --callgrind N, each proxy instead runs (in the foreground, same
arguments) under valgrind's callgrind, and serves N keep-alive requests and
N/4 requests on new connections from a plain client; the instructions
haproxy executed for them (counters zeroed after a warm-up, dumped after the
requests), per request, and the simulated cache misses. Instruction counts
do not depend on what else the machine does (this VM has ~25 % CPU steal,
so req/s runs spread by 10-15 %), which makes a 5 % difference measurable.

With --root DIR, every proxy (bare and nodes) runs a second time with the
haproxy of DIR, a Debian root (scripts/node-root.sh: trixie's haproxy 3.0,
what Amazon Linux 2023 ships since AL2023.8.20250908) entered with chroot in
a mount namespace of its own that sees /proc, /sys, /dev and /tmp (the
bench's files); the role deploys it through loadbalancer_haproxy_bin. Both
versions' targets alternate in the same wrk rounds, and under callgrind the
root's own valgrind counts its instructions.

  lb_scale_bench.py [--seconds N] [--rounds R] [--connections C] [--sizes 1,100,10000] [--callgrind N] [--root DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BACKEND = "127.81.0.1"
BARE = "127.81.0.2"
MAPPINGS = 10
CPUS = sorted(os.sched_getaffinity(0))
PROXY_CPU = str(CPUS[-1])
LOAD_CPUS = ",".join(str(c) for c in CPUS[:-1]) or PROXY_CPU
WRKS = 4  # wrk processes, one Host each: static requests, no Lua call per request in wrk


def domains(n: int) -> tuple[list[list[str]], list[str]]:
    """The mappings' domain lists and the names the requests rotate over."""
    if n == 1:
        return [["e0.example.com"]], ["e0.example.com"] * WRKS
    half = n // 2
    exact = [f"e{i}.example.com" for i in range(half)]
    wild = [f"*.w{i}.example.com" if i % 2 else f"*.w{i}.net" for i in range(n - half)]
    lists: list[list[str]] = [[] for _ in range(min(MAPPINGS, n))]
    for i, d in enumerate(exact + wild):
        lists[i % len(lists)].append(d)
    hosts = exact[-WRKS // 2:] + [("www" + w[1:]) for w in wild[-WRKS // 2:]]
    return lists, hosts


class Haproxy:
    """One haproxy build: this machine's, or the one in a Debian root."""

    def __init__(self, work: Path, root: Path | None, index: int):
        self.index = index
        if root is None:
            self.prefix: list[str] = []
            self.binary = shutil.which("haproxy") or "haproxy"
            self.wrapper = self.binary
        else:
            # A command in the root: its own mount namespace (the binds go
            # when its last process does), the bench's /tmp inside.
            runner = work / "in-root"
            runner.write_text(
                "#!/bin/sh\n"
                "exec unshare --mount --propagation private -- /bin/sh -c '\n"
                "  r=$1; shift\n"
                "  for d in proc sys dev tmp; do mount --rbind \"/$d\" \"$r/$d\" || exit 1; done\n"
                "  exec chroot \"$r\" \"$@\"' in-root " + shlex.quote(str(root)) + ' "$@"\n')
            runner.chmod(0o755)
            self.prefix = [str(runner)]
            self.binary = "/usr/sbin/haproxy"
            # One executable for the role (loadbalancer_haproxy_bin).
            wrapper = work / "haproxy-in-root"
            wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(str(runner))} {self.binary} "$@"\n')
            wrapper.chmod(0o755)
            self.wrapper = str(wrapper)
        version = subprocess.run(self.argv("-v"), capture_output=True, text=True, check=True).stdout
        self.version = re.search(r"version ([0-9][0-9.]*)", version).group(1)
        self.label = f"haproxy {self.version}"

    def argv(self, *args: str) -> list[str]:
        return [*self.prefix, self.binary, *args]

    def tool(self, name: str) -> list[str]:
        """valgrind or callgrind_control of the same system as this haproxy."""
        return [*self.prefix, name]


def start_haproxy(work: Path, name: str, proxies: str, cpus: str, haproxy: Haproxy) -> Path:
    cfg = work / f"{name}.cfg"
    cfg.write_text("global\n    maxconn 4000\ndefaults\n    mode http\n    timeout connect 5s\n"
                   "    timeout client 30s\n    timeout server 30s\n" + proxies)
    pid = work / f"{name}.pid"
    subprocess.run(["taskset", "-c", cpus, *haproxy.argv("-D", "-p", str(pid), "-f", str(cfg))], check=True)
    return pid


def deploy(work: Path, n: int, address: str, peer_port: int, extra: dict,
           haproxy: Haproxy) -> tuple[Path, float, list[str]]:
    extra = dict(extra)
    node = work / f"node-{peer_port - 17800}"
    node.mkdir()
    lists, hosts = domains(n)
    stick = {"stick": extra.pop("stick")} if "stick" in extra else {}
    mappings = [{"name": f"m{i}", "domains": d, "servers": [BACKEND], "http_port": 8080,
                 "https_port": 8443, **stick} for i, d in enumerate(lists)]
    config = {
        "loadbalancer_service_manager": "process",
        "loadbalancer_config_dir": f"{node}/etc", "loadbalancer_run_dir": f"{node}/run",
        "loadbalancer_craftlb_dir": f"{node}/opt", "loadbalancer_chroot": f"{node}/chroot",
        "loadbalancer_update_peers_binary": f"{ROOT}/library/update_peers",
        "loadbalancer_http_bind": f"{address}:8080", "loadbalancer_https_bind": f"{address}:8443",
        "loadbalancer_stats_bind": f"{address}:9999", "loadbalancer_stats_password": "bench-only",
        "loadbalancer_peer_port": peer_port, "loadbalancer_maxconn": 4000,
        "loadbalancer_local_peer": "bench", "loadbalancer_drain_enabled": False,
        "loadbalancer_static_peers": [{"name": "bench", "address": address}],
        "loadbalancer_haproxy_bin": haproxy.wrapper,
        "lb_mappings": mappings, **extra,
    }
    (node / "vars.json").write_text(json.dumps(config))
    start = time.monotonic()
    # Pinned: the haproxy the role starts inherits the CPU (and so one thread).
    out = subprocess.run(["taskset", "-c", PROXY_CPU, str(ROOT / ".venv/bin/ansible-playbook"), "-i", "localhost,", "-c", "local",
                          str(ROOT / "playbooks/deploy.yml"), "-e", f"server_config={node}/vars.json",
                          "-e", "ansible_python_interpreter=" + sys.executable],
                         capture_output=True, text=True,
                         # Ansible's temporary files (the config validated by haproxy -c) under
                         # /tmp, which a haproxy in a root (--root) sees too.
                         env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
                              "ANSIBLE_LOCAL_TEMP": str(work / ".ansible-local"),
                              "ANSIBLE_REMOTE_TEMP": str(work / ".ansible-remote")})
    took = time.monotonic() - start
    if out.returncode != 0:
        sys.exit(f"deploy of the {n}-domain node failed:\n{out.stdout[-4000:]}\n{out.stderr[-2000:]}")
    return node, took, hosts


def cpu_ns(pids: list[int]) -> int:
    """CPU time of every thread of these processes."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
    return total


def proxy_pids(pidfile: Path) -> list[int]:
    """The serving processes: the daemon itself, or a master's workers."""
    pid = int(pidfile.read_text().split()[0])
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(c) for c in children] or [pid]


def wrk(url: str, hosts: list[str], close: bool, seconds: int, conns: int,
        pids: list[int]) -> tuple[float, str, float]:
    """WRKS wrk processes at once, each with its own Host: the sum of their
    rates, their errors, and the proxy's CPU microseconds per request."""
    before = cpu_ns(pids)
    extra = ["-H", "Connection: close"] if close else []
    procs = [subprocess.Popen(["taskset", "-c", LOAD_CPUS, "wrk", "-t1", f"-c{max(1, conns // len(hosts))}", f"-d{seconds}s",
                               "-H", f"Host: {host}", *extra, url], stdout=subprocess.PIPE, text=True)
             for host in hosts]
    total, count, errors = 0.0, 0, []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"wrk failed:\n{out}")
        total += float(re.search(r"^Requests/sec:\s+([0-9.]+)", out, re.M).group(1))
        count += int(re.search(r"^\s*([0-9]+) requests in", out, re.M).group(1))
        errors += [line.strip() for line in out.splitlines() if re.search(r"Socket errors|Non-2xx", line)]
    used = cpu_ns(pids) - before
    return total, " ".join(errors), used / 1000 / max(count, 1)


def master_cli(sock: Path, command: str) -> str:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(sock))
        s.sendall(command.encode() + b";quit\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def current_worker(sock: Path) -> str | None:
    try:
        out = master_cli(sock, "show proc")
    except OSError:
        return None
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[1] == "worker":
            return fields[0]
    return None


def reload_time(node: Path, runs: int) -> list[float]:
    """SIGUSR2 to the master until it lists a new current worker."""
    sock = node / "run/master.sock"
    master = int((node / "run/haproxy.pid").read_text().split()[0])
    times = []
    for _ in range(runs):
        before = current_worker(sock)
        start = time.monotonic()
        os.kill(master, signal.SIGUSR2)
        while True:
            now = current_worker(sock)
            if now is not None and now != before:
                break
            if time.monotonic() - start > 60:
                sys.exit("no new worker 60 s after a reload")
            time.sleep(0.002)
        times.append(time.monotonic() - start)
        time.sleep(0.5)
    return times


def check_time(node: Path, runs: int, haproxy: Haproxy) -> list[float]:
    etc = node / "etc"
    argv = haproxy.argv("-c", "-q", "-L", "bench", "-f", str(etc / "haproxy.cfg"),
                        "-f", str(etc / "stats-users.cfg"), "-f", str(etc / "peers.cfg"))
    times = []
    for _ in range(runs):
        start = time.monotonic()
        subprocess.run(argv, check=True)
        times.append(time.monotonic() - start)
    return times


def http_requests(address: str, host: str, count: int, keep_alive: bool) -> None:
    """`count` GETs through the proxy, on one connection or one each."""
    import http.client
    conn = None
    for _ in range(count):
        if conn is None:
            conn = http.client.HTTPConnection(address, 8080, timeout=120)
        conn.request("GET", "/", headers={"Host": host, **({} if keep_alive else {"Connection": "close"})})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200 or body != b"backend":
            sys.exit(f"{address} answered {resp.status} {body[:80]!r} for Host {host}")
        if not keep_alive:
            conn.close()
            conn = None
    if conn is not None:
        conn.close()


def callgrind_counts(work: Path, name: str, argv: list[str], address: str, hosts: list[str],
                     count: int, haproxy: Haproxy) -> dict[tuple[str, str], tuple[int, int, int]]:
    """Runs argv (a foreground haproxy) under callgrind; per mode and Host,
    the instructions, D1 misses and LL misses of `count` requests (N/4 with
    a new connection each)."""
    out = work / f"callgrind.{name}"
    # Pinned as in the wrk runs, so haproxy runs one thread here too.
    proc = subprocess.Popen(["taskset", "-c", PROXY_CPU, *haproxy.tool("valgrind"), "--tool=callgrind", "--cache-sim=yes",
                             f"--callgrind-out-file={out}.%p", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                socket.create_connection((address, 8080), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"{name} did not start under valgrind: {proc.stderr.read() if proc.stderr else ''}")
                time.sleep(0.5)
        result = {}
        for (mode, n, keep), host in ((m, h) for m in (("keep-alive", count, True),
                                                        ("new connection", max(1, count // 4), False))
                                      for h in hosts):
            http_requests(address, host, 50, keep)  # warm-up: first-use allocations out of the count
            subprocess.run([*haproxy.tool("callgrind_control"), "-z", str(proc.pid)], check=True, capture_output=True)
            http_requests(address, host, n, keep)
            subprocess.run([*haproxy.tool("callgrind_control"), "-d", mode.replace(" ", "-"), str(proc.pid)],
                           check=True, capture_output=True)
            dumps = sorted(work.glob(f"callgrind.{name}.{proc.pid}.*"), key=lambda p: p.stat().st_mtime)
            totals = next(line for line in dumps[-1].read_text().splitlines() if line.startswith(("totals:", "summary:")))
            events = next(line for line in dumps[-1].read_text().splitlines() if line.startswith("events:")).split()[1:]
            values = dict(zip(events, (int(v) for v in totals.split()[1:])))
            d1 = values.get("D1mr", 0) + values.get("D1mw", 0)
            ll = values.get("DLmr", 0) + values.get("DLmw", 0) + values.get("ILmr", 0)
            result[(mode, host)] = (values["Ir"] // n, d1 // n, ll // n)
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def foreground_argv(pidfile: Path) -> list[str]:
    """The arguments of a running master-worker haproxy, for the same proxy
    in the foreground (-db: no daemon, no master), pinned to the proxy CPU."""
    master = int(pidfile.read_text().split()[0])
    argv = Path(f"/proc/{master}/cmdline").read_bytes().decode().split("\0")[:-1]
    keep, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("-p", "-S"):
            skip = True
        elif a not in ("-W", "-D"):
            keep.append(a)
    return keep + ["-db"]


Target = tuple[Haproxy, str, str, list[str], Path]  # (haproxy, name, url, hosts, pidfile)


def callgrind_run(work: Path, targets: list[Target], count: int) -> None:
    print(f"== instructions per request under callgrind ({count} keep-alive, {max(1, count // 4)} new-connection "
          "requests per proxy, one client, after 50 warm-up requests)")
    rows = []
    for i, (haproxy, name, url, hosts, pidfile) in enumerate(targets):
        address = url.split("//")[1].split(":")[0]
        bare = name == "bare haproxy proxy"
        if bare:
            # Inside valgrind, which runs in the root itself (haproxy.tool).
            argv = [haproxy.binary, "-db", "-f", str(work / f"bare-{haproxy.index}.cfg")]
        else:
            # Without chroot and user: callgrind_control talks to valgrind
            # through a FIFO in /tmp, which a chrooted haproxy cannot see.
            # Neither changes what a request costs.
            argv = foreground_argv(pidfile)
            cfg = Path(argv[argv.index("-f") + 1])
            plain = work / f"t{i}-haproxy.cfg"
            plain.write_text("".join(line for line in cfg.read_text().splitlines(keepends=True)
                                     if line.split()[:1] not in (["chroot"], ["user"], ["group"])))
            argv[argv.index("-f") + 1] = str(plain)
        os.kill(int(pidfile.read_text().split()[0]), signal.SIGTERM)
        time.sleep(1)
        # An exact name and a name under a wildcard (the last of each list).
        kinds = [hosts[0]] if bare else list(dict.fromkeys([hosts[0], hosts[-1]]))
        rows.append((haproxy, name, kinds, callgrind_counts(work, f"t{i}", argv, address, kinds, count, haproxy)))
    for mode in ("keep-alive", "new connection"):
        print(f"  {mode}:")
        for haproxy in dict.fromkeys(r[0] for r in rows):
            mine = [r for r in rows if r[0] is haproxy]
            base = mine[0][3][(mode, mine[0][2][0])][0]
            one = mine[1][3][(mode, mine[1][2][0])][0]
            for _, name, kinds, counts in mine:
                for host in kinds:
                    ir, d1, ll = counts[(mode, host)]
                    label = f"{haproxy.label}, {name}" + ("" if name == mine[0][1] else f", Host {host}")
                    rel = "" if name == mine[0][1] else f"  {base / ir:5.3f} x bare, {one / ir:5.3f} x 1 domain"
                    print(f"    {label:72s} {ir:6d} instr/req, D1 misses {d1:4d}, LL misses {ll:3d}{rel}")
        versions = list(dict.fromkeys(r[0] for r in rows))
        if len(versions) == 2:
            a, b = versions
            print(f"    {b.label} against {a.label} (instructions of {a.label} / {b.label}, same proxy and Host):")
            for (_, name, kinds, ca), (_, _, _, cb) in zip([r for r in rows if r[0] is a], [r for r in rows if r[0] is b]):
                for host in kinds:
                    print(f"      {name + ', Host ' + host:66s} {ca[(mode, host)][0] / cb[(mode, host)][0]:5.3f}")
    print("  (x bare / x 1 domain: the inverse ratio of instructions, i.e. the req/s ratio at equal cost per instruction)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", "10")))
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "3")))
    ap.add_argument("--connections", type=int, default=int(os.environ.get("BENCH_CONNECTIONS", "32")))
    ap.add_argument("--sizes", default="1,100,10000")
    ap.add_argument("--callgrind", type=int, default=0, metavar="N",
                    help="count instructions per request under callgrind (N requests) instead of wrk runs")
    ap.add_argument("--root", type=Path, metavar="DIR",
                    help="also every proxy with the haproxy of this Debian root (scripts/node-root.sh)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    # Under /tmp: the root's runner binds /tmp, so its haproxy sees these files.
    work = Path(tempfile.mkdtemp(prefix="craftlb-bench-lb-", dir="/tmp"))
    pidfiles: list[Path] = []
    try:
        haproxies = [Haproxy(work, None, 0)] + ([Haproxy(work, args.root.resolve(), 1)] if args.root else [])
        print("== " + ", ".join(f"{h.label} ({' '.join(h.argv())})" for h in haproxies))
        pidfiles.append(start_haproxy(work, "backend", f"frontend backend\n    bind {BACKEND}:8080\n"
                                      "    http-request return status 200 content-type text/plain string backend\n",
                                      LOAD_CPUS, haproxies[0]))
        targets: list[Target] = []
        bigs: list[tuple[Haproxy, Path]] = []
        print(f"== deploy (playbooks/deploy.yml, the loadbalancer role, from nothing; pinned to CPU {PROXY_CPU})")
        # The 1-domain node again with features off: what they cost.
        variants = [(n, f"{n} domain" + ("s" if n != 1 else ""), {}) for n in sizes] + [
            (1, "1 domain, log_requests off", {"loadbalancer_log_requests": False}),
            (1, "1 domain, log off, stick off", {"loadbalancer_log_requests": False, "stick": False}),
        ]
        for h in haproxies:
            bare = f"127.81.0.{2 + h.index}"
            pidfiles.append(start_haproxy(work, f"bare-{h.index}", f"frontend bare\n    bind {bare}:8080\n"
                                          f"    default_backend b\nbackend b\n    server s1 {BACKEND}:8080\n",
                                          PROXY_CPU, h))
            for i, (n, label, extra) in enumerate(variants):
                address = f"127.81.{1 + h.index}.{i + 1}"
                node, took, hosts = deploy(work, n, address, 17800 + 20 * h.index + i, extra, h)
                pidfiles.append(node / "run/haproxy.pid")
                maps = list((node / "etc/maps").glob("*.map"))
                entries = sum(len(p.read_text().splitlines()) - 1 for p in maps)
                cfg_lines = len((node / "etc/haproxy.cfg").read_text().splitlines())
                print(f"  {h.label}, node, {label:30s} {took:5.1f} s; haproxy.cfg {cfg_lines} lines, "
                      f"{len(maps)} maps, {entries} map entries")
                if i == 0:
                    targets.append((h, "bare haproxy proxy", f"http://{bare}:8080/", hosts, pidfiles[-2]))
                targets.append((h, f"node, {label}", f"http://{address}:8080/", hosts, node / "run/haproxy.pid"))
                if i == len(sizes) - 1:
                    bigs.append((h, node))
        time.sleep(2)  # first health checks
        if args.callgrind:
            callgrind_run(work, targets, args.callgrind)
            return

        print(f"== {args.connections} connections, {args.seconds} s per run, {args.rounds} rounds, targets alternating; "
              f"{WRKS} wrk -t1 at once (one Host each) and the backend on CPU {LOAD_CPUS}")
        results: dict[tuple[int, bool], list[tuple[float, float]]] = {}
        errors: dict[tuple[int, bool], list[str]] = {}
        for close in (False, True):
            for _ in range(args.rounds):
                for t, (_, name, url, hosts, pidfile) in enumerate(targets):
                    rps, err, us = wrk(url, hosts, close, args.seconds, args.connections, proxy_pids(pidfile))
                    results.setdefault((t, close), []).append((rps, us))
                    if err:
                        errors.setdefault((t, close), []).append(err)
        for close in (False, True):
            print(f"  {'new connection per request' if close else 'keep-alive'}:")
            medians = {t: statistics.median(r for r, _ in results[(t, close)]) for t in range(len(targets))}
            for h in haproxies:
                mine = [t for t, target in enumerate(targets) if target[0] is h]
                bare, one = medians[mine[0]], medians[mine[1]]
                for t in mine:
                    name = targets[t][1]
                    runs = results[(t, close)]
                    us = statistics.median(u for _, u in runs)
                    rel = "" if t == mine[0] else f"  {medians[t] / bare:5.3f} x bare, {medians[t] / one:5.3f} x 1 domain"
                    print(f"    {h.label + ', ' + name:52s} {medians[t]:7.0f} req/s, {us:5.1f} us CPU/req "
                          f"(runs {', '.join(f'{r:.0f}' for r, _ in runs)}){rel}")
                    for e in errors.get((t, close), []):
                        print(f"      errors: {e}")
            if len(haproxies) == 2:
                a, b = haproxies
                print(f"    {b.label} against {a.label} (req/s of {b.label} / {a.label}, same proxy):")
                for ta, tb in zip([t for t, x in enumerate(targets) if x[0] is a], [t for t, x in enumerate(targets) if x[0] is b]):
                    print(f"      {targets[ta][1]:46s} {medians[tb] / medians[ta]:5.3f}")

        for h, big in bigs:
            checks = check_time(big, 10, h)
            print(f"== {h.label}: haproxy -c at {sizes[-1]} domains: median {statistics.median(checks) * 1000:.0f} ms "
                  f"(min {min(checks) * 1000:.0f}, max {max(checks) * 1000:.0f}, 10 runs)")
            reloads = reload_time(big, 10)
            print(f"== {h.label}: reload at {sizes[-1]} domains (SIGUSR2 -> new worker listed by the master): median "
                  f"{statistics.median(reloads) * 1000:.0f} ms (min {min(reloads) * 1000:.0f}, max {max(reloads) * 1000:.0f}, 10 runs)")
    finally:
        for pidfile in pidfiles:
            try:
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        time.sleep(0.3)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
