//! The node's boot as EC2 runs it, in `make test`: launch-lb.yml with no
//! stand-in completing launches; each new instance's user data runs as is
//! (the demo's runner, `tests/demo/demo.py --host-only`) on a loopback
//! address of its own: the bundle fetched from the emulated S3 and checked
//! against its SHA-256, deploy.yml, haproxy answering its health endpoint,
//! the node completing its own launch. A bundle altered in S3 is refused and
//! the launch abandoned, while a client that follows DNS never reaches a
//! node before it serves; scale-in drains with the default drain time, seen
//! from outside.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use craftlb_testbed as support;
use serde_json::{Value, json};

use super::launch::{World, in_service, recap_changed, stdout};
use super::node::{Drain, Prober, Sample, try_get, wait_for};

/// Node N listens on 127.0.104.N; the mapping's backend on 127.0.105.1.
const NET: &str = "127.0.104";
const BACKEND: &str = "127.0.105.1";
const HOST: &str = "www.example.test";
const TTL: u64 = 5;

/// EC2's part, beside the test: boots every instance the group holds in
/// Pending:Wait, runs its drain timer, stops its haproxy once it is gone.
struct Host {
    child: Child,
    work: PathBuf,
}

impl Host {
    fn start(w: &World) -> Host {
        let work = w.work.path().join("host");
        std::fs::create_dir_all(&work).unwrap_or_else(|e| panic!("{}: {e}", work.display()));
        let log = std::fs::File::create(work.join("host.log")).unwrap_or_else(|e| panic!("{e}"));
        let err = log.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(support::venv_bin("python"))
            .arg("-u")
            .arg(support::repo_root().join("tests/demo/demo.py"))
            .args([
                "--endpoint",
                &w.emu.url,
                "--host-only",
                "--group",
                "e2e-asg",
            ])
            .args(["--net", NET, "--work"])
            .arg(&work)
            // Dummy credentials for the emulator, as the node's role would give.
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run tests/demo/demo.py: {e}"));
        Host { child, work }
    }

    fn file(&self, iid: &str, name: &str) -> String {
        let path = self.work.join("nodes").join(iid).join(name);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; the host's log:\n{}", path.display(), self.log()))
    }

    fn address(&self, iid: &str) -> String {
        self.file(iid, "address")
    }

    /// A request through the node, as a client of the record would send it.
    fn get(&self, iid: &str) -> (Option<i32>, String) {
        try_get(&format!("http://{}:80/", self.address(iid)), HOST)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.work.join("host.log")).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // SIGTERM: the runner stops the boots still running and every
        // haproxy it started.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail = &log[log.len().saturating_sub(8000)..];
            eprintln!("the host's log (tests/demo/demo.py --host-only):\n{tail}");
        }
    }
}

/// A client that follows DNS: every ~0.5 s it reads the record set, as a
/// resolver with a short TTL would, and sends one request to the node of
/// each record. A record whose node does not serve (yet) is a failed request.
struct DnsClient {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(String, bool)>>,
}

impl DnsClient {
    fn start(w: &World, host: &Host) -> DnsClient {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, url, nodes) = (stop.clone(), w.emu.url.clone(), host.work.join("nodes"));
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let state = support::scenario_at(&url, &["state", "--group", "e2e-asg"]);
                for iid in super::launch::registered(&state) {
                    let served = std::fs::read_to_string(nodes.join(&iid).join("address"))
                        .map(|addr| try_get(&format!("http://{addr}:80/"), HOST))
                        .is_ok_and(|got| got == (Some(0), "www".to_owned()));
                    seen.push((iid, served));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            seen
        });
        DnsClient { stop, thread }
    }

    fn stop(self) -> Vec<(String, bool)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .join()
            .unwrap_or_else(|_| panic!("the DNS client's thread panicked"))
    }
}

/// The history of `iid`'s action for `transition` (heartbeats left out).
fn history(w: &World, iid: &str, transition: &str) -> Value {
    let actions = support::control(&w.emu, "/_craftlb/autoscaling/actions");
    let found: Vec<Value> = actions
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["instance_id"] == iid && a["transition"] == transition)
        .map(|a| {
            a["history"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|h| *h != "heartbeat")
                .cloned()
                .collect()
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {transition} action of {iid}: {actions}"
    );
    found.into_iter().next().unwrap_or_default()
}

const LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";
const TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";

/// Instances whose launching action ended in ABANDON.
fn abandoned(w: &World) -> Vec<String> {
    support::control(&w.emu, "/_craftlb/autoscaling/actions")
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["transition"] == LAUNCHING && a["result"] == "ABANDON")
        .filter_map(|a| a["instance_id"].as_str().map(str::to_owned))
        .collect()
}

