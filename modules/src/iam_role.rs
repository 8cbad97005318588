/*!
`iam_role`: one IAM role with its trust policy, inline policies, managed
policies and (when asked) its instance profile. Parameters and return values
follow `amazon.aws.iam_role`; inline policies are managed here too.

Policies are compared as parsed, normalised JSON (see
[`craftlb_core::policy`]), so a run without a change reads and never writes
— and needs no write permission (amazon.aws needed
`iam:UpdateAssumeRolePolicy` on every run). An instance profile is made only
when asked; `state: absent` removes inline policies, detaches managed ones,
takes the role out of its instance profiles and deletes the one named after
it, then the role.
*/

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;

use aws_sdk_iam::Client;
use aws_sdk_iam::types::Tag;
use craftlb_core::error::{Error, ErrorKind, sdk_error};
use craftlb_core::paginate::{Page, collect_all};
use craftlb_core::policy;
use craftlb_core::tags::{TagPlan, plan_task_tags};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::aws::{AWS, Connection, PURGE_TAGS, TAGS, tag_map};
use crate::driver::{Resource, drive};
use crate::protocol::{
    Ctx, Default, Failure, Module, Param, Params, Response, RunFuture, Spec, Type,
};

pub const NAME: &str = "iam_role";

pub static MODULE: Module = Module {
    name: NAME,
    spec: &SPEC,
    doc: include_str!("../docs/iam_role.yml"),
    run: |ctx| -> RunFuture { Box::pin(run(ctx)) },
};

pub static SPEC: Spec = Spec {
    params: &[
        Param::str("name")
            .required()
            .aliases(&["role_name"])
            .doc(&["The role's name."]),
        Param::str("state")
            .choices(&["present", "absent"])
            .default(Default::Str("present"))
            .doc(&["Whether the role should exist."]),
        Param::str("path")
            .aliases(&["prefix", "path_prefix"])
            .doc(&[
                "The role's path. C(/) when not given at creation. It cannot be changed once the role \
                 exists (the task fails naming it).",
            ]),
        Param::new("assume_role_policy_document", Type::Raw).doc(&[
            "The trust policy, a dict or JSON text. Required to create the role.",
            "Compared as normalised JSON: no write when only spelling differs.",
        ]),
        Param::str("description").doc(&[
            "The role's description. Not given, it is left as it is; an empty string clears it.",
        ]),
        Param::int("max_session_duration").doc(&[
            "Longest session in seconds (3600-43200). AWS uses 3600 when not given at creation.",
        ]),
        Param::str("boundary")
            .aliases(&["boundary_policy_arn"])
            .doc(&[
                "ARN of the permissions boundary. Not given, it is left as it is; an empty string removes \
                 it.",
            ]),
        Param::list("managed_policies", Type::Str)
            .aliases(&["managed_policy"])
            .doc(&[
                "ARNs of managed policies to attach. Not given, attachments are left as they are.",
            ]),
        Param::bool("purge_policies")
            .default(Default::Bool(true))
            .aliases(&["purge_policy", "purge_managed_policies"])
            .doc(&[
                "Detach managed policies not in I(managed_policies). Ignored when I(managed_policies) is \
                 not given.",
            ]),
        Param::dict("inline_policies").doc(&[
            "Inline policies: a dict of policy name to policy document (a dict or JSON text).",
            "Not given, inline policies are left as they are.",
        ]),
        Param::bool("purge_inline_policies")
            .default(Default::Bool(true))
            .doc(&[
                "Delete inline policies not in I(inline_policies). Ignored when I(inline_policies) is not \
                 given.",
            ]),
        Param::bool("create_instance_profile")
            .default(Default::Bool(false))
            .doc(&[
                "Make an instance profile named after the role, holding it (EC2 instances use roles \
                 through one). Never made unless asked.",
            ]),
        TAGS,
        PURGE_TAGS,
    ],
    includes: &[&AWS],
    ..Spec::EMPTY
};

#[derive(Debug, Deserialize)]
struct Args {
    name: String,
    state: String,
    path: Option<String>,
    assume_role_policy_document: Option<Value>,
    description: Option<String>,
    max_session_duration: Option<i64>,
    boundary: Option<String>,
    managed_policies: Option<Vec<String>>,
    purge_policies: bool,
    inline_policies: Option<Map<String, Value>>,
    purge_inline_policies: bool,
    create_instance_profile: bool,
    tags: Option<Map<String, Value>>,
    purge_tags: bool,
    #[serde(flatten)]
    connection: Connection,
}

