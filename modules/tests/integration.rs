//! Modules through their real binaries: bare (args file in, one JSON out)
//! and under ansible-playbook against the emulator.

mod support;

use std::process::Command;

use serde_json::Value;
use support::{Emulator, ansible_doc, assert_success, library, run_playbook};

const R53: &str = env!("CARGO_BIN_EXE_route53_healthcheck");

fn run_bare(args: &str) -> (i32, Value, String) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("args");
    std::fs::write(&path, args).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(R53)
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

    let (code, json, _) = run_bare(r#"{"type": "TCP", "ip_address": "192.0.2.1"}"#);
    assert_eq!(code, 1);
    assert_eq!(
        json["msg"],
        "type is TCP but all of the following are missing: port"
    );

    let out = Command::new(R53).output().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        json["msg"]
            .as_str()
            .unwrap_or_default()
            .starts_with("usage:")
    );

    let out = Command::new(R53)
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
        r#"{"type": "TCP", "ip_address": "192.0.2.1", "port": 443, "retries": 0,
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
    use craftlb_core::aws::{AwsParams, sdk_config};
    use craftlb_core::healthcheck::{Config, HealthChecks};

    let emulator = Emulator::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let params = AwsParams {
            region: Some("us-east-1".into()),
            access_key: Some("testing".into()),
            secret_key: Some("testing".into()),
            endpoint_url: Some(emulator.url.clone()),
            ..AwsParams::default()
        };
        let config = sdk_config(&params, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let api = HealthChecks::new(aws_sdk_route53::Client::new(&config)).with_page_size(3);
        for i in 0..7 {
            let c = Config {
                kind: "TCP".into(),
                ip_address: Some(format!("192.0.2.{i}")),
                port: Some(443),
                ..Config::default()
            }
            .with_create_defaults();
            api.create(&format!("page-{i}"), &c, 0)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        support::clear_request_log(&emulator.url);
        let all = api.list_all().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(all.len(), 7);
        let mut ids: Vec<&str> = all.iter().map(|c| c.id.as_str()).collect();
        ids.dedup();
        assert_eq!(ids.len(), 7, "no check listed twice");
    });
    let log = support::request_log(&emulator.url);
    let lists = log
        .iter()
        .filter(|e| e["operation"] == "ListHealthChecks")
        .count();
    assert_eq!(lists, 3, "7 checks in pages of 3: {log:?}");
}
