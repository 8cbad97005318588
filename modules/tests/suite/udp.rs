//! UDP mappings for real, across hosts: network namespaces made here (a
//! client, two load balancer nodes, the backends), on one bridge as a VPC
//! subnet would join them, with DNS queries from `dig` to two `dnsmasq`
//! servers. Each node runs playbooks/deploy.yml (process mode) inside its
//! namespace: haproxy checks the servers, the kernel balances (nftables),
//! the UDP balancer follows the checks.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use craftlb_testbed as support;
use serde_json::{Value, json};
use support::assert_success;

use crate::launch::recap_changed;
use crate::node::wait_for;

const SUBNET: &str = "10.99.0";
const CLIENT: &str = "10.99.0.100";
const BACKENDS: [&str; 2] = ["10.99.0.21", "10.99.0.22"];
/// The answer each backend gives for `which.test`: who answered.
const ANSWERS: [&str; 2] = ["10.0.0.21", "10.0.0.22"];

fn run(what: &str, cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert_success(what, &out);
    out
}

/// Namespaces of one test, removed (with every process in them) on drop.
struct Net {
    prefix: String,
    made: Vec<String>,
}

impl Net {
    fn new() -> Net {
        let mut net = Net {
            prefix: format!("clb{}", std::process::id()),
            made: vec![],
        };
        let sw = net.add("sw");
        run(
            "bridge",
            Command::new("ip").args(["-n", &sw, "link", "add", "br0", "type", "bridge"]),
        );
        run(
            "bridge up",
            Command::new("ip").args(["-n", &sw, "link", "set", "br0", "up"]),
        );
        net
    }
    fn name(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }
    fn add(&mut self, host: &str) -> String {
        let ns = self.name(host);
        run("netns add", Command::new("ip").args(["netns", "add", &ns]));
        self.made.push(ns.clone());
        run(
            "lo up",
            Command::new("ip").args(["-n", &ns, "link", "set", "lo", "up"]),
        );
        ns
    }
    /// A host on the subnet: its own namespace, a veth to the bridge.
    fn host(&mut self, host: &str, addrs: &[&str]) -> String {
        let ns = self.add(host);
        let sw = self.name("sw");
        let (inner, outer) = (
            format!("{}-{host}-i", self.prefix),
            format!("{}-{host}-o", self.prefix),
        );
        // Interface names are at most 15 bytes: short ones, renamed inside.
        let (inner, outer) = (shorten(&inner), shorten(&outer));
        run(
            "veth",
            Command::new("ip").args([
                "link", "add", &inner, "type", "veth", "peer", "name", &outer,
            ]),
        );
        run(
            "veth in",
            Command::new("ip").args(["link", "set", &inner, "netns", &ns]),
        );
        run(
            "veth out",
            Command::new("ip").args(["link", "set", &outer, "netns", &sw]),
        );
        run(
            "veth to bridge",
            Command::new("ip").args(["-n", &sw, "link", "set", &outer, "master", "br0", "up"]),
        );
        run(
            "rename",
            Command::new("ip").args(["-n", &ns, "link", "set", &inner, "name", "eth0"]),
        );
        run(
            "eth0 up",
            Command::new("ip").args(["-n", &ns, "link", "set", "eth0", "up"]),
        );
        for a in addrs {
            run(
                "address",
                Command::new("ip").args([
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{a}/24"),
                    "dev",
                    "eth0",
                ]),
            );
        }
        ns
    }
}

fn shorten(name: &str) -> String {
    let h = name
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    format!("v{:08x}{}", h, &name[name.len() - 2..])
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn in_ns(ns: &str, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, program]);
    cmd
}

