/*!
The handler: one event in, Route 53 changed, one report out. Generic over
[`Aws`], so the decisions are tested with a fake and the wiring against the
emulator.

- An instance entered service (the group's `EC2_INSTANCE_LAUNCH`): its node
  completed its own launching action because it serves, so it is published:
  health check on what it serves, weighted record. Only an instance the
  group still has InService is published (a late or retried event of an
  instance that already leaves publishes nothing).
- A terminating hook's notification: its record and health check go at
  once (the node keeps serving for the TTL while it drains), and the action
  is completed unless the node drains and completes it itself.
- An instance is gone (`EC2_INSTANCE_TERMINATE`): whatever is still
  published of it goes (a termination that skipped the hook: ForceDelete, a
  hook timeout).
- A launching hook's notification: nothing; the launch is the node's to
  complete.
*/

use std::collections::BTreeMap;
use std::time::Instant;

use craftlb_core::error::{Error, ErrorKind};
use craftlb_core::healthcheck::Config;
use craftlb_core::lifecycle::{
    self, Addresses, FailureClass, HookMetadata, IpType, LifecycleResult, Permanent, Transition,
};
use serde::Serialize;

use crate::event::LifecycleMessage;

/// A weighted A record as craftlb publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub zone_id: String,
    pub name: String,
    pub set_identifier: String,
    pub ip: String,
    pub ttl: i64,
    pub weight: i64,
    pub health_check_id: Option<String>,
}

/// How CompleteLifecycleAction went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    Done,
    /// "No active Lifecycle Action": expired token, or completed before.
    NoActiveAction,
}

/// The AWS calls the handler needs, nothing more.
#[allow(async_fn_in_trait)]
pub trait Aws {
    /// The group's tags; `None` when the group no longer exists.
    async fn group_tags(&self, group: &str) -> Result<Option<BTreeMap<String, String>>, Error>;
    /// The instance's group and lifecycle state there ("InService",
    /// "Terminating:Wait", ...); `None` when no group has it (any more).
    async fn instance_lifecycle(
        &self,
        instance_id: &str,
    ) -> Result<Option<(String, String)>, Error>;
    /// The metadata of the group's hook for `transition`; `None` when the
    /// group has no such hook or it has no metadata.
    async fn hook_metadata(&self, group: &str, transition: &str) -> Result<Option<String>, Error>;
    /// The instance's addresses; `None` when it no longer exists.
    async fn instance_addresses(&self, instance_id: &str) -> Result<Option<Addresses>, Error>;
    /// The public hosted zone holding `record` (longest match).
    async fn find_zone(&self, record: &str) -> Result<Option<String>, Error>;
    /// Associates a free address of the pool with the instance, returns it.
    async fn associate_eip(&self, pool: &str, instance_id: &str) -> Result<String, Error>;
    /// CreateHealthCheck with this caller reference: returns the check
    /// created earlier with the same reference and settings, or fails with
    /// HealthCheckAlreadyExists for the reference of a deleted check.
    async fn create_health_check(&self, reference: &str, config: &Config) -> Result<String, Error>;
    async fn tag_health_check(
        &self,
        id: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), Error>;
    async fn delete_health_check(&self, id: &str) -> Result<bool, Error>;
    /// The record with this set identifier, found directly (no scan).
    async fn find_record(
        &self,
        zone_id: &str,
        name: &str,
        set_identifier: &str,
    ) -> Result<Option<Record>, Error>;
    async fn upsert_record(&self, record: &Record) -> Result<(), Error>;
    async fn delete_record(&self, record: &Record) -> Result<(), Error>;
    async fn complete(
        &self,
        msg: &LifecycleMessage,
        token: &str,
        result: LifecycleResult,
    ) -> Result<Completion, Error>;
    /// The group's members and its launching hook's metadata (reconcile).
    async fn group(&self, group: &str) -> Result<Option<Group>, Error>;
    /// Every A record named `name` in the zone (reconcile only: pages).
    async fn list_records(&self, zone_id: &str, name: &str) -> Result<Vec<Record>, Error>;
    /// The health checks published under `record` (found by their caller
    /// reference prefix, 1,000 per call) with their tags (reconcile only).
    async fn record_health_checks(&self, record: &str) -> Result<Vec<CheckInfo>, Error>;
    /// AWS calls made so far by this client (for the report).
    fn calls(&self) -> u64;
}

/// A health check the Lambda made, as reconcile sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckInfo {
    pub id: String,
    pub caller_reference: String,
    pub tags: BTreeMap<String, String>,
}

/// Tag keys on every health check the Lambda makes: what reconcile uses to
/// prove a check (and the record pointing at it) belongs to its group.
pub const TAG_GROUP: &str = "craftlb:group";
pub const TAG_INSTANCE: &str = "craftlb:instance-id";
pub const TAG_RECORD: &str = "craftlb:record";

/// An Auto Scaling group as reconcile needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub tags: BTreeMap<String, String>,
    /// (instance id, lifecycle state as AWS spells it, e.g. "InService").
    pub instances: Vec<(String, String)>,
    pub launch_metadata: Option<String>,
}