/// A policy given as a dict or as JSON text; `what` names it in errors.
fn policy_doc(v: &Value, what: &str) -> Result<Value, Failure> {
    match v {
        Value::Object(_) => Ok(v.clone()),
        Value::String(s) => policy::parse(s).map_err(|e| Failure::msg(format!("{what}: {e}"))),
        other => Err(Failure::msg(format!(
            "{what} must be a dict or JSON text, got {other}"
        ))),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub present: bool,
    pub name: String,
    pub path: Option<String>,
    pub trust: Option<Value>,
    pub description: Option<String>,
    pub max_session_duration: Option<i32>,
    pub boundary: Option<String>,
    pub managed: Option<BTreeSet<String>>,
    pub purge_managed: bool,
    pub inline: Option<BTreeMap<String, Value>>,
    pub purge_inline: bool,
    pub instance_profile: bool,
    pub tags: Option<BTreeMap<String, String>>,
    pub purge_tags: bool,
}

pub fn task(p: &Params) -> Result<Task, Failure> {
    let a: Args = p.typed()?;
    let trust = a
        .assume_role_policy_document
        .as_ref()
        .map(|d| policy_doc(d, "assume_role_policy_document"))
        .transpose()?;
    let inline = a
        .inline_policies
        .as_ref()
        .map(|m| {
            m.iter()
                .map(|(k, v)| Ok((k.clone(), policy_doc(v, &format!("inline_policies.{k}"))?)))
                .collect::<Result<BTreeMap<_, _>, Failure>>()
        })
        .transpose()?;
    let max = a
        .max_session_duration
        .map(|m| {
            i32::try_from(m)
                .ok()
                .filter(|m| (3600..=43200).contains(m))
                .ok_or_else(|| {
                    Failure::msg(format!("max_session_duration must be 3600-43200, got {m}"))
                })
        })
        .transpose()?;
    if let Some(p) = a
        .path
        .as_ref()
        .filter(|p| !p.starts_with('/') || !p.ends_with('/'))
    {
        return Err(Failure::msg(format!(
            "path must begin and end with '/', got '{p}'"
        )));
    }
    Ok(Task {
        present: a.state != "absent",
        name: a.name,
        path: a.path,
        trust,
        description: a.description,
        max_session_duration: max,
        boundary: a.boundary,
        managed: a.managed_policies.map(|v| v.into_iter().collect()),
        purge_managed: a.purge_policies,
        inline,
        purge_inline: a.purge_inline_policies,
        instance_profile: a.create_instance_profile,
        tags: a.tags.as_ref().map(tag_map),
        purge_tags: a.purge_tags,
    })
}

/// A role as read. Managed and inline policies and the instance profile are
/// read only when the task manages them (constant calls either way).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Current {
    pub arn: String,
    pub role_id: String,
    pub name: String,
    pub path: String,
    pub create_date: Option<String>,
    pub trust: Value,
    pub description: Option<String>,
    pub max_session_duration: Option<i32>,
    pub boundary: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub managed: Option<BTreeSet<String>>,
    pub inline: Option<BTreeMap<String, Value>>,
    /// The instance profile named after the role: (arn, holds this role).
    pub instance_profile: Option<(String, bool)>,
}

/// One step of an update, in the order they are applied.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Create,
    Trust(Value),
    Description(String),
    MaxSession(i32),
    PutBoundary(String),
    DeleteBoundary,
    PutInline(String, Value),
    DeleteInline(String),
    Attach(String),
    Detach(String),
    Tags(TagPlan),
    CreateInstanceProfile,
    AddToInstanceProfile,
}