/// One DNS query for `which.test`: the answering backend's address, or
/// dig's complaint (refused, timed out).
fn query(client: &str, node: &str, port: u16, source: Option<&str>) -> Result<String, String> {
    let mut cmd = in_ns(client, "dig");
    cmd.args([
        &format!("@{node}"),
        "-p",
        &port.to_string(),
        "which.test",
        "+short",
        "+tries=1",
        "+timeout=1",
    ]);
    if let Some(s) = source {
        cmd.args(["-b", s]);
    }
    let out = cmd.output().map_err(|e| format!("dig: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match text.lines().next() {
        Some(a) if ANSWERS.contains(&a) => Ok(a.to_owned()),
        _ => Err(format!(
            "{text} {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// A dnsmasq answering `which.test` with its own ANSWERS entry, on UDP and
/// TCP 53 (haproxy checks the TCP side).
fn dns_server(ns: &str, i: usize) -> Child {
    in_ns(ns, "dnsmasq")
        .args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--user=root",
            "--pid-file=",
            "--log-facility=-",
            "--port=53",
        ])
        .arg(format!("--listen-address={}", BACKENDS[i]))
        .arg(format!("--address=/which.test/{}", ANSWERS[i]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("dnsmasq (make setup installs dnsmasq-base): {e}"))
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Node {
    ns: String,
    ip: String,
    dir: tempfile::TempDir,
}

impl Node {
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn vars(&self, mappings: Value) -> PathBuf {
        let v = json!({
            "loadbalancer_service_manager": "process",
            "loadbalancer_config_dir": self.path("etc"),
            "loadbalancer_run_dir": self.path("run"),
            "loadbalancer_craftlb_dir": self.path("opt"),
            "loadbalancer_chroot": self.path("chroot"),
            "loadbalancer_sysctl_file": self.path("sysctl.conf"),
            "loadbalancer_update_peers_binary": support::module_bin("update_peers"),
            "loadbalancer_http_bind": format!("{}:8080", self.ip),
            "loadbalancer_stats_bind": "127.0.0.1:9999",
            "loadbalancer_stats_password": "test-only",
            "loadbalancer_local_peer": "node",
            "loadbalancer_static_peers": [{"name": "node", "address": self.ip}],
            "loadbalancer_maxconn": 4000,
            "lb_mappings": mappings,
        });
        let path = self.path("vars.json");
        std::fs::write(&path, v.to_string()).unwrap_or_else(|e| panic!("{e}"));
        path
    }
    /// playbooks/deploy.yml inside the node's namespace.
    fn deploy(&self, mappings: Value) -> Output {
        let vars = self.vars(mappings);
        let bin = support::module_bin("update_peers");
        let udp = support::module_bin("udp_balancer");
        let library = support::library(&[
            ("update_peers", &bin.to_string_lossy()),
            ("udp_balancer", &udp.to_string_lossy()),
        ]);
        let ansible = support::ansible_command("ansible-playbook", library.path());
        let mut cmd = in_ns(&self.ns, &ansible.get_program().to_string_lossy());
        cmd.arg("playbooks/deploy.yml")
            .arg("-e")
            .arg(format!("server_config={}", vars.display()));
        if let Some(dir) = ansible.get_current_dir() {
            cmd.current_dir(dir);
        }
        for (k, v) in ansible.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("ansible-playbook: {e}"));
        assert_success("deploy.yml in the node's namespace", &out);
        out
    }
    fn table(&self) -> Option<String> {
        let out = in_ns(&self.ns, "nft")
            .args(["list", "table", "ip", "craftlb_udp"])
            .output()
            .unwrap_or_else(|e| panic!("nft: {e}"));
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
    /// What a failure report needs: the table, the balancer's log, haproxy's view.
    fn state(&self) -> String {
        let stat = in_ns(&self.ns, "sh")
            .arg("-c")
            .arg(format!(
                "echo 'show stat' | socat - UNIX-CONNECT:{} 2>&1 | cut -d, -f1,2,18",
                self.path("run/admin.sock").display()
            ))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if let Ok(secs) = std::env::var("CRAFTLB_UDP_PAUSE") {
            eprintln!("pausing {secs} s: namespaces {}", self.ns);
            std::thread::sleep(Duration::from_secs(secs.parse().unwrap_or(0)));
        }
        format!(
            "table:\n{}\nbalancer log:\n{}\nhaproxy:\n{stat}",
            self.table().unwrap_or_else(|| "(none)".into()),
            std::fs::read_to_string(self.path("opt/udp_balancer.log")).unwrap_or_default(),
        )
    }
    fn balancer_pid(&self) -> Option<String> {
        let pid = std::fs::read_to_string(self.path("run/craftlb-udp.pid")).ok()?;
        let pid = pid.trim().to_owned();
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }
}

fn mappings() -> Value {
    json!([
        {"name": "dns", "mode": "udp", "frontend_port": 53, "servers": BACKENDS},
        {"name": "dns-src", "mode": "udp", "frontend_port": 5353, "port": 53,
         "servers": BACKENDS, "balance": "source"},
    ])
}

/// Until `n` queries in a row are answered by `only`; the time it took.
fn until_only(client: &str, node: &str, only: &str, n: usize) -> Duration {
    let start = Instant::now();
    let mut run_start = Instant::now();
    let mut streak = 0;
    while streak < n {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{only} never answered {n} queries in a row"
        );
        if streak == 0 {
            run_start = Instant::now();
        }
        match query(client, node, 53, None) {
            Ok(a) if a == only => streak += 1,
            _ => streak = 0,
        }
    }
    run_start - start
}

#[test]
fn udp_mappings_balance_in_the_kernel_follow_health_keep_sources_and_drain() {
    let mut net = Net::new();
    // 16 client addresses (.100-.115), the first one the default source.
    let clients: Vec<String> = (100..116).map(|i| format!("{SUBNET}.{i}")).collect();
    let client_refs: Vec<&str> = clients.iter().map(String::as_str).collect();
    let client = net.host("c", &client_refs);
    let backends = net.host("b", &BACKENDS);
    let nodes: Vec<Node> = [("n1", "10.99.0.10"), ("n2", "10.99.0.11")]
        .into_iter()
        .map(|(h, ip)| Node {
            ns: net.host(h, &[ip]),
            ip: ip.into(),
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
        })
        .collect();
    let mut servers: Vec<Option<Server>> = (0..2)
        .map(|i| Some(Server(dns_server(&backends, i))))
        .collect();
    wait_for("both DNS servers to answer", 10, || {
        BACKENDS
            .iter()
            .all(|b| query(&client, b, 53, None).is_ok())
            .then_some(())
    });

    for n in &nodes {
        n.deploy(mappings());
    }
    let n1 = &nodes[0];
    // Forwarding is on in the node and written down for the next boot.
    let fwd = run(
        "sysctl",
        in_ns(&n1.ns, "sysctl").args(["-n", "net.ipv4.ip_forward"]),
    );
    assert_eq!(String::from_utf8_lossy(&fwd.stdout).trim(), "1");
    let file = std::fs::read_to_string(n1.path("sysctl.conf")).unwrap_or_default();
    assert!(file.contains("net.ipv4.ip_forward = 1"), "{file}");

    // Round robin: both backends answer through the node.
    let answers: Vec<String> = (0..8)
        .map(|_| {
            query(&client, &n1.ip, 53, None)
                .unwrap_or_else(|e| panic!("query: {e}\n{}", n1.state()))
        })
        .collect();
    for a in ANSWERS {
        assert!(
            answers.iter().any(|x| x == a),
            "{a} never answered: {answers:?}"
        );
    }

    // A rerun changes nothing: same table, same service.
    let pid = n1.balancer_pid().expect("the UDP balancer runs");
    let again = n1.deploy(mappings());
    assert_eq!(
        recap_changed(&again),
        0,
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    assert_eq!(n1.balancer_pid().as_deref(), Some(pid.as_str()));

    // balance: source: a client gets the same backend from either node.
    let mut by_client = Vec::new();
    for c in &clients {
        let on: Vec<String> = nodes
            .iter()
            .map(|n| query(&client, &n.ip, 5353, Some(c)).unwrap_or_else(|e| panic!("{c}: {e}")))
            .collect();
        assert_eq!(
            on[0], on[1],
            "client {c} got different backends from the two nodes"
        );
        assert_eq!(
            query(&client, &n1.ip, 5353, Some(c)).as_deref(),
            Ok(on[0].as_str()),
            "client {c} moved between two queries"
        );
        by_client.push((c.clone(), on[0].clone()));
    }
    assert!(
        ANSWERS
            .iter()
            .all(|a| by_client.iter().any(|(_, b)| b == a)),
        "the hash sent every client to one backend: {by_client:?}"
    );
    // A flow that keeps its source port, on the backend about to fail.
    let (sticky, _) = by_client
        .iter()
        .find(|(_, b)| b == ANSWERS[1])
        .cloned()
        .unwrap_or_default();
    let sticky_flow = format!("{sticky}#40002");
    assert_eq!(
        query(&client, &n1.ip, 5353, Some(&sticky_flow)).as_deref(),
        Ok(ANSWERS[1])
    );

    // A backend fails: out of rotation, then no query is lost to it.
    servers[1] = None;
    let out_after = until_only(&client, &n1.ip, ANSWERS[0], 10);
    eprintln!(
        "udp: backend out of rotation {:.1} s after it stopped",
        out_after.as_secs_f64()
    );
    let lost = (0..40)
        .filter(|_| query(&client, &n1.ip, 53, None).as_deref() != Ok(ANSWERS[0]))
        .count();
    assert_eq!(
        lost, 0,
        "queries lost after the failed backend left rotation"
    );
    // haproxy reloads (update_peers does one at every peers change; so does
    // a deploy): each new process reports the dead server UP until its
    // first check, and no query may follow that.
    let master = std::fs::read_to_string(n1.path("run/haproxy.pid")).unwrap_or_default();
    let master = master
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut during_reloads = 0;
    for _ in 0..3 {
        run("reload", Command::new("kill").args(["-USR2", &master]));
        let until = Instant::now() + Duration::from_millis(2500);
        while Instant::now() < until {
            during_reloads += 1;
            assert_eq!(
                query(&client, &n1.ip, 53, None).as_deref(),
                Ok(ANSWERS[0]),
                "a query went to the failed backend after a reload\n{}",
                n1.state()
            );
        }
    }
    eprintln!("udp: {during_reloads} queries across 3 haproxy reloads, none to the failed backend");
    // The flow that was on it moved too (its conntrack entry went).
    assert_eq!(
        query(&client, &n1.ip, 5353, Some(&sticky_flow)).as_deref(),
        Ok(ANSWERS[0]),
        "a flow that keeps its source port stayed on the failed backend"
    );

    // It recovers: back in rotation.
    servers[1] = Some(Server(dns_server(&backends, 1)));
    let back = Instant::now();
    wait_for(
        "the recovered backend to answer through the node",
        30,
        || (query(&client, &n1.ip, 53, None).as_deref() == Ok(ANSWERS[1])).then_some(()),
    );
    eprintln!(
        "udp: backend back in rotation {:.1} s after it restarted",
        back.elapsed().as_secs_f64()
    );

    // Drain: the node closes (the drain's file); a flow in progress goes
    // on, a new one finds nothing.
    let in_flight = format!("{CLIENT}#40001");
    let first = query(&client, &n1.ip, 53, Some(&in_flight)).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        n1.path("etc/craftlb-drain-closed.acl"),
        format!(
            "# craftlb: closed to new connections since {}\n0.0.0.0/0\n::/0\n",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    wait_for("the closed node to refuse a new flow", 10, || {
        query(&client, &n1.ip, 53, None).is_err().then_some(())
    });
    for _ in 0..5 {
        assert_eq!(
            query(&client, &n1.ip, 53, Some(&in_flight)).as_deref(),
            Ok(first.as_str()),
            "the flow in progress was cut by the drain"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // The other node still takes new flows.
    assert!(query(&client, &nodes[1].ip, 53, None).is_ok());
    // A client that keeps its source port and was refused while the node
    // dispatched nothing is served once it does again (its untranslated
    // conntrack entry goes).
    let refused_flow = format!("{CLIENT}#40003");
    assert!(query(&client, &n1.ip, 53, Some(&refused_flow)).is_err());
    std::fs::write(n1.path("etc/craftlb-drain-closed.acl"), "").unwrap_or_else(|e| panic!("{e}"));
    wait_for("the reopened node to take a new flow", 10, || {
        query(&client, &n1.ip, 53, None).is_ok().then_some(())
    });
    assert!(
        query(&client, &n1.ip, 53, Some(&refused_flow)).is_ok(),
        "a flow refused while the node was closed stays refused after it reopened\n{}",
        n1.state()
    );

    // A mapping added: the running balancer restarts with it at once (an
    // old one would put the old table back), and it serves when the deploy
    // returns.
    let mut more = mappings();
    if let Some(list) = more.as_array_mut() {
        list.push(
            json!({"name": "dns-b", "mode": "udp", "frontend_port": 5354, "port": 53,
                         "servers": [BACKENDS[1]]}),
        );
    }
    let changed = n1.deploy(more.clone());
    assert!(recap_changed(&changed) > 0);
    assert_ne!(
        n1.balancer_pid(),
        Some(pid.clone()),
        "the UDP balancer kept its old arguments"
    );
    assert_eq!(
        query(&client, &n1.ip, 5354, None).as_deref(),
        Ok(ANSWERS[1]),
        "{}",
        n1.state()
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        query(&client, &n1.ip, 5354, None).as_deref(),
        Ok(ANSWERS[1]),
        "{}",
        n1.state()
    );

    // The mappings go: nothing of them is left.
    n1.deploy(
        json!([{"name": "web", "domains": ["web.example.com"], "servers": ["10.99.0.21"],
                      "http_port": 8080, "https_port": null}]),
    );
    assert_eq!(n1.table(), None, "the UDP table is still there");
    assert_eq!(n1.balancer_pid(), None, "the UDP balancer still runs");
    assert!(!n1.path("opt/udp_balancer.json").exists());
    assert!(!n1.path("opt/bin/udp_balancer").exists());
    assert!(!n1.path("sysctl.conf").exists());
    assert!(query(&client, &n1.ip, 53, None).is_err());
    drop(servers);
    drop(net);
}
