//! launch-lb.yml and destroy-lb.yml end to end, on the emulator's lifecycle
//! loop: the real playbooks, the real module binaries, the uploaded Lambda
//! registering each instance. One test walks the whole life of a load
//! balancer (each step needs the one before); another checks that bad
//! configurations fail before any write.

use std::path::{Path, PathBuf};
use std::process::Output;

use craftlb_testbed::{self as support, Emulator};
use serde_json::{Value, json};

/// What a launch needs from the emulator: its subnets, zone and an image.
pub(super) struct World {
    pub(super) emu: Emulator,
    extra: Value,
    pub(super) work: tempfile::TempDir,
    lib: tempfile::TempDir,
}

impl World {
    /// No node boots: the emulator completes each launch of the group as a
    /// node that serves would.
    pub(super) fn new() -> World {
        let w = World::booting();
        support::control_post(
            &w.emu,
            "/_craftlb/autoscaling/stand-in",
            &json!({"group": "e2e-asg", "result": "CONTINUE"}),
        );
        w
    }

    /// Launches are completed by whoever boots the nodes (boot.rs).
    pub(super) fn booting() -> World {
        let emu = Emulator::start();
        let zone = support::scenario(&emu, &["zone", "--name", "example.test"]);
        let net = support::scenario(&emu, &["network"]);
        let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let extra = json!({
            "subnets": net["subnets"],
            "hosted_zone_id": zone["hosted_zone_id"],
            "image_id": net["image_id"],
            "endpoint_url": emu.url,
            "update_route53_from_lambda_bootstrap": support::workspace_bin("bootstrap"),
            "autoscaling_bundle_dir": work.path().join("bundle"),
        });
        World {
            emu,
            extra,
            work,
            lib: support::every_module(),
        }
    }

    /// Leaves an extra variable of the tests out: the role's default then
    /// applies (an installed collection's own Lambda, the bundle's cache).
    pub(super) fn without_extra(&mut self, key: &str) {
        if let Some(o) = self.extra.as_object_mut() {
            o.remove(key);
        }
    }

    /// The e2e configuration with `edit` applied, as a file of its own.
    pub(super) fn config(&self, name: &str, edit: impl FnOnce(&mut String)) -> PathBuf {
        let mut text = std::fs::read_to_string(support::repo_root().join("tests/e2e/e2e.yml"))
            .unwrap_or_else(|e| panic!("{e}"));
        edit(&mut text);
        let path = self.work.path().join(format!("{name}.yml"));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        path
    }

    pub(super) fn play(
        &self,
        playbook: &str,
        config: &Path,
        args: &[&str],
        extra: Value,
    ) -> Output {
        self.play_with(
            &support::venv_bin("ansible-playbook"),
            playbook,
            config,
            args,
            extra,
        )
    }

    pub(super) fn play_with(
        &self,
        ansible_playbook: &Path,
        playbook: &str,
        config: &Path,
        args: &[&str],
        extra: Value,
    ) -> Output {
        self.play_by(
            support::ansible_command_of(ansible_playbook, self.lib.path()),
            &format!("playbooks/{playbook}"),
            config,
            args,
            extra,
        )
    }

    /// `playbook` (a path or a collection playbook's name) run by `cmd`, an
    /// ansible-playbook command with its environment set, with the world's
    /// extra variables and `extra` over them.
    pub(super) fn play_by(
        &self,
        mut cmd: std::process::Command,
        playbook: &str,
        config: &Path,
        args: &[&str],
        extra: Value,
    ) -> Output {
        let mut all = self.extra.clone();
        if let (Some(a), Some(e)) = (all.as_object_mut(), extra.as_object()) {
            a.extend(e.clone());
        }
        let extra_file = self.work.path().join("extra.json");
        std::fs::write(&extra_file, all.to_string()).unwrap_or_else(|e| panic!("{e}"));
        cmd.arg(playbook)
            .arg("-e")
            .arg(format!("server_config={}", config.display()))
            .arg("-e")
            .arg(format!("@{}", extra_file.display()))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("ansible-playbook: {e}"))
    }

    pub(super) fn state(&self) -> Value {
        support::scenario(&self.emu, &["state", "--group", "e2e-asg"])
    }

    /// The state once Route 53 has caught up with the group: the Lambda
    /// publishes a node after the group reports it in service, so a moment
    /// after the play returned. Then asserted exactly.
    pub(super) fn fleet(&self, n: usize, what: &str) -> Value {
        self.fleet_within(n, what, 60)
    }

    pub(super) fn fleet_within(&self, n: usize, what: &str, secs: u64) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let state = self.state();
            let mut up = in_service(&state);
            up.sort();
            let settled = up.len() == n
                && registered(&state) == up
                && state["health_checks"].as_array().map(Vec::len) == Some(n);
            if settled || std::time::Instant::now() >= deadline {
                if !settled {
                    // What the Lambda did meanwhile is what explains it.
                    let runs = support::control(&self.emu, "/_craftlb/lambda/invocations");
                    eprintln!("{what}: the Lambda's runs: {runs:#}");
                }
                assert_fleet(&state, n, what);
                return state;
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    }

    /// AWS calls since the last look that change something.
    pub(super) fn writes(&self) -> Vec<String> {
        let log = support::request_log(&self.emu.url);
        support::clear_request_log(&self.emu.url);
        log.iter()
            .filter(|r| {
                r["agent"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("aws-sdk-rust"))
            })
            .filter_map(|r| r["operation"].as_str())
            .filter(|op| !is_read(op))
            .map(str::to_owned)
            .collect()
    }
}

