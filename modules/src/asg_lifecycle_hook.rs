/*!
`asg_lifecycle_hook`: one Auto Scaling lifecycle hook, with the parameters
and return values of `community.aws.autoscaling_lifecycle_hook`.

Differences a user will notice: metadata may be given as a dict and is
compared as JSON (key order and spacing never make a change); a field that
is not given is left as it is, an empty target removes the target (AWS
cannot remove a role or metadata from an existing hook: that fails before
any write); the defaults AWS applies at creation (heartbeat 3600 s,
ABANDON) never turn into a change of an existing hook; the hook is written
whole in one PutLifecycleHook, retried while IAM propagates a new role.
*/

use std::marker::PhantomData;

use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::types::LifecycleHook;
use craftlb_core::consistency;
use craftlb_core::error::{Error, sdk_error};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::aws::{AWS, Connection};
use crate::driver::{Resource, drive};
use crate::protocol::{
    Ctx, Default, Failure, Module, Param, Params, RequiredIf, Response, RunFuture, Spec, Type,
};

pub const NAME: &str = "asg_lifecycle_hook";

pub static MODULE: Module = Module {
    name: NAME,
    spec: &SPEC,
    doc: include_str!("../docs/asg_lifecycle_hook.yml"),
    run: |ctx| -> RunFuture { Box::pin(run(ctx)) },
};

pub const LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";
pub const TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";

/// A hook's settings, as this module and `autoscaling_group`'s
/// `lifecycle_hooks` take them.
pub const TRANSITION: Param = Param::str("transition")
    .choices(&[LAUNCHING, TERMINATING])
    .doc(&["The instance state the hook holds."]);
pub const ROLE_ARN: Param = Param::str("role_arn").doc(&[
    "The role that lets Auto Scaling publish to I(notification_target_arn).",
    "Not given, it is left as it is. AWS cannot remove the role of an existing hook: an empty string \
     fails there before any change (delete the hook and create it again).",
    "A role made moments before is retried for up to two minutes while IAM propagates it (AWS answers \
     C(Unable to publish test message to notification target) meanwhile).",
]);
pub const TARGET: Param = Param::str("notification_target_arn").doc(&[
    "The SNS topic or SQS queue notified when an instance enters the hook's wait state.",
    "Not given, it is left as it is; an empty string removes it.",
]);
pub const METADATA: Param = Param::new("notification_meta_data", Type::Raw)
    .aliases(&["notification_metadata", "metadata"])
    .doc(&[
        "Sent with every notification (at most 4000 characters of printable ASCII). A dict is sent as JSON; a string as it \
         is.",
        "Compared as JSON when both sides are JSON, so key order and spacing never make a change.",
        "Not given, it is left as it is. AWS cannot remove the metadata of an existing hook: an empty \
         string fails there before any change (delete the hook and create it again).",
    ]);
pub const HEARTBEAT: Param = Param::int("heartbeat_timeout").doc(&[
    "Seconds an instance may wait before the default result applies (30-7200).",
    "AWS uses 3600 when it is not given at creation; not given later, the hook keeps its value.",
]);
pub const DEFAULT_RESULT: Param = Param::str("default_result")
    .choices(&["ABANDON", "CONTINUE"])
    .doc(&[
        "The result when the timeout passes or an error happens.",
        "AWS uses C(ABANDON) when it is not given at creation; not given later, the hook keeps its value.",
    ]);

pub static SPEC: Spec = Spec {
    params: &[
        Param::str("state")
            .choices(&["present", "absent"])
            .default(Default::Str("present"))
            .doc(&["Whether the hook should exist."]),
        Param::str("autoscaling_group_name")
            .required()
            .aliases(&["asg_name"])
            .doc(&["The Auto Scaling group the hook belongs to."]),
        Param::str("lifecycle_hook_name")
            .required()
            .aliases(&["name"])
            .doc(&["The name of the hook."]),
        TRANSITION.doc(&["The instance state the hook holds. Required with I(state=present)."]),
        ROLE_ARN,
        TARGET,
        METADATA,
        HEARTBEAT,
        DEFAULT_RESULT,
    ],
    includes: &[&AWS],
    required_if: &[RequiredIf {
        param: "state",
        value: "present",
        requires: &["transition"],
        any: false,
    }],
    ..Spec::EMPTY
};

