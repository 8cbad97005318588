/*!
`sns_topic`: one SNS topic, its attributes and its subscriptions, with the
parameters and return keys of `community.aws.sns_topic`.

Subscriptions are keyed by protocol and normalised endpoint; their
attributes (RawMessageDelivery, FilterPolicy, …) are updated in place —
AWS refuses a second Subscribe with other attributes. Policies are compared
as normalised JSON. Subscriptions waiting for confirmation can neither be
changed nor removed: they count as present and are reported, not retried.
Nothing is purged unless the task manages that list: without
`subscriptions`, the topic's subscriptions are left alone.
*/

use std::collections::BTreeMap;
use std::marker::PhantomData;

use aws_sdk_sns::Client;
use aws_sdk_sns::types::Tag;
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

pub const NAME: &str = "sns_topic";

pub static MODULE: Module = Module {
    name: NAME,
    spec: &SPEC,
    doc: include_str!("../docs/sns_topic.yml"),
    run: |ctx| -> RunFuture { Box::pin(run(ctx)) },
};

static SUBSCRIPTION: Spec = Spec {
    params: &[
        Param::str("protocol")
            .required()
            .choices(&["lambda", "sqs", "https", "http", "email", "email-json", "sms", "application", "firehose"])
            .doc(&["The subscription's protocol."]),
        Param::str("endpoint")
            .required()
            .doc(&["The endpoint: a function or queue ARN, a URL, an address."]),
        Param::dict("attributes")
            .default(Default::EmptyDict)
            .doc(&[
                "Subscription attributes (C(RawMessageDelivery), C(FilterPolicy), C(FilterPolicyScope), \
                 C(RedrivePolicy), C(DeliveryPolicy)…), updated in place. Attributes not given are left \
                 alone.",
            ]),
    ],
    ..Spec::EMPTY
};

pub static SPEC: Spec = Spec {
    params: &[
        Param::str("name")
            .required()
            .doc(&["The topic's name or ARN."]),
        Param::str("state")
            .choices(&["present", "absent"])
            .default(Default::Str("present"))
            .doc(&["Whether the topic should exist."]),
        Param::str("topic_type")
            .choices(&["standard", "fifo"])
            .doc(&[
                "Standard or FIFO. C(standard) when not given at creation; it cannot change. A FIFO topic's \
                 name gets the C(.fifo) suffix AWS requires.",
            ]),
        Param::str("display_name").doc(&["The topic's display name (SMS sender)."]),
        Param::new("policy", Type::Raw).doc(&[
            "The topic's access policy, a dict or JSON text, compared as normalised JSON. Not given, AWS's \
             (or the current) policy is left as it is.",
        ]),
        Param::new("delivery_policy", Type::Raw).doc(&[
            "The HTTP(S) delivery policy, a dict or JSON text, compared as JSON.",
        ]),
        Param::str("content_based_deduplication")
            .choices(&["disabled", "enabled"])
            .doc(&["Content-based deduplication (FIFO topics)."]),
        Param::str("kms_master_key_id")
            .doc(&["KMS key for server-side encryption; an empty string turns it off."]),
        Param::list_of("subscriptions", &SUBSCRIPTION).doc(&[
            "The topic's subscriptions, keyed by protocol and endpoint.",
            "Not given, subscriptions are left as they are.",
        ]),
        Param::bool("purge_subscriptions")
            .default(Default::Bool(true))
            .doc(&[
                "Remove subscriptions not in I(subscriptions) (those still waiting for confirmation cannot \
                 be removed: they are reported). Ignored when I(subscriptions) is not given.",
            ]),
        TAGS,
        PURGE_TAGS,
    ],
    includes: &[&AWS],
    ..Spec::EMPTY
};

