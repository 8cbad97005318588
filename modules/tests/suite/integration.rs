//! Modules through their real binaries: bare (args file in, one JSON out)
//! and under ansible-playbook against the emulator.

use std::process::Command;

use craftlb_testbed as support;
use serde_json::Value;
use support::{Emulator, ansible_doc, assert_success, run_playbook};

fn library() -> tempfile::TempDir {
    support::library(&[("route53_healthcheck", &r53())])
}

fn r53() -> String {
    support::module_bin("route53_healthcheck")
        .to_string_lossy()
        .into_owned()
}

fn run_bare(args: &str) -> (i32, Value, String) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("args");
    std::fs::write(&path, args).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(r53())
        .arg(&path)
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one line of JSON expected: {stdout}"
    );
    let json =
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    (out.status.code().unwrap_or(-1), json, stdout)
}

#[test]
fn bare_binary_prints_one_json_object_on_every_failure() {
    let (code, json, _) = run_bare("{not json");
    assert_eq!(code, 1);
    assert_eq!(json["failed"], Value::Bool(true));

    let (code, json, _) = run_bare(r#"{"type": "TCP", "ip_address": "52.94.0.1"}"#);
    assert_eq!(code, 1);
    assert_eq!(
        json["msg"],
        "type is TCP but all of the following are missing: port"
    );

    let out = Command::new(r53())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        json["msg"]
            .as_str()
            .unwrap_or_default()
            .starts_with("usage:")
    );

    let out = Command::new(r53())
        .arg("/nonexistent/args")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        json["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("/nonexistent/args")
    );
}

#[test]
fn aws_errors_carry_operation_and_kind() {
    // Port 9 (discard) on loopback refuses: a dispatch failure, retried,
    // then reported with the operation that failed.
    let (code, json, _) = run_bare(
        r#"{"type": "TCP", "ip_address": "52.94.0.1", "port": 443, "retries": 0,
            "access_key": "AKIDTEST", "secret_key": "s3cr3t-value"}"#,
    );
    assert_eq!(code, 1);
    assert_eq!(json["operation"], "ListHealthChecks");
    assert_eq!(json["error_kind"], "transient");
    let msg = json["msg"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with("failed to list health checks (Route 53 ListHealthChecks)"),
        "{msg}"
    );
    assert!(!json.to_string().contains("s3cr3t-value"));
}

#[test]
fn route53_healthcheck_playbook_against_emulator() {
    let emulator = Emulator::start();
    let lib = library();
    let out = run_playbook(
        "tests/integration/targets/route53_healthcheck/main.yml",
        &emulator,
        lib.path(),
    );
    assert_success("route53_healthcheck integration playbook", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("failed=0"), "{stdout}");
}

#[test]
fn ansible_doc_renders_sidecar_docs() {
    let lib = library();
    let out = ansible_doc("route53_healthcheck", lib.path());
    assert_success("ansible-doc route53_healthcheck", &out);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "health_check_name",
        "use_unique_names",
        "RETURN VALUES",
        "EXAMPLES",
    ] {
        assert!(
            text.contains(needle),
            "ansible-doc output lacks {needle}:\n{text}"
        );
    }
}

/// The pagination helper against the emulator's (fixed) ListHealthChecks
/// paging: 7 checks in pages of 3 must come back complete, in 3 calls.
#[test]
fn list_all_follows_markers_against_emulator() {
    use craftlb_core::healthcheck::{Config, HealthChecks};

    let emulator = Emulator::start();
    let (rt, client) = emulator_client(&emulator);
    let api = HealthChecks::new(client).with_page_size(3);
    rt.block_on(async {
        for i in 0..7 {
            let c = Config {
                kind: "TCP".into(),
                ip_address: Some(format!("52.94.0.{i}")),
                port: Some(443),
                ..Config::default()
            }
            .with_create_defaults();
            api.create(&format!("page-{i}"), &c, 0)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    });
    support::clear_request_log(&emulator.url);
    let all = rt
        .block_on(api.list_all())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all.len(), 7);
    let mut ids: Vec<&str> = all.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 7, "no check listed twice");
    let log = support::request_log(&emulator.url);
    // Pages actually answered (the creates above may have spent Route 53's
    // request rate: throttled attempts are retried, not pages).
    let lists = log
        .iter()
        .filter(|e| e["operation"] == "ListHealthChecks" && e["fault"].is_null())
        .count();
    assert_eq!(lists, 3, "7 checks in pages of 3: {log:?}");
}