#[derive(Debug, Deserialize)]
struct Args {
    state: String,
    autoscaling_group_name: String,
    lifecycle_hook_name: String,
    #[serde(flatten)]
    hook: HookArgs,
    #[serde(flatten)]
    connection: Connection,
}

/// A hook's settings. In a task, `None` leaves a setting alone and `""`
/// removes an optional one; read from AWS, `None` means not set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hook {
    pub transition: Option<String>,
    pub role_arn: Option<String>,
    pub notification_target_arn: Option<String>,
    pub metadata: Option<String>,
    pub heartbeat_timeout: Option<i32>,
    pub default_result: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub present: bool,
    pub group: String,
    pub name: String,
    pub desired: Hook,
}

/// AWS's limit on NotificationMetadata (its API model: 1-4000 characters of
/// printable ASCII, tab and newlines).
const METADATA_MAX: usize = 4000;

/// A hook's settings as given (the params of [`TRANSITION`] and the rest),
/// validated: metadata as text within AWS's limit, the heartbeat in range.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HookArgs {
    pub transition: Option<String>,
    pub role_arn: Option<String>,
    pub notification_target_arn: Option<String>,
    pub notification_meta_data: Option<Value>,
    pub heartbeat_timeout: Option<i64>,
    pub default_result: Option<String>,
}

impl HookArgs {
    pub fn hook(self) -> Result<Hook, Failure> {
        let metadata = match self.notification_meta_data {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(v @ (Value::Object(_) | Value::Array(_))) => Some(ascii_json(&v)),
            Some(other) => {
                return Err(Failure::msg(format!(
                    "notification_meta_data must be a dict or a string, got {other}"
                )));
            }
        };
        if let Some(m) = metadata.as_ref().filter(|m| m.len() > METADATA_MAX) {
            return Err(Failure::msg(format!(
                "notification_meta_data is {} characters; AWS takes at most {METADATA_MAX}",
                m.len()
            )));
        }
        if let Some(c) = metadata.as_deref().and_then(|m| {
            m.chars()
                .find(|c| !matches!(c, '\t' | '\n' | '\r' | ' '..='~'))
        }) {
            return Err(Failure::msg(format!(
                "notification_meta_data holds {c:?} (U+{:04X}); AWS takes printable ASCII, tab and \
                 newlines only (give the metadata as a dict: it is sent as JSON with such characters \
                 escaped)",
                c as u32
            )));
        }
        let heartbeat = self
            .heartbeat_timeout
            .map(|h| {
                i32::try_from(h)
                    .ok()
                    .filter(|h| (30..=7200).contains(h))
                    .ok_or_else(|| {
                        Failure::msg(format!(
                            "heartbeat_timeout must be 30-7200 seconds, got {h}"
                        ))
                    })
            })
            .transpose()?;
        Ok(Hook {
            transition: self.transition,
            role_arn: self.role_arn,
            notification_target_arn: self.notification_target_arn,
            metadata,
            heartbeat_timeout: heartbeat,
            default_result: self.default_result,
        })
    }
}

