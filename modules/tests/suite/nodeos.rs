//! The node on the OS it runs, not in the process mode of `node::`: a real
//! systemd (257) booted by systemd-nspawn in a Debian trixie root with
//! haproxy 3.0 (scripts/node-root.sh), the deploy run inside it by
//! ansible-core 2.15.3 on Python 3.9 (what Amazon Linux 2023 ships,
//! `.venv-node`), the units under systemd, then a reboot: /run is a new
//! tmpfs and only the units bring haproxy back.
//!
//! The container shares the host's network namespace, as the other node
//! tests share loopback: the node binds its own 127.82.0.x address and
//! reaches the emulator on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use craftlb_testbed as support;
use serde_json::json;
use support::{Emulator, assert_success, http_backends, repo_root};

use crate::launch::recap_changed;
use crate::node::{KeepAlive, group_instances, wait_for};

/// A booted container: systemd-nspawn's child is the container's PID 1.
struct Container {
    nspawn: Child,
    pid1: u32,
}

impl Container {
    fn boot(root: &Path, name: &str, binds: &[PathBuf]) -> Container {
        let mut cmd = Command::new("systemd-nspawn");
        cmd.arg("-D")
            .arg(root)
            .args(["--boot", "--register=no", "--keep-unit", "--console=pipe"])
            .arg(format!("--machine={name}"))
            // This host mounts cgroup v1 (plus a v2 at unified/); systemd
            // 257 boots only on the unified hierarchy.
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for b in binds {
            cmd.arg(format!("--bind-ro={}", b.display()));
        }
        let nspawn = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("systemd-nspawn (make setup installs it): {e}"));
        let parent = nspawn.id();
        let pid1 = wait_for("the container's systemd", 30, || {
            let children =
                std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
            children
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .find(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/comm"))
                        .is_ok_and(|c| c.trim() == "systemd")
                })
        });
        let c = Container { nspawn, pid1 };
        let state = wait_for("the container's boot", 90, || {
            let out = c.exec(&["systemctl", "is-system-running"]);
            let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            matches!(s.as_str(), "running" | "degraded").then_some(s)
        });
        if state != "running" {
            let failed = c.exec(&["systemctl", "--failed", "--no-pager"]);
            panic!(
                "the node's OS booted {state}:\n{}",
                String::from_utf8_lossy(&failed.stdout)
            );
        }
        c
    }
    /// A command inside the container (every namespace of its PID 1).
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.pid1.to_string())
            .args(["-a", "--", "/usr/bin/env", "-i"])
            .arg("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .arg("HOME=/root")
            .args(args);
        cmd
    }
    fn exec(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .unwrap_or_else(|e| panic!("nsenter {args:?}: {e}"))
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        assert_success(&format!("in the node: {}", args.join(" ")), &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    /// `systemctl poweroff` and wait for systemd-nspawn to end.
    fn poweroff(mut self) {
        let _ = self.exec(&["systemctl", "poweroff"]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                std::mem::forget(self);
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("the node did not power off within 60 s");
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // SIGKILL to the namespace's init ends every process in it.
        let _ = Command::new("kill")
            .args(["-KILL", &self.pid1.to_string()])
            .status();
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

fn status_and_body(url: &str, host: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Host: {host}"))
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("curl: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_owned(), body.to_owned())
}

/// The peak memory of a process tree, from a cgroup v1 memory controller
/// the command is started in (this host mounts v1): the deploy on a
/// 0.5 GiB node must fit beside the OS.
struct MemoryCgroup(PathBuf);

impl MemoryCgroup {
    fn new(name: &str) -> Option<MemoryCgroup> {
        let dir = PathBuf::from("/sys/fs/cgroup/memory").join(name);
        std::fs::create_dir(&dir).ok()?;
        Some(MemoryCgroup(dir))
    }
    /// `cmd` run from a shell that first moves itself into the cgroup.
    fn wrap(&self, cmd: &Command) -> Command {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec \"$@\"",
                self.0.display()
            ))
            .arg("sh")
            .arg(cmd.get_program())
            .args(cmd.get_args());
        if let Some(dir) = cmd.get_current_dir() {
            sh.current_dir(dir);
        }
        sh
    }
    fn read(&self, file: &str) -> Option<u64> {
        std::fs::read_to_string(self.0.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
    /// The peak of rss + page cache since the cgroup was made.
    fn peak_bytes(&self) -> Option<u64> {
        self.read("memory.max_usage_in_bytes")
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn the_node_deploys_and_reboots_under_systemd_with_haproxy_3_and_ansible_2_15() {
    let node_root_tar = {
        let out = Command::new(repo_root().join("scripts/node-root.sh"))
            .output()
            .unwrap_or_else(|e| panic!("scripts/node-root.sh: {e}"));
        assert_success("scripts/node-root.sh", &out);
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    };
    let node_ansible = repo_root().join(".venv-node/bin/ansible-playbook");
    assert!(
        node_ansible.exists(),
        "{} is missing: make setup makes it (pyenv's Python 3.9, requirements-node.txt)",
        node_ansible.display()
    );
    // The venv's python links to pyenv's: both must be visible inside.
    let node_python = std::fs::canonicalize(repo_root().join(".venv-node/bin/python"))
        .unwrap_or_else(|e| panic!(".venv-node/bin/python: {e}"));
    let pyenv_version = node_python
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("no prefix above {}", node_python.display()));

    let emu = Emulator::start();
    let (id, ip) = group_instances(&emu, "127.82.0.0/24", "os-asg", 1).remove(0);

    let backends_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let _backends = http_backends(
        backends_dir.path(),
        8080,
        &[("app-1", "127.82.1.1"), ("app-2", "127.82.1.2")],
    );

    // The machine: a fresh root from the tarball; the test's files under
    // /var/tmp (nspawn mounts a tmpfs on the container's /tmp).
    let work = tempfile::Builder::new()
        .prefix("craftlb-nodeos-")
        .tempdir_in("/var/tmp")
        .unwrap_or_else(|e| panic!("{e}"));
    let root = work.path().join("root");
    std::fs::create_dir(&root).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-xf")
        .arg(&node_root_tar)
        .output()
        .unwrap_or_else(|e| panic!("tar: {e}"));
    assert_success("unpack the node's root", &out);
    // What the instance profile and IMDS are on AWS: the emulator's IMDS for
    // this instance and test credentials, for the units that call AWS.
    let imds = format!("{}/_craftlb/imds/{id}", emu.url);
    for unit in [
        "craftlb-update-peers.service",
        "craftlb-drain-watch.service",
    ] {
        let dir = root.join(format!("etc/systemd/system/{unit}.d"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            dir.join("test-aws.conf"),
            format!(
                "[Service]\nEnvironment=AWS_EC2_METADATA_SERVICE_ENDPOINT={imds}\n\
                 Environment=AWS_ACCESS_KEY_ID=testing\nEnvironment=AWS_SECRET_ACCESS_KEY=testing\n"
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let library = support::library(&[(
        "update_peers",
        &support::module_bin("update_peers").to_string_lossy(),
    )]);
    let update_peers = support::module_bin("update_peers");
    let vars = work.path().join("vars.json");
    std::fs::write(
        &vars,
        json!({
            "loadbalancer_update_peers_binary": update_peers,
            "loadbalancer_http_bind": format!("{ip}:8080"),
            "loadbalancer_https_bind": format!("{ip}:8443"),
            "loadbalancer_stats_bind": format!("{ip}:9999"),
            "loadbalancer_stats_password": "test-only",
            "loadbalancer_peer_port": 17777,
            "loadbalancer_maxconn": 4000,
            "loadbalancer_endpoint_url": emu.url,
            "loadbalancer_region": "us-east-1",
            // The drain's defaults are the node's; this test reboots a serving node.
            "lb_mappings": [{"name": "app", "domains": ["app.example.com"],
                             "servers": ["127.82.1.1", "127.82.1.2"],
                             "http_port": 8080, "https_port": null}],
        })
        .to_string(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let multi = std::fs::canonicalize(&update_peers).unwrap_or_else(|e| panic!("{e}"));
    let binds: Vec<PathBuf> = vec![
        repo_root(),
        pyenv_version,
        library.path().to_path_buf(),
        work.path().join("vars.json"),
        update_peers
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        multi.parent().map(Path::to_path_buf).unwrap_or_default(),
    ];
    let name = format!("clbos{}", std::process::id());
    let node = Container::boot(&root, &name, &binds);

    let haproxy_version = node.ok(&["haproxy", "-v"]);
    assert!(
        haproxy_version.starts_with("HAProxy version 3.0."),
        "{haproxy_version}"
    );
    let deploy = |node: &Container, memory: Option<&MemoryCgroup>| -> Output {
        let mut cmd = node.command(&[
            &format!(
                "ANSIBLE_CONFIG={}",
                repo_root().join("ansible.cfg").display()
            ),
            &format!("ANSIBLE_LIBRARY={}", library.path().display()),
            "ANSIBLE_NOCOLOR=1",
            // The role's own update_peers run, as the units get it above.
            &format!("AWS_EC2_METADATA_SERVICE_ENDPOINT={imds}"),
            "AWS_ACCESS_KEY_ID=testing",
            "AWS_SECRET_ACCESS_KEY=testing",
            &node_ansible.to_string_lossy(),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            &format!(
                "ansible_python_interpreter={}",
                repo_root().join(".venv-node/bin/python").display()
            ),
            &repo_root().join("playbooks/deploy.yml").to_string_lossy(),
            "-e",
            &format!("server_config={}", vars.display()),
        ]);
        if let Some(m) = memory {
            cmd = m.wrap(&cmd);
        }
        cmd.output()
            .unwrap_or_else(|e| panic!("ansible-playbook in the node: {e}"))
    };

    // Converge, measured.
    let memory = MemoryCgroup::new(&name);
    let started = Instant::now();
    let out = deploy(&node, memory.as_ref());
    assert_success("the deploy (ansible-core 2.15, haproxy 3.0, systemd)", &out);
    eprintln!(
        "deploy on the node: {:.1} s; peak memory of the deploy (rss + page cache, cgroup v1 max_usage): {}",
        started.elapsed().as_secs_f64(),
        memory.as_ref().and_then(MemoryCgroup::peak_bytes).map_or(
            "not measured (no cgroup v1 memory controller)".into(),
            |b| { format!("{:.0} MiB", b as f64 / 1048576.0) }
        )
    );
    drop(memory);
    // Idempotence: the second run changes nothing.
    let again = deploy(&node, None);
    assert_success("the second deploy", &again);
    assert_eq!(
        recap_changed(&again),
        0,
        "the second deploy changed something:\n{}",
        String::from_utf8_lossy(&again.stdout)
    );

    // The units run under systemd; update_peers' timer writes the group's peers.
    for unit in [
        "craftlb-haproxy.service",
        "craftlb-update-peers.timer",
        "craftlb-drain-watch.timer",
    ] {
        assert_eq!(
            node.ok(&["systemctl", "is-active", unit]).trim(),
            "active",
            "{unit}"
        );
    }
    node.ok(&["systemctl", "start", "craftlb-update-peers.service"]);
    let peers = node.ok(&["cat", "/etc/haproxy/peers.cfg"]);
    assert!(peers.contains(&format!("peer {id} {ip}:17777")), "{peers}");

    // Real requests through the node, answered by a backend.
    let url = format!("http://{ip}:8080/");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let (code, body) = status_and_body(&url, "app.example.com");
        if code != "200" {
            let stats = Command::new("curl")
                .args(["-s", "-m", "5", "-u", "admin:test-only"])
                .arg(format!("http://{ip}:9999/;csv"))
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let journal = node.exec(&[
                "journalctl",
                "-u",
                "craftlb-haproxy",
                "--no-pager",
                "-n",
                "40",
            ]);
            panic!(
                "{code} through the node: {body}\nstats:\n{stats}\njournal:\n{}",
                String::from_utf8_lossy(&journal.stdout)
            );
        }
        seen.insert(body);
    }
    // One client sticks to one server (the mapping's stick table).
    assert!(
        seen.len() == 1 && seen.iter().all(|b| b == "app-1" || b == "app-2"),
        "{seen:?}"
    );
    let health = format!("http://{ip}:8080/craftlb-health");
    assert_eq!(status_and_body(&health, "x").0, "200");
    // A reload through systemd (ExecReload validates first) keeps serving.
    // haproxy 3.0 after a reload: an idle keep-alive connection is not cut
    // at the reload, ends at its keep-alive timeout (10 s), and the old
    // worker leaves with it.
    let mut idle = KeepAlive::open(&ip, 8080);
    node.ok(&["systemctl", "reload", "craftlb-haproxy.service"]);
    let reloaded = Instant::now();
    assert_eq!(status_and_body(&url, "app.example.com").0, "200");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        idle.is_open(),
        "the reload cut an idle keep-alive connection"
    );
    let workers = || {
        node.ok(&[
            "sh",
            "-c",
            "pgrep -c -P \"$(head -n 1 /run/haproxy/haproxy.pid)\" || true",
        ])
        .trim()
        .parse::<u32>()
        .ok()
    };
    wait_for("the old worker to leave after the reload", 20, || {
        (workers() == Some(1)).then_some(())
    });
    eprintln!(
        "haproxy 3.0: the old worker left {:.1} s after the reload",
        reloaded.elapsed().as_secs_f64()
    );
    assert!(
        idle.closed_cleanly(),
        "the idle connection was reset, not closed"
    );

    // The drain's state, as the drain writes it: health fails, requests
    // still served. It must survive the reboot.
    node.ok(&[
        "sh",
        "-c",
        "printf '0.0.0.0/0\\n::/0\\n' > /etc/haproxy/craftlb-drain-health.acl",
    ]);
    node.ok(&["systemctl", "reload", "craftlb-haproxy.service"]);
    wait_for("the health check failing (draining)", 10, || {
        (status_and_body(&health, "x").0 == "503").then_some(())
    });

    // Reboot: a new /run (tmpfs), nothing but the enabled units.
    node.poweroff();
    let node = Container::boot(&root, &name, &binds);
    assert_eq!(
        node.ok(&["systemctl", "is-active", "craftlb-haproxy.service"])
            .trim(),
        "active"
    );
    node.ok(&["test", "-S", "/run/haproxy/admin.sock"]);
    wait_for("requests served after the reboot", 30, || {
        (status_and_body(&url, "app.example.com").0 == "200").then_some(())
    });
    assert_eq!(
        status_and_body(&health, "x").0,
        "503",
        "the drain state was lost in the reboot"
    );
    assert_eq!(node.ok(&["cat", "/etc/haproxy/peers.cfg"]), peers);
    for unit in ["craftlb-update-peers.timer", "craftlb-drain-watch.timer"] {
        assert_eq!(
            node.ok(&["systemctl", "is-active", unit]).trim(),
            "active",
            "{unit} after the reboot"
        );
    }
    node.ok(&["systemctl", "start", "craftlb-update-peers.service"]);
    let failed = node.ok(&["systemctl", "--failed", "--no-legend", "--plain"]);
    assert!(
        failed.trim().is_empty(),
        "failed units after the reboot: {failed}"
    );
}

/// One truth: every role's `min_ansible_version` is the ansible-core the
/// node runs and the tests above run it with (requirements-node.txt).
#[test]
fn every_role_declares_the_ansible_it_is_tested_with() {
    let pins = std::fs::read_to_string(repo_root().join("requirements-node.txt"))
        .unwrap_or_else(|e| panic!("requirements-node.txt: {e}"));
    let pinned = pins
        .lines()
        .find_map(|l| l.strip_prefix("ansible-core=="))
        .unwrap_or_else(|| panic!("requirements-node.txt pins no ansible-core"));
    let minor: Vec<&str> = pinned.split('.').take(2).collect();
    let want = format!("min_ansible_version: \"{}\"", minor.join("."));
    let roles = std::fs::read_dir(repo_root().join("roles")).unwrap_or_else(|e| panic!("{e}"));
    let mut seen = 0;
    for role in roles.flatten() {
        let meta = role.path().join("meta/main.yml");
        let text =
            std::fs::read_to_string(&meta).unwrap_or_else(|e| panic!("{}: {e}", meta.display()));
        assert!(
            text.contains(&want),
            "{} does not say {want} (requirements-node.txt pins ansible-core {pinned})",
            meta.display()
        );
        seen += 1;
    }
    assert!(seen >= 4, "only {seen} roles found");
}
