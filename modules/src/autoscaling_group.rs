/*!
`autoscaling_group`: one Auto Scaling group, with the parameters and return
keys of `amazon.aws.autoscaling_group` for a launch-template group.

What it does that amazon.aws's does not (anchors: aws-cdk#16356,
ansible#37281, #35993, #29501, amazon.aws#2396):
- lifecycle hooks are given at creation (LifecycleHookSpecificationList),
  so the group's first instances are already held by them; on an existing
  group the same list is reconciled hook by hook (PutLifecycleHook only for
  a hook that differs, compared as `asg_lifecycle_hook` compares);
- the wait for instances counts InService instances and, when it times
  out, says which instances a hook still holds in Pending:Wait (the usual
  cause: nothing completes the launch action);
- a configuration change rolls through an instance refresh (launch before
  terminate by default: MinHealthyPercentage 100, MaxHealthyPercentage
  200), so old instances leave through the terminating hook once the group's
  replacements are in service; a refresh is also started when instances
  still run an older launch template version and none is in progress (a
  run that died between the update and the refresh converges);
- `state: absent` deletes with ForceDelete by default (instances and hooks
  go with the group) and waits until the group is gone.

Tags are compared with their PropagateAtLaunch flag.
*/

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::types::{
    AutoScalingGroup, DesiredConfiguration, InstanceRefresh, LaunchTemplateSpecification,
    LifecycleHook, LifecycleHookSpecification, RefreshPreferences, RefreshStrategy, Tag,
};
use craftlb_core::consistency;
use craftlb_core::error::{Error, sdk_error};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::asg_lifecycle_hook::{
    DEFAULT_RESULT, HEARTBEAT, Hook, HookArgs, METADATA, ROLE_ARN, TARGET, TRANSITION,
};
use crate::aws::{AWS, Connection, PURGE_TAGS};
use crate::driver::{Resource, drive};
use crate::protocol::{
    Ctx, Default, Failure, Module, Param, Params, Response, RunFuture, Spec, Type,
};

pub const NAME: &str = "autoscaling_group";

pub static MODULE: Module = Module {
    name: NAME,
    spec: &SPEC,
    doc: include_str!("../docs/autoscaling_group.yml"),
    run: |ctx| -> RunFuture { Box::pin(run(ctx)) },
};

static LAUNCH_TEMPLATE: Spec = Spec {
    params: &[
        Param::str("launch_template_name").doc(&["The template, by name."]),
        Param::str("launch_template_id").doc(&["The template, by id."]),
        Param::str("version").doc(&[
            "A version number, C($Default) or C($Latest). A number makes every new version an explicit \
             change of the group (and a refresh, with I(instance_refresh)); AWS uses C($Default) when not \
             given.",
        ]),
    ],
    required_one_of: &[&["launch_template_name", "launch_template_id"]],
    mutually_exclusive: &[&["launch_template_name", "launch_template_id"]],
    ..Spec::EMPTY
};

static HOOK: Spec = Spec {
    params: &[
        Param::str("lifecycle_hook_name")
            .required()
            .aliases(&["name"])
            .doc(&["The hook's name."]),
        TRANSITION.required(),
        ROLE_ARN,
        TARGET,
        METADATA,
        HEARTBEAT,
        DEFAULT_RESULT,
    ],
    ..Spec::EMPTY
};

static REFRESH: Spec = Spec {
    params: &[
        Param::int("min_healthy_percentage")
            .default(Default::Int(100))
            .doc(&["Capacity kept in service during the refresh, in percent of the desired capacity."]),
        Param::int("max_healthy_percentage")
            .default(Default::Int(200))
            .doc(&[
                "Capacity allowed above the desired one: 200 launches every replacement before an old \
                 instance is terminated.",
            ]),
        Param::int("instance_warmup").doc(&["Seconds a new instance needs before it counts as healthy."]),
        Param::bool("skip_matching")
            .default(Default::Bool(true))
            .doc(&["Leave instances that already run the group's launch template version alone."]),
        Param::bool("auto_rollback")
            .default(Default::Bool(false))
            .doc(&[
                "When the refresh fails (its new instances never become healthy: a launching hook \
                 ABANDONs them), AWS puts the previous launch template version back on the instances it \
                 replaced. Needs I(launch_template.version) as a number, as AWS refuses rollback for a \
                 group on C($Latest) or C($Default).",
            ]),
    ],
    ..Spec::EMPTY
};

pub static SPEC: Spec = Spec {
    params: &[
        Param::str("name").required().doc(&["The group's name."]),
        Param::str("state")
            .choices(&["present", "absent"])
            .default(Default::Str("present"))
            .doc(&["Whether the group should exist."]),
        Param::dict_of("launch_template", &LAUNCH_TEMPLATE)
            .doc(&["The launch template the group launches from. Required to create the group."]),
        Param::int("min_size").doc(&["Minimum number of instances. Required to create the group."]),
        Param::int("max_size").doc(&["Maximum number of instances. Required to create the group."]),
        Param::int("desired_capacity").doc(&[
            "Instances the group should run. Not given: I(min_size) at creation, left alone later.",
        ]),
        Param::list("vpc_zone_identifier", Type::Str)
            .aliases(&["subnets"])
            .doc(&["The subnets (ids) the group launches into, compared as a set."]),
        Param::list("availability_zones", Type::Str)
            .doc(&["Availability zones, for a group without subnets."]),
        Param::str("health_check_type")
            .choices(&["EC2", "ELB"])
            .doc(&["How instance health is decided. AWS uses C(EC2) when not given at creation."]),
        Param::int("health_check_period")
            .aliases(&["health_check_grace_period"])
            .doc(&["Seconds after launch before health checks count."]),
        Param::int("default_cooldown").doc(&["Seconds between scaling activities."]),
        Param::list("termination_policies", Type::Str)
            .doc(&["Which instances go first on scale-in (C(OldestLaunchTemplate), C(Default), …)."]),
        Param::new("tags", Type::Raw).doc(&[
            "Tags: a dict (each propagated to instances), or amazon.aws's list of dicts, each with one or \
             more C(key: value) pairs and an optional C(propagate_at_launch) (default true). Not given, the \
             group's tags are left as they are.",
        ]),
        PURGE_TAGS,
        Param::list_of("lifecycle_hooks", &HOOK).doc(&[
            "Lifecycle hooks, given at creation so the first instances are already held by them. On an \
             existing group each is created or updated as C(asg_lifecycle_hook) would; hooks not listed are \
             left alone.",
        ]),
        Param::str("notification_topic").doc(&[
            "The SNS topic the group notifies of its instances' launches and terminations \
             (PutNotificationConfiguration). Not given, the group's notifications are left as they are.",
        ]),
        Param::list("notification_types", Type::Str)
            .default(Default::List(NOTIFICATION_TYPES))
            .doc(&[
                "What the group notifies I(notification_topic) of; compared as a set, replaced whole.",
            ]),
        Param::dict_of("instance_refresh", &REFRESH).doc(&[
            "Roll the instances with an instance refresh when the launch template (or its version) \
             changes, or when instances still run another version and no refresh is in progress. Not \
             given, a change applies to new instances only.",
        ]),
        Param::bool("wait_for_instances")
            .default(Default::Bool(true))
            .doc(&[
                "After a write, wait until the desired number of instances is InService (instances held \
                 in Pending:Wait by a launching hook count only once their action completes) and no other \
                 instance remains (after a scale-in, the leaving ones have passed their terminating hooks). \
                 After a delete, wait until the group is gone.",
            ]),
        Param::bool("wait_for_instance_refresh")
            .default(Default::Bool(false))
            .doc(&["Wait until a refresh this run started has ended; fail if it did not succeed."]),
        Param::int("wait_timeout")
            .default(Default::Int(600))
            .doc(&["Seconds each wait may take."]),
        Param::bool("force_delete")
            .default(Default::Bool(false))
            .doc(&[
                "C(state=absent): false (the default) scales the group to zero through its terminating \
                 hooks first (each instance is deregistered and drained as on any scale-in), then deletes \
                 it. True deletes it with its instances at once (ForceDelete): the hooks are skipped, so \
                 whatever they would have cleaned up (DNS records, health checks) is left behind.",
            ]),
    ],
    includes: &[&AWS],
    ..Spec::EMPTY
};

/// amazon.aws's default for I(notification_types).
pub const NOTIFICATION_TYPES: &[&str] = &[
    "autoscaling:EC2_INSTANCE_LAUNCH",
    "autoscaling:EC2_INSTANCE_LAUNCH_ERROR",
    "autoscaling:EC2_INSTANCE_TERMINATE",
    "autoscaling:EC2_INSTANCE_TERMINATE_ERROR",
];

#[derive(Debug, Deserialize)]
struct LtArg {
    launch_template_name: Option<String>,
    launch_template_id: Option<String>,
    version: Option<String>,
}