#[derive(Debug, Deserialize)]
struct SubArg {
    protocol: String,
    endpoint: String,
    attributes: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
struct Args {
    name: String,
    state: String,
    topic_type: Option<String>,
    display_name: Option<String>,
    policy: Option<Value>,
    delivery_policy: Option<Value>,
    content_based_deduplication: Option<String>,
    kms_master_key_id: Option<String>,
    subscriptions: Option<Vec<SubArg>>,
    purge_subscriptions: bool,
    tags: Option<Map<String, Value>>,
    purge_tags: bool,
    #[serde(flatten)]
    connection: Connection,
}

/// What a subscription is, for comparison: protocol and endpoint as AWS
/// stores it (email addresses case-insensitively).
fn sub_key(protocol: &str, endpoint: &str) -> (String, String) {
    let p = protocol.to_ascii_lowercase();
    let e = if p.starts_with("email") {
        endpoint.to_ascii_lowercase()
    } else {
        endpoint.to_owned()
    };
    (p, e)
}

/// An attribute value as SNS takes it: text (a dict becomes JSON, a bool
/// `true`/`false`).
fn attr_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// Attribute values equal as JSON when both parse as JSON objects (policies
/// are normalised), else as text; `true`/`True` are one boolean.
fn same_attr(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<Value>(a),
        serde_json::from_str::<Value>(b),
    ) {
        (Ok(x @ Value::Object(_)), Ok(y @ Value::Object(_))) => policy::same(&x, &y),
        _ => a.eq_ignore_ascii_case(b),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sub {
    pub protocol: String,
    pub endpoint: String,
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub present: bool,
    /// The name (or the ARN's last part) and, when given, the ARN.
    pub name: String,
    pub arn: Option<String>,
    pub fifo: Option<bool>,
    /// Topic attributes to hold (SNS names), text values.
    pub attributes: BTreeMap<String, String>,
    pub subscriptions: Option<Vec<Sub>>,
    pub purge_subscriptions: bool,
    pub tags: Option<BTreeMap<String, String>>,
    pub purge_tags: bool,
}

fn json_attr(v: &Value, what: &str) -> Result<String, Failure> {
    match v {
        Value::Object(_) => Ok(v.to_string()),
        Value::String(s) => serde_json::from_str::<Value>(s)
            .map(|_| s.clone())
            .map_err(|e| Failure::msg(format!("{what} is not valid JSON: {e}"))),
        other => Err(Failure::msg(format!(
            "{what} must be a dict or JSON text, got {other}"
        ))),
    }
}

pub fn task(p: &Params) -> Result<Task, Failure> {
    let a: Args = p.typed()?;
    let fifo = a.topic_type.as_deref().map(|t| t == "fifo");
    let (mut name, arn) = if a.name.starts_with("arn:") {
        let n = a.name.rsplit(':').next().unwrap_or_default().to_owned();
        (n, Some(a.name.clone()))
    } else {
        (a.name.clone(), None)
    };
    if fifo == Some(true) && !name.ends_with(".fifo") {
        name.push_str(".fifo");
    }
    let mut attributes = BTreeMap::new();
    if let Some(d) = a.display_name {
        attributes.insert("DisplayName".to_owned(), d);
    }
    if let Some(p) = &a.policy {
        attributes.insert("Policy".to_owned(), json_attr(p, "policy")?);
    }
    if let Some(p) = &a.delivery_policy {
        attributes.insert(
            "DeliveryPolicy".to_owned(),
            json_attr(p, "delivery_policy")?,
        );
    }
    if let Some(c) = &a.content_based_deduplication {
        attributes.insert(
            "ContentBasedDeduplication".to_owned(),
            (c == "enabled").to_string(),
        );
    }
    if let Some(k) = a.kms_master_key_id {
        attributes.insert("KmsMasterKeyId".to_owned(), k);
    }
    let subscriptions = a.subscriptions.map(|list| {
        list.into_iter()
            .map(|s| Sub {
                protocol: s.protocol,
                endpoint: s.endpoint,
                attributes: s
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), attr_text(v)))
                    .collect(),
            })
            .collect::<Vec<_>>()
    });
    if let Some(subs) = &subscriptions {
        let mut keys: Vec<_> = subs
            .iter()
            .map(|s| sub_key(&s.protocol, &s.endpoint))
            .collect();
        keys.sort();
        if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
            return Err(Failure::msg(format!(
                "subscription {} {} is listed twice",
                w[0].0, w[0].1
            )));
        }
    }
    Ok(Task {
        present: a.state != "absent",
        name,
        arn,
        fifo,
        attributes,
        subscriptions,
        purge_subscriptions: a.purge_subscriptions,
        tags: a.tags.as_ref().map(tag_map),
        purge_tags: a.purge_tags,
    })
}

/// A subscription as SNS lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct SubState {
    /// `PendingConfirmation` until the endpoint confirms.
    pub arn: String,
    pub protocol: String,
    pub endpoint: String,
    pub attributes: BTreeMap<String, String>,
}