/// The pure plan.
pub fn plan(t: &Task, current: Option<&Current>) -> Result<Vec<Step>, Failure> {
    let Some(c) = current else {
        if t.trust.is_none() {
            return Err(Failure::msg(format!(
                "role '{}' does not exist; assume_role_policy_document is needed to create it",
                t.name
            )));
        }
        let mut steps = vec![Step::Create];
        // Everything the create call cannot set.
        if let Some(inline) = &t.inline {
            steps.extend(
                inline
                    .iter()
                    .map(|(n, d)| Step::PutInline(n.clone(), d.clone())),
            );
        }
        if let Some(managed) = &t.managed {
            steps.extend(managed.iter().cloned().map(Step::Attach));
        }
        if t.instance_profile {
            steps.push(Step::CreateInstanceProfile);
            steps.push(Step::AddToInstanceProfile);
        }
        return Ok(steps);
    };
    if let Some(p) = t.path.as_ref().filter(|p| **p != c.path) {
        return Err(Failure::msg(format!(
            "role '{}' has path '{}'; IAM cannot change a role's path to '{p}' (delete and create it again)",
            t.name, c.path
        )));
    }
    let mut steps = Vec::new();
    if let Some(trust) = t.trust.as_ref().filter(|d| !policy::same(d, &c.trust)) {
        steps.push(Step::Trust(trust.clone()));
    }
    if let Some(d) = t
        .description
        .as_ref()
        .filter(|d| c.description.as_deref().unwrap_or_default() != d.as_str())
    {
        steps.push(Step::Description(d.clone()));
    }
    if let Some(m) = t
        .max_session_duration
        .filter(|m| Some(*m) != c.max_session_duration)
    {
        steps.push(Step::MaxSession(m));
    }
    match (t.boundary.as_deref(), c.boundary.as_deref()) {
        (Some(""), Some(_)) => steps.push(Step::DeleteBoundary),
        (Some(b), have) if !b.is_empty() && Some(b) != have => {
            steps.push(Step::PutBoundary(b.to_owned()));
        }
        _ => {}
    }
    if let (Some(want), Some(have)) = (&t.inline, &c.inline) {
        for (n, d) in want {
            if !have.get(n).is_some_and(|h| policy::same(h, d)) {
                steps.push(Step::PutInline(n.clone(), d.clone()));
            }
        }
        if t.purge_inline {
            steps.extend(
                have.keys()
                    .filter(|n| !want.contains_key(*n))
                    .cloned()
                    .map(Step::DeleteInline),
            );
        }
    }
    if let (Some(want), Some(have)) = (&t.managed, &c.managed) {
        steps.extend(want.difference(have).cloned().map(Step::Attach));
        if t.purge_managed {
            steps.extend(have.difference(want).cloned().map(Step::Detach));
        }
    }
    let tags = plan_task_tags(&c.tags, t.tags.as_ref(), t.purge_tags);
    if !tags.is_empty() {
        steps.push(Step::Tags(tags));
    }
    if t.instance_profile {
        match &c.instance_profile {
            None => {
                steps.push(Step::CreateInstanceProfile);
                steps.push(Step::AddToInstanceProfile);
            }
            Some((_, false)) => steps.push(Step::AddToInstanceProfile),
            Some((_, true)) => {}
        }
    }
    Ok(steps)
}

/// The IAM calls this module makes.
#[allow(async_fn_in_trait)]
pub trait Api {
    async fn get_role(&self, name: &str) -> Result<Option<Current>, Error>;
    async fn managed(&self, name: &str) -> Result<BTreeSet<String>, Error>;
    async fn inline(&self, name: &str) -> Result<BTreeMap<String, Value>, Error>;
    /// The instance profile named `name`: its ARN and whether it holds role `name`.
    async fn instance_profile(&self, name: &str) -> Result<Option<(String, bool)>, Error>;
    async fn step(&self, t: &Task, step: &Step) -> Result<(), Error>;
    async fn delete_role(&self, name: &str) -> Result<(), Error>;
    /// The caller's partition and account id.
    async fn account(&self) -> Result<(String, String), Error>;
}

/// The SDK behind [`Api`]: IAM, and the configuration STS needs.
pub struct SdkApi {
    iam: Client,
    config: aws_types::SdkConfig,
}

/// NotFound is an answer, not an error.
fn found<T>(r: Result<T, Error>) -> Result<Option<T>, Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn parse_policy(text: &str, what: &str) -> Result<Value, Error> {
    policy::parse(text).map_err(|e| Error::new(ErrorKind::Rejected, format!("read {what}"), e))
}

impl Api for SdkApi {
    async fn account(&self) -> Result<(String, String), Error> {
        craftlb_core::aws::caller_account(&self.config).await
    }

