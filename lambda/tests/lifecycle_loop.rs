//! The real `bootstrap` on the emulator's lifecycle loop: hooks hold
//! instances, notifications go through SNS to the local Lambda runtime, the
//! handler writes Route 53 and completes the lifecycle actions.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use craftlb_testbed::{Emulator, control, scenario};
use serde_json::Value;

const BOOTSTRAP: &str = env!("CARGO_BIN_EXE_bootstrap");

fn world(emulator: &Emulator, extra: &[&str]) -> Value {
    let mut args = vec!["world", "--bootstrap", BOOTSTRAP];
    args.extend_from_slice(extra);
    scenario(emulator, &args)
}

fn scale_and_wait(emulator: &Emulator, n: usize) -> Value {
    scenario(emulator, &["scale", "--desired", &n.to_string()]);
    let out = scenario(
        emulator,
        &["wait", "--in-service", &n.to_string(), "--timeout", "60"],
    );
    assert!(
        out.get("timeout").is_none(),
        "group did not reach {n} InService: {out}"
    );
    out
}

/// Waits until every local Lambda run has finished.
fn settled(emulator: &Emulator) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let inv = control(emulator, "/_craftlb/lambda/invocations");
        let list = inv.as_array().cloned().unwrap_or_default();
        if list.iter().all(|i| i["status"] != "running") {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "Lambda runs did not finish: {inv}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The handler's JSON log lines, across all runs.
fn reports(emulator: &Emulator) -> Vec<Value> {
    settled(emulator)
        .iter()
        .flat_map(|i| i["logs"].as_array().cloned().unwrap_or_default())
        .filter_map(|l| serde_json::from_str::<Value>(l.as_str().unwrap_or_default()).ok())
        .collect()
}

fn strings(v: &Value, key: &str) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x[key].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Records and health checks exactly match the InService instances.
fn assert_published_exactly(emulator: &Emulator) -> Value {
    settled(emulator);
    let state = scenario(emulator, &["state"]);
    let in_service: Vec<&Value> = state["instances"]
        .as_array()
        .map(|a| a.iter().filter(|i| i["state"] == "InService").collect())
        .unwrap_or_default();
    let ids: BTreeSet<String> = in_service
        .iter()
        .filter_map(|i| i["id"].as_str().map(str::to_owned))
        .collect();
    let ips: BTreeSet<String> = in_service
        .iter()
        .filter_map(|i| i["public_ip"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        strings(&state["records"], "set_identifier"),
        ids,
        "records vs instances: {state}"
    );
    assert_eq!(strings(&state["records"], "ip"), ips, "record IPs: {state}");
    assert_eq!(
        strings(&state["health_checks"], "ip"),
        ips,
        "health checks: {state}"
    );
    assert_eq!(
        strings(&state["records"], "health_check_id"),
        strings(&state["health_checks"], "id"),
        "{state}"
    );
    state
}

#[test]
fn scale_0_3_1_keeps_route53_exact() {
    let emu = Emulator::start();
    world(&emu, &[]);
    scale_and_wait(&emu, 3);
    let state = assert_published_exactly(&emu);
    assert_eq!(state["records"].as_array().map(Vec::len), Some(3));
    scale_and_wait(&emu, 1);
    let state = assert_published_exactly(&emu);
    assert_eq!(state["records"].as_array().map(Vec::len), Some(1));

    let reports = reports(&emu);
    assert_eq!(reports.len(), 5, "{reports:?}");
    for r in &reports {
        assert_eq!(r["lifecycle_result"], "CONTINUE", "{r}");
        assert_eq!(r["completion"], "completed", "{r}");
    }
    let actions = control(&emu, "/_craftlb/autoscaling/actions");
    assert_eq!(actions.as_array().map(Vec::len), Some(5));
    assert!(actions.as_array().is_some_and(|a| {
        a.iter()
            .all(|x| x["history"] == serde_json::json!(["complete:CONTINUE"]))
    }));
}

#[test]
fn duplicate_and_late_deliveries_converge() {
    let emu = Emulator::start();
    world(&emu, &[]);
    scale_and_wait(&emu, 2);
    let runs = settled(&emu);
    let launch_message = runs[0]["payload"]["Records"][0]["Sns"]["Message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // Duplicate of a completed launch: same state, token no longer active.
    scenario(&emu, &["publish", "--message", &launch_message]);
    assert_published_exactly(&emu);
    let dup = reports(&emu).last().cloned().unwrap_or_default();
    assert!(
        dup["completion"]
            .as_str()
            .is_some_and(|c| c.starts_with("no active lifecycle action")),
        "{dup}"
    );
    assert_eq!(dup["error"], Value::Null, "{dup}");

    // The same launch again after the instance was terminated (out of
    // order): nothing is published for a dead instance.
    scale_and_wait(&emu, 0);
    assert_published_exactly(&emu);
    scenario(&emu, &["publish", "--message", &launch_message]);
    let state = assert_published_exactly(&emu);
    assert_eq!(
        state["records"].as_array().map(Vec::len),
        Some(0),
        "{state}"
    );
    let late = reports(&emu).last().cloned().unwrap_or_default();
    assert!(
        late["error"]
            .as_str()
            .is_some_and(|e| e.contains("terminated")),
        "{late}"
    );
}

#[test]
fn test_notification_is_acknowledged() {
    let emu = Emulator::start();
    world(&emu, &[]);
    let message = r#"{"AccountId":"123456789012","RequestId":"d2b2a2b9","AutoScalingGroupName":"mylb-asg","Service":"AWS Auto Scaling","Event":"autoscaling:TEST_NOTIFICATION","Time":"2026-11-24T23:30:00.000Z"}"#;
    scenario(&emu, &["publish", "--message", message]);
    let r = reports(&emu);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["action"], "test notification acknowledged");
    assert_eq!(r[0]["group"], "mylb-asg");
}

#[test]
fn configuration_errors_continue_without_cycling() {
    // No domain tag and no record name in the metadata.
    let emu = Emulator::start();
    world(&emu, &["--domain", ""]);
    scale_and_wait(&emu, 1);
    let r = reports(&emu);
    assert_eq!(r.len(), 1, "exactly one launch, no replacement: {r:?}");
    assert_eq!(r[0]["lifecycle_result"], "CONTINUE");
    assert!(
        r[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no record name")),
        "{}",
        r[0]
    );

    // A record name whose hosted zone does not exist.
    let emu = Emulator::start();
    world(&emu, &["--zone", ""]);
    scale_and_wait(&emu, 1);
    let r = reports(&emu);
    assert_eq!(r.len(), 1, "exactly one launch, no replacement: {r:?}");
    assert_eq!(r[0]["lifecycle_result"], "CONTINUE");
    assert_eq!(r[0]["error_class"], "permanent");
    assert!(
        r[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no public hosted zone")),
        "{}",
        r[0]
    );
    assert_eq!(
        scenario(&emu, &["state"])["health_checks"],
        serde_json::json!([])
    );
}

#[test]
fn transient_failure_abandons_then_replacement_registers() {
    let emu = Emulator::start();
    world(&emu, &[]);
    scenario(
        &emu,
        &[
            "faults",
            "--rules",
            r#"{"seed": 3, "rules": [{"service": "route53", "operation": "ChangeResourceRecordSets", "throttle": 1.0}]}"#,
        ],
    );
    scenario(&emu, &["scale", "--desired", "1"]);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let actions = control(&emu, "/_craftlb/autoscaling/actions");
        if actions
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["result"] == "ABANDON"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no ABANDON: {actions}");
        std::thread::sleep(Duration::from_millis(200));
    }
    scenario(&emu, &["faults", "--rules", r#"{"rules": []}"#]);
    let out = scenario(&emu, &["wait", "--in-service", "1", "--timeout", "60"]);
    assert!(out.get("timeout").is_none(), "{out}");
    let state = assert_published_exactly(&emu);
    assert_eq!(state["records"].as_array().map(Vec::len), Some(1));
    let abandoned: Vec<Value> = reports(&emu)
        .into_iter()
        .filter(|r| r["lifecycle_result"] == "ABANDON")
        .collect();
    assert!(!abandoned.is_empty());
    assert_eq!(abandoned[0]["error_class"], "transient", "{}", abandoned[0]);
    // The abandoned instance's health check was created before its record
    // failed; the exact-state assertion above proves it was not leaked.
}

#[test]
fn eip_pool_smaller_than_the_group() {
    let emu = Emulator::start();
    let pool = scenario(&emu, &["eips", "--pool", "mylb", "--count", "2"]);
    world(
        &emu,
        &["--metadata", r#"{"ip_type": "eip", "eip_pool": "mylb"}"#],
    );
    scale_and_wait(&emu, 3);
    settled(&emu);
    let state = scenario(&emu, &["state"]);
    let eips: BTreeSet<String> = pool["eips"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|ip| ip.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        strings(&state["records"], "ip"),
        eips,
        "both pool addresses published: {state}"
    );
    let r = reports(&emu);
    let failed: Vec<&Value> = r.iter().filter(|x| x["action"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{r:?}");
    assert!(
        failed[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no free address")),
        "{}",
        failed[0]
    );
    assert_eq!(failed[0]["lifecycle_result"], "CONTINUE");
}

#[test]
fn reconcile_repairs_lost_events() {
    let emu = Emulator::start();
    world(&emu, &[]);
    scale_and_wait(&emu, 2);
    assert_published_exactly(&emu);
    let tampered = scenario(&emu, &["tamper"]);
    let run = scenario(
        &emu,
        &["invoke", "--payload", r#"{"reconcile": "mylb-asg"}"#],
    );
    assert_eq!(run["status"], "ok", "{run}");
    let report: Value = run["logs"]
        .as_array()
        .and_then(|l| l.last())
        .and_then(|l| serde_json::from_str(l.as_str().unwrap_or_default()).ok())
        .unwrap_or_default();
    assert_eq!(report["action"], "reconciled", "{report}");
    assert_eq!(
        report["registered"],
        serde_json::json!([tampered["lost"]]),
        "{report}"
    );
    assert_eq!(
        report["removed"],
        serde_json::json!([tampered["stale"]]),
        "{report}"
    );
    // The lost record's health check still existed: reconcile re-created
    // the record against the same check (deterministic caller reference),
    // so records and checks match the group exactly again.
    assert_published_exactly(&emu);
}

#[test]
fn instance_without_public_ip_is_not_published_and_not_cycled() {
    let emu = Emulator::start();
    world(&emu, &["--no-public-ip"]);
    scale_and_wait(&emu, 1);
    let state = scenario(&emu, &["state"]);
    assert_eq!(
        state["instances"][0]["public_ip"],
        Value::Null,
        "moto gave it a public IP: {state}"
    );
    let r = reports(&emu);
    assert_eq!(r.len(), 1, "one launch, no replacement: {r:?}");
    assert_eq!(r[0]["lifecycle_result"], "CONTINUE");
    assert!(
        r[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no public IP")),
        "{}",
        r[0]
    );
    assert_eq!(state["records"], serde_json::json!([]));
}

#[test]
fn drain_switch_leaves_completion_to_the_node_and_timeout_applies_default() {
    let emu = Emulator::start();
    world(
        &emu,
        &["--metadata", r#"{"drain_seconds": 30}"#, "--heartbeat", "2"],
    );
    scale_and_wait(&emu, 1);
    assert_published_exactly(&emu);
    scale_and_wait(&emu, 0);
    let state = assert_published_exactly(&emu);
    assert_eq!(
        state["records"],
        serde_json::json!([]),
        "record removed at once: {state}"
    );
    let r = reports(&emu);
    let term = r
        .iter()
        .find(|x| x["transition"] == "autoscaling:EC2_INSTANCE_TERMINATING");
    let term = term.unwrap_or_else(|| panic!("no terminate report: {r:?}"));
    assert_eq!(term["action"], "deregistered");
    assert_eq!(
        term["lifecycle_result"],
        Value::Null,
        "the Lambda must not complete: {term}"
    );
    let (histories, actions) = craftlb_testbed::action_histories(&emu);
    assert_eq!(
        histories,
        vec![
            serde_json::json!(["complete:CONTINUE"]),
            serde_json::json!(["timeout:CONTINUE"])
        ],
        "{actions}"
    );
}

/// Split horizon: a private zone with the record's name next to the public
/// one. Whichever of the two Route 53 lists first, the record goes into the
/// public zone.
#[test]
fn split_horizon_publishes_into_the_public_zone() {
    for order in ["first", "last"] {
        let emu = Emulator::start();
        let w = world(&emu, &["--private-zone", order]);
        assert!(w["private_zone_id"].is_string(), "{w}");
        scale_and_wait(&emu, 1);
        let state = assert_published_exactly(&emu);
        let records = state["records"].as_array().cloned().unwrap_or_default();
        assert_eq!(records.len(), 1, "private zone {order}: {state}");
        assert_eq!(
            records[0]["zone_id"], w["zone_id"],
            "private zone {order}: {state}"
        );
        let r = reports(&emu);
        assert_eq!(r[0]["action"], "registered", "private zone {order}: {r:?}");
    }
}

/// The payload of the first Lambda run of `transition` for `instance`.
fn delivery_of(emulator: &Emulator, instance: &str, transition: &str) -> Value {
    settled(emulator)
        .into_iter()
        .find(|i| {
            let msg = i["payload"]["Records"][0]["Sns"]["Message"]
                .as_str()
                .and_then(|m| serde_json::from_str::<Value>(m).ok())
                .unwrap_or_default();
            msg["EC2InstanceId"] == instance && msg["LifecycleTransition"] == transition
        })
        .map(|i| i["payload"].clone())
        .unwrap_or_else(|| panic!("no {transition} delivery for {instance}"))
}

/// A failed record upsert deletes the health check it just made; Route 53
/// never lets that check's caller reference be used again. A redelivered
/// event and reconcile must still publish the instance, each with one check.
#[test]
fn registration_after_a_deleted_check_is_possible_again() {
    let emu = Emulator::start();
    world(&emu, &["--metadata", r#"{"on_failure": "CONTINUE"}"#]);
    scenario(
        &emu,
        &[
            "faults",
            "--rules",
            r#"{"seed": 5, "rules": [{"service": "route53", "operation": "ChangeResourceRecordSets",
                "error": 1.0, "agent": "aws-sdk-rust"}]}"#,
        ],
    );
    let up = scale_and_wait(&emu, 2);
    settled(&emu);
    scenario(&emu, &["faults", "--rules", r#"{"rules": []}"#]);
    let state = scenario(&emu, &["state"]);
    assert_eq!(state["records"], serde_json::json!([]), "{state}");
    assert_eq!(
        state["health_checks"],
        serde_json::json!([]),
        "the failed launches removed their checks: {state}"
    );
    let ids: Vec<String> = up["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(ids.len(), 2, "{up}");

    // Redelivery of the first instance's launch, twice (duplicates converge).
    let payload = delivery_of(&emu, &ids[0], "autoscaling:EC2_INSTANCE_LAUNCHING").to_string();
    for _ in 0..2 {
        let run = scenario(&emu, &["invoke", "--payload", &payload]);
        assert_eq!(run["status"], "ok", "{run}");
    }
    let state = scenario(&emu, &["state"]);
    assert_eq!(
        strings(&state["records"], "set_identifier"),
        BTreeSet::from([ids[0].clone()]),
        "redelivery published the first instance: {state}"
    );
    assert_eq!(
        state["health_checks"].as_array().map(Vec::len),
        Some(1),
        "{state}"
    );

    // Reconcile publishes the second one.
    let run = scenario(
        &emu,
        &["invoke", "--payload", r#"{"reconcile": "mylb-asg"}"#],
    );
    assert_eq!(run["status"], "ok", "{run}");
    let state = assert_published_exactly(&emu);
    assert_eq!(
        state["records"].as_array().map(Vec::len),
        Some(2),
        "{state}"
    );
}

/// Polls the emulator's state until `done` holds (or fails after `secs`).
fn state_when(emulator: &Emulator, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let state = scenario(emulator, &["state"]);
        if done(&state) {
            return state;
        }
        assert!(Instant::now() < deadline, "state never reached: {state}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Reconcile of one group touches only what it can prove is its own: a
/// second group publishing under the same name (blue/green) keeps its
/// records and checks, and its own instance whose registration is in
/// flight (Pending:Wait, record already published) keeps its record.
#[test]
fn reconcile_leaves_other_groups_and_registrations_in_flight_alone() {
    let emu = Emulator::start();
    world(&emu, &["--heartbeat", "300"]);
    world(&emu, &["--group", "mylb-green", "--zone", ""]);
    scale_and_wait(&emu, 1);
    scenario(&emu, &["scale", "--group", "mylb-green", "--desired", "1"]);
    let out = scenario(
        &emu,
        &["wait", "--group", "mylb-green", "--in-service", "1"],
    );
    assert!(out.get("timeout").is_none(), "{out}");
    settled(&emu);

    // Blue's second instance: registered, but its lifecycle action cannot
    // be completed, so it stays in Pending:Wait with its record published.
    scenario(
        &emu,
        &[
            "faults",
            "--rules",
            r#"{"seed": 7, "rules": [{"service": "autoscaling", "operation": "CompleteLifecycleAction",
                "throttle": 1.0, "agent": "aws-sdk-rust"}]}"#,
        ],
    );
    scenario(&emu, &["scale", "--desired", "2"]);
    state_when(&emu, 60, |s| {
        s["records"].as_array().map(Vec::len) == Some(3)
    });
    let state = scenario(&emu, &["state"]);
    assert!(
        state["instances"]
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i["state"] == "Pending:Wait")),
        "{state}"
    );

    let run = scenario(
        &emu,
        &["invoke", "--payload", r#"{"reconcile": "mylb-asg"}"#],
    );
    assert_eq!(run["status"], "ok", "{run}");
    let report: Value = run["logs"]
        .as_array()
        .and_then(|l| l.last())
        .and_then(|l| serde_json::from_str(l.as_str().unwrap_or_default()).ok())
        .unwrap_or_default();
    assert_eq!(report["action"], "reconciled", "{report}");
    assert_eq!(report["removed"], serde_json::json!([]), "{report}");
    assert_eq!(
        report["orphan_checks_deleted"],
        serde_json::json!([]),
        "{report}"
    );
    assert_eq!(report["registered"], serde_json::json!([]), "{report}");
    let after = scenario(&emu, &["state"]);
    assert_eq!(
        after["records"].as_array().map(Vec::len),
        Some(3),
        "{after}"
    );
    assert_eq!(
        after["health_checks"].as_array().map(Vec::len),
        Some(3),
        "{after}"
    );

    // Let the held launch finish before the emulator goes.
    scenario(&emu, &["faults", "--rules", r#"{"rules": []}"#]);
    settled(&emu);
}

/// The Lambda's AWS calls, as the emulator saw them (not as it counts them).
fn lambda_calls(emulator: &Emulator) -> Vec<String> {
    craftlb_testbed::request_log(&emulator.url)
        .iter()
        .filter(|e| {
            e["agent"]
                .as_str()
                .is_some_and(|a| a.starts_with("aws-sdk-rust"))
        })
        .map(|e| e["operation"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Calls per event from the emulator's request log, one event at a time,
/// with the name from the group's tag and the zone looked up (the worst
/// case); the handler's own count must agree with the log.
#[test]
fn calls_per_event_from_the_request_log() {
    let emu = Emulator::start();
    world(&emu, &[]);
    craftlb_testbed::clear_request_log(&emu.url);
    scale_and_wait(&emu, 1);
    settled(&emu);
    let launch = lambda_calls(&emu);
    assert_eq!(
        launch,
        [
            "DescribeAutoScalingGroups",
            "ListHostedZonesByName",
            "ListHostedZonesByName",
            "DescribeInstances",
            "CreateHealthCheck",
            "ChangeTagsForResource",
            "ChangeResourceRecordSets",
            "CompleteLifecycleAction"
        ],
        "launch"
    );
    craftlb_testbed::clear_request_log(&emu.url);
    scale_and_wait(&emu, 0);
    settled(&emu);
    let term = lambda_calls(&emu);
    assert_eq!(
        term,
        [
            "DescribeAutoScalingGroups",
            "ListHostedZonesByName",
            "ListHostedZonesByName",
            "ListResourceRecordSets",
            "ChangeResourceRecordSets",
            "DeleteHealthCheck",
            "CompleteLifecycleAction"
        ],
        "terminate"
    );
    let r = reports(&emu);
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(
        r[0]["aws_calls"].as_u64(),
        Some(launch.len() as u64),
        "{}",
        r[0]
    );
    assert_eq!(
        r[1]["aws_calls"].as_u64(),
        Some(term.len() as u64),
        "{}",
        r[1]
    );
}
