//! The real `bootstrap` on the emulator's lifecycle loop: hooks hold
//! instances, a stand-in node completes each launch once the instance runs
//! (as a node that serves would), the group's notifications and the
//! terminating hook's go through SNS to the local Lambda runtime, and the
//! handler writes Route 53 and completes the terminating actions.

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

/// The reports of one kind of event.
fn of(reports: &[Value], transition: &str) -> Vec<Value> {
    reports
        .iter()
        .filter(|r| r["transition"] == transition)
        .cloned()
        .collect()
}

const LAUNCH: &str = "autoscaling:EC2_INSTANCE_LAUNCH";
const TERMINATE: &str = "autoscaling:EC2_INSTANCE_TERMINATE";
const TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";

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
    let launched = of(&reports, LAUNCH);
    assert_eq!(launched.len(), 3, "{reports:?}");
    for r in &launched {
        assert_eq!(
            (&r["action"], &r["lifecycle_result"]),
            (&Value::from("registered"), &Value::Null),
            "the node completed its launch, not the Lambda: {r}"
        );
    }
    let leaving = of(&reports, TERMINATING);
    assert_eq!(leaving.len(), 2, "{reports:?}");
    for r in &leaving {
        assert_eq!(r["lifecycle_result"], "CONTINUE", "{r}");
        assert_eq!(r["completion"], "completed", "{r}");
    }
    // The instances' own "gone" notifications find nothing left to remove.
    for r in of(&reports, TERMINATE) {
        assert_eq!(
            (&r["action"], &r["error"]),
            (&Value::from("deregistered"), &Value::Null),
            "{r}"
        );
    }
    let (histories, actions) = craftlb_testbed::action_histories(&emu);
    let count = |h: &str| {
        histories
            .iter()
            .filter(|x| **x == serde_json::json!([h]))
            .count()
    };
    assert_eq!(
        (
            count("stand-in:CONTINUE"),
            count("complete:CONTINUE"),
            histories.len()
        ),
        (3, 2, 5),
        "{actions}"
    );
}

#[test]
fn a_launch_is_published_only_once_its_node_says_it_serves() {
    let emu = Emulator::start();
    world(&emu, &["--stand-in", "none"]);
    scenario(&emu, &["scale", "--desired", "1"]);
    // Held in Pending:Wait: no record, no health check, however long.
    std::thread::sleep(Duration::from_secs(3));
    let state = scenario(&emu, &["state"]);
    assert_eq!(state["instances"][0]["state"], "Pending:Wait", "{state}");
    assert_eq!(
        (&state["records"], &state["health_checks"]),
        (&serde_json::json!([]), &serde_json::json!([])),
        "{state}"
    );
    assert!(
        reports(&emu).is_empty(),
        "the Lambda acted before the node was ready"
    );
    // The node says it serves: in service, then published.
    craftlb_testbed::control_post(
        &emu,
        "/_craftlb/autoscaling/stand-in",
        &serde_json::json!({"group": "mylb-asg", "result": "CONTINUE"}),
    );
    let out = scenario(&emu, &["wait", "--in-service", "1", "--timeout", "30"]);
    assert!(out.get("timeout").is_none(), "{out}");
    let state = assert_published_exactly(&emu);
    assert_eq!(state["records"].as_array().map(Vec::len), Some(1));
}

#[test]
fn a_node_that_never_gets_ready_is_replaced_and_never_published() {
    let emu = Emulator::start();
    world(&emu, &["--stand-in", "ABANDON"]);
    scenario(&emu, &["scale", "--desired", "1"]);
    // Abandoned and replaced, again and again: never in service.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let actions = control(&emu, "/_craftlb/autoscaling/actions");
        let abandoned = actions
            .as_array()
            .map(|a| a.iter().filter(|x| x["result"] == "ABANDON").count())
            .unwrap_or(0);
        if abandoned >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not abandoned and replaced: {actions}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let state = scenario(&emu, &["state"]);
    assert_eq!(
        (&state["records"], &state["health_checks"]),
        (&serde_json::json!([]), &serde_json::json!([])),
        "{state}"
    );
    assert!(
        of(&reports(&emu), LAUNCH).is_empty(),
        "a launch notification for a node that never served"
    );
    craftlb_testbed::control_post(
        &emu,
        "/_craftlb/autoscaling/stand-in",
        &serde_json::json!({"group": "mylb-asg", "result": null}),
    );
}