/// One JSON log line per event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub instance_id: String,
    pub group: String,
    pub transition: String,
    /// registered / deregistered / skipped / failed
    pub action: String,
    pub record: Option<String>,
    pub ip: Option<String>,
    pub health_check_id: Option<String>,
    /// CONTINUE / ABANDON, or none (left to the node or no token).
    pub lifecycle_result: Option<String>,
    pub completion: Option<String>,
    pub error: Option<String>,
    pub error_class: Option<String>,
    /// Why nothing was done, when nothing was.
    pub note: Option<String>,
    /// Ask Lambda to deliver the event again: something transient left
    /// work undone that a retry can finish.
    pub retry: bool,
    pub aws_calls: u64,
    pub latency_ms: u64,
}

pub(crate) enum Failure {
    Permanent(String),
    Aws(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Aws(e)
    }
}

impl From<Permanent> for Failure {
    fn from(p: Permanent) -> Failure {
        Failure::Permanent(p.0)
    }
}

impl Failure {
    pub(crate) fn class(&self) -> FailureClass {
        match self {
            Failure::Permanent(_) => FailureClass::Permanent,
            Failure::Aws(e) => e.kind().into(),
        }
    }
    pub(crate) fn message(&self) -> String {
        match self {
            Failure::Permanent(m) => m.clone(),
            Failure::Aws(e) => e.to_string(),
        }
    }
}

#[derive(Default)]
pub(crate) struct Progress {
    record: Option<String>,
    ip: Option<String>,
    health_check_id: Option<String>,
}

async fn record_target<A: Aws>(
    aws: &A,
    group: &str,
    meta: &HookMetadata,
) -> Result<(String, String), Failure> {
    let tags = match &meta.record_name {
        Some(_) => BTreeMap::new(),
        None => aws
            .group_tags(group)
            .await?
            .ok_or_else(|| Permanent(format!("group '{group}' does not exist")))?,
    };
    zone_for(aws, meta, &tags).await
}

/// The record name and its hosted zone, from metadata or the group's tags.
pub(crate) async fn zone_for<A: Aws>(
    aws: &A,
    meta: &HookMetadata,
    tags: &BTreeMap<String, String>,
) -> Result<(String, String), Failure> {
    let name = lifecycle::record_name(meta, tags)?;
    let zone = match &meta.hosted_zone_id {
        Some(z) => z.clone(),
        None => aws
            .find_zone(&name)
            .await?
            .ok_or_else(|| Permanent(format!("no public hosted zone holds '{name}'")))?,
    };
    Ok((name, zone))
}

async fn register<A: Aws>(
    aws: &A,
    group: &str,
    instance: &str,
    meta: &HookMetadata,
    p: &mut Progress,
) -> Result<(), Failure> {
    let (name, zone) = record_target(aws, group, meta).await?;
    register_at(aws, instance, group, meta, &name, &zone, p).await
}

/// Publishes one instance under `name` in `zone`: address, health check,
/// weighted record.
pub(crate) async fn register_at<A: Aws>(
    aws: &A,
    instance: &str,
    group: &str,
    meta: &HookMetadata,
    name: &str,
    zone: &str,
    p: &mut Progress,
) -> Result<(), Failure> {
    p.record = Some(name.to_owned());
    // The group has the instance: EC2 not knowing it, or calling it
    // pending, is EC2 lagging behind (eventual consistency), worth the
    // event again, not a verdict.
    let lagging = |why: String| {
        Failure::Aws(Error::new(
            ErrorKind::Transient,
            format!("read the addresses of '{instance}'"),
            why,
        ))
    };
    let addrs = aws
        .instance_addresses(instance)
        .await?
        .ok_or_else(|| lagging("EC2 does not know the instance yet".into()))?;
    lifecycle::check_alive(instance, &addrs)?;
    if addrs.state.as_deref() == Some("pending") {
        return Err(lagging("the instance is still pending".into()));
    }
    let ip = match (meta.ip_type, &meta.eip_pool) {
        (IpType::Eip, Some(pool)) => aws.associate_eip(pool, instance).await?,
        _ => lifecycle::select_ip(meta.ip_type, &addrs)?,
    };
    p.ip = Some(ip.clone());
    let health_check_id = if meta.health_check.enabled {
        let config = lifecycle::health_check_config(&ip, &meta.health_check);
        Some(ensure_health_check(aws, instance, group, name, &config).await?)
    } else {
        None
    };
    p.health_check_id = health_check_id.clone();
    let upserted = aws
        .upsert_record(&Record {
            zone_id: zone.to_owned(),
            name: name.to_owned(),
            set_identifier: instance.to_owned(),
            ip,
            ttl: meta.ttl,
            weight: meta.weight,
            health_check_id: health_check_id.clone(),
        })
        .await;
    if let (Err(_), Some(hc)) = (&upserted, &health_check_id) {
        // No record will point at this check (the launch is about to be
        // abandoned or left unpublished): don't leak it. Best effort; the
        // original error is what gets reported.
        let _ = aws.delete_health_check(hc).await;
    }
    upserted?;
    Ok(())
}

