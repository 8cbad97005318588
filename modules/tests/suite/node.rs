//! Load balancer nodes for real: the loadbalancer role (playbooks/deploy.yml,
//! process mode) renders and starts haproxy on loopback addresses that the
//! emulator hands out as the instances' private IPs; update_peers runs as the
//! node's timer would, with IMDS pointed at the emulator.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use craftlb_testbed as support;
use serde_json::{Value, json};
use support::{Emulator, Haproxy, assert_success, haproxy_runtime, http_backends, scenario};

fn update_peers() -> String {
    support::module_bin("update_peers")
        .to_string_lossy()
        .into_owned()
}

struct Node {
    dir: tempfile::TempDir,
    ip: String,
    id: String,
}

impl Node {
    fn new(ip: &str, id: &str) -> Node {
        Node {
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
            ip: ip.into(),
            id: id.into(),
        }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn socket(&self) -> PathBuf {
        self.path("run/admin.sock")
    }
    fn imds(&self, emu: &Emulator) -> String {
        format!("{}/_craftlb/imds/{}", emu.url, self.id)
    }
    /// The server configuration the role gets (JSON is YAML).
    fn vars(&self, mappings: Value, extra: Value) -> PathBuf {
        let mut v = json!({
            "loadbalancer_service_manager": "process",
            "loadbalancer_config_dir": self.path("etc"),
            "loadbalancer_run_dir": self.path("run"),
            "loadbalancer_craftlb_dir": self.path("opt"),
            "loadbalancer_chroot": self.path("chroot"),
            "loadbalancer_update_peers_binary": &update_peers(),
            "loadbalancer_http_bind": format!("{}:8080", self.ip),
            "loadbalancer_https_bind": format!("{}:8443", self.ip),
            "loadbalancer_stats_bind": format!("{}:9999", self.ip),
            "loadbalancer_stats_password": "test-only",
            "loadbalancer_peer_port": 17777,
            "loadbalancer_maxconn": 4000,
            "lb_mappings": mappings,
        });
        if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        let path = self.path("vars.json");
        std::fs::write(&path, v.to_string()).unwrap_or_else(|e| panic!("{e}"));
        path
    }
    fn deploy(&self, vars: &Path, imds: Option<&str>) -> (Output, Haproxy) {
        let library = support::library(&[("update_peers", &update_peers())]);
        let mut cmd = support::ansible_command("ansible-playbook", library.path());
        cmd.arg("playbooks/deploy.yml")
            .arg("-e")
            .arg(format!("server_config={}", vars.display()));
        if let Some(url) = imds {
            cmd.env("AWS_EC2_METADATA_SERVICE_ENDPOINT", url);
        }
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("ansible-playbook: {e}"));
        (out, Haproxy::adopt(&self.path("run/haproxy.pid")))
    }
    /// update_peers as the timer runs it: the binary and a JSON args file.
    fn update_peers(&self, args: Value, imds: Option<&str>) -> (bool, Value) {
        let path = self.path("update_peers.json");
        std::fs::write(&path, args.to_string()).unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = Command::new(update_peers());
        cmd.arg(&path)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env_remove("AWS_PROFILE");
        if let Some(url) = imds {
            cmd.env("AWS_EC2_METADATA_SERVICE_ENDPOINT", url);
        }
        let out = cmd.output().unwrap_or_else(|e| panic!("update_peers: {e}"));
        let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "update_peers printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        (out.status.success(), json)
    }
    /// update_peers in the background (a drain blocks for its whole length).
    fn spawn_update_peers(&self, name: &str, args: Value, imds: &str) -> std::process::Child {
        let path = self.path(&format!("{name}.json"));
        std::fs::write(&path, args.to_string()).unwrap_or_else(|e| panic!("{e}"));
        Command::new(update_peers())
            .arg(&path)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env_remove("AWS_PROFILE")
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("update_peers: {e}"))
    }
    /// What the role loads before the peers file.
    fn validate_with(&self) -> Value {
        json!([
            self.path("etc/haproxy.cfg"),
            self.path("etc/stats-users.cfg")
        ])
    }
    fn master_socket(&self) -> PathBuf {
        self.path("run/master.sock")
    }
    /// The pid of the current worker (master CLI `show proc`); `None` while
    /// the master re-executes itself during a reload.
    fn worker_pid(&self) -> Option<u32> {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(self.master_socket()).ok()?;
        s.write_all(b"show proc;quit\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        text.lines()
            .take_while(|l| !l.starts_with("# old workers"))
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let mut cols = l.split_whitespace();
                let pid = cols.next()?.parse().ok()?;
                (cols.next()? == "worker").then_some(pid)
            })
    }
    /// A column of a frontend's row in `show stat` of the current worker.
    fn frontend_stat(&self, frontend: &str, column: &str) -> u64 {
        let csv = haproxy_runtime(&self.socket(), "show stat");
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .and_then(|h| h.strip_prefix("# "))
            .map(|h| h.split(',').collect())
            .unwrap_or_default();
        let col = header.iter().position(|c| *c == column);
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&frontend) && f.get(1) == Some(&"FRONTEND"))
            .and_then(|f| col.and_then(|c| f.get(c).and_then(|v| v.parse().ok())))
            .unwrap_or(0)
    }
    /// Reloads through the master and waits until the new worker runs.
    fn reload_and_wait(&self, h: &Haproxy) {
        let before = self.worker_pid();
        h.reload();
        wait_for("the new worker after a reload", 10, || {
            let now = self.worker_pid();
            (now.is_some() && now != before).then_some(())
        });
    }
    /// How many old workers (earlier reloads' processes still serving
    /// connections) the master lists.
    fn old_workers(&self) -> Option<usize> {
        let text = self.show_proc()?;
        // haproxy lists the section only while there are old workers.
        let Some(old) = text.split("# old workers").nth(1) else {
            return text.contains("# workers").then_some(0);
        };
        Some(
            old.lines()
                .take_while(|l| !l.starts_with("# programs"))
                .filter(|l| !l.starts_with('#') && l.split_whitespace().nth(1) == Some("worker"))
                .count(),
        )
    }
    fn show_proc(&self) -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(self.master_socket()).ok()?;
        s.write_all(b"show proc;quit\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        Some(text)
    }
    fn peers_text(&self) -> String {
        std::fs::read_to_string(self.path("etc/peers.cfg")).unwrap_or_default()
    }
}

