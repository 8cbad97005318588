/*!
`{"reconcile": "<group>"}`: the safety net for lost or failed events.

Unlike a lifecycle event (a constant number of calls), reconcile reads the
whole picture: the group's members, every record under the group's name,
and the account's health checks (by caller reference, 1,000 per call). It
publishes InService instances that lack a record, removes records of
instances that are gone, and deletes health checks the Lambda created for
instances that are neither in service nor referenced by a record.
*/

use std::collections::BTreeSet;
use std::time::Instant;

use craftlb_core::lifecycle::{self, HookMetadata, REF_PREFIX_LIFECYCLE};
use serde::Serialize;

use crate::handler::{Aws, Failure, Progress, Record, register_at, zone_for};

/// What reconcile decided, before doing it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub register: Vec<String>,
    pub remove: Vec<Record>,
    pub orphan_checks: Vec<String>,
}

/// The pure decision. `in_service`: instances that should be published;
/// `records`: the A records under the group's name; `checks`: (id, caller
/// reference) of health checks in the account.
pub fn plan(
    name: &str,
    in_service: &BTreeSet<String>,
    records: &[Record],
    checks: &[(String, String)],
) -> Plan {
    let published: BTreeSet<&str> = records.iter().map(|r| r.set_identifier.as_str()).collect();
    let register = in_service
        .iter()
        .filter(|i| !published.contains(i.as_str()))
        .cloned()
        .collect();
    // Only records the Lambda made (set identifier = an instance id).
    let remove: Vec<Record> = records
        .iter()
        .filter(|r| r.set_identifier.starts_with("i-") && !in_service.contains(&r.set_identifier))
        .cloned()
        .collect();
    // Checks a record points at are handled with their record.
    let referenced: BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r.health_check_id.as_deref())
        .collect();
    let orphan_checks = checks
        .iter()
        .filter(|(id, reference)| {
            instance_of(reference).is_some_and(|inst| {
                !in_service.contains(inst)
                    && lifecycle::health_check_reference(inst, name) == *reference
                    && !referenced.contains(id.as_str())
            })
        })
        .map(|(id, _)| id.clone())
        .collect();
    Plan {
        register,
        remove,
        orphan_checks,
    }
}

/// The instance id inside a lifecycle health check's caller reference.
fn instance_of(reference: &str) -> Option<&str> {
    reference
        .strip_prefix(REF_PREFIX_LIFECYCLE)
        .and_then(|rest| rest.rsplit_once('-'))
        .map(|(inst, _hash)| inst)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub action: String,
    pub group: String,
    pub record: Option<String>,
    pub registered: Vec<String>,
    pub removed: Vec<String>,
    pub orphan_checks_deleted: Vec<String>,
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
    let in_service: BTreeSet<String> = group
        .instances
        .iter()
        .filter(|(_, state)| state == "InService")
        .map(|(id, _)| id.clone())
        .collect();
    let records = aws.list_records(&zone, &name).await?;
    let checks = aws.lifecycle_health_checks().await?;
    let todo = plan(&name, &in_service, &records, &checks);
    for instance in &todo.register {
        let mut p = Progress::default();
        match register_at(aws, instance, group_name, &meta, &name, &zone, &mut p).await {
            Ok(()) => report.registered.push(instance.clone()),
            Err(f) => report.errors.push(format!("{instance}: {}", f.message())),
        }
    }
    for rec in &todo.remove {
        match aws.delete_record(rec).await {
            Ok(()) => report.removed.push(rec.set_identifier.clone()),
            Err(e) => report.errors.push(e.to_string()),
        }
        let Some(hc) = &rec.health_check_id else {
            continue;
        };
        if let Err(e) = aws.delete_health_check(hc).await {
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

    #[test]
    fn reconcile_plan() {
        let name = "lb.example.com.";
        let in_service: BTreeSet<String> = ["i-a".to_owned(), "i-b".to_owned()].into();
        let records = vec![
            rec("i-a", Some("hc-a")),
            rec("i-gone", Some("hc-gone")),
            rec("manual", None),
        ];
        let checks = vec![
            (
                "hc-a".to_owned(),
                lifecycle::health_check_reference("i-a", name),
            ),
            (
                "hc-gone".to_owned(),
                lifecycle::health_check_reference("i-gone", name),
            ),
            (
                "hc-leak".to_owned(),
                lifecycle::health_check_reference("i-old", name),
            ),
            (
                "hc-other-group".to_owned(),
                lifecycle::health_check_reference("i-x", "other.example.com"),
            ),
            ("hc-foreign".to_owned(), "some-other-tool".to_owned()),
        ];
        let p = plan(name, &in_service, &records, &checks);
        assert_eq!(p.register, vec!["i-b".to_owned()]);
        assert_eq!(p.remove, vec![rec("i-gone", Some("hc-gone"))]);
        // hc-gone goes with its record; hc-leak is an orphan; checks of
        // other names and other tools are never touched.
        assert_eq!(p.orphan_checks, vec!["hc-leak".to_owned()]);
    }

    #[test]
    fn instance_id_from_reference() {
        let r = lifecycle::health_check_reference("i-0123456789abcdef0", "lb.example.com");
        assert_eq!(instance_of(&r), Some("i-0123456789abcdef0"));
        assert_eq!(instance_of("craftlb-abc"), None);
    }
}