/// JSON text in printable ASCII, as NotificationMetadata must be: every
/// other character (they can only sit inside strings) as a `\uXXXX` escape.
fn ascii_json(v: &Value) -> String {
    let text = v.to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() && !c.is_ascii_control() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

pub fn task(p: &Params) -> Result<Task, Failure> {
    let a: Args = p.typed()?;
    Ok(Task {
        present: a.state != "absent",
        group: a.autoscaling_group_name,
        name: a.lifecycle_hook_name,
        desired: a.hook.hook()?,
    })
}

/// Metadata equal as JSON when both sides are JSON, else as text.
fn same_metadata(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<Value>(a),
        serde_json::from_str::<Value>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// An optional text setting: `""` in the task means "not set".
fn differs(want: &Option<String>, have: &Option<String>, same: fn(&str, &str) -> bool) -> bool {
    match (want.as_deref(), have.as_deref()) {
        (None, _) => false,
        (Some(""), None) => false,
        (Some(""), Some(_)) => true,
        (Some(w), Some(h)) => !same(w, h),
        (Some(_), None) => true,
    }
}

/// The pure plan: the names of the settings that change (all of them on
/// create). Empty: nothing to do.
pub fn plan(desired: &Hook, current: Option<&Hook>) -> Vec<&'static str> {
    let Some(have) = current else {
        return vec!["create"];
    };
    let eq = |a: &str, b: &str| a == b;
    let mut out = Vec::new();
    if differs(&desired.transition, &have.transition, eq) {
        out.push("transition");
    }
    if differs(&desired.role_arn, &have.role_arn, eq) {
        out.push("role_arn");
    }
    if differs(
        &desired.notification_target_arn,
        &have.notification_target_arn,
        eq,
    ) {
        out.push("notification_target_arn");
    }
    if differs(&desired.metadata, &have.metadata, same_metadata) {
        out.push("notification_meta_data");
    }
    if desired
        .heartbeat_timeout
        .is_some_and(|h| Some(h) != have.heartbeat_timeout)
    {
        out.push("heartbeat_timeout");
    }
    if differs(&desired.default_result, &have.default_result, eq) {
        out.push("default_result");
    }
    out
}

/// What PutLifecycleHook cannot do: remove the role or the metadata of an
/// existing hook (an empty value is refused, an absent one keeps what the
/// hook has). Said before any write, with the way out.
pub fn unremovable(
    group: &str,
    name: &str,
    desired: &Hook,
    current: Option<&Hook>,
) -> Result<(), Failure> {
    let Some(have) = current else {
        return Ok(());
    };
    let gone = |want: &Option<String>, have: &Option<String>| {
        want.as_deref() == Some("") && have.is_some()
    };
    let mut what = Vec::new();
    if gone(&desired.role_arn, &have.role_arn) {
        what.push("role_arn");
    }
    if gone(&desired.metadata, &have.metadata) {
        what.push("notification_meta_data");
    }
    if what.is_empty() {
        return Ok(());
    }
    Err(Failure::msg(format!(
        "lifecycle hook '{name}' of group '{group}': AWS cannot remove {} from an existing hook \
         (PutLifecycleHook refuses an empty value and keeps an absent one); delete the hook \
         (state: absent) and create it again without it",
        what.join(" and ")
    )))
}

/// The hook as it will be: the current one with the task's settings over it.
pub fn merged(desired: &Hook, current: Option<&Hook>) -> Hook {
    let base = current.cloned().unwrap_or_default();
    let pick = |want: &Option<String>, have: Option<String>| match want.as_deref() {
        None => have,
        Some("") => None,
        Some(w) => Some(w.to_owned()),
    };
    Hook {
        transition: pick(&desired.transition, base.transition),
        role_arn: pick(&desired.role_arn, base.role_arn),
        notification_target_arn: pick(
            &desired.notification_target_arn,
            base.notification_target_arn,
        ),
        metadata: pick(&desired.metadata, base.metadata),
        heartbeat_timeout: desired.heartbeat_timeout.or(base.heartbeat_timeout),
        default_result: pick(&desired.default_result, base.default_result),
    }
}

/// The Auto Scaling calls this module makes.
#[allow(async_fn_in_trait)]
pub trait Api {
    /// The hook and its global timeout (which AWS derives).
    async fn describe(&self, group: &str, name: &str)
    -> Result<Option<(Hook, Option<i32>)>, Error>;
    async fn put(&self, group: &str, name: &str, hook: &Hook) -> Result<(), Error>;
    async fn delete(&self, group: &str, name: &str) -> Result<(), Error>;
}

pub fn hook_from(h: &LifecycleHook) -> Hook {
    Hook {
        transition: h.lifecycle_transition().map(str::to_owned),
        role_arn: h.role_arn().map(str::to_owned).filter(|s| !s.is_empty()),
        notification_target_arn: h
            .notification_target_arn()
            .map(str::to_owned)
            .filter(|s| !s.is_empty()),
        metadata: h
            .notification_metadata()
            .map(str::to_owned)
            .filter(|s| !s.is_empty()),
        heartbeat_timeout: h.heartbeat_timeout(),
        default_result: h.default_result().map(str::to_owned),
    }
}

impl Api for Client {
    async fn describe(
        &self,
        group: &str,
        name: &str,
    ) -> Result<Option<(Hook, Option<i32>)>, Error> {
        Ok(find(self, group, name)
            .await?
            .as_ref()
            .map(|h| (hook_from(h), h.global_timeout())))
    }
    async fn put(&self, group: &str, name: &str, hook: &Hook) -> Result<(), Error> {
        // The whole hook, every time. AWS keeps a member that is not sent
        // and takes an empty target as "no target"; an empty role or
        // metadata it refuses (both have a minimum length of 1), so those
        // are sent only when set (see [`unremovable`]). A role made seconds
        // ago cannot be used yet to publish the hook's test message.
        let put = || {
            self.put_lifecycle_hook()
                .auto_scaling_group_name(group)
                .lifecycle_hook_name(name)
                .set_lifecycle_transition(hook.transition.clone())
                .set_role_arn(hook.role_arn.clone().filter(|v| !v.is_empty()))
                .notification_target_arn(hook.notification_target_arn.clone().unwrap_or_default())
                .set_notification_metadata(hook.metadata.clone().filter(|v| !v.is_empty()))
                .set_heartbeat_timeout(hook.heartbeat_timeout)
                .set_default_result(hook.default_result.clone())
                .send()
        };
        consistency::until_consistent(
            &[consistency::HOOK_TEST_MESSAGE_NOT_PUBLISHED],
            consistency::IAM_PROPAGATION,
            || async {
                put().await.map_err(sdk_error(
                    "Auto Scaling",
                    "PutLifecycleHook",
                    format!("put lifecycle hook '{name}' of group '{group}'"),
                ))
            },
        )
        .await?;
        Ok(())
    }
    async fn delete(&self, group: &str, name: &str) -> Result<(), Error> {
        self.delete_lifecycle_hook()
            .auto_scaling_group_name(group)
            .lifecycle_hook_name(name)
            .send()
            .await
            .map_err(sdk_error(
                "Auto Scaling",
                "DeleteLifecycleHook",
                format!("delete lifecycle hook '{name}' of group '{group}'"),
            ))?;
        Ok(())
    }
}

async fn find(client: &Client, group: &str, name: &str) -> Result<Option<LifecycleHook>, Error> {
    let out = client
        .describe_lifecycle_hooks()
        .auto_scaling_group_name(group)
        .lifecycle_hook_names(name)
        .send()
        .await
        .map_err(sdk_error(
            "Auto Scaling",
            "DescribeLifecycleHooks",
            format!("read lifecycle hook '{name}' of group '{group}'"),
        ))?;
    Ok(out
        .lifecycle_hooks()
        .iter()
        .find(|h| h.lifecycle_hook_name() == Some(name))
        .cloned())
}

/// A hook as read, with where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub group: String,
    pub name: String,
    pub hook: Hook,
    pub global_timeout: Option<i32>,
}