fn get(url: &str, host: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", "-H", &format!("Host: {host}"), url])
        .output()
        .unwrap_or_else(|e| panic!("curl: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `show table <t>`: the entry keys.
fn table_keys(socket: &Path, table: &str) -> Vec<String> {
    haproxy_runtime(socket, &format!("show table {table}"))
        .lines()
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("key=")))
        .map(str::to_owned)
        .collect()
}

pub(super) fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A group of `n` InService instances in a subnet of `cidr` (no hooks):
/// their (id, private IP).
pub(super) fn group_instances(
    emu: &Emulator,
    cidr: &str,
    group: &str,
    n: usize,
) -> Vec<(String, String)> {
    scenario(
        emu,
        &[
            "world",
            "--no-hooks",
            "--subnet-cidr",
            cidr,
            "--group",
            group,
        ],
    );
    let n_text = n.to_string();
    scenario(emu, &["scale", "--group", group, "--desired", &n_text]);
    let got = scenario(emu, &["wait", "--group", group, "--in-service", &n_text]);
    let inst: Vec<(String, String)> = got["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            (
                i["id"].as_str().unwrap_or_default().to_owned(),
                i["private_ip"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .filter(|(id, ip)| !id.is_empty() && !ip.is_empty())
        .collect();
    assert_eq!(inst.len(), n, "{got}");
    inst
}

fn app_mapping(servers: &[&str]) -> Value {
    json!([{"name": "app", "domains": ["app.example.com"], "servers": servers,
            "http_port": 8080, "https_port": null}])
}

#[test]
fn two_nodes_replicate_stickiness_and_follow_the_group() {
    let emu = Emulator::start();
    let inst = group_instances(&emu, "127.77.0.0/24", "peers-asg", 2);
    let backends_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let _backends = http_backends(
        backends_dir.path(),
        8080,
        &[("app-1", "127.78.0.1"), ("app-2", "127.78.0.2")],
    );
    let nodes: Vec<Node> = inst.iter().map(|(id, ip)| Node::new(ip, id)).collect();
    let mut running = Vec::new();
    for n in &nodes {
        let vars = n.vars(
            app_mapping(&["127.78.0.1", "127.78.0.2"]),
            json!({"loadbalancer_endpoint_url": emu.url}),
        );
        let (out, h) = n.deploy(&vars, Some(&n.imds(&emu)));
        running.push(h);
        assert_success(&format!("deploy node {}", n.id), &out);
        let text = n.peers_text();
        for (id, ip) in &inst {
            assert!(text.contains(&format!("peer {id} {ip}:17777")), "{text}");
        }
    }
    let (a, b) = (&nodes[0], &nodes[1]);

    // A stick entry learned on A appears on B.
    let first = get(&format!("http://{}:8080/", a.ip), "app.example.com");
    assert!(first.starts_with("app-"), "{first}");
    let keys_a = wait_for("A's stick entry", 10, || {
        Some(table_keys(&a.socket(), "app_http")).filter(|k| !k.is_empty())
    });
    wait_for("the entry on B", 10, || {
        table_keys(&b.socket(), "app_http")
            .eq(&keys_a)
            .then_some(())
    });
    // Stickiness holds across nodes: B sends the client to the same server.
    for _ in 0..5 {
        assert_eq!(
            get(&format!("http://{}:8080/", b.ip), "app.example.com"),
            first
        );
    }
    // ... and survives a reload of B (the old process hands its table over).
    b.reload_and_wait(&running[1]);
    wait_for("the entry on B after a reload", 10, || {
        table_keys(&b.socket(), "app_http")
            .eq(&keys_a)
            .then_some(())
    });

    // The group grows: A's peers follow; nothing is rewritten when nothing changed.
    let args = json!({"peers_file": a.path("etc/peers.cfg"), "validate_with": a.validate_with(),
                      "master_pidfile": a.path("run/haproxy.pid"), "endpoint_url": emu.url});
    scenario(&emu, &["scale", "--group", "peers-asg", "--desired", "3"]);
    let got = scenario(&emu, &["wait", "--group", "peers-asg", "--in-service", "3"]);
    // EC2 may not know an instance launched a second ago (eventual
    // consistency; the emulator answers so): a run then leaves it out and
    // the next run (the node's timer) adds it.
    let res = wait_for("update_peers to see the third instance", 15, || {
        let (ok, res) = a.update_peers(args.clone(), Some(&a.imds(&emu)));
        assert!(ok, "{res}");
        (res["peers"].as_array().map(Vec::len) == Some(3)).then_some(res)
    });
    assert_eq!(res["changed"], true, "{res}");
    assert_eq!(res["reloaded"], true, "{res}");
    assert_eq!(res["peers"].as_array().map(Vec::len), Some(3), "{res}");
    let third = got["instances"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|i| !inst.iter().any(|(id, _)| i["id"] == id.as_str()))
        })
        .map(|i| i["id"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_else(|| panic!("no third instance in {got}"));
    assert!(a.peers_text().contains(&third));
    let mtime = std::fs::metadata(a.path("etc/peers.cfg"))
        .and_then(|m| m.modified())
        .ok();
    let (ok, res) = a.update_peers(args.clone(), Some(&a.imds(&emu)));
    assert!(
        ok && res["changed"] == false && res["reloaded"] == false,
        "{res}"
    );
    assert_eq!(
        std::fs::metadata(a.path("etc/peers.cfg"))
            .and_then(|m| m.modified())
            .ok(),
        mtime,
        "rewritten without a change"
    );

    // It shrinks again.
    scenario(&emu, &["terminate", "--instance", &third]);
    let (ok, res) = a.update_peers(args.clone(), Some(&a.imds(&emu)));
    assert!(ok && res["changed"] == true, "{res}");
    assert!(!a.peers_text().contains(&third));
    let good = a.peers_text();

    // AWS failing, or answering an empty group: the last good file stays.
    scenario(
        &emu,
        &[
            "faults",
            "--rules",
            r#"{"seed": 1, "rules": [{"service": "autoscaling", "operation": "DescribeAutoScalingGroups", "error": 1.0}]}"#,
        ],
    );
    let mut failing = args.clone();
    failing["retries"] = json!(1);
    let (ok, res) = a.update_peers(failing, Some(&a.imds(&emu)));
    assert!(!ok, "{res}");
    assert_eq!(res["operation"], "DescribeAutoScalingGroups", "{res}");
    scenario(&emu, &["faults", "--rules", r#"{"rules": []}"#]);
    scenario(
        &emu,
        &[
            "world",
            "--no-hooks",
            "--subnet-cidr",
            "127.77.1.0/24",
            "--group",
            "empty-asg",
            "--zone",
            "empty.example.com.",
        ],
    );
    let mut empty = args.clone();
    empty["group_name"] = json!("empty-asg");
    let (ok, res) = a.update_peers(empty, Some(&a.imds(&emu)));
    assert!(!ok, "{res}");
    assert!(
        res["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("no instance"),
        "{res}"
    );
    assert_eq!(a.peers_text(), good);
    // Still serving.
    assert!(get(&format!("http://{}:8080/", a.ip), "app.example.com").starts_with("app-"));
}

#[test]
fn the_role_refuses_bad_input_before_writing_anything() {
    let n = Node::new("127.79.1.1", "n1");
    let static_peers = json!({"loadbalancer_local_peer": "n1",
                              "loadbalancer_static_peers": [{"name": "n1", "address": "127.79.1.1"}]});
    let refused = |mappings: Value, extra: Value, why: &str| {
        let vars = n.vars(mappings, extra);
        let (out, _h) = n.deploy(&vars, None);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "accepted: {stdout}");
        assert!(stdout.contains(why), "expected '{why}':\n{stdout}");
        assert!(
            !n.path("etc/haproxy.cfg").exists(),
            "nothing may be written before validation"
        );
    };
    let mut extra = static_peers.clone();
    extra["loadbalancer_stats_password"] = json!("");
    refused(
        app_mapping(&["127.78.1.1"]),
        extra,
        "neither loadbalancer_stats_password nor loadbalancer_stats_password_hash is set",
    );
    refused(
        json!([{"name": "app", "domains": ["admin.acme.com|.*"], "servers": ["127.78.1.1"]}]),
        static_peers.clone(),
        "domains must be exact DNS names",
    );
    // Two mappings claiming one name (case differs): the second would never be reached.
    refused(
        json!([{"name": "app", "domains": ["app.example.com"], "servers": ["127.78.1.1"]},
               {"name": "other", "domains": ["*.example.com", "APP.example.com"], "servers": ["127.78.1.2"]}]),
        static_peers.clone(),
        "app.example.com (mappings app, other)",
    );
    // Ansible's own validation of the role's argument spec: types, unknown keys.
    let mut extra = static_peers.clone();
    extra["loadbalancer_peer_port"] = json!("seven");
    refused(
        app_mapping(&["127.78.1.1"]),
        extra,
        "argument 'loadbalancer_peer_port' is of type str",
    );
    refused(
        json!([{"name": "app", "domian": "app.example.com", "servers": ["127.78.1.1"]}]),
        static_peers,
        "loadbalancer_mappings.domian",
    );
}

/// The stats password is stored as a crypt hash in its own file and shows
/// up in no file, diff or log; the hash works; a client's own
/// X-Forwarded-For never reaches a backend.
#[test]
fn secrets_stay_out_of_files_and_diffs_and_backends_see_the_real_client() {
    let backends_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The backend answers with the X-Forwarded-For it received.
    let cfg = backends_dir.path().join("echo.cfg");
    std::fs::write(
        &cfg,
        "global\n    maxconn 100\ndefaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
         frontend echo\n    bind 127.78.3.1:8080\n\
         http-request return status 200 content-type text/plain lf-string \"xff=%[req.fhdr_cnt(x-forwarded-for)]:%[req.fhdr(x-forwarded-for)]\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let _echo = Haproxy::start(
        &backends_dir.path().join("echo.pid"),
        &["-f", &cfg.to_string_lossy()],
    );
    let n = Node::new("127.79.3.1", "n1");
    let password = "s3cret-Passw0rd!";
    let vars = n.vars(
        app_mapping(&["127.78.3.1"]),
        json!({"loadbalancer_local_peer": "n1", "loadbalancer_stats_password": password,
               "loadbalancer_static_peers": [{"name": "n1", "address": "127.79.3.1"}]}),
    );
    let library = support::library(&[("update_peers", &update_peers())]);
    let deploy = |diff: bool| {
        let mut cmd = support::ansible_command("ansible-playbook", library.path());
        cmd.arg("playbooks/deploy.yml")
            .arg("-e")
            .arg(format!("server_config={}", vars.display()))
            .arg("-v");
        if diff {
            cmd.arg("--diff");
        }
        cmd.output()
            .unwrap_or_else(|e| panic!("ansible-playbook: {e}"))
    };
    let out = deploy(true);
    let _node = Haproxy::adopt(&n.path("run/haproxy.pid"));
    assert_success("deploy", &out);
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("haproxy.cfg"), "no diff shown: {log}");
    let users = std::fs::read_to_string(n.path("etc/stats-users.cfg")).unwrap_or_default();
    let hash = users
        .lines()
        .find_map(|l| l.split_whitespace().skip_while(|w| *w != "password").nth(1))
        .unwrap_or_else(|| panic!("no hash in {users}"))
        .to_owned();
    assert!(hash.starts_with("$6$"), "{users}");
    assert!(
        !log.contains(password) && !log.contains(&hash),
        "secret in the output: {log}"
    );
    for f in ["haproxy.cfg", "stats-users.cfg", "peers.cfg"] {
        let text = std::fs::read_to_string(n.path(&format!("etc/{f}"))).unwrap_or_default();
        assert!(!text.contains(password), "password in {f}");
    }
    let stats = format!("http://{}:9999/", n.ip);
    let status = |user: &str| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-u",
                user,
                &stats,
            ])
            .output()
            .unwrap_or_else(|e| panic!("curl: {e}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(status(&format!("admin:{password}")), "200");
    assert_eq!(status("admin:wrong"), "401");
    // A second run changes nothing (the hash is stable).
    let again = deploy(false);
    assert_success("deploy again", &again);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("changed=0"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );

    let url = format!("http://{}:8080/", n.ip);
    let out = Command::new("curl")
        .args([
            "-s",
            "-m",
            "5",
            "-H",
            "Host: app.example.com",
            "-H",
            "X-Forwarded-For: 6.6.6.6",
            "-H",
            "X-Forwarded-For: 7.7.7.7",
            &url,
        ])
        .output()
        .unwrap_or_else(|e| panic!("curl: {e}"));
    // curl connects from 127.0.0.1 on loopback.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "xff=1:127.0.0.1");
}

/// wrk's summary: (requests, error lines).
/// A client's HTTP/1.1 keep-alive connection.
pub(super) struct KeepAlive(std::net::TcpStream);

impl KeepAlive {
    /// Connected, one request answered, then idle.
    pub(super) fn open(ip: &str, port: u16) -> KeepAlive {
        let s = std::net::TcpStream::connect((ip, port))
            .unwrap_or_else(|e| panic!("connect to {ip}:{port}: {e}"));
        let mut k = KeepAlive(s);
        let head = k.request();
        assert!(head.starts_with("HTTP/1.1 200"), "first answer: {head:?}");
        k
    }
    /// One request; what arrives within a second (the test backends'
    /// answers are a few hundred bytes).
    pub(super) fn request(&mut self) -> String {
        use std::io::{Read, Write};
        self.0
            .write_all(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
            .unwrap_or_else(|e| panic!("send on a keep-alive connection: {e}"));
        let _ = self.0.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 4096];
        let got = self.0.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..got]).into_owned()
    }
    /// A request, its answer, then the server's close (EOF within 5 s).
    pub(super) fn request_then_eof(&mut self) -> String {
        let answer = self.request();
        assert!(self.closed_cleanly(), "no close after {answer:?}");
        answer
    }
    /// Still open: nothing to read, no EOF.
    pub(super) fn is_open(&mut self) -> bool {
        use std::io::Read;
        let _ = self.0.set_nonblocking(true);
        let mut buf = [0u8; 1];
        let open =
            matches!(self.0.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        let _ = self.0.set_nonblocking(false);
        open
    }
    /// The server closed it (EOF within 5 s), not reset it.
    pub(super) fn closed_cleanly(&mut self) -> bool {
        use std::io::Read;
        let _ = self.0.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = [0u8; 4096];
        loop {
            match self.0.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }
}

fn wrk_summary(out: &Output) -> (u64, Vec<String>) {
    let text = String::from_utf8_lossy(&out.stdout);
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let errors = text
        .lines()
        .filter(|l| l.contains("Socket errors") || l.contains("Non-2xx"))
        .map(str::to_owned)
        .collect();
    (requests, errors)
}

#[test]
fn twenty_peer_change_reloads_under_load_fail_no_request() {
    let backends_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let _backends = http_backends(
        backends_dir.path(),
        8080,
        &[("app-1", "127.79.0.1"), ("app-2", "127.79.0.2")],
    );
    let n = Node::new("127.79.0.10", "n1");
    let vars = n.vars(
        app_mapping(&["127.79.0.1", "127.79.0.2"]),
        json!({"loadbalancer_local_peer": "n1",
               "loadbalancer_static_peers": [{"name": "n1", "address": "127.79.0.10"}]}),
    );
    let (out, _node) = n.deploy(&vars, None);
    assert_success("deploy", &out);

    // The load runs until the last reload is done (stopped by SIGINT, when
    // wrk prints its summary), however slow the machine: a fixed duration
    // could end before the later reloads and prove nothing about them.
    let url = format!("http://{}:8080/", n.ip);
    let mut wrk = Command::new("wrk")
        .args(["-t2", "-c16", "-d600s", "-H", "Host: app.example.com", &url])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run wrk (make setup installs it): {e}"));
    wait_for("wrk's first requests", 10, || {
        (n.frontend_stat("fe_http", "req_tot") > 100).then_some(())
    });
    // Two clients with idle keep-alive connections to the worker the last
    // reload retires, opened just before it: one asks again after it, one
    // stays idle.
    let mut idle = Vec::new();
    for i in 0..20 {
        if i == 19 {
            idle = (0..2).map(|_| KeepAlive::open(&n.ip, 8080)).collect();
        }
        let before = n.worker_pid();
        let mut peers = vec![json!({"name": "n1", "address": "127.79.0.10"})];
        if i % 2 == 0 {
            peers.push(json!({"name": "n2", "address": "127.79.0.11"}));
        }
        let (ok, res) = n.update_peers(
            json!({"peers_file": n.path("etc/peers.cfg"), "validate_with": n.validate_with(),
                   "master_pidfile": n.path("run/haproxy.pid"), "local_peer": "n1", "peers": peers}),
            None,
        );
        assert!(
            ok && res["changed"] == true && res["reloaded"] == true,
            "reload {i}: {res}"
        );
        // The next reload only once this one's worker runs.
        wait_for("the reloaded worker", 10, || {
            let now = n.worker_pid();
            (now.is_some() && now != before).then_some(())
        });
        // Under load at this reload, and served after it: wrk still runs,
        // and a new connection (which only the new worker accepts) is
        // answered by a backend.
        assert!(
            matches!(wrk.try_wait(), Ok(None)),
            "wrk stopped before reload {i} was done"
        );
        let (code, body) = try_get(&url, "app.example.com");
        assert!(
            code == Some(0) && body.starts_with("app-"),
            "no answer after reload {i}: {code:?} {body:?}"
        );
    }
    // Still under load: the old processes go once their busy connections
    // have had Connection: close and the idle ones their keep-alive timeout
    // (the role's 10 s), not at hard-stop-after (30 min).
    let last_reload = Instant::now();
    // The reload did not cut the idle connections (a client may be sending
    // on one): a request on one is answered, with Connection: close.
    std::thread::sleep(Duration::from_secs(1));
    let (mut asks, mut waits) = (idle.remove(0), idle.remove(0));
    assert!(
        waits.is_open(),
        "the reload closed an idle keep-alive connection"
    );
    let answer = asks.request_then_eof();
    assert!(
        answer.starts_with("HTTP/1.1 200")
            && answer.to_ascii_lowercase().contains("connection: close"),
        "a request on an idle connection after the reload: {answer:?}"
    );
    while n.old_workers() != Some(0) {
        if last_reload.elapsed() > Duration::from_secs(20) {
            let sessions = haproxy_runtime(&n.socket(), "show sess");
            panic!(
                "old workers 20 s after the last reload:\n{}\nthe new worker's sessions:\n{sessions}",
                n.show_proc().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "old workers all gone {:.1} s after the last of 20 reloads, under load",
        last_reload.elapsed().as_secs_f64()
    );
    assert!(
        waits.closed_cleanly(),
        "the idle connection ended with an error, not a close"
    );
    assert!(
        matches!(wrk.try_wait(), Ok(None)),
        "wrk stopped before the old workers were gone"
    );
    let out = Command::new("kill")
        .args(["-INT", &wrk.id().to_string()])
        .output()
        .unwrap_or_else(|e| panic!("kill -INT wrk: {e}"));
    assert_success("kill -INT wrk", &out);
    let out = wrk
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wrk: {e}"));
    let (requests, errors) = wrk_summary(&out);
    eprintln!(
        "wrk across 20 reloads:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        requests > 1000,
        "wrk made too few requests: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        errors.is_empty(),
        "failed requests across 20 reloads: {errors:?}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// curl's exit code and body for a request to `url` with `host`.
pub(super) fn try_get(url: &str, host: &str) -> (Option<i32>, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", "-H", &format!("Host: {host}"), url])
        .output()
        .unwrap_or_else(|e| panic!("curl: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn http_status(url: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            url,
        ])
        .output()
        .unwrap_or_else(|e| panic!("curl: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One look of the [`Prober`]: the health endpoint's status and whether a
/// request on a new connection was served.
#[derive(Debug, Clone)]
pub(super) struct Sample {
    pub(super) at: Instant,
    pub(super) health: String,
    pub(super) served: bool,
}

/// A client on its own thread: every 50 ms, the health endpoint and one
/// request on a new connection, each timestamped. The samples are shared so
/// the test can wait on what this client saw rather than on a look of its own
/// (which could see the close before the prober's next sample does).
pub(super) struct Prober {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    samples: std::sync::Arc<std::sync::Mutex<Vec<Sample>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Prober {
    pub(super) fn start(health: &str, url: &str, host: &str) -> Prober {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (flag, out, health, url, host) = (
            stop.clone(),
            samples.clone(),
            health.to_owned(),
            url.to_owned(),
            host.to_owned(),
        );
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let at = Instant::now();
                let status = http_status(&health);
                let (code, body) = try_get(&url, &host);
                let sample = Sample {
                    at,
                    health: status,
                    served: code == Some(0) && !body.is_empty(),
                };
                out.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(sample);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Prober {
            stop,
            samples,
            thread,
        }
    }

    pub(super) fn samples(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(super) fn stop(self) -> Vec<Sample> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .join()
            .unwrap_or_else(|_| panic!("the prober thread panicked"));
        std::mem::take(
            &mut *self
                .samples
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// A drain as the [`Prober`] saw it: when the health check first answered
/// 503, how late that sample may be, when a new connection was first refused.
pub(super) struct Drain {
    pub(super) failed_at: Instant,
    /// The check failed somewhere between the sample before and this one.
    pub(super) uncertainty: Duration,
    pub(super) closed_at: Instant,
    pub(super) accepting: Duration,
}

impl Drain {
    pub(super) fn seen(samples: &[Sample]) -> Drain {
        let first_503 = samples
            .iter()
            .position(|s| s.health == "503")
            .filter(|&i| i > 0)
            .unwrap_or_else(|| {
                panic!("the prober did not see the health check go from 200 to 503: {samples:?}")
            });
        let failed_at = samples[first_503].at;
        let uncertainty = failed_at.duration_since(samples[first_503 - 1].at);
        let closed_at = samples
            .iter()
            .find(|s| s.at > failed_at && !s.served)
            .map(|s| s.at)
            .unwrap_or_else(|| panic!("the prober never saw the node close: {samples:?}"));
        Drain {
            failed_at,
            uncertainty,
            closed_at,
            accepting: closed_at.duration_since(failed_at),
        }
    }
}

/// A backend whose every request takes `secs` seconds: the connection a
/// drain must not cut.
fn slow_backend(dir: &Path, bind: &str, secs: u32) -> Haproxy {
    let lua = dir.join("sleep.lua");
    std::fs::write(
        &lua,
        format!(
            "core.register_action('slow', {{'http-req'}}, function(txn) core.msleep({}) end)\n",
            secs * 1000
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cfg = dir.join("slow.cfg");
    let text = format!(
        "global\n    maxconn 100\n    lua-load {}\ndefaults\n    mode http\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\
         frontend slow\n    bind {bind}\n    http-request lua.slow\n\
         http-request return status 200 content-type text/plain string slow-backend\n",
        lua.display()
    );
    std::fs::write(&cfg, text).unwrap_or_else(|e| panic!("{e}"));
    Haproxy::start(&dir.join("slow.pid"), &["-f", &cfg.to_string_lossy()])
}

/// Scale-in with clients that cache DNS: the node fails its health check at
/// once and keeps serving for TTL + margin, then refuses new connections —
/// also after a reload that a group change causes mid-drain — waits for a
/// request that is in flight in the *old* worker, keeps the lifecycle action
/// alive with heartbeats past the hook's heartbeat timeout, and completes it.
#[test]
fn scale_in_fails_health_then_closes_survives_reloads_and_waits_for_every_process() {
    let emu = Emulator::start();
    let bootstrap = support::workspace_bin("bootstrap");
    // Heartbeat timeout 6 s (AWS's floor is 30; the emulator takes any): the
    // drain lasts longer, so only the node's heartbeats keep the action open.
    scenario(
        &emu,
        &[
            "world",
            "--bootstrap",
            &bootstrap.to_string_lossy(),
            "--group",
            "drain-asg",
            "--subnet-cidr",
            "127.77.2.0/24",
            "--metadata",
            r#"{"drain_seconds": 40, "ttl": 2}"#,
            "--heartbeat",
            "6",
        ],
    );
    scenario(&emu, &["scale", "--group", "drain-asg", "--desired", "2"]);
    let got = scenario(
        &emu,
        &[
            "wait",
            "--group",
            "drain-asg",
            "--in-service",
            "2",
            "--timeout",
            "60",
        ],
    );
    let first = &got["instances"][0];
    let id = first["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{got}"))
        .to_owned();
    let ip = first["private_ip"]
        .as_str()
        .unwrap_or_else(|| panic!("{got}"))
        .to_owned();

    let backends_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let _slow = slow_backend(backends_dir.path(), "127.78.2.1:8080", 15);
    let _fast = http_backends(backends_dir.path(), 8080, &[("fast", "127.78.2.2")]);

    let n = Node::new(&ip, &id);
    let mappings = json!([
        {"name": "app", "domains": ["app.example.com"], "servers": ["127.78.2.2"],
         "http_port": 8080, "https_port": null},
        {"name": "slow", "domains": ["slow.example.com"], "servers": ["127.78.2.1"],
         "http_port": 8080, "https_port": null}]);
    let vars = n.vars(mappings, json!({"loadbalancer_endpoint_url": emu.url}));
    let (out, node) = n.deploy(&vars, Some(&n.imds(&emu)));
    assert_success("deploy", &out);
    let url = format!("http://{}:8080/", n.ip);
    let health = format!("http://{}:8080/craftlb-health", n.ip);
    assert_eq!(http_status(&health), "200");

    let peers_args = json!({"peers_file": n.path("etc/peers.cfg"),
        "validate_with": n.validate_with(),
        "master_pidfile": n.path("run/haproxy.pid"), "endpoint_url": emu.url});
    let mut watch = peers_args.clone();
    watch["drain"] = json!(true);
    watch["drain_only"] = json!(true);
    watch["master_socket"] = json!(n.master_socket());
    watch["drain_health_acl"] = json!(n.path("etc/craftlb-drain-health.acl"));
    watch["drain_closed_acl"] = json!(n.path("etc/craftlb-drain-closed.acl"));
    watch["drain_dns_margin"] = json!(1);

    // The drain watch while the instance is in service: IMDS only, no AWS call.
    support::clear_request_log(&emu.url);
    let (ok, res) = n.update_peers(watch.clone(), Some(&n.imds(&emu)));
    assert!(
        ok && res["changed"] == false && res["target_lifecycle_state"] == "InService",
        "{res}"
    );
    let calls = support::request_log(&emu.url);
    assert!(
        calls.is_empty(),
        "the drain watch called AWS while in service: {calls:?}"
    );

    // A client that keeps opening new connections, watched from outside
    // the code under test: when the health check failed, when new
    // connections stopped being served.
    let prober = Prober::start(&health, &url, "app.example.com");
    scenario(&emu, &["terminate", "--instance", &id]);
    let mut drain = n.spawn_update_peers("drain_watch", watch, &n.imds(&emu));

    // 1. The health check fails at once; requests are still served.
    wait_for("the health check to fail", 20, || {
        if let Ok(Some(status)) = drain.try_wait() {
            let mut out = String::new();
            if let Some(mut o) = drain.stdout.take() {
                let _ = std::io::Read::read_to_string(&mut o, &mut out);
            }
            panic!("the drain ended before failing the health check ({status}): {out}");
        }
        (http_status(&health) == "503").then_some(())
    });
    assert_eq!(
        try_get(&url, "app.example.com"),
        (Some(0), "fast".to_owned())
    );
    let in_flight = Command::new("curl")
        .args(["-s", "-m", "60", "-H", "Host: slow.example.com", &url])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("curl: {e}"));
    wait_for("the slow request to be in flight", 10, || {
        (n.frontend_stat("fe_http", "scur") >= 1).then_some(())
    });

    // 2. Closed to new connections, no sooner than TTL (2 s) + margin (1 s)
    // after the health check failed, and serving until then: as the client
    // saw it, not as the drain reports it.
    wait_for(
        "the prober to see the node refuse new connections",
        20,
        || {
            let seen = prober.samples();
            seen.iter()
                .skip_while(|s| s.health != "503")
                .any(|s| !s.served)
                .then_some(())
        },
    );
    let samples = prober.stop();
    let Drain {
        failed_at,
        uncertainty,
        closed_at,
        accepting,
    } = Drain::seen(&samples);
    let served_meanwhile = samples
        .iter()
        .filter(|s| s.at >= failed_at && s.at < closed_at)
        .collect::<Vec<_>>();
    assert!(
        accepting + uncertainty >= Duration::from_secs(3),
        "the node stopped accepting {accepting:?} (+ {uncertainty:?}) after failing its health check \
         (TTL 2 s + margin 1 s)"
    );
    assert!(
        served_meanwhile.len() >= 10 && served_meanwhile.iter().all(|s| s.served),
        "new connections failed while the node still had to accept them: {served_meanwhile:?}"
    );
    eprintln!(
        "drain seen from outside: accepted new connections for {accepting:?} after the health check failed \
         ({} requests served meanwhile)",
        served_meanwhile.len()
    );

    // The group changes mid-drain: a new instance joins, update_peers (the
    // 30 s timer) rewrites the peers and reloads haproxy.
    scenario(&emu, &["scale", "--group", "drain-asg", "--desired", "2"]);
    wait_for("a replacement in service", 60, || {
        let state = scenario(&emu, &["state", "--group", "drain-asg"]);
        let serving = state["instances"]
            .as_array()
            .map(|a| a.iter().filter(|i| i["state"] == "InService").count())
            .unwrap_or(0);
        (serving == 2).then_some(())
    });
    let before = n.worker_pid();
    let (ok, res) = n.update_peers(peers_args, Some(&n.imds(&emu)));
    assert!(ok && res["reloaded"] == true, "{res}");
    wait_for("the new worker", 10, || {
        let now = n.worker_pid();
        (now.is_some() && now != before).then_some(())
    });
    // The new worker read the drain files: still closed, still failing.
    for _ in 0..3 {
        let (code, body) = try_get(&url, "app.example.com");
        assert!(
            code != Some(0) && body.is_empty(),
            "reopened after a reload: {code:?} {body}"
        );
    }

    // 3. The drain waits for the request in the old worker, then completes.
    let out = drain
        .wait_with_output()
        .unwrap_or_else(|e| panic!("drain: {e}"));
    let res: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "drain printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert!(out.status.success(), "{res}");
    let d = &res["drain"];
    assert_eq!(
        d["completed_hooks"],
        json!(["drain-asg-terminating"]),
        "{res}"
    );
    assert_eq!(d["open_connections_left"], 0, "{res}");
    assert_eq!(
        (d["ttl"].as_u64(), d["drain_seconds"].as_u64()),
        (Some(2), Some(40)),
        "{res}"
    );
    assert!(
        d["accepting_ms"].as_u64().unwrap_or(0) >= 2500,
        "closed before TTL + margin: {res}"
    );
    assert!(
        d["waited_ms"].as_u64().unwrap_or(0) >= 3000,
        "did not wait for the open request: {res}"
    );
    assert!(d["heartbeats"].as_u64().unwrap_or(0) >= 2, "{res}");
    let out = in_flight
        .wait_with_output()
        .unwrap_or_else(|e| panic!("curl: {e}"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "slow-backend",
        "the open request was cut"
    );

    // Launches completed by the Lambda; the termination by the node, kept
    // alive by heartbeats, never timed out.
    let (histories, actions) = craftlb_testbed::action_histories(&emu);
    let term: Vec<&Value> = histories
        .iter()
        .filter(|h| {
            h.as_array()
                .is_some_and(|a| a.iter().any(|x| x == "heartbeat"))
        })
        .collect();
    assert_eq!(term.len(), 1, "{actions}");
    let steps = term[0].as_array().cloned().unwrap_or_default();
    assert_eq!(steps.last(), Some(&json!("complete:CONTINUE")), "{actions}");
    assert!(
        !steps
            .iter()
            .any(|s| s.as_str().is_some_and(|s| s.starts_with("timeout"))),
        "{actions}"
    );
    drop(node);
}

#[test]
fn update_peers_check_mode_and_diff_write_nothing_and_docs_render() {
    let n = Node::new("127.79.2.1", "n1");
    std::fs::create_dir_all(n.path("etc")).unwrap_or_else(|e| panic!("{e}"));
    let args = json!({"peers_file": n.path("etc/peers.cfg"), "local_peer": "n1", "reload": false,
                      "peers": [{"name": "n1", "address": "127.79.2.1"}],
                      "_ansible_check_mode": true, "_ansible_diff": true});
    let (ok, res) = n.update_peers(args.clone(), None);
    assert!(ok && res["changed"] == true, "{res}");
    assert!(
        res["diff"]["after"]
            .as_str()
            .unwrap_or_default()
            .contains("peer n1 127.79.2.1:7777"),
        "{res}"
    );
    assert!(
        !n.path("etc/peers.cfg").exists(),
        "check mode wrote the file"
    );
    let mut real = args;
    real["_ansible_check_mode"] = json!(false);
    let (ok, res) = n.update_peers(real.clone(), None);
    assert!(ok && res["changed"] == true, "{res}");
    let (ok, res) = n.update_peers(real, None);
    assert!(
        ok && res["changed"] == false && res.get("diff").is_none(),
        "{res}"
    );

    let lib = support::library(&[("update_peers", &update_peers())]);
    let out = support::ansible_doc("update_peers", lib.path());
    assert_success("ansible-doc update_peers", &out);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "peers_file",
        "drain_dns_margin",
        "master_pidfile",
        "EXAMPLES",
        "RETURN VALUES",
    ] {
        assert!(
            text.contains(needle),
            "ansible-doc output lacks {needle}:\n{text}"
        );
    }
}