    async fn get_role(&self, name: &str) -> Result<Option<Current>, Error> {
        let out = found(
            self.iam
                .get_role()
                .role_name(name)
                .send()
                .await
                .map_err(sdk_error("IAM", "GetRole", format!("read role '{name}'"))),
        )?;
        let Some(role) = out.and_then(|o| o.role) else {
            return Ok(None);
        };
        let trust = match role.assume_role_policy_document() {
            Some(d) => parse_policy(d, &format!("the trust policy of role '{name}'"))?,
            None => Value::Null,
        };
        Ok(Some(Current {
            arn: role.arn().to_owned(),
            role_id: role.role_id().to_owned(),
            name: role.role_name().to_owned(),
            path: role.path().to_owned(),
            create_date: Some(role.create_date().to_string()),
            trust,
            description: role.description().map(str::to_owned),
            max_session_duration: role.max_session_duration(),
            boundary: role
                .permissions_boundary()
                .and_then(|b| b.permissions_boundary_arn())
                .map(str::to_owned),
            tags: role
                .tags()
                .iter()
                .map(|t| (t.key().to_owned(), t.value().to_owned()))
                .collect(),
            ..Current::default()
        }))
    }

    async fn managed(&self, name: &str) -> Result<BTreeSet<String>, Error> {
        let what = format!("the managed policies of role '{name}'");
        let arns = collect_all(&what, |marker| async {
            let page = self
                .iam
                .list_attached_role_policies()
                .role_name(name)
                .set_marker(marker)
                .send()
                .await
                .map_err(sdk_error(
                    "IAM",
                    "ListAttachedRolePolicies",
                    format!("list {what}"),
                ))?;
            Ok(Page {
                items: page
                    .attached_policies()
                    .iter()
                    .filter_map(|p| p.policy_arn().map(str::to_owned))
                    .collect(),
                next: page
                    .marker()
                    .map(str::to_owned)
                    .filter(|_| page.is_truncated()),
            })
        })
        .await?;
        Ok(arns.into_iter().collect())
    }

    async fn inline(&self, name: &str) -> Result<BTreeMap<String, Value>, Error> {
        let what = format!("the inline policies of role '{name}'");
        let names = collect_all(&what, |marker| async {
            let page = self
                .iam
                .list_role_policies()
                .role_name(name)
                .set_marker(marker)
                .send()
                .await
                .map_err(sdk_error("IAM", "ListRolePolicies", format!("list {what}")))?;
            Ok(Page {
                items: page.policy_names().to_vec(),
                next: page
                    .marker()
                    .map(str::to_owned)
                    .filter(|_| page.is_truncated()),
            })
        })
        .await?;
        let mut out = BTreeMap::new();
        for p in names {
            let doc = self
                .iam
                .get_role_policy()
                .role_name(name)
                .policy_name(&p)
                .send()
                .await
                .map_err(sdk_error(
                    "IAM",
                    "GetRolePolicy",
                    format!("read inline policy '{p}' of role '{name}'"),
                ))?;
            let v = parse_policy(doc.policy_document(), &format!("inline policy '{p}'"))?;
            out.insert(p, v);
        }
        Ok(out)
    }

    async fn instance_profile(&self, name: &str) -> Result<Option<(String, bool)>, Error> {
        let out = found(
            self.iam
                .get_instance_profile()
                .instance_profile_name(name)
                .send()
                .await
                .map_err(sdk_error(
                    "IAM",
                    "GetInstanceProfile",
                    format!("read instance profile '{name}'"),
                )),
        )?;
        Ok(out.and_then(|o| o.instance_profile).map(|p| {
            let holds = p.roles().iter().any(|r| r.role_name() == name);
            (p.arn().to_owned(), holds)
        }))
    }

