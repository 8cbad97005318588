//! Test bed shared by the integration tests: the AWS emulator on a free
//! loopback port, the scenario driver, and ansible-playbook wired to the
//! binaries under test.

pub mod licences;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub fn repo_root() -> PathBuf {
    // Every package sits at the top of the workspace. The directory cargo
    // gives the running test, not the one this crate was compiled in: a
    // shared CARGO_TARGET_DIR reuses a testbed built from another checkout,
    // whose compile-time path would point the tests at that checkout.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

pub fn venv_bin(tool: &str) -> PathBuf {
    let p = repo_root().join(".venv/bin").join(tool);
    assert!(
        p.exists(),
        "{} is missing: run `make setup` (the tests need the pinned Python venv)",
        p.display()
    );
    p
}

/// A running emulator (moto + craftlb's extension); stopped on drop.
pub struct Emulator {
    child: Child,
    pub url: String,
}

impl Emulator {
    pub fn start() -> Emulator {
        let mut child = Command::new(venv_bin("python"))
            .arg(repo_root().join("tests/emulator/server.py"))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the emulator: {e}"));
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("emulator stdout not captured"));
        let mut line = String::new();
        let n = BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("cannot read the emulator's banner: {e}"));
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|u| n > 0 && u.starts_with("http://"))
            .map(str::to_owned);
        match url {
            Some(url) => Emulator { child, url },
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the emulator did not start (banner: {line:?})");
            }
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A library directory holding the module binaries this test build made
/// (`(name, CARGO_BIN_EXE_<name>)`), with their sidecar docs, so Ansible
/// runs exactly what is under test.
pub fn library(modules: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    for &(name, bin) in modules {
        std::os::unix::fs::symlink(bin, dir.path().join(name))
            .unwrap_or_else(|e| panic!("symlink {name}: {e}"));
        // The binary prints the module's sidecar doc, options generated from its spec.
        let out = Command::new(bin)
            .args(["--ansible-doc", name])
            .output()
            .unwrap_or_else(|e| panic!("{bin} --ansible-doc {name}: {e}"));
        assert_success(&format!("{name} --ansible-doc"), &out);
        std::fs::write(dir.path().join(format!("{name}.yml")), &out.stdout)
            .unwrap_or_else(|e| panic!("write the doc of {name}: {e}"));
    }
    dir
}

/// Environment for Ansible and the modules: dummy credentials only.
pub fn ansible_command(tool: &str, library: &Path) -> Command {
    ansible_command_of(&venv_bin(tool), library)
}

/// [`ansible_command`] with another Ansible: `.venv-node`'s ansible-core
/// 2.15 (the oldest the roles declare) rather than the tests' own.
pub fn ansible_command_of(program: &Path, library: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(repo_root())
        .env("ANSIBLE_CONFIG", repo_root().join("ansible.cfg"))
        .env("ANSIBLE_LIBRARY", library)
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_LOCAL_TEMP", library.join(".ansible-tmp"))
        .env("ANSIBLE_REMOTE_TEMP", library.join(".ansible-remote"))
        // Async jobs' files: the wrapper expands `~` from $HOME, async_status
        // from the user's passwd entry; with another HOME (a fresh machine's)
        // they looked in two places. One explicit directory for both.
        .env("ANSIBLE_ASYNC_DIR", library.join(".ansible-async"))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL");
    cmd
}

pub fn run_playbook(playbook: &str, emulator: &Emulator, library: &Path) -> Output {
    run_playbook_with(playbook, emulator, library, &[])
}

