//! The craftlb.aws collection as a user gets it: built by
//! scripts/collection.sh from this build's binaries, installed offline with
//! ansible-galaxy into a temporary directory, and used by FQCN from a
//! playbook there, with nothing of the repository on Ansible's paths.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use craftlb_testbed as support;
use serde_json::json;
use support::{Emulator, assert_success};

use super::launch::{World, recap_changed, stdout};

struct Installed {
    dir: tempfile::TempDir,
    /// The bin/ of the Python venv whose Ansible runs the collection.
    venv_bin: PathBuf,
    /// How long `ansible-galaxy collection install` took.
    install_time: std::time::Duration,
}

impl Installed {
    fn collections(&self) -> PathBuf {
        self.dir.path().join("collections")
    }

    fn play_dir(&self) -> PathBuf {
        self.dir.path().join("play")
    }

    /// An Ansible tool run from the play directory: no ansible.cfg, no
    /// library/, roles or collections of the repository.
    fn tool(&self, tool: &str) -> Command {
        let program = self.venv_bin.join(tool);
        assert!(
            program.exists(),
            "{} is missing: make setup makes the venvs",
            program.display()
        );
        let mut cmd = Command::new(program);
        // PWD stays the test runner's: a relative server_config must resolve
        // against the process's working directory, not a stale variable.
        cmd.current_dir(self.play_dir())
            .env_remove("ANSIBLE_CONFIG")
            .env_remove("ANSIBLE_LIBRARY")
            .env_remove("ANSIBLE_ROLES_PATH")
            .env("ANSIBLE_COLLECTIONS_PATH", self.collections())
            .env("ANSIBLE_COLLECTIONS_SCAN_SYS_PATH", "false")
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_LOCAL_TEMP", self.dir.path().join(".ansible-tmp"))
            .env("ANSIBLE_ASYNC_DIR", self.dir.path().join(".ansible-async"))
            // The role autoscaling's bundle cache (~/.cache/craftlb by default).
            .env("XDG_CACHE_HOME", self.dir.path().join(".cache"))
            .env(
                "ANSIBLE_REMOTE_TEMP",
                self.dir.path().join(".ansible-remote"),
            )
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL");
        cmd
    }
}

fn run(what: &str, cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert_success(what, &out);
    out
}

/// Builds the host-only collection from this test build and installs it.
fn install() -> Installed {
    install_with(
        &support::repo_root().join(".venv/bin"),
        &support::workspace_bin("craftlb-modules"),
        &support::workspace_bin("bootstrap"),
    )
}

/// [`install`] with the Ansible of another venv (its bin/) and the given
/// module binary and Lambda.
fn install_with(venv_bin: &Path, modules_bin: &Path, bootstrap: &Path) -> Installed {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out_dir = dir.path().join("dist");
    let built = run(
        "scripts/collection.sh",
        Command::new(support::repo_root().join("scripts/collection.sh"))
            .arg("--host-only")
            .arg("--modules-bin")
            .arg(modules_bin)
            .arg("--bootstrap")
            .arg(bootstrap)
            .arg("--output")
            .arg(&out_dir),
    );
    let tarball = std::fs::read_dir(&out_dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "gz"))
        .unwrap_or_else(|| {
            panic!(
                "no tarball in {}: {}",
                out_dir.display(),
                String::from_utf8_lossy(&built.stdout)
            )
        });
    let mut installed = Installed {
        dir,
        venv_bin: venv_bin.to_owned(),
        install_time: std::time::Duration::ZERO,
    };
    std::fs::create_dir_all(installed.play_dir()).unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    run(
        "ansible-galaxy collection install",
        installed
            .tool("ansible-galaxy")
            .args(["collection", "install", "--offline", "-p"])
            .arg(installed.collections())
            .arg(&tarball),
    );
    installed.install_time = started.elapsed();
    installed
}