    async fn step(&self, t: &Task, step: &Step) -> Result<(), Error> {
        let name = t.name.as_str();
        match step {
            Step::Create => {
                let tags: Vec<Tag> = t
                    .tags
                    .iter()
                    .flatten()
                    .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
                    .collect();
                self.iam
                    .create_role()
                    .role_name(name)
                    .path(t.path.as_deref().unwrap_or("/"))
                    .assume_role_policy_document(t.trust.clone().unwrap_or_default().to_string())
                    .set_description(t.description.clone().filter(|d| !d.is_empty()))
                    .set_max_session_duration(t.max_session_duration)
                    .set_permissions_boundary(t.boundary.clone().filter(|b| !b.is_empty()))
                    .set_tags((!tags.is_empty()).then_some(tags))
                    .send()
                    .await
                    .map_err(sdk_error(
                        "IAM",
                        "CreateRole",
                        format!("create role '{name}'"),
                    ))?;
            }
            Step::Trust(doc) => {
                self.iam
                    .update_assume_role_policy()
                    .role_name(name)
                    .policy_document(doc.to_string())
                    .send()
                    .await
                    .map_err(sdk_error(
                        "IAM",
                        "UpdateAssumeRolePolicy",
                        format!("update the trust policy of role '{name}'"),
                    ))?;
            }
            Step::Description(d) => {
                self.iam
                    .update_role()
                    .role_name(name)
                    .description(d)
                    .send()
                    .await
                    .map_err(sdk_error(
                        "IAM",
                        "UpdateRole",
                        format!("update role '{name}'"),
                    ))?;
            }
            Step::MaxSession(m) => {
                self.iam
                    .update_role()
                    .role_name(name)
                    .max_session_duration(*m)
                    .send()
                    .await
                    .map_err(sdk_error(
                        "IAM",
                        "UpdateRole",
                        format!("update role '{name}'"),
                    ))?;
            }
            Step::PutBoundary(b) => {
                self.iam
                    .put_role_permissions_boundary()
                    .role_name(name)
                    .permissions_boundary(b)
                    .send()
                    .await
                    .map_err(sdk_error(
                        "IAM",
                        "PutRolePermissionsBoundary",
                        format!("set the permissions boundary of role '{name}'"),
                    ))?;
            }
            Step::DeleteBoundary => {
                self.iam
                    .delete_role_permissions_boundary()
                    .role_name(name)
                    .send()
                    .await
                    .map_err(sdk_error(
                        "IAM",
                        "DeleteRolePermissionsBoundary",
                        format!("remove the permissions boundary of role '{name}'"),
                    ))?;
            }
            Step::PutInline(p, doc) => {
                self.iam
                    .put_role_policy()
                    .role_name(name)
                    .policy_name(p)
                    .policy_document(doc.to_string())
                    .send()
                    .await
                    .map_err(sdk_error(
                        "IAM",
                        "PutRolePolicy",
                        format!("put inline policy '{p}' of role '{name}'"),
                    ))?;
            }
            Step::DeleteInline(p) => {
                self.iam
                    .delete_role_policy()
                    .role_name(name)
                    .policy_name(p)
                    .send()
                    .await
                    .map_err(sdk_error(
                        "IAM",
                        "DeleteRolePolicy",
                        format!("delete inline policy '{p}' of role '{name}'"),
                    ))?;
            }
            Step::Attach(arn) => {
                self.iam
                    .attach_role_policy()
                    .role_name(name)
                    .policy_arn(arn)
                    .send()
                    .await
                    .map_err(sdk_error(
                        "IAM",
                        "AttachRolePolicy",
                        format!("attach '{arn}' to role '{name}'"),
                    ))?;
            }
            Step::Detach(arn) => {
                self.iam
                    .detach_role_policy()
                    .role_name(name)
                    .policy_arn(arn)
                    .send()
                    .await
                    .map_err(sdk_error(
                        "IAM",
                        "DetachRolePolicy",
                        format!("detach '{arn}' from role '{name}'"),
                    ))?;
            }
            Step::Tags(plan) => {
                if !plan.set.is_empty() {
                    let tags: Vec<Tag> = plan
                        .set
                        .iter()
                        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
                        .collect();
                    self.iam
                        .tag_role()
                        .role_name(name)
                        .set_tags(Some(tags))
                        .send()
                        .await
                        .map_err(sdk_error("IAM", "TagRole", format!("tag role '{name}'")))?;
                }
                if !plan.unset.is_empty() {
                    self.iam
                        .untag_role()
                        .role_name(name)
                        .set_tag_keys(Some(plan.unset.clone()))
                        .send()
                        .await
                        .map_err(sdk_error(
                            "IAM",
                            "UntagRole",
                            format!("untag role '{name}'"),
                        ))?;
                }
            }
            Step::CreateInstanceProfile => {
                self.iam
                    .create_instance_profile()
                    .instance_profile_name(name)
                    .path(t.path.as_deref().unwrap_or("/"))
                    .send()
                    .await
                    .map_err(sdk_error(
                        "IAM",
                        "CreateInstanceProfile",
                        format!("create instance profile '{name}'"),
                    ))?;
            }
            Step::AddToInstanceProfile => {
                self.iam
                    .add_role_to_instance_profile()
                    .instance_profile_name(name)
                    .role_name(name)
                    .send()
                    .await
                    .map_err(sdk_error(
                        "IAM",
                        "AddRoleToInstanceProfile",
                        format!("add role '{name}' to instance profile '{name}'"),
                    ))?;
            }
        }
        Ok(())
    }