impl SubState {
    fn pending(&self) -> bool {
        !self.arn.starts_with("arn:")
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Current {
    pub arn: String,
    pub attributes: BTreeMap<String, String>,
    pub subscriptions: Option<Vec<SubState>>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Create,
    SetAttribute(String, String),
    Subscribe(Sub),
    SetSubscriptionAttribute(String, String, String),
    Unsubscribe(String),
    Tags(TagPlan),
}

/// What to do, and what cannot be done (pending confirmations).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub warnings: Vec<String>,
}

impl crate::driver::Changes for Plan {
    fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

pub fn plan(t: &Task, current: Option<&Current>) -> Result<Plan, Failure> {
    let mut out = Plan::default();
    let Some(c) = current else {
        out.steps.push(Step::Create);
        for s in t.subscriptions.iter().flatten() {
            out.steps.push(Step::Subscribe(s.clone()));
        }
        return Ok(out);
    };
    let is_fifo = c.attributes.get("FifoTopic").is_some_and(|v| v == "true");
    if let Some(f) = t.fifo.filter(|f| *f != is_fifo) {
        return Err(Failure::msg(format!(
            "topic '{}' is {}; SNS cannot change a topic to {}",
            t.name,
            if is_fifo { "fifo" } else { "standard" },
            if f { "fifo" } else { "standard" }
        )));
    }
    for (k, v) in &t.attributes {
        let have = c.attributes.get(k).map(String::as_str).unwrap_or_default();
        let same = match k.as_str() {
            "Policy" | "DeliveryPolicy" => same_attr(v, have),
            "ContentBasedDeduplication" => {
                have.eq_ignore_ascii_case(v) || (have.is_empty() && v == "false")
            }
            _ => have == v,
        };
        if !same {
            out.steps.push(Step::SetAttribute(k.clone(), v.clone()));
        }
    }
    if let (Some(want), Some(have)) = (&t.subscriptions, &c.subscriptions) {
        for w in want {
            let key = sub_key(&w.protocol, &w.endpoint);
            match have
                .iter()
                .find(|h| sub_key(&h.protocol, &h.endpoint) == key)
            {
                None => out.steps.push(Step::Subscribe(w.clone())),
                Some(h) if h.pending() => {
                    if !w.attributes.is_empty() {
                        out.warnings.push(format!(
                            "subscription {} {} waits for confirmation: its attributes cannot be set until it is confirmed",
                            w.protocol, w.endpoint
                        ));
                    }
                }
                Some(h) => {
                    for (k, v) in &w.attributes {
                        let hv = h.attributes.get(k).map(String::as_str).unwrap_or_default();
                        if !same_attr(v, hv) {
                            out.steps.push(Step::SetSubscriptionAttribute(
                                h.arn.clone(),
                                k.clone(),
                                v.clone(),
                            ));
                        }
                    }
                }
            }
        }
        if t.purge_subscriptions {
            for h in have {
                let key = sub_key(&h.protocol, &h.endpoint);
                if want
                    .iter()
                    .any(|w| sub_key(&w.protocol, &w.endpoint) == key)
                {
                    continue;
                }
                if h.pending() {
                    out.warnings.push(format!(
                        "subscription {} {} waits for confirmation: SNS does not let it be removed",
                        h.protocol, h.endpoint
                    ));
                } else {
                    out.steps.push(Step::Unsubscribe(h.arn.clone()));
                }
            }
        }
    }
    let tags = plan_task_tags(&c.tags, t.tags.as_ref(), t.purge_tags);
    if !tags.is_empty() {
        out.steps.push(Step::Tags(tags));
    }
    Ok(out)
}

/// The SNS (and STS) calls this module makes.
#[allow(async_fn_in_trait)]
pub trait Api {
    /// The topic's ARN from its name (the account comes from STS).
    async fn arn_of(&self, name: &str) -> Result<String, Error>;
    async fn attributes(&self, arn: &str) -> Result<Option<BTreeMap<String, String>>, Error>;
    /// The topic's subscriptions; attributes read for those in `with_attributes`.
    async fn subscriptions(
        &self,
        arn: &str,
        with_attributes: &[(String, String)],
    ) -> Result<Vec<SubState>, Error>;
    async fn tags(&self, arn: &str) -> Result<BTreeMap<String, String>, Error>;
    /// Creates the topic; returns its ARN.
    async fn create(&self, t: &Task) -> Result<String, Error>;
    async fn step(&self, arn: &str, step: &Step) -> Result<(), Error>;
    async fn delete(&self, arn: &str) -> Result<(), Error>;
}

/// The SDK clients behind [`Api`].
pub struct SdkApi {
    sns: Client,
    config: aws_types::SdkConfig,
    region: String,
}

impl Api for SdkApi {
    async fn arn_of(&self, name: &str) -> Result<String, Error> {
        let (partition, account) = craftlb_core::aws::caller_account(&self.config).await?;
        Ok(format!(
            "arn:{partition}:sns:{}:{account}:{name}",
            self.region
        ))
    }