fn emulator_client(emulator: &Emulator) -> (tokio::runtime::Runtime, aws_sdk_route53::Client) {
    use craftlb_core::aws::{AwsParams, sdk_config};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let params = AwsParams {
        region: Some("us-east-1".into()),
        access_key: Some("testing".into()),
        secret_key: Some("testing".into()),
        endpoint_url: Some(emulator.url.clone()),
        ..AwsParams::default()
    };
    let config = rt
        .block_on(sdk_config(&params, None))
        .unwrap_or_else(|e| panic!("{e}"));
    (rt, aws_sdk_route53::Client::new(&config))
}

/// Runs the module binary once against the emulator.
fn run_against(emulator: &Emulator, args: Value) -> Value {
    let mut args = args;
    args["endpoint_url"] = Value::from(emulator.url.clone());
    args["access_key"] = Value::from("testing");
    args["secret_key"] = Value::from("testing");
    let (code, json, raw) = run_bare(&args.to_string());
    assert_eq!(code, 0, "module failed: {raw}");
    json
}

fn named_tcp(name: &str, ip: &str) -> Value {
    serde_json::json!({"health_check_name": name, "use_unique_names": true,
                       "type": "TCP", "ip_address": ip, "port": 443})
}

/// A check made by another tool (random caller reference, Name tag) is
/// adopted, not duplicated.
#[test]
fn adopts_checks_created_by_other_tools() {
    use aws_sdk_route53::types::{HealthCheckConfig, HealthCheckType, Tag, TagResourceType};
    let emulator = Emulator::start();
    let (rt, client) = emulator_client(&emulator);
    let id = rt.block_on(async {
        let cfg = HealthCheckConfig::builder()
            .r#type(HealthCheckType::Tcp)
            .ip_address("52.94.0.50")
            .port(443)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let out = client
            .create_health_check()
            .caller_reference("4d1a0f8e-made-by-amazon-aws")
            .health_check_config(cfg)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let id = out
            .health_check()
            .map(|h| h.id().to_owned())
            .unwrap_or_default();
        client
            .change_tags_for_resource()
            .resource_type(TagResourceType::Healthcheck)
            .resource_id(&id)
            .add_tags(Tag::builder().key("Name").value("legacy").build())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        id
    });
    support::clear_request_log(&emulator.url);
    let out = run_against(&emulator, named_tcp("legacy", "52.94.0.50"));
    assert_eq!(out["changed"], Value::Bool(false), "{out}");
    assert_eq!(out["health_check"]["id"], Value::from(id));
    let log = support::request_log(&emulator.url);
    assert!(
        log.iter().any(|e| e["operation"] == "ListTagsForResources"),
        "{log:?}"
    );
    assert!(
        !log.iter().any(|e| e["operation"] == "CreateHealthCheck"),
        "{log:?}"
    );
}

/// A create whose tagging never happened (process killed, response lost)
/// is recognised by its caller reference on the next run: one check, tagged.
#[test]
fn a_half_finished_create_converges_to_one_check() {
    use craftlb_core::healthcheck::{Config, HealthChecks};
    let emulator = Emulator::start();
    let (rt, client) = emulator_client(&emulator);
    let config = Config {
        kind: "TCP".into(),
        ip_address: Some("52.94.0.60".into()),
        port: Some(443),
        ..Config::default()
    }
    .with_create_defaults();
    let api = HealthChecks::new(client);
    let first = rt
        .block_on(api.create("half", &config, 0))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = run_against(&emulator, named_tcp("half", "52.94.0.60"));
    assert_eq!(
        out["health_check"]["id"],
        Value::from(first.id.clone()),
        "{out}"
    );
    assert_eq!(out["health_check"]["tags"]["Name"], "half");
    let all = rt
        .block_on(api.list_all())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all.len(), 1, "{all:?}");
    // The same create sent again returns the same check (AWS semantics).
    let again = rt
        .block_on(api.create("half", &config, 0))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.id, first.id);
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("openssl (make setup installs it): {e}"));
    assert_success(&format!("openssl {}", args.join(" ")), &out);
}