    async fn delete_role(&self, name: &str) -> Result<(), Error> {
        // What IAM insists is gone before the role can go.
        for arn in self.managed(name).await? {
            self.iam
                .detach_role_policy()
                .role_name(name)
                .policy_arn(&arn)
                .send()
                .await
                .map_err(sdk_error(
                    "IAM",
                    "DetachRolePolicy",
                    format!("detach '{arn}' from role '{name}'"),
                ))?;
        }
        for p in self.inline(name).await?.keys() {
            self.iam
                .delete_role_policy()
                .role_name(name)
                .policy_name(p)
                .send()
                .await
                .map_err(sdk_error(
                    "IAM",
                    "DeleteRolePolicy",
                    format!("delete inline policy '{p}' of role '{name}'"),
                ))?;
        }
        let profiles = self
            .iam
            .list_instance_profiles_for_role()
            .role_name(name)
            .send()
            .await
            .map_err(sdk_error(
                "IAM",
                "ListInstanceProfilesForRole",
                format!("list the instance profiles of role '{name}'"),
            ))?;
        for p in profiles.instance_profiles() {
            let profile = p.instance_profile_name();
            self.iam
                .remove_role_from_instance_profile()
                .instance_profile_name(profile)
                .role_name(name)
                .send()
                .await
                .map_err(sdk_error(
                    "IAM",
                    "RemoveRoleFromInstanceProfile",
                    format!("take role '{name}' out of instance profile '{profile}'"),
                ))?;
            // The profile this module makes bears the role's name.
            if profile == name {
                self.iam
                    .delete_instance_profile()
                    .instance_profile_name(profile)
                    .send()
                    .await
                    .map_err(sdk_error(
                        "IAM",
                        "DeleteInstanceProfile",
                        format!("delete instance profile '{profile}'"),
                    ))?;
            }
        }
        self.iam
            .delete_role()
            .role_name(name)
            .send()
            .await
            .map_err(sdk_error(
                "IAM",
                "DeleteRole",
                format!("delete role '{name}'"),
            ))?;
        Ok(())
    }
}

fn describe(c: &Current) -> Value {
    let mut v = json!({
        "arn": c.arn,
        "role_id": c.role_id,
        "role_name": c.name,
        "path": c.path,
        "create_date": c.create_date,
        "assume_role_policy_document": c.trust,
        "max_session_duration": c.max_session_duration,
        "tags": c.tags,
    });
    if let Some(o) = v.as_object_mut() {
        let extra = [
            ("description", c.description.clone().map(Value::from)),
            ("permissions_boundary", c.boundary.clone().map(Value::from)),
            (
                "attached_policies",
                c.managed.as_ref().map(|m| {
                    Value::from(
                        m.iter()
                            .map(|arn| {
                                json!({"policy_arn": arn,
                                       "policy_name": arn.rsplit('/').next().unwrap_or(arn)})
                            })
                            .collect::<Vec<_>>(),
                    )
                }),
            ),
            ("inline_policies", c.inline.as_ref().map(|i| json!(i))),
            (
                "instance_profile_arn",
                c.instance_profile
                    .as_ref()
                    .filter(|(_, holds)| *holds)
                    .map(|(arn, _)| Value::from(arn.clone())),
            ),
        ];
        for (k, val) in extra {
            if let Some(val) = val {
                o.insert(k.into(), val);
            }
        }
    }
    v
}