#[derive(Debug, Deserialize)]
struct HookArg {
    lifecycle_hook_name: String,
    #[serde(flatten)]
    hook: HookArgs,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Refresh {
    pub min_healthy_percentage: i64,
    pub max_healthy_percentage: i64,
    pub instance_warmup: Option<i64>,
    pub skip_matching: bool,
    pub auto_rollback: bool,
}

#[derive(Debug, Deserialize)]
struct Args {
    name: String,
    state: String,
    launch_template: Option<LtArg>,
    min_size: Option<i64>,
    max_size: Option<i64>,
    desired_capacity: Option<i64>,
    vpc_zone_identifier: Option<Vec<String>>,
    availability_zones: Option<Vec<String>>,
    health_check_type: Option<String>,
    health_check_period: Option<i64>,
    default_cooldown: Option<i64>,
    termination_policies: Option<Vec<String>>,
    tags: Option<Value>,
    purge_tags: bool,
    lifecycle_hooks: Option<Vec<HookArg>>,
    notification_topic: Option<String>,
    notification_types: Vec<String>,
    instance_refresh: Option<Refresh>,
    wait_for_instances: bool,
    wait_for_instance_refresh: bool,
    wait_timeout: i64,
    force_delete: bool,
    #[serde(flatten)]
    connection: Connection,
}

/// The launch template reference: by name or id, and a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRef {
    pub name: Option<String>,
    pub id: Option<String>,
    pub version: Option<String>,
}

/// The group's settings; in a task `None` leaves a setting alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub launch_template: Option<TemplateRef>,
    pub min_size: Option<i32>,
    pub max_size: Option<i32>,
    pub desired_capacity: Option<i32>,
    /// Sorted.
    pub subnets: Option<Vec<String>>,
    pub availability_zones: Option<Vec<String>>,
    pub health_check_type: Option<String>,
    pub health_check_period: Option<i32>,
    pub default_cooldown: Option<i32>,
    pub termination_policies: Option<Vec<String>>,
}

/// Tag value and whether instances get it.
pub type Tags = BTreeMap<String, (String, bool)>;

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub present: bool,
    pub name: String,
    pub settings: Settings,
    pub tags: Option<Tags>,
    pub purge_tags: bool,
    pub hooks: Option<Vec<(String, Hook)>>,
    /// The topic and the (sorted) notification types it gets.
    pub notifications: Option<(String, Vec<String>)>,
    pub refresh: Option<Refresh>,
    pub wait: bool,
    pub wait_refresh: bool,
    pub timeout: Duration,
    pub force_delete: bool,
}

fn small(v: Option<i64>, what: &str) -> Result<Option<i32>, Failure> {
    v.map(|n| {
        i32::try_from(n)
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| Failure::msg(format!("{what} must be 0 or more, got {n}")))
    })
    .transpose()
}

fn text(v: &Value) -> String {
    v.as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string())
}

/// `tags` as a dict, or as amazon.aws's list of dicts.
pub fn tags_of(v: &Value) -> Result<Tags, Failure> {
    let mut out = Tags::new();
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                out.insert(k.clone(), (text(v), true));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let Some(m) = item.as_object() else {
                    return Err(Failure::msg(format!(
                        "tags[{i}] must be a dict, got {item}"
                    )));
                };
                let propagate = match m.get("propagate_at_launch") {
                    None => true,
                    Some(p) => crate::protocol::coerce_bool(p).ok_or_else(|| {
                        Failure::msg(format!("tags[{i}].propagate_at_launch must be a boolean"))
                    })?,
                };
                for (k, v) in m.iter().filter(|(k, _)| *k != "propagate_at_launch") {
                    out.insert(k.clone(), (text(v), propagate));
                }
            }
        }
        other => {
            return Err(Failure::msg(format!(
                "tags must be a dict or a list of dicts, got {other}"
            )));
        }
    }
    Ok(out)
}