fn copy_plays(to: &Path) {
    let src = support::repo_root().join("tests/collection");
    for e in std::fs::read_dir(&src).unwrap_or_else(|e| panic!("{e}")) {
        let p = e.unwrap_or_else(|e| panic!("{e}")).path();
        if let Some(name) = p.file_name() {
            std::fs::copy(&p, to.join(name)).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[test]
fn installed_collection_runs_every_module_by_fqcn() {
    let inst = install();
    let play = inst.play_dir();
    copy_plays(&play);
    std::fs::create_dir_all(play.join("src")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(play.join("src/hello.txt"), "hello\n").unwrap_or_else(|e| panic!("{e}"));
    let root = inst.collections().join("ansible_collections/craftlb/aws");
    let emulator = Emulator::start();
    let net = support::scenario(&emulator, &["network"]);
    let subnets = net["subnets"].to_string();
    let image = net["image_id"].as_str().unwrap_or_default().to_owned();
    let out = run(
        "fqcn.yml from outside the repository",
        inst.tool("ansible-playbook")
            .arg("fqcn.yml")
            .arg("-e")
            .arg(format!("emulator_url={}", emulator.url))
            .arg("-e")
            .arg(format!("{{\"subnets\": {subnets}}}"))
            .arg("-e")
            .arg(format!("image_id={image}"))
            .arg("-e")
            .arg(format!(
                "bootstrap={}",
                root.join("dist/lambda/x86_64/bootstrap").display()
            ))
            .arg("-e")
            .arg(format!("work={}", play.display())),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("failed=0"), "{stdout}");
    // Both passes and the teardown's two rounds asserted (four assert tasks).
    assert_eq!(
        stdout.matches("All assertions passed").count(),
        4,
        "{stdout}"
    );

    // Every module's documentation by FQCN.
    let names = support::module_names();
    for name in &names {
        let doc = run(
            &format!("ansible-doc craftlb.aws.{name}"),
            inst.tool("ansible-doc").arg(format!("craftlb.aws.{name}")),
        );
        let text = String::from_utf8_lossy(&doc.stdout);
        assert!(
            text.contains(&format!("craftlb.aws.{name}")) && text.contains("EXAMPLES"),
            "{text}"
        );
    }
    let list = run(
        "ansible-doc -l craftlb.aws",
        inst.tool("ansible-doc").args(["-l", "craftlb.aws"]),
    );
    let listed = String::from_utf8_lossy(&list.stdout);
    for name in &names {
        assert!(
            listed.contains(&format!("craftlb.aws.{name} ")),
            "{name} not listed: {listed}"
        );
    }
}

/// The action plugin names what is wrong when no binary fits the host.
#[test]
fn a_host_without_a_matching_binary_fails_with_the_reason() {
    let inst = install();
    let play = inst.play_dir();
    std::fs::write(
        play.join("arch.yml"),
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - craftlb.aws.update_peers:\n        peers_file: /nonexistent/peers.cfg\n        local_peer: a\n        peers: [{name: a, address: 10.0.0.1}]\n        reload: false\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let other = if std::env::consts::ARCH == "x86_64" {
        "aarch64"
    } else {
        "x86_64"
    };
    for (arch, expect) in [
        (
            "sparc64",
            "built for Linux x86_64 and aarch64; the host reports architecture 'sparc64'"
                .to_owned(),
        ),
        (other, format!("has no {other} binary")),
    ] {
        let out = inst
            .tool("ansible-playbook")
            .arg("arch.yml")
            .arg("-e")
            .arg(format!("craftlb_module_arch={arch}"))
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{arch}: {stdout}");
        assert!(
            stdout.contains(&expect),
            "{arch}: expected {expect:?} in {stdout}"
        );
    }
}

/// The main job from the installed collection alone: craftlb.aws.launch_lb
/// and craftlb.aws.destroy_lb run from a directory outside the repository,
/// with the collection's own Lambda and node binary (the deploy bundle is
/// packed from the installed collection), on the emulator's lifecycle loop.
/// The controller's Ansible is ansible-core alone, the oldest the
/// collection declares (.venv-node: no boto3, nothing else of the tests).
#[test]
fn installed_collection_launches_scales_and_destroys_a_load_balancer() {
    // make build's binaries, which a checkout's launch packs too (a test
    // build's craftlb-modules is another build of the same sources:
    // dev-dependencies unify other features).
    let repo = support::repo_root();
    let inst = install_with(
        &repo.join(".venv-node/bin"),
        &repo.join("bin/craftlb-modules"),
        &repo.join("dist/lambda/x86_64/bootstrap"),
    );
    let mut w = World::new();
    // Nothing of the checkout: the collection's bootstrap, the default bundle cache.
    w.without_extra("update_route53_from_lambda_bootstrap");
    w.without_extra("autoscaling_bundle_dir");
    let before = support::scenario(&w.emu, &["inventory"]);
    // A vars file beside the user, named by a relative path.
    let config = w.config("e2e", |_| {});
    std::fs::copy(&config, inst.play_dir().join("mylb.yml")).unwrap_or_else(|e| panic!("{e}"));
    let config = Path::new("./mylb.yml");
    let play = |playbook: &str, extra: serde_json::Value| {
        w.play_by(inst.tool("ansible-playbook"), playbook, config, &[], extra)
    };

    let launch_started = std::time::Instant::now();
    let out = play("craftlb.aws.launch_lb", json!({}));
    assert_success("craftlb.aws.launch_lb from nothing", &out);
    w.fleet(1, "launched from the collection");
    let first_record = inst.install_time + launch_started.elapsed();
    // The bundle is the installed collection's: its node binary, the node's
    // playbook and roles, no library/ (the node links it at boot).
    let bundle = inst.dir.path().join(".cache/craftlb/e2e/bundle.tar.gz");
    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(&bundle)
        .output()
        .unwrap_or_else(|e| panic!("tar: {e}"));
    assert_success(&format!("tar -tzf {}", bundle.display()), &listing);
    let names = String::from_utf8_lossy(&listing.stdout);
    for want in [
        "ansible.cfg",
        "bin/craftlb-modules",
        "playbooks/deploy.yml",
        "roles/loadbalancer/tasks/main.yml",
        "roles/base_system/tasks/main.yml",
        "vars/e2e.yml",
        "deploy-vars.yml",
    ] {
        assert!(
            names.lines().any(|l| l == want),
            "{want} not in the bundle: {names}"
        );
    }
    assert!(
        !names
            .lines()
            .any(|l| l.starts_with("library/") || l.starts_with("dist/")),
        "{names}"
    );
    let packed = Command::new("tar")
        .arg("-xzOf")
        .arg(&bundle)
        .arg("bin/craftlb-modules")
        .output()
        .unwrap_or_else(|e| panic!("tar: {e}"));
    let shipped = std::fs::read(
        inst.collections()
            .join("ansible_collections/craftlb/aws/dist/modules")
            .join(format!("craftlb_modules_linux_{}", std::env::consts::ARCH)),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        packed.stdout == shipped,
        "the bundle's binary is not the collection's"
    );

    w.writes();
    let out = play("craftlb.aws.launch_lb", json!({}));
    assert_success("craftlb.aws.launch_lb again", &out);
    assert_eq!(recap_changed(&out), 0, "{}", stdout(&out));
    assert_eq!(w.writes(), Vec::<String>::new(), "a no-change run wrote");

    // The checkout's launch-lb.yml on the same configuration, with the same
    // ansible-core, is the same code and packs the same bundle: it changes
    // nothing (a teammate launching from a checkout does not roll the
    // fleet). The same ansible-core: the stats password's crypt hash
    // differs between ansible-core versions (docs/launch.md, Secrets).
    let out = w.play_with(
        &support::repo_root().join(".venv-node/bin/ansible-playbook"),
        "launch-lb.yml",
        &inst.play_dir().join("mylb.yml"),
        &[],
        json!({"autoscaling_bundle_dir": bundle.parent().unwrap_or(&bundle)}),
    );
    assert_success("launch-lb.yml from the checkout after the collection", &out);
    assert_eq!(recap_changed(&out), 0, "{}", stdout(&out));
    assert_eq!(w.writes(), Vec::<String>::new(), "the checkout's run wrote");

    let out = play("craftlb.aws.launch_lb", json!({"desired_capacity": 2}));
    assert_success("craftlb.aws.launch_lb, scale to 2", &out);
    w.fleet(2, "scaled out from the collection");
    let out = play("craftlb.aws.launch_lb", json!({"desired_capacity": 1}));
    assert_success("craftlb.aws.launch_lb, scale to 1", &out);
    w.fleet(1, "scaled in from the collection");

    for run in 1..=2 {
        let out = play("craftlb.aws.destroy_lb", json!({}));
        assert_success(&format!("craftlb.aws.destroy_lb #{run}"), &out);
        if run == 2 {
            assert_eq!(recap_changed(&out), 0, "{}", stdout(&out));
        }
    }
    assert_eq!(support::scenario(&w.emu, &["inventory"]), before);
    assert!(
        !bundle.exists(),
        "destroy_lb left the local bundle {}",
        bundle.display()
    );
    // A figure for the notes, not a limit.
    eprintln!(
        "collection: ansible-galaxy collection install {:.1} s; install to the first record published {:.1} s",
        inst.install_time.as_secs_f64(),
        first_record.as_secs_f64()
    );
}
