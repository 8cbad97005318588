/*!
`{"reconcile": "<group>"}`: the safety net for lost or failed events.

Unlike a lifecycle event (a constant number of calls), reconcile reads the
whole picture: the group's members, every record under the group's name,
and the health checks published under that name (by caller-reference
prefix, 1,000 per call) with their tags.

It touches only what it can prove is its group's: a record whose set
identifier is a member of the group, or whose health check is tagged with
the group (`craftlb:group`); a health check tagged with the group. A second
group publishing under the same name (blue/green) keeps its records, and a
record of an instance nobody can vouch for is reported, not deleted.

It never undoes a registration in flight: members that are not InService
and not on their way out (Pending:Wait while the launch is being
registered, Standby, warm pools) are left alone.
*/

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use craftlb_core::lifecycle::HookMetadata;
use serde::Serialize;

use crate::handler::{
    Aws, CheckInfo, Failure, Progress, Record, TAG_GROUP, TAG_INSTANCE, register_at, zone_for,
};

/// What a member's lifecycle state means for its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// InService: must be published.
    Serving,
    /// On its way in, parked or warm: whatever is published stays as it is.
    Hold,
    /// On its way out: its record goes.
    Gone,
}

fn class(state: &str) -> Class {
    match state {
        "InService" => Class::Serving,
        s if s.starts_with("Terminat") || s.starts_with("Detach") => Class::Gone,
        _ => Class::Hold,
    }
}

/// What reconcile decided, before doing it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub register: Vec<String>,
    /// Records to delete, each with its health check when that check is ours.
    pub remove: Vec<(Record, Option<String>)>,
    pub orphan_checks: Vec<String>,
    /// Records under the name that look like an instance's but that nothing
    /// proves are this group's: left alone, reported.
    pub unproven: Vec<String>,
}

/// The pure decision. `members`: (instance id, lifecycle state) of the
/// group; `records`: the A records under the group's name; `checks`: the
/// health checks published under that name, with their tags.
pub fn plan(
    group: &str,
    members: &[(String, String)],
    records: &[Record],
    checks: &[CheckInfo],
) -> Plan {
    let members: BTreeMap<&str, Class> = members
        .iter()
        .map(|(id, state)| (id.as_str(), class(state)))
        .collect();
    let owned: BTreeMap<&str, &CheckInfo> = checks
        .iter()
        .filter(|c| c.tags.get(TAG_GROUP).map(String::as_str) == Some(group))
        .map(|c| (c.id.as_str(), c))
        .collect();
    let owned_check = |r: &Record| {
        r.health_check_id
            .as_deref()
            .filter(|id| owned.contains_key(id))
            .map(str::to_owned)
    };
    let claimed_by_other = |r: &Record| {
        checks.iter().any(|c| {
            Some(c.id.as_str()) == r.health_check_id.as_deref()
                && c.tags.get(TAG_GROUP).is_some_and(|g| g != group)
        })
    };
    let mut out = Plan::default();
    let mut published = BTreeSet::new();
    for r in records {
        let id = r.set_identifier.as_str();
        published.insert(id);
        match members.get(id) {
            Some(Class::Serving | Class::Hold) => {}
            Some(Class::Gone) => out.remove.push((r.clone(), owned_check(r))),
            None if owned_check(r).is_some() => out.remove.push((r.clone(), owned_check(r))),
            // Its check names another group: that group's record.
            None if claimed_by_other(r) => {}
            None if id.starts_with("i-") => out.unproven.push(id.to_owned()),
            // A record someone added by hand (not an instance's): not ours.
            None => {}
        }
    }
    out.register = members
        .iter()
        .filter(|(id, c)| **c == Class::Serving && !published.contains(**id))
        .map(|(id, _)| (*id).to_owned())
        .collect();
    let referenced: BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r.health_check_id.as_deref())
        .collect();
    out.orphan_checks = owned
        .values()
        .filter(|c| !referenced.contains(c.id.as_str()))
        .filter(|c| {
            let instance = c
                .tags
                .get(TAG_INSTANCE)
                .map(String::as_str)
                .unwrap_or_default();
            match members.get(instance) {
                None | Some(Class::Gone) => true,
                // Its record points at another check: this one is stale.
                // Without a record, registration reuses this very check.
                Some(Class::Serving) => published.contains(instance),
                Some(Class::Hold) => false,
            }
        })
        .map(|c| c.id.clone())
        .collect();
    out
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub action: String,
    pub group: String,
    pub record: Option<String>,
    pub registered: Vec<String>,
    pub removed: Vec<String>,
    pub orphan_checks_deleted: Vec<String>,
    /// Instance records under the name this group cannot prove are its own.
    pub unproven: Vec<String>,
    pub errors: Vec<String>,
    pub aws_calls: u64,
    pub latency_ms: u64,
}

pub async fn reconcile<A: Aws>(aws: &A, group_name: &str) -> Report {
    let started = Instant::now();
    let calls_before = aws.calls();
    let mut report = Report {
        action: "reconciled".into(),
        group: group_name.to_owned(),
        ..Report::default()
    };
    if let Err(f) = run(aws, group_name, &mut report).await {
        report.action = "failed".into();
        report.errors.push(f.message());
    }
    report.aws_calls = aws.calls().saturating_sub(calls_before);
    report.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report
}