pub fn task(p: &Params) -> Result<Task, Failure> {
    let a: Args = p.typed()?;
    let (min, max) = (
        small(a.min_size, "min_size")?,
        small(a.max_size, "max_size")?,
    );
    let desired = small(a.desired_capacity, "desired_capacity")?;
    if let (Some(lo), Some(hi)) = (min, max)
        && lo > hi
    {
        return Err(Failure::msg(format!(
            "min_size {lo} is above max_size {hi}"
        )));
    }
    if let Some(d) = desired
        && (min.is_some_and(|lo| d < lo) || max.is_some_and(|hi| d > hi))
    {
        return Err(Failure::msg(format!(
            "desired_capacity {d} is outside min_size..max_size ({}..{})",
            min.map_or("?".into(), |v| v.to_string()),
            max.map_or("?".into(), |v| v.to_string())
        )));
    }
    let sorted = |v: Option<Vec<String>>| {
        v.map(|mut v| {
            v.sort();
            v.dedup();
            v
        })
    };
    let subnets = sorted(a.vpc_zone_identifier);
    if let Some(bad) = subnets.iter().flatten().find(|s| !s.starts_with("subnet-")) {
        return Err(Failure::msg(format!(
            "vpc_zone_identifier: '{bad}' is not a subnet id (subnet-…)"
        )));
    }
    let hooks =
        a.lifecycle_hooks
            .map(|list| {
                let mut seen = std::collections::BTreeSet::new();
                list.into_iter()
                    .map(|h| {
                        if !seen.insert(h.lifecycle_hook_name.clone()) {
                            return Err(Failure::msg(format!(
                                "lifecycle_hooks: '{}' is listed twice",
                                h.lifecycle_hook_name
                            )));
                        }
                        let name = h.lifecycle_hook_name;
                        h.hook.hook().map(|hook| (name.clone(), hook)).map_err(|f| {
                            Failure::msg(format!("lifecycle_hooks '{name}': {}", f.msg))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
    if a.wait_timeout < 0 {
        return Err(Failure::msg("wait_timeout must be 0 or more"));
    }
    if a.instance_refresh.as_ref().is_some_and(|r| r.auto_rollback) {
        let version = a
            .launch_template
            .as_ref()
            .and_then(|l| l.version.as_deref());
        if version.is_none_or(|v| v.parse::<u64>().is_err()) {
            return Err(Failure::msg(format!(
                "instance_refresh.auto_rollback needs launch_template.version as a number (AWS refuses \
                 rollback for $Latest and $Default), got {}",
                version.map_or("none".to_owned(), |v| format!("'{v}'"))
            )));
        }
    }
    Ok(Task {
        present: a.state != "absent",
        name: a.name,
        settings: Settings {
            launch_template: a.launch_template.map(|l| TemplateRef {
                name: l.launch_template_name,
                id: l.launch_template_id,
                version: l.version,
            }),
            min_size: min,
            max_size: max,
            desired_capacity: desired,
            subnets,
            availability_zones: sorted(a.availability_zones),
            health_check_type: a.health_check_type,
            health_check_period: small(a.health_check_period, "health_check_period")?,
            default_cooldown: small(a.default_cooldown, "default_cooldown")?,
            termination_policies: a.termination_policies,
        },
        tags: a.tags.as_ref().map(tags_of).transpose()?,
        purge_tags: a.purge_tags,
        hooks,
        notifications: a.notification_topic.map(|topic| {
            let mut types = a.notification_types;
            types.sort();
            types.dedup();
            (topic, types)
        }),
        refresh: a.instance_refresh,
        wait: a.wait_for_instances,
        wait_refresh: a.wait_for_instance_refresh,
        timeout: Duration::from_secs(a.wait_timeout.unsigned_abs()),
        force_delete: a.force_delete,
    })
}

/// One instance of the group, as AWS lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub lifecycle_state: String,
    pub health_status: String,
    /// The launch template version it was launched with.
    pub version: Option<String>,
}

/// The group as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    pub arn: Option<String>,
    /// Every setting, as AWS has it (the launch template by name, id and
    /// version).
    pub settings: Settings,
    pub template_name: Option<String>,
    pub template_id: Option<String>,
    pub tags: Tags,
    pub instances: Vec<Member>,
    pub status: Option<String>,
    /// Hooks, read when the task manages them.
    pub hooks: Option<BTreeMap<String, Hook>>,
    /// Topic -> notification types (sorted), read when the task manages them.
    pub notifications: Option<BTreeMap<String, Vec<String>>>,
    /// A refresh that is running (read only when instances differ from the
    /// group's template version, or the task's template from the group's).
    pub active_refresh: Option<ActiveRefresh>,
    /// The version number the group's `$Latest` / `$Default` means now
    /// (read only when a refresh is configured).
    pub resolved_version: Option<String>,
    /// The refresh this run started.
    pub started_refresh: Option<RefreshState>,
}

/// A refresh in progress and the launch template it rolls to (its
/// DesiredConfiguration; none: the group's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveRefresh {
    pub id: String,
    pub target: Option<TemplateRef>,
}

/// What to do about instance refreshes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RefreshPlan {
    #[default]
    None,
    /// Start one (towards the task's template when it is not the group's).
    Start,
    /// Cancel this one (it rolls to something else), then start ours.
    Replace(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshState {
    pub id: String,
    pub status: String,
    pub percentage_complete: Option<i32>,
    pub status_reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub create: bool,
    /// Settings that change (names, for the diff and the update call).
    pub settings: Vec<&'static str>,
    pub set_tags: Tags,
    pub unset_tags: Vec<String>,
    pub hooks: Vec<(String, Hook)>,
    pub notifications: bool,
    pub refresh: RefreshPlan,
}

impl crate::driver::Changes for Changes {
    fn is_empty(&self) -> bool {
        !self.create
            && self.settings.is_empty()
            && self.set_tags.is_empty()
            && self.unset_tags.is_empty()
            && self.hooks.is_empty()
            && !self.notifications
            && self.refresh == RefreshPlan::None
    }
}

/// The template reference matches what the group has: by name or id, and
/// the version when the task gives one.
fn same_template(want: &TemplateRef, g: &Group) -> bool {
    let have = g.settings.launch_template.as_ref();
    let same_lt = match (&want.name, &want.id) {
        (Some(n), _) => g.template_name.as_ref() == Some(n),
        (None, Some(i)) => g.template_id.as_ref() == Some(i),
        (None, None) => true,
    };
    let same_version = match &want.version {
        None => true,
        Some(v) => {
            have.and_then(|h| h.version.as_deref())
                .unwrap_or("$Default")
                == v
        }
    };
    same_lt && same_version
}

/// The version number new instances of the group get: its own when it
/// names one, else what its `$Latest` / `$Default` resolved to.
fn group_version(g: &Group) -> Option<&str> {
    let named = g
        .settings
        .launch_template
        .as_ref()
        .and_then(|t| t.version.as_deref())
        .filter(|v| v.parse::<u64>().is_ok());
    named.or(g.resolved_version.as_deref())
}

/// The refresh's target is the task's template: the same template (by name
/// or id) and version.
fn same_target(want: &TemplateRef, target: &TemplateRef, g: &Group) -> bool {
    let same_lt = match (&want.name, &want.id) {
        (Some(n), _) => {
            target.name.as_ref() == Some(n)
                || (target.name.is_none() && g.template_name.as_ref() == Some(n))
        }
        (None, Some(i)) => target.id.as_ref() == Some(i),
        (None, None) => true,
    };
    same_lt && want.version == target.version
}

/// Instances launched with another version than the group's. Instances
/// always report the number they were launched with, never `$Latest`.
fn outdated(g: &Group) -> Vec<&Member> {
    let Some(want) = group_version(g) else {
        return Vec::new();
    };
    g.instances
        .iter()
        .filter(|m| !m.lifecycle_state.starts_with("Terminat"))
        .filter(|m| m.version.as_deref().is_some_and(|v| v != want))
        .collect()
}

pub fn plan(t: &Task, current: Option<&Group>) -> Result<Changes, Failure> {
    let Some(g) = current else {
        let s = &t.settings;
        let missing: Vec<&str> = [
            ("launch_template", s.launch_template.is_none()),
            ("min_size", s.min_size.is_none()),
            ("max_size", s.max_size.is_none()),
        ]
        .into_iter()
        .filter_map(|(k, m)| m.then_some(k))
        .collect();
        if !missing.is_empty() {
            return Err(Failure::msg(format!(
                "autoscaling group '{}' does not exist; {} required to create it",
                t.name,
                missing.join(", ")
            )));
        }
        if s.subnets.is_none() && s.availability_zones.is_none() {
            return Err(Failure::msg(format!(
                "autoscaling group '{}' does not exist; vpc_zone_identifier (or availability_zones) is \
                 required to create it",
                t.name
            )));
        }
        return Ok(Changes {
            create: true,
            set_tags: t.tags.clone().unwrap_or_default(),
            hooks: t.hooks.clone().unwrap_or_default(),
            notifications: t.notifications.is_some(),
            ..Changes::default()
        });
    };
    let (w, h) = (&t.settings, &g.settings);
    let mut settings = Vec::new();
    if w.launch_template
        .as_ref()
        .is_some_and(|lt| !same_template(lt, g))
    {
        settings.push("launch_template");
    }
    let mut check = |name: &'static str, differs: bool| {
        if differs {
            settings.push(name);
        }
    };
    check(
        "min_size",
        w.min_size.is_some_and(|v| Some(v) != h.min_size),
    );
    check(
        "max_size",
        w.max_size.is_some_and(|v| Some(v) != h.max_size),
    );
    check(
        "desired_capacity",
        w.desired_capacity
            .is_some_and(|v| Some(v) != h.desired_capacity),
    );
    check(
        "vpc_zone_identifier",
        w.subnets.is_some() && w.subnets != h.subnets,
    );
    check(
        "availability_zones",
        w.availability_zones.is_some()
            && w.subnets.is_none()
            && w.availability_zones != h.availability_zones,
    );
    check(
        "health_check_type",
        w.health_check_type.is_some() && w.health_check_type != h.health_check_type,
    );
    check(
        "health_check_period",
        w.health_check_period.is_some() && w.health_check_period != h.health_check_period,
    );
    check(
        "default_cooldown",
        w.default_cooldown.is_some() && w.default_cooldown != h.default_cooldown,
    );
    check(
        "termination_policies",
        w.termination_policies.is_some() && w.termination_policies != h.termination_policies,
    );
    let (mut set_tags, mut unset_tags) = (Tags::new(), Vec::new());
    if let Some(want) = &t.tags {
        for (k, v) in want {
            if g.tags.get(k) != Some(v) {
                set_tags.insert(k.clone(), v.clone());
            }
        }
        if t.purge_tags {
            unset_tags = g
                .tags
                .keys()
                .filter(|k| !want.contains_key(*k) && !k.starts_with("aws:"))
                .cloned()
                .collect();
        }
    }
    let mut hooks = Vec::new();
    for (name, hook) in t.hooks.iter().flatten() {
        let have = g.hooks.as_ref().and_then(|m| m.get(name));
        crate::asg_lifecycle_hook::unremovable(&t.name, name, hook, have)?;
        if !crate::asg_lifecycle_hook::plan(hook, have).is_empty() {
            hooks.push((name.clone(), hook.clone()));
        }
    }
    // With a refresh, a new template goes in as the refresh's desired
    // configuration: AWS applies it to the group only if the refresh
    // succeeds (and can roll back when it does not).
    let refresh = match (&t.refresh, &w.launch_template) {
        (None, _) => RefreshPlan::None,
        (Some(_), Some(want)) if settings.contains(&"launch_template") => {
            settings.retain(|f| *f != "launch_template");
            match &g.active_refresh {
                // A run before this one already rolls there.
                Some(a) if a.target.as_ref().is_some_and(|t| same_target(want, t, g)) => {
                    RefreshPlan::None
                }
                Some(a) => RefreshPlan::Replace(a.id.clone()),
                None => RefreshPlan::Start,
            }
        }
        (Some(_), _) if !outdated(g).is_empty() && g.active_refresh.is_none() => RefreshPlan::Start,
        _ => RefreshPlan::None,
    };
    let notifications = t.notifications.as_ref().is_some_and(|(topic, types)| {
        g.notifications.as_ref().and_then(|n| n.get(topic)) != Some(types)
    });
    Ok(Changes {
        create: false,
        settings,
        set_tags,
        unset_tags,
        hooks,
        notifications,
        refresh,
    })
}

/// Where a wait for instances stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    Done,
    /// Still waiting: what to say if the wait times out.
    Waiting(String),
}

/// The desired number of instances InService and healthy, and no more
/// than that many in any state. Instances held in Pending:Wait are named.
pub fn instances_progress(g: &Group, refreshing: bool) -> Progress {
    let desired = g.settings.desired_capacity.unwrap_or(0);
    let in_service = g
        .instances
        .iter()
        .filter(|m| m.lifecycle_state == "InService" && m.health_status == "Healthy")
        .count();
    let held: Vec<&str> = g
        .instances
        .iter()
        .filter(|m| m.lifecycle_state == "Pending:Wait")
        .map(|m| m.id.as_str())
        .collect();
    // A scale-in is done when the extra instances are gone (each through its
    // terminating hook: deregistered, drained), not when enough are InService.
    let want = usize::try_from(desired).unwrap_or(0);
    if in_service >= want && (refreshing || g.instances.len() <= want) {
        return Progress::Done;
    }
    let mut msg = format!(
        "{in_service} of {desired} instances of group '{}' are InService",
        g.name
    );
    let mut states: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &g.instances {
        *states.entry(m.lifecycle_state.as_str()).or_default() += 1;
    }
    if !states.is_empty() {
        let list: Vec<String> = states.iter().map(|(s, n)| format!("{n} {s}")).collect();
        msg.push_str(&format!(" ({})", list.join(", ")));
    }
    if !held.is_empty() {
        msg.push_str(&format!(
            "; {} held in Pending:Wait by a launching hook: is its notification target processed and the \
             lifecycle action completed (the Route 53 Lambda's logs)?",
            held.join(", ")
        ));
    }
    Progress::Waiting(msg)
}

/// The Auto Scaling calls this module makes.
#[allow(async_fn_in_trait)]
pub trait Api {
    async fn group(&self, name: &str) -> Result<Option<AutoScalingGroup>, Error>;
    async fn hooks(&self, name: &str) -> Result<Vec<LifecycleHook>, Error>;
    async fn active_refresh(&self, name: &str) -> Result<Option<ActiveRefresh>, Error>;
    async fn cancel_refresh(&self, name: &str) -> Result<(), Error>;
    /// What the instance wrote to its console (GetConsoleOutput, latest).
    async fn console_output(&self, instance: &str) -> Result<Option<String>, Error>;
    /// (default, latest) version numbers of the template.
    async fn template_versions(&self, t: &TemplateRef) -> Result<Option<(String, String)>, Error>;
    async fn refresh(&self, name: &str, id: &str) -> Result<Option<InstanceRefresh>, Error>;
    async fn create(&self, t: &Task) -> Result<(), Error>;
    async fn update(&self, t: &Task, fields: &[&'static str]) -> Result<(), Error>;
    async fn put_tags(&self, name: &str, tags: &Tags) -> Result<(), Error>;
    async fn delete_tags(&self, name: &str, keys: &[String]) -> Result<(), Error>;
    async fn put_hook(&self, group: &str, name: &str, hook: &Hook) -> Result<(), Error>;
    /// Topic -> notification types, as DescribeNotificationConfigurations lists them.
    async fn notifications(&self, name: &str) -> Result<BTreeMap<String, Vec<String>>, Error>;
    async fn put_notifications(
        &self,
        name: &str,
        topic: &str,
        types: &[String],
    ) -> Result<(), Error>;
    /// Starts a refresh; towards `target` (its DesiredConfiguration) when given.
    async fn start_refresh(
        &self,
        name: &str,
        r: &Refresh,
        target: Option<&TemplateRef>,
    ) -> Result<String, Error>;
    async fn delete(&self, name: &str, force: bool) -> Result<(), Error>;
    async fn sleep(&self, d: Duration);
}

fn lt_spec(t: &TemplateRef) -> LaunchTemplateSpecification {
    LaunchTemplateSpecification::builder()
        .set_launch_template_name(t.name.clone())
        .set_launch_template_id(t.id.clone())
        .set_version(t.version.clone())
        .build()
}

fn asg_tags(name: &str, tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .map(|(k, (v, p))| {
            Tag::builder()
                .resource_id(name)
                .resource_type("auto-scaling-group")
                .key(k)
                .value(v)
                .propagate_at_launch(*p)
                .build()
        })
        .collect()
}

/// The clients the module's calls go to.
pub struct Clients {
    pub asg: Client,
    pub ec2: aws_sdk_ec2::Client,
}

impl Api for Clients {
    async fn group(&self, name: &str) -> Result<Option<AutoScalingGroup>, Error> {
        let out = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .map_err(sdk_error(
                "Auto Scaling",
                "DescribeAutoScalingGroups",
                format!("read autoscaling group '{name}'"),
            ))?;
        Ok(out
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(name))
            .cloned())
    }
    async fn hooks(&self, name: &str) -> Result<Vec<LifecycleHook>, Error> {
        let out = self
            .asg
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(name)
            .send()
            .await
            .map_err(sdk_error(
                "Auto Scaling",
                "DescribeLifecycleHooks",
                format!("read the lifecycle hooks of group '{name}'"),
            ))?;
        Ok(out.lifecycle_hooks().to_vec())
    }
    async fn active_refresh(&self, name: &str) -> Result<Option<ActiveRefresh>, Error> {
        let out = self
            .asg
            .describe_instance_refreshes()
            .auto_scaling_group_name(name)
            .send()
            .await
            .map_err(sdk_error(
                "Auto Scaling",
                "DescribeInstanceRefreshes",
                format!("read the instance refreshes of group '{name}'"),
            ))?;
        Ok(out
            .instance_refreshes()
            .iter()
            .find(|r| {
                matches!(
                    r.status().map(|s| s.as_str()),
                    Some("Pending" | "InProgress" | "Cancelling" | "RollbackInProgress" | "Baking")
                )
            })
            .and_then(|r| {
                Some(ActiveRefresh {
                    id: r.instance_refresh_id()?.to_owned(),
                    target: r
                        .desired_configuration()
                        .and_then(|d| d.launch_template())
                        .map(|l| TemplateRef {
                            name: l.launch_template_name().map(str::to_owned),
                            id: l.launch_template_id().map(str::to_owned),
                            version: l.version().map(str::to_owned),
                        }),
                })
            }))
    }
    async fn cancel_refresh(&self, name: &str) -> Result<(), Error> {
        match self
            .asg
            .cancel_instance_refresh()
            .auto_scaling_group_name(name)
            .send()
            .await
            .map_err(sdk_error(
                "Auto Scaling",
                "CancelInstanceRefresh",
                format!("cancel the instance refresh of group '{name}'"),
            )) {
            Ok(_) => Ok(()),
            // It ended meanwhile: nothing to cancel.
            Err(e) if e.code() == Some("ActiveInstanceRefreshNotFound") => Ok(()),
            Err(e) => Err(e),
        }
    }
    async fn console_output(&self, instance: &str) -> Result<Option<String>, Error> {
        let out = self
            .ec2
            .get_console_output()
            .instance_id(instance)
            .latest(true)
            .send()
            .await
            .map_err(sdk_error(
                "EC2",
                "GetConsoleOutput",
                format!("read the console of '{instance}'"),
            ))?;
        Ok(out.output().and_then(|b64| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .ok()
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        }))
    }
    async fn template_versions(&self, t: &TemplateRef) -> Result<Option<(String, String)>, Error> {
        let what = t.name.clone().or_else(|| t.id.clone()).unwrap_or_default();
        let res = self
            .ec2
            .describe_launch_templates()
            .set_launch_template_names(t.name.clone().map(|n| vec![n]))
            .set_launch_template_ids(t.id.clone().filter(|_| t.name.is_none()).map(|i| vec![i]))
            .send()
            .await
            .map_err(sdk_error(
                "EC2",
                "DescribeLaunchTemplates",
                format!("resolve the versions of launch template '{what}'"),
            ));
        let out = match res {
            Ok(out) => out,
            Err(e) if e.kind() == craftlb_core::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(out.launch_templates().first().and_then(|l| {
            Some((
                l.default_version_number()?.to_string(),
                l.latest_version_number()?.to_string(),
            ))
        }))
    }
    async fn refresh(&self, name: &str, id: &str) -> Result<Option<InstanceRefresh>, Error> {
        let out = self
            .asg
            .describe_instance_refreshes()
            .auto_scaling_group_name(name)
            .instance_refresh_ids(id)
            .send()
            .await
            .map_err(sdk_error(
                "Auto Scaling",
                "DescribeInstanceRefreshes",
                format!("read instance refresh {id} of group '{name}'"),
            ))?;
        Ok(out.instance_refreshes().first().cloned())
    }
    async fn create(&self, t: &Task) -> Result<(), Error> {
        let s = &t.settings;
        let hooks = t.hooks.iter().flatten().map(|(name, h)| {
            LifecycleHookSpecification::builder()
                .lifecycle_hook_name(name)
                .set_lifecycle_transition(h.transition.clone())
                .set_notification_target_arn(
                    h.notification_target_arn.clone().filter(|v| !v.is_empty()),
                )
                .set_role_arn(h.role_arn.clone().filter(|v| !v.is_empty()))
                .set_notification_metadata(h.metadata.clone().filter(|v| !v.is_empty()))
                .set_heartbeat_timeout(h.heartbeat_timeout)
                .set_default_result(h.default_result.clone())
                .build()
        });
        let hooks: Vec<_> = hooks.collect();
        let create = || {
            self.asg
                .create_auto_scaling_group()
                .auto_scaling_group_name(&t.name)
                .set_launch_template(s.launch_template.as_ref().map(lt_spec))
                .set_min_size(s.min_size)
                .set_max_size(s.max_size)
                .set_desired_capacity(s.desired_capacity)
                .set_vpc_zone_identifier(s.subnets.as_ref().map(|v| v.join(",")))
                .set_availability_zones(s.availability_zones.clone())
                .set_health_check_type(s.health_check_type.clone())
                .set_health_check_grace_period(s.health_check_period)
                .set_default_cooldown(s.default_cooldown)
                .set_termination_policies(s.termination_policies.clone())
                .set_tags(Some(asg_tags(
                    &t.name,
                    t.tags.as_ref().unwrap_or(&Tags::new()),
                )))
                .set_lifecycle_hook_specification_list((!hooks.is_empty()).then(|| hooks.clone()))
                .send()
        };
        // Hooks given at creation get their test message published with
        // their role, which IAM may not have propagated yet.
        consistency::until_consistent(
            &[consistency::HOOK_TEST_MESSAGE_NOT_PUBLISHED],
            consistency::IAM_PROPAGATION,
            || async {
                create().await.map_err(sdk_error(
                    "Auto Scaling",
                    "CreateAutoScalingGroup",
                    format!("create autoscaling group '{}'", t.name),
                ))
            },
        )
        .await?;
        Ok(())
    }
    async fn update(&self, t: &Task, fields: &[&'static str]) -> Result<(), Error> {
        let s = &t.settings;
        let has = |f: &str| fields.contains(&f);
        self.asg
            .update_auto_scaling_group()
            .auto_scaling_group_name(&t.name)
            .set_launch_template(
                s.launch_template
                    .as_ref()
                    .filter(|_| has("launch_template"))
                    .map(lt_spec),
            )
            .set_min_size(s.min_size.filter(|_| has("min_size")))
            .set_max_size(s.max_size.filter(|_| has("max_size")))
            .set_desired_capacity(s.desired_capacity.filter(|_| has("desired_capacity")))
            .set_vpc_zone_identifier(
                s.subnets
                    .as_ref()
                    .filter(|_| has("vpc_zone_identifier"))
                    .map(|v| v.join(",")),
            )
            .set_availability_zones(
                s.availability_zones
                    .clone()
                    .filter(|_| has("availability_zones")),
            )
            .set_health_check_type(
                s.health_check_type
                    .clone()
                    .filter(|_| has("health_check_type")),
            )
            .set_health_check_grace_period(
                s.health_check_period.filter(|_| has("health_check_period")),
            )
            .set_default_cooldown(s.default_cooldown.filter(|_| has("default_cooldown")))
            .set_termination_policies(
                s.termination_policies
                    .clone()
                    .filter(|_| has("termination_policies")),
            )
            .send()
            .await
            .map_err(sdk_error(
                "Auto Scaling",
                "UpdateAutoScalingGroup",
                format!(
                    "update autoscaling group '{}' ({})",
                    t.name,
                    fields.join(", ")
                ),
            ))?;
        Ok(())
    }
    async fn put_tags(&self, name: &str, tags: &Tags) -> Result<(), Error> {
        self.asg
            .create_or_update_tags()
            .set_tags(Some(asg_tags(name, tags)))
            .send()
            .await
            .map_err(sdk_error(
                "Auto Scaling",
                "CreateOrUpdateTags",
                format!("tag autoscaling group '{name}'"),
            ))?;
        Ok(())
    }
    async fn delete_tags(&self, name: &str, keys: &[String]) -> Result<(), Error> {
        let tags = keys
            .iter()
            .map(|k| {
                Tag::builder()
                    .resource_id(name)
                    .resource_type("auto-scaling-group")
                    .key(k)
                    .build()
            })
            .collect();
        self.asg
            .delete_tags()
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(sdk_error(
                "Auto Scaling",
                "DeleteTags",
                format!("untag autoscaling group '{name}'"),
            ))?;
        Ok(())
    }
    async fn put_hook(&self, group: &str, name: &str, hook: &Hook) -> Result<(), Error> {
        crate::asg_lifecycle_hook::Api::put(&self.asg, group, name, hook).await
    }
    async fn notifications(&self, name: &str) -> Result<BTreeMap<String, Vec<String>>, Error> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .asg
                .describe_notification_configurations()
                .auto_scaling_group_names(name)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(sdk_error(
                    "Auto Scaling",
                    "DescribeNotificationConfigurations",
                    format!("read the notifications of group '{name}'"),
                ))?;
            for c in page.notification_configurations() {
                if let (Some(topic), Some(kind)) = (c.topic_arn(), c.notification_type()) {
                    out.entry(topic.to_owned())
                        .or_default()
                        .push(kind.to_owned());
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        for types in out.values_mut() {
            types.sort();
            types.dedup();
        }
        Ok(out)
    }
    async fn put_notifications(
        &self,
        name: &str,
        topic: &str,
        types: &[String],
    ) -> Result<(), Error> {
        self.asg
            .put_notification_configuration()
            .auto_scaling_group_name(name)
            .topic_arn(topic)
            .set_notification_types(Some(types.to_vec()))
            .send()
            .await
            .map_err(sdk_error(
                "Auto Scaling",
                "PutNotificationConfiguration",
                format!("notify topic '{topic}' of group '{name}'"),
            ))?;
        Ok(())
    }
    async fn start_refresh(
        &self,
        name: &str,
        r: &Refresh,
        target: Option<&TemplateRef>,
    ) -> Result<String, Error> {
        let pct = |v: i64| i32::try_from(v).unwrap_or(100);
        let out = self
            .asg
            .start_instance_refresh()
            .auto_scaling_group_name(name)
            .strategy(RefreshStrategy::Rolling)
            .set_desired_configuration(target.map(|t| {
                DesiredConfiguration::builder()
                    .launch_template(lt_spec(t))
                    .build()
            }))
            .preferences(
                RefreshPreferences::builder()
                    .min_healthy_percentage(pct(r.min_healthy_percentage))
                    .max_healthy_percentage(pct(r.max_healthy_percentage))
                    .set_instance_warmup(r.instance_warmup.and_then(|w| i32::try_from(w).ok()))
                    .skip_matching(r.skip_matching)
                    .auto_rollback(r.auto_rollback)
                    .build(),
            )
            .send()
            .await
            .map_err(sdk_error(
                "Auto Scaling",
                "StartInstanceRefresh",
                format!("start an instance refresh of group '{name}'"),
            ))?;
        out.instance_refresh_id().map(str::to_owned).ok_or_else(|| {
            Error::config(format!(
                "StartInstanceRefresh of group '{name}' returned no id"
            ))
        })
    }
    async fn delete(&self, name: &str, force: bool) -> Result<(), Error> {
        self.asg
            .delete_auto_scaling_group()
            .auto_scaling_group_name(name)
            .force_delete(force)
            .send()
            .await
            .map_err(sdk_error(
                "Auto Scaling",
                "DeleteAutoScalingGroup",
                format!("delete autoscaling group '{name}'"),
            ))?;
        Ok(())
    }
    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

fn group_from(g: &AutoScalingGroup) -> Group {
    let lt = g.launch_template();
    let mut subnets: Vec<String> = g
        .vpc_zone_identifier()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    subnets.sort();
    let mut zones = g.availability_zones().to_vec();
    zones.sort();
    Group {
        name: g.auto_scaling_group_name().unwrap_or_default().to_owned(),
        arn: g.auto_scaling_group_arn().map(str::to_owned),
        settings: Settings {
            launch_template: lt.map(|l| TemplateRef {
                name: l.launch_template_name().map(str::to_owned),
                id: l.launch_template_id().map(str::to_owned),
                version: l.version().map(str::to_owned),
            }),
            min_size: g.min_size(),
            max_size: g.max_size(),
            desired_capacity: g.desired_capacity(),
            subnets: Some(subnets),
            availability_zones: Some(zones),
            health_check_type: g.health_check_type().map(str::to_owned),
            health_check_period: g.health_check_grace_period(),
            default_cooldown: g.default_cooldown(),
            termination_policies: Some(g.termination_policies().to_vec()),
        },
        template_name: lt.and_then(|l| l.launch_template_name().map(str::to_owned)),
        template_id: lt.and_then(|l| l.launch_template_id().map(str::to_owned)),
        tags: g
            .tags()
            .iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_owned(),
                    (
                        t.value().unwrap_or_default().to_owned(),
                        t.propagate_at_launch().unwrap_or(false),
                    ),
                ))
            })
            .collect(),
        instances: g
            .instances()
            .iter()
            .map(|i| Member {
                id: i.instance_id().unwrap_or_default().to_owned(),
                lifecycle_state: i
                    .lifecycle_state()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
                health_status: i.health_status().unwrap_or_default().to_owned(),
                version: i
                    .launch_template()
                    .and_then(|l| l.version().map(str::to_owned)),
            })
            .collect(),
        status: g.status().map(str::to_owned),
        hooks: None,
        notifications: None,
        active_refresh: None,
        resolved_version: None,
        started_refresh: None,
    }
}

fn refresh_from(r: &InstanceRefresh) -> RefreshState {
    RefreshState {
        id: r.instance_refresh_id().unwrap_or_default().to_owned(),
        status: r
            .status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        percentage_complete: r.percentage_complete(),
        status_reason: r.status_reason().map(str::to_owned),
    }
}

fn hook_json(name: &str, h: &Hook) -> Value {
    let mut v = json!({
        "lifecycle_hook_name": name,
        "lifecycle_transition": h.transition,
        "heartbeat_timeout": h.heartbeat_timeout,
        "default_result": h.default_result,
    });
    if let Some(o) = v.as_object_mut() {
        for (k, val) in [
            ("notification_target_arn", &h.notification_target_arn),
            ("role_arn", &h.role_arn),
            ("notification_metadata", &h.metadata),
        ] {
            if let Some(val) = val {
                o.insert(k.into(), Value::from(val.clone()));
            }
        }
    }
    v
}

pub fn describe(g: &Group) -> Value {
    let s = &g.settings;
    let count = |state: &str| {
        g.instances
            .iter()
            .filter(|m| m.lifecycle_state == state)
            .count()
    };
    let mut v = json!({
        "auto_scaling_group_name": g.name,
        "launch_template": s.launch_template.as_ref().map(|_| json!({
            "launch_template_name": g.template_name,
            "launch_template_id": g.template_id,
            "version": s.launch_template.as_ref().and_then(|l| l.version.clone()),
        })),
        "min_size": s.min_size,
        "max_size": s.max_size,
        "desired_capacity": s.desired_capacity,
        "vpc_zone_identifier": s.subnets.as_ref().map(|v| v.join(",")),
        "availability_zones": s.availability_zones,
        "health_check_type": s.health_check_type,
        "health_check_period": s.health_check_period,
        "default_cooldown": s.default_cooldown,
        "termination_policies": s.termination_policies,
        "tags": g.tags.iter().map(|(k, (v, p))| json!({
            "key": k, "value": v, "propagate_at_launch": p,
            "resource_id": g.name, "resource_type": "auto-scaling-group",
        })).collect::<Vec<_>>(),
        "instances": g.instances.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
        "instance_facts": g.instances.iter().map(|m| (m.id.clone(), json!({
            "lifecycle_state": m.lifecycle_state,
            "health_status": m.health_status,
            "launch_template_version": m.version,
        }))).collect::<Map<String, Value>>(),
        "in_service_instances": count("InService"),
        "pending_instances": count("Pending") + count("Pending:Wait") + count("Pending:Proceed"),
        "terminating_instances": g.instances.iter()
            .filter(|m| m.lifecycle_state.starts_with("Terminat")).count(),
        "healthy_instances": g.instances.iter().filter(|m| m.health_status == "Healthy").count(),
    });
    if let Some(o) = v.as_object_mut() {
        if let Some(arn) = &g.arn {
            o.insert("auto_scaling_group_arn".into(), Value::from(arn.clone()));
        }
        if let Some(st) = &g.status {
            o.insert("status".into(), Value::from(st.clone()));
        }
        if let Some(h) = &g.hooks {
            o.insert(
                "lifecycle_hooks".into(),
                Value::Array(h.iter().map(|(n, h)| hook_json(n, h)).collect()),
            );
        }
        if let Some(n) = &g.notifications {
            o.insert(
                "notification_configurations".into(),
                Value::Array(
                    n.iter()
                        .map(|(topic, types)| json!({"topic_arn": topic, "notification_types": types}))
                        .collect(),
                ),
            );
        }
        if let Some(r) = &g.started_refresh {
            o.insert(
                "instance_refresh".into(),
                json!({"instance_refresh_id": r.id, "status": r.status,
                       "percentage_complete": r.percentage_complete,
                       "status_reason": r.status_reason}),
            );
        }
    }
    v
}

async fn read_hooks<A: Api>(api: &A, name: &str) -> Result<BTreeMap<String, Hook>, Failure> {
    Ok(api
        .hooks(name)
        .await?
        .iter()
        .filter_map(|h| {
            Some((
                h.lifecycle_hook_name()?.to_owned(),
                crate::asg_lifecycle_hook::hook_from(h),
            ))
        })
        .collect())
}

async fn read<A: Api>(api: &A, t: &Task) -> Result<Option<Group>, Failure> {
    let Some(raw) = api.group(&t.name).await? else {
        return Ok(None);
    };
    let mut g = group_from(&raw);
    if g.status.as_deref() == Some("Delete in progress") {
        if t.present {
            return Err(Failure::msg(format!(
                "autoscaling group '{}' is being deleted; run again when it is gone",
                t.name
            )));
        }
        return Ok(Some(g));
    }
    if t.hooks.is_some() {
        g.hooks = Some(read_hooks(api, &t.name).await?);
    }
    if t.notifications.is_some() {
        g.notifications = Some(api.notifications(&t.name).await?);
    }
    if t.refresh.is_some() {
        let symbolic = g.settings.launch_template.as_ref().filter(|l| {
            l.version
                .as_deref()
                .is_none_or(|v| v.parse::<u64>().is_err())
        });
        if let Some(lt) = symbolic {
            let by = TemplateRef {
                name: g.template_name.clone(),
                id: g.template_id.clone(),
                version: None,
            };
            let latest = lt.version.as_deref() == Some("$Latest");
            g.resolved_version = api
                .template_versions(&by)
                .await?
                .map(|(default, newest)| if latest { newest } else { default });
        }
        let new_template = t
            .settings
            .launch_template
            .as_ref()
            .is_some_and(|lt| !same_template(lt, &g));
        if new_template || !outdated(&g).is_empty() {
            g.active_refresh = api.active_refresh(&t.name).await?;
        }
    }
    Ok(Some(g))
}

async fn wait_instances<A: Api>(api: &A, t: &Task, refreshing: bool) -> Result<Group, Failure> {
    let deadline = Instant::now() + t.timeout;
    loop {
        let g = api
            .group(&t.name)
            .await?
            .map(|g| group_from(&g))
            .ok_or_else(|| Failure::msg(format!("autoscaling group '{}' is gone", t.name)))?;
        match instances_progress(&g, refreshing) {
            Progress::Done => return Ok(g),
            Progress::Waiting(msg) if Instant::now() >= deadline => {
                return Err(Failure::msg(format!(
                    "timed out after {} s: {msg}",
                    t.timeout.as_secs()
                ))
                .with("auto_scaling_group", describe(&g)));
            }
            Progress::Waiting(_) => api.sleep(POLL).await,
        }
    }
}

const POLL: Duration = Duration::from_secs(2);

/// Waits until refresh `id` is no longer in progress (cancelled).
async fn wait_refresh_gone<A: Api>(api: &A, t: &Task, id: &str) -> Result<(), Failure> {
    let deadline = Instant::now() + t.timeout;
    while api
        .active_refresh(&t.name)
        .await?
        .is_some_and(|a| a.id == id)
    {
        if Instant::now() >= deadline {
            return Err(Failure::msg(format!(
                "timed out after {} s waiting for instance refresh {id} of group '{}' to cancel",
                t.timeout.as_secs(),
                t.name
            )));
        }
        api.sleep(POLL).await;
    }
    Ok(())
}

/// The group's instance ids now.
async fn member_ids<A: Api>(api: &A, name: &str) -> Result<Vec<String>, Failure> {
    Ok(api
        .group(name)
        .await?
        .map(|g| group_from(&g).instances.into_iter().map(|m| m.id).collect())
        .unwrap_or_default())
}

/// The last lines of an instance's console (a node's boot writes why it
/// failed there).
const CONSOLE_TAIL_LINES: usize = 20;

async fn wait_refresh<A: Api>(api: &A, t: &Task, id: &str) -> Result<RefreshState, Failure> {
    let deadline = Instant::now() + t.timeout;
    let before: std::collections::BTreeSet<String> =
        member_ids(api, &t.name).await?.into_iter().collect();
    // The refresh's new instances, in the order first seen.
    let mut launched: Vec<String> = Vec::new();
    loop {
        let r = api
            .refresh(&t.name, id)
            .await?
            .map(|r| refresh_from(&r))
            .ok_or_else(|| Failure::msg(format!("instance refresh {id} is gone")))?;
        let now = member_ids(api, &t.name).await?;
        for m in &now {
            if !before.contains(m) && !launched.contains(m) {
                launched.push(m.clone());
            }
        }
        match r.status.as_str() {
            "Successful" => return Ok(r),
            "Failed" | "Cancelled" | "RollbackSuccessful" | "RollbackFailed" => {
                // The replacements that did not stay (abandoned because they
                // never got ready, or rolled back): the last one's console
                // says why, as its boot wrote it.
                let gone: Vec<&String> = launched.iter().filter(|m| !now.contains(m)).collect();
                let mut msg = format!(
                    "instance refresh {id} of group '{}' ended {}: {}",
                    t.name,
                    r.status,
                    r.status_reason.as_deref().unwrap_or("no reason given")
                );
                let mut tail = None;
                if let Some(last) = gone.last() {
                    msg.push_str(&format!(
                        "; new instances that did not stay: {}",
                        gone.iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                    // Best effort: the failure is reported either way.
                    if let Ok(Some(text)) = api.console_output(last).await {
                        let lines: Vec<&str> = text.lines().collect();
                        let from = lines.len().saturating_sub(CONSOLE_TAIL_LINES);
                        let end = lines[from..].join("\n");
                        msg.push_str(&format!("; the end of {last}'s console:\n{end}"));
                        tail = Some(end);
                    }
                }
                return Err(Failure::msg(msg)
                    .with(
                        "instance_refresh",
                        json!({"instance_refresh_id": id, "status": r.status,
                        "status_reason": r.status_reason}),
                    )
                    .with("failed_instances", json!(gone))
                    .with("console_output_tail", json!(tail)));
            }
            _ if Instant::now() >= deadline => {
                return Err(Failure::msg(format!(
                    "timed out after {} s waiting for instance refresh {id} of group '{}' ({}, {}% done)",
                    t.timeout.as_secs(),
                    t.name,
                    r.status,
                    r.percentage_complete.unwrap_or(0)
                )));
            }
            _ => api.sleep(POLL).await,
        }
    }
}

pub struct GroupResource<A>(PhantomData<A>);

impl<A: Api> Resource for GroupResource<A> {
    type Task = Task;
    type Api = A;
    type Current = Group;
    type Changes = Changes;
    const KEY: &'static str = "";

    fn present(t: &Task) -> bool {
        t.present
    }

    async fn read(api: &A, t: &Task) -> Result<Option<Group>, Failure> {
        read(api, t).await
    }

    fn plan(t: &Task, current: Option<&Group>) -> Result<Changes, Failure> {
        plan(t, current)
    }

    async fn apply(
        api: &A,
        t: &Task,
        current: Option<&Group>,
        ch: &Changes,
    ) -> Result<Group, Failure> {
        if ch.create {
            api.create(t).await?;
        } else {
            if !ch.settings.is_empty() {
                api.update(t, &ch.settings).await?;
            }
            if !ch.set_tags.is_empty() {
                api.put_tags(&t.name, &ch.set_tags).await?;
            }
            if !ch.unset_tags.is_empty() {
                api.delete_tags(&t.name, &ch.unset_tags).await?;
            }
            for (name, hook) in &ch.hooks {
                let have = current
                    .and_then(|g| g.hooks.as_ref())
                    .and_then(|h| h.get(name));
                let merged = crate::asg_lifecycle_hook::merged(hook, have);
                api.put_hook(&t.name, name, &merged).await?;
            }
        }
        if let (true, Some((topic, types))) = (ch.notifications, &t.notifications) {
            api.put_notifications(&t.name, topic, types).await?;
        }
        let mut started = None;
        if let (RefreshPlan::Start | RefreshPlan::Replace(_), Some(r)) = (&ch.refresh, &t.refresh) {
            if let RefreshPlan::Replace(old) = &ch.refresh {
                // It rolls to something else: it stops where it is, ours
                // (skipping what already matches) takes over.
                api.cancel_refresh(&t.name).await?;
                wait_refresh_gone(api, t, old).await?;
            }
            let target = t
                .settings
                .launch_template
                .as_ref()
                .filter(|lt| current.is_some_and(|g| !same_template(lt, g)));
            let id = api.start_refresh(&t.name, r, target).await?;
            started = Some(if t.wait_refresh {
                wait_refresh(api, t, &id).await?
            } else {
                RefreshState {
                    id,
                    status: "Pending".into(),
                    percentage_complete: None,
                    status_reason: None,
                }
            });
        }
        // While a refresh runs the group may be above its desired capacity
        // (it launches before it terminates): the wait asks for the desired
        // number in service, not for the surplus to be gone.
        let refreshing = started
            .as_ref()
            .is_some_and(|r: &RefreshState| r.status != "Successful")
            || current.is_some_and(|g| g.active_refresh.is_some());
        let mut g = if t.wait {
            wait_instances(api, t, refreshing).await?
        } else {
            api.group(&t.name)
                .await?
                .map(|g| group_from(&g))
                .ok_or_else(|| {
                    Failure::msg(format!(
                        "autoscaling group '{}' was written but cannot be read back",
                        t.name
                    ))
                })?
        };
        if t.hooks.is_some() {
            g.hooks = Some(read_hooks(api, &t.name).await?);
        }
        if t.notifications.is_some() {
            g.notifications = Some(api.notifications(&t.name).await?);
        }
        g.started_refresh = started;
        Ok(g)
    }

    async fn delete(api: &A, t: &Task, g: &Group) -> Result<bool, Failure> {
        if !t.force_delete && g.settings.desired_capacity.unwrap_or(0) > 0 {
            let zero = Task {
                settings: Settings {
                    min_size: Some(0),
                    desired_capacity: Some(0),
                    ..Settings::default()
                },
                ..t.clone()
            };
            api.update(&zero, &["min_size", "desired_capacity"]).await?;
            if t.wait {
                let deadline = Instant::now() + t.timeout;
                while api
                    .group(&t.name)
                    .await?
                    .is_some_and(|g| !g.instances().is_empty())
                {
                    if Instant::now() >= deadline {
                        return Err(Failure::msg(format!(
                            "timed out after {} s waiting for the instances of group '{}' to terminate",
                            t.timeout.as_secs(),
                            t.name
                        )));
                    }
                    api.sleep(POLL).await;
                }
            }
        }
        if g.status.as_deref() != Some("Delete in progress") {
            api.delete(&t.name, t.force_delete).await?;
        }
        if t.wait {
            let deadline = Instant::now() + t.timeout;
            while api.group(&t.name).await?.is_some() {
                if Instant::now() >= deadline {
                    return Err(Failure::msg(format!(
                        "timed out after {} s waiting for group '{}' to be deleted",
                        t.timeout.as_secs(),
                        t.name
                    )));
                }
                api.sleep(POLL).await;
            }
        }
        Ok(true)
    }

    fn describe(g: &Group) -> Value {
        describe(g)
    }

    fn preview(t: &Task, current: Option<&Group>, ch: &Changes) -> Value {
        let mut g = current.cloned().unwrap_or_else(|| Group {
            name: t.name.clone(),
            arn: None,
            settings: Settings::default(),
            template_name: None,
            template_id: None,
            tags: Tags::new(),
            instances: Vec::new(),
            status: None,
            hooks: t.hooks.as_ref().map(|_| BTreeMap::new()),
            notifications: t.notifications.as_ref().map(|_| BTreeMap::new()),
            active_refresh: None,
            resolved_version: None,
            started_refresh: None,
        });
        let w = &t.settings;
        let s = &mut g.settings;
        if let Some(lt) = &w.launch_template {
            s.launch_template = Some(lt.clone());
            if lt.name.is_some() {
                g.template_name = lt.name.clone();
            }
            if lt.id.is_some() {
                g.template_id = lt.id.clone();
            }
        }
        s.min_size = w.min_size.or(s.min_size);
        s.max_size = w.max_size.or(s.max_size);
        s.desired_capacity = w
            .desired_capacity
            .or(s.desired_capacity)
            .or(w.min_size.filter(|_| ch.create));
        s.subnets = w.subnets.clone().or(s.subnets.take());
        s.availability_zones = w.availability_zones.clone().or(s.availability_zones.take());
        s.health_check_type = w.health_check_type.clone().or(s.health_check_type.take());
        s.health_check_period = w.health_check_period.or(s.health_check_period);
        s.default_cooldown = w.default_cooldown.or(s.default_cooldown);
        s.termination_policies = w
            .termination_policies
            .clone()
            .or(s.termination_policies.take());
        for k in &ch.unset_tags {
            g.tags.remove(k);
        }
        g.tags.extend(ch.set_tags.clone());
        if let Some(h) = g.hooks.as_mut() {
            for (name, hook) in &ch.hooks {
                let merged = crate::asg_lifecycle_hook::merged(hook, h.get(name));
                h.insert(name.clone(), merged);
            }
        }
        if let (true, Some((topic, types)), Some(n)) =
            (ch.notifications, &t.notifications, g.notifications.as_mut())
        {
            n.insert(topic.clone(), types.clone());
        }
        if ch.refresh != RefreshPlan::None {
            g.started_refresh = Some(RefreshState {
                id: String::new(),
                status: "Pending".into(),
                percentage_complete: None,
                status_reason: None,
            });
        }
        describe(&g)
    }
}

pub async fn run(ctx: Ctx) -> Result<Response, Failure> {
    let t = task(&ctx.params)?;
    let a: Args = ctx.params.typed()?;
    let config = craftlb_core::aws::sdk_config(&a.connection.aws_params(), None).await?;
    let clients = Clients {
        asg: Client::new(&config),
        ec2: aws_sdk_ec2::Client::new(&config),
    };
    drive::<GroupResource<Clients>>(&clients, &t, ctx.check_mode).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_of(v: Value) -> Result<Task, String> {
        crate::protocol::task_of(&SPEC, v, task)
    }

    fn ok(v: Value) -> Task {
        task_of(v).unwrap_or_else(|e| panic!("{e}"))
    }

    fn member(id: &str, state: &str, version: &str) -> Member {
        Member {
            id: id.into(),
            lifecycle_state: state.into(),
            health_status: "Healthy".into(),
            version: Some(version.into()),
        }
    }

    fn existing() -> Group {
        Group {
            name: "g".into(),
            arn: None,
            settings: Settings {
                launch_template: Some(TemplateRef {
                    name: Some("lt".into()),
                    id: Some("lt-1".into()),
                    version: Some("2".into()),
                }),
                min_size: Some(1),
                max_size: Some(3),
                desired_capacity: Some(1),
                subnets: Some(vec!["subnet-a".into(), "subnet-b".into()]),
                availability_zones: Some(vec!["us-east-1a".into()]),
                health_check_type: Some("EC2".into()),
                health_check_period: Some(300),
                default_cooldown: Some(300),
                termination_policies: Some(vec!["Default".into()]),
            },
            template_name: Some("lt".into()),
            template_id: Some("lt-1".into()),
            tags: Tags::from([("Name".into(), ("mylb".into(), true))]),
            instances: vec![member("i-1", "InService", "2")],
            status: None,
            hooks: None,
            notifications: None,
            active_refresh: None,
            resolved_version: None,
            started_refresh: None,
        }
    }

    fn base() -> Value {
        json!({"name": "g", "launch_template": {"launch_template_name": "lt", "version": "2"},
               "min_size": 1, "max_size": 3, "vpc_zone_identifier": ["subnet-b", "subnet-a"],
               "tags": [{"Name": "mylb"}], "instance_refresh": {}})
    }

    #[test]
    fn the_same_group_however_written_plans_nothing() {
        let ch = plan(&ok(base()), Some(&existing())).unwrap_or_else(|f| panic!("{}", f.msg));
        assert_eq!(ch, Changes::default());
        // Tags as a dict: the same, propagated.
        let mut v = base();
        v["tags"] = json!({"Name": "mylb"});
        let ch = plan(&ok(v), Some(&existing())).unwrap_or_else(|f| panic!("{}", f.msg));
        assert_eq!(ch, Changes::default());
    }

    #[test]
    fn a_new_template_version_is_the_refresh_target_not_an_update() {
        let mut v = base();
        v["launch_template"]["version"] = json!("3");
        let ch = plan(&ok(v.clone()), Some(&existing())).unwrap_or_else(|f| panic!("{}", f.msg));
        // The group keeps its version until the refresh succeeds.
        assert!(ch.settings.is_empty(), "{ch:?}");
        assert_eq!(ch.refresh, RefreshPlan::Start);
        // A run before this one already rolls there: nothing to do.
        let mut g = existing();
        let target = |version: &str| TemplateRef {
            name: Some("lt".into()),
            id: None,
            version: Some(version.into()),
        };
        g.active_refresh = Some(ActiveRefresh {
            id: "r-1".into(),
            target: Some(target("3")),
        });
        let ch = plan(&ok(v.clone()), Some(&g)).unwrap_or_else(|f| panic!("{}", f.msg));
        assert_eq!(ch, Changes::default());
        // One that rolls somewhere else is replaced, not adopted.
        g.active_refresh = Some(ActiveRefresh {
            id: "r-1".into(),
            target: Some(target("4")),
        });
        let ch = plan(&ok(v.clone()), Some(&g)).unwrap_or_else(|f| panic!("{}", f.msg));
        assert_eq!(ch.refresh, RefreshPlan::Replace("r-1".into()));
        // Without instance_refresh: the update only.
        v.as_object_mut().map(|o| o.remove("instance_refresh"));
        let ch = plan(&ok(v), Some(&existing())).unwrap_or_else(|f| panic!("{}", f.msg));
        assert_eq!(
            (ch.settings, ch.refresh),
            (vec!["launch_template"], RefreshPlan::None)
        );
    }

    #[test]
    fn instances_on_an_old_version_refresh_unless_one_is_running() {
        let mut g = existing();
        g.instances.push(member("i-0", "InService", "1"));
        let ch = plan(&ok(base()), Some(&g)).unwrap_or_else(|f| panic!("{}", f.msg));
        assert!(ch.refresh == RefreshPlan::Start && ch.settings.is_empty());
        g.active_refresh = Some(ActiveRefresh {
            id: "r-1".into(),
            target: None,
        });
        let ch = plan(&ok(base()), Some(&g)).unwrap_or_else(|f| panic!("{}", f.msg));
        assert_eq!(ch.refresh, RefreshPlan::None);
    }

    #[test]
    fn latest_and_default_compare_by_what_they_resolve_to() {
        // A group on $Latest: its instances report numbers, never "$Latest".
        let mut g = existing();
        if let Some(lt) = g.settings.launch_template.as_mut() {
            lt.version = Some("$Latest".into());
        }
        g.instances = vec![member("i-1", "InService", "2")];
        let mut v = base();
        v["launch_template"]["version"] = json!("$Latest");
        g.resolved_version = Some("2".into());
        let ch = plan(&ok(v.clone()), Some(&g)).unwrap_or_else(|f| panic!("{}", f.msg));
        assert_eq!(
            ch,
            Changes::default(),
            "up to date: no refresh on every run"
        );
        g.resolved_version = Some("3".into());
        let ch = plan(&ok(v), Some(&g)).unwrap_or_else(|f| panic!("{}", f.msg));
        assert_eq!(ch.refresh, RefreshPlan::Start);
    }

    #[test]
    fn auto_rollback_needs_a_numbered_version() {
        let mut v = base();
        v["instance_refresh"] = json!({"auto_rollback": true});
        assert!(task_of(v.clone()).is_ok());
        v["launch_template"]["version"] = json!("$Latest");
        let e = task_of(v).err().unwrap_or_default();
        assert!(
            e.contains("auto_rollback needs launch_template.version as a number"),
            "{e}"
        );
    }

    #[test]
    fn notifications_compare_as_a_set_per_topic() {
        let mut v = base();
        v["notification_topic"] = json!("arn:aws:sns:us-east-1:123456789012:t");
        v["notification_types"] = json!([
            "autoscaling:EC2_INSTANCE_TERMINATE",
            "autoscaling:EC2_INSTANCE_LAUNCH"
        ]);
        let mut g = existing();
        g.notifications = Some(BTreeMap::new());
        let ch = plan(&ok(v.clone()), Some(&g)).unwrap_or_else(|f| panic!("{}", f.msg));
        assert!(ch.notifications);
        g.notifications = Some(BTreeMap::from([(
            "arn:aws:sns:us-east-1:123456789012:t".to_owned(),
            vec![
                "autoscaling:EC2_INSTANCE_LAUNCH".to_owned(),
                "autoscaling:EC2_INSTANCE_TERMINATE".to_owned(),
            ],
        )]));
        let ch = plan(&ok(v), Some(&g)).unwrap_or_else(|f| panic!("{}", f.msg));
        assert_eq!(ch, Changes::default());
    }

    #[test]
    fn tags_compare_with_propagation_and_purge() {
        let mut v = base();
        v["tags"] =
            json!([{"Name": "mylb", "propagate_at_launch": false}, {"domain": "lb.example.com"}]);
        let ch = plan(&ok(v), Some(&existing())).unwrap_or_else(|f| panic!("{}", f.msg));
        assert_eq!(
            ch.set_tags,
            Tags::from([
                ("Name".into(), ("mylb".into(), false)),
                ("domain".into(), ("lb.example.com".into(), true))
            ])
        );
        let mut v = base();
        v["tags"] = json!({});
        let ch = plan(&ok(v), Some(&existing())).unwrap_or_else(|f| panic!("{}", f.msg));
        assert_eq!(ch.unset_tags, ["Name"]);
    }

    #[test]
    fn sizes_and_hooks() {
        let mut v = base();
        v["desired_capacity"] = json!(3);
        v["lifecycle_hooks"] = json!([{"name": "launch", "transition": "autoscaling:EC2_INSTANCE_LAUNCHING",
                                       "heartbeat_timeout": 300, "notification_meta_data": {"a": 1}}]);
        let mut g = existing();
        g.hooks = Some(BTreeMap::from([(
            "launch".to_owned(),
            Hook {
                transition: Some("autoscaling:EC2_INSTANCE_LAUNCHING".into()),
                metadata: Some(r#"{ "a" : 1 }"#.into()),
                heartbeat_timeout: Some(300),
                default_result: Some("ABANDON".into()),
                ..Hook::default()
            },
        )]));
        let ch = plan(&ok(v.clone()), Some(&g)).unwrap_or_else(|f| panic!("{}", f.msg));
        assert_eq!(ch.settings, ["desired_capacity"]);
        assert!(ch.hooks.is_empty(), "same hook, metadata as JSON");
        g.hooks = Some(BTreeMap::new());
        let ch = plan(&ok(v), Some(&g)).unwrap_or_else(|f| panic!("{}", f.msg));
        assert_eq!(ch.hooks.len(), 1);
    }

    #[test]
    fn a_create_needs_its_settings_and_takes_the_hooks() {
        let ch = plan(
            &ok(json!({"name": "g", "lifecycle_hooks": [{"name": "l",
                "transition": "autoscaling:EC2_INSTANCE_LAUNCHING"}]})),
            None,
        );
        assert!(ch.is_err_and(|f| {
            f.msg
                .contains("launch_template, min_size, max_size required")
        }));
        let mut v = base();
        v["lifecycle_hooks"] =
            json!([{"name": "l", "transition": "autoscaling:EC2_INSTANCE_LAUNCHING"}]);
        let ch = plan(&ok(v), None).unwrap_or_else(|f| panic!("{}", f.msg));
        assert!(ch.create && ch.hooks.len() == 1);
    }

    #[test]
    fn waiting_names_instances_held_by_a_hook() {
        let mut g = existing();
        g.settings.desired_capacity = Some(2);
        g.instances.push(member("i-9", "Pending:Wait", "2"));
        match instances_progress(&g, false) {
            Progress::Waiting(m) => {
                assert!(m.starts_with("1 of 2 instances"), "{m}");
                assert!(m.contains("i-9 held in Pending:Wait"), "{m}");
            }
            Progress::Done => panic!("not done"),
        }
        g.instances[1].lifecycle_state = "InService".into();
        assert_eq!(instances_progress(&g, false), Progress::Done);
        // Scaled in to one: not done while the other is still terminating.
        g.settings.desired_capacity = Some(1);
        g.instances[1].lifecycle_state = "Terminating:Wait".into();
        assert!(
            matches!(instances_progress(&g, false), Progress::Waiting(m) if m.contains("1 Terminating:Wait"))
        );
        // During a refresh the surplus is the refresh's: done at desired.
        g.instances[1].lifecycle_state = "InService".into();
        assert!(matches!(
            instances_progress(&g, false),
            Progress::Waiting(_)
        ));
        assert_eq!(instances_progress(&g, true), Progress::Done);
        g.instances.pop();
        assert_eq!(instances_progress(&g, false), Progress::Done);
    }

    #[test]
    fn bad_arguments_fail_before_any_call() {
        let e = |v| task_of(v).err().unwrap_or_default();
        assert!(e(json!({"name": "g", "min_size": 3, "max_size": 1})).contains("above max_size"));
        assert!(
            e(json!({"name": "g", "min_size": 1, "max_size": 2, "desired_capacity": 5}))
                .contains("outside")
        );
        assert!(e(json!({"name": "g", "vpc_zone_identifier": ["sub-1"]})).contains("'sub-1'"));
        assert!(e(json!({"name": "g", "tags": "x"})).contains("dict"));
        assert!(
            e(json!({"name": "g", "lifecycle_hooks": [
                {"name": "a", "transition": "autoscaling:EC2_INSTANCE_LAUNCHING"},
                {"name": "a", "transition": "autoscaling:EC2_INSTANCE_TERMINATING"}]}))
            .contains("twice")
        );
        assert!(
            e(json!({"name": "g", "lifecycle_hooks": [
                {"name": "a", "transition": "autoscaling:EC2_INSTANCE_LAUNCHING", "heartbeat_timeout": 1}]}))
            .contains("'a': heartbeat_timeout")
        );
        assert!(
            e(
                json!({"name": "g", "launch_template": {"launch_template_name": "a",
                                                        "launch_template_id": "b"}})
            )
            .contains("mutually exclusive")
        );
    }
}