/// The modules' one HTTPS client (rustls + ring, platform roots): a
/// certificate from an unknown issuer is refused, the same endpoint is used
/// once its CA is trusted (SSL_CERT_FILE, as on any Linux host).
#[test]
fn https_endpoints_are_verified_against_the_platform_trust_store() {
    let emu = Emulator::start();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=craftlb test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.83.1",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
        ],
    );
    std::fs::write(d.join("ext"), "subjectAltName=IP:127.0.83.1\n")
        .unwrap_or_else(|e| panic!("{e}"));
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext",
            "-out",
            "srv.crt",
        ],
    );
    let pem = [
        std::fs::read(d.join("srv.crt")),
        std::fs::read(d.join("srv.key")),
    ]
    .into_iter()
    .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
    .collect::<Vec<_>>()
    .concat();
    std::fs::write(d.join("srv.pem"), pem).unwrap_or_else(|e| panic!("{e}"));
    let upstream = emu.url.trim_start_matches("http://");
    let cfg = format!(
        "global\n    maxconn 100\ndefaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
         frontend tls\n    bind 127.0.83.1:18443 ssl crt {}\n    default_backend emu\nbackend emu\n    server e {upstream}\n",
        d.join("srv.pem").display()
    );
    std::fs::write(d.join("tls.cfg"), cfg).unwrap_or_else(|e| panic!("{e}"));
    let _tls = support::Haproxy::start(
        &d.join("tls.pid"),
        &["-f", &d.join("tls.cfg").to_string_lossy()],
    );

    let args = d.join("args.json");
    std::fs::write(
        &args,
        r#"{"type": "TCP", "ip_address": "52.94.0.1", "port": 443,
        "endpoint_url": "https://127.0.83.1:18443", "retries": 0, "region": "us-east-1"}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let run = |trust: Option<&std::path::Path>| -> Value {
        let mut cmd = Command::new(r53());
        cmd.arg(&args)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("SSL_CERT_DIR");
        match trust {
            Some(ca) => cmd.env("SSL_CERT_FILE", ca),
            None => cmd.env_remove("SSL_CERT_FILE"),
        };
        let out = cmd.output().unwrap_or_else(|e| panic!("{e}"));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e})"))
    };
    let refused = run(None);
    assert_eq!(refused["failed"], true, "{refused}");
    assert!(
        refused["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("UnknownIssuer"),
        "{refused}"
    );
    let ok = run(Some(&d.join("ca.pem")));
    assert_eq!(ok["changed"], true, "{ok}");
    assert!(
        ok["health_check"]["id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{ok}"
    );
}

fn target(name: &str, emulator: &Emulator, vars: &[(&str, &str)]) {
    let lib = support::every_module();
    let out = support::run_playbook_with(
        &format!("tests/integration/targets/{name}/main.yml"),
        emulator,
        lib.path(),
        vars,
    );
    assert_success(&format!("{name} integration playbook"), &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("failed=0"), "{stdout}");
}

#[test]
fn asg_lifecycle_hook_playbook_against_emulator() {
    let emulator = Emulator::start();
    support::scenario(&emulator, &["world", "--no-hooks"]);
    target("asg_lifecycle_hook", &emulator, &[]);
}

#[test]
fn autoscaling_group_playbook_against_emulator() {
    let emulator = Emulator::start();
    let net = support::scenario(&emulator, &["network"]);
    let subnet = |i: usize| net["subnets"][i].as_str().unwrap_or_default().to_owned();
    let (a, b) = (subnet(0), subnet(1));
    let image = net["image_id"].as_str().unwrap_or_default().to_owned();
    target(
        "autoscaling_group",
        &emulator,
        &[
            ("it_subnet_a", &a),
            ("it_subnet_b", &b),
            ("it_image", &image),
        ],
    );
}

#[test]
fn ec2_eip_pool_playbook_against_emulator() {
    let emulator = Emulator::start();
    target("ec2_eip_pool", &emulator, &[]);
}

#[test]
fn ec2_launch_template_playbook_against_emulator() {
    let emulator = Emulator::start();
    target("ec2_launch_template", &emulator, &[]);
}

#[test]
fn ec2_security_group_playbook_against_emulator() {
    let emulator = Emulator::start();
    target("ec2_security_group", &emulator, &[]);
}

#[test]
fn iam_role_playbook_against_emulator() {
    let emulator = Emulator::start();
    target("iam_role", &emulator, &[]);
}

#[test]
fn s3_bucket_playbook_against_emulator() {
    let emulator = Emulator::start();
    target("s3_bucket", &emulator, &[]);
}

#[test]
fn s3_object_and_deploy_bundle_playbook_against_emulator() {
    let emulator = Emulator::start();
    target("s3_object", &emulator, &[]);
}

#[test]
fn sns_topic_playbook_against_emulator() {
    let emulator = Emulator::start();
    target("sns_topic", &emulator, &[]);
}

#[test]
fn lambda_playbook_against_emulator() {
    let emulator = Emulator::start();
    let bootstrap = support::workspace_bin("bootstrap");
    // A second, different executable: its zip has another CodeSha256.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let other = dir.path().join("bootstrap2");
    let mut bytes = std::fs::read(&bootstrap).unwrap_or_else(|e| panic!("{e}"));
    bytes.extend_from_slice(b"craftlb");
    std::fs::write(&other, bytes).unwrap_or_else(|e| panic!("{e}"));
    target(
        "lambda",
        &emulator,
        &[
            ("bootstrap", &bootstrap.to_string_lossy()),
            ("bootstrap2", &other.to_string_lossy()),
        ],
    );
}