/// The instance's health check: created with the first caller reference of
/// its sequence that Route 53 still accepts (see
/// [`lifecycle::health_check_reference`]), then tagged.
async fn ensure_health_check<A: Aws>(
    aws: &A,
    instance: &str,
    group: &str,
    name: &str,
    config: &Config,
) -> Result<String, Failure> {
    let mut id = None;
    for generation in 0..=lifecycle::MAX_REFERENCE_GENERATIONS {
        let reference = lifecycle::health_check_reference(instance, name, config, generation);
        match aws.create_health_check(&reference, config).await {
            Ok(created) => {
                id = Some(created);
                break;
            }
            // Spent by a deleted check (or, in theory, taken by other
            // settings): the next generation.
            Err(e) if e.code() == Some("HealthCheckAlreadyExists") => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let id = id.ok_or_else(|| {
        Permanent(format!(
            "every health-check caller reference of '{instance}' under {name} was used by a deleted check \
             ({} deletions); publish it with a new instance",
            lifecycle::MAX_REFERENCE_GENERATIONS + 1
        ))
    })?;
    let tags: BTreeMap<String, String> = [
        (
            "Name".to_owned(),
            format!("{} {instance}", name.trim_end_matches('.')),
        ),
        (TAG_INSTANCE.to_owned(), instance.to_owned()),
        (TAG_GROUP.to_owned(), group.to_owned()),
        (TAG_RECORD.to_owned(), name.to_owned()),
    ]
    .into();
    aws.tag_health_check(&id, &tags).await?;
    Ok(id)
}

/// Removes what is published of the instance: its record, then its check.
/// Its Elastic IP stays with it: the node keeps serving on it while it
/// drains, and EC2 disassociates it when the instance terminates (the pool
/// finds it free then).
async fn deregister<A: Aws>(
    aws: &A,
    group: &str,
    instance: &str,
    meta: &HookMetadata,
    p: &mut Progress,
) -> Result<(), Failure> {
    let (name, zone) = record_target(aws, group, meta).await?;
    p.record = Some(name.clone());
    if let Some(rec) = aws.find_record(&zone, &name, instance).await? {
        p.ip = Some(rec.ip.clone());
        // Record first: a health check still referenced by a record cannot
        // be deleted, and a record without its check must not stay.
        aws.delete_record(&rec).await?;
        if let Some(hc) = &rec.health_check_id {
            p.health_check_id = Some(hc.clone());
            aws.delete_health_check(hc).await?;
        }
    }
    Ok(())
}

fn new_report(group: &str, instance: &str, transition: &str) -> Report {
    Report {
        instance_id: instance.to_owned(),
        group: group.to_owned(),
        transition: transition.to_owned(),
        action: "skipped".into(),
        record: None,
        ip: None,
        health_check_id: None,
        lifecycle_result: None,
        completion: None,
        error: None,
        error_class: None,
        note: None,
        retry: false,
        aws_calls: 0,
        latency_ms: 0,
    }
}

/// Fills the report from how the work went: a transient failure asks for
/// the event again (every step is idempotent), a permanent one is logged.
fn outcome_into(report: &mut Report, p: Progress, outcome: Result<(), Failure>, done: &str) {
    report.record = p.record;
    report.ip = p.ip;
    report.health_check_id = p.health_check_id;
    match outcome {
        Ok(()) => report.action = done.into(),
        Err(f) => {
            report.action = "failed".into();
            report.error = Some(f.message());
            let transient = f.class() == FailureClass::Transient;
            report.error_class = Some(if transient { "transient" } else { "permanent" }.into());
            report.retry |= transient;
        }
    }
}

/// The group's launching hook metadata, parsed.
async fn launch_metadata<A: Aws>(aws: &A, group: &str) -> Result<HookMetadata, Failure> {
    let raw = aws.hook_metadata(group, lifecycle::LAUNCHING).await?;
    Ok(HookMetadata::parse(raw.as_deref())?)
}

/// An instance entered service: publish it, if the group still has it
/// InService (the truth about a retried or late event; EC2 says `running`
/// for an instance that already drains).
pub async fn handle_launched<A: Aws>(aws: &A, group: &str, instance: &str) -> Report {
    let started = Instant::now();
    let calls_before = aws.calls();
    let mut report = new_report(group, instance, crate::event::INSTANCE_LAUNCH);
    let mut progress = Progress::default();
    let outcome = async {
        match aws.instance_lifecycle(instance).await? {
            Some((_, state)) if state == "InService" => {}
            Some((_, state)) => return Ok(Some(format!("instance is {state}: not publishing it"))),
            None => {
                return Ok(Some(
                    "no group has the instance any more: not publishing it".to_owned(),
                ));
            }
        }
        let meta = launch_metadata(aws, group).await?;
        register(aws, group, instance, &meta, &mut progress).await?;
        Ok::<_, Failure>(None)
    }
    .await;
    match outcome {
        Ok(Some(note)) => report.note = Some(note),
        Ok(None) => outcome_into(&mut report, progress, Ok(()), "registered"),
        Err(f) => outcome_into(&mut report, progress, Err(f), "registered"),
    }
    finish(report, aws, calls_before, started)
}

/// An instance is gone: whatever is still published of it goes.
pub async fn handle_terminated<A: Aws>(aws: &A, group: &str, instance: &str) -> Report {
    let started = Instant::now();
    let calls_before = aws.calls();
    let mut report = new_report(group, instance, crate::event::INSTANCE_TERMINATE);
    let mut progress = Progress::default();
    let outcome = match launch_metadata(aws, group).await {
        Ok(meta) => deregister(aws, group, instance, &meta, &mut progress).await,
        // The group went with it (deleted): destroy-lb.yml and reconcile
        // sweep what it published.
        Err(Failure::Aws(e))
            if e.kind() == ErrorKind::NotFound || e.code() == Some("ValidationError") =>
        {
            report.note = Some(format!("the group is gone ({e}): nothing to look up"));
            return finish(report, aws, calls_before, started);
        }
        Err(f) => Err(f),
    };
    outcome_into(&mut report, progress, outcome, "deregistered");
    finish(report, aws, calls_before, started)
}

/// Handles one lifecycle hook notification. Never fails: every outcome,
/// including AWS errors, ends in the report (and the failure policy).
pub async fn handle_lifecycle<A: Aws>(aws: &A, msg: &LifecycleMessage) -> Report {
    let started = Instant::now();
    let calls_before = aws.calls();
    let group = &msg.auto_scaling_group_name;
    let instance = &msg.ec2_instance_id;
    let mut report = new_report(group, instance, &msg.lifecycle_transition);
    let Some(transition) = Transition::parse(&msg.lifecycle_transition) else {
        report.error = Some(format!(
            "unknown lifecycle transition '{}'",
            msg.lifecycle_transition
        ));
        report.error_class = Some("permanent".into());
        return finish(report, aws, calls_before, started);
    };
    if transition == Transition::Launching {
        report.note = Some(
            "a launch is completed by the node once it serves; it is published when the group \
             reports it in service (EC2_INSTANCE_LAUNCH)"
                .into(),
        );
        return finish(report, aws, calls_before, started);
    }
    let mut progress = Progress::default();
    let (meta, outcome) = match HookMetadata::parse(msg.notification_metadata.as_deref()) {
        Err(p) => (HookMetadata::default(), Err(Failure::from(p))),
        Ok(meta) => {
            let outcome = deregister(aws, group, instance, &meta, &mut progress).await;
            (meta, outcome)
        }
    };
    outcome_into(&mut report, progress, outcome, "deregistered");
    let result = lifecycle::lifecycle_result(transition, &meta);
    report.lifecycle_result = result.map(|r| r.as_str().to_owned());
    if let (Some(result), Some(token)) = (result, msg.lifecycle_action_token.as_deref()) {
        report.completion = Some(match aws.complete(msg, token, result).await {
            Ok(Completion::Done) => "completed".into(),
            Ok(Completion::NoActiveAction) => {
                "no active lifecycle action (expired or already completed)".into()
            }
            Err(e) => {
                // Not completed: the hook would time out into its default
                // result. Try again.
                report.retry |= e.kind().is_transient();
                if report.error.is_none() {
                    report.error = Some(e.to_string());
                    report.error_class = Some(
                        if e.kind().is_transient() {
                            "transient"
                        } else {
                            "permanent"
                        }
                        .into(),
                    );
                }
                "failed".into()
            }
        });
    }
    finish(report, aws, calls_before, started)
}

fn finish<A: Aws>(mut report: Report, aws: &A, calls_before: u64, started: Instant) -> Report {
    report.aws_calls = aws.calls().saturating_sub(calls_before);
    report.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use craftlb_core::error::ErrorKind;
    use std::cell::{Cell, RefCell};

    /// In-memory AWS with failure injection per operation.
    #[derive(Default)]
    struct Fake {
        tags: BTreeMap<String, BTreeMap<String, String>>,
        instances: BTreeMap<String, Addresses>,
        zones: Vec<(String, String)>,
        records: RefCell<BTreeMap<(String, String), Record>>,
        checks: RefCell<BTreeMap<String, (String, Config)>>,
        deleted_checks: RefCell<Vec<String>>,
        deleted_refs: RefCell<std::collections::BTreeSet<String>>,
        check_tags: RefCell<BTreeMap<String, BTreeMap<String, String>>>,
        completed: RefCell<Vec<(String, LifecycleResult)>>,
        /// instance -> (group, lifecycle state)
        lifecycle: RefCell<BTreeMap<String, (String, String)>>,
        /// The launching hook's metadata.
        launch_meta: RefCell<Option<String>>,
        fail: RefCell<BTreeMap<&'static str, ErrorKind>>,
        no_active_action: Cell<bool>,
        calls: Cell<u64>,
    }

    impl Fake {
        fn new() -> Fake {
            let mut f = Fake::default();
            f.tags.insert(
                "mylb-asg".into(),
                [("domain".to_owned(), "lb.example.com".to_owned())].into(),
            );
            f.instances.insert(
                "i-1".into(),
                Addresses {
                    public_ip: Some("203.0.113.1".into()),
                    private_ip: Some("10.0.0.1".into()),
                    state: Some("running".into()),
                },
            );
            f.zones.push(("example.com.".into(), "Z1".into()));
            f.lifecycle.borrow_mut().insert(
                "i-1".into(),
                ("mylb-asg".to_owned(), "InService".to_owned()),
            );
            f
        }
        fn op(&self, name: &'static str) -> Result<(), Error> {
            self.calls.set(self.calls.get() + 1);
            match self.fail.borrow().get(name) {
                Some(kind) => Err(Error::new(*kind, format!("call {name}"), "injected")),
                None => Ok(()),
            }
        }
    }

    impl Aws for Fake {
        async fn group_tags(&self, group: &str) -> Result<Option<BTreeMap<String, String>>, Error> {
            self.op("group_tags")?;
            Ok(self.tags.get(group).cloned())
        }
        async fn instance_lifecycle(&self, id: &str) -> Result<Option<(String, String)>, Error> {
            self.op("instance_lifecycle")?;
            Ok(self.lifecycle.borrow().get(id).cloned())
        }
        async fn hook_metadata(
            &self,
            group: &str,
            transition: &str,
        ) -> Result<Option<String>, Error> {
            self.op("hook_metadata")?;
            if !self.tags.contains_key(group) {
                return Err(
                    Error::new(ErrorKind::Rejected, "read hooks", "no such group")
                        .with_code("ValidationError"),
                );
            }
            assert_eq!(transition, lifecycle::LAUNCHING);
            Ok(self.launch_meta.borrow().clone())
        }
        async fn instance_addresses(&self, id: &str) -> Result<Option<Addresses>, Error> {
            self.op("instance_addresses")?;
            Ok(self.instances.get(id).cloned())
        }
        async fn find_zone(&self, record: &str) -> Result<Option<String>, Error> {
            for cand in lifecycle::zone_candidates(record) {
                self.op("find_zone")?;
                if let Some((_, id)) = self.zones.iter().find(|(n, _)| *n == cand) {
                    return Ok(Some(id.clone()));
                }
            }
            Ok(None)
        }
        async fn associate_eip(&self, _pool: &str, _id: &str) -> Result<String, Error> {
            self.op("associate_eip")?;
            Ok("198.51.100.200".into())
        }
        async fn create_health_check(
            &self,
            reference: &str,
            config: &Config,
        ) -> Result<String, Error> {
            self.op("create_health_check")?;
            if self.deleted_refs.borrow().contains(reference) {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    "create health check",
                    "HealthCheckAlreadyExists (fake)",
                )
                .with_code("HealthCheckAlreadyExists"));
            }
            let id = format!("hc-{reference}");
            self.checks
                .borrow_mut()
                .insert(id.clone(), (reference.to_owned(), config.clone()));
            Ok(id)
        }
        async fn tag_health_check(
            &self,
            id: &str,
            tags: &BTreeMap<String, String>,
        ) -> Result<(), Error> {
            self.op("tag_health_check")?;
            self.check_tags
                .borrow_mut()
                .insert(id.to_owned(), tags.clone());
            Ok(())
        }
        async fn delete_health_check(&self, id: &str) -> Result<bool, Error> {
            self.op("delete_health_check")?;
            self.deleted_checks.borrow_mut().push(id.to_owned());
            let removed = self.checks.borrow_mut().remove(id);
            if let Some((reference, _)) = &removed {
                self.deleted_refs.borrow_mut().insert(reference.clone());
            }
            Ok(removed.is_some())
        }
        async fn find_record(
            &self,
            _zone: &str,
            name: &str,
            set_id: &str,
        ) -> Result<Option<Record>, Error> {
            self.op("find_record")?;
            Ok(self
                .records
                .borrow()
                .get(&(name.to_owned(), set_id.to_owned()))
                .cloned())
        }
        async fn upsert_record(&self, r: &Record) -> Result<(), Error> {
            self.op("upsert_record")?;
            self.records
                .borrow_mut()
                .insert((r.name.clone(), r.set_identifier.clone()), r.clone());
            Ok(())
        }
        async fn delete_record(&self, r: &Record) -> Result<(), Error> {
            self.op("delete_record")?;
            self.records
                .borrow_mut()
                .remove(&(r.name.clone(), r.set_identifier.clone()));
            Ok(())
        }
        async fn complete(
            &self,
            msg: &LifecycleMessage,
            _token: &str,
            result: LifecycleResult,
        ) -> Result<Completion, Error> {
            self.op("complete")?;
            if self.no_active_action.get() {
                return Ok(Completion::NoActiveAction);
            }
            self.completed
                .borrow_mut()
                .push((msg.ec2_instance_id.clone(), result));
            Ok(Completion::Done)
        }
        async fn group(&self, group: &str) -> Result<Option<Group>, Error> {
            self.op("group")?;
            Ok(self.tags.get(group).map(|tags| Group {
                tags: tags.clone(),
                instances: self
                    .instances
                    .keys()
                    .map(|i| (i.clone(), "InService".to_owned()))
                    .collect(),
                launch_metadata: None,
            }))
        }
        async fn list_records(&self, _zone: &str, name: &str) -> Result<Vec<Record>, Error> {
            self.op("list_records")?;
            Ok(self
                .records
                .borrow()
                .values()
                .filter(|r| r.name == name)
                .cloned()
                .collect())
        }
        async fn record_health_checks(&self, record: &str) -> Result<Vec<CheckInfo>, Error> {
            self.op("record_health_checks")?;
            let prefix = lifecycle::record_reference_prefix(record);
            Ok(self
                .checks
                .borrow()
                .iter()
                .filter(|(_, (r, _))| r.starts_with(&prefix))
                .map(|(id, (r, _))| CheckInfo {
                    id: id.clone(),
                    caller_reference: r.clone(),
                    tags: self
                        .check_tags
                        .borrow()
                        .get(id)
                        .cloned()
                        .unwrap_or_default(),
                })
                .collect())
        }
        fn calls(&self) -> u64 {
            self.calls.get()
        }
    }

    fn msg(transition: &str, meta: Option<&str>) -> LifecycleMessage {
        LifecycleMessage {
            auto_scaling_group_name: "mylb-asg".into(),
            lifecycle_hook_name: "hook".into(),
            ec2_instance_id: "i-1".into(),
            lifecycle_transition: transition.into(),
            lifecycle_action_token: Some("token".into()),
            notification_metadata: meta.map(str::to_owned),
            account_id: None,
            request_id: None,
            time: None,
            origin: None,
            destination: None,
        }
    }

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
            .block_on(f)
    }

    fn run<A: Aws>(aws: &A, m: &LifecycleMessage) -> Report {
        block(handle_lifecycle(aws, m))
    }

    /// The group reports i-1 in service, its launching hook with `meta`.
    fn launch(aws: &Fake, meta: Option<&str>) -> Report {
        *aws.launch_meta.borrow_mut() = meta.map(str::to_owned);
        block(handle_launched(aws, "mylb-asg", "i-1"))
    }

    #[test]
    fn an_instance_in_service_is_published_and_nothing_completed() {
        let aws = Fake::new();
        let r = launch(&aws, None);
        assert_eq!(r.action, "registered", "{r:?}");
        assert_eq!((r.lifecycle_result.as_deref(), r.retry), (None, false));
        let records = aws.records.borrow();
        let rec = records.get(&("lb.example.com.".to_owned(), "i-1".to_owned()));
        let rec = rec.unwrap_or_else(|| panic!("no record: {records:?}"));
        assert_eq!(
            (rec.ip.as_str(), rec.ttl, rec.weight, rec.zone_id.as_str()),
            ("203.0.113.1", 60, 1, "Z1")
        );
        // Checked on what the node serves: its health endpoint.
        let checks = aws.checks.borrow();
        let (_, config) = checks.values().next().cloned().unwrap_or_default();
        assert_eq!(
            (
                config.kind.as_str(),
                config.port,
                config.resource_path.as_deref()
            ),
            ("HTTP", Some(80), Some("/craftlb-health"))
        );
        assert!(
            aws.completed.borrow().is_empty(),
            "the node completes its launch"
        );
    }

    #[test]
    fn a_launching_hook_notification_is_left_to_the_node() {
        let aws = Fake::new();
        let r = run(&aws, &msg(lifecycle::LAUNCHING, None));
        assert_eq!((r.action.as_str(), r.aws_calls), ("skipped", 0), "{r:?}");
        assert!(
            r.note
                .as_deref()
                .is_some_and(|n| n.contains("completed by the node")),
            "{r:?}"
        );
        assert!(aws.records.borrow().is_empty() && aws.completed.borrow().is_empty());
    }

    #[test]
    fn only_what_the_group_has_in_service_is_published() {
        // A retried or late event: the instance already leaves. EC2 still
        // says running; the group's lifecycle state is the truth.
        for (state, note) in [
            (Some("Terminating:Wait"), "instance is Terminating:Wait"),
            (Some("Pending:Wait"), "instance is Pending:Wait"),
            (None, "no group has the instance"),
        ] {
            let aws = Fake::new();
            match state {
                Some(st) => {
                    aws.lifecycle
                        .borrow_mut()
                        .insert("i-1".into(), ("mylb-asg".into(), st.into()));
                }
                None => {
                    aws.lifecycle.borrow_mut().clear();
                }
            }
            let r = launch(&aws, None);
            assert_eq!(r.action, "skipped", "{r:?}");
            assert!(r.note.as_deref().is_some_and(|n| n.contains(note)), "{r:?}");
            assert_eq!(r.aws_calls, 1, "{r:?}");
            assert!(aws.records.borrow().is_empty() && aws.checks.borrow().is_empty());
        }
    }

    #[test]
    fn ec2_lagging_behind_the_group_is_retried_not_a_verdict() {
        let mut aws = Fake::new();
        aws.instances.clear();
        let r = launch(&aws, None);
        assert_eq!(
            (r.action.as_str(), r.error_class.as_deref(), r.retry),
            ("failed", Some("transient"), true),
            "{r:?}"
        );
        let mut aws = Fake::new();
        if let Some(a) = aws.instances.get_mut("i-1") {
            a.state = Some("pending".into());
            a.public_ip = None;
        }
        let r = launch(&aws, None);
        assert!(
            r.retry && r.error.as_deref().is_some_and(|e| e.contains("pending")),
            "{r:?}"
        );
        assert!(aws.records.borrow().is_empty());
    }

    #[test]
    fn duplicate_launch_converges_to_one_record_and_check() {
        let aws = Fake::new();
        launch(&aws, None);
        launch(&aws, None);
        assert_eq!(aws.records.borrow().len(), 1);
        assert_eq!(aws.checks.borrow().len(), 1);
    }

    #[test]
    fn a_deleted_check_does_not_block_registration_again() {
        let aws = Fake::new();
        aws.fail
            .borrow_mut()
            .insert("upsert_record", ErrorKind::Transient);
        let r = launch(&aws, None);
        assert_eq!((r.action.as_str(), r.retry), ("failed", true), "{r:?}");
        assert!(aws.checks.borrow().is_empty(), "the check was removed");
        assert_eq!(aws.deleted_refs.borrow().len(), 1);
        aws.fail.borrow_mut().clear();
        // Redelivered twice: one check, on the next caller reference.
        for _ in 0..2 {
            let r = launch(&aws, None);
            assert_eq!(r.action, "registered", "{r:?}");
        }
        let checks = aws.checks.borrow();
        assert_eq!(checks.len(), 1, "{checks:?}");
        let (reference, _) = checks.values().next().cloned().unwrap_or_default();
        assert!(reference.ends_with("-1"), "{reference}");
        let tags = aws.check_tags.borrow();
        let tags = tags.values().next().cloned().unwrap_or_default();
        assert_eq!(tags.get(TAG_GROUP).map(String::as_str), Some("mylb-asg"));
        assert_eq!(
            tags.get(TAG_RECORD).map(String::as_str),
            Some("lb.example.com.")
        );
    }

    #[test]
    fn terminate_removes_record_then_check_and_continues() {
        let aws = Fake::new();
        launch(&aws, None);
        let r = run(&aws, &msg(lifecycle::TERMINATING, None));
        assert_eq!(r.action, "deregistered", "{r:?}");
        assert!(aws.records.borrow().is_empty());
        assert!(aws.checks.borrow().is_empty());
        // Again (duplicate delivery): nothing left to delete, still CONTINUE.
        let r = run(&aws, &msg(lifecycle::TERMINATING, None));
        assert_eq!(
            (r.action.as_str(), r.lifecycle_result.as_deref()),
            ("deregistered", Some("CONTINUE"))
        );
        assert_eq!(aws.deleted_checks.borrow().len(), 1);
    }

    #[test]
    fn metadata_names_record_and_zone_without_lookups() {
        let aws = Fake::new();
        let meta = r#"{"record_name": "edge.example.net", "hosted_zone_id": "Z9", "ttl": 30, "weight": 5}"#;
        let r = launch(&aws, Some(meta));
        assert_eq!(r.record.as_deref(), Some("edge.example.net."));
        let records = aws.records.borrow();
        let rec = records
            .values()
            .next()
            .unwrap_or_else(|| panic!("no record"));
        assert_eq!((rec.zone_id.as_str(), rec.ttl, rec.weight), ("Z9", 30, 5));
        // lifecycle state + hooks + instance + create check + tag check +
        // record: the 6 calls per transition of the design's budget.
        assert_eq!(r.aws_calls, 6, "{r:?}");
    }

    #[test]
    fn permanent_problems_are_logged_and_not_retried() {
        // No domain tag, no record name.
        let mut aws = Fake::new();
        aws.tags.insert("mylb-asg".into(), BTreeMap::new());
        let r = launch(&aws, None);
        assert_eq!((r.action.as_str(), r.retry), ("failed", false));
        assert!(
            r.error
                .as_deref()
                .is_some_and(|e| e.contains("no record name")),
            "{r:?}"
        );
        // No hosted zone.
        let mut aws = Fake::new();
        aws.zones.clear();
        let r = launch(&aws, None);
        assert_eq!(
            (r.error_class.as_deref(), r.retry),
            (Some("permanent"), false)
        );
        // No public IP on a running instance.
        let mut aws = Fake::new();
        aws.instances.insert(
            "i-1".into(),
            Addresses {
                public_ip: None,
                private_ip: Some("10.0.0.1".into()),
                state: Some("running".into()),
            },
        );
        let r = launch(&aws, None);
        assert!(
            r.error
                .as_deref()
                .is_some_and(|e| e.contains("no public IP")),
            "{r:?}"
        );
        assert!(!r.retry);
        // Bad metadata.
        let r = launch(&Fake::new(), Some("{\"bogus\": 1}"));
        assert_eq!(
            (r.action.as_str(), r.error_class.as_deref()),
            ("failed", Some("permanent"))
        );
        assert!(r.completion.is_none());
    }

    #[test]
    fn transient_failures_ask_for_the_event_again() {
        let aws = Fake::new();
        aws.fail
            .borrow_mut()
            .insert("upsert_record", ErrorKind::Throttled);
        let r = launch(&aws, None);
        assert_eq!(
            (r.action.as_str(), r.error_class.as_deref(), r.retry),
            ("failed", Some("transient"), true)
        );
        assert!(
            aws.completed.borrow().is_empty(),
            "never ABANDONs a healthy node"
        );
        assert!(
            aws.checks.borrow().is_empty(),
            "no check left without its record"
        );
    }

    #[test]
    fn terminating_always_continues_and_drain_leaves_completion_to_the_node() {
        let aws = Fake::new();
        aws.fail
            .borrow_mut()
            .insert("find_record", ErrorKind::Transient);
        let r = run(&aws, &msg(lifecycle::TERMINATING, None));
        assert_eq!(r.lifecycle_result.as_deref(), Some("CONTINUE"));
        let aws = Fake::new();
        launch(&aws, None);
        let r = run(
            &aws,
            &msg(lifecycle::TERMINATING, Some(r#"{"drain_seconds": 30}"#)),
        );
        assert_eq!(
            (r.action.as_str(), r.lifecycle_result.as_deref()),
            ("deregistered", None)
        );
        assert!(aws.records.borrow().is_empty());
        assert!(
            aws.completed.borrow().is_empty(),
            "the node completes after its drain"
        );
    }

    #[test]
    fn a_terminated_instance_the_group_still_lists_is_not_published() {
        let mut aws = Fake::new();
        if let Some(a) = aws.instances.get_mut("i-1") {
            a.state = Some("terminated".into());
        }
        let r = launch(&aws, None);
        assert_eq!((r.action.as_str(), r.retry), ("failed", false));
        assert!(aws.records.borrow().is_empty());
        assert!(aws.checks.borrow().is_empty());
    }

    #[test]
    fn a_terminated_notification_removes_what_is_left() {
        let aws = Fake::new();
        launch(&aws, None);
        let r = block(handle_terminated(&aws, "mylb-asg", "i-1"));
        assert_eq!(r.action, "deregistered", "{r:?}");
        assert!(aws.records.borrow().is_empty() && aws.checks.borrow().is_empty());
        // Already gone: nothing to do, no error.
        let r = block(handle_terminated(&aws, "mylb-asg", "i-1"));
        assert_eq!(
            (r.action.as_str(), r.error.as_deref()),
            ("deregistered", None)
        );
        // The group itself is gone (force-deleted): noted, nothing looked up.
        let r = block(handle_terminated(&aws, "gone-asg", "i-1"));
        assert_eq!((r.action.as_str(), r.retry), ("skipped", false), "{r:?}");
        assert!(
            r.note
                .as_deref()
                .is_some_and(|n| n.contains("group is gone")),
            "{r:?}"
        );
    }

    #[test]
    fn reconcile_publishes_missing_and_removes_stale() {
        let aws = Fake::new();
        // A stale record of an instance that is gone, with its check.
        launch(&aws, None);
        let mut aws = aws;
        aws.instances
            .insert("i-gone".into(), aws.instances["i-1"].clone());
        aws.lifecycle
            .borrow_mut()
            .insert("i-gone".into(), ("mylb-asg".into(), "InService".into()));
        block(handle_launched(&aws, "mylb-asg", "i-gone"));
        aws.instances.remove("i-gone");
        aws.records.borrow_mut().retain(|(_, id), _| id != "i-1");
        let report = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
            .block_on(crate::reconcile::reconcile(&aws, "mylb-asg"));
        assert_eq!(report.registered, vec!["i-1".to_owned()], "{report:?}");
        assert_eq!(report.removed, vec!["i-gone".to_owned()]);
        let records = aws.records.borrow();
        assert_eq!(
            records
                .keys()
                .map(|(_, id)| id.as_str())
                .collect::<Vec<_>>(),
            ["i-1"]
        );
        assert_eq!(aws.checks.borrow().len(), 1);
    }

    #[test]
    fn transient_leftovers_ask_for_a_retry() {
        let aws = Fake::new();
        launch(&aws, None);
        aws.fail
            .borrow_mut()
            .insert("complete", ErrorKind::Throttled);
        let r = run(&aws, &msg(lifecycle::TERMINATING, None));
        assert!(r.retry, "{r:?}");
        let aws = Fake::new();
        launch(&aws, None);
        aws.fail
            .borrow_mut()
            .insert("delete_record", ErrorKind::Transient);
        let r = run(&aws, &msg(lifecycle::TERMINATING, None));
        assert!(
            r.retry && r.lifecycle_result.as_deref() == Some("CONTINUE"),
            "{r:?}"
        );
    }

    #[test]
    fn expired_token_is_reported_not_failed() {
        let aws = Fake::new();
        launch(&aws, None);
        aws.no_active_action.set(true);
        let r = run(&aws, &msg(lifecycle::TERMINATING, None));
        assert_eq!(r.action, "deregistered");
        assert!(
            r.completion
                .as_deref()
                .is_some_and(|c| c.starts_with("no active lifecycle action"))
        );
        assert_eq!(r.error, None);
    }

    #[test]
    fn an_eip_is_published_and_stays_with_its_instance_while_it_drains() {
        let aws = Fake::new();
        let meta = r#"{"ip_type": "eip", "eip_pool": "mylb", "drain_seconds": 30}"#;
        let r = launch(&aws, Some(meta));
        assert_eq!(r.ip.as_deref(), Some("198.51.100.200"));
        let r = run(&aws, &msg(lifecycle::TERMINATING, Some(meta)));
        assert_eq!(r.action, "deregistered", "{r:?}");
        assert!(aws.records.borrow().is_empty());
        // Nothing here can take the address away (the handler has no call
        // for it): the node still serves on it for the TTL, and EC2 frees
        // it when the instance terminates.
    }
}