    async fn attributes(&self, arn: &str) -> Result<Option<BTreeMap<String, String>>, Error> {
        match self
            .sns
            .get_topic_attributes()
            .topic_arn(arn)
            .send()
            .await
            .map_err(sdk_error(
                "SNS",
                "GetTopicAttributes",
                format!("read topic '{arn}'"),
            )) {
            Ok(out) => Ok(Some(
                out.attributes()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default(),
            )),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn subscriptions(
        &self,
        arn: &str,
        with_attributes: &[(String, String)],
    ) -> Result<Vec<SubState>, Error> {
        let what = format!("the subscriptions of '{arn}'");
        let mut out = collect_all(&what, |token| async {
            let page = self
                .sns
                .list_subscriptions_by_topic()
                .topic_arn(arn)
                .set_next_token(token)
                .send()
                .await
                .map_err(sdk_error(
                    "SNS",
                    "ListSubscriptionsByTopic",
                    format!("list {what}"),
                ))?;
            Ok(Page {
                items: page
                    .subscriptions()
                    .iter()
                    .map(|s| SubState {
                        arn: s.subscription_arn().unwrap_or_default().to_owned(),
                        protocol: s.protocol().unwrap_or_default().to_owned(),
                        endpoint: s.endpoint().unwrap_or_default().to_owned(),
                        attributes: BTreeMap::new(),
                    })
                    .collect(),
                next: page.next_token().map(str::to_owned),
            })
        })
        .await?;
        for s in out.iter_mut().filter(|s| s.arn.starts_with("arn:")) {
            if !with_attributes.contains(&sub_key(&s.protocol, &s.endpoint)) {
                continue;
            }
            let attrs = self
                .sns
                .get_subscription_attributes()
                .subscription_arn(&s.arn)
                .send()
                .await
                .map_err(sdk_error(
                    "SNS",
                    "GetSubscriptionAttributes",
                    format!("read subscription '{}'", s.arn),
                ))?;
            s.attributes = attrs
                .attributes()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
        }
        Ok(out)
    }

    async fn tags(&self, arn: &str) -> Result<BTreeMap<String, String>, Error> {
        let out = self
            .sns
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .map_err(sdk_error(
                "SNS",
                "ListTagsForResource",
                format!("read the tags of '{arn}'"),
            ))?;
        Ok(out
            .tags()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect())
    }

    async fn create(&self, t: &Task) -> Result<String, Error> {
        let mut attrs = t.attributes.clone();
        if t.fifo == Some(true) {
            attrs.insert("FifoTopic".into(), "true".into());
        }
        attrs.retain(|_, v| !v.is_empty());
        let tags: Vec<Tag> = t
            .tags
            .iter()
            .flatten()
            .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
            .collect();
        let out = self
            .sns
            .create_topic()
            .name(&t.name)
            .set_attributes((!attrs.is_empty()).then(|| attrs.into_iter().collect()))
            .set_tags((!tags.is_empty()).then_some(tags))
            .send()
            .await
            .map_err(sdk_error(
                "SNS",
                "CreateTopic",
                format!("create topic '{}'", t.name),
            ))?;
        Ok(out.topic_arn().unwrap_or_default().to_owned())
    }

    async fn step(&self, arn: &str, step: &Step) -> Result<(), Error> {
        match step {
            Step::Create => {}
            Step::SetAttribute(k, v) => {
                self.sns
                    .set_topic_attributes()
                    .topic_arn(arn)
                    .attribute_name(k)
                    .attribute_value(v)
                    .send()
                    .await
                    .map_err(sdk_error(
                        "SNS",
                        "SetTopicAttributes",
                        format!("set {k} of '{arn}'"),
                    ))?;
            }
            Step::Subscribe(s) => {
                self.sns
                    .subscribe()
                    .topic_arn(arn)
                    .protocol(&s.protocol)
                    .endpoint(&s.endpoint)
                    .set_attributes(
                        (!s.attributes.is_empty())
                            .then(|| s.attributes.clone().into_iter().collect()),
                    )
                    .return_subscription_arn(true)
                    .send()
                    .await
                    .map_err(sdk_error(
                        "SNS",
                        "Subscribe",
                        format!("subscribe {} {} to '{arn}'", s.protocol, s.endpoint),
                    ))?;
            }
            Step::SetSubscriptionAttribute(sub, k, v) => {
                self.sns
                    .set_subscription_attributes()
                    .subscription_arn(sub)
                    .attribute_name(k)
                    .attribute_value(v)
                    .send()
                    .await
                    .map_err(sdk_error(
                        "SNS",
                        "SetSubscriptionAttributes",
                        format!("set {k} of subscription '{sub}'"),
                    ))?;
            }
            Step::Unsubscribe(sub) => {
                self.sns
                    .unsubscribe()
                    .subscription_arn(sub)
                    .send()
                    .await
                    .map_err(sdk_error(
                        "SNS",
                        "Unsubscribe",
                        format!("remove subscription '{sub}'"),
                    ))?;
            }
            Step::Tags(plan) => {
                if !plan.set.is_empty() {
                    let tags: Vec<Tag> = plan
                        .set
                        .iter()
                        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
                        .collect();
                    self.sns
                        .tag_resource()
                        .resource_arn(arn)
                        .set_tags(Some(tags))
                        .send()
                        .await
                        .map_err(sdk_error("SNS", "TagResource", format!("tag '{arn}'")))?;
                }
                if !plan.unset.is_empty() {
                    self.sns
                        .untag_resource()
                        .resource_arn(arn)
                        .set_tag_keys(Some(plan.unset.clone()))
                        .send()
                        .await
                        .map_err(sdk_error("SNS", "UntagResource", format!("untag '{arn}'")))?;
                }
            }
        }
        Ok(())
    }

    async fn delete(&self, arn: &str) -> Result<(), Error> {
        // DeleteTopic removes the subscriptions with it.
        self.sns
            .delete_topic()
            .topic_arn(arn)
            .send()
            .await
            .map_err(sdk_error(
                "SNS",
                "DeleteTopic",
                format!("delete topic '{arn}'"),
            ))?;
        Ok(())
    }
}

fn describe(c: &Current) -> Value {
    let a = &c.attributes;
    let get = |k: &str| a.get(k).cloned();
    let json_or_text =
        |k: &str| get(k).map(|v| serde_json::from_str::<Value>(&v).unwrap_or(Value::String(v)));
    let mut topic = json!({
        "topic_arn": c.arn,
        "name": c.arn.rsplit(':').next().unwrap_or_default(),
        "topic_type": if get("FifoTopic").as_deref() == Some("true") { "fifo" } else { "standard" },
        "tags": c.tags,
    });
    if let Some(o) = topic.as_object_mut() {
        let extra = [
            ("display_name", get("DisplayName").map(Value::from)),
            ("owner", get("Owner").map(Value::from)),
            ("policy", json_or_text("Policy")),
            ("delivery_policy", json_or_text("DeliveryPolicy")),
            (
                "content_based_deduplication",
                get("ContentBasedDeduplication").map(|v| {
                    Value::from(if v == "true" { "enabled" } else { "disabled" })
                }),
            ),
            ("kms_master_key_id", get("KmsMasterKeyId").map(Value::from)),
            ("subscriptions_confirmed", get("SubscriptionsConfirmed").map(Value::from)),
            ("subscriptions_pending", get("SubscriptionsPending").map(Value::from)),
            (
                "subscriptions",
                c.subscriptions.as_ref().map(|subs| {
                    Value::from(
                        subs.iter()
                            .map(|s| {
                                let mut v = json!({"subscription_arn": s.arn, "protocol": s.protocol,
                                                   "endpoint": s.endpoint});
                                if !s.attributes.is_empty() {
                                    v["attributes"] = json!(s.attributes);
                                }
                                v
                            })
                            .collect::<Vec<_>>(),
                    )
                }),
            ),
        ];
        for (k, v) in extra {
            if let Some(v) = v {
                o.insert(k.into(), v);
            }
        }
    }
    json!({"sns_arn": c.arn, "sns_topic": topic})
}

fn predict(t: &Task, arn: &str, current: Option<&Current>, plan: &Plan) -> Current {
    let mut c = current.cloned().unwrap_or_else(|| Current {
        arn: arn.to_owned(),
        subscriptions: t.subscriptions.as_ref().map(|_| Vec::new()),
        ..Current::default()
    });
    for s in &plan.steps {
        match s {
            Step::Create => {
                c.attributes.extend(t.attributes.clone());
                if t.fifo == Some(true) {
                    c.attributes.insert("FifoTopic".into(), "true".into());
                }
                c.tags = t.tags.clone().unwrap_or_default();
            }
            Step::SetAttribute(k, v) => {
                c.attributes.insert(k.clone(), v.clone());
            }
            Step::Subscribe(sub) => c.subscriptions.get_or_insert_with(Vec::new).push(SubState {
                arn: String::new(),
                protocol: sub.protocol.clone(),
                endpoint: sub.endpoint.clone(),
                attributes: sub.attributes.clone(),
            }),
            Step::SetSubscriptionAttribute(arn, k, v) => {
                for sub in c
                    .subscriptions
                    .iter_mut()
                    .flatten()
                    .filter(|s| s.arn == *arn)
                {
                    sub.attributes.insert(k.clone(), v.clone());
                }
            }
            Step::Unsubscribe(arn) => {
                if let Some(subs) = c.subscriptions.as_mut() {
                    subs.retain(|s| s.arn != *arn);
                }
            }
            Step::Tags(p) => c.tags = p.apply(&c.tags),
        }
    }
    c
}

/// The topic's ARN: given, or built from the account (STS) and region.
pub struct Topic<A>(PhantomData<A>);

/// The task with its ARN resolved (the one read the driver cannot do).
pub struct Resolved {
    pub task: Task,
    pub arn: String,
}

impl<A: Api> Resource for Topic<A> {
    type Task = Resolved;
    type Api = A;
    type Current = Current;
    type Changes = Plan;
    const KEY: &'static str = "";

    fn present(t: &Resolved) -> bool {
        t.task.present
    }

    async fn read(api: &A, r: &Resolved) -> Result<Option<Current>, Failure> {
        let Some(attributes) = api.attributes(&r.arn).await? else {
            return Ok(None);
        };
        let t = &r.task;
        let mut c = Current {
            arn: r.arn.clone(),
            attributes,
            ..Current::default()
        };
        if t.present {
            if let Some(subs) = &t.subscriptions {
                let with: Vec<(String, String)> = subs
                    .iter()
                    .filter(|s| !s.attributes.is_empty())
                    .map(|s| sub_key(&s.protocol, &s.endpoint))
                    .collect();
                c.subscriptions = Some(api.subscriptions(&r.arn, &with).await?);
            }
            if t.tags.is_some() {
                c.tags = api.tags(&r.arn).await?;
            }
        }
        Ok(Some(c))
    }

    fn plan(r: &Resolved, current: Option<&Current>) -> Result<Plan, Failure> {
        plan(&r.task, current)
    }

    async fn apply(
        api: &A,
        r: &Resolved,
        current: Option<&Current>,
        plan: &Plan,
    ) -> Result<Current, Failure> {
        let arn = match current {
            Some(c) => c.arn.clone(),
            None => api.create(&r.task).await?,
        };
        for s in &plan.steps {
            api.step(&arn, s).await?;
        }
        let again = Resolved {
            task: r.task.clone(),
            arn: arn.clone(),
        };
        <Self as Resource>::read(api, &again).await?.ok_or_else(|| {
            Failure::msg(format!("topic '{arn}' was written but cannot be read back"))
        })
    }

    async fn delete(api: &A, r: &Resolved, _: &Current) -> Result<bool, Failure> {
        api.delete(&r.arn).await?;
        Ok(true)
    }

    fn describe(c: &Current) -> Value {
        describe(c)
    }

    fn preview(r: &Resolved, current: Option<&Current>, plan: &Plan) -> Value {
        describe(&predict(&r.task, &r.arn, current, plan))
    }

    fn warnings(r: &Resolved, current: Option<&Current>) -> Vec<String> {
        plan(&r.task, current)
            .map(|p| p.warnings)
            .unwrap_or_default()
    }
}

pub async fn run(ctx: Ctx) -> Result<Response, Failure> {
    let t = task(&ctx.params)?;
    let a: Args = ctx.params.typed()?;
    let config = craftlb_core::aws::sdk_config(&a.connection.aws_params(), None).await?;
    let api = SdkApi {
        sns: Client::new(&config),
        region: config
            .region()
            .map(|r| r.as_ref().to_owned())
            .unwrap_or_default(),
        config,
    };
    let arn = match &t.arn {
        Some(arn) => arn.clone(),
        None => api.arn_of(&t.name).await?,
    };
    drive::<Topic<SdkApi>>(&api, &Resolved { task: t, arn }, ctx.check_mode).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_of(v: Value) -> Result<Task, String> {
        crate::protocol::task_of(&SPEC, v, task)
    }

    fn topic() -> Current {
        Current {
            arn: "arn:aws:sns:us-east-1:123456789012:t".into(),
            attributes: [
                ("DisplayName".to_owned(), "lb".to_owned()),
                ("Policy".to_owned(), r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::123456789012:root"]},"Action":["SNS:Publish"],"Resource":["*"]}]}"#.to_owned()),
            ]
            .into(),
            subscriptions: Some(vec![
                SubState {
                    arn: "arn:aws:sns:us-east-1:123456789012:t:1".into(),
                    protocol: "lambda".into(),
                    endpoint: "arn:aws:lambda:us-east-1:123456789012:function:f".into(),
                    attributes: [("RawMessageDelivery".to_owned(), "false".to_owned())].into(),
                },
                SubState {
                    arn: "PendingConfirmation".into(),
                    protocol: "email".into(),
                    endpoint: "Ops@Example.com".into(),
                    attributes: BTreeMap::new(),
                },
            ]),
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn same_topic_no_change_and_email_case_does_not_matter() {
        let t = task_of(json!({"name": "t", "display_name": "lb",
            "policy": {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Principal": {"AWS": "123456789012"},
                       "Action": "SNS:Publish", "Resource": "*"}},
            "subscriptions": [
                {"protocol": "lambda", "endpoint": "arn:aws:lambda:us-east-1:123456789012:function:f",
                 "attributes": {"RawMessageDelivery": false}},
                {"protocol": "email", "endpoint": "ops@example.com"}]}))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan(&t, Some(&topic())), Ok(Plan::default()));
    }

    #[test]
    fn attributes_update_in_place_and_pending_ones_are_reported() {
        let t = task_of(json!({"name": "t", "subscriptions": [
            {"protocol": "lambda", "endpoint": "arn:aws:lambda:us-east-1:123456789012:function:f",
             "attributes": {"FilterPolicy": {"event": ["launch"]}}},
            {"protocol": "sqs", "endpoint": "arn:aws:sqs:us-east-1:123456789012:q"}]}))
        .unwrap_or_else(|e| panic!("{e}"));
        let p = plan(&t, Some(&topic())).unwrap_or_default();
        assert_eq!(
            p.steps,
            vec![
                Step::SetSubscriptionAttribute(
                    "arn:aws:sns:us-east-1:123456789012:t:1".into(),
                    "FilterPolicy".into(),
                    r#"{"event":["launch"]}"#.into()
                ),
                Step::Subscribe(Sub {
                    protocol: "sqs".into(),
                    endpoint: "arn:aws:sqs:us-east-1:123456789012:q".into(),
                    attributes: BTreeMap::new()
                }),
            ]
        );
        assert_eq!(
            p.warnings.len(),
            1,
            "the pending email cannot be purged: {p:?}"
        );
        // Not managing subscriptions: none touched.
        let t = task_of(json!({"name": "t"})).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan(&t, Some(&topic())), Ok(Plan::default()));
    }

    #[test]
    fn fifo_names_and_type_changes() {
        let t = task_of(json!({"name": "events", "topic_type": "fifo"}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.name, "events.fifo");
        let t =
            task_of(json!({"name": "t", "topic_type": "fifo"})).unwrap_or_else(|e| panic!("{e}"));
        assert!(plan(&t, Some(&topic())).is_err());
        assert!(task_of(json!({"name": "t", "subscriptions": [
            {"protocol": "email", "endpoint": "a@b.c"}, {"protocol": "email", "endpoint": "A@B.C"}]}))
        .err()
        .is_some_and(|e| e.contains("twice")));
        let t = task_of(json!({"name": "arn:aws:sns:eu-west-1:123456789012:x"}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((t.name.as_str(), t.arn.is_some()), ("x", true));
    }
}