fn describe(group: &str, name: &str, h: &Hook, global_timeout: Option<i32>) -> Value {
    let mut v = json!({
        "auto_scaling_group_name": group,
        "lifecycle_hook_name": name,
        "lifecycle_transition": h.transition,
        "heartbeat_timeout": h.heartbeat_timeout,
        "default_result": h.default_result,
    });
    let extra = [
        ("role_arn", h.role_arn.clone().map(Value::from)),
        (
            "notification_target_arn",
            h.notification_target_arn.clone().map(Value::from),
        ),
        ("notification_metadata", h.metadata.clone().map(Value::from)),
        ("global_timeout", global_timeout.map(Value::from)),
    ];
    if let Some(o) = v.as_object_mut() {
        for (k, val) in extra {
            if let Some(val) = val {
                o.insert(k.into(), val);
            }
        }
    }
    v
}

pub struct LifecycleHookResource<A>(PhantomData<A>);

impl<A: Api> Resource for LifecycleHookResource<A> {
    type Task = Task;
    type Api = A;
    type Current = Current;
    type Changes = Vec<&'static str>;
    const KEY: &'static str = "";

    fn present(t: &Task) -> bool {
        t.present
    }

    async fn read(api: &A, t: &Task) -> Result<Option<Current>, Failure> {
        let Some((hook, global_timeout)) = api.describe(&t.group, &t.name).await? else {
            return Ok(None);
        };
        Ok(Some(Current {
            group: t.group.clone(),
            name: t.name.clone(),
            global_timeout,
            hook,
        }))
    }

