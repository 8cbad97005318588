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

const UPDATE_PEERS: &str = env!("CARGO_BIN_EXE_update_peers");

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
            "loadbalancer_update_peers_binary": UPDATE_PEERS,
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
        let library = support::library(&[("update_peers", UPDATE_PEERS)]);
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
        let mut cmd = Command::new(UPDATE_PEERS);
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

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn app_mapping(servers: &[&str]) -> Value {
    json!([{"name": "app", "domains": ["app.example.com"], "servers": servers,
            "http_port": 8080, "https_port": null}])
}

#[test]
fn two_nodes_replicate_stickiness_and_follow_the_group() {
    let emu = Emulator::start();
    scenario(
        &emu,
        &[
            "world",
            "--no-hooks",
            "--subnet-cidr",
            "127.77.0.0/24",
            "--group",
            "peers-asg",
        ],
    );
    scenario(&emu, &["scale", "--group", "peers-asg", "--desired", "2"]);
    let got = scenario(&emu, &["wait", "--group", "peers-asg", "--in-service", "2"]);
    let inst: Vec<(String, String)> = got["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    (
                        i["id"].as_str().unwrap_or_default().to_owned(),
                        i["private_ip"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(inst.len(), 2, "{got}");
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
    running[1].reload();
    std::thread::sleep(Duration::from_millis(500));
    wait_for("the entry on B after a reload", 10, || {
        table_keys(&b.socket(), "app_http")
            .eq(&keys_a)
            .then_some(())
    });

    // The group grows: A's peers follow; nothing is rewritten when nothing changed.
    let args = json!({"peers_file": a.path("etc/peers.cfg"), "validate_with": [a.path("etc/haproxy.cfg")],
                      "master_pidfile": a.path("run/haproxy.pid"), "endpoint_url": emu.url});
    scenario(&emu, &["scale", "--group", "peers-asg", "--desired", "3"]);
    let got = scenario(&emu, &["wait", "--group", "peers-asg", "--in-service", "3"]);
    let (ok, res) = a.update_peers(args.clone(), Some(&a.imds(&emu)));
    assert!(ok, "{res}");
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
fn the_role_refuses_stats_without_a_password_and_unsafe_domains() {
    let n = Node::new("127.79.1.1", "n1");
    let static_peers = json!({"loadbalancer_local_peer": "n1",
                              "loadbalancer_static_peers": [{"name": "n1", "address": "127.79.1.1"}]});
    let mut extra = static_peers.clone();
    extra["loadbalancer_stats_password"] = json!("");
    let vars = n.vars(app_mapping(&["127.78.1.1"]), extra);
    let (out, _h) = n.deploy(&vars, None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("loadbalancer_stats_password is empty"));

    let bad = json!([{"name": "app", "domains": ["admin.acme.com|.*"], "servers": ["127.78.1.1"]}]);
    let vars = n.vars(bad, static_peers);
    let (out, _h) = n.deploy(&vars, None);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("domains must be exact DNS names"),
        "{stdout}"
    );
    assert!(
        !n.path("etc/haproxy.cfg").exists(),
        "nothing may be written before validation"
    );
}

/// wrk's summary: (requests, error lines).
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

    let wrk = Command::new("wrk")
        .args([
            "-t2",
            "-c16",
            "-d12s",
            "-H",
            "Host: app.example.com",
            &format!("http://{}:8080/", n.ip),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run wrk (make setup installs it): {e}"));
    std::thread::sleep(Duration::from_millis(1000));
    for i in 0..20 {
        let mut peers = vec![json!({"name": "n1", "address": "127.79.0.10"})];
        if i % 2 == 0 {
            peers.push(json!({"name": "n2", "address": "127.79.0.11"}));
        }
        let (ok, res) = n.update_peers(
            json!({"peers_file": n.path("etc/peers.cfg"), "validate_with": [n.path("etc/haproxy.cfg")],
                   "master_pidfile": n.path("run/haproxy.pid"), "local_peer": "n1", "peers": peers}),
            None,
        );
        assert!(
            ok && res["changed"] == true && res["reloaded"] == true,
            "reload {i}: {res}"
        );
        std::thread::sleep(Duration::from_millis(400));
    }
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

#[test]
fn scale_in_drains_open_connections_then_the_node_completes_the_action() {
    let emu = Emulator::start();
    let bootstrap = support::workspace_bin("bootstrap");
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
            r#"{"drain_seconds": 20}"#,
            "--heartbeat",
            "60",
        ],
    );
    scenario(&emu, &["scale", "--group", "drain-asg", "--desired", "1"]);
    let got = scenario(
        &emu,
        &[
            "wait",
            "--group",
            "drain-asg",
            "--in-service",
            "1",
            "--timeout",
            "60",
        ],
    );
    let id = got["instances"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{got}"))
        .to_owned();
    let ip = got["instances"][0]["private_ip"]
        .as_str()
        .unwrap_or_else(|| panic!("{got}"))
        .to_owned();

    // A backend that takes 2 s per request: the connection a drain must not cut.
    let backends_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let lua = backends_dir.path().join("sleep.lua");
    std::fs::write(
        &lua,
        "core.register_action('sleep2', {'http-req'}, function(txn) core.msleep(2000) end)\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cfg = backends_dir.path().join("slow.cfg");
    let text = format!(
        "global\n    maxconn 100\n    lua-load {}\ndefaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
         frontend slow\n    bind 127.78.2.1:8080\n    http-request lua.sleep2\n\
         http-request return status 200 content-type text/plain string slow-backend\n",
        lua.display()
    );
    std::fs::write(&cfg, text).unwrap_or_else(|e| panic!("{e}"));
    let _backend = Haproxy::start(
        &backends_dir.path().join("slow.pid"),
        &["-f", &cfg.to_string_lossy()],
    );

    let n = Node::new(&ip, &id);
    let vars = n.vars(
        app_mapping(&["127.78.2.1"]),
        json!({"loadbalancer_endpoint_url": emu.url}),
    );
    let (out, _node) = n.deploy(&vars, Some(&n.imds(&emu)));
    assert_success("deploy", &out);

    let url = format!("http://{}:8080/", n.ip);
    let in_flight = Command::new("curl")
        .args(["-s", "-m", "20", "-H", "Host: app.example.com", &url])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("curl: {e}"));
    std::thread::sleep(Duration::from_millis(300));
    // The drain watch while the instance is in service: IMDS only, no AWS call.
    let watch = json!({"peers_file": n.path("etc/peers.cfg"), "validate_with": [n.path("etc/haproxy.cfg")],
                       "master_pidfile": n.path("run/haproxy.pid"), "endpoint_url": emu.url,
                       "drain": true, "drain_only": true, "stats_socket": n.socket()});
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
    scenario(&emu, &["scale", "--group", "drain-asg", "--desired", "0"]);

    let (ok, res) = n.update_peers(watch, Some(&n.imds(&emu)));
    assert!(ok, "{res}");
    assert_eq!(res["target_lifecycle_state"], "Terminated", "{res}");
    assert_eq!(
        res["drain"]["completed_hooks"],
        json!(["drain-asg-terminating"]),
        "{res}"
    );
    assert_eq!(res["drain"]["open_connections_left"], 0, "{res}");
    assert_eq!(
        res["drain"]["drain_seconds"], 20,
        "the hook's drain time applies: {res}"
    );
    assert!(
        res["drain"]["waited_ms"].as_u64().unwrap_or(0) >= 1000,
        "did not wait for the open request: {res}"
    );

    let out = in_flight
        .wait_with_output()
        .unwrap_or_else(|e| panic!("curl: {e}"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "slow-backend",
        "the open request was cut"
    );
    let refused = Command::new("curl")
        .args(["-s", "-m", "5", &url])
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        refused.code(),
        Some(7),
        "a drained node must refuse new connections"
    );

    let (histories, actions) = craftlb_testbed::action_histories(&emu);
    assert_eq!(
        histories,
        vec![json!(["complete:CONTINUE"]), json!(["complete:CONTINUE"])],
        "launch completed by the Lambda, termination by the node: {actions}"
    );
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

    let lib = support::library(&[("update_peers", UPDATE_PEERS)]);
    let out = support::ansible_doc("update_peers", lib.path());
    assert_success("ansible-doc update_peers", &out);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "peers_file",
        "drain_seconds",
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