/// The role after `steps` (check mode: predicted, not read); `account`
/// (partition, id) gives a role still to be created the ARN it will have.
fn predict(
    t: &Task,
    current: Option<&Current>,
    steps: &[Step],
    account: Option<&(String, String)>,
) -> Current {
    let mut c = current.cloned().unwrap_or_else(|| Current {
        name: t.name.clone(),
        path: t.path.clone().unwrap_or_else(|| "/".into()),
        max_session_duration: Some(3600),
        managed: t.managed.as_ref().map(|_| BTreeSet::new()),
        inline: t.inline.as_ref().map(|_| BTreeMap::new()),
        tags: t.tags.clone().unwrap_or_default(),
        ..Current::default()
    });
    if let (true, Some((partition, id))) = (c.arn.is_empty(), account) {
        c.arn = format!("arn:{partition}:iam::{id}:role{}{}", c.path, c.name);
    }
    for s in steps {
        match s {
            Step::Create => {
                c.trust = t.trust.clone().unwrap_or_default();
                c.description = t.description.clone().filter(|d| !d.is_empty());
                c.max_session_duration = t.max_session_duration.or(Some(3600));
                c.boundary = t.boundary.clone().filter(|b| !b.is_empty());
            }
            Step::Trust(d) => c.trust = d.clone(),
            Step::Description(d) => c.description = Some(d.clone()),
            Step::MaxSession(m) => c.max_session_duration = Some(*m),
            Step::PutBoundary(b) => c.boundary = Some(b.clone()),
            Step::DeleteBoundary => c.boundary = None,
            Step::PutInline(n, d) => {
                c.inline
                    .get_or_insert_with(BTreeMap::new)
                    .insert(n.clone(), d.clone());
            }
            Step::DeleteInline(n) => {
                if let Some(i) = c.inline.as_mut() {
                    i.remove(n);
                }
            }
            Step::Attach(a) => {
                c.managed
                    .get_or_insert_with(BTreeSet::new)
                    .insert(a.clone());
            }
            Step::Detach(a) => {
                if let Some(m) = c.managed.as_mut() {
                    m.remove(a);
                }
            }
            Step::Tags(p) => c.tags = p.apply(&c.tags),
            Step::CreateInstanceProfile | Step::AddToInstanceProfile => {
                c.instance_profile = Some((String::new(), true));
            }
        }
    }
    c
}

pub struct Role<A>(PhantomData<A>);

impl<A: Api> Resource for Role<A> {
    type Task = Task;
    type Api = A;
    type Current = Current;
    type Changes = Vec<Step>;
    const KEY: &'static str = "iam_role";

    fn present(t: &Task) -> bool {
        t.present
    }

    async fn read(api: &A, t: &Task) -> Result<Option<Current>, Failure> {
        let Some(mut c) = api.get_role(&t.name).await? else {
            return Ok(None);
        };
        if t.present {
            if t.managed.is_some() {
                c.managed = Some(api.managed(&t.name).await?);
            }
            if t.inline.is_some() {
                c.inline = Some(api.inline(&t.name).await?);
            }
            if t.instance_profile {
                c.instance_profile = api.instance_profile(&t.name).await?;
            }
        }
        Ok(Some(c))
    }

    fn plan(t: &Task, current: Option<&Current>) -> Result<Vec<Step>, Failure> {
        plan(t, current)
    }

    async fn apply(
        api: &A,
        t: &Task,
        _current: Option<&Current>,
        steps: &Vec<Step>,
    ) -> Result<Current, Failure> {
        for s in steps {
            api.step(t, s).await?;
        }
        <Self as Resource>::read(api, t).await?.ok_or_else(|| {
            Failure::msg(format!(
                "role '{}' was written but cannot be read back (IAM is eventually consistent; run again)",
                t.name
            ))
        })
    }

    async fn delete(api: &A, t: &Task, _: &Current) -> Result<bool, Failure> {
        api.delete_role(&t.name).await?;
        Ok(true)
    }

    fn describe(c: &Current) -> Value {
        describe(c)
    }

    fn preview(t: &Task, current: Option<&Current>, steps: &Vec<Step>) -> Value {
        describe(&predict(t, current, steps, None))
    }

    async fn account(api: &A) -> Result<Option<(String, String)>, Failure> {
        Ok(Some(api.account().await?))
    }

    fn preview_create(t: &Task, steps: &Vec<Step>, account: Option<&(String, String)>) -> Value {
        describe(&predict(t, None, steps, account))
    }
}