fn is_read(op: &str) -> bool {
    ["Describe", "List", "Get", "Head"]
        .iter()
        .any(|p| op.starts_with(p))
}

pub(super) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(super) fn recap_changed(out: &Output) -> usize {
    let text = stdout(out);
    text.lines()
        .filter(|l| l.starts_with("localhost"))
        .filter_map(|l| l.split("changed=").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .filter_map(|n| n.parse().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no PLAY RECAP in:\n{text}"))
}

pub(super) fn in_service(state: &Value) -> Vec<String> {
    state["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["state"] == "InService")
        .filter_map(|i| i["id"].as_str().map(str::to_owned))
        .collect()
}

/// The record set's identifiers (instance ids) under the launch's name.
pub(super) fn registered(state: &Value) -> Vec<String> {
    let mut ids: Vec<String> = state["records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["name"] == "loadbalancer.example.test.")
        .filter_map(|r| r["set_identifier"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

fn assert_fleet(state: &Value, n: usize, what: &str) {
    let mut up = in_service(state);
    up.sort();
    assert_eq!(up.len(), n, "{what}: {state}");
    assert_eq!(
        registered(state),
        up,
        "{what}: records follow the group: {state}"
    );
    assert_eq!(
        state["health_checks"].as_array().map(Vec::len),
        Some(n),
        "{what}: one health check per node: {state}"
    );
}

#[test]
fn launch_rerun_check_scale_roll_and_destroy() {
    let w = World::new();
    let before = support::scenario(&w.emu, &["inventory"]);
    let config = w.config("e2e", |_| {});

    // --check from nothing: what it would create, up to the security group
    // whose id the rest needs; nothing written.
    w.writes();
    let out = w.play("launch-lb.yml", &config, &["--check"], json!({}));
    support::assert_success("launch-lb.yml --check from nothing", &out);
    assert!(
        stdout(&out).contains("check mode: security group e2e-lb-sg would be created"),
        "{}",
        stdout(&out)
    );
    assert_eq!(w.writes(), Vec::<String>::new(), "check mode wrote");

    // From nothing: the group's instance registered by the uploaded Lambda.
    let out = w.play("launch-lb.yml", &config, &[], json!({}));
    support::assert_success("launch-lb.yml from nothing", &out);
    let state = w.fleet(1, "launched");
    // The one instance's launching action, completed with CONTINUE by its
    // (stand-in) node, not by a timeout into the default result.
    let actions = support::control(&w.emu, "/_craftlb/autoscaling/actions");
    let launched: Vec<(String, String, String, Value, Value)> = actions
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["instance_id"].as_str().unwrap_or_default().to_owned(),
                a["hook"].as_str().unwrap_or_default().to_owned(),
                a["transition"].as_str().unwrap_or_default().to_owned(),
                a["result"].clone(),
                a["history"].clone(),
            )
        })
        .collect();
    assert_eq!(
        launched,
        vec![(
            in_service(&state).concat(),
            "e2e-launching".to_owned(),
            "autoscaling:EC2_INSTANCE_LAUNCHING".to_owned(),
            json!("CONTINUE"),
            json!(["stand-in:CONTINUE"]),
        )],
        "the launching action: {actions}"
    );

    // A second run changes nothing, task by task.
    w.writes();
    let out = w.play("launch-lb.yml", &config, &[], json!({}));
    support::assert_success("launch-lb.yml again", &out);
    assert_eq!(recap_changed(&out), 0, "{}", stdout(&out));
    assert_eq!(w.writes(), Vec::<String>::new(), "a no-change run wrote");

    // --check --diff with a changed mapping: shown, not written.
    let changed = w.config("e2e-changed", |t| {
        *t = t.replace("servers: [10.0.2.10]", "servers: [10.0.2.10, 10.0.2.11]");
    });
    let out = w.play("launch-lb.yml", &changed, &["--check", "--diff"], json!({}));
    support::assert_success("launch-lb.yml --check --diff", &out);
    let text = stdout(&out);
    assert!(recap_changed(&out) > 0, "{text}");
    assert!(
        text.contains("bundle_sha256="),
        "the diff shows the user data's new bundle hash: {text}"
    );
    assert_eq!(w.writes(), Vec::<String>::new(), "check mode wrote");
    w.fleet(1, "after check mode");

    // Scale out and in through the configuration; the records follow.
    let out = w.play(
        "launch-lb.yml",
        &config,
        &[],
        json!({"desired_capacity": 3}),
    );
    support::assert_success("scale to 3", &out);
    w.fleet(3, "scaled out");
    let out = w.play(
        "launch-lb.yml",
        &config,
        &[],
        json!({"desired_capacity": 1}),
    );
    support::assert_success("scale to 1", &out);
    w.fleet(1, "scaled in");

    // A mapping change rolls the fleet: a new instance, the old one gone.
    let old = in_service(&w.state());
    let out = w.play("launch-lb.yml", &changed, &[], json!({}));
    support::assert_success("launch-lb.yml with a changed mapping", &out);
    let state = w.fleet(1, "rolled");
    assert_ne!(in_service(&state), old, "the node was replaced: {state}");
    // One refresh, of this group, finished: every old instance replaced.
    let refreshes = support::control(&w.emu, "/_craftlb/autoscaling/refreshes");
    let done: Vec<(Value, Value, Value, Value)> = refreshes
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["AutoScalingGroupName"].clone(),
                r["Status"].clone(),
                r["PercentageComplete"].clone(),
                r["InstancesToUpdate"].clone(),
            )
        })
        .collect();
    assert_eq!(
        done,
        vec![(json!("e2e-asg"), json!("Successful"), json!(100), json!(0))],
        "{refreshes}"
    );

    // Destroy leaves the account as it was; twice is fine.
    for run in 1..=2 {
        let out = w.play("destroy-lb.yml", &changed, &[], json!({}));
        support::assert_success(&format!("destroy-lb.yml #{run}"), &out);
        if run == 2 {
            assert_eq!(recap_changed(&out), 0, "{}", stdout(&out));
        }
    }
    assert_eq!(support::scenario(&w.emu, &["inventory"]), before);
}

#[test]
fn bad_configurations_fail_before_any_write_naming_the_key() {
    let w = World::new();
    let cases: Vec<(&str, PathBuf, Value, &str)> = vec![
        (
            "no lb_mappings",
            w.config("no-mappings", |t| {
                let cut = t.find("lb_mappings:").unwrap_or(t.len());
                let end = t.find("loadbalancer_stats_password").unwrap_or(t.len());
                t.replace_range(cut..end, "");
            }),
            json!({}),
            "lb_mappings is missing",
        ),
        (
            "invalid domain",
            w.config("bad-domain", |t| {
                *t = t.replace("domain_name: example.test", "domain_name: exa_mple..test");
            }),
            json!({}),
            "domain_name must be a DNS name",
        ),
        (
            "unknown key",
            w.config("typo", |t| t.push_str("instance_typ: t3.micro\n")),
            json!({}),
            "unknown key(s) instance_typ",
        ),
        (
            "a subnet that does not exist",
            w.config("no-subnet", |_| {}),
            json!({"subnets": ["subnet-0000dead"]}),
            "subnet-0000dead",
        ),
        (
            // Names are compared as the routing maps hold them: lower case.
            "a domain claimed by two mappings",
            w.config("conflict", |_| {}),
            json!({"lb_mappings": [
                {"name": "one", "domains": ["a.example.test", "*.example.test"], "servers": ["10.0.0.1"]},
                {"name": "two", "domains": ["A.Example.test"], "servers": ["10.0.0.2"]},
            ]}),
            "a.example.test (mappings one, two)",
        ),
        (
            // The role's argument spec, checked on the controller: on the
            // nodes it would fail every deploy of the roll.
            "a typo in a mapping's key",
            w.config("key-typo", |_| {}),
            json!({"lb_mappings": [
                {"name": "one", "domains": ["a.example.test"], "servers": ["10.0.0.1"], "chek_path": "/"},
            ]}),
            "chek_path",
        ),
        (
            "a tcp mapping on the peer port",
            w.config("port-clash", |_| {}),
            json!({"lb_mappings": [
                {"name": "one", "domains": ["a.example.test"], "servers": ["10.0.0.1"]},
                {"name": "pg", "mode": "tcp", "frontend_port": 7777, "port": 5432, "servers": ["10.0.0.2"]},
            ]}),
            "port 7777: stick-table replication (loadbalancer_peer_port) and mapping pg",
        ),
        (
            "two tcp mappings on one port",
            w.config("port-twice", |_| {}),
            json!({"lb_mappings": [
                {"name": "one", "domains": ["a.example.test"], "servers": ["10.0.0.1"]},
                {"name": "pg", "mode": "tcp", "frontend_port": 5432, "port": 5432, "servers": ["10.0.0.2"]},
                {"name": "pg2", "mode": "tcp", "frontend_port": 5432, "port": 5433, "servers": ["10.0.0.3"]},
            ]}),
            "port 5432: mapping pg (frontend_port) and mapping pg2",
        ),
        (
            "a udp server given by name",
            w.config("udp-name", |_| {}),
            json!({"lb_mappings": [
                {"name": "one", "domains": ["a.example.test"], "servers": ["10.0.0.1"]},
                {"name": "dns", "mode": "udp", "frontend_port": 53, "servers": ["dns1.example.test"]},
            ]}),
            "mapping dns: mode udp needs frontend_port (1-65535), servers as IPv4",
        ),
        (
            // UDP ports are their own space: a udp mapping on the peer port
            // is fine, two on one port are not.
            "two udp mappings on one port",
            w.config("udp-twice", |_| {}),
            json!({"lb_mappings": [
                {"name": "one", "domains": ["a.example.test"], "servers": ["10.0.0.1"]},
                {"name": "peerish", "mode": "udp", "frontend_port": 7777, "servers": ["10.0.0.4"]},
                {"name": "dns", "mode": "udp", "frontend_port": 53, "servers": ["10.0.0.2"]},
                {"name": "dns2", "mode": "udp", "frontend_port": 53, "servers": ["10.0.0.3"]},
            ]}),
            "two listeners on one port: port 53: mapping dns (frontend_port, UDP) and mapping dns2 (frontend_port, UDP)",
        ),
        (
            // Passes the role's own checks; haproxy -c on the rendered
            // configuration refuses it, quoting the line.
            "a balance algorithm haproxy does not have",
            w.config("bad-balance", |_| {}),
            json!({"lb_mappings": [
                {"name": "one", "domains": ["a.example.test"], "servers": ["10.0.0.1"], "balance": "fastest"},
            ]}),
            "haproxy -c refuses the haproxy configuration rendered from this configuration (nothing was changed in AWS",
        ),
        (
            "a timeout haproxy cannot read",
            w.config("bad-timeout", |_| {}),
            json!({"loadbalancer_timeout_client": "5 parsecs"}),
            "`timeout client 5 parsecs`",
        ),
        (
            // 32 characters (the most server_name takes) + "-craftlb-" +
            // account + region: 68 characters in ap-southeast-2, over S3's 63.
            "a bundle bucket name S3 refuses",
            w.config("long-name", |_| {}),
            json!({"server_name": "a-load-balancer-with-a-long-name", "region": "ap-southeast-2"}),
            "shorten server_name",
        ),
    ];
    w.writes();
    for (what, config, extra, says) in cases {
        let out = w.play("launch-lb.yml", &config, &[], extra);
        let text = stdout(&out);
        assert!(!out.status.success(), "{what}: launched anyway:\n{text}");
        assert!(
            text.contains(says),
            "{what}: the failure does not say '{says}':\n{text}"
        );
        assert_eq!(
            w.writes(),
            Vec::<String>::new(),
            "{what}: wrote before failing"
        );
    }
}

/// The controller side on the oldest Ansible the roles declare
/// (`min_ansible_version`, requirements-node.txt: ansible-core 2.15.3 on
/// Python 3.9): launch, rerun without a change, destroy.
#[test]
fn launch_and_destroy_with_the_oldest_ansible_the_roles_declare() {
    let ansible = support::repo_root().join(".venv-node/bin/ansible-playbook");
    assert!(
        ansible.exists(),
        "{} is missing: make setup makes it (pyenv's Python 3.9, requirements-node.txt)",
        ansible.display()
    );
    let w = World::new();
    let before = support::scenario(&w.emu, &["inventory"]);
    let config = w.config("e2e", |_| {});
    let out = w.play_with(&ansible, "launch-lb.yml", &config, &[], json!({}));
    support::assert_success("launch-lb.yml on ansible-core 2.15", &out);
    w.fleet(1, "launched on ansible-core 2.15");
    w.writes();
    let out = w.play_with(&ansible, "launch-lb.yml", &config, &[], json!({}));
    support::assert_success("launch-lb.yml again on ansible-core 2.15", &out);
    assert_eq!(w.writes(), Vec::<String>::new(), "the rerun wrote");
    let out = w.play_with(&ansible, "destroy-lb.yml", &config, &[], json!({}));
    support::assert_success("destroy-lb.yml on ansible-core 2.15", &out);
    assert_eq!(support::scenario(&w.emu, &["inventory"]), before);
}