    fn plan(t: &Task, current: Option<&Current>) -> Result<Vec<&'static str>, Failure> {
        unremovable(&t.group, &t.name, &t.desired, current.map(|c| &c.hook))?;
        Ok(plan(&t.desired, current.map(|c| &c.hook)))
    }

    async fn apply(
        api: &A,
        t: &Task,
        current: Option<&Current>,
        _changes: &Vec<&'static str>,
    ) -> Result<Current, Failure> {
        api.put(
            &t.group,
            &t.name,
            &merged(&t.desired, current.map(|c| &c.hook)),
        )
        .await?;
        let (hook, global_timeout) = api.describe(&t.group, &t.name).await?.ok_or_else(|| {
            Failure::msg(format!(
                "lifecycle hook '{}' of group '{}' was written but cannot be read back",
                t.name, t.group
            ))
        })?;
        Ok(Current {
            group: t.group.clone(),
            name: t.name.clone(),
            global_timeout,
            hook,
        })
    }

    async fn delete(api: &A, t: &Task, _: &Current) -> Result<bool, Failure> {
        api.delete(&t.group, &t.name).await?;
        Ok(true)
    }

    fn describe(c: &Current) -> Value {
        describe(&c.group, &c.name, &c.hook, c.global_timeout)
    }

    fn preview(t: &Task, current: Option<&Current>, _: &Vec<&'static str>) -> Value {
        let mut h = merged(&t.desired, current.map(|c| &c.hook));
        if current.is_none() {
            // What AWS fills in at creation.
            h.heartbeat_timeout.get_or_insert(3600);
            h.default_result.get_or_insert_with(|| "ABANDON".into());
        }
        describe(
            &t.group,
            &t.name,
            &h,
            current.and_then(|c| c.global_timeout),
        )
    }
}