pub async fn run(ctx: Ctx) -> Result<Response, Failure> {
    let t = task(&ctx.params)?;
    let a: Args = ctx.params.typed()?;
    // IAM is global: us-east-1 when nothing names a region.
    let config =
        craftlb_core::aws::sdk_config(&a.connection.aws_params(), Some("us-east-1")).await?;
    let api = SdkApi {
        iam: Client::new(&config),
        config,
    };
    drive::<Role<SdkApi>>(&api, &t, ctx.check_mode).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::validate;

    fn task_of(v: Value) -> Task {
        crate::protocol::task_of(&SPEC, v, task).unwrap_or_else(|e| panic!("{e}"))
    }

    fn trust(service: &str) -> Value {
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
               "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]})
    }

    fn existing() -> Current {
        Current {
            arn: "arn:aws:iam::123456789012:role/r".into(),
            name: "r".into(),
            path: "/".into(),
            // As IAM returns it: lists where one string was given.
            trust: json!({"Statement": [{"Action": ["sts:AssumeRole"], "Effect": "Allow",
                          "Principal": {"Service": ["lambda.amazonaws.com"]}}], "Version": "2012-10-17"}),
            max_session_duration: Some(3600),
            managed: Some(["arn:aws:iam::aws:policy/A".to_owned()].into()),
            inline: Some(
                [(
                    "logs".to_owned(),
                    json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["logs:PutLogEvents"], "Resource": ["*"]}]}),
                )]
                .into(),
            ),
            tags: [("team".to_owned(), "edge".to_owned())].into(),
            ..Current::default()
        }
    }

    #[test]
    fn the_same_role_spelled_differently_is_no_change() {
        let t = task_of(
            json!({"name": "r", "assume_role_policy_document": trust("lambda.amazonaws.com"),
            "managed_policies": ["arn:aws:iam::aws:policy/A"],
            "inline_policies": {"logs": "{\"Version\": \"2012-10-17\", \"Statement\": {\"Effect\": \"Allow\", \"Action\": \"logs:PutLogEvents\", \"Resource\": \"*\"}}"},
            "tags": {"team": "edge"}}),
        );
        assert_eq!(plan(&t, Some(&existing())), Ok(vec![]));
        // Not managed at all: nothing read, nothing changed.
        let t = task_of(json!({"name": "r"}));
        assert_eq!(plan(&t, Some(&existing())), Ok(vec![]));
    }

    #[test]
    fn changes_and_purges_only_what_is_managed() {
        let t = task_of(
            json!({"name": "r", "assume_role_policy_document": trust("ec2.amazonaws.com"),
            "managed_policies": ["arn:aws:iam::aws:policy/B"], "purge_policies": false,
            "inline_policies": {}, "description": "edge", "boundary": "arn:aws:iam::123456789012:policy/b"}),
        );
        let steps = plan(&t, Some(&existing())).unwrap_or_default();
        assert_eq!(
            steps,
            vec![
                Step::Trust(trust("ec2.amazonaws.com")),
                Step::Description("edge".into()),
                Step::PutBoundary("arn:aws:iam::123456789012:policy/b".into()),
                Step::DeleteInline("logs".into()),
                Step::Attach("arn:aws:iam::aws:policy/B".into()),
            ]
        );
    }

    #[test]
    fn create_needs_a_trust_policy_and_the_profile_only_when_asked() {
        let t = task_of(json!({"name": "r"}));
        assert!(plan(&t, None).is_err());
        let t = task_of(
            json!({"name": "r", "assume_role_policy_document": trust("ec2.amazonaws.com")}),
        );
        assert_eq!(plan(&t, None), Ok(vec![Step::Create]));
        let t = task_of(
            json!({"name": "r", "assume_role_policy_document": trust("ec2.amazonaws.com"),
                               "create_instance_profile": true}),
        );
        assert_eq!(
            plan(&t, None),
            Ok(vec![
                Step::Create,
                Step::CreateInstanceProfile,
                Step::AddToInstanceProfile
            ])
        );
        let mut c = existing();
        c.instance_profile = Some(("arn".into(), true));
        assert_eq!(
            plan(&t, Some(&c)).map(|s| s.len()),
            Ok(1),
            "only the trust differs"
        );
    }

    #[test]
    fn path_cannot_change() {
        let t = task_of(json!({"name": "r", "path": "/other/"}));
        assert!(
            plan(&t, Some(&existing()))
                .err()
                .is_some_and(|f| f.msg.contains("path"))
        );
        let p = validate(
            &SPEC,
            json!({"name": "r", "path": "nope"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        )
        .unwrap_or_else(|e| panic!("{}", e.0));
        assert!(task(&p).is_err());
    }
}