#[test]
fn duplicate_and_late_deliveries_converge() {
    let emu = Emulator::start();
    world(&emu, &[]);
    scale_and_wait(&emu, 2);
    let runs = settled(&emu);
    let launch_message = runs
        .iter()
        .filter_map(|r| r["payload"]["Records"][0]["Sns"]["Message"].as_str())
        .find(|m| m.contains(LAUNCH))
        .unwrap_or_else(|| panic!("no launch notification among {runs:?}"))
        .to_owned();
    // A duplicate of a launch: the same state.
    scenario(&emu, &["publish", "--message", &launch_message]);
    assert_published_exactly(&emu);
    let dup = reports(&emu).last().cloned().unwrap_or_default();
    assert_eq!(
        (&dup["action"], &dup["error"]),
        (&Value::from("registered"), &Value::Null),
        "{dup}"
    );

    // The same launch again after the instance left (out of order): the
    // group no longer has it in service, nothing is published.
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
    assert_eq!(late["action"], "skipped", "{late}");
    assert!(
        late["note"]
            .as_str()
            .is_some_and(|n| n.contains("not publishing")),
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
fn configuration_errors_are_logged_once_and_not_retried() {
    // No domain tag and no record name in the metadata.
    let emu = Emulator::start();
    world(&emu, &["--domain", ""]);
    scale_and_wait(&emu, 1);
    let r = of(&reports(&emu), LAUNCH);
    assert_eq!(r.len(), 1, "one event, no retry: {r:?}");
    assert_eq!(
        (&r[0]["retry"], &r[0]["error_class"]),
        (&Value::Bool(false), &Value::from("permanent"))
    );
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
    let r = of(&reports(&emu), LAUNCH);
    assert_eq!(r.len(), 1, "one event, no retry: {r:?}");
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
fn a_transient_failure_is_retried_by_lambda_never_abandoned() {
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
    scale_and_wait(&emu, 1);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let failed = of(&reports(&emu), LAUNCH)
            .into_iter()
            .any(|r| r["action"] == "failed" && r["retry"] == true);
        if failed {
            break;
        }
        assert!(Instant::now() < deadline, "no failed launch report");
        std::thread::sleep(Duration::from_millis(200));
    }
    scenario(&emu, &["faults", "--rules", r#"{"rules": []}"#]);
    // Lambda delivers the event again; it publishes the node it never gave up.
    let state = state_when(&emu, 90, |s| {
        s["records"].as_array().map(Vec::len) == Some(1)
    });
    assert_published_exactly(&emu);
    let failed: Vec<Value> = of(&reports(&emu), LAUNCH)
        .into_iter()
        .filter(|r| r["action"] == "failed")
        .collect();
    assert_eq!(failed[0]["error_class"], "transient", "{}", failed[0]);
    let (histories, actions) = craftlb_testbed::action_histories(&emu);
    assert_eq!(
        histories,
        vec![serde_json::json!(["stand-in:CONTINUE"])],
        "{actions} {state}"
    );
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
    // The third waits for an address (a refresh frees them as old nodes go):
    // transient, retried, never a verdict.
    let failed: Vec<Value> = of(&reports(&emu), LAUNCH)
        .into_iter()
        .filter(|x| x["action"] == "failed")
        .collect();
    assert!(!failed.is_empty(), "{state}");
    assert!(
        failed.iter().all(|f| f["error"]
            .as_str()
            .is_some_and(|e| e.contains("no free address"))
            && f["error_class"] == "transient"),
        "{failed:?}"
    );
}

#[test]
fn eip_scale_in_frees_the_address_after_the_drain_and_a_new_node_gets_it() {
    let emu = Emulator::start();
    let pool = scenario(&emu, &["eips", "--pool", "mylb", "--count", "2"]);
    world(
        &emu,
        &[
            "--metadata",
            r#"{"ip_type": "eip", "eip_pool": "mylb", "drain_seconds": 30}"#,
            "--heartbeat",
            "4",
        ],
    );
    scale_and_wait(&emu, 2);
    let state = assert_eip_published(&emu);
    let leaving = state["instances"][1]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let address = state["instances"][1]["public_ip"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!address.is_empty(), "{state}");
    scenario(&emu, &["terminate", "--instance", &leaving]);
    // Draining (Terminating:Wait, no node here: the heartbeat timeout ends
    // it): unpublished at once, but it keeps its address the whole time.
    let draining = state_when(&emu, 20, |s| {
        s["records"].as_array().map(Vec::len) == Some(1)
    });
    let kept = draining["instances"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["id"] == leaving.as_str()).cloned())
        .unwrap_or_default();
    assert_eq!(
        (&kept["state"], &kept["public_ip"]),
        (
            &Value::from("Terminating:Wait"),
            &Value::from(address.clone())
        ),
        "the address stays with the draining node: {draining}"
    );
    // Gone (the hook's heartbeat timeout, as no node completes it here):
    // EC2 freed the address, and a new node gets it.
    state_when(&emu, 30, |s| {
        s["instances"]
            .as_array()
            .is_some_and(|a| a.iter().all(|i| i["id"] != leaving.as_str()))
    });
    scale_and_wait(&emu, 2);
    let state = assert_eip_published(&emu);
    assert!(
        strings(&state["records"], "ip").contains(&address),
        "the freed address was taken again: {state} (pool {pool})"
    );
}

/// Every InService instance published at its pool address, one record each.
fn assert_eip_published(emulator: &Emulator) -> Value {
    let state = state_when(emulator, 60, |s| {
        let up = s["instances"]
            .as_array()
            .map(|a| a.iter().filter(|i| i["state"] == "InService").count())
            .unwrap_or(0);
        s["records"].as_array().map(Vec::len) == Some(up)
    });
    let up: BTreeSet<String> = state["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|i| i["state"] == "InService")
                .filter_map(|i| i["public_ip"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(strings(&state["records"], "ip"), up, "{state}");
    state
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
fn instance_without_public_ip_is_not_published() {
    let emu = Emulator::start();
    world(&emu, &["--no-public-ip"]);
    scale_and_wait(&emu, 1);
    let state = scenario(&emu, &["state"]);
    assert_eq!(
        state["instances"][0]["public_ip"],
        Value::Null,
        "moto gave it a public IP: {state}"
    );
    let r = of(&reports(&emu), LAUNCH);
    assert_eq!(r.len(), 1, "one event, no retry: {r:?}");
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
    let term = of(&r, TERMINATING);
    let term = term
        .first()
        .unwrap_or_else(|| panic!("no terminate report: {r:?}"));
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
            serde_json::json!(["stand-in:CONTINUE"]),
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
        let r = of(&reports(&emu), LAUNCH);
        assert_eq!(r[0]["action"], "registered", "private zone {order}: {r:?}");
    }
}

/// The payload of the first Lambda run of the launch notification of `instance`.
fn launch_delivery_of(emulator: &Emulator, instance: &str) -> Value {
    settled(emulator)
        .into_iter()
        .find(|i| {
            let msg = i["payload"]["Records"][0]["Sns"]["Message"]
                .as_str()
                .and_then(|m| serde_json::from_str::<Value>(m).ok())
                .unwrap_or_default();
            msg["EC2InstanceId"] == instance && msg["Event"] == LAUNCH
        })
        .map(|i| i["payload"].clone())
        .unwrap_or_else(|| panic!("no launch delivery for {instance}"))
}

/// A failed record upsert deletes the health check it just made; Route 53
/// never lets that check's caller reference be used again. A redelivered
/// event and reconcile must still publish the instance, each with one check.
#[test]
fn registration_after_a_deleted_check_is_possible_again() {
    let emu = Emulator::start();
    world(&emu, &[]);
    // Every attempt fails (Lambda's own retries of the event too).
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
    let ids: Vec<String> = up["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(ids.len(), 2, "{up}");
    // Both launches failed on every delivery (1 + Lambda's 2 retries each).
    let deadline = Instant::now() + Duration::from_secs(180);
    while of(&reports(&emu), LAUNCH)
        .iter()
        .filter(|r| r["action"] == "failed")
        .count()
        < 6
    {
        assert!(Instant::now() < deadline, "{:?}", reports(&emu));
        std::thread::sleep(Duration::from_millis(500));
    }
    scenario(&emu, &["faults", "--rules", r#"{"rules": []}"#]);
    let state = scenario(&emu, &["state"]);
    assert_eq!(state["records"], serde_json::json!([]), "{state}");
    assert_eq!(
        state["health_checks"],
        serde_json::json!([]),
        "the failed launches removed their checks: {state}"
    );

    // Redelivery of the first instance's launch, twice (duplicates converge).
    let payload = launch_delivery_of(&emu, &ids[0]).to_string();
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
/// records and checks, and an instance still booting (Pending:Wait: its
/// node has not said it serves) is not published by reconcile either.
#[test]
fn reconcile_leaves_other_groups_and_booting_nodes_alone() {
    let emu = Emulator::start();
    world(&emu, &["--launch-heartbeat", "300"]);
    world(&emu, &["--group", "mylb-green", "--zone", ""]);
    scale_and_wait(&emu, 1);
    scenario(&emu, &["scale", "--group", "mylb-green", "--desired", "1"]);
    let out = scenario(
        &emu,
        &["wait", "--group", "mylb-green", "--in-service", "1"],
    );
    assert!(out.get("timeout").is_none(), "{out}");
    settled(&emu);
    state_when(&emu, 30, |s| {
        s["records"].as_array().map(Vec::len) == Some(2)
    });

    // Blue's second instance boots: its node has not said it serves.
    craftlb_testbed::control_post(
        &emu,
        "/_craftlb/autoscaling/stand-in",
        &serde_json::json!({"group": "mylb-asg", "result": null}),
    );
    scenario(&emu, &["scale", "--desired", "2"]);
    state_when(&emu, 30, |s| {
        s["instances"]
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i["state"] == "Pending:Wait"))
    });

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
        Some(2),
        "{after}"
    );
    assert_eq!(
        after["health_checks"].as_array().map(Vec::len),
        Some(2),
        "{after}"
    );
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

/// Calls per event from the emulator's request log, one event at a time:
/// as launch-lb.yml configures the hooks (record name and zone in the
/// metadata), and the worst case (name from the group's tag, zone looked
/// up). The handler's own count must agree with the log.
#[test]
fn calls_per_event_from_the_request_log() {
    for (meta, launch_calls, terminating_calls, gone_calls) in [
        (
            r#"{"record_name": "lb.example.com", "hosted_zone_id": "ZONE"}"#,
            vec![
                "DescribeAutoScalingInstances",
                "DescribeLifecycleHooks",
                "DescribeInstances",
                "CreateHealthCheck",
                "ChangeTagsForResource",
                "ChangeResourceRecordSets",
            ],
            vec![
                "ListResourceRecordSets",
                "ChangeResourceRecordSets",
                "DeleteHealthCheck",
                "CompleteLifecycleAction",
            ],
            vec!["DescribeLifecycleHooks", "ListResourceRecordSets"],
        ),
        (
            "",
            vec![
                "DescribeAutoScalingInstances",
                "DescribeLifecycleHooks",
                "DescribeAutoScalingGroups",
                "ListHostedZonesByName",
                "ListHostedZonesByName",
                "DescribeInstances",
                "CreateHealthCheck",
                "ChangeTagsForResource",
                "ChangeResourceRecordSets",
            ],
            vec![
                "DescribeAutoScalingGroups",
                "ListHostedZonesByName",
                "ListHostedZonesByName",
                "ListResourceRecordSets",
                "ChangeResourceRecordSets",
                "DeleteHealthCheck",
                "CompleteLifecycleAction",
            ],
            vec![
                "DescribeLifecycleHooks",
                "DescribeAutoScalingGroups",
                "ListHostedZonesByName",
                "ListHostedZonesByName",
                "ListResourceRecordSets",
            ],
        ),
    ] {
        let emu = Emulator::start();
        // The handler's own calls, one attempt each: Route 53's rate limit
        // (retried throttles would add attempts) is other tests' business.
        craftlb_testbed::control_put(
            &emu,
            "/_craftlb/settings",
            &serde_json::json!({"route53_requests_per_second": 0}),
        );
        let w = world(&emu, &[]);
        let meta = meta.replace("ZONE", w["zone_id"].as_str().unwrap_or_default());
        if !meta.is_empty() {
            for (hook, transition) in [
                ("mylb-asg-launching", "autoscaling:EC2_INSTANCE_LAUNCHING"),
                ("mylb-asg-terminating", TERMINATING),
            ] {
                scenario(
                    &emu,
                    &[
                        "hook",
                        "--name",
                        hook,
                        "--transition",
                        transition,
                        "--metadata",
                        &meta,
                    ],
                );
            }
        }
        craftlb_testbed::clear_request_log(&emu.url);
        scale_and_wait(&emu, 1);
        settled(&emu);
        assert_eq!(
            lambda_calls(&emu),
            launch_calls,
            "launch, metadata {meta:?}"
        );
        craftlb_testbed::clear_request_log(&emu.url);
        scale_and_wait(&emu, 0);
        let deadline = Instant::now() + Duration::from_secs(30);
        while of(&reports(&emu), TERMINATE).is_empty() {
            assert!(Instant::now() < deadline, "no termination notice");
            std::thread::sleep(Duration::from_millis(200));
        }
        settled(&emu);
        let mut seen = lambda_calls(&emu);
        seen.sort();
        let mut want: Vec<&str> = terminating_calls
            .iter()
            .chain(gone_calls.iter())
            .copied()
            .collect();
        want.sort();
        assert_eq!(seen, want, "scale-in (hook + gone), metadata {meta:?}");
        let r = reports(&emu);
        let count = |t: &str| of(&r, t).first().and_then(|x| x["aws_calls"].as_u64());
        assert_eq!(count(LAUNCH), Some(launch_calls.len() as u64), "{r:?}");
        assert_eq!(
            count(TERMINATING),
            Some(terminating_calls.len() as u64),
            "{r:?}"
        );
        assert_eq!(count(TERMINATE), Some(gone_calls.len() as u64), "{r:?}");
        assert!(
            launch_calls.len() <= 6 || meta.is_empty(),
            "over budget: {launch_calls:?}"
        );
    }
}