pub async fn run(ctx: Ctx) -> Result<Response, Failure> {
    let t = task(&ctx.params)?;
    let a: Args = ctx.params.typed()?;
    let config = craftlb_core::aws::sdk_config(&a.connection.aws_params(), None).await?;
    let client = Client::new(&config);
    drive::<LifecycleHookResource<Client>>(&client, &t, ctx.check_mode).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_of(v: Value) -> Result<Task, String> {
        crate::protocol::task_of(&SPEC, v, task)
    }

    fn existing() -> Hook {
        Hook {
            transition: Some(TERMINATING.into()),
            role_arn: Some("arn:aws:iam::123456789012:role/r".into()),
            notification_target_arn: Some("arn:aws:sns:us-east-1:123456789012:t".into()),
            metadata: Some(r#"{"drain_seconds": 60, "ttl": 30}"#.into()),
            heartbeat_timeout: Some(600),
            default_result: Some("CONTINUE".into()),
        }
    }

    #[test]
    fn metadata_as_dict_is_compared_as_json() {
        let t = task_of(
            json!({"autoscaling_group_name": "g", "name": "h", "transition": TERMINATING,
                               "notification_meta_data": {"ttl": 30, "drain_seconds": 60}}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            plan(&t.desired, Some(&existing())).is_empty(),
            "key order must not matter"
        );
        let t = task_of(
            json!({"autoscaling_group_name": "g", "name": "h", "transition": TERMINATING,
                               "notification_meta_data": "{\"ttl\": 30, \"drain_seconds\": 61}"}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            plan(&t.desired, Some(&existing())),
            ["notification_meta_data"]
        );
    }

    #[test]
    fn role_and_metadata_cannot_be_removed_from_an_existing_hook() {
        let t = task_of(
            json!({"autoscaling_group_name": "g", "name": "h", "transition": TERMINATING,
                               "role_arn": "", "notification_meta_data": ""}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let e = unremovable("g", "h", &t.desired, Some(&existing()))
            .err()
            .map(|f| f.msg)
            .unwrap_or_default();
        assert!(
            e.contains("cannot remove role_arn and notification_meta_data")
                && e.contains("state: absent"),
            "{e}"
        );
        // On a new hook, or one without them, "" just means "none".
        assert!(unremovable("g", "h", &t.desired, None).is_ok());
        let bare = Hook {
            transition: Some(TERMINATING.into()),
            ..Hook::default()
        };
        assert!(unremovable("g", "h", &t.desired, Some(&bare)).is_ok());
        assert!(plan(&t.desired, Some(&bare)).is_empty());
        // The target can go: AWS takes an empty target as "none".
        let t = task_of(
            json!({"autoscaling_group_name": "g", "name": "h", "transition": TERMINATING,
                               "notification_target_arn": ""}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(unremovable("g", "h", &t.desired, Some(&existing())).is_ok());
        assert_eq!(
            plan(&t.desired, Some(&existing())),
            ["notification_target_arn"]
        );
    }

    #[test]
    fn dict_metadata_is_sent_as_ascii_json() {
        let t = task_of(
            json!({"autoscaling_group_name": "g", "name": "h", "transition": TERMINATING,
                               "notification_meta_data": {"record_name": "café.example.com", "x": "😀"}}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let m = t.desired.metadata.unwrap_or_default();
        assert_eq!(
            m,
            r#"{"record_name":"caf\u00e9.example.com","x":"\ud83d\ude00"}"#
        );
        let back: Value = serde_json::from_str(&m).unwrap_or_default();
        assert_eq!(back["record_name"], "café.example.com");
        assert_eq!(back["x"], "😀");
    }

    #[test]
    fn omitted_leaves_alone_and_empty_removes() {
        let t =
            task_of(json!({"autoscaling_group_name": "g", "name": "h", "transition": TERMINATING}))
                .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            plan(&t.desired, Some(&existing())).is_empty(),
            "AWS defaults never become changes"
        );
        let t = task_of(
            json!({"autoscaling_group_name": "g", "name": "h", "transition": TERMINATING,
                               "role_arn": "", "notification_meta_data": ""}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            plan(&t.desired, Some(&existing())),
            ["role_arn", "notification_meta_data"]
        );
        let m = merged(&t.desired, Some(&existing()));
        assert_eq!((m.role_arn, m.metadata), (None, None));
        assert_eq!(m.heartbeat_timeout, Some(600), "kept");
        // Adding a field the hook lacks.
        let bare = Hook {
            transition: Some(TERMINATING.into()),
            ..Hook::default()
        };
        let t = task_of(
            json!({"autoscaling_group_name": "g", "name": "h", "transition": TERMINATING,
                               "role_arn": "arn:aws:iam::123456789012:role/r"}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan(&t.desired, Some(&bare)), ["role_arn"]);
        assert_eq!(plan(&t.desired, None), ["create"]);
    }

    #[test]
    fn bad_arguments_fail_before_any_call() {
        let e = |v| task_of(v).err().unwrap_or_default();
        assert!(e(json!({"autoscaling_group_name": "g", "name": "h"})).contains("transition"));
        assert!(
            e(
                json!({"autoscaling_group_name": "g", "name": "h", "transition": TERMINATING,
                         "heartbeat_timeout": 5})
            )
            .contains("30-7200")
        );
        assert!(
            e(
                json!({"autoscaling_group_name": "g", "name": "h", "transition": TERMINATING,
                         "notification_meta_data": "x".repeat(4001)})
            )
            .contains("4000")
        );
        assert!(
            e(
                json!({"autoscaling_group_name": "g", "name": "h", "transition": TERMINATING,
                         "notification_meta_data": "café"})
            )
            .contains("printable ASCII")
        );
        assert!(
            e(json!({"autoscaling_group_name": "g", "name": "h", "transition": "sideways"}))
                .contains("must be one of")
        );
        assert!(
            task_of(json!({"autoscaling_group_name": "g", "name": "h", "state": "absent"})).is_ok()
        );
    }
}