/// The requests of `operation` whose parameters name `iid`.
fn naming<'a>(log: &'a [Value], operation: &str, iid: &str) -> Vec<(usize, &'a Value)> {
    log.iter()
        .enumerate()
        .filter(|(_, r)| r["operation"] == operation && r["status"].as_u64() == Some(200))
        .filter(|(_, r)| r["params"].to_string().contains(iid))
        .collect()
}

/// loadbalancer_drain_dns_margin as the role's defaults set it.
fn default_dns_margin() -> u64 {
    let path = support::repo_root().join("roles/loadbalancer/defaults/main.yml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    text.lines()
        .find_map(|l| l.strip_prefix("loadbalancer_drain_dns_margin:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no loadbalancer_drain_dns_margin in {}", path.display()))
}

#[test]
fn nodes_boot_from_their_user_data_refuse_a_tampered_bundle_and_drain_by_default() {
    let w = World::booting();
    let before = support::scenario(&w.emu, &["inventory"]);
    let _backend = support::http_backends(w.work.path(), 8080, &[("www", BACKEND)]);
    let host = Host::start(&w);
    // e2e.yml with the default drain and a backend that answers.
    let config = w.config("boot", |t| {
        let e2e = t.clone();
        *t = t
            .replace(
                "# No node answers in these tests: the Lambda completes terminating actions.\n\
                 drain_seconds: 0\n",
                "",
            )
            .replace(
                "servers: [10.0.2.10]",
                &format!("servers: [{BACKEND}]\n    http_port: 8080"),
            );
        assert!(
            !t.contains("drain_seconds") && t.contains(BACKEND),
            "tests/e2e/e2e.yml is not what this test edits:\n{e2e}"
        );
    });
    // Two boot attempts 1 s apart (the defaults are 3, 10 s apart).
    let with = |more: Value| {
        let mut all = json!({"ttl": TTL, "autoscaling_boot_attempts": 2, "autoscaling_boot_retry_seconds": 1});
        if let (Some(a), Some(m)) = (all.as_object_mut(), more.as_object()) {
            a.extend(m.clone());
        }
        all
    };

    // 1. From nothing: the node boots, says it is ready, then is published.
    let out = w.play("launch-lb.yml", &config, &[], with(json!({})));
    support::assert_success("launch-lb.yml with nodes that boot", &out);
    let state = w.fleet_within(1, "launched", 60);
    let first = in_service(&state).concat();
    assert_eq!(
        history(&w, &first, LAUNCHING),
        json!(["complete:CONTINUE"]),
        "the node completes its own launch"
    );
    let boot = host.file(&first, "boot.log");
    assert!(
        boot.contains("ready: completing the launch"),
        "boot log of {first}:\n{boot}"
    );
    assert_eq!(
        host.get(&first),
        (Some(0), "www".to_owned()),
        "through the node"
    );
    let log = support::request_log(&w.emu.url);
    let completed = naming(&log, "CompleteLifecycleAction", &first);
    let published = naming(&log, "ChangeResourceRecordSets", &first);
    assert!(
        matches!((completed.first(), published.first()), (Some((c, _)), Some((p, _))) if c < p),
        "{first} was published before its node completed its launch: completed {completed:?}, published {published:?}"
    );

    // 2. The bundle in S3 altered: a new node refuses it, abandons its
    // launch, is replaced, and never reaches Route 53.
    let original = w.work.path().join("bundle-original.tar.gz");
    let original_arg = original.to_string_lossy();
    support::scenario(
        &w.emu,
        &["bundle", "--tamper", "--save", original_arg.as_ref()],
    );
    let client = DnsClient::start(&w, &host);
    support::scenario(&w.emu, &["scale", "--group", "e2e-asg", "--desired", "2"]);
    wait_for("a launch abandoned by its node", 180, || {
        (!abandoned(&w).is_empty()).then_some(())
    });
    support::scenario(&w.emu, &["bundle", "--put", original_arg.as_ref()]);
    let state = w.fleet_within(2, "the refused node replaced", 180);
    // Scale-out as a client sees it: no request ever reached a node
    // before it served, the new node included once it was published.
    std::thread::sleep(Duration::from_secs(2));
    let seen = client.stop();
    let failed: Vec<&(String, bool)> = seen.iter().filter(|(_, ok)| !ok).collect();
    assert!(
        failed.is_empty(),
        "requests that followed DNS to a node that did not serve: {failed:?}"
    );
    for iid in in_service(&state) {
        assert!(
            seen.iter().any(|(id, ok)| *id == iid && *ok),
            "the DNS client never reached {iid}: {seen:?}"
        );
    }
    eprintln!(
        "scale-out with a refused bundle: {} requests followed DNS, 0 failed",
        seen.len()
    );
    let log = support::request_log(&w.emu.url);
    for iid in abandoned(&w) {
        assert_eq!(
            history(&w, &iid, LAUNCHING),
            json!(["complete:ABANDON"]),
            "{iid}"
        );
        let boot = host.file(&iid, "boot.log");
        assert!(
            boot.contains("computed checksum did NOT match")
                && boot.contains("abandoning the launch")
                && !boot.contains("PLAY RECAP"),
            "{iid} did not refuse the altered bundle before deploying it:\n{boot}"
        );
        assert!(
            !in_service(&state).contains(&iid),
            "{iid} is in service: {state}"
        );
        let in_route53: Vec<&Value> = log
            .iter()
            .filter(|r| r["service"] == "route53" && r["params"].to_string().contains(&iid))
            .collect();
        assert!(
            in_route53.is_empty(),
            "a node that never got ready reached Route 53: {in_route53:?}"
        );
    }
    for iid in in_service(&state) {
        assert_eq!(host.get(&iid), (Some(0), "www".to_owned()), "through {iid}");
    }

    // 3. Scale in with the default drain, as a client sees it: the node
    // fails its health check, keeps accepting for TTL + margin (clients
    // may hold its address that long after its record went), then closes
    // and completes its own terminating action; the other node never fails.
    let nodes = in_service(&state);
    let probers: Vec<(String, Prober)> = nodes
        .iter()
        .map(|iid| {
            let addr = host.address(iid);
            let prober = Prober::start(
                &format!("http://{addr}:80/craftlb-health"),
                &format!("http://{addr}:80/"),
                HOST,
            );
            (iid.clone(), prober)
        })
        .collect();
    let (t0, unix0) = (Instant::now(), SystemTime::now());
    let unix = |at: Instant| {
        (unix0 + at.duration_since(t0))
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    };
    let started = Instant::now();
    let out = w.play(
        "launch-lb.yml",
        &config,
        &[],
        with(json!({"desired_capacity": 1})),
    );
    support::assert_success("scale in to 1 with the default drain", &out);
    let scale_in = started.elapsed();
    let state = w.fleet_within(1, "scaled in", 60);
    let kept = in_service(&state);
    let gone: Vec<&String> = nodes.iter().filter(|n| !kept.contains(n)).collect();
    assert_eq!(gone.len(), 1, "one node left: {state}");
    let gone = gone[0].clone();
    let log = support::request_log(&w.emu.url);
    let margin = default_dns_margin();
    for (iid, prober) in probers {
        let samples = prober.stop();
        if iid != gone {
            let failed: Vec<&Sample> = samples
                .iter()
                .filter(|s| !s.served || s.health != "200")
                .collect();
            assert!(
                samples.len() > 100 && failed.is_empty(),
                "the node that stays failed during the scale-in: {failed:?}"
            );
            continue;
        }
        let drain = Drain::seen(&samples);
        let (uncertainty, closed_at, accepting) =
            (drain.uncertainty, drain.closed_at, drain.accepting);
        assert!(
            samples
                .iter()
                .filter(|s| s.at < closed_at)
                .all(|s| s.served),
            "{iid} refused a request before its drain closed it"
        );
        assert!(
            accepting + uncertainty >= Duration::from_secs(TTL + margin),
            "{iid} stopped accepting {accepting:?} (+ {uncertainty:?}) after failing its health check \
             (TTL {TTL} s + margin {margin} s)"
        );
        let deleted = naming(&log, "ChangeResourceRecordSets", &iid)
            .into_iter()
            .filter(|(_, r)| r["params"].to_string().contains("DELETE"))
            .filter_map(|(_, r)| r["t"].as_f64())
            .next()
            .unwrap_or_else(|| panic!("{iid}: its record was never deleted"));
        let after_record = unix(closed_at) - deleted;
        assert!(
            after_record >= TTL as f64,
            "{iid} closed {after_record:.1} s after its record was deleted (TTL {TTL} s)"
        );
        assert_eq!(
            history(&w, &iid, TERMINATING),
            json!(["complete:CONTINUE"]),
            "the drain completes the terminating action"
        );
        let completed = naming(&log, "CompleteLifecycleAction", &iid)
            .into_iter()
            .filter_map(|(_, r)| r["t"].as_f64())
            .next_back()
            .unwrap_or_default();
        assert!(
            completed >= unix(closed_at) - uncertainty.as_secs_f64(),
            "{iid}'s terminating action was completed before the node closed"
        );
        eprintln!(
            "scale-in with the default drain ({scale_in:?}): {iid} accepted for {accepting:?} after failing \
             its health check, closed {after_record:.1} s after its record was deleted"
        );
    }

    // 4. Nothing left: destroy twice.
    for run in 1..=2 {
        let out = w.play("destroy-lb.yml", &config, &[], with(json!({})));
        support::assert_success(&format!("destroy-lb.yml #{run}"), &out);
        if run == 2 {
            assert_eq!(recap_changed(&out), 0, "{}", stdout(&out));
        }
    }
    assert_eq!(support::scenario(&w.emu, &["inventory"]), before);
}