async fn run<A: Aws>(aws: &A, group_name: &str, report: &mut Report) -> Result<(), Failure> {
    let group = aws
        .group(group_name)
        .await?
        .ok_or_else(|| Failure::Permanent(format!("group '{group_name}' does not exist")))?;
    let meta = HookMetadata::parse(group.launch_metadata.as_deref())?;
    let (name, zone) = zone_for(aws, &meta, &group.tags).await?;
    report.record = Some(name.clone());
    let records = aws.list_records(&zone, &name).await?;
    let checks = aws.record_health_checks(&name).await?;
    let todo = plan(group_name, &group.instances, &records, &checks);
    report.unproven = todo.unproven.clone();
    for instance in &todo.register {
        let mut p = Progress::default();
        match register_at(aws, instance, group_name, &meta, &name, &zone, &mut p).await {
            Ok(()) => report.registered.push(instance.clone()),
            Err(f) => report.errors.push(format!("{instance}: {}", f.message())),
        }
    }
    for (rec, check) in &todo.remove {
        match aws.delete_record(rec).await {
            Ok(()) => report.removed.push(rec.set_identifier.clone()),
            Err(e) => {
                report.errors.push(e.to_string());
                continue;
            }
        }
        if let Some(hc) = check
            && let Err(e) = aws.delete_health_check(hc).await
        {
            report.errors.push(e.to_string());
        }
    }
    for hc in &todo.orphan_checks {
        match aws.delete_health_check(hc).await {
            Ok(_) => report.orphan_checks_deleted.push(hc.clone()),
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    if !report.errors.is_empty() {
        report.action = "partially reconciled".into();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, hc: Option<&str>) -> Record {
        Record {
            zone_id: "Z1".into(),
            name: "lb.example.com.".into(),
            set_identifier: id.into(),
            ip: "203.0.113.1".into(),
            ttl: 60,
            weight: 1,
            health_check_id: hc.map(str::to_owned),
        }
    }

    fn check(id: &str, group: &str, instance: &str) -> CheckInfo {
        CheckInfo {
            id: id.into(),
            caller_reference: format!("ref-{id}"),
            tags: [
                (TAG_GROUP.to_owned(), group.to_owned()),
                (TAG_INSTANCE.to_owned(), instance.to_owned()),
            ]
            .into(),
        }
    }

    fn members(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(i, s)| ((*i).to_owned(), (*s).to_owned()))
            .collect()
    }

    #[test]
    fn reconcile_plan_publishes_missing_and_removes_what_is_provably_ours() {
        let members = members(&[
            ("i-a", "InService"),
            ("i-b", "InService"),
            ("i-leaving", "Terminating:Wait"),
        ]);
        let records = vec![
            rec("i-a", Some("hc-a")),
            rec("i-gone", Some("hc-gone")),
            rec("i-leaving", Some("hc-leaving")),
            rec("manual", None),
        ];
        let checks = vec![
            check("hc-a", "blue", "i-a"),
            check("hc-gone", "blue", "i-gone"),
            check("hc-leaving", "blue", "i-leaving"),
            check("hc-leak", "blue", "i-old"),
        ];
        let p = plan("blue", &members, &records, &checks);
        assert_eq!(p.register, vec!["i-b".to_owned()]);
        assert_eq!(
            p.remove,
            vec![
                (rec("i-gone", Some("hc-gone")), Some("hc-gone".to_owned())),
                (
                    rec("i-leaving", Some("hc-leaving")),
                    Some("hc-leaving".to_owned())
                ),
            ]
        );
        assert_eq!(p.orphan_checks, vec!["hc-leak".to_owned()]);
        assert!(p.unproven.is_empty());
    }

    #[test]
    fn another_groups_records_and_checks_are_never_touched() {
        // Blue/green under one name: green's instance is not blue's member.
        let members = members(&[("i-blue", "InService")]);
        let records = vec![rec("i-blue", Some("hc-b")), rec("i-green", Some("hc-g"))];
        let checks = vec![
            check("hc-b", "blue", "i-blue"),
            check("hc-g", "green", "i-green"),
            check("hc-g-old", "green", "i-green-old"),
        ];
        let p = plan("blue", &members, &records, &checks);
        assert_eq!(p, Plan::default(), "{p:?}");
        // Without any proof (no check), an instance record is reported only.
        let p = plan("blue", &members, &[rec("i-x", None)], &[]);
        assert_eq!(p.unproven, vec!["i-x".to_owned()]);
        assert!(p.remove.is_empty());
    }

    #[test]
    fn a_registration_in_flight_is_left_alone() {
        let members = members(&[("i-new", "Pending:Wait"), ("i-parked", "Standby")]);
        let records = vec![rec("i-new", Some("hc-new"))];
        let checks = vec![
            check("hc-new", "blue", "i-new"),
            // Check made, record not yet upserted.
            check("hc-parked", "blue", "i-parked"),
        ];
        let p = plan("blue", &members, &records, &checks);
        assert_eq!(p, Plan::default(), "{p:?}");
    }

    #[test]
    fn stale_check_of_a_serving_instance_goes_unless_registration_reuses_it() {
        let members = members(&[("i-a", "InService"), ("i-b", "InService")]);
        let records = vec![rec("i-a", Some("hc-a2"))];
        let checks = vec![
            check("hc-a1", "blue", "i-a"),
            check("hc-a2", "blue", "i-a"),
            check("hc-b", "blue", "i-b"),
        ];
        let p = plan("blue", &members, &records, &checks);
        assert_eq!(p.orphan_checks, vec!["hc-a1".to_owned()]);
        assert_eq!(p.register, vec!["i-b".to_owned()]);
    }
}