/// [`run_playbook`] with more extra variables (`name=value`).
pub fn run_playbook_with(
    playbook: &str,
    emulator: &Emulator,
    library: &Path,
    vars: &[(&str, &str)],
) -> Output {
    let mut cmd = ansible_command("ansible-playbook", library);
    cmd.arg(playbook)
        .arg("-e")
        .arg(format!("emulator_url={}", emulator.url));
    for (k, v) in vars {
        cmd.arg("-e").arg(format!("{k}={v}"));
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run ansible-playbook: {e}"))
}

/// The modules the multi-call binary of this build holds, as it lists
/// them (`--list-modules`, what `make build` links into library/): tests
/// run what the binary holds, not what the source says it should.
pub fn module_names() -> Vec<String> {
    let bin = workspace_bin("craftlb-modules");
    let out = Command::new(&bin)
        .arg("--list-modules")
        .output()
        .unwrap_or_else(|e| panic!("{} --list-modules: {e}", bin.display()));
    assert!(
        out.status.success(),
        "{} --list-modules failed: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(!names.is_empty(), "{} lists no modules", bin.display());
    names
}

/// A library directory with every module the binary of this build holds.
pub fn every_module() -> tempfile::TempDir {
    let names = module_names();
    all_modules(&names.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A library directory with these modules of this build.
pub fn all_modules(names: &[&str]) -> tempfile::TempDir {
    let bins: Vec<(String, String)> = names
        .iter()
        .map(|n| {
            (
                (*n).to_owned(),
                module_bin(n).to_string_lossy().into_owned(),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = bins.iter().map(|(n, b)| (n.as_str(), b.as_str())).collect();
    library(&refs)
}

pub fn ansible_doc(module: &str, library: &Path) -> Output {
    ansible_command("ansible-doc", library)
        .args(["-M"])
        .arg(library)
        .arg(module)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ansible-doc: {e}"))
}

pub fn assert_success(what: &str, out: &Output) {
    if !out.status.success() {
        panic!(
            "{what} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn curl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sSf", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl (make setup installs it): {e}"));
    assert_success("curl", &out);
    out.stdout
}

/// The emulator's request log: one JSON object per AWS call.
pub fn request_log(url: &str) -> Vec<serde_json::Value> {
    let body = curl(&[&format!("{url}/_craftlb/requests")]);
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("request log is not JSON: {e}"))
}

pub fn clear_request_log(url: &str) {
    curl(&["-X", "DELETE", &format!("{url}/_craftlb/requests")]);
}

/// Runs tests/emulator/scenario.py against the emulator; returns its JSON.
pub fn scenario(emulator: &Emulator, args: &[&str]) -> serde_json::Value {
    scenario_at(&emulator.url, args)
}

/// [`scenario`] by the emulator's URL (for a test's own threads).
pub fn scenario_at(url: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(venv_bin("python"))
        .arg(repo_root().join("tests/emulator/scenario.py"))
        .args(["--endpoint", url])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run scenario.py: {e}"));
    assert_success(&format!("scenario.py {}", args.join(" ")), &out);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "scenario.py printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// GET a control endpoint of the emulator (`/_craftlb/...`) as JSON.
pub fn control(emulator: &Emulator, path: &str) -> serde_json::Value {
    let body = curl(&[&format!("{}{path}", emulator.url)]);
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// PUT a control endpoint of the emulator with a JSON body; its JSON answer.
pub fn control_put(emulator: &Emulator, path: &str, body: &serde_json::Value) -> serde_json::Value {
    control_send(emulator, "PUT", path, body)
}

/// POST to a control endpoint of the emulator with a JSON body; its JSON answer.
pub fn control_post(
    emulator: &Emulator,
    path: &str,
    body: &serde_json::Value,
) -> serde_json::Value {
    control_send(emulator, "POST", path, body)
}

fn control_send(
    emulator: &Emulator,
    method: &str,
    path: &str,
    body: &serde_json::Value,
) -> serde_json::Value {
    let out = curl(&[
        "-X",
        method,
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &body.to_string(),
        &format!("{}{path}", emulator.url),
    ]);
    serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// A raw AWS request to the emulator, as an SDK would send it but without
/// client-side checks: `service` names the SigV4 scope moto routes by
/// (the signature itself is not checked). Returns (HTTP status, body).
pub fn aws_raw(
    emulator: &Emulator,
    service: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, String) {
    let auth = format!(
        "Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, \
         SignedHeaders=host, Signature=0"
    );
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
        .args(["-X", method, "-H", &auth])
        .args(["-H", &format!("Content-Type: {content_type}")])
        .args(["-H", "User-Agent: craftlb-test/1.0"])
        .args(["--data-binary", body])
        .arg(format!("{}{path}", emulator.url))
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl (make setup installs it): {e}"));
    assert_success("curl", &out);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or((&text, "0"));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// A haproxy started by a test (daemon mode, pidfile); stopped on drop,
/// master and workers alike.
pub struct Haproxy {
    pub pidfile: PathBuf,
}

impl Haproxy {
    /// Starts `haproxy -D -p <pidfile> <args>`; panics with haproxy's own
    /// message when it does not start.
    pub fn start(pidfile: &Path, args: &[&str]) -> Haproxy {
        let out = Command::new("haproxy")
            .arg("-D")
            .arg("-p")
            .arg(pidfile)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run haproxy (make setup installs it): {e}"));
        assert_success("haproxy", &out);
        Haproxy::adopt(pidfile)
    }

    /// Takes over a haproxy something else started (the role, in process mode).
    pub fn adopt(pidfile: &Path) -> Haproxy {
        Haproxy {
            pidfile: pidfile.to_path_buf(),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pidfile)
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// SIGUSR2 to the master: a hitless reload.
    pub fn reload(&self) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("no pid in {}", self.pidfile.display()));
        let out = Command::new("kill")
            .args(["-USR2", &pid.to_string()])
            .output()
            .unwrap_or_else(|e| panic!("kill: {e}"));
        assert_success("kill -USR2", &out);
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // The master forwards SIGTERM to its workers; a plain daemon exits.
            let _ = Command::new("kill").arg(pid.to_string()).status();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while Path::new(&format!("/proc/{pid}")).exists()
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

/// Test backends: one haproxy answering each `(name, address)` over HTTP on
/// `address:port` with the body `name`.
pub fn http_backends(dir: &Path, port: u16, backends: &[(&str, &str)]) -> Haproxy {
    let mut cfg = String::from(
        "global\n    maxconn 4000\ndefaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n",
    );
    for (name, addr) in backends {
        cfg.push_str(&format!(
            "frontend {name}\n    bind {addr}:{port}\n    http-request return status 200 content-type text/plain string \"{name}\"\n"
        ));
    }
    let path = dir.join("backends.cfg");
    std::fs::write(&path, cfg).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    let pidfile = dir.join("backends.pid");
    Haproxy::start(&pidfile, &["-f", &path.to_string_lossy()])
}

/// One command on a haproxy runtime API socket.
pub fn haproxy_runtime(socket: &Path, command: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
    s.write_all(format!("{command}\n").as_bytes())
        .unwrap_or_else(|e| panic!("write to {}: {e}", socket.display()));
    let mut out = String::new();
    s.read_to_string(&mut out)
        .unwrap_or_else(|e| panic!("read from {}: {e}", socket.display()));
    out
}

/// A binary of another workspace package built by the same `cargo test`
/// run (it sits beside this test's deps/ directory).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("no target directory above {}", exe.display()));
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: run the tests through `cargo test` at the workspace root",
        bin.display()
    );
    bin
}

/// The emulator's lifecycle actions, each as its history
/// (`["complete:CONTINUE"]`, `["timeout:CONTINUE"]`, …), in start order.
pub fn action_histories(emulator: &Emulator) -> (Vec<serde_json::Value>, serde_json::Value) {
    let actions = control(emulator, "/_craftlb/autoscaling/actions");
    let histories = actions
        .as_array()
        .map(|a| a.iter().map(|x| x["history"].clone()).collect())
        .unwrap_or_default();
    (histories, actions)
}

/// A module, as `library/<module>` holds it: a link named after the module
/// to the one multi-call binary this test build made.
pub fn module_bin(name: &str) -> PathBuf {
    let multi = workspace_bin("craftlb-modules");
    let dir = multi
        .parent()
        .map(|d| d.join("craftlb-module-links"))
        .unwrap_or_else(|| panic!("no directory above {}", multi.display()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let link = dir.join(name);
    if std::fs::read_link(&link).ok().as_deref() != Some(multi.as_path()) {
        // Tests run in parallel: make the link beside, then rename over.
        let tmp = dir.join(format!(".{name}.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&multi, &tmp)
            .unwrap_or_else(|e| panic!("symlink {}: {e}", tmp.display()));
        std::fs::rename(&tmp, &link).unwrap_or_else(|e| panic!("rename {}: {e}", link.display()));
    }
    link
}
